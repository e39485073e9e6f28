//! How a set of shards stops together.
//!
//! A stop is requested once (a signal, `Server::shutdown`, `Runtime::stop`). Each shard then
//! stops taking new work (its driver closes listeners) and answers what is in flight. A shard
//! whose own clients are done keeps serving its rings until **every** shard is done, or the
//! grace period is over: another shard's client may still wait for a reply from it.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The stop request, and how many shards still have clients to finish.
#[derive(Debug)]
pub struct StopState {
    requested: AtomicBool,
    draining: AtomicU32,
    grace: Duration,
}

impl StopState {
    /// For `shard_count` shards that keep answering for at most `grace` after a stop.
    pub fn new(shard_count: u32, grace: Duration) -> StopState {
        StopState {
            requested: AtomicBool::new(false),
            draining: AtomicU32::new(shard_count),
            grace,
        }
    }

    /// Asks every shard to stop. The caller then rings every shard's doorbell, so a sleeping
    /// shard sees it (the Release store pairs with the Acquire load in `requested`).
    pub fn request(&self) {
        self.requested.store(true, Ordering::Release);
    }

    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// Called every pass after a stop was requested; true when this shard may leave its
    /// loop. `counted` is the shard's own flag: it is counted out once, when its clients are
    /// done (or the grace period is over).
    pub fn may_leave(&self, clients_done: bool, counted: &mut bool, since: Instant) -> bool {
        let expired = since.elapsed() > self.grace;
        if !*counted && (clients_done || expired) {
            let before = self.draining.fetch_sub(1, Ordering::AcqRel);
            assert!(before > 0, "a shard is counted out once");
            *counted = true;
        }
        *counted && (self.draining.load(Ordering::Acquire) == 0 || expired)
    }
}
