//! Assets from the command line with real processes: seeding from `assets/` files and a
//! changed file on the next start, put, pin, overrides, isolated stage tests kept out of
//! lists and the dead-letter queue, asset impact in `compare`, rollback, and bad input.

use serde_json::Value;

use crate::support::TestWorkspace;

/// `render` echoes its input (so its output shows the asset it got); `publish` echoes its own
/// (which holds render's output): a change of asset reaches it downstream.
const GREET: &str = r#"[pipeline]
name = "greet"
[pipeline.retry]
max_attempts = 1
[[stage]]
id = "render"
kind = "command"
asset = "greeting"
command = ["sh", "-c", "cat"]
[[stage]]
id = "publish"
kind = "command"
needs = ["render"]
command = ["sh", "-c", "cat"]
[[stage]]
id = "boom"
kind = "command"
command = ["sh", "-c", "test -e calm || exit 3; echo '{}'"]
"#;

fn id_of(out: &crate::support::Out) -> String {
    out.json()["id"].as_i64().unwrap().to_string()
}

#[test]
fn assets_are_seeded_versioned_overridden_tested_compared_and_rolled_back() {
    let ws = TestWorkspace::new();
    ws.pipeline("greet", GREET);
    ws.write("assets/greeting.txt", "hello\n");
    ws.write("calm", "");

    // First start: the file becomes version 1, pinned, recorded as opsdeck's own change.
    let list = ws.run(&["assets", "list", "--json"]);
    list.expect_code(0);
    let v = list.json();
    assert_eq!(
        (&v[0]["name"], &v[0]["pinned"], &v[0]["latest"]),
        (&Value::from("greeting"), &Value::from(1), &Value::from(1)),
        "{v}"
    );
    assert_eq!(v[0]["used_by"][0]["stage"], "render");
    // An unchanged file on the next start adds nothing.
    assert_eq!(ws.run(&["assets", "list", "--json"]).json()[0]["latest"], 1);

    let base = ws.run(&["run", "greet", "--json"]);
    base.expect_code(0);
    let base_id = id_of(&base);
    let run = base.json();
    assert_eq!(run["stages"][0]["attempts"][0]["assets"]["greeting"], 1);
    assert_eq!(
        run["stages"][0]["attempts"][0]["output"]["asset"]["greeting"]["content"],
        "hello\n"
    );

    // A new version waits for a pin; a test of one stage tries it first.
    ws.write("v2.txt", "hej\n");
    let v2 = ws.path("v2.txt");
    ws.run(&[
        "assets",
        "put",
        "greeting",
        v2.to_str().unwrap(),
        "--reason",
        "Danish",
    ])
    .expect_code(0);
    let shown = ws.run(&["assets", "show", "greeting"]);
    assert!(
        shown.stdout().contains("version 1 pinned"),
        "{}",
        shown.stdout()
    );
    let diff = ws.run(&["assets", "diff", "greeting", "1", "2"]);
    diff.expect_code(0);
    assert!(
        diff.stdout().contains("-    1 hello") && diff.stdout().contains("+    1 hej"),
        "{}",
        diff.stdout()
    );
    let test = ws.run(&[
        "stage",
        "test",
        "greet",
        "render",
        "--override",
        "greeting=2",
    ]);
    test.expect_code(0);
    assert!(test.stdout().contains("hej"), "{}", test.stdout());
    // It ran with the input render had in the last successful run.
    let tests = ws.run(&["runs", "--tests", "--json"]).json();
    assert_eq!(tests.as_array().unwrap().len(), 1, "{tests}");
    let test_id = tests[0]["id"].as_i64().unwrap().to_string();
    let production = ws.run(&["runs", "--json"]).json();
    assert!(
        production
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"].as_i64().unwrap().to_string() != test_id),
        "{production}"
    );
    let shown = ws.run(&["runs", "show", &test_id, "--json"]).json();
    assert_eq!(shown["test"], true);
    assert_eq!(shown["stages"].as_array().unwrap().len(), 1);

    // A failing stage under test stays out of the dead-letter queue.
    std::fs::remove_file(ws.path("calm")).unwrap();
    ws.run(&["stage", "test", "greet", "boom", "--input", "-"])
        .expect_error(2, "not JSON");
    ws.write("input.json", r#"{"params": {}, "stages": {}}"#);
    let input = ws.path("input.json");
    ws.run(&[
        "stage",
        "test",
        "greet",
        "boom",
        "--input",
        input.to_str().unwrap(),
    ])
    .expect_code(1);
    assert_eq!(
        ws.run(&["dlq", "list", "--json"]).json(),
        serde_json::json!([])
    );
    ws.write("calm", "");

    // Pinned, every run uses it; an override takes another for one run only.
    ws.run(&["assets", "pin", "greeting", "2", "--reason", "ship Danish"])
        .expect_code(0);
    let cand = ws.run(&["run", "greet", "--json"]);
    let cand_id = id_of(&cand);
    assert_eq!(
        cand.json()["stages"][0]["attempts"][0]["assets"]["greeting"],
        2
    );
    let over = ws.run(&["run", "greet", "--override", "greeting=1", "--json"]);
    assert_eq!(over.json()["overrides"]["greeting"], 1);
    let over_id = id_of(&over);
    let show = ws.run(&["runs", "show", &over_id]);
    assert!(
        show.stdout().contains("overrides greeting@1") && show.stdout().contains("greeting@1"),
        "{}",
        show.stdout()
    );

    // Compare: the asset changed for render; publish changed downstream because of it.
    let cmp = ws.run(&["compare", &base_id, &cand_id, "--json"]);
    let c = cmp.json();
    assert_eq!(c["assets"][0]["name"], "greeting", "{c}");
    assert_eq!(
        (
            &c["assets"][0]["base_version"],
            &c["assets"][0]["candidate_version"]
        ),
        (&Value::from(1), &Value::from(2))
    );
    assert_eq!(c["assets"][0]["stages"], serde_json::json!(["render"]));
    assert_eq!(
        c["assets"][0]["downstream_changed"],
        serde_json::json!(["publish"])
    );
    assert_eq!(c["unexplained"], serde_json::json!([]), "{c}");

    // Roll back: the pin before is current again, and the audit log says who and why.
    ws.run(&[
        "assets",
        "rollback",
        "greeting",
        "--reason",
        "customers complained",
    ])
    .expect_code(0);
    ws.run(&["assets", "rollback", "greeting", "--reason", "again"])
        .expect_error(2, "no earlier pin");
    let after = ws.run(&["run", "greet", "--json"]);
    assert_eq!(
        after.json()["stages"][0]["attempts"][0]["assets"]["greeting"],
        1
    );
    let rows = crate::support::audit_rows(&ws, "asset", ["action", "actor", "outcome"]);
    assert_eq!(
        rows,
        [
            ("asset.rollback", "alice", "failed: conflict"),
            ("asset.rollback", "alice", "ok"),
            ("asset.pin", "alice", "ok"),
            ("asset.put", "alice", "ok"),
            ("asset.put", "opsdeck", "ok"),
        ]
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())),
    );

    // A changed file on the next start is a new, pinned version, never a silent overwrite.
    ws.write("assets/greeting.txt", "hola\n");
    let d = ws.run(&["assets", "show", "greeting", "--json"]).json();
    assert_eq!(
        (&d["pinned"], &d["versions"][0]["version"]),
        (&Value::from(3), &Value::from(3))
    );
    assert!(
        d["versions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("assets/greeting.txt changed"),
        "{d}"
    );
    assert_eq!(d["shown"]["content"], "hola\n");
}

#[test]
fn bad_asset_input_names_what_is_wrong_and_changes_nothing() {
    let ws = TestWorkspace::new();
    ws.pipeline("greet", GREET);
    // A stage naming an asset the store lacks: the run is refused before it starts.
    ws.run(&["run", "greet"])
        .expect_error(2, "uses asset `greeting`, which the store does not have");
    ws.write("assets/greeting.txt", "hello\n");
    ws.run(&["run", "greet", "--override", "nope=1"])
        .expect_error(2, "no stage of the run uses; `greet` uses greeting");
    ws.run(&["run", "greet", "--override", "greeting=9"])
        .expect_error(2, "versions 1 to 1");
    ws.run(&["run", "greet", "--override", "greeting"])
        .expect_error(2, "NAME=VERSION");
    ws.run(&[
        "run",
        "greet",
        "--override",
        "greeting=1",
        "--override",
        "greeting=1",
    ])
    .expect_error(2, "names asset `greeting` twice");
    ws.run(&["assets", "show", "greeting", "--version", "x"])
        .expect_error(
            2,
            "`x` is not a version; a version is a whole number from 1",
        );
    ws.run(&["assets", "show", "nope"])
        .expect_error(2, "there is no asset `nope`; assets: greeting");
    ws.run(&["assets", "pin", "greeting", "4", "--reason", "x"])
        .expect_error(2, "versions 1 to 1");
    ws.run(&["assets", "put", "greeting", "missing.txt"])
        .expect_error(2, "missing.txt: No such file");
    ws.run(&["stage", "test", "greet", "nope"])
        .expect_error(2, "has no stage `nope`; its stages: render, publish, boom");
    ws.run(&["stage", "test", "greet", "render"])
        .expect_error(2, "no successful run to take stage `render`'s input from");
    assert_eq!(ws.run(&["runs", "--json"]).json(), serde_json::json!([]));
    // A file that cannot be an asset is left out and named; the others, and runs, go on.
    ws.write("assets/bad name.txt", "x");
    std::fs::write(ws.path("assets/binary.txt"), [0xff, 0xfe]).unwrap();
    let list = ws.run(&["assets", "list"]);
    list.expect_code(0);
    assert!(list.stdout().contains("greeting"), "{}", list.stdout());
    for want in [
        "warning: assets/bad name.txt: ",
        "warning: assets/binary.txt: not UTF-8 text; assets are text; it is left out",
    ] {
        assert!(list.stderr().contains(want), "{want}: {}", list.stderr());
    }
    ws.write("in.json", "{}");
    let input = ws.path("in.json");
    ws.run(&[
        "stage",
        "test",
        "greet",
        "render",
        "--input",
        input.to_str().unwrap(),
    ])
    .expect_code(0);
    // A pipeline naming an asset badly is a validation error with its line.
    ws.pipeline(
        "bad",
        "[pipeline]\nname = \"bad\"\n[[stage]]\nid = \"a\"\nkind = \"command\"\ncommand = [\"true\"]\nassets = [\"x@0\", \"y\", \"y\"]\n",
    );
    let v = ws.run(&["validate", ws.path("pipelines/bad.toml").to_str().unwrap()]);
    v.expect_code(2);
    let said = format!("{}{}", v.stdout(), v.stderr());
    assert!(
        said.contains("from 1") && said.contains("names asset `y` twice"),
        "{said}"
    );
}

/// The bundled demo starts with a run on each of two versions of its rule table, so Compare
/// and Assets have a real change to show; a second start adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_starts_with_a_run_on_each_of_two_versions_of_its_rule_table() {
    use chrono::TimeZone;
    use opsdeck::host::{Host, HostOptions, Workspace};
    use opsdeck::model::compare::{StageVerdict, compare};
    use opsdeck::model::{RunQuery, StageStatus};

    let dir = tempfile::tempdir().unwrap();
    opsdeck::host::workspace::unpack_demo(dir.path()).unwrap();
    let start = chrono::Utc
        .with_ymd_and_hms(2026, 11, 30, 9, 0, 0)
        .single()
        .unwrap();
    let clock = opsdeck::clock::ManualClock::new(start);
    let mut opts = HostOptions::new("demo test");
    opts.clock = std::sync::Arc::new(clock.clone());
    opts.seed = Some(3);
    let host = Host::start(Workspace::open(dir.path()).unwrap(), opts)
        .await
        .unwrap();
    opsdeck::host::demo::prime(&host).await;
    opsdeck::host::demo::prime(&host).await;
    let d = host.asset("fraud-rules", None).await.unwrap();
    assert_eq!((d.pinned, d.versions.len()), (Some(2), 2), "{d:?}");
    let q = RunQuery {
        pipeline: Some("fraud-model".into()),
        limit: 10,
        ..RunQuery::default()
    };
    let ids: Vec<_> = host
        .runs(q)
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        ids.len(),
        2,
        "one run on each version, however often it starts"
    );
    for _ in 0..2_000 {
        if ids.iter().all(|id| !host.is_active(*id)) {
            break;
        }
        clock.advance(std::time::Duration::from_millis(250));
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let (cand, base) = (
        host.run(ids[0]).await.unwrap(),
        host.run(ids[1]).await.unwrap(),
    );
    let c = compare(
        &base,
        &cand,
        &opsdeck::model::compare::CompareSettings::default(),
    );
    let evaluate = c.stages.iter().find(|s| s.id == "evaluate").unwrap();
    assert_eq!(evaluate.status, [Some(StageStatus::Succeeded); 2], "{c:?}");
    assert_eq!(
        evaluate.verdict,
        StageVerdict::Regressed,
        "slower: {evaluate:?}"
    );
    assert!(
        evaluate
            .changes
            .iter()
            .any(|ch| ch.path == "$.flagged_per_1k"),
        "{evaluate:?}"
    );
    assert_eq!(c.assets[0].name, "fraud-rules");
    assert_eq!(c.assets[0].stages, ["evaluate"]);
    host.shutdown().await;
}

/// Stage tests that fail again and again neither open the stage's breaker, nor fill the
/// dead-letter queue, nor count in the run metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_stage_tests_stay_out_of_breakers_the_dlq_and_metrics() {
    use opsdeck::model::asset::StageTest;
    use opsdeck::model::{Command, Outcome, RunStatus, StartRun};
    let ws = TestWorkspace::new();
    ws.pipeline("flaky", crate::support::FLAKY);
    let host = ws.host().await;
    for _ in 0..4 {
        let cmd = Command::StartRun(StartRun {
            pipeline: "flaky".into(),
            test: Some(Box::new(StageTest {
                stage: "call".into(),
                input: Some(serde_json::json!({"params": {}, "stages": {}})),
                from_run: None,
            })),
            ..StartRun::default()
        });
        let Outcome::RunStarted { run } = crate::support::act(&host, cmd, "").await.unwrap() else {
            panic!("a test run starts");
        };
        assert_eq!(host.wait(run).await.unwrap(), RunStatus::Failed);
    }
    let o = host.overview().await.unwrap();
    assert!(o.breakers.is_empty(), "{:?}", o.breakers);
    assert_eq!(o.dlq_depth, 0);
    assert!(host.run_counts().await.unwrap().is_empty());
    // A production run of the same stage does reach the breaker and the queue.
    let run = host
        .start_run(
            "flaky",
            &serde_json::Map::new(),
            opsdeck::model::Trigger::Manual,
        )
        .await
        .unwrap();
    host.wait(run).await.unwrap();
    assert_eq!(host.overview().await.unwrap().dlq_depth, 1);
    assert_eq!(host.run_counts().await.unwrap().len(), 1);
    host.shutdown().await;
}

/// An override of version 0 sent to the API is refused before any run exists, and a stage
/// test from a run that does not exist says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_override_leaves_no_run_behind() {
    use opsdeck::model::asset::StageTest;
    use opsdeck::model::{Command, ErrorCode, RunQuery, StartRun};
    let ws = TestWorkspace::new();
    ws.pipeline("greet", GREET);
    ws.write("assets/greeting.txt", "hello\n");
    let host = ws.host().await;
    let (addr, _state) =
        crate::support::serve_api(&host, opsdeck::server::ServerConfig::default()).await;
    let res = crate::support::http()
        .post(format!("http://{addr}/v1/pipelines/greet/runs"))
        .json(&serde_json::json!({"overrides": {"greeting": 0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let v: Value = res.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("names version 0; a version is a whole number from 1"),
        "{v}"
    );
    let missing = Command::StartRun(StartRun {
        pipeline: "greet".into(),
        test: Some(Box::new(StageTest {
            stage: "render".into(),
            input: None,
            from_run: Some(opsdeck::model::RunId(999)),
        })),
        ..StartRun::default()
    });
    let e = crate::support::act(&host, missing, "").await.unwrap_err();
    assert!(
        e.code == ErrorCode::Validation && e.message.contains("there is no run 999"),
        "{e}"
    );
    for tests in [false, true] {
        let q = RunQuery {
            limit: 10,
            tests,
            ..RunQuery::default()
        };
        assert_eq!(host.runs(q).await.unwrap().total, 0);
    }
    host.shutdown().await;
}
