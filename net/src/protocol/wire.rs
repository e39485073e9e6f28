//! The frame layouts: one `#[repr(C)]` [`Pod`] struct per header and body, alignment 1, no
//! implicit padding, sizes asserted at compile time.
//!
//! Offsets in the field docs are relative to the start of the struct; a body starts at frame
//! offset [`HEADER_SIZE`](super::HEADER_SIZE) (16). Every field named `reserved*` must be zero
//! on the wire. docs/PROTOCOL.md has the same layouts as tables with frame offsets.

use core::mem::{align_of, size_of};

use bytemuck::{Pod, Zeroable};

pub use super::le::{I64Le, U16Le, U32Le, U64Le};

/// The 16-byte header that starts every request and response frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Header {
    /// @0: [`MAGIC`](super::MAGIC) (`0x5352`, bytes `52 53`, "RS").
    pub magic: U16Le,
    /// @2: [`VERSION`](super::VERSION).
    pub version: u8,
    /// @3: the [`Opcode`](super::Opcode); a response carries its request's opcode.
    pub opcode: u8,
    /// @4: total frame length in bytes, header included; fixed per opcode and direction.
    pub length: U16Le,
    /// @6: reserved, must be 0.
    pub flags: U16Le,
    /// @8: chosen by the client, echoed in the response.
    pub request_id: U64Le,
}

/// PING request body: nothing.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct PingRequest {
    /// @0..48: reserved.
    pub reserved: [u8; 48],
}

/// RESERVE request body.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct ReserveRequest {
    /// @0.
    pub account: U64Le,
    /// @8.
    pub sku: U64Le,
    /// @16: the request key.
    pub key: U64Le,
    /// @24.
    pub quantity: U32Le,
    /// @28: `RESERVE_FLAG_*` bits; unknown bits are a frame-local error.
    pub flags: U32Le,
    /// @32: 0 = the SKU's default hold.
    pub hold_ms: U32Le,
    /// @36: 0 = do not wait in the waitlist.
    pub wait_ms: U32Le,
    /// @40..48: reserved.
    pub reserved: [u8; 8],
}

/// CONFIRM and CANCEL request body.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct TargetRequest {
    /// @0.
    pub account: U64Le,
    /// @8: a reservation id or a RESERVE's request key, per `target_kind`.
    pub target: U64Le,
    /// @16: this request's own key.
    pub key: U64Le,
    /// @24: [`TARGET_KIND_RESERVATION`](super::TARGET_KIND_RESERVATION) or
    /// [`TARGET_KIND_RESERVE_KEY`](super::TARGET_KIND_RESERVE_KEY).
    pub target_kind: u8,
    /// @25..48: reserved.
    pub reserved: [u8; 23],
}

/// QUERY_SKU, PAUSE and RESUME request body.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct SkuRequest {
    /// @0.
    pub sku: U64Le,
    /// @8..48: reserved.
    pub reserved: [u8; 40],
}

/// QUERY_ACCOUNT request body.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct AccountRequest {
    /// @0.
    pub account: U64Le,
    /// @8..48: reserved.
    pub reserved: [u8; 40],
}

/// QUERY_RESERVATION request body.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct QueryReservationRequest {
    /// @0.
    pub account: U64Le,
    /// @8: a reservation id or a RESERVE's request key, per `target_kind`.
    pub target: U64Le,
    /// @16: as in [`TargetRequest::target_kind`].
    pub target_kind: u8,
    /// @17..48: reserved.
    pub reserved: [u8; 31],
}

/// PUT_SKU request body.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct PutSkuRequest {
    /// @0.
    pub sku: U64Le,
    /// @8.
    pub stock_total: U64Le,
    /// @16.
    pub price: U64Le,
    /// @24.
    pub start_ms: U64Le,
    /// @32.
    pub end_ms: U64Le,
    /// @40.
    pub per_user_limit: U32Le,
    /// @44.
    pub hold_ms: U32Le,
}

/// ADJUST_STOCK request body.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct AdjustStockRequest {
    /// @0.
    pub sku: U64Le,
    /// @8: units to add (> 0) or remove (< 0).
    pub delta: I64Le,
    /// @16: request key (admin namespace).
    pub key: U64Le,
    /// @24..48: reserved.
    pub reserved: [u8; 24],
}

/// DEPOSIT and WITHDRAW request body.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct FundsRequest {
    /// @0.
    pub account: U64Le,
    /// @8.
    pub amount: U64Le,
    /// @16.
    pub key: U64Le,
    /// @24..48: reserved.
    pub reserved: [u8; 24],
}

/// Response body with no payload (PING, PUT_SKU, ADJUST_STOCK, PAUSE, RESUME).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct PlainResponse {
    /// @0: the `ResultCode`.
    pub result: U16Le,
    /// @2: the original outcome's code for DUPLICATE, else equal to `result`.
    pub original: U16Le,
    /// @4..48: reserved.
    pub reserved: [u8; 44],
}

/// Response body of PING: the codes and the server's shard topology, so that a client can
/// send each request straight to its account's home shard (docs/PROTOCOL.md §5.1).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct PingResponse {
    /// @0.
    pub result: U16Le,
    /// @2.
    pub original: U16Le,
    /// @4: how many shards the server runs (0: not reported).
    pub shard_count: U16Le,
    /// @6: the shard serving this connection.
    pub shard: U16Le,
    /// @8: shard `i` listens on `shard_port_base + i` (0: no per-shard ports).
    pub shard_port_base: U16Le,
    /// @10..48: reserved.
    pub reserved: [u8; 38],
}

/// Response body of RESERVE, CONFIRM, CANCEL and QUERY_RESERVATION.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct ReservationResponse {
    /// @0.
    pub result: U16Le,
    /// @2.
    pub original: U16Le,
    /// @4: `ReservationState` wire value.
    pub state: u8,
    /// @5..8: reserved.
    pub reserved: [u8; 3],
    /// @8.
    pub reservation_id: U64Le,
    /// @16.
    pub sku: U64Le,
    /// @24.
    pub amount: U64Le,
    /// @32.
    pub deadline_ms: U64Le,
    /// @40.
    pub quantity: U32Le,
    /// @44: the RESERVE's `RESERVE_FLAG_*` bits.
    pub reserve_flags: U32Le,
}

/// Response body of DEPOSIT, WITHDRAW and QUERY_ACCOUNT.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct AccountResponse {
    /// @0.
    pub result: U16Le,
    /// @2.
    pub original: U16Le,
    /// @4..8: reserved.
    pub reserved: [u8; 4],
    /// @8.
    pub available: U64Le,
    /// @16.
    pub held: U64Le,
    /// @24.
    pub spent: U64Le,
    /// @32.
    pub deposited: U64Le,
    /// @40.
    pub withdrawn: U64Le,
}

/// Response body of QUERY_SKU (88 bytes: the only response that is not 64 bytes long).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct SkuResponse {
    /// @0.
    pub result: U16Le,
    /// @2.
    pub original: U16Le,
    /// @4: 1 if paused, 0 if not.
    pub paused: u8,
    /// @5..8: reserved.
    pub reserved0: [u8; 3],
    /// @8.
    pub sku: U64Le,
    /// @16.
    pub total: U64Le,
    /// @24.
    pub available: U64Le,
    /// @32: units held by reservations.
    pub reserved_units: U64Le,
    /// @40.
    pub sold: U64Le,
    /// @48.
    pub price: U64Le,
    /// @56.
    pub start_ms: U64Le,
    /// @64.
    pub end_ms: U64Le,
    /// @72.
    pub per_user_limit: U32Le,
    /// @76.
    pub hold_ms: U32Le,
    /// @80.
    pub waiters: U32Le,
    /// @84..88: reserved.
    pub reserved1: [u8; 4],
}

macro_rules! assert_layout {
    ($($ty:ty => $size:expr),* $(,)?) => {
        $(const _: () = assert!(size_of::<$ty>() == $size && align_of::<$ty>() == 1);)*
    };
}

assert_layout! {
    Header => 16,
    PingRequest => 48,
    ReserveRequest => 48,
    TargetRequest => 48,
    SkuRequest => 48,
    AccountRequest => 48,
    QueryReservationRequest => 48,
    PutSkuRequest => 48,
    AdjustStockRequest => 48,
    FundsRequest => 48,
    PlainResponse => 48,
    PingResponse => 48,
    ReservationResponse => 48,
    AccountResponse => 48,
    SkuResponse => 88,
}
