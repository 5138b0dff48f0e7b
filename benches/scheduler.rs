//! Scheduling throughput: pipelines of 1,000 zero-latency `simulate` stages run through the real
//! host and the real SQLite store (every attempt's start and finish recorded, the finish
//! committed before dependents start). Reported as stage attempts per second.
//!
//! Shapes: `wide` (1,000 independent stages, concurrency 64), `layered` (10 layers of 100, each
//! stage needing two of the previous layer, concurrency 32) and `chain` (1,000 in a line, the
//! worst case: every stage waits for its predecessor's commit).

use std::fmt::Write as _;

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

fn scheduling(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let pipelines = vec![
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
    ];
    let host = rt
        .block_on(Host::start(
            Workspace::in_memory(dir.path(), pipelines),
            HostOptions::new("benchmark"),
        ))
        .expect("host");
    let mut group = c.benchmark_group("schedule_1000_stages");
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

criterion_group!(benches, scheduling);
criterion_main!(benches);
