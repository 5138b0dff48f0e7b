//! The panes. Each owns its state (plain data), moves in response to actions, and renders from
//! `&state`. Layout is a pure function of the terminal size, shared by rendering and by the
//! key handling that needs to know how many rows a page has.

pub mod canary;
pub mod dlq;
pub mod events;
pub mod run_detail;
pub mod runs;
pub mod stage;

use ratatui::layout::{Constraint, Layout, Rect};

use super::action::Action;

/// Which pane has the focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaneId {
    Runs,
    Stage,
    Canary,
    Dlq,
    Events,
}

impl PaneId {
    pub const ALL: [PaneId; 5] = [
        PaneId::Runs,
        PaneId::Stage,
        PaneId::Canary,
        PaneId::Dlq,
        PaneId::Events,
    ];

    /// The number key and title, as in DESIGN.md: 1 Runs, 2 Stage I/O, 3 Canary, 5 DLQ, 7 Events.
    pub fn tab(self) -> (&'static str, &'static str) {
        match self {
            PaneId::Runs => ("1", "Runs"),
            PaneId::Stage => ("2", "Stage"),
            PaneId::Canary => ("3", "Canary"),
            PaneId::Dlq => ("5", "DLQ"),
            PaneId::Events => ("7", "Events"),
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
