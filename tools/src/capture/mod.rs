//! `rush capture` (a tcpdump capture of the protocol → a Rush capture, docs/CAPTURE.md),
//! `rush replay --dry-run` (what a capture holds) and `rush replay --target` (the live
//! replay, see [`replay`]).
//!
//! The conversion is a pipeline, one module per stage:
//!
//! 1. [`pcap`]: pcap / pcapng file → packets (timestamp, link type, bytes);
//! 2. [`link`]: packet → TCP segment (link layer, IPv4/IPv6, TCP header), or a reason to
//!    skip it;
//! 3. [`reassembly`]: segments to the server's port → per-connection streams → OPEN, FRAME
//!    (64 bytes each), CLOSE records;
//! 4. here: the records' times made relative to the capture's first packet, and the file
//!    written with [`rush_net::capture::write_capture`].
//!
//! A capture converted from a pcap marks no connection admin (the packets do not say which
//! listener a port is) and has shard 0 and `dropped` 0 throughout.
//!
//! The parsing modules return typed errors; `anyhow` appears only in the command functions
//! at the bottom, which also do all the printing.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rush_net::capture::{
    read_capture, write_capture, Capture, FileHeader, Record, HEADER_SIZE, KIND_CLOSE, KIND_FRAME,
    KIND_OPEN, MAGIC, RECORD_SIZE, VERSION,
};
use rush_net::protocol::wire::{U32Le, U64Le};

pub mod dry_run;
pub mod link;
pub mod pcap;
pub mod reassembly;
pub mod replay;
#[cfg(test)]
mod tests;

use link::Skip;
use pcap::{Format, PacketReader, PcapError};
use reassembly::{Reassembler, Stats, Warnings};

/// The longest time accepted between a capture's earliest and latest record: a week. A
/// record further out is a corrupt or forged time (a fuzzed capture with bit 62 set in one
/// `recv_ns` planned a replay of 146 years), not traffic anyone replays: every command that
/// reads a capture refuses it, naming the records.
pub const CAPTURE_SPAN_NS_MAX: u64 = 7 * 24 * 3600 * 1_000_000_000;

/// A capture whose records span more than [`CAPTURE_SPAN_NS_MAX`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanError {
    /// (index in the file, from 0; recv_ns) of the earliest and of the latest record.
    pub earliest: (usize, u64),
    pub latest: (usize, u64),
    /// The latest record's connection and kind, to find it.
    pub latest_connection: u64,
    pub latest_kind: u8,
}

impl fmt::Display for SpanError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ((earliest, earliest_ns), (latest, latest_ns)) = (self.earliest, self.latest);
        let kind = match self.latest_kind {
            KIND_OPEN => "OPEN",
            KIND_FRAME => "FRAME",
            KIND_CLOSE => "CLOSE",
            _ => "unknown kind",
        };
        write!(
            formatter,
            "record {latest} ({kind} of connection {:#x}) has recv_ns {latest_ns}, {:.1} days \
             after record {earliest} (recv_ns {earliest_ns}): a capture may span at most {} \
             days, so one of the two has an implausible time",
            self.latest_connection,
            (latest_ns - earliest_ns) as f64 / 86_400e9,
            CAPTURE_SPAN_NS_MAX / 86_400_000_000_000,
        )
    }
}

impl std::error::Error for SpanError {}

/// Checks that the records of `capture` span at most [`CAPTURE_SPAN_NS_MAX`] (records need
/// not be in time order: shards interleave, and the replay keeps each connection's file
/// order).
pub fn check_span(capture: &Capture) -> Result<(), SpanError> {
    let times = capture.records.iter().map(|record| record.recv_ns.get()).enumerate();
    // The first of equal times, so the error names the earliest record in the file.
    let Some(earliest) = times.clone().min_by_key(|&(index, time)| (time, index)) else {
        return Ok(());
    };
    let latest = times.max_by_key(|&(index, time)| (time, std::cmp::Reverse(index)));
    let latest = latest.expect("a capture with a record has a latest one");
    assert!(latest.1 >= earliest.1);
    if latest.1 - earliest.1 <= CAPTURE_SPAN_NS_MAX {
        return Ok(());
    }
    let record = &capture.records[latest.0];
    Err(SpanError {
        earliest,
        latest,
        latest_connection: record.connection.get(),
        latest_kind: record.kind,
    })
}

/// `rush capture` flags.
#[derive(clap::Args, Debug)]
pub struct CaptureArgs {
    /// The tcpdump capture to convert (pcap or pcapng), e.g. from
    /// `tcpdump -i lo -w IN.pcap 'tcp port 7070'`
    #[arg(long, value_name = "IN.pcap")]
    pub pcap: PathBuf,
    /// The server's TCP port: what clients sent to it becomes the capture
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// The Rush capture file to write (docs/CAPTURE.md)
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
}

/// `rush replay` flags (the live replay is described in `replay/mod.rs`).
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Print what the capture holds (records, frames, connections, duration, drops, frames
    /// per opcode) and send nothing
    #[arg(long)]
    pub dry_run: bool,
    /// For a pcap/pcapng FILE: the server's TCP port in it
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// A Rush capture (`rush serve --capture`, `rush capture`), or a pcap/pcapng (with
    /// --port), told apart by their first bytes
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The server to replay the capture to (its public address)
    #[arg(long, value_name = "ADDR", conflicts_with = "dry_run")]
    pub target: Option<String>,
    /// Where the capture's admin connections go, or `none` to skip them (their frames are
    /// counted) [default: the target's port + 1]
    #[arg(long, value_name = "ADDR|none")]
    pub admin: Option<String>,
    /// Speed multiplier of the original pace (2: twice as fast, 0.5: half as fast)
    #[arg(short = 'x', long, value_name = "F")]
    pub speed: Option<f64>,
    /// Send every frame evenly spaced at N frames per second (in the capture's receive
    /// order) instead of at the original pace
    #[arg(long, value_name = "N")]
    pub rate: Option<f64>,
    /// Send as fast as each connection's window (-P) allows: closed loop, latencies NOT
    /// corrected for coordinated omission
    #[arg(long)]
    pub top_speed: bool,
    /// With --top-speed: frames in flight per connection [default: 16]
    #[arg(short = 'P', long, value_name = "N")]
    pub pipeline: Option<usize>,
    /// Replay the whole capture N times, one after the other (request keys repeat: later
    /// loops are mostly answered DUPLICATE)
    #[arg(long = "loop", value_name = "N", default_value_t = 1)]
    pub loops: u32,
    /// Threads driving the connections
    #[arg(short = 't', long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
    /// The longest wait for a response with requests in flight before giving up (raised to
    /// the capture's longest RESERVE wait_ms + 2 s)
    #[arg(long, value_name = "TIME", value_parser = crate::measure::flags::parse_duration, default_value = "5s")]
    pub drain_timeout: std::time::Duration,
    /// Percentiles to report, e.g. 50,99,99.9
    #[arg(long, default_value = "50,90,99,99.9,99.99", value_parser = crate::measure::flags::parse_percentiles)]
    pub percentiles: crate::measure::flags::Percentiles,
    /// Write the latency distribution in HdrHistogram's percentile format (µs)
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
    /// Write an HdrHistogram interval log (v1.3, one histogram per second)
    #[arg(long, value_name = "FILE")]
    pub hlog: Option<PathBuf>,
    /// Write the results as JSON to FILE, or to stdout with "-"
    #[arg(long, value_name = "FILE|-")]
    pub json: Option<String>,
    /// Plot latency by percentile to FILE.svg or FILE.png
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

/// What converting a pcap/pcapng found, besides the records.
#[derive(Clone, Debug)]
pub struct Report {
    pub format: Format,
    /// Packets read.
    pub packets: u64,
    /// Packets that held no usable TCP segment, by reason.
    pub skipped: BTreeMap<Skip, u64>,
    pub stats: Stats,
    pub warnings: Warnings,
}

/// A converted pcap/pcapng: the capture and what was found on the way.
#[derive(Clone, Debug)]
pub struct Conversion {
    /// `started_unix_ns` is the earliest packet's time (the first packet's, in a file
    /// written in time order); `recv_ns` counts from it.
    pub capture: Capture,
    pub report: Report,
}

/// Converts a pcap or pcapng stream: the client→server traffic of TCP port `port`.
pub fn convert(input: impl Read, port: u16) -> Result<Conversion, PcapError> {
    let mut reader = PacketReader::new(input)?;
    let format = reader.format();
    let mut reassembler = Reassembler::new(port);
    let mut skipped = BTreeMap::new();
    let (mut packets, mut first_ns, mut last_ns) = (0_u64, u64::MAX, 0_u64);
    while let Some(packet) = reader.next_packet()? {
        packets += 1;
        first_ns = first_ns.min(packet.timestamp_ns);
        last_ns = last_ns.max(packet.timestamp_ns);
        match link::parse(packet.link_type, packet.data) {
            Ok(segment) => reassembler.segment(packet.timestamp_ns, &segment),
            Err(skip) => *skipped.entry(skip).or_insert(0) += 1,
        }
    }
    let reassembled = reassembler.finish(last_ns);
    let started_unix_ns = if packets == 0 { 0 } else { first_ns };
    let mut records = reassembled.records;
    for record in &mut records {
        // Every record carries some packet's time (or the last one's), so none is earlier
        // than the start; saturating keeps that an invariant rather than a hope.
        record.recv_ns = U64Le::new(record.recv_ns.get().saturating_sub(started_unix_ns));
    }
    Ok(Conversion {
        capture: capture_of(started_unix_ns, records),
        report: Report {
            format,
            packets,
            skipped,
            stats: reassembled.stats,
            warnings: reassembled.warnings,
        },
    })
}

/// An in-memory capture, with the header `write_capture` would write.
pub fn capture_of(started_unix_ns: u64, records: Vec<Record>) -> Capture {
    Capture {
        header: FileHeader {
            magic: MAGIC,
            version: U32Le::new(VERSION),
            record_size: U32Le::new(RECORD_SIZE as u32),
            started_unix_ns: U64Le::new(started_unix_ns),
            dropped: U64Le::new(0),
            reserved: [0; 32],
        },
        records,
    }
}

impl fmt::Display for Report {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let skipped: u64 = self.skipped.values().sum();
        writeln!(formatter, "{}: {} packets, {} skipped", self.format, self.packets, skipped)?;
        for (skip, count) in &self.skipped {
            writeln!(formatter, "  skipped {count}: {skip}")?;
        }
        write!(formatter, "{}", self.stats)
    }
}

/// Loads a Rush capture, or converts a pcap/pcapng (which needs the server's `port`); tells
/// them apart by their first bytes. The report is there for a conversion.
pub fn load(path: &Path, port: Option<u16>) -> anyhow::Result<(Capture, Option<Report>)> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut prefix = Vec::with_capacity(8);
    (&mut file)
        .take(8)
        .read_to_end(&mut prefix)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let (capture, report) = match pcap::detect(&prefix) {
        Format::RushCapture => {
            let length =
                file.metadata().with_context(|| format!("cannot read {}", path.display()))?.len();
            if length < HEADER_SIZE as u64 {
                bail!(
                    "{} is a truncated Rush capture: it ends after {length} bytes, inside the \
                     {HEADER_SIZE}-byte file header",
                    path.display()
                );
            }
            let capture = read_capture(path)
                .with_context(|| format!("{} is not a valid Rush capture", path.display()))?;
            (capture, None)
        }
        // A file shorter than the magic: `RUSH`, say, is a capture cut short, not an
        // unknown format.
        Format::Unknown if !prefix.is_empty() && MAGIC.starts_with(&prefix) => bail!(
            "{} is a truncated Rush capture: it ends after {} bytes, inside the \
             {HEADER_SIZE}-byte file header",
            path.display(),
            prefix.len()
        ),
        format @ (Format::Pcap | Format::PcapNg) => {
            let Some(port) = port else {
                bail!(
                    "{} is a {format} file: give --port N, the server's TCP port in it",
                    path.display()
                );
            };
            // Re-open rather than seek: the converter reads the file from its first byte.
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            let conversion = convert(BufReader::new(file), port)
                .with_context(|| format!("cannot convert {}", path.display()))?;
            (conversion.capture, Some(conversion.report))
        }
        Format::Unknown => {
            let shown: Vec<String> = prefix.iter().map(|byte| format!("{byte:02x}")).collect();
            bail!(
                "{} is neither a Rush capture nor a pcap/pcapng file (it starts with {})",
                path.display(),
                if shown.is_empty() { "nothing: it is empty".to_string() } else { shown.join(" ") }
            )
        }
    };
    check_span(&capture).with_context(|| format!("{} cannot be replayed", path.display()))?;
    Ok((capture, report))
}

/// [`load`], printing a conversion's warnings (to stderr) and returning the capture.
pub fn load_any(path: &Path, port: Option<u16>) -> anyhow::Result<Capture> {
    let (capture, report) = load(path, port)?;
    if let Some(report) = report {
        print_warnings(&report.warnings);
    }
    Ok(capture)
}

fn print_warnings(warnings: &Warnings) {
    for line in &warnings.lines {
        eprintln!("rush: warning: {line}");
    }
    if warnings.suppressed > 0 {
        eprintln!("rush: warning: {} more warnings like these", warnings.suppressed);
    }
}

/// `rush capture --pcap IN --port N -o FILE`.
pub fn capture(args: &CaptureArgs) -> anyhow::Result<()> {
    let file =
        File::open(&args.pcap).with_context(|| format!("cannot open {}", args.pcap.display()))?;
    let conversion = convert(BufReader::new(file), args.port)
        .with_context(|| format!("cannot convert {}", args.pcap.display()))?;
    print_warnings(&conversion.report.warnings);
    let capture = &conversion.capture;
    // A capture replay would refuse is not written.
    check_span(capture).with_context(|| format!("cannot convert {}", args.pcap.display()))?;
    write_capture(&args.output, capture.header.started_unix_ns.get(), &capture.records)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    println!("{}", conversion.report);
    println!(
        "wrote {}: {} records, started at {} ns since the Unix epoch",
        args.output.display(),
        capture.records.len(),
        capture.header.started_unix_ns.get()
    );
    Ok(())
}

/// `rush replay`: `--dry-run` counts what the capture holds; otherwise the live replay
/// against `--target`. Returns the exit code (0, or 1 when the replay had errors).
pub fn replay(args: &ReplayArgs) -> anyhow::Result<u8> {
    if args.dry_run {
        let summary = dry_run::dry_run(&args.file, args.port)?;
        println!("{summary}");
        return Ok(0);
    }
    replay::run(args)
}
