//! The host: the one process that runs a workspace's pipelines. It holds the workspace lock,
//! owns the store's writer, resumes runs a crashed host left behind, fires schedules, and is
//! the only way to change state. Read-only access needs no host: see [`open_reader`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::breaker::Breakers;
use super::clock::{Clock, SystemClock};
use super::error::{Result, RuntimeError};
use super::lock::{HostInfo, HostLock, LockError};
use super::rng::Rng;
use super::scheduler::{self, ActiveRun, Control, Reset};
use super::stage::{http_client, kill_orphan};
use super::triggers;
use super::workspace::Workspace;
use crate::canary::live::{self as canary_live, Canaries, Observation};
use crate::canary::simulate::Fault;
use crate::model::{ActionRecord, CanaryAction, CanaryStatus, SeriesPoint};
use crate::model::{
    BreakerInfo, DlqEntry, DlqId, Event, EventKind, Overview, Page, PipelineInfo, Run, RunId,
    RunQuery, RunStatus, RunSummary, StageIo, StageStatus, Timestamp, Trigger,
};
use crate::store::{self, NewStage, Op, ReadPool, Reader, Writer, WriterThread, schema};

/// How a host behaves; `command` names it in `host.json` and in "hosted by" messages.
pub struct HostOptions {
    pub command: String,
    /// Fire pipeline schedules (serve and the dashboard do; one-shot commands do not).
    pub schedules: bool,
    /// Resume every `interrupted` run at start.
    pub resume_interrupted: bool,
    pub clock: Arc<dyn Clock>,
    /// Seed for retry jitter; random when absent.
    pub seed: Option<u64>,
}

impl HostOptions {
    /// Options for a one-shot command that hosts the workspace only while it works.
    pub fn new(command: impl Into<String>) -> Self {
        HostOptions {
            command: command.into(),
            schedules: false,
            resume_interrupted: false,
            clock: Arc::new(SystemClock),
            seed: None,
        }
    }

    /// Options for a long-lived host (`serve`, the dashboard): schedules fire and interrupted
    /// runs resume.
    pub fn long_lived(command: impl Into<String>) -> Self {
        HostOptions {
            schedules: true,
            resume_interrupted: true,
            ..HostOptions::new(command)
        }
    }
}

/// Shared state of a host, used by drivers, attempts and schedule tasks.
pub(crate) struct Inner {
    pub(crate) ws: Workspace,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) writer: Writer,
    pub(crate) reads: ReadPool,
    pub(crate) breakers: Breakers,
    pub(crate) rng: Mutex<Rng>,
    pub(crate) http: reqwest::Client,
    pub(crate) active: Mutex<HashMap<RunId, ActiveRun>>,
    pub(crate) next_dlq: AtomicI64,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    pub(crate) limit: usize,
    next_run: AtomicI64,
    events: broadcast::Sender<Event>,
    pub(crate) canaries: Canaries,
}

/// A running host. Cloning shares it.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
    parts: Arc<Mutex<Option<(WriterThread, HostLock)>>>,
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(hosted)`
fn hosted(e: LockError) -> RuntimeError {
    match e {
        LockError::Held(_) => RuntimeError::Hosted(e.to_string()),
        LockError::Io { .. } => RuntimeError::Io(e.to_string()),
    }
}

/// Run ids as `3, 7, 12` for log lines.
fn ids(runs: &[RunId]) -> String {
    runs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn kill_orphans(orphans: &[store::Orphan]) {
    for o in orphans {
        if kill_orphan(o.pid, o.pid_start) {
            tracing::warn!(
                pid = o.pid,
                "killed the process group of an attempt whose host had died"
            );
        }
    }
}

/// If no host holds the workspace, marks any runs a dead host left behind as `interrupted`.
/// Read-only commands call this so a crashed run never looks alive.
pub fn recover_if_unhosted(ws: &Workspace) -> Result<()> {
    if !ws.db_path().exists() {
        return Ok(());
    }
    let Some(lock) = HostLock::try_quiet(&ws.state_dir()).map_err(hosted)? else {
        return Ok(());
    };
    let mut conn = store::connect(&ws.db_path(), true)?;
    schema::migrate(&mut conn)?;
    let (runs, orphans) =
        store::mark_interrupted(&mut conn, Timestamp::from_datetime(chrono::Utc::now()))?;
    if !runs.is_empty() {
        tracing::warn!(runs = %ids(&runs), "marked runs of a stopped host as interrupted");
    }
    kill_orphans(&orphans);
    drop(conn);
    drop(lock);
    Ok(())
}

/// A reader on the workspace's store, usable while another process hosts it.
pub fn open_reader(ws: &Workspace) -> Result<Reader> {
    recover_if_unhosted(ws)?;
    if ws.db_path().exists() {
        Ok(Reader::open(&ws.db_path())?)
    } else {
        // Nothing has run here yet: answer from an empty store rather than create files in a
        // directory that was only read.
        Ok(Reader::empty()?)
    }
}

fn not_found_run(id: RunId) -> RuntimeError {
    RuntimeError::NotFound(format!(
        "there is no run {id}; list runs with `opsdeck runs`"
    ))
}

impl Host {
    /// Takes the workspace lock, opens the store (recovering after a crash) and starts.
    pub async fn start(ws: Workspace, opts: HostOptions) -> Result<Host> {
        let state_dir = ws.state_dir();
        let info = HostInfo {
            pid: std::process::id(),
            command: opts.command.clone(),
            started_at: opts.clock.timestamp(),
            address: None,
        };
        let lock = HostLock::acquire(&state_dir, &info).map_err(hosted)?;
        let db = ws.db_path();
        let mut conn = store::connect(&db, true)?;
        schema::migrate(&mut conn)?;
        let (recovered, orphans) = store::mark_interrupted(&mut conn, opts.clock.timestamp())?;
        if !recovered.is_empty() {
            tracing::warn!(runs = %ids(&recovered), "runs of a stopped host were interrupted");
        }
        kill_orphans(&orphans);
        let reader = Reader::open(&db)?;
        let (next_run, next_dlq) = reader.next_ids()?;
        let now_s = opts.clock.now().timestamp();
        let seed = opts.seed.unwrap_or_else(|| Rng::from_entropy().next_u64());
        let (canaries, canary_ops) = Canaries::load(&ws.canaries, &reader, now_s, seed);
        drop(reader);
        let (events, _) = broadcast::channel(4096);
        let (writer, thread) = Writer::spawn(conn, events.clone())?;
        let limit = usize::try_from(ws.settings.store.max_output_bytes).unwrap_or(usize::MAX);
        let inner = Arc::new(Inner {
            reads: ReadPool::new(&db),
            ws,
            clock: opts.clock,
            writer,
            breakers: Breakers::default(),
            rng: Mutex::new(opts.seed.map_or_else(Rng::from_entropy, Rng::new)),
            http: http_client(),
            active: Mutex::new(HashMap::new()),
            next_dlq: AtomicI64::new(next_dlq),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            limit,
            next_run: AtomicI64::new(next_run),
            events,
            canaries,
        });
        let host = Host {
            inner,
            parts: Arc::new(Mutex::new(Some((thread, lock)))),
        };
        tracing::info!(workspace = %host.inner.ws.dir.display(), command = %opts.command, "host started");
        if opts.resume_interrupted {
            let ids = host
                .inner
                .reads
                .with(|r| r.run_ids_with_status(RunStatus::Interrupted))
                .await?;
            for id in ids {
                if let Err(e) = host.resume_run(id).await {
                    tracing::warn!(run = %id, error = %e, "could not resume an interrupted run");
                }
            }
        }
        host.inner.writer.commit(canary_ops).await?;
        if opts.schedules {
            triggers::start(&host.inner);
            let ops = host.inner.canaries.restart_ended(now_s);
            host.inner.writer.commit(ops).await?;
            crate::canary::proxy::start_all(&host.inner).await?;
            start_canary_clock(&host.inner, now_s);
        }
        Ok(host)
    }

    pub fn workspace(&self) -> &Workspace {
        &self.inner.ws
    }

    /// Live events, published once committed. A receiver that falls behind gets `Lagged` and
    /// should catch up from the store with [`Host::events`].
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Records a new run and starts it; returns once the run is durably recorded.
    pub async fn start_run(
        &self,
        pipeline: &str,
        params: &Map<String, Value>,
        trigger: Trigger,
    ) -> Result<RunId> {
        start_run(&self.inner, pipeline, params, trigger).await
    }

    pub fn is_active(&self, id: RunId) -> bool {
        self.inner
            .active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&id)
    }

    /// Waits until the run is no longer active and returns its stored status.
    pub async fn wait(&self, id: RunId) -> Result<RunStatus> {
        loop {
            let done = {
                let active = self
                    .inner
                    .active
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                active.get(&id).map(|a| a.done.clone())
            };
            match done {
                Some(mut rx) => {
                    let _ = rx.wait_for(Option::is_some).await;
                }
                None => break,
            }
        }
        let summary = self.inner.reads.with(move |r| r.run_summary(id)).await?;
        summary.map(|s| s.status).ok_or_else(|| not_found_run(id))
    }

    fn refuse_when_stopping(&self) -> Result<()> {
        if self.inner.shutdown.is_cancelled() {
            return Err(RuntimeError::Conflict("the host is shutting down".into()));
        }
        Ok(())
    }

    async fn summary(&self, id: RunId) -> Result<RunSummary> {
        self.inner
            .reads
            .with(move |r| r.run_summary(id))
            .await?
            .ok_or_else(|| not_found_run(id))
    }

    /// Cancels a run: an active run's attempts are killed and it ends `cancelled`; a pending or
    /// interrupted run is marked `cancelled` at once.
    pub async fn cancel_run(&self, id: RunId, reason: &str) -> Result<()> {
        let (ack, acked) = oneshot::channel();
        let sent = {
            let active = self
                .inner
                .active
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            active.get(&id).is_some_and(|a| {
                a.send(Control::Cancel {
                    reason: reason.to_string(),
                    ack,
                })
            })
        };
        if sent {
            let _ = acked.await;
            return Ok(());
        }
        let summary = self.summary(id).await?;
        if summary.status.is_finished() {
            return Err(RuntimeError::Conflict(format!(
                "run {id} already finished ({}); there is nothing to cancel",
                summary.status
            )));
        }
        let loaded = self
            .inner
            .reads
            .with(move |r| r.load_run(id))
            .await?
            .ok_or_else(|| not_found_run(id))?;
        let now = self.inner.clock.timestamp();
        let mut ops = vec![Op::UpdateRun {
            id,
            status: RunStatus::Cancelled,
            started_at: None,
            finished_at: Some(now),
        }];
        for (stage, status, _, _) in loaded.stages {
            let to = match status {
                StageStatus::Pending => StageStatus::Skipped,
                StageStatus::Running | StageStatus::Retrying | StageStatus::Interrupted => {
                    StageStatus::Cancelled
                }
                _ => continue,
            };
            ops.push(Op::UpdateStage {
                run_id: id,
                stage,
                status: to,
            });
        }
        ops.push(Op::run_event(
            now,
            EventKind::RunFinished,
            id,
            json!({"status": RunStatus::Cancelled, "reason": reason}),
        ));
        self.inner.writer.commit(ops).await?;
        Ok(())
    }

    /// Re-runs a failed or cancelled run from its failed stages, keeping what succeeded.
    pub async fn retry_run(&self, id: RunId, reason: &str) -> Result<()> {
        self.refuse_when_stopping()?;
        if self.is_active(id) {
            return Err(RuntimeError::Conflict(format!(
                "run {id} is still running; wait for it or cancel it first"
            )));
        }
        let summary = self.summary(id).await?;
        match summary.status {
            RunStatus::Failed | RunStatus::Cancelled => {}
            RunStatus::Interrupted => {
                return Err(RuntimeError::Conflict(format!(
                    "run {id} was interrupted, not failed; continue it with `opsdeck runs resume {id}`"
                )));
            }
            s => {
                return Err(RuntimeError::Conflict(format!(
                    "run {id} is {s}; only failed or cancelled runs can be retried"
                )));
            }
        }
        let entries = self.inner.reads.with(move |r| r.dlq_for_run(id)).await?;
        let now = self.inner.clock.timestamp();
        let mut ops = Vec::new();
        for e in &entries {
            ops.push(Op::DeleteDlq { id: e.id });
            ops.push(Op::stage_event(
                now,
                EventKind::DlqRequeued,
                id,
                &e.stage,
                json!({"dlq_id": e.id, "reason": "run retried"}),
            ));
        }
        ops.push(Op::run_event(
            now,
            EventKind::RunRetried,
            id,
            json!({"reason": reason}),
        ));
        scheduler::launch(&self.inner, id, Reset::Retry, ops).await
    }

    /// Continues an interrupted run: finished stages keep their results and are not run again.
    pub async fn resume_run(&self, id: RunId) -> Result<()> {
        self.refuse_when_stopping()?;
        if self.is_active(id) {
            return Err(RuntimeError::Conflict(format!(
                "run {id} is already running"
            )));
        }
        let summary = self.summary(id).await?;
        if summary.status != RunStatus::Interrupted {
            let hint = if matches!(summary.status, RunStatus::Failed | RunStatus::Cancelled) {
                format!("; re-run its failed stages with `opsdeck runs retry {id}`")
            } else {
                String::new()
            };
            return Err(RuntimeError::Conflict(format!(
                "run {id} is {}, not interrupted; only interrupted runs can be resumed{hint}",
                summary.status
            )));
        }
        let now = self.inner.clock.timestamp();
        let ops = vec![Op::run_event(now, EventKind::RunResumed, id, json!({}))];
        scheduler::launch(&self.inner, id, Reset::Resume, ops).await
    }

    /// Gives a dead-lettered stage a new attempt in its run; returns the run.
    pub async fn requeue(&self, dlq: DlqId, reason: &str) -> Result<RunId> {
        self.refuse_when_stopping()?;
        let entry = self.dlq_entry(dlq).await?;
        let now = self.inner.clock.timestamp();
        let ops = vec![
            Op::DeleteDlq { id: dlq },
            Op::stage_event(
                now,
                EventKind::DlqRequeued,
                entry.run_id,
                &entry.stage,
                json!({"dlq_id": dlq, "reason": reason}),
            ),
        ];
        let (ack, acked) = oneshot::channel();
        let control = Control::Reopen {
            stages: vec![entry.stage.clone()],
            ops: ops.clone(),
            ack,
        };
        let sent = {
            let active = self
                .inner
                .active
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            active.get(&entry.run_id).is_some_and(|a| a.send(control))
        };
        if sent {
            acked.await.map_err(|_| {
                RuntimeError::Conflict("the run ended before the requeue was applied".into())
            })??;
        } else {
            scheduler::launch(
                &self.inner,
                entry.run_id,
                Reset::Stages(vec![entry.stage.clone()]),
                ops,
            )
            .await?;
        }
        Ok(entry.run_id)
    }

    /// Removes a dead-letter entry; its run stays failed.
    pub async fn discard(&self, dlq: DlqId, reason: &str) -> Result<DlqEntry> {
        let entry = self.dlq_entry(dlq).await?;
        let now = self.inner.clock.timestamp();
        self.inner
            .writer
            .commit(vec![
                Op::DeleteDlq { id: dlq },
                Op::stage_event(
                    now,
                    EventKind::DlqDiscarded,
                    entry.run_id,
                    &entry.stage,
                    json!({"dlq_id": dlq, "reason": reason}),
                ),
            ])
            .await?;
        Ok(entry)
    }

    async fn dlq_entry(&self, id: DlqId) -> Result<DlqEntry> {
        let found = self
            .inner
            .reads
            .with(move |r| Ok((r.dlq_entry(id)?, r.dlq_fate(id)?)))
            .await?;
        match found {
            (Some(entry), _) => Ok(entry),
            (None, Some(fate)) => Err(RuntimeError::NotFound(format!(
                "there is no dead-letter entry {id}: {fate}"
            ))),
            (None, None) => Err(RuntimeError::NotFound(format!(
                "there is no dead-letter entry {id}; list them with `opsdeck dlq list`"
            ))),
        }
    }

    pub async fn runs(&self, q: RunQuery) -> Result<Page<RunSummary>> {
        Ok(self.inner.reads.with(move |r| r.runs(&q)).await?)
    }

    pub async fn run(&self, id: RunId) -> Result<Run> {
        self.inner
            .reads
            .with(move |r| r.run(id))
            .await?
            .ok_or_else(|| not_found_run(id))
    }

    pub async fn stage_io(&self, id: RunId, stage: &str) -> Result<StageIo> {
        let s = stage.to_string();
        let io = self.inner.reads.with(move |r| r.stage_io(id, &s)).await?;
        match io {
            Some(io) => Ok(io),
            None => {
                let ids = self.inner.reads.with(move |r| r.stage_ids(id)).await?;
                if ids.is_empty() {
                    Err(not_found_run(id))
                } else {
                    Err(RuntimeError::NotFound(format!(
                        "run {id} has no stage `{stage}`; stages: {}",
                        ids.join(", ")
                    )))
                }
            }
        }
    }

    /// The pipelines, alert counts and event position a client needs for its first frame.
    pub async fn overview(&self) -> Result<Overview> {
        let (dlq_depth, last_seq) = self
            .inner
            .reads
            .with(|r| Ok((r.dlq_depth()?, r.last_seq()?)))
            .await?;
        let pipelines = self
            .inner
            .ws
            .pipelines()
            .map(|p| PipelineInfo {
                name: p.name.clone(),
                description: p.description.clone(),
                schedule: p.schedule.as_ref().map(|s| s.text().to_string()),
                stages: p.stages.iter().map(|s| s.id.clone()).collect(),
                params: p.params.clone(),
            })
            .collect();
        let breakers = self
            .inner
            .breakers
            .not_closed()
            .into_iter()
            .map(|(target, state)| BreakerInfo {
                target,
                state: state.as_str().to_string(),
            })
            .collect();
        Ok(Overview {
            backend: "embedded".into(),
            workspace: self.inner.ws.dir.display().to_string(),
            pipelines,
            dlq_depth,
            breakers,
            last_seq,
            running: self
                .inner
                .active
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len() as u64,
            role: None,
        })
    }

    pub async fn dlq(&self) -> Result<Vec<DlqEntry>> {
        Ok(self.inner.reads.with(Reader::dlq).await?)
    }

    /// Stored events after `since`, oldest first.
    pub async fn events(&self, since: u64, limit: usize) -> Result<Vec<Event>> {
        Ok(self
            .inner
            .reads
            .with(move |r| r.events(since, limit))
            .await?)
    }

    pub fn canaries(&self) -> Vec<CanaryStatus> {
        self.inner.canaries.statuses()
    }

    fn live_canary(&self, name: &str) -> Result<&Arc<Mutex<canary_live::LiveCanary>>> {
        self.inner.canaries.get(name).ok_or_else(|| {
            RuntimeError::NotFound(self.inner.ws.canary(name).err().unwrap_or_default())
        })
    }

    pub fn canary(&self, name: &str) -> Result<CanaryStatus> {
        Ok(canary_live::lock(self.live_canary(name)?).rollout.status())
    }

    /// Chart points: `points` steps of `step_s` seconds ending now.
    pub fn canary_series(
        &self,
        name: &str,
        step_s: i64,
        points: usize,
    ) -> Result<Vec<SeriesPoint>> {
        self.live_canary(name)?;
        let now = self.inner.clock.now().timestamp();
        Ok(self
            .inner
            .canaries
            .series(name, now, step_s, points)
            .unwrap_or_default())
    }

    /// A manual action on a canary, saved, logged and audited before this returns.
    pub async fn canary_act(
        &self,
        name: &str,
        action: CanaryAction,
        actor: &str,
        reason: &str,
    ) -> Result<ActionRecord> {
        self.canary_act_as(name, action, (actor, None), reason)
            .await
    }

    /// [`Host::canary_act`] for an API token: the audit record also names its role.
    pub async fn canary_act_as(
        &self,
        name: &str,
        action: CanaryAction,
        (actor, role): (&str, Option<&str>),
        reason: &str,
    ) -> Result<ActionRecord> {
        self.refuse_when_stopping()?;
        if reason.trim().is_empty() {
            return Err(RuntimeError::BadInput(format!(
                "a canary action on {name} needs a reason: say why (it is recorded in the audit log)"
            )));
        }
        let now = self.inner.clock.now().timestamp();
        let (rec, ops) = {
            let mut l = canary_live::lock(self.live_canary(name)?);
            let rec = l
                .rollout
                .act(action, actor, reason, now)
                .map_err(|e| RuntimeError::Conflict(e.0))?;
            let ops = canary_live::action_ops(&l, &rec, role, now);
            (rec, ops)
        };
        self.inner.writer.commit(ops).await?;
        tracing::info!(canary = name, action = %rec.action, actor, reason, "canary action");
        Ok(rec)
    }

    /// Records in `.opsdeck/host.json` the address the host serves its API on, so commands
    /// given this workspace can find it.
    pub fn publish_address(&self, address: &str) {
        let state_dir = self.inner.ws.state_dir();
        let parts = self
            .parts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let (Some((_, lock)), Some(mut info)) = (parts.as_ref(), HostLock::holder(&state_dir)) {
            info.address = Some(address.to_string());
            lock.set_address(&info);
        }
    }

    /// Appends to the audit log (without waiting for the commit).
    pub async fn audit(&self, rec: store::AuditRecord) {
        self.inner.writer.send(vec![Op::Audit(rec)]).await;
    }

    /// The newest `limit` audit records, newest first.
    pub async fn audit_log(&self, limit: usize) -> Result<Vec<store::AuditRecord>> {
        Ok(self.inner.reads.with(move |r| r.audit(limit)).await?)
    }

    /// Runs counted by pipeline and status, for `/metrics`.
    pub async fn run_counts(&self) -> Result<Vec<(String, String, u64)>> {
        Ok(self.inner.reads.with(Reader::run_counts).await?)
    }

    /// Breakers that are not closed, as (target, state).
    pub fn breakers(&self) -> Vec<(String, String)> {
        self.inner
            .breakers
            .not_closed()
            .into_iter()
            .map(|(t, s)| (t, s.as_str().to_string()))
            .collect()
    }

    /// Adds trouble to a simulated canary (drills, the demo); the default fault clears it.
    pub fn canary_inject(&self, name: &str, fault: Fault) -> Result<()> {
        self.live_canary(name)?;
        self.inner
            .canaries
            .inject(name, fault)
            .map_err(RuntimeError::Conflict)
    }

    /// Observations from an external router for an `ingest` canary.
    pub fn canary_ingest(&self, name: &str, batch: &[Observation]) -> Result<u64> {
        self.live_canary(name)?;
        let now = self.inner.clock.now().timestamp();
        self.inner
            .canaries
            .ingest(name, batch, now)
            .map_err(RuntimeError::Conflict)
    }

    /// The canary's current weight in percent, for external routers.
    pub fn canary_weight(&self, name: &str) -> Result<f64> {
        Ok(self.canary(name)?.weight)
    }

    /// Stops schedules, interrupts active runs (they resume when a host next starts), writes
    /// everything queued, and releases the workspace.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.writer.close().await;
        let parts = self
            .parts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some((thread, lock)) = parts {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            drop(lock);
        }
        tracing::info!("host stopped");
    }
}

pub(crate) async fn start_run(
    inner: &Arc<Inner>,
    pipeline: &str,
    params: &Map<String, Value>,
    trigger: Trigger,
) -> Result<RunId> {
    if inner.shutdown.is_cancelled() {
        return Err(RuntimeError::Conflict("the host is shutting down".into()));
    }
    let p = inner
        .ws
        .pipeline(pipeline)
        .map_err(RuntimeError::BadInput)?;
    let params = p.params_from_json(params).map_err(RuntimeError::BadInput)?;
    let id = RunId(inner.next_run.fetch_add(1, Ordering::SeqCst));
    let now = inner.clock.timestamp();
    let spec = serde_json::to_string(p.as_ref()).map_err(|e| RuntimeError::Io(e.to_string()))?;
    let params_text = Value::Object(params.clone()).to_string();
    let ops = vec![
        Op::InsertRun {
            id,
            pipeline: p.name.clone(),
            trigger,
            params: params_text,
            spec,
            created_at: now,
            stages: p
                .stages
                .iter()
                .map(|s| NewStage {
                    id: s.id.clone(),
                    kind: s.kind.name().to_string(),
                    needs: s.needs.clone(),
                })
                .collect(),
        },
        Op::run_event(
            now,
            EventKind::RunCreated,
            id,
            json!({"pipeline": p.name, "trigger": trigger, "params": params}),
        ),
    ];
    inner.writer.commit(ops).await?;
    scheduler::launch(inner, id, Reset::New, Vec::new()).await?;
    Ok(id)
}

impl Inner {
    pub(crate) fn is_active(&self, id: RunId) -> bool {
        self.active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&id)
    }
}

/// Drives the canaries once a second of the host's clock (a manual clock in tests moves them
/// only when advanced).
fn start_canary_clock(inner: &Arc<Inner>, start: i64) {
    if inner.canaries.is_empty() {
        return;
    }
    let inner2 = inner.clone();
    inner.tasks.spawn(async move {
        let inner = inner2;
        let mut last = start;
        loop {
            // Sleep until the second after the last one served; if the clock is already
            // there (a manual clock moved before this task got to sleep), do not sleep.
            let now_ms = inner.clock.now().timestamp_millis();
            let due_ms = (last + 1).saturating_mul(1_000);
            if now_ms < due_ms {
                let wait = std::time::Duration::from_millis((due_ms - now_ms) as u64);
                // A manual clock may move between reading it and sleeping on it: look again
                // at least four times a second of real time, so no second is ever slept past.
                tokio::select! {
                    () = inner.shutdown.cancelled() => break,
                    () = inner.clock.sleep(wait) => {}
                    () = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
                }
            } else if inner.shutdown.is_cancelled() {
                break;
            }
            let now = inner.clock.now().timestamp();
            if now <= last {
                continue;
            }
            let ops = inner.canaries.catch_up(last, now);
            last = now;
            if !ops.is_empty() {
                inner.writer.send(ops).await;
            }
        }
    });
}
