//! One run: its stages (status, attempts, duration, error) and a timeline of every attempt.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row};

use super::{Cursor, inner};
use crate::model::{Run, RunId};
use crate::tui::view::Ctx;
use crate::tui::widgets::timeline::Timeline;
use crate::tui::widgets::{
    clock_time, column_widths, elapsed, fit, fit_spans, fitted_row, run_status, stage_status,
    status_span,
};

#[derive(Debug, Clone, PartialEq)]
pub struct RunDetail {
    pub id: RunId,
    pub run: Option<Run>,
    pub cursor: Cursor,
    /// The pane the run was opened from, where `back` returns.
    pub origin: super::PaneId,
}

impl RunDetail {
    pub fn new(id: RunId) -> Self {
        RunDetail {
            id,
            run: None,
            cursor: Cursor::default(),
            origin: super::PaneId::Runs,
        }
    }

    pub fn stage_count(&self) -> usize {
        self.run.as_ref().map_or(0, |r| r.stages.len())
    }

    pub fn selected_stage(&self) -> Option<&str> {
        self.run
            .as_ref()?
            .stages
            .get(self.cursor.selected)
            .map(|s| s.id.as_str())
    }
}

/// Info line, stage table, timeline.
pub fn layout(body: Rect) -> (Rect, Rect, Rect) {
    let area = inner(body);
    let rest = area.height.saturating_sub(1);
    let table = (rest / 2).max(3);
    let [info, table, timeline] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(table),
        Constraint::Min(0),
    ])
    .areas(area);
    (info, table, timeline)
}

/// How many stage rows the table shows.
pub fn table_rows(body: Rect) -> usize {
    usize::from(layout(body).1.height.saturating_sub(1))
}

pub fn render(f: &mut Frame, body: Rect, d: &RunDetail, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let title = match &d.run {
        // The status before the pipeline's name, so a long name never pushes it off.
        Some(r) => fit_spans(
            Line::from(vec![
                Span::styled(format!(" Run {} ", r.id), t.style("ui.title")),
                status_span(t, run_status(r.status), r.status.as_str()),
                Span::styled(
                    format!(
                        " · {} · {} ",
                        elapsed(r.started_at, r.duration_ms, ctx.now),
                        r.pipeline
                    ),
                    t.style("ui.dim"),
                ),
            ]),
            usize::from(body.width.saturating_sub(4)),
        ),
        None => Line::styled(format!(" Run {} ", d.id), t.style("ui.title")),
    };
    f.render_widget(
        Block::bordered()
            .title(title)
            .border_style(t.style("ui.border.focused")),
        body,
    );
    let (info, table_area, timeline_area) = layout(body);
    let Some(run) = &d.run else {
        f.render_widget(
            Paragraph::new(Span::styled("loading…", t.style("ui.dim"))),
            info,
        );
        return;
    };
    let started = run
        .started_at
        .map_or_else(|| "-".into(), |s| clock_time(s, ctx.now));
    f.render_widget(
        Paragraph::new(Span::styled(
            fit(
                &format!(
                    "{}{} · started {started}{}{} · params {}",
                    if run.test { "stage test · " } else { "" },
                    run.trigger.as_str(),
                    run.owner
                        .as_ref()
                        .map(|w| format!(" · worker {w}"))
                        .unwrap_or_default(),
                    versions(" · overrides ", &run.overrides),
                    run.params
                ),
                usize::from(info.width),
            ),
            t.style("ui.dim"),
        )),
        info,
    );
    render_stages(f, table_area, d, run, ctx);
    if timeline_area.height >= 3 {
        let block = Block::bordered()
            .title(Span::styled(" Timeline ", t.style("ui.dim")))
            .border_style(t.style("ui.border"));
        let inside = block.inner(timeline_area);
        f.render_widget(block, timeline_area);
        f.render_widget(
            Timeline {
                run,
                theme: t,
                now: ctx.now,
                first: d.cursor.offset,
            },
            inside,
        );
    }
}

/// `prefix` and the versions as `name@N`, or nothing when there are none.
fn versions(prefix: &str, v: &std::collections::BTreeMap<String, u32>) -> String {
    if v.is_empty() {
        return String::new();
    }
    let list: Vec<String> = v.iter().map(|(n, v)| format!("{n}@{v}")).collect();
    format!("{prefix}{}", list.join(" "))
}

/// The stage table: status, attempts, duration, the asset versions used (when any stage used
/// one) and the last error of each stage.
fn render_stages(f: &mut Frame, area: Rect, d: &RunDetail, run: &Run, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let name_max = usize::from(area.width / 3).max(16);
    let with_assets = run
        .stages
        .iter()
        .any(|s| s.last_attempt().is_some_and(|a| !a.assets.is_empty()));
    let mut widths = vec![
        Constraint::Length(
            u16::try_from(
                run.stages
                    .iter()
                    .map(|s| s.id.chars().count())
                    .max()
                    .unwrap_or(5)
                    .clamp(5, name_max),
            )
            .unwrap_or(16),
        ),
        Constraint::Length(13),
        Constraint::Length(8),
        Constraint::Length(9),
    ];
    let mut header = vec!["STAGE", "STATUS", "ATTEMPTS", "DURATION"];
    if with_assets {
        widths.push(Constraint::Length(18));
        header.push("ASSETS");
    }
    widths.push(Constraint::Fill(1));
    header.push("ERROR");
    let cols = column_widths(area.width, &widths);
    let rows: Vec<Row> = run
        .stages
        .iter()
        .map(|s| {
            let last = s.last_attempt();
            let error = last
                .and_then(|a| a.error.as_ref())
                .map(|e| format!("{}: {}", e.code, e.message))
                .unwrap_or_default();
            let mut cells = vec![
                Line::raw(s.id.clone()),
                Line::from(status_span(t, stage_status(s.status), s.status.as_str())),
                Line::raw(s.attempts.len().to_string()),
                // Every attempt's time, as `runs show` and `compare` count it (the last alone
                // can be a 0 ms fast failure after minutes of tries); a running attempt's so far.
                Line::raw(last.map_or_else(
                    || "-".into(),
                    |a| match a.duration_ms {
                        Some(_) => elapsed(None, s.total_ms(), ctx.now),
                        None => {
                            let before = s.total_ms().unwrap_or(0);
                            let so_far = ctx.now.timestamp_millis() - a.started_at.millis();
                            elapsed(None, Some(before.saturating_add(so_far.max(0))), ctx.now)
                        }
                    },
                )),
            ];
            if with_assets {
                cells.push(Line::styled(
                    last.map(|a| versions("", &a.assets)).unwrap_or_default(),
                    t.style("ui.key"),
                ));
            }
            cells.push(Line::styled(error, t.style("status.failed")));
            fitted_row(cells, &cols)
        })
        .collect();
    crate::tui::widgets::render_list(f, area, (rows, widths, header), d.cursor, t);
}
