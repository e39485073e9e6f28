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

mod admin;
mod confirm_cancel;
mod keys;
mod queries;
mod quota;
mod reserve;
mod slots;
mod snapshot;
mod state_hash;
mod time;

pub use time::ExpiryDelay;

pub(crate) use keys::fingerprint;

/// Clock readings must stay below this (see `advance`).
pub const NOW_MS_LIMIT: u64 = 1 << 60;

pub(crate) use crate::quota::ADMIN_ACCOUNT;

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
    /// Coordinator only: a reduction (ADJUST_STOCK with a negative delta) waiting for a
    /// reclaim round, because the pool alone holds fewer units: its size (0 = none), its
    /// key and the admin home to answer. At most one per SKU; it goes first when the round
    /// ends.
    pub(crate) reduction_pending: u64,
    pub(crate) reduction_key: RequestKey,
    pub(crate) reduction_from: u32,
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

const FLAGS_SHIFT: u16 = 4;
/// `state_flags` bit: a start's generation jump is still to be applied to this slot (it was
/// occupied at the start), at its next allocation.
const JUMP_PENDING: u16 = 1 << 8;

/// One reservation slot: 56 bytes here plus 8 bytes of timer links in the wheel = 64.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Slot {
    pub(crate) account: AccountId,
    pub(crate) key: RequestKey,
    pub(crate) amount: u64,
    /// Expiry while held (and after); wait deadline while waiting.
    pub(crate) deadline_ms: u64,
    pub(crate) sku_index: u32,
    /// At most `quantity_max`, which is at most `u16::MAX`.
    pub(crate) quantity: u16,
    /// state (4 bits) | flags (4 bits: PAY, BUY, REMOTE, PROXY).
    state_flags: u16,
    /// Hold time to apply when a waiter is matched.
    pub(crate) hold_ms: u32,
    /// Bumped at every allocation of the slot, and by [`Engine::jump_generations`] at every
    /// start: part of the reservation id (see [`crate::ReservationIdParts`]).
    generation: u32,
    /// Waitlist links while waiting; `wait_next` threads the free list while free.
    pub(crate) wait_prev: u32,
    pub(crate) wait_next: u32,
}

const _: () = assert!(core::mem::size_of::<Slot>() == 56);

impl Slot {
    #[inline]
    pub(crate) fn generation(&self) -> u32 {
        self.generation
    }

    #[inline]
    pub(crate) fn state(&self) -> ReservationState {
        // Only values written by `set_state` are ever stored.
        ReservationState::from_u8((self.state_flags & 0xF) as u8).unwrap_or(ReservationState::None)
    }

    #[inline]
    pub(crate) fn flags(&self) -> u32 {
        u32::from((self.state_flags >> FLAGS_SHIFT) & 0xF)
    }

    #[inline]
    pub(crate) fn set_state(&mut self, state: ReservationState) {
        self.state_flags = (self.state_flags & !0xF) | state as u16;
    }

    /// The word the state hash covers: state, flags and generation.
    pub(crate) fn packed(&self) -> u64 {
        (u64::from(self.generation) << 16) | u64::from(self.state_flags)
    }

    fn set_generation_and_flags(&mut self, generation: u32, flags: u32) {
        assert!(generation != 0);
        assert!(flags <= 0xF);
        self.generation = generation;
        self.state_flags = (flags as u16) << FLAGS_SHIFT;
    }

    #[inline]
    pub(crate) fn jump_pending(&self) -> bool {
        self.state_flags & JUMP_PENDING != 0
    }

    pub(crate) fn add_flags(&mut self, flags: u32) {
        assert!(flags <= 0xF);
        self.state_flags |= (flags as u16) << FLAGS_SHIFT;
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
    /// How late holds expire (observational, like `counters`, and not snapshotted).
    pub(crate) expiry_delay: ExpiryDelay,
    pub(crate) placement: Placement,
    /// Messages to other shards (and to itself), drained by the caller after every call.
    pub(crate) outbox: Vec<Envelope>,
    /// SKUs whose levels changed since the runtime last published them (observational:
    /// not part of the state hash).
    pub(crate) sku_dirty: DirtySet,
    /// The jump of the last start (`jump_generations`), applied to an occupied slot at its
    /// next allocation.
    pub(crate) generation_jump: u32,
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
        if placement.shard_count == 0 || placement.shard_count > Placement::SHARD_COUNT_MAX {
            return Err(crate::ConfigError::between(
                "shard_count",
                u64::from(placement.shard_count),
                1,
                u64::from(Placement::SHARD_COUNT_MAX),
            ));
        }
        if placement.shard >= placement.shard_count {
            return Err(crate::ConfigError::between(
                "shard",
                u64::from(placement.shard),
                0,
                u64::from(placement.shard_count - 1),
            ));
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
            expiry_delay: ExpiryDelay::default(),
            placement,
            outbox: Vec::with_capacity(
                reservation_max as usize + 4 * placement.shard_count as usize,
            ),
            sku_dirty: DirtySet::new(config.sku_max),
            generation_jump: 0,
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

    /// How late the holds this engine expired were released (see [`ExpiryDelay`]).
    pub fn expiry_delay(&self) -> &ExpiryDelay {
        &self.expiry_delay
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
                        let index = ReservationIdParts::parse(reservation).slot as usize;
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
}

impl Engine {
    /// The id of the reservation in slot `index` (its current generation, this shard).
    #[inline]
    pub(crate) fn reservation_id(&self, index: u32) -> ReservationId {
        let slot = &self.slots[index as usize];
        ReservationIdParts {
            generation: slot.generation(),
            shard: self.placement.shard,
            slot: index,
        }
        .id()
    }

    /// Makes every slot's next generation jump by `jump`, so that no id handed out before a
    /// restart can be handed out again even if the journal lost the allocations behind it
    /// (an unsynced tail: a slot would have to be reused `jump` times within one unsynced
    /// window). A free slot jumps now; an occupied one (a live or finished reservation, whose
    /// id must not change) at its next allocation. The runtime journals it as the first input
    /// of every start, so replay repeats it. Returns false (and changes nothing) when some
    /// slot's generation could overflow: the data directory's id space is spent.
    pub fn jump_generations(&mut self, jump: u32) -> bool {
        let room = |slot: &Slot| slot.generation.checked_add(jump).and_then(|g| g.checked_add(1));
        if self.slots.iter().any(|slot| room(slot).is_none()) {
            return false;
        }
        self.generation_jump = jump;
        for slot in self.slots.iter_mut() {
            if slot.state() == ReservationState::None {
                slot.generation += jump;
                slot.state_flags &= !JUMP_PENDING;
            } else {
                slot.state_flags |= JUMP_PENDING;
            }
        }
        true
    }
}
