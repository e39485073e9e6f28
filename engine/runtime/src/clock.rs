//! The clock a shard hands its engine: wall-clock unix milliseconds, read once per loop pass,
//! and never going back (a wall clock stepped back by NTP holds at the last reading), so every
//! reading a shard records in its journal is at least the engine's own clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// A monotonic view of [`unix_ms`] for one shard.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShardClock {
    last_ms: u64,
}

impl ShardClock {
    /// A clock that never reads below `floor_ms` (a recovered engine's clock).
    pub fn starting_at(floor_ms: u64) -> ShardClock {
        ShardClock { last_ms: floor_ms }
    }

    /// The current reading: the wall clock, or the last reading if the wall clock is behind.
    pub fn now_ms(&mut self) -> u64 {
        self.last_ms = self.last_ms.max(unix_ms());
        self.last_ms
    }
}
