//! Round trips over TCP loopback, against the floor of a bare echo server measured in the
//! same run.
//!
//! Run: `cargo bench --bench net_roundtrip` (add `-- --quick` for a smoke run).
//!
//! - the echo floor: a blocking thread that reads 64-byte frames and writes them back (both
//!   sides sleep in the kernel between messages, like the server's idle shard);
//! - PING on one connection, one request at a time: the network layer's own cost;
//! - RESERVE on one connection, one at a time: PING plus the engine (ample stock);
//! - pipelined throughput on one connection (PING, RESERVE), 64 requests in flight;
//!
//! each for the io_uring and the epoll backend, and io_uring with a 50 µs spin before the
//! shard sleeps (`--idle-spin-us`). One shard, pinned to core 0; the client thread runs on
//! core 1. Latencies go to an HdrHistogram (3 significant digits).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rush_engine::*;
use rush_net::protocol::encode_request;
use rush_net::server::{Backend, BackendChoice, ConnLimits, Server, ServerConfig, ShardPorts};
use rush_runtime::RuntimeConfig;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SKU: u64 = 1;

fn engine_config(reserves: u64) -> Config {
    let reservation_max = (reserves + 1_000) as u32;
    Config {
        sku_max: 16,
        account_max: 1_024,
        reservation_max,
        waitlist_max: 1_024,
        request_key_max: reservation_max,
        request_key_retention_ms: 3_600_000,
        limit_entry_max: 1_024,
        quantity_max: 8,
        hold_ms_default: 600_000,
        hold_ms_max: 1_800_000,
        wait_ms_max: 60_000,
    }
}

fn start_server(backend: BackendChoice, reserves: u64, idle_spin_us: u64) -> Server {
    Server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: None,
        shard_ports: ShardPorts::Off,
        runtime: RuntimeConfig {
            shard_count: 1,
            engine: engine_config(reserves),
            port_count: 0,
            ring_capacity: 4096,
            pin: true,
            idle_spin_us,
            idle_park_max_ms: rush_runtime::shard::IDLE_PARK_MAX_MS_DEFAULT,
            parked_max: rush_runtime::shard::PARKED_MAX_DEFAULT,
        },
        limits: ConnLimits::default(),
        backend,
        prewarm: vec![Request::PutSku(SkuSpec {
            sku: SKU,
            stock_total: reserves * 2 + 10,
            price: 0,
            per_user_limit: 0,
            hold_ms: 0,
            start_ms: 0,
            end_ms: 0,
        })],
        capture: None,
        durability: rush_runtime::journal::Durability::None,
        data_dir: None,
        journal: rush_runtime::journal::JournalOptions::default(),
    })
    .expect("server")
}

/// A bare echo server: the floor of any request/response over loopback TCP.
fn start_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        pin(0);
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            stream.set_nodelay(true).unwrap();
            std::thread::spawn(move || {
                pin(0);
                let mut buffer = [0_u8; 64 * 64];
                loop {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => return,
                        Ok(count) => {
                            if stream.write_all(&buffer[..count]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    address
}

/// The core list, read once before any thread is pinned: a pinned thread (and every thread
/// it spawns) sees only its own core in the list. `Server::start` reads the list too, so the
/// main thread, which starts the servers, is never pinned.
static CORES: std::sync::OnceLock<Vec<core_affinity::CoreId>> = std::sync::OnceLock::new();

fn pin(core: usize) {
    let cores = CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default());
    if let Some(id) = cores.get(core % cores.len().max(1)) {
        core_affinity::set_for_current(*id);
    }
}

/// Runs `work` on a thread pinned to core 1 (the client's core).
fn on_client_core<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                pin(1);
                work()
            })
            .join()
            .expect("client thread")
    })
}

fn request(kind: &str, index: u64) -> Request {
    match kind {
        "ping" => Request::Ping,
        _ => Request::Reserve(Reserve {
            account: 1 + index % 1_000,
            sku: SKU,
            quantity: 1,
            key: 1 + index / 1_000,
            flags: 0,
            hold_ms: 0,
            wait_ms: 0,
        }),
    }
}

/// One request at a time: each latency is one round trip.
fn round_trips(address: SocketAddr, kind: &str, count: u64) -> Histogram<u64> {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut histogram = Histogram::<u64>::new(3).unwrap();
    let mut frame = Vec::with_capacity(64);
    let mut answer = [0_u8; 64];
    for index in 0..count + count / 10 {
        frame.clear();
        encode_request(index, &request(kind, index), &mut frame);
        let started = Instant::now();
        stream.write_all(&frame).unwrap();
        stream.read_exact(&mut answer).unwrap();
        let elapsed = started.elapsed().as_nanos() as u64;
        if index >= count / 10 {
            // The first tenth warms up caches and the TCP connection; not recorded.
            histogram.record(elapsed.max(1)).unwrap();
        }
    }
    histogram
}

/// `depth` requests in flight on one connection; returns requests per second.
fn pipelined(address: SocketAddr, kind: &str, count: u64, depth: u64) -> f64 {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let kind_owned = kind.to_string();
    let started = Instant::now();
    let (credit_sender, credit) = std::sync::mpsc::sync_channel::<u64>(1024);
    let sender = std::thread::spawn(move || {
        let mut batch = Vec::with_capacity(64 * 64);
        let mut sent = 0;
        let mut allowed = depth;
        while sent < count {
            while sent >= allowed {
                allowed += credit.recv().unwrap();
            }
            batch.clear();
            let burst = (allowed - sent).min(64).min(count - sent);
            for offset in 0..burst {
                encode_request(sent + offset, &request(&kind_owned, sent + offset), &mut batch);
            }
            writer.write_all(&batch).unwrap();
            sent += burst;
        }
    });
    let mut received = 0_u64;
    let mut buffer = vec![0_u8; 64 * 256];
    let mut pending = 0_usize;
    while received < count {
        let read = stream.read(&mut buffer[pending..]).unwrap();
        assert!(read > 0, "server closed");
        pending += read;
        let frames = pending / 64;
        received += frames as u64;
        buffer.copy_within(frames * 64..pending, 0);
        pending -= frames * 64;
        if frames > 0 {
            let _ = credit_sender.try_send(frames as u64);
        }
    }
    sender.join().unwrap();
    count as f64 / started.elapsed().as_secs_f64()
}

fn micros(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1_000.0
}

fn main() {
    let quick = std::env::args().any(|argument| argument == "--quick");
    CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default());
    let count: u64 = if quick { 2_000 } else { 50_000 };
    let pipelined_count: u64 = if quick { 20_000 } else { 1_000_000 };
    let echo = start_echo();
    std::thread::sleep(Duration::from_millis(50));

    println!("round trips on one connection ({count} each, after a warm-up tenth)");
    println!();
    println!("| target | p50 µs | p99 µs | p99.9 µs | max µs | p50 / echo p50 |");
    println!("|---|---:|---:|---:|---:|---:|");
    let floor = on_client_core(|| round_trips(echo, "ping", count));
    let floor_p50 = micros(&floor, 0.5);
    let row = |name: &str, histogram: &Histogram<u64>| {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
            micros(histogram, 0.5),
            micros(histogram, 0.99),
            micros(histogram, 0.999),
            histogram.max() as f64 / 1_000.0,
            micros(histogram, 0.5) / floor_p50
        );
    };
    row("bare echo (64 B)", &floor);
    let mut throughput = Vec::new();
    for (backend, idle_spin_us) in
        [(BackendChoice::IoUring, 0), (BackendChoice::Epoll, 0), (BackendChoice::IoUring, 50)]
    {
        let server = start_server(backend, count + pipelined_count, idle_spin_us);
        let backend_name = match server.backend() {
            Backend::IoUring => "io_uring",
            Backend::Epoll => "epoll",
        };
        let name = if idle_spin_us > 0 {
            format!("{backend_name}, idle spin {idle_spin_us} µs,")
        } else {
            backend_name.to_string()
        };
        let address = server.local_addr();
        row(&format!("{name} PING"), &on_client_core(|| round_trips(address, "ping", count)));
        row(&format!("{name} RESERVE"), &on_client_core(|| round_trips(address, "reserve", count)));
        let ping_rate = on_client_core(|| pipelined(address, "ping", pipelined_count, 64));
        let reserve_rate = on_client_core(|| pipelined(address, "reserve", pipelined_count, 64));
        let report = server.shutdown().expect("clean shutdown");
        for engine in &report.engines {
            engine.check_invariants().expect("invariants hold after the run");
        }
        let idling = report.shards[0].loop_counters;
        throughput.push((name.clone(), ping_rate, reserve_rate, idling));
    }
    let echo_rate = on_client_core(|| pipelined(echo, "ping", pipelined_count, 64));
    println!();
    println!("pipelined, one connection, 64 in flight ({pipelined_count} requests)");
    println!();
    println!(
        "| target | PING req/s | RESERVE req/s | shard parks (whole run) | to timeout | to timeout, input waiting |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    println!("| bare echo | {:.0} | — | | | |", echo_rate);
    for (name, ping_rate, reserve_rate, idling) in throughput {
        println!(
            "| {name} | {ping_rate:.0} | {reserve_rate:.0} | {} | {} | {} |",
            idling.parks, idling.parks_timed_out, idling.parks_timed_out_with_input
        );
    }
}
