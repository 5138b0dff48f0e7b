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

/// How a pipeline's runs are compared (`[pipeline.compare]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CompareSettings {
    pub slower: Slower,
    /// Per stage, the field that identifies an item of an array in its output: arrays are then
    /// matched by it rather than by position (an item inserted at the top is one addition, not
    /// a change to every item after it).
    pub keys: std::collections::BTreeMap<String, String>,
    /// Numbers closer than this are equal.
    pub tolerance: f64,
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
    /// For text outputs that differ: a line diff (at most [`MAX_LINES`] lines).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<super::diff::DiffLine>,
    /// Asset versions the stage used that differ between the runs.
    #[serde(default)]
    pub assets: Vec<AssetDelta>,
}

/// An asset whose version differs for a stage (`null` where the run did not use it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetDelta {
    pub name: String,
    pub base: Option<u32>,
    pub candidate: Option<u32>,
}

/// What one changed asset reached: the stages that used another version of it, and the
/// stages downstream of those whose outcome changed too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetImpact {
    pub name: String,
    pub base_version: Option<u32>,
    pub candidate_version: Option<u32>,
    pub stages: Vec<String>,
    pub downstream_changed: Vec<String>,
}

/// Lines of a text output's diff kept in a comparison.
pub const MAX_LINES: usize = 400;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub base: RunId,
    pub candidate: RunId,
    pub pipeline: [String; 2],
    pub verdict: StageVerdict,
    pub stages: Vec<StageComparison>,
    /// Each asset whose version differs, and what it reached.
    #[serde(default)]
    pub assets: Vec<AssetImpact>,
    /// Stages that are not `same` without a changed asset to explain it (neither using one
    /// nor downstream of one): the change came from somewhere else.
    #[serde(default)]
    pub unexplained: Vec<String>,
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

fn stage(
    id: &str,
    a: Option<&StageRecord>,
    b: Option<&StageRecord>,
    settings: &CompareSettings,
) -> StageComparison {
    let slower = settings.slower;
    let duration_ms = [
        a.and_then(StageRecord::total_ms),
        b.and_then(StageRecord::total_ms),
    ];
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
        lines: Vec::new(),
        assets: asset_deltas(a, b),
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
        let key = settings.keys.get(id).map(String::as_str);
        let (oa, ob) = (keyed(oa, key), keyed(ob, key));
        c.changes = diff(&oa, &ob)
            .changes
            .into_iter()
            .filter(|p| !within(p.before.as_ref(), p.after.as_ref(), settings.tolerance))
            .map(|p| OutputChange {
                path: p.path,
                kind: p.kind,
                old: p.before,
                new: p.after,
            })
            .collect();
        c.output_equal = Some(c.changes.is_empty());
        if let (Value::String(_), Value::String(_), false) = (&oa, &ob, c.changes.is_empty()) {
            c.lines = diff(&oa, &ob).lines;
            c.lines.truncate(MAX_LINES);
        }
    }
    // From 0 ms any increase is an infinite percentage: the ms threshold alone decides.
    let pct_over =
        |sign: f64| delta_pct.map_or(c.duration_ms[0] == Some(0), |p| sign * p > slower.pct);
    let slow = delta_ms.is_some_and(|d| d > slower.ms) && pct_over(1.0);
    let fast = delta_ms.is_some_and(|d| -d > slower.ms) && pct_over(-1.0);
    let (ra, rb) = (rank(a.status), rank(b.status));
    c.verdict = if rb < ra {
        c.note = Some(format!("{} before, {} now", a.status, b.status));
        StageVerdict::Regressed
    } else if slow {
        c.note = Some(match delta_pct {
            Some(p) => format!("slower by {} ms (+{p:.0}%)", delta_ms.unwrap_or(0)),
            None => format!("slower by {} ms (from 0 ms)", delta_ms.unwrap_or(0)),
        });
        StageVerdict::Regressed
    } else if rb > ra {
        // A stage that failed and now succeeds has new output of course: the status says more.
        c.note = Some(format!("{} before, {} now", a.status, b.status));
        StageVerdict::Improved
    } else if c.output_equal == Some(false) {
        StageVerdict::Changed
    } else if fast {
        StageVerdict::Improved
    } else {
        StageVerdict::Same
    };
    c
}

/// Arrays of objects turned into objects keyed by `key` (`items[sku=b]`), where every item has
/// it and no two share it; anything else as it is.
fn keyed(v: &Value, key: Option<&str>) -> Value {
    let Some(key) = key else { return v.clone() };
    match v {
        Value::Array(items) => {
            let ids: Option<Vec<String>> = items
                .iter()
                .map(|i| {
                    i.get(key).map(|k| match k {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                })
                .collect();
            match ids {
                Some(ids)
                    if ids.iter().collect::<std::collections::BTreeSet<_>>().len() == ids.len() =>
                {
                    Value::Object(
                        ids.into_iter()
                            .zip(items)
                            .map(|(id, i)| (format!("{key}={id}"), keyed(i, Some(key))))
                            .collect(),
                    )
                }
                _ => Value::Array(items.iter().map(|i| keyed(i, Some(key))).collect()),
            }
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), keyed(x, Some(key))))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Two numbers within `tolerance` of each other.
fn within(a: Option<&Value>, b: Option<&Value>, tolerance: f64) -> bool {
    match (a.and_then(Value::as_f64), b.and_then(Value::as_f64)) {
        (Some(x), Some(y)) => tolerance > 0.0 && (x - y).abs() <= tolerance,
        _ => false,
    }
}

/// The asset versions a stage used (its last attempt's).
fn versions(s: Option<&StageRecord>) -> super::asset::AssetVersions {
    s.and_then(StageRecord::last_attempt)
        .map(|a| a.assets.clone())
        .unwrap_or_default()
}

fn asset_deltas(a: Option<&StageRecord>, b: Option<&StageRecord>) -> Vec<AssetDelta> {
    let (va, vb) = (versions(a), versions(b));
    let names: std::collections::BTreeSet<&String> = va.keys().chain(vb.keys()).collect();
    names
        .into_iter()
        .filter(|n| va.get(*n) != vb.get(*n))
        .map(|n| AssetDelta {
            name: n.clone(),
            base: va.get(n).copied(),
            candidate: vb.get(n).copied(),
        })
        .collect()
}

/// An asset's versions in each run and the stages that used them.
type Users<'a> = (Option<u32>, Option<u32>, Vec<&'a str>);

/// For each changed asset, the stages it reached; and the changed stages no asset explains.
fn impact(
    candidate: &Run,
    base: &Run,
    stages: &[StageComparison],
) -> (Vec<AssetImpact>, Vec<String>) {
    use std::collections::{BTreeMap, BTreeSet};
    // Who needs whom, from either run (a stage in one run only still has its edges).
    let mut needed_by: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for s in base.stages.iter().chain(&candidate.stages) {
        for n in &s.needs {
            needed_by
                .entry(n.as_str())
                .or_default()
                .insert(s.id.as_str());
        }
    }
    let downstream = |from: &[&str]| -> BTreeSet<String> {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut todo: Vec<&str> = from.to_vec();
        while let Some(id) = todo.pop() {
            for next in needed_by.get(id).into_iter().flatten() {
                if seen.insert(next) {
                    todo.push(next);
                }
            }
        }
        seen.into_iter().map(str::to_string).collect()
    };
    let mut by_asset: BTreeMap<&str, Users<'_>> = BTreeMap::new();
    for s in stages {
        for d in &s.assets {
            let e = by_asset
                .entry(d.name.as_str())
                .or_insert((d.base, d.candidate, Vec::new()));
            e.2.push(s.id.as_str());
        }
    }
    let changed: BTreeSet<&str> = stages
        .iter()
        .filter(|s| s.verdict != StageVerdict::Same)
        .map(|s| s.id.as_str())
        .collect();
    let mut explained: BTreeSet<String> = BTreeSet::new();
    let impacts = by_asset
        .into_iter()
        .map(|(name, (b, c, users))| {
            let below = downstream(&users);
            let downstream_changed: Vec<String> = below
                .into_iter()
                .filter(|id| changed.contains(id.as_str()) && !users.contains(&id.as_str()))
                .collect();
            explained.extend(users.iter().map(|u| (*u).to_string()));
            explained.extend(downstream_changed.iter().cloned());
            AssetImpact {
                name: name.to_string(),
                base_version: b,
                candidate_version: c,
                stages: users.iter().map(|u| (*u).to_string()).collect(),
                downstream_changed,
            }
        })
        .collect();
    let unexplained = stages
        .iter()
        .filter(|s| s.verdict != StageVerdict::Same && !explained.contains(&s.id))
        .map(|s| s.id.clone())
        .collect();
    (impacts, unexplained)
}

/// Why two runs cannot be compared stage by stage, if they cannot: two pipelines' runs have
/// nothing to say to each other there.
pub fn incomparable(base: &Run, candidate: &Run) -> Option<String> {
    (base.pipeline != candidate.pipeline).then(|| {
        format!(
            "run {} is of `{}` and run {} of `{}`: compare two runs of one pipeline",
            base.id, base.pipeline, candidate.id, candidate.pipeline
        )
    })
}

/// Every stage of either run, in the base run's order and then the candidate's new ones.
pub fn compare(base: &Run, candidate: &Run, settings: &CompareSettings) -> Comparison {
    let mut ids: Vec<&str> = base.stages.iter().map(|s| s.id.as_str()).collect();
    for s in &candidate.stages {
        if !ids.contains(&s.id.as_str()) {
            ids.push(&s.id);
        }
    }
    let stages: Vec<StageComparison> = ids
        .iter()
        .map(|id| stage(id, base.stage(id), candidate.stage(id), settings))
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
    let (assets, unexplained) = impact(candidate, base, &stages);
    Comparison {
        base: base.id,
        candidate: candidate.id,
        pipeline: [base.pipeline.clone(), candidate.pipeline.clone()],
        verdict,
        stages,
        assets,
        unexplained,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{Attempt, AttemptStatus, RunStatus, Timestamp, Trigger};

    /// A run of stages given as (id, status, ms, output, truncated).
    fn run(id: i64, stages: &[(&str, StageStatus, i64, Value, bool)]) -> Run {
        Run {
            id: RunId(id),
            pipeline: "p".into(),
            status: RunStatus::Succeeded,
            trigger: Trigger::Manual,
            params: json!({}),
            created_at: Timestamp::from_millis(0),
            started_at: None,
            finished_at: None,
            duration_ms: None,
            stages: stages
                .iter()
                .map(|(sid, status, ms, out, cut)| StageRecord {
                    id: (*sid).into(),
                    kind: "simulate".into(),
                    needs: vec![],
                    status: *status,
                    attempts: vec![Attempt {
                        n: 1,
                        status: AttemptStatus::Succeeded,
                        started_at: Timestamp::from_millis(0),
                        finished_at: None,
                        duration_ms: Some(*ms),
                        input: json!({}),
                        output: Some(out.clone()),
                        output_truncated: *cut,
                        output_bytes: None,
                        stderr: None,
                        error: None,
                        assets: std::collections::BTreeMap::default(),
                    }],
                })
                .collect(),
            overrides: std::collections::BTreeMap::default(),
            test: false,
            owner: None,
        }
    }

    #[test]
    fn impact_follows_a_changed_asset_down_the_chain_and_names_what_it_does_not_explain() {
        let ok = StageStatus::Succeeded;
        let mut base = run(
            1,
            &[
                ("rules", ok, 10, json!({"n": 1}), false),
                ("score", ok, 10, json!({"s": 1}), false),
                ("publish", ok, 10, json!({"p": 1}), false),
                ("audit", ok, 10, json!({"a": 1}), false),
            ],
        );
        let mut cand = run(
            2,
            &[
                // The stage using the asset gives the same output; only downstream changes.
                ("rules", ok, 10, json!({"n": 1}), false),
                ("score", ok, 10, json!({"s": 2}), false),
                ("publish", ok, 10, json!({"p": 1}), false),
                ("audit", ok, 10, json!({"a": 2}), false),
            ],
        );
        for r in [&mut base, &mut cand] {
            r.stages[1].needs = vec!["rules".into()];
            r.stages[2].needs = vec!["score".into()];
        }
        base.stages[0].attempts[0]
            .assets
            .insert("thresholds".into(), 1);
        cand.stages[0].attempts[0]
            .assets
            .insert("thresholds".into(), 2);
        let c = compare(&base, &cand, &CompareSettings::default());
        assert_eq!(c.stages[0].verdict, StageVerdict::Same);
        assert_eq!(
            c.stages[0].assets,
            vec![AssetDelta {
                name: "thresholds".into(),
                base: Some(1),
                candidate: Some(2)
            }]
        );
        assert_eq!(c.assets.len(), 1, "{:?}", c.assets);
        let i = &c.assets[0];
        assert_eq!((i.base_version, i.candidate_version), (Some(1), Some(2)));
        assert_eq!(i.stages, ["rules"]);
        assert_eq!(i.downstream_changed, ["score"]);
        assert_eq!(c.unexplained, ["audit"]);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["assets"][0]["downstream_changed"][0], "score");
    }

    #[test]
    fn verdicts_follow_status_time_and_output() {
        use StageStatus::{Failed, Succeeded};
        let base = run(
            1,
            &[
                ("zero", Succeeded, 0, json!(1), false),
                ("cut", Succeeded, 10, json!("a"), true),
                ("fails", Succeeded, 10, json!(1), false),
                ("faster", Succeeded, 500, json!(1), false),
                ("gone", Succeeded, 10, json!(1), false),
            ],
        );
        let candidate = run(
            2,
            &[
                ("zero", Succeeded, 60, json!(1), false),
                ("cut", Succeeded, 10, json!("b"), false),
                ("fails", Failed, 10, json!(1), false),
                ("faster", Succeeded, 100, json!(1), false),
                ("new", Succeeded, 10, json!(1), false),
            ],
        );
        let c = compare(&base, &candidate, &CompareSettings::default());
        let v = |id: &str| {
            let s = c.stages.iter().find(|s| s.id == id).unwrap();
            (s.verdict, s.output_equal)
        };
        // From 0 ms, 60 ms more is over the 50 ms threshold whatever the percentage.
        assert_eq!(v("zero"), (StageVerdict::Regressed, Some(true)));
        // A cut output is never called equal (nor different).
        assert_eq!(v("cut"), (StageVerdict::Same, None));
        // Text outputs that differ carry a line diff.
        let text = compare(
            &run(3, &[("t", Succeeded, 1, json!("a\nb\nc"), false)]),
            &run(4, &[("t", Succeeded, 1, json!("a\nB\nc"), false)]),
            &CompareSettings::default(),
        );
        let lines: Vec<(super::super::diff::LineTag, &str)> = text.stages[0]
            .lines
            .iter()
            .map(|l| (l.tag, l.text.as_str()))
            .collect();
        assert!(
            lines.contains(&(super::super::diff::LineTag::Removed, "b")),
            "{lines:?}"
        );
        assert!(
            lines.contains(&(super::super::diff::LineTag::Added, "B")),
            "{lines:?}"
        );
        assert_eq!(v("fails").0, StageVerdict::Regressed);
        assert_eq!(v("faster").0, StageVerdict::Improved);
        assert_eq!(v("gone").0, StageVerdict::Removed);
        assert_eq!(v("new").0, StageVerdict::Added);
        assert_eq!(c.verdict, StageVerdict::Regressed);
        let same = compare(&base, &base, &CompareSettings::default());
        assert_eq!(same.verdict, StageVerdict::Same);
        // Failed before, succeeded now: improved, though its output is new.
        let fixed = compare(
            &run(5, &[("s", StageStatus::Failed, 1, Value::Null, false)]),
            &run(6, &[("s", Succeeded, 1, json!({"rows": 3}), false)]),
            &CompareSettings::default(),
        );
        assert_eq!(fixed.stages[0].verdict, StageVerdict::Improved);
        assert_eq!(
            fixed.stages[0].note.as_deref(),
            Some("failed before, succeeded now")
        );
        assert_eq!(fixed.verdict, StageVerdict::Improved);
    }
}
