//! `rush journal`: look inside a data directory (`rush serve --data-dir`).
//!
//! - `verify.rs`: `rush journal verify DIR`, what a server start would recover (or the
//!   error it would stop with), through the same code, changing nothing;
//! - `dump.rs`: `rush journal dump DIR`, one line per journaled input;
//! - `stats.rs`: `rush journal stats DIR`, counts per shard and in total;
//! - `read.rs`: what dump and stats share (the directory, the segments, the scan that keeps
//!   what precedes a damaged entry).
//!
//! Documented with examples in docs/TOOLS.md, "rush journal".

mod dump;
mod read;
mod stats;
mod verify;

#[derive(clap::Args, Debug)]
pub struct JournalArgs {
    #[command(subcommand)]
    pub command: JournalCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum JournalCommand {
    /// Check a data directory as a server start would (checksums, chain, gaps, torn tail,
    /// consistent cut, full replay), changing nothing; exit 0 when a start would succeed.
    Verify(verify::VerifyArgs),
    /// Print every journaled input, one line each, prefixed by its entry's shard, sequence
    /// and clock.
    Dump(dump::DumpArgs),
    /// Count what the journals hold: files, bytes, entries, inputs by kind, requests by
    /// operation, time span.
    Stats(stats::StatsArgs),
}

/// Runs a `rush journal` command; returns the exit status.
pub fn run(args: &JournalArgs) -> anyhow::Result<u8> {
    match &args.command {
        JournalCommand::Verify(args) => verify::verify(args),
        JournalCommand::Dump(args) => dump::dump(args),
        JournalCommand::Stats(args) => stats::stats(args),
    }
}
