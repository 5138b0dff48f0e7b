//! `opsdeck serve`: hosts the workspace until stopped (Ctrl-C or SIGTERM): schedules fire,
//! interrupted runs resume, and structured logs go to stderr as JSON lines.

use clap::Args;

use super::{Cli, CliError, CliResult, EXIT_OK, open_workspace};
use crate::runtime::workspace::Workspace;
use crate::runtime::{Host, HostOptions};

#[derive(Debug, Args)]
pub struct ServeArgs {}

/// Refuses to host a workspace with invalid pipeline files, listing every problem.
pub fn check_problems(ws: &Workspace) -> Result<(), CliError> {
    if ws.problems.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = ws.problems.iter().map(ToString::to_string).collect();
    Err(CliError::bad_input(format!(
        "the workspace has invalid files; fix them before hosting it:\n{}",
        lines.join("\n")
    )))
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

pub async fn run(cli: &Cli, _args: &ServeArgs) -> CliResult {
    let (ws, _log) = open_workspace(cli, true, true)?;
    check_problems(&ws)?;
    let opts = HostOptions::long_lived("opsdeck serve");
    let host = Host::start(ws, opts)
        .await
        .map_err(|e| CliError::from(e).context("cannot serve the workspace"))?;
    stop_signal().await;
    tracing::info!("stopping: interrupting active runs, flushing the store");
    host.shutdown().await;
    Ok(EXIT_OK)
}
