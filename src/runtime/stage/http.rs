//! `http` stages: one request; the response body is the output. 5xx, 429, timeouts and
//! connection errors are retryable and count against the target's breaker; other 4xx are not.

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{Captured, ExecCtx, ExecResult, Failure, Outcome};
use crate::runtime::spec::HttpStage;

/// The HTTP client stages share.
pub fn client() -> reqwest::Client {
    crate::net::client_builder().build().unwrap_or_default()
}

enum End {
    Done(Result<(StatusCode, Captured), reqwest::Error>),
    TimedOut,
    Cancelled,
}

pub async fn run(spec: &HttpStage, ctx: &ExecCtx<'_>) -> ExecResult {
    let method = Method::from_bytes(spec.method.as_bytes()).unwrap_or(Method::GET);
    let mut req = ctx
        .http
        .request(method.clone(), &spec.url)
        .header("x-opsdeck-run-id", ctx.ids.run_id.to_string())
        .header("x-opsdeck-stage", ctx.ids.stage)
        .header("x-opsdeck-attempt", ctx.ids.attempt.to_string());
    for (k, v) in &spec.headers {
        req = req.header(k, v);
    }
    req = match &spec.body {
        Some(Value::String(s)) => req.body(s.clone()),
        Some(v) => req.json(v),
        None if matches!(method, Method::POST | Method::PUT | Method::PATCH) => req.json(ctx.input),
        None => req,
    };
    let limit = ctx.limit;
    let call = async move {
        let resp = req.send().await?;
        let status = resp.status();
        let mut body = resp.bytes_stream();
        let mut captured = Captured {
            bytes: Vec::new(),
            total: 0,
        };
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            captured.total += chunk.len() as u64;
            let room = limit.saturating_sub(captured.bytes.len());
            captured
                .bytes
                .extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        Ok((status, captured))
    };
    let end = tokio::select! {
        r = call => End::Done(r),
        () = ctx.clock.sleep(ctx.timeout) => End::TimedOut,
        () = ctx.cancel.cancelled() => End::Cancelled,
    };
    // Errors are read by every viewer: the URL is shown without credentials or query.
    let url = &crate::net::redacted_url(&spec.url);
    match end {
        End::Done(Ok((status, body))) => {
            let output = body.into_output();
            let outcome = if status.is_success() || status.is_redirection() {
                Outcome::Succeeded
            } else {
                let unhealthy = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
                Outcome::Failed(Failure {
                    code: "http_status",
                    message: format!("{} {url} answered {status}", spec.method),
                    retryable: unhealthy,
                    target_unhealthy: unhealthy,
                })
            };
            ExecResult {
                outcome,
                output,
                stderr: None,
            }
        }
        End::Done(Err(e)) => {
            let e = e.without_url();
            let (code, what) = if e.is_connect() {
                ("connect", "could not connect to")
            } else if e.is_timeout() {
                ("timeout", "timed out calling")
            } else {
                ("http_error", "failed calling")
            };
            // The innermost cause says what happened ("Connection refused"); the outer
            // layers only say where.
            let mut cause: &dyn std::error::Error = &e;
            while let Some(inner) = cause.source() {
                cause = inner;
            }
            let cause = cause.to_string();
            ExecResult::failed(Failure {
                code,
                message: format!("{what} {url}: {cause}"),
                retryable: true,
                target_unhealthy: true,
            })
        }
        End::TimedOut => ExecResult::failed(Failure {
            code: "timeout",
            message: format!(
                "{} {url} did not answer within {} ms",
                spec.method,
                ctx.timeout.as_millis()
            ),
            retryable: true,
            target_unhealthy: true,
        }),
        End::Cancelled => ExecResult {
            outcome: Outcome::Cancelled,
            output: None,
            stderr: None,
        },
    }
}
