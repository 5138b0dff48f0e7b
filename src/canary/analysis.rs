//! The checks: canary against legacy, per SLO, on everything since the step began, with
//! anytime-valid bounds (see `stats`), and the hard rollback triggers on their own windows.

use serde_json::{Map, Value, json};

use super::config::CanaryConfig;
use super::metrics::{Metrics, Totals};
use super::stats::{Prior, bernoulli_cs, quantile_ranks};
use crate::model::{Check, TriggerStatus, Verdict, Version};

/// The hard triggers look at the canary's last minute.
pub const TRIGGER_WINDOW_S: i64 = 60;
/// Requests the trigger window needs before an error rate or availability can fire it, so a
/// handful of early errors cannot.
pub const TRIGGER_MIN_REQUESTS: u64 = 100;
/// Latencies the trigger window needs before its P95 counts.
pub const TRIGGER_MIN_LATENCIES: u64 = 50;

/// ` (held 40s)` while a condition holds; nothing when it does not.
fn held_for(s: u64) -> String {
    if s == 0 {
        String::new()
    } else {
        format!(" (held {s}s)")
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

fn num(x: f64) -> Value {
    // Six significant figures are plenty for people and keep fixtures stable.
    let rounded = if x == 0.0 || !x.is_finite() {
        x
    } else {
        let digits = 6 - x.abs().log10().ceil() as i32;
        let f = 10f64.powi(digits);
        (x * f).round() / f
    };
    json!(rounded)
}

/// The value of the `rank`-th smallest recorded latency (1-based), rounded down to its bucket's
/// lowest value when `low`, else up to its highest: bounds stay on the safe side of rounding.
fn at_rank(t: &Totals, rank: u64, low: bool) -> Option<f64> {
    if rank == 0 || rank > t.latency.len() {
        return None;
    }
    let mut seen = 0;
    for v in t.latency.iter_recorded() {
        seen += u64::from(v.count_at_value());
        if seen >= rank {
            let value = v.value_iterated_to();
            let edge = if low {
                t.latency.lowest_equivalent(value)
            } else {
                t.latency.highest_equivalent(value)
            };
            return Some(edge as f64);
        }
    }
    None
}

/// The verdict rule shared by every check: `fail` as soon as the bounds say so, at any sample
/// size; `inconclusive` while either version has fewer than `min_requests`; else `pass`.
/// Also returns whether both versions have enough requests.
fn decide(failed: bool, legacy: &Totals, canary: &Totals, cfg: &CanaryConfig) -> (Verdict, bool) {
    let enough = legacy.requests >= cfg.analysis.min_requests
        && canary.requests >= cfg.analysis.min_requests;
    let verdict = if failed {
        Verdict::Fail
    } else if enough {
        Verdict::Pass
    } else {
        Verdict::Inconclusive
    };
    (verdict, enough)
}

/// Error rate: fail when the canary's lower bound exceeds legacy's upper bound by more than the
/// allowed delta; proven within when the canary's upper bound is within delta of legacy's lower.
pub fn error_check(legacy: &Totals, canary: &Totals, cfg: &CanaryConfig) -> Check {
    let alpha = (1.0 - cfg.analysis.confidence) / 2.0;
    let delta = cfg.slo.max_error_rate_delta;
    let (l_lo, l_hi) = bernoulli_cs(legacy.errors, legacy.requests, alpha, Prior::RATES);
    let (c_lo, c_hi) = bernoulli_cs(canary.errors, canary.requests, alpha, Prior::RATES);
    let diff_lower = c_lo - l_hi;
    let diff_upper = c_hi - l_lo;
    let failed = diff_lower > delta;
    let (verdict, enough) = decide(failed, legacy, canary, cfg);
    let rate = |t: &Totals| t.error_rate().unwrap_or(0.0);
    let pts = |x: f64| format!("{:+.2} pts", x * 100.0);
    let head = format!("errors {} vs {}", pct(rate(canary)), pct(rate(legacy)));
    let summary = match verdict {
        Verdict::Fail => format!(
            "{head}: at least {}, over the {} allowed",
            pts(diff_lower),
            pts(delta)
        ),
        Verdict::Inconclusive => format!(
            "{head}; needs {} requests each, has canary {} / legacy {}",
            cfg.analysis.min_requests, canary.requests, legacy.requests
        ),
        Verdict::Pass => format!(
            "{head}: not shown over {} (bound {})",
            pts(delta),
            pts(diff_upper.max(0.0))
        ),
    };
    let mut n = Map::new();
    n.insert("legacy_requests".into(), json!(legacy.requests));
    n.insert("legacy_errors".into(), json!(legacy.errors));
    n.insert("canary_requests".into(), json!(canary.requests));
    n.insert("canary_errors".into(), json!(canary.errors));
    n.insert("legacy_rate".into(), num(rate(legacy)));
    n.insert("canary_rate".into(), num(rate(canary)));
    n.insert("legacy_lower".into(), num(l_lo));
    n.insert("legacy_upper".into(), num(l_hi));
    n.insert("canary_lower".into(), num(c_lo));
    n.insert("canary_upper".into(), num(c_hi));
    n.insert("diff_lower".into(), num(diff_lower));
    n.insert("diff_upper".into(), num(diff_upper));
    n.insert("allowed_delta".into(), num(delta));
    n.insert("confidence".into(), num(cfg.analysis.confidence));
    n.insert("min_requests".into(), json!(cfg.analysis.min_requests));
    Check {
        name: "error_rate".into(),
        verdict,
        proven_within_slo: diff_upper <= delta && enough,
        summary,
        numbers: n,
    }
}

/// Latency: the canary's P95 against legacy's times (1 + allowed increase), with bounds from
/// order statistics, so no distribution is assumed.
pub fn latency_check(legacy: &Totals, canary: &Totals, cfg: &CanaryConfig) -> Check {
    let alpha = (1.0 - cfg.analysis.confidence) / 2.0;
    let factor = 1.0 + cfg.slo.max_p95_increase;
    let (nl, nc) = (legacy.latency.len(), canary.latency.len());
    let (l_lo_rank, l_hi_rank) = quantile_ranks(nl, 0.95, alpha);
    let (c_lo_rank, c_hi_rank) = quantile_ranks(nc, 0.95, alpha);
    let l_lo = at_rank(legacy, l_lo_rank, true);
    let l_hi = at_rank(legacy, l_hi_rank, false);
    let c_lo = at_rank(canary, c_lo_rank, true);
    let c_hi = at_rank(canary, c_hi_rank, false);
    let failed = matches!((c_lo, l_hi), (Some(c), Some(l)) if c > factor * l);
    let proven = matches!((c_hi, l_lo), (Some(c), Some(l)) if c <= factor * l);
    let (verdict, enough) = decide(failed, legacy, canary, cfg);
    let (lp, cp) = (legacy.quantile(0.95), canary.quantile(0.95));
    let ms = |x: Option<f64>| {
        x.map_or_else(
            || "-".to_string(),
            |v| {
                if v < 1_000.0 {
                    format!("{v:.1}ms")
                } else {
                    format!("{v:.0}ms")
                }
            },
        )
    };
    let limit = l_hi.map(|l| l * factor);
    let head = format!("P95 {} vs {}", ms(cp), ms(lp));
    let summary = match verdict {
        Verdict::Fail => format!("{head}: at least {} over the {} limit", ms(c_lo), ms(limit)),
        Verdict::Inconclusive => format!(
            "{head}; needs {} requests each, has canary {} / legacy {}",
            cfg.analysis.min_requests, canary.requests, legacy.requests
        ),
        Verdict::Pass => format!(
            "{head}: not shown over +{:.0}%",
            cfg.slo.max_p95_increase * 100.0
        ),
    };
    let opt = |x: Option<f64>| x.map_or(Value::Null, num);
    let mut n = Map::new();
    n.insert("legacy_samples".into(), json!(nl));
    n.insert("canary_samples".into(), json!(nc));
    n.insert("legacy_p95_ms".into(), opt(lp));
    n.insert("canary_p95_ms".into(), opt(cp));
    n.insert("legacy_p95_lower_ms".into(), opt(l_lo));
    n.insert("legacy_p95_upper_ms".into(), opt(l_hi));
    n.insert("canary_p95_lower_ms".into(), opt(c_lo));
    n.insert("canary_p95_upper_ms".into(), opt(c_hi));
    n.insert("limit_ms".into(), opt(limit));
    n.insert("allowed_increase".into(), num(cfg.slo.max_p95_increase));
    n.insert("confidence".into(), num(cfg.analysis.confidence));
    n.insert("min_requests".into(), json!(cfg.analysis.min_requests));
    Check {
        name: "latency_p95".into(),
        verdict,
        proven_within_slo: proven && enough,
        summary,
        numbers: n,
    }
}

/// Both checks on everything since the analysis epoch began.
pub fn checks(m: &Metrics, cfg: &CanaryConfig) -> Vec<Check> {
    let (l, c) = (m.epoch(Version::Legacy), m.epoch(Version::Canary));
    vec![error_check(&l, &c, cfg), latency_check(&l, &c, cfg)]
}

/// Since when each sustained trigger's condition has held (`None`: it does not hold now).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub p95: Option<i64>,
    pub availability: Option<i64>,
}

/// The hard triggers at second `now`, updating how long the sustained ones have held.
pub fn triggers(m: &Metrics, now: i64, cfg: &CanaryConfig, held: &mut Held) -> Vec<TriggerStatus> {
    let r = &cfg.rollback;
    let w = m.window(Version::Canary, now - TRIGGER_WINDOW_S + 1, now);
    let rate = (w.requests >= TRIGGER_MIN_REQUESTS).then(|| w.errors as f64 / w.requests as f64);
    let p95 = (w.latency.len() >= TRIGGER_MIN_LATENCIES)
        .then(|| w.quantile(0.95))
        .flatten();
    let track = |cond: bool, since: &mut Option<i64>| -> u64 {
        if cond {
            let s = *since.get_or_insert(now);
            (now - s).max(0) as u64
        } else {
            *since = None;
            0
        }
    };
    let p95_held = track(p95.is_some_and(|p| p > r.p95_above_ms), &mut held.p95);
    let avail = rate.map(|e| 1.0 - e);
    let avail_held = track(
        avail.is_some_and(|a| a < r.availability_below),
        &mut held.availability,
    );
    let fired_rate = rate.is_some_and(|e| e > r.error_rate_above);
    let window = format!("over the last {TRIGGER_WINDOW_S}s");
    vec![
        TriggerStatus {
            name: "error_rate_above".into(),
            fired: fired_rate,
            value: rate,
            threshold: r.error_rate_above,
            held_s: 0,
            for_s: 0,
            summary: match rate {
                Some(e) => format!(
                    "canary errors {} {window}; rolls back above {}",
                    pct(e),
                    pct(r.error_rate_above)
                ),
                None => format!("fewer than {TRIGGER_MIN_REQUESTS} canary requests {window}"),
            },
        },
        TriggerStatus {
            name: "p95_above_ms".into(),
            fired: p95.is_some() && p95_held >= r.p95_for_s && held.p95.is_some(),
            value: p95,
            threshold: r.p95_above_ms,
            held_s: p95_held,
            for_s: r.p95_for_s,
            summary: match p95 {
                Some(p) => format!(
                    "canary P95 {p:.0}ms {window}; rolls back after {}s above {:.0}ms{}",
                    r.p95_for_s,
                    r.p95_above_ms,
                    held_for(p95_held)
                ),
                None => format!("fewer than {TRIGGER_MIN_LATENCIES} canary latencies {window}"),
            },
        },
        TriggerStatus {
            name: "availability_below".into(),
            fired: avail.is_some()
                && avail_held >= r.availability_for_s
                && held.availability.is_some(),
            value: avail,
            threshold: r.availability_below,
            held_s: avail_held,
            for_s: r.availability_for_s,
            summary: match avail {
                Some(a) => format!(
                    "canary availability {} {window}; rolls back after {}s below {}{}",
                    pct(a),
                    r.availability_for_s,
                    pct(r.availability_below),
                    held_for(avail_held)
                ),
                None => format!("fewer than {TRIGGER_MIN_REQUESTS} canary requests {window}"),
            },
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::config::CanaryConfig;
    use crate::canary::source::simulate::{Profile, Simulate};

    fn cfg() -> CanaryConfig {
        CanaryConfig::simulated("t", Simulate::steady(1.0, Profile::default()))
    }

    /// `n` requests with `errors` errors, latencies spread evenly over `lo..=hi` ms.
    fn totals(n: u64, errors: u64, lo: u64, hi: u64) -> Totals {
        let mut t = Totals::new();
        t.requests = n;
        t.errors = errors;
        for i in 0..n {
            t.latency.saturating_record(lo + (hi - lo) * i / n.max(1));
        }
        t
    }

    #[test]
    fn a_clearly_worse_error_rate_fails_before_min_requests() {
        let c = error_check(
            &totals(2_000, 10, 50, 150),
            &totals(100, 12, 50, 150),
            &cfg(),
        );
        assert_eq!(c.verdict, Verdict::Fail, "{}", c.summary);
        assert!(c.numbers["diff_lower"].as_f64().unwrap() > 0.005);
        assert_eq!(c.numbers["canary_errors"], json!(12));
    }

    #[test]
    fn equal_rates_wait_for_min_requests_then_pass() {
        let early = error_check(&totals(900, 4, 50, 150), &totals(100, 0, 50, 150), &cfg());
        assert_eq!(early.verdict, Verdict::Inconclusive);
        let no_data = error_check(&Totals::new(), &Totals::new(), &cfg());
        assert_eq!(
            no_data.verdict,
            Verdict::Inconclusive,
            "no data is never pass"
        );
        let late = error_check(
            &totals(40_000, 200, 50, 150),
            &totals(4_000, 20, 50, 150),
            &cfg(),
        );
        assert_eq!(late.verdict, Verdict::Pass, "{}", late.summary);
        assert!(
            !late.proven_within_slo,
            "4,000 canary requests cannot prove within half a point"
        );
        let proven = error_check(
            &totals(400_000, 2_000, 50, 150),
            &totals(100_000, 500, 50, 150),
            &cfg(),
        );
        assert!(proven.proven_within_slo, "{:?}", proven.numbers);
    }

    #[test]
    fn latency_fails_on_a_clearly_slower_canary_and_passes_a_slightly_slower_one() {
        // Legacy P95 about 190ms; a canary 60% slower fails, one 5% slower passes.
        let legacy = totals(20_000, 0, 10, 200);
        let slow = latency_check(&legacy, &totals(1_000, 0, 16, 320), &cfg());
        assert_eq!(slow.verdict, Verdict::Fail, "{}", slow.summary);
        let lb = slow.numbers["canary_p95_lower_ms"].as_f64().unwrap();
        let ub = slow.numbers["legacy_p95_upper_ms"].as_f64().unwrap();
        assert!(lb > 1.1 * ub, "{lb} {ub}");
        let fine = latency_check(&legacy, &totals(2_000, 0, 10, 210), &cfg());
        assert_eq!(fine.verdict, Verdict::Pass, "{}", fine.summary);
        let few = latency_check(&legacy, &totals(10, 0, 16, 320), &cfg());
        assert_eq!(
            few.verdict,
            Verdict::Inconclusive,
            "ten samples decide nothing"
        );
        assert_eq!(
            few.numbers["canary_p95_upper_ms"],
            Value::Null,
            "nor bound the P95 from above"
        );
    }

    #[test]
    fn triggers_need_their_minimum_and_their_duration() {
        let cfg = cfg();
        let mut m = Metrics::new(300, 3_600);
        let mut held = Held::default();
        // Five errors in ten requests: no trigger, too few requests.
        for i in 0..10 {
            m.record(0, Version::Canary, 50, i < 5);
        }
        assert!(triggers(&m, 0, &cfg, &mut held).iter().all(|t| !t.fired));
        // 3,000ms for long enough fires the P95 trigger only after p95_for.
        for sec in 1..=400 {
            for _ in 0..2 {
                m.record(sec, Version::Canary, 3_000, false);
            }
            let t = triggers(&m, sec, &cfg, &mut held);
            let fired = t[1].fired;
            assert_eq!(
                fired,
                held.p95.is_some_and(|s| sec - s >= 300),
                "second {sec}: {:?}",
                t[1]
            );
        }
        assert!(triggers(&m, 400, &cfg, &mut held)[1].fired);
        // Ten percent errors fires the error trigger at once.
        for _ in 0..200 {
            m.record(401, Version::Canary, 50, true);
        }
        assert!(triggers(&m, 401, &cfg, &mut held)[0].fired);
    }
}
