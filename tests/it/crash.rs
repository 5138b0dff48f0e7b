//! Crash recovery with the real binary: SIGKILL a foreground run mid-run, then recover.

use std::process::{Child, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::support::{TestWorkspace, eventually, process_gone, read};

const SLOW: &str = r#"[pipeline]
name = "slow"
[[stage]]
id = "a"
kind = "command"
command = ["sh", "-c", "echo ran >> a.count; echo '{\"a\": 1}'"]
[[stage]]
id = "b"
kind = "command"
needs = ["a"]
command = ["sh", "-c", "echo $$ > b.pid; if [ -f fast ]; then cat; else sleep 60; fi"]
"#;

fn signal(child: &Child, sig: Signal) {
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
}

/// Starts `opsdeck run slow`, waits until stage `b` is running, and SIGKILLs it.
fn kill_mid_run(ws: &TestWorkspace) -> i32 {
    signal_mid_run(ws, Signal::SIGKILL).1
}

/// Starts `opsdeck run slow`, waits until stage `b` is running and recorded, and sends
/// `sig`: the exit status of `opsdeck run`, and the pid of stage `b`'s process.
fn signal_mid_run(ws: &TestWorkspace, sig: Signal) -> (std::process::ExitStatus, i32) {
    let mut child = mid_run(ws);
    signal(&child, sig);
    let status = child.wait().unwrap();
    (status, read(&ws.path("b.pid")).trim().parse().unwrap())
}

/// `opsdeck run slow`, once stage `b` is running and its process recorded.
fn mid_run(ws: &TestWorkspace) -> Child {
    ws.pipeline("slow", SLOW);
    let child = ws
        .cmd()
        .args(["run", "slow"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = ws.path("b.pid");
    eventually("stage b to start", || {
        read(&pid_file).trim().parse::<i32>().is_ok()
    });
    // Killed only once the host has recorded b's process: a host killed between spawning a
    // stage and recording it leaves nothing for recovery to find.
    let db = ws.path(".opsdeck/state.db");
    eventually("the host to record stage b's process", || {
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM attempts WHERE stage_id = 'b' AND pid IS NOT NULL",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .is_ok_and(|n| n > 0)
    });
    child
}

/// A foreground run serves its workspace on loopback while it lasts: a stuck run is
/// cancelled from another shell, and its processes stop.
#[test]
fn a_foreground_run_is_cancelled_from_another_shell() {
    let ws = TestWorkspace::new();
    let mut child = mid_run(&ws);
    let stage_pid: i32 = read(&ws.path("b.pid")).trim().parse().unwrap();
    let cancel = ws.run(&["runs", "cancel", "1", "--reason", "stuck"]);
    cancel.expect_code(0);
    assert_eq!(
        child.wait().unwrap().code(),
        Some(1),
        "the run ended cancelled"
    );
    eventually("the stage's process to be killed", || {
        process_gone(stage_pid)
    });
    assert_eq!(
        ws.run(&["runs", "show", "1", "--json"]).json()["status"],
        "cancelled"
    );
}

/// What `timeout`, systemd and CI send is handled like Ctrl-C: the run is cancelled, so its
/// processes stop with `opsdeck run` instead of living on, and the exit code says which.
#[test]
fn sigterm_or_ctrl_c_to_a_foreground_run_cancels_it_and_stops_its_processes() {
    for (sig, code) in [(Signal::SIGTERM, 143), (Signal::SIGINT, 130)] {
        let ws = TestWorkspace::new();
        let (status, stage_pid) = signal_mid_run(&ws, sig);
        assert_eq!(status.code(), Some(code), "{sig}");
        eventually("the stage's process to be killed", || {
            process_gone(stage_pid)
        });
        let run = ws.run(&["runs", "show", "1", "--json"]).json();
        assert_eq!(run["status"], "cancelled", "{sig}: {run}");
    }
}

fn stage<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap()
}

#[test]
fn a_killed_run_is_interrupted_then_resumed_without_rerunning_finished_stages() {
    let ws = TestWorkspace::new();
    let orphan = kill_mid_run(&ws);

    // Any later process that opens the store sees no host and marks the run interrupted; it
    // also kills the stage's process group, which the dead host could not.
    let runs = ws.run(&["runs", "--json"]);
    runs.expect_code(0);
    assert_eq!(runs.json()[0]["status"], "interrupted");
    eventually("the orphaned stage process to be killed", || {
        process_gone(orphan)
    });
    let run = ws.run(&["runs", "show", "1", "--json"]).json();
    assert_eq!(stage(&run, "a")["status"], "succeeded");
    assert_eq!(stage(&run, "a")["attempts"][0]["output"], json!({"a": 1}));
    assert_eq!(stage(&run, "b")["status"], "interrupted");
    assert_eq!(stage(&run, "b")["attempts"][0]["status"], "interrupted");

    std::fs::write(ws.path("fast"), "").unwrap();
    let resumed = ws.run(&["runs", "resume", "1"]);
    resumed.expect_code(0);
    assert!(
        resumed.stdout().contains("run 1 of `slow` succeeded"),
        "{}",
        resumed.stdout()
    );

    let run = ws.run(&["runs", "show", "1", "--json"]).json();
    assert_eq!(run["status"], "succeeded");
    assert_eq!(
        read(&ws.path("a.count")),
        "ran\n",
        "stage a ran exactly once"
    );
    assert_eq!(stage(&run, "a")["attempts"].as_array().unwrap().len(), 1);
    let b = stage(&run, "b")["attempts"].as_array().unwrap();
    assert_eq!(
        b.iter()
            .map(|a| a["status"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["interrupted", "succeeded"]
    );
    assert_eq!(
        b[1]["output"],
        json!({"params": {}, "stages": {"a": {"a": 1}}}),
        "b got a's recorded output"
    );

    let events = ws.run(&["events", "--json"]).stdout();
    let events: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "no gaps across the crash"
    );
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    let interrupted = kinds.iter().position(|k| *k == "run_interrupted").unwrap();
    let resumed = kinds.iter().position(|k| *k == "run_resumed").unwrap();
    assert!(interrupted < resumed);
    assert_eq!(kinds.last(), Some(&"run_finished"));
}

#[test]
fn serve_resumes_interrupted_runs_and_refuses_a_second_host() {
    let ws = TestWorkspace::new();
    kill_mid_run(&ws);
    std::fs::write(ws.path("fast"), "").unwrap();
    let mut serve = ws
        .cmd()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let host_json = ws.path(".opsdeck/host.json");
    eventually("serve to publish host.json", || host_json.exists());
    eventually("serve to resume and finish run 1", || {
        ws.run(&["runs", "--json"]).json()[0]["status"] == "succeeded"
    });
    assert_eq!(read(&ws.path("a.count")), "ran\n");

    // Commands that change state go through the serving host's API instead of failing.
    let through = ws.run(&["run", "slow"]);
    through.expect_code(0);
    assert!(
        through.stdout().contains("run 2 of `slow` succeeded"),
        "{}",
        through.stdout()
    );
    // Reads over the API with --remote give what the local store gives.
    let info: Value = serde_json::from_str(&read(&host_json)).unwrap();
    let url = info["address"].as_str().unwrap().to_string();
    let remote = ws.run(&["--remote", &url, "runs", "--json"]);
    remote.expect_code(0);
    assert_eq!(remote.json(), ws.run(&["runs", "--json"]).json());
    ws.run(&["--remote", &url, "runs", "show", "2"])
        .expect_code(0);
    ws.run(&["--remote", &url, "runs", "show", "99"])
        .expect_error(2, "there is no run 99");
    let started = ws.run(&["--remote", &url, "run", "slow", "--json"]);
    started.expect_code(0);
    assert_eq!(started.json()["status"], "succeeded");
    ws.run(&["--remote", &url, "run", "slow", "-p", "x=1"])
        .expect_error(2, "pipeline `slow` declares no params");
    let events = ws.run(&["--remote", &url, "events", "--limit", "3", "--json"]);
    assert_eq!(events.stdout().lines().count(), 3);
    // Narrowed to one run, the API's log reads as the local one does.
    let filter = [
        "events",
        "--run",
        "2",
        "--kind",
        "run_started,run_finished",
        "--json",
    ];
    let local = ws.run(&filter).stdout();
    assert_eq!(local.lines().count(), 2, "{local}");
    let mut remote_args = vec!["--remote", url.as_str()];
    remote_args.extend(filter);
    assert_eq!(ws.run(&remote_args).stdout(), local);
    ws.run(&["--remote", &url, "events", "--run", "99"])
        .expect_error(2, "there is no run 99");
    // Only one host per workspace; the refusal names the host.
    let second = ws.run(&["serve", "--bind", "127.0.0.1:0"]);
    second.expect_code(1);
    let msg = second.stderr();
    assert!(
        msg.contains(&format!(
            "the workspace is hosted by `opsdeck serve` (pid {}, running since ",
            serve.id()
        )),
        "{msg}"
    );
    // Read-only commands keep working while it is hosted.
    ws.run(&["dlq", "list"]).expect_code(0);

    signal(&serve, Signal::SIGTERM);
    let status = serve.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        !host_json.exists(),
        "a host that stops cleanly unpublishes itself"
    );
    let mut logs = String::new();
    std::io::Read::read_to_string(serve.stderr.as_mut().unwrap(), &mut logs).unwrap();
    let first: Value = serde_json::from_str(logs.lines().next().unwrap())
        .expect("serve logs JSON lines to stderr");
    assert!(first["fields"]["message"].is_string(), "{first}");
}

/// Reads SSE frames from `/v1/events` (after `since`) until `stop` says enough; returns the
/// events as JSON.
pub(crate) async fn sse_until(
    base: &str,
    since: u64,
    stop: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    use futures::StreamExt;
    let resp = crate::support::http()
        .get(format!("{base}/v1/events?since={since}"))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let (mut text, mut events) = (String::new(), Vec::new());
    while !stop(&events) {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), body.next())
            .await
            .expect("an event within 30 s")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                events.push(serde_json::from_str::<Value>(data).unwrap());
            }
        }
    }
    events
}

/// The server is SIGKILLed mid-run and started again: the run completes without re-running
/// the stage that had finished, and every event a client had received is still there with
/// the same sequence number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_resumes_the_run_and_keeps_every_event_it_sent() {
    let ws = TestWorkspace::new();
    ws.pipeline("slow", SLOW);
    let port = crate::support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = crate::support::serve(&ws, port);
    let http = crate::support::http();
    let started: Value = http
        .post(format!("{base}/v1/pipelines/slow/runs"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = started["data"]["id"].as_i64().unwrap();
    let seen = sse_until(&base, 0, |evs| {
        evs.iter()
            .any(|e| e["kind"] == "stage_started" && e["stage"] == "b")
    })
    .await;
    server.signal(Signal::SIGKILL);
    let mut server = server;
    server.wait();
    std::fs::write(ws.path("fast"), "").unwrap();

    let server = crate::support::serve(&ws, port);
    let done = sse_until(&base, 0, |evs| {
        evs.iter()
            .any(|e| e["kind"] == "run_finished" && e["run_id"] == id)
    })
    .await;
    let finished = done
        .iter()
        .rev()
        .find(|e| e["kind"] == "run_finished")
        .unwrap();
    assert_eq!(finished["data"]["status"], "succeeded", "{finished}");
    assert_eq!(read(&ws.path("a.count")), "ran\n", "stage a ran once");
    for e in &seen {
        let again = done
            .iter()
            .find(|d| d["seq"] == e["seq"])
            .unwrap_or_else(|| panic!("event {} is gone", e["seq"]));
        assert_eq!(again, e, "event {} is the same after the crash", e["seq"]);
    }
    let seqs: Vec<u64> = done.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    crate::support::stop(server);
}
