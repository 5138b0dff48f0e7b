//! `opsdeck run PIPELINE`: hosts the workspace while one run runs in the foreground.

use clap::Args;
use futures::StreamExt;

use super::output::{print_json, progress_line, took};
use super::{Cli, CliError, CliResult, EXIT_INTERRUPTED, command, exit_for, open_workspace};
use crate::client::{Backend, StreamItem};
use crate::host::{Host, HostOptions, Workspace};
use crate::model::{Command, Event, EventKind, Outcome, RunId, StartRun};
use crate::runtime::RuntimeError;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline's name (its [pipeline] name, not the file name)
    pub pipeline: String,
    /// A run parameter; repeatable. Values take the type of the declared default.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Print the finished run as JSON on stdout instead of progress lines
    #[arg(long)]
    pub json: bool,
    /// Use version N of asset NAME for this run only; repeatable
    #[arg(long = "override", value_name = "NAME=N", value_parser = crate::model::asset::parse_override)]
    pub overrides: Vec<(String, u32)>,
    /// Why, for the audit log
    #[arg(long, default_value = "")]
    pub reason: String,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// Starts a host for a one-shot command, with a sentence naming any host already in the way.
pub async fn start_host(ws: Workspace, command: String, what: &str) -> Result<Host, CliError> {
    Host::start(ws, HostOptions::new(command))
        .await
        .map_err(|e| {
            let hint = matches!(e, RuntimeError::Hosted(_));
            let mut err = CliError::from(e).context(what);
            if hint {
                err.message
                    .push_str("; stop it or wait for it to finish, then try again");
            }
            err
        })
}

/// Runs `f` with a temporary host and always shuts the host down afterwards.
pub async fn with_host<F>(ws: Workspace, command: String, what: &str, f: F) -> CliResult
where
    F: AsyncFnOnce(&Host) -> CliResult,
{
    let host = start_host(ws, command, what).await?;
    let result = f(&host).await;
    super::report_interrupted(&host.shutdown().await);
    result.map_err(|e| e.context(what))
}

pub async fn run(cli: &Cli, args: &RunArgs) -> CliResult {
    if let Some(remote) = super::served(cli, None)? {
        // The pipeline's params and their types come from the server.
        let pipelines = remote.overview().await?.pipelines;
        let names: Vec<&str> = pipelines.iter().map(|p| p.name.as_str()).collect();
        let p = pipelines
            .iter()
            .find(|p| p.name == args.pipeline)
            .ok_or_else(|| {
                CliError::bad_input(format!(
                    "there is no pipeline `{}` on {}; pipelines: {}",
                    args.pipeline,
                    remote.base(),
                    names.join(", ")
                ))
            })?;
        let params = crate::runtime::spec::params_from_text(&p.name, &p.params, &args.params)
            .map_err(CliError::bad_input)?;
        let req = StartRun {
            pipeline: p.name.clone(),
            params,
            overrides: crate::model::asset::overrides_from(&args.overrides)
                .map_err(CliError::bad_input)?,
            test: None,
        };
        return start_and_follow(&remote, req, args.json, &args.reason).await;
    }
    let (ws, _log) = open_workspace(cli, true, false)?;
    let pipeline = ws.pipeline(&args.pipeline).map_err(CliError::bad_input)?;
    let params = pipeline
        .params_from_text(&args.params)
        .map_err(CliError::bad_input)?;
    let command = format!("opsdeck run {}", args.pipeline);
    let (json, reason) = (args.json, args.reason.as_str());
    let req = StartRun {
        pipeline: pipeline.name.clone(),
        params,
        overrides: crate::model::asset::overrides_from(&args.overrides)
            .map_err(CliError::bad_input)?,
        test: None,
    };
    let what = format!("cannot run `{}`", args.pipeline);
    if let Some(remote) = super::served(cli, Some(&ws))? {
        return start_and_follow(&remote, req, json, reason)
            .await
            .map_err(|e| e.context(&what));
    }
    // Hosted here for as long as the run lasts: commands from another shell (a cancel, a
    // look at the run) act through an endpoint on loopback instead of being refused.
    let serving = super::serve::Serving {
        config: ws.server.clone(),
        read_only: false,
        session_token: true,
    };
    with_host(ws, command, &what, async move |host| {
        let endpoint = super::serve::local_endpoint(host, serving).await;
        let result = start_and_follow(
            &crate::client::Embedded::new(host.clone()),
            req,
            json,
            reason,
        )
        .await;
        if let Some(e) = endpoint {
            e.stop().await;
        }
        result
    })
    .await
}

/// Starts a run (or a stage test) and follows it to its end.
pub async fn start_and_follow(
    b: &dyn Backend,
    req: StartRun,
    json: bool,
    reason: &str,
) -> CliResult {
    let since = b.overview().await?.last_seq;
    let pipeline = req.pipeline.clone();
    let what = match &req.test {
        Some(t) => format!("test run {{id}} of stage `{}` of `{pipeline}`", t.stage),
        None => format!("run {{id}} of `{pipeline}`"),
    };
    let start = Command::StartRun(req);
    let Outcome::RunStarted { run: id } = command(b, start, reason).await? else {
        return Err(CliError::failed(
            "the host did not say which run it started",
        ));
    };
    if !json {
        say!("{} started", what.replace("{id}", &id.to_string()))?;
    }
    follow(b, since, id, json).await
}

/// Prints progress of a run until it ends (Ctrl-C or SIGTERM cancels it, so its processes
/// stop with it), then the result. `since` is the last event sequence number before the run
/// was started, so nothing is missed.
pub async fn follow(b: &dyn Backend, since: u64, id: RunId, json: bool) -> CliResult {
    // Whoever reads our output may go away (`| head`); the run is not theirs to stop, so keep
    // following it quietly and still exit with its outcome.
    let mut out = Printer { closed: false };
    let mut events = b.events(Some(since));
    let mut interrupted: Option<super::serve::Stop> = None;
    // Listening from the start: a signal between two events is not missed.
    let stop = super::serve::stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            item = events.next() => match item {
                Some(StreamItem::Event(ev)) => {
                    out.progress(&ev, id, json)?;
                    if ev.kind == EventKind::RunFinished && ev.run_id == Some(id) {
                        break;
                    }
                }
                Some(StreamItem::Connected(_)) => {}
                // Too far behind to replay: whether the run ended is asked directly.
                Some(StreamItem::Reset { .. }) => {
                    if b.run(id).await?.status.is_finished() {
                        break;
                    }
                }
                None => return Err(CliError::failed(format!("lost the event stream while following run {id}"))),
            },
            how = &mut stop, if interrupted.is_none() => {
                let why = match how {
                    super::serve::Stop::Interrupt => "cancelled from the terminal (Ctrl-C)",
                    super::serve::Stop::Terminate => "cancelled: `opsdeck run` was sent SIGTERM",
                };
                interrupted = Some(how);
                command(b, Command::CancelRun { run: id }, why).await?;
            }
        }
    }
    let run = b.run(id).await?;
    if json {
        out.keep(print_json(&run))?;
    } else {
        out.keep(say!(
            "run {id} of `{}` {} in {}",
            run.pipeline,
            run.status,
            took(run.duration_ms)
        ))?;
        if run.status != crate::model::RunStatus::Succeeded {
            let stderr = super::output::failed_stages_stderr(&run);
            if !stderr.is_empty() {
                out.keep(say!("{stderr}"))?;
            }
            out.keep(say!("details: opsdeck runs show {id}"))?;
        }
    }
    Ok(match interrupted {
        Some(super::serve::Stop::Interrupt) => EXIT_INTERRUPTED,
        Some(super::serve::Stop::Terminate) => super::EXIT_TERMINATED,
        None => exit_for(run.status),
    })
}

/// Writes progress until standard output is closed, then stays quiet.
struct Printer {
    closed: bool,
}

impl Printer {
    fn keep(&mut self, written: Result<(), CliError>) -> Result<(), CliError> {
        match written {
            Err(e) if e.message.is_empty() => {
                self.closed = true;
                Ok(())
            }
            other => other,
        }
    }

    fn progress(&mut self, e: &Event, id: RunId, json: bool) -> Result<(), CliError> {
        if self.closed || json || e.run_id != Some(id) {
            return Ok(());
        }
        match progress_line(e) {
            Some(line) => {
                let written = say!("{line}");
                self.keep(written)
            }
            None => Ok(()),
        }
    }
}
