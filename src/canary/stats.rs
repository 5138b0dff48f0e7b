//! Anytime-valid statistics: confidence sequences that stay valid however often they are looked
//! at, so an analysis that runs every ten seconds for an hour does not inflate false rollbacks
//! the way a fixed-horizon test repeated every interval does.
//!
//! The building block is the beta-binomial mixture martingale (Robbins' mixture): for
//! Bernoulli observations with success probability `p`, `M_n(p) = B(a+S, b+n-S) / (B(a,b) p^S
//! (1-p)^(n-S))` is a nonnegative martingale with mean 1 when `p` is true, so by Ville's
//! inequality `P(exists n: M_n(p) >= 1/alpha) <= alpha`. The set `{p : M_n(p) < 1/alpha}` is a
//! confidence sequence for `p`; it is likelihood-based, so it stays sharp for small rates where
//! normal approximations are poor. Quantiles use the same martingale on the count of
//! observations below the true quantile (Howard and Ramdas, "Sequential estimation of
//! quantiles with applications to A/B-testing and best-arm identification"), and the canary
//! comparisons follow Lindon, Sanden and Shirikian, "Rapid Regression Detection in Software
//! Deployments through Sequential Testing" (KDD 2022): fail as soon as the bounds show the
//! canary worse than the SLO allows, at any sample size.

/// The prior of the mixture, as Beta(a, b). It only tunes where the bounds are tightest;
/// validity does not depend on it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prior {
    pub a: f64,
    pub b: f64,
}

impl Prior {
    /// For error rates: most mass below a few percent, where error rates live.
    pub const RATES: Prior = Prior { a: 0.5, b: 25.0 };

    /// Centred on a known proportion `p` with the weight of `k` observations.
    pub fn centred(p: f64, k: f64) -> Prior {
        Prior {
            a: p * k,
            b: (1.0 - p) * k,
        }
    }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; about 15 digits).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps small arguments accurate.
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// ln M_n(p): the log of the mixture martingale for `s` successes in `n` trials at `p`.
pub fn log_mixture(s: f64, n: f64, p: f64, prior: Prior) -> f64 {
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    ln_beta(prior.a + s, prior.b + n - s)
        - ln_beta(prior.a, prior.b)
        - s * p.ln()
        - (n - s) * (1.0 - p).ln()
}

/// A confidence sequence for a Bernoulli mean from `s` successes in `n` trials, at level
/// `1 - alpha`: the set of `p` where the mixture has not reached `1/alpha`. (0, 1) with no data.
pub fn bernoulli_cs(s: u64, n: u64, alpha: f64, prior: Prior) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (s, n) = (s.min(n) as f64, n as f64);
    let limit = (1.0 / alpha).ln();
    // The mixture's beta terms do not depend on p: computed once, each bisection step costs
    // two logarithms (this runs several times a second per canary).
    let mixed = ln_beta(prior.a + s, prior.b + n - s) - ln_beta(prior.a, prior.b);
    let inside = |p: f64| {
        let p = p.clamp(1e-300, 1.0 - 1e-16);
        mixed - s * p.ln() - (n - s) * (1.0 - p).ln() < limit
    };
    let centre = (s / n).clamp(1e-12, 1.0 - 1e-12);
    // The log-mixture is convex in p with its minimum at s/n: bisect on each side.
    let lo = if inside(1e-12) {
        0.0
    } else {
        let (mut out, mut inn) = (1e-12, centre);
        for _ in 0..60 {
            let mid = 0.5 * (out + inn);
            if inside(mid) { inn = mid } else { out = mid }
        }
        inn
    };
    let hi = if inside(1.0 - 1e-12) {
        1.0
    } else {
        let (mut inn, mut out) = (centre, 1.0 - 1e-12);
        for _ in 0..60 {
            let mid = 0.5 * (out + inn);
            if inside(mid) { inn = mid } else { out = mid }
        }
        inn
    };
    (lo, hi)
}

/// For a known proportion `p`: the counts `C` of `n` trials the martingale still allows at
/// level `1 - alpha`, as an inclusive range. With the true `p` the count of observations below
/// the true `p`-quantile stays inside this range for all `n`, with probability `1 - alpha`.
pub fn count_range(n: u64, p: f64, alpha: f64, prior: Prior) -> (u64, u64) {
    if n == 0 {
        return (0, 0);
    }
    let limit = (1.0 / alpha).ln();
    let nf = n as f64;
    let ok = |c: u64| log_mixture(c as f64, nf, p, prior) < limit;
    let mode = ((nf * p).round() as u64).min(n);
    // Smallest allowed count below the mode, largest above: the log-mixture decreases towards
    // the mode from either side.
    let lo = if ok(0) {
        0
    } else {
        let (mut bad, mut good) = (0u64, mode);
        while good - bad > 1 {
            let mid = bad + (good - bad) / 2;
            if ok(mid) { good = mid } else { bad = mid }
        }
        good
    };
    let hi = if ok(n) {
        n
    } else {
        let (mut good, mut bad) = (mode, n);
        while bad - good > 1 {
            let mid = good + (bad - good) / 2;
            if ok(mid) { good = mid } else { bad = mid }
        }
        good
    };
    (lo, hi)
}

/// Ranks (1-based) of the order statistics that bound the `p`-quantile: with probability
/// `1 - alpha` for all `n`, `X_(lo) <= quantile <= X_(hi)`. `lo` is 0 (no lower bound yet) or
/// `hi` is `n + 1` (no upper bound yet) while there is too little data.
pub fn quantile_ranks(n: u64, p: f64, alpha: f64) -> (u64, u64) {
    let (c_lo, c_hi) = count_range(n, p, alpha, Prior::centred(p, 100.0));
    // At least c_lo observations lie below the quantile, so the c_lo-th smallest is below it;
    // at most c_hi do, so the (c_hi + 1)-th smallest is at or above it.
    (c_lo, c_hi + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn ln_gamma_matches_known_values() {
        assert!((ln_gamma(1.0)).abs() < 1e-12);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-10);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-10);
        assert!((ln_gamma(1000.5) - 5_908.674_175_848_678).abs() < 1e-6);
    }

    #[test]
    fn bounds_tighten_around_the_truth() {
        let (lo, hi) = bernoulli_cs(50, 10_000, 0.01, Prior::RATES);
        assert!(lo < 0.005 && 0.005 < hi, "{lo} {hi}");
        assert!(lo > 0.002 && hi < 0.009, "tight for small rates: {lo} {hi}");
        let (lo, hi) = bernoulli_cs(0, 0, 0.01, Prior::RATES);
        assert_eq!((lo, hi), (0.0, 1.0));
        let (lo, _) = bernoulli_cs(0, 500, 0.01, Prior::RATES);
        assert!(lo.abs() < 1e-9);
    }

    #[test]
    fn quantile_ranks_bracket_the_quantile() {
        let (lo, hi) = quantile_ranks(10_000, 0.95, 0.01);
        assert!(lo < 9_500 && 9_500 < hi, "{lo} {hi}");
        assert!(9_500 - lo < 120 && hi - 9_500 < 120, "{lo} {hi}");
        assert_eq!(
            quantile_ranks(3, 0.95, 0.01).1,
            4,
            "no upper bound from three samples"
        );
    }

    /// The defining property, checked by simulation: watching after every observation, the
    /// sequence excludes the true rate on no more than about alpha of the paths.
    #[test]
    fn coverage_holds_when_watched_continuously() {
        let (p, alpha, paths, steps) = (0.02, 0.05, 400, 3_000u64);
        let mut misses = 0;
        let mut rng = Rng::new(11);
        for _ in 0..paths {
            let mut s = 0;
            for n in 1..=steps {
                if rng.next_f64() < p {
                    s += 1;
                }
                if n % 25 == 0 {
                    let (lo, hi) = bernoulli_cs(s, n, alpha, Prior::RATES);
                    if p < lo || p > hi {
                        misses += 1;
                        break;
                    }
                }
            }
        }
        assert!(
            f64::from(misses) <= alpha * f64::from(paths) * 1.2,
            "{misses} of {paths} paths left the sequence"
        );
    }
}
