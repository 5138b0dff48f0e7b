//! Snapshot rendering: a 200x60 screen (the pipeline lens of a 200-stage DAG: boxes, edges and
//! text in many styles) written in each format. The screen is drawn once; each iteration turns
//! its cells into the file.

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use opsdeck::model::lens::{AttemptRow, StageInfo, stats};
use opsdeck::model::{AttemptStatus, Overview, PipelineInfo, RunId, StageStatus, Timestamp};
use opsdeck::tui::action::Action;
use opsdeck::tui::app::{App, Config};
use opsdeck::tui::headless;
use opsdeck::tui::request::Msg;
use opsdeck::tui::snapshot::{Format, Page, render};
use opsdeck::tui::theme::{ColorDepth, Theme};
use ratatui::layout::Rect;

fn screen() -> (ratatui::buffer::Buffer, Theme) {
    let graph: Vec<StageInfo> = (0..200)
        .map(|i| StageInfo {
            id: format!("stage-{i:03}"),
            kind: "simulate".into(),
            needs: if i < 10 {
                vec![]
            } else {
                vec![format!("stage-{:03}", i - 10)]
            },
            assets: if i % 17 == 0 {
                vec!["rules".into()]
            } else {
                vec![]
            },
            breaker: None,
        })
        .collect();
    let ids: Vec<String> = graph.iter().map(|s| s.id.clone()).collect();
    let rows: Vec<AttemptRow> = graph
        .iter()
        .map(|s| AttemptRow {
            run: RunId(1),
            stage: s.id.clone(),
            n: 1,
            status: AttemptStatus::Succeeded,
            started_at: Timestamp::from_millis(0),
            duration_ms: Some(120),
            error: None,
            stage_status: StageStatus::Succeeded,
        })
        .collect();
    let theme = Theme::load("light", None, ColorDepth::TrueColor).expect("theme");
    let config = Config::with_theme(theme.clone());
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
            stages: ids.clone(),
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
    app.apply(Msg::PipelineStats(Box::new(stats(
        "big",
        &ids,
        vec![RunId(1)],
        &rows,
    ))));
    (headless::draw(&app), theme)
}

fn formats(c: &mut Criterion) {
    let (buffer, theme) = screen();
    let page = Page {
        buffer: &buffer,
        theme: &theme,
        title: "opsdeck · bench".into(),
    };
    let mut g = c.benchmark_group("snapshot_200x60");
    for (name, f) in [
        ("svg", Format::Svg),
        ("html", Format::Html),
        ("ansi", Format::Ansi),
        ("txt", Format::Txt),
        ("png", Format::Png),
    ] {
        if f == Format::Png {
            g.sample_size(20);
        }
        g.bench_function(name, |b| b.iter(|| render(f, &page, 1.0).expect("render")));
    }
    g.finish();
}

criterion_group!(benches, formats);
criterion_main!(benches);
