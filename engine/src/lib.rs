//! # rush-engine
//!
//! The pure, deterministic core of Rush: the reservation state machine of one shard
//! ([`Engine`]), and the quota protocol by which shards split a SKU's stock ([`quota`]).
//!
//! **Architecture Invariant:** outside [`runtime`], this crate does no I/O, spawns no
//! threads and reads no clock. [`runtime`] only carries messages between engines.
//! Time enters only as the `now_ms` argument of [`Engine::execute`] and [`Engine::tick`], so
//! the same input sequence with the same clock readings always reaches the same state
//! ([`Engine::state_hash`]).
//!
//! **Architecture Invariant:** every table is allocated once, at [`Engine::new`], with the
//! capacities of [`Config`]; when one is full the request is answered
//! [`ResultCode::Overloaded`] and nothing changes.
#![deny(unsafe_code)]

mod config;
mod engine;
mod hash;
mod invariants;
pub mod quota;
pub mod runtime;
mod table;
mod types;
mod wheel;

pub use config::{Config, ConfigError};
pub use engine::{Counters, Engine, SkuLevels, NOW_MS_LIMIT};
pub use hash::StateHasher;
pub use invariants::Violation;
pub use types::*;
