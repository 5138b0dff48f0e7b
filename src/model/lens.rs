//! The pipeline lens: each stage's health over a pipeline's recent runs (last status, p50 and
//! p95 duration, success rate, recent attempts), from attempt rows the store reads without
//! inputs or outputs, so the lens costs the same however large the outputs are.

use serde::{Deserialize, Serialize};

use super::{AttemptStatus, RunId, StageStatus, Timestamp};

/// Runs the lens looks back over by default, and at most.
pub const DEFAULT_LENS_RUNS: usize = 20;
pub const MAX_LENS_RUNS: usize = 200;

/// Attempts kept per stage for the list `Enter` opens.
pub const RECENT_ATTEMPTS: usize = 10;

/// One stage of a pipeline as the lens draws it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageInfo {
    pub id: String,
    pub kind: String,
    pub needs: Vec<String>,
    /// Assets it reads (`NAME` or `NAME@N`).
    #[serde(default)]
    pub assets: Vec<String>,
    /// Its circuit breaker's target, if it has one.
    #[serde(default)]
    pub breaker: Option<String>,
}

/// One attempt, without input or output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRow {
    pub run: RunId,
    pub stage: String,
    pub n: u32,
    pub status: AttemptStatus,
    pub started_at: Timestamp,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    /// The stage's status in its run (its last attempt's outcome, or skipped).
    pub stage_status: StageStatus,
}

/// One stage's health over the runs looked at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageStats {
    pub id: String,
    /// Its status in the newest run that has it.
    pub last: Option<StageStatus>,
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
    /// Of the runs where it finished (succeeded or failed), the share that succeeded.
    pub success_rate: Option<f64>,
    /// Runs it finished in.
    pub finished: u32,
    /// Newest first, at most [`RECENT_ATTEMPTS`].
    pub recent: Vec<AttemptRow>,
}

/// The lens for one pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineStats {
    pub pipeline: String,
    /// The runs looked at, newest first.
    pub runs: Vec<RunId>,
    pub stages: Vec<StageStats>,
}

/// The `q`-quantile of sorted values (nearest rank).
fn quantile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// Each of `stages` over `runs` (newest first) from their attempt rows.
pub fn stats(
    pipeline: &str,
    stages: &[String],
    runs: Vec<RunId>,
    rows: &[AttemptRow],
) -> PipelineStats {
    let out = stages
        .iter()
        .map(|id| {
            let mine: Vec<&AttemptRow> = rows.iter().filter(|r| &r.stage == id).collect();
            // A stage's time in a run is its last attempt's, when that succeeded.
            let mut durations: Vec<i64> = Vec::new();
            let (mut ok, mut finished) = (0u32, 0u32);
            let mut last = None;
            for run in &runs {
                let Some(newest) = mine.iter().filter(|r| r.run == *run).max_by_key(|r| r.n) else {
                    continue;
                };
                last = last.or(Some(newest.stage_status));
                match newest.stage_status {
                    StageStatus::Succeeded => {
                        ok += 1;
                        finished += 1;
                        durations.extend(newest.duration_ms);
                    }
                    StageStatus::Failed => finished += 1,
                    _ => {}
                }
            }
            durations.sort_unstable();
            let mut recent: Vec<AttemptRow> = mine.into_iter().cloned().collect();
            recent.sort_by_key(|r| std::cmp::Reverse((r.run.0, r.n)));
            recent.truncate(RECENT_ATTEMPTS);
            StageStats {
                id: id.clone(),
                last,
                p50_ms: quantile(&durations, 0.5),
                p95_ms: quantile(&durations, 0.95),
                success_rate: (finished > 0).then(|| f64::from(ok) / f64::from(finished)),
                finished,
                recent,
            }
        })
        .collect();
    PipelineStats {
        pipeline: pipeline.to_string(),
        runs,
        stages: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(run: i64, stage: &str, n: u32, status: StageStatus, ms: i64) -> AttemptRow {
        AttemptRow {
            run: RunId(run),
            stage: stage.into(),
            n,
            status: if status == StageStatus::Succeeded {
                AttemptStatus::Succeeded
            } else {
                AttemptStatus::Failed
            },
            started_at: Timestamp::from_millis(run * 1000),
            duration_ms: Some(ms),
            error: None,
            stage_status: status,
        }
    }

    #[test]
    fn stats_take_each_runs_last_attempt_and_rank_quantiles() {
        let ok = StageStatus::Succeeded;
        let rows: Vec<AttemptRow> = (1..=10)
            .map(|r| row(r, "a", 1, ok, r * 100))
            .chain([
                row(3, "b", 1, StageStatus::Failed, 5),
                row(4, "b", 1, ok, 50),
            ])
            .collect();
        let runs: Vec<RunId> = (1..=10).rev().map(RunId).collect();
        let s = stats("p", &["a".into(), "b".into(), "c".into()], runs, &rows);
        let a = &s.stages[0];
        assert_eq!((a.p50_ms, a.p95_ms), (Some(500), Some(1000)));
        assert_eq!((a.success_rate, a.last), (Some(1.0), Some(ok)));
        assert_eq!(a.recent.len(), RECENT_ATTEMPTS);
        assert_eq!(a.recent[0].run, RunId(10), "newest first");
        let b = &s.stages[1];
        assert_eq!((b.finished, b.success_rate), (2, Some(0.5)));
        assert_eq!(b.last, Some(ok), "the newest run that has it");
        assert_eq!(s.stages[2].success_rate, None);
    }
}
