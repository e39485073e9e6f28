//! The wire protocol of Rush: fixed-size little-endian frames (docs/PROTOCOL.md).
//!
//! Every frame starts with a 16-byte [`Header`](wire::Header) (magic `52 53`, version,
//! opcode, total length, flags, request id). Every request frame is 64 bytes; every response
//! frame is 64 bytes except the QUERY_SKU response ([`SKU_RESPONSE_SIZE`], 104 bytes). The
//! layouts are the `#[repr(C)]` [`bytemuck::Pod`] structs of [`wire`], alignment 1, so a frame
//! is read in place from any byte buffer.
//!
//! * [`decode_request`] / [`encode_request`]: the server's and the client's view of
//!   requests.
//! * [`encode_response`] / [`decode_response`]: the same for responses.
//!
//! Decoding validates the wire only (magic, version, opcode, length, header flags, reserved
//! bytes, enumerated fields) and never panics. Semantic validation (zero ids, zero quantity,
//! limits, ...) is the engine's: it answers BAD_REQUEST itself.
//!
//! ```
//! use rush_engine::{Reply, Request, ResultCode};
//! use rush_net::protocol::{decode_request, encode_request, encode_response, ErrorClass};
//!
//! let mut input = Vec::new();
//! encode_request(7, &Request::Ping, &mut input);
//! let mut output = Vec::new();
//! match decode_request(&input) {
//!     Ok((frame, consumed)) => {
//!         assert_eq!(consumed, 64);
//!         let reply = Reply::code(ResultCode::Ok); // engine.execute(frame.request, now)
//!         encode_response(frame.opcode(), frame.request_id, &reply, &mut output);
//!     }
//!     Err(err) => match err.class() {
//!         ErrorClass::Incomplete => { /* read more bytes */ }
//!         ErrorClass::FrameLocal => {
//!             if let Some(bad) = err.frame() {
//!                 let reply = Reply::code(ResultCode::BadRequest);
//!                 encode_response(bad.opcode, bad.request_id, &reply, &mut output);
//!                 // consume bad.length bytes and go on
//!             }
//!         }
//!         ErrorClass::Fatal => { /* close the connection */ }
//!     },
//! }
//! assert_eq!(output.len(), 64);
//! ```

mod error;
mod le;
mod request;
mod response;
pub mod wire;

use rush_engine::Request;

pub use error::{DecodeError, ErrorClass, FrameInfo};
pub use request::{decode_request, encode_request, RequestFrame};
pub use response::{
    decode_response, encode_ping_response, encode_response, ping_topology, ResponseFrame, Topology,
};

/// The first two bytes of every frame, as a little-endian `u16` (bytes `52 53`, "RS").
pub const MAGIC: u16 = 0x5352;
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Size of the [`wire::Header`] that starts every frame.
pub const HEADER_SIZE: usize = 16;
/// Size of every request frame.
pub const REQUEST_SIZE: usize = 64;
/// Size of every response frame except QUERY_SKU's.
pub const RESPONSE_SIZE: usize = 64;
/// Size of the QUERY_SKU response frame.
pub const SKU_RESPONSE_SIZE: usize = 104;
/// The largest frame of either direction: a buffer of this size always holds one frame.
pub const MAX_FRAME_SIZE: usize = SKU_RESPONSE_SIZE;

/// `target_kind` 0: the target is a reservation id.
pub const TARGET_KIND_RESERVATION: u8 = 0;
/// `target_kind` 1: the target is the request key of the RESERVE that created the
/// reservation.
pub const TARGET_KIND_RESERVE_KEY: u8 = 1;

const _: () = assert!(HEADER_SIZE == core::mem::size_of::<wire::Header>());
const _: () = assert!(REQUEST_SIZE == HEADER_SIZE + core::mem::size_of::<wire::PingRequest>());
const _: () = assert!(RESPONSE_SIZE == HEADER_SIZE + core::mem::size_of::<wire::PlainResponse>());
const _: () = assert!(SKU_RESPONSE_SIZE == HEADER_SIZE + core::mem::size_of::<wire::SkuResponse>());

/// The operation a frame carries. A response has its request's opcode.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Opcode {
    /// Round trip with no engine work.
    Ping = 0x01,
    /// Take units (and funds) on hold.
    Reserve = 0x02,
    /// Held units become sold, held funds spent.
    Confirm = 0x03,
    /// Held units and funds go back.
    Cancel = 0x04,
    /// Read a SKU.
    QuerySku = 0x05,
    /// Read a wallet.
    QueryAccount = 0x06,
    /// Read a reservation.
    QueryReservation = 0x07,
    /// Admin: create or update a SKU.
    PutSku = 0x10,
    /// Admin: restock or remove units.
    AdjustStock = 0x11,
    /// Admin: stop selling a SKU.
    Pause = 0x12,
    /// Admin: resume selling a SKU.
    Resume = 0x13,
    /// Admin: add funds to a wallet.
    Deposit = 0x14,
    /// Admin: take funds out of a wallet.
    Withdraw = 0x15,
}

/// Which body layout a response of an opcode has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResponseLayout {
    /// [`wire::PlainResponse`]: codes only (PUT_SKU, ADJUST_STOCK, PAUSE, RESUME).
    Plain,
    /// [`wire::PingResponse`]: codes and the shard topology (PING).
    Ping,
    /// [`wire::ReservationResponse`] (RESERVE, CONFIRM, CANCEL, QUERY_RESERVATION).
    Reservation,
    /// [`wire::AccountResponse`] (DEPOSIT, WITHDRAW, QUERY_ACCOUNT).
    Account,
    /// [`wire::SkuResponse`] (QUERY_SKU).
    Sku,
}

impl Opcode {
    /// Every opcode, in numeric order.
    pub const ALL: [Opcode; 13] = [
        Opcode::Ping,
        Opcode::Reserve,
        Opcode::Confirm,
        Opcode::Cancel,
        Opcode::QuerySku,
        Opcode::QueryAccount,
        Opcode::QueryReservation,
        Opcode::PutSku,
        Opcode::AdjustStock,
        Opcode::Pause,
        Opcode::Resume,
        Opcode::Deposit,
        Opcode::Withdraw,
    ];

    /// The opcode with this wire value, if any.
    pub const fn from_u8(value: u8) -> Option<Opcode> {
        Some(match value {
            0x01 => Opcode::Ping,
            0x02 => Opcode::Reserve,
            0x03 => Opcode::Confirm,
            0x04 => Opcode::Cancel,
            0x05 => Opcode::QuerySku,
            0x06 => Opcode::QueryAccount,
            0x07 => Opcode::QueryReservation,
            0x10 => Opcode::PutSku,
            0x11 => Opcode::AdjustStock,
            0x12 => Opcode::Pause,
            0x13 => Opcode::Resume,
            0x14 => Opcode::Deposit,
            0x15 => Opcode::Withdraw,
            _ => return None,
        })
    }

    /// The opcode's position in [`Opcode::ALL`] (the operation index of the metrics).
    pub const fn index(self) -> usize {
        match self {
            Opcode::Ping => 0,
            Opcode::Reserve => 1,
            Opcode::Confirm => 2,
            Opcode::Cancel => 3,
            Opcode::QuerySku => 4,
            Opcode::QueryAccount => 5,
            Opcode::QueryReservation => 6,
            Opcode::PutSku => 7,
            Opcode::AdjustStock => 8,
            Opcode::Pause => 9,
            Opcode::Resume => 10,
            Opcode::Deposit => 11,
            Opcode::Withdraw => 12,
        }
    }

    /// The wire value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The opcode that carries `request`.
    pub const fn for_request(request: &Request) -> Opcode {
        match request {
            Request::Ping => Opcode::Ping,
            Request::Reserve(_) => Opcode::Reserve,
            Request::Confirm { .. } => Opcode::Confirm,
            Request::Cancel { .. } => Opcode::Cancel,
            Request::QuerySku { .. } => Opcode::QuerySku,
            Request::QueryAccount { .. } => Opcode::QueryAccount,
            Request::QueryReservation { .. } => Opcode::QueryReservation,
            Request::PutSku(_) => Opcode::PutSku,
            Request::AdjustStock { .. } => Opcode::AdjustStock,
            Request::Pause { .. } => Opcode::Pause,
            Request::Resume { .. } => Opcode::Resume,
            Request::Deposit { .. } => Opcode::Deposit,
            Request::Withdraw { .. } => Opcode::Withdraw,
        }
    }

    /// The size of this opcode's request frame (always [`REQUEST_SIZE`]).
    pub const fn request_size(self) -> usize {
        REQUEST_SIZE
    }

    /// The size of this opcode's response frame: [`SKU_RESPONSE_SIZE`] for QUERY_SKU,
    /// [`RESPONSE_SIZE`] for every other opcode.
    pub const fn response_size(self) -> usize {
        match self {
            Opcode::QuerySku => SKU_RESPONSE_SIZE,
            _ => RESPONSE_SIZE,
        }
    }

    /// The body layout of this opcode's response.
    pub const fn response_layout(self) -> ResponseLayout {
        match self {
            Opcode::Ping => ResponseLayout::Ping,
            Opcode::PutSku | Opcode::AdjustStock | Opcode::Pause | Opcode::Resume => {
                ResponseLayout::Plain
            }
            Opcode::Reserve | Opcode::Confirm | Opcode::Cancel | Opcode::QueryReservation => {
                ResponseLayout::Reservation
            }
            Opcode::Deposit | Opcode::Withdraw | Opcode::QueryAccount => ResponseLayout::Account,
            Opcode::QuerySku => ResponseLayout::Sku,
        }
    }

    /// True for the admin operations (0x10..=0x15).
    pub const fn is_admin(self) -> bool {
        (self as u8) >= 0x10
    }

    /// The SCREAMING_CASE name used in docs/PROTOCOL.md.
    pub const fn name(self) -> &'static str {
        match self {
            Opcode::Ping => "PING",
            Opcode::Reserve => "RESERVE",
            Opcode::Confirm => "CONFIRM",
            Opcode::Cancel => "CANCEL",
            Opcode::QuerySku => "QUERY_SKU",
            Opcode::QueryAccount => "QUERY_ACCOUNT",
            Opcode::QueryReservation => "QUERY_RESERVATION",
            Opcode::PutSku => "PUT_SKU",
            Opcode::AdjustStock => "ADJUST_STOCK",
            Opcode::Pause => "PAUSE",
            Opcode::Resume => "RESUME",
            Opcode::Deposit => "DEPOSIT",
            Opcode::Withdraw => "WITHDRAW",
        }
    }
}

// Every opcode has a slot in the shards' metrics, at its position in `ALL`.
const _: () = {
    assert!(Opcode::ALL.len() <= rush_runtime::metrics::OPERATION_SLOT_COUNT);
    let mut index = 0;
    while index < Opcode::ALL.len() {
        assert!(Opcode::ALL[index].index() == index);
        index += 1;
    }
};

impl core::fmt::Display for Opcode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which direction a frame travels: selects the expected frame sizes.
#[derive(Clone, Copy)]
enum Direction {
    Request,
    Response,
}

impl Direction {
    const fn frame_size(self, opcode: Opcode) -> usize {
        match self {
            Direction::Request => opcode.request_size(),
            Direction::Response => opcode.response_size(),
        }
    }
}

/// Validates the header at the start of `bytes` and checks that the whole frame is there.
///
/// Fatal errors are reported from whatever prefix has arrived; `Incomplete` only when the
/// prefix is valid. On success returns the header fields and the complete frame's bytes.
fn split_frame(bytes: &[u8], direction: Direction) -> Result<(FrameInfo, &[u8]), DecodeError> {
    let magic = MAGIC.to_le_bytes();
    for (index, &expected) in magic.iter().enumerate() {
        match bytes.get(index) {
            Some(&byte) if byte != expected => return Err(DecodeError::BadMagic),
            Some(_) => {}
            None => return Err(DecodeError::Incomplete { needed: HEADER_SIZE }),
        }
    }
    match bytes.get(2) {
        Some(&VERSION) => {}
        Some(&version) => return Err(DecodeError::BadVersion(version)),
        None => return Err(DecodeError::Incomplete { needed: HEADER_SIZE }),
    }
    let Some(&opcode_byte) = bytes.get(3) else {
        return Err(DecodeError::Incomplete { needed: HEADER_SIZE });
    };
    let opcode = Opcode::from_u8(opcode_byte).ok_or(DecodeError::UnknownOpcode(opcode_byte))?;
    let size = direction.frame_size(opcode);
    let Some(&[lo, hi]) = bytes.get(4..6) else {
        return Err(DecodeError::Incomplete { needed: size });
    };
    let length = u16::from_le_bytes([lo, hi]);
    if usize::from(length) != size {
        return Err(DecodeError::BadLength {
            opcode,
            length,
            // Frame sizes are compile-time constants far below u16::MAX.
            expected: u16::try_from(size).unwrap_or(u16::MAX),
        });
    }
    let Some(frame) = bytes.get(..size) else {
        return Err(DecodeError::Incomplete { needed: size });
    };
    let header: &wire::Header = view(frame, 0, size)?;
    let info = FrameInfo { opcode, request_id: header.request_id.get(), length: size };
    let flags = header.flags.get();
    if flags != 0 {
        return Err(DecodeError::HeaderFlagsNotZero { frame: info, flags });
    }
    Ok((info, frame))
}

/// Views the `T` at `offset` of a complete frame of `size` bytes.
///
/// Cannot fail for the frame returned by [`split_frame`] (the structs have alignment 1 and
/// fit); reports `Incomplete` rather than panicking if that ever were not so.
fn view<T: bytemuck::AnyBitPattern>(
    frame: &[u8],
    offset: usize,
    size: usize,
) -> Result<&T, DecodeError> {
    frame
        .get(offset..offset.saturating_add(core::mem::size_of::<T>()))
        .and_then(|bytes| bytemuck::try_from_bytes(bytes).ok())
        .ok_or(DecodeError::Incomplete { needed: size })
}

/// Requires every byte of `reserved`, found at frame offset `offset`, to be zero.
fn check_reserved(reserved: &[u8], offset: usize, frame: FrameInfo) -> Result<(), DecodeError> {
    // Every frame has 8 to 40 reserved bytes and they are zero in every valid frame: OR them
    // together eight at a time (one test per word instead of a compare and branch per byte:
    // a PING's decode went from ~200 instructions to ~40 under callgrind), and look for the
    // first non-zero byte only to name it in the error.
    let mut words = reserved.chunks_exact(8);
    let mut any: u64 = 0;
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        any |= u64::from_ne_bytes(bytes);
    }
    for &byte in words.remainder() {
        any |= u64::from(byte);
    }
    if any == 0 {
        return Ok(());
    }
    // `any` is not zero, so some byte is not: the fallback is never taken.
    let index = reserved.iter().position(|&byte| byte != 0).unwrap_or(0);
    Err(DecodeError::ReservedNotZero { frame, offset: offset + index })
}

/// Builds the header of a frame.
fn header(opcode: Opcode, length: usize, request_id: u64) -> wire::Header {
    wire::Header {
        magic: wire::U16Le::new(MAGIC),
        version: VERSION,
        opcode: opcode.as_u8(),
        length: wire::U16Le::new(u16::try_from(length).unwrap_or(u16::MAX)),
        flags: wire::U16Le::new(0),
        request_id: wire::U64Le::new(request_id),
    }
}
