//! The one seeded generator of the tools, the tests and the benchmarks.
//!
//! xoshiro256** (Blackman & Vigna) with its state filled by four SplitMix64 steps from the
//! seed. `rush bench` draws its requests with it, and the cross-crate tests and benchmarks
//! use it through `rush_suite::rng` (a re-export), so a seed gives the same stream
//! everywhere. Not cryptographic; fast, 256 bits of state and statistics far beyond what a
//! test or a load generator needs. A run is a pure function of its seed, so a failing seed
//! can be replayed.

/// One SplitMix64 step: advances `state` by the golden-ratio increment and returns a
/// well-mixed 64-bit value. Also useful alone to derive several seeds from one.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256** seeded through SplitMix64.
#[derive(Clone, Debug)]
pub struct Rng {
    state: [u64; 4],
}

impl Rng {
    /// The generator of `seed` (any value, 0 included: SplitMix64 never fills the state with
    /// zeros).
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

    /// The next 64 random bits.
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

    /// Uniform in `[0, 1)`, from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1_u64 << 53) as f64)
    }

    /// Uniform in `0..bound`, without bias (Lemire's multiply-shift with rejection: the rare
    /// draws that would favour some values are redrawn, so the results are those of `rush
    /// bench`'s biased multiply-shift except after such a draw). Panics if `bound` is 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "below(0)");
        let mut product = u128::from(self.next_u64()) * u128::from(bound);
        if (product as u64) < bound {
            // 2^64 mod bound: the low words below it belong to values drawn once too often.
            let threshold = bound.wrapping_neg() % bound;
            while (product as u64) < threshold {
                product = u128::from(self.next_u64()) * u128::from(bound);
            }
        }
        (product >> 64) as u64
    }

    /// Uniform in `low..=high` (`low <= high`).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "range({low}, {high})");
        match (high - low).checked_add(1) {
            Some(span) => low + self.below(span),
            None => self.next_u64(),
        }
    }

    /// True with probability `percent / 100` (`percent` above 100 counts as 100).
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// True with probability `percent / 100` for a fractional percentage (`rush bench
    /// --retry-pct 2.5`); 0 or less is never, 100 or more always.
    pub fn chance_of(&mut self, percent: f64) -> bool {
        percent > 0.0 && self.next_f64() * 100.0 < percent
    }

    /// One of `items` (not empty), each as likely.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// Puts `items` in a uniformly random order (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{splitmix64, Rng};

    /// The reference outputs of SplitMix64 for seed 1234567 (Vigna's `splitmix64.c`).
    #[test]
    fn splitmix64_matches_the_reference() {
        let mut state = 1_234_567;
        let outputs: Vec<u64> = (0..5).map(|_| splitmix64(&mut state)).collect();
        assert_eq!(
            outputs,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423,
                4_593_380_528_125_082_431,
                16_408_922_859_458_223_821,
            ]
        );
    }

    /// The reference outputs of xoshiro256** from the state [1, 2, 3, 4] (as in the
    /// `rand_xoshiro` crate's tests).
    #[test]
    fn xoshiro256starstar_matches_the_reference() {
        let mut rng = Rng { state: [1, 2, 3, 4] };
        let outputs: Vec<u64> = (0..10).map(|_| rng.next_u64()).collect();
        assert_eq!(
            outputs,
            [
                11_520,
                0,
                1_509_978_240,
                1_215_971_899_390_074_240,
                1_216_172_134_540_287_360,
                607_988_272_756_665_600,
                16_172_922_978_634_559_625,
                8_476_171_486_693_032_832,
                10_595_114_339_597_558_777,
                2_904_607_092_377_533_576,
            ]
        );
    }

    #[test]
    fn a_seed_gives_one_stream() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let mut c = Rng::new(8);
        let first: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        assert_eq!(first, (0..100).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(first, (0..100).map(|_| c.next_u64()).collect::<Vec<_>>());
    }

    #[test]
    fn bounded_draws_stay_in_bounds_and_cover_them() {
        let mut rng = Rng::new(1);
        let mut seen = [0_u32; 10];
        for _ in 0..10_000 {
            seen[rng.below(10) as usize] += 1;
            let x = rng.range(5, 7);
            assert!((5..=7).contains(&x));
            let f = rng.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
        // Each value expects 1,000 draws; 800 is more than six standard deviations below.
        assert!(seen.iter().all(|&count| count > 800), "{seen:?}");
        assert_eq!(rng.range(3, 3), 3);
        let _ = rng.range(0, u64::MAX);
        assert_eq!(rng.below(1), 0);
        // A bound just above 2^63 rejects almost half of the raw draws; still in bounds.
        let big = (1 << 63) + 1;
        assert!((0..1_000).all(|_| rng.below(big) < big));
        assert!((0..1_000).all(|_| !rng.chance(0) && rng.chance(100)));
        let mut items: Vec<u32> = (0..50).collect();
        rng.shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(items, sorted, "50! orders, one of them sorted");
        assert!((0..100).all(|_| [2, 4, 6].contains(&rng.pick(&[2, 4, 6]))));
    }
}
