//! The runtime through its library API: real processes, real HTTP on loopback, real SQLite.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opsdeck::clock::ManualClock;
use opsdeck::host::{Host, HostOptions};
use opsdeck::model::{AttemptStatus, Command, EventKind, RunStatus, StageStatus, Trigger};
use serde_json::{Map, Value, json};

use crate::support::{
    TestWorkspace, act, assert_status, events_of, process_gone, read, run_to_end, scripted_server,
    until,
};

#[tokio::test]
async fn diamond_middle_stages_overlap_and_the_join_sees_both_outputs() {
    let ws = TestWorkspace::new();
    // `b` and `c` each wait for the other's marker file: the run can only succeed if they run
    // at the same time (a sequential scheduler makes them exit 7 after ~10 s).
    let barrier = |me: &str, other: &str| {
        format!(
            r#"touch {me}.started; i=0; while [ ! -f {other}.started ]; do sleep 0.02; i=$((i+1)); [ $i -gt 500 ] && exit 7; done; echo '{{"{me}": true}}'"#
        )
    };
    ws.pipeline(
        "diamond",
        &format!(
            r#"[pipeline]
name = "diamond"
concurrency = 4
[pipeline.params]
day = "2026-11-23"
[[stage]]
id = "a"
kind = "command"
command = ["sh", "-c", "echo '{{\"rows\": 3}}'"]
[[stage]]
id = "b"
kind = "command"
needs = ["a"]
command = ["sh", "-c", '''{}''']
[[stage]]
id = "c"
kind = "command"
needs = ["a"]
command = ["sh", "-c", '''{}''']
[[stage]]
id = "d"
kind = "command"
needs = ["b", "c"]
command = ["cat"]
"#,
            barrier("b", "c"),
            barrier("c", "b")
        ),
    );
    let host = ws.host().await;
    let run = run_to_end(&host, "diamond").await;
    assert_status(&run, RunStatus::Succeeded);
    let (b, c) = (
        &run.stage("b").unwrap().attempts[0],
        &run.stage("c").unwrap().attempts[0],
    );
    assert!(
        b.started_at <= c.finished_at.unwrap() && c.started_at <= b.finished_at.unwrap(),
        "b and c must overlap"
    );
    // The join's input holds both needs' outputs and the params; `cat` echoes it as output.
    let d = &run.stage("d").unwrap().attempts[0];
    assert_eq!(
        d.output,
        Some(
            json!({"params": {"day": "2026-11-23"}, "stages": {"b": {"b": true}, "c": {"c": true}}})
        )
    );
    assert_eq!(
        b.input,
        json!({"params": {"day": "2026-11-23"}, "stages": {"a": {"rows": 3}}})
    );
    host.shutdown().await;
}

#[tokio::test]
async fn retries_back_off_exponentially_and_keep_every_attempt() {
    let ws = TestWorkspace::new();
    ws.pipeline(
        "flaky",
        r#"[pipeline]
name = "flaky"
[pipeline.retry]
max_attempts = 4
backoff = { initial_ms = 10, multiplier = 3.0, max_ms = 50, jitter = false }
[[stage]]
id = "call"
kind = "command"
command = ["sh", "-c", 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; if [ $n -lt 4 ]; then echo "try $n failed" >&2; exit 3; fi; echo "{\"tries\": $n}"']
"#,
    );
    let host = ws.host().await;
    let run = run_to_end(&host, "flaky").await;
    assert_status(&run, RunStatus::Succeeded);
    let attempts = &run.stage("call").unwrap().attempts;
    let statuses: Vec<AttemptStatus> = attempts.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        [
            AttemptStatus::Failed,
            AttemptStatus::Failed,
            AttemptStatus::Failed,
            AttemptStatus::Succeeded
        ]
    );
    assert_eq!(attempts[0].stderr.as_deref(), Some("try 1 failed\n"));
    assert_eq!(attempts[0].error.as_ref().unwrap().code, "exit_status");
    assert_eq!(
        attempts[0].error.as_ref().unwrap().message,
        "`sh` exited with status 3"
    );
    assert_eq!(attempts[3].output, Some(json!({"tries": 4})));
    let delays: Vec<u64> = events_of(&host, run.id)
        .await
        .iter()
        .filter(|e| e.kind == EventKind::StageRetrying)
        .map(|e| e.data["delay_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(
        delays,
        [10, 30, 50],
        "grows by the multiplier, then caps at max_ms"
    );
    host.shutdown().await;
}

const DLQ_PIPELINE: &str = r#"[pipeline]
name = "fragile"
[[stage]]
id = "a"
kind = "command"
command = ["sh", "-c", "echo '{\"a\": 1}'"]
[[stage]]
id = "b"
kind = "command"
needs = ["a"]
command = ["sh", "-c", "if [ -f ok ]; then echo '{\"b\": 2}'; else echo 'upstream said no' >&2; exit 1; fi"]
[[stage]]
id = "c"
kind = "command"
needs = ["b"]
command = ["cat"]
[[stage]]
id = "side"
kind = "command"
command = ["sh", "-c", "echo side >> side.count"]
"#;

#[tokio::test]
async fn a_requeued_dead_letter_continues_its_run_to_success() {
    let ws = TestWorkspace::new();
    ws.pipeline("fragile", DLQ_PIPELINE);
    let host = ws.host().await;
    let run = run_to_end(&host, "fragile").await;
    assert_status(&run, RunStatus::Failed);
    assert_eq!(run.stage("b").unwrap().status, StageStatus::Failed);
    assert_eq!(
        run.stage("c").unwrap().status,
        StageStatus::Skipped,
        "a failed stage skips its dependents"
    );
    assert_eq!(
        run.stage("side").unwrap().status,
        StageStatus::Succeeded,
        "independent branches carry on"
    );

    let dlq = all_dlq(&host).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        (dlq[0].run_id, dlq[0].stage.as_str(), dlq[0].attempts),
        (run.id, "b", 1)
    );
    assert_eq!(dlq[0].input, json!(null), "a list leaves inputs out");
    assert_eq!(
        host.dlq_entry(dlq[0].id).await.unwrap().input,
        json!({"params": {}, "stages": {"a": {"a": 1}}}),
        "the last input is kept"
    );
    assert_eq!(dlq[0].error.code, "exit_status");

    std::fs::write(ws.path("ok"), "").unwrap();
    let requeued = act(&host, Command::Requeue { entry: dlq[0].id }, "fixed")
        .await
        .unwrap();
    assert_eq!(requeued.run(), Some(run.id));
    assert_eq!(host.wait(run.id).await.unwrap(), RunStatus::Succeeded);
    let run = host.run(run.id).await.unwrap();
    assert_eq!(
        run.stage("b").unwrap().attempts.len(),
        2,
        "requeue is a new attempt in the same run"
    );
    assert_eq!(
        run.stage("c").unwrap().attempts[0].output,
        Some(json!({"params": {}, "stages": {"b": {"b": 2}}}))
    );
    assert_eq!(
        run.stage("a").unwrap().attempts.len(),
        1,
        "what succeeded is not run again"
    );
    assert_eq!(read(&ws.path("side.count")), "side\n");
    assert!(all_dlq(&host).await.is_empty());
    let kinds: Vec<EventKind> = events_of(&host, run.id)
        .await
        .iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&EventKind::DlqAdded) && kinds.contains(&EventKind::DlqRequeued));
    host.shutdown().await;
}

#[tokio::test]
async fn a_discarded_dead_letter_leaves_the_run_failed() {
    let ws = TestWorkspace::new();
    ws.pipeline("fragile", DLQ_PIPELINE);
    let host = ws.host().await;
    let run = run_to_end(&host, "fragile").await;
    let entry = all_dlq(&host).await.remove(0);
    act(
        &host,
        Command::Discard { entry: entry.id },
        "known bad input",
    )
    .await
    .unwrap();
    assert!(all_dlq(&host).await.is_empty());
    assert_eq!(host.run(run.id).await.unwrap().status, RunStatus::Failed);
    let discarded = events_of(&host, run.id)
        .await
        .into_iter()
        .find(|e| e.kind == EventKind::DlqDiscarded)
        .unwrap();
    assert_eq!(discarded.data["reason"], "known bad input");
    let again = act(&host, Command::Requeue { entry: entry.id }, "again")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        again.contains(&format!("there is no dead-letter entry {}", entry.id)),
        "{again}"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn a_timed_out_command_leaves_no_process_behind() {
    let ws = TestWorkspace::new();
    ws.pipeline(
        "hang",
        r#"[pipeline]
name = "hang"
[[stage]]
id = "stuck"
kind = "command"
timeout_ms = 300
command = ["sh", "-c", "sleep 60 & echo $! > child.pid; echo $$ > shell.pid; echo partial >&2; sleep 60"]
"#,
    );
    let host = ws.host().await;
    let run = run_to_end(&host, "hang").await;
    assert_status(&run, RunStatus::Failed);
    let attempt = &run.stage("stuck").unwrap().attempts[0];
    let err = attempt.error.as_ref().unwrap();
    assert_eq!(err.code, "timeout");
    assert_eq!(
        err.message,
        "`sh` did not finish within 300 ms; its process group was killed"
    );
    assert_eq!(
        attempt.stderr.as_deref(),
        Some("partial\n"),
        "stderr up to the kill is kept"
    );
    for f in ["child.pid", "shell.pid"] {
        let pid: i32 = read(&ws.path(f)).trim().parse().unwrap();
        until(&format!("{f} ({pid}) to exit"), || async {
            process_gone(pid)
        })
        .await;
    }
    host.shutdown().await;
}

fn http_pipeline(url: &str, extra: &str) -> String {
    format!(
        r#"[pipeline]
name = "api"
[pipeline.retry]
max_attempts = 3
backoff = {{ initial_ms = 1, max_ms = 1, jitter = false }}
[[stage]]
id = "call"
kind = "http"
method = "POST"
url = "{url}/orders"
{extra}
"#
    )
}

#[tokio::test]
async fn http_errors_never_show_credentials_or_query_strings() {
    let server = scripted_server(vec![(503, "busy"), (503, "busy"), (503, "busy")]).await;
    let port = crate::support::free_port();
    let ws = TestWorkspace::new();
    let with_secrets = server.url.replace("http://", "http://bob:hunter2@");
    ws.pipeline(
        "api",
        &http_pipeline(&format!("{with_secrets}?token=abc"), ""),
    );
    ws.pipeline(
        "down",
        &http_pipeline(
            &format!("http://bob:hunter2@127.0.0.1:{port}/x?token=abc"),
            "",
        )
        .replace("name = \"api\"", "name = \"down\""),
    );
    let host = ws.host().await;
    for name in ["api", "down"] {
        let run = run_to_end(&host, name).await;
        let attempts = &run.stage("call").unwrap().attempts;
        for a in attempts {
            let m = &a.error.as_ref().unwrap().message;
            assert!(
                !m.contains("hunter2") && !m.contains("bob") && !m.contains("token=abc"),
                "{name}: {m}"
            );
            assert!(m.contains("127.0.0.1"), "the host is still named: {m}");
        }
    }
    host.shutdown().await;
}

#[tokio::test]
async fn http_5xx_is_retried_and_the_body_is_the_output() {
    let server = scripted_server(vec![
        (503, "{\"busy\": true}"),
        (503, "busy"),
        (200, "{\"ok\": true, \"rows\": 7}"),
    ])
    .await;
    let ws = TestWorkspace::new();
    ws.pipeline("api", &http_pipeline(&server.url, ""));
    let host = ws.host().await;
    let run = run_to_end(&host, "api").await;
    assert_status(&run, RunStatus::Succeeded);
    let attempts = &run.stage("call").unwrap().attempts;
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[0].error.as_ref().unwrap().code, "http_status");
    assert_eq!(
        attempts[0].output,
        Some(json!({"busy": true})),
        "error bodies are kept too"
    );
    assert_eq!(
        attempts[1].output,
        Some(Value::String("busy".into())),
        "non-JSON bodies are kept as text"
    );
    assert_eq!(attempts[2].output, Some(json!({"ok": true, "rows": 7})));
    assert_eq!(server.hits.load(Ordering::SeqCst), 3);
    host.shutdown().await;
}

#[tokio::test]
async fn http_4xx_is_not_retried_and_connection_errors_are() {
    let server = scripted_server(vec![(404, "{\"error\": \"no such order\"}")]).await;
    let ws = TestWorkspace::new();
    ws.pipeline("api", &http_pipeline(&server.url, ""));
    let host = ws.host().await;
    let run = run_to_end(&host, "api").await;
    assert_status(&run, RunStatus::Failed);
    let attempts = &run.stage("call").unwrap().attempts;
    assert_eq!(attempts.len(), 1, "a 404 will not get better by retrying");
    assert!(
        attempts[0].error.as_ref().unwrap().message.contains("404"),
        "{:?}",
        attempts[0].error
    );
    host.shutdown().await;

    // Nothing listens on port 9 of loopback: connection refused, retried to the limit.
    let ws = TestWorkspace::new();
    ws.pipeline("api", &http_pipeline("http://127.0.0.1:9", ""));
    let host = ws.host().await;
    let run = run_to_end(&host, "api").await;
    let attempts = &run.stage("call").unwrap().attempts;
    assert_eq!(attempts.len(), 3);
    assert!(
        attempts
            .iter()
            .all(|a| a.error.as_ref().unwrap().code == "connect")
    );
    host.shutdown().await;
}

/// Pipeline `api`: one http stage calling `url`/health, a breaker that opens after two
/// failures for `cooldown_ms`, and the stage's `retry` table.
fn breaker_pipeline(url: &str, cooldown_ms: u64, retry: &str) -> String {
    format!(
        "[pipeline]\nname = \"api\"\n[pipeline.breaker]\nfailure_threshold = 2\ncooldown_ms = {cooldown_ms}\n\
         [[stage]]\nid = \"call\"\nkind = \"http\"\nurl = \"{url}/health\"\nretry = {{ {retry} }}\n"
    )
}

#[tokio::test]
async fn an_entry_parked_by_an_open_breaker_names_the_failure_before_it() {
    let server = scripted_server(vec![(503, "down")]).await;
    let ws = TestWorkspace::new();
    ws.pipeline(
        "api",
        &breaker_pipeline(
            &server.url,
            60_000,
            "max_attempts = 3, backoff = { initial_ms = 10, multiplier = 1.0, max_ms = 10, jitter = false }",
        ),
    );
    let host = ws.host().await;
    let run = run_to_end(&host, "api").await;
    assert_status(&run, RunStatus::Failed);
    let dlq = all_dlq(&host).await;
    assert_eq!(dlq.len(), 1);
    // Parked by the breaker, which hides the cause: the entry names it beside.
    assert_eq!(dlq[0].error.code, "breaker_open");
    let message = &dlq[0].error.message;
    assert!(
        message.contains("the last attempt that ran failed with http_status: ")
            && message.contains("503"),
        "{message}"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_then_half_opens_and_closes() {
    let server = scripted_server(vec![(500, "down"), (500, "down"), (200, "{\"ok\": true}")]).await;
    let ws = TestWorkspace::new();
    ws.pipeline(
        "api",
        &breaker_pipeline(
            &server.url,
            400,
            "max_attempts = 5, backoff = { initial_ms = 150, multiplier = 2.0, max_ms = 300, jitter = false }",
        ),
    );
    let host = ws.host().await;
    let run = run_to_end(&host, "api").await;
    assert_status(&run, RunStatus::Succeeded);
    let codes: Vec<String> = run
        .stage("call")
        .unwrap()
        .attempts
        .iter()
        .map(|a| {
            a.error
                .as_ref()
                .map_or_else(|| "ok".to_string(), |e| e.code.clone())
        })
        .collect();
    // Two 500s open the breaker; the next try (150 + 300 ms later) fails fast without a
    // request; after the 400 ms cool-down one probe goes through and succeeds.
    assert_eq!(codes, ["http_status", "http_status", "breaker_open", "ok"]);
    // Kept with the attempt and read later: it names a time, not "in about 0.1s".
    let open = run.stage("call").unwrap().attempts[2]
        .error
        .as_ref()
        .unwrap()
        .message
        .clone();
    assert!(
        open.contains("it let a probe through from 20") && !open.contains("in about"),
        "{open}"
    );
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        3,
        "the open breaker sent nothing"
    );
    let changes: Vec<(String, String)> = host
        .events(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EventKind::BreakerChanged)
        .map(|e| {
            (
                e.data["from"].as_str().unwrap().to_string(),
                e.data["to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ];
    assert_eq!(
        changes,
        expected.map(|(a, b)| (a.to_string(), b.to_string()))
    );
    host.shutdown().await;
}

#[tokio::test]
async fn large_outputs_are_stored_truncated_with_a_marker() {
    let ws = TestWorkspace::new();
    ws.write("opsdeck.toml", "[store]\nmax_output_bytes = 1024\n");
    ws.pipeline(
        "big",
        r#"[pipeline]
name = "big"
[[stage]]
id = "dump"
kind = "command"
command = ["sh", "-c", "head -c 5000 /dev/zero | tr '\\0' x"]
"#,
    );
    let host = ws.host().await;
    let run = run_to_end(&host, "big").await;
    let a = &run.stage("dump").unwrap().attempts[0];
    assert!(a.output_truncated);
    assert_eq!(a.output_bytes, Some(5000));
    let text = a.output.as_ref().unwrap().as_str().unwrap();
    assert!(text.starts_with(&"x".repeat(1024)));
    assert!(
        text.ends_with("…[truncated by opsdeck: kept 1024 of 5000 bytes]"),
        "{}",
        &text[1000..]
    );
    host.shutdown().await;
}

#[tokio::test]
async fn events_are_gap_free_and_timestamps_have_milliseconds() {
    let ws = TestWorkspace::new();
    ws.pipeline("fragile", DLQ_PIPELINE);
    let host = ws.host().await;
    run_to_end(&host, "fragile").await;
    run_to_end(&host, "fragile").await;
    let events = host.events(0, 100_000).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        host.events(5, 3)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [6, 7, 8]
    );
    let run = host.run(opsdeck::model::RunId(1)).await.unwrap();
    let json = serde_json::to_value(&run).unwrap();
    let started = json["stages"][0]["attempts"][0]["started_at"]
        .as_str()
        .unwrap();
    assert_eq!(started.len(), "2026-11-23T17:57:03.123Z".len(), "{started}");
    assert!(
        started.ends_with('Z') && started.as_bytes()[19] == b'.',
        "{started}"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn cancelling_a_run_kills_its_stages() {
    let ws = TestWorkspace::new();
    ws.pipeline(
        "long",
        r#"[pipeline]
name = "long"
[[stage]]
id = "wait"
kind = "command"
command = ["sh", "-c", "echo $$ > wait.pid; sleep 60"]
[[stage]]
id = "after"
kind = "command"
needs = ["wait"]
command = ["true"]
"#,
    );
    let host = ws.host().await;
    let id = host
        .start_run("long", &Map::new(), Trigger::Manual)
        .await
        .unwrap();
    let pid_file = ws.path("wait.pid");
    until("the stage to start", || async {
        read(&pid_file).trim().parse::<i32>().is_ok()
    })
    .await;
    act(&host, Command::CancelRun { run: id }, "test")
        .await
        .unwrap();
    assert_eq!(host.wait(id).await.unwrap(), RunStatus::Cancelled);
    let run = host.run(id).await.unwrap();
    assert_eq!(run.stage("wait").unwrap().status, StageStatus::Cancelled);
    assert_eq!(
        run.stage("wait").unwrap().attempts[0].status,
        AttemptStatus::Cancelled
    );
    assert_eq!(run.stage("after").unwrap().status, StageStatus::Skipped);
    let pid: i32 = read(&pid_file).trim().parse().unwrap();
    until("the cancelled stage's process to exit", || async {
        process_gone(pid)
    })
    .await;
    let err = act(&host, Command::CancelRun { run: id }, "again")
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!("run {id} already finished (cancelled); there is nothing to cancel")
    );
    host.shutdown().await;
}

#[tokio::test]
async fn interval_schedules_fire_on_the_clock_and_skip_while_the_last_run_is_going() {
    let ws = TestWorkspace::new();
    ws.pipeline(
        "tick",
        r#"[pipeline]
name = "tick"
schedule = "every 1m"
[[stage]]
id = "work"
kind = "simulate"
latency = { p50_ms = 90_000 }
"#,
    );
    let (host, clock) = scheduling_host(&ws).await;
    let count = |host: Host| async move { newest_runs(&host).await };
    // Fires at once on start; wait until its stage is sleeping on the clock.
    until("the first fire", || async {
        host.events(0, 1000)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind == EventKind::StageStarted)
    })
    .await;
    // One minute later the first run (90 s of simulated work) is still going: skipped.
    clock.advance(Duration::from_secs(60));
    until("a skipped fire", || async {
        host.events(0, 1000)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind == EventKind::ScheduleSkipped)
    })
    .await;
    assert_eq!(count(host.clone()).await.len(), 1);
    // At 90 s the first run ends; at 120 s the schedule fires again.
    clock.advance(Duration::from_secs(30));
    // Ended and let go by its driver (a fire in between would still see it going).
    let first = count(host.clone()).await[0].id;
    assert_eq!(host.wait(first).await.unwrap(), RunStatus::Succeeded);
    clock.advance(Duration::from_secs(30));
    until("the second fire", || async {
        count(host.clone()).await.len() == 2
    })
    .await;
    let runs = count(host.clone()).await;
    assert!(runs.iter().all(|r| r.trigger == Trigger::Schedule));
    assert_eq!(runs[1].status, RunStatus::Succeeded);
    host.shutdown().await;
}

#[tokio::test]
async fn a_schedule_added_to_a_file_while_hosted_fires_from_its_next_tick() {
    let plain = "[pipeline]\nname = \"tick\"\n[[stage]]\nid = \"work\"\nkind = \"simulate\"\n";
    let ws = TestWorkspace::new();
    ws.pipeline("tick", plain);
    let (host, clock) = scheduling_host(&ws).await;
    let scheduled = |host: Host| async move {
        newest_runs(&host)
            .await
            .into_iter()
            .filter(|r| r.trigger == Trigger::Schedule)
            .count()
    };
    ws.pipeline(
        "tick",
        &plain.replace("[[stage]]", "schedule = \"every 1m\"\n[[stage]]"),
    );
    // Picked up without a restart; an edit fires nothing by itself, the next tick does.
    until("a fire of the added schedule", || {
        clock.advance(Duration::from_secs(60));
        let host = host.clone();
        async move { scheduled(host).await >= 1 }
    })
    .await;
    host.shutdown().await;
}

/// A host on `ws` that fires schedules, on a clock the test moves.
async fn scheduling_host(ws: &TestWorkspace) -> (Host, ManualClock) {
    let clock = ManualClock::new(chrono::Utc::now());
    let mut opts = HostOptions::new("schedule test");
    opts.schedules = true;
    opts.clock = Arc::new(clock.clone());
    (Host::start(ws.open(), opts).await.unwrap(), clock)
}

/// The newest hundred runs.
async fn newest_runs(host: &Host) -> Vec<opsdeck::model::RunSummary> {
    host.runs(opsdeck::model::RunQuery {
        limit: 100,
        ..Default::default()
    })
    .await
    .unwrap()
    .items
}

/// The newest page of the dead-letter queue.
async fn all_dlq(host: &opsdeck::host::Host) -> Vec<opsdeck::model::DlqEntry> {
    host.dlq(opsdeck::model::DlqQuery {
        limit: 1_000,
        ..Default::default()
    })
    .await
    .unwrap()
    .items
}

/// A run stopped while a stage waits out a retry's backoff resumes waiting out the rest of it,
/// on the host that restarts (or, on PostgreSQL, the worker that takes the run): the next
/// attempt is not started early.
#[tokio::test]
async fn a_retry_backoff_holds_across_a_restart() {
    let ws = TestWorkspace::new();
    ws.pipeline(
        "patient",
        r#"[pipeline]
name = "patient"
[pipeline.retry]
max_attempts = 2
backoff = { initial_ms = 60000, max_ms = 60000, jitter = false }
[[stage]]
id = "call"
kind = "simulate"
fail_rate = 1.0
"#,
    );
    let clock = ManualClock::new(chrono::Utc::now());
    let start = |resume: bool| {
        let mut opts = HostOptions::new("backoff test");
        opts.resume_interrupted = resume;
        opts.clock = Arc::new(clock.clone());
        Host::start(ws.open(), opts)
    };
    let host = start(false).await.unwrap();
    let run = host
        .start_run("patient", &Map::new(), Trigger::Manual)
        .await
        .unwrap();
    until(
        "the first attempt to fail and the stage to wait",
        || async {
            host.events(0, 1000)
                .await
                .unwrap()
                .iter()
                .any(|e| e.kind == EventKind::StageRetrying)
        },
    )
    .await;
    let failed_at = host.run(run).await.unwrap().stages[0].attempts[0]
        .finished_at
        .unwrap();
    host.shutdown().await;
    // Ten seconds later a host starts and resumes the run; fifty seconds of backoff are left.
    clock.advance(Duration::from_secs(10));
    let host = start(true).await.unwrap();
    until("the run to be resumed", || async {
        host.run(run).await.unwrap().stages[0].status == StageStatus::Retrying
    })
    .await;
    clock.advance(Duration::from_secs(50));
    assert_eq!(host.wait(run).await.unwrap(), RunStatus::Failed);
    let detail = host.run(run).await.unwrap();
    let second = &detail.stages[0].attempts[1];
    assert!(
        second.started_at.millis_since(failed_at) >= 60_000,
        "the second attempt started {} ms after the first failed",
        second.started_at.millis_since(failed_at)
    );
    host.shutdown().await;
}
