//! Writes the seed corpora of the fuzz targets, `tests/fuzz/seeds/<target>/`, from the
//! frames of the protocol tests, the committed captures of tools/tests/data and the sale and
//! config examples of the tools' tests. The seeds are committed; run this again (it
//! replaces the folders) when a format changes:
//!
//! ```sh
//! cargo run --manifest-path tests/fuzz/Cargo.toml --example make_seeds
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use rush_engine::quota::{coordinator_shard, home_shard, Envelope, Message, Placement};
use rush_engine::{
    AccountView, Engine, Reply, ReplyBody, Request, ReservationState, ReservationView, Reserve,
    ResultCode, SkuSpec, SkuView, Target, RESERVE_FLAG_PAY,
};
use rush_net::capture::{Record, KIND_CLOSE, KIND_FRAME, KIND_OPEN};
use rush_net::protocol::{encode_ping_response, encode_request, encode_response, Opcode, Topology};
use rush_runtime::journal::codec::{changes_state, encode_input, Input};
use rush_runtime::journal::format::encode_entry;
use rush_runtime::journal::snapshot::{encode_snapshot_file, OutboxMessage, SnapshotParts};
use rush_tools::capture::pcap::PacketReader;
use rush_tools::capture::{capture_of, convert};
use rush_tools::sale::DEMO_SALE;

const PORT: u16 = 7390;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("../../tools/tests/data");
    let seeds = root.join("seeds");
    let pcaps: Vec<(&str, Vec<u8>)> =
        ["session.pcap", "session-ns.pcapng", "session-sll2.pcap", "lossy.pcap"]
            .into_iter()
            .map(|name| (name, fs::read(data.join(name)).expect("a committed capture")))
            .collect();

    write(&seeds, "request_decoder", request_seeds());
    write(&seeds, "response_decoder", response_seeds());
    write(&seeds, "sale_file", text_seeds(SALES));
    write(&seeds, "config_file", text_seeds(CONFIGS));

    let mut captures = Vec::new();
    for (name, bytes) in &pcaps {
        if name.ends_with(".pcap") && *name != "session-sll2.pcap" {
            let capture = convert(&bytes[..], PORT).expect("a committed capture converts").capture;
            let stem = name.trim_end_matches(".pcap");
            captures.push((format!("{stem}.rushcap"), rush_fuzz::capture_bytes(&capture)));
        }
    }
    captures.push(("server.rushcap".into(), server_capture()));
    captures.push(("empty.rushcap".into(), rush_fuzz::capture_bytes(&capture_of(0, vec![]))));
    write(&seeds, "capture_reader", captures);

    let mut files: Vec<(String, Vec<u8>)> =
        pcaps.iter().map(|(name, bytes)| (name.to_string(), bytes.clone())).collect();
    let packets = first_packets(&pcaps[0].1, 12);
    for (name, bytes) in [
        ("big-endian-nanos.pcap", pcap_big_endian_nanos(&packets)),
        ("big-endian-blocks.pcapng", pcapng_big_endian(&packets)),
    ] {
        // The first connection of session.pcap: its 3 frames.
        let conversion = convert(&bytes[..], PORT).expect("the seed converts");
        assert_eq!(conversion.report.stats.frames, 3, "{name}: {}", conversion.report);
        files.push((name.into(), bytes));
    }
    // What the fuzz target found (tools/src/capture/tests.rs pins it): a big-endian section,
    // then a Process Information Block whose total length is 4.
    let mut short = Vec::new();
    short.extend_from_slice(&[0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 28, 0x1a, 0x2b, 0x3c, 0x4d]);
    short.extend_from_slice(&[0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    short.extend_from_slice(&[0, 0, 0, 28, 0x80, 0, 0, 1, 0, 0, 0, 4, 3, 1, 0xff, 0x2c]);
    files.push(("process-information-length-4.pcapng".into(), short));
    write(&seeds, "pcap_import", files);
    write(&seeds, "journal_reader", journal_seeds());
    write(&seeds, "snapshot_reader", snapshot_seeds());
}

/// Inputs of every kind: requests, messages, ticks, a start.
fn journal_inputs() -> Vec<Input> {
    let mut inputs = vec![Input::Tick, Input::Start { jump: 1 << 16 }];
    inputs.extend(requests().into_iter().filter(changes_state).map(Input::Request));
    let messages = [
        Message::Acquire { sku: 9, reservation: 77, quantity: 2, deadline_ms: 5_000, wait: true },
        Message::Grant { sku: 9, reservation: 77, quantity: 2, refill: 10 },
        Message::Deny { sku: 9, reservation: 78, result: ResultCode::SoldOut },
        Message::Release { sku: 9, quantity: 3 },
        Message::Dry { sku: 9, dry: true },
        Message::Adjust { sku: 9, delta: -4, key: 12 },
    ];
    for (index, message) in messages.into_iter().enumerate() {
        inputs.push(Input::Message {
            envelope: Envelope { from: 1, to: 0, message },
            link_sequence: index as u64 + 1,
            cause_sequence: 40 + index as u64,
        });
    }
    inputs
}

/// Journal bytes: (mode 0) a segment of chained entries as a server writes them; (mode 1)
/// the body of one entry.
fn journal_seeds() -> Vec<(String, Vec<u8>)> {
    let inputs = journal_inputs();
    let mut segment = vec![0_u8];
    let mut checksum = 0;
    for (index, chunk) in inputs.chunks(3).enumerate() {
        let mut body = Vec::new();
        for input in chunk {
            encode_input(input, &mut body);
        }
        let header = encode_entry(
            0,
            index as u64 + 1,
            1_700_000_000_000 + index as u64,
            checksum,
            &body,
            &mut segment,
        );
        checksum = header.checksum_header;
    }
    let mut torn = segment.clone();
    torn.truncate(torn.len() - 20);
    let mut body = vec![1_u8];
    for input in &inputs {
        encode_input(input, &mut body);
    }
    vec![("segment.rjl".into(), segment), ("torn.rjl".into(), torn), ("body.bin".into(), body)]
}

/// Snapshot files of small engines with some of everything, for 1 and 2 shards, as they are
/// (mode 0, 2) and marked for checksum repair (mode 1, 3).
fn snapshot_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for shard_count in [1_u32, 2] {
        let config = rush_fuzz::journal_engine_config();
        let placement = Placement { shard: 0, shard_count };
        let mut engine = Engine::new_shard(config, placement).expect("valid");
        let now = 1_700_000_000_000;
        let spec = SkuSpec {
            sku: (1..).find(|&sku| coordinator_shard(sku, shard_count) == 0).expect("some SKU"),
            stock_total: 6,
            price: 5,
            per_user_limit: 2,
            hold_ms: 0,
            start_ms: 0,
            end_ms: 0,
        };
        engine.execute(now, &Request::PutSku(spec));
        let homed: Vec<u64> =
            (1..).filter(|&account| home_shard(account, shard_count) == 0).take(3).collect();
        engine.execute(now, &Request::Deposit { account: homed[0], amount: 100, key: 1 });
        for &account in &homed {
            let reserve = Reserve {
                account,
                sku: spec.sku,
                quantity: 1,
                key: 5,
                flags: if account == homed[0] { RESERVE_FLAG_PAY } else { 0 },
                hold_ms: 0,
                wait_ms: 0,
            };
            engine.execute(now + 1, &Request::Reserve(reserve));
        }
        engine.tick(now + 10);
        engine.drain_events().for_each(drop);
        let outbox: Vec<OutboxMessage> = engine
            .drain_messages()
            .enumerate()
            .map(|(index, envelope)| OutboxMessage {
                envelope,
                link_sequence: index as u64 + 1,
                cause_sequence: 3,
            })
            .collect();
        let sent: Vec<u64> = (0..shard_count as usize)
            .map(|to| outbox.iter().filter(|m| m.envelope.to as usize == to).count() as u64)
            .collect();
        let parts = SnapshotParts {
            shard: 0,
            sequence: 3,
            checksum_previous: 0x1234,
            now_ms: engine.now_ms(),
            sent: &sent,
            received: &vec![0; shard_count as usize],
            outbox: &outbox,
        };
        let mut file = Vec::new();
        encode_snapshot_file(&parts, &mut file, |out| {
            let mut writer = rush_engine::snapshot::SnapshotWriter { bytes: std::mem::take(out) };
            engine.encode_snapshot(&mut writer);
            *out = writer.bytes;
        });
        // The seed must reach the engine's restore and pass it.
        let decoded =
            rush_runtime::journal::snapshot::decode_snapshot_file("seed", &file, 0, shard_count)
                .expect("the seed decodes");
        let restored =
            Engine::restore_snapshot(config, placement, decoded.engine).expect("restores");
        assert_eq!(restored.live_reservations(), 3);
        let two = u8::from(shard_count == 2) << 1;
        for repair in [0_u8, 1] {
            let mut seed = vec![two | repair];
            seed.extend_from_slice(&file);
            seeds.push((format!("{shard_count}-shards-mode-{}.rsn", two | repair), seed));
        }
    }
    seeds
}

fn write(seeds: &Path, target: &str, files: Vec<(String, Vec<u8>)>) {
    let folder: PathBuf = seeds.join(target);
    let _ = fs::remove_dir_all(&folder);
    fs::create_dir_all(&folder).expect("create the seed folder");
    for (name, bytes) in files {
        fs::write(folder.join(name), bytes).expect("write a seed");
    }
}

fn reserve(key: u64, wait_ms: u32) -> Request {
    Request::Reserve(Reserve {
        account: 42,
        sku: 1001,
        quantity: 1,
        key,
        flags: RESERVE_FLAG_PAY,
        hold_ms: 30_000,
        wait_ms,
    })
}

/// One request of every opcode (the frames of tests/protocol_decode_fuzz.rs and more).
fn requests() -> Vec<Request> {
    vec![
        Request::Ping,
        reserve(9001, 0),
        Request::Confirm { account: 42, target: Target::ReserveKey(9001), key: 9002 },
        Request::Cancel { account: 42, target: Target::Reservation(1 << 32), key: 9003 },
        Request::QuerySku { sku: 1001 },
        Request::QueryAccount { account: 42 },
        Request::QueryReservation { account: 42, target: Target::ReserveKey(9001) },
        Request::PutSku(SkuSpec {
            sku: 1001,
            stock_total: 100,
            price: 4999,
            per_user_limit: 1,
            hold_ms: 30_000,
            start_ms: 1_767_225_600_000,
            end_ms: 1_767_312_000_000,
        }),
        Request::AdjustStock { sku: 1001, delta: -5, key: 3 },
        Request::Pause { sku: 1001 },
        Request::Resume { sku: 1001 },
        Request::Deposit { account: 42, amount: 10_000, key: 4 },
        Request::Withdraw { account: 42, amount: 500, key: 5 },
    ]
}

fn encoded(request_id: u64, request: &Request) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_request(request_id, request, &mut bytes);
    bytes
}

fn request_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = requests()
        .iter()
        .enumerate()
        .map(|(id, request)| {
            let name = Opcode::for_request(request).name().to_ascii_lowercase();
            (name, encoded(id as u64 + 1, request))
        })
        .collect();
    let ping = encoded(104, &Request::Ping);
    seeds.push(("four-pings".into(), ping.repeat(4)));
    let mut flagged = encoded(7, &Request::Ping);
    flagged[6] = 1;
    seeds.push(("header-flags-then-ping".into(), [flagged, ping.clone()].concat()));
    let mut unknown_flags = encoded(8, &reserve(1, 0));
    unknown_flags[44] = 0x80;
    seeds.push(("reserve-unknown-flags".into(), unknown_flags));
    let mut target_kind =
        encoded(9, &Request::Cancel { account: 1, target: Target::ReserveKey(1), key: 2 });
    target_kind[40] = 7;
    seeds.push(("cancel-bad-target-kind".into(), target_kind));
    let mut reserved = encoded(10, &Request::QuerySku { sku: 1 });
    reserved[63] = 1;
    seeds.push(("query-sku-reserved-byte".into(), reserved));
    let mut long = encoded(11, &Request::Ping);
    long[4] = 104;
    seeds.push(("ping-length-104".into(), long));
    seeds.push(("half-a-reserve".into(), encoded(12, &reserve(2, 0))[..30].to_vec()));
    seeds
}

fn response(opcode: Opcode, request_id: u64, reply: Reply) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_response(opcode, request_id, &reply, &mut bytes);
    bytes
}

fn response_seeds() -> Vec<(String, Vec<u8>)> {
    let held = ReservationView {
        reservation: 1 << 32 | 5,
        account: 42,
        sku: 1001,
        quantity: 1,
        flags: RESERVE_FLAG_PAY,
        amount: 4999,
        deadline_ms: 1_767_225_630_000,
        state: ReservationState::Held,
    };
    let waiting = ReservationView { state: ReservationState::Waiting, ..held };
    let sku = SkuView {
        sku: 1001,
        total: 100,
        available: 99,
        reserved: 1,
        price: 4999,
        per_user_limit: 1,
        hold_ms: 30_000,
        waiters: 3,
        paused: true,
        ..SkuView::default()
    };
    let wallet = AccountView {
        account: 42,
        available: 95_001,
        held: 4999,
        deposited: 100_000,
        ..AccountView::default()
    };
    let duplicate = Reply {
        result: ResultCode::Duplicate,
        original: ResultCode::Ok,
        body: ReplyBody::Reservation(held),
    };
    let mut ping = Vec::new();
    let topology = Topology { shard_count: 4, shard: 1, shard_port_base: 7170 };
    encode_ping_response(100, topology, &mut ping);
    let reserve = response(
        Opcode::Reserve,
        1,
        Reply::with_body(ResultCode::Ok, ReplyBody::Reservation(held)),
    );
    let mut bad_state = reserve.clone();
    bad_state[20] = 9;
    vec![
        ("ping".into(), ping),
        ("reserve-held".into(), reserve.clone()),
        (
            "reserve-waiting".into(),
            response(
                Opcode::Reserve,
                2,
                Reply::with_body(ResultCode::Waiting, ReplyBody::Reservation(waiting)),
            ),
        ),
        ("confirm-duplicate".into(), response(Opcode::Confirm, 3, duplicate)),
        (
            "query-sku".into(),
            response(Opcode::QuerySku, 4, Reply::with_body(ResultCode::Ok, ReplyBody::Sku(sku))),
        ),
        (
            "query-account".into(),
            response(
                Opcode::QueryAccount,
                5,
                Reply::with_body(ResultCode::Ok, ReplyBody::Account(wallet)),
            ),
        ),
        ("put-sku".into(), response(Opcode::PutSku, 6, Reply::code(ResultCode::Ok))),
        (
            "withdraw-refused".into(),
            response(Opcode::Withdraw, 7, Reply::code(ResultCode::InsufficientFunds)),
        ),
        (
            "sold-out-then-query-sku".into(),
            [
                response(Opcode::Reserve, 8, Reply::code(ResultCode::SoldOut)),
                response(
                    Opcode::QuerySku,
                    9,
                    Reply::with_body(ResultCode::Ok, ReplyBody::Sku(sku)),
                ),
            ]
            .concat(),
        ),
        ("reserve-bad-state".into(), bad_state),
    ]
}

fn text_seeds(texts: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    texts.iter().map(|(name, text)| (name.to_string(), text.as_bytes().to_vec())).collect()
}

/// The demo sale and the examples of tools/src/sale.rs's tests.
const SALES: &[(&str, &str)] = &[
    ("demo.toml", DEMO_SALE),
    (
        "window.toml",
        "[[sku]]\nid = 7\nstock = 5\nprice = 100\nhold_ms = 30000\nstart_ms = 10\nend_ms = 20\n\n\
         [[wallet]]\naccount = 9\nbalance = 50\n\n[[wallet]]\naccount = 3\nbalance = 40\n",
    ),
    (
        "sale.json",
        r#"{"sku": [{"id": 1, "stock": 10, "price": 0, "per_user_limit": 1}],
"wallet": [{"account": 5, "balance": 7}],
"wallet_range": [{"first": 10, "last": 12, "balance": 3}]}"#,
    ),
    (
        "overlap.toml",
        "[[wallet]]\naccount = 50\nbalance = 1\n[[wallet_range]]\nfirst = 1\nlast = 100\nbalance = 1\n",
    ),
    ("big-numbers.json", r#"{"sku": [{"id": 18446744073709551615, "stock": 1, "price": 1}]}"#),
];

/// The config files of tools/src/settings.rs's tests.
const CONFIGS: &[(&str, &str)] = &[
    (
        "full.toml",
        r#"listen = "127.0.0.1:9000"
admin_listen = "none"
shard_ports = 9500
shards = 3
io = "epoll"
pin = false
sale = "sales/drop.toml"
ring_capacity = 1024
sku_max = 10
account_max = 100
reservation_max = 1000
waitlist_max = 10
request_key_max = 1000
request_key_retention_ms = 7200000
limit_entry_max = 100
quantity_max = 5
hold_ms_default = 1000
hold_ms_max = 60000
wait_ms_max = 60000
connection_max = 10
pipeline_max = 16
inbound_bytes_max = 65536
outbound_bytes_max = 32768
"#,
    ),
    ("small.toml", "listen = \"127.0.0.1:9000\"\nshards = 3\nio = \"epoll\"\nshard_ports = \"off\"\n"),
    ("ipv6.toml", "listen = \"[::1]:65000\"\nadmin_listen = \"[::1]:65001\"\nshard_ports = \"auto\"\nsale = \"/srv/sale.json\"\n"),
    ("bad-shards.toml", "shards = 65\n"),
];

/// A capture as a server writes it: shards interleaved out of time order, an admin
/// connection, a connection without OPEN, one never closed, a parked RESERVE (wait_ms),
/// the short frame of a connection that failed framing, and records dropped.
fn server_capture() -> Vec<u8> {
    let c = |shard: u64, sequence: u64| shard << 48 | sequence;
    let frame = |request_id, request: &Request| encoded(request_id, request);
    let bad = [0x52, 0x53, 0x01, 0x7f, 0x40, 0x00];
    let records = vec![
        Record::new(1_000, c(0, 1), KIND_OPEN, false, 0, &[]),
        Record::new(3_000, c(1, 1), KIND_OPEN, true, 1, &[]),
        Record::new(2_000, c(0, 1), KIND_FRAME, false, 0, &frame(1, &reserve(1, 5_000))),
        Record::new(4_000, c(1, 1), KIND_FRAME, true, 1, &frame(2, &requests()[7])),
        Record::new(5_000, c(0, 2), KIND_FRAME, false, 0, &frame(3, &Request::Ping)),
        Record::new(6_000, c(0, 1), KIND_FRAME, false, 0, &frame(4, &requests()[2])),
        Record::new(6_500, c(1, 1), KIND_CLOSE, true, 1, &[]),
        Record::new(7_000, c(0, 3), KIND_OPEN, false, 0, &[]),
        Record::new(7_500, c(0, 3), KIND_FRAME, false, 0, &bad),
        Record::new(8_000, c(0, 3), KIND_CLOSE, false, 0, &[]),
        Record::new(9_000, c(0, 1), KIND_CLOSE, false, 0, &[]),
    ];
    let mut capture = capture_of(1_767_225_600_000_000_000, records);
    capture.header.dropped = rush_net::protocol::wire::U64Le::new(2);
    rush_fuzz::capture_bytes(&capture)
}

/// (timestamp ns, bytes) of the first `count` packets of a pcap.
fn first_packets(pcap: &[u8], count: usize) -> Vec<(u64, Vec<u8>)> {
    let mut reader = PacketReader::new(pcap).expect("a committed capture");
    let mut packets = Vec::new();
    while let Some(packet) = reader.next_packet().expect("a committed capture") {
        packets.push((packet.timestamp_ns, packet.data.to_vec()));
        if packets.len() == count {
            break;
        }
    }
    packets
}

/// A classic pcap, big-endian, nanosecond timestamps, Ethernet.
fn pcap_big_endian_nanos(packets: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_3c4d_u32.to_be_bytes());
    out.extend_from_slice(&2_u16.to_be_bytes());
    out.extend_from_slice(&4_u16.to_be_bytes());
    out.extend_from_slice(&[0; 8]); // thiszone, sigfigs
    out.extend_from_slice(&262_144_u32.to_be_bytes());
    out.extend_from_slice(&1_u32.to_be_bytes());
    for (time, data) in packets {
        out.extend_from_slice(&((time / 1_000_000_000) as u32).to_be_bytes());
        out.extend_from_slice(&((time % 1_000_000_000) as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(data);
    }
    out
}

/// A big-endian pcapng: a Section Header Block, an Interface Description Block with
/// `if_tsresol` 2^-20 s and `if_tsoffset`, then the packets in an Enhanced Packet Block, a
/// Simple Packet Block and an obsolete Packet Block in turn.
fn pcapng_big_endian(packets: &[(u64, Vec<u8>)]) -> Vec<u8> {
    fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
        let padded = body.len().div_ceil(4) * 4;
        let length = (12 + padded) as u32;
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(body);
        out.resize(out.len() + padded - body.len(), 0);
        out.extend_from_slice(&length.to_be_bytes());
    }
    fn padded(body: &mut Vec<u8>, data: &[u8]) {
        body.extend_from_slice(data);
        body.resize(body.len().div_ceil(4) * 4, 0);
    }
    const OFFSET_S: u64 = 1_700_000_000;
    let mut out = Vec::new();
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4d_u32.to_be_bytes());
    shb.extend_from_slice(&1_u16.to_be_bytes());
    shb.extend_from_slice(&0_u16.to_be_bytes());
    shb.extend_from_slice(&(-1_i64).to_be_bytes());
    block(&mut out, 0x0a0d_0d0a, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&1_u16.to_be_bytes()); // Ethernet
    idb.extend_from_slice(&0_u16.to_be_bytes());
    idb.extend_from_slice(&262_144_u32.to_be_bytes());
    idb.extend_from_slice(&9_u16.to_be_bytes()); // if_tsresol
    idb.extend_from_slice(&1_u16.to_be_bytes());
    padded(&mut idb, &[0x80 | 20]);
    idb.extend_from_slice(&14_u16.to_be_bytes()); // if_tsoffset
    idb.extend_from_slice(&8_u16.to_be_bytes());
    idb.extend_from_slice(&(OFFSET_S as i64).to_be_bytes());
    idb.extend_from_slice(&[0; 4]); // opt_endofopt
    block(&mut out, 1, &idb);
    for (index, (time, data)) in packets.iter().enumerate() {
        let units = (u128::from(time - OFFSET_S * 1_000_000_000) << 20) / 1_000_000_000;
        let (high, low) = ((units >> 32) as u32, units as u32);
        let length = (data.len() as u32).to_be_bytes();
        let mut body = Vec::new();
        match index % 3 {
            0 => {
                body.extend_from_slice(&0_u32.to_be_bytes());
                body.extend_from_slice(&high.to_be_bytes());
                body.extend_from_slice(&low.to_be_bytes());
                body.extend_from_slice(&length);
                body.extend_from_slice(&length);
                padded(&mut body, data);
                block(&mut out, 6, &body);
            }
            1 => {
                body.extend_from_slice(&length);
                padded(&mut body, data);
                block(&mut out, 3, &body);
            }
            _ => {
                body.extend_from_slice(&0_u16.to_be_bytes()); // interface
                body.extend_from_slice(&0_u16.to_be_bytes()); // drops
                body.extend_from_slice(&high.to_be_bytes());
                body.extend_from_slice(&low.to_be_bytes());
                body.extend_from_slice(&length);
                body.extend_from_slice(&length);
                padded(&mut body, data);
                block(&mut out, 2, &body);
            }
        }
    }
    out
}
