//! The writer's receipt (PostgreSQL): one row per writer, written by each of its batches inside
//! the batch's own transaction, naming the batch (its mark) and the last event it numbered.
//!
//! A connection that breaks while a batch's `COMMIT` is on its way leaves that batch in doubt:
//! the server may have committed it and lost only the answer. Committing it again would store
//! its events twice and fail its inserts on their own keys (a run started twice, or refused
//! though stored). After reconnecting, the writer reads its receipt instead: the batch
//! committed exactly when the receipt carries its mark, and then it is answered as committed
//! and its events are published from the table. The receipt is a row, not a setting of the
//! session, so it outlives the connection it was written on.
//!
//! A batch sent behind another checks the receipt first: it fails, before it takes a lock or
//! does any work, unless the receipt carries the mark of the one before it, so batches never
//! commit out of the order they were queued in.

use super::Result;
use super::db::{Db, args};

/// Fails the transaction unless the receipt carries `?2`: the batch sent before this one
/// committed. (A missing receipt fails it too.) The cast of the sentence is the error; a
/// constant there would fail when the statement is planned.
const CHECK: &str = "SELECT CAST(CASE WHEN (SELECT mark FROM write_receipts WHERE writer = ?1) = ?2
    THEN '0' ELSE 'the write batch sent before this one did not commit' END AS integer)";

/// Writes the receipt: the batch's mark, and the last event it numbered when it numbered any
/// (the transaction holds the counter's row then, so the counter's value is its last event).
const WRITE: &str = "INSERT INTO write_receipts (writer, mark, numbered, at_ms)
    VALUES (?1, ?2, NULL, CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT))
    ON CONFLICT (writer) DO UPDATE SET mark = EXCLUDED.mark, at_ms = EXCLUDED.at_ms";

/// [`WRITE`] for a batch that numbered events.
const WRITE_NUMBERED: &str = "INSERT INTO write_receipts (writer, mark, numbered, at_ms)
    SELECT ?1, ?2, last, CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT) FROM event_seq
    ON CONFLICT (writer) DO UPDATE SET mark = EXCLUDED.mark, numbered = EXCLUDED.numbered,
      at_ms = EXCLUDED.at_ms";

/// Receipts not written for this long belong to writers that are gone (a process killed
/// before it could remove its own): a writer removes them when it starts.
const STALE_MS: i64 = 24 * 60 * 60 * 1000;

/// One writer's receipt: its key, unique to the writer thread, and the marks it hands out.
#[derive(Debug)]
pub(super) struct Receipt {
    key: String,
    last: u64,
}

impl Receipt {
    /// A receipt no other writer has: the process id, 64 bits from the clock and that id, and
    /// how many writers this process started before (two may start within one clock tick).
    pub(super) fn new() -> Receipt {
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nth = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = crate::rng::Rng::from_entropy().next_u64();
        Receipt {
            key: format!("{}:{tag:016x}:{nth}", std::process::id()),
            last: 0,
        }
    }

    pub(super) fn key(&self) -> &str {
        &self.key
    }

    /// The mark of the next batch (never 0, which no batch carries; within `BIGINT`).
    pub(super) fn next(&mut self) -> u64 {
        self.last = if self.last >= i64::MAX.unsigned_abs() {
            1
        } else {
            self.last + 1
        };
        self.last
    }

    /// Inside a batch sent behind the one marked `after`: fails unless that one committed.
    pub(super) fn check(&self, tx: &mut Db, after: u64) -> Result<()> {
        tx.execute(CHECK, args![self.key.as_str(), mark_val(after)?])?;
        Ok(())
    }

    /// Inside the batch marked `mark`, last: commits with it.
    pub(super) fn write(&self, tx: &mut Db, mark: u64, numbered: bool) -> Result<()> {
        let sql = if numbered { WRITE_NUMBERED } else { WRITE };
        tx.execute(sql, args![self.key.as_str(), mark_val(mark)?])?;
        Ok(())
    }

    /// The mark of the last batch that committed (none written yet: `None`), read on a new
    /// connection once the one a batch went on broke.
    pub(super) fn read(&self, conn: &mut Db) -> Result<Option<u64>> {
        let mut rows = conn.rows(
            "SELECT mark FROM write_receipts WHERE writer = ?1",
            args![self.key.as_str()],
        )?;
        match rows.first_mut() {
            Some(r) => Ok(u64::try_from(r.i64(0)?).ok()),
            None => Ok(None),
        }
    }

    /// Removes receipts of writers gone for a day (best effort: a failure is logged).
    pub(super) fn sweep(conn: &mut Db) {
        let out = conn.execute(
            "DELETE FROM write_receipts
             WHERE at_ms < CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT) - ?1",
            args![STALE_MS],
        );
        if let Err(e) = out {
            tracing::warn!(error = %e, "could not remove the receipts of writers gone for a day");
        }
    }

    /// Removes this writer's receipt as it closes (best effort: a day later, others do).
    pub(super) fn remove(&self, conn: &mut Db) {
        let out = conn.execute(
            "DELETE FROM write_receipts WHERE writer = ?1",
            args![self.key.as_str()],
        );
        if let Err(e) = out {
            tracing::debug!(error = %e, "could not remove this writer's receipt");
        }
    }
}

/// A mark as the store keeps it (`BIGINT`).
fn mark_val(mark: u64) -> Result<i64> {
    i64::try_from(mark)
        .map_err(|_| super::StoreError(format!("write batch mark {mark} is out of range")))
}
