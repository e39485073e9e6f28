//! The board: levels each shard publishes in single-writer atomics, so that any core can
//! answer QUERY_SKU without asking the shards that hold the units.
//!
//! Layout: one row per shard, one [`Cell`] per SKU in the row. Shard `s` is the only writer
//! of row `s` (at the end of each loop pass, only the SKUs that changed); every core may read
//! every row. The column of a SKU is assigned once, the first time any shard publishes it,
//! through the catalog: a read-mostly `SkuId → column` map behind an [`ArcSwap`], replaced
//! copy-on-write (cold path: once per SKU definition), read lock-free.
//!
//! Memory ordering: every cell field is an independent number and nothing else is published
//! through it, so stores and loads are `Relaxed`. A reader therefore sees each field at some
//! recent value, not a snapshot across fields or shards: the sum over shards can miss units
//! that are in a message between two shards at that instant. QUERY_SKU documents this; the
//! exact figures come from a quiescent runtime (tests, benchmark checks). The column lookup
//! itself is ordered by the `ArcSwap` (a load that sees the new catalog sees the column).
//!
//! Each shard also publishes its engine counters (results by code, expiries, matches, ...)
//! in a row of its own, for metrics read from any thread ([`Board::counters`]).
//!
//! **Architecture Invariant:** a shard writes only its own row; no shard reads another
//! shard's engine.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::{Counters, Engine, Reply, ReplyBody, ResultCode, SkuId, SkuLevels};

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

/// Published levels of every shard; see the module documentation.
#[derive(Debug)]
pub struct Board {
    shard_count: u32,
    column_max: u32,
    catalog: ArcSwap<HashMap<SkuId, u32>>,
    columns_used: AtomicU32,
    /// `shard_count * column_max` cells, row-major by shard.
    cells: Box<[Cell]>,
    /// One row per shard.
    counters: Box<[CounterRow]>,
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
            catalog: ArcSwap::from_pointee(HashMap::new()),
            columns_used: AtomicU32::new(0),
            cells,
            counters: (0..shard_count).map(|_| CounterRow::default()).collect(),
        }
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
        self.catalog.load().get(&sku).copied()
    }

    /// The column of `sku`, assigned on first use. `None` when every column is taken (every
    /// engine has room for `column_max` SKUs and they all agree on the set, so this happens
    /// only if the shards' SKU tables disagree — then the SKU is just not published).
    fn column_or_assign(&self, sku: SkuId) -> Option<u32> {
        if let Some(column) = self.column(sku) {
            return Some(column);
        }
        let mut assigned = None;
        self.catalog.rcu(|catalog| {
            let mut catalog = HashMap::clone(catalog);
            if let Some(column) = catalog.get(&sku) {
                assigned = Some(*column);
                return catalog;
            }
            let column = self.columns_used.fetch_add(1, Ordering::Relaxed);
            if column >= self.column_max {
                self.columns_used.fetch_sub(1, Ordering::Relaxed);
                assigned = None;
                return catalog;
            }
            catalog.insert(sku, column);
            assigned = Some(column);
            catalog
        });
        // A losing rcu attempt may have taken a column that its retry did not use; it stays
        // unused (bounded by the number of concurrent definitions of one SKU).
        assigned
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
