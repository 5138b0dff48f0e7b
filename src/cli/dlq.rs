//! `opsdeck dlq`: list, requeue and discard dead-letter entries.

use chrono::Utc;
use clap::Subcommand;

use super::output::{Table, print_json, short, took};
use super::run::follow;
use super::{
    Cli, CliError, CliResult, EXIT_OK, command, open_workspace, parse_dlq_id, reader, served,
    with_backend,
};
use crate::client::Backend;
use crate::model::{Command, DlqId, DlqQuery, Outcome};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead-letter entries, newest first
    List {
        #[arg(long)]
        json: bool,
        /// How many of the newest to list (1 to 1000)
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
    },
    /// One entry whole: its run, stage, attempts, error, and the input it was parked with
    Show {
        #[arg(value_parser = parse_dlq_id)]
        id: DlqId,
        #[arg(long)]
        json: bool,
    },
    /// Give the entry's stage a new attempt in its run and follow the run to its end
    Requeue {
        #[arg(value_parser = parse_dlq_id)]
        id: DlqId,
        #[arg(long)]
        json: bool,
        /// Why, for the audit log
        #[arg(long)]
        reason: String,
    },
    /// Remove the entry; its run stays failed
    Discard {
        #[arg(value_parser = parse_dlq_id)]
        id: DlqId,
        /// Why, for the audit log
        #[arg(long)]
        reason: String,
    },
}

pub async fn run(cli: &Cli, cmd: &DlqCommand) -> CliResult {
    // With --remote there is no local workspace to open.
    let ws = if cli.remote.is_some() {
        None
    } else {
        Some(open_workspace(cli, false, false)?)
    };
    let (ws, _log) = match ws {
        Some((ws, log)) => (Some(ws), Some(log)),
        None => (None, None),
    };
    match cmd {
        DlqCommand::List { json, limit } => {
            let q = DlqQuery {
                limit: usize::from(*limit),
                ..DlqQuery::default()
            };
            let page = match (&ws, served(cli, None)?) {
                (_, Some(remote)) => remote.dlq(q).await?,
                (Some(ws), None) => reader(ws)?.dlq(&q).map_err(|e| CliError::failed(e.0))?,
                (None, None) => crate::model::Page {
                    items: Vec::new(),
                    next: None,
                    total: 0,
                },
            };
            let entries = &page.items;
            if *json {
                print_json(entries)?;
            } else if entries.is_empty() {
                say!("the dead-letter queue is empty")?;
            } else {
                let now = Utc::now().timestamp_millis();
                let mut t = Table::new(vec![
                    "ID", "RUN", "PIPELINE", "STAGE", "ATTEMPTS", "AGE", "ERROR",
                ]);
                for e in entries {
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
                if page.total > entries.len() as u64 {
                    say!(
                        "the newest {} of {} entries; --limit shows up to 1000",
                        entries.len(),
                        page.total
                    )?;
                }
            }
            Ok(EXIT_OK)
        }
        DlqCommand::Show { id, json } => show(cli, ws.as_ref(), *id, *json).await,
        DlqCommand::Requeue { id, json, reason } => {
            let (id, json) = (*id, *json);
            with_backend(
                cli,
                ws,
                format!("opsdeck dlq requeue {id}"),
                &format!("cannot requeue dead-letter entry {id}"),
                async move |b| {
                    let since = b.overview().await?.last_seq;
                    let outcome = command(b, Command::Requeue { entry: id }, reason).await?;
                    if !json {
                        say!("{}", outcome.message())?;
                    }
                    let run = outcome.run().ok_or_else(|| {
                        CliError::failed("the host did not say which run it requeued into")
                    })?;
                    follow(b, since, run, json).await
                },
            )
            .await
        }
        DlqCommand::Discard { id, reason } => {
            let id = *id;
            with_backend(
                cli,
                ws,
                format!("opsdeck dlq discard {id}"),
                &format!("cannot discard dead-letter entry {id}"),
                async move |b| {
                    let outcome = command(b, Command::Discard { entry: id }, reason).await?;
                    if let Outcome::Discarded { .. } = outcome {
                        say!("{}", outcome.message())?;
                    }
                    Ok(EXIT_OK)
                },
            )
            .await
        }
    }
}

/// `dlq show`: one entry whole, read from the server with --remote, else from the store.
async fn show(cli: &Cli, ws: Option<&crate::host::Workspace>, id: DlqId, json: bool) -> CliResult {
    let remote = served(cli, None)?;
    let entry = match (ws, remote.as_ref()) {
        (_, Some(remote)) => remote.dlq_entry(id).await?,
        (Some(ws), None) => reader(ws)?
            .dlq_entry_or_why(id)
            .map_err(|e| CliError::failed(e.0))?
            .map_err(CliError::bad_input)?,
        (None, None) => {
            return Err(CliError::bad_input(
                "no workspace and no --remote to read the entry from",
            ));
        }
    };
    if json {
        print_json(&entry)?;
        return Ok(EXIT_OK);
    }
    // What the stage's process said last: usually why it failed (the run may be gone).
    let run = match (ws, remote.as_ref()) {
        (_, Some(remote)) => remote.run(entry.run_id).await.ok(),
        (Some(ws), None) => reader(ws)
            .ok()
            .and_then(|r| r.run(entry.run_id).ok().flatten()),
        (None, None) => None,
    };
    say!(
        "Entry:     {}\nRun:       {} ({})\nStage:     {}\nAttempts:  {}\nParked:    {}\nError:     {}: {}\nInput:",
        entry.id,
        entry.run_id,
        entry.pipeline,
        entry.stage,
        entry.attempts,
        entry.created_at,
        entry.error.code,
        crate::model::printable(&entry.error.message)
    )?;
    let input = serde_json::to_string_pretty(&entry.input)
        .map_err(|e| CliError::failed(format!("could not format the input: {e}")))?;
    say!("{}", crate::model::printable_text(&input))?;
    let stderr = run
        .as_ref()
        .and_then(|r| r.stages.iter().find(|s| s.id == entry.stage))
        .map(super::output::stderr_block)
        .unwrap_or_default();
    if !stderr.is_empty() {
        say!("{stderr}")?;
    }
    Ok(EXIT_OK)
}
