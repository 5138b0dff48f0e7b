//! Drawing popups over the focused pane. The keys a dialog names come from the active keymap.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::{Confirm, Editor, Picker, Popup};
use crate::tui::view::Ctx;
use crate::tui::widgets::{clock_time, fit, run_status, status_span};

/// A rectangle of at most `w` by `h` in the middle of `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(h.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [cell] = Layout::horizontal([Constraint::Length(w.min(area.width))])
        .flex(Flex::Center)
        .areas(row);
    cell
}

fn frame(f: &mut Frame, area: Rect, title: &str, ctx: &Ctx<'_>) -> Rect {
    let t = ctx.theme;
    // A title too long for the box is cut with an ellipsis (its start says what it is).
    let title = fit(title, usize::from(area.width.saturating_sub(4)));
    let block = Block::bordered()
        .title(Span::styled(format!(" {title} "), t.style("ui.title")))
        .border_style(t.style("ui.border.focused"))
        .style(t.style("ui.popup"));
    let inner = block.inner(area);
    f.render_widget(Clear, area);
    f.render_widget(block, area);
    inner
}

pub fn render(
    f: &mut Frame,
    screen: Rect,
    popup: &Popup,
    help: &[(String, String)],
    ctx: &Ctx<'_>,
) {
    match popup {
        Popup::Help { scroll } => render_help(f, screen, *scroll, help, ctx),
        Popup::Palette(p) => render_palette(f, screen, p, ctx),
        Popup::Confirm(c) => render_confirm(f, screen, c, ctx),
        Popup::ConfirmQuit { running } => render_quit(f, screen, *running, ctx),
        Popup::Record(r) => render_record(f, screen, r, ctx),
        Popup::PickPipeline(p) => {
            let name_w = p
                .items
                .iter()
                .map(|i| i.name.chars().count())
                .max()
                .unwrap_or(8)
                .clamp(8, 28);
            let title = format!(
                "Start a run ({} starts, {} cancels)",
                ctx.keys.confirm, ctx.keys.back
            );
            let t = ctx.theme;
            render_picker(
                f,
                screen,
                (&title, 70),
                p,
                "The workspace has no valid pipelines.",
                ctx,
                |pi| {
                    // Names in a column of their own, two spaces before the description.
                    vec![
                        Span::raw(format!("{:<name_w$}  ", fit(&pi.name, name_w))),
                        Span::styled(
                            fit(
                                pi.description.as_deref().unwrap_or_default(),
                                66usize.saturating_sub(name_w + 2),
                            ),
                            t.style("ui.dim"),
                        ),
                    ]
                },
            );
        }
        Popup::EditAsset(e) => render_editor(f, screen, e, ctx),
        Popup::PickStage {
            asset,
            version,
            picker,
        } => {
            let title = format!(
                "Test a stage with {asset} v{version} ({} starts)",
                ctx.keys.confirm
            );
            render_picker(
                f,
                screen,
                (&title, 60),
                picker,
                "No stage uses this asset.",
                ctx,
                |u| vec![Span::raw(format!("{} / {}", u.pipeline, u.stage))],
            );
        }
        Popup::PickBaseline { stage, picker } => {
            let title = format!("Baseline for `{stage}` ({} picks)", ctx.keys.confirm);
            let t = ctx.theme;
            render_picker(
                f,
                screen,
                (&title, 60),
                picker,
                "No earlier runs of this pipeline.",
                ctx,
                |r| {
                    vec![
                        Span::raw(format!("run {:<8}", r.id)),
                        status_span(t, run_status(r.status), r.status.as_str()),
                        Span::styled(
                            format!(
                                "  {}",
                                clock_time(r.started_at.unwrap_or(r.created_at), ctx.now)
                            ),
                            t.style("ui.dim"),
                        ),
                    ]
                },
            );
        }
    }
}

/// The help inside the pane's border (never over it), its descriptions wrapped under
/// themselves rather than cut, scrolled a row at a time.
fn render_help(
    f: &mut Frame,
    screen: Rect,
    scroll: usize,
    help: &[(String, String)],
    ctx: &Ctx<'_>,
) {
    let t = ctx.theme;
    let room = crate::tui::panes::inner(crate::tui::panes::areas(screen).body);
    let width = room.width.min(100);
    let key_w = help
        .iter()
        .filter(|(_, d)| !d.is_empty())
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(8)
        .min(20);
    let doc_w = usize::from(width.saturating_sub(2)).saturating_sub(key_w + 2);
    // Every row of the help once wrapped: (key or blank, text, is a heading).
    let mut rows: Vec<(String, String, bool)> = Vec::new();
    for (k, d) in help {
        if d.is_empty() {
            rows.push((k.clone(), String::new(), true));
            continue;
        }
        for (i, piece) in crate::tui::widgets::wrap_rows(d, doc_w.max(1), usize::MAX)
            .into_iter()
            .enumerate()
        {
            let key = if i == 0 { fit(k, key_w) } else { String::new() };
            rows.push((key, piece, false));
        }
    }
    let h = u16::try_from(rows.len() + 2)
        .unwrap_or(u16::MAX)
        .min(room.height);
    let area = centered(room, width, h);
    let visible = usize::from(h.saturating_sub(2));
    let scroll = scroll.min(rows.len().saturating_sub(visible));
    let more = scroll + visible < rows.len();
    let k = ctx.keys;
    let title = if more || scroll > 0 {
        format!(
            "Keys ({}/{} scroll, {} or {} closes)",
            k.down, k.up, k.help, k.back
        )
    } else {
        format!("Keys ({} or {} closes)", k.help, k.back)
    };
    let inner = frame(f, area, &title, ctx);
    let mut lines: Vec<Line> = rows
        .iter()
        .skip(scroll)
        .take(visible)
        .map(|(key, text, heading)| {
            if *heading {
                Line::styled(key.clone(), t.style("ui.header"))
            } else {
                Line::from(vec![
                    Span::styled(format!("{key:<key_w$}  "), t.style("ui.key")),
                    Span::styled(text.clone(), t.style("ui.text")),
                ])
            }
        })
        .collect();
    if more && let Some(last) = lines.last_mut() {
        *last = Line::styled(
            format!("↓ {} more ({})", rows.len() - scroll - visible + 1, k.down),
            t.style("ui.dim"),
        );
    }
    f.render_widget(Paragraph::new(lines), inner);
}

/// A record's lines, wrapped to the box, scrolled; the last row says how to leave.
fn render_record(f: &mut Frame, screen: Rect, r: &super::Record, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    // Inside the pane's border, like the help, so no column of the pane shows beside it.
    let room = crate::tui::panes::inner(crate::tui::panes::areas(screen).body);
    let width = room.width.min(90);
    let text_w = usize::from(width.saturating_sub(2));
    let rows: Vec<String> = r
        .lines
        .iter()
        .flat_map(|l| crate::tui::widgets::wrap_rows(l, text_w, usize::MAX))
        .collect();
    let h = u16::try_from(rows.len() + 3)
        .unwrap_or(u16::MAX)
        .min(room.height);
    let area = centered(room, width, h);
    let inner = frame(f, area, &r.title, ctx);
    let [body, keys] = Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(inner);
    let visible = usize::from(body.height);
    let scroll = r.scroll.min(rows.len().saturating_sub(visible));
    let mut lines: Vec<Line> = rows
        .iter()
        .skip(scroll)
        .take(visible)
        .map(|l| Line::styled(l.clone(), t.style("ui.text")))
        .collect();
    let more = scroll + visible < rows.len();
    if more && let Some(last) = lines.last_mut() {
        *last = Line::styled(
            format!(
                "↓ {} more ({})",
                rows.len() - scroll - visible + 1,
                ctx.keys.down
            ),
            t.style("ui.dim"),
        );
    }
    f.render_widget(Paragraph::new(lines), body);
    let line = match r.run {
        Some(id) => key_line(ctx, &format!("opens run {id}"), "closes"),
        None => Line::from(vec![
            Span::styled(
                format!("{} or {}", ctx.keys.confirm, ctx.keys.back),
                t.style("ui.key"),
            ),
            Span::styled(" closes", t.style("ui.dim")),
        ]),
    };
    f.render_widget(line, keys);
}

fn render_palette(f: &mut Frame, screen: Rect, p: &super::Palette, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let h = (p.candidates.len() as u16).min(8) + 3;
    let area = Rect {
        y: screen.y + 1,
        ..centered(screen, 70, h)
    };
    let inner = frame(f, area, "Command", ctx);
    let [input, list] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    let [colon, field] =
        Layout::horizontal([Constraint::Length(2), Constraint::Min(1)]).areas(input);
    f.render_widget(Span::styled(": ", t.style("ui.key")), colon);
    f.render_widget(&p.input, field);
    let lines: Vec<Line> = p
        .candidates
        .iter()
        .enumerate()
        .take(usize::from(list.height))
        .map(|(i, (c, d))| {
            let style = if i == p.selected {
                t.style("ui.selection")
            } else {
                t.style("ui.text")
            };
            Line::from(vec![
                Span::styled(format!("{c:<14}"), style),
                Span::styled(d.clone(), t.style("ui.dim")),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines), list);
}

/// The label over a reason field; after a confirm without one, it says to type it first.
fn reason_label(missing: bool, what: &str, ctx: &Ctx<'_>) -> Line<'static> {
    let t = ctx.theme;
    if missing {
        Line::from(vec![
            Span::styled("Reason: ", t.style("ui.header")),
            Span::styled(
                format!("type why first; it is recorded with the {what}"),
                t.style("ui.error"),
            ),
        ])
    } else {
        Line::styled("Reason:", t.style("ui.header"))
    }
}

/// The asset editor: most of the screen for the text, a line for the reason, and the keys.
fn render_editor(f: &mut Frame, screen: Rect, e: &Editor, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let area = centered(
        screen,
        screen.width.saturating_sub(4).max(40),
        screen.height.saturating_sub(2).max(10),
    );
    let title = format!("New version of {} (from v{})", e.name, e.from);
    let inner = frame(f, area, &title, ctx);
    let [text, label, reason, hint] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    let mut body = e.text.clone();
    body.set_block(Block::bordered().border_style(if e.on_reason {
        t.style("ui.border")
    } else {
        t.style("ui.border.focused")
    }));
    f.render_widget(&body, text);
    f.render_widget(reason_label(e.needs_reason, "version", ctx), label);
    let mut reason_field = e.reason.clone();
    reason_field.set_placeholder_style(t.style("ui.dim"));
    f.render_widget(&reason_field, reason);
    let keys = ctx.keys;
    let hint_text = if e.on_reason {
        format!(
            "{} saves (not pinned) · {} back to the text · {} cancels",
            keys.confirm, keys.complete, keys.back
        )
    } else {
        format!(
            "enter: new line · {} to the reason · {} cancels",
            keys.complete, keys.back
        )
    };
    f.render_widget(
        Line::styled(fit(&hint_text, usize::from(hint.width)), t.style("ui.dim")),
        hint,
    );
}

fn render_confirm(f: &mut Frame, screen: Rect, c: &Confirm, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let mut body = c.body.clone();
    if let Some(w) = &c.weight {
        let cursor = if w.focused { "▏" } else { "" };
        body.push(match &w.error {
            Some(e) => format!("New weight: {}{cursor}%   {e}", w.digits),
            None => format!(
                "New weight: {}{cursor}%   (type digits, {} {} by 5, {} to the reason)",
                w.digits, ctx.keys.field_up, ctx.keys.field_down, ctx.keys.complete
            ),
        });
    }
    // The placeholder takes the theme's dim style, not the text area's own grey.
    let mut reason_field = c.reason.clone();
    reason_field.set_placeholder_style(t.style("ui.dim"));
    let h = body.len() as u16 + 7;
    let area = centered(screen, 72, h);
    let inner = frame(f, area, &c.title, ctx);
    let [body_area, label, reason, hint] = Layout::vertical([
        Constraint::Length(body.len() as u16 + 1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(2),
    ])
    .areas(inner);
    let text: Vec<Line> = body
        .iter()
        .map(|l| Line::styled(l.clone(), t.style("ui.text")))
        .collect();
    f.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), body_area);
    f.render_widget(reason_label(c.needs_reason, "action", ctx), label);
    f.render_widget(&reason_field, reason);
    f.render_widget(
        key_line(ctx, "confirm", "cancel"),
        Rect {
            y: hint.y + 1,
            height: 1,
            ..hint
        },
    );
}

/// `Enter confirm   Esc cancel`, with the keys of the active keymap.
fn key_line(ctx: &Ctx<'_>, yes: &str, no: &str) -> Line<'static> {
    let t = ctx.theme;
    Line::from(vec![
        Span::styled(ctx.keys.confirm.clone(), t.style("ui.key")),
        Span::styled(format!(" {yes}   "), t.style("ui.dim")),
        Span::styled(ctx.keys.back.clone(), t.style("ui.key")),
        Span::styled(format!(" {no}"), t.style("ui.dim")),
    ])
}

fn render_quit(f: &mut Frame, screen: Rect, running: u64, ctx: &Ctx<'_>) {
    let t = ctx.theme;
    let area = centered(screen, 64, 7);
    let inner = frame(f, area, "Quit opsdeck?", ctx);
    let (plural, them, they) = if running == 1 {
        ("run is", "it", "it resumes")
    } else {
        ("runs are", "them", "they resume")
    };
    let lines = vec![
        Line::styled(
            format!("{running} {plural} in flight on this host."),
            t.style("ui.text"),
        ),
        Line::styled(
            format!("Quitting interrupts {them}; {they} when opsdeck next hosts"),
            t.style("ui.text"),
        ),
        Line::styled(
            "this workspace (stages in flight run again).",
            t.style("ui.text"),
        ),
        key_line(ctx, "quit", "keep running"),
    ];
    f.render_widget(Paragraph::new(lines), inner);
}

/// A list to choose from: `row` draws an item, the selection is highlighted.
fn render_picker<T>(
    f: &mut Frame,
    screen: Rect,
    (title, width): (&str, u16),
    p: &Picker<T>,
    empty: &str,
    ctx: &Ctx<'_>,
    row: impl Fn(&T) -> Vec<Span<'static>>,
) {
    let t = ctx.theme;
    let h = (p.items.len() as u16).clamp(1, 12) + 2;
    let area = centered(screen, width, h);
    let inner = frame(f, area, title, ctx);
    if p.items.is_empty() {
        f.render_widget(Span::styled(empty.to_string(), t.style("ui.dim")), inner);
        return;
    }
    let lines: Vec<Line> = p
        .items
        .iter()
        .enumerate()
        .skip(p.cursor.offset)
        .take(usize::from(inner.height))
        .map(|(i, item)| {
            let mut spans = row(item);
            let style = if i == p.cursor.selected {
                t.style("ui.selection")
            } else {
                t.style("ui.text")
            };
            if let Some(first) = spans.first_mut() {
                first.style = style;
            }
            Line::from(spans)
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}
