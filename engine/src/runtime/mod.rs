//! The threaded runtime around the pure engine: pinned shard threads, the SPSC ring mesh
//! and the doorbells that wake idle shards. The only part of `engine/` that spawns threads
//! and reads the clock.

pub mod cluster;
pub mod ring;
pub mod waker;

pub use cluster::{Completion, Port, Runtime, RuntimeConfig, Submission};
