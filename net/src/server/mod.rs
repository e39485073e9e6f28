//! The Rush server: the shards of `rush_runtime` on pinned threads, each running its
//! own network loop (io_uring, or epoll where io_uring is unavailable) and its ring mesh in
//! the same loop.
//!
//! Listeners:
//! - the **public** address: every shard has its own listening socket on it (SO_REUSEPORT),
//!   so the kernel spreads connections across shards;
//! - optional **per-shard ports** (`shard_port_base + i` is served by shard `i` only): a
//!   shard-aware client learns the base from a PING response and connects to each
//!   account's home shard, so its requests need no hop between cores;
//! - the **admin** address (127.0.0.1 by default), served by shard 0: only connections
//!   accepted there may use the admin operations; anywhere else they get UNAUTHORIZED.
//!
//! **Architecture Invariant:** nothing a client sends can panic a shard: frames are decoded
//! by the validating decoder, and every per-connection resource is bounded (`ConnLimits`).

mod conn;
#[cfg(test)]
mod driver_tests;
mod epoll;
mod probe;
mod uring;

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use rush_engine::quota::route;
use rush_engine::{ConfigError, Engine, Request, ResultCode};
use rush_runtime::journal::{
    start_durable_with, DataDir, Durability, JournalCounters, JournalOptions, RecoveryReport,
    SnapshotCounters, StartError,
};
use rush_runtime::{
    pin_plan, quiesce, unix_ms, Board, Doorbell, InlineWrites, LoopCounters, LoopOptions, Mesh,
    RuntimeConfig, ShardCore, StopState,
};

pub use conn::{
    ConnLimits, NetCounters, SourceConnections, BUFFER_BYTES_MAX, CONNECTION_LIMIT_MAX,
};
pub use probe::{probe_io_uring, ProbeError};

use crate::capture::{CaptureSink, CaptureWriter};
use crate::protocol::Topology;

/// How long a stopping server keeps answering requests already in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The environment variable that picks the backend: `epoll` forces the fallback,
/// `io_uring` requires io_uring (start fails without it); unset or `auto` probes.
pub const BACKEND_ENV: &str = "RUSH_IO";

/// Which I/O backend to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// io_uring if the probe passes, else epoll.
    Auto,
    IoUring,
    Epoll,
}

impl BackendChoice {
    /// The choice `RUSH_IO` makes (`Auto` when unset); an unknown value is an error.
    pub fn from_env() -> Result<BackendChoice, ServerError> {
        match std::env::var(BACKEND_ENV) {
            Err(_) => Ok(BackendChoice::Auto),
            Ok(value) => value.parse(),
        }
    }
}

impl std::str::FromStr for BackendChoice {
    type Err = ServerError;

    fn from_str(value: &str) -> Result<BackendChoice, ServerError> {
        match value {
            "" | "auto" => Ok(BackendChoice::Auto),
            "io_uring" | "uring" => Ok(BackendChoice::IoUring),
            "epoll" => Ok(BackendChoice::Epoll),
            other => Err(ServerError::Config(format!(
                "unknown backend {other:?} (expected auto, io_uring or epoll)"
            ))),
        }
    }
}

/// The backend a server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    IoUring,
    Epoll,
}

impl fmt::Display for Backend {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Backend::IoUring => "io_uring",
            Backend::Epoll => "epoll",
        })
    }
}

/// Per-shard ports for shard-aware clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardPorts {
    /// None: clients use the public port only.
    Off,
    /// Shard `i` listens on `base + i`.
    Base(u16),
    /// Pick a free range of consecutive ports at start.
    Auto,
}

/// Everything `Server::start` needs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The admin listener; `None` disables admin operations over the network.
    pub admin_listen: Option<SocketAddr>,
    pub shard_ports: ShardPorts,
    /// Shards, engine capacities, ring sizes, pinning (`port_count` is ignored: the server
    /// needs no in-process client ports).
    pub runtime: RuntimeConfig,
    pub limits: ConnLimits,
    pub backend: BackendChoice,
    /// Requests applied, in order, before the first connection is accepted (a sale file:
    /// PUT_SKU, DEPOSIT, ...). Each must answer OK (or DUPLICATE), or the start fails.
    pub prewarm: Vec<Request>,
    /// Record every frame received to this file (`rush serve --capture`); see
    /// [`crate::capture`].
    pub capture: Option<PathBuf>,
    /// How durable the server is; with `Durability::None` nothing is written to disk.
    pub durability: Durability,
    /// The data directory of a durable server (journals), locked while it runs.
    pub data_dir: Option<PathBuf>,
    /// Segment size and snapshot period of the journal.
    pub journal: JournalOptions,
}

/// Takes the process down when a shard thread panics (a broken invariant: the shard stops
/// rather than corrupt state). The other shards must not run on beside a dead one: its
/// accounts would go unanswered, and in sync mode its peers' replies would wait forever for
/// its stability. A crash is what durability is designed for: the restart recovers from
/// the journals. So the unit of failure is the server, never one shard.
struct AbortOnPanic {
    shard: u32,
}

impl Drop for AbortOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "rush: shard {} panicked: aborting the process (a restart recovers from the \
                 journal)",
                self.shard
            );
            std::process::abort();
        }
    }
}

/// Why the server could not start or stopped badly.
#[derive(Debug)]
pub enum ServerError {
    Config(String),
    Engine(ConfigError),
    Bind {
        address: SocketAddr,
        error: io::Error,
    },
    /// io_uring was required (`RUSH_IO=io_uring`) and the probe failed.
    IoUringUnavailable(ProbeError),
    /// A shard's loop failed.
    Shard {
        shard: u32,
        error: io::Error,
    },
    /// The data directory could not be opened or recovered.
    Durability(StartError),
}

impl fmt::Display for ServerError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Config(reason) => write!(formatter, "invalid configuration: {reason}"),
            ServerError::Engine(error) => {
                write!(formatter, "invalid configuration: {error}")
            }
            ServerError::Bind { address, error } => {
                write!(formatter, "cannot listen on {address}: {error}")
            }
            ServerError::IoUringUnavailable(error) => {
                write!(formatter, "io_uring required but unavailable: {error}")
            }
            ServerError::Shard { shard, error } => {
                write!(formatter, "shard {shard} failed: {error}")
            }
            ServerError::Durability(error) => write!(formatter, "{error}"),
        }
    }
}

impl std::error::Error for ServerError {}

impl From<ConfigError> for ServerError {
    fn from(error: ConfigError) -> ServerError {
        ServerError::Engine(error)
    }
}

/// A listening socket handed to a shard.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) socket: TcpListener,
    pub(crate) admin: bool,
}

/// What a shard's network loop is given.
pub(crate) struct ShardIo<'a> {
    pub(crate) core: &'a mut ShardCore,
    pub(crate) listeners: Vec<Listener>,
    pub(crate) limits: ConnLimits,
    pub(crate) topology: Topology,
    pub(crate) capture: Option<CaptureSink>,
    /// How the shard loop idles (`RuntimeConfig::loop_options`).
    pub(crate) options: LoopOptions,
    /// Public connections per source address, shared by every shard.
    pub(crate) sources: Arc<conn::SourceConnections>,
}

/// What a shard's loop reports when it ends.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShardReport {
    pub counters: NetCounters,
    pub loop_counters: LoopCounters,
    /// A durable server's journal and snapshot counters.
    pub journal: Option<(JournalCounters, SnapshotCounters)>,
}

impl ShardReport {
    /// The report of `core`'s loop, which ended with these counters (both backends).
    pub(crate) fn of(core: &ShardCore, counters: NetCounters, loop_counters: LoopCounters) -> Self {
        let journal = core
            .journal_status()
            .zip(core.snapshot_counters())
            .map(|((journal, _, _), snapshots)| (journal, snapshots));
        ShardReport { counters, loop_counters, journal }
    }
}

/// What the server leaves when it stops: the quiescent engines and each shard's counters.
#[derive(Debug)]
pub struct ServerReport {
    pub engines: Vec<Engine>,
    pub shards: Vec<ShardReport>,
    /// With `--capture`: records written and records dropped (writer behind).
    pub capture: Option<(u64, u64)>,
}

type ShardResult = (ShardCore, io::Result<ShardReport>);

/// Each shard says once whether its loop is serving (or why it could not start).
pub(crate) type Ready = mpsc::Sender<(u32, Result<(), String>)>;

/// A running server.
#[derive(Debug)]
pub struct Server {
    stop: Arc<StopState>,
    doorbells: Vec<Arc<Doorbell>>,
    threads: Vec<JoinHandle<ShardResult>>,
    board: Arc<Board>,
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shard_port_base: Option<u16>,
    backend: Backend,
    backend_reason: String,
    cores: Vec<Option<usize>>,
    capture: Option<CaptureWriter>,
    /// The locked data directory of a durable server.
    data_dir: Option<DataDir>,
    recovery: Option<RecoveryReport>,
    prewarmed: bool,
    /// Bytes of each shard's engine tables, by table, as allocated at start.
    table_bytes: Vec<[(&'static str, usize); 5]>,
}

impl Server {
    /// Binds every listener, starts one pinned thread per shard, and returns once every
    /// shard is serving.
    pub fn start(config: ServerConfig) -> Result<Server, ServerError> {
        let mut runtime = config.runtime;
        runtime.port_count = 0;
        config.limits.validate()?;
        let (backend, backend_reason) = match config.backend {
            BackendChoice::Epoll => {
                (Backend::Epoll, "forced (RUSH_IO=epoll or --io epoll)".to_string())
            }
            BackendChoice::IoUring => match probe_io_uring() {
                Ok(()) => (Backend::IoUring, "required, probe passed".to_string()),
                Err(error) => return Err(ServerError::IoUringUnavailable(error)),
            },
            BackendChoice::Auto => match probe_io_uring() {
                Ok(()) => (Backend::IoUring, "probe passed".to_string()),
                Err(error) => (Backend::Epoll, format!("io_uring unavailable: {error}")),
            },
        };
        let Mesh { mut shards, doorbells, board, .. } = Mesh::build(&runtime)?;
        let shard_count = runtime.shard_count;
        let table_bytes = shards.iter().map(|shard| shard.engine().table_bytes()).collect();
        // Recovery runs before any listener exists: nothing is accepted until the state is
        // back. The log says what was recovered.
        let (data_dir, recovery) = match (config.durability, &config.data_dir) {
            (Durability::None, _) => (None, None),
            (_, None) => {
                return Err(ServerError::Config("a durable server needs a data directory".into()))
            }
            (durability, Some(path)) => {
                let now_ms = shards.iter().map(|shard| shard.engine().now_ms()).max().unwrap_or(0);
                let now_ms = now_ms.max(unix_ms());
                let (data_dir, report) =
                    start_durable_with(&mut shards, path, durability, now_ms, config.journal)
                        .map_err(ServerError::Durability)?;
                if !report.fresh {
                    for line in report.lines() {
                        eprintln!("rush: recovered {line}");
                    }
                }
                (Some(data_dir), Some(report))
            }
        };
        // The sale pre-warms a new data directory only: on a recovered one it would undo
        // what happened since (a DEPOSIT's pre-warm key may have been forgotten by then).
        let fresh = recovery.as_ref().is_none_or(|report| report.fresh);
        if fresh {
            prewarm(&mut shards, &config.prewarm)?;
        }

        // Listeners: the public address on every shard (SO_REUSEPORT).
        let mut per_shard: Vec<Vec<Listener>> = (0..shard_count).map(|_| Vec::new()).collect();
        let first = bind(config.listen, true)?;
        // The other shards join the first one's port (no probe: it is ours now).
        let local_addr = first
            .local_addr()
            .map_err(|error| ServerError::Bind { address: config.listen, error })?;
        per_shard[0].push(Listener { socket: first, admin: false });
        for listeners in per_shard.iter_mut().skip(1) {
            listeners.push(Listener { socket: bind_joining(local_addr)?, admin: false });
        }
        let mut admin_addr = None;
        if let Some(address) = config.admin_listen {
            let socket = bind(address, false)?;
            admin_addr =
                Some(socket.local_addr().map_err(|error| ServerError::Bind { address, error })?);
            per_shard[0].push(Listener { socket, admin: true });
        }
        let shard_port_base = match config.shard_ports {
            ShardPorts::Off => None,
            ShardPorts::Base(base) => {
                bind_shard_ports(local_addr, base, &mut per_shard)?;
                Some(base)
            }
            ShardPorts::Auto => Some(bind_shard_ports_auto(local_addr, &mut per_shard)?),
        };
        let topology = Topology {
            shard_count: shard_count as u16,
            shard: 0,
            shard_port_base: shard_port_base.unwrap_or(0),
        };

        let capture = match &config.capture {
            Some(path) => Some(CaptureWriter::create(path).map_err(|error| {
                ServerError::Config(format!(
                    "cannot create capture file {}: {error}",
                    path.display()
                ))
            })?),
            None => None,
        };
        let options = runtime.loop_options();
        let plan = pin_plan(shard_count, runtime.pin);
        let cores = plan.iter().map(|core| core.map(|core| core.id)).collect();
        let stop = Arc::new(StopState::new(shard_count, SHUTDOWN_GRACE));
        let (ready_sender, ready) = mpsc::channel::<(u32, Result<(), String>)>();
        let sources = Arc::new(conn::SourceConnections::default());
        let mut threads = Vec::new();
        for ((core, shard), listeners) in plan.into_iter().zip(shards).zip(per_shard) {
            let stop = Arc::clone(&stop);
            let ready = ready_sender.clone();
            let limits = config.limits;
            let shard_index = shard.shard();
            let topology = Topology { shard: shard_index as u16, ..topology };
            let capture_sink = capture.as_ref().map(CaptureWriter::sink);
            let sources = Arc::clone(&sources);
            let handle = std::thread::Builder::new()
                .name(format!("rush-shard-{shard_index}"))
                .spawn(move || {
                    let _abort_on_panic = AbortOnPanic { shard: shard_index };
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    let mut shard = shard;
                    let io = ShardIo {
                        core: &mut shard,
                        listeners,
                        limits,
                        topology,
                        capture: capture_sink,
                        options,
                        sources,
                    };
                    let result = match backend {
                        Backend::IoUring => uring::run(io, &stop, &ready),
                        Backend::Epoll => epoll::run(io, &stop, &ready),
                    };
                    if let Err(error) = &result {
                        let _ = ready.send((shard_index, Err(error.to_string())));
                    }
                    (shard, result)
                })
                .map_err(|error| ServerError::Shard { shard: shard_index, error })?;
            threads.push(handle);
        }
        drop(ready_sender);
        let server = Server {
            stop,
            doorbells,
            threads,
            board,
            local_addr,
            admin_addr,
            shard_port_base,
            backend,
            backend_reason,
            cores,
            capture,
            data_dir,
            recovery,
            prewarmed: fresh,
            table_bytes,
        };
        for _ in 0..shard_count {
            match ready.recv() {
                Ok((_, Ok(()))) => {}
                Ok((shard, Err(reason))) => {
                    server.signal_stop();
                    let _ = server.join();
                    return Err(ServerError::Shard { shard, error: io::Error::other(reason) });
                }
                Err(_) => {
                    server.signal_stop();
                    let _ = server.join();
                    return Err(ServerError::Shard {
                        shard: 0,
                        error: io::Error::other("a shard thread ended before it was ready"),
                    });
                }
            }
        }
        Ok(server)
    }

    /// The public address (with the port the system chose, if it was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The address shard `shard` alone serves, when per-shard ports are on.
    pub fn shard_addr(&self, shard: u32) -> Option<SocketAddr> {
        let base = self.shard_port_base?;
        Some(SocketAddr::new(self.local_addr.ip(), base + shard as u16))
    }

    pub fn shard_count(&self) -> u32 {
        self.doorbells.len() as u32
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Why this backend was chosen (for the start-up log).
    pub fn backend_reason(&self) -> &str {
        &self.backend_reason
    }

    /// The core each shard is pinned to (`None`: not pinned).
    pub fn cores(&self) -> &[Option<usize>] {
        &self.cores
    }

    /// Published levels (QUERY_SKU from any core reads them).
    pub fn board(&self) -> &Arc<Board> {
        &self.board
    }

    /// What the metrics exporter reads (`crate::metrics::MetricsExporter::start`).
    pub fn metrics_source(&self) -> crate::metrics::MetricsSource {
        crate::metrics::MetricsSource { board: Arc::clone(&self.board), backend: self.backend }
    }

    /// What a durable server recovered at start (`None`: not durable).
    pub fn recovery(&self) -> Option<&RecoveryReport> {
        self.recovery.as_ref()
    }

    /// False when the pre-warm requests were skipped (a recovered data directory).
    /// Bytes of each shard's engine tables, by table (`Engine::table_bytes`), as allocated
    /// at start: what the configured capacities cost.
    pub fn table_bytes(&self) -> &[[(&'static str, usize); 5]] {
        &self.table_bytes
    }

    pub fn prewarmed(&self) -> bool {
        self.prewarmed
    }

    /// The data directory of a durable server.
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self.data_dir.as_ref().map(DataDir::path)
    }

    /// Asks every shard to stop: no new connections or requests; what is in flight is
    /// answered (for at most [`SHUTDOWN_GRACE`]).
    pub fn signal_stop(&self) {
        self.stop.request();
        for doorbell in &self.doorbells {
            doorbell.wake();
        }
    }

    /// A handle that can ask the server to stop from another thread (a signal handler's
    /// watcher thread).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle { stop: Arc::clone(&self.stop), doorbells: self.doorbells.clone() }
    }

    /// Stops the server and returns its quiescent engines (no message in flight), for
    /// invariant checks.
    pub fn shutdown(self) -> Result<ServerReport, ServerError> {
        self.signal_stop();
        self.join()
    }

    fn join(self) -> Result<ServerReport, ServerError> {
        let mut cores = Vec::new();
        let mut reports = Vec::new();
        let mut failure = None;
        for (shard, handle) in self.threads.into_iter().enumerate() {
            match handle.join() {
                Ok((core, result)) => {
                    cores.push(core);
                    match result {
                        Ok(report) => reports.push(report),
                        Err(error) => {
                            reports.push(ShardReport::default());
                            failure
                                .get_or_insert(ServerError::Shard { shard: shard as u32, error });
                        }
                    }
                }
                Err(_) => {
                    failure.get_or_insert(ServerError::Shard {
                        shard: shard as u32,
                        error: io::Error::other("shard thread panicked"),
                    });
                }
            }
        }
        let capture = match self.capture {
            Some(writer) => {
                let dropped = writer.dropped();
                let written =
                    writer.finish().map_err(|error| ServerError::Shard { shard: 0, error })?;
                Some((written, dropped))
            }
            None => None,
        };
        if let Some(failure) = failure {
            return Err(failure);
        }
        Ok(ServerReport { engines: quiesce(cores), shards: reports, capture })
    }
}

/// Asks a server to stop (see [`Server::signal_stop`]).
#[derive(Clone, Debug)]
pub struct StopHandle {
    stop: Arc<StopState>,
    doorbells: Vec<Arc<Doorbell>>,
}

impl StopHandle {
    pub fn stop(&self) {
        self.stop.request();
        for doorbell in &self.doorbells {
            doorbell.wake();
        }
    }
}

/// Applies `requests` to the shards in this thread (before they get threads), each on the
/// shard that owns it, delivering every message until the shards are quiescent.
fn prewarm(shards: &mut [ShardCore], requests: &[Request]) -> Result<(), ServerError> {
    let now_ms =
        shards.iter().map(|shard| shard.engine().now_ms()).max().unwrap_or(0).max(unix_ms());
    let shard_count = shards.len() as u32;
    // A durable server journals the pre-warm like any input, written inline here.
    let mut storage: Vec<InlineWrites> = shards.iter().map(|_| InlineWrites::default()).collect();
    for (index, request) in requests.iter().enumerate() {
        let owner = route(request, shard_count).unwrap_or(0) as usize;
        shards[owner].submit(now_ms, 0, index as u64, request);
        let mut reply = None;
        loop {
            let mut moved = 0;
            for (shard, storage) in shards.iter_mut().zip(storage.iter_mut()) {
                shard.request_journal_flush(); // whatever the interval: the pre-warm waits
                moved += shard.poll_peers(now_ms);
                moved += shard.finish_pass(now_ms);
                moved += shard.journal_pass(storage, now_ms);
                for completion in shard.drain_local() {
                    reply = Some(completion.reply);
                }
            }
            let idle = shards.iter().all(|shard| {
                !shard.has_backlog() && !shard.has_peer_input() && shard.journal_settled()
            });
            if moved == 0 && idle {
                break;
            }
        }
        match reply {
            Some(reply) if matches!(reply.result, ResultCode::Ok | ResultCode::Duplicate) => {}
            Some(reply) => {
                return Err(ServerError::Config(format!(
                    "pre-warm request {} ({request:?}) answered {}",
                    index + 1,
                    reply.result.name()
                )))
            }
            None => {
                return Err(ServerError::Config(format!(
                    "pre-warm request {} got no answer",
                    index + 1
                )))
            }
        }
    }
    Ok(())
}

/// Binds a listening socket. With `reuse_port` (the public address, one socket per shard)
/// the port is first checked free with a plain bind: SO_REUSEPORT alone would let this
/// server silently share a port another server of the same user already listens on.
fn bind(address: SocketAddr, reuse_port: bool) -> Result<TcpListener, ServerError> {
    if reuse_port && address.port() != 0 {
        drop(new_socket(address, false)?);
    }
    listen(new_socket(address, reuse_port)?, address)
}

/// Another shard's socket on the port this server's first public socket already holds.
fn bind_joining(address: SocketAddr) -> Result<TcpListener, ServerError> {
    listen(new_socket(address, true)?, address)
}

fn new_socket(address: SocketAddr, reuse_port: bool) -> Result<socket2::Socket, ServerError> {
    let fail = |error| ServerError::Bind { address, error };
    let domain = socket2::Domain::for_address(address);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
        .map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    if reuse_port {
        socket.set_reuse_port(true).map_err(fail)?;
    }
    socket.set_cloexec(true).map_err(fail)?;
    socket.bind(&address.into()).map_err(fail)?;
    Ok(socket)
}

fn listen(socket: socket2::Socket, address: SocketAddr) -> Result<TcpListener, ServerError> {
    socket.listen(1024).map_err(|error| ServerError::Bind { address, error })?;
    Ok(socket.into())
}

fn bind_shard_ports(
    public: SocketAddr,
    base: u16,
    per_shard: &mut [Vec<Listener>],
) -> Result<(), ServerError> {
    if base == 0 || u32::from(base) + per_shard.len() as u32 > 65_536 {
        return Err(ServerError::Config(format!(
            "shard port base {base} leaves no room for {} shards",
            per_shard.len()
        )));
    }
    let mut bound = Vec::new();
    for shard in 0..per_shard.len() {
        let address = SocketAddr::new(public.ip(), base + shard as u16);
        bound.push(bind(address, false)?);
    }
    for (listeners, socket) in per_shard.iter_mut().zip(bound) {
        listeners.push(Listener { socket, admin: false });
    }
    Ok(())
}

/// Finds `shard_count` consecutive free ports (random bases in the ephemeral-safe range).
fn bind_shard_ports_auto(
    public: SocketAddr,
    per_shard: &mut [Vec<Listener>],
) -> Result<u16, ServerError> {
    let count = per_shard.len() as u32;
    let mut seed = u64::from(public.port())
        ^ (std::process::id() as u64) << 16
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |time| time.as_nanos() as u64);
    for _ in 0..64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let base = 20_000 + (seed % u64::from(30_000 - count)) as u16;
        if bind_shard_ports(public, base, per_shard).is_ok() {
            return Ok(base);
        }
    }
    Err(ServerError::Config("no free range of per-shard ports found".into()))
}
