//! `opsdeck dlq`: list, requeue and discard dead-letter entries.

use chrono::Utc;
use clap::Subcommand;

use super::output::{Table, print_json, short, took};
use super::run::{follow, with_host};
use super::{Cli, CliError, CliResult, EXIT_OK, open_workspace, parse_dlq_id, reader};
use crate::model::DlqId;

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead-letter entries, newest first
    List {
        #[arg(long)]
        json: bool,
    },
    /// Give the entry's stage a new attempt in its run and follow the run to its end
    Requeue {
        #[arg(value_parser = parse_dlq_id)]
        id: DlqId,
        #[arg(long)]
        json: bool,
    },
    /// Remove the entry; its run stays failed
    Discard {
        #[arg(value_parser = parse_dlq_id)]
        id: DlqId,
        /// Why, for the event log
        #[arg(long, default_value = "discarded from the command line")]
        reason: String,
    },
}

pub async fn run(cli: &Cli, cmd: &DlqCommand) -> CliResult {
    let (ws, _log) = open_workspace(cli, false, false)?;
    match cmd {
        DlqCommand::List { json } => {
            let entries = reader(&ws)?.dlq().map_err(|e| CliError::failed(e.0))?;
            if *json {
                print_json(&entries)?;
            } else if entries.is_empty() {
                say!("the dead-letter queue is empty")?;
            } else {
                let now = Utc::now().timestamp_millis();
                let mut t = Table::new(vec![
                    "ID", "RUN", "PIPELINE", "STAGE", "ATTEMPTS", "AGE", "ERROR",
                ]);
                for e in &entries {
                    t.row(vec![
                        e.id.to_string(),
                        e.run_id.to_string(),
                        e.pipeline.clone(),
                        e.stage.clone(),
                        e.attempts.to_string(),
                        took(Some(now - e.created_at.millis())),
                        short(&format!("{}: {}", e.error.code, e.error.message), 60),
                    ]);
                }
                say_raw!("{}", t.render())?;
            }
            Ok(EXIT_OK)
        }
        DlqCommand::Requeue { id, json } => {
            let (id, json) = (*id, *json);
            with_host(
                ws,
                format!("opsdeck dlq requeue {id}"),
                &format!("cannot requeue dead-letter entry {id}"),
                async move |host| {
                    let events = host.subscribe();
                    let run = host.requeue(id, "requeued from the command line").await?;
                    if !json {
                        say!("dead-letter entry {id} requeued into run {run}")?;
                    }
                    follow(host, events, run, json).await
                },
            )
            .await
        }
        DlqCommand::Discard { id, reason } => {
            let id = *id;
            with_host(
                ws,
                format!("opsdeck dlq discard {id}"),
                &format!("cannot discard dead-letter entry {id}"),
                async move |host| {
                    let entry = host.discard(id, reason).await?;
                    say!(
                        "dead-letter entry {id} discarded; run {} stays failed",
                        entry.run_id
                    )?;
                    Ok(EXIT_OK)
                },
            )
            .await
        }
    }
}
