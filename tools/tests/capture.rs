//! `rush capture` and `rush replay --dry-run` on real tcpdump captures of the protocol
//! (tests/data/README.md says how they were made): the converted captures hold exactly the
//! connections and frames the clients sent, and the dry run counts the same from the pcap
//! and from the converted file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rush_engine::{Request, Reserve, Target, RESERVE_FLAG_PAY};
use rush_net::capture::{read_capture, Capture, KIND_CLOSE, KIND_FRAME, KIND_OPEN};
use rush_net::protocol::decode_request;

const RUSH: &str = env!("CARGO_BIN_EXE_rush");
const PORT: &str = "7390";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// A directory of this test process, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let path =
            std::env::temp_dir().join(format!("rush-capture-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create the scratch directory");
        Scratch(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rush(args: &[&str]) -> Output {
    Command::new(RUSH).args(args).output().expect("run rush")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `rush capture` on a file of tests/data; returns the converted capture and stdout.
fn convert(name: &str, scratch: &Scratch) -> (Capture, String, PathBuf) {
    let out = scratch.join(&format!("{name}.rushcap"));
    let input = data(name);
    let output = rush(&[
        "capture",
        "--pcap",
        input.to_str().unwrap(),
        "--port",
        PORT,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "rush capture {name}: {}", stderr(&output));
    assert_eq!(stderr(&output), "", "no warnings for {name}");
    (read_capture(&out).expect("a valid capture"), stdout(&output), out)
}

/// The session's two connections, as the clients sent them.
fn session_requests() -> Vec<Vec<(u64, Request)>> {
    // The reserve example (net/examples/reserve.rs): request ids from 1.
    let example = vec![
        (
            1,
            Request::Reserve(Reserve {
                account: 42,
                sku: 1,
                quantity: 1,
                key: 1,
                flags: RESERVE_FLAG_PAY,
                hold_ms: 30_000,
                wait_ms: 0,
            }),
        ),
        (2, Request::Confirm { account: 42, target: Target::ReserveKey(1), key: 2 }),
        (3, Request::QuerySku { sku: 1 }),
    ];
    // tests/data/client.py session.
    let script = vec![
        (100, Request::Ping),
        (101, Request::QueryAccount { account: 42 }),
        (102, Request::QuerySku { sku: 1 }),
        (103, Request::QueryReservation { account: 42, target: Target::ReserveKey(1) }),
        (104, Request::Ping),
        (105, Request::Ping),
        (106, Request::Ping),
        (107, Request::Ping),
        (108, Request::Ping),
    ];
    vec![example, script]
}

/// Checks the records of each connection (OPEN, FRAMEs, CLOSE, times not going back) and
/// returns each connection's decoded frames, in connection order.
fn connections(capture: &Capture) -> Vec<Vec<(u64, Request)>> {
    let mut ids: Vec<u64> = capture.records.iter().map(|record| record.connection.get()).collect();
    ids.dedup();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(ids, sorted, "connections follow each other in these captures");
    let mut found = Vec::new();
    for id in sorted {
        let records: Vec<_> =
            capture.records.iter().filter(|record| record.connection.get() == id).collect();
        assert_eq!(records.first().unwrap().kind, KIND_OPEN, "connection {id} starts with OPEN");
        assert_eq!(records.last().unwrap().kind, KIND_CLOSE, "connection {id} ends with CLOSE");
        assert!(
            records.windows(2).all(|pair| pair[0].recv_ns.get() <= pair[1].recv_ns.get()),
            "connection {id}: times go forward"
        );
        let frames = records[1..records.len() - 1]
            .iter()
            .map(|record| {
                assert_eq!(record.kind, KIND_FRAME);
                assert_eq!((record.admin, record.shard.get()), (0, 0));
                let (frame, consumed) = decode_request(record.bytes()).expect("a valid frame");
                assert_eq!(consumed, 64);
                (frame.request_id, frame.request)
            })
            .collect();
        found.push(frames);
    }
    found
}

#[test]
fn the_session_pcaps_convert_to_exactly_the_frames_sent() {
    let scratch = Scratch::new("session");
    let mut converted = Vec::new();
    for name in ["session.pcap", "session-ns.pcapng", "session-sll2.pcap"] {
        let (capture, report, _) = convert(name, &scratch);
        assert_eq!(connections(&capture), session_requests(), "{name}");
        assert_eq!(capture.records.len(), 2 + 3 + 2 + 9, "{name}");
        assert_eq!(capture.header.dropped.get(), 0);
        // The session was captured on 2026-11-23; started_unix_ns is the first packet's time.
        let started = capture.header.started_unix_ns.get();
        assert!((1_790_000_000_000_000_000..1_800_000_000_000_000_000).contains(&started));
        assert_eq!(capture.records[0].recv_ns.get(), 0, "{name}: the first packet is the SYN");
        assert!(
            report.contains("connections: 2 (0 without a captured SYN, 0 not Rush"),
            "{report}"
        );
        assert!(report.contains("frames: 12"), "{report}");
        assert!(report.contains(", 0 skipped"), "{report}");
        converted.push((name, capture));
    }
    // The microsecond pcap and the nanosecond pcapng are two tcpdumps of the same packets:
    // the same records, at times within 100 µs of each other (each tcpdump's socket takes
    // its own timestamp).
    let (micro, nano) = (&converted[0].1, &converted[1].1);
    let start_micro = micro.header.started_unix_ns.get();
    let start_nano = nano.header.started_unix_ns.get();
    assert_eq!(micro.records.len(), nano.records.len());
    for (a, b) in micro.records.iter().zip(&nano.records) {
        let time_micro = start_micro + a.recv_ns.get();
        let time_nano = start_nano + b.recv_ns.get();
        assert!(time_micro.abs_diff(time_nano) < 100_000, "{time_micro} vs {time_nano}");
        assert_eq!((a.kind, a.bytes()), (b.kind, b.bytes()));
    }
    assert!(nano.records.iter().any(|record| record.recv_ns.get() % 1000 != 0), "ns precision");
}

#[test]
fn a_lossy_capture_with_out_of_order_and_retransmitted_segments_converts_exactly() {
    let scratch = Scratch::new("lossy");
    let (capture, report, _) = convert("lossy.pcap", &scratch);
    let pings: Vec<(u64, Request)> = (200..240).map(|id| (id, Request::Ping)).collect();
    assert_eq!(connections(&capture), vec![pings]);
    // What the capture holds (tests/data/README.md): segments lost in transit, so later
    // ones held until the retransmission, which also overlaps bytes already delivered.
    assert!(
        report.contains("reassembly: 6 out-of-order segments held, 512 retransmitted bytes"),
        "{report}"
    );
}

#[test]
fn the_dry_run_counts_the_same_from_the_pcap_and_from_the_converted_file() {
    let scratch = Scratch::new("dry-run");
    let expected = "records: 16\nframes: 12\nconnections: 2 (0 admin)\n";
    let opcodes = "dropped: 0\nframes by opcode:\n  PING (0x01): 6\n  RESERVE (0x02): 1\n  \
                   CONFIRM (0x03): 1\n  QUERY_SKU (0x05): 2\n  QUERY_ACCOUNT (0x06): 1\n  \
                   QUERY_RESERVATION (0x07): 1\n";
    for name in ["session.pcap", "session-ns.pcapng", "session-sll2.pcap", "lossy.pcap"] {
        let (_, _, converted) = convert(name, &scratch);
        let pcap = data(name);
        let from_pcap = rush(&["replay", "--dry-run", "--port", PORT, pcap.to_str().unwrap()]);
        let from_file = rush(&["replay", "--dry-run", converted.to_str().unwrap()]);
        assert!(from_pcap.status.success(), "{}", stderr(&from_pcap));
        assert!(from_file.status.success(), "{}", stderr(&from_file));
        assert_eq!(stdout(&from_pcap), stdout(&from_file), "{name}");
        if name.starts_with("session") {
            let text = stdout(&from_file);
            assert!(text.starts_with(expected), "{text}");
            assert!(text.ends_with(opcodes), "{text}");
            assert!(text.contains("\nduration: 0."), "{text}");
        }
    }
}

#[test]
fn bad_inputs_are_refused_with_clear_errors() {
    let scratch = Scratch::new("errors");
    let pcap = data("session.pcap");
    let pcap = pcap.to_str().unwrap();

    let no_port = rush(&["replay", "--dry-run", pcap]);
    assert!(!no_port.status.success());
    assert!(stderr(&no_port).contains("is a pcap file: give --port N"), "{}", stderr(&no_port));

    let live = rush(&["replay", pcap]);
    assert!(!live.status.success());
    assert!(stderr(&live).contains("--dry-run"), "{}", stderr(&live));

    // Cut inside the 3rd packet record (24-byte file header, then 16 + 74 and 16 + 74).
    let bytes = std::fs::read(pcap).unwrap();
    let truncated = scratch.join("truncated.pcap");
    std::fs::write(&truncated, &bytes[..24 + 2 * 90 + 20]).unwrap();
    let out = scratch.join("out.rushcap");
    let output = rush(&[
        "capture",
        "--pcap",
        truncated.to_str().unwrap(),
        "--port",
        PORT,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("cannot convert"), "{message}");
    assert!(message.contains("the packet record at byte offset 204 needs"), "{message}");
    assert!(!out.exists(), "nothing is written for a file that cannot be read");
    let dry = rush(&["replay", "--dry-run", "--port", PORT, truncated.to_str().unwrap()]);
    assert!(stderr(&dry).contains("byte offset 204"), "{}", stderr(&dry));

    let text = scratch.join("text.txt");
    std::fs::write(&text, "hello, world").unwrap();
    let unknown = rush(&["replay", "--dry-run", text.to_str().unwrap()]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("neither a Rush capture nor a pcap/pcapng file"),
        "{}",
        stderr(&unknown)
    );
}
