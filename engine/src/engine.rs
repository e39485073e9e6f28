//! The single-shard reservation state machine.
//!
//! One [`Engine`] owns every table of one shard. [`Engine::execute`] applies one request at
//! a time at an injected `now_ms`; timers due by then (hold expiries, wait deadlines) are
//! processed first, so every request sees a state in which nothing overdue is still live.
//! Deferred answers to parked RESERVEs are queued as [`Event`]s for the caller to drain.
//!
//! Stock accounting keeps the shard's *bucket* (`available`: units this shard may hand out)
//! apart from the SKU's totals, so that the multi-shard runtime can split a SKU's units
//! across shards without changing the reservation logic.

use crate::config::Config;
use crate::hash::{mix64, StateHasher};
use crate::quota::{Envelope, Message, Placement};
use crate::table::FixedMap;
use crate::types::*;
use crate::wheel::{TimerWheel, NIL};

/// Clock readings must stay below this (see `advance`).
pub const NOW_MS_LIMIT: u64 = 1 << 60;

/// The admin namespace of request keys (ADJUST_STOCK): account 0 is never a buyer.
pub(crate) const ADMIN_ACCOUNT: AccountId = 0;

/// Which operation recorded a request key.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum KeyOp {
    #[default]
    Reserve = 1,
    Confirm = 2,
    Cancel = 3,
    Deposit = 4,
    Withdraw = 5,
    AdjustStock = 6,
    /// Recorded by a CANCEL that named a reserve key nobody had used: the late RESERVE with
    /// this key is refused (TCC anti-hanging).
    Tombstone = 7,
}

/// What a retained request key remembers: enough to replay the outcome and to detect a
/// reuse with different parameters.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KeyRecord {
    /// A hash of the operation and every parameter except account and key.
    pub(crate) fingerprint: u64,
    /// The reservation the request created or acted on (0 = none).
    pub(crate) reservation: ReservationId,
    pub(crate) op: KeyOp,
    /// The outcome to replay. For a parked RESERVE it moves from WAITING to OK,
    /// WAIT_TIMEOUT or ALREADY_CANCELLED when the wait ends.
    pub(crate) result: u16,
}

#[derive(Clone, Copy, Debug)]
struct KeyFifoEntry {
    account: AccountId,
    key: RequestKey,
    recorded_ms: u64,
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sku {
    pub(crate) id: SkuId,
    pub(crate) price: u64,
    pub(crate) per_user_limit: u32,
    pub(crate) hold_ms: u32,
    pub(crate) start_ms: u64,
    pub(crate) end_ms: u64,
    /// Units of this SKU in existence (changed only by PUT_SKU creation and ADJUST_STOCK).
    pub(crate) total: u64,
    /// This shard's bucket: units it may hand out now.
    pub(crate) available: u64,
    pub(crate) reserved: u64,
    pub(crate) sold: u64,
    pub(crate) waiters: u32,
    pub(crate) waitlist_head: u32,
    pub(crate) waitlist_tail: u32,
    pub(crate) paused: bool,
    // ---- Multi-shard quota (see quota.rs); with one shard these stay at their defaults.
    /// The coordinator reclaimed this bucket and has not re-opened it: units released here
    /// go back to the pool, and a RESERVE the bucket cannot serve asks the coordinator.
    pub(crate) drained: bool,
    /// The coordinator said nothing is left anywhere: a RESERVE without a wait is refused
    /// here, with no hop.
    pub(crate) dry: bool,
    /// Coordinator only: unallocated units.
    pub(crate) pool: u64,
    /// Coordinator only: units of this SKU in existence across all shards.
    pub(crate) global_total: u64,
    /// Coordinator only: Surrender answers still expected by the current reclaim round
    /// (0 = no round running).
    pub(crate) reclaim_pending: u32,
    /// Coordinator only: a refill chunk went out since the last reclaim round, so some
    /// bucket may hold units.
    pub(crate) buckets_may_hold: bool,
    /// Coordinator only: every shard was told the SKU is dry.
    pub(crate) dry_announced: bool,
    /// Coordinator only: queued proxies of RESERVEs without a wait.
    pub(crate) no_wait_waiters: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Wallet {
    pub(crate) available: u64,
    pub(crate) held: u64,
    pub(crate) spent: u64,
    pub(crate) deposited: u64,
    pub(crate) withdrawn: u64,
}

/// Internal slot flag: on a home shard, a WAITING reservation whose place in line is a proxy
/// at the SKU's coordinator (multi-shard only). Never shown on the wire.
pub(crate) const SLOT_FLAG_REMOTE: u32 = 1 << 2;
/// Internal slot flag: on a coordinator, a proxy of another (or its own) shard's waiter. Its
/// `amount` holds the home reservation id and `hold_ms` the home shard.
pub(crate) const SLOT_FLAG_PROXY: u32 = 1 << 3;
const _: () = assert!((SLOT_FLAG_REMOTE | SLOT_FLAG_PROXY) & RESERVE_FLAGS_KNOWN == 0);

const STATE_SHIFT: u32 = 24;
const FLAGS_SHIFT: u32 = 28;
const GENERATION_MASK: u32 = (1 << STATE_SHIFT) - 1;

/// One reservation slot: 56 bytes here plus 8 bytes of timer links in the wheel = 64.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Slot {
    pub(crate) account: AccountId,
    pub(crate) key: RequestKey,
    pub(crate) amount: u64,
    /// Expiry while held (and after); wait deadline while waiting.
    pub(crate) deadline_ms: u64,
    pub(crate) sku_index: u32,
    pub(crate) quantity: u32,
    /// Hold time to apply when a waiter is matched.
    pub(crate) hold_ms: u32,
    /// generation (24 bits) | state (4 bits) | reserve flags (4 bits).
    packed: u32,
    /// Waitlist links while waiting; `wait_next` threads the free list while free.
    pub(crate) wait_prev: u32,
    pub(crate) wait_next: u32,
}

const _: () = assert!(core::mem::size_of::<Slot>() == 56);

impl Slot {
    #[inline]
    pub(crate) fn generation(&self) -> u32 {
        self.packed & GENERATION_MASK
    }

    #[inline]
    pub(crate) fn state(&self) -> ReservationState {
        // Only values written by `set_state` are ever stored.
        ReservationState::from_u8(((self.packed >> STATE_SHIFT) & 0xF) as u8)
            .unwrap_or(ReservationState::None)
    }

    #[inline]
    pub(crate) fn flags(&self) -> u32 {
        self.packed >> FLAGS_SHIFT
    }

    #[inline]
    pub(crate) fn set_state(&mut self, state: ReservationState) {
        self.packed = (self.packed & !(0xF << STATE_SHIFT)) | ((state as u32) << STATE_SHIFT);
    }

    fn set_generation_and_flags(&mut self, generation: u32, flags: u32) {
        debug_assert!(generation != 0 && generation <= GENERATION_MASK);
        debug_assert!(flags <= 0xF);
        self.packed = generation | (flags << FLAGS_SHIFT);
    }

    pub(crate) fn add_flags(&mut self, flags: u32) {
        debug_assert!(flags <= 0xF);
        self.packed |= flags << FLAGS_SHIFT;
    }

    #[inline]
    pub(crate) fn is_proxy(&self) -> bool {
        self.flags() & SLOT_FLAG_PROXY != 0
    }

    #[inline]
    pub(crate) fn is_remote(&self) -> bool {
        self.flags() & SLOT_FLAG_REMOTE != 0
    }
}

/// Running totals, for metrics and benchmarks. Not part of the state hash.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// Replies by result code (indexed by the code's value).
    pub results: [u64; ResultCode::ALL.len()],
    pub holds_expired: u64,
    pub waiters_matched: u64,
    pub waiters_timed_out: u64,
    /// Multi-shard: RESERVEs sent to the coordinator, and reclaim rounds started.
    pub acquires_sent: u64,
    pub reclaim_rounds: u64,
    pub keys_evicted: u64,
    pub reservations_retired: u64,
}

/// A single-shard reservation engine. See the crate documentation for its invariants.
#[derive(Debug)]
pub struct Engine {
    pub(crate) config: Config,
    pub(crate) now_ms: u64,
    pub(crate) sku_index: FixedMap<SkuId, u32>,
    pub(crate) skus: Vec<Sku>,
    pub(crate) wallets: FixedMap<AccountId, Wallet>,
    pub(crate) slots: Box<[Slot]>,
    pub(crate) wheel: TimerWheel,
    pub(crate) free_head: u32,
    pub(crate) live_count: u32,
    pub(crate) keys: FixedMap<(AccountId, RequestKey), KeyRecord>,
    key_fifo: std::collections::VecDeque<KeyFifoEntry>,
    /// Units held + sold + waiting per (account, SKU) for SKUs with a per-user limit.
    pub(crate) limits: FixedMap<(AccountId, SkuId), u32>,
    pub(crate) events: Vec<Event>,
    pub(crate) counters: Counters,
    pub(crate) placement: Placement,
    /// Messages to other shards (and to itself), drained by the caller after every call.
    pub(crate) outbox: Vec<Envelope>,
    /// SKUs whose levels changed since the runtime last published them (observational:
    /// not part of the state hash).
    pub(crate) sku_dirty: DirtySet,
}

/// A set of SKU indexes with O(1) insert and a drain in insertion order, bounded by
/// `sku_max` (each index is in the list at most once).
#[derive(Debug)]
pub(crate) struct DirtySet {
    flags: Vec<bool>,
    list: Vec<u32>,
}

impl DirtySet {
    fn new(len_max: u32) -> DirtySet {
        DirtySet {
            flags: vec![false; len_max as usize],
            list: Vec::with_capacity(len_max as usize),
        }
    }

    #[inline]
    pub(crate) fn mark(&mut self, index: u32) {
        let flag = &mut self.flags[index as usize];
        if !*flag {
            *flag = true;
            self.list.push(index);
        }
        debug_assert!(self.list.len() <= self.flags.len());
    }
}

/// The levels of one SKU on one shard, as the runtime publishes them for other cores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkuLevels {
    pub sku: SkuId,
    /// This shard's bucket: units it may hand out now.
    pub bucket: u64,
    pub reserved: u64,
    pub sold: u64,
    /// Coordinator only (0 elsewhere): unallocated units, global total, waiters in line.
    pub pool: u64,
    pub global_total: u64,
    pub waiters: u32,
}

/// What a reservation lookup by [`Target`] found.
enum Resolved {
    Slot(u32),
    /// The target key was tombstoned by an earlier CANCEL.
    Tombstone,
    Unknown,
}

impl Engine {
    /// Allocates every table. Refuses an invalid configuration.
    pub fn new(config: Config) -> Result<Engine, crate::ConfigError> {
        Engine::new_shard(config, Placement::SINGLE)
    }

    /// An engine that is shard `placement.shard` of `placement.shard_count` (see quota.rs).
    pub fn new_shard(config: Config, placement: Placement) -> Result<Engine, crate::ConfigError> {
        config.validate()?;
        if placement.shard_count == 0
            || placement.shard_count > Placement::SHARD_COUNT_MAX
            || placement.shard >= placement.shard_count
        {
            return Err(crate::ConfigError {
                field: "placement",
                reason: "shard must be below shard_count, and shard_count in 1..=64",
            });
        }
        let reservation_max = config.reservation_max;
        let mut slots = vec![Slot::default(); reservation_max as usize].into_boxed_slice();
        // Free list: 0 -> 1 -> ... -> max-1, so slots are handed out in index order.
        for (index, slot) in slots.iter_mut().enumerate() {
            let next = index as u32 + 1;
            slot.wait_next = if next == reservation_max { NIL } else { next };
            slot.wait_prev = NIL;
        }
        Ok(Engine {
            config,
            now_ms: 0,
            sku_index: FixedMap::with_len_max(config.sku_max as usize),
            skus: Vec::with_capacity(config.sku_max as usize),
            wallets: FixedMap::with_len_max(config.account_max as usize),
            slots,
            wheel: TimerWheel::new(reservation_max),
            free_head: 0,
            live_count: 0,
            keys: FixedMap::with_len_max(config.request_key_max as usize),
            key_fifo: std::collections::VecDeque::with_capacity(config.request_key_max as usize),
            limits: FixedMap::with_len_max(config.limit_entry_max as usize),
            events: Vec::with_capacity(reservation_max as usize),
            counters: Counters::default(),
            placement,
            outbox: Vec::with_capacity(
                reservation_max as usize + 4 * placement.shard_count as usize,
            ),
            sku_dirty: DirtySet::new(config.sku_max),
        })
    }

    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// Calls `publish` with the levels of every SKU that changed since the last call (each
    /// once), and forgets them. The runtime publishes these for other cores to read.
    pub fn drain_changed_skus(&mut self, mut publish: impl FnMut(SkuLevels)) {
        let dirty = &mut self.sku_dirty;
        for index in dirty.list.drain(..) {
            dirty.flags[index as usize] = false;
            let sku = &self.skus[index as usize];
            let coordinator = self.placement.coordinator_of(sku.id) == self.placement.shard;
            publish(SkuLevels {
                sku: sku.id,
                bucket: sku.available,
                reserved: sku.reserved,
                sold: sku.sold,
                pool: if coordinator { sku.pool } else { 0 },
                global_total: if coordinator { sku.global_total } else { 0 },
                waiters: sku.waiters,
            });
        }
    }

    /// This shard's view of a SKU (its bucket and counts; the terms every shard shares).
    pub fn sku(&self, sku: SkuId) -> Option<SkuView> {
        self.sku_index.get(&sku).map(|index| self.sku_view(*index))
    }

    /// Messages for other shards since the last drain (multi-shard only). The caller
    /// drains after every `execute` / `tick` / `handle`, which bounds the queue by what one
    /// call can emit (a broadcast, or one answer per waiter of a line).
    pub fn drain_messages(&mut self) -> std::vec::Drain<'_, Envelope> {
        self.outbox.drain(..)
    }

    #[inline]
    pub(crate) fn sharded(&self) -> bool {
        self.placement.shard_count > 1
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The engine's clock: the largest `now_ms` it has been given.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Reservations waiting or held.
    pub fn live_reservations(&self) -> u32 {
        self.live_count
    }

    /// Request keys (and tombstones) retained.
    pub fn retained_keys(&self) -> usize {
        self.keys.len()
    }

    /// Bytes allocated by the tables, by table, for the memory report:
    /// (skus, wallets, reservations, request keys, limit counters).
    pub fn table_bytes(&self) -> [(&'static str, usize); 5] {
        let sku_bytes =
            self.sku_index.bytes_allocated() + self.skus.capacity() * core::mem::size_of::<Sku>();
        let reservation_bytes =
            self.slots.len() * core::mem::size_of::<Slot>() + self.wheel.bytes_allocated();
        let key_bytes = self.keys.bytes_allocated()
            + self.key_fifo.capacity() * core::mem::size_of::<KeyFifoEntry>();
        [
            ("sku", sku_bytes),
            ("wallet", self.wallets.bytes_allocated()),
            ("reservation", reservation_bytes),
            ("request_key", key_bytes),
            ("limit_counter", self.limits.bytes_allocated()),
        ]
    }

    /// Deferred answers to parked RESERVEs since the last drain. The caller drains after
    /// every `execute` / `tick` (the runtime does), which bounds the queue by the number of
    /// waiters one call can resolve.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// Advances the clock to `now_ms` (a smaller value is ignored: the engine's clock never
    /// goes back) and processes every timer due by then.
    pub fn tick(&mut self, now_ms: u64) {
        self.advance(now_ms);
    }

    /// A lower bound on the clock reading at which the next timer (hold expiry, wait
    /// deadline) falls due, if any timer is armed: an idle runtime sleeps until then. Never
    /// later than the real next deadline; possibly earlier (a spurious early wake-up).
    pub fn next_timer_ms(&self) -> Option<u64> {
        self.wheel.next_deadline_lower_bound()
    }

    /// Applies one request at `now_ms`.
    pub fn execute(&mut self, now_ms: u64, request: &Request) -> Reply {
        self.advance(now_ms);
        let reply = match *request {
            Request::Ping => Reply::code(ResultCode::Ok),
            Request::Reserve(reserve) => self.reserve(&reserve),
            Request::Confirm { account, target, key } => self.confirm(account, target, key),
            Request::Cancel { account, target, key } => self.cancel(account, target, key),
            Request::QuerySku { sku } => self.query_sku(sku),
            Request::QueryAccount { account } => self.query_account(account),
            Request::QueryReservation { account, target } => {
                self.query_reservation(account, target)
            }
            Request::PutSku(spec) => self.put_sku(&spec),
            Request::AdjustStock { sku, delta, key } => self.adjust_stock(sku, delta, key),
            Request::Pause { sku } => self.set_paused(sku, true),
            Request::Resume { sku } => self.set_paused(sku, false),
            Request::Deposit { account, amount, key } => self.deposit(account, amount, key),
            Request::Withdraw { account, amount, key } => self.withdraw(account, amount, key),
        };
        self.counters.results[reply.result as usize] += 1;
        reply
    }

    /// Applies `requests` in order at `now_ms`, appending one reply per request to `replies`.
    /// Exactly equivalent to calling [`Engine::execute`] for each, but first starts the
    /// memory loads of every request's request-key entry and reservation slot, so a batch
    /// pays roughly one memory latency instead of one per request. The runtime hands the
    /// engine what one loop pass received, so batches come for free.
    pub fn execute_batch(&mut self, now_ms: u64, requests: &[Request], replies: &mut Vec<Reply>) {
        for request in requests {
            self.prefetch(request);
        }
        for request in requests {
            let reply = self.execute(now_ms, request);
            replies.push(reply);
        }
    }

    /// Starts the memory loads a later `execute(request)` will need (its request-key entry
    /// and reservation slot), so that a batch of requests overlaps its cache misses. Changes
    /// nothing; the runtime calls it for every request of a ring batch before applying them.
    pub fn prefetch(&self, request: &Request) {
        match *request {
            Request::Reserve(Reserve { account, key, .. }) => self.keys.prefetch(&(account, key)),
            Request::Confirm { account, target, key }
            | Request::Cancel { account, target, key } => {
                self.keys.prefetch(&(account, key));
                match target {
                    Target::Reservation(reservation) => {
                        let index = (reservation & 0xFFFF_FFFF) as usize;
                        if let Some(slot) = self.slots.get(index) {
                            core::hint::black_box(slot.account);
                        }
                    }
                    Target::ReserveKey(reserve_key) => self.keys.prefetch(&(account, reserve_key)),
                }
            }
            _ => {}
        }
    }

    // ----------------------------------------------------------------------------------
    // Time.

    fn advance(&mut self, now_ms: u64) {
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

    fn expire(&mut self, index: u32) {
        let slot = self.slots[index as usize];
        assert_eq!(slot.state(), ReservationState::Held);
        assert!(slot.deadline_ms <= self.now_ms);
        self.release_held(index);
        self.finish(index, ReservationState::Expired);
        self.counters.holds_expired += 1;
        self.units_returned(slot.sku_index);
    }

    fn time_out_waiter(&mut self, index: u32) {
        let slot = self.slots[index as usize];
        assert_eq!(slot.state(), ReservationState::Waiting);
        assert!(slot.deadline_ms <= self.now_ms);
        self.withdraw_waiter(index);
        self.finish(index, ReservationState::WaitTimedOut);
        self.counters.waiters_timed_out += 1;
        self.resolve_parked(index, ResultCode::WaitTimeout);
    }

    // ----------------------------------------------------------------------------------
    // RESERVE.

    fn reserve(&mut self, reserve: &Reserve) -> Reply {
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
        let generation = self.slots[index as usize].generation();
        let reservation = reservation_id(generation, index);
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
            slot.quantity = reserve.quantity;
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

    fn effective_hold_ms(&self, requested_ms: u32, sku: &Sku) -> u32 {
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

    fn park(&mut self, index: u32, wait_ms: u32) {
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
    fn withdraw_waiter(&mut self, index: u32) {
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

    // ----------------------------------------------------------------------------------
    // CONFIRM and CANCEL.

    fn confirm(&mut self, account: AccountId, target: Target, key: RequestKey) -> Reply {
        if !valid_target_request(account, target, key) {
            return Reply::code(ResultCode::BadRequest);
        }
        let fingerprint = fingerprint(KeyOp::Confirm, &target_words(target));
        if let Some(record) = self.keys.get(&(account, key)).copied() {
            return self.replay(account, &record, KeyOp::Confirm, fingerprint);
        }
        let index = match self.resolve(account, target) {
            Resolved::Slot(index) => index,
            Resolved::Tombstone => return Reply::code(ResultCode::AlreadyCancelled),
            Resolved::Unknown => return Reply::code(ResultCode::UnknownReservation),
        };
        let slot = self.slots[index as usize];
        match slot.state() {
            ReservationState::Held => {}
            state => return self.refusal_for(state, index),
        }
        if !self.key_room(1) {
            return Reply::code(ResultCode::Overloaded);
        }
        debug_assert!(slot.deadline_ms > self.now_ms, "overdue holds were expired");
        self.wheel.unlink(index);
        let quantity = u64::from(slot.quantity);
        self.sku_dirty.mark(slot.sku_index);
        let sku = &mut self.skus[slot.sku_index as usize];
        sku.reserved -= quantity;
        sku.sold += quantity;
        if slot.amount > 0 {
            let wallet = self.wallets.get_mut(&slot.account).expect("funds are held");
            wallet.held -= slot.amount;
            wallet.spent += slot.amount;
        }
        self.finish(index, ReservationState::Confirmed);
        let reservation = reservation_id(slot.generation(), index);
        self.record_key(
            account,
            key,
            KeyRecord {
                fingerprint,
                reservation,
                op: KeyOp::Confirm,
                result: ResultCode::Ok as u16,
            },
        );
        Reply::with_body(ResultCode::Ok, ReplyBody::Reservation(self.view(index)))
    }

    fn cancel(&mut self, account: AccountId, target: Target, key: RequestKey) -> Reply {
        if !valid_target_request(account, target, key) {
            return Reply::code(ResultCode::BadRequest);
        }
        let fingerprint = fingerprint(KeyOp::Cancel, &target_words(target));
        if let Some(record) = self.keys.get(&(account, key)).copied() {
            return self.replay(account, &record, KeyOp::Cancel, fingerprint);
        }
        let index = match self.resolve(account, target) {
            Resolved::Slot(index) => index,
            Resolved::Tombstone => {
                // Already rolled back (empty): a second empty rollback succeeds too.
                if !self.key_room(1) {
                    return Reply::code(ResultCode::Overloaded);
                }
                self.record_empty_cancel(account, key, fingerprint);
                return Reply::code(ResultCode::Ok);
            }
            Resolved::Unknown => {
                let Target::ReserveKey(reserve_key) = target else {
                    return Reply::code(ResultCode::UnknownReservation);
                };
                if self.keys.get(&(account, reserve_key)).is_some() {
                    // The reserve key is known but names no reservation any more (retired).
                    return Reply::code(ResultCode::UnknownReservation);
                }
                // Cancel before reserve: tombstone the reserve key so the late RESERVE is
                // refused, and succeed as an empty rollback.
                if !self.key_room(2) {
                    return Reply::code(ResultCode::Overloaded);
                }
                self.record_key(
                    account,
                    reserve_key,
                    KeyRecord {
                        fingerprint: 0,
                        reservation: 0,
                        op: KeyOp::Tombstone,
                        result: ResultCode::Ok as u16,
                    },
                );
                self.record_empty_cancel(account, key, fingerprint);
                return Reply::code(ResultCode::Ok);
            }
        };
        let slot = self.slots[index as usize];
        let was_waiting = match slot.state() {
            ReservationState::Held => false,
            ReservationState::Waiting => true,
            state => return self.refusal_for(state, index),
        };
        if !self.key_room(1) {
            return Reply::code(ResultCode::Overloaded);
        }
        if was_waiting && slot.is_remote() {
            self.return_funds_and_limit(index);
            self.finish(index, ReservationState::Cancelled);
            self.resolve_parked(index, ResultCode::AlreadyCancelled);
            let sku = self.skus[slot.sku_index as usize].id;
            let reservation = reservation_id(slot.generation(), index);
            self.send(self.placement.coordinator_of(sku), Message::Withdraw { sku, reservation });
        } else if was_waiting {
            self.withdraw_waiter(index);
            self.finish(index, ReservationState::Cancelled);
            self.resolve_parked(index, ResultCode::AlreadyCancelled);
        } else {
            self.wheel.unlink(index);
            self.release_held(index);
            self.finish(index, ReservationState::Cancelled);
        }
        let reservation = reservation_id(slot.generation(), index);
        self.record_key(
            account,
            key,
            KeyRecord {
                fingerprint,
                reservation,
                op: KeyOp::Cancel,
                result: ResultCode::Ok as u16,
            },
        );
        let reply = Reply::with_body(ResultCode::Ok, ReplyBody::Reservation(self.view(index)));
        // Released units (or a removed head of the line) may let waiters through.
        self.units_returned(slot.sku_index);
        reply
    }

    fn record_empty_cancel(&mut self, account: AccountId, key: RequestKey, fingerprint: u64) {
        self.record_key(
            account,
            key,
            KeyRecord {
                fingerprint,
                reservation: 0,
                op: KeyOp::Cancel,
                result: ResultCode::Ok as u16,
            },
        );
    }

    /// The refusal for CONFIRM or CANCEL of a reservation that is not (only) held.
    fn refusal_for(&self, state: ReservationState, index: u32) -> Reply {
        let result = match state {
            ReservationState::Waiting => ResultCode::Waiting,
            ReservationState::Confirmed => ResultCode::AlreadyConfirmed,
            ReservationState::Cancelled => ResultCode::AlreadyCancelled,
            ReservationState::Expired => ResultCode::Expired,
            ReservationState::WaitTimedOut => ResultCode::WaitTimeout,
            ReservationState::Held | ReservationState::None => {
                unreachable!("callers handle held; resolved slots are never free")
            }
        };
        Reply::with_body(result, ReplyBody::Reservation(self.view(index)))
    }

    /// Held units go back to the bucket, funds back to the wallet, the limit count down.
    fn release_held(&mut self, index: u32) {
        let slot = self.slots[index as usize];
        let quantity = u64::from(slot.quantity);
        self.sku_dirty.mark(slot.sku_index);
        let sku = &mut self.skus[slot.sku_index as usize];
        sku.reserved -= quantity;
        sku.available += quantity;
        self.return_funds_and_limit(index);
    }

    pub(crate) fn return_funds_and_limit(&mut self, index: u32) {
        let slot = self.slots[index as usize];
        if slot.amount > 0 {
            let wallet = self.wallets.get_mut(&slot.account).expect("funds are held");
            wallet.held -= slot.amount;
            wallet.available += slot.amount;
        }
        let sku = self.skus[slot.sku_index as usize];
        if sku.per_user_limit != 0 {
            let limit_key = (slot.account, sku.id);
            let used = self.limits.get_mut(&limit_key).expect("live units are counted");
            *used -= slot.quantity;
            if *used == 0 {
                self.limits.remove(&limit_key);
            }
        }
    }

    // ----------------------------------------------------------------------------------
    // Reservation slots.

    pub(crate) fn slot_room(&self) -> bool {
        self.free_head != NIL || self.wheel.oldest_finished().is_some()
    }

    /// A free slot with a fresh generation, retiring the oldest finished reservation when
    /// no slot is free. The caller checked `slot_room`.
    pub(crate) fn allocate_slot(&mut self, flags: u32) -> u32 {
        let index = if self.free_head != NIL {
            let index = self.free_head;
            self.free_head = self.slots[index as usize].wait_next;
            index
        } else {
            let index = self.wheel.oldest_finished().expect("slot room was checked");
            self.wheel.unlink(index);
            self.counters.reservations_retired += 1;
            index
        };
        let slot = &mut self.slots[index as usize];
        let mut generation = (slot.generation() + 1) & GENERATION_MASK;
        if generation == 0 {
            generation = 1;
        }
        *slot = Slot::default();
        slot.set_generation_and_flags(generation, flags);
        self.live_count += 1;
        index
    }

    /// A live reservation reaches a terminal state and joins the finished FIFO.
    pub(crate) fn finish(&mut self, index: u32, state: ReservationState) {
        assert!(state.is_terminal());
        let slot = &mut self.slots[index as usize];
        assert!(!slot.state().is_terminal());
        slot.set_state(state);
        self.live_count -= 1;
        self.wheel.push_finished(index);
    }

    fn resolve(&self, account: AccountId, target: Target) -> Resolved {
        let reservation = match target {
            Target::Reservation(reservation) => reservation,
            Target::ReserveKey(reserve_key) => match self.keys.get(&(account, reserve_key)) {
                None => return Resolved::Unknown,
                Some(record) if record.op == KeyOp::Tombstone => return Resolved::Tombstone,
                Some(record) if record.op == KeyOp::Reserve => record.reservation,
                Some(_) => return Resolved::Unknown,
            },
        };
        match self.slot_of(reservation) {
            Some(index) if self.slots[index as usize].account == account => Resolved::Slot(index),
            _ => Resolved::Unknown,
        }
    }

    /// The slot of a reservation id, if the id is current (not retired, not reused).
    pub(crate) fn slot_of(&self, reservation: ReservationId) -> Option<u32> {
        let index = (reservation & 0xFFFF_FFFF) as u32;
        let generation = (reservation >> 32) as u32;
        let slot = self.slots.get(index as usize)?;
        let current = generation != 0
            && slot.generation() == generation
            && slot.state() != ReservationState::None;
        current.then_some(index)
    }

    pub(crate) fn view(&self, index: u32) -> ReservationView {
        let slot = &self.slots[index as usize];
        ReservationView {
            reservation: reservation_id(slot.generation(), index),
            account: slot.account,
            sku: self.skus[slot.sku_index as usize].id,
            quantity: slot.quantity,
            flags: slot.flags() & RESERVE_FLAGS_KNOWN,
            amount: slot.amount,
            deadline_ms: slot.deadline_ms,
            state: slot.state(),
        }
    }

    // ----------------------------------------------------------------------------------
    // Request keys.

    /// Whether `count` new keys fit, counting keys old enough to be forgotten.
    pub(crate) fn key_room(&self, count: usize) -> bool {
        let free = self.config.request_key_max as usize - self.keys.len();
        if free >= count {
            return true;
        }
        let needed = count - free;
        self.key_fifo.len() >= needed
            && self.key_fifo[needed - 1].recorded_ms + self.config.request_key_retention_ms
                <= self.now_ms
    }

    /// Records a new key, forgetting the oldest keys past retention to make room. The
    /// caller checked `key_room`.
    pub(crate) fn record_key(&mut self, account: AccountId, key: RequestKey, record: KeyRecord) {
        debug_assert!(self.keys.get(&(account, key)).is_none());
        if self.keys.is_full() {
            let oldest = self.key_fifo.pop_front().expect("a full table has a FIFO entry");
            assert!(oldest.recorded_ms + self.config.request_key_retention_ms <= self.now_ms);
            self.keys.remove(&(oldest.account, oldest.key)).expect("FIFO mirrors the table");
            self.counters.keys_evicted += 1;
        }
        self.keys.insert((account, key), record).expect("key room was checked");
        self.key_fifo.push_back(KeyFifoEntry { account, key, recorded_ms: self.now_ms });
        debug_assert_eq!(self.keys.len(), self.key_fifo.len());
    }

    /// The answer to a request whose key is already recorded: DUPLICATE with the original
    /// outcome when the parameters match, KEY_REUSED otherwise.
    pub(crate) fn replay(
        &self,
        account: AccountId,
        record: &KeyRecord,
        op: KeyOp,
        fingerprint: u64,
    ) -> Reply {
        if record.op != op || record.fingerprint != fingerprint {
            return Reply::code(ResultCode::KeyReused);
        }
        let original = ResultCode::from_u16(record.result).expect("recorded codes are valid");
        let body = match op {
            KeyOp::Reserve | KeyOp::Confirm | KeyOp::Cancel => self
                .slot_of(record.reservation)
                .map_or(ReplyBody::None, |index| ReplyBody::Reservation(self.view(index))),
            KeyOp::Deposit | KeyOp::Withdraw => ReplyBody::Account(self.account_view(account)),
            KeyOp::AdjustStock => self
                .sku_index
                .get(&record.reservation)
                .map_or(ReplyBody::None, |index| ReplyBody::Sku(self.sku_view(*index))),
            KeyOp::Tombstone => ReplyBody::None,
        };
        Reply { result: ResultCode::Duplicate, original, body }
    }

    // ----------------------------------------------------------------------------------
    // Queries.

    fn query_sku(&self, sku: SkuId) -> Reply {
        if sku == 0 {
            return Reply::code(ResultCode::BadRequest);
        }
        match self.sku_index.get(&sku) {
            Some(index) => Reply::with_body(ResultCode::Ok, ReplyBody::Sku(self.sku_view(*index))),
            None => Reply::code(ResultCode::UnknownSku),
        }
    }

    fn query_account(&self, account: AccountId) -> Reply {
        if account == ADMIN_ACCOUNT {
            return Reply::code(ResultCode::BadRequest);
        }
        Reply::with_body(ResultCode::Ok, ReplyBody::Account(self.account_view(account)))
    }

    fn query_reservation(&self, account: AccountId, target: Target) -> Reply {
        let target_value = match target {
            Target::Reservation(value) | Target::ReserveKey(value) => value,
        };
        if account == ADMIN_ACCOUNT || target_value == 0 {
            return Reply::code(ResultCode::BadRequest);
        }
        match self.resolve(account, target) {
            Resolved::Slot(index) => {
                Reply::with_body(ResultCode::Ok, ReplyBody::Reservation(self.view(index)))
            }
            Resolved::Tombstone => Reply::code(ResultCode::AlreadyCancelled),
            Resolved::Unknown => Reply::code(ResultCode::UnknownReservation),
        }
    }

    pub(crate) fn sku_view(&self, index: u32) -> SkuView {
        let sku = &self.skus[index as usize];
        SkuView {
            sku: sku.id,
            total: sku.total,
            available: sku.available,
            reserved: sku.reserved,
            sold: sku.sold,
            price: sku.price,
            per_user_limit: sku.per_user_limit,
            hold_ms: sku.hold_ms,
            start_ms: sku.start_ms,
            end_ms: sku.end_ms,
            waiters: sku.waiters,
            paused: sku.paused,
        }
    }

    pub(crate) fn account_view(&self, account: AccountId) -> AccountView {
        let wallet = self.wallets.get(&account).copied().unwrap_or_default();
        AccountView {
            account,
            available: wallet.available,
            held: wallet.held,
            spent: wallet.spent,
            deposited: wallet.deposited,
            withdrawn: wallet.withdrawn,
        }
    }

    // ----------------------------------------------------------------------------------
    // Admin.

    fn put_sku(&mut self, spec: &SkuSpec) -> Reply {
        let valid = spec.sku != 0
            && spec.hold_ms <= self.config.hold_ms_max
            && (spec.end_ms == 0 || spec.end_ms > spec.start_ms);
        if !valid {
            return Reply::code(ResultCode::BadRequest);
        }
        if self.sharded() {
            assert_eq!(self.placement.coordinator_of(spec.sku), self.placement.shard);
        }
        if let Some(index) = self.sku_index.get(&spec.sku).copied() {
            if self.sharded() {
                let known = self.skus[index as usize];
                if known.per_user_limit == spec.per_user_limit {
                    self.broadcast(Message::Define { spec: *spec });
                }
            }
            self.sku_dirty.mark(index);
            let sku = &mut self.skus[index as usize];
            if sku.per_user_limit != spec.per_user_limit {
                // Counters exist only for limited SKUs; changing the limit mid-sale would
                // make old purchases invisible to it.
                return Reply::code(ResultCode::BadRequest);
            }
            sku.price = spec.price;
            sku.hold_ms = spec.hold_ms;
            sku.start_ms = spec.start_ms;
            sku.end_ms = spec.end_ms;
            return Reply::with_body(ResultCode::Ok, ReplyBody::Sku(self.sku_view(index)));
        }
        if self.sku_index.is_full() {
            return Reply::code(ResultCode::Overloaded);
        }
        // With shards, the stock starts in the coordinator's pool and every bucket is closed
        // until the coordinator opens it with a refill.
        let local_units = if self.sharded() { 0 } else { spec.stock_total };
        let index = self.define_sku(spec, local_units);
        if self.sharded() {
            self.sku_dirty.mark(index);
            let sku = &mut self.skus[index as usize];
            sku.pool = spec.stock_total;
            sku.global_total = spec.stock_total;
            self.broadcast(Message::Define { spec: *spec });
            // Announces a SKU created with no stock as dry.
            self.feed_line(index);
        }
        Reply::with_body(ResultCode::Ok, ReplyBody::Sku(self.sku_view(index)))
    }

    /// Creates a SKU entry holding `local_units` in this shard's bucket. The caller checked
    /// that the table has room.
    pub(crate) fn define_sku(&mut self, spec: &SkuSpec, local_units: u64) -> u32 {
        let index = self.skus.len() as u32;
        self.sku_dirty.mark(index);
        self.skus.push(Sku {
            id: spec.sku,
            price: spec.price,
            per_user_limit: spec.per_user_limit,
            hold_ms: spec.hold_ms,
            start_ms: spec.start_ms,
            end_ms: spec.end_ms,
            total: local_units,
            available: local_units,
            reserved: 0,
            sold: 0,
            waiters: 0,
            waitlist_head: NIL,
            waitlist_tail: NIL,
            paused: false,
            drained: self.sharded(),
            dry: false,
            pool: 0,
            global_total: 0,
            reclaim_pending: 0,
            buckets_may_hold: false,
            dry_announced: false,
            no_wait_waiters: 0,
        });
        self.sku_index.insert(spec.sku, index).expect("room was checked");
        index
    }

    pub(crate) fn adjust_stock(&mut self, sku: SkuId, delta: i64, key: RequestKey) -> Reply {
        if sku == 0 || key == 0 || delta == 0 {
            return Reply::code(ResultCode::BadRequest);
        }
        let fingerprint = fingerprint(KeyOp::AdjustStock, &[sku, delta as u64]);
        if let Some(record) = self.keys.get(&(ADMIN_ACCOUNT, key)).copied() {
            return self.replay(ADMIN_ACCOUNT, &record, KeyOp::AdjustStock, fingerprint);
        }
        let Some(index) = self.sku_index.get(&sku).copied() else {
            return Reply::code(ResultCode::UnknownSku);
        };
        if self.sharded() {
            assert_eq!(self.placement.coordinator_of(sku), self.placement.shard);
            return self.adjust_pool(index, delta, key, fingerprint);
        }
        let current = self.skus[index as usize];
        let magnitude = delta.unsigned_abs();
        let (total, available) = if delta > 0 {
            match (current.total.checked_add(magnitude), current.available.checked_add(magnitude)) {
                (Some(total), Some(available)) => (total, available),
                _ => return Reply::code(ResultCode::Overflow),
            }
        } else {
            if current.available < magnitude {
                return Reply::code(ResultCode::SoldOut);
            }
            (current.total - magnitude, current.available - magnitude)
        };
        if !self.key_room(1) {
            return Reply::code(ResultCode::Overloaded);
        }
        self.sku_dirty.mark(index);
        let entry = &mut self.skus[index as usize];
        entry.total = total;
        entry.available = available;
        // The SKU id rides in the record's reservation field, to replay the SKU view.
        self.record_key(
            ADMIN_ACCOUNT,
            key,
            KeyRecord {
                fingerprint,
                reservation: sku,
                op: KeyOp::AdjustStock,
                result: ResultCode::Ok as u16,
            },
        );
        // Restocked units go to the oldest waiters before any newcomer.
        self.feed_waiters(index);
        Reply::with_body(ResultCode::Ok, ReplyBody::Sku(self.sku_view(index)))
    }

    fn set_paused(&mut self, sku: SkuId, paused: bool) -> Reply {
        if sku == 0 {
            return Reply::code(ResultCode::BadRequest);
        }
        let Some(index) = self.sku_index.get(&sku).copied() else {
            return Reply::code(ResultCode::UnknownSku);
        };
        self.sku_dirty.mark(index);
        self.skus[index as usize].paused = paused;
        if self.sharded() {
            assert_eq!(self.placement.coordinator_of(sku), self.placement.shard);
            self.broadcast(Message::SetPaused { sku, paused });
        }
        Reply::with_body(ResultCode::Ok, ReplyBody::Sku(self.sku_view(index)))
    }

    fn deposit(&mut self, account: AccountId, amount: u64, key: RequestKey) -> Reply {
        if account == ADMIN_ACCOUNT || key == 0 || amount == 0 {
            return Reply::code(ResultCode::BadRequest);
        }
        let fingerprint = fingerprint(KeyOp::Deposit, &[amount]);
        if let Some(record) = self.keys.get(&(account, key)).copied() {
            return self.replay(account, &record, KeyOp::Deposit, fingerprint);
        }
        let wallet = self.wallets.get(&account).copied();
        if wallet.is_none() && self.wallets.is_full() {
            return Reply::code(ResultCode::Overloaded);
        }
        let mut wallet = wallet.unwrap_or_default();
        // `available <= deposited` always, so checking `deposited` covers both sums.
        match wallet.deposited.checked_add(amount) {
            Some(deposited) => {
                wallet.deposited = deposited;
                wallet.available += amount;
            }
            None => return Reply::code(ResultCode::Overflow),
        }
        if !self.key_room(1) {
            return Reply::code(ResultCode::Overloaded);
        }
        self.wallets.insert(account, wallet).expect("wallet room was checked");
        self.record_key(
            account,
            key,
            KeyRecord {
                fingerprint,
                reservation: 0,
                op: KeyOp::Deposit,
                result: ResultCode::Ok as u16,
            },
        );
        Reply::with_body(ResultCode::Ok, ReplyBody::Account(self.account_view(account)))
    }

    fn withdraw(&mut self, account: AccountId, amount: u64, key: RequestKey) -> Reply {
        if account == ADMIN_ACCOUNT || key == 0 || amount == 0 {
            return Reply::code(ResultCode::BadRequest);
        }
        let fingerprint = fingerprint(KeyOp::Withdraw, &[amount]);
        if let Some(record) = self.keys.get(&(account, key)).copied() {
            return self.replay(account, &record, KeyOp::Withdraw, fingerprint);
        }
        let available = self.wallets.get(&account).map_or(0, |wallet| wallet.available);
        if available < amount {
            return Reply::code(ResultCode::InsufficientFunds);
        }
        if !self.key_room(1) {
            return Reply::code(ResultCode::Overloaded);
        }
        let wallet = self.wallets.get_mut(&account).expect("a wallet with funds exists");
        wallet.available -= amount;
        wallet.withdrawn += amount;
        self.record_key(
            account,
            key,
            KeyRecord {
                fingerprint,
                reservation: 0,
                op: KeyOp::Withdraw,
                result: ResultCode::Ok as u16,
            },
        );
        Reply::with_body(ResultCode::Ok, ReplyBody::Account(self.account_view(account)))
    }

    // ----------------------------------------------------------------------------------
    // Determinism.

    /// A fingerprint of the whole state (clock, SKUs, wallets, reservations, keys, limit
    /// counters, waitlist and free/finished orders), independent of memory layout. Two
    /// engines given the same requests at the same clock readings have equal hashes.
    pub fn state_hash(&self) -> u64 {
        let mut hasher = StateHasher::default();
        hasher.write_u64(self.now_ms);
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
                u64::from(slot.packed),
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

/// `generation << 32 | slot`: never 0 because generations start at 1.
#[inline]
pub(crate) fn reservation_id(generation: u32, index: u32) -> ReservationId {
    debug_assert!(generation != 0);
    (u64::from(generation) << 32) | u64::from(index)
}

pub(crate) fn fingerprint(op: KeyOp, words: &[u64]) -> u64 {
    let mut hash = mix64(op as u64 + 1);
    for word in words {
        hash = mix64(hash ^ *word).wrapping_add(0x9e37_79b9_7f4a_7c15);
    }
    hash
}

fn target_words(target: Target) -> [u64; 2] {
    match target {
        Target::Reservation(reservation) => [0, reservation],
        Target::ReserveKey(key) => [1, key],
    }
}

fn valid_target_request(account: AccountId, target: Target, key: RequestKey) -> bool {
    let target_valid = match target {
        Target::Reservation(reservation) => reservation != 0,
        // A request may not name its own key as the reserve it acts on.
        Target::ReserveKey(reserve_key) => reserve_key != 0 && reserve_key != key,
    };
    account != ADMIN_ACCOUNT && key != 0 && target_valid
}
