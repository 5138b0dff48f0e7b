//! A write batch on PostgreSQL, as few statements as its rows allow (and the multi-row insert
//! both stores use for a new run's stages). Every statement costs the server its own round of
//! work (bind, executor start, end, a reply), which on a busy store is most of what a write
//! costs; so the many small writes of a batch (attempts started and finished, stage statuses,
//! run statuses, events) go as one statement per kind, each column of their rows bound as one
//! array and turned back into rows by `unnest` (one statement shape whatever the number of
//! rows). They are grouped by table in an order that keeps every dependency between them: new
//! runs first, then the writes the batch holds in between (in their own order), then new
//! attempts, the processes and ends of attempts, stage statuses, run statuses, and last the
//! events, numbered in the order they were submitted. A batch that writes the same row twice
//! keeps the last write, as one after the other would.

use std::collections::HashMap;

use super::Result;
use super::db::{Db, Dialect, Val, args};
use super::writer::{NewEvent, Op, apply_op, new_run_rows, row_vals};

/// Rows per multi-row statement at most; a group is cut into chunks of powers of two up to
/// this, so a connection prepares a handful of statement shapes, not one per batch size.
const CHUNK: usize = 64;

/// The sizes a group of `n` rows is cut into: `CHUNK`s, then the binary digits of the rest.
fn chunks(n: usize) -> Vec<usize> {
    let mut out = vec![CHUNK; n / CHUNK];
    let rest = n % CHUNK;
    let mut bit = CHUNK;
    while bit > 0 {
        if rest & bit != 0 {
            out.push(bit);
        }
        bit /= 2;
    }
    out
}

/// `count` rows of `width` placeholders each, numbered from 1: `(?1, ?2), (?3, ?4)`, each row
/// written by `row` from its first placeholder's number.
pub(super) fn rows_sql(count: usize, width: usize, row: impl Fn(usize) -> String) -> String {
    (0..count)
        .map(|i| row(i * width + 1))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `sql_for(size)` over `items` in chunks, binding each item's values with `vals`.
pub(super) fn in_chunks<T>(
    tx: &mut Db,
    items: &[T],
    sql_for: impl Fn(usize) -> String,
    vals: impl Fn(&T) -> Vec<Val>,
) -> Result<()> {
    let mut from = 0;
    for size in chunks(items.len()) {
        let part = &items[from..from + size];
        let bound: Vec<Val> = part.iter().flat_map(&vals).collect();
        tx.execute_owned(&sql_for(size), bound)?;
        from += size;
    }
    Ok(())
}

/// At most this many of other workers' events come back with a commit; more are read after.
pub(super) const OTHERS_WITH_COMMIT: usize = 1_000;

/// Keeps the last of the items that share a key, in the order of their last appearance (a
/// batch that writes a row twice leaves it as the second write did).
fn last_per_key<T, K: std::hash::Hash + Eq>(items: Vec<&T>, key: impl Fn(&T) -> K) -> Vec<&T> {
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    let mut out: Vec<&T> = items
        .into_iter()
        .rev()
        .filter(|item| seen.insert(key(item)))
        .collect();
    out.reverse();
    out
}

/// Applies `ops` inside the caller's transaction. The events come last: the counter row that
/// numbers them is locked from then to the commit (other workers' batches number theirs after),
/// so it is held for as little of the transaction as can be. `receipt` names the writer's
/// receipt (none outside the writer), whose last numbered event the read of others' starts
/// after.
pub(super) fn apply_postgres(
    tx: &mut Db,
    ops: &[&Op],
    events: usize,
    published: u64,
    receipt: Option<&str>,
) -> Result<()> {
    debug_assert_eq!(
        events,
        ops.iter().filter(|o| matches!(o, Op::Event(_))).count()
    );
    let mut runs = Vec::new();
    let mut between = Vec::new();
    let mut starts = Vec::new();
    let mut processes = Vec::new();
    let mut finishes = Vec::new();
    let mut stages = Vec::new();
    let mut run_updates = Vec::new();
    let mut evs: Vec<&NewEvent> = Vec::with_capacity(events);
    let mut wake = false;
    let mut owners = HashMap::new();
    let mut created = std::collections::HashSet::new();
    for op in ops {
        match op {
            Op::InsertRun { id, .. } => {
                created.insert(id.0);
                runs.push(*op);
            }
            // A run this batch creates is owned from its insert (an `Own` follows its run).
            Op::Own { id, worker } if created.contains(&id.0) => {
                owners.insert(id.0, worker.as_str());
            }
            Op::StartAttempt { .. } => starts.push(*op),
            Op::AttemptProcess { .. } => processes.push(*op),
            Op::FinishAttempt { .. } => finishes.push(*op),
            Op::UpdateStage { .. } => stages.push(*op),
            Op::UpdateRun { .. } => run_updates.push(*op),
            Op::Event(e) => evs.push(e),
            Op::WakeWorkers => wake = true,
            _ => between.push(*op),
        }
    }
    let marks = [
        (
            "runs",
            runs.iter()
                .filter_map(|op| match op {
                    Op::InsertRun { id, .. } => Some(id.0),
                    _ => None,
                })
                .max(),
        ),
        (
            "dlq",
            between
                .iter()
                .filter_map(|op| match op {
                    Op::InsertDlq { entry, .. } => Some(entry.id.0),
                    _ => None,
                })
                .max(),
        ),
    ];
    insert_runs_postgres(tx, &runs, &owners)?;
    for op in between {
        apply_op(tx, op, 0, &mut Vec::new())?;
    }
    for (table, id) in marks {
        if let Some(id) = id {
            mark_id(tx, table, id)?;
        }
    }
    let (rows, finishes_left) = with_ends(ops, starts, finishes);
    insert_attempts_postgres(tx, &rows)?;
    for op in processes {
        apply_op(tx, op, 0, &mut Vec::new())?;
    }
    updates(
        tx,
        &finishes_left,
        &last_per_key(stages, stage_key),
        &merge_runs(&run_updates),
    )?;
    if wake {
        apply_op(tx, &Op::WakeWorkers, 0, &mut Vec::new())?;
    }
    if evs.is_empty() {
        return Ok(());
    }
    // The counter's new value comes back with the commit: the writer numbers its own events
    // from it and publishes them without reading them back. Other workers' streams wake on
    // the notification, sent when the transaction commits; it names the batch's last event,
    // so a worker that has published that far (this one) reads nothing.
    tx.keep(
        "WITH c AS (UPDATE event_seq SET last = last + ?1 RETURNING last)
         SELECT c.last FROM c, pg_notify('opsdeck_events', CAST(c.last AS TEXT))",
        args![evs.len()],
    )?;
    insert_events(tx, &evs, published, receipt)
}

/// Pairs each attempt started in the batch with its end, when the end came later in the same
/// batch: such an attempt is inserted as it ended, its row written once instead of written and
/// then updated (which writes its indexes again). An end before a new start of the same number
/// (an interrupted attempt's, then its replacement's) is dropped: the start replaces that row,
/// as applied in turn. The ends left are updates.
fn with_ends<'a>(
    ops: &[&'a Op],
    starts: Vec<&'a Op>,
    finishes: Vec<&'a Op>,
) -> (Vec<(&'a Op, Option<&'a Op>)>, Vec<&'a Op>) {
    let starts = last_per_key(starts, attempt_key);
    let finishes = last_per_key(finishes, attempt_key);
    let last_at = |start: bool| -> HashMap<_, usize> {
        ops.iter()
            .enumerate()
            .filter(|(_, op)| match op {
                Op::StartAttempt { .. } => start,
                Op::FinishAttempt { .. } => !start,
                _ => false,
            })
            .map(|(i, op)| (attempt_key(op), i))
            .collect()
    };
    let (started_at, finished_at) = (last_at(true), last_at(false));
    let mut ended = HashMap::new();
    let mut left = Vec::new();
    for op in finishes {
        let key = attempt_key(op);
        match (started_at.get(&key), finished_at.get(&key)) {
            (Some(s), Some(f)) if s < f => {
                ended.insert(key, op);
            }
            (Some(_), Some(_)) => {}
            _ => left.push(op),
        }
    }
    let rows = starts
        .into_iter()
        .map(|op| (op, ended.get(&attempt_key(op)).copied()))
        .collect();
    (rows, left)
}

/// Remembers `id` as handed out for `table` (PostgreSQL has no `sqlite_sequence`), so it is
/// never handed out again even once deleted. Ids from the store's counter are marked already:
/// then neither statement writes or locks the counter's row, so the batches of workers that
/// all start runs do not queue behind each other on it. (Two statements: the update must see
/// a row another worker created after the insert began, which one statement's snapshot would
/// not; and `ON CONFLICT DO UPDATE ... WHERE` locks the row even when it changes nothing.)
fn mark_id(tx: &mut Db, table: &str, id: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO id_marks (name, last) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        args![table, id],
    )?;
    tx.execute(
        "UPDATE id_marks SET last = ?2 WHERE name = ?1 AND last < ?2",
        args![table, id],
    )?;
    Ok(())
}

/// The batch's updates of rows already stored, as one statement: attempts' ends, stage
/// statuses and run statuses (one row per run: see [`merge_runs`]), each group's columns bound
/// as one array each and joined to its table by key (planned as one index lookup per row; a
/// `VALUES` list of as many rows is planned as a scan of the whole table). A group with no
/// rows is bound as empty arrays. The three tables' rows are distinct, so one snapshot for the
/// three is as applying them in turn.
const UPDATES: &str = "WITH ends AS (
    UPDATE attempts a SET status = u.status, finished_at = u.finished_at,
      duration_ms = u.duration_ms, output = u.output, output_truncated = u.output_truncated,
      output_bytes = u.output_bytes, stderr = u.stderr, error_code = u.error_code,
      error_message = u.error_message
    FROM unnest(?1::bigint[], ?2::text[], ?3::bigint[], ?4::text[], ?5::text[], ?6::bigint[],
      ?7::text[], ?8::bigint[], ?9::bigint[], ?10::text[], ?11::text[], ?12::text[])
      AS u(run_id, stage_id, n, status, finished_at, duration_ms, output, output_truncated,
      output_bytes, stderr, error_code, error_message)
    WHERE a.run_id = u.run_id AND a.stage_id = u.stage_id AND a.n = u.n
  ), statuses AS (
    UPDATE stages s SET status = u.status
    FROM unnest(?13::bigint[], ?14::text[], ?15::text[]) AS u(run_id, stage_id, status)
    WHERE s.run_id = u.run_id AND s.stage_id = u.stage_id
  )
  UPDATE runs r SET status = u.status,
    started_at = COALESCE(r.started_at, u.started_at), finished_at = u.finished_at,
    owner = CASE WHEN u.status IN ('pending', 'running', 'interrupted') THEN r.owner END,
    cancel_requested = CASE WHEN u.status IN ('pending', 'running', 'interrupted')
      THEN r.cancel_requested END
  FROM unnest(?16::bigint[], ?17::text[], ?18::text[], ?19::text[])
    AS u(id, status, started_at, finished_at)
  WHERE r.id = u.id";

/// Binds the groups of [`UPDATES`] (each row's values in `row_vals` order); nothing when all
/// are empty.
fn updates(tx: &mut Db, ends: &[&Op], stages: &[&Op], runs: &[Op]) -> Result<()> {
    if ends.is_empty() && stages.is_empty() && runs.is_empty() {
        return Ok(());
    }
    let mut vals = columns_of(ends.iter().map(|op| row_vals(op)), 12);
    vals.extend(columns_of(stages.iter().map(|op| row_vals(op)), 3));
    vals.extend(columns_of(runs.iter().map(row_vals), 4));
    tx.execute_owned(UPDATES, vals).map(drop)
}

/// New runs, and their stages (all pending), as [`UPDATES`]: one statement for a burst of
/// runs, where one per run and one per run's stages were.
const INSERT_RUNS: &str = "WITH new_runs AS (
    INSERT INTO runs (id, pipeline, status, trigger, params, spec, created_at, stages_total,
      overrides, assets, test, test_input, owner)
    SELECT u.id, u.pipeline, 'pending', u.trigger, u.params, u.spec, u.created_at,
      u.stages_total, u.overrides, u.assets, u.test, u.test_input, u.owner
    FROM unnest(?1::bigint[], ?2::text[], ?3::text[], ?4::text[], ?5::text[], ?6::text[],
      ?7::bigint[], ?8::text[], ?9::text[], ?10::bigint[], ?11::text[], ?12::text[])
      AS u(id, pipeline, trigger, params, spec, created_at, stages_total, overrides, assets,
        test, test_input, owner)
  )
  INSERT INTO stages (run_id, stage_id, ord, kind, needs, status)
  SELECT u.run_id, u.stage_id, u.ord, u.kind, u.needs, 'pending'
  FROM unnest(?13::bigint[], ?14::text[], ?15::bigint[], ?16::text[], ?17::text[])
    AS u(run_id, stage_id, ord, kind, needs)";

/// The batch's new runs and their stages, each run with the worker that owns it from the
/// start (its [`Op::Own`] in `owners`, written with the row rather than after it: an update of
/// a run rewrites every index of `runs`).
fn insert_runs_postgres(tx: &mut Db, runs: &[&Op], owners: &HashMap<i64, &str>) -> Result<()> {
    let mut rows = Vec::with_capacity(runs.len());
    let mut stage_rows = Vec::new();
    for op in runs {
        let (Op::InsertRun { id, .. }, Some((mut run, stages))) = (op, new_run_rows(op)) else {
            continue;
        };
        run.push(owners.get(&id.0).copied().into());
        rows.push(run);
        stage_rows.extend(stages);
    }
    if rows.is_empty() {
        return Ok(());
    }
    let mut vals = columns_of(rows.into_iter(), 12);
    vals.extend(columns_of(stage_rows.into_iter(), 5));
    tx.execute_owned(INSERT_RUNS, vals).map(drop)
}

/// Runs `sql` once for all of `rows`, binding each column of their values as one array (its
/// `unnest` gives the rows back). An update through it must be given one row per key: a table
/// row joined to two array rows would take either.
fn many(tx: &mut Db, sql: &str, rows: impl Iterator<Item = Vec<Val>>) -> Result<()> {
    let arrays = columns(rows);
    if arrays.is_empty() {
        return Ok(());
    }
    tx.execute_owned(sql, arrays).map(drop)
}

/// `rows` of `width` values as `width` arrays (empty ones for no rows).
fn columns_of(rows: impl Iterator<Item = Vec<Val>>, width: usize) -> Vec<Val> {
    let mut out = columns(rows);
    if out.is_empty() {
        out = vec![Val::List(Vec::new()); width];
    }
    out
}

/// `rows` as one array per column (none for no rows).
fn columns(rows: impl Iterator<Item = Vec<Val>>) -> Vec<Val> {
    let mut columns: Vec<Vec<Val>> = Vec::new();
    for row in rows {
        if columns.is_empty() {
            columns = vec![Vec::new(); row.len()];
        }
        for (column, v) in columns.iter_mut().zip(row) {
            column.push(v);
        }
    }
    columns.into_iter().map(Val::List).collect()
}

/// A run's updates in a batch as one, as they would leave it applied in turn: the last
/// status and end, the first start (a start is only ever filled in once).
fn merge_runs(updates: &[&Op]) -> Vec<Op> {
    let mut out: Vec<Op> = Vec::new();
    let mut at = HashMap::new();
    for op in updates {
        let Op::UpdateRun {
            id,
            status,
            started_at,
            finished_at,
        } = op
        else {
            continue;
        };
        if let Some(Op::UpdateRun {
            status: s,
            started_at: st,
            finished_at: f,
            ..
        }) = at.get(&id.0).and_then(|&i: &usize| out.get_mut(i))
        {
            *s = *status;
            *st = st.or(*started_at);
            *f = *finished_at;
        } else {
            at.insert(id.0, out.len());
            out.push((*op).clone());
        }
    }
    out
}

fn attempt_key(op: &Op) -> (i64, String, u32) {
    match op {
        Op::StartAttempt {
            run_id, stage, n, ..
        }
        | Op::FinishAttempt {
            run_id, stage, n, ..
        } => (run_id.0, stage.clone(), *n),
        _ => (0, String::new(), 0),
    }
}

fn stage_key(op: &Op) -> (i64, String) {
    match op {
        Op::UpdateStage { run_id, stage, .. } => (run_id.0, stage.clone()),
        _ => (0, String::new()),
    }
}

/// New attempts on PostgreSQL, one array per column (one statement whatever their number),
/// each as it started or, when its end came in the same batch, as it ended. A new attempt
/// replaces whatever an interrupted one of the same number left.
const INSERT_ATTEMPTS: &str = "INSERT INTO attempts (run_id, stage_id, n, status, started_at,
    input, assets, finished_at, duration_ms, output, output_truncated, output_bytes, stderr,
    error_code, error_message)
  SELECT * FROM unnest(?1::bigint[], ?2::text[], ?3::bigint[], ?4::text[], ?5::text[],
    ?6::text[], ?7::text[], ?8::text[], ?9::bigint[], ?10::text[], ?11::bigint[], ?12::bigint[],
    ?13::text[], ?14::text[], ?15::text[])
  ON CONFLICT (run_id, stage_id, n) DO UPDATE SET status = excluded.status,
    started_at = excluded.started_at, input = excluded.input, assets = excluded.assets,
    finished_at = excluded.finished_at, duration_ms = excluded.duration_ms,
    output = excluded.output, output_truncated = excluded.output_truncated,
    output_bytes = excluded.output_bytes, stderr = excluded.stderr,
    error_code = excluded.error_code, error_message = excluded.error_message,
    pid = NULL, pid_start = NULL";

/// [`INSERT_ATTEMPTS`]: each start with its end, if the batch has it.
fn insert_attempts_postgres(tx: &mut Db, rows: &[(&Op, Option<&Op>)]) -> Result<()> {
    many(
        tx,
        INSERT_ATTEMPTS,
        rows.iter().map(|(start, end)| {
            let mut vals = start_vals(start);
            // The end's columns after its key, or those of an attempt still running.
            let mut rest = match end {
                Some(end) => row_vals(end).split_off(3),
                None => vec![
                    "running".into(),
                    Val::Null,
                    Val::Null,
                    Val::Null,
                    0_i64.into(),
                    Val::Null,
                    Val::Null,
                    Val::Null,
                    Val::Null,
                ],
            };
            // The status goes before the start's columns; the rest after them.
            let status = rest.remove(0);
            vals.insert(3, status);
            vals.extend(rest);
            vals
        }),
    )
}

/// New attempts (a new attempt replaces whatever an interrupted one of the same number left).
pub(super) fn insert_attempts(tx: &mut Db, starts: &[&Op]) -> Result<()> {
    if tx.dialect() == Dialect::Postgres {
        let rows: Vec<_> = starts.iter().map(|op| (*op, None)).collect();
        return insert_attempts_postgres(tx, &rows);
    }
    in_chunks(
        tx,
        starts,
        |size| {
            format!(
                "INSERT INTO attempts (run_id, stage_id, n, status, started_at, input, assets) VALUES {}
                 ON CONFLICT (run_id, stage_id, n) DO UPDATE SET status = 'running',
                   started_at = excluded.started_at, input = excluded.input, assets = excluded.assets,
                   finished_at = NULL, duration_ms = NULL, output = NULL, output_truncated = 0,
                   output_bytes = NULL, stderr = NULL, error_code = NULL, error_message = NULL,
                   pid = NULL, pid_start = NULL",
                rows_sql(size, 6, |p| {
                    format!(
                        "(?{}, ?{}, ?{}, 'running', ?{}, ?{}, ?{})",
                        p,
                        p + 1,
                        p + 2,
                        p + 3,
                        p + 4,
                        p + 5
                    )
                })
            )
        },
        |op| start_vals(op),
    )
}

fn start_vals(op: &Op) -> Vec<Val> {
    match op {
        Op::StartAttempt {
            run_id,
            stage,
            n,
            started_at,
            input,
            assets,
        } => args![
            run_id.0,
            stage.as_str(),
            *n,
            started_at.to_string(),
            input.as_str(),
            assets.as_deref()
        ]
        .to_vec(),
        _ => Vec::new(),
    }
}

/// The batch's events, numbered back from the counter's new value, and (kept) the others
/// numbered before them since `?1`. With the counter held, every event numbered before this
/// batch's is committed, and this statement (its snapshot taken after the counter's update)
/// sees them: those after the last one this worker has published (other workers') come back
/// with the commit, so they go out before this batch's own without a read of their own. Those
/// up to the last event this writer numbered (its receipt's, `?10`: see
/// [`writer`](super::writer)) are skipped too: a batch sent while the one before it is still on
/// its way must not fetch that one's events back
/// ([`Db::send_transaction`](super::db::Db::send_transaction)); whoever waits for this one has
/// published them by then. (The receipt outlives connections: should a batch's events not have
/// been read back after a lost answer, the others' events skipped with them are read from the
/// table to fill the gap before anything after them is published.)
const INSERT_EVENTS: &str = "WITH others AS (
    SELECT seq, at, kind, run_id, stage_id, data FROM events
    WHERE seq > GREATEST(?1, (SELECT numbered FROM write_receipts WHERE writer = ?10))
      AND seq <= (SELECT last FROM event_seq) - ?2 ORDER BY seq LIMIT ?3
  ), ins AS (
    INSERT INTO events (seq, at, kind, run_id, stage_id, data)
    SELECT c.last - u.before_last, u.at, u.kind, u.run_id, u.stage_id, u.data
    FROM event_seq c, unnest(?4::bigint[], ?5::text[], ?6::text[], ?7::bigint[], ?8::text[],
      ?9::text[]) AS u(before_last, at, kind, run_id, stage_id, data)
  )
  SELECT * FROM others ORDER BY seq";

fn insert_events(
    tx: &mut Db,
    evs: &[&NewEvent],
    published: u64,
    receipt: Option<&str>,
) -> Result<()> {
    let count = evs.len();
    let mut vals = args![
        i64::try_from(published).unwrap_or(i64::MAX),
        count,
        OTHERS_WITH_COMMIT
    ]
    .to_vec();
    vals.extend(columns_of(
        evs.iter().enumerate().map(|(i, e)| {
            vec![
                (count - 1 - i).into(),
                e.at.to_string().into(),
                e.kind.as_str().into(),
                e.run_id.map(|r| r.0).into(),
                e.stage.as_deref().into(),
                e.data.to_string().into(),
            ]
        }),
        6,
    ));
    vals.push(receipt.into());
    tx.keep_owned(INSERT_EVENTS, vals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_cut_into_a_few_sizes() {
        assert_eq!(chunks(0), Vec::<usize>::new());
        assert_eq!(chunks(1), [1]);
        assert_eq!(chunks(37), [32, 4, 1]);
        assert_eq!(chunks(130), [64, 64, 2]);
        assert_eq!(chunks(200).iter().sum::<usize>(), 200);
    }

    #[test]
    fn a_runs_updates_in_one_batch_leave_it_as_applied_in_turn() {
        use crate::model::{RunId, RunStatus, Timestamp};
        let at = |ms| Some(Timestamp::from_millis(ms));
        let update = |id, status, started_at, finished_at| Op::UpdateRun {
            id: RunId(id),
            status,
            started_at,
            finished_at,
        };
        let ops = [
            update(1, RunStatus::Running, at(10), None),
            update(2, RunStatus::Running, at(20), None),
            update(1, RunStatus::Running, at(30), None),
            update(1, RunStatus::Succeeded, None, at(40)),
        ];
        let refs: Vec<&Op> = ops.iter().collect();
        let merged = merge_runs(&refs);
        let want = [
            update(1, RunStatus::Succeeded, at(10), at(40)),
            update(2, RunStatus::Running, at(20), None),
        ];
        assert_eq!(format!("{merged:?}"), format!("{want:?}"));
    }

    #[test]
    fn an_attempt_that_starts_and_ends_in_one_batch_is_written_once() {
        use crate::model::{AttemptStatus, RunId, Timestamp};
        let start = |stage: &str, n| Op::StartAttempt {
            run_id: RunId(1),
            stage: stage.into(),
            n,
            started_at: Timestamp::from_millis(1),
            input: "{}".into(),
            assets: None,
        };
        let end = |stage: &str, n| Op::FinishAttempt {
            run_id: RunId(1),
            stage: stage.into(),
            n,
            status: AttemptStatus::Succeeded,
            finished_at: Timestamp::from_millis(2),
            duration_ms: 1,
            output: None,
            output_truncated: false,
            output_bytes: None,
            stderr: None,
            error: None,
        };
        // a: both here, in order; b: only its end (its start was in an earlier batch);
        // c: only its start; d: an end before a start of the same number (a new attempt
        // after an interrupted one): the start replaces the row, and the end is not applied
        // after it.
        let ops = [
            start("a", 1),
            end("b", 1),
            start("c", 1),
            end("a", 1),
            end("d", 1),
            start("d", 1),
        ];
        let refs: Vec<&Op> = ops.iter().collect();
        let starts = refs
            .iter()
            .copied()
            .filter(|o| matches!(o, Op::StartAttempt { .. }));
        let ends = refs
            .iter()
            .copied()
            .filter(|o| matches!(o, Op::FinishAttempt { .. }));
        let (rows, left) = with_ends(&refs, starts.collect(), ends.collect());
        let paired: Vec<(String, bool)> = rows
            .iter()
            .map(|(s, e)| (attempt_key(s).1, e.is_some()))
            .collect();
        assert_eq!(
            paired,
            [("a".into(), true), ("c".into(), false), ("d".into(), false)]
        );
        let left: Vec<String> = left.iter().map(|o| attempt_key(o).1).collect();
        assert_eq!(left, ["b"]);
    }

    #[test]
    fn the_last_write_to_a_key_wins_in_order_of_last_appearance() {
        let items = [(1, 'a'), (2, 'b'), (1, 'c'), (3, 'd'), (2, 'e')];
        let refs: Vec<&(i32, char)> = items.iter().collect();
        let kept: Vec<char> = last_per_key(refs, |i| i.0).iter().map(|i| i.1).collect();
        assert_eq!(kept, ['c', 'd', 'e']);
    }
}
