//! This host as one of several workers on a PostgreSQL store: its row and lease, the loop
//! that renews the lease, moves the runs of workers that stopped renewing theirs, hands over
//! cancellations asked on other workers, and claims runs while it has room; and the listener
//! that wakes it (and the live event stream) on the store's notifications.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

use super::Host;
use crate::model::{Actor, Command, RunStatus, WorkerInfo};
use crate::runtime::WorkerSlot;
use crate::store::workers;

/// How often an idle worker looks for work (notifications wake it sooner).
const POLL: Duration = Duration::from_secs(1);

/// This machine's name, as workers record it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// This worker's row, made once per process start.
pub fn identity(max_in_flight: u32, now: crate::model::Timestamp) -> WorkerInfo {
    let host = hostname();
    let pid = std::process::id();
    let tag = crate::rng::Rng::from_entropy().next_u64() & 0xffff;
    WorkerInfo {
        id: format!("{host}:{pid}:{tag:04x}"),
        host,
        pid,
        address: None,
        started_at: now,
        heartbeat_age_ms: 0,
        lease_left_ms: 0,
        max_in_flight,
        runs: 0,
    }
}

/// Starts the worker's loop and listener on the host's tasks. `claim`: take runs others
/// started or left (long-lived hosts); one-shot commands only keep their lease.
pub(super) fn spawn(host: &Host, url: String, lease: Duration, claim: bool) {
    let wake = Arc::new(Wake::default());
    let inner = &host.inner;
    inner.tasks.spawn(listen(
        url,
        inner.writer.clone(),
        wake.clone(),
        inner.shutdown.clone(),
    ));
    inner.tasks.spawn(follow_breakers(host.clone()));
    let renewed = Arc::new(Renewed::new());
    inner
        .tasks
        .spawn(watchdog(host.clone(), lease, renewed.clone()));
    let gate = StartGate::default();
    inner
        .tasks
        .spawn(run(host.clone(), wake, lease, claim, renewed, gate.clone()));
    if let Some(handed) = inner.runtime.handed_runs() {
        inner.tasks.spawn(start_handed(host.clone(), handed, gate));
    }
}

/// Breakers opened and closed by other workers hold here too (their changes arrive as events
/// from the store, like every other worker's events; this task hears only those).
async fn follow_breakers(host: Host) {
    use tokio::sync::broadcast::error::RecvError;
    let mut changes = host.inner.writer.breaker_changes();
    loop {
        tokio::select! {
            () = host.inner.shutdown.cancelled() => return,
            e = changes.recv() => match e {
                Ok(e) if e.kind == crate::model::EventKind::BreakerChanged => {
                    host.inner.runtime.follow_breaker(&e);
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    // Fell behind the changes: the store holds every breaker's state.
                    match host.inner.reads.with(crate::store::Reader::breakers).await {
                        Ok(saved) => host.inner.runtime.restore_breakers(saved),
                        Err(e) => tracing::warn!(error = %e, "could not read the breakers' states"),
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}

/// What wakes the worker's loop: work in the store, and whether a cancellation was asked (the
/// loop looks for those only then, and at each heartbeat).
#[derive(Default)]
struct Wake {
    any: Notify,
    cancels: std::sync::atomic::AtomicBool,
}

/// When this worker last renewed its lease: the moment the renewal was sent, on this
/// process's monotonic clock (the store's lease runs from a moment after that).
struct Renewed {
    base: std::time::Instant,
    sent_ms: std::sync::atomic::AtomicU64,
}

impl Renewed {
    fn new() -> Renewed {
        Renewed {
            base: std::time::Instant::now(),
            sent_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        millis(self.base.elapsed())
    }

    fn set(&self, sent_ms: u64) {
        self.sent_ms
            .fetch_max(sent_ms, std::sync::atomic::Ordering::AcqRel);
    }

    fn age(&self) -> Duration {
        let sent = self.sent_ms.load(std::sync::atomic::Ordering::Acquire);
        Duration::from_millis(self.now_ms().saturating_sub(sent))
    }
}

/// Stops this worker's runs once it has gone four fifths of its lease without renewing it
/// (the store unreachable or too slow): before the lease can run out and other workers take
/// the runs, so no attempt runs here that another worker may also be running. Separate from
/// the loop, which may be waiting on the store.
async fn watchdog(host: Host, lease: Duration, renewed: Arc<Renewed>) {
    let limit = lease * 4 / 5;
    let tick = (lease / 20).max(Duration::from_millis(100));
    loop {
        let slept_from = std::time::Instant::now();
        tokio::select! {
            () = host.inner.shutdown.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
        }
        if !host.inner.writer.fenced() && renewed.age() >= limit {
            // A tick that came far too late: this process was stopped (a paused machine, a
            // SIGSTOP, starved of CPU), not the store out of reach.
            let stalled = slept_from.elapsed();
            if stalled >= tick + limit / 2 {
                tracing::error!(
                    stalled_ms = millis(stalled),
                    "this worker was stalled (paused, frozen or starved of CPU) for most of its lease: stopping its runs (killing their attempts), which other workers may have taken; it rejoins now"
                );
            } else {
                tracing::error!(
                    without_ms = millis(renewed.age()),
                    "cut off from the store for most of this worker's lease: stopping its runs (killing their attempts) so that other workers can take them; this worker rejoins when the store answers"
                );
            }
            host.inner.runtime.fence().await;
        }
    }
}

async fn run(
    host: Host,
    wake: Arc<Wake>,
    lease: Duration,
    claim: bool,
    renewed: Arc<Renewed>,
    gate: StartGate,
) {
    let Some(slot) = host.inner.runtime.worker().cloned() else {
        return;
    };
    let beat = lease / 3;
    let mut last_beat: Option<tokio::time::Instant> = None;
    // Runs seen held here without a driver at the last look (see `release_stranded`).
    let mut suspects: Vec<crate::model::RunId> = Vec::new();
    let shutdown = host.inner.shutdown.clone();
    let freed = host.inner.runtime.freed();
    let lost = host.inner.writer.lease_lost();
    loop {
        let fenced = host.inner.writer.fenced();
        let beating = fenced || last_beat.is_none_or(|t| t.elapsed() >= beat);
        if beating {
            last_beat = Some(tokio::time::Instant::now());
            let held = keep_lease(&host, &slot, lease, &renewed, &gate).await;
            move_dead_workers_runs(&host).await;
            if held {
                release_stranded(&host, &slot, &gate, &mut suspects).await;
            } else {
                suspects.clear();
            }
            if claim {
                lead_canaries_if_free(&host).await;
            }
        }
        let asked = wake
            .cancels
            .swap(false, std::sync::atomic::Ordering::AcqRel);
        if !host.inner.writer.fenced() {
            if asked || beating {
                hand_over_cancels(&host, &slot).await;
            }
            if claim {
                claim_runs(&host, &slot).await;
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = wake.any.notified() => {}
            () = freed.notified() => {}
            () = lost.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Held while runs that runs' ends claimed are started, and while the worker rejoins after
/// losing its lease: no run starts between the fence and the rejoin handing its runs back.
type StartGate = Arc<tokio::sync::Mutex<()>>;

/// Starts the runs this worker's run ends claimed (see `store::Claimer`), each in the slot its
/// ending run left; none while this worker is fenced off (they are its in the store, so they
/// go back when it rejoins).
async fn start_handed(
    host: Host,
    mut handed: tokio::sync::mpsc::UnboundedReceiver<crate::runtime::Handed>,
    gate: StartGate,
) {
    loop {
        let run = tokio::select! {
            () = host.inner.shutdown.cancelled() => return,
            run = handed.recv() => match run {
                Some(run) => run,
                None => return,
            },
        };
        let starter = host.clone();
        let gate = gate.clone();
        host.inner.tasks.spawn(async move {
            {
                let _held = gate.lock().await;
                let runtime = &starter.inner.runtime;
                if !starter.inner.writer.fenced() && runtime.may_start(&run) {
                    start_claimed(&starter, run.run).await;
                }
            }
            starter.inner.runtime.handed_started();
            // Not started (cancelled, refused, fenced off): the loop fills the slot.
            starter.inner.runtime.freed().notify_one();
        });
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Renews the lease (rejoining when it was lost); true when it was held all along.
async fn keep_lease(
    host: &Host,
    slot: &WorkerSlot,
    lease: Duration,
    renewed: &Renewed,
    gate: &StartGate,
) -> bool {
    let me = slot.id.clone();
    let ms = millis(lease);
    let sent = renewed.now_ms();
    match host
        .inner
        .writer
        .on_conn(move |db| workers::heartbeat(db, &me, ms))
        .await
    {
        Ok(true) if !host.inner.writer.fenced() => {
            renewed.set(sent);
            return true;
        }
        Ok(held) => {
            if held {
                tracing::warn!(worker = %slot.id, "the store answers again; this worker's stopped runs go back to the store to be resumed");
            } else {
                tracing::error!(worker = %slot.id, "this worker's lease ran out and other workers took its runs; stopping what it still ran here and rejoining");
            }
            if rejoin(host, slot, ms, gate).await {
                renewed.set(sent);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "could not renew this worker's lease; not claiming until the store answers");
        }
    }
    false
}

/// After losing the lease: stops every run here without recording more (their processes are
/// killed), hands back whatever the store still says this worker owns, and registers again.
/// True once the worker is back.
async fn rejoin(host: &Host, slot: &WorkerSlot, lease_ms: u64, gate: &StartGate) -> bool {
    let _held = gate.lock().await;
    host.inner.runtime.fence().await;
    // Every driver has stopped: runs their ends claimed go back to the store with the rest.
    host.inner.runtime.rejoined();
    let registered = crate::sync::lock(&host.inner.worker_row).clone();
    let info = registered.unwrap_or_else(|| WorkerInfo {
        id: slot.id.clone(),
        ..identity(
            u32::try_from(slot.max_in_flight).unwrap_or(u32::MAX),
            host.inner.clock.timestamp(),
        )
    });
    let now = host.inner.clock.timestamp();
    match host
        .inner
        .writer
        .on_conn(move |db| workers::rejoin(db, &info, lease_ms, now))
        .await
    {
        Ok(runs) => {
            host.inner.writer.set_fenced(false);
            tracing::warn!(
                handed_back = runs.len(),
                "this worker rejoined the store's workers"
            );
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "could not rejoin as a worker; trying again");
            false
        }
    }
}

async fn move_dead_workers_runs(host: &Host) {
    let now = host.inner.clock.timestamp();
    match host
        .inner
        .writer
        .on_conn(move |db| workers::reap(db, now))
        .await
    {
        Ok(moved) => {
            let here = hostname();
            for dead in moved {
                tracing::warn!(worker = %dead.worker, runs = dead.runs.len(), "a worker stopped renewing its lease; its runs were interrupted for another worker to resume");
                // Its attempts' processes, if they ran on this machine, go with it: the runs
                // get new attempts elsewhere.
                if dead.host.as_deref() == Some(here.as_str()) {
                    super::kill_orphans(&dead.orphans);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not look for workers whose lease ran out"),
    }
}

/// Lets go of the runs this worker holds in the store but does not drive, once seen so at two
/// looks in a row (after two lease renewals, a third of the lease apart): a claim committed
/// whose answer was lost with the connection, a resume that failed after taking its run, or a
/// run whose end could not be recorded. While this worker keeps its lease nothing else would
/// ever move them; let go as a dead worker's runs are, any worker claims and resumes them.
/// Looked at only while no run is on its way to a driver here (nothing reserved or being
/// taken, the start gate free), so a run being started is never taken for one. A look that
/// cannot be made is skipped, the suspects kept for the next one that can: on a worker that
/// is starting runs all the time, quiet moments are rare, and restarting the count at every
/// skipped look could keep a stranded run for ever. (A run is still let go only when two
/// looks, each made while nothing was on its way to a driver, both found it held idle.)
async fn release_stranded(
    host: &Host,
    slot: &WorkerSlot,
    gate: &StartGate,
    suspects: &mut Vec<crate::model::RunId>,
) {
    let Some(idle) = idle_runs(host, slot, gate).await else {
        return;
    };
    let (stranded, first_seen): (Vec<_>, Vec<_>) =
        idle.into_iter().partition(|id| suspects.contains(id));
    *suspects = first_seen;
    if stranded.is_empty() {
        return;
    }
    let (me, now) = (slot.id.clone(), host.inner.clock.timestamp());
    match host
        .inner
        .writer
        .on_conn(move |db| workers::release_stranded(db, &me, &stranded, now))
        .await
    {
        Ok(moved) if moved.is_empty() => {}
        Ok(moved) => {
            let runs: Vec<String> = moved.iter().map(ToString::to_string).collect();
            tracing::warn!(runs = %runs.join(", "), "runs this worker held without driving them were let go for a worker to resume");
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not let go of runs this worker holds without driving");
        }
    }
}

/// The unfinished runs this worker holds in the store with no driver here and none on its
/// way; `None` when that cannot be told now (a run is being started or taken, the worker is
/// fenced off or stopping, the store did not answer).
async fn idle_runs(
    host: &Host,
    slot: &WorkerSlot,
    gate: &StartGate,
) -> Option<Vec<crate::model::RunId>> {
    let quiet = |host: &Host| {
        let (driving, starting) = host.inner.runtime.driving();
        let settled =
            !starting && !host.inner.writer.fenced() && !host.inner.shutdown.is_cancelled();
        settled.then_some(driving)
    };
    quiet(host)?;
    // Runs being started hold the gate: looked at next time rather than waited for.
    let _held = gate.try_lock().ok()?;
    let before = quiet(host)?;
    let me = slot.id.clone();
    let idle = match host
        .inner
        .writer
        .on_conn(move |db| workers::owned_idle(db, &me, &before))
        .await
    {
        Ok(idle) => idle,
        Err(e) => {
            tracing::warn!(error = %e, "could not look for runs this worker holds without driving");
            return None;
        }
    };
    // A run driven or taken since the query read it is not idle.
    let after = quiet(host)?;
    Some(idle.into_iter().filter(|id| !after.contains(id)).collect())
}

/// A long-lived worker that does not drive the canaries takes their lead when the worker that
/// did has stopped (its lock went with its connection).
async fn lead_canaries_if_free(host: &Host) {
    use std::sync::atomic::Ordering;
    let inner = &host.inner;
    if inner.ws.canaries.is_empty() || inner.canary_lead.load(Ordering::Acquire) {
        return;
    }
    let taken = match inner.writer.on_conn(super::take_canary_lead).await {
        Ok(taken) => taken,
        Err(e) => {
            tracing::warn!(error = %e, "could not ask for the canaries' lead");
            return;
        }
    };
    if !taken {
        return;
    }
    let ops = match inner.ws.store().reader() {
        Ok(reader) => inner.canaries.take_over(&reader),
        Err(e) => {
            tracing::error!(error = %e, "took the canaries' lead but cannot read their state");
            return;
        }
    };
    let started = match inner.writer.commit(ops).await {
        Ok(()) => inner.canaries.start().await,
        Err(e) => Err(e.0),
    };
    match started {
        Ok(()) => tracing::warn!(
            "the worker that drove the canaries stopped: this one drives them now, from their saved state"
        ),
        Err(e) => tracing::error!(error = %e, "took the canaries' lead but could not start them"),
    }
}

async fn hand_over_cancels(host: &Host, slot: &WorkerSlot) {
    let me = slot.id.clone();
    let asked = match host
        .inner
        .writer
        .on_conn(move |db| workers::take_cancels(db, &me))
        .await
    {
        Ok(asked) => asked,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the cancellations asked of this worker");
            return;
        }
    };
    for (run, reason) in asked {
        if let Err(e) = host
            .inner
            .runtime
            .cancel_run(run, &reason, Vec::new())
            .await
        {
            tracing::warn!(run = %run, error = %e, "could not cancel a run as another worker asked");
        }
    }
}

async fn claim_runs(host: &Host, slot: &WorkerSlot) {
    let Some(claimer) = slot.claimer.as_ref() else {
        return;
    };
    let room = slot
        .max_in_flight
        .saturating_sub(host.inner.runtime.running());
    if room == 0 || host.inner.shutdown.is_cancelled() {
        return;
    }
    let claimed = match claimer.claim(room).await {
        Some(claimed) => claimed,
        // The claimer cannot (its connection is down, say): the writer's connection claims.
        None => {
            let me = slot.id.clone();
            match host
                .inner
                .writer
                .on_conn(move |db| workers::claim(db, &me, room))
                .await
            {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim runs");
                    return;
                }
            }
        }
    };
    // Started side by side: their first writes share commits, and a wave of freed slots is
    // filled at once rather than one run after another.
    let starts = claimed
        .into_iter()
        .map(|claimed| start_claimed(host, claimed));
    futures::future::join_all(starts).await;
}

/// Starts (or resumes, or cancels) one run this worker has just claimed.
async fn start_claimed(host: &Host, claimed: workers::Claimed) {
    let workers::Claimed {
        id: run,
        status,
        cancel,
        unstarted,
    } = claimed;
    let started = if let Some(reason) = cancel {
        // Cancelled while no worker drove it: it ends here, and never runs again.
        host.inner
            .runtime
            .cancel_run(run, &reason, Vec::new())
            .await
            .map_err(|e| e.to_string())
    } else if status == RunStatus::Interrupted {
        // Resuming is a command of its own: recorded in the audit log, as at a start.
        let why = "a worker took over a run that another worker or a stopped host left interrupted";
        host.control(Command::ResumeRun { run }, &Actor::automatic(), why)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    } else {
        host.inner
            .runtime
            .start_claimed(run, unstarted)
            .await
            .map_err(|e| e.to_string())
    };
    if let Err(e) = started {
        tracing::warn!(run = %run, error = %e, "could not start a claimed run");
    }
}

/// What a notification from the store says.
enum Notice {
    /// Runs to claim, or (`cancel`) a cancellation asked of some worker's run.
    Work { cancel: bool },
    /// Events committed, up to `upto` (not named by workers of older versions).
    Events { upto: Option<u64> },
}

/// Listens for the store's notifications: new events (published here in order by the
/// writer) and work (wakes the loop). Reconnects with backoff.
async fn listen(
    url: String,
    writer: crate::store::Writer,
    wake: Arc<Wake>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        match crate::store::db::open_postgres(&url).await {
            Ok((client, mut messages)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let forward = tokio::spawn(async move {
                    while let Some(Ok(m)) = messages.next().await {
                        if let AsyncMessage::Notification(n) = m {
                            let _ = tx.send(if n.channel() == "opsdeck_work" {
                                Notice::Work {
                                    cancel: n.payload() == "cancel",
                                }
                            } else {
                                Notice::Events {
                                    upto: n.payload().parse().ok(),
                                }
                            });
                        }
                    }
                });
                if client
                    .batch_execute("LISTEN opsdeck_events; LISTEN opsdeck_work")
                    .await
                    .is_ok()
                {
                    delay = Duration::from_millis(100);
                    // Whatever was missed while not listening.
                    writer.tail(None);
                    wake.cancels
                        .store(true, std::sync::atomic::Ordering::Release);
                    wake.any.notify_one();
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => {
                                forward.abort();
                                return;
                            }
                            msg = rx.recv() => match msg {
                                Some(Notice::Work { cancel }) => {
                                    if cancel {
                                        wake.cancels.store(true, std::sync::atomic::Ordering::Release);
                                    }
                                    wake.any.notify_one();
                                }
                                Some(Notice::Events { upto }) => writer.tail(upto),
                                None => break,
                            }
                        }
                    }
                }
                forward.abort();
                tracing::warn!("lost the store's notifications; listening again");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for the store's notifications");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
