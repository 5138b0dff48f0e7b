//! Drawing: a pure function of `&App`. Header (panes, connection, alerts, UTC clock), the
//! focused pane, the footer (key hints from the active keymap, a filter being typed, or a
//! message), and popups on top.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::action::Action;
use super::app::App;
use super::panes::{self, MIN_HEIGHT, MIN_WIDTH, PaneId, areas, too_small};
use super::popup::{self, Popup};
use super::theme::Theme;
use super::widgets::fit;

/// What every pane needs to draw.
pub struct Ctx<'a> {
    pub theme: &'a Theme,
    pub now: DateTime<Utc>,
}

const BRAND: &str = " opsdeck ";

fn tab_label(p: PaneId) -> String {
    let (key, title) = p.tab();
    format!(" {key} {title} ")
}

/// The pane whose tab is at a header column (for mouse clicks).
pub fn tab_at(col: u16) -> Option<PaneId> {
    let mut x = BRAND.chars().count() as u16 + 1;
    for p in PaneId::ALL {
        let w = tab_label(p).chars().count() as u16;
        if col >= x && col < x + w {
            return Some(p);
        }
        x += w;
    }
    None
}

pub fn render(f: &mut Frame, app: &App) {
    let size = f.area();
    let ctx = Ctx {
        theme: &app.config.theme,
        now: app.now,
    };
    if too_small(size) {
        let msg = format!(
            "terminal too small ({}x{}): opsdeck needs {MIN_WIDTH}x{MIN_HEIGHT}",
            size.width, size.height
        );
        f.render_widget(
            Paragraph::new(Span::styled(
                fit(&msg, usize::from(size.width)),
                ctx.theme.style("ui.error"),
            )),
            size,
        );
        return;
    }
    let a = areas(size);
    header(f, a.header, app, &ctx);
    match app.focus {
        PaneId::Runs => match &app.detail {
            Some(d) => panes::run_detail::render(f, a.body, d, &ctx),
            None => panes::runs::render(f, a.body, &app.runs, &ctx),
        },
        PaneId::Stage => panes::stage::render(f, a.body, &app.stage, &ctx),
        PaneId::Dlq => panes::dlq::render(f, a.body, &app.dlq, &ctx),
        PaneId::Events => panes::events::render(f, a.body, &app.events, &ctx),
    }
    footer(f, a.footer, app, &ctx);
    if let Some(top) = app.popups.last() {
        let help = if matches!(top, Popup::Help { .. }) {
            let pane = match app.focus {
                PaneId::Runs if app.detail.is_some() => "Run",
                p => p.tab().1,
            };
            popup::help_lines(&app.config.keymap.bindings(&app.contexts()), pane)
        } else {
            Vec::new()
        };
        popup::render(f, size, top, &help, &ctx);
    }
}

fn header(f: &mut Frame, area: Rect, app: &App, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let mut left = vec![Span::styled(BRAND, t.style("ui.header")), Span::raw(" ")];
    for p in PaneId::ALL {
        let style = if p == app.focus {
            t.style("ui.tab.active")
        } else {
            t.style("ui.dim")
        };
        left.push(Span::styled(tab_label(p), style));
    }
    let alerts = app
        .overview
        .as_ref()
        .map_or(0, crate::model::Overview::alerts);
    let (conn, conn_style) = if app.connected {
        ("● live", "status.ok")
    } else {
        ("○ connecting", "status.retrying")
    };
    let workspace = app
        .overview
        .as_ref()
        .map(|o| {
            let name = std::path::Path::new(&o.workspace)
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            format!("{name} · {}", o.backend)
        })
        .unwrap_or_default();
    let mut right = vec![
        Span::styled(format!("{workspace}  "), t.style("ui.dim")),
        Span::styled(conn, t.style(conn_style)),
        Span::raw("  "),
    ];
    if alerts > 0 {
        right.push(Span::styled(format!("⚠ {alerts} "), t.style("alert")));
    } else {
        right.push(Span::styled("no alerts ", t.style("ui.dim")));
    }
    right.push(Span::styled(
        format!(" {} UTC ", app.now.format("%H:%M:%S")),
        t.style("ui.header"),
    ));
    let left_w: usize = left.iter().map(|s| s.content.chars().count()).sum();
    let mut right_w: usize = right.iter().map(|s| s.content.chars().count()).sum();
    if left_w + right_w > usize::from(area.width) {
        right.remove(0);
        right_w = right.iter().map(|s| s.content.chars().count()).sum();
    }
    let [l, r] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(right_w as u16)]).areas(area);
    f.render_widget(Paragraph::new(Line::from(left)), l);
    f.render_widget(Paragraph::new(Line::from(right)), r);
}

/// Key hints for the focused pane: (actions sharing one hint, label).
fn hints(app: &App) -> Vec<(&'static [Action], &'static str)> {
    match app.focus {
        PaneId::Runs if app.detail.is_some() => vec![
            (&[Action::Down, Action::Up], "move"),
            (&[Action::Open], "stage"),
            (&[Action::RetryRun], "retry"),
            (&[Action::CancelRun], "cancel"),
            (&[Action::Back], "back"),
            (&[Action::Help], "help"),
            (&[Action::Quit], "quit"),
        ],
        PaneId::Runs => vec![
            (&[Action::Down, Action::Up], "move"),
            (&[Action::Open], "open"),
            (&[Action::Filter], "filter"),
            (&[Action::Sort], "sort"),
            (&[Action::NewRun], "new run"),
            (&[Action::Palette], "command"),
            (&[Action::Help], "help"),
            (&[Action::Quit], "quit"),
        ],
        PaneId::Stage => vec![
            (&[Action::NextSection], "section"),
            (&[Action::PrevAttempt, Action::NextAttempt], "attempt"),
            (&[Action::Diff], "diff"),
            (&[Action::PickBaseline], "baseline"),
            (&[Action::DiffLayout], "layout"),
            (&[Action::Down, Action::Up], "scroll"),
            (&[Action::Back], "back"),
            (&[Action::Help], "help"),
        ],
        PaneId::Dlq => vec![
            (&[Action::Down, Action::Up], "move"),
            (&[Action::Open], "run"),
            (&[Action::Requeue], "requeue"),
            (&[Action::Discard], "discard"),
            (&[Action::Help], "help"),
            (&[Action::Quit], "quit"),
        ],
        PaneId::Events => vec![
            (&[Action::Down, Action::Up], "move"),
            (&[Action::Filter], "filter"),
            (&[Action::Follow], "follow"),
            (&[Action::Open], "run"),
            (&[Action::Help], "help"),
            (&[Action::Quit], "quit"),
        ],
    }
}

fn footer(f: &mut Frame, area: Rect, app: &App, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    if let Some(input) = &app.input {
        let [label, field] =
            Layout::horizontal([Constraint::Length(9), Constraint::Min(1)]).areas(area);
        f.render_widget(Span::styled(" filter: ", t.style("ui.key")), label);
        f.render_widget(&input.text, field);
        return;
    }
    if let Some(flash) = &app.flash {
        let style = if flash.error {
            t.style("ui.error")
        } else {
            t.style("status.ok")
        };
        f.render_widget(
            Paragraph::new(Span::styled(
                fit(&format!(" {}", flash.text), usize::from(area.width)),
                style,
            )),
            area,
        );
        return;
    }
    let contexts = app.contexts();
    let mut spans = Vec::new();
    let mut width = 0usize;
    for (actions, label) in hints(app) {
        let keys: Vec<String> = actions
            .iter()
            .filter_map(|a| app.config.keymap.keys_for(&contexts, *a).into_iter().next())
            .collect();
        if keys.is_empty() {
            continue;
        }
        let key = keys.join("/");
        let w = key.chars().count() + label.chars().count() + 3;
        if width + w > usize::from(area.width) {
            break;
        }
        width += w;
        spans.push(Span::styled(format!(" {key}"), t.style("ui.key")));
        spans.push(Span::styled(format!(" {label} "), t.style("ui.footer")));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}
