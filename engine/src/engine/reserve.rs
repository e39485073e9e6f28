//! RESERVE: checks, holds, the local waitlist and matching.

use super::*;

impl Engine {
    pub(super) fn reserve(&mut self, reserve: &Reserve) -> Reply {
        let valid = reserve.account != ADMIN_ACCOUNT
            && reserve.sku != 0
            && reserve.key != 0
            && reserve.quantity != 0
            && reserve.quantity <= self.config.quantity_max
            && reserve.flags & !RESERVE_FLAGS_KNOWN == 0
            && reserve.hold_ms <= self.config.hold_ms_max
            && reserve.wait_ms <= self.config.wait_ms_max;
        if !valid {
            return Reply::code(ResultCode::BadRequest);
        }
        let fingerprint = || {
            fingerprint(
                KeyOp::Reserve,
                &[
                    reserve.sku,
                    u64::from(reserve.quantity),
                    u64::from(reserve.flags),
                    u64::from(reserve.hold_ms),
                    u64::from(reserve.wait_ms),
                ],
            )
        };
        if let Some(record) = self.keys.get(&(reserve.account, reserve.key)).copied() {
            if record.op == KeyOp::Tombstone {
                return Reply::code(ResultCode::AlreadyCancelled);
            }
            return self.replay(reserve.account, &record, KeyOp::Reserve, fingerprint());
        }
        let Some(sku_index) = self.sku_index.get(&reserve.sku).copied() else {
            return Reply::code(ResultCode::UnknownSku);
        };
        let sku = self.skus[sku_index as usize];
        if sku.paused {
            return Reply::code(ResultCode::Paused);
        }
        if self.now_ms < sku.start_ms {
            return Reply::code(ResultCode::NotStarted);
        }
        if sku.end_ms != 0 && self.now_ms >= sku.end_ms {
            return Reply::code(ResultCode::Ended);
        }
        let limit_key = (reserve.account, reserve.sku);
        let limit_used =
            if sku.per_user_limit != 0 { self.limits.get(&limit_key).copied() } else { None };
        if sku.per_user_limit != 0 {
            let used = u64::from(limit_used.unwrap_or(0));
            if used + u64::from(reserve.quantity) > u64::from(sku.per_user_limit) {
                return Reply::code(ResultCode::LimitExceeded);
            }
        }
        let pay = reserve.flags & RESERVE_FLAG_PAY != 0;
        let amount = if pay {
            match sku.price.checked_mul(u64::from(reserve.quantity)) {
                Some(amount) => amount,
                None => return Reply::code(ResultCode::Overflow),
            }
        } else {
            0
        };
        if amount > 0 {
            let available = self.wallets.get(&reserve.account).map_or(0, |wallet| wallet.available);
            if available < amount {
                return Reply::code(ResultCode::InsufficientFunds);
            }
        }
        // FIFO: while anyone waits, newcomers do not jump the queue. With shards, the line
        // is at the coordinator; a drained bucket is empty and sends everyone there.
        let take_now = sku.waiters == 0 && sku.available >= u64::from(reserve.quantity);
        let sharded = self.sharded();
        if !take_now && reserve.wait_ms == 0 && (!sharded || sku.dry) {
            return Reply::code(ResultCode::SoldOut);
        }
        // Capacity: check every table before changing anything.
        if !take_now && !sharded && sku.waiters >= self.config.waitlist_max {
            return Reply::code(ResultCode::Overloaded);
        }
        if sku.per_user_limit != 0 && limit_used.is_none() && self.limits.is_full() {
            return Reply::code(ResultCode::Overloaded);
        }
        if !self.key_room(1) || !self.slot_room() {
            return Reply::code(ResultCode::Overloaded);
        }

        let index = self.allocate_slot(reserve.flags);
        let reservation = self.reservation_id(index);
        if amount > 0 {
            let wallet = self.wallets.get_mut(&reserve.account).expect("funds were checked");
            wallet.available -= amount;
            wallet.held += amount;
        }
        if sku.per_user_limit != 0 {
            let used = limit_used.unwrap_or(0) + reserve.quantity;
            self.limits.insert(limit_key, used).expect("limit room was checked");
        }
        let hold_ms = self.effective_hold_ms(reserve.hold_ms, &sku);
        {
            let slot = &mut self.slots[index as usize];
            slot.account = reserve.account;
            slot.key = reserve.key;
            slot.amount = amount;
            slot.sku_index = sku_index;
            slot.quantity = u16::try_from(reserve.quantity).expect("checked against quantity_max");
            slot.hold_ms = hold_ms;
            slot.wait_prev = NIL;
            slot.wait_next = NIL;
        }
        let result = if take_now {
            self.sku_dirty.mark(sku_index);
            self.skus[sku_index as usize].available -= u64::from(reserve.quantity);
            self.hand_out(index);
            ResultCode::Ok
        } else if sharded {
            self.acquire_remote(index, reserve.wait_ms);
            ResultCode::Waiting
        } else {
            self.park(index, reserve.wait_ms);
            ResultCode::Waiting
        };
        self.record_key(
            reserve.account,
            reserve.key,
            KeyRecord {
                fingerprint: fingerprint(),
                reservation,
                op: KeyOp::Reserve,
                result: result as u16,
            },
        );
        Reply::with_body(result, ReplyBody::Reservation(self.view(index)))
    }

    pub(super) fn effective_hold_ms(&self, requested_ms: u32, sku: &Sku) -> u32 {
        if requested_ms != 0 {
            requested_ms
        } else if sku.hold_ms != 0 {
            sku.hold_ms
        } else {
            self.config.hold_ms_default
        }
    }

    /// Turns a slot whose units were just taken from the bucket into a hold (or, with BUY,
    /// a confirmed sale).
    pub(crate) fn hand_out(&mut self, index: u32) {
        let slot = self.slots[index as usize];
        let quantity = u64::from(slot.quantity);
        if slot.flags() & RESERVE_FLAG_BUY != 0 {
            self.sku_dirty.mark(slot.sku_index);
            self.skus[slot.sku_index as usize].sold += quantity;
            if slot.amount > 0 {
                let wallet = self.wallets.get_mut(&slot.account).expect("funds are held");
                wallet.held -= slot.amount;
                wallet.spent += slot.amount;
            }
            self.slots[index as usize].deadline_ms = self.now_ms;
            self.finish(index, ReservationState::Confirmed);
        } else {
            self.sku_dirty.mark(slot.sku_index);
            self.skus[slot.sku_index as usize].reserved += quantity;
            let deadline_ms = self.now_ms + u64::from(slot.hold_ms);
            let slot = &mut self.slots[index as usize];
            slot.deadline_ms = deadline_ms;
            slot.set_state(ReservationState::Held);
            self.wheel.schedule(index, deadline_ms);
        }
    }

    pub(super) fn park(&mut self, index: u32, wait_ms: u32) {
        let deadline_ms = self.now_ms + u64::from(wait_ms);
        let sku_index = self.slots[index as usize].sku_index;
        let tail = self.skus[sku_index as usize].waitlist_tail;
        {
            let slot = &mut self.slots[index as usize];
            slot.deadline_ms = deadline_ms;
            slot.set_state(ReservationState::Waiting);
            slot.wait_prev = tail;
            slot.wait_next = NIL;
        }
        self.sku_dirty.mark(sku_index);
        let sku = &mut self.skus[sku_index as usize];
        if tail == NIL {
            sku.waitlist_head = index;
        } else {
            self.slots[tail as usize].wait_next = index;
        }
        sku.waitlist_tail = index;
        sku.waiters += 1;
        self.wheel.schedule(index, deadline_ms);
    }

    /// Matches the SKU's released units to its waiters, oldest first. A head that needs
    /// more than is available blocks the line (strict FIFO: no skipping to smaller asks).
    /// A head whose deadline has passed times out first: it is not eligible at `now_ms`.
    pub(crate) fn feed_waiters(&mut self, sku_index: u32) {
        loop {
            let sku = self.skus[sku_index as usize];
            let head = sku.waitlist_head;
            if head == NIL {
                break;
            }
            let slot = self.slots[head as usize];
            if slot.deadline_ms <= self.now_ms {
                self.wheel.unlink(head);
                self.time_out_waiter(head);
                continue;
            }
            if sku.available < u64::from(slot.quantity) {
                break;
            }
            self.wheel.unlink(head);
            self.remove_from_waitlist(head);
            self.sku_dirty.mark(sku_index);
            self.skus[sku_index as usize].available -= u64::from(slot.quantity);
            self.hand_out(head);
            self.counters.waiters_matched += 1;
            self.resolve_parked(head, ResultCode::Ok);
        }
    }

    pub(crate) fn remove_from_waitlist(&mut self, index: u32) {
        let slot = self.slots[index as usize];
        self.sku_dirty.mark(slot.sku_index);
        let sku = &mut self.skus[slot.sku_index as usize];
        if slot.wait_prev == NIL {
            sku.waitlist_head = slot.wait_next;
        } else {
            self.slots[slot.wait_prev as usize].wait_next = slot.wait_next;
        }
        if slot.wait_next == NIL {
            sku.waitlist_tail = slot.wait_prev;
        } else {
            self.slots[slot.wait_next as usize].wait_prev = slot.wait_prev;
        }
        sku.waiters -= 1;
        let slot = &mut self.slots[index as usize];
        slot.wait_prev = NIL;
        slot.wait_next = NIL;
    }

    /// A waiter leaves without units: out of the line, funds and limit count back.
    pub(super) fn withdraw_waiter(&mut self, index: u32) {
        self.wheel.unlink(index);
        self.remove_from_waitlist(index);
        self.return_funds_and_limit(index);
    }

    /// Records the final outcome of a parked RESERVE and queues its deferred answer.
    pub(crate) fn resolve_parked(&mut self, index: u32, result: ResultCode) {
        let slot = self.slots[index as usize];
        if let Some(record) = self.keys.get_mut(&(slot.account, slot.key)) {
            debug_assert_eq!(record.op, KeyOp::Reserve);
            record.result = result as u16;
        }
        let reply = Reply::with_body(result, ReplyBody::Reservation(self.view(index)));
        debug_assert!(self.events.len() < self.events.capacity(), "events are drained");
        self.events.push(Event { account: slot.account, key: slot.key, reply });
    }
}
