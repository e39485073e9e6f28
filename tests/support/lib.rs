//! Shared support for the cross-crate test suite in `tests/` and the benchmarks in `benches/`.
//!
//! The README is included as this crate's documentation so that its Rust example is compiled
//! and run as a doctest: the README cannot drift from the API.
#![doc = include_str!("../../README.md")]

pub mod engine;
pub mod rng;

pub mod server {
    //! Starting a real server on loopback for the network tests.

    use rush_engine::Config;
    use rush_net::server::{BackendChoice, ConnLimits, Server, ServerConfig, ShardPorts};
    use rush_runtime::RuntimeConfig;

    /// Both backends, so every network test runs on each.
    pub const BACKENDS: [BackendChoice; 2] = [BackendChoice::IoUring, BackendChoice::Epoll];

    /// An engine configuration sized for tests (a few MiB per shard).
    pub fn engine_config() -> Config {
        Config {
            sku_max: 256,
            account_max: 16_384,
            reservation_max: 32_768,
            waitlist_max: 4_096,
            request_key_max: 65_536,
            request_key_retention_ms: 3_600_000,
            limit_entry_max: 16_384,
            quantity_max: 100,
            hold_ms_default: 60_000,
            hold_ms_max: 600_000,
            wait_ms_max: 60_000,
        }
    }

    /// The configuration of a test server on 127.0.0.1 (public port, admin port, per-shard
    /// ports all chosen free), unpinned (tests run side by side), with `shard_count` shards;
    /// tests change the fields they care about.
    pub fn config(backend: BackendChoice, shard_count: u32, limits: ConnLimits) -> ServerConfig {
        ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: Some("127.0.0.1:0".parse().unwrap()),
            shard_ports: ShardPorts::Auto,
            runtime: RuntimeConfig {
                shard_count,
                engine: engine_config(),
                port_count: 0,
                ring_capacity: 4096,
                pin: false,
                idle_spin_us: 0,
                idle_park_max_ms: rush_runtime::shard::IDLE_PARK_MAX_MS_DEFAULT,
                parked_max: rush_runtime::shard::PARKED_MAX_DEFAULT,
            },
            limits,
            backend,
            prewarm: Vec::new(),
            capture: None,
            durability: rush_runtime::journal::Durability::None,
            data_dir: None,
            journal: rush_runtime::journal::JournalOptions::default(),
        }
    }

    /// A server started from [`config`].
    pub fn start(backend: BackendChoice, shard_count: u32, limits: ConnLimits) -> Server {
        Server::start(config(backend, shard_count, limits))
            .unwrap_or_else(|error| panic!("server on {backend:?}: {error}"))
    }
}
