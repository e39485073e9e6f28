//! A durable server on loopback (both backends): what recovery gives back after a clean
//! stop, what it does with damaged journals, and what the sale file does to a recovered
//! data directory. Real files, real sockets.
//!
//! - **Determinism**: after a clean shutdown, replaying the data directory from scratch gives
//!   each shard exactly the state (`state_hash`) the live engine had.
//! - **Corruption**: a byte flipped in an entry before the tail, or a deleted segment, makes
//!   the server refuse to start with an error naming the file, the offset and what is
//!   wrong; an entry cut off at the end (a torn write) is truncated and the server starts.
//! - **Sale**: the sale file pre-warms a new data directory only.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rush_engine::{Reply, ReplyBody, Request, Reserve, ResultCode, SkuSpec, Target};
use rush_net::client::Client;
use rush_net::server::{BackendChoice, ConnLimits, Server, ServerError};
use rush_runtime::journal::{list_segments, replay_directory, Durability};
use rush_suite::server::{config, BACKENDS};

fn scratch(name: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("rush-journal-recovery-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    path
}

fn durable(
    backend: BackendChoice,
    shards: u32,
    path: &Path,
    segment_bytes: u64,
) -> rush_net::server::ServerConfig {
    let mut config = config(backend, shards, ConnLimits::default());
    config.durability = Durability::Sync;
    config.data_dir = Some(path.to_path_buf());
    config.journal.segment_bytes_max = segment_bytes;
    config
}

fn spec(sku: u64, stock_total: u64) -> SkuSpec {
    SkuSpec { sku, stock_total, price: 3, per_user_limit: 0, hold_ms: 0, start_ms: 0, end_ms: 0 }
}

/// Some of everything: SKUs on both shards, wallets, holds, confirms, cancels, a waiter, a
/// restock and a reduction.
fn traffic(server: &Server) -> Vec<(Request, Reply)> {
    let mut admin = Client::connect(server.admin_addr().expect("admin")).expect("admin");
    let mut client = Client::connect(server.local_addr()).expect("client");
    let mut log = Vec::new();
    let mut call = |client: &mut Client, request: Request| {
        let reply = client.call(&request).expect("call");
        log.push((request, reply));
        reply
    };
    for sku in 1..=4 {
        assert_eq!(call(&mut admin, Request::PutSku(spec(sku, 6))).result, ResultCode::Ok);
    }
    std::thread::sleep(std::time::Duration::from_millis(30)); // the definitions reach every shard
    for account in 1..=12 {
        call(&mut admin, Request::Deposit { account, amount: 1_000, key: 1 });
    }
    let mut held = Vec::new();
    for account in 1..=12_u64 {
        let reserve = Reserve {
            account,
            sku: 1 + account % 4,
            quantity: 1 + (account % 2) as u32,
            key: 10,
            flags: (account % 2) as u32,
            hold_ms: 0,
            wait_ms: if account > 9 { 500 } else { 0 },
        };
        let reply = call(&mut client, Request::Reserve(reserve));
        if let Some(view) = reply.reservation() {
            held.push((account, view.reservation));
        }
    }
    for (index, (account, id)) in held.iter().enumerate() {
        let target = Target::Reservation(*id);
        let request = if index % 3 == 0 {
            Request::Confirm { account: *account, target, key: 20 }
        } else if index % 3 == 1 {
            Request::Cancel { account: *account, target, key: 20 }
        } else {
            continue;
        };
        call(&mut client, request);
    }
    call(&mut admin, Request::AdjustStock { sku: 2, delta: 5, key: 1 });
    call(&mut admin, Request::AdjustStock { sku: 3, delta: -1, key: 2 });
    log
}

#[test]
fn replaying_a_cleanly_stopped_directory_gives_the_live_state_exactly() {
    for backend in BACKENDS {
        for shards in [1, 2] {
            let path = scratch(&format!("determinism-{backend:?}-{shards}"));
            let server = Server::start(durable(backend, shards, &path, 1 << 20)).expect("start");
            traffic(&server);
            let report = server.shutdown().expect("clean stop");
            let live: Vec<u64> = report.engines.iter().map(|engine| engine.state_hash()).collect();
            let config = *report.engines[0].config();
            let replayed = replay_directory(&path, config, shards).expect("replay");
            let hashes: Vec<u64> =
                replayed.shards.iter().map(|shard| shard.engine.state_hash()).collect();
            assert_eq!(hashes, live, "{backend:?}, {shards} shards: replay reaches the live state");
            assert!(replayed.redeliveries.is_empty(), "a clean stop leaves nothing in flight");
            std::fs::remove_dir_all(&path).expect("clean up");
        }
    }
}

#[test]
fn a_restart_keeps_answers_and_skips_the_sale() {
    for backend in BACKENDS {
        let path = scratch(&format!("restart-{backend:?}"));
        let mut first = durable(backend, 2, &path, 1 << 20);
        first.prewarm = vec![
            Request::PutSku(spec(9, 10)),
            Request::Deposit { account: 50, amount: 100, key: u64::MAX },
        ];
        let server = Server::start(first.clone()).expect("start");
        assert!(server.prewarmed(), "a new data directory is pre-warmed");
        let log = traffic(&server);
        server.shutdown().expect("stop");
        let server = Server::start(first).expect("restart");
        assert!(!server.prewarmed(), "a recovered data directory is not pre-warmed again");
        let mut admin = Client::connect(server.admin_addr().expect("admin")).expect("admin");
        let wallet = admin.call(&Request::QueryAccount { account: 50 }).expect("query");
        let ReplyBody::Account(wallet) = wallet.body else { panic!("{wallet:?}") };
        assert_eq!(wallet.deposited, 100, "the pre-warm deposit was not applied twice");
        let mut client = Client::connect(server.local_addr()).expect("client");
        for (request, reply) in log.iter().filter(|(request, reply)| {
            reply.result == ResultCode::Ok && !matches!(request, Request::PutSku(_))
        }) {
            let connection = if request.is_admin() { &mut admin } else { &mut client };
            let retry = connection.call(request).expect("retry");
            assert_eq!(
                (retry.result, retry.original),
                (ResultCode::Duplicate, ResultCode::Ok),
                "{request:?}"
            );
            if let (Some(before), Some(after)) = (reply.reservation(), retry.reservation()) {
                assert_eq!(before.reservation, after.reservation);
            }
        }
        server.shutdown().expect("stop");
        std::fs::remove_dir_all(&path).expect("clean up");
    }
}

/// A stopped server's journal for `damage`, with small segments so there are several.
fn damaged_start(name: &str, damage: impl FnOnce(&Path)) -> (PathBuf, Result<Server, ServerError>) {
    let path = scratch(name);
    let backend = BackendChoice::Epoll;
    let server = Server::start(durable(backend, 1, &path, 1024)).expect("start");
    traffic(&server);
    server.shutdown().expect("stop");
    damage(&path.join("shard-000"));
    let result = Server::start(durable(backend, 1, &path, 1024));
    (path, result)
}

fn segments(directory: &Path) -> Vec<PathBuf> {
    list_segments(directory).expect("segments").into_iter().map(|(_, path)| path).collect()
}

#[test]
fn a_flipped_byte_before_the_tail_stops_the_start_with_the_file_and_offset() {
    let (path, result) = damaged_start("flip", |shard| {
        let segments = segments(shard);
        assert!(segments.len() >= 3, "small segments: {segments:?}");
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&segments[1]).unwrap();
        let mut byte = [0_u8];
        file.read_exact_at(&mut byte, 100).unwrap();
        file.write_all_at(&[byte[0] ^ 0x40], 100).unwrap();
    });
    let error = result.expect_err("a corrupt journal does not start").to_string();
    assert!(error.contains("journal-0000") && error.contains("offset"), "{error}");
    assert!(error.contains("corruption"), "{error}");
    std::fs::remove_dir_all(&path).expect("clean up");
}

#[test]
fn a_deleted_segment_stops_the_start_naming_the_gap() {
    let (path, result) = damaged_start("delete", |shard| {
        let segments = segments(shard);
        assert!(segments.len() >= 3);
        std::fs::remove_file(&segments[1]).unwrap();
    });
    let error = result.expect_err("a missing segment does not start").to_string();
    assert!(error.contains("sequence") && error.contains("journal-0000"), "{error}");
    std::fs::remove_dir_all(&path).expect("clean up");
}

#[test]
fn an_entry_cut_off_at_the_end_is_truncated_and_the_server_starts() {
    let mut cut = 0;
    let (path, result) = damaged_start("torn", |shard| {
        let last = segments(shard).pop().expect("a segment");
        let length = std::fs::metadata(&last).unwrap().len();
        cut = 20;
        std::fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(length - cut).unwrap();
    });
    let server = result.expect("a torn tail is truncated");
    let report = server.recovery().expect("durable");
    let (file, _, bytes) = report.shards[0].torn.clone().expect("the torn tail is reported");
    assert!(file.contains("journal-0000"), "{file}");
    assert!(bytes > 0 && bytes < 1024, "{bytes}");
    server.shutdown().expect("stop");
    std::fs::remove_dir_all(&path).expect("clean up");
}

#[test]
fn two_servers_cannot_share_a_data_directory() {
    let path = scratch("lock");
    let first = Server::start(durable(BackendChoice::Epoll, 1, &path, 1 << 20)).expect("start");
    let second = Server::start(durable(BackendChoice::Epoll, 1, &path, 1 << 20));
    let error = second.expect_err("the directory is locked").to_string();
    assert!(error.contains("in use by another server"), "{error}");
    first.shutdown().expect("stop");
    // And a directory made for another shard count is refused.
    let error = Server::start(durable(BackendChoice::Epoll, 2, &path, 1 << 20))
        .expect_err("2 shards")
        .to_string();
    assert!(error.contains("holds 1 shards"), "{error}");
    std::fs::remove_dir_all(&path).expect("clean up");
}
