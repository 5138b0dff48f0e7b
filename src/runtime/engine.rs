//! The runtime: runs and the dead-letter queue of one workspace. It starts, cancels, retries,
//! resumes and requeues runs, and answers reads about them. It knows nothing of canaries,
//! audit or who asked: the host gives it the store, the clock and the task tracker, checks who
//! may act, and hands in the audit writes that must commit with each change.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::assets;
use super::breaker::Breakers;
use super::catalog::Pipelines;
use super::driver::{self, ActiveRun, Control, Reset};
use super::error::{Result, RuntimeError};
use super::stage::http_client;
use crate::clock::Clock;
use crate::model::{
    BreakerInfo, DlqEntry, DlqId, DlqQuery, Event, EventKind, LogFilter, Page, Run, RunId,
    RunQuery, RunStatus, RunSummary, StageIo, StageStatus, StartRun, Trigger,
};
use crate::rng::Rng;
use crate::store::{NewStage, Op, ReadPool, Reader, Writer};
use crate::sync::lock;

/// Shared state of the runtime, used by run drivers, attempts and schedule tasks.
pub(crate) struct Engine {
    /// Read again from the files when one changed, at each look ([`Engine::catalog`]).
    pipelines: std::sync::Mutex<Arc<Pipelines>>,
    /// The workspace directory: command stages run in it.
    pub(crate) dir: PathBuf,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) writer: Writer,
    pub(crate) reads: ReadPool,
    /// Run counts per filter, reused while nothing was written.
    pub(crate) counts: Arc<crate::store::CountCache>,
    pub(crate) breakers: Breakers,
    pub(crate) rng: Mutex<Rng>,
    pub(crate) http: reqwest::Client,
    pub(crate) active: Mutex<HashMap<RunId, ActiveRun>>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// Inputs, outputs and stderr above this many bytes are stored clipped.
    pub(crate) limit: usize,
    /// When several workers share the store (PostgreSQL): this one's id and how many runs
    /// it drives at once. A run is driven only by the worker that owns it in the store.
    pub(crate) worker: Option<WorkerSlot>,
    /// Woken whenever a run ends here: room for another.
    pub(crate) freed: Arc<tokio::sync::Notify>,
    /// Runs this worker has taken but not yet started (counted with the active ones, so
    /// starts at the same moment cannot take more than `max_in_flight`).
    pub(crate) reserved: std::sync::atomic::AtomicUsize,
    /// Runs being taken for this worker in the store by a command (a resume, retry, requeue
    /// or cancel) and not yet driven or settled: see [`Engine::taking`].
    pub(crate) taking: std::sync::atomic::AtomicUsize,
    /// Runs a run's end claimed, for the worker's starter; each holds a slot in `reserved`
    /// until started. At most one per run ending, so never more than `max_in_flight`.
    pub(crate) handed: mpsc::UnboundedSender<Handed>,
    handed_rx: Mutex<Option<mpsc::UnboundedReceiver<Handed>>>,
    /// How many times this worker has rejoined after losing its lease: a run claimed before
    /// a rejoin went back to the store with it, and must not start here.
    pub(crate) rejoins: std::sync::atomic::AtomicU64,
}

impl Engine {
    /// Takes a slot for one more run if this worker has room; give it back with
    /// [`Engine::unreserve`] once the run is started (or failed to start).
    fn reserve(&self, max: usize) -> bool {
        let active = lock(&self.active).len();
        self.reserved
            .fetch_update(
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
                |r| (active + r < max).then_some(r + 1),
            )
            .is_ok()
    }

    /// Counted from before a command takes a run in the store until the guard drops (the run
    /// driven, settled or refused): meanwhile the store may say this worker holds a run that
    /// no driver has yet, and that is not a stranded run.
    pub(crate) fn taking(&self) -> Taking<'_> {
        self.taking
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Taking(self)
    }

    pub(crate) fn unreserve(&self) {
        self.reserved
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Runs this worker drives or is about to.
    pub(crate) fn load(&self) -> usize {
        lock(&self.active).len() + self.reserved.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// See [`Engine::taking`].
pub(crate) struct Taking<'a>(&'a Engine);

impl Drop for Taking<'_> {
    fn drop(&mut self) {
        self.0
            .taking
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A run a run's end claimed, and how many rejoins this worker had made when it did.
pub struct Handed {
    pub run: crate::store::workers::Claimed,
    rejoins: u64,
}

impl Handed {
    pub(crate) fn new(run: crate::store::workers::Claimed, rejoins: u64) -> Handed {
        Handed { run, rejoins }
    }
}

/// This worker among several.
#[derive(Debug, Clone)]
pub struct WorkerSlot {
    pub id: String,
    pub max_in_flight: usize,
    /// Takes runs others started or left (a long-lived host): a run's end then claims the
    /// next waiting run through it, beside the end's commit.
    pub claimer: Option<crate::store::Claimer>,
}

/// What the runtime is built from; the host owns the store, the clock and the tasks.
pub struct Parts {
    pub pipelines: Arc<Pipelines>,
    pub dir: PathBuf,
    pub clock: Arc<dyn Clock>,
    pub writer: Writer,
    pub reads: ReadPool,
    /// Seed for retry jitter; random when absent.
    pub seed: Option<u64>,
    pub limit: usize,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    pub worker: Option<WorkerSlot>,
}

/// The runtime of a host. Cloning shares it.
#[derive(Clone)]
pub struct Runtime {
    e: Arc<Engine>,
}

fn not_found_run(id: RunId) -> RuntimeError {
    RuntimeError::NotFound(format!(
        "there is no run {id}; list runs with `opsdeck runs`"
    ))
}

impl Runtime {
    pub fn new(p: Parts) -> Runtime {
        let (handed, handed_rx) = mpsc::unbounded_channel();
        Runtime {
            e: Arc::new(Engine {
                pipelines: std::sync::Mutex::new(p.pipelines),
                dir: p.dir,
                clock: p.clock,
                writer: p.writer,
                reads: p.reads,
                counts: Arc::default(),
                breakers: Breakers::default(),
                rng: Mutex::new(p.seed.map_or_else(Rng::from_entropy, Rng::new)),
                http: http_client(),
                active: Mutex::new(HashMap::new()),
                shutdown: p.shutdown,
                tasks: p.tasks,
                limit: p.limit,
                worker: p.worker,
                freed: Arc::new(tokio::sync::Notify::new()),
                reserved: std::sync::atomic::AtomicUsize::new(0),
                taking: std::sync::atomic::AtomicUsize::new(0),
                handed,
                handed_rx: Mutex::new(Some(handed_rx)),
                rejoins: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// The runs ends claimed, for the worker's starter (once: the starter's).
    pub fn handed_runs(&self) -> Option<mpsc::UnboundedReceiver<Handed>> {
        lock(&self.e.handed_rx).take()
    }

    /// A run from [`Runtime::handed_runs`] has been started (or could not be): its slot is
    /// counted by the run now.
    pub fn handed_started(&self) {
        self.e.unreserve();
    }

    /// This worker has rejoined (its runs, claimed ones not yet started among them, went back
    /// to the store): called once every driver has stopped.
    pub fn rejoined(&self) {
        self.e
            .rejoins
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Whether a run handed on as `h` may start here: no rejoin since it was claimed.
    pub fn may_start(&self, h: &Handed) -> bool {
        self.e.rejoins.load(std::sync::atomic::Ordering::Acquire) == h.rejoins
    }

    /// Fires pipeline schedules until the host shuts down.
    pub fn start_schedules(&self) {
        super::schedules::start(&self.e);
    }

    /// The runs a stopped host left `interrupted`.
    pub async fn interrupted(&self) -> Result<Vec<RunId>> {
        Ok(self
            .e
            .reads
            .with(|r| r.run_ids_with_status(RunStatus::Interrupted))
            .await?)
    }

    /// Records a new run and starts it; returns once the run is durably recorded, with the
    /// writes `extra` makes for its id committed in the same transaction.
    pub async fn start_run(
        &self,
        pipeline: &str,
        params: &Map<String, Value>,
        trigger: Trigger,
        extra: impl FnOnce(RunId) -> Vec<Op>,
    ) -> Result<RunId> {
        let req = StartRun {
            pipeline: pipeline.to_string(),
            params: params.clone(),
            ..StartRun::default()
        };
        start_run(&self.e, &req, trigger, extra).await
    }

    /// [`Runtime::start_run`] with asset overrides, or one stage alone in test mode.
    pub async fn start(
        &self,
        req: &StartRun,
        trigger: Trigger,
        extra: impl FnOnce(RunId) -> Vec<Op>,
    ) -> Result<RunId> {
        start_run(&self.e, req, trigger, extra).await
    }

    pub fn is_active(&self, id: RunId) -> bool {
        self.e.is_active(id)
    }

    /// The runs this worker drives now, and whether some run is on its way to a driver
    /// (between its claim or start and its driver's start): a run the store says this worker
    /// holds that is neither has no driver here.
    pub fn driving(&self) -> (Vec<RunId>, bool) {
        let active = lock(&self.e.active);
        let starting = self.e.reserved.load(std::sync::atomic::Ordering::Acquire) > 0
            || self.e.taking.load(std::sync::atomic::Ordering::Acquire) > 0;
        (active.keys().copied().collect(), starting)
    }

    /// Runs in flight now (with, on a worker, those it is starting).
    pub fn running(&self) -> usize {
        self.e.load()
    }

    /// Waits until the run is no longer active and returns its stored status. With several
    /// workers, a run another one drives is waited for until it has finished.
    pub async fn wait(&self, id: RunId) -> Result<RunStatus> {
        loop {
            let done = lock(&self.e.active).get(&id).map(|a| a.done.clone());
            match done {
                Some(mut rx) => {
                    let _ = rx.wait_for(Option::is_some).await;
                }
                None => {
                    let status = self.summary(id).await?.status;
                    if self.e.worker.is_none()
                        || status.is_finished()
                        || self.e.shutdown.is_cancelled()
                    {
                        return Ok(status);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Starts a run this worker has just claimed from the store; `unstarted`, the run as read
    /// with its claim when no driver has started it yet.
    pub async fn start_claimed(
        &self,
        id: RunId,
        unstarted: Option<crate::store::LoadedRun>,
    ) -> Result<()> {
        // A definition that does not parse is read again at the start, which says so.
        let known = unstarted.and_then(|run| driver::Known::from_store(id, run).ok());
        driver::launch(&self.e, id, Reset::New, Vec::new(), false, known).await
    }

    /// This worker among several, if it is one.
    pub fn worker(&self) -> Option<&WorkerSlot> {
        self.e.worker.as_ref()
    }

    /// Stops every run this worker drives, without recording anything more, and waits until
    /// all have stopped: the worker lost its lease and other workers resume its runs. Their
    /// attempts' processes are killed. The caller clears the fence once it has rejoined.
    pub async fn fence(&self) {
        self.e.writer.set_fenced(true);
        let stopping: Vec<_> = lock(&self.e.active)
            .values()
            .map(|a| {
                let _ = a.send(Control::Fence);
                a.done.clone()
            })
            .collect();
        for mut done in stopping {
            let _ = done.wait_for(Option::is_some).await;
        }
    }

    /// The pipelines runs start from, as their files are now.
    pub fn pipelines(&self) -> Arc<Pipelines> {
        self.e.catalog()
    }

    /// Woken whenever a run ends here (a worker then has room to claim another).
    pub fn freed(&self) -> Arc<tokio::sync::Notify> {
        self.e.freed.clone()
    }

    fn refuse_when_stopping(&self) -> Result<()> {
        if self.e.shutdown.is_cancelled() {
            return Err(RuntimeError::Conflict("the host is shutting down".into()));
        }
        Ok(())
    }

    /// The run's status: `running` while a driver has it, else as stored.
    async fn status(&self, id: RunId) -> Result<RunStatus> {
        if self.is_active(id) {
            return Ok(RunStatus::Running);
        }
        Ok(self.summary(id).await?.status)
    }

    async fn summary(&self, id: RunId) -> Result<RunSummary> {
        self.e
            .reads
            .with(move |r| r.run_summary(id))
            .await?
            .ok_or_else(|| not_found_run(id))
    }

    /// Cancels a run: an active run's attempts are killed and it ends `cancelled`; a pending or
    /// interrupted run is marked `cancelled` at once. `extra` is written with the change.
    pub async fn cancel_run(&self, id: RunId, reason: &str, extra: Vec<Op>) -> Result<()> {
        let taking = self.e.taking();
        let (ack, acked) = oneshot::channel();
        let cancel = Control::Cancel {
            reason: reason.to_string(),
            extra,
            ack,
        };
        let returned = match lock(&self.e.active).get(&id) {
            Some(a) => a.send(cancel).err(),
            None => Some(cancel),
        };
        // Not active (or it ended just now): cancel what the store holds.
        let Some(Control::Cancel { extra, .. }) = returned else {
            let _ = acked.await;
            return Ok(());
        };
        let mut taken = None;
        if let Some(w) = &self.e.worker {
            use crate::store::workers::{CancelAt, take_to_cancel};
            let (me, why) = (w.id.clone(), reason.to_string());
            let at = self
                .e
                .writer
                .on_conn(move |db| take_to_cancel(db, &me, id, &why))
                .await?;
            match at {
                CancelAt::Worker(owner) => {
                    // The worker that drives it cancels it; the request is recorded here.
                    self.e.writer.commit(extra).await?;
                    tracing::info!(run = %id, worker = %owner, "asked the worker driving the run to cancel it");
                    // Nothing is taken here: the wait (as long as the run takes to stop) does
                    // not hold back the look for stranded runs.
                    drop(taking);
                    self.wait(id).await?;
                    return Ok(());
                }
                CancelAt::Here => taken = Some(w.id.clone()),
                // Refused below, whichever worker drove it.
                CancelAt::Finished => {}
            }
        }
        let cancelled = self.cancel_in_store(id, reason, extra).await;
        if let (Err(_), Some(me)) = (&cancelled, taken) {
            // Not cancelled: another worker may claim and run it.
            if let Err(e) = self
                .e
                .writer
                .on_conn(move |db| crate::store::workers::let_go(db, &me, id))
                .await
            {
                tracing::warn!(run = %id, error = %e, "could not let go of a run it failed to cancel");
            }
        }
        cancelled
    }

    /// Cancels run `id`, which no driver has, in the store: its stages not finished, itself,
    /// and its event.
    async fn cancel_in_store(&self, id: RunId, reason: &str, extra: Vec<Op>) -> Result<()> {
        let summary = self.summary(id).await?;
        if let Some(why) = summary.status.cancel_refusal(id) {
            return Err(RuntimeError::Conflict(why));
        }
        let loaded = self
            .e
            .reads
            .with(move |r| r.load_run(id))
            .await?
            .ok_or_else(|| not_found_run(id))?;
        let now = self.e.clock.timestamp();
        let mut ops = vec![Op::UpdateRun {
            id,
            status: RunStatus::Cancelled,
            started_at: None,
            finished_at: Some(now),
        }];
        for crate::store::LoadedStage {
            id: stage, status, ..
        } in loaded.stages
        {
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
        ops.extend(extra);
        self.e.writer.commit(ops).await?;
        Ok(())
    }

    /// Re-runs a failed or cancelled run from its failed stages, keeping what succeeded.
    pub async fn retry_run(&self, id: RunId, reason: &str, extra: Vec<Op>) -> Result<()> {
        self.refuse_when_stopping()?;
        let status = self.status(id).await?;
        if let Some(why) = status.retry_refusal(id) {
            return Err(RuntimeError::Conflict(why));
        }
        let entries = self.e.reads.with(move |r| r.dlq_for_run(id)).await?;
        let now = self.e.clock.timestamp();
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
        ops.extend(extra);
        driver::launch(&self.e, id, Reset::Retry, ops, true, None).await
    }

    /// Continues an interrupted run: finished stages keep their results and are not run again.
    pub async fn resume_run(&self, id: RunId, extra: Vec<Op>) -> Result<()> {
        self.refuse_when_stopping()?;
        let status = self.status(id).await?;
        if let Some(why) = status.resume_refusal(id) {
            return Err(RuntimeError::Conflict(why));
        }
        let now = self.e.clock.timestamp();
        let mut ops = vec![Op::run_event(now, EventKind::RunResumed, id, json!({}))];
        ops.extend(extra);
        driver::launch(&self.e, id, Reset::Resume, ops, true, None).await
    }

    /// Gives a dead-lettered stage a new attempt in its run; returns the run.
    pub async fn requeue(&self, dlq: DlqId, reason: &str, extra: Vec<Op>) -> Result<RunId> {
        self.refuse_when_stopping()?;
        let entry = self.dlq_entry(dlq).await?;
        let ops = self.leave_dlq(&entry, EventKind::DlqRequeued, reason, extra);
        let (ack, acked) = oneshot::channel();
        let control = Control::Reopen {
            stages: vec![entry.stage.clone()],
            ops: ops.clone(),
            ack,
        };
        let sent = lock(&self.e.active)
            .get(&entry.run_id)
            .is_some_and(|a| a.send(control).is_ok());
        if sent {
            acked.await.map_err(|_| {
                RuntimeError::Conflict("the run ended before the requeue was applied".into())
            })??;
        } else {
            driver::launch(
                &self.e,
                entry.run_id,
                Reset::Stages(vec![entry.stage.clone()]),
                ops,
                true,
                None,
            )
            .await?;
        }
        Ok(entry.run_id)
    }

    /// Removes a dead-letter entry; its run stays failed.
    pub async fn discard(&self, dlq: DlqId, reason: &str, extra: Vec<Op>) -> Result<DlqEntry> {
        let entry = self.dlq_entry(dlq).await?;
        let ops = self.leave_dlq(&entry, EventKind::DlqDiscarded, reason, extra);
        self.e.writer.commit(ops).await?;
        Ok(entry)
    }

    /// The writes that take `entry` out of the dead-letter queue, with the event saying how
    /// (`kind`) and why, and `extra`.
    fn leave_dlq(
        &self,
        entry: &DlqEntry,
        kind: EventKind,
        reason: &str,
        extra: Vec<Op>,
    ) -> Vec<Op> {
        let now = self.e.clock.timestamp();
        let mut ops = vec![
            Op::DeleteDlq { id: entry.id },
            Op::stage_event(
                now,
                kind,
                entry.run_id,
                &entry.stage,
                json!({"dlq_id": entry.id, "reason": reason}),
            ),
        ];
        ops.extend(extra);
        ops
    }

    /// A dead-letter entry, or a sentence saying where it went.
    pub async fn dlq_entry(&self, id: DlqId) -> Result<DlqEntry> {
        self.e
            .reads
            .with(move |r| r.dlq_entry_or_why(id))
            .await?
            .map_err(RuntimeError::NotFound)
    }

    pub async fn runs(&self, q: RunQuery) -> Result<Page<RunSummary>> {
        // The generation before the read: a write during it only makes the count fresher.
        let generation = self.e.writer.generation();
        let counts = self.e.counts.clone();
        Ok(self
            .e
            .reads
            .with(move |r| r.runs_counted(&q, Some((&counts, generation))))
            .await?)
    }

    pub async fn run(&self, id: RunId) -> Result<Run> {
        self.e
            .reads
            .with(move |r| r.run(id))
            .await?
            .ok_or_else(|| not_found_run(id))
    }

    pub async fn stage_io(&self, id: RunId, stage: &str) -> Result<StageIo> {
        let s = stage.to_string();
        let io = self.e.reads.with(move |r| r.stage_io(id, &s)).await?;
        if let Some(io) = io {
            return Ok(io);
        }
        let ids = self.e.reads.with(move |r| r.stage_ids(id)).await?;
        if ids.is_empty() {
            Err(not_found_run(id))
        } else {
            Err(RuntimeError::NotFound(format!(
                "run {id} has no stage `{stage}`; stages: {}",
                ids.join(", ")
            )))
        }
    }

    pub async fn dlq(&self, q: DlqQuery) -> Result<Page<DlqEntry, DlqId>> {
        Ok(self.e.reads.with(move |r| r.dlq(&q)).await?)
    }

    /// Stored events after `since`, oldest first.
    pub async fn events(&self, since: u64, limit: usize) -> Result<Vec<Event>> {
        Ok(self.e.reads.with(move |r| r.events(since, limit)).await?)
    }

    /// The events `filter` keeps after `since` (see
    /// [`Reader::log_events`](crate::store::Reader::log_events)); a run that does not exist is
    /// named (looked for only when the page is empty, so a page of events costs no second
    /// read).
    pub async fn log_events(
        &self,
        filter: LogFilter,
        since: u64,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let run = filter.run;
        let page = self
            .e
            .reads
            .with(move |r| r.log_events(&filter, since, limit))
            .await?;
        if let Some(run) = run
            && page.is_empty()
            && !self.e.reads.with(move |r| r.run_exists(run)).await?
        {
            return Err(not_found_run(run));
        }
        Ok(page)
    }

    /// The dead-letter depth and the last event's sequence number.
    pub async fn counts(&self) -> Result<(u64, u64)> {
        Ok(self
            .e
            .reads
            .with(|r| Ok((r.dlq_depth()?, r.last_seq()?)))
            .await?)
    }

    /// Runs counted by pipeline and status, for `/metrics`.
    pub async fn run_counts(&self) -> Result<Vec<(String, String, u64)>> {
        Ok(self.e.reads.with(Reader::run_counts).await?)
    }

    /// Takes breaker states saved in the store, as `(target, state, opened_at)` (a host
    /// starting): a breaker open when the host stopped is open again.
    pub fn restore_breakers(&self, saved: Vec<(String, String, Option<String>)>) {
        for (target, state, opened_at) in saved {
            let Ok(state) = state.parse::<super::breaker::BreakerState>() else {
                tracing::warn!(target_name = %target, %state, "skipped a saved breaker with an unknown state");
                continue;
            };
            let opened_at = opened_at
                .and_then(|t| crate::model::Timestamp::parse(&t).ok())
                .map(crate::model::Timestamp::datetime);
            self.e
                .breakers
                .with(&target, |b| b.follow(state, opened_at));
        }
    }

    /// Follows a `breaker_changed` event another worker recorded: a breaker that opens on one
    /// worker is open on all, and closes on all when a probe succeeds anywhere.
    pub fn follow_breaker(&self, e: &Event) {
        let me = self.e.worker.as_ref().map(|w| w.id.as_str());
        let data = &e.data;
        let from_other = data["worker"].as_str().is_some_and(|w| Some(w) != me);
        if e.kind != EventKind::BreakerChanged || !from_other {
            return;
        }
        let (Some(target), Some(to)) = (data["target"].as_str(), data["to"].as_str()) else {
            return;
        };
        let Ok(to) = to.parse::<super::breaker::BreakerState>() else {
            return;
        };
        let opened_at = data["opened_at"]
            .as_str()
            .and_then(|t| crate::model::Timestamp::parse(t).ok())
            .map(crate::model::Timestamp::datetime);
        self.e.breakers.with(target, |b| b.follow(to, opened_at));
    }

    /// Breakers that are not closed.
    pub fn breakers(&self) -> Vec<BreakerInfo> {
        self.e
            .breakers
            .not_closed()
            .into_iter()
            .map(|(target, state)| BreakerInfo {
                target,
                state: state.as_str().to_string(),
            })
            .collect()
    }
}

impl Engine {
    /// The pipelines as their files are now: read again when a file was added, edited or
    /// removed since the last look (a new run of a long-lived host uses the edited file).
    pub(crate) fn catalog(&self) -> Arc<Pipelines> {
        let mut current = lock(&self.pipelines);
        if let Some(fresh) = current.reloaded() {
            tracing::info!(
                pipelines = fresh.iter().count(),
                problems = fresh.problems().len(),
                "pipeline files changed; read them again"
            );
            *current = Arc::new(fresh);
        }
        current.clone()
    }
}

pub(crate) async fn start_run(
    e: &Arc<Engine>,
    req: &StartRun,
    trigger: Trigger,
    extra: impl FnOnce(RunId) -> Vec<Op>,
) -> Result<RunId> {
    if e.shutdown.is_cancelled() {
        return Err(RuntimeError::Conflict("the host is shutting down".into()));
    }
    let found = e
        .catalog()
        .get(&req.pipeline)
        .map_err(RuntimeError::BadInput)?;
    let params = found
        .params_from_json(&req.params)
        .map_err(RuntimeError::BadInput)?;
    let (p, test_input) = match &req.test {
        Some(t) => {
            let (one, input) = assets::test_run(e, &found, t).await?;
            (Arc::new(one), Some(input))
        }
        None => (found, None),
    };
    let resolved = assets::resolve(e, &p, &req.overrides).await?;
    let id = RunId(e.writer.next_id(crate::store::IdKind::Run).await?);
    let now = e.clock.timestamp();
    let spec = serde_json::to_string(p.as_ref()).map_err(|e| RuntimeError::Io(e.to_string()))?;
    let params_text = Value::Object(params.clone()).to_string();
    let overrides =
        serde_json::to_string(&req.overrides).map_err(|e| RuntimeError::Io(e.to_string()))?;
    let assets = serde_json::to_string(&resolved).map_err(|e| RuntimeError::Io(e.to_string()))?;
    let test_stage = req.test.as_ref().map(|t| t.stage.clone());
    // What its driver starts from, when this host drives it: nothing to read back.
    let known = driver::Known {
        pipeline: p.clone(),
        params: Value::Object(params.clone()),
        started_at: None,
        stages: Vec::new(),
        assets: resolved,
        test_input: test_input.clone(),
    };
    let mut ops = vec![
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
            overrides,
            assets,
            test_input: test_input.map(|v| v.to_string()),
        },
        Op::run_event(
            now,
            EventKind::RunCreated,
            id,
            json!({"pipeline": p.name, "trigger": trigger, "params": params,
                   "overrides": req.overrides, "test": test_stage}),
        ),
    ];
    ops.extend(extra(id));
    // Several workers: this one drives the run if it has room (owning it from the start, so
    // no other worker claims it), else the others are told there is work.
    let room = e
        .worker
        .as_ref()
        .map(|w| (w.id.clone(), e.reserve(w.max_in_flight)));
    match &room {
        Some((me, true)) => ops.push(Op::Own {
            id,
            worker: me.clone(),
        }),
        Some((_, false)) => ops.push(Op::WakeWorkers),
        None => {}
    }
    let committed = e.writer.commit(ops).await;
    if committed.is_err() && matches!(room, Some((_, true))) {
        e.unreserve();
    }
    committed?;
    if let Some((_, false)) = room {
        return Ok(id);
    }
    // Its record is committed (the caller's answer stands on that): its move to `running` is
    // queued ahead of its driver's writes without waiting for it, so its first stages start
    // one commit sooner (a burst of submissions no longer queues each start behind the others'
    // inserts).
    let launched = driver::launch(e, id, Reset::New, Vec::new(), false, Some(known)).await;
    if matches!(room, Some((_, true))) {
        e.unreserve();
    }
    if let Err(err) = launched {
        never_started(e, id, &err).await;
        return Err(err);
    }
    Ok(id)
}

/// A run recorded but never started ends as failed, so nothing waits on it forever.
async fn never_started(e: &Engine, id: RunId, err: &RuntimeError) {
    let now = e.clock.timestamp();
    let end = vec![
        Op::UpdateRun {
            id,
            status: RunStatus::Failed,
            started_at: None,
            finished_at: Some(now),
        },
        Op::run_event(
            now,
            EventKind::RunFinished,
            id,
            json!({"status": RunStatus::Failed, "error": err.to_string()}),
        ),
    ];
    if let Err(w) = e.writer.commit(end).await {
        tracing::error!(run = %id, error = %w, "could not record a run that failed to start");
    }
}

impl Engine {
    pub(crate) fn is_active(&self, id: RunId) -> bool {
        lock(&self.active).contains_key(&id)
    }
}
