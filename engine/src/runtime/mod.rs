//! The threaded runtime around the pure engine: the shard core (engine + ring mesh ends +
//! routing), the SPSC rings, the doorbells that wake idle shards, the board of published
//! levels, and [`Runtime`], which runs shards on pinned threads for in-process clients. The
//! only part of `engine/` that spawns threads and reads the clock. The network server in
//! `rush-net` drives the same [`ShardCore`]s from its own io_uring or epoll loops.

pub mod cluster;
pub mod published;
pub mod ring;
pub mod shard;
pub mod waker;

pub use cluster::{pin_plan, quiesce, unix_ms, Runtime};
pub use published::Board;
pub use shard::{
    Completion, LocalCompletion, Mesh, Port, RuntimeConfig, ShardCore, Submission, BATCH_MAX,
};
pub use waker::{Doorbell, Notify};
