//! Plain data shared by every layer: what the store keeps, what crosses the `Backend` seam
//! between a client and a host, and the commands of the one control path.
//!
//! Nothing in here performs I/O, so every consumer can depend on it without pulling in the engine.

pub mod asset;
mod canary;
pub mod compare;
mod control;
pub mod diff;
mod dlq;
pub mod duration;
mod error;
mod event;
mod ids;
pub mod lens;
mod overview;
mod run;
pub(crate) mod status;
mod time;
mod worker;

pub use canary::{
    ActionRecord, CanaryAction, CanaryState, CanaryStatus, Check, Fault, MAX_FAULT_LATENCY_MS,
    Observation, SeriesPoint, StepInfo, TrafficState, TrafficStatus, TriggerStatus, Verdict,
    Version, VersionPoint,
};
pub use control::{
    AUTOMATIC_ACTOR, Actor, AuditQuery, AuditRecord, CanaryAt, Command, MAX_AUDIT_LIMIT,
    MAX_REASON_BYTES, MAX_TARGET_BYTES, Outcome, Role, Via, audit_action, audit_actions, bounded,
    control_name, printable, printable_text, role_for,
};
pub use dlq::{DlqEntry, DlqQuery, MAX_DLQ_LIMIT};
pub use error::{ApiError, ErrorCode};
pub use event::{DEFAULT_RESUME_HORIZON, Event, EventKind, LogFilter, error_text};
pub use ids::{DlqId, ParseIdError, RunId};
pub use overview::{BreakerInfo, Overview, PipelineInfo, StartRun};
pub use run::{
    Attempt, AttemptError, Page, Run, RunQuery, RunSort, RunSummary, StageIo, StageRecord, Trigger,
};
pub(crate) use status::string_enum;
pub use status::{AttemptStatus, ParseStatusError, RunStatus, StageStatus};
pub use time::Timestamp;
pub use worker::WorkerInfo;
