//! API costs, over real HTTP on loopback.
//!
//! - `api/runs_page`: 100 `GET /v1/runs?limit=50` requests, 4 at a time, against a store of
//!   1,000 runs. Criterion reports requests per second.
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

struct Fixture {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    host: Host,
    base: String,
    http: reqwest::Client,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = Workspace::in_memory(
        dir.path(),
        vec![spec::parse("quick", PIPELINE).expect("pipeline")],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("rt");
    let (host, base) = rt.block_on(async {
        let host = Host::start(ws, HostOptions::new("api benchmark"))
            .await
            .expect("host");
        for _ in 0..1_000 {
            let id = host
                .start_run(
                    "quick",
                    &serde_json::Map::new(),
                    opsdeck::model::Trigger::Manual,
                )
                .await
                .expect("start");
            host.wait(id).await.expect("wait");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = server::app(AppState::new(host.clone(), ServerConfig::default()));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
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

fn runs_page(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("api");
    g.throughput(Throughput::Elements(100));
    g.bench_function("runs_page", |b| {
        b.iter(|| {
            f.rt.block_on(async {
                let tasks: Vec<_> = (0..4)
                    .map(|_| {
                        let (http, url) = (f.http.clone(), format!("{}/v1/runs?limit=50", f.base));
                        tokio::spawn(async move {
                            for _ in 0..25 {
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
    let f = Arc::new(fixture());
    runs_page(c, &f);
    sse_fanout(c, &f);
}

criterion_group!(api, benches);
criterion_main!(api);
