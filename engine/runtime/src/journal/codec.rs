//! How the inputs of a shard are written in a journal entry's body, byte by byte
//! (docs/JOURNAL.md, "Inputs"). Little-endian, fixed layout per kind; decoding validates
//! every byte and never panics (it is fuzzed).
//!
//! An input is `kind: u8`, `length: u16`, then `length` bytes of payload. The kinds:
//!
//! | kind | name | payload |
//! |---:|---|---|
//! | 1 | TICK | none: advance the engine's clock to the entry's `now_ms` (timers fire) |
//! | 2 | REQUEST | a state-changing request (below) applied at the entry's `now_ms` |
//! | 3 | MESSAGE | `from: u32`, `link_sequence: u64`, `cause_sequence: u64`, a message (below) |
//! | 4 | START | `jump: u32`: a server start raised every reservation slot's generation |

use rush_engine::quota::{Envelope, Message};
use rush_engine::{Request, Reserve, ResultCode, SkuSpec, Target};

pub const INPUT_TICK: u8 = 1;
pub const INPUT_REQUEST: u8 = 2;
pub const INPUT_MESSAGE: u8 = 3;
pub const INPUT_START: u8 = 4;

/// Bytes before an input's payload: kind and length.
pub const INPUT_HEADER_SIZE: usize = 3;
/// The largest payload any input has (a MESSAGE carrying a `Define`).
pub const INPUT_PAYLOAD_MAX: usize = 128;

/// One input of a shard, in the order the shard applied it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Tick,
    Request(Request),
    /// A mesh message received from `envelope.from`: the `link_sequence`-th message on that
    /// link (counting from 1), sent while the sender applied its entry `cause_sequence`.
    Message {
        envelope: Envelope,
        link_sequence: u64,
        cause_sequence: u64,
    },
    Start {
        jump: u32,
    },
}

/// Why an input could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// The bytes end inside an input.
    Truncated,
    UnknownKind(u8),
    /// The payload length does not match the kind.
    Length {
        kind: u8,
        length: u16,
    },
    UnknownRequest(u8),
    UnknownMessage(u8),
    /// A field holds a value its type does not have (a result code, a target kind, a bool).
    Field(&'static str),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::Truncated => write!(formatter, "the body ends inside an input"),
            CodecError::UnknownKind(kind) => write!(formatter, "unknown input kind {kind}"),
            CodecError::Length { kind, length } => {
                write!(formatter, "input kind {kind} with a {length}-byte payload")
            }
            CodecError::UnknownRequest(tag) => write!(formatter, "unknown request tag {tag}"),
            CodecError::UnknownMessage(tag) => write!(formatter, "unknown message tag {tag}"),
            CodecError::Field(field) => write!(formatter, "invalid value of {field}"),
        }
    }
}

impl std::error::Error for CodecError {}

/// Appends `input` to `out`.
pub fn encode_input(input: &Input, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0]);
    let kind = match input {
        Input::Tick => INPUT_TICK,
        Input::Request(request) => {
            encode_request(request, out);
            INPUT_REQUEST
        }
        Input::Message { envelope, link_sequence, cause_sequence } => {
            out.extend_from_slice(&envelope.from.to_le_bytes());
            out.extend_from_slice(&link_sequence.to_le_bytes());
            out.extend_from_slice(&cause_sequence.to_le_bytes());
            encode_message(&envelope.message, out);
            INPUT_MESSAGE
        }
        Input::Start { jump } => {
            out.extend_from_slice(&jump.to_le_bytes());
            INPUT_START
        }
    };
    let length = out.len() - start - INPUT_HEADER_SIZE;
    assert!(length <= INPUT_PAYLOAD_MAX, "an input payload is at most {INPUT_PAYLOAD_MAX} bytes");
    out[start] = kind;
    out[start + 1..start + 3].copy_from_slice(&(length as u16).to_le_bytes());
}

/// Decodes the input at the start of `bytes` for a shard numbered `shard`; returns it and
/// the bytes it took.
pub fn decode_input(bytes: &[u8], shard: u32) -> Result<(Input, usize), CodecError> {
    if bytes.len() < INPUT_HEADER_SIZE {
        return Err(CodecError::Truncated);
    }
    let kind = bytes[0];
    let length = u16::from_le_bytes([bytes[1], bytes[2]]);
    let end = INPUT_HEADER_SIZE + usize::from(length);
    if bytes.len() < end {
        return Err(CodecError::Truncated);
    }
    let mut payload = Cursor { bytes: &bytes[INPUT_HEADER_SIZE..end] };
    let input = match kind {
        INPUT_TICK => Input::Tick,
        INPUT_REQUEST => Input::Request(decode_request(&mut payload)?),
        INPUT_MESSAGE => {
            let from = payload.u32()?;
            let link_sequence = payload.u64()?;
            let cause_sequence = payload.u64()?;
            let message = decode_message(&mut payload)?;
            Input::Message {
                envelope: Envelope { from, to: shard, message },
                link_sequence,
                cause_sequence,
            }
        }
        INPUT_START => Input::Start { jump: payload.u32()? },
        other => return Err(CodecError::UnknownKind(other)),
    };
    if !payload.bytes.is_empty() {
        return Err(CodecError::Length { kind, length });
    }
    Ok((input, end))
}

// Request tags (only state-changing requests are journaled; reads are not inputs).
const REQUEST_RESERVE: u8 = 1;
const REQUEST_CONFIRM: u8 = 2;
const REQUEST_CANCEL: u8 = 3;
const REQUEST_PUT_SKU: u8 = 4;
const REQUEST_ADJUST_STOCK: u8 = 5;
const REQUEST_PAUSE: u8 = 6;
const REQUEST_RESUME: u8 = 7;
const REQUEST_DEPOSIT: u8 = 8;
const REQUEST_WITHDRAW: u8 = 9;

/// True for the requests that can change a shard's state (the ones a journal records).
pub fn changes_state(request: &Request) -> bool {
    !matches!(
        request,
        Request::Ping
            | Request::QuerySku { .. }
            | Request::QueryAccount { .. }
            | Request::QueryReservation { .. }
    )
}

fn encode_request(request: &Request, out: &mut Vec<u8>) {
    let mut put = |value: u64| out.extend_from_slice(&value.to_le_bytes());
    match *request {
        Request::Reserve(reserve) => {
            put(u64::from(REQUEST_RESERVE));
            put(reserve.account);
            put(reserve.sku);
            put(reserve.key);
            put(u64::from(reserve.quantity) | u64::from(reserve.flags) << 32);
            put(u64::from(reserve.hold_ms) | u64::from(reserve.wait_ms) << 32);
        }
        Request::Confirm { account, target, key } | Request::Cancel { account, target, key } => {
            let tag = if matches!(request, Request::Confirm { .. }) {
                REQUEST_CONFIRM
            } else {
                REQUEST_CANCEL
            };
            let (kind, value) = match target {
                Target::Reservation(id) => (0, id),
                Target::ReserveKey(key) => (1, key),
            };
            put(u64::from(tag));
            put(account);
            put(kind);
            put(value);
            put(key);
        }
        Request::PutSku(spec) => {
            put(u64::from(REQUEST_PUT_SKU));
            put(spec.sku);
            put(spec.stock_total);
            put(spec.price);
            put(u64::from(spec.per_user_limit) | u64::from(spec.hold_ms) << 32);
            put(spec.start_ms);
            put(spec.end_ms);
        }
        Request::AdjustStock { sku, delta, key } => {
            put(u64::from(REQUEST_ADJUST_STOCK));
            put(sku);
            put(delta as u64);
            put(key);
        }
        Request::Pause { sku } | Request::Resume { sku } => {
            let tag = if matches!(request, Request::Pause { .. }) {
                REQUEST_PAUSE
            } else {
                REQUEST_RESUME
            };
            put(u64::from(tag));
            put(sku);
        }
        Request::Deposit { account, amount, key } | Request::Withdraw { account, amount, key } => {
            let tag = if matches!(request, Request::Deposit { .. }) {
                REQUEST_DEPOSIT
            } else {
                REQUEST_WITHDRAW
            };
            put(u64::from(tag));
            put(account);
            put(amount);
            put(key);
        }
        Request::Ping
        | Request::QuerySku { .. }
        | Request::QueryAccount { .. }
        | Request::QueryReservation { .. } => {
            unreachable!("reads are not journaled: {request:?}")
        }
    }
}

fn decode_request(payload: &mut Cursor<'_>) -> Result<Request, CodecError> {
    let tag = payload.u64()?;
    let tag = u8::try_from(tag).map_err(|_| CodecError::Field("request tag"))?;
    Ok(match tag {
        REQUEST_RESERVE => {
            let (account, sku, key) = (payload.u64()?, payload.u64()?, payload.u64()?);
            let (quantity, flags) = payload.u32_pair()?;
            let (hold_ms, wait_ms) = payload.u32_pair()?;
            Request::Reserve(Reserve { account, sku, quantity, key, flags, hold_ms, wait_ms })
        }
        REQUEST_CONFIRM | REQUEST_CANCEL => {
            let account = payload.u64()?;
            let target = match payload.u64()? {
                0 => Target::Reservation(payload.u64()?),
                1 => Target::ReserveKey(payload.u64()?),
                _ => return Err(CodecError::Field("target kind")),
            };
            let key = payload.u64()?;
            if tag == REQUEST_CONFIRM {
                Request::Confirm { account, target, key }
            } else {
                Request::Cancel { account, target, key }
            }
        }
        REQUEST_PUT_SKU => {
            let (sku, stock_total, price) = (payload.u64()?, payload.u64()?, payload.u64()?);
            let (per_user_limit, hold_ms) = payload.u32_pair()?;
            let (start_ms, end_ms) = (payload.u64()?, payload.u64()?);
            Request::PutSku(SkuSpec {
                sku,
                stock_total,
                price,
                per_user_limit,
                hold_ms,
                start_ms,
                end_ms,
            })
        }
        REQUEST_ADJUST_STOCK => {
            let (sku, delta, key) = (payload.u64()?, payload.u64()? as i64, payload.u64()?);
            Request::AdjustStock { sku, delta, key }
        }
        REQUEST_PAUSE => Request::Pause { sku: payload.u64()? },
        REQUEST_RESUME => Request::Resume { sku: payload.u64()? },
        REQUEST_DEPOSIT | REQUEST_WITHDRAW => {
            let (account, amount, key) = (payload.u64()?, payload.u64()?, payload.u64()?);
            if tag == REQUEST_DEPOSIT {
                Request::Deposit { account, amount, key }
            } else {
                Request::Withdraw { account, amount, key }
            }
        }
        other => return Err(CodecError::UnknownRequest(other)),
    })
}

// Message tags.
const MESSAGE_ACQUIRE: u8 = 1;
const MESSAGE_WITHDRAW: u8 = 2;
const MESSAGE_RELEASE: u8 = 3;
const MESSAGE_SURRENDER: u8 = 4;
const MESSAGE_GRANT: u8 = 5;
const MESSAGE_DENY: u8 = 6;
const MESSAGE_RECLAIM: u8 = 7;
const MESSAGE_DEFINE: u8 = 8;
const MESSAGE_SET_PAUSED: u8 = 9;
const MESSAGE_DRY: u8 = 10;
const MESSAGE_ADJUST: u8 = 11;
const MESSAGE_ADJUSTED: u8 = 12;

fn encode_message(message: &Message, out: &mut Vec<u8>) {
    let mut put = |value: u64| out.extend_from_slice(&value.to_le_bytes());
    match *message {
        Message::Acquire { sku, reservation, quantity, deadline_ms, wait } => {
            put(u64::from(MESSAGE_ACQUIRE));
            put(sku);
            put(reservation);
            put(u64::from(quantity) | u64::from(wait) << 32);
            put(deadline_ms);
        }
        Message::Withdraw { sku, reservation } => {
            put(u64::from(MESSAGE_WITHDRAW));
            put(sku);
            put(reservation);
        }
        Message::Release { sku, quantity } | Message::Surrender { sku, quantity } => {
            let tag = if matches!(message, Message::Release { .. }) {
                MESSAGE_RELEASE
            } else {
                MESSAGE_SURRENDER
            };
            put(u64::from(tag));
            put(sku);
            put(quantity);
        }
        Message::Grant { sku, reservation, quantity, refill } => {
            put(u64::from(MESSAGE_GRANT));
            put(sku);
            put(reservation);
            put(u64::from(quantity));
            put(refill);
        }
        Message::Deny { sku, reservation, result } => {
            put(u64::from(MESSAGE_DENY));
            put(sku);
            put(reservation);
            put(result as u64);
        }
        Message::Reclaim { sku } => {
            put(u64::from(MESSAGE_RECLAIM));
            put(sku);
        }
        Message::Define { spec } => {
            put(u64::from(MESSAGE_DEFINE));
            put(spec.sku);
            put(spec.stock_total);
            put(spec.price);
            put(u64::from(spec.per_user_limit) | u64::from(spec.hold_ms) << 32);
            put(spec.start_ms);
            put(spec.end_ms);
        }
        Message::SetPaused { sku, paused: flag } | Message::Dry { sku, dry: flag } => {
            let tag = if matches!(message, Message::SetPaused { .. }) {
                MESSAGE_SET_PAUSED
            } else {
                MESSAGE_DRY
            };
            put(u64::from(tag));
            put(sku);
            put(u64::from(flag));
        }
        Message::Adjust { sku, delta, key } => {
            put(u64::from(MESSAGE_ADJUST));
            put(sku);
            put(delta as u64);
            put(key);
        }
        Message::Adjusted { sku, key, result } => {
            put(u64::from(MESSAGE_ADJUSTED));
            put(sku);
            put(key);
            put(result as u64);
        }
    }
}

fn decode_message(payload: &mut Cursor<'_>) -> Result<Message, CodecError> {
    let tag = payload.u64()?;
    let tag = u8::try_from(tag).map_err(|_| CodecError::Field("message tag"))?;
    Ok(match tag {
        MESSAGE_ACQUIRE => {
            let (sku, reservation) = (payload.u64()?, payload.u64()?);
            let (quantity, wait) = payload.u32_pair()?;
            let wait = boolean(u64::from(wait), "wait")?;
            Message::Acquire { sku, reservation, quantity, deadline_ms: payload.u64()?, wait }
        }
        MESSAGE_WITHDRAW => Message::Withdraw { sku: payload.u64()?, reservation: payload.u64()? },
        MESSAGE_RELEASE => Message::Release { sku: payload.u64()?, quantity: payload.u64()? },
        MESSAGE_SURRENDER => Message::Surrender { sku: payload.u64()?, quantity: payload.u64()? },
        MESSAGE_GRANT => {
            let (sku, reservation) = (payload.u64()?, payload.u64()?);
            let quantity =
                u32::try_from(payload.u64()?).map_err(|_| CodecError::Field("grant quantity"))?;
            Message::Grant { sku, reservation, quantity, refill: payload.u64()? }
        }
        MESSAGE_DENY => {
            let (sku, reservation) = (payload.u64()?, payload.u64()?);
            Message::Deny { sku, reservation, result: result_code(payload.u64()?)? }
        }
        MESSAGE_RECLAIM => Message::Reclaim { sku: payload.u64()? },
        MESSAGE_DEFINE => {
            let (sku, stock_total, price) = (payload.u64()?, payload.u64()?, payload.u64()?);
            let (per_user_limit, hold_ms) = payload.u32_pair()?;
            let (start_ms, end_ms) = (payload.u64()?, payload.u64()?);
            let spec =
                SkuSpec { sku, stock_total, price, per_user_limit, hold_ms, start_ms, end_ms };
            Message::Define { spec }
        }
        MESSAGE_SET_PAUSED => {
            let sku = payload.u64()?;
            Message::SetPaused { sku, paused: boolean(payload.u64()?, "paused")? }
        }
        MESSAGE_DRY => {
            let sku = payload.u64()?;
            Message::Dry { sku, dry: boolean(payload.u64()?, "dry")? }
        }
        MESSAGE_ADJUST => {
            let (sku, delta, key) = (payload.u64()?, payload.u64()? as i64, payload.u64()?);
            Message::Adjust { sku, delta, key }
        }
        MESSAGE_ADJUSTED => {
            let (sku, key) = (payload.u64()?, payload.u64()?);
            Message::Adjusted { sku, key, result: result_code(payload.u64()?)? }
        }
        other => return Err(CodecError::UnknownMessage(other)),
    })
}

fn boolean(value: u64, field: &'static str) -> Result<bool, CodecError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(CodecError::Field(field)),
    }
}

fn result_code(value: u64) -> Result<ResultCode, CodecError> {
    u16::try_from(value).ok().and_then(ResultCode::from_u16).ok_or(CodecError::Field("result code"))
}

/// Reads little-endian fields off the front of a payload.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let Some((head, rest)) = self.bytes.split_first_chunk::<N>() else {
            return Err(CodecError::Truncated);
        };
        self.bytes = rest;
        Ok(*head)
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.take()?))
    }

    /// A u64 holding two u32s (low, high).
    fn u32_pair(&mut self) -> Result<(u32, u32), CodecError> {
        let word = self.u64()?;
        Ok((word as u32, (word >> 32) as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Input> {
        let spec = SkuSpec {
            sku: 9,
            stock_total: 100,
            price: 4_999,
            per_user_limit: 2,
            hold_ms: 30_000,
            start_ms: 1,
            end_ms: u64::MAX,
        };
        let reserve = Reserve {
            account: 42,
            sku: 9,
            quantity: 3,
            key: 7,
            flags: 3,
            hold_ms: 10,
            wait_ms: u32::MAX,
        };
        let requests = [
            Request::Reserve(reserve),
            Request::Confirm { account: 1, target: Target::Reservation(u64::MAX), key: 2 },
            Request::Cancel { account: 1, target: Target::ReserveKey(5), key: 6 },
            Request::PutSku(spec),
            Request::AdjustStock { sku: 9, delta: -5, key: 1 },
            Request::Pause { sku: 9 },
            Request::Resume { sku: 9 },
            Request::Deposit { account: 3, amount: 10, key: 4 },
            Request::Withdraw { account: 3, amount: 1, key: 5 },
        ];
        let messages = [
            Message::Acquire { sku: 9, reservation: 77, quantity: 2, deadline_ms: 5, wait: true },
            Message::Withdraw { sku: 9, reservation: 77 },
            Message::Release { sku: 9, quantity: 3 },
            Message::Surrender { sku: 9, quantity: 0 },
            Message::Grant { sku: 9, reservation: 77, quantity: 2, refill: 4_096 },
            Message::Deny { sku: 9, reservation: 77, result: ResultCode::SoldOut },
            Message::Reclaim { sku: 9 },
            Message::Define { spec },
            Message::SetPaused { sku: 9, paused: true },
            Message::Dry { sku: 9, dry: false },
            Message::Adjust { sku: 9, delta: i64::MIN, key: 8 },
            Message::Adjusted { sku: 9, key: 8, result: ResultCode::Ok },
        ];
        let mut inputs = vec![Input::Tick, Input::Start { jump: 1 << 16 }];
        inputs.extend(requests.map(Input::Request));
        inputs.extend(messages.into_iter().enumerate().map(|(index, message)| Input::Message {
            envelope: Envelope { from: 3, to: 1, message },
            link_sequence: index as u64 + 1,
            cause_sequence: 1_000 + index as u64,
        }));
        inputs
    }

    #[test]
    fn every_input_round_trips() {
        let mut body = Vec::new();
        let inputs = samples();
        for input in &inputs {
            encode_input(input, &mut body);
        }
        let mut offset = 0;
        for expected in &inputs {
            let (input, used) = decode_input(&body[offset..], 1).unwrap();
            assert_eq!(&input, expected);
            offset += used;
        }
        assert_eq!(offset, body.len());
    }

    #[test]
    fn damaged_inputs_are_errors_never_panics() {
        let mut body = Vec::new();
        for input in samples() {
            encode_input(&input, &mut body);
        }
        // Every truncation and every single-byte change decodes to an error or to some
        // valid input, never a panic.
        for end in 0..body.len() {
            let _ = decode_input(&body[..end], 1);
        }
        for position in 0..body.len() {
            for delta in [1_u8, 0x80, 0xff] {
                let mut damaged = body.clone();
                damaged[position] = damaged[position].wrapping_add(delta);
                let mut offset = 0;
                while offset < damaged.len() {
                    match decode_input(&damaged[offset..], 1) {
                        Ok((_, used)) => offset += used,
                        Err(_) => break,
                    }
                }
            }
        }
        assert_eq!(decode_input(&[9, 0, 0], 0), Err(CodecError::UnknownKind(9)));
        assert_eq!(decode_input(&[1, 1, 0, 0], 0), Err(CodecError::Length { kind: 1, length: 1 }));
        assert_eq!(decode_input(&[2, 8, 0], 0), Err(CodecError::Truncated));
    }
}
