//! Canary rollouts: the router, per-second metrics, anytime-valid analysis, the controller,
//! metric sources, drills, and the service that runs a host's canaries. A [`Rollout`] ties one
//! canary's parts together; live hosts and drills drive the same `Rollout`, so a drill
//! exercises exactly the code that guards traffic. Knows nothing of pipelines.

pub mod analysis;
pub mod config;
pub mod controller;
pub mod detect;
pub mod drill;
pub mod metrics;
pub mod router;
pub mod service;
pub mod source;
pub mod stats;
pub mod traffic;

use std::sync::Arc;

use crate::model::{ActionRecord, CanaryAction, CanaryStatus, SeriesPoint, Version, VersionPoint};
use crate::rng::Rng;
pub use config::CanaryConfig;
pub use controller::{Controller, Persisted, Refused};
use metrics::{Metrics, Totals};
use router::Route;
pub use service::{CanaryError, CanaryService, Deps};

/// Seconds of one-second buckets kept at least (the 5-minute chart and the trigger windows).
const MIN_FINE_S: i64 = 300;
/// Seconds of history kept at all (the 60-minute chart).
const RETENTION_S: i64 = 3_600;

/// One canary: its controller, its traffic, and the randomness for unkeyed requests.
#[derive(Debug)]
pub struct Rollout {
    pub ctl: Controller,
    pub metrics: Metrics,
    rng: Rng,
}

impl Rollout {
    pub fn new(cfg: Arc<CanaryConfig>, now: i64, seed: u64) -> Rollout {
        Rollout::resume(Controller::new(cfg, now), seed)
    }

    /// Carries on from a saved controller: after a restart the charts start empty, but the
    /// checks go on from the saved evidence (totals, e-processes, detectors, held triggers).
    pub fn resume(ctl: Controller, seed: u64) -> Rollout {
        let fine = (ctl.cfg.analysis.window_s as i64).max(MIN_FINE_S);
        let mut metrics = Metrics::new(fine, RETENTION_S);
        if let Some(e) = &ctl.st.evidence {
            metrics.restore_epoch(&e.legacy, &e.canary);
        }
        Rollout {
            ctl,
            metrics,
            rng: Rng::new(seed),
        }
    }

    /// Where a request with this route key goes at the current weight.
    pub fn route(&mut self, key: Option<&str>) -> Route {
        let r = router::route(key, self.ctl.weight_bp(), &mut self.rng);
        if !r.keyed {
            self.metrics.unkeyed += 1;
        }
        r
    }

    pub fn observe(&mut self, sec: i64, v: Version, latency_ms: f64, error: bool) {
        let with_errors = !self.ctl.cfg.exclude_errors_from_latency;
        self.metrics
            .record_with(sec, v, latency_ms, error, with_errors);
    }

    /// Once a second: analysis when due, then automatic promotion or rollback.
    pub fn tick(&mut self, now: i64) -> Option<ActionRecord> {
        self.ctl.tick(&mut self.metrics, now)
    }

    pub fn act(
        &mut self,
        action: CanaryAction,
        actor: &str,
        reason: &str,
        now: i64,
    ) -> Result<ActionRecord, Refused> {
        self.ctl.act(action, actor, reason, now, &mut self.metrics)
    }

    pub fn status(&self) -> CanaryStatus {
        self.ctl.status(&self.metrics)
    }

    /// `points` chart points of `step` seconds each, ending at `now`.
    pub fn series(&self, now: i64, step: i64, points: usize) -> Vec<SeriesPoint> {
        let legacy = self.metrics.steps(Version::Legacy, now, step, points);
        let canary = self.metrics.steps(Version::Canary, now, step, points);
        legacy
            .into_iter()
            .zip(canary)
            .map(|((at, l), (_, c))| SeriesPoint {
                at: controller::ts(at),
                legacy: point(&l, step),
                canary: point(&c, step),
            })
            .collect()
    }
}

fn point(t: &Totals, step: i64) -> VersionPoint {
    VersionPoint {
        rps: t.requests as f64 / step.max(1) as f64,
        error_rate: t.error_rate(),
        p50_ms: t.quantile(0.50),
        p95_ms: t.quantile(0.95),
        p99_ms: t.quantile(0.99),
    }
}
