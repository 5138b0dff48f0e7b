//! [`Backend`] over a [`Host`] in this process.

use std::collections::VecDeque;

use async_trait::async_trait;
use tokio::sync::broadcast::{self, error::RecvError};

use super::{Backend, EventStream, Result, StreamItem};
use crate::host::Host;
use crate::model::{
    Actor, AuditQuery, AuditRecord, CanaryStatus, Command, DlqEntry, Event, Outcome, Overview,
    Page, Run, RunId, RunQuery, RunSummary, SeriesPoint, StageIo,
};

/// The runtime of a workspace this process hosts.
#[derive(Clone)]
pub struct Embedded {
    host: Host,
}

impl Embedded {
    pub fn new(host: Host) -> Self {
        Embedded { host }
    }

    pub fn host(&self) -> &Host {
        &self.host
    }
}

/// Events to deliver in order: stored ones to catch up, then live ones, never a gap or a
/// duplicate. A receiver that lagged behind the live channel catches up from the store.
struct Tail {
    host: Host,
    live: broadcast::Receiver<Event>,
    last: Option<u64>,
    queue: VecDeque<Event>,
    announced: bool,
}

impl Tail {
    async fn catch_up(&mut self, upto: Option<u64>) {
        let Some(mut from) = self.last else { return };
        loop {
            let page = self.host.events(from, 1_000).await.unwrap_or_default();
            let Some(last) = page.last().map(|e| e.seq) else {
                return;
            };
            for e in page {
                if upto.is_some_and(|u| e.seq >= u) {
                    return;
                }
                from = e.seq;
                self.queue.push_back(e);
            }
            if upto.is_some_and(|u| last + 1 >= u) {
                return;
            }
        }
    }

    async fn next(&mut self) -> Option<StreamItem> {
        if !self.announced {
            self.announced = true;
            if self.last.is_none() {
                // Live from now: anchor at the newest stored event so a lagging receiver knows
                // where to catch up from.
                self.last = Some(self.host.overview().await.map_or(0, |o| o.last_seq));
            }
            self.catch_up(None).await;
            return Some(StreamItem::Connected(true));
        }
        loop {
            if let Some(e) = self.queue.pop_front() {
                if self.last.is_some_and(|l| e.seq <= l) {
                    continue;
                }
                self.last = Some(e.seq);
                return Some(StreamItem::Event(e));
            }
            match self.live.recv().await {
                Ok(e) => {
                    if self.last.is_some_and(|l| e.seq > l + 1) {
                        self.catch_up(Some(e.seq)).await;
                    }
                    self.queue.push_back(e);
                }
                Err(RecvError::Lagged(_)) => self.catch_up(None).await,
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
            queue: VecDeque::new(),
            announced: false,
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

    async fn runs(&self, q: RunQuery) -> Result<Page<RunSummary>> {
        Ok(self.host.runs(q).await?)
    }

    async fn run(&self, id: RunId) -> Result<Run> {
        Ok(self.host.run(id).await?)
    }

    async fn stage_io(&self, id: RunId, stage: &str) -> Result<StageIo> {
        Ok(self.host.stage_io(id, stage).await?)
    }

    async fn dlq(&self) -> Result<Vec<DlqEntry>> {
        Ok(self.host.dlq().await?)
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

    async fn control(&self, cmd: Command, actor: &Actor, reason: &str) -> Result<Outcome> {
        self.host.control(cmd, actor, reason).await
    }
}
