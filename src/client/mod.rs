//! The seam between the dashboard (and, later, the CLI) and a runtime: [`Backend`]. The
//! embedded implementation calls the runtime in-process; a remote one will speak HTTP. Both
//! must behave the same, so the dashboard never knows which it has.

mod embedded;
mod remote;

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

pub use embedded::Embedded;
pub use remote::Remote;

use crate::canary::simulate::Fault;
use crate::model::{
    ActionRecord, ApiError, CanaryAction, CanaryStatus, DlqEntry, DlqId, Event, Overview, Page,
    Run, RunId, RunQuery, RunSummary, SeriesPoint, StageIo, StartRun,
};

pub type Result<T> = std::result::Result<T, ApiError>;

/// What an event stream yields: events in sequence order, and changes of connection state.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    Event(Event),
    /// The stream is (re)connected and caught up (`true`), or lost its source (`false`).
    Connected(bool),
}

/// Ordered, gap-free and resumable by sequence number.
pub type EventStream = Pin<Box<dyn Stream<Item = StreamItem> + Send>>;

#[async_trait]
pub trait Backend: Send + Sync {
    /// Everything a first frame needs.
    async fn overview(&self) -> Result<Overview>;
    /// Events after `since` (every stored one after it first, then live ones), or only live
    /// events when `since` is `None`.
    fn events(&self, since: Option<u64>) -> EventStream;
    /// The last `limit` stored events, oldest first, to fill a live tail.
    async fn recent_events(&self, limit: usize) -> Result<Vec<Event>>;
    /// Stored events after `since`, oldest first, at most `limit` (to page back through history).
    async fn events_after(&self, since: u64, limit: usize) -> Result<Vec<Event>>;
    async fn runs(&self, q: RunQuery) -> Result<Page<RunSummary>>;
    async fn run(&self, id: RunId) -> Result<Run>;
    async fn stage_io(&self, id: RunId, stage: &str) -> Result<StageIo>;
    async fn start_run(&self, req: StartRun) -> Result<RunId>;
    async fn cancel_run(&self, id: RunId, reason: &str) -> Result<()>;
    async fn retry_run(&self, id: RunId, reason: &str) -> Result<()>;
    /// Continues an interrupted run; stages that finished are not run again.
    async fn resume_run(&self, id: RunId) -> Result<()>;
    async fn dlq(&self) -> Result<Vec<DlqEntry>>;
    async fn requeue(&self, id: DlqId, reason: &str) -> Result<RunId>;
    async fn discard(&self, id: DlqId, reason: &str) -> Result<()>;
    /// Every canary rollout, in config order.
    async fn canaries(&self) -> Result<Vec<CanaryStatus>>;
    /// Chart points for one canary: `points` steps of `step_s` seconds ending now.
    async fn canary_series(
        &self,
        name: &str,
        step_s: i64,
        points: usize,
    ) -> Result<Vec<SeriesPoint>>;
    /// Adds trouble to a simulated canary (drills, demos); the default fault clears it.
    async fn canary_inject(&self, name: &str, fault: Fault) -> Result<()>;
    /// A manual action on a canary, recorded with the reason.
    async fn canary_act(
        &self,
        name: &str,
        action: CanaryAction,
        reason: &str,
    ) -> Result<ActionRecord>;
}
