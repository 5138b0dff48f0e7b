//! The seam between the dashboard and the CLI on one side and a host on the other: [`Backend`].
//! [`Embedded`] calls a host in this process; [`Remote`] speaks the HTTP API of
//! `opsdeck serve`. Both pass the same behaviour suite, so a client never knows which it has.

mod embedded;
mod remote;

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Stream;

pub use embedded::Embedded;
pub use remote::{CLAIM_ACTOR, CLAIM_VIA, Remote};

use crate::model::asset::{AssetDetail, AssetSummary};
use crate::model::compare::Comparison;
use crate::model::lens::PipelineStats;
use crate::model::{
    Actor, ApiError, AuditQuery, AuditRecord, CanaryStatus, Command, DlqEntry, DlqId, DlqQuery,
    Event, LogFilter, Outcome, Overview, Page, Role, Run, RunId, RunQuery, RunSummary, SeriesPoint,
    StageIo, Via,
};

pub type Result<T> = std::result::Result<T, ApiError>;

/// What an event stream yields: events in sequence order, and changes of connection state.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// Shared: every stream of one host hands out the same event.
    Event(Arc<Event>),
    /// The stream is (re)connected and caught up (`true`), or lost its source (`false`).
    Connected(bool),
    /// The resume point was further back than the server keeps streams for: the stream goes
    /// on live from `last_seq`, and views built from events must be loaded again.
    Reset { last_seq: u64 },
}

pub use crate::model::DEFAULT_RESUME_HORIZON;

/// Ordered, gap-free and resumable by sequence number.
pub type EventStream = Pin<Box<dyn Stream<Item = StreamItem> + Send>>;

/// The person at this terminal, as the audit log names them: `$USER` (else `$LOGNAME`, else
/// `uid N`). On their own workspace they may do anything; a server decides for itself from
/// the token, whatever a remote client says.
pub fn local_actor(via: Via) -> Actor {
    let name = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|n| !n.trim().is_empty()))
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()));
    Actor::new(name, Role::Admin, via)
}

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
    /// The stored events `filter` keeps after `since`, oldest first, at most `limit`: chosen
    /// where they are stored, so following one run or one kind moves only those.
    async fn log_events_after(
        &self,
        filter: &LogFilter,
        since: u64,
        limit: usize,
    ) -> Result<Vec<Event>>;
    async fn runs(&self, q: RunQuery) -> Result<Page<RunSummary>>;
    async fn run(&self, id: RunId) -> Result<Run>;
    async fn stage_io(&self, id: RunId, stage: &str) -> Result<StageIo>;
    /// Each stage's health over the pipeline's last `runs` runs (the pipeline lens).
    async fn pipeline_stats(&self, name: &str, runs: usize) -> Result<PipelineStats>;
    /// Two runs stage by stage, as the candidate's pipeline says runs compare.
    async fn compare(&self, base: RunId, candidate: RunId) -> Result<Comparison>;
    /// A page of dead-letter entries, newest first, without inputs.
    async fn dlq(&self, q: DlqQuery) -> Result<Page<DlqEntry, DlqId>>;
    /// One entry, with its input.
    async fn dlq_entry(&self, id: DlqId) -> Result<DlqEntry>;
    /// Every canary rollout, in config order.
    async fn canaries(&self) -> Result<Vec<CanaryStatus>>;
    /// Chart points for one canary: `points` steps of `step_s` seconds ending now.
    async fn canary_series(
        &self,
        name: &str,
        step_s: i64,
        points: usize,
    ) -> Result<Vec<SeriesPoint>>;
    /// Audit records, newest first.
    async fn audit(&self, q: AuditQuery) -> Result<Vec<AuditRecord>>;
    /// The workers sharing the store (none on SQLite).
    async fn workers(&self) -> Result<Vec<crate::model::WorkerInfo>>;
    /// Every asset, with its pinned and newest versions and the stages that use it.
    async fn assets(&self) -> Result<Vec<AssetSummary>>;
    /// One asset's versions and pins, and one version's content (the pinned one by default).
    async fn asset(&self, name: &str, version: Option<u32>) -> Result<AssetDetail>;
    /// Every state change: one command with who asks and why, checked, performed and audited
    /// by the host. A remote host identifies the actor by its token instead.
    async fn control(&self, cmd: Command, actor: &Actor, reason: &str) -> Result<Outcome>;
}
