//! One behaviour suite for every `Backend`: the embedded runtime, and the same runtime over
//! HTTP through `Remote` and a loopback `opsdeck serve` router. Both must pass unchanged.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use opsdeck::client::{Backend, Embedded, Remote, StreamItem};
use opsdeck::host::{Host, HostOptions};
use opsdeck::model::{
    Actor, ApiError, AuditQuery, CanaryAction, CanaryAt, CanaryState, Command, ErrorCode, Outcome,
    Role, RunId, RunQuery, StartRun, Via,
};

use crate::support::{TestWorkspace, until};

fn workspace() -> TestWorkspace {
    let ws = TestWorkspace::new();
    ws.write(
        "opsdeck.toml",
        r#"[canary.edge]
source = "ingest"
steps = [ {weight = 10, pause = "1h"}, {weight = 100} ]
"#,
    );
    ws.pipeline("etl", crate::support::ETL);
    ws.pipeline(
        "greet",
        r#"[pipeline]
name = "greet"
[[stage]]
id = "render"
kind = "command"
asset = "greeting"
command = ["sh", "-c", "cat"]
"#,
    );
    ws
}

/// One command as a dashboard user would send it (a server names the token's owner instead).
async fn act(b: &Arc<dyn Backend>, cmd: Command, reason: &str) -> Result<Outcome, ApiError> {
    let actor = Actor::new("tester", Role::Admin, Via::Dashboard);
    b.control(cmd, &actor, reason).await
}

async fn behaviour(b: Arc<dyn Backend>, which: &str) {
    let o = b.overview().await.unwrap();
    assert!(
        o.pipelines.iter().any(|p| p.name == "etl"),
        "{which}: {o:?}"
    );

    let start = Command::StartRun(StartRun {
        pipeline: "etl".into(),
        ..StartRun::default()
    });
    let Outcome::RunStarted { run: id } = act(&b, start, "").await.unwrap() else {
        panic!("{which}: starting a run says which run");
    };
    until("the run to finish", || {
        let b = b.clone();
        async move { b.run(id).await.is_ok_and(|r| r.status.is_finished()) }
    })
    .await;
    let run = b.run(id).await.unwrap();
    assert_eq!(run.status.as_str(), "succeeded", "{which}");
    let page = b
        .runs(RunQuery {
            limit: 10,
            ..RunQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items[0].id, id, "{which}");
    assert_eq!(page.total, 1);
    let io = b.stage_io(id, "extract").await.unwrap();
    assert_eq!(
        io.attempts[0].output.as_ref().unwrap()["rows"],
        3,
        "{which}"
    );

    let missing = b.run(RunId(999)).await.unwrap_err();
    assert_eq!(missing.code, ErrorCode::NotFound, "{which}: {missing}");
    let finished = act(&b, Command::CancelRun { run: id }, "too late")
        .await
        .unwrap_err();
    assert_eq!(finished.code, ErrorCode::Conflict, "{which}: {finished}");
    assert_eq!(
        b.dlq(opsdeck::model::DlqQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .total,
        0
    );

    // Events: stored ones in order from the start, with no gaps.
    let stored = b.events_after(0, 3).await.unwrap();
    assert_eq!(
        stored.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "{which}"
    );
    let mut stream = b.events(Some(0));
    let mut seqs = Vec::new();
    while seqs.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .unwrap()
            .unwrap()
        {
            StreamItem::Event(e) => seqs.push(e.seq),
            StreamItem::Connected(up) => assert!(up, "{which}: the stream connects"),
            StreamItem::Reset { last_seq } => {
                panic!("{which}: reset to {last_seq} within the horizon")
            }
        }
    }
    assert_eq!(seqs, vec![1, 2, 3], "{which}");

    canaries_and_audit(&b, which).await;
}

/// Canaries: list, act, chart, and a refused fault on a canary that takes real traffic; then
/// the audit records all of it left.
async fn canaries_and_audit(b: &Arc<dyn Backend>, which: &str) {
    let list = b.canaries().await.unwrap();
    assert_eq!(list[0].name, "edge", "{which}");
    let edge = |action| Command::Canary {
        canary: "edge".into(),
        action,
        expect: None,
    };
    let Outcome::Canary { record: rec, .. } =
        act(b, edge(CanaryAction::SetWeight(20)), "hold for the sale")
            .await
            .unwrap()
    else {
        panic!("{which}: a canary action answers with its record");
    };
    assert_eq!(
        (rec.weight_after, rec.reason.as_str()),
        (20.0, "hold for the sale"),
        "{which}"
    );
    let again = act(b, edge(CanaryAction::Pause), "again")
        .await
        .unwrap_err();
    assert_eq!(again.code, ErrorCode::Conflict, "{which}: {again}");
    // Decided on a screen that showed the canary elsewhere: refused, never applied relative.
    let stale = act(
        b,
        Command::Canary {
            canary: "edge".into(),
            action: CanaryAction::Resume,
            expect: Some(CanaryAt {
                state: CanaryState::Progressing,
                step: 0,
                weight: 10.0,
            }),
        },
        "from an old screen",
    )
    .await
    .unwrap_err();
    assert!(
        stale.code == ErrorCode::Conflict
            && stale.message.contains("moved since the dialog opened"),
        "{which}: {stale}"
    );
    assert_eq!(
        b.canary_series("edge", 5, 12).await.unwrap().len(),
        12,
        "{which}"
    );
    let fault = act(
        b,
        Command::Fault {
            canary: "edge".into(),
            fault: opsdeck::model::Fault::default(),
        },
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(fault.code, ErrorCode::Conflict, "{which}: {fault}");
    let unknown = act(
        b,
        Command::Canary {
            canary: "nope".into(),
            action: CanaryAction::Pause,
            expect: None,
        },
        "x",
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.code, ErrorCode::NotFound, "{which}: {unknown}");

    // Every command above left one audit record, refusals included; filters narrow them.
    let all = b
        .audit(AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let actions: Vec<(&str, &str)> = all
        .iter()
        .map(|r| (r.action.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("canary.pause", "failed: not_found"),
            ("canary.fault", "failed: conflict"),
            ("canary.resume", "failed: conflict"),
            ("canary.pause", "failed: conflict"),
            ("canary.set_weight", "ok"),
            ("run.cancel", "failed: conflict"),
            ("run.start", "ok"),
        ],
        "{which}: newest first"
    );
    let canary = b
        .audit(AuditQuery {
            action: Some("canary".into()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(canary.len(), 5, "{which}: a group of actions");
    let set = &canary[4];
    assert_eq!(
        (
            set.reason.as_str(),
            set.role,
            set.details["weight_after"].as_f64()
        ),
        ("hold for the sale", Some(Role::Admin), Some(20.0)),
        "{which}"
    );
    let by_nobody = b
        .audit(AuditQuery {
            actor: Some("nobody".into()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(by_nobody.is_empty(), "{which}");
    assets(b, which).await;
}

/// Starts a run and waits for its end.
async fn finished(b: &Arc<dyn Backend>, req: StartRun) -> opsdeck::model::Run {
    let Outcome::RunStarted { run: id } = act(b, Command::StartRun(req), "").await.unwrap() else {
        panic!("starting a run says which run");
    };
    until("the run to finish", || {
        let b = b.clone();
        async move { b.run(id).await.is_ok_and(|r| r.status.is_finished()) }
    })
    .await;
    b.run(id).await.unwrap()
}

/// Assets: versions, pins, overrides, an isolated test and rollback, with audit and events.
async fn assets(b: &Arc<dyn Backend>, which: &str) {
    assert!(b.assets().await.unwrap().is_empty(), "{which}");
    let greet = || StartRun {
        pipeline: "greet".into(),
        ..StartRun::default()
    };
    let missing = act(b, Command::StartRun(greet()), "").await.unwrap_err();
    assert!(
        missing.code == ErrorCode::Validation && missing.message.contains("`greeting`"),
        "{which}: {missing}"
    );
    let put = |content: &str, pin: bool| Command::PutAsset {
        name: "greeting".into(),
        content: content.into(),
        pin,
    };
    // The first version is pinned at once; later ones wait for a pin.
    let first = act(b, put("hello", false), "").await.unwrap();
    assert_eq!(
        first,
        Outcome::Asset {
            name: "greeting".into(),
            version: 1,
            pinned: Some(1),
            created: true,
        },
        "{which}"
    );
    let same = act(b, put("hello", false), "").await.unwrap_err();
    assert_eq!(same.code, ErrorCode::Conflict, "{which}: {same}");
    act(b, put("hej", false), "a Danish greeting")
        .await
        .unwrap();
    let list = b.assets().await.unwrap();
    assert_eq!(
        (
            list[0].pinned,
            list[0].latest,
            list[0].used_by[0].stage.as_str()
        ),
        (Some(1), 2, "render"),
        "{which}"
    );
    let shown = |d: opsdeck::model::asset::AssetDetail| d.shown.content.unwrap_or_default();
    assert_eq!(shown(b.asset("greeting", None).await.unwrap()), "hello");
    assert_eq!(shown(b.asset("greeting", Some(2)).await.unwrap()), "hej");
    let nine = b.asset("greeting", Some(9)).await.unwrap_err();
    assert!(
        nine.code == ErrorCode::NotFound && nine.message.contains("1 to 2"),
        "{which}: {nine}"
    );
    assert_eq!(
        b.asset("nope", None).await.unwrap_err().code,
        ErrorCode::NotFound
    );

    // The pinned version by default; another for one run only with an override.
    let run = finished(b, greet()).await;
    let attempt = &run.stages[0].attempts[0];
    assert_eq!(attempt.assets.get("greeting"), Some(&1), "{which}");
    assert_eq!(
        attempt.output.as_ref().unwrap()["asset"]["greeting"]["content"],
        "hello"
    );
    let mut req = greet();
    req.overrides.insert("greeting".into(), 2);
    let over = finished(b, req).await;
    assert_eq!(over.overrides.get("greeting"), Some(&2), "{which}");
    assert_eq!(
        over.stages[0].attempts[0].output.as_ref().unwrap()["asset"]["greeting"]["content"],
        "hej"
    );

    // An isolated test with a given input: recorded, flagged, listed only when asked.
    let mut req = greet();
    req.overrides.insert("greeting".into(), 2);
    req.test = Some(Box::new(opsdeck::model::asset::StageTest {
        stage: "render".into(),
        input: Some(serde_json::json!({"params": {"who": "tests"}, "stages": {}})),
        from_run: None,
    }));
    let test = finished(b, req).await;
    assert!(test.test, "{which}");
    let out = test.stages[0].attempts[0].output.clone().unwrap();
    assert_eq!(
        (&out["params"]["who"], &out["asset"]["greeting"]["version"]),
        (&serde_json::json!("tests"), &serde_json::json!(2))
    );
    let listed = |tests: bool| {
        let b = b.clone();
        async move {
            b.runs(RunQuery {
                limit: 50,
                tests,
                ..RunQuery::default()
            })
            .await
            .unwrap()
            .items
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
        }
    };
    assert!(!listed(false).await.contains(&test.id), "{which}");
    assert_eq!(listed(true).await, vec![test.id], "{which}");

    // Pin, then roll back to the pin before; a second rollback has nowhere to go.
    let pin = Command::PinAsset {
        name: "greeting".into(),
        version: 2,
    };
    let no_reason = act(b, pin.clone(), "").await.unwrap_err();
    assert_eq!(no_reason.code, ErrorCode::Validation, "{which}");
    act(b, pin.clone(), "ship hej").await.unwrap();
    assert_eq!(
        act(b, pin, "again").await.unwrap_err().code,
        ErrorCode::Conflict
    );
    let back = Command::RollbackAsset {
        name: "greeting".into(),
    };
    assert_eq!(
        act(b, back.clone(), "customers complained").await.unwrap(),
        Outcome::Asset {
            name: "greeting".into(),
            version: 1,
            pinned: Some(1),
            created: false,
        },
        "{which}"
    );
    assert_eq!(
        act(b, back, "once more").await.unwrap_err().code,
        ErrorCode::Conflict
    );
    let d = b.asset("greeting", None).await.unwrap();
    assert_eq!(
        (
            d.pinned,
            d.pins.len(),
            d.pins[0].undone,
            d.pins[0].reason.as_str()
        ),
        (Some(1), 2, true, "ship hej"),
        "{which}"
    );

    let audit = b
        .audit(AuditQuery {
            action: Some("asset".into()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let rows: Vec<(&str, &str)> = audit
        .iter()
        .map(|r| (r.action.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("asset.rollback", "failed: conflict"),
            ("asset.rollback", "ok"),
            ("asset.pin", "failed: conflict"),
            ("asset.pin", "ok"),
            ("asset.pin", "failed: validation"),
            ("asset.put", "ok"),
            ("asset.put", "failed: conflict"),
            ("asset.put", "ok"),
        ],
        "{which}"
    );
    assert_eq!(audit[1].reason, "customers complained");
    let events = b.recent_events(500).await.unwrap();
    let changes: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == opsdeck::model::EventKind::AssetChanged)
        .map(|e| e.data["action"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(changes, ["put", "put", "pin", "rollback"], "{which}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_backend() {
    let ws = workspace();
    let host = Host::start(ws.open(), HostOptions::long_lived("behaviour"))
        .await
        .unwrap();
    behaviour(Arc::new(Embedded::new(host.clone())), "embedded").await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_backend_over_loopback() {
    let ws = workspace();
    let host = Host::start(ws.open(), HostOptions::long_lived("behaviour"))
        .await
        .unwrap();
    let (addr, _state) =
        crate::support::serve_api(&host, opsdeck::server::ServerConfig::default()).await;
    behaviour(
        Arc::new(Remote::new(&format!("http://{addr}"), None)),
        "remote",
    )
    .await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_stream_says_when_the_server_is_gone() {
    let remote = Remote::new("http://127.0.0.1:9", None);
    let err = remote.overview().await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Upstream);
    assert!(
        err.message
            .contains("cannot reach the opsdeck server at http://127.0.0.1:9"),
        "{err}"
    );
    let mut stream = remote.events(Some(0));
    let first = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .unwrap();
    assert_eq!(first, Some(StreamItem::Connected(false)));
}

/// A server whose event stream says nothing after connecting (`/quiet`) or sends one endless
/// frame (`/flood`), counting connections.
async fn bad_stream(flood: bool) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    let app = axum::Router::new().route(
        "/v1/events",
        axum::routing::get(move || {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                let chunks = futures::stream::unfold(0usize, move |i| async move {
                    if !flood || i >= 80 {
                        tokio::time::sleep(Duration::from_secs(3_600)).await;
                        return None;
                    }
                    let text = if i == 0 {
                        "data: ".to_string()
                    } else {
                        "a".repeat(64 * 1024)
                    };
                    Some((Ok::<_, std::io::Error>(text), i + 1))
                });
                (
                    [("content-type", "text/event-stream")],
                    axum::body::Body::from_stream(chunks),
                )
            }
        }),
    );
    let addr = crate::support::serve_router(app).await;
    (format!("http://{addr}"), connections)
}

/// The next connection change a stream reports, skipping anything else.
async fn next_connection(stream: &mut opsdeck::client::EventStream) -> bool {
    loop {
        let item = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("the stream reports a change")
            .expect("the stream goes on");
        if let StreamItem::Connected(up) = item {
            return up;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_or_flooding_stream_is_dropped_and_resumed() {
    use std::sync::atomic::Ordering;
    // Silent past three heartbeats (here 300 ms): dropped, marked stale, reconnected.
    let (base, connections) = bad_stream(false).await;
    let remote = Remote::new(&base, None).with_silence(Duration::from_millis(300));
    let mut stream = remote.events(Some(0));
    assert!(next_connection(&mut stream).await);
    assert!(
        !next_connection(&mut stream).await,
        "the silent stream is given up"
    );
    assert!(next_connection(&mut stream).await, "and resumed");
    assert!(connections.load(Ordering::SeqCst) >= 2);
    // A frame that never ends is cut at the cap, not buffered without bound.
    let (base, _) = bad_stream(true).await;
    let remote = Remote::new(&base, None).with_silence(Duration::from_secs(600));
    let mut stream = remote.events(Some(0));
    assert!(next_connection(&mut stream).await);
    assert!(
        !next_connection(&mut stream).await,
        "the endless frame is dropped"
    );
}
