//! The handlers. Reads need any token; control routes need `operator` and go through
//! [`control`], which checks the role and rate, does the work, and audits the outcome.

use std::sync::atomic::Ordering;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AppState;
use super::auth::Principal;
use super::error::{ApiResult, Body, Failure, envelope, json_response, ok};
use crate::client::Backend;
use crate::model::{
    ApiError, AuditQuery, CanaryAction, CanaryAt, Command, DlqId, DlqQuery, ErrorCode, EventKind,
    Fault, LogFilter, MAX_AUDIT_LIMIT, MAX_DLQ_LIMIT, Observation, Outcome, Role, RunId, RunQuery,
    RunSort, RunStatus, StartRun, Timestamp, audit_action,
};

fn run_id(s: &str) -> Result<RunId, Failure> {
    s.parse()
        .map_err(|e: crate::model::ParseIdError| Failure::new(ErrorCode::NotFound, e.to_string()))
}

fn dlq_id(s: &str) -> Result<DlqId, Failure> {
    s.parse()
        .map_err(|e: crate::model::ParseIdError| Failure::new(ErrorCode::NotFound, e.to_string()))
}

/// Sends a command down the host's one control path as the token's actor. A read-only server
/// and a token over its rate are refused here, before the host, and audited as denials; the
/// host checks the role and everything else, and audits the rest.
pub(super) async fn control(
    s: &AppState,
    p: &Principal,
    cmd: Command,
    reason: &str,
) -> Result<Outcome, Failure> {
    let actor = p.actor();
    if s.read_only {
        let e = ApiError::new(
            ErrorCode::Forbidden,
            "this server is read-only; control actions are refused",
        );
        return Err(folded(s, p, &cmd, Failure::from(e)).await);
    }
    if let Err(wait) = s.rate.check(&p.name) {
        let e = ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "the token `{}` made more than {} control requests this minute; retry in {wait}s",
                p.name, s.config.rate_limit
            ),
        );
        let mut f = Failure::from(e);
        f.retry_after_s = Some(wait);
        return Err(folded(s, p, &cmd, f).await);
    }
    Ok(s.backend.control(cmd, &actor, reason).await?)
}

/// A refusal before the control path, audited folded per token and action (a token over its
/// limit must not be able to fill the log by asking again).
async fn folded(s: &AppState, p: &Principal, cmd: &Command, f: Failure) -> Failure {
    let key = format!("token {}", p.name);
    s.fold_denial(
        &key,
        (&p.name, Some(p.role)),
        (&cmd.action(), &cmd.target()),
        f,
    )
    .await
}

/// A request's JSON body, read only once the request may go on (a refused client's body is
/// never read, however slowly it comes).
pub(super) async fn read_body<T: serde::de::DeserializeOwned>(
    req: axum::extract::Request,
    s: &AppState,
) -> Result<T, Failure> {
    let Body(body) =
        <Body<T> as axum::extract::FromRequest<AppState>>::from_request(req, s).await?;
    Ok(body)
}

/// The role check, first of all: a token that may not ask for `action` learns nothing about
/// the target (no 404 or 400 before the 403), and the refusal is audited.
pub(super) async fn gate(
    s: &AppState,
    p: &Principal,
    action: &str,
    target: &str,
) -> Result<(), Failure> {
    let needed = crate::model::role_for(action);
    if p.role.allows(needed) {
        return Ok(());
    }
    let f = Failure::new(
        ErrorCode::Forbidden,
        format!(
            "the token `{}` has role {}; {action} needs {needed} or above",
            p.name, p.role
        ),
    );
    Err(s
        .fold_denial(
            &format!("token {}", p.name),
            (&p.name, Some(p.role)),
            (action, target),
            f,
        )
        .await)
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

pub async fn healthz(State(s): State<AppState>, _p: super::auth::Public) -> ApiResult {
    // Anyone may ask: the detail (paths, SQLite's words) goes to the server's log only.
    let o = s.backend.overview().await.map_err(|e| {
        tracing::error!(error = %e, "health check: the store does not answer");
        Failure::new(
            ErrorCode::Upstream,
            "the store does not answer; the server's log has the details",
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
    /// Asset versions this run uses instead of the pinned ones.
    #[serde(default)]
    overrides: crate::model::asset::Overrides,
    /// One stage alone, in test mode.
    #[serde(default)]
    test: Option<Box<crate::model::asset::StageTest>>,
    #[serde(default)]
    reason: String,
}

pub async fn start_run(
    State(s): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    req: axum::extract::Request,
) -> ApiResult {
    gate(&s, &p, "run.start", &format!("pipeline/{name}")).await?;
    let body: StartBody = read_body(req, &s).await?;
    // The host knows its pipelines (and says which there are); no store read needed.
    s.host
        .pipeline(&name)
        .map_err(|m| Failure::new(ErrorCode::NotFound, m))?;
    let cmd = Command::StartRun(StartRun {
        pipeline: name,
        params: body.params,
        overrides: body.overrides,
        test: body.test,
    });
    match control(&s, &p, cmd, &body.reason).await? {
        Outcome::RunStarted { run } => Ok(ok(json!({ "id": run }))),
        other => Ok(ok(other)),
    }
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
    /// List isolated stage tests instead of production runs.
    tests: Option<bool>,
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
        tests: q.tests.unwrap_or(false),
    };
    // Dashboards ask for the same page over and over: while nothing was written, the bytes
    // answered last time are the answer.
    let generation = s.host.generation();
    let key = format!("runs {query:?}");
    if let Some(bytes) = s.pages.get(&key, generation) {
        return Ok(json_response(bytes));
    }
    let bytes = envelope(&s.backend.runs(query).await?);
    s.pages.put(key, generation, bytes.clone());
    Ok(json_response(bytes))
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

/// What a run or dead-letter control route answers: the ids it touched.
fn ids_of(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::RunCancelled { run }
        | Outcome::RunRetried { run }
        | Outcome::RunResumed { run } => {
            json!({ "id": run })
        }
        Outcome::Requeued { entry, run } | Outcome::Discarded { entry, run } => {
            json!({ "id": entry, "run_id": run })
        }
        other => json!(other),
    }
}

/// A control route on one run or dead-letter entry: `{"reason"}` in, the command made from
/// the id by `$cmd`.
macro_rules! id_control {
    ($name:ident, $action:literal, $kind:literal, $parse:ident, |$id:ident| $cmd:expr) => {
        pub async fn $name(
            State(s): State<AppState>,
            p: Principal,
            Path(id): Path<String>,
            req: axum::extract::Request,
        ) -> ApiResult {
            gate(&s, &p, $action, &format!("{}/{id}", $kind)).await?;
            let $id = $parse(&id)?;
            let body: ReasonBody = read_body(req, &s).await?;
            let outcome = control(&s, &p, $cmd, &body.reason).await?;
            Ok(ok(ids_of(&outcome)))
        }
    };
}

id_control!(cancel_run, "run.cancel", "run", run_id, |id| {
    Command::CancelRun { run: id }
});
id_control!(retry_run, "run.retry", "run", run_id, |id| {
    Command::RetryRun { run: id }
});
id_control!(resume_run, "run.resume", "run", run_id, |id| {
    Command::ResumeRun { run: id }
});
id_control!(requeue, "dlq.requeue", "dlq", dlq_id, |id| {
    Command::Requeue { entry: id }
});
id_control!(discard, "dlq.discard", "dlq", dlq_id, |id| {
    Command::Discard { entry: id }
});

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqParams {
    cursor: Option<i64>,
    run: Option<i64>,
    limit: Option<usize>,
}

/// Dead-letter entries, newest first, a page at a time and without their inputs.
pub async fn dlq(
    State(s): State<AppState>,
    _p: Principal,
    q: Result<Query<DlqParams>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_DLQ_LIMIT).contains(&limit) {
        return Err(Failure::new(
            ErrorCode::Validation,
            format!("`limit` must be from 1 to {MAX_DLQ_LIMIT}, not {limit}"),
        )
        .with_details(json!({ "field": "limit" })));
    }
    let query = DlqQuery {
        before: q.cursor.map(DlqId),
        run: q.run.map(RunId),
        limit,
    };
    Ok(ok(s.backend.dlq(query).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareParams {
    base: String,
    candidate: String,
}

/// Two runs stage by stage (`opsdeck compare`).
pub async fn compare(
    State(s): State<AppState>,
    _p: Principal,
    q: Result<Query<CompareParams>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q?;
    let (base, candidate) = (run_id(&q.base)?, run_id(&q.candidate)?);
    Ok(ok(s.backend.compare(base, candidate).await?))
}

/// One dead-letter entry, with its input.
pub async fn dlq_entry(
    State(s): State<AppState>,
    _p: Principal,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(ok(s.backend.dlq_entry(dlq_id(&id)?).await?))
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
    /// Any JSON, checked here: a sentence for `50.5` or `-1`, not serde's type names.
    weight: Option<Value>,
    /// Where the caller saw the canary: the action is refused if it has moved since.
    expect: Option<CanaryAt>,
    /// Left out, the host refuses the action for want of one (and audits that).
    #[serde(default)]
    reason: String,
}

const ACTIONS: &str = "promote, promote_full, pause, resume, set_weight, rollback, abort, restart";

pub async fn canary_action(
    State(s): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    req: axum::extract::Request,
) -> ApiResult {
    // Every canary action needs the same role, checked before the body is even read.
    gate(&s, &p, "canary.action", &format!("canary/{name}")).await?;
    let body: ActionBody = read_body(req, &s).await?;
    let weight = match &body.weight {
        None => None,
        Some(v) => match v.as_u64().and_then(|w| u32::try_from(w).ok()) {
            Some(w) if w <= 100 => Some(w),
            _ => {
                return Err(Failure::new(
                    ErrorCode::Validation,
                    format!("`weight` is {v}; a weight is a whole percentage from 0 to 100"),
                )
                .with_details(json!({ "field": "weight" })));
            }
        },
    };
    let action = match (body.action.as_str(), weight) {
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
    let cmd = Command::Canary {
        canary: name,
        action,
        expect: body.expect,
    };
    match control(&s, &p, cmd, &body.reason).await? {
        Outcome::Canary { record, .. } => Ok(ok(record)),
        other => Ok(ok(other)),
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
    req: axum::extract::Request,
) -> ApiResult {
    // Routers post often: this needs the operator role but is not audited line by line.
    p.require(
        &s,
        Role::Operator,
        "canary.observe",
        &format!("canary/{name}"),
    )
    .await?;
    let body: ObservationsBody = read_body(req, &s).await?;
    if let Some((i, o)) = body
        .observations
        .iter()
        .enumerate()
        .find(|(_, o)| !(o.latency_ms.is_finite() && (0.0..=600_000.0).contains(&o.latency_ms)))
    {
        return Err(Failure::new(
            ErrorCode::Validation,
            format!(
                "observation {i} has latency_ms {}; it must be from 0 to 600000 (ten minutes)",
                o.latency_ms
            ),
        )
        .with_details(json!({ "field": format!("observations[{i}].latency_ms") })));
    }
    let n = s.host.canary_ingest(&name, &body.observations)?;
    Ok(ok(
        json!({ "accepted": n, "weight": s.host.canary_weight(&name)? }),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    since: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    limit: Option<usize>,
}

/// The audit log, newest first: `since` (RFC 3339, or a duration ago like `1h`), `actor`,
/// `action` (a whole group when it has no dot: `canary`), `limit`.
/// The workers sharing the store, with their leases and load (viewer).
pub async fn workers(State(s): State<AppState>, _p: Principal) -> ApiResult {
    let list = s.backend.workers().await?;
    Ok(ok(serde_json::to_value(list).unwrap_or(Value::Null)))
}

pub async fn audit(
    State(s): State<AppState>,
    _p: Principal,
    q: Result<Query<AuditParams>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_AUDIT_LIMIT).contains(&limit) {
        return Err(Failure::new(
            ErrorCode::Validation,
            format!("`limit` must be from 1 to {MAX_AUDIT_LIMIT}, not {limit}"),
        )
        .with_details(json!({ "field": "limit" })));
    }
    let since = match q.since.as_deref() {
        None => None,
        Some(t) => Some(Timestamp::parse_since(t, chrono::Utc::now()).map_err(|m| {
            Failure::new(ErrorCode::Validation, format!("`since`: {m}"))
                .with_details(json!({ "field": "since" }))
        })?),
    };
    let action = match q.action.as_deref() {
        None => None,
        Some(a) => Some(audit_action(a).map_err(|m| {
            Failure::new(ErrorCode::Validation, format!("`action`: {m}"))
                .with_details(json!({ "field": "action" }))
        })?),
    };
    if q.actor.as_deref().is_some_and(|a| a.trim().is_empty()) {
        return Err(Failure::new(
            ErrorCode::Validation,
            "`actor` is empty; give a name or leave it out",
        )
        .with_details(json!({ "field": "actor" })));
    }
    let query = AuditQuery {
        since,
        actor: q.actor,
        action,
        limit,
    };
    Ok(ok(s.backend.audit(query).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    since: Option<u64>,
}

/// One open event stream, counted in all and for its token until it ends.
struct ClientGuard {
    state: AppState,
    token: String,
}

impl ClientGuard {
    /// Counts a new stream for `token`, or says which cap it would pass.
    fn open(s: &AppState, token: &str) -> Result<ClientGuard, Failure> {
        let mut by_token = crate::sync::lock(&s.sse_by_token);
        let total = s.sse_clients.load(Ordering::Relaxed);
        let mine = by_token.get(token).copied().unwrap_or(0);
        let refusal = if total >= s.config.sse_total as u64 {
            Some(format!(
                "the server has {total} event streams open, as many as it allows (sse_total); retry later"
            ))
        } else if mine >= s.config.sse_per_token {
            Some(format!(
                "the token `{token}` has {mine} event streams open, as many as one token may (sse_per_token); close one first"
            ))
        } else {
            None
        };
        if let Some(m) = refusal {
            let mut f = Failure::new(ErrorCode::RateLimited, m);
            f.retry_after_s = Some(5);
            return Err(f);
        }
        by_token.insert(token.to_string(), mine + 1);
        s.sse_clients.fetch_add(1, Ordering::Relaxed);
        Ok(ClientGuard {
            state: s.clone(),
            token: token.to_string(),
        })
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.state.sse_clients.fetch_sub(1, Ordering::Relaxed);
        let mut by_token = crate::sync::lock(&self.state.sse_by_token);
        if let Some(n) = by_token.get_mut(&self.token) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by_token.remove(&self.token);
            }
        }
    }
}

pub async fn events(
    State(s): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    q: Result<Query<EventsParams>, QueryRejection>,
) -> Result<Response, Failure> {
    let Query(q) = q?;
    let header = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let since = match header {
        Some(h) => Some((
            h.parse::<u64>().map_err(|_| {
                Failure::new(
                    ErrorCode::Validation,
                    format!("`Last-Event-ID` is `{h}`; it must be an event sequence number"),
                )
                .with_details(json!({ "field": "Last-Event-ID" }))
            })?,
            "Last-Event-ID",
        )),
        None => q.since.map(|n| (n, "since")),
    };
    let last_seq = s.backend.overview().await?.last_seq;
    let since = match since {
        Some((n, field)) => resume_point(n, last_seq, field)?,
        None => last_seq,
    };
    let guard = match ClientGuard::open(&s, &p.name) {
        Ok(g) => g,
        Err(f) => {
            let key = format!("token {}", p.name);
            return Err(s
                .fold_denial(&key, (&p.name, Some(p.role)), ("events", "events"), f)
                .await);
        }
    };
    Ok(super::sse::response(super::sse::Stream {
        items: s.backend.events(Some(since)),
        frames: s.event_frames.clone(),
        stop: s.stop.clone(),
        _keep: guard,
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    since: Option<u64>,
    limit: Option<usize>,
    run: Option<String>,
    kind: Option<String>,
    until: Option<u64>,
}

/// Stored events after `since`, oldest first, as JSON (for paging back through history); with
/// `run`, only that run's; with `kind` (names separated by commas), only those kinds; with
/// `until`, only those numbered at most that.
pub async fn events_log(
    State(s): State<AppState>,
    _p: Principal,
    q: Result<Query<LogParams>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(500).clamp(1, 10_000);
    let since = match q.since {
        Some(n) => resume_point(n, s.backend.overview().await?.last_seq, "since")?,
        None => 0,
    };
    // The model's own parses, so the API and the CLI refuse an id or a kind in the same words.
    let invalid = |field: &str, message: String| {
        Failure::new(ErrorCode::Validation, message).with_details(json!({ "field": field }))
    };
    let run = q
        .run
        .map(|run| run.parse::<RunId>())
        .transpose()
        .map_err(|e| invalid("run", e.to_string()))?;
    let mut kinds = Vec::new();
    for name in q.kind.iter().flat_map(|k| k.split(',')) {
        let kind = EventKind::named(name).map_err(|e| invalid("kind", e))?;
        // Each kind once: the list stays as short as the kinds there are.
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    let filter = LogFilter {
        run,
        kinds,
        until: q.until,
    };
    Ok(ok(s
        .backend
        .log_events_after(&filter, since, limit)
        .await?))
}

/// A sequence number to read after, from outside: at most the last one stored (so it also
/// fits the store's signed integers), or a 400 naming the field and the end of the log.
fn resume_point(n: u64, last_seq: u64, field: &str) -> Result<u64, Failure> {
    if n > last_seq {
        return Err(Failure::new(
            ErrorCode::Validation,
            format!(
                "`{field}` is {n}, but the event log ends at {last_seq}; give at most {last_seq}, or leave it out to start from the newest event"
            ),
        )
        .with_details(json!({ "field": field, "last_seq": last_seq })));
    }
    Ok(n)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultBody {
    #[serde(default)]
    error_rate: f64,
    #[serde(default)]
    latency_ms: f64,
    #[serde(default)]
    reason: String,
}

/// Adds (or with zeros clears) a fault on a simulated canary.
pub async fn fault(
    State(s): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    req: axum::extract::Request,
) -> ApiResult {
    gate(&s, &p, "canary.fault", &format!("canary/{name}")).await?;
    let body: FaultBody = read_body(req, &s).await?;
    let fault = Fault::new(body.error_rate, body.latency_ms)
        .map_err(|m| Failure::new(ErrorCode::Validation, m))?;
    let cmd = Command::Fault {
        canary: name,
        fault,
    };
    control(&s, &p, cmd, &body.reason).await?;
    Ok(ok(
        json!({ "error_rate": fault.error_rate, "latency_ms": fault.latency_ms }),
    ))
}
