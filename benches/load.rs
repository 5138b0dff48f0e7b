//! Load, as the flow platform this replaces promised it (100 concurrent flows, P95 under 1 s,
//! errors under 1%) and beyond: `opsdeck serve` (the release binary, as operators run it) on
//! loopback; 50 clients start 1,000 runs of a five-stage zero-latency pipeline through the API
//! while 100 SSE clients follow the event stream.
//!
//! Criterion times one whole scenario per iteration (`load/1000_runs`); the figures that
//! matter are printed after it, over every iteration: run start-to-finish P50/P95/P99 (from
//! sending the start request until the first SSE client sees `run_finished`), how much later
//! the other clients see it, API errors, and events lost or duplicated per SSE client (each
//! client's sequence numbers against the store's).
//! Any error, loss or duplicate fails the benchmark.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::Value;

const RUNS: usize = 1_000;
const STARTERS: usize = 50;
const FOLLOWERS: usize = 100;

const PIPELINE: &str = r#"[pipeline]
name = "five"
[[stage]]
id = "a"
kind = "simulate"
[[stage]]
id = "b"
kind = "simulate"
needs = ["a"]
[[stage]]
id = "c"
kind = "simulate"
needs = ["b"]
[[stage]]
id = "d"
kind = "simulate"
needs = ["c"]
[[stage]]
id = "e"
kind = "simulate"
needs = ["d"]
"#;

/// `opsdeck serve` on a workspace of its own, stopped on drop.
struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("pipelines")).expect("pipelines");
        std::fs::write(dir.path().join("pipelines/five.toml"), PIPELINE).expect("pipeline");
        std::fs::write(
            dir.path().join("opsdeck.toml"),
            "[server]\nrate_limit = 1000000\nread_rate_limit = 10000000\nsse_per_token = 1000\nsse_total = 1000\nmax_connections = 2000\n",
        )
        .expect("config");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_opsdeck"))
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .current_dir(dir.path())
            .env("OPSDECK_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("opsdeck serve");
        let host_json = dir.path().join(".opsdeck/host.json");
        let start = Instant::now();
        while !std::fs::read_to_string(&host_json).is_ok_and(|t| t.contains(&port.to_string())) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "serve did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the scenarios measured, over every iteration.
struct Totals {
    latency_us: Histogram<u64>,
    lag_us: Histogram<u64>,
    api_errors: u64,
    lost: u64,
    duplicated: u64,
    runs: u64,
}

/// What one SSE client heard: every sequence number, and when each run's end arrived.
type Heard = (Vec<u64>, HashMap<i64, Instant>);

/// One SSE client: every sequence number it saw, and when it saw each run finish.
async fn follow(
    http: reqwest::Client,
    url: String,
    mut until_seq: tokio::sync::watch::Receiver<Option<u64>>,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Heard {
    let resp = http.get(&url).send().await.expect("sse");
    let _ = ready.send(()).await;
    let mut body = resp.bytes_stream();
    let (mut text, mut seqs, mut finished) = (String::new(), Vec::new(), HashMap::new());
    loop {
        let done = *until_seq.borrow();
        if done.is_some_and(|d| seqs.last().is_some_and(|s| *s >= d)) {
            break;
        }
        let chunk = tokio::select! {
            c = tokio::time::timeout(Duration::from_secs(60), body.next()) => match c {
                Ok(Some(Ok(chunk))) => chunk,
                _ => break,
            },
            changed = until_seq.changed() => {
                if changed.is_err() { break; }
                continue;
            }
        };
        text.push_str(&String::from_utf8_lossy(&chunk));
        // Every whole frame in the buffer, then what is left of a frame kept for the next chunk.
        let whole = text.rfind("\n\n").map_or(0, |i| i + 2);
        for frame in text[..whole].split("\n\n") {
            // The frame's `id` is the sequence number and `event` its kind: only the run's
            // end needs its JSON (this client shares the machine with the server).
            let Some(seq) = frame
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .and_then(|id| id.parse::<u64>().ok())
            else {
                continue;
            };
            seqs.push(seq);
            if frame.lines().any(|l| l == "event: run_finished")
                && let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: "))
                && let Ok(e) = serde_json::from_str::<Value>(data)
                && let Some(run) = e["run_id"].as_i64()
            {
                finished.insert(run, Instant::now());
            }
        }
        text.drain(..whole);
    }
    (seqs, finished)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

async fn last_seq(http: &reqwest::Client, base: &str) -> u64 {
    let v: Value = http
        .get(format!("{base}/v1/overview"))
        .send()
        .await
        .expect("overview")
        .json()
        .await
        .expect("json");
    v["data"]["last_seq"].as_u64().expect("last_seq")
}

/// Waits until no run is pending or running.
async fn wait_idle(http: &reqwest::Client, base: &str) {
    loop {
        let v: Value = http
            .get(format!("{base}/v1/runs?status=running&limit=1"))
            .send()
            .await
            .expect("runs")
            .json()
            .await
            .expect("json");
        let pending: Value = http
            .get(format!("{base}/v1/runs?status=pending&limit=1"))
            .send()
            .await
            .expect("runs")
            .json()
            .await
            .expect("json");
        if v["data"]["total"] == 0 && pending["data"]["total"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Adds one scenario's losses, duplicates and latencies to `t`.
async fn tally(
    t: &mut Totals,
    followers: Vec<tokio::task::JoinHandle<Heard>>,
    sent: &HashMap<i64, Instant>,
    ids: &[i64],
    (since, end): (u64, u64),
) {
    let mut seen_finish: Vec<HashMap<i64, Instant>> = Vec::new();
    for f in followers {
        let (seqs, finished) = f.await.expect("follower");
        let mut seen = std::collections::HashSet::new();
        for s in &seqs {
            if !seen.insert(*s) {
                t.duplicated += 1;
            }
        }
        t.lost += (since + 1..=end).filter(|s| !seen.contains(s)).count() as u64;
        seen_finish.push(finished);
    }
    for id in ids {
        // The run's end is when the first client heard of it; every other client's delay
        // after that is the stream's delivery lag.
        let heard: Vec<Instant> = seen_finish
            .iter()
            .filter_map(|f| f.get(id).copied())
            .collect();
        let (Some(at), Some(first)) = (sent.get(id), heard.iter().min()) else {
            continue;
        };
        let _ = t
            .latency_us
            .record(micros(first.saturating_duration_since(*at)));
        for h in &heard {
            let _ = t.lag_us.record(micros(h.saturating_duration_since(*first)));
        }
    }
}

/// One scenario; adds its figures to `t` and returns its wall time.
async fn scenario(base: &str, t: &mut Totals) -> Duration {
    let http = opsdeck::net::client_builder()
        .pool_max_idle_per_host(200)
        .build()
        .expect("client");
    let since = last_seq(&http, base).await;
    let (until_tx, until_seq) = tokio::sync::watch::channel(None);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(FOLLOWERS);
    let followers: Vec<_> = (0..FOLLOWERS)
        .map(|_| {
            let url = format!("{base}/v1/events?since={since}");
            tokio::spawn(follow(
                http.clone(),
                url,
                until_seq.clone(),
                ready_tx.clone(),
            ))
        })
        .collect();
    for _ in 0..FOLLOWERS {
        ready_rx.recv().await.expect("ready");
    }
    let started = Instant::now();
    let sent: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let starters: Vec<_> = (0..STARTERS)
        .map(|i| {
            let (http, sent, errors) = (http.clone(), sent.clone(), errors.clone());
            let url = format!("{base}/v1/pipelines/five/runs");
            tokio::spawn(async move {
                for _ in (i..RUNS).step_by(STARTERS) {
                    let at = Instant::now();
                    let ok = match http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body("{}")
                        .send()
                        .await
                    {
                        Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                        _ => None,
                    };
                    match ok.and_then(|v| v["data"]["id"].as_i64()) {
                        Some(id) => {
                            sent.lock().expect("lock").insert(id, at);
                        }
                        None => {
                            errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for s in starters {
        s.await.expect("starter");
    }
    // Wait for the runs to finish, then tell the followers where the log ends.
    let ids: Vec<i64> = sent.lock().expect("lock").keys().copied().collect();
    wait_idle(&http, base).await;
    let end = last_seq(&http, base).await;
    let _ = until_tx.send(Some(end));
    let wall = started.elapsed();
    let sent = sent.lock().expect("lock").clone();
    tally(t, followers, &sent, &ids, (since, end)).await;
    t.api_errors += errors.load(std::sync::atomic::Ordering::Relaxed);
    t.runs += ids.len() as u64;
    wall
}

fn load(c: &mut Criterion) {
    let server = Server::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("rt");
    let mut totals = Totals {
        latency_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram"),
        lag_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram"),
        api_errors: 0,
        lost: 0,
        duplicated: 0,
        runs: 0,
    };
    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(30));
    g.bench_function("1000_runs", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| rt.block_on(scenario(&server.base, &mut totals)))
                .sum()
        });
    });
    g.finish();
    let (h, lag) = (&totals.latency_us, &totals.lag_us);
    let ms = |us: u64| us as f64 / 1_000.0;
    println!(
        "load: {} runs; start-to-finish P50 {:.1} ms, P95 {:.1} ms, P99 {:.1} ms; delivery to the other {} SSE clients after the first P50 {:.1} ms, P95 {:.1} ms; API errors {}; events lost {}, duplicated {}",
        totals.runs,
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.95)),
        ms(h.value_at_quantile(0.99)),
        FOLLOWERS - 1,
        ms(lag.value_at_quantile(0.50)),
        ms(lag.value_at_quantile(0.95)),
        totals.api_errors,
        totals.lost,
        totals.duplicated,
    );
    assert_eq!(
        (totals.api_errors, totals.lost, totals.duplicated),
        (0, 0, 0),
        "errors, lost events and duplicates must all be zero"
    );
}

criterion_group!(benches, load);
criterion_main!(benches);
