//! Time: the clock advances, holds expire, waiters time out.

use super::*;

impl Engine {
    pub(super) fn advance(&mut self, now_ms: u64) {
        if now_ms <= self.now_ms {
            // Every timer due by `self.now_ms` was processed, and timers are only ever
            // scheduled after it: nothing can be due.
            debug_assert_eq!(self.wheel.elapsed_ms(), self.now_ms);
            return;
        }
        // Unix milliseconds stay below 2^60 for thirty million years; a larger reading is a
        // broken clock, and deadlines `now + hold` must not overflow.
        assert!(now_ms < NOW_MS_LIMIT, "clock reading {now_ms} is not unix milliseconds");
        self.now_ms = now_ms;
        loop {
            let slots = &self.slots;
            let Some(index) = self.wheel.pop_due(now_ms, |node| slots[node as usize].deadline_ms)
            else {
                break;
            };
            match self.slots[index as usize].state() {
                ReservationState::Held => self.expire(index),
                ReservationState::Waiting if self.slots[index as usize].is_proxy() => {
                    let sku_index = self.slots[index as usize].sku_index;
                    self.deny_proxy(index, ResultCode::WaitTimeout);
                    self.feed_line(sku_index);
                }
                ReservationState::Waiting => {
                    // The line moves: the waiter behind may fit the units the leaver blocked.
                    let sku_index = self.slots[index as usize].sku_index;
                    self.time_out_waiter(index);
                    self.feed_waiters(sku_index);
                }
                state => unreachable!("only live reservations have timers, found {state:?}"),
            }
        }
        debug_assert_eq!(self.wheel.elapsed_ms(), now_ms);
    }

    pub(super) fn expire(&mut self, index: u32) {
        let slot = self.slots[index as usize];
        assert_eq!(slot.state(), ReservationState::Held);
        assert!(slot.deadline_ms <= self.now_ms);
        self.release_held(index);
        self.finish(index, ReservationState::Expired);
        self.counters.holds_expired += 1;
        self.expiry_delay.record(self.now_ms - slot.deadline_ms);
        self.units_returned(slot.sku_index);
    }

    pub(super) fn time_out_waiter(&mut self, index: u32) {
        let slot = self.slots[index as usize];
        assert_eq!(slot.state(), ReservationState::Waiting);
        assert!(slot.deadline_ms <= self.now_ms);
        self.withdraw_waiter(index);
        self.finish(index, ReservationState::WaitTimedOut);
        self.counters.waiters_timed_out += 1;
        self.resolve_parked(index, ResultCode::WaitTimeout);
    }
}

/// How late holds expire, as the engine sees it: its clock when it released a hold minus the
/// hold's deadline, in whole milliseconds (the engine's clock resolution: 0 means released
/// within the deadline's millisecond). A runtime that sleeps past a timer, or falls behind
/// under load, shows here. Observational: neither in the state hash nor in snapshots (it
/// counts this process's expiries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpiryDelay {
    /// Expiries by delay: index `d` counts delays of exactly `d` ms, the last index every
    /// delay of `BUCKETS - 1` ms or more.
    pub count_by_ms: [u64; ExpiryDelay::BUCKETS],
    pub delay_ms_max: u64,
}

impl Default for ExpiryDelay {
    fn default() -> ExpiryDelay {
        ExpiryDelay { count_by_ms: [0; ExpiryDelay::BUCKETS], delay_ms_max: 0 }
    }
}

impl ExpiryDelay {
    /// Delays 0..=62 ms exactly, then one bucket for the rest (its largest value is in
    /// `delay_ms_max`): a delay of tens of milliseconds is already a fault to look at.
    pub const BUCKETS: usize = 64;

    pub(super) fn record(&mut self, delay_ms: u64) {
        let bucket = delay_ms.min(ExpiryDelay::BUCKETS as u64 - 1) as usize;
        self.count_by_ms[bucket] += 1;
        self.delay_ms_max = self.delay_ms_max.max(delay_ms);
    }

    /// Expiries recorded.
    pub fn count(&self) -> u64 {
        self.count_by_ms.iter().sum()
    }

    /// The smallest delay `d` such that at least `quantile` (0..=1) of the expiries took at
    /// most `d` ms; `None` with no expiry. In the last bucket the answer is `delay_ms_max`
    /// (an upper bound).
    pub fn quantile_ms(&self, quantile: f64) -> Option<u64> {
        assert!((0.0..=1.0).contains(&quantile), "quantile {quantile} is not in 0..=1");
        let count = self.count();
        if count == 0 {
            return None;
        }
        // At least one expiry, even for quantile 0: the smallest delay seen.
        let rank = ((quantile * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (delay_ms, &bucket_count) in self.count_by_ms.iter().enumerate() {
            seen += bucket_count;
            if seen >= rank {
                return Some(if delay_ms == ExpiryDelay::BUCKETS - 1 {
                    self.delay_ms_max
                } else {
                    delay_ms as u64
                });
            }
        }
        unreachable!("the rank {rank} is at most the count {count}")
    }

    /// Adds `other`'s expiries (shards' delays into one server-wide view).
    pub fn merge(&mut self, other: &ExpiryDelay) {
        for (mine, theirs) in self.count_by_ms.iter_mut().zip(other.count_by_ms.iter()) {
            *mine += theirs;
        }
        self.delay_ms_max = self.delay_ms_max.max(other.delay_ms_max);
    }
}

#[cfg(test)]
mod tests {
    use super::ExpiryDelay;

    #[test]
    fn quantiles_of_the_expiry_delay_are_exact_below_the_last_bucket() {
        let mut delay = ExpiryDelay::default();
        assert_eq!(delay.quantile_ms(0.5), None);
        for _ in 0..98 {
            delay.record(0);
        }
        delay.record(1);
        delay.record(500);
        assert_eq!(delay.count(), 100);
        assert_eq!(delay.quantile_ms(0.5), Some(0));
        assert_eq!(delay.quantile_ms(0.98), Some(0));
        assert_eq!(delay.quantile_ms(0.99), Some(1));
        assert_eq!(delay.quantile_ms(1.0), Some(500));
        assert_eq!(delay.delay_ms_max, 500);
        let mut other = ExpiryDelay::default();
        other.record(7);
        delay.merge(&other);
        assert_eq!(delay.count(), 101);
        assert_eq!(delay.count_by_ms[7], 1);
        assert_eq!(delay.delay_ms_max, 500);
    }
}
