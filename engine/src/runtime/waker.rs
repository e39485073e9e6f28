//! A doorbell: a shard sleeps when idle and is woken only if it is asleep.
//!
//! Built on `std::thread::park`, which is a futex on Linux. The race to avoid is the lost
//! wake-up: a producer pushes just after the consumer checked its rings and just before it
//! parks. The protocol is Dekker's: the consumer stores `SLEEPING`, then (SeqCst) checks its
//! rings; the producer pushes, then (SeqCst) reads the state. Sequential consistency forbids
//! both reading the other's old value, so either the consumer sees the message, or the
//! producer sees `SLEEPING` and unparks it (an unpark before the park makes the park return
//! at once).
//!
//! A shard whose loop blocks in the kernel (epoll_wait, io_uring_enter) instead of parking
//! installs a [`Notify`] (an eventfd write) with [`Doorbell::set_notifier`], and sleeps with
//! [`Doorbell::sleep_with`]: the same handshake, with its own blocking call.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::Duration;

const AWAKE: u32 = 0;
const SLEEPING: u32 = 1;

/// How a producer wakes a shard that blocks in the kernel rather than parking: for example
/// a write to an eventfd that the shard's io_uring or epoll instance watches.
pub trait Notify: Send + Sync {
    fn notify(&self);
}

/// One per shard; producers hold an `Arc` of it.
pub struct Doorbell {
    state: AtomicU32,
    /// The sleeping thread, registered once by the first `sleep` (cold path only).
    thread: Mutex<Option<Thread>>,
    /// When set, wakes go to it instead of unparking the thread (set once, at start).
    notifier: OnceLock<Box<dyn Notify>>,
}

impl std::fmt::Debug for Doorbell {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Doorbell")
            .field("state", &self.state.load(Ordering::Relaxed))
            .field("notifier", &self.notifier.get().is_some())
            .finish()
    }
}

impl Default for Doorbell {
    fn default() -> Self {
        Doorbell::new()
    }
}

impl Doorbell {
    pub fn new() -> Doorbell {
        Doorbell {
            state: AtomicU32::new(AWAKE),
            thread: Mutex::new(None),
            notifier: OnceLock::new(),
        }
    }

    /// Routes wake-ups to `notifier` from now on. Call once, before any producer runs;
    /// `false` if a notifier was already set.
    pub fn set_notifier(&self, notifier: Box<dyn Notify>) -> bool {
        self.notifier.set(notifier).is_ok()
    }

    /// The kernel-blocking form of [`Doorbell::sleep`]: announces the sleep, re-checks
    /// `has_work` (the Dekker handshake), and calls `block` only if nothing arrived. `block`
    /// must return when the notifier fires (or on its own timeout).
    pub fn sleep_with<R>(
        &self,
        has_work: impl FnOnce() -> bool,
        block: impl FnOnce() -> R,
    ) -> Option<R> {
        self.state.store(SLEEPING, Ordering::SeqCst);
        let result = if has_work() { None } else { Some(block()) };
        self.state.store(AWAKE, Ordering::SeqCst);
        result
    }

    /// Called by the owning thread when a pass found nothing: parks until woken or until
    /// `timeout` (so timers still fire), unless `has_work` says something arrived meanwhile.
    pub fn sleep(&self, timeout: Duration, has_work: impl Fn() -> bool) {
        debug_assert!(self.notifier.get().is_none(), "a notified doorbell sleeps with sleep_with");
        {
            let mut thread = self.thread.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if thread.is_none() {
                *thread = Some(std::thread::current());
            }
        }
        self.state.store(SLEEPING, Ordering::SeqCst);
        if !has_work() {
            std::thread::park_timeout(timeout);
        }
        self.state.store(AWAKE, Ordering::SeqCst);
    }

    /// Called by a producer after pushing: one load when the owner is awake (the common
    /// case under load), an unpark only when it sleeps.
    pub fn wake(&self) {
        if self.state.load(Ordering::SeqCst) == SLEEPING
            && self.state.swap(AWAKE, Ordering::SeqCst) == SLEEPING
        {
            if let Some(notifier) = self.notifier.get() {
                notifier.notify();
                return;
            }
            let thread = self.thread.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(thread) = thread.as_ref() {
                thread.unpark();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    use std::time::Instant;

    /// 2,000 round trips: the sleeper parks with a 10 s timeout, so a lost wake-up would
    /// show as a round trip near 10 s; none may take over 5 s.
    #[test]
    fn no_wake_up_is_lost() {
        let doorbell = Arc::new(Doorbell::new());
        let mailbox = Arc::new(AtomicU64::new(0));
        let (sleeper_bell, sleeper_box) = (Arc::clone(&doorbell), Arc::clone(&mailbox));
        let sleeper = std::thread::spawn(move || {
            let mut seen = 0;
            let mut slowest = Duration::ZERO;
            while seen < 2_000 {
                let started = Instant::now();
                sleeper_bell
                    .sleep(Duration::from_secs(10), || sleeper_box.load(Ordering::SeqCst) > seen);
                slowest = slowest.max(started.elapsed());
                seen = sleeper_box.load(Ordering::SeqCst);
            }
            slowest
        });
        for round in 1..=2_000 {
            while mailbox.load(Ordering::SeqCst) != round - 1 {
                std::hint::spin_loop();
            }
            std::thread::sleep(Duration::from_micros(20));
            mailbox.store(round, Ordering::SeqCst);
            doorbell.wake();
        }
        let slowest = sleeper.join().unwrap();
        assert!(slowest < Duration::from_secs(5), "a wake-up was lost: {slowest:?}");
    }
}
