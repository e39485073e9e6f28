//! Wire protocol: encode/decode round trips of every request and response kind, and one
//! test per `DecodeError` variant with its fatal / frame-local classification.

use proptest::prelude::*;
use rush_engine::{
    AccountView, Reply, ReplyBody, Request, ReservationState, ReservationView, Reserve, ResultCode,
    SkuSpec, SkuView, Target, RESERVE_FLAGS_KNOWN, RESERVE_FLAG_BUY, RESERVE_FLAG_PAY,
};
use rush_net::protocol::{
    decode_request, decode_response, encode_ping_response, encode_request, encode_response,
    ping_topology, DecodeError, ErrorClass, FrameInfo, Opcode, ResponseLayout, Topology,
    HEADER_SIZE, MAX_FRAME_SIZE, REQUEST_SIZE, RESPONSE_SIZE, SKU_RESPONSE_SIZE,
};

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

fn arb_target() -> impl Strategy<Value = Target> {
    prop_oneof![
        any::<u64>().prop_map(Target::Reservation),
        any::<u64>().prop_map(Target::ReserveKey),
    ]
}

fn arb_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Ping),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            0..=RESERVE_FLAGS_KNOWN,
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(|(account, sku, quantity, key, flags, hold_ms, wait_ms)| {
                Request::Reserve(Reserve { account, sku, quantity, key, flags, hold_ms, wait_ms })
            }),
        (any::<u64>(), arb_target(), any::<u64>())
            .prop_map(|(account, target, key)| Request::Confirm { account, target, key }),
        (any::<u64>(), arb_target(), any::<u64>())
            .prop_map(|(account, target, key)| Request::Cancel { account, target, key }),
        any::<u64>().prop_map(|sku| Request::QuerySku { sku }),
        any::<u64>().prop_map(|account| Request::QueryAccount { account }),
        (any::<u64>(), arb_target())
            .prop_map(|(account, target)| Request::QueryReservation { account, target }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(
                |(sku, stock_total, price, per_user_limit, hold_ms, start_ms, end_ms)| {
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
            ),
        (any::<u64>(), any::<i64>(), any::<u64>())
            .prop_map(|(sku, delta, key)| Request::AdjustStock { sku, delta, key }),
        any::<u64>().prop_map(|sku| Request::Pause { sku }),
        any::<u64>().prop_map(|sku| Request::Resume { sku }),
        (any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(account, amount, key)| Request::Deposit { account, amount, key }),
        (any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(account, amount, key)| Request::Withdraw { account, amount, key }),
    ]
}

fn arb_code() -> impl Strategy<Value = ResultCode> {
    prop::sample::select(ResultCode::ALL.to_vec())
}

fn arb_state() -> impl Strategy<Value = ReservationState> {
    (0u8..=6).prop_map(|value| ReservationState::from_u8(value).expect("0..=6 are states"))
}

fn arb_opcode() -> impl Strategy<Value = Opcode> {
    prop::sample::select(Opcode::ALL.to_vec())
}

/// Small values are over-represented so that all-zero bodies are generated too.
fn arb_u64() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), any::<u64>()]
}

fn arb_u32() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), any::<u32>()]
}

fn arb_body() -> impl Strategy<Value = ReplyBody> {
    prop_oneof![
        Just(ReplyBody::None),
        (
            (arb_u64(), arb_u64(), arb_u64(), arb_u32(), arb_u32()),
            (arb_u64(), arb_u64(), arb_state())
        )
            .prop_map(
                |((reservation, account, sku, quantity, flags), (amount, deadline_ms, state))| {
                    ReplyBody::Reservation(ReservationView {
                        reservation,
                        account,
                        sku,
                        quantity,
                        flags,
                        amount,
                        deadline_ms,
                        state,
                    })
                }
            ),
        (
            (arb_u64(), arb_u64(), arb_u64(), arb_u64(), arb_u64(), arb_u64()),
            (arb_u32(), arb_u32(), arb_u64(), arb_u64(), arb_u32(), any::<bool>())
        )
            .prop_map(
                |(
                    (sku, total, available, reserved, sold, price),
                    (per_user_limit, hold_ms, start_ms, end_ms, waiters, paused),
                )| {
                    ReplyBody::Sku(SkuView {
                        sku,
                        total,
                        available,
                        reserved,
                        sold,
                        price,
                        per_user_limit,
                        hold_ms,
                        start_ms,
                        end_ms,
                        waiters,
                        paused,
                    })
                }
            ),
        (arb_u64(), arb_u64(), arb_u64(), arb_u64(), arb_u64(), arb_u64()).prop_map(
            |(account, available, held, spent, deposited, withdrawn)| {
                ReplyBody::Account(AccountView {
                    account,
                    available,
                    held,
                    spent,
                    deposited,
                    withdrawn,
                })
            }
        ),
    ]
}

fn arb_reply() -> impl Strategy<Value = Reply> {
    (arb_code(), arb_code(), arb_body()).prop_map(|(result, original, body)| Reply {
        result,
        original,
        body,
    })
}

/// What a response frame of `opcode` carries of `body`, written independently of the
/// crate's `Opcode::carried_body`.
fn expected_body(opcode: Opcode, body: ReplyBody) -> ReplyBody {
    let carried = match (opcode, body) {
        (
            Opcode::Reserve | Opcode::Confirm | Opcode::Cancel | Opcode::QueryReservation,
            ReplyBody::Reservation(view),
        ) => ReplyBody::Reservation(ReservationView { account: 0, ..view }),
        (Opcode::Deposit | Opcode::Withdraw | Opcode::QueryAccount, ReplyBody::Account(view)) => {
            ReplyBody::Account(AccountView { account: 0, ..view })
        }
        (Opcode::QuerySku, ReplyBody::Sku(view)) => ReplyBody::Sku(view),
        _ => return ReplyBody::None,
    };
    let all_zero = match carried {
        ReplyBody::Reservation(view) => view == ReservationView::default(),
        ReplyBody::Account(view) => view == AccountView::default(),
        ReplyBody::Sku(view) => view == SkuView::default(),
        ReplyBody::None => true,
    };
    if all_zero {
        ReplyBody::None
    } else {
        carried
    }
}

fn encoded_request(request_id: u64, request: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    encode_request(request_id, request, &mut out);
    out
}

fn encoded_response(opcode: Opcode, request_id: u64, reply: &Reply) -> Vec<u8> {
    let mut out = Vec::new();
    encode_response(opcode, request_id, reply, &mut out);
    out
}

// ---------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_096))]

    #[test]
    fn request_round_trip(request_id in any::<u64>(), request in arb_request()) {
        let bytes = encoded_request(request_id, &request);
        prop_assert_eq!(bytes.len(), REQUEST_SIZE);
        let opcode = Opcode::for_request(&request);
        prop_assert_eq!(bytes[3], opcode.as_u8());
        prop_assert_eq!(&bytes[8..16], &request_id.to_le_bytes()[..]);
        let (frame, consumed) = decode_request(&bytes).expect("a valid request decodes");
        prop_assert_eq!(consumed, REQUEST_SIZE);
        prop_assert_eq!(frame.request_id, request_id);
        prop_assert_eq!(frame.request, request);
        prop_assert_eq!(frame.opcode(), opcode);
    }

    #[test]
    fn request_stream_round_trip(
        requests in prop::collection::vec((any::<u64>(), arb_request()), 0..16),
        tail in 0usize..REQUEST_SIZE,
    ) {
        // Pipelining: frames back to back in one buffer, the last one cut short.
        let mut stream = Vec::new();
        for (request_id, request) in &requests {
            encode_request(*request_id, request, &mut stream);
        }
        encode_request(1, &Request::Ping, &mut stream);
        stream.truncate(stream.len() - REQUEST_SIZE + tail);
        let mut rest = &stream[..];
        for (request_id, request) in &requests {
            let (frame, consumed) = decode_request(rest).expect("a valid request decodes");
            prop_assert_eq!(frame.request_id, *request_id);
            prop_assert_eq!(&frame.request, request);
            rest = &rest[consumed..];
        }
        let needed = if tail < 4 { HEADER_SIZE } else { REQUEST_SIZE };
        prop_assert_eq!(decode_request(rest), Err(DecodeError::Incomplete { needed }));
    }

    #[test]
    fn response_round_trip(opcode in arb_opcode(), request_id in any::<u64>(), reply in arb_reply()) {
        let bytes = encoded_response(opcode, request_id, &reply);
        prop_assert_eq!(bytes.len(), opcode.response_size());
        prop_assert_eq!(&bytes[16..18], &(reply.result as u16).to_le_bytes()[..]);
        prop_assert_eq!(&bytes[18..20], &(reply.original as u16).to_le_bytes()[..]);
        let (frame, consumed) = decode_response(&bytes).expect("a valid response decodes");
        prop_assert_eq!(consumed, bytes.len());
        prop_assert_eq!(frame.opcode, opcode);
        prop_assert_eq!(frame.request_id, request_id);
        prop_assert_eq!(frame.result(), reply.result);
        prop_assert_eq!(frame.original(), reply.original);
        let expected = expected_body(opcode, reply.body);
        prop_assert_eq!(frame.body(), expected);
        prop_assert_eq!(opcode.carried_body(&reply.body), expected);
        // Re-encoding the decoded frame gives the same bytes.
        prop_assert_eq!(encoded_response(frame.opcode, frame.request_id, &frame.reply), bytes);
    }

    #[test]
    fn response_with_account_restores_the_account(
        opcode in arb_opcode(),
        reply in arb_reply(),
        account in any::<u64>(),
    ) {
        let bytes = encoded_response(opcode, 1, &reply);
        let (frame, _) = decode_response(&bytes).expect("a valid response decodes");
        let frame = frame.with_account(account);
        match frame.body() {
            ReplyBody::Reservation(view) => prop_assert_eq!(view.account, account),
            ReplyBody::Account(view) => prop_assert_eq!(view.account, account),
            ReplyBody::None | ReplyBody::Sku(_) => {}
        }
    }
}

#[test]
fn opcode_table() {
    for value in 0..=u8::MAX {
        match Opcode::from_u8(value) {
            Some(opcode) => {
                assert_eq!(opcode.as_u8(), value);
                assert!(Opcode::ALL.contains(&opcode));
                assert_eq!(opcode.is_admin(), (0x10..=0x15).contains(&value));
                assert_eq!(opcode.request_size(), 64);
                let response = if opcode == Opcode::QuerySku { 104 } else { 64 };
                assert_eq!(opcode.response_size(), response);
                assert_eq!(opcode.to_string(), opcode.name());
            }
            None => assert!(!((0x01..=0x07).contains(&value) || (0x10..=0x15).contains(&value))),
        }
    }
    assert_eq!(Opcode::ALL.len(), 13);
    assert_eq!((RESPONSE_SIZE, SKU_RESPONSE_SIZE, MAX_FRAME_SIZE), (64, 104, 104));
    assert_eq!(Opcode::Reserve.response_layout(), ResponseLayout::Reservation);
    assert_eq!(Opcode::QuerySku.response_layout(), ResponseLayout::Sku);
    assert_eq!(Opcode::Withdraw.response_layout(), ResponseLayout::Account);
    assert_eq!(Opcode::AdjustStock.response_layout(), ResponseLayout::Plain);
}

#[test]
fn opcode_for_request_matches_is_admin() {
    let requests = [
        Request::Ping,
        Request::QuerySku { sku: 1 },
        Request::PutSku(SkuSpec {
            sku: 1,
            stock_total: 1,
            price: 1,
            per_user_limit: 0,
            hold_ms: 0,
            start_ms: 0,
            end_ms: 0,
        }),
        Request::AdjustStock { sku: 1, delta: -1, key: 1 },
        Request::Pause { sku: 1 },
        Request::Resume { sku: 1 },
        Request::Deposit { account: 1, amount: 1, key: 1 },
        Request::Withdraw { account: 1, amount: 1, key: 1 },
        Request::QueryAccount { account: 1 },
    ];
    for request in requests {
        assert_eq!(Opcode::for_request(&request).is_admin(), request.is_admin(), "{request:?}");
    }
}

// ---------------------------------------------------------------------------------------
// DecodeError variants
// ---------------------------------------------------------------------------------------

const REQUEST_ID: u64 = 0x0102_0304_0506_0708;

fn reserve(flags: u32) -> Request {
    Request::Reserve(Reserve {
        account: 42,
        sku: 1001,
        quantity: 1,
        key: 9001,
        flags,
        hold_ms: 0,
        wait_ms: 0,
    })
}

/// One valid request of every opcode, in `Opcode::ALL` order.
fn one_of_each() -> Vec<Request> {
    let target = Target::Reservation(5);
    vec![
        Request::Ping,
        reserve(RESERVE_FLAG_PAY),
        Request::Confirm { account: 1, target, key: 2 },
        Request::Cancel { account: 1, target, key: 2 },
        Request::QuerySku { sku: 1 },
        Request::QueryAccount { account: 1 },
        Request::QueryReservation { account: 1, target },
        Request::PutSku(SkuSpec {
            sku: 1,
            stock_total: 2,
            price: 3,
            per_user_limit: 4,
            hold_ms: 5,
            start_ms: 6,
            end_ms: 7,
        }),
        Request::AdjustStock { sku: 1, delta: -1, key: 1 },
        Request::Pause { sku: 1 },
        Request::Resume { sku: 1 },
        Request::Deposit { account: 1, amount: 1, key: 1 },
        Request::Withdraw { account: 1, amount: 1, key: 1 },
    ]
}

fn info(opcode: Opcode, length: usize) -> FrameInfo {
    FrameInfo { opcode, request_id: REQUEST_ID, length }
}

#[test]
fn one_of_each_covers_every_opcode() {
    let opcodes: Vec<Opcode> = one_of_each().iter().map(Opcode::for_request).collect();
    assert_eq!(opcodes, Opcode::ALL.to_vec());
}

#[test]
fn bad_magic_is_fatal_from_the_first_byte() {
    let mut bytes = encoded_request(REQUEST_ID, &Request::Ping);
    bytes[0] = 0x53;
    for len in 1..=bytes.len() {
        assert_eq!(decode_request(&bytes[..len]), Err(DecodeError::BadMagic));
    }
    let mut bytes = encoded_request(REQUEST_ID, &Request::Ping);
    bytes[1] = 0x52;
    assert_eq!(decode_request(&bytes[..2]), Err(DecodeError::BadMagic));
    assert_eq!(decode_response(&bytes), Err(DecodeError::BadMagic));
    let err = DecodeError::BadMagic;
    assert!(err.is_fatal() && !err.is_frame_local() && !err.is_incomplete());
    assert_eq!(err.class(), ErrorClass::Fatal);
    assert_eq!((err.frame(), err.request_id(), err.opcode()), (None, None, None));
}

#[test]
fn bad_version_is_fatal() {
    for version in [0u8, 2, 0xff] {
        let mut bytes = encoded_request(REQUEST_ID, &reserve(0));
        bytes[2] = version;
        assert_eq!(decode_request(&bytes[..3]), Err(DecodeError::BadVersion(version)));
        assert_eq!(decode_request(&bytes), Err(DecodeError::BadVersion(version)));
        assert_eq!(decode_response(&bytes), Err(DecodeError::BadVersion(version)));
        assert!(DecodeError::BadVersion(version).is_fatal());
    }
}

#[test]
fn unknown_opcode_is_fatal() {
    for opcode in [0x00u8, 0x08, 0x0f, 0x16, 0x80, 0xff] {
        let mut bytes = encoded_request(REQUEST_ID, &Request::Ping);
        bytes[3] = opcode;
        assert_eq!(decode_request(&bytes[..4]), Err(DecodeError::UnknownOpcode(opcode)));
        assert_eq!(decode_request(&bytes), Err(DecodeError::UnknownOpcode(opcode)));
        assert_eq!(decode_response(&bytes), Err(DecodeError::UnknownOpcode(opcode)));
        assert!(DecodeError::UnknownOpcode(opcode).is_fatal());
    }
}

#[test]
fn wrong_length_is_fatal() {
    for request in one_of_each() {
        let opcode = Opcode::for_request(&request);
        for length in [0u16, 16, 63, 65, 96, 104, 0xffff] {
            let mut bytes = encoded_request(REQUEST_ID, &request);
            bytes[4..6].copy_from_slice(&length.to_le_bytes());
            let expected = DecodeError::BadLength { opcode, length, expected: 64 };
            // Reported as soon as the length field has arrived.
            assert_eq!(decode_request(&bytes[..6]), Err(expected));
            assert_eq!(decode_request(&bytes), Err(expected));
            assert!(expected.is_fatal());
            assert_eq!(expected.opcode(), Some(opcode));
            assert_eq!(expected.request_id(), None);
        }
    }
    // The QUERY_SKU response is 104 bytes; a 64-byte one is wrongly framed.
    let mut bytes = encoded_response(Opcode::QuerySku, REQUEST_ID, &Reply::code(ResultCode::Ok));
    assert_eq!(bytes.len(), 104);
    bytes[4..6].copy_from_slice(&64u16.to_le_bytes());
    assert_eq!(
        decode_response(&bytes),
        Err(DecodeError::BadLength { opcode: Opcode::QuerySku, length: 64, expected: 104 })
    );
    // And a 104-byte QUERY_SKU request is wrongly framed too.
    let mut bytes = encoded_request(REQUEST_ID, &Request::QuerySku { sku: 1 });
    bytes[4..6].copy_from_slice(&104u16.to_le_bytes());
    assert_eq!(
        decode_request(&bytes),
        Err(DecodeError::BadLength { opcode: Opcode::QuerySku, length: 104, expected: 64 })
    );
}

#[test]
fn header_flags_not_zero_is_frame_local() {
    for request in one_of_each() {
        let opcode = Opcode::for_request(&request);
        for flags in [1u16, 0x8000, 0xffff] {
            let mut bytes = encoded_request(REQUEST_ID, &request);
            bytes[6..8].copy_from_slice(&flags.to_le_bytes());
            let expected = DecodeError::HeaderFlagsNotZero { frame: info(opcode, 64), flags };
            assert_eq!(decode_request(&bytes), Err(expected));
            // Only once the whole frame is there (so that it can be skipped).
            assert_eq!(decode_request(&bytes[..63]), Err(DecodeError::Incomplete { needed: 64 }));
            assert!(expected.is_frame_local() && !expected.is_fatal());
            assert_eq!(expected.request_id(), Some(REQUEST_ID));
            assert_eq!(expected.opcode(), Some(opcode));
            assert_eq!(expected.frame(), Some(info(opcode, 64)));
        }
    }
    let mut bytes = encoded_response(Opcode::QuerySku, REQUEST_ID, &Reply::code(ResultCode::Ok));
    bytes[7] = 1;
    assert_eq!(
        decode_response(&bytes),
        Err(DecodeError::HeaderFlagsNotZero { frame: info(Opcode::QuerySku, 104), flags: 0x100 })
    );
}

/// Frame offsets of the reserved bytes of each request, from docs/PROTOCOL.md.
fn request_reserved(opcode: Opcode) -> std::ops::Range<usize> {
    match opcode {
        Opcode::Ping => 16..64,
        Opcode::Reserve => 56..64,
        Opcode::Confirm | Opcode::Cancel => 41..64,
        Opcode::QuerySku | Opcode::QueryAccount | Opcode::Pause | Opcode::Resume => 24..64,
        Opcode::QueryReservation => 33..64,
        Opcode::PutSku => 64..64,
        Opcode::AdjustStock | Opcode::Deposit | Opcode::Withdraw => 40..64,
    }
}

/// Frame offsets of the enumerated fields of each request, from docs/PROTOCOL.md.
fn request_enum_field(opcode: Opcode) -> Option<(std::ops::Range<usize>, &'static str)> {
    match opcode {
        Opcode::Reserve => Some((44..48, "flags")),
        Opcode::Confirm | Opcode::Cancel => Some((40..41, "target_kind")),
        Opcode::QueryReservation => Some((32..33, "target_kind")),
        _ => None,
    }
}

#[test]
fn every_body_byte_is_checked_where_it_must_be() {
    // Set each body byte of a valid frame of each opcode: reserved bytes give
    // ReservedNotZero at that offset, enumerated fields InvalidField, any other byte is data.
    for request in one_of_each() {
        let opcode = Opcode::for_request(&request);
        let valid = encoded_request(REQUEST_ID, &request);
        for offset in HEADER_SIZE..REQUEST_SIZE {
            let mut bytes = valid.clone();
            bytes[offset] = 0x80;
            let result = decode_request(&bytes);
            if request_reserved(opcode).contains(&offset) {
                let expected = DecodeError::ReservedNotZero { frame: info(opcode, 64), offset };
                assert_eq!(result, Err(expected), "{opcode} @{offset}");
                assert!(expected.is_frame_local());
                assert_eq!(expected.request_id(), Some(REQUEST_ID));
            } else if let Some((_, field)) =
                request_enum_field(opcode).filter(|(range, _)| range.contains(&offset))
            {
                let expected = DecodeError::InvalidField { frame: info(opcode, 64), field };
                assert_eq!(result, Err(expected), "{opcode} @{offset}");
            } else {
                let (frame, consumed) = result.expect("a data byte is not validated");
                assert_eq!((frame.request_id, consumed), (REQUEST_ID, 64));
                assert_eq!(frame.opcode(), opcode);
                assert_ne!(frame.request, request, "{opcode} @{offset} is not ignored");
            }
        }
    }
}

#[test]
fn reserved_not_zero_reports_the_first_offset() {
    let mut bytes = encoded_request(REQUEST_ID, &Request::Ping);
    bytes[40] = 1;
    bytes[20] = 1;
    assert_eq!(
        decode_request(&bytes),
        Err(DecodeError::ReservedNotZero { frame: info(Opcode::Ping, 64), offset: 20 })
    );
}

#[test]
fn bad_reserve_flags() {
    for flags in [0, RESERVE_FLAG_PAY, RESERVE_FLAG_BUY, RESERVE_FLAG_PAY | RESERVE_FLAG_BUY] {
        let bytes = encoded_request(REQUEST_ID, &reserve(flags));
        assert_eq!(decode_request(&bytes).map(|(frame, _)| frame.request), Ok(reserve(flags)));
    }
    for flags in [1 << 2, 1 << 31, u32::MAX, RESERVE_FLAG_PAY | 1 << 7] {
        let bytes = encoded_request(REQUEST_ID, &reserve(flags));
        let expected =
            DecodeError::InvalidField { frame: info(Opcode::Reserve, 64), field: "flags" };
        assert_eq!(decode_request(&bytes), Err(expected));
        assert!(expected.is_frame_local());
    }
}

#[test]
fn bad_target_kind() {
    let target = Target::ReserveKey(77);
    for (request, offset) in [
        (Request::Confirm { account: 1, target, key: 2 }, 40),
        (Request::Cancel { account: 1, target, key: 2 }, 40),
        (Request::QueryReservation { account: 1, target }, 32),
    ] {
        let opcode = Opcode::for_request(&request);
        let mut bytes = encoded_request(REQUEST_ID, &request);
        assert_eq!(bytes[offset], 1, "{opcode}: target_kind 1 = reserve key");
        assert_eq!(&bytes[24..32], &77u64.to_le_bytes()[..]);
        for kind in [2u8, 3, 0xff] {
            bytes[offset] = kind;
            let expected =
                DecodeError::InvalidField { frame: info(opcode, 64), field: "target_kind" };
            assert_eq!(decode_request(&bytes), Err(expected));
        }
        bytes[offset] = 0;
        let (frame, _) = decode_request(&bytes).expect("target_kind 0 is valid");
        let expected_target = Target::Reservation(77);
        match frame.request {
            Request::Confirm { target, .. }
            | Request::Cancel { target, .. }
            | Request::QueryReservation { target, .. } => assert_eq!(target, expected_target),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn truncated_frames_are_incomplete() {
    for request in one_of_each() {
        let bytes = encoded_request(REQUEST_ID, &request);
        for len in 0..bytes.len() {
            let needed = if len < 4 { HEADER_SIZE } else { REQUEST_SIZE };
            let expected = DecodeError::Incomplete { needed };
            assert_eq!(decode_request(&bytes[..len]), Err(expected), "{len}");
            assert!(expected.is_incomplete() && !expected.is_fatal() && !expected.is_frame_local());
            assert_eq!(expected.class(), ErrorClass::Incomplete);
        }
    }
    let bytes = encoded_response(Opcode::QuerySku, REQUEST_ID, &Reply::code(ResultCode::Ok));
    for len in 0..bytes.len() {
        let needed = if len < 4 { HEADER_SIZE } else { SKU_RESPONSE_SIZE };
        assert_eq!(decode_response(&bytes[..len]), Err(DecodeError::Incomplete { needed }));
    }
}

#[test]
fn trailing_bytes_are_not_consumed() {
    let mut bytes = encoded_request(REQUEST_ID, &reserve(RESERVE_FLAG_PAY));
    bytes.extend_from_slice(&[0xff; 100]);
    let (frame, consumed) = decode_request(&bytes).expect("valid");
    assert_eq!((frame.request, consumed), (reserve(RESERVE_FLAG_PAY), 64));
}

#[test]
fn invalid_response_fields() {
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
    let reply = Reply::with_body(ResultCode::Ok, ReplyBody::Reservation(view));
    let valid = encoded_response(Opcode::Reserve, REQUEST_ID, &reply);
    let frame = info(Opcode::Reserve, 64);
    // The first code past the last one defined.
    let unknown_code = ResultCode::ALL.len() as u8;
    for (offset, value, field) in
        [(16, unknown_code, "result"), (18, 0xff, "original_result"), (20, 7, "state")]
    {
        let mut bytes = valid.clone();
        bytes[offset] = value;
        assert_eq!(decode_response(&bytes), Err(DecodeError::InvalidField { frame, field }));
    }
    for offset in 21..24 {
        let mut bytes = valid.clone();
        bytes[offset] = 1;
        assert_eq!(decode_response(&bytes), Err(DecodeError::ReservedNotZero { frame, offset }));
    }
    // The SKU response: paused is 0 or 1; reserved bytes at 21..24 and 100..104.
    let sku = SkuView { sku: 1001, paused: true, ..SkuView::default() };
    let valid = encoded_response(
        Opcode::QuerySku,
        REQUEST_ID,
        &Reply::with_body(ResultCode::Ok, ReplyBody::Sku(sku)),
    );
    assert_eq!(valid[20], 1);
    let frame = info(Opcode::QuerySku, 104);
    let mut bytes = valid.clone();
    bytes[20] = 2;
    assert_eq!(decode_response(&bytes), Err(DecodeError::InvalidField { frame, field: "paused" }));
    for offset in (21..24).chain(100..104) {
        let mut bytes = valid.clone();
        bytes[offset] = 1;
        assert_eq!(decode_response(&bytes), Err(DecodeError::ReservedNotZero { frame, offset }));
    }
    // Plain, ping and account responses (PING's bytes 20..26 are its topology).
    for (opcode, reserved) in
        [(Opcode::Pause, 20..64), (Opcode::Ping, 26..64), (Opcode::Deposit, 20..24)]
    {
        let valid = encoded_response(opcode, REQUEST_ID, &Reply::code(ResultCode::Ok));
        for offset in reserved {
            let mut bytes = valid.clone();
            bytes[offset] = 1;
            assert_eq!(
                decode_response(&bytes),
                Err(DecodeError::ReservedNotZero { frame: info(opcode, 64), offset })
            );
        }
    }
}

#[test]
fn body_of_another_kind_is_not_carried() {
    let account = AccountView { account: 1, available: 5, ..AccountView::default() };
    let reply = Reply::with_body(ResultCode::Ok, ReplyBody::Account(account));
    for opcode in [Opcode::Reserve, Opcode::QuerySku, Opcode::AdjustStock, Opcode::Ping] {
        let bytes = encoded_response(opcode, REQUEST_ID, &reply);
        assert!(bytes[20..].iter().all(|&byte| byte == 0), "{opcode}");
        let (frame, _) = decode_response(&bytes).expect("valid");
        assert_eq!(frame.body(), ReplyBody::None);
    }
}

#[test]
fn duplicate_carries_the_original_code() {
    let reply = Reply {
        result: ResultCode::Duplicate,
        original: ResultCode::Ok,
        body: ReplyBody::Account(AccountView {
            available: 10,
            deposited: 10,
            ..Default::default()
        }),
    };
    let bytes = encoded_response(Opcode::Deposit, 9, &reply);
    assert_eq!(&bytes[16..20], &[1, 0, 0, 0]);
    let (frame, _) = decode_response(&bytes).expect("valid");
    assert_eq!((frame.result(), frame.original()), (ResultCode::Duplicate, ResultCode::Ok));
}

#[test]
fn errors_display_and_are_std_errors() {
    let frame = info(Opcode::Reserve, 64);
    let errors = [
        DecodeError::Incomplete { needed: 64 },
        DecodeError::BadMagic,
        DecodeError::BadVersion(2),
        DecodeError::UnknownOpcode(0x42),
        DecodeError::BadLength { opcode: Opcode::Ping, length: 1, expected: 64 },
        DecodeError::HeaderFlagsNotZero { frame, flags: 1 },
        DecodeError::ReservedNotZero { frame, offset: 60 },
        DecodeError::InvalidField { frame, field: "flags" },
    ];
    for err in errors {
        let boxed: Box<dyn std::error::Error> = Box::new(err);
        assert!(!boxed.to_string().is_empty());
        let classes = [err.is_incomplete(), err.is_frame_local(), err.is_fatal()];
        assert_eq!(classes.iter().filter(|&&class| class).count(), 1, "{err}");
        assert_eq!(err.frame().is_some(), err.is_frame_local());
    }
    assert!(DecodeError::UnknownOpcode(0x42).to_string().contains("0x42"));
}

#[test]
fn ping_responses_carry_the_topology() {
    let mut bytes = Vec::new();
    let topology = Topology { shard_count: 4, shard: 3, shard_port_base: 7170 };
    encode_ping_response(REQUEST_ID, topology, &mut bytes);
    assert_eq!(bytes.len(), 64);
    assert_eq!(&bytes[20..26], &[4, 0, 3, 0, 0x02, 0x1c]);
    let (frame, consumed) = decode_response(&bytes).unwrap();
    assert_eq!(
        (frame.opcode, frame.request_id, frame.result(), consumed),
        (Opcode::Ping, REQUEST_ID, ResultCode::Ok, 64)
    );
    assert_eq!(ping_topology(&bytes), Some(topology));
    // Not a PING response, or not a valid frame: no topology.
    assert_eq!(
        ping_topology(&encoded_response(Opcode::Pause, 1, &Reply::code(ResultCode::Ok))),
        None
    );
    assert_eq!(ping_topology(&bytes[..40]), None);
}
