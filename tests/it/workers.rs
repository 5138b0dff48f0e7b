//! Several `opsdeck serve` workers on one PostgreSQL store (a real server, started by
//! `.ci/run`): runs shared and each stage run once, a worker killed mid-run and its runs
//! finished by another, a worker cut off from the store or frozen past its lease fenced off,
//! breakers shared, and schedules fired once per tick.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use opsdeck::host::Host;

use crate::support::{Served, TestWorkspace, eventually, free_port, postgres_db, serve};

/// A workspace on `url` with `pipelines`, served on a free port: the workspace, the process
/// and its API's address.
fn worker(url: &str, pipelines: &[(&str, String)], lease: u32) -> (TestWorkspace, Served, String) {
    worker_with(url, pipelines, lease, 64)
}

/// [`worker`] driving at most `max_in_flight` runs at once.
fn worker_with(
    url: &str,
    pipelines: &[(&str, String)],
    lease: u32,
    max_in_flight: u32,
) -> (TestWorkspace, Served, String) {
    let ws = TestWorkspace::new();
    for (name, text) in pipelines {
        ws.pipeline(name, text);
    }
    ws.write(
        "opsdeck.toml",
        &format!(
            "[store]\nurl = \"{url}\"\n[worker]\nlease_timeout = {lease}\nmax_in_flight = {max_in_flight}\n"
        ),
    );
    let port = free_port();
    let child = serve(&ws, port);
    (ws, child, format!("http://127.0.0.1:{port}"))
}

/// A command stage that notes `RUN STAGE ATTEMPT` in `log` after `sleep` seconds.
fn noting(id: &str, needs: &[&str], log: &Path, sleep: &str) -> String {
    let needs: Vec<String> = needs.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "[[stage]]\nid = \"{id}\"\nkind = \"command\"\nneeds = [{}]\ncommand = [\"sh\", \"-c\", \"sleep {sleep}; echo \\\"$OPSDECK_RUN_ID $OPSDECK_STAGE $OPSDECK_ATTEMPT\\\" >> {}; echo '{{}}'\"]\n",
        needs.join(", "),
        log.display()
    )
}

fn diamond(log: &Path, slow: &str) -> String {
    format!(
        "[pipeline]\nname = \"diamond\"\nconcurrency = 4\n{}{}{}{}",
        noting("a", &[], log, "0"),
        noting("b", &["a"], log, slow),
        noting("c", &["a"], log, "0"),
        noting("d", &["b", "c"], log, "0"),
    )
}

fn post_run(base: &str, pipeline: &str) -> i64 {
    let (status, body) = post(base, &format!("/v1/pipelines/{pipeline}/runs"), "{}");
    assert_eq!(status, 200, "{body}");
    body["data"]["id"].as_i64().unwrap()
}

/// A query on the test's database.
fn sql(url: &str, query: &str) -> Vec<postgres::Row> {
    let (url, query) = (url.to_string(), query.to_string());
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.query(&query, &[]).unwrap()
    })
    .join()
    .unwrap()
}

fn count(url: &str, query: &str) -> i64 {
    sql(url, query)[0].get(0)
}

/// Waits for every run in the store to finish, and requires `n` runs, all succeeded.
fn all_succeed(url: &str, n: i64) {
    eventually("every run to finish", || {
        count(
            url,
            "SELECT COUNT(*) FROM runs WHERE status NOT IN ('succeeded', 'failed', 'cancelled')",
        ) == 0
    });
    assert_eq!(
        count(url, "SELECT COUNT(*) FROM runs WHERE status = 'succeeded'"),
        n
    );
}

/// Each (run, stage, attempt) noted in the log, and how often.
fn noted(log: &Path) -> HashMap<(i64, String, u32), u32> {
    let mut seen = HashMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [run, stage, attempt] = f[..] {
            *seen
                .entry((
                    run.parse().unwrap(),
                    stage.to_string(),
                    attempt.parse().unwrap(),
                ))
                .or_insert(0) += 1;
        }
    }
    seen
}

fn assert_gap_free(url: &str) {
    let seqs: Vec<i64> = sql(url, "SELECT seq FROM events ORDER BY seq")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let want: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, want, "the event log has gaps");
}

#[test]
fn three_workers_share_200_runs_and_run_every_stage_once() {
    let url = postgres_db();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("attempts.log");
    let p = [("diamond", diamond(&log, "0"))];
    let workers: Vec<_> = (0..3).map(|_| worker(&url, &p, 15)).collect();
    for i in 0..200 {
        post_run(&workers[i % 3].2, "diamond");
    }
    all_succeed(&url, 200);
    let seen = noted(&log);
    assert_eq!(seen.len(), 800, "4 stages of 200 runs");
    assert!(
        seen.iter()
            .all(|((_, _, attempt), n)| *n == 1 && *attempt == 1),
        "a stage ran twice: {:?}",
        seen.iter()
            .filter(|(k, n)| **n != 1 || k.2 != 1)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert_eq!(count(&url, "SELECT COUNT(*) FROM attempts"), 800);
    // No run was taken for one held without a driver while its start was under way.
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM events WHERE kind = 'run_interrupted'"
        ),
        0
    );
    // Ended, every run is nobody's (any worker may retry it).
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM runs WHERE owner IS NOT NULL"),
        0
    );
    assert_gap_free(&url);
    // Any worker lists the other two.
    let listed = workers[0].0.run(&["workers", "--json"]).json();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    // Each worker's `/metrics` counts the attempts it ran, so their sum is the store's: a
    // worker sees every worker's events, and counting those too would triple it.
    let ran: Vec<u64> = workers
        .iter()
        .map(|w| attempts_counted(&get_text(&format!("{}/metrics", w.2))))
        .collect();
    assert_eq!(ran.iter().sum::<u64>(), 800, "per worker: {ran:?}");
    assert!(
        ran.iter().filter(|n| **n > 0).count() >= 2,
        "the runs went to one worker: {ran:?}"
    );
    drop(workers);
}

/// A run a live worker holds in the store without driving it (a claim committed whose answer
/// the worker never read, a run whose end could not be recorded) would wait for as long as the
/// worker keeps its lease: the worker sees it so at two looks in a row, interrupts it and lets
/// it go, and it is claimed and finished, its stages run once.
#[test]
fn a_run_its_worker_holds_without_driving_it_is_let_go_and_finished() {
    let url = postgres_db();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("attempts.log");
    let one = format!(
        "[pipeline]\nname = \"one\"\n{}",
        noting("a", &[], &log, "0")
    );
    let w = worker(&url, &[("one", one)], 3);
    let first = post_run(&w.2, "one");
    all_succeed(&url, 1);
    // Copies of that run held by the worker with no driver anywhere: as a lost claim answer
    // leaves a new run (pending), as an unrecorded end leaves one (running), and as a lost
    // claim answer or a failed resume leaves a run to resume (interrupted).
    for (id, status) in [
        (900_001, "pending"),
        (900_002, "running"),
        (900_003, "interrupted"),
    ] {
        sql(
            &url,
            &format!(
                "INSERT INTO runs SELECT (jsonb_populate_record(NULL::runs, to_jsonb(r) || jsonb_build_object(
                   'id', {id}, 'status', '{status}', 'owner', (SELECT id FROM workers),
                   'started_at', CASE WHEN '{status}' <> 'pending' THEN r.started_at END,
                   'finished_at', NULL))).* FROM runs r WHERE r.id = {first}"
            ),
        );
        sql(
            &url,
            &format!(
                "INSERT INTO stages SELECT (jsonb_populate_record(NULL::stages, to_jsonb(s) ||
                   jsonb_build_object('run_id', {id}, 'status', 'pending'))).* FROM stages s
                 WHERE s.run_id = {first}"
            ),
        );
    }
    all_succeed(&url, 4);
    let interrupted = |run: i64| {
        sql(
            &url,
            &format!("SELECT data FROM events WHERE run_id = {run} AND kind = 'run_interrupted'"),
        )
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
    };
    for run in [900_001, 900_002] {
        let why = interrupted(run);
        assert_eq!(why.len(), 1, "run {run}: {why:?}");
        assert!(why[0].contains("held it without driving it"), "{why:?}");
    }
    // Already interrupted: only let go.
    assert!(interrupted(900_003).is_empty());
    assert!(
        interrupted(first).is_empty(),
        "the driven run was left alone"
    );
    let seen = noted(&log);
    for run in [first, 900_001, 900_002, 900_003] {
        assert_eq!(
            seen.get(&(run, "a".into(), 1)),
            Some(&1),
            "run {run}: {seen:?}"
        );
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM runs WHERE owner IS NOT NULL"),
        0
    );
    assert_gap_free(&url);
    drop(w);
}

/// Each worker runs no more than its `max_in_flight` at once, however its slots are handed
/// on (a run's end claims the next waiting run) and whichever worker the runs were started
/// through: all twelve go through one worker, and both run them, two at a time at most.
#[test]
fn each_worker_runs_no_more_than_its_max_in_flight() {
    let url = postgres_db();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("running.log");
    // The stage's shell is a child of the worker driving it: its parent pid names the worker.
    let p = [(
        "capped",
        format!(
            "[pipeline]\nname = \"capped\"\n[[stage]]\nid = \"s\"\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"echo \\\"$PPID +\\\" >> {log}; sleep 0.3; echo \\\"$PPID -\\\" >> {log}; echo '{{}}'\"]\n",
            log = log.display()
        ),
    )];
    let workers: Vec<_> = (0..2).map(|_| worker_with(&url, &p, 15, 2)).collect();
    for _ in 0..12 {
        post_run(&workers[0].2, "capped");
    }
    all_succeed(&url, 12);
    let mut running: HashMap<String, i32> = HashMap::new();
    let mut most: HashMap<String, i32> = HashMap::new();
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        let (worker, sign) = line.split_once(' ').unwrap();
        let now = running.entry(worker.to_string()).or_default();
        *now += if sign == "+" { 1 } else { -1 };
        let top = most.entry(worker.to_string()).or_default();
        *top = (*top).max(*now);
    }
    assert_eq!(most.len(), 2, "both workers ran some: {most:?}");
    assert!(
        most.values().all(|n| *n <= 2),
        "at once per worker: {most:?}"
    );
    drop(workers);
}

/// The stage attempts a `/metrics` page counts, over every label.
fn attempts_counted(page: &str) -> u64 {
    page.lines()
        .filter(|l| l.starts_with("opsdeck_stage_attempts_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

fn get_text(url: &str) -> String {
    let url = url.to_string();
    let (status, text) = send(move |c| c.get(&url));
    assert_eq!(status, 200, "{text}");
    text
}

#[test]
fn a_killed_workers_runs_finish_on_another_and_finished_stages_are_not_run_again() {
    let url = postgres_db();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("attempts.log");
    // `b` outlasts the dead worker's lease: its processes are killed when the runs move.
    let p = [("diamond", diamond(&log, "8"))];
    let (_a, mut doomed, base) = worker(&url, &p, 3);
    let runs: Vec<i64> = (0..4).map(|_| post_run(&base, "diamond")).collect();
    // Each run is in its slow stage `b` (and `a` has finished) when the worker dies.
    eventually("every run to be in its slow stage", || {
        count(
            &url,
            "SELECT COUNT(*) FROM attempts WHERE stage_id = 'b' AND status = 'running'",
        ) == 4
    });
    let (_b, survivor, base2) = worker(&url, &p, 3);
    doomed.kill();
    // One run is cancelled through the survivor before the dead worker's lease has run out:
    // the survivor takes the cancellation with the run and never runs it again.
    let cancelled = runs[0];
    let (status, body) = post(
        &base2,
        &format!("/v1/runs/{cancelled}/cancel"),
        r#"{"reason": "not needed"}"#,
    );
    assert_eq!(status, 200, "{body}");
    eventually("the survivor to finish every other run", || {
        count(&url, "SELECT COUNT(*) FROM runs WHERE status = 'succeeded'") == 3
    });
    let status: String = sql(
        &url,
        &format!("SELECT status FROM runs WHERE id = {cancelled}"),
    )[0]
    .get(0);
    assert_eq!(status, "cancelled");
    assert_eq!(
        count(
            &url,
            &format!("SELECT COUNT(*) FROM attempts WHERE run_id = {cancelled} AND stage_id = 'b'")
        ),
        1,
        "the cancelled run's stage was not started again"
    );
    for run in runs.into_iter().skip(1) {
        let attempts = |stage: &str| {
            sql(
                &url,
                &format!("SELECT status FROM attempts WHERE run_id = {run} AND stage_id = '{stage}' ORDER BY n"),
            )
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
        };
        assert_eq!(
            attempts("a"),
            ["succeeded"],
            "run {run}: `a` had finished and is kept"
        );
        assert_eq!(attempts("b"), ["interrupted", "succeeded"], "run {run}");
        assert_eq!(attempts("d"), ["succeeded"], "run {run}");
    }
    // `a` ran once per run, on the worker that died.
    let seen = noted(&log);
    assert_eq!(seen.keys().filter(|k| k.1 == "a").count(), 4);
    assert!(
        !seen.contains_key(&(cancelled, "b".to_string(), 2)),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .all(|(k, n)| *n == 1 && (k.1 == "b" || k.2 == 1)),
        "{seen:?}"
    );
    // The dead worker's attempts in flight ran on this machine: the worker that took its
    // runs killed them (none lived to note its end).
    assert!(
        !seen.keys().any(|k| k.1 == "b" && k.2 == 1),
        "a dead worker's attempt ran on: {seen:?}"
    );
    // The takeover is in the audit log, as opsdeck's own command.
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM audit WHERE action = 'run.resume' AND actor = 'opsdeck'"
        ),
        3
    );
    assert_gap_free(&url);
    drop(survivor);
}

#[test]
fn a_schedule_fires_once_per_tick_across_three_workers() {
    let url = postgres_db();
    let p = [(
        "tick",
        "[pipeline]\nname = \"tick\"\nschedule = \"every 1s\"\n[[stage]]\nid = \"a\"\nkind = \"simulate\"\n".to_string(),
    )];
    let workers: Vec<_> = (0..3).map(|_| worker(&url, &p, 15)).collect();
    eventually("ten ticks", || {
        count(&url, "SELECT COUNT(*) FROM runs WHERE trigger = 'schedule'") >= 10
    });
    drop(workers);
    let runs = count(&url, "SELECT COUNT(*) FROM runs WHERE trigger = 'schedule'");
    let ticks = count(&url, "SELECT COUNT(*) FROM schedule_fires");
    let skipped = count(
        &url,
        "SELECT COUNT(*) FROM events WHERE kind = 'schedule_skipped'",
    );
    // Each tick is claimed once (its key is unique), and each claim fired one run or one skip:
    // a tick two workers both fired would make more runs than ticks. (A tick claimed by a
    // worker as it was being stopped may have fired nothing.)
    assert!(
        runs + skipped <= ticks,
        "{runs} runs and {skipped} skips for {ticks} ticks"
    );
    assert!(
        ticks - (runs + skipped) <= 3,
        "{runs} runs and {skipped} skips for {ticks} ticks"
    );
}

fn post(base: &str, path: &str, body: &str) -> (u16, Value) {
    let (url, body) = (format!("{base}{path}"), body.to_string());
    let (status, text) = send(move |c| {
        c.post(&url)
            .header("content-type", "application/json")
            .body(body)
    });
    (status, serde_json::from_str(&text).unwrap())
}

/// Sends the request `build` makes from a client, off any async runtime: its status and body.
fn send(
    build: impl FnOnce(reqwest::Client) -> reqwest::RequestBuilder + Send + 'static,
) -> (u16, String) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = build(crate::support::http()).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    })
    .join()
    .unwrap()
}

#[test]
fn a_run_driven_by_one_worker_is_cancelled_through_another() {
    let url = postgres_db();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("attempts.log");
    let p = [("diamond", diamond(&log, "30"))];
    let (_a, w1, base1) = worker(&url, &p, 15);
    let (b_ws, w2, base2) = worker(&url, &p, 15);
    let run = post_run(&base1, "diamond");
    eventually("the slow stage to start", || {
        count(
            &url,
            &format!(
                "SELECT COUNT(*) FROM attempts WHERE run_id = {run} AND stage_id = 'b' AND status = 'running'"
            ),
        ) == 1
    });
    // Any worker's view of the run names the worker driving it: where its processes are.
    let owner: String = sql(&url, &format!("SELECT owner FROM runs WHERE id = {run}"))[0].get(0);
    let shown = b_ws
        .run(&["runs", "show", &run.to_string(), "--json"])
        .json();
    assert_eq!(shown["owner"], owner.as_str(), "{shown}");
    let text = b_ws.run(&["runs", "show", &run.to_string()]);
    assert!(
        text.stdout().contains(&format!("worker {owner}")),
        "{}",
        text.stdout()
    );
    let (status, body) = post(
        &base2,
        &format!("/v1/runs/{run}/cancel"),
        r#"{"reason": "wrong input"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let run_status: String =
        sql(&url, &format!("SELECT status FROM runs WHERE id = {run}"))[0].get(0);
    assert_eq!(
        run_status, "cancelled",
        "the cancel waited for the run to end"
    );
    let b: String = sql(
        &url,
        &format!("SELECT status FROM stages WHERE run_id = {run} AND stage_id = 'b'"),
    )[0]
    .get(0);
    assert_eq!(b, "cancelled");
    // Once it has ended, another cancel is refused on every worker.
    for base in [&base1, &base2] {
        let (status, body) = post(
            base,
            &format!("/v1/runs/{run}/cancel"),
            r#"{"reason": "again"}"#,
        );
        assert_eq!(status, 409, "{body}");
    }
    // Asked on one worker, done on the other, recorded once with the reason.
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM audit WHERE action = 'run.cancel' AND reason = 'wrong input'"
        ),
        1
    );
    // Ended, it is nobody's: retried through the other worker, that one drives it (the worker
    // that drove it before is still alive).
    let (status, body) = post(
        &base2,
        &format!("/v1/runs/{run}/retry"),
        r#"{"reason": "input fixed"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let now: String = sql(&url, &format!("SELECT owner FROM runs WHERE id = {run}"))[0].get(0);
    assert_ne!(now, owner, "the retry is driven where it was asked");
    drop((w1, w2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumed_on_another_worker_misses_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let url = postgres_db();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("attempts.log");
    let p = [("diamond", diamond(&log, "0"))];
    let (_a, w1, base1) = worker(&url, &p, 15);
    let (_b, w2, base2) = worker(&url, &p, 15);
    let finished = |n: i64| {
        let url = url.clone();
        move || count(&url, "SELECT COUNT(*) FROM runs WHERE status = 'succeeded'") == n
    };
    for _ in 0..2 {
        post_run(&base1, "diamond");
    }
    eventually("two runs", finished(2));
    // A client reads part of the log from the first worker, then goes away.
    let first = crate::crash::sse_until(&base1, 0, |evs| evs.len() >= 5).await;
    let resume_at = first[4]["seq"].as_u64().unwrap();
    // Meanwhile both workers run more.
    for i in 0..4 {
        post_run(if i % 2 == 0 { &base1 } else { &base2 }, "diamond");
    }
    eventually("six runs", finished(6));
    // It comes back on the second worker and then keeps listening while the first one
    // runs more: it gets everything, in order, once.
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let reading = tokio::spawn({
        let (base2, target) = (base2.clone(), target.clone());
        async move {
            crate::crash::sse_until(&base2, resume_at, move |evs| {
                evs.last()
                    .and_then(|e| e["seq"].as_u64())
                    .is_some_and(|s| s >= target.load(Ordering::SeqCst))
            })
            .await
        }
    });
    post_run(&base1, "diamond");
    eventually("seven runs", finished(7));
    let last = count(&url, "SELECT MAX(seq) FROM events");
    target.store(u64::try_from(last).unwrap(), Ordering::SeqCst);
    let got = reading.await.unwrap();
    let seqs: Vec<u64> = got.iter().filter_map(|e| e["seq"].as_u64()).collect();
    let want: Vec<u64> = (resume_at + 1..=u64::try_from(last).unwrap()).collect();
    assert_eq!(seqs, want);
    drop((w1, w2));
}

#[test]
fn a_canary_moves_to_another_worker_when_its_leader_dies_and_acts_once() {
    let url = postgres_db();
    let canary = "[canary.api]\nsource = \"simulate\"\nsteps = [ {weight = 10, pause = \"1h\"}, {weight = 100} ]\nsimulate = { rps = 5 }\n";
    let p = [("etl", crate::support::ETL.to_string())];
    // Every worker has the canary in its workspace.
    let make = |p: &[(&str, String)]| {
        let ws = TestWorkspace::new();
        for (name, text) in p {
            ws.pipeline(name, text);
        }
        ws.write(
            "opsdeck.toml",
            &format!("[store]\nurl = \"{url}\"\n[worker]\nlease_timeout = 3\n{canary}"),
        );
        let port = free_port();
        let child = serve(&ws, port);
        (ws, child, format!("http://127.0.0.1:{port}"))
    };
    let mut leader = make(&p);
    eventually("the canary to start", || {
        count(
            &url,
            "SELECT COUNT(*) FROM events WHERE kind = 'canary_started'",
        ) == 1
    });
    let follower = make(&p);
    // Commands go where the canary is driven.
    let (status, body) = post(
        &follower.2,
        "/v1/canaries/api/actions",
        r#"{"action": "pause", "reason": "hold"}"#,
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another worker"),
        "{body}"
    );
    let (status, body) = post(
        &leader.2,
        "/v1/canaries/api/actions",
        r#"{"action": "set_weight", "weight": 30, "reason": "hold at 30"}"#,
    );
    assert_eq!(status, 200, "{body}");
    leader.1.kill();
    // The follower takes the lead and goes on from the saved state: still at 30%, paused.
    eventually("the follower to drive the canary", || {
        let (status, _) = post(
            &follower.2,
            "/v1/canaries/api/actions",
            r#"{"action": "resume", "reason": "the new leader goes on"}"#,
        );
        status == 200
    });
    let actions: Vec<String> = sql(
        &url,
        "SELECT data FROM events WHERE kind = 'canary_action' ORDER BY seq",
    )
    .iter()
    .map(|r| r.get::<_, String>(0))
    .collect();
    assert_eq!(actions.len(), 2, "set_weight, then resume: {actions:?}");
    assert!(actions[1].contains("\"weight_before\":30"), "{actions:?}");
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM events WHERE kind = 'canary_started'"
        ),
        1,
        "taken over, not started again"
    );
    drop(follower);
}

/// A TCP relay on loopback between one worker and PostgreSQL that can be cut: while cut it
/// moves no bytes either way and new connections get no answer, as across a network
/// partition (the sockets stay open, and traffic resumes when the cut is mended).
struct Relay {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    fn to(upstream: &str) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, upstream) = (cut.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (flag, upstream) = (flag.clone(), upstream.clone());
                std::thread::spawn(move || {
                    while flag.load(Ordering::SeqCst) {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                        return;
                    };
                    let (c, s, f) = (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        flag.clone(),
                    );
                    std::thread::spawn(move || pump(c, s, &f));
                    pump(server, client, &flag);
                });
            }
        });
        Relay { port, cut }
    }

    fn set_cut(&self, on: bool) {
        self.cut.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.set_cut(false);
    }
}

fn pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    cut: &std::sync::atomic::AtomicBool,
) {
    use std::io::{Read, Write};
    from.set_read_timeout(Some(std::time::Duration::from_millis(20)))
        .unwrap();
    let mut buf = [0u8; 16384];
    loop {
        if cut.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                let _ = to.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
    }
}

/// Each attempt's status of `stage` in `run`, in order.
fn attempts(url: &str, run: i64, stage: &str) -> Vec<String> {
    sql(
        url,
        &format!(
            "SELECT status FROM attempts WHERE run_id = {run} AND stage_id = '{stage}' ORDER BY n"
        ),
    )
    .iter()
    .map(|r| r.get::<_, String>(0))
    .collect()
}

fn two_stages(name: &str, log: &Path, slow: &str) -> String {
    format!(
        "[pipeline]\nname = \"{name}\"\n{}{}",
        noting("slow", &[], log, slow),
        noting("after", &["slow"], log, "0")
    )
}

#[test]
fn a_worker_cut_off_from_the_store_stops_its_attempts_and_another_finishes_its_runs() {
    let url = postgres_db();
    let at = url.split('@').nth(1).unwrap().split('/').next().unwrap();
    let relay = Relay::to(at);
    let url_a = url.replacen(at, &format!("127.0.0.1:{}", relay.port), 1);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("attempts.log");
    let p = [("cut", two_stages("cut", &log, "6"))];
    let (ws_a, cut_off, base_a) = worker(&url_a, &p, 3);
    let (_b, other, _) = worker(&url, &p, 3);
    let run = post_run(&base_a, "cut");
    eventually("the slow stage to start on the first worker", || {
        attempts(&url, run, "slow") == ["running"]
    });
    relay.set_cut(true);
    eventually("the other worker to finish the run", || {
        count(
            &url,
            &format!("SELECT COUNT(*) FROM runs WHERE id = {run} AND status = 'succeeded'"),
        ) == 1
    });
    // The cut-off worker stopped its attempt itself before its lease ran out: the process
    // was killed before it could note anything (it sleeps 6 s).
    let seen = noted(&log);
    assert!(
        !seen.contains_key(&(run, "slow".to_string(), 1)),
        "the cut-off worker's attempt ran on: {seen:?}"
    );
    assert_eq!(
        seen.get(&(run, "slow".to_string(), 2)),
        Some(&1),
        "{seen:?}"
    );
    assert_eq!(
        seen.get(&(run, "after".to_string(), 1)),
        Some(&1),
        "{seen:?}"
    );
    assert!(
        crate::support::log_text(&ws_a).contains("cut off from the store"),
        "{}",
        crate::support::log_text(&ws_a)
    );
    // Mended, the worker rejoins and records nothing about the run it lost.
    relay.set_cut(false);
    eventually("the cut-off worker to rejoin", || {
        crate::support::log_text(&ws_a).contains("rejoined")
            && count(&url, "SELECT COUNT(*) FROM workers") == 2
    });
    assert_eq!(attempts(&url, run, "slow"), ["interrupted", "succeeded"]);
    assert_eq!(attempts(&url, run, "after"), ["succeeded"]);
    assert_gap_free(&url);
    // And it takes work again.
    let next = post_run(&base_a, "cut");
    eventually("a new run on the rejoined worker to finish", || {
        attempts(&url, next, "after") == ["succeeded"]
    });
    assert_eq!(attempts(&url, next, "slow"), ["succeeded"]);
    drop((cut_off, other, relay));
}

#[test]
fn a_worker_frozen_past_its_lease_records_nothing_of_the_runs_it_lost() {
    use nix::sys::signal::Signal;
    let url = postgres_db();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("attempts.log");
    let p = [("frozen", two_stages("frozen", &log, "3"))];
    let (ws_a, frozen, base_a) = worker(&url, &p, 3);
    let (_b, other, _) = worker(&url, &p, 3);
    let run = post_run(&base_a, "frozen");
    eventually("the slow stage to start on the first worker", || {
        attempts(&url, run, "slow") == ["running"]
    });
    // A pause (a stopped VM, a long GC, SIGSTOP) longer than the lease: the worker cannot
    // tell, and when it wakes its attempt has ended and it goes to record it.
    frozen.signal(Signal::SIGSTOP);
    eventually("the other worker to finish the run", || {
        count(
            &url,
            &format!("SELECT COUNT(*) FROM runs WHERE id = {run} AND status = 'succeeded'"),
        ) == 1
    });
    frozen.signal(Signal::SIGCONT);
    eventually("the frozen worker to rejoin", || {
        crate::support::log_text(&ws_a).contains("rejoined")
            && count(&url, "SELECT COUNT(*) FROM workers") == 2
    });
    // It came back as it was, at its address.
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM workers WHERE address IS NOT NULL"
        ),
        2
    );
    // Its writes were refused by the fence: the first attempt stays interrupted, and the
    // next stage was never started there.
    assert_eq!(
        attempts(&url, run, "slow"),
        ["interrupted", "succeeded"],
        "attempts {:?}; the frozen worker's log:\n{}",
        sql(
            &url,
            &format!("SELECT n, status, error_code, error_message, started_at, finished_at FROM attempts WHERE run_id = {run} ORDER BY stage_id, n")
        )
        .iter()
        .map(|r| format!(
            "{:?}",
            (
                r.get::<_, i64>(0),
                r.get::<_, String>(1),
                r.get::<_, Option<String>>(2),
                r.get::<_, Option<String>>(3),
                r.get::<_, String>(4),
                r.get::<_, Option<String>>(5)
            )
        ))
        .collect::<Vec<_>>(),
        crate::support::log_text(&ws_a)
    );
    assert_eq!(attempts(&url, run, "after"), ["succeeded"]);
    let seen = noted(&log);
    assert_eq!(
        seen.get(&(run, "after".to_string(), 1)),
        Some(&1),
        "{seen:?}"
    );
    assert_eq!(
        seen.keys().filter(|k| k.1 == "after").count(),
        1,
        "{seen:?}"
    );
    assert!(
        crate::support::log_text(&ws_a).contains("other workers took its runs"),
        "{}",
        crate::support::log_text(&ws_a)
    );
    assert_gap_free(&url);
    drop((frozen, other));
}

async fn run_and_wait(host: &Host, pipeline: &str) -> i64 {
    crate::support::run_to_end(host, pipeline).await.id.0
}

async fn breakers_open(host: &opsdeck::host::Host) -> Vec<String> {
    host.overview()
        .await
        .unwrap()
        .breakers
        .into_iter()
        .map(|b| format!("{} {}", b.target, b.state))
        .collect()
}

fn error_codes(url: &str, run: i64) -> Vec<String> {
    sql(
        url,
        &format!("SELECT error_code FROM attempts WHERE run_id = {run} ORDER BY n"),
    )
    .iter()
    .map(|r| r.get::<_, String>(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opened_on_one_worker_holds_on_the_others_and_after_a_restart() {
    let url = postgres_db();
    let make = || {
        let ws = TestWorkspace::new();
        ws.pipeline("flaky", crate::support::FLAKY);
        ws.write(
            "opsdeck.toml",
            &format!("[store]\nurl = \"{url}\"\n[worker]\nlease_timeout = 3\n"),
        );
        ws
    };
    let (ws_a, ws_b) = (make(), make());
    let (a, b) = (ws_a.host().await, ws_b.host().await);
    for _ in 0..2 {
        run_and_wait(&a, "flaky").await;
    }
    assert_eq!(breakers_open(&a).await, ["simulate:partner-api open"]);
    crate::support::until("the other worker's breaker to open", || async {
        breakers_open(&b).await == ["simulate:partner-api open"]
    })
    .await;
    // A run on the other worker fails fast: its attempt never reaches the target.
    let on_b = run_and_wait(&b, "flaky").await;
    let codes = tokio::task::spawn_blocking({
        let url = url.clone();
        move || error_codes(&url, on_b)
    })
    .await
    .unwrap();
    assert_eq!(codes, ["breaker_open"]);
    a.shutdown().await;
    b.shutdown().await;
    // A worker started afterwards finds it open in the store.
    let c = make().host().await;
    assert_eq!(breakers_open(&c).await, ["simulate:partner-api open"]);
    c.shutdown().await;
}

#[tokio::test]
async fn a_breaker_open_when_a_host_stops_is_open_when_it_starts_again() {
    let ws = TestWorkspace::new();
    ws.pipeline("flaky", crate::support::FLAKY);
    let host = ws.host().await;
    for _ in 0..2 {
        run_and_wait(&host, "flaky").await;
    }
    host.shutdown().await;
    let host = ws.host().await;
    assert_eq!(breakers_open(&host).await, ["simulate:partner-api open"]);
    let run = run_and_wait(&host, "flaky").await;
    let detail = host.run(opsdeck::model::RunId(run)).await.unwrap();
    let code = detail.stages[0].attempts[0]
        .error
        .as_ref()
        .map(|e| e.code.clone());
    assert_eq!(code.as_deref(), Some("breaker_open"));
    host.shutdown().await;
}

/// A worker's row, as a host registers it.
fn row(id: &str) -> opsdeck::model::WorkerInfo {
    opsdeck::model::WorkerInfo {
        id: id.into(),
        host: "here".into(),
        pid: 1,
        address: None,
        started_at: opsdeck::model::Timestamp::from_millis(0),
        heartbeat_age_ms: 0,
        lease_left_ms: 0,
        max_in_flight: 1,
        runs: 0,
    }
}

/// A writer on a fresh store at `url`, as a host's (no host around it).
async fn store_writer(url: &str) -> (opsdeck::store::Writer, opsdeck::store::WriterThread) {
    let target = opsdeck::store::Target::Postgres(url.to_string());
    let conn = tokio::task::spawn_blocking(move || {
        let mut conn = target.writer().unwrap();
        opsdeck::store::schema::migrate(&mut conn).unwrap();
        conn
    })
    .await
    .unwrap();
    let (events, _) = tokio::sync::broadcast::channel(16);
    opsdeck::store::Writer::spawn(conn, events).unwrap()
}

/// Registers worker `id` through `writer`'s connection, its lease good for `lease_ms`.
async fn register(writer: &opsdeck::store::Writer, id: &str, lease_ms: u64) {
    let me = row(id);
    writer
        .on_conn(move |db| opsdeck::store::workers::register(db, &me, lease_ms))
        .await
        .unwrap();
}

/// [`store_writer`] on a store holding runs 1, 2 and 3, pending.
async fn writer_with_three_runs(
    url: &str,
) -> (opsdeck::store::Writer, opsdeck::store::WriterThread) {
    let (writer, thread) = store_writer(url).await;
    writer
        .commit(vec![new_run(1), new_run(2), new_run(3)])
        .await
        .unwrap();
    (writer, thread)
}

async fn close(writer: opsdeck::store::Writer, thread: opsdeck::store::WriterThread) {
    writer.close().await;
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .unwrap();
}

/// The fence itself: once another worker has taken a worker's runs (its lease ran out and it
/// was reaped), every write of that worker is refused by the store, whatever it still thinks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_refuses_the_writes_of_a_worker_whose_runs_were_taken() {
    use opsdeck::model::{EventKind, Timestamp};
    use opsdeck::store::{NewEvent, Op, Target, workers};
    let url = postgres_db();
    let (writer, thread) = store_writer(&url).await;
    // A lease of no time at all: it has run out as soon as it is taken.
    register(&writer, "w1", 0).await;
    writer.fence_as("w1".into()).await;
    let event = || {
        vec![Op::Event(NewEvent {
            at: Timestamp::from_millis(0),
            kind: EventKind::Audit,
            run_id: None,
            stage: None,
            data: serde_json::json!({}),
        })]
    };
    writer.commit(event()).await.unwrap();
    assert!(!writer.fenced());
    let other_url = url.clone();
    let reaped = tokio::task::spawn_blocking(move || {
        let mut other = Target::Postgres(other_url).writer().unwrap();
        workers::reap(&mut other, Timestamp::from_millis(0)).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0].worker, "w1");
    let refused = writer.commit(event()).await.unwrap_err();
    assert!(
        refused.0.contains("w1 no longer holds its lease"),
        "{refused}"
    );
    assert!(writer.fenced(), "the host is told");
    // A late write queued before the worker registers again is refused too: requests are
    // served in the order they came, even when they reach the writer together (held here
    // behind a slow job on the connection).
    let slow = tokio::spawn({
        let writer = writer.clone();
        async move {
            writer
                .on_conn(|_| {
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    Ok(())
                })
                .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    writer.send(event()).await;
    register(&writer, "w1", 60_000).await;
    slow.await.unwrap().unwrap();
    // Registered again, the worker writes as before.
    writer.commit(event()).await.unwrap();
    close(writer, thread).await;
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM events"),
        2,
        "the first write and the one after registering again; nothing between"
    );
}

/// A new run of one stage, `id` in its params, spec and assets.
fn new_run(id: i64) -> opsdeck::store::Op {
    use opsdeck::model::{RunId, Timestamp, Trigger};
    opsdeck::store::Op::InsertRun {
        id: RunId(id),
        pipeline: "p".into(),
        trigger: Trigger::Manual,
        params: format!(r#"{{"n":{id}}}"#),
        spec: format!(r#"{{"spec":{id}}}"#),
        created_at: Timestamp::from_millis(0),
        stages: vec![opsdeck::store::NewStage {
            id: "a".into(),
            kind: "simulate".into(),
            needs: Vec::new(),
        }],
        overrides: "{}".into(),
        assets: format!(r#"{{"a":{{"model":{id}}}}}"#),
        test_input: None,
    }
}

/// A cancel asked through a worker takes a run no live worker drives (so none claims and
/// starts it meanwhile), asks the one that drives it otherwise, and finds nothing to do once
/// the run has ended: its end let go of it and of the request, which would otherwise cancel
/// its retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_takes_a_free_run_asks_its_driver_or_finds_it_ended() {
    use opsdeck::model::{RunId, RunStatus, Timestamp};
    use opsdeck::store::Op;
    use opsdeck::store::workers::{self, CancelAt};
    let url = postgres_db();
    let (writer, thread) = store_writer(&url).await;
    register(&writer, "w1", 60_000).await;
    writer.commit(vec![new_run(1), new_run(2)]).await.unwrap();
    sql(
        &url,
        "UPDATE runs SET owner = 'w1', status = 'running' WHERE id = 1",
    );
    let cancel =
        |id: i64| writer.on_conn(move |db| workers::take_to_cancel(db, "w2", RunId(id), "stop"));
    assert_eq!(cancel(1).await.unwrap(), CancelAt::Worker("w1".into()));
    assert_eq!(cancel(2).await.unwrap(), CancelAt::Here);
    let state = |id: i64| -> (Option<String>, Option<String>) {
        let r = &sql(
            &url,
            &format!("SELECT owner, cancel_requested FROM runs WHERE id = {id}"),
        )[0];
        (r.get(0), r.get(1))
    };
    assert_eq!(state(1), (Some("w1".into()), Some("stop".into())));
    assert_eq!(state(2), (Some("w2".into()), None));
    // Run 1 ends on w1 before w1 took the request.
    writer
        .commit(vec![Op::UpdateRun {
            id: RunId(1),
            status: RunStatus::Succeeded,
            started_at: None,
            finished_at: Some(Timestamp::from_millis(1)),
        }])
        .await
        .unwrap();
    assert_eq!(state(1), (None, None));
    assert_eq!(cancel(1).await.unwrap(), CancelAt::Finished);
    assert_eq!(state(1), (None, None));
    close(writer, thread).await;
}

/// A store of an earlier version, whose finished runs kept the worker that drove them, lets
/// go of those when it is brought up to date (and of no run a worker still drives).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bringing_a_store_up_to_date_lets_go_of_finished_runs_only() {
    use opsdeck::store::{Target, schema};
    let url = postgres_db();
    let (writer, thread) = writer_with_three_runs(&url).await;
    close(writer, thread).await;
    sql(
        &url,
        "UPDATE runs SET owner = 'w1', status = CASE id WHEN 1 THEN 'succeeded' WHEN 2 THEN 'running' ELSE 'failed' END",
    );
    sql(&url, "UPDATE opsdeck_schema SET version = 5");
    let target = Target::Postgres(url.clone());
    tokio::task::spawn_blocking(move || schema::migrate(&mut target.writer().unwrap()).unwrap())
        .await
        .unwrap();
    let owners: Vec<(i64, Option<String>)> = sql(&url, "SELECT id, owner FROM runs ORDER BY id")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(owners, vec![(1, None), (2, Some("w1".into())), (3, None)]);
}

/// A claim hands over a run no driver has started with everything its driver starts from
/// (so starting it reads nothing more), and a run to resume without it: that one is read
/// whole, its finished stages with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_carries_an_unstarted_run_and_leaves_a_run_to_resume_to_be_read() {
    use opsdeck::model::RunStatus;
    use opsdeck::store::workers;
    let url = postgres_db();
    let (writer, thread) = store_writer(&url).await;
    register(&writer, "w1", 60_000).await;
    writer.commit(vec![new_run(1), new_run(2)]).await.unwrap();
    sql(&url, "UPDATE runs SET status = 'interrupted' WHERE id = 2");
    let claimed = writer
        .on_conn(|db| workers::claim(db, "w1", 5))
        .await
        .unwrap();
    close(writer, thread).await;
    let got: Vec<_> = claimed
        .iter()
        .map(|c| (c.id.0, c.status, c.unstarted.is_some()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, RunStatus::Pending, true),
            (2, RunStatus::Interrupted, false)
        ]
    );
    let run = claimed[0].unstarted.as_ref().unwrap();
    assert_eq!(run.spec, r#"{"spec":1}"#);
    assert_eq!(run.params, serde_json::json!({"n": 1}));
    assert_eq!(run.assets["a"]["model"], 1);
    assert!(run.stages.is_empty() && run.started_at.is_none() && run.test_input.is_none());
}

/// A claim takes waiting runs oldest first, never one another claim took, and none for a
/// worker whose row is gone (declared dead: the others took its runs, and it is fenced off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_takes_each_waiting_run_once_and_nothing_for_a_worker_without_a_lease() {
    use opsdeck::store::workers;
    let url = postgres_db();
    let (writer, thread) = writer_with_three_runs(&url).await;
    register(&writer, "w1", 60_000).await;
    let claim = |me: &'static str, n: usize| {
        writer.on_conn(move |db| {
            workers::claim(db, me, n).map(|c| c.iter().map(|c| c.id.0).collect::<Vec<_>>())
        })
    };
    assert_eq!(claim("ghost", 5).await.unwrap(), Vec::<i64>::new());
    assert_eq!(claim("w1", 2).await.unwrap(), vec![1, 2]);
    assert_eq!(claim("w1", 5).await.unwrap(), vec![3]);
    assert_eq!(claim("w1", 5).await.unwrap(), Vec::<i64>::new());
    close(writer, thread).await;
    let owners: Vec<Option<String>> = sql(&url, "SELECT owner FROM runs ORDER BY id")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(owners, vec![Some("w1".to_string()); 3]);
}

/// A worker's claimer serves asks that arrive together, each run to one of them; once closed,
/// or with the store out of reach, it says it cannot (the worker then claims on its writer's
/// connection) instead of answering that nothing waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimer_shares_runs_among_its_asks_and_says_when_it_cannot_claim() {
    use opsdeck::store::{Claimer, Target};
    let url = postgres_db();
    let (writer, thread) = writer_with_three_runs(&url).await;
    register(&writer, "w1", 60_000).await;
    let claimer = Claimer::spawn(Target::Postgres(url.clone()), "w1".into()).unwrap();
    let (a, b) = tokio::join!(claimer.claim(2), claimer.claim(2));
    let mut got: Vec<i64> = a
        .unwrap()
        .into_iter()
        .chain(b.unwrap())
        .map(|c| c.id.0)
        .collect();
    got.sort_unstable();
    assert_eq!(got, vec![1, 2, 3]);
    assert_eq!(claimer.claim(1).await.map(|c| c.len()), Some(0));
    claimer.close().await;
    assert!(
        claimer.claim(1).await.is_none(),
        "a closed claimer claims nothing"
    );
    let nowhere = format!("postgres://opsdeck@127.0.0.1:{}/postgres", free_port());
    let down = Claimer::spawn(Target::Postgres(nowhere), "w1".into()).unwrap();
    assert!(down.claim(1).await.is_none(), "no store, no claim");
    close(writer, thread).await;
}

/// Every worker's proxy serves a canary's traffic, routed at the weight the driving worker
/// set; what the other workers' proxies see reaches the driving worker through the store,
/// once a second, and its analysis judges it: a canary broken behind another worker's proxy
/// is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_seen_by_another_workers_proxy_is_judged_by_the_driving_worker() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let url = postgres_db();
    let broken = Arc::new(AtomicBool::new(false));
    let legacy = crate::canary::upstream("legacy", Arc::new(AtomicBool::new(false))).await;
    let canary = crate::canary::upstream("canary", broken.clone()).await;
    let make = |port: u16| {
        let ws = TestWorkspace::new();
        ws.write(
            "opsdeck.toml",
            &format!(
                r#"[store]
url = "{url}"
[worker]
lease_timeout = 3
[canary.shop]
source = "proxy"
proxy = {{ listen = "127.0.0.1:{port}", legacy = "http://{legacy}", canary = "http://{canary}" }}
steps = [ {{weight = 50, pause = "1h"}}, {{weight = 100}} ]
analysis = {{ interval = "1s", min_requests = 20 }}
route = {{ key = "header:x-user-id" }}
"#
            ),
        );
        ws
    };
    let (lead_port, other_port) = (free_port(), free_port());
    let (ws_lead, ws_other) = (make(lead_port), make(other_port));
    let start = |ws: &TestWorkspace| {
        Host::start(ws.open(), opsdeck::host::HostOptions::long_lived("worker"))
    };
    let leader = start(&ws_lead).await.unwrap();
    let other = start(&ws_other).await.unwrap();
    let http = crate::support::http();
    let proxy = format!("http://127.0.0.1:{other_port}/checkout");
    let send = |n: std::ops::Range<u32>| {
        let (http, proxy) = (http.clone(), proxy.clone());
        async move {
            let mut versions = HashMap::new();
            for i in n {
                let r = http
                    .get(&proxy)
                    .header("x-user-id", format!("user-{i}"))
                    .send()
                    .await
                    .unwrap();
                let v = r.headers()["x-opsdeck-version"]
                    .to_str()
                    .unwrap()
                    .to_string();
                *versions.entry(v).or_insert(0u32) += 1;
            }
            versions
        }
    };
    // Only the other worker's proxy gets traffic; it routes at the leader's weight (50%).
    let split = send(0..200).await;
    assert!(
        split.get("canary").is_some_and(|n| (60..=140).contains(n)),
        "{split:?}"
    );
    let canary_requests = |host: Host| async move {
        host.canary("shop").unwrap().requests["canary"]
            .as_u64()
            .unwrap_or(0)
    };
    crate::support::until("every request to reach the leader's analysis", || async {
        let s = leader.canary("shop").unwrap();
        s.requests["canary"].as_u64().unwrap_or(0) + s.requests["legacy"].as_u64().unwrap_or(0)
            >= 200
    })
    .await;
    assert_eq!(
        canary_requests(other.clone()).await,
        0,
        "the other worker judges nothing"
    );
    // The canary breaks behind the other worker's proxy: the leader rolls it back.
    broken.store(true, Ordering::SeqCst);
    let _ = send(200..400).await;
    crate::support::until("the leader to roll the canary back", || async {
        leader.canary("shop").unwrap().state == opsdeck::model::CanaryState::RolledBack
    })
    .await;
    let s = leader.canary("shop").unwrap();
    let rec = s.last_action.unwrap();
    assert_eq!(rec.actor, "opsdeck");
    assert!(rec.reason.contains("error_rate"), "{}", rec.reason);
    // The other worker follows: every request now goes to legacy.
    crate::support::until("the other proxy to follow the rollback", || async move {
        !send(400..450).await.contains_key("canary")
    })
    .await;
    other.shutdown().await;
    leader.shutdown().await;
}

/// The writer's connection finds the rows a batch updates by key, from the first batch of a
/// new store on: its plans are kept, and one made while a table is small would otherwise scan
/// all of it for every batch until the server next gathers the table's statistics (a minute
/// or more), a cost that grows with the store. Nor does it compile a statement each time it
/// runs one, which a scan left as the only way (the one-row event counter's) would be costed
/// into.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_finds_the_rows_it_updates_by_key_in_a_new_store() {
    let url = postgres_db();
    let (writer, thread) = writer_with_three_runs(&url).await;
    let plans = writer
        .on_conn(|db| {
            // The plan kept for any arrays, as for the writer's own statements.
            db.batch(
                "PREPARE keyed(bigint[], text[]) AS
                 UPDATE runs r SET status = u.status FROM unnest($1, $2) AS u(id, status)
                 WHERE r.id = u.id",
            )?;
            let mut out = Vec::new();
            for sql in [
                "EXPLAIN EXECUTE keyed('{1, 2}', '{a, b}')",
                "EXPLAIN UPDATE event_seq SET last = last + 1",
            ] {
                let mut plan = String::new();
                for mut row in db.rows(sql, &[])? {
                    plan.push_str(&row.text(0)?);
                    plan.push('\n');
                }
                out.push(plan);
            }
            db.batch("DEALLOCATE keyed")?;
            Ok(out)
        })
        .await
        .unwrap();
    close(writer, thread).await;
    let (keyed, counter) = (&plans[0], &plans[1]);
    assert!(keyed.contains("Index Cond: (id = u.id)"), "{keyed}");
    assert!(!keyed.contains("Seq Scan"), "{keyed}");
    assert!(!counter.contains("JIT"), "{counter}");
}

/// A run created with its owner in one batch is owned from its insert, as when the owner
/// comes in a later batch; an owner named before its run's insert in a batch is applied after
/// the insert, as the batch's other writes are; a run no one owns stays free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_owned_in_the_batch_that_creates_it_is_owned_as_if_in_turn() {
    use opsdeck::model::RunId;
    use opsdeck::store::Op;
    let url = postgres_db();
    let (writer, thread) = store_writer(&url).await;
    let own = |id, worker: &str| Op::Own {
        id: RunId(id),
        worker: worker.into(),
    };
    writer
        .commit(vec![new_run(1), own(1, "w1"), new_run(2), new_run(3)])
        .await
        .unwrap();
    writer.commit(vec![own(2, "w2")]).await.unwrap();
    writer.commit(vec![own(4, "w3"), new_run(4)]).await.unwrap();
    close(writer, thread).await;
    let owners: Vec<(i64, Option<String>)> = sql(&url, "SELECT id, owner FROM runs ORDER BY id")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        owners,
        vec![
            (1, Some("w1".into())),
            (2, Some("w2".into())),
            (3, None),
            (4, Some("w3".into()))
        ]
    );
}
