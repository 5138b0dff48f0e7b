//! Several `opsdeck serve` workers on one PostgreSQL store (a real server, started by
//! `.ci/run`): runs shared and each stage run once, a worker killed mid-run and its runs
//! finished by another, and schedules fired once per tick.

use std::collections::HashMap;
use std::path::Path;
use std::process::Child;

use serde_json::Value;

use crate::support::{TestWorkspace, eventually, free_port, postgres_db, serve, stop};

/// A served worker, stopped when dropped (a failing test leaves no process behind).
struct Served(Option<Child>);

impl Served {
    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            stop(c);
        }
    }
}

/// A workspace on `url` with `pipelines`, served on a free port: the workspace, the process
/// and its API's address.
fn worker(url: &str, pipelines: &[(&str, String)], lease: u32) -> (TestWorkspace, Served, String) {
    let ws = TestWorkspace::new();
    for (name, text) in pipelines {
        ws.pipeline(name, text);
    }
    ws.write(
        "opsdeck.toml",
        &format!(
            "[store]\nurl = \"{url}\"\n[worker]\nlease_timeout = {lease}\nmax_in_flight = 64\n"
        ),
    );
    let port = free_port();
    let child = serve(&ws, port);
    (ws, Served(Some(child)), format!("http://127.0.0.1:{port}"))
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
    eventually("every run to finish", || {
        count(
            &url,
            "SELECT COUNT(*) FROM runs WHERE status NOT IN ('succeeded', 'failed', 'cancelled')",
        ) == 0
    });
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM runs WHERE status = 'succeeded'"),
        200
    );
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
    let owners = count(&url, "SELECT COUNT(DISTINCT owner) FROM runs");
    assert!(owners >= 2, "the runs went to {owners} worker(s)");
    assert_gap_free(&url);
    // Any worker lists the other two.
    let listed = workers[0].0.run(&["workers", "--json"]).json();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    drop(workers);
}

#[test]
fn a_killed_workers_runs_finish_on_another_and_finished_stages_are_not_run_again() {
    let url = postgres_db();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("attempts.log");
    let p = [("diamond", diamond(&log, "4"))];
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
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = crate::support::http()
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
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
    let (_b, w2, base2) = worker(&url, &p, 15);
    let run = post_run(&base1, "diamond");
    eventually("the slow stage to start", || {
        count(
            &url,
            &format!(
                "SELECT COUNT(*) FROM attempts WHERE run_id = {run} AND stage_id = 'b' AND status = 'running'"
            ),
        ) == 1
    });
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
        (ws, Served(Some(child)), format!("http://127.0.0.1:{port}"))
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
