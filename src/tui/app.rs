//! The dashboard's state and how it changes. Input (keys, mouse, resizes) and backend answers
//! ([`Msg`]) update plain data; what must be fetched is queued as [`Request`]s for the worker.
//! Nothing here draws or does I/O, so every transition can be tested directly.

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;

use super::action::Action;
use super::keymap::{Context, Key, Keymap, Lookup};
use super::panes::canary::{self as canary_pane, CanaryPane};
use super::panes::dlq::DlqPane;
use super::panes::events::EventsPane;
use super::panes::run_detail::{self, RunDetail};
use super::panes::runs::{RunsList, parse_filter};
use super::panes::stage::{DiffState, StagePane, Target};
use super::panes::{Motion, PaneId, areas, content_rows_for, inner, table_rows};
use super::popup::{self, Outcome, Picker, Popup};
use super::request::{Msg, Request};
use super::theme::{ColorDepth, Theme};
use crate::client::StreamItem;
use crate::model::{
    CanaryAction, CanaryState, Command, Event, EventKind, Fault, Outcome as Done, Overview, RunId,
    RunStatus, StartRun,
};

/// What the dashboard needs from its configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub theme: Theme,
    pub keymap: Keymap,
    pub mouse: bool,
    /// Where user themes live, for `:theme NAME`.
    pub theme_dir: Option<PathBuf>,
    pub depth: ColorDepth,
    /// `NO_COLOR` is set: stay monochrome whatever theme is asked for.
    pub no_color: bool,
    /// A word for the header about where this is, such as `demo`, so nobody mistakes the demo
    /// for production.
    pub label: Option<String>,
    /// Refuse (and hide) every control action: `--read-only`.
    pub read_only: bool,
}

/// A line in the footer for a few seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub text: String,
    pub error: bool,
    pub until: DateTime<Utc>,
}

/// Text being typed into the footer: a filter for the runs list or the event log.
#[derive(Debug, Clone)]
pub struct LineInput {
    pub target: PaneId,
    pub text: ratatui_textarea::TextArea<'static>,
    /// What is wrong with the text so far; shown beside it, and nothing is applied meanwhile.
    pub error: Option<String>,
}

/// Data that changed since it was last fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stale {
    Overview,
    Runs,
    Detail,
    Stage,
    Dlq,
    Canaries,
}

pub struct App {
    pub config: Config,
    pub size: Rect,
    pub now: DateTime<Utc>,
    pub focus: PaneId,
    pub runs: RunsList,
    pub detail: Option<RunDetail>,
    pub stage: StagePane,
    pub dlq: DlqPane,
    pub events: EventsPane,
    pub canary: CanaryPane,
    /// A rollback happened: shown across the dashboard until the canary pane is opened.
    pub alert: Option<String>,
    pub popups: Vec<Popup>,
    pub input: Option<LineInput>,
    pub overview: Option<Overview>,
    pub connected: bool,
    /// Read-only because the server says this token is a viewer (not `--read-only`).
    pub viewer: bool,
    /// The event stream has been up at least once: a drop now means the data on screen is stale.
    pub ever_connected: bool,
    pub flash: Option<Flash>,
    pub quit: bool,
    pending: Vec<Key>,
    outbox: Vec<Request>,
    stale: BTreeSet<Stale>,
    next_tag: u64,
    subscribed: bool,
}

impl App {
    pub fn new(config: Config, size: Rect, now: DateTime<Utc>) -> App {
        let mut app = App {
            config,
            size,
            now,
            focus: PaneId::Runs,
            runs: RunsList::default(),
            detail: None,
            stage: StagePane::default(),
            dlq: DlqPane::default(),
            events: EventsPane::default(),
            canary: CanaryPane::default(),
            alert: None,
            popups: Vec::new(),
            input: None,
            overview: None,
            connected: false,
            ever_connected: false,
            viewer: false,
            flash: None,
            quit: false,
            pending: Vec::new(),
            outbox: Vec::new(),
            stale: BTreeSet::new(),
            next_tag: 0,
            subscribed: false,
        };
        app.outbox.push(Request::Overview);
        app.outbox.push(Request::Dlq);
        app.outbox.push(Request::Canaries);
        app.reload_runs();
        app
    }

    /// Requests queued by the last updates.
    pub fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.outbox)
    }

    fn tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }

    fn read_only_why(&self) -> &'static str {
        if self.viewer {
            "read-only: this token has the viewer role; control actions need operator"
        } else {
            "read-only: control actions are off (--read-only)"
        }
    }

    fn flash(&mut self, text: impl Into<String>, error: bool) {
        self.flash = Some(Flash {
            text: text.into(),
            error,
            until: self.now + chrono::Duration::seconds(5),
        });
    }

    // ----- sizes -------------------------------------------------------------------------

    fn list_view(&self) -> usize {
        table_rows(self.size)
    }

    fn detail_view(&self) -> usize {
        run_detail::table_rows(areas(self.size).body)
    }

    fn stage_view(&self) -> usize {
        content_rows_for(self.size)
    }

    fn events_view(&self) -> usize {
        usize::from(inner(areas(self.size).body).height)
    }

    /// The keymap contexts of the focused pane, most specific first.
    pub fn contexts(&self) -> Vec<Context> {
        match self.focus {
            PaneId::Runs if self.detail.is_some() => {
                vec![Context::Run, Context::List, Context::Global]
            }
            PaneId::Runs => vec![Context::Runs, Context::Run, Context::List, Context::Global],
            PaneId::Stage => vec![Context::Stage, Context::List, Context::Global],
            PaneId::Dlq => vec![Context::Dlq, Context::List, Context::Global],
            PaneId::Events => vec![Context::Events, Context::List, Context::Global],
            PaneId::Canary => vec![Context::Canary, Context::List, Context::Global],
        }
    }

    // ----- input -------------------------------------------------------------------------

    pub fn on_resize(&mut self, width: u16, height: u16) {
        self.size = Rect::new(0, 0, width, height);
        let (list, detail, events) = (self.list_view(), self.detail_view(), self.events_view());
        self.runs.cursor.keep_visible(self.runs.len(), list);
        if let Some(d) = &mut self.detail {
            d.cursor.keep_visible(d.stage_count(), detail);
        }
        self.dlq.cursor.keep_visible(
            self.dlq.entries.len(),
            super::panes::dlq::table_rows(self.size),
        );
        self.events
            .cursor
            .keep_visible(self.events.matches.len(), events);
        if self.runs.needs_window(list) {
            self.fetch_window();
        }
    }

    pub fn on_key(&mut self, key: KeyEvent) {
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return;
        }
        // Nothing is on screen to act on: keys must not confirm dialogs no one can see.
        if super::panes::too_small(self.size) {
            return;
        }
        if let Some(top) = self.popups.last_mut() {
            let outcome = top.on_key(key);
            self.on_outcome(outcome);
            return;
        }
        if self.input.is_some() {
            self.on_input_key(key);
            return;
        }
        self.pending.push(Key::from_event(&key));
        let contexts = self.contexts();
        let mut found = self.config.keymap.lookup(&contexts, &self.pending);
        if found == Lookup::Unbound && self.pending.len() > 1 {
            // A sequence went nowhere: the last key may still mean something alone.
            self.pending = vec![Key::from_event(&key)];
            found = self.config.keymap.lookup(&contexts, &self.pending);
        }
        match found {
            Lookup::Action(a) => {
                self.pending.clear();
                self.on_action(a);
            }
            Lookup::Pending => {}
            Lookup::Unbound => self.pending.clear(),
        }
    }

    pub fn on_mouse(&mut self, m: MouseEvent) {
        if !self.config.mouse || !self.popups.is_empty() {
            return;
        }
        match m.kind {
            MouseEventKind::ScrollDown => self.motion(Motion::Down),
            MouseEventKind::ScrollUp => self.motion(Motion::Up),
            MouseEventKind::Down(_) => {
                let a = areas(self.size);
                if m.row == a.header.y {
                    if let Some(pane) = super::view::tab_at(self, m.column) {
                        self.focus_pane(pane);
                    }
                    return;
                }
                // A click on a row of a list selects it.
                let top = inner(a.body).y + 1;
                if m.row >= top && m.row < a.body.y + a.body.height.saturating_sub(1) {
                    let row = usize::from(m.row - top);
                    self.select_row(row);
                }
            }
            _ => {}
        }
    }

    fn select_row(&mut self, row: usize) {
        match self.focus {
            PaneId::Runs if self.detail.is_none() => {
                let target = self.runs.cursor.offset + row;
                if target < self.runs.len() {
                    self.runs.cursor.selected = target;
                    self.runs.selected_id = self.runs.selected().map(|r| r.id);
                }
            }
            PaneId::Dlq => {
                let target = self.dlq.cursor.offset + row;
                if target < self.dlq.entries.len() {
                    self.dlq.cursor.selected = target;
                }
            }
            _ => {}
        }
    }

    fn on_input_key(&mut self, key: KeyEvent) {
        let Some(input) = &mut self.input else { return };
        match key.code {
            KeyCode::Esc => {
                let target = input.target;
                self.input = None;
                let _ = self.set_filter(target, String::new());
            }
            // An invalid filter keeps the input open with its explanation.
            KeyCode::Enter if input.error.is_none() => self.input = None,
            KeyCode::Enter => {}
            _ => {
                input.text.input(key);
                let (target, text) = (input.target, input.text.lines().join(" "));
                let error = self.set_filter(target, text).err();
                if let Some(input) = &mut self.input {
                    input.error = error;
                }
            }
        }
    }

    /// Applies a filter, or says what is wrong with it (and leaves the current one in place).
    fn set_filter(&mut self, target: PaneId, text: String) -> Result<(), String> {
        match target {
            PaneId::Events => {
                self.events.filter = text;
                let view = self.events_view();
                self.events.refilter(view);
            }
            _ => {
                parse_filter(&text)?;
                if self.runs.filter != text {
                    self.runs.filter = text;
                    self.reload_runs();
                }
            }
        }
        Ok(())
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Keep => {}
            Outcome::Close => {
                self.popups.pop();
            }
            Outcome::PaletteEdited => self.update_palette(),
            Outcome::Confirmed { control, reason } => {
                self.popups.pop();
                self.outbox.push(Request::Control {
                    cmd: control,
                    reason,
                });
            }
            Outcome::Pipeline(name) => {
                self.popups.pop();
                self.start_run(name);
            }
            Outcome::Baseline(id) => {
                self.popups.pop();
                self.request_diff(Some(id));
            }
            Outcome::Command(line) => {
                self.popups.pop();
                self.run_command(&line);
            }
            Outcome::Quit => {
                self.popups.pop();
                self.quit = true;
            }
        }
    }

    fn pipeline_names(&self) -> Vec<String> {
        self.overview
            .as_ref()
            .map(|o| o.pipelines.iter().map(|p| p.name.clone()).collect())
            .unwrap_or_default()
    }

    fn update_palette(&mut self) {
        let pipes = self.pipeline_names();
        let themes = Theme::names(self.config.theme_dir.as_deref());
        if let Some(Popup::Palette(p)) = self.popups.last_mut() {
            let typed = p.input.lines().join(" ");
            p.candidates = popup::candidates(&typed, &pipes, &themes);
            p.selected = p.selected.min(p.candidates.len().saturating_sub(1));
        }
    }

    fn run_command(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        let (cmd, arg) = (words.next().unwrap_or(""), words.next());
        if self.config.read_only && matches!(cmd, "run" | "fault") {
            return self.flash(self.read_only_why(), true);
        }
        match (cmd, arg) {
            ("", _) => {}
            ("runs", arg) => {
                self.focus_pane(PaneId::Runs);
                self.detail = None;
                let filter = arg.map(|p| format!("pipeline:{p}")).unwrap_or_default();
                if let Err(e) = self.set_filter(PaneId::Runs, filter) {
                    self.flash(e, true);
                }
            }
            ("run", Some(name)) => {
                let names = self.pipeline_names();
                if names.iter().any(|n| n == name) {
                    self.start_run(name.to_string());
                } else {
                    self.flash(
                        format!(
                            "there is no pipeline `{name}`; pipelines: {}",
                            names.join(", ")
                        ),
                        true,
                    );
                }
            }
            ("run", None) => self.flash(
                "`:run` needs a pipeline name, like `:run checkout-etl`",
                true,
            ),
            ("stage", _) => self.focus_pane(PaneId::Stage),
            ("dlq", _) => self.focus_pane(PaneId::Dlq),
            ("canary" | "canaries", _) => self.focus_pane(PaneId::Canary),
            ("fault", arg) => {
                let rest: Vec<&str> = arg.into_iter().chain(words).collect();
                self.inject(&rest);
            }
            ("events", _) => self.focus_pane(PaneId::Events),
            ("theme", Some(_)) if self.config.no_color => {
                self.flash(
                    "NO_COLOR is set, so opsdeck stays monochrome; unset it to use colour themes",
                    true,
                );
            }
            ("theme", Some(name)) => {
                match Theme::load(name, self.config.theme_dir.as_deref(), self.config.depth) {
                    Ok(t) => {
                        self.config.theme = t;
                        self.flash(format!("theme {name}"), false);
                    }
                    Err(e) => self.flash(
                        e.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; "),
                        true,
                    ),
                }
            }
            ("theme", None) => {
                let names = Theme::names(self.config.theme_dir.as_deref());
                self.flash(format!("`:theme` needs a name: {}", names.join(", ")), true);
            }
            ("help", _) => self.popups.push(Popup::Help { scroll: 0 }),
            ("quit" | "q", _) => self.quit = true,
            (other, _) => {
                let names: Vec<&str> = popup::COMMANDS.iter().map(|(c, _)| *c).collect();
                self.flash(
                    format!("unknown command `{other}`; commands: {}", names.join(", ")),
                    true,
                );
            }
        }
    }

    // ----- actions -----------------------------------------------------------------------

    pub fn on_action(&mut self, a: Action) {
        if self.config.read_only && a.is_control() {
            return self.flash(self.read_only_why(), true);
        }
        if let Some(m) = Motion::from_action(a) {
            self.motion(m);
            return;
        }
        match a {
            // `q` quits at the top level; inside a run, a diff or a filter it goes back first.
            Action::Quit if self.nested() => self.back(),
            Action::Quit => {
                // Quitting stops the host: runs in flight are interrupted (they resume at the
                // next start), so ask first.
                let running = self.overview.as_ref().map_or(0, |o| o.running);
                if running > 0 {
                    self.popups.push(Popup::ConfirmQuit { running });
                } else {
                    self.quit = true;
                }
            }
            Action::Help => self.popups.push(Popup::Help { scroll: 0 }),
            Action::Palette => {
                self.popups.push(popup::palette());
                self.update_palette();
            }
            Action::PaneRuns => self.focus_pane(PaneId::Runs),
            Action::PaneStage => self.focus_pane(PaneId::Stage),
            Action::PaneDlq => self.focus_pane(PaneId::Dlq),
            Action::PaneCanary => self.focus_pane(PaneId::Canary),
            Action::Promote
            | Action::PromoteFull
            | Action::PauseResume
            | Action::SetWeight
            | Action::Rollback => self.confirm_canary_control(a),
            Action::ChartSpan => {
                self.canary.span = (self.canary.span + 1) % canary_pane::SPANS.len();
                self.request_series();
            }
            Action::ChartQuantile => self.canary.quantile = self.canary.quantile.next(),
            Action::PaneEvents => self.focus_pane(PaneId::Events),
            Action::Back => self.back(),
            Action::Open => self.open(),
            Action::Filter => {
                let target = if self.focus == PaneId::Events {
                    PaneId::Events
                } else {
                    PaneId::Runs
                };
                if target == PaneId::Runs && self.focus != PaneId::Runs {
                    return;
                }
                let current = if target == PaneId::Events {
                    self.events.filter.clone()
                } else {
                    self.runs.filter.clone()
                };
                let mut text = popup::text_input("pipeline text, status:failed, #42");
                text.insert_str(current);
                self.input = Some(LineInput {
                    target,
                    text,
                    error: None,
                });
            }
            Action::Sort => {
                self.runs.sort = self.runs.sort.next();
                self.reload_runs();
            }
            Action::NewRun => {
                let items = self
                    .overview
                    .as_ref()
                    .map(|o| o.pipelines.clone())
                    .unwrap_or_default();
                self.popups.push(Popup::PickPipeline(Picker::new(items)));
            }
            Action::RetryRun | Action::CancelRun => self.confirm_run_control(a),
            Action::Requeue | Action::Discard => self.confirm_dlq_control(a),
            Action::NextAttempt | Action::PrevAttempt => {
                self.stage.step_attempt(a == Action::NextAttempt);
            }
            Action::NextSection | Action::PrevSection => {
                if self.stage.diff.is_none() {
                    self.stage.step_section(a == Action::NextSection);
                }
            }
            Action::Diff => {
                if self.stage.diff.is_some() {
                    self.stage.diff = None;
                } else {
                    self.request_diff(None);
                }
            }
            Action::PickBaseline => {
                if let Some(t) = &self.stage.target {
                    self.outbox.push(Request::BaselineCandidates {
                        pipeline: t.pipeline.clone(),
                        stage: t.stage.clone(),
                        before: t.run,
                    });
                }
            }
            Action::DiffLayout => {
                if let Some(d) = &mut self.stage.diff {
                    d.split = !d.split;
                    d.scroll = 0;
                }
            }
            Action::Follow => {
                self.events.follow = !self.events.follow;
                if self.events.follow {
                    let view = self.events_view();
                    self.events
                        .cursor
                        .apply(Motion::Bottom, self.events.matches.len(), view);
                }
            }
            Action::Up
            | Action::Down
            | Action::PageUp
            | Action::PageDown
            | Action::Top
            | Action::Bottom => {}
        }
    }

    fn motion(&mut self, m: Motion) {
        match self.focus {
            PaneId::Runs => {
                if let Some(d) = &mut self.detail {
                    let view = run_detail::table_rows(areas(self.size).body);
                    d.cursor.apply(m, d.stage_count(), view);
                } else {
                    let view = self.list_view();
                    self.runs.apply_motion(m, view);
                    if self.runs.needs_window(view) {
                        self.fetch_window();
                    }
                }
            }
            PaneId::Stage => {
                let view = self.stage_view();
                self.stage.apply_motion(m, view);
            }
            PaneId::Dlq => {
                let view = super::panes::dlq::table_rows(self.size);
                self.dlq.cursor.apply(m, self.dlq.entries.len(), view);
            }
            PaneId::Canary => {
                let before = self.canary.cursor.selected;
                let len = self.canary.canaries.len();
                self.canary.cursor.apply(m, len, canary_pane::LIST_ROWS);
                if self.canary.cursor.selected != before {
                    self.request_series();
                }
            }
            PaneId::Events => {
                let view = self.events_view();
                let at_top = self.events.cursor.selected == 0;
                self.events.apply_motion(m, view);
                // Moving up past the oldest event held pages back into the store.
                if at_top
                    && matches!(m, Motion::Up | Motion::PageUp | Motion::Top)
                    && self.events.has_older()
                {
                    self.outbox.push(Request::OlderEvents {
                        before: self.events.first_seq(),
                        limit: 500,
                    });
                }
            }
        }
    }

    pub fn focus_pane(&mut self, pane: PaneId) {
        self.focus = pane;
        if pane == PaneId::Canary {
            // Whoever opens the canary pane has seen the rollback the banner announced.
            self.alert = None;
            self.stale.insert(Stale::Canaries);
        }
        self.refresh();
    }

    fn request_series(&mut self) {
        if let Some(c) = self.canary.selected() {
            self.outbox.push(Request::CanarySeries {
                name: c.name.clone(),
                step_s: self.canary.step_s(),
                points: canary_pane::POINTS,
            });
        }
    }

    /// Whether the focused pane shows something `back` would leave.
    fn nested(&self) -> bool {
        match self.focus {
            PaneId::Runs => self.detail.is_some() || !self.runs.filter.is_empty(),
            PaneId::Stage => {
                self.stage.diff.is_some() || (self.stage.target.is_some() && self.detail.is_some())
            }
            PaneId::Events => !self.events.filter.is_empty(),
            PaneId::Dlq | PaneId::Canary => false,
        }
    }

    fn back(&mut self) {
        match self.focus {
            PaneId::Runs if self.detail.is_some() => {
                let origin = self.detail.take().map_or(PaneId::Runs, |d| d.origin);
                if origin != PaneId::Runs {
                    self.focus_pane(origin);
                }
            }
            PaneId::Runs if !self.runs.filter.is_empty() => {
                let _ = self.set_filter(PaneId::Runs, String::new());
            }
            PaneId::Events if !self.events.filter.is_empty() => {
                let _ = self.set_filter(PaneId::Events, String::new());
            }
            PaneId::Stage if self.stage.diff.is_some() => self.stage.diff = None,
            PaneId::Stage if self.stage.target.is_some() && self.detail.is_some() => {
                self.focus_pane(PaneId::Runs);
            }
            PaneId::Runs => {}
            _ => self.focus_pane(PaneId::Runs),
        }
    }

    fn open(&mut self) {
        match self.focus {
            PaneId::Runs => match &self.detail {
                None => {
                    if let Some(id) = self.runs.selected().map(|r| r.id) {
                        self.open_run(id);
                    }
                }
                Some(d) => {
                    let (Some(run), Some(stage)) = (&d.run, d.selected_stage()) else {
                        return;
                    };
                    let target = Target {
                        run: run.id,
                        pipeline: run.pipeline.clone(),
                        stage: stage.to_string(),
                    };
                    self.open_stage(target);
                }
            },
            PaneId::Dlq => {
                if let Some(id) = self.dlq.selected().map(|e| e.run_id) {
                    self.focus = PaneId::Runs;
                    self.open_run(id);
                    self.set_origin(PaneId::Dlq);
                }
            }
            PaneId::Events => {
                let run = self
                    .events
                    .matches
                    .get(self.events.cursor.selected)
                    .and_then(|&i| self.events.events[i].run_id);
                if let Some(id) = run {
                    self.focus = PaneId::Runs;
                    self.open_run(id);
                    self.set_origin(PaneId::Events);
                }
            }
            PaneId::Stage | PaneId::Canary => {}
        }
    }

    fn set_origin(&mut self, origin: PaneId) {
        if let Some(d) = &mut self.detail {
            d.origin = origin;
        }
    }

    pub fn open_run(&mut self, id: RunId) {
        self.detail = Some(RunDetail::new(id));
        self.outbox.push(Request::Run { id });
    }

    pub fn open_stage(&mut self, target: Target) {
        if self.stage.target.as_ref() != Some(&target) {
            self.outbox.push(Request::StageIo {
                id: target.run,
                stage: target.stage.clone(),
            });
            self.stage = StagePane::open(target);
        }
        self.focus = PaneId::Stage;
    }

    fn request_diff(&mut self, baseline: Option<RunId>) {
        let (Some(t), Some(io)) = (&self.stage.target, &self.stage.io) else {
            return;
        };
        let Some(a) = io.attempts.get(self.stage.attempt) else {
            return;
        };
        let split = self.stage.diff.as_ref().is_some_and(|d| d.split);
        self.outbox.push(Request::Diff {
            pipeline: t.pipeline.clone(),
            stage: t.stage.clone(),
            candidate: t.run,
            attempt: a.n,
            output: a.output.clone(),
            baseline,
        });
        self.stage.diff = Some(DiffState {
            view: None,
            message: None,
            split,
            scroll: 0,
            baseline,
        });
    }

    fn confirm_run_control(&mut self, a: Action) {
        let run = match (&self.detail, self.focus) {
            (Some(d), PaneId::Runs) => d.run.as_ref().map(|r| (r.id, r.pipeline.clone(), r.status)),
            (None, PaneId::Runs) => self
                .runs
                .selected()
                .map(|r| (r.id, r.pipeline.clone(), r.status)),
            _ => None,
        };
        let Some((id, pipeline, status)) = run else {
            return;
        };
        // Say at once what cannot be done, rather than ask and then fail.
        if a == Action::CancelRun && status.is_finished() {
            self.flash(
                format!("run {id} already finished ({status}); there is nothing to cancel"),
                true,
            );
            return;
        }
        if a == Action::RetryRun && !matches!(status, RunStatus::Failed | RunStatus::Cancelled) {
            let hint = if status == RunStatus::Interrupted {
                "; it resumes when a host starts"
            } else {
                ""
            };
            self.flash(
                format!("run {id} is {status}; only failed or cancelled runs can be retried{hint}"),
                true,
            );
            return;
        }
        let popup = if a == Action::CancelRun {
            popup::confirm(
                format!("Cancel run {id} ({pipeline})?"),
                vec![
                    format!(
                        "Status now: {status}. Stages still running are killed; stages not started are skipped."
                    ),
                    "The run ends cancelled; its failed stages can be retried later.".into(),
                ],
                Command::CancelRun { run: id },
            )
        } else {
            popup::confirm(
                format!("Retry run {id} ({pipeline})?"),
                vec![
                    format!(
                        "Status now: {status}. Its failed, cancelled and skipped stages run again with fresh attempts."
                    ),
                    "Stages that succeeded keep their results and are not run again.".into(),
                ],
                Command::RetryRun { run: id },
            )
        };
        self.popups.push(popup);
    }

    fn confirm_dlq_control(&mut self, a: Action) {
        if self.focus != PaneId::Dlq {
            return;
        }
        let Some(e) = self.dlq.selected().cloned() else {
            return;
        };
        let popup = if a == Action::Requeue {
            popup::confirm(
                format!("Requeue dead-letter entry {}?", e.id),
                vec![
                    format!(
                        "Stage `{}` of run {} ({}) gets new attempts.",
                        e.stage, e.run_id, e.pipeline
                    ),
                    "If it succeeds, the run continues with the stages it skipped.".into(),
                ],
                Command::Requeue { entry: e.id },
            )
        } else {
            popup::confirm(
                format!("Discard dead-letter entry {}?", e.id),
                vec![
                    format!(
                        "The entry for stage `{}` is removed and run {} ({}) stays failed.",
                        e.stage, e.run_id, e.pipeline
                    ),
                    "This cannot be undone.".into(),
                ],
                Command::Discard { entry: e.id },
            )
        };
        self.popups.push(popup);
    }

    /// `:fault ERRORS% [MS]` or `:fault off` on the selected canary.
    fn inject(&mut self, args: &[&str]) {
        let Some(name) = self.canary.selected().map(|c| c.name.clone()) else {
            return self.flash("`:fault` acts on the selected canary; there is none", true);
        };
        let usage = "write `:fault 8` for 8% more errors, `:fault 0 300` for 300ms more latency, or `:fault off`";
        let fault = match args {
            ["off" | "clear"] => Fault::default(),
            [errors] | [errors, _] => {
                let e = errors.trim_end_matches('%').parse::<f64>();
                let ms = args
                    .get(1)
                    .map_or(Ok(0.0), |m| m.trim_end_matches("ms").parse::<f64>());
                match (e, ms) {
                    (Ok(e), Ok(ms))
                        if (0.0..=100.0).contains(&e) && (0.0..=600_000.0).contains(&ms) =>
                    {
                        Fault {
                            error_rate: e / 100.0,
                            latency_ms: ms,
                        }
                    }
                    _ => {
                        return self.flash(
                            format!("`:fault {}` is not a fault; {usage}", args.join(" ")),
                            true,
                        );
                    }
                }
            }
            _ => return self.flash(format!("`:fault` needs numbers; {usage}"), true),
        };
        self.outbox.push(Request::Control {
            cmd: Command::Fault {
                canary: name,
                fault,
            },
            reason: String::new(),
        });
    }

    fn start_run(&mut self, pipeline: String) {
        self.outbox.push(Request::Control {
            cmd: Command::StartRun(StartRun {
                pipeline,
                ..StartRun::default()
            }),
            reason: String::new(),
        });
    }

    fn confirm_canary_control(&mut self, a: Action) {
        if self.focus != PaneId::Canary {
            return;
        }
        let Some(c) = self.canary.selected().cloned() else {
            return;
        };
        let name = c.name.clone();
        let w = c.weight;
        let ended = c.state.is_final();
        let next = c.steps.get(c.step + 1).map_or(100.0, |s| s.weight);
        let refuse = |what: &str| format!("canary {name} is {}; {what}", c.state);
        let control = |action| Command::Canary {
            canary: name.clone(),
            action,
        };
        let popup = match a {
            Action::Promote if ended => {
                return self.flash(
                    refuse("restart it from the command line to promote again"),
                    true,
                );
            }
            Action::Promote => popup::confirm(
                format!("Promote canary {name} to step {}?", c.step + 2),
                vec![
                    format!("Weight {w}% -> {next}% now, without waiting for this step's pause."),
                    "Analysis starts again on the new step; a failing check still rolls back."
                        .into(),
                ],
                control(CanaryAction::Promote),
            ),
            Action::PromoteFull if ended => {
                return self.flash(refuse("there is nothing to promote"), true);
            }
            Action::PromoteFull => popup::confirm(
                format!("Promote canary {name} fully?"),
                vec![
                    format!(
                        "Weight {w}% -> 100%: every request goes to the canary and the rollout ends."
                    ),
                    "Automatic rollback stops watching it.".into(),
                ],
                control(CanaryAction::PromoteFull),
            ),
            Action::PauseResume if ended => {
                return self.flash(refuse("there is nothing to pause"), true);
            }
            Action::PauseResume if c.state == CanaryState::Paused => popup::confirm(
                format!("Resume canary {name}?"),
                vec![format!(
                    "It stays at {w}% for the step's whole pause, then advances if every check passes."
                )],
                control(CanaryAction::Resume),
            ),
            Action::PauseResume => popup::confirm(
                format!("Pause canary {name}?"),
                vec![
                    format!("It stays at {w}% and stops advancing."),
                    "Automatic rollback still protects it while paused.".into(),
                ],
                control(CanaryAction::Pause),
            ),
            Action::SetWeight if ended => {
                return self.flash(refuse("restart it to change its weight"), true);
            }
            Action::SetWeight => popup::confirm_weight(
                format!("Set the weight of canary {name}?"),
                vec![format!(
                    "Now {w}%. The rollout pauses at the new weight until resumed."
                )],
                control(CanaryAction::SetWeight(w.round() as u32)),
                w.round() as u32,
            ),
            Action::Rollback
                if matches!(c.state, CanaryState::RolledBack | CanaryState::Aborted) =>
            {
                return self.flash(refuse("all traffic is already on legacy"), true);
            }
            Action::Rollback => popup::confirm(
                format!("Roll back canary {name}?"),
                vec![
                    format!("Weight {w}% -> 0%: every request goes to legacy at once."),
                    "The rollout ends rolled back; it can be restarted later.".into(),
                ],
                control(CanaryAction::Rollback),
            ),
            _ => return,
        };
        self.popups.push(popup);
    }

    // ----- data --------------------------------------------------------------------------

    fn reload_runs(&mut self) {
        self.runs.cursor = super::panes::Cursor::default();
        self.runs.selected_id = None;
        self.runs.window_start = 0;
        self.runs.rows.clear();
        self.runs.loaded = false;
        self.fetch_window();
    }

    fn fetch_window(&mut self) {
        let (view, tag) = (self.list_view(), self.tag());
        let req = self.runs.window_request(view, tag);
        self.outbox.push(req);
    }

    /// Fetches what changed and is on screen; what is off screen is fetched when shown.
    pub fn refresh(&mut self) {
        let stale = std::mem::take(&mut self.stale);
        for s in stale {
            let visible = match s {
                Stale::Overview => true,
                Stale::Runs => self.focus == PaneId::Runs && self.detail.is_none(),
                Stale::Detail => self.focus == PaneId::Runs && self.detail.is_some(),
                Stale::Stage => self.focus == PaneId::Stage,
                Stale::Dlq => self.focus == PaneId::Dlq,
                Stale::Canaries => self.focus == PaneId::Canary,
            };
            if !visible {
                self.stale.insert(s);
                continue;
            }
            match s {
                Stale::Overview => self.outbox.push(Request::Overview),
                Stale::Runs => self.fetch_window(),
                Stale::Detail => {
                    if let Some(d) = &self.detail {
                        self.outbox.push(Request::Run { id: d.id });
                    }
                }
                Stale::Stage => {
                    if let Some(t) = &self.stage.target {
                        self.outbox.push(Request::StageIo {
                            id: t.run,
                            stage: t.stage.clone(),
                        });
                    }
                }
                Stale::Dlq => self.outbox.push(Request::Dlq),
                Stale::Canaries => {
                    self.outbox.push(Request::Canaries);
                    self.request_series();
                }
            }
        }
    }

    fn on_event(&mut self, e: &Event) {
        if let Some(run) = e.run_id {
            self.stale.insert(Stale::Runs);
            if self.detail.as_ref().is_some_and(|d| d.id == run) {
                self.stale.insert(Stale::Detail);
            }
            if self
                .stage
                .target
                .as_ref()
                .is_some_and(|t| t.run == run && e.stage.as_deref() == Some(t.stage.as_str()))
            {
                self.stale.insert(Stale::Stage);
            }
        }
        if matches!(
            e.kind,
            EventKind::DlqAdded | EventKind::DlqRequeued | EventKind::DlqDiscarded
        ) {
            self.stale.insert(Stale::Dlq);
            self.stale.insert(Stale::Overview);
        }
        if e.kind == EventKind::BreakerChanged {
            self.stale.insert(Stale::Overview);
        }
        if matches!(
            e.kind,
            EventKind::CanaryStarted | EventKind::CanaryAction | EventKind::CanaryAnalysis
        ) {
            self.stale.insert(Stale::Canaries);
        }
        // The banner is for rollbacks nobody here is looking at.
        if e.kind == EventKind::CanaryAction
            && e.data["state_after"] == "rolled_back"
            && self.focus != PaneId::Canary
        {
            let name = e.data["canary"].as_str().unwrap_or("?");
            let actor = e.data["actor"].as_str().unwrap_or("?");
            let reason = e.data["reason"].as_str().unwrap_or("");
            let at = e.at.datetime().format("%H:%M:%S");
            self.alert = Some(format!(
                "ROLLBACK: canary {name} rolled back by {actor} at {at} UTC: {reason}"
            ));
        }
    }

    /// Applies a backend answer.
    pub fn apply(&mut self, msg: Msg) {
        match msg {
            Msg::Overview(o) => {
                // A viewer token (or a read-only server) can change nothing: hide the controls.
                if o.role.as_deref() == Some("viewer") && !self.config.read_only {
                    self.config.read_only = true;
                    self.viewer = true;
                }
                if !self.subscribed {
                    self.subscribed = true;
                    self.outbox.push(Request::RecentEvents { limit: 500 });
                    self.outbox.push(Request::Subscribe { since: o.last_seq });
                }
                self.overview = Some(o);
            }
            Msg::RecentEvents(events) => {
                let view = self.events_view();
                self.events.push(events, view);
            }
            Msg::OlderEvents(events) => {
                let view = self.events_view();
                self.events.prepend(events, view);
            }
            Msg::Stream(StreamItem::Event(e)) => {
                self.on_event(&e);
                let view = self.events_view();
                self.events.push([e], view);
            }
            Msg::Stream(StreamItem::Connected(up)) => {
                // Back after a disconnect: what is on screen may be stale; fetch it again.
                if up && !self.connected && self.ever_connected {
                    self.stale.extend([
                        Stale::Overview,
                        Stale::Runs,
                        Stale::Detail,
                        Stale::Stage,
                        Stale::Dlq,
                        Stale::Canaries,
                    ]);
                    self.refresh();
                }
                self.connected = up;
                self.ever_connected |= up;
            }
            Msg::Runs { tag, offset, page } => {
                let view = self.list_view();
                self.runs.apply_page(tag, offset, page, view);
            }
            Msg::Run(run) => {
                let view = self.detail_view();
                if let Some(d) = &mut self.detail
                    && d.id == run.id
                {
                    d.run = Some(*run);
                    d.cursor.keep_visible(d.stage_count(), view);
                }
            }
            Msg::StageIo(io) => {
                let same = self
                    .stage
                    .target
                    .as_ref()
                    .is_some_and(|t| t.run == io.run_id && t.stage == io.stage);
                if same {
                    self.stage.apply_io(*io);
                }
            }
            Msg::Diff(v) => {
                if let Some(d) = &mut self.stage.diff {
                    d.view = Some(*v);
                    d.message = None;
                }
            }
            Msg::DiffUnavailable(m) => {
                if let Some(d) = &mut self.stage.diff {
                    d.message = Some(m);
                }
            }
            Msg::BaselineCandidates { stage, runs } => {
                self.popups.push(Popup::PickBaseline {
                    stage,
                    picker: Picker::new(runs),
                });
            }
            Msg::Canaries(list) => {
                let before = self.canary.selected().map(|c| c.name.clone());
                self.canary.apply(list);
                let shown = self.canary.series.as_ref().map(|(n, s, _)| (n.clone(), *s));
                let want = self
                    .canary
                    .selected()
                    .map(|c| (c.name.clone(), self.canary.step_s()));
                if self.focus == PaneId::Canary && (before.is_none() || shown != want) {
                    self.request_series();
                }
            }
            Msg::CanarySeries {
                name,
                step_s,
                points,
            } => {
                self.canary.series = Some((name, step_s, points));
            }
            Msg::Dlq(entries) => {
                let view = super::panes::dlq::table_rows(self.size);
                self.dlq.apply(entries, view);
            }
            Msg::Done(Done::RunStarted { run }) => {
                self.flash(format!("run {run} started"), false);
                self.focus = PaneId::Runs;
                self.open_run(run);
                self.stale.insert(Stale::Runs);
            }
            Msg::Done(outcome) => {
                self.flash(outcome.message(), false);
                self.stale.extend([
                    Stale::Runs,
                    Stale::Detail,
                    Stale::Dlq,
                    Stale::Overview,
                    Stale::Canaries,
                ]);
                self.refresh();
            }
            Msg::Failed(text) => self.flash(text, true),
        }
    }

    /// The clock moved; returns whether the screen shows something that changed with it.
    pub fn tick(&mut self, now: DateTime<Utc>) -> bool {
        let second_changed = now.timestamp() != self.now.timestamp();
        self.now = now;
        // Live charts: the canary pane polls every two seconds while it is shown.
        if second_changed && self.focus == PaneId::Canary && now.timestamp() % 2 == 0 {
            self.outbox.push(Request::Canaries);
            self.request_series();
        }
        if self.flash.as_ref().is_some_and(|f| f.until <= now) {
            self.flash = None;
            return true;
        }
        second_changed
    }
}
