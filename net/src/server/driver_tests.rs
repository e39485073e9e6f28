//! The drivers' durable writes (the journal's group commit rides on them): a WRITE + FSYNC
//! submitted through the driver completes in a later pass with the bytes on disk, several
//! may be in flight, a failed write comes back as an error (never as success), and a
//! driver refuses more than `SYNC_WRITES_IN_FLIGHT_MAX` in flight. Real files, both backends.

use std::fs::{File, OpenOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rush_engine::Config;
use rush_runtime::storage::SYNC_WRITES_IN_FLIGHT_MAX;
use rush_runtime::{Driver, Mesh, RuntimeConfig, ShardCore, SyncWrite, Synced};

use super::conn::Connections;
use super::epoll::EpollDriver;
use super::uring::UringDriver;
use super::ConnLimits;
use crate::protocol::Topology;

fn core() -> ShardCore {
    let config = RuntimeConfig {
        shard_count: 1,
        engine: Config::small(),
        port_count: 0,
        ring_capacity: 64,
        pin: false,
        idle_spin_us: 0,
        idle_park_max_ms: 1,
        parked_max: rush_runtime::shard::PARKED_MAX_DEFAULT,
    };
    Mesh::build(&config).expect("a valid configuration").shards.pop().expect("one shard")
}

fn scratch_file(name: &str) -> (std::path::PathBuf, Arc<File>) {
    let path = std::env::temp_dir().join(format!(
        "rush-driver-{name}-{}-{:?}",
        std::process::id(),
        Instant::now()
    ));
    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path);
    (path, Arc::new(file.expect("a scratch file")))
}

/// Runs passes until `count` durable writes completed (at most 10 s).
fn wait_synced<D: Driver>(driver: &mut D, core: &mut ShardCore, count: usize) -> Vec<Synced> {
    let started = Instant::now();
    let mut done = Vec::new();
    while done.len() < count {
        assert!(started.elapsed() < Duration::from_secs(10), "durable writes never completed");
        driver.submit().unwrap();
        driver.receive(core, 0).unwrap();
        while let Some(synced) = driver.take_synced() {
            done.push(synced);
        }
        if done.len() < count && !driver.has_mail() {
            driver.park(Duration::from_millis(1)).unwrap();
        }
    }
    done
}

fn durable_writes_round_trip<D: Driver>(driver: &mut D, core: &mut ShardCore, name: &str) {
    let (path, file) = scratch_file(name);
    // Two in flight at once, at different offsets, then a third after them.
    for (token, offset, byte) in [(1_u64, 0_u64, b'a'), (2, 4096, b'b')] {
        let write = SyncWrite { file: Arc::clone(&file), offset, bytes: vec![byte; 4096], token };
        driver.write_and_sync(write).expect("room for two writes in flight");
    }
    let mut done = wait_synced(driver, core, 2);
    done.sort_by_key(|synced| synced.token);
    for (synced, byte) in done.iter().zip([b'a', b'b']) {
        assert!(synced.result.is_ok(), "write {} failed: {:?}", synced.token, synced.result);
        assert_eq!(synced.bytes, vec![byte; 4096], "the buffer comes back intact");
    }
    let write =
        SyncWrite { file: Arc::clone(&file), offset: 8192, bytes: b"tail".to_vec(), token: 3 };
    driver.write_and_sync(write).unwrap();
    let done = wait_synced(driver, core, 1);
    assert_eq!(done[0].token, 3);
    assert!(done[0].result.is_ok());
    let contents = std::fs::read(&path).unwrap();
    assert_eq!(contents.len(), 8196);
    assert!(contents[..4096].iter().all(|byte| *byte == b'a'));
    assert!(contents[4096..8192].iter().all(|byte| *byte == b'b'));
    assert_eq!(&contents[8192..], b"tail");

    // A write the kernel refuses (the file is open read-only) completes as an error.
    let read_only = Arc::new(File::open(&path).unwrap());
    let write = SyncWrite { file: read_only, offset: 0, bytes: vec![0; 16], token: 4 };
    driver.write_and_sync(write).unwrap();
    let done = wait_synced(driver, core, 1);
    assert_eq!(done[0].token, 4);
    assert!(done[0].result.is_err(), "a refused write must not complete as durable");
    assert_eq!(std::fs::read(&path).unwrap()[..4096], [b'a'; 4096], "nothing was written");

    // The in-flight bound: one more than the bound is given back.
    for token in 0..SYNC_WRITES_IN_FLIGHT_MAX as u64 {
        let write = SyncWrite { file: Arc::clone(&file), offset: 0, bytes: vec![b'a'; 8], token };
        driver.write_and_sync(write).expect("within the bound");
    }
    let extra = SyncWrite { file: Arc::clone(&file), offset: 0, bytes: vec![b'a'; 8], token: 99 };
    let refused = driver.write_and_sync(extra).expect_err("beyond the bound");
    assert_eq!(refused.token, 99, "the write is given back");
    wait_synced(driver, core, SYNC_WRITES_IN_FLIGHT_MAX);
    std::fs::remove_file(&path).unwrap();
}

fn connections<H>() -> Connections<H> {
    Connections::new(ConnLimits::default(), Topology::default(), None)
}

#[test]
fn io_uring_driver_writes_durably() {
    let mut core = core();
    let mut driver = UringDriver::new(Vec::new(), connections()).expect("io_uring is available");
    durable_writes_round_trip(&mut driver, &mut core, "uring");
}

#[test]
fn epoll_driver_writes_durably() {
    let mut core = core();
    let mut driver = EpollDriver::new(Vec::new(), connections(), &core).unwrap();
    durable_writes_round_trip(&mut driver, &mut core, "epoll");
}
