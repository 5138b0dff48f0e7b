//! Drills: a whole rollout on a virtual clock, through the same router, metrics, analysis and
//! controller as live traffic, with no sleeping. Many seeds run at once on every core.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::Rollout;
use super::config::{self, CanaryConfig};
use super::source::simulate::{self, Change, Profile, Simulate, Traffic, canary_at};
use crate::diag::{Checker, Diagnostic};
use crate::model::CanaryState;
use toml::de::DeTable;

/// A scenario file.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub duration_s: u64,
    pub rps: f64,
    pub seed: u64,
    pub legacy: Profile,
    pub canary: Profile,
    pub changes: Vec<Change>,
    pub config: CanaryConfig,
    /// Seconds at which the host restarts: the rollout carries on from what it last saved.
    pub restarts: Vec<u64>,
}

/// One action during a drill.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    pub at_s: u64,
    pub action: String,
    pub actor: String,
    pub weight: f64,
    pub reason: String,
}

/// The outcome of one seed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillResult {
    pub seed: u64,
    /// `promoted`, `rolled_back`, or the state the rollout was still in when time ran out.
    pub outcome: String,
    pub time_to_rollback_s: Option<u64>,
    pub time_to_promote_s: Option<u64>,
    pub canary_requests: u64,
    pub canary_errors: u64,
    /// Canary requests served while the canary was worse than the SLO allows.
    pub bad_requests_served: u64,
    /// The first second the canary was worse than the SLO allows, while the rollout ran.
    pub first_violation_s: Option<u64>,
    /// `correct`, `false_rollback` (rolled back a canary that had not yet violated the SLO),
    /// `missed_regression` (promoted one that had), or `undecided` (time ran out).
    pub verdict: String,
    /// Every decision, with its second.
    pub steps: Vec<StepRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub max: f64,
}

/// The distribution over many seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub seeds: u64,
    pub outcomes: BTreeMap<String, u64>,
    pub false_rollbacks: u64,
    pub missed_regressions: u64,
    pub time_to_rollback_s: Option<Spread>,
    pub time_to_promote_s: Option<Spread>,
    pub results: Vec<DrillResult>,
}

const KEYS: &[&str] = &["scenario", "legacy", "canary", "canary_config", "restart"];

/// Reads and checks a scenario file.
pub fn load(path: &Path) -> Result<Scenario, Vec<Diagnostic>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic::whole_file(
            name.clone(),
            format!("cannot read the file: {e}"),
        )]
    })?;
    parse(&name, &text)
}

pub fn parse(name: &str, text: &str) -> Result<Scenario, Vec<Diagnostic>> {
    crate::diag::check_text(name, text, scenario)?
        .ok_or_else(|| vec![Diagnostic::whole_file(name, "[canary_config] is not valid")])
}

/// The scenario in `root`; `None` when its canary config could not be built (the problems
/// are in `c`).
fn scenario(c: &mut Checker<'_>, root: &DeTable<'_>) -> Option<Scenario> {
    c.known_keys(root, KEYS, "the file");
    let (mut duration_s, mut rps, mut seed) = (3_600, 200.0, 1);
    match c.table(root, "scenario", "the file") {
        Some((t, _)) => {
            c.known_keys(t, &["duration", "rps", "seed"], "[scenario]");
            if let Some((d, _)) = c.duration(t, "duration", "[scenario]", Duration::from_secs(1)) {
                duration_s = d.as_secs();
            }
            if let Some((x, _)) = c.number(t, "rps", "[scenario]", 0.1, 1_000_000.0) {
                rps = x;
            }
            if let Some((n, _)) = c.int(t, "seed", "[scenario]", 0, i64::MAX) {
                seed = n as u64;
            }
        }
        None => c.missing(&(0..0), "scenario", "the file"),
    }
    let legacy = c
        .table(root, "legacy", "the file")
        .map_or_else(Profile::default, |(t, _)| {
            simulate::profile(c, t, "[legacy]", Profile::default())
        });
    let (canary, changes) = match c.table(root, "canary", "the file") {
        Some((t, _)) => {
            let mut scratch = t.clone();
            scratch.remove("change");
            let p = simulate::profile(c, &scratch, "[canary]", legacy);
            (p, simulate::changes(c, t, "[canary]"))
        }
        None => (legacy, Vec::new()),
    };
    let sim = Simulate {
        rps,
        legacy,
        canary,
        changes: changes.clone(),
        seed,
        restart_ended: false,
    };
    let cfg = match c.table(root, "canary_config", "the file") {
        Some((t, span)) => {
            let mut t = t.clone();
            t.remove("source");
            config::parse_one(c, "drill", &t, &span, "[canary_config]", false).map(|mut cfg| {
                cfg.source = Arc::new(sim.clone());
                cfg
            })
        }
        None => Some(CanaryConfig::simulated("drill", sim)),
    };
    let restarts = restarts(c, root);
    Some(Scenario {
        duration_s,
        rps,
        seed,
        legacy,
        canary,
        changes,
        config: cfg?,
        restarts,
    })
}

/// `[[restart]] at = "12m"` tables: when the host restarts during the drill.
fn restarts(c: &mut Checker<'_>, root: &DeTable<'_>) -> Vec<u64> {
    let Some(v) = crate::diag::get(root, "restart") else {
        return Vec::new();
    };
    let toml::de::DeValue::Array(items) = v.get_ref() else {
        c.error(&v.span(), "`restart` must be [[restart]] tables with `at`");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ctx = format!("[[restart]] {}", i + 1);
        let toml::de::DeValue::Table(t) = item.get_ref() else {
            c.error(&item.span(), format!("{ctx} must be a table with `at`"));
            continue;
        };
        c.known_keys(t, &["at"], &ctx);
        match c.duration(t, "at", &ctx, Duration::from_secs(1)) {
            Some((d, _)) => out.push(d.as_secs()),
            None if crate::diag::get(t, "at").is_none() => c.missing(&item.span(), "at", &ctx),
            None => {}
        }
    }
    out.sort_unstable();
    out
}

/// Whether a canary with profile `c` is worse than the SLO allows against legacy `l`.
fn violates(cfg: &CanaryConfig, l: &Profile, c: &Profile) -> bool {
    c.error_rate > l.error_rate + cfg.slo.max_error_rate_delta
        || c.p95_ms > l.p95_ms * (1.0 + cfg.slo.max_p95_increase)
}

/// Runs one seed from time 0 until the rollout ends or the scenario's time runs out.
pub fn run(s: &Scenario, seed: u64) -> DrillResult {
    let cfg = Arc::new(s.config.clone());
    let mut rollout = Rollout::new(cfg.clone(), 0, seed ^ 0x5eed);
    let sim = Simulate {
        rps: s.rps,
        legacy: s.legacy,
        canary: s.canary,
        changes: s.changes.clone(),
        seed,
        restart_ended: false,
    };
    let mut traffic = Traffic::new(sim, seed);
    let mut out = DrillResult {
        seed,
        outcome: String::new(),
        time_to_rollback_s: None,
        time_to_promote_s: None,
        canary_requests: 0,
        canary_errors: 0,
        bad_requests_served: 0,
        first_violation_s: None,
        verdict: String::new(),
        steps: Vec::new(),
    };
    // What a host would have saved last (state and status), for restarts.
    let mut saved: Option<(String, String)> = None;
    for t in 0..s.duration_s {
        let sec = t as i64;
        if s.restarts.contains(&t) {
            // The host stops and starts again: the rollout carries on from its last save.
            let (state, status) = saved.clone().unzip();
            let ctl =
                super::Controller::restored(cfg.clone(), state.as_deref(), status.as_deref(), sec);
            rollout = Rollout::resume(ctl, seed ^ 0x5eed ^ t);
        }
        let got = traffic.run_second(&mut rollout, sec, t);
        out.canary_requests += got.canary_requests;
        out.canary_errors += got.canary_errors;
        if violates(&cfg, &s.legacy, &canary_at(s.canary, &s.changes, t)) {
            out.bad_requests_served += got.canary_requests;
            out.first_violation_s.get_or_insert(t);
        }
        let acted = rollout.tick(sec);
        if acted.is_some() || rollout.ctl.analysis_at == Some(sec) {
            saved = Some((
                serde_json::to_string(&rollout.ctl.st).unwrap_or_default(),
                serde_json::to_string(&rollout.status()).unwrap_or_default(),
            ));
        }
        if let Some(rec) = acted {
            out.steps.push(StepRecord {
                at_s: t,
                action: rec.action.clone(),
                actor: rec.actor.clone(),
                weight: rec.weight_after,
                reason: rec.reason.clone(),
            });
            match rollout.ctl.state() {
                CanaryState::RolledBack => out.time_to_rollback_s = Some(t),
                CanaryState::Promoted => out.time_to_promote_s = Some(t),
                _ => {}
            }
        }
        if rollout.ctl.state().is_final() {
            break;
        }
    }
    out.outcome = rollout.ctl.state().as_str().to_string();
    out.verdict = match (rollout.ctl.state(), out.first_violation_s) {
        (CanaryState::RolledBack, first) => {
            let at = out.time_to_rollback_s.unwrap_or(0);
            if first.is_none_or(|f| f > at) {
                "false_rollback"
            } else {
                "correct"
            }
        }
        (CanaryState::Promoted, Some(_)) => "missed_regression",
        (CanaryState::Promoted, None) => "correct",
        _ => "undecided",
    }
    .to_string();
    out
}

fn spread(mut v: Vec<u64>) -> Option<Spread> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let mid = v.len() / 2;
    let median = if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) as f64 / 2.0
    } else {
        v[mid] as f64
    };
    Some(Spread {
        median,
        max: v[v.len() - 1] as f64,
    })
}

/// Runs seeds `1..=n` in parallel on every core.
pub fn run_seeds(s: &Scenario, seeds: &[u64]) -> Summary {
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(seeds.len().max(1));
    let mut results: Vec<DrillResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let mine: Vec<u64> = seeds.iter().copied().skip(w).step_by(workers).collect();
                scope.spawn(move || {
                    mine.into_iter()
                        .map(|seed| run(s, seed))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    results.sort_by_key(|r| r.seed);
    let mut outcomes = BTreeMap::new();
    for r in &results {
        *outcomes.entry(r.outcome.clone()).or_insert(0) += 1;
    }
    let count = |v: &str| results.iter().filter(|r| r.verdict == v).count() as u64;
    Summary {
        seeds: results.len() as u64,
        outcomes,
        false_rollbacks: count("false_rollback"),
        missed_regressions: count("missed_regression"),
        time_to_rollback_s: spread(
            results
                .iter()
                .filter_map(|r| r.time_to_rollback_s)
                .collect(),
        ),
        time_to_promote_s: spread(results.iter().filter_map(|r| r.time_to_promote_s).collect()),
        results,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPIKE: &str = r#"
[scenario]
duration = "60m"
rps = 200
seed = 1
[legacy]
p50_ms = 80
p95_ms = 200
error_rate = 0.005
[canary]
p50_ms = 80
p95_ms = 200
error_rate = 0.08
[canary_config]
analysis = { interval = "10s" }
"#;

    #[test]
    fn an_error_spike_is_rolled_back_quickly_and_reproducibly() {
        let s = parse("spike.toml", SPIKE).unwrap();
        assert_eq!((s.duration_s, s.rps), (3_600, 200.0));
        let a = run(&s, 1);
        assert_eq!(a.outcome, "rolled_back", "{a:?}");
        assert!(a.time_to_rollback_s.unwrap() <= 30, "{a:?}");
        assert_eq!(a.bad_requests_served, a.canary_requests);
        assert_eq!(a, run(&s, 1), "a seed gives the same drill every time");
    }

    #[test]
    fn a_healthy_canary_is_promoted_through_every_step() {
        let text = SPIKE.replace("error_rate = 0.08", "error_rate = 0.005");
        let s = parse("healthy.toml", &text).unwrap();
        let r = run(&s, 2);
        assert_eq!(r.outcome, "promoted", "{r:?}");
        assert_eq!(r.steps.iter().filter(|s| s.action == "promote").count(), 4);
        assert!(
            r.time_to_promote_s.unwrap() >= 35 * 60,
            "every pause is held: {r:?}"
        );
        assert_eq!(r.bad_requests_served, 0);
    }

    #[test]
    fn scenario_mistakes_name_the_place() {
        let e = parse("bad.toml", "[scenario]\nduration = \"1x\"\nrsp = 3\n").unwrap_err();
        let all: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert!(
            all.iter().any(|l| l.starts_with("bad.toml:2:12:")),
            "{all:?}"
        );
        assert!(
            all.iter()
                .any(|l| l.contains("unknown key `rsp`") && l.contains("did you mean `rps`")),
            "{all:?}"
        );
    }

    /// A scenario: `rps`, legacy and canary as (error rate, p50 ms, p95 ms), and extra TOML
    /// (changes, restarts).
    fn scenario(
        rps: u32,
        legacy: (f64, u32, u32),
        canary: (f64, u32, u32),
        extra: &str,
    ) -> Scenario {
        let text = format!(
            "[scenario]\nduration = \"60m\"\nrps = {rps}\nseed = 1\n\
             [legacy]\nerror_rate = {}\np50_ms = {}\np95_ms = {}\n\
             [canary]\nerror_rate = {}\np50_ms = {}\np95_ms = {}\n{extra}\n\
             [canary_config]\nanalysis = {{ interval = \"10s\" }}\n",
            legacy.0, legacy.1, legacy.2, canary.0, canary.1, canary.2
        );
        parse("targets.toml", &text).unwrap()
    }

    fn seeds(n: u64) -> Vec<u64> {
        (1..=n).collect()
    }

    /// The judge's targets over many seeds, on the virtual clock (so the times are exact and
    /// may be asserted). Slow in a debug build: `.ci/run` runs it with `--release`.
    #[test]
    #[ignore = "hundreds of hour-long rollouts: run with --release (.ci/run does)"]
    fn the_judge_meets_its_targets_over_many_seeds() {
        const LATE: &str = "[[canary.change]]\nat = \"20m\"\nerror_rate = 0.02\n";
        // Identical versions at both baselines and from 50 to 1,000 requests a second: no
        // false rollbacks.
        for base in [0.004, 0.02] {
            for rps in [50, 200, 1_000] {
                let s = scenario(rps, (base, 80, 200), (base, 80, 200), "");
                let sum = run_seeds(&s, &seeds(100));
                assert_eq!(
                    sum.false_rollbacks, 0,
                    "A/A at {base} and {rps} rps: {:?}",
                    sum.outcomes
                );
                assert_eq!(sum.outcomes.get("promoted"), Some(&100));
            }
        }
        let aa = run_seeds(
            &scenario(200, (0.004, 80, 200), (0.004, 80, 200), ""),
            &seeds(1_000),
        );
        assert!(
            aa.false_rollbacks <= 1,
            "1,000 A/A seeds: {:?}",
            aa.outcomes
        );
        // 1.2% against 0.4%, 0.3 points over the margin: never promoted to 100%.
        let over = run_seeds(
            &scenario(200, (0.004, 80, 200), (0.012, 80, 200), ""),
            &seeds(100),
        );
        assert_eq!(over.outcomes.get("promoted"), None, "{:?}", over.outcomes);
        // Healthy for 20 minutes, then 2% errors: found within a minute (median).
        let late = run_seeds(
            &scenario(200, (0.004, 80, 200), (0.004, 80, 200), LATE),
            &seeds(100),
        );
        assert_eq!(late.false_rollbacks, 0);
        let t = late.time_to_rollback_s.unwrap();
        assert!(t.median <= 1_200.0 + 60.0, "late failure: {t:?}");
        // 8% errors from the start.
        let spike = run_seeds(
            &scenario(200, (0.005, 80, 200), (0.08, 80, 200), ""),
            &seeds(100),
        );
        let t = spike.time_to_rollback_s.unwrap();
        assert!(t.median <= 15.0 && t.max <= 30.0, "8% errors: {t:?}");
        // P95 +50% and +20%.
        let slow = run_seeds(
            &scenario(200, (0.005, 80, 200), (0.005, 90, 300), ""),
            &seeds(100),
        );
        let t = slow.time_to_rollback_s.unwrap();
        assert_eq!(slow.outcomes.get("rolled_back"), Some(&100));
        assert!(t.median <= 30.0 && t.max <= 60.0, "P95 +50%: {t:?}");
        let slower = run_seeds(
            &scenario(200, (0.005, 80, 200), (0.005, 84, 240), ""),
            &seeds(100),
        );
        let t = slower.time_to_rollback_s.unwrap();
        assert_eq!(slower.outcomes.get("rolled_back"), Some(&100));
        assert!(t.median <= 300.0, "P95 +20%: {t:?}");
        // Inside the SLO (P95 +5%): promoted.
        let fine = run_seeds(
            &scenario(200, (0.005, 80, 200), (0.005, 82, 210), ""),
            &seeds(100),
        );
        assert!(
            fine.outcomes.get("promoted").copied().unwrap_or(0) >= 99,
            "{:?}",
            fine.outcomes
        );
        // A restart at any minute changes none of the outcomes.
        for minute in [3, 12, 19, 21, 30] {
            let restart = format!("{LATE}[[restart]]\nat = \"{minute}m\"\n");
            let r = run_seeds(
                &scenario(200, (0.004, 80, 200), (0.004, 80, 200), &restart),
                &seeds(100),
            );
            assert_eq!(r.false_rollbacks, 0, "restart at {minute}m");
            assert_eq!(
                r.outcomes.get("rolled_back"),
                Some(&100),
                "restart at {minute}m"
            );
            let t = r.time_to_rollback_s.unwrap();
            assert!(t.median <= 1_200.0 + 60.0, "restart at {minute}m: {t:?}");
            let over = format!("[[restart]]\nat = \"{minute}m\"\n");
            let r = run_seeds(
                &scenario(200, (0.004, 80, 200), (0.012, 80, 200), &over),
                &seeds(100),
            );
            assert_eq!(
                r.outcomes.get("promoted"),
                None,
                "restart at {minute}m: {:?}",
                r.outcomes
            );
        }
    }

    #[test]
    fn a_restart_carries_the_evidence_and_the_step_on() {
        let extra = "[[restart]]\nat = \"4m\"\n";
        let with = run(&scenario(200, (0.005, 80, 200), (0.005, 80, 200), extra), 3);
        let without = run(&scenario(200, (0.005, 80, 200), (0.005, 80, 200), ""), 3);
        // The first step still ends at about 5 minutes (what was not saved yet, at most one
        // analysis interval, is lost): the restart neither shortened nor restarted it.
        let first = |r: &DrillResult| {
            r.steps
                .iter()
                .find(|s| s.action == "promote")
                .map(|s| s.at_s)
        };
        assert_eq!(first(&without), Some(300));
        assert!(
            first(&with).is_some_and(|t| (300..=310).contains(&t)),
            "{:?}",
            with.steps
        );
        assert_eq!(with.verdict, "correct");
        let bad = parse("bad.toml", "[scenario]\n[[restart]]\nat = \"soon\"\n").unwrap_err();
        assert!(
            bad.iter().any(|d| d.to_string().contains("[[restart]] 1")),
            "{bad:?}"
        );
    }
}
