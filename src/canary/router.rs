//! The traffic split: `stable_hash(route key) % 10_000 < weight in basis points` goes to the
//! canary. The hash is fixed forever (see `crate::rng`), so a user gets the same version in
//! every process and release, and raising the weight only ever adds users to the canary.

use crate::model::Version;
use crate::rng::{Rng, stable_hash};

/// 100% in basis points.
pub const FULL: u32 = 10_000;

/// The bucket of a route key, in `0..10_000`.
pub fn bucket(key: &str) -> u32 {
    (stable_hash(key.as_bytes()) % u64::from(FULL)) as u32
}

/// Where one request goes, and whether it had a route key to decide by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub version: Version,
    /// False when the request had no route key and was split at random.
    pub keyed: bool,
}

/// Routes by key; without a key, a random split at the same weight (counted as unkeyed).
pub fn route(key: Option<&str>, weight_bp: u32, rng: &mut Rng) -> Route {
    let (b, keyed) = match key.filter(|k| !k.is_empty()) {
        Some(k) => (bucket(k), true),
        None => ((rng.next_u64() % u64::from(FULL)) as u32, false),
    };
    let version = if b < weight_bp.min(FULL) {
        Version::Canary
    } else {
        Version::Legacy
    };
    Route { version, keyed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert_eq, proptest};

    #[test]
    fn the_split_matches_the_weight_over_many_keys() {
        let mut rng = Rng::new(1);
        for weight in [0, 100, 500, 2_500, 5_000, 9_999, 10_000] {
            let canary = (0..100_000)
                .filter(|i| {
                    route(Some(&format!("user-{i}")), weight, &mut rng).version == Version::Canary
                })
                .count();
            let share = canary as f64 / 100_000.0;
            let want = f64::from(weight) / 10_000.0;
            assert!((share - want).abs() <= 0.005, "weight {weight}: {share}");
        }
    }

    #[test]
    fn the_hash_is_pinned() {
        // Changing these moves users between versions on upgrade: never change the hash.
        assert_eq!(bucket("user-1"), 7_624);
        assert_eq!(bucket(""), 6_203);
    }

    #[test]
    fn unkeyed_requests_split_at_random_and_say_so() {
        let mut rng = Rng::new(9);
        let canary = (0..100_000)
            .filter(|_| route(None, 1_000, &mut rng).version == Version::Canary)
            .count();
        assert!((canary as f64 / 100_000.0 - 0.1).abs() < 0.005);
        assert!(!route(None, 1_000, &mut rng).keyed);
        assert!(
            !route(Some(""), 1_000, &mut rng).keyed,
            "an empty key is no key"
        );
    }

    proptest! {
        /// A canary user stays a canary user as the weight rises.
        #[test]
        fn raising_the_weight_never_moves_a_user_back(key in "[a-z0-9-]{1,24}", w1 in 0u32..=10_000, extra in 0u32..=10_000) {
            let mut rng = Rng::new(0);
            let w2 = (w1 + extra).min(FULL);
            if route(Some(&key), w1, &mut rng).version == Version::Canary {
                prop_assert_eq!(route(Some(&key), w2, &mut rng).version, Version::Canary);
            }
        }
    }
}
