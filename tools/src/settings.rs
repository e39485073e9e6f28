//! What `rush serve` runs with: built-in defaults, overridden by the `--config` TOML file,
//! overridden by the command-line flags.
//!
//! | setting | flag | config key | default |
//! |---|---|---|---|
//! | public address | `--listen ADDR` | `listen = "ADDR"` | `0.0.0.0:7070` |
//! | admin address | `--admin-listen ADDR\|none` | `admin_listen = "ADDR"` or `"none"` | `127.0.0.1:7071` |
//! | metrics address (Prometheus, `/metrics`) | `--metrics-listen ADDR\|none` | `metrics_listen = "ADDR"` or `"none"` | `127.0.0.1:7072` |
//! | per-shard ports | `--shard-ports auto\|off\|BASE` | `shard_ports = "auto"`, `"off"` or a number | listen port + 100 (`auto` when the listen port is 0) |
//! | shards | `--shards N` (1..=64) | `shards = N` | the cores this process may run on (at most 64) |
//! | I/O backend | `--io auto\|io_uring\|epoll` | `io = "..."` | `auto`; precedence: flag, then the `RUSH_IO` environment variable, then the file |
//! | pinning | `--no-pin` | `pin = false` | pinned, shard `i` on the `i`-th core |
//! | sale | `--sale FILE` | `sale = "FILE"` (relative to the config file) | the embedded demo sale |
//! | data directory | `--data-dir DIR` | `data_dir = "DIR"` (relative to the config file) | `rush-data` in the working directory |
//! | durability | `--durability sync\|interval:MS\|none` | `durability = "..."` | `sync` |
//! | journal segment size | `--journal-segment-bytes BYTES` (1024..=1 GiB) | `journal_segment_bytes = BYTES` | 64 MiB ([`JOURNAL_SEGMENT_BYTES_DEFAULT`]) |
//! | snapshot period | `--snapshot-every N\|NMB\|never` (records ≥ 100, or a size ≥ 64KB) | `snapshot_every = "..."` | `256MB` of journal ([`SNAPSHOT_EVERY_DEFAULT`]) |
//! | ring capacity | — | `ring_capacity` | 4096 |
//! | engine capacities | — | `sku_max`, `account_max`, `reservation_max`, `waitlist_max`, `request_key_max`, `request_key_retention_ms`, `limit_entry_max`, `quantity_max`, `hold_ms_default`, `hold_ms_max`, `wait_ms_max` | [`engine_default`] (per server, shared by the shards: `Config::per_shard`) |
//! | connection limits | — | `connection_max`, `admin_connection_max`, `pipeline_max`, `inbound_bytes_max`, `outbound_bytes_max`, `connection_rate_per_s`, `connection_burst`, `source_connection_max` | `ConnLimits::default()` (per shard; per connection for the rate) |
//!
//! Unknown keys are an error, and every value is checked before anything starts; errors name
//! the file and the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{anyhow, bail, Context};
use rush_engine::quota::Placement;
use rush_engine::Config;
use rush_net::server::{BackendChoice, ConnLimits, ShardPorts, BACKEND_ENV};
use rush_runtime::journal::{Durability, SnapshotEvery, SNAPSHOT_EVERY_DEFAULT};
use rush_runtime::ring::RING_CAPACITY_MAX;
use rush_runtime::RuntimeConfig;
use serde::Deserialize;

/// The public address when neither flag nor file gives one.
pub const LISTEN_DEFAULT: &str = "0.0.0.0:7070";
/// The admin address when neither flag nor file gives one.
pub const ADMIN_LISTEN_DEFAULT: &str = "127.0.0.1:7071";
/// The metrics exporter's address when neither flag nor file gives one: loopback, like the
/// admin port (the figures tell a competitor how a sale goes; expose them deliberately).
pub const METRICS_LISTEN_DEFAULT: &str = "127.0.0.1:7072";
/// The default per-shard port base is the public port plus this.
pub const SHARD_PORT_OFFSET: u16 = 100;
/// The data directory when neither flag nor file gives one (relative to the working
/// directory).
pub const DATA_DIR_DEFAULT: &str = "rush-data";
/// Ring capacity when the file gives none.
pub const RING_CAPACITY_DEFAULT: usize = 4096;
/// Journal segment files are switched before they pass this size, unless set.
pub const JOURNAL_SEGMENT_BYTES_DEFAULT: u64 = rush_runtime::journal::writer::SEGMENT_BYTES_MAX;
/// The smallest segment size: the journal writer's own floor (it asserts it).
pub const JOURNAL_SEGMENT_BYTES_MIN: u64 = 1024;
/// The largest segment size: recovery reads a segment into memory whole, so a segment stays
/// a size a start can hold next to the engines.
pub const JOURNAL_SEGMENT_BYTES_MAX: u64 = 1 << 30;

/// The engine capacities of the whole server when the config file sets none: 2,000,000
/// reservations and request keys, 1,000,000 wallets and per-user limit counters, 10,000
/// SKUs, 100,000 waiters per SKU, 15 min default hold. The shards share them
/// ([`Config::per_shard`]: each shard gets its accounts' share plus a small headroom, and
/// knows every SKU), so the memory follows the configuration, not the core count: about
/// 500 MiB of tables whatever the number of shards (the start log prints it; the formula is
/// in docs/ARCHITECTURE.md, "Memory").
pub fn engine_default() -> Config {
    Config {
        sku_max: 10_000,
        account_max: 1_000_000,
        reservation_max: 2_000_000,
        request_key_max: 2_000_000,
        limit_entry_max: 1_000_000,
        ..Config::default()
    }
}

/// The `rush serve` flags.
#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// Public address; every shard accepts on it (SO_REUSEPORT) [default: 0.0.0.0:7070]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Admin address (the only one where PUT_SKU, DEPOSIT, ... are allowed), or `none`
    /// [default: 127.0.0.1:7071]
    #[arg(long, value_name = "ADDR|none")]
    pub admin_listen: Option<AdminListen>,
    /// Prometheus metrics address (HTTP, GET /metrics), or `none` [default: 127.0.0.1:7072]
    #[arg(long, value_name = "ADDR|none")]
    pub metrics_listen: Option<AdminListen>,
    /// Per-shard ports for shard-aware clients: shard i on BASE + i; `auto` picks a free
    /// range, `off` disables [default: listen port + 100, or auto if the listen port is 0]
    #[arg(long, value_name = "auto|off|BASE")]
    pub shard_ports: Option<ShardPortsArg>,
    /// Shards (threads), 1..=64 [default: the number of cores]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub shards: Option<u32>,
    /// I/O backend [default: $RUSH_IO, else the config file, else auto]
    #[arg(long, value_name = "auto|io_uring|epoll", value_parser = parse_backend)]
    pub io: Option<BackendChoice>,
    /// Do not pin shard threads to cores
    #[arg(long)]
    pub no_pin: bool,
    /// Settings file (TOML); flags override it
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Sale to create before serving (TOML or JSON: SKUs and wallets) [default: the
    /// embedded demo sale]
    #[arg(long, value_name = "FILE")]
    pub sale: Option<PathBuf>,
    /// How long an idle shard spins (watching its rings and sockets) before it sleeps in the
    /// kernel, in µs: lower wake-up latency for a core's worth of CPU while idle [default: 0]
    #[arg(long, value_name = "US", value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub idle_spin_us: Option<u64>,
    /// Record every frame received (with its connection and receive time) to FILE, for
    /// `rush replay` (format: docs/CAPTURE.md)
    #[arg(long, value_name = "FILE")]
    pub capture: Option<PathBuf>,
    /// Where the journals live (created if missing; locked: one server per directory)
    /// [default: rush-data in the working directory]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// sync: a reply leaves only once what it depends on is on disk; interval:MS: replies
    /// at once, the journal synced every MS (a crash loses at most the last MS of work, the
    /// state stays consistent); none: in memory only [default: sync]
    #[arg(long, value_name = "sync|interval:MS|none")]
    pub durability: Option<Durability>,
    /// Journal segment files are switched before they pass this size, 1024 to 1073741824
    /// (smaller segments: more files, each read whole at a start) [default: 67108864]
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(JOURNAL_SEGMENT_BYTES_MIN..=JOURNAL_SEGMENT_BYTES_MAX))]
    pub journal_segment_bytes: Option<u64>,
    /// Each shard snapshots its state after this much journal: N records (at least 100),
    /// a size such as 256MB (at least 64KB), or never; older segments are then deleted
    /// [default: 256MB]
    #[arg(long, value_name = "N|SIZE|never", value_parser = parse_snapshot_every)]
    pub snapshot_every: Option<SnapshotEvery>,
}

fn parse_snapshot_every(value: &str) -> Result<SnapshotEvery, String> {
    SnapshotEvery::parse(value)
}

fn parse_backend(value: &str) -> Result<BackendChoice, String> {
    value.parse().map_err(|error: rush_net::server::ServerError| error.to_string())
}

/// `--admin-listen` and `--metrics-listen`: an address, or `none` (or `off`) for no
/// listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminListen {
    Off,
    At(SocketAddr),
}

impl FromStr for AdminListen {
    type Err = String;

    fn from_str(value: &str) -> Result<AdminListen, String> {
        match value {
            "none" | "off" => Ok(AdminListen::Off),
            address => address
                .parse()
                .map(AdminListen::At)
                .map_err(|_| format!("{address:?} is neither an address (IP:PORT) nor `none`")),
        }
    }
}

/// `--shard-ports`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardPortsArg {
    Auto,
    Off,
    Base(u16),
}

impl FromStr for ShardPortsArg {
    type Err = String;

    fn from_str(value: &str) -> Result<ShardPortsArg, String> {
        match value {
            "auto" => Ok(ShardPortsArg::Auto),
            "off" | "none" => Ok(ShardPortsArg::Off),
            number => match number.parse::<u16>() {
                Ok(base) if base > 0 => Ok(ShardPortsArg::Base(base)),
                _ => Err(format!("{number:?} is not `auto`, `off` or a port number 1..=65535")),
            },
        }
    }
}

/// Where the sale comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaleSource {
    Demo,
    File(PathBuf),
}

/// Everything `rush serve` needs, resolved and checked.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    /// The metrics exporter's address (`None`: no exporter).
    pub metrics_listen: Option<SocketAddr>,
    pub shard_ports: ShardPorts,
    pub backend: BackendChoice,
    /// Who chose the backend: `--io`, `RUSH_IO`, the config file, or the default.
    pub backend_source: String,
    /// The engine capacities of the whole server, as configured; `runtime.engine` is one
    /// shard's share of them.
    pub engine_server: Config,
    pub runtime: RuntimeConfig,
    pub limits: ConnLimits,
    pub sale: SaleSource,
    pub durability: Durability,
    /// The data directory (unused with durability `none`).
    pub data_dir: PathBuf,
    pub journal_segment_bytes: u64,
    pub snapshot_every: SnapshotEvery,
}

/// The `--config` file as written. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigDoc {
    listen: Option<String>,
    admin_listen: Option<String>,
    metrics_listen: Option<String>,
    shard_ports: Option<toml::Value>,
    shards: Option<u32>,
    io: Option<String>,
    pin: Option<bool>,
    sale: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    durability: Option<String>,
    journal_segment_bytes: Option<u64>,
    snapshot_every: Option<String>,
    ring_capacity: Option<usize>,
    sku_max: Option<u32>,
    account_max: Option<u32>,
    reservation_max: Option<u32>,
    waitlist_max: Option<u32>,
    request_key_max: Option<u32>,
    request_key_retention_ms: Option<u64>,
    limit_entry_max: Option<u32>,
    quantity_max: Option<u32>,
    hold_ms_default: Option<u32>,
    hold_ms_max: Option<u32>,
    wait_ms_max: Option<u32>,
    connection_max: Option<u32>,
    admin_connection_max: Option<u32>,
    pipeline_max: Option<u32>,
    inbound_bytes_max: Option<usize>,
    outbound_bytes_max: Option<usize>,
    connection_rate_per_s: Option<u32>,
    connection_burst: Option<u32>,
    source_connection_max: Option<u32>,
}

/// A checked config file: each setting it gives, engine and limits merged onto the defaults.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    listen: Option<SocketAddr>,
    admin_listen: Option<AdminListen>,
    metrics_listen: Option<AdminListen>,
    shard_ports: Option<ShardPortsArg>,
    shards: Option<u32>,
    io: Option<BackendChoice>,
    pin: Option<bool>,
    /// Relative paths are taken from the config file's directory.
    sale: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    durability: Option<Durability>,
    journal_segment_bytes: Option<u64>,
    snapshot_every: Option<SnapshotEvery>,
    ring_capacity: usize,
    engine: Config,
    limits: ConnLimits,
}

impl ConfigFile {
    /// The engine capacities the file gives, on the defaults (`rush journal verify` replays
    /// with what `rush serve` ran with).
    pub fn engine(&self) -> Config {
        self.engine
    }

    /// Reads and checks a config file; every error names the file.
    pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        ConfigFile::parse(&text, path)
            .with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parses and checks a config file's text (`path` resolves a relative `sale`).
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<ConfigFile> {
        let doc: ConfigDoc = toml::from_str(text).map_err(|error| anyhow!("{error}"))?;
        let key = |key: &str, reason: String| anyhow!("key `{key}`: {reason}");

        let listen = match &doc.listen {
            Some(text) => Some(
                text.parse::<SocketAddr>()
                    .map_err(|_| key("listen", format!("{text:?} is not an address (IP:PORT)")))?,
            ),
            None => None,
        };
        let admin_listen = match &doc.admin_listen {
            Some(text) => Some(text.parse::<AdminListen>().map_err(|e| key("admin_listen", e))?),
            None => None,
        };
        let metrics_listen = match &doc.metrics_listen {
            Some(text) => Some(text.parse::<AdminListen>().map_err(|e| key("metrics_listen", e))?),
            None => None,
        };
        let shard_ports = match &doc.shard_ports {
            None => None,
            Some(toml::Value::String(text)) => {
                Some(text.parse::<ShardPortsArg>().map_err(|e| key("shard_ports", e))?)
            }
            Some(toml::Value::Integer(number)) => match u16::try_from(*number) {
                Ok(base) if base > 0 => Some(ShardPortsArg::Base(base)),
                _ => return Err(key("shard_ports", format!("{number} is not a port 1..=65535"))),
            },
            Some(other) => {
                return Err(key(
                    "shard_ports",
                    format!("expected \"auto\", \"off\" or a port number, found {other}"),
                ))
            }
        };
        if let Some(shards) = doc.shards {
            if shards == 0 || shards > Placement::SHARD_COUNT_MAX {
                return Err(key("shards", format!("{shards} is not 1..=64")));
            }
        }
        let io = match &doc.io {
            Some(text) => Some(parse_backend(text).map_err(|e| key("io", e))?),
            None => None,
        };
        let durability = match &doc.durability {
            Some(text) => Some(text.parse::<Durability>().map_err(|e| key("durability", e))?),
            None => None,
        };
        if let Some(bytes) = doc.journal_segment_bytes {
            if !(JOURNAL_SEGMENT_BYTES_MIN..=JOURNAL_SEGMENT_BYTES_MAX).contains(&bytes) {
                return Err(key(
                    "journal_segment_bytes",
                    format!(
                        "{bytes} is not {JOURNAL_SEGMENT_BYTES_MIN}..={JOURNAL_SEGMENT_BYTES_MAX}"
                    ),
                ));
            }
        }
        let snapshot_every = match &doc.snapshot_every {
            Some(text) => Some(SnapshotEvery::parse(text).map_err(|e| key("snapshot_every", e))?),
            None => None,
        };
        let ring_capacity = doc.ring_capacity.unwrap_or(RING_CAPACITY_DEFAULT);
        if !(2..=RING_CAPACITY_MAX).contains(&ring_capacity) {
            return Err(key("ring_capacity", format!("{ring_capacity} is not 2..=1048576")));
        }

        let defaults = engine_default();
        let engine = Config {
            sku_max: doc.sku_max.unwrap_or(defaults.sku_max),
            account_max: doc.account_max.unwrap_or(defaults.account_max),
            reservation_max: doc.reservation_max.unwrap_or(defaults.reservation_max),
            waitlist_max: doc.waitlist_max.unwrap_or(defaults.waitlist_max),
            request_key_max: doc.request_key_max.unwrap_or(defaults.request_key_max),
            request_key_retention_ms: doc
                .request_key_retention_ms
                .unwrap_or(defaults.request_key_retention_ms),
            limit_entry_max: doc.limit_entry_max.unwrap_or(defaults.limit_entry_max),
            quantity_max: doc.quantity_max.unwrap_or(defaults.quantity_max),
            hold_ms_default: doc.hold_ms_default.unwrap_or(defaults.hold_ms_default),
            hold_ms_max: doc.hold_ms_max.unwrap_or(defaults.hold_ms_max),
            wait_ms_max: doc.wait_ms_max.unwrap_or(defaults.wait_ms_max),
        };
        // The error names the field, the value given and the rule it broke.
        engine.validate().map_err(|error| key(error.field, error.to_string()))?;

        let default_limits = ConnLimits::default();
        let limits = ConnLimits {
            connection_max: doc.connection_max.unwrap_or(default_limits.connection_max),
            admin_connection_max: doc
                .admin_connection_max
                .unwrap_or(default_limits.admin_connection_max),
            pipeline_max: doc.pipeline_max.unwrap_or(default_limits.pipeline_max),
            inbound_bytes_max: doc.inbound_bytes_max.unwrap_or(default_limits.inbound_bytes_max),
            outbound_bytes_max: doc.outbound_bytes_max.unwrap_or(default_limits.outbound_bytes_max),
            connection_rate_per_s: doc
                .connection_rate_per_s
                .unwrap_or(default_limits.connection_rate_per_s),
            connection_burst: doc.connection_burst.unwrap_or(default_limits.connection_burst),
            source_connection_max: doc
                .source_connection_max
                .unwrap_or(default_limits.source_connection_max),
        };
        limits.validate().map_err(|error| key(error.field, error.to_string()))?;

        let relative = |file: PathBuf| match path.parent() {
            Some(directory) if file.is_relative() => directory.join(file),
            _ => file,
        };
        let data_dir = doc.data_dir.clone().map(relative);
        let sale = doc.sale.map(|sale| match path.parent() {
            Some(directory) if sale.is_relative() => directory.join(sale),
            _ => sale,
        });
        Ok(ConfigFile {
            path: path.to_path_buf(),
            listen,
            admin_listen,
            metrics_listen,
            shard_ports,
            shards: doc.shards,
            io,
            pin: doc.pin,
            sale,
            data_dir,
            durability,
            journal_segment_bytes: doc.journal_segment_bytes,
            snapshot_every,
            ring_capacity,
            engine,
            limits,
        })
    }
}

/// The value of the engine setting `field` (for error messages).
/// The cores this process may run on (at least 1): the core list `core_affinity` reads, or
/// `std::thread::available_parallelism` when it cannot be read.
pub fn core_count() -> u32 {
    let cores = core_affinity::get_core_ids().map(|cores| cores.len()).unwrap_or(0);
    let cores = if cores > 0 {
        cores
    } else {
        std::thread::available_parallelism().map(|count| count.get()).unwrap_or(1)
    };
    cores.clamp(1, Placement::SHARD_COUNT_MAX as usize) as u32
}

/// The backend `RUSH_IO` asks for, if it is set.
pub fn backend_from_env() -> anyhow::Result<Option<BackendChoice>> {
    if std::env::var_os(BACKEND_ENV).is_none() {
        return Ok(None);
    }
    BackendChoice::from_env()
        .map(Some)
        .map_err(|error| anyhow!("environment variable {BACKEND_ENV}: {error}"))
}

impl Settings {
    /// Flags over the file over the defaults (`env_io`: what `RUSH_IO` asks for, which comes
    /// between the `--io` flag and the file; `cores`: the default shard count).
    pub fn resolve(
        args: &ServeArgs,
        file: Option<&ConfigFile>,
        env_io: Option<BackendChoice>,
        cores: u32,
    ) -> anyhow::Result<Settings> {
        let listen = match args.listen.or(file.and_then(|file| file.listen)) {
            Some(address) => address,
            None => LISTEN_DEFAULT.parse().context("default listen address")?,
        };
        let admin_listen = match args.admin_listen.or(file.and_then(|file| file.admin_listen)) {
            Some(AdminListen::At(address)) => Some(address),
            Some(AdminListen::Off) => None,
            None => Some(ADMIN_LISTEN_DEFAULT.parse().context("default admin address")?),
        };
        let metrics_listen = match args.metrics_listen.or(file.and_then(|file| file.metrics_listen))
        {
            Some(AdminListen::At(address)) => Some(address),
            Some(AdminListen::Off) => None,
            None => Some(METRICS_LISTEN_DEFAULT.parse().context("default metrics address")?),
        };
        let shard_count = args
            .shards
            .or(file.and_then(|file| file.shards))
            .unwrap_or(cores)
            .clamp(1, Placement::SHARD_COUNT_MAX);
        let shard_ports = match args.shard_ports.or(file.and_then(|file| file.shard_ports)) {
            Some(ShardPortsArg::Auto) => ShardPorts::Auto,
            Some(ShardPortsArg::Off) => ShardPorts::Off,
            Some(ShardPortsArg::Base(base)) => ShardPorts::Base(base),
            None if listen.port() == 0 => ShardPorts::Auto,
            None => {
                let base = u32::from(listen.port()) + u32::from(SHARD_PORT_OFFSET);
                if base + shard_count - 1 > u32::from(u16::MAX) {
                    bail!(
                        "the default per-shard ports (listen port {} + {SHARD_PORT_OFFSET}, one \
                         per shard) pass 65535: set --shard-ports",
                        listen.port()
                    );
                }
                ShardPorts::Base(base as u16)
            }
        };
        if let ShardPorts::Base(base) = shard_ports {
            if u32::from(base) + shard_count - 1 > u32::from(u16::MAX) {
                bail!("per-shard ports {base}.. pass 65535 with {shard_count} shards");
            }
        }
        let file_name = |file: &ConfigFile| format!("config file {}", file.path.display());
        let (backend, backend_source) = if let Some(choice) = args.io {
            (choice, "--io".to_string())
        } else if let Some(choice) = env_io {
            (choice, BACKEND_ENV.to_string())
        } else if let Some((choice, file)) =
            file.and_then(|file| file.io.map(|choice| (choice, file)))
        {
            (choice, file_name(file))
        } else {
            (BackendChoice::Auto, "default".to_string())
        };
        let pin = !args.no_pin && file.and_then(|file| file.pin).unwrap_or(true);
        let sale = match (&args.sale, file.and_then(|file| file.sale.as_ref())) {
            (Some(path), _) | (None, Some(path)) => SaleSource::File(path.clone()),
            (None, None) => SaleSource::Demo,
        };
        let engine_server = file.map_or_else(engine_default, |file| file.engine);
        let runtime = RuntimeConfig {
            shard_count,
            engine: engine_server.per_shard(shard_count),
            port_count: 0,
            ring_capacity: file.map_or(RING_CAPACITY_DEFAULT, |file| file.ring_capacity),
            pin,
            idle_spin_us: args.idle_spin_us.unwrap_or(0),
            idle_park_max_ms: rush_runtime::shard::IDLE_PARK_MAX_MS_DEFAULT,
            parked_max: rush_runtime::shard::PARKED_MAX_DEFAULT,
        };
        runtime.validate().map_err(|error| anyhow!("{error}"))?;
        Ok(Settings {
            listen,
            admin_listen,
            metrics_listen,
            shard_ports,
            backend,
            backend_source,
            engine_server,
            runtime,
            limits: file.map_or_else(ConnLimits::default, |file| file.limits),
            sale,
            durability: args
                .durability
                .or(file.and_then(|file| file.durability))
                .unwrap_or(Durability::Sync),
            data_dir: args
                .data_dir
                .clone()
                .or(file.and_then(|file| file.data_dir.clone()))
                .unwrap_or_else(|| PathBuf::from(DATA_DIR_DEFAULT)),
            journal_segment_bytes: args
                .journal_segment_bytes
                .or(file.and_then(|file| file.journal_segment_bytes))
                .unwrap_or(JOURNAL_SEGMENT_BYTES_DEFAULT),
            snapshot_every: args
                .snapshot_every
                .or(file.and_then(|file| file.snapshot_every))
                .unwrap_or(SNAPSHOT_EVERY_DEFAULT),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> anyhow::Result<ConfigFile> {
        ConfigFile::parse(text, Path::new("/etc/rush/serve.toml"))
    }

    fn error(text: &str) -> String {
        format!("{:#}", file(text).unwrap_err())
    }

    #[test]
    fn defaults() {
        let settings = Settings::resolve(&ServeArgs::default(), None, None, 2).unwrap();
        assert_eq!(settings.listen, "0.0.0.0:7070".parse().unwrap());
        assert_eq!(settings.admin_listen, Some("127.0.0.1:7071".parse().unwrap()));
        assert_eq!(settings.metrics_listen, Some("127.0.0.1:7072".parse().unwrap()));
        assert_eq!(settings.shard_ports, ShardPorts::Base(7170));
        assert_eq!(settings.backend, BackendChoice::Auto);
        assert_eq!(settings.runtime.shard_count, 2);
        assert!(settings.runtime.pin);
        assert_eq!(settings.engine_server, engine_default());
        assert_eq!(settings.runtime.engine, engine_default().per_shard(2));
        assert_eq!(settings.limits, ConnLimits::default());
        assert_eq!(settings.sale, SaleSource::Demo);
        assert_eq!(settings.journal_segment_bytes, JOURNAL_SEGMENT_BYTES_DEFAULT);
        assert_eq!(settings.snapshot_every, SNAPSHOT_EVERY_DEFAULT);
        engine_default().validate().unwrap();
    }

    #[test]
    fn a_full_config_file_parses() {
        let parsed = file(
            r#"
            listen = "127.0.0.1:9000"
            admin_listen = "none"
            metrics_listen = "127.0.0.1:9100"
            shard_ports = 9500
            shards = 3
            io = "epoll"
            pin = false
            sale = "sales/drop.toml"
            ring_capacity = 1024
            sku_max = 10
            account_max = 100
            reservation_max = 1000
            waitlist_max = 10
            request_key_max = 1000
            request_key_retention_ms = 7200000
            limit_entry_max = 100
            quantity_max = 5
            hold_ms_default = 1000
            hold_ms_max = 60000
            wait_ms_max = 60000
            connection_max = 10
            admin_connection_max = 3
            pipeline_max = 16
            inbound_bytes_max = 65536
            outbound_bytes_max = 32768
            connection_rate_per_s = 100
            connection_burst = 10
            source_connection_max = 8
            journal_segment_bytes = 4096
            snapshot_every = "10000"
            "#,
        )
        .unwrap();
        let settings = Settings::resolve(&ServeArgs::default(), Some(&parsed), None, 2).unwrap();
        assert_eq!(settings.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(settings.admin_listen, None);
        assert_eq!(settings.metrics_listen, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(settings.shard_ports, ShardPorts::Base(9500));
        assert_eq!(settings.runtime.shard_count, 3);
        assert_eq!(settings.backend, BackendChoice::Epoll);
        assert!(settings.backend_source.contains("serve.toml"));
        assert!(!settings.runtime.pin);
        assert_eq!(settings.sale, SaleSource::File("/etc/rush/sales/drop.toml".into()));
        assert_eq!(settings.runtime.ring_capacity, 1024);
        assert_eq!(settings.runtime.engine.quantity_max, 5);
        assert_eq!(settings.runtime.engine.request_key_retention_ms, 7_200_000);
        // The file's capacities are the server's; each of the 3 shards gets its share.
        assert_eq!(settings.engine_server.account_max, 100);
        assert_eq!(settings.runtime.engine, settings.engine_server.per_shard(3));
        assert!(settings.runtime.engine.account_max < 100);
        assert_eq!(settings.journal_segment_bytes, 4096);
        let args = ServeArgs { journal_segment_bytes: Some(1024), ..ServeArgs::default() };
        let settings = Settings::resolve(&args, Some(&parsed), None, 2).unwrap();
        assert_eq!(settings.journal_segment_bytes, 1024, "the flag overrides the file");
        assert_eq!(settings.snapshot_every, SnapshotEvery::Inputs(10_000));
        assert_eq!(
            settings.limits,
            ConnLimits {
                connection_max: 10,
                admin_connection_max: 3,
                pipeline_max: 16,
                inbound_bytes_max: 65536,
                outbound_bytes_max: 32768,
                connection_rate_per_s: 100,
                connection_burst: 10,
                source_connection_max: 8,
            }
        );
    }

    #[test]
    fn flags_override_the_file_and_rush_io_comes_between() {
        let parsed = file(
            "listen = \"127.0.0.1:9000\"\nshards = 3\nio = \"epoll\"\nshard_ports = \"off\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            admin_listen: Some(AdminListen::Off),
            metrics_listen: Some(AdminListen::Off),
            shards: Some(1),
            no_pin: true,
            sale: Some("x.json".into()),
            ..ServeArgs::default()
        };
        let settings = Settings::resolve(&args, Some(&parsed), None, 8).unwrap();
        assert_eq!(settings.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(settings.admin_listen, None);
        assert_eq!(settings.metrics_listen, None);
        assert_eq!(settings.shard_ports, ShardPorts::Off);
        assert_eq!(settings.runtime.shard_count, 1);
        assert!(!settings.runtime.pin);
        assert_eq!(settings.sale, SaleSource::File("x.json".into()));
        assert_eq!(settings.backend, BackendChoice::Epoll);

        let settings =
            Settings::resolve(&args, Some(&parsed), Some(BackendChoice::IoUring), 8).unwrap();
        assert_eq!(
            (settings.backend, settings.backend_source.as_str()),
            (BackendChoice::IoUring, "RUSH_IO")
        );
        let args = ServeArgs { io: Some(BackendChoice::Auto), ..args };
        let settings =
            Settings::resolve(&args, Some(&parsed), Some(BackendChoice::IoUring), 8).unwrap();
        assert_eq!(
            (settings.backend, settings.backend_source.as_str()),
            (BackendChoice::Auto, "--io")
        );
    }

    #[test]
    fn shard_port_defaults() {
        let args =
            ServeArgs { listen: Some("127.0.0.1:0".parse().unwrap()), ..ServeArgs::default() };
        assert_eq!(Settings::resolve(&args, None, None, 2).unwrap().shard_ports, ShardPorts::Auto);
        let args =
            ServeArgs { listen: Some("127.0.0.1:65435".parse().unwrap()), ..ServeArgs::default() };
        assert!(Settings::resolve(&args, None, None, 2).is_err());
        assert_eq!(
            Settings::resolve(&args, None, None, 1).unwrap().shard_ports,
            ShardPorts::Base(65535)
        );
    }

    /// docs/PROTOCOL.md section 11 lists the defaults `rush serve` runs with: every row with a
    /// config key is what `Settings::resolve` gives without flags or file.
    #[test]
    fn protocol_md_lists_these_defaults() {
        let text = include_str!("../../docs/PROTOCOL.md");
        let start = text.find("## 11. Server limits and defaults").expect("section 11");
        let section = &text[start..];
        let section = &section[..section[3..].find("\n## ").map_or(section.len(), |end| end + 3)];
        let cell = |key: &str| -> String {
            let row = section
                .lines()
                .find(|line| line.split('|').nth(2).map(str::trim) == Some(&format!("`{key}`")))
                .unwrap_or_else(|| panic!("section 11 has a row for {key}"));
            row.split('|').nth(3).expect("a default cell").trim().to_string()
        };
        let number = |key: &str| -> u64 {
            let text: String = cell(key)
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == ',')
                .filter(|c| *c != ',')
                .collect();
            text.parse().unwrap_or_else(|_| panic!("the default of {key} is a number"))
        };
        let settings = Settings::resolve(&ServeArgs::default(), None, None, 2).unwrap();
        let engine = settings.engine_server;
        let limits = settings.limits;
        assert_eq!(cell("listen"), format!("`{LISTEN_DEFAULT}`"));
        assert_eq!(cell("admin_listen"), format!("`{ADMIN_LISTEN_DEFAULT}`"));
        assert_eq!(cell("metrics_listen"), format!("`{METRICS_LISTEN_DEFAULT}`"));
        assert_eq!(cell("shard_ports"), format!("listen port + {SHARD_PORT_OFFSET}"));
        for (key, value) in [
            ("sku_max", u64::from(engine.sku_max)),
            ("account_max", u64::from(engine.account_max)),
            ("reservation_max", u64::from(engine.reservation_max)),
            ("waitlist_max", u64::from(engine.waitlist_max)),
            ("request_key_max", u64::from(engine.request_key_max)),
            ("request_key_retention_ms", engine.request_key_retention_ms),
            ("limit_entry_max", u64::from(engine.limit_entry_max)),
            ("quantity_max", u64::from(engine.quantity_max)),
            ("hold_ms_default", u64::from(engine.hold_ms_default)),
            ("hold_ms_max", u64::from(engine.hold_ms_max)),
            ("wait_ms_max", u64::from(engine.wait_ms_max)),
            ("connection_max", u64::from(limits.connection_max)),
            ("admin_connection_max", u64::from(limits.admin_connection_max)),
            ("pipeline_max", u64::from(limits.pipeline_max)),
            ("inbound_bytes_max", limits.inbound_bytes_max as u64),
            ("outbound_bytes_max", limits.outbound_bytes_max as u64),
            ("connection_rate_per_s", u64::from(limits.connection_rate_per_s)),
            ("connection_burst", u64::from(limits.connection_burst)),
            ("source_connection_max", u64::from(limits.source_connection_max)),
            ("parked_max", u64::from(settings.runtime.parked_max)),
            ("journal_segment_bytes", settings.journal_segment_bytes),
        ] {
            assert_eq!(number(key), value, "docs/PROTOCOL.md section 11: {key}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let message = error("listen = \"127.0.0.1:1\"\nshard_count = 2\n");
        assert!(message.contains("unknown field `shard_count`"), "{message}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("listen = \"localhost\"", "`listen`"),
            ("admin_listen = \"nowhere\"", "`admin_listen`"),
            ("metrics_listen = \"localhost:9100\"", "`metrics_listen`"),
            ("shard_ports = 0", "`shard_ports`"),
            ("shard_ports = \"some\"", "`shard_ports`"),
            ("shard_ports = true", "`shard_ports`"),
            ("shards = 0", "`shards`"),
            ("shards = 65", "`shards`"),
            ("io = \"kqueue\"", "`io`"),
            ("ring_capacity = 1", "`ring_capacity`"),
            ("sku_max = 0", "`sku_max`"),
            ("waitlist_max = 3000000", "`waitlist_max`"),
            ("hold_ms_default = 99999999", "`hold_ms_default`"),
            ("request_key_retention_ms = 1", "`request_key_retention_ms`"),
            ("connection_max = 0", "`connection_max`"),
            ("pipeline_max = 2000000", "`pipeline_max`"),
            ("inbound_bytes_max = 10", "`inbound_bytes_max`"),
            ("outbound_bytes_max = 0", "`outbound_bytes_max`"),
            ("connection_rate_per_s = 1000001", "`connection_rate_per_s`"),
            ("connection_burst = 0", "`connection_burst`"),
            ("source_connection_max = 2000000", "`source_connection_max`"),
            ("snapshot_every = \"5\"", "`snapshot_every`"),
            ("snapshot_every = \"12XB\"", "`snapshot_every`"),
            ("journal_segment_bytes = 1023", "`journal_segment_bytes`"),
            ("journal_segment_bytes = 1073741825", "`journal_segment_bytes`"),
        ] {
            let message = error(text);
            assert!(message.contains(key), "{text}: {message}");
        }
        // Type errors come from the TOML parser, which shows the line.
        let message = error("shards = \"two\"");
        assert!(message.contains("shards"), "{message}");
        let message = error("account_max = -1");
        assert!(message.contains("account_max"), "{message}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("rush-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("serve.toml");
        std::fs::write(&path, "shards = 0\n").unwrap();
        let message = format!("{:#}", ConfigFile::load(&path).unwrap_err());
        assert!(message.contains("serve.toml") && message.contains("`shards`"), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
        let message = format!("{:#}", ConfigFile::load(&path).unwrap_err());
        assert!(message.contains("serve.toml"), "{message}");
    }

    #[test]
    fn flag_values_parse() {
        assert_eq!("none".parse::<AdminListen>(), Ok(AdminListen::Off));
        assert_eq!(
            "127.0.0.1:1".parse::<AdminListen>(),
            Ok(AdminListen::At("127.0.0.1:1".parse().unwrap()))
        );
        assert!("x".parse::<AdminListen>().is_err());
        assert_eq!("auto".parse::<ShardPortsArg>(), Ok(ShardPortsArg::Auto));
        assert_eq!("off".parse::<ShardPortsArg>(), Ok(ShardPortsArg::Off));
        assert_eq!("7170".parse::<ShardPortsArg>(), Ok(ShardPortsArg::Base(7170)));
        assert!("0".parse::<ShardPortsArg>().is_err());
        assert!("70000".parse::<ShardPortsArg>().is_err());
        assert_eq!(parse_backend("epoll"), Ok(BackendChoice::Epoll));
        assert!(parse_backend("poll").is_err());
    }
}
