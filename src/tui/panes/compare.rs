//! The Compare pane: two runs stage by stage. A verdict table with the change in time and
//! output per stage and the stages a changed asset reached, beside both runs' timelines on one
//! axis (the base run in the upper half of each row, the candidate in the lower), so a slower
//! stage is seen at once. `Enter` opens the stage's output diffed against the base run.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table, TableState};

use super::stage::Target;
use super::{Cmd, Cursor, Cx, Effect, HELP, MOVE, Motion, Pane, QUIT, cmd};
use crate::model::compare::{Comparison, StageComparison, StageVerdict};
use crate::model::{Run, RunId};
use crate::tui::action::Action;
use crate::tui::keymap::Context;
use crate::tui::request::Request;
use crate::tui::theme::Theme;
use crate::tui::view::Ctx;
use crate::tui::widgets::{column_widths, fit, fitted_row};

/// When a stage ran in each run, as ms from its run's start (`None` where it did not run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span2 {
    pub base: Option<(i64, i64)>,
    pub candidate: Option<(i64, i64)>,
}

/// A comparison ready to draw: the verdicts and each stage's place on the common time axis.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareView {
    pub c: Comparison,
    /// One per stage of `c.stages`, in the same order.
    pub spans: Vec<Span2>,
    /// The axis: the longer run's length in ms.
    pub axis_ms: i64,
}

/// Where stage `id` ran within `run`: from its first attempt's start to its last attempt's
/// end (or the run's end, or its start when it never ended), in ms from the run's start.
fn span_of(run: &Run, id: &str) -> Option<(i64, i64)> {
    let s = run.stage(id)?;
    let origin = run.started_at.unwrap_or(run.created_at);
    let first = s.attempts.first()?;
    let last = s.attempts.last()?;
    let start = first.started_at.millis_since(origin).max(0);
    let end = last
        .finished_at
        .or(run.finished_at)
        .map_or(start, |e| e.millis_since(origin))
        .max(start);
    Some((start, end))
}

impl CompareView {
    pub fn new(c: Comparison, base: &Run, candidate: &Run) -> CompareView {
        let spans: Vec<Span2> = c
            .stages
            .iter()
            .map(|s| Span2 {
                base: span_of(base, &s.id),
                candidate: span_of(candidate, &s.id),
            })
            .collect();
        let axis_ms = spans
            .iter()
            .flat_map(|s| [s.base, s.candidate])
            .flatten()
            .map(|(_, e)| e)
            .max()
            .unwrap_or(0)
            .max(1);
        CompareView { c, spans, axis_ms }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ComparePane {
    /// The runs compared: base, then candidate.
    pub pair: Option<(RunId, RunId)>,
    pub view: Option<CompareView>,
    /// Why there is nothing to show (loading, a failure).
    pub message: Option<String>,
    pub cursor: Cursor,
}

const COMMANDS: &[Cmd] = &[MOVE, cmd(&[Action::Open], "diff output"), HELP, QUIT];

impl ComparePane {
    /// Compares `base` with `candidate` (the older run is the base); the request for it.
    pub fn open(&mut self, a: RunId, b: RunId) -> Request {
        let (base, candidate) = if a.0 <= b.0 { (a, b) } else { (b, a) };
        if self.pair != Some((base, candidate)) {
            *self = ComparePane {
                pair: Some((base, candidate)),
                message: Some("comparing…".into()),
                ..ComparePane::default()
            };
        }
        Request::Compare { base, candidate }
    }

    /// Takes a comparison if it is of the pair shown.
    pub fn apply(&mut self, v: CompareView) {
        if self.pair == Some((v.c.base, v.c.candidate)) {
            self.cursor.keep_visible(v.c.stages.len(), 1);
            self.view = Some(v);
            self.message = None;
        }
    }

    pub fn failed(&mut self, why: String) {
        self.message = Some(why);
    }

    fn selected(&self) -> Option<&StageComparison> {
        self.view
            .as_ref()
            .and_then(|v| v.c.stages.get(self.cursor.selected))
    }
}

/// Rows of stages the table shows: the body less borders, the summary and the header.
fn table_rows(size: Rect) -> usize {
    super::table_rows(size).saturating_sub(usize::from(SUMMARY_ROWS))
}

/// Rows above the table: the verdict and what the changed assets reached.
const SUMMARY_ROWS: u16 = 2;

impl Pane for ComparePane {
    fn title(&self) -> &'static str {
        "Compare"
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Compare, Context::List, Context::Global]
    }

    fn commands(&self) -> &'static [Cmd] {
        COMMANDS
    }

    fn on_action(&mut self, a: Action, cx: &Cx<'_>) -> Effect {
        let len = self.view.as_ref().map_or(0, |v| v.c.stages.len());
        if let Some(m) = Motion::from_action(a) {
            self.cursor.apply(m, len, table_rows(cx.size));
            return Effect::None;
        }
        match (a, self.selected(), &self.view) {
            (Action::Open, Some(s), Some(v)) if s.status[1].is_some() => Effect::OpenStageDiff {
                target: Target {
                    run: v.c.candidate,
                    pipeline: v.c.pipeline[1].clone(),
                    stage: s.id.clone(),
                },
                baseline: v.c.base,
            },
            (Action::Open, Some(s), _) => Effect::Refuse(format!(
                "stage `{}` is not in the candidate run: there is no output to diff",
                s.id
            )),
            _ => Effect::None,
        }
    }

    fn unavailable(&self, a: Action) -> Option<String> {
        (a == Action::Open && self.view.is_none())
            .then(|| "mark two runs with space in Runs (or :compare A B) first".to_string())
    }

    fn click(&mut self, row: usize) {
        let len = self.view.as_ref().map_or(0, |v| v.c.stages.len());
        let target = self.cursor.offset + row;
        if target < len {
            self.cursor.selected = target;
        }
    }

    fn render(&self, f: &mut Frame, area: Rect, ctx: &Ctx<'_>) {
        render(f, area, self, ctx);
    }
}

fn verdict_style(t: &Theme, v: StageVerdict) -> Style {
    t.style(match v {
        StageVerdict::Same => "ui.dim",
        StageVerdict::Changed | StageVerdict::Added | StageVerdict::Removed => "status.retrying",
        StageVerdict::Regressed => "status.failed",
        StageVerdict::Improved => "status.ok",
    })
}

fn ms(v: Option<i64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v}ms"))
}

fn delta(s: &StageComparison) -> String {
    match (s.delta_ms, s.delta_pct) {
        (Some(d), Some(p)) => format!("{d:+}ms {p:+.0}%"),
        (Some(d), None) => format!("{d:+}ms"),
        _ => "-".into(),
    }
}

fn output(s: &StageComparison) -> String {
    match s.output_equal {
        Some(true) => "equal".into(),
        Some(false) => format!("{} changed", s.changes.len().max(s.lines.len().min(1))),
        None if s.status[0].is_some() && s.status[1].is_some() => "cut".into(),
        None => "-".into(),
    }
}

/// The mark before a stage's name: `◆` it used another version of an asset, `↳` it changed
/// downstream of one.
fn mark(c: &Comparison, id: &str) -> &'static str {
    if c.assets.iter().any(|a| a.stages.iter().any(|s| s == id)) {
        "◆ "
    } else if c
        .assets
        .iter()
        .any(|a| a.downstream_changed.iter().any(|s| s == id))
    {
        "↳ "
    } else {
        "  "
    }
}

/// One timeline cell row: the base run in the upper half of each cell, the candidate in the
/// lower, on an axis of `axis_ms` over `width` cells.
fn timeline(s: Span2, axis_ms: i64, width: usize, t: &Theme) -> Line<'static> {
    let w = i64::try_from(width.max(1)).unwrap_or(1);
    let axis = axis_ms.max(1);
    let cell = |span: Option<(i64, i64)>, i: usize| {
        span.is_some_and(|(a, b)| {
            // Every stage that ran gets at least one cell; the end rounds up.
            let lo = a.saturating_mul(w) / axis;
            let hi = (b.saturating_mul(w) + axis - 1) / axis;
            (lo..hi.max(lo + 1)).contains(&i64::try_from(i).unwrap_or(i64::MAX))
        })
    };
    let (base, cand) = (t.style("chart.legacy"), t.style("chart.canary"));
    let spans: Vec<Span<'static>> = (0..width)
        .map(|i| match (cell(s.base, i), cell(s.candidate, i)) {
            // Both: the upper half in the base's colour over the candidate's; where the
            // two look alike (mono) a full block says both.
            (true, true) => match (base.fg, cand.fg) {
                (Some(b), Some(c)) if b != c => Span::styled("▀", Style::default().fg(b).bg(c)),
                _ => Span::styled("█", base),
            },
            (true, false) => Span::styled("▀", base),
            (false, true) => Span::styled("▄", cand),
            (false, false) => Span::styled("·", t.style("ui.dim")),
        })
        .collect();
    Line::from(spans)
}

fn summary(v: &CompareView, width: usize, t: &Theme) -> Vec<Line<'static>> {
    let c = &v.c;
    let pipelines = if c.pipeline[0] == c.pipeline[1] {
        c.pipeline[0].clone()
    } else {
        format!("{} / {}", c.pipeline[0], c.pipeline[1])
    };
    let first = Line::from(vec![
        Span::styled(
            fit(
                &format!("run {} → run {} · {pipelines} · ", c.base, c.candidate),
                width,
            ),
            t.style("ui.dim"),
        ),
        Span::styled(c.verdict.as_str().to_string(), verdict_style(t, c.verdict)),
    ]);
    let assets = if c.assets.is_empty() {
        "no asset versions differ".to_string()
    } else {
        c.assets
            .iter()
            .map(|a| {
                let v = |x: Option<u32>| x.map_or_else(|| "-".into(), |x| x.to_string());
                let below = if a.downstream_changed.is_empty() {
                    String::new()
                } else {
                    format!(" ↳ {}", a.downstream_changed.join(", "))
                };
                format!(
                    "◆ {} {}→{}: {}{below}",
                    a.name,
                    v(a.base_version),
                    v(a.candidate_version),
                    a.stages.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let unexplained = if c.unexplained.is_empty() {
        String::new()
    } else {
        format!("  · not from assets: {}", c.unexplained.join(", "))
    };
    vec![
        first,
        Line::styled(
            fit(&format!("{assets}{unexplained}"), width),
            t.style("ui.key"),
        ),
    ]
}

pub fn render(f: &mut Frame, area: Rect, p: &ComparePane, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let block = Block::bordered()
        .title(Line::from(vec![
            Span::styled(" Compare ", t.style("ui.title")),
            Span::styled("· base ▀ above, candidate ▄ below ", t.style("ui.dim")),
        ]))
        .border_style(t.style("ui.border.focused"));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(v) = &p.view else {
        let text = p.message.clone().unwrap_or_else(|| {
            "Mark two runs with space in Runs (or type :compare A B) to compare them stage by stage."
                .into()
        });
        f.render_widget(Paragraph::new(Span::styled(text, t.style("ui.dim"))), inner);
        return;
    };
    let [top, table_area] =
        Layout::vertical([Constraint::Length(SUMMARY_ROWS), Constraint::Min(1)]).areas(inner);
    f.render_widget(Paragraph::new(summary(v, usize::from(top.width), t)), top);
    let name_w =
        v.c.stages
            .iter()
            .map(|s| s.id.chars().count() + 2)
            .max()
            .unwrap_or(8)
            .clamp(8, usize::from(inner.width / 4).max(8));
    let wide = inner.width >= 110;
    let mut widths = vec![
        Constraint::Length(u16::try_from(name_w).unwrap_or(16)),
        Constraint::Length(9),
    ];
    let mut header = vec!["STAGE", "VERDICT"];
    if wide {
        widths.extend([Constraint::Length(9), Constraint::Length(9)]);
        header.extend(["BASE", "CAND"]);
    }
    widths.extend([
        Constraint::Length(15),
        Constraint::Length(10),
        Constraint::Fill(1),
    ]);
    header.extend(["DELTA", "OUTPUT", "TIMELINE"]);
    // Less the selection mark's two columns.
    let cols = column_widths(table_area.width.saturating_sub(2), &widths);
    let bar_w = cols.last().copied().unwrap_or(10);
    let rows: Vec<Row> =
        v.c.stages
            .iter()
            .zip(&v.spans)
            .map(|(s, span)| {
                let mut cells = vec![
                    Line::raw(format!("{}{}", mark(&v.c, &s.id), s.id)),
                    Line::styled(s.verdict.as_str().to_string(), verdict_style(t, s.verdict)),
                ];
                if wide {
                    cells.push(Line::raw(ms(s.duration_ms[0])));
                    cells.push(Line::raw(ms(s.duration_ms[1])));
                }
                cells.push(Line::raw(delta(s)));
                cells.push(Line::raw(output(s)));
                cells.push(timeline(*span, v.axis_ms, bar_w, t));
                fitted_row(cells, &cols)
            })
            .collect();
    // The selection is marked without a background, which would hide the timelines' colours.
    let mut selected = t.style("ui.selection");
    selected.bg = None;
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(t.style("ui.dim")))
        .row_highlight_style(selected.add_modifier(ratatui::style::Modifier::BOLD))
        .highlight_symbol("› ");
    let mut state = TableState::default()
        .with_offset(p.cursor.offset)
        .with_selected(Some(p.cursor.selected));
    f.render_stateful_widget(table, table_area, &mut state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::theme::Theme;

    #[test]
    fn a_timeline_puts_the_base_above_and_the_candidate_below_on_one_axis() {
        let t = Theme::mono();
        let s = Span2 {
            base: Some((0, 50)),
            candidate: Some((0, 100)),
        };
        let line = timeline(s, 100, 10, &t);
        let text: String = line.spans.iter().map(|s| s.content.as_ref()).collect();
        assert_eq!(text, "█████▄▄▄▄▄");
        let none = timeline(Span2::default(), 100, 4, &t);
        let text: String = none.spans.iter().map(|s| s.content.as_ref()).collect();
        assert_eq!(text, "····");
    }
}
