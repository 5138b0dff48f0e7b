//! [`Backend`] over the HTTP API of `opsdeck serve`: each call is one request in the
//! `{"data", "error"}` envelope; events come over Server-Sent Events, resumed from the last
//! sequence number seen, with reconnects backing off from 0.5 s to 10 s. While the server is
//! unreachable the stream says so (`Connected(false)`) and the dashboard keeps its last data.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Backend, EventStream, Result, StreamItem};
use crate::model::asset::{AssetDetail, AssetSummary};
use crate::model::{
    ActionRecord, Actor, ApiError, AuditQuery, AuditRecord, CanaryAction, CanaryStatus, Command,
    DlqEntry, DlqId, DlqQuery, ErrorCode, Event, LogFilter, MAX_DLQ_LIMIT, Outcome, Overview, Page,
    Run, RunId, RunQuery, RunSummary, SeriesPoint, StageIo, Via,
};

/// The first and the longest wait between reconnects.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// A runtime served by `opsdeck serve` at `base` (like `http://127.0.0.1:7070`).
#[derive(Clone)]
pub struct Remote {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    /// Who a control request says it is for (see [`CLAIM_ACTOR`]).
    claim: Option<(String, Via)>,
    /// An event stream silent this long is taken for dead (the server sends a heartbeat every
    /// 15 s): it is dropped, the data marked stale, and the stream resumed.
    silence: Duration,
}

/// The largest answer read from a server: a run with every attempt's input and output (each
/// at most the store's output limit) fits many times over.
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;

/// Three heartbeats.
const SILENCE: Duration = Duration::from_secs(45);

/// The longest event frame taken from a server: a stream that sends more without ending a
/// frame is dropped rather than buffered without bound.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// Why a stream's bytes were cut off.
fn cut(why: &str) -> std::io::Error {
    std::io::Error::other(why.to_string())
}

/// The bytes of an event stream, ended when the server falls silent for `silence` or sends a
/// frame longer than [`MAX_FRAME_BYTES`].
fn guarded(
    bytes: impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
    silence: Duration,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send {
    // (stream, bytes since the last frame boundary, last byte was a newline, ended)
    let start = (Box::pin(bytes), 0usize, false, false);
    futures::stream::unfold(
        start,
        move |(mut s, mut run, mut newline, ended)| async move {
            if ended {
                return None;
            }
            let item = match tokio::time::timeout(silence, s.next()).await {
                Err(_) => {
                    return Some((Err(cut("the server fell silent")), (s, run, newline, true)));
                }
                Ok(None) => return None,
                Ok(Some(Err(e))) => {
                    return Some((Err(std::io::Error::other(e)), (s, run, newline, true)));
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            for &b in &item {
                match b {
                    b'\n' if newline => run = 0,
                    b'\n' => newline = true,
                    b'\r' => {}
                    _ => {
                        newline = false;
                        run += 1;
                    }
                }
            }
            if run > MAX_FRAME_BYTES {
                return Some((Err(cut("an event frame too long")), (s, run, newline, true)));
            }
            Some((Ok(item), (s, run, newline, false)))
        },
    )
}

/// Headers a client names its user and tool in; a server only trusts them without tokens.
pub const CLAIM_ACTOR: &str = "x-opsdeck-actor";
pub const CLAIM_VIA: &str = "x-opsdeck-via";

fn unreachable(base: &str, e: &reqwest::Error) -> ApiError {
    ApiError::new(
        ErrorCode::Upstream,
        format!("cannot reach the opsdeck server at {base}: {}", short(e)),
    )
}

/// reqwest's error without its chain of sources repeated.
fn short(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "connection refused or unreachable".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else {
        e.to_string()
    }
}

impl Remote {
    pub fn new(base: &str, token: Option<String>) -> Remote {
        let http = crate::net::client_builder()
            .connect_timeout(Duration::from_secs(5))
            // The server closes a connection quiet for 30 s; letting idle ones go sooner means
            // a request is never sent on a connection the server is closing.
            .pool_idle_timeout(Duration::from_secs(20))
            .build()
            .unwrap_or_default();
        Remote {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
            claim: None,
            silence: SILENCE,
        }
    }

    /// Takes an event stream silent for `silence` for dead (tests use less than the 45 s).
    #[must_use]
    pub fn with_silence(mut self, silence: Duration) -> Remote {
        self.silence = silence;
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some((name, via)) = &self.claim {
            r = r.header(CLAIM_VIA, via.as_str());
            // Only a name a header can carry; a server without one records `local`.
            if name.len() <= 64 && name.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
                r = r.header(CLAIM_ACTOR, name);
            }
        }
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send<T: DeserializeOwned>(&self, r: reqwest::RequestBuilder) -> Result<T> {
        let resp = r
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| unreachable(&self.base, &e))?;
        let status = resp.status();
        let bytes = crate::net::read_capped(resp, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::Upstream,
                    format!("the server at {}: {e}", self.base),
                )
            })?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(ErrorCode::Upstream, format!("the server at {} answered {status} with something other than the opsdeck envelope: {e}", self.base))
        })?;
        if let Some(err) = body.get("error").filter(|e| !e.is_null()) {
            let code = err["code"]
                .as_str()
                .and_then(|c| c.parse().ok())
                .unwrap_or(ErrorCode::Internal);
            let mut message = err["message"]
                .as_str()
                .unwrap_or("the server refused the request")
                .to_string();
            if code == ErrorCode::Unauthenticated {
                message.push_str(" (give opsdeck the token with OPSDECK_TOKEN or --token-file)");
            }
            return Err(ApiError::new(code, message));
        }
        serde_json::from_value(body.get("data").cloned().unwrap_or(Value::Null)).map_err(|e| {
            ApiError::new(
                ErrorCode::Upstream,
                format!(
                    "the server at {} sent data this opsdeck does not understand: {e}",
                    self.base
                ),
            )
        })
    }

    /// Two runs compared by the server (`GET /v1/compare`), with its pipeline's settings.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    async fn post<T: DeserializeOwned, B: Serialize>(&self, path: &str, body: &B) -> Result<T> {
        self.send(self.request(reqwest::Method::POST, path).json(body))
            .await
    }

    /// A control request whose answer only matters for its error.
    async fn act<B: Serialize>(&self, path: &str, body: &B) -> Result<()> {
        self.post::<Value, B>(path, body).await.map(drop)
    }

    /// A run or dead-letter id in an answer.
    fn id_in(v: &Value, key: &str) -> Result<i64> {
        v[key].as_i64().ok_or_else(|| {
            ApiError::new(
                ErrorCode::Upstream,
                format!("the server's answer has no `{key}`: {v}"),
            )
        })
    }

    /// One SSE connection from `since`: forwards events until it drops. Returns the last
    /// sequence number delivered, and whether the receiver is gone.
    async fn stream_once(&self, since: u64, tx: &mpsc::Sender<StreamItem>) -> (u64, bool) {
        let mut last = since;
        let resp = self
            .request(reqwest::Method::GET, "/v1/events")
            .header("last-event-id", since.to_string())
            .send()
            .await;
        let Ok(resp) = resp else { return (last, false) };
        if resp.status() == reqwest::StatusCode::BAD_REQUEST
            && let Ok(o) = self.overview().await
            && o.last_seq < since
        {
            // Our place is beyond the server's log (it was replaced): go on from its end.
            let gone = tx
                .send(StreamItem::Reset {
                    last_seq: o.last_seq,
                })
                .await
                .is_err();
            return (o.last_seq, gone);
        }
        if !resp.status().is_success() {
            return (last, false);
        }
        if tx.send(StreamItem::Connected(true)).await.is_err() {
            return (last, true);
        }
        // Frames are parsed by `eventsource-stream` (multi-line data, comments such as the
        // heartbeats, UTF-8 split across chunks); each data is one opsdeck event.
        let mut frames = Box::pin(guarded(resp.bytes_stream(), self.silence).eventsource());
        while let Some(Ok(frame)) = frames.next().await {
            if frame.event == "reset" {
                // The server will not replay from where we were: go on from where it is.
                let Some(last_seq) = serde_json::from_str::<Value>(&frame.data)
                    .ok()
                    .and_then(|v| v["last_seq"].as_u64())
                else {
                    continue;
                };
                last = last_seq;
                if tx.send(StreamItem::Reset { last_seq }).await.is_err() {
                    return (last, true);
                }
                continue;
            }
            let Ok(e) = serde_json::from_str::<Event>(&frame.data) else {
                continue;
            };
            if e.seq <= last {
                continue;
            }
            last = e.seq;
            if tx.send(StreamItem::Event(Arc::new(e))).await.is_err() {
                return (last, true);
            }
        }
        (last, false)
    }
}

#[async_trait]
impl Backend for Remote {
    async fn overview(&self) -> Result<Overview> {
        self.get("/v1/overview").await
    }

    fn events(&self, since: Option<u64>) -> EventStream {
        let (tx, rx) = mpsc::channel(1024);
        let me = self.clone();
        tokio::spawn(async move {
            let mut since = match since {
                Some(s) => s,
                None => me.overview().await.map_or(0, |o| o.last_seq),
            };
            let mut wait = BACKOFF_MIN;
            loop {
                let (last, gone) = me.stream_once(since, &tx).await;
                if gone {
                    return;
                }
                if last > since {
                    wait = BACKOFF_MIN;
                }
                since = last;
                if tx.send(StreamItem::Connected(false)).await.is_err() {
                    return;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(BACKOFF_MAX);
            }
        });
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|i| (i, rx))
        }))
    }

    async fn recent_events(&self, limit: usize) -> Result<Vec<Event>> {
        let last = self.overview().await?.last_seq;
        self.events_after(last.saturating_sub(limit as u64), limit)
            .await
    }

    async fn events_after(&self, since: u64, limit: usize) -> Result<Vec<Event>> {
        self.get(&format!(
            "/v1/events/log?since={since}&limit={}",
            limit.clamp(1, 10_000)
        ))
        .await
    }

    async fn log_events_after(
        &self,
        filter: &LogFilter,
        since: u64,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let mut path = format!(
            "/v1/events/log?since={since}&limit={}",
            limit.clamp(1, 10_000)
        );
        if let Some(run) = filter.run {
            let _ = write!(path, "&run={run}");
        }
        if let Some(until) = filter.until {
            let _ = write!(path, "&until={until}");
        }
        if !filter.kinds.is_empty() {
            let kinds: Vec<&str> = filter.kinds.iter().map(|k| k.as_str()).collect();
            let _ = write!(path, "&kind={}", kinds.join(","));
        }
        self.get(&path).await
    }

    async fn runs(&self, q: RunQuery) -> Result<Page<RunSummary>> {
        let mut params: Vec<(&str, String)> = vec![
            ("limit", q.limit.clamp(1, 1_000).to_string()),
            ("offset", q.offset.to_string()),
            ("sort", q.sort.label().to_string()),
        ];
        if let Some(p) = q.pipeline {
            params.push(("pipeline", p));
        }
        if let Some(s) = q.status {
            params.push(("status", s.as_str().to_string()));
        }
        if let Some(t) = q.text {
            params.push(("text", t));
        }
        if let Some(b) = q.before {
            params.push(("cursor", b.0.to_string()));
        }
        if q.tests {
            params.push(("tests", "true".into()));
        }
        self.get(&format!("/v1/runs?{}", query_string(&params)))
            .await
    }

    async fn run(&self, id: RunId) -> Result<Run> {
        self.get(&format!("/v1/runs/{}", id.0)).await
    }

    async fn stage_io(&self, id: RunId, stage: &str) -> Result<StageIo> {
        self.get(&format!("/v1/runs/{}/stages/{}", id.0, encode(stage)))
            .await
    }

    async fn dlq(&self, q: DlqQuery) -> Result<Page<DlqEntry, DlqId>> {
        let mut path = format!("/v1/dlq?limit={}", q.limit.clamp(1, MAX_DLQ_LIMIT));
        if let Some(b) = q.before {
            let _ = write!(path, "&cursor={}", b.0);
        }
        if let Some(r) = q.run {
            let _ = write!(path, "&run={}", r.0);
        }
        self.get(&path).await
    }

    async fn dlq_entry(&self, id: DlqId) -> Result<DlqEntry> {
        self.get(&format!("/v1/dlq/{}", id.0)).await
    }

    async fn canaries(&self) -> Result<Vec<CanaryStatus>> {
        self.get("/v1/canaries").await
    }

    async fn canary_series(
        &self,
        name: &str,
        step_s: i64,
        points: usize,
    ) -> Result<Vec<SeriesPoint>> {
        let window = step_s.max(1) * points as i64;
        self.get(&format!(
            "/v1/canaries/{}/series?window={window}s&points={points}",
            encode(name)
        ))
        .await
    }

    async fn compare(
        &self,
        base: RunId,
        candidate: RunId,
    ) -> Result<crate::model::compare::Comparison> {
        self.get(&format!(
            "/v1/compare?base={}&candidate={}",
            base.0, candidate.0
        ))
        .await
    }

    async fn pipeline_stats(
        &self,
        name: &str,
        runs: usize,
    ) -> Result<crate::model::lens::PipelineStats> {
        self.get(&format!("/v1/pipelines/{}/stats?runs={runs}", encode(name)))
            .await
    }

    async fn assets(&self) -> Result<Vec<AssetSummary>> {
        self.get("/v1/assets").await
    }

    async fn asset(&self, name: &str, version: Option<u32>) -> Result<AssetDetail> {
        let query = version.map(|v| format!("?version={v}")).unwrap_or_default();
        self.get(&format!("/v1/assets/{}{query}", encode(name)))
            .await
    }

    async fn workers(&self) -> Result<Vec<crate::model::WorkerInfo>> {
        self.get("/v1/workers").await
    }

    async fn audit(&self, q: AuditQuery) -> Result<Vec<AuditRecord>> {
        let mut params: Vec<(&str, String)> = vec![("limit", q.limit.to_string())];
        if let Some(t) = q.since {
            params.push(("since", t.to_string()));
        }
        if let Some(a) = q.actor {
            params.push(("actor", a));
        }
        if let Some(a) = q.action {
            params.push(("action", a));
        }
        self.get(&format!("/v1/audit?{}", query_string(&params)))
            .await
    }

    /// Each command is its route. The server names the actor from the token; the actor's
    /// name and `via` go along only as a claim, which a server without tokens (loopback, local
    /// users) records.
    async fn control(&self, cmd: Command, actor: &Actor, reason: &str) -> Result<Outcome> {
        let me = self.claiming(actor);
        me.relay(cmd, reason).await
    }
}

impl Remote {
    /// This client, sending `actor` as the claimed caller of its control requests.
    fn claiming(&self, actor: &Actor) -> Remote {
        let mut me = self.clone();
        me.claim = Some((actor.name.clone(), actor.via));
        me
    }

    async fn relay(&self, cmd: Command, reason: &str) -> Result<Outcome> {
        let body = json!({ "reason": reason });
        Ok(match cmd {
            Command::StartRun(req) => {
                let v: Value = self
                    .post(
                        &format!("/v1/pipelines/{}/runs", encode(&req.pipeline)),
                        &json!({ "params": req.params, "overrides": req.overrides,
                                 "test": req.test, "reason": reason }),
                    )
                    .await?;
                Outcome::RunStarted {
                    run: RunId(Self::id_in(&v, "id")?),
                }
            }
            Command::CancelRun { run } => {
                self.act(&format!("/v1/runs/{}/cancel", run.0), &body)
                    .await?;
                Outcome::RunCancelled { run }
            }
            Command::RetryRun { run } => {
                self.act(&format!("/v1/runs/{}/retry", run.0), &body)
                    .await?;
                Outcome::RunRetried { run }
            }
            Command::ResumeRun { run } => {
                self.act(&format!("/v1/runs/{}/resume", run.0), &body)
                    .await?;
                Outcome::RunResumed { run }
            }
            Command::Requeue { entry } => {
                let v: Value = self
                    .post(&format!("/v1/dlq/{}/requeue", entry.0), &body)
                    .await?;
                Outcome::Requeued {
                    entry,
                    run: RunId(Self::id_in(&v, "run_id")?),
                }
            }
            Command::Discard { entry } => {
                let v: Value = self
                    .post(&format!("/v1/dlq/{}/discard", entry.0), &body)
                    .await?;
                Outcome::Discarded {
                    entry: DlqId(Self::id_in(&v, "id")?),
                    run: RunId(Self::id_in(&v, "run_id")?),
                }
            }
            Command::Canary {
                canary,
                action,
                expect,
            } => {
                let weight = match action {
                    CanaryAction::SetWeight(w) => Some(w),
                    _ => None,
                };
                let record: ActionRecord = self
                    .post(
                        &format!("/v1/canaries/{}/actions", encode(&canary)),
                        &json!({ "action": action.name(), "weight": weight, "reason": reason, "expect": expect }),
                    )
                    .await?;
                Outcome::Canary { canary, record }
            }
            Command::Fault { canary, fault } => {
                self.act(
                    &format!("/v1/canaries/{}/fault", encode(&canary)),
                    &json!({ "error_rate": fault.error_rate, "latency_ms": fault.latency_ms, "reason": reason }),
                )
                .await?;
                Outcome::Fault { canary, fault }
            }
            Command::PutAsset { name, content, pin } => {
                self.post(
                    &format!("/v1/assets/{}", encode(&name)),
                    &json!({ "content": content, "pin": pin, "reason": reason }),
                )
                .await?
            }
            Command::PinAsset { name, version } => {
                self.post(
                    &format!("/v1/assets/{}/pin", encode(&name)),
                    &json!({ "version": version, "reason": reason }),
                )
                .await?
            }
            Command::RollbackAsset { name } => {
                self.post(&format!("/v1/assets/{}/rollback", encode(&name)), &body)
                    .await?
            }
        })
    }
}

/// `k=v&k=v` with every value percent-encoded.
fn query_string(params: &[(&str, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes a path segment or query value.
fn encode(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
