//! Wire protocol: the decoders never panic, whatever the bytes.
//!
//! Arbitrary byte strings, byte strings with a plausible header, and valid frames with
//! random bytes flipped go to `decode_request` and `decode_response`. Every outcome must be
//! consistent: an `Ok` consumed exactly its length field (never more than the input) and
//! re-encodes to the same bytes; an `Incomplete` asks for more than the input holds; a
//! frame-local error names a frame that is entirely in the input.

use proptest::prelude::*;
use rush_engine::{
    Reply, ReplyBody, Request, ReservationState, ReservationView, Reserve, ResultCode, SkuView,
    Target, RESERVE_FLAG_PAY,
};
use rush_net::protocol::{
    decode_request, decode_response, encode_request, encode_response, DecodeError, ErrorClass,
    Opcode, HEADER_SIZE, MAGIC, MAX_FRAME_SIZE, VERSION,
};

/// Which decoder.
#[derive(Clone, Copy, Debug)]
enum Direction {
    Request,
    Response,
}

fn check_error(bytes: &[u8], err: DecodeError, direction: Direction) {
    assert!(!err.to_string().is_empty());
    match err.class() {
        ErrorClass::Incomplete => {
            let DecodeError::Incomplete { needed } = err else {
                panic!("{err:?} is classified Incomplete");
            };
            assert!(needed > bytes.len(), "{err}: input has {} bytes", bytes.len());
            assert!((HEADER_SIZE..=MAX_FRAME_SIZE).contains(&needed), "{err}");
        }
        ErrorClass::FrameLocal => {
            let frame = err.frame().expect("frame-local errors name their frame");
            assert!(frame.length <= bytes.len(), "{err}: the whole frame is in the input");
            let size = match direction {
                Direction::Request => frame.opcode.request_size(),
                Direction::Response => frame.opcode.response_size(),
            };
            assert_eq!(frame.length, size);
            assert_eq!(&bytes[8..16], &frame.request_id.to_le_bytes()[..]);
            if let DecodeError::ReservedNotZero { offset, .. } = err {
                assert!((HEADER_SIZE..frame.length).contains(&offset));
                assert_ne!(bytes[offset], 0);
            }
        }
        ErrorClass::Fatal => assert!(err.frame().is_none()),
    }
}

fn check_request(bytes: &[u8]) {
    match decode_request(bytes) {
        Ok((frame, consumed)) => {
            let length = usize::from(u16::from_le_bytes([bytes[4], bytes[5]]));
            assert_eq!(consumed, length);
            assert!(consumed <= bytes.len());
            assert_eq!(consumed, frame.opcode().request_size());
            // A decoded frame re-encodes to exactly the bytes it came from.
            let mut again = Vec::new();
            encode_request(frame.request_id, &frame.request, &mut again);
            assert_eq!(&again[..], &bytes[..consumed]);
        }
        Err(err) => check_error(bytes, err, Direction::Request),
    }
}

fn check_response(bytes: &[u8]) {
    match decode_response(bytes) {
        Ok((frame, consumed)) => {
            let length = usize::from(u16::from_le_bytes([bytes[4], bytes[5]]));
            assert_eq!(consumed, length);
            assert!(consumed <= bytes.len());
            assert_eq!(consumed, frame.opcode.response_size());
            let mut again = Vec::new();
            encode_response(frame.opcode, frame.request_id, &frame.reply, &mut again);
            if frame.opcode == Opcode::Ping {
                // The topology (bytes 20..26) is not part of `Reply`; it reads back as is.
                let topology = rush_net::protocol::ping_topology(bytes).expect("a valid PING");
                let mut expected = Vec::new();
                rush_net::protocol::encode_ping_response(frame.request_id, topology, &mut expected);
                again[20..26].copy_from_slice(&expected[20..26]);
            }
            assert_eq!(&again[..], &bytes[..consumed]);
        }
        Err(err) => check_error(bytes, err, Direction::Response),
    }
}

fn check_both(bytes: &[u8]) {
    check_request(bytes);
    check_response(bytes);
}

/// A header that passes the framing checks more often than random bytes do: right magic and
/// version, an opcode near the valid ones, a length near the valid ones, then random bytes.
fn plausible_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![prop::sample::select(Opcode::ALL.map(Opcode::as_u8).to_vec()), any::<u8>()],
        prop_oneof![Just(64u16), Just(104u16), any::<u16>()],
        prop_oneof![Just(0u16), any::<u16>()],
        any::<u64>(),
        prop::collection::vec(prop_oneof![3 => Just(0u8), 1 => any::<u8>()], 0..120),
    )
        .prop_map(|(opcode, length, flags, request_id, body)| {
            let mut bytes = Vec::with_capacity(HEADER_SIZE + body.len());
            bytes.extend_from_slice(&MAGIC.to_le_bytes());
            bytes.push(VERSION);
            bytes.push(opcode);
            bytes.extend_from_slice(&length.to_le_bytes());
            bytes.extend_from_slice(&flags.to_le_bytes());
            bytes.extend_from_slice(&request_id.to_le_bytes());
            bytes.extend_from_slice(&body);
            bytes
        })
}

fn valid_frames() -> Vec<Vec<u8>> {
    let reserve = Reserve {
        account: 42,
        sku: 1001,
        quantity: 1,
        key: 9001,
        flags: RESERVE_FLAG_PAY,
        hold_ms: 0,
        wait_ms: 0,
    };
    let requests = [
        Request::Ping,
        Request::Reserve(reserve),
        Request::Confirm { account: 42, target: Target::ReserveKey(9001), key: 9002 },
        Request::Cancel { account: 42, target: Target::Reservation(1 << 32), key: 9003 },
        Request::QuerySku { sku: 1001 },
        Request::QueryAccount { account: 42 },
        Request::QueryReservation { account: 42, target: Target::ReserveKey(9001) },
        Request::AdjustStock { sku: 1001, delta: -5, key: 3 },
        Request::Deposit { account: 42, amount: 10_000, key: 4 },
    ];
    let mut frames = Vec::new();
    for (request_id, request) in requests.iter().enumerate() {
        let mut bytes = Vec::new();
        encode_request(request_id as u64, request, &mut bytes);
        frames.push(bytes);
    }
    let view = ReservationView {
        reservation: 1 << 32,
        account: 42,
        sku: 1001,
        quantity: 1,
        flags: RESERVE_FLAG_PAY,
        amount: 4999,
        deadline_ms: 1_767_225_630_000,
        state: ReservationState::Held,
    };
    let sku = SkuView { sku: 1001, total: 100, available: 99, reserved: 1, ..SkuView::default() };
    for (opcode, reply) in [
        (Opcode::Reserve, Reply::with_body(ResultCode::Ok, ReplyBody::Reservation(view))),
        (Opcode::QuerySku, Reply::with_body(ResultCode::Ok, ReplyBody::Sku(sku))),
        (Opcode::Ping, Reply::code(ResultCode::Ok)),
        (Opcode::Withdraw, Reply::code(ResultCode::InsufficientFunds)),
    ] {
        let mut bytes = Vec::new();
        encode_response(opcode, 77, &reply, &mut bytes);
        frames.push(bytes);
    }
    frames
}

/// A valid frame (request or response, possibly followed by a second one) with some bytes
/// XOR-ed, possibly truncated.
fn mutated_frame() -> impl Strategy<Value = Vec<u8>> {
    let frames = valid_frames();
    let count = frames.len();
    (
        0..count,
        0..count,
        any::<bool>(),
        prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(move |(first, second, two, flips, cut, truncate)| {
            let mut bytes = frames[first].clone();
            if two {
                bytes.extend_from_slice(&frames[second]);
            }
            for (index, mask) in flips {
                let at = index.index(bytes.len());
                bytes[at] ^= mask;
            }
            if truncate {
                let len = cut.index(bytes.len() + 1);
                bytes.truncate(len);
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_both(&bytes);
    }

    #[test]
    fn plausible_frames_never_panic(bytes in plausible_frame()) {
        check_both(&bytes);
    }

    #[test]
    fn mutated_valid_frames_never_panic(bytes in mutated_frame()) {
        check_both(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// A reader that decodes a stream frame by frame, skipping frame-local errors, never
    /// loops: each step consumes bytes, waits, or stops.
    #[test]
    fn stream_reader_always_progresses(
        frames in prop::collection::vec(mutated_frame(), 0..8),
    ) {
        let stream: Vec<u8> = frames.concat();
        let mut rest = &stream[..];
        let mut steps = 0;
        while !rest.is_empty() {
            steps += 1;
            prop_assert!(steps <= stream.len());
            match decode_request(rest) {
                Ok((_, consumed)) => rest = &rest[consumed..],
                Err(err) => match (err.class(), err.frame()) {
                    (ErrorClass::FrameLocal, Some(frame)) => rest = &rest[frame.length..],
                    (ErrorClass::Incomplete, _) | (ErrorClass::Fatal, _) => break,
                    (ErrorClass::FrameLocal, None) => prop_assert!(false, "{err:?}"),
                },
            }
        }
    }
}

#[test]
fn every_short_prefix_of_every_header() {
    // Exhaustive over the first two bytes, and over the opcode byte with a valid prefix.
    for first in 0..=u8::MAX {
        for second in 0..=u8::MAX {
            check_both(&[first, second]);
        }
    }
    for opcode in 0..=u8::MAX {
        for len in 3..=20 {
            let mut bytes = vec![0x52, 0x53, VERSION, opcode, 64, 0];
            bytes.resize(len, 0);
            check_both(&bytes);
        }
    }
}
