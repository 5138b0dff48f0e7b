//! A live tail of the event log, newest at the bottom, filterable.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::{Cmd, Cursor, Cx, Effect, HELP, MOVE, Motion, Pane, QUIT, areas, cmd, inner};
use crate::model::{Event, EventKind};
use crate::tui::action::Action;
use crate::tui::filter::{self, Field, Filter};
use crate::tui::keymap::Context;
use crate::tui::popup::Popup;
use crate::tui::request::Request;
use crate::tui::view::Ctx;
use crate::tui::widgets::fit;

/// Older events fetched at a time when scrolling past the oldest one held.
const OLDER_PAGE: usize = 500;

/// Events kept in memory; older ones are in the store (`opsdeck events`).
const KEEP: usize = 5_000;

#[derive(Debug, Clone, PartialEq)]
pub struct EventsPane {
    pub events: Vec<Event>,
    /// The filter as typed, and parsed.
    pub filter: String,
    pub parsed: Filter,
    /// Indices of `events` that match the filter.
    pub matches: Vec<usize>,
    /// Keep the newest event in view.
    pub follow: bool,
    pub cursor: Cursor,
}

impl Default for EventsPane {
    fn default() -> Self {
        EventsPane {
            events: Vec::new(),
            filter: String::new(),
            parsed: Filter::default(),
            matches: Vec::new(),
            follow: true,
            cursor: Cursor::default(),
        }
    }
}

/// The whole of an event: when, what it concerns, and every field of its data; for an audit
/// record who acted, how, on what, with what outcome and why.
pub fn record(e: &Event) -> Popup {
    let mut lines = vec![format!(
        "at {} UTC",
        e.at.datetime().format("%Y-%m-%d %H:%M:%S%.3f")
    )];
    if let Some(run) = e.run_id {
        let stage = e
            .stage
            .as_ref()
            .map(|s| format!(", stage {s}"))
            .unwrap_or_default();
        lines.push(format!("run {run}{stage}"));
    }
    let d = &e.data;
    let s = |k: &str| d[k].as_str().unwrap_or("-").to_string();
    let data = if e.kind == EventKind::Audit {
        lines.push(format!(
            "actor {} ({}, via {})",
            s("actor"),
            s("role"),
            s("via")
        ));
        lines.push(format!("action {} on {}", s("action"), s("target")));
        lines.push(format!("outcome {}", s("outcome")));
        lines.push(format!(
            "reason: {}",
            d["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
                .unwrap_or("(none given)")
        ));
        &d["details"]
    } else {
        d
    };
    if !data.is_null() {
        lines.push(String::new());
        lines.push(if e.kind == EventKind::Audit {
            "details:".into()
        } else {
            "data:".into()
        });
        lines.extend(
            serde_json::to_string_pretty(data)
                .unwrap_or_default()
                .lines()
                .map(str::to_string),
        );
    }
    Popup::Record(crate::tui::popup::Record {
        title: format!("Event #{} · {}", e.seq, e.kind.as_str()),
        lines,
        run: e.run_id,
        scroll: 0,
    })
}

fn text_of(e: &Event) -> String {
    let run = e.run_id.map(|r| format!(" run {r}")).unwrap_or_default();
    let stage = e
        .stage
        .as_ref()
        .map(|s| format!(" {s}"))
        .unwrap_or_default();
    format!("{}{run}{stage} {}", e.kind.as_str(), e.summary())
}

/// The fields the Events filter takes: `#42` is a run.
pub fn event_fields() -> Vec<Field> {
    vec![
        Field::one_of(
            "kind",
            EventKind::ALL.iter().map(|k| k.as_str().to_string()),
        ),
        Field::any("stage"),
    ]
}

impl EventsPane {
    fn matches(&self, e: &Event) -> bool {
        let f = &self.parsed;
        f.id.is_none_or(|id| e.run_id.is_some_and(|r| r.0 == id))
            && f.field("kind").is_none_or(|k| e.kind.as_str() == k)
            && f.field("stage")
                .is_none_or(|s| e.stage.as_deref() == Some(s))
            // Words match the line as shown and every field of the data behind it (a stage's
            // events name their pipeline only there).
            && (f.words.is_empty() || f.words_in(&format!("{} {}", text_of(e), e.data)))
    }

    pub fn last_seq(&self) -> u64 {
        self.events.last().map_or(0, |e| e.seq)
    }

    /// Appends events newer than what is held, in order; duplicates are dropped.
    pub fn push(&mut self, events: impl IntoIterator<Item = Event>, view: usize) {
        for e in events {
            if e.seq <= self.last_seq() {
                continue;
            }
            if self.matches(&e) {
                self.matches.push(self.events.len());
            }
            self.events.push(e);
        }
        if self.events.len() > KEEP + KEEP / 5 {
            let drop = self.events.len() - KEEP;
            self.events.drain(..drop);
            self.refilter(view);
        }
        if self.follow {
            self.cursor.apply(Motion::Bottom, self.matches.len(), view);
        } else {
            self.cursor.keep_visible(self.matches.len(), view);
        }
    }

    /// Forgets what is held (the stream skipped ahead past a gap it will not fill); the
    /// newest events are then loaded again.
    pub fn reset(&mut self) {
        self.events.clear();
        self.matches.clear();
        self.follow = true;
        self.cursor = Cursor::default();
    }

    pub fn first_seq(&self) -> u64 {
        self.events.first().map_or(0, |e| e.seq)
    }

    /// Whether older events exist in the store than the ones held.
    pub fn has_older(&self) -> bool {
        self.first_seq() > 1
    }

    /// Puts older events in front, keeping the selection on the same event.
    pub fn prepend(&mut self, older: Vec<Event>, view: usize) {
        let first = self.first_seq();
        let older: Vec<Event> = older
            .into_iter()
            .filter(|e| first == 0 || e.seq < first)
            .collect();
        if older.is_empty() {
            return;
        }
        let before = self.matches.len();
        let mut all = older;
        all.append(&mut self.events);
        self.events = all;
        self.matches = (0..self.events.len())
            .filter(|&i| self.matches(&self.events[i]))
            .collect();
        let added = self.matches.len() - before;
        self.cursor.selected += added;
        self.cursor.offset += added;
        self.cursor.keep_visible(self.matches.len(), view);
    }

    pub fn refilter(&mut self, view: usize) {
        self.matches = (0..self.events.len())
            .filter(|&i| self.matches(&self.events[i]))
            .collect();
        self.cursor.apply(Motion::Bottom, self.matches.len(), view);
    }

    pub fn apply_motion(&mut self, m: Motion, view: usize) {
        self.cursor.apply(m, self.matches.len(), view);
        self.follow = self.cursor.selected + 1 >= self.matches.len();
    }
}

const COMMANDS: &[Cmd] = &[
    MOVE,
    cmd(&[Action::Filter], "filter"),
    cmd(&[Action::Follow], "follow"),
    cmd(&[Action::Open], "record"),
    HELP,
    QUIT,
];

/// Lines of events the pane shows.
pub fn view_rows(size: Rect) -> usize {
    usize::from(inner(areas(size).body).height)
}

impl EventsPane {
    /// Keeps the selection in view after a resize.
    pub fn resized(&mut self, size: Rect) {
        self.cursor
            .keep_visible(self.matches.len(), view_rows(size));
    }
}

impl Pane for EventsPane {
    fn title(&self) -> &'static str {
        "Events"
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Events, Context::List, Context::Global]
    }

    fn commands(&self) -> &'static [Cmd] {
        COMMANDS
    }

    fn on_action(&mut self, a: Action, cx: &Cx<'_>) -> Effect {
        let view = view_rows(cx.size);
        if let Some(m) = Motion::from_action(a) {
            let at_top = self.cursor.selected == 0;
            self.apply_motion(m, view);
            // Moving up past the oldest event held pages back into the store.
            if at_top && matches!(m, Motion::Up | Motion::PageUp | Motion::Top) && self.has_older()
            {
                return Effect::fetch(Request::OlderEvents {
                    before: self.first_seq(),
                    limit: OLDER_PAGE,
                });
            }
            return Effect::None;
        }
        match a {
            Action::Filter => Effect::EditFilter(self.filter.clone()),
            Action::Follow => {
                self.follow = !self.follow;
                if self.follow {
                    self.cursor.apply(Motion::Bottom, self.matches.len(), view);
                }
                Effect::None
            }
            Action::Open => self
                .matches
                .get(self.cursor.selected)
                .and_then(|&i| self.events.get(i))
                .map_or(Effect::None, |e| Effect::Popup(Box::new(record(e)))),
            Action::Back if !self.filter.is_empty() => {
                self.filter.clear();
                self.parsed = Filter::default();
                self.refilter(view);
                Effect::None
            }
            _ => Effect::None,
        }
    }

    fn nested(&self, _cx: &Cx<'_>) -> bool {
        !self.filter.is_empty()
    }

    fn filter_placeholder(&self) -> &'static str {
        "words, kind:run_finished, stage:NAME, #RUN"
    }

    fn set_filter(&mut self, text: String, cx: &Cx<'_>) -> Result<Effect, String> {
        self.parsed = filter::parse(&text, &event_fields())?;
        self.filter = text;
        self.refilter(view_rows(cx.size));
        Ok(Effect::None)
    }

    fn render(&self, f: &mut Frame, area: Rect, ctx: &Ctx<'_>) {
        render(f, area, self, ctx);
    }
}

fn kind_slot(e: &Event) -> &'static str {
    match e.kind {
        EventKind::Audit if e.data["outcome"] == "ok" => "ui.key",
        EventKind::DlqAdded | EventKind::RunInterrupted => "status.failed",
        EventKind::StageRetrying | EventKind::ScheduleSkipped => "status.retrying",
        EventKind::BreakerChanged | EventKind::Audit => "alert",
        EventKind::RunFinished | EventKind::StageFinished => match e.data["status"].as_str() {
            Some("succeeded") => "status.ok",
            Some("failed") => "status.failed",
            _ => "status.cancelled",
        },
        _ => "ui.text",
    }
}

pub fn render(f: &mut Frame, area: Rect, p: &EventsPane, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let range = match (p.events.first(), p.events.last()) {
        (Some(a), Some(b)) => format!("· #{}–#{} ", a.seq, b.seq),
        _ => String::new(),
    };
    let mut title = vec![
        Span::styled(" Events ", t.style("ui.title")),
        Span::styled(range, t.style("ui.dim")),
    ];
    if p.has_older() {
        title.push(Span::styled("· older above ", t.style("ui.dim")));
    }
    if p.follow {
        title.push(Span::styled("· following ", t.style("status.running")));
    }
    if !p.filter.is_empty() {
        title.push(Span::styled(
            format!("· filter: {} ", p.filter),
            t.style("ui.key"),
        ));
    }
    let block = Block::bordered()
        .title(Line::from(title))
        .border_style(t.style("ui.border.focused"));
    let inner = block.inner(area);
    f.render_widget(block, area);
    if p.matches.is_empty() {
        let text = if p.events.is_empty() {
            "No events yet."
        } else {
            "No events match the filter (Esc clears it)."
        };
        f.render_widget(Paragraph::new(Span::styled(text, t.style("ui.dim"))), inner);
        return;
    }
    let width = usize::from(inner.width);
    let lines: Vec<Line> = p
        .matches
        .iter()
        .skip(p.cursor.offset)
        .take(usize::from(inner.height))
        .enumerate()
        .map(|(row, &i)| {
            let e = &p.events[i];
            let at = e.at.datetime().format("%H:%M:%S%.3f");
            let text = fit(&format!("#{:<6} {at}  {}", e.seq, text_of(e)), width);
            let mut style = t.style(kind_slot(e));
            if p.cursor.offset + row == p.cursor.selected {
                style = style.patch(t.style("ui.selection"));
            }
            Line::styled(text, style)
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}
