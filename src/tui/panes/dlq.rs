//! The dead-letter queue: stages that ran out of attempts, waiting for a requeue or a discard.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table, TableState};

use super::{Cmd, Cursor, Cx, Effect, HELP, MOVE, Motion, Pane, PaneId, QUIT, cmd};
use crate::model::{Command, DlqEntry, DlqId, Page};
use crate::tui::action::Action;
use crate::tui::filter::{self, Field, Filter};
use crate::tui::keymap::Context;
use crate::tui::popup::{self, Popup};
use crate::tui::view::Ctx;
use crate::tui::widgets::{column_widths, elapsed, fit, fitted_row, wrap_rows};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DlqPane {
    pub entries: Vec<DlqEntry>,
    /// The filter as typed, and parsed.
    pub filter: String,
    pub parsed: Filter,
    /// Indices of `entries` that match the filter: the rows shown.
    pub shown: Vec<usize>,
    pub cursor: Cursor,
    pub loaded: bool,
    /// Entries in the queue: more than are loaded when it is deeper than one page.
    pub total: u64,
}

/// The fields the DLQ filter takes: `#42` is an entry or a run.
pub fn dlq_fields(pipelines: Option<Vec<String>>) -> Vec<Field> {
    vec![
        match pipelines {
            Some(names) => Field::one_of("pipeline", names),
            None => Field::any("pipeline"),
        },
        Field::any("stage"),
    ]
}

impl DlqPane {
    pub fn selected(&self) -> Option<&DlqEntry> {
        self.shown
            .get(self.cursor.selected)
            .and_then(|&i| self.entries.get(i))
    }

    fn matches(&self, e: &DlqEntry) -> bool {
        let f = &self.parsed;
        f.id.is_none_or(|id| e.id.0 == id || e.run_id.0 == id)
            && f.field("pipeline").is_none_or(|p| e.pipeline == p)
            && f.field("stage").is_none_or(|s| e.stage == s)
            && (f.words.is_empty()
                || f.words_in(&format!(
                    "{} {} {}: {}",
                    e.pipeline, e.stage, e.error.code, e.error.message
                )))
    }

    fn refilter(&mut self, view: usize) {
        let keep = self.selected().map(|e| e.id);
        self.refilter_keeping(keep, view);
    }

    /// Recomputes the rows shown, keeping the selection on entry `keep` while it is shown.
    fn refilter_keeping(&mut self, keep: Option<crate::model::DlqId>, view: usize) {
        self.shown = (0..self.entries.len())
            .filter(|&i| self.matches(&self.entries[i]))
            .collect();
        if let Some(i) =
            keep.and_then(|id| self.shown.iter().position(|&i| self.entries[i].id == id))
        {
            self.cursor.selected = i;
        }
        self.cursor.keep_visible(self.shown.len(), view);
    }

    /// Takes the newest page of the queue (the pane holds at most one page, whatever the
    /// queue's depth).
    pub fn apply(&mut self, page: Page<DlqEntry, DlqId>, view: usize) {
        let keep = self.selected().map(|e| e.id);
        self.total = page.total;
        self.entries = page.items;
        self.loaded = true;
        self.refilter_keeping(keep, view);
    }
}

const COMMANDS: &[Cmd] = &[
    MOVE,
    cmd(&[Action::Filter], "filter"),
    cmd(&[Action::Open], "run"),
    cmd(&[Action::OpenStage], "stage"),
    cmd(&[Action::Requeue], "requeue"),
    cmd(&[Action::Discard], "discard"),
    HELP,
    QUIT,
];

fn confirm(a: Action, e: &DlqEntry) -> Popup {
    if a == Action::Requeue {
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
    }
}

impl DlqPane {
    /// Keeps the selection in view after a resize.
    pub fn resized(&mut self, size: Rect) {
        self.cursor.keep_visible(self.shown.len(), table_rows(size));
    }
}

impl Pane for DlqPane {
    fn title(&self) -> &'static str {
        "DLQ"
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Dlq, Context::List, Context::Global]
    }

    fn commands(&self) -> &'static [Cmd] {
        COMMANDS
    }

    fn on_action(&mut self, a: Action, cx: &Cx<'_>) -> Effect {
        if let Some(m) = Motion::from_action(a) {
            self.cursor.apply(m, self.shown.len(), table_rows(cx.size));
            return Effect::None;
        }
        match (a, self.selected()) {
            (Action::Filter, _) => Effect::EditFilter(self.filter.clone()),
            (Action::Back, _) if !self.filter.is_empty() => {
                self.filter.clear();
                self.parsed = Filter::default();
                self.refilter(table_rows(cx.size));
                Effect::None
            }
            (Action::Open, Some(e)) => Effect::OpenRun {
                id: e.run_id,
                from: PaneId::Dlq,
            },
            (Action::OpenStage, Some(e)) => Effect::OpenStage {
                target: super::stage::Target {
                    run: e.run_id,
                    pipeline: e.pipeline.clone(),
                    stage: e.stage.clone(),
                },
                from: PaneId::Dlq,
            },
            (Action::Requeue | Action::Discard, Some(e)) => Effect::Popup(Box::new(confirm(a, e))),
            _ => Effect::None,
        }
    }

    fn nested(&self, _cx: &Cx<'_>) -> bool {
        !self.filter.is_empty()
    }

    fn filter_placeholder(&self) -> &'static str {
        "words, pipeline:NAME, stage:NAME, #42"
    }

    fn set_filter(&mut self, text: String, cx: &Cx<'_>) -> Result<Effect, String> {
        let names = cx
            .overview
            .map(|o| o.pipelines.iter().map(|p| p.name.clone()).collect());
        self.parsed = filter::parse(&text, &dlq_fields(names))?;
        self.filter = text;
        self.refilter(table_rows(cx.size));
        Ok(Effect::None)
    }

    fn click(&mut self, row: usize) {
        let target = self.cursor.offset + row;
        if target < self.shown.len() {
            self.cursor.selected = target;
        }
    }

    fn render(&self, f: &mut Frame, area: Rect, ctx: &Ctx<'_>) {
        render(f, area, self, ctx);
    }
}

/// Rows under the table for the selected entry: a rule, what it is, and its error.
const DETAIL_ROWS: u16 = 2 + ERROR_ROWS;
/// Rows the selected entry's error may take (cut with an ellipsis beyond them).
const ERROR_ROWS: u16 = 3;

/// Rows of entries the table shows.
pub fn table_rows(size: Rect) -> usize {
    super::table_rows(size)
        .saturating_sub(usize::from(DETAIL_ROWS))
        .max(1)
}

/// How many entries are shown, of how many loaded, of how many in the queue.
fn count_label(p: &DlqPane) -> String {
    match (p.filter.is_empty(), p.total > p.entries.len() as u64) {
        (true, false) => format!("· {} · newest first ", p.entries.len()),
        (true, true) => format!("· newest {} of {} ", p.entries.len(), p.total),
        (false, false) => format!("· {} of {} · newest first ", p.shown.len(), p.entries.len()),
        (false, true) => format!(
            "· {} of the newest {} of {} ",
            p.shown.len(),
            p.entries.len(),
            p.total
        ),
    }
}

pub fn render(f: &mut Frame, area: Rect, p: &DlqPane, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let title = Line::from(vec![
        Span::styled(" Dead-letter queue ", t.style("ui.title")),
        Span::styled(
            count_label(p),
            if p.entries.is_empty() {
                t.style("ui.dim")
            } else {
                t.style("alert")
            },
        ),
    ]);
    let block = Block::bordered()
        .title(title)
        .border_style(t.style("ui.border.focused"));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let empty = if p.loaded && p.entries.is_empty() {
        Some("The dead-letter queue is empty.")
    } else if p.shown.is_empty() && !p.entries.is_empty() {
        Some("No entries match the filter (Esc clears it).")
    } else {
        None
    };
    if let Some(text) = empty {
        f.render_widget(Paragraph::new(Span::styled(text, t.style("ui.dim"))), inner);
        return;
    }
    // The selected entry's whole error sits under the table, so narrow terminals lose nothing.
    let [table_area, detail] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(DETAIL_ROWS)]).areas(inner);
    // Name columns as wide as their names, sharing what the fixed columns and 30 columns of
    // error leave.
    let name_max = (usize::from(inner.width).saturating_sub(64) / 2).max(16);
    let name_w = |f: fn(&DlqEntry) -> &str| {
        let w = p
            .entries
            .iter()
            .map(|e| f(e).chars().count())
            .max()
            .unwrap_or(5)
            .clamp(5, name_max);
        u16::try_from(w).unwrap_or(12)
    };
    let widths = [
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(name_w(|e| &e.pipeline)),
        Constraint::Length(name_w(|e| &e.stage)),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Fill(1),
    ];
    let cols = column_widths(table_area.width, &widths);
    let rows: Vec<Row> = p
        .shown
        .iter()
        .filter_map(|&i| p.entries.get(i))
        .map(|e| {
            let age = (ctx.now.timestamp_millis() - e.created_at.millis()).max(0);
            fitted_row(
                vec![
                    Line::raw(e.id.to_string()),
                    Line::raw(e.run_id.to_string()),
                    Line::raw(e.pipeline.clone()),
                    Line::raw(e.stage.clone()),
                    Line::raw(e.attempts.to_string()),
                    Line::raw(elapsed(None, Some(age), ctx.now)),
                    Line::styled(
                        format!("{}: {}", e.error.code, e.error.message),
                        t.style("status.failed"),
                    ),
                ],
                &cols,
            )
        })
        .collect();
    let table = Table::new(rows, widths)
        .header(
            Row::new(vec![
                "ID", "RUN", "PIPELINE", "STAGE", "TRIES", "AGE", "ERROR",
            ])
            .style(t.style("ui.dim")),
        )
        .row_highlight_style(t.style("ui.selection"));
    let mut state = TableState::default()
        .with_offset(p.cursor.offset)
        .with_selected(Some(p.cursor.selected));
    f.render_stateful_widget(table, table_area, &mut state);
    if let Some(e) = p.selected() {
        render_detail(f, detail, e, ctx);
    }
}

/// The selected entry under the table: a rule, what it is, and its whole error, wrapped.
fn render_detail(f: &mut Frame, area: Rect, e: &DlqEntry, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let width = usize::from(area.width);
    let mut lines = vec![
        Line::styled("─".repeat(width), t.style("ui.border")),
        Line::styled(
            fit(
                &format!(
                    "entry {} · run {} · {} / {} · {} attempt(s)",
                    e.id, e.run_id, e.pipeline, e.stage, e.attempts
                ),
                width,
            ),
            t.style("ui.dim"),
        ),
    ];
    let error = format!("{}: {}", e.error.code, e.error.message);
    lines.extend(
        wrap_rows(&error, width, usize::from(ERROR_ROWS))
            .into_iter()
            .map(|l| Line::styled(l, t.style("status.failed"))),
    );
    f.render_widget(Paragraph::new(lines), area);
}
