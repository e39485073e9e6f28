//! A doorbell: a shard sleeps when idle and is woken only if it is asleep.
//!
//! The race to avoid is the lost wake-up: a producer pushes just after the consumer looked
//! at its rings and just before it blocks. The doorbell is one atomic word, and every access
//! to it is a read-modify-write, so all of them are totally ordered (the word's modification
//! order) and each one reads the one before it:
//!
//! ```text
//!   producer (a peer, a port)                consumer (the shard)
//!   ring.tail = t + 1     (Release, push)    idle pass: prev = swap(SLEEPING)   (AcqRel)
//!   prev = swap(RUNG)     (AcqRel)             prev == RUNG: someone rang since we last
//!   prev == SLEEPING: notify                     looked; do not block, run a pass
//!                                              else: block until notified
//!                                            after waking: swap(AWAKE)          (AcqRel)
//! ```
//!
//! Take a producer's swap `p` and the consumer's swap `s` that announces a sleep. If `p`
//! comes after `s`, it reads SLEEPING (or the SLEEPING of a later announce) and notifies. If
//! `p` comes before `s`, then `s` (or the consumer's AWAKE swap after an earlier sleep, if
//! `p` came before that) reads the RUNG that `p` or a later producer wrote: a read from a
//! chain of RMWs synchronizes with every release in it, so the consumer's next pass sees the
//! ring's tail that `p`'s producer stored before ringing. Either way no message waits in a
//! ring while its shard sleeps. The cost: a producer does one RMW per ring (`lock xchg`), and
//! a shard rung during a pass runs one more pass before it sleeps.
//!
//! **Why one word (a fixed bug).** The first version stored SLEEPING and loaded the state
//! with `SeqCst` on the atomics themselves, while `push` publishes the tail with a `Release`
//! store: the classic store-then-load handshake across two locations (Dekker). A Release
//! store followed by a SeqCst load of another location is not ordered (on x86 the load
//! passes the store in the store buffer), so the producer could read AWAKE while the
//! consumer read the old tail: the shard slept with a message in its ring until its park
//! timeout. The loom model below finds that interleaving in the old protocol
//! (`two_location_handshake_loses_a_wake_up`) and none in this one. (The two-location
//! handshake can be repaired with a `fence(SeqCst)` on each side, and is then correct under
//! the C++ model; but loom 0.7 reports a spurious lost wake-up for the fenced version once the
//! producer's access is an RMW, so it could not be checked. The single-word protocol needs
//! no fence and loom models its orderings exactly.)
//!
//! How the sleeper blocks and is woken is its loop's business: it installs a [`Notify`] with
//! [`Doorbell::set_notifier`] (an eventfd write for a shard that sleeps in `io_uring_enter`
//! or `epoll_wait`, a thread unpark for one that parks on a futex) and sleeps with
//! [`Doorbell::announce_sleep`] or [`Doorbell::sleep_with`].

use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::thread::Thread;

use crate::sync::AtomicU32;

/// The owner runs, and nobody rang since it last looked.
const AWAKE: u32 = 0;
/// The owner announced a sleep: a producer that reads this notifies it.
const SLEEPING: u32 = 1;
/// A producer pushed since the owner last looked.
const RUNG: u32 = 2;

/// How a producer wakes a sleeping shard: for example a write to an eventfd that the
/// shard's io_uring or epoll instance watches, or an unpark of its thread.
pub trait Notify: Send + Sync {
    fn notify(&self);
}

/// Wakes a thread that parks (`std::thread::park_timeout`).
#[derive(Debug)]
pub struct ThreadNotify(pub Thread);

impl Notify for ThreadNotify {
    fn notify(&self) {
        self.0.unpark();
    }
}

/// One per shard; producers hold an `Arc` of it.
pub struct Doorbell {
    state: AtomicU32,
    /// Set once, by the owning thread before its first sleep.
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
        Doorbell { state: AtomicU32::new(AWAKE), notifier: OnceLock::new() }
    }

    /// Routes wake-ups to `notifier`. Call once, from the owning thread, before its first
    /// sleep; `false` if a notifier was already set.
    pub fn set_notifier(&self, notifier: Box<dyn Notify>) -> bool {
        self.notifier.set(notifier).is_ok()
    }

    /// Called by the owning thread when a pass found nothing to do: announces the sleep.
    /// `None` when a producer rang since the owner last looked (run another pass instead).
    /// Otherwise the caller may re-check its rings (cheap, optional: the protocol does not
    /// need it) and block until notified; dropping the guard ends the sleep.
    pub fn announce_sleep(&self) -> Option<SleepGuard<'_>> {
        assert!(self.notifier.get().is_some(), "a doorbell sleeps only with a notifier");
        if self.state.swap(SLEEPING, Ordering::AcqRel) == RUNG {
            self.state.swap(AWAKE, Ordering::AcqRel);
            return None;
        }
        Some(SleepGuard { doorbell: self })
    }

    /// [`Doorbell::announce_sleep`], a re-check with `has_work`, and `block` only if
    /// nothing arrived. `block` must return when the notifier fires (or on its own timeout).
    /// Returns `None` when it did not block.
    pub fn sleep_with<R>(
        &self,
        has_work: impl FnOnce() -> bool,
        block: impl FnOnce() -> R,
    ) -> Option<R> {
        let _sleeping = self.announce_sleep()?;
        if has_work() {
            None
        } else {
            Some(block())
        }
    }

    /// Called by a producer **after** publishing its message (the ring's tail): one RMW, and
    /// a notification only when the owner sleeps (only the producer whose swap reads
    /// SLEEPING notifies, so one sleep gets one notification).
    pub fn wake(&self) {
        if self.state.swap(RUNG, Ordering::AcqRel) == SLEEPING {
            if let Some(notifier) = self.notifier.get() {
                notifier.notify();
            }
        }
    }
}

/// An announced sleep; dropping it marks the owner awake again, acquiring whatever the
/// producers that rang meanwhile published.
#[derive(Debug)]
pub struct SleepGuard<'a> {
    doorbell: &'a Doorbell,
}

impl Drop for SleepGuard<'_> {
    fn drop(&mut self) {
        self.doorbell.state.swap(AWAKE, Ordering::AcqRel);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// 2,000 round trips: the sleeper parks with a 10 s timeout, so a lost wake-up would
    /// show as a round trip near 10 s; none may take over 5 s.
    #[test]
    fn no_wake_up_is_lost() {
        let doorbell = Arc::new(Doorbell::new());
        let mailbox = Arc::new(AtomicU64::new(0));
        let (sleeper_bell, sleeper_box) = (Arc::clone(&doorbell), Arc::clone(&mailbox));
        let (registered_sender, registered) = std::sync::mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            assert!(sleeper_bell.set_notifier(Box::new(ThreadNotify(std::thread::current()))));
            registered_sender.send(()).unwrap();
            let mut seen = 0;
            let mut slowest = Duration::ZERO;
            while seen < 2_000 {
                let started = Instant::now();
                sleeper_bell.sleep_with(
                    || sleeper_box.load(Ordering::SeqCst) > seen,
                    || std::thread::park_timeout(Duration::from_secs(10)),
                );
                slowest = slowest.max(started.elapsed());
                seen = sleeper_box.load(Ordering::SeqCst);
            }
            slowest
        });
        registered.recv().unwrap();
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

/// Loom model checks of the doorbell together with the ring it guards: one producer pushes
/// messages and rings; the consumer drains, announces its sleep, re-checks the ring and
/// parks (a real loom park: a lost wake-up leaves it parked forever, which loom reports as a
/// deadlock). Every interleaving and every weak-memory outcome loom models is explored.
///
/// `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release -p rush-runtime --lib loom_tests`
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::ring::{channel, Consumer};
    use loom::sync::atomic::AtomicU32 as LoomAtomicU32;
    use loom::sync::Arc;
    use loom::thread;

    const MESSAGES: [u64; 2] = [0x1111, 0x2222];

    struct LoomNotify(thread::Thread);

    impl Notify for LoomNotify {
        fn notify(&self) {
            self.0.unpark();
        }
    }

    /// The consumer side of a shard loop reduced to its handshake: drain, then sleep with a
    /// re-check of the ring, until every message arrived.
    fn consume(consumer: &mut Consumer<u64>, sleep: impl Fn(&Consumer<u64>)) -> Vec<u64> {
        let mut received = Vec::new();
        loop {
            while let Some(value) = consumer.pop() {
                received.push(value);
            }
            if received.len() == MESSAGES.len() {
                return received;
            }
            sleep(consumer);
        }
    }

    #[test]
    fn ring_and_doorbell_never_lose_a_wake_up() {
        loom::model(|| {
            let (mut producer, mut consumer) = channel::<u64>(2);
            let doorbell = Arc::new(Doorbell::new());
            // The shard (this thread) installs its notifier before any producer runs.
            assert!(doorbell.set_notifier(Box::new(LoomNotify(thread::current()))));
            let producer_bell = Arc::clone(&doorbell);
            let peer = thread::spawn(move || {
                for value in MESSAGES {
                    producer.push(value).expect("the ring holds every message");
                    producer_bell.wake();
                }
            });
            let received = consume(&mut consumer, |consumer| {
                doorbell.sleep_with(|| !consumer.is_empty(), thread::park);
            });
            peer.join().unwrap();
            assert_eq!(received, MESSAGES);
        });
    }

    /// Two producers (say a peer shard and a client port), each with its own ring, ring the
    /// same doorbell: only the one whose swap reads SLEEPING notifies, and the consumer still
    /// misses nothing.
    #[test]
    fn two_producers_share_one_doorbell() {
        loom::model(|| {
            let doorbell = Arc::new(Doorbell::new());
            assert!(doorbell.set_notifier(Box::new(LoomNotify(thread::current()))));
            let mut consumers = Vec::new();
            let mut peers = Vec::new();
            for value in MESSAGES {
                let (mut producer, consumer) = channel::<u64>(2);
                consumers.push(consumer);
                let producer_bell = Arc::clone(&doorbell);
                peers.push(thread::spawn(move || {
                    producer.push(value).expect("room");
                    producer_bell.wake();
                }));
            }
            let mut received = Vec::new();
            while received.len() < MESSAGES.len() {
                for consumer in &mut consumers {
                    while let Some(value) = consumer.pop() {
                        received.push(value);
                    }
                }
                if received.len() < MESSAGES.len() {
                    doorbell.sleep_with(|| consumers.iter().any(|c| !c.is_empty()), thread::park);
                }
            }
            for peer in peers {
                peer.join().unwrap();
            }
            received.sort_unstable();
            assert_eq!(received, MESSAGES);
        });
    }

    /// The first version's handshake: SeqCst on the state's own store and load, across two
    /// locations (the state and the ring's tail, published with Release). Loom must find the interleaving in
    /// which the producer reads AWAKE while the consumer reads the old tail and parks for
    /// good (reported as a deadlock, a panic out of `loom::model`).
    #[test]
    fn two_location_handshake_loses_a_wake_up() {
        let outcome = std::panic::catch_unwind(|| {
            loom::model(|| {
                let (mut producer, mut consumer) = channel::<u64>(2);
                let state = Arc::new(LoomAtomicU32::new(AWAKE));
                let producer_state = Arc::clone(&state);
                let sleeper = thread::current();
                let peer = thread::spawn(move || {
                    for value in MESSAGES {
                        producer.push(value).expect("the ring holds every message");
                        if producer_state.load(Ordering::SeqCst) == SLEEPING
                            && producer_state.swap(AWAKE, Ordering::SeqCst) == SLEEPING
                        {
                            sleeper.unpark();
                        }
                    }
                });
                consume(&mut consumer, |consumer| {
                    state.store(SLEEPING, Ordering::SeqCst);
                    if consumer.is_empty() {
                        thread::park();
                    }
                    state.store(AWAKE, Ordering::SeqCst);
                });
                peer.join().unwrap();
            });
        });
        assert!(outcome.is_err(), "loom found no lost wake-up in the two-location handshake");
    }
}
