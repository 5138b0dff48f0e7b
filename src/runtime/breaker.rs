//! Circuit breakers per target (an HTTP `host:port`, a command's program, or a simulated
//! target). After `failure_threshold` consecutive failures the breaker opens and attempts fail
//! fast with `breaker_open`; after the cool-down one probe is let through (half-open), whose
//! result closes the breaker or opens it again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Thresholds for one stage's calls; carried with each call so stages may differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub cooldown_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cooldown_ms: 30_000,
        }
    }
}

crate::model::string_enum!(
    /// The three breaker states, as they appear in events.
    BreakerState, "breaker state" {
        Closed => "closed",
        Open => "open",
        HalfOpen => "half_open",
    }
);

/// A state change, reported so the runtime can append a `breaker_changed` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
}

/// Whether a call may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; `probe` is true for the single trial call of a half-open breaker.
    Allowed { probe: bool },
    /// Fail fast; the breaker is open for about this much longer.
    Rejected { retry_after: Duration },
}

/// One target's breaker. Pure state: time is passed in, so tests need no clock.
#[derive(Debug, Clone)]
pub struct Breaker {
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Option<DateTime<Utc>>,
    probe_in_flight: bool,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: BreakerState::Closed,
            consecutive_failures: 0,
            opened_at: None,
            probe_in_flight: false,
        }
    }
}

impl Breaker {
    pub fn state(&self) -> BreakerState {
        self.state
    }

    fn set(&mut self, to: BreakerState) -> Option<Transition> {
        let from = self.state;
        self.state = to;
        (from != to).then_some(Transition { from, to })
    }

    pub fn admit(
        &mut self,
        cfg: &BreakerConfig,
        now: DateTime<Utc>,
    ) -> (Admission, Option<Transition>) {
        match self.state {
            BreakerState::Closed => (Admission::Allowed { probe: false }, None),
            BreakerState::Open => {
                let opened = self.opened_at.unwrap_or(now);
                let elapsed = (now - opened).to_std().unwrap_or_default();
                let cooldown = Duration::from_millis(cfg.cooldown_ms);
                if elapsed >= cooldown {
                    self.probe_in_flight = true;
                    let t = self.set(BreakerState::HalfOpen);
                    (Admission::Allowed { probe: true }, t)
                } else {
                    (
                        Admission::Rejected {
                            retry_after: cooldown.saturating_sub(elapsed),
                        },
                        None,
                    )
                }
            }
            BreakerState::HalfOpen => {
                if self.probe_in_flight {
                    (
                        Admission::Rejected {
                            retry_after: Duration::ZERO,
                        },
                        None,
                    )
                } else {
                    self.probe_in_flight = true;
                    (Admission::Allowed { probe: true }, None)
                }
            }
        }
    }

    /// Records the result of an admitted call. Only failures that say something about the
    /// target's health should be recorded as failures (not a 404, say).
    pub fn record(
        &mut self,
        success: bool,
        probe: bool,
        cfg: &BreakerConfig,
        now: DateTime<Utc>,
    ) -> Option<Transition> {
        if probe {
            self.probe_in_flight = false;
        }
        if success {
            self.consecutive_failures = 0;
            self.opened_at = None;
            return self.set(BreakerState::Closed);
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let trip = match self.state {
            BreakerState::HalfOpen => probe,
            BreakerState::Closed => self.consecutive_failures >= cfg.failure_threshold.max(1),
            BreakerState::Open => false,
        };
        if trip {
            self.opened_at = Some(now);
            self.set(BreakerState::Open)
        } else {
            None
        }
    }

    /// When the breaker last opened, while it is not closed.
    pub fn opened_at(&self) -> Option<DateTime<Utc>> {
        self.opened_at
    }

    /// Takes a state saved in the store (a restarted host) or decided by another worker:
    /// open from `opened_at` (half-open counts as open: the probe belongs to whoever let it
    /// through, and this breaker lets its own through once the cool-down is over), or closed.
    pub fn follow(&mut self, to: BreakerState, opened_at: Option<DateTime<Utc>>) {
        match (to, opened_at) {
            (BreakerState::Closed, _) => {
                self.state = BreakerState::Closed;
                self.consecutive_failures = 0;
                self.opened_at = None;
            }
            (BreakerState::Open | BreakerState::HalfOpen, Some(at)) => {
                if self.state == BreakerState::Closed || self.opened_at.is_none_or(|o| o < at) {
                    self.state = BreakerState::Open;
                    self.opened_at = Some(at);
                }
            }
            (_, None) => {}
        }
    }

    /// Frees the probe slot when an admitted probe was abandoned (cancelled, interrupted).
    pub fn release_probe(&mut self, probe: bool) {
        if probe {
            self.probe_in_flight = false;
        }
    }
}

/// All breakers of one host, keyed by target.
#[derive(Debug, Default)]
pub struct Breakers {
    map: Mutex<HashMap<String, Breaker>>,
}

impl Breakers {
    /// Runs `f` on the target's breaker, creating it closed on first use.
    pub fn with<R>(&self, target: &str, f: impl FnOnce(&mut Breaker) -> R) -> R {
        let mut map = crate::sync::lock(&self.map);
        f(map.entry(target.to_string()).or_default())
    }

    /// A snapshot of every breaker that is not closed, for status displays.
    pub fn not_closed(&self) -> Vec<(String, BreakerState)> {
        let map = crate::sync::lock(&self.map);
        let mut v: Vec<_> = map
            .iter()
            .filter(|(_, b)| b.state != BreakerState::Closed)
            .map(|(k, b)| (k.clone(), b.state))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn opens_after_threshold_then_half_opens_after_cooldown() {
        let cfg = BreakerConfig {
            failure_threshold: 3,
            cooldown_ms: 10_000,
        };
        let t0 = Utc
            .with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
            .single()
            .unwrap();
        let mut b = Breaker::default();
        assert_eq!(b.admit(&cfg, t0).0, Admission::Allowed { probe: false });
        assert_eq!(b.record(false, false, &cfg, t0), None);
        assert_eq!(b.record(false, false, &cfg, t0), None);
        let opened = b.record(false, false, &cfg, t0);
        assert_eq!(
            opened,
            Some(Transition {
                from: BreakerState::Closed,
                to: BreakerState::Open
            })
        );

        // While open, calls fail fast and say how long is left.
        let (adm, _) = b.admit(&cfg, t0 + chrono::Duration::seconds(4));
        assert_eq!(
            adm,
            Admission::Rejected {
                retry_after: Duration::from_secs(6)
            }
        );

        // After the cool-down exactly one probe goes through.
        let later = t0 + chrono::Duration::seconds(10);
        let (adm, t) = b.admit(&cfg, later);
        assert_eq!(adm, Admission::Allowed { probe: true });
        assert_eq!(
            t,
            Some(Transition {
                from: BreakerState::Open,
                to: BreakerState::HalfOpen
            })
        );
        assert!(matches!(b.admit(&cfg, later).0, Admission::Rejected { .. }));

        // A failed probe re-opens; a later successful probe closes.
        assert_eq!(
            b.record(false, true, &cfg, later).map(|t| t.to),
            Some(BreakerState::Open)
        );
        let again = later + chrono::Duration::seconds(10);
        assert_eq!(b.admit(&cfg, again).0, Admission::Allowed { probe: true });
        assert_eq!(
            b.record(true, true, &cfg, again).map(|t| t.to),
            Some(BreakerState::Closed)
        );
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn success_resets_the_failure_count() {
        let cfg = BreakerConfig {
            failure_threshold: 2,
            cooldown_ms: 1,
        };
        let t0 = Utc::now();
        let mut b = Breaker::default();
        b.record(false, false, &cfg, t0);
        b.record(true, false, &cfg, t0);
        assert_eq!(b.record(false, false, &cfg, t0), None);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
