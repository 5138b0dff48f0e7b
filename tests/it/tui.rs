//! The dashboard rendered into ratatui's `TestBackend` from fixed data and a fixed clock:
//! insta snapshots of every pane and dialog at 80x24 and 200x50, plus behaviour checks.

use chrono::{DateTime, TimeZone, Utc};
use opsdeck::client::StreamItem;
use opsdeck::model::{
    Attempt, AttemptError, AttemptStatus, BreakerInfo, CanaryAction, CanaryStatus, Command,
    DlqEntry, DlqId, Event, EventKind, Overview, Page, PipelineInfo, Run, RunId, RunStatus,
    RunSummary, SeriesPoint, StageIo, StageRecord, StageStatus, Timestamp, Trigger,
};
use opsdeck::tui::action::Action;
use opsdeck::tui::app::{App, Config};
use opsdeck::tui::keymap::Keymap;
use opsdeck::tui::popup::Popup;
use opsdeck::tui::prepare::{prepare_diff, prepare_io};
use opsdeck::tui::request::{Msg, Request};
use opsdeck::tui::theme::{ColorDepth, Theme};
use opsdeck::tui::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::style::Color;
use serde_json::json;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 18, 0, 0)
        .single()
        .unwrap()
}

fn at(secs_before_now: i64) -> Timestamp {
    Timestamp::from_datetime(now() - chrono::Duration::seconds(secs_before_now))
}

const PIPELINES: [&str; 4] = [
    "checkout-etl",
    "daily-report",
    "partner-sync",
    "fraud-model",
];

fn summary(id: i64) -> RunSummary {
    let pipeline = PIPELINES[(id % 4) as usize].to_string();
    let status = match id % 7 {
        0 => RunStatus::Failed,
        1 if id > 40 => RunStatus::Running,
        3 => RunStatus::Cancelled,
        _ => RunStatus::Succeeded,
    };
    let started = at((50 - id) * 30 + 5);
    let finished = status
        .is_finished()
        .then(|| Timestamp::from_millis(started.millis() + 1_000 + id * 137));
    RunSummary {
        id: RunId(id),
        pipeline,
        status,
        trigger: if id % 5 == 0 {
            Trigger::Manual
        } else {
            Trigger::Schedule
        },
        created_at: started,
        started_at: Some(started),
        finished_at: finished,
        duration_ms: finished.map(|f| f.millis_since(started)),
        stages_total: 5,
        stages_done: if status == RunStatus::Running { 2 } else { 5 },
        stages_succeeded: match status {
            RunStatus::Succeeded => 5,
            RunStatus::Running => 2,
            _ => 3,
        },
        stages_failed: u32::from(status == RunStatus::Failed),
        test: false,
    }
}

fn attempt(
    n: u32,
    status: AttemptStatus,
    start: i64,
    ms: i64,
    output: serde_json::Value,
    error: Option<(&str, &str)>,
) -> Attempt {
    let started = at(start);
    Attempt {
        n,
        status,
        started_at: started,
        finished_at: Some(Timestamp::from_millis(started.millis() + ms)),
        duration_ms: Some(ms),
        input: json!({"params": {"region": "eu-west-1"}, "stages": {"extract-orders": {"rows": 4821}}}),
        output: Some(output),
        output_truncated: false,
        output_bytes: Some(60),
        stderr: error.map(|_| "warning: slow upstream\nretrying once\n".to_string()),
        error: error.map(|(c, m)| AttemptError {
            code: c.into(),
            message: m.into(),
        }),
        assets: std::collections::BTreeMap::new(),
    }
}

fn run_50() -> Run {
    let stage =
        |id: &str, needs: &[&str], status: StageStatus, attempts: Vec<Attempt>| StageRecord {
            id: id.into(),
            kind: "simulate".into(),
            needs: needs.iter().map(ToString::to_string).collect(),
            status,
            attempts,
        };
    Run {
        id: RunId(50),
        pipeline: "checkout-etl".into(),
        status: RunStatus::Failed,
        trigger: Trigger::Schedule,
        params: json!({"region": "eu-west-1", "batch_size": 500}),
        created_at: at(60),
        started_at: Some(at(60)),
        finished_at: Some(at(52)),
        duration_ms: Some(8_000),
        overrides: std::collections::BTreeMap::new(),
        test: false,
        owner: None,
        stages: vec![
            stage(
                "extract-orders",
                &[],
                StageStatus::Succeeded,
                vec![attempt(
                    1,
                    AttemptStatus::Succeeded,
                    60,
                    900,
                    json!({"rows": 4821}),
                    None,
                )],
            ),
            stage(
                "transform-orders",
                &["extract-orders"],
                StageStatus::Succeeded,
                vec![attempt(
                    1,
                    AttemptStatus::Succeeded,
                    59,
                    1_500,
                    json!({"rows": 4790, "rejected": 31}),
                    None,
                )],
            ),
            stage(
                "enrich-payments",
                &["extract-orders"],
                StageStatus::Failed,
                vec![
                    attempt(
                        1,
                        AttemptStatus::Failed,
                        59,
                        2_000,
                        json!({"error": "503"}),
                        Some((
                            "http_status",
                            "POST http://payments/api answered 503 Service Unavailable",
                        )),
                    ),
                    attempt(
                        2,
                        AttemptStatus::Failed,
                        56,
                        1_800,
                        json!({"error": "503"}),
                        Some((
                            "http_status",
                            "POST http://payments/api answered 503 Service Unavailable",
                        )),
                    ),
                ],
            ),
            stage(
                "load-warehouse",
                &["transform-orders", "enrich-payments"],
                StageStatus::Skipped,
                vec![],
            ),
            stage(
                "verify-counts",
                &["load-warehouse"],
                StageStatus::Skipped,
                vec![],
            ),
        ],
    }
}

fn overview() -> Overview {
    Overview {
        backend: "embedded".into(),
        workspace: "/home/oncall/ops".into(),
        pipelines: PIPELINES
            .iter()
            .map(|p| PipelineInfo {
                graph: graph(),
                name: (*p).to_string(),
                description: Some(format!("The {p} job")),
                schedule: Some("every 30s".into()),
                stages: vec!["a".into()],
                params: serde_json::Map::new(),
            })
            .collect(),
        dlq_depth: 2,
        breakers: vec![BreakerInfo {
            target: "http:payments:80".into(),
            state: "open".into(),
        }],
        last_seq: 900,
        running: 0,
        role: None,
        workers: None,
    }
}

/// The checkout-etl DAG (every fixture pipeline has it): a diamond with a tail.
fn graph() -> Vec<opsdeck::model::lens::StageInfo> {
    let s = |id: &str, needs: &[&str], asset: Option<&str>, breaker: Option<&str>| {
        opsdeck::model::lens::StageInfo {
            id: id.into(),
            kind: "simulate".into(),
            needs: needs.iter().map(ToString::to_string).collect(),
            assets: asset.into_iter().map(str::to_string).collect(),
            breaker: breaker.map(str::to_string),
        }
    };
    vec![
        s("extract-orders", &[], None, None),
        s(
            "transform-orders",
            &["extract-orders"],
            Some("order-rules"),
            None,
        ),
        s(
            "enrich-payments",
            &["extract-orders"],
            None,
            Some("http:payments:80"),
        ),
        s(
            "load-warehouse",
            &["transform-orders", "enrich-payments"],
            None,
            None,
        ),
        s("verify-counts", &["load-warehouse"], None, None),
    ]
}

/// The lens over 20 runs of that DAG: enrich-payments fails one run in five.
fn lens_stats() -> opsdeck::model::lens::PipelineStats {
    let mut rows = Vec::new();
    for run in 31..=50 {
        for (i, st) in graph().iter().enumerate() {
            let failed = st.id == "enrich-payments" && run % 5 == 0;
            rows.push(opsdeck::model::lens::AttemptRow {
                run: RunId(run),
                stage: st.id.clone(),
                n: 1,
                status: if failed {
                    AttemptStatus::Failed
                } else {
                    AttemptStatus::Succeeded
                },
                started_at: at(run * 10),
                duration_ms: Some(300 + 150 * i as i64 + run * 7),
                error: failed.then(|| "http_status".to_string()),
                stage_status: if failed {
                    StageStatus::Failed
                } else {
                    StageStatus::Succeeded
                },
            });
        }
    }
    let stages: Vec<String> = graph().iter().map(|s| s.id.clone()).collect();
    opsdeck::model::lens::stats(
        "checkout-etl",
        &stages,
        (31..=50).rev().map(RunId).collect(),
        &rows,
    )
}

/// Run 50 against run 49: transform-orders read another version of its rules, got slower
/// and changed its output; load-warehouse changed downstream of it.
fn comparison_msg() -> Msg {
    let base = {
        let mut r = run_50();
        r.id = RunId(49);
        r
    };
    let mut cand = run_50();
    for s in &mut cand.stages {
        if s.id == "transform-orders" {
            s.attempts[0].duration_ms = Some(2_400);
            let start = s.attempts[0].started_at.millis();
            s.attempts[0].finished_at = Some(Timestamp::from_millis(start + 2_400));
            s.attempts[0].output = Some(json!({"rows": 4702, "rejected": 119}));
            s.attempts[0].assets.insert("order-rules".into(), 4);
        }
        if s.id == "load-warehouse"
            && let Some(a) = s.attempts.first_mut()
        {
            a.output = Some(json!({"inserted": 4702}));
        }
    }
    let mut base = base;
    for s in &mut base.stages {
        if s.id == "transform-orders" {
            s.attempts[0].assets.insert("order-rules".into(), 3);
        }
    }
    let c = opsdeck::model::compare::compare(
        &base,
        &cand,
        &opsdeck::model::compare::CompareSettings::default(),
    );
    Msg::Compare(Box::new(opsdeck::tui::panes::compare::CompareView::new(
        c, &base, &cand,
    )))
}

fn open_compare(a: &mut App) {
    a.compare(RunId(49), RunId(50));
    a.apply(comparison_msg());
}

fn asset_detail(version: u32) -> opsdeck::model::asset::AssetDetail {
    use opsdeck::model::asset::{AssetDetail, AssetUse, AssetVersion, PinRecord};
    let v = |n: u32, who: &str, why: &str| AssetVersion {
        version: n,
        created_at: at(i64::from(10 - n) * 3600),
        actor: who.into(),
        reason: why.into(),
        bytes: 120,
        content: None,
    };
    let text = |n: u32| {
        format!(
            "reject_if:\n  amount_over: {}\n  country_not_in: [DE, FR, NL]\n  velocity_per_min: 5\n",
            500 * n
        )
    };
    AssetDetail {
        name: "order-rules".into(),
        pinned: Some(3),
        versions: vec![
            v(4, "dana", "tighten the amount limit"),
            v(3, "alice", "add NL"),
            v(
                2,
                "opsdeck",
                "assets/order-rules.yaml changed since version 1",
            ),
            v(1, "opsdeck", "seeded from assets/order-rules.yaml"),
        ],
        pins: vec![
            PinRecord {
                version: 3,
                at: at(7200),
                actor: "alice".into(),
                reason: "add NL".into(),
                undone: false,
            },
            PinRecord {
                version: 2,
                at: at(20000),
                actor: "opsdeck".into(),
                reason: "assets/order-rules.yaml changed".into(),
                undone: false,
            },
        ],
        used_by: vec![AssetUse {
            pipeline: "checkout-etl".into(),
            stage: "transform-orders".into(),
            version: None,
        }],
        shown: {
            let mut s = v(version, "dana", "tighten the amount limit");
            s.content = Some(text(version));
            s
        },
    }
}

fn open_assets(a: &mut App, version: u32, diff: bool) {
    use opsdeck::model::asset::AssetSummary;
    a.on_action(Action::PaneAssets);
    let list = ["fraud-rules", "order-rules", "prompt.summary"]
        .iter()
        .enumerate()
        .map(|(i, n)| AssetSummary {
            name: (*n).to_string(),
            pinned: Some(3),
            latest: 4 + u32::try_from(i % 2).unwrap(),
            versions: 4,
            updated_at: at(3600),
            used_by: vec![],
        })
        .collect();
    a.apply(Msg::Assets(list));
    a.on_action(Action::Down);
    a.panes.assets.diff = diff;
    let pinned = diff.then(|| asset_detail(3).shown.content.unwrap());
    a.apply(Msg::Asset {
        detail: Box::new(asset_detail(version)),
        pinned,
    });
}

fn open_pipelines(a: &mut App) {
    a.on_action(Action::PanePipelines);
    a.apply(Msg::PipelineStats(Box::new(lens_stats())));
}

fn dlq() -> Vec<DlqEntry> {
    vec![
        DlqEntry {
            id: DlqId(7),
            run_id: RunId(50),
            pipeline: "checkout-etl".into(),
            stage: "enrich-payments".into(),
            attempts: 2,
            input: json!({}),
            error: AttemptError {
                code: "http_status".into(),
                message: "POST http://payments/api answered 503 Service Unavailable".into(),
            },
            created_at: at(52),
        },
        DlqEntry {
            id: DlqId(8),
            run_id: RunId(43),
            pipeline: "daily-report".into(),
            stage: "publish".into(),
            attempts: 3,
            input: json!({}),
            error: AttemptError {
                code: "timeout".into(),
                message: "`sh` did not finish within 2000 ms; its process group was killed".into(),
            },
            created_at: at(400),
        },
    ]
}

fn events() -> Vec<Event> {
    (880..=900)
        .map(|seq| Event {
            seq,
            at: at(900 - seq as i64),
            kind: [
                EventKind::StageStarted,
                EventKind::StageFinished,
                EventKind::StageRetrying,
                EventKind::DlqAdded,
                EventKind::RunFinished,
            ][(seq % 5) as usize],
            run_id: Some(RunId(50)),
            stage: Some("enrich-payments".into()),
            data: event_data(seq),
        })
        .collect()
}

/// Each kind's data as the engine writes it, so the pane shows what it makes of real events.
fn event_data(seq: u64) -> serde_json::Value {
    let failed = seq.is_multiple_of(3);
    let error = json!({"code": "exit_code", "message": "`sh` exited with status 1"});
    match seq % 5 {
        0 => json!({"attempt": 1, "kind": "command"}),
        1 if failed => {
            json!({"attempt": 1, "status": "failed", "duration_ms": 412, "error": error})
        }
        1 => json!({"attempt": 1, "status": "succeeded", "duration_ms": 412, "error": null}),
        2 => json!({"attempt": 1, "next_attempt": 2, "delay_ms": 2000, "error": error}),
        3 => json!({"dlq_id": 7, "attempts": 3, "error": error}),
        _ => json!({"status": if failed { "failed" } else { "succeeded" }, "duration_ms": 5230}),
    }
}

fn config(theme: &str) -> Config {
    Config {
        theme: Theme::load(theme, None, ColorDepth::TrueColor).unwrap(),
        keymap: Keymap::builtin_default(),
        mouse: false,
        theme_dir: None,
        depth: ColorDepth::TrueColor,
        no_color: false,
        label: None,
        read_only: false,
        reports_dir: None,
    }
}

/// An app as it looks once the backend has answered, with fixed data.
fn app(w: u16, h: u16) -> App {
    let mut app = App::new(config("dark"), Rect::new(0, 0, w, h), now());
    let reqs = app.take_requests();
    assert!(reqs.contains(&Request::Overview) && reqs.contains(&Request::Dlq));
    let tag = app.panes.runs.list.tag;
    app.apply(Msg::Overview(overview()));
    app.apply(Msg::Stream(StreamItem::Connected(true)));
    let items: Vec<RunSummary> = (1..=50).rev().map(summary).collect();
    app.apply(runs_page(tag, items, 50));
    app.apply(Msg::Dlq(page_of(dlq())));
    app.apply(Msg::RecentEvents(events()));
    app.take_requests();
    app
}

/// The answer to a runs page request with the given tag.
fn runs_page(tag: u64, items: Vec<RunSummary>, total: u64) -> Msg {
    Msg::Runs {
        tag,
        offset: 0,
        page: Page {
            items,
            next: None,
            total,
        },
    }
}

/// The README's keymap example does what its comments say: `n` moves down in the runs list
/// (its own `n` unbound) and `C-r` starts a run.
#[test]
fn the_readme_keymap_example_works_as_written() {
    use opsdeck::tui::keymap::{Context, Key, Lookup};
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```toml\ninherits = \"default\"\n[list]")
        .unwrap()
        + "```toml\n".len();
    let example = &readme[start..start + readme[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mine.toml"), example).unwrap();
    let km = Keymap::load("mine", Some(dir.path())).unwrap();
    let runs = [Context::Runs, Context::List, Context::Global];
    let key = |k: &str| vec![Key::parse(k).unwrap()];
    assert_eq!(km.lookup(&runs, &key("n")), Lookup::Action(Action::Down));
    assert_eq!(
        km.lookup(&runs, &key("C-r")),
        Lookup::Action(Action::NewRun)
    );
    assert_eq!(km.lookup(&runs, &key("j")), Lookup::Unbound);
}

#[test]
fn tab_in_the_pipelines_pane_shows_the_next_pipeline_in_both_keymaps() {
    for keymap in ["default", "arrows"] {
        let mut a = app(100, 30);
        a.config.keymap = Keymap::load(keymap, None).unwrap();
        open_pipelines(&mut a);
        assert!(text(&a).contains(&format!("Pipelines · {}", PIPELINES[0])));
        key(&mut a, KeyCode::Tab);
        assert!(
            text(&a).contains(&format!("Pipelines · {}", PIPELINES[1])),
            "{keymap}: {}",
            text(&a)
        );
    }
}

fn key(app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn chars(app: &mut App, s: &str) {
    for c in s.chars() {
        key(app, KeyCode::Char(c));
    }
}

fn draw(app: &App) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(app.size.width, app.size.height)).unwrap();
    t.draw(|f| view::render(f, app)).unwrap();
    t
}

fn text(app: &App) -> String {
    let t = draw(app);
    let buf = t.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn open_stage(app: &mut App) {
    app.on_action(Action::Open); // run 50
    app.apply(Msg::Run(Box::new(run_50())));
    for _ in 0..2 {
        app.on_action(Action::Down);
    }
    app.on_action(Action::Open); // enrich-payments
    let run = run_50();
    let stage = run.stage("enrich-payments").unwrap();
    let io = StageIo {
        run_id: RunId(50),
        pipeline: run.pipeline.clone(),
        stage: stage.id.clone(),
        status: stage.status,
        attempts: stage.attempts.clone(),
    };
    app.apply(Msg::StageIo(Box::new(prepare_io(io))));
}

/// Attempt `n`, failed with nothing but an exit status, after `stderr`.
fn bare_exit(n: u32, stderr: &str) -> Attempt {
    let mut failed = attempt(
        n,
        AttemptStatus::Failed,
        30,
        900,
        json!(null),
        Some(("exit_status", "the command exited with status 3")),
    );
    failed.output = None;
    failed.stderr = Some(stderr.to_string());
    failed
}

/// A stage whose only attempt failed with a bare exit status after one 300-character stderr
/// line.
fn open_failed_stage(app: &mut App) {
    open_stage(app);
    let failed = bare_exit(
        1,
        &format!(
            "connecting to payments-db.internal:5432 {} END-OF-LINE\n",
            "x".repeat(250)
        ),
    );
    let io = StageIo {
        run_id: RunId(50),
        pipeline: "payments".into(),
        stage: "enrich-payments".into(),
        status: StageStatus::Failed,
        attempts: vec![failed],
    };
    app.panes.stage = opsdeck::tui::panes::stage::StagePane::default();
    app.open_stage(
        opsdeck::tui::panes::stage::Target {
            run: RunId(50),
            pipeline: "payments".into(),
            stage: "enrich-payments".into(),
        },
        opsdeck::tui::panes::PaneId::Runs,
    );
    app.apply(Msg::StageIo(Box::new(prepare_io(io))));
}

/// An audit event of a canary rollback, selected in the Events pane.
fn audit_event(a: &mut App) {
    a.apply(Msg::Stream(live(Event {
        seq: 901,
        at: at(4),
        kind: EventKind::Audit,
        run_id: None,
        stage: None,
        data: json!({"actor": "oncall", "role": "admin", "via": "dashboard",
            "action": "canary.rollback", "target": "canary/checkout-api", "outcome": "ok",
            "reason": "checkout errors in eu after the 14:02 deploy; paging payments on-call",
            "details": {"weight_before": 25.0, "weight_after": 0.0}}),
    })));
    a.on_action(Action::PaneEvents);
    a.on_action(Action::Bottom);
}

fn open_diff(app: &mut App) {
    open_stage(app);
    app.on_action(Action::Diff);
    let view = prepare_diff(
        "enrich-payments",
        (
            RunId(46),
            "the previous success",
            Some(&json!({"matched": 4802, "unmatched": 19, "currency_rates": "ecb-2026-11-22"})),
        ),
        (
            RunId(50),
            2,
            Some(&json!({"error": "503", "matched": 4802})),
        ),
    );
    app.apply(Msg::Diff(Box::new(view)));
}

/// Two canaries from the real controller on seeded simulated traffic: one progressing with
/// passing checks, one rolled back by hand; and the first one's chart points.
fn canary_fixture() -> (Vec<CanaryStatus>, Vec<SeriesPoint>) {
    use opsdeck::canary::Rollout;
    use opsdeck::canary::config::CanaryConfig;
    use opsdeck::canary::source::simulate::Traffic;
    use opsdeck::canary::source::simulate::{Profile, Simulate};
    let sim = Simulate {
        rps: 100.0,
        legacy: Profile {
            p50_ms: 60.0,
            p95_ms: 180.0,
            error_rate: 0.004,
        },
        canary: Profile {
            p50_ms: 62.0,
            p95_ms: 190.0,
            error_rate: 0.005,
        },
        changes: vec![],
        seed: 3,
        restart_ended: false,
    };
    let end = now().timestamp();
    let start = end - 600;
    let mut out = Vec::new();
    let mut series = Vec::new();
    for name in ["checkout-api", "search-api"] {
        let cfg = std::sync::Arc::new(CanaryConfig::simulated(name, sim.clone()));
        let mut r = Rollout::new(cfg, start, 1);
        let mut t = Traffic::new(sim.clone(), 3);
        for s in start..=end {
            t.run_second(&mut r, s, (s - start) as u64);
            r.tick(s);
        }
        if name == "search-api" {
            r.act(
                CanaryAction::Rollback,
                "alice",
                "p99 spikes in eu-west",
                end - 30,
            )
            .unwrap();
        } else {
            series = r.series(end, 5, 60);
        }
        out.push(r.status());
    }
    (out, series)
}

fn open_canary(a: &mut App) {
    a.on_action(Action::PaneCanary);
    let (list, points) = canary_fixture();
    a.apply(Msg::Canaries(list));
    a.apply(Msg::CanarySeries {
        name: "checkout-api".into(),
        step_s: 5,
        points,
    });
}

/// After a rollout ends its triggers are no longer looked at: their values are the last ones,
/// said so, not shown as "now" beside live charts.
#[test]
fn an_ended_rollouts_trigger_values_are_not_called_now() {
    let mut a = app(200, 50);
    open_canary(&mut a);
    assert!(
        text(&a).contains("(now "),
        "a live rollout's are: {}",
        text(&a)
    );
    a.panes.canary.select("search-api").unwrap();
    let shown = text(&a);
    assert!(
        shown.contains(" when it ended") && !shown.contains("(now "),
        "{shown}"
    );
}

/// A named way to bring a fresh app to one screen.
type Scene = (&'static str, fn(&mut App));

/// Every pane and dialog, by name, set up on a fresh app.
fn scenes() -> Vec<Scene> {
    vec![
        ("runs", |_| {}),
        ("runs_filter", |a| {
            a.on_action(Action::Filter);
            chars(a, "status:failed");
            let tag = a.panes.runs.list.tag;
            let failed: Vec<RunSummary> = (1..=50)
                .rev()
                .map(summary)
                .filter(|r| r.status == RunStatus::Failed)
                .collect();
            let total = failed.len() as u64;
            a.apply(runs_page(tag, failed, total));
        }),
        ("runs_loading", |a| {
            a.on_action(Action::Sort);
        }),
        ("run_detail", |a| {
            a.on_action(Action::Open);
            a.apply(Msg::Run(Box::new(run_50())));
        }),
        ("stage_io", open_stage),
        ("stage_error", |a| {
            open_stage(a);
            a.on_action(Action::NextSection);
            a.on_action(Action::NextSection);
        }),
        ("runs_long_names", |a| {
            let tag = a.panes.runs.list.tag;
            let long: Vec<RunSummary> = (1..=50)
                .rev()
                .map(|id| {
                    let mut r = summary(id);
                    r.pipeline = format!("{}-nightly-reconciliation-for-eu-west-1", r.pipeline);
                    r
                })
                .collect();
            a.apply(runs_page(tag, long, 50));
        }),
        ("dlq_long_names", |a| {
            let mut entries = dlq();
            for e in &mut entries {
                e.pipeline = format!("{}-nightly-reconciliation-eu-west", e.pipeline);
                e.stage = format!("{}-with-exchange-rates", e.stage);
            }
            a.apply(Msg::Dlq(page_of(entries)));
            a.on_action(Action::PaneDlq);
        }),
        ("canary_details", |a| {
            open_canary(a);
            a.on_action(Action::Open);
        }),
        ("stage_failed", open_failed_stage),
        ("stage_sideways", |a| {
            open_failed_stage(a);
            for _ in 0..8 {
                a.on_action(Action::ScrollRight);
            }
        }),
        ("stage_wrapped", |a| {
            open_failed_stage(a);
            a.on_action(Action::Wrap);
        }),
        ("event_record", |a| {
            audit_event(a);
            a.on_action(Action::Open);
        }),
        ("stage_diff_unified", open_diff),
        ("stage_diff_split", |a| {
            open_diff(a);
            a.on_action(Action::DiffLayout);
        }),
        ("dlq", |a| a.on_action(Action::PaneDlq)),
        ("events", |a| a.on_action(Action::PaneEvents)),
        ("help", |a| a.on_action(Action::Help)),
        ("palette", |a| {
            a.on_action(Action::Palette);
            chars(a, "run ");
        }),
        ("confirm_requeue", |a| {
            a.on_action(Action::PaneDlq);
            a.on_action(Action::Requeue);
            chars(a, "payments api is back");
        }),
        ("confirm_cancel", |a| {
            a.on_action(Action::Down); // run 49 is running
            a.on_action(Action::CancelRun);
        }),
        ("pick_pipeline", |a| a.on_action(Action::NewRun)),
        ("canary", open_canary),
        ("canary_rollback", |a| {
            open_canary(a);
            a.on_action(Action::Rollback);
            chars(a, "checkout errors in eu");
        }),
        ("canary_set_weight", |a| {
            open_canary(a);
            a.on_action(Action::SetWeight);
            key(a, KeyCode::Up);
        }),
        ("canary_alert", |a| {
            a.apply(Msg::Stream(live(Event {
                seq: 900,
                at: at(5),
                kind: EventKind::CanaryAction,
                run_id: None,
                stage: None,
                data: json!({"canary": "checkout-api", "action": "rollback", "actor": "opsdeck",
                    "state_after": "rolled_back", "reason": "error_rate failed: canary errors 7.9% vs legacy 0.4%"}),
            })));
        }),
        ("run_detail_assets", |a| {
            a.on_action(Action::Open);
            let mut run = run_50();
            run.overrides.insert("order-rules".into(), 2);
            for s in &mut run.stages {
                if s.id == "transform-orders" {
                    s.attempts[0].assets.insert("order-rules".into(), 2);
                }
            }
            a.apply(Msg::Run(Box::new(run)));
        }),
        ("compare", open_compare),
        ("assets", |a| open_assets(a, 3, false)),
        ("assets_diff", |a| open_assets(a, 4, true)),
        ("pipelines", open_pipelines),
        ("asset_editor", |a| {
            open_assets(a, 3, false);
            a.on_action(Action::EditAsset);
        }),
        ("pick_baseline", |a| {
            open_stage(a);
            a.apply(Msg::BaselineCandidates {
                stage: "enrich-payments".into(),
                runs: (40..49).rev().map(summary).collect(),
            });
        }),
    ]
}

#[test]
fn every_pane_and_dialog_at_80x24_and_200x50() {
    for (w, h) in [(80, 24), (200, 50)] {
        for (name, setup) in scenes() {
            let mut a = app(w, h);
            setup(&mut a);
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), text(&a));
        }
    }
}

#[test]
fn too_small_terminals_get_one_line_and_never_panic() {
    let mut a = app(40, 10);
    insta::assert_snapshot!("too_small_40x10", text(&a));
    for (w, h) in [
        (1, 1),
        (2, 1),
        (1, 30),
        (59, 15),
        (60, 14),
        (60, 15),
        (300, 100),
    ] {
        a.on_resize(w, h);
        for (_, setup) in scenes() {
            let mut b = app(w, h);
            setup(&mut b);
            draw(&b);
        }
    }
}

#[test]
fn the_terminal_theme_uses_only_ansi_colours_and_mono_none() {
    for (theme, allowed) in [("terminal", true), ("mono", false)] {
        for (name, setup) in scenes() {
            let mut a = App::new(config(theme), Rect::new(0, 0, 100, 30), now());
            let tag = a.panes.runs.list.tag;
            a.apply(Msg::Overview(overview()));
            a.apply(runs_page(tag, (1..=50).rev().map(summary).collect(), 50));
            a.apply(Msg::Dlq(page_of(dlq())));
            setup(&mut a);
            let t = draw(&a);
            for cell in t.backend().buffer().content() {
                for c in [cell.fg, cell.bg] {
                    let ok = match c {
                        Color::Reset => true,
                        Color::Rgb(..) | Color::Indexed(_) => false,
                        _ => allowed,
                    };
                    assert!(ok, "{theme} {name}: colour {c:?} on {:?}", cell.symbol());
                }
            }
        }
    }
}

#[test]
fn status_colours_come_from_the_theme() {
    let a = app(100, 30);
    let t = draw(&a);
    let buf = t.backend().buffer();
    let failed = Theme::load("dark", None, ColorDepth::TrueColor)
        .unwrap()
        .style("status.failed")
        .fg;
    let cell = (0..buf.area.height)
        .flat_map(|y| (0..buf.area.width).map(move |x| (x, y)))
        .find(|&(x, y)| buf[(x, y)].symbol() == "✗")
        .map(|p| buf[p].fg);
    assert_eq!(cell, failed);
}

#[test]
fn keys_move_open_and_go_back() {
    let mut a = app(80, 24);
    assert_eq!(a.panes.runs.list.selected().map(|r| r.id), Some(RunId(50)));
    chars(&mut a, "jj");
    assert_eq!(a.panes.runs.list.selected().map(|r| r.id), Some(RunId(48)));
    chars(&mut a, "G");
    assert_eq!(a.panes.runs.list.selected().map(|r| r.id), Some(RunId(1)));
    chars(&mut a, "gg");
    assert_eq!(a.panes.runs.list.selected().map(|r| r.id), Some(RunId(50)));
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.take_requests(), vec![Request::Run { id: RunId(50) }]);
    assert!(a.panes.runs.detail.is_some());
    key(&mut a, KeyCode::Esc);
    assert!(a.panes.runs.detail.is_none());
    // `q` quits at the top level only; inside a run it goes back.
    key(&mut a, KeyCode::Enter);
    chars(&mut a, "q");
    assert!(a.panes.runs.detail.is_none() && !a.quit);
    chars(&mut a, "5");
    assert_eq!(a.focus, opsdeck::tui::panes::PaneId::Dlq);
    // Destructive actions never happen on one key: R asks first, Esc aborts.
    chars(&mut a, "R");
    assert_eq!(a.popups.len(), 1);
    key(&mut a, KeyCode::Esc);
    assert!(a.popups.is_empty());
    assert!(
        a.take_requests()
            .iter()
            .all(|r| !matches!(r, Request::Control { .. }))
    );
    chars(&mut a, "R");
    chars(&mut a, "fixed");
    key(&mut a, KeyCode::Enter);
    assert!(a.take_requests().contains(&Request::Control {
        cmd: Command::Requeue { entry: DlqId(7) },
        reason: "fixed".into()
    }));
    // Ctrl-C quits like q, from a dialog too: at once, since nothing is in flight here.
    chars(&mut a, "D");
    a.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(a.quit);
}

/// From the dead-letter queue one key shows why the stage died: its last attempt, at the
/// stderr when the error is a bare exit status; back (`esc`, or `q`) returns to the queue.
#[test]
fn a_dead_letter_opens_its_stage_at_the_stderr_and_back_returns_to_the_queue() {
    use opsdeck::tui::panes::PaneId;
    let mut a = app(80, 24);
    chars(&mut a, "5");
    let _ = a.take_requests();
    chars(&mut a, "l");
    assert_eq!(a.focus, PaneId::Stage);
    assert_eq!(
        a.take_requests(),
        vec![Request::StageIo {
            id: RunId(50),
            stage: "enrich-payments".into()
        }]
    );
    let io = || {
        prepare_io(StageIo {
            run_id: RunId(50),
            pipeline: "checkout-etl".into(),
            stage: "enrich-payments".into(),
            status: StageStatus::Failed,
            attempts: vec![
                bare_exit(1, "first try: no route to host\n"),
                bare_exit(2, "connection refused: payments-db.internal:5432\n"),
            ],
        })
    };
    a.apply(Msg::StageIo(Box::new(io())));
    let screen = text(&a);
    assert!(
        screen.contains("connection refused: payments-db.internal:5432")
            && !screen.contains("no route to host"),
        "{screen}"
    );
    // Read back to the first attempt, then away and back from the queue: the last attempt
    // again.
    chars(&mut a, "[");
    assert!(text(&a).contains("no route to host"));
    chars(&mut a, "5l");
    assert_eq!(a.take_requests().len(), 1, "loaded again");
    a.apply(Msg::StageIo(Box::new(io())));
    assert!(text(&a).contains("connection refused"), "{}", text(&a));
    chars(&mut a, "q");
    assert_eq!((a.focus, a.quit), (PaneId::Dlq, false));
    // The second entry, this time with esc.
    chars(&mut a, "j");
    chars(&mut a, "l");
    assert_eq!(
        a.take_requests(),
        vec![Request::StageIo {
            id: RunId(43),
            stage: "publish".into()
        }]
    );
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.focus, PaneId::Dlq);
}

fn ctrl_c(a: &mut App) {
    a.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
}

#[test]
fn ctrl_c_with_runs_in_flight_asks_first_even_in_a_dialog() {
    let mut a = app(80, 24);
    let mut o = overview();
    o.running = 1;
    a.apply(Msg::Overview(o));
    chars(&mut a, "5D");
    chars(&mut a, "dupl");
    ctrl_c(&mut a);
    assert!(!a.quit, "a run is in flight: C-c asks");
    assert!(matches!(
        a.popups.last(),
        Some(opsdeck::tui::popup::Popup::ConfirmQuit { running: 1 })
    ));
    key(&mut a, KeyCode::Esc);
    assert!(
        !a.quit && a.popups.len() == 1,
        "back to the dialog it was typed in"
    );
    ctrl_c(&mut a);
    ctrl_c(&mut a);
    assert!(a.quit, "asked twice, it quits");

    // On a screen too small to show the question, C-c still asks, then quits.
    let mut a = app(80, 24);
    let mut o = overview();
    o.running = 3;
    a.apply(Msg::Overview(o));
    a.on_resize(40, 10);
    ctrl_c(&mut a);
    assert!(!a.quit);
    ctrl_c(&mut a);
    assert!(a.quit);
}

#[test]
fn the_arrows_keymap_drives_dialogs_without_letters() {
    let mut c = config("dark");
    c.keymap = Keymap::load("arrows", None).unwrap();
    let mut a = App::new(c, Rect::new(0, 0, 100, 30), now());
    let tag = a.panes.runs.list.tag;
    a.apply(Msg::Overview(overview()));
    a.apply(runs_page(tag, (1..=50).rev().map(summary).collect(), 50));
    a.on_action(Action::NewRun);
    chars(&mut a, "jjj");
    assert!(
        matches!(a.popups.last(), Some(opsdeck::tui::popup::Popup::PickPipeline(p)) if p.cursor.selected == 0),
        "letters do not move a picker in the arrows keymap"
    );
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::Enter);
    assert!(a.popups.is_empty());
    assert!(
        a.take_requests().iter().any(|r| matches!(r,
            Request::Control { cmd: Command::StartRun(s), .. } if s.pipeline == "partner-sync")),
        "the third pipeline was started"
    );
    // The help names the keymap's keys, and closes with its keys.
    a.on_action(Action::Help);
    assert!(text(&a).contains("↓/↑ scroll") || text(&a).contains("Keys (? or Esc closes)"));
    key(&mut a, KeyCode::F(1));
    assert!(a.popups.is_empty(), "f1 (help) closes the help");
}

#[test]
fn paging_asks_for_windows_not_everything() {
    let mut a = App::new(config("dark"), Rect::new(0, 0, 80, 24), now());
    let first = a.take_requests();
    let q = first
        .iter()
        .find_map(|r| {
            if let Request::Runs { q, .. } = r {
                Some(q.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(
        (q.offset, q.limit),
        (0, 57),
        "three screens of rows, not the whole list"
    );
    let tag = a.panes.runs.list.tag;
    let items: Vec<RunSummary> = (100_000 - 56..=100_000).rev().map(summary).collect();
    a.apply(runs_page(tag, items, 100_000));
    a.on_action(Action::Bottom);
    let reqs = a.take_requests();
    let q = reqs
        .iter()
        .find_map(|r| {
            if let Request::Runs { q, .. } = r {
                Some(q.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert!(q.offset > 99_000 && q.limit <= 600, "{q:?}");
    // An answer to an old request is ignored.
    a.apply(runs_page(tag, vec![summary(1)], 1));
    assert_eq!(a.panes.runs.list.total, 100_000);
}

#[test]
fn live_events_refresh_only_what_is_on_screen() {
    let mut a = app(80, 24);
    let e = Event {
        seq: 901,
        at: at(0),
        kind: EventKind::StageFinished,
        run_id: Some(RunId(50)),
        stage: Some("x".into()),
        data: json!({}),
    };
    a.apply(Msg::Stream(live(e)));
    assert_eq!(a.panes.events.last_seq(), 901);
    a.refresh();
    let reqs = a.take_requests();
    assert!(
        reqs.iter().any(|r| matches!(r, Request::Runs { .. })),
        "{reqs:?}"
    );
    assert!(
        !reqs.iter().any(|r| matches!(r, Request::Dlq)),
        "the DLQ is neither stale nor visible"
    );
    a.refresh();
    assert!(a.take_requests().is_empty(), "nothing is fetched twice");
}

#[test]
fn new_runs_appear_at_the_top_and_the_selection_stays_on_its_run() {
    let mut a = app(80, 24);
    a.on_action(Action::Down);
    assert_eq!(a.panes.runs.list.selected().map(|r| r.id), Some(RunId(49)));
    // Two new runs arrive while the view is at the top.
    a.refresh();
    let _ = a.take_requests();
    let e = Event {
        seq: 901,
        at: at(0),
        kind: EventKind::RunCreated,
        run_id: Some(RunId(52)),
        stage: None,
        data: json!({}),
    };
    a.apply(Msg::Stream(live(e)));
    a.refresh();
    let tag = a
        .take_requests()
        .iter()
        .find_map(|r| {
            if let Request::Runs { tag, .. } = r {
                Some(*tag)
            } else {
                None
            }
        })
        .unwrap();
    a.apply(runs_page(tag, (1..=52).rev().map(summary).collect(), 52));
    assert_eq!(
        a.panes.runs.list.selected().map(|r| r.id),
        Some(RunId(49)),
        "still on the same run"
    );
    assert_eq!(
        a.panes.runs.list.cursor.offset, 0,
        "the view stays at the top, showing the new runs"
    );
    assert!(
        text(&a).lines().nth(3).unwrap().starts_with("│52 "),
        "{}",
        text(&a)
    );
}

/// The README's key tables are the help generated from the panes' declared commands and the
/// default keymap. `OPSDECK_WRITE_README=1 cargo test --test it tui::the_readme` rewrites them.
/// Replaces what is between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in the README with
/// `want` under `OPSDECK_WRITE_README=1`, else checks it is already there.
fn readme_section(name: &str, want: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let (begin, end) = (
        format!("<!-- {name}:begin -->\n"),
        format!("\n<!-- {name}:end -->"),
    );
    let start = readme.find(&begin).expect("README has the begin marker") + begin.len();
    let stop = readme[start..]
        .find(&end)
        .expect("README has the end marker")
        + start;
    if std::env::var_os("OPSDECK_WRITE_README").is_some() {
        let new = format!("{}{want}{}", &readme[..start], &readme[stop..]);
        std::fs::write(path, new).unwrap();
        return;
    }
    assert!(
        readme[start..stop] == *want,
        "README section `{name}` differs from what the code draws; run OPSDECK_WRITE_README=1 cargo test --test it tui::the_readme and review the diff. Generated:\n{want}"
    );
}

/// The README's key tables are the help generated from the panes' declared commands and the
/// default keymap. `OPSDECK_WRITE_README=1 cargo test --test it tui::the_readme` rewrites them.
#[test]
fn the_readme_key_tables_are_the_generated_help() {
    readme_section(
        "keys",
        &opsdeck::tui::help::readme_tables(&Keymap::builtin_default()),
    );
}

/// A run another worker drives names that worker in its header.
#[test]
fn a_run_driven_by_a_worker_names_it() {
    let mut a = app(120, 30);
    a.on_action(Action::Open);
    let mut run = run_50();
    run.owner = Some("db-worker-2".into());
    a.apply(Msg::Run(Box::new(run)));
    let screen = text(&a);
    assert!(screen.contains("· worker db-worker-2 · params"), "{screen}");
}

/// The README's screenshot is the dashboard as it draws today (a run at 80x24).
#[test]
fn the_readme_screenshot_is_what_the_dashboard_draws() {
    let mut a = app(80, 24);
    a.on_action(Action::Open);
    a.apply(Msg::Run(Box::new(run_50())));
    let screen: Vec<String> = text(&a).lines().map(|l| l.trim_end().to_string()).collect();
    readme_section("screen", &format!("```\n{}\n```", screen.join("\n")));
}

#[test]
fn the_readme_documents_every_binding_slot_and_setting() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let km = Keymap::builtin_default();
    let contexts = opsdeck::tui::keymap::Context::ALL;
    for (_, action) in km.bindings(&contexts) {
        assert!(
            readme.contains(&format!("`{}`", action.name())),
            "README does not mention the action `{}`",
            action.name()
        );
    }
    for slot in opsdeck::tui::theme::SLOTS {
        assert!(
            readme.contains(&format!("`{slot}`")),
            "README does not list the theme slot `{slot}`"
        );
    }
    for key in opsdeck::config::KEYS {
        assert!(
            readme.contains(&format!("`{}.{}`", key.table, key.key)),
            "README does not document `{}.{}`",
            key.table,
            key.key
        );
        assert!(
            readme.contains(&key.env_name()),
            "README does not name {}",
            key.env_name()
        );
    }
    for cmd in opsdeck::tui::palette::TYPED {
        assert!(
            readme.contains(&format!(":{}", cmd.name)),
            "README does not list the palette command :{}",
            cmd.name
        );
    }
}

#[test]
fn keys_do_nothing_while_the_screen_is_too_small() {
    let mut a = app(80, 24);
    a.on_resize(80, 12);
    chars(&mut a, "5R");
    key(&mut a, KeyCode::Enter);
    assert!(a.popups.is_empty() && a.focus == opsdeck::tui::panes::PaneId::Runs);
    assert!(
        a.take_requests()
            .iter()
            .all(|r| !matches!(r, Request::Control { .. }))
    );
    a.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(a.quit, "Ctrl-C still quits");
}

#[test]
fn quitting_with_runs_in_flight_asks_first_and_q_goes_back_in_nested_views() {
    let mut a = app(80, 24);
    let mut o = overview();
    o.running = 2;
    a.apply(Msg::Overview(o));
    chars(&mut a, "q");
    assert!(
        !a.quit
            && matches!(
                a.popups.last(),
                Some(opsdeck::tui::popup::Popup::ConfirmQuit { running: 2 })
            )
    );
    insta::assert_snapshot!("confirm_quit_80x24", text(&a));
    key(&mut a, KeyCode::Esc);
    assert!(a.popups.is_empty() && !a.quit);
    // Inside a stage opened from a run, q goes back to the run.
    open_stage(&mut a);
    chars(&mut a, "q");
    assert_eq!(a.focus, opsdeck::tui::panes::PaneId::Runs);
    assert!(a.panes.runs.detail.is_some() && !a.quit);
    chars(&mut a, "q");
    assert!(a.panes.runs.detail.is_none() && !a.quit);
    chars(&mut a, "q");
    key(&mut a, KeyCode::Enter);
    assert!(a.quit);
}

#[test]
fn back_returns_to_the_pane_a_run_was_opened_from() {
    let mut a = app(80, 24);
    chars(&mut a, "7");
    // Enter shows the event's whole record; Enter again opens its run.
    key(&mut a, KeyCode::Enter);
    match a.popups.last() {
        Some(Popup::Record(r)) => assert!(r.title.starts_with("Event #"), "{r:?}"),
        other => panic!("expected the event's record, got {other:?}"),
    }
    key(&mut a, KeyCode::Enter);
    assert!(a.popups.is_empty());
    assert!(a.panes.runs.detail.is_some() && a.focus == opsdeck::tui::panes::PaneId::Runs);
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.focus, opsdeck::tui::panes::PaneId::Events);
    // Paging back: moving up past the oldest event held asks for older ones.
    chars(&mut a, "gg");
    let _ = a.take_requests();
    key(&mut a, KeyCode::Up);
    assert_eq!(
        a.take_requests(),
        vec![Request::OlderEvents {
            before: 880,
            limit: 500
        }]
    );
    let older: Vec<Event> = (860..880)
        .map(|seq| Event {
            seq,
            at: at(1_000),
            kind: EventKind::RunStarted,
            run_id: Some(RunId(40)),
            stage: None,
            data: json!({}),
        })
        .collect();
    a.apply(Msg::OlderEvents(older));
    assert_eq!(a.panes.events.first_seq(), 860);
    assert_eq!(
        a.panes.events.events[a.panes.events.matches[a.panes.events.cursor.selected]].seq, 880,
        "the selection stays put"
    );
}

#[test]
fn a_half_typed_filter_is_explained_not_applied() {
    let mut a = app(80, 24);
    a.on_action(Action::Filter);
    chars(&mut a, "status:fa");
    let input = a.input.as_ref().unwrap();
    assert_eq!(
        input.error.as_deref(),
        Some("status: pending, running, succeeded, failed, cancelled or interrupted (not `fa`)"),
    );
    assert_eq!(
        a.panes.runs.list.filter, "",
        "the pane shows what it showed before the editing began"
    );
    let title = text(&a).lines().nth(1).unwrap().to_string();
    assert!(!title.contains("filter"), "{title}");
    key(&mut a, KeyCode::Enter);
    assert!(a.input.is_some(), "Enter does not accept an invalid filter");
    chars(&mut a, "iled");
    assert!(a.input.as_ref().unwrap().error.is_none());
    assert_eq!(a.panes.runs.list.filter, "status:failed");
    assert!(
        a.flash.as_ref().is_some_and(|f| f.error),
        "Enter's refusal is shown"
    );
    // Unknown fields are refused in every pane, with what the pane takes.
    key(&mut a, KeyCode::Esc);
    assert!(a.flash.is_none(), "Esc gives up the filter and its refusal");
    a.on_action(Action::Filter);
    chars(&mut a, "foo:bar");
    assert_eq!(
        a.input.as_ref().unwrap().error.as_deref(),
        Some("fields here: status:, pipeline:, #ID or words (not `foo:`)")
    );
    key(&mut a, KeyCode::Esc);
    a.on_action(Action::PaneEvents);
    a.on_action(Action::Filter);
    chars(&mut a, "kind:bogus");
    let e = a.input.as_ref().unwrap().error.clone().unwrap();
    assert!(
        e.starts_with("kind: run_created,") || e.starts_with("kind: "),
        "{e}"
    );
    assert!(e.ends_with("(not `bogus`)"), "{e}");
    key(&mut a, KeyCode::Esc);
    a.on_action(Action::PaneDlq);
    a.on_action(Action::Filter);
    chars(&mut a, "stage:fetch");
    assert!(a.input.as_ref().unwrap().error.is_none());
    assert!(
        text(&a).contains("No entries match the filter"),
        "{}",
        text(&a)
    );
}

/// Every pane's filter refusing something, at both sizes.
#[test]
fn each_filter_error_at_80x24_and_200x50() {
    for (w, h) in [(80, 24), (200, 50)] {
        for (name, pane, typed) in [
            ("runs", Action::PaneRuns, "status:fa"),
            ("events", Action::PaneEvents, "kind:bogus"),
            ("dlq", Action::PaneDlq, "foo:bar"),
        ] {
            let mut b = app(w, h);
            b.on_action(pane);
            b.on_action(Action::Filter);
            chars(&mut b, typed);
            insta::assert_snapshot!(format!("{name}_filter_error_{w}x{h}"), text(&b));
        }
    }
}

#[test]
fn no_color_stays_monochrome() {
    let mut c = config("mono");
    c.no_color = true;
    let mut a = App::new(c, Rect::new(0, 0, 80, 24), now());
    a.on_action(Action::Palette);
    chars(&mut a, "theme dark");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.config.theme.name, "mono");
    assert!(a.flash.as_ref().unwrap().text.contains("NO_COLOR"));
}

#[test]
fn the_header_fits_narrow_terminals_and_names_the_demo() {
    let mut c = config("dark");
    c.label = Some("demo".into());
    for w in [60u16, 80, 120] {
        let mut a = App::new(c.clone(), Rect::new(0, 0, w, 20), now());
        let tag = a.panes.runs.list.tag;
        a.apply(Msg::Overview(overview()));
        a.apply(runs_page(tag, (1..=5).rev().map(summary).collect(), 5));
        let header = text(&a).lines().next().unwrap().to_string();
        assert!(
            header.contains(" demo ") && header.contains("18:00:00"),
            "{w}: {header}"
        );
        for tab in ["1", "2", "5", "7"] {
            assert!(
                header.contains(&format!(" {tab} ")),
                "{w}: tab {tab} missing in {header}"
            );
        }
        assert!(header.chars().count() <= usize::from(w));
        insta::assert_snapshot!(format!("header_{w}"), header);
    }
}

#[test]
fn a_failed_stage_opens_on_stderr_and_its_long_line_can_be_read_to_the_end() {
    let mut a = app(80, 24);
    open_failed_stage(&mut a);
    let screen = text(&a);
    assert_eq!(
        a.panes.stage.section,
        Some(opsdeck::tui::prepare::Section::Stderr),
        "a bare exit status says less than the stderr"
    );
    assert!(screen.contains("connecting to payments-db"), "{screen}");
    assert!(!screen.contains("END-OF-LINE"), "{screen}");
    assert!(screen.contains('…'), "the cut is visible: {screen}");
    // Sideways to the end (and no further than the end).
    for _ in 0..20 {
        a.on_action(Action::ScrollRight);
    }
    let screen = text(&a);
    assert!(screen.contains("END-OF-LINE"), "{screen}");
    assert!(screen.contains("from column"), "{screen}");
    let far = a.panes.stage.hscroll;
    a.on_action(Action::ScrollRight);
    assert_eq!(a.panes.stage.hscroll, far, "it stops where the line ends");
    // Wrapped, the whole line is on screen at once.
    a.on_action(Action::Wrap);
    let screen = text(&a);
    assert!(
        screen.contains("connecting to payments-db") && screen.contains("END-OF-LINE"),
        "{screen}"
    );
    a.on_action(Action::Wrap);
    assert!(
        !text(&a).contains("END-OF-LINE"),
        "unwrapped starts at column 1"
    );
}

#[test]
fn enter_on_an_event_shows_its_whole_record() {
    let mut a = app(80, 24);
    audit_event(&mut a);
    a.on_action(Action::Open);
    let screen = text(&a);
    for want in [
        "Event #901",
        "actor oncall (admin, via dashboard)",
        "action canary.rollback on canary/checkout-api",
        "reason: checkout errors in eu after the 14:02 deploy",
        "\"weight_after\": 0.0",
    ] {
        assert!(screen.contains(want), "{want:?} missing:\n{screen}");
    }
    // An event without a run closes on Enter.
    key(&mut a, KeyCode::Enter);
    assert!(a.popups.is_empty());
    assert_eq!(a.focus, opsdeck::tui::panes::PaneId::Events);
}

#[test]
fn the_dlq_detail_keeps_a_long_error_on_screen_at_80_columns() {
    let mut a = app(80, 24);
    let mut entries = dlq();
    entries[0].pipeline = "nightly-payments-reconciliation-eu-west".into();
    entries[0].stage = "enrich-payments-with-fx-rates".into();
    entries[0].error.message = format!("{} LAST-WORDS", "upstream refused ".repeat(6));
    a.apply(Msg::Dlq(page_of(entries)));
    a.on_action(Action::PaneDlq);
    let screen = text(&a);
    assert!(screen.contains("LAST-WORDS"), "{screen}");
}

#[test]
fn a_cut_message_puts_its_choices_first_and_m_shows_it_whole() {
    let mut a = app(80, 24);
    a.on_action(Action::Palette);
    chars(&mut a, "theme neon");
    key(&mut a, KeyCode::Enter);
    let footer = text(&a).lines().last().unwrap().to_string();
    assert!(
        footer.starts_with(" valid themes: dark, high-contrast, light, mono, terminal"),
        "{footer}"
    );
    assert!(footer.contains("(m: all)"), "{footer}");
    chars(&mut a, "m");
    let screen = text(&a);
    assert!(screen.contains("Messages · 1"), "{screen}");
    assert!(
        screen.contains("theme: there is no theme `neon`; valid themes:"),
        "{screen}"
    );
    // The too-small screen says what it needs first, and how to quit.
    key(&mut a, KeyCode::Esc);
    a.on_resize(40, 10);
    let small = text(&a);
    assert!(
        small.starts_with("opsdeck needs 60x15 (this is 40x10); q"),
        "{small}"
    );
}

#[test]
fn the_weight_dialog_takes_digits_for_the_weight_and_words_for_the_reason() {
    let mut a = app(100, 30);
    open_canary(&mut a);
    a.take_requests();
    a.on_action(Action::SetWeight);
    // The first digit replaces the weight the dialog opened with.
    chars(&mut a, "40");
    key(&mut a, KeyCode::Tab);
    chars(&mut a, "hold at 40 for the sale");
    key(&mut a, KeyCode::Enter);
    let reqs = a.take_requests();
    assert!(
        reqs.iter().any(|r| matches!(r, Request::Control {
            cmd: Command::Canary { action: CanaryAction::SetWeight(40), expect: Some(at), .. },
            reason,
        } if reason == "hold at 40 for the sale" && at.weight > 0.0)),
        "{reqs:?}"
    );
    // A weight out of range is explained and nothing is sent.
    a.on_action(Action::SetWeight);
    chars(&mut a, "150");
    key(&mut a, KeyCode::Tab);
    chars(&mut a, "x");
    key(&mut a, KeyCode::Enter);
    assert!(a.take_requests().is_empty());
    assert!(text(&a).contains("is not a weight"), "{}", text(&a));
}

#[test]
fn faults_are_injected_into_the_selected_canary_from_the_palette() {
    let mut a = app(100, 30);
    open_canary(&mut a);
    a.take_requests();
    a.on_action(Action::Palette);
    chars(&mut a, "fault 8 250");
    key(&mut a, KeyCode::Enter);
    let reqs = a.take_requests();
    assert!(
        reqs.iter().any(|r| matches!(r, Request::Control { cmd: Command::Fault { canary, fault }, .. }
            if canary == "checkout-api" && (fault.error_rate - 0.08).abs() < 1e-9 && (fault.latency_ms - 250.0).abs() < 1e-9)),
        "{reqs:?}"
    );
    a.on_action(Action::Palette);
    chars(&mut a, "fault lots");
    key(&mut a, KeyCode::Enter);
    assert!(a.take_requests().is_empty());
    let flash = a.flash.as_ref().unwrap();
    assert!(
        flash.error && flash.text.contains("`:fault off`"),
        "{}",
        flash.text
    );
}

#[test]
fn a_lost_connection_marks_the_data_stale_and_a_new_one_refetches_it() {
    let mut a = app(180, 30);
    a.apply(Msg::Stream(StreamItem::Connected(false)));
    let header = text(&a).lines().next().unwrap().to_string();
    assert!(header.contains("stale, reconnecting"), "{header}");
    assert!(
        text(&a).contains("Runs · 50"),
        "the last data stays on screen"
    );
    a.apply(Msg::Stream(StreamItem::Connected(true)));
    let reqs = a.take_requests();
    assert!(reqs.contains(&Request::Overview), "{reqs:?}");
    assert!(
        reqs.iter().any(|r| matches!(r, Request::Runs { .. })),
        "{reqs:?}"
    );
    assert!(text(&a).lines().next().unwrap().contains("● live"));
}

#[test]
fn a_reset_stream_reloads_the_events_and_every_view() {
    let mut a = app(120, 30);
    a.apply(Msg::Stream(live(Event {
        seq: 950,
        at: at(4),
        kind: EventKind::RunStarted,
        run_id: None,
        stage: None,
        data: json!({}),
    })));
    assert_eq!(a.panes.events.last_seq(), 950);
    a.take_requests();
    a.apply(Msg::Stream(StreamItem::Reset { last_seq: 90_000 }));
    assert!(
        a.panes.events.events.is_empty(),
        "the gap is not papered over"
    );
    let reqs = a.take_requests();
    assert!(
        reqs.contains(&Request::RecentEvents { limit: 500 }),
        "{reqs:?}"
    );
    assert!(reqs.contains(&Request::Overview), "{reqs:?}");
    assert!(
        reqs.iter().any(|r| matches!(r, Request::Runs { .. })),
        "{reqs:?}"
    );
}

#[test]
fn read_only_hides_and_refuses_control_actions() {
    let mut c = config("dark");
    c.read_only = true;
    let mut a = App::new(c, Rect::new(0, 0, 120, 30), now());
    a.apply(Msg::Overview(overview()));
    open_canary(&mut a);
    let footer = text(&a).lines().last().unwrap().to_string();
    assert!(
        !footer.contains("rollback") && !footer.contains("promote"),
        "{footer}"
    );
    a.on_action(Action::Rollback);
    assert!(a.popups.is_empty(), "no dialog opens");
    assert!(a.flash.as_ref().unwrap().text.contains("read-only"));
    a.on_action(Action::Palette);
    chars(&mut a, "run etl");
    key(&mut a, KeyCode::Enter);
    assert!(
        !a.take_requests()
            .iter()
            .any(|r| matches!(r, Request::Control { .. }))
    );
}

#[test]
fn a_viewer_token_hides_the_controls_too() {
    let mut a = app(120, 30);
    let mut o = overview();
    o.role = Some("viewer".into());
    a.apply(Msg::Overview(o));
    a.on_action(Action::NewRun);
    assert!(a.popups.is_empty());
    assert!(a.flash.as_ref().unwrap().text.contains("read-only"));
}

/// Entries as the one page the dashboard loads.
fn page_of(
    items: Vec<opsdeck::model::DlqEntry>,
) -> opsdeck::model::Page<opsdeck::model::DlqEntry, opsdeck::model::DlqId> {
    let total = items.len() as u64;
    opsdeck::model::Page {
        items,
        next: None,
        total,
    }
}

/// An event as the live stream hands it out.
fn live(e: Event) -> StreamItem {
    StreamItem::Event(std::sync::Arc::new(e))
}

#[test]
fn the_regression_panes_at_160x48() {
    let scenes: [Scene; 3] = [
        ("compare", open_compare),
        ("assets_diff", |a| open_assets(a, 4, true)),
        ("pipelines", open_pipelines),
    ];
    for (name, setup) in scenes {
        let mut a = app(160, 48);
        setup(&mut a);
        insta::assert_snapshot!(format!("{name}_160x48"), text(&a));
    }
}

#[test]
fn two_marked_runs_are_compared_and_enter_diffs_a_stage_against_the_base() {
    let mut a = app(120, 30);
    key(&mut a, KeyCode::Char(' '));
    assert!(text(&a).contains("run 50 marked"), "{}", text(&a));
    chars(&mut a, "j");
    key(&mut a, KeyCode::Char(' '));
    let reqs = a.take_requests();
    assert!(
        reqs.contains(&Request::Compare {
            base: RunId(49),
            candidate: RunId(50)
        }),
        "the older run is the base: {reqs:?}"
    );
    assert_eq!(a.focus, opsdeck::tui::panes::PaneId::Compare);
    a.apply(comparison_msg());
    let screen = text(&a);
    assert!(
        screen.contains("regressed") && screen.contains("◆ transform-orders"),
        "{screen}"
    );
    assert!(
        screen.contains("◆ order-rules 3→4: transform-orders"),
        "{screen}"
    );
    chars(&mut a, "j");
    key(&mut a, KeyCode::Enter);
    assert_eq!(a.focus, opsdeck::tui::panes::PaneId::Stage);
    assert_eq!(a.panes.stage.diff_when_loaded, Some(RunId(49)));
    // Back returns to the comparison.
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.focus, opsdeck::tui::panes::PaneId::Compare);
    // The palette compares too, and says what it takes.
    a.on_action(Action::Palette);
    chars(&mut a, "compare 12 x");
    key(&mut a, KeyCode::Enter);
    assert!(
        a.flash
            .as_ref()
            .unwrap()
            .text
            .contains("`x` is not a run id")
    );
}

#[test]
fn the_assets_pane_edits_tests_pins_and_rolls_back_through_the_control_path() {
    let mut a = app(120, 30);
    open_assets(&mut a, 3, false);
    assert!(text(&a).contains("order-rules · v3 pinned · used by checkout-etl/transform-orders"));
    // e: a new version in the editor; enter is a new line, tab goes to the reason.
    key(&mut a, KeyCode::Char('e'));
    key(&mut a, KeyCode::Down);
    key(&mut a, KeyCode::End);
    key(&mut a, KeyCode::Enter);
    chars(&mut a, "  hold: true");
    key(&mut a, KeyCode::Tab);
    a.take_requests();
    key(&mut a, KeyCode::Enter);
    assert!(a.take_requests().is_empty(), "a reason first");
    chars(&mut a, "hold big orders");
    key(&mut a, KeyCode::Enter);
    let reqs = a.take_requests();
    let put = reqs.iter().find_map(|r| match r {
        Request::Control {
            cmd: Command::PutAsset { name, content, pin },
            reason,
        } => Some((name.clone(), content.clone(), *pin, reason.clone())),
        _ => None,
    });
    let (name, content, pin, reason) = put.expect("a put");
    assert_eq!(
        (name.as_str(), pin, reason.as_str()),
        ("order-rules", false, "hold big orders")
    );
    assert!(
        content.contains("amount_over: 1500\n  hold: true\n"),
        "{content}"
    );
    // t: pick the stage, and the test runs with this version.
    key(&mut a, KeyCode::Char('t'));
    key(&mut a, KeyCode::Enter);
    let reqs = a.take_requests();
    assert!(
        reqs.iter().any(
            |r| matches!(r, Request::Control { cmd: Command::StartRun(s), .. }
            if s.test.as_ref().is_some_and(|t| t.stage == "transform-orders")
                && s.overrides.get("order-rules") == Some(&3))
        ),
        "{reqs:?}"
    );
    a.apply(Msg::Done(opsdeck::model::Outcome::RunStarted {
        run: RunId(77),
    }));
    assert_eq!(a.focus, opsdeck::tui::panes::PaneId::Stage);
    assert!(
        a.panes.stage.diff_previous,
        "beside the last production output"
    );
    // Back returns to the asset whose version was tested.
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.focus, opsdeck::tui::panes::PaneId::Assets);
    // p pins the selected version, u rolls back: both ask for a reason first.
    key(&mut a, KeyCode::Tab);
    key(&mut a, KeyCode::Up);
    key(&mut a, KeyCode::Char('p'));
    assert!(matches!(a.popups.last(), Some(Popup::Confirm(c))
        if c.command == Command::PinAsset { name: "order-rules".into(), version: 4 }));
    key(&mut a, KeyCode::Esc);
    key(&mut a, KeyCode::Char('u'));
    assert!(matches!(a.popups.last(), Some(Popup::Confirm(c))
        if c.command == Command::RollbackAsset { name: "order-rules".into() }));
}

#[test]
fn s_saves_the_screen_as_shown_in_svg_and_text() {
    let mut a = app(100, 30);
    a.config.reports_dir = Some(std::path::PathBuf::from("/reports"));
    a.take_requests();
    key(&mut a, KeyCode::Char('S'));
    let reqs = a.take_requests();
    let Some(Request::SaveFiles { dir, files }) = reqs.first() else {
        panic!("{reqs:?}");
    };
    assert_eq!(dir, &std::path::PathBuf::from("/reports"));
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "opsdeck-runs-20261123-180000.svg",
            "opsdeck-runs-20261123-180000.txt"
        ]
    );
    let txt = String::from_utf8(files[1].1.clone()).unwrap();
    let shown: Vec<String> = text(&a).lines().map(|l| l.trim_end().to_string()).collect();
    assert_eq!(txt.lines().collect::<Vec<_>>(), shown, "exactly as shown");
    assert!(
        String::from_utf8(files[0].1.clone())
            .unwrap()
            .starts_with("<svg")
    );
    a.apply(Msg::Saved(vec!["/reports/x.svg".into()]));
    assert!(a.flash.as_ref().unwrap().text.contains("/reports/x.svg"));
}

#[test]
fn the_palette_starts_a_run_with_other_asset_versions() {
    let mut a = app(120, 30);
    a.take_requests();
    a.on_action(Action::Palette);
    chars(&mut a, "run checkout-etl order-rules=2");
    key(&mut a, KeyCode::Enter);
    let reqs = a.take_requests();
    assert!(
        reqs.iter().any(
            |r| matches!(r, Request::Control { cmd: Command::StartRun(s), .. }
            if s.pipeline == "checkout-etl" && s.overrides.get("order-rules") == Some(&2))
        ),
        "{reqs:?}"
    );
    a.on_action(Action::Palette);
    chars(&mut a, "run checkout-etl order-rules");
    key(&mut a, KeyCode::Enter);
    assert!(a.take_requests().is_empty());
    assert!(a.flash.as_ref().unwrap().text.contains("NAME=VERSION"));
}

/// Workers sharing a PostgreSQL store are counted in the header; SQLite shows no count.
#[test]
fn the_header_counts_the_workers_sharing_a_store() {
    let mut a = app(200, 50);
    let first = |a: &App| text(a).lines().next().unwrap_or_default().to_string();
    assert!(!first(&a).contains("worker"), "{}", first(&a));
    let mut o = overview();
    o.workers = Some(3);
    a.apply(Msg::Overview(o));
    assert!(
        first(&a).contains("ops · embedded · 3 workers"),
        "{}",
        first(&a)
    );
}
