//! Property: whatever the DAG (and whatever order its stages are written in), every stage
//! starts only after every stage it needs has finished, and every stage runs exactly once.

use std::fmt::Write as _;

use opsdeck::host::Workspace;
use opsdeck::host::{Host, HostOptions};
use opsdeck::model::{EventKind, RunStatus};
use opsdeck::runtime::spec;
use proptest::prelude::*;

/// A random DAG: stage `i` may need any stage `j < i` (so it is acyclic), written in a shuffled
/// order so definition order says nothing about run order.
fn dags() -> impl Strategy<Value = (Vec<Vec<usize>>, Vec<usize>, u32)> {
    (2usize..14).prop_flat_map(|n| {
        let needs = (0..n)
            .map(|i| proptest::sample::subsequence((0..i).collect::<Vec<_>>(), 0..=i.min(3)))
            .collect::<Vec<_>>();
        (
            needs,
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            1u32..5,
        )
    })
}

fn pipeline_toml(needs: &[Vec<usize>], order: &[usize], concurrency: u32) -> String {
    let mut t = format!("[pipeline]\nname = \"dag\"\nconcurrency = {concurrency}\n");
    for &i in order {
        let list: Vec<String> = needs[i].iter().map(|j| format!("\"s{j}\"")).collect();
        let _ = write!(
            t,
            "[[stage]]\nid = \"s{i}\"\nkind = \"simulate\"\nneeds = [{}]\n",
            list.join(", ")
        );
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn stages_run_in_dependency_order((needs, order, concurrency) in dags()) {
        let toml = pipeline_toml(&needs, &order, concurrency);
        let pipeline = spec::parse("dag.toml", &toml).expect("generated pipelines are valid");
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let events = rt.block_on(async {
            let host = Host::start(Workspace::in_memory(dir.path(), vec![pipeline]), HostOptions::new("proptest")).await.unwrap();
            let run = crate::support::run_to_end(&host, "dag").await;
            assert_eq!(run.status, RunStatus::Succeeded);
            let events = crate::support::events_of(&host, run.id).await;
            host.shutdown().await;
            events
        });
        let seq_of = |kind: EventKind, stage: usize| -> Vec<u64> {
            let id = format!("s{stage}");
            events.iter().filter(|e| e.kind == kind && e.stage.as_deref() == Some(id.as_str())).map(|e| e.seq).collect()
        };
        for (i, deps) in needs.iter().enumerate() {
            let started = seq_of(EventKind::StageStarted, i);
            prop_assert_eq!(started.len(), 1, "stage s{} ran once", i);
            for &j in deps {
                let finished = seq_of(EventKind::StageFinished, j);
                prop_assert!(finished[0] < started[0], "s{} started before its need s{} finished", i, j);
            }
        }
        // Read in sequence order, the log never shows more stages running than the pipeline's
        // concurrency: a stage that a freed slot let start is numbered after the end that freed it.
        let mut running = 0_u32;
        for e in &events {
            match e.kind {
                EventKind::StageStarted => {
                    running += 1;
                    prop_assert!(running <= concurrency, "event {} shows {} stages running at once, over the pipeline's concurrency of {}", e.seq, running, concurrency);
                }
                EventKind::StageFinished => {
                    let left = running.checked_sub(1);
                    prop_assert!(left.is_some(), "event {} ends a stage while none is running", e.seq);
                    running = left.unwrap_or(0);
                }
                _ => {}
            }
        }
    }
}
