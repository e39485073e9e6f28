//! Durability: each shard journals every input that changes its state, in the order it
//! applied them, and recovery replays the journals through the same engine code
//! (docs/JOURNAL.md for the bytes, docs/ARCHITECTURE.md for the design).
//!
//! - `codec`: the inputs (tick, request, mesh message with its cause, start) as bytes;
//! - `format`: an entry (header with checksums and the hash chain, body, padding);
//! - `writer`: `JournalWriter`, the group-commit state machine (no I/O of its own);
//! - `scan`: reading a journal back, torn tail versus corruption;
//! - `recovery`: the consistent cut across shards, replay, redelivery;
//! - `files`: the data directory, its lock, segment files;
//! - `snapshot`: a shard's snapshot file (engine state, links, messages to redeliver);
//! - `snapshotter`: taking snapshots while a shard runs, and the outbox they carry;
//! - `stability`: which entries are durable here and on every shard they depend on;
//! - `start`: a durable server's start (open, recover, install, journal the start).

pub mod codec;
pub mod files;
pub mod format;
pub mod recovery;
pub mod scan;
pub mod snapshot;
pub mod snapshotter;
pub mod stability;
pub mod start;
pub mod writer;

pub use codec::Input;
pub use files::{list_segments, read_meta, DataDir, DataDirError, SegmentFiles};
pub use recovery::{recover, Recovered, RecoveredShard, RecoveryError, Redelivery, SnapshotStart};
pub use snapshot::{OutboxMessage, SnapshotEvery, SNAPSHOT_EVERY_DEFAULT};
pub use snapshotter::{Outbox, SnapshotCounters, Snapshotter};
pub use stability::Stability;
pub use start::{
    replay_directory, start_durable, start_durable_with, JournalOptions, RecoveryReport,
    ShardRecovery, StartError,
};
pub use writer::{
    Durability, JournalCounters, JournalFault, JournalWrite, JournalWriter, SegmentPosition,
};

/// Every reservation slot's generation jumps by this at each start, so an id handed out in
/// a journal tail a crash lost is never handed out again (a slot would have to be reused
/// this many times within one unsynced window).
pub const GENERATION_JUMP: u32 = 1 << 16;
