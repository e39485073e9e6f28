//! The histogram shape every measurement of the tools uses, so that histograms of different
//! workers (and of bench and replay) add up without a failure path.

use hdrhistogram::Histogram;

/// Latencies are recorded in nanoseconds, up to an hour, with 3 significant digits.
pub const HISTOGRAM_MAX_NS: u64 = 3_600_000_000_000;
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// Latencies are recorded in ns and reported in µs.
pub const NS_PER_US: f64 = 1000.0;

/// A latency histogram (ns) with the shared bounds and precision.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_NS, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// One interval's histogram: auto-resizing, so that it only grows as far as its largest
/// value (a run has one per second).
fn new_interval_histogram() -> Histogram<u64> {
    let mut histogram = Histogram::new(SIGNIFICANT_DIGITS).expect("valid precision");
    histogram.auto(true);
    histogram
}

/// Records `latency_ns` in the histogram of second `second` of a run, adding interval
/// histograms up to it as needed.
pub fn record_interval(intervals: &mut Vec<Histogram<u64>>, second: usize, latency_ns: u64) {
    while intervals.len() <= second {
        intervals.push(new_interval_histogram());
    }
    // `record`, not `saturating_record`: only `record` grows an auto-resizing histogram.
    let _ = intervals[second].record(latency_ns.min(HISTOGRAM_MAX_NS));
}

/// Adds one worker's per-second histograms into the totals, second by second.
pub fn add_intervals(totals: &mut Vec<Histogram<u64>>, parts: &[Histogram<u64>]) {
    for (second, part) in parts.iter().enumerate() {
        while totals.len() <= second {
            totals.push(new_interval_histogram());
        }
        // Auto-resizing totals: adding cannot fail.
        let _ = totals[second].add(part);
    }
}
