//! Popups, kept as a stack of plain data: help, the command palette, confirmations and pickers.
//! Each handles its own keys (fixed keys: Enter, Esc, arrows, Tab) and reports what should happen;
//! the app decides what that means.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui_textarea::TextArea;

use super::action::Action;
use super::keymap::show_seq;
use super::panes::{Cursor, Motion};
use super::view::Ctx;
use super::widgets::{clock_time, fit, run_status, status_span};
use crate::model::{Command, PipelineInfo, RunId, RunSummary};

/// Palette commands and what they do; the palette's completion and its errors come from here.
pub const COMMANDS: &[(&str, &str)] = &[
    ("runs", "show runs (`:runs NAME` for one pipeline)"),
    ("run", "start a run of a pipeline: `:run NAME`"),
    ("stage", "show the stage input and output"),
    ("canary", "show canary rollouts"),
    (
        "fault",
        "simulated canary: `:fault ERRORS% [MS]` adds errors and latency, `:fault off` clears",
    ),
    ("dlq", "show the dead-letter queue"),
    ("events", "show the event log"),
    ("theme", "switch the theme: `:theme NAME`"),
    ("help", "show the keys of the focused pane"),
    ("quit", "quit opsdeck"),
];

#[derive(Debug, Clone, PartialEq)]
pub struct Picker<T> {
    pub items: Vec<T>,
    pub cursor: Cursor,
}

impl<T> Picker<T> {
    pub fn new(items: Vec<T>) -> Self {
        Picker {
            items,
            cursor: Cursor::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Confirm {
    pub title: String,
    pub body: Vec<String>,
    pub reason: TextArea<'static>,
    pub control: Command,
    /// A weight being chosen (set-weight), in percent: ↑ and ↓ change it by 5.
    pub weight: Option<u32>,
    /// Enter was pressed without a reason.
    pub needs_reason: bool,
}

#[derive(Debug, Clone)]
pub struct Palette {
    pub input: TextArea<'static>,
    pub selected: usize,
    /// What can complete the current word (filled by the app from pipelines and themes).
    pub candidates: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub enum Popup {
    Help {
        scroll: usize,
    },
    Palette(Palette),
    Confirm(Confirm),
    PickPipeline(Picker<PipelineInfo>),
    PickBaseline {
        stage: String,
        picker: Picker<RunSummary>,
    },
    /// Quitting would interrupt runs in flight.
    ConfirmQuit {
        running: u64,
    },
}

/// What a key in a popup leads to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Keep,
    Close,
    Confirmed {
        control: Command,
        reason: String,
    },
    Pipeline(String),
    Baseline(RunId),
    Command(String),
    /// The palette's text changed: recompute its candidates.
    PaletteEdited,
    Quit,
}

pub fn text_input(placeholder: &str) -> TextArea<'static> {
    let mut t = TextArea::default();
    t.set_placeholder_text(placeholder.to_string());
    t.set_cursor_line_style(ratatui::style::Style::default());
    t
}

pub fn confirm(title: String, body: Vec<String>, control: Command) -> Popup {
    Popup::Confirm(Confirm {
        title,
        body,
        reason: text_input("why? (recorded with the action)"),
        control,
        weight: None,
        needs_reason: false,
    })
}

/// A confirmation that also picks a canary weight, starting at `weight` percent.
pub fn confirm_weight(title: String, body: Vec<String>, control: Command, weight: u32) -> Popup {
    let mut p = confirm(title, body, control);
    if let Popup::Confirm(c) = &mut p {
        c.weight = Some(weight.min(100));
    }
    p
}

pub fn palette() -> Popup {
    Popup::Palette(Palette {
        input: text_input("runs, run NAME, canary, dlq, events, theme NAME, quit"),
        selected: 0,
        candidates: Vec::new(),
    })
}

fn pick_motion<T>(p: &mut Picker<T>, key: &KeyEvent) -> bool {
    let m = match key.code {
        KeyCode::Up | KeyCode::Char('k') => Motion::Up,
        KeyCode::Down | KeyCode::Char('j') => Motion::Down,
        KeyCode::PageUp => Motion::PageUp,
        KeyCode::PageDown => Motion::PageDown,
        KeyCode::Home => Motion::Top,
        KeyCode::End => Motion::Bottom,
        _ => return false,
    };
    p.cursor.apply(m, p.items.len(), 10);
    true
}

impl Popup {
    pub fn on_key(&mut self, key: KeyEvent) -> Outcome {
        match self {
            Popup::Help { scroll } => match key.code {
                KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q' | '?') => Outcome::Close,
                KeyCode::Down | KeyCode::Char('j') => {
                    *scroll += 1;
                    Outcome::Keep
                }
                KeyCode::Up | KeyCode::Char('k') => {
                    *scroll = scroll.saturating_sub(1);
                    Outcome::Keep
                }
                _ => Outcome::Keep,
            },
            Popup::Confirm(c) => match key.code {
                KeyCode::Esc => Outcome::Close,
                KeyCode::Up | KeyCode::Down if c.weight.is_some() => {
                    let w = c.weight.unwrap_or(0);
                    c.weight = Some(if key.code == KeyCode::Up {
                        (w + 5).min(100)
                    } else {
                        w.saturating_sub(5)
                    });
                    Outcome::Keep
                }
                KeyCode::Enter => {
                    let reason = c.reason.lines().join(" ").trim().to_string();
                    // The reason is recorded with the action: an empty one is refused here,
                    // as on the command line.
                    if reason.is_empty() {
                        c.needs_reason = true;
                        return Outcome::Keep;
                    }
                    let mut control = c.control.clone();
                    if let (Some(w), Command::Canary { action, .. }) = (c.weight, &mut control) {
                        *action = crate::model::CanaryAction::SetWeight(w);
                    }
                    Outcome::Confirmed { control, reason }
                }
                _ => {
                    c.reason.input(key);
                    c.needs_reason = false;
                    Outcome::Keep
                }
            },
            Popup::Palette(p) => match key.code {
                KeyCode::Esc => Outcome::Close,
                KeyCode::Up => {
                    p.selected = p.selected.saturating_sub(1);
                    Outcome::Keep
                }
                KeyCode::Down => {
                    p.selected = (p.selected + 1).min(p.candidates.len().saturating_sub(1));
                    Outcome::Keep
                }
                KeyCode::Tab => {
                    complete(p);
                    Outcome::PaletteEdited
                }
                KeyCode::Enter => {
                    let typed = p.input.lines().join(" ").trim().to_string();
                    // A half-typed command takes the highlighted completion.
                    let exact = COMMANDS
                        .iter()
                        .any(|(c, _)| typed.split_whitespace().next() == Some(*c));
                    if (!exact || typed.ends_with(' ')) && !p.candidates.is_empty() {
                        complete(p);
                    }
                    Outcome::Command(p.input.lines().join(" ").trim().to_string())
                }
                _ => {
                    p.input.input(key);
                    p.selected = 0;
                    Outcome::PaletteEdited
                }
            },
            Popup::ConfirmQuit { .. } => match key.code {
                KeyCode::Enter | KeyCode::Char('y' | 'q') => Outcome::Quit,
                KeyCode::Esc | KeyCode::Char('n') => Outcome::Close,
                _ => Outcome::Keep,
            },
            Popup::PickPipeline(p) => match key.code {
                KeyCode::Esc => Outcome::Close,
                KeyCode::Enter => p
                    .items
                    .get(p.cursor.selected)
                    .map_or(Outcome::Close, |i| Outcome::Pipeline(i.name.clone())),
                _ => {
                    pick_motion(p, &key);
                    Outcome::Keep
                }
            },
            Popup::PickBaseline { picker, .. } => match key.code {
                KeyCode::Esc => Outcome::Close,
                KeyCode::Enter => picker
                    .items
                    .get(picker.cursor.selected)
                    .map_or(Outcome::Close, |r| Outcome::Baseline(r.id)),
                _ => {
                    pick_motion(picker, &key);
                    Outcome::Keep
                }
            },
        }
    }
}

/// Replaces the word being typed with the highlighted candidate.
fn complete(p: &mut Palette) {
    let Some((word, _)) = p.candidates.get(p.selected).cloned() else {
        return;
    };
    let typed = p.input.lines().join(" ");
    let mut words: Vec<&str> = typed.split_whitespace().collect();
    if !typed.ends_with(' ') {
        words.pop();
    }
    words.push(&word);
    let text = format!("{} ", words.join(" "));
    p.input = text_input("");
    p.input.insert_str(text);
    p.selected = 0;
}

/// What can follow the typed text: command names, then pipeline or theme names.
pub fn candidates(typed: &str, pipelines: &[String], themes: &[String]) -> Vec<(String, String)> {
    let words: Vec<&str> = typed.split_whitespace().collect();
    let completing_first = words.len() <= 1 && !typed.ends_with(' ');
    if completing_first {
        let prefix = words.first().copied().unwrap_or(""); // An exact match comes first, so Tab on `run` keeps `run` rather than picking `runs`.
        let mut found: Vec<(String, String)> = COMMANDS
            .iter()
            .filter(|(c, _)| c.starts_with(prefix))
            .map(|(c, d)| ((*c).to_string(), (*d).to_string()))
            .collect();
        found.sort_by_key(|(c, _)| c != prefix);
        return found;
    }
    let prefix = if typed.ends_with(' ') {
        ""
    } else {
        words.last().copied().unwrap_or("")
    };
    let pool: &[String] = match words.first().copied() {
        Some("run" | "runs") => pipelines,
        Some("theme") => themes,
        _ => &[],
    };
    pool.iter()
        .filter(|n| n.starts_with(prefix))
        .map(|n| (n.clone(), String::new()))
        .collect()
}

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
    let block = Block::bordered()
        .title(Span::styled(format!(" {title} "), t.style("ui.title")))
        .border_style(t.style("ui.border.focused"))
        .style(t.style("ui.popup"));
    let inner = block.inner(area);
    f.render_widget(Clear, area);
    f.render_widget(block, area);
    inner
}

/// Help lines: each action of the focused pane with its keys, then the fixed keys.
pub fn help_lines(
    bindings: &[(Vec<super::keymap::Key>, Action)],
    pane: &str,
) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    for a in Action::ALL {
        let keys: Vec<String> = bindings
            .iter()
            .filter(|(_, b)| b == a)
            .map(|(k, _)| show_seq(k))
            .collect();
        if !keys.is_empty() {
            rows.push((keys.join(", "), a.doc().to_string()));
        }
    }
    rows.push((String::new(), String::new()));
    rows.push(("enter / esc".into(), "In dialogs: confirm / cancel".into()));
    rows.push(("tab".into(), "In the command palette: complete".into()));
    rows.insert(0, (format!("{pane} pane"), String::new()));
    rows
}

pub fn render(
    f: &mut Frame,
    screen: Rect,
    popup: &Popup,
    help: &[(String, String)],
    ctx: &Ctx<'_>,
) {
    let t = ctx.theme;
    match popup {
        Popup::Help { scroll } => {
            let room = screen.height.saturating_sub(2);
            let h = (help.len() as u16 + 2).min(room);
            let area = centered(screen, screen.width.saturating_sub(2).min(100), h);
            let visible = usize::from(h.saturating_sub(2));
            let scroll = (*scroll).min(help.len().saturating_sub(visible));
            let more = scroll + visible < help.len();
            let title = if more || scroll > 0 {
                "Keys (j/k scroll, ? or Esc closes)"
            } else {
                "Keys (? or Esc closes)"
            };
            let inner = frame(f, area, title, ctx);
            let key_w = help
                .iter()
                .map(|(k, _)| k.chars().count())
                .max()
                .unwrap_or(8)
                .min(24);
            let doc_w = usize::from(inner.width).saturating_sub(key_w + 2);
            let mut lines: Vec<Line> = help
                .iter()
                .skip(scroll)
                .take(visible)
                .map(|(k, d)| {
                    if d.is_empty() {
                        Line::styled(k.clone(), t.style("ui.header"))
                    } else {
                        Line::from(vec![
                            Span::styled(format!("{:<key_w$}  ", fit(k, key_w)), t.style("ui.key")),
                            Span::styled(fit(d, doc_w), t.style("ui.text")),
                        ])
                    }
                })
                .collect();
            if more && let Some(last) = lines.last_mut() {
                *last = Line::styled(
                    format!("↓ {} more (j)", help.len() - scroll - visible + 1),
                    t.style("ui.dim"),
                );
            }
            f.render_widget(Paragraph::new(lines), inner);
        }
        Popup::Palette(p) => {
            let h = (p.candidates.len() as u16).min(8) + 3;
            let area = Rect {
                y: screen.y + 1,
                ..centered(screen, 70, h)
            };
            let inner = frame(f, area, "Command", ctx);
            let [input, list] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
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
        Popup::Confirm(c) => {
            let mut body_lines = c.body.clone();
            if let Some(w) = c.weight {
                body_lines.push(format!("New weight: {w}%   (↑ ↓ change it by 5)"));
            }
            let mut c = Confirm {
                body: body_lines,
                ..c.clone()
            };
            // The placeholder takes the theme's dim style, not the text area's own grey.
            c.reason.set_placeholder_style(t.style("ui.dim"));
            let c = &c;
            let h = c.body.len() as u16 + 7;
            let area = centered(screen, 72, h);
            let inner = frame(f, area, &c.title, ctx);
            let [body, label, reason, hint] = Layout::vertical([
                Constraint::Length(c.body.len() as u16 + 1),
                Constraint::Length(1),
                Constraint::Length(1),
                Constraint::Length(2),
            ])
            .areas(inner);
            let text: Vec<Line> = c
                .body
                .iter()
                .map(|l| Line::styled(l.clone(), t.style("ui.text")))
                .collect();
            f.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), body);
            let label_line = if c.needs_reason {
                Line::from(vec![
                    Span::styled("Reason: ", t.style("ui.header")),
                    Span::styled(
                        "type why first; it is recorded with the action",
                        t.style("ui.error"),
                    ),
                ])
            } else {
                Line::styled("Reason:", t.style("ui.header"))
            };
            f.render_widget(label_line, label);
            f.render_widget(&c.reason, reason);
            f.render_widget(
                Paragraph::new(Line::from(vec![
                    Span::styled("Enter", t.style("ui.key")),
                    Span::styled(" confirm   ", t.style("ui.dim")),
                    Span::styled("Esc", t.style("ui.key")),
                    Span::styled(" cancel", t.style("ui.dim")),
                ])),
                Rect {
                    y: hint.y + 1,
                    height: 1,
                    ..hint
                },
            );
        }
        Popup::ConfirmQuit { running } => {
            let area = centered(screen, 64, 7);
            let inner = frame(f, area, "Quit opsdeck?", ctx);
            let plural = if *running == 1 { "run is" } else { "runs are" };
            let lines = vec![
                Line::styled(
                    format!("{running} {plural} in flight on this host."),
                    t.style("ui.text"),
                ),
                Line::styled(
                    "Quitting interrupts them; they resume when opsdeck next hosts",
                    t.style("ui.text"),
                ),
                Line::styled(
                    "this workspace (stages in flight run again).",
                    t.style("ui.text"),
                ),
                Line::from(vec![
                    Span::styled("Enter", t.style("ui.key")),
                    Span::styled(" quit   ", t.style("ui.dim")),
                    Span::styled("Esc", t.style("ui.key")),
                    Span::styled(" stay", t.style("ui.dim")),
                ]),
            ];
            f.render_widget(Paragraph::new(lines), inner);
        }
        Popup::PickPipeline(p) => {
            let h = (p.items.len() as u16).clamp(1, 12) + 2;
            let area = centered(screen, 70, h);
            let inner = frame(f, area, "Start a run (Enter starts, Esc cancels)", ctx);
            if p.items.is_empty() {
                f.render_widget(
                    Span::styled("The workspace has no valid pipelines.", t.style("ui.dim")),
                    inner,
                );
                return;
            }
            let lines: Vec<Line> = p
                .items
                .iter()
                .enumerate()
                .skip(p.cursor.offset)
                .take(usize::from(inner.height))
                .map(|(i, pi)| {
                    let style = if i == p.cursor.selected {
                        t.style("ui.selection")
                    } else {
                        t.style("ui.text")
                    };
                    let about = pi.description.clone().unwrap_or_default();
                    Line::from(vec![
                        Span::styled(format!("{:<20}", fit(&pi.name, 20)), style),
                        Span::styled(fit(&about, 46), t.style("ui.dim")),
                    ])
                })
                .collect();
            f.render_widget(Paragraph::new(lines), inner);
        }
        Popup::PickBaseline { stage, picker } => {
            let h = (picker.items.len() as u16).clamp(1, 12) + 2;
            let area = centered(screen, 60, h);
            let inner = frame(
                f,
                area,
                &format!("Baseline for `{stage}` (Enter picks)"),
                ctx,
            );
            if picker.items.is_empty() {
                f.render_widget(
                    Span::styled("No earlier runs of this pipeline.", t.style("ui.dim")),
                    inner,
                );
                return;
            }
            let lines: Vec<Line> = picker
                .items
                .iter()
                .enumerate()
                .skip(picker.cursor.offset)
                .take(usize::from(inner.height))
                .map(|(i, r)| {
                    let style = if i == picker.cursor.selected {
                        t.style("ui.selection")
                    } else {
                        t.style("ui.text")
                    };
                    Line::from(vec![
                        Span::styled(format!("run {:<8}", r.id), style),
                        status_span(t, run_status(r.status), r.status.as_str()),
                        Span::styled(
                            format!(
                                "  {}",
                                clock_time(r.started_at.unwrap_or(r.created_at), ctx.now)
                            ),
                            t.style("ui.dim"),
                        ),
                    ])
                })
                .collect();
            f.render_widget(Paragraph::new(lines), inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_knows_commands_then_names() {
        let pipes = vec!["checkout-etl".to_string(), "daily-report".to_string()];
        let themes = vec!["dark".to_string(), "light".to_string()];
        let names = |v: Vec<(String, String)>| v.into_iter().map(|(c, _)| c).collect::<Vec<_>>();
        assert_eq!(names(candidates("ru", &pipes, &themes)), ["runs", "run"]);
        assert_eq!(
            names(candidates("run", &pipes, &themes)),
            ["run", "runs"],
            "an exact match first"
        );
        assert_eq!(
            names(candidates("run ", &pipes, &themes)),
            ["checkout-etl", "daily-report"]
        );
        assert_eq!(
            names(candidates("run d", &pipes, &themes)),
            ["daily-report"]
        );
        assert_eq!(names(candidates("theme l", &pipes, &themes)), ["light"]);
        assert!(candidates("quit x", &pipes, &themes).is_empty());
    }
}
