//! Logs go to a daily-rolling file under the workspace's `.opsdeck/logs`, never to the
//! terminal a dashboard is drawing on; `opsdeck serve` also writes JSON lines to stderr for
//! journald and friends. `-v` raises the level to debug, `-vv` to trace; `OPSDECK_LOG` takes a
//! full `tracing` filter and wins over both.

use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, fmt};

/// Keeps the background log writer alive; logs written before it drops are flushed.
pub struct LogGuard(#[allow(dead_code)] Option<WorkerGuard>);

fn level(configured: &str, verbose: u8) -> &str {
    match verbose {
        0 => configured,
        1 => "debug",
        _ => "trace",
    }
}

/// Starts logging. Failing to create the log directory is not fatal: the command still runs.
pub fn init(
    logs_dir: Option<&Path>,
    configured_level: &str,
    verbose: u8,
    json_stderr: bool,
) -> LogGuard {
    let filter = || {
        std::env::var("OPSDECK_LOG")
            .ok()
            .and_then(|f| EnvFilter::try_new(f).ok())
            .unwrap_or_else(|| {
                EnvFilter::new(format!("warn,opsdeck={}", level(configured_level, verbose)))
            })
    };
    let mut guard = None;
    let file_layer = logs_dir.and_then(|dir| {
        std::fs::create_dir_all(dir).ok()?;
        let appender = tracing_appender::rolling::daily(dir, "opsdeck.log");
        let (writer, g) = tracing_appender::non_blocking(appender);
        guard = Some(g);
        Some(
            fmt::layer()
                .with_ansi(false)
                .with_writer(writer)
                .with_filter(filter()),
        )
    });
    let stderr_layer = json_stderr.then(|| {
        fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter())
    });
    let _ = tracing_subscriber::registry()
        .with(file_layer)
        .with(stderr_layer)
        .try_init();
    LogGuard(guard)
}
