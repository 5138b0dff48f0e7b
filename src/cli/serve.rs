//! `opsdeck serve`: hosts the workspace until stopped (Ctrl-C or SIGTERM) and serves the HTTP
//! API: schedules fire, interrupted runs resume, canaries run, and structured logs go to
//! stderr as JSON lines. On stop it takes no new work, lets requests in flight finish, and
//! flushes the store.

use std::net::SocketAddr;

use clap::Args;

use super::{Cli, CliError, CliResult, EXIT_OK, open_workspace};
use crate::host::{Host, HostOptions, Workspace};
use crate::server::{self, AppState};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: `server.bind` in opsdeck.toml, else 127.0.0.1:7070]
    #[arg(long, value_name = "ADDR", value_parser = parse_bind)]
    pub bind: Option<SocketAddr>,
    /// Refuse every control action, whatever the token's role
    #[arg(long)]
    pub read_only: bool,
}

/// An address to listen on: `127.0.0.1:7070`, `[::1]:7070` or `localhost:7070`.
fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            format!("`{s}` is not an address to listen on; write it like 127.0.0.1:7070")
        })
}

/// Refuses to host a workspace with invalid files, listing every problem.
pub fn check_problems(ws: &Workspace) -> Result<(), CliError> {
    if ws.problems.is_empty() {
        return Ok(());
    }
    Err(CliError::bad_input(format!(
        "the workspace has invalid files; fix them before hosting it:\n{}",
        crate::diag::render_all(&ws.problems)
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

pub async fn run(cli: &Cli, args: &ServeArgs) -> CliResult {
    let (ws, _log) = open_workspace(cli, true, true)?;
    check_problems(&ws)?;
    let mut config = ws.server.clone();
    if let Some(b) = args.bind {
        config.bind = b;
    }
    if config.tokens.is_empty() && !config.bind.ip().is_loopback() {
        return Err(CliError::bad_input(format!(
            "refusing to listen on {} without tokens: anyone who can reach it could control the runtime; add [[server.tokens]] to opsdeck.toml (`opsdeck token new NAME --role ROLE` makes one) or bind 127.0.0.1",
            config.bind
        )));
    }
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| CliError::failed(format!("cannot listen on {}: {e}", config.bind)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::failed(e.to_string()))?;
    let host = Host::start(ws, HostOptions::long_lived("opsdeck serve"))
        .await
        .map_err(|e| CliError::from(e).context("cannot serve the workspace"))?;
    host.publish_address(&format!("http://{addr}"));
    let mut state = AppState::new(host.clone(), config);
    state.read_only = args.read_only;
    let stop = state.stop.clone();
    tracing::info!(address = %addr, read_only = args.read_only, "serving the API");
    let served = axum::serve(listener, server::app(state))
        .with_graceful_shutdown(async move {
            stop_signal().await;
            // Event streams end now; requests in flight finish.
            stop.cancel();
        })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "the API server stopped");
    }
    tracing::info!("stopping: interrupting active runs, flushing the store");
    host.shutdown().await;
    Ok(EXIT_OK)
}
