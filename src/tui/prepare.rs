//! Work done once, off the UI thread, so drawing stays cheap: stage I/O pretty-printed into
//! lines (a multi-megabyte output becomes a vector the view slices), and diffs laid out.

use serde_json::Value;

use crate::model::diff::{self, DiffLine, LineTag, PathChange};
use crate::model::{AttemptError, AttemptStatus, RunId, StageIo, StageStatus, Timestamp};

/// The four things shown for each attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Input,
    Output,
    Stderr,
    Error,
}

impl Section {
    pub const ALL: [Section; 4] = [
        Section::Input,
        Section::Output,
        Section::Stderr,
        Section::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Section::Input => "Input",
            Section::Output => "Output",
            Section::Stderr => "Stderr",
            Section::Error => "Error",
        }
    }

    pub fn index(self) -> usize {
        Section::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }

    #[must_use]
    pub fn step(self, forward: bool) -> Section {
        let n = Section::ALL.len();
        let i = self.index();
        Section::ALL[if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        }]
    }
}

/// One attempt, ready to show.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedAttempt {
    pub n: u32,
    pub status: AttemptStatus,
    pub started_at: Timestamp,
    pub duration_ms: Option<i64>,
    pub error: Option<AttemptError>,
    pub output: Option<Value>,
    pub output_truncated: bool,
    pub output_bytes: Option<u64>,
    /// Lines of each [`Section`], in [`Section::ALL`] order.
    pub sections: [Vec<String>; 4],
}

impl PreparedAttempt {
    pub fn lines(&self, s: Section) -> &[String] {
        &self.sections[s.index()]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PreparedIo {
    pub run_id: RunId,
    pub pipeline: String,
    pub stage: String,
    pub status: StageStatus,
    pub attempts: Vec<PreparedAttempt>,
}

fn lines_of(text: &str) -> Vec<String> {
    text.lines().map(|l| l.replace('\t', "    ")).collect()
}

pub fn prepare_io(io: StageIo) -> PreparedIo {
    let attempts = io
        .attempts
        .into_iter()
        .map(|a| {
            let input = lines_of(&diff::pretty(&a.input));
            let output = a
                .output
                .as_ref()
                .map(|v| lines_of(&diff::pretty(v)))
                .unwrap_or_default();
            let stderr = a.stderr.as_deref().map(lines_of).unwrap_or_default();
            let error = a
                .error
                .as_ref()
                .map(|e| vec![format!("{}: {}", e.code, e.message)])
                .unwrap_or_default();
            PreparedAttempt {
                n: a.n,
                status: a.status,
                started_at: a.started_at,
                duration_ms: a.duration_ms,
                error: a.error,
                output: a.output,
                output_truncated: a.output_truncated,
                output_bytes: a.output_bytes,
                sections: [input, output, stderr, error],
            }
        })
        .collect();
    PreparedIo {
        run_id: io.run_id,
        pipeline: io.pipeline,
        stage: io.stage,
        status: io.status,
        attempts,
    }
}

/// One row of a side-by-side diff: the baseline line on the left, the candidate on the right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitRow {
    pub left: Option<(usize, String, LineTag)>,
    pub right: Option<(usize, String, LineTag)>,
}

/// A stage output diff, laid out for both layouts.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffView {
    pub stage: String,
    pub baseline: RunId,
    /// How the baseline was chosen, for the title.
    pub baseline_why: String,
    pub candidate: RunId,
    pub candidate_attempt: u32,
    pub changes: Vec<PathChange>,
    pub unified: Vec<DiffLine>,
    pub split: Vec<SplitRow>,
}

fn split_rows(lines: &[DiffLine]) -> Vec<SplitRow> {
    let mut rows = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].tag == LineTag::Same {
            let l = &lines[i];
            rows.push(SplitRow {
                left: Some((l.old.unwrap_or(0), l.text.clone(), LineTag::Same)),
                right: Some((l.new.unwrap_or(0), l.text.clone(), LineTag::Same)),
            });
            i += 1;
            continue;
        }
        // A block of changes: removals on the left, additions on the right, side by side.
        let start = i;
        while i < lines.len() && lines[i].tag != LineTag::Same {
            i += 1;
        }
        let block = &lines[start..i];
        let removed: Vec<&DiffLine> = block.iter().filter(|l| l.tag == LineTag::Removed).collect();
        let added: Vec<&DiffLine> = block.iter().filter(|l| l.tag == LineTag::Added).collect();
        for k in 0..removed.len().max(added.len()) {
            rows.push(SplitRow {
                left: removed
                    .get(k)
                    .map(|l| (l.old.unwrap_or(0), l.text.clone(), LineTag::Removed)),
                right: added
                    .get(k)
                    .map(|l| (l.new.unwrap_or(0), l.text.clone(), LineTag::Added)),
            });
        }
    }
    rows
}

/// Compares a baseline output with a candidate output.
pub fn prepare_diff(
    stage: &str,
    baseline: (RunId, &str, Option<&Value>),
    candidate: (RunId, u32, Option<&Value>),
) -> DiffView {
    let null = Value::Null;
    let d = diff::diff(baseline.2.unwrap_or(&null), candidate.2.unwrap_or(&null));
    let split = split_rows(&d.lines);
    DiffView {
        stage: stage.to_string(),
        baseline: baseline.0,
        baseline_why: baseline.1.to_string(),
        candidate: candidate.0,
        candidate_attempt: candidate.1,
        changes: d.changes,
        unified: d.lines,
        split,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn side_by_side_pairs_removals_with_additions() {
        let v = prepare_diff(
            "s",
            (
                RunId(1),
                "previous successful run",
                Some(&json!({"a": 1, "b": 2})),
            ),
            (RunId(2), 1, Some(&json!({"a": 1, "b": 3}))),
        );
        assert_eq!(v.changes.len(), 1);
        let changed: Vec<&SplitRow> = v
            .split
            .iter()
            .filter(|r| r.left.as_ref().is_some_and(|l| l.2 == LineTag::Removed))
            .collect();
        assert_eq!(changed.len(), 1);
        assert_eq!(
            changed[0].left.as_ref().map(|l| l.1.trim()),
            Some("\"b\": 2")
        );
        assert_eq!(
            changed[0].right.as_ref().map(|l| l.1.trim()),
            Some("\"b\": 3")
        );
    }

    #[test]
    fn big_outputs_become_lines_once() {
        let rows: Vec<Value> = (0..20_000)
            .map(|i| json!({"i": i, "name": format!("row-{i}")}))
            .collect();
        let io = StageIo {
            run_id: RunId(1),
            pipeline: "p".into(),
            stage: "s".into(),
            status: StageStatus::Succeeded,
            attempts: vec![crate::model::Attempt {
                n: 1,
                status: AttemptStatus::Succeeded,
                started_at: Timestamp::from_millis(0),
                finished_at: None,
                duration_ms: Some(5),
                input: json!({}),
                output: Some(Value::Array(rows)),
                output_truncated: false,
                output_bytes: None,
                stderr: Some("line\twith tab\n".into()),
                error: None,
                assets: std::collections::BTreeMap::default(),
            }],
        };
        let p = prepare_io(io);
        assert!(p.attempts[0].lines(Section::Output).len() > 60_000);
        assert_eq!(p.attempts[0].lines(Section::Stderr), ["line    with tab"]);
    }
}
