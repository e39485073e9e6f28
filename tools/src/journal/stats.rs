//! `rush journal stats DIR`: per shard and in total, what the journal holds: segment files
//! and bytes, entries, inputs by kind, requests by operation, messages by kind, the first
//! and last sequence with their clocks, inputs per entry and bytes per input.
//!
//! Read without the lock, like `dump` (see `read.rs`). A damaged entry: that shard's counts
//! cover what precedes it (and the total includes them), the error a server start would give
//! follows on stderr, and the exit status is 1.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use rush_runtime::journal::codec::Input;

use super::dump::{message_name, request_name, JOURNALED_REQUESTS, MESSAGES};
use super::read::{plural, print, torn_text, Directory};

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// The data directory (`rush serve --data-dir`)
    pub dir: PathBuf,
}

/// What a shard's journal (or all of them) holds.
#[derive(Debug, Default)]
struct Counts {
    segments: u64,
    bytes: u64,
    entries: u64,
    inputs: u64,
    ticks: u64,
    requests: u64,
    messages: u64,
    starts: u64,
    by_request: BTreeMap<&'static str, u64>,
    by_message: BTreeMap<&'static str, u64>,
    /// (sequence, now_ms) of the first and last valid entries.
    first: Option<(u64, u64)>,
    last: Option<(u64, u64)>,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.segments += other.segments;
        self.bytes += other.bytes;
        self.entries += other.entries;
        self.inputs += other.inputs;
        self.ticks += other.ticks;
        self.requests += other.requests;
        self.messages += other.messages;
        self.starts += other.starts;
        for (name, count) in &other.by_request {
            *self.by_request.entry(name).or_default() += count;
        }
        for (name, count) in &other.by_message {
            *self.by_message.entry(name).or_default() += count;
        }
        // The clocks of different shards are comparable (unix ms): the total's span is the
        // earliest first entry to the latest last one. Sequences are per shard: not summed.
        self.first = match (self.first, other.first) {
            (Some(mine), Some(theirs)) => Some(if theirs.1 < mine.1 { theirs } else { mine }),
            (mine, theirs) => mine.or(theirs),
        };
        self.last = match (self.last, other.last) {
            (Some(mine), Some(theirs)) => Some(if theirs.1 > mine.1 { theirs } else { mine }),
            (mine, theirs) => mine.or(theirs),
        };
    }

    /// The lines after a `shard N` or `total` heading.
    fn lines(&self, out: &mut String, with_sequences: bool) {
        let _ = writeln!(out, "  segments           {} ({} bytes)", self.segments, self.bytes);
        match (self.first, self.last) {
            (Some((first_sequence, first_ms)), Some((last_sequence, last_ms))) => {
                if with_sequences {
                    let _ = writeln!(
                        out,
                        "  entries            {}, sequence {first_sequence} to {last_sequence}",
                        self.entries
                    );
                } else {
                    let _ = writeln!(out, "  entries            {}", self.entries);
                }
                let span_ms = last_ms.saturating_sub(first_ms);
                let _ = writeln!(
                    out,
                    "  now_ms             {first_ms} to {last_ms} ({:.3} s)",
                    span_ms as f64 / 1000.0
                );
            }
            _ => {
                let _ = writeln!(out, "  entries            0");
            }
        }
        let _ = writeln!(
            out,
            "  inputs             {}: TICK {}, REQUEST {}, MESSAGE {}, START {}",
            self.inputs, self.ticks, self.requests, self.messages, self.starts
        );
        let requests: Vec<String> = JOURNALED_REQUESTS
            .iter()
            .map(|name| format!("{name} {}", self.by_request.get(name).copied().unwrap_or(0)))
            .collect();
        let _ = writeln!(out, "  requests           {}: {}", self.requests, requests.join(", "));
        let messages: Vec<String> = MESSAGES
            .iter()
            .map(|name| format!("{name} {}", self.by_message.get(name).copied().unwrap_or(0)))
            .collect();
        let _ = writeln!(out, "  messages           {}: {}", self.messages, messages.join(", "));
        let ratio = |numerator: u64, denominator: u64| {
            if denominator == 0 {
                "-".to_string()
            } else {
                format!("{:.2}", numerator as f64 / denominator as f64)
            }
        };
        let _ = writeln!(out, "  inputs per entry   {}", ratio(self.inputs, self.entries));
        let _ = writeln!(out, "  bytes per input    {}", ratio(self.bytes, self.inputs));
    }
}

pub fn stats(args: &StatsArgs) -> anyhow::Result<u8> {
    let directory = Directory::open(&args.dir)?;
    let mut out = format!(
        "data directory {}: {}\n",
        directory.path.display(),
        plural(u64::from(directory.shard_count), "shard")
    );
    let mut total = Counts::default();
    let mut failures = Vec::new();
    for shard in directory.shards(None)? {
        let files = directory.read_shard(shard)?;
        let walk = files.walk();
        let mut counts = Counts {
            segments: files.segments.len() as u64,
            bytes: files.bytes_total(),
            ..Counts::default()
        };
        for (header, place) in &walk.entries {
            counts.entries += 1;
            counts.first.get_or_insert((header.sequence, header.now_ms));
            counts.last = Some((header.sequence, header.now_ms));
            let inputs = files.inputs(header, place).map_err(|error| {
                anyhow::anyhow!(
                    "shard {shard}: {}: offset {}: entry with an undecodable input: {error}",
                    files.segments[place.segment].name,
                    place.offset
                )
            })?;
            for input in inputs {
                counts.inputs += 1;
                match input {
                    Input::Tick => counts.ticks += 1,
                    Input::Request(request) => {
                        counts.requests += 1;
                        *counts.by_request.entry(request_name(&request)).or_default() += 1;
                    }
                    Input::Message { envelope, .. } => {
                        counts.messages += 1;
                        *counts.by_message.entry(message_name(&envelope.message)).or_default() += 1;
                    }
                    Input::Start { .. } => counts.starts += 1,
                }
            }
        }
        let _ = writeln!(out, "shard {shard}");
        if files.missing {
            let _ = writeln!(
                out,
                "  missing            {} (a server start creates it empty)",
                directory.shard_path(shard).display()
            );
        }
        counts.lines(&mut out, true);
        if walk.first_sequence > 1 {
            let _ = writeln!(
                out,
                "  oldest segment     starts at sequence {}: entries before it are not in the \
                 segments (a snapshot holds them, or they were deleted: `rush journal verify` \
                 tells)",
                walk.first_sequence
            );
        }
        match &walk.torn {
            Some(torn) => {
                let _ = writeln!(
                    out,
                    "  torn tail          {}: a server start truncates it",
                    torn_text(torn)
                );
            }
            None => {
                let _ = writeln!(out, "  torn tail          none");
            }
        }
        if files.snapshots.is_empty() {
            let _ = writeln!(out, "  snapshots          none");
        }
        for (name, bytes) in &files.snapshots {
            let _ = writeln!(out, "  snapshot           {name} ({bytes} bytes)");
        }
        total.add(&counts);
        if let Some(error) = walk.error {
            let _ = writeln!(out, "  damaged            the counts stop at the damage (stderr)");
            failures.push(error);
        }
    }
    let _ = writeln!(out, "total");
    total.lines(&mut out, false);
    print(&out)?;
    for error in &failures {
        eprintln!("rush: {error}");
    }
    Ok(if failures.is_empty() { 0 } else { 1 })
}
