//! `opsdeck audit`: the audit log, newest first, from the local store (while another process
//! hosts the workspace too) or a served runtime's API.

use clap::Args;

use super::output::{Table, print_json, short};
use super::{Cli, CliError, CliResult, EXIT_OK, open_workspace, reader, served};
use crate::client::Backend;
use crate::model::{AuditQuery, AuditRecord, Timestamp, audit_action};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only records since TIME: RFC 3339 (2026-11-29T20:00:00Z) or a duration ago (90m, 1h, 2d)
    #[arg(long, value_name = "TIME", value_parser = parse_since, allow_hyphen_values = true)]
    pub since: Option<Timestamp>,
    /// Only this actor's records (a token name, or a user name for local commands)
    #[arg(long, value_name = "NAME", value_parser = parse_actor)]
    pub actor: Option<String>,
    /// Only this action (run.retry, canary.set-weight), or a whole group (run, dlq, canary)
    #[arg(long, value_name = "A", value_parser = audit_action)]
    pub action: Option<String>,
    /// How many records at most, newest first (1 to 10000)
    #[arg(long, default_value_t = 50, value_parser = super::parse_limit, allow_hyphen_values = true)]
    pub limit: u32,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

fn parse_since(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_since(s, chrono::Utc::now())
}

fn parse_actor(s: &str) -> Result<String, String> {
    let name = s.trim();
    if name.is_empty() {
        return Err("an actor is a name (a token's, or a user's); it cannot be empty".into());
    }
    Ok(name.to_string())
}

pub async fn run(cli: &Cli, args: &AuditArgs) -> CliResult {
    let q = AuditQuery {
        since: args.since,
        actor: args.actor.clone(),
        action: args.action.clone(),
        limit: args.limit as usize,
    };
    let records = match served(cli, None)? {
        Some(remote) => remote.audit(q).await?,
        None => {
            let (ws, _log) = open_workspace(cli, false, false)?;
            reader(&ws)?.audit(&q).map_err(|e| CliError::failed(e.0))?
        }
    };
    print(&records, args.json)
}

fn print(records: &[AuditRecord], json: bool) -> CliResult {
    if json {
        print_json(&records)?;
        return Ok(EXIT_OK);
    }
    if records.is_empty() {
        say!("no audit records match")?;
        return Ok(EXIT_OK);
    }
    let mut t = Table::new(vec![
        "TIME", "ACTOR", "ROLE", "VIA", "ACTION", "TARGET", "OUTCOME", "REASON",
    ]);
    for r in records {
        t.row(vec![
            r.at.datetime().format("%Y-%m-%d %H:%M:%S").to_string(),
            r.actor.clone(),
            r.role.map_or_else(|| "-".into(), |x| x.to_string()),
            r.via.map_or_else(|| "-".into(), |x| x.to_string()),
            r.action.clone(),
            r.target.clone(),
            match r.details.get("count").and_then(serde_json::Value::as_u64) {
                Some(n) if n > 1 => format!("{} ×{n}", r.outcome),
                _ => r.outcome.clone(),
            },
            short(&r.reason, 60),
        ]);
    }
    say_raw!("{}", t.render())?;
    Ok(EXIT_OK)
}
