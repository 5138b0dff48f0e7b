//! Plain data shared by the runtime, the store, the CLI and (later) the server, client and dashboard.
//!
//! Nothing in here performs I/O, so every consumer can depend on it without pulling in the engine.

mod dlq;
pub mod duration;
mod event;
mod ids;
mod run;
mod status;
mod time;

pub use dlq::DlqEntry;
pub use event::{Event, EventKind};
pub use ids::{DlqId, ParseIdError, RunId};
pub use run::{
    Attempt, AttemptError, Page, Run, RunQuery, RunSummary, StageIo, StageRecord, Trigger,
};
pub(crate) use status::string_enum;
pub use status::{AttemptStatus, ParseStatusError, RunStatus, StageStatus};
pub use time::Timestamp;
