//! Schema migrations, versioned in code with `PRAGMA user_version`. Migrations only ever get
//! appended: a released migration is never edited.

use rusqlite::Connection;

use super::{Result, StoreError};

const MIGRATIONS: &[&str] = &[
    // 1: runs, stages, attempts, events, dead-letter queue.
    r"
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        pipeline TEXT NOT NULL,
        status TEXT NOT NULL,
        trigger TEXT NOT NULL,
        params TEXT NOT NULL,
        spec TEXT NOT NULL,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        stages_total INTEGER NOT NULL
    );
    CREATE INDEX runs_by_pipeline ON runs(pipeline, id);
    CREATE INDEX runs_by_status ON runs(status, id);
    CREATE TABLE stages (
        run_id INTEGER NOT NULL,
        stage_id TEXT NOT NULL,
        ord INTEGER NOT NULL,
        kind TEXT NOT NULL,
        needs TEXT NOT NULL,
        status TEXT NOT NULL,
        PRIMARY KEY (run_id, stage_id)
    );
    CREATE TABLE attempts (
        run_id INTEGER NOT NULL,
        stage_id TEXT NOT NULL,
        n INTEGER NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        duration_ms INTEGER,
        input TEXT NOT NULL,
        output TEXT,
        output_truncated INTEGER NOT NULL DEFAULT 0,
        output_bytes INTEGER,
        stderr TEXT,
        error_code TEXT,
        error_message TEXT,
        pid INTEGER,
        pid_start INTEGER,
        PRIMARY KEY (run_id, stage_id, n)
    );
    CREATE INDEX attempts_running ON attempts(status) WHERE status = 'running';
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        run_id INTEGER,
        stage_id TEXT,
        data TEXT NOT NULL
    );
    CREATE INDEX events_by_run ON events(run_id, seq);
    CREATE TABLE dlq (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL,
        pipeline TEXT NOT NULL,
        stage_id TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        input TEXT NOT NULL,
        error_code TEXT NOT NULL,
        error_message TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX dlq_by_run ON dlq(run_id);
    ",
    // 2: canary rollouts (the controller's saved state and the last status) and the audit log.
    r"
    CREATE TABLE canaries (
        name TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        status TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        role TEXT,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        reason TEXT NOT NULL,
        outcome TEXT NOT NULL,
        details TEXT NOT NULL
    );
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    ",
    // 3: how each audited command arrived (dashboard, cli, api, automatic), and reads by time.
    r"
    ALTER TABLE audit ADD COLUMN via TEXT;
    CREATE INDEX audit_by_at ON audit(at);
    ",
    // 4: versioned assets and their pins; which versions a run was told to use (overrides)
    // and each stage resolved; isolated stage tests kept apart from production runs.
    r"
    CREATE TABLE assets (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        content TEXT NOT NULL,
        created_at TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE asset_pins (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        undone INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX asset_pins_by_name ON asset_pins(name, id);
    ALTER TABLE runs ADD COLUMN overrides TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE runs ADD COLUMN assets TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE runs ADD COLUMN test INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN test_input TEXT;
    ALTER TABLE attempts ADD COLUMN assets TEXT;
    CREATE INDEX runs_production ON runs(id) WHERE test = 0;
    CREATE INDEX runs_production_by_pipeline ON runs(pipeline, id) WHERE test = 0;
    CREATE INDEX runs_production_by_status ON runs(status, id) WHERE test = 0;
    ",
];

/// The schema version this binary writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`VERSION`], each migration in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > VERSION {
        return Err(StoreError(format!(
            "the state database has schema version {current}, newer than this opsdeck understands ({VERSION}); upgrade opsdeck"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_databases() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, VERSION);
        conn.pragma_update(None, "user_version", VERSION + 1)
            .unwrap();
        assert!(
            migrate(&mut conn)
                .unwrap_err()
                .0
                .contains("upgrade opsdeck")
        );
    }
}
