use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AttemptStatus, RunId, RunStatus, StageStatus, Timestamp};

/// Why a run exists: typed so the UI can filter scheduled noise from manual work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Manual,
    Schedule,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Schedule => "schedule",
        }
    }

    pub fn parse(s: &str) -> Trigger {
        if s == "schedule" {
            Trigger::Schedule
        } else {
            Trigger::Manual
        }
    }
}

/// A whole run with every stage and every attempt: what `runs show --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: RunId,
    pub pipeline: String,
    pub status: RunStatus,
    pub trigger: Trigger,
    pub params: Value,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub duration_ms: Option<i64>,
    pub stages: Vec<StageRecord>,
    /// Asset versions the run was told to use instead of the pinned ones.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub overrides: super::asset::Overrides,
    /// An isolated stage test, kept out of run lists, metrics, breakers and the DLQ.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
    /// The worker driving the run now (several workers on PostgreSQL): where its processes
    /// run and its log is, when something needs a look. A finished run is no worker's (any
    /// worker may retry it), and a worker that stops lets go of its runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl Run {
    pub fn stage(&self, id: &str) -> Option<&StageRecord> {
        self.stages.iter().find(|s| s.id == id)
    }
}

/// One stage of a run with its attempts, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub id: String,
    pub kind: String,
    pub needs: Vec<String>,
    pub status: StageStatus,
    pub attempts: Vec<Attempt>,
}

impl StageRecord {
    pub fn last_attempt(&self) -> Option<&Attempt> {
        self.attempts.last()
    }

    /// The time the stage's attempts ran, all of them (what it cost the run, and what
    /// `compare` compares); `None` before any attempt ended.
    pub fn total_ms(&self) -> Option<i64> {
        let ds: Vec<i64> = self.attempts.iter().filter_map(|a| a.duration_ms).collect();
        (!ds.is_empty()).then(|| ds.iter().fold(0i64, |t, d| t.saturating_add(*d)))
    }
}

/// One try of a stage. Inputs and outputs are kept for every attempt so failures can be replayed
/// and diffed; an output over the store's limit is kept as truncated text with `output_truncated`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub n: u32,
    pub status: AttemptStatus,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub duration_ms: Option<i64>,
    pub input: Value,
    pub output: Option<Value>,
    /// True when `output` holds only the first part of what the stage produced.
    pub output_truncated: bool,
    /// Size in bytes of the whole output as produced, before any truncation.
    pub output_bytes: Option<u64>,
    pub stderr: Option<String>,
    pub error: Option<AttemptError>,
    /// The asset versions this attempt used, by asset name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub assets: super::asset::AssetVersions,
}

/// Why an attempt failed: a stable machine-readable code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    pub code: String,
    pub message: String,
}

/// A row of the runs table: enough to list and page without loading stage records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: RunId,
    pub pipeline: String,
    pub status: RunStatus,
    pub trigger: Trigger,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub duration_ms: Option<i64>,
    pub stages_total: u32,
    /// Stages that will not run again: succeeded, failed, skipped or cancelled.
    pub stages_done: u32,
    pub stages_succeeded: u32,
    pub stages_failed: u32,
    /// An isolated stage test (listed only when asked for).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
}

/// The order of a runs listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunSort {
    /// Newest first (by id); the only order that supports the `before` cursor.
    #[default]
    Newest,
    Oldest,
    /// Longest duration first; runs still going count up to now.
    Longest,
    /// By pipeline name, newest first within a pipeline.
    Pipeline,
}

impl RunSort {
    pub const ALL: [RunSort; 4] = [
        RunSort::Newest,
        RunSort::Oldest,
        RunSort::Longest,
        RunSort::Pipeline,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RunSort::Newest => "newest",
            RunSort::Oldest => "oldest",
            RunSort::Longest => "longest",
            RunSort::Pipeline => "pipeline",
        }
    }

    /// The next order in [`RunSort::ALL`], wrapping.
    #[must_use]
    pub fn next(self) -> RunSort {
        let i = RunSort::ALL.iter().position(|s| *s == self).unwrap_or(0);
        RunSort::ALL[(i + 1) % RunSort::ALL.len()]
    }
}

/// A filter and page request for runs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunQuery {
    pub pipeline: Option<String>,
    pub status: Option<RunStatus>,
    /// Free text: matches part of the pipeline name, or a run id exactly.
    pub text: Option<String>,
    pub sort: RunSort,
    /// Only runs older than this id (the cursor from the previous page; newest-first only).
    pub before: Option<RunId>,
    /// Rows to skip, for jumping anywhere in a long list.
    pub offset: u64,
    pub limit: usize,
    /// List isolated stage tests instead of production runs.
    #[serde(default)]
    pub tests: bool,
}

/// One page of results, the cursor for the next (absent on the last page), and how many rows
/// match in all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T, C = RunId> {
    pub items: Vec<T>,
    pub next: Option<C>,
    pub total: u64,
}

/// Every attempt of one stage, with its inputs, outputs and errors: the stage I/O view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageIo {
    pub run_id: RunId,
    pub pipeline: String,
    pub stage: String,
    pub status: StageStatus,
    pub attempts: Vec<Attempt>,
}
