//! The rollout state machine: steps with pauses, analysis every interval, automatic promotion
//! and rollback, and the manual actions. Time is whole seconds on whatever clock the caller
//! runs (wall time live, virtual time in drills), so both run the same code.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, json};

use super::analysis::{self, Held};
use super::config::CanaryConfig;
use super::detect::Detectors;
use super::metrics::{Metrics, SavedTotals};
use super::router::FULL;
use crate::model::{
    ActionRecord, CanaryAction, CanaryState, CanaryStatus, Check, StepInfo, Timestamp,
    TrafficState, TrafficStatus, TriggerStatus, Verdict, Version,
};

/// Who automatic actions are recorded as.
pub const AUTOMATIC: &str = crate::model::AUTOMATIC_ACTOR;

/// What survives a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    pub state: CanaryState,
    pub step: usize,
    pub weight_bp: u32,
    pub started_at: i64,
    pub step_started_at: i64,
    pub last_action: Option<ActionRecord>,
    pub outcome: Option<String>,
    /// Seconds spent in this step, counted by the host's ticks (the wall clock may step).
    #[serde(default)]
    pub step_elapsed_s: u64,
    /// The evidence so far, saved with every analysis, so a restart carries on from it
    /// rather than spending a fresh error budget on a shorter step.
    #[serde(default)]
    pub evidence: Option<Evidence>,
}

/// What the checks and triggers have learned: traffic totals since the rollout began, the
/// e-processes and change detectors, and how long sustained triggers have held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub legacy: SavedTotals,
    pub canary: SavedTotals,
    pub detectors: Detectors,
    pub held: Held,
}

/// A metrics backend that cannot be used: since when, why, and how long before the analysis
/// pauses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub since: i64,
    pub problem: String,
    pub pause_after_s: u64,
}

impl Upstream {
    fn paused(&self, now: i64) -> bool {
        now - self.since >= self.pause_after_s as i64
    }
}

#[derive(Debug, Clone)]
pub struct Controller {
    pub cfg: Arc<CanaryConfig>,
    pub st: Persisted,
    pub checks: Vec<Check>,
    pub triggers: Vec<TriggerStatus>,
    pub analysis_at: Option<i64>,
    held: Held,
    det: Detectors,
    /// Ticks since the last analysis (`None` before the first).
    since_analysis: Option<u64>,
    /// The latest second seen: time used for metrics never goes back.
    wall: i64,
    /// The metrics backend cannot be used now (`prometheus` source).
    pub upstream: Option<Upstream>,
    /// Where the `traffic` hook stands, for a canary that has one.
    pub traffic: Option<TrafficStatus>,
}

/// Why an action was refused: a sentence naming the state and what would work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

pub fn ts(sec: i64) -> Timestamp {
    Timestamp::from_millis(sec.saturating_mul(1000))
}

fn percent(bp: u32) -> f64 {
    f64::from(bp) / 100.0
}

impl Controller {
    /// A rollout starting now at its first step.
    pub fn new(cfg: Arc<CanaryConfig>, now: i64) -> Controller {
        let weight_bp = cfg.steps.first().map_or(0, |s| s.weight_bp);
        let st = Persisted {
            state: CanaryState::Progressing,
            step: 0,
            weight_bp,
            started_at: now,
            step_started_at: now,
            last_action: None,
            outcome: None,
            step_elapsed_s: 0,
            evidence: None,
        };
        Controller::restore(cfg, st)
    }

    /// A rollout as it was saved; a step past the configured ones is clamped to the last.
    pub fn restore(cfg: Arc<CanaryConfig>, mut st: Persisted) -> Controller {
        st.step = st.step.min(cfg.steps.len().saturating_sub(1));
        let (det, held) = st
            .evidence
            .as_ref()
            .map_or_else(Default::default, |e| (e.detectors, e.held));
        Controller {
            cfg,
            st,
            checks: Vec::new(),
            triggers: Vec::new(),
            analysis_at: None,
            held,
            det,
            since_analysis: None,
            wall: i64::MIN,
            upstream: None,
            traffic: None,
        }
    }

    /// A rollout as a host saved it (`state`, and the `status` whose checks stay on show until
    /// the next analysis), or a new one starting now when nothing usable was saved.
    pub fn restored(
        cfg: Arc<CanaryConfig>,
        state: Option<&str>,
        status: Option<&str>,
        now: i64,
    ) -> Controller {
        let Some(st) = state.and_then(|s| serde_json::from_str::<Persisted>(s).ok()) else {
            return Controller::new(cfg, now);
        };
        let mut ctl = Controller::restore(cfg, st);
        if let Some(s) = status.and_then(|s| serde_json::from_str::<CanaryStatus>(s).ok()) {
            ctl.checks = s.checks;
            ctl.triggers = s.triggers;
            ctl.analysis_at = s.analysis_at.map(|t| t.millis().div_euclid(1000));
        }
        ctl
    }

    /// `now`, but never before a second already seen: a wall clock stepping back neither
    /// reorders the metrics nor freezes the analysis (which counts ticks).
    fn clock(&mut self, now: i64) -> i64 {
        self.wall = self.wall.max(now);
        self.wall
    }

    pub fn weight_bp(&self) -> u32 {
        self.st.weight_bp
    }

    pub fn state(&self) -> CanaryState {
        self.st.state
    }

    /// Runs the checks and triggers now, and keeps what they learned for a restart.
    pub fn analyze(&mut self, m: &Metrics, now: i64) {
        let elapsed = self.since_analysis.unwrap_or(0);
        self.checks = analysis::checks(m, now, &self.cfg, &mut self.det);
        self.triggers = analysis::triggers(m, now, &self.cfg, &mut self.held, elapsed);
        self.analysis_at = Some(now);
        self.since_analysis = Some(0);
        self.st.evidence = Some(Evidence {
            legacy: m.epoch(Version::Legacy).save(),
            canary: m.epoch(Version::Canary).save(),
            detectors: self.det,
            held: self.held,
        });
    }

    /// Whether the rollout must wait before its step's time counts and it may promote: its
    /// metrics cannot be had, or its traffic hook has not applied the weight yet.
    fn waiting(&self) -> bool {
        self.upstream.is_some()
            || self.traffic.as_ref().is_some_and(|t| {
                t.state != TrafficState::Applied
                    || (t.weight * 100.0 - f64::from(self.st.weight_bp)).abs() >= 0.5
            })
    }

    /// Called every second: analyses when an interval has passed, then rolls back on a failed
    /// check or a fired trigger, or advances a step whose pause is over and whose checks pass.
    pub fn tick(&mut self, m: &mut Metrics, now: i64) -> Option<ActionRecord> {
        let now = self.clock(now);
        if self.st.state.is_final() {
            return None;
        }
        // Without usable metrics the rollout neither moves nor counts its step's time, and
        // after `pause_after` the analysis waits too (its numbers would be stale).
        if self.upstream.as_ref().is_some_and(|u| u.paused(now)) {
            return None;
        }
        if !self.waiting() {
            self.st.step_elapsed_s = self.st.step_elapsed_s.saturating_add(1);
        }
        self.since_analysis = self.since_analysis.map(|t| t.saturating_add(1));
        // The e-processes and the bounds are looked at every second; once one crosses, the
        // analysis runs now rather than at the next interval.
        analysis::bet(m, now, &self.cfg, &mut self.det);
        let crossed = self.st.weight_bp > 0
            && (analysis::evidence_crossed(&self.det, &self.cfg)
                || analysis::bounds_crossed(m, &self.cfg));
        let due = crossed
            || self
                .since_analysis
                .is_none_or(|t| t >= self.cfg.analysis.interval_s);
        if !due {
            return None;
        }
        self.analyze(m, now);
        if self.st.weight_bp > 0 {
            let failed: Vec<String> = self
                .checks
                .iter()
                .filter(|c| c.verdict == Verdict::Fail)
                .map(|c| format!("{} failed: {}", c.name, c.summary))
                .chain(
                    self.triggers
                        .iter()
                        .filter(|t| t.fired)
                        .map(|t| format!("{} fired: {}", t.name, t.summary)),
                )
                .collect();
            if !failed.is_empty() {
                let reason = failed.join("; ");
                return Some(
                    self.transition("rollback", AUTOMATIC, &reason, now, m, |s| {
                        s.state = CanaryState::RolledBack;
                        s.weight_bp = 0;
                        s.outcome = Some("rolled back automatically".into());
                    }),
                );
            }
        }
        if self.st.state != CanaryState::Progressing || self.waiting() {
            return None;
        }
        let step = self.cfg.steps.get(self.st.step)?;
        let pause = step.pause_s?;
        let all_pass = self.checks.iter().all(|c| c.verdict == Verdict::Pass);
        // Promoting to a weight listed in `require_proven` takes proof, not just no sign of harm.
        let next_weight = self.cfg.steps.get(self.st.step + 1).map(|s| s.weight_bp);
        let proof_needed =
            next_weight.is_some_and(|w| self.cfg.analysis.require_proven.contains(&w));
        let proven = self.checks.iter().all(|c| c.proven_within_slo);
        if self.st.step_elapsed_s >= pause && all_pass && (proven || !proof_needed) {
            let reason = format!(
                "step {} held {} with every check passing",
                self.st.step + 1,
                crate::model::duration::to_spec(std::time::Duration::from_secs(pause))
            );
            return Some(self.advance(AUTOMATIC, &reason, now, m));
        }
        None
    }

    fn advance(&mut self, actor: &str, reason: &str, now: i64, m: &mut Metrics) -> ActionRecord {
        // The first step above the weight: promoting never takes traffic from the canary
        // (after a set-weight above the plan, it skips the steps already passed by weight),
        // and never jumps past the plan (after a set-weight to 0, it goes to the first step,
        // not to whatever followed the step the rollout was at).
        let last_index = self.cfg.steps.len() - 1;
        let next = (0..=last_index)
            .find(|&i| self.cfg.steps[i].weight_bp > self.st.weight_bp)
            .unwrap_or(last_index);
        let step = self.cfg.steps[next];
        let last = next + 1 == self.cfg.steps.len();
        self.transition("promote", actor, reason, now, m, |s| {
            s.step = next;
            s.weight_bp = step.weight_bp;
            s.step_started_at = now;
            s.step_elapsed_s = 0;
            if last {
                s.state = CanaryState::Promoted;
                s.outcome = Some("promoted: all traffic on the canary".into());
            }
        })
    }

    /// Applies `change` to the saved state and records who did it, why, and the analysis at
    /// that moment. The evidence carries on across weight changes: it is the rollout's.
    fn transition(
        &mut self,
        action: &str,
        actor: &str,
        reason: &str,
        now: i64,
        m: &mut Metrics,
        change: impl FnOnce(&mut Persisted),
    ) -> ActionRecord {
        let (state_before, weight_before) = (self.st.state, self.st.weight_bp);
        change(&mut self.st);
        let record = ActionRecord {
            at: ts(now),
            actor: actor.into(),
            action: action.into(),
            reason: reason.into(),
            state_before,
            state_after: self.st.state,
            weight_before: percent(weight_before),
            weight_after: percent(self.st.weight_bp),
            analysis: json!({ "checks": self.checks, "triggers": self.triggers }),
        };
        let _ = m;
        self.st.last_action = Some(record.clone());
        record
    }

    /// Ends the rollout with all traffic on legacy.
    fn stop(
        &mut self,
        action: &str,
        state: CanaryState,
        outcome: Option<String>,
        (actor, reason): (&str, &str),
        now: i64,
        m: &mut Metrics,
    ) -> ActionRecord {
        self.transition(action, actor, reason, now, m, |s| {
            s.state = state;
            s.weight_bp = 0;
            s.outcome = outcome;
        })
    }

    /// A manual action. Refused (with the reason) when it does not fit the state.
    pub fn act(
        &mut self,
        action: CanaryAction,
        actor: &str,
        reason: &str,
        now: i64,
        m: &mut Metrics,
    ) -> Result<ActionRecord, Refused> {
        if let Some(why) = action.refusal(&self.cfg.name, self.st.state) {
            return Err(Refused(why));
        }
        let now = self.clock(now);
        let outcome = |what: &str| Some(format!("{what} by {actor}: {reason}"));
        let rec = match action {
            CanaryAction::Promote => self.advance(actor, reason, now, m),
            CanaryAction::PromoteFull => {
                let last = self.cfg.steps.len() - 1;
                let o = outcome("promoted");
                self.transition("promote_full", actor, reason, now, m, |s| {
                    s.state = CanaryState::Promoted;
                    s.step = last;
                    s.weight_bp = FULL;
                    s.step_started_at = now;
                    s.step_elapsed_s = 0;
                    s.outcome = o;
                })
            }
            CanaryAction::Pause => self.transition("pause", actor, reason, now, m, |s| {
                s.state = CanaryState::Paused;
            }),
            CanaryAction::Resume => self.transition("resume", actor, reason, now, m, |s| {
                s.state = CanaryState::Progressing;
                // The pause starts again: the step must hold its weight for its whole pause.
                s.step_started_at = now;
                s.step_elapsed_s = 0;
            }),
            CanaryAction::SetWeight(w) => {
                self.transition("set_weight", actor, reason, now, m, |s| {
                    s.weight_bp = w * 100;
                    s.state = CanaryState::Paused;
                    s.step_started_at = now;
                    s.step_elapsed_s = 0;
                })
            }
            CanaryAction::Rollback => {
                let o = outcome("rolled back");
                self.stop(
                    "rollback",
                    CanaryState::RolledBack,
                    o,
                    (actor, reason),
                    now,
                    m,
                )
            }
            CanaryAction::Abort => {
                let o = outcome("aborted");
                self.stop("abort", CanaryState::Aborted, o, (actor, reason), now, m)
            }
            CanaryAction::Restart => self.restart(actor, reason, now, m),
        };
        Ok(rec)
    }

    fn restart(&mut self, actor: &str, reason: &str, now: i64, m: &mut Metrics) -> ActionRecord {
        let first = self.cfg.steps[0].weight_bp;
        let rec = self.transition("restart", actor, reason, now, m, |s| {
            s.state = CanaryState::Progressing;
            s.step = 0;
            s.weight_bp = first;
            s.started_at = now;
            s.step_started_at = now;
            s.step_elapsed_s = 0;
            s.outcome = None;
            s.evidence = None;
        });
        // A restart is a new rollout: new evidence, new budget, and nothing of the last
        // rollout's analysis on show as if it were this one's.
        m.reset_epoch(now);
        self.held = Held::default();
        self.det = Detectors::default();
        self.since_analysis = None;
        self.checks.clear();
        self.triggers.clear();
        self.analysis_at = None;
        rec
    }

    /// Everything about the rollout now.
    pub fn status(&self, m: &Metrics) -> CanaryStatus {
        let mut requests = Map::new();
        for v in [Version::Legacy, Version::Canary] {
            requests.insert(v.as_str().into(), json!(m.epoch(v).requests));
        }
        CanaryStatus {
            name: self.cfg.name.clone(),
            state: self.st.state,
            weight: percent(self.st.weight_bp),
            step: self.st.step,
            steps: self
                .cfg
                .steps
                .iter()
                .map(|s| StepInfo {
                    weight: percent(s.weight_bp),
                    pause_s: s.pause_s,
                })
                .collect(),
            source: self.cfg.source.name().into(),
            started_at: ts(self.st.started_at),
            step_started_at: ts(self.st.step_started_at),
            step_elapsed_s: self.st.step_elapsed_s,
            analysis_at: self.analysis_at.map(ts),
            checks: self.checks.clone(),
            triggers: self.triggers.clone(),
            last_action: self.st.last_action.clone(),
            requests,
            outcome: self.st.outcome.clone(),
            upstream: self.upstream.as_ref().map(|u| {
                let paused = if u.paused(self.wall) {
                    "; analysis paused"
                } else {
                    "; promotion waits"
                };
                format!(
                    "{} (since {}{paused})",
                    u.problem,
                    ts(u.since).datetime().format("%H:%M:%S UTC")
                )
            }),
            traffic: self.traffic.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::source::simulate::{Profile, Simulate};

    fn ctl() -> (Controller, Metrics) {
        let cfg = CanaryConfig::simulated("api", Simulate::steady(1.0, Profile::default()));
        (Controller::new(Arc::new(cfg), 0), Metrics::new(300, 3_600))
    }

    fn in_state(state: CanaryState) -> (Controller, Metrics) {
        let (mut c, mut m) = ctl();
        match state {
            CanaryState::Progressing => {}
            CanaryState::Paused => {
                c.act(CanaryAction::Pause, "t", "r", 1, &mut m).unwrap();
            }
            CanaryState::Promoted => {
                c.act(CanaryAction::PromoteFull, "t", "r", 1, &mut m)
                    .unwrap();
            }
            CanaryState::RolledBack => {
                c.act(CanaryAction::Rollback, "t", "r", 1, &mut m).unwrap();
            }
            CanaryState::Aborted => {
                c.act(CanaryAction::Abort, "t", "r", 1, &mut m).unwrap();
            }
        }
        assert_eq!(c.state(), state);
        (c, m)
    }

    /// Every action from every state: the state and weight after, or refused.
    #[test]
    fn every_action_from_every_state() {
        use CanaryAction as A;
        use CanaryState as S;
        let actions = [
            A::Promote,
            A::PromoteFull,
            A::Pause,
            A::Resume,
            A::SetWeight(30),
            A::Rollback,
            A::Abort,
            A::Restart,
        ];
        // (from, action) -> Some((state after, weight after in %)) or None when refused.
        let expect = |from: S, a: A| -> Option<(S, f64)> {
            let live = matches!(from, S::Progressing | S::Paused);
            match a {
                A::Promote if live => Some((from, 25.0)),
                A::PromoteFull if live => Some((S::Promoted, 100.0)),
                A::Pause if from == S::Progressing => Some((S::Paused, 12.0)),
                A::Resume if from == S::Paused => Some((S::Progressing, 12.0)),
                A::SetWeight(w) if live => Some((S::Paused, f64::from(w))),
                A::Rollback if !matches!(from, S::RolledBack | S::Aborted) => {
                    Some((S::RolledBack, 0.0))
                }
                A::Abort if live => Some((S::Aborted, 0.0)),
                A::Restart if !live => Some((S::Progressing, 12.0)),
                _ => None,
            }
        };
        for from in [
            S::Progressing,
            S::Paused,
            S::Promoted,
            S::RolledBack,
            S::Aborted,
        ] {
            for a in actions {
                let (mut c, mut m) = in_state(from);
                let got = c.act(a, "alice", "drill", 5, &mut m);
                match expect(from, a) {
                    Some((state, weight)) => {
                        let rec = got.unwrap_or_else(|e| panic!("{a:?} from {from}: {e}"));
                        assert_eq!(
                            (c.state(), c.status(&m).weight),
                            (state, weight),
                            "{a:?} from {from}"
                        );
                        assert_eq!(
                            (rec.actor.as_str(), rec.reason.as_str()),
                            ("alice", "drill")
                        );
                        assert_eq!((rec.state_before, rec.state_after), (from, state));
                        assert_eq!(c.st.last_action.as_ref(), Some(&rec));
                    }
                    None => {
                        let e = got.expect_err(&format!("{a:?} from {from} should be refused"));
                        assert!(e.0.contains("canary api") || e.0.contains("weight"), "{e}");
                        assert_eq!(c.state(), from, "a refused action changes nothing");
                    }
                }
            }
        }
        let (mut c, mut m) = ctl();
        assert!(
            c.act(A::SetWeight(101), "t", "r", 1, &mut m)
                .unwrap_err()
                .0
                .contains("0 to 100")
        );
        c.act(A::Promote, "t", "r", 1, &mut m).unwrap();
        c.act(A::Promote, "t", "r", 1, &mut m).unwrap();
        c.act(A::Promote, "t", "r", 1, &mut m).unwrap();
        c.act(A::Promote, "t", "r", 1, &mut m).unwrap();
        assert_eq!(
            c.state(),
            S::Promoted,
            "promoting onto the last step completes the rollout"
        );

        // A weight set above the plan is never lowered by promoting.
        let (mut c, mut m) = ctl();
        c.act(A::SetWeight(30), "t", "r", 1, &mut m).unwrap();
        c.act(A::Resume, "t", "r", 2, &mut m).unwrap();
        c.act(A::Promote, "t", "r", 3, &mut m).unwrap();
        assert_eq!((c.st.step, c.status(&m).weight), (2, 50.0), "skips 25%");

        // A weight set to 0 late in the plan is promoted to the first step, not to 100%.
        let (mut c, mut m) = ctl();
        for _ in 0..3 {
            c.act(A::Promote, "t", "r", 1, &mut m).unwrap();
        }
        assert_eq!(c.st.weight_bp, 7_500);
        c.act(A::SetWeight(0), "t", "r", 2, &mut m).unwrap();
        let rec = c.act(A::Promote, "t", "r", 3, &mut m).unwrap();
        assert_eq!(
            (c.st.step, c.status(&m).weight, c.state()),
            (0, 12.0, S::Paused),
            "back to the first step, still paused: {rec:?}"
        );
    }

    #[test]
    fn a_restarted_rollout_shows_nothing_of_the_last_one() {
        let (mut c, mut m) = ctl();
        for sec in 0..40 {
            for i in 0..20 {
                m.record(sec, Version::Legacy, 50.0, false);
                m.record(sec, Version::Canary, 50.0, i % 2 == 0);
            }
            c.tick(&mut m, sec);
        }
        assert_eq!(c.state(), CanaryState::RolledBack, "half the requests fail");
        assert!(
            c.triggers[0].value.is_some_and(|e| e > 0.4),
            "{:?}",
            c.triggers
        );
        c.act(CanaryAction::Restart, "t", "r", 40, &mut m).unwrap();
        assert!(c.checks.is_empty() && c.triggers.is_empty() && c.analysis_at.is_none());
        // The first analysis of the new rollout: its trigger window holds only its own second.
        for _ in 0..20 {
            m.record(41, Version::Legacy, 50.0, false);
            m.record(41, Version::Canary, 50.0, false);
        }
        c.analyze(&m, 41);
        assert_eq!(c.triggers[0].value, Some(0.0), "{:?}", c.triggers);
    }

    #[test]
    fn steps_advance_only_after_the_pause_with_passing_checks() {
        let (mut c, mut m) = ctl();
        // No traffic: inconclusive, so the first step holds past its pause.
        for sec in 0..=400 {
            assert!(
                c.tick(&mut m, sec).is_none(),
                "no data never promotes (second {sec})"
            );
        }
        // Healthy traffic on both versions.
        for sec in 401..=1_200 {
            for i in 0..40 {
                m.record(sec, Version::Legacy, f64::from(50 + i), false);
            }
            for i in 0..4 {
                m.record(sec, Version::Canary, f64::from(50 + i * 10), false);
            }
            if let Some(rec) = c.tick(&mut m, sec) {
                assert_eq!(
                    (rec.action.as_str(), rec.actor.as_str()),
                    ("promote", AUTOMATIC)
                );
                assert_eq!(c.st.step, 1);
                assert!(rec.reason.contains("every check passing"), "{}", rec.reason);
                return;
            }
        }
        panic!("never advanced: {:?}", c.checks);
    }

    /// Healthy seconds from `from` until the first action, or `None` by `to`.
    fn healthy(
        c: &mut Controller,
        m: &mut Metrics,
        from: i64,
        to: i64,
    ) -> Option<(i64, ActionRecord)> {
        for sec in from..=to {
            for i in 0..40 {
                m.record(sec, Version::Legacy, f64::from(50 + i), false);
            }
            for i in 0..4 {
                m.record(sec, Version::Canary, f64::from(50 + i * 10), false);
            }
            if let Some(rec) = c.tick(m, sec) {
                return Some((sec, rec));
            }
        }
        None
    }

    #[test]
    fn a_weight_the_router_has_not_taken_or_missing_metrics_hold_the_step() {
        // Unhindered, the first step promotes at some second `free`.
        let (mut c, mut m) = ctl();
        let (free, _) = healthy(&mut c, &mut m, 0, 3_000).expect("promotes");
        // A traffic hook that has not applied the weight: neither the step's time counts nor
        // does it promote, however healthy the numbers.
        let (mut c, mut m) = ctl();
        c.traffic = Some(TrafficStatus {
            via: "command".into(),
            weight: 12.0,
            state: TrafficState::Failing,
            attempts: 6,
            at: None,
            message: Some("exit 1".into()),
        });
        assert!(healthy(&mut c, &mut m, 0, free + 600).is_none());
        assert_eq!(c.st.step_elapsed_s, 0);
        // Applied, but a different weight than the rollout's: still waits.
        c.traffic.as_mut().unwrap().state = TrafficState::Applied;
        c.traffic.as_mut().unwrap().weight = 25.0;
        assert!(healthy(&mut c, &mut m, free + 601, free + 700).is_none());
        // Applied at the rollout's weight: the step's whole pause counts from here.
        c.traffic.as_mut().unwrap().weight = 12.0;
        let (at, rec) = healthy(&mut c, &mut m, free + 701, free + 3_000).expect("promotes");
        assert_eq!(rec.action, "promote");
        assert!(
            at >= free + 1_000,
            "the 5m pause counted only once applied: {at}"
        );
        // Metrics that cannot be had hold it the same way.
        let (mut c, mut m) = ctl();
        c.upstream = Some(Upstream {
            since: 0,
            problem: "prometheus did not answer".into(),
            pause_after_s: 60,
        });
        assert!(healthy(&mut c, &mut m, 0, free + 600).is_none());
        assert_eq!(c.st.step_elapsed_s, 0);
        assert!(c.status(&m).upstream.unwrap().contains("analysis paused"));
    }

    #[test]
    fn a_failing_canary_rolls_back_even_while_paused() {
        let (mut c, mut m) = ctl();
        c.act(CanaryAction::Pause, "t", "look", 0, &mut m).unwrap();
        for sec in 1..=60 {
            for _ in 0..20 {
                m.record(sec, Version::Legacy, 50.0, false);
            }
            for i in 0..5 {
                m.record(sec, Version::Canary, 50.0, i < 2);
            }
            if let Some(rec) = c.tick(&mut m, sec) {
                assert_eq!(rec.action, "rollback");
                assert_eq!(c.state(), CanaryState::RolledBack);
                assert_eq!(c.weight_bp(), 0);
                assert!(
                    rec.analysis["checks"][0]["verdict"] == "fail" || rec.reason.contains("fired"),
                    "{rec:?}"
                );
                return;
            }
        }
        panic!("never rolled back");
    }
}
