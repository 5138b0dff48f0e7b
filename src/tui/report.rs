//! Incident reports: what happened between two times, from the audit log and the event log
//! (rollbacks with their reasons and the analysis that decided them, requeues, failed runs),
//! with each canary's charts drawn as the dashboard draws them and the compare tables of runs
//! named. Markdown links PNG files written beside it; HTML embeds the charts as SVG.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::app::Config;
use super::headless::{self, Shot, Target};
use super::snapshot::Format;
use crate::client::Backend;
use crate::model::{AuditQuery, EventKind, MAX_AUDIT_LIMIT, RunId, Timestamp};

/// Events looked through for the timeline, at most (the newest ones).
pub const MAX_EVENTS: usize = 10_000;

/// What a report covers.
pub struct Scope {
    pub since: Timestamp,
    pub until: Timestamp,
    /// Canaries whose charts to draw (all of them when empty).
    pub canaries: Vec<String>,
    pub compare: Option<(RunId, RunId)>,
    pub format: ReportFormat,
    /// The stem of the files written beside a markdown report (`incident` for `incident.md`).
    pub stem: String,
    pub config: Config,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Markdown,
    Html,
}

impl ReportFormat {
    pub fn parse(s: &str) -> Result<ReportFormat, String> {
        match s.trim() {
            "md" | "markdown" => Ok(ReportFormat::Markdown),
            "html" => Ok(ReportFormat::Html),
            other => Err(format!(
                "unknown report format `{other}`; valid formats: md, html"
            )),
        }
    }
}

/// A report: the main document and the files that go beside it.
pub struct Report {
    pub document: Vec<u8>,
    pub beside: Vec<(String, Vec<u8>)>,
}

/// One line of the timeline.
struct Entry {
    at: Timestamp,
    what: String,
    who: String,
    why: String,
    /// The analysis numbers behind a canary decision, one line each.
    numbers: Vec<String>,
}

fn checks_of(analysis: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for c in analysis["checks"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or("check");
        let verdict = c["verdict"].as_str().unwrap_or("?");
        let summary = c["summary"].as_str().unwrap_or("");
        out.push(format!("{name}: {verdict}: {summary}"));
    }
    for t in analysis["triggers"].as_array().into_iter().flatten() {
        if t["firing"].as_bool() == Some(true) {
            let name = t["name"].as_str().unwrap_or("trigger");
            let summary = t["summary"].as_str().unwrap_or("");
            out.push(format!("trigger {name}: {summary}"));
        }
    }
    out
}

async fn timeline(b: &dyn Backend, scope: &Scope) -> Result<(Vec<Entry>, bool), String> {
    let within = |t: Timestamp| t >= scope.since && t <= scope.until;
    let audit = b
        .audit(AuditQuery {
            since: Some(scope.since),
            limit: MAX_AUDIT_LIMIT,
            ..AuditQuery::default()
        })
        .await
        .map_err(|e| e.message)?;
    let mut out: Vec<Entry> = audit
        .into_iter()
        .filter(|r| within(r.at) && r.action != "authenticate")
        .map(|r| {
            let via = r.via.map_or_else(String::new, |v| format!(" ({v})"));
            let numbers = if r.action.starts_with("canary.") {
                checks_of(&r.details["analysis"])
            } else {
                Vec::new()
            };
            let change = match (
                r.details["state_before"].as_str(),
                r.details["state_after"].as_str(),
            ) {
                (Some(a), Some(z)) => format!(": {a} → {z}"),
                _ => String::new(),
            };
            Entry {
                at: r.at,
                what: format!("{} {}{change} [{}]", r.action, r.target, r.outcome),
                who: format!("{}{via}", r.actor),
                why: r.reason,
                numbers,
            }
        })
        .collect();
    let events = b.recent_events(MAX_EVENTS).await.map_err(|e| e.message)?;
    let cut = events.len() >= MAX_EVENTS && events.first().is_some_and(|e| e.at > scope.since);
    for e in events.iter().filter(|e| within(e.at)) {
        let run = e.run_id.map_or_else(String::new, |r| format!("run {r} "));
        let what = match e.kind {
            EventKind::RunFinished if e.data["status"] == "failed" => {
                format!("{run}failed")
            }
            EventKind::DlqAdded => format!(
                "{run}stage {} parked in the dead-letter queue: {}",
                e.stage.as_deref().unwrap_or("?"),
                e.data["error"]["message"].as_str().unwrap_or("")
            ),
            EventKind::BreakerChanged => format!(
                "circuit breaker {}: {} → {}",
                e.data["target"].as_str().unwrap_or("?"),
                e.data["from"].as_str().unwrap_or("?"),
                e.data["to"].as_str().unwrap_or("?")
            ),
            _ => continue,
        };
        out.push(Entry {
            at: e.at,
            what,
            who: String::new(),
            why: String::new(),
            numbers: Vec::new(),
        });
    }
    out.sort_by_key(|e| e.at);
    Ok((out, cut))
}

fn md_cell(s: &str) -> String {
    crate::model::printable(s).replace('|', "\\|")
}

fn html_text(s: &str) -> String {
    crate::model::printable(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Builds the report from the backend.
pub async fn build(b: &dyn Backend, scope: Scope) -> Result<Report, String> {
    let html = scope.format == ReportFormat::Html;
    let (entries, cut) = timeline(b, &scope).await?;
    let fmt_t = |t: Timestamp| t.datetime().format("%Y-%m-%d %H:%M:%S").to_string();
    let mut doc = String::new();
    let mut beside = Vec::new();
    let title = format!(
        "Incident report: {} to {} UTC",
        fmt_t(scope.since),
        fmt_t(scope.until)
    );
    let o = b.overview().await.map_err(|e| e.message)?;
    let backend = if o.backend == "embedded" {
        format!("the workspace {}", o.workspace)
    } else {
        format!("{} (workspace {})", o.backend, o.workspace)
    };
    if html {
        let _ = write!(
            doc,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n</head>\n<body style=\"font-family:sans-serif;max-width:1100px;margin:2em auto\">\n<h1>{}</h1>\n<p>Written by opsdeck at {} UTC from {}.</p>\n<h2>Timeline</h2>\n",
            html_text(&title),
            html_text(&title),
            scope.now.format("%Y-%m-%d %H:%M:%S"),
            html_text(&backend)
        );
    } else {
        let _ = write!(
            doc,
            "# {title}\n\nWritten by opsdeck at {} UTC from {backend}.\n\n## Timeline\n\n",
            scope.now.format("%Y-%m-%d %H:%M:%S")
        );
    }
    if cut {
        let note = format!(
            "Only the newest {MAX_EVENTS} events were looked through; older events of the period are left out."
        );
        let _ = if html {
            writeln!(doc, "<p>{note}</p>")
        } else {
            writeln!(doc, "{note}\n")
        };
    }
    if entries.is_empty() {
        let _ = if html {
            writeln!(doc, "<p>Nothing was recorded in this period.</p>")
        } else {
            writeln!(doc, "Nothing was recorded in this period.\n")
        };
    } else if html {
        doc.push_str("<table border=\"1\" cellpadding=\"4\" style=\"border-collapse:collapse\">\n<tr><th>time (UTC)</th><th>what</th><th>who</th><th>why</th></tr>\n");
        for e in &entries {
            let mut numbers = String::new();
            for n in &e.numbers {
                let _ = write!(numbers, "<br><small>{}</small>", html_text(n));
            }
            let _ = writeln!(
                doc,
                "<tr><td>{}</td><td>{}{numbers}</td><td>{}</td><td>{}</td></tr>",
                fmt_t(e.at),
                html_text(&e.what),
                html_text(&e.who),
                html_text(&e.why)
            );
        }
        doc.push_str("</table>\n");
    } else {
        doc.push_str("| time (UTC) | what | who | why |\n| --- | --- | --- | --- |\n");
        for e in &entries {
            let mut numbers = String::new();
            for n in &e.numbers {
                let _ = write!(numbers, "<br>{}", md_cell(n));
            }
            let _ = writeln!(
                doc,
                "| {} | {}{numbers} | {} | {} |",
                fmt_t(e.at),
                md_cell(&e.what),
                md_cell(&e.who),
                md_cell(&e.why)
            );
        }
        doc.push('\n');
    }
    charts(b, &scope, &mut doc, &mut beside).await?;
    if let Some((base, cand)) = scope.compare {
        compare_table(b, (base, cand), html, &mut doc).await?;
    }
    if html {
        doc.push_str("</body>\n</html>\n");
    }
    Ok(Report {
        document: doc.into_bytes(),
        beside,
    })
}

/// Each canary's pane as the dashboard draws it: inline SVG in HTML, a PNG beside markdown.
async fn charts(
    b: &dyn Backend,
    scope: &Scope,
    doc: &mut String,
    beside: &mut Vec<(String, Vec<u8>)>,
) -> Result<(), String> {
    let html = scope.format == ReportFormat::Html;
    let names: Vec<String> = if scope.canaries.is_empty() {
        b.canaries()
            .await
            .map_err(|e| e.message)?
            .into_iter()
            .map(|c| c.name)
            .collect()
    } else {
        scope.canaries.clone()
    };
    for name in names {
        let shot = Shot {
            target: Target::Canary(Some(name.clone())),
            size: (120, 40),
            config: scope.config.clone(),
            now: scope.now,
        };
        let format = if html { Format::Svg } else { Format::Png };
        let bytes = headless::snapshot(b, shot, format, 1.0).await?;
        if html {
            let _ = writeln!(
                doc,
                "<h2>Canary {}</h2>\n{}",
                html_text(&name),
                String::from_utf8_lossy(&bytes)
            );
        } else {
            let file = format!("{}-canary-{name}.png", scope.stem);
            let _ = writeln!(doc, "## Canary {name}\n\n![canary {name}]({file})\n");
            beside.push((file, bytes));
        }
    }
    Ok(())
}

async fn compare_table(
    b: &dyn Backend,
    (base, cand): (RunId, RunId),
    html: bool,
    doc: &mut String,
) -> Result<(), String> {
    let c = b.compare(base, cand).await.map_err(|e| e.message)?;
    let ms = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| format!("{v} ms"));
    let rows: Vec<[String; 5]> = c
        .stages
        .iter()
        .map(|s| {
            [
                s.id.clone(),
                s.verdict.to_string(),
                format!("{} → {}", ms(s.duration_ms[0]), ms(s.duration_ms[1])),
                match (s.delta_ms, s.delta_pct) {
                    (Some(d), Some(p)) => format!("{d:+} ms ({p:+.0}%)"),
                    (Some(d), None) => format!("{d:+} ms"),
                    _ => "-".into(),
                },
                match s.output_equal {
                    Some(true) => "equal".into(),
                    Some(false) => format!("{} changed", s.changes.len()),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    let head = format!("Run {cand} against run {base}: {}", c.verdict);
    if html {
        let _ = writeln!(
            doc,
            "<h2>{}</h2>\n<table border=\"1\" cellpadding=\"4\" style=\"border-collapse:collapse\">\n<tr><th>stage</th><th>verdict</th><th>time</th><th>delta</th><th>output</th></tr>",
            html_text(&head)
        );
        for r in rows {
            let mut cells = String::new();
            for c in &r {
                let _ = write!(cells, "<td>{}</td>", html_text(c));
            }
            let _ = writeln!(doc, "<tr>{cells}</tr>");
        }
        doc.push_str("</table>\n");
    } else {
        let _ = writeln!(
            doc,
            "## {head}\n\n| stage | verdict | time | delta | output |\n| --- | --- | --- | --- | --- |"
        );
        for r in rows {
            let cells: Vec<String> = r.iter().map(|c| md_cell(c)).collect();
            let _ = writeln!(doc, "| {} |", cells.join(" | "));
        }
        doc.push('\n');
    }
    Ok(())
}
