//! The threaded runtime without any network: one driver thread submits RESERVEs through a
//! port to pinned shard threads.
//!
//! Run: `cargo bench --bench runtime_throughput` (six to eight minutes; add `-- --quick` for
//! a smoke run of about 10 s). Options after `--`: `--quick`, `--shards 1,2`,
//! `--workloads sold-out,ample,zipf`, `--rates 250000,1000000`, `--requests N` (per
//! open-loop run), `--reps N` (runs per open-loop point, default 3, `--quick` 1),
//! `--spin US` (the shards' `idle_spin_us`, default 50), `--no-closed`, `--no-open`,
//! `--no-compare`, `--no-noise`.
//!
//! Workloads (every RESERVE is quantity 1, no wait, no payment; the buyers are 1,000,000
//! accounts, request `i` is account `i % 1,000,000 + 1` with key `i / 1,000,000 + 1`):
//! - **sold-out**: one hot SKU with 1,000 units: the first 1,000 RESERVEs win, the rest are
//!   answered SOLD_OUT;
//! - **ample**: one hot SKU with more units than requests: every RESERVE makes a hold;
//! - **zipf**: 100,000 SKUs of 100 units each, the SKU of each RESERVE drawn from a Zipf
//!   distribution (s = 1.0, precomputed CDF, `rush_suite::rng`; the hottest SKU gets 8 % of the
//!   traffic): the head sells out, the long tail makes holds. `--quick` uses 10,000 SKUs,
//!   because defining 100,000 takes seconds per runtime (see BENCHMARKS.md).
//!
//! Measurements:
//! - closed loop: the driver keeps `WINDOW` requests in flight and measures completions per
//!   second, for 1 and 2 shards, timed over three consecutive windows of the run (the best
//!   and the median window are printed), with the share of RESERVEs that went to their
//!   SKU's coordinator (quota `Acquire`s) and the time it took to define the SKUs;
//! - open loop: request `i` is due `i / rate` seconds after the start, and its latency is
//!   measured from that *intended* start to the driver seeing its completion, so a stall of
//!   the driver or of a shard is charged to every request it delays (no coordinated
//!   omission). Latencies go into an HdrHistogram with 3 significant digits. Requests due
//!   together go out in one `Port::submit_batch` per shard (at most `SUBMIT_BATCH`). Each
//!   point is `--reps` runs, back to back on one runtime (accounts and keys continue; for
//!   Zipf each run maps the ranks onto the SKUs through a new permutation, so its hot SKUs
//!   are fresh); the run with the median p99 is printed whole, with the lowest and highest
//!   p99 of the runs (the machine is shared: a pause of the host lands in one run, not in
//!   all), the largest latency of all the runs, and the shard loops' parks over the point
//!   (how many, how many lasted their whole timeout, and how many of those found input
//!   waiting: a suspected lost wake-up). A rate above the closed-loop maximum measured in the
//!   same run is not offered (its latency would only grow with the length of the run);
//! - idle spin: the same open loop with the shards' `idle_spin_us` at 0 (park on the futex
//!   at once) and at the main setting, runs of the two alternating, side by side, and the
//!   ratio;
//! - noise floor: before and after, one thread per core does nothing but read the clock;
//!   its gaps are the time the machine took away (interrupts, other threads, hypervisor).
//!
//! Threads and cores: shard `i` is pinned to core `i`, the driver to core `shards % cores`
//! (its own core with 1 shard; with 2 shards on this 2-core machine it shares core 0 with
//! shard 0). The driver never sleeps: between due times it spins on its own core and yields
//! on a shared one, so the shard there runs instead of waiting for a time slice to end.
//!
//! Every run ends with `Runtime::stop` and `check_invariants` on every shard, checks that
//! stock is conserved (pool + buckets + held + sold = units defined, for every SKU) and that
//! the units held or sold equal the OK replies, and for the sold-out workload that exactly
//! 1,000 units are held or sold.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rush_engine::quota::{coordinator_shard, route};
use rush_engine::*;
use rush_runtime::{Completion, LoopCounters, Port, Runtime, RuntimeConfig, Submission};
use rush_suite::rng::Rng;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Closed loop: requests in flight.
const WINDOW: u64 = 4096;
/// Capacity of every ring.
const RING_CAPACITY: usize = 8192;
/// Open loop: most requests handed to one shard's ring at once.
const SUBMIT_BATCH: usize = 16;
/// Closed loop and setup: most requests handed to one shard's ring at once.
const CLOSED_BATCH: usize = 64;
/// Distinct buyers.
const BUYERS: u64 = 1_000_000;
const HOT_SKU: SkuId = 1;
const HOT_UNITS: u64 = 1_000;
const ZIPF_UNITS: u64 = 100;
const ZIPF_EXPONENT: f64 = 1.0;
/// The shards' idle spin for the main tables, µs (the comparison also runs 0).
const IDLE_SPIN_US: u64 = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    SoldOut,
    Ample,
    Zipf { skus: u32 },
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::SoldOut => "sold-out",
            Workload::Ample => "ample",
            Workload::Zipf { .. } => "zipf",
        }
    }

    fn title(self) -> String {
        match self {
            Workload::SoldOut => "hot SKU, 1,000 units, 1 M buyers (sold out)".to_string(),
            Workload::Ample => "hot SKU, ample stock (every RESERVE holds)".to_string(),
            Workload::Zipf { skus } => {
                format!("{skus} SKUs × {ZIPF_UNITS} units, Zipf s = {ZIPF_EXPONENT:.1}")
            }
        }
    }

    fn sku_count(self) -> u32 {
        match self {
            Workload::Zipf { skus } => skus,
            _ => 1,
        }
    }

    /// Units of each SKU for a run of `requests`.
    fn units(self, requests: u64) -> u64 {
        match self {
            Workload::SoldOut => HOT_UNITS,
            Workload::Ample => requests + 1_000,
            Workload::Zipf { .. } => ZIPF_UNITS,
        }
    }
}

/// Zipf over ranks `1..=n` with exponent `s`: P(k) ∝ 1 / k^s. The CDF is computed once; a
/// sample is a binary search of a uniform number in it.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: u32, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut sum = 0.0;
        for rank in 1..=n {
            sum += 1.0 / f64::from(rank).powf(s);
            cdf.push(sum);
        }
        for value in cdf.iter_mut() {
            *value /= sum;
        }
        Zipf { cdf }
    }

    /// A rank in `1..=n`.
    fn sample(&self, rng: &mut Rng) -> u32 {
        let u = rng.next_f64();
        let index = self.cdf.partition_point(|&p| p <= u);
        index.min(self.cdf.len() - 1) as u32 + 1
    }
}

/// The requests of one run. The Zipf draws are made before the clock starts, so that the
/// driver's cost per request is the same for every workload.
struct Plan {
    workload: Workload,
    skus: Vec<u32>,
}

impl Plan {
    /// `requests` in blocks of `block` (one block per run on the same runtime). For Zipf,
    /// each block after the first maps the ranks onto the SKUs through a fresh random
    /// permutation: its hot SKUs are other SKUs, which earlier blocks barely touched, so every
    /// run meets the same kind of sale rather than the leftovers of the previous one.
    fn new(workload: Workload, requests: u64, block: u64, seed: u64) -> Plan {
        let skus = match workload {
            Workload::Zipf { skus } => {
                let zipf = Zipf::new(skus, ZIPF_EXPONENT);
                let mut rng = Rng::new(seed);
                let mut sku_of_rank: Vec<u32> = (1..=skus).collect();
                (0..requests)
                    .map(|index| {
                        if index > 0 && index % block == 0 {
                            rng.shuffle(&mut sku_of_rank);
                        }
                        sku_of_rank[zipf.sample(&mut rng) as usize - 1]
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        Plan { workload, skus }
    }

    #[inline]
    fn request(&self, index: u64) -> Request {
        let sku = match self.workload {
            Workload::Zipf { .. } => u64::from(self.skus[index as usize]),
            _ => HOT_SKU,
        };
        Request::Reserve(Reserve {
            account: index % BUYERS + 1,
            sku,
            quantity: 1,
            key: index / BUYERS + 1,
            flags: 0,
            hold_ms: 0,
            wait_ms: 0,
        })
    }
}

fn engine_config(workload: Workload, requests: u64) -> Config {
    // With shards, a RESERVE that needs its coordinator records its key and takes a slot
    // even when the answer is SOLD_OUT, so both tables are sized for every request.
    let reservation_max = (requests + 1_024).min(4_000_000) as u32;
    Config {
        // 4× the SKUs: the board's column catalog loses columns when two shards publish new
        // SKUs at the same moment (see BENCHMARKS.md), and its columns are `sku_max`.
        sku_max: (4 * workload.sku_count()).max(16),
        account_max: BUYERS as u32,
        reservation_max,
        waitlist_max: reservation_max.min(65_536),
        request_key_max: reservation_max,
        request_key_retention_ms: 3_600_000,
        limit_entry_max: 1_024,
        quantity_max: 8,
        hold_ms_default: 600_000,
        hold_ms_max: 1_800_000,
        wait_ms_max: 60_000,
    }
}

/// What the driver does while nothing is due and nothing came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DriverIdle {
    /// Busy-wait: the driver has a core to itself.
    Spin,
    /// `sched_yield`: the shard that shares the driver's core runs meanwhile.
    Yield,
}

impl DriverIdle {
    fn for_shards(shard_count: u32) -> DriverIdle {
        if shard_count as usize >= cores().len() {
            DriverIdle::Yield
        } else {
            DriverIdle::Spin
        }
    }

    #[inline]
    fn idle(self) {
        match self {
            DriverIdle::Spin => std::hint::spin_loop(),
            DriverIdle::Yield => std::thread::yield_now(),
        }
    }
}

/// Restricts the calling thread to `cores`. Returns false if the kernel refused.
fn set_affinity(cores: &[usize]) -> bool {
    extern "C" {
        fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
    }
    let mut mask = [0_u64; 16];
    for &core in cores.iter().filter(|&&core| core < 1024) {
        mask[core / 64] |= 1 << (core % 64);
    }
    // SAFETY: glibc's sched_setaffinity reads `size` bytes at `mask`, a live local array of
    // exactly that size; pid 0 is the calling thread.
    unsafe { sched_setaffinity(0, std::mem::size_of_val(&mask), mask.as_ptr()) == 0 }
}

/// The process's cores, read once before the driver pins itself (afterwards the list would
/// show only the driver's core).
fn cores() -> &'static [usize] {
    static CORES: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    CORES.get_or_init(|| {
        let mut cores: Vec<usize> =
            rush_runtime::pin_plan(64, true).into_iter().flatten().map(|core| core.id).collect();
        cores.sort_unstable();
        cores.dedup();
        cores
    })
}

/// The driver goes on the core after the shards' (shard `i` is on core `i`), wrapping.
fn pin_driver(shard_count: u32) {
    let cores = cores();
    if !cores.is_empty() {
        set_affinity(&[cores[shard_count as usize % cores.len()]]);
    }
}

/// The machine's own noise on one core over a window.
struct Noise {
    over_10us: u64,
    over_100us: u64,
    over_1ms: u64,
    longest_ns: u64,
    /// Fraction of the window lost in gaps over 1 µs.
    lost: f64,
}

/// One thread per core, pinned, does nothing but read the clock for `seconds`; every gap
/// between two readings is time the thread did not run.
fn noise_floor(seconds: f64) -> Vec<Noise> {
    let threads: Vec<_> = cores()
        .iter()
        .map(|&core| {
            std::thread::spawn(move || {
                set_affinity(&[core]);
                let window = Duration::from_secs_f64(seconds);
                let started = Instant::now();
                let mut last = started;
                let mut noise =
                    Noise { over_10us: 0, over_100us: 0, over_1ms: 0, longest_ns: 0, lost: 0.0 };
                let mut lost_ns = 0;
                while last - started < window {
                    let now = Instant::now();
                    let gap = (now - last).as_nanos() as u64;
                    last = now;
                    if gap > 1_000 {
                        lost_ns += gap;
                        noise.over_10us += u64::from(gap > 10_000);
                        noise.over_100us += u64::from(gap > 100_000);
                        noise.over_1ms += u64::from(gap > 1_000_000);
                        noise.longest_ns = noise.longest_ns.max(gap);
                    }
                }
                noise.lost = lost_ns as f64 / (last - started).as_nanos() as f64;
                noise
            })
        })
        .collect();
    threads.into_iter().map(|thread| thread.join().expect("noise thread")).collect()
}

fn print_noise(when: &str, seconds: f64) {
    println!("Noise floor {when} ({seconds} s, one clock-reading thread pinned per core):");
    println!();
    println!("| core | gaps > 10 µs /s | > 100 µs /s | > 1 ms /s | longest µs | time lost |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (core, noise) in noise_floor(seconds).iter().enumerate() {
        println!(
            "| {core} | {:.0} | {:.1} | {:.1} | {} | {:.1} % |",
            noise.over_10us as f64 / seconds,
            noise.over_100us as f64 / seconds,
            noise.over_1ms as f64 / seconds,
            micros(noise.longest_ns),
            noise.lost * 100.0
        );
    }
    println!();
}

/// Sends `requests` with at most `WINDOW` in flight, each to `shard_of(index, request)`;
/// returns the completions in request order.
fn exchange(
    port: &mut Port,
    requests: &[Request],
    shard_of: impl Fn(usize, &Request) -> u32,
) -> Vec<Completion> {
    let mut pending: Vec<Vec<Submission>> = vec![Vec::new(); port.shard_count() as usize];
    let mut out = Vec::with_capacity(requests.len());
    let mut next = 0;
    while out.len() < requests.len() {
        while next < requests.len()
            && ((next - out.len()) as u64) < WINDOW
            && pending.iter().all(|queue| queue.len() < CLOSED_BATCH)
        {
            let shard = shard_of(next, &requests[next]) as usize;
            pending[shard].push(Submission { tag: next as u64, request: requests[next] });
            next += 1;
        }
        for (shard, queue) in pending.iter_mut().enumerate() {
            if !queue.is_empty() {
                let taken = port.submit_batch(shard as u32, queue);
                queue.drain(..taken);
            }
        }
        if port.poll(&mut out) == 0 {
            std::thread::yield_now();
        }
    }
    out.sort_by_key(|completion| completion.tag);
    out
}

/// A started runtime with its SKUs defined everywhere and its rings warmed.
struct Rig {
    runtime: Runtime,
    port: Port,
    workload: Workload,
    units: u64,
    /// Seconds from the first PUT_SKU until every shard knew every SKU.
    define_seconds: f64,
}

impl Rig {
    fn start(workload: Workload, shard_count: u32, requests: u64, idle_spin_us: u64) -> Rig {
        // The runtime reads the core list from the calling thread's affinity: unpin first.
        set_affinity(cores());
        let (runtime, mut ports) = Runtime::start(RuntimeConfig {
            shard_count,
            engine: engine_config(workload, requests),
            port_count: 1,
            ring_capacity: RING_CAPACITY,
            pin: true,
            idle_spin_us,
            idle_park_max_ms: rush_runtime::shard::IDLE_PARK_MAX_MS_DEFAULT,
            parked_max: rush_runtime::shard::PARKED_MAX_DEFAULT,
        })
        .expect("runtime");
        let mut port = ports.pop().expect("one port");
        let units = workload.units(requests);
        let sku_count = u64::from(workload.sku_count());

        // PUT_SKU for every SKU, each through its coordinator.
        let defined = Instant::now();
        let definitions: Vec<Request> = (1..=sku_count)
            .map(|sku| {
                Request::PutSku(SkuSpec {
                    sku,
                    stock_total: units,
                    price: 0,
                    per_user_limit: 0,
                    hold_ms: 0,
                    start_ms: 0,
                    end_ms: 0,
                })
            })
            .collect();
        let coordinator = |_, request: &Request| route(request, shard_count).unwrap_or(0);
        let replies = exchange(&mut port, &definitions, coordinator);
        assert!(replies.iter().all(|c| c.reply.result == ResultCode::Ok), "every PUT_SKU is OK");

        // Every shard knows every SKU: a coordinator broadcasts its definitions in order on
        // each link, so a shard that knows a coordinator's last SKU knows all of them.
        // (QUERY_SKU runs on the shard it is sent to, and answers UNKNOWN_SKU until then.)
        if shard_count > 1 {
            let mut last_of = vec![0; shard_count as usize];
            for sku in 1..=sku_count {
                last_of[coordinator_shard(sku, shard_count) as usize] = sku;
            }
            let probes: Vec<(u32, Request)> = (0..shard_count)
                .flat_map(|shard| {
                    last_of
                        .iter()
                        .filter(|&&sku| sku != 0)
                        .map(move |&sku| (shard, Request::QuerySku { sku }))
                })
                .collect();
            let requests: Vec<Request> = probes.iter().map(|(_, request)| *request).collect();
            while !exchange(&mut port, &requests, |index, _| probes[index].0)
                .iter()
                .all(|c| c.reply.result == ResultCode::Ok)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // A shard publishes a SKU in the pass that defines it: give the last passes time.
        std::thread::sleep(Duration::from_millis(10));
        let define_seconds = defined.elapsed().as_secs_f64();
        let unpublished =
            (1..=sku_count).filter(|&sku| runtime.board().levels(sku).is_none()).count();
        assert_eq!(unpublished, 0, "SKUs without a board column (raise sku_max)");

        // Warm the rings, whose pages are touched for the first time here rather than in
        // the measured run: PINGs run where they are sent; with shards, QUERY_ACCOUNTs sent
        // to the wrong shard also cross the mesh.
        for shard in 0..shard_count {
            exchange(&mut port, &vec![Request::Ping; 2 * RING_CAPACITY], |_, _| shard);
            if shard_count > 1 {
                let foreign: Vec<Request> = (1..)
                    .map(|account| Request::QueryAccount { account })
                    .filter(|request| port.shard_for(request) != shard)
                    .take(2 * RING_CAPACITY)
                    .collect();
                exchange(&mut port, &foreign, |_, _| shard);
            }
        }
        Rig { runtime, port, workload, units, define_seconds }
    }

    /// Stops the shards and checks every engine; `ok` is the number of OK replies. Returns
    /// how many RESERVEs went to their SKU's coordinator (quota `Acquire`s, multi-shard).
    /// Stops the runtime, checks the engines, and returns the RESERVEs that went to a
    /// coordinator and the shard loops' idling counters, summed.
    fn finish(self, ok: u64) -> (u64, LoopCounters) {
        let (engines, loops) = self.runtime.stop_counted();
        let mut idling = LoopCounters::default();
        for counters in &loops {
            idling.passes += counters.passes;
            idling.parks += counters.parks;
            idling.parks_timed_out += counters.parks_timed_out;
            idling.parks_timed_out_with_input += counters.parks_timed_out_with_input;
        }
        for (shard, engine) in engines.iter().enumerate() {
            engine
                .check_invariants()
                .unwrap_or_else(|violation| panic!("shard {shard}: {violation}"));
        }
        let mut taken_total = 0;
        for sku in 1..=u64::from(self.workload.sku_count()) {
            let mut books = 0;
            for engine in &engines {
                if let Some((pool, _)) = engine.pool_of(sku) {
                    books += pool;
                }
                let (bucket, held, sold, _) = engine.bucket_of(sku).expect("defined everywhere");
                books += bucket + held + sold;
                taken_total += held + sold;
            }
            assert_eq!(books, self.units, "sku {sku}: stock is conserved");
        }
        assert_eq!(taken_total, ok, "units held or sold = OK replies");
        if self.workload == Workload::SoldOut {
            assert_eq!(taken_total, HOT_UNITS, "the hot SKU sold exactly its 1,000 units");
        }
        (engines.iter().map(|engine| engine.counters().acquires_sent).sum(), idling)
    }
}

/// Result codes of a run: only OK and SOLD_OUT are expected.
#[derive(Default)]
struct Tally {
    ok: u64,
    sold_out: u64,
}

impl Tally {
    fn add(&mut self, completion: &Completion) {
        match completion.reply.result {
            ResultCode::Ok => self.ok += 1,
            ResultCode::SoldOut => self.sold_out += 1,
            other => panic!("unexpected {other:?} for request {}", completion.tag),
        }
    }
}

/// Closed loop: the run is timed in this many consecutive windows of equal length.
const CLOSED_WINDOWS: u64 = 3;

struct ClosedRun {
    /// Completions per second of the fastest window, and of the median one.
    best: f64,
    median: f64,
    ok: u64,
    /// RESERVEs that went to their SKU's coordinator.
    acquires: u64,
    define_seconds: f64,
}

/// Completions per second with `WINDOW` requests in flight, timed over `CLOSED_WINDOWS`
/// consecutive windows of one run (the pipeline stays full across their boundaries): on a
/// shared machine a pause of the host slows one window, and the best window is the closest
/// to the capacity.
fn closed_loop(workload: Workload, shard_count: u32, requests: u64, spin: u64) -> ClosedRun {
    let plan = Plan::new(workload, requests, requests, 0x5eed);
    let mut rig = Rig::start(workload, shard_count, requests, spin);
    let idle = DriverIdle::for_shards(shard_count);
    pin_driver(shard_count);
    let port = &mut rig.port;
    let mut pending: Vec<Vec<Submission>> =
        vec![Vec::with_capacity(CLOSED_BATCH); shard_count as usize];
    let mut completions: Vec<Completion> = Vec::with_capacity(RING_CAPACITY * 2);
    let mut tally = Tally::default();
    let (mut sent, mut done) = (0_u64, 0_u64);
    let window_length = requests / CLOSED_WINDOWS;
    let mut rates = Vec::new();
    let mut window_started = Instant::now();
    while done < requests {
        while sent < requests
            && sent - done < WINDOW
            && pending.iter().all(|queue| queue.len() < CLOSED_BATCH)
        {
            let request = plan.request(sent);
            pending[port.shard_for(&request) as usize].push(Submission { tag: sent, request });
            sent += 1;
        }
        for (shard, queue) in pending.iter_mut().enumerate() {
            if !queue.is_empty() {
                let taken = port.submit_batch(shard as u32, queue);
                queue.drain(..taken);
            }
        }
        completions.clear();
        if port.poll(&mut completions) == 0 {
            idle.idle();
        }
        done += completions.len() as u64;
        completions.iter().for_each(|completion| tally.add(completion));
        if done >= window_length * (rates.len() as u64 + 1) && rates.len() < CLOSED_WINDOWS as usize
        {
            let now = Instant::now();
            rates.push(window_length as f64 / (now - window_started).as_secs_f64());
            window_started = now;
        }
    }
    let define_seconds = rig.define_seconds;
    let (acquires, _) = rig.finish(tally.ok);
    assert_eq!(tally.ok + tally.sold_out, requests);
    rates.sort_by(f64::total_cmp);
    ClosedRun {
        best: rates[rates.len() - 1],
        median: rates[rates.len() / 2],
        ok: tally.ok,
        acquires,
        define_seconds,
    }
}

/// One open-loop run on a started runtime: requests `first..first + requests` of `plan`,
/// offered at `rate` per second from now; latency of each from its intended start.
fn open_run(
    port: &mut Port,
    plan: &Plan,
    rate: u64,
    first: u64,
    requests: u64,
    idle: DriverIdle,
) -> (Histogram<u64>, Tally) {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    // Request `first + i` is due `i * 10^9 / rate` ns after the start.
    let due_ns = |tag: u64| (u128::from(tag - first) * 1_000_000_000 / u128::from(rate)) as u64;
    let mut pending: Vec<Vec<Submission>> =
        vec![Vec::with_capacity(SUBMIT_BATCH); port.shard_count() as usize];
    let mut completions: Vec<Completion> = Vec::with_capacity(RING_CAPACITY * 2);
    let mut tally = Tally::default();
    let (end, mut next, mut done) = (first + requests, first, 0_u64);
    let started = Instant::now();
    while done < requests {
        let now_ns = started.elapsed().as_nanos() as u64;
        let mut busy = false;
        // Everything due goes out, at most SUBMIT_BATCH per shard at a time; what a full ring
        // refuses waits here, still charged from its due time.
        while next < end && due_ns(next) <= now_ns {
            let request = plan.request(next);
            let queue = &mut pending[port.shard_for(&request) as usize];
            if queue.len() >= SUBMIT_BATCH {
                break;
            }
            queue.push(Submission { tag: next, request });
            next += 1;
        }
        for (shard, queue) in pending.iter_mut().enumerate() {
            if !queue.is_empty() {
                let taken = port.submit_batch(shard as u32, queue);
                queue.drain(..taken);
                busy |= taken > 0;
            }
        }
        completions.clear();
        if port.poll(&mut completions) > 0 {
            let now_ns = started.elapsed().as_nanos() as u64;
            for completion in &completions {
                let latency_ns = now_ns.saturating_sub(due_ns(completion.tag));
                histogram.record(latency_ns.max(1)).expect("in bounds");
                tally.add(completion);
            }
            done += completions.len() as u64;
            busy = true;
        }
        if !busy {
            idle.idle();
        }
    }
    (histogram, tally)
}

/// An open-loop point: one runtime, `reps` runs of `requests` at `rate` one after the other
/// (accounts and keys continue, so every request is new), then the checks.
fn open_point(
    workload: Workload,
    shard_count: u32,
    rate: u64,
    requests: u64,
    reps: u64,
    spin: u64,
) -> Point {
    let total = requests * reps;
    let plan = Plan::new(workload, total, requests, 0x5eed ^ rate);
    let mut rig = Rig::start(workload, shard_count, total, spin);
    let idle = DriverIdle::for_shards(shard_count);
    pin_driver(shard_count);
    let mut runs = Vec::new();
    let mut ok = 0;
    for rep in 0..reps {
        let (histogram, tally) =
            open_run(&mut rig.port, &plan, rate, rep * requests, requests, idle);
        ok += tally.ok;
        runs.push(quantiles(&histogram));
    }
    let (_, idling) = rig.finish(ok);
    Point::of(runs, ok as f64 / total as f64, idling)
}

fn micros(nanos: u64) -> String {
    let micros = nanos as f64 / 1_000.0;
    if micros < 10.0 {
        format!("{micros:.2}")
    } else if micros < 1_000.0 {
        format!("{micros:.1}")
    } else {
        format!("{micros:.0}")
    }
}

/// p50, p90, p99, p99.9, p99.99, max.
fn quantiles(histogram: &Histogram<u64>) -> [u64; 6] {
    [
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.9),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.value_at_quantile(0.9999),
        histogram.max(),
    ]
}

/// An open-loop point measured in several runs: the run with the median p99 (every quantile
/// printed comes from that one run), and the lowest and highest p99 of all the runs.
struct Point {
    quantiles: [u64; 6],
    /// Share of OK replies over all the runs.
    ok_share: f64,
    p99_low: u64,
    p99_high: u64,
    /// The largest latency of all the runs.
    max_high: u64,
    /// The shard loops' idling over the point's runtime (its runs and the set-up).
    idling: LoopCounters,
}

impl Point {
    fn of(mut runs: Vec<[u64; 6]>, ok_share: f64, idling: LoopCounters) -> Point {
        runs.sort_by_key(|quantiles| quantiles[2]);
        Point {
            quantiles: runs[runs.len() / 2],
            ok_share,
            p99_low: runs[0][2],
            p99_high: runs[runs.len() - 1][2],
            max_high: runs.iter().map(|quantiles| quantiles[5]).max().unwrap_or(0),
            idling,
        }
    }

    fn spread(&self) -> String {
        format!("{}–{}", micros(self.p99_low), micros(self.p99_high))
    }
}

fn rate_label(rate: u64) -> String {
    if rate >= 1_000_000 {
        format!("{} M", rate as f64 / 1e6)
    } else {
        format!("{} k", rate as f64 / 1e3)
    }
}

fn parse_list<T: std::str::FromStr>(value: Option<String>, name: &str) -> Vec<T> {
    value
        .unwrap_or_default()
        .split(',')
        .map(|item| item.trim().parse().unwrap_or_else(|_| panic!("bad {name}: {item}")))
        .collect()
}

struct Options {
    quick: bool,
    shards: Vec<u32>,
    workloads: Vec<Workload>,
    rates: Vec<u64>,
    requests: Option<u64>,
    spin: u64,
    closed: bool,
    open: bool,
    compare: bool,
    noise: bool,
    /// Runs per open-loop point.
    reps: u64,
}

impl Options {
    fn parse() -> Options {
        let mut arguments = std::env::args().skip(1);
        let mut names = vec!["sold-out".to_string(), "ample".to_string(), "zipf".to_string()];
        let mut options = Options {
            quick: false,
            shards: vec![1, 2],
            workloads: Vec::new(),
            rates: Vec::new(),
            requests: None,
            spin: IDLE_SPIN_US,
            closed: true,
            open: true,
            compare: true,
            noise: true,
            reps: 0,
        };
        while let Some(argument) = arguments.next() {
            match argument.as_str() {
                "--quick" => options.quick = true,
                "--shards" => options.shards = parse_list(arguments.next(), "shards"),
                "--workloads" => names = parse_list(arguments.next(), "workloads"),
                "--rates" => options.rates = parse_list(arguments.next(), "rates"),
                "--requests" => {
                    options.requests = Some(parse_list(arguments.next(), "requests")[0]);
                }
                "--spin" => options.spin = parse_list(arguments.next(), "spin")[0],
                "--no-closed" => options.closed = false,
                "--no-open" => options.open = false,
                "--no-compare" => options.compare = false,
                "--no-noise" => options.noise = false,
                "--reps" => options.reps = parse_list(arguments.next(), "reps")[0],
                "--bench" => {} // passed by `cargo bench`
                other => panic!("unknown option {other}"),
            }
        }
        if options.reps == 0 {
            options.reps = if options.quick { 1 } else { 3 };
        }
        let zipf_skus = if options.quick { 10_000 } else { 100_000 };
        options.workloads = names
            .iter()
            .map(|name| match name.as_str() {
                "sold-out" => Workload::SoldOut,
                "ample" => Workload::Ample,
                "zipf" => Workload::Zipf { skus: zipf_skus },
                other => panic!("unknown workload {other}"),
            })
            .collect();
        if options.rates.is_empty() {
            options.rates = if options.quick {
                vec![250_000, 1_000_000]
            } else {
                vec![250_000, 500_000, 1_000_000, 2_000_000, 3_000_000, 5_000_000]
            };
        }
        options
    }

    /// Requests of one open-loop run at `rate`: half a second of traffic, at least 300,000
    /// requests (30 beyond the p99.99) and at most 1,000,000 (a point's runtime is sized
    /// for all its runs); `--quick`: 0.2 s.
    fn open_requests(&self, rate: u64) -> u64 {
        match self.requests {
            Some(requests) => requests,
            None if self.quick => (rate / 5).clamp(50_000, 200_000),
            None => (rate / 2).clamp(300_000, 1_000_000),
        }
    }
}

fn main() {
    let options = Options::parse();
    cores(); // read the core list before any pinning
    let run_started = Instant::now();
    let noise_seconds = if options.quick { 0.5 } else { 2.0 };
    if options.noise {
        print_noise("before", noise_seconds);
    }

    // Closed loop, which also tells which rates the open loop can offer.
    let closed_requests: u64 = if options.quick { 200_000 } else { 2_000_000 };
    let mut capacity: Vec<(Workload, u32, f64)> = Vec::new();
    if options.closed {
        println!(
            "Closed loop ({WINDOW} in flight, shards' idle spin {} µs; {CLOSED_WINDOWS} windows):",
            options.spin
        );
        println!();
        println!(
            "| workload | shards | requests | ops/s (best window) | per shard | median window | OK | via coordinator | define s |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for &workload in &options.workloads {
            for &shard_count in &options.shards {
                let run = closed_loop(workload, shard_count, closed_requests, options.spin);
                capacity.push((workload, shard_count, run.best));
                println!(
                    "| {} | {shard_count} | {closed_requests} | {:.2} M | {:.2} M | {:.2} M | {} | {:.1} % | {:.2} |",
                    workload.name(),
                    run.best / 1e6,
                    run.best / 1e6 / f64::from(shard_count),
                    run.median / 1e6,
                    run.ok,
                    run.acquires as f64 * 100.0 / closed_requests as f64,
                    run.define_seconds,
                );
            }
        }
        println!();
    }
    let capacity_of = |workload: Workload, shard_count: u32| {
        capacity
            .iter()
            .find(|(w, s, _)| *w == workload && *s == shard_count)
            .map_or(f64::INFINITY, |(_, _, rate)| *rate)
    };

    if options.open {
        for &workload in &options.workloads {
            println!(
                "Open loop, {} (shards' idle spin {} µs), µs from intended start:",
                workload.title(),
                options.spin
            );
            println!();
            println!(
                "| shards | offered | requests per run | OK | p50 | p90 | p99 | p99.9 | p99.99 | max | p99 of the {} runs | max of the runs | parks | to timeout | to timeout, input waiting |",
                options.reps
            );
            println!(
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            for &shard_count in &options.shards {
                let max = capacity_of(workload, shard_count);
                for &rate in &options.rates {
                    if rate as f64 > max {
                        println!(
                            "| {shard_count} | {} | not offered: above the closed-loop {:.2} M/s | | | | | | | | | | | | |",
                            rate_label(rate),
                            max / 1e6
                        );
                        continue;
                    }
                    let requests = options.open_requests(rate);
                    let point = open_point(
                        workload,
                        shard_count,
                        rate,
                        requests,
                        options.reps,
                        options.spin,
                    );
                    let q = point.quantiles.map(micros);
                    println!(
                        "| {shard_count} | {} | {requests} | {:.1} % | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        rate_label(rate),
                        point.ok_share * 100.0,
                        q[0],
                        q[1],
                        q[2],
                        q[3],
                        q[4],
                        q[5],
                        point.spread(),
                        micros(point.max_high),
                        point.idling.parks,
                        point.idling.parks_timed_out,
                        point.idling.parks_timed_out_with_input,
                    );
                }
            }
            println!();
        }
    }

    if options.compare {
        let spin = options.spin.max(1);
        println!(
            "Idle spin: open loop, shards' idle_spin_us 0 (park at once) vs {spin}, µs from \
             intended start, and the ratio 0 / {spin} (1 M/s, or the largest of 500 k, 250 k, \
             100 k under half the closed-loop maximum):"
        );
        println!();
        println!(
            "| workload | shards | offered | idle spin µs | p50 | p90 | p99 | p99.9 | p99.99 | max | p99 of the {} runs |",
            options.reps
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let spin_label = spin.to_string();
        for &workload in &options.workloads {
            for &shard_count in &options.shards {
                let half = capacity_of(workload, shard_count) / 2.0;
                let rate = [1_000_000, 500_000, 250_000, 100_000]
                    .into_iter()
                    .find(|&rate| rate as f64 <= half)
                    .unwrap_or(100_000);
                let requests = options.open_requests(rate);
                let parked = open_point(workload, shard_count, rate, requests, options.reps, 0);
                let spinning =
                    open_point(workload, shard_count, rate, requests, options.reps, spin);
                let prefix =
                    format!("| {} | {shard_count} | {}", workload.name(), rate_label(rate));
                for (label, point) in [("0", &parked), (spin_label.as_str(), &spinning)] {
                    println!(
                        "{prefix} | {label} | {} | {} |",
                        point.quantiles.map(micros).join(" | "),
                        point.spread()
                    );
                }
                let (parked, spinning) = (parked.quantiles, spinning.quantiles);
                let ratio: Vec<String> = (0..6)
                    .map(|i| format!("{:.1}×", parked[i] as f64 / spinning[i].max(1) as f64))
                    .collect();
                println!("{prefix} | ratio 0 / {spin} | {} | |", ratio.join(" | "));
            }
        }
        println!();
    }

    if options.noise {
        print_noise("after", noise_seconds);
    }
    println!("Total {:.0} s.", run_started.elapsed().as_secs_f64());
}
