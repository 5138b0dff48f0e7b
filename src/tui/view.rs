//! Drawing: a pure function of `&App`. Header (panes, connection, alerts, UTC clock), the
//! focused pane, the footer (the pane's declared commands with their keys in the active
//! keymap, a filter being typed, or a message), and popups on top.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::action::Action;
use super::app::App;
use super::help;
use super::keymap::{Context, DialogKeys};
use super::panes::{MIN_HEIGHT, MIN_WIDTH, PaneId, areas, too_small};
use super::popup::{self, Popup};
use super::theme::Theme;
use super::widgets::fit;

/// What every pane needs to draw.
pub struct Ctx<'a> {
    pub theme: &'a Theme,
    pub now: DateTime<Utc>,
    /// The keys dialogs name.
    pub keys: &'a DialogKeys,
}

fn ctx(app: &App) -> Ctx<'_> {
    Ctx {
        theme: &app.config.theme,
        now: app.now,
        keys: &app.keys,
    }
}

/// The key that shows a pane, from the keymap (`1` for Runs by default).
fn pane_key(app: &App, p: PaneId) -> String {
    let action = match p {
        PaneId::Runs => Action::PaneRuns,
        PaneId::Stage => Action::PaneStage,
        PaneId::Canary => Action::PaneCanary,
        PaneId::Compare => Action::PaneCompare,
        PaneId::Dlq => Action::PaneDlq,
        PaneId::Assets => Action::PaneAssets,
        PaneId::Events => Action::PaneEvents,
        PaneId::Pipelines => Action::PanePipelines,
    };
    app.config
        .keymap
        .keys_for(&[Context::Global], action)
        .into_iter()
        .next()
        .unwrap_or_default()
}

const BRAND: &str = " opsdeck ";

/// How much the header shows; narrower terminals get a lower level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    /// Tab titles, workspace, words and "UTC".
    Full,
    /// Without the workspace name.
    NoWorkspace,
    /// Symbols and numbers only on the right.
    Terse,
    /// Tab numbers without titles.
    Minimal,
}

fn tab_label(app: &App, p: PaneId, level: Level) -> String {
    let (key, title) = (pane_key(app, p), p.title());
    // Tab numbers alone, but the pane shown keeps its title: one knows where one is.
    let minimal = level == Level::Minimal && p != app.focus;
    match (minimal, key.is_empty()) {
        (true, false) => format!(" {key} "),
        (_, true) => format!(" {title} "),
        (false, false) => format!(" {key} {title} "),
    }
}

fn label_text(app: &App) -> Option<String> {
    app.config.label.as_ref().map(|l| format!(" {l} "))
}

fn left_spans(app: &App, ctx: &Ctx<'_>, level: Level) -> Vec<Span<'static>> {
    let t = ctx.theme;
    let mut left = vec![Span::styled(BRAND, t.style("ui.header"))];
    if let Some(l) = label_text(app) {
        left.push(Span::styled(l, t.style("alert")));
    }
    left.push(Span::raw(" "));
    for p in PaneId::ALL {
        let style = if p == app.focus {
            t.style("ui.tab.active")
        } else {
            t.style("ui.dim")
        };
        left.push(Span::styled(tab_label(app, p, level), style));
    }
    left
}

fn right_spans(app: &App, ctx: &Ctx<'_>, level: Level) -> Vec<Span<'static>> {
    let t = ctx.theme;
    let mut right = Vec::new();
    if level == Level::Full
        && let Some(o) = &app.overview
    {
        let name = std::path::Path::new(&o.workspace)
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        // Several workers share the store: how many are live now.
        let workers = match o.workers {
            Some(1) => " · 1 worker".to_string(),
            Some(n) => format!(" · {n} workers"),
            None => String::new(),
        };
        right.push(Span::styled(
            format!("{name} · {}{workers}  ", o.backend),
            t.style("ui.dim"),
        ));
    }
    let terse = level >= Level::Terse;
    let conn = match (app.connected, terse) {
        (true, false) => Span::styled("● live  ", t.style("status.ok")),
        (true, true) => Span::styled("● ", t.style("status.ok")),
        // Lost after being up: what is on screen is the last data seen.
        (false, false) if app.ever_connected => {
            Span::styled("○ stale, reconnecting  ", t.style("alert"))
        }
        (false, true) if app.ever_connected => Span::styled("○ stale ", t.style("alert")),
        (false, false) => Span::styled("○ connecting  ", t.style("status.retrying")),
        (false, true) => Span::styled("○ ", t.style("status.retrying")),
    };
    right.push(conn);
    let parts = alerts(app);
    let total: u64 = parts.iter().map(|(n, _)| n).sum();
    right.push(match (total, terse) {
        (0, false) => Span::styled("no alerts ", t.style("ui.dim")),
        (0, true) => Span::styled("", t.style("ui.dim")),
        // What is counted, so the number means something: `⚠ 2 in DLQ · 1 rolled back`.
        (_, false) => Span::styled(
            format!(
                "⚠ {} ",
                parts
                    .iter()
                    .map(|(n, what)| format!("{n} {what}"))
                    .collect::<Vec<_>>()
                    .join(" · ")
            ),
            t.style("alert"),
        ),
        (n, true) => Span::styled(format!("⚠{n} "), t.style("alert")),
    });
    let clock = if terse {
        format!(" {} ", app.now.format("%H:%M:%S"))
    } else {
        format!(" {} UTC ", app.now.format("%H:%M:%S"))
    };
    right.push(Span::styled(clock, t.style("ui.header")));
    right
}

/// What needs someone, counted by kind (kinds with none are left out): dead-lettered stages,
/// open breakers, rolled-back canaries.
pub fn alerts(app: &App) -> Vec<(u64, &'static str)> {
    let (dlq, open) = app.overview.as_ref().map_or((0, 0), |o| {
        let open = o.breakers.iter().filter(|b| b.state == "open").count();
        (o.dlq_depth, open as u64)
    });
    let rolled_back = app
        .panes
        .canary
        .canaries
        .iter()
        .filter(|c| c.state == crate::model::CanaryState::RolledBack)
        .count() as u64;
    [
        (dlq, "in DLQ"),
        (
            open,
            if open == 1 {
                "breaker open"
            } else {
                "breakers open"
            },
        ),
        (rolled_back, "rolled back"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .collect()
}

fn width(spans: &[Span<'_>]) -> usize {
    spans.iter().map(|s| s.content.chars().count()).sum()
}

/// The richest header that fits the width.
fn level_for(app: &App, ctx: &Ctx<'_>, cols: u16) -> Level {
    [
        Level::Full,
        Level::NoWorkspace,
        Level::Terse,
        Level::Minimal,
    ]
    .into_iter()
    .find(|l| {
        width(&left_spans(app, ctx, *l)) + width(&right_spans(app, ctx, *l)) <= usize::from(cols)
    })
    .unwrap_or(Level::Minimal)
}

/// The pane whose tab is at a header column (for mouse clicks).
pub fn tab_at(app: &App, col: u16) -> Option<PaneId> {
    let ctx = ctx(app);
    let level = level_for(app, &ctx, app.size.width);
    let mut x =
        (BRAND.chars().count() + label_text(app).map_or(0, |l| l.chars().count()) + 1) as u16;
    for p in PaneId::ALL {
        let w = tab_label(app, p, level).chars().count() as u16;
        if col >= x && col < x + w {
            return Some(p);
        }
        x += w;
    }
    None
}

/// A message for a footer `width` wide. One that does not fit puts its list of valid choices
/// first when it ends in one (the half worth reading), and says which key shows it whole.
pub fn message_line(text: &str, width: usize, key: Option<&str>) -> String {
    let whole = format!(" {text}");
    if whole.chars().count() <= width {
        return whole;
    }
    let hint = key.map(|k| format!(" ({k}: all)")).unwrap_or_default();
    let room = width.saturating_sub(hint.chars().count());
    let reordered = match text.rsplit_once("; ") {
        Some((head, tail)) if tail.starts_with("valid ") => format!(" {tail} ← {head}"),
        _ => whole,
    };
    format!("{}{hint}", fit(&reordered, room))
}

/// What is drawn (wrapped) when the terminal is too small: the size needed first, then the way out.
pub fn too_small_line(size: Rect, quit_pending: Option<u64>, quit_key: &str) -> String {
    let need = format!(
        "opsdeck needs {MIN_WIDTH}x{MIN_HEIGHT} (this is {}x{})",
        size.width, size.height
    );
    let way_out = match quit_pending {
        Some(n) => format!("{quit_key} again quits, interrupting {n} run(s)"),
        None => format!("{quit_key} quits"),
    };
    format!("{need}; {way_out}")
}

pub fn render(f: &mut Frame, app: &App) {
    let size = f.area();
    let ctx = ctx(app);
    // The theme's background under everything (the light theme sets one; others keep the
    // terminal's).
    f.render_widget(
        ratatui::widgets::Block::default().style(ctx.theme.style("ui.background")),
        size,
    );
    if too_small(size) {
        let pending = app.popups.last().and_then(|p| match p {
            crate::tui::popup::Popup::ConfirmQuit { running } => Some(*running),
            _ => None,
        });
        let msg = too_small_line(size, pending, &ctx.keys.quit);
        f.render_widget(
            Paragraph::new(Span::styled(msg, ctx.theme.style("ui.error")))
                .wrap(ratatui::widgets::Wrap { trim: true }),
            size,
        );
        return;
    }
    let a = areas(size);
    header(f, a.header, app, &ctx);
    app.focused().render(f, a.body, &ctx);
    if let Some(alert) = &app.alert {
        // Across the top of every pane until the canary pane is opened.
        let line = Rect {
            height: 1,
            ..a.body
        };
        let key = pane_key(app, PaneId::Canary);
        let text = format!(" ⚠ {alert} ({key} shows the canary) ");
        f.render_widget(
            Paragraph::new(Span::styled(
                fit(&text, usize::from(line.width)),
                ctx.theme.style("alert"),
            ))
            .style(ctx.theme.style("ui.popup")),
            line,
        );
    }
    footer(f, a.footer, app, &ctx);
    if let Some(top) = app.popups.last() {
        let help = if matches!(top, Popup::Help { .. }) {
            help::lines(app.focused(), &app.config.keymap)
        } else {
            Vec::new()
        };
        popup::render(f, size, top, &help, &ctx);
    }
}

fn header(f: &mut Frame, area: Rect, app: &App, ctx: &Ctx<'_>) {
    let level = level_for(app, ctx, area.width);
    let left = left_spans(app, ctx, level);
    let right = right_spans(app, ctx, level);
    let right_w = width(&right) as u16;
    let [l, r] = Layout::horizontal([Constraint::Min(0), Constraint::Length(right_w)]).areas(area);
    f.render_widget(Paragraph::new(Line::from(left)), l);
    f.render_widget(Paragraph::new(Line::from(right)), r);
}

fn footer(f: &mut Frame, area: Rect, app: &App, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    if let Some(input) = &app.input {
        // The text being typed, and beside it what is wrong with it, if anything.
        let typed = input.text.lines().join(" ").chars().count();
        // Wide enough for the placeholder while empty, so it is not cut.
        let shown = if typed == 0 {
            input.placeholder.chars().count()
        } else {
            typed
        };
        let field_w = u16::try_from(shown + 2).unwrap_or(u16::MAX).max(12);
        let [label, field, error] = Layout::horizontal([
            Constraint::Length(9),
            Constraint::Length(field_w),
            Constraint::Min(0),
        ])
        .areas(area);
        f.render_widget(Span::styled(" filter: ", t.style("ui.key")), label);
        f.render_widget(&input.text, field);
        if let Some(e) = &input.error {
            f.render_widget(
                Paragraph::new(Span::styled(
                    message_line(e, usize::from(error.width), None),
                    t.style("ui.error"),
                )),
                error,
            );
        }
        return;
    }
    if let Some(flash) = &app.flash {
        let style = if flash.error {
            t.style("ui.error")
        } else {
            t.style("status.ok")
        };
        let text = message_line(
            &flash.text,
            usize::from(area.width),
            Some(&ctx.keys.messages),
        );
        f.render_widget(Paragraph::new(Span::styled(text, style)), area);
        return;
    }
    let mut spans = Vec::new();
    let hints = help::hints(app.focused(), &app.config.keymap, app.config.read_only);
    for h in help::fitting(hints, usize::from(area.width)) {
        // What the selection does not allow is drawn dim: the key says why when pressed.
        let (key_style, label_style) = if h.available {
            (t.style("ui.key"), t.style("ui.footer"))
        } else {
            (t.style("ui.dim"), t.style("ui.dim"))
        };
        spans.push(Span::styled(format!(" {}", h.keys), key_style));
        spans.push(Span::styled(format!(" {} ", h.label), label_style));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}
