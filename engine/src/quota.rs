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
//!   bucket while a buyer is turned away (SEMANTICS.md invariant 6).
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

/// The admin namespace of request keys (ADJUST_STOCK): account 0 is never a buyer.
pub const ADMIN_ACCOUNT: AccountId = 0;

/// Which shard must apply `request`: the account's home for everything about an account
/// (ADJUST_STOCK: the admin namespace's home), the SKU's coordinator for the other admin
/// operations. QUERY_SKU and PING may run anywhere (`None`).
pub fn route(request: &Request, shard_count: u32) -> Option<u32> {
    match *request {
        Request::Reserve(Reserve { account, .. })
        | Request::Confirm { account, .. }
        | Request::Cancel { account, .. }
        | Request::QueryAccount { account }
        | Request::QueryReservation { account, .. }
        | Request::Deposit { account, .. }
        | Request::Withdraw { account, .. } => Some(home_shard(account, shard_count)),
        // ADJUST_STOCK's key lives in the admin namespace (account 0), which has one home
        // like any account: one admin key space whatever the number of shards. The home
        // asks the SKU's coordinator to apply the adjustment.
        Request::AdjustStock { .. } => Some(home_shard(ADMIN_ACCOUNT, shard_count)),
        Request::PutSku(SkuSpec { sku, .. }) | Request::Pause { sku } | Request::Resume { sku } => {
            Some(coordinator_shard(sku, shard_count))
        }
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
    /// Admin home → coordinator: apply an ADJUST_STOCK whose key the admin home recorded.
    Adjust { sku: SkuId, delta: i64, key: RequestKey },
    /// Coordinator → admin home: the adjustment's outcome (OK, or a refusal that leaves the
    /// key unused: UNKNOWN_SKU, OVERFLOW, SOLD_OUT, OVERLOADED).
    Adjusted { sku: SkuId, key: RequestKey, result: ResultCode },
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
            | Message::Dry { sku, .. }
            | Message::Adjust { sku, .. }
            | Message::Adjusted { sku, .. } => (sku, 0),
            Message::Define { spec } => (spec.sku, 0),
        }
    }
}

/// Largest refill chunk, in units: bounds how much stock one bucket can sit on.
pub const REFILL_CHUNK_MAX: u64 = 4096;

/// The refill chunk a coordinator hands a bucket along with a grant: a share of what is
/// left, smaller as the pool shrinks and as shards multiply, so that near the end every
/// unit goes through the coordinator's line (exact FIFO) while early on most RESERVEs are
/// served from a local bucket with no hop. At most `chunk_max`.
pub fn refill_chunk(pool: u64, shard_count: u32, chunk_max: u64) -> u64 {
    (pool / (4 * u64::from(shard_count))).min(chunk_max)
}
