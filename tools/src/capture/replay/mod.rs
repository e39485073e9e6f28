//! `rush replay FILE|PCAP --target ADDR`: plays a capture back against a server and
//! measures it the way `rush bench` does.
//!
//! ```text
//! rush replay sale.rushcap --target 127.0.0.1:7070                 # the original pace
//! rush replay sale.rushcap --target 127.0.0.1:7070 -x 10 --json -  # ten times faster
//! rush replay sale.rushcap --target 127.0.0.1:7070 --rate 50000 --loop 3 --hgrm r.hgrm
//! rush replay dump.pcap --port 7070 --target 10.0.0.5:7070 --top-speed -P 32
//! ```
//!
//! Decisions (docs/CAPTURE.md, "Replay", says the same for users):
//!
//! * **Schedule.** By default each FRAME is sent at `(recv_ns − first recv_ns) / speed`
//!   after the start of the replay (`-x/--speed`, default 1: the original pace; the first
//!   recv_ns is the earliest record of a replayed connection). `--rate N` spaces every
//!   frame evenly at N per second in the capture's global receive order (by `recv_ns`,
//!   ties in file order); a connection's OPEN and CLOSE keep their place in that order.
//!   `--top-speed` has no schedule: every connection sends as fast as its window (`-P`,
//!   default 16 frames in flight) allows, a closed loop whose latencies run from when a
//!   frame was handed to its connection and so are NOT corrected for coordinated omission.
//!   The only order top speed keeps between connections is the one the capture proves: a
//!   connection whose OPEN came after another's CLOSE starts once that one has finished
//!   (every answer in). The three are mutually exclusive.
//! * **Loops.** `--loop N` replays the whole capture N times; loop `l` is offset by `l ×`
//!   the capture's span at the replay's pace (top speed: it starts when loop `l − 1` has
//!   finished). Frames are sent as captured, so request keys repeat: a later loop's
//!   state-changing requests are mostly answered DUPLICATE. That is the engine's
//!   idempotency working, and the summary says so.
//!   The schedule is checked before any thread starts ([`plan::Plan::schedule_end_ns`]):
//!   the last event of the last loop must fit in u64 nanoseconds and in a year; the
//!   capture itself spans at most a week (`capture::check_span`, when it is loaded).
//! * **Connections.** One TCP connection per captured connection (per loop), opened at the
//!   time of its OPEN record (or of its first frame, if the capture has no OPEN for it)
//!   and closed once its CLOSE record's time has passed and its answers are in; one
//!   without a CLOSE stays open until the end. Connections that were admin in the capture
//!   (`admin == 1`) go to `--admin ADDR` (default: the target's port + 1); with `--admin
//!   none` they are skipped and their frames counted.
//! * **Frames.** Sent byte for byte as captured, request ids included. Responses are
//!   matched to requests by request id on each connection (a map request id → scheduled
//!   time); a capture may hold the same id twice in flight on one connection (legal, but
//!   ambiguous), and those are matched first in, first out. A frame the server cannot
//!   frame (shorter than 64 bytes: the bytes that made a connection fail framing; or a
//!   fatal header) is sent as is and expects no answer; when the server then closes that
//!   connection it is counted, not an error.
//! * **Latency.** From each frame's scheduled send time, in nanoseconds, into an
//!   HdrHistogram with 3 significant digits, as in the bench; a frame that waits (for its
//!   connection to be established, for a full socket buffer) is charged the wait. A
//!   RESERVE with `wait_ms > 0` that parks in the waitlist is answered when its wait ends:
//!   that time is part of its latency.
//! * **Output.** The bench's report code: a summary (stdout; stderr when `--json -` takes
//!   stdout) with throughput, per-result-code counts (DUPLICATE with the original outcomes
//!   it repeated), percentiles and per-opcode latencies; `--hgrm`, `--hlog`, `--json
//!   FILE|-` and `--plot` as in the bench. Exit code 0, or 1 when the replay had errors (a
//!   connection that could not be opened or failed, requests never answered).
//! * **Threads.** Connections are spread round-robin over `-t` threads (default 1), each
//!   an event loop over non-blocking sockets with the bench's timerfd (`driver.rs`).
//!
//! Replaying a capture of a deterministic run against a fresh server with the same sale
//! gives the same per-result-code counts (tools/tests/replay.rs).

mod driver;
pub mod plan;
#[cfg(test)]
mod tests;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use rush_net::protocol::Opcode;
use serde_json::{json, Map, Value};

use super::dry_run::Summary;
use super::ReplayArgs;
use crate::measure::flags::resolve;
use crate::measure::plot;
use crate::measure::report::{self, OutputFiles};
use crate::measure::tally::Merged;
use crate::measure::workers::{run_workers, ProgressLine};
use driver::{ReplayCounts, Shared};
use plan::{Pace, Plan};

/// The default window of `--top-speed`.
pub const DEFAULT_WINDOW: usize = 16;
/// The largest window (the server stops reading a connection at 4096 in flight anyway).
pub const MAX_WINDOW: usize = 65_536;

/// Where the capture's admin connections go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminTarget {
    /// The target's port + 1.
    Default,
    Address(String),
    /// Skipped (counted).
    Skip,
}

/// The flags of a live replay, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub target: String,
    pub admin: AdminTarget,
    pub pace: Pace,
    pub loops: u32,
    pub threads: usize,
    pub json_to_stdout: bool,
}

/// Checks the flags of a live replay.
pub fn validate(args: &ReplayArgs) -> anyhow::Result<Settings> {
    let Some(target) = args.target.clone() else {
        bail!(
            "give --target ADDR, the server to replay the capture to (or --dry-run to only \
             count what it holds)"
        );
    };
    let chosen = [args.speed.is_some(), args.rate.is_some(), args.top_speed];
    if chosen.iter().filter(|&&flag| flag).count() > 1 {
        bail!(
            "-x/--speed, --rate and --top-speed each choose the pace: give at most one \
             (default: the original pace)"
        );
    }
    let pace = if let Some(speed) = args.speed {
        if !(speed.is_finite() && speed > 0.0) {
            bail!("-x/--speed must be a number above 0 (2: twice the original pace), not {speed}");
        }
        Pace::Original { speed }
    } else if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a number of frames per second above 0, not {rate}");
        }
        if rate > 50_000_000.0 {
            bail!("--rate {rate} is beyond what one machine can send (at most 50000000)");
        }
        Pace::Rate { per_second: rate }
    } else if args.top_speed {
        let window = args.pipeline.unwrap_or(DEFAULT_WINDOW);
        if !(1..=MAX_WINDOW).contains(&window) {
            bail!("-P/--pipeline must be 1..={MAX_WINDOW}, not {window}");
        }
        Pace::TopSpeed { window }
    } else {
        Pace::Original { speed: 1.0 }
    };
    if args.pipeline.is_some() && !args.top_speed {
        bail!(
            "-P/--pipeline is the window of --top-speed; the paced replays send each frame on \
             its schedule, whatever is in flight"
        );
    }
    if args.loops == 0 {
        bail!("--loop must be at least 1 (the number of times the capture is replayed)");
    }
    if args.threads == 0 || args.threads > 1024 {
        bail!("--threads must be 1..=1024, not {}", args.threads);
    }
    if args.drain_timeout.is_zero() {
        bail!("--drain-timeout must be above 0");
    }
    if let Some(path) = &args.plot {
        plot::Format::of(path)?;
    }
    let admin = match args.admin.as_deref() {
        None => AdminTarget::Default,
        Some("none") => AdminTarget::Skip,
        Some(address) => AdminTarget::Address(address.to_string()),
    };
    Ok(Settings {
        target,
        admin,
        pace,
        loops: args.loops,
        threads: args.threads,
        json_to_stdout: args.json.as_deref() == Some("-"),
    })
}

/// The live replay; returns the exit code.
pub fn run(args: &ReplayArgs) -> anyhow::Result<u8> {
    let settings = validate(args)?;
    let target = resolve(&settings.target)?;
    let admin = match &settings.admin {
        AdminTarget::Skip => None,
        AdminTarget::Address(address) => Some(resolve(address)?),
        AdminTarget::Default => {
            let port = target
                .port()
                .checked_add(1)
                .context("the target port is 65535: give the admin address with --admin")?;
            Some(SocketAddr::new(target.ip(), port))
        }
    };
    let capture = super::load_any(&args.file, args.port)?;
    let summary = Summary::of(&capture);
    let plan = plan::build(&capture, settings.pace, admin.is_none());
    drop(capture);
    if plan.connections.is_empty() {
        if plan.skipped_connections > 0 {
            bail!(
                "nothing to replay: every connection of {} is an admin connection, and \
                 --admin none skips them",
                args.file.display()
            );
        }
        bail!("nothing to replay: {} holds no connection", args.file.display());
    }
    // Before any thread starts: the driver adds loop offsets and times unchecked.
    plan.schedule_end_ns(settings.loops)
        .with_context(|| format!("cannot replay {}", args.file.display()))?;
    let drain_timeout = args
        .drain_timeout
        .max(Duration::from_millis(u64::from(plan.max_wait_ms)) + Duration::from_secs(2));
    let replayed = plan.connections.len() * settings.loops as usize;
    let threads = settings.threads.min(replayed);

    let mut out: Box<dyn Write> =
        if settings.json_to_stdout { Box::new(io::stderr()) } else { Box::new(io::stdout()) };
    writeln!(out, "{}", header(args, &settings, &summary, &plan, target, admin, threads))?;

    // Connections in start order (loop by loop), dealt round-robin to the threads.
    let mut per_thread: Vec<Vec<(u32, usize)>> = (0..threads).map(|_| Vec::new()).collect();
    let sequence =
        (0..settings.loops).flat_map(|l| (0..plan.connections.len()).map(move |c| (l, c)));
    for (position, assignment) in sequence.enumerate() {
        per_thread[position % threads].push(assignment);
    }
    // A moment for the threads to start before the first scheduled send.
    let start = Instant::now() + Duration::from_millis(5);
    let base_time = SystemTime::now() + start.saturating_duration_since(Instant::now());
    let top_speed = matches!(settings.pace, Pace::TopSpeed { .. });
    let shared = Shared {
        plan: &plan,
        pace: settings.pace,
        target,
        admin,
        start,
        drain_timeout,
        finished: if top_speed {
            (0..replayed).map(|_| AtomicBool::new(false)).collect()
        } else {
            Vec::new()
        },
        watermark: AtomicUsize::new(0),
    };
    let line = ProgressLine { completed_label: "answered", rate: false };
    let outcomes = run_workers("replay", per_thread, start, line, |assigned, reporter| {
        Ok(driver::run_worker(&shared, &assigned, reporter))
    })?;
    let merged: Merged<ReplayCounts> = Merged::merge(outcomes, Opcode::ALL.len(), start);
    let names: Vec<&'static str> = Opcode::ALL.iter().map(|opcode| opcode.name()).collect();
    let by_op = merged.tally.named_operations(&names);
    let corrected = !top_speed;
    write_summary(&mut out, &merged, &plan, &settings, &args.percentiles.0, &by_op, corrected)?;
    let files = OutputFiles {
        json: args.json.as_deref(),
        hgrm: args.hgrm.as_deref(),
        hlog: args.hlog.as_deref(),
        plot: args.plot.as_deref(),
    };
    files.write(
        "rush replay",
        || to_json(args, &settings, &summary, &plan, &merged, &by_op, corrected),
        &merged.tally,
        merged.elapsed,
        base_time,
        || format!("replay {}", args.file.file_name().unwrap_or_default().to_string_lossy()),
    )?;
    Ok(u8::from(!merged.tally.errors.is_empty()))
}

fn pace_text(pace: Pace) -> String {
    match pace {
        Pace::Original { speed: 1.0 } => "at the original pace".to_string(),
        Pace::Original { speed } => format!("at {speed}× the original pace"),
        Pace::Rate { per_second } => format!("at {per_second} frames/s"),
        Pace::TopSpeed { window } => format!("at top speed (window {window})"),
    }
}

fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

fn header(
    args: &ReplayArgs,
    settings: &Settings,
    summary: &Summary,
    plan: &Plan,
    target: SocketAddr,
    admin: Option<SocketAddr>,
    threads: usize,
) -> String {
    let admin = match admin {
        _ if summary.admin_connections == 0 => "no admin connections".to_string(),
        Some(address) => format!("admin {address}"),
        None => "admin connections skipped".to_string(),
    };
    let mut text = format!(
        "rush replay: {} against {} ({admin}), {}, {}, {}\n  capture: {} ({} admin), {} \
         over {:.3} s",
        args.file.display(),
        target,
        pace_text(settings.pace),
        plural(u64::from(settings.loops), "loop"),
        plural(threads as u64, "thread"),
        plural(summary.connections, "connection"),
        summary.admin_connections,
        plural(summary.frames, "frame"),
        summary.duration_ns as f64 / 1e9,
    );
    if summary.dropped > 0 {
        text += &format!(
            "\n  warning: the server dropped {} while capturing: this is not the original \
             traffic",
            plural(summary.dropped, "record")
        );
    }
    if plan.skipped_connections > 0 {
        text += &format!(
            "\n  skipping {} with {} (--admin none)",
            plural(plan.skipped_connections, "admin connection"),
            plural(plan.skipped_frames, "frame")
        );
    }
    if matches!(settings.pace, Pace::TopSpeed { .. }) {
        text += "\n  (top speed is a closed loop: latencies are NOT corrected for coordinated \
                 omission)";
    }
    text
}

fn write_summary(
    out: &mut impl Write,
    merged: &Merged<ReplayCounts>,
    plan: &Plan,
    settings: &Settings,
    percentiles: &[f64],
    by_op: &[(&'static str, &Histogram<u64>)],
    corrected: bool,
) -> io::Result<()> {
    writeln!(
        out,
        "Frames: {} sent on {}, {} answered, {} unanswered in {:.2} s: {:.1} answers/s",
        merged.tally.sent,
        plural(merged.counts.connections, "connection"),
        merged.tally.completed,
        merged.tally.unanswered,
        merged.elapsed.as_secs_f64(),
        merged.throughput()
    )?;
    if merged.counts.unsent > 0 {
        writeln!(out, "Not sent: {} (their connection had failed)", merged.counts.unsent)?;
    }
    if plan.skipped_frames > 0 || plan.skipped_connections > 0 {
        writeln!(
            out,
            "Skipped: {} of {} (--admin none)",
            plural(plan.skipped_frames * u64::from(settings.loops), "frame"),
            plural(plan.skipped_connections * u64::from(settings.loops), "admin connection")
        )?;
    }
    if merged.counts.framing_failures > 0 {
        writeln!(
            out,
            "Framing failures: {} sent as captured (shorter than 64 bytes or unframeable); the \
             server closed {} after them ({} other frames of those connections unanswered or \
             not sent, as expected)",
            plural(merged.counts.framing_failures, "frame"),
            plural(merged.counts.closed_after_framing_failure, "connection"),
            merged.counts.lost_after_framing_failure
        )?;
    }
    report::write_results(out, &merged.tally.codes, &merged.tally.duplicate_of)?;
    if settings.loops > 1 {
        writeln!(
            out,
            "Note: every loop sends the capture's frames again, request keys included, so from \
             loop 2 on most state-changing requests are answered DUPLICATE: that is the \
             engine's idempotency working, not an error"
        )?;
    }
    if corrected {
        writeln!(
            out,
            "Latency (µs, from each frame's scheduled send time, waits included; a parked \
             RESERVE's time in the waitlist is part of it):"
        )?;
    } else {
        writeln!(
            out,
            "Latency (µs, top speed: NOT corrected for coordinated omission; from when each \
             frame was handed to its connection):"
        )?;
    }
    report::write_latency(out, &merged.tally.latency, percentiles)?;
    report::write_by_op(out, by_op)?;
    const SHOWN: usize = 20;
    for error in merged.tally.errors.iter().take(SHOWN) {
        writeln!(out, "error: {error}")?;
    }
    if merged.tally.errors.len() > SHOWN {
        writeln!(out, "error: ... and {} more (all in --json)", merged.tally.errors.len() - SHOWN)?;
    }
    Ok(())
}

fn to_json(
    args: &ReplayArgs,
    settings: &Settings,
    summary: &Summary,
    plan: &Plan,
    merged: &Merged<ReplayCounts>,
    by_op: &[(&'static str, &Histogram<u64>)],
    corrected: bool,
) -> Value {
    let (mode, speed, rate, window) = match settings.pace {
        Pace::Original { speed } => ("original", json!(speed), Value::Null, Value::Null),
        Pace::Rate { per_second } => ("rate", Value::Null, json!(per_second), Value::Null),
        Pace::TopSpeed { window } => ("top-speed", Value::Null, Value::Null, json!(window)),
    };
    let admin = match &settings.admin {
        AdminTarget::Default => json!("default"),
        AdminTarget::Address(address) => json!(address),
        AdminTarget::Skip => json!("none"),
    };
    let loops = u64::from(settings.loops);
    let mut document = Map::new();
    document.insert("file".into(), json!(args.file.display().to_string()));
    document.insert("target".into(), json!(settings.target));
    document.insert("admin".into(), admin);
    document.insert("mode".into(), json!(mode));
    document.insert("speed".into(), speed);
    document.insert("rate".into(), rate);
    document.insert("window".into(), window);
    document.insert("loops".into(), json!(loops));
    document.insert("threads".into(), json!(settings.threads));
    document.insert(
        "capture".into(),
        json!({
            "records": summary.records,
            "frames": summary.frames,
            "connections": summary.connections,
            "admin_connections": summary.admin_connections,
            "duration_s": summary.duration_ns as f64 / 1e9,
            "dropped": summary.dropped,
        }),
    );
    document.insert("coordinated_omission_corrected".into(), json!(corrected));
    document.insert("connections".into(), json!(merged.counts.connections));
    document.insert("sent".into(), json!(merged.tally.sent));
    document.insert("completed".into(), json!(merged.tally.completed));
    document.insert("unanswered".into(), json!(merged.tally.unanswered));
    document.insert("unsent".into(), json!(merged.counts.unsent));
    document.insert("skipped_admin_connections".into(), json!(plan.skipped_connections * loops));
    document.insert("skipped_admin_frames".into(), json!(plan.skipped_frames * loops));
    document.insert("framing_failures".into(), json!(merged.counts.framing_failures));
    document.insert(
        "closed_after_framing_failure".into(),
        json!(merged.counts.closed_after_framing_failure),
    );
    document.insert(
        "lost_after_framing_failure".into(),
        json!(merged.counts.lost_after_framing_failure),
    );
    document.insert("elapsed_s".into(), json!(merged.elapsed.as_secs_f64()));
    document.insert("throughput_rps".into(), json!(merged.throughput()));
    document.insert("results".into(), Value::Object(report::code_map(&merged.tally.codes)));
    document
        .insert("duplicate_of".into(), Value::Object(report::code_map(&merged.tally.duplicate_of)));
    document.insert("latency_us".into(), report::latency_json(&merged.tally.latency));
    document.insert(
        "percentiles".into(),
        report::percentiles_json(&merged.tally.latency, &args.percentiles.0),
    );
    document.insert("by_op".into(), report::by_op_json(by_op));
    document.insert("errors".into(), json!(merged.tally.errors));
    Value::Object(document)
}
