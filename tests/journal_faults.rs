//! A journal that cannot write (disk full, I/O error), with faults injected in the storage
//! layer under a real shard core writing real files.
//!
//! In sync mode no operation is acknowledged that is not durable: a state change whose write
//! failed is answered UNAVAILABLE (outcome unknown), new state changes are refused
//! UNAVAILABLE before they change anything, and reads keep working. A failed *write* (the
//! data did not land) is retried every second, and once a retry succeeds the shard takes
//! writes again (the operation answered UNAVAILABLE turns out durable: its retry answers
//! DUPLICATE). A failed *fdatasync* stops the journal until a restart.

use std::collections::VecDeque;
use std::path::PathBuf;

use rush_engine::{Reply, ReplyBody, Request, ResultCode};
use rush_runtime::journal::{start_durable, writer::WRITE_RETRY_MS, DataDir, Durability};
use rush_runtime::shard::{IDLE_PARK_MAX_MS_DEFAULT, PARKED_MAX_DEFAULT};
use rush_runtime::{
    write_and_sync, DurableWrites, Mesh, RuntimeConfig, ShardCore, SyncFailure, SyncWrite, Synced,
};

const T0: u64 = 1_700_000_000_000;

/// Writes for real, unless a fault is armed for the next one.
#[derive(Default)]
struct FaultyDisk {
    done: VecDeque<Synced>,
    fail_next: Option<fn() -> SyncFailure>,
}

impl DurableWrites for FaultyDisk {
    fn write_and_sync(&mut self, write: SyncWrite) -> Result<(), SyncWrite> {
        let result = match self.fail_next.take() {
            Some(fault) => Err(fault()),
            None => write_and_sync(&write),
        };
        self.done.push_back(Synced { token: write.token, bytes: write.bytes, result });
        Ok(())
    }

    fn take_synced(&mut self) -> Option<Synced> {
        self.done.pop_front()
    }
}

fn disk_full() -> SyncFailure {
    SyncFailure::Write(std::io::Error::from(std::io::ErrorKind::StorageFull))
}

fn sync_failed() -> SyncFailure {
    SyncFailure::Sync(std::io::Error::from_raw_os_error(5)) // EIO
}

struct Shard {
    core: ShardCore,
    disk: FaultyDisk,
    _data_dir: DataDir,
    path: PathBuf,
    now_ms: u64,
    tag: u64,
}

impl Shard {
    fn new(name: &str) -> Shard {
        let path =
            std::env::temp_dir().join(format!("rush-journal-faults-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        let config = RuntimeConfig {
            shard_count: 1,
            engine: rush_engine::Config::small(),
            port_count: 0,
            ring_capacity: 64,
            pin: false,
            idle_spin_us: 0,
            idle_park_max_ms: IDLE_PARK_MAX_MS_DEFAULT,
            parked_max: PARKED_MAX_DEFAULT,
        };
        let mut cores = Mesh::build(&config).expect("valid").shards;
        let (data_dir, _) = start_durable(&mut cores, &path, Durability::Sync, T0).expect("start");
        let mut shard = Shard {
            core: cores.pop().expect("one"),
            disk: FaultyDisk::default(),
            _data_dir: data_dir,
            path,
            now_ms: T0,
            tag: 0,
        };
        shard.pass();
        shard
    }

    /// One pass; returns the answers it released.
    fn pass(&mut self) -> Vec<(u64, Reply)> {
        self.core.poll_peers(self.now_ms);
        self.core.finish_pass(self.now_ms);
        self.core.journal_pass(&mut self.disk, self.now_ms);
        // The completion of the write this pass submitted is taken by the next pass.
        self.core.journal_pass(&mut self.disk, self.now_ms);
        self.core.drain_local().map(|completion| (completion.tag, completion.reply)).collect()
    }

    /// Sends `request` and runs passes until it is answered.
    fn call(&mut self, request: Request) -> Reply {
        self.tag += 1;
        let tag = self.tag;
        self.core.submit(self.now_ms, 0, tag, &request);
        for _ in 0..10 {
            if let Some((_, reply)) = self.pass().into_iter().find(|(answered, _)| *answered == tag)
            {
                return reply;
            }
        }
        panic!("{request:?} was never answered");
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[test]
fn a_failed_write_answers_unavailable_until_a_retry_succeeds() {
    let mut shard = Shard::new("write");
    let deposit = |key| Request::Deposit { account: 7, amount: 10, key };
    assert_eq!(shard.call(deposit(1)).result, ResultCode::Ok);
    // The next write fails: the deposit applied in memory cannot be acknowledged.
    shard.disk.fail_next = Some(disk_full);
    assert_eq!(shard.call(deposit(2)).result, ResultCode::Unavailable, "outcome unknown");
    // New state changes are refused before they change anything; reads work.
    assert_eq!(shard.call(deposit(3)).result, ResultCode::Unavailable);
    let read = shard.call(Request::QueryAccount { account: 7 });
    assert_eq!(read.result, ResultCode::Ok, "reads keep working");
    let ReplyBody::Account(wallet) = read.body else { panic!("{read:?}") };
    assert_eq!(wallet.deposited, 20, "deposit 2 was applied (not yet durable), deposit 3 was not");
    // A second later the same bytes are written again, and succeed.
    shard.now_ms += WRITE_RETRY_MS;
    shard.pass();
    shard.pass();
    let retry = shard.call(deposit(2));
    assert_eq!(
        (retry.result, retry.original),
        (ResultCode::Duplicate, ResultCode::Ok),
        "durable after all"
    );
    assert_eq!(shard.call(deposit(3)).result, ResultCode::Ok, "writes are taken again");
}

#[test]
fn a_failed_fdatasync_stops_state_changes_until_a_restart() {
    let mut shard = Shard::new("sync");
    shard.disk.fail_next = Some(sync_failed);
    assert_eq!(
        shard.call(Request::Deposit { account: 7, amount: 10, key: 1 }).result,
        ResultCode::Unavailable
    );
    shard.now_ms += 10 * WRITE_RETRY_MS;
    shard.pass();
    assert_eq!(
        shard.call(Request::Deposit { account: 7, amount: 10, key: 2 }).result,
        ResultCode::Unavailable,
        "no retry after a failed fdatasync: what the kernel cached may be gone"
    );
    assert_eq!(shard.call(Request::QueryAccount { account: 7 }).result, ResultCode::Ok);
    let (_, fault, _) = shard.core.journal_status().expect("durable");
    assert!(matches!(fault, Some(rush_runtime::journal::JournalFault::Sync(_))), "{fault:?}");
}
