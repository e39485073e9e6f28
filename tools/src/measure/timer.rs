//! A sub-millisecond wake-up for the open-loop and replay schedules: a Linux `timerfd`
//! (through `nix`'s safe wrapper) registered in the worker's `mio::Poll`.
//!
//! `epoll_wait` (and so `mio`) only sleeps in whole milliseconds. An open loop at 100k
//! requests/s must send every few microseconds, and a request sent late is charged the delay
//! (latency runs from its intended send time), so a millisecond-grained sleep would add up
//! to a millisecond of *client* delay to every measurement. A timerfd fires with nanosecond
//! resolution, and waiting on it in the same poll as the sockets means a response is never
//! read late because the thread was sleeping.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

#[derive(Debug)]
pub struct Timer {
    timer: TimerFd,
}

impl Timer {
    pub fn new() -> io::Result<Timer> {
        // Non-blocking: `clear` must never wait for an expiry that has not happened.
        let flags = TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC;
        let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, flags).map_err(io::Error::from)?;
        Ok(Timer { timer })
    }

    /// Fires once, `after` from now (at least 1 ns: a zero value would disarm the timer).
    pub fn arm(&self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        let expiration = Expiration::OneShot(TimeSpec::from_duration(after));
        self.timer.set(expiration, TimerSetTimeFlags::empty()).map_err(io::Error::from)
    }

    /// Consumes the expiry count so the descriptor stops being readable. The descriptor is
    /// non-blocking, so an unexpired timer answers EAGAIN, which is fine to ignore.
    pub fn clear(&self) {
        let _ = self.timer.wait();
    }

    /// The descriptor, for registering with `mio::unix::SourceFd`.
    pub fn raw_fd(&self) -> RawFd {
        self.timer.as_fd().as_raw_fd()
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
