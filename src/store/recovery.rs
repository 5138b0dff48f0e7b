//! Recovery after a host died: whoever next opens the store while no host holds the workspace
//! lock marks the dead host's runs `interrupted`, so they are never left looking alive.

use serde_json::json;

use super::Result;
use super::db::{Db, Dialect, args};
use super::writer::{NewEvent, insert_event, max_seq};
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
    let elapsed = match db.dialect() {
        Dialect::Sqlite => {
            "MAX(0, CAST((julianday(?1) - julianday(started_at)) * 86400000 AS INTEGER))"
        }
        Dialect::Postgres => {
            "GREATEST(0, CAST(EXTRACT(EPOCH FROM (CAST(CAST(?1 AS TEXT) AS timestamptz) - CAST(started_at AS timestamptz))) * 1000 AS BIGINT))"
        }
    };
    db.transaction(|tx| {
        let runs = tx
            .rows(
                "SELECT id FROM runs WHERE status IN ('pending', 'running') ORDER BY id",
                &[],
            )?
            .into_iter()
            .map(|mut r| Ok(RunId(r.i64(0)?)))
            .collect::<Result<Vec<_>>>()?;
        if runs.is_empty() {
            return Ok((runs, Vec::new()));
        }
        let orphans = tx
            .rows(
                "SELECT pid, pid_start FROM attempts WHERE status = 'running' AND pid IS NOT NULL",
                &[],
            )?
            .into_iter()
            .map(|mut r| {
                Ok(Orphan {
                    pid: r.i64(0)?,
                    pid_start: r.opt_i64(1)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        tx.execute(
            &format!(
                "UPDATE attempts SET status = 'interrupted', finished_at = ?1, duration_ms = {elapsed},
                    error_code = 'interrupted', error_message = 'the host stopped during this attempt'
                 WHERE status = 'running'"
            ),
            args![now.to_string()],
        )?;
        let mut seq = max_seq(tx)?;
        for run in &runs {
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
                    data: json!({"reason": "the process that hosted this run stopped before it finished"}),
                },
            )?;
        }
        Ok((runs, orphans))
    })
}
