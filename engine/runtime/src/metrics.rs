//! Operational metrics of one shard: plain integers the shard's own thread counts in its
//! loop, published as a copy through the board (see [`PublishedMetrics`]) for the metrics
//! exporter to read (`rush serve --metrics-listen`, docs/OPERATIONS.md).
//!
//! What a shard counts here, beside the engine's own [`rush_engine::Counters`] (already on
//! the board): requests answered by operation and result code, the server-side latency of
//! each operation (frame received → response queued to send) as a histogram with fixed
//! log-spaced buckets, its connections and bytes, the journal's fsyncs (latency, records,
//! bytes), and at each publication the levels of its rings, backlogs and parked table.
//!
//! **Invariant (single writer):** a shard's [`ShardMetrics`] is touched only by that shard's
//! thread, as plain integers (no atomic, no shared cache line on the hot path); its
//! [`PublishedMetrics`] row on the board is written only by that thread too, at most once a
//! millisecond while it works and once before it sleeps (so an idle shard's row is always
//! current). Readers only load. Every published word is one self-contained number, stored
//! and loaded `Relaxed`; counters only grow, so a reader that sums rows sees each counter
//! monotonic across its reads (coherence of each atomic). Words are not a snapshot across
//! fields: a histogram's `_count` is therefore computed by the reader as the sum of its
//! buckets, so count and buckets always agree; `_sum` may lag its buckets by one
//! publication.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rush_engine::ResultCode;

/// Operations a shard counts, by the network layer's index of the operation (rush-net's
/// `Opcode::ALL` order; it asserts at compile time that its opcodes fit).
pub const OPERATION_SLOT_COUNT: usize = 16;

/// Result codes, by wire value (`ResultCode::ALL` is in value order).
pub const RESULT_SLOT_COUNT: usize = ResultCode::ALL.len();

/// Upper bounds (inclusive, in ns) of the latency buckets: 1-2-5 steps from 1 µs to 5 s,
/// log-spaced, fixed so that histograms of every shard and every scrape add up. A value
/// above the last bound falls in the overflow bucket (`le="+Inf"`).
pub const LATENCY_BUCKET_BOUNDS_NS: [u64; 21] = [
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
    2_000_000_000,
    5_000_000_000,
];

/// Buckets of a [`Histogram`]: one per bound, plus the overflow bucket.
pub const LATENCY_BUCKET_COUNT: usize = LATENCY_BUCKET_BOUNDS_NS.len() + 1;

/// A latency histogram: counts per bucket (not cumulative) and the sum of the values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Histogram {
    pub counts: [u64; LATENCY_BUCKET_COUNT],
    pub sum_ns: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram { counts: [0; LATENCY_BUCKET_COUNT], sum_ns: 0 }
    }
}

impl Histogram {
    /// The bucket of a value: the first whose bound is at least the value.
    pub fn bucket_of(value_ns: u64) -> usize {
        LATENCY_BUCKET_BOUNDS_NS.partition_point(|&bound| bound < value_ns)
    }

    pub fn record(&mut self, value_ns: u64) {
        self.counts[Histogram::bucket_of(value_ns)] += 1;
        // Saturating: 2^64 ns is 584 years of summed latency; a wrap would break the
        // counter's monotonicity for the scraper.
        self.sum_ns = self.sum_ns.saturating_add(value_ns);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn add(&mut self, other: &Histogram) {
        for (sum, count) in self.counts.iter_mut().zip(other.counts) {
            *sum += count;
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }

    fn for_each_word_mut(&mut self, mut visit: impl FnMut(&mut u64)) {
        self.counts.iter_mut().for_each(&mut visit);
        visit(&mut self.sum_ns);
    }
}

/// One shard's figures, as counted and as published (the same plain shape on both sides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Requests answered, `[operation][result code]`.
    pub requests: [[u64; RESULT_SLOT_COUNT]; OPERATION_SLOT_COUNT],
    /// Server-side latency per operation.
    pub latency: [Histogram; OPERATION_SLOT_COUNT],
    pub connections_open: u64,
    pub connections_accepted: u64,
    /// Connections closed at accept (every slot taken, or a limit of its source).
    pub connections_refused: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Frames that ended their connection (bad magic, version, opcode or length).
    pub frames_fatal: u64,
    /// Journal: write + fdatasync pairs completed (snapshot files aside), their latency
    /// (submitted → completion taken by the shard), records journaled, bytes written.
    pub journal_fsyncs: u64,
    pub journal_fsync_latency: Histogram,
    pub journal_records: u64,
    pub journal_bytes: u64,
    /// Gauges at the last publication: mesh messages waiting in this shard's inbound rings,
    /// the capacity of those rings, messages waiting in its backlogs for room in a ring,
    /// RESERVEs parked (waiting for an answer), reservations live (held or waiting).
    pub ring_occupancy: u64,
    pub ring_capacity: u64,
    pub backlog: u64,
    pub parked: u64,
    pub reservations_live: u64,
}

impl Default for MetricsSnapshot {
    fn default() -> MetricsSnapshot {
        MetricsSnapshot {
            requests: [[0; RESULT_SLOT_COUNT]; OPERATION_SLOT_COUNT],
            latency: [Histogram::default(); OPERATION_SLOT_COUNT],
            connections_open: 0,
            connections_accepted: 0,
            connections_refused: 0,
            bytes_received: 0,
            bytes_sent: 0,
            frames_fatal: 0,
            journal_fsyncs: 0,
            journal_fsync_latency: Histogram::default(),
            journal_records: 0,
            journal_bytes: 0,
            ring_occupancy: 0,
            ring_capacity: 0,
            backlog: 0,
            parked: 0,
            reservations_live: 0,
        }
    }
}

impl MetricsSnapshot {
    /// Every word, in one fixed order (the layout of [`PublishedMetrics`]).
    fn for_each_word_mut(&mut self, mut visit: impl FnMut(&mut u64)) {
        for row in self.requests.iter_mut() {
            row.iter_mut().for_each(&mut visit);
        }
        for histogram in self.latency.iter_mut() {
            histogram.for_each_word_mut(&mut visit);
        }
        for word in [
            &mut self.connections_open,
            &mut self.connections_accepted,
            &mut self.connections_refused,
            &mut self.bytes_received,
            &mut self.bytes_sent,
            &mut self.frames_fatal,
            &mut self.journal_fsyncs,
            &mut self.journal_records,
            &mut self.journal_bytes,
            &mut self.ring_occupancy,
            &mut self.ring_capacity,
            &mut self.backlog,
            &mut self.parked,
            &mut self.reservations_live,
        ] {
            visit(word);
        }
        self.journal_fsync_latency.for_each_word_mut(&mut visit);
    }

    /// Words in the published layout.
    fn word_count() -> usize {
        let mut count = 0;
        MetricsSnapshot::default().for_each_word_mut(|_| count += 1);
        count
    }

    /// Adds `other` (another shard's figures) into this one.
    pub fn add(&mut self, other: &MetricsSnapshot) {
        let mut words = Vec::with_capacity(MetricsSnapshot::word_count());
        let mut other = *other;
        other.for_each_word_mut(|word| words.push(*word));
        let mut index = 0;
        self.for_each_word_mut(|word| {
            *word = word.saturating_add(words[index]);
            index += 1;
        });
    }
}

/// The figures a shard counts in its loop, with the clock its latencies are measured by.
#[derive(Debug)]
pub struct ShardMetrics {
    /// This shard's time origin: latencies are differences of `now_us` readings taken on
    /// the same shard (a request's receive time travels with it and comes back to the shard
    /// of its connection).
    epoch: Instant,
    pub figures: MetricsSnapshot,
    /// Something was counted since the last publication.
    dirty: bool,
    published_at_ms: u64,
}

impl Default for ShardMetrics {
    fn default() -> ShardMetrics {
        ShardMetrics {
            epoch: Instant::now(),
            figures: MetricsSnapshot::default(),
            dirty: true,
            published_at_ms: 0,
        }
    }
}

impl ShardMetrics {
    /// Microseconds since this shard's epoch, wrapping every 71 minutes: a latency is a
    /// wrapping difference of two readings, exact for anything shorter than that.
    #[inline]
    pub fn now_us(&self) -> u32 {
        self.now_us64() as u32
    }

    /// Microseconds since this shard's epoch (584,000 years before it wraps).
    #[inline]
    pub fn now_us64(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// A request of operation `operation` answered `result`, `received_us` being the
    /// [`ShardMetrics::now_us`] reading when its frame was taken in, `now_us` when its
    /// response was queued.
    #[inline]
    pub fn record_request(
        &mut self,
        operation: usize,
        result: ResultCode,
        received_us: u32,
        now_us: u32,
    ) {
        let Some(row) = self.figures.requests.get_mut(operation) else {
            debug_assert!(false, "operation index {operation} out of range");
            return;
        };
        row[result as usize] += 1;
        let latency_ns = u64::from(now_us.wrapping_sub(received_us)) * 1_000;
        self.figures.latency[operation].record(latency_ns);
        self.dirty = true;
    }

    /// Marks the figures as changed (after a driver updated its connection totals).
    pub fn touch(&mut self) {
        self.dirty = true;
    }

    /// A journal write + fdatasync completed (successfully or not) `latency_ns` after it
    /// was submitted.
    pub(crate) fn record_fsync(&mut self, latency_ns: u64) {
        self.figures.journal_fsyncs += 1;
        self.figures.journal_fsync_latency.record(latency_ns);
        self.dirty = true;
    }

    /// True when a publication is due: something changed, and either `force` (the shard
    /// is about to sleep) or a millisecond passed since the last one.
    pub(crate) fn due(&self, now_ms: u64, force: bool) -> bool {
        self.dirty && (force || now_ms > self.published_at_ms)
    }

    pub(crate) fn published(&mut self, now_ms: u64) {
        self.dirty = false;
        self.published_at_ms = now_ms;
    }
}

/// One shard's published figures: one atomic word per [`MetricsSnapshot`] word, written
/// only by that shard (see the module documentation for the invariant).
#[derive(Debug)]
#[repr(align(128))] // its own cache lines: one writer per row
pub struct PublishedMetrics {
    words: Box<[AtomicU64]>,
}

impl Default for PublishedMetrics {
    fn default() -> PublishedMetrics {
        PublishedMetrics {
            words: (0..MetricsSnapshot::word_count()).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl PublishedMetrics {
    /// Called only by the row's shard.
    pub fn store(&self, figures: &MetricsSnapshot) {
        let mut figures = *figures;
        let mut index = 0;
        figures.for_each_word_mut(|word| {
            self.words[index].store(*word, Ordering::Relaxed);
            index += 1;
        });
        debug_assert_eq!(index, self.words.len());
    }

    /// The figures as last published (any thread).
    pub fn load(&self) -> MetricsSnapshot {
        let mut figures = MetricsSnapshot::default();
        let mut index = 0;
        figures.for_each_word_mut(|word| {
            *word = self.words[index].load(Ordering::Relaxed);
            index += 1;
        });
        figures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_values_up_to_their_bound() {
        assert_eq!(Histogram::bucket_of(0), 0);
        assert_eq!(Histogram::bucket_of(1_000), 0);
        assert_eq!(Histogram::bucket_of(1_001), 1);
        assert_eq!(Histogram::bucket_of(5_000_000_000), LATENCY_BUCKET_COUNT - 2);
        assert_eq!(Histogram::bucket_of(5_000_000_001), LATENCY_BUCKET_COUNT - 1);
        assert_eq!(Histogram::bucket_of(u64::MAX), LATENCY_BUCKET_COUNT - 1);
        assert!(LATENCY_BUCKET_BOUNDS_NS.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn published_figures_round_trip_and_add() {
        let mut metrics = ShardMetrics::default();
        metrics.record_request(1, ResultCode::SoldOut, 10, 15);
        metrics.record_request(1, ResultCode::Ok, u32::MAX, 4); // across the wrap: 5 µs
        metrics.figures.bytes_received = 640;
        metrics.figures.parked = 3;
        metrics.record_fsync(2_500_000);
        let row = PublishedMetrics::default();
        row.store(&metrics.figures);
        let loaded = row.load();
        assert_eq!(loaded, metrics.figures);
        assert_eq!(loaded.requests[1][ResultCode::SoldOut as usize], 1);
        assert_eq!(loaded.latency[1].count(), 2);
        assert_eq!(loaded.latency[1].counts[Histogram::bucket_of(5_000)], 2);
        assert_eq!(loaded.latency[1].sum_ns, 10_000);
        let mut total = loaded;
        total.add(&loaded);
        assert_eq!(total.bytes_received, 1280);
        assert_eq!(total.journal_fsync_latency.count(), 2);
        assert_eq!(total.latency[1].sum_ns, 20_000);
    }
}
