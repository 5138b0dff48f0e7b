//! Several workers on one PostgreSQL store. The database is the coordinator: each worker keeps
//! a row with a lease it renews; a run belongs to the worker in its `owner` column, which
//! claims it with `FOR UPDATE SKIP LOCKED` (so two workers never take the same run) and alone
//! drives it; a worker whose lease ran out has its runs interrupted and let go, for others to
//! claim and resume. Times are the database's clock, so workers' clocks need not agree.

use super::db::{Db, Val, args};
use super::queries::{LoadedRun, START_COLUMNS, run_start};
use super::recovery::{Orphan, interrupt_owned, let_go_stranded};
use super::{Result, StoreError};
use crate::model::{RunId, RunStatus, Timestamp, WorkerInfo};

/// Runs `f` in a transaction whose commit does not wait for the disk: for bookkeeping whose
/// loss in a database crash harms nothing, because whatever relies on it is committed later,
/// durably, and a durable commit writes everything logged before it.
pub(crate) fn quick<T>(db: &mut Db, f: impl FnOnce(&mut Db) -> Result<T>) -> Result<T> {
    db.transaction(|tx| {
        tx.execute("SET LOCAL synchronous_commit = off", &[])?;
        f(tx)
    })
}

/// Milliseconds since the epoch by the database's clock.
const NOW_MS: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

/// Adds (or renews) this worker's row with a lease of `lease_ms`.
pub fn register(db: &mut Db, w: &WorkerInfo, lease_ms: u64) -> Result<()> {
    db.execute(
        &format!(
            "INSERT INTO workers (id, host, pid, address, started_at, heartbeat_ms, lease_until_ms, max_in_flight)
             VALUES (?1, ?2, ?3, ?4, ?5, {NOW_MS}, {NOW_MS} + ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET address = excluded.address, heartbeat_ms = excluded.heartbeat_ms,
               lease_until_ms = excluded.lease_until_ms, max_in_flight = excluded.max_in_flight"
        ),
        args![
            w.id.as_str(),
            w.host.as_str(),
            w.pid,
            w.address.as_deref(),
            w.started_at.to_string(),
            lease_ms,
            w.max_in_flight
        ],
    )?;
    Ok(())
}

/// Renews the lease; false when the row is gone (the lease ran out and another worker took
/// this one's runs).
pub fn heartbeat(db: &mut Db, id: &str, lease_ms: u64) -> Result<bool> {
    quick(db, |db| {
        Ok(!db
        .rows(
            &format!(
                "UPDATE workers SET heartbeat_ms = {NOW_MS}, lease_until_ms = {NOW_MS} + ?2 WHERE id = ?1 RETURNING id"
            ),
            args![id, lease_ms],
        )?
        .is_empty())
    })
}

/// A worker whose lease ran out, and what was taken from it.
#[derive(Debug)]
pub struct Reaped {
    pub worker: String,
    /// The machine it ran on, when its row was still there.
    pub host: Option<String>,
    pub runs: Vec<RunId>,
    /// The processes that ran its attempts in flight (killed by a worker on the same machine).
    pub orphans: Vec<Orphan>,
}

/// Interrupts and lets go the runs of every worker whose lease ran out (and of owners with no
/// row at all), and removes those workers. A worker's row is held by each of its writes (its
/// fence) and skipped here meanwhile: no write of a worker lands after its runs moved.
pub fn reap(db: &mut Db, now: Timestamp) -> Result<Vec<Reaped>> {
    db.transaction(|tx| {
        let mut dead: Vec<(String, Option<String>)> = tx
            .rows(
                &format!("SELECT id, host FROM workers WHERE lease_until_ms < {NOW_MS} FOR UPDATE SKIP LOCKED"),
                &[],
            )?
            .into_iter()
            .map(|mut r| Ok((r.text(0)?, Some(r.text(1)?))))
            .collect::<Result<_>>()?;
        for mut r in tx.rows(
            "SELECT DISTINCT owner FROM runs WHERE owner IS NOT NULL AND status IN ('pending', 'running')
             AND owner NOT IN (SELECT id FROM workers)",
            &[],
        )? {
            let owner = r.text(0)?;
            if !dead.iter().any(|(w, _)| *w == owner) {
                dead.push((owner, None));
            }
        }
        let mut out = Vec::new();
        for (worker, host) in dead {
            let (runs, orphans) = interrupt_owned(tx, &worker, now)?;
            tx.execute("DELETE FROM workers WHERE id = ?1", args![worker.as_str()])?;
            out.push(Reaped {
                worker,
                host,
                runs,
                orphans,
            });
        }
        Ok(out)
    })
}

/// Comes back as a worker after losing the lease (cut off from the store for longer than it,
/// or found reaped): whatever runs it still owns are interrupted and let go, as a dead
/// worker's are, and its row is made again. Returns those runs.
pub fn rejoin(db: &mut Db, w: &WorkerInfo, lease_ms: u64, now: Timestamp) -> Result<Vec<RunId>> {
    db.transaction(|tx| {
        let (runs, _) = interrupt_owned(tx, &w.id, now)?;
        register(tx, w, lease_ms)?;
        Ok(runs)
    })
}

/// A run a worker has just claimed.
pub struct Claimed {
    pub id: RunId,
    pub status: RunStatus,
    /// The cancellation asked of it while no worker drove it, if any (the claim takes it: the
    /// claimer cancels the run instead of starting it).
    pub cancel: Option<String>,
    /// A run no driver has started yet (`pending`: every stage pending, no attempt), as its
    /// driver starts from it: read with the claim, so that starting it reads nothing more.
    pub unstarted: Option<LoadedRun>,
}

/// Claims up to `n` runs no worker owns that are waiting to start or to be resumed; none while
/// `me` holds no lease (its row gone: the others took its runs, and it is fenced off).
///
/// One statement on its own, as the claimer sends it (see [`super::Claimer`]): a claim sits
/// between a freed slot and the next run's start, and the server works through one message
/// where a transaction of its own took five. Its commit is durable, as the writer's are: the
/// run may begin work as soon as the claim answers, so a database crash must not lose it (a
/// claim whose commit waited for no flush took no less time in the benchmark). `me`'s row is
/// share-locked as the fence's is, so a worker declared dead at that moment either claims
/// before its runs are taken or claims nothing. Oldest first, in id order.
pub fn claim(db: &mut Db, me: &str, n: usize) -> Result<Vec<Claimed>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    db.rows(
        &format!(
            "WITH me AS (SELECT id FROM workers WHERE id = ?1 FOR KEY SHARE),
             taken AS (
                SELECT r.id, r.cancel_requested FROM runs r, me
                WHERE r.owner IS NULL AND r.status IN ('pending', 'interrupted')
                ORDER BY r.id LIMIT ?2 FOR UPDATE OF r SKIP LOCKED)
             UPDATE runs r SET owner = ?1, cancel_requested = NULL FROM taken WHERE r.id = taken.id
             RETURNING r.id, r.status, taken.cancel_requested, {START_COLUMNS}"
        ),
        args![me, n],
    )?
    .into_iter()
    .map(claimed)
    .collect::<Result<Vec<_>>>()
    .map(|mut runs| {
        // `RETURNING` promises no order.
        runs.sort_by_key(|r| r.id);
        runs
    })
}

/// A run as [`claim`] claimed it.
pub(super) fn claimed(mut r: super::db::Row) -> Result<Claimed> {
    let text = r.text(1)?;
    let status: RunStatus = text.parse().map_err(|_| {
        StoreError(format!(
            "the state database holds an unknown status `{text}`"
        ))
    })?;
    Ok(Claimed {
        id: RunId(r.i64(0)?),
        status,
        cancel: r.opt_text(2)?,
        // Unreadable, it is read again at the start, which says what is wrong.
        unstarted: (status == RunStatus::Pending)
            .then(|| run_start(&mut r, 3, Vec::new()).ok())
            .flatten(),
    })
}

/// Takes run `id` for `me` unless a live worker owns it; false if one does.
pub fn claim_one(db: &mut Db, me: &str, id: RunId) -> Result<bool> {
    quick(db, |db| {
        Ok(!db
            .rows(
                "UPDATE runs SET owner = ?1 WHERE id = ?2
               AND (owner IS NULL OR owner = ?1 OR owner NOT IN (SELECT id FROM workers))
             RETURNING id",
                args![me, id.0],
            )?
            .is_empty())
    })
}

/// The live worker that owns run `id`, if another one does.
pub fn owner(db: &mut Db, me: &str, id: RunId) -> Result<Option<String>> {
    db.row(
        "SELECT owner FROM runs WHERE id = ?1 AND owner <> ?2 AND owner IN (SELECT id FROM workers)",
        args![id.0, me],
    )?
    .map(|mut r| r.text(0))
    .transpose()
}

/// At most this many of a worker's idle runs are looked at per look (the rest at the next).
const IDLE_PER_LOOK: usize = 100;

/// The unfinished runs (pending, running or interrupted) `me` owns other than those it drives
/// (`driving`): runs it holds in the store with no driver, if they stay that way (see
/// [`release_stranded`]).
pub fn owned_idle(db: &mut Db, me: &str, driving: &[RunId]) -> Result<Vec<RunId>> {
    let driving = Val::List(driving.iter().map(|id| Val::Int(id.0)).collect());
    db.rows(
        "SELECT id FROM runs WHERE owner = ?1 AND status IN ('pending', 'running', 'interrupted')
           AND NOT (id = ANY(CAST(?2 AS bigint[]))) ORDER BY id LIMIT ?3",
        args![me, driving, IDLE_PER_LOOK],
    )?
    .into_iter()
    .map(|mut r| Ok(RunId(r.i64(0)?)))
    .collect()
}

/// Lets go those of `runs` that `me` still owns unfinished (interrupting those pending or
/// running), for any worker to claim and resume (see [`let_go_stranded`]), behind `me`'s fence
/// as every write of a worker. Returns those let go.
pub fn release_stranded(
    db: &mut Db,
    me: &str,
    runs: &[RunId],
    now: Timestamp,
) -> Result<Vec<RunId>> {
    db.transaction(|tx| {
        super::writer::fence_pass(tx, me)?;
        let_go_stranded(tx, me, runs, now)
    })
}

/// Lets go every run `me` owns and removes its row: a worker stopping on purpose.
pub fn release(db: &mut Db, me: &str) -> Result<()> {
    db.transaction(|tx| {
        tx.execute("UPDATE runs SET owner = NULL WHERE owner = ?1", args![me])?;
        tx.execute("DELETE FROM workers WHERE id = ?1", args![me])?;
        tx.execute("SELECT pg_notify('opsdeck_work', '')", &[])?;
        Ok(())
    })
}

/// Where a cancellation of a run asked of a worker is carried out.
#[derive(Debug, PartialEq, Eq)]
pub enum CancelAt {
    /// By the worker asked: the run is its own now (no live worker drove it), so no other
    /// claims and starts it meanwhile.
    Here,
    /// By the live worker that drives it, asked through the store (and woken).
    Worker(String),
    /// Nowhere: the run has finished (or there is none).
    Finished,
}

/// Takes run `id` for `me` to cancel it, or asks the live worker that drives it to. Only an
/// unfinished run is taken or asked about: a request left on a finished run would cancel its
/// retry.
pub fn take_to_cancel(db: &mut Db, me: &str, id: RunId, reason: &str) -> Result<CancelAt> {
    db.transaction(|tx| {
        let taken = tx.rows(
            "UPDATE runs SET owner = ?1 WHERE id = ?2 AND status IN ('pending', 'running', 'interrupted')
               AND (owner IS NULL OR owner = ?1 OR owner NOT IN (SELECT id FROM workers))
             RETURNING id",
            args![me, id.0],
        )?;
        if !taken.is_empty() {
            return Ok(CancelAt::Here);
        }
        let asked = tx.rows(
            "UPDATE runs SET cancel_requested = ?2
             WHERE id = ?1 AND status IN ('pending', 'running', 'interrupted')
             RETURNING owner",
            args![id.0, reason],
        )?;
        let Some(mut row) = asked.into_iter().next() else {
            return Ok(CancelAt::Finished);
        };
        tx.execute("SELECT pg_notify('opsdeck_work', 'cancel')", &[])?;
        Ok(CancelAt::Worker(
            row.opt_text(0)?
                .unwrap_or_else(|| "another worker".into()),
        ))
    })
}

/// Lets go of run `id`, taken by `me` to cancel it, when the cancel could not be written: for
/// another worker to claim.
pub fn let_go(db: &mut Db, me: &str, id: RunId) -> Result<()> {
    db.transaction(|tx| {
        tx.execute(
            "UPDATE runs SET owner = NULL WHERE id = ?1 AND owner = ?2",
            args![id.0, me],
        )?;
        tx.execute("SELECT pg_notify('opsdeck_work', '')", &[])?;
        Ok(())
    })
}

/// The cancellations asked of `me`'s runs, taken (each is handed over once).
pub fn take_cancels(db: &mut Db, me: &str) -> Result<Vec<(RunId, String)>> {
    // Nothing asked (almost always): a read, no commit to wait for.
    if db
        .row(
            "SELECT 1 FROM runs WHERE owner = ?1 AND cancel_requested IS NOT NULL LIMIT 1",
            args![me],
        )?
        .is_none()
    {
        return Ok(Vec::new());
    }
    db.rows(
        "WITH asked AS (SELECT id, cancel_requested FROM runs
                        WHERE owner = ?1 AND cancel_requested IS NOT NULL FOR UPDATE)
         UPDATE runs r SET cancel_requested = NULL FROM asked WHERE r.id = asked.id
         RETURNING r.id, asked.cancel_requested",
        args![me],
    )?
    .into_iter()
    .map(|mut r| Ok((RunId(r.i64(0)?), r.text(1)?)))
    .collect()
}

/// Every worker with a row, oldest first.
pub fn list(db: &mut Db) -> Result<Vec<WorkerInfo>> {
    db.rows(
        &format!(
            "SELECT id, host, pid, address, started_at, {NOW_MS} - heartbeat_ms, lease_until_ms - {NOW_MS},
                max_in_flight,
                (SELECT COUNT(*) FROM runs r WHERE r.owner = w.id AND r.status IN ('pending', 'running'))
             FROM workers w ORDER BY started_at, id"
        ),
        &[],
    )?
    .into_iter()
    .map(|mut r| {
        Ok(WorkerInfo {
            id: r.text(0)?,
            host: r.text(1)?,
            pid: u32::try_from(r.i64(2)?).unwrap_or_default(),
            address: r.opt_text(3)?,
            started_at: Timestamp::parse(&r.text(4)?)
                .unwrap_or_else(|_| Timestamp::from_millis(0)),
            heartbeat_age_ms: r.i64(5)?.max(0).unsigned_abs(),
            lease_left_ms: r.i64(6)?,
            max_in_flight: r.u32(7)?,
            runs: r.u32(8)?,
        })
    })
    .collect()
}

/// Takes schedule tick `tick` of `pipeline` for this worker: true for exactly one worker.
/// Ticks older than an hour before it are forgotten.
pub fn claim_tick(db: &mut Db, pipeline: &str, tick: &str, hour_before: &str) -> Result<bool> {
    db.execute(
        "DELETE FROM schedule_fires WHERE pipeline = ?1 AND tick < ?2",
        args![pipeline, hour_before],
    )?;
    Ok(!db
        .rows(
            "INSERT INTO schedule_fires (pipeline, tick) VALUES (?1, ?2) ON CONFLICT DO NOTHING RETURNING tick",
            args![pipeline, tick],
        )?
        .is_empty())
}

/// The newest scheduled run of `pipeline` that has not finished, whichever worker runs it.
pub fn unfinished_scheduled(db: &mut Db, pipeline: &str) -> Result<Option<RunId>> {
    db.row(
        "SELECT id FROM runs WHERE pipeline = ?1 AND trigger = 'schedule'
           AND status IN ('pending', 'running', 'interrupted') ORDER BY id DESC LIMIT 1",
        args![pipeline],
    )?
    .map(|mut r| Ok(RunId(r.i64(0)?)))
    .transpose()
}

/// Most seconds of other workers' canary traffic taken at once.
const CANARY_SECONDS_TAKEN: usize = 10_000;

/// Takes the seconds of canary traffic other workers' proxies saw (each is taken once, by the
/// worker that drives the canaries): (canary, second, version, saved totals JSON).
pub fn take_canary_seconds(db: &mut Db) -> Result<Vec<(String, i64, String, String)>> {
    db.rows(
        "DELETE FROM canary_seconds WHERE id IN (SELECT id FROM canary_seconds ORDER BY id LIMIT ?1)
         RETURNING canary, sec, version, totals",
        args![CANARY_SECONDS_TAKEN],
    )?
    .into_iter()
    .map(|mut r| Ok((r.text(0)?, r.i64(1)?, r.text(2)?, r.text(3)?)))
    .collect()
}

/// Records where `me` serves its API.
pub fn set_address(db: &mut Db, me: &str, address: &str) -> Result<()> {
    db.execute(
        "UPDATE workers SET address = ?2 WHERE id = ?1",
        args![me, address],
    )?;
    Ok(())
}
