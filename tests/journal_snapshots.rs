//! Snapshots of a durable server on loopback (both backends): a running server snapshots
//! its shards and deletes the segments a snapshot covers; a restart starts from the latest
//! snapshot and the journal after it, and keeps every answer; a damaged snapshot stops the
//! start with the file, the offset and what is wrong; an unfinished one is removed; a
//! snapshot taken with other capacities is refused. Real files, real sockets.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rush_engine::{Reply, Request, Reserve, ResultCode, SkuSpec, Target};
use rush_net::client::Client;
use rush_net::server::{BackendChoice, ConnLimits, Server, ServerConfig};
use rush_runtime::journal::snapshot::list_snapshots;
use rush_runtime::journal::{list_segments, replay_directory, Durability, SnapshotEvery};
use rush_suite::server::{config, BACKENDS};

const SHARDS: u32 = 2;

fn scratch(name: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("rush-journal-snapshots-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    path
}

/// Small segments and a snapshot every 100 records: several of each in a short run.
fn durable(backend: BackendChoice, path: &Path) -> ServerConfig {
    let mut config = config(backend, SHARDS, ConnLimits::default());
    config.durability = Durability::Sync;
    config.data_dir = Some(path.to_path_buf());
    config.journal.segment_bytes_max = 2048;
    config.journal.snapshot_every = SnapshotEvery::Inputs(100);
    config
}

/// Enough traffic for several snapshots per shard: SKUs, deposits, holds (some left live),
/// confirms and cancels. Returns every effectful request with its answer.
fn traffic(server: &Server, round: u64) -> Vec<(Request, Reply)> {
    let mut admin = Client::connect(server.admin_addr().expect("admin")).expect("admin");
    let mut client = Client::connect(server.local_addr()).expect("client");
    let mut log = Vec::new();
    if round == 0 {
        for sku in 1..=4 {
            let spec = SkuSpec {
                sku,
                stock_total: 10_000,
                price: 2,
                per_user_limit: 0,
                hold_ms: 0,
                start_ms: 0,
                end_ms: 0,
            };
            let reply = admin.call(&Request::PutSku(spec)).expect("put");
            assert_eq!(reply.result, ResultCode::Ok);
        }
        std::thread::sleep(std::time::Duration::from_millis(30)); // definitions reach every shard
    }
    for step in 0..150_u64 {
        let account = 1 + step % 20;
        let key = round * 1_000 + step + 1;
        let deposit = Request::Deposit { account, amount: 10, key };
        let reply = admin.call(&deposit).expect("deposit");
        log.push((deposit, reply));
        let reserve = Request::Reserve(Reserve {
            account,
            sku: 1 + step % 4,
            quantity: 1,
            key,
            flags: (step % 2) as u32,
            hold_ms: 0,
            wait_ms: 0,
        });
        let reply = client.call(&reserve).expect("reserve");
        log.push((reserve, reply));
        if let Some(view) = reply.reservation() {
            let target = Target::Reservation(view.reservation);
            let settle = match step % 3 {
                0 => Request::Confirm { account, target, key: key + 500 },
                1 => Request::Cancel { account, target, key: key + 500 },
                _ => continue, // left held
            };
            let reply = client.call(&settle).expect("settle");
            log.push((settle, reply));
        }
    }
    log.retain(|(_, reply)| reply.result == ResultCode::Ok);
    log
}

fn snapshot_files(path: &Path, shard: u32) -> Vec<(u64, PathBuf)> {
    list_snapshots(&path.join(format!("shard-{shard:03}"))).expect("list").finished
}

#[test]
fn a_restart_starts_from_the_latest_snapshot_and_keeps_every_answer() {
    for backend in BACKENDS {
        let path = scratch(&format!("restart-{backend:?}"));
        let server = Server::start(durable(backend, &path)).expect("start");
        let mut log = traffic(&server, 0);
        let report = server.shutdown().expect("stop");
        let live: Vec<u64> = report.engines.iter().map(|engine| engine.state_hash()).collect();
        for shard in 0..SHARDS {
            let snapshots = snapshot_files(&path, shard);
            assert_eq!(snapshots.len(), 1, "{backend:?} shard {shard}: the latest only");
            let segments = list_segments(&path.join(format!("shard-{shard:03}"))).expect("list");
            let (first_segment, _) = segments.first().expect("the journal after the snapshot");
            assert!(
                *first_segment > 1 && *first_segment <= snapshots[0].0 + 1,
                "{backend:?} shard {shard}: covered segments deleted, the rest kept: \
                 snapshot {snapshots:?}, segments {segments:?}"
            );
        }
        // Replay from the snapshots reaches the live state exactly.
        let engine_config = *report.engines[0].config();
        let replayed = replay_directory(&path, engine_config, SHARDS).expect("replay");
        let hashes: Vec<u64> =
            replayed.shards.iter().map(|shard| shard.engine.state_hash()).collect();
        assert_eq!(hashes, live, "{backend:?}: snapshot + journal replay reaches the live state");
        assert!(replayed.shards.iter().all(|shard| shard.snapshot_sequence.is_some()));
        // A restart starts from them; every answer given before is given again.
        let server = Server::start(durable(backend, &path)).expect("restart");
        let recovery = server.recovery().expect("durable");
        assert!(
            recovery.shards.iter().all(|shard| shard.snapshot_sequence.is_some()),
            "{recovery:?}"
        );
        let mut admin = Client::connect(server.admin_addr().expect("admin")).expect("admin");
        let mut client = Client::connect(server.local_addr()).expect("client");
        for (request, reply) in &log {
            let connection = if request.is_admin() { &mut admin } else { &mut client };
            let retry = connection.call(request).expect("retry");
            assert_eq!((retry.result, retry.original), (ResultCode::Duplicate, reply.result));
            if let (Some(before), Some(after)) = (reply.reservation(), retry.reservation()) {
                assert_eq!(before.reservation, after.reservation, "{request:?}");
            }
        }
        // And it keeps going: more snapshots over the recovered state.
        log = traffic(&server, 1);
        assert!(!log.is_empty());
        server.shutdown().expect("stop");
        let replayed = replay_directory(&path, engine_config, SHARDS).expect("replay again");
        for shard in &replayed.shards {
            shard.engine.check_invariants().expect("invariants after two runs");
        }
        std::fs::remove_dir_all(&path).expect("clean up");
    }
}

/// A stopped server's directory, damaged by `damage`, and the error of the next start.
fn damaged_start(name: &str, damage: impl FnOnce(&Path), restart: ServerConfig) -> String {
    let path = scratch(name);
    let backend = BackendChoice::Epoll;
    let server = Server::start(durable(backend, &path)).expect("start");
    traffic(&server, 0);
    server.shutdown().expect("stop");
    damage(&path);
    let mut restart = restart;
    restart.data_dir = Some(path.clone());
    let error = Server::start(restart).expect_err("the damaged directory does not start");
    std::fs::remove_dir_all(&path).expect("clean up");
    error.to_string()
}

#[test]
fn a_flipped_byte_in_a_snapshot_stops_the_start_with_the_file_and_offset() {
    let error = damaged_start(
        "flip",
        |path| {
            let (_, file) = snapshot_files(path, 1).pop().expect("a snapshot");
            let file = std::fs::OpenOptions::new().read(true).write(true).open(file).unwrap();
            let mut byte = [0_u8];
            file.read_exact_at(&mut byte, 200).unwrap();
            file.write_all_at(&[byte[0] ^ 0x08], 200).unwrap();
        },
        durable(BackendChoice::Epoll, Path::new("")),
    );
    assert!(error.contains("shard-001/snapshot-0000"), "{error}");
    assert!(error.contains("offset 96") && error.contains("body checksum mismatch"), "{error}");
}

#[test]
fn a_truncated_snapshot_stops_the_start() {
    let error = damaged_start(
        "truncate",
        |path| {
            let (_, file) = snapshot_files(path, 0).pop().expect("a snapshot");
            let length = std::fs::metadata(&file).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&file)
                .unwrap()
                .set_len(length - 1)
                .unwrap();
        },
        durable(BackendChoice::Epoll, Path::new("")),
    );
    assert!(error.contains("shard-000/snapshot-0000") && error.contains("truncated"), "{error}");
}

#[test]
fn a_snapshot_taken_with_other_capacities_is_refused() {
    let mut other = durable(BackendChoice::Epoll, Path::new(""));
    other.runtime.engine.reservation_max += 1;
    let error = damaged_start("capacities", |_| {}, other);
    assert!(error.contains("reservation_max") && error.contains("snapshot"), "{error}");
}

#[test]
fn an_unfinished_snapshot_is_removed_at_start() {
    let path = scratch("unfinished");
    let server = Server::start(durable(BackendChoice::Epoll, &path)).expect("start");
    traffic(&server, 0);
    server.shutdown().expect("stop");
    // A crash while a snapshot was being written leaves its temporary file.
    let shard = path.join("shard-000");
    let unfinished = shard.join("snapshot-99999999999999999999.tmp");
    std::fs::write(&unfinished, b"half a snapshot").expect("write");
    let server = Server::start(durable(BackendChoice::Epoll, &path)).expect("start");
    assert!(!unfinished.exists(), "removed at start");
    assert!(server.recovery().expect("durable").stale_files_removed >= 1);
    server.shutdown().expect("stop");
    std::fs::remove_dir_all(&path).expect("clean up");
}
