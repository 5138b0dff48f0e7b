//! Scheduling throughput: pipelines of 1,000 zero-latency `simulate` stages run through the real
//! host and the real SQLite store (every attempt's start and finish recorded, the finish
//! committed before dependents start). Reported as stage attempts per second.
//!
//! Shapes: `wide` (1,000 independent stages, concurrency 64), `layered` (10 layers of 100, each
//! stage needing two of the previous layer, concurrency 32) and `chain` (1,000 in a line, the
//! worst case: every stage waits for its predecessor's commit).
//!
//! With `OPSDECK_BENCH_POSTGRES` set to a superuser URL (`postgres://you@127.0.0.1:5432/postgres`)
//! the same runs go through one host on a PostgreSQL store too, in a fresh database.

use std::fmt::Write as _;

#[allow(dead_code)] // only the PostgreSQL fixture is used here
mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opsdeck::host::Workspace;
use opsdeck::host::{Host, HostOptions};
use opsdeck::model::Trigger;
use opsdeck::runtime::spec::{self, Pipeline};

const STAGES: usize = 1_000;

fn pipeline(name: &str, concurrency: u32, needs: impl Fn(usize) -> Vec<usize>) -> Pipeline {
    let mut t = format!("[pipeline]\nname = \"{name}\"\nconcurrency = {concurrency}\n");
    for i in 0..STAGES {
        let list: Vec<String> = needs(i).iter().map(|j| format!("\"s{j}\"")).collect();
        let _ = write!(
            t,
            "[[stage]]\nid = \"s{i}\"\nkind = \"simulate\"\nneeds = [{}]\n",
            list.join(",")
        );
    }
    spec::parse(name, &t).expect("benchmark pipelines are valid")
}

fn pipelines() -> Vec<Pipeline> {
    vec![
        pipeline("wide", 64, |_| Vec::new()),
        pipeline("layered", 32, |i| {
            if i < 100 {
                Vec::new()
            } else {
                vec![i - 100, (i - 100 + 1) % 100 + (i / 100 - 1) * 100]
            }
        }),
        pipeline(
            "chain",
            1,
            |i| if i == 0 { Vec::new() } else { vec![i - 1] },
        ),
    ]
}

fn scheduling(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut stores = vec![("schedule_1000_stages", String::new())];
    if let Ok(admin) = std::env::var("OPSDECK_BENCH_POSTGRES") {
        stores.push((
            "schedule_1000_stages_postgres",
            common::fresh_database(&admin, &format!("opsdeck_bench_{}", std::process::id())),
        ));
    }
    for (group_name, url) in stores {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ws = Workspace::in_memory(dir.path(), pipelines());
        ws.settings.store.url = url;
        let host = rt
            .block_on(Host::start(ws, HostOptions::new("benchmark")))
            .expect("host");
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(STAGES as u64));
        group.sample_size(10);
        for name in ["wide", "layered", "chain"] {
            group.bench_function(name, |b| {
                b.to_async(&rt).iter(|| async {
                    let id = host
                        .start_run(name, &serde_json::Map::new(), Trigger::Manual)
                        .await
                        .expect("start");
                    host.wait(id).await.expect("wait")
                });
            });
        }
        group.finish();
        rt.block_on(host.shutdown());
    }
}

criterion_group!(benches, scheduling);
criterion_main!(benches);
