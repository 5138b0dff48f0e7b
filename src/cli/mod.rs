//! The command line. Each subcommand group has its own file; this one parses, finds the
//! workspace, starts logging, dispatches, and turns errors into one sentence and an exit code.

/// Writes a line to stdout; a closed pipe ends the command quietly instead of panicking.
macro_rules! say {
    () => { $crate::cli::output::emit("\n") };
    ($($arg:tt)*) => { $crate::cli::output::emit(&format!("{}\n", format_args!($($arg)*))) };
}

/// Writes text to stdout as it is (tables that end with their own newline).
macro_rules! say_raw {
    ($($arg:tt)*) => { $crate::cli::output::emit(&format!($($arg)*)) };
}

mod assets;
mod audit;
mod canary;
mod compare;
mod dashboard;
mod dlq;
mod drill;
mod events;
mod output;
mod report;
mod run;
mod runs;
mod serve;
mod snapshot;
mod stage;
mod store;
mod token;
mod validate;
mod workers;

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::client::Backend;
use crate::host::workspace::{self, Workspace, WorkspaceError};
use crate::logging;
use crate::model::{Command as Cmd, DlqId, Outcome, RunId, RunStatus, Via};
use crate::runtime::RuntimeError;

/// Exit codes: 0 success, 1 the work failed or could not be done now, 2 bad input.
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;
/// The conventional code for "stopped by Ctrl-C".
pub const EXIT_INTERRUPTED: u8 = 130;
/// A foreground run cancelled because `opsdeck run` was sent SIGTERM (`timeout`, systemd, CI).
pub const EXIT_TERMINATED: u8 = 143;

#[derive(Debug, Parser)]
#[command(
    name = "opsdeck",
    version,
    about = "A terminal dashboard for live operations: pipelines, canaries, rollbacks",
    long_about = "A terminal dashboard for live operations.\n\nWith no command, opsdeck hosts the workspace (the bundled demo if none is found), runs its schedules and opens the dashboard."
)]
pub struct Cli {
    /// The workspace directory [default: $OPSDECK_WORKSPACE, else the current directory if it
    /// holds opsdeck.toml or pipelines/, else the bundled demo]
    #[arg(long, global = true, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Log more (-v debug, -vv trace); logs go to WORKSPACE/.opsdeck/logs
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Dashboard theme: dark, light, high-contrast, mono, terminal, or a file in
    /// ~/.config/opsdeck/themes [default: the `ui.theme` setting]
    #[arg(long, global = true, value_name = "NAME")]
    pub theme: Option<String>,
    /// Dashboard keymap: default, arrows, or a file in ~/.config/opsdeck/keymaps
    /// [default: the `ui.keymap` setting]
    #[arg(long, global = true, value_name = "NAME")]
    pub keymap: Option<String>,
    /// Let the mouse scroll lists and click tabs and rows in the dashboard
    #[arg(long, global = true)]
    pub mouse: bool,
    /// Open the dashboard on the runtime served by `opsdeck serve` at URL instead of hosting
    /// a workspace (like http://127.0.0.1:7070)
    /// [default: $OPSDECK_REMOTE]
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "OPSDECK_REMOTE",
        hide_env = true
    )]
    pub remote: Option<String>,
    /// A file holding the API token for --remote [default: $OPSDECK_TOKEN]
    #[arg(long, global = true, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Hide and refuse every control action in the dashboard
    #[arg(long, global = true)]
    pub read_only: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check pipeline files (and opsdeck.toml) and report every problem as FILE:LINE:COL
    Validate {
        /// Pipeline files and settings files [default: the workspace's opsdeck.toml and
        /// pipelines/*.toml]
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Run a pipeline in the foreground and wait for it (exit 0 if it succeeds, 1 if not)
    Run(run::RunArgs),
    /// List runs, newest first, or show, resume, retry or cancel one
    Runs(runs::RunsArgs),
    /// The dead-letter queue: stages that ran out of attempts
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// The event log, oldest first (JSON lines with --json)
    Events(events::EventsArgs),
    /// Host the workspace and serve the HTTP API: schedules, canaries, JSON logs on stderr
    Serve(serve::ServeArgs),
    /// Canary rollouts: list, status, promote, promote-full, pause, resume, set-weight, rollback, abort, restart
    #[command(subcommand)]
    Canary(canary::CanaryCommand),
    /// API tokens for `opsdeck serve`
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Run a canary scenario on a virtual clock and report the outcome (JSON with --json)
    Drill(drill::DrillArgs),
    /// The audit log, newest first: every command, done or refused, with who, how and why
    Audit(audit::AuditArgs),
    /// The workers sharing a PostgreSQL store: their leases and the runs each drives
    Workers(workers::WorkersArgs),
    /// Two runs stage by stage: status, time, output changes; exit 1 when something regressed
    Compare(compare::CompareArgs),
    /// An incident report of a period: timeline, rollbacks with their analysis, charts, compares
    Report(report::ReportArgs),
    /// The store: backup FILE (a consistent copy, even while hosted), restore FILE, migrate --to URL (into PostgreSQL)
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Render a pane from live data to SVG, PNG, HTML, ANSI or text, without a terminal
    Snapshot(snapshot::SnapshotArgs),
    /// Versioned assets: list, show, diff, put, pin, rollback
    #[command(subcommand)]
    Assets(assets::AssetsCommand),
    /// One stage alone: `stage test PIPELINE STAGE` runs it in test mode
    #[command(subcommand)]
    Stage(stage::StageCommand),
}

/// Arguments shared by commands that print a run or a list.
#[derive(Debug, Clone, Copy, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// A failure to report: one sentence for stderr and an exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn bad_input(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_BAD_INPUT,
            message: message.into(),
        }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_FAILED,
            message: message.into(),
        }
    }

    /// Standard output was closed (`opsdeck events | head`): stop without a message.
    pub fn closed_output() -> Self {
        CliError {
            code: EXIT_OK,
            message: String::new(),
        }
    }

    /// Prefixes the message with what was being attempted.
    #[must_use]
    pub fn context(mut self, what: &str) -> Self {
        if !self.message.is_empty() {
            self.message = format!("{what}: {}", self.message);
        }
        self
    }
}

impl From<RuntimeError> for CliError {
    fn from(e: RuntimeError) -> Self {
        let code = match &e {
            RuntimeError::BadInput(_) | RuntimeError::NotFound(_) | RuntimeError::Conflict(_) => {
                EXIT_BAD_INPUT
            }
            RuntimeError::Hosted(_) | RuntimeError::Store(_) | RuntimeError::Io(_) => EXIT_FAILED,
        };
        CliError {
            code,
            message: e.to_string(),
        }
    }
}

impl From<crate::model::ApiError> for CliError {
    fn from(e: crate::model::ApiError) -> Self {
        use crate::model::ErrorCode as C;
        let code = match e.code {
            C::Validation | C::NotFound | C::Conflict => EXIT_BAD_INPUT,
            _ => EXIT_FAILED,
        };
        CliError {
            code,
            message: e.message,
        }
    }
}

/// Says on stderr which runs a stopping host left interrupted, and how to resume them.
pub fn report_interrupted(left: &[crate::model::RunSummary]) {
    let Some(first) = left.first() else { return };
    let runs: Vec<String> = left
        .iter()
        .map(|r| format!("run {} ({})", r.id, r.pipeline))
        .collect();
    let (n, them) = if left.len() == 1 {
        ("1 run is".to_string(), "it")
    } else {
        (format!("{} runs are", left.len()), "one")
    };
    let _ = writeln!(
        std::io::stderr(),
        "opsdeck: {n} interrupted: {}.\nResume {them} with `opsdeck runs resume {}`; the next `opsdeck` or `opsdeck serve` on this workspace resumes every interrupted run.",
        runs.join(", "),
        first.id
    );
}

/// The served runtime to use instead of hosting here: `--remote`, or the API address that a
/// host of this workspace published (`opsdeck serve`, or a dashboard).
pub fn served(
    cli: &Cli,
    ws: Option<&Workspace>,
) -> Result<Option<crate::client::Remote>, CliError> {
    let (url, published) = match (&cli.remote, ws) {
        (Some(url), _) => (Some(url.clone()), None),
        (None, Some(ws)) => crate::host::lock::HostLock::holder(&ws.state_dir())
            .map_or((None, None), |h| (h.address, h.token)),
        (None, None) => (None, None),
    };
    let Some(u) = url else { return Ok(None) };

    if !reqwest::Url::parse(&u).is_ok_and(|p| matches!(p.scheme(), "http" | "https")) {
        return Err(CliError::bad_input(format!(
            "--remote `{u}` is not a URL; write it like http://127.0.0.1:7070"
        )));
    }
    // A token given explicitly wins; else the one the host made for its own user.
    let token = dashboard::remote_token(cli)?.or(published);
    Ok(Some(crate::client::Remote::new(&u, token)))
}

/// Says on stderr that a canary's charts will be empty when no host runs the workspace: they
/// are drawn from the traffic the hosting process measures, which a host started only for
/// this command has not seen. (Over `--remote`, or while `opsdeck serve` or the dashboard
/// hosts it, they are live.)
pub fn warn_if_charts_unhosted(cli: &Cli, ws: Option<&Workspace>) {
    let Some(ws) = ws.filter(|w| !w.canaries.is_empty()) else {
        return;
    };
    let hosted =
        crate::host::lock::HostLock::holder(&ws.state_dir()).is_some_and(|h| h.address.is_some());
    if cli.remote.is_none() && !hosted {
        let _ = writeln!(
            std::io::stderr(),
            "opsdeck: no host runs this workspace, so canary charts are empty (they show the traffic a running host measures); start `opsdeck serve` or the dashboard, or pass --remote"
        );
    }
}

/// Runs `f` against the runtime: the served one when there is one (so commands work while
/// `opsdeck serve` hosts the workspace), else a host started here for the moment.
pub async fn with_backend<F>(
    cli: &Cli,
    ws: Option<Workspace>,
    command: String,
    what: &str,
    f: F,
) -> CliResult
where
    F: AsyncFnOnce(&dyn crate::client::Backend) -> CliResult,
{
    if let Some(remote) = served(cli, ws.as_ref())? {
        return f(&remote).await.map_err(|e| e.context(what));
    }
    let Some(ws) = ws else {
        return Err(CliError::bad_input(format!(
            "{what}: no workspace and no --remote"
        )));
    };
    run::with_host(ws, command, what, async move |host| {
        f(&crate::client::Embedded::new(host.clone())).await
    })
    .await
}

impl From<WorkspaceError> for CliError {
    fn from(e: WorkspaceError) -> Self {
        CliError::bad_input(e.to_string())
    }
}

pub type CliResult = Result<u8, CliError>;

/// The exit code for a run that has ended.
pub fn exit_for(status: RunStatus) -> u8 {
    if status == RunStatus::Succeeded {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// Resolves and loads the workspace named by the flags, and starts logging into it. Falling
/// back to the bundled demo is said on stderr, so nobody runs commands against it unawares.
pub fn open_workspace_from(
    cli: &Cli,
    hosts: bool,
    json_logs: bool,
) -> Result<(Workspace, logging::LogGuard, workspace::Source), CliError> {
    let (dir, source) = workspace::resolve(cli.workspace.as_deref(), hosts)?;
    if source == workspace::Source::Demo && cli.command.is_some() {
        let _ = writeln!(
            std::io::stderr(),
            "opsdeck: no workspace here, using the bundled demo at {} (pass --workspace DIR or set OPSDECK_WORKSPACE)",
            dir.display()
        );
    }
    let ws = Workspace::open(&dir)?;
    // A workspace that has never been hosted gets no log directory from a read-only look.
    if hosts {
        std::fs::create_dir_all(ws.state_dir()).map_err(|e| {
            CliError::failed(format!("cannot create {}: {e}", ws.state_dir().display()))
        })?;
    }
    let logs = ws.state_dir().exists().then(|| ws.logs_dir());
    let guard = logging::init(
        logs.as_deref(),
        &ws.settings.log.level,
        cli.verbose,
        json_logs,
    );
    Ok((ws, guard, source))
}

/// Resolves and loads the workspace named by the flags, and starts logging into it.
pub fn open_workspace(
    cli: &Cli,
    hosts: bool,
    json_logs: bool,
) -> Result<(Workspace, logging::LogGuard), CliError> {
    open_workspace_from(cli, hosts, json_logs).map(|(ws, guard, _)| (ws, guard))
}

/// Opens a read connection on a workspace, usable whether or not another process hosts it.
pub fn reader(ws: &Workspace) -> Result<crate::store::Reader, CliError> {
    crate::host::open_reader(ws).map_err(CliError::from)
}

/// Sends one command down the host's control path as the person at this terminal.
pub async fn command(b: &dyn Backend, cmd: Cmd, reason: &str) -> Result<Outcome, CliError> {
    let actor = crate::client::local_actor(Via::Cli);
    Ok(b.control(cmd, &actor, reason).await?)
}

/// A `--limit`: a whole number from 1 to 10000.
pub fn parse_limit(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=10_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{s}` is not a limit; give a whole number from 1 to 10000"
        )),
    }
}

pub fn parse_run_id(s: &str) -> Result<RunId, String> {
    s.parse()
        .map_err(|e: crate::model::ParseIdError| e.to_string())
}

pub fn parse_dlq_id(s: &str) -> Result<DlqId, String> {
    s.parse()
        .map_err(|e: crate::model::ParseIdError| e.to_string())
}

/// Runs the parsed command line and returns the process exit code.
pub async fn dispatch(cli: Cli) -> u8 {
    let result = match &cli.command {
        Some(Command::Validate { files }) if files.is_empty() => {
            validate::workspace_files(cli.workspace.as_deref()).and_then(|f| validate::run(&f))
        }
        Some(Command::Validate { files }) => validate::run(files),
        Some(Command::Run(args)) => run::run(&cli, args).await,
        Some(Command::Runs(args)) => runs::run(&cli, args).await,
        Some(Command::Dlq(cmd)) => dlq::run(&cli, cmd).await,
        Some(Command::Events(args)) => events::run(&cli, args).await,
        Some(Command::Serve(args)) => serve::run(&cli, args).await,
        Some(Command::Canary(cmd)) => canary::run(&cli, cmd).await,
        Some(Command::Drill(args)) => drill::run(args),
        Some(Command::Token(cmd)) => token::run(cmd),
        Some(Command::Audit(args)) => audit::run(&cli, args).await,
        Some(Command::Workers(args)) => workers::run(&cli, args).await,
        Some(Command::Compare(args)) => compare::run(&cli, args).await,
        Some(Command::Assets(cmd)) => assets::run(&cli, cmd).await,
        Some(Command::Snapshot(args)) => snapshot::run(&cli, args).await,
        Some(Command::Report(args)) => report::run(&cli, args).await,
        Some(Command::Store(cmd)) => store::run(&cli, cmd),
        Some(Command::Stage(cmd)) => stage::run(&cli, cmd).await,
        None => dashboard::run(&cli).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if !e.message.is_empty() {
                let _ = writeln!(std::io::stderr(), "opsdeck: {}", e.message);
            }
            e.code
        }
    }
}
