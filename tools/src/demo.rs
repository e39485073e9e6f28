//! `rush demo`: a whole flash sale in a few seconds, on a real server started in-process on
//! free loopback ports.
//!
//! The sale: one SKU of 1,000 units (one per buyer, holds of 1.5 s) and 4,000 funded buyers
//! on 40 connections, all arriving at once. A quarter of them are willing to wait (they join
//! the FIFO waitlist when the stock is gone). Of the buyers who got a hold, 60% pay
//! (CONFIRM), 20% change their mind (CANCEL) and 20% walk away (the hold expires). The units
//! released by cancels and expiries go to the oldest waiters, who then pay. At the end the
//! demo retries a sample of requests with their original keys (exactly-once), reads the
//! state back, checks the invariants and the journal's replay.
//!
//! Then a **paced phase** shows the latency of one request at a time, at a steady 2,000 a
//! second, each timed from when it was due (so a stall is charged to every request it
//! delays): RESERVEs of a second SKU by new buyers, homed on the connection's own shard,
//! alternating with PINGs (the floor: the same socket, loop and shard without the engine).
//! The burst above measures queueing (4,000 requests sent at once to 2 cores); the paced
//! phase measures the service. Both go into the latency plot, on a log axis. The server's
//! shards spin 50 µs before they sleep (`--idle-spin-us 50`, as a server expecting traffic
//! would run), and the paced client yields for the last 400 µs before a request is due
//! instead of sleeping through them: on a VM, a sleeping thread takes a few hundred µs to run
//! again, and that would be measured instead of Rush.
//!
//! The data directory is a temporary one, on /dev/shm when the machine has it: the demo's
//! journal is thrown away at the end, and an fdatasync on a real disk (hundreds of
//! microseconds to milliseconds: BENCHMARKS.md, "Durability") would hide the engine.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use rush_engine::*;
use rush_net::client::{Client, Pipeline};
use rush_net::server::{BackendChoice, ConnLimits, Server, ServerConfig, ShardPorts};
use rush_runtime::RuntimeConfig;

use crate::measure::histogram::new_histogram;
use crate::measure::plot;

const SKU: u64 = 1;
const UNITS: u64 = 1_000;
const PRICE: u64 = 4_999;
const HOLD_MS: u32 = 1_500;
const WAIT_MS: u32 = 4_000;
const CONNECTIONS: u64 = 40;
const BUYERS_PER_CONNECTION: u64 = 100;
const BALANCE: u64 = 10_000;
const RESERVE_KEY: u64 = 1;
const SETTLE_KEY: u64 = 2;
/// The paced phase's SKU: stock for every paced RESERVE, no per-user limit.
const PACED_SKU: u64 = 2;
const PACED_RATE_PER_S: u64 = 2_000;
/// Requests of the paced phase: half RESERVEs, half PINGs (two seconds at the rate).
const PACED_REQUESTS: u64 = 4_000;
/// The paced client wakes this long before a request is due and yields until it.
const PACED_SLEEP_MARGIN: Duration = Duration::from_micros(400);
/// Paced buyers are accounts from here on (no wallet needed: no payment).
const PACED_ACCOUNT_FIRST: u64 = 1 << 20;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Where to write the latency plot (.png or .svg)
    #[arg(long, value_name = "FILE", default_value = "rush-demo-latency.png")]
    pub plot: PathBuf,
    /// Shards [default: the number of cores, at most 4]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub shards: Option<u32>,
    /// I/O backend [default: $RUSH_IO, else auto]
    #[arg(long, value_name = "auto|io_uring|epoll", value_parser = parse_backend)]
    pub io: Option<BackendChoice>,
}

fn parse_backend(value: &str) -> Result<BackendChoice, String> {
    value.parse().map_err(|error: rush_net::server::ServerError| error.to_string())
}

/// What one buyer did, as the demo saw it.
#[derive(Clone, Copy, Debug, Default)]
struct Buyer {
    account: u64,
    waits: bool,
    /// The answer to its RESERVE (for a waiter: once its wait ended).
    first: Option<ResultCode>,
    settled: Option<(Settle, ResultCode)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settle {
    Confirm,
    Cancel,
    Expire,
}

fn plan(account: u64) -> Settle {
    match account % 10 {
        0..=5 => Settle::Confirm,
        6 | 7 => Settle::Cancel,
        _ => Settle::Expire,
    }
}

pub fn run(args: &DemoArgs) -> anyhow::Result<bool> {
    let shards = args.shards.unwrap_or_else(|| crate::settings::core_count().min(4));
    let backend = match args.io {
        Some(choice) => choice,
        None => BackendChoice::from_env().context("RUSH_IO")?,
    };
    let mut prewarm = vec![Request::PutSku(SkuSpec {
        sku: SKU,
        stock_total: UNITS,
        price: PRICE,
        per_user_limit: 1,
        hold_ms: HOLD_MS,
        start_ms: 0,
        end_ms: 0,
    })];
    prewarm.push(Request::PutSku(SkuSpec {
        sku: PACED_SKU,
        stock_total: PACED_REQUESTS,
        price: PRICE,
        per_user_limit: 0,
        hold_ms: 0,
        start_ms: 0,
        end_ms: 0,
    }));
    let buyers = CONNECTIONS * BUYERS_PER_CONNECTION;
    for account in 1..=buyers {
        prewarm.push(Request::Deposit {
            account,
            amount: BALANCE,
            key: crate::sale::PREWARM_DEPOSIT_KEY,
        });
    }
    let engine = Config {
        sku_max: 16,
        account_max: 16_384,
        reservation_max: 65_536,
        waitlist_max: 8_192,
        request_key_max: 131_072,
        request_key_retention_ms: 3_600_000,
        limit_entry_max: 16_384,
        quantity_max: 10,
        hold_ms_default: 60_000,
        hold_ms_max: 600_000,
        wait_ms_max: 60_000,
    };
    // Durable as a real server is, in a directory of its own that goes away at the end.
    let shm = PathBuf::from("/dev/shm");
    let scratch = if shm.is_dir() { shm } else { std::env::temp_dir() };
    let data_dir =
        scratch.join(format!("rush-demo-{}-{}", std::process::id(), rush_runtime::unix_ms()));
    let server = Server::start(ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        admin_listen: Some("127.0.0.1:0".parse()?),
        shard_ports: ShardPorts::Off,
        runtime: RuntimeConfig {
            shard_count: shards,
            engine,
            port_count: 0,
            ring_capacity: 8192,
            pin: false,
            idle_spin_us: 50,
            idle_park_max_ms: rush_runtime::shard::IDLE_PARK_MAX_MS_DEFAULT,
            parked_max: rush_runtime::shard::PARKED_MAX_DEFAULT,
        },
        limits: ConnLimits::default(),
        backend,
        prewarm,
        capture: None,
        durability: rush_runtime::journal::Durability::Sync,
        data_dir: Some(data_dir.clone()),
        journal: rush_runtime::journal::JournalOptions::default(),
    })
    .context("cannot start the demo server")?;
    println!(
        "journal: durability sync (a reply leaves once its journal entry is fsynced), in {}",
        data_dir.display()
    );
    println!(
        "rush demo: server on {} ({} shards, {} backend: {})",
        server.local_addr(),
        server.shard_count(),
        server.backend(),
        server.backend_reason()
    );
    println!(
        "the sale: SKU {SKU}, {UNITS} units at {PRICE}, one per buyer, holds of {HOLD_MS} ms; \
         {buyers} buyers on {CONNECTIONS} connections, {} of them willing to wait {WAIT_MS} ms",
        buyers / 4
    );
    println!();

    let started = Instant::now();
    let address = server.local_addr();
    let barrier = Arc::new(Barrier::new(CONNECTIONS as usize));
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|connection| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || buyer_connection(address, connection, &barrier))
        })
        .collect();
    let mut latency = new_histogram();
    let mut waited = new_histogram();
    let mut outcomes: Vec<Buyer> = Vec::new();
    for thread in threads {
        let (buyers, first_latency, wait_latency) =
            thread.join().map_err(|_| anyhow::anyhow!("a buyer connection panicked"))??;
        latency.add(first_latency)?;
        waited.add(wait_latency)?;
        outcomes.extend(buyers);
    }
    // Every hold left to expire has expired by now (and its unit went to the line).
    let expiries_done = started + Duration::from_millis(u64::from(HOLD_MS) + 300);
    std::thread::sleep(expiries_done.saturating_duration_since(Instant::now()));
    let elapsed = started.elapsed();

    let mut admin = Client::connect(server.admin_addr().context("admin address")?)?;
    std::thread::sleep(Duration::from_millis(20));
    let sku = query_sku(&mut admin)?;
    let mut wallets = Vec::new();
    for buyer in &outcomes {
        let reply = admin.call(&Request::QueryAccount { account: buyer.account })?;
        let ReplyBody::Account(view) = reply.body else {
            bail!("QUERY_ACCOUNT answered {reply:?}")
        };
        wallets.push(view);
    }

    // Exactly-once: every RESERVE whose outcome was recorded (OK, WAIT_TIMEOUT), again with
    // its original key.
    let mut retry = Pipeline::connect(address)?;
    let recorded: HashMap<u64, ResultCode> = outcomes
        .iter()
        .filter_map(|buyer| {
            buyer
                .first
                .filter(|code| matches!(code, ResultCode::Ok | ResultCode::WaitTimeout))
                .map(|code| (buyer.account, code))
        })
        .collect();
    for buyer in outcomes.iter().filter(|buyer| recorded.contains_key(&buyer.account)) {
        retry.send(&reserve(buyer.account, buyer.waits));
    }
    let mut replayed = 0;
    for _ in 0..recorded.len() {
        let response = retry.recv()?;
        let original = recorded[&response_account(&response.request)];
        if response.reply.result == ResultCode::Duplicate && response.reply.original == original {
            replayed += 1;
        }
    }
    let sku_after = query_sku(&mut admin)?;
    let (paced_reserve, paced_ping) = paced_phase(server.local_addr())?;
    let report = server.shutdown().context("stopping the demo server")?;

    // What happened.
    let count = |predicate: &dyn Fn(&Buyer) -> bool| {
        outcomes.iter().filter(|buyer| predicate(buyer)).count()
    };
    let got_unit = count(&|buyer| buyer.first == Some(ResultCode::Ok));
    let sold_out = count(&|buyer| buyer.first == Some(ResultCode::SoldOut));
    let waiters = count(&|buyer| buyer.waits);
    let waiters_served = count(&|buyer| buyer.waits && buyer.first == Some(ResultCode::Ok));
    let timed_out = count(&|buyer| buyer.first == Some(ResultCode::WaitTimeout));
    let settled = |kind: Settle| {
        count(&|buyer| matches!(buyer.settled, Some((settle, ResultCode::Ok)) if settle == kind))
    };
    let confirmed = settled(Settle::Confirm);
    let cancelled = settled(Settle::Cancel);
    let expired = count(&|buyer| matches!(buyer.settled, Some((Settle::Expire, _))));
    println!("what happened ({:.2} s)", elapsed.as_secs_f64());
    println!("  {got_unit:>5} buyers got a unit; {sold_out} were told SOLD_OUT");
    println!(
        "  {confirmed:>5} paid (CONFIRM), {cancelled} cancelled, {expired} let their hold expire"
    );
    println!(
        "  {waiters:>5} were willing to wait: {waiters_served} got a unit, {timed_out} waited in \
         vain (WAIT_TIMEOUT)"
    );
    // Every unit handed out beyond the stock was handed out a second time after a cancel or
    // an expiry released it; only waiters were still asking by then.
    let resold = got_unit.saturating_sub(UNITS as usize);
    println!(
        "  {resold:>5} units released by cancels and expiries went to the oldest waiters and \
         were sold again"
    );
    println!(
        "  SKU {SKU}: total {}, sold {}, held {}, available {}",
        sku.total, sku.sold, sku.reserved, sku.available
    );
    println!();

    // The invariants, checked from what the server says and what the buyers saw.
    let mut all_pass = true;
    let mut check = |name: &str, pass: bool, detail: String| {
        println!("  [{}] {name}: {detail}", if pass { "PASS" } else { "FAIL" });
        all_pass &= pass;
    };
    println!("invariants");
    check(
        "no oversell",
        sku.available + sku.reserved + sku.sold == sku.total && sku.total == UNITS,
        format!(
            "available + held + sold = {} = total {}",
            sku.available + sku.reserved + sku.sold,
            sku.total
        ),
    );
    check(
        "every payment sold one unit",
        sku.sold == confirmed as u64 && sku.reserved == 0,
        format!("sold {} = {confirmed} confirms; nothing left on hold", sku.sold),
    );
    check(
        "no stranded stock",
        timed_out == 0 || sku.available == 0,
        format!("{} units unsold while {timed_out} buyers waited in vain", sku.available),
    );
    let spent: u64 = wallets.iter().map(|wallet| wallet.spent).sum();
    let held: u64 = wallets.iter().map(|wallet| wallet.held).sum();
    let money_ok = wallets.iter().all(|wallet| {
        wallet.available + wallet.held + wallet.spent == wallet.deposited - wallet.withdrawn
    });
    check(
        "money is conserved",
        money_ok && spent == sku.sold * PRICE && held == 0,
        format!("every wallet: available + held + spent = deposited; spent {spent} = sold × price"),
    );
    let limit_ok = wallets.iter().all(|wallet| wallet.spent + wallet.held <= PRICE);
    check("per-user limit", limit_ok, "no buyer paid for or holds more than one unit".to_string());
    check(
        "exactly once",
        replayed == recorded.len()
            && sku_after.reserved + sku_after.sold == sku.reserved + sku.sold,
        format!(
            "{replayed} of {} recorded RESERVEs retried with their keys answered DUPLICATE with \
             the original outcome; no unit taken twice",
            recorded.len()
        ),
    );
    let engines_ok = report.engines.iter().all(|engine| engine.check_invariants().is_ok());
    check(
        "engine invariants on every shard",
        engines_ok,
        format!("{} shards checked after shutdown", report.engines.len()),
    );
    // What a restart would recover: the journal replayed from scratch.
    let live: Vec<u64> = report.engines.iter().map(|engine| engine.state_hash()).collect();
    let replayed =
        rush_runtime::journal::replay_directory(&data_dir, engine, report.engines.len() as u32);
    let _ = std::fs::remove_dir_all(&data_dir);
    let (same, detail) = match replayed {
        Ok(recovered) => {
            let hashes: Vec<u64> =
                recovered.shards.iter().map(|shard| shard.engine.state_hash()).collect();
            let inputs: u64 = recovered.shards.iter().map(|shard| shard.inputs_replayed).sum();
            (hashes == live, format!("{inputs} journal records replayed: every shard's state hash equals the live one"))
        }
        Err(error) => (false, format!("the journal does not replay: {error}")),
    };
    check("journal replay", same, detail);
    println!();

    println!(
        "paced: one request at a time, {PACED_RATE_PER_S} a second, each timed from when it \
         was due (round trip on loopback), µs"
    );
    println!(
        "  RESERVE (a hold for a new buyer on the connection's own shard; the reply waits for \
         its journal write + fdatasync)"
    );
    print_percentiles(&paced_reserve);
    println!("  PING (the floor: same socket, loop and shard, no engine)");
    print_percentiles(&paced_ping);
    println!(
        "burst: each RESERVE of the sale answered at once, all {buyers} sent together to 2 \
         cores (queueing included), µs"
    );
    print_percentiles(&latency);
    if !waited.is_empty() {
        println!("time until a waiter's answer (at once, matched from the line, or timed out), ms");
        println!(
            "  p50 {:.0}  p99 {:.0}  max {:.0}",
            waited.value_at_quantile(0.5) as f64 / 1e6,
            waited.value_at_quantile(0.99) as f64 / 1e6,
            waited.max() as f64 / 1e6
        );
    }
    let series = [
        plot::series_from_histogram("paced RESERVE", &paced_reserve),
        plot::series_from_histogram("paced PING (floor)", &paced_ping),
        plot::series_from_histogram("burst RESERVE (queueing)", &latency),
    ];
    plot::plot_series_scaled(&series, &args.plot, plot::YScale::Log)
        .with_context(|| format!("writing the plot {}", args.plot.display()))?;
    println!("latency plot written to {}", args.plot.display());
    Ok(all_pass)
}

/// The paced phase (see the module documentation): RESERVE and PING alternating, one at a
/// time, at `PACED_RATE_PER_S`, each timed from its due time. Returns their histograms (ns).
fn paced_phase(address: std::net::SocketAddr) -> anyhow::Result<(Histogram<u64>, Histogram<u64>)> {
    let mut client = Client::connect(address)?;
    let topology = client.ping()?;
    let shard_count = u32::from(topology.shard_count.max(1));
    let own_shard = u32::from(topology.shard);
    // Buyers homed on this connection's shard: no hop through the mesh.
    let mut buyers = (PACED_ACCOUNT_FIRST..)
        .filter(|&account| rush_engine::quota::home_shard(account, shard_count) == own_shard);
    let mut reserve_latency = new_histogram();
    let mut ping_latency = new_histogram();
    let interval = Duration::from_nanos(1_000_000_000 / PACED_RATE_PER_S);
    let started = Instant::now();
    for index in 0..PACED_REQUESTS {
        let due = started + interval * index as u32;
        // Sleep until shortly before the due time, then yield until it: a sleeping thread
        // on this kind of VM takes a few hundred µs to run again, which would be charged to
        // the request (it is timed from its due time).
        let now = Instant::now();
        if due > now + PACED_SLEEP_MARGIN {
            std::thread::sleep(due - now - PACED_SLEEP_MARGIN);
        }
        while Instant::now() < due {
            std::thread::yield_now();
        }
        if index % 2 == 0 {
            let account = buyers.next().context("a buyer")?;
            let reserve = Reserve {
                account,
                sku: PACED_SKU,
                quantity: 1,
                key: RESERVE_KEY,
                flags: 0,
                hold_ms: 0,
                wait_ms: 0,
            };
            let reply = client.call(&Request::Reserve(reserve))?;
            if reply.result != ResultCode::Ok {
                bail!("a paced RESERVE answered {reply:?}");
            }
            reserve_latency.record(due.elapsed().as_nanos() as u64)?;
        } else {
            client.ping()?;
            ping_latency.record(due.elapsed().as_nanos() as u64)?;
        }
    }
    Ok((reserve_latency, ping_latency))
}

fn query_sku(admin: &mut Client) -> anyhow::Result<SkuView> {
    let reply = admin.call(&Request::QuerySku { sku: SKU })?;
    match reply.body {
        ReplyBody::Sku(view) => Ok(view),
        _ => bail!("QUERY_SKU answered {reply:?}"),
    }
}

fn print_percentiles(histogram: &Histogram<u64>) {
    let micros = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1_000.0;
    println!("  | p50 | p90 | p99 | p99.9 | p99.99 | max |");
    println!("  |---:|---:|---:|---:|---:|---:|");
    println!(
        "  | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
        micros(0.5),
        micros(0.9),
        micros(0.99),
        micros(0.999),
        micros(0.9999),
        histogram.max() as f64 / 1_000.0
    );
}

fn reserve(account: u64, waits: bool) -> Request {
    Request::Reserve(Reserve {
        account,
        sku: SKU,
        quantity: 1,
        key: RESERVE_KEY,
        flags: RESERVE_FLAG_PAY,
        hold_ms: 0,
        wait_ms: if waits { WAIT_MS } else { 0 },
    })
}

fn response_account(request: &Request) -> u64 {
    match *request {
        Request::Reserve(reserve) => reserve.account,
        Request::Confirm { account, .. } | Request::Cancel { account, .. } => account,
        _ => 0,
    }
}

type ConnectionResult = anyhow::Result<(Vec<Buyer>, Histogram<u64>, Histogram<u64>)>;

/// One connection's buyers: all RESERVEs at once, then each settles as planned; waiters
/// settle when their deferred answer arrives.
fn buyer_connection(
    address: std::net::SocketAddr,
    connection: u64,
    barrier: &Barrier,
) -> ConnectionResult {
    let mut pipeline = Pipeline::connect(address)?;
    let mut latency = new_histogram();
    let mut waited = new_histogram();
    let mut buyers: HashMap<u64, Buyer> = HashMap::new();
    let mut sent_at: HashMap<u64, Instant> = HashMap::new();
    barrier.wait();
    for index in 0..BUYERS_PER_CONNECTION {
        let account = 1 + connection * BUYERS_PER_CONNECTION + index;
        let waits = account.is_multiple_of(4);
        buyers.insert(account, Buyer { account, waits, ..Buyer::default() });
        let id = pipeline.send(&reserve(account, waits));
        sent_at.insert(id, Instant::now());
    }
    pipeline.flush()?;
    let deadline =
        Instant::now() + Duration::from_millis(u64::from(WAIT_MS) + u64::from(HOLD_MS) + 5_000);
    while pipeline.in_flight() > 0 {
        if Instant::now() > deadline {
            bail!("connection {connection}: answers missing after the waits should have ended");
        }
        let response = pipeline.recv()?;
        let account = response_account(&response.request);
        let sent = sent_at.remove(&response.request_id).unwrap_or_else(Instant::now);
        let buyer = buyers.get_mut(&account).context("an answer for an unknown buyer")?;
        match response.request {
            Request::Reserve(_) => {
                buyer.first = Some(response.reply.result);
                let elapsed = sent.elapsed().as_nanos().max(1) as u64;
                if buyer.waits {
                    waited.record(elapsed)?;
                } else {
                    latency.record(elapsed)?;
                }
                if response.reply.result == ResultCode::Ok {
                    // A buyer who waited for a unit pays for it; the others follow the plan.
                    let settle = if buyer.waits { Settle::Confirm } else { plan(account) };
                    let target = Target::ReserveKey(RESERVE_KEY);
                    let request = match settle {
                        Settle::Confirm => {
                            Some(Request::Confirm { account, target, key: SETTLE_KEY })
                        }
                        Settle::Cancel => {
                            Some(Request::Cancel { account, target, key: SETTLE_KEY })
                        }
                        Settle::Expire => None,
                    };
                    buyer.settled = Some((settle, ResultCode::Ok));
                    if let Some(request) = request {
                        let id = pipeline.send(&request);
                        sent_at.insert(id, Instant::now());
                        pipeline.flush()?;
                    }
                }
            }
            Request::Confirm { .. } | Request::Cancel { .. } => {
                if let Some((settle, _)) = buyer.settled {
                    buyer.settled = Some((settle, response.reply.result));
                }
            }
            _ => {}
        }
    }
    Ok((buyers.into_values().collect(), latency, waited))
}
