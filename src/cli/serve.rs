//! `opsdeck serve`: hosts the workspace until stopped (Ctrl-C or SIGTERM) and serves the HTTP
//! API: schedules fire, interrupted runs resume, canaries run, and structured logs go to
//! stderr as JSON lines. On stop it takes no new work, lets requests in flight finish, and
//! flushes the store.

use std::io::Write as _;
use std::net::SocketAddr;

use clap::Args;

use super::{Cli, CliError, CliResult, EXIT_OK, open_workspace};
use crate::config::{ServerConfig, Token};
use crate::host::{Host, HostOptions, Workspace};
use crate::model::{Role, Via};
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

/// Which signal asked a host to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Ctrl-C (SIGINT): a foreground command exits 130.
    Interrupt,
    Terminate,
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn stop_signal() -> Stop {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Stop::Interrupt,
        () = term => Stop::Terminate,
    }
}

/// A host's API being served: stop it with [`Endpoint::stop`].
pub struct Endpoint {
    pub addr: SocketAddr,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// How a host serves its API.
pub struct Serving {
    pub config: ServerConfig,
    pub read_only: bool,
    /// Make a fresh admin token for the user running the host, published only in the
    /// owner-readable `host.json`: always for the dashboard (its endpoint exists for that
    /// user's commands alone), and for `opsdeck serve` when it takes tokens anyway.
    pub session_token: bool,
}

/// Serves the API of `host` on `listener` in the background and publishes the address (and
/// the session token) so commands on this workspace act through the host.
pub fn spawn_api(
    host: &Host,
    listener: tokio::net::TcpListener,
    serving: Serving,
) -> Result<Endpoint, CliError> {
    let Serving {
        mut config,
        read_only,
        session_token,
    } = serving;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::failed(e.to_string()))?;
    let token = if session_token {
        let token = server::auth::generate_token().map_err(|e| {
            CliError::failed(format!("cannot read random bytes from /dev/urandom: {e}"))
        })?;
        config.tokens.push(Token {
            name: crate::client::local_actor(Via::Api).name,
            role: Role::Admin,
            sha256: server::auth::sha256(&token),
        });
        Some(token)
    } else {
        None
    };
    let mut state = AppState::new(host.clone(), config);
    state.read_only = read_only;
    let stop = state.stop.clone();
    // Event streams end at once when it stops; requests in flight finish.
    let task = tokio::spawn(server::serve(listener, state));
    host.publish_address(&format!("http://{addr}"), token.as_deref());
    Ok(Endpoint { addr, stop, task })
}

impl Endpoint {
    /// Stops taking requests, ends event streams and waits for requests in flight.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
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
    // A second `serve` of the workspace is told so, not that the first one's port is taken.
    if let Some(h) = crate::host::lock::HostLock::lasting_holder(&ws.state_dir()) {
        return Err(CliError::from(crate::runtime::RuntimeError::Hosted(
            crate::host::lock::LockError::Held(Some(h)).to_string(),
        ))
        .context("cannot serve the workspace"));
    }
    let from = if args.bind.is_some() {
        "--bind"
    } else {
        "`bind` in [server] of opsdeck.toml"
    };
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                CliError::bad_input(format!(
                    "cannot listen on {} ({from}): another program listens there; choose a free port",
                    config.bind
                ))
            } else {
                CliError::failed(format!("cannot listen on {} ({from}): {e}", config.bind))
            }
        })?;
    let host = Host::start(ws, HostOptions::long_lived("opsdeck serve"))
        .await
        .map_err(|e| CliError::from(e).context("cannot serve the workspace"))?;
    // Said before the address is published, so whoever finds the server has been warned.
    let bound = listener.local_addr().unwrap_or(config.bind);
    if !bound.ip().is_loopback() {
        let _ = writeln!(
            std::io::stderr(),
            "warning: serving on {bound} in plain HTTP: tokens and data cross the network in clear text unless a TLS proxy (Caddy, nginx) fronts this server; see the README's \"Running on a server\""
        );
    }
    let session_token = !config.tokens.is_empty();
    let endpoint = spawn_api(
        &host,
        listener,
        Serving {
            config,
            read_only: args.read_only,
            session_token,
        },
    )?;
    tracing::info!(address = %endpoint.addr, read_only = args.read_only, "serving the API");
    stop_signal().await;
    endpoint.stop().await;
    tracing::info!("stopping: interrupting active runs, flushing the store");
    host.shutdown().await;
    Ok(EXIT_OK)
}

/// A control endpoint on loopback for a host that is not `opsdeck serve` (the dashboard, a
/// foreground `opsdeck run`), so the user's CLI commands on this workspace act through it (a
/// stuck run can be cancelled from another shell); without one (no free port) they are
/// refused as before, and the host still works.
pub async fn local_endpoint(host: &Host, serving: Serving) -> Option<Endpoint> {
    let bind = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let listener = match tokio::net::TcpListener::bind(bind).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen on loopback; CLI commands on this workspace are refused while this host runs");
            return None;
        }
    };
    match spawn_api(host, listener, serving) {
        Ok(e) => {
            tracing::info!(address = %e.addr, "serving a control endpoint on loopback");
            Some(e)
        }
        Err(e) => {
            tracing::warn!(error = %e.message, "cannot serve a control endpoint on loopback");
            None
        }
    }
}
