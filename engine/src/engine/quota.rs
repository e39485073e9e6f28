//! The engine's side of the quota protocol (`crate::quota` defines the messages and the
//! placement): how a home shard acquires units, how a coordinator serves its line, reclaims
//! buckets and announces a dry SKU. One type (`Engine`) split across files on purpose: this
//! is the multi-shard half of the state machine.

use super::*;
use crate::quota::{refill_chunk, Envelope, Message, REFILL_CHUNK_MAX};

impl Engine {
    /// Applies one message from another shard (or from itself) at `now_ms`: timers due by
    /// then fire first, exactly as for [`Engine::execute`]. Deferred answers go to the
    /// events, new messages to the outbox.
    pub fn handle(&mut self, now_ms: u64, envelope: &Envelope) {
        assert!(self.sharded(), "a single shard never receives messages");
        assert_eq!(envelope.to, self.placement.shard);
        assert!(envelope.from < self.placement.shard_count);
        self.tick(now_ms);
        let from = envelope.from;
        match envelope.message {
            Message::Acquire { sku, reservation, quantity, deadline_ms, wait } => {
                self.on_acquire(from, sku, reservation, quantity, deadline_ms, wait)
            }
            Message::Withdraw { sku, reservation } => self.on_withdraw(from, sku, reservation),
            Message::Release { sku, quantity } => {
                let index = self.coordinated_sku(sku);
                self.sku_dirty.mark(index);
                self.skus[index as usize].pool += quantity;
                self.feed_line(index);
            }
            Message::Surrender { sku, quantity } => {
                let index = self.coordinated_sku(sku);
                self.sku_dirty.mark(index);
                let entry = &mut self.skus[index as usize];
                assert!(entry.reclaim_pending > 0, "a surrender answers a reclaim");
                entry.pool += quantity;
                entry.reclaim_pending -= 1;
                if entry.reclaim_pending == 0 {
                    // A reduction that waited for the round goes before the line.
                    self.settle_reduction(index);
                }
                self.feed_line(index);
            }
            Message::Adjust { sku, delta, key } => self.on_adjust(from, sku, delta, key),
            Message::Adjusted { sku, key, result } => self.on_adjusted(sku, key, result),
            Message::Grant { sku, reservation, quantity, refill } => {
                self.on_grant(sku, reservation, quantity, refill)
            }
            Message::Deny { sku, reservation, result } => self.on_deny(sku, reservation, result),
            Message::Reclaim { sku } => {
                let index = self.known_sku(sku);
                self.sku_dirty.mark(index);
                let entry = &mut self.skus[index as usize];
                let quantity = entry.available;
                entry.total -= quantity;
                entry.available = 0;
                entry.drained = true;
                let coordinator = self.placement.coordinator_of(sku);
                self.send(coordinator, Message::Surrender { sku, quantity });
            }
            Message::Define { spec } => match self.sku_index.get(&spec.sku).copied() {
                Some(index) => {
                    self.sku_dirty.mark(index);
                    let entry = &mut self.skus[index as usize];
                    debug_assert_eq!(entry.per_user_limit, spec.per_user_limit);
                    entry.price = spec.price;
                    entry.hold_ms = spec.hold_ms;
                    entry.start_ms = spec.start_ms;
                    entry.end_ms = spec.end_ms;
                }
                // Every shard has the same `sku_max` and learns SKUs only from their
                // coordinators, which checked their own (equally full) tables; a shard
                // that is full anyway answers UNKNOWN_SKU for this one.
                None if !self.sku_index.is_full() => {
                    self.define_sku(&spec, 0);
                }
                None => {}
            },
            Message::SetPaused { sku, paused } => {
                if let Some(index) = self.sku_index.get(&sku).copied() {
                    self.sku_dirty.mark(index);
                    self.skus[index as usize].paused = paused;
                }
            }
            Message::Dry { sku, dry } => {
                let index = self.known_sku(sku);
                self.skus[index as usize].dry = dry;
            }
        }
    }

    pub(crate) fn send(&mut self, to: u32, message: Message) {
        debug_assert!(to < self.placement.shard_count);
        debug_assert!(self.outbox.len() < self.outbox.capacity(), "the outbox is drained");
        self.outbox.push(Envelope { from: self.placement.shard, to, message });
    }

    /// To every other shard.
    pub(crate) fn broadcast(&mut self, message: Message) {
        for shard in 0..self.placement.shard_count {
            if shard != self.placement.shard {
                self.send(shard, message);
            }
        }
    }

    /// To every shard, this one included (through its own inbox, like any other message).
    fn broadcast_all(&mut self, message: Message) {
        for shard in 0..self.placement.shard_count {
            self.send(shard, message);
        }
    }

    fn known_sku(&self, sku: SkuId) -> u32 {
        // Definitions travel on the same FIFO links as everything about the SKU, and are
        // sent before any other message about it.
        *self.sku_index.get(&sku).expect("a SKU is defined before any message about it")
    }

    fn coordinated_sku(&self, sku: SkuId) -> u32 {
        assert_eq!(self.placement.coordinator_of(sku), self.placement.shard);
        self.known_sku(sku)
    }

    // ------------------------------------------------------------------------------------
    // Home side.

    /// A RESERVE the local bucket cannot serve: it waits (funds and count taken, key
    /// recorded) while the coordinator decides.
    pub(crate) fn acquire_remote(&mut self, index: u32, wait_ms: u32) {
        let deadline_ms = self.now_ms() + u64::from(wait_ms);
        let slot = &mut self.slots[index as usize];
        slot.add_flags(SLOT_FLAG_REMOTE);
        slot.set_state(ReservationState::Waiting);
        slot.deadline_ms = deadline_ms;
        let slot = *slot;
        let sku = self.skus[slot.sku_index as usize].id;
        let reservation = self.reservation_id(index);
        let coordinator = self.placement.coordinator_of(sku);
        self.counters.acquires_sent += 1;
        self.send(
            coordinator,
            Message::Acquire {
                sku,
                reservation,
                quantity: u32::from(slot.quantity),
                deadline_ms,
                wait: wait_ms > 0,
            },
        );
    }

    /// Units came back to this shard's bucket (cancel, expiry, restock, a grant nobody
    /// takes): feed the local waitlist with one shard; with shards, hand them back to the
    /// pool when the bucket is drained.
    pub(crate) fn units_returned(&mut self, sku_index: u32) {
        if !self.sharded() {
            self.feed_waiters(sku_index);
            return;
        }
        self.sku_dirty.mark(sku_index);
        let entry = &mut self.skus[sku_index as usize];
        if entry.drained && entry.available > 0 {
            let quantity = entry.available;
            entry.available = 0;
            entry.total -= quantity;
            let sku = entry.id;
            let coordinator = self.placement.coordinator_of(sku);
            self.send(coordinator, Message::Release { sku, quantity });
        }
    }

    fn remote_waiter(&self, reservation: ReservationId) -> Option<u32> {
        self.slot_of(reservation).filter(|index| {
            let slot = &self.slots[*index as usize];
            slot.state() == ReservationState::Waiting && slot.is_remote()
        })
    }

    fn on_grant(&mut self, sku: SkuId, reservation: ReservationId, quantity: u32, refill: u64) {
        let sku_index = self.known_sku(sku);
        let units = u64::from(quantity) + refill;
        self.sku_dirty.mark(sku_index);
        let entry = &mut self.skus[sku_index as usize];
        entry.total += units;
        entry.available += units;
        if refill > 0 {
            entry.drained = false;
        }
        if let Some(index) = self.remote_waiter(reservation) {
            assert_eq!(u32::from(self.slots[index as usize].quantity), quantity);
            self.sku_dirty.mark(sku_index);
            self.skus[sku_index as usize].available -= u64::from(quantity);
            self.hand_out(index);
            self.counters.waiters_matched += 1;
            self.resolve_parked(index, ResultCode::Ok);
        }
        // A grant for a reservation cancelled meanwhile leaves its units in the bucket, or
        // sends them back if the bucket is drained.
        self.units_returned(sku_index);
    }

    fn on_deny(&mut self, sku: SkuId, reservation: ReservationId, result: ResultCode) {
        debug_assert!(matches!(
            result,
            ResultCode::SoldOut | ResultCode::WaitTimeout | ResultCode::Overloaded
        ));
        let _ = self.known_sku(sku);
        // Cancelled meanwhile: the CANCEL already gave everything back.
        let Some(index) = self.remote_waiter(reservation) else { return };
        self.return_funds_and_limit(index);
        if result == ResultCode::WaitTimeout {
            // A waiter that was not matched in time, exactly as on one shard.
            self.finish(index, ReservationState::WaitTimedOut);
            self.counters.waiters_timed_out += 1;
            self.resolve_parked(index, result);
            return;
        }
        // SOLD_OUT (no wait, nothing anywhere) or OVERLOADED (the line is full): one shard
        // refuses these at once, recording nothing. So the RESERVE leaves no trace here
        // either: its key is forgotten (a later retry runs afresh), its slot goes back to
        // the free list unseen, and its answer has no body.
        let slot = self.slots[index as usize];
        self.forget_key(slot.account, slot.key);
        self.release_slot(index);
        debug_assert!(self.events.len() < self.events.capacity(), "events are drained");
        self.events.push(Event {
            account: slot.account,
            key: slot.key,
            reply: Reply::code(result),
        });
    }

    // ------------------------------------------------------------------------------------
    // Coordinator side.

    fn on_acquire(
        &mut self,
        from: u32,
        sku: SkuId,
        reservation: ReservationId,
        quantity: u32,
        deadline_ms: u64,
        wait: bool,
    ) {
        let sku_index = self.coordinated_sku(sku);
        let entry = self.skus[sku_index as usize];
        if wait && deadline_ms <= self.now_ms() {
            // The wait ran out on the way here (the home's clock ran ahead of ours).
            self.send(from, Message::Deny { sku, reservation, result: ResultCode::WaitTimeout });
            return;
        }
        if entry.waiters >= self.config().waitlist_max {
            // A full line: a waiter cannot join it (OVERLOADED, as on one shard), and a
            // RESERVE without a wait could not be served before the waiters (SOLD_OUT, as on
            // one shard, which refuses a newcomer while anyone waits).
            let result = if wait { ResultCode::Overloaded } else { ResultCode::SoldOut };
            self.send(from, Message::Deny { sku, reservation, result });
            return;
        }
        if !self.slot_room() {
            self.send(from, Message::Deny { sku, reservation, result: ResultCode::Overloaded });
            return;
        }
        let index = self.allocate_slot(SLOT_FLAG_PROXY);
        {
            let slot = &mut self.slots[index as usize];
            slot.sku_index = sku_index;
            slot.quantity = u16::try_from(quantity).expect("quantity_max is at most u16::MAX");
            // A proxy names its home reservation in `amount` and its home shard in
            // `hold_ms`; it holds no funds and no units.
            slot.amount = reservation;
            slot.hold_ms = from;
            slot.deadline_ms = if wait { deadline_ms } else { u64::MAX };
            slot.set_state(ReservationState::Waiting);
            slot.wait_prev = entry.waitlist_tail;
            slot.wait_next = NIL;
        }
        self.sku_dirty.mark(sku_index);
        let entry = &mut self.skus[sku_index as usize];
        if entry.waitlist_tail == NIL {
            entry.waitlist_head = index;
        } else {
            let tail = entry.waitlist_tail;
            self.slots[tail as usize].wait_next = index;
        }
        self.sku_dirty.mark(sku_index);
        let entry = &mut self.skus[sku_index as usize];
        entry.waitlist_tail = index;
        entry.waiters += 1;
        if wait {
            self.wheel.schedule(index, deadline_ms);
        } else {
            entry.no_wait_waiters += 1;
        }
        self.feed_line(sku_index);
    }

    fn on_withdraw(&mut self, from: u32, sku: SkuId, reservation: ReservationId) {
        let sku_index = self.coordinated_sku(sku);
        let mut cursor = self.skus[sku_index as usize].waitlist_head;
        while cursor != NIL {
            let slot = self.slots[cursor as usize];
            if slot.amount == reservation && slot.hold_ms == from {
                self.free_proxy(cursor);
                // The line moved: the waiter behind may fit what the leaver blocked.
                self.feed_line(sku_index);
                return;
            }
            cursor = slot.wait_next;
        }
        // Not queued any more: its Grant or Deny is on the way, and the home handles it.
    }

    /// Out of the line and back to the free list. A proxy's slot id was never shown to a
    /// client, so it needs no retirement delay.
    fn free_proxy(&mut self, index: u32) {
        let slot = self.slots[index as usize];
        assert!(slot.is_proxy() && slot.state() == ReservationState::Waiting);
        self.wheel.unlink(index);
        self.remove_from_waitlist(index);
        if slot.deadline_ms == u64::MAX {
            self.skus[slot.sku_index as usize].no_wait_waiters -= 1;
        }
        self.release_slot(index);
    }

    /// A live slot that no client will ever look up goes back to the free list (no
    /// retirement delay). Its generation stays bumped, so its id is never reused.
    fn release_slot(&mut self, index: u32) {
        assert!(!self.wheel.is_linked(index), "a released slot has no timer and no list");
        let free_head = self.free_head;
        let slot = &mut self.slots[index as usize];
        assert_eq!(slot.state(), ReservationState::Waiting);
        slot.set_state(ReservationState::None);
        slot.wait_prev = NIL;
        slot.wait_next = free_head;
        self.free_head = index;
        self.live_count -= 1;
    }

    pub(crate) fn deny_proxy(&mut self, index: u32, result: ResultCode) {
        let slot = self.slots[index as usize];
        let sku = self.skus[slot.sku_index as usize].id;
        self.free_proxy(index);
        self.send(slot.hold_ms, Message::Deny { sku, reservation: slot.amount, result });
    }

    /// Serves the SKU's line from the pool, oldest first (strict FIFO: a head that does not
    /// fit blocks everyone behind it). Starts a reclaim round when the pool is short and a
    /// bucket may hold units; refuses RESERVEs without a wait only when a round found
    /// nothing, or no bucket can hold anything.
    pub(crate) fn feed_line(&mut self, sku_index: u32) {
        let shard_count = self.placement.shard_count;
        let quantity_max = u64::from(self.config().quantity_max);
        // Shards already given a refill chunk in this call (at most one chunk each).
        let mut refilled: u64 = 0;
        loop {
            let entry = self.skus[sku_index as usize];
            if entry.reclaim_pending > 0 {
                break; // Decisions wait for every bucket's answer.
            }
            let head = entry.waitlist_head;
            if head == NIL {
                break;
            }
            let slot = self.slots[head as usize];
            if slot.deadline_ms <= self.now_ms() {
                self.deny_proxy(head, ResultCode::WaitTimeout);
                continue;
            }
            let quantity = u64::from(slot.quantity);
            if entry.pool >= quantity {
                self.free_proxy(head);
                self.sku_dirty.mark(sku_index);
                let entry = &mut self.skus[sku_index as usize];
                entry.pool -= quantity;
                // Refill the home bucket when nobody else is in line, or when the pool is
                // so large that everyone still in line is sure to be served from it anyway
                // (twice the most they could ask for). Without the second case, sustained
                // load with ample stock keeps a few proxies in line at every grant, so no
                // grant carries a refill, every bucket stays empty, and every RESERVE goes
                // through the coordinator (measured: 89-95% with two shards). When stock is
                // scarce the line still gets every unit, in order.
                let home = slot.hold_ms;
                let line_demand_max = u64::from(entry.waiters) * quantity_max;
                let ample = entry.pool >= line_demand_max.saturating_mul(2);
                let first_for_home = home >= 64 || refilled & (1 << home) == 0;
                let refill = if (entry.waiters == 0 || ample) && first_for_home {
                    refill_chunk(
                        entry.pool - line_demand_max.min(entry.pool),
                        shard_count,
                        REFILL_CHUNK_MAX,
                    )
                } else {
                    0
                };
                if refill > 0 && home < 64 {
                    refilled |= 1 << home;
                }
                entry.pool -= refill;
                if refill > 0 {
                    entry.buckets_may_hold = true;
                }
                let sku = entry.id;
                self.send(
                    home,
                    Message::Grant {
                        sku,
                        reservation: slot.amount,
                        quantity: u32::from(slot.quantity),
                        refill,
                    },
                );
                continue;
            }
            if entry.buckets_may_hold {
                self.start_reclaim(sku_index);
                break;
            }
            // Nothing anywhere but the pool, and the pool is short.
            if slot.deadline_ms == u64::MAX {
                self.deny_proxy(head, ResultCode::SoldOut);
                continue;
            }
            // The head waits for units to come back; those behind it without a wait
            // cannot be served before it.
            if entry.no_wait_waiters > 0 {
                let mut cursor = self.slots[head as usize].wait_next;
                while cursor != NIL {
                    let next = self.slots[cursor as usize].wait_next;
                    if self.slots[cursor as usize].deadline_ms == u64::MAX {
                        self.deny_proxy(cursor, ResultCode::SoldOut);
                    }
                    cursor = next;
                }
            }
            break;
        }
        self.update_dry(sku_index);
    }

    /// Asks every bucket (this shard's included) for its units; decisions on the SKU wait
    /// until every shard answered.
    fn start_reclaim(&mut self, sku_index: u32) {
        self.sku_dirty.mark(sku_index);
        let shard_count = self.placement.shard_count;
        let entry = &mut self.skus[sku_index as usize];
        assert_eq!(entry.reclaim_pending, 0, "one round at a time");
        entry.buckets_may_hold = false;
        entry.reclaim_pending = shard_count;
        let sku = entry.id;
        self.counters.reclaim_rounds += 1;
        self.broadcast_all(Message::Reclaim { sku });
    }

    /// Tells every shard when the SKU runs dry (pool empty, every bucket drained, no round
    /// running) and when units are back.
    fn update_dry(&mut self, sku_index: u32) {
        let entry = self.skus[sku_index as usize];
        let dry = entry.pool == 0 && entry.reclaim_pending == 0 && !entry.buckets_may_hold;
        if dry != entry.dry_announced {
            self.skus[sku_index as usize].dry_announced = dry;
            self.broadcast_all(Message::Dry { sku: entry.id, dry });
        }
    }

    // ------------------------------------------------------------------------------------
    // ADJUST_STOCK across shards: the admin home keeps the key, the coordinator the units.

    /// ADJUST_STOCK on the admin namespace's home (`route`): the key is recorded as WAITING
    /// and the coordinator asked to apply it; the final answer is an event (`on_adjusted`).
    pub(crate) fn adjust_remote(
        &mut self,
        sku: SkuId,
        delta: i64,
        key: RequestKey,
        fingerprint_value: u64,
    ) -> Reply {
        assert_eq!(self.placement.home_of(ADMIN_ACCOUNT), self.placement.shard);
        if !self.key_room(1) {
            return Reply::code(ResultCode::Overloaded);
        }
        // The SKU id rides in the record's reservation field, to replay the SKU view.
        self.record_key(
            ADMIN_ACCOUNT,
            key,
            KeyRecord {
                fingerprint: fingerprint_value,
                reservation: sku,
                op: KeyOp::AdjustStock,
                result: ResultCode::Waiting as u16,
            },
        );
        self.send(self.placement.coordinator_of(sku), Message::Adjust { sku, delta, key });
        Reply::code(ResultCode::Waiting)
    }

    /// The coordinator applies an adjustment: a restock goes to the pool (and from there to
    /// the line first); a reduction takes units from the pool, and when the pool is short
    /// and some bucket may hold units, reclaims every bucket first, as one shard would
    /// take any unit it holds.
    fn on_adjust(&mut self, from: u32, sku: SkuId, delta: i64, key: RequestKey) {
        let Some(index) = self.sku_index.get(&sku).copied() else {
            self.send(from, Message::Adjusted { sku, key, result: ResultCode::UnknownSku });
            return;
        };
        assert_eq!(self.placement.coordinator_of(sku), self.placement.shard);
        let entry = self.skus[index as usize];
        let magnitude = delta.unsigned_abs();
        let result = if delta > 0 {
            match (entry.global_total.checked_add(magnitude), entry.pool.checked_add(magnitude)) {
                (Some(global_total), Some(pool)) => {
                    self.sku_dirty.mark(index);
                    let entry = &mut self.skus[index as usize];
                    entry.global_total = global_total;
                    entry.pool = pool;
                    ResultCode::Ok
                }
                _ => ResultCode::Overflow,
            }
        } else if entry.reduction_pending > 0 {
            // One reduction at a time per SKU: admin operations are rare; retry.
            ResultCode::Overloaded
        } else if entry.pool >= magnitude {
            self.take_from_pool(index, magnitude);
            ResultCode::Ok
        } else if entry.buckets_may_hold || entry.reclaim_pending > 0 {
            self.sku_dirty.mark(index);
            let entry = &mut self.skus[index as usize];
            entry.reduction_pending = magnitude;
            entry.reduction_key = key;
            entry.reduction_from = from;
            if entry.reclaim_pending == 0 {
                self.start_reclaim(index);
            }
            return; // answered when the round ends (`settle_reduction`)
        } else {
            ResultCode::SoldOut
        };
        self.send(from, Message::Adjusted { sku, key, result });
        self.feed_line(index);
    }

    /// Removes `units` from the SKU for good: out of the pool and out of the global total.
    fn take_from_pool(&mut self, index: u32, units: u64) {
        self.sku_dirty.mark(index);
        let entry = &mut self.skus[index as usize];
        assert!(entry.pool >= units && entry.global_total >= units);
        entry.pool -= units;
        entry.global_total -= units;
    }

    /// The reclaim round a waiting reduction asked for has ended: apply it if the pool now
    /// holds enough, or refuse it SOLD_OUT (nothing was left anywhere).
    fn settle_reduction(&mut self, index: u32) {
        let entry = self.skus[index as usize];
        if entry.reduction_pending == 0 {
            return;
        }
        let result = if entry.pool >= entry.reduction_pending {
            self.take_from_pool(index, entry.reduction_pending);
            ResultCode::Ok
        } else {
            ResultCode::SoldOut
        };
        self.sku_dirty.mark(index);
        let entry = &mut self.skus[index as usize];
        entry.reduction_pending = 0;
        let (sku, key, to) = (entry.id, entry.reduction_key, entry.reduction_from);
        self.send(to, Message::Adjusted { sku, key, result });
    }

    /// The admin home learns the outcome: an applied adjustment keeps its key (retries
    /// replay OK); a refused one leaves no trace, as on one shard.
    fn on_adjusted(&mut self, sku: SkuId, key: RequestKey, result: ResultCode) {
        assert_eq!(self.placement.home_of(ADMIN_ACCOUNT), self.placement.shard);
        let record = self.keys.get_mut(&(ADMIN_ACCOUNT, key)).expect("the key waits for this");
        assert!(record.op == KeyOp::AdjustStock && record.result == ResultCode::Waiting as u16);
        assert_eq!(record.reservation, sku);
        if result == ResultCode::Ok {
            record.result = ResultCode::Ok as u16;
        } else {
            self.forget_key(ADMIN_ACCOUNT, key);
        }
        debug_assert!(self.events.len() < self.events.capacity(), "events are drained");
        self.events.push(Event { account: ADMIN_ACCOUNT, key, reply: Reply::code(result) });
    }

    /// Coordinator only: (pool, global total) of a SKU this shard coordinates.
    pub fn pool_of(&self, sku: SkuId) -> Option<(u64, u64)> {
        if self.placement.coordinator_of(sku) != self.placement.shard {
            return None;
        }
        let index = self.sku_index.get(&sku)?;
        let entry = &self.skus[*index as usize];
        Some((entry.pool, entry.global_total))
    }

    /// This shard's local books for a SKU: (bucket, held, sold, local total).
    pub fn bucket_of(&self, sku: SkuId) -> Option<(u64, u64, u64, u64)> {
        let index = self.sku_index.get(&sku)?;
        let entry = &self.skus[*index as usize];
        Some((entry.available, entry.reserved, entry.sold, entry.total))
    }

    /// SKU ids this shard knows, in creation order.
    pub fn sku_ids(&self) -> impl Iterator<Item = SkuId> + '_ {
        self.skus.iter().map(|entry| entry.id)
    }
}
