use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::status::string_enum;
use super::{RunId, Timestamp};

string_enum!(
    /// What changed. Every state change appends one of these; every audited command one `audit`.
    EventKind, "event kind" {
        RunCreated => "run_created",
        RunStarted => "run_started",
        RunFinished => "run_finished",
        RunInterrupted => "run_interrupted",
        RunResumed => "run_resumed",
        RunRetried => "run_retried",
        RunCancelRequested => "run_cancel_requested",
        StageStarted => "stage_started",
        StageFinished => "stage_finished",
        StageRetrying => "stage_retrying",
        StageSkipped => "stage_skipped",
        BreakerChanged => "breaker_changed",
        DlqAdded => "dlq_added",
        DlqRequeued => "dlq_requeued",
        DlqDiscarded => "dlq_discarded",
        ScheduleSkipped => "schedule_skipped",
        CanaryStarted => "canary_started",
        CanaryAction => "canary_action",
        CanaryAnalysis => "canary_analysis",
        /// A new asset version, or a pin or rollback changing which version runs use.
        AssetChanged => "asset_changed",
        /// A command from an actor, done or refused: the audit record, in the live log too.
        Audit => "audit",
    }
);

/// One entry of the event log. `seq` is gap-free and strictly increasing, so a client that
/// remembers the last `seq` it saw can resume without missing or repeating anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at: Timestamp,
    pub kind: EventKind,
    pub run_id: Option<RunId>,
    pub stage: Option<String>,
    pub data: Value,
}

/// How many events back a stream may resume by default before it gets a reset instead of the
/// backlog (`[server] resume_horizon`).
pub const DEFAULT_RESUME_HORIZON: u64 = 10_000;
