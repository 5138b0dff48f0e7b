//! Runs one run's DAG: a stage starts as soon as every stage it needs has succeeded, up to the
//! pipeline's `concurrency`; failures retry with backoff, then go to the dead-letter queue and
//! skip their dependents while independent branches carry on. One driver task per active run
//! owns that run's state; nothing else mutates it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::attempt::{self, AttemptEnd, AttemptJob};
use super::engine::Engine;
use super::error::{Result, RuntimeError};
use super::spec::Pipeline;
use crate::model::asset::{INPUT_KEY, input_value};
use crate::model::{
    AttemptError, DlqEntry, DlqId, EventKind, RunId, RunStatus, StageStatus, Timestamp,
};
use crate::store::{LoadedStage, Op, clip_json};
use crate::sync::lock;

pub(crate) const STOP_NONE: u8 = 0;
pub(crate) const STOP_CANCEL: u8 = 1;
pub(crate) const STOP_SHUTDOWN: u8 = 2;
/// This worker lost its lease and its runs went to other workers: stop everything and record
/// nothing more (the run is theirs now).
pub(crate) const STOP_FENCED: u8 = 3;

/// Which stages a (re)started driver should run again.
#[derive(Debug, Clone)]
pub(crate) enum Reset {
    /// A run that has just been created.
    New,
    /// Continue an interrupted run: stages that were in flight run again; failures stay.
    Resume,
    /// Re-run every failed, cancelled and skipped stage, keeping what succeeded.
    Retry,
    /// Give these stages a new attempt (a requeued dead-letter entry) and un-skip dependents.
    Stages(Vec<String>),
}

/// Messages from attempt and timer tasks to their driver.
#[derive(Debug)]
pub(crate) enum Msg {
    /// An attempt ended; `writes` record it (none when this worker was fenced off meanwhile).
    Done {
        idx: usize,
        n: u32,
        end: AttemptEnd,
        writes: Vec<Op>,
    },
    RetryDue {
        idx: usize,
        n: u32,
    },
}

/// Requests from the host to a running driver.
pub(crate) enum Control {
    /// Stop the run; `extra` (the audit of the request) is written with the event.
    Cancel {
        reason: String,
        extra: Vec<Op>,
        ack: oneshot::Sender<()>,
    },
    Reopen {
        stages: Vec<String>,
        ops: Vec<Op>,
        ack: oneshot::Sender<Result<()>>,
    },
    /// This worker lost its lease: kill the attempts and end without writing.
    Fence,
}

/// The host's handle on an active run.
pub(crate) struct ActiveRun {
    control: mpsc::UnboundedSender<Control>,
    pub(crate) done: watch::Receiver<Option<RunStatus>>,
}

impl ActiveRun {
    /// Hands `c` to the run's driver, or gives it back when the driver has already ended.
    pub(crate) fn send(&self, c: Control) -> Result<(), Control> {
        self.control.send(c).map_err(|e| e.0)
    }
}

struct StageState {
    status: StageStatus,
    attempts: u32,
    /// Attempts made before the stage was last reopened (retry, requeue): the retry policy
    /// applies afresh to the attempts after these.
    base: u32,
    output: Option<Value>,
    /// For a retrying stage: its backoff has elapsed.
    due: bool,
    /// For a retrying stage taken from the store: when its backoff ends.
    retry_at: Option<Timestamp>,
    /// The last failure of an attempt that ran (`code: message`), not one an open breaker
    /// stopped: the cause an entry parked with `breaker_open` names beside it.
    ran_failure: Option<String>,
}

struct Driver {
    engine: Arc<Engine>,
    id: RunId,
    pipeline: Arc<Pipeline>,
    params: Value,
    needs: Vec<Vec<usize>>,
    states: Vec<StageState>,
    running: usize,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    control: mpsc::UnboundedReceiver<Control>,
    done: watch::Sender<Option<RunStatus>>,
    cancel: CancellationToken,
    stop: Arc<AtomicU8>,
    started_at: Timestamp,
    /// Each stage's assets (by stage id): version and content.
    assets: BTreeMap<String, BTreeMap<String, (u32, Arc<str>)>>,
    /// An isolated stage test: its stage's fixed input. Test runs stay out of breakers and
    /// the dead-letter queue.
    test_input: Option<Value>,
    /// Write requests held to go to the writer right before the driver's next (an attempt's
    /// end, then the stage's status with what follows from it), so that they reach it
    /// together with the next stages' starts or the run's end and its claim of the next run,
    /// and share their commit: queued from two tasks, they often went in commits of their
    /// own, which the next run waited on. Each stays a request of its own, so a write the
    /// store refuses loses only its own. Sent before the drive loop waits.
    unsent: Vec<Vec<Op>>,
}

/// The run moves to `running` (its first start time is kept).
fn running(id: RunId, now: Timestamp) -> Op {
    Op::UpdateRun {
        id,
        status: RunStatus::Running,
        started_at: Some(now),
        finished_at: None,
    }
}

/// Each stage's state as the store holds it (what was in flight starts over: nothing runs
/// without a driver; a stage that was waiting out a retry's backoff waits out the rest), the
/// indices of what each stage needs, and the stored statuses.
fn stage_states(
    pipeline: &Pipeline,
    stored_stages: Vec<LoadedStage>,
) -> (Vec<StageState>, Vec<Vec<usize>>, Vec<StageStatus>) {
    let index: HashMap<&str, usize> = pipeline
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let needs = pipeline
        .stages
        .iter()
        .map(|s| {
            s.needs
                .iter()
                .filter_map(|n| index.get(n.as_str()).copied())
                .collect()
        })
        .collect();
    let fresh = || StageState {
        status: StageStatus::Pending,
        attempts: 0,
        base: 0,
        output: None,
        due: false,
        retry_at: None,
        ran_failure: None,
    };
    let mut states: Vec<StageState> = pipeline.stages.iter().map(|_| fresh()).collect();
    let mut stored: Vec<StageStatus> = vec![StageStatus::Pending; states.len()];
    for s in stored_stages {
        if let Some(&i) = index.get(s.id.as_str()) {
            stored[i] = s.status;
            let status = match s.status {
                StageStatus::Retrying | StageStatus::Interrupted if s.retry_at.is_some() => {
                    StageStatus::Retrying
                }
                StageStatus::Running | StageStatus::Retrying | StageStatus::Interrupted => {
                    StageStatus::Pending
                }
                other => other,
            };
            states[i] = StageState {
                status,
                attempts: s.attempts,
                output: s.output,
                retry_at: s.retry_at,
                ..fresh()
            };
        }
    }
    (states, needs, stored)
}

/// Takes run `id` for this worker (`me`), refused while another live worker drives it.
async fn take(engine: &Engine, me: &str, id: RunId) -> Result<()> {
    let me = me.to_string();
    let owner = engine
        .writer
        .on_conn(move |db| {
            if crate::store::workers::claim_one(db, &me, id)? {
                return Ok(None);
            }
            crate::store::workers::owner(db, &me, id)
                .map(|o| Some(o.unwrap_or_else(|| "another worker".into())))
        })
        .await?;
    match owner {
        None => Ok(()),
        Some(owner) => Err(RuntimeError::Conflict(format!(
            "run {id} is driven by worker {owner}; ask again once it has finished"
        ))),
    }
}

/// A run as its driver starts from it. A run no driver has started yet is known to whoever
/// has just created or claimed it (every stage pending, no attempt), and its driver reads
/// nothing first; any other run is read from the store.
pub(crate) struct Known {
    pub pipeline: Arc<Pipeline>,
    pub params: Value,
    pub started_at: Option<Timestamp>,
    pub stages: Vec<LoadedStage>,
    pub assets: super::assets::Resolved,
    pub test_input: Option<Value>,
}

impl Known {
    /// Run `id` as the store holds it.
    async fn read(engine: &Engine, id: RunId) -> Result<Known> {
        let loaded = engine
            .reads
            .with(move |r| r.load_run(id))
            .await?
            .ok_or_else(|| RuntimeError::NotFound(format!("there is no run {id}")))?;
        Known::from_store(id, loaded)
    }

    /// A run as read from the store (its definition as it was started).
    pub(crate) fn from_store(id: RunId, loaded: crate::store::LoadedRun) -> Result<Known> {
        let pipeline: Pipeline = serde_json::from_str(&loaded.spec).map_err(|e| {
            RuntimeError::Io(format!(
                "run {id} has a definition this opsdeck cannot read: {e}"
            ))
        })?;
        Ok(Known {
            pipeline: Arc::new(pipeline),
            params: loaded.params,
            started_at: loaded.started_at,
            stages: loaded.stages,
            assets: loaded.assets,
            test_input: loaded.test_input,
        })
    }
}

/// Starts (or restarts) the driver of a run from what the store holds (or from `known`, a run
/// nobody has started yet), after queuing
/// `ops` (the events that explain why) together with the run's move to `running`.
/// `confirm`: wait until the start is committed (and fail if it cannot be), as a command's
/// caller needs; else the start is queued ahead of the driver's writes, not waited for.
pub(crate) async fn launch(
    engine: &Arc<Engine>,
    id: RunId,
    reset: Reset,
    mut ops: Vec<Op>,
    confirm: bool,
    known: Option<Known>,
) -> Result<()> {
    // Only the worker that owns a run drives it (a new run is owned from its start or claim).
    let _taking = engine.taking();
    if let Some(w) = engine
        .worker
        .as_ref()
        .filter(|_| !matches!(reset, Reset::New))
    {
        let me = w.id.clone();
        take(engine, &me, id).await?;
    }
    let run = match known {
        Some(run) => run,
        None => Known::read(engine, id).await?,
    };
    let (states, needs, stored) = stage_states(&run.pipeline, run.stages);
    let assets = super::assets::load(engine, &run.assets).await?;
    let now = engine.clock.timestamp();
    let (tx, rx) = mpsc::unbounded_channel();
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = watch::channel(None);
    let mut driver = Driver {
        engine: engine.clone(),
        id,
        pipeline: run.pipeline,
        params: run.params,
        needs,
        states,
        running: 0,
        tx,
        rx,
        control: control_rx,
        done: done_tx,
        cancel: CancellationToken::new(),
        stop: Arc::new(AtomicU8::new(STOP_NONE)),
        started_at: run.started_at.unwrap_or(now),
        assets,
        test_input: run.test_input,
        unsent: Vec::new(),
    };
    driver.reset(&reset, &stored, now, &mut ops);
    driver.wait_out_backoffs(now);
    {
        let mut active = lock(&engine.active);
        if active.contains_key(&id) {
            return Err(RuntimeError::Conflict(format!(
                "run {id} is already running"
            )));
        }
        active.insert(
            id,
            ActiveRun {
                control: control_tx,
                done: done_rx,
            },
        );
    }
    if !confirm {
        // A new run (its record committed) or one this worker claimed: nobody waits on its
        // start, and its driver's writes are queued after these.
        engine.writer.send(ops).await;
    } else if let Err(e) = engine.writer.commit(ops).await {
        lock(&engine.active).remove(&id);
        return Err(e.into());
    }
    let why = match &reset {
        Reset::New => "started",
        Reset::Resume => "resumed",
        Reset::Retry => "retrying its failed stages",
        Reset::Stages(_) => "requeued",
    };
    tracing::info!(run = %id, pipeline = %driver.pipeline.name, "run {why}");
    engine.tasks.spawn(driver.drive());
    Ok(())
}

impl Driver {
    /// Stages taken from the store in the middle of a retry's backoff get their next attempt
    /// when it was due, not at once (a resumed run, on this host or another worker).
    fn wait_out_backoffs(&self, now: Timestamp) {
        for (idx, st) in self.states.iter().enumerate() {
            let (StageStatus::Retrying, Some(at)) = (st.status, st.retry_at) else {
                continue;
            };
            let left =
                std::time::Duration::from_millis(u64::try_from(at.millis_since(now)).unwrap_or(0));
            self.retry_after(idx, st.attempts, left);
        }
    }

    /// Marks stage `idx` due for its attempt after `n` once `delay` has passed.
    fn retry_after(&self, idx: usize, n: u32, delay: std::time::Duration) {
        let tx = self.tx.clone();
        // The deadline is taken now, not when the task first runs: a clock that moves in
        // between (a virtual one, advanced at once) would otherwise push it later.
        let due = self.engine.clock.sleep(delay);
        tokio::spawn(async move {
            due.await;
            let _ = tx.send(Msg::RetryDue { idx, n });
        });
    }

    /// Reopens what `reset` asks for and adds the writes that move the run to `running`.
    fn reset(&mut self, reset: &Reset, stored: &[StageStatus], now: Timestamp, ops: &mut Vec<Op>) {
        let to_reset: Vec<String> = match reset {
            Reset::New | Reset::Resume => Vec::new(),
            Reset::Retry => self.pipeline.stages.iter().map(|s| s.id.clone()).collect(),
            Reset::Stages(list) => list.clone(),
        };
        self.reopen_stages(&to_reset);
        for (i, st) in self.states.iter().enumerate() {
            if st.status != stored[i] {
                ops.push(Op::UpdateStage {
                    run_id: self.id,
                    stage: self.pipeline.stages[i].id.clone(),
                    status: st.status,
                });
            }
        }
        ops.insert(0, running(self.id, now));
        if matches!(reset, Reset::New) {
            ops.push(Op::run_event(
                now,
                EventKind::RunStarted,
                self.id,
                json!({"pipeline": self.pipeline.name}),
            ));
        }
    }

    fn stage_id(&self, idx: usize) -> &str {
        &self.pipeline.stages[idx].id
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst) != STOP_NONE
    }

    /// Puts the named stages (if they ended badly) and every skipped stage back to pending;
    /// stages still blocked by a failure are skipped again on the next pass.
    fn reopen_stages(&mut self, stages: &[String]) {
        if stages.is_empty() {
            return;
        }
        for (i, st) in self.states.iter_mut().enumerate() {
            let named = stages.iter().any(|s| *s == self.pipeline.stages[i].id);
            let bad = matches!(
                st.status,
                StageStatus::Failed | StageStatus::Cancelled | StageStatus::Skipped
            );
            if (named && bad) || st.status == StageStatus::Skipped {
                st.status = StageStatus::Pending;
                st.due = false;
                st.base = st.attempts;
            }
        }
    }

    fn input_for(&self, idx: usize) -> Value {
        let mut input = match &self.test_input {
            Some(fixed) => fixed.clone(),
            None => self.pipeline_input(idx),
        };
        if let (Some(assets), Value::Object(map)) =
            (self.assets.get(self.stage_id(idx)), &mut input)
        {
            map.insert(INPUT_KEY.into(), input_value(assets));
        }
        input
    }

    /// The versions of each asset stage `idx` uses, as its attempts record them.
    fn asset_versions(&self, idx: usize) -> Option<String> {
        self.assets.get(self.stage_id(idx)).map(|m| {
            let versions: BTreeMap<&str, u32> =
                m.iter().map(|(n, (v, _))| (n.as_str(), *v)).collect();
            serde_json::to_string(&versions).unwrap_or_default()
        })
    }

    fn pipeline_input(&self, idx: usize) -> Value {
        let mut stages = Map::new();
        for &n in &self.needs[idx] {
            stages.insert(
                self.stage_id(n).to_string(),
                self.states[n].output.clone().unwrap_or(Value::Null),
            );
        }
        json!({"params": self.params, "stages": stages})
    }

    async fn drive(mut self) {
        loop {
            self.fenced();
            if !self.stopping() {
                self.skip_blocked().await;
                self.start_ready().await;
            }
            let waiting_retry = self
                .states
                .iter()
                .any(|s| s.status == StageStatus::Retrying);
            if self.running == 0 && (self.stopping() || !waiting_retry) {
                if self.finish().await {
                    return;
                }
                continue;
            }
            self.send(Vec::new()).await;
            let shutdown = self.engine.shutdown.clone();
            tokio::select! {
                Some(msg) = self.rx.recv() => self.on_msg(msg).await,
                Some(ctl) = self.control.recv() => self.on_control(ctl).await,
                () = shutdown.cancelled(), if !self.stopping() => self.begin_stop(STOP_SHUTDOWN),
            }
        }
    }

    /// Whether this worker is fenced off; stops the run (once) when it has just become so.
    fn fenced(&mut self) -> bool {
        if self.stop.load(Ordering::SeqCst) == STOP_FENCED {
            return true;
        }
        if self.engine.writer.fenced() {
            // Overrides a cancel or shutdown in progress: nothing of theirs may be written.
            self.stop.store(STOP_FENCED, Ordering::SeqCst);
            self.cancel.cancel();
            return true;
        }
        false
    }

    fn begin_stop(&mut self, kind: u8) {
        if self
            .stop
            .compare_exchange(STOP_NONE, kind, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.cancel.cancel();
        }
    }

    async fn skip_blocked(&mut self) {
        let mut ops = Vec::new();
        let now = self.engine.clock.timestamp();
        loop {
            let mut changed = false;
            for i in 0..self.states.len() {
                if self.states[i].status != StageStatus::Pending {
                    continue;
                }
                let blocker = self.needs[i].iter().copied().find(|&n| {
                    matches!(
                        self.states[n].status,
                        StageStatus::Failed | StageStatus::Skipped | StageStatus::Cancelled
                    )
                });
                if let Some(b) = blocker {
                    self.states[i].status = StageStatus::Skipped;
                    changed = true;
                    let (stage, because) =
                        (self.stage_id(i).to_string(), self.stage_id(b).to_string());
                    ops.push(Op::UpdateStage {
                        run_id: self.id,
                        stage: stage.clone(),
                        status: StageStatus::Skipped,
                    });
                    ops.push(Op::stage_event(
                        now,
                        EventKind::StageSkipped,
                        self.id,
                        &stage,
                        json!({"because": because, "reason": format!("`{because}` did not succeed")}),
                    ));
                }
            }
            if !changed {
                break;
            }
        }
        self.send(ops).await;
    }

    /// Sends the requests held in `unsent`, then `ops` (nothing that is empty); nothing at
    /// all once this worker is fenced off, when nothing more may be recorded.
    async fn send(&mut self, ops: Vec<Op>) {
        self.send_unsent().await;
        if !ops.is_empty() && !self.fenced() {
            self.engine.writer.send(ops).await;
        }
    }

    /// Sends the requests held in `unsent`, each on its own, or drops them when this worker
    /// is fenced off.
    async fn send_unsent(&mut self) {
        let held = std::mem::take(&mut self.unsent);
        if self.fenced() {
            return;
        }
        for ops in held.into_iter().filter(|ops| !ops.is_empty()) {
            self.engine.writer.send(ops).await;
        }
    }

    async fn start_ready(&mut self) {
        let limit = self.pipeline.concurrency as usize;
        for i in 0..self.states.len() {
            if self.running >= limit {
                break;
            }
            let st = &self.states[i];
            let ready =
                st.status == StageStatus::Pending || (st.status == StageStatus::Retrying && st.due);
            if ready
                && self.needs[i]
                    .iter()
                    .all(|&n| self.states[n].status == StageStatus::Succeeded)
            {
                self.start_attempt(i).await;
            }
        }
    }

    async fn start_attempt(&mut self, idx: usize) {
        if self.fenced() {
            return;
        }
        let input = self.input_for(idx);
        let st = &mut self.states[idx];
        st.attempts += 1;
        st.status = StageStatus::Running;
        st.due = false;
        let n = st.attempts;
        let now = self.engine.clock.timestamp();
        let stage = self.stage_id(idx).to_string();
        let (input_text, _, _) = clip_json(&input, self.engine.limit);
        self.send(vec![
            Op::UpdateStage {
                run_id: self.id,
                stage: stage.clone(),
                status: StageStatus::Running,
            },
            Op::StartAttempt {
                run_id: self.id,
                stage: stage.clone(),
                n,
                started_at: now,
                input: input_text,
                assets: self.asset_versions(idx),
            },
            Op::stage_event(
                now,
                EventKind::StageStarted,
                self.id,
                &stage,
                json!({"attempt": n, "kind": self.pipeline.stages[idx].kind.name()}),
            ),
        ])
        .await;
        self.running += 1;
        tokio::spawn(attempt::run(AttemptJob {
            engine: self.engine.clone(),
            run_id: self.id,
            pipeline: self.pipeline.clone(),
            idx,
            n,
            input,
            started_at: now,
            test: self.test_input.is_some(),
            cancel: self.cancel.child_token(),
            stop: self.stop.clone(),
            tx: self.tx.clone(),
        }));
    }

    async fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::RetryDue { idx, n } => {
                let st = &mut self.states[idx];
                if st.status == StageStatus::Retrying && st.attempts == n {
                    st.due = true;
                }
            }
            Msg::Done {
                idx,
                n,
                end,
                writes,
            } => {
                self.running = self.running.saturating_sub(1);
                self.on_attempt_end(idx, n, end, writes).await;
            }
        }
    }

    /// Takes in an attempt's end (`writes` record it); its writes and the stage's wait in
    /// `unsent` for the driver's next.
    async fn on_attempt_end(&mut self, idx: usize, n: u32, end: AttemptEnd, writes: Vec<Op>) {
        let now = self.engine.clock.timestamp();
        let stage = self.pipeline.stages[idx].clone();
        let mut ops = Vec::new();
        if self.fenced() {
            return;
        }
        let stop = self.stop.load(Ordering::SeqCst);
        if let AttemptEnd::Failed(f) = &end
            && f.code != super::attempt::BREAKER_OPEN
        {
            self.states[idx].ran_failure = Some(format!("{}: {}", f.code, f.message));
        }
        let status = match end {
            AttemptEnd::Succeeded(output) => {
                self.states[idx].output = Some(output);
                StageStatus::Succeeded
            }
            AttemptEnd::Stopped | AttemptEnd::Failed(_) if stop == STOP_SHUTDOWN => {
                StageStatus::Interrupted
            }
            AttemptEnd::Stopped | AttemptEnd::Failed(_) if stop == STOP_CANCEL => {
                StageStatus::Cancelled
            }
            AttemptEnd::Stopped => StageStatus::Cancelled,
            AttemptEnd::Failed(f)
                if f.retryable && n - self.states[idx].base.min(n) < stage.retry.max_attempts =>
            {
                let tries = n - self.states[idx].base.min(n);
                let delay = {
                    let mut rng = lock(&self.engine.rng);
                    stage.retry.backoff.delay(tries, &mut rng)
                };
                ops.push(Op::stage_event(
                    now,
                    EventKind::StageRetrying,
                    self.id,
                    &stage.id,
                    json!({"attempt": n, "next_attempt": n + 1, "delay_ms": delay.as_millis() as u64,
                           "error": {"code": f.code, "message": f.message}}),
                ));
                let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                ops.push(Op::RetryAt {
                    run_id: self.id,
                    stage: stage.id.clone(),
                    after: n,
                    at: Timestamp::from_millis(now.millis().saturating_add(delay_ms)),
                });
                self.retry_after(idx, n, delay);
                StageStatus::Retrying
            }
            AttemptEnd::Failed(_) if self.test_input.is_some() => StageStatus::Failed,
            AttemptEnd::Failed(f) => {
                tracing::warn!(
                    run = %self.id,
                    stage = %stage.id,
                    attempts = n,
                    error = %f.message,
                    "a stage failed and was parked in the dead-letter queue"
                );
                match self.engine.writer.next_id(crate::store::IdKind::Dlq).await {
                    Ok(id) => self.dead_letter(idx, DlqId(id), n, &f, now, &mut ops),
                    Err(e) => {
                        // No id to park it under: the stage fails without an entry rather
                        // than under an id another entry could take.
                        tracing::error!(run = %self.id, error = %e, "no dead-letter id; the stage failed without a dead-letter entry");
                    }
                }
                StageStatus::Failed
            }
        };
        self.states[idx].status = status;
        ops.insert(
            0,
            Op::UpdateStage {
                run_id: self.id,
                stage: stage.id.clone(),
                status,
            },
        );
        self.unsent.push(writes);
        self.unsent.push(ops);
    }

    /// The writes that park stage `idx`'s failure in the dead-letter queue as entry `id`.
    fn dead_letter(
        &self,
        idx: usize,
        id: DlqId,
        n: u32,
        f: &super::stage::Failure,
        now: Timestamp,
        ops: &mut Vec<Op>,
    ) {
        let stage = &self.pipeline.stages[idx];
        // Parked because the breaker stayed open: the entry says what failed before it did.
        let message = match &self.states[idx].ran_failure {
            Some(cause) if f.code == super::attempt::BREAKER_OPEN => {
                format!(
                    "{}; the last attempt that ran failed with {cause}",
                    f.message
                )
            }
            _ => f.message.clone(),
        };
        let dlq = DlqEntry {
            id,
            run_id: self.id,
            pipeline: self.pipeline.name.clone(),
            stage: stage.id.clone(),
            attempts: n,
            input: Value::Null,
            error: AttemptError {
                code: f.code.to_string(),
                message,
            },
            created_at: now,
        };
        let (input, _, _) = clip_json(&self.input_for(idx), self.engine.limit);
        ops.push(Op::stage_event(
            now,
            EventKind::DlqAdded,
            self.id,
            &stage.id,
            json!({"dlq_id": dlq.id, "attempts": n, "error": dlq.error}),
        ));
        ops.insert(0, Op::InsertDlq { entry: dlq, input });
    }

    async fn on_control(&mut self, ctl: Control) {
        match ctl {
            Control::Fence => {
                self.engine.writer.set_fenced(true);
                self.fenced();
            }
            Control::Cancel { ack, .. } if self.fenced() => {
                let _ = ack.send(());
            }
            Control::Cancel { reason, extra, ack } => {
                let mut ops = Vec::new();
                if !self.stopping() {
                    let now = self.engine.clock.timestamp();
                    ops.push(Op::run_event(
                        now,
                        EventKind::RunCancelRequested,
                        self.id,
                        json!({"reason": reason}),
                    ));
                    self.begin_stop(STOP_CANCEL);
                }
                ops.extend(extra);
                self.send(ops).await;
                let _ = ack.send(());
            }
            Control::Reopen {
                stages,
                mut ops,
                ack,
            } => {
                if self.stopping() {
                    let why = match self.stop.load(Ordering::SeqCst) {
                        STOP_SHUTDOWN => "the host is shutting down",
                        STOP_FENCED => "this worker lost its lease; another worker has the run",
                        _ => "the run is being cancelled",
                    };
                    let _ = ack.send(Err(RuntimeError::Conflict(format!(
                        "run {} cannot be reopened now: {why}",
                        self.id
                    ))));
                    return;
                }
                let before: Vec<StageStatus> = self.states.iter().map(|s| s.status).collect();
                self.reopen_stages(&stages);
                let now = self.engine.clock.timestamp();
                ops.insert(0, running(self.id, now));
                for (i, st) in self.states.iter().enumerate() {
                    if st.status != before[i] {
                        ops.push(Op::UpdateStage {
                            run_id: self.id,
                            stage: self.stage_id(i).to_string(),
                            status: st.status,
                        });
                    }
                }
                let result = self
                    .engine
                    .writer
                    .commit(ops)
                    .await
                    .map_err(RuntimeError::from);
                let _ = ack.send(result);
            }
        }
    }

    /// The run's status as `stop` leaves it, how long it ran, and the writes that end it
    /// (stages a cancel leaves undone, the run, its event).
    fn end_ops(&mut self, stop: u8) -> (RunStatus, i64, Vec<Op>) {
        let now = self.engine.clock.timestamp();
        let mut ops = Vec::new();
        if stop == STOP_CANCEL {
            for i in 0..self.states.len() {
                let to = match self.states[i].status {
                    StageStatus::Pending => StageStatus::Skipped,
                    StageStatus::Retrying | StageStatus::Running => StageStatus::Cancelled,
                    _ => continue,
                };
                self.states[i].status = to;
                ops.push(Op::UpdateStage {
                    run_id: self.id,
                    stage: self.stage_id(i).to_string(),
                    status: to,
                });
            }
        }
        let status = match stop {
            STOP_CANCEL => RunStatus::Cancelled,
            STOP_SHUTDOWN | STOP_FENCED => RunStatus::Interrupted,
            _ if self
                .states
                .iter()
                .all(|s| s.status == StageStatus::Succeeded) =>
            {
                RunStatus::Succeeded
            }
            _ => RunStatus::Failed,
        };
        let duration_ms = now.millis_since(self.started_at);
        ops.push(Op::UpdateRun {
            id: self.id,
            status,
            started_at: None,
            finished_at: status.is_finished().then_some(now),
        });
        ops.push(if status == RunStatus::Interrupted {
            Op::run_event(
                now,
                EventKind::RunInterrupted,
                self.id,
                json!({"reason": "the host shut down; the run resumes when a host starts"}),
            )
        } else {
            Op::run_event(
                now,
                EventKind::RunFinished,
                self.id,
                json!({"status": status, "duration_ms": duration_ms}),
            )
        });
        (status, duration_ms, ops)
    }

    /// Commits the run's end (`ops`). A worker that claims runs claims the next waiting one
    /// meanwhile, apart from the end's commit, and hands it this run's slot as soon as it has
    /// it: the next run does not wait for this one's end to be written.
    async fn record_end(&self, ops: Vec<Op>, status: RunStatus, duration_ms: i64) {
        let claimer = self
            .engine
            .worker
            .as_ref()
            // Not beyond the worker's room (a retry or resume may have started runs past it).
            .filter(|w| {
                !self.engine.shutdown.is_cancelled() && self.engine.load() <= w.max_in_flight
            })
            .and_then(|w| w.claimer.as_ref());
        let commit = async {
            match self.engine.writer.commit(ops).await {
                Err(e) => {
                    tracing::error!(run = %self.id, error = %e, "could not record the end of a run");
                }
                Ok(()) => {
                    tracing::info!(run = %self.id, pipeline = %self.pipeline.name, %status, duration_ms, "run ended");
                }
            }
        };
        let hand_on = async {
            if let Some(claimer) = claimer {
                // Until handed on (its slot reserved), the run claimed is this worker's in
                // the store with no driver: not one to let go as stranded.
                let _taking = self.engine.taking();
                let rejoins = self.engine.rejoins.load(Ordering::Acquire);
                // Nothing claimed (nothing waiting, or the claimer could not): the slot is
                // freed when the run lets go, and the worker's loop fills it.
                for run in claimer.claim(1).await.into_iter().flatten() {
                    self.hand_on(run, rejoins);
                }
            }
        };
        tokio::join!(commit, hand_on);
    }

    /// Hands a run this run's end claimed to the worker's starter, in this run's slot (held
    /// in `reserved` until the new run counts itself). `rejoins`: as counted before the claim,
    /// so that a run claimed before a rejoin (which gave it back) is not started.
    fn hand_on(&self, run: crate::store::workers::Claimed, rejoins: u64) {
        self.engine.reserved.fetch_add(1, Ordering::AcqRel);
        let handed = super::engine::Handed::new(run, rejoins);
        if self.engine.handed.send(handed).is_err() {
            self.engine.unreserve();
        }
    }

    /// Records the run's end and deregisters it, unless a reopen request arrived meanwhile,
    /// in which case the run carries on (returns false).
    async fn finish(&mut self) -> bool {
        let fenced = self.fenced();
        let stop = self.stop.load(Ordering::SeqCst);
        let (status, duration_ms, ops) = self.end_ops(stop);
        // The last attempt's end and its stage's go to the writer right before the run's, so
        // they share its commit.
        self.send_unsent().await;
        if fenced {
            tracing::warn!(run = %self.id, "stopped a run this worker no longer holds; another worker resumes it");
        } else {
            self.record_end(ops, status, duration_ms).await;
        }
        loop {
            let active = lock(&self.engine.active);
            match self.control.try_recv() {
                Ok(Control::Fence) => drop(active),
                Ok(Control::Cancel { ack, extra, .. }) => {
                    drop(active);
                    if !extra.is_empty() && !fenced {
                        self.engine.writer.send(extra).await;
                    }
                    let _ = ack.send(());
                }
                Ok(Control::Reopen { stages, ops, ack }) => {
                    drop(active);
                    if stop == STOP_SHUTDOWN || fenced {
                        let why = if fenced {
                            "this worker lost its lease; another worker has the run"
                        } else {
                            "the host is shutting down"
                        };
                        let _ = ack.send(Err(RuntimeError::Conflict(why.into())));
                        continue;
                    }
                    // Its end let go of it: another worker may have taken it since (a retry).
                    if let Some(w) = &self.engine.worker
                        && let Err(e) = take(&self.engine, &w.id, self.id).await
                    {
                        let _ = ack.send(Err(e));
                        continue;
                    }
                    // A new lease of life: clear the stop so the run can go on.
                    self.stop.store(STOP_NONE, Ordering::SeqCst);
                    self.cancel = CancellationToken::new();
                    self.on_control(Control::Reopen { stages, ops, ack }).await;
                    return false;
                }
                Err(_) => {
                    let mut active = active;
                    active.remove(&self.id);
                    drop(active);
                    self.done.send_replace(Some(status));
                    // A worker with runs waiting for room claims the next one now.
                    self.engine.freed.notify_one();
                    return true;
                }
            }
        }
    }
}
