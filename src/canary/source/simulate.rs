//! The `simulate` source: built-in traffic from a population of users, routed by the real
//! router, with per-version log-normal latencies and error rates, changes over time, and
//! faults injected at run time. Seeded, so a drill is reproducible. Drills use it directly.

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use toml::de::DeTable;

use super::{Feed, Kind, Source};
use crate::canary::Rollout;
use crate::diag::Checker;
use crate::model::{Fault, Version};
use crate::rng::Rng;

/// One version's simulated traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub error_rate: f64,
}

/// From `at_s` seconds after the start on, these values replace the canary's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    pub at_s: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub error_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Simulate {
    pub rps: f64,
    pub legacy: Profile,
    pub canary: Profile,
    pub changes: Vec<Change>,
    pub seed: u64,
    /// A host that starts and finds the rollout ended starts it again (demos).
    pub restart_ended: bool,
}

impl Simulate {
    /// Both versions with the same profile and nothing scheduled (tests, benchmarks).
    pub fn steady(rps: f64, profile: Profile) -> Simulate {
        Simulate {
            rps,
            legacy: profile,
            canary: profile,
            changes: Vec::new(),
            seed: 1,
            restart_ended: false,
        }
    }
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            p50_ms: 60.0,
            p95_ms: 180.0,
            error_rate: 0.004,
        }
    }
}

/// A version's profile table; `base` supplies keys left out.
pub fn profile(c: &mut Checker<'_>, t: &DeTable<'_>, ctx: &str, base: Profile) -> Profile {
    c.known_keys(t, &["p50_ms", "p95_ms", "error_rate"], ctx);
    let mut p = base;
    if let Some((x, _)) = c.number(t, "p50_ms", ctx, 0.0, 600_000.0) {
        p.p50_ms = x;
    }
    if let Some((x, span)) = c.number(t, "p95_ms", ctx, 0.0, 600_000.0) {
        if x < p.p50_ms {
            c.error(&span, format!("`p95_ms` in {ctx} is below `p50_ms`; the 95th percentile is at least the median"));
        }
        p.p95_ms = x;
    }
    if let Some((x, _)) = c.number(t, "error_rate", ctx, 0.0, 1.0) {
        p.error_rate = x;
    }
    p
}

/// Changes to the canary's profile over time (`change` arrays of tables).
pub fn changes(c: &mut Checker<'_>, t: &DeTable<'_>, ctx: &str) -> Vec<Change> {
    let Some(v) = crate::diag::get(t, "change") else {
        return Vec::new();
    };
    let toml::de::DeValue::Array(items) = v.get_ref() else {
        c.error(
            &v.span(),
            format!("`change` in {ctx} must be an array of tables ([[...change]])"),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let cctx = format!("change {} of {ctx}", i + 1);
        let toml::de::DeValue::Table(ct) = item.get_ref() else {
            c.error(&item.span(), format!("{cctx} must be a table"));
            continue;
        };
        c.known_keys(ct, &["at", "p50_ms", "p95_ms", "error_rate"], &cctx);
        let Some((at, _)) = c.duration(ct, "at", &cctx, Duration::ZERO) else {
            if crate::diag::get(ct, "at").is_none() {
                c.missing(&item.span(), "at", &cctx);
            }
            continue;
        };
        out.push(Change {
            at_s: at.as_secs(),
            p50_ms: c.number(ct, "p50_ms", &cctx, 0.0, 600_000.0).map(|x| x.0),
            p95_ms: c.number(ct, "p95_ms", &cctx, 0.0, 600_000.0).map(|x| x.0),
            error_rate: c.number(ct, "error_rate", &cctx, 0.0, 1.0).map(|x| x.0),
        });
    }
    out.sort_by_key(|ch| ch.at_s);
    out
}

/// Checks a `simulate = {...}` table.
pub fn simulate(c: &mut Checker<'_>, t: &DeTable<'_>, ctx: &str) -> Simulate {
    c.known_keys(
        t,
        &["rps", "legacy", "canary", "change", "seed", "restart_ended"],
        ctx,
    );
    let rps = c
        .number(t, "rps", ctx, 0.0, 1_000_000.0)
        .map_or(50.0, |x| x.0);
    let legacy = c
        .table(t, "legacy", ctx)
        .map_or_else(Profile::default, |(lt, _)| {
            profile(c, lt, &format!("`legacy` of {ctx}"), Profile::default())
        });
    let canary = c.table(t, "canary", ctx).map_or(legacy, |(ct, _)| {
        profile(c, ct, &format!("`canary` of {ctx}"), legacy)
    });
    let changes = changes(c, t, ctx);
    let seed = c.int(t, "seed", ctx, 0, i64::MAX).map_or(1, |x| x.0 as u64);
    let restart_ended = c.bool(t, "restart_ended", ctx).is_some_and(|x| x.0);
    Simulate {
        rps,
        legacy,
        canary,
        changes,
        seed,
        restart_ended,
    }
}

impl Source for Simulate {
    fn name(&self) -> &'static str {
        "simulate"
    }

    fn feed(&self, seed: u64) -> Option<Box<dyn Feed>> {
        Some(Box::new(Traffic::new(self.clone(), self.seed ^ seed)))
    }
}

impl Feed for Traffic {
    fn second(&mut self, rollout: &mut Rollout, now: i64, t_s: u64) {
        self.run_second(rollout, now, t_s);
    }

    fn inject(&mut self, fault: Fault) {
        self.fault = fault;
    }

    fn restarts_ended(&self) -> bool {
        self.sim.restart_ended
    }
}

/// Without a `simulate` table: 50 requests a second, both versions on the default profile.
#[allow(clippy::unnecessary_wraps)] // the signature every source's parser shares
fn parse(
    c: &mut Checker<'_>,
    table: Option<&DeTable<'_>>,
    _span: &Range<usize>,
    ctx: &str,
) -> Option<Arc<dyn Source>> {
    let sim = match table {
        Some(t) => simulate(c, t, &format!("`simulate` of {ctx}")),
        None => Simulate::steady(50.0, Profile::default()),
    };
    Some(Arc::new(sim))
}

pub const KIND: Kind = Kind {
    name: "simulate",
    table: Some("simulate"),
    parse,
};

/// Distinct users the simulated requests come from.
const USERS: u64 = 1_000_000;
/// z for the 95th percentile of a normal distribution.
const Z95: f64 = 1.644_853_626_951_472_2;

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

    fn sample(&self, rng: &mut Rng) -> (f64, bool) {
        let ms = (self.mu + self.sigma * rng.normal()).exp() + self.extra_ms;
        (ms.max(0.001), rng.next_f64() < self.error_rate)
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
    pub fn run_second(&mut self, rollout: &mut Rollout, sec: i64, t_s: u64) -> Second {
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
        let mut v: Vec<(f64, bool)> = (0..100_000).map(|_| s.sample(&mut rng)).collect();
        v.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let q = |f: f64| v[(f * v.len() as f64) as usize].0;
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
        assert!(slow.sample(&mut rng).0 > 100.0);
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
