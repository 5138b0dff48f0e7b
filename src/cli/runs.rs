//! `opsdeck runs`: list, show, resume, retry and cancel runs.

use clap::{Args, Subcommand};

use super::output::{Table, print_json, runs_table, short, stage_symbol, took, when};
use super::run::follow;
use super::{
    Cli, CliError, CliResult, EXIT_OK, command, open_workspace, parse_run_id, reader, served,
    with_backend,
};
use crate::client::Backend;
use crate::host::Workspace;
use crate::model::{Command, RunId, RunQuery, RunStatus};

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
    /// How many runs to show (1 to 10000)
    #[arg(long, default_value_t = 20, value_parser = super::parse_limit, allow_hyphen_values = true)]
    pub limit: u32,
    /// Only runs older than this id (to page back through history)
    #[arg(long, value_parser = parse_run_id, value_name = "ID")]
    pub before: Option<RunId>,
    /// List isolated stage tests (`opsdeck stage test`) instead of production runs
    #[arg(long)]
    pub tests: bool,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first: the same as `opsdeck runs` alone
    List(ListArgs),
    /// Show one run: its stages, attempts and errors (with --json, every input and output)
    Show {
        /// The run's id
        #[arg(value_parser = parse_run_id)]
        id: RunId,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Continue an interrupted run; stages that finished are not run again
    Resume {
        #[arg(value_parser = parse_run_id)]
        id: RunId,
        #[arg(long)]
        json: bool,
        /// Why, for the audit log
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Re-run a failed or cancelled run from its failed stages, keeping what succeeded
    Retry {
        #[arg(value_parser = parse_run_id)]
        id: RunId,
        #[arg(long)]
        json: bool,
        /// Why, for the audit log
        #[arg(long)]
        reason: String,
    },
    /// Cancel a run: attempts in flight are killed, stages not started are skipped
    Cancel {
        #[arg(value_parser = parse_run_id)]
        id: RunId,
        /// Why, for the audit log
        #[arg(long)]
        reason: String,
    },
}

fn parse_status(s: &str) -> Result<RunStatus, String> {
    s.parse()
        .map_err(|e: crate::model::ParseStatusError| e.to_string())
}

pub async fn run(cli: &Cli, args: &RunsArgs) -> CliResult {
    let listing = match &args.command {
        None => Some(&args.list),
        Some(RunsCommand::List(l)) => Some(l),
        Some(_) => None,
    };
    if let Some(remote) = served(cli, None)? {
        // Reads over the API: the same output as from a local store.
        if let Some(l) = listing {
            let page = remote.runs(query(l)).await?;
            return print_list(&page, filtered(l), l.json);
        }
        match &args.command {
            Some(RunsCommand::Show { id, json }) => {
                let run = remote.run(*id).await?;
                let dlq = remote
                    .dlq(crate::model::DlqQuery {
                        run: Some(*id),
                        limit: crate::model::MAX_DLQ_LIMIT,
                        ..Default::default()
                    })
                    .await?
                    .items;
                return print_run(&run, &dlq, *json);
            }
            _ => return control(cli, None, args).await,
        }
    }
    let (ws, _log) = open_workspace(cli, false, false)?;
    if let Some(l) = listing {
        return list(&ws, l);
    }
    match &args.command {
        Some(RunsCommand::Show { id, json }) => show(&ws, *id, *json),
        _ => control(cli, Some(ws), args).await,
    }
}

/// Resume, retry and cancel: through the served runtime if there is one, else hosted here.
async fn control(cli: &Cli, ws: Option<Workspace>, args: &RunsArgs) -> CliResult {
    let (id, cmd, reason, follows) = match &args.command {
        Some(RunsCommand::Resume { id, json, reason }) => {
            (*id, Command::ResumeRun { run: *id }, reason, Some(*json))
        }
        Some(RunsCommand::Retry { id, json, reason }) => {
            (*id, Command::RetryRun { run: *id }, reason, Some(*json))
        }
        Some(RunsCommand::Cancel { id, reason }) => {
            (*id, Command::CancelRun { run: *id }, reason, None)
        }
        _ => return Ok(EXIT_OK),
    };
    let verb = cmd.action().trim_start_matches("run.").to_string();
    with_backend(
        cli,
        ws,
        format!("opsdeck runs {verb} {id}"),
        &format!("cannot {verb} run {id}"),
        async move |b| {
            let since = b.overview().await?.last_seq;
            let outcome = command(b, cmd, reason).await?;
            match follows {
                Some(json) => {
                    if !json {
                        say!("{}", outcome.message())?;
                    }
                    follow(b, since, id, json).await
                }
                None => {
                    say!("run {id} cancelled")?;
                    Ok(EXIT_OK)
                }
            }
        },
    )
    .await
}

fn query(args: &ListArgs) -> RunQuery {
    RunQuery {
        pipeline: args.pipeline.clone(),
        status: args.status,
        before: args.before,
        limit: args.limit as usize,
        tests: args.tests,
        ..RunQuery::default()
    }
}

fn print_list(
    page: &crate::model::Page<crate::model::RunSummary>,
    filtered: bool,
    json: bool,
) -> CliResult {
    if json {
        print_json(&page.items)?;
    } else if page.items.is_empty() && page.total == 0 && !filtered {
        say!("no runs yet; start one with `opsdeck run PIPELINE`")?;
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

fn list(ws: &Workspace, args: &ListArgs) -> CliResult {
    let r = reader(ws)?;
    let page = r.runs(&query(args)).map_err(|e| CliError::failed(e.0))?;
    if page.items.is_empty()
        && let Some(p) = &args.pipeline
        && let Err(msg) = ws.pipeline(p)
    {
        return Err(CliError::bad_input(msg));
    }
    print_list(&page, filtered(args), args.json)
}

/// Whether the list was narrowed (so an empty one means "none match", not "none yet").
fn filtered(args: &ListArgs) -> bool {
    args.pipeline.is_some() || args.status.is_some() || args.before.is_some() || args.tests
}

fn show(ws: &Workspace, id: RunId, json: bool) -> CliResult {
    let r = reader(ws)?;
    let run = r
        .run(id)
        .map_err(|e| CliError::failed(e.0))?
        .ok_or_else(|| {
            CliError::bad_input(format!(
                "there is no run {id}; list runs with `opsdeck runs`"
            ))
        })?;
    let entries = r.dlq_for_run(id).map_err(|e| CliError::failed(e.0))?;
    print_run(&run, &entries, json)
}

/// `prompt@2 rules@5`: asset versions as a stage names them.
pub fn versions_text(v: &std::collections::BTreeMap<String, u32>) -> String {
    v.iter()
        .map(|(n, v)| format!("{n}@{v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_run(run: &crate::model::Run, entries: &[crate::model::DlqEntry], json: bool) -> CliResult {
    if json {
        print_json(run)?;
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
    if let Some(owner) = &run.owner {
        say!("worker {owner}")?;
    }
    if run.test {
        say!(
            "test run: one stage alone, kept out of run lists, metrics, breakers and the dead-letter queue"
        )?;
    }
    if !run.overrides.is_empty() {
        say!("overrides {}", versions_text(&run.overrides))?;
    }
    say!()?;
    let mut t = Table::new(vec![
        "STAGE", "STATUS", "ATTEMPTS", "DURATION", "ASSETS", "ERROR",
    ]);
    for s in &run.stages {
        let last = s.last_attempt();
        t.row(vec![
            s.id.clone(),
            format!("{} {}", stage_symbol(s.status), s.status),
            s.attempts.len().to_string(),
            // Every attempt's time, as `compare` counts it (the last alone can be a 0 ms
            // fast failure after minutes of tries).
            took(s.total_ms()),
            last.map(|a| versions_text(&a.assets)).unwrap_or_default(),
            last.and_then(|a| a.error.as_ref())
                .map(|e| short(&format!("{}: {}", e.code, e.message), 70))
                .unwrap_or_default(),
        ]);
    }
    say_raw!("{}", t.render())?;
    let stderr = super::output::failed_stages_stderr(run);
    if !stderr.is_empty() {
        say!("{stderr}")?;
    }
    if run.status == crate::model::RunStatus::Interrupted {
        say!(
            "\nthe run was interrupted (its host stopped mid-run): continue it with `opsdeck runs resume {}`",
            run.id
        )?;
    }
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
