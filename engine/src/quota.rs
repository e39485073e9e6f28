//! Stock as a distributed quota: the messages shards exchange and how each side handles them.
//!
//! With more than one shard, every SKU has a *coordinator* shard (a hash of the SKU id) that
//! holds the SKU's unallocated **pool**, its global total and its FIFO waitlist; every shard
//! holds a **bucket** of the SKU's units (`Sku::available`) that it may hand out without
//! asking anyone. Accounts live on their *home* shard, which owns their reservations.
//!
//! The protocol (see docs/ARCHITECTURE.md for the sequence diagrams):
//!
//! - A RESERVE that its home bucket cannot serve becomes a *remote waiter* on the home shard
//!   (funds and per-user count taken, key recorded, state WAITING) and sends
//!   [`Message::Acquire`] to the coordinator, which queues a *proxy* of it at the tail of the
//!   SKU's waitlist. The coordinator serves the line oldest first from its pool: it sends
//!   [`Message::Grant`] with the units, plus a refill chunk for the home bucket when nobody
//!   else waits. A wait of 0 that cannot be served is refused with [`Message::Deny`]
//!   (SOLD_OUT); a waiter whose deadline passes is refused with WAIT_TIMEOUT.
//! - When the pool cannot serve the head of the line and some bucket may hold units, the
//!   coordinator **reclaims**: [`Message::Reclaim`] to every shard, each answers
//!   [`Message::Surrender`] with its whole bucket and marks the bucket *drained*. Only when a
//!   round finds nothing anywhere is a request refused SOLD_OUT. So no unit is stranded in a
//!   bucket while a buyer is turned away (BRIEF §2 invariant 6).
//! - A drained bucket stays empty: units released on its shard (cancel, expiry, a grant for a
//!   reservation cancelled meanwhile) go back to the pool with [`Message::Release`]. A grant
//!   with a refill chunk re-opens the bucket.
//! - When a refusal leaves the pool empty and every bucket drained, the coordinator tells
//!   every shard the SKU is dry ([`Message::Dry`]); a dry shard answers a RESERVE without a
//!   wait SOLD_OUT on the spot, with no hop. The first unit back in the pool lifts it.
//! - Admin operations on a SKU (PUT_SKU, ADJUST_STOCK, PAUSE, RESUME) run on its coordinator;
//!   definitions and pause states are broadcast with [`Message::Define`] and
//!   [`Message::SetPaused`], so every shard checks the window, the pause and the price locally.
//!
//! **Architecture Invariant:** the protocol needs only per-link FIFO delivery (what an SPSC
//! ring gives): a Reclaim is always behind every Grant the coordinator sent before it on the
//! same link, so a surrendered bucket has received every chunk granted before the round.
//!
//! Stock conservation across shards: for each SKU, the coordinator's global total equals its
//! pool, plus every shard's local `total` (bucket + held + sold there), plus the units
//! carried by Grant, Surrender and Release messages in flight.

use crate::hash::mix64;
use crate::types::*;

/// Which shard this engine is, of how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub shard: u32,
    pub shard_count: u32,
}

impl Placement {
    /// The only shard: no messages are ever sent.
    pub const SINGLE: Placement = Placement { shard: 0, shard_count: 1 };

    /// Upper bound on shards (one per core; the ring mesh is N×N).
    pub const SHARD_COUNT_MAX: u32 = 64;

    /// The shard that owns an account's wallet, keys and reservations.
    pub fn home_of(&self, account: AccountId) -> u32 {
        home_shard(account, self.shard_count)
    }

    /// The shard that holds a SKU's pool and waitlist.
    pub fn coordinator_of(&self, sku: SkuId) -> u32 {
        coordinator_shard(sku, self.shard_count)
    }
}

/// The home shard of `account` among `shard_count` shards: a stable hash, so every core
/// (and a shard-aware client) computes the same answer.
pub fn home_shard(account: AccountId, shard_count: u32) -> u32 {
    assert!(shard_count >= 1);
    (mix64(account ^ 0x6163_636f_756e_7400) % u64::from(shard_count)) as u32
}

/// The coordinator shard of `sku` among `shard_count` shards.
pub fn coordinator_shard(sku: SkuId, shard_count: u32) -> u32 {
    assert!(shard_count >= 1);
    (mix64(sku ^ 0x0000_0000_736b_7500) % u64::from(shard_count)) as u32
}

/// Which shard must apply `request`: the account's home for everything about an account,
/// the SKU's coordinator for admin operations. QUERY_SKU and PING may run anywhere (`None`).
pub fn route(request: &Request, shard_count: u32) -> Option<u32> {
    match *request {
        Request::Reserve(Reserve { account, .. })
        | Request::Confirm { account, .. }
        | Request::Cancel { account, .. }
        | Request::QueryAccount { account }
        | Request::QueryReservation { account, .. }
        | Request::Deposit { account, .. }
        | Request::Withdraw { account, .. } => Some(home_shard(account, shard_count)),
        Request::PutSku(SkuSpec { sku, .. })
        | Request::AdjustStock { sku, .. }
        | Request::Pause { sku }
        | Request::Resume { sku } => Some(coordinator_shard(sku, shard_count)),
        Request::QuerySku { .. } | Request::Ping => None,
    }
}

/// One inter-shard message. Fixed size and `Copy`, so it travels through an SPSC ring by
/// value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// Home → coordinator: queue this RESERVE for `quantity` units.
    Acquire { sku: SkuId, reservation: ReservationId, quantity: u32, deadline_ms: u64, wait: bool },
    /// Home → coordinator: the reservation was cancelled; drop its proxy if still queued.
    Withdraw { sku: SkuId, reservation: ReservationId },
    /// Any shard → coordinator: units back to the pool from a drained bucket.
    Release { sku: SkuId, quantity: u64 },
    /// Any shard → coordinator: the whole bucket, in answer to a Reclaim.
    Surrender { sku: SkuId, quantity: u64 },
    /// Coordinator → home: `quantity` units for the reservation, and `refill` more for the
    /// home bucket (a refill re-opens a drained bucket).
    Grant { sku: SkuId, reservation: ReservationId, quantity: u32, refill: u64 },
    /// Coordinator → home: the reservation gets no units (SOLD_OUT, WAIT_TIMEOUT or
    /// OVERLOADED).
    Deny { sku: SkuId, reservation: ReservationId, result: ResultCode },
    /// Coordinator → every shard: surrender your bucket and keep it drained.
    Reclaim { sku: SkuId },
    /// Coordinator → every shard: the SKU was created or its terms changed.
    Define { spec: SkuSpec },
    /// Coordinator → every shard: the SKU was paused or resumed.
    SetPaused { sku: SkuId, paused: bool },
    /// Coordinator → every shard: nothing is left anywhere (`true`), or units are back.
    Dry { sku: SkuId, dry: bool },
}

/// A message with its addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub from: u32,
    pub to: u32,
    pub message: Message,
}

// Messages travel through rings by value: keep them one cache line.
const _: () = assert!(core::mem::size_of::<Envelope>() <= 64);

impl Message {
    /// Units of stock this message carries (for the conservation check across shards).
    pub fn units_carried(&self) -> (SkuId, u64) {
        match *self {
            Message::Grant { sku, quantity, refill, .. } => (sku, u64::from(quantity) + refill),
            Message::Surrender { sku, quantity } | Message::Release { sku, quantity } => {
                (sku, quantity)
            }
            Message::Acquire { sku, .. }
            | Message::Withdraw { sku, .. }
            | Message::Deny { sku, .. }
            | Message::Reclaim { sku }
            | Message::SetPaused { sku, .. }
            | Message::Dry { sku, .. } => (sku, 0),
            Message::Define { spec } => (spec.sku, 0),
        }
    }
}

/// The refill chunk a coordinator hands a bucket along with a grant: a share of what is
/// left, smaller as the pool shrinks and as shards multiply, so that near the end every
/// unit goes through the coordinator's line (exact FIFO) while early on most RESERVEs are
/// served from a local bucket with no hop. At most `chunk_max`.
pub fn refill_chunk(pool: u64, shard_count: u32, chunk_max: u64) -> u64 {
    (pool / (4 * u64::from(shard_count))).min(chunk_max)
}

// =========================================================================================
// The engine's side of the protocol.

use crate::engine::{
    reservation_id, Engine, KeyOp, KeyRecord, ADMIN_ACCOUNT, SLOT_FLAG_PROXY, SLOT_FLAG_REMOTE,
};
use crate::wheel::NIL;

/// Largest refill chunk, in units: bounds how much stock one bucket can sit on.
pub const REFILL_CHUNK_MAX: u64 = 4096;

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
                self.feed_line(index);
            }
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
        let reservation = reservation_id(slot.generation(), index);
        let coordinator = self.placement.coordinator_of(sku);
        self.counters.acquires_sent += 1;
        self.send(
            coordinator,
            Message::Acquire {
                sku,
                reservation,
                quantity: slot.quantity,
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
            assert_eq!(self.slots[index as usize].quantity, quantity);
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
        if let Some(index) = self.remote_waiter(reservation) {
            self.return_funds_and_limit(index);
            self.finish(index, ReservationState::WaitTimedOut);
            self.counters.waiters_timed_out += 1;
            self.resolve_parked(index, result);
        }
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
        if entry.waiters >= self.config().waitlist_max || !self.slot_room() {
            self.send(from, Message::Deny { sku, reservation, result: ResultCode::Overloaded });
            return;
        }
        let index = self.allocate_slot(SLOT_FLAG_PROXY);
        {
            let slot = &mut self.slots[index as usize];
            slot.sku_index = sku_index;
            slot.quantity = quantity;
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
        let free_head = self.free_head;
        let slot = &mut self.slots[index as usize];
        slot.set_state(ReservationState::None);
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
                        quantity: slot.quantity,
                        refill,
                    },
                );
                continue;
            }
            if entry.buckets_may_hold {
                self.sku_dirty.mark(sku_index);
                let entry = &mut self.skus[sku_index as usize];
                entry.buckets_may_hold = false;
                entry.reclaim_pending = shard_count;
                let sku = entry.id;
                self.counters.reclaim_rounds += 1;
                self.broadcast_all(Message::Reclaim { sku });
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

    /// ADJUST_STOCK on a coordinator: restock goes to the pool (and from there to the line
    /// first); a reduction takes only unallocated units.
    pub(crate) fn adjust_pool(
        &mut self,
        sku_index: u32,
        delta: i64,
        key: RequestKey,
        fingerprint_value: u64,
    ) -> Reply {
        let entry = self.skus[sku_index as usize];
        let magnitude = delta.unsigned_abs();
        let (global_total, pool) = if delta > 0 {
            match (entry.global_total.checked_add(magnitude), entry.pool.checked_add(magnitude)) {
                (Some(global_total), Some(pool)) => (global_total, pool),
                _ => return Reply::code(ResultCode::Overflow),
            }
        } else {
            if entry.pool < magnitude {
                return Reply::code(ResultCode::SoldOut);
            }
            (entry.global_total - magnitude, entry.pool - magnitude)
        };
        if !self.key_room(1) {
            return Reply::code(ResultCode::Overloaded);
        }
        self.sku_dirty.mark(sku_index);
        let entry = &mut self.skus[sku_index as usize];
        entry.global_total = global_total;
        entry.pool = pool;
        let sku = entry.id;
        self.record_key(
            ADMIN_ACCOUNT,
            key,
            KeyRecord {
                fingerprint: fingerprint_value,
                reservation: sku,
                op: KeyOp::AdjustStock,
                result: ResultCode::Ok as u16,
            },
        );
        self.feed_line(sku_index);
        Reply::with_body(ResultCode::Ok, ReplyBody::Sku(self.sku_view(sku_index)))
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
