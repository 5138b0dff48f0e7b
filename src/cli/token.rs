//! `opsdeck token new NAME --role ROLE`: makes an API token, prints it once, and prints the
//! `[[server.tokens]]` lines (with its SHA-256, never the token) to add to opsdeck.toml.

use clap::Subcommand;

use super::{CliError, CliResult, EXIT_OK};
use crate::config::server::hex;
use crate::model::Role;
use crate::server::auth::{generate_token, sha256};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a new token for `opsdeck serve`
    New {
        /// A name for the audit log, like `ci` or `alice`
        name: String,
        /// viewer (reads), operator (also runs, DLQ and canary actions), admin (everything)
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: crate::model::ParseStatusError| e.to_string())
}

pub fn run(cmd: &TokenCommand) -> CliResult {
    let TokenCommand::New { name, role } = cmd;
    if let Some(why) = crate::config::server::token_name_problem(name) {
        return Err(CliError::bad_input(why));
    }
    let token = generate_token().map_err(|e| {
        CliError::failed(format!("cannot read random bytes from /dev/urandom: {e}"))
    })?;
    say!("{token}")?;
    say!()?;
    say!("This token is shown once. Add these lines to the workspace's opsdeck.toml:")?;
    say!()?;
    say!("[[server.tokens]]")?;
    say!("name = \"{name}\"")?;
    say!("role = \"{role}\"")?;
    say!("sha256 = \"{}\"", hex(&sha256(&token)))?;
    Ok(EXIT_OK)
}
