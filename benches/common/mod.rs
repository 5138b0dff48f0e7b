//! Fixtures shared by the benchmarks: a store filled with many finished runs, and a fresh
//! PostgreSQL database.

use chrono::{TimeZone, Utc};
use opsdeck::host::Workspace;
use opsdeck::model::{RunId, RunStatus, Timestamp, Trigger};
use opsdeck::runtime::spec;
use opsdeck::store::{self, NewStage, Op, Writer, schema};

/// `checkout-etl` (three stages) and `partner-sync` (one that always fails).
pub fn pipelines() -> Vec<spec::Pipeline> {
    let etl = r#"[pipeline]
name = "checkout-etl"
[[stage]]
id = "extract"
kind = "simulate"
output = { rows = 4821, cursor = "2026-11-23" }
[[stage]]
id = "transform"
kind = "simulate"
needs = ["extract"]
output = { rows = 4790 }
[[stage]]
id = "load"
kind = "simulate"
needs = ["transform"]
output = { inserted = 4790 }
"#;
    let bad = "[pipeline]\nname = \"partner-sync\"\n[[stage]]\nid = \"fetch\"\nkind = \"simulate\"\nfail_rate = 1.0\n";
    vec![
        spec::parse("etl", etl).expect("etl"),
        spec::parse("bad", bad).expect("bad"),
    ]
}

/// Fills the store with `runs` finished runs in large batches (through the store's writer,
/// as a host would, but without running them).
pub fn populate(dir: &std::path::Path, runs: i64) -> Workspace {
    let ws = Workspace::in_memory(dir, pipelines());
    std::fs::create_dir_all(ws.state_dir()).expect("state dir");
    let mut conn = store::open_sqlite(&ws.db_path(), true).expect("db");
    schema::migrate(&mut conn).expect("migrate");
    let (events, _) = tokio::sync::broadcast::channel(16);
    let (writer, thread) = Writer::spawn(conn, events).expect("writer");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let spec = serde_json::to_string(&pipelines()[0]).expect("spec");
    rt.block_on(async {
        let base = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("date");
        for chunk in (1..=runs).collect::<Vec<_>>().chunks(2_000) {
            let mut ops = Vec::new();
            for &id in chunk {
                let at = Timestamp::from_datetime(base + chrono::Duration::seconds(id * 30));
                ops.push(Op::InsertRun {
                    id: RunId(id),
                    pipeline: if id % 3 == 0 {
                        "partner-sync".into()
                    } else {
                        "checkout-etl".into()
                    },
                    trigger: Trigger::Schedule,
                    params: "{}".into(),
                    spec: spec.clone(),
                    created_at: at,
                    stages: ["extract", "transform", "load"]
                        .iter()
                        .map(|s| NewStage {
                            id: (*s).into(),
                            kind: "simulate".into(),
                            needs: vec![],
                        })
                        .collect(),
                    overrides: "{}".into(),
                    assets: "{}".into(),
                    test_input: None,
                });
                let status = if id % 11 == 0 {
                    RunStatus::Failed
                } else {
                    RunStatus::Succeeded
                };
                ops.push(Op::UpdateRun {
                    id: RunId(id),
                    status,
                    started_at: Some(at),
                    finished_at: Some(Timestamp::from_millis(at.millis() + 4_000 + id % 997)),
                });
            }
            writer.commit(ops).await.expect("insert");
        }
        writer.close().await;
    });
    thread.join();
    ws
}

/// A fresh database on the PostgreSQL server at `admin` (a superuser URL): its URL, with the
/// admin URL's options.
#[allow(dead_code)] // the store benchmarks use it, the others not
pub fn fresh_database(admin: &str, name: &str) -> String {
    let mut c = postgres::Client::connect(admin, postgres::NoTls).expect("PostgreSQL");
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .expect("drop");
    c.batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create");
    // The admin URL's options (such as `?sslmode=disable`) hold for the new database too.
    let (path, query) = admin.split_once('?').unwrap_or((admin, ""));
    let (base, _) = path.rsplit_once('/').expect("a URL with a database");
    if query.is_empty() {
        format!("{base}/{name}")
    } else {
        format!("{base}/{name}?{query}")
    }
}
