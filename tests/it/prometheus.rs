//! The `prometheus` canary source against a real Prometheus (Debian's `prometheus` package;
//! `.ci/run` installs it when missing) on a loopback port, scraping a small exporter this test
//! runs with per-version counters and a latency histogram.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opsdeck::host::{Host, HostOptions};
use opsdeck::model::CanaryState;

use crate::support::{TestWorkspace, free_port};

/// Latency bucket bounds of the exporter's histogram, in seconds.
const LE: [f64; 5] = [0.05, 0.1, 0.25, 0.5, 1.0];

/// One version's counters, as an instrumented service would expose them.
#[derive(Default)]
struct Counters {
    requests: u64,
    errors: u64,
    /// Requests per bucket of `LE` (and one more for +Inf), not cumulative.
    buckets: [u64; LE.len() + 1],
}

/// What the exporter serves and the traffic task moves on.
#[derive(Default)]
struct Exported {
    legacy: Counters,
    canary: Counters,
}

impl Exported {
    fn text(&self) -> String {
        let mut out = String::new();
        for (v, c) in [("legacy", &self.legacy), ("canary", &self.canary)] {
            let _ = writeln!(out, "app_requests_total{{version=\"{v}\"}} {}", c.requests);
            let _ = writeln!(out, "app_errors_total{{version=\"{v}\"}} {}", c.errors);
            let mut cumulative = 0;
            for (i, n) in c.buckets.iter().enumerate() {
                cumulative += n;
                let le = LE
                    .get(i)
                    .map_or_else(|| "+Inf".to_string(), ToString::to_string);
                let _ = writeln!(
                    out,
                    "app_latency_seconds_bucket{{version=\"{v}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "app_latency_seconds_count{{version=\"{v}\"}} {cumulative}"
            );
        }
        out
    }
}

async fn exporter(state: Arc<Mutex<Exported>>) -> SocketAddr {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let state = state.clone();
            async move { state.lock().unwrap().text() }
        }),
    );
    crate::support::serve_router(app).await
}

/// Traffic every 100 ms: legacy 20 requests with 1% errors, the canary 5 with
/// `canary_errors` percent; latencies spread over the first buckets.
fn traffic(state: Arc<Mutex<Exported>>, canary_errors: Arc<AtomicU64>) {
    tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut s = state.lock().unwrap();
            let pct = canary_errors.load(Ordering::SeqCst);
            for _ in 0..20 {
                n += 1;
                s.legacy.requests += 1;
                s.legacy.errors += u64::from(n.is_multiple_of(100));
                s.legacy.buckets[(n % 3) as usize] += 1;
            }
            for _ in 0..5 {
                n += 1;
                s.canary.requests += 1;
                s.canary.errors += u64::from(n % 100 < pct);
                s.canary.buckets[(n % 3) as usize] += 1;
            }
        }
    });
}

/// A Prometheus server with its own config and data, killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the `prometheus` binary (Debian's prometheus package; .ci/run installs it)");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until it answers and has scraped the exporter twice.
    async fn ready(&self) {
        let http = crate::support::http();
        let query = format!(
            "{}/api/v1/query?query=count_over_time(app_requests_total%5B10s%5D)",
            self.url()
        );
        let start = Instant::now();
        loop {
            if let Ok(r) = http.get(&query).send().await
                && let Ok(v) = r.json::<serde_json::Value>().await
                && v["data"]["result"].as_array().is_some_and(|a| {
                    a.iter().any(|s| {
                        s["value"][1]
                            .as_str()
                            .is_some_and(|n| n.parse::<f64>().unwrap_or(0.0) >= 3.0)
                    })
                })
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "prometheus on {} never scraped the exporter",
                self.url()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(prom: &str, pause: &str) -> String {
    format!(
        r#"[canary.pay]
source = "prometheus"
steps = [ {{weight = 20, pause = "{pause}"}}, {{weight = 100}} ]
analysis = {{ interval = "1s", min_requests = 20 }}

[canary.pay.prometheus]
url = "{prom}"
interval = "3s"
pause_after = "2s"
requests = 'sum(increase(app_requests_total{{version="{{{{version}}}}"}}[{{{{interval}}}}]))'
errors = 'sum(increase(app_errors_total{{version="{{{{version}}}}"}}[{{{{interval}}}}]))'
latency_buckets = 'sum by (le) (increase(app_latency_seconds_bucket{{version="{{{{version}}}}"}}[{{{{interval}}}}]))'
"#
    )
}

async fn wait<F: Fn(&opsdeck::model::CanaryStatus) -> bool>(host: &Host, what: &str, f: F) {
    let start = Instant::now();
    loop {
        let s = host.canary("pay").unwrap();
        if f(&s) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "never saw {what}: {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_canary_is_rolled_back_through_promql_alone() {
    let state = Arc::new(Mutex::new(Exported::default()));
    let canary_errors = Arc::new(AtomicU64::new(40));
    traffic(state.clone(), canary_errors);
    let target = exporter(state).await;
    let prom = Prometheus::start(target);
    prom.ready().await;
    let ws = TestWorkspace::new();
    ws.write("opsdeck.toml", &config(&prom.url(), "1h"));
    ws.run(&["validate", ws.path("opsdeck.toml").to_str().unwrap()])
        .expect_code(0);
    let host = Host::start(ws.open(), HostOptions::long_lived("prometheus test"))
        .await
        .unwrap();
    wait(&host, "a rollback", |s| s.state == CanaryState::RolledBack).await;
    let s = host.canary("pay").unwrap();
    let rec = s.last_action.unwrap();
    assert!(rec.reason.contains("error_rate"), "{}", rec.reason);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_gone_mid_rollout_is_shown_and_never_promotes() {
    let state = Arc::new(Mutex::new(Exported::default()));
    traffic(state.clone(), Arc::new(AtomicU64::new(1)));
    let target = exporter(state).await;
    let mut prom = Prometheus::start(target);
    prom.ready().await;
    let ws = TestWorkspace::new();
    // A short step: it would promote within seconds if its time counted without metrics.
    ws.write("opsdeck.toml", &config(&prom.url(), "12s"));
    let host = Host::start(ws.open(), HostOptions::long_lived("prometheus test"))
        .await
        .unwrap();
    wait(&host, "canary traffic counted", |s| {
        s.requests
            .get("canary")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
            > 0
    })
    .await;
    let s = host.canary("pay").unwrap();
    assert_eq!((s.state, s.step), (CanaryState::Progressing, 0), "{s:#?}");
    prom.stop();
    wait(&host, "the upstream condition", |s| {
        s.upstream
            .as_deref()
            .is_some_and(|u| u.contains("analysis paused"))
    })
    .await;
    let s = host.canary("pay").unwrap();
    assert!(
        s.upstream.as_deref().unwrap().contains("did not answer"),
        "{:?}",
        s.upstream
    );
    // Give it longer than the step's pause: it still does not promote.
    tokio::time::sleep(Duration::from_secs(14)).await;
    let s = host.canary("pay").unwrap();
    assert_eq!((s.state, s.step), (CanaryState::Progressing, 0), "{s:#?}");
    host.shutdown().await;
}
