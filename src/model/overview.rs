use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Everything a first frame needs: where the data comes from, the pipelines one can start, and
/// the counts behind the header's alert badge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// How the client reaches the runtime: `embedded` or the remote URL.
    pub backend: String,
    /// The workspace directory on the host.
    pub workspace: String,
    pub pipelines: Vec<PipelineInfo>,
    pub dlq_depth: u64,
    /// Breakers that are open or half-open, by target.
    pub breakers: Vec<BreakerInfo>,
    /// The last event sequence number at the time of the overview.
    pub last_seq: u64,
    /// Runs in flight on the host right now.
    #[serde(default)]
    pub running: u64,
    /// The caller's role on a server (`viewer`, `operator`, `admin`); absent when embedded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Live workers sharing the store (PostgreSQL); absent on SQLite, where one host runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineInfo {
    pub name: String,
    pub description: Option<String>,
    pub schedule: Option<String>,
    pub stages: Vec<String>,
    /// Declared params and their defaults.
    pub params: Map<String, Value>,
    /// The stages with what they need, for drawing the DAG.
    #[serde(default)]
    pub graph: Vec<super::lens::StageInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerInfo {
    pub target: String,
    pub state: String,
}

/// A request to start a run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StartRun {
    pub pipeline: String,
    #[serde(default)]
    pub params: Map<String, Value>,
    /// Asset versions this run uses instead of the pinned ones.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub overrides: super::asset::Overrides,
    /// Run one stage alone in test mode instead of the whole pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Box<super::asset::StageTest>>,
}
