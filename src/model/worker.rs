//! The workers sharing a PostgreSQL store, as `opsdeck workers` and `/v1/workers` show them.

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// One live worker: who it is, how fresh its lease is, and its load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// `HOST:PID:RANDOM`, unique per process start.
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// Where it serves the API, if it does.
    pub address: Option<String>,
    pub started_at: Timestamp,
    /// Since its last heartbeat, by the database's clock.
    pub heartbeat_age_ms: u64,
    /// Until its lease runs out (negative: expired, its runs are about to move).
    pub lease_left_ms: i64,
    /// Runs it drives at once, at most (`[worker] max_in_flight`).
    pub max_in_flight: u32,
    /// Runs it owns that are pending or running.
    pub runs: u32,
}
