//! Evidence that accumulates over a whole rollout, and change detectors for failures that start
//! in the middle of one.
//!
//! Each check watches one stream of canary trials against a null rate `p0` recomputed at every
//! look from legacy's data: for errors, a canary request is a trial and an error a hit, and
//! `p0` is legacy's upper bound plus the allowed margin; for latency, a hit is a canary latency
//! above `(1 + allowed) x` legacy's P95 upper bound, so under the SLO at most 5% are hits.
//!
//! Two statistics grow on the same increments:
//!
//! - a **rollout e-process**: a likelihood ratio that bets, at every look, on the canary's hit
//!   rate so far (a predictable plug-in, only when it is above `p0`). Under the null its
//!   expectation stays at most one whatever `p0` does, so by Ville's inequality crossing
//!   `1/alpha` is a false alarm with probability at most `alpha`, however long the rollout and
//!   however often it is looked at. It never bets below `p0`, so a healthy canary does not
//!   drive it down and the budget is spent once per rollout.
//! - a **CUSUM change detector** per alternative `m x p0` (m in [`MULTIPLIERS`]): the largest
//!   likelihood ratio over every possible start, so a failure that begins after an hour of
//!   good traffic is not diluted by that hour. Each start is a martingale of its own; a union
//!   over the expected number of looks and the alternatives sets the threshold
//!   `ln(K x looks / alpha)`.

use serde::{Deserialize, Serialize};

/// Alternatives the change detector watches for, as multiples of the null rate.
pub const MULTIPLIERS: [f64; 3] = [1.3, 2.0, 4.0];

/// One stream of trials: the rollout e-process and the change detectors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stream {
    /// ln of the rollout e-process.
    pub log_e: f64,
    /// Hits and trials so far, for the e-process's next bet.
    pub hits: u64,
    pub trials: u64,
    /// ln of each change detector's statistic (never below zero).
    pub cusum: [f64; MULTIPLIERS.len()],
    /// The second the largest detector last left zero: roughly when the change began.
    pub rising_since: Option<i64>,
}

/// ln of the likelihood ratio of `hits` in `n` trials at rate `p1` against `p0`.
fn log_lr(hits: u64, n: u64, p0: f64, p1: f64) -> f64 {
    let (h, miss) = (hits as f64, n.saturating_sub(hits) as f64);
    h * (p1 / p0).ln() + miss * ((1.0 - p1) / (1.0 - p0)).ln()
}

impl Stream {
    /// The rollout e-process takes `hits` of `n` new trials (one second's, so it can cross as
    /// soon as the evidence is there, not at the next analysis), judged against `p0`.
    pub fn bet(&mut self, hits: u64, n: u64, p0: f64) {
        if n == 0 || !(p0 > 0.0 && p0 < 1.0) {
            return;
        }
        let hits = hits.min(n);
        // The bet is made before the new trials are seen: the rate so far, shrunk towards
        // twice the null with the weight of ten trials, and only when it is above the null.
        let guess = (self.hits as f64 + 20.0 * p0) / (self.trials as f64 + 10.0);
        let p1 = guess.min(0.999);
        if p1 > p0 * 1.000_001 {
            self.log_e += log_lr(hits, n, p0, p1);
        }
        self.hits += hits;
        self.trials += n;
    }

    /// The change detectors take the trials since the last analysis (one look each, which is
    /// what their threshold counts), at second `now`.
    pub fn watch(&mut self, hits: u64, n: u64, p0: f64, now: i64) {
        if n == 0 || !(p0 > 0.0 && p0 < 1.0) {
            return;
        }
        let hits = hits.min(n);
        let before = self.level();
        for (s, m) in self.cusum.iter_mut().zip(MULTIPLIERS) {
            let p1 = (p0 * m).min(0.999);
            *s = (*s + log_lr(hits, n, p0, p1)).max(0.0);
        }
        if before == 0.0 && self.level() > 0.0 {
            self.rising_since = Some(now);
        } else if self.level() == 0.0 {
            self.rising_since = None;
        }
    }

    /// The largest change detector.
    pub fn level(&self) -> f64 {
        self.cusum.iter().copied().fold(0.0, f64::max)
    }
}

/// Both checks' streams, the last second each statistic has taken in, and the nulls set at
/// the last analysis (from legacy's bounds then, so every bet is predictable).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Detectors {
    pub errors: Stream,
    pub latency: Stream,
    /// The change detectors' last second.
    pub consumed_to: Option<i64>,
    /// The e-processes' last second.
    #[serde(default)]
    pub bet_to: Option<i64>,
    /// The error rate the canary may have: legacy's upper bound plus the margin.
    #[serde(default)]
    pub error_null: Option<f64>,
    /// The latency at most 5% of canary requests may exceed: (1 + allowed) x legacy's P95
    /// upper bound, in ms.
    #[serde(default)]
    pub latency_limit: Option<f64>,
    /// Legacy's requests when the nulls were last set: they are set again each time legacy's
    /// data has grown by a tenth, so early bets use bounds as tight as the data allows.
    #[serde(default)]
    pub null_requests: u64,
}

/// The thresholds, in nats, for a rollout judged at confidence `confidence` with about
/// `looks` analyses: (rollout e-process, change detector).
pub fn thresholds(confidence: f64, looks: u64) -> (f64, f64) {
    let alpha = (1.0 - confidence).clamp(1e-9, 0.5);
    let k = MULTIPLIERS.len() as f64;
    ((1.0 / alpha).ln(), (k * looks.max(1) as f64 / alpha).ln())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Feeds `secs` seconds of `rate` trials a second at hit probability `p`.
    fn feed(s: &mut Stream, rng: &mut Rng, secs: i64, rate: u64, p: f64, p0: f64, from: i64) {
        for t in 0..secs {
            let hits = (0..rate).filter(|_| rng.next_f64() < p).count() as u64;
            s.bet(hits, rate, p0);
            s.watch(hits, rate, p0, from + t);
        }
    }

    #[test]
    fn a_stream_at_the_null_rarely_crosses_either_threshold() {
        let (e_th, d_th) = thresholds(0.99, 210);
        let mut rng = Rng::new(5);
        let mut alarms = 0;
        for _ in 0..200 {
            let mut s = Stream::default();
            feed(&mut s, &mut rng, 210, 100, 0.01, 0.01, 0);
            if s.log_e >= e_th || s.level() >= d_th {
                alarms += 1;
            }
        }
        assert!(
            alarms <= 4,
            "{alarms} false alarms in 200 streams at the null"
        );
    }

    #[test]
    fn a_late_change_is_found_quickly_after_a_long_healthy_stretch() {
        let (_, d_th) = thresholds(0.99, 210);
        let mut rng = Rng::new(9);
        let mut s = Stream::default();
        // An hour of healthy traffic well under the null, then four times the null.
        feed(&mut s, &mut rng, 360, 500, 0.004, 0.01, 0);
        assert!(s.level() < d_th);
        let mut looks = 0;
        while s.level() < d_th && looks < 100 {
            feed(&mut s, &mut rng, 1, 500, 0.04, 0.01, 360 + looks);
            looks += 1;
        }
        assert!(looks < 20, "found after {looks} looks");
        assert!(s.rising_since.is_some_and(|t| t >= 355), "{s:?}");
        // The rollout e-process learns it too, but more slowly: the hour is in its estimate.
        assert!(s.log_e < 60.0);
    }

    #[test]
    fn the_e_process_does_not_drift_down_on_a_healthy_canary() {
        let mut rng = Rng::new(2);
        let mut s = Stream::default();
        feed(&mut s, &mut rng, 600, 100, 0.004, 0.01, 0);
        assert!(s.log_e > -3.0, "{}", s.log_e);
    }
}
