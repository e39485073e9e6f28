//! A Zipf sampler: rank `k` (1-based) is drawn with probability proportional to `1 / k^s`.
//!
//! Sampling is by binary search in the precomputed cumulative distribution: exact for any
//! exponent, `O(n)` memory for `n` ranks (the bench caps `n` at a million SKUs) and
//! `O(log n)` per draw, which is far below the cost of a network round trip.

use crate::measure::rng::Rng;

#[derive(Clone, Debug)]
pub struct Zipf {
    /// `cdf[i]` = P(rank <= i + 1); the last entry is exactly 1.
    cdf: Vec<f64>,
}

impl Zipf {
    /// A sampler over `n >= 1` ranks with exponent `s > 0`.
    pub fn new(n: usize, s: f64) -> Zipf {
        assert!(n >= 1 && s > 0.0 && s.is_finite(), "Zipf needs n >= 1 and s > 0");
        let weights: Vec<f64> = (1..=n).map(|rank| (rank as f64).powf(-s)).collect();
        let total: f64 = weights.iter().sum();
        let mut running = 0.0;
        let mut cdf: Vec<f64> = weights
            .iter()
            .map(|weight| {
                running += weight;
                running / total
            })
            .collect();
        // Rounding may leave the last entry a hair below 1; a draw of u in [0, 1) must always
        // land on some rank.
        if let Some(last) = cdf.last_mut() {
            *last = 1.0;
        }
        Zipf { cdf }
    }

    /// A rank index in `0..len()`; 0 is the most popular.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.next_f64();
        self.cdf.partition_point(|&cumulative| cumulative <= u).min(self.cdf.len() - 1)
    }

    /// The probability of rank index `index`.
    #[cfg(test)]
    pub fn probability(&self, index: usize) -> f64 {
        let below = if index == 0 { 0.0 } else { self.cdf[index - 1] };
        self.cdf[index] - below
    }
}

#[cfg(test)]
mod tests {
    use super::Zipf;
    use crate::measure::rng::Rng;

    #[test]
    fn probabilities_follow_one_over_k() {
        let zipf = Zipf::new(100, 1.0);
        let harmonic: f64 = (1..=100).map(|k| 1.0 / k as f64).sum();
        for index in [0, 1, 9, 99] {
            let expected = 1.0 / ((index + 1) as f64 * harmonic);
            assert!((zipf.probability(index) - expected).abs() < 1e-12);
        }
        let total: f64 = (0..100).map(|index| zipf.probability(index)).sum();
        assert!((total - 1.0).abs() < 1e-12);
    }

    #[test]
    fn samples_match_the_distribution() {
        let zipf = Zipf::new(50, 1.0);
        let mut rng = Rng::new(42);
        let draws = 200_000;
        let mut counts = vec![0u64; 50];
        for _ in 0..draws {
            counts[zipf.sample(&mut rng)] += 1;
        }
        // Each of the popular ranks within 5 standard deviations of its expectation.
        for (index, &count) in counts.iter().enumerate().take(10) {
            let p = zipf.probability(index);
            let expected = p * draws as f64;
            let sigma = (draws as f64 * p * (1.0 - p)).sqrt();
            assert!(
                (count as f64 - expected).abs() < 5.0 * sigma,
                "rank {index}: {count} draws, expected {expected:.0} ± {sigma:.0}"
            );
        }
        // Rank 1 is drawn about twice as often as rank 2 (s = 1).
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!((1.85..2.15).contains(&ratio), "ratio {ratio}");
        assert!(counts.iter().all(|&count| count > 0), "every rank is reachable");
    }

    #[test]
    fn single_rank_and_steep_exponent() {
        let mut rng = Rng::new(3);
        let one = Zipf::new(1, 1.0);
        assert!((0..100).all(|_| one.sample(&mut rng) == 0));
        let steep = Zipf::new(1000, 3.0);
        let top = (0..10_000).filter(|_| steep.sample(&mut rng) == 0).count();
        assert!(top > 7_800, "s = 3 puts ~83% on rank 1, got {top}");
    }
}
