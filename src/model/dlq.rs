use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AttemptError, DlqId, RunId, Timestamp};

/// Which dead-letter entries to list, newest first. A list leaves each entry's input out
/// (`null`: an input may be a mebibyte); one entry (`GET /v1/dlq/ID`) has it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DlqQuery {
    /// Only entries older than this id (the cursor from the previous page).
    pub before: Option<DlqId>,
    /// Only this run's entries.
    pub run: Option<RunId>,
    pub limit: usize,
}

impl DlqQuery {
    /// The newest `limit` entries.
    pub fn newest(limit: usize) -> DlqQuery {
        DlqQuery {
            limit,
            ..DlqQuery::default()
        }
    }
}

/// The most dead-letter entries one list returns.
pub const MAX_DLQ_LIMIT: usize = 1_000;

/// A stage that ran out of attempts, parked with its last input and error until someone
/// requeues it (a new attempt in the same run) or discards it (the run stays failed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlqEntry {
    pub id: DlqId,
    pub run_id: RunId,
    pub pipeline: String,
    pub stage: String,
    pub attempts: u32,
    pub input: Value,
    pub error: AttemptError,
    pub created_at: Timestamp,
}
