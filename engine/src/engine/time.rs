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
