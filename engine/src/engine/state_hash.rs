//! The state fingerprint used by determinism checks and recovery.

use super::*;

impl Engine {
    /// A fingerprint of the whole state (clock, SKUs, wallets, reservations, keys, limit
    /// counters, waitlist and free/finished orders), independent of memory layout. Two
    /// engines given the same requests at the same clock readings have equal hashes.
    pub fn state_hash(&self) -> u64 {
        let mut hasher = StateHasher::default();
        hasher.write_u64(self.now_ms);
        hasher.write_u64(u64::from(self.generation_jump));
        for sku in &self.skus {
            for word in [
                sku.id,
                sku.price,
                u64::from(sku.per_user_limit),
                u64::from(sku.hold_ms),
                sku.start_ms,
                sku.end_ms,
                sku.total,
                sku.available,
                sku.reserved,
                sku.sold,
                u64::from(sku.waiters),
                u64::from(sku.waitlist_head),
                u64::from(sku.waitlist_tail),
                u64::from(sku.paused),
                u64::from(sku.drained),
                u64::from(sku.dry),
                sku.pool,
                sku.global_total,
                u64::from(sku.reclaim_pending),
                u64::from(sku.buckets_may_hold),
                u64::from(sku.dry_announced),
                u64::from(sku.no_wait_waiters),
                sku.reduction_pending,
                sku.reduction_key,
                u64::from(sku.reduction_from),
            ] {
                hasher.write_u64(word);
            }
        }
        let mut wallets: Vec<(AccountId, Wallet)> =
            self.wallets.iter().map(|(account, wallet)| (account, *wallet)).collect();
        wallets.sort_unstable_by_key(|(account, _)| *account);
        for (account, wallet) in wallets {
            for word in [
                account,
                wallet.available,
                wallet.held,
                wallet.spent,
                wallet.deposited,
                wallet.withdrawn,
            ] {
                hasher.write_u64(word);
            }
        }
        for (index, slot) in self.slots.iter().enumerate() {
            if slot.state() == ReservationState::None {
                continue;
            }
            for word in [
                index as u64,
                slot.account,
                slot.key,
                slot.amount,
                slot.deadline_ms,
                u64::from(slot.sku_index),
                u64::from(slot.quantity),
                u64::from(slot.hold_ms),
                slot.packed(),
                u64::from(slot.wait_prev),
                u64::from(slot.wait_next),
            ] {
                hasher.write_u64(word);
            }
        }
        let mut keys: Vec<((AccountId, RequestKey), KeyRecord)> =
            self.keys.iter().map(|(key, record)| (key, *record)).collect();
        keys.sort_unstable_by_key(|(key, _)| *key);
        for ((account, key), record) in keys {
            for word in [
                account,
                key,
                record.fingerprint,
                record.reservation,
                record.op as u64,
                u64::from(record.result),
            ] {
                hasher.write_u64(word);
            }
        }
        for entry in &self.key_fifo {
            hasher.write_u64(entry.recorded_ms);
        }
        let mut limits: Vec<((AccountId, SkuId), u32)> =
            self.limits.iter().map(|(key, used)| (key, *used)).collect();
        limits.sort_unstable_by_key(|(key, _)| *key);
        for ((account, sku), used) in limits {
            for word in [account, sku, u64::from(used)] {
                hasher.write_u64(word);
            }
        }
        hasher.write_u64(u64::from(self.free_head));
        for index in self.wheel.finished() {
            hasher.write_u64(u64::from(index));
        }
        hasher.finish()
    }
}
