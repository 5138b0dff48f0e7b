//! The handlers. Reads need any token; control routes need `operator` and go through
//! [`control`], which checks the role and rate, does the work, and audits the outcome.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AppState;
use super::auth::{Principal, now_ts};
use super::config::Role;
use super::error::{ApiResult, Body, Failure, ok};
use crate::canary::live::Observation;
use crate::client::{Backend, StreamItem};
use crate::model::{CanaryAction, DlqId, ErrorCode, RunId, RunQuery, RunSort, RunStatus, StartRun};
use crate::store::AuditRecord;

/// Heartbeats keep proxies from closing an idle event stream.
const HEARTBEAT: Duration = Duration::from_secs(15);

fn run_id(s: &str) -> Result<RunId, Failure> {
    s.parse()
        .map_err(|e: crate::model::ParseIdError| Failure::new(ErrorCode::NotFound, e.to_string()))
}

fn dlq_id(s: &str) -> Result<DlqId, Failure> {
    s.parse()
        .map_err(|e: crate::model::ParseIdError| Failure::new(ErrorCode::NotFound, e.to_string()))
}

/// Checks the role and the rate, runs `work`, and audits what happened.
async fn control<T, F>(
    s: &AppState,
    p: &Principal,
    (action, target): (&str, String),
    reason: &str,
    work: F,
) -> ApiResult
where
    T: serde::Serialize,
    F: Future<Output = Result<T, Failure>>,
{
    p.require(s, Role::Operator, action, &target).await?;
    let result = work.await;
    let outcome = match &result {
        Ok(_) => "ok".to_string(),
        Err(f) => format!("failed: {}", f.error.code),
    };
    s.host
        .audit(AuditRecord {
            at: now_ts(),
            actor: p.name.clone(),
            role: Some(p.role.as_str().to_string()),
            action: action.to_string(),
            target,
            reason: reason.to_string(),
            outcome,
            details: json!({}),
        })
        .await;
    result.map(ok)
}

/// A known path with a method it does not take.
pub async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> Failure {
    Failure::new(
        ErrorCode::NotFound,
        format!(
            "`{method} {}` is not a route; see the README's API reference for the methods each path takes",
            uri.path()
        ),
    )
}

pub async fn not_found() -> Failure {
    Failure::new(
        ErrorCode::NotFound,
        "there is no such route; the API lives under /v1 (see the README's API reference)",
    )
}

pub async fn healthz(State(s): State<AppState>) -> ApiResult {
    let o = s.backend.overview().await.map_err(|e| {
        Failure::new(
            ErrorCode::Upstream,
            format!("the store does not answer: {e}"),
        )
    })?;
    Ok(ok(json!({ "status": "ok", "last_seq": o.last_seq })))
}

pub async fn overview(State(s): State<AppState>, p: Principal) -> ApiResult {
    let mut o = s.backend.overview().await?;
    // The workspace's name, not its path on the server.
    o.workspace = std::path::Path::new(&o.workspace)
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    o.backend = "remote".into();
    // Read-only servers and viewer tokens can do nothing: say so, so dashboards hide controls.
    o.role = Some(
        if s.read_only {
            "viewer"
        } else {
            p.role.as_str()
        }
        .to_string(),
    );
    Ok(ok(o))
}

pub async fn pipelines(State(s): State<AppState>, _p: Principal) -> ApiResult {
    Ok(ok(s.backend.overview().await?.pipelines))
}

pub async fn pipeline(
    State(s): State<AppState>,
    _p: Principal,
    Path(name): Path<String>,
) -> ApiResult {
    let all = s.backend.overview().await?.pipelines;
    let names: Vec<String> = all.iter().map(|p| p.name.clone()).collect();
    all.into_iter()
        .find(|p| p.name == name)
        .map(ok)
        .ok_or_else(|| {
            Failure::new(
                ErrorCode::NotFound,
                format!(
                    "there is no pipeline `{name}`; pipelines: {}",
                    names.join(", ")
                ),
            )
        })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    #[serde(default)]
    params: Map<String, Value>,
}

pub async fn start_run(
    State(s): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    body: Body<StartBody>,
) -> ApiResult {
    let Body(body) = body;
    // The workspace knows its pipelines (and says which there are); no store read needed.
    s.host
        .workspace()
        .pipeline(&name)
        .map_err(|m| Failure::new(ErrorCode::NotFound, m))?;
    let req = StartRun {
        pipeline: name.clone(),
        params: body.params,
    };
    let b = s.backend.clone();
    control(
        &s,
        &p,
        ("run.start", format!("pipeline/{name}")),
        "",
        async move {
            let id = b.start_run(req).await?;
            Ok(json!({ "id": id }))
        },
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsParams {
    pipeline: Option<String>,
    status: Option<RunStatus>,
    text: Option<String>,
    sort: Option<RunSort>,
    limit: Option<usize>,
    cursor: Option<i64>,
    offset: Option<u64>,
}

pub async fn runs(
    State(s): State<AppState>,
    _p: Principal,
    q: Result<Query<RunsParams>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1_000).contains(&limit) {
        return Err(Failure::new(
            ErrorCode::Validation,
            format!("`limit` must be from 1 to 1000, not {limit}"),
        )
        .with_details(json!({ "field": "limit" })));
    }
    let query = RunQuery {
        pipeline: q.pipeline,
        status: q.status,
        text: q.text,
        sort: q.sort.unwrap_or_default(),
        before: q.cursor.map(RunId),
        offset: q.offset.unwrap_or(0),
        limit,
    };
    Ok(ok(s.backend.runs(query).await?))
}

pub async fn run(State(s): State<AppState>, _p: Principal, Path(id): Path<String>) -> ApiResult {
    Ok(ok(s.backend.run(run_id(&id)?).await?))
}

pub async fn stage_io(
    State(s): State<AppState>,
    _p: Principal,
    Path((id, stage)): Path<(String, String)>,
) -> ApiResult {
    Ok(ok(s.backend.stage_io(run_id(&id)?, &stage).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    #[serde(default)]
    reason: String,
}

fn reason_or_default(r: &str) -> String {
    if r.trim().is_empty() {
        "no reason given (API)".into()
    } else {
        r.trim().to_string()
    }
}

/// A control route whose body is `{"reason": ...}`: reads it, then runs `work` with the
/// backend and the reason through [`control`].
async fn with_reason<T, F, Fut>(
    s: &AppState,
    p: &Principal,
    body: Body<ReasonBody>,
    what: (&str, String),
    work: F,
) -> ApiResult
where
    T: serde::Serialize,
    F: FnOnce(crate::client::Embedded, String) -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let Body(body) = body;
    let reason = reason_or_default(&body.reason);
    let fut = work(s.backend.clone(), reason.clone());
    control(s, p, what, &reason, fut).await
}

/// A control route on one run or dead-letter entry: `{"reason"}` in, audited as `$action`
/// against `$kind/ID`; `$call` does the work and `$out` answers from its result.
macro_rules! id_control {
    ($name:ident, $parse:ident, $kind:literal, $action:literal,
     |$b:ident, $id:ident, $r:ident| $call:expr => |$res:pat_param| $out:expr) => {
        pub async fn $name(
            State(s): State<AppState>,
            p: Principal,
            Path(id): Path<String>,
            body: Body<ReasonBody>,
        ) -> ApiResult {
            let $id = $parse(&id)?;
            let target = format!(concat!($kind, "/{}"), $id);
            with_reason(&s, &p, body, ($action, target), move |$b, $r| async move {
                let $res = $call.await?;
                Ok($out)
            })
            .await
        }
    };
}

id_control!(cancel_run, run_id, "run", "run.cancel",
    |b, id, r| b.cancel_run(id, &r) => |()| json!({ "id": id }));
id_control!(retry_run, run_id, "run", "run.retry",
    |b, id, r| b.retry_run(id, &r) => |()| json!({ "id": id }));
id_control!(resume_run, run_id, "run", "run.resume",
    |b, id, _r| b.resume_run(id) => |()| json!({ "id": id }));
id_control!(requeue, dlq_id, "dlq", "dlq.requeue",
    |b, id, r| b.requeue(id, &r) => |run| json!({ "run_id": run }));
id_control!(discard, dlq_id, "dlq", "dlq.discard",
    |b, id, r| b.discard(id, &r) => |()| json!({ "id": id }));

pub async fn dlq(State(s): State<AppState>, _p: Principal) -> ApiResult {
    Ok(ok(s.backend.dlq().await?))
}

pub async fn canaries(State(s): State<AppState>, _p: Principal) -> ApiResult {
    Ok(ok(s.host.canaries()))
}

pub async fn canary(
    State(s): State<AppState>,
    _p: Principal,
    Path(name): Path<String>,
) -> ApiResult {
    Ok(ok(s.host.canary(&name)?))
}

pub async fn canary_weight(
    State(s): State<AppState>,
    _p: Principal,
    Path(name): Path<String>,
) -> ApiResult {
    Ok(ok(json!({ "weight": s.host.canary_weight(&name)? })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesParams {
    window: Option<String>,
    points: Option<usize>,
}

pub async fn canary_series(
    State(s): State<AppState>,
    _p: Principal,
    Path(name): Path<String>,
    q: Result<Query<SeriesParams>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q?;
    let window = match q.window.as_deref() {
        None => 300,
        Some(w) => crate::model::duration::parse(w)
            .map_err(|m| {
                Failure::new(ErrorCode::Validation, format!("`window`: {m}"))
                    .with_details(json!({ "field": "window" }))
            })?
            .as_secs()
            .max(1),
    };
    let points = q.points.unwrap_or(60).clamp(1, 600);
    let step = (window as i64 / points as i64).max(1);
    Ok(ok(s.host.canary_series(&name, step, points)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    action: String,
    weight: Option<u32>,
    reason: String,
}

const ACTIONS: &str = "promote, promote_full, pause, resume, set_weight, rollback, abort, restart";

pub async fn canary_action(
    State(s): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    body: Body<ActionBody>,
) -> ApiResult {
    let Body(body) = body;
    let action = match (body.action.as_str(), body.weight) {
        ("promote", _) => CanaryAction::Promote,
        ("promote_full", _) => CanaryAction::PromoteFull,
        ("pause", _) => CanaryAction::Pause,
        ("resume", _) => CanaryAction::Resume,
        ("set_weight", Some(w)) => CanaryAction::SetWeight(w),
        ("set_weight", None) => {
            return Err(Failure::new(
                ErrorCode::Validation,
                "`set_weight` needs `weight`, a percentage from 0 to 100",
            )
            .with_details(json!({ "field": "weight" })));
        }
        ("rollback", _) => CanaryAction::Rollback,
        ("abort", _) => CanaryAction::Abort,
        ("restart", _) => CanaryAction::Restart,
        (other, _) => {
            return Err(Failure::new(
                ErrorCode::Validation,
                format!("`action` is `{other}`; valid actions: {ACTIONS}"),
            )
            .with_details(json!({ "field": "action" })));
        }
    };
    if let CanaryAction::SetWeight(w) = action
        && w > 100
    {
        return Err(Failure::new(
            ErrorCode::Validation,
            format!("`weight` is {w}; a weight is a percentage from 0 to 100"),
        )
        .with_details(json!({ "field": "weight" })));
    }
    let (what, target) = (
        format!("canary.{}", action.name()),
        format!("canary/{name}"),
    );
    p.require(&s, Role::Operator, &what, &target).await?;
    // The host audits a successful action itself, with the analysis at that moment; a
    // refused one is audited here.
    match s
        .host
        .canary_act_as(
            &name,
            action,
            (&p.name, Some(p.role.as_str())),
            &body.reason,
        )
        .await
    {
        Ok(rec) => Ok(ok(rec)),
        Err(e) => {
            let f = Failure::from(e);
            s.host
                .audit(AuditRecord {
                    at: now_ts(),
                    actor: p.name.clone(),
                    role: Some(p.role.as_str().to_string()),
                    action: what,
                    target,
                    reason: body.reason.clone(),
                    outcome: format!("failed: {}", f.error.code),
                    details: json!({}),
                })
                .await;
            Err(f)
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservationsBody {
    observations: Vec<Observation>,
}

pub async fn observations(
    State(s): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    body: Body<ObservationsBody>,
) -> ApiResult {
    let Body(body) = body;
    // Routers post often: this needs the operator role but is not audited line by line.
    p.require(
        &s,
        Role::Operator,
        "canary.observe",
        &format!("canary/{name}"),
    )
    .await?;
    let n = s.host.canary_ingest(&name, &body.observations)?;
    Ok(ok(
        json!({ "accepted": n, "weight": s.host.canary_weight(&name)? }),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    limit: Option<usize>,
}

pub async fn audit(
    State(s): State<AppState>,
    _p: Principal,
    q: Result<Query<AuditParams>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q?;
    Ok(ok(s
        .host
        .audit_log(q.limit.unwrap_or(100).clamp(1, 10_000))
        .await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    since: Option<u64>,
}

/// Decrements the SSE client count when a stream ends.
struct ClientGuard(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub async fn events(
    State(s): State<AppState>,
    _p: Principal,
    headers: HeaderMap,
    q: Result<Query<EventsParams>, QueryRejection>,
) -> Result<Response, Failure> {
    let Query(q) = q?;
    let header = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let since = match header {
        Some(h) => Some(h.parse::<u64>().map_err(|_| {
            Failure::new(
                ErrorCode::Validation,
                format!("`Last-Event-ID` is `{h}`; it must be an event sequence number"),
            )
        })?),
        None => q.since,
    };
    let since = match since {
        Some(n) => n,
        None => s.backend.overview().await?.last_seq,
    };
    s.sse_clients.fetch_add(1, Ordering::Relaxed);
    let guard = ClientGuard(s.sse_clients.clone());
    let stop = s.stop.clone().cancelled_owned();
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        Box::pin(
            s.backend
                .events(Some(since))
                .take_until(stop)
                .filter_map(move |item| {
                    let _keep = &guard;
                    let out = match item {
                        StreamItem::Event(e) => Some(Ok(SseEvent::default()
                            .id(e.seq.to_string())
                            .event(e.kind.as_str())
                            .data(serde_json::to_string(&e).unwrap_or_default()))),
                        StreamItem::Connected(_) => None,
                    };
                    std::future::ready(out)
                }),
        );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    since: Option<u64>,
    limit: Option<usize>,
}

/// Stored events after `since`, oldest first, as JSON (for paging back through history).
pub async fn events_log(
    State(s): State<AppState>,
    _p: Principal,
    q: Result<Query<LogParams>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(500).clamp(1, 10_000);
    Ok(ok(s
        .backend
        .events_after(q.since.unwrap_or(0), limit)
        .await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultBody {
    #[serde(default)]
    error_rate: f64,
    #[serde(default)]
    latency_ms: f64,
}

/// Adds (or with zeros clears) a fault on a simulated canary.
pub async fn fault(
    State(s): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    body: Body<FaultBody>,
) -> ApiResult {
    let Body(body) = body;
    if !(0.0..=1.0).contains(&body.error_rate) || !(0.0..=600_000.0).contains(&body.latency_ms) {
        return Err(Failure::new(
            ErrorCode::Validation,
            "`error_rate` must be from 0 to 1 and `latency_ms` from 0 to 600000",
        ));
    }
    let fault = crate::canary::simulate::Fault {
        error_rate: body.error_rate,
        latency_ms: body.latency_ms,
    };
    let host = s.host.clone();
    control(
        &s,
        &p,
        ("canary.fault", format!("canary/{name}")),
        "fault injection",
        async move {
            host.canary_inject(&name, fault)?;
            Ok(json!({ "error_rate": fault.error_rate, "latency_ms": fault.latency_ms }))
        },
    )
    .await
}
