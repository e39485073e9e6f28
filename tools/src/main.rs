//! `rush`: the command-line tool.
//!
//! - `rush serve` runs the server (see `serve.rs`; settings in `settings.rs`, sale files in
//!   `sale.rs`): `cargo run --release --bin rush -- serve` serves a demo sale on
//!   0.0.0.0:7070 until SIGINT or SIGTERM.
//! - `rush demo` runs a whole flash sale against an in-process server (see `demo.rs`).
//! - `rush bench` drives load at a server (open or closed loop), measures latency as wrk2
//!   does and checks the server's invariants afterwards (see `bench/mod.rs`); `rush plot`
//!   plots its `.hgrm` files (see `measure/plot.rs`).
//! - `rush journal verify|dump|stats` looks inside a data directory: whether a start would
//!   recover it (and what), every journaled input, counts (see `journal/mod.rs`).
//! - `rush top ADDR` shows a running server live from its metrics endpoint (see `top.rs`).
//! - `rush decode` explains frames byte by byte for people writing a client from
//!   docs/PROTOCOL.md.
//! - `rush capture --pcap` converts a tcpdump capture of the protocol into a Rush capture;
//!   `rush replay --dry-run` counts what a capture (or a pcap) holds, and `rush replay
//!   --target ADDR` plays it back against a server, measuring latency as the bench does
//!   (see `capture/mod.rs` and `capture/replay/mod.rs`).
//!
//! What bench, replay and demo share to measure and report a run is in `measure/`.
//!
//! No `unsafe` here: the system calls the tools need (waiting for SIGINT/SIGTERM, the
//! timerfd of the schedules) go through `nix`'s safe wrappers.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use rush_net::protocol::{decode_request, decode_response};

mod bench;
mod demo;
mod journal;
mod serve;
mod signals;
mod top;

// In the library (src/lib.rs), for the fuzz targets; `crate::sale` and the like resolve here.
use rush_tools::{capture, measure, sale, settings};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "rush", version, about = "Rush: a flash-sale reservation engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a whole flash sale against an in-process server: outcomes, invariant checks,
    /// latency table and plot.
    Demo(demo::DemoArgs),
    /// Run the server until SIGINT or SIGTERM (with a demo sale unless --sale is given).
    Serve(settings::ServeArgs),
    /// Convert a tcpdump capture (pcap/pcapng) of the protocol into a Rush capture.
    Capture(capture::CaptureArgs),
    /// Replay a Rush capture or a pcap/pcapng against a server (--target), or count what
    /// it holds (--dry-run).
    Replay(capture::ReplayArgs),
    /// Drive load at a server, measure latency, and check the server's invariants after.
    Bench(Box<bench::BenchArgs>),
    /// Plot latency by percentile from .hgrm files (several runs on one plot).
    Plot {
        /// HdrHistogram percentile distribution files (from `rush bench --hgrm`).
        #[arg(required = true)]
        inputs: Vec<std::path::PathBuf>,
        /// The plot to write: FILE.svg or FILE.png.
        #[arg(short, long)]
        output: std::path::PathBuf,
    },
    /// Look inside a data directory: verify it as a start would, dump it, count it.
    Journal(journal::JournalArgs),
    /// A live view of a running server from its metrics endpoint: requests per second by
    /// result, p50/p99 latency, connections, stock left on the hottest SKUs.
    Top(top::TopArgs),
    /// Decode protocol frames given as hex (spaces and newlines allowed) and print them.
    Decode {
        /// The bytes, in hex. Several frames may follow each other.
        hex: Vec<String>,
        /// Decode response frames (default: request frames).
        #[arg(long)]
        response: bool,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Demo(args) => match demo::run(&args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(error) => Err(error),
        },
        Command::Serve(args) => serve::serve(&args),
        Command::Capture(args) => capture::capture(&args),
        Command::Replay(args) => match capture::replay(&args) {
            Ok(code) => return ExitCode::from(code),
            Err(error) => Err(error),
        },
        Command::Decode { hex, response } => decode(&hex.join(" "), response),
        Command::Bench(args) => match bench::run(&args) {
            Ok(code) => return ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Err(error) => Err(error),
        },
        Command::Plot { inputs, output } => measure::plot::plot_files(&inputs, &output),
        Command::Journal(args) => match journal::run(&args) {
            Ok(code) => return ExitCode::from(code),
            Err(error) => Err(error),
        },
        Command::Top(args) => top::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report(&error);
            ExitCode::FAILURE
        }
    }
}

/// `rush: what failed`, then each cause indented on its own lines (no backtrace, whatever
/// RUST_BACKTRACE says: these are the user's errors, not the program's).
fn report(error: &anyhow::Error) {
    eprintln!("rush: {error}");
    for cause in error.chain().skip(1) {
        for line in cause.to_string().trim_end().lines() {
            eprintln!("  {line}");
        }
    }
}

fn decode(hex: &str, response: bool) -> anyhow::Result<()> {
    let bytes = parse_hex(hex)?;
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let consumed = if response {
            let (frame, consumed) =
                decode_response(rest).with_context(|| format!("frame at byte {offset}"))?;
            println!("{frame:#?}");
            consumed
        } else {
            let (frame, consumed) =
                decode_request(rest).with_context(|| format!("frame at byte {offset}"))?;
            println!("{frame:#?}");
            consumed
        };
        offset += consumed;
    }
    Ok(())
}

/// Hex digits, ignoring ASCII white space; an odd count or a non-hex character is an error.
fn parse_hex(text: &str) -> anyhow::Result<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|byte| !byte.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        bail!("odd number of hex digits ({})", digits.len());
    }
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).context("hex must be ASCII")?;
            u8::from_str_radix(text, 16).with_context(|| format!("not a hex byte: {text:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_hex;

    #[test]
    fn parses_spaced_hex_and_rejects_bad_input() {
        assert_eq!(parse_hex("52 53\n01").unwrap(), vec![0x52, 0x53, 0x01]);
        assert!(parse_hex("525").is_err());
        assert!(parse_hex("5g").is_err());
        assert!(parse_hex("é1").is_err());
    }
}
