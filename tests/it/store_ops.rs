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

/// A backup taken while 100 runs are in flight is a sound store holding every run committed
/// before it began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_during_a_hundred_running_runs_holds_every_run_committed_before_it() {
    let ws = TestWorkspace::new();
    ws.pipeline(
        "slow",
        "[pipeline]\nname = \"slow\"\nconcurrency = 200\n[[stage]]\nid = \"a\"\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"sleep 0.3; echo '{}'\"]\n[[stage]]\nid = \"b\"\nkind = \"command\"\nneeds = [\"a\"]\ncommand = [\"sh\", \"-c\", \"sleep 0.3; echo '{}'\"]\n",
    );
    let host = ws.host().await;
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(
            host.start_run(
                "slow",
                &serde_json::Map::new(),
                opsdeck::model::Trigger::Manual,
            )
            .await
            .unwrap(),
        );
    }
    // What is committed now must be in the copy; the runs go on while it is taken.
    let committed = host
        .runs(opsdeck::model::RunQuery {
            limit: 1_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .total;
    assert_eq!(committed, 100);
    let copy = ws.path("during.db");
    let db = ws.open().db_path();
    let copied = tokio::task::spawn_blocking({
        let copy = copy.clone();
        move || opsdeck::store::backup::backup(&db, &copy).unwrap()
    })
    .await
    .unwrap();
    assert!(copied >= committed, "{copied} of {committed}");
    for id in &ids {
        host.wait(*id).await.unwrap();
    }
    host.shutdown().await;
    let checked = opsdeck::store::backup::check(&copy).unwrap();
    assert_eq!(checked.runs, 100);
    let reader = opsdeck::store::Reader::open(&copy).unwrap();
    for id in ids {
        assert!(
            reader.run(id).unwrap().is_some(),
            "run {id} is missing from the copy"
        );
    }
}
