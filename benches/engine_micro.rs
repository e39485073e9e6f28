//! Engine micro-benchmarks: one engine on one thread, no network, no runtime.
//!
//! Run: `cargo bench --bench engine_micro` (add `-- --quick` for a short smoke run).
//! Prints a Markdown table of ns/op and ops/s (best of several rounds, so noise from the
//! shared machine inflates nothing but the worst rounds) and the memory per table entry.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use mimalloc::MiMalloc;
use rush_engine::*;

/// mimalloc, counting live bytes so the memory report measures real allocations.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to MiMalloc with the caller's arguments unchanged, so the
// GlobalAlloc contract is MiMalloc's; the counter is only arithmetic on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged; `ptr` came from `alloc` with this layout.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged; `ptr` came from this allocator with `layout`.
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const HOT_SKU: SkuId = 1;
const START_MS: u64 = 1_767_225_600_000;

fn config(reservations: u32) -> Config {
    Config {
        sku_max: 16,
        account_max: 1 << 20,
        reservation_max: reservations,
        waitlist_max: 1024,
        request_key_max: reservations * 2,
        request_key_retention_ms: 24 * 3600 * 1000,
        limit_entry_max: 1 << 10,
        quantity_max: 1000,
        hold_ms_default: 60_000,
        hold_ms_max: 3600 * 1000,
        wait_ms_max: 60_000,
    }
}

fn engine_with_stock(reservations: u32, stock: u64) -> Engine {
    let mut engine = Engine::new(config(reservations)).expect("valid config");
    let reply = engine.execute(
        START_MS,
        &Request::PutSku(SkuSpec {
            sku: HOT_SKU,
            stock_total: stock,
            price: 4999,
            per_user_limit: 0,
            hold_ms: 0,
            start_ms: 0,
            end_ms: 0,
        }),
    );
    assert_eq!(reply.result, ResultCode::Ok);
    engine
}

fn reserve(account: u64, key: u64) -> Request {
    Request::Reserve(Reserve {
        account,
        sku: HOT_SKU,
        quantity: 1,
        key,
        flags: 0,
        hold_ms: 0,
        wait_ms: 0,
    })
}

struct Measurement {
    name: &'static str,
    operations: u64,
    best_ns: f64,
    median_ns: f64,
}

/// Runs `round` (which returns the operations it timed and their nanoseconds) `rounds`
/// times and keeps the best and median ns/op.
fn measure(
    name: &'static str,
    rounds: usize,
    mut round: impl FnMut() -> (u64, u128),
) -> Measurement {
    let mut per_op = Vec::with_capacity(rounds);
    let mut operations = 0;
    for _ in 0..rounds {
        let (count, nanos) = round();
        operations = count;
        per_op.push(nanos as f64 / count as f64);
    }
    per_op.sort_by(|a, b| a.total_cmp(b));
    Measurement { name, operations, best_ns: per_op[0], median_ns: per_op[per_op.len() / 2] }
}

/// Applies `requests` one at a time (`batch_size == 1`) or with `execute_batch`, and returns
/// the nanoseconds taken. Every reply must be `expected`.
fn run(engine: &mut Engine, requests: &[Request], batch_size: usize, expected: ResultCode) -> u128 {
    let mut replies = Vec::with_capacity(batch_size);
    let start = Instant::now();
    if batch_size == 1 {
        for request in requests {
            let reply = engine.execute(START_MS, request);
            debug_assert_eq!(reply.result, expected);
            black_box(reply);
        }
    } else {
        for chunk in requests.chunks(batch_size) {
            replies.clear();
            engine.execute_batch(START_MS, chunk, &mut replies);
            debug_assert!(replies.iter().all(|reply| reply.result == expected));
            black_box(&replies);
        }
    }
    start.elapsed().as_nanos()
}

fn main() {
    let quick = std::env::args().any(|argument| argument == "--quick");
    let batch: u32 = if quick { 100_000 } else { 1_000_000 };
    let rounds = if quick { 2 } else { 7 };
    let mut results = Vec::new();

    // Successful RESERVE: distinct buyers, ample stock. Each one creates a hold, arms its
    // timer and records its request key. One at a time, then in batches of 32 (what a shard
    // loop hands the engine per pass), which lets the engine overlap the key-table misses.
    for (name, batch_size) in [("RESERVE ok (hold)", 1), ("RESERVE ok (hold), batches of 32", 32)] {
        results.push(measure(name, rounds, || {
            let mut engine = engine_with_stock(batch, u64::from(batch));
            let requests: Vec<Request> =
                (0..u64::from(batch)).map(|index| reserve(index + 1, index + 1)).collect();
            let nanos = run(&mut engine, &requests, batch_size, ResultCode::Ok);
            assert_eq!(engine.live_reservations(), batch);
            (u64::from(batch), nanos)
        }));
    }

    // Sold-out RESERVE: the flash-sale common case once stock is gone. Each buyer is new, so
    // each request misses the key table, then is refused on stock.
    let sold_out_batch = u64::from(batch) * 10;
    results.push(measure("RESERVE sold out", rounds, || {
        let mut engine = engine_with_stock(1024, 0);
        let start = Instant::now();
        for index in 0..sold_out_batch {
            let reply = engine.execute(START_MS, &reserve(index + 1, index + 1));
            debug_assert_eq!(reply.result, ResultCode::SoldOut);
            black_box(reply);
        }
        let nanos = start.elapsed().as_nanos();
        assert_eq!(engine.counters().results[ResultCode::SoldOut as usize], sold_out_batch);
        (sold_out_batch, nanos)
    }));

    // CONFIRM and CANCEL of existing holds, by reservation id, each with its own new key.
    for (name, is_confirm, batch_size) in [
        ("CONFIRM", true, 1),
        ("CONFIRM, batches of 32", true, 32),
        ("CANCEL", false, 1),
        ("CANCEL, batches of 32", false, 32),
    ] {
        results.push(measure(name, rounds, || {
            let mut engine = engine_with_stock(batch, u64::from(batch));
            let mut requests = Vec::with_capacity(batch as usize);
            for index in 0..u64::from(batch) {
                let account = index + 1;
                let reply = engine.execute(START_MS, &reserve(account, account));
                let target = Target::Reservation(reply.reservation().expect("a hold").reservation);
                let key = u64::MAX - index;
                requests.push(if is_confirm {
                    Request::Confirm { account, target, key }
                } else {
                    Request::Cancel { account, target, key }
                });
            }
            let nanos = run(&mut engine, &requests, batch_size, ResultCode::Ok);
            assert_eq!(engine.live_reservations(), 0);
            (u64::from(batch), nanos)
        }));
    }

    // Expiry of a large batch: every hold expires in one tick (holds spread over 1,000 ms so
    // the wheel cascades through several levels).
    results.push(measure("expiry (batch tick)", rounds, || {
        let mut engine = engine_with_stock(batch, u64::from(batch));
        for index in 0..u64::from(batch) {
            let mut request = reserve(index + 1, index + 1);
            if let Request::Reserve(reserve) = &mut request {
                reserve.hold_ms = 60_000 + (index % 1000) as u32;
            }
            engine.execute(START_MS, &request);
        }
        let start = Instant::now();
        engine.tick(START_MS + 61_000);
        let nanos = start.elapsed().as_nanos();
        assert_eq!(engine.live_reservations(), 0);
        assert_eq!(engine.counters().holds_expired, u64::from(batch));
        (u64::from(batch), nanos)
    }));

    println!("| operation | ops timed | best ns/op | median ns/op | best ops/s |");
    println!("|---|---:|---:|---:|---:|");
    for result in &results {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.2} M |",
            result.name,
            result.operations,
            result.best_ns,
            result.median_ns,
            1_000.0 / result.best_ns
        );
    }

    // Memory: bytes the engine allocates per unit of each table's capacity, measured as the
    // allocator's live-byte delta of `Engine::new` and split by the engine's own table sizes.
    let capacity = config(batch);
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let engine = Engine::new(capacity).expect("valid config");
    let measured = LIVE_BYTES.load(Ordering::Relaxed) - before;
    let tables = engine.table_bytes();
    let table_sum: usize = tables.iter().map(|(_, bytes)| bytes).sum();
    println!();
    println!(
        "Engine::new allocated {measured} bytes (tables account for {table_sum}) with \
         sku_max {}, account_max {}, reservation_max {}, request_key_max {}, limit_entry_max {}",
        capacity.sku_max,
        capacity.account_max,
        capacity.reservation_max,
        capacity.request_key_max,
        capacity.limit_entry_max
    );
    println!();
    println!("| table | bytes per entry of capacity |");
    println!("|---|---:|");
    let per_unit = [
        capacity.sku_max,
        capacity.account_max,
        capacity.reservation_max,
        capacity.request_key_max,
        capacity.limit_entry_max,
    ];
    for ((name, bytes), units) in tables.iter().zip(per_unit) {
        println!("| {name} | {:.1} |", *bytes as f64 / f64::from(units));
    }
    black_box(engine);
}
