//! Deterministic randomness: SplitMix64 and a stable string hash, both fixed forever so seeded
//! simulations, retry jitter and canary routing give the same answers in every process and
//! every release. Never use the std hasher or an external RNG whose algorithm may change.

/// A small, fast generator for seeded simulation and jitter.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A generator seeded from the wall clock and process id, for live jitter.
    pub fn from_entropy() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng(nanos ^ (u64::from(std::process::id()) << 32))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..=max`.
    pub fn below_inclusive(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        self.next_u64() % (max + 1)
    }

    /// A standard normal sample (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over the bytes, then a SplitMix64 finaliser for avalanche. Stable across releases.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// Combines several values into one seed, order-sensitive.
pub fn seed_of(parts: &[&[u8]]) -> u64 {
    let mut h = 0u64;
    for p in parts {
        h = mix(h ^ stable_hash(p));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_and_hashes_are_fixed() {
        // These constants pin the algorithms: changing them changes every seeded replay.
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(stable_hash(b"user-1"), PINNED_USER_1);
        let f = Rng::new(7).next_f64();
        assert!((0.0..1.0).contains(&f));
    }

    const PINNED_USER_1: u64 = 14_166_554_182_431_137_624;
}
