//! SIGINT and SIGTERM for `rush serve`, through `nix`'s safe wrappers of
//! `pthread_sigmask(3)` and `sigwait(3)` (the crate forbids `unsafe`).
//!
//! The signals are not handled asynchronously: they are blocked in the main thread before
//! the server's threads exist (so every thread inherits the mask and none of them can take
//! the signal), and the main thread then waits for one with `sigwait`. No signal handler
//! runs, so nothing needs to be async-signal-safe.

use anyhow::Context;
use nix::sys::signal::{SigSet, Signal};

/// The signal that asked `rush serve` to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    Interrupt,
    Terminate,
}

impl StopSignal {
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
        }
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread, runs `start` (every thread it spawns
/// inherits the mask), then waits until one of the two signals arrives and returns it with
/// what `start` returned. A signal that arrives while `start` runs stays pending and ends
/// the wait at once. If `start` fails, its error is returned and the signals stay blocked
/// (the caller is about to exit).
pub fn run_until_stop_signal<T>(
    start: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(T, StopSignal)> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block().context("cannot block SIGINT and SIGTERM")?;

    let value = start()?;

    loop {
        // `sigwait` only returns a signal of `set`; the match stays total all the same.
        match set.wait().context("waiting for SIGINT or SIGTERM")? {
            Signal::SIGINT => return Ok((value, StopSignal::Interrupt)),
            Signal::SIGTERM => return Ok((value, StopSignal::Terminate)),
            _ => continue,
        }
    }
}
