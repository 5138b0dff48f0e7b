//! A write batch on PostgreSQL, as few statements as its rows allow (and the multi-row insert
//! both stores use for a new run's stages). Every statement costs the
//! server its own round of work (bind, executor start, end), which on a busy store is most of
//! what a write costs; so the many small writes of a batch (attempts started and finished,
//! stage statuses, events) go as multi-row statements, grouped by table in an order that keeps
//! every dependency between them: new runs first, then the writes the batch holds in between
//! (in their own order), then new attempts, the processes and ends of attempts, stage
//! statuses, run statuses, and last the events, numbered in the order they were submitted.
//! A batch that writes the same row twice keeps the last write, as one after the other would.

use super::Result;
use super::db::{Db, Val, args};
use super::writer::{NewEvent, Op, apply_op};

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
        tx.execute(&sql_for(size), &bound)?;
        from += size;
    }
    Ok(())
}

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
/// so it is held for as little of the transaction as can be.
pub(super) fn apply_postgres(tx: &mut Db, ops: &[&Op], events: usize) -> Result<()> {
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
    for op in ops {
        match op {
            Op::InsertRun { .. } => runs.push(*op),
            Op::StartAttempt { .. } => starts.push(*op),
            Op::AttemptProcess { .. } => processes.push(*op),
            Op::FinishAttempt { .. } => finishes.push(*op),
            Op::UpdateStage { .. } => stages.push(*op),
            Op::UpdateRun { .. } => run_updates.push(*op),
            Op::Event(e) => evs.push(e),
            _ => between.push(*op),
        }
    }
    for op in runs.into_iter().chain(between) {
        apply_op(tx, op, 0, &mut Vec::new())?;
    }
    insert_attempts(tx, &last_per_key(starts, attempt_key))?;
    for op in processes {
        apply_op(tx, op, 0, &mut Vec::new())?;
    }
    // Updates one statement a row: a many-row `UPDATE ... FROM (VALUES ...)` is planned as a
    // scan of the whole table once it names more than a few rows.
    for op in last_per_key(finishes, attempt_key)
        .into_iter()
        .chain(last_per_key(stages, stage_key))
    {
        apply_op(tx, op, 0, &mut Vec::new())?;
    }
    for op in run_updates {
        apply_op(tx, op, 0, &mut Vec::new())?;
    }
    if evs.is_empty() {
        return Ok(());
    }
    tx.execute("UPDATE event_seq SET last = last + ?1", args![evs.len()])?;
    // Other workers' streams wake on this, sent when the transaction commits.
    tx.execute("SELECT pg_notify('opsdeck_events', '')", &[])?;
    insert_events(tx, &evs)
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

/// New attempts (a new attempt replaces whatever an interrupted one of the same number left).
pub(super) fn insert_attempts(tx: &mut Db, starts: &[&Op]) -> Result<()> {
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
        |op| match op {
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
        },
    )
}

/// The events, numbered below the counter's new value in the order they were submitted.
fn insert_events(tx: &mut Db, evs: &[&NewEvent]) -> Result<()> {
    let numbered: Vec<(usize, &NewEvent)> = evs
        .iter()
        .enumerate()
        .map(|(i, e)| (evs.len() - 1 - i, *e))
        .collect();
    in_chunks(
        tx,
        &numbered,
        |size| {
            format!(
                "INSERT INTO events (seq, at, kind, run_id, stage_id, data) VALUES {}",
                rows_sql(size, 6, |p| format!(
                    "((SELECT last FROM event_seq) - ?{}, ?{}, ?{}, ?{}, ?{}, ?{})",
                    p,
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5
                ))
            )
        },
        |(before_last, e)| {
            vec![
                (*before_last).into(),
                e.at.to_string().into(),
                e.kind.as_str().into(),
                e.run_id.map(|r| r.0).into(),
                e.stage.as_deref().into(),
                e.data.to_string().into(),
            ]
        },
    )
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
    fn the_last_write_to_a_key_wins_in_order_of_last_appearance() {
        let items = [(1, 'a'), (2, 'b'), (1, 'c'), (3, 'd'), (2, 'e')];
        let refs: Vec<&(i32, char)> = items.iter().collect();
        let kept: Vec<char> = last_per_key(refs, |i| i.0).iter().map(|i| i.1).collect();
        assert_eq!(kept, ['c', 'd', 'e']);
    }
}
