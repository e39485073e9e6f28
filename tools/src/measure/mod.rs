//! What `rush bench`, `rush replay` and `rush demo` share to measure a run and show it.
//!
//! - [`flags`]: the command-line values bench and replay read alike (durations,
//!   percentile lists, addresses);
//! - [`histogram`]: the one histogram shape (ns, up to an hour, 3 significant digits) and
//!   the per-second interval histograms;
//! - [`tally`]: what each worker counts ([`tally::Tally`]: latencies, intervals, answers by
//!   result code, sent and answered), beside the tool's own counts, and their merge;
//! - [`workers`]: the worker threads, the progress line, and the join that turns a panic
//!   or an error of any worker into the run's error;
//! - [`report`]: the `.hgrm`, `.hlog` and JSON writers and the summary's shared blocks;
//! - [`plot`]: latency by percentile, SVG and PNG (also `rush plot`);
//! - [`rng`]: the one seeded generator (bench's requests; the tests' and benchmarks' too);
//! - [`timer`]: the timerfd that wakes an event loop at a sub-millisecond schedule.
//!
//! Nothing here knows about bench's workloads or replay's captures: those import from
//! here, never the other way round.

pub mod flags;
pub mod histogram;
pub mod plot;
pub mod report;
pub mod rng;
pub mod tally;
pub mod timer;
pub mod workers;
