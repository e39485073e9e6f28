//! Checks the fuzz targets share. Each target is one file of `src/bin/` (see Cargo.toml);
//! what more than one target asserts is here, so that a target reads as what it feeds and
//! what it expects.
//!
//! A check panics (with a message saying which property broke) when the code under test
//! breaks a property: libFuzzer reports the panic as a crash and keeps the input.

use std::collections::HashMap;

use rush_net::capture::{Capture, KIND_FRAME};
use rush_net::protocol::{
    decode_request, DecodeError, ErrorClass, Opcode, HEADER_SIZE, MAX_FRAME_SIZE,
};
use rush_tools::capture::replay::plan::{self, Expect, Pace, Plan, ScheduleError};

/// Which decoder produced an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

/// What a decoder returns: a frame and the bytes it took, or why not.
pub type Decoded<T> = Result<(T, usize), DecodeError>;

/// Checks that `error`, returned by `decode(bytes)`, is consistent with `bytes` and with its
/// class (the contract of `DecodeError::class` that servers and clients act on):
///
/// - `Incomplete { needed }` asks for more than the input holds, at most one frame;
/// - a frame-local error names a frame that is entirely in the input, with the right size
///   and the request id of the header, and (reserved bytes) an offset in the body holding
///   a non-zero byte;
/// - a fatal error names no frame and is decided by the first 6 header bytes (magic,
///   version, opcode, length): the same prefix alone gives the same error, so a server
///   can close the connection as soon as they arrive.
pub fn check_decode_error<T: std::fmt::Debug>(
    bytes: &[u8],
    error: &DecodeError,
    direction: Direction,
    decode: fn(&[u8]) -> Decoded<T>,
) {
    assert!(!error.to_string().is_empty(), "{error:?} displays as nothing");
    match error.class() {
        ErrorClass::Incomplete => {
            let DecodeError::Incomplete { needed } = *error else {
                panic!("{error:?} is classified Incomplete");
            };
            assert!(needed > bytes.len(), "{error}: the input has {} bytes", bytes.len());
            assert!((HEADER_SIZE..=MAX_FRAME_SIZE).contains(&needed), "{error}");
            assert!(error.frame().is_none(), "{error:?}");
        }
        ErrorClass::FrameLocal => {
            let frame = error.frame().expect("a frame-local error names its frame");
            assert!(frame.length <= bytes.len(), "{error}: the frame is not all in the input");
            assert_eq!(frame.length, frame_size(frame.opcode, direction), "{error:?}");
            assert_eq!(bytes[8..16], frame.request_id.to_le_bytes(), "{error:?}");
            assert_eq!(error.opcode(), Some(frame.opcode));
            if let DecodeError::ReservedNotZero { offset, .. } = *error {
                assert!((HEADER_SIZE..frame.length).contains(&offset), "{error:?}");
                assert_ne!(bytes[offset], 0, "{error:?}: the byte is zero");
            }
            check_prefixes(bytes, frame.length, decode);
        }
        ErrorClass::Fatal => {
            assert!(error.frame().is_none(), "{error:?}");
            let header = &bytes[..bytes.len().min(6)];
            match decode(header) {
                Err(again) => assert_eq!(&again, error, "the first 6 bytes decide a fatal error"),
                Ok(frame) => panic!("{header:02x?} decodes as {frame:?}, all of it {error:?}"),
            }
        }
    }
}

/// Checks that every strict prefix of a frame of `length` bytes (one that decoded, or whose
/// error is frame-local) is `Incomplete`: a reader waits for the rest.
pub fn check_prefixes<T: std::fmt::Debug>(
    bytes: &[u8],
    length: usize,
    decode: fn(&[u8]) -> Decoded<T>,
) {
    for cut in 0..length {
        match decode(&bytes[..cut]) {
            Err(error) if error.is_incomplete() => {}
            other => panic!("the first {cut} of the {length} bytes of a frame give {other:?}"),
        }
    }
}

fn frame_size(opcode: Opcode, direction: Direction) -> usize {
    match direction {
        Direction::Request => opcode.request_size(),
        Direction::Response => opcode.response_size(),
    }
}

/// The bytes of `capture` as a file (header, then records): what `write_capture` writes.
pub fn capture_bytes(capture: &Capture) -> Vec<u8> {
    let mut bytes = bytemuck::bytes_of(&capture.header).to_vec();
    for record in &capture.records {
        bytes.extend_from_slice(bytemuck::bytes_of(record));
    }
    bytes
}

/// The paces a replay is built at: each flag's ordinary value and its extremes among what
/// `replay::validate` accepts (a speed or rate that is finite and above 0, a rate at most
/// 50,000,000/s, a window 1..=65,536).
pub const PACES: [Pace; 8] = [
    Pace::Original { speed: 1.0 },
    Pace::Original { speed: 1e-9 },
    Pace::Original { speed: f64::MIN_POSITIVE },
    Pace::Original { speed: f64::MAX },
    Pace::Rate { per_second: 1.0 },
    Pace::Rate { per_second: 50_000_000.0 },
    Pace::Rate { per_second: f64::MIN_POSITIVE },
    Pace::TopSpeed { window: 16 },
];

/// Loop counts the schedule is checked for (`--loop` is a u32 from 1).
const LOOPS: [u32; 5] = [1, 2, 1000, 1 << 20, u32::MAX];

/// Builds the replay's plan of `capture` at the default pace (the original one, admin
/// connections replayed) and at the pace `selector` picks among [`PACES`], admin connections
/// skipped when it is odd past them, and checks each: [`check_plan`], and the schedule of
/// [`LOOPS`] loops. (Two plans rather than all sixteen keep a run fast; the selector lets
/// the fuzzer reach every pace.)
pub fn check_plans(capture: &Capture, selector: u64) {
    let default = Pace::Original { speed: 1.0 };
    let chosen = PACES[(selector % PACES.len() as u64) as usize];
    let skip_admin = (selector / PACES.len() as u64) % 2 == 1;
    for (pace, skip_admin) in [(default, false), (chosen, skip_admin)] {
        let plan = plan::build(capture, pace, skip_admin);
        check_plan(capture, &plan, pace, skip_admin);
        check_schedule(&plan);
    }
}

/// What a connection of a capture holds, in file order.
#[derive(Default)]
struct Captured<'a> {
    admin: bool,
    frames: Vec<&'a [u8]>,
}

/// Checks a plan against the capture it was built from:
///
/// - every connection of the capture is there once (less the admin ones when skipped, which
///   are counted), with its frames byte for byte in file order, each expecting what the
///   server does with it (`decode_request`);
/// - a connection's times are ordered: open, then its frames in order, then its close;
///   connections start in order of their open time;
/// - `close_order` is a permutation and `close_rank` its inverse; `after` counts
///   connections;
/// - every time of a loop is at most the loop's span (so loops do not overlap), and at top
///   speed there is no time at all;
/// - `max_wait_ms` is the longest `wait_ms` of a replayed RESERVE frame.
pub fn check_plan(capture: &Capture, plan: &Plan, pace: Pace, skip_admin: bool) {
    let mut order: Vec<u64> = Vec::new();
    let mut captured: HashMap<u64, Captured<'_>> = HashMap::new();
    for record in &capture.records {
        let id = record.connection.get();
        let entry = captured.entry(id).or_insert_with(|| {
            order.push(id);
            Captured::default()
        });
        entry.admin |= record.admin == 1;
        if record.kind == KIND_FRAME {
            entry.frames.push(record.bytes());
        }
    }
    let (mut kept, mut skipped_connections, mut skipped_frames, mut frames) = (0, 0, 0, 0);
    for id in &order {
        let connection = &captured[id];
        if skip_admin && connection.admin {
            skipped_connections += 1;
            skipped_frames += connection.frames.len() as u64;
        } else {
            kept += 1;
            frames += connection.frames.len() as u64;
        }
    }
    assert_eq!(plan.connections.len(), kept, "replayed connections");
    assert_eq!(
        (plan.skipped_connections, plan.skipped_frames),
        (skipped_connections, skipped_frames)
    );
    assert_eq!(plan.frames, frames, "replayed frames");

    let mut max_wait_ms = 0;
    let mut seen = HashMap::new();
    for (index, connection) in plan.connections.iter().enumerate() {
        assert!(seen.insert(connection.captured, index).is_none(), "a connection twice");
        let source = captured.get(&connection.captured).expect("a captured connection");
        assert_eq!(connection.admin, source.admin);
        assert!(!(skip_admin && connection.admin), "a skipped admin connection is replayed");
        assert_eq!(connection.frames.len(), source.frames.len());
        let mut previous = connection.open_ns;
        for (frame, &bytes) in connection.frames.iter().zip(&source.frames) {
            assert_eq!(frame.bytes(), bytes, "a frame is sent as captured");
            let expect = match decode_request(bytes) {
                Ok((decoded, _)) => Expect::Reply { request_id: decoded.request_id },
                Err(error) => match error.request_id() {
                    Some(request_id) => Expect::Reply { request_id },
                    None => Expect::FramingFailure { closes: error.is_fatal() },
                },
            };
            assert_eq!(frame.expect, expect, "{bytes:02x?}");
            assert!(frame.at_ns >= previous, "frames out of order in connection {index}");
            previous = frame.at_ns;
            if bytes.len() == 64 && bytes[3] == Opcode::Reserve.as_u8() {
                max_wait_ms =
                    max_wait_ms.max(u32::from_le_bytes(bytes[52..56].try_into().unwrap()));
            }
        }
        if let Some(close_ns) = connection.close_ns {
            assert!(close_ns >= previous, "connection {index} closes before its last event");
        }
        if index > 0 {
            assert!(plan.connections[index - 1].open_ns <= connection.open_ns, "start order");
        }
        assert!(connection.after <= plan.connections.len());
        assert_eq!(plan.close_order.get(connection.close_rank), Some(&index), "close rank");
    }
    assert_eq!(plan.max_wait_ms, max_wait_ms);
    let mut ranks = plan.close_order.clone();
    ranks.sort_unstable();
    assert!(ranks.iter().copied().eq(0..plan.connections.len()), "close order is a permutation");

    let last = plan.last_event_ns();
    match pace {
        Pace::TopSpeed { .. } => assert_eq!((last, plan.loop_span_ns), (0, 0), "top speed times"),
        _ => assert!(last <= plan.loop_span_ns, "an event at {last} ns, after the loop's span"),
    }
}

/// Checks `schedule_end_ns` for [`LOOPS`] loops against the same sum in 128 bits, and that
/// where it accepts, every time the driver computes (the last loop's offset plus any event
/// of the plan) fits in u64 and within the end: the driver adds them unchecked.
pub fn check_schedule(plan: &Plan) {
    let last = plan.last_event_ns();
    for loops in LOOPS {
        let end = u128::from(loops - 1) * u128::from(plan.loop_span_ns) + u128::from(last);
        match plan.schedule_end_ns(loops) {
            Ok(end_ns) => {
                assert_eq!(u128::from(end_ns), end);
                assert!(end_ns <= plan::SCHEDULE_NS_MAX);
                let offset = plan.loop_offset_ns(loops - 1);
                for connection in &plan.connections {
                    let times = connection.frames.iter().map(|frame| frame.at_ns);
                    for time in times.chain([connection.open_ns]).chain(connection.close_ns) {
                        let due = offset.checked_add(time).expect("an event time overflows");
                        assert!(due <= end_ns, "an event after the schedule's end");
                    }
                }
            }
            Err(ScheduleError::Overflow { .. }) => {
                assert!(end > u128::from(u64::MAX), "{loops} loops refused as overflowing");
            }
            Err(ScheduleError::TooLong { end_ns }) => {
                assert_eq!(u128::from(end_ns), end);
                assert!(end_ns > plan::SCHEDULE_NS_MAX);
            }
        }
    }
}

/// The engine capacities of the journal and snapshot targets: tiny, so that building an
/// engine per input costs microseconds (the readers' checks do not depend on the sizes).
pub fn journal_engine_config() -> rush_engine::Config {
    rush_engine::Config {
        sku_max: 4,
        account_max: 8,
        reservation_max: 8,
        waitlist_max: 4,
        request_key_max: 16,
        request_key_retention_ms: 20_000,
        limit_entry_max: 8,
        quantity_max: 4,
        hold_ms_default: 1_000,
        hold_ms_max: 10_000,
        wait_ms_max: 10_000,
    }
}

/// `bytes` with a snapshot header's `body_length`, `checksum_body` and `checksum_header`
/// made right, so that the fuzzer's inputs reach the body's decoders (random bytes almost
/// never carry valid checksums). Shorter than a header: unchanged.
pub fn with_snapshot_checksums(bytes: &[u8]) -> Vec<u8> {
    use rush_runtime::journal::snapshot::SNAPSHOT_HEADER_SIZE;
    use xxhash_rust::xxh3::xxh3_64;
    let mut fixed = bytes.to_vec();
    if fixed.len() < SNAPSHOT_HEADER_SIZE {
        return fixed;
    }
    let body_length = (fixed.len() - SNAPSHOT_HEADER_SIZE) as u64;
    fixed[64..72].copy_from_slice(&body_length.to_le_bytes());
    let checksum_body = xxh3_64(&fixed[SNAPSHOT_HEADER_SIZE..]);
    fixed[72..80].copy_from_slice(&checksum_body.to_le_bytes());
    let checksum_header = xxh3_64(&fixed[..88]);
    fixed[88..96].copy_from_slice(&checksum_header.to_le_bytes());
    fixed
}
