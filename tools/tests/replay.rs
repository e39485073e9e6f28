//! `rush replay` end to end, with real processes and sockets: a deterministic workload
//! against `rush serve --capture`, then the capture replayed against fresh servers with
//! the same sale file (at the original pace, ten times faster, and at top speed) gives the
//! same per-result-code counts as the client saw.
//!
//! What is deterministic on a 2-shard server: the workload runs in phases, one connection
//! per phase, each phase sent at once (pipelined) and fully answered before the connection
//! closes and, after a pause, the next phase opens its connection. Within a phase the order
//! in which requests of different accounts reach their home shards varies, so the workload
//! only asks questions whose per-code counts do not depend on it: 300 buyers for 100 units
//! (exactly 100 OK, whoever wins), CONFIRM / CANCEL / retries only of reservations that
//! cannot fail (a SKU with stock for everyone), by RESERVE key (reservation ids are the
//! server's and may differ between runs). The pause keeps the phases apart in the paced
//! replays; at top speed the replay keeps them apart itself (a connection opened after
//! another closed starts when that one has finished).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rush_engine::{Request, Reserve, ResultCode, Target, RESERVE_FLAG_PAY};
use rush_net::client::Pipeline;
use serde_json::Value;

mod support;

use support::{Served, RUSH};
/// Between two phases of the workload: what keeps them apart when replayed at 10×.
const GAP: Duration = Duration::from_millis(300);

const SALE: &str = "\
# SKU 1: a contended drop. SKU 2: stock for everyone, so its outcomes are certain.
[[sku]]
id = 1
stock = 100
price = 10
per_user_limit = 1

[[sku]]
id = 2
stock = 1000
price = 10

[[wallet_range]]
first = 1
last = 350
balance = 1000
";

/// `rush serve` on loopback with its addresses.
struct Server {
    served: Served,
    public: SocketAddr,
    admin: SocketAddr,
}

impl Server {
    /// Starts `rush serve` on loopback (ports chosen by the system, 2 shards) and waits for
    /// its `listening on` line.
    fn start(sale: &Path, capture: Option<&Path>) -> Server {
        let mut args: Vec<&OsStr> = [
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--shard-ports",
            "off",
            "--shards",
            "2",
            "--no-pin",
            "--sale",
        ]
        .iter()
        .map(OsStr::new)
        .collect();
        args.push(sale.as_os_str());
        if let Some(capture) = capture {
            args.push(OsStr::new("--capture"));
            args.push(capture.as_os_str());
        }
        let mut served = Served::start(args);
        let (public, admin) = served.listening();
        Server { served, public, admin: admin.expect("an admin listener") }
    }

    /// SIGTERM, then waits for a clean exit; returns the whole log.
    fn stop(mut self) -> Vec<String> {
        self.served.signal(Signal::SIGTERM);
        let (status, log) = self.served.wait();
        assert!(status.success(), "rush serve exited with {status:?}: {log:?}");
        log
    }
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("rush-replay-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn reserve(account: u64, sku: u64, quantity: u32, key: u64, flags: u32) -> Request {
    Request::Reserve(Reserve { account, sku, quantity, key, flags, hold_ms: 0, wait_ms: 0 })
}

/// CONFIRM of the reservation `account` made with key 1 (named by that key), with `key`.
fn confirm(account: u64, key: u64) -> Request {
    Request::Confirm { account, target: Target::ReserveKey(1), key }
}

/// CANCEL of the reservation `account` made with key 1, with `key`.
fn cancel(account: u64, key: u64) -> Request {
    Request::Cancel { account, target: Target::ReserveKey(1), key }
}

/// Sends `requests` on a new connection at once, waits for every answer, closes the
/// connection, counts the answers by result code into `counts`, and pauses.
fn phase(address: SocketAddr, requests: &[Request], counts: &mut BTreeMap<String, u64>) {
    let mut pipeline = Pipeline::connect(address).expect("connect");
    for request in requests {
        pipeline.send(request);
    }
    pipeline.flush().expect("send");
    for _ in requests {
        let response = pipeline.recv().expect("an answer");
        *counts.entry(response.reply.result.name().to_string()).or_default() += 1;
    }
    assert_eq!(pipeline.reconnects(), 0, "the phase must run on one connection");
    drop(pipeline);
    std::thread::sleep(GAP);
}

/// The deterministic workload; returns the per-code counts the client saw.
fn workload(public: SocketAddr, admin: SocketAddr) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    // 1. Admin: fund accounts 401..=410 (not in the sale file), read SKU 1 (a 104-byte
    //    answer). Replayed to the public port instead, the DEPOSITs would be UNAUTHORIZED.
    let mut requests: Vec<Request> =
        (401..=410).map(|account| Request::Deposit { account, amount: 1000, key: 1 }).collect();
    requests.push(Request::QuerySku { sku: 1 });
    phase(admin, &requests, &mut counts);
    // 2. The drop: 300 buyers for SKU 1's 100 units; 50 sure reservations of SKU 2; 10 paid
    //    ones by the funded accounts (INSUFFICIENT_FUNDS had the deposits not happened).
    let mut requests: Vec<Request> =
        (1..=300).map(|account| reserve(account, 1, 1, 1, 0)).collect();
    requests.extend((301..=350).map(|account| reserve(account, 2, 1, 1, 0)));
    requests.extend((401..=410).map(|account| reserve(account, 2, 1, 2, RESERVE_FLAG_PAY)));
    requests.push(Request::Ping);
    phase(public, &requests, &mut counts);
    // 3. CONFIRM 301..=320 and CANCEL 321..=330, by RESERVE key.
    let mut requests: Vec<Request> = (301..=320).map(|account| confirm(account, 2)).collect();
    requests.extend((321..=330).map(|account| cancel(account, 2)));
    phase(public, &requests, &mut counts);
    // 4. Retries with the same keys (DUPLICATE), late CONFIRMs of cancelled reservations,
    //    late CANCELs of confirmed ones (new keys), and a key reused with other parameters.
    let mut requests: Vec<Request> =
        (301..=350).map(|account| reserve(account, 2, 1, 1, 0)).collect();
    requests.extend((301..=310).map(|account| confirm(account, 2)));
    requests.extend((321..=325).map(|account| confirm(account, 3)));
    requests.extend((311..=315).map(|account| cancel(account, 3)));
    requests.push(reserve(331, 2, 2, 1, 0));
    phase(public, &requests, &mut counts);
    // 5. Bytes that fail framing: the server closes the connection (no answer).
    let mut stream = TcpStream::connect(public).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"HELLO, SERVER").expect("write");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no answer to bytes that fail framing: {rest:?}");
    counts
}

fn expected_counts() -> BTreeMap<String, u64> {
    let ok = 10 + 1 + 100 + 50 + 10 + 1 + 20 + 10;
    [
        (ResultCode::Ok, ok),
        (ResultCode::SoldOut, 200),
        (ResultCode::Duplicate, 50 + 10),
        (ResultCode::AlreadyCancelled, 5),
        (ResultCode::AlreadyConfirmed, 5),
        (ResultCode::KeyReused, 1),
    ]
    .into_iter()
    .map(|(code, count)| (code.name().to_string(), count))
    .collect()
}

/// Replays `capture` against a fresh server with `sale`; returns the `--json -` document.
fn replay(capture: &Path, sale: &Path, flags: &[&str]) -> Value {
    let served = Server::start(sale, None);
    let started = Instant::now();
    let output = Command::new(RUSH)
        .arg("replay")
        .arg(capture)
        .args(["--target", &served.public.to_string(), "--admin", &served.admin.to_string()])
        .args(["--json", "-"])
        .args(flags)
        .output()
        .expect("run rush replay");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "rush replay {flags:?} failed ({}):\n{stderr}", output.status);
    let document: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!("--json - is not JSON ({error}):\n{}", String::from_utf8_lossy(&output.stdout))
    });
    served.stop();
    eprintln!("rush replay {flags:?} took {took:?}:\n{stderr}");
    document
}

fn results(document: &Value) -> BTreeMap<String, u64> {
    document["results"]
        .as_object()
        .expect("results")
        .iter()
        .map(|(code, count)| (code.clone(), count.as_u64().expect("a count")))
        .collect()
}

#[test]
fn a_replay_against_a_fresh_server_gets_the_same_outcomes() {
    let scratch = Scratch::new("same");
    let sale = scratch.0.join("sale.toml");
    std::fs::write(&sale, SALE).expect("write sale");
    let capture = scratch.0.join("run.rushcap");

    let served = Server::start(&sale, Some(&capture));
    let seen = workload(served.public, served.admin);
    let log = served.stop().join("\n");
    assert!(log.contains(" 0 dropped"), "{log}");
    assert_eq!(seen, expected_counts(), "the original run itself");

    let frames = 11 + 361 + 30 + 71 + 1;
    for flags in [&[][..], &["-x", "10"][..], &["--top-speed"][..]] {
        let document = replay(&capture, &sale, flags);
        assert_eq!(results(&document), seen, "rush replay {flags:?}: {document:#}");
        assert_eq!(document["sent"], frames, "{document:#}");
        assert_eq!(document["completed"], frames - 1, "{document:#}");
        assert_eq!(document["unanswered"], 0, "{document:#}");
        assert_eq!(document["connections"], 5, "{document:#}");
        assert_eq!(document["framing_failures"], 1, "{document:#}");
        assert_eq!(document["closed_after_framing_failure"], 1, "{document:#}");
        assert_eq!(document["errors"], serde_json::json!([]), "{document:#}");
        assert_eq!(document["duplicate_of"]["OK"], 60, "{document:#}");
        assert_eq!(document["coordinated_omission_corrected"], flags != ["--top-speed"]);
    }
}

#[test]
fn bad_flags_are_refused_with_clear_errors() {
    let scratch = Scratch::new("flags");
    let capture = scratch.0.join("empty.rushcap");
    // A valid capture with no records is enough: the flags are checked first.
    let mut header = Vec::from(*b"RUSHCAP1");
    header.extend_from_slice(&1u32.to_le_bytes());
    header.extend_from_slice(&96u32.to_le_bytes());
    header.resize(64, 0);
    std::fs::write(&capture, &header).expect("write capture");
    let capture = capture.to_str().expect("utf-8 path");
    let rush = |args: &[&str]| {
        let output = Command::new(RUSH).arg("replay").arg(capture).args(args).output().unwrap();
        assert!(!output.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let target = ["--target", "127.0.0.1:9"];
    assert!(rush(&[]).contains("--target"));
    assert!(rush(&[&target[..], &["-x", "0"]].concat()).contains("-x/--speed must be"));
    assert!(rush(&[&target[..], &["--rate", "0"]].concat()).contains("--rate must be"));
    assert!(rush(&[&target[..], &["-x", "2", "--top-speed"]].concat()).contains("at most one"));
    assert!(rush(&[&target[..], &["--rate", "5", "-x", "2"]].concat()).contains("at most one"));
    assert!(rush(&[&target[..], &["--loop", "0"]].concat()).contains("--loop must be"));
    assert!(rush(&[&target[..], &["-P", "4"]].concat()).contains("--top-speed"));
    assert!(rush(&[&target[..], &["-t", "0"]].concat()).contains("--threads"));
    assert!(rush(&target).contains("holds no connection"));
    assert!(rush(&["--dry-run", "--target", "x:1"]).contains("cannot be used with"));
}

/// `rush replay ARGS`, killed and failed if it runs longer than `limit`; returns stderr.
fn replay_fails_within(limit: Duration, args: &[&OsStr]) -> String {
    let mut child = Command::new(RUSH)
        .arg("replay")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run rush replay");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rush replay {args:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");
    assert!(!status.success(), "rush replay {args:?} should fail:\n{stderr}");
    stderr
}

/// The captures a fuzz run of `rush replay` found it mishandled: one whose FRAME record has
/// bit 62 set in `recv_ns` (replayed, it planned 146 years; looped, its schedule
/// overflowed), and a header cut after two bytes past the magic (reported as a wrong
/// magic). Each is refused at once, with the record or the truncation named, live and in
/// the dry run.
#[test]
fn bad_captures_are_refused_before_anything_is_sent() {
    let scratch = Scratch::new("bad");
    let mut header = Vec::from(*b"RUSHCAP1");
    header.extend_from_slice(&1u32.to_le_bytes());
    header.extend_from_slice(&96u32.to_le_bytes());
    header.resize(64, 0);
    let record = |recv_ns: u64, kind: u8| {
        let mut bytes = vec![0_u8; 96];
        bytes[..8].copy_from_slice(&recv_ns.to_le_bytes());
        bytes[8..16].copy_from_slice(&1_u64.to_le_bytes());
        bytes[16] = kind;
        if kind == 2 {
            let mut frame = Vec::new();
            rush_net::protocol::encode_request(1, &Request::Ping, &mut frame);
            bytes[20..22].copy_from_slice(&64_u16.to_le_bytes());
            bytes[32..].copy_from_slice(&frame);
        }
        bytes
    };
    let mut far = header.clone();
    for (recv_ns, kind) in [(0, 1), (1_000, 2), (u64::MAX, 2), (1 << 62 | 2_000, 2), (3_000, 3)] {
        far.extend_from_slice(&record(recv_ns, kind));
    }
    let far_path = scratch.0.join("far.rushcap");
    std::fs::write(&far_path, &far).expect("write capture");
    let mut cut = Vec::from(*b"RUSHCAP1");
    cut.extend_from_slice(&[1, 0]);
    let cut_path = scratch.0.join("cut.rushcap");
    std::fs::write(&cut_path, &cut).expect("write capture");

    let limit = Duration::from_secs(30);
    let target = ["--target", "127.0.0.1:9", "--loop", "3"].map(OsStr::new);
    for (path, expected) in [
        (&far_path, "record 2 (FRAME of connection 0x1) has recv_ns 18446744073709551615"),
        (&cut_path, "is a truncated Rush capture: it ends after 10 bytes"),
    ] {
        let live = replay_fails_within(limit, &[&[path.as_os_str()], &target[..]].concat());
        assert!(live.contains(expected), "{live}");
        let dry = replay_fails_within(limit, &[OsStr::new("--dry-run"), path.as_os_str()]);
        assert!(dry.contains(expected), "{dry}");
    }
}
