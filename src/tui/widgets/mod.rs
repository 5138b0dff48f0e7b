//! Small pieces of drawing shared by the panes.

pub mod timeline;

use chrono::{DateTime, Utc};
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Row;

use super::theme::Theme;
use crate::model::{AttemptStatus, RunStatus, StageStatus, Timestamp, duration};

/// One symbol per meaning, the same in every pane; the `?` help lists them ([`LEGEND`]).
pub mod glyph {
    pub const PENDING: &str = "○";
    pub const RUNNING: &str = "▶";
    pub const RETRYING: &str = "↻";
    pub const OK: &str = "✓";
    pub const FAILED: &str = "✗";
    pub const SKIPPED: &str = "↷";
    pub const CANCELLED: &str = "⊘";
    pub const INTERRUPTED: &str = "↯";
    pub const PAUSED: &str = "⏸";
    pub const ROLLED_BACK: &str = "↩";
    pub const INCONCLUSIVE: &str = "?";
    pub const CUT: &str = "…";
    pub const ALERT: &str = "⚠";
}

/// What each symbol means, for the help.
pub const LEGEND: &[(&str, &str)] = &[
    (glyph::PENDING, "pending: waiting to start"),
    (glyph::RUNNING, "running, or a rollout progressing"),
    (glyph::RETRYING, "retrying after a failed attempt"),
    (glyph::OK, "succeeded, a check passed, a rollout promoted"),
    (glyph::FAILED, "failed, or a check failed"),
    (glyph::SKIPPED, "skipped: a stage it needs did not succeed"),
    (glyph::CANCELLED, "cancelled, or a rollout aborted"),
    (
        glyph::INTERRUPTED,
        "interrupted: its host stopped; it can be resumed",
    ),
    (glyph::PAUSED, "a rollout paused"),
    (glyph::ROLLED_BACK, "a rollout rolled back"),
    (glyph::INCONCLUSIVE, "a check without enough data yet"),
    (
        glyph::CUT,
        "text cut here: w wraps, Enter opens it, m shows messages",
    ),
    (glyph::ALERT, "alerts: failures and rollbacks to look at"),
];

pub fn run_status(s: RunStatus) -> (&'static str, &'static str) {
    match s {
        RunStatus::Pending => (glyph::PENDING, "status.pending"),
        RunStatus::Running => (glyph::RUNNING, "status.running"),
        RunStatus::Succeeded => (glyph::OK, "status.ok"),
        RunStatus::Failed => (glyph::FAILED, "status.failed"),
        RunStatus::Cancelled => (glyph::CANCELLED, "status.cancelled"),
        RunStatus::Interrupted => (glyph::INTERRUPTED, "status.interrupted"),
    }
}

pub fn stage_status(s: StageStatus) -> (&'static str, &'static str) {
    match s {
        StageStatus::Pending => (glyph::PENDING, "status.pending"),
        StageStatus::Running => (glyph::RUNNING, "status.running"),
        StageStatus::Retrying => (glyph::RETRYING, "status.retrying"),
        StageStatus::Succeeded => (glyph::OK, "status.ok"),
        StageStatus::Failed => (glyph::FAILED, "status.failed"),
        StageStatus::Skipped => (glyph::SKIPPED, "status.skipped"),
        StageStatus::Cancelled => (glyph::CANCELLED, "status.cancelled"),
        StageStatus::Interrupted => (glyph::INTERRUPTED, "status.interrupted"),
    }
}

pub fn attempt_status(s: AttemptStatus) -> (&'static str, &'static str) {
    match s {
        AttemptStatus::Running => (glyph::RUNNING, "status.running"),
        AttemptStatus::Succeeded => (glyph::OK, "status.ok"),
        AttemptStatus::Failed => (glyph::FAILED, "status.failed"),
        AttemptStatus::Cancelled => (glyph::CANCELLED, "status.cancelled"),
        AttemptStatus::Interrupted => (glyph::INTERRUPTED, "status.interrupted"),
    }
}

/// `✓ succeeded`, styled by status.
pub fn status_span(
    theme: &Theme,
    (symbol, slot): (&'static str, &'static str),
    name: &str,
) -> Span<'static> {
    Span::styled(format!("{symbol} {name}"), theme.style(slot))
}

pub fn style(theme: &Theme, slot: &str) -> Style {
    theme.style(slot)
}

/// `18:24:15` for today (UTC), `11-22 18:24` before.
pub fn clock_time(t: Timestamp, now: DateTime<Utc>) -> String {
    let dt = t.datetime();
    if dt.date_naive() == now.date_naive() {
        dt.format("%H:%M:%S").to_string()
    } else {
        dt.format("%m-%d %H:%M").to_string()
    }
}

/// A duration, or the time since `start` while still going.
pub fn elapsed(start: Option<Timestamp>, done_ms: Option<i64>, now: DateTime<Utc>) -> String {
    match (done_ms, start) {
        (Some(ms), _) => duration::format(std::time::Duration::from_millis(ms.max(0) as u64)),
        (None, Some(s)) => {
            let ms = (now.timestamp_millis() - s.millis()).max(0) as u64;
            duration::format(std::time::Duration::from_millis(ms))
        }
        (None, None) => "-".into(),
    }
}

/// Cuts text to `width` characters, marking the cut with `…`.
/// `text` in rows of at most `width` characters, broken after a space where there is one
/// (else mid-word), at most `max_rows` of them; the last row ends in an ellipsis when some of
/// the text did not fit. An empty text is one empty row.
pub fn wrap_rows(text: &str, width: usize, max_rows: usize) -> Vec<String> {
    let mut chars: &[char] = &text.chars().collect::<Vec<char>>();
    if chars.is_empty() || width == 0 || max_rows == 0 {
        return vec![String::new()];
    }
    let mut rows = Vec::new();
    while !chars.is_empty() {
        if rows.len() == max_rows {
            if let Some(last) = rows.last_mut() {
                *last = fit(&format!("{last}…"), width);
            }
            break;
        }
        let take = if chars.len() <= width {
            chars.len()
        } else {
            // The last space that still fits ends the row (kept on it, so nothing is lost).
            chars[..width]
                .iter()
                .rposition(|c| *c == ' ')
                .filter(|&i| i > 0)
                .map_or(width, |i| i + 1)
        };
        rows.push(chars[..take].iter().collect::<String>());
        chars = &chars[take..];
    }
    rows
}

/// The widths a `Table` gives columns of `constraints` across `width` (its own layout: one
/// column of spacing, packed to the start), so cells can be cut with a visible `…` before the
/// table would cut them without one.
pub fn column_widths(width: u16, constraints: &[Constraint]) -> Vec<usize> {
    Layout::horizontal(constraints.iter().copied())
        .flex(Flex::Start)
        .spacing(1)
        .split(Rect::new(0, 0, width, 1))
        .iter()
        .map(|r| usize::from(r.width))
        .collect()
}

/// `line` cut to `width` characters, keeping its styles; when anything was cut its last
/// character is `…`.
pub fn fit_spans(line: Line<'_>, width: usize) -> Line<'static> {
    let total: usize = line.spans.iter().map(|s| s.content.chars().count()).sum();
    let style = line.style;
    let mut out: Vec<Span<'static>> = Vec::new();
    if total <= width {
        out.extend(
            line.spans
                .into_iter()
                .map(|s| Span::styled(s.content.into_owned(), s.style)),
        );
        return Line::from(out).style(style);
    }
    let mut room = width.saturating_sub(1);
    let mut last_style = Style::default();
    for s in line.spans {
        if room == 0 {
            break;
        }
        let part: String = s.content.chars().take(room).collect();
        room -= part.chars().count();
        last_style = s.style;
        out.push(Span::styled(part, s.style));
    }
    if width > 0 {
        out.push(Span::styled("…", last_style));
    }
    Line::from(out).style(style)
}

/// A table row whose cells are cut to their columns' `widths` with a visible ellipsis.
pub fn fitted_row(cells: Vec<Line<'_>>, widths: &[usize]) -> Row<'static> {
    Row::new(
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| fit_spans(c, widths.get(i).copied().unwrap_or(usize::MAX)))
            .collect::<Vec<_>>(),
    )
}

pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Draws `rows` as a table with a dim header, the selected row highlighted and scrolled as
/// `cursor` says: the list every pane shows.
pub fn render_list(
    f: &mut ratatui::Frame,
    area: ratatui::layout::Rect,
    (rows, widths, header): (Vec<Row<'_>>, Vec<Constraint>, Vec<&str>),
    cursor: crate::tui::panes::Cursor,
    theme: &Theme,
) {
    let table = ratatui::widgets::Table::new(rows, widths)
        .header(Row::new(header).style(theme.style("ui.dim")))
        .row_highlight_style(theme.style("ui.selection"));
    let mut state = ratatui::widgets::TableState::default()
        .with_offset(cursor.offset)
        .with_selected(Some(cursor.selected));
    f.render_stateful_widget(table, area, &mut state);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(7), "7");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("ab", 4), "ab");
    }
}
