//! The canary pane: every rollout, and for the selected one its state, step and weight, the
//! analysis checks with their numbers, the hard triggers, and charts of legacy against canary
//! (latency, error rate, requests per second) over 5, 15 or 60 minutes. Legacy and canary
//! differ by marker as well as colour, so the charts read in the `mono` theme.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Chart, Dataset, GraphType, LineGauge, Paragraph, Row, Table, TableState,
};

use super::{Cmd, Cursor, Cx, Effect, HELP, Motion, Pane, QUIT, cmd, spare};
use crate::model::{
    CanaryAction, CanaryAt, CanaryState, CanaryStatus, Command, SeriesPoint, Verdict, VersionPoint,
};
use crate::tui::action::Action;
use crate::tui::keymap::Context;
use crate::tui::popup::{self, Popup};
use crate::tui::request::Request;
use crate::tui::view::Ctx;
use crate::tui::widgets::{column_widths, elapsed, fitted_row, glyph};

/// Chart spans: (label, seconds per point). Every span has [`POINTS`] points.
pub const SPANS: [(&str, i64); 3] = [("5m", 5), ("15m", 15), ("60m", 60)];
pub const POINTS: usize = 60;

/// Which latency quantile the latency chart plots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Quantile {
    P50,
    #[default]
    P95,
    P99,
}

impl Quantile {
    #[must_use]
    pub fn next(self) -> Quantile {
        match self {
            Quantile::P50 => Quantile::P95,
            Quantile::P95 => Quantile::P99,
            Quantile::P99 => Quantile::P50,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Quantile::P50 => "p50",
            Quantile::P95 => "p95",
            Quantile::P99 => "p99",
        }
    }

    fn of(self, p: &VersionPoint) -> Option<f64> {
        match self {
            Quantile::P50 => p.p50_ms,
            Quantile::P95 => p.p95_ms,
            Quantile::P99 => p.p99_ms,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CanaryPane {
    pub canaries: Vec<CanaryStatus>,
    pub cursor: Cursor,
    pub loaded: bool,
    /// Index into [`SPANS`].
    pub span: usize,
    pub quantile: Quantile,
    /// The series of the selected canary, with the canary and step it is for.
    pub series: Option<(String, i64, Vec<SeriesPoint>)>,
}

impl CanaryPane {
    pub fn selected(&self) -> Option<&CanaryStatus> {
        self.canaries.get(self.cursor.selected)
    }

    pub fn step_s(&self) -> i64 {
        SPANS[self.span % SPANS.len()].1
    }

    pub fn apply(&mut self, canaries: Vec<CanaryStatus>) {
        let keep = self.selected().map(|c| c.name.clone());
        self.canaries = canaries;
        self.loaded = true;
        if let Some(i) = keep.and_then(|n| self.canaries.iter().position(|c| c.name == n)) {
            self.cursor.selected = i;
        }
        self.cursor.keep_visible(self.canaries.len(), LIST_ROWS);
    }
}

const COMMANDS: &[Cmd] = &[
    cmd(&[Action::Promote], "promote"),
    cmd(&[Action::PauseResume], "pause"),
    cmd(&[Action::SetWeight], "weight"),
    cmd(&[Action::Rollback], "rollback"),
    cmd(&[Action::Restart], "restart"),
    cmd(&[Action::ChartSpan], "span"),
    spare(&[Action::Open], "details"),
    spare(&[Action::PromoteFull], "promote all"),
    spare(&[Action::ChartQuantile], "quantile"),
    HELP,
    QUIT,
];

/// The canary action a key asks for on `c` (pause or resume by its state).
fn action_for(a: Action, c: &CanaryStatus) -> Option<CanaryAction> {
    Some(match a {
        Action::Promote => CanaryAction::Promote,
        Action::PromoteFull => CanaryAction::PromoteFull,
        Action::PauseResume if c.state == CanaryState::Paused => CanaryAction::Resume,
        Action::PauseResume => CanaryAction::Pause,
        Action::SetWeight => CanaryAction::SetWeight(c.weight.round() as u32),
        Action::Rollback => CanaryAction::Rollback,
        Action::Restart => CanaryAction::Restart,
        _ => return None,
    })
}

/// The confirmation of `action` on `c`: what will happen, then the reason.
fn confirm(action: CanaryAction, c: &CanaryStatus) -> Popup {
    let (name, w) = (c.name.clone(), c.weight);
    let next = c.steps.get(c.step + 1).map_or(100.0, |s| s.weight);
    let command = Command::Canary {
        canary: name.clone(),
        action,
        expect: Some(CanaryAt {
            state: c.state,
            step: c.step,
            weight: c.weight,
        }),
    };
    match action {
        CanaryAction::Promote => popup::confirm(
            format!("Promote to step {} ({next}%): {name}?", c.step + 2),
            vec![
                format!("Weight {w}% -> {next}% now, without waiting for this step's pause."),
                "Analysis starts again on the new step; a failing check still rolls back.".into(),
            ],
            command,
        ),
        CanaryAction::PromoteFull => popup::confirm(
            format!("Promote fully (100%): {name}?"),
            vec![
                format!(
                    "Weight {w}% -> 100%: every request goes to the canary and the rollout ends."
                ),
                "Automatic rollback stops watching it.".into(),
            ],
            command,
        ),
        CanaryAction::Resume => popup::confirm(
            format!("Resume at {w}%: {name}?"),
            vec![format!(
                "It stays at {w}% for the step's whole pause, then advances if every check passes."
            )],
            command,
        ),
        CanaryAction::Pause => popup::confirm(
            format!("Pause at {w}%: {name}?"),
            vec![
                format!("It stays at {w}% and stops advancing."),
                "Automatic rollback still protects it while paused.".into(),
            ],
            command,
        ),
        CanaryAction::SetWeight(now) => popup::confirm_weight(
            format!("Set the weight: {name}?"),
            vec![format!(
                "Now {w}%. The rollout pauses at the new weight until resumed."
            )],
            command,
            now,
        ),
        CanaryAction::Restart => {
            let first = c.steps.first().map_or(0.0, |s| s.weight);
            popup::confirm(
                format!("Restart from step 1 ({first}%): {name}?"),
                vec![
                    format!("Weight {w}% -> {first}%; analysis and triggers start fresh."),
                    format!(
                        "It advances through its {} steps again while every check passes.",
                        c.steps.len()
                    ),
                ],
                command,
            )
        }
        _ => popup::confirm(
            format!("Roll back to 0%: {name}?"),
            vec![
                format!("Weight {w}% -> 0%: every request goes to legacy at once."),
                "The rollout ends rolled back; it can be restarted later.".into(),
            ],
            command,
        ),
    }
}

/// Everything the pane shows of `c` in a line or a cut cell, whole: each check's and trigger's
/// sentence, and the last action with its reason.
fn details(c: &CanaryStatus) -> Popup {
    let mut lines = vec![
        format!(
            "{} at step {}/{}, weight {}%, source {}",
            c.state.as_str(),
            c.step + 1,
            c.steps.len(),
            c.weight,
            c.source
        ),
        String::new(),
        "checks:".to_string(),
    ];
    if c.checks.is_empty() {
        lines.push("  none yet: the first analysis runs one interval into the step".into());
    }
    for k in &c.checks {
        let (sym, _) = verdict_style(k.verdict);
        lines.push(format!(
            "  {sym} {} {}: {}",
            k.name,
            k.verdict.as_str(),
            k.summary
        ));
    }
    lines.push(String::new());
    lines.push("rollback triggers:".to_string());
    for tr in &c.triggers {
        let mark = if tr.fired { "FIRED" } else { "ok" };
        lines.push(format!("  {mark} {}: {}", tr.name, tr.summary));
    }
    if let Some(a) = &c.last_action {
        lines.push(String::new());
        lines.push(format!(
            "last action: {} by {} at {} UTC, weight {}% -> {}%",
            a.action,
            a.actor,
            a.at.datetime().format("%H:%M:%S"),
            a.weight_before,
            a.weight_after
        ));
        lines.push(format!("reason: {}", a.reason));
    }
    if let Some(o) = &c.outcome {
        lines.push(format!("outcome: {o}"));
    }
    Popup::Record(crate::tui::popup::Record {
        title: format!("Canary {}", c.name),
        lines,
        run: None,
        scroll: 0,
    })
}

impl CanaryPane {
    /// The chart points of the selected canary, over the chosen span.
    pub fn series_request(&self) -> Option<Request> {
        self.selected().map(|c| Request::CanarySeries {
            name: c.name.clone(),
            step_s: self.step_s(),
            points: POINTS,
        })
    }

    /// Selects the canary named `name`; a sentence with the choices when there is none.
    pub fn select(&mut self, name: &str) -> Result<(), String> {
        match self.canaries.iter().position(|c| c.name == name) {
            Some(i) => {
                self.cursor.selected = i;
                self.cursor.keep_visible(self.canaries.len(), LIST_ROWS);
                Ok(())
            }
            None => {
                let names: Vec<&str> = self.canaries.iter().map(|c| c.name.as_str()).collect();
                if names.is_empty() {
                    return Err(format!(
                        "there is no canary `{name}`: this workspace defines none (add a [canary.NAME] table to opsdeck.toml)"
                    ));
                }
                Err(crate::diag::unknown_name(
                    "canary", "canaries", name, &names,
                ))
            }
        }
    }

    fn series_effect(&self) -> Effect {
        self.series_request().map_or(Effect::None, Effect::fetch)
    }
}

impl Pane for CanaryPane {
    fn title(&self) -> &'static str {
        "Canary"
    }

    fn contexts(&self) -> &'static [Context] {
        &[Context::Canary, Context::List, Context::Global]
    }

    fn commands(&self) -> &'static [Cmd] {
        COMMANDS
    }

    fn on_action(&mut self, a: Action, _cx: &Cx<'_>) -> Effect {
        if let Some(m) = Motion::from_action(a) {
            let before = self.cursor.selected;
            self.cursor.apply(m, self.canaries.len(), LIST_ROWS);
            return if self.cursor.selected == before {
                Effect::None
            } else {
                self.series_effect()
            };
        }
        match a {
            Action::ChartSpan => {
                self.span = (self.span + 1) % SPANS.len();
                self.series_effect()
            }
            Action::ChartQuantile => {
                self.quantile = self.quantile.next();
                Effect::None
            }
            Action::Open => self
                .selected()
                .map_or(Effect::None, |c| Effect::Popup(Box::new(details(c)))),
            _ => match self.selected() {
                Some(c) => action_for(a, c)
                    .map_or(Effect::None, |act| Effect::Popup(Box::new(confirm(act, c)))),
                None => Effect::None,
            },
        }
    }

    fn hint(&self, cmd: &Cmd) -> Option<&'static str> {
        let Some(c) = self.selected() else {
            return Some(cmd.hint);
        };
        let ended = c.state.is_final();
        match cmd.actions.first() {
            Some(Action::Restart) => ended.then_some(cmd.hint),
            Some(Action::PauseResume) if c.state == CanaryState::Paused => Some("resume"),
            Some(
                Action::Promote
                | Action::PromoteFull
                | Action::PauseResume
                | Action::SetWeight
                | Action::Rollback,
            ) if ended => None,
            _ => Some(cmd.hint),
        }
    }

    fn unavailable(&self, a: Action) -> Option<String> {
        let c = self.selected()?;
        action_for(a, c)?.refusal(&c.name, c.state)
    }

    fn render(&self, f: &mut Frame, area: Rect, ctx: &Ctx<'_>) {
        render(f, area, self, ctx);
    }
}

/// Canaries the list shows at once.
pub const LIST_ROWS: usize = 3;

pub fn state_style(s: CanaryState) -> (&'static str, &'static str) {
    match s {
        CanaryState::Progressing => (glyph::RUNNING, "status.running"),
        CanaryState::Paused => (glyph::PAUSED, "status.retrying"),
        CanaryState::Promoted => (glyph::OK, "status.ok"),
        CanaryState::RolledBack => (glyph::ROLLED_BACK, "status.failed"),
        CanaryState::Aborted => (glyph::CANCELLED, "status.cancelled"),
    }
}

pub fn verdict_style(v: Verdict) -> (&'static str, &'static str) {
    match v {
        Verdict::Pass => (glyph::OK, "status.ok"),
        Verdict::Fail => (glyph::FAILED, "status.failed"),
        Verdict::Inconclusive => (glyph::INCONCLUSIVE, "status.pending"),
    }
}

pub fn render(f: &mut Frame, area: Rect, p: &CanaryPane, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let block = Block::bordered()
        .title(Span::styled(" Canaries ", t.style("ui.title")))
        .border_style(t.style("ui.border.focused"));
    let inner = block.inner(area);
    f.render_widget(block, area);
    if p.canaries.is_empty() {
        let text = if p.loaded {
            "This workspace has no canaries. Add a [canary.NAME] table to opsdeck.toml (see the README's Canary rollouts)."
        } else {
            "Loading canaries..."
        };
        f.render_widget(
            Paragraph::new(Span::styled(text, t.style("ui.dim")))
                .wrap(ratatui::widgets::Wrap { trim: true }),
            inner,
        );
        return;
    }
    let list_h = p.canaries.len().min(LIST_ROWS) as u16;
    let trigger_h = p.selected().map_or(1, |c| trigger_rows(c, inner.width));
    let [list, rule, state, checks, triggers, charts] = Layout::vertical([
        Constraint::Length(list_h),
        Constraint::Length(1),
        Constraint::Length(2),
        Constraint::Length(3),
        Constraint::Length(trigger_h),
        Constraint::Min(0),
    ])
    .areas(inner);
    render_list(f, list, p, ctx);
    f.render_widget(
        Line::styled("─".repeat(usize::from(rule.width)), t.style("ui.border")),
        rule,
    );
    let Some(c) = p.selected() else { return };
    render_state(f, state, c, ctx);
    render_checks(f, checks, c, ctx);
    render_triggers(f, triggers, c, ctx);
    render_charts(f, charts, p, c, ctx);
}

fn render_list(f: &mut Frame, area: Rect, p: &CanaryPane, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let name_max = usize::from(area.width / 3).max(16);
    let name_w = p
        .canaries
        .iter()
        .map(|c| c.name.chars().count() + 2)
        .max()
        .unwrap_or(8)
        .clamp(8, name_max);
    let widths = [
        Constraint::Length(u16::try_from(name_w).unwrap_or(16)),
        Constraint::Length(12),
        Constraint::Length(7),
        Constraint::Length(4),
        Constraint::Fill(1),
    ];
    let cols = column_widths(area.width, &widths);
    let rows: Vec<Row> = p
        .canaries
        .iter()
        .map(|c| {
            let (sym, slot) = state_style(c.state);
            let checks: Vec<Span> = c
                .checks
                .iter()
                .flat_map(|k| {
                    let (s, slot) = verdict_style(k.verdict);
                    [
                        Span::styled(format!("{s} {}", k.name), t.style(slot)),
                        Span::raw("  "),
                    ]
                })
                .collect();
            fitted_row(
                vec![
                    Line::from(Span::styled(format!("{sym} {}", c.name), t.style(slot))),
                    Line::styled(c.state.as_str().to_string(), t.style(slot)),
                    Line::raw(format!("{:>5}%", c.weight)),
                    Line::raw(format!("{}/{}", c.step + 1, c.steps.len())),
                    Line::from(checks),
                ],
                &cols,
            )
        })
        .collect();
    let table = Table::new(rows, widths).row_highlight_style(t.style("ui.selection"));
    let mut state = TableState::default()
        .with_offset(p.cursor.offset)
        .with_selected(Some(p.cursor.selected));
    f.render_stateful_widget(table, area, &mut state);
}

fn render_state(f: &mut Frame, area: Rect, c: &CanaryStatus, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let [line, gauge] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    let (sym, slot) = state_style(c.state);
    let in_step = if c.state.is_final() {
        "ended".to_string()
    } else {
        // The step's time as the controller counts it (host seconds: it stands still while
        // the weight waits to be applied), not the wall clock's since the step began.
        let held = i64::try_from(c.step_elapsed_s)
            .ok()
            .and_then(|s| s.checked_mul(1000));
        format!("{} in step", elapsed(None, held, ctx.now))
    };
    let pause = c.steps.get(c.step).and_then(|s| s.pause_s).map_or_else(
        || "final step".to_string(),
        |p| {
            format!(
                "pause {}",
                crate::model::duration::to_spec(std::time::Duration::from_secs(p))
            )
        },
    );
    let mut spans = vec![
        Span::styled(format!("{sym} {} ", c.state.as_str()), t.style(slot)),
        Span::styled(
            format!(
                " step {}/{} · {pause} · {in_step} · {} ",
                c.step + 1,
                c.steps.len(),
                c.source
            ),
            t.style("ui.text"),
        ),
    ];
    if let Some(u) = &c.upstream {
        // Metrics that cannot be had are never a silent pass: said first, as an alert.
        spans.push(Span::styled(
            format!("· {} upstream: {u} ", glyph::ALERT),
            t.style("alert"),
        ));
    }
    if let Some(tr) = &c.traffic {
        // A weight the router has not taken is an alert; one it has is a quiet note.
        let applied = tr.state == crate::model::TrafficState::Applied;
        spans.push(Span::styled(
            if applied {
                format!("· traffic {} ", tr.describe())
            } else {
                format!("· {} traffic {} ", glyph::ALERT, tr.describe())
            },
            t.style(if applied { "ui.dim" } else { "alert" }),
        ));
    }
    if let Some(o) = &c.outcome {
        spans.push(Span::styled(
            format!("· {o}"),
            t.style(if c.state == CanaryState::RolledBack {
                "alert"
            } else {
                "ui.dim"
            }),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), line);
    let ratio = (c.weight / 100.0).clamp(0.0, 1.0);
    let label = format!("canary {:>5}% ", c.weight);
    f.render_widget(
        LineGauge::default()
            .ratio(ratio)
            .label(Span::styled(label, t.style("chart.canary")))
            .filled_style(t.style("chart.canary"))
            .unfilled_style(t.style("chart.legacy"))
            .filled_symbol("█")
            .unfilled_symbol("░"),
        gauge,
    );
}

/// The numbers' column heading says when they were computed, and after a rollout ends that
/// they are the ones that decided it while the charts go on live.
fn numbers_heading(c: &CanaryStatus) -> String {
    let at = c
        .checks
        .first()
        .and_then(|k| k.at)
        .or(c.analysis_at)
        .map(|t| t.datetime().format("%H:%M:%S").to_string());
    match (at, c.state.is_final()) {
        (Some(at), true) => format!("NUMBERS that decided it at {at} (charts are live)"),
        (Some(at), false) => format!("NUMBERS at {at}"),
        (None, _) => "NUMBERS".to_string(),
    }
}

fn render_checks(f: &mut Frame, area: Rect, c: &CanaryStatus, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    if c.checks.is_empty() {
        f.render_widget(
            Span::styled(
                "No analysis yet: the first runs one interval after the step starts.",
                t.style("ui.dim"),
            ),
            area,
        );
        return;
    }
    let widths = [
        Constraint::Length(12),
        Constraint::Length(14),
        Constraint::Fill(1),
    ];
    let cols = column_widths(area.width, &widths);
    let rows: Vec<Row> = c
        .checks
        .iter()
        .map(|k| {
            let (sym, slot) = verdict_style(k.verdict);
            let proven = if k.proven_within_slo {
                " · proven within SLO"
            } else {
                ""
            };
            fitted_row(
                vec![
                    Line::raw(k.name.clone()),
                    Line::styled(format!("{sym} {}", k.verdict.as_str()), t.style(slot)),
                    Line::raw(format!("{}{proven}", k.summary)),
                ],
                &cols,
            )
        })
        .collect();
    let table = Table::new(rows, widths).header(
        Row::new(vec![
            "CHECK".to_string(),
            "VERDICT".to_string(),
            numbers_heading(c),
        ])
        .style(t.style("ui.dim")),
    );
    f.render_widget(table, area);
}

/// The hard rollback triggers as phrases: threshold, how long it must hold, the value now and
/// how long it has held.
fn trigger_text(c: &CanaryStatus) -> String {
    let span = |s: u64| crate::model::duration::to_spec(std::time::Duration::from_secs(s));
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    let mut parts = Vec::new();
    for tr in &c.triggers {
        let (label, value) = match tr.name.as_str() {
            "error_rate_above" => (format!("errors > {}", pct(tr.threshold)), tr.value.map(pct)),
            "p95_above_ms" => (
                format!("p95 > {:.0}ms for {}", tr.threshold, span(tr.for_s)),
                tr.value.map(|v| format!("{v:.0}ms")),
            ),
            _ => (
                format!(
                    "availability < {} for {}",
                    pct(tr.threshold),
                    span(tr.for_s)
                ),
                tr.value.map(pct),
            ),
        };
        // After the rollout ended the triggers are no longer looked at: their last values.
        let now = value.map_or_else(
            || "too few requests".to_string(),
            |v| {
                if c.state.is_final() {
                    format!("{v} when it ended")
                } else {
                    format!("now {v}")
                }
            },
        );
        let held = if tr.held_s > 0 && !tr.fired {
            format!(", held {}", span(tr.held_s))
        } else {
            String::new()
        };
        let fired = if tr.fired { "FIRED " } else { "" };
        parts.push(format!("{fired}{label} ({now}{held})"));
    }
    if parts.is_empty() {
        return "rollback triggers: not evaluated yet (they are with the first analysis)".into();
    }
    format!("rollback if {}", parts.join(" · "))
}

fn render_triggers(f: &mut Frame, area: Rect, c: &CanaryStatus, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let slot = if c.triggers.iter().any(|tr| tr.fired) {
        "alert"
    } else {
        "ui.text"
    };
    let rows = crate::tui::widgets::wrap_rows(
        &trigger_text(c),
        usize::from(area.width),
        usize::from(area.height),
    );
    let lines: Vec<Line> = rows
        .into_iter()
        .map(|r| Line::styled(r, t.style(slot)))
        .collect();
    f.render_widget(Paragraph::new(lines), area);
}

/// Rows the trigger phrases take at `width` (at most three).
fn trigger_rows(c: &CanaryStatus, width: u16) -> u16 {
    let n = crate::tui::widgets::wrap_rows(&trigger_text(c), usize::from(width), 3).len();
    u16::try_from(n).unwrap_or(3).max(1)
}

/// A chart point: (step index, value).
type Point = (f64, f64);

/// What a chart plots, in which unit.
#[derive(Clone, Copy)]
enum Unit {
    Ms,
    Percent,
    PerSecond,
}

impl Unit {
    fn show(self, v: f64) -> String {
        match self {
            Unit::Ms => format!("{v:.0}ms"),
            Unit::Percent if v < 10.0 => format!("{v:.1}%"),
            Unit::Percent => format!("{v:.0}%"),
            Unit::PerSecond if v < 10.0 => format!("{v:.1}/s"),
            Unit::PerSecond => format!("{v:.0}/s"),
        }
    }

    /// A tick label: whole numbers where the step allows.
    fn tick(self, v: f64, step: f64) -> String {
        let n = if step >= 1.0 {
            format!("{v:.0}")
        } else if step >= 0.1 {
            format!("{v:.1}")
        } else {
            format!("{v:.2}")
        };
        match self {
            Unit::Ms => format!("{n}ms"),
            Unit::Percent => format!("{n}%"),
            Unit::PerSecond => format!("{n}/s"),
        }
    }
}

/// A round step (1, 2 or 5 times a power of ten) that covers `max` in at most `ticks` steps.
pub fn nice_step(max: f64, ticks: usize) -> f64 {
    let ticks = ticks.max(1) as f64;
    let raw = (max / ticks).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| s * ticks >= max)
        .unwrap_or(10.0 * mag)
}

/// The points of one version's line, leaving out the stretch before it had any traffic (so
/// a canary that has not started is no flat zero).
fn plotted(points: &[SeriesPoint], get: impl Fn(&SeriesPoint) -> Option<f64>) -> Vec<(f64, f64)> {
    points
        .iter()
        .enumerate()
        .filter_map(|(i, pt)| get(pt).map(|v| (i as f64, v)))
        .collect()
}

/// Requests per second of one version, from its first traffic on: a canary that has had no
/// requests yet draws nothing rather than a flat zero.
pub fn traffic(
    points: &[SeriesPoint],
    version: impl Fn(&SeriesPoint) -> &VersionPoint,
) -> Vec<(f64, f64)> {
    let Some(first) = points.iter().position(|pt| version(pt).rps > 0.0) else {
        return Vec::new();
    };
    points
        .iter()
        .enumerate()
        .skip(first)
        .map(|(i, pt)| (i as f64, version(pt).rps))
        .collect()
}

fn render_charts(f: &mut Frame, area: Rect, p: &CanaryPane, c: &CanaryStatus, ctx: &Ctx<'_>) {
    if area.height < 5 {
        return;
    }
    let step_s = p.step_s();
    let points: &[SeriesPoint] = match &p.series {
        Some((name, step, pts)) if *name == c.name && *step == step_s => pts,
        _ => &[],
    };
    let [lat, err, rps] = Layout::horizontal([Constraint::Ratio(1, 3); 3]).areas(area);
    let q = p.quantile;
    let span = (step_s.max(1) as u64).saturating_mul(POINTS as u64);
    let charts = [
        (
            lat,
            format!("{} latency", q.label()),
            Unit::Ms,
            plotted(points, |pt| q.of(&pt.legacy)),
            plotted(points, |pt| q.of(&pt.canary)),
        ),
        (
            err,
            "error rate".to_string(),
            Unit::Percent,
            plotted(points, |pt| pt.legacy.error_rate.map(|e| e * 100.0)),
            plotted(points, |pt| pt.canary.error_rate.map(|e| e * 100.0)),
        ),
        (
            rps,
            "requests".to_string(),
            Unit::PerSecond,
            traffic(points, |pt| &pt.legacy),
            traffic(points, |pt| &pt.canary),
        ),
    ];
    for (area, title, unit, legacy, canary) in charts {
        chart(f, area, (&title, unit, span), (&legacy, &canary), ctx);
    }
}

fn chart(
    f: &mut Frame,
    area: Rect,
    (title, unit, span_s): (&str, Unit, u64),
    (legacy, canary): (&[Point], &[Point]),
    ctx: &Ctx<'_>,
) {
    let t = ctx.theme;
    let max = legacy
        .iter()
        .chain(canary)
        .map(|p| p.1)
        .fold(0.0_f64, f64::max);
    // Rows inside the border, less the x axis and its labels: room for a tick every other row.
    let plot_rows = usize::from(area.height.saturating_sub(4));
    let ticks = (plot_rows / 2).clamp(1, 4);
    let step = nice_step(if max > 0.0 { max } else { 1.0 }, ticks);
    let steps = (max / step).ceil().max(1.0);
    let top = match unit {
        // A percentage never needs an axis past 100.
        Unit::Percent => (steps * step).min(100.0),
        _ => steps * step,
    };
    let y_labels: Vec<Span> = (0..=steps as usize)
        .map(|i| Span::styled(unit.tick(i as f64 * step, step), t.style("ui.dim")))
        .collect();
    let dur = |s: u64| crate::model::duration::to_spec(std::time::Duration::from_secs(s));
    let x_labels: Vec<Span> = if area.width >= 40 {
        vec![
            Span::styled(format!("-{}", dur(span_s)), t.style("ui.dim")),
            Span::styled(format!("-{}", dur(span_s / 2)), t.style("ui.dim")),
            Span::styled("now", t.style("ui.dim")),
        ]
    } else {
        vec![
            Span::styled(format!("-{}", dur(span_s)), t.style("ui.dim")),
            Span::styled("now", t.style("ui.dim")),
        ]
    };
    let last = |v: &[(f64, f64)]| v.last().map_or_else(|| "-".into(), |x| unit.show(x.1));
    let legend = if area.width >= 44 {
        vec![
            Span::styled(" now: ", t.style("ui.dim")),
            Span::styled(
                format!("• legacy {} ", last(legacy)),
                t.style("chart.legacy"),
            ),
            Span::styled(
                format!(" ⠿ canary {} ", last(canary)),
                t.style("chart.canary"),
            ),
        ]
    } else {
        vec![
            Span::styled("now ", t.style("ui.dim")),
            Span::styled(format!("•L {} ", last(legacy)), t.style("chart.legacy")),
            Span::styled(format!("⠿C {}", last(canary)), t.style("chart.canary")),
        ]
    };
    let block = Block::bordered()
        .title(Span::styled(format!(" {title} "), t.style("ui.title")))
        .title_bottom(Line::from(legend))
        .border_style(t.style("ui.border"));
    if legacy.is_empty() && canary.is_empty() {
        // No axes over nothing: say so.
        let inner = block.inner(area);
        f.render_widget(block, area);
        f.render_widget(
            Paragraph::new(Span::styled("no data in this span yet", t.style("ui.dim")))
                .wrap(ratatui::widgets::Wrap { trim: true }),
            inner,
        );
        return;
    }
    // Legacy last, so its dots stay visible where the canary's line crosses them.
    let datasets = vec![
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(t.style("chart.canary"))
            .data(canary),
        Dataset::default()
            .marker(Marker::Dot)
            .graph_type(GraphType::Scatter)
            .style(t.style("chart.legacy"))
            .data(legacy),
    ];
    let chart = Chart::new(datasets)
        .block(block)
        .x_axis(
            Axis::default()
                .bounds([0.0, (POINTS - 1) as f64])
                .labels(x_labels)
                .style(t.style("ui.dim")),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, top])
                .labels(y_labels)
                .style(t.style("ui.dim")),
        );
    f.render_widget(chart, area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;

    #[test]
    fn ticks_are_round_and_cover_the_data() {
        for (max, ticks, step) in [
            (351.0, 4, 100.0),
            (2.6, 3, 1.0),
            (0.04, 2, 0.02),
            (107.0, 2, 100.0),
            (1.0, 1, 1.0),
        ] {
            let s = nice_step(max, ticks);
            assert!((s - step).abs() < 1e-9, "{max} in {ticks}: {s}");
            assert!(s * ticks as f64 >= max);
        }
    }

    #[test]
    fn a_canary_without_traffic_yet_draws_no_line() {
        let point = |i: i64, canary_rps: f64| SeriesPoint {
            at: Timestamp::from_millis(i * 5_000),
            legacy: VersionPoint {
                rps: 50.0,
                error_rate: None,
                p50_ms: None,
                p95_ms: None,
                p99_ms: None,
            },
            canary: VersionPoint {
                rps: canary_rps,
                error_rate: None,
                p50_ms: None,
                p95_ms: None,
                p99_ms: None,
            },
        };
        let pts: Vec<SeriesPoint> = (0..10)
            .map(|i| point(i, if i < 6 { 0.0 } else { 4.0 }))
            .collect();
        let canary = traffic(&pts, |p| &p.canary);
        assert_eq!(canary.first(), Some(&(6.0, 4.0)), "{canary:?}");
        assert_eq!(traffic(&pts, |p| &p.legacy).len(), 10);
        assert!(traffic(&pts[..6], |p| &p.canary).is_empty());
    }
}
