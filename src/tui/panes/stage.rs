//! Stage I/O: the input, output, stderr and error of each attempt of one stage, and the diff of
//! its output against the same stage of a baseline run. Lines are prepared once off the UI
//! thread; drawing slices out the visible ones, so huge outputs scroll without lag.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::{BACK, Cmd, Cx, Effect, HELP, Motion, Pane, PaneId, cmd, inner, more, scroll, spare};
use crate::model::RunId;
use crate::model::diff::{ChangeKind, LineTag};
use crate::tui::action::Action;
use crate::tui::keymap::Context;
use crate::tui::prepare::{DiffView, PreparedAttempt, PreparedIo, Section};
use crate::tui::request::Request;
use crate::tui::view::Ctx;
use crate::tui::widgets::{
    attempt_status, clock_time, elapsed, fit, fit_spans, stage_status, status_span, wrap_rows,
};

/// Which stage the pane shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub run: RunId,
    pub pipeline: String,
    pub stage: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DiffState {
    pub view: Option<DiffView>,
    /// Why there is no diff (no baseline yet), or `None` while it loads.
    pub message: Option<String>,
    pub split: bool,
    pub scroll: usize,
    /// A baseline chosen with `b`; `None` means the previous successful run.
    pub baseline: Option<RunId>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StagePane {
    pub target: Option<Target>,
    pub io: Option<PreparedIo>,
    pub attempt: usize,
    pub section: Option<Section>,
    pub scroll: usize,
    pub diff: Option<DiffState>,
    /// Long lines wrap instead of being cut (with an ellipsis) at the pane's edge.
    pub wrap: bool,
    /// Columns scrolled right when lines are cut.
    pub hscroll: usize,
    /// Diff against this run as soon as the stage's output is loaded (from Compare).
    pub diff_when_loaded: Option<RunId>,
    /// Diff against the previous successful run once the output is loaded (a stage test).
    pub diff_previous: bool,
    /// Where `back` returns: the pane the stage was opened from (Runs only while a run is
    /// open there, as the run it came from may have been closed since).
    pub from: PaneId,
}

/// Whether an attempt failed with nothing more to say than its exit status: its stderr then
/// says what went wrong.
fn bare_exit(a: &PreparedAttempt) -> bool {
    a.error.as_ref().is_some_and(|e| e.code == "exit_status")
        && !a.lines(Section::Stderr).is_empty()
}

impl StagePane {
    /// The pane `back` returns to, if any.
    fn back_to(&self, cx: &Cx<'_>) -> Option<PaneId> {
        self.target.as_ref()?;
        match self.from {
            PaneId::Runs => cx.run_open.then_some(PaneId::Runs),
            from => Some(from),
        }
    }

    pub fn open(target: Target) -> StagePane {
        StagePane {
            target: Some(target),
            ..StagePane::default()
        }
    }

    pub fn section(&self) -> Section {
        self.section.unwrap_or(Section::Output)
    }

    /// Takes freshly loaded I/O, keeping the reader's place when it is the same stage.
    pub fn apply_io(&mut self, io: PreparedIo) {
        let same = self
            .io
            .as_ref()
            .is_some_and(|old| old.run_id == io.run_id && old.stage == io.stage);
        let was_last = self
            .io
            .as_ref()
            .is_none_or(|old| self.attempt + 1 >= old.attempts.len());
        if !same || was_last {
            self.attempt = io.attempts.len().saturating_sub(1);
        }
        if self.section.is_none()
            && let Some(a) = io.attempts.get(self.attempt)
        {
            // Start where the news is: for a failure, its stderr when the error is a bare exit
            // status, else the error; otherwise the output.
            self.section = Some(if bare_exit(a) {
                Section::Stderr
            } else if a.error.is_some() {
                Section::Error
            } else if !a.lines(Section::Output).is_empty() {
                Section::Output
            } else {
                Section::Input
            });
        }
        if !same {
            self.scroll = 0;
            self.hscroll = 0;
        }
        self.io = Some(io);
    }

    fn shown_lines(&self) -> &[String] {
        self.io
            .as_ref()
            .and_then(|io| io.attempts.get(self.attempt))
            .map_or(&[], |a| a.lines(self.section()))
    }

    /// Scrolls cut lines sideways by half the width, up to where the longest line ends.
    pub fn scroll_sideways(&mut self, right: bool, width: usize) {
        let step = (width / 2).max(1);
        if right {
            let longest = self
                .shown_lines()
                .iter()
                .map(|l| l.chars().count())
                .max()
                .unwrap_or(0);
            let max = longest.saturating_sub(width.saturating_sub(1));
            self.hscroll = self.hscroll.saturating_add(step).min(max);
        } else {
            self.hscroll = self.hscroll.saturating_sub(step);
        }
    }

    fn lines_len(&self) -> usize {
        if let Some(d) = &self.diff {
            return d.view.as_ref().map_or(0, |v| diff_rows(v, d.split));
        }
        self.shown_lines().len()
    }

    pub fn apply_motion(&mut self, m: Motion, view: usize) {
        let len = self.lines_len();
        if let Some(d) = &mut self.diff {
            d.scroll = scroll(d.scroll, m, len, view);
        } else if self.wrap {
            // Wrapped lines take more rows than one: the last line may have to be the top one.
            let len = len.saturating_add(view.saturating_sub(1));
            self.scroll = scroll(self.scroll, m, len, view);
        } else {
            self.scroll = scroll(self.scroll, m, len, view);
        }
    }

    pub fn step_attempt(&mut self, forward: bool) {
        let n = self.io.as_ref().map_or(0, |io| io.attempts.len());
        if n == 0 {
            return;
        }
        self.attempt = if forward {
            (self.attempt + 1).min(n - 1)
        } else {
            self.attempt.saturating_sub(1)
        };
        self.scroll = 0;
        self.hscroll = 0;
    }

    pub fn step_section(&mut self, forward: bool) {
        self.section = Some(self.section().step(forward));
        self.scroll = 0;
        self.hscroll = 0;
    }
}

const COMMANDS: &[Cmd] = &[
    cmd(&[Action::NextSection], "section"),
    cmd(&[Action::PrevAttempt, Action::NextAttempt], "attempt"),
    cmd(&[Action::Diff], "diff"),
    cmd(&[Action::PickBaseline], "baseline"),
    cmd(&[Action::DiffLayout], "layout"),
    cmd(&[Action::Down, Action::Up], "scroll"),
    cmd(&[Action::Wrap], "wrap"),
    spare(&[Action::ScrollLeft, Action::ScrollRight], "sideways"),
    BACK,
    HELP,
    more(&[Action::PrevSection]),
];

impl StagePane {
    /// Diffs the shown attempt's output against `baseline` (the previous successful run of
    /// the pipeline when `None`). Returns the request for it, if a stage is shown.
    pub fn request_diff(&mut self, baseline: Option<RunId>) -> Option<Request> {
        let (Some(t), Some(io)) = (&self.target, &self.io) else {
            return None;
        };
        let a = io.attempts.get(self.attempt)?;
        let req = Request::Diff {
            pipeline: t.pipeline.clone(),
            stage: t.stage.clone(),
            candidate: t.run,
            attempt: a.n,
            output: a.output.clone(),
            baseline,
        };
        let split = self.diff.as_ref().is_some_and(|d| d.split);
        self.diff = Some(DiffState {
            view: None,
            message: None,
            split,
            scroll: 0,
            baseline,
        });
        Some(req)
    }

    /// The fetch of the shown stage's I/O, when one is shown.
    pub fn refetch(&self) -> Option<Request> {
        self.target.as_ref().map(|t| Request::StageIo {
            id: t.run,
            stage: t.stage.clone(),
        })
    }
}

impl Pane for StagePane {
    fn title(&self) -> &'static str {
        "Stage"
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Stage, Context::List, Context::Global]
    }

    fn commands(&self) -> &'static [Cmd] {
        COMMANDS
    }

    fn on_action(&mut self, a: Action, cx: &Cx<'_>) -> Effect {
        if let Some(m) = Motion::from_action(a) {
            self.apply_motion(m, super::content_rows_for(cx.size));
            return Effect::None;
        }
        match a {
            Action::NextAttempt | Action::PrevAttempt => {
                self.step_attempt(a == Action::NextAttempt);
            }
            Action::NextSection | Action::PrevSection if self.diff.is_none() => {
                self.step_section(a == Action::NextSection);
            }
            Action::Diff | Action::Back if self.diff.is_some() => self.diff = None,
            Action::Diff => return self.request_diff(None).map_or(Effect::None, Effect::fetch),
            Action::PickBaseline => {
                if let Some(t) = &self.target {
                    return Effect::fetch(Request::BaselineCandidates {
                        pipeline: t.pipeline.clone(),
                        stage: t.stage.clone(),
                        before: t.run,
                    });
                }
            }
            Action::Wrap => {
                self.wrap = !self.wrap;
                self.hscroll = 0;
            }
            Action::ScrollLeft | Action::ScrollRight if !self.wrap && self.diff.is_none() => {
                let width = usize::from(layout(super::areas(cx.size).body).1.width);
                self.scroll_sideways(a == Action::ScrollRight, width);
            }
            Action::DiffLayout => {
                if let Some(d) = &mut self.diff {
                    d.split = !d.split;
                    d.scroll = 0;
                }
            }
            Action::Back => {
                if let Some(to) = self.back_to(cx) {
                    return Effect::Focus(to);
                }
            }
            _ => {}
        }
        Effect::None
    }

    fn nested(&self, cx: &Cx<'_>) -> bool {
        self.diff.is_some() || self.back_to(cx).is_some()
    }

    fn hint(&self, c: &Cmd) -> Option<&'static str> {
        let diff = self.diff.is_some();
        match c.actions.first() {
            Some(Action::DiffLayout) => diff.then_some(c.hint),
            Some(Action::Diff) if diff => Some("close diff"),
            Some(Action::NextSection | Action::Wrap | Action::ScrollLeft) if diff => None,
            Some(Action::Wrap) if self.wrap => Some("unwrap"),
            Some(Action::ScrollLeft) if self.wrap => None,
            Some(Action::PrevAttempt)
                if self.io.as_ref().is_none_or(|io| io.attempts.len() < 2) =>
            {
                None
            }
            _ => Some(c.hint),
        }
    }

    fn render(&self, f: &mut Frame, area: Rect, ctx: &Ctx<'_>) {
        render(f, area, self, ctx);
    }
}

/// The attempt line and the content below it.
pub fn layout(body: Rect) -> (Rect, Rect) {
    let [head, content] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner(body));
    (head, content)
}

pub fn content_rows(body: Rect) -> usize {
    usize::from(layout(body).1.height)
}

fn diff_rows(v: &DiffView, split: bool) -> usize {
    change_lines(v).len()
        + 1
        + if split {
            v.split.len()
        } else {
            v.unified.len()
        }
}

fn change_lines(v: &DiffView) -> Vec<(ChangeKind, String)> {
    v.changes
        .iter()
        .map(|c| {
            let show = |x: &Option<serde_json::Value>| {
                x.as_ref()
                    .map_or_else(String::new, |v| fit(&v.to_string(), 60))
            };
            let text = match c.kind {
                ChangeKind::Changed => {
                    format!("~ {}: {} → {}", c.path, show(&c.before), show(&c.after))
                }
                ChangeKind::Added => format!("+ {}: {}", c.path, show(&c.after)),
                ChangeKind::Removed => format!("- {}: {}", c.path, show(&c.before)),
            };
            (c.kind, text)
        })
        .collect()
}

pub fn render(f: &mut Frame, body: Rect, p: &StagePane, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let Some(target) = &p.target else {
        f.render_widget(
            Block::bordered()
                .title(Span::styled(" Stage ", t.style("ui.title")))
                .border_style(t.style("ui.border.focused")),
            body,
        );
        let hint = "Open a stage from a run: Enter on a run, then Enter on a stage.";
        f.render_widget(
            Paragraph::new(Span::styled(hint, t.style("ui.dim"))),
            inner(body),
        );
        return;
    };
    let mut title = vec![
        Span::styled(format!(" {} ", target.stage), t.style("ui.title")),
        Span::styled(
            format!("· run {} · {} ", target.run, target.pipeline),
            t.style("ui.dim"),
        ),
    ];
    if let Some(io) = &p.io {
        title.push(status_span(t, stage_status(io.status), io.status.as_str()));
        title.push(Span::raw(" "));
    }
    // How long lines are shown, on the bottom border where it takes no row.
    let lines_mode = if p.diff.is_some() {
        String::new()
    } else if p.wrap {
        " wrapped ".to_string()
    } else if p.hscroll > 0 {
        format!(" from column {} ", p.hscroll + 1)
    } else {
        String::new()
    };
    f.render_widget(
        Block::bordered()
            .title(fit_spans(
                Line::from(title),
                usize::from(body.width.saturating_sub(4)),
            ))
            .title_bottom(Line::styled(lines_mode, t.style("ui.key")).right_aligned())
            .border_style(t.style("ui.border.focused")),
        body,
    );
    let (head, content) = layout(body);
    let Some(io) = &p.io else {
        f.render_widget(
            Paragraph::new(Span::styled("loading…", t.style("ui.dim"))),
            head,
        );
        return;
    };
    let Some(a) = io.attempts.get(p.attempt) else {
        f.render_widget(
            Paragraph::new(Span::styled(
                "This stage has not run yet.",
                t.style("ui.dim"),
            )),
            head,
        );
        return;
    };
    if let Some(d) = &p.diff {
        render_diff(f, head, content, d, ctx);
        return;
    }
    render_attempt_line(f, head, p, (a, io.attempts.len()), ctx);
    render_section(f, content, p, a, ctx);
}

/// `attempt 2/3 ✗ failed · 1.2s · 17:59:01 │ input output stderr error`
fn render_attempt_line(
    f: &mut Frame,
    area: Rect,
    p: &StagePane,
    (a, count): (&PreparedAttempt, usize),
    ctx: &Ctx<'_>,
) {
    let t = ctx.theme;
    let mut spans = vec![
        Span::styled(format!("attempt {}/{} ", a.n, count), t.style("ui.header")),
        status_span(t, attempt_status(a.status), a.status.as_str()),
        Span::styled(
            format!(
                " · {} · {} │ ",
                elapsed(Some(a.started_at), a.duration_ms, ctx.now),
                clock_time(a.started_at, ctx.now)
            ),
            t.style("ui.dim"),
        ),
    ];
    for s in Section::ALL {
        // Sections with nothing in them are dim and struck out, so the eye skips them.
        let label = s.label().to_string();
        let style = if s == p.section() {
            t.style("ui.tab.active")
        } else if a.lines(s).is_empty() {
            t.style("ui.dim")
                .add_modifier(ratatui::style::Modifier::CROSSED_OUT)
        } else {
            t.style("ui.text")
        };
        spans.push(Span::styled(label, style));
        spans.push(Span::raw("  "));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The lines of the chosen section, from the scroll position.
fn render_section(f: &mut Frame, content: Rect, p: &StagePane, a: &PreparedAttempt, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let lines = a.lines(p.section());
    let width = usize::from(content.width);
    let mut shown: Vec<Line> = Vec::new();
    if p.section() == Section::Output && a.output_truncated {
        let bytes = a
            .output_bytes
            .map_or_else(String::new, |b| format!(" of {b} bytes"));
        shown.push(Line::styled(
            format!("(stored truncated: only the head{bytes} was kept)"),
            t.style("status.retrying"),
        ));
    }
    if lines.is_empty() {
        shown.push(Line::styled(
            format!("({} is empty)", p.section().label().to_lowercase()),
            t.style("ui.dim"),
        ));
    }
    let style = if p.section() == Section::Error {
        t.style("status.failed")
    } else {
        t.style("ui.text")
    };
    let room = usize::from(content.height).saturating_sub(shown.len());
    let visible = lines.iter().skip(p.scroll);
    if p.wrap {
        // Each line in pieces of the pane's width, until the pane is full.
        let pieces = visible.flat_map(|l| wrap_rows(l, width, usize::MAX));
        shown.extend(pieces.take(room).map(|l| Line::styled(l, style)));
    } else {
        shown.extend(
            visible
                .take(room)
                .map(|l| Line::styled(cut(l, p.hscroll, width), style)),
        );
    }
    f.render_widget(Paragraph::new(shown), content);
}

/// The part of `line` from column `from` that fits in `width`, with an ellipsis on each side
/// where something is cut off.
fn cut(line: &str, from: usize, width: usize) -> String {
    if from == 0 {
        return fit(line, width);
    }
    let rest: String = line.chars().skip(from.saturating_add(1)).collect();
    if line.chars().count() <= from {
        return String::new();
    }
    format!("…{}", fit(&rest, width.saturating_sub(1)))
}

fn tag_style(ctx: &Ctx<'_>, tag: LineTag) -> Style {
    match tag {
        LineTag::Same => ctx.theme.style("ui.text"),
        LineTag::Added => ctx.theme.style("diff.added"),
        LineTag::Removed => ctx.theme.style("diff.removed"),
    }
}

fn render_diff(f: &mut Frame, head: Rect, content: Rect, d: &DiffState, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let Some(v) = &d.view else {
        let text = d.message.clone().unwrap_or_else(|| "comparing…".into());
        f.render_widget(Paragraph::new(Span::styled(text, t.style("ui.dim"))), head);
        return;
    };
    let summary = match v.changes.len() {
        0 => "no differences".to_string(),
        1 => "1 changed path".to_string(),
        n => format!("{n} changed paths"),
    };
    let layout = if d.split { "side by side" } else { "unified" };
    let head_line = Line::from(vec![
        Span::styled(
            format!("attempt {} vs run {} ", v.candidate_attempt, v.baseline),
            t.style("ui.header"),
        ),
        Span::styled(
            format!("({}) · {summary} · {layout}", v.baseline_why),
            t.style("ui.dim"),
        ),
    ]);
    f.render_widget(Paragraph::new(fit_line(head_line, head.width)), head);

    let width = usize::from(content.width);
    let changes = change_lines(v);
    let mut rows: Vec<Line> = Vec::new();
    let skip = d.scroll;
    let take = usize::from(content.height);
    let total = changes.len()
        + 1
        + if d.split {
            v.split.len()
        } else {
            v.unified.len()
        };
    for i in skip..(skip + take).min(total) {
        if i < changes.len() {
            let (kind, text) = &changes[i];
            let style = match kind {
                ChangeKind::Added => t.style("diff.added"),
                ChangeKind::Removed => t.style("diff.removed"),
                ChangeKind::Changed => t.style("diff.header"),
            };
            rows.push(Line::styled(fit(text, width), style));
        } else if i == changes.len() {
            if d.split {
                // Which side is which: the baseline on the left, this run on the right.
                let half = width.saturating_sub(1) / 2;
                let left = fit(&format!("── run {} (baseline) ", v.baseline), half);
                let right = fit(
                    &format!("── run {}, attempt {} ", v.candidate, v.candidate_attempt),
                    half,
                );
                rows.push(Line::from(vec![
                    Span::styled(format!("{left:─<half$}"), t.style("diff.removed")),
                    Span::styled("┬", t.style("ui.border")),
                    Span::styled(format!("{right:─<half$}"), t.style("diff.added")),
                ]));
            } else {
                rows.push(Line::styled("─".repeat(width), t.style("ui.border")));
            }
        } else if d.split {
            let r = &v.split[i - changes.len() - 1];
            let half = width.saturating_sub(1) / 2;
            let side = |s: &Option<(usize, String, LineTag)>| -> Span<'static> {
                match s {
                    Some((n, text, tag)) => Span::styled(
                        format!("{:<half$}", fit(&format!("{n:>4} {text}"), half)),
                        tag_style(ctx, *tag),
                    ),
                    None => Span::raw(" ".repeat(half)),
                }
            };
            rows.push(Line::from(vec![
                side(&r.left),
                Span::styled("│", t.style("ui.border")),
                side(&r.right),
            ]));
        } else {
            let l = &v.unified[i - changes.len() - 1];
            let mark = match l.tag {
                LineTag::Same => ' ',
                LineTag::Added => '+',
                LineTag::Removed => '-',
            };
            rows.push(Line::styled(
                fit(&format!("{mark} {}", l.text), width),
                tag_style(ctx, l.tag),
            ));
        }
    }
    f.render_widget(Paragraph::new(rows), content);
}

fn fit_line(line: Line<'_>, width: u16) -> Line<'_> {
    let text: String = line.spans.iter().map(|s| s.content.as_ref()).collect();
    if text.chars().count() <= usize::from(width) {
        line
    } else {
        Line::raw(fit(&text, usize::from(width)))
    }
}
