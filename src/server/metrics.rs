//! `/metrics` in the OpenMetrics text format, read from the runtime at scrape time: runs by
//! pipeline and status, DLQ depth, breakers, canary weights, per-version traffic and latency,
//! analysis verdicts, and SSE clients.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::AppState;
use super::error::Failure;
use crate::client::Backend;
use crate::model::{ErrorCode, Event, EventKind, Verdict};

type Labels = Vec<(String, String)>;

/// A labelled family of `$ty`, registered under `$name`.
macro_rules! family {
    ($reg:ident, $ty:ty, $name:literal, $help:literal) => {{
        let f = Family::<Labels, $ty>::default();
        $reg.register($name, $help, f.clone());
        f
    }};
}
type Float = Gauge<f64, AtomicU64>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// Stage duration buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Stage attempts and their durations, counted from the event stream since the server started
/// (counters, as Prometheus expects: they restart with the process).
#[derive(Clone)]
pub struct StageMetrics {
    attempts: Family<Labels, Counter>,
    durations: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for StageMetrics {
    fn default() -> Self {
        StageMetrics {
            attempts: Family::default(),
            durations: Family::new_with_constructor(histogram),
        }
    }
}

impl StageMetrics {
    /// Counts a finished attempt that ran here: a worker sharing a store sees every worker's
    /// events, and counting them all would multiply the sum across workers. `me` is this
    /// worker's id (`None` on a single host, which runs everything it sees).
    pub fn observe(&self, e: &Event, me: Option<&str>) {
        if e.kind != EventKind::StageFinished {
            return;
        }
        if let (Some(me), Some(ran_on)) = (me, e.data["worker"].as_str())
            && ran_on != me
        {
            return;
        }
        let pipeline = e.data["pipeline"].as_str().unwrap_or("");
        let stage = e.stage.as_deref().unwrap_or("");
        let status = e.data["status"].as_str().unwrap_or("");
        self.attempts
            .get_or_create(&labels(&[
                ("pipeline", pipeline),
                ("stage", stage),
                ("status", status),
            ]))
            .inc();
        if let Some(ms) = e.data["duration_ms"].as_f64() {
            self.durations
                .get_or_create(&labels(&[("pipeline", pipeline), ("stage", stage)]))
                .observe(ms / 1000.0);
        }
    }

    /// Follows the host's events until it stops.
    pub fn collect(&self, host: &crate::host::Host) {
        let mut rx = host.subscribe();
        let me = self.clone();
        let worker = host.worker_id();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(e) => me.observe(&e, worker.as_deref()),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}

pub async fn scrape(
    State(s): State<AppState>,
    _p: super::auth::Public,
) -> Result<Response, Failure> {
    let mut reg = Registry::default();
    reg.register(
        "opsdeck_stage_attempts",
        "Stage attempts finished since the server started, by pipeline, stage and status",
        s.stages.attempts.clone(),
    );
    reg.register(
        "opsdeck_stage_duration_seconds",
        "Stage attempt durations since the server started, by pipeline and stage",
        s.stages.durations.clone(),
    );
    runs(&mut reg, &s).await?;
    canaries(&mut reg, &s);
    let sse = Gauge::<i64>::default();
    reg.register("opsdeck_sse_clients", "Open event streams", sse.clone());
    sse.set(s.sse_clients.load(Ordering::Relaxed) as i64);
    let mut out = String::new();
    encode(&mut out, &reg)
        .map_err(|e| Failure::new(ErrorCode::Internal, format!("cannot encode metrics: {e}")))?;
    Ok((
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

/// Runs by pipeline and status, the dead-letter depth, runs in flight and open breakers.
async fn runs(reg: &mut Registry, s: &AppState) -> Result<(), Failure> {
    let runs = family!(
        reg,
        Gauge,
        "opsdeck_runs",
        "Runs in the store by pipeline and status"
    );
    for (pipeline, status, n) in s.host.run_counts().await? {
        runs.get_or_create(&labels(&[("pipeline", &pipeline), ("status", &status)]))
            .set(n as i64);
    }
    let o = s.backend.overview().await?;
    let dlq = Gauge::<i64>::default();
    reg.register(
        "opsdeck_dlq_depth",
        "Entries in the dead-letter queue",
        dlq.clone(),
    );
    dlq.set(o.dlq_depth as i64);
    let running = Gauge::<i64>::default();
    reg.register(
        "opsdeck_runs_in_flight",
        "Runs active on this host",
        running.clone(),
    );
    running.set(o.running as i64);
    let breakers = family!(
        reg,
        Gauge,
        "opsdeck_breaker_open",
        "Circuit breakers not closed (1) by target and state"
    );
    for b in &o.breakers {
        breakers
            .get_or_create(&labels(&[("target", &b.target), ("state", &b.state)]))
            .set(1);
    }
    Ok(())
}

/// Each canary's weight, per-version traffic, P95 and error rate, and check verdicts.
fn canaries(reg: &mut Registry, s: &AppState) {
    let weight = family!(
        reg,
        Float,
        "opsdeck_canary_weight_percent",
        "The canary's share of traffic"
    );
    let requests = family!(
        reg,
        Gauge,
        "opsdeck_canary_rollout_requests",
        "Requests since the rollout began (what the checks judge), by version"
    );
    let verdicts = family!(
        reg,
        Gauge,
        "opsdeck_canary_check",
        "Analysis verdicts (1 for the current verdict of each check)"
    );
    let p95 = family!(
        reg,
        Float,
        "opsdeck_canary_p95_ms",
        "P95 latency since the rollout began, by version"
    );
    let errors = family!(
        reg,
        Float,
        "opsdeck_canary_error_rate",
        "Error rate since the rollout began, by version"
    );
    for c in s.host.canaries() {
        weight
            .get_or_create(&labels(&[("canary", &c.name)]))
            .set(c.weight);
        for (v, n) in &c.requests {
            requests
                .get_or_create(&labels(&[("canary", &c.name), ("version", v)]))
                .set(n.as_i64().unwrap_or(0));
        }
        for k in &c.checks {
            for v in [Verdict::Pass, Verdict::Fail, Verdict::Inconclusive] {
                let l = labels(&[
                    ("canary", &c.name),
                    ("check", &k.name),
                    ("verdict", v.as_str()),
                ]);
                verdicts.get_or_create(&l).set(i64::from(k.verdict == v));
            }
            let num = |key: &str| k.numbers.get(key).and_then(serde_json::Value::as_f64);
            for (v, key_p95, key_rate) in [
                ("legacy", "legacy_p95_ms", "legacy_rate"),
                ("canary", "canary_p95_ms", "canary_rate"),
            ] {
                if let Some(x) = num(key_p95) {
                    p95.get_or_create(&labels(&[("canary", &c.name), ("version", v)]))
                        .set(x);
                }
                if let Some(x) = num(key_rate) {
                    errors
                        .get_or_create(&labels(&[("canary", &c.name), ("version", v)]))
                        .set(x);
                }
            }
        }
    }
}
