//! The measurement writers bench and replay share: the HdrHistogram percentile
//! distribution (`.hgrm`) and interval log (`.hlog`), the JSON pieces, and the summary's
//! results and latency blocks.
//!
//! Latencies are recorded in nanoseconds and reported in microseconds: the `.hgrm` file is
//! written with an output scaling ratio of 1000, as HdrHistogram's
//! `outputPercentileDistribution(out, 5, 1000.0)` would, so its Value column is in µs with
//! three decimals; the `.hlog` file stores the raw nanosecond histograms, with interval maxima
//! divided by 1000 (µs), as its `#[MaxValueDivisor: 1000.000]` header says.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use rush_engine::ResultCode;
use serde_json::{json, Map, Value};

use super::histogram::NS_PER_US;
use super::plot;
use super::tally::{CodeCounts, Tally};

/// The label of a percentile: `p50`, `p99.9`, `p99.99`.
pub fn percentile_label(percentile: f64) -> String {
    format!("p{percentile}")
}

/// The latency at `percentile`, in µs.
pub fn at_percentile(histogram: &Histogram<u64>, percentile: f64) -> f64 {
    if histogram.is_empty() {
        return 0.0;
    }
    histogram.value_at_percentile(percentile) as f64 / NS_PER_US
}

pub fn max_us(histogram: &Histogram<u64>) -> f64 {
    if histogram.is_empty() {
        0.0
    } else {
        histogram.max() as f64 / NS_PER_US
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
            let value = step.value_iterated_to() as f64 / NS_PER_US;
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
        (
            histogram.mean() / NS_PER_US,
            histogram.stdev() / NS_PER_US,
            histogram.max() as f64 / NS_PER_US,
        )
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
/// measured phase) and holds the requests that completed during it. `tool` (`rush bench`,
/// `rush replay`) is named in the first comment line.
pub fn write_hlog(
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
        .with_max_value_divisor(NS_PER_US)
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
    map.insert("mean".into(), json!(latency.mean() / NS_PER_US));
    map.insert("stddev".into(), json!(latency.stdev() / NS_PER_US));
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
    writeln!(
        out,
        "  mean {:.1}, stddev {:.1}",
        latency.mean() / NS_PER_US,
        latency.stdev() / NS_PER_US
    )
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
/// The files a run writes after its summary (the same flags in bench and replay).
#[derive(Clone, Copy, Debug)]
pub struct OutputFiles<'a> {
    /// `--json FILE`, or `-` for stdout.
    pub json: Option<&'a str>,
    pub hgrm: Option<&'a Path>,
    pub hlog: Option<&'a Path>,
    pub plot: Option<&'a Path>,
}

impl OutputFiles<'_> {
    /// Writes the files asked for: `document()` as JSON, the latency distribution, the
    /// interval log (`tool` names the writer; `base_time` is the start of the measured
    /// phase) and the plot, whose series is labelled by the `.hgrm` file's name, else
    /// `plot_label`.
    pub fn write(
        &self,
        tool: &str,
        document: impl FnOnce() -> Value,
        tally: &Tally,
        elapsed: Duration,
        base_time: SystemTime,
        plot_label: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        if let Some(destination) = self.json {
            let text = serde_json::to_string_pretty(&document())? + "\n";
            if destination == "-" {
                io::stdout().write_all(text.as_bytes())?;
            } else {
                std::fs::write(destination, text)
                    .with_context(|| format!("cannot write {destination}"))?;
            }
        }
        if let Some(path) = self.hgrm {
            let mut file = create(path)?;
            write_hgrm(&tally.latency, &mut file)?;
            file.flush()?;
        }
        if let Some(path) = self.hlog {
            let mut file = create(path)?;
            write_hlog(tool, &tally.intervals, base_time, elapsed, &mut file)?;
            file.flush()?;
        }
        if let Some(path) = self.plot {
            let label = self
                .hgrm
                .and_then(Path::file_name)
                .map_or_else(plot_label, |name| name.to_string_lossy().into_owned());
            plot::plot_series(&[plot::series_from_histogram(&label, &tally.latency)], path)?;
        }
        Ok(())
    }
}

fn create(path: &Path) -> anyhow::Result<BufWriter<File>> {
    Ok(BufWriter::new(
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::histogram::new_histogram;

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
        write_hlog(
            "rush bench",
            &[one, two],
            SystemTime::now(),
            Duration::from_millis(1500),
            &mut out,
        )
        .unwrap();
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
