//! A bounded single-producer single-consumer ring of `Copy` messages.
//!
//! Indices `head` (next slot to read, written only by the consumer) and `tail` (next slot to
//! write, written only by the producer) grow without wrapping in practice (u64) and are
//! masked to index the buffer. Invariant: `0 <= tail - head <= capacity`. Each index sits on
//! its own cache line, and each side keeps a cached copy of the other side's index, so it
//! touches the shared line only when its cached view says full (producer) or empty
//! (consumer): the Vyukov / rtrb design.
//!
//! Memory ordering: the producer writes the slot, then publishes `tail` with Release; the
//! consumer reads `tail` with Acquire before reading the slot, so it sees the slot's bytes.
//! Symmetrically the consumer publishes `head` with Release after copying a slot out, and
//! the producer reads it with Acquire before overwriting that slot.
//!
//! These orderings are model-checked with loom (`mod loom_tests` below, run by `.ci/run`
//! with `RUSTFLAGS="--cfg loom"`): under `cfg(loom)` the atomics, the `Arc` and the slot cells
//! come from loom ([`crate::sync`]), which explores every interleaving and reports any slot
//! access that is not ordered after the access it conflicts with. The ring together with the
//! doorbell that wakes its consumer is modelled in `waker.rs`.
#![allow(unsafe_code)] // The one place the runtime needs it: slots written and read across threads.

use std::mem::MaybeUninit;
use std::sync::atomic::Ordering;

use crate::sync::{Arc, AtomicU64, UnsafeCell};

/// Largest ring, in messages.
pub const RING_CAPACITY_MAX: usize = 1 << 20;

#[repr(align(128))]
struct CachePadded<T>(T);

struct Shared<T> {
    head: CachePadded<AtomicU64>,
    tail: CachePadded<AtomicU64>,
    mask: u64,
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
}

// SAFETY: the ring hands each slot to exactly one side at a time (the index protocol above),
// and `T: Send` values are moved between threads by copy.
unsafe impl<T: Copy + Send> Sync for Shared<T> {}
// SAFETY: as above; the shared state owns only `T: Send` values and atomics.
unsafe impl<T: Copy + Send> Send for Shared<T> {}

/// The writing end. Not `Clone`: exactly one producer.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    tail: u64,
    head_cached: u64,
}

/// The reading end. Not `Clone`: exactly one consumer.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    head: u64,
    tail_cached: u64,
}

impl<T> std::fmt::Debug for Producer<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Producer").field("tail", &self.tail).finish()
    }
}

impl<T> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Consumer").field("head", &self.head).finish()
    }
}

/// A ring of `capacity` (rounded up to a power of two, 2..=`RING_CAPACITY_MAX`) messages.
pub fn channel<T: Copy + Send>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    assert!((2..=RING_CAPACITY_MAX).contains(&capacity), "ring capacity {capacity}");
    let capacity = capacity.next_power_of_two();
    let slots = (0..capacity).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect();
    let shared = Arc::new(Shared {
        head: CachePadded(AtomicU64::new(0)),
        tail: CachePadded(AtomicU64::new(0)),
        mask: capacity as u64 - 1,
        slots,
    });
    (
        Producer { shared: Arc::clone(&shared), tail: 0, head_cached: 0 },
        Consumer { shared, head: 0, tail_cached: 0 },
    )
}

impl<T: Copy + Send> Producer<T> {
    fn capacity(&self) -> u64 {
        self.shared.mask + 1
    }

    /// Free slots as last seen (refreshing the consumer's index only when needed).
    fn free(&mut self, wanted: u64) -> u64 {
        let mut free = self.capacity() - (self.tail - self.head_cached);
        if free < wanted {
            self.head_cached = self.shared.head.0.load(Ordering::Acquire);
            free = self.capacity() - (self.tail - self.head_cached);
        }
        debug_assert!(free <= self.capacity());
        free
    }

    fn write(&mut self, position: u64, value: T) {
        let slot = &self.shared.slots[(position & self.shared.mask) as usize];
        slot.with_mut(|slot| {
            // SAFETY: `position` is in [tail, head + capacity): the consumer has released this
            // slot (its `head` passed it, read with Acquire) and will not read it until `tail`
            // is published past it, so the producer has exclusive access.
            unsafe { (*slot).write(value) };
        });
    }

    /// Appends one message; gives it back when the ring is full (never blocks or drops).
    pub fn push(&mut self, value: T) -> Result<(), T> {
        if self.free(1) == 0 {
            return Err(value);
        }
        self.write(self.tail, value);
        self.tail += 1;
        self.shared.tail.0.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Appends as many of `values` as fit, publishing once; returns how many.
    pub fn push_batch(&mut self, values: &[T]) -> usize {
        let count = (self.free(values.len() as u64) as usize).min(values.len());
        for (offset, value) in values[..count].iter().enumerate() {
            self.write(self.tail + offset as u64, *value);
        }
        if count > 0 {
            self.tail += count as u64;
            self.shared.tail.0.store(self.tail, Ordering::Release);
        }
        count
    }

    /// Slots free right now.
    pub fn free_len(&mut self) -> usize {
        self.free(u64::MAX) as usize
    }
}

impl<T: Copy + Send> Consumer<T> {
    fn available(&mut self, wanted: u64) -> u64 {
        let mut available = self.tail_cached - self.head;
        if available < wanted {
            self.tail_cached = self.shared.tail.0.load(Ordering::Acquire);
            available = self.tail_cached - self.head;
        }
        debug_assert!(available <= self.shared.mask + 1);
        available
    }

    fn read(&self, position: u64) -> T {
        let slot = &self.shared.slots[(position & self.shared.mask) as usize];
        slot.with(|slot| {
            // SAFETY: `position` is in [head, tail): the producer wrote the slot before
            // publishing `tail` (read here with Acquire) and will not touch it again until
            // `head` is published past it, so the slot is initialised and not being written.
            unsafe { (*slot).assume_init() }
        })
    }

    /// Takes the oldest message, if any.
    pub fn pop(&mut self) -> Option<T> {
        if self.available(1) == 0 {
            return None;
        }
        let value = self.read(self.head);
        self.head += 1;
        self.shared.head.0.store(self.head, Ordering::Release);
        Some(value)
    }

    /// Moves up to `max` messages into `out` (oldest first), publishing once; returns how
    /// many.
    pub fn pop_batch(&mut self, out: &mut Vec<T>, max: usize) -> usize {
        let count = (self.available(u64::MAX) as usize).min(max);
        for offset in 0..count {
            out.push(self.read(self.head + offset as u64));
        }
        if count > 0 {
            self.head += count as u64;
            self.shared.head.0.store(self.head, Ordering::Release);
        }
        count
    }

    /// Slots of the ring (a power of two).
    pub fn capacity(&self) -> usize {
        (self.shared.mask + 1) as usize
    }

    /// Messages waiting (a snapshot: the producer may add more at any time).
    pub fn len(&self) -> usize {
        (self.shared.tail.0.load(Ordering::Acquire) - self.head) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_full_and_batches() {
        let (mut producer, mut consumer) = channel::<u64>(4);
        for value in 0..4 {
            producer.push(value).unwrap();
        }
        assert_eq!(producer.push(99), Err(99), "a full ring gives the value back");
        assert_eq!(consumer.pop(), Some(0));
        assert_eq!(producer.push_batch(&[4, 5, 6]), 1, "only one slot was free");
        let mut out = Vec::new();
        assert_eq!(consumer.pop_batch(&mut out, 2), 2);
        assert_eq!(consumer.pop_batch(&mut out, 10), 2);
        assert_eq!(out, vec![1, 2, 3, 4]);
        assert_eq!(consumer.pop(), None);
        assert!(consumer.is_empty());
    }

    #[test]
    fn many_laps_across_threads_keep_order() {
        let (mut producer, mut consumer) = channel::<u64>(64);
        const COUNT: u64 = 1_000_000;
        let writer = std::thread::spawn(move || {
            let mut next = 0;
            while next < COUNT {
                let batch: Vec<u64> = (next..(next + 7).min(COUNT)).collect();
                next += producer.push_batch(&batch) as u64;
                std::hint::spin_loop();
            }
        });
        let mut expected = 0;
        let mut out = Vec::new();
        while expected < COUNT {
            out.clear();
            consumer.pop_batch(&mut out, 13);
            for value in &out {
                assert_eq!(*value, expected);
                expected += 1;
            }
        }
        writer.join().unwrap();
        assert_eq!(consumer.pop(), None);
    }
}

/// Loom model checks of the ring's memory orderings: every interleaving of one producer and
/// one consumer, with loom reporting any slot read or write that
/// is not ordered after the conflicting access by the ring's Acquire/Release pairs. Three
/// messages through a two-slot ring make the producer wait for a full ring and reuse a slot
/// the consumer released, so both directions of the index protocol are exercised.
///
/// `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release -p rush-engine --lib loom_tests`
#[cfg(all(test, loom))]
mod loom_tests {
    use super::channel;
    use loom::thread;

    const VALUES: [u64; 3] = [0x1111, 0x2222, 0x3333];

    /// Explores every interleaving: with no preemption bound these models are exhaustive
    /// and still take well under a second in release mode (about 20,000 executions for the
    /// single-message model, 500 for the batch one). `LOOM_LOG=info` traces them.
    fn model(body: impl Fn() + Sync + Send + 'static) {
        loom::model(body);
    }

    #[test]
    fn push_pop_keeps_fifo_across_a_full_ring() {
        model(|| {
            let (mut producer, mut consumer) = channel::<u64>(2);
            let writer = thread::spawn(move || {
                for value in VALUES {
                    let mut pending = value;
                    while let Err(back) = producer.push(pending) {
                        pending = back;
                        thread::yield_now();
                    }
                }
            });
            let mut received = Vec::new();
            while received.len() < VALUES.len() {
                match consumer.pop() {
                    Some(value) => received.push(value),
                    None => thread::yield_now(),
                }
            }
            writer.join().unwrap();
            assert_eq!(received, VALUES);
            assert_eq!(consumer.pop(), None);
        });
    }

    #[test]
    fn batches_keep_fifo_across_a_full_ring() {
        model(|| {
            let (mut producer, mut consumer) = channel::<u64>(2);
            let writer = thread::spawn(move || {
                let mut sent = 0;
                while sent < VALUES.len() {
                    let pushed = producer.push_batch(&VALUES[sent..]);
                    if pushed == 0 {
                        thread::yield_now();
                    }
                    sent += pushed;
                }
            });
            let mut received = Vec::new();
            while received.len() < VALUES.len() {
                if consumer.pop_batch(&mut received, 2) == 0 {
                    thread::yield_now();
                }
            }
            writer.join().unwrap();
            assert_eq!(received, VALUES);
            assert!(consumer.is_empty());
        });
    }
}
