//! Canaries in a host: each configured rollout restored from the store (or started), driven
//! once a second by the host's clock, fed by its source, and every action saved, logged as an
//! event and audited before it is reported done.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};

use super::config::{CanaryConfig, Source};
use super::simulate::{Fault, Traffic};
use super::{Controller, Persisted, Rollout};
use crate::model::{
    ActionRecord, CanaryAction, CanaryState, CanaryStatus, EventKind, SeriesPoint, Verdict, Version,
};
use crate::store::{AuditRecord, NewEvent, Op, Reader};

/// Seconds a host that fell behind (a suspended laptop) replays at most.
const MAX_CATCH_UP_S: i64 = 10;

/// One observation from an external router (the `ingest` source).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Observation {
    pub version: Version,
    pub latency_ms: u64,
    pub error: bool,
}

/// One canary in a host.
#[derive(Debug)]
pub struct LiveCanary {
    pub rollout: Rollout,
    /// Built-in traffic for `simulate` canaries.
    pub traffic: Option<Traffic>,
    /// When this host began generating traffic: scheduled changes count from here.
    pub traffic_from: i64,
    /// The verdicts last logged, so an analysis event is written only when they change.
    logged: Vec<(String, Verdict)>,
}

/// Every canary of a host. The list is fixed when the host starts.
#[derive(Debug, Default)]
pub struct Canaries {
    list: Vec<(Arc<CanaryConfig>, Arc<Mutex<LiveCanary>>)>,
}

/// Locks one canary; a poisoned lock (a panic elsewhere) still holds usable data.
pub fn lock(c: &Mutex<LiveCanary>) -> MutexGuard<'_, LiveCanary> {
    c.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn save_op(l: &LiveCanary, now: i64) -> Op {
    Op::SaveCanary {
        name: l.rollout.ctl.cfg.name.clone(),
        state: serde_json::to_string(&l.rollout.ctl.st).unwrap_or_default(),
        status: serde_json::to_string(&l.rollout.status()).unwrap_or_default(),
        at: super::controller::ts(now),
    }
}

/// The event and audit record of an action, and the saved state after it.
pub fn action_ops(l: &LiveCanary, rec: &ActionRecord, role: Option<&str>, now: i64) -> Vec<Op> {
    let name = &l.rollout.ctl.cfg.name;
    let mut data = serde_json::to_value(rec).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut data {
        m.insert("canary".into(), json!(name));
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
        Op::Audit(AuditRecord {
            at: rec.at,
            actor: rec.actor.clone(),
            role: role.map(str::to_string),
            action: format!("canary.{}", rec.action),
            target: format!("canary/{name}"),
            reason: rec.reason.clone(),
            outcome: "ok".into(),
            details: json!({
                "state_before": rec.state_before, "state_after": rec.state_after,
                "weight_before": rec.weight_before, "weight_after": rec.weight_after,
                "analysis": rec.analysis,
            }),
        }),
    ]
}

impl Canaries {
    /// Restores saved rollouts of `configs` and starts the others at `now`. Returns the
    /// writes that record what was started.
    pub fn load(
        configs: &[Arc<CanaryConfig>],
        reader: &Reader,
        now: i64,
        seed: u64,
    ) -> (Canaries, Vec<Op>) {
        let saved = reader.canaries().unwrap_or_default();
        let mut list = Vec::new();
        let mut ops = Vec::new();
        for (i, cfg) in configs.iter().enumerate() {
            let row = saved.iter().find(|(n, _, _)| *n == cfg.name);
            let restored =
                row.and_then(|(_, state, _)| serde_json::from_str::<Persisted>(state).ok());
            let fresh = restored.is_none();
            let ctl = match restored {
                Some(st) => {
                    let mut ctl = Controller::restore(cfg.clone(), st);
                    // The last analysis stays on show (for an ended rollout, the one that
                    // decided it) until a new one runs.
                    if let Some(s) = row.and_then(|(_, _, status)| {
                        serde_json::from_str::<CanaryStatus>(status).ok()
                    }) {
                        ctl.checks = s.checks;
                        ctl.triggers = s.triggers;
                        ctl.analysis_at = s.analysis_at.map(|t| t.millis().div_euclid(1000));
                    }
                    ctl
                }
                None => Controller::new(cfg.clone(), now),
            };
            let traffic = match &cfg.source {
                Source::Simulate(sim) => Some(Traffic::new(sim.clone(), sim.seed ^ seed)),
                _ => None,
            };
            let live = LiveCanary {
                rollout: Rollout::resume(ctl, seed.wrapping_add(i as u64)),
                traffic,
                traffic_from: now,
                logged: Vec::new(),
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
            list.push((cfg.clone(), Arc::new(Mutex::new(live))));
        }
        (Canaries { list }, ops)
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Mutex<LiveCanary>>> {
        self.list
            .iter()
            .find(|(c, _)| c.name == name)
            .map(|(_, l)| l)
    }

    pub fn all(&self) -> impl Iterator<Item = (&Arc<CanaryConfig>, &Arc<Mutex<LiveCanary>>)> {
        self.list.iter().map(|(c, l)| (c, l))
    }

    pub fn statuses(&self) -> Vec<CanaryStatus> {
        self.list
            .iter()
            .map(|(_, l)| lock(l).rollout.status())
            .collect()
    }

    /// Restarts simulated rollouts that ended, when their config asks for it (the demo).
    pub fn restart_ended(&self, now: i64) -> Vec<Op> {
        let mut ops = Vec::new();
        for (cfg, l) in &self.list {
            let Source::Simulate(sim) = &cfg.source else {
                continue;
            };
            let mut l = lock(l);
            if sim.restart_ended
                && l.rollout.ctl.state().is_final()
                && let Ok(rec) = l.rollout.act(
                    CanaryAction::Restart,
                    super::controller::AUTOMATIC,
                    "a new host started this simulated rollout again (restart_ended)",
                    now,
                )
            {
                ops.extend(action_ops(&l, &rec, None, now));
            }
        }
        ops
    }

    /// One second of every canary: simulated traffic, then analysis and automatic actions.
    /// Returns the writes to make (saved state, events, audit records).
    pub fn second(&self, now: i64) -> Vec<Op> {
        let mut ops = Vec::new();
        for (_, l) in &self.list {
            let mut guard = lock(l);
            let l = &mut *guard;
            if let Some(t) = l.traffic.as_mut() {
                let t_s = (now - l.traffic_from.max(l.rollout.ctl.st.started_at)).max(0) as u64;
                t.second(&mut l.rollout, now, t_s);
            }
            let acted = l.rollout.tick(now);
            if let Some(rec) = &acted {
                ops.extend(action_ops(l, rec, None, now));
            } else if l.rollout.ctl.analysis_at == Some(now) {
                ops.push(save_op(l, now));
            }
            if l.rollout.ctl.analysis_at == Some(now) {
                let verdicts: Vec<(String, Verdict)> = l
                    .rollout
                    .ctl
                    .checks
                    .iter()
                    .map(|c| (c.name.clone(), c.verdict))
                    .collect();
                if verdicts != l.logged {
                    l.logged = verdicts;
                    ops.push(Op::Event(NewEvent {
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
                    }));
                }
            }
        }
        ops
    }

    /// Runs [`Canaries::second`] for every second after `last` up to `now` (at most a few).
    pub fn catch_up(&self, last: i64, now: i64) -> Vec<Op> {
        let from = (last + 1).max(now - MAX_CATCH_UP_S + 1);
        (from..=now).flat_map(|s| self.second(s)).collect()
    }

    /// Adds a fault to a simulated canary (or clears it with the default).
    pub fn inject(&self, name: &str, fault: Fault) -> Result<(), String> {
        let l = self
            .get(name)
            .ok_or_else(|| format!("there is no canary `{name}`"))?;
        let mut l = lock(l);
        match l.traffic.as_mut() {
            Some(t) => {
                t.fault = fault;
                Ok(())
            }
            None => Err(format!(
                "canary {name} takes real traffic ({}); faults can only be injected into simulated canaries",
                l.rollout.ctl.cfg.source.name()
            )),
        }
    }

    /// Records observations from an external router, all in second `now`.
    pub fn ingest(&self, name: &str, batch: &[Observation], now: i64) -> Result<u64, String> {
        let l = self
            .get(name)
            .ok_or_else(|| format!("there is no canary `{name}`"))?;
        let mut l = lock(l);
        if !matches!(l.rollout.ctl.cfg.source, Source::Ingest) {
            return Err(format!(
                "canary {name} has source `{}`; only `ingest` canaries take observations",
                l.rollout.ctl.cfg.source.name()
            ));
        }
        for o in batch {
            l.rollout.observe(now, o.version, o.latency_ms, o.error);
        }
        Ok(batch.len() as u64)
    }

    /// The series for charts: `points` steps of `step_s` ending at `now`.
    pub fn series(
        &self,
        name: &str,
        now: i64,
        step_s: i64,
        points: usize,
    ) -> Option<Vec<SeriesPoint>> {
        self.get(name)
            .map(|l| lock(l).rollout.series(now, step_s, points))
    }
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

/// Whether a rollback (automatic or manual) is the latest word on this canary.
pub fn rolled_back(s: &CanaryStatus) -> bool {
    s.state == CanaryState::RolledBack
}
