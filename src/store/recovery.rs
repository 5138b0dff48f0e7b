//! Recovery after a host died: whoever next opens the store while no host holds the workspace
//! lock marks the dead host's runs `interrupted`, so they are never left looking alive.

use serde_json::json;

use super::Result;
use super::db::{Db, Dialect, Val, args};
use super::writer::{NewEvent, insert_event, max_seq, seq_block};
use crate::model::{EventKind, RunId, Timestamp};

/// A process that was running an attempt when its host died; it may still be running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Orphan {
    pub pid: i64,
    /// The process's start time as the kernel reports it, to avoid killing a reused pid.
    pub pid_start: Option<i64>,
}

/// Marks pending and running runs `interrupted`: in-flight attempts become `interrupted`,
/// stages whose latest attempt had already succeeded become `succeeded` (so they are not run
/// again), and other in-flight stages become `interrupted`. Must only be called while holding
/// the workspace lock with no writer thread running.
pub fn mark_interrupted(db: &mut Db, now: Timestamp) -> Result<(Vec<RunId>, Vec<Orphan>)> {
    db.transaction(|tx| {
        let runs = ids(tx.rows(
            "SELECT id FROM runs WHERE status IN ('pending', 'running') ORDER BY id",
            &[],
        )?)?;
        let orphans = interrupt(
            tx,
            &runs,
            now,
            "the process that hosted this run stopped before it finished",
        )?;
        Ok((runs, orphans))
    })
}

/// [`mark_interrupted`] for the runs a dead worker owned (PostgreSQL, several workers): they
/// are let go (no owner), so another worker claims and resumes them. Returns them, and the
/// processes that were running their attempts.
pub fn interrupt_owned(
    tx: &mut Db,
    worker: &str,
    now: Timestamp,
) -> Result<(Vec<RunId>, Vec<Orphan>)> {
    let runs = ids(tx.rows(
        "SELECT id FROM runs WHERE owner = ?1 AND status IN ('pending', 'running') ORDER BY id FOR UPDATE",
        args![worker],
    )?)?;
    let orphans = interrupt(
        tx,
        &runs,
        now,
        &format!("worker {worker}, which ran it, stopped renewing its lease"),
    )?;
    tx.execute(
        "UPDATE runs SET owner = NULL WHERE owner = ?1",
        args![worker],
    )?;
    // Other workers claim them now rather than at their next look.
    tx.execute("SELECT pg_notify('opsdeck_work', '')", &[])?;
    Ok((runs, orphans))
}

/// Lets go those of `runs` that live worker `worker` holds unfinished although it no longer
/// drives them: a claim committed whose answer never reached the worker (its connection broke
/// at the commit), a resume that failed after taking its run, or a run whose end could not be
/// recorded. Nobody else would ever take them while the worker keeps its lease. Pending and
/// running ones are interrupted first, as a dead worker's are; then any worker claims and
/// resumes them (finished stages kept). Returns the runs let go.
pub fn let_go_stranded(
    tx: &mut Db,
    worker: &str,
    runs: &[RunId],
    now: Timestamp,
) -> Result<Vec<RunId>> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let among = Val::List(runs.iter().map(|id| Val::Int(id.0)).collect());
    let mut held = Vec::new();
    let mut to_interrupt = Vec::new();
    for mut r in tx.rows(
        "SELECT id, status FROM runs WHERE owner = ?1 AND id = ANY(CAST(?2 AS bigint[]))
           AND status IN ('pending', 'running', 'interrupted') ORDER BY id FOR UPDATE",
        args![worker, among],
    )? {
        let id = RunId(r.i64(0)?);
        if r.text(1)? != "interrupted" {
            to_interrupt.push(id);
        }
        held.push(id);
    }
    if held.is_empty() {
        return Ok(held);
    }
    interrupt(
        tx,
        &to_interrupt,
        now,
        &format!(
            "worker {worker} held it without driving it (a start or an end it could not record)"
        ),
    )?;
    tx.execute(
        "UPDATE runs SET owner = NULL WHERE id = ANY(CAST(?1 AS bigint[]))",
        args![Val::List(held.iter().map(|id| Val::Int(id.0)).collect())],
    )?;
    tx.execute("SELECT pg_notify('opsdeck_work', '')", &[])?;
    Ok(held)
}

fn ids(rows: Vec<super::db::Row>) -> Result<Vec<RunId>> {
    rows.into_iter().map(|mut r| Ok(RunId(r.i64(0)?))).collect()
}

/// Interrupts `runs` (inside the caller's transaction): their attempts in flight, their
/// stages, the runs, and an event each. Returns the processes that were running attempts.
fn interrupt(tx: &mut Db, runs: &[RunId], now: Timestamp, reason: &str) -> Result<Vec<Orphan>> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let elapsed = match tx.dialect() {
        Dialect::Sqlite => {
            "MAX(0, CAST((julianday(?2) - julianday(started_at)) * 86400000 AS INTEGER))"
        }
        Dialect::Postgres => {
            "GREATEST(0, CAST(EXTRACT(EPOCH FROM (CAST(CAST(?2 AS TEXT) AS timestamptz) - CAST(started_at AS timestamptz))) * 1000 AS BIGINT))"
        }
    };
    let mut orphans = Vec::new();
    for run in runs {
        for mut r in tx.rows(
            "SELECT pid, pid_start FROM attempts WHERE run_id = ?1 AND status = 'running' AND pid IS NOT NULL",
            args![run.0],
        )? {
            orphans.push(Orphan {
                pid: r.i64(0)?,
                pid_start: r.opt_i64(1)?,
            });
        }
    }
    let next = max_seq(tx)? + 1;
    let mut seq = seq_block(tx, runs.len(), next)? - 1;
    for run in runs {
        tx.execute(
            &format!(
                "UPDATE attempts SET status = 'interrupted', finished_at = ?2, duration_ms = {elapsed},
                    error_code = 'interrupted', error_message = 'the host stopped during this attempt'
                 WHERE run_id = ?1 AND status = 'running'"
            ),
            args![run.0, now.to_string()],
        )?;
        tx.execute(
            "UPDATE stages SET status = 'succeeded'
             WHERE run_id = ?1 AND status IN ('pending', 'running', 'retrying') AND EXISTS (
                SELECT 1 FROM attempts a WHERE a.run_id = stages.run_id AND a.stage_id = stages.stage_id
                  AND a.status = 'succeeded'
                  AND a.n = (SELECT MAX(n) FROM attempts b WHERE b.run_id = a.run_id AND b.stage_id = a.stage_id))",
            args![run.0],
        )?;
        tx.execute(
            "UPDATE stages SET status = 'interrupted' WHERE run_id = ?1 AND status IN ('running', 'retrying')",
            args![run.0],
        )?;
        tx.execute(
            "UPDATE runs SET status = 'interrupted', finished_at = NULL WHERE id = ?1",
            args![run.0],
        )?;
        seq += 1;
        insert_event(
            tx,
            seq,
            &NewEvent {
                at: now,
                kind: EventKind::RunInterrupted,
                run_id: Some(*run),
                stage: None,
                data: json!({ "reason": reason }),
            },
        )?;
    }
    Ok(orphans)
}
