//! `opsdeck snapshot` and reports: every pane in every format from live data, checked as a
//! reader would (the SVG parses and holds every cell where it belongs, the PNG decodes to its
//! size and is not blank, the HTML fetches nothing, the ANSI reproduces the screen in a
//! terminal emulator), deterministic for the same data and clock; bad input; and a report of
//! a real rollback.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;
use opsdeck::client::Embedded;
use opsdeck::host::{Host, HostOptions};
use opsdeck::model::RunId;
use opsdeck::tui::app::Config;
use opsdeck::tui::headless::{self, Shot, Target};
use opsdeck::tui::snapshot::{BASELINE_Y, CELL_H, CELL_W, Format, drawn_as_shape};
use opsdeck::tui::theme::{ColorDepth, Theme};
use ratatui::buffer::Buffer;

use crate::support::{TestWorkspace, until};

const ETL: &str = r#"[pipeline]
name = "etl"
[pipeline.retry]
max_attempts = 1
[[stage]]
id = "extract"
kind = "command"
asset = "rules"
command = ["sh", "-c", "echo '{\"rows\": 3, \"items\": [1, 2]}'"]
[[stage]]
id = "load"
kind = "command"
needs = ["extract"]
command = ["sh", "-c", "cat > /dev/null; echo '{\"loaded\": 3}'"]
"#;

const BROKEN: &str = r#"[pipeline]
name = "broken"
[pipeline.retry]
max_attempts = 1
[[stage]]
id = "call"
kind = "command"
command = ["sh", "-c", "echo 'upstream said no' >&2; exit 3"]
"#;

fn config(theme: &str) -> Config {
    Config::with_theme(Theme::load(theme, None, ColorDepth::TrueColor).unwrap())
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc
        .with_ymd_and_hms(2026, 11, 30, 12, 0, 0)
        .single()
        .unwrap()
}

async fn fixture() -> (TestWorkspace, Host) {
    let ws = TestWorkspace::new();
    ws.pipeline("etl", ETL);
    ws.pipeline("broken", BROKEN);
    ws.write("assets/rules.txt", "limit = 5\n");
    ws.write(
        "opsdeck.toml",
        "[canary.api]\nsource = \"simulate\"\nsteps = [ {weight = 10, pause = \"1h\"}, {weight = 100} ]\n",
    );
    let host = ws.host().await;
    for p in ["etl", "etl", "broken"] {
        crate::support::run_to_end(&host, p).await;
    }
    (ws, host)
}

fn targets() -> Vec<Target> {
    vec![
        Target::Runs,
        Target::Run(RunId(1)),
        Target::Stage(RunId(1), "extract".into()),
        Target::Diff(RunId(2), "extract".into()),
        Target::Canary(Some("api".into())),
        Target::Compare(RunId(1), RunId(2)),
        Target::Dlq,
        Target::Assets(Some("rules".into())),
        Target::Pipelines(Some("etl".into())),
        Target::Events,
    ]
}

fn shot(target: Target, size: (u16, u16)) -> Shot {
    Shot {
        target,
        size,
        config: config("light"),
        now: now(),
    }
}

/// Every cell's character is in the SVG where the cell is: in a `<text>` run starting at its
/// row's baseline, or as a shape tagged with the cell.
fn check_svg(svg: &str, buffer: &Buffer, what: &str) {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{what}: not XML: {e}"));
    let runs: Vec<(f64, f64, String)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| {
            let num = |a: &str| n.attribute(a).unwrap().parse::<f64>().unwrap();
            (num("x"), num("y"), n.text().unwrap_or_default().to_string())
        })
        .collect();
    let shapes: std::collections::HashSet<(String, String)> = doc
        .descendants()
        .filter_map(|n| {
            Some((
                n.attribute("data-cell")?.to_string(),
                n.attribute("data-ch")?.to_string(),
            ))
        })
        .collect();
    assert!(
        doc.descendants().any(|n| n.has_tag_name("title")),
        "{what}: a title"
    );
    let area = buffer.area;
    for y in 0..area.height {
        let baseline = f64::from(y) * CELL_H + BASELINE_Y;
        let mut x = 0;
        while x < area.width {
            let sym = buffer[(x, y)].symbol().to_string();
            let width = ratatui::text::Span::raw(sym.as_str()).width().max(1);
            let c = sym.chars().next().unwrap_or(' ');
            if sym.trim().is_empty() {
                x += 1;
                continue;
            }
            if sym.chars().count() == 1 && drawn_as_shape(c) {
                assert!(
                    shapes.contains(&(format!("{x},{y}"), sym.clone())),
                    "{what}: no shape for {sym:?} at {x},{y}"
                );
            } else {
                let found = runs.iter().any(|(rx, ry, text)| {
                    if (ry - baseline).abs() > 0.01 {
                        return false;
                    }
                    // The cell's offset in the run, in cells, to the character there.
                    let start = (rx / CELL_W).round() as u16;
                    if start > x {
                        return false;
                    }
                    let mut col = start;
                    for ch in text.chars() {
                        let s = ch.to_string();
                        if col == x {
                            return s == sym;
                        }
                        col += ratatui::text::Span::raw(s.as_str()).width().max(1) as u16;
                        if col > x {
                            return false;
                        }
                    }
                    false
                });
                assert!(
                    found,
                    "{what}: {sym:?} at {x},{y} is in no text run at its place"
                );
            }
            x += width as u16;
        }
    }
}

fn screen_text(buffer: &Buffer) -> Vec<String> {
    let area = buffer.area;
    (0..area.height)
        .map(|y| {
            let mut line = String::new();
            let mut x = 0;
            while x < area.width {
                let s = buffer[(x, y)].symbol();
                line.push_str(if s.is_empty() { " " } else { s });
                x += ratatui::text::Span::raw(s).width().max(1) as u16;
            }
            line.trim_end().to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pane_in_every_format_at_80x24_and_160x48() {
    let (_ws, host) = fixture().await;
    let b = Embedded::new(host.clone());
    for size in [(80u16, 24u16), (160, 48)] {
        for target in targets() {
            let what = format!("{} at {}x{}", target.label(), size.0, size.1);
            let app = headless::app_for(&b, &shot(target.clone(), size))
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let buffer = headless::draw(&app);
            let text = screen_text(&buffer);
            assert!(
                !text.iter().any(|l| l.contains("loading…")),
                "{what}: settled:\n{}",
                text.join("\n")
            );
            let render = |f| {
                let b = &b;
                let target = target.clone();
                async move {
                    headless::snapshot(b, shot(target, size), f, 1.0)
                        .await
                        .unwrap()
                }
            };
            let svg = String::from_utf8(render(Format::Svg).await).unwrap();
            check_svg(&svg, &buffer, &what);
            assert_eq!(
                svg.as_bytes(),
                render(Format::Svg).await,
                "{what}: the same data and clock give the same bytes"
            );
            let png = render(Format::Png).await;
            let pixmap = resvg::tiny_skia::Pixmap::decode_png(&png).unwrap();
            assert_eq!(
                (pixmap.width(), pixmap.height()),
                (
                    (f64::from(size.0) * CELL_W).round() as u32,
                    (f64::from(size.1) * CELL_H).round() as u32
                ),
                "{what}"
            );
            let colours: std::collections::HashSet<[u8; 4]> = pixmap
                .pixels()
                .iter()
                .map(|p| [p.red(), p.green(), p.blue(), p.alpha()])
                .collect();
            assert!(colours.len() > 8, "{what}: the PNG is not blank");
            let html = String::from_utf8(render(Format::Html).await).unwrap();
            for banned in ["<script", "http:", "https:", "src=", "url(", "@import"] {
                assert!(!html.contains(banned), "{what}: the HTML has {banned}");
            }
            assert!(html.starts_with("<!DOCTYPE html>"), "{what}");
            let ansi = String::from_utf8(render(Format::Ansi).await).unwrap();
            let nz = |n: u16| std::num::NonZeroU16::new(n).unwrap();
            let mut vt = vt100::Parser::new(nz(size.1 + 1), nz(size.0), 0);
            vt.process(ansi.replace('\n', "\r\n").as_bytes());
            let shown: Vec<String> = vt
                .screen()
                .contents()
                .lines()
                .take(usize::from(size.1))
                .map(|l| l.trim_end().to_string())
                .collect();
            assert_eq!(shown, text, "{what}: ANSI reproduces the screen");
            let txt = String::from_utf8(render(Format::Txt).await).unwrap();
            assert_eq!(txt.lines().collect::<Vec<_>>(), text, "{what}");
        }
    }
    host.shutdown().await;
}

#[test]
fn bad_snapshot_input_names_the_valid_choices_and_writes_nothing() {
    let ws = TestWorkspace::new();
    ws.pipeline("etl", crate::support::ETL);
    let out = ws.path("shot.svg");
    let o = out.to_str().unwrap();
    ws.run(&["snapshot", "--pane", "nope", "--format", "svg", "-o", o])
        .expect_error(
            2,
            "valid panes: runs, run, stage, diff, canary, compare, dlq, assets, pipelines, events",
        );
    ws.run(&["snapshot", "--pane", "runs", "--format", "gif", "-o", o])
        .expect_error(2, "valid formats: svg, png, html, ansi, txt");
    ws.run(&[
        "snapshot", "--pane", "runs", "--format", "svg", "--theme", "sepia", "-o", o,
    ])
    .expect_error(
        2,
        "the theme `sepia` named by --theme cannot be used: there is no theme `sepia`; valid themes: ",
    );
    ws.run(&[
        "snapshot", "--pane", "runs", "--format", "svg", "--size", "40x10", "-o", o,
    ])
    .expect_error(2, "below the dashboard's minimum of 60x15");
    ws.run(&[
        "snapshot", "--pane", "runs", "--format", "svg", "--size", "wide", "-o", o,
    ])
    .expect_error(2, "write COLSxROWS");
    ws.run(&["snapshot", "--pane", "run", "--format", "svg", "-o", o])
        .expect_error(2, "--pane run needs --select RUN");
    ws.run(&[
        "snapshot", "--pane", "run", "--select", "42", "--format", "svg", "-o", o,
    ])
    .expect_error(2, "there is no run 42");
    ws.run(&[
        "snapshot", "--pane", "canary", "--select", "nope", "--format", "txt", "-o", o,
    ])
    .expect_error(2, "there is no canary `nope`: this workspace defines none");
    let unwritable = ws.path("missing/dir/shot.svg");
    ws.run(&[
        "snapshot",
        "--pane",
        "runs",
        "--format",
        "svg",
        "-o",
        unwritable.to_str().unwrap(),
    ])
    .expect_error(2, "nothing was written");
    assert!(!out.exists() && !unwritable.exists());
    let piped = ws.run(&[
        "snapshot", "--pane", "runs", "--format", "txt", "--size", "80x24", "-o", "-",
    ]);
    piped.expect_code(0);
    assert!(piped.stdout().contains("No runs yet"), "{}", piped.stdout());
    assert_eq!(piped.stdout().lines().count(), 24);
}

/// Without `--format` the output file's extension says it; a canary's snapshot taken with no
/// host running says on stderr why its charts are empty.
#[test]
fn the_format_comes_from_the_extension_and_unhosted_charts_are_explained() {
    let ws = TestWorkspace::new();
    ws.pipeline("etl", crate::support::ETL).write(
        "opsdeck.toml",
        "[canary.api]\nsource = \"simulate\"\nsteps = [ {weight = 10, pause = \"1h\"}, {weight = 100} ]\n",
    );
    let svg = ws.path("runs.svg");
    ws.run(&["snapshot", "--pane", "runs", "-o", svg.to_str().unwrap()])
        .expect_code(0);
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let jpeg = ws.path("runs.jpeg");
    ws.run(&["snapshot", "--pane", "runs", "-o", jpeg.to_str().unwrap()])
        .expect_error(
            2,
            "does not say a format by its extension; give --format (svg, png, html, ansi, txt)",
        );
    assert!(!jpeg.exists());
    let txt = ws.path("api.txt");
    let shot = ws.run(&[
        "snapshot",
        "--pane",
        "canary",
        "--select",
        "api",
        "-o",
        txt.to_str().unwrap(),
    ]);
    shot.expect_code(0);
    assert!(
        shot.stderr()
            .contains("no host runs this workspace, so canary charts are empty"),
        "{}",
        shot.stderr()
    );
    // The runs pane has no charts: nothing to explain.
    let runs = ws.run(&["snapshot", "--pane", "runs", "-o", svg.to_str().unwrap()]);
    assert!(
        !runs.stderr().contains("canary charts"),
        "{}",
        runs.stderr()
    );
}

/// A report over a real rollback has it with the reason and the analysis numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_has_the_rollback_with_its_reason_and_numbers() {
    use opsdeck::clock::ManualClock;
    use opsdeck::model::{CanaryState, Command, Fault};
    use opsdeck::tui::report::{ReportFormat, Scope, build};
    let ws = TestWorkspace::new();
    ws.write(
        "opsdeck.toml",
        "[canary.api]\nsource = \"simulate\"\nsteps = [ {weight = 20, pause = \"1h\"}, {weight = 100} ]\nanalysis = { interval = \"5s\" }\nsimulate = { rps = 200 }\n",
    );
    let start = chrono::Utc::now();
    let clock = ManualClock::new(start);
    let mut opts = HostOptions::long_lived("report test");
    opts.clock = Arc::new(clock.clone());
    let host = Host::start(ws.open(), opts).await.unwrap();
    let fault = Command::Fault {
        canary: "api".into(),
        fault: Fault::new(0.3, 0.0).unwrap(),
    };
    crate::support::act(&host, fault, "drill").await.unwrap();
    for _ in 0..120 {
        if host.canary("api").unwrap().state == CanaryState::RolledBack {
            break;
        }
        let before = host.canary("api").unwrap().requests["legacy"]
            .as_u64()
            .unwrap_or(0);
        clock.advance(Duration::from_secs(1));
        until("the host to run the second", || {
            let host = host.clone();
            async move {
                let c = host.canary("api").unwrap();
                c.state.is_final() || c.requests["legacy"].as_u64().unwrap_or(0) > before
            }
        })
        .await;
    }
    assert_eq!(host.canary("api").unwrap().state, CanaryState::RolledBack);
    // The rollback's audit record commits just after the state changes in memory.
    until("the rollback to be in the audit log", || {
        let host = host.clone();
        async move {
            host.audit_log(opsdeck::model::AuditQuery {
                action: Some("canary.rollback".into()),
                limit: 10,
                ..opsdeck::model::AuditQuery::default()
            })
            .await
            .is_ok_and(|r| !r.is_empty())
        }
    })
    .await;
    let b = Embedded::new(host.clone());
    for format in [ReportFormat::Markdown, ReportFormat::Html] {
        let scope = Scope {
            since: opsdeck::model::Timestamp::from_datetime(start - chrono::Duration::minutes(1)),
            until: opsdeck::model::Timestamp::from_datetime(clock_now(&clock)),
            canaries: vec![],
            compare: None,
            format,
            stem: "incident".into(),
            config: config("light"),
            now: now(),
        };
        let report = build(&b, scope).await.unwrap();
        let doc = String::from_utf8(report.document).unwrap();
        assert!(doc.contains("canary.rollback canary/api"), "{doc}");
        assert!(doc.contains("progressing → rolled_back"), "{doc}");
        assert!(
            doc.contains("error_rate: fail"),
            "the analysis numbers: {doc}"
        );
        assert!(doc.contains("canary.fault canary/api"), "{doc}");
        match format {
            ReportFormat::Markdown => {
                assert!(
                    doc.contains("![canary api](incident-canary-api.png)"),
                    "{doc}"
                );
                assert_eq!(report.beside.len(), 1);
                assert!(resvg::tiny_skia::Pixmap::decode_png(&report.beside[0].1).is_ok());
            }
            ReportFormat::Html => {
                assert!(doc.contains("<svg") && !doc.contains("<script"), "{doc}");
                assert!(report.beside.is_empty());
            }
        }
    }
    host.shutdown().await;
}

fn clock_now(c: &opsdeck::clock::ManualClock) -> chrono::DateTime<chrono::Utc> {
    use opsdeck::clock::Clock;
    c.now()
}
