//! Canary costs.
//!
//! - `record`: observations recorded into the per-second metrics (a latency histogram, request
//!   and error counts), in batches of 100,000 spread over seconds at 2,000 per second. Criterion
//!   reports the throughput in elements per second.
//! - `analysis_15m_1000rps`: one analysis with every detector (both checks' bounds on everything
//!   since the rollout began, the e-processes and change detectors on the last 10 s, and the
//!   three triggers) after 15 minutes at 1,000 requests per second with a 5% canary. Target:
//!   under 100 µs.
//! - `bet_1s`: the e-processes' share of one second (what runs every second between analyses).
//! - `drill_error_spike`: a whole drill of the shipped error-spike scenario.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opsdeck::canary::Rollout;
use opsdeck::canary::analysis::{self, Held};
use opsdeck::canary::config::CanaryConfig;
use opsdeck::canary::detect::Detectors;
use opsdeck::canary::metrics::Metrics;
use opsdeck::canary::source::simulate::Traffic;
use opsdeck::canary::source::simulate::{Profile, Simulate};
use opsdeck::model::Version;

fn sim() -> Simulate {
    Simulate {
        rps: 1_000.0,
        legacy: Profile {
            p50_ms: 80.0,
            p95_ms: 200.0,
            error_rate: 0.005,
        },
        canary: Profile {
            p50_ms: 80.0,
            p95_ms: 200.0,
            error_rate: 0.005,
        },
        changes: vec![],
        seed: 1,
        restart_ended: false,
    }
}

fn record(c: &mut Criterion) {
    const N: u64 = 100_000;
    let latencies: Vec<u64> = (0..N).map(|i| 20 + (i * 7_919) % 400).collect();
    let mut g = c.benchmark_group("canary");
    g.throughput(Throughput::Elements(N));
    let mut m = Metrics::new(300, 3_600);
    let mut sec = 0i64;
    g.bench_function("record", |b| {
        b.iter(|| {
            for (i, l) in latencies.iter().enumerate() {
                let v = if i % 20 == 0 {
                    Version::Canary
                } else {
                    Version::Legacy
                };
                m.record(sec + (i / 2_000) as i64, v, (*l) as f64, i % 200 == 0);
            }
            sec += (N / 2_000) as i64;
        });
    });
    g.finish();
}

fn analysis_15m(c: &mut Criterion) {
    let cfg = Arc::new(CanaryConfig::simulated("bench", sim()));
    let mut r = Rollout::new(cfg.clone(), 0, 1);
    let mut t = Traffic::new(sim(), 1);
    for s in 0..=900 {
        t.run_second(&mut r, s, s as u64);
    }
    // The detectors as they stood at the look before (10 s earlier).
    let mut before = Detectors::default();
    let _ = analysis::checks(&r.metrics, 890, &cfg, &mut before);
    c.bench_function("canary/analysis_15m_1000rps", |b| {
        b.iter(|| {
            let mut d = before;
            let mut held = Held::default();
            black_box(analysis::checks(&r.metrics, 900, &cfg, &mut d));
            black_box(analysis::triggers(&r.metrics, 900, &cfg, &mut held, 10));
        });
    });
    c.bench_function("canary/bet_1s", |b| {
        b.iter(|| {
            let mut d = before;
            d.bet_to = Some(898);
            analysis::bet(&r.metrics, 900, &cfg, &mut d);
            black_box(d)
        });
    });
    c.bench_function("canary/bounds_1s", |b| {
        b.iter(|| black_box(analysis::bounds_crossed(&r.metrics, &cfg)));
    });
}

fn drill(c: &mut Criterion) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/drills/error-spike.toml"
    );
    let Ok(s) = opsdeck::canary::drill::load(std::path::Path::new(path)) else {
        eprintln!("cannot load {path}");
        return;
    };
    c.bench_function("canary/drill_error_spike", |b| {
        b.iter(|| black_box(opsdeck::canary::drill::run(&s, 1)));
    });
}

criterion_group!(benches, record, analysis_15m, drill);
criterion_main!(benches);
