//! # rush-net
//!
//! The network layer of Rush: the wire protocol ([`protocol`], docs/PROTOCOL.md), the server
//! that runs the engine's shards behind io_uring or epoll ([`server`]), and the client
//! library ([`client`]), and the Prometheus exporter ([`metrics`]).
#![deny(unsafe_code)] // Allowed only in `server::uring` and `server::probe` (io_uring).

pub mod capture;
pub mod client;
pub mod metrics;
pub mod protocol;
pub mod server;
