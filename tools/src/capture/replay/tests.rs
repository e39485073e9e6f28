//! Unit tests of the replay: the schedule of each pace, the admin and framing rules, the
//! flags, and the driver against a small fake server on loopback.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::{Duration, Instant};

use clap::Parser;
use rush_engine::{Reply, Request, Reserve, ResultCode};
use rush_net::capture::{Record, KIND_CLOSE, KIND_FRAME, KIND_OPEN};
use rush_net::protocol::{encode_request, encode_response, Opcode};

use super::driver::{run_worker, Shared};
use super::plan::{build, Expect, Pace, Plan};
use super::*;
use crate::capture::capture_of;
use crate::measure::workers::{Progress, Reporter};

fn ping(id: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_request(id, &Request::Ping, &mut bytes);
    bytes
}

fn open(ns: u64, connection: u64, admin: bool) -> Record {
    Record::new(ns, connection, KIND_OPEN, admin, 0, &[])
}

fn frame(ns: u64, connection: u64, admin: bool, bytes: &[u8]) -> Record {
    Record::new(ns, connection, KIND_FRAME, admin, 0, bytes)
}

fn close(ns: u64, connection: u64, admin: bool) -> Record {
    Record::new(ns, connection, KIND_CLOSE, admin, 0, &[])
}

/// Connection 1 (public): OPEN 1000, frames 1500 and 3000, CLOSE 4000. Connection 2
/// (admin, on another shard, so its records come later in the file): OPEN 2000, frame
/// 2500, CLOSE 2600.
fn two_connections() -> Vec<Record> {
    vec![
        open(1000, 1, false),
        frame(1500, 1, false, &ping(1)),
        frame(3000, 1, false, &ping(2)),
        close(4000, 1, false),
        open(2000, 2, true),
        frame(2500, 2, true, &ping(1)),
        close(2600, 2, true),
    ]
}

fn times(plan: &Plan) -> Vec<(u64, u64, Option<u64>, Vec<u64>)> {
    plan.connections
        .iter()
        .map(|c| (c.captured, c.open_ns, c.close_ns, c.frames.iter().map(|f| f.at_ns).collect()))
        .collect()
}

#[test]
fn the_original_pace_scales_every_time_from_the_first_record() {
    let capture = capture_of(0, two_connections());
    let plan = build(&capture, Pace::Original { speed: 2.0 }, false);
    assert_eq!(
        times(&plan),
        vec![(1, 0, Some(1500), vec![250, 1000]), (2, 500, Some(800), vec![750])]
    );
    assert!(plan.connections[1].admin && !plan.connections[0].admin);
    assert_eq!(plan.loop_span_ns, 1500);
    assert_eq!((plan.frames, plan.skipped_connections, plan.skipped_frames), (3, 0, 0));
    // Half speed: twice the times.
    let plan = build(&capture, Pace::Original { speed: 0.5 }, false);
    assert_eq!(times(&plan)[0], (1, 0, Some(6000), vec![1000, 4000]));
}

#[test]
fn a_rate_spaces_every_frame_evenly_in_global_receive_order() {
    let capture = capture_of(0, two_connections());
    // 1000 frames/s: one per ms, in receive order 1500 (c1), 2500 (c2), 3000 (c1).
    let plan = build(&capture, Pace::Rate { per_second: 1000.0 }, false);
    let ms = 1_000_000;
    assert_eq!(
        times(&plan),
        vec![(1, 0, Some(3 * ms), vec![0, 2 * ms]), (2, ms, Some(2 * ms), vec![ms])]
    );
    assert_eq!(plan.loop_span_ns, 3 * ms);
}

#[test]
fn admin_none_skips_the_admin_connections_and_counts_them() {
    let capture = capture_of(0, two_connections());
    let plan = build(&capture, Pace::Original { speed: 1.0 }, true);
    assert_eq!(times(&plan), vec![(1, 0, Some(3000), vec![500, 2000])]);
    assert_eq!((plan.frames, plan.skipped_connections, plan.skipped_frames), (2, 1, 1));
}

#[test]
fn a_connection_without_open_starts_at_its_first_frame_and_one_without_close_lingers() {
    let records = vec![frame(100, 9, false, &ping(1)), frame(300, 9, false, &ping(2))];
    let plan = build(&capture_of(0, records), Pace::Original { speed: 1.0 }, false);
    assert_eq!(times(&plan), vec![(9, 0, None, vec![0, 200])]);
}

#[test]
fn top_speed_orders_only_connections_the_capture_proves_ordered() {
    // A [0, 10], B [5, 20], C [15, 30], D [40, never closed].
    let records = vec![
        open(0, 0xA, false),
        open(5, 0xB, false),
        close(10, 0xA, false),
        open(15, 0xC, false),
        close(20, 0xB, false),
        close(30, 0xC, false),
        open(40, 0xD, false),
    ];
    let plan = build(&capture_of(0, records), Pace::TopSpeed { window: 4 }, false);
    let order: Vec<(u64, usize, usize)> =
        plan.connections.iter().map(|c| (c.captured, c.after, c.close_rank)).collect();
    // B overlaps A: no wait; C opened after A closed; D after all three.
    assert_eq!(order, vec![(0xA, 0, 0), (0xB, 0, 1), (0xC, 1, 2), (0xD, 3, 3)]);
    assert_eq!(plan.close_order, vec![0, 1, 2, 3]);
}

#[test]
fn frames_are_classified_by_what_the_server_will_do_with_them() {
    let reserve =
        Reserve { account: 1, sku: 2, quantity: 1, key: 3, flags: 0, hold_ms: 0, wait_ms: 250 };
    let mut parked = Vec::new();
    encode_request(7, &Request::Reserve(reserve), &mut parked);
    let mut bad_reserved = ping(8);
    bad_reserved[40] = 1; // a reserved byte: answered BAD_REQUEST, the connection goes on
    let records = vec![
        frame(1, 1, false, &parked),
        frame(2, 1, false, &bad_reserved),
        frame(3, 1, false, b"HELLO"),
        frame(4, 2, false, &ping(9)[..20]),
    ];
    let plan = build(&capture_of(0, records), Pace::TopSpeed { window: 1 }, false);
    let expects: Vec<Expect> =
        plan.connections.iter().flat_map(|c| c.frames.iter().map(|f| f.expect)).collect();
    assert_eq!(
        expects,
        vec![
            Expect::Reply { request_id: 7 },
            Expect::Reply { request_id: 8 },
            Expect::FramingFailure { closes: true },
            Expect::FramingFailure { closes: false },
        ]
    );
    assert_eq!(plan.connections[0].frames[2].bytes(), b"HELLO", "sent byte for byte");
    assert_eq!(plan.max_wait_ms, 250);
}

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    replay: ReplayArgs,
}

fn settings(args: &[&str]) -> anyhow::Result<Settings> {
    let cli = Cli::try_parse_from(["replay", "c.rushcap"].iter().chain(args))?;
    validate(&cli.replay)
}

#[test]
fn flags_are_validated() {
    let error = |args: &[&str]| settings(args).err().map(|e| e.to_string()).unwrap_or_default();
    let target = "--target=127.0.0.1:7070";
    let plain = settings(&[target]).unwrap();
    assert_eq!(plain.pace, Pace::Original { speed: 1.0 });
    assert_eq!((plain.loops, plain.threads, plain.admin.clone()), (1, 1, AdminTarget::Default));
    assert_eq!(settings(&[target, "-x", "10"]).unwrap().pace, Pace::Original { speed: 10.0 });
    assert_eq!(
        settings(&[target, "--rate", "500"]).unwrap().pace,
        Pace::Rate { per_second: 500.0 }
    );
    assert_eq!(
        settings(&[target, "--top-speed"]).unwrap().pace,
        Pace::TopSpeed { window: DEFAULT_WINDOW }
    );
    assert_eq!(
        settings(&[target, "--top-speed", "-P", "3"]).unwrap().pace,
        Pace::TopSpeed { window: 3 }
    );
    assert_eq!(settings(&[target, "--admin", "none"]).unwrap().admin, AdminTarget::Skip);
    assert!(settings(&[target, "--json", "-"]).unwrap().json_to_stdout);
    assert!(error(&[]).contains("--target") && error(&[]).contains("--dry-run"));
    assert!(error(&[target, "-x", "0"]).contains("-x/--speed must be a number above 0"));
    assert!(error(&[target, "-x", "inf"]).contains("-x/--speed"));
    assert!(error(&[target, "--rate", "0"]).contains("--rate must be"));
    assert!(error(&[target, "--rate", "5", "--top-speed"]).contains("at most one"));
    assert!(error(&[target, "-x", "2", "--rate", "5"]).contains("at most one"));
    assert!(error(&[target, "--loop", "0"]).contains("--loop must be at least 1"));
    assert!(error(&[target, "-P", "2"]).contains("window of --top-speed"));
    assert!(error(&[target, "--top-speed", "-P", "0"]).contains("-P/--pipeline"));
    assert!(error(&[target, "-t", "0"]).contains("--threads"));
    assert!(error(&[target, "--plot", "x.jpg"]).contains(".svg or .png"));
    assert!(error(&[target, "--dry-run"]).contains("cannot be used with"));
}

/// The driver against a fake server that answers every frame in reverse order (a
/// connection's answers may come in any order), on one connection whose capture reuses a
/// request id while it is in flight, and closes another connection after bytes that fail
/// framing.
#[test]
fn the_driver_matches_answers_by_id_fifo_and_counts_framing_failures() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut stream, _) = listener.accept().unwrap();
            let mut first = [0_u8; 1];
            stream.read_exact(&mut first).unwrap();
            if first[0] != 0x52 {
                continue; // not the magic: close, as the server does
            }
            let mut rest = [0_u8; 3 * 64 - 1];
            stream.read_exact(&mut rest).unwrap();
            let bytes: Vec<u8> = first.iter().chain(&rest).copied().collect();
            let mut answers = Vec::new();
            for frame in bytes.chunks(64).rev() {
                let id = u64::from_le_bytes(frame[8..16].try_into().unwrap());
                encode_response(Opcode::Ping, id, &Reply::code(ResultCode::Ok), &mut answers);
            }
            stream.write_all(&answers).unwrap();
            let _ = stream.read(&mut first); // until the replay closes
        }
    });
    let records = vec![
        open(0, 1, false),
        frame(1_000, 1, false, &ping(5)),
        frame(2_000, 1, false, &ping(5)),
        frame(3_000, 1, false, &ping(6)),
        close(4_000, 1, false),
        open(0, 2, false),
        frame(1_000, 2, false, b"GARBAGE"),
        close(2_000, 2, false),
    ];
    let plan = build(&capture_of(0, records), Pace::Original { speed: 1.0 }, false);
    let shared = Shared {
        plan: &plan,
        pace: Pace::Original { speed: 1.0 },
        target,
        admin: None,
        start: Instant::now(),
        drain_timeout: Duration::from_secs(5),
        finished: Vec::<AtomicBool>::new(),
        watermark: AtomicUsize::new(0),
    };
    let (progress, abandoned) = (Progress::default(), AtomicBool::new(false));
    let outcome = run_worker(&shared, &[(0, 0), (0, 1)], Reporter::new(&progress, &abandoned));
    server.join().unwrap();
    let (tally, counts) = (&outcome.tally, &outcome.counts);
    assert_eq!(tally.errors, Vec::<String>::new());
    assert_eq!((counts.connections, tally.sent, tally.completed), (2, 4, 3));
    assert_eq!((tally.unanswered, counts.unsent), (0, 0));
    assert_eq!(tally.codes[ResultCode::Ok as usize], 3);
    assert_eq!(tally.by_operation[0].len(), 3, "PING is the first of Opcode::ALL");
    assert_eq!((counts.framing_failures, counts.closed_after_framing_failure), (1, 1));
    assert_eq!(tally.latency.len(), 3);
}

/// Pins the other half of the hang the fuzz run found: at top speed a connection waits for
/// the connections that closed before it opened, which may belong to another thread. When
/// that thread dies, the watermark never moves; the worker must notice that the run was
/// abandoned instead of waiting forever.
#[test]
fn a_top_speed_worker_stops_when_the_run_is_abandoned() {
    // A [0, 10], then B opens at 20: B waits for A, which is on "another thread" here.
    let records = vec![
        open(0, 0xA, false),
        frame(5, 0xA, false, &ping(1)),
        close(10, 0xA, false),
        open(20, 0xB, false),
        frame(25, 0xB, false, &ping(2)),
    ];
    let pace = Pace::TopSpeed { window: 4 };
    let plan = build(&capture_of(0, records), pace, false);
    assert_eq!(plan.connections[1].after, 1, "B waits for A");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let shared = Shared {
            plan: &plan,
            pace,
            target: "127.0.0.1:9".parse().unwrap(),
            admin: None,
            start: Instant::now(),
            drain_timeout: Duration::from_secs(5),
            finished: (0..2).map(|_| AtomicBool::new(false)).collect(),
            watermark: AtomicUsize::new(0),
        };
        let (progress, abandoned) = (Progress::default(), AtomicBool::new(false));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                abandoned.store(true, std::sync::atomic::Ordering::Release);
            });
            let outcome = run_worker(&shared, &[(0, 1)], Reporter::new(&progress, &abandoned));
            let _ = sender.send(outcome);
        });
    });
    let outcome = receiver.recv_timeout(Duration::from_secs(20)).expect("the worker stopped");
    assert_eq!((outcome.counts.connections, outcome.tally.sent), (0, 0), "B never started");
    assert_eq!(outcome.counts.unsent, 1, "B's frame is counted unsent");
    assert!(outcome.tally.errors.iter().any(|error| error.contains("another replay thread")));
}

/// Pins the overflow the fuzz run found: a capture whose last record is at `u64::MAX`
/// replayed with `--loop 3` computed `loop_index × loop_span_ns` unchecked in the driver (a
/// panic in debug builds, a wrong schedule in release). The schedule is now checked, with a
/// clear error, before any thread starts.
#[test]
fn a_schedule_that_overflows_or_lasts_for_years_is_refused() {
    let records = vec![frame(0, 1, false, &ping(1)), frame(u64::MAX, 1, false, &ping(2))];
    let plan = build(&capture_of(0, records), Pace::Original { speed: 1.0 }, false);
    assert_eq!(plan.loop_span_ns, u64::MAX);
    let error = plan.schedule_end_ns(3).expect_err("3 loops of 2^64 ns overflow");
    assert!(
        matches!(error, plan::ScheduleError::Overflow { loops: 3, loop_span_ns: u64::MAX, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("does not fit in 64-bit nanoseconds"), "{error}");
    // One loop fits in 64 bits but would wait for centuries.
    let error = plan.schedule_end_ns(1).expect_err("584 years");
    assert!(matches!(error, plan::ScheduleError::TooLong { end_ns: u64::MAX }), "{error:?}");
    // A plain capture, looped: loop l starts l spans in.
    let records = vec![frame(1_000, 1, false, &ping(1)), frame(3_000, 1, false, &ping(2))];
    let plan = build(&capture_of(0, records), Pace::Original { speed: 1.0 }, false);
    assert_eq!(plan.schedule_end_ns(3), Ok(2 * 2_000 + 2_000));
    assert_eq!(plan.loop_offset_ns(2), 4_000);
    // Half a year per loop: two loops are more than the year a replay accepts.
    let half_year_ns = 183 * 24 * 3600 * 1_000_000_000_u64;
    let records = vec![frame(0, 1, false, &ping(1)), frame(half_year_ns, 1, false, &ping(2))];
    let plan = build(&capture_of(0, records), Pace::Original { speed: 1.0 }, false);
    assert!(plan.schedule_end_ns(2).is_ok());
    assert!(matches!(plan.schedule_end_ns(3), Err(plan::ScheduleError::TooLong { .. })));
}
