//! What several workers on one PostgreSQL store buy, beside one host on SQLite: persisted
//! stage attempts per second with one, two and three workers (hosts in this process, each
//! with its own workspace, sharing the database), on two shapes:
//!
//! - `zero`: 60 runs of 20 zero-latency `simulate` stages (what the store costs);
//! - `wait20`: 240 runs of one stage that waits 20 ms, at most 16 runs in flight per worker
//!   (what adding workers buys when the work, not the store, is the limit);
//! - `wait20_chain`: 96 runs of four such stages in a line, with the same limit: the same
//!   work per attempt, with a run's own bookkeeping (its claim, start and end) shared by four
//!   attempts instead of carried by one.
//!
//! Needs `OPSDECK_BENCH_POSTGRES` (a superuser URL such as `postgres://you@127.0.0.1:5432/postgres`);
//! without it only the SQLite rows run.
//!
//! `OPSDECK_BENCH_PAIRS=<n>` adds `n` pairs of batches of each waiting shape, one worker then three (or
//! three then one), taken one right after the other on two databases whose workers are all up
//! at once, and prints each pair's ratio, their median and each side's median batch: a
//! machine whose speed drifts moves the two halves of a pair together, where criterion's
//! groups are minutes apart. A value that is not a whole number from 1 to 3600 is refused
//! (exit code 2) before anything is measured.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

#[allow(dead_code)] // only the PostgreSQL fixture is used here
mod common;

use criterion::{Criterion, Throughput, criterion_group};
use opsdeck::host::{Host, HostOptions, Workspace};
use opsdeck::model::{EventKind, Trigger};
use opsdeck::runtime::spec::{self, Pipeline};

/// Each shape: its pipeline's name, the runs in one batch, and the stages in one run. The
/// waiting shapes' batches are whole numbers of waves for one worker's 16 slots and three
/// workers' 48 (and for two workers' 32 in `wait20_chain`; `wait20` keeps the 240 runs its
/// earlier figures were measured with), so the side compared with one worker does not wait on a
/// last, part-filled wave.
const SHAPES: [(&str, usize, usize); 3] = [
    ("zero", 60, 20),
    ("wait20", 240, 1),
    ("wait20_chain", 96, 4),
];

fn pipelines() -> Vec<Pipeline> {
    let mut zero = String::from("[pipeline]\nname = \"zero\"\nconcurrency = 20\n");
    for i in 0..20 {
        let _ = write!(zero, "[[stage]]\nid = \"s{i}\"\nkind = \"simulate\"\n");
    }
    let wait = "[pipeline]\nname = \"wait20\"\n[[stage]]\nid = \"w\"\nkind = \"simulate\"\nlatency = { p50_ms = 20, p95_ms = 20 }\n";
    let mut chain = String::from("[pipeline]\nname = \"wait20_chain\"\n");
    for i in 0..4 {
        let _ = write!(
            chain,
            "[[stage]]\nid = \"c{i}\"\nkind = \"simulate\"\nlatency = {{ p50_ms = 20, p95_ms = 20 }}\n"
        );
        if i > 0 {
            let _ = writeln!(chain, "needs = [\"c{}\"]", i - 1);
        }
    }
    vec![
        spec::parse("zero", &zero).expect("zero"),
        spec::parse("wait20", wait).expect("wait20"),
        spec::parse("wait20_chain", &chain).expect("wait20_chain"),
    ]
}

/// `n` hosts on the store at `url` (SQLite when empty: then `n` is 1).
async fn hosts(dirs: &[tempfile::TempDir], url: &str) -> Vec<Host> {
    let mut out = Vec::new();
    for d in dirs {
        let mut ws = Workspace::in_memory(d.path(), pipelines());
        ws.settings.store.url = url.to_string();
        ws.settings.worker.max_in_flight = 16;
        out.push(
            Host::start(ws, HostOptions::long_lived("benchmark"))
                .await
                .expect("host"),
        );
    }
    out
}

/// Starts `runs` runs of `pipeline` spread over `hosts` and waits for all: the time taken.
/// Every run's end reaches every worker's live stream, whichever worker drove it.
async fn batch(hosts: &[Host], pipeline: &str, runs: usize) -> Duration {
    let mut live = hosts[0].subscribe();
    let start = Instant::now();
    // Submitted as many clients would, all at once, spread over the workers.
    let params = serde_json::Map::new();
    let starts =
        (0..runs).map(|i| hosts[i % hosts.len()].start_run(pipeline, &params, Trigger::Manual));
    let mut ids: std::collections::HashSet<_> = futures::future::join_all(starts)
        .await
        .into_iter()
        .map(|r| r.expect("start"))
        .collect();
    while !ids.is_empty() {
        match live.recv().await {
            Ok(e) if e.kind == EventKind::RunFinished => {
                if let Some(id) = e.run_id {
                    ids.remove(&id);
                }
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                // Fell behind: ask the store which are done.
                let mut left = std::collections::HashSet::new();
                for id in ids {
                    if !hosts[0].run(id).await.expect("run").status.is_finished() {
                        left.insert(id);
                    }
                }
                ids = left;
            }
            Err(e) => panic!("the live stream ended: {e}"),
        }
    }
    start.elapsed()
}

fn workers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut setups: Vec<(String, String, usize)> = vec![("sqlite".into(), String::new(), 1)];
    if let Ok(admin) = std::env::var("OPSDECK_BENCH_POSTGRES") {
        for n in 1..=3 {
            let url = common::fresh_database(
                &admin,
                &format!("opsdeck_bench_w{n}_{}", std::process::id()),
            );
            setups.push((format!("postgres_{n}_workers"), url, n));
        }
    }
    for (label, url, n) in setups {
        let dirs: Vec<_> = (0..n)
            .map(|_| tempfile::tempdir().expect("tempdir"))
            .collect();
        let hs = rt.block_on(hosts(&dirs, &url));
        for (shape, runs, stages) in SHAPES {
            let mut group = c.benchmark_group(format!("workers_{shape}"));
            group.throughput(Throughput::Elements((runs * stages) as u64));
            group.sample_size(10);
            group.bench_function(&label, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += rt.block_on(batch(&hs, shape, runs));
                    }
                    total
                });
            });
            group.finish();
        }
        for h in hs {
            rt.block_on(h.shutdown());
        }
    }
}

/// The paired measurement of the waiting shapes (see the module's documentation).
fn pairs(admin: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sides: Vec<(Vec<tempfile::TempDir>, Vec<Host>)> = [1_usize, 3]
        .into_iter()
        .map(|workers| {
            let url = common::fresh_database(
                admin,
                &format!("opsdeck_bench_pair{workers}_{}", std::process::id()),
            );
            let dirs: Vec<_> = (0..workers)
                .map(|_| tempfile::tempdir().expect("tempdir"))
                .collect();
            let hs = rt.block_on(hosts(&dirs, &url));
            (dirs, hs)
        })
        .collect();
    // The shapes whose stages wait.
    for (shape, runs, _) in SHAPES.into_iter().filter(|(shape, ..)| *shape != "zero") {
        // Warmed as criterion warms: statements prepared, tables past their first statistics.
        for (_, hs) in &sides {
            for _ in 0..3 {
                rt.block_on(batch(hs, shape, runs));
            }
        }
        let mut ratios = Vec::with_capacity(n);
        let mut times: [Vec<Duration>; 2] = [Vec::with_capacity(n), Vec::with_capacity(n)];
        for i in 0..n {
            // Which side goes first alternates, so that neither always follows the other.
            let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
            let mut took = [Duration::ZERO; 2];
            for side in order {
                took[side] = rt.block_on(batch(&sides[side].1, shape, runs));
            }
            let ratio = took[0].as_secs_f64() / took[1].as_secs_f64();
            println!(
                "workers_{shape} pair {}: one worker {:.1} ms, three workers {:.1} ms, ratio {ratio:.2}",
                i + 1,
                took[0].as_secs_f64() * 1e3,
                took[1].as_secs_f64() * 1e3,
            );
            ratios.push(ratio);
            for (side, t) in took.into_iter().enumerate() {
                times[side].push(t);
            }
        }
        ratios.sort_by(f64::total_cmp);
        for t in &mut times {
            t.sort();
        }
        if let (Some(lo), Some(hi)) = (ratios.first(), ratios.last()) {
            println!(
                "workers_{shape} pairs: three workers against one, median {:.2} (from {lo:.2} to {hi:.2}) over {n} pairs; median batch: one worker {:.1} ms, three workers {:.1} ms",
                ratios[ratios.len() / 2],
                times[0][n / 2].as_secs_f64() * 1e3,
                times[1][n / 2].as_secs_f64() * 1e3,
            );
        }
    }
    for (_, hs) in sides {
        for h in hs {
            rt.block_on(h.shutdown());
        }
    }
}

criterion_group!(benches, workers);

/// Most pairs of each shape one run takes (about 80 minutes at 1.3 s for a pair of each):
/// a typo such as an extra zero should not tie up the machine for a day.
const MAX_PAIRS: usize = 3600;

/// `OPSDECK_BENCH_PAIRS` read before any measuring starts, so a bad value costs nothing:
/// `Ok(None)` when unset, a sentence naming the variable and the valid range otherwise.
fn pairs_wanted() -> Result<Option<(String, usize)>, String> {
    let Some(raw) = std::env::var_os("OPSDECK_BENCH_PAIRS") else {
        return Ok(None);
    };
    let raw = raw.to_string_lossy();
    let n = raw
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_PAIRS).contains(n))
        .ok_or_else(|| {
            format!(
                "OPSDECK_BENCH_PAIRS is {raw:?}: it must be a whole number from 1 to {MAX_PAIRS} (the number of pairs)"
            )
        })?;
    let admin = std::env::var("OPSDECK_BENCH_POSTGRES").map_err(|_| {
        "OPSDECK_BENCH_PAIRS needs OPSDECK_BENCH_POSTGRES (a superuser URL such as postgres://you@127.0.0.1:5432/postgres)"
            .to_string()
    })?;
    Ok(Some((admin, n)))
}

fn main() {
    let paired = match pairs_wanted() {
        Ok(p) => p,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::exit(2);
        }
    };
    benches();
    if let Some((admin, n)) = paired {
        pairs(&admin, n);
    }
    Criterion::default().configure_from_args().final_summary();
}
