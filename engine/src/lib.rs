//! # rush-engine
//!
//! The pure, deterministic core of Rush: the reservation state machine of one shard
//! ([`Engine`]), and the quota protocol by which shards split a SKU's stock ([`quota`]).
//!
//! **Architecture Invariant:** this crate does no I/O, spawns no threads, reads no clock and
//! has no `unsafe` (`forbid(unsafe_code)`): the threaded runtime that carries messages
//! between engines is a crate of its own, `rush-runtime`, so the rule is a crate boundary.
//! Time enters only as the `now_ms` argument of [`Engine::execute`] and [`Engine::tick`], so
//! the same input sequence with the same clock readings always reaches the same state
//! ([`Engine::state_hash`]).
//!
//! **Architecture Invariant:** every table is allocated once, at [`Engine::new`], with the
//! capacities of [`Config`]; when one is full the request is answered
//! [`ResultCode::Overloaded`] and nothing changes.
#![forbid(unsafe_code)]

mod config;
mod engine;
mod hash;
mod invariants;
pub mod quota;
pub mod snapshot;
pub mod table;
mod types;
mod violation;
mod wheel;

pub use config::{Config, ConfigError, ConfigRule, RESERVATION_MAX_LIMIT, TABLE_LEN_MAX};
pub use engine::{Counters, Engine, ExpiryDelay, SkuLevels, NOW_MS_LIMIT};
pub use hash::StateHasher;
pub use types::*;
pub use violation::Violation;
