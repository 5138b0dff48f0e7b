//! Retry policy: exponential backoff with a cap and full jitter.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// How many times a stage may be tried and how long to wait between tries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Total attempts including the first; 1 means no retries.
    pub max_attempts: u32,
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            backoff: Backoff::default(),
        }
    }
}

/// Exponential backoff. With `jitter` the wait is drawn uniformly from zero to the ceiling
/// ("full jitter"), which spreads retries of many failing stages instead of synchronising them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    pub initial_ms: u64,
    pub multiplier: f64,
    pub max_ms: u64,
    pub jitter: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial_ms: 200,
            multiplier: 2.0,
            max_ms: 10_000,
            jitter: true,
        }
    }
}

impl Backoff {
    /// The longest wait before retry `k`, where `k = 1` is the wait after the first failure.
    pub fn ceiling(&self, k: u32) -> Duration {
        let exp = self.multiplier.powi(k.saturating_sub(1).min(1_000) as i32);
        let ms = (self.initial_ms as f64 * exp).min(self.max_ms as f64);
        Duration::from_millis(ms.max(0.0) as u64)
    }

    /// The wait before retry `k`: the ceiling, or a uniform draw below it with jitter.
    pub fn delay(&self, k: u32, rng: &mut Rng) -> Duration {
        let ceiling = self.ceiling(k);
        if self.jitter {
            Duration::from_millis(rng.below_inclusive(ceiling.as_millis() as u64))
        } else {
            ceiling
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_grow_then_cap() {
        let b = Backoff {
            initial_ms: 100,
            multiplier: 2.0,
            max_ms: 1_000,
            jitter: false,
        };
        let ms: Vec<u128> = (1..=6).map(|k| b.ceiling(k).as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(b.delay(3, &mut Rng::new(1)), Duration::from_millis(400));
    }

    #[test]
    fn seeded_jitter_stays_under_growing_capped_bounds() {
        let b = Backoff {
            initial_ms: 100,
            multiplier: 3.0,
            max_ms: 2_000,
            jitter: true,
        };
        let mut rng = Rng::new(99);
        let mut max_seen = [0u128; 6];
        for _ in 0..2_000 {
            for k in 1..=6u32 {
                let d = b.delay(k, &mut rng).as_millis();
                assert!(
                    d <= b.ceiling(k).as_millis(),
                    "retry {k}: {d}ms over its ceiling"
                );
                max_seen[k as usize - 1] = max_seen[k as usize - 1].max(d);
            }
        }
        // The largest draw tracks the ceiling: 100, 300, 900, then capped at 2000.
        assert!(max_seen[0] > 90 && max_seen[0] <= 100);
        assert!(max_seen[1] > 270 && max_seen[1] <= 300);
        assert!(max_seen[2] > 810 && max_seen[2] <= 900);
        assert!(max_seen[3] > 1_800 && max_seen[3] <= 2_000);
        assert!(max_seen[5] <= 2_000);
        // Same seed, same delays.
        let a: Vec<_> = (1..5).map(|k| b.delay(k, &mut Rng::new(5))).collect();
        let c: Vec<_> = (1..5).map(|k| b.delay(k, &mut Rng::new(5))).collect();
        assert_eq!(a, c);
    }
}
