//! Small pieces of drawing shared by the panes.

pub mod timeline;

use chrono::{DateTime, Utc};
use ratatui::style::Style;
use ratatui::text::Span;

use super::theme::Theme;
use crate::model::{AttemptStatus, RunStatus, StageStatus, Timestamp, duration};

pub fn run_status(s: RunStatus) -> (&'static str, &'static str) {
    match s {
        RunStatus::Pending => ("…", "status.pending"),
        RunStatus::Running => ("▶", "status.running"),
        RunStatus::Succeeded => ("✓", "status.ok"),
        RunStatus::Failed => ("✗", "status.failed"),
        RunStatus::Cancelled => ("⊘", "status.cancelled"),
        RunStatus::Interrupted => ("⚠", "status.interrupted"),
    }
}

pub fn stage_status(s: StageStatus) -> (&'static str, &'static str) {
    match s {
        StageStatus::Pending => ("…", "status.pending"),
        StageStatus::Running => ("▶", "status.running"),
        StageStatus::Retrying => ("↻", "status.retrying"),
        StageStatus::Succeeded => ("✓", "status.ok"),
        StageStatus::Failed => ("✗", "status.failed"),
        StageStatus::Skipped => ("-", "status.skipped"),
        StageStatus::Cancelled => ("⊘", "status.cancelled"),
        StageStatus::Interrupted => ("⚠", "status.interrupted"),
    }
}

pub fn attempt_status(s: AttemptStatus) -> (&'static str, &'static str) {
    match s {
        AttemptStatus::Running => ("▶", "status.running"),
        AttemptStatus::Succeeded => ("✓", "status.ok"),
        AttemptStatus::Failed => ("✗", "status.failed"),
        AttemptStatus::Cancelled => ("⊘", "status.cancelled"),
        AttemptStatus::Interrupted => ("⚠", "status.interrupted"),
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
