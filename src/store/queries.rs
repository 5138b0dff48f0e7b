//! Read queries. A [`Reader`] is one read-only connection for synchronous callers (the CLI);
//! a [`ReadPool`] lends connections to async callers on the blocking thread pool.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::db::{Db, Dialect, Row, Val, args};
use super::{Result, StoreError, Target, open_sqlite};
use crate::model::{
    Attempt, AttemptError, AuditQuery, AuditRecord, DlqEntry, DlqId, DlqQuery, Event, EventKind,
    LogFilter, MAX_AUDIT_LIMIT, MAX_DLQ_LIMIT, Page, Run, RunId, RunQuery, RunSort, RunStatus,
    RunSummary, StageIo, StageRecord, StageStatus, Timestamp, Trigger,
};

/// One read connection. Queries take `&self` (callers share a reader the way they shared a
/// SQLite connection); the connection is borrowed for one statement at a time.
pub struct Reader {
    db: std::cell::RefCell<Db>,
}

/// What a driver needs to continue a run: its definition as started, its params, and each
/// stage's status, attempt count and latest successful output.
pub struct LoadedRun {
    pub spec: String,
    pub params: Value,
    pub started_at: Option<Timestamp>,
    pub stages: Vec<LoadedStage>,
    /// Each stage's asset versions (by stage id, then asset name).
    pub assets: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u32>>,
    /// For an isolated stage test: the input its one stage gets.
    pub test_input: Option<Value>,
}

/// A stage of a run as a driver starts from it.
#[derive(Debug, Clone)]
pub struct LoadedStage {
    pub id: String,
    pub status: StageStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// The output of its latest successful attempt.
    pub output: Option<Value>,
    /// When its next attempt is due, if it was waiting out a retry's backoff after its latest
    /// attempt.
    pub retry_at: Option<Timestamp>,
}

/// The columns of a run's row that [`run_start`] reads, in its order.
pub(super) const START_COLUMNS: &str = "spec, params, started_at, assets, test_input";

/// A run as its driver starts from it: its row's [`START_COLUMNS`] from column `at` on, and
/// its `stages` (read apart, or none for a run never started: every stage then starts afresh).
pub(super) fn run_start(r: &mut Row, at: usize, stages: Vec<LoadedStage>) -> Result<LoadedRun> {
    Ok(LoadedRun {
        spec: r.text(at)?,
        params: serde_json::from_str(&r.text(at + 1)?)?,
        started_at: ts(r.opt_text(at + 2)?),
        stages,
        assets: serde_json::from_str(&r.text(at + 3)?)?,
        test_input: r
            .opt_text(at + 4)?
            .map(|t| serde_json::from_str(&t))
            .transpose()?,
    })
}

pub(super) fn ts(s: Option<String>) -> Option<Timestamp> {
    s.and_then(|s| Timestamp::parse(&s).ok())
}

/// A stored timestamp that must be there (the epoch if it is unreadable).
pub(super) fn ts0(s: Option<String>) -> Timestamp {
    ts(s).unwrap_or(Timestamp::from_millis(0))
}

fn json(s: Option<String>) -> Option<Value> {
    s.map(|s| serde_json::from_str(&s).unwrap_or(Value::String(s)))
}

pub(super) fn parse_status<T: std::str::FromStr>(s: &str) -> Result<T> {
    s.parse()
        .map_err(|_| StoreError(format!("the state database holds an unknown status `{s}`")))
}

fn duration(start: Option<Timestamp>, end: Option<Timestamp>) -> Option<i64> {
    Some(end?.millis_since(start?))
}

const SUMMARY_COLUMNS: &str = "r.id, r.pipeline, r.status, r.trigger, r.created_at, r.started_at, r.finished_at, r.stages_total, r.test,
    (SELECT COUNT(*) FROM stages s WHERE s.run_id = r.id AND s.status IN ('succeeded','failed','skipped','cancelled')),
    (SELECT COUNT(*) FROM stages s WHERE s.run_id = r.id AND s.status = 'succeeded'),
    (SELECT COUNT(*) FROM stages s WHERE s.run_id = r.id AND s.status = 'failed')";

fn summary(mut row: Row) -> Result<RunSummary> {
    let started_at = ts(row.opt_text(5)?);
    let finished_at = ts(row.opt_text(6)?);
    Ok(RunSummary {
        id: RunId(row.i64(0)?),
        pipeline: row.text(1)?,
        status: parse_status(&row.text(2)?)?,
        trigger: Trigger::parse(&row.text(3)?),
        created_at: ts0(row.opt_text(4)?),
        started_at,
        finished_at,
        duration_ms: duration(started_at, finished_at),
        stages_total: row.u32(7)?,
        test: row.bool(8)?,
        stages_done: row.u32(9)?,
        stages_succeeded: row.u32(10)?,
        stages_failed: row.u32(11)?,
    })
}

/// Reads an attempt whose [`ATTEMPT_COLUMNS`] start at column `at`.
fn attempt_at(row: &mut Row, at: usize) -> Result<Attempt> {
    let code = row.opt_text(at + 10)?;
    let message = row.opt_text(at + 11)?;
    let assets = row.opt_text(at + 12)?;
    Ok(Attempt {
        n: row.u32(at)?,
        status: parse_status(&row.text(at + 1)?)?,
        started_at: ts0(row.opt_text(at + 2)?),
        finished_at: ts(row.opt_text(at + 3)?),
        duration_ms: row.opt_i64(at + 4)?,
        input: json(row.opt_text(at + 5)?).unwrap_or(Value::Null),
        output: json(row.opt_text(at + 6)?),
        output_truncated: row.bool(at + 7)?,
        output_bytes: row.opt_i64(at + 8)?.map(i64::unsigned_abs),
        stderr: row.opt_text(at + 9)?,
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

fn dlq_entry(mut row: Row) -> Result<DlqEntry> {
    Ok(DlqEntry {
        id: DlqId(row.i64(0)?),
        run_id: RunId(row.i64(1)?),
        pipeline: row.text(2)?,
        stage: row.text(3)?,
        attempts: row.u32(4)?,
        input: json(row.opt_text(5)?).unwrap_or(Value::Null),
        error: AttemptError {
            code: row.text(6)?,
            message: row.text(7)?,
        },
        created_at: ts0(row.opt_text(8)?),
    })
}

const DLQ_COLUMNS: &str =
    "id, run_id, pipeline, stage_id, attempts, input, error_code, error_message, created_at";
/// The same without the input (a list's rows stay small however large the inputs).
const DLQ_LIST_COLUMNS: &str =
    "id, run_id, pipeline, stage_id, attempts, 'null', error_code, error_message, created_at";

pub(super) fn event(mut row: Row) -> Result<Event> {
    // A kind this version does not know (another version's) is kept, named inside its data.
    Ok(Event::read(
        row.i64(0)?.unsigned_abs(),
        ts0(row.opt_text(1)?),
        &row.text(2)?,
        row.opt_i64(3)?.map(RunId),
        row.opt_text(4)?,
        json(row.opt_text(5)?).unwrap_or(Value::Null),
    ))
}

/// Maps every row with `f`.
fn all<T>(rows: Vec<Row>, f: impl FnMut(Row) -> Result<T>) -> Result<Vec<T>> {
    rows.into_iter().map(f).collect()
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader> {
        Ok(Reader::on(open_sqlite(path, false)?))
    }

    /// A reader on a connection already open (to PostgreSQL, or a migrated SQLite file).
    pub fn on(db: Db) -> Reader {
        Reader {
            db: std::cell::RefCell::new(db),
        }
    }

    /// A reader on an empty in-memory store with the current schema.
    pub fn empty() -> Result<Reader> {
        let mut db = Db::Sqlite(rusqlite::Connection::open_in_memory()?);
        super::schema::migrate(&mut db)?;
        Ok(Reader::on(db))
    }

    /// The connection, for one statement.
    pub(super) fn db(&self) -> Result<std::cell::RefMut<'_, Db>> {
        self.db
            .try_borrow_mut()
            .map_err(|_| StoreError("a store reader was used by two queries at once".into()))
    }

    pub(super) fn rows(&self, sql: &str, args: &[Val]) -> Result<Vec<Row>> {
        self.db()?.rows(sql, args)
    }

    pub(super) fn row(&self, sql: &str, args: &[Val]) -> Result<Option<Row>> {
        self.db()?.row(sql, args)
    }

    fn count(&self, sql: &str, args: &[Val]) -> Result<u64> {
        Ok(self.db()?.one(sql, args)?.i64(0)?.unsigned_abs())
    }

    /// The workers sharing a PostgreSQL store, oldest first; none on SQLite (one host).
    pub fn workers(&self) -> Result<Vec<crate::model::WorkerInfo>> {
        let mut db = self.db()?;
        match db.dialect() {
            Dialect::Sqlite => Ok(Vec::new()),
            Dialect::Postgres => super::workers::list(&mut db),
        }
    }

    /// The store's schema version (0: no opsdeck tables yet).
    pub fn schema_version(&self) -> Result<i64> {
        super::schema::version(&mut *self.db()?)
    }

    /// Whether this reader's connection is gone and a new one is needed.
    pub fn is_broken(&self) -> bool {
        self.db.try_borrow().is_ok_and(|db| db.is_broken())
    }

    pub(super) fn dialect(&self) -> Result<Dialect> {
        Ok(self.db()?.dialect())
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
        // Only the filters actually given go into the SQL, so the database can use its indexes
        // and its fast COUNT(*) instead of evaluating catch-all conditions on every row.
        let mut conds: Vec<&str> = vec![if q.tests { "r.test = 1" } else { "r.test = 0" }];
        let mut args: Vec<Val> = Vec::new();
        if let Some(p) = &q.pipeline {
            conds.push("r.pipeline = ?");
            args.push(p.into());
        }
        if let Some(st) = q.status {
            conds.push("r.status = ?");
            args.push(st.as_str().into());
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
            args.push(t.into());
        }
        let filter = where_all(&conds);
        let key = format!("{filter} {args:?}");
        let total = match counts.and_then(|(c, g)| c.get(&key, g)) {
            Some(n) => n,
            None => {
                let n = self.count(&format!("SELECT COUNT(*) FROM runs r {filter}"), &args)?;
                let n = i64::try_from(n).unwrap_or(i64::MAX);
                if let Some((c, g)) = counts {
                    c.put(key, g, n);
                }
                n
            }
        };

        let longest = match self.dialect()? {
            Dialect::Sqlite => {
                "(COALESCE(julianday(r.finished_at), julianday('now')) - julianday(COALESCE(r.started_at, r.created_at))) DESC, r.id DESC"
            }
            Dialect::Postgres => {
                "(COALESCE(CAST(r.finished_at AS timestamptz), now()) - CAST(COALESCE(r.started_at, r.created_at) AS timestamptz)) DESC, r.id DESC"
            }
        };
        let order = match q.sort {
            RunSort::Newest => "r.id DESC",
            RunSort::Oldest => "r.id ASC",
            RunSort::Longest => longest,
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
        let page_filter = where_all(&page_conds);
        page_args.push((limit + 1).into());
        page_args.push(q.offset.into());
        // First the ids of the page (a walk of an index), then the summaries of those rows
        // only: rows skipped by OFFSET never pay for the per-row stage counts.
        let ids = all(
            self.rows(
                &format!("SELECT r.id FROM runs r {page_filter} ORDER BY {order} LIMIT ? OFFSET ?"),
                &page_args,
            )?,
            |mut r| r.i64(0),
        )?;
        let more = ids.len() > limit;
        let sql = format!("SELECT {SUMMARY_COLUMNS} FROM runs r WHERE r.id = ?1");
        let mut items = Vec::with_capacity(limit);
        for id in ids.into_iter().take(limit) {
            if let Some(row) = self.row(&sql, args![id])? {
                items.push(summary(row)?);
            }
        }
        let next = if more && q.sort == RunSort::Newest {
            items.last().map(|r| r.id)
        } else {
            None
        };
        Ok(Page {
            items,
            next,
            total: total.unsigned_abs(),
        })
    }

    /// The last event's sequence number (0 when the log is empty).
    pub fn last_seq(&self) -> Result<u64> {
        self.count("SELECT COALESCE(MAX(seq), 0) FROM events", &[])
    }

    pub fn dlq_depth(&self) -> Result<u64> {
        self.count("SELECT COUNT(*) FROM dlq", &[])
    }

    pub fn run_summary(&self, id: RunId) -> Result<Option<RunSummary>> {
        let sql = format!("SELECT {SUMMARY_COLUMNS} FROM runs r WHERE r.id = ?1");
        self.row(&sql, args![id.0])?.map(summary).transpose()
    }

    pub fn run(&self, id: RunId) -> Result<Option<Run>> {
        // Only PostgreSQL's runs have owners (workers).
        let owner = match self.dialect()? {
            Dialect::Sqlite => "CAST(NULL AS TEXT)",
            Dialect::Postgres => "owner",
        };
        let Some(mut r) = self.row(
            &format!(
                "SELECT id, pipeline, status, trigger, params, created_at, started_at, finished_at, overrides, test, {owner} FROM runs WHERE id = ?1"
            ),
            args![id.0],
        )?
        else {
            return Ok(None);
        };
        let mut stages = all(
            self.rows(
                "SELECT stage_id, kind, needs, status FROM stages WHERE run_id = ?1 ORDER BY ord",
                args![id.0],
            )?,
            |mut r| {
                Ok(StageRecord {
                    id: r.text(0)?,
                    kind: r.text(1)?,
                    needs: serde_json::from_str(&r.text(2)?).unwrap_or_default(),
                    status: parse_status(&r.text(3)?)?,
                    attempts: Vec::new(),
                })
            },
        )?;
        let sql = format!(
            "SELECT stage_id, {ATTEMPT_COLUMNS} FROM attempts WHERE run_id = ?1 ORDER BY stage_id, n"
        );
        for mut row in self.rows(&sql, args![id.0])? {
            let stage_id = row.text(0)?;
            let a = attempt_at(&mut row, 1)?;
            if let Some(s) = stages.iter_mut().find(|s| s.id == stage_id) {
                s.attempts.push(a);
            }
        }
        let started_at = ts(r.opt_text(6)?);
        let finished_at = ts(r.opt_text(7)?);
        Ok(Some(Run {
            id,
            pipeline: r.text(1)?,
            status: parse_status(&r.text(2)?)?,
            trigger: Trigger::parse(&r.text(3)?),
            params: serde_json::from_str(&r.text(4)?)?,
            created_at: ts0(r.opt_text(5)?),
            started_at,
            finished_at,
            duration_ms: duration(started_at, finished_at),
            stages,
            overrides: serde_json::from_str(&r.text(8)?).unwrap_or_default(),
            test: r.bool(9)?,
            owner: r.opt_text(10)?,
        }))
    }

    pub fn stage_io(&self, id: RunId, stage: &str) -> Result<Option<StageIo>> {
        let Some(mut head) = self.row(
            "SELECT r.pipeline, s.status FROM stages s JOIN runs r ON r.id = s.run_id WHERE s.run_id = ?1 AND s.stage_id = ?2",
            args![id.0, stage],
        )?
        else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE run_id = ?1 AND stage_id = ?2 ORDER BY n"
        );
        let attempts = all(self.rows(&sql, args![id.0, stage])?, |mut r| {
            attempt_at(&mut r, 0)
        })?;
        Ok(Some(StageIo {
            run_id: id,
            pipeline: head.text(0)?,
            stage: stage.to_string(),
            status: parse_status(&head.text(1)?)?,
            attempts,
        }))
    }

    /// The stage ids of a run, in definition order (to name the valid choices in errors).
    pub fn stage_ids(&self, id: RunId) -> Result<Vec<String>> {
        all(
            self.rows(
                "SELECT stage_id FROM stages WHERE run_id = ?1 ORDER BY ord",
                args![id.0],
            )?,
            |mut r| r.text(0),
        )
    }

    pub fn load_run(&self, id: RunId) -> Result<Option<LoadedRun>> {
        let Some(mut r) = self.row(
            &format!("SELECT {START_COLUMNS} FROM runs WHERE id = ?1"),
            args![id.0],
        )?
        else {
            return Ok(None);
        };
        let stages = all(
            self.rows(
                "SELECT s.stage_id, s.status,
                    (SELECT COALESCE(MAX(n), 0) FROM attempts a WHERE a.run_id = s.run_id AND a.stage_id = s.stage_id),
                    (SELECT output FROM attempts a WHERE a.run_id = s.run_id AND a.stage_id = s.stage_id
                        AND a.status = 'succeeded' ORDER BY n DESC LIMIT 1),
                    s.retry_at, s.retry_after
                 FROM stages s WHERE s.run_id = ?1 ORDER BY s.ord",
                args![id.0],
            )?,
            |mut r| {
                let attempts = r.u32(2)?;
                let retry_at = ts(r.opt_text(4)?);
                // A due time set after an earlier attempt no longer applies.
                let follows = r.opt_i64(5)?;
                Ok(LoadedStage {
                    id: r.text(0)?,
                    status: parse_status::<StageStatus>(&r.text(1)?)?,
                    attempts,
                    output: json(r.opt_text(3)?),
                    retry_at: retry_at.filter(|_| follows == Some(i64::from(attempts))),
                })
            },
        )?;
        run_start(&mut r, 0, stages).map(Some)
    }

    pub fn run_ids_with_status(&self, status: RunStatus) -> Result<Vec<RunId>> {
        all(
            self.rows(
                "SELECT id FROM runs WHERE status = ?1 ORDER BY id",
                args![status.as_str()],
            )?,
            |mut r| Ok(RunId(r.i64(0)?)),
        )
    }

    /// Runs counted by pipeline and status.
    pub fn run_counts(&self) -> Result<Vec<(String, String, u64)>> {
        all(
            self.rows(
                "SELECT pipeline, status, COUNT(*) FROM runs WHERE test = 0 GROUP BY pipeline, status ORDER BY pipeline, status",
                &[],
            )?,
            |mut r| Ok((r.text(0)?, r.text(1)?, r.i64(2)?.unsigned_abs())),
        )
    }

    /// Saved circuit breakers as `(target, state, when it last opened)`.
    pub fn breakers(&self) -> Result<Vec<(String, String, Option<String>)>> {
        all(
            self.rows(
                "SELECT target, state, opened_at FROM breakers ORDER BY target",
                &[],
            )?,
            |mut r| Ok((r.text(0)?, r.text(1)?, r.opt_text(2)?)),
        )
    }

    /// Saved canaries as `(name, controller state JSON, status JSON)`.
    pub fn canaries(&self) -> Result<Vec<(String, String, String)>> {
        all(
            self.rows(
                "SELECT name, state, status FROM canaries ORDER BY name",
                &[],
            )?,
            |mut r| Ok((r.text(0)?, r.text(1)?, r.text(2)?)),
        )
    }

    /// Audit records matching `q`, newest first. An action without a dot (`canary`) matches
    /// its whole group (`canary.rollback`, `canary.pause`, ...).
    pub fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let limit = q.limit.clamp(1, MAX_AUDIT_LIMIT);
        // `canary` matches `canary.*`: a LIKE pattern with the user's text escaped.
        let group = q.action.as_ref().map(|a| {
            let escaped = a
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("{escaped}.%")
        });
        let mut conds = Vec::new();
        let mut vals: Vec<Val> = Vec::new();
        if let Some(t) = q.since {
            conds.push("at >= ?");
            vals.push(t.to_string().into());
        }
        if let Some(actor) = q.actor.as_deref() {
            conds.push("actor = ?");
            vals.push(actor.into());
        }
        if let (Some(action), Some(group)) = (q.action.as_deref(), group) {
            conds.push("(action = ? OR action LIKE ? ESCAPE '\\')");
            vals.push(action.into());
            vals.push(group.into());
        }
        vals.push(limit.into());
        let rows = self.rows(
            &format!(
                "SELECT at, actor, role, via, action, target, reason, outcome, details FROM audit
                 {} ORDER BY id DESC LIMIT ?",
                where_all(&conds)
            ),
            &vals,
        )?;
        all(rows, |mut r| {
            Ok(AuditRecord {
                at: ts0(r.opt_text(0)?),
                actor: r.text(1)?,
                role: r.opt_text(2)?.and_then(|s| s.parse().ok()),
                via: r.opt_text(3)?.and_then(|s| s.parse().ok()),
                action: r.text(4)?,
                target: r.text(5)?,
                reason: r.text(6)?,
                outcome: r.text(7)?,
                details: json(r.opt_text(8)?).unwrap_or(Value::Null),
            })
        })
    }

    /// A page of dead-letter entries, newest first, without their inputs.
    pub fn dlq(&self, q: &DlqQuery) -> Result<Page<DlqEntry, DlqId>> {
        let before = q.before.map(|d| d.0);
        let run = q.run.map(|r| r.0);
        let limit = q.limit.clamp(1, MAX_DLQ_LIMIT);
        // The run's filter alone counts the entries; the cursor only pages them.
        let (mut conds, mut vals): (Vec<&str>, Vec<Val>) = match run {
            Some(r) => (vec!["run_id = ?"], vec![r.into()]),
            None => (Vec::new(), Vec::new()),
        };
        let total = self.count(
            &format!("SELECT COUNT(*) FROM dlq {}", where_all(&conds)),
            &vals,
        )?;
        if let Some(b) = before {
            conds.push("id < ?");
            vals.push(b.into());
        }
        vals.push((limit + 1).into());
        let mut items = all(
            self.rows(
                &format!(
                    "SELECT {DLQ_LIST_COLUMNS} FROM dlq {} ORDER BY id DESC LIMIT ?",
                    where_all(&conds)
                ),
                &vals,
            )?,
            dlq_entry,
        )?;
        let next = (items.len() > limit).then(|| {
            items.truncate(limit);
            items.last().map(|e| e.id)
        });
        Ok(Page {
            items,
            next: next.flatten(),
            total,
        })
    }

    pub fn dlq_entry(&self, id: DlqId) -> Result<Option<DlqEntry>> {
        let sql = format!("SELECT {DLQ_COLUMNS} FROM dlq WHERE id = ?1");
        self.row(&sql, args![id.0])?.map(dlq_entry).transpose()
    }

    /// A dead-letter entry, or the sentence for an id with none: what became of it (requeued,
    /// discarded), or that it never was.
    pub fn dlq_entry_or_why(&self, id: DlqId) -> Result<std::result::Result<DlqEntry, String>> {
        if let Some(entry) = self.dlq_entry(id)? {
            return Ok(Ok(entry));
        }
        Ok(Err(match self.dlq_fate(id)? {
            Some(fate) => format!("there is no dead-letter entry {id}: {fate}"),
            None => {
                format!("there is no dead-letter entry {id}; list them with `opsdeck dlq list`")
            }
        }))
    }

    /// What became of a dead-letter entry that is gone: requeued (and where its stage is now)
    /// or discarded. `None` if the id was never used.
    pub fn dlq_fate(&self, id: DlqId) -> Result<Option<String>> {
        let field = match self.dialect()? {
            Dialect::Sqlite => "json_extract(data, '$.dlq_id')",
            Dialect::Postgres => "CAST(CAST(data AS jsonb) ->> 'dlq_id' AS BIGINT)",
        };
        let Some(mut row) = self.row(
            &format!(
                "SELECT kind, run_id, stage_id FROM events WHERE kind IN ('dlq_requeued', 'dlq_discarded')
                 AND {field} = ?1 ORDER BY seq DESC LIMIT 1"
            ),
            args![id.0],
        )?
        else {
            return Ok(None);
        };
        let kind = row.text(0)?;
        let (run, stage) = (
            row.opt_i64(1)?.unwrap_or_default(),
            row.opt_text(2)?.unwrap_or_default(),
        );
        if kind == "dlq_discarded" {
            return Ok(Some(format!(
                "it was discarded (run {run}, stage `{stage}`)"
            )));
        }
        let now = self
            .row(
                "SELECT id FROM dlq WHERE run_id = ?1 AND stage_id = ?2 ORDER BY id DESC LIMIT 1",
                args![run, stage.as_str()],
            )?
            .map(|mut r| r.i64(0))
            .transpose()?;
        Ok(Some(match now {
            Some(new) => format!(
                "it was requeued, and stage `{stage}` of run {run} failed again as entry {new}"
            ),
            None => format!("it was requeued into run {run} (stage `{stage}`)"),
        }))
    }

    pub fn dlq_for_run(&self, run: RunId) -> Result<Vec<DlqEntry>> {
        let sql = format!("SELECT {DLQ_COLUMNS} FROM dlq WHERE run_id = ?1 ORDER BY id");
        all(self.rows(&sql, args![run.0])?, dlq_entry)
    }

    /// Events with `seq > since`, oldest first, at most `limit`.
    pub fn events(&self, since: u64, limit: usize) -> Result<Vec<Event>> {
        events_after(&mut *self.db()?, since, limit)
    }

    /// Whether run `id` is stored (without reading its stages and attempts).
    pub fn run_exists(&self, id: RunId) -> Result<bool> {
        Ok(!self
            .rows("SELECT 1 FROM runs WHERE id = ?1", args![id.0])?
            .is_empty())
    }

    /// The events `filter` keeps with `seq > since`, oldest first, at most `limit`: one run's
    /// are read by the run's index, so following one run costs its own events, not the whole
    /// log's.
    pub fn log_events(&self, filter: &LogFilter, since: u64, limit: usize) -> Result<Vec<Event>> {
        read_events(
            &mut *self.db()?,
            filter,
            since,
            filter.until.unwrap_or(u64::MAX),
            limit,
        )
    }

    /// The next run and dead-letter ids to hand out (ids are never reused, even after deletes).
    pub fn next_ids(&self) -> Result<(i64, i64)> {
        next_ids(&mut *self.db()?)
    }
}

/// [`Reader::events`] on any connection.
pub(crate) fn events_after(db: &mut Db, since: u64, limit: usize) -> Result<Vec<Event>> {
    events_between(db, since, u64::MAX, limit)
}

/// The events after `since` up to `until` (both sequence numbers), oldest first, at most
/// `limit`.
pub(crate) fn events_between(
    db: &mut Db,
    since: u64,
    until: u64,
    limit: usize,
) -> Result<Vec<Event>> {
    read_events(db, &LogFilter::default(), since, until, limit)
}

/// [`events_between`], of the events `filter` keeps only (one run's by the run's index).
fn read_events(
    db: &mut Db,
    filter: &LogFilter,
    since: u64,
    until: u64,
    limit: usize,
) -> Result<Vec<Event>> {
    // Past what a sequence number can be: nothing is after it (never "from the start").
    let Ok(since) = i64::try_from(since) else {
        return Ok(Vec::new());
    };
    let until = i64::try_from(until).unwrap_or(i64::MAX);
    if filter.run.is_none() && filter.kinds.is_empty() {
        // The whole log (the writer's tail of other workers' events): one fixed statement.
        return all(
            db.rows(
                "SELECT seq, at, kind, run_id, stage_id, data FROM events WHERE seq > ?1 AND seq <= ?3 ORDER BY seq LIMIT ?2",
                args![since, limit, until],
            )?,
            event,
        );
    }
    let mut sql = String::from(
        "SELECT seq, at, kind, run_id, stage_id, data FROM events WHERE seq > ?1 AND seq <= ?3",
    );
    let mut params = vec![Val::from(since), Val::from(limit), Val::from(until)];
    let mut param = |sql: &mut String, v: Val| {
        params.push(v);
        let _ = write!(sql, "?{}", params.len());
    };
    if let Some(run) = filter.run {
        sql.push_str(" AND run_id = ");
        param(&mut sql, Val::from(run.0));
    }
    if !filter.kinds.is_empty() {
        // Each kind once, as its stored name; `unknown` stands for every name this version
        // does not know, which are stored as themselves.
        let mut named: Vec<EventKind> = filter.kinds.clone();
        named.sort_by_key(|k| k.as_str());
        named.dedup();
        let unknown = named.contains(&EventKind::Unknown);
        named.retain(|k| *k != EventKind::Unknown);
        // Padded to as many as there are kinds (repeating the first), so the statement's
        // text does not vary with how many were asked for: a handful of texts in the
        // connections' statement caches, not one per count.
        if let Some(&first) = named.first() {
            named.resize(EventKind::ALL.len() - 1, first);
        }
        let mut list = |sql: &mut String, kinds: &[EventKind]| {
            for (i, k) in kinds.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                param(sql, Val::from(k.as_str()));
            }
        };
        sql.push_str(" AND (");
        if !named.is_empty() {
            sql.push_str("kind IN (");
            list(&mut sql, &named);
            sql.push(')');
        }
        if unknown {
            if !named.is_empty() {
                sql.push_str(" OR ");
            }
            let known: Vec<EventKind> = EventKind::ALL
                .iter()
                .copied()
                .filter(|k| *k != EventKind::Unknown)
                .collect();
            sql.push_str("kind NOT IN (");
            list(&mut sql, &known);
            sql.push(')');
        }
        sql.push(')');
    }
    sql.push_str(" ORDER BY seq LIMIT ?2");
    all(db.rows(&sql, &params)?, event)
}

/// [`Reader::next_ids`] on any connection.
pub(crate) fn next_ids(db: &mut Db) -> Result<(i64, i64)> {
    let marks = match db.dialect() {
        Dialect::Sqlite => "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = ?1",
        Dialect::Postgres => "SELECT COALESCE(MAX(last), 0) FROM id_marks WHERE name = ?1",
    };
    let mut next = |table: &str| -> Result<i64> {
        let seq = db.one(marks, args![table])?.i64(0)?;
        let max = db
            .one(&format!("SELECT COALESCE(MAX(id), 0) FROM {table}"), &[])?
            .i64(0)?;
        Ok(seq.max(max) + 1)
    };
    Ok((next("runs")?, next("dlq")?))
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
    target: Target,
    idle: Arc<Mutex<Vec<Reader>>>,
    /// Reads at once: however many clients ask, at most this many connections and blocking
    /// threads; the others wait their turn.
    permits: Arc<tokio::sync::Semaphore>,
}

/// Store reads running at once (and connections kept open for them).
pub const MAX_READERS: usize = 8;

impl ReadPool {
    pub fn new(target: Target) -> ReadPool {
        ReadPool {
            target,
            idle: Arc::new(Mutex::new(Vec::new())),
            permits: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
        }
    }

    pub async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Reader) -> Result<T> + Send + 'static,
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
            let mut reader = match reader {
                Some(r) => r,
                None => pool.target.reader()?,
            };
            let mut out = f(&reader);
            if out.is_err() && reader.is_broken() {
                // A kept connection the server has since closed (it restarted): reads change
                // nothing, so the read is asked again on a new one.
                reader = pool.target.reader()?;
                out = f(&reader);
            }
            if !reader.is_broken() {
                let mut idle = crate::sync::lock(&pool.idle);
                if idle.len() < MAX_READERS {
                    idle.push(reader);
                }
            }
            out
        })
        .await
        .map_err(|e| StoreError(format!("a store read was aborted: {e}")))?
    }
}

/// `WHERE` and the conditions of the filters asked for (none: nothing), their `?`s bound in
/// order. Only what is asked is in the statement, so each combination is planned for what it
/// filters (by an index where one serves), not one catch-all plan for every row: PostgreSQL
/// plans a prepared statement once, without its values.
fn where_all(conds: &[&str]) -> String {
    if conds.is_empty() {
        return String::new();
    }
    format!("WHERE {}", conds.join(" AND "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kinds are chosen in the store; `unknown` keeps the names this version does not know
    /// (stored as themselves by a newer version), and `until` stops the scan.
    #[test]
    fn the_log_is_narrowed_to_kinds_a_run_and_a_number() {
        let mut db = Db::Sqlite(rusqlite::Connection::open_in_memory().unwrap());
        super::super::schema::migrate(&mut db).unwrap();
        let rows = [
            (1_i64, "run_started", Some(1_i64)),
            (2, "from_the_future", Some(1)),
            (3, "run_finished", Some(1)),
            (4, "run_started", Some(2)),
            (5, "audit", None),
            (6, "run_finished", Some(2)),
        ];
        for (seq, kind, run) in rows {
            db.execute(
                "INSERT INTO events (seq, at, kind, run_id, stage_id, data) VALUES (?1, '2026-12-03T00:00:00Z', ?2, ?3, NULL, '{}')",
                args![seq, kind, run],
            )
            .unwrap();
        }
        let r = Reader::on(db);
        let seqs = |run: Option<i64>, kinds: &[EventKind], until: Option<u64>, since: u64| {
            let filter = LogFilter {
                run: run.map(RunId),
                kinds: kinds.to_vec(),
                until,
            };
            r.log_events(&filter, since, 100)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        };
        let finished = [EventKind::RunFinished];
        assert_eq!(seqs(None, &[], None, 0), [1, 2, 3, 4, 5, 6]);
        assert_eq!(seqs(None, &finished, None, 0), [3, 6]);
        assert_eq!(seqs(None, &finished, None, 3), [6]);
        assert_eq!(seqs(None, &finished, Some(5), 0), [3]);
        assert_eq!(seqs(Some(2), &finished, None, 0), [6]);
        assert_eq!(seqs(Some(1), &[], Some(2), 0), [1, 2]);
        assert_eq!(seqs(None, &[EventKind::Unknown], None, 0), [2]);
        assert_eq!(
            seqs(
                None,
                &[EventKind::Audit, EventKind::Unknown, EventKind::Audit],
                None,
                0
            ),
            [2, 5]
        );
        let unknown = r
            .log_events(
                &LogFilter {
                    kinds: vec![EventKind::Unknown],
                    ..LogFilter::default()
                },
                0,
                1,
            )
            .unwrap();
        assert_eq!(unknown[0].kind, EventKind::Unknown);
    }
}
