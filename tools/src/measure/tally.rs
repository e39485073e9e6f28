//! What every worker of a run counts (latencies, per-second histograms, answers by result
//! code, requests sent and answered, errors), the tool's own counts beside it, and the
//! merge of all workers' counts into one [`Merged`] after the run.
//!
//! Each worker owns its tally for the whole run (no lock and no shared write on the hot
//! path); the main thread merges them once the workers are joined.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rush_engine::ResultCode;

use super::histogram::{add_intervals, new_histogram, record_interval};

/// Answers counted by result code (indexed by the code's value).
pub type CodeCounts = [u64; ResultCode::ALL.len()];

/// Adds one worker's counts by result code into the totals.
pub fn add_counts(totals: &mut CodeCounts, part: &CodeCounts) {
    for (total, count) in totals.iter_mut().zip(part) {
        *total += count;
    }
}

/// The measurements every tool makes, for one worker or (merged) for the whole run.
#[derive(Debug)]
pub struct Tally {
    /// Nanoseconds from each request's intended (or scheduled) send time to its answer.
    pub latency: Histogram<u64>,
    /// The same, by operation: the index is the tool's (bench: its `OPERATIONS`; replay:
    /// [`rush_net::protocol::Opcode::ALL`]).
    pub by_operation: Vec<Histogram<u64>>,
    /// One histogram per second since the start of the measured phase, by completion time.
    pub intervals: Vec<Histogram<u64>>,
    /// Answers by result code; DUPLICATE answers also by the original outcome they repeat.
    pub codes: CodeCounts,
    pub duplicate_of: CodeCounts,
    /// Requests handed to their connection (measured phase).
    pub sent: u64,
    /// Answers matched to a request (measured phase).
    pub completed: u64,
    /// Requests that expected an answer and never got one.
    pub unanswered: u64,
    pub last_completion: Option<Instant>,
    pub errors: Vec<String>,
}

impl Tally {
    /// An empty tally with `operations` per-operation histograms.
    pub fn new(operations: usize) -> Tally {
        assert!(operations > 0, "at least one operation is reported");
        Tally {
            latency: new_histogram(),
            by_operation: (0..operations).map(|_| new_histogram()).collect(),
            intervals: Vec::new(),
            codes: [0; ResultCode::ALL.len()],
            duplicate_of: [0; ResultCode::ALL.len()],
            sent: 0,
            completed: 0,
            unanswered: 0,
            last_completion: None,
            errors: Vec::new(),
        }
    }

    /// Counts one answer: its latency from `scheduled` to `now`, under `operation` (when the
    /// tool knows it), in the second of `now` since `phase_start`, and its result code
    /// (`original`: the outcome a DUPLICATE repeats). Codes outside [`ResultCode::ALL`] are
    /// left out of the code counts (a server newer than this tool), not a panic.
    pub fn record(
        &mut self,
        phase_start: Instant,
        scheduled: Instant,
        now: Instant,
        operation: Option<usize>,
        result: u16,
        original: u16,
    ) {
        let latency_ns = now.saturating_duration_since(scheduled).as_nanos();
        // A latency of 0 cannot be recorded (the histogram starts at 1 ns).
        let latency_ns = u64::try_from(latency_ns).unwrap_or(u64::MAX).max(1);
        self.latency.saturating_record(latency_ns);
        if let Some(histogram) = operation.and_then(|index| self.by_operation.get_mut(index)) {
            histogram.saturating_record(latency_ns);
        }
        let second = now.saturating_duration_since(phase_start).as_secs();
        record_interval(
            &mut self.intervals,
            usize::try_from(second).unwrap_or(usize::MAX),
            latency_ns,
        );
        if let Some(count) = self.codes.get_mut(usize::from(result)) {
            *count += 1;
        }
        if result == ResultCode::Duplicate as u16 {
            if let Some(count) = self.duplicate_of.get_mut(usize::from(original)) {
                *count += 1;
            }
        }
        self.completed += 1;
        self.last_completion = Some(now);
    }

    /// The per-operation histograms with their names (`names[i]` names operation `i`), as
    /// the summary and the JSON list them.
    pub fn named_operations<'a>(
        &'a self,
        names: &[&'static str],
    ) -> Vec<(&'static str, &'a Histogram<u64>)> {
        assert_eq!(names.len(), self.by_operation.len(), "a name for every operation");
        names.iter().copied().zip(&self.by_operation).collect()
    }

    /// Adds another worker's tally into this one.
    pub fn add(&mut self, part: Tally) {
        assert_eq!(self.by_operation.len(), part.by_operation.len(), "one tool's tallies");
        // Same bounds and precision everywhere, so adding cannot fail.
        let _ = self.latency.add(&part.latency);
        for (total, histogram) in self.by_operation.iter_mut().zip(&part.by_operation) {
            let _ = total.add(histogram);
        }
        add_intervals(&mut self.intervals, &part.intervals);
        add_counts(&mut self.codes, &part.codes);
        add_counts(&mut self.duplicate_of, &part.duplicate_of);
        self.sent += part.sent;
        self.completed += part.completed;
        self.unanswered += part.unanswered;
        self.last_completion = self.last_completion.max(part.last_completion);
        self.errors.extend(part.errors);
    }
}

/// What a tool counts besides the [`Tally`], and how two workers' counts add up.
pub trait Counts: Default {
    fn add(&mut self, part: &Self);
}

/// One worker's measurements.
#[derive(Debug)]
pub struct Measured<C> {
    pub tally: Tally,
    pub counts: C,
}

/// Every worker's measurements, merged.
#[derive(Debug)]
pub struct Merged<C> {
    pub tally: Tally,
    pub counts: C,
    /// From the start of the measured phase to the last answer.
    pub elapsed: Duration,
}

impl<C: Counts> Merged<C> {
    /// Merges the workers' measurements; `start` is the start of the measured phase.
    pub fn merge(parts: Vec<Measured<C>>, operations: usize, start: Instant) -> Merged<C> {
        let mut tally = Tally::new(operations);
        let mut counts = C::default();
        for part in parts {
            tally.add(part.tally);
            counts.add(&part.counts);
        }
        if tally.unanswered > 0 {
            tally.errors.push(format!("{} requests were never answered", tally.unanswered));
        }
        let elapsed = tally
            .last_completion
            .map_or(Duration::ZERO, |last| last.saturating_duration_since(start));
        Merged { tally, counts, elapsed }
    }

    /// Answers per second over the measured phase.
    pub fn throughput(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.tally.completed as f64 / self.elapsed.as_secs_f64()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq)]
    struct Extra {
        things: u64,
    }

    impl Counts for Extra {
        fn add(&mut self, part: &Extra) {
            self.things += part.things;
        }
    }

    #[test]
    fn tallies_record_by_code_operation_and_second_and_merge() {
        let start = Instant::now();
        let mut one = Tally::new(2);
        one.sent = 3;
        one.record(start, start, start + Duration::from_micros(5), Some(1), 0, 0);
        // An unknown code and an unknown operation are counted as answers only.
        one.record(start, start, start + Duration::from_millis(2), Some(9), 999, 0);
        let duplicate = ResultCode::Duplicate as u16;
        let sold_out = ResultCode::SoldOut as u16;
        let late = start + Duration::from_millis(2500);
        one.record(start, late - Duration::from_micros(7), late, Some(0), duplicate, sold_out);
        one.unanswered = 1;
        let mut two = Tally::new(2);
        two.sent = 1;
        two.record(start, start, start + Duration::from_secs(1), None, 0, 0);
        two.errors.push("connection 3: refused".into());
        let parts = vec![
            Measured { tally: one, counts: Extra { things: 2 } },
            Measured { tally: two, counts: Extra { things: 5 } },
        ];
        let merged = Merged::merge(parts, 2, start);
        let tally = &merged.tally;
        assert_eq!((tally.sent, tally.completed, tally.unanswered), (4, 4, 1));
        assert_eq!(tally.latency.len(), 4);
        assert_eq!((tally.by_operation[0].len(), tally.by_operation[1].len()), (1, 1));
        assert_eq!(tally.codes[0], 2);
        assert_eq!(tally.codes[ResultCode::Duplicate as usize], 1);
        assert_eq!(tally.duplicate_of[ResultCode::SoldOut as usize], 1);
        let per_second: Vec<u64> = tally.intervals.iter().map(Histogram::len).collect();
        assert_eq!(per_second, vec![2, 1, 1]);
        assert_eq!(merged.counts, Extra { things: 7 });
        assert_eq!(merged.elapsed, Duration::from_millis(2500));
        assert_eq!(
            tally.errors,
            vec!["connection 3: refused".to_string(), "1 requests were never answered".into()]
        );
        assert!((merged.throughput() - 4.0 / 2.5).abs() < 1e-9);
    }
}
