//! `rush journal verify DIR [--config FILE]`: would a server start on DIR succeed, and what
//! would it recover?
//!
//! It runs what a start runs, through `replay_directory`: every shard's segments scanned
//! (checksums, hash chain, sequence numbers, torn tail), the consistent cut across shards,
//! and every kept entry replayed through the engine (so a replayed sender that produces a
//! message different from what its receiver journaled, a determinism bug, is caught), then
//! the check that each shard's reservation id space has room for one more start. Nothing on
//! disk changes: the torn tail and the cut entries a start would remove are reported, not
//! removed. On top of what a start checks, each replayed engine's invariants are checked.
//!
//! - **The lock.** Verify takes the directory's LOCK as a start does, so it refuses a
//!   directory a running server uses (its journal's tail moves; stop the server, or use
//!   `stats`/`dump`, which read without the lock). Because taking the lock must not create
//!   anything, a directory without its LOCK file or without a shard's directory (both of
//!   which a start would create) is refused too.
//! - **The engine config.** Replay must run with the capacities the server ran with (a
//!   table size changes which requests were refused OVERLOADED, a default hold changes
//!   expiries). The server does not record them, so verify takes the same `--config FILE`
//!   as `rush serve` (its engine keys; the rest is ignored) and the same defaults without
//!   one. The shard count is the directory's own (META).
//!
//! Exit status: 0 when a start would succeed (a torn tail is reported, not an error); 1
//! when it would fail, with the error text a start gives (file, offset, what is wrong), or
//! when the directory cannot be verified (locked, missing, not a data directory); 3 when a
//! start would succeed but a replayed engine breaks an invariant (a bug to report). A
//! journal that makes the recovery code panic (damage the checksums cannot see: written by a
//! broken build or by hand) is reported as such, exit status 1.

use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use rush_runtime::journal::{
    list_segments, replay_directory, DataDirError, StartError, GENERATION_JUMP,
};

use super::read::{plural, print, torn_text, Directory};
use crate::settings::{engine_default, ConfigFile};

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The data directory (`rush serve --data-dir`)
    pub dir: PathBuf,
    /// The settings file `rush serve` runs with: its engine capacities are the replay's
    /// [default: rush serve's defaults]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The exit status when a replayed engine breaks an invariant.
pub const EXIT_INVARIANT: u8 = 3;

pub fn verify(args: &VerifyArgs) -> anyhow::Result<u8> {
    let directory = Directory::open(&args.dir)?;
    let engine = match &args.config {
        Some(path) => ConfigFile::load(path)?.engine(),
        None => engine_default(),
    };
    // What a start's open would create: verify creates nothing.
    let lock = directory.path.join("LOCK");
    if !lock.exists() {
        bail!(
            "{}: missing; verify takes the lock a server takes, and does not create it (a \
             server start creates it)",
            lock.display()
        );
    }
    let mut segments = Vec::with_capacity(directory.shard_count as usize);
    for shard in directory.shards(None)? {
        let shard_path = directory.shard_path(shard);
        if !shard_path.is_dir() {
            bail!(
                "{}: missing; a server start would create it empty (shard {shard}'s journal, if \
                 it ever had one, is gone); verify does not create it",
                shard_path.display()
            );
        }
        let files = list_segments(&shard_path).map_err(|error| anyhow!("{error}"))?;
        let mut bytes_total = 0;
        for (_, path) in &files {
            bytes_total += std::fs::metadata(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .len();
        }
        segments.push((files.len(), bytes_total));
    }

    let started = Instant::now();
    let replayed = without_panicking(|| {
        // A server's capacities, shared by its shards as `rush serve` shares them.
        let shard = engine.per_shard(directory.shard_count);
        replay_directory(&directory.path, shard, directory.shard_count)
    })
    .map_err(|message| {
        anyhow!("recovery panicked: {message}").context(format!(
            "a server start on {} would crash: its journals hold inputs the recovery \
                     code does not expect (damage that passed the checksums, or a bug)",
            directory.path.display()
        ))
    })?;
    let recovered = replayed.map_err(|error| {
        let what = match &error {
            StartError::DataDir(DataDirError::Locked { .. }) => {
                "cannot verify a data directory a server is using (verify takes its lock, \
                     as a start does): stop the server first, or use `rush journal stats`"
                    .to_string()
            }
            _ => format!("a server start on {} would fail", directory.path.display()),
        };
        anyhow::Error::new(error).context(what)
    })?;
    let elapsed = started.elapsed();

    let mut out = format!(
        "data directory {}: {}\n",
        directory.path.display(),
        plural(u64::from(directory.shard_count), "shard")
    );
    let mut violations = Vec::new();
    let mut spent = None;
    for (index, mut shard) in recovered.shards.into_iter().enumerate() {
        let (segment_count, bytes_total) = segments[index];
        let _ = writeln!(out, "shard {index}");
        let _ = writeln!(out, "  segments           {segment_count} ({bytes_total} bytes)");
        let _ = writeln!(
            out,
            "  entries            {} ({} inputs), last sequence {}",
            shard.entries_replayed, shard.inputs_replayed, shard.last_sequence
        );
        match &shard.torn {
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
        if shard.entries_cut == 0 {
            let _ = writeln!(out, "  entries cut        0");
        } else {
            let _ = writeln!(
                out,
                "  entries cut        {} (a server start drops them: they received messages \
                 whose sending was lost)",
                shard.entries_cut
            );
        }
        let _ = writeln!(out, "  live reservations  {}", shard.engine.live_reservations());
        let _ = writeln!(out, "  state hash         {:#018x}", shard.engine.state_hash());
        match shard.engine.check_invariants() {
            Ok(()) => {
                let _ = writeln!(out, "  invariants         hold");
            }
            Err(violation) => {
                let _ = writeln!(out, "  invariants         BROKEN: {violation}");
                violations.push(format!("shard {index}: {violation}"));
            }
        }
        // A start raises every slot's generation; it fails when that no longer fits.
        if spent.is_none() && !shard.engine.jump_generations(GENERATION_JUMP) {
            spent = Some(StartError::IdSpaceSpent { shard: index as u32 });
        }
    }
    let _ = writeln!(out, "messages to redeliver between shards: {}", recovered.redeliveries.len());
    if let Some(error) = spent {
        print(&out)?;
        return Err(anyhow::Error::new(error)
            .context(format!("a server start on {} would fail", directory.path.display())));
    }
    if violations.is_empty() {
        let _ = writeln!(
            out,
            "ok: a server start would recover this directory (replayed in {:.3} s)",
            elapsed.as_secs_f64()
        );
        print(&out)?;
        return Ok(0);
    }
    print(&out)?;
    eprintln!(
        "rush: a server start would succeed, but the replayed state breaks the engine's \
         invariants (a bug: please report it with this directory)"
    );
    for violation in &violations {
        eprintln!("  {violation}");
    }
    Ok(EXIT_INVARIANT)
}

/// Runs `run`, turning a panic into its message. Recovery asserts what a consistent journal
/// guarantees (and the engine asserts its own state), so a journal damaged in a way the
/// checksums cannot see (written by a broken build, or by hand) can make it panic: a server
/// start would crash; verify says so instead. The default hook would print the panic as a
/// crash of `rush` itself, so a quiet one keeps its message meanwhile.
fn without_panicking<T>(run: impl FnOnce() -> T) -> Result<T, String> {
    let message = Arc::new(Mutex::new(None::<String>));
    let previous = std::panic::take_hook();
    {
        let message = Arc::clone(&message);
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let text = payload
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_string());
            let location = info
                .location()
                .map(|at| format!(" ({}:{})", at.file(), at.line()))
                .unwrap_or_default();
            *message.lock().unwrap_or_else(PoisonError::into_inner) = Some(text + &location);
        }));
    }
    let result = std::panic::catch_unwind(AssertUnwindSafe(run));
    std::panic::set_hook(previous);
    result.map_err(|_| {
        message.lock().unwrap_or_else(PoisonError::into_inner).take().unwrap_or_default()
    })
}
