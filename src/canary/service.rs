//! The canaries of one host: each configured rollout restored from the store (or started),
//! driven once a second by the host's clock, fed by its source, and every change saved and
//! logged as an event. Built with the clock, writer, cancellation and task tracker of the
//! host, so it needs nothing else from it; the host's control path audits manual actions.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};

use super::config::{CanaryConfig, RouteKey};
use super::metrics::Totals;
use super::source::{Env, Feed};
use super::{Controller, Persisted, Rollout};
use crate::clock::Clock;
use crate::model::{
    ActionRecord, Actor, AuditRecord, CanaryAction, CanaryAt, CanaryStatus, EventKind, Fault,
    Observation, SeriesPoint, TrafficState, TrafficStatus, Verdict, Version,
};
use crate::store::{NewEvent, Op, Reader, Writer};

/// Seconds a host that fell behind (a suspended laptop) replays at most.
const MAX_CATCH_UP_S: i64 = 10;

/// Seconds-and-version entries of traffic a worker holds for the store at most (a store that
/// does not answer loses the oldest rather than grow the worker's memory).
const OUTBOX_MAX: usize = 600;

/// Why a canary request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanaryError {
    #[error("{0}")]
    NotFound(String),
    /// The canary's state or source does not allow it.
    #[error("{0}")]
    Conflict(String),
}

/// One canary in a host.
#[derive(Debug)]
pub struct LiveCanary {
    pub rollout: Rollout,
    /// Traffic made in the host (`simulate`).
    feed: Option<Box<dyn Feed>>,
    /// When this host began generating traffic: scheduled changes count from here.
    traffic_from: i64,
    /// The verdicts last logged, so an analysis event is written only when they change.
    logged: Vec<(String, Verdict)>,
    /// Traffic this worker's source saw while another worker drives the canaries, by second
    /// and version, until it goes to the store for that worker to merge.
    outbox: std::collections::VecDeque<(i64, Version, Totals)>,
    /// The saved state and status last followed from the driving worker.
    followed: Option<(String, String)>,
}

impl LiveCanary {
    /// Holds one request for the worker that drives the canary.
    fn hold(&mut self, sec: i64, v: Version, latency_ms: f64, error: bool, with_errors: bool) {
        let open = self
            .outbox
            .iter_mut()
            .rev()
            .take(4)
            .find(|(s, w, _)| *s == sec && *w == v);
        if let Some((_, _, t)) = open {
            t.record(latency_ms, error, with_errors);
            return;
        }
        if self.outbox.len() >= OUTBOX_MAX {
            self.outbox.pop_front();
        }
        let mut t = Totals::new();
        t.record(latency_ms, error, with_errors);
        self.outbox.push_back((sec, v, t));
    }
}

/// A canary shared with its source (a proxy routes and records through it).
#[derive(Debug, Clone)]
pub struct Shared {
    cfg: Arc<CanaryConfig>,
    live: Arc<Mutex<LiveCanary>>,
    /// The weight the `traffic` hook should apply, for a canary that has one.
    hook: Option<Arc<tokio::sync::watch::Sender<u32>>>,
    /// Whether this host drives the canary (else its traffic goes to the store).
    lead: Arc<std::sync::atomic::AtomicBool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, LiveCanary> {
        crate::sync::lock(&self.live)
    }

    pub fn name(&self) -> String {
        self.cfg.name.clone()
    }

    pub fn route_key(&self) -> RouteKey {
        self.cfg.route.clone()
    }

    /// Where a request with this route key goes at the current weight.
    pub fn route(&self, key: Option<&str>) -> Version {
        self.lock().rollout.route(key).version
    }

    /// Records one request's outcome in second `sec`: in the rollout where it is driven, else
    /// for the worker that drives it.
    pub fn observe(&self, sec: i64, v: Version, latency_ms: f64, error: bool) {
        let mut l = self.lock();
        self.record(&mut l, sec, v, latency_ms, error);
    }

    fn record(&self, l: &mut LiveCanary, sec: i64, v: Version, latency_ms: f64, error: bool) {
        if self.lead.load(std::sync::atomic::Ordering::Acquire) {
            l.rollout.observe(sec, v, latency_ms, error);
        } else {
            let with_errors = !self.cfg.exclude_errors_from_latency;
            l.hold(sec, v, latency_ms, error, with_errors);
        }
    }

    /// Records what a metrics backend counted for one version over its last interval.
    pub fn record_counts(&self, sec: i64, v: Version, c: &super::source::prometheus::Counts) {
        self.lock()
            .rollout
            .metrics
            .record_counts(sec, v, c.requests, c.errors, &c.buckets);
    }

    /// Hands a changed weight to the `traffic` hook; until it reports back, the rollout waits.
    fn follow_weight(&self, l: &mut LiveCanary) {
        let (Some(tx), Some(t)) = (&self.hook, &self.cfg.traffic) else {
            return;
        };
        let w = l.rollout.ctl.weight_bp();
        if tx.send_if_modified(|old| std::mem::replace(old, w) != w) {
            l.rollout.ctl.traffic = Some(TrafficStatus::applying(t.via(), w));
        }
    }

    /// What the `traffic` hook made of `weight_bp`; ignored when the weight has moved on.
    pub fn traffic_outcome(
        &self,
        weight_bp: u32,
        state: TrafficState,
        attempts: u32,
        message: Option<String>,
        now: i64,
    ) {
        let mut l = self.lock();
        if l.rollout.ctl.weight_bp() != weight_bp {
            return;
        }
        if let Some(t) = l.rollout.ctl.traffic.as_mut() {
            t.state = state;
            t.attempts = attempts;
            t.message = message;
            t.at = Some(super::controller::ts(now));
        }
    }

    /// Says whether the metrics backend is usable (`None`) or what is wrong with it; while it
    /// is not, promotion waits, and after `pause_after` the analysis pauses.
    pub fn set_upstream(
        &self,
        now: i64,
        problem: Option<String>,
        pause_after: std::time::Duration,
    ) {
        let mut l = self.lock();
        l.rollout.ctl.upstream = problem.map(|problem| {
            let since = l.rollout.ctl.upstream.as_ref().map_or(now, |u| u.since);
            super::controller::Upstream {
                since,
                problem,
                pause_after_s: pause_after.as_secs(),
            }
        });
    }
}

/// What the service is built with: the host's clock, store writer and task lifetime.
#[derive(Clone)]
pub struct Deps {
    pub clock: Arc<dyn Clock>,
    pub writer: Writer,
    pub shutdown: tokio_util::sync::CancellationToken,
    pub tasks: tokio_util::task::TaskTracker,
    /// The workspace directory: hook commands run there, as stage commands do.
    pub dir: std::path::PathBuf,
    /// Several workers share the store (PostgreSQL): the driving worker merges the traffic
    /// the others' sources saw.
    pub several: bool,
    /// Whether this host drives the canaries. False on a worker while another worker on the
    /// same store leads them: commands are refused here until it takes over.
    pub lead: Arc<std::sync::atomic::AtomicBool>,
}

/// Every canary of a host. The list is fixed when the host starts; clones share it.
#[derive(Clone)]
pub struct CanaryService {
    list: Vec<Shared>,
    configs: Vec<Arc<CanaryConfig>>,
    deps: Deps,
    seed: u64,
    /// The sources (a proxy's listener) are started, by following or by leading.
    sources: Arc<std::sync::atomic::AtomicBool>,
}

impl CanaryService {
    /// Commands act where the canaries are driven.
    fn lead(&self) -> Result<(), CanaryError> {
        if !self.deps.lead.load(std::sync::atomic::Ordering::Acquire) {
            return Err(CanaryError::Conflict(
                "another worker on this store drives the canaries; send canary commands to it (`opsdeck workers` lists the workers and their addresses)".into(),
            ));
        }
        Ok(())
    }
}

fn save_op(l: &LiveCanary, now: i64) -> Op {
    Op::SaveCanary {
        name: l.rollout.ctl.cfg.name.clone(),
        state: serde_json::to_string(&l.rollout.ctl.st).unwrap_or_default(),
        status: serde_json::to_string(&l.rollout.status()).unwrap_or_default(),
        at: super::controller::ts(now),
    }
}

/// The saved state after an action and its `canary_action` event.
fn action_ops(l: &LiveCanary, rec: &ActionRecord, now: i64) -> Vec<Op> {
    let mut data = serde_json::to_value(rec).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut data {
        m.insert("canary".into(), json!(l.rollout.ctl.cfg.name));
    }
    vec![
        save_op(l, now),
        Op::Event(NewEvent {
            at: rec.at,
            kind: EventKind::CanaryAction,
            run_id: None,
            stage: None,
            data,
        }),
    ]
}

/// The audit details of a canary action: the states and weights around it and the analysis
/// that stood at that moment.
pub fn audit_details(rec: &ActionRecord) -> Value {
    json!({
        "state_before": rec.state_before, "state_after": rec.state_after,
        "weight_before": rec.weight_before, "weight_after": rec.weight_after,
        "analysis": rec.analysis,
    })
}

/// An automatic action, audited like a manual one but with opsdeck as the actor.
fn automatic_ops(l: &LiveCanary, rec: &ActionRecord, now: i64) -> Vec<Op> {
    let actor = Actor::automatic();
    // Manual actions are logged by the control path; the judge's own go to the log here, so
    // the log of an incident shows the rollback that ended it.
    let canary = l.rollout.ctl.cfg.name.as_str();
    let (from, to) = (rec.weight_before, rec.weight_after);
    if rec.action == "rollback" {
        tracing::warn!(canary, weight_before = from, reason = %rec.reason, "canary rolled back automatically");
    } else {
        tracing::info!(canary, action = %rec.action, weight_before = from, weight_after = to, reason = %rec.reason, "canary action");
    }
    let mut ops = action_ops(l, rec, now);
    ops.extend(Op::audited(
        AuditRecord {
            at: rec.at,
            actor: actor.name,
            role: Some(actor.role),
            via: Some(actor.via),
            action: format!("canary.{}", rec.action),
            target: format!("canary/{}", l.rollout.ctl.cfg.name),
            reason: rec.reason.clone(),
            outcome: "ok".into(),
            details: audit_details(rec),
        },
        None,
    ));
    ops
}

fn restore(
    cfg: &Arc<CanaryConfig>,
    row: Option<&(String, String, String)>,
    now: i64,
) -> Controller {
    // The last analysis stays on show (for an ended rollout, the one that decided it) until a
    // new one runs.
    Controller::restored(
        cfg.clone(),
        row.map(|(_, state, _)| state.as_str()),
        row.map(|(_, _, status)| status.as_str()),
        now,
    )
}

impl CanaryService {
    /// Restores saved rollouts of `configs` and starts the others now. Returns the writes
    /// that record what was started.
    pub fn load(
        configs: &[Arc<CanaryConfig>],
        reader: &Reader,
        deps: Deps,
        seed: u64,
    ) -> (CanaryService, Vec<Op>) {
        let now = deps.clock.now().timestamp();
        let saved = reader.canaries().unwrap_or_default();
        let mut list = Vec::new();
        let mut ops = Vec::new();
        for (i, cfg) in configs.iter().enumerate() {
            let row = saved.iter().find(|(n, _, _)| *n == cfg.name);
            let fresh =
                row.is_none_or(|(_, state, _)| serde_json::from_str::<Persisted>(state).is_err());
            let live = LiveCanary {
                rollout: Rollout::resume(restore(cfg, row, now), seed.wrapping_add(i as u64)),
                feed: cfg.source.feed(seed),
                traffic_from: now,
                logged: Vec::new(),
                outbox: std::collections::VecDeque::new(),
                followed: None,
            };
            if fresh {
                ops.push(save_op(&live, now));
                ops.push(Op::Event(NewEvent {
                    at: super::controller::ts(now),
                    kind: EventKind::CanaryStarted,
                    run_id: None,
                    stage: None,
                    data: json!({"canary": cfg.name, "weight": f64::from(live.rollout.ctl.weight_bp()) / 100.0, "source": cfg.source.name()}),
                }));
            }
            let mut live = live;
            let hook = cfg.traffic.as_ref().map(|t| {
                let w = live.rollout.ctl.weight_bp();
                live.rollout.ctl.traffic = Some(TrafficStatus::applying(t.via(), w));
                Arc::new(tokio::sync::watch::Sender::new(w))
            });
            list.push(Shared {
                cfg: cfg.clone(),
                live: Arc::new(Mutex::new(live)),
                hook,
                lead: deps.lead.clone(),
            });
        }
        let service = CanaryService {
            list,
            configs: configs.to_vec(),
            deps,
            seed,
            sources: Arc::default(),
        };
        (service, ops)
    }

    /// The worker that drove the canaries stopped and this one took their lead: each canary
    /// goes on from the state its last leader saved (no second start, promotion or rollback).
    /// Returns the writes for canaries that had none saved; commit them, then [`Self::start`].
    pub fn take_over(&self, reader: &Reader) -> Vec<Op> {
        let (saved, ops) = CanaryService::load(&self.configs, reader, self.deps.clone(), self.seed);
        for (mine, theirs) in self.list.iter().zip(&saved.list) {
            std::mem::swap(&mut *mine.lock(), &mut *theirs.lock());
        }
        self.deps
            .lead
            .store(true, std::sync::atomic::Ordering::Release);
        ops
    }

    /// Starts the canaries in a long-lived host: restarts ended demo rollouts, starts each
    /// source (a proxy's listener), and drives every canary once a second.
    pub async fn start(&self) -> Result<(), String> {
        let now = self.deps.clock.now().timestamp();
        let ops = self.restart_ended(now);
        self.deps.writer.commit(ops).await.map_err(|e| e.0)?;
        self.start_sources()?;
        for c in &self.list {
            if let (Some(tx), Some(t)) = (&c.hook, &c.cfg.traffic) {
                let worker =
                    super::traffic::worker(t.clone(), c.clone(), tx.subscribe(), self.deps.clone());
                self.deps.tasks.spawn(worker);
            }
        }
        self.start_clock(now);
        if self.deps.several && !self.list.is_empty() {
            let me = self.clone();
            self.deps.tasks.spawn(async move { me.merge_loop().await });
        }
        Ok(())
    }

    /// Starts each canary's source once (a proxy's listener), whether this host leads or
    /// follows.
    fn start_sources(&self) -> Result<(), String> {
        if self.sources.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return Ok(());
        }
        let env = Env {
            clock: self.deps.clock.clone(),
            shutdown: self.deps.shutdown.clone(),
            tasks: self.deps.tasks.clone(),
        };
        for c in &self.list {
            c.cfg.source.start(c, &env)?;
        }
        Ok(())
    }

    /// A worker that does not drive the canaries still serves their traffic: its sources (a
    /// proxy's listener) run, routing at the weight the driving worker saved, and the traffic
    /// they see goes to the store once a second, where the driving worker merges it.
    pub fn follow(&self, reads: crate::store::ReadPool, worker: String) -> Result<(), String> {
        if self.list.is_empty() {
            return Ok(());
        }
        self.start_sources()?;
        let me = self.clone();
        self.deps
            .tasks
            .spawn(async move { me.follow_loop(reads, worker).await });
        Ok(())
    }

    async fn follow_loop(self, reads: crate::store::ReadPool, worker: String) {
        loop {
            let stopping = tokio::select! {
                () = self.deps.shutdown.cancelled() => true,
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => false,
            };
            let lead = self.deps.lead.load(std::sync::atomic::Ordering::Acquire);
            let now = self.deps.clock.now().timestamp();
            if !lead && !stopping {
                match reads.with(Reader::canaries).await {
                    Ok(rows) => self.follow_states(&rows, now),
                    Err(e) => tracing::warn!(error = %e, "could not read the canaries' state"),
                }
            }
            // Closed seconds only, unless this is the last shipment.
            let before = if lead || stopping { i64::MAX } else { now };
            let seconds = self.ship(before);
            if !seconds.is_empty() {
                self.deps
                    .writer
                    .send(vec![Op::CanarySeconds {
                        worker: worker.clone(),
                        seconds,
                    }])
                    .await;
            }
            if lead || stopping {
                return;
            }
        }
    }

    /// Takes each canary's state as the driving worker last saved it (its weight routes this
    /// worker's traffic).
    fn follow_states(&self, rows: &[(String, String, String)], now: i64) {
        for c in &self.list {
            let Some(row) = rows.iter().find(|(n, _, _)| *n == c.cfg.name) else {
                continue;
            };
            let mut l = c.lock();
            let seen = (row.1.clone(), row.2.clone());
            if l.followed.as_ref() != Some(&seen) {
                l.rollout.ctl = restore(&c.cfg, Some(row), now);
                l.followed = Some(seen);
            }
        }
    }

    /// The held traffic of seconds before `before`, as rows for the store.
    fn ship(&self, before: i64) -> Vec<(String, i64, Version, String)> {
        let mut out = Vec::new();
        for c in &self.list {
            let mut l = c.lock();
            while l.outbox.front().is_some_and(|(s, _, _)| *s < before) {
                if let Some((sec, v, t)) = l.outbox.pop_front() {
                    let saved = serde_json::to_string(&t.save()).unwrap_or_default();
                    out.push((c.cfg.name.clone(), sec, v, saved));
                }
            }
        }
        out
    }

    /// On the driving worker: once a second, merges the traffic other workers' sources saw.
    async fn merge_loop(self) {
        loop {
            tokio::select! {
                () = self.deps.shutdown.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
            let taken = match self
                .deps
                .writer
                .on_conn(crate::store::workers::take_canary_seconds)
                .await
            {
                Ok(taken) => taken,
                Err(e) => {
                    tracing::warn!(error = %e, "could not take other workers' canary traffic");
                    continue;
                }
            };
            let now = self.deps.clock.now().timestamp();
            for (name, sec, version, totals) in taken {
                // A second from another worker is counted no later than this one's now: one
                // from the future would take the place of every second until then.
                let sec = sec.min(now);
                let (Some(c), Ok(v), Ok(saved)) = (
                    self.list.iter().find(|c| c.cfg.name == name),
                    version.parse::<Version>(),
                    serde_json::from_str::<super::metrics::SavedTotals>(&totals),
                ) else {
                    continue;
                };
                c.lock()
                    .rollout
                    .metrics
                    .record_totals(sec, v, &Totals::restore(&saved));
            }
        }
    }

    fn find(&self, name: &str) -> Result<&Shared, CanaryError> {
        self.list
            .iter()
            .find(|c| c.cfg.name == name)
            .ok_or_else(|| {
                CanaryError::NotFound(
                    super::config::find(&self.configs, name)
                        .err()
                        .unwrap_or_default(),
                )
            })
    }

    pub fn statuses(&self) -> Vec<CanaryStatus> {
        self.list
            .iter()
            .map(|c| c.lock().rollout.status())
            .collect()
    }

    pub fn status(&self, name: &str) -> Result<CanaryStatus, CanaryError> {
        Ok(self.find(name)?.lock().rollout.status())
    }

    /// The canary's current weight in percent, for external routers.
    pub fn weight(&self, name: &str) -> Result<f64, CanaryError> {
        Ok(self.status(name)?.weight)
    }

    /// Chart points: `points` steps of `step_s` seconds ending now.
    pub fn series(
        &self,
        name: &str,
        step_s: i64,
        points: usize,
    ) -> Result<Vec<SeriesPoint>, CanaryError> {
        let now = self.deps.clock.now().timestamp();
        Ok(self.find(name)?.lock().rollout.series(now, step_s, points))
    }

    /// A manual action: the record and the writes that save it (state and event). The caller
    /// commits them with the audit record. With `expect`, the action applies only while the
    /// canary still stands where the person saw it.
    pub fn act(
        &self,
        name: &str,
        action: CanaryAction,
        expect: Option<CanaryAt>,
        (actor, reason): (&str, &str),
    ) -> Result<(ActionRecord, Vec<Op>), CanaryError> {
        self.lead()?;
        let now = self.deps.clock.now().timestamp();
        let shared = self.find(name)?;
        let mut l = shared.lock();
        if let Some(seen) = expect {
            let ctl = &l.rollout.ctl;
            let at = CanaryAt {
                state: ctl.state(),
                step: ctl.st.step,
                weight: f64::from(ctl.weight_bp()) / 100.0,
            };
            if at != seen {
                return Err(CanaryError::Conflict(format!(
                    "canary {name} moved since the dialog opened: it was {} at step {} ({}%), it is now {} at step {} ({}%); nothing was done, look again and decide anew",
                    seen.state,
                    seen.step + 1,
                    seen.weight,
                    at.state,
                    at.step + 1,
                    at.weight
                )));
            }
        }
        let rec = l
            .rollout
            .act(action, actor, reason, now)
            .map_err(|e| CanaryError::Conflict(e.0))?;
        shared.follow_weight(&mut l);
        let ops = action_ops(&l, &rec, now);
        Ok((rec, ops))
    }

    /// Adds a fault to a simulated canary (or clears it with the default).
    pub fn inject(&self, name: &str, fault: Fault) -> Result<(), CanaryError> {
        self.lead()?;
        let shared = self.find(name)?;
        let mut l = shared.lock();
        match l.feed.as_mut() {
            Some(f) => {
                f.inject(fault);
                Ok(())
            }
            None => Err(CanaryError::Conflict(format!(
                "canary {name} takes real traffic ({}); faults can only be injected into simulated canaries",
                shared.cfg.source.name()
            ))),
        }
    }

    /// Records observations from an external router, all in the current second.
    pub fn ingest(&self, name: &str, batch: &[Observation]) -> Result<u64, CanaryError> {
        let shared = self.find(name)?;
        if !shared.cfg.source.takes_observations() {
            return Err(CanaryError::Conflict(format!(
                "canary {name} has source `{}`; only `ingest` canaries take observations",
                shared.cfg.source.name()
            )));
        }
        let now = self.deps.clock.now().timestamp();
        let mut l = shared.lock();
        for o in batch {
            shared.record(&mut l, now, o.version, o.latency_ms, o.error);
        }
        Ok(batch.len() as u64)
    }

    /// Restarts rollouts that ended, when their source asks for it (the demo).
    fn restart_ended(&self, now: i64) -> Vec<Op> {
        let mut ops = Vec::new();
        for c in &self.list {
            let mut l = c.lock();
            let restarts = l.feed.as_ref().is_some_and(|f| f.restarts_ended());
            if restarts
                && l.rollout.ctl.state().is_final()
                && let Ok(rec) = l.rollout.act(
                    CanaryAction::Restart,
                    super::controller::AUTOMATIC,
                    "a new host started this simulated rollout again (restart_ended)",
                    now,
                )
            {
                ops.extend(automatic_ops(&l, &rec, now));
                c.follow_weight(&mut l);
            }
        }
        ops
    }

    /// One second of every canary: fed traffic, then analysis and automatic actions.
    /// Returns the writes to make (saved state, events, audit records).
    fn second(&self, now: i64) -> Vec<Op> {
        let mut ops = Vec::new();
        for c in &self.list {
            let mut guard = c.lock();
            let l = &mut *guard;
            if let Some(f) = l.feed.as_mut() {
                let t_s = (now - l.traffic_from.max(l.rollout.ctl.st.started_at)).max(0) as u64;
                f.second(&mut l.rollout, now, t_s);
            }
            let acted = l.rollout.tick(now);
            c.follow_weight(l);
            if let Some(rec) = &acted {
                ops.extend(automatic_ops(l, rec, now));
            } else if l.rollout.ctl.analysis_at == Some(now) {
                ops.push(save_op(l, now));
            }
            if l.rollout.ctl.analysis_at == Some(now) {
                ops.extend(analysis_event(l, now));
            }
        }
        ops
    }

    /// Drives the canaries once a second of the host's clock (a manual clock in tests moves
    /// them only when advanced).
    fn start_clock(&self, start: i64) {
        if self.list.is_empty() {
            return;
        }
        let me = self.clone();
        self.deps
            .tasks
            .spawn(async move { me.clock_loop(start).await });
    }

    async fn clock_loop(self, start: i64) {
        let (clock, shutdown) = (self.deps.clock.clone(), self.deps.shutdown.clone());
        let mut last = start;
        loop {
            // Sleep until the second after the last one served; if the clock is already
            // there (a manual clock moved before this task got to sleep), do not sleep.
            let now_ms = clock.now().timestamp_millis();
            let due_ms = (last + 1).saturating_mul(1_000);
            if now_ms < due_ms {
                let wait = std::time::Duration::from_millis((due_ms - now_ms) as u64);
                // A manual clock may move between reading it and sleeping on it: look again
                // at least four times a second of real time, so no second is ever slept past.
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = clock.sleep(wait) => {}
                    () = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
                }
            } else if shutdown.is_cancelled() {
                break;
            }
            let now = clock.now().timestamp();
            if now <= last {
                continue;
            }
            let from = (last + 1).max(now - MAX_CATCH_UP_S + 1);
            let ops: Vec<Op> = (from..=now).flat_map(|s| self.second(s)).collect();
            last = now;
            if !ops.is_empty() {
                self.deps.writer.send(ops).await;
            }
        }
    }
}

/// A `canary_analysis` event when the verdicts changed since the last one logged.
fn analysis_event(l: &mut LiveCanary, now: i64) -> Option<Op> {
    let verdicts: Vec<(String, Verdict)> = l
        .rollout
        .ctl
        .checks
        .iter()
        .map(|c| (c.name.clone(), c.verdict))
        .collect();
    if verdicts == l.logged {
        return None;
    }
    l.logged = verdicts;
    Some(Op::Event(NewEvent {
        at: super::controller::ts(now),
        kind: EventKind::CanaryAnalysis,
        run_id: None,
        stage: None,
        data: json!({
            "canary": l.rollout.ctl.cfg.name,
            "state": l.rollout.ctl.state(),
            "weight": f64::from(l.rollout.ctl.weight_bp()) / 100.0,
            "checks": l.rollout.ctl.checks,
        }),
    }))
}

/// Statuses as a reader sees them while another process hosts (or nobody does): the saved
/// status of each configured canary, or its first step when it never ran.
pub fn saved_statuses(configs: &[Arc<CanaryConfig>], reader: &Reader) -> Vec<CanaryStatus> {
    let saved = reader.canaries().unwrap_or_default();
    configs
        .iter()
        .map(|cfg| {
            saved
                .iter()
                .find(|(n, _, _)| *n == cfg.name)
                .and_then(|(_, _, status)| serde_json::from_str::<CanaryStatus>(status).ok())
                .map_or_else(
                    || {
                        let now = chrono::Utc::now().timestamp();
                        let r = Rollout::new(cfg.clone(), now, 0);
                        let mut s = r.status();
                        s.outcome = Some(
                            "not started: no host has run this workspace since it was configured"
                                .into(),
                        );
                        s
                    },
                    |mut s| {
                        // The saved status was written by a host; config changes since show.
                        s.source = cfg.source.name().into();
                        s
                    },
                )
        })
        .collect()
}
