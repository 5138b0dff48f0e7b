//! Plain-text tables and formatting shared by the subcommands.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::CliError;
use crate::model::{Event, EventKind, RunStatus, RunSummary, StageStatus, Timestamp, duration};

pub fn run_symbol(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Pending => "…",
        RunStatus::Running => "▶",
        RunStatus::Succeeded => "✓",
        RunStatus::Failed => "✗",
        RunStatus::Cancelled => "⊘",
        RunStatus::Interrupted => "⚠",
    }
}

pub fn stage_symbol(s: StageStatus) -> &'static str {
    match s {
        StageStatus::Pending => "…",
        StageStatus::Running => "▶",
        StageStatus::Retrying => "↻",
        StageStatus::Succeeded => "✓",
        StageStatus::Failed => "✗",
        StageStatus::Skipped => "-",
        StageStatus::Cancelled => "⊘",
        StageStatus::Interrupted => "⚠",
    }
}

/// `2026-11-23 17:57:03` (UTC), compact for tables.
pub fn when(t: Option<Timestamp>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| t.datetime().format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

pub fn took(ms: Option<i64>) -> String {
    ms.map_or_else(
        || "-".into(),
        |ms| duration::format(Duration::from_millis(ms.max(0) as u64)),
    )
}

/// Shortens text to `max` characters with an ellipsis, on one line.
pub fn short(text: &str, max: usize) -> String {
    cut(
        text,
        max,
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
    )
}

/// `text` on one line, cut to `max` characters with an ellipsis only on a terminal: piped
/// into a file or `grep`, a table cell keeps every word.
pub fn cut(text: &str, max: usize, terminal: bool) -> String {
    let one_line = text.replace('\n', " ");
    if !terminal || one_line.chars().count() <= max {
        one_line
    } else {
        let mut s: String = one_line.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// A left-aligned text table; the last column is not padded.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: Vec<&'static str>) -> Self {
        Table {
            headers,
            rows: Vec::new(),
        }
    }

    /// Adds a row; control characters in a cell (text from outside: a reason, a name) are
    /// shown as `\x1b` rather than sent to the terminal, where they could move the cursor
    /// or repaint the screen.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| crate::model::printable(&c))
                .collect(),
        );
    }

    pub fn render(&self) -> String {
        let cols = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            let mut text = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    text.push_str(c);
                } else {
                    let pad = widths[i].saturating_sub(c.chars().count());
                    let _ = write!(text, "{c}{}  ", " ".repeat(pad));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(
            &mut out,
            &self
                .headers
                .iter()
                .map(|h| (*h).to_string())
                .collect::<Vec<_>>(),
        );
        for r in &self.rows {
            line(&mut out, r);
        }
        out
    }
}

pub fn runs_table(runs: &[RunSummary]) -> Table {
    let mut t = Table::new(vec![
        "ID",
        "PIPELINE",
        "STATUS",
        "TRIGGER",
        "STARTED (UTC)",
        "DURATION",
        "STAGES",
    ]);
    for r in runs {
        t.row(vec![
            r.id.to_string(),
            r.pipeline.clone(),
            format!("{} {}", run_symbol(r.status), r.status),
            r.trigger.as_str().to_string(),
            when(r.started_at.or(Some(r.created_at))),
            took(r.duration_ms),
            stages_cell(r),
        ]);
    }
    t
}

/// Writes to stdout. A closed pipe is reported as [`CliError::closed_output`] so the command
/// stops quietly, the way `git log | head` does.
pub fn emit(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(CliError::closed_output()),
        Err(e) => Err(CliError::failed(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

/// `4/5` stages succeeded, with failures called out: `2/5 ✗1`.
pub fn stages_cell(r: &RunSummary) -> String {
    if r.stages_failed > 0 {
        format!(
            "{}/{} ✗{}",
            r.stages_succeeded, r.stages_total, r.stages_failed
        )
    } else {
        format!("{}/{}", r.stages_succeeded, r.stages_total)
    }
}

pub fn print_json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::failed(format!("could not format JSON: {e}")))?;
    emit(&format!(
        "{text}
"
    ))
}

/// One human line for an event in the log.
pub fn event_line(e: &Event) -> String {
    let run = e.run_id.map(|r| format!(" run {r}")).unwrap_or_default();
    let stage = e
        .stage
        .as_ref()
        .map(|s| format!(" {s}"))
        .unwrap_or_default();
    format!(
        "#{:<6} {}  {:<20}{run}{stage}  {}",
        e.seq,
        e.at,
        e.kind.as_str(),
        e.summary()
    )
}

fn err_text(data: &serde_json::Value) -> String {
    crate::model::error_text(&data["error"]).unwrap_or_else(|| "error".into())
}

/// A progress line for a foreground run, or `None` for events not worth a line.
pub fn progress_line(e: &Event) -> Option<String> {
    let stage = e.stage.as_deref().unwrap_or("");
    let d = &e.data;
    Some(match e.kind {
        EventKind::StageFinished => match d["status"].as_str() {
            Some("succeeded") => format!("  ✓ {stage} ({})", took(d["duration_ms"].as_i64())),
            Some(s @ ("cancelled" | "interrupted")) => format!("  ⊘ {stage}: {s}"),
            _ => return None,
        },
        EventKind::StageRetrying => format!(
            "  ↻ {stage}: attempt {} failed ({}); retrying in {}",
            d["attempt"],
            err_text(d),
            took(d["delay_ms"].as_i64())
        ),
        EventKind::DlqAdded => format!(
            "  ✗ {stage}: failed after {} attempt(s) ({}); parked as dead-letter entry {}",
            d["attempts"],
            err_text(d),
            d["dlq_id"]
        ),
        EventKind::StageSkipped => format!(
            "  - {stage}: skipped because `{}` did not succeed",
            d["because"].as_str().unwrap_or("?")
        ),
        EventKind::RunCancelRequested => {
            format!("  cancelling: {}", d["reason"].as_str().unwrap_or(""))
        }
        _ => return None,
    })
}

/// How many of its last stderr lines a failed stage shows in text output.
const STDERR_LINES: usize = 5;

/// The last lines a stage's process wrote to stderr, from its last attempt that wrote any:
/// (attempt, lines). An exit status says that a stage failed; these usually say why.
pub fn stderr_tail(stage: &crate::model::StageRecord) -> Option<(u32, Vec<String>)> {
    let a = stage
        .attempts
        .iter()
        .rev()
        .find(|a| a.stderr.as_deref().is_some_and(|s| !s.trim().is_empty()))?;
    let text = a.stderr.as_deref()?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = lines.len().saturating_sub(STDERR_LINES);
    Some((
        a.n,
        lines[from..]
            .iter()
            .map(|l| short(&crate::model::printable(l), 200))
            .collect(),
    ))
}

/// The stderr tail of `stage` under a heading, or nothing when it wrote none.
pub fn stderr_block(stage: &crate::model::StageRecord) -> String {
    let Some((n, lines)) = stderr_tail(stage) else {
        return String::new();
    };
    let mut out = format!(
        "stderr of `{}`, attempt {n} (last {} line{}):",
        stage.id,
        lines.len(),
        if lines.len() == 1 { "" } else { "s" }
    );
    for l in lines {
        let _ = write!(out, "\n  {l}");
    }
    out
}

/// The stderr tails of every failed stage of `run`, each after a blank line.
pub fn failed_stages_stderr(run: &crate::model::Run) -> String {
    run.stages
        .iter()
        .filter(|s| s.status == StageStatus::Failed)
        .map(stderr_block)
        .filter(|b| !b.is_empty())
        .map(|b| format!("\n{b}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_by_characters() {
        let mut t = Table::new(vec!["A", "STATUS", "X"]);
        t.row(vec!["1".into(), "✓ ok".into(), "end".into()]);
        t.row(vec!["22".into(), "✗ failed".into(), "e".into()]);
        assert_eq!(
            t.render(),
            "A   STATUS    X\n1   ✓ ok      end\n22  ✗ failed  e\n"
        );
        assert_eq!(cut("abcdef", 4, true), "abc…");
        assert_eq!(
            cut("abc\ndef", 4, false),
            "abc def",
            "piped, nothing is cut"
        );
    }
}
