//! Per-version traffic in one-second buckets: request count, error count and a latency
//! histogram. Closed seconds are merged into per-minute histograms (for long charts) and into
//! running totals since the current analysis epoch (for the sequential tests). Old buckets are
//! dropped, so memory is bounded by the retention window, never by traffic.

use std::collections::VecDeque;

use hdrhistogram::Histogram;

use crate::model::Version;

/// Latencies are kept in microseconds (so fast services are not all "1 ms"), up to ten minutes,
/// to two significant digits (1%). Everything outside this module speaks milliseconds.
const MAX_US: u64 = 600_000_000;

pub fn new_histogram() -> Histogram<u32> {
    // Fails only for invalid constant bounds, which these are not.
    Histogram::new_with_bounds(1, MAX_US, 2).expect("constant histogram bounds are valid")
}

/// Milliseconds as the histogram's microseconds.
pub fn us(ms: f64) -> u64 {
    (ms.max(0.0) * 1_000.0).round() as u64
}

/// Requests, errors and latencies of some stretch of time.
#[derive(Debug, Clone)]
pub struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub latency: Histogram<u32>,
}

impl Totals {
    pub fn new() -> Totals {
        Totals {
            requests: 0,
            errors: 0,
            latency: new_histogram(),
        }
    }

    pub fn add(&mut self, other: &Totals) {
        self.requests += other.requests;
        self.errors += other.errors;
        let _ = self.latency.add(&other.latency);
    }

    /// Takes out totals that were added before.
    pub fn subtract(&mut self, other: &Totals) {
        self.requests = self.requests.saturating_sub(other.requests);
        self.errors = self.errors.saturating_sub(other.errors);
        let _ = self.latency.subtract(&other.latency);
    }

    /// Counts one request that took `latency_ms`; an error is left out of the latency when
    /// `errors_in_latency` is false.
    pub fn record(&mut self, latency_ms: f64, error: bool, errors_in_latency: bool) {
        self.requests += 1;
        self.errors += u64::from(error);
        if errors_in_latency || !error {
            self.latency.saturating_record(us(latency_ms).max(1));
        }
    }

    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }

    /// The latency at quantile `q` in ms, if there is any data.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        (!self.latency.is_empty()).then(|| self.latency.value_at_quantile(q) as f64 / 1_000.0)
    }
}

/// Totals in a form that survives a restart: the histogram as (value, count) pairs of its
/// recorded buckets, a few hundred at most.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedTotals {
    pub requests: u64,
    pub errors: u64,
    pub latency: Vec<(u64, u64)>,
    /// The latency values are microseconds (saved before this, they were milliseconds).
    #[serde(default)]
    pub micros: bool,
}

impl Totals {
    pub fn save(&self) -> SavedTotals {
        SavedTotals {
            requests: self.requests,
            errors: self.errors,
            latency: self
                .latency
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), u64::from(v.count_at_value())))
                .collect(),
            micros: true,
        }
    }

    pub fn restore(s: &SavedTotals) -> Totals {
        let mut t = Totals::new();
        t.requests = s.requests;
        t.errors = s.errors;
        let scale = if s.micros { 1 } else { 1_000 };
        for &(value, count) in &s.latency {
            let n = u32::try_from(count).unwrap_or(u32::MAX);
            let _ = t
                .latency
                .record_n(value.saturating_mul(scale).clamp(1, MAX_US), n);
        }
        t
    }

    /// How many recorded latencies are above `ms`.
    pub fn above(&self, ms: f64) -> u64 {
        if self.latency.is_empty() {
            return 0;
        }
        let from = us(ms).saturating_add(1);
        if from > self.latency.max() {
            return 0;
        }
        self.latency.count_between(from, self.latency.max())
    }
}

impl Default for Totals {
    fn default() -> Self {
        Totals::new()
    }
}

#[derive(Debug, Clone)]
struct Slot {
    sec: i64,
    totals: Totals,
}

/// One version's series.
#[derive(Debug, Clone)]
struct Series {
    seconds: VecDeque<Slot>,
    minutes: VecDeque<Slot>,
    epoch: Totals,
    /// The first second that counts towards `epoch`.
    epoch_from: i64,
    /// The closed seconds of the last minute, kept up to date as seconds close, so the
    /// triggers' 60-second window costs one merge, not sixty.
    recent: Totals,
    /// The seconds `recent` covers: `recent_from..=recent_to`.
    recent_from: i64,
    recent_to: i64,
}

/// Seconds in the window that `Metrics::last_minute` answers for.
pub const MINUTE: i64 = 60;

/// Both versions' traffic.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Seconds kept at one-second resolution.
    pub fine_secs: i64,
    /// Seconds kept at all (one-minute resolution beyond `fine_secs`).
    pub retention_secs: i64,
    series: [Series; 2],
    /// Requests that had no route key and were split at random.
    pub unkeyed: u64,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            seconds: VecDeque::new(),
            minutes: VecDeque::new(),
            epoch: Totals::new(),
            epoch_from: i64::MIN,
            recent: Totals::new(),
            recent_from: i64::MIN,
            recent_to: i64::MIN,
        }
    }
}

fn idx(v: Version) -> usize {
    match v {
        Version::Legacy => 0,
        Version::Canary => 1,
    }
}

impl Metrics {
    pub fn new(fine_secs: i64, retention_secs: i64) -> Metrics {
        Metrics {
            fine_secs,
            retention_secs: retention_secs.max(fine_secs),
            series: [Series::default(), Series::default()],
            unkeyed: 0,
        }
    }

    fn slot(&mut self, v: Version, sec: i64) -> &mut Totals {
        let s = &mut self.series[idx(v)];
        let need_new = s.seconds.back().is_none_or(|b| b.sec < sec);
        if need_new {
            // The second before is closed: fold it into its minute and the epoch totals.
            if let Some(last) = s.seconds.back() {
                let minute = last.sec.div_euclid(60) * 60;
                if s.minutes.back().is_none_or(|m| m.sec < minute) {
                    s.minutes.push_back(Slot {
                        sec: minute,
                        totals: Totals::new(),
                    });
                }
                if let Some(m) = s.minutes.back_mut() {
                    m.totals.add(&last.totals);
                }
                if last.sec >= s.epoch_from {
                    s.epoch.add(&last.totals);
                }
                // The rolling minute takes the closed second and lets go of those that are
                // now more than a minute old (closed seconds c-58..=c, plus the open one).
                let closed = last.sec;
                s.recent.add(&last.totals);
                let keep_from = closed - (MINUTE - 2);
                let recent_from = s.recent_from;
                for old in s
                    .seconds
                    .iter()
                    .filter(|b| b.sec >= recent_from && b.sec < keep_from)
                {
                    s.recent.subtract(&old.totals);
                }
                s.recent_from = keep_from;
                s.recent_to = closed;
            }
            s.seconds.push_back(Slot {
                sec,
                totals: Totals::new(),
            });
            while s
                .seconds
                .front()
                .is_some_and(|f| f.sec <= sec - self.fine_secs)
            {
                s.seconds.pop_front();
            }
            while s
                .minutes
                .front()
                .is_some_and(|f| f.sec <= sec - self.retention_secs - 60)
            {
                s.minutes.pop_front();
            }
        }
        // Late observations (a second already closed) count in the newest bucket; there is
        // always one, since a bucket was just pushed if there was none.
        let last = s.seconds.len() - 1;
        &mut s.seconds[last].totals
    }

    /// Records counts measured elsewhere (a Prometheus query): `requests` and `errors` in second
    /// `sec`, and latencies as (upper bound in ms, how many) buckets.
    pub fn record_counts(
        &mut self,
        sec: i64,
        v: Version,
        requests: u64,
        errors: u64,
        buckets: &[(f64, u64)],
    ) {
        let t = self.slot(v, sec);
        t.requests = t.requests.saturating_add(requests);
        t.errors = t.errors.saturating_add(errors.min(requests));
        for &(ms, n) in buckets {
            let _ = t.latency.record_n(
                us(ms).clamp(1, MAX_US),
                u32::try_from(n).unwrap_or(u32::MAX),
            );
        }
    }

    /// Records one request that took `latency_ms` (fractions kept to the microsecond). With
    /// `errors_in_latency` false, an error counts as a request and an error but not in latency
    /// (`latency.exclude_errors`: failures that answer fast would flatter the P95).
    pub fn record(&mut self, sec: i64, v: Version, latency_ms: f64, error: bool) {
        self.record_with(sec, v, latency_ms, error, true);
    }

    pub fn record_with(
        &mut self,
        sec: i64,
        v: Version,
        latency_ms: f64,
        error: bool,
        errors_in_latency: bool,
    ) {
        self.slot(v, sec)
            .record(latency_ms, error, errors_in_latency);
    }

    /// Adds totals measured elsewhere (another worker's proxy) to second `sec`.
    pub fn record_totals(&mut self, sec: i64, v: Version, t: &Totals) {
        self.slot(v, sec).add(t);
    }

    /// Starts a new analysis epoch with the second after `now`: the sequential tests begin
    /// again from there (traffic of second `now` was served under the old conditions).
    pub fn reset_epoch(&mut self, now: i64) {
        for s in &mut self.series {
            s.epoch = Totals::new();
            s.epoch_from = now + 1;
        }
    }

    /// Everything since the epoch began, including the second still open.
    pub fn epoch(&self, v: Version) -> Totals {
        let s = &self.series[idx(v)];
        let mut t = s.epoch.clone();
        if let Some(b) = s.seconds.back().filter(|b| b.sec >= s.epoch_from) {
            t.add(&b.totals);
        }
        t
    }

    /// Requests since the epoch began, without copying any histogram.
    pub fn epoch_requests(&self, v: Version) -> u64 {
        let s = &self.series[idx(v)];
        let open = s
            .seconds
            .back()
            .filter(|b| b.sec >= s.epoch_from)
            .map_or(0, |b| b.totals.requests);
        s.epoch.requests + open
    }

    /// One closed second's totals, if that second is still kept and had traffic.
    pub fn second(&self, v: Version, sec: i64) -> Option<&Totals> {
        self.series[idx(v)]
            .seconds
            .iter()
            .rev()
            .find(|s| s.sec <= sec)
            .filter(|s| s.sec == sec)
            .map(|s| &s.totals)
    }

    /// Carries on from saved totals after a restart: the epoch counts them, then everything
    /// recorded from now on.
    pub fn restore_epoch(&mut self, legacy: &SavedTotals, canary: &SavedTotals) {
        for (v, saved) in [(Version::Legacy, legacy), (Version::Canary, canary)] {
            let s = &mut self.series[idx(v)];
            s.epoch = Totals::restore(saved);
            s.epoch_from = i64::MIN;
        }
    }

    /// The last minute up to `now` (`now - 59..=now`): the rolling total of closed seconds plus
    /// the open one when they line up with `now` (as every second of a live host), else the
    /// same window summed second by second.
    pub fn last_minute(&self, v: Version, now: i64) -> Totals {
        let s = &self.series[idx(v)];
        match s.seconds.back() {
            Some(open) if open.sec == now && s.recent_to == now - 1 => {
                let mut t = s.recent.clone();
                t.add(&open.totals);
                t
            }
            _ => self.window(v, now - MINUTE + 1, now),
        }
    }

    /// [`Metrics::last_minute`] without the seconds before the epoch began: a restarted
    /// rollout's triggers judge its own traffic, not the last rollout's.
    pub fn last_minute_of_epoch(&self, v: Version, now: i64) -> Totals {
        let from = self.series[idx(v)].epoch_from;
        if from > now - MINUTE + 1 {
            self.window(v, from, now)
        } else {
            self.last_minute(v, now)
        }
    }

    /// Totals over `from..=to` (seconds), at one-second resolution where kept, else by minute.
    pub fn window(&self, v: Version, from: i64, to: i64) -> Totals {
        let s = &self.series[idx(v)];
        let mut t = Totals::new();
        let fine_from = s.seconds.front().map_or(i64::MAX, |f| f.sec);
        for slot in s.seconds.iter().filter(|b| b.sec >= from && b.sec <= to) {
            t.add(&slot.totals);
        }
        if from < fine_from {
            // Older than the fine buckets: whole minutes that end before the fine data starts.
            for m in s
                .minutes
                .iter()
                .filter(|m| m.sec >= from.div_euclid(60) * 60 && m.sec + 60 <= fine_from)
            {
                t.add(&m.totals);
            }
        }
        t
    }

    /// Per-step totals for charts: `points` consecutive steps of `step` seconds ending at `to`.
    pub fn steps(&self, v: Version, to: i64, step: i64, points: usize) -> Vec<(i64, Totals)> {
        (0..points as i64)
            .rev()
            .map(|k| {
                let end = to - k * step;
                (end - step + 1, self.window(v, end - step + 1, end))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_merge_buckets_and_epochs_restart() {
        let mut m = Metrics::new(300, 3_600);
        for sec in 0..120 {
            for i in 0..10 {
                m.record(sec, Version::Canary, f64::from(100 + i), i == 0);
            }
            m.record(sec, Version::Legacy, 50.0, false);
        }
        let w = m.window(Version::Canary, 60, 119);
        assert_eq!((w.requests, w.errors), (600, 60));
        assert_eq!(w.quantile(0.5).map(f64::round), Some(104.0));
        assert_eq!(m.epoch(Version::Canary).requests, 1_200);
        m.reset_epoch(119);
        assert_eq!(m.epoch(Version::Canary).requests, 0);
        m.record(120, Version::Canary, 100.0, false);
        assert_eq!(m.epoch(Version::Canary).requests, 1);
        assert_eq!(m.window(Version::Legacy, 0, 119).requests, 120);
    }

    #[test]
    fn latency_is_kept_in_microseconds_and_errors_can_stay_out_of_it() {
        let mut m = Metrics::new(300, 3_600);
        m.record_with(0, Version::Canary, 0.25, false, false);
        m.record_with(0, Version::Canary, 5_000.0, true, false);
        let w = m.window(Version::Canary, 0, 0);
        assert_eq!((w.requests, w.errors, w.latency.len()), (2, 1, 1));
        let p = w.quantile(0.5).unwrap();
        assert!(
            (p - 0.25).abs() < 0.01,
            "a quarter millisecond is not rounded to 1 ms: {p}"
        );
        m.record(1, Version::Canary, 5_000.0, true);
        assert_eq!(
            m.window(Version::Canary, 1, 1).latency.len(),
            1,
            "by default errors count"
        );
    }

    #[test]
    fn the_rolling_minute_equals_the_window() {
        let mut m = Metrics::new(300, 3_600);
        for sec in 0..400 {
            if sec % 7 == 3 {
                continue; // seconds without traffic
            }
            for i in 0..=(sec % 5) {
                m.record(
                    sec,
                    Version::Canary,
                    (10 + (sec as u64 * 13 + i as u64) % 900) as f64,
                    i == 0,
                );
            }
            let a = m.last_minute(Version::Canary, sec);
            let b = m.window(Version::Canary, sec - 59, sec);
            assert_eq!(
                (a.requests, a.errors),
                (b.requests, b.errors),
                "second {sec}"
            );
            assert_eq!(a.quantile(0.95), b.quantile(0.95), "second {sec}");
        }
    }

    #[test]
    fn saved_totals_restore_the_same_counts_and_quantiles() {
        let mut t = Totals::new();
        for i in 1..=1_000u64 {
            t.requests += 1;
            t.errors += u64::from(i % 50 == 0);
            t.latency.saturating_record(us(i as f64));
        }
        let back = Totals::restore(&t.save());
        assert_eq!((back.requests, back.errors), (1_000, 20));
        assert_eq!(back.quantile(0.95), t.quantile(0.95));
        assert_eq!(back.above(900.0), t.above(900.0));
        assert!((90..=110).contains(&t.above(900.0)), "{}", t.above(900.0));
        let json = serde_json::to_string(&t.save()).unwrap();
        assert!(
            json.len() < 8_000,
            "a saved histogram stays small: {}",
            json.len()
        );
    }

    #[test]
    fn memory_is_bounded_by_retention() {
        let mut m = Metrics::new(60, 600);
        for sec in 0..5_000 {
            m.record(sec, Version::Canary, 10.0, false);
        }
        let s = &m.series[1];
        assert!(s.seconds.len() <= 60, "{}", s.seconds.len());
        assert!(s.minutes.len() <= 12, "{}", s.minutes.len());
        // Old data is summarised by minute: a ten-minute window still counts everything.
        assert_eq!(m.window(Version::Canary, 4_400, 4_999).requests, 600);
    }
}
