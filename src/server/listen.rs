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
    let header_timeout = state.config.header_timeout;
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
        let io = Quiet::new(tcp, header_timeout);
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
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

/// A connection that is cut when it goes quiet: its first bytes must come within
/// `header_timeout`, and afterwards no read or write may wait longer than [`IDLE`] (an event
/// stream writes a heartbeat every 15 s, so only a stalled client is cut). Without it a socket
/// that never sends a byte would hold a connection slot for ever, and a body that stops half
/// way would hold its request.
pub struct Quiet<T> {
    io: T,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

/// The longest a connection may go without a byte either way once it has started.
pub const IDLE: Duration = Duration::from_secs(30);

impl<T> Quiet<T> {
    pub fn new(io: T, first: Duration) -> Quiet<T> {
        Quiet {
            io,
            deadline: Box::pin(tokio::time::sleep(first)),
        }
    }

    fn touch(&mut self) {
        self.deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + IDLE);
    }

    fn expired(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        std::future::Future::poll(self.deadline.as_mut(), cx).is_ready()
    }
}

fn quiet_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "the client went quiet")
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Quiet<T> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut me.io).poll_read(cx, buf) {
            std::task::Poll::Ready(r) => {
                if buf.filled().len() > before {
                    me.touch();
                }
                std::task::Poll::Ready(r)
            }
            std::task::Poll::Pending if me.expired(cx) => {
                std::task::Poll::Ready(Err(quiet_error()))
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Quiet<T> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        match std::pin::Pin::new(&mut me.io).poll_write(cx, buf) {
            std::task::Poll::Ready(Ok(n)) => {
                if n > 0 {
                    me.touch();
                }
                std::task::Poll::Ready(Ok(n))
            }
            std::task::Poll::Pending if me.expired(cx) => {
                std::task::Poll::Ready(Err(quiet_error()))
            }
            other => other,
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
