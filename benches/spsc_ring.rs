//! The hand-rolled SPSC ring (`engine/src/runtime/ring.rs`) against crossbeam-queue's
//! bounded MPMC `ArrayQueue`, the crate the runtime would otherwise use, moving 64-byte
//! messages (the size of a shard's mail) from one thread to another.
//!
//! Run: `cargo bench --bench spsc_ring` (add `-- --quick` for a smoke run).
//!
//! Producer pinned to core 0, consumer to core 1, 4,096 slots. Three ways: the ring with one
//! index publication per batch of 64 (how the shards use it), the ring one message at a
//! time, and `ArrayQueue` one message at a time (it has no batch operation). Each figure is
//! the best of 5 rounds, in millions of messages per second.

use std::time::Instant;

use crossbeam_queue::ArrayQueue;
use rush_runtime::ring::channel;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Copy)]
#[repr(align(64))]
struct Message([u64; 8]);

const CAPACITY: usize = 4096;

/// The core list, read once before any thread is pinned: a pinned thread's children
/// inherit its one-core mask, and would read a list of one.
static CORES: std::sync::OnceLock<Vec<core_affinity::CoreId>> = std::sync::OnceLock::new();

fn pin(core: usize) {
    let cores = CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default());
    if let Some(id) = cores.get(core % cores.len().max(1)) {
        core_affinity::set_for_current(*id);
    }
}

fn ring(count: u64, batch: usize) -> f64 {
    let (mut producer, mut consumer) = channel::<Message>(CAPACITY);
    let started = Instant::now();
    let writer = std::thread::spawn(move || {
        pin(0);
        let mut sent = 0_u64;
        let mut buffer = Vec::with_capacity(batch);
        while sent < count {
            buffer.clear();
            let size = (batch as u64).min(count - sent);
            buffer.extend((0..size).map(|offset| Message([sent + offset; 8])));
            let mut done = 0;
            while done < buffer.len() {
                done += producer.push_batch(&buffer[done..]);
            }
            sent += size;
        }
    });
    pin(1);
    let mut received = 0_u64;
    let mut out = Vec::with_capacity(batch);
    while received < count {
        out.clear();
        consumer.pop_batch(&mut out, batch);
        for message in &out {
            assert_eq!(message.0[0], received, "FIFO");
            received += 1;
        }
    }
    writer.join().unwrap();
    count as f64 / started.elapsed().as_secs_f64() / 1e6
}

fn array_queue(count: u64) -> f64 {
    let queue = std::sync::Arc::new(ArrayQueue::<Message>::new(CAPACITY));
    let producer = std::sync::Arc::clone(&queue);
    let started = Instant::now();
    let writer = std::thread::spawn(move || {
        pin(0);
        for value in 0..count {
            let mut message = Message([value; 8]);
            while let Err(back) = producer.push(message) {
                message = back;
                std::hint::spin_loop();
            }
        }
    });
    pin(1);
    let mut received = 0_u64;
    while received < count {
        if let Some(message) = queue.pop() {
            assert_eq!(message.0[0], received, "FIFO");
            received += 1;
        }
    }
    writer.join().unwrap();
    count as f64 / started.elapsed().as_secs_f64() / 1e6
}

fn best(mut run: impl FnMut() -> f64, rounds: usize) -> f64 {
    (0..rounds).map(|_| run()).fold(0.0, f64::max)
}

fn main() {
    let quick = std::env::args().any(|argument| argument == "--quick");
    let (count, rounds) = if quick { (200_000, 1) } else { (10_000_000, 5) };
    CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default());
    let batched = best(|| ring(count, 64), rounds);
    let single = best(|| ring(count, 1), rounds);
    let crossbeam = best(|| array_queue(count), rounds);
    println!("64-byte messages, one producer thread, one consumer thread, {count} per round");
    println!();
    println!("| queue | M msgs/s | vs ArrayQueue |");
    println!("|---|---:|---:|");
    println!("| rush ring, batches of 64 | {batched:.1} | {:.2}× |", batched / crossbeam);
    println!("| rush ring, one at a time | {single:.1} | {:.2}× |", single / crossbeam);
    println!("| crossbeam ArrayQueue, one at a time | {crossbeam:.1} | 1.00× |");
}
