//! The Runs pane: every run, newest first by default, as a virtual list. Only a window of rows
//! around the view is loaded from the backend, so 100,000 runs cost no more than 100.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table, TableState};

use super::run_detail::{self, RunDetail};
use super::stage::Target;
use super::{
    BACK, Cmd, Cursor, Cx, Effect, HELP, MOVE, Motion, Pane, PaneId, QUIT, cmd, more, spare,
};
use crate::model::{Command, Page, Run, RunId, RunQuery, RunSort, RunStatus, RunSummary};
use crate::tui::action::Action;
use crate::tui::filter::{self, Field};
use crate::tui::keymap::Context;
use crate::tui::popup::{self, Picker, Popup};
use crate::tui::request::Request;
use crate::tui::view::Ctx;
use crate::tui::widgets::{
    clock_time, column_widths, elapsed, fitted_row, run_status, status_span, thousands,
};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunsList {
    /// The filter as typed: words match pipelines, `status:failed`, `pipeline:NAME`, `#42`.
    pub filter: String,
    pub sort: RunSort,
    pub total: u64,
    /// Absolute index of `rows[0]`.
    pub window_start: u64,
    pub rows: Vec<RunSummary>,
    pub cursor: Cursor,
    /// The run under the cursor, so the selection stays on it when new runs push it down.
    pub selected_id: Option<RunId>,
    pub loaded: bool,
    /// The newest request's tag; answers to older requests are ignored.
    pub tag: u64,
}

/// The fields the Runs filter takes; pipeline names are checked once the overview lists them.
pub fn run_fields(pipelines: Option<Vec<String>>) -> Vec<Field> {
    vec![
        Field::one_of(
            "status",
            RunStatus::ALL.iter().map(|s| s.as_str().to_string()),
        ),
        match pipelines {
            Some(names) => Field::one_of("pipeline", names),
            None => Field::any("pipeline"),
        },
    ]
}

/// Turns filter text into a query, or a sentence saying what is wrong with it: words match
/// part of a pipeline name, `#42` a run id.
pub fn parse_filter(text: &str, pipelines: Option<Vec<String>>) -> Result<RunQuery, String> {
    let f = filter::parse(text, &run_fields(pipelines))?;
    let mut q = RunQuery::default();
    if let Some(s) = f.field("status") {
        q.status = Some(s.parse::<RunStatus>().map_err(|e| e.to_string())?);
    }
    q.pipeline = f.field("pipeline").map(str::to_string);
    q.text = match (f.id, f.words.as_slice()) {
        (Some(_), [_, ..]) => {
            return Err("either #ID or a word (part of a pipeline name), not both".into());
        }
        (_, [_, _, ..]) => {
            return Err(format!(
                "one word (part of a pipeline name), not {}",
                f.words.len()
            ));
        }
        (Some(id), []) => Some(id.to_string()),
        (None, [w]) => Some(w.clone()),
        (None, []) => None,
    };
    Ok(q)
}

impl RunsList {
    pub fn query(&self) -> RunQuery {
        let mut q = parse_filter(&self.filter, None).unwrap_or_default();
        q.sort = self.sort;
        q
    }

    pub fn len(&self) -> usize {
        usize::try_from(self.total).unwrap_or(usize::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn row(&self, i: usize) -> Option<&RunSummary> {
        let start = usize::try_from(self.window_start).ok()?;
        self.rows.get(i.checked_sub(start)?)
    }

    pub fn selected(&self) -> Option<&RunSummary> {
        self.row(self.cursor.selected)
    }

    /// Whether the rows in view are not all loaded.
    pub fn needs_window(&self, view: usize) -> bool {
        let end = (self.cursor.offset + view).min(self.len());
        (self.cursor.offset..end).any(|i| self.row(i).is_none())
    }

    /// A request for the rows around the view: a page before and after it, so small moves
    /// never wait. Answers to earlier requests are ignored from now on.
    pub fn window_request(&mut self, view: usize) -> Request {
        self.tag += 1;
        let tag = self.tag;
        let offset = self.cursor.offset.saturating_sub(view) as u64;
        let mut q = self.query();
        q.offset = offset;
        q.limit = (view * 3).clamp(30, 600);
        Request::Runs { q, tag }
    }

    pub fn apply_page(&mut self, tag: u64, offset: u64, page: Page<RunSummary>, view: usize) {
        if tag != self.tag {
            return;
        }
        self.total = page.total;
        self.window_start = offset;
        self.rows = page.items;
        self.loaded = true;
        // Stay on the same run. At the top of the list the view stays at the top, so new runs
        // appear above the selection; scrolled down, the view moves with the selected run so
        // what one is reading does not slide away.
        let on_newest =
            self.cursor.selected == 0 && self.cursor.offset == 0 && self.sort == RunSort::Newest;
        if on_newest {
            // On the newest run, stay on the newest: new runs take the selection, like a tail.
        } else if let Some(id) = self.selected_id
            && let Some(j) = self.rows.iter().position(|r| r.id == id)
        {
            let abs = offset as usize + j;
            if self.cursor.offset > 0 {
                let shift = abs as isize - self.cursor.selected as isize;
                self.cursor.offset = (self.cursor.offset as isize + shift).max(0) as usize;
            }
            self.cursor.selected = abs;
        }
        self.cursor.keep_visible(self.len(), view);
        self.selected_id = self.selected().map(|r| r.id);
    }

    pub fn apply_motion(&mut self, m: Motion, view: usize) {
        self.cursor.apply(m, self.len(), view);
        self.selected_id = self.selected().map(|r| r.id);
    }
}

/// The Runs pane: the list of runs, or one run opened from it (or from the DLQ or the events).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunsPane {
    pub list: RunsList,
    pub detail: Option<RunDetail>,
    /// A run marked with `space` to compare with the next one marked.
    pub marked: Option<RunId>,
}

const LIST: &[Cmd] = &[
    MOVE,
    cmd(&[Action::Open], "open"),
    cmd(&[Action::Filter], "filter"),
    cmd(&[Action::Sort], "sort"),
    cmd(&[Action::NewRun], "new run"),
    spare(&[Action::Mark], "mark"),
    cmd(&[Action::Palette], "command"),
    more(&[Action::RetryRun, Action::CancelRun]),
    HELP,
    QUIT,
];

const DETAIL: &[Cmd] = &[
    MOVE,
    cmd(&[Action::Open], "stage"),
    cmd(&[Action::RetryRun], "retry"),
    cmd(&[Action::CancelRun], "cancel"),
    BACK,
    HELP,
    QUIT,
];

/// Rows the list shows.
fn list_rows(size: Rect) -> usize {
    super::table_rows(size)
}

fn detail_rows(size: Rect) -> usize {
    run_detail::table_rows(super::areas(size).body)
}

/// The confirmation of a retry or a cancel of run `id`.
fn confirm_run(a: Action, id: RunId, pipeline: &str, status: RunStatus) -> Popup {
    if a == Action::CancelRun {
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
    }
}

impl RunsPane {
    /// Fetches the rows in view again, from the top.
    pub fn reload(&mut self, size: Rect) -> Request {
        self.list.cursor = Cursor::default();
        self.list.selected_id = None;
        self.list.window_start = 0;
        self.list.rows.clear();
        self.list.loaded = false;
        self.list.window_request(list_rows(size))
    }

    /// The rows in view, fetched again where they are.
    pub fn refetch(&mut self, size: Rect) -> Request {
        self.list.window_request(list_rows(size))
    }

    /// Opens run `id`; `back` returns to `origin`. Returns the fetch of the run.
    pub fn open(&mut self, id: RunId, origin: PaneId) -> Request {
        let mut d = RunDetail::new(id);
        d.origin = origin;
        self.detail = Some(d);
        Request::Run { id }
    }

    /// Takes a fetched run if it is the one open.
    pub fn apply_run(&mut self, run: Run, size: Rect) {
        let view = detail_rows(size);
        if let Some(d) = &mut self.detail
            && d.id == run.id
        {
            d.run = Some(run);
            d.cursor.keep_visible(d.stage_count(), view);
        }
    }

    /// Keeps the selections in view after a resize; asks for rows the list now shows.
    pub fn resized(&mut self, size: Rect) -> Option<Request> {
        let view = list_rows(size);
        self.list.cursor.keep_visible(self.list.len(), view);
        if let Some(d) = &mut self.detail {
            d.cursor.keep_visible(d.stage_count(), detail_rows(size));
        }
        self.list
            .needs_window(view)
            .then(|| self.list.window_request(view))
    }

    /// The run the run commands act on: the open one, else the selected one.
    fn current(&self) -> Option<(RunId, String, RunStatus)> {
        match &self.detail {
            Some(d) => d.run.as_ref().map(|r| (r.id, r.pipeline.clone(), r.status)),
            None => self
                .list
                .selected()
                .map(|r| (r.id, r.pipeline.clone(), r.status)),
        }
    }

    fn motion(&mut self, m: Motion, cx: &Cx<'_>) -> Effect {
        if let Some(d) = &mut self.detail {
            d.cursor.apply(m, d.stage_count(), detail_rows(cx.size));
            return Effect::None;
        }
        let view = list_rows(cx.size);
        self.list.apply_motion(m, view);
        if self.list.needs_window(view) {
            Effect::fetch(self.list.window_request(view))
        } else {
            Effect::None
        }
    }

    fn open_selected(&self) -> Effect {
        match &self.detail {
            None => self
                .list
                .selected()
                .map_or(Effect::None, |r| Effect::OpenRun {
                    id: r.id,
                    from: PaneId::Runs,
                }),
            Some(d) => match (&d.run, d.selected_stage()) {
                (Some(run), Some(stage)) => Effect::OpenStage {
                    target: Target {
                        run: run.id,
                        pipeline: run.pipeline.clone(),
                        stage: stage.to_string(),
                    },
                    from: PaneId::Runs,
                },
                _ => Effect::None,
            },
        }
    }

    /// Marks the selected run; the second run marked is compared with the first.
    fn mark(&mut self) -> Effect {
        let Some(id) = self.list.selected().map(|r| r.id) else {
            return Effect::None;
        };
        match self.marked.take() {
            None => {
                self.marked = Some(id);
                Effect::None
            }
            Some(first) if first == id => Effect::None,
            Some(first) => Effect::Compare(first, id),
        }
    }

    fn back(&mut self, cx: &Cx<'_>) -> Effect {
        if let Some(d) = self.detail.take() {
            return if d.origin == PaneId::Runs {
                Effect::None
            } else {
                Effect::Focus(d.origin)
            };
        }
        if self.list.filter.is_empty() {
            return Effect::None;
        }
        self.list.filter.clear();
        Effect::fetch(self.reload(cx.size))
    }
}

impl Pane for RunsPane {
    fn title(&self) -> &'static str {
        if self.detail.is_some() { "Run" } else { "Runs" }
    }

    fn contexts(&self) -> &'static [Context] {
        if self.detail.is_some() {
            &[Context::Run, Context::List, Context::Global]
        } else {
            &[Context::Runs, Context::Run, Context::List, Context::Global]
        }
    }

    fn commands(&self) -> &'static [Cmd] {
        if self.detail.is_some() { DETAIL } else { LIST }
    }

    fn on_action(&mut self, a: Action, cx: &Cx<'_>) -> Effect {
        if let Some(m) = Motion::from_action(a) {
            return self.motion(m, cx);
        }
        let listing = self.detail.is_none();
        match a {
            Action::Open => self.open_selected(),
            Action::Filter if listing => Effect::EditFilter(self.list.filter.clone()),
            Action::Sort if listing => {
                self.list.sort = self.list.sort.next();
                Effect::fetch(self.reload(cx.size))
            }
            Action::NewRun => {
                let items = cx.overview.map(|o| o.pipelines.clone()).unwrap_or_default();
                Effect::Popup(Box::new(Popup::PickPipeline(Picker::new(items))))
            }
            Action::RetryRun | Action::CancelRun => match self.current() {
                Some((id, pipeline, status)) => {
                    Effect::Popup(Box::new(confirm_run(a, id, &pipeline, status)))
                }
                None => Effect::None,
            },
            Action::Mark if listing => self.mark(),
            Action::Back => self.back(cx),
            _ => Effect::None,
        }
    }

    fn nested(&self, _cx: &Cx<'_>) -> bool {
        self.detail.is_some() || !self.list.filter.is_empty()
    }

    fn unavailable(&self, a: Action) -> Option<String> {
        let (id, _, status) = self.current()?;
        match a {
            Action::RetryRun => status.retry_refusal(id),
            Action::CancelRun => status.cancel_refusal(id),
            _ => None,
        }
    }

    fn filter_placeholder(&self) -> &'static str {
        "words, status:failed, pipeline:NAME, #42"
    }

    fn set_filter(&mut self, text: String, cx: &Cx<'_>) -> Result<Effect, String> {
        let names = cx
            .overview
            .map(|o| o.pipelines.iter().map(|p| p.name.clone()).collect());
        parse_filter(&text, names)?;
        if self.list.filter == text {
            return Ok(Effect::None);
        }
        self.list.filter = text;
        Ok(Effect::fetch(self.reload(cx.size)))
    }

    fn click(&mut self, row: usize) {
        if self.detail.is_none() {
            let target = self.list.cursor.offset + row;
            if target < self.list.len() {
                self.list.cursor.selected = target;
                self.list.selected_id = self.list.selected().map(|r| r.id);
            }
        }
    }

    fn render(&self, f: &mut Frame, area: Rect, ctx: &Ctx<'_>) {
        match &self.detail {
            Some(d) => run_detail::render(f, area, d, ctx),
            None => render(f, area, &self.list, self.marked, ctx),
        }
    }
}

fn title(
    list: &RunsList,
    marked: Option<RunId>,
    t: &crate::tui::theme::Theme,
) -> Vec<Span<'static>> {
    let mut title = vec![
        Span::styled(" Runs ", t.style("ui.title")),
        Span::styled(
            format!("· {} · {} first ", thousands(list.total), list.sort.label()),
            t.style("ui.dim"),
        ),
    ];
    if !list.filter.is_empty() {
        title.push(Span::styled(
            format!("· filter: {} ", list.filter),
            t.style("ui.key"),
        ));
    }
    if let Some(m) = marked {
        title.push(Span::styled(
            format!("· ● run {m} marked: space on another compares "),
            t.style("ui.key"),
        ));
    }
    title
}

/// `marked`: a run marked for comparison, shown with a dot and named in the title.
pub fn render(f: &mut Frame, area: Rect, list: &RunsList, marked: Option<RunId>, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let title = title(list, marked, t);
    let block = Block::bordered()
        .title(Line::from(title))
        .border_style(t.style("ui.border.focused"));
    let inner = block.inner(area);
    f.render_widget(block, area);
    if list.loaded && list.total == 0 {
        let text = if list.filter.is_empty() {
            "No runs yet: start one with n, or wait for a scheduled pipeline."
        } else {
            "No runs match the filter (Esc clears it)."
        };
        f.render_widget(Paragraph::new(Span::styled(text, t.style("ui.dim"))), inner);
        return;
    }
    if !list.loaded && list.rows.is_empty() {
        f.render_widget(
            Paragraph::new(Span::styled("loading…", t.style("ui.dim"))),
            inner,
        );
        return;
    }
    let wide = inner.width >= 110;
    let view = usize::from(inner.height.saturating_sub(1));
    let end = (list.cursor.offset + view).min(list.len());
    let mut header = vec!["ID", "PIPELINE", "STATUS"];
    // As wide as the names in view, up to a third of the screen: wide terminals show long
    // names whole, narrow ones cut them with an ellipsis.
    let name_w = (list.cursor.offset..end)
        .filter_map(|i| list.row(i))
        .map(|r| r.pipeline.chars().count())
        .max()
        .unwrap_or(8);
    let name_max = usize::from(inner.width / 3).max(16);
    let mut widths = vec![
        Constraint::Length(7),
        Constraint::Length(u16::try_from(name_w.clamp(8, name_max)).unwrap_or(16)),
        Constraint::Length(13),
    ];
    if wide {
        header.push("TRIGGER");
        widths.push(Constraint::Length(9));
    }
    header.extend(["STARTED", "DURATION", "STAGES"]);
    widths.extend([
        Constraint::Length(11),
        Constraint::Length(9),
        Constraint::Length(9),
    ]);
    let cols = column_widths(inner.width, &widths);
    let rows: Vec<Row> = (list.cursor.offset..end)
        .map(|i| match list.row(i) {
            Some(r) => {
                let dot = if marked == Some(r.id) { "●" } else { "" };
                let mut cells = vec![
                    Line::raw(format!("{dot}{}", r.id)),
                    Line::raw(r.pipeline.clone()),
                    Line::from(status_span(t, run_status(r.status), r.status.as_str())),
                ];
                if wide {
                    cells.push(Line::styled(r.trigger.as_str(), t.style("ui.dim")));
                }
                cells.push(Line::raw(clock_time(
                    r.started_at.unwrap_or(r.created_at),
                    ctx.now,
                )));
                cells.push(Line::raw(elapsed(r.started_at, r.duration_ms, ctx.now)));
                cells.push(if r.stages_failed > 0 {
                    Line::from(vec![
                        Span::raw(format!("{}/{} ", r.stages_succeeded, r.stages_total)),
                        Span::styled(format!("✗{}", r.stages_failed), t.style("status.failed")),
                    ])
                } else {
                    Line::raw(format!("{}/{}", r.stages_succeeded, r.stages_total))
                });
                fitted_row(cells, &cols)
            }
            None => Row::new(vec![Line::styled("loading", t.style("ui.dim"))]),
        })
        .collect();
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(t.style("ui.dim")))
        .row_highlight_style(t.style("ui.selection"));
    let mut state =
        TableState::default().with_selected(Some(list.cursor.selected - list.cursor.offset));
    f.render_stateful_widget(table, inner, &mut state);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_into_queries() {
        let q = parse_filter("status:failed etl", None).unwrap();
        assert_eq!(
            (q.status, q.text.as_deref()),
            (Some(RunStatus::Failed), Some("etl"))
        );
        assert_eq!(
            parse_filter("#42", None).unwrap().text.as_deref(),
            Some("42")
        );
        assert_eq!(
            parse_filter("pipeline:daily-report", None)
                .unwrap()
                .pipeline
                .as_deref(),
            Some("daily-report")
        );
        let e = parse_filter("status:done", None).unwrap_err();
        assert!(e.starts_with("status: pending, running,"), "{e}");
        let e = parse_filter("pipeline:nope", Some(vec!["etl".into()])).unwrap_err();
        assert_eq!(e, "pipeline: etl (not `nope`)");
        assert!(parse_filter("etl #4", None).is_err());
    }
}
