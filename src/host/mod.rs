//! The host: the one process that hosts a workspace. It holds the workspace lock, owns the
//! store's writer and the task lifetime, recovers runs a crashed host left behind, and composes
//! the parts that own the state: the runtime (runs, the dead-letter queue, schedules) and the
//! canary service. Every change goes through its one control path ([`Host::control`]), which
//! checks, performs and audits each command. Read-only access needs no host: see
//! [`open_reader`].

mod assets;
mod control;
pub mod demo;
pub mod lock;
mod worker;
pub mod workspace;

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::canary::{CanaryError, CanaryService, Deps};
use crate::clock::{Clock, SystemClock};
use crate::model::{
    Actor, ApiError, AuditQuery, AuditRecord, CanaryStatus, Command, DlqEntry, DlqId, DlqQuery,
    ErrorCode, Event, LogFilter, Observation, Overview, Page, PipelineInfo, Run, RunId, RunQuery,
    RunStatus, RunSummary, SeriesPoint, StageIo, Timestamp, Trigger,
};
use crate::rng::Rng;
use crate::runtime::stage::kill_orphan;
use crate::runtime::{self, Runtime, RuntimeError};
use crate::store::{self, Op, ReadPool, Reader, Target, Writer, WriterThread, schema};

/// What a host answers with: the seam's error, a code and a sentence.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;
use crate::sync::lock;
pub use assets::asset_file_problems;
use lock::{HostInfo, HostLock, LockError};
pub use workspace::{Workspace, WorkspaceError};

/// How a host behaves; `command` names it in `host.json` and in "hosted by" messages.
pub struct HostOptions {
    pub command: String,
    /// Fire pipeline schedules and drive canaries (serve and the dashboard do; one-shot
    /// commands do not).
    pub schedules: bool,
    /// Resume every `interrupted` run at start.
    pub resume_interrupted: bool,
    pub clock: Arc<dyn Clock>,
    /// Seed for retry jitter and canary routing; random when absent.
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

    /// Options for a long-lived host (`serve`, the dashboard): schedules fire, canaries run
    /// and interrupted runs resume.
    pub fn long_lived(command: impl Into<String>) -> Self {
        HostOptions {
            schedules: true,
            resume_interrupted: true,
            ..HostOptions::new(command)
        }
    }
}

struct Inner {
    ws: Workspace,
    clock: Arc<dyn Clock>,
    writer: Writer,
    reads: ReadPool,
    runtime: Runtime,
    canaries: CanaryService,
    events: broadcast::Sender<Arc<Event>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Serialises asset changes (version numbers, pins).
    asset_lock: tokio::sync::Mutex<()>,
    /// Released at shutdown: the writer thread to join and the workspace lock.
    lifetime: Mutex<Option<(WriterThread, HostLock)>>,
    /// Whether this host drives the canaries (always on SQLite; on PostgreSQL the worker
    /// holding the canaries' lead).
    canary_lead: Arc<std::sync::atomic::AtomicBool>,
    /// This worker's row as registered (PostgreSQL), its address once published: a worker
    /// that rejoins after losing its lease comes back as it was.
    worker_row: Mutex<Option<crate::model::WorkerInfo>>,
}

/// A running host. Cloning shares it.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
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

/// Live events kept for subscribers that fall behind (each slot is a shared pointer): past
/// this a subscriber catches up from the store instead.
const EVENT_BUFFER: usize = 16_384;

/// If no host holds the workspace, marks any runs a dead host left behind as `interrupted`.
/// Read-only commands call this so a crashed run never looks alive.
pub fn recover_if_unhosted(ws: &Workspace) -> runtime::Result<()> {
    // A PostgreSQL store may be hosted from another machine: only its host recovers it.
    if !matches!(ws.store(), Target::Sqlite(_)) || !ws.db_path().exists() {
        return Ok(());
    }
    let Some(lock) = HostLock::try_quiet(&ws.state_dir()).map_err(hosted)? else {
        return Ok(());
    };
    let mut conn = store::open_sqlite(&ws.db_path(), true)?;
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
pub fn open_reader(ws: &Workspace) -> runtime::Result<Reader> {
    recover_if_unhosted(ws)?;
    match ws.store() {
        Target::Sqlite(path) if path.exists() => Ok(Reader::open(&path)?),
        // Nothing has run here yet: answer from an empty store rather than create files in a
        // directory that was only read.
        Target::Sqlite(_) => Ok(Reader::empty()?),
        pg @ Target::Postgres(_) => {
            let r = pg.reader()?;
            if r.schema_version()? == 0 {
                return Err(RuntimeError::BadInput(format!(
                    "the PostgreSQL store {} has no opsdeck tables yet: start a host on it (`opsdeck serve`), or copy a SQLite store into it with `opsdeck store migrate --to URL`",
                    pg.describe()
                )));
            }
            Ok(r)
        }
    }
}

/// A session-level advisory lock on a PostgreSQL store: the worker holding it drives the
/// workspace's canaries (one controller per canary, whatever the number of workers). Held by
/// the writer's connection, so it is let go when that connection closes, a crash included.
const PG_CANARY_LEAD: i64 = 0x6f70_7364_6563_6b01;

pub(crate) fn take_canary_lead(conn: &mut store::Db) -> store::Result<bool> {
    conn.one("SELECT pg_try_advisory_lock(?1)", &[PG_CANARY_LEAD.into()])?
        .bool(0)
}

/// Opens the store for a host: migrated, and on SQLite recovered after a crash (on
/// PostgreSQL a dead worker's runs are moved by the live ones, see `worker`).
fn open_store(
    target: &Target,
    now: Timestamp,
) -> runtime::Result<(store::Db, Vec<RunId>, Vec<store::Orphan>)> {
    let mut conn = target.writer()?;
    schema::migrate(&mut conn)?;
    if let Target::Postgres(_) = target {
        return Ok((conn, Vec::new(), Vec::new()));
    }
    let (recovered, orphans) = store::mark_interrupted(&mut conn, now)?;
    Ok((conn, recovered, orphans))
}

fn ws_lease(ws: &Workspace) -> std::time::Duration {
    std::time::Duration::from_secs(u64::from(ws.settings.worker.lease_timeout))
}

/// What [`open_writer`] returns: the writer, its thread, whether this host drives the
/// canaries (shared with the writer's reconnects and the canaries), and this worker's row.
type Opened = (
    Writer,
    WriterThread,
    Arc<std::sync::atomic::AtomicBool>,
    Option<crate::model::WorkerInfo>,
);

/// Opens the store and starts its writer (recovering SQLite after a crash). On PostgreSQL this
/// host is one worker of possibly several: it registers, and leads the canaries if no other
/// worker does.
async fn open_writer(
    ws: &Workspace,
    target: &Target,
    opts: &HostOptions,
    events: &broadcast::Sender<Arc<Event>>,
) -> runtime::Result<Opened> {
    let (mut conn, recovered, orphans) = open_store(target, opts.clock.timestamp())?;
    if !recovered.is_empty() {
        tracing::warn!(runs = %ids(&recovered), "runs of a stopped host were interrupted");
    }
    kill_orphans(&orphans);
    let shared = matches!(target, Target::Postgres(_));
    let lead = Arc::new(std::sync::atomic::AtomicBool::new(
        !shared || (opts.schedules && take_canary_lead(&mut conn)?),
    ));
    let me =
        shared.then(|| worker::identity(ws.settings.worker.max_in_flight, opts.clock.timestamp()));
    let (writer, thread) = Writer::spawn_with(conn, reopen(target, lead.clone()), events.clone())?;
    if let Some(me) = me.clone() {
        let ms = u64::try_from(ws_lease(ws).as_millis()).unwrap_or(u64::MAX);
        let id = me.id.clone();
        writer
            .on_conn(move |db| store::workers::register(db, &me, ms))
            .await?;
        // From here on every write holds this worker's row: none lands after its runs moved.
        writer.fence_as(id).await;
    }
    Ok((writer, thread, lead, me))
}

/// How the writer reconnects to a PostgreSQL store whose connection broke: a new connection,
/// which takes the canaries' lead again when this worker has it. If another worker has taken
/// it meanwhile, this one stops writing (and says so) rather than drive canaries twice.
fn reopen(target: &Target, lead: Arc<std::sync::atomic::AtomicBool>) -> Option<store::Reopen> {
    let Target::Postgres(_) = target else {
        return None;
    };
    let target = target.clone();
    Some(Box::new(move || {
        let mut conn = target.writer()?;
        if lead.load(std::sync::atomic::Ordering::Acquire) && !take_canary_lead(&mut conn)? {
            return Err(store::StoreError(
                "another worker took the lead of the canaries while this one was cut off from the store; stop this worker and start it again".into(),
            ));
        }
        Ok(conn)
    }))
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        let code = match &e {
            RuntimeError::BadInput(_) => ErrorCode::Validation,
            RuntimeError::NotFound(_) => ErrorCode::NotFound,
            RuntimeError::Conflict(_) | RuntimeError::Hosted(_) => ErrorCode::Conflict,
            RuntimeError::Store(_) | RuntimeError::Io(_) => ErrorCode::Internal,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<CanaryError> for ApiError {
    fn from(e: CanaryError) -> Self {
        let code = match &e {
            CanaryError::NotFound(_) => ErrorCode::NotFound,
            CanaryError::Conflict(_) => ErrorCode::Conflict,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        ApiError::new(ErrorCode::Internal, e.0)
    }
}

/// Interrupted runs a stopping host names, at most.
pub const INTERRUPTED_SHOWN: usize = 20;

impl Host {
    /// Takes the workspace lock, opens the store (recovering after a crash) and starts.
    pub async fn start(ws: Workspace, opts: HostOptions) -> runtime::Result<Host> {
        let state_dir = ws.state_dir();
        let info = HostInfo {
            pid: std::process::id(),
            command: opts.command.clone(),
            started_at: opts.clock.timestamp(),
            address: None,
            token: None,
        };
        let lock = HostLock::acquire(&state_dir, &info).map_err(hosted)?;
        let target = ws.store();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (writer, thread, canary_lead, me) = open_writer(&ws, &target, &opts, &events).await?;
        let reader = target.reader()?;
        let (shutdown, tasks) = (CancellationToken::new(), TaskTracker::new());
        let seed = opts.seed.unwrap_or_else(|| Rng::from_entropy().next_u64());
        let (canaries, canary_ops) = CanaryService::load(
            &ws.canaries,
            &reader,
            Deps {
                clock: opts.clock.clone(),
                writer: writer.clone(),
                shutdown: shutdown.clone(),
                tasks: tasks.clone(),
                dir: ws.dir.clone(),
                lead: canary_lead.clone(),
                several: matches!(target, Target::Postgres(_)),
            },
            seed,
        );
        let breakers = reader.breakers()?;
        drop(reader);
        // A long-lived worker takes runs others started or left; a one-off command does not.
        let claimer = match &me {
            Some(w) if opts.schedules => {
                Some(crate::store::Claimer::spawn(target.clone(), w.id.clone())?)
            }
            _ => None,
        };
        let runtime = Runtime::new(runtime::Parts {
            pipelines: ws.catalog().clone(),
            dir: ws.dir.clone(),
            clock: opts.clock.clone(),
            writer: writer.clone(),
            reads: ReadPool::new(target.clone()),
            seed: opts.seed,
            limit: usize::try_from(ws.settings.store.max_output_bytes).unwrap_or(usize::MAX),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
            worker: me.as_ref().map(|w| runtime::WorkerSlot {
                id: w.id.clone(),
                max_in_flight: usize::try_from(w.max_in_flight).unwrap_or(usize::MAX),
                claimer,
            }),
        });
        runtime.restore_breakers(breakers);
        let host = Host {
            inner: Arc::new(Inner {
                reads: ReadPool::new(target.clone()),
                ws,
                clock: opts.clock,
                writer,
                runtime,
                canaries,
                events,
                shutdown,
                tasks,
                asset_lock: tokio::sync::Mutex::new(()),
                lifetime: Mutex::new(Some((thread, lock))),
                canary_lead: canary_lead.clone(),
                worker_row: Mutex::new(me.clone()),
            }),
        };
        tracing::info!(workspace = %host.inner.ws.dir.display(), command = %opts.command, "host started");
        if let Err(e) = host.seed_assets().await {
            host.shutdown().await;
            return Err(e);
        }
        if let Target::Postgres(url) = &target {
            // Interrupted runs are resumed by whichever worker claims them.
            let lease = ws_lease(&host.inner.ws);
            worker::spawn(&host, url.clone(), lease, opts.schedules);
        } else if opts.resume_interrupted {
            host.resume_interrupted().await?;
        }
        let leads = canary_lead.load(std::sync::atomic::Ordering::Acquire);
        if leads {
            host.inner.writer.commit(canary_ops).await?;
        }
        if opts.schedules {
            host.start_schedules_and_canaries(&target, leads).await?;
        }
        Ok(host)
    }

    /// A long-lived host fires schedules, and drives the canaries or, on a worker that does
    /// not, serves their traffic for the one that does.
    async fn start_schedules_and_canaries(
        &self,
        target: &Target,
        leads: bool,
    ) -> runtime::Result<()> {
        self.inner.runtime.start_schedules();
        if leads {
            self.inner
                .canaries
                .start()
                .await
                .map_err(RuntimeError::Io)?;
        } else if let Some(w) = self.inner.runtime.worker()
            && !self.inner.ws.canaries.is_empty()
        {
            tracing::info!(
                "another worker on this store drives the canaries; this one serves their traffic and sends what it sees to the store"
            );
            self.inner
                .canaries
                .follow(ReadPool::new(target.clone()), w.id.clone())
                .map_err(RuntimeError::Io)?;
        }
        Ok(())
    }

    /// Continues every run a stopped host left `interrupted`, each as opsdeck's own command
    /// down the control path, so the audit log says why the run went on.
    async fn resume_interrupted(&self) -> runtime::Result<()> {
        let actor = Actor::automatic();
        for run in self.inner.runtime.interrupted().await? {
            let why = "a host started and continues the runs a stopped host interrupted";
            if let Err(e) = self.control(Command::ResumeRun { run }, &actor, why).await {
                tracing::warn!(run = %run, error = %e, "could not resume an interrupted run");
            }
        }
        Ok(())
    }

    pub fn workspace(&self) -> &Workspace {
        &self.inner.ws
    }

    /// Live events, published once committed. A receiver that falls behind gets `Lagged` and
    /// should catch up from the store with [`Host::events`].
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.events.subscribe()
    }

    /// Starts a run without an actor: schedules, and `opsdeck run` in the foreground (which
    /// goes through [`Host::control`] when it can; this is for tests and benchmarks).
    pub async fn start_run(
        &self,
        pipeline: &str,
        params: &Map<String, Value>,
        trigger: Trigger,
    ) -> Result<RunId> {
        Ok(self
            .inner
            .runtime
            .start_run(pipeline, params, trigger, |_| Vec::new())
            .await?)
    }

    pub fn is_active(&self, id: RunId) -> bool {
        self.inner.runtime.is_active(id)
    }

    /// Waits until the run is no longer active and returns its stored status.
    pub async fn wait(&self, id: RunId) -> Result<RunStatus> {
        Ok(self.inner.runtime.wait(id).await?)
    }

    pub async fn runs(&self, q: RunQuery) -> Result<Page<RunSummary>> {
        Ok(self.inner.runtime.runs(q).await?)
    }

    pub async fn run(&self, id: RunId) -> Result<Run> {
        Ok(self.inner.runtime.run(id).await?)
    }

    pub async fn stage_io(&self, id: RunId, stage: &str) -> Result<StageIo> {
        Ok(self.inner.runtime.stage_io(id, stage).await?)
    }

    /// One dead-letter entry with its input, or a sentence saying where it went.
    pub async fn dlq_entry(&self, id: DlqId) -> Result<DlqEntry> {
        Ok(self.inner.runtime.dlq_entry(id).await?)
    }

    pub async fn dlq(&self, q: DlqQuery) -> Result<Page<DlqEntry, DlqId>> {
        Ok(self.inner.runtime.dlq(q).await?)
    }

    /// Stored events after `since`, oldest first.
    pub async fn events(&self, since: u64, limit: usize) -> Result<Vec<Event>> {
        Ok(self.inner.runtime.events(since, limit).await?)
    }

    /// The stored events `filter` keeps after `since`, oldest first, at most `limit`.
    pub async fn log_events(
        &self,
        filter: LogFilter,
        since: u64,
        limit: usize,
    ) -> Result<Vec<Event>> {
        Ok(self.inner.runtime.log_events(filter, since, limit).await?)
    }

    /// Runs counted by pipeline and status, for `/metrics`.
    pub async fn run_counts(&self) -> Result<Vec<(String, String, u64)>> {
        Ok(self.inner.runtime.run_counts().await?)
    }

    /// A pipeline by name as its file is now, or a sentence saying why not.
    pub fn pipeline(
        &self,
        name: &str,
    ) -> std::result::Result<Arc<crate::runtime::spec::Pipeline>, String> {
        self.inner.runtime.pipelines().get(name)
    }

    /// The pipelines, alert counts and event position a client needs for its first frame.
    pub async fn overview(&self) -> Result<Overview> {
        let (dlq_depth, last_seq) = self.inner.runtime.counts().await?;
        let catalog = self.inner.runtime.pipelines();
        let pipelines = catalog
            .iter()
            .map(|p| PipelineInfo {
                name: p.name.clone(),
                description: p.description.clone(),
                schedule: p.schedule.as_ref().map(|s| s.text().to_string()),
                stages: p.stages.iter().map(|s| s.id.clone()).collect(),
                params: p.params.clone(),
                graph: p
                    .stages
                    .iter()
                    .map(|s| crate::model::lens::StageInfo {
                        id: s.id.clone(),
                        kind: s.kind.name().to_string(),
                        needs: s.needs.clone(),
                        assets: s.assets.iter().map(ToString::to_string).collect(),
                        breaker: s.breaker_target(),
                    })
                    .collect(),
            })
            .collect();
        Ok(Overview {
            backend: "embedded".into(),
            workspace: self.inner.ws.dir.display().to_string(),
            pipelines,
            dlq_depth,
            breakers: self.inner.runtime.breakers(),
            last_seq,
            running: self.inner.runtime.running() as u64,
            role: None,
            workers: match self.inner.runtime.worker() {
                Some(_) => Some(self.workers().await?.len() as u64),
                None => None,
            },
        })
    }

    /// Each stage's health over the pipeline's last `runs` production runs.
    pub async fn pipeline_stats(
        &self,
        name: &str,
        runs: usize,
    ) -> Result<crate::model::lens::PipelineStats> {
        let p = self
            .inner
            .ws
            .pipeline(name)
            .map_err(|m| ApiError::new(ErrorCode::NotFound, m))?;
        let stages: Vec<String> = p.stages.iter().map(|s| s.id.clone()).collect();
        let (pipeline, n) = (
            name.to_string(),
            runs.clamp(1, crate::model::lens::MAX_LENS_RUNS),
        );
        let (ids, rows) = self
            .inner
            .reads
            .with(move |r| r.lens_rows(&pipeline, n))
            .await?;
        Ok(crate::model::lens::stats(name, &stages, ids, &rows))
    }

    pub fn canaries(&self) -> Vec<CanaryStatus> {
        self.inner.canaries.statuses()
    }

    pub fn canary(&self, name: &str) -> Result<CanaryStatus> {
        Ok(self.inner.canaries.status(name)?)
    }

    /// Chart points: `points` steps of `step_s` seconds ending now.
    pub fn canary_series(
        &self,
        name: &str,
        step_s: i64,
        points: usize,
    ) -> Result<Vec<SeriesPoint>> {
        Ok(self.inner.canaries.series(name, step_s, points)?)
    }

    /// Observations from an external router for an `ingest` canary.
    pub fn canary_ingest(&self, name: &str, batch: &[Observation]) -> Result<u64> {
        Ok(self.inner.canaries.ingest(name, batch)?)
    }

    /// The canary's current weight in percent, for external routers.
    pub fn canary_weight(&self, name: &str) -> Result<f64> {
        Ok(self.inner.canaries.weight(name)?)
    }

    /// Audit records, newest first.
    pub async fn audit_log(&self, q: AuditQuery) -> Result<Vec<AuditRecord>> {
        Ok(self.inner.reads.with(move |r| r.audit(&q)).await?)
    }

    /// This host's id among the workers sharing a PostgreSQL store (none on SQLite).
    pub fn worker_id(&self) -> Option<String> {
        self.inner.runtime.worker().map(|w| w.id.clone())
    }

    /// The workers sharing this host's PostgreSQL store (none on SQLite: one host).
    pub async fn workers(&self) -> Result<Vec<crate::model::WorkerInfo>> {
        Ok(self.inner.reads.with(Reader::workers).await?)
    }

    /// Write batches committed to the store so far: unchanged, so is everything stored.
    pub fn generation(&self) -> u64 {
        self.inner.writer.generation()
    }

    /// Appends a refusal that never reached the control path (a request without a valid
    /// token) to the audit log only, without waiting: such requests must not fill the event
    /// log.
    pub async fn record_denial(&self, rec: AuditRecord) {
        self.inner.writer.send(vec![Op::Audit(rec)]).await;
    }

    /// Records in `.opsdeck/host.json` the address the host serves its API on (and the token
    /// it takes there, if any), so commands given this workspace act through the host instead
    /// of being refused because it holds the workspace.
    pub fn publish_address(&self, address: &str, token: Option<&str>) {
        let state_dir = self.inner.ws.state_dir();
        let lifetime = lock(&self.inner.lifetime);
        if let (Some((_, lock)), Some(mut info)) = (lifetime.as_ref(), HostLock::holder(&state_dir))
        {
            info.address = Some(address.to_string());
            info.token = token.map(str::to_string);
            if let Err(e) = lock.set_address(&info) {
                tracing::warn!(error = %e, "cannot publish the host's address; commands on this workspace will be refused while it runs");
            }
        }
        drop(lifetime);
        if let Some(w) = self.inner.runtime.worker() {
            // Other workers' operators find this one's API in `opsdeck workers`: by the
            // machine's name when it listens on every address.
            let host = w.id.split(':').next().unwrap_or("localhost");
            let address = address
                .replace("//0.0.0.0:", &format!("//{host}:"))
                .replace("//[::]:", &format!("//{host}:"));
            if let Some(row) = lock(&self.inner.worker_row).as_mut() {
                row.address = Some(address.clone());
            }
            let (me, writer) = (w.id.clone(), self.inner.writer.clone());
            tokio::spawn(async move {
                let set = writer
                    .on_conn(move |db| store::workers::set_address(db, &me, &address))
                    .await;
                if let Err(e) = set {
                    tracing::warn!(error = %e, "cannot record this worker's address in the store");
                }
            });
        }
    }

    /// Stops schedules and canaries, interrupts active runs (they resume when a host next
    /// starts), writes everything queued, and releases the workspace.
    ///
    /// Returns the runs left interrupted (at most [`INTERRUPTED_SHOWN`], newest first), so
    /// whoever stopped it can say which they are and how to resume them.
    pub async fn shutdown(&self) -> Vec<RunSummary> {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        if let Some(w) = self.inner.runtime.worker() {
            if let Some(claimer) = &w.claimer {
                claimer.close().await;
            }
            // Runs interrupted by this stop go to the other workers at once.
            let me = w.id.clone();
            if let Err(e) = self
                .inner
                .writer
                .on_conn(move |db| store::workers::release(db, &me))
                .await
            {
                tracing::warn!(error = %e, "could not hand this worker's runs back to the store");
            }
        }
        self.inner.writer.close().await;
        let lifetime = lock(&self.inner.lifetime).take();
        if let Some((thread, lock)) = lifetime {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            drop(lock);
        }
        let q = RunQuery {
            status: Some(crate::model::RunStatus::Interrupted),
            limit: INTERRUPTED_SHOWN,
            ..RunQuery::default()
        };
        let left = self.inner.reads.with(move |r| r.runs(&q)).await;
        let left = left.map(|p| p.items).unwrap_or_default();
        if !left.is_empty() {
            tracing::warn!(runs = %ids(&left.iter().map(|r| r.id).collect::<Vec<_>>()), "runs left interrupted: `opsdeck runs resume ID` continues one, and the next host resumes them all");
        }
        tracing::info!("host stopped");
        left
    }
}
