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

/// This worker's row, made once per process start.
pub fn identity(max_in_flight: u32, now: crate::model::Timestamp) -> WorkerInfo {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
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
    let wake = Arc::new(Notify::new());
    let inner = &host.inner;
    inner.tasks.spawn(listen(
        url,
        inner.writer.clone(),
        wake.clone(),
        inner.shutdown.clone(),
    ));
    inner.tasks.spawn(run(host.clone(), wake, lease, claim));
}

async fn run(host: Host, wake: Arc<Notify>, lease: Duration, claim: bool) {
    let Some(slot) = host.inner.runtime.worker().cloned() else {
        return;
    };
    let beat = lease / 3;
    let mut last_beat: Option<tokio::time::Instant> = None;
    let shutdown = host.inner.shutdown.clone();
    let freed = host.inner.runtime.freed();
    loop {
        if last_beat.is_none_or(|t| t.elapsed() >= beat) {
            last_beat = Some(tokio::time::Instant::now());
            keep_lease(&host, &slot, lease).await;
            move_dead_workers_runs(&host).await;
            if claim {
                lead_canaries_if_free(&host).await;
            }
        }
        hand_over_cancels(&host, &slot).await;
        if claim {
            claim_runs(&host, &slot).await;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = wake.notified() => {}
            () = freed.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn keep_lease(host: &Host, slot: &WorkerSlot, lease: Duration) {
    let me = slot.id.clone();
    let ms = millis(lease);
    match host
        .inner
        .writer
        .on_conn(move |db| workers::heartbeat(db, &me, ms))
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            // Another worker found the lease expired and moved this one's runs: say so,
            // and come back as a worker (runs still driven here end as they would).
            tracing::error!(worker = %slot.id, "this worker's lease ran out and its runs moved to other workers; registering again");
            let info = identity(
                u32::try_from(slot.max_in_flight).unwrap_or(u32::MAX),
                host.inner.clock.timestamp(),
            );
            let info = WorkerInfo {
                id: slot.id.clone(),
                ..info
            };
            if let Err(e) = host
                .inner
                .writer
                .on_conn(move |db| workers::register(db, &info, ms))
                .await
            {
                tracing::error!(error = %e, "could not register this worker again");
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "could not renew this worker's lease; not claiming until the store answers");
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
            for (worker, runs) in moved {
                tracing::warn!(worker = %worker, runs = runs.len(), "a worker stopped renewing its lease; its runs were interrupted for another worker to resume");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not look for workers whose lease ran out"),
    }
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
    let room = slot
        .max_in_flight
        .saturating_sub(host.inner.runtime.running());
    if room == 0 || host.inner.shutdown.is_cancelled() {
        return;
    }
    let me = slot.id.clone();
    let claimed = match host
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
    };
    for (run, status, cancel) in claimed {
        let started = if let Some(reason) = cancel {
            // Cancelled while no worker drove it: it ends here, and never runs again.
            host.inner
                .runtime
                .cancel_run(run, &reason, Vec::new())
                .await
                .map_err(|e| e.to_string())
        } else if status == RunStatus::Interrupted {
            // Resuming is a command of its own: recorded in the audit log, as at a start.
            let why =
                "a worker took over a run that another worker or a stopped host left interrupted";
            host.control(Command::ResumeRun { run }, &Actor::automatic(), why)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        } else {
            host.inner
                .runtime
                .start_claimed(run)
                .await
                .map_err(|e| e.to_string())
        };
        if let Err(e) = started {
            tracing::warn!(run = %run, error = %e, "could not start a claimed run");
        }
    }
}

/// Listens for the store's notifications: new events (published here in order by the
/// writer) and work (wakes the loop). Reconnects with backoff.
async fn listen(
    url: String,
    writer: crate::store::Writer,
    wake: Arc<Notify>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let forward = tokio::spawn(async move {
                    let mut messages =
                        futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(Ok(m)) = messages.next().await {
                        if let AsyncMessage::Notification(n) = m {
                            let _ = tx.send(n.channel() == "opsdeck_work");
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
                    writer.tail();
                    wake.notify_one();
                    loop {
                        tokio::select! {
                            () = shutdown.cancelled() => {
                                forward.abort();
                                return;
                            }
                            msg = rx.recv() => match msg {
                                Some(true) => wake.notify_one(),
                                Some(false) => writer.tail(),
                                None => break,
                            }
                        }
                    }
                }
                forward.abort();
                tracing::warn!("lost the store's notifications; listening again");
            }
            Err(e) => {
                tracing::warn!(error = %crate::store::db::pg_message(&e), "cannot listen for the store's notifications");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
