//! The single writer: a dedicated thread that owns the write connection, drains requests in
//! batches, applies each batch in one transaction, assigns event sequence numbers inside that
//! transaction (so they are gap-free), acknowledges, and only then publishes the events.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::thread::JoinHandle;

use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::db::{Db, Dialect, Val, args};
use super::{Result, StoreError};
use crate::model::{
    AttemptStatus, AuditRecord, DlqEntry, DlqId, Event, EventKind, Role, RunId, RunStatus,
    StageStatus, Timestamp, Trigger, Via,
};

/// Most requests folded into one transaction; bounds commit latency under load.
const MAX_BATCH: usize = 512;

/// A stage row created with its run.
#[derive(Debug, Clone)]
pub struct NewStage {
    pub id: String,
    pub kind: String,
    pub needs: Vec<String>,
}

/// An event to append; its `seq` is assigned at commit.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub at: Timestamp,
    pub kind: EventKind,
    pub run_id: Option<RunId>,
    pub stage: Option<String>,
    pub data: Value,
}

impl NewEvent {
    /// The event as stored under `seq`.
    fn numbered(&self, seq: u64) -> Event {
        Event {
            seq,
            at: self.at,
            kind: self.kind,
            run_id: self.run_id,
            stage: self.stage.clone(),
            data: self.data.clone(),
        }
    }
}

/// One change to the store.
#[derive(Debug, Clone)]
pub enum Op {
    InsertRun {
        id: RunId,
        pipeline: String,
        trigger: Trigger,
        params: String,
        spec: String,
        created_at: Timestamp,
        stages: Vec<NewStage>,
        /// JSON: the overrides asked for, and each stage's resolved asset versions.
        overrides: String,
        assets: String,
        /// An isolated stage test, with the input its stage gets.
        test_input: Option<String>,
    },
    /// Sets the status; `started_at` is kept once set; `finished_at` is replaced (None clears).
    UpdateRun {
        id: RunId,
        status: RunStatus,
        started_at: Option<Timestamp>,
        finished_at: Option<Timestamp>,
    },
    UpdateStage {
        run_id: RunId,
        stage: String,
        status: StageStatus,
    },
    StartAttempt {
        run_id: RunId,
        stage: String,
        n: u32,
        started_at: Timestamp,
        input: String,
        /// JSON: the asset versions the attempt used, if any.
        assets: Option<String>,
    },
    /// The process that runs an attempt, so a host that restarts after a crash can kill it.
    AttemptProcess {
        run_id: RunId,
        stage: String,
        n: u32,
        pid: i64,
        pid_start: Option<i64>,
    },
    FinishAttempt {
        run_id: RunId,
        stage: String,
        n: u32,
        status: AttemptStatus,
        finished_at: Timestamp,
        duration_ms: i64,
        output: Option<String>,
        output_truncated: bool,
        output_bytes: Option<u64>,
        stderr: Option<String>,
        error: Option<(String, String)>,
    },
    InsertDlq {
        entry: DlqEntry,
        input: String,
    },
    DeleteDlq {
        id: DlqId,
    },
    Event(NewEvent),
    /// Saves a canary's controller state and its latest status (both JSON).
    SaveCanary {
        name: String,
        state: String,
        status: String,
        at: Timestamp,
    },
    /// Appends to the audit log.
    Audit(AuditRecord),
    /// A new asset version (numbered by the host, which serialises asset changes).
    InsertAsset {
        name: String,
        version: u32,
        content: String,
        at: Timestamp,
        actor: String,
        reason: String,
    },
    /// Pins a version of an asset.
    PinAsset {
        name: String,
        version: u32,
        at: Timestamp,
        actor: String,
        reason: String,
    },
    /// Marks an asset's current pin undone, so the pin before it is current again.
    UndoPin {
        name: String,
    },
    /// Stage `stage`'s next attempt (after attempt `after`) is due at `at`: a retry's backoff,
    /// kept so that whoever resumes the run waits it out too.
    RetryAt {
        run_id: RunId,
        stage: String,
        after: u32,
        at: Timestamp,
    },
    /// Seconds of canary traffic this worker's proxy saw while another worker drives the
    /// canaries, for that worker to merge: (canary, second, version, saved totals JSON).
    CanarySeconds {
        worker: String,
        seconds: Vec<(String, i64, crate::model::Version, String)>,
    },
    /// A circuit breaker's new state, kept so that a restarted host and the other workers
    /// sharing the store hold it (`opened_at`: when it last opened).
    SaveBreaker {
        target: String,
        state: String,
        opened_at: Option<Timestamp>,
        at: Timestamp,
        worker: Option<String>,
    },
    /// Run `id` belongs to worker `worker` (PostgreSQL, several workers; nothing on SQLite).
    Own {
        id: RunId,
        worker: String,
    },
    /// Tells the other workers there is a run to claim, when the batch commits (PostgreSQL;
    /// nothing on SQLite). A batch sends it once however many it holds.
    WakeWorkers,
}

impl Op {
    /// An audit record and the `audit` event that shows it in the live log (linked to `run`
    /// when the command was about one). Every audited command writes both, in one transaction.
    pub fn audited(rec: AuditRecord, run: Option<RunId>) -> [Op; 2] {
        let data = serde_json::to_value(&rec).unwrap_or(Value::Null);
        [
            Op::Event(NewEvent {
                at: rec.at,
                kind: EventKind::Audit,
                run_id: run,
                stage: None,
                data,
            }),
            Op::Audit(rec),
        ]
    }

    /// An event about a run as a whole.
    pub fn run_event(at: Timestamp, kind: EventKind, run: RunId, data: Value) -> Op {
        Op::Event(NewEvent {
            at,
            kind,
            run_id: Some(run),
            stage: None,
            data,
        })
    }

    /// An event about one stage of a run.
    pub fn stage_event(at: Timestamp, kind: EventKind, run: RunId, stage: &str, data: Value) -> Op {
        Op::Event(NewEvent {
            at,
            kind,
            run_id: Some(run),
            stage: Some(stage.to_string()),
            data,
        })
    }
}

enum Request {
    Write {
        ops: Vec<Op>,
        ack: Option<oneshot::Sender<Result<()>>>,
    },
    NextId {
        kind: IdKind,
        ack: oneshot::Sender<Result<i64>>,
    },
    /// Work on the write connection itself (leases, rejoins, a claim when the claimer cannot),
    /// between batches.
    Conn(ConnJob),
    /// Publish what other workers have committed since the last event published here.
    Tail,
    /// From now on every write passes this worker's fence (see [`Writer::fence_as`]).
    FenceAs(String),
    Close,
}

/// What a write that failed its worker's fence says (the fence's own words, in the store).
const FENCE_FAILED: &str = "no longer holds its lease";

/// Whether `e` is a write refused because this worker's runs were taken by others.
pub fn is_fence_error(e: &StoreError) -> bool {
    e.0.contains(FENCE_FAILED)
}

/// Work for the write connection; called again (with `true`: the last try) when the
/// connection broke under it and came back. Returns false to ask for that.
type ConnJob = Box<dyn FnMut(&mut Db, bool) -> bool + Send>;

/// Where new ids come from: counters in this process when it is the store's only writer
/// (SQLite), the store's shared counters when several workers write (PostgreSQL).
enum Ids {
    Local { run: AtomicI64, dlq: AtomicI64 },
    Store,
}

/// A handle for submitting writes; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
    /// Write batches committed so far: a reader that saw the same number before and after can
    /// reuse what it read (the server's page cache keys on it).
    generation: Arc<AtomicU64>,
    ids: Arc<Ids>,
    /// How far a queued tail request is to publish (0: none queued; `u64::MAX`: all there
    /// is): notifications arriving meanwhile raise it and need no request of their own.
    tail_upto: Arc<AtomicU64>,
    /// The last event published on this process's live stream: a notification of events up
    /// to there (this worker's own commits, most of them) needs no read.
    published: Arc<AtomicU64>,
    /// This worker lost its lease (a write failed its fence, or the host found out itself):
    /// nothing here may run or record attempts until the host has rejoined.
    fenced: Arc<std::sync::atomic::AtomicBool>,
    /// Woken when a write fails the fence, so the host rejoins at once.
    lost: Arc<tokio::sync::Notify>,
    /// Breaker changes only (see [`Outlets`]).
    breakers: broadcast::Sender<Arc<Event>>,
}

/// Where committed events go: the live stream, and breaker changes also to a stream of their
/// own. The task that follows other workers' breakers listens there: on the live stream it was
/// woken for every event of every run, once per event the writer published (a wake on the
/// writer's thread, between a commit and the next batch).
struct Outlets {
    all: broadcast::Sender<Arc<Event>>,
    breakers: broadcast::Sender<Arc<Event>>,
}

impl Outlets {
    fn publish(&self, e: Event) {
        let e = Arc::new(e);
        if e.kind == EventKind::BreakerChanged {
            let _ = self.breakers.send(e.clone());
        }
        let _ = self.all.send(e);
    }
}

/// Breaker changes a follower may fall behind by before it reads their states from the store.
const BREAKER_BACKLOG: usize = 256;

/// The writer thread; join it after [`Writer::close`] to be sure everything is on disk.
pub struct WriterThread(JoinHandle<()>);

impl WriterThread {
    pub fn join(self) {
        if self.0.join().is_err() {
            tracing::error!("the store writer thread panicked");
        }
    }
}

impl Writer {
    /// Starts the writer on a migrated connection. Committed events are published on `events`.
    pub fn spawn(
        conn: Db,
        events: broadcast::Sender<Arc<Event>>,
    ) -> Result<(Writer, WriterThread)> {
        Writer::spawn_with(conn, None, events)
    }

    /// [`Writer::spawn`], reconnecting with `reopen` when the connection breaks.
    pub fn spawn_with(
        mut conn: Db,
        reopen: Option<Reopen>,
        events: broadcast::Sender<Arc<Event>>,
    ) -> Result<(Writer, WriterThread)> {
        let (tx, rx) = mpsc::channel(8192);
        let generation = Arc::new(AtomicU64::new(0));
        let counter = generation.clone();
        // The connection is used on its own thread only (a PostgreSQL client must not block
        // an async worker), the first queries included.
        let (ready, started) = std::sync::mpsc::sync_channel(1);
        let tail_upto = Arc::new(AtomicU64::new(0));
        let fenced = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lost = Arc::new(tokio::sync::Notify::new());
        let published = Arc::new(AtomicU64::new(0));
        let (breakers, _) = broadcast::channel(BREAKER_BACKLOG);
        let outlets = Outlets {
            all: events,
            breakers: breakers.clone(),
        };
        let watch = Watch {
            published: published.clone(),
            fenced: fenced.clone(),
            lost: lost.clone(),
            tail_upto: tail_upto.clone(),
            generation: counter,
        };
        let handle = std::thread::Builder::new()
            .name("opsdeck-store-writer".into())
            .spawn(move || {
                let first = max_seq(&mut conn).and_then(|last| {
                    let ids = match conn.dialect() {
                        Dialect::Sqlite => {
                            let (run, dlq) = super::queries::next_ids(&mut conn)?;
                            Ids::Local {
                                run: AtomicI64::new(run),
                                dlq: AtomicI64::new(dlq),
                            }
                        }
                        Dialect::Postgres => Ids::Store,
                    };
                    Ok((last, ids))
                });
                match first {
                    Ok((last, ids)) => {
                        let _ = ready.send(Ok(ids));
                        run(conn, reopen, rx, &outlets, last + 1, &watch);
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                }
            })
            .map_err(|e| StoreError(format!("cannot start the store writer: {e}")))?;
        let ids = started
            .recv()
            .map_err(|_| StoreError("the store writer stopped as it started".into()))??;
        Ok((
            Writer {
                tx,
                generation,
                ids: Arc::new(ids),
                tail_upto,
                published,
                fenced,
                lost,
                breakers,
            },
            WriterThread(handle),
        ))
    }

    /// The breaker changes committed from now on, as they reach the live stream; lagging
    /// behind by more than [`BREAKER_BACKLOG`] says so (then read the states from the store).
    pub fn breaker_changes(&self) -> broadcast::Receiver<Arc<Event>> {
        self.breakers.subscribe()
    }

    /// How many write batches have committed (see [`Writer`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Queues writes without waiting for them to commit. Order with other writes is kept.
    pub async fn send(&self, ops: Vec<Op>) {
        if self
            .tx
            .send(Request::Write { ops, ack: None })
            .await
            .is_err()
        {
            tracing::error!("a write was submitted after the store closed; it was dropped");
        }
    }

    /// Queues writes from synchronous code without waiting; if the queue is full the writes
    /// are handed to a task, so the caller never blocks.
    pub fn send_now(&self, ops: Vec<Op>) {
        match self.tx.try_send(Request::Write { ops, ack: None }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(req)) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(req).await;
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::error!("a write was submitted after the store closed; it was dropped");
            }
        }
    }

    /// Queues writes and waits until they are committed.
    pub async fn commit(&self, ops: Vec<Op>) -> Result<()> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Request::Write {
                ops,
                ack: Some(ack),
            })
            .await
            .map_err(|_| StoreError("the store is closed".into()))?;
        done.await
            .map_err(|_| StoreError("the store writer stopped before committing".into()))?
    }

    /// A new run or dead-letter id, never handed out before.
    pub async fn next_id(&self, kind: IdKind) -> Result<i64> {
        match &*self.ids {
            Ids::Local { run, dlq } => Ok(match kind {
                IdKind::Run => run.fetch_add(1, Ordering::SeqCst),
                IdKind::Dlq => dlq.fetch_add(1, Ordering::SeqCst),
            }),
            Ids::Store => {
                let (ack, answer) = oneshot::channel();
                self.tx
                    .send(Request::NextId { kind, ack })
                    .await
                    .map_err(|_| StoreError("the store is closed".into()))?;
                answer
                    .await
                    .map_err(|_| StoreError("the store writer stopped".into()))?
            }
        }
    }

    /// Runs `f` on the write connection, between batches (leases go there, and claims when the
    /// worker's claimer cannot make them).
    pub async fn on_conn<T, F>(&self, mut f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Db) -> Result<T> + Send + 'static,
    {
        let (ack, answer) = oneshot::channel();
        let mut ack = Some(ack);
        let job = Box::new(move |db: &mut Db, last: bool| {
            let out = f(db);
            if out.is_err() && db.is_broken() && !last {
                return false;
            }
            if let Some(ack) = ack.take() {
                let _ = ack.send(out);
            }
            true
        });
        self.tx
            .send(Request::Conn(job))
            .await
            .map_err(|_| StoreError("the store is closed".into()))?;
        answer
            .await
            .map_err(|_| StoreError("the store writer stopped".into()))?
    }

    /// Asks the writer to publish what other workers have committed (woken by the store's
    /// notification, which names the last event of its commit: `upto`, when it could be read).
    /// Skipped when those events are out already (this worker's own commits) and when the
    /// queue is full: the next commit catches up anyway. The writer skips it too when they
    /// are out by the time it comes to it: a worker hears of its own commit about when it
    /// publishes it, and a commit brings back other workers' events before its own.
    pub fn tail(&self, upto: Option<u64>) {
        let want = upto.unwrap_or(u64::MAX);
        if self.published.load(Ordering::Acquire) >= want {
            return;
        }
        if self.tail_upto.fetch_max(want, Ordering::AcqRel) == 0
            && self.tx.try_send(Request::Tail).is_err()
        {
            self.tail_upto.store(0, Ordering::Release);
        }
    }

    /// Makes every later write of this process pass `worker`'s fence (PostgreSQL): a write
    /// fails when the worker's row is gone, that is when other workers have taken its runs.
    pub async fn fence_as(&self, worker: String) {
        let _ = self.tx.send(Request::FenceAs(worker)).await;
    }

    /// Whether this worker is fenced off: its lease was lost and it has not rejoined.
    pub fn fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// Sets or clears the fenced state (the host, when it finds its lease lost and when it
    /// has rejoined).
    pub fn set_fenced(&self, on: bool) {
        self.fenced.store(on, Ordering::Release);
    }

    /// Woken when a write fails this worker's fence.
    pub fn lease_lost(&self) -> Arc<tokio::sync::Notify> {
        self.lost.clone()
    }

    /// Asks the writer to finish what is queued and stop.
    pub async fn close(&self) {
        let _ = self.tx.send(Request::Close).await;
    }
}

/// Opens the store again after its connection broke (a PostgreSQL server restarted, or the
/// network dropped): a new connection, holding what the old one held.
pub type Reopen = Box<dyn FnMut() -> Result<Db> + Send>;

/// How long the writer keeps trying to reconnect before it fails the writes in hand (the next
/// writes try again).
const RECONNECT_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// The writer's connection and the next event number.
struct Link {
    conn: Db,
    reopen: Option<Reopen>,
    next_seq: u64,
    /// The last event published on this process's live stream: events are published in
    /// order, others' (other workers') fetched from the store to fill any gap first.
    published: u64,
    /// `published`, for the handles (see [`Writer::tail`]).
    shown: Arc<AtomicU64>,
    /// The worker whose fence every write passes (PostgreSQL with workers).
    fence: Option<String>,
    /// The receipt every batch writes (PostgreSQL): whether a batch whose answer was lost with
    /// its connection committed.
    receipt: Option<super::receipt::Receipt>,
    /// How many times the connection was opened again: a batch sent on an earlier one is in
    /// doubt, whoever reconnected.
    opened: u64,
}

/// What the writer thread shares with its handles.
struct Watch {
    published: Arc<AtomicU64>,
    fenced: Arc<std::sync::atomic::AtomicBool>,
    lost: Arc<tokio::sync::Notify>,
    tail_upto: Arc<AtomicU64>,
    generation: Arc<AtomicU64>,
}

impl Link {
    /// Reconnects with backoff after the connection broke; false if it cannot (SQLite, or the
    /// store stayed unreachable for [`RECONNECT_FOR`]).
    fn reconnect(&mut self) -> bool {
        let Some(reopen) = self.reopen.as_mut() else {
            return false;
        };
        let started = std::time::Instant::now();
        let mut delay = std::time::Duration::from_millis(100);
        loop {
            match reopen().and_then(|mut db| max_seq(&mut db).map(|last| (db, last))) {
                Ok((db, last)) => {
                    self.conn = db;
                    self.opened = self.opened.wrapping_add(1);
                    self.next_seq = last + 1;
                    tracing::warn!("reconnected to the store; writes go on");
                    return true;
                }
                Err(e) if started.elapsed() < RECONNECT_FOR => {
                    tracing::error!(error = %e, retry_in_ms = delay.as_millis(), "lost the store; reconnecting");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(std::time::Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(error = %e, "the store stayed unreachable; failing the writes in hand");
                    return false;
                }
            }
        }
    }

    fn apply(&mut self, ops: &[&Op]) -> std::result::Result<Applied, Failed> {
        if self.conn.is_broken() {
            self.reconnect();
        }
        let mark = self.receipt.as_mut().map(super::receipt::Receipt::next);
        let out = self.apply_marked(ops, mark);
        match (out, mark) {
            // The connection broke with the transaction: the receipt says whether it committed
            // (its answer lost), or died with it and goes again.
            (Err(Failed::Before(e)), Some(mark)) if self.conn.is_broken() => {
                match self.settle(mark, None) {
                    Doubt::Committed { .. } => Err(Failed::After(lost_answer(&e))),
                    Doubt::NotCommitted => {
                        let mark = self.receipt.as_mut().map(super::receipt::Receipt::next);
                        self.apply_marked(ops, mark)
                    }
                    Doubt::Unknown(e) => Err(Failed::Unknown(e)),
                }
            }
            (Err(Failed::Before(_)), None) if self.conn.is_broken() && self.reconnect() => {
                self.apply_marked(ops, None)
            }
            (other, _) => other,
        }
    }

    /// [`apply`] on this link's connection, writing the receipt with `mark`.
    fn apply_marked(
        &mut self,
        ops: &[&Op],
        mark: Option<u64>,
    ) -> std::result::Result<Applied, Failed> {
        let receipt = self.receipt.as_ref().zip(mark);
        apply(
            &mut self.conn,
            ops,
            self.next_seq,
            self.published,
            self.fence.as_deref(),
            receipt,
        )
    }

    /// Whether the batch marked `mark` (and the one sent behind it, marked `behind`)
    /// committed, after the connection they went on was lost: read from the receipt on a new
    /// connection (opened again if the first read breaks it too).
    fn settle(&mut self, mark: u64, behind: Option<u64>) -> Doubt {
        let mut failed = StoreError("the store stayed unreachable".into());
        for _ in 0..3 {
            if self.conn.is_broken() && !self.reconnect() {
                break;
            }
            let Some(receipt) = self.receipt.as_ref() else {
                return Doubt::NotCommitted;
            };
            match receipt.read(&mut self.conn) {
                Ok(Some(m)) if m == mark => return Doubt::Committed { behind: false },
                Ok(Some(m)) if Some(m) == behind => return Doubt::Committed { behind: true },
                Ok(_) => return Doubt::NotCommitted,
                Err(e) => failed = e,
            }
        }
        tracing::error!(error = %failed, "could not read this writer's receipt after its connection broke");
        Doubt::Unknown(StoreError(format!(
            "the store's connection broke as this write was being committed, and whether it was stored could not be read back ({failed}); look before writing it again"
        )))
    }
}

impl Link {
    /// Commits `ops` and publishes their events, counting the batch.
    fn commit(
        &mut self,
        ops: &[&Op],
        events: &Outlets,
        generation: &AtomicU64,
    ) -> std::result::Result<(), Failed> {
        let applied = self.apply(ops)?;
        self.publish(applied, events, generation);
        Ok(())
    }

    /// Sends `ops` as one transaction without waiting for it (PostgreSQL): it commits behind
    /// the batch sent before it, marked `mark`, only if that one committed (`after`: its
    /// mark). [`Link::land`] takes its answer.
    fn send(&mut self, ops: &[&Op], after: Option<u64>, mark: u64) -> Result<()> {
        let events = event_count(ops);
        let (published, fence) = (self.published, self.fence.as_deref());
        let Some(receipt) = self.receipt.as_ref() else {
            return Err(StoreError(
                "a write batch sent ahead needs a receipt".into(),
            ));
        };
        self.conn.send_transaction(|tx| {
            // The check first: a transaction behind one that failed takes no lock and does
            // no work before it fails.
            if let Some(after) = after {
                receipt.check(tx, after)?;
            }
            if let Some(me) = fence {
                fence_pass(tx, me)?;
            }
            super::batch::apply_postgres(tx, ops, events, published, Some(receipt.key()))?;
            receipt.write(tx, mark, events > 0)
        })
    }

    /// Waits for the oldest batch [`Link::send`] sent (`ops`) and publishes its events.
    fn land(
        &mut self,
        ops: &[&Op],
        events: &Outlets,
        generation: &AtomicU64,
    ) -> std::result::Result<(), Failed> {
        let mut kept = self
            .conn
            .wait()
            .map_err(Failed::Before)?
            .map_err(Failed::After)?;
        let count = event_count(ops);
        let applied =
            applied_postgres(&mut || kept.pop_front(), ops, count).map_err(Failed::After)?;
        self.publish(applied, events, generation);
        Ok(())
    }

    /// Publishes what a committed batch brought, counting the batch.
    fn publish(&mut self, applied: Applied, events: &Outlets, generation: &AtomicU64) {
        let Applied {
            before,
            own: published,
        } = applied;
        generation.fetch_add(1, Ordering::Release);
        if let Some(first) = published.first() {
            // Others' events numbered before ours go out first: those that came back with the
            // commit, then (past as many as come with one) those read after it. A batch sent
            // before the one ahead of it landed may bring back events published since.
            for e in before {
                if e.seq <= self.published {
                    continue;
                }
                if e.seq != self.published + 1 || e.seq >= first.seq {
                    break;
                }
                self.published = e.seq;
                events.publish(e);
            }
            if first.seq > self.published + 1 {
                self.tail(events, first.seq - 1);
            }
        }
        // Publish before acknowledging: whoever learns that a write is committed can then
        // rely on its events being in the live stream already.
        // (Never one already out: a stream sees each event once, in order.)
        let out = self.published;
        for e in published.into_iter().filter(|e| e.seq > out) {
            self.next_seq = e.seq + 1;
            self.published = e.seq;
            events.publish(e);
        }
        self.shown.store(self.published, Ordering::Release);
    }

    /// Serves the handles' tail requests (see [`Writer::tail`]): reads others' events when
    /// some wanted are not out yet.
    fn tail_wanted(&mut self, events: &Outlets, watch: &Watch) {
        if self.published < watch.tail_upto.swap(0, Ordering::AcqRel) {
            self.tail(events, u64::MAX);
        }
    }

    /// Publishes the stored events after the last one published here, up to `until`.
    fn tail(&mut self, events: &Outlets, until: u64) {
        while self.published < until {
            // Only up to `until`: what comes after is this worker's own, published already.
            let page = match super::queries::events_between(
                &mut self.conn,
                self.published,
                until,
                1_000,
            ) {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read other workers' events");
                    return;
                }
            };
            let Some(last) = page.last().map(|e| e.seq) else {
                return;
            };
            for e in page.into_iter().filter(|e| e.seq <= until) {
                events.publish(e);
            }
            self.published = last.min(until);
            self.shown.store(self.published, Ordering::Release);
            if self.published >= self.next_seq {
                self.next_seq = self.published + 1;
            }
        }
    }

    /// Answers every id request of `asked` of one kind from one transaction: a burst of new
    /// runs (many clients starting runs at once) takes one trip to the counter, not one each.
    fn answer_ids(&mut self, asked: Vec<(IdKind, oneshot::Sender<Result<i64>>)>) {
        let (runs, dlqs): (Vec<_>, Vec<_>) =
            asked.into_iter().partition(|(k, _)| *k == IdKind::Run);
        for (kind, acks) in [(IdKind::Run, runs), (IdKind::Dlq, dlqs)] {
            if acks.is_empty() {
                continue;
            }
            let count = i64::try_from(acks.len()).unwrap_or(i64::MAX);
            let first = self.next_ids(kind, count);
            for (i, (_, ack)) in (0_i64..).zip(acks) {
                let _ = ack.send(match &first {
                    Ok(first) => first
                        .checked_add(i)
                        .ok_or_else(|| StoreError("the store's id counter is exhausted".into())),
                    Err(e) => Err(e.clone()),
                });
            }
        }
    }

    fn next_ids(&mut self, kind: IdKind, count: i64) -> Result<i64> {
        if self.conn.is_broken() {
            self.reconnect();
        }
        match next_ids(&mut self.conn, kind, count) {
            Err(_) if self.conn.is_broken() && self.reconnect() => {
                next_ids(&mut self.conn, kind, count)
            }
            other => other,
        }
    }
}

fn run(
    conn: Db,
    reopen: Option<Reopen>,
    mut rx: mpsc::Receiver<Request>,
    events: &Outlets,
    next_seq: u64,
    watch: &Watch,
) {
    let receipt = (conn.dialect() == Dialect::Postgres).then(super::receipt::Receipt::new);
    let mut link = Link {
        conn,
        reopen,
        next_seq,
        published: next_seq - 1,
        shown: watch.published.clone(),
        fence: None,
        receipt,
        opened: 0,
    };
    if link.receipt.is_some() {
        super::receipt::Receipt::sweep(&mut link.conn);
    }
    // The batch sent and not landed yet (PostgreSQL): the next is built and sent while the
    // server commits it.
    let mut ahead: Option<Sent> = None;
    // Others' events to read: done once no batch is on its way (each batch landed brings back
    // those numbered before its own, so a busy writer seldom needs the read).
    let mut tail_due = false;
    let mut closing = false;
    while !closing {
        let first = match rx.try_recv() {
            Ok(req) => req,
            Err(_) => {
                // Nothing to send behind it: land it, then wait for work.
                if let Some(flight) = ahead.take() {
                    land(&mut link, flight, None, events, watch);
                }
                if std::mem::take(&mut tail_due) {
                    link.tail_wanted(events, watch);
                }
                match rx.blocking_recv() {
                    Some(req) => req,
                    None => break,
                }
            }
        };
        let mut batch: Pending = Vec::new();
        let mut ids = Vec::new();
        for req in std::iter::once(first)
            .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            .take(MAX_BATCH)
        {
            // Requests are served in the order they came: writes queued before work on the
            // connection (a claim, a rejoin, an id, a read of others' events) are committed
            // before it runs. Ids depend on no write, so they wait for none.
            if !matches!(
                req,
                Request::Write { .. } | Request::NextId { .. } | Request::Tail
            ) {
                if let Some(flight) = ahead.take() {
                    land(&mut link, flight, None, events, watch);
                }
                if !batch.is_empty() {
                    commit_batch(&mut link, std::mem::take(&mut batch), events, watch);
                }
            }
            match req {
                Request::Write { ops, ack } => batch.push((ops, ack)),
                Request::NextId { kind, ack } => ids.push((kind, ack)),
                Request::Conn(mut job) => {
                    if link.conn.is_broken() {
                        link.reconnect();
                    }
                    if !job(&mut link.conn, false) {
                        link.reconnect();
                        job(&mut link.conn, true);
                    }
                }
                Request::Tail => tail_due = true,
                Request::FenceAs(worker) => link.fence = Some(worker),
                Request::Close => {
                    closing = true;
                    break;
                }
            }
        }
        if !ids.is_empty() {
            link.answer_ids(ids);
        }
        if !batch.is_empty() {
            ahead = send_batch(&mut link, batch, ahead, events, watch);
        }
        if ahead.is_none() && std::mem::take(&mut tail_due) {
            link.tail_wanted(events, watch);
        }
    }
    if let Some(flight) = ahead.take() {
        land(&mut link, flight, None, events, watch);
    }
    if let Some(receipt) = &link.receipt
        && !link.conn.is_broken()
    {
        receipt.remove(&mut link.conn);
    }
}

/// Writes waiting to be committed together, each with whoever waits for it.
type Pending = Vec<(Vec<Op>, Option<oneshot::Sender<Result<()>>>)>;

/// A batch sent whole and not landed yet ([`Link::send`]), and the mark it writes in the
/// receipt. (The connection's side of it is a `db::pg::Flight`.)
struct Sent {
    batch: Pending,
    mark: u64,
    /// [`Link::opened`] when it was sent.
    opened: u64,
}

/// How many of `ops` are events: the numbers a batch takes from the event counter.
fn event_count(ops: &[&Op]) -> usize {
    ops.iter().filter(|o| matches!(o, Op::Event(_))).count()
}

fn refs(batch: &Pending) -> Vec<&Op> {
    batch.iter().flat_map(|(ops, _)| ops.iter()).collect()
}

/// Sends `batch` behind `ahead` (PostgreSQL), then lands `ahead`: the server commits the one
/// while this thread publishes the other and gathers the next. Returns the batch still on its
/// way, if any. Elsewhere (SQLite; a connection to reopen first) it lands `ahead` and commits
/// `batch` in turn.
fn send_batch(
    link: &mut Link,
    batch: Pending,
    ahead: Option<Sent>,
    events: &Outlets,
    watch: &Watch,
) -> Option<Sent> {
    // Behind `ahead` only on the connection it went on (ids are answered while it is on its
    // way, and may have reconnected).
    let same = link.conn.in_flight() == usize::from(ahead.is_some());
    let ready = same && !link.conn.is_broken();
    if let Some(mark) = link
        .receipt
        .as_mut()
        .filter(|_| ready)
        .map(super::receipt::Receipt::next)
    {
        let sent = link.send(&refs(&batch), ahead.as_ref().map(|f| f.mark), mark);
        match sent {
            Ok(()) => {
                let flight = Sent {
                    batch,
                    mark,
                    opened: link.opened,
                };
                return match ahead {
                    Some(before) => land(link, before, Some(flight), events, watch),
                    None => Some(flight),
                };
            }
            Err(e) => {
                // Nothing of it committed: it goes again the usual way, after `ahead`.
                tracing::warn!(error = %e, "could not send a write batch; committing it in turn");
                if let Some(before) = ahead {
                    land(link, before, None, events, watch);
                }
                commit_batch(link, batch, events, watch);
                return None;
            }
        }
    }
    if let Some(before) = ahead {
        land(link, before, None, events, watch);
    }
    commit_batch(link, batch, events, watch);
    None
}

/// Waits for `flight` to commit and answers its requests; `next`, sent behind it, is returned
/// still on its way. When `flight` failed, `next` failed with it (it checks `flight`'s mark in
/// the receipt): both are drained, then committed again the usual way, in turn. When the
/// connection they went on was lost, the receipt first says which of them committed with only
/// the answer lost: those are answered as committed, not committed again.
fn land(
    link: &mut Link,
    flight: Sent,
    next: Option<Sent>,
    events: &Outlets,
    watch: &Watch,
) -> Option<Sent> {
    let generation = &*watch.generation;
    let out = link.land(&refs(&flight.batch), events, generation);
    let e = match out {
        Ok(()) => {
            acknowledge(flight.batch);
            return next;
        }
        // It committed: the one behind it stands.
        Err(Failed::After(e)) => {
            unread(link, flight.batch, &e, events, watch);
            return next;
        }
        Err(Failed::Before(e) | Failed::Unknown(e)) => e,
    };
    // The batch behind it must be drained before anything is sent again.
    let mut after = next.map(|n| {
        let out = link.land(&refs(&n.batch), events, generation);
        (n, out)
    });
    let lost = link.conn.is_broken() || flight.opened != link.opened;
    if lost && !is_fence_error(&e) {
        // The connection went with it. Either batch may have committed with only its answer
        // lost (the one behind commits only after the first).
        let behind = after.as_ref().map(|(n, _)| n.mark);
        match link.settle(flight.mark, behind) {
            Doubt::Committed { behind } => {
                unread(link, flight.batch, &lost_answer(&e), events, watch);
                if behind && let Some((n, _)) = after.take() {
                    acknowledge(n.batch);
                }
            }
            Doubt::NotCommitted => commit_batch(link, flight.batch, events, watch),
            Doubt::Unknown(u) => {
                refuse(flight.batch, &u);
                if let Some((n, _)) = after.take() {
                    refuse(n.batch, &u);
                }
            }
        }
    } else {
        recover(link, flight.batch, &e, events, watch);
    }
    if let Some((n, out)) = after {
        let batch = n.batch;
        match out {
            // Not reached: it checks that the one before it committed.
            Ok(()) => acknowledge(batch),
            Err(Failed::After(e)) => unread(link, batch, &e, events, watch),
            Err(Failed::Before(_)) if is_fence_error(&e) => refuse(batch, &e),
            Err(Failed::Before(_)) => commit_batch(link, batch, events, watch),
            Err(Failed::Unknown(u)) => refuse(batch, &u),
        }
    }
    None
}

/// Why a batch's writes were not published: they were not committed, or they were and the
/// answer could not be read (rows this version cannot decode, or an event counter that cannot
/// have numbered the batch's events). Such a batch is not committed again, which would store
/// its writes twice and out of order.
enum Failed {
    Before(StoreError),
    After(StoreError),
    /// The connection broke as it committed, and whether it did could not be read back: it is
    /// not committed again (it may be stored), and its writers are told.
    Unknown(StoreError),
}

/// What the receipt says of a batch in doubt (see [`Link::settle`]).
enum Doubt {
    /// It committed; `behind`: the batch sent behind it too.
    Committed {
        behind: bool,
    },
    NotCommitted,
    Unknown(StoreError),
}

/// The error a batch that committed with its answer lost is published with.
fn lost_answer(e: &StoreError) -> StoreError {
    StoreError(format!("the connection broke as the batch committed ({e})"))
}

/// After `batch` committed without an answer that could be read: its requests are answered as
/// committed, and what it stored is published from the table.
fn unread(link: &mut Link, batch: Pending, e: &StoreError, events: &Outlets, watch: &Watch) {
    tracing::error!(error = %e, "a write batch committed but its answer could not be read; publishing its events from the store");
    watch.generation.fetch_add(1, Ordering::Release);
    link.tail(events, u64::MAX);
    acknowledge(batch);
}

/// Answers every request of a committed batch.
fn acknowledge(batch: Pending) {
    for (_, ack) in batch {
        if let Some(ack) = ack {
            let _ = ack.send(Ok(()));
        }
    }
}

/// Answers every request of a batch with the error that failed it.
fn refuse(batch: Pending, e: &StoreError) {
    for (_, ack) in batch {
        if let Some(ack) = ack {
            let _ = ack.send(Err(e.clone()));
        }
    }
}

/// Commits `batch` in one transaction and answers each request in it.
fn commit_batch(link: &mut Link, batch: Pending, events: &Outlets, watch: &Watch) {
    let out = link.commit(&refs(&batch), events, &watch.generation);
    match out {
        Ok(()) => acknowledge(batch),
        Err(Failed::After(e)) => unread(link, batch, &e, events, watch),
        Err(Failed::Before(e)) => recover(link, batch, &e, events, watch),
        Err(Failed::Unknown(e)) => refuse(batch, &e),
    }
}

/// After `batch` failed as a whole with `e`: a fence refusal fails all of it; otherwise each
/// request is tried on its own, so one bad request does not sink the others.
fn recover(link: &mut Link, mut batch: Pending, e: &StoreError, events: &Outlets, watch: &Watch) {
    if is_fence_error(e) {
        // Every write of this worker fails alike: none is retried, and the host is
        // told at once (it stops its runs without recording more, then rejoins).
        tracing::error!(error = %e, "writes refused: this worker's runs were taken by other workers");
        watch.fenced.store(true, Ordering::Release);
        watch.lost.notify_one();
        refuse(batch, e);
        return;
    }
    tracing::warn!(error = %e, "a write batch failed; retrying its requests one by one");
    for (ops, ack) in &mut batch {
        let refs: Vec<&Op> = ops.iter().collect();
        let reply = match link.commit(&refs, events, &watch.generation) {
            Ok(()) => Ok(()),
            Err(Failed::After(e)) => {
                unread(link, Vec::new(), &e, events, watch);
                Ok(())
            }
            Err(Failed::Before(e)) => {
                tracing::error!(error = %e, "a write failed and was not stored");
                Err(e)
            }
            Err(Failed::Unknown(e)) => Err(e),
        };
        if let Some(ack) = ack.take() {
            let _ = ack.send(reply);
        }
    }
}

/// Commits `ops` on a connection of a store no host is writing to (the caller holds the
/// workspace lock), numbering events after the last one: how offline commands such as a
/// restore leave their audit record, through the same writes a host makes.
pub(crate) fn apply_offline(conn: &mut Db, ops: &[Op]) -> Result<()> {
    let next = max_seq(conn)? + 1;
    let refs: Vec<&Op> = ops.iter().collect();
    match apply(conn, &refs, next, next - 1, None, None) {
        Ok(_) => Ok(()),
        Err(Failed::Before(e) | Failed::After(e) | Failed::Unknown(e)) => Err(e),
    }
}

pub(crate) fn max_seq(conn: &mut Db) -> Result<u64> {
    let seq = conn
        .one("SELECT COALESCE(MAX(seq), 0) FROM events", &[])?
        .i64(0)?;
    Ok(seq.unsigned_abs())
}

/// What the writer hands out besides writes: ids of new runs and dead-letter entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Run,
    Dlq,
}

impl IdKind {
    fn table(self) -> &'static str {
        match self {
            IdKind::Run => "runs",
            IdKind::Dlq => "dlq",
        }
    }
}

/// The first of `count` new ids of `kind` from the store's counter (PostgreSQL, shared by
/// every worker; never reused, even after deletes). Its own transaction, so the counter row is
/// not held.
pub(crate) fn next_ids(conn: &mut Db, kind: IdKind, count: i64) -> Result<i64> {
    let table = kind.table();
    // One statement, sent with the transaction's begin and commit: one round trip, and the
    // counter's row is locked for no more than that.
    super::workers::quick(conn, |conn| {
        conn.keep(
            &format!(
                "INSERT INTO id_marks (name, last)
                 VALUES (?1, (SELECT COALESCE(MAX(id), 0) FROM {table}) + ?2::bigint)
                 ON CONFLICT (name) DO UPDATE
                    SET last = GREATEST(id_marks.last, (SELECT COALESCE(MAX(id), 0) FROM {table})) + ?2
                 RETURNING last"
            ),
            args![table, count],
        )
    })?;
    let last = conn
        .take_kept()
        .and_then(|rows| rows.into_iter().next())
        .ok_or_else(|| StoreError("the store's id counter returned no value".into()))?
        .i64(0)?;
    last.checked_sub(count - 1)
        .ok_or_else(|| StoreError("the store's id counter went backwards".into()))
}

/// The first of `n` event numbers for a transaction. SQLite's one writer numbers from memory
/// (`next`); on PostgreSQL, where several workers write, the `event_seq` row is the counter:
/// its lock is held to the commit, so numbers are gap-free and become visible in order.
pub(crate) fn seq_block(tx: &mut Db, n: usize, next: u64) -> Result<u64> {
    if tx.dialect() == Dialect::Sqlite || n == 0 {
        return Ok(next);
    }
    let last = tx
        .one(
            "UPDATE event_seq SET last = last + ?1 RETURNING last",
            args![n],
        )?
        .i64(0)?;
    // The counter is the store's: a value that cannot follow from `n` numbers is refused.
    let first = u64::try_from(last)
        .ok()
        .and_then(|l| l.checked_add(1)?.checked_sub(u64::try_from(n).ok()?))
        .filter(|f| *f > 0)
        .ok_or_else(|| {
            StoreError(format!(
                "the store's event counter reads {last}, which cannot number {n} new events"
            ))
        })?;
    // Other workers' streams wake on this, sent when the transaction commits.
    tx.execute(
        "SELECT pg_notify('opsdeck_events', ?1)",
        args![last.to_string()],
    )?;
    Ok(first)
}

/// Commits `ops` in one transaction; returns the events to publish. On PostgreSQL the events
/// are numbered by the store inside the same pipeline (no round trip before the writes, so the
/// counter's row is held for one round trip), and other workers' events numbered before them
/// come back with the commit. With `receipt` (the writer's, and the batch's mark), the
/// transaction writes it last.
fn apply(
    conn: &mut Db,
    ops: &[&Op],
    next_seq: u64,
    published: u64,
    fence: Option<&str>,
    receipt: Option<(&super::receipt::Receipt, u64)>,
) -> std::result::Result<Applied, Failed> {
    let events = event_count(ops);
    if conn.dialect() == Dialect::Postgres {
        conn.transaction(|tx| {
            if let Some(me) = fence {
                fence_pass(tx, me)?;
            }
            let key = receipt.map(|(r, _)| r.key());
            super::batch::apply_postgres(tx, ops, events, published, key)?;
            match receipt {
                Some((r, mark)) => r.write(tx, mark, events > 0),
                None => Ok(()),
            }
        })
        .map_err(Failed::Before)?;
        return applied_postgres(&mut || conn.take_kept(), ops, events).map_err(Failed::After);
    }
    let own = conn
        .transaction(|tx| {
            let first_seq = seq_block(tx, events, next_seq)?;
            let mut published = Vec::new();
            for op in ops {
                apply_op(tx, op, first_seq + published.len() as u64, &mut published)?;
            }
            Ok(published)
        })
        .map_err(Failed::Before)?;
    Ok(Applied {
        before: Vec::new(),
        own,
    })
}

/// What a PostgreSQL batch's kept rows say, taken from `kept` in the order the batch asked:
/// the counter, the others' events.
fn applied_postgres(
    kept: &mut dyn FnMut() -> Option<Vec<super::db::Row>>,
    ops: &[&Op],
    events: usize,
) -> Result<Applied> {
    let own = numbered(kept, ops, events)?;
    let before = match kept() {
        Some(rows) => rows
            .into_iter()
            .map(super::queries::event)
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };
    Ok(Applied { before, own })
}

/// What a commit publishes: its own events and, on PostgreSQL, the other workers' events
/// numbered before them that came back with it (those after the last one published here).
struct Applied {
    before: Vec<Event>,
    own: Vec<Event>,
}

/// The events of `ops` as PostgreSQL numbered them: the last of them is the counter's value the
/// transaction returned, the others before it in the order they were submitted.
fn numbered(
    kept: &mut dyn FnMut() -> Option<Vec<super::db::Row>>,
    ops: &[&Op],
    events: usize,
) -> Result<Vec<Event>> {
    if events == 0 {
        return Ok(Vec::new());
    }
    let last = kept()
        .and_then(|rows| rows.into_iter().next())
        .ok_or_else(|| StoreError("the event counter returned no value".into()))?
        .i64(0)?;
    let count = i64::try_from(events).unwrap_or(i64::MAX);
    let first = last
        .checked_sub(count - 1)
        .and_then(|f| u64::try_from(f).ok())
        .filter(|f| *f > 0)
        .ok_or_else(|| {
            StoreError(format!(
                "the event counter returned {last}, below the {events} events just written"
            ))
        })?;
    Ok(ops
        .iter()
        .filter_map(|op| match op {
            Op::Event(e) => Some(e),
            _ => None,
        })
        .zip(first..)
        .map(|(e, seq)| e.numbered(seq))
        .collect())
}

/// Passes `me`'s fence inside the caller's transaction (PostgreSQL): fails when other workers
/// have taken `me`'s runs, and holds `me`'s row until the commit, so the runs cannot be taken
/// in between.
pub(crate) fn fence_pass(tx: &mut Db, me: &str) -> Result<()> {
    tx.execute("SELECT opsdeck_fence(?1)", args![me])?;
    Ok(())
}

/// The event's row, its number given by `seq_sql` with `seq` as its `?1`.
fn write_event(tx: &mut Db, seq_sql: &str, seq: super::db::Val, e: &NewEvent) -> Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO events (seq, at, kind, run_id, stage_id, data) VALUES ({seq_sql}, ?2, ?3, ?4, ?5, ?6)"
        ),
        &[
            seq,
            e.at.to_string().into(),
            e.kind.as_str().into(),
            e.run_id.map(|r| r.0).into(),
            e.stage.as_deref().into(),
            e.data.to_string().into(),
        ],
    )?;
    Ok(())
}

/// Appends one event with the given sequence number. Shared with recovery, which writes
/// without the writer thread while it holds the workspace lock.
pub(crate) fn insert_event(tx: &mut Db, seq: u64, e: &NewEvent) -> Result<Event> {
    write_event(tx, "?1", seq.into(), e)?;
    Ok(e.numbered(seq))
}

pub(super) fn apply_op(tx: &mut Db, op: &Op, seq: u64, published: &mut Vec<Event>) -> Result<()> {
    match op {
        Op::InsertRun { .. } | Op::UpdateRun { .. } | Op::UpdateStage { .. } => {
            apply_run_op(tx, op)?;
        }
        Op::StartAttempt { .. } | Op::AttemptProcess { .. } | Op::FinishAttempt { .. } => {
            apply_attempt_op(tx, op)?;
        }
        Op::InsertDlq { entry, input } => {
            tx.execute(
                "INSERT INTO dlq (id, run_id, pipeline, stage_id, attempts, input, error_code, error_message, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                args![
                    entry.id.0,
                    entry.run_id.0,
                    entry.pipeline.as_str(),
                    entry.stage.as_str(),
                    entry.attempts,
                    input.as_str(),
                    entry.error.code.as_str(),
                    entry.error.message.as_str(),
                    entry.created_at.to_string()
                ],
            )?;
        }
        Op::DeleteDlq { id } => {
            tx.execute("DELETE FROM dlq WHERE id = ?1", args![id.0])?;
        }
        Op::Own { id, worker } => {
            if tx.dialect() == Dialect::Postgres {
                tx.execute(
                    "UPDATE runs SET owner = ?2 WHERE id = ?1",
                    args![id.0, worker.as_str()],
                )?;
            }
        }
        Op::WakeWorkers => {
            if tx.dialect() == Dialect::Postgres {
                tx.execute("SELECT pg_notify('opsdeck_work', '')", &[])?;
            }
        }
        Op::Event(e) => published.push(insert_event(tx, seq, e)?),
        Op::InsertAsset { .. } | Op::PinAsset { .. } | Op::UndoPin { .. } => {
            apply_asset_op(tx, op)?;
        }
        Op::RetryAt { .. } | Op::CanarySeconds { .. } | Op::SaveBreaker { .. } => {
            apply_shared_op(tx, op)?;
        }
        Op::SaveCanary {
            name,
            state,
            status,
            at,
        } => {
            tx.execute(
                "INSERT INTO canaries (name, state, status, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET state = excluded.state, status = excluded.status, updated_at = excluded.updated_at",
                args![name.as_str(), state.as_str(), status.as_str(), at.to_string()],
            )?;
        }
        Op::Audit(a) => {
            tx.execute(
                "INSERT INTO audit (at, actor, role, via, action, target, reason, outcome, details)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                args![
                    a.at.to_string(),
                    a.actor.as_str(),
                    a.role.map(Role::as_str),
                    a.via.map(Via::as_str),
                    a.action.as_str(),
                    a.target.as_str(),
                    a.reason.as_str(),
                    a.outcome.as_str(),
                    a.details.to_string()
                ],
            )?;
        }
    }
    Ok(())
}

/// A new run's row (its status aside: `pending`) and its stages' rows (each pending), in the
/// order of the statements' placeholders; None for another write.
pub(super) fn new_run_rows(op: &Op) -> Option<(Vec<Val>, Vec<Vec<Val>>)> {
    let Op::InsertRun {
        id,
        pipeline,
        trigger,
        params,
        spec,
        created_at,
        stages,
        overrides,
        assets,
        test_input,
    } = op
    else {
        return None;
    };
    let run = args![
        id.0,
        pipeline.as_str(),
        trigger.as_str(),
        params.as_str(),
        spec.as_str(),
        created_at.to_string(),
        stages.len(),
        overrides.as_str(),
        assets.as_str(),
        test_input.is_some(),
        test_input.as_deref()
    ]
    .to_vec();
    let stages = stages
        .iter()
        .enumerate()
        .map(|(ord, s)| {
            args![
                id.0,
                s.id.as_str(),
                ord,
                s.kind.as_str(),
                serde_json::to_string(&s.needs).unwrap_or_default()
            ]
            .to_vec()
        })
        .collect();
    Some((run, stages))
}

/// The writes about runs and their stages.
fn apply_run_op(tx: &mut Db, op: &Op) -> Result<()> {
    match op {
        Op::InsertRun { .. } => {
            let Some((run, stages)) = new_run_rows(op) else {
                return Ok(());
            };
            tx.execute(
                "INSERT INTO runs (id, pipeline, status, trigger, params, spec, created_at, stages_total, overrides, assets, test, test_input)
                 VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                &run,
            )?;
            super::batch::in_chunks(
                tx,
                &stages,
                |size| {
                    format!(
                        "INSERT INTO stages (run_id, stage_id, ord, kind, needs, status) VALUES {}",
                        super::batch::rows_sql(size, 5, |p| format!(
                            "(?{}, ?{}, ?{}, ?{}, ?{}, 'pending')",
                            p,
                            p + 1,
                            p + 2,
                            p + 3,
                            p + 4
                        ))
                    )
                },
                Clone::clone,
            )?;
        }
        Op::UpdateRun { .. } => {
            tx.execute(
                "UPDATE runs SET status = ?2, started_at = COALESCE(started_at, ?3), finished_at = ?4 WHERE id = ?1",
                &row_vals(op),
            )?;
        }
        Op::UpdateStage { .. } => {
            tx.execute(
                "UPDATE stages SET status = ?3 WHERE run_id = ?1 AND stage_id = ?2",
                &row_vals(op),
            )?;
        }
        _ => {}
    }
    Ok(())
}

/// The values of the row an update writes, in the order of its statement's placeholders
/// (key columns first): one statement's arguments, or one row of a many-row update's arrays.
pub(super) fn row_vals(op: &Op) -> Vec<Val> {
    match op {
        Op::UpdateRun {
            id,
            status,
            started_at,
            finished_at,
        } => args![
            id.0,
            status.as_str(),
            started_at.map(|t| t.to_string()),
            finished_at.map(|t| t.to_string())
        ]
        .to_vec(),
        Op::UpdateStage {
            run_id,
            stage,
            status,
        } => args![run_id.0, stage.as_str(), status.as_str()].to_vec(),
        Op::FinishAttempt {
            run_id,
            stage,
            n,
            status,
            finished_at,
            duration_ms,
            output,
            output_truncated,
            output_bytes,
            stderr,
            error,
        } => args![
            run_id.0,
            stage.as_str(),
            *n,
            status.as_str(),
            finished_at.to_string(),
            *duration_ms,
            output.as_deref(),
            *output_truncated,
            *output_bytes,
            stderr.as_deref(),
            error.as_ref().map(|e| e.0.as_str()),
            error.as_ref().map(|e| e.1.as_str()),
        ]
        .to_vec(),
        _ => Vec::new(),
    }
}

/// The writes about attempts.
fn apply_attempt_op(tx: &mut Db, op: &Op) -> Result<()> {
    match op {
        Op::StartAttempt { .. } => super::batch::insert_attempts(tx, &[op])?,
        Op::AttemptProcess {
            run_id,
            stage,
            n,
            pid,
            pid_start,
        } => {
            tx.execute(
                "UPDATE attempts SET pid = ?4, pid_start = ?5 WHERE run_id = ?1 AND stage_id = ?2 AND n = ?3",
                args![run_id.0, stage.as_str(), *n, *pid, *pid_start],
            )?;
        }
        Op::FinishAttempt { .. } => {
            tx.execute(
                "UPDATE attempts SET status = ?4, finished_at = ?5, duration_ms = ?6, output = ?7,
                   output_truncated = ?8, output_bytes = ?9, stderr = ?10, error_code = ?11, error_message = ?12
                 WHERE run_id = ?1 AND stage_id = ?2 AND n = ?3",
                &row_vals(op),
            )?;
        }
        _ => {}
    }
    Ok(())
}

/// The writes about assets and their pins.
/// The writes that let a restarted host or another worker go on where this one was: a
/// retry's due time, canary traffic for the driving worker, a breaker's state.
fn apply_shared_op(tx: &mut Db, op: &Op) -> Result<()> {
    match op {
        Op::RetryAt {
            run_id,
            stage,
            after,
            at,
        } => {
            tx.execute(
                "UPDATE stages SET retry_at = ?3, retry_after = ?4 WHERE run_id = ?1 AND stage_id = ?2",
                args![run_id.0, stage.as_str(), at.to_string(), *after],
            )?;
        }
        Op::CanarySeconds { worker, seconds } => {
            for (canary, sec, version, totals) in seconds {
                tx.execute(
                    "INSERT INTO canary_seconds (canary, worker, sec, version, totals) VALUES (?1, ?2, ?3, ?4, ?5)",
                    args![
                        canary.as_str(),
                        worker.as_str(),
                        *sec,
                        version.as_str(),
                        totals.as_str()
                    ],
                )?;
            }
        }
        Op::SaveBreaker {
            target,
            state,
            opened_at,
            at,
            worker,
        } => {
            tx.execute(
                "INSERT INTO breakers (target, state, opened_at, changed_at, worker) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (target) DO UPDATE SET state = excluded.state, opened_at = excluded.opened_at,
                   changed_at = excluded.changed_at, worker = excluded.worker",
                args![
                    target.as_str(),
                    state.as_str(),
                    opened_at.map(|t| t.to_string()),
                    at.to_string(),
                    worker.as_deref()
                ],
            )?;
        }
        _ => {}
    }
    Ok(())
}

fn apply_asset_op(tx: &mut Db, op: &Op) -> Result<()> {
    match op {
        Op::InsertAsset {
            name,
            version,
            content,
            at,
            actor,
            reason,
        } => {
            tx.execute(
                "INSERT INTO assets (name, version, content, created_at, actor, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                args![
                    name.as_str(),
                    *version,
                    content.as_str(),
                    at.to_string(),
                    actor.as_str(),
                    reason.as_str()
                ],
            )?;
        }
        Op::PinAsset {
            name,
            version,
            at,
            actor,
            reason,
        } => {
            tx.execute(
                "INSERT INTO asset_pins (name, version, at, actor, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
                args![name.as_str(), *version, at.to_string(), actor.as_str(), reason.as_str()],
            )?;
        }
        Op::UndoPin { name } => {
            tx.execute(
                "UPDATE asset_pins SET undone = 1 WHERE id =
                   (SELECT MAX(id) FROM asset_pins WHERE name = ?1 AND undone = 0)",
                args![name.as_str()],
            )?;
        }
        _ => {}
    }
    Ok(())
}
