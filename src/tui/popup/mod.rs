//! Popups, kept as a stack of plain data: help, the command palette, confirmations and pickers.
//! Their keys come from the keymap like every other key (the `dialog` context, then `list` and
//! `global`), so a dialog follows the active keymap; only typed text goes straight into a text
//! field. Each popup reports what should happen as an [`Outcome`]; the app decides what that
//! means.

mod render;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui_textarea::TextArea;

pub use render::{centered, render};

use super::action::Action;
use super::palette;
use super::panes::{Cursor, Motion};
use crate::model::asset::AssetUse;
use crate::model::{CanaryAction, Command, PipelineInfo, RunId, RunSummary};

/// Rows a picker moves by on page up and page down.
const PICKER_PAGE: usize = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct Picker<T> {
    pub items: Vec<T>,
    pub cursor: Cursor,
}

impl<T> Picker<T> {
    pub fn new(items: Vec<T>) -> Self {
        Picker {
            items,
            cursor: Cursor::default(),
        }
    }

    fn on_motion(&mut self, m: Motion) {
        self.cursor.apply(m, self.items.len(), PICKER_PAGE);
    }

    fn chosen(&self) -> Option<&T> {
        self.items.get(self.cursor.selected)
    }
}

#[derive(Debug, Clone)]
pub struct Confirm {
    pub title: String,
    pub body: Vec<String>,
    pub reason: TextArea<'static>,
    pub command: Command,
    /// A weight being chosen (set-weight): its own field, typed in digits.
    pub weight: Option<WeightField>,
    /// Confirm was pressed without a reason.
    pub needs_reason: bool,
}

/// The weight a set-weight dialog sets, in percent: digits type it, up and down change it
/// by 5, tab moves between it and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightField {
    pub digits: String,
    /// Typed keys go here (else into the reason).
    pub focused: bool,
    /// What is wrong with the digits, once confirm was pressed.
    pub error: Option<String>,
    /// Still the weight the dialog opened with: the first digit typed replaces it.
    pub fresh: bool,
}

impl WeightField {
    /// The weight typed, if it is one.
    pub fn value(&self) -> Option<u32> {
        self.digits.parse::<u32>().ok().filter(|w| *w <= 100)
    }

    fn step(&mut self, up: bool) {
        let w = self.value().unwrap_or(0);
        let next = if up {
            (w + 5).min(100)
        } else {
            w.saturating_sub(5)
        };
        self.digits = next.to_string();
        self.error = None;
        self.fresh = false;
    }

    /// A key typed while the field has the focus; false when it is not the field's.
    fn input(&mut self, key: &KeyEvent) -> bool {
        match key.code {
            KeyCode::Char(d) if d.is_ascii_digit() => {
                if self.fresh {
                    self.digits.clear();
                }
                if self.digits.len() < 3 {
                    self.digits.push(d);
                }
            }
            KeyCode::Backspace => {
                self.digits.pop();
            }
            KeyCode::Delete | KeyCode::Left | KeyCode::Right | KeyCode::Home | KeyCode::End => {}
            _ => return false,
        }
        self.error = None;
        self.fresh = false;
        true
    }
}

#[derive(Debug, Clone)]
pub struct Palette {
    pub input: TextArea<'static>,
    pub selected: usize,
    /// What can complete the current word (filled by the app).
    pub candidates: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub enum Popup {
    Help {
        scroll: usize,
    },
    Palette(Box<Palette>),
    Confirm(Box<Confirm>),
    PickPipeline(Picker<PipelineInfo>),
    PickBaseline {
        stage: String,
        picker: Picker<RunSummary>,
    },
    /// Quitting would interrupt runs in flight.
    ConfirmQuit {
        running: u64,
    },
    /// A whole record (an event with its reason, actor and data), scrolled; confirm opens
    /// its run when it has one.
    Record(Record),
    /// A new version of an asset being written, and the reason it is saved with.
    EditAsset(Box<Editor>),
    /// The stage to test alone with a version of an asset.
    PickStage {
        asset: String,
        version: u32,
        picker: Picker<AssetUse>,
    },
}

/// An asset's text in a multi-line editor: `enter` starts a line, `tab` moves to the reason,
/// `enter` there saves the text as a new (unpinned) version.
#[derive(Debug, Clone)]
pub struct Editor {
    pub name: String,
    /// The version the text started from.
    pub from: u32,
    pub text: TextArea<'static>,
    pub reason: TextArea<'static>,
    pub on_reason: bool,
    /// Save was pressed without a reason.
    pub needs_reason: bool,
}

/// An editor holding `text`, version `from` of asset `name`.
pub fn editor(name: &str, from: u32, text: &str) -> Popup {
    let mut area = TextArea::from(text.lines().map(str::to_string).collect::<Vec<_>>());
    area.set_cursor_line_style(ratatui::style::Style::default());
    Popup::EditAsset(Box::new(Editor {
        name: name.to_string(),
        from,
        text: area,
        reason: text_input("why? (recorded with the new version)"),
        on_reason: false,
        needs_reason: false,
    }))
}

impl Editor {
    /// Whether `key` edits the text itself (new lines and moving between them), which the
    /// keymap must not take while the text has the cursor.
    pub fn takes(&self, key: &KeyEvent) -> bool {
        !self.on_reason
            && matches!(
                key.code,
                KeyCode::Enter | KeyCode::Up | KeyCode::Down | KeyCode::PageUp | KeyCode::PageDown
            )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub title: String,
    pub lines: Vec<String>,
    pub run: Option<RunId>,
    pub scroll: usize,
}

impl PartialEq for Popup {
    /// Popups compare by kind and content shown, for tests (text areas do not compare).
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Popup::Help { scroll: a }, Popup::Help { scroll: b }) => a == b,
            (Popup::ConfirmQuit { running: a }, Popup::ConfirmQuit { running: b }) => a == b,
            (Popup::Confirm(a), Popup::Confirm(b)) => a.command == b.command && a.title == b.title,
            (Popup::PickPipeline(a), Popup::PickPipeline(b)) => a == b,
            (Popup::PickBaseline { picker: a, .. }, Popup::PickBaseline { picker: b, .. }) => {
                a == b
            }
            (Popup::Palette(_), Popup::Palette(_)) => true,
            (Popup::Record(a), Popup::Record(b)) => a == b,
            (Popup::EditAsset(a), Popup::EditAsset(b)) => (&a.name, a.from) == (&b.name, b.from),
            (Popup::PickStage { picker: a, .. }, Popup::PickStage { picker: b, .. }) => a == b,
            _ => false,
        }
    }
}

/// What a key in a popup leads to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Keep,
    Close,
    Confirmed {
        command: Command,
        reason: String,
    },
    Pipeline(String),
    Baseline(RunId),
    /// Test `stage` alone with version `version` of `asset`.
    TestStage {
        asset: String,
        version: u32,
        stage: AssetUse,
    },
    OpenRun(RunId),
    Command(String),
    /// The palette's text changed: recompute its candidates.
    PaletteEdited,
    Quit,
    /// Not the popup's business: the app may act on it (quitting, say).
    Unhandled,
}

pub fn text_input(placeholder: &str) -> TextArea<'static> {
    let mut t = TextArea::default();
    t.set_placeholder_text(placeholder.to_string());
    t.set_cursor_line_style(ratatui::style::Style::default());
    t
}

/// A confirmation that says what will happen and takes the reason recorded with `command`.
pub fn confirm(title: String, body: Vec<String>, command: Command) -> Popup {
    Popup::Confirm(Box::new(Confirm {
        title,
        body,
        reason: text_input("why? (recorded with the action)"),
        command,
        weight: None,
        needs_reason: false,
    }))
}

/// A confirmation that also picks a canary weight, starting at `weight` percent.
pub fn confirm_weight(title: String, body: Vec<String>, command: Command, weight: u32) -> Popup {
    let mut p = confirm(title, body, command);
    if let Popup::Confirm(c) = &mut p {
        c.weight = Some(WeightField {
            digits: weight.min(100).to_string(),
            focused: true,
            error: None,
            fresh: true,
        });
    }
    p
}

pub fn palette() -> Popup {
    Popup::Palette(Box::new(Palette {
        input: text_input("runs, run NAME, canary NAME, rollback NAME, theme NAME, quit"),
        selected: 0,
        candidates: Vec::new(),
    }))
}

/// Whether a key edits text (in a text field it is typed, never looked up in the keymap).
pub fn is_text(key: &KeyEvent) -> bool {
    match key.code {
        KeyCode::Char(_) => !key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT),
        KeyCode::Backspace
        | KeyCode::Delete
        | KeyCode::Left
        | KeyCode::Right
        | KeyCode::Home
        | KeyCode::End => true,
        _ => false,
    }
}

impl Popup {
    /// Whether the popup has a text field that typed keys go into.
    pub fn takes_text(&self) -> bool {
        matches!(
            self,
            Popup::Palette(_) | Popup::Confirm(_) | Popup::EditAsset(_)
        )
    }

    /// A key typed into the popup's text field.
    pub fn on_text(&mut self, key: KeyEvent) -> Outcome {
        match self {
            Popup::Confirm(c) => {
                let taken = c
                    .weight
                    .as_mut()
                    .is_some_and(|w| w.focused && w.input(&key));
                if !taken {
                    // Anything but a digit starts the reason.
                    if let Some(w) = c.weight.as_mut() {
                        w.focused = false;
                    }
                    c.reason.input(key);
                    c.needs_reason = false;
                }
                Outcome::Keep
            }
            Popup::Palette(p) => {
                p.input.input(key);
                p.selected = 0;
                Outcome::PaletteEdited
            }
            Popup::EditAsset(e) => {
                if e.on_reason {
                    e.reason.input(key);
                    e.needs_reason = false;
                } else {
                    e.text.input(key);
                }
                Outcome::Keep
            }
            _ => Outcome::Keep,
        }
    }

    /// An action the keymap resolved a key to while the popup is on top.
    pub fn on_action(&mut self, a: Action) -> Outcome {
        match self {
            Popup::Help { scroll } => help_action(scroll, a),
            Popup::Record(r) => match (a, r.run) {
                (Action::Confirm | Action::Open, Some(id)) => Outcome::OpenRun(id),
                (Action::Confirm | Action::Open, None) => Outcome::Close,
                _ => help_action(&mut r.scroll, a),
            },
            Popup::Confirm(c) => confirm_action(c, a),
            Popup::Palette(p) => palette_action(p, a),
            Popup::ConfirmQuit { .. } => match a {
                Action::Confirm | Action::Quit | Action::Interrupt => Outcome::Quit,
                Action::Back => Outcome::Close,
                _ => Outcome::Keep,
            },
            Popup::PickPipeline(p) => pick_action(p, a, |i| Outcome::Pipeline(i.name.clone())),
            Popup::PickBaseline { picker, .. } => {
                pick_action(picker, a, |r| Outcome::Baseline(r.id))
            }
            Popup::PickStage {
                asset,
                version,
                picker,
            } => pick_action(picker, a, |u| Outcome::TestStage {
                asset: asset.clone(),
                version: *version,
                stage: u.clone(),
            }),
            Popup::EditAsset(e) => editor_action(e, a),
        }
    }
}

fn help_action(scroll: &mut usize, a: Action) -> Outcome {
    match a {
        Action::Help | Action::Back | Action::Quit | Action::Confirm => return Outcome::Close,
        Action::Interrupt => return Outcome::Unhandled,
        Action::Down => *scroll += 1,
        Action::Up => *scroll = scroll.saturating_sub(1),
        Action::PageDown => *scroll += PICKER_PAGE,
        Action::PageUp => *scroll = scroll.saturating_sub(PICKER_PAGE),
        Action::Top => *scroll = 0,
        Action::Bottom => *scroll = usize::from(u16::MAX),
        _ => {}
    }
    Outcome::Keep
}

fn confirm_action(c: &mut Confirm, a: Action) -> Outcome {
    match a {
        Action::Back => Outcome::Close,
        Action::Up | Action::Down if c.weight.is_some() => {
            if let Some(w) = c.weight.as_mut() {
                w.step(a == Action::Up);
            }
            Outcome::Keep
        }
        Action::Complete if c.weight.is_some() => {
            if let Some(w) = c.weight.as_mut() {
                w.focused = !w.focused;
            }
            Outcome::Keep
        }
        Action::Confirm => {
            if let Some(w) = c.weight.as_mut()
                && w.value().is_none()
            {
                w.error = Some(format!(
                    "`{}` is not a weight; type a percentage from 0 to 100",
                    w.digits
                ));
                w.focused = true;
                return Outcome::Keep;
            }
            let reason = c.reason.lines().join(" ").trim().to_string();
            // The reason is recorded with the action: an empty one is refused here, as by
            // the host.
            if reason.is_empty() && c.command.needs_reason() {
                c.needs_reason = true;
                return Outcome::Keep;
            }
            let mut command = c.command.clone();
            if let (Some(w), Command::Canary { action, .. }) =
                (c.weight.as_ref().and_then(WeightField::value), &mut command)
            {
                *action = CanaryAction::SetWeight(w);
            }
            Outcome::Confirmed { command, reason }
        }
        Action::Quit | Action::Interrupt => Outcome::Unhandled,
        _ => Outcome::Keep,
    }
}

fn editor_action(e: &mut Editor, a: Action) -> Outcome {
    match a {
        Action::Back => Outcome::Close,
        Action::Complete => {
            e.on_reason = !e.on_reason;
            Outcome::Keep
        }
        Action::Confirm if !e.on_reason => {
            e.on_reason = true;
            Outcome::Keep
        }
        Action::Confirm => {
            let reason = e.reason.lines().join(" ").trim().to_string();
            if reason.is_empty() {
                e.needs_reason = true;
                return Outcome::Keep;
            }
            let mut content = e.text.lines().join("\n");
            content.push('\n');
            Outcome::Confirmed {
                command: Command::PutAsset {
                    name: e.name.clone(),
                    content,
                    pin: false,
                },
                reason,
            }
        }
        Action::Interrupt => Outcome::Unhandled,
        _ => Outcome::Keep,
    }
}

fn palette_action(p: &mut Palette, a: Action) -> Outcome {
    match a {
        Action::Back => Outcome::Close,
        Action::Up => {
            p.selected = p.selected.saturating_sub(1);
            Outcome::Keep
        }
        Action::Down => {
            p.selected = (p.selected + 1).min(p.candidates.len().saturating_sub(1));
            Outcome::Keep
        }
        Action::Complete => {
            complete(p);
            Outcome::PaletteEdited
        }
        Action::Confirm => {
            let typed = p.input.lines().join(" ").trim().to_string();
            // A half-typed command takes the highlighted completion.
            let first = typed.split_whitespace().next().unwrap_or("");
            let exact = p.candidates.iter().any(|(c, _)| c == first) || palette::known(first);
            if (!exact || typed.ends_with(' ')) && !p.candidates.is_empty() {
                complete(p);
            }
            Outcome::Command(p.input.lines().join(" ").trim().to_string())
        }
        Action::Quit | Action::Interrupt => Outcome::Unhandled,
        _ => Outcome::Keep,
    }
}

fn pick_action<T>(p: &mut Picker<T>, a: Action, chosen: impl Fn(&T) -> Outcome) -> Outcome {
    match a {
        Action::Back | Action::Quit => Outcome::Close,
        Action::Interrupt => Outcome::Unhandled,
        Action::Confirm => p.chosen().map_or(Outcome::Close, chosen),
        _ => {
            if let Some(m) = Motion::from_action(a) {
                p.on_motion(m);
            }
            Outcome::Keep
        }
    }
}

/// Replaces the word being typed with the highlighted candidate.
fn complete(p: &mut Palette) {
    let Some((word, _)) = p.candidates.get(p.selected).cloned() else {
        return;
    };
    let typed = p.input.lines().join(" ");
    let mut words: Vec<&str> = typed.split_whitespace().collect();
    if !typed.ends_with(' ') {
        words.pop();
    }
    words.push(&word);
    let text = format!("{} ", words.join(" "));
    p.input = text_input("");
    p.input.insert_str(text);
    p.selected = 0;
}
