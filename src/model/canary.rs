use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Timestamp;
use super::status::string_enum;

string_enum!(
    /// The two versions of a service under a canary rollout.
    Version, "version" {
        Legacy => "legacy",
        Canary => "canary",
    }
);

string_enum!(
    /// Where a rollout is. `promoted`, `rolled_back` and `aborted` are final until a restart.
    CanaryState, "canary state" {
        Progressing => "progressing",
        Paused => "paused",
        Promoted => "promoted",
        RolledBack => "rolled_back",
        Aborted => "aborted",
    }
);

impl CanaryState {
    /// The state in a sentence: `rolled back` rather than the stable name `rolled_back`.
    pub fn words(self) -> &'static str {
        match self {
            CanaryState::RolledBack => "rolled back",
            other => other.as_str(),
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            CanaryState::Promoted | CanaryState::RolledBack | CanaryState::Aborted
        )
    }
}

string_enum!(
    /// Where a `traffic` hook stands with the weight it was last asked to apply.
    TrafficState, "traffic state" {
        Applying => "applying",
        Applied => "applied",
        Failing => "failing",
    }
);

string_enum!(
    /// What one check says about the canary.
    Verdict, "verdict" {
        Pass => "pass",
        Fail => "fail",
        Inconclusive => "inconclusive",
    }
);

/// A manual action on a rollout (automatic ones use the same names in the audit log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "weight")]
pub enum CanaryAction {
    /// Move to the next step now, without waiting for its pause.
    Promote,
    /// Send all traffic to the canary: the rollout is done.
    PromoteFull,
    /// Stop advancing (automatic rollback still protects).
    Pause,
    Resume,
    /// Set the canary's weight in percent, and pause so automation does not move it.
    SetWeight(u32),
    /// The canary is bad: all traffic to legacy.
    Rollback,
    /// Stop the rollout without judging the canary: all traffic to legacy.
    Abort,
    /// Start the rollout again from the first step with fresh analysis.
    Restart,
}

impl CanaryAction {
    pub fn name(self) -> &'static str {
        match self {
            CanaryAction::Promote => "promote",
            CanaryAction::PromoteFull => "promote_full",
            CanaryAction::Pause => "pause",
            CanaryAction::Resume => "resume",
            CanaryAction::SetWeight(_) => "set_weight",
            CanaryAction::Rollback => "rollback",
            CanaryAction::Abort => "abort",
            CanaryAction::Restart => "restart",
        }
    }

    /// Why this action cannot be taken on canary `name` in `state`, or `None` when it can.
    /// The controller refuses with this sentence and the dashboard greys out keys with it.
    pub fn refusal(self, name: &str, state: CanaryState) -> Option<String> {
        let ended = || {
            format!(
                "canary {name} is {}; `restart` starts it again from the first step",
                state.words()
            )
        };
        match self {
            CanaryAction::SetWeight(w) if w > 100 => {
                Some(format!("a weight is a percentage from 0 to 100, not {w}"))
            }
            CanaryAction::Promote
            | CanaryAction::PromoteFull
            | CanaryAction::SetWeight(_)
            | CanaryAction::Abort
                if state.is_final() =>
            {
                Some(ended())
            }
            CanaryAction::Pause => match state {
                CanaryState::Progressing => None,
                CanaryState::Paused => Some(format!(
                    "canary {name} is already paused; `resume` continues it"
                )),
                _ => Some(ended()),
            },
            CanaryAction::Resume => match state {
                CanaryState::Paused => None,
                CanaryState::Progressing => {
                    Some(format!("canary {name} is not paused; it is progressing"))
                }
                _ => Some(ended()),
            },
            CanaryAction::Rollback
                if matches!(state, CanaryState::RolledBack | CanaryState::Aborted) =>
            {
                Some(format!(
                    "canary {name} is already {}: all traffic is on legacy",
                    state.words()
                ))
            }
            // Restarting a live rollout would throw its evidence away without a word; to
            // start over, it is rolled back (or aborted) first, which is audited as such.
            CanaryAction::Restart if !state.is_final() => Some(format!(
                "canary {name} is {}: `restart` starts a rollout that ended again; to start this one over, roll it back first",
                state.words()
            )),
            _ => None,
        }
    }
}

/// One request seen by an external router (the `ingest` source).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub version: Version,
    /// Milliseconds, fractions allowed (kept to the microsecond).
    pub latency_ms: f64,
    pub error: bool,
}

/// The longest latency a fault may add, in milliseconds (ten minutes).
pub const MAX_FAULT_LATENCY_MS: f64 = 600_000.0;

/// Trouble added to a simulated canary at run time (drills, demos). Checked once, here, in
/// one unit: the error rate is a fraction (0.08 adds 8 percentage points of errors), so the
/// palette's percentages and the API's fractions cannot drift apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// Added to the canary's error rate, from 0 to 1.
    pub error_rate: f64,
    /// Added to every canary latency, from 0 to [`MAX_FAULT_LATENCY_MS`].
    pub latency_ms: f64,
}

impl Fault {
    /// A fault, or a sentence saying which number is out of range and what is allowed.
    pub fn new(error_rate: f64, latency_ms: f64) -> Result<Fault, String> {
        if !(0.0..=1.0).contains(&error_rate) {
            return Err(format!(
                "the added error rate is {error_rate}; it is a fraction from 0 to 1 (0.08 adds 8% errors)"
            ));
        }
        if !(0.0..=MAX_FAULT_LATENCY_MS).contains(&latency_ms) {
            return Err(format!(
                "the added latency is {latency_ms} ms; it must be from 0 to {MAX_FAULT_LATENCY_MS} ms"
            ));
        }
        Ok(Fault {
            error_rate,
            latency_ms,
        })
    }

    /// No trouble: injecting it clears a fault.
    pub fn is_none(&self) -> bool {
        self.error_rate == 0.0 && self.latency_ms == 0.0
    }

    /// What the fault does, for messages: `+8.0% errors and +300ms on every canary request`.
    pub fn describe(&self) -> String {
        if self.is_none() {
            "no fault".into()
        } else {
            format!(
                "+{:.1}% errors and +{:.0}ms on every canary request",
                self.error_rate * 100.0,
                self.latency_ms
            )
        }
    }
}

/// One analysis check with the numbers that decided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `error_rate` or `latency_p95`.
    pub name: String,
    pub verdict: Verdict,
    /// The bounds already prove the canary within the SLO (not just "not yet shown worse").
    pub proven_within_slo: bool,
    /// One line for people: what was compared and how it came out.
    pub summary: String,
    /// Counts, rates, quantiles, bounds and the threshold, by name.
    pub numbers: Map<String, Value>,
    /// When the verdict and its numbers were computed: after a rollout ends, the check that
    /// decided it stays on show with this time while the charts go on live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
}

/// One hard rollback trigger and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerStatus {
    /// `error_rate_above`, `p95_above_ms` or `availability_below`.
    pub name: String,
    pub fired: bool,
    /// The value over the trigger's window, if it had enough requests.
    pub value: Option<f64>,
    pub threshold: f64,
    /// Seconds the condition has held (it fires once this reaches `for_s`).
    pub held_s: u64,
    pub for_s: u64,
    pub summary: String,
}

/// An action taken on a rollout, automatic or manual.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub reason: String,
    pub state_before: CanaryState,
    pub state_after: CanaryState,
    pub weight_before: f64,
    pub weight_after: f64,
    /// The analysis at that moment: checks and triggers.
    pub analysis: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepInfo {
    pub weight: f64,
    pub pause_s: Option<u64>,
}

/// Everything about one rollout now: what `canary status --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryStatus {
    pub name: String,
    pub state: CanaryState,
    /// The canary's share of traffic, in percent.
    pub weight: f64,
    /// Index into `steps` of the current step.
    pub step: usize,
    pub steps: Vec<StepInfo>,
    pub source: String,
    pub started_at: Timestamp,
    pub step_started_at: Timestamp,
    /// Seconds the step has counted towards its pause: the host's seconds, which stand still
    /// while no host runs the rollout or its weight waits to be applied, so not the wall
    /// clock's time since `step_started_at`.
    #[serde(default)]
    pub step_elapsed_s: u64,
    pub analysis_at: Option<Timestamp>,
    pub checks: Vec<Check>,
    pub triggers: Vec<TriggerStatus>,
    pub last_action: Option<ActionRecord>,
    /// Requests since the analysis epoch began, by version.
    pub requests: Map<String, Value>,
    /// Why the rollout ended, when it has.
    pub outcome: Option<String>,
    /// What is wrong with the metrics backend (`prometheus`), while something is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// How far the `traffic` hook has got applying the weight, for a canary that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficStatus>,
}

/// A `traffic` hook applying the rollout's weight to a router opsdeck does not own (nginx,
/// Envoy, a mesh). While the weight is not applied the step's time does not count and the
/// rollout does not promote: the metrics would describe a split that is not there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficStatus {
    /// `command` or `webhook`.
    pub via: String,
    /// The weight asked of the router, in percent.
    pub weight: f64,
    pub state: TrafficState,
    /// Attempts for this weight so far.
    pub attempts: u32,
    /// When the last attempt ended.
    pub at: Option<Timestamp>,
    /// The hook's last words: its output when it worked, why not when it failed.
    pub message: Option<String>,
}

impl TrafficStatus {
    /// A weight just handed to the hook, not yet tried.
    pub fn applying(via: &str, weight_bp: u32) -> TrafficStatus {
        TrafficStatus {
            via: via.into(),
            weight: f64::from(weight_bp) / 100.0,
            state: TrafficState::Applying,
            attempts: 0,
            at: None,
            message: None,
        }
    }

    /// One line for the pane and `canary status`: where the hook stands with which weight.
    pub fn describe(&self) -> String {
        let when = self
            .at
            .map(|t| format!(" at {}", t.datetime().format("%H:%M:%S UTC")))
            .unwrap_or_default();
        let tries = if self.attempts == 1 {
            "1 attempt".to_string()
        } else {
            format!("{} attempts", self.attempts)
        };
        let words = self
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        match self.state {
            TrafficState::Applied => {
                format!("{}% applied by the {}{when}{words}", self.weight, self.via)
            }
            TrafficState::Applying if self.attempts == 0 => format!(
                "{}% being applied by the {}; promotion waits",
                self.weight, self.via
            ),
            TrafficState::Applying => format!(
                "{}% not applied yet by the {} ({tries}, retrying){words}; promotion waits",
                self.weight, self.via
            ),
            TrafficState::Failing => format!(
                "{}% NOT applied: the {} failed {tries}{when}, retried every 30s{words}; promotion waits",
                self.weight, self.via
            ),
        }
    }
}

/// One version's traffic over one chart step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VersionPoint {
    pub rps: f64,
    pub error_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Legacy and canary side by side over one chart step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    pub at: Timestamp,
    pub legacy: VersionPoint,
    pub canary: VersionPoint,
}
