//! `opsdeck runs`: list, show, resume, retry and cancel runs.

use clap::{Args, Subcommand};

use super::output::{Table, print_json, runs_table, short, stage_symbol, took, when};
use super::run::{follow, with_host};
use super::{Cli, CliError, CliResult, EXIT_OK, open_workspace, parse_run_id, reader};
use crate::model::{RunId, RunQuery, RunStatus};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub command: Option<RunsCommand>,
    #[command(flatten)]
    pub list: ListArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only runs of this pipeline
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Only runs with this status (pending, running, succeeded, failed, cancelled, interrupted)
    #[arg(long, value_parser = parse_status)]
    pub status: Option<RunStatus>,
    /// How many runs to show
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    /// Only runs older than this id (to page back through history)
    #[arg(long, value_parser = parse_run_id, value_name = "ID")]
    pub before: Option<RunId>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Show one run: its stages, attempts and errors (with --json, every input and output)
    Show {
        #[arg(value_parser = parse_run_id)]
        id: RunId,
        #[arg(long)]
        json: bool,
    },
    /// Continue an interrupted run; stages that finished are not run again
    Resume {
        #[arg(value_parser = parse_run_id)]
        id: RunId,
        #[arg(long)]
        json: bool,
    },
    /// Re-run a failed or cancelled run from its failed stages, keeping what succeeded
    Retry {
        #[arg(value_parser = parse_run_id)]
        id: RunId,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a pending or interrupted run
    Cancel {
        #[arg(value_parser = parse_run_id)]
        id: RunId,
        /// Why, for the event log
        #[arg(long, default_value = "cancelled from the command line")]
        reason: String,
    },
}

fn parse_status(s: &str) -> Result<RunStatus, String> {
    s.parse()
        .map_err(|e: crate::model::ParseStatusError| e.to_string())
}

pub async fn run(cli: &Cli, args: &RunsArgs) -> CliResult {
    let (ws, _log) = open_workspace(cli, false, false)?;
    match &args.command {
        None => list(&ws, &args.list),
        Some(RunsCommand::Show { id, json }) => show(&ws, *id, *json),
        Some(RunsCommand::Resume { id, json }) => {
            let (id, json) = (*id, *json);
            with_host(
                ws,
                format!("opsdeck runs resume {id}"),
                &format!("cannot resume run {id}"),
                async move |host| {
                    let events = host.subscribe();
                    host.resume_run(id).await?;
                    if !json {
                        say!("run {id} resumed")?;
                    }
                    follow(host, events, id, json).await
                },
            )
            .await
        }
        Some(RunsCommand::Retry { id, json }) => {
            let (id, json) = (*id, *json);
            with_host(
                ws,
                format!("opsdeck runs retry {id}"),
                &format!("cannot retry run {id}"),
                async move |host| {
                    let events = host.subscribe();
                    host.retry_run(id, "retried from the command line").await?;
                    if !json {
                        say!("run {id} retrying its failed stages")?;
                    }
                    follow(host, events, id, json).await
                },
            )
            .await
        }
        Some(RunsCommand::Cancel { id, reason }) => {
            let id = *id;
            with_host(
                ws,
                format!("opsdeck runs cancel {id}"),
                &format!("cannot cancel run {id}"),
                async move |host| {
                    host.cancel_run(id, reason).await?;
                    say!("run {id} cancelled")?;
                    Ok(EXIT_OK)
                },
            )
            .await
        }
    }
}

fn list(ws: &crate::runtime::workspace::Workspace, args: &ListArgs) -> CliResult {
    let r = reader(ws)?;
    let q = RunQuery {
        pipeline: args.pipeline.clone(),
        status: args.status,
        before: args.before,
        limit: args.limit as usize,
        ..RunQuery::default()
    };
    let page = r.runs(&q).map_err(|e| CliError::failed(e.0))?;
    if page.items.is_empty()
        && let Some(p) = &args.pipeline
        && let Err(msg) = ws.pipeline(p)
    {
        return Err(CliError::bad_input(msg));
    }
    if args.json {
        print_json(&page.items)?;
    } else if page.items.is_empty() {
        say!("no runs match")?;
    } else {
        say_raw!("{}", runs_table(&page.items).render())?;
        if let Some(next) = page.next {
            say!("(more: --before {next})")?;
        }
    }
    Ok(EXIT_OK)
}

fn show(ws: &crate::runtime::workspace::Workspace, id: RunId, json: bool) -> CliResult {
    let r = reader(ws)?;
    let run = r
        .run(id)
        .map_err(|e| CliError::failed(e.0))?
        .ok_or_else(|| {
            CliError::bad_input(format!(
                "there is no run {id}; list runs with `opsdeck runs`"
            ))
        })?;
    if json {
        print_json(&run)?;
        return Ok(EXIT_OK);
    }
    say!("run {}  {}  {}", run.id, run.pipeline, run.status)?;
    say!(
        "trigger {}  created {}  started {}  finished {}  took {}",
        run.trigger.as_str(),
        when(Some(run.created_at)),
        when(run.started_at),
        when(run.finished_at),
        took(run.duration_ms)
    )?;
    say!("params {}", run.params)?;
    say!()?;
    let mut t = Table::new(vec!["STAGE", "STATUS", "ATTEMPTS", "DURATION", "ERROR"]);
    for s in &run.stages {
        let last = s.last_attempt();
        t.row(vec![
            s.id.clone(),
            format!("{} {}", stage_symbol(s.status), s.status),
            s.attempts.len().to_string(),
            took(last.and_then(|a| a.duration_ms)),
            last.and_then(|a| a.error.as_ref())
                .map(|e| short(&format!("{}: {}", e.code, e.message), 70))
                .unwrap_or_default(),
        ]);
    }
    say_raw!("{}", t.render())?;
    let entries = r.dlq_for_run(id).map_err(|e| CliError::failed(e.0))?;
    for e in entries {
        say!(
            "\ndead-letter entry {} holds stage `{}`: requeue it with `opsdeck dlq requeue {}`",
            e.id,
            e.stage,
            e.id
        )?;
    }
    Ok(EXIT_OK)
}
