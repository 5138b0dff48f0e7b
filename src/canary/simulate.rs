//! Built-in traffic: requests from a population of users, routed by the real router, with
//! per-version log-normal latencies and error rates, changes over time, and faults injected at
//! run time. Seeded, so a drill is reproducible.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::Rollout;
use super::config::{Change, Profile, Simulate};
use crate::model::Version;
use crate::runtime::rng::Rng;

/// Distinct users the simulated requests come from.
const USERS: u64 = 1_000_000;
/// z for the 95th percentile of a normal distribution.
const Z95: f64 = 1.644_853_626_951_472_2;

/// Extra trouble added to the canary at run time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// Added to the canary's error rate.
    pub error_rate: f64,
    /// Added to every canary latency.
    pub latency_ms: f64,
}

impl Fault {
    pub fn is_none(&self) -> bool {
        self.error_rate == 0.0 && self.latency_ms == 0.0
    }
}

/// A sampler for one profile: log-normal latency through its P50 and P95.
#[derive(Debug, Clone, Copy)]
struct Sampler {
    mu: f64,
    sigma: f64,
    error_rate: f64,
    extra_ms: f64,
}

impl Sampler {
    fn new(p: &Profile, fault: Fault) -> Sampler {
        let p50 = p.p50_ms.max(0.1);
        let p95 = p.p95_ms.max(p50);
        Sampler {
            mu: p50.ln(),
            sigma: (p95.ln() - p50.ln()) / Z95,
            error_rate: (p.error_rate + fault.error_rate).clamp(0.0, 1.0),
            extra_ms: fault.latency_ms,
        }
    }

    fn sample(&self, rng: &mut Rng) -> (u64, bool) {
        let ms = (self.mu + self.sigma * rng.normal()).exp() + self.extra_ms;
        (ms.round().max(1.0) as u64, rng.next_f64() < self.error_rate)
    }
}

/// The canary's profile at `t_s` seconds after the start, after scheduled changes.
pub fn canary_at(base: Profile, changes: &[Change], t_s: u64) -> Profile {
    let mut p = base;
    for ch in changes.iter().filter(|c| c.at_s <= t_s) {
        p.p50_ms = ch.p50_ms.unwrap_or(p.p50_ms);
        p.p95_ms = ch.p95_ms.unwrap_or(p.p95_ms).max(p.p50_ms);
        p.error_rate = ch.error_rate.unwrap_or(p.error_rate);
    }
    p
}

/// What one simulated second did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Second {
    pub canary_requests: u64,
    pub canary_errors: u64,
}

/// A traffic generator for one canary.
#[derive(Debug, Clone)]
pub struct Traffic {
    pub sim: Simulate,
    pub fault: Fault,
    rng: Rng,
    carry: f64,
    key: String,
}

impl Traffic {
    pub fn new(sim: Simulate, seed: u64) -> Traffic {
        Traffic {
            sim,
            fault: Fault::default(),
            rng: Rng::new(seed),
            carry: 0.0,
            key: String::with_capacity(16),
        }
    }

    /// The canary's profile now, with scheduled changes and the injected fault's error rate.
    pub fn canary_profile(&self, t_s: u64) -> Profile {
        canary_at(self.sim.canary, &self.sim.changes, t_s)
    }

    /// Sends one second of requests (`t_s` seconds after the start) through `rollout`.
    pub fn second(&mut self, rollout: &mut Rollout, sec: i64, t_s: u64) -> Second {
        let due = self.sim.rps + self.carry;
        let n = due.floor();
        self.carry = due - n;
        let legacy = Sampler::new(&self.sim.legacy, Fault::default());
        let canary = Sampler::new(&self.canary_profile(t_s), self.fault);
        let mut out = Second::default();
        for _ in 0..n as u64 {
            self.key.clear();
            let user = self.rng.next_u64() % USERS;
            let _ = write!(self.key, "user-{user}");
            let version = rollout.route(Some(&self.key)).version;
            let (ms, error) = match version {
                Version::Legacy => legacy.sample(&mut self.rng),
                Version::Canary => canary.sample(&mut self.rng),
            };
            if version == Version::Canary {
                out.canary_requests += 1;
                out.canary_errors += u64::from(error);
            }
            rollout.observe(sec, version, ms, error);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_follow_the_profile() {
        let p = Profile {
            p50_ms: 80.0,
            p95_ms: 200.0,
            error_rate: 0.05,
        };
        let s = Sampler::new(&p, Fault::default());
        let mut rng = Rng::new(3);
        let mut v: Vec<(u64, bool)> = (0..100_000).map(|_| s.sample(&mut rng)).collect();
        v.sort_unstable();
        let q = |f: f64| v[(f * v.len() as f64) as usize].0 as f64;
        assert!((q(0.5) - 80.0).abs() < 3.0, "{}", q(0.5));
        assert!((q(0.95) - 200.0).abs() < 10.0, "{}", q(0.95));
        let errors = v.iter().filter(|x| x.1).count() as f64 / 100_000.0;
        assert!((errors - 0.05).abs() < 0.003, "{errors}");
        let slow = Sampler::new(
            &p,
            Fault {
                error_rate: 0.0,
                latency_ms: 100.0,
            },
        );
        assert!(slow.sample(&mut rng).0 > 100);
    }

    #[test]
    fn changes_apply_from_their_time_on() {
        let base = Profile {
            p50_ms: 80.0,
            p95_ms: 200.0,
            error_rate: 0.005,
        };
        let ch = [Change {
            at_s: 60,
            p50_ms: None,
            p95_ms: Some(300.0),
            error_rate: Some(0.1),
        }];
        assert_eq!(canary_at(base, &ch, 59), base);
        let after = canary_at(base, &ch, 60);
        assert_eq!(
            (after.p50_ms, after.p95_ms, after.error_rate),
            (80.0, 300.0, 0.1)
        );
    }
}
