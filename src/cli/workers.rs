//! `opsdeck workers`: the workers sharing the workspace's PostgreSQL store, with their leases
//! and load, from the store itself or a served runtime's API.

use clap::Args;

use super::output::{Table, print_json};
use super::{Cli, CliError, CliResult, EXIT_OK, open_workspace, reader, served};
use crate::client::Backend;
use crate::model::WorkerInfo;

#[derive(Debug, Args)]
pub struct WorkersArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

pub async fn run(cli: &Cli, args: &WorkersArgs) -> CliResult {
    let list = match served(cli, None)? {
        Some(remote) => remote.workers().await?,
        None => {
            let (ws, _log) = open_workspace(cli, false, false)?;
            if let crate::store::Target::Sqlite(_) = ws.store() {
                if args.json {
                    print_json(&Vec::<WorkerInfo>::new())?;
                } else {
                    say!(
                        "no workers: this workspace keeps its state in SQLite, where one host runs everything; workers share a PostgreSQL store (`[store] url`)"
                    )?;
                }
                return Ok(EXIT_OK);
            }
            reader(&ws)?.workers().map_err(|e| CliError::failed(e.0))?
        }
    };
    if args.json {
        print_json(&list)?;
        return Ok(EXIT_OK);
    }
    if list.is_empty() {
        say!("no live workers on the store")?;
        return Ok(EXIT_OK);
    }
    let mut t = Table::new(vec![
        "WORKER",
        "ADDRESS",
        "STARTED",
        "HEARTBEAT",
        "LEASE",
        "RUNS",
        "MAX",
    ]);
    for w in &list {
        t.row(vec![
            w.id.clone(),
            w.address.clone().unwrap_or_else(|| "-".into()),
            w.started_at
                .datetime()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            format!("{:.1}s ago", w.heartbeat_age_ms as f64 / 1000.0),
            if w.lease_left_ms >= 0 {
                format!("{:.1}s left", w.lease_left_ms as f64 / 1000.0)
            } else {
                "expired".into()
            },
            w.runs.to_string(),
            w.max_in_flight.to_string(),
        ]);
    }
    say!("{}", t.render())?;
    Ok(EXIT_OK)
}
