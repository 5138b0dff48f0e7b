//! Regression analysis costs.
//!
//! - `compare/1000_stages`: two runs of 1,000 stages whose outputs total 1 MiB of JSON per run
//!   (about 1 KiB each: nested objects and arrays), a tenth of them changed.
//! - `compare/one_1mib_output`: one stage whose output is a 1 MiB JSON array of objects,
//!   matched by key, with three items changed.
//! - `lens/frame_200_stages`: a frame of the Pipelines pane drawing a 200-stage DAG at 200x60
//!   (the layout is made when the data arrives; a frame copies the visible part).

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use opsdeck::model::compare::{CompareSettings, compare};
use opsdeck::model::lens::{AttemptRow, StageInfo, stats};
use opsdeck::model::{
    Attempt, AttemptStatus, Overview, PipelineInfo, Run, RunId, RunStatus, StageRecord,
    StageStatus, Timestamp, Trigger,
};
use opsdeck::tui::action::Action;
use opsdeck::tui::app::{App, Config};
use opsdeck::tui::request::Msg;
use opsdeck::tui::theme::{ColorDepth, Theme};
use opsdeck::tui::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use serde_json::{Value, json};

fn run(id: i64, outputs: Vec<(String, Value)>) -> Run {
    let version = u32::try_from(id % 2).unwrap_or(0) + 1;
    Run {
        id: RunId(id),
        pipeline: "big".into(),
        status: RunStatus::Succeeded,
        trigger: Trigger::Manual,
        params: json!({}),
        created_at: Timestamp::from_millis(0),
        started_at: Some(Timestamp::from_millis(0)),
        finished_at: Some(Timestamp::from_millis(60_000)),
        duration_ms: Some(60_000),
        stages: outputs
            .into_iter()
            .enumerate()
            .map(|(i, (id, out))| StageRecord {
                needs: if i == 0 {
                    vec![]
                } else {
                    vec![format!("s{}", i - 1)]
                },
                id,
                kind: "command".into(),
                status: StageStatus::Succeeded,
                attempts: vec![Attempt {
                    n: 1,
                    status: AttemptStatus::Succeeded,
                    started_at: Timestamp::from_millis(i as i64 * 50),
                    finished_at: Some(Timestamp::from_millis(i as i64 * 50 + 40)),
                    duration_ms: Some(40),
                    input: Value::Null,
                    output: Some(out),
                    output_truncated: false,
                    output_bytes: None,
                    stderr: None,
                    error: None,
                    assets: if i == 0 {
                        BTreeMap::from([("rules".to_string(), version)])
                    } else {
                        BTreeMap::new()
                    },
                }],
            })
            .collect(),
        overrides: BTreeMap::new(),
        test: false,
        owner: None,
    }
}

/// About 1 KiB of JSON for stage `i`, with `changed` altering one nested value.
fn kib(i: usize, changed: bool) -> Value {
    json!({
        "rows": 4000 + i,
        "rejected": if changed { 31 + i } else { 30 + i },
        "schema": format!("orders_v{}", i % 7),
        "items": (0..10).map(|k| json!({"sku": format!("sku-{i}-{k}"), "qty": k, "price": 9.99 + f64::from(k),
            "tags": ["a", "b", "c"], "note": "a line of text to make the item heavier than it is"})).collect::<Vec<_>>(),
    })
}

fn compares(c: &mut Criterion) {
    let mut g = c.benchmark_group("compare");
    g.sample_size(20);
    let base = run(
        1,
        (0..1000)
            .map(|i| (format!("s{i}"), kib(i, false)))
            .collect(),
    );
    let cand = run(
        2,
        (0..1000)
            .map(|i| (format!("s{i}"), kib(i, i % 10 == 0)))
            .collect(),
    );
    let bytes: usize = base
        .stages
        .iter()
        .map(|s| {
            s.attempts[0]
                .output
                .as_ref()
                .map_or(0, |o| o.to_string().len())
        })
        .sum();
    println!("compare/1000_stages: {bytes} bytes of output per run");
    let settings = CompareSettings::default();
    g.bench_function("1000_stages", |b| {
        b.iter(|| compare(&base, &cand, &settings));
    });

    let items = |changed: bool| -> Value {
        Value::Array(
            (0..13_000)
                .map(|k| {
                    json!({"id": k, "price": if changed && k % 5000 == 0 { 2.0 } else { 1.0 },
            "name": format!("item number {k}"), "tags": ["x", "y"], "stock": k * 3})
                })
                .collect(),
        )
    };
    let big_a = run(3, vec![("s0".into(), items(false))]);
    let big_b = run(4, vec![("s0".into(), items(true))]);
    println!(
        "compare/one_1mib_output: {} bytes",
        items(false).to_string().len()
    );
    let mut keyed = CompareSettings::default();
    keyed.keys.insert("s0".into(), "id".into());
    g.bench_function("one_1mib_output", |b| {
        b.iter(|| compare(&big_a, &big_b, &keyed));
    });
    g.finish();
}

fn lens_frame(c: &mut Criterion) {
    // 200 stages in 20 columns of 10, each needing two of the column before.
    let graph: Vec<StageInfo> = (0..200)
        .map(|i| StageInfo {
            id: format!("stage-{i:03}"),
            kind: "simulate".into(),
            needs: if i < 10 {
                vec![]
            } else {
                vec![
                    format!("stage-{:03}", i - 10),
                    format!("stage-{:03}", i - 10 + (i + 1) % 10 - i % 10),
                ]
            },
            assets: if i % 17 == 0 {
                vec!["rules".into()]
            } else {
                vec![]
            },
            breaker: None,
        })
        .collect();
    let rows: Vec<AttemptRow> = (1..=20)
        .flat_map(|r| {
            graph.iter().map(move |s| AttemptRow {
                run: RunId(r),
                stage: s.id.clone(),
                n: 1,
                status: AttemptStatus::Succeeded,
                started_at: Timestamp::from_millis(r * 1000),
                duration_ms: Some(100 + r * 3),
                error: None,
                stage_status: StageStatus::Succeeded,
            })
        })
        .collect();
    let ids: Vec<String> = graph.iter().map(|s| s.id.clone()).collect();
    let st = stats("big", &ids, (1..=20).rev().map(RunId).collect(), &rows);
    let config = Config::with_theme(Theme::load("dark", None, ColorDepth::Ansi256).expect("theme"));
    let now = Utc
        .with_ymd_and_hms(2026, 11, 30, 12, 0, 0)
        .single()
        .expect("date");
    let mut app = App::new(config, Rect::new(0, 0, 200, 60), now);
    app.apply(Msg::Overview(Overview {
        backend: "embedded".into(),
        workspace: "/bench".into(),
        pipelines: vec![PipelineInfo {
            name: "big".into(),
            description: None,
            schedule: None,
            stages: ids,
            params: serde_json::Map::new(),
            graph,
        }],
        dlq_depth: 0,
        breakers: vec![],
        last_seq: 0,
        running: 0,
        role: None,
        workers: None,
    }));
    app.on_action(Action::PanePipelines);
    app.apply(Msg::PipelineStats(Box::new(st)));
    let mut term = Terminal::new(TestBackend::new(200, 60)).expect("terminal");
    let mut g = c.benchmark_group("lens");
    g.bench_function("frame_200_stages", |b| {
        b.iter(|| {
            // Move the selection so each frame scrolls and redraws.
            app.on_action(Action::Down);
            term.draw(|f| view::render(f, &app)).expect("draw");
        });
    });
    g.finish();
}

criterion_group!(benches, compares, lens_frame);
criterion_main!(benches);
