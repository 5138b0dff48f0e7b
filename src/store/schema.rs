//! Schema migrations, versioned in code: SQLite keeps the version in `PRAGMA user_version`,
//! PostgreSQL in the `opsdeck_schema` table. Each database has its own list, step for step the
//! same schema (PostgreSQL's integers are all `BIGINT`, so rows read the same from both).
//! Migrations only ever get appended: a released migration is never edited.

use super::db::{Db, args};
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
    // 5: each circuit breaker's last state, so a restarted host and every worker sharing the
    // store hold it; when a retrying stage is due (`retry_after`: the attempt it follows), so
    // its backoff holds on whichever host or worker resumes the run; each second of traffic a
    // worker's canary proxy saw, for the worker that drives the canaries to merge.
    r"
    CREATE TABLE breakers (
        target TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        opened_at TEXT,
        changed_at TEXT NOT NULL,
        worker TEXT
    );
    ALTER TABLE stages ADD COLUMN retry_at TEXT;
    ALTER TABLE stages ADD COLUMN retry_after INTEGER;
    CREATE TABLE canary_seconds (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        canary TEXT NOT NULL,
        worker TEXT NOT NULL,
        sec INTEGER NOT NULL,
        version TEXT NOT NULL,
        totals TEXT NOT NULL
    );
    ",
    // 6: nothing here (PostgreSQL lets go of the finished runs workers still owned).
    "",
    // 7: no index of running attempts: every query of them names the run (the primary key's
    // first column), and the index cost every attempt's start and end a write of its own.
    "DROP INDEX IF EXISTS attempts_running;",
    // 8: nothing here (PostgreSQL's write receipts: SQLite's one writer never loses an answer
    // it could not tell from a failure).
    "",
];

/// The same schema for PostgreSQL. Run and dead-letter ids come from `id_marks` (the highest
/// handed out, as SQLite's `sqlite_sequence` remembers), event numbers from `event_seq`: both
/// counters every worker shares. Audit and pin ids come from the database. `workers` and
/// each run's `owner` are how several workers share the runs (see `store::workers`).
const PG_MIGRATIONS: &[&str] = &[
    r"
    CREATE TABLE runs (
        id BIGINT PRIMARY KEY,
        pipeline TEXT NOT NULL,
        status TEXT NOT NULL,
        trigger TEXT NOT NULL,
        params TEXT NOT NULL,
        spec TEXT NOT NULL,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        stages_total BIGINT NOT NULL
    );
    CREATE INDEX runs_by_pipeline ON runs(pipeline, id);
    CREATE INDEX runs_by_status ON runs(status, id);
    CREATE TABLE stages (
        run_id BIGINT NOT NULL,
        stage_id TEXT NOT NULL,
        ord BIGINT NOT NULL,
        kind TEXT NOT NULL,
        needs TEXT NOT NULL,
        status TEXT NOT NULL,
        PRIMARY KEY (run_id, stage_id)
    );
    CREATE TABLE attempts (
        run_id BIGINT NOT NULL,
        stage_id TEXT NOT NULL,
        n BIGINT NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        duration_ms BIGINT,
        input TEXT NOT NULL,
        output TEXT,
        output_truncated BIGINT NOT NULL DEFAULT 0,
        output_bytes BIGINT,
        stderr TEXT,
        error_code TEXT,
        error_message TEXT,
        pid BIGINT,
        pid_start BIGINT,
        PRIMARY KEY (run_id, stage_id, n)
    );
    CREATE INDEX attempts_running ON attempts(status) WHERE status = 'running';
    CREATE TABLE events (
        seq BIGINT PRIMARY KEY,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        run_id BIGINT,
        stage_id TEXT,
        data TEXT NOT NULL
    );
    CREATE INDEX events_by_run ON events(run_id, seq);
    CREATE TABLE dlq (
        id BIGINT PRIMARY KEY,
        run_id BIGINT NOT NULL,
        pipeline TEXT NOT NULL,
        stage_id TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        input TEXT NOT NULL,
        error_code TEXT NOT NULL,
        error_message TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX dlq_by_run ON dlq(run_id);
    CREATE TABLE id_marks (
        name TEXT PRIMARY KEY,
        last BIGINT NOT NULL
    );
    CREATE TABLE event_seq (last BIGINT NOT NULL);
    INSERT INTO event_seq (last) VALUES (0);
    CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid BIGINT NOT NULL,
        address TEXT,
        started_at TEXT NOT NULL,
        heartbeat_ms BIGINT NOT NULL,
        lease_until_ms BIGINT NOT NULL,
        max_in_flight BIGINT NOT NULL,
        in_flight BIGINT NOT NULL DEFAULT 0
    );
    ALTER TABLE runs ADD COLUMN owner TEXT;
    ALTER TABLE runs ADD COLUMN cancel_requested TEXT;
    CREATE INDEX runs_unowned ON runs(id) WHERE owner IS NULL AND status IN ('pending', 'interrupted');
    CREATE INDEX runs_by_owner ON runs(owner) WHERE owner IS NOT NULL;
    CREATE TABLE schedule_fires (
        pipeline TEXT NOT NULL,
        tick TEXT NOT NULL,
        PRIMARY KEY (pipeline, tick)
    );
    ",
    r"
    CREATE TABLE canaries (
        name TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        status TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE audit (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        role TEXT,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        reason TEXT NOT NULL,
        outcome TEXT NOT NULL,
        details TEXT NOT NULL
    );
    CREATE FUNCTION opsdeck_audit_append_only() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'the audit log is append-only'; END;
    $$ LANGUAGE plpgsql;
    CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
        FOR EACH ROW EXECUTE FUNCTION opsdeck_audit_append_only();
    ",
    r"
    ALTER TABLE audit ADD COLUMN via TEXT;
    CREATE INDEX audit_by_at ON audit(at);
    ",
    r"
    CREATE TABLE assets (
        name TEXT NOT NULL,
        version BIGINT NOT NULL,
        content TEXT NOT NULL,
        created_at TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE asset_pins (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL,
        version BIGINT NOT NULL,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        undone BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX asset_pins_by_name ON asset_pins(name, id);
    ALTER TABLE runs ADD COLUMN overrides TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE runs ADD COLUMN assets TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE runs ADD COLUMN test BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN test_input TEXT;
    ALTER TABLE attempts ADD COLUMN assets TEXT;
    CREATE INDEX runs_production ON runs(id) WHERE test = 0;
    CREATE INDEX runs_production_by_pipeline ON runs(pipeline, id) WHERE test = 0;
    CREATE INDEX runs_production_by_status ON runs(status, id) WHERE test = 0;
    ",
    // 5: breakers; and the fence every worker's write passes: it holds the worker's row (a
    // worker whose runs were taken has none), so no write lands after its runs moved.
    r"
    CREATE TABLE breakers (
        target TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        opened_at TEXT,
        changed_at TEXT NOT NULL,
        worker TEXT
    );
    ALTER TABLE stages ADD COLUMN retry_at TEXT;
    ALTER TABLE stages ADD COLUMN retry_after BIGINT;
    CREATE TABLE canary_seconds (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        canary TEXT NOT NULL,
        worker TEXT NOT NULL,
        sec BIGINT NOT NULL,
        version TEXT NOT NULL,
        totals TEXT NOT NULL
    );
    CREATE FUNCTION opsdeck_fence(me TEXT) RETURNS void AS $$
        BEGIN
            PERFORM 1 FROM workers WHERE id = me FOR KEY SHARE;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'worker % no longer holds its lease: other workers took its runs', me;
            END IF;
        END;
    $$ LANGUAGE plpgsql;
    ",
    // 6: a finished run is no worker's (the one that drove it could otherwise refuse it a
    // retry by another while it lives, and the index of runs by worker would keep every run
    // it ever drove), and a cancellation asked of it is moot (it would cancel a retry): what
    // earlier versions left is let go.
    r"
    UPDATE runs SET owner = NULL, cancel_requested = NULL
        WHERE (owner IS NOT NULL OR cancel_requested IS NOT NULL)
          AND status NOT IN ('pending', 'running', 'interrupted');
    ",
    // 7: as SQLite's 7, and then an attempt's end and a stage's new status change no indexed
    // column: with room left on their pages the new row version goes beside the old one and
    // no index is written (a stage's status changes twice or more, an attempt ends once). A
    // run's definition (kilobytes of JSON) is compressed with LZ4 where the server has it
    // (PostgreSQL 14 and later, built with it), several times cheaper than the default for the
    // same size. Both apply to rows written from then on.
    r"
    DROP INDEX IF EXISTS attempts_running;
    ALTER TABLE stages SET (fillfactor = 70);
    ALTER TABLE attempts SET (fillfactor = 80);
    DO $$ BEGIN
        IF current_setting('server_version_num')::int >= 140000 THEN
            EXECUTE 'ALTER TABLE runs ALTER COLUMN spec SET COMPRESSION lz4';
        END IF;
    EXCEPTION WHEN feature_not_supported THEN NULL;
    END $$;
    ",
    // 8: each writer's receipt: the mark of its last committed batch and the last event that
    // batch numbered, written inside the batch's own transaction. After a lost connection it
    // says whether the batch in doubt committed (see `store::writer`).
    r"
    CREATE TABLE IF NOT EXISTS write_receipts (
        writer TEXT PRIMARY KEY,
        mark BIGINT NOT NULL,
        numbered BIGINT,
        at_ms BIGINT NOT NULL
    );
    ",
];

/// The schema version this binary writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

const _: () = assert!(PG_MIGRATIONS.len() == MIGRATIONS.len());

fn newer(current: i64) -> StoreError {
    StoreError(format!(
        "the state database has schema version {current}, newer than this opsdeck understands ({VERSION}); upgrade opsdeck"
    ))
}

/// Brings the database up to [`VERSION`]. SQLite: each migration in its own transaction.
/// PostgreSQL: all in one transaction under an advisory lock, so workers starting together
/// migrate once.
pub fn migrate(db: &mut Db) -> Result<()> {
    match db {
        Db::Sqlite(conn) => {
            let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if current > VERSION {
                return Err(newer(current));
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
                let tx = conn.transaction()?;
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", i as i64 + 1)?;
                tx.commit()?;
            }
            Ok(())
        }
        Db::Postgres(_) => db.transaction(|tx| {
            tx.batch(
                "SELECT pg_advisory_xact_lock(7370746865);
                 CREATE TABLE IF NOT EXISTS opsdeck_schema (version BIGINT NOT NULL)",
            )?;
            let current = version(tx)?;
            if current > VERSION {
                return Err(newer(current));
            }
            for sql in PG_MIGRATIONS.iter().skip(current.unsigned_abs() as usize) {
                tx.batch(sql)?;
            }
            tx.execute("DELETE FROM opsdeck_schema", &[])?;
            tx.execute(
                "INSERT INTO opsdeck_schema (version) VALUES (?1)",
                args![VERSION],
            )?;
            Ok(())
        }),
    }
}

/// The schema version a store has (0: none yet).
pub fn version(db: &mut Db) -> Result<i64> {
    match db {
        Db::Sqlite(conn) => Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?),
        Db::Postgres(_) => {
            let exists = db
                .one("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'opsdeck_schema'", &[])?
                .i64(0)?;
            if exists == 0 {
                return Ok(0);
            }
            db.one("SELECT COALESCE(MAX(version), 0) FROM opsdeck_schema", &[])?
                .i64(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_databases() {
        let mut db = Db::Sqlite(rusqlite::Connection::open_in_memory().unwrap());
        migrate(&mut db).unwrap();
        migrate(&mut db).unwrap();
        assert_eq!(version(&mut db).unwrap(), VERSION);
        db.batch(&format!("PRAGMA user_version = {}", VERSION + 1))
            .unwrap();
        assert!(migrate(&mut db).unwrap_err().0.contains("upgrade opsdeck"));
    }
}
