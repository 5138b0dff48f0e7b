//! The dashboard's router: input (keys, mouse, resizes) goes to the popup on top, the filter
//! being typed, or the focused pane, through the keymap; what a pane asks for comes back as an
//! [`Effect`]; what must be fetched is queued as [`Request`]s for the worker. Backend answers
//! are applied in `feed.rs`. Nothing here draws or does I/O, so every transition can be tested.

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use ratatui::crossterm::event::{KeyEvent, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;

use super::action::Action;
use super::keymap::{Context, DialogKeys, Key, Keymap, Lookup};
use super::panes::assets::AssetsPane;
use super::panes::canary::CanaryPane;
use super::panes::compare::ComparePane;
use super::panes::dlq::DlqPane;
use super::panes::events::EventsPane;
use super::panes::pipelines::PipelinesPane;
use super::panes::runs::RunsPane;
use super::panes::stage::{StagePane, Target};
use super::panes::{Cx, Effect, Pane, PaneId, areas, inner, too_small};
use super::popup::{self, Outcome, Popup};
use super::request::Request;
use super::theme::{ColorDepth, Theme};
use crate::model::{Command, Overview, StartRun};

pub use super::feed::Stale;

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
    /// Where `S` saves the screen (`ui.reports_dir`).
    pub reports_dir: Option<PathBuf>,
}

impl Config {
    /// The built-in keymap and `theme` in true colour, nothing else set: for snapshots,
    /// tests and benchmarks that must not depend on the user's files.
    pub fn with_theme(theme: Theme) -> Config {
        Config {
            theme,
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
}

/// A line in the footer for a few seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub text: String,
    pub error: bool,
    pub until: DateTime<Utc>,
}

/// Messages the footer showed that `m` lists again, newest last; older ones are dropped.
pub const MESSAGES_KEPT: usize = 100;

/// Text being typed into the footer: a filter for the runs list or the event log.
#[derive(Debug, Clone)]
pub struct LineInput {
    pub target: PaneId,
    pub text: ratatui_textarea::TextArea<'static>,
    /// What is wrong with the text so far; shown beside it, and meanwhile the pane shows what
    /// it showed before the editing began, so a bad filter never looks applied.
    pub error: Option<String>,
    /// The filter when the editing began.
    pub before: String,
    /// What the field shows while empty: what this pane's filter takes.
    pub placeholder: &'static str,
}

/// The panes, each owning its state.
#[derive(Debug, Clone, Default)]
pub struct Panes {
    pub runs: RunsPane,
    pub stage: StagePane,
    pub canary: CanaryPane,
    pub compare: ComparePane,
    pub dlq: DlqPane,
    pub assets: AssetsPane,
    pub events: EventsPane,
    pub pipelines: PipelinesPane,
}

impl Panes {
    pub fn get(&self, id: PaneId) -> &dyn Pane {
        match id {
            PaneId::Runs => &self.runs,
            PaneId::Stage => &self.stage,
            PaneId::Canary => &self.canary,
            PaneId::Compare => &self.compare,
            PaneId::Dlq => &self.dlq,
            PaneId::Assets => &self.assets,
            PaneId::Events => &self.events,
            PaneId::Pipelines => &self.pipelines,
        }
    }

    fn get_mut(&mut self, id: PaneId) -> &mut dyn Pane {
        match id {
            PaneId::Runs => &mut self.runs,
            PaneId::Stage => &mut self.stage,
            PaneId::Canary => &mut self.canary,
            PaneId::Compare => &mut self.compare,
            PaneId::Dlq => &mut self.dlq,
            PaneId::Assets => &mut self.assets,
            PaneId::Events => &mut self.events,
            PaneId::Pipelines => &mut self.pipelines,
        }
    }
}

pub struct App {
    pub config: Config,
    /// The keys dialogs name, from the keymap.
    pub keys: DialogKeys,
    pub size: Rect,
    pub now: DateTime<Utc>,
    pub focus: PaneId,
    pub panes: Panes,
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
    /// Every message the footer showed lately (with when), for `m`: a cut one can be read whole.
    pub messages: std::collections::VecDeque<(DateTime<Utc>, Flash)>,
    pub quit: bool,
    /// The quitting under way began with `interrupt` (Ctrl-C): the process then exits 130, as
    /// an interrupted command does.
    quit_by_interrupt: bool,
    pending: Vec<Key>,
    pub(super) outbox: Vec<Request>,
    pub(super) stale: BTreeSet<Stale>,
    pub(super) subscribed: bool,
    /// A stage test was asked for: its run opens on that stage, diffed against the last
    /// production run, once the host says which run it is.
    pub(super) pending_test: Option<(String, String)>,
}

/// The context a pane gets, built from the app's fields (not `&App`, so a pane can be borrowed
/// mutably beside it).
fn cx<'a>(size: Rect, overview: Option<&'a Overview>, panes: &Panes) -> Cx<'a> {
    Cx {
        size,
        overview,
        run_open: panes.runs.detail.is_some(),
    }
}

impl App {
    pub fn new(config: Config, size: Rect, now: DateTime<Utc>) -> App {
        let mut app = App {
            keys: DialogKeys::of(&config.keymap),
            config,
            size,
            now,
            focus: PaneId::Runs,
            panes: Panes::default(),
            alert: None,
            popups: Vec::new(),
            input: None,
            overview: None,
            connected: false,
            ever_connected: false,
            viewer: false,
            flash: None,
            messages: std::collections::VecDeque::new(),
            quit: false,
            quit_by_interrupt: false,
            pending: Vec::new(),
            outbox: Vec::new(),
            stale: BTreeSet::new(),
            subscribed: false,
            pending_test: None,
        };
        app.outbox
            .extend([Request::Overview, Request::Dlq, Request::Canaries]);
        let first = app.panes.runs.reload(app.size);
        app.outbox.push(first);
        app
    }

    /// Requests queued by the last updates.
    pub fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.outbox)
    }

    pub fn focused(&self) -> &dyn Pane {
        self.panes.get(self.focus)
    }

    pub(super) fn cx(&self) -> Cx<'_> {
        cx(self.size, self.overview.as_ref(), &self.panes)
    }

    pub(super) fn flash(&mut self, text: impl Into<String>, error: bool) {
        let flash = Flash {
            text: text.into(),
            error,
            until: self.now + chrono::Duration::seconds(5),
        };
        if self.messages.len() >= MESSAGES_KEPT {
            self.messages.pop_front();
        }
        self.messages.push_back((self.now, flash.clone()));
        self.flash = Some(flash);
    }

    /// The recent messages, newest first, as a record to read in full.
    fn messages_popup(&self) -> Popup {
        let lines = if self.messages.is_empty() {
            vec!["No messages yet: refusals, errors and confirmations show here.".to_string()]
        } else {
            self.messages
                .iter()
                .rev()
                .flat_map(|(at, m)| {
                    let mark = if m.error { "✗" } else { "✓" };
                    [
                        format!("{} {mark} {}", at.format("%H:%M:%S"), m.text),
                        String::new(),
                    ]
                })
                .collect()
        };
        Popup::Record(popup::Record {
            title: format!("Messages · {} · newest first", self.messages.len()),
            lines,
            run: None,
            scroll: 0,
        })
    }

    pub(super) fn read_only_why(&self) -> &'static str {
        if self.viewer {
            "read-only: this token has the viewer role; control actions need operator"
        } else {
            "read-only: control actions are off (--read-only)"
        }
    }

    // ----- input -------------------------------------------------------------------------

    pub fn on_resize(&mut self, width: u16, height: u16) {
        self.size = Rect::new(0, 0, width, height);
        let fetch = self.panes.runs.resized(self.size);
        self.panes.dlq.resized(self.size);
        self.panes.events.resized(self.size);
        self.outbox.extend(fetch);
    }

    /// Whether the dashboard quit on `interrupt` (directly, or through the question it asked).
    pub fn interrupted(&self) -> bool {
        self.quit && self.quit_by_interrupt
    }

    pub fn on_key(&mut self, key: KeyEvent) {
        if too_small(self.size) {
            // Nothing is on screen to act on: only quitting works (it may still ask first).
            let k = [Key::from_event(&key)];
            if let Lookup::Action(a @ (Action::Quit | Action::Interrupt)) =
                self.config.keymap.lookup(&[Context::Global], &k)
            {
                self.quit_flow(a == Action::Interrupt);
            }
            return;
        }
        if !self.popups.is_empty() || self.input.is_some() {
            self.dialog_key(key);
            return;
        }
        self.pending.push(Key::from_event(&key));
        let contexts = self.focused().contexts();
        let mut found = self.config.keymap.lookup(contexts, &self.pending);
        if found == Lookup::Unbound && self.pending.len() > 1 {
            // A sequence went nowhere: the last key may still mean something alone.
            self.pending = vec![Key::from_event(&key)];
            found = self.config.keymap.lookup(contexts, &self.pending);
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

    /// A key while a popup or the filter line is open: typed text goes into its field, every
    /// other key through the keymap's dialog contexts.
    fn dialog_key(&mut self, key: KeyEvent) {
        let takes_text = self.input.is_some() || self.popups.last().is_some_and(Popup::takes_text);
        let editing = matches!(self.popups.last(), Some(Popup::EditAsset(e)) if e.takes(&key));
        if editing || (takes_text && popup::is_text(&key)) {
            if self.input.is_some() {
                self.input_text(key);
            } else if let Some(top) = self.popups.last_mut() {
                let outcome = top.on_text(key);
                self.on_outcome(outcome, None);
            }
            return;
        }
        let Lookup::Action(a) = self
            .config
            .keymap
            .lookup(Context::DIALOG, &[Key::from_event(&key)])
        else {
            return;
        };
        if self.input.is_some() {
            self.input_action(a);
        } else if let Some(top) = self.popups.last_mut() {
            let outcome = top.on_action(a);
            self.on_outcome(outcome, Some(a));
        }
    }

    fn input_text(&mut self, key: KeyEvent) {
        let Some(input) = &mut self.input else { return };
        input.text.input(key);
        let (target, text) = (input.target, input.text.lines().join(" "));
        let before = input.before.clone();
        let error = self.set_filter(target, text).err();
        if error.is_some() {
            let _ = self.set_filter(target, before);
        }
        if let Some(input) = &mut self.input {
            input.error = error;
        }
    }

    fn input_action(&mut self, a: Action) {
        let Some(input) = &self.input else { return };
        match a {
            // An invalid filter keeps the input open with its explanation, which is kept
            // with the messages so it can be read whole.
            Action::Confirm => match input.error.clone() {
                None => {
                    // A refusal shown earlier no longer applies.
                    self.input = None;
                    self.flash = None;
                }
                Some(e) => self.flash(e, true),
            },
            Action::Back => {
                let target = input.target;
                self.input = None;
                // The filter is given up, and with it any refusal of it still shown.
                self.flash = None;
                let _ = self.set_filter(target, String::new());
            }
            Action::Quit | Action::Interrupt => self.quit_flow(a == Action::Interrupt),
            _ => {}
        }
    }

    /// Applies a filter in `target`, or says what is wrong with it (the last valid one stays).
    pub(super) fn set_filter(&mut self, target: PaneId, text: String) -> Result<(), String> {
        let c = cx(self.size, self.overview.as_ref(), &self.panes);
        let effect = self.panes.get_mut(target).set_filter(text, &c)?;
        self.apply_effect(effect);
        Ok(())
    }

    pub fn on_mouse(&mut self, m: MouseEvent) {
        if !self.config.mouse || !self.popups.is_empty() {
            return;
        }
        match m.kind {
            MouseEventKind::ScrollDown => self.route(Action::Down),
            MouseEventKind::ScrollUp => self.route(Action::Up),
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
                    self.panes
                        .get_mut(self.focus)
                        .click(usize::from(m.row - top));
                }
            }
            _ => {}
        }
    }

    // ----- actions -----------------------------------------------------------------------

    /// An action from the keymap or the palette: the dashboard's own, or the focused pane's.
    pub fn on_action(&mut self, a: Action) {
        if self.config.read_only && a.is_control() {
            return self.flash(self.read_only_why(), true);
        }
        if let Some(pane) = PaneId::of_action(a) {
            return self.focus_pane(pane);
        }
        match a {
            // `q` quits at the top level; inside a run, a diff or a filter it goes back first.
            Action::Quit if self.focused().nested(&self.cx()) => self.route(Action::Back),
            Action::Quit | Action::Interrupt => self.quit_flow(a == Action::Interrupt),
            Action::Help => self.popups.push(Popup::Help { scroll: 0 }),
            Action::Messages => {
                self.flash = None;
                let p = self.messages_popup();
                self.popups.push(p);
            }
            Action::Palette => {
                self.popups.push(popup::palette());
                self.update_palette();
            }
            Action::SaveScreen => self.save_screen(),
            Action::Confirm | Action::Complete => {}
            _ => self.route(a),
        }
    }

    /// Hands an action to the focused pane, unless what is selected does not allow it.
    fn route(&mut self, a: Action) {
        if let Some(why) = self.focused().unavailable(a) {
            return self.flash(why, true);
        }
        let c = cx(self.size, self.overview.as_ref(), &self.panes);
        let effect = self.panes.get_mut(self.focus).on_action(a, &c);
        self.apply_effect(effect);
    }

    /// Quitting stops the host: runs in flight are interrupted (they resume at the next
    /// start), so it asks first; asked again, it quits.
    pub(super) fn quit_flow(&mut self, interrupt: bool) {
        if matches!(self.popups.last(), Some(Popup::ConfirmQuit { .. })) {
            self.quit_by_interrupt |= interrupt;
            self.quit = true;
            return;
        }
        self.quit_by_interrupt = interrupt;
        match self.overview.as_ref().map_or(0, |o| o.running) {
            0 => self.quit = true,
            running => self.popups.push(Popup::ConfirmQuit { running }),
        }
    }

    pub(super) fn apply_effect(&mut self, e: Effect) {
        match e {
            Effect::None => {}
            Effect::Fetch(reqs) => self.outbox.extend(reqs),
            Effect::Popup(p) => self.popups.push(*p),
            Effect::Focus(pane) => self.focus_pane(pane),
            Effect::OpenRun { id, from } => self.open_run(id, from),
            Effect::OpenStage { target, from } => self.open_stage(target, from),
            Effect::OpenStageDiff { target, baseline } => {
                self.open_stage(target, PaneId::Compare);
                self.panes.stage.diff_when_loaded = Some(baseline);
            }
            Effect::Compare(a, b) => self.compare(a, b),
            Effect::EditFilter(current) => {
                let placeholder = self.focused().filter_placeholder();
                let mut text = popup::text_input(placeholder);
                text.insert_str(&current);
                self.input = Some(LineInput {
                    target: self.focus,
                    text,
                    error: None,
                    before: current,
                    placeholder,
                });
            }
            Effect::Refuse(why) => self.flash(why, true),
        }
    }

    fn on_outcome(&mut self, outcome: Outcome, action: Option<Action>) {
        let done = !matches!(
            outcome,
            Outcome::Keep | Outcome::PaletteEdited | Outcome::Unhandled
        );
        if done {
            self.popups.pop();
        }
        match outcome {
            Outcome::Unhandled if matches!(action, Some(Action::Quit | Action::Interrupt)) => {
                self.quit_flow(action == Some(Action::Interrupt));
            }
            Outcome::Keep | Outcome::Close | Outcome::Unhandled => {}
            Outcome::PaletteEdited => self.update_palette(),
            Outcome::Confirmed { command, reason } => {
                self.outbox.push(Request::Control {
                    cmd: command,
                    reason,
                });
            }
            Outcome::Pipeline(name) => self.start_run(name),
            Outcome::TestStage {
                asset,
                version,
                stage,
            } => {
                self.pending_test = Some((stage.pipeline.clone(), stage.stage.clone()));
                self.outbox.push(Request::Control {
                    cmd: Command::StartRun(StartRun {
                        pipeline: stage.pipeline,
                        overrides: std::iter::once((asset, version)).collect(),
                        test: Some(Box::new(crate::model::asset::StageTest {
                            stage: stage.stage,
                            ..Default::default()
                        })),
                        ..StartRun::default()
                    }),
                    reason: String::new(),
                });
            }
            Outcome::Baseline(id) => {
                let req = self.panes.stage.request_diff(Some(id));
                self.outbox.extend(req);
            }
            Outcome::Command(line) => self.run_command(&line),
            Outcome::OpenRun(id) => self.open_run(id, self.focus),
            Outcome::Quit => {
                self.quit_by_interrupt |= action == Some(Action::Interrupt);
                self.quit = true;
            }
        }
    }

    pub(super) fn start_run(&mut self, pipeline: String) {
        self.start_run_with(pipeline, crate::model::asset::Overrides::new());
    }

    /// Starts a run with other asset versions than the pinned ones (`:run NAME rules=2`).
    pub(super) fn start_run_with(
        &mut self,
        pipeline: String,
        overrides: crate::model::asset::Overrides,
    ) {
        self.outbox.push(Request::Control {
            cmd: Command::StartRun(StartRun {
                pipeline,
                overrides,
                ..StartRun::default()
            }),
            reason: String::new(),
        });
    }

    // ----- moving between panes ----------------------------------------------------------

    pub fn focus_pane(&mut self, pane: PaneId) {
        self.focus = pane;
        if pane == PaneId::Canary {
            // Whoever opens the canary pane has seen the rollback the banner announced.
            self.alert = None;
            self.stale.insert(Stale::Canaries);
        }
        if pane == PaneId::Assets && !self.panes.assets.loaded {
            self.stale.insert(Stale::Assets);
        }
        if pane == PaneId::Pipelines {
            self.stale.insert(Stale::Pipelines);
        }
        self.refresh();
    }

    /// Opens run `id` in the Runs pane; `back` returns to `from`.
    pub fn open_run(&mut self, id: crate::model::RunId, from: PaneId) {
        self.focus = PaneId::Runs;
        let req = self.panes.runs.open(id, from);
        self.outbox.push(req);
    }

    /// Saves the screen exactly as shown, as SVG and text, into the reports directory (the
    /// worker writes the files; the footer says where).
    fn save_screen(&mut self) {
        let Some(dir) = self.config.reports_dir.clone() else {
            return self.flash(
                "no reports directory: set ui.reports_dir in ~/.config/opsdeck/config.toml",
                true,
            );
        };
        let buffer = super::headless::draw(self);
        let label = self.focused().title().to_lowercase();
        let page = super::snapshot::Page {
            buffer: &buffer,
            theme: &self.config.theme,
            title: super::headless::title(&label, self.now),
        };
        let stem = format!("opsdeck-{label}-{}", self.now.format("%Y%m%d-%H%M%S"));
        self.outbox.push(Request::SaveFiles {
            dir,
            files: vec![
                (
                    format!("{stem}.svg"),
                    super::snapshot::svg(&page).into_bytes(),
                ),
                (
                    format!("{stem}.txt"),
                    super::snapshot::txt(&page).into_bytes(),
                ),
            ],
        });
    }

    /// Shows two runs side by side in the Compare pane.
    pub fn compare(&mut self, a: crate::model::RunId, b: crate::model::RunId) {
        let req = self.panes.compare.open(a, b);
        self.outbox.push(req);
        self.focus = PaneId::Compare;
    }

    pub fn open_stage(&mut self, target: Target, from: PaneId) {
        // The same stage again keeps the reader's place, except from a dead letter, which is
        // about the last attempt: that opens afresh, at the section where its news is.
        if self.panes.stage.target.as_ref() != Some(&target) || from == PaneId::Dlq {
            self.outbox.push(Request::StageIo {
                id: target.run,
                stage: target.stage.clone(),
            });
            self.panes.stage = StagePane::open(target);
        }
        self.panes.stage.from = from;
        self.focus = PaneId::Stage;
    }

    /// The clock moved; returns whether the screen shows something that changed with it.
    pub fn tick(&mut self, now: DateTime<Utc>) -> bool {
        let second_changed = now.timestamp() != self.now.timestamp();
        self.now = now;
        // Live charts: the canary pane polls every two seconds while it is shown.
        if second_changed && self.focus == PaneId::Canary && now.timestamp() % 2 == 0 {
            self.outbox.push(Request::Canaries);
            self.outbox.extend(self.panes.canary.series_request());
        }
        if self.flash.as_ref().is_some_and(|f| f.until <= now) {
            self.flash = None;
            return true;
        }
        second_changed
    }
}
