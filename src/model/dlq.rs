use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AttemptError, DlqId, RunId, Timestamp};

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
