//! SIGINT and SIGTERM for `rush serve`. This module holds the only `unsafe` of the crate
//! (the crate root denies `unsafe_code` everywhere else), all of it in
//! [`run_until_stop_signal`].
//!
//! The signals are not handled asynchronously: they are blocked in the main thread before
//! the server's threads exist (so every thread inherits the mask and none of them can take
//! the signal), and the main thread then waits for one with `sigwait(3)`. No signal handler
//! runs, so nothing needs to be async-signal-safe.

use anyhow::Context;
use std::io;

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
    // SAFETY: `sigset_t` is plain data (an array of integers) for which all-zero bytes are a
    // valid value; `set` is a live local that `sigemptyset` / `sigaddset` write and
    // `pthread_sigmask` reads; the old-mask pointer is null, which `pthread_sigmask` accepts
    // (it then does not report the old mask). The signal numbers are the libc constants. No
    // Rust invariant depends on the signal mask.
    let (set, blocked) = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let blocked = if libc::sigemptyset(&mut set) != 0
            || libc::sigaddset(&mut set, libc::SIGINT) != 0
            || libc::sigaddset(&mut set, libc::SIGTERM) != 0
        {
            Err(io::Error::last_os_error())
        } else {
            // pthread_sigmask returns the error number itself (not -1 and errno).
            match libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) {
                0 => Ok(()),
                error => Err(io::Error::from_raw_os_error(error)),
            }
        };
        (set, blocked)
    };
    blocked.context("cannot block SIGINT and SIGTERM")?;

    let value = start()?;

    loop {
        let mut signal: libc::c_int = 0;
        // SAFETY: `set` is the initialized set built above and `signal` a live, writable
        // c_int; `sigwait` only reads the one and writes the other.
        let status = unsafe { libc::sigwait(&set, &mut signal) };
        match status {
            0 if signal == libc::SIGINT => return Ok((value, StopSignal::Interrupt)),
            0 if signal == libc::SIGTERM => return Ok((value, StopSignal::Terminate)),
            0 => continue,
            libc::EINTR => continue,
            error => {
                return Err(anyhow::Error::new(io::Error::from_raw_os_error(error))
                    .context("waiting for SIGINT or SIGTERM"))
            }
        }
    }
}
