//! The board: levels each shard publishes in single-writer atomics, so that any core can
//! answer QUERY_SKU without asking the shards that hold the units.
//!
//! Layout: one row per shard, one [`Cell`] per SKU in the row. Shard `s` is the only writer
//! of row `s` (at the end of each loop pass, only the SKUs that changed); every core may read
//! every row. The column of a SKU is assigned once, the first time any shard publishes it,
//! through the [`Catalog`]: an insert-only lock-free `SkuId → column` table.
//!
//! (It was a `HashMap` behind `arc-swap`, replaced copy-on-write on each new SKU. Measured
//! with 100,000 SKUs: defining them took 4–6 s per runtime, quadratic in the SKU count, and
//! concurrent definitions on two shards leaked columns through `rcu` retries. The table
//! below is O(1) per SKU and assigns each column exactly once.)
//!
//! Memory ordering: every cell field is an independent number and nothing else is published
//! through it, so stores and loads are `Relaxed`. A reader therefore sees each field at some
//! recent value, not a snapshot across fields or shards: the sum over shards can miss units
//! that are in a message between two shards at that instant. QUERY_SKU documents this; the
//! exact figures come from a quiescent runtime (tests, benchmark checks). The column lookup
//! itself is ordered by the catalog's Release publication of each column, read with Acquire
//! (model-checked with loom: `loom_tests` below).
//!
//! Each shard also publishes its engine counters (results by code, expiries, matches, ...)
//! in a row of its own, for metrics read from any thread ([`Board::counters`]), and its
//! operational figures (requests, latency, connections, journal; `crate::metrics`) in
//! another ([`Board::metrics_of`]), under the same single-writer rule.
//!
//! **Architecture Invariant:** a shard writes only its own row; no shard reads another
//! shard's engine.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::metrics::{MetricsSnapshot, PublishedMetrics};
use crate::sync;

use rush_engine::{Counters, Engine, Reply, ReplyBody, ResultCode, SkuId, SkuLevels};

/// `SkuId → column`, insert-only, lock-free, bounded: open addressing with linear probing
/// over `2 × column_max` slots (rounded up to a power of two), so a probe sequence always
/// ends at an empty slot.
///
/// A slot goes `key 0 → key sku (claimed by one CAS) → column + 1 published (Release)`. A
/// reader that finds the key but no column yet treats the SKU as not published; a second
/// writer of the same SKU waits for the column (the claimer is between two stores).
#[derive(Debug)]
struct Catalog {
    keys: Box<[sync::AtomicU64]>,
    /// `column + 1`; [`PENDING`] while the claimer has not published it; [`NO_COLUMN`] when
    /// every column was taken.
    columns: Box<[sync::AtomicU32]>,
    mask: usize,
}

impl Catalog {
    fn new(column_max: u32) -> Catalog {
        let slots = (column_max as usize * 2).next_power_of_two();
        Catalog {
            keys: (0..slots).map(|_| sync::AtomicU64::new(0)).collect(),
            columns: (0..slots).map(|_| sync::AtomicU32::new(0)).collect(),
            mask: slots - 1,
        }
    }

    fn start(sku: SkuId) -> usize {
        // Fibonacci hashing: SKU ids are often sequential.
        (sku.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20) as usize
    }

    fn find(&self, sku: SkuId) -> Option<u32> {
        debug_assert_ne!(sku, 0);
        let mut index = Catalog::start(sku) & self.mask;
        for _ in 0..=self.mask {
            match self.keys[index].load(Ordering::Acquire) {
                0 => return None,
                key if key == sku => {
                    return match self.columns[index].load(Ordering::Acquire) {
                        PENDING | NO_COLUMN => None,
                        published => Some(published - 1),
                    };
                }
                _ => index = (index + 1) & self.mask,
            }
        }
        None
    }

    fn find_or_insert(&self, sku: SkuId, assign: impl FnOnce() -> Option<u32>) -> Option<u32> {
        debug_assert_ne!(sku, 0);
        let mut index = Catalog::start(sku) & self.mask;
        for _ in 0..=self.mask {
            let key = match self.keys[index].compare_exchange(
                0,
                sku,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // Claimed: this thread alone assigns the column (or marks it as none).
                    let column = assign();
                    let published = column.map_or(NO_COLUMN, |column| column + 1);
                    self.columns[index].store(published, Ordering::Release);
                    return column;
                }
                Err(key) => key,
            };
            if key == sku {
                // Another shard claimed it a moment ago: wait for its column.
                loop {
                    match self.columns[index].load(Ordering::Acquire) {
                        PENDING => sync::yield_now(),
                        NO_COLUMN => return None,
                        published => return Some(published - 1),
                    }
                }
            }
            index = (index + 1) & self.mask;
        }
        None
    }
}

const PENDING: u32 = 0;
const NO_COLUMN: u32 = u32::MAX;

/// One SKU's levels on one shard.
#[derive(Debug, Default)]
struct Cell {
    bucket: AtomicU64,
    reserved: AtomicU64,
    sold: AtomicU64,
    /// Written by the SKU's coordinator only; 0 in other rows.
    pool: AtomicU64,
    global_total: AtomicU64,
    waiters: AtomicU64,
}

/// One shard's engine counters (`Counters`), published at the end of every pass.
#[derive(Debug, Default)]
#[repr(align(128))] // each row on its own cache lines: one writer per row
struct CounterRow {
    results: [AtomicU64; ResultCode::ALL.len()],
    holds_expired: AtomicU64,
    waiters_matched: AtomicU64,
    waiters_timed_out: AtomicU64,
    acquires_sent: AtomicU64,
    reclaim_rounds: AtomicU64,
    keys_evicted: AtomicU64,
    reservations_retired: AtomicU64,
}

/// One shard's journal progress: every entry up to `durable` is on its disk, up to
/// `stable` also every cause of them on the other shards (see `journal::stability`).
#[derive(Debug, Default)]
#[repr(align(128))] // each row on its own cache lines: one writer per row
struct JournalRow {
    durable: AtomicU64,
    stable: AtomicU64,
    /// Per sender: how many of its messages this shard has received in stable entries
    /// (the sender may then forget them: see `ShardCore`'s outbox and snapshots).
    received_stable: Box<[AtomicU64]>,
}

/// Published levels of every shard; see the module documentation.
#[derive(Debug)]
pub struct Board {
    shard_count: u32,
    column_max: u32,
    catalog: Catalog,
    columns_used: AtomicU32,
    /// `shard_count * column_max` cells, row-major by shard.
    cells: Box<[Cell]>,
    /// One row per shard.
    counters: Box<[CounterRow]>,
    /// One row per shard.
    journal: Box<[JournalRow]>,
    /// One row per shard.
    metrics: Box<[PublishedMetrics]>,
}

impl Board {
    /// A board for `shard_count` shards of at most `column_max` SKUs each.
    pub fn new(shard_count: u32, column_max: u32) -> Board {
        assert!(shard_count >= 1 && column_max >= 1);
        let cells =
            (0..u64::from(shard_count) * u64::from(column_max)).map(|_| Cell::default()).collect();
        Board {
            shard_count,
            column_max,
            catalog: Catalog::new(column_max),
            columns_used: AtomicU32::new(0),
            cells,
            counters: (0..shard_count).map(|_| CounterRow::default()).collect(),
            journal: (0..shard_count)
                .map(|_| JournalRow {
                    received_stable: (0..shard_count).map(|_| AtomicU64::new(0)).collect(),
                    ..JournalRow::default()
                })
                .collect(),
            metrics: (0..shard_count).map(|_| PublishedMetrics::default()).collect(),
        }
    }

    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }

    /// Publishes `shard`'s operational figures. Called only by `shard`'s own thread.
    pub fn publish_metrics(&self, shard: u32, figures: &MetricsSnapshot) {
        self.metrics[shard as usize].store(figures);
    }

    /// `shard`'s operational figures as of its last publication (any thread).
    pub fn metrics_of(&self, shard: u32) -> MetricsSnapshot {
        self.metrics[shard as usize].load()
    }

    /// Every SKU published on the board, in the order their columns were assigned (the
    /// order of first publication), at most `max` of them. For the metrics exporter: a scan
    /// of the catalog, O(its slots); never called by a shard.
    pub fn published_skus(&self, max: usize) -> Vec<SkuId> {
        let mut found: Vec<(u32, SkuId)> = Vec::new();
        for (key, column) in self.catalog.keys.iter().zip(self.catalog.columns.iter()) {
            let sku = key.load(Ordering::Acquire);
            if sku == 0 {
                continue;
            }
            match column.load(Ordering::Acquire) {
                PENDING | NO_COLUMN => {}
                published => found.push((published - 1, sku)),
            }
        }
        found.sort_unstable();
        found.into_iter().take(max).map(|(_, sku)| sku).collect()
    }

    /// Copies `shard`'s engine counters into its row. Called only by `shard`'s own thread.
    fn publish_counters(&self, shard: u32, counters: &Counters) {
        let row = &self.counters[shard as usize];
        for (cell, value) in row.results.iter().zip(counters.results) {
            cell.store(value, Ordering::Relaxed);
        }
        row.holds_expired.store(counters.holds_expired, Ordering::Relaxed);
        row.waiters_matched.store(counters.waiters_matched, Ordering::Relaxed);
        row.waiters_timed_out.store(counters.waiters_timed_out, Ordering::Relaxed);
        row.acquires_sent.store(counters.acquires_sent, Ordering::Relaxed);
        row.reclaim_rounds.store(counters.reclaim_rounds, Ordering::Relaxed);
        row.keys_evicted.store(counters.keys_evicted, Ordering::Relaxed);
        row.reservations_retired.store(counters.reservations_retired, Ordering::Relaxed);
    }

    /// Publishes `shard`'s journal progress. Called only by `shard`'s own thread. Relaxed:
    /// each number is self-contained (a reader acts on the number alone; the disk writes it
    /// stands for were completed before it was stored).
    pub fn publish_journal(&self, shard: u32, durable: u64, stable: u64) {
        let row = &self.journal[shard as usize];
        row.durable.store(durable, Ordering::Relaxed);
        row.stable.store(stable, Ordering::Relaxed);
    }

    /// Publishes how many of `from`'s messages `shard` holds in stable entries. Called only
    /// by `shard`'s own thread; Relaxed like `publish_journal`.
    pub fn publish_received_stable(&self, shard: u32, from: u32, count: u64) {
        self.journal[shard as usize].received_stable[from as usize].store(count, Ordering::Relaxed);
    }

    /// How many of `from`'s messages `shard` holds in stable entries.
    pub fn received_stable_of(&self, shard: u32, from: u32) -> u64 {
        self.journal[shard as usize].received_stable[from as usize].load(Ordering::Relaxed)
    }

    /// The last entry of `shard` known stable (0: none yet).
    pub fn stable_of(&self, shard: u32) -> u64 {
        self.journal[shard as usize].stable.load(Ordering::Relaxed)
    }

    /// The last entry of `shard` known durable.
    pub fn durable_of(&self, shard: u32) -> u64 {
        self.journal[shard as usize].durable.load(Ordering::Relaxed)
    }

    /// Every shard's counters summed, read from any thread without asking the shards (each
    /// row is as of that shard's last pass).
    pub fn counters(&self) -> Counters {
        let mut total = Counters::default();
        for row in self.counters.iter() {
            for (sum, cell) in total.results.iter_mut().zip(&row.results) {
                *sum += cell.load(Ordering::Relaxed);
            }
            total.holds_expired += row.holds_expired.load(Ordering::Relaxed);
            total.waiters_matched += row.waiters_matched.load(Ordering::Relaxed);
            total.waiters_timed_out += row.waiters_timed_out.load(Ordering::Relaxed);
            total.acquires_sent += row.acquires_sent.load(Ordering::Relaxed);
            total.reclaim_rounds += row.reclaim_rounds.load(Ordering::Relaxed);
            total.keys_evicted += row.keys_evicted.load(Ordering::Relaxed);
            total.reservations_retired += row.reservations_retired.load(Ordering::Relaxed);
        }
        total
    }

    fn column(&self, sku: SkuId) -> Option<u32> {
        self.catalog.find(sku)
    }

    /// The column of `sku`, assigned on first use (`None` when every column is taken: the
    /// shards' SKU tables hold at most `column_max` SKUs each, so this happens only if they
    /// disagree on the set, and then the SKU is just not published).
    fn column_or_assign(&self, sku: SkuId) -> Option<u32> {
        self.catalog.find_or_insert(sku, || {
            let column = self.columns_used.fetch_add(1, Ordering::Relaxed);
            (column < self.column_max).then_some(column)
        })
    }

    fn cell(&self, shard: u32, column: u32) -> &Cell {
        debug_assert!(shard < self.shard_count && column < self.column_max);
        &self.cells[(u64::from(shard) * u64::from(self.column_max) + u64::from(column)) as usize]
    }

    /// Writes the levels of every SKU that changed on `shard` since its last publication.
    /// Called only by `shard`'s own thread.
    pub fn publish(&self, shard: u32, engine: &mut Engine) {
        self.publish_counters(shard, engine.counters());
        engine.drain_changed_skus(|levels: SkuLevels| {
            let Some(column) = self.column_or_assign(levels.sku) else {
                return;
            };
            let cell = self.cell(shard, column);
            cell.bucket.store(levels.bucket, Ordering::Relaxed);
            cell.reserved.store(levels.reserved, Ordering::Relaxed);
            cell.sold.store(levels.sold, Ordering::Relaxed);
            cell.pool.store(levels.pool, Ordering::Relaxed);
            cell.global_total.store(levels.global_total, Ordering::Relaxed);
            cell.waiters.store(u64::from(levels.waiters), Ordering::Relaxed);
        });
    }

    /// The SKU's global levels summed over every shard's row.
    pub fn levels(&self, sku: SkuId) -> Option<SkuLevels> {
        let column = self.column(sku)?;
        let mut total = SkuLevels { sku, ..SkuLevels::default() };
        for shard in 0..self.shard_count {
            let cell = self.cell(shard, column);
            total.bucket += cell.bucket.load(Ordering::Relaxed);
            total.reserved += cell.reserved.load(Ordering::Relaxed);
            total.sold += cell.sold.load(Ordering::Relaxed);
            total.pool += cell.pool.load(Ordering::Relaxed);
            total.global_total += cell.global_total.load(Ordering::Relaxed);
            total.waiters += cell.waiters.load(Ordering::Relaxed) as u32;
        }
        Some(total)
    }

    /// QUERY_SKU on any shard: the terms from the local engine's copy of the SKU (every
    /// shard has them), the levels from the board. (With one shard the runtime asks the
    /// engine itself, which is exact.)
    pub fn query_sku(&self, engine: &Engine, sku: SkuId) -> Reply {
        if sku == 0 {
            return Reply::code(ResultCode::BadRequest);
        }
        let Some(mut view) = engine.sku(sku) else {
            return Reply::code(ResultCode::UnknownSku);
        };
        if let Some(levels) = self.levels(sku) {
            view.total = levels.global_total;
            view.available = levels.pool + levels.bucket;
            view.reserved = levels.reserved;
            view.sold = levels.sold;
            view.waiters = levels.waiters;
        }
        Reply::with_body(ResultCode::Ok, ReplyBody::Sku(view))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Regression: concurrent first publications of the same SKUs from several threads
    /// assign each SKU exactly one column, and no column is lost (the copy-on-write catalog
    /// leaked a column per lost `rcu` race).
    #[test]
    fn concurrent_definitions_assign_each_sku_one_column_and_leak_none() {
        const SKUS: u64 = 20_000;
        let board = std::sync::Arc::new(Board::new(4, SKUS as u32));
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let board = std::sync::Arc::clone(&board);
                std::thread::spawn(move || {
                    let order: Vec<u64> = if thread % 2 == 0 {
                        (1..=SKUS).collect()
                    } else {
                        (1..=SKUS).rev().collect()
                    };
                    order
                        .into_iter()
                        .map(|sku| (sku, board.column_or_assign(sku)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<Vec<(u64, Option<u32>)>> =
            threads.into_iter().map(|thread| thread.join().unwrap()).collect();
        let maps: Vec<std::collections::HashMap<u64, Option<u32>>> =
            results.iter().map(|pairs| pairs.iter().copied().collect()).collect();
        let mut seen = vec![false; SKUS as usize];
        for (sku, column) in &maps[0] {
            let column = column.expect("room for every SKU");
            assert!(!std::mem::replace(&mut seen[column as usize], true), "column used twice");
            for other in &maps[1..] {
                assert_eq!(other[sku], Some(column), "sku {sku}: one column for every thread");
            }
        }
        assert_eq!(board.columns_used.load(Ordering::Relaxed), SKUS as u32, "no column leaked");
        // A full board refuses a new SKU, and says so consistently.
        assert_eq!(board.column_or_assign(SKUS + 1), None);
        assert_eq!(board.column(SKUS + 1), None);
    }
}

/// Loom model check of the catalog: two shards publishing the same new SKU race to claim its
/// slot while a reader looks it up. Exactly one column is assigned, both writers get it, the
/// reader sees either nothing or that column, and no column leaks.
///
/// `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release -p rush-runtime --lib loom_tests`
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    #[test]
    fn racing_first_publications_assign_one_column() {
        loom::model(|| {
            let catalog = Arc::new(Catalog::new(2));
            let assigned = Arc::new(loom::sync::atomic::AtomicU32::new(0));
            let writers: Vec<_> = (0..2)
                .map(|_| {
                    let catalog = Arc::clone(&catalog);
                    let assigned = Arc::clone(&assigned);
                    thread::spawn(move || {
                        catalog.find_or_insert(7, || Some(assigned.fetch_add(1, Ordering::Relaxed)))
                    })
                })
                .collect();
            let seen = catalog.find(7);
            let columns: Vec<Option<u32>> =
                writers.into_iter().map(|writer| writer.join().unwrap()).collect();
            assert_eq!(assigned.load(Ordering::Relaxed), 1, "exactly one column assigned");
            assert_eq!(columns, vec![Some(0), Some(0)], "both writers see the one column");
            assert!(seen.is_none() || seen == Some(0), "a reader sees nothing or the column");
            assert_eq!(catalog.find(7), Some(0));
            assert_eq!(catalog.find(8), None);
        });
    }
}
