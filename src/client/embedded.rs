//! [`Backend`] over a [`Host`] in this process.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast::{self, error::RecvError};

use super::{Backend, DEFAULT_RESUME_HORIZON, EventStream, Result, StreamItem};
use crate::host::Host;
use crate::model::asset::{AssetDetail, AssetSummary};
use crate::model::compare::Comparison;
use crate::model::lens::PipelineStats;
use crate::model::{
    Actor, AuditQuery, AuditRecord, CanaryStatus, Command, DlqEntry, DlqId, DlqQuery, Event,
    LogFilter, Outcome, Overview, Page, Run, RunId, RunQuery, RunSummary, SeriesPoint, StageIo,
};

/// The runtime of a workspace this process hosts.
#[derive(Clone)]
pub struct Embedded {
    host: Host,
    horizon: u64,
}

/// Events a stream pages through at a time while it catches up: its memory, whatever the
/// log's size.
const PAGE: usize = 500;

impl Embedded {
    pub fn new(host: Host) -> Self {
        Embedded {
            host,
            horizon: DEFAULT_RESUME_HORIZON,
        }
    }

    /// How far back a stream may resume: a client further behind gets a reset instead of the
    /// backlog.
    #[must_use]
    pub fn with_horizon(mut self, horizon: u64) -> Self {
        self.horizon = horizon;
        self
    }

    pub fn host(&self) -> &Host {
        &self.host
    }
}

/// Events to deliver in order: stored ones to catch up, a page at a time and only when the
/// client has taken the last, then live ones; never a gap or a duplicate. A receiver that
/// lagged behind the live channel catches up from the store the same way.
struct Tail {
    host: Host,
    live: broadcast::Receiver<Arc<Event>>,
    /// The resume point asked for, until the stream starts; then the last event delivered.
    last: Option<u64>,
    horizon: u64,
    /// At most one page of stored events, or the live events that came in one go.
    queue: VecDeque<Arc<Event>>,
    announced: bool,
    /// Stored events remain to be paged through.
    backlog: Option<Backlog>,
    /// The live event that showed a gap, delivered once the gap is filled.
    held: Option<Arc<Event>>,
    /// A reset to deliver after the connection is announced.
    reset: Option<u64>,
}

/// How far a stream's backlog goes.
#[derive(Debug, Clone, Copy)]
enum Backlog {
    /// To the end of the log (a resume, or a receiver that lagged).
    ToEnd,
    /// Up to, not including, this sequence number (a live event showed a gap before it).
    Until(u64),
}

impl Tail {
    fn last(&self) -> u64 {
        self.last.unwrap_or(0)
    }

    /// Reads the next page of the backlog into the queue. `false` when the store failed: the
    /// stream ends and the client resumes from the last event it has, losing nothing.
    async fn page(&mut self, upto: Backlog) -> bool {
        let upto = match upto {
            Backlog::ToEnd => None,
            Backlog::Until(u) => Some(u),
        };
        let Ok(page) = self.host.events(self.last(), PAGE).await else {
            return false;
        };
        let full = page.len() == PAGE;
        let mut reached = false;
        for e in page {
            if upto.is_some_and(|u| e.seq >= u) {
                reached = true;
                break;
            }
            self.queue.push_back(Arc::new(e));
        }
        if reached || !full || self.queue.is_empty() {
            self.backlog = None;
            if let Some(h) = self.held.take() {
                self.queue.push_back(h);
            }
        }
        true
    }

    async fn start(&mut self) -> Option<StreamItem> {
        self.announced = true;
        let last_seq = self.host.overview().await.ok()?.last_seq;
        match self.last {
            // Live from now: anchored at the newest stored event, so a lagging receiver knows
            // where to catch up from.
            None => self.last = Some(last_seq),
            Some(since) if last_seq.saturating_sub(since) > self.horizon => {
                self.last = Some(last_seq);
                self.reset = Some(last_seq);
            }
            Some(_) => self.backlog = Some(Backlog::ToEnd),
        }
        Some(StreamItem::Connected(true))
    }

    async fn next(&mut self) -> Option<StreamItem> {
        if !self.announced {
            return self.start().await;
        }
        if let Some(last_seq) = self.reset.take() {
            return Some(StreamItem::Reset { last_seq });
        }
        loop {
            if let Some(e) = self.queue.pop_front() {
                if e.seq <= self.last() {
                    continue;
                }
                self.last = Some(e.seq);
                return Some(StreamItem::Event(e));
            }
            if let Some(upto) = self.backlog {
                if !self.page(upto).await {
                    return None;
                }
                continue;
            }
            match self.live.recv().await {
                Ok(e) if e.seq > self.last().saturating_add(1) => {
                    self.backlog = Some(Backlog::Until(e.seq));
                    self.held = Some(e);
                }
                Ok(e) => self.queue.push_back(e),
                Err(RecvError::Lagged(_)) => self.backlog = Some(Backlog::ToEnd),
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

#[async_trait]
impl Backend for Embedded {
    async fn overview(&self) -> Result<Overview> {
        Ok(self.host.overview().await?)
    }

    fn events(&self, since: Option<u64>) -> EventStream {
        let tail = Tail {
            host: self.host.clone(),
            live: self.host.subscribe(),
            last: since,
            horizon: self.horizon,
            queue: VecDeque::new(),
            announced: false,
            backlog: None,
            held: None,
            reset: None,
        };
        Box::pin(futures::stream::unfold(tail, |mut t| async move {
            t.next().await.map(|item| (item, t))
        }))
    }

    async fn recent_events(&self, limit: usize) -> Result<Vec<Event>> {
        let last = self.host.overview().await?.last_seq;
        Ok(self
            .host
            .events(last.saturating_sub(limit as u64), limit)
            .await?)
    }

    async fn events_after(&self, since: u64, limit: usize) -> Result<Vec<Event>> {
        Ok(self.host.events(since, limit).await?)
    }

    async fn log_events_after(
        &self,
        filter: &LogFilter,
        since: u64,
        limit: usize,
    ) -> Result<Vec<Event>> {
        Ok(self.host.log_events(filter.clone(), since, limit).await?)
    }

    async fn runs(&self, q: RunQuery) -> Result<Page<RunSummary>> {
        Ok(self.host.runs(q).await?)
    }

    async fn run(&self, id: RunId) -> Result<Run> {
        Ok(self.host.run(id).await?)
    }

    async fn stage_io(&self, id: RunId, stage: &str) -> Result<StageIo> {
        Ok(self.host.stage_io(id, stage).await?)
    }

    async fn dlq(&self, q: DlqQuery) -> Result<Page<DlqEntry, DlqId>> {
        Ok(self.host.dlq(q).await?)
    }

    async fn dlq_entry(&self, id: DlqId) -> Result<DlqEntry> {
        Ok(self.host.dlq_entry(id).await?)
    }

    async fn canaries(&self) -> Result<Vec<CanaryStatus>> {
        Ok(self.host.canaries())
    }

    async fn canary_series(
        &self,
        name: &str,
        step_s: i64,
        points: usize,
    ) -> Result<Vec<SeriesPoint>> {
        Ok(self.host.canary_series(name, step_s, points)?)
    }

    async fn audit(&self, q: AuditQuery) -> Result<Vec<AuditRecord>> {
        Ok(self.host.audit_log(q).await?)
    }

    async fn workers(&self) -> Result<Vec<crate::model::WorkerInfo>> {
        Ok(self.host.workers().await?)
    }

    async fn pipeline_stats(&self, name: &str, runs: usize) -> Result<PipelineStats> {
        self.host.pipeline_stats(name, runs).await
    }

    async fn compare(&self, base: RunId, candidate: RunId) -> Result<Comparison> {
        self.host.compare(base, candidate).await
    }

    async fn assets(&self) -> Result<Vec<AssetSummary>> {
        self.host.assets().await
    }

    async fn asset(&self, name: &str, version: Option<u32>) -> Result<AssetDetail> {
        self.host.asset(name, version).await
    }

    async fn control(&self, cmd: Command, actor: &Actor, reason: &str) -> Result<Outcome> {
        self.host.control(cmd, actor, reason).await
    }
}
