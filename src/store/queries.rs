//! Read queries. A [`Reader`] is one read-only connection for synchronous callers (the CLI);
//! a [`ReadPool`] lends connections to async callers on the blocking thread pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

use super::{Result, StoreError, connect};
use crate::model::{
    Attempt, AttemptError, AuditQuery, AuditRecord, DlqEntry, DlqId, DlqQuery, Event,
    MAX_AUDIT_LIMIT, MAX_DLQ_LIMIT, Page, Run, RunId, RunQuery, RunSort, RunStatus, RunSummary,
    StageIo, StageRecord, StageStatus, Timestamp, Trigger,
};

/// One read connection.
pub struct Reader {
    pub(super) conn: Connection,
}

/// What a driver needs to continue a run: its definition as started, its params, and each
/// stage's status, attempt count and latest successful output.
pub struct LoadedRun {
    pub status: RunStatus,
    pub spec: String,
    pub params: Value,
    pub started_at: Option<Timestamp>,
    pub stages: Vec<(String, StageStatus, u32, Option<Value>)>,
    /// Each stage's asset versions (by stage id, then asset name).
    pub assets: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u32>>,
    /// For an isolated stage test: the input its one stage gets.
    pub test_input: Option<Value>,
}

pub(super) fn ts(s: Option<String>) -> Option<Timestamp> {
    s.and_then(|s| Timestamp::parse(&s).ok())
}

fn json(s: Option<String>) -> Option<Value> {
    s.map(|s| serde_json::from_str(&s).unwrap_or(Value::String(s)))
}

pub(super) fn parse_status<T: std::str::FromStr>(s: &str) -> rusqlite::Result<T> {
    s.parse().map_err(|_| {
        rusqlite::Error::InvalidColumnType(0, format!("status `{s}`"), rusqlite::types::Type::Text)
    })
}

fn duration(start: Option<Timestamp>, end: Option<Timestamp>) -> Option<i64> {
    Some(end?.millis_since(start?))
}

const SUMMARY_COLUMNS: &str = "r.id, r.pipeline, r.status, r.trigger, r.created_at, r.started_at, r.finished_at, r.stages_total, r.test,
    (SELECT COUNT(*) FROM stages s WHERE s.run_id = r.id AND s.status IN ('succeeded','failed','skipped','cancelled')),
    (SELECT COUNT(*) FROM stages s WHERE s.run_id = r.id AND s.status = 'succeeded'),
    (SELECT COUNT(*) FROM stages s WHERE s.run_id = r.id AND s.status = 'failed')";

fn summary(row: &Row<'_>) -> rusqlite::Result<RunSummary> {
    let started_at = ts(row.get(5)?);
    let finished_at = ts(row.get(6)?);
    Ok(RunSummary {
        id: RunId(row.get(0)?),
        pipeline: row.get(1)?,
        status: parse_status(&row.get::<_, String>(2)?)?,
        trigger: Trigger::parse(&row.get::<_, String>(3)?),
        created_at: ts(row.get(4)?).unwrap_or(Timestamp::from_millis(0)),
        started_at,
        finished_at,
        duration_ms: duration(started_at, finished_at),
        stages_total: row.get(7)?,
        test: row.get(8)?,
        stages_done: row.get(9)?,
        stages_succeeded: row.get(10)?,
        stages_failed: row.get(11)?,
    })
}

/// Reads an attempt whose [`ATTEMPT_COLUMNS`] start at column `at`.
fn attempt_at(row: &Row<'_>, at: usize) -> rusqlite::Result<Attempt> {
    let code: Option<String> = row.get(at + 10)?;
    let message: Option<String> = row.get(at + 11)?;
    let assets: Option<String> = row.get(at + 12)?;
    Ok(Attempt {
        n: row.get(at)?,
        status: parse_status(&row.get::<_, String>(at + 1)?)?,
        started_at: ts(row.get(at + 2)?).unwrap_or(Timestamp::from_millis(0)),
        finished_at: ts(row.get(at + 3)?),
        duration_ms: row.get(at + 4)?,
        input: json(row.get(at + 5)?).unwrap_or(Value::Null),
        output: json(row.get(at + 6)?),
        output_truncated: row.get(at + 7)?,
        output_bytes: row.get::<_, Option<i64>>(at + 8)?.map(|b| b as u64),
        stderr: row.get(at + 9)?,
        error: code.map(|code| AttemptError {
            code,
            message: message.unwrap_or_default(),
        }),
        assets: assets
            .and_then(|a| serde_json::from_str(&a).ok())
            .unwrap_or_default(),
    })
}

const ATTEMPT_COLUMNS: &str =
    "n, status, started_at, finished_at, duration_ms, input, output, output_truncated,
    output_bytes, stderr, error_code, error_message, assets";

fn dlq_entry(row: &Row<'_>) -> rusqlite::Result<DlqEntry> {
    Ok(DlqEntry {
        id: DlqId(row.get(0)?),
        run_id: RunId(row.get(1)?),
        pipeline: row.get(2)?,
        stage: row.get(3)?,
        attempts: row.get(4)?,
        input: json(row.get(5)?).unwrap_or(Value::Null),
        error: AttemptError {
            code: row.get(6)?,
            message: row.get(7)?,
        },
        created_at: ts(row.get(8)?).unwrap_or(Timestamp::from_millis(0)),
    })
}

const DLQ_COLUMNS: &str =
    "id, run_id, pipeline, stage_id, attempts, input, error_code, error_message, created_at";
/// The same without the input (a list's rows stay small however large the inputs).
const DLQ_LIST_COLUMNS: &str =
    "id, run_id, pipeline, stage_id, attempts, 'null', error_code, error_message, created_at";

fn event(row: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        seq: row.get::<_, i64>(0)? as u64,
        at: ts(row.get(1)?).unwrap_or(Timestamp::from_millis(0)),
        kind: parse_status(&row.get::<_, String>(2)?)?,
        run_id: row.get::<_, Option<i64>>(3)?.map(RunId),
        stage: row.get(4)?,
        data: json(row.get(5)?).unwrap_or(Value::Null),
    })
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader> {
        Ok(Reader {
            conn: connect(path, false)?,
        })
    }

    /// A reader on an empty in-memory store with the current schema.
    pub fn empty() -> Result<Reader> {
        let mut conn = Connection::open_in_memory()?;
        super::schema::migrate(&mut conn)?;
        Ok(Reader { conn })
    }

    /// One page of runs, filtered and sorted, with the number of matching runs. With the
    /// default newest-first order the cursor is the last id of the page.
    pub fn runs(&self, q: &RunQuery) -> Result<Page<RunSummary>> {
        self.runs_counted(q, None)
    }

    /// [`Reader::runs`], taking the number of matching runs from `counts` when it was counted
    /// at the same store generation (counting 100,000 rows costs more than the page itself).
    pub fn runs_counted(
        &self,
        q: &RunQuery,
        counts: Option<(&CountCache, u64)>,
    ) -> Result<Page<RunSummary>> {
        let limit = q.limit.clamp(1, 10_000);
        // Only the filters actually given go into the SQL, so SQLite can use its indexes and
        // its fast COUNT(*) instead of evaluating catch-all conditions on every row.
        let mut conds: Vec<&str> = vec![if q.tests { "r.test = 1" } else { "r.test = 0" }];
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(p) = &q.pipeline {
            conds.push("r.pipeline = ?");
            args.push(p.clone().into());
        }
        if let Some(st) = q.status {
            conds.push("r.status = ?");
            args.push(st.as_str().to_string().into());
        }
        if let Some(t) = &q.text {
            let pattern = format!(
                "%{}%",
                t.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            conds.push("(r.pipeline LIKE ? ESCAPE '\\' OR CAST(r.id AS TEXT) = ?)");
            args.push(pattern.into());
            args.push(t.clone().into());
        }
        let filter = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        let key = format!("{filter} {args:?}");
        let total = match counts.and_then(|(c, g)| c.get(&key, g)) {
            Some(n) => n,
            None => {
                let n: i64 = self
                    .conn
                    .prepare_cached(&format!("SELECT COUNT(*) FROM runs r {filter}"))?
                    .query_row(rusqlite::params_from_iter(args.iter()), |r| r.get(0))?;
                if let Some((c, g)) = counts {
                    c.put(key, g, n);
                }
                n
            }
        };

        let order = match q.sort {
            RunSort::Newest => "r.id DESC",
            RunSort::Oldest => "r.id ASC",
            RunSort::Longest => {
                "(COALESCE(julianday(r.finished_at), julianday('now')) - julianday(COALESCE(r.started_at, r.created_at))) DESC, r.id DESC"
            }
            RunSort::Pipeline => "r.pipeline ASC, r.id DESC",
        };
        let mut page_conds = conds.clone();
        let mut page_args = args.clone();
        if q.sort == RunSort::Newest
            && let Some(before) = q.before
        {
            page_conds.push("r.id < ?");
            page_args.push(before.0.into());
        }
        let page_filter = if page_conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", page_conds.join(" AND "))
        };
        page_args.push((limit as i64 + 1).into());
        page_args.push((q.offset as i64).into());
        // First the ids of the page (a walk of an index), then the summaries of those rows
        // only: rows skipped by OFFSET never pay for the per-row stage counts.
        let ids: Vec<i64> = self
            .conn
            .prepare_cached(&format!(
                "SELECT r.id FROM runs r {page_filter} ORDER BY {order} LIMIT ? OFFSET ?"
            ))?
            .query_map(rusqlite::params_from_iter(page_args.iter()), |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let more = ids.len() > limit;
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM runs r WHERE r.id = ?1"
        ))?;
        let mut items = Vec::with_capacity(limit);
        for id in ids.into_iter().take(limit) {
            items.push(stmt.query_row(params![id], summary)?);
        }
        let next = if more && q.sort == RunSort::Newest {
            items.last().map(|r| r.id)
        } else {
            None
        };
        Ok(Page {
            items,
            next,
            total: total as u64,
        })
    }

    /// The last event's sequence number (0 when the log is empty).
    pub fn last_seq(&self) -> Result<u64> {
        let seq: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
        Ok(seq as u64)
    }

    pub fn dlq_depth(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM dlq", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    pub fn run_summary(&self, id: RunId) -> Result<Option<RunSummary>> {
        let sql = format!("SELECT {SUMMARY_COLUMNS} FROM runs r WHERE r.id = ?1");
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![id.0], summary)
            .optional()?)
    }

    pub fn run(&self, id: RunId) -> Result<Option<Run>> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT id, pipeline, status, trigger, params, created_at, started_at, finished_at, overrides, test FROM runs WHERE id = ?1",
            )?
            .query_row(params![id.0], |r| {
                Ok((
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    (r.get::<_, String>(8)?, r.get::<_, bool>(9)?),
                ))
            })
            .optional()?;
        let Some((
            pipeline,
            status,
            trigger,
            params_text,
            created,
            started,
            finished,
            (overrides, test),
        )) = row
        else {
            return Ok(None);
        };
        let mut stages: Vec<StageRecord> = self
            .conn
            .prepare_cached(
                "SELECT stage_id, kind, needs, status FROM stages WHERE run_id = ?1 ORDER BY ord",
            )?
            .query_map(params![id.0], |r| {
                Ok(StageRecord {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    needs: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default(),
                    status: parse_status(&r.get::<_, String>(3)?)?,
                    attempts: Vec::new(),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let sql = format!(
            "SELECT stage_id, {ATTEMPT_COLUMNS} FROM attempts WHERE run_id = ?1 ORDER BY stage_id, n"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params![id.0])?;
        while let Some(row) = rows.next()? {
            let stage_id: String = row.get(0)?;
            let a = attempt_at(row, 1)?;
            if let Some(s) = stages.iter_mut().find(|s| s.id == stage_id) {
                s.attempts.push(a);
            }
        }
        let started_at = ts(started);
        let finished_at = ts(finished);
        Ok(Some(Run {
            id,
            pipeline,
            status: parse_status(&status)?,
            trigger: Trigger::parse(&trigger),
            params: serde_json::from_str(&params_text)?,
            created_at: ts(Some(created)).unwrap_or(Timestamp::from_millis(0)),
            started_at,
            finished_at,
            duration_ms: duration(started_at, finished_at),
            stages,
            overrides: serde_json::from_str(&overrides).unwrap_or_default(),
            test,
        }))
    }

    pub fn stage_io(&self, id: RunId, stage: &str) -> Result<Option<StageIo>> {
        let head = self
            .conn
            .prepare_cached(
                "SELECT r.pipeline, s.status FROM stages s JOIN runs r ON r.id = s.run_id WHERE s.run_id = ?1 AND s.stage_id = ?2",
            )?
            .query_row(params![id.0, stage], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .optional()?;
        let Some((pipeline, status)) = head else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE run_id = ?1 AND stage_id = ?2 ORDER BY n"
        );
        let attempts = self
            .conn
            .prepare_cached(&sql)?
            .query_map(params![id.0, stage], |r| attempt_at(r, 0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Some(StageIo {
            run_id: id,
            pipeline,
            stage: stage.to_string(),
            status: parse_status(&status)?,
            attempts,
        }))
    }

    /// The stage ids of a run, in definition order (to name the valid choices in errors).
    pub fn stage_ids(&self, id: RunId) -> Result<Vec<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT stage_id FROM stages WHERE run_id = ?1 ORDER BY ord")?
            .query_map(params![id.0], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    pub fn load_run(&self, id: RunId) -> Result<Option<LoadedRun>> {
        let row = self
            .conn
            .prepare_cached("SELECT status, spec, params, started_at, assets, test_input FROM runs WHERE id = ?1")?
            .query_row(params![id.0], |r| {
                Ok((
                    (r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?),
                    (r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?),
                ))
            })
            .optional()?;
        let Some(((status, spec, params_text, started), (assets, test_input))) = row else {
            return Ok(None);
        };
        let stages = self
            .conn
            .prepare_cached(
                "SELECT s.stage_id, s.status,
                    (SELECT COALESCE(MAX(n), 0) FROM attempts a WHERE a.run_id = s.run_id AND a.stage_id = s.stage_id),
                    (SELECT output FROM attempts a WHERE a.run_id = s.run_id AND a.stage_id = s.stage_id
                        AND a.status = 'succeeded' ORDER BY n DESC LIMIT 1)
                 FROM stages s WHERE s.run_id = ?1 ORDER BY s.ord",
            )?
            .query_map(params![id.0], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    parse_status::<StageStatus>(&r.get::<_, String>(1)?)?,
                    r.get::<_, u32>(2)?,
                    json(r.get(3)?),
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Some(LoadedRun {
            status: parse_status(&status)?,
            spec,
            params: serde_json::from_str(&params_text)?,
            started_at: ts(started),
            stages,
            assets: serde_json::from_str(&assets)?,
            test_input: test_input.map(|t| serde_json::from_str(&t)).transpose()?,
        }))
    }

    pub fn run_ids_with_status(&self, status: RunStatus) -> Result<Vec<RunId>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id FROM runs WHERE status = ?1 ORDER BY id")?
            .query_map(params![status.as_str()], |r| Ok(RunId(r.get(0)?)))?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// Runs counted by pipeline and status.
    pub fn run_counts(&self) -> Result<Vec<(String, String, u64)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT pipeline, status, COUNT(*) FROM runs WHERE test = 0 GROUP BY pipeline, status ORDER BY pipeline, status")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// Saved canaries as `(name, controller state JSON, status JSON)`.
    pub fn canaries(&self) -> Result<Vec<(String, String, String)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT name, state, status FROM canaries ORDER BY name")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// Audit records matching `q`, newest first. An action without a dot (`canary`) matches
    /// its whole group (`canary.rollback`, `canary.pause`, ...).
    pub fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let limit = q.limit.clamp(1, MAX_AUDIT_LIMIT) as i64;
        // `canary` matches `canary.*`: a LIKE pattern with the user's text escaped.
        let group = q.action.as_ref().map(|a| {
            let escaped = a
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("{escaped}.%")
        });
        Ok(self
            .conn
            .prepare_cached(
                "SELECT at, actor, role, via, action, target, reason, outcome, details FROM audit
                 WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR actor = ?2)
                   AND (?3 IS NULL OR action = ?3 OR action LIKE ?4 ESCAPE '\\')
                 ORDER BY id DESC LIMIT ?5",
            )?
            .query_map(
                params![
                    q.since.map(|t| t.to_string()),
                    q.actor,
                    q.action,
                    group,
                    limit
                ],
                |r| {
                    let at: String = r.get(0)?;
                    let role: Option<String> = r.get(2)?;
                    let via: Option<String> = r.get(3)?;
                    let details: String = r.get(8)?;
                    Ok(AuditRecord {
                        at: Timestamp::parse(&at).unwrap_or_else(|_| Timestamp::from_millis(0)),
                        actor: r.get(1)?,
                        role: role.and_then(|s| s.parse().ok()),
                        via: via.and_then(|s| s.parse().ok()),
                        action: r.get(4)?,
                        target: r.get(5)?,
                        reason: r.get(6)?,
                        outcome: r.get(7)?,
                        details: json(Some(details)).unwrap_or(Value::Null),
                    })
                },
            )?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// A page of dead-letter entries, newest first, without their inputs.
    pub fn dlq(&self, q: &DlqQuery) -> Result<Page<DlqEntry, DlqId>> {
        let before = q.before.map(|d| d.0);
        let run = q.run.map(|r| r.0);
        let limit = q.limit.clamp(1, MAX_DLQ_LIMIT);
        let mut items: Vec<DlqEntry> = self
            .conn
            .prepare_cached(&format!(
                "SELECT {DLQ_LIST_COLUMNS} FROM dlq WHERE (?1 IS NULL OR id < ?1) AND (?2 IS NULL OR run_id = ?2) ORDER BY id DESC LIMIT ?3"
            ))?
            .query_map(params![before, run, limit as i64 + 1], dlq_entry)?
            .collect::<rusqlite::Result<_>>()?;
        let next = (items.len() > limit).then(|| {
            items.truncate(limit);
            items.last().map(|e| e.id)
        });
        let total: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM dlq WHERE (?1 IS NULL OR run_id = ?1)")?
            .query_row(params![run], |r| r.get(0))?;
        Ok(Page {
            items,
            next: next.flatten(),
            total: total.unsigned_abs(),
        })
    }

    pub fn dlq_entry(&self, id: DlqId) -> Result<Option<DlqEntry>> {
        let sql = format!("SELECT {DLQ_COLUMNS} FROM dlq WHERE id = ?1");
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![id.0], dlq_entry)
            .optional()?)
    }

    /// What became of a dead-letter entry that is gone: requeued (and where its stage is now)
    /// or discarded. `None` if the id was never used.
    pub fn dlq_fate(&self, id: DlqId) -> Result<Option<String>> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT kind, run_id, stage_id FROM events WHERE kind IN ('dlq_requeued', 'dlq_discarded')
                 AND json_extract(data, '$.dlq_id') = ?1 ORDER BY seq DESC LIMIT 1",
            )?
            .query_row(params![id.0], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?, r.get::<_, Option<String>>(2)?)))
            .optional()?;
        let Some((kind, run, stage)) = row else {
            return Ok(None);
        };
        let (run, stage) = (run.unwrap_or_default(), stage.unwrap_or_default());
        if kind == "dlq_discarded" {
            return Ok(Some(format!(
                "it was discarded (run {run}, stage `{stage}`)"
            )));
        }
        let now: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT id FROM dlq WHERE run_id = ?1 AND stage_id = ?2 ORDER BY id DESC LIMIT 1",
            )?
            .query_row(params![run, stage], |r| r.get(0))
            .optional()?;
        Ok(Some(match now {
            Some(new) => format!(
                "it was requeued, and stage `{stage}` of run {run} failed again as entry {new}"
            ),
            None => format!("it was requeued into run {run} (stage `{stage}`)"),
        }))
    }

    pub fn dlq_for_run(&self, run: RunId) -> Result<Vec<DlqEntry>> {
        let sql = format!("SELECT {DLQ_COLUMNS} FROM dlq WHERE run_id = ?1 ORDER BY id");
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_map(params![run.0], dlq_entry)?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// Events with `seq > since`, oldest first, at most `limit`.
    pub fn events(&self, since: u64, limit: usize) -> Result<Vec<Event>> {
        // Past what a sequence number can be: nothing is after it (never "from the start").
        let Ok(since) = i64::try_from(since) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(self
            .conn
            .prepare_cached("SELECT seq, at, kind, run_id, stage_id, data FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")?
            .query_map(params![since, limit], event)?
            .collect::<rusqlite::Result<_>>()?)
    }

    /// The next run and dead-letter ids to hand out (ids are never reused, even after deletes).
    pub fn next_ids(&self) -> Result<(i64, i64)> {
        let next = |table: &str| -> Result<i64> {
            let seq: i64 = self
                .conn
                .query_row(
                    "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = ?1",
                    params![table],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(0);
            let max: i64 = self.conn.query_row(
                &format!("SELECT COALESCE(MAX(id), 0) FROM {table}"),
                [],
                |r| r.get(0),
            )?;
            Ok(seq.max(max) + 1)
        };
        Ok((next("runs")?, next("dlq")?))
    }
}

/// How many runs match each filter, by the store generation they were counted at.
#[derive(Debug, Default)]
pub struct CountCache {
    counts: Mutex<HashMap<String, (u64, i64)>>,
}

impl CountCache {
    const MAX: usize = 256;

    fn get(&self, key: &str, generation: u64) -> Option<i64> {
        crate::sync::lock(&self.counts)
            .get(key)
            .filter(|(g, _)| *g == generation)
            .map(|(_, n)| *n)
    }

    fn put(&self, key: String, generation: u64, n: i64) {
        let mut counts = crate::sync::lock(&self.counts);
        if counts.len() >= Self::MAX {
            counts.clear();
        }
        counts.insert(key, (generation, n));
    }
}

/// A few read connections shared by async callers; each query runs on the blocking pool so the
/// async runtime never waits on SQLite.
#[derive(Clone)]
pub struct ReadPool {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Reader>>>,
    /// Reads at once: however many clients ask, at most this many connections and blocking
    /// threads; the others wait their turn.
    permits: Arc<tokio::sync::Semaphore>,
}

/// Store reads running at once (and connections kept open for them).
pub const MAX_READERS: usize = 8;

impl ReadPool {
    pub fn new(path: &Path) -> ReadPool {
        ReadPool {
            path: path.to_path_buf(),
            idle: Arc::new(Mutex::new(Vec::new())),
            permits: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
        }
    }

    pub async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Reader) -> Result<T> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StoreError(format!("the store's readers are closed: {e}")))?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let reader = crate::sync::lock(&pool.idle).pop();
            let reader = match reader {
                Some(r) => r,
                None => Reader::open(&pool.path)?,
            };
            let out = f(&reader);
            let mut idle = crate::sync::lock(&pool.idle);
            if idle.len() < MAX_READERS {
                idle.push(reader);
            }
            out
        })
        .await
        .map_err(|e| StoreError(format!("a store read was aborted: {e}")))?
    }
}
