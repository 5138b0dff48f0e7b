//! Durable state in SQLite (WAL): runs, stages, every attempt, the dead-letter queue and the
//! event log. One writer thread owns the write connection and batches requests into
//! transactions; readers open their own connections and never block it.

mod assets;
pub mod backup;
mod batch;
mod claims;
pub mod db;
pub mod migrate;
mod queries;
mod receipt;
mod recovery;
pub mod schema;
pub mod workers;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use assets::{AssetRow, no_asset};
pub use claims::Claimer;
pub use db::{Db, Dialect};
pub use queries::{CountCache, LoadedRun, LoadedStage, ReadPool, Reader};
pub use recovery::{Orphan, mark_interrupted};
pub use writer::{IdKind, NewEvent, NewStage, Op, Reopen, Writer, WriterThread};

/// A store failure, as one sentence. Cloneable so a batch failure can be reported to every
/// request in the batch.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(format!("state database error: {e}"))
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError(format!("state database holds malformed JSON: {e}"))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Opens a connection with the pragmas every connection needs. `synchronous = NORMAL` in WAL
/// mode keeps every committed transaction across a process crash (`kill -9`); only a power
/// loss can lose the last commits.
pub fn connect(path: &Path, writable: bool) -> Result<Connection> {
    let flags = if writable {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        StoreError(format!(
            "cannot open the state database {}: {e}",
            path.display()
        ))
    })?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    if writable {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    } else {
        conn.pragma_update(None, "query_only", true)?;
    }
    Ok(conn)
}

/// [`connect`], as a store connection.
pub fn open_sqlite(path: &Path, writable: bool) -> Result<Db> {
    Ok(Db::Sqlite(connect(path, writable)?))
}

/// Where a host keeps its state: the workspace's SQLite file, or a PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Sqlite(PathBuf),
    /// A connection string (`postgres://user@host:port/db`).
    Postgres(String),
}

impl Target {
    /// A connection for writing (the writer thread, recovery, migrations).
    pub fn writer(&self) -> Result<Db> {
        match self {
            Target::Sqlite(path) => open_sqlite(path, true),
            Target::Postgres(url) => {
                let mut db = Db::postgres(url)?;
                // The writes of many rows (`batch`) find their rows by key. Planned as a join,
                // one could be planned (and its plan kept) as a scan of the whole table while
                // that is small, and go on scanning it once it is not, for every batch until
                // the table's statistics are next gathered (a minute or more; seen as a 4 ms
                // update of 10 runs in a store of 6,000): on this connection a nested loop
                // over the key's index is the plan, whatever the statistics say. (A scan left
                // as the only way, as of the one-row counter, is costed far above the
                // threshold past which the server compiles a statement's expressions each
                // time it runs, which takes longer than these statements: no compiling.)
                db.batch(
                    "SET enable_hashjoin = off; SET enable_mergejoin = off; SET enable_seqscan = off; SET jit = off",
                )?;
                Ok(db)
            }
        }
    }

    /// A connection that only reads.
    pub fn reader(&self) -> Result<Reader> {
        match self {
            Target::Sqlite(path) => Reader::open(path),
            Target::Postgres(url) => {
                let mut db = Db::postgres(url)?;
                db.batch("SET default_transaction_read_only = on")?;
                Ok(Reader::on(db))
            }
        }
    }

    /// The store as a sentence names it (a PostgreSQL password is never shown).
    pub fn describe(&self) -> String {
        match self {
            Target::Sqlite(path) => path.display().to_string(),
            Target::Postgres(url) => db::redact(url),
        }
    }
}

/// Cuts text longer than `limit` bytes at a character boundary and appends a marker saying so.
/// Returns the text, whether it was cut, and the original size.
pub fn clip(text: String, limit: usize) -> (String, bool, u64) {
    let total = text.len() as u64;
    if text.len() <= limit {
        return (text, false, total);
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = text;
    out.truncate(cut);
    out.push_str(&marker(cut, total));
    (out, true, total)
}

/// The marker appended wherever opsdeck keeps only the head of something.
pub fn marker(kept: usize, total: u64) -> String {
    format!("…[truncated by opsdeck: kept {kept} of {total} bytes]")
}

/// Serialises a JSON value for storage, clipping it to `limit` bytes. A clipped value is no
/// longer valid JSON, so it is stored as a JSON string holding the clipped text.
pub fn clip_json(value: &serde_json::Value, limit: usize) -> (String, bool, u64) {
    let text = value.to_string();
    let (clipped, cut, total) = clip(text, limit);
    if cut {
        (serde_json::Value::String(clipped).to_string(), true, total)
    } else {
        (clipped, false, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_char_boundaries_and_marks_the_cut() {
        let (t, cut, total) = clip("héllo world".to_string(), 2);
        assert!(cut);
        assert_eq!(total, 12);
        assert_eq!(t, "h…[truncated by opsdeck: kept 1 of 12 bytes]");
        let (t, cut, _) = clip("short".to_string(), 10);
        assert_eq!((t.as_str(), cut), ("short", false));
    }

    #[test]
    fn clipped_json_is_still_json() {
        let v = serde_json::json!({"rows": "x".repeat(100)});
        let (t, cut, total) = clip_json(&v, 20);
        assert!(cut);
        assert_eq!(total, v.to_string().len() as u64);
        let back: serde_json::Value = serde_json::from_str(&t).unwrap();
        assert!(back.as_str().unwrap().starts_with("{\"rows\":\"xxxxxxx"));
    }
}
