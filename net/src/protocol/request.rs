//! Request frames: encoding (clients) and validated decoding (servers).

use core::mem::offset_of;

use bytemuck::{bytes_of, Zeroable};
use rush_engine::{Request, Reserve, SkuSpec, Target, RESERVE_FLAGS_KNOWN};

use super::wire::{
    AccountRequest, AdjustStockRequest, FundsRequest, I64Le, PingRequest, PutSkuRequest,
    QueryReservationRequest, ReserveRequest, SkuRequest, TargetRequest, U32Le, U64Le,
};
use super::{
    check_reserved, header, split_frame, view, DecodeError, Direction, FrameInfo, Opcode,
    HEADER_SIZE, REQUEST_SIZE, TARGET_KIND_RESERVATION, TARGET_KIND_RESERVE_KEY,
};

/// A decoded request frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestFrame {
    /// The client's request id, to echo in the response.
    pub request_id: u64,
    /// The operation, ready for the engine.
    pub request: Request,
}

impl RequestFrame {
    /// The opcode of the request (and of its response).
    pub const fn opcode(&self) -> Opcode {
        Opcode::for_request(&self.request)
    }
}

/// Appends the 64-byte request frame of `request` to `out`.
///
/// Fields are written as given: a RESERVE with flag bits outside `RESERVE_FLAGS_KNOWN` is
/// encoded, and [`decode_request`] rejects it (`InvalidField { field: "flags" }`).
pub fn encode_request(request_id: u64, request: &Request, out: &mut Vec<u8>) {
    let opcode = Opcode::for_request(request);
    out.reserve(REQUEST_SIZE);
    out.extend_from_slice(bytes_of(&header(opcode, REQUEST_SIZE, request_id)));
    match *request {
        Request::Ping => out.extend_from_slice(bytes_of(&PingRequest::zeroed())),
        Request::Reserve(reserve) => out.extend_from_slice(bytes_of(&ReserveRequest {
            account: U64Le::new(reserve.account),
            sku: U64Le::new(reserve.sku),
            key: U64Le::new(reserve.key),
            quantity: U32Le::new(reserve.quantity),
            flags: U32Le::new(reserve.flags),
            hold_ms: U32Le::new(reserve.hold_ms),
            wait_ms: U32Le::new(reserve.wait_ms),
            reserved: [0; 8],
        })),
        Request::Confirm { account, target, key } | Request::Cancel { account, target, key } => {
            let (target_kind, target) = target_to_wire(target);
            out.extend_from_slice(bytes_of(&TargetRequest {
                account: U64Le::new(account),
                target: U64Le::new(target),
                key: U64Le::new(key),
                target_kind,
                reserved: [0; 23],
            }));
        }
        Request::QuerySku { sku } | Request::Pause { sku } | Request::Resume { sku } => {
            out.extend_from_slice(bytes_of(&SkuRequest { sku: U64Le::new(sku), reserved: [0; 40] }))
        }
        Request::QueryAccount { account } => out.extend_from_slice(bytes_of(&AccountRequest {
            account: U64Le::new(account),
            reserved: [0; 40],
        })),
        Request::QueryReservation { account, target } => {
            let (target_kind, target) = target_to_wire(target);
            out.extend_from_slice(bytes_of(&QueryReservationRequest {
                account: U64Le::new(account),
                target: U64Le::new(target),
                target_kind,
                reserved: [0; 31],
            }));
        }
        Request::PutSku(spec) => out.extend_from_slice(bytes_of(&PutSkuRequest {
            sku: U64Le::new(spec.sku),
            stock_total: U64Le::new(spec.stock_total),
            price: U64Le::new(spec.price),
            start_ms: U64Le::new(spec.start_ms),
            end_ms: U64Le::new(spec.end_ms),
            per_user_limit: U32Le::new(spec.per_user_limit),
            hold_ms: U32Le::new(spec.hold_ms),
        })),
        Request::AdjustStock { sku, delta, key } => {
            out.extend_from_slice(bytes_of(&AdjustStockRequest {
                sku: U64Le::new(sku),
                delta: I64Le::new(delta),
                key: U64Le::new(key),
                reserved: [0; 24],
            }))
        }
        Request::Deposit { account, amount, key } | Request::Withdraw { account, amount, key } => {
            out.extend_from_slice(bytes_of(&FundsRequest {
                account: U64Le::new(account),
                amount: U64Le::new(amount),
                key: U64Le::new(key),
                reserved: [0; 24],
            }))
        }
    }
}

/// Decodes the request frame at the start of `bytes`.
///
/// On success returns the frame and the number of bytes it occupied (its length field,
/// always [`REQUEST_SIZE`]); bytes after it are not looked at. Never panics. See
/// [`DecodeError::class`] for what to do with an error.
pub fn decode_request(bytes: &[u8]) -> Result<(RequestFrame, usize), DecodeError> {
    let (info, frame) = split_frame(bytes, Direction::Request)?;
    let request = decode_body(info, frame)?;
    Ok((RequestFrame { request_id: info.request_id, request }, info.length))
}

/// Frame offset of a body field.
macro_rules! at {
    ($ty:ty, $field:ident) => {
        HEADER_SIZE + offset_of!($ty, $field)
    };
}

fn decode_body(info: FrameInfo, frame: &[u8]) -> Result<Request, DecodeError> {
    let size = info.length;
    Ok(match info.opcode {
        Opcode::Ping => {
            let body: &PingRequest = view(frame, HEADER_SIZE, size)?;
            check_reserved(&body.reserved, at!(PingRequest, reserved), info)?;
            Request::Ping
        }
        Opcode::Reserve => {
            let body: &ReserveRequest = view(frame, HEADER_SIZE, size)?;
            let flags = body.flags.get();
            if flags & !RESERVE_FLAGS_KNOWN != 0 {
                return Err(DecodeError::InvalidField { frame: info, field: "flags" });
            }
            check_reserved(&body.reserved, at!(ReserveRequest, reserved), info)?;
            Request::Reserve(Reserve {
                account: body.account.get(),
                sku: body.sku.get(),
                quantity: body.quantity.get(),
                key: body.key.get(),
                flags,
                hold_ms: body.hold_ms.get(),
                wait_ms: body.wait_ms.get(),
            })
        }
        Opcode::Confirm | Opcode::Cancel => {
            let body: &TargetRequest = view(frame, HEADER_SIZE, size)?;
            let target = target_from_wire(body.target_kind, body.target.get(), info)?;
            check_reserved(&body.reserved, at!(TargetRequest, reserved), info)?;
            let (account, key) = (body.account.get(), body.key.get());
            if info.opcode == Opcode::Confirm {
                Request::Confirm { account, target, key }
            } else {
                Request::Cancel { account, target, key }
            }
        }
        Opcode::QuerySku | Opcode::Pause | Opcode::Resume => {
            let body: &SkuRequest = view(frame, HEADER_SIZE, size)?;
            check_reserved(&body.reserved, at!(SkuRequest, reserved), info)?;
            let sku = body.sku.get();
            match info.opcode {
                Opcode::QuerySku => Request::QuerySku { sku },
                Opcode::Pause => Request::Pause { sku },
                _ => Request::Resume { sku },
            }
        }
        Opcode::QueryAccount => {
            let body: &AccountRequest = view(frame, HEADER_SIZE, size)?;
            check_reserved(&body.reserved, at!(AccountRequest, reserved), info)?;
            Request::QueryAccount { account: body.account.get() }
        }
        Opcode::QueryReservation => {
            let body: &QueryReservationRequest = view(frame, HEADER_SIZE, size)?;
            let target = target_from_wire(body.target_kind, body.target.get(), info)?;
            check_reserved(&body.reserved, at!(QueryReservationRequest, reserved), info)?;
            Request::QueryReservation { account: body.account.get(), target }
        }
        Opcode::PutSku => {
            let body: &PutSkuRequest = view(frame, HEADER_SIZE, size)?;
            Request::PutSku(SkuSpec {
                sku: body.sku.get(),
                stock_total: body.stock_total.get(),
                price: body.price.get(),
                per_user_limit: body.per_user_limit.get(),
                hold_ms: body.hold_ms.get(),
                start_ms: body.start_ms.get(),
                end_ms: body.end_ms.get(),
            })
        }
        Opcode::AdjustStock => {
            let body: &AdjustStockRequest = view(frame, HEADER_SIZE, size)?;
            check_reserved(&body.reserved, at!(AdjustStockRequest, reserved), info)?;
            Request::AdjustStock {
                sku: body.sku.get(),
                delta: body.delta.get(),
                key: body.key.get(),
            }
        }
        Opcode::Deposit | Opcode::Withdraw => {
            let body: &FundsRequest = view(frame, HEADER_SIZE, size)?;
            check_reserved(&body.reserved, at!(FundsRequest, reserved), info)?;
            let (account, amount, key) = (body.account.get(), body.amount.get(), body.key.get());
            if info.opcode == Opcode::Deposit {
                Request::Deposit { account, amount, key }
            } else {
                Request::Withdraw { account, amount, key }
            }
        }
    })
}

fn target_to_wire(target: Target) -> (u8, u64) {
    match target {
        Target::Reservation(id) => (TARGET_KIND_RESERVATION, id),
        Target::ReserveKey(key) => (TARGET_KIND_RESERVE_KEY, key),
    }
}

fn target_from_wire(kind: u8, target: u64, frame: FrameInfo) -> Result<Target, DecodeError> {
    match kind {
        TARGET_KIND_RESERVATION => Ok(Target::Reservation(target)),
        TARGET_KIND_RESERVE_KEY => Ok(Target::ReserveKey(target)),
        _ => Err(DecodeError::InvalidField { frame, field: "target_kind" }),
    }
}
