//! Copies a SQLite store into an empty PostgreSQL one, table by table in one transaction, and
//! checks that every table holds as many rows on both sides.

use std::path::Path;

use super::db::{Db, Dialect, Val, args};
use super::{Result, StoreError, schema};

/// The tables a store holds, parents first.
pub const TABLES: &[&str] = &[
    "runs",
    "stages",
    "attempts",
    "events",
    "dlq",
    "canaries",
    "audit",
    "assets",
    "asset_pins",
    "breakers",
];

/// Rows copied per table, in [`TABLES`] order.
pub type Counts = Vec<(&'static str, u64)>;

/// Copies the SQLite store at `from` into `to` (migrated first; refused unless empty), then
/// appends `audit` there with its event. Returns each table's row count, the same on both.
pub fn sqlite_to(from: &Path, to: &mut Db, audit: crate::model::AuditRecord) -> Result<Counts> {
    let mut src = super::open_sqlite(from, false)?;
    if schema::version(&mut src)? != schema::VERSION {
        return Err(StoreError(format!(
            "the store {} has schema version {}, not this opsdeck's {}; start and stop a host on it once to bring it up to date",
            from.display(),
            schema::version(&mut src)?,
            schema::VERSION
        )));
    }
    schema::migrate(to)?;
    let held: u64 = TABLES.iter().map(|t| count(to, t)).sum::<Result<u64>>()?;
    if held > 0 {
        return Err(StoreError(format!(
            "the target store already holds {held} rows; migrate into an empty database"
        )));
    }
    to.transaction(|tx| {
        for table in TABLES {
            copy(&mut src, tx, table)?;
        }
        if tx.dialect() == Dialect::Postgres {
            // Ids the database hands out continue after the copied ones; ids the host hands
            // out are never reused (deleted dead-letter entries included).
            for table in ["audit", "asset_pins"] {
                tx.execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                    ),
                    &[],
                )?;
            }
            tx.execute(
                "UPDATE event_seq SET last = (SELECT COALESCE(MAX(seq), 0) FROM events)",
                &[],
            )?;
            for mut r in src.rows("SELECT name, seq FROM sqlite_sequence WHERE name IN ('runs', 'dlq')", &[])? {
                tx.execute(
                    "INSERT INTO id_marks (name, last) VALUES (?1, ?2)",
                    args![r.text(0)?, r.i64(1)?],
                )?;
            }
        }
        Ok(())
    })?;
    let mut counts = Vec::new();
    for table in TABLES {
        let (a, b) = (count(&mut src, table)?, count(to, table)?);
        if a != b {
            return Err(StoreError(format!(
                "after the copy `{table}` has {b} rows in the target but {a} in {}",
                from.display()
            )));
        }
        counts.push((*table, a));
    }
    super::writer::apply_offline(to, &super::Op::audited(audit, None))?;
    Ok(counts)
}

fn count(db: &mut Db, table: &str) -> Result<u64> {
    Ok(db
        .one(&format!("SELECT COUNT(*) FROM {table}"), &[])?
        .i64(0)?
        .unsigned_abs())
}

/// Copies one table's rows, in key order, column for column by name.
fn copy(src: &mut Db, to: &mut Db, table: &str) -> Result<()> {
    let columns: Vec<String> = src
        .rows(
            &format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"),
            &[],
        )?
        .into_iter()
        .map(|mut r| r.text(0))
        .collect::<Result<_>>()?;
    let list = columns.join(", ");
    let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
    let insert = format!("INSERT INTO {table} ({list}) VALUES ({})", marks.join(", "));
    // Pages by rowid, so a large store is never read into memory at once.
    let mut after = i64::MIN;
    loop {
        let rows = src.rows(
            &format!(
                "SELECT rowid, {list} FROM {table} WHERE rowid > ?1 ORDER BY rowid LIMIT 1000"
            ),
            args![after],
        )?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = match last.0.first() {
            Some(Val::Int(id)) => *id,
            _ => return Err(StoreError(format!("`{table}` has a row without a rowid"))),
        };
        for r in rows {
            to.execute(&insert, &r.0[1..])?;
        }
    }
}
