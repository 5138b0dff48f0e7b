//! The dashboard without a terminal: an [`App`] fed by a backend until it has what it asked
//! for, then drawn into a buffer of any size. `opsdeck snapshot`, the `S` key and reports
//! render panes this way, so a snapshot is exactly what the dashboard shows.

use chrono::{DateTime, Utc};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

use super::app::{App, Config};
use super::panes::PaneId;
use super::panes::stage::Target as StageTarget;
use super::request::{self, Request};
use super::snapshot::{Format, Page, render};
use crate::client::Backend;
use crate::model::RunId;

/// What a snapshot shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Runs,
    Run(RunId),
    Stage(RunId, String),
    /// A stage's output diffed against the previous successful run.
    Diff(RunId, String),
    Canary(Option<String>),
    Compare(RunId, RunId),
    Dlq,
    Assets(Option<String>),
    Pipelines(Option<String>),
    Events,
}

/// The panes `--pane` takes.
pub const PANES: &str = "runs, run, stage, diff, canary, compare, dlq, assets, pipelines, events";

fn id(s: &str) -> Result<RunId, String> {
    s.trim()
        .trim_start_matches('#')
        .parse()
        .map_err(|e: crate::model::ParseIdError| e.to_string())
}

impl Target {
    /// `--pane` and `--select`, or a sentence naming what is wrong and what fits.
    pub fn parse(pane: &str, select: Option<&str>) -> Result<Target, String> {
        let need =
            |what: &str| select.ok_or_else(|| format!("--pane {pane} needs --select {what}"));
        let stage = |what: &str| -> Result<(RunId, String), String> {
            let s = need(what)?;
            let (run, stage) = s
                .split_once('/')
                .ok_or_else(|| format!("--select `{s}` is not {what}; write it like 42/extract"))?;
            Ok((id(run)?, stage.to_string()))
        };
        let none = |t: Target| match select {
            Some(s) => Err(format!(
                "--pane {pane} shows everything and takes no --select (given `{s}`)"
            )),
            None => Ok(t),
        };
        Ok(match pane.trim() {
            "runs" => none(Target::Runs)?,
            "run" => Target::Run(id(need("RUN")?)?),
            "stage" => {
                let (r, s) = stage("RUN/STAGE")?;
                Target::Stage(r, s)
            }
            "diff" => {
                let (r, s) = stage("RUN/STAGE")?;
                Target::Diff(r, s)
            }
            "canary" => Target::Canary(select.map(str::to_string)),
            "compare" => {
                let s = need("BASE,CANDIDATE")?;
                let (a, b) = s.split_once([',', ' ']).ok_or_else(|| {
                    format!("--select `{s}` is not two runs; write it like 41,42")
                })?;
                Target::Compare(id(a)?, id(b)?)
            }
            "dlq" => none(Target::Dlq)?,
            "assets" => Target::Assets(select.map(str::to_string)),
            "pipelines" => Target::Pipelines(select.map(str::to_string)),
            "events" => none(Target::Events)?,
            other => {
                return Err(format!("unknown pane `{other}`; valid panes: {PANES}"));
            }
        })
    }

    /// Its name and selection, for titles.
    pub fn label(&self) -> String {
        match self {
            Target::Runs => "runs".into(),
            Target::Run(r) => format!("run {r}"),
            Target::Stage(r, s) => format!("stage {s} of run {r}"),
            Target::Diff(r, s) => format!("diff of {s} in run {r}"),
            Target::Canary(n) => format!("canary {}", n.as_deref().unwrap_or(""))
                .trim()
                .into(),
            Target::Compare(a, b) => format!("compare {a} → {b}"),
            Target::Dlq => "dead-letter queue".into(),
            Target::Assets(n) => format!("assets {}", n.as_deref().unwrap_or(""))
                .trim()
                .into(),
            Target::Pipelines(n) => format!("pipeline {}", n.as_deref().unwrap_or(""))
                .trim()
                .into(),
            Target::Events => "events".into(),
        }
    }
}

/// A snapshot to take: what, at which size, drawn how, as of when.
pub struct Shot {
    pub target: Target,
    pub size: (u16, u16),
    pub config: Config,
    pub now: DateTime<Utc>,
}

/// Answers what the app asked for until it asks for nothing more (reads only: a snapshot
/// never changes anything, and the live stream is left out).
pub async fn settle(app: &mut App, b: &dyn Backend) {
    for _ in 0..32 {
        let reqs: Vec<Request> = app
            .take_requests()
            .into_iter()
            .filter(|r| !matches!(r, Request::Subscribe { .. } | Request::Control { .. }))
            .collect();
        if reqs.is_empty() {
            return;
        }
        for r in reqs {
            let msg = request::answer(b, r).await;
            app.apply(msg);
        }
    }
}

/// The app showing `target`, settled; or a sentence naming what does not exist.
pub async fn app_for(b: &dyn Backend, shot: &Shot) -> Result<App, String> {
    let (w, h) = shot.size;
    let mut app = App::new(shot.config.clone(), Rect::new(0, 0, w, h), shot.now);
    // The data is read whole just now: the header says so rather than "connecting".
    app.connected = true;
    app.ever_connected = true;
    settle(&mut app, b).await;
    let missing = |e: crate::model::ApiError| e.message;
    match &shot.target {
        Target::Runs => {}
        Target::Run(id) => {
            b.run(*id).await.map_err(missing)?;
            app.open_run(*id, PaneId::Runs);
        }
        Target::Stage(id, stage) | Target::Diff(id, stage) => {
            let run = b.run(*id).await.map_err(missing)?;
            if run.stage(stage).is_none() {
                let ids: Vec<&str> = run.stages.iter().map(|s| s.id.as_str()).collect();
                return Err(format!(
                    "run {id} has no stage `{stage}`; its stages: {}",
                    ids.join(", ")
                ));
            }
            app.open_stage(
                StageTarget {
                    run: *id,
                    pipeline: run.pipeline.clone(),
                    stage: stage.clone(),
                },
                PaneId::Runs,
            );
            if matches!(shot.target, Target::Diff(..)) {
                app.panes.stage.diff_previous = true;
            }
        }
        Target::Canary(name) => {
            app.focus_pane(PaneId::Canary);
            settle(&mut app, b).await;
            if let Some(n) = name {
                app.panes.canary.select(n)?;
                let series = app.panes.canary.series_request();
                app.outbox.extend(series);
            }
        }
        Target::Compare(a, c) => {
            b.run(*a).await.map_err(missing)?;
            b.run(*c).await.map_err(missing)?;
            app.compare(*a, *c);
        }
        Target::Dlq => app.focus_pane(PaneId::Dlq),
        Target::Assets(name) => {
            app.focus_pane(PaneId::Assets);
            settle(&mut app, b).await;
            if let Some(n) = name {
                let req = app.panes.assets.select(n)?;
                app.outbox.push(req);
            }
        }
        Target::Pipelines(name) => {
            if let Some(n) = name {
                let names: Vec<String> = app
                    .overview
                    .as_ref()
                    .map(|o| o.pipelines.iter().map(|p| p.name.clone()).collect())
                    .unwrap_or_default();
                let i = names.iter().position(|p| p == n).ok_or_else(|| {
                    format!(
                        "there is no pipeline `{n}`; pipelines: {}",
                        names.join(", ")
                    )
                })?;
                app.panes.pipelines.index = i;
            }
            app.focus_pane(PaneId::Pipelines);
        }
        Target::Events => app.focus_pane(PaneId::Events),
    }
    settle(&mut app, b).await;
    Ok(app)
}

/// Draws the app as it stands into a buffer of its size.
pub fn draw(app: &App) -> Buffer {
    let (w, h) = (app.size.width, app.size.height);
    let mut term = match Terminal::new(TestBackend::new(w, h)) {
        Ok(t) => t,
        Err(e) => match e {},
    };
    let _ = term.draw(|f| super::view::render(f, app));
    term.backend().buffer().clone()
}

/// The title a snapshot carries: the pane and the time.
pub fn title(label: &str, now: DateTime<Utc>) -> String {
    format!(
        "opsdeck · {label} · {}",
        now.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// Takes a snapshot: the pane from live data, in `format`.
pub async fn snapshot(
    b: &dyn Backend,
    shot: Shot,
    format: Format,
    scale: f32,
) -> Result<Vec<u8>, String> {
    let app = app_for(b, &shot).await?;
    let buffer = draw(&app);
    let page = Page {
        buffer: &buffer,
        theme: &app.config.theme,
        title: title(&shot.target.label(), shot.now),
    };
    render(format, &page, scale)
}
