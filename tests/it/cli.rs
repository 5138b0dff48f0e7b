//! The command line as users and scripts see it: JSON shapes, filters, exit codes, errors.

use serde_json::{Value, json};

use crate::support::TestWorkspace;

const ETL: &str = r#"[pipeline]
name = "etl"
[pipeline.params]
region = "eu"
limit = 10
[[stage]]
id = "extract"
kind = "simulate"
output = { rows = 3 }
[[stage]]
id = "load"
kind = "command"
needs = ["extract"]
command = ["cat"]
"#;

const FRAGILE: &str = r#"[pipeline]
name = "fragile"
[[stage]]
id = "a"
kind = "command"
command = ["sh", "-c", "[ -f ok ] || { echo 'not yet' >&2; exit 1; }"]
"#;

fn workspace() -> TestWorkspace {
    let ws = TestWorkspace::new();
    ws.pipeline("etl", ETL).pipeline("fragile", FRAGILE);
    ws
}

#[test]
fn run_json_has_the_documented_shape() {
    let ws = workspace();
    let out = ws.run(&["run", "etl", "--param", "limit=25", "--json"]);
    out.expect_code(0);
    let run = out.json();
    for key in [
        "id",
        "pipeline",
        "status",
        "params",
        "created_at",
        "started_at",
        "finished_at",
        "stages",
    ] {
        assert!(run.get(key).is_some(), "missing {key} in {run}");
    }
    assert_eq!(run["status"], "succeeded");
    assert_eq!(
        run["params"],
        json!({"region": "eu", "limit": 25}),
        "typed like the default"
    );
    let load = &run["stages"][1];
    assert_eq!(
        (load["id"].as_str(), load["status"].as_str()),
        (Some("load"), Some("succeeded"))
    );
    let attempt = &load["attempts"][0];
    for key in [
        "n",
        "status",
        "started_at",
        "finished_at",
        "duration_ms",
        "input",
        "output",
        "stderr",
        "error",
    ] {
        assert!(attempt.get(key).is_some(), "missing {key} in {attempt}");
    }
    assert_eq!(attempt["n"], 1);
    assert_eq!(attempt["error"], Value::Null);
    assert_eq!(
        attempt["input"],
        json!({"params": {"region": "eu", "limit": 25}, "stages": {"extract": {"rows": 3}}})
    );

    // A failing run exits 1 and its error is in the JSON.
    let out = ws.run(&["run", "fragile", "--json"]);
    out.expect_code(1);
    let err = &out.json()["stages"][0]["attempts"][0]["error"];
    assert_eq!(err["code"], "exit_status");
    assert_eq!(
        out.json()["stages"][0]["attempts"][0]["stderr"],
        "not yet\n"
    );
}

#[test]
fn human_run_output_shows_progress_and_the_result() {
    let ws = workspace();
    let out = ws.run(&["run", "fragile"]);
    out.expect_code(1);
    let text = out.stdout();
    assert!(text.starts_with("run 1 of `fragile` started\n"), "{text}");
    assert!(text.contains("  ✗ a: failed after 1 attempt(s) (exit_status: `sh` exited with status 1); parked as dead-letter entry 1"), "{text}");
    assert!(text.contains("details: opsdeck runs show 1"), "{text}");
}

#[test]
fn runs_are_listed_newest_first_filtered_and_paged() {
    let ws = workspace();
    for p in ["etl", "fragile", "etl", "etl"] {
        ws.run(&["run", p]);
    }
    let ids = |args: &[&str]| -> Vec<u64> {
        let mut all = vec!["runs", "--json"];
        all.extend_from_slice(args);
        let out = ws.run(&all);
        out.expect_code(0);
        out.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(ids(&[]), [4, 3, 2, 1]);
    assert_eq!(ids(&["--pipeline", "etl"]), [4, 3, 1]);
    assert_eq!(ids(&["--status", "failed"]), [2]);
    assert_eq!(ids(&["--limit", "2"]), [4, 3]);
    assert_eq!(ids(&["--limit", "2", "--before", "3"]), [2, 1]);
    let table = ws.run(&["runs", "--limit", "2"]).stdout();
    assert!(table.starts_with("ID  PIPELINE  STATUS"), "{table}");
    assert!(table.contains("(more: --before 3)"), "{table}");
    let summary = &ws.run(&["runs", "--json", "--limit", "1"]).json()[0];
    assert_eq!(
        (
            summary["stages_done"].as_u64(),
            summary["stages_total"].as_u64()
        ),
        (Some(2), Some(2))
    );
}

#[test]
fn bad_input_gets_one_sentence_and_exit_2() {
    let ws = workspace();
    let cases: &[(&[&str], &str)] = &[
        (
            &["runs", "show", "abc"],
            "`abc` is not a valid run id; ids are positive numbers such as 42",
        ),
        (
            &["runs", "show", "99"],
            "opsdeck: there is no run 99; list runs with `opsdeck runs`",
        ),
        (
            &["runs", "--status", "done"],
            "`done` is not a run status; valid choices: pending, running, succeeded, failed, cancelled, interrupted",
        ),
        (
            &["runs", "--pipeline", "elt"],
            "opsdeck: there is no pipeline `elt` (did you mean `etl`?); pipelines: etl, fragile",
        ),
        (
            &["run", "nope"],
            "opsdeck: there is no pipeline `nope`; pipelines: etl, fragile",
        ),
        (
            &["run", "etl", "-p", "limit=many"],
            "opsdeck: param `limit` must be an integer (like its default 10), got `many`",
        ),
        (
            &["run", "etl", "-p", "colour=red"],
            "opsdeck: pipeline `etl` has no param `colour`; declared params: region, limit",
        ),
        (
            &["dlq", "requeue", "5", "--reason", "retry it"],
            "opsdeck: cannot requeue dead-letter entry 5: there is no dead-letter entry 5; list them with `opsdeck dlq list`",
        ),
    ];
    for (args, expected) in cases {
        let out = ws.run(args);
        assert_eq!(out.code(), 2, "{args:?}: {}", out.stderr());
        assert!(
            out.stderr().contains(expected),
            "{args:?}:\n{}",
            out.stderr()
        );
        assert!(
            !out.stderr().contains("panicked") && !out.stderr().contains("RUST_BACKTRACE"),
            "{}",
            out.stderr()
        );
    }
    let bad_ws = crate::support::Out(
        ws.bare_cmd()
            .args(["--workspace", "/nonexistent/ws", "runs"])
            .output()
            .unwrap(),
    );
    bad_ws.expect_code(2);
    assert_eq!(
        bad_ws.stderr(),
        "opsdeck: the workspace /nonexistent/ws does not exist or is not a directory\n"
    );
}

#[test]
fn runs_list_is_runs_alone() {
    let ws = workspace();
    ws.run(&["run", "etl"]).expect_code(0);
    let alone = ws.run(&["runs", "--json"]);
    let listed = ws.run(&["runs", "list", "--json"]);
    listed.expect_code(0);
    assert_eq!(listed.json(), alone.json());
    assert_eq!(listed.json().as_array().unwrap().len(), 1);
    assert_eq!(
        ws.run(&["runs", "list", "--status", "failed", "--json"])
            .json(),
        json!([])
    );
}

#[test]
fn dead_letters_can_be_listed_requeued_and_discarded() {
    let ws = workspace();
    // A failure says why in the stage's own words: the last lines it wrote to stderr, where
    // the run ends, in `runs show` and in `dlq show`.
    let ran = ws.run(&["run", "fragile"]);
    ran.expect_code(1);
    let said = "stderr of `a`, attempt 1 (last 1 line):\n  not yet\n";
    assert!(ran.stdout().contains(said), "{}", ran.stdout());
    ws.run(&["run", "fragile"]).expect_code(1);
    let shown = ws.run(&["runs", "show", "2"]).stdout();
    assert!(shown.contains(said), "{shown}");
    let list = ws.run(&["dlq", "list", "--json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["stage"], "a");
    assert_eq!(list[0]["error"]["code"], "exit_status");
    assert!(
        ws.run(&["dlq", "list"])
            .stdout()
            .starts_with("ID  RUN  PIPELINE  STAGE  ATTEMPTS  AGE")
    );

    // One entry whole, with the input it was parked with (the list leaves inputs out).
    let one = ws.run(&["dlq", "show", "2", "--json"]);
    one.expect_code(0);
    assert_eq!(one.json()["stage"], "a");
    assert!(!one.json()["input"].is_null(), "{}", one.stdout());
    let text = ws.run(&["dlq", "show", "2"]).stdout();
    assert!(
        text.contains("Error:     exit_status:") && text.contains("Input:") && text.contains(said),
        "{text}"
    );

    std::fs::write(ws.path("ok"), "").unwrap();
    let requeued = ws.run(&["dlq", "requeue", "1", "--reason", "fixed the input"]);
    requeued.expect_code(0);
    assert!(
        requeued
            .stdout()
            .contains("dead-letter entry 1 requeued into run 1"),
        "{}",
        requeued.stdout()
    );
    assert_eq!(
        ws.run(&["runs", "show", "1", "--json"]).json()["status"],
        "succeeded"
    );

    ws.run(&["dlq", "show", "1"])
        .expect_error(2, "there is no dead-letter entry 1: ");
    let discarded = ws.run(&["dlq", "discard", "2", "--reason", "duplicate"]);
    discarded.expect_code(0);
    assert_eq!(
        discarded.stdout(),
        "dead-letter entry 2 discarded; run 2 stays failed\n"
    );
    assert_eq!(ws.run(&["dlq", "list", "--json"]).json(), json!([]));
    assert_eq!(
        ws.run(&["runs", "show", "2", "--json"]).json()["status"],
        "failed"
    );
}

#[test]
fn retry_reruns_failed_stages_and_cancel_refuses_finished_runs() {
    let ws = workspace();
    ws.run(&["run", "fragile"]).expect_code(1);
    std::fs::write(ws.path("ok"), "").unwrap();
    ws.run(&["runs", "retry", "1", "--reason", "flaky"])
        .expect_code(0);
    let run = ws.run(&["runs", "show", "1", "--json"]).json();
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["stages"][0]["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(
        ws.run(&["dlq", "list", "--json"]).json(),
        json!([]),
        "retrying a run clears its dead letters"
    );

    let cancel = ws.run(&["runs", "cancel", "1", "--reason", "too late"]);
    cancel.expect_code(2);
    assert_eq!(
        cancel.stderr(),
        "opsdeck: cannot cancel run 1: run 1 already finished (succeeded); there is nothing to cancel\n"
    );
    let resume = ws.run(&["runs", "resume", "1"]);
    resume.expect_code(2);
    assert!(
        resume
            .stderr()
            .contains("run 1 is succeeded, not interrupted; only interrupted runs can be resumed"),
        "{}",
        resume.stderr()
    );
}

#[test]
fn events_print_json_lines_from_a_sequence_number() {
    let ws = workspace();
    ws.run(&["run", "etl"]).expect_code(0);
    let all = ws.run(&["events", "--json"]).stdout();
    let all: Vec<Value> = all
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(all.len() >= 6);
    assert_eq!(all[0]["kind"], "run_created");
    let since = ws
        .run(&["events", "--since", "3", "--limit", "2", "--json"])
        .stdout();
    let since: Vec<u64> = since
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(since, [4, 5]);
    let human = ws.run(&["events", "--limit", "1"]).stdout();
    assert!(human.starts_with("#1 "), "{human}");
    assert!(human.contains("run_created"), "{human}");
    // Mistakes are named, as the API names them.
    ws.run(&["events", "--since", "abc"])
        .expect_error(2, "`abc` is not a sequence number");
    ws.run(&["events", "--limit", "0"])
        .expect_error(2, "give a whole number of at least 1");
    let end = all.last().unwrap()["seq"].as_u64().unwrap();
    ws.run(&["events", "--since", &(end + 5).to_string()])
        .expect_error(2, &format!("the event log ends at {end}"));
}

#[test]
fn events_narrow_to_one_run_and_to_kinds() {
    let ws = workspace();
    ws.run(&["run", "etl"]).expect_code(0);
    ws.run(&["run", "etl"]).expect_code(0);
    let lines = |args: &[&str]| -> Vec<Value> {
        ws.run(args)
            .stdout()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let all = lines(&["events", "--json"]);
    let second = lines(&["events", "--run", "2", "--json"]);
    let expected: Vec<&Value> = all.iter().filter(|e| e["run_id"] == 2).collect();
    assert!(expected.len() >= 6, "{expected:?}");
    assert_eq!(second.iter().collect::<Vec<_>>(), expected);
    let ends = lines(&["events", "--kind", "run_finished,run_created", "--json"]);
    let kinds: Vec<(&str, u64)> = ends
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["run_id"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("run_created", 1),
            ("run_finished", 1),
            ("run_created", 2),
            ("run_finished", 2)
        ]
    );
    // The limit counts what is printed, and the filters combine.
    let one = lines(&[
        "events",
        "--run",
        "2",
        "--kind",
        "stage_finished",
        "--kind",
        "run_finished",
        "--limit",
        "1",
        "--json",
    ]);
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["kind"], "stage_finished");
    assert_eq!(one[0]["run_id"], 2);
    ws.run(&["events", "--kind", "finished"]).expect_error(
        2,
        "`finished` is not an event kind; valid kinds: run_created, run_started",
    );
    ws.run(&["events", "--run", "9"])
        .expect_error(2, "there is no run 9; list runs with `opsdeck runs`");
    ws.run(&["events", "--run", "x"])
        .expect_error(2, "`x` is not a valid run id");
}

#[test]
fn events_follow_one_run_to_its_end() {
    let ws = TestWorkspace::new();
    let gate = ws.path("go");
    ws.pipeline(
        "gated",
        &format!(
            "[pipeline]\nname = \"gated\"\n[[stage]]\nid = \"wait\"\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"while [ ! -e '{}' ]; do sleep 0.05; done; echo '{{}}'\"]\n",
            gate.display()
        ),
    );
    let mut run = ws
        .cmd()
        .args(["run", "gated"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    crate::support::eventually("run 1 to start its stage", || {
        !ws.run(&["events", "--run", "1", "--kind", "stage_started"])
            .stdout()
            .is_empty()
    });
    // Following run 1 for its end, which comes once the gate opens: the end alone is printed,
    // and the limit ends the command.
    let follow = ws
        .cmd()
        .args([
            "events",
            "--follow",
            "--run",
            "1",
            "--kind",
            "run_finished",
            "--limit",
            "1",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::fs::write(&gate, "").unwrap();
    assert!(run.wait().unwrap().success());
    let out = crate::support::Out(follow.wait_with_output().unwrap());
    out.expect_code(0);
    let lines: Vec<Value> = out
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", out.stdout());
    assert_eq!(lines[0]["kind"], "run_finished");
    assert_eq!(lines[0]["run_id"], 1);
    assert_eq!(lines[0]["data"]["status"], "succeeded");
}

#[test]
fn logs_go_to_the_workspace_not_the_terminal() {
    let ws = workspace();
    let out = ws.run(&["run", "etl"]);
    assert_eq!(out.stderr(), "", "nothing on stderr for a successful run");
    let logs: Vec<_> = std::fs::read_dir(ws.path(".opsdeck/logs"))
        .unwrap()
        .filter_map(Result::ok)
        .collect();
    assert_eq!(logs.len(), 1);
    let text = std::fs::read_to_string(logs[0].path()).unwrap();
    assert!(text.contains("host started"), "{text}");
    // -v raises the level.
    ws.run(&["-v", "runs"]).expect_code(0);
}

#[test]
fn without_a_workspace_the_demo_is_unpacked_into_the_data_dir() {
    let ws = TestWorkspace::new();
    let demo = ws.root.path().join("home/data/opsdeck/demo");
    // A read-only look never sets the demo up as a side effect.
    let look = ws.bare_cmd().args(["runs"]).output().unwrap();
    assert_eq!(look.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&look.stderr).contains("the bundled demo has not been set up yet"),
        "{}",
        String::from_utf8_lossy(&look.stderr)
    );
    assert!(!demo.exists(), "a read-only command created the demo");
    // A command that hosts sets it up, and its command stage's output changes with the run.
    for _ in 0..2 {
        let out = ws
            .bare_cmd()
            .args(["run", "checkout-etl", "--json"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for f in [
        "opsdeck.toml",
        "pipelines/checkout-etl.toml",
        "pipelines/partner-sync.toml",
    ] {
        assert!(demo.join(f).is_file(), "{f} missing from the unpacked demo");
    }
    let output = |run: &str| {
        let out = ws
            .bare_cmd()
            .args(["runs", "show", run, "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let stage = v["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "verify-counts")
            .cloned()
            .unwrap();
        stage["attempts"][0]["output"]["expected"].clone()
    };
    let (first, second) = (output("1"), output("2"));
    assert!(first.is_number(), "{first}");
    assert_ne!(
        first, second,
        "the demo's verify-counts output changes between runs"
    );
}

#[test]
fn a_closed_output_pipe_ends_quietly_not_with_a_panic() {
    use std::fmt::Write as _;
    use std::io::{BufRead, BufReader};
    let ws = TestWorkspace::new();
    let mut many = String::from("[pipeline]\nname = \"many\"\nconcurrency = 16\n");
    for i in 0..200 {
        let _ = write!(many, "[[stage]]\nid = \"s{i}\"\nkind = \"simulate\"\n");
    }
    ws.pipeline("many", &many);
    for _ in 0..3 {
        ws.run(&["run", "many"]).expect_code(0);
    }
    // ~1,200 events (~150 KB), far more than a pipe buffer holds: the writer must hit the closed pipe.
    let mut child = ws
        .cmd()
        .args(["events"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("#1 "), "{first}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn a_closed_pipe_does_not_stop_a_foreground_run() {
    use std::io::{BufRead, BufReader};
    let ws = workspace();
    ws.pipeline(
        "chatty",
        "[pipeline]\nname = \"chatty\"\n[[stage]]\nid = \"a\"\nkind = \"simulate\"\n[[stage]]\nid = \"b\"\nkind = \"command\"\nneeds = [\"a\"]\ncommand = [\"sh\", \"-c\", \"sleep 0.3; echo done > b.ran\"]\n",
    );
    let mut child = ws
        .cmd()
        .args(["run", "chatty"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "run 1 of `chatty` started\n");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the run's own outcome decides the exit code"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(crate::support::read(&ws.path("b.ran")), "done\n");
    assert_eq!(
        ws.run(&["runs", "show", "1", "--json"]).json()["status"],
        "succeeded"
    );
}

#[test]
fn retry_and_requeue_give_a_fresh_set_of_attempts() {
    let ws = TestWorkspace::new();
    ws.pipeline(
        "twice",
        "[pipeline]\nname = \"twice\"\n[pipeline.retry]\nmax_attempts = 2\nbackoff = { initial_ms = 1, max_ms = 1 }\n[[stage]]\nid = \"a\"\nkind = \"command\"\ncommand = [\"false\"]\n",
    );
    ws.run(&["run", "twice"]).expect_code(1);
    ws.run(&["runs", "retry", "1", "--reason", "flaky"])
        .expect_code(1);
    let attempts = ws.run(&["runs", "show", "1", "--json"]).json()["stages"][0]["attempts"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(attempts, 4, "two attempts, then two more after the retry");
    let entry = ws.run(&["dlq", "list", "--json"]).json()[0]["id"]
        .as_u64()
        .unwrap();
    ws.run(&["dlq", "requeue", &entry.to_string(), "--reason", "again"])
        .expect_code(1);
    let attempts = ws.run(&["runs", "show", "1", "--json"]).json()["stages"][0]["attempts"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(attempts, 6);
    // The old entry is gone; asking for it says where the stage went.
    let gone = ws.run(&["dlq", "requeue", &entry.to_string(), "--reason", "again"]);
    gone.expect_code(2);
    assert!(gone.stderr().contains(&format!("there is no dead-letter entry {entry}: it was requeued, and stage `a` of run 1 failed again as entry {}", entry + 1)), "{}", gone.stderr());
}

#[test]
fn workspace_problems_are_named_where_they_matter() {
    let ws = workspace();
    ws.pipeline(
        "typo",
        "[pipeline]\nname = \"typo\"\n[[stage]]\nid = \"a\"\nkind = \"simulat\"\n",
    );
    ws.pipeline(
        "dup",
        "[pipeline]\nname = \"etl\"\n[[stage]]\nid = \"a\"\nkind = \"simulate\"\n",
    );
    let typo = ws.run(&["run", "typo"]);
    typo.expect_code(2);
    assert!(typo.stderr().starts_with("opsdeck: pipeline `typo` cannot be used: pipelines/typo.toml has 1 problem(s):\n  pipelines/typo.toml:5:8: unknown stage kind `simulat`"), "{}", typo.stderr());
    let dup = ws.run(&["run", "etl"]);
    dup.expect_code(2);
    assert_eq!(
        dup.stderr(),
        "opsdeck: pipeline `etl` is defined in pipelines/dup.toml and pipelines/etl.toml; names must be unique\n"
    );
    // Hosting refuses a workspace with any problem, listing them all.
    let serve = ws.run(&["serve"]);
    serve.expect_code(2);
    assert!(
        serve.stderr().contains("pipelines/typo.toml:5:8:")
            && serve
                .stderr()
                .contains("pipelines/etl.toml: pipeline `etl` is already defined"),
        "{}",
        serve.stderr()
    );
}

#[test]
fn settings_come_from_files_and_checked_environment_variables() {
    let ws = workspace();
    let out = crate::support::Out(
        ws.cmd()
            .env("OPSDECK_STORE__MAX_OUTPUT_BYTES", "100")
            .args(["runs"])
            .output()
            .unwrap(),
    );
    out.expect_code(2);
    assert_eq!(
        out.stderr(),
        "opsdeck: environment: OPSDECK_STORE__MAX_OUTPUT_BYTES=100: must be an integer from 1024 to 1073741824\n"
    );
    // OPSDECK_LOG is a log filter, not a setting; an empty OPSDECK_WORKSPACE is ignored.
    let ok = crate::support::Out(
        ws.cmd()
            .env("OPSDECK_LOG", "debug")
            .env("OPSDECK_WORKSPACE", "")
            .args(["runs"])
            .output()
            .unwrap(),
    );
    ok.expect_code(0);
    let limit = ws.run(&["events", "--limit", "0"]);
    limit.expect_code(2);
}

#[test]
fn reading_a_directory_that_never_ran_anything_changes_nothing() {
    let ws = TestWorkspace::new();
    ws.run(&["runs"]).expect_code(0);
    ws.run(&["events"]).expect_code(0);
    ws.run(&["dlq", "list"]).expect_code(0);
    ws.write("opsdeck.toml", "[canary.api]\nsource = \"simulate\"\n");
    ws.run(&["canary", "list"]).expect_code(0);
    let status = ws.run(&["canary", "status", "api"]);
    status.expect_code(0);
    assert!(
        status.stdout().contains("No host runs this workspace"),
        "{}",
        status.stdout()
    );
    assert!(!ws.path(".opsdeck").exists());
}

#[test]
fn stderr_truncation_says_how_much_was_kept() {
    let ws = TestWorkspace::new();
    ws.write("opsdeck.toml", "[store]\nmax_output_bytes = 1024\n");
    ws.pipeline("loud", "[pipeline]\nname = \"loud\"\n[[stage]]\nid = \"a\"\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"head -c 3000 /dev/zero | tr '\\\\0' e >&2; printf hello\"]\n");
    ws.run(&["run", "loud"]).expect_code(0);
    let a = ws.run(&["runs", "show", "1", "--json"]).json()["stages"][0]["attempts"][0].clone();
    assert!(
        a["stderr"]
            .as_str()
            .unwrap()
            .ends_with("…[truncated by opsdeck: kept 1024 of 3000 bytes]"),
        "{}",
        a["stderr"]
    );
    assert_eq!(a["output"], "hello");
    assert_eq!(a["output_bytes"], 5, "the size as produced, not as stored");
}

/// A long-lived host starts each new run from the pipeline files as they are now: a file
/// added or edited while `opsdeck serve` runs needs no restart.
#[test]
fn a_serving_host_runs_pipeline_files_added_or_edited_since_it_started() {
    let echo = |text: &str| {
        format!(
            "[pipeline]\nname = \"hello\"\n[[stage]]\nid = \"say\"\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"echo '{{\\\"said\\\": \\\"{text}\\\"}}'\"]\n"
        )
    };
    let ws = workspace();
    let port = crate::support::free_port();
    let server = crate::support::serve(&ws, port);
    ws.pipeline("hello", &echo("first"));
    let said = |ws: &TestWorkspace| {
        let out = ws.run(&["run", "hello", "--json"]);
        out.expect_code(0);
        out.json()["stages"][0]["attempts"][0]["output"]["said"].clone()
    };
    assert_eq!(said(&ws), "first", "a file added while hosted");
    // A different size, so the change shows whatever the file system's clock resolution.
    ws.pipeline("hello", &echo("second, edited"));
    assert_eq!(said(&ws), "second, edited", "a file edited while hosted");
    crate::support::stop(server);
}
