//! Stage executors. Each runs one attempt of one stage and reports what happened; retries,
//! breakers and recording are the caller's business.

pub mod command;
mod http;
mod simulate;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncRead;
use tokio_util::sync::CancellationToken;

use super::spec::{Stage, StageKind};
use crate::clock::Clock;
use crate::store::marker;

pub use command::{kill_orphan, process_start_time};
pub use http::client as http_client;

/// Which attempt this is, passed to commands as environment and to HTTP as headers.
#[derive(Debug, Clone)]
pub struct AttemptIds<'a> {
    pub run_id: i64,
    pub pipeline: &'a str,
    pub stage: &'a str,
    pub attempt: u32,
}

/// Everything an executor may use.
pub struct ExecCtx<'a> {
    pub input: &'a Value,
    pub timeout: Duration,
    pub cancel: &'a CancellationToken,
    pub clock: &'a dyn Clock,
    /// Outputs and stderr are kept up to this many bytes.
    pub limit: usize,
    pub workspace: &'a Path,
    pub http: &'a reqwest::Client,
    pub ids: AttemptIds<'a>,
    /// Told the pid of a spawned process, so it can be recorded for crash recovery.
    pub on_spawn: &'a (dyn Fn(u32) + Send + Sync),
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: &'static str,
    pub message: String,
    /// Whether another attempt might succeed (a timeout or 503 might; a 404 will not).
    pub retryable: bool,
    /// Whether this says the target is unhealthy, which counts towards its circuit breaker.
    pub target_unhealthy: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded,
    Failed(Failure),
    Cancelled,
}

/// The output of an attempt as it will be stored and handed to dependents.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub value: Value,
    pub truncated: bool,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecResult {
    pub outcome: Outcome,
    pub output: Option<Output>,
    pub stderr: Option<String>,
}

impl ExecResult {
    pub fn failed(f: Failure) -> Self {
        ExecResult {
            outcome: Outcome::Failed(f),
            output: None,
            stderr: None,
        }
    }
}

pub async fn execute(stage: &Stage, ctx: &ExecCtx<'_>) -> ExecResult {
    match &stage.kind {
        StageKind::Command(c) => command::run(c, ctx).await,
        StageKind::Http(h) => http::run(h, ctx).await,
        StageKind::Simulate(s) => simulate::run(s, ctx).await,
    }
}

/// The first `limit` bytes of a stream and the total length, reading it to the end so a
/// chatty process never blocks on a full pipe.
pub struct Captured {
    pub bytes: Vec<u8>,
    pub total: u64,
}

pub async fn capture<R: AsyncRead + Unpin>(r: R, limit: usize) -> Captured {
    let (bytes, total) = crate::proc::read_head(r, limit).await;
    Captured { bytes, total }
}

impl Captured {
    /// JSON when the whole stream parses as JSON, else text; cut streams are text with a
    /// marker. Empty streams give `None`.
    pub fn into_output(self) -> Option<Output> {
        if self.total == 0 {
            return None;
        }
        let truncated = self.total > self.bytes.len() as u64;
        if !truncated && let Ok(v) = serde_json::from_slice::<Value>(&self.bytes) {
            return Some(Output {
                value: v,
                truncated: false,
                bytes: self.total,
            });
        }
        let bytes = self.total;
        Some(Output {
            value: Value::String(self.into_text()),
            truncated,
            bytes,
        })
    }

    /// Lossy UTF-8 text with a truncation marker when the stream was longer than kept.
    pub fn into_text(self) -> String {
        let kept = self.bytes.len();
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.total > kept as u64 {
            text.push_str(&marker(kept, self.total));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn capture_keeps_the_head_and_counts_everything() {
        let data = vec![b'a'; 10_000];
        let c = capture(&data[..], 100).await;
        assert_eq!((c.bytes.len(), c.total), (100, 10_000));
        let text = c.into_text();
        assert!(
            text.ends_with("…[truncated by opsdeck: kept 100 of 10000 bytes]"),
            "{text}"
        );
        let json = capture(&b"{\"ok\": true}"[..], 100)
            .await
            .into_output()
            .unwrap();
        assert_eq!(json.value, serde_json::json!({"ok": true}));
        let plain = capture(&b"hello"[..], 100).await.into_output().unwrap();
        assert_eq!(plain.value, Value::String("hello".into()));
        assert!(capture(&b""[..], 100).await.into_output().is_none());
    }
}
