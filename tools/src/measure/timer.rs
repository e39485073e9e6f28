//! A sub-millisecond wake-up for the open-loop and replay schedules: a Linux `timerfd`
//! registered in the worker's `mio::Poll`.
//!
//! `epoll_wait` (and so `mio`) only sleeps in whole milliseconds. An open loop at 100k
//! requests/s must send every few microseconds, and a request sent late is charged the delay
//! (latency runs from its intended send time), so a millisecond-grained sleep would add up
//! to a millisecond of *client* delay to every measurement. A timerfd fires with nanosecond
//! resolution, and waiting on it in the same poll as the sockets means a response is never
//! read late because the thread was sleeping.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

#[derive(Debug)]
pub struct Timer {
    fd: OwnedFd,
}

impl Timer {
    pub fn new() -> io::Result<Timer> {
        // SAFETY: timerfd_create takes no pointers; the flags are valid constants.
        let fd = unsafe {
            libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor we just created and own exclusively.
        Ok(Timer { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Fires once, `after` from now (at least 1 ns: a zero value would disarm the timer).
    pub fn arm(&self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: after.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: libc::c_long::from(after.subsec_nanos() as i32),
            },
        };
        // SAFETY: the descriptor is valid for the life of `self`; `spec` is a valid
        // itimerspec on the stack and the old-value pointer may be null.
        let result =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Consumes the expiry count so the descriptor stops being readable.
    pub fn clear(&self) {
        let mut expirations = 0u64;
        // SAFETY: reads at most 8 bytes into a valid, writable u64; the descriptor is
        // non-blocking, so an unexpired timer returns EAGAIN, which is fine to ignore.
        let _ = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut expirations as *mut u64).cast::<libc::c_void>(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An event loop's schedule timer: registered in its poll under [`Wakeup::TOKEN`], armed
/// for the next due time only when that changes (re-arming costs a system call).
#[derive(Debug)]
pub struct Wakeup {
    timer: Timer,
    /// The due time the timer is armed for, if any.
    armed: Option<Instant>,
}

impl Wakeup {
    /// The timer's token: no socket token of the drivers comes near it.
    pub const TOKEN: Token = Token(usize::MAX - 1);

    pub fn register(registry: &Registry) -> io::Result<Wakeup> {
        let timer = Timer::new()?;
        registry.register(&mut SourceFd(&timer.raw_fd()), Wakeup::TOKEN, Interest::READABLE)?;
        Ok(Wakeup { timer, armed: None })
    }

    /// Wakes the poll `after` from now, for the event due `at`, unless armed for it already.
    pub fn arm(&mut self, at: Instant, after: Duration) -> io::Result<()> {
        if self.armed != Some(at) {
            self.timer.arm(after)?;
            self.armed = Some(at);
        }
        Ok(())
    }

    /// Whether `event` is the timer's; if so, its expiry is consumed and it is disarmed.
    pub fn fired(&mut self, event: &Event) -> bool {
        if event.token() != Wakeup::TOKEN {
            return false;
        }
        self.timer.clear();
        self.armed = None;
        true
    }
}

/// Waits for events; a wait interrupted by a signal returns with no events (the caller's
/// loop looks at its schedule again either way).
pub fn poll_events(poll: &mut Poll, events: &mut Events, timeout: Duration) -> io::Result<()> {
    match poll.poll(events, Some(timeout)) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::Timer;
    use mio::unix::SourceFd;
    use mio::{Events, Interest, Poll, Token};
    use std::time::{Duration, Instant};

    #[test]
    fn fires_after_a_sub_millisecond_delay() {
        let timer = Timer::new().unwrap();
        let mut poll = Poll::new().unwrap();
        poll.registry()
            .register(&mut SourceFd(&timer.raw_fd()), Token(1), Interest::READABLE)
            .unwrap();
        let start = Instant::now();
        timer.arm(Duration::from_micros(300)).unwrap();
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(2))).unwrap();
        assert!(events.iter().any(|event| event.token() == Token(1)));
        assert!(start.elapsed() >= Duration::from_micros(300));
        timer.clear();
        // Cleared: no longer readable, and clearing an unexpired timer returns at once.
        poll.poll(&mut events, Some(Duration::from_millis(20))).unwrap();
        assert!(events.is_empty(), "the expiry was consumed");
        let before = Instant::now();
        timer.clear();
        assert!(before.elapsed() < Duration::from_secs(1), "clear never blocks");
    }
}
