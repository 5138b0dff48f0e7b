//! The accept loop: every connection gets a header-read timeout and counts against
//! `max_connections` until it closes; one over the cap is answered 429 and closed at once (so
//! a flood of idle sockets cannot starve real clients, and the refused learn why). Each
//! request knows its peer's address, which the limits on requests without a token key on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::{AppState, app};

/// How long requests in flight may finish once the server stops.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves the API of `state` on `listener` until `state.stop` is cancelled; requests in
/// flight then get a few seconds to finish (event streams end at once).
pub async fn serve(listener: TcpListener, state: AppState) {
    let stop = state.stop.clone();
    let permits = Arc::new(Semaphore::new(state.config.max_connections.max(1)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.header_timeout);
    let router = app(state);
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tokio::spawn(refuse(tcp));
            continue;
        };
        let service =
            TowerToHyperService::new(router.clone().layer(axum::Extension(ConnectInfo(peer))));
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => {
            tracing::warn!("requests still in flight after {DRAIN:?}; stopping anyway");
        }
    }
}

/// Answers a connection over the cap with a 429 in the usual envelope, and closes it.
async fn refuse(mut tcp: TcpStream) {
    let body = r#"{"data":null,"error":{"code":"rate_limited","message":"the server has as many connections open as it allows (max_connections); retry shortly","details":{"retry_after_s":1}}}"#;
    let head = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        // Read the request's head first: a client that gets an answer before it asked takes
        // it for a broken connection rather than a refusal.
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 16 * 1024 {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let _ = tcp.write_all(head.as_bytes()).await;
        let _ = tcp.write_all(body.as_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

/// The peer of a request served by [`serve`]; `None` when served some other way (a test
/// driving the router without a socket).
pub fn peer(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| *a)
}
