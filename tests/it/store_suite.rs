//! The store behaviour suite: the same writes and reads against the SQLite store and the
//! PostgreSQL store (a real server, started by `.ci/run`), which must answer alike.

use std::sync::Arc;

use opsdeck::model::{
    AttemptError, AttemptStatus, AuditQuery, AuditRecord, DlqEntry, DlqId, DlqQuery, EventKind,
    LogFilter, RunId, RunQuery, RunSort, RunStatus, StageStatus, Timestamp, Trigger, Via,
};
use opsdeck::store::{self, NewEvent, NewStage, Op, Reader, Target, Writer, schema};
use serde_json::{Value, json};

fn at(secs: i64) -> Timestamp {
    Timestamp::from_millis(1_790_000_000_000 + secs * 1000)
}

fn insert_run(id: i64, pipeline: &str, created: i64) -> Op {
    Op::InsertRun {
        id: RunId(id),
        pipeline: pipeline.into(),
        trigger: Trigger::Manual,
        params: "{\"n\":1}".into(),
        spec: "spec".into(),
        created_at: at(created),
        stages: ["extract", "load"]
            .iter()
            .map(|s| NewStage {
                id: (*s).into(),
                kind: "command".into(),
                needs: if *s == "load" {
                    vec!["extract".into()]
                } else {
                    vec![]
                },
            })
            .collect(),
        overrides: "{\"rules\":1}".into(),
        assets: "{\"extract\":{\"rules\":1}}".into(),
        test_input: None,
    }
}

fn attempt(id: i64, stage: &str, n: u32, ok: bool, t: i64) -> Vec<Op> {
    vec![
        Op::StartAttempt {
            run_id: RunId(id),
            stage: stage.into(),
            n,
            started_at: at(t),
            input: "{\"in\":true}".into(),
            assets: Some("{\"rules\":1}".into()),
        },
        Op::AttemptProcess {
            run_id: RunId(id),
            stage: stage.into(),
            n,
            pid: 4242,
            pid_start: Some(99),
        },
        Op::FinishAttempt {
            run_id: RunId(id),
            stage: stage.into(),
            n,
            status: if ok {
                AttemptStatus::Succeeded
            } else {
                AttemptStatus::Failed
            },
            finished_at: at(t + 2),
            duration_ms: 2000,
            output: ok.then(|| format!("{{\"rows\":{n}}}")),
            output_truncated: false,
            output_bytes: Some(10),
            stderr: Some("warn".into()),
            error: (!ok).then(|| ("exit".to_string(), "exit status 1".to_string())),
        },
        Op::UpdateStage {
            run_id: RunId(id),
            stage: stage.into(),
            status: if ok {
                StageStatus::Succeeded
            } else {
                StageStatus::Failed
            },
        },
    ]
}

fn event(kind: EventKind, run: Option<i64>, data: Value) -> Op {
    Op::Event(NewEvent {
        at: at(5),
        kind,
        run_id: run.map(RunId),
        stage: None,
        data,
    })
}

fn audit(action: &str, t: i64) -> AuditRecord {
    AuditRecord {
        at: at(t),
        actor: "alice".into(),
        role: None,
        via: Some(Via::Cli),
        action: action.into(),
        target: "x".into(),
        reason: "because it's \\ late; DROP TABLE runs; --".into(),
        outcome: "ok".into(),
        details: json!({"k": 1}),
    }
}

/// The writes every store gets, in batches as a host sends them.
fn batches() -> Vec<Vec<Op>> {
    let mut b = vec![
        vec![
            insert_run(1, "etl", 0),
            insert_run(2, "etl", 10),
            insert_run(3, "report", 20),
        ],
        vec![Op::UpdateRun {
            id: RunId(1),
            status: RunStatus::Running,
            started_at: Some(at(1)),
            finished_at: None,
        }],
    ];
    b.push(attempt(1, "extract", 1, false, 1));
    // Due after attempt 1, which attempt 2 followed: no longer applies once loaded.
    b.push(vec![Op::RetryAt {
        run_id: RunId(1),
        stage: "extract".into(),
        after: 1,
        at: at(3),
    }]);
    b.push(attempt(1, "extract", 2, true, 4));
    b.push(vec![Op::RetryAt {
        run_id: RunId(1),
        stage: "load".into(),
        after: 1,
        at: at(9),
    }]);
    b.push(attempt(1, "load", 1, true, 8));
    b.push(vec![
        Op::UpdateRun {
            id: RunId(1),
            status: RunStatus::Succeeded,
            started_at: Some(at(99)),
            finished_at: Some(at(30)),
        },
        event(
            EventKind::RunFinished,
            Some(1),
            json!({"status": "succeeded"}),
        ),
    ]);
    b.push(vec![
        Op::UpdateRun {
            id: RunId(2),
            status: RunStatus::Running,
            started_at: Some(at(11)),
            finished_at: None,
        },
        Op::UpdateStage {
            run_id: RunId(2),
            stage: "extract".into(),
            status: StageStatus::Running,
        },
        Op::StartAttempt {
            run_id: RunId(2),
            stage: "extract".into(),
            n: 1,
            started_at: at(12),
            input: "{}".into(),
            assets: None,
        },
    ]);
    let dlq = |id: i64| DlqEntry {
        id: DlqId(id),
        run_id: RunId(3),
        pipeline: "report".into(),
        stage: "load".into(),
        attempts: 3,
        input: Value::Null,
        error: AttemptError {
            code: "exit".into(),
            message: "exit status 2".into(),
        },
        created_at: at(40),
    };
    b.push(vec![
        Op::InsertDlq {
            entry: dlq(1),
            input: "{\"x\":1}".into(),
        },
        Op::InsertDlq {
            entry: dlq(2),
            input: "{\"x\":2}".into(),
        },
    ]);
    b.push(vec![
        Op::DeleteDlq { id: DlqId(2) },
        event(
            EventKind::DlqDiscarded,
            Some(3),
            json!({"dlq_id": 2, "stage": "load"}),
        ),
    ]);
    b.push(vec![
        Op::SaveBreaker {
            target: "http:api:443".into(),
            state: "open".into(),
            opened_at: Some(at(49)),
            at: at(49),
            worker: None,
        },
        Op::SaveBreaker {
            target: "command:false".into(),
            state: "closed".into(),
            opened_at: None,
            at: at(49),
            worker: Some("w".into()),
        },
        Op::SaveCanary {
            name: "web".into(),
            state: "{\"weight\":5}".into(),
            status: "{}".into(),
            at: at(50),
        },
        Op::SaveCanary {
            name: "web".into(),
            state: "{\"weight\":10}".into(),
            status: "{\"ok\":true}".into(),
            at: at(51),
        },
    ]);
    b.push(Op::audited(audit("canary.rollback", 60), None).to_vec());
    b.push(Op::audited(audit("run.start", 61), Some(RunId(2))).to_vec());
    b.push(vec![
        Op::InsertAsset {
            name: "rules".into(),
            version: 1,
            content: "a=1\n".into(),
            at: at(70),
            actor: "seed".into(),
            reason: "first".into(),
        },
        Op::InsertAsset {
            name: "rules".into(),
            version: 2,
            content: "a=2 é\n".into(),
            at: at(71),
            actor: "bob".into(),
            reason: "tune".into(),
        },
        Op::PinAsset {
            name: "rules".into(),
            version: 1,
            at: at(72),
            actor: "seed".into(),
            reason: "first".into(),
        },
        Op::PinAsset {
            name: "rules".into(),
            version: 2,
            at: at(73),
            actor: "bob".into(),
            reason: "tune".into(),
        },
        Op::UndoPin {
            name: "rules".into(),
        },
    ]);
    b
}

/// Everything the readers answer, as JSON, for comparing stores.
fn read_all(r: &Reader) -> Value {
    let q = |sort, pipeline: Option<&str>, text: Option<&str>| RunQuery {
        sort,
        pipeline: pipeline.map(String::from),
        text: text.map(String::from),
        limit: 2,
        ..RunQuery::default()
    };
    let page = |p: opsdeck::model::Page<opsdeck::model::RunSummary>| {
        json!({
            "ids": p.items.iter().map(|r| r.id.0).collect::<Vec<_>>(),
            "next": p.next.map(|n| n.0),
            "total": p.total,
            "first": serde_json::to_value(p.items.first()).unwrap(),
        })
    };
    let dlq = r
        .dlq(&DlqQuery {
            limit: 50,
            ..DlqQuery::default()
        })
        .unwrap();
    let mut all = json!({
        "newest": page(r.runs(&q(RunSort::Newest, None, None)).unwrap()),
        "oldest": page(r.runs(&q(RunSort::Oldest, None, None)).unwrap()),
        "longest": page(r.runs(&q(RunSort::Longest, None, None)).unwrap()),
        "by_pipeline": page(r.runs(&q(RunSort::Pipeline, Some("etl"), None)).unwrap()),
        "text": page(r.runs(&q(RunSort::Newest, None, Some("rep"))).unwrap()),
        "run1": serde_json::to_value(r.run(RunId(1)).unwrap()).unwrap(),
        "missing": r.run(RunId(77)).unwrap().is_none(),
        "io": serde_json::to_value(r.stage_io(RunId(1), "extract").unwrap()).unwrap(),
        "stage_ids": r.stage_ids(RunId(1)).unwrap(),
        "loaded": r.load_run(RunId(1)).unwrap().map(|l| json!({
            "params": l.params, "stages": l.stages.iter()
                .map(|s| json!([s.id, s.status, s.attempts, s.output, s.retry_at])).collect::<Vec<_>>(),
            "assets": l.assets,
        })),
        "running": r.run_ids_with_status(RunStatus::Running).unwrap().iter().map(|i| i.0).collect::<Vec<_>>(),
        "counts": r.run_counts().unwrap(),
        "canaries": r.canaries().unwrap(),
        "breakers": r.breakers().unwrap(),
        "audit": serde_json::to_value(r.audit(&AuditQuery { action: Some("canary".into()), limit: 50, ..AuditQuery::default() }).unwrap()).unwrap(),
        "audit_all": r.audit(&AuditQuery { limit: 50, ..AuditQuery::default() }).unwrap().len(),
        // Each filter alone and together (each combination is a statement of its own).
        "audit_since": r.audit(&AuditQuery { since: Some(at(61)), limit: 50, ..AuditQuery::default() }).unwrap().iter().map(|a| a.action.clone()).collect::<Vec<_>>(),
        "audit_actor": r.audit(&AuditQuery { actor: Some("bob".into()), limit: 50, ..AuditQuery::default() }).unwrap().len(),
        "audit_all_filters": r.audit(&AuditQuery { since: Some(at(60)), actor: Some("alice".into()), action: Some("run.start".into()), limit: 50 }).unwrap().iter().map(|a| a.action.clone()).collect::<Vec<_>>(),
        "dlq_before": r.dlq(&DlqQuery { before: Some(DlqId(2)), limit: 50, ..DlqQuery::default() }).unwrap().items.iter().map(|e| e.id.0).collect::<Vec<_>>(),
        "dlq_before_run": serde_json::to_value(r.dlq(&DlqQuery { before: Some(DlqId(2)), run: Some(RunId(3)), limit: 50 }).map(|p| (p.items.iter().map(|e| e.id.0).collect::<Vec<_>>(), p.total)).unwrap()).unwrap(),
        "dlq_other_run": r.dlq(&DlqQuery { run: Some(RunId(1)), limit: 50, ..DlqQuery::default() }).unwrap().total,
        "dlq": serde_json::to_value(&dlq.items).unwrap(),
        "dlq_total": dlq.total,
        "dlq_entry": serde_json::to_value(r.dlq_entry(DlqId(1)).unwrap()).unwrap(),
        "dlq_fate": r.dlq_fate(DlqId(2)).unwrap(),
        "dlq_for_run": r.dlq_for_run(RunId(3)).unwrap().len(),
        "events": serde_json::to_value(r.events(0, 100).unwrap()).unwrap(),
        "events_after": r.events(3, 1).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(),
        "last_seq": r.last_seq().unwrap(),
        "dlq_depth": r.dlq_depth().unwrap(),
        "next_ids": r.next_ids().unwrap(),
        "assets": r.assets().unwrap().iter().map(|a| json!([a.name, a.pinned, a.latest, a.versions, a.updated_at])).collect::<Vec<_>>(),
        "pinned": r.pinned_assets().unwrap(),
        "versions": serde_json::to_value(r.asset_versions("rules").unwrap()).unwrap(),
        "version2": serde_json::to_value(r.asset_version("rules", 2).unwrap()).unwrap(),
        "with_content": r.asset_with_content("rules", "a=2 é\n").unwrap(),
        "pins": serde_json::to_value(r.asset_pins("rules").unwrap()).unwrap(),
        "pin_and_previous": r.pin_and_previous("rules").unwrap(),
        "stage_input": r.stage_input("etl", "extract", Some(RunId(1))).unwrap().map(|(id, i)| (id.0, i)),
        "lens": r.lens_rows("etl", 10).unwrap().1.len(),
    });
    // One run's events (beside the json! above, which is at its macro's recursion limit).
    let seqs = |evs: Vec<opsdeck::model::Event>| evs.iter().map(|e| e.seq).collect::<Vec<_>>();
    let of_runs = |since, limit| {
        (1..=3)
            .map(|id| {
                let one_run = LogFilter {
                    run: Some(RunId(id)),
                    ..LogFilter::default()
                };
                seqs(r.log_events(&one_run, since, limit).unwrap())
            })
            .collect::<Vec<_>>()
    };
    all["run_events"] = json!(of_runs(0, 100));
    all["run_events_after"] = json!(of_runs(1, 1));
    // Some kinds (the unknown one standing for names this version does not know), with and
    // without a run, and up to a number.
    let kinds = |run, kinds: &[EventKind], until| {
        let filter = LogFilter {
            run,
            kinds: kinds.to_vec(),
            until,
        };
        seqs(r.log_events(&filter, 0, 100).unwrap())
    };
    let finished = [EventKind::RunFinished, EventKind::StageFinished];
    all["kinds"] = json!([
        kinds(None, &finished, None),
        kinds(Some(RunId(1)), &finished, None),
        kinds(None, &finished, Some(4)),
        kinds(None, &[EventKind::Unknown], None),
        kinds(None, &[EventKind::Unknown, EventKind::RunFinished], None),
    ]);
    all["run_exists"] = json!([
        r.run_exists(RunId(3)).unwrap(),
        r.run_exists(RunId(99)).unwrap()
    ]);
    all
}

/// A writer on `db` with a runtime to submit from, and its live stream.
fn writer_on(
    db: store::Db,
) -> (
    tokio::runtime::Runtime,
    Writer,
    store::WriterThread,
    tokio::sync::broadcast::Receiver<Arc<opsdeck::model::Event>>,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (events, live) = tokio::sync::broadcast::channel(1024);
    let (writer, thread) = Writer::spawn(db, events).unwrap();
    (rt, writer, thread, live)
}

/// Writes the suite's batches to `target`, reads everything back, then recovers the running
/// run as a new host would; returns (reads before, reads after recovery).
fn exercise(target: &Target) -> (Value, Value) {
    let mut db = target.writer().unwrap();
    schema::migrate(&mut db).unwrap();
    // Migrating again is a no-op.
    schema::migrate(&mut db).unwrap();
    assert_eq!(schema::version(&mut db).unwrap(), schema::VERSION);
    let (rt, writer, thread, mut rx) = writer_on(db);
    rt.block_on(async {
        for b in batches() {
            writer.commit(b).await.unwrap();
        }
        // A bad write fails alone and loses nothing else.
        let dup = writer.commit(vec![insert_run(1, "etl", 0)]).await;
        assert!(dup.is_err());
        writer.close().await;
    });
    thread.join();
    let mut published = Vec::new();
    while let Ok(e) = rx.try_recv() {
        published.push(Arc::unwrap_or_clone(e).seq);
    }
    assert_eq!(published, vec![1, 2, 3, 4]);

    let before = read_all(&target.reader().unwrap());

    let mut db = target.writer().unwrap();
    let (runs, orphans) = store::mark_interrupted(&mut db, at(100)).unwrap();
    assert_eq!(runs, vec![RunId(2), RunId(3)]);
    assert_eq!(orphans.len(), 0);
    // The audit log is append-only on every store.
    let err = db
        .execute("UPDATE audit SET actor = 'mallory'", &[])
        .unwrap_err();
    assert!(err.0.contains("append-only"), "{err}");
    drop(db);
    let after = read_all(&target.reader().unwrap());
    (before, after)
}

#[test]
fn sqlite_and_postgres_stores_answer_alike() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Target::Sqlite(dir.path().join("state.db"));
    let pg = Target::Postgres(crate::support::postgres_db());
    let (s_before, s_after) = exercise(&sqlite);
    let (p_before, p_after) = exercise(&pg);
    for key in s_before.as_object().unwrap().keys() {
        assert_eq!(s_before[key], p_before[key], "`{key}` differs");
    }
    for key in s_after.as_object().unwrap().keys() {
        assert_eq!(s_after[key], p_after[key], "`{key}` after recovery differs");
    }

    // What the reads say, on both.
    let b = &s_before;
    assert_eq!(b["newest"]["ids"], json!([3, 2]));
    assert_eq!(b["newest"]["next"], json!(2));
    assert_eq!(b["newest"]["total"], json!(3));
    assert_eq!(b["oldest"]["ids"], json!([1, 2]));
    assert_eq!(b["longest"]["ids"][0], json!(2), "{}", b["longest"]);
    assert_eq!(b["by_pipeline"]["total"], json!(2));
    assert_eq!(b["text"]["ids"], json!([3]));
    assert_eq!(b["run1"]["status"], json!("succeeded"));
    assert_eq!(
        b["run1"]["started_at"],
        json!(at(1)),
        "started_at is kept once set"
    );
    assert_eq!(b["run1"]["duration_ms"], json!(29_000));
    // A retry's due time holds only while no later attempt has started.
    assert_eq!(b["loaded"]["stages"][0][4], Value::Null);
    assert_eq!(b["loaded"]["stages"][1][4], json!(at(9)));
    assert_eq!(
        b["breakers"],
        json!([
            ["command:false", "closed", null],
            ["http:api:443", "open", at(49)]
        ])
    );
    let extract = &b["run1"]["stages"][0];
    assert_eq!(extract["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(extract["attempts"][0]["error"]["code"], json!("exit"));
    assert_eq!(extract["attempts"][1]["output"], json!({"rows": 2}));
    assert_eq!(
        b["loaded"]["stages"][0],
        json!(["extract", "succeeded", 2, {"rows": 2}, null])
    );
    assert_eq!(b["running"], json!([2]));
    assert_eq!(
        b["canaries"],
        json!([["web", "{\"weight\":10}", "{\"ok\":true}"]])
    );
    assert_eq!(b["audit"].as_array().unwrap().len(), 1);
    assert_eq!(b["audit_all"], json!(2));
    assert_eq!(b["audit_since"], json!(["run.start"]));
    assert_eq!(b["audit_actor"], json!(0));
    assert_eq!(b["audit_all_filters"], json!(["run.start"]));
    assert_eq!(b["dlq_before"], json!([1]));
    assert_eq!(b["dlq_before_run"], json!([[1], 1]));
    assert_eq!(b["dlq_other_run"], json!(0));
    assert_eq!(b["dlq_total"], json!(1));
    assert_eq!(b["dlq"][0]["input"], Value::Null, "lists leave inputs out");
    assert_eq!(b["dlq_entry"]["input"], json!({"x": 1}));
    assert!(b["dlq_fate"].as_str().unwrap().contains("discarded"));
    assert_eq!(b["last_seq"], json!(4));
    assert_eq!(b["events_after"], json!([4]));
    // One run's events are the log's events of that run, in order; after a number, at most
    // the limit of them.
    let mut with_runs = 0;
    for id in 1..=3_u64 {
        let of_run: Vec<u64> = b["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["run_id"].as_u64() == Some(id))
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        with_runs += of_run.len();
        let i = usize::try_from(id - 1).unwrap();
        assert_eq!(b["run_events"][i], json!(of_run), "run {id}");
        let after: Vec<u64> = of_run.into_iter().filter(|s| *s > 1).take(1).collect();
        assert_eq!(b["run_events_after"][i], json!(after), "run {id} after 1");
    }
    assert!(with_runs > 0, "{}", b["events"]);
    // Kinds chosen in the store are the log's events of those kinds.
    let of_kinds = |run: Option<u64>, kinds: &[&str], until: u64| -> Vec<u64> {
        b["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| kinds.contains(&e["kind"].as_str().unwrap()))
            .filter(|e| run.is_none() || e["run_id"].as_u64() == run)
            .map(|e| e["seq"].as_u64().unwrap())
            .filter(|s| *s <= until)
            .collect()
    };
    let finished = ["run_finished", "stage_finished"];
    assert!(!of_kinds(None, &finished, u64::MAX).is_empty());
    assert_eq!(
        b["kinds"],
        json!([
            of_kinds(None, &finished, u64::MAX),
            of_kinds(Some(1), &finished, u64::MAX),
            of_kinds(None, &finished, 4),
            Vec::<u64>::new(),
            of_kinds(None, &["run_finished"], u64::MAX),
        ]),
        "{}",
        b["events"]
    );
    assert_eq!(b["run_exists"], json!([true, false]));
    assert_eq!(
        b["next_ids"],
        json!([4, 3]),
        "a deleted entry's id is not handed out again"
    );
    assert_eq!(b["assets"], json!([["rules", 1, 2, 2, at(73)]]));
    assert_eq!(b["pinned"], json!({"rules": 1}));
    assert_eq!(b["versions"][0]["bytes"], json!(7), "bytes, not characters");
    assert_eq!(b["with_content"], json!(2));
    assert_eq!(b["pin_and_previous"], json!([1, null]));
    assert_eq!(b["lens"], json!(4));

    // Recovery: the running run and its stage are interrupted, with an event.
    let a = &s_after;
    assert_eq!(a["running"], json!([]));
    assert_eq!(a["last_seq"], json!(6));
    let run2 = a["events"].as_array().unwrap().last().unwrap();
    assert_eq!(run2["kind"], json!("run_interrupted"));
}

/// One large batch, as a busy writer makes: many events (more than one multi-row statement
/// holds), a stage written twice, an attempt started and finished in the same transaction.
/// Both stores keep the submitted order of events and the last write to each row.
#[test]
fn a_large_batch_keeps_event_order_and_last_writes_on_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let targets = [
        Target::Sqlite(dir.path().join("state.db")),
        Target::Postgres(crate::support::postgres_db()),
    ];
    let mut answers = Vec::new();
    for target in &targets {
        let mut db = target.writer().unwrap();
        schema::migrate(&mut db).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (events, _) = tokio::sync::broadcast::channel(16);
        let (writer, thread) = Writer::spawn(db, events).unwrap();
        let stage = |s: &str, status| Op::UpdateStage {
            run_id: RunId(1),
            stage: s.into(),
            status,
        };
        let mut batch = vec![
            insert_run(1, "etl", 0),
            stage("extract", StageStatus::Running),
        ];
        batch.extend(attempt(1, "extract", 1, true, 1));
        for i in 0..150 {
            batch.push(event(EventKind::StageStarted, Some(1), json!({ "i": i })));
        }
        batch.push(stage("load", StageStatus::Running));
        batch.push(stage("load", StageStatus::Skipped));
        rt.block_on(async {
            writer.commit(batch).await.unwrap();
            writer.close().await;
        });
        thread.join();
        let r = target.reader().unwrap();
        let run = r.run(RunId(1)).unwrap().unwrap();
        let evs = r.events(0, 1000).unwrap();
        answers.push(json!({
            "stages": run.stages.iter().map(|s| json!([s.id, s.status, s.attempts.len()])).collect::<Vec<_>>(),
            "attempt": serde_json::to_value(&run.stages[0].attempts[0]).unwrap(),
            "events": evs.iter().map(|e| json!([e.seq, e.data["i"]])).collect::<Vec<_>>(),
        }));
    }
    assert_eq!(answers[0], answers[1]);
    let a = &answers[0];
    assert_eq!(
        a["stages"],
        json!([["extract", "succeeded", 1], ["load", "skipped", 0]])
    );
    assert_eq!(a["attempt"]["status"], json!("succeeded"));
    let want: Vec<Value> = (0..150).map(|i| json!([i + 1, i])).collect();
    assert_eq!(a["events"], json!(want));
}

/// Ids asked for at once (a burst of new runs) come out distinct and in one block, and are
/// never handed out again after a restart, on both stores.
fn ids_asked_at_once(target: &Target) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut db = target.writer().unwrap();
    schema::migrate(&mut db).unwrap();
    let (events, _rx) = tokio::sync::broadcast::channel(16);
    let (writer, thread) = Writer::spawn(db, events).unwrap();
    let mut ids: Vec<i64> = rt.block_on(async {
        let asks = (0..40).map(|_| writer.next_id(store::IdKind::Run));
        let ids = futures::future::join_all(asks).await;
        let dlq = writer.next_id(store::IdKind::Dlq).await.unwrap();
        assert_eq!(dlq, 1, "dead-letter ids are counted apart from run ids");
        // The highest id is used; the others never are.
        let top = *ids.iter().map(|r| r.as_ref().unwrap()).max().unwrap();
        writer
            .commit(vec![insert_run(top, "etl", 0)])
            .await
            .unwrap();
        writer.close().await;
        ids.into_iter().map(Result::unwrap).collect()
    });
    thread.join();
    ids.sort_unstable();
    assert_eq!(ids, (1..=40).collect::<Vec<_>>());

    let (events, _rx) = tokio::sync::broadcast::channel(16);
    let (writer, thread) = Writer::spawn(target.writer().unwrap(), events).unwrap();
    let next = rt.block_on(async {
        let next = writer.next_id(store::IdKind::Run).await.unwrap();
        writer.close().await;
        next
    });
    thread.join();
    assert_eq!(next, 41);
}

#[test]
fn ids_asked_at_once_are_distinct_and_never_handed_out_again() {
    let dir = tempfile::tempdir().unwrap();
    ids_asked_at_once(&Target::Sqlite(dir.path().join("state.db")));
    ids_asked_at_once(&Target::Postgres(crate::support::postgres_db()));
}

#[test]
fn the_breaker_stream_carries_breaker_changes_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Target::Sqlite(dir.path().join("state.db"))
        .writer()
        .unwrap();
    schema::migrate(&mut db).unwrap();
    let (rt, writer, thread, mut live) = writer_on(db);
    let mut breakers = writer.breaker_changes();
    rt.block_on(async {
        writer
            .commit(vec![
                event(EventKind::RunCreated, None, json!({})),
                event(EventKind::BreakerChanged, None, json!({"target": "a"})),
                event(EventKind::RunCreated, None, json!({})),
                event(EventKind::BreakerChanged, None, json!({"target": "b"})),
            ])
            .await
            .unwrap();
        writer.close().await;
    });
    thread.join();
    let seqs = |rx: &mut tokio::sync::broadcast::Receiver<Arc<opsdeck::model::Event>>| {
        let mut out = Vec::new();
        while let Ok(e) = rx.try_recv() {
            out.push((e.seq, e.kind));
        }
        out
    };
    // Every event on the live stream; on the breaker stream only the breakers', same numbers.
    assert_eq!(seqs(&mut live).len(), 4);
    assert_eq!(
        seqs(&mut breakers),
        vec![
            (2, EventKind::BreakerChanged),
            (4, EventKind::BreakerChanged)
        ]
    );
}

/// Many writes queued at once, two of them bad, as a busy host queues them: on PostgreSQL the
/// writer sends one batch while the one before it commits. A bad write fails alone, and every
/// other write commits, once, in the order it was queued: a batch sent behind one that failed
/// does not commit ahead of that one's writes, retried on their own.
fn queued_writes_with_bad_ones(target: &Target) -> Vec<u64> {
    const WRITES: usize = 2000;
    const BAD: [usize; 2] = [100, 1700];
    let mut db = target.writer().unwrap();
    schema::migrate(&mut db).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (events, mut live) = tokio::sync::broadcast::channel(4 * WRITES);
    let (writer, thread) = Writer::spawn(db, events).unwrap();
    let acks = rt.block_on(async {
        writer.commit(vec![insert_run(1, "etl", 0)]).await.unwrap();
        // The writer waits on a job while every write is queued, so they come to it at once.
        let (open, gate) = std::sync::mpsc::channel::<()>();
        let gate = std::sync::Mutex::new(gate);
        let held = writer.on_conn(move |_| {
            let _ = gate.lock().unwrap().recv();
            Ok(())
        });
        // Unconstrained: with tokio's budget, a send past the first 128 could wait and be
        // overtaken by one queued after it.
        let writes = tokio::task::unconstrained(futures::future::join_all((0..WRITES).map(|i| {
            writer.commit(if BAD.contains(&i) {
                vec![insert_run(1, "etl", 0)]
            } else {
                vec![event(EventKind::StageStarted, Some(1), json!({ "i": i }))]
            })
        })));
        let (held, acks, ()) = futures::join!(held, writes, async {
            tokio::task::yield_now().await;
            open.send(()).unwrap();
        });
        held.unwrap();
        writer.close().await;
        acks
    });
    thread.join();
    for (i, ack) in acks.iter().enumerate() {
        assert_eq!(ack.is_err(), BAD.contains(&i), "write {i}: {ack:?}");
    }
    let want: Vec<usize> = (0..WRITES).filter(|i| !BAD.contains(i)).collect();
    let stored = target.reader().unwrap().events(0, 2 * WRITES).unwrap();
    let order: Vec<usize> = stored
        .iter()
        .map(|e| usize::try_from(e.data["i"].as_u64().unwrap()).unwrap())
        .collect();
    assert_eq!(order, want, "stored in the order queued, each once");
    let seqs: Vec<u64> = stored.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=want.len() as u64).collect::<Vec<_>>());
    let mut published = Vec::new();
    while let Ok(e) = live.try_recv() {
        published.push(e.seq);
    }
    published
}

#[test]
fn queued_writes_commit_in_order_around_bad_ones_on_both_stores() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = queued_writes_with_bad_ones(&Target::Sqlite(dir.path().join("state.db")));
    let pg = queued_writes_with_bad_ones(&Target::Postgres(crate::support::postgres_db()));
    assert_eq!(
        sqlite,
        (1..=1998).collect::<Vec<_>>(),
        "published in order, once"
    );
    assert_eq!(pg, sqlite);
}

/// A value the PostgreSQL driver cannot send (here past an `integer` column's range) fails its
/// transaction before the transaction's `COMMIT` is sent: none of its writes is stored, whether
/// it was committed and waited for or sent ahead; the connection serves the one sent behind
/// it, and the next, as usual. (That a batch behind a failed one fails too is the writer's
/// receipt check.)
#[test]
fn a_write_the_driver_cannot_send_commits_nothing_of_its_transaction() {
    use opsdeck::store::db::Val;
    let mut db = Target::Postgres(crate::support::postgres_db())
        .writer()
        .unwrap();
    db.execute("CREATE TABLE t (n integer NOT NULL)", &[])
        .unwrap();
    let insert = |tx: &mut store::Db, n: i64| {
        tx.execute("INSERT INTO t (n) VALUES (?1)", &[Val::Int(n)])
            .map(drop)
    };
    let count = |db: &mut store::Db| {
        db.rows("SELECT count(*) FROM t", &[]).unwrap()[0]
            .i64(0)
            .unwrap()
    };
    let out = db.transaction(|tx| {
        insert(tx, 1)?;
        insert(tx, i64::MAX)?;
        insert(tx, 2)
    });
    assert!(out.is_err());
    assert_eq!(count(&mut db), 0);
    db.send_transaction(|tx| {
        insert(tx, 3)?;
        insert(tx, i64::MAX)?;
        insert(tx, 4)
    })
    .unwrap();
    db.send_transaction(|tx| insert(tx, 5)).unwrap();
    assert!(db.wait().is_err(), "the first did not commit");
    assert!(
        matches!(db.wait(), Ok(Ok(_))),
        "the one behind it is its own"
    );
    assert_eq!(count(&mut db), 1);
    db.transaction(|tx| insert(tx, 6)).unwrap();
    assert_eq!(count(&mut db), 2);
}

/// PostgreSQL's text cannot hold NUL (a command's stderr can): such text is stored with
/// U+FFFD in its place, alone or in an array, where the server would refuse the transaction.
#[test]
fn text_with_nul_is_stored_on_postgres() {
    use opsdeck::store::db::Val;
    let mut db = Target::Postgres(crate::support::postgres_db())
        .writer()
        .unwrap();
    db.execute("CREATE TABLE t (s text NOT NULL)", &[]).unwrap();
    db.transaction(|tx| {
        tx.execute("INSERT INTO t (s) VALUES (?1)", &[Val::Text("a\0b".into())])?;
        tx.execute(
            "INSERT INTO t (s) SELECT * FROM unnest(?1::text[])",
            &[Val::List(vec![
                Val::Text("c\0".into()),
                Val::Text("d".into()),
            ])],
        )
        .map(drop)
    })
    .unwrap();
    let stored: Vec<String> = db
        .rows("SELECT s FROM t ORDER BY s", &[])
        .unwrap()
        .into_iter()
        .map(|mut r| r.opt_text(0).unwrap().unwrap())
        .collect();
    assert_eq!(stored, ["a\u{FFFD}b", "c\u{FFFD}", "d"]);
}

/// A batch that committed but whose answer cannot be read (here the event counter, set wrong
/// behind the writer's back, cannot have numbered its events) is answered as committed and
/// stored once: before, it was committed again request by request, storing its writes twice.
#[test]
fn a_batch_committed_with_an_unreadable_answer_is_stored_once() {
    let target = Target::Postgres(crate::support::postgres_db());
    let mut db = target.writer().unwrap();
    schema::migrate(&mut db).unwrap();
    let (rt, writer, thread, _live) = writer_on(db);
    let mut other = target.writer().unwrap();
    rt.block_on(async {
        writer
            .commit(vec![event(EventKind::RunCreated, None, json!({"n": 1}))])
            .await
            .unwrap();
        other
            .execute("UPDATE event_seq SET last = -10", &[])
            .unwrap();
        let second = writer
            .commit(vec![event(EventKind::RunCreated, None, json!({"n": 2}))])
            .await;
        assert!(second.is_ok(), "{second:?}");
        writer.close().await;
    });
    thread.join();
    let twice = other
        .rows("SELECT count(*) FROM events WHERE data = '{\"n\":2}'", &[])
        .unwrap()[0]
        .i64(0)
        .unwrap();
    assert_eq!(twice, 1, "the second write is stored once");
}

/// An event of a kind this version does not know (a newer worker's, during a rolling upgrade)
/// is read and streamed as `unknown`, its kind and data kept inside its data, and the stream
/// goes on past it: refusing it stopped every stream at it.
#[test]
fn an_event_of_a_kind_this_version_does_not_know_is_read_and_streamed() {
    let url = crate::support::postgres_db();
    let target = Target::Postgres(url.clone());
    let mut db = target.writer().unwrap();
    schema::migrate(&mut db).unwrap();
    let (rt, writer, thread, mut live) = writer_on(db);
    let mut other = target.writer().unwrap();
    let seen = rt.block_on(async {
        writer
            .commit(vec![event(EventKind::RunCreated, None, json!({"n": 1}))])
            .await
            .unwrap();
        // A newer worker's event, numbered after the first.
        other
            .execute("UPDATE event_seq SET last = last + 1", &[])
            .unwrap();
        other
            .execute(
                "INSERT INTO events (seq, at, kind, data) VALUES (2, '2026-12-02T00:00:00Z', 'from_the_future', '{\"x\":1}')",
                &[],
            )
            .unwrap();
        writer
            .commit(vec![event(EventKind::RunCreated, None, json!({"n": 3}))])
            .await
            .unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let e = tokio::time::timeout(std::time::Duration::from_secs(30), live.recv())
                .await
                .expect("the live stream went on")
                .unwrap();
            seen.push((e.seq, e.kind, e.data.clone()));
        }
        writer.close().await;
        seen
    });
    thread.join();
    let unknown = (
        2,
        EventKind::Unknown,
        json!({"kind": "from_the_future", "data": {"x": 1}}),
    );
    assert_eq!(
        seen,
        [
            (1, EventKind::RunCreated, json!({"n": 1})),
            unknown.clone(),
            (3, EventKind::RunCreated, json!({"n": 3})),
        ]
    );
    // Read from the store, as a stream resumed from the table is.
    let read = Reader::on(target.writer().unwrap()).events(0, 10).unwrap();
    let kinds: Vec<_> = read
        .iter()
        .map(|e| (e.seq, e.kind, e.data.clone()))
        .collect();
    assert_eq!(kinds[1], unknown);
    assert_eq!(kinds.len(), 3);
    assert!(
        read[1].summary().contains("from_the_future"),
        "{}",
        read[1].summary()
    );
}
