//! Two runs side by side, stage by stage: what each stage did in each, how its time moved,
//! whether its output changed and where, and a verdict per stage and overall. Pure, so the
//! CLI, the API and the dashboard compare the same way, embedded or remote.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::diff::{ChangeKind, diff};
use super::{Run, RunId, StageRecord, StageStatus};

use super::status::string_enum;

string_enum!(
    /// What became of a stage (or of the run as a whole) from base to candidate.
    StageVerdict, "verdict" {
        Same => "same",
        Changed => "changed",
        Regressed => "regressed",
        Improved => "improved",
        Added => "added",
        Removed => "removed",
    }
);

/// When a stage counts as slower: by more than both of these.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Slower {
    pub pct: f64,
    pub ms: i64,
}

impl Default for Slower {
    fn default() -> Self {
        Slower { pct: 20.0, ms: 50 }
    }
}

/// One path of a stage's output that differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputChange {
    pub path: String,
    pub kind: ChangeKind,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageComparison {
    pub id: String,
    /// In the base run, then the candidate (`null` where the stage is not in that run).
    pub status: [Option<StageStatus>; 2],
    /// Time spent over every attempt, in ms.
    pub duration_ms: [Option<i64>; 2],
    pub attempts: [usize; 2],
    pub delta_ms: Option<i64>,
    pub delta_pct: Option<f64>,
    /// Whether the last attempts' outputs are equal; `null` when it cannot be told (an output
    /// was cut at the store's limit, or the stage is missing from a run).
    pub output_equal: Option<bool>,
    pub verdict: StageVerdict,
    /// Why, in a few words (`slower by 120 ms (+35%)`, `output cut at the store's limit`).
    pub note: Option<String>,
    pub changes: Vec<OutputChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub base: RunId,
    pub candidate: RunId,
    pub pipeline: [String; 2],
    pub verdict: StageVerdict,
    pub stages: Vec<StageComparison>,
}

impl Comparison {
    pub fn regressed(&self) -> bool {
        self.verdict == StageVerdict::Regressed
    }
}

/// How good a stage's end is: a worse rank in the candidate is a regression.
fn rank(s: StageStatus) -> u8 {
    match s {
        StageStatus::Succeeded => 3,
        StageStatus::Skipped => 2,
        StageStatus::Pending
        | StageStatus::Running
        | StageStatus::Retrying
        | StageStatus::Cancelled
        | StageStatus::Interrupted => 1,
        StageStatus::Failed => 0,
    }
}

fn total_ms(s: &StageRecord) -> Option<i64> {
    let ds: Vec<i64> = s.attempts.iter().filter_map(|a| a.duration_ms).collect();
    (!ds.is_empty()).then(|| ds.iter().sum())
}

fn stage(
    id: &str,
    a: Option<&StageRecord>,
    b: Option<&StageRecord>,
    slower: Slower,
) -> StageComparison {
    let duration_ms = [a.and_then(total_ms), b.and_then(total_ms)];
    let delta_ms = match duration_ms {
        [Some(x), Some(y)] => Some(y - x),
        _ => None,
    };
    let delta_pct = match duration_ms {
        [Some(x), Some(y)] if x > 0 => Some((y - x) as f64 * 100.0 / x as f64),
        _ => None,
    };
    let mut c = StageComparison {
        id: id.to_string(),
        status: [a.map(|s| s.status), b.map(|s| s.status)],
        duration_ms,
        attempts: [
            a.map_or(0, |s| s.attempts.len()),
            b.map_or(0, |s| s.attempts.len()),
        ],
        delta_ms,
        delta_pct,
        output_equal: None,
        verdict: StageVerdict::Same,
        note: None,
        changes: Vec::new(),
    };
    let (Some(a), Some(b)) = (a, b) else {
        c.verdict = if a.is_none() {
            StageVerdict::Added
        } else {
            StageVerdict::Removed
        };
        return c;
    };
    let (la, lb) = (a.last_attempt(), b.last_attempt());
    let truncated =
        la.is_some_and(|x| x.output_truncated) || lb.is_some_and(|x| x.output_truncated);
    if truncated {
        c.note = Some("an output was cut at the store's limit: equality cannot be told".into());
    } else {
        let none = Value::Null;
        let oa = la.and_then(|x| x.output.as_ref()).unwrap_or(&none);
        let ob = lb.and_then(|x| x.output.as_ref()).unwrap_or(&none);
        let d = diff(oa, ob);
        c.output_equal = Some(d.is_same());
        c.changes = d
            .changes
            .into_iter()
            .map(|p| OutputChange {
                path: p.path,
                kind: p.kind,
                old: p.before,
                new: p.after,
            })
            .collect();
    }
    let slow = delta_ms.is_some_and(|d| d > slower.ms) && delta_pct.is_some_and(|p| p > slower.pct);
    let fast =
        delta_ms.is_some_and(|d| -d > slower.ms) && delta_pct.is_some_and(|p| -p > slower.pct);
    let (ra, rb) = (rank(a.status), rank(b.status));
    c.verdict = if rb < ra {
        c.note = Some(format!("{} before, {} now", a.status, b.status));
        StageVerdict::Regressed
    } else if slow {
        c.note = Some(format!(
            "slower by {} ms (+{:.0}%)",
            delta_ms.unwrap_or(0),
            delta_pct.unwrap_or(0.0)
        ));
        StageVerdict::Regressed
    } else if c.output_equal == Some(false) {
        StageVerdict::Changed
    } else if rb > ra || fast {
        StageVerdict::Improved
    } else {
        StageVerdict::Same
    };
    c
}

/// Every stage of either run, in the base run's order and then the candidate's new ones.
pub fn compare(base: &Run, candidate: &Run, slower: Slower) -> Comparison {
    let mut ids: Vec<&str> = base.stages.iter().map(|s| s.id.as_str()).collect();
    for s in &candidate.stages {
        if !ids.contains(&s.id.as_str()) {
            ids.push(&s.id);
        }
    }
    let stages: Vec<StageComparison> = ids
        .iter()
        .map(|id| stage(id, base.stage(id), candidate.stage(id), slower))
        .collect();
    let any = |v: StageVerdict| stages.iter().any(|s| s.verdict == v);
    let verdict = if any(StageVerdict::Regressed) {
        StageVerdict::Regressed
    } else if any(StageVerdict::Changed) || any(StageVerdict::Added) || any(StageVerdict::Removed) {
        StageVerdict::Changed
    } else if any(StageVerdict::Improved) {
        StageVerdict::Improved
    } else {
        StageVerdict::Same
    };
    Comparison {
        base: base.id,
        candidate: candidate.id,
        pipeline: [base.pipeline.clone(), candidate.pipeline.clone()],
        verdict,
        stages,
    }
}
