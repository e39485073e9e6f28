//! Recovery time and snapshot cost, one shard, real files.
//!
//! Run: `cargo bench --bench journal_recovery` (about a minute and a half; `-- --quick` for a
//! smoke run of a few seconds). Options after `--`: `--records N` (journal records of the
//! first part, default 10,000,000), `--live N` (live reservations of the second part,
//! default 1,000,000), `--dir DIR` (where the data directories go, default the system's
//! temporary directory).
//!
//! 1. **Journal replay**: a shard (the real `ShardCore`, journaling in `interval:1000` mode
//!    through inline writes) is fed `--records` requests: RESERVEs with 2 s holds, a third of
//!    them cancelled and a third confirmed by key, deposits; the clock advances 1 ms per 100
//!    requests so holds expire and keys age out. No snapshot. Then the directory is
//!    recovered from scratch (`replay_directory`: read, scan with every checksum, replay) and
//!    timed: seconds per million records.
//! 2. **Snapshot with live reservations**: a shard is filled with `--live` held
//!    reservations (1 h holds), and a snapshot is due at that point: the capture pause
//!    (seal + serializing the engine: what the shard loop stops for), the file's size, the
//!    time to restore the engine from it, and a whole recovery (snapshot + journal after it).
//!    Also the capture pause of an empty shard with `rush serve`'s default capacities (it
//!    scales with table capacities, not only with what they hold).

use std::path::{Path, PathBuf};
use std::time::Instant;

use rush_engine::{Config, Request, Reserve, SkuSpec, Target};
use rush_runtime::journal::{
    replay_directory, start_durable_with, Durability, JournalOptions, SnapshotEvery,
};
use rush_runtime::shard::{IDLE_PARK_MAX_MS_DEFAULT, PARKED_MAX_DEFAULT};
use rush_runtime::{InlineWrites, Mesh, RuntimeConfig, ShardCore};

const T0: u64 = 1_700_000_000_000;

fn option(name: &str, default: u64) -> u64 {
    let arguments: Vec<String> = std::env::args().collect();
    arguments
        .iter()
        .position(|argument| argument == name)
        .and_then(|index| arguments.get(index + 1))
        .map(|value| value.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
        .unwrap_or(default)
}

fn directory(name: &str) -> PathBuf {
    let arguments: Vec<String> = std::env::args().collect();
    let root = arguments
        .iter()
        .position(|argument| argument == "--dir")
        .and_then(|index| arguments.get(index + 1))
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = root.join(format!("rush-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    path
}

fn runtime(engine: Config) -> RuntimeConfig {
    RuntimeConfig {
        shard_count: 1,
        engine,
        port_count: 0,
        ring_capacity: 4096,
        pin: false,
        idle_spin_us: 0,
        idle_park_max_ms: IDLE_PARK_MAX_MS_DEFAULT,
        parked_max: PARKED_MAX_DEFAULT,
    }
}

/// A durable one-shard core on `path`.
fn durable_core(
    engine: Config,
    path: &Path,
    snapshot_every: SnapshotEvery,
) -> (ShardCore, rush_runtime::journal::DataDir) {
    let mut cores = Mesh::build(&runtime(engine)).expect("valid").shards;
    let options = JournalOptions { snapshot_every, ..JournalOptions::default() };
    let (data_dir, _) =
        start_durable_with(&mut cores, path, Durability::Interval { ms: 1_000 }, T0, options)
            .expect("start");
    (cores.pop().expect("one"), data_dir)
}

/// One pass of the shard: what a loop pass does with no network.
fn pass(core: &mut ShardCore, storage: &mut InlineWrites, now_ms: u64) {
    core.poll_peers(now_ms);
    core.finish_pass(now_ms);
    core.journal_pass(storage, now_ms);
    core.drain_local().for_each(drop);
}

fn bytes_in(path: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).expect("read dir").flatten() {
        let metadata = entry.metadata().expect("metadata");
        total += if metadata.is_dir() { bytes_in(&entry.path()) } else { metadata.len() };
    }
    total
}

fn journal_replay(records: u64) {
    let engine = Config {
        sku_max: 16,
        account_max: 100_000,
        reservation_max: 1 << 20,
        waitlist_max: 1_000,
        request_key_max: 2_000_000,
        request_key_retention_ms: 8_000,
        limit_entry_max: 16,
        quantity_max: 10,
        hold_ms_default: 2_000,
        hold_ms_max: 4_000,
        wait_ms_max: 1_000,
    };
    let path = directory("replay");
    let (mut core, data_dir) = durable_core(engine, &path, SnapshotEvery::Never);
    let mut storage = InlineWrites::default();
    let mut now_ms = T0;
    let spec = SkuSpec {
        sku: 1,
        stock_total: u64::MAX / 4,
        price: 1,
        per_user_limit: 0,
        hold_ms: 0,
        start_ms: 0,
        end_ms: 0,
    };
    core.submit(now_ms, 0, 0, &Request::PutSku(spec));
    let started = Instant::now();
    let mut sent = 1_u64;
    let mut key = 1_u64;
    while sent < records {
        for _ in 0..100 {
            let account = 1 + key % 100_000;
            let request = match sent % 6 {
                0 => Request::Deposit { account, amount: 10, key },
                1 | 2 | 4 => Request::Reserve(Reserve {
                    account,
                    sku: 1,
                    quantity: 1,
                    key,
                    flags: 0,
                    hold_ms: 2_000,
                    wait_ms: 0,
                }),
                3 => Request::Cancel { account, target: Target::ReserveKey(key - 2), key },
                _ => Request::Confirm { account, target: Target::ReserveKey(key - 1), key },
            };
            core.submit(now_ms, 0, sent, &request);
            sent += 1;
            key += 1;
        }
        pass(&mut core, &mut storage, now_ms);
        now_ms += 1;
    }
    core.request_journal_flush();
    for _ in 0..4 {
        pass(&mut core, &mut storage, now_ms);
    }
    let fed = started.elapsed();
    let (counters, _, _) = core.journal_status().expect("durable");
    let live_hash = core.engine().state_hash();
    drop(core);
    drop(data_dir);
    let bytes = bytes_in(&path);
    let started = Instant::now();
    let recovered = replay_directory(&path, engine, 1).expect("replay");
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(recovered.shards[0].engine.state_hash(), live_hash, "replay reaches the live state");
    let inputs = recovered.shards[0].inputs_replayed;
    println!("## Journal replay (one shard, no snapshot)");
    println!();
    println!(
        "{} requests fed in {:.1} s; {} journal records ({} entries, {:.1} MB on disk, {} writes)",
        sent,
        fed.as_secs_f64(),
        inputs,
        counters.entries,
        bytes as f64 / 1e6,
        counters.writes
    );
    println!();
    println!("| records | recovery | per million records | records/s |");
    println!("|---:|---:|---:|---:|");
    println!(
        "| {inputs} | {elapsed:.2} s | {:.3} s | {:.2} M |",
        elapsed / (inputs as f64 / 1e6),
        inputs as f64 / elapsed / 1e6
    );
    println!();
    std::fs::remove_dir_all(&path).expect("clean up");
}

fn snapshot_with_live(live: u64) {
    let reservations = (live + live / 8).next_power_of_two().min(1 << 26) as u32;
    let engine = Config {
        sku_max: 16,
        account_max: (live as u32).max(1_024),
        reservation_max: reservations,
        waitlist_max: 1_000,
        request_key_max: reservations,
        request_key_retention_ms: 7_200_000,
        limit_entry_max: 16,
        quantity_max: 10,
        hold_ms_default: 3_600_000,
        hold_ms_max: 3_600_000,
        wait_ms_max: 60_000,
    };
    let path = directory("snapshot");
    // The snapshot falls due once the reservations are in (PUT_SKU, the RESERVEs, ticks).
    let (mut core, data_dir) = durable_core(engine, &path, SnapshotEvery::Inputs(live + 10));
    let mut storage = InlineWrites::default();
    let mut now_ms = T0;
    let spec = SkuSpec {
        sku: 1,
        stock_total: live * 2,
        price: 1,
        per_user_limit: 0,
        hold_ms: 0,
        start_ms: 0,
        end_ms: 0,
    };
    core.submit(now_ms, 0, 0, &Request::PutSku(spec));
    let mut account = 1;
    while account <= live {
        for _ in 0..1_000 {
            if account > live {
                break;
            }
            let reserve =
                Reserve { account, sku: 1, quantity: 1, key: 1, flags: 0, hold_ms: 0, wait_ms: 0 };
            core.submit(now_ms, 0, account, &Request::Reserve(reserve));
            account += 1;
        }
        pass(&mut core, &mut storage, now_ms);
        now_ms += 1;
    }
    // A few more records until the snapshot is due, and passes until it is installed.
    while core.snapshot_counters().expect("durable").installed == 0 {
        core.submit(now_ms, 0, 0, &Request::Deposit { account: 1, amount: 1, key: now_ms });
        core.request_journal_flush();
        pass(&mut core, &mut storage, now_ms);
        now_ms += 1;
    }
    assert_eq!(u64::from(core.engine().live_reservations()), live);
    let snapshots = core.snapshot_counters().expect("durable");
    let live_hash = core.engine().state_hash();
    // Restoring the engine alone, from the file.
    let file = std::fs::read_dir(path.join("shard-000"))
        .expect("shard dir")
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|extension| extension == "rsn"))
        .expect("an installed snapshot");
    let bytes = std::fs::read(&file).expect("read the snapshot");
    let decoded = rush_runtime::journal::snapshot::decode_snapshot_file("bench", &bytes, 0, 1)
        .expect("a valid file");
    let started = Instant::now();
    let restored = rush_engine::Engine::restore_snapshot(
        engine,
        rush_engine::quota::Placement::SINGLE,
        decoded.engine,
    )
    .expect("restore");
    let restore_s = started.elapsed().as_secs_f64();
    assert_eq!(u64::from(restored.live_reservations()), live);
    drop(restored);
    drop(core);
    drop(data_dir);
    let started = Instant::now();
    let recovered = replay_directory(&path, engine, 1).expect("recover");
    let recovery_s = started.elapsed().as_secs_f64();
    assert_eq!(
        recovered.shards[0].engine.state_hash(),
        live_hash,
        "recovery reaches the live state"
    );
    println!("## Snapshot with {live} live reservations (one shard)");
    println!();
    println!("| capture pause (seal + serialize) | snapshot file | restore the engine | whole recovery (snapshot + journal after it) |");
    println!("|---:|---:|---:|---:|");
    println!(
        "| {:.1} ms | {:.1} MB ({:.0} B per live reservation) | {:.2} s | {:.2} s |",
        snapshots.pause_ns_max as f64 / 1e6,
        snapshots.bytes_last as f64 / 1e6,
        snapshots.bytes_last as f64 / live as f64,
        restore_s,
        recovery_s
    );
    println!();
    std::fs::remove_dir_all(&path).expect("clean up");
}

fn empty_default_capacities() {
    let engine = Config::default();
    let mut cores = Mesh::build(&runtime(engine)).expect("valid").shards;
    let core = cores.pop().expect("one");
    let mut writer = rush_engine::snapshot::SnapshotWriter::default();
    let started = Instant::now();
    core.engine().encode_snapshot(&mut writer);
    let pause = started.elapsed().as_secs_f64();
    println!("## Snapshot of an empty shard at the default capacities");
    println!();
    println!(
        "serialize: {:.1} ms, {:.2} MB (the tables are scanned whole: the cost follows their capacity)",
        pause * 1e3,
        writer.bytes.len() as f64 / 1e6
    );
    println!();
}

fn main() {
    let quick = std::env::args().any(|argument| argument == "--quick");
    let records = option("--records", if quick { 200_000 } else { 10_000_000 });
    let live = option("--live", if quick { 20_000 } else { 1_000_000 });
    journal_replay(records);
    snapshot_with_live(live);
    empty_default_capacities();
}
