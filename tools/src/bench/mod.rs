//! `rush bench`: a load generator for Rush (and, with `--protocol resp`, for Redis running
//! the same seckill logic as a Lua script), with latency measured the way wrk2 measures it.
//!
//! ```text
//! rush bench 127.0.0.1:7070 -R 20000 -c 8 -P 16 -d 10s --warmup 2s -w seckill-hot \
//!     --hgrm run.hgrm --hlog run.hlog --json run.json --plot run.png
//! rush plot a.hgrm b.hgrm -o compare.svg
//! ```
//!
//! * **Load.** `-R/--rate` is an open loop: every request has an intended send time on a
//!   fixed plan and its latency runs from that time (corrected for coordinated omission); a
//!   request whose connection's window (`-P`) is full waits, and the wait counts. `--closed`
//!   keeps every window full for maximum throughput; its latencies are not corrected, and
//!   the output says so. `-c` connections are spread over `-t` threads, each an event loop
//!   with its own histograms (merged at the end). `-d` or `-n` bounds the measured phase;
//!   `--warmup` runs first and is discarded. `--shard-aware` opens one socket per shard
//!   (ports from the PING topology) in each connection and sends each request to its
//!   account's home shard.
//! * **Set-up.** Before the load the bench creates its own SKUs and funds its own accounts
//!   over the admin port (`--admin`, default: the target's port + 1), in id ranges derived
//!   from `--seed` (see `workload.rs`): runs with different seeds never collide, and a run
//!   whose seed was already used against the server stops before sending anything. Without
//!   `--seed` the seed is random and printed.
//! * **Checks.** After the load (unless `--no-check`) the bench reads every SKU and wallet it
//!   created back and checks stock conservation, its own count of successful reserves,
//!   confirms, cancels and expiries against the server's, wallet balances, and exactly-once
//!   for retried keys (see `check.rs`). Exit code: 0, or 1 when a check fails or the run
//!   had errors (a broken connection, requests never answered).
//! * **Output.** A summary (stdout; stderr when `--json -` takes stdout), `--json FILE|-`,
//!   `--hgrm FILE` (HdrHistogram percentile distribution, µs), `--hlog FILE` (HdrHistogram
//!   interval log v1.3, one histogram per second), `--plot FILE.svg|FILE.png`, and a progress
//!   line on stderr when it is a terminal.

mod admin;
mod check;
mod driver;
mod report;
mod resp;
mod workload;
mod zipf;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};
use rush_net::client::{ClientConfig, Pipeline};
use serde_json::{json, Map, Value};

use crate::measure::flags::{parse_duration, parse_percentiles, resolve, Percentiles};
use crate::measure::plot;
use crate::measure::report::OutputFiles;
use crate::measure::tally::Merged;
use crate::measure::workers::{run_workers, ProgressLine};
use driver::{BenchCounts, Load, Shared, Stop, Wire, OPERATIONS};
use workload::{Layout, Mix, Params, Workload};

/// Wire protocols `--protocol` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// Rush's binary protocol (docs/PROTOCOL.md).
    Rush,
    /// RESP2 to a Redis server: seckill-hot as EVALSHA of a Lua script (and ping).
    Resp,
}

/// `rush bench`: drive load at a server and measure latency.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The server's address (Rush's public port, or Redis with --protocol resp).
    #[arg(default_value = "127.0.0.1:7070")]
    pub target: String,
    /// Open loop: total requests per second over all connections (latency from each
    /// request's intended send time).
    #[arg(short = 'R', long, conflicts_with = "closed")]
    pub rate: Option<f64>,
    /// Closed loop: keep every connection's window full (max throughput; latencies are not
    /// corrected for coordinated omission).
    #[arg(long)]
    pub closed: bool,
    /// Connections (each with --shard-aware: one socket per shard).
    #[arg(short = 'c', long, default_value_t = 4)]
    pub connections: usize,
    /// Requests in flight per connection.
    #[arg(short = 'P', long, default_value_t = 16)]
    pub pipeline: usize,
    /// Threads driving the connections (at most --connections).
    #[arg(short = 't', long, default_value_t = 1)]
    pub threads: usize,
    /// Length of the measured phase (e.g. 10s, 500ms, 2m) [default: 10s].
    #[arg(short = 'd', long, value_parser = parse_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,
    /// Requests in the measured phase, instead of --duration.
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Warm-up before the measured phase (recorded apart and discarded).
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub warmup: Duration,
    /// Seed of the request generators and of the run's SKU and account ranges (random when
    /// absent; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Send each request to its account's home shard, on the per-shard ports the server
    /// announces in PING.
    #[arg(long)]
    pub shard_aware: bool,
    /// The workload: seckill-hot, seckill-many, reserve-confirm, reserve-cancel,
    /// hold-expire, waitlist or ping.
    #[arg(short = 'w', long, default_value = "seckill-hot", conflicts_with = "mix")]
    pub workload: String,
    /// Several workloads with weights, e.g. seckill-hot=70,reserve-confirm=20,ping=10.
    #[arg(long)]
    pub mix: Option<String>,
    /// The admin address for set-up and read-back [default: the target's port + 1].
    #[arg(long)]
    pub admin: Option<String>,
    /// The wire protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Rush)]
    pub protocol: Protocol,
    /// Units of each limited SKU (seckill-hot, seckill-many, hold-expire, waitlist).
    #[arg(long, default_value_t = 1000)]
    pub stock: u64,
    /// SKUs of seckill-many.
    #[arg(long, default_value_t = 64)]
    pub skus: u32,
    /// Zipf exponent of seckill-many's SKU popularity.
    #[arg(long, default_value_t = 1.0)]
    pub zipf_s: f64,
    /// Buyer accounts of the seckill workloads.
    #[arg(long, default_value_t = 100_000)]
    pub buyers: u64,
    /// Per-user limit of the seckill SKUs (0: none, so every RESERVE that finds stock makes
    /// a hold: with --stock above the run's requests, the success path at full speed).
    #[arg(long, default_value_t = 1)]
    pub per_user_limit: u32,
    /// Funded accounts of reserve-confirm, reserve-cancel and hold-expire.
    #[arg(long, default_value_t = 1000)]
    pub wallets: u64,
    /// Percentage of seckill requests that re-send an earlier request (same account and key).
    #[arg(long, default_value_t = 5.0)]
    pub retry_pct: f64,
    /// hold_ms of hold-expire's RESERVEs.
    #[arg(long, default_value_t = 100)]
    pub hold_ms: u32,
    /// wait_ms of waitlist's RESERVEs.
    #[arg(long, default_value_t = 100)]
    pub wait_ms: u32,
    /// Percentage of waitlist's successful reservations that are cancelled.
    #[arg(long, default_value_t = 50.0)]
    pub cancel_pct: f64,
    /// Percentiles to report, e.g. 50,99,99.9.
    #[arg(long, default_value = "50,90,99,99.9,99.99", value_parser = parse_percentiles)]
    pub percentiles: Percentiles,
    /// Write the latency distribution in HdrHistogram's percentile format (µs).
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Write an HdrHistogram interval log (v1.3, one histogram per second).
    #[arg(long)]
    pub hlog: Option<PathBuf>,
    /// Write the results as JSON to FILE, or to stdout with "-".
    #[arg(long)]
    pub json: Option<String>,
    /// Plot latency by percentile to FILE.svg or FILE.png.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Skip the invariant checks after the run.
    #[arg(long)]
    pub no_check: bool,
    /// How long to wait for the last responses after the load stops (and the longest the
    /// bench waits with no response at all before giving up).
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub drain_timeout: Duration,
}

/// Everything `run` needs, checked.
struct Plan {
    mix: Mix,
    params: Params,
    load: Load,
    stop: Stop,
    seed: u64,
    drain_timeout: Duration,
    json_to_stdout: bool,
}

fn validate(args: &BenchArgs) -> anyhow::Result<Plan> {
    let load = match (args.rate, args.closed) {
        (Some(rate), false) => {
            if !(rate.is_finite() && rate > 0.0) {
                bail!("--rate must be a number of requests per second above 0, not {rate}");
            }
            if rate > 50_000_000.0 {
                bail!("--rate {rate} is beyond what one machine can send (at most 50000000)");
            }
            Load::Open { rate }
        }
        (None, true) => Load::Closed,
        _ => bail!(
            "choose the load: --rate N (open loop, latency corrected for coordinated omission) \
             or --closed (max throughput)"
        ),
    };
    if !(1..=10_000).contains(&args.connections) {
        bail!("--connections must be 1..=10000, not {}", args.connections);
    }
    if !(1..=driver::MAX_PIPELINE).contains(&args.pipeline) {
        bail!("--pipeline must be 1..={}, not {}", driver::MAX_PIPELINE, args.pipeline);
    }
    if args.threads == 0 || args.threads > args.connections {
        bail!(
            "--threads must be 1..=--connections ({}), not {}: each thread drives at least \
             one connection",
            args.connections,
            args.threads
        );
    }
    if args.threads > 1024 {
        bail!("--threads must be at most 1024");
    }
    let stop = match (args.duration, args.requests) {
        (_, Some(0)) => bail!("--requests must be at least 1"),
        (_, Some(count)) => Stop::Requests(count),
        (Some(duration), None) if duration.is_zero() => bail!("--duration must be above 0"),
        (Some(duration), None) => Stop::After(duration),
        (None, None) => Stop::After(Duration::from_secs(10)),
    };
    if args.drain_timeout.is_zero() {
        bail!("--drain-timeout must be above 0");
    }
    let mix = match &args.mix {
        Some(text) => Mix::parse(text)?,
        None => Mix::single(Workload::from_name(&args.workload)?),
    };
    if args.stock == 0 || args.stock > 1_000_000_000_000 {
        bail!("--stock must be 1..=10^12, not {}", args.stock);
    }
    if args.skus == 0 || u64::from(args.skus) > workload::SKU_RANGE - 16 {
        bail!("--skus must be 1..={}, not {}", workload::SKU_RANGE - 16, args.skus);
    }
    if !(args.zipf_s.is_finite() && args.zipf_s > 0.0 && args.zipf_s <= 10.0) {
        bail!("--zipf-s must be in (0, 10], not {}", args.zipf_s);
    }
    if args.buyers == 0 || args.buyers > 1 << 21 {
        bail!("--buyers must be 1..=2097152, not {}", args.buyers);
    }
    if args.per_user_limit > workload::PER_USER_LIMIT_MAX {
        bail!(
            "--per-user-limit must be 0 (none) to {}, not {}",
            workload::PER_USER_LIMIT_MAX,
            args.per_user_limit
        );
    }
    if args.wallets == 0 || args.wallets > 1 << 20 {
        bail!("--wallets must be 1..=1048576, not {}", args.wallets);
    }
    for (flag, value) in [("--retry-pct", args.retry_pct), ("--cancel-pct", args.cancel_pct)] {
        if !(0.0..=100.0).contains(&value) {
            bail!("{flag} must be a percentage in [0, 100], not {value}");
        }
    }
    if args.retry_pct >= 100.0 {
        bail!("--retry-pct must be below 100 (some requests must be new)");
    }
    if args.hold_ms == 0 || args.wait_ms == 0 {
        bail!("--hold-ms and --wait-ms must be at least 1");
    }
    if let Some(plot) = &args.plot {
        plot::Format::of(plot)?;
    }
    if args.protocol == Protocol::Resp {
        if let Some(other) =
            mix.workloads().find(|w| !matches!(w, Workload::SeckillHot | Workload::Ping))
        {
            bail!("--protocol resp runs seckill-hot and ping only, not {other}");
        }
        if args.shard_aware {
            bail!("--shard-aware is for Rush servers (--protocol rush)");
        }
        if args.admin.is_some() {
            bail!("--admin is for Rush servers: with --protocol resp, set-up uses the target");
        }
    }
    let seed = args.seed.unwrap_or_else(random_seed);
    // A parked RESERVE is answered only when its wait ends: never give up before that.
    let drain_timeout = if mix.contains(Workload::Waitlist) {
        args.drain_timeout
            .max(Duration::from_millis(u64::from(args.wait_ms)) + Duration::from_secs(2))
    } else {
        args.drain_timeout
    };
    Ok(Plan {
        params: Params {
            stock: args.stock,
            skus: args.skus,
            zipf_s: args.zipf_s,
            buyers: args.buyers,
            per_user_limit: args.per_user_limit,
            wallets: args.wallets,
            retry_pct: args.retry_pct,
            hold_ms: args.hold_ms,
            wait_ms: args.wait_ms,
            cancel_pct: args.cancel_pct,
        },
        mix,
        load,
        stop,
        seed,
        drain_timeout,
        json_to_stdout: args.json.as_deref() == Some("-"),
    })
}

fn random_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |time| time.as_nanos() as u64);
    let mut state = nanos ^ (u64::from(std::process::id()) << 32);
    crate::measure::rng::splitmix64(&mut state) >> 1
}

/// Runs the bench; returns the process exit code (0, or 1 when a check failed or the run had
/// errors).
pub fn run(args: &BenchArgs) -> anyhow::Result<i32> {
    let plan = validate(args)?;
    let target = resolve(&args.target)?;
    let layout = Layout::new(plan.seed, &plan.mix, &plan.params);
    let zipf = plan
        .mix
        .contains(Workload::SeckillMany)
        .then(|| zipf::Zipf::new(plan.params.skus as usize, plan.params.zipf_s));
    let mut out: Box<dyn Write> =
        if plan.json_to_stdout { Box::new(io::stderr()) } else { Box::new(io::stdout()) };

    // Set-up: the target's layout, the run's SKUs and wallets.
    let mut server = Server::connect(args, target, &layout)?;
    let addresses = server.load_addresses(args.shard_aware, target)?;
    server.set_up(&layout)?;
    let wire = server.wire.clone();

    writeln!(out, "{}", header(args, &plan, &layout, &server))?;
    let streams = driver::connect_all(&addresses, args.connections)?;
    let mut per_thread: Vec<Vec<(usize, Vec<std::net::TcpStream>)>> =
        (0..args.threads).map(|_| Vec::new()).collect();
    for (index, sockets) in streams.into_iter().enumerate() {
        per_thread[index % args.threads].push((index, sockets));
    }
    // A moment for the threads to start before the first intended send.
    let t0 = Instant::now() + Duration::from_millis(5);
    let main_start = t0 + args.warmup;
    let base_time = SystemTime::now() + main_start.saturating_duration_since(Instant::now());
    let shared = Shared {
        layout: &layout,
        mix: &plan.mix,
        params: &plan.params,
        zipf: zipf.as_ref(),
        wire: &wire,
        seed: plan.seed,
        load: plan.load,
        stop: plan.stop,
        pipeline: args.pipeline,
        connections: args.connections,
        t0,
        main_start,
        drain_timeout: plan.drain_timeout,
    };
    let line = ProgressLine { completed_label: "completed", rate: true };
    let results = run_workers("bench", per_thread, t0, line, |connections, reporter| {
        Ok(driver::run_worker(&shared, connections, reporter))
    })?;
    let run_end = Instant::now();
    let merged: Merged<BenchCounts> = Merged::merge(results, OPERATIONS.len(), main_start);

    // Read-back and checks.
    let checks = if args.no_check {
        None
    } else {
        let hold_expire = layout.skus.iter().any(|sku| sku.workload == Workload::HoldExpire);
        if hold_expire {
            let wait = Duration::from_millis(u64::from(plan.params.hold_ms) + 300);
            writeln!(
                out,
                "Waiting {} ms for every hold-expire hold to pass its deadline...",
                wait.as_millis()
            )?;
            std::thread::sleep((run_end + wait).saturating_duration_since(Instant::now()));
        }
        let long_holds_may_expire =
            t0.elapsed() >= Duration::from_millis(u64::from(workload::LONG_HOLD_MS));
        let context = check::Context {
            layout: &layout,
            tallies: &merged.counts.skus,
            exactly_once: &merged.counts.exactly_once,
            long_holds_may_expire,
            short_holds_expired: hold_expire,
        };
        Some(server.check(&context)?)
    };

    let report = report::Report {
        settings: settings_json(args, &plan, &layout, &server),
        merged: &merged,
        percentiles: &args.percentiles.0,
        planned: match (plan.load, plan.stop) {
            (Load::Open { rate }, Stop::After(duration)) => {
                Some((rate * duration.as_secs_f64()).floor() as u64)
            }
            _ => None,
        },
        corrected: matches!(plan.load, Load::Open { .. }),
        checks: checks.as_deref(),
    };
    report.write_summary(&mut out)?;
    let files = OutputFiles {
        json: args.json.as_deref(),
        hgrm: args.hgrm.as_deref(),
        hlog: args.hlog.as_deref(),
        plot: args.plot.as_deref(),
    };
    files.write(
        "rush bench",
        || report.to_json(),
        &merged.tally,
        merged.elapsed,
        base_time,
        || format!("{} {}", args.protocol_name(), plan.mix),
    )?;
    let failed = checks.as_ref().is_some_and(|checks| checks.iter().any(|check| !check.pass));
    Ok(i32::from(failed || !merged.tally.errors.is_empty()))
}

impl BenchArgs {
    fn protocol_name(&self) -> &'static str {
        match self.protocol {
            Protocol::Rush => "rush",
            Protocol::Resp => "resp",
        }
    }
}

/// The server side of a run: how to set up, what to send on, how to read back.
struct Server {
    protocol: Protocol,
    wire: Wire,
    admin: Option<admin::Admin>,
    redis: Option<resp::Client>,
    shard_count: u16,
    /// Shard `i` also listens on `shard_port_base + i` (0: no per-shard ports).
    shard_port_base: u16,
}

impl Server {
    fn connect(args: &BenchArgs, target: SocketAddr, layout: &Layout) -> anyhow::Result<Server> {
        match args.protocol {
            Protocol::Rush => {
                let admin_address = match &args.admin {
                    Some(address) => resolve(address)?,
                    None => {
                        let port = target.port().checked_add(1).context(
                            "the target port is 65535: give the admin address with --admin",
                        )?;
                        SocketAddr::new(target.ip(), port)
                    }
                };
                let mut probe = Pipeline::with_config(target, ClientConfig::default())
                    .with_context(|| format!("cannot connect to {target}"))?;
                let topology = probe.ping().with_context(|| format!("PING {target}"))?;
                Ok(Server {
                    protocol: Protocol::Rush,
                    wire: Wire::Rush,
                    admin: Some(admin::Admin::connect(admin_address)?),
                    redis: None,
                    shard_count: topology.shard_count,
                    shard_port_base: topology.shard_port_base,
                })
            }
            Protocol::Resp => {
                let mut redis = resp::Client::connect(target)?;
                let sha = redis.load_script().context("SCRIPT LOAD")?;
                let per_user_limit = layout
                    .skus
                    .iter()
                    .find(|sku| sku.workload == Workload::SeckillHot)
                    .map_or(0, |sku| sku.per_user_limit);
                Ok(Server {
                    protocol: Protocol::Resp,
                    wire: Wire::Resp(resp::Script { sha, per_user_limit }),
                    admin: None,
                    redis: Some(redis),
                    shard_count: 0,
                    shard_port_base: 0,
                })
            }
        }
    }

    /// The addresses each load connection opens: the target, or every shard's own port.
    fn load_addresses(
        &self,
        shard_aware: bool,
        target: SocketAddr,
    ) -> anyhow::Result<Vec<SocketAddr>> {
        if !shard_aware {
            return Ok(vec![target]);
        }
        let base = self.shard_port_base;
        if self.shard_count == 0 || base == 0 {
            bail!("--shard-aware: the server announces no per-shard ports (start it with them on)");
        }
        (0..self.shard_count)
            .map(|shard| {
                let port = base.checked_add(shard).context("per-shard port out of range")?;
                Ok(SocketAddr::new(target.ip(), port))
            })
            .collect()
    }

    fn set_up(&mut self, layout: &Layout) -> anyhow::Result<()> {
        if let Some(admin) = &mut self.admin {
            admin.set_up(layout)?;
            // With several shards, PUT_SKU reaches the other shards through their rings:
            // give that a moment before the first RESERVE lands on one of them.
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(redis) = &mut self.redis {
            for sku in &layout.skus {
                let key = resp::stock_key(sku.id);
                if redis.get_integer(&key)?.is_some() {
                    bail!(
                        "{key} already exists: seed {} was used by an earlier run against this \
                         server; pass another --seed",
                        layout.seed
                    );
                }
                redis.command(&[b"SET", key.as_bytes(), sku.stock.to_string().as_bytes()])?;
            }
        }
        Ok(())
    }

    fn check(&mut self, context: &check::Context) -> anyhow::Result<Vec<check::Check>> {
        if let Some(admin) = &mut self.admin {
            let (views, settled) = admin.read_skus(context.layout)?;
            let accounts: Vec<u64> = context.layout.wallet_accounts().collect();
            let wallets = admin.read_wallets(&accounts)?;
            return Ok(check::rush(context, &views, settled, &wallets));
        }
        let redis = self.redis.as_mut().context("no server connection")?;
        let stock = context
            .layout
            .skus
            .iter()
            .map(|sku| redis.get_integer(&resp::stock_key(sku.id)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(check::resp(context, &stock))
    }
}

fn header(args: &BenchArgs, plan: &Plan, layout: &Layout, server: &Server) -> String {
    let load = match plan.load {
        Load::Open { rate } => format!("open loop at {rate} req/s"),
        Load::Closed => "closed loop".to_string(),
    };
    let length = match plan.stop {
        Stop::After(duration) => format!("{:.2} s", duration.as_secs_f64()),
        Stop::Requests(count) => format!("{count} requests"),
    };
    let warmup = if args.warmup.is_zero() {
        String::new()
    } else {
        format!(" after {:.2} s of warm-up", args.warmup.as_secs_f64())
    };
    let shards = match server.protocol {
        Protocol::Rush => format!(
            ", {} shard(s){}",
            server.shard_count,
            if args.shard_aware { ", shard-aware" } else { "" }
        ),
        Protocol::Resp => String::new(),
    };
    let mut text = format!(
        "rush bench: {} against {} ({}{shards}), {load}\n  \
         {} connection(s) × pipeline {} on {} thread(s), {length}{warmup}; seed {}\n  \
         SKUs {}..{}, accounts {}..{}",
        plan.mix,
        args.target,
        args.protocol_name(),
        args.connections,
        args.pipeline,
        args.threads,
        plan.seed,
        layout.sku_base,
        layout.sku_base + layout.skus.len() as u64,
        layout.account_base,
        layout.account_base + workload::ACCOUNT_RANGE,
    );
    if matches!(plan.load, Load::Closed) {
        text += "\n  (closed loop: latencies are NOT corrected for coordinated omission)";
    }
    text
}

fn settings_json(
    args: &BenchArgs,
    plan: &Plan,
    layout: &Layout,
    server: &Server,
) -> Map<String, Value> {
    let mut settings = Map::new();
    settings.insert("target".into(), json!(args.target));
    settings.insert("protocol".into(), json!(args.protocol_name()));
    settings.insert("workload".into(), json!(plan.mix.to_string()));
    let mix: Map<String, Value> = plan
        .mix
        .entries()
        .iter()
        .map(|(workload, weight)| (workload.name().to_string(), json!(weight)))
        .collect();
    settings.insert("mix".into(), Value::Object(mix));
    let (mode, rate) = match plan.load {
        Load::Open { rate } => ("open", json!(rate)),
        Load::Closed => ("closed", Value::Null),
    };
    settings.insert("mode".into(), json!(mode));
    settings.insert("rate".into(), rate);
    settings.insert("connections".into(), json!(args.connections));
    settings.insert("pipeline".into(), json!(args.pipeline));
    settings.insert("threads".into(), json!(args.threads));
    settings.insert("shard_aware".into(), json!(args.shard_aware));
    settings.insert("shards".into(), json!(server.shard_count));
    settings.insert("seed".into(), json!(plan.seed));
    let (duration, requests) = match plan.stop {
        Stop::After(duration) => (json!(duration.as_secs_f64()), Value::Null),
        Stop::Requests(count) => (Value::Null, json!(count)),
    };
    settings.insert("duration_s".into(), duration);
    settings.insert("requests".into(), requests);
    settings.insert("warmup_s".into(), json!(args.warmup.as_secs_f64()));
    settings.insert(
        "skus".into(),
        json!(layout
            .skus
            .iter()
            .map(|sku| {
                json!({
                    "id": sku.id,
                    "workload": sku.workload.name(),
                    "stock": sku.stock,
                    "per_user_limit": sku.per_user_limit,
                })
            })
            .collect::<Vec<_>>()),
    );
    settings.insert("account_first".into(), json!(layout.account_base));
    settings.insert("buyers".into(), json!(layout.buyers));
    settings.insert("wallets".into(), json!(layout.wallets));
    settings
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> anyhow::Result<Plan> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))?;
        validate(&cli.bench)
    }

    #[test]
    fn flags_are_validated() {
        assert!(parse(&["-R", "1000"]).is_ok());
        assert!(parse(&["--closed", "-n", "100"]).is_ok());
        let error = |args: &[&str]| parse(args).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error(&[]).contains("choose the load"));
        assert!(error(&["-R", "0"]).contains("--rate"));
        assert!(
            error(&["-R", "-5"]).contains("--rate") || error(&["-R", "-5"]).contains("unexpected")
        );
        assert!(error(&["-R", "1000", "--closed"]).contains("cannot be used"));
        assert!(error(&["-R", "10", "-c", "0"]).contains("--connections"));
        assert!(error(&["-R", "10", "-P", "0"]).contains("--pipeline"));
        assert!(error(&["-R", "10", "-c", "2", "-t", "3"]).contains("--threads"));
        assert!(error(&["-R", "10", "-n", "0"]).contains("--requests"));
        assert!(error(&["-R", "10", "-d", "0s"]).contains("--duration"));
        assert!(error(&["-R", "10", "-d", "1s", "-n", "5"]).contains("cannot be used"));
        assert!(error(&["-R", "10", "-w", "nope"]).contains("unknown workload"));
        assert!(error(&["-R", "10", "--mix", "ping=0"]).contains("at least 1"));
        assert!(error(&["-R", "10", "--plot", "x.jpg"]).contains(".svg or .png"));
        assert!(error(&["-R", "10", "--protocol", "resp", "-w", "waitlist"]).contains("resp"));
        assert!(error(&["-R", "10", "--retry-pct", "100"]).contains("--retry-pct"));
        let plan = parse(&["-R", "10", "-w", "waitlist", "--wait-ms", "4000"]).unwrap();
        assert_eq!(plan.drain_timeout, Duration::from_secs(6), "a parked RESERVE is waited for");
    }
}
