//! # rush-runtime
//!
//! The threaded runtime around the pure engine (`rush-engine`): the shard core (an engine,
//! its ends of the N×N ring mesh, routing), the SPSC rings, the doorbells that wake idle
//! shards, the board of published levels, and [`Runtime`], which runs shards on pinned
//! threads for in-process clients. The network server in `rush-net` drives the same
//! [`ShardCore`]s from its own io_uring or epoll loops.
//!
//! **Architecture Invariant:** this crate is the only place where Rush's shards get threads
//! and a clock; the engine it drives stays pure. `unsafe` here lives only in [`ring`] (slots
//! written and read across threads), each block with its `SAFETY:` argument.

pub mod clock;
pub mod cluster;
pub mod journal;
pub mod metrics;
pub mod published;
pub mod ring;
pub mod shard;
pub mod shard_loop;
pub mod stop;
pub mod storage;
mod sync;
pub mod waker;

pub use clock::{unix_ms, ShardClock};
pub use cluster::{pin_plan, quiesce, PortDriver, Runtime};
pub use published::Board;
pub use shard::{
    Completion, LocalCompletion, Mesh, Port, RuntimeConfig, ShardCore, Submission, BATCH_MAX,
};
pub use shard_loop::{run_shard, Driver, LoopCounters, LoopOptions};
pub use stop::StopState;
pub use storage::{
    write_and_sync, DurableWrites, InlineWrites, LazySyncWriter, SyncFailure, SyncWrite,
    SyncWriter, Synced,
};
pub use waker::{Doorbell, Notify, ThreadNotify};
