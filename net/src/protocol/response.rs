//! Response frames: encoding (servers) and validated decoding (clients).

use core::mem::offset_of;

use bytemuck::bytes_of;
use rush_engine::{
    AccountId, AccountView, Reply, ReplyBody, ReservationState, ReservationView, ResultCode,
    SkuView,
};

use super::wire::{
    AccountResponse, PingResponse, PlainResponse, ReservationResponse, SkuResponse, U16Le, U32Le,
    U64Le,
};
use super::{
    check_reserved, header, split_frame, view, DecodeError, Direction, FrameInfo, Opcode,
    ResponseLayout, HEADER_SIZE,
};

/// A decoded response frame.
///
/// The account of a reservation or wallet body is not on the wire (the client knows which
/// account it asked about): [`decode_response`] sets it to 0; [`ResponseFrame::with_account`]
/// fills it in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ResponseFrame {
    /// The opcode of the request this answers.
    pub opcode: Opcode,
    /// The request id of the request this answers.
    pub request_id: u64,
    /// The result code, the original result code (differs for DUPLICATE only) and the
    /// body. A body whose fields are all zero on the wire decodes as [`ReplyBody::None`].
    pub reply: Reply,
}

impl ResponseFrame {
    /// The result code.
    pub fn result(&self) -> ResultCode {
        self.reply.result
    }

    /// The original result code: for DUPLICATE, the code the original request got;
    /// otherwise equal to [`ResponseFrame::result`].
    pub fn original(&self) -> ResultCode {
        self.reply.original
    }

    /// The body.
    pub fn body(&self) -> ReplyBody {
        self.reply.body
    }

    /// The frame with `account` as the account of its reservation or wallet body.
    pub fn with_account(mut self, account: AccountId) -> ResponseFrame {
        match &mut self.reply.body {
            ReplyBody::Reservation(view) => view.account = account,
            ReplyBody::Account(view) => view.account = account,
            ReplyBody::None | ReplyBody::Sku(_) => {}
        }
        self
    }
}

impl Opcode {
    /// The body a response of this opcode carries for `body`, as [`decode_response`] returns
    /// it: a body of another kind than the opcode's [`ResponseLayout`] is not carried
    /// (encoded as zeros: [`ReplyBody::None`]), a body whose wire fields are all zero is
    /// [`ReplyBody::None`], and the account of a reservation or wallet is 0.
    pub fn carried_body(self, body: &ReplyBody) -> ReplyBody {
        let carried = match (self.response_layout(), *body) {
            (ResponseLayout::Reservation, ReplyBody::Reservation(view)) => {
                ReplyBody::Reservation(ReservationView { account: 0, ..view })
            }
            (ResponseLayout::Account, ReplyBody::Account(view)) => {
                ReplyBody::Account(AccountView { account: 0, ..view })
            }
            (ResponseLayout::Sku, ReplyBody::Sku(view)) => ReplyBody::Sku(view),
            _ => ReplyBody::None,
        };
        match carried {
            ReplyBody::Reservation(view) if view == ReservationView::default() => ReplyBody::None,
            ReplyBody::Account(view) if view == AccountView::default() => ReplyBody::None,
            ReplyBody::Sku(view) if view == SkuView::default() => ReplyBody::None,
            other => other,
        }
    }
}

/// Appends the response frame answering request `request_id` of `opcode` with `reply` to
/// `out`: [`Opcode::response_size`] bytes (64, or 104 for QUERY_SKU).
///
/// The body layout is the opcode's [`ResponseLayout`]; a reply body of another kind is not
/// carried (its bytes are zero), see [`Opcode::carried_body`]. A deferred answer to a parked
/// RESERVE is encoded as a RESERVE response with the original request id.
pub fn encode_response(opcode: Opcode, request_id: u64, reply: &Reply, out: &mut Vec<u8>) {
    let size = opcode.response_size();
    out.reserve(size);
    out.extend_from_slice(bytes_of(&header(opcode, size, request_id)));
    let result = U16Le::new(reply.result as u16);
    let original = U16Le::new(reply.original as u16);
    match opcode.response_layout() {
        ResponseLayout::Plain => {
            out.extend_from_slice(bytes_of(&PlainResponse { result, original, reserved: [0; 44] }))
        }
        ResponseLayout::Ping => out.extend_from_slice(bytes_of(&PingResponse {
            result,
            original,
            shard_count: U16Le::new(0),
            shard: U16Le::new(0),
            shard_port_base: U16Le::new(0),
            reserved: [0; 38],
        })),
        ResponseLayout::Reservation => {
            let view = match reply.body {
                ReplyBody::Reservation(view) => view,
                _ => ReservationView::default(),
            };
            out.extend_from_slice(bytes_of(&ReservationResponse {
                result,
                original,
                state: view.state as u8,
                reserved: [0; 3],
                reservation_id: U64Le::new(view.reservation),
                sku: U64Le::new(view.sku),
                amount: U64Le::new(view.amount),
                deadline_ms: U64Le::new(view.deadline_ms),
                quantity: U32Le::new(view.quantity),
                reserve_flags: U32Le::new(view.flags),
            }));
        }
        ResponseLayout::Account => {
            let view = match reply.body {
                ReplyBody::Account(view) => view,
                _ => AccountView::default(),
            };
            out.extend_from_slice(bytes_of(&AccountResponse {
                result,
                original,
                reserved: [0; 4],
                available: U64Le::new(view.available),
                held: U64Le::new(view.held),
                spent: U64Le::new(view.spent),
                deposited: U64Le::new(view.deposited),
                withdrawn: U64Le::new(view.withdrawn),
            }));
        }
        ResponseLayout::Sku => {
            let view = match reply.body {
                ReplyBody::Sku(view) => view,
                _ => SkuView::default(),
            };
            out.extend_from_slice(bytes_of(&SkuResponse {
                result,
                original,
                paused: u8::from(view.paused),
                reserved0: [0; 3],
                sku: U64Le::new(view.sku),
                total: U64Le::new(view.total),
                available: U64Le::new(view.available),
                reserved_units: U64Le::new(view.reserved),
                sold: U64Le::new(view.sold),
                price: U64Le::new(view.price),
                start_ms: U64Le::new(view.start_ms),
                end_ms: U64Le::new(view.end_ms),
                per_user_limit: U32Le::new(view.per_user_limit),
                hold_ms: U32Le::new(view.hold_ms),
                waiters: U32Le::new(view.waiters),
                reserved1: [0; 4],
            }));
        }
    }
}

/// The server's shard layout, as a PING response reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Topology {
    /// Shards the server runs (1..=64; 0 when the server did not say).
    pub shard_count: u16,
    /// The shard that serves the connection the PING came on.
    pub shard: u16,
    /// Shard `i` also listens on port `shard_port_base + i`; 0 when it has no such ports.
    pub shard_port_base: u16,
}

/// Appends the response to PING `request_id`: OK, with the server's topology.
pub fn encode_ping_response(request_id: u64, topology: Topology, out: &mut Vec<u8>) {
    let size = Opcode::Ping.response_size();
    out.reserve(size);
    out.extend_from_slice(bytes_of(&header(Opcode::Ping, size, request_id)));
    let ok = U16Le::new(ResultCode::Ok as u16);
    out.extend_from_slice(bytes_of(&PingResponse {
        result: ok,
        original: ok,
        shard_count: U16Le::new(topology.shard_count),
        shard: U16Le::new(topology.shard),
        shard_port_base: U16Le::new(topology.shard_port_base),
        reserved: [0; 38],
    }));
}

/// The topology carried by the PING response at the start of `bytes` (`None` if `bytes`
/// does not start with a valid PING response).
pub fn ping_topology(bytes: &[u8]) -> Option<Topology> {
    let (frame, length) = decode_response(bytes).ok()?;
    if frame.opcode != Opcode::Ping {
        return None;
    }
    let body: &PingResponse = bytemuck::try_from_bytes(bytes.get(HEADER_SIZE..length)?).ok()?;
    Some(Topology {
        shard_count: body.shard_count.get(),
        shard: body.shard.get(),
        shard_port_base: body.shard_port_base.get(),
    })
}

/// Decodes the response frame at the start of `bytes`.
///
/// On success returns the frame and the number of bytes it occupied (its length field).
/// Besides the framing, the result codes, the reservation state and the paused flag must be
/// values this version defines (`InvalidField`), and reserved bytes must be zero. Never
/// panics.
pub fn decode_response(bytes: &[u8]) -> Result<(ResponseFrame, usize), DecodeError> {
    let (info, frame) = split_frame(bytes, Direction::Response)?;
    let reply = decode_body(info, frame)?;
    Ok((ResponseFrame { opcode: info.opcode, request_id: info.request_id, reply }, info.length))
}

/// Frame offset of a body field.
macro_rules! at {
    ($ty:ty, $field:ident) => {
        HEADER_SIZE + offset_of!($ty, $field)
    };
}

fn decode_body(info: FrameInfo, frame: &[u8]) -> Result<Reply, DecodeError> {
    let size = info.length;
    let (result, original, body) = match info.opcode.response_layout() {
        ResponseLayout::Plain => {
            let body: &PlainResponse = view(frame, HEADER_SIZE, size)?;
            let (result, original) = codes(body.result, body.original, info)?;
            check_reserved(&body.reserved, at!(PlainResponse, reserved), info)?;
            (result, original, ReplyBody::None)
        }
        ResponseLayout::Ping => {
            // The topology is read with `ping_topology`; the reply itself has no body.
            let body: &PingResponse = view(frame, HEADER_SIZE, size)?;
            let (result, original) = codes(body.result, body.original, info)?;
            check_reserved(&body.reserved, at!(PingResponse, reserved), info)?;
            (result, original, ReplyBody::None)
        }
        ResponseLayout::Reservation => {
            let body: &ReservationResponse = view(frame, HEADER_SIZE, size)?;
            let (result, original) = codes(body.result, body.original, info)?;
            let state = ReservationState::from_u8(body.state)
                .ok_or(DecodeError::InvalidField { frame: info, field: "state" })?;
            check_reserved(&body.reserved, at!(ReservationResponse, reserved), info)?;
            let view = ReservationView {
                reservation: body.reservation_id.get(),
                account: 0,
                sku: body.sku.get(),
                quantity: body.quantity.get(),
                flags: body.reserve_flags.get(),
                amount: body.amount.get(),
                deadline_ms: body.deadline_ms.get(),
                state,
            };
            let body_out = if view == ReservationView::default() {
                ReplyBody::None
            } else {
                ReplyBody::Reservation(view)
            };
            (result, original, body_out)
        }
        ResponseLayout::Account => {
            let body: &AccountResponse = view(frame, HEADER_SIZE, size)?;
            let (result, original) = codes(body.result, body.original, info)?;
            check_reserved(&body.reserved, at!(AccountResponse, reserved), info)?;
            let view = AccountView {
                account: 0,
                available: body.available.get(),
                held: body.held.get(),
                spent: body.spent.get(),
                deposited: body.deposited.get(),
                withdrawn: body.withdrawn.get(),
            };
            let body_out = if view == AccountView::default() {
                ReplyBody::None
            } else {
                ReplyBody::Account(view)
            };
            (result, original, body_out)
        }
        ResponseLayout::Sku => {
            let body: &SkuResponse = view(frame, HEADER_SIZE, size)?;
            let (result, original) = codes(body.result, body.original, info)?;
            let paused = match body.paused {
                0 => false,
                1 => true,
                _ => return Err(DecodeError::InvalidField { frame: info, field: "paused" }),
            };
            check_reserved(&body.reserved0, at!(SkuResponse, reserved0), info)?;
            check_reserved(&body.reserved1, at!(SkuResponse, reserved1), info)?;
            let view = SkuView {
                sku: body.sku.get(),
                total: body.total.get(),
                available: body.available.get(),
                reserved: body.reserved_units.get(),
                sold: body.sold.get(),
                price: body.price.get(),
                per_user_limit: body.per_user_limit.get(),
                hold_ms: body.hold_ms.get(),
                start_ms: body.start_ms.get(),
                end_ms: body.end_ms.get(),
                waiters: body.waiters.get(),
                paused,
            };
            let body_out =
                if view == SkuView::default() { ReplyBody::None } else { ReplyBody::Sku(view) };
            (result, original, body_out)
        }
    };
    Ok(Reply { result, original, body })
}

/// The two result codes every response body starts with.
fn codes(
    result: U16Le,
    original: U16Le,
    frame: FrameInfo,
) -> Result<(ResultCode, ResultCode), DecodeError> {
    let result = ResultCode::from_u16(result.get())
        .ok_or(DecodeError::InvalidField { frame, field: "result" })?;
    let original = ResultCode::from_u16(original.get())
        .ok_or(DecodeError::InvalidField { frame, field: "original_result" })?;
    Ok((result, original))
}
