//! Copies of a SQLite store: a consistent backup taken while a host writes to it (SQLite's
//! online backup API, page by page between the writer's transactions), and a restore that
//! checks the copy before it replaces anything.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{Result, StoreError, schema};

/// Pages copied per step; between steps the writer may commit.
const PAGES_PER_STEP: std::ffi::c_int = 256;

/// Writes a consistent copy of the store at `db` to `to` (a new file: it is written beside
/// and renamed into place, so a failed backup leaves nothing).
pub fn backup(db: &Path, to: &Path) -> Result<u64> {
    let src = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| StoreError(format!("cannot open the store {}: {e}", db.display())))?;
    let tmp = to.with_extension("partial");
    let result = (|| -> Result<u64> {
        let mut dst = Connection::open(&tmp)?;
        {
            let b = rusqlite::backup::Backup::new(&src, &mut dst)?;
            b.run_to_completion(PAGES_PER_STEP, Duration::from_millis(5), None)?;
        }
        let runs: i64 = dst.query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))?;
        drop(dst);
        std::fs::rename(&tmp, to)
            .map_err(|e| StoreError(format!("cannot write {}: {e}", to.display())))?;
        Ok(runs.unsigned_abs())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What a backup file holds, once checked: its schema version and number of runs.
pub struct Checked {
    pub version: i64,
    pub runs: u64,
}

/// Checks that `file` is an opsdeck store this binary can use: a SQLite database that passes
/// its integrity check, with a schema version no newer than this opsdeck's.
pub fn check(file: &Path) -> Result<Checked> {
    let shown = file.display();
    let conn = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| StoreError(format!("cannot open {shown}: {e}")))?;
    let not_store =
        |e: rusqlite::Error| StoreError(format!("{shown} is not an opsdeck store ({e})"));
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(not_store)?;
    if integrity != "ok" {
        return Err(StoreError(format!(
            "{shown} fails SQLite's integrity check: {integrity}"
        )));
    }
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(not_store)?;
    if version > schema::VERSION {
        return Err(StoreError(format!(
            "{shown} has schema version {version}, newer than this opsdeck understands ({}); upgrade opsdeck",
            schema::VERSION
        )));
    }
    if version < 1 {
        return Err(StoreError(format!(
            "{shown} is not an opsdeck store (it has no opsdeck schema)"
        )));
    }
    let runs: i64 = conn
        .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
        .map_err(not_store)?;
    Ok(Checked {
        version,
        runs: runs.unsigned_abs(),
    })
}

/// Replaces the store at `db` with the checked copy `file`, through SQLite (so the live
/// database's journal stays consistent), brings it up to this binary's schema, and appends
/// `audit` (who restored it, from where) to the restored log with its event. The caller holds
/// the workspace lock.
pub fn restore(file: &Path, db: &Path, audit: crate::model::AuditRecord) -> Result<Checked> {
    let checked = check(file)?;
    let src = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut dst = super::connect(db, true)?;
    {
        let b = rusqlite::backup::Backup::new(&src, &mut dst)?;
        b.run_to_completion(PAGES_PER_STEP, Duration::from_millis(5), None)?;
    }
    let mut dst = super::Db::Sqlite(dst);
    schema::migrate(&mut dst)?;
    super::writer::apply_offline(&mut dst, &super::Op::audited(audit, None))?;
    Ok(checked)
}
