//! Dashboard costs.
//!
//! - `frame/*`: drawing each pane at 200x60 from a store holding 100,000 runs (the runs pane
//!   only ever holds a window of them), through ratatui's buffer diff.
//! - `runs_page/*`: the backend query the runs pane makes, near the top and deep in the list.
//! - bytes: what the dashboard writes to the terminal over 60 s at 120x40, idle (only the clock
//!   moves) and busy (10 run events a second), through the real crossterm backend. Printed,
//!   since it is a count, not a time.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use criterion::{Criterion, criterion_group};
use opsdeck::client::{Backend, Embedded, StreamItem};
use opsdeck::host::{Host, HostOptions};
use opsdeck::model::{
    Event, EventKind, Page, RunId, RunQuery, RunStatus, RunSummary, Timestamp, Trigger,
};
use opsdeck::tui::action::Action;
use opsdeck::tui::app::{App, Config};
use opsdeck::tui::keymap::Keymap;
use opsdeck::tui::prepare::prepare_io;
use opsdeck::tui::request::Msg;
use opsdeck::tui::theme::{ColorDepth, Theme};
use opsdeck::tui::view;
use ratatui::Terminal;
use ratatui::backend::{CrosstermBackend, TestBackend};
use ratatui::layout::Rect;

mod common;

const RUNS: i64 = 100_000;

fn config() -> Config {
    Config {
        theme: Theme::load("dark", None, ColorDepth::Ansi256).expect("theme"),
        keymap: Keymap::builtin_default(),
        mouse: false,
        theme_dir: None,
        depth: ColorDepth::Ansi256,
        no_color: false,
        label: None,
        read_only: false,
        reports_dir: None,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    host: Host,
    backend: Arc<dyn Backend>,
    real_run: RunId,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = common::populate(dir.path(), RUNS);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("rt");
    let host = rt
        .block_on(Host::start(ws, HostOptions::new("benchmark")))
        .expect("host");
    let backend: Arc<dyn Backend> = Arc::new(Embedded::new(host.clone()));
    let real_run = rt.block_on(async {
        for _ in 0..3 {
            let id = host
                .start_run(
                    "partner-sync",
                    &serde_json::Map::new(),
                    opsdeck::model::Trigger::Manual,
                )
                .await
                .expect("start");
            host.wait(id).await.expect("wait");
        }
        let id = host
            .start_run(
                "checkout-etl",
                &serde_json::Map::new(),
                opsdeck::model::Trigger::Manual,
            )
            .await
            .expect("start");
        host.wait(id).await.expect("wait");
        id
    });
    Fixture {
        _dir: dir,
        rt,
        host,
        backend,
        real_run,
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 18, 0, 0)
        .single()
        .expect("date")
}

/// An app filled from the real backend, as the worker would fill it.
fn loaded_app(f: &Fixture, w: u16, h: u16) -> App {
    let mut app = App::new(config(), Rect::new(0, 0, w, h), now());
    let _ = app.take_requests();
    let b = &f.backend;
    let (overview, page, dlq, events, run, io) = f.rt.block_on(async {
        let overview = b.overview().await.expect("overview");
        let page = b
            .runs(RunQuery {
                limit: 174,
                ..RunQuery::default()
            })
            .await
            .expect("runs");
        let dlq = b
            .dlq(opsdeck::model::DlqQuery {
                limit: opsdeck::model::MAX_DLQ_LIMIT,
                ..Default::default()
            })
            .await
            .expect("dlq");
        let events = b.recent_events(500).await.expect("events");
        let run = b.run(f.real_run).await.expect("run");
        let io = b.stage_io(f.real_run, "extract").await.expect("io");
        (overview, page, dlq, events, run, io)
    });
    assert_eq!(page.total, RUNS as u64 + 4);
    let tag = app.panes.runs.list.tag;
    app.apply(Msg::Overview(overview));
    app.apply(Msg::Stream(StreamItem::Connected(true)));
    app.apply(Msg::Runs {
        tag,
        offset: 0,
        page,
    });
    app.apply(Msg::Dlq(dlq));
    app.apply(Msg::RecentEvents(events));
    app.open_run(f.real_run, opsdeck::tui::panes::PaneId::Runs);
    app.apply(Msg::Run(Box::new(run)));
    app.panes.runs.detail = None;
    app.open_stage(
        opsdeck::tui::panes::stage::Target {
            run: f.real_run,
            pipeline: "checkout-etl".into(),
            stage: "extract".into(),
        },
        opsdeck::tui::panes::PaneId::Runs,
    );
    app.apply(Msg::StageIo(Box::new(prepare_io(io))));
    let _ = app.take_requests();
    app
}

fn frames(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("frame_200x60");
    for (name, action) in [
        ("runs", Action::PaneRuns),
        ("run_detail", Action::Open),
        ("stage_io", Action::PaneStage),
        ("dlq", Action::PaneDlq),
        ("events", Action::PaneEvents),
        ("help", Action::Help),
    ] {
        let mut app = loaded_app(&f, 200, 60);
        app.on_action(Action::PaneRuns);
        if name == "run_detail" {
            app.open_run(f.real_run, opsdeck::tui::panes::PaneId::Runs);
            let run = f.rt.block_on(f.backend.run(f.real_run)).expect("run");
            app.apply(Msg::Run(Box::new(run)));
        } else {
            app.on_action(action);
        }
        let mut term = Terminal::new(TestBackend::new(200, 60)).expect("terminal");
        group.bench_function(name, |b| {
            b.iter(|| {
                term.draw(|frame| view::render(frame, &app)).expect("draw");
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("runs_page_100k");
    for (name, offset) in [("top", 0u64), ("middle", 50_000)] {
        group.bench_function(name, |b| {
            b.to_async(&f.rt).iter(|| async {
                let q = RunQuery {
                    offset,
                    limit: 174,
                    ..RunQuery::default()
                };
                f.backend.runs(q).await.expect("page")
            });
        });
    }
    group.finish();
    f.rt.block_on(f.host.shutdown());
}

/// Counts what is written to the terminal.
#[derive(Clone, Default)]
struct Counter(Arc<AtomicU64>);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn summary(id: i64, status: RunStatus, start: DateTime<Utc>, done: u32) -> RunSummary {
    let started = Timestamp::from_datetime(start);
    RunSummary {
        id: RunId(id),
        pipeline: ["checkout-etl", "partner-sync", "daily-report"][(id % 3) as usize].into(),
        status,
        trigger: Trigger::Schedule,
        created_at: started,
        started_at: Some(started),
        finished_at: status
            .is_finished()
            .then(|| Timestamp::from_millis(started.millis() + 6_000)),
        duration_ms: status.is_finished().then_some(6_000),
        stages_total: 5,
        stages_done: done,
        stages_succeeded: done,
        stages_failed: 0,
        test: false,
    }
}

/// Drives an app for 60 simulated seconds at 120x40, drawing whenever it is dirty (the frame
/// limiter never binds at these rates), and returns the bytes written to the terminal.
fn bytes_over_a_minute(events_per_second: i64) -> u64 {
    let counter = Counter::default();
    let mut term = Terminal::new(CrosstermBackend::new(counter.clone())).expect("terminal");
    term.resize(Rect::new(0, 0, 120, 40)).expect("resize");
    let t0 = now();
    let mut app = App::new(config(), Rect::new(0, 0, 120, 40), t0);
    let _ = app.take_requests();
    let mut runs: Vec<RunSummary> = (1..=60)
        .rev()
        .map(|id| {
            summary(
                id,
                RunStatus::Succeeded,
                t0 - chrono::Duration::seconds((61 - id) * 30),
                5,
            )
        })
        .collect();
    let mut next_id = 61;
    let mut seq = 1;
    let page = |runs: &[RunSummary]| Page {
        items: runs.to_vec(),
        next: None,
        total: runs.len() as u64,
    };
    let tag = app.panes.runs.list.tag;
    app.apply(Msg::Runs {
        tag,
        offset: 0,
        page: page(&runs),
    });
    app.apply(Msg::Stream(StreamItem::Connected(true)));
    term.draw(|f| view::render(f, &app)).expect("draw");
    counter.0.store(0, Ordering::Relaxed);
    for s in 1..=60i64 {
        let now = t0 + chrono::Duration::seconds(s);
        let mut dirty = app.tick(now);
        for k in 0..events_per_second {
            // A new run every 3 s; the others advance a stage, and finish after 5 stages.
            if k == 0 && s % 3 == 0 {
                runs.insert(0, summary(next_id, RunStatus::Running, now, 0));
                next_id += 1;
            } else if let Some(r) = runs.iter_mut().find(|r| r.status == RunStatus::Running) {
                r.stages_done += 1;
                r.stages_succeeded += 1;
                if r.stages_done == 5 {
                    r.status = RunStatus::Succeeded;
                    r.finished_at = Some(Timestamp::from_datetime(now));
                    r.duration_ms = r
                        .started_at
                        .map(|st| Timestamp::from_datetime(now).millis_since(st));
                }
            }
            let e = Event {
                seq,
                at: Timestamp::from_datetime(now),
                kind: EventKind::StageFinished,
                run_id: Some(runs[0].id),
                stage: Some("x".into()),
                data: serde_json::json!({}),
            };
            seq += 1;
            app.apply(Msg::Stream(StreamItem::Event(Arc::new(e))));
            dirty = true;
        }
        if events_per_second > 0 {
            // The refresh asks for the window; answer it as the backend would.
            app.refresh();
            for req in app.take_requests() {
                if let opsdeck::tui::request::Request::Runs { tag, .. } = req {
                    app.apply(Msg::Runs {
                        tag,
                        offset: 0,
                        page: page(&runs),
                    });
                }
            }
        }
        if dirty {
            term.draw(|f| view::render(f, &app)).expect("draw");
        }
    }
    counter.0.load(Ordering::Relaxed)
}

fn bytes(_: &mut Criterion) {
    let idle = bytes_over_a_minute(0);
    let busy = bytes_over_a_minute(10);
    println!(
        "terminal_bytes_120x40/idle: {idle} bytes in 60 s = {:.1} bytes/s",
        idle as f64 / 60.0
    );
    println!(
        "terminal_bytes_120x40/busy (10 run events/s): {busy} bytes in 60 s = {:.1} bytes/s",
        busy as f64 / 60.0
    );
}

criterion_group!(benches, frames, bytes);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
