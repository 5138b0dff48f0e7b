//! `opsdeck store backup` while a host writes, and `opsdeck store restore` with its checks.

use crate::support::{ETL, TestWorkspace, free_port, serve, stop};

#[test]
fn a_backup_is_taken_while_hosted_and_restored_only_when_nobody_hosts() {
    let ws = TestWorkspace::new();
    ws.pipeline("etl", ETL);
    let copy = ws.path("copy.db");
    let c = copy.to_str().unwrap();
    ws.run(&["store", "backup", c])
        .expect_error(2, "has no store yet");
    ws.run(&["run", "etl"]).expect_code(0);
    ws.run(&["run", "etl"]).expect_code(0);

    // While `serve` hosts (and writes to) the workspace, the copy is consistent and whole.
    let child = serve(&ws, free_port());
    let out = ws.run(&["store", "backup", c]);
    out.expect_code(0);
    assert!(out.stdout().contains("with 2 runs"), "{}", out.stdout());
    ws.run(&["store", "restore", c])
        .expect_error(2, "a host holds this workspace");
    stop(child);

    ws.run(&["run", "etl"]).expect_code(0);
    assert_eq!(
        ws.run(&["runs", "--json"]).json().as_array().unwrap().len(),
        3
    );
    let out = ws.run(&["store", "restore", c]);
    out.expect_code(0);
    assert!(out.stdout().contains("2 runs"), "{}", out.stdout());
    let runs = ws.run(&["runs", "--json"]).json();
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
    // The restore is in the restored audit log, with who did it and from where.
    let rows = crate::support::audit_rows(&ws, "store", ["action", "actor", "reason"]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str()),
        ("store.restore", "alice")
    );
    assert!(rows[0].2.contains("copy.db"), "{rows:?}");
    // The restored store works: a new run is recorded after the copied ones.
    ws.run(&["run", "etl"]).expect_code(0);
    assert_eq!(
        ws.run(&["runs", "--json"]).json().as_array().unwrap().len(),
        3
    );
}

#[test]
fn a_restore_refuses_what_is_not_a_usable_store_and_changes_nothing() {
    let ws = TestWorkspace::new();
    ws.pipeline("etl", ETL);
    ws.run(&["run", "etl"]).expect_code(0);
    let text = ws.path("notes.txt");
    std::fs::write(&text, "not a database at all, just some words").unwrap();
    ws.run(&["store", "restore", text.to_str().unwrap()])
        .expect_error(2, "is not an opsdeck store");
    let newer = ws.path("newer.db");
    {
        let conn = rusqlite::Connection::open(&newer).unwrap();
        conn.execute_batch("CREATE TABLE runs (id INTEGER); PRAGMA user_version = 99;")
            .unwrap();
    }
    ws.run(&["store", "restore", newer.to_str().unwrap()])
        .expect_error(2, "newer than this opsdeck understands");
    let empty = ws.path("empty.db");
    rusqlite::Connection::open(&empty)
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER);")
        .unwrap();
    ws.run(&["store", "restore", empty.to_str().unwrap()])
        .expect_error(2, "no opsdeck schema");
    ws.run(&["store", "restore", ws.path("missing.db").to_str().unwrap()])
        .expect_error(2, "is not a file");
    assert_eq!(
        ws.run(&["runs", "--json"]).json().as_array().unwrap().len(),
        1
    );
}
