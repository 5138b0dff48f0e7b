//! The checks: canary against legacy, per SLO, on everything since the rollout began, with
//! anytime-valid bounds (see `stats`), and the hard rollback triggers on their own windows.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::config::CanaryConfig;
use super::detect::{Detectors, Stream, thresholds};
use super::metrics::{Metrics, Totals};
use super::stats::{Prior, bernoulli_cs, quantile_ranks};
use crate::model::{Check, TriggerStatus, Verdict, Version};

/// The hard triggers look at the canary's last minute.
pub const TRIGGER_WINDOW_S: i64 = super::metrics::MINUTE;
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

/// `x` and `y` as `show` writes them with `decimals`, or up to two more while that would
/// write them alike: "at least +0.50 pts, over the +0.50 pts allowed" says nothing.
fn apart(x: f64, y: f64, decimals: usize, show: impl Fn(f64, usize) -> String) -> (String, String) {
    let mut d = decimals;
    loop {
        let (a, b) = (show(x, d), show(y, d));
        if a != b || d >= decimals + 2 {
            return (a, b);
        }
        d += 1;
    }
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
            return Some(edge as f64 / 1_000.0);
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
    error_check_with(legacy, canary, cfg).0
}

/// Legacy's and the canary's error-rate bounds (lower, upper), each at half the check's
/// error budget.
fn error_bounds(legacy: &Totals, canary: &Totals, cfg: &CanaryConfig) -> ((f64, f64), (f64, f64)) {
    let alpha = (1.0 - cfg.analysis.confidence) / 2.0;
    (
        bernoulli_cs(legacy.errors, legacy.requests, alpha, Prior::RATES),
        bernoulli_cs(canary.errors, canary.requests, alpha, Prior::RATES),
    )
}

/// Legacy's P95 bounds and the canary's (lower, upper, in ms), each at half the check's error
/// budget; `None` while a version has too few latencies for that bound.
type P95Bounds = ((Option<f64>, Option<f64>), (Option<f64>, Option<f64>));

fn latency_bounds(legacy: &Totals, canary: &Totals, cfg: &CanaryConfig) -> P95Bounds {
    let alpha = (1.0 - cfg.analysis.confidence) / 2.0;
    let (c_lo_rank, c_hi_rank) = quantile_ranks(canary.latency.len(), 0.95, alpha);
    (
        legacy_p95_bounds(legacy, alpha),
        (
            at_rank(canary, c_lo_rank, true),
            at_rank(canary, c_hi_rank, false),
        ),
    )
}

/// Whether the canary is shown over its SLO by the bounds alone (a `fail` of either check
/// before the detectors are consulted). Confidence sequences hold at every sample size, so
/// this is looked at every second at no cost in false alarms: a canary shown bad is rolled
/// back at once, not at the next interval.
pub fn bounds_crossed(m: &Metrics, cfg: &CanaryConfig) -> bool {
    let (l, c) = (m.epoch(Version::Legacy), m.epoch(Version::Canary));
    let ((_, l_hi), (c_lo, _)) = error_bounds(&l, &c, cfg);
    if c_lo - l_hi > cfg.slo.max_error_rate_delta {
        return true;
    }
    let ((_, l_hi), (c_lo, _)) = latency_bounds(&l, &c, cfg);
    matches!((c_lo, l_hi), (Some(c), Some(l)) if c > (1.0 + cfg.slo.max_p95_increase) * l)
}

/// The error check and the head of its summary (`errors 0.30% vs 0.36%`).
fn error_check_with(legacy: &Totals, canary: &Totals, cfg: &CanaryConfig) -> (Check, String) {
    let delta = cfg.slo.max_error_rate_delta;
    let ((l_lo, l_hi), (c_lo, c_hi)) = error_bounds(legacy, canary, cfg);
    let diff_lower = c_lo - l_hi;
    let diff_upper = c_hi - l_lo;
    let failed = diff_lower > delta;
    let (verdict, enough) = decide(failed, legacy, canary, cfg);
    let rate = |t: &Totals| t.error_rate().unwrap_or(0.0);
    let pts = |x: f64| pts_at(x, 2);
    let head = format!("errors {} vs {}", pct(rate(canary)), pct(rate(legacy)));
    // The numbers beside a verdict are the ones it was decided on: the difference's bounds.
    let summary = match verdict {
        Verdict::Fail => {
            let (at_least, allowed) = apart(diff_lower, delta, 2, pts_at);
            format!("{head}: at least {at_least}, over the {allowed} allowed")
        }
        Verdict::Inconclusive => format!(
            "{head}; needs {} requests each, has canary {} / legacy {}",
            cfg.analysis.min_requests, canary.requests, legacy.requests
        ),
        Verdict::Pass => format!(
            "{head}: not shown over {} (difference {} to {})",
            pts(delta),
            pts(diff_lower),
            pts(diff_upper)
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
    let check = Check {
        name: "error_rate".into(),
        verdict,
        proven_within_slo: diff_upper <= delta && enough,
        summary,
        numbers: n,
        at: None,
    };
    (check, head)
}

/// Legacy's P95 bounds (ms) at the check's confidence, from order statistics.
fn legacy_p95_bounds(legacy: &Totals, alpha: f64) -> (Option<f64>, Option<f64>) {
    let (lo, hi) = quantile_ranks(legacy.latency.len(), 0.95, alpha);
    (at_rank(legacy, lo, true), at_rank(legacy, hi, false))
}

fn ms(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |v| ms_at(v, ms_decimals(v)))
}

/// Milliseconds get one decimal below a second, none above.
fn ms_decimals(v: f64) -> usize {
    usize::from(v < 1_000.0)
}

fn ms_at(v: f64, decimals: usize) -> String {
    format!("{v:.decimals$}ms")
}

/// A difference of rates in percentage points, signed.
fn pts_at(x: f64, decimals: usize) -> String {
    format!("{:+.decimals$} pts", x * 100.0)
}

/// Latency: the canary's P95 against legacy's times (1 + allowed increase), with bounds from
/// order statistics, so no distribution is assumed.
pub fn latency_check(legacy: &Totals, canary: &Totals, cfg: &CanaryConfig) -> Check {
    latency_check_with(legacy, canary, cfg).0
}

fn latency_check_with(legacy: &Totals, canary: &Totals, cfg: &CanaryConfig) -> (Check, String) {
    let factor = 1.0 + cfg.slo.max_p95_increase;
    let (nl, nc) = (legacy.latency.len(), canary.latency.len());
    let ((l_lo, l_hi), (c_lo, c_hi)) = latency_bounds(legacy, canary, cfg);
    let failed = matches!((c_lo, l_hi), (Some(c), Some(l)) if c > factor * l);
    let proven = matches!((c_hi, l_lo), (Some(c), Some(l)) if c <= factor * l);
    let (verdict, enough) = decide(failed, legacy, canary, cfg);
    let (lp, cp) = (legacy.quantile(0.95), canary.quantile(0.95));
    let limit = l_hi.map(|l| l * factor);
    let head = format!("P95 {} vs {}", ms(cp), ms(lp));
    let summary = match verdict {
        Verdict::Fail => {
            let (at_least, over) = match (c_lo, limit) {
                (Some(c), Some(l)) => apart(c, l, ms_decimals(c), ms_at),
                _ => (ms(c_lo), ms(limit)),
            };
            format!("{head}: at least {at_least}, over the {over} limit")
        }
        Verdict::Inconclusive => format!(
            "{head}; needs {} requests each, has canary {} / legacy {}",
            cfg.analysis.min_requests, canary.requests, legacy.requests
        ),
        Verdict::Pass => format!(
            "{head}: not shown over +{:.0}% (canary at least {}, limit {})",
            cfg.slo.max_p95_increase * 100.0,
            ms(c_lo),
            ms(limit)
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
    let check = Check {
        name: "latency_p95".into(),
        verdict,
        proven_within_slo: proven && enough,
        summary,
        numbers: n,
        at: None,
    };
    (check, head)
}

/// Adds a stream's evidence to a check: its numbers always, and a `fail` when the rollout
/// e-process or the change detector crosses its threshold (the bounds alone had not).
fn judged(
    (mut check, head): (Check, String),
    s: &Stream,
    (e_th, d_th): (f64, f64),
    (p0, now): (Option<f64>, i64),
    what: &str,
) -> Check {
    let n = &mut check.numbers;
    n.insert("evidence".into(), num(s.log_e));
    n.insert("evidence_threshold".into(), num(e_th));
    n.insert("change".into(), num(s.level()));
    n.insert("change_threshold".into(), num(d_th));
    n.insert("null_rate".into(), p0.map_or(Value::Null, num));
    if check.verdict == Verdict::Fail {
        return check;
    }
    let bound = p0.map_or_else(String::new, |p| format!(", against at most {}", pct(p)));
    if s.log_e >= e_th {
        check.verdict = Verdict::Fail;
        check.summary = format!(
            "{head}: over the SLO on the rollout's evidence ({:.1} of {:.1} nats{bound} {what})",
            s.log_e, e_th
        );
    } else if s.level() >= d_th {
        let ago = s.rising_since.map_or_else(String::new, |t| {
            format!(" since about {}s ago", (now - t).max(0))
        });
        check.verdict = Verdict::Fail;
        check.summary = format!(
            "{head}: worse{ago}, by the change detector ({:.1} of {:.1} nats{bound} {what})",
            s.level(),
            d_th
        );
    }
    check
}

/// Both checks on everything since the rollout began, after the new seconds of canary traffic
/// have gone into the e-processes and change detectors.
pub fn checks(m: &Metrics, now: i64, cfg: &CanaryConfig, det: &mut Detectors) -> Vec<Check> {
    let (l, c) = (m.epoch(Version::Legacy), m.epoch(Version::Canary));
    let (err_p0, limit) = nulls(&l, cfg);
    // The canary's closed seconds since the last look go to the change detectors; the
    // e-processes have had them second by second (`bet`).
    let to = now - 1;
    bet(m, now, cfg, det);
    let from = det.consumed_to.map_or(to - m.fine_secs + 1, |c| c + 1);
    if from <= to {
        let w = m.window(Version::Canary, from, to);
        if let Some(p0) = err_p0 {
            det.errors.watch(w.errors, w.requests, p0, now);
        }
        if let Some(lim) = limit {
            det.latency
                .watch(w.above(lim), w.latency.len(), LATENCY_NULL, now);
        }
        det.consumed_to = Some(to);
    }
    // The next seconds' bets are against the nulls as they stand now.
    det.error_null = err_p0;
    det.latency_limit = limit;
    det.null_requests = l.requests;
    let th = thresholds(cfg.analysis.confidence, cfg.planned_looks());
    let mut out = vec![
        judged(
            error_check_with(&l, &c, cfg),
            &det.errors,
            th,
            (err_p0, now),
            "canary errors",
        ),
        judged(
            latency_check_with(&l, &c, cfg),
            &det.latency,
            th,
            (Some(LATENCY_NULL), now),
            &format!(
                "of canary latencies over {}",
                limit.map_or_else(|| "the limit".into(), |v| ms(Some(v)))
            ),
        ),
    ];
    for check in &mut out {
        check.at = Some(super::controller::ts(now));
    }
    out
}

/// Under the SLO at most 5% of canary latencies are above (1 + allowed) x legacy's P95.
const LATENCY_NULL: f64 = 0.05;

/// What the canary is judged against, from legacy's data: the error rate it may have (legacy's
/// upper bound plus the margin) and the latency at most 5% of its requests may exceed.
fn nulls(legacy: &Totals, cfg: &CanaryConfig) -> (Option<f64>, Option<f64>) {
    let alpha = (1.0 - cfg.analysis.confidence) / 2.0;
    let err = (legacy.requests > 0).then(|| {
        let (_, hi) = bernoulli_cs(legacy.errors, legacy.requests, alpha, Prior::RATES);
        (hi + cfg.slo.max_error_rate_delta).min(0.999)
    });
    let limit = legacy_p95_bounds(legacy, alpha)
        .1
        .map(|hi| hi * (1.0 + cfg.slo.max_p95_increase));
    (err, limit)
}

/// Feeds the canary's closed seconds since the last bet to the rollout e-processes. The nulls
/// are legacy's bounds as they stood before those seconds (so every bet is predictable), set
/// again whenever legacy's data has grown by a tenth: cheap after the first minutes, and tight
/// early, when a bad canary is most worth catching. Runs every second.
pub fn bet(m: &Metrics, now: i64, cfg: &CanaryConfig, det: &mut Detectors) {
    let legacy_n = m.epoch_requests(Version::Legacy);
    if legacy_n > 0
        && legacy_n
            >= det
                .null_requests
                .saturating_add(det.null_requests / 10 + 50)
    {
        let (err, limit) = nulls(&m.epoch(Version::Legacy), cfg);
        det.error_null = err;
        det.latency_limit = limit;
        det.null_requests = legacy_n;
    }
    let to = now - 1;
    let from = det.bet_to.map_or(to, |b| b + 1).max(to - m.fine_secs + 1);
    for sec in from..=to {
        if let Some(t) = m.second(Version::Canary, sec) {
            if let Some(p0) = det.error_null {
                det.errors.bet(t.errors, t.requests, p0);
            }
            if let Some(lim) = det.latency_limit {
                det.latency.bet(t.above(lim), t.latency.len(), LATENCY_NULL);
            }
        }
    }
    if from <= to {
        det.bet_to = Some(to);
    }
}

/// Whether a rollout e-process has crossed its threshold (checked every second).
pub fn evidence_crossed(det: &Detectors, cfg: &CanaryConfig) -> bool {
    let (e_th, _) = thresholds(cfg.analysis.confidence, cfg.planned_looks());
    det.errors.log_e >= e_th || det.latency.log_e >= e_th
}

/// How long each sustained trigger's condition has held, in seconds of analysis (`None`: it
/// does not hold). Counted from the host's ticks, not the wall clock, and kept across weight
/// changes and restarts, so "for 15m" can span steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub p95: Option<u64>,
    pub availability: Option<u64>,
}

/// Advances a held time by `elapsed` seconds while the condition holds; a condition that
/// cannot be judged (no data in the window, as after a restart) leaves it as it was.
fn track(cond: Option<bool>, held: &mut Option<u64>, elapsed: u64) -> u64 {
    match cond {
        Some(true) => {
            let h = held.map_or(0, |h| h.saturating_add(elapsed));
            *held = Some(h);
            h
        }
        Some(false) => {
            *held = None;
            0
        }
        None => held.unwrap_or(0),
    }
}

/// The hard triggers at second `now`: each fires only when a confidence bound of its window,
/// not the raw value of a small one, is past its threshold. `elapsed` is the seconds since the
/// last look, which sustained conditions add to their held time.
pub fn triggers(
    m: &Metrics,
    now: i64,
    cfg: &CanaryConfig,
    held: &mut Held,
    elapsed: u64,
) -> Vec<TriggerStatus> {
    let r = &cfg.rollback;
    let alpha = (1.0 - cfg.analysis.confidence) / 2.0;
    let w = m.last_minute_of_epoch(Version::Canary, now);
    // A trigger guards against a canary that is worse than everything: when legacy is past the
    // same threshold over the same window, rolling back would not help, so it does not fire.
    let lw = m.last_minute_of_epoch(Version::Legacy, now);
    let legacy_rate = lw.error_rate().unwrap_or(0.0);
    let legacy_p95 = lw.quantile(0.95).unwrap_or(0.0);
    let rate = (w.requests > 0).then(|| w.errors as f64 / w.requests as f64);
    let (err_lo, _) = bernoulli_cs(w.errors, w.requests, alpha, Prior::RATES);
    let n = w.latency.len();
    let p95 = (n >= TRIGGER_MIN_LATENCIES)
        .then(|| w.quantile(0.95))
        .flatten();
    let p95_lo = at_rank(&w, quantile_ranks(n, 0.95, alpha).0, true);
    let enough = w.requests >= TRIGGER_MIN_REQUESTS;
    let p95_cond = (n >= TRIGGER_MIN_LATENCIES)
        .then(|| p95_lo.is_some_and(|p| p > r.p95_above_ms) && legacy_p95 <= r.p95_above_ms);
    let p95_held = track(p95_cond, &mut held.p95, elapsed);
    // Availability is one minus the error rate: its upper bound is below the threshold when
    // the errors' lower bound is above one minus it.
    let avail = rate.map(|e| 1.0 - e);
    let avail_cond = enough.then_some(
        1.0 - err_lo < r.availability_below && 1.0 - legacy_rate >= r.availability_below,
    );
    let avail_held = track(avail_cond, &mut held.availability, elapsed);
    let fired_rate = enough && err_lo > r.error_rate_above && legacy_rate <= r.error_rate_above;
    let window = format!("over the last {TRIGGER_WINDOW_S}s");
    // Past a threshold that legacy is past too: said, so a canary shown over it and a trigger
    // that does not fire do not read as a contradiction.
    let too = |past: bool, what: String| {
        if past {
            format!("; legacy is {what} too, so rolling back would not help")
        } else {
            String::new()
        }
    };
    let rate_too = too(
        enough && err_lo > r.error_rate_above && legacy_rate > r.error_rate_above,
        format!("above it ({})", pct(legacy_rate)),
    );
    let p95_too = too(
        p95_lo.is_some_and(|p| p > r.p95_above_ms) && legacy_p95 > r.p95_above_ms,
        format!("above it ({legacy_p95:.0}ms)"),
    );
    let avail_too = too(
        enough && 1.0 - err_lo < r.availability_below && 1.0 - legacy_rate < r.availability_below,
        format!("below it ({})", pct(1.0 - legacy_rate)),
    );
    let conf = format!("{:.0}%", cfg.analysis.confidence * 100.0);
    vec![
        TriggerStatus {
            name: "error_rate_above".into(),
            fired: fired_rate,
            value: rate,
            threshold: r.error_rate_above,
            held_s: 0,
            for_s: 0,
            summary: match rate.filter(|_| enough) {
                Some(e) => format!(
                    "canary errors {} {window}, at least {} at {conf}; rolls back when that is above {}{rate_too}",
                    pct(e),
                    pct(err_lo),
                    pct(r.error_rate_above)
                ),
                None => format!("fewer than {TRIGGER_MIN_REQUESTS} canary requests {window}"),
            },
        },
        TriggerStatus {
            name: "p95_above_ms".into(),
            fired: p95_cond == Some(true) && p95_held >= r.p95_for_s,
            value: p95,
            threshold: r.p95_above_ms,
            held_s: p95_held,
            for_s: r.p95_for_s,
            summary: match p95 {
                Some(p) => format!(
                    "canary P95 {p:.0}ms {window}, at least {} at {conf}; rolls back after {}s above {:.0}ms{}{p95_too}",
                    ms(p95_lo),
                    r.p95_for_s,
                    r.p95_above_ms,
                    held_for(p95_held)
                ),
                None => format!("fewer than {TRIGGER_MIN_LATENCIES} canary latencies {window}"),
            },
        },
        TriggerStatus {
            name: "availability_below".into(),
            fired: avail_cond == Some(true) && avail_held >= r.availability_for_s,
            value: avail,
            threshold: r.availability_below,
            held_s: avail_held,
            for_s: r.availability_for_s,
            summary: match avail.filter(|_| enough) {
                Some(a) => format!(
                    "canary availability {} {window}, at most {} at {conf}; rolls back after {}s below {}{}{avail_too}",
                    pct(a),
                    pct(1.0 - err_lo),
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

    #[test]
    fn a_bound_over_its_limit_is_never_written_as_equal_to_it() {
        let pts = pts_at;
        assert_eq!(
            apart(0.005_03, 0.005, 2, pts),
            ("+0.503 pts".into(), "+0.500 pts".into())
        );
        assert_eq!(
            apart(0.007, 0.005, 2, pts),
            ("+0.70 pts".into(), "+0.50 pts".into())
        );
        // At most two more decimals: a difference below them is not chased further.
        assert_eq!(
            apart(0.005_000_1, 0.005, 2, pts),
            ("+0.5000 pts".into(), "+0.5000 pts".into())
        );
    }

    /// `n` requests with `errors` errors, latencies spread evenly over `lo..=hi` ms.
    fn totals(n: u64, errors: u64, lo: u64, hi: u64) -> Totals {
        let mut t = Totals::new();
        t.requests = n;
        t.errors = errors;
        for i in 0..n {
            let ms = lo + (hi - lo) * i / n.max(1);
            t.latency
                .saturating_record(crate::canary::metrics::us(ms as f64));
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
    fn triggers_need_their_minimum_their_bound_and_their_duration() {
        let cfg = cfg();
        let mut m = Metrics::new(300, 3_600);
        let mut held = Held::default();
        // Five errors in ten requests: no trigger, too few requests.
        for i in 0..10 {
            m.record(0, Version::Canary, 50.0, i < 5);
        }
        assert!(triggers(&m, 0, &cfg, &mut held, 1).iter().all(|t| !t.fired));
        // 3,000ms for long enough fires the P95 trigger only after p95_for, counted in the
        // seconds of analysis it is given, not the clock.
        let mut fired_at = None;
        for sec in 1..=400 {
            for _ in 0..2 {
                m.record(sec, Version::Canary, 3_000.0, false);
            }
            let t = triggers(&m, sec, &cfg, &mut held, 1);
            if t[1].fired && fired_at.is_none() {
                fired_at = Some(sec);
            }
        }
        let first = fired_at.expect("the P95 trigger fires");
        assert!((300..=330).contains(&first), "fired at {first}");
        assert!(held.p95.is_some_and(|h| h >= 300), "{held:?}");
        // A window without data (as after a restart) keeps the held time.
        let mut empty = Metrics::new(300, 3_600);
        let before = held;
        empty.record(5_000, Version::Legacy, 10.0, false);
        let _ = triggers(&empty, 5_000, &cfg, &mut held, 10);
        assert_eq!(held, before, "no data is not a reason to forget");
        // Ten percent errors of 200 requests: the raw rate is over 5% but its lower bound is
        // not, so nothing fires; a clear 30% does.
        let mut m = Metrics::new(300, 3_600);
        for i in 0..200 {
            m.record(1, Version::Canary, 50.0, i % 10 == 0);
        }
        assert!(!triggers(&m, 1, &cfg, &mut Held::default(), 1)[0].fired);
        let mut m = Metrics::new(300, 3_600);
        for i in 0..200 {
            m.record(1, Version::Canary, 50.0, i % 10 < 3);
        }
        assert!(triggers(&m, 1, &cfg, &mut Held::default(), 1)[0].fired);
    }

    #[test]
    fn a_trigger_legacy_is_past_too_says_why_it_does_not_fire() {
        let cfg = cfg();
        let mut m = Metrics::new(300, 3_600);
        // Both versions at 30% errors: the canary is past every error threshold, and so is
        // legacy, so rolling back would not help.
        for i in 0..400 {
            m.record(1, Version::Canary, 50.0, i % 10 < 3);
            m.record(1, Version::Legacy, 50.0, i % 10 < 3);
        }
        let t = triggers(&m, 1, &cfg, &mut Held::default(), 1);
        assert!(!t[0].fired && !t[2].fired);
        assert!(
            t[0].summary
                .ends_with("; legacy is above it (30.00%) too, so rolling back would not help"),
            "{}",
            t[0].summary
        );
        assert!(
            t[2].summary
                .ends_with("; legacy is below it (70.00%) too, so rolling back would not help"),
            "{}",
            t[2].summary
        );
        // The canary alone past it: no such words, and the rate trigger fires.
        let mut m = Metrics::new(300, 3_600);
        for i in 0..400 {
            m.record(1, Version::Canary, 50.0, i % 10 < 3);
            m.record(1, Version::Legacy, 50.0, false);
        }
        let t = triggers(&m, 1, &cfg, &mut Held::default(), 1);
        assert!(
            t[0].fired && !t[0].summary.contains("legacy is"),
            "{}",
            t[0].summary
        );
    }
}
