//! The engine's public vocabulary: requests, replies, result codes and events.
//!
//! These are plain `Copy` values. The wire protocol (`rush-net`) translates frames to and
//! from them; the engine never sees bytes.

/// A product on sale. Never 0 (0 is the "no SKU" marker of the tables and the wire).
pub type SkuId = u64;
/// A buyer. Never 0: account 0 is the namespace of the admin SKU operations' request keys.
pub type AccountId = u64;
/// An engine-assigned reservation handle, unique for the life of a data directory across
/// every shard: see [`ReservationIdParts`] for the layout. Never 0.
pub type ReservationId = u64;

/// The layout of a [`ReservationId`] (documented in docs/PROTOCOL.md, "Reservation ids"):
///
/// ```text
///  63                 32 31      26 25                     0
/// ┌─────────────────────┬──────────┬────────────────────────┐
/// │ generation (32 bits)│ shard (6)│ slot (26 bits)         │
/// └─────────────────────┴──────────┴────────────────────────┘
/// ```
///
/// `slot` is the reservation's index in its shard's table (so a lookup by id needs no hash),
/// `shard` the shard that holds it (so two shards never hand out the same id), and
/// `generation` the slot's allocation counter, bumped at every reuse of the slot and by a
/// large jump at every start (so an id lost with an unsynced journal tail is never handed
/// out again). Generations start at 1, so an id is never 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservationIdParts {
    pub generation: u32,
    pub shard: u32,
    pub slot: u32,
}

impl ReservationIdParts {
    /// Bits of the slot index: `reservation_max` is at most `2^26`.
    pub const SLOT_BITS: u32 = 26;
    /// Bits of the shard: at most 64 shards.
    pub const SHARD_BITS: u32 = 6;

    pub const fn id(self) -> ReservationId {
        (self.generation as u64) << 32
            | (self.shard as u64) << Self::SLOT_BITS
            | self.slot as u64 & ((1 << Self::SLOT_BITS) - 1)
    }

    pub const fn parse(id: ReservationId) -> ReservationIdParts {
        ReservationIdParts {
            generation: (id >> 32) as u32,
            shard: ((id >> Self::SLOT_BITS) & ((1 << Self::SHARD_BITS) - 1)) as u32,
            slot: (id & ((1 << Self::SLOT_BITS) - 1)) as u32,
        }
    }
}
/// A client-chosen idempotency key, unique per account. Never 0.
pub type RequestKey = u64;

/// RESERVE flag: hold `price * quantity` from the account's wallet.
pub const RESERVE_FLAG_PAY: u32 = 1 << 0;
/// RESERVE flag: reserve and confirm in one step (the units are sold at once).
pub const RESERVE_FLAG_BUY: u32 = 1 << 1;
/// Every RESERVE flag this version understands; any other bit is BAD_REQUEST.
pub const RESERVE_FLAGS_KNOWN: u32 = RESERVE_FLAG_PAY | RESERVE_FLAG_BUY;

/// The one result code every reply carries. The numeric values are part of the wire protocol
/// (docs/PROTOCOL.md) and never change meaning.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResultCode {
    /// The operation took effect (or, for queries and PING, the answer is in the body).
    Ok = 0,
    /// A retry of a request key whose request already took effect; the body and
    /// `original` carry the original outcome. Nothing changed this time.
    Duplicate = 1,
    /// The request key was already used by this account for a request with different
    /// parameters (or a different operation). Nothing changed.
    KeyReused = 2,
    /// RESERVE with `wait_ms == 0`: not enough units available, or others wait for the SKU;
    /// or an ADJUST_STOCK would remove more units than are available. (A RESERVE that would
    /// park in a full waitlist gets [`ResultCode::Overloaded`].)
    SoldOut = 3,
    /// The account's held + sold (+ waiting) units of this SKU would exceed `per_user_limit`.
    LimitExceeded = 4,
    /// PAY: the wallet's available balance is below `price * quantity`; WITHDRAW: below the
    /// amount.
    InsufficientFunds = 5,
    /// The sale window has not opened: `now_ms < start_ms`.
    NotStarted = 6,
    /// The sale window has closed: `end_ms != 0 && now_ms >= end_ms`.
    Ended = 7,
    /// The SKU is paused by an admin.
    Paused = 8,
    /// No SKU with this id.
    UnknownSku = 9,
    /// No reservation with this id (or created by this reserve key) for this account, or it
    /// has been retired from the bounded table of finished reservations.
    UnknownReservation = 10,
    /// CONFIRM or CANCEL of a reservation that is already confirmed (CONFIRM retried with a
    /// new key, or a CANCEL that came too late).
    AlreadyConfirmed = 11,
    /// CONFIRM or CANCEL of a reservation that was cancelled; a RESERVE (or CONFIRM /
    /// QUERY_RESERVATION by reserve key) whose key was tombstoned by an earlier CANCEL (TCC
    /// anti-hanging); the deferred answer of a parked RESERVE cancelled while waiting.
    AlreadyCancelled = 12,
    /// CONFIRM or CANCEL of a hold that expired before it was confirmed.
    Expired = 13,
    /// A parked RESERVE was not matched within `wait_ms` (deferred event), or a CONFIRM or
    /// CANCEL of such a reservation.
    WaitTimeout = 14,
    /// Rate limit of the network layer (never produced by the engine). Reserved: this
    /// version has no rate limit and never returns it.
    RateLimited = 15,
    /// A bounded table or queue is full; nothing changed; retry later.
    Overloaded = 16,
    /// An admin operation on a non-admin connection (never produced by the engine).
    Unauthorized = 17,
    /// A field is out of range (zero id or key, zero or oversized quantity, unknown flag,
    /// hold or wait above the configured maximum, immutable SKU field changed, ...).
    BadRequest = 18,
    /// A RESERVE is parked in the SKU's waitlist: the final answer comes later as an event.
    /// Also the answer to CONFIRM of a reservation that is still waiting.
    Waiting = 19,
    /// Checked arithmetic refused the operation: a balance, price * quantity, or a stock
    /// total would overflow u64.
    Overflow = 20,
    /// The shard cannot make the operation durable: its journal failed to write or sync
    /// (disk full, I/O error). A new state-changing request is refused and changes nothing;
    /// one that was already applied and waited for its journal write has an unknown
    /// outcome: retry it with the same key later (DUPLICATE tells it took effect). Reads
    /// keep working (runtime only, never produced by the engine).
    Unavailable = 21,
}

impl ResultCode {
    /// Every code, in numeric order.
    pub const ALL: [ResultCode; 22] = [
        ResultCode::Ok,
        ResultCode::Duplicate,
        ResultCode::KeyReused,
        ResultCode::SoldOut,
        ResultCode::LimitExceeded,
        ResultCode::InsufficientFunds,
        ResultCode::NotStarted,
        ResultCode::Ended,
        ResultCode::Paused,
        ResultCode::UnknownSku,
        ResultCode::UnknownReservation,
        ResultCode::AlreadyConfirmed,
        ResultCode::AlreadyCancelled,
        ResultCode::Expired,
        ResultCode::WaitTimeout,
        ResultCode::RateLimited,
        ResultCode::Overloaded,
        ResultCode::Unauthorized,
        ResultCode::BadRequest,
        ResultCode::Waiting,
        ResultCode::Overflow,
        ResultCode::Unavailable,
    ];

    /// The code with this wire value, if any.
    pub fn from_u16(value: u16) -> Option<ResultCode> {
        ResultCode::ALL.get(usize::from(value)).copied()
    }

    /// The SCREAMING_CASE name used in docs and tool output.
    pub fn name(self) -> &'static str {
        match self {
            ResultCode::Ok => "OK",
            ResultCode::Duplicate => "DUPLICATE",
            ResultCode::KeyReused => "KEY_REUSED",
            ResultCode::SoldOut => "SOLD_OUT",
            ResultCode::LimitExceeded => "LIMIT_EXCEEDED",
            ResultCode::InsufficientFunds => "INSUFFICIENT_FUNDS",
            ResultCode::NotStarted => "NOT_STARTED",
            ResultCode::Ended => "ENDED",
            ResultCode::Paused => "PAUSED",
            ResultCode::UnknownSku => "UNKNOWN_SKU",
            ResultCode::UnknownReservation => "UNKNOWN_RESERVATION",
            ResultCode::AlreadyConfirmed => "ALREADY_CONFIRMED",
            ResultCode::AlreadyCancelled => "ALREADY_CANCELLED",
            ResultCode::Expired => "EXPIRED",
            ResultCode::WaitTimeout => "WAIT_TIMEOUT",
            ResultCode::RateLimited => "RATE_LIMITED",
            ResultCode::Overloaded => "OVERLOADED",
            ResultCode::Unauthorized => "UNAUTHORIZED",
            ResultCode::BadRequest => "BAD_REQUEST",
            ResultCode::Waiting => "WAITING",
            ResultCode::Overflow => "OVERFLOW",
            ResultCode::Unavailable => "UNAVAILABLE",
        }
    }
}

/// The life cycle of a reservation. Wire values are part of the protocol.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum ReservationState {
    /// No reservation (a reply that carries none).
    #[default]
    None = 0,
    /// Parked in the SKU's FIFO waitlist; funds (PAY) and the per-user count are already
    /// taken, units are not.
    Waiting = 1,
    /// Units (and funds) held until `expires_at_ms`.
    Held = 2,
    /// Units sold, funds spent. Terminal.
    Confirmed = 3,
    /// Units and funds given back by CANCEL. Terminal.
    Cancelled = 4,
    /// Units and funds given back by the engine at `expires_at_ms`. Terminal.
    Expired = 5,
    /// The waiter was not matched before its wait deadline. Terminal.
    WaitTimedOut = 6,
}

impl ReservationState {
    /// The state with this wire value, if any.
    pub fn from_u8(value: u8) -> Option<ReservationState> {
        Some(match value {
            0 => ReservationState::None,
            1 => ReservationState::Waiting,
            2 => ReservationState::Held,
            3 => ReservationState::Confirmed,
            4 => ReservationState::Cancelled,
            5 => ReservationState::Expired,
            6 => ReservationState::WaitTimedOut,
            _ => return None,
        })
    }

    /// Confirmed, cancelled, expired or timed out: nothing can change it any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ReservationState::Confirmed
                | ReservationState::Cancelled
                | ReservationState::Expired
                | ReservationState::WaitTimedOut
        )
    }
}

/// How CONFIRM, CANCEL and QUERY_RESERVATION name their reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// By the id the engine returned.
    Reservation(ReservationId),
    /// By the request key of the RESERVE that created it (for a client that lost the reply).
    ReserveKey(RequestKey),
}

/// The attributes of a SKU, as PUT_SKU sets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SkuSpec {
    pub sku: SkuId,
    /// Units on sale when the SKU is created. Immutable afterwards (use ADJUST_STOCK).
    pub stock_total: u64,
    /// Price of one unit in minor currency units.
    pub price: u64,
    /// Maximum units one account may hold + buy; 0 = no limit. Immutable after creation.
    pub per_user_limit: u32,
    /// Default hold time for RESERVE with `hold_ms == 0`; 0 = the engine's default.
    pub hold_ms: u32,
    /// Sale window start (unix ms, server clock); 0 = open from the start.
    pub start_ms: u64,
    /// Sale window end, exclusive; 0 = never ends.
    pub end_ms: u64,
}

/// RESERVE parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reserve {
    pub account: AccountId,
    pub sku: SkuId,
    pub quantity: u32,
    pub key: RequestKey,
    /// `RESERVE_FLAG_*` bits.
    pub flags: u32,
    /// Hold time; 0 = the SKU's default.
    pub hold_ms: u32,
    /// How long to wait in the FIFO waitlist when sold out; 0 = answer SOLD_OUT at once.
    pub wait_ms: u32,
}

/// Every operation of the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Request {
    Ping,
    Reserve(Reserve),
    Confirm {
        account: AccountId,
        target: Target,
        key: RequestKey,
    },
    Cancel {
        account: AccountId,
        target: Target,
        key: RequestKey,
    },
    QuerySku {
        sku: SkuId,
    },
    QueryAccount {
        account: AccountId,
    },
    QueryReservation {
        account: AccountId,
        target: Target,
    },
    /// Admin: create a SKU or update its mutable attributes (price, hold, window).
    PutSku(SkuSpec),
    /// Admin: add (`delta > 0`, restock) or remove (`delta < 0`) available units.
    /// Idempotent by `key` in the admin namespace (account 0).
    AdjustStock {
        sku: SkuId,
        delta: i64,
        key: RequestKey,
    },
    /// Admin: stop selling (RESERVE answers PAUSED); holds, confirms and cancels go on.
    Pause {
        sku: SkuId,
    },
    /// Admin: resume selling.
    Resume {
        sku: SkuId,
    },
    /// Admin: add funds to the account's wallet (creating it).
    Deposit {
        account: AccountId,
        amount: u64,
        key: RequestKey,
    },
    /// Admin: take funds out of the wallet's available balance.
    Withdraw {
        account: AccountId,
        amount: u64,
        key: RequestKey,
    },
}

impl Request {
    /// True for the operations only an admin may call (the network layer enforces it).
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Request::PutSku(_)
                | Request::AdjustStock { .. }
                | Request::Pause { .. }
                | Request::Resume { .. }
                | Request::Deposit { .. }
                | Request::Withdraw { .. }
        )
    }
}

/// A reservation as replies show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ReservationView {
    pub reservation: ReservationId,
    pub account: AccountId,
    pub sku: SkuId,
    pub quantity: u32,
    /// The RESERVE's `RESERVE_FLAG_*` bits.
    pub flags: u32,
    /// Funds held (PAY), then spent (confirmed) or returned.
    pub amount: u64,
    /// Hold expiry while held or after; the wait deadline while waiting.
    pub deadline_ms: u64,
    pub state: ReservationState,
}

/// A SKU as QUERY_SKU shows it. `available` is the units this shard may hand out (its
/// bucket); `total = available + reserved + sold` on a single shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SkuView {
    pub sku: SkuId,
    pub total: u64,
    pub available: u64,
    pub reserved: u64,
    pub sold: u64,
    pub price: u64,
    pub per_user_limit: u32,
    pub hold_ms: u32,
    pub start_ms: u64,
    pub end_ms: u64,
    pub waiters: u32,
    pub paused: bool,
}

/// A wallet as QUERY_ACCOUNT shows it (all zero when the account has no wallet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AccountView {
    pub account: AccountId,
    pub available: u64,
    pub held: u64,
    pub spent: u64,
    pub deposited: u64,
    pub withdrawn: u64,
}

/// What a reply carries besides its code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ReplyBody {
    #[default]
    None,
    Reservation(ReservationView),
    Sku(SkuView),
    Account(AccountView),
}

/// The engine's answer to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reply {
    pub result: ResultCode,
    /// For DUPLICATE: the code the original request got. Otherwise equal to `result`.
    pub original: ResultCode,
    pub body: ReplyBody,
}

impl Reply {
    pub fn code(result: ResultCode) -> Reply {
        Reply { result, original: result, body: ReplyBody::None }
    }

    pub fn with_body(result: ResultCode, body: ReplyBody) -> Reply {
        Reply { result, original: result, body }
    }

    /// The reservation in the body, if any.
    pub fn reservation(&self) -> Option<ReservationView> {
        match self.body {
            ReplyBody::Reservation(view) => Some(view),
            _ => None,
        }
    }
}

/// The deferred answer to a parked RESERVE: emitted when released stock is matched to it
/// (OK), when its wait deadline passes (WAIT_TIMEOUT), or when it is cancelled while waiting
/// (ALREADY_CANCELLED). The network layer routes it by `(account, key)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    pub account: AccountId,
    pub key: RequestKey,
    pub reply: Reply,
}
