//! The panes. Each owns its state (plain data), handles the actions routed to it and says what
//! it needs from the app as an [`Effect`], declares its commands once ([`Pane::commands`]: the
//! footer hints and the help are generated from them), and renders from `&self`. Layout is a
//! pure function of the terminal size, shared by rendering and by the key handling that needs
//! to know how many rows a page has.

pub mod assets;
pub mod canary;
pub mod compare;
pub mod dlq;
pub mod events;
pub mod pipelines;
pub mod run_detail;
pub mod runs;
pub mod stage;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};

use super::action::Action;
use super::keymap::Context;
use super::popup::Popup;
use super::request::Request;
use super::view::Ctx;
use crate::model::{Overview, RunId};

/// What a pane may know of the rest of the dashboard while it handles an action.
#[derive(Debug, Clone, Copy)]
pub struct Cx<'a> {
    pub size: Rect,
    pub overview: Option<&'a Overview>,
    /// A run is open in the Runs pane (the Stage pane goes back to it).
    pub run_open: bool,
}

/// What an action in a pane asks of the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    None,
    /// Fetch these from the backend.
    Fetch(Vec<Request>),
    Popup(Box<Popup>),
    Focus(PaneId),
    /// Open a run in the Runs pane; `back` returns to `from`.
    OpenRun {
        id: RunId,
        from: PaneId,
    },
    /// Open a stage's input and output in the Stage pane; `back` returns to `from` (to Runs
    /// only while a run is open there).
    OpenStage {
        target: stage::Target,
        from: PaneId,
    },
    /// Open a stage with its output diffed against the same stage of `baseline`.
    OpenStageDiff {
        target: stage::Target,
        baseline: RunId,
    },
    /// Compare two runs in the Compare pane.
    Compare(RunId, RunId),
    /// Type a filter for this pane in the footer, starting from the current one.
    EditFilter(String),
    /// Say something went wrong, in the footer.
    Refuse(String),
}

impl Effect {
    pub fn fetch(r: Request) -> Effect {
        Effect::Fetch(vec![r])
    }
}

/// One command a pane offers: the actions that share a footer hint, and the hint.
#[derive(Debug, Clone, Copy)]
pub struct Cmd {
    pub actions: &'static [Action],
    pub hint: &'static str,
    /// Shown in the footer (else only in the help and the palette).
    pub footer: bool,
    /// Shown in the footer only when there is room for it beside the others.
    pub spare: bool,
}

/// A command with a footer hint; the footer shows them in declaration order.
pub const fn cmd(actions: &'static [Action], hint: &'static str) -> Cmd {
    Cmd {
        actions,
        hint,
        footer: true,
        spare: false,
    }
}

/// A command the footer shows only when the terminal is wide enough for it as well.
pub const fn spare(actions: &'static [Action], hint: &'static str) -> Cmd {
    Cmd {
        actions,
        hint,
        footer: true,
        spare: true,
    }
}

/// A command listed in the help and the palette but not in the footer.
pub const fn more(actions: &'static [Action]) -> Cmd {
    Cmd {
        actions,
        hint: "",
        footer: false,
        spare: false,
    }
}

/// Moving in a list, as one footer hint.
pub const MOVE: Cmd = cmd(&[Action::Down, Action::Up], "move");
pub const HELP: Cmd = cmd(&[Action::Help], "help");
pub const QUIT: Cmd = cmd(&[Action::Quit], "quit");
pub const BACK: Cmd = cmd(&[Action::Back], "back");

/// A pane of the dashboard.
pub trait Pane {
    /// Its name in the help ("Runs", "Run", "Canary").
    fn title(&self) -> &'static str;
    /// The keymap contexts its keys are looked up in, most specific first.
    fn contexts(&self) -> &'static [Context];
    /// Its commands in footer order; the help lists them with their keys and doc strings.
    fn commands(&self) -> &'static [Cmd];
    /// Handles an action the keymap (or the palette) routed here.
    fn on_action(&mut self, a: Action, cx: &Cx<'_>) -> Effect;
    /// Whether `back` would leave something inside the pane (a run, a diff, a filter): `q`
    /// goes back first then.
    fn nested(&self, _cx: &Cx<'_>) -> bool {
        false
    }
    /// Why `a` cannot be done on what is selected now, or `None` when it can: the footer
    /// greys its hint and the key says why instead of asking.
    fn unavailable(&self, _a: Action) -> Option<String> {
        None
    }
    /// The footer's label for `c` now, or `None` to leave it out: a pane shows only what
    /// applies to what is selected ("resume" on a paused canary, no controls on an ended one).
    fn hint(&self, c: &Cmd) -> Option<&'static str> {
        Some(c.hint)
    }
    /// What an empty filter field shows: what this pane's filter takes.
    fn filter_placeholder(&self) -> &'static str {
        ""
    }
    /// Applies filter text typed in the footer, or says what is wrong with it.
    fn set_filter(&mut self, _text: String, _cx: &Cx<'_>) -> Result<Effect, String> {
        Ok(Effect::None)
    }
    /// A click on row `row` of the pane's list.
    fn click(&mut self, _row: usize) {}
    fn render(&self, f: &mut Frame, area: Rect, ctx: &Ctx<'_>);
}

/// Which pane has the focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PaneId {
    /// The first pane shown.
    #[default]
    Runs,
    Stage,
    Canary,
    Compare,
    Dlq,
    Assets,
    Events,
    Pipelines,
}

impl PaneId {
    pub const ALL: [PaneId; 8] = [
        PaneId::Runs,
        PaneId::Stage,
        PaneId::Canary,
        PaneId::Compare,
        PaneId::Dlq,
        PaneId::Assets,
        PaneId::Events,
        PaneId::Pipelines,
    ];

    /// The pane an action shows (`pane_runs`, ...).
    pub fn of_action(a: Action) -> Option<PaneId> {
        Some(match a {
            Action::PaneRuns => PaneId::Runs,
            Action::PaneStage => PaneId::Stage,
            Action::PaneCanary => PaneId::Canary,
            Action::PaneCompare => PaneId::Compare,
            Action::PaneDlq => PaneId::Dlq,
            Action::PaneAssets => PaneId::Assets,
            Action::PaneEvents => PaneId::Events,
            Action::PanePipelines => PaneId::Pipelines,
            _ => return None,
        })
    }

    /// The title on its tab (the key before it comes from the keymap).
    pub fn title(self) -> &'static str {
        match self {
            PaneId::Runs => "Runs",
            PaneId::Stage => "Stage",
            PaneId::Canary => "Canary",
            PaneId::Compare => "Compare",
            PaneId::Dlq => "DLQ",
            PaneId::Assets => "Assets",
            PaneId::Events => "Events",
            PaneId::Pipelines => "Pipelines",
        }
    }
}

/// A movement in a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Motion {
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
}

impl Motion {
    pub fn from_action(a: Action) -> Option<Motion> {
        Some(match a {
            Action::Up => Motion::Up,
            Action::Down => Motion::Down,
            Action::PageUp => Motion::PageUp,
            Action::PageDown => Motion::PageDown,
            Action::Top => Motion::Top,
            Action::Bottom => Motion::Bottom,
            _ => return None,
        })
    }
}

/// A selection in a list of `len` rows shown `view` at a time, with the first visible row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub selected: usize,
    pub offset: usize,
}

impl Cursor {
    pub fn apply(&mut self, m: Motion, len: usize, view: usize) {
        let view = view.max(1);
        let last = len.saturating_sub(1);
        self.selected = match m {
            Motion::Up => self.selected.saturating_sub(1),
            Motion::Down => (self.selected + 1).min(last),
            Motion::PageUp => self.selected.saturating_sub(view),
            Motion::PageDown => (self.selected + view).min(last),
            Motion::Top => 0,
            Motion::Bottom => last,
        };
        self.keep_visible(len, view);
    }

    /// Clamps to the list and scrolls as little as possible to show the selection.
    pub fn keep_visible(&mut self, len: usize, view: usize) {
        let view = view.max(1);
        self.selected = self.selected.min(len.saturating_sub(1));
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + view {
            self.offset = self.selected + 1 - view;
        }
        self.offset = self.offset.min(len.saturating_sub(view));
    }
}

/// A scroll position over `len` lines shown `view` at a time (text, not a selection).
pub fn scroll(pos: usize, m: Motion, len: usize, view: usize) -> usize {
    let max = len.saturating_sub(view.max(1));
    match m {
        Motion::Up => pos.saturating_sub(1),
        Motion::Down => (pos + 1).min(max),
        Motion::PageUp => pos.saturating_sub(view.max(1)),
        Motion::PageDown => (pos + view.max(1)).min(max),
        Motion::Top => 0,
        Motion::Bottom => max,
    }
}

/// The three bands of the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub header: Rect,
    pub body: Rect,
    pub footer: Rect,
}

pub fn areas(size: Rect) -> Areas {
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(size);
    Areas {
        header,
        body,
        footer,
    }
}

/// Inside a bordered block.
pub fn inner(r: Rect) -> Rect {
    Rect {
        x: r.x + 1,
        y: r.y + 1,
        width: r.width.saturating_sub(2),
        height: r.height.saturating_sub(2),
    }
}

/// The smallest terminal the dashboard draws panes in; below it, one line says so.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 15;

pub fn too_small(size: Rect) -> bool {
    size.width < MIN_WIDTH || size.height < MIN_HEIGHT
}

/// Lines of content the Stage pane shows.
pub fn content_rows_for(size: Rect) -> usize {
    stage::content_rows(areas(size).body)
}

/// Rows a bordered table with a header shows in the body.
pub fn table_rows(size: Rect) -> usize {
    usize::from(inner(areas(size).body).height.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_scrolls_as_little_as_possible() {
        let mut c = Cursor::default();
        for _ in 0..12 {
            c.apply(Motion::Down, 100, 10);
        }
        assert_eq!(
            c,
            Cursor {
                selected: 12,
                offset: 3
            }
        );
        c.apply(Motion::Up, 100, 10);
        assert_eq!(
            c,
            Cursor {
                selected: 11,
                offset: 3
            },
            "moving up inside the view does not scroll"
        );
        c.apply(Motion::Bottom, 100, 10);
        assert_eq!(
            c,
            Cursor {
                selected: 99,
                offset: 90
            }
        );
        c.apply(Motion::PageUp, 100, 10);
        assert_eq!(
            c,
            Cursor {
                selected: 89,
                offset: 89
            }
        );
        c.keep_visible(5, 10);
        assert_eq!(
            c,
            Cursor {
                selected: 4,
                offset: 0
            },
            "a shrunken list clamps"
        );
        c.apply(Motion::Down, 0, 10);
        assert_eq!(
            c,
            Cursor {
                selected: 0,
                offset: 0
            }
        );
    }
}
