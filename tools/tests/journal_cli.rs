//! `rush journal verify|dump|stats` on data directories a real `rush serve` wrote (stopped
//! with SIGTERM, small segments), intact and damaged the ways a disk damages them, and on
//! hand-made directories for the errors: what each command reports, that it agrees with the
//! others and with what a server start says and recovers, and that verify changes nothing.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nix::sys::signal::Signal;
use rush_engine::quota::{Envelope, Message};
use rush_engine::{Request, Reserve, ResultCode, Target, RESERVE_FLAG_PAY};
use rush_net::client::Client;
use rush_runtime::journal::codec::{encode_input, Input};
use rush_runtime::journal::format::encode_entry;
use rush_runtime::journal::list_segments;
use support::{fresh_data_dir, Served, RUSH};

const SKU: u64 = 1;
const ACCOUNTS: u64 = 60;
/// Accounts whose hold is neither confirmed nor cancelled (every third, from 2).
const HOLDS_LEFT: u64 = ACCOUNTS / 3;

/// Small tables (a debug build starts fast, verify replays with the same).
const CONFIG: &str = "sku_max = 64\naccount_max = 4096\nreservation_max = 16384\n\
                      waitlist_max = 1024\nrequest_key_max = 65536\nlimit_entry_max = 4096\n";

/// A scratch directory with a sale, a config file and (after `serve_and_stop`) a data
/// directory written by a real server; removed on drop.
struct Scratch {
    root: PathBuf,
    data: PathBuf,
    config: PathBuf,
    sale: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Scratch {
    fn new() -> Scratch {
        let root = fresh_data_dir();
        std::fs::create_dir_all(&root).expect("scratch directory");
        let sale = root.join("sale.toml");
        std::fs::write(
            &sale,
            format!(
                "[[sku]]\nid = {SKU}\nstock = 400\nprice = 7\nhold_ms = 600000\n\n\
                 [[wallet_range]]\nfirst = 1\nlast = {ACCOUNTS}\nbalance = 100000\n"
            ),
        )
        .expect("sale file");
        let config = root.join("serve.toml");
        std::fs::write(&config, CONFIG).expect("config file");
        Scratch { data: root.join("data"), root, config, sale }
    }

    fn data(&self) -> &str {
        self.data.to_str().expect("utf-8 path")
    }

    fn config(&self) -> &str {
        self.config.to_str().expect("utf-8 path")
    }

    /// `rush serve` on the data directory: 2 shards, 1 KiB segments.
    fn serve(&self) -> Served {
        self.serve_with(&[])
    }

    /// [`Scratch::serve`] with more flags.
    fn serve_with(&self, extra: &[&str]) -> Served {
        let base = [
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--shard-ports",
            "off",
            "--shards",
            "2",
            "--no-pin",
            "--journal-segment-bytes",
            "1024",
            "--data-dir",
            self.data(),
            "--sale",
            self.sale.to_str().expect("utf-8 path"),
            "--config",
            self.config(),
        ];
        Served::start(base.iter().chain(extra).copied())
    }

    /// A server run with some of everything, stopped with SIGTERM.
    fn serve_and_stop(&self) {
        let mut served = self.serve();
        let (public, admin) = served.listening();
        traffic(public, admin.expect("admin listener"));
        stop(&mut served);
    }

    fn shard_segments(&self, shard: u32) -> Vec<(u64, PathBuf)> {
        list_segments(&self.data.join(format!("shard-{shard:03}"))).expect("segments")
    }

    /// `rush journal verify` with the server's config.
    fn verify(&self) -> Output {
        rush(&["journal", "verify", self.data(), "--config", self.config()])
    }
}

fn stop(served: &mut Served) {
    served.signal(Signal::SIGTERM);
    let (status, log) = served.wait();
    assert!(status.success(), "rush serve stopped with {status:?}: {log:?}");
}

/// Holds for every account, a third confirmed and a third cancelled, a restock, a pause and
/// a resume: requests of most kinds and messages between the two shards.
fn traffic(public: std::net::SocketAddr, admin: std::net::SocketAddr) {
    let mut client = Client::connect(public).expect("connect");
    let mut admin = Client::connect(admin).expect("admin");
    for account in 1..=ACCOUNTS {
        let reserve = Reserve {
            account,
            sku: SKU,
            quantity: 1,
            key: 1,
            flags: RESERVE_FLAG_PAY,
            hold_ms: 0,
            wait_ms: 0,
        };
        let reply = client.call(&Request::Reserve(reserve)).expect("reserve");
        assert_eq!(reply.result, ResultCode::Ok, "account {account}: {reply:?}");
        let id = reply.reservation().expect("a hold").reservation;
        let target = Target::Reservation(id);
        let follow = match account % 3 {
            0 => Some(Request::Confirm { account, target, key: 2 }),
            1 => Some(Request::Cancel { account, target, key: 2 }),
            _ => None,
        };
        if let Some(request) = follow {
            let reply = client.call(&request).expect("confirm or cancel");
            assert_eq!(reply.result, ResultCode::Ok, "{request:?}: {reply:?}");
        }
    }
    for request in [
        Request::AdjustStock { sku: SKU, delta: 10, key: 1 },
        Request::Pause { sku: SKU },
        Request::Resume { sku: SKU },
    ] {
        let reply = admin.call(&request).expect("admin");
        assert_eq!(reply.result, ResultCode::Ok, "{request:?}: {reply:?}");
    }
}

fn rush(args: &[&str]) -> Output {
    let output = Command::new(RUSH)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("run rush {args:?}: {error}"));
    // Whatever the input, an error is a message, never a panic.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(101), "rush {args:?} panicked: {stderr}");
    assert!(!stderr.contains("' panicked at "), "rush {args:?} panicked: {stderr}");
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 output")
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The blocks of verify's and stats' output: heading (`shard 0`, `total`) → key → value,
/// from lines `  key   value` (keys may hold single spaces; two separate the value).
fn blocks(stdout: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut blocks: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut heading = String::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("  ") {
            let (key, value) = rest.split_once("  ").unwrap_or_else(|| panic!("{line:?}"));
            blocks.entry(heading.clone()).or_default().insert(key.into(), value.trim().into());
        } else {
            heading = line.to_string();
        }
    }
    blocks
}

/// The first number in `text`.
fn number(text: &str) -> u64 {
    let digits: String =
        text.chars().skip_while(|c| !c.is_ascii_digit()).take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("a number in {text:?}"))
}

/// The number after `word ` in `text`.
fn after(text: &str, word: &str) -> u64 {
    let start = text.find(word).unwrap_or_else(|| panic!("{word:?} in {text:?}")) + word.len();
    number(&text[start..])
}

/// One dump line: `shard S seq Q now_ms T KIND ...`.
#[derive(Debug)]
struct DumpLine {
    shard: u32,
    sequence: u64,
    now_ms: u64,
    kind: String,
    /// What follows the kind (`Reserve{...}` for a request).
    rest: String,
}

fn dump_lines(stdout: &str) -> Vec<DumpLine> {
    stdout
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.splitn(8, ' ').collect();
            assert!(words.len() >= 7, "{line:?}");
            assert_eq!((words[0], words[2], words[4]), ("shard", "seq", "now_ms"), "{line:?}");
            let parsed = DumpLine {
                shard: words[1].parse().expect("shard"),
                sequence: words[3].parse().expect("seq"),
                now_ms: words[5].parse().expect("now_ms"),
                kind: words[6].to_string(),
                rest: words.get(7).copied().unwrap_or("").to_string(),
            };
            match parsed.kind.as_str() {
                "TICK" | "EMPTY" => assert!(parsed.rest.is_empty(), "{line:?}"),
                "START" => assert!(parsed.rest.starts_with("jump "), "{line:?}"),
                "REQUEST" => {
                    assert!(parsed.rest.ends_with('}') && parsed.rest.contains('{'), "{line:?}")
                }
                "MESSAGE" => {
                    assert!(
                        parsed.rest.starts_with("from ") && parsed.rest.ends_with('}'),
                        "{line:?}"
                    )
                }
                other => panic!("unknown kind {other:?} in {line:?}"),
            }
            parsed
        })
        .collect()
}

/// Every file under `root` with its length, modification time and a hash of its bytes.
fn tree(root: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime, u64)> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        for entry in std::fs::read_dir(&directory).expect("read_dir") {
            let path = entry.expect("entry").path();
            let metadata = std::fs::metadata(&path).expect("metadata");
            if metadata.is_dir() {
                pending.push(path.clone());
                files.insert(path, (0, metadata.modified().expect("mtime"), 0));
                continue;
            }
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            std::fs::read(&path).expect("read").hash(&mut hasher);
            files.insert(
                path,
                (metadata.len(), metadata.modified().expect("mtime"), hasher.finish()),
            );
        }
    }
    files
}

/// The line of a failed `rush serve` start's log that says why (`recovery failed: ...`).
fn start_failure(scratch: &Scratch) -> String {
    let mut served = scratch.serve();
    let (status, log) = served.wait();
    assert!(!status.success(), "the damaged directory must not start: {log:?}");
    log.iter()
        .map(|line| line.trim())
        .find(|line| line.starts_with("recovery failed: "))
        .unwrap_or_else(|| panic!("no recovery error in {log:?}"))
        .to_string()
}

#[test]
fn verify_stats_and_dump_agree_on_a_cleanly_stopped_directory() {
    let scratch = Scratch::new();
    let mut served = scratch.serve();
    let (public, admin) = served.listening();
    traffic(public, admin.expect("admin listener"));

    // While the server runs: verify refuses (the lock), stats reads without it.
    let output = scratch.verify();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(stderr.contains("in use by another server"), "{stderr}");
    assert!(stderr.contains("stop the server first"), "{stderr}");
    let output = rush(&["journal", "stats", scratch.data()]);
    assert!(output.status.success(), "{}", describe(&output));
    stop(&mut served);

    let before = tree(&scratch.data);
    let output = scratch.verify();
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(tree(&scratch.data), before, "verify changed the directory");
    let verify = blocks(&text(&output.stdout));
    assert!(text(&output.stdout).contains("ok: a server start would recover this directory"));

    let output = rush(&["journal", "stats", scratch.data()]);
    assert!(output.status.success(), "{}", describe(&output));
    let stats = blocks(&text(&output.stdout));

    let output = rush(&["journal", "dump", scratch.data()]);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(output.stderr.is_empty(), "{}", describe(&output));
    let dump = dump_lines(&text(&output.stdout));

    let mut live_reservations = 0;
    let mut entries_total = 0;
    let mut inputs_total = 0;
    for shard in 0..2_u32 {
        let heading = format!("shard {shard}");
        let (checked, counted) = (&verify[&heading], &stats[&heading]);
        let segments = scratch.shard_segments(shard);
        assert!(segments.len() >= 3, "1 KiB segments: {segments:?}");
        assert_eq!(number(&checked["segments"]), segments.len() as u64);
        assert_eq!(checked["segments"], counted["segments"]);
        let entries = number(&checked["entries"]);
        let inputs = after(&checked["entries"], "(");
        let last = after(&checked["entries"], "last sequence ");
        assert_eq!(number(&counted["entries"]), entries, "{shard}: {checked:?} {counted:?}");
        assert_eq!(after(&counted["entries"], "sequence 1 to "), last);
        assert_eq!(entries, last, "a clean stop keeps every entry");
        assert_eq!(number(&counted["inputs"]), inputs);
        assert_eq!(
            (checked["torn tail"].as_str(), counted["torn tail"].as_str()),
            ("none", "none")
        );
        assert_eq!(checked["entries cut"], "0");
        assert_eq!(checked["invariants"], "hold");
        assert!(checked["state hash"].starts_with("0x"), "{checked:?}");
        live_reservations += number(&checked["live reservations"]);
        entries_total += entries;
        inputs_total += inputs;

        // Dump: a line per input, every entry 1..=last, clocks never going back.
        let lines: Vec<&DumpLine> = dump.iter().filter(|line| line.shard == shard).collect();
        assert_eq!(lines.len() as u64, inputs, "shard {shard}: a dump line per input");
        let sequences: BTreeSet<u64> = lines.iter().map(|line| line.sequence).collect();
        assert_eq!(sequences, (1..=last).collect(), "shard {shard}: every entry dumped");
        assert!(lines.windows(2).all(|pair| pair[0].now_ms <= pair[1].now_ms));
        assert_eq!(lines.first().map(|line| line.now_ms), Some(after(&counted["now_ms"], "")));
        let kinds = |kind: &str| lines.iter().filter(|line| line.kind == kind).count() as u64;
        assert_eq!(after(&counted["inputs"], "TICK "), kinds("TICK"));
        assert_eq!(after(&counted["inputs"], "REQUEST "), kinds("REQUEST"));
        assert_eq!(after(&counted["inputs"], "MESSAGE "), kinds("MESSAGE"));
        assert_eq!(after(&counted["inputs"], "START "), kinds("START"));
        for (kind, name) in [
            ("REQUEST", "Reserve"),
            ("REQUEST", "Confirm"),
            ("REQUEST", "Cancel"),
            ("REQUEST", "Deposit"),
            ("MESSAGE", "Grant"),
            ("MESSAGE", "Define"),
        ] {
            let dumped = lines
                .iter()
                .filter(|line| line.kind == kind)
                .filter(|line| {
                    line.rest.split(' ').any(|word| word.starts_with(&format!("{name}{{")))
                })
                .count();
            let key = if kind == "MESSAGE" { "messages" } else { "requests" };
            assert_eq!(after(&counted[key], &format!("{name} ")), dumped as u64, "{name}");
        }
    }
    // Every hold not confirmed or cancelled is live, whichever shard it is on.
    assert_eq!(live_reservations, HOLDS_LEFT);
    let total = &stats["total"];
    assert_eq!(number(&total["entries"]), entries_total);
    assert_eq!(number(&total["inputs"]), inputs_total);
    for (name, count) in [
        ("Reserve", ACCOUNTS),
        ("Confirm", ACCOUNTS / 3),
        ("Cancel", ACCOUNTS / 3),
        ("Deposit", ACCOUNTS),
        ("PutSku", 1),
        ("AdjustStock", 1),
        ("Pause", 1),
        ("Resume", 1),
        ("Withdraw", 0),
    ] {
        assert_eq!(after(&total["requests"], &format!("{name} ")), count, "{name}: {total:?}");
    }
    // Two shards trade stock: the coordinator granted the other shard's holds their units.
    assert!(after(&total["messages"], "Grant ") > 0, "{total:?}");

    // --shard, --from and --limit pick entries of one shard.
    let output =
        rush(&["journal", "dump", scratch.data(), "--shard", "1", "--from", "5", "--limit", "3"]);
    assert!(output.status.success(), "{}", describe(&output));
    let lines = dump_lines(&text(&output.stdout));
    assert!(lines.iter().all(|line| line.shard == 1), "{lines:?}");
    let sequences: BTreeSet<u64> = lines.iter().map(|line| line.sequence).collect();
    assert_eq!(sequences, BTreeSet::from([5, 6, 7]));
}

#[test]
fn a_damaged_snapshot_fails_verify_like_a_server_start() {
    let scratch = Scratch::new();
    let mut served = scratch.serve_with(&["--snapshot-every", "100"]);
    let (public, admin) = served.listening();
    traffic(public, admin.expect("admin listener"));
    stop(&mut served);
    let snapshot = (0..2)
        .flat_map(|shard| {
            let directory = scratch.data.join(format!("shard-{shard:03}"));
            rush_runtime::journal::snapshot::list_snapshots(&directory).expect("list").finished
        })
        .map(|(_, path)| path)
        .next()
        .expect("a snapshot every 100 records: at least one shard took one");
    let output = scratch.verify();
    assert_eq!(output.status.code(), Some(0), "intact: {}", describe(&output));

    let file = std::fs::OpenOptions::new().read(true).write(true).open(&snapshot).expect("open");
    let mut byte = [0_u8];
    file.read_exact_at(&mut byte, 200).expect("read");
    file.write_all_at(&[byte[0] ^ 0x01], 200).expect("write");
    drop(file);
    let output = scratch.verify();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = text(&output.stderr);
    let name = snapshot.to_str().expect("utf-8");
    assert!(stderr.contains(&format!("{name}: offset 96: snapshot body checksum")), "{stderr}");
    let server = start_failure(&scratch);
    assert!(stderr.lines().any(|line| line.trim() == server), "server: {server}\nverify: {stderr}");
}

#[test]
fn a_flipped_byte_fails_like_a_server_start_naming_the_file_and_offset() {
    let scratch = Scratch::new();
    scratch.serve_and_stop();
    let segments = scratch.shard_segments(0);
    assert!(segments.len() >= 3, "1 KiB segments: {segments:?}");
    let (damaged_first, damaged) = segments[1].clone();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&damaged).expect("open");
    let mut byte = [0_u8];
    file.read_exact_at(&mut byte, 100).expect("read");
    file.write_all_at(&[byte[0] ^ 0x40], 100).expect("write");
    drop(file);

    let before = tree(&scratch.data);
    let output = scratch.verify();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert_eq!(tree(&scratch.data), before, "verify changed the directory");
    let stderr = text(&output.stderr);
    let name = damaged.to_str().expect("utf-8");
    assert!(stderr.contains(&format!("shard 0: {name}: offset ")), "{stderr}");
    assert!(stderr.contains("corruption, not a torn write"), "{stderr}");

    // The words a start gives, exactly.
    let server = start_failure(&scratch);
    assert!(stderr.lines().any(|line| line.trim() == server), "server: {server}\nverify: {stderr}");
    let place = server.split("recovery failed: ").nth(1).expect("cause").to_string();

    // Dump prints what precedes the damaged entry, then stops with the same error.
    let output = rush(&["journal", "dump", scratch.data()]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(text(&output.stderr).contains(&place), "{}", describe(&output));
    let lines = dump_lines(&text(&output.stdout));
    assert!(lines.iter().all(|line| line.shard == 0), "the dump stops at shard 0's damage");
    let last = lines.iter().map(|line| line.sequence).max().expect("entries before the damage");
    let next_segment_first = segments[2].0;
    assert!(
        last + 1 >= damaged_first && last < next_segment_first,
        "last dumped {last}: the damage is in entries {damaged_first}..{next_segment_first}"
    );
    let sequences: BTreeSet<u64> = lines.iter().map(|line| line.sequence).collect();
    assert_eq!(sequences, (1..=last).collect(), "every entry before the damage");

    // A dump that stops before the damage succeeds.
    let output = rush(&["journal", "dump", scratch.data(), "--shard", "0", "--limit", "2"]);
    assert!(output.status.success(), "{}", describe(&output));
    let sequences: BTreeSet<u64> =
        dump_lines(&text(&output.stdout)).iter().map(|line| line.sequence).collect();
    assert_eq!(sequences, BTreeSet::from([1, 2]));

    // Stats counts what precedes it and fails with the same error.
    let output = rush(&["journal", "stats", scratch.data()]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(text(&output.stderr).contains(&place), "{}", describe(&output));
    let stats = blocks(&text(&output.stdout));
    assert_eq!(number(&stats["shard 0"]["entries"]), last);
}

#[test]
fn a_torn_tail_is_reported_as_a_start_truncates_it_and_verify_succeeds() {
    let scratch = Scratch::new();
    scratch.serve_and_stop();
    let (_, last_segment) = scratch.shard_segments(0).pop().expect("a segment");
    let length = std::fs::metadata(&last_segment).expect("metadata").len();
    let cut_length = length - 20;
    let file = std::fs::OpenOptions::new().write(true).open(&last_segment).expect("open");
    file.set_len(cut_length).expect("cut the last entry");
    drop(file);

    let before = tree(&scratch.data);
    let output = scratch.verify();
    assert!(output.status.success(), "a torn tail is not an error: {}", describe(&output));
    assert_eq!(tree(&scratch.data), before, "verify truncated nothing");
    let verify = blocks(&text(&output.stdout));
    let torn = &verify["shard 0"]["torn tail"];
    let (bytes, place) = torn.split_once(" bytes at ").unwrap_or_else(|| panic!("{torn}"));
    let (file, offset) = place.split_once(" (").expect("why").0.rsplit_once(':').expect("offset");
    let (bytes, offset): (u64, u64) =
        (bytes.parse().expect("bytes"), offset.parse().expect("offset"));
    assert_eq!(file, last_segment.to_str().expect("utf-8"));
    assert_eq!(offset + bytes, cut_length, "the torn tail runs to the end: {torn}");
    assert!(bytes > 0 && bytes < 1024, "{torn}");
    assert!(torn.ends_with("a server start truncates it"), "{torn}");

    let output = rush(&["journal", "stats", scratch.data()]);
    assert!(output.status.success(), "{}", describe(&output));
    let stats = blocks(&text(&output.stdout));
    assert_eq!(&stats["shard 0"]["torn tail"], torn);
    let output = rush(&["journal", "dump", scratch.data(), "--shard", "0"]);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(text(&output.stderr).contains(&format!("{bytes} bytes at {file}:{offset}")));

    // The start truncates the same bytes and recovers what verify said it would.
    let mut served = scratch.serve();
    served.listening();
    let log = served.log.clone();
    stop(&mut served);
    let recovered = |shard: u32| -> String {
        log.iter()
            .find_map(|line| line.strip_prefix(&format!("rush: recovered shard {shard}: ")))
            .unwrap_or_else(|| panic!("shard {shard} recovered: {log:?}"))
            .to_string()
    };
    assert!(
        recovered(0).contains(&format!("torn tail of {bytes} bytes truncated at {file}:{offset}")),
        "{log:?}"
    );
    for shard in 0..2 {
        let checked = &verify[&format!("shard {shard}")];
        let line = recovered(shard);
        let entries = &checked["entries"];
        assert!(
            line.starts_with(&format!(
                "{} entries ({} inputs) replayed up to entry {}, {} live reservations",
                number(entries),
                after(entries, "("),
                after(entries, "last sequence "),
                checked["live reservations"]
            )),
            "server: {line}\nverify: {checked:?}"
        );
    }
    let output = scratch.verify();
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(blocks(&text(&output.stdout))["shard 0"]["torn tail"], "none");
}

#[test]
fn a_deleted_middle_segment_is_reported_as_the_sequence_gap() {
    let scratch = Scratch::new();
    scratch.serve_and_stop();
    let segments = scratch.shard_segments(0);
    assert!(segments.len() >= 3, "1 KiB segments: {segments:?}");
    std::fs::remove_file(&segments[1].1).expect("delete a segment");
    let (expected, after_gap) = (segments[1].0, &segments[2]);

    let output = scratch.verify();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = text(&output.stderr);
    let gap = format!(
        "shard 0: {}: offset 0: sequence {} where {expected} was expected (a gap or a reordering)",
        after_gap.1.display(),
        after_gap.0
    );
    assert!(stderr.contains(&gap), "{gap}\n{stderr}");
    let server = start_failure(&scratch);
    assert!(stderr.lines().any(|line| line.trim() == server), "server: {server}\nverify: {stderr}");

    let output = rush(&["journal", "stats", scratch.data()]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(text(&output.stderr).contains(&gap), "{}", describe(&output));
    let stats = blocks(&text(&output.stdout));
    assert_eq!(number(&stats["shard 0"]["entries"]), expected - 1, "what precedes the gap");
    assert_eq!(stats["shard 1"]["torn tail"], "none", "the other shard is counted whole");
}

/// A hand-made data directory of one shard; `segments`: (first sequence, bytes).
fn hand_made(segments: &[(u64, Vec<u8>)]) -> PathBuf {
    let root = fresh_data_dir();
    std::fs::create_dir_all(root.join("shard-000")).expect("mkdir");
    std::fs::write(root.join("META"), "rush data directory\nformat 1\nshards 1\n").expect("META");
    std::fs::write(root.join("LOCK"), "").expect("LOCK");
    for (first, bytes) in segments {
        std::fs::write(root.join(format!("shard-000/journal-{first:020}.rjl")), bytes)
            .expect("segment");
    }
    root
}

/// Entries 1..=3 of shard 0: a start, a deposit, a message from shard `from`.
fn entries(from: u32) -> Vec<u8> {
    let inputs = [
        Input::Start { jump: 1 << 16 },
        Input::Request(Request::Deposit { account: 7, amount: 100, key: 1 }),
        Input::Message {
            envelope: Envelope { from, to: 0, message: Message::Release { sku: 3, quantity: 2 } },
            link_sequence: 1,
            cause_sequence: 1,
        },
    ];
    let mut bytes = Vec::new();
    let mut previous = 0;
    for (index, input) in inputs.iter().enumerate() {
        let mut body = Vec::new();
        encode_input(input, &mut body);
        let sequence = index as u64 + 1;
        previous = encode_entry(0, sequence, 1_000 + sequence, previous, &body, &mut bytes)
            .checksum_header;
    }
    bytes
}

#[test]
fn bad_arguments_and_bad_files_are_messages_never_panics() {
    let root = fresh_data_dir();
    std::fs::create_dir_all(&root).expect("mkdir");
    let config = root.join("serve.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let config = config.to_str().expect("utf-8").to_string();
    let every = |dir: &str| -> Vec<Output> {
        vec![
            rush(&["journal", "verify", dir, "--config", &config]),
            rush(&["journal", "dump", dir]),
            rush(&["journal", "stats", dir]),
        ]
    };
    let fails_with = |outputs: Vec<Output>, words: &str| {
        for output in outputs {
            assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
            assert!(text(&output.stderr).contains(words), "{words}: {}", describe(&output));
        }
    };

    let missing = root.join("missing");
    fails_with(every(missing.to_str().expect("utf-8")), "no such directory");
    fails_with(every(&config), "not a directory");
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    fails_with(every(empty.to_str().expect("utf-8")), "not a data directory (no META)");
    assert_eq!(std::fs::read_dir(&empty).expect("read_dir").count(), 0, "nothing created");
    std::fs::write(empty.join("META"), "a shopping list\n").expect("META");
    fails_with(every(empty.to_str().expect("utf-8")), "not a rush data directory META file");
    std::fs::write(empty.join("META"), "rush data directory\nformat 9\nshards 1\n").expect("META");
    fails_with(every(empty.to_str().expect("utf-8")), "data format 9");

    // A valid journal of one shard.
    let good = hand_made(&[(1, entries(0))]);
    let good_dir = good.to_str().expect("utf-8");
    let output = rush(&["journal", "dump", good_dir]);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        text(&output.stdout),
        "shard 0 seq 1 now_ms 1001 START jump 65536\n\
         shard 0 seq 2 now_ms 1002 REQUEST Deposit{account 7 amount 100 key 1}\n\
         shard 0 seq 3 now_ms 1003 MESSAGE from 0 link 1 cause 1 Release{sku 3 quantity 2}\n"
    );
    // Its Release came from shard 0 itself, which the replay of shard 0 never sends: the
    // checksums are right, recovery's own check panics; verify says a start would crash.
    let output = rush(&["journal", "verify", good_dir, "--config", &config]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("would crash") && stderr.contains("recovery panicked: "), "{stderr}");
    // Flags out of range.
    let output = rush(&["journal", "dump", good_dir, "--shard", "1"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(text(&output.stderr).contains("--shard 1: "), "{}", describe(&output));
    assert!(text(&output.stderr).contains("holds 1 shard (0 to 0)"), "{}", describe(&output));
    for flags in [["--from", "0"], ["--limit", "0"], ["--shard", "x"]] {
        let output = rush(&["journal", "dump", good_dir, flags[0], flags[1]]);
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {}", describe(&output));
    }
    let output = rush(&["journal", "verify", good_dir, "--config", "/nonexistent/serve.toml"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(text(&output.stderr).contains("/nonexistent/serve.toml"), "{}", describe(&output));

    // Verify creates nothing: without the LOCK or a shard directory it refuses.
    std::fs::remove_file(good.join("LOCK")).expect("rm LOCK");
    let output = rush(&["journal", "verify", good_dir, "--config", &config]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(text(&output.stderr).contains("LOCK: missing"), "{}", describe(&output));
    assert!(!good.join("LOCK").exists());
    std::fs::write(good.join("LOCK"), "").expect("LOCK");

    // A receipt from a shard the directory does not have: the scan passes (dump shows it),
    // recovery refuses it.
    let stranger = hand_made(&[(1, entries(5))]);
    let stranger_dir = stranger.to_str().expect("utf-8");
    let output = rush(&["journal", "verify", stranger_dir, "--config", &config]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        text(&output.stderr)
            .contains("recovery failed: shard 0: receipt from shard 5, which does not exist"),
        "{}",
        describe(&output)
    );
    assert!(rush(&["journal", "dump", stranger_dir]).status.success());

    // Damage anywhere in a hand-made journal: each command answers 0 (a torn tail) or 1
    // (corruption), with a message, never a panic (`rush` checks).
    let bytes = entries(0);
    for position in (0..bytes.len()).step_by(7) {
        let mut damaged = bytes.clone();
        damaged[position] ^= 0x5a;
        let directory = hand_made(&[(1, damaged)]);
        for output in every(directory.to_str().expect("utf-8")) {
            let code = output.status.code();
            assert!(code == Some(0) || code == Some(1), "byte {position}: {}", describe(&output));
            if code == Some(1) {
                assert!(text(&output.stderr).starts_with("rush: "), "{}", describe(&output));
            }
        }
        let _ = std::fs::remove_dir_all(&directory);
    }
    // Garbage only: a torn tail at offset 0 (nothing valid after it), not an error.
    let garbage = hand_made(&[(1, (0..300_u32).map(|i| (i * 37 % 251) as u8).collect())]);
    let output =
        rush(&["journal", "verify", garbage.to_str().expect("utf-8"), "--config", &config]);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        text(&output.stdout).contains("torn tail          300 bytes at "),
        "{}",
        describe(&output)
    );

    // Stats lists snapshot files by name and size.
    std::fs::write(good.join("shard-000/snapshot-00000000000000000003.rsn"), [0_u8; 42])
        .expect("snapshot");
    let output = rush(&["journal", "stats", good_dir]);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        text(&output.stdout)
            .contains("snapshot           snapshot-00000000000000000003.rsn (42 bytes)"),
        "{}",
        describe(&output)
    );

    for directory in [root, good, stranger, garbage] {
        let _ = std::fs::remove_dir_all(directory);
    }
}
