//! The invariant checker: invariants 1–5 of docs/SEMANTICS.md over one engine's whole state.
//!
//! It recomputes every derived total from the reservations themselves, so it catches a
//! counter that drifted as well as a rule that was broken. It is O(state) and meant for
//! tests, simulations and after-benchmark checks, not the hot path.

use crate::engine::{Engine, KeyOp};
use crate::types::*;
use crate::violation::Violation;
use crate::wheel::NIL;

fn violation(invariant: u8, message: String) -> Result<(), Violation> {
    Err(Violation { invariant, message })
}

impl Engine {
    /// Verifies invariants 1–5 (stock conservation, money conservation, per-user limits,
    /// key/outcome consistency, no overdue live reservation) and the internal structure they
    /// rest on (waitlists, table bounds).
    pub fn check_invariants(&self) -> Result<(), Violation> {
        let sku_count = self.skus.len();
        let mut reserved_by_sku = vec![0_u64; sku_count];
        let mut waiting_by_sku = vec![0_u32; sku_count];
        let mut held_by_account: std::collections::BTreeMap<AccountId, u64> = Default::default();
        let mut live_by_pair: std::collections::BTreeMap<(AccountId, SkuId), u64> =
            Default::default();
        let mut live_count = 0_u32;

        for (index, slot) in self.slots.iter().enumerate() {
            let state = slot.state();
            let live = matches!(state, ReservationState::Held | ReservationState::Waiting);
            if !live {
                continue;
            }
            live_count += 1;
            let sku = &self.skus[slot.sku_index as usize];
            if slot.is_proxy() {
                // A coordinator's stand-in for a waiter homed elsewhere: in line, no funds,
                // no units, no key of its own. Without a wait it has no timer.
                waiting_by_sku[slot.sku_index as usize] += 1;
                if !self.sharded() || state != ReservationState::Waiting {
                    return violation(0, format!("slot {index}: proxy in state {state:?}"));
                }
                let waits = slot.deadline_ms != u64::MAX;
                if waits && slot.deadline_ms <= self.now_ms {
                    return violation(5, format!("proxy slot {index} is past its deadline"));
                }
                if waits != self.wheel.is_linked(index as u32) {
                    return violation(5, format!("proxy slot {index}: timer does not match"));
                }
                continue;
            }
            // A remote waiter's deadline is its coordinator's to enforce.
            let remote = slot.is_remote() && state == ReservationState::Waiting;
            if state == ReservationState::Held {
                reserved_by_sku[slot.sku_index as usize] += u64::from(slot.quantity);
            } else if !remote {
                waiting_by_sku[slot.sku_index as usize] += 1;
            }
            *held_by_account.entry(slot.account).or_default() += slot.amount;
            *live_by_pair.entry((slot.account, sku.id)).or_default() += u64::from(slot.quantity);
            // Invariant 5: nothing live is overdue once the clock has been processed.
            if !remote && slot.deadline_ms <= self.now_ms {
                return violation(
                    5,
                    format!(
                        "reservation slot {index} is {state:?} past its deadline {} at {}",
                        slot.deadline_ms, self.now_ms
                    ),
                );
            }
            if remote == self.wheel.is_linked(index as u32) {
                return violation(5, format!("live reservation slot {index} has no timer"));
            }
            // Invariant 4: a live reservation's key records it with a matching outcome.
            let record = self.keys.get(&(slot.account, slot.key));
            let expected_result =
                if state == ReservationState::Held { ResultCode::Ok } else { ResultCode::Waiting };
            let reservation = self.reservation_id(index as u32);
            match record {
                Some(record)
                    if record.op == KeyOp::Reserve
                        && record.reservation == reservation
                        && record.result == expected_result as u16 => {}
                other => {
                    return violation(
                        4,
                        format!("live reservation {reservation:#x} has key record {other:?}"),
                    )
                }
            }
        }
        if live_count != self.live_count {
            return violation(0, format!("live count {} != {}", self.live_count, live_count));
        }

        // Invariant 1: stock conservation per SKU, and the waitlists agree with the slots.
        for (index, sku) in self.skus.iter().enumerate() {
            let accounted =
                sku.available.checked_add(sku.reserved).and_then(|sum| sum.checked_add(sku.sold));
            if accounted != Some(sku.total) {
                return violation(
                    1,
                    format!(
                        "sku {}: available {} + reserved {} + sold {} != total {}",
                        sku.id, sku.available, sku.reserved, sku.sold, sku.total
                    ),
                );
            }
            if sku.reserved != reserved_by_sku[index] {
                return violation(
                    1,
                    format!(
                        "sku {}: reserved {} but holds sum to {}",
                        sku.id, sku.reserved, reserved_by_sku[index]
                    ),
                );
            }
            if sku.waiters != waiting_by_sku[index] || sku.waiters > self.config.waitlist_max {
                return violation(
                    0,
                    format!(
                        "sku {}: {} waiters counted, {} waiting",
                        sku.id, sku.waiters, waiting_by_sku[index]
                    ),
                );
            }
            let mut cursor = sku.waitlist_head;
            let mut previous = NIL;
            let mut walked = 0_u32;
            while cursor != NIL {
                let slot = &self.slots[cursor as usize];
                if slot.state() != ReservationState::Waiting
                    || slot.sku_index as usize != index
                    || slot.wait_prev != previous
                    || walked > sku.waiters
                {
                    return violation(
                        0,
                        format!("sku {}: waitlist is corrupt at {cursor}", sku.id),
                    );
                }
                walked += 1;
                previous = cursor;
                cursor = slot.wait_next;
            }
            if walked != sku.waiters || sku.waitlist_tail != previous {
                return violation(0, format!("sku {}: waitlist length {walked}", sku.id));
            }
            if self.sharded() && sku.drained && sku.available != 0 {
                return violation(1, format!("sku {}: drained bucket holds units", sku.id));
            }
            // FIFO + no queue jumping: while anyone waits, the head does not fit (with
            // shards: the pool, once no reclaim round is running).
            let units_for_line = if self.sharded() { sku.pool } else { sku.available };
            if sku.waitlist_head != NIL && sku.reclaim_pending == 0 {
                let head = &self.slots[sku.waitlist_head as usize];
                if u64::from(head.quantity) <= units_for_line {
                    return violation(
                        6,
                        format!(
                            "sku {}: {} units available but the head waiter (needs {}) waits",
                            sku.id, units_for_line, head.quantity
                        ),
                    );
                }
            }
        }

        // Invariant 2: money conservation per account; held funds are the live reservations'.
        let mut held_total_wallets = 0_u128;
        for (account, wallet) in self.wallets.iter() {
            let inside =
                u128::from(wallet.available) + u128::from(wallet.held) + u128::from(wallet.spent);
            let net = i128::from(wallet.deposited) - i128::from(wallet.withdrawn);
            if net < 0 || inside != net as u128 {
                return violation(
                    2,
                    format!("account {account}: available {} + held {} + spent {} != deposited {} - withdrawn {}",
                        wallet.available, wallet.held, wallet.spent, wallet.deposited, wallet.withdrawn),
                );
            }
            let held = held_by_account.get(&account).copied().unwrap_or(0);
            if wallet.held != held {
                return violation(
                    2,
                    format!(
                        "account {account}: held {} but its reservations hold {held}",
                        wallet.held
                    ),
                );
            }
            held_total_wallets += u128::from(wallet.held);
        }
        let held_total_reservations: u128 =
            held_by_account.values().map(|held| u128::from(*held)).sum();
        if held_total_wallets != held_total_reservations {
            return violation(
                2,
                format!(
                    "wallets hold {held_total_wallets}, reservations {held_total_reservations}"
                ),
            );
        }

        // Invariant 3: per-user limits.
        for ((account, sku_id), used) in self.limits.iter() {
            let Some(sku_index) = self.sku_index.get(&sku_id) else {
                return violation(3, format!("limit counter for unknown sku {sku_id}"));
            };
            let limit = self.skus[*sku_index as usize].per_user_limit;
            if limit == 0 || *used == 0 || *used > limit {
                return violation(
                    3,
                    format!("account {account} sku {sku_id}: {used} units counted, limit {limit}"),
                );
            }
        }
        for ((account, sku_id), live) in &live_by_pair {
            let sku_index = self.sku_index.get(sku_id).copied().unwrap_or(u32::MAX);
            let limit = self.skus.get(sku_index as usize).map_or(0, |sku| sku.per_user_limit);
            if limit == 0 {
                continue;
            }
            let used = self.limits.get(&(*account, *sku_id)).copied().unwrap_or(0);
            if *live > u64::from(used) {
                return violation(
                    3,
                    format!("account {account} sku {sku_id}: {live} live units, {used} counted"),
                );
            }
        }

        // Invariant 4: every retained reserve key that still names a reservation names one
        // of this account, created by this key, in a state its recorded outcome allows.
        for ((account, key), record) in self.keys.iter() {
            if record.op != KeyOp::Reserve {
                continue;
            }
            let parts = ReservationIdParts::parse(record.reservation);
            let (index, generation) = (parts.slot as usize, parts.generation);
            let Some(slot) = self.slots.get(index) else {
                return violation(4, format!("key ({account}, {key}) names slot {index}"));
            };
            if slot.generation() != generation || slot.state() == ReservationState::None {
                continue; // retired: the key outlives its reservation
            }
            if slot.account != account || slot.key != key {
                return violation(4, format!("key ({account}, {key}) names another's reservation"));
            }
            let result = ResultCode::from_u16(record.result);
            let consistent = match slot.state() {
                ReservationState::Waiting => result == Some(ResultCode::Waiting),
                ReservationState::Held
                | ReservationState::Confirmed
                | ReservationState::Expired => result == Some(ResultCode::Ok),
                ReservationState::Cancelled => {
                    matches!(result, Some(ResultCode::Ok | ResultCode::AlreadyCancelled))
                }
                // With shards, a RESERVE refused by its coordinator ends here too.
                ReservationState::WaitTimedOut => matches!(
                    result,
                    Some(ResultCode::WaitTimeout | ResultCode::SoldOut | ResultCode::Overloaded)
                ),
                ReservationState::None => false,
            };
            if !consistent {
                return violation(
                    4,
                    format!(
                        "key ({account}, {key}) recorded {result:?} for a {:?} reservation",
                        slot.state()
                    ),
                );
            }
        }
        if self.keys.len() > self.config.request_key_max as usize
            || self.wallets.len() > self.config.account_max as usize
            || self.limits.len() > self.config.limit_entry_max as usize
            || self.skus.len() > self.config.sku_max as usize
        {
            return violation(0, "a table exceeds its configured maximum".to_string());
        }
        Ok(())
    }
}
