//! API costs, over real HTTP on loopback.
//!
//! - `api/runs_page/1k` and `/100k`: 400 `GET /v1/runs?limit=50` requests, 4 clients at a
//!   time, against a store of 1,000 and of 100,000 runs. Criterion reports requests per second.
//!   Repeats of one page are answered from the page cache while nothing is written;
//!   `/100k_uncached` asks for a different page each time (a cursor deep in the list), so
//!   every request reads the store.
//! - `api/sse_fanout_100`: one run (about 10 events) delivered to 100 SSE clients: the time
//!   from starting the run until every client has seen it finish.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use opsdeck::host::Workspace;
use opsdeck::host::{Host, HostOptions};
use opsdeck::model::RunId;
use opsdeck::runtime::spec;
use opsdeck::server::{self, AppState, ServerConfig};

const PIPELINE: &str = r#"[pipeline]
name = "quick"
[[stage]]
id = "a"
kind = "simulate"
[[stage]]
id = "b"
kind = "simulate"
needs = ["a"]
"#;

mod common;

struct Fixture {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    host: Host,
    base: String,
    http: reqwest::Client,
}

/// A server over a store of `runs` finished runs (plus the `quick` pipeline to start more).
fn fixture(runs: i64) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let filled = common::populate(dir.path(), runs);
    let mut pipelines = common::pipelines();
    pipelines.push(spec::parse("quick", PIPELINE).expect("pipeline"));
    let ws = Workspace::in_memory(dir.path(), pipelines);
    drop(filled);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("rt");
    let (host, base) = rt.block_on(async {
        let host = Host::start(ws, HostOptions::new("api benchmark"))
            .await
            .expect("host");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = ServerConfig {
            sse_per_token: 1_000,
            sse_total: 1_000,
            read_rate_limit: 10_000_000,
            ..ServerConfig::default()
        };
        tokio::spawn(server::serve(listener, AppState::new(host.clone(), config)));
        (host, format!("http://{addr}"))
    });
    Fixture {
        _dir: dir,
        rt,
        host,
        base,
        http: opsdeck::runtime::stage::http_client(),
    }
}

fn runs_page(c: &mut Criterion, f: &Fixture, size: &str, distinct: bool) {
    let mut g = c.benchmark_group("api/runs_page");
    g.throughput(Throughput::Elements(400));
    g.bench_function(size, |b| {
        b.iter(|| {
            f.rt.block_on(async {
                let tasks: Vec<_> = (0..4u64)
                    .map(|t| {
                        let (http, base) = (f.http.clone(), f.base.clone());
                        tokio::spawn(async move {
                            for i in 0..100u64 {
                                let url = if distinct {
                                    let cursor = 1_000 + (t * 100 + i) * 211 % 98_000;
                                    format!("{base}/v1/runs?limit=50&cursor={cursor}")
                                } else {
                                    format!("{base}/v1/runs?limit=50")
                                };
                                let r = http.get(&url).send().await.expect("send");
                                assert!(r.status().is_success());
                                let _ = r.bytes().await.expect("body");
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("task");
                }
            });
        });
    });
    g.finish();
}

fn sse_fanout(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("api");
    g.sample_size(10);
    g.bench_function("sse_fanout_100", |b| {
        b.iter(|| {
            f.rt.block_on(async {
                let since = f.host.overview().await.expect("overview").last_seq;
                let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(100);
                let clients: Vec<_> = (0..100)
                    .map(|_| {
                        let (http, url, ready) = (
                            f.http.clone(),
                            format!("{}/v1/events?since={since}", f.base),
                            ready_tx.clone(),
                        );
                        tokio::spawn(async move {
                            let resp = http.get(&url).send().await.expect("sse");
                            let _ = ready.send(()).await;
                            let mut body = resp.bytes_stream();
                            let mut text = String::new();
                            while let Some(Ok(chunk)) = body.next().await {
                                text.push_str(&String::from_utf8_lossy(&chunk));
                                if text.contains("event: run_finished") {
                                    return;
                                }
                            }
                        })
                    })
                    .collect();
                for _ in 0..100 {
                    ready_rx.recv().await.expect("ready");
                }
                let id: RunId = f
                    .host
                    .start_run(
                        "quick",
                        &serde_json::Map::new(),
                        opsdeck::model::Trigger::Manual,
                    )
                    .await
                    .expect("start");
                for c in clients {
                    tokio::time::timeout(Duration::from_secs(30), c)
                        .await
                        .expect("in time")
                        .expect("client");
                }
                let _ = id;
            });
        });
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let small = Arc::new(fixture(1_000));
    runs_page(c, &small, "1k", false);
    sse_fanout(c, &small);
    drop(small);
    let large = fixture(100_000);
    runs_page(c, &large, "100k", false);
    runs_page(c, &large, "100k_uncached", true);
}

criterion_group!(api, benches);
criterion_main!(api);
