//! Deterministic pseudo-random numbers for request generation.
//!
//! No external crate: the bench needs speed and reproducibility from `--seed`, not
//! cryptographic quality. xoshiro256** seeded through SplitMix64 (Blackman & Vigna).

/// One SplitMix64 step: advances `state` and returns a well-mixed 64-bit value. Also used to
/// derive the run's id ranges from the seed.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256**: fast, 256 bits of state, good enough statistics for load generation.
#[derive(Clone, Debug)]
pub struct Rng {
    state: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut mixer = seed;
        Rng {
            state: [
                splitmix64(&mut mixer),
                splitmix64(&mut mixer),
                splitmix64(&mut mixer),
                splitmix64(&mut mixer),
            ],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`, 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, bound)` for `bound > 0` (multiply-shift: the bias is below
    /// `bound / 2^64`, far under anything a benchmark could notice).
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// True with probability `percent / 100`.
    pub fn chance(&mut self, percent: f64) -> bool {
        percent > 0.0 && self.next_f64() * 100.0 < percent
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn same_seed_same_stream_and_bounds_hold() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut rng = Rng::new(1);
        for _ in 0..10_000 {
            assert!(rng.below(10) < 10);
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
        assert!(!rng.chance(0.0));
        assert!(rng.chance(100.0));
    }
}
