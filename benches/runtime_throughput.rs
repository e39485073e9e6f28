//! The threaded runtime without any network: one driver thread submits RESERVEs through a
//! port to pinned shard threads.
//!
//! Run: `cargo bench --bench runtime_throughput` (add `-- --quick` for a smoke run).
//!
//! - closed loop: the driver keeps `WINDOW` requests in flight and measures completions per
//!   second, for 1 and 2 shards, on two workloads (a hot SKU with ample stock: successes;
//!   a hot SKU with 1,000 units and a million buyers: mostly sold out);
//! - open loop: requests are issued at a fixed offered rate and each latency is measured from
//!   its *intended* start (so a stall is charged to every request it delays, no coordinated
//!   omission), recorded in an HdrHistogram with 3 significant digits.
//!
//! The machine has 2 cores: with 2 shards the driver shares a core with a shard, which the
//! numbers include.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rush_engine::runtime::{Completion, Port, Runtime, RuntimeConfig, Submission};
use rush_engine::*;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WINDOW: usize = 4096;

fn config(reserves: u64) -> Config {
    let reservation_max = (reserves + 1_000).min(4_000_000) as u32;
    Config {
        sku_max: 16,
        account_max: reservation_max,
        reservation_max,
        waitlist_max: 65_536,
        request_key_max: reservation_max * 2,
        request_key_retention_ms: 3_600_000,
        limit_entry_max: 1_024,
        quantity_max: 8,
        hold_ms_default: 600_000,
        hold_ms_max: 1_800_000,
        wait_ms_max: 60_000,
    }
}

fn start(shard_count: u32, reserves: u64, units: u64) -> (Runtime, Port) {
    let (runtime, mut ports) = Runtime::start(RuntimeConfig {
        shard_count,
        engine: config(reserves),
        port_count: 1,
        ring_capacity: 8192,
        pin: true,
        idle_spin_us: 0,
    })
    .expect("runtime");
    let mut port = ports.pop().expect("one port");
    let spec = SkuSpec {
        sku: 1,
        stock_total: units,
        price: 0,
        per_user_limit: 0,
        hold_ms: 0,
        start_ms: 0,
        end_ms: 0,
    };
    let request = Request::PutSku(spec);
    let shard = port.shard_for(&request);
    port.submit(shard, Submission { tag: 0, request }).expect("empty ring");
    let mut out = Vec::new();
    while port.poll(&mut out) == 0 {
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(20)); // the definition reaches every shard
    (runtime, port)
}

fn reserve(index: u64) -> Request {
    Request::Reserve(Reserve {
        account: index + 1,
        sku: 1,
        quantity: 1,
        key: 1,
        flags: 0,
        hold_ms: 0,
        wait_ms: 0,
    })
}

/// Completions per second with `WINDOW` in flight; returns (ops/s, ok count).
fn closed_loop(shard_count: u32, reserves: u64, units: u64) -> (f64, u64) {
    let (runtime, mut port) = start(shard_count, reserves, units);
    let mut completions: Vec<Completion> = Vec::with_capacity(WINDOW);
    let (mut sent, mut done, mut ok) = (0_u64, 0_u64, 0_u64);
    let started = Instant::now();
    while done < reserves {
        while sent < reserves && sent - done < WINDOW as u64 {
            let request = reserve(sent);
            let shard = port.shard_for(&request);
            if port.submit(shard, Submission { tag: sent, request }).is_err() {
                break;
            }
            sent += 1;
        }
        completions.clear();
        done += port.poll(&mut completions) as u64;
        ok += completions.iter().filter(|c| c.reply.result == ResultCode::Ok).count() as u64;
    }
    let elapsed = started.elapsed();
    let engines = runtime.stop();
    for engine in &engines {
        engine.check_invariants().expect("invariants hold after the run");
    }
    (reserves as f64 / elapsed.as_secs_f64(), ok)
}

/// Offered load at `rate_per_second` for `count` requests; latency from intended start.
fn open_loop(shard_count: u32, rate_per_second: u64, count: u64, units: u64) -> Histogram<u64> {
    let (runtime, mut port) = start(shard_count, count, units);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    let interval_ns = 1_000_000_000 / rate_per_second;
    let mut intended: Vec<u64> = vec![0; count as usize];
    let mut completions: Vec<Completion> = Vec::with_capacity(WINDOW);
    let (mut sent, mut done) = (0_u64, 0_u64);
    let started = Instant::now();
    while done < count {
        let now_ns = started.elapsed().as_nanos() as u64;
        while sent < count && sent * interval_ns <= now_ns {
            let request = reserve(sent);
            let shard = port.shard_for(&request);
            intended[sent as usize] = sent * interval_ns;
            if port.submit(shard, Submission { tag: sent, request }).is_err() {
                break; // full: the delay counts against these requests' intended starts
            }
            sent += 1;
        }
        completions.clear();
        if port.poll(&mut completions) > 0 {
            let now_ns = started.elapsed().as_nanos() as u64;
            for completion in &completions {
                let latency_ns = now_ns.saturating_sub(intended[completion.tag as usize]);
                histogram.record(latency_ns.max(1)).expect("in bounds");
            }
            done += completions.len() as u64;
        }
    }
    runtime.stop();
    histogram
}

fn main() {
    let quick = std::env::args().any(|argument| argument == "--quick");
    let reserves: u64 = if quick { 200_000 } else { 2_000_000 };
    println!("| closed loop | shards | requests | ops/s | OK |");
    println!("|---|---:|---:|---:|---:|");
    for shard_count in [1_u32, 2] {
        for (name, units) in [("ample stock", reserves), ("1,000 units, sold out", 1_000)] {
            let (rate, ok) = closed_loop(shard_count, reserves, units);
            println!("| {name} | {shard_count} | {reserves} | {:.2} M | {ok} |", rate / 1e6);
        }
    }
    println!();
    println!("| open loop, 1,000 units (sold out) | shards | offered ops/s | p50 µs | p90 µs | p99 µs | p99.9 µs | p99.99 µs | max µs |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let rates: &[u64] = if quick { &[200_000] } else { &[500_000, 1_000_000, 2_000_000] };
    for shard_count in [1_u32, 2] {
        for &rate in rates {
            let count = if quick { rate / 2 } else { rate * 3 };
            let histogram = open_loop(shard_count, rate, count, 1_000);
            let micros = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1_000.0;
            println!(
                "| hot SKU | {shard_count} | {rate} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                micros(0.5),
                micros(0.9),
                micros(0.99),
                micros(0.999),
                micros(0.9999),
                histogram.max() as f64 / 1_000.0
            );
        }
    }
}
