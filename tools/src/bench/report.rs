//! What a run prints and writes: the summary, the JSON document, the HdrHistogram
//! percentile distribution (`.hgrm`) and interval log (`.hlog`).
//!
//! Latencies are recorded in nanoseconds and reported in microseconds: the `.hgrm` file is
//! written with an output scaling ratio of 1000, as HdrHistogram's
//! `outputPercentileDistribution(out, 5, 1000.0)` would, so its Value column is in µs with
//! three decimals; the `.hlog` file stores the raw nanosecond histograms, with interval maxima
//! divided by 1000 (µs), as its `#[MaxValueDivisor: 1000.000]` header says.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use rush_engine::ResultCode;
use serde_json::{json, Map, Value};

use super::check::Check;
use super::driver::{HISTOGRAM_MAX_NS, SIGNIFICANT_DIGITS};

/// Replies counted by result code (indexed by the code's value).
pub type CodeCounts = [u64; ResultCode::ALL.len()];

/// Records `latency` (ns) in the histogram of second `second` of a run, adding auto-resizing
/// histograms up to it as needed (an interval histogram only grows as far as its largest
/// value).
pub fn record_interval(intervals: &mut Vec<Histogram<u64>>, second: usize, latency: u64) {
    while intervals.len() <= second {
        let mut histogram = Histogram::new(SIGNIFICANT_DIGITS).expect("valid precision");
        histogram.auto(true);
        intervals.push(histogram);
    }
    // `record`, not `saturating_record`: only `record` grows an auto-resizing histogram.
    let _ = intervals[second].record(latency.min(HISTOGRAM_MAX_NS));
}

/// Adds one worker's per-second histograms into the totals, second by second.
pub fn add_intervals(totals: &mut Vec<Histogram<u64>>, parts: &[Histogram<u64>]) {
    for (second, part) in parts.iter().enumerate() {
        while totals.len() <= second {
            let mut histogram = Histogram::new(SIGNIFICANT_DIGITS).expect("valid precision");
            histogram.auto(true);
            totals.push(histogram);
        }
        // Auto-resizing totals: adding cannot fail.
        let _ = totals[second].add(part);
    }
}

/// Adds one worker's counts by result code into the totals.
pub fn add_counts(totals: &mut CodeCounts, part: &CodeCounts) {
    for (total, count) in totals.iter_mut().zip(part) {
        *total += count;
    }
}

/// Nanoseconds per reported unit (µs).
pub const SCALE: f64 = 1000.0;

/// The label of a percentile: `p50`, `p99.9`, `p99.99`.
pub fn percentile_label(percentile: f64) -> String {
    format!("p{percentile}")
}

/// The latency at `percentile`, in µs.
pub fn at_percentile(histogram: &Histogram<u64>, percentile: f64) -> f64 {
    if histogram.is_empty() {
        return 0.0;
    }
    histogram.value_at_percentile(percentile) as f64 / SCALE
}

pub fn max_us(histogram: &Histogram<u64>) -> f64 {
    if histogram.is_empty() {
        0.0
    } else {
        histogram.max() as f64 / SCALE
    }
}

/// Writes `histogram` in HdrHistogram's percentile distribution format, exactly as the Java
/// `outputPercentileDistribution(out, 5, 1000.0)` prints it (the format HdrHistogram's
/// plotter and `rush plot` read).
pub fn write_hgrm(histogram: &Histogram<u64>, out: &mut impl Write) -> io::Result<()> {
    let digits = usize::from(histogram.sigfig());
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    if !histogram.is_empty() {
        for step in histogram.iter_quantiles(5) {
            total += step.count_since_last_iteration();
            let value = step.value_iterated_to() as f64 / SCALE;
            let quantile = step.quantile_iterated_to();
            if quantile < 1.0 {
                let inverse = 1.0 / (1.0 - quantile);
                writeln!(out, "{value:12.digits$} {quantile:2.12} {total:10} {inverse:14.2}")?;
            } else {
                writeln!(out, "{value:12.digits$} {quantile:2.12} {total:10}")?;
            }
        }
    }
    let (mean, deviation, max) = if histogram.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (histogram.mean() / SCALE, histogram.stdev() / SCALE, histogram.max() as f64 / SCALE)
    };
    // HdrHistogram's sub-bucket count: 2 × 10^digits rounded up to a power of two.
    let sub_buckets = (2 * 10u64.pow(u32::from(histogram.sigfig()))).next_power_of_two();
    writeln!(out, "#[Mean    = {mean:12.digits$}, StdDeviation   = {deviation:12.digits$}]")?;
    writeln!(out, "#[Max     = {max:12.digits$}, Total count    = {:12}]", histogram.len())?;
    writeln!(out, "#[Buckets = {:12}, SubBuckets     = {sub_buckets:12}]", histogram.buckets())?;
    Ok(())
}

/// Writes the per-second histograms in HdrHistogram's interval log format (version 1.3,
/// V2 compressed histograms, base64), readable by HistogramLogProcessor and
/// HdrHistogramVisualizer: interval `i` starts `i` seconds after BaseTime (the start of the
/// measured phase) and holds the requests that completed during it.
pub fn write_hlog(
    intervals: &[Histogram<u64>],
    base_time: SystemTime,
    elapsed: Duration,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    write_hlog_as("rush bench", intervals, base_time, elapsed, out)
}

/// [`write_hlog`] with another tool's name in the first comment line (`rush replay`).
pub fn write_hlog_as(
    tool: &str,
    intervals: &[Histogram<u64>],
    base_time: SystemTime,
    elapsed: Duration,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let since_epoch = base_time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs_f64();
    // The Java writer's header, in its order (the crate's builder would put the version line
    // after StartTime and leaves out the column legend); the builder adds MaxValueDivisor.
    writeln!(out, "#[Logged with {tool}; latencies in nanoseconds]")?;
    writeln!(out, "#[Histogram log format version 1.3]")?;
    writeln!(out, "#[StartTime: {seconds:.3} (seconds since epoch)]")?;
    writeln!(out, "#[BaseTime: {seconds:.3} (seconds since epoch)]")?;
    writeln!(
        out,
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
    )?;
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .with_max_value_divisor(SCALE)
        .begin_log_with(out, &mut serializer)?;
    for (second, histogram) in intervals.iter().enumerate() {
        let start = Duration::from_secs(second as u64);
        let length = elapsed.saturating_sub(start).min(Duration::from_secs(1));
        let length = if length.is_zero() { Duration::from_secs(1) } else { length };
        writer
            .write_histogram(histogram, start, length, None)
            .map_err(|error| anyhow::anyhow!("writing the interval log: {error}"))?;
    }
    Ok(())
}

/// The non-zero counts of `counts` (indexed by result code) by code name: the JSON
/// `results` and `duplicate_of` objects.
pub fn code_map(counts: &CodeCounts) -> Map<String, Value> {
    ResultCode::ALL
        .iter()
        .zip(counts)
        .filter(|(_, &count)| count > 0)
        .map(|(code, &count)| (code.name().to_string(), json!(count)))
        .collect()
}

/// The JSON `latency_us` object: p50, p90, p99, p99.9, p99.99, max, mean and stddev (µs).
pub fn latency_json(latency: &Histogram<u64>) -> Value {
    let mut map = Map::new();
    for percentile in [50.0, 90.0, 99.0, 99.9, 99.99] {
        map.insert(percentile_label(percentile), json!(at_percentile(latency, percentile)));
    }
    map.insert("max".into(), json!(max_us(latency)));
    map.insert("mean".into(), json!(latency.mean() / SCALE));
    map.insert("stddev".into(), json!(latency.stdev() / SCALE));
    Value::Object(map)
}

/// The JSON `percentiles` array: `{"percentile": p, "latency_us": v}` per requested `p`.
pub fn percentiles_json(latency: &Histogram<u64>, percentiles: &[f64]) -> Value {
    Value::Array(
        percentiles
            .iter()
            .map(|&p| json!({"percentile": p, "latency_us": at_percentile(latency, p)}))
            .collect(),
    )
}

/// The JSON `by_op` object: count, p50, p99 and max (µs) per operation that has any.
pub fn by_op_json(by_op: &[(&'static str, &Histogram<u64>)]) -> Value {
    Value::Object(
        by_op
            .iter()
            .filter(|(_, histogram)| !histogram.is_empty())
            .map(|(name, histogram)| {
                (
                    name.to_string(),
                    json!({
                        "count": histogram.len(),
                        "p50": at_percentile(histogram, 50.0),
                        "p99": at_percentile(histogram, 99.0),
                        "max": max_us(histogram),
                    }),
                )
            })
            .collect(),
    )
}

/// The `Results:` block: one line per result code that occurred, DUPLICATE with the
/// breakdown of the original outcomes it repeated.
pub fn write_results(
    out: &mut impl Write,
    codes: &CodeCounts,
    duplicate_of: &CodeCounts,
) -> io::Result<()> {
    writeln!(out, "Results:")?;
    for (code, &count) in ResultCode::ALL.iter().zip(codes) {
        if count == 0 {
            continue;
        }
        write!(out, "  {:<20} {count:>12}", code.name())?;
        if *code == ResultCode::Duplicate {
            let originals: Vec<String> = ResultCode::ALL
                .iter()
                .zip(duplicate_of)
                .filter(|(_, &n)| n > 0)
                .map(|(original, n)| format!("{n} of {}", original.name()))
                .collect();
            write!(out, "  ({})", originals.join(", "))?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// The latency lines under the caller's `Latency (...)` heading: each requested
/// percentile, max, mean and stddev (µs).
pub fn write_latency(
    out: &mut impl Write,
    latency: &Histogram<u64>,
    percentiles: &[f64],
) -> io::Result<()> {
    for &percentile in percentiles {
        let label = percentile_label(percentile);
        writeln!(out, "  {label:<8} {:>12.1}", at_percentile(latency, percentile))?;
    }
    writeln!(out, "  {:<8} {:>12.1}", "max", max_us(latency))?;
    writeln!(out, "  mean {:.1}, stddev {:.1}", latency.mean() / SCALE, latency.stdev() / SCALE)
}

/// The `By operation (µs):` block, when more than one operation has latencies.
pub fn write_by_op(
    out: &mut impl Write,
    by_op: &[(&'static str, &Histogram<u64>)],
) -> io::Result<()> {
    let ops: Vec<_> = by_op.iter().filter(|(_, h)| !h.is_empty()).collect();
    if ops.len() > 1 {
        writeln!(out, "By operation (µs):")?;
        for (name, histogram) in ops {
            writeln!(
                out,
                "  {name:<8} {:>10} requests  p50 {:>9.1}  p99 {:>9.1}  max {:>9.1}",
                histogram.len(),
                at_percentile(histogram, 50.0),
                at_percentile(histogram, 99.0),
                max_us(histogram)
            )?;
        }
    }
    Ok(())
}

/// The figures of a finished run that the summary and the JSON show.
#[derive(Debug)]
pub struct Report<'a> {
    pub settings: Map<String, Value>,
    pub latency: &'a Histogram<u64>,
    pub by_op: &'a [(&'static str, &'a Histogram<u64>)],
    pub percentiles: &'a [f64],
    pub codes: &'a CodeCounts,
    pub duplicate_of: &'a CodeCounts,
    pub sent: u64,
    /// Open loop with a duration: the requests the plan called for in the measured phase.
    pub planned: Option<u64>,
    pub completed: u64,
    pub unanswered: u64,
    pub warmup_sent: u64,
    pub warmup_completed: u64,
    pub elapsed: Duration,
    pub corrected: bool,
    pub abandoned_follow_ups: u64,
    pub checks: Option<&'a [Check]>,
    pub errors: &'a [String],
}

impl Report<'_> {
    pub fn throughput(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.completed as f64 / self.elapsed.as_secs_f64()
        }
    }

    pub fn to_json(&self) -> Value {
        let latency = latency_json(self.latency);
        let percentiles = percentiles_json(self.latency, self.percentiles);
        let by_op = by_op_json(self.by_op);
        let mut document = self.settings.clone();
        document.insert("coordinated_omission_corrected".into(), json!(self.corrected));
        document.insert("sent".into(), json!(self.sent));
        document.insert("planned".into(), json!(self.planned));
        document.insert("completed".into(), json!(self.completed));
        document.insert("unanswered".into(), json!(self.unanswered));
        document.insert("warmup_sent".into(), json!(self.warmup_sent));
        document.insert("warmup_completed".into(), json!(self.warmup_completed));
        document.insert("elapsed_s".into(), json!(self.elapsed.as_secs_f64()));
        document.insert("throughput_rps".into(), json!(self.throughput()));
        document.insert("results".into(), Value::Object(code_map(self.codes)));
        document.insert("duplicate_of".into(), Value::Object(code_map(self.duplicate_of)));
        document.insert("latency_us".into(), latency);
        document.insert("percentiles".into(), percentiles);
        document.insert("by_op".into(), by_op);
        document.insert("abandoned_follow_ups".into(), json!(self.abandoned_follow_ups));
        match self.checks {
            Some(checks) => {
                let list: Vec<Value> = checks
                    .iter()
                    .map(|c| json!({"name": c.name, "pass": c.pass, "detail": c.detail}))
                    .collect();
                document.insert("checks".into(), Value::Array(list));
                document.insert("checks_passed".into(), json!(checks.iter().all(|c| c.pass)));
            }
            None => {
                document.insert("checks".into(), Value::Null);
                document.insert("checks_passed".into(), Value::Null);
            }
        }
        document.insert("errors".into(), json!(self.errors));
        Value::Object(document)
    }

    /// The human summary (the header lines come from the caller).
    pub fn write_summary(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "Requests: {} sent, {} completed, {} unanswered in {:.2} s: {:.1} req/s",
            self.sent,
            self.completed,
            self.unanswered,
            self.elapsed.as_secs_f64(),
            self.throughput()
        )?;
        if let Some(planned) = self.planned.filter(|&planned| self.sent * 100 < planned * 99) {
            writeln!(
                out,
                "Note: the open loop fell behind its plan: {} of {planned} planned requests were \
                 sent (windows full: the server is saturated, or raise -P / -c); the latencies \
                 include that waiting",
                self.sent
            )?;
        }
        if self.warmup_sent > 0 {
            writeln!(
                out,
                "Warm-up: {} sent, {} completed (discarded)",
                self.warmup_sent, self.warmup_completed
            )?;
        }
        write_results(out, self.codes, self.duplicate_of)?;
        if self.corrected {
            writeln!(
                out,
                "Latency (µs, from each request's intended send time: corrected for \
                 coordinated omission):"
            )?;
        } else {
            writeln!(
                out,
                "Latency (µs, closed loop: NOT corrected for coordinated omission; from when \
                 each request was sent):"
            )?;
        }
        write_latency(out, self.latency, self.percentiles)?;
        write_by_op(out, self.by_op)?;
        if self.abandoned_follow_ups > 0 {
            writeln!(
                out,
                "{} follow-ups (CONFIRM/CANCEL) were still queued at the end and not sent",
                self.abandoned_follow_ups
            )?;
        }
        for error in self.errors {
            writeln!(out, "error: {error}")?;
        }
        if let Some(checks) = self.checks {
            writeln!(out, "Checks:")?;
            for check in checks {
                let verdict = if check.pass { "PASS" } else { "FAIL" };
                writeln!(out, "  {verdict}  {}: {}", check.name, check.detail)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::driver::new_histogram;

    /// The data lines of an .hgrm text: (value, percentile, total count).
    fn parse_hgrm(text: &str) -> Vec<(f64, f64, u64)> {
        text.lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
            .skip(1)
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                assert!(fields.len() == 3 || fields.len() == 4, "{line:?}");
                (fields[0].parse().unwrap(), fields[1].parse().unwrap(), fields[2].parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn hgrm_matches_the_hdrhistogram_layout() {
        let mut histogram = new_histogram();
        for value in 1..=1000u64 {
            histogram.record(value * 1000).unwrap(); // 1..=1000 µs
        }
        let mut out = Vec::new();
        write_hgrm(&histogram, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines.next().unwrap(), "");
        // Java: "%12.3f %2.12f %10d %14.2f".
        assert_eq!(lines.next().unwrap(), "       1.000 0.000000000000          1           1.00");
        let rows = parse_hgrm(&text);
        let median = rows.iter().find(|row| row.1 >= 0.5).unwrap();
        assert!((median.0 - 500.0).abs() <= 1.0, "{median:?}");
        let last = rows.last().unwrap();
        assert_eq!((last.1, last.2), (1.0, 1000));
        assert!((last.0 - 1000.0).abs() < 1.0);
        assert!(
            text.lines()
                .rev()
                .nth(1)
                .unwrap()
                .starts_with("#[Max     =     1000.447, Total count    =         1000]"),
            "{text}"
        );
        assert!(
            text.contains("#[Mean    =      500.") && text.contains("StdDeviation   =      288.")
        );
        assert!(
            text.ends_with("#[Buckets =           32, SubBuckets     =         2048]\n"),
            "{text}"
        );
        // Percentiles never go down, and neither do values.
        assert!(rows.windows(2).all(|pair| pair[0].0 <= pair[1].0 && pair[0].1 <= pair[1].1));
    }

    #[test]
    fn interval_log_round_trips_through_the_crate_reader() {
        use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
        let mut one = new_histogram();
        one.record(5_000).unwrap();
        let mut two = new_histogram();
        two.record(7_000).unwrap();
        two.record(9_000).unwrap();
        let mut out = Vec::new();
        write_hlog(&[one, two], SystemTime::now(), Duration::from_millis(1500), &mut out).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains("#[Histogram log format version 1.3]"));
        let intervals: Vec<_> = IntervalLogIterator::new(&out)
            .filter_map(|entry| match entry.unwrap() {
                LogEntry::Interval(interval) => Some(interval),
                _ => None,
            })
            .collect();
        assert_eq!(intervals.len(), 2);
        assert_eq!(intervals[1].start_timestamp(), Duration::from_secs(1));
        assert_eq!(intervals[1].duration(), Duration::from_millis(500));
        assert!((intervals[1].max() - 9.0).abs() < 0.01, "{}", intervals[1].max());
    }
}
