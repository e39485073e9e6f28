//! [`Runtime`]: shards on pinned threads, fed by in-process client threads through
//! [`Port`]s (benchmark drivers, tests). The network server runs the same [`ShardCore`]s
//! from its own loops instead.
//!
//! Each shard thread runs the loop:
//! 1. pop what peers sent (quota messages, forwarded requests, replies) and apply it;
//! 2. unless it has output waiting for room, pop client submissions from every port, apply
//!    the ones it owns and forward the others to their home (or coordinator) shard;
//! 3. tick the clock, move the engine's messages onto the peer rings and its replies onto
//!    the port rings, waking a peer only if it sleeps;
//! 4. when a pass found nothing to do, spin for `idle_spin_us` re-checking its rings, then
//!    park on its doorbell (at most 1 ms, so timers fire on time). The spin yields the core
//!    while the shard shares it with another busy thread (see [`YIELD_HANDED_OVER`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::published::Board;
use super::shard::{Mesh, Port, RuntimeConfig, ShardCore};
use super::waker::Doorbell;
use crate::Engine;

/// Longest park of an idle shard: bounds the extra delay of a timer (expiry, wait timeout)
/// when nothing else wakes the shard.
pub const IDLE_PARK_MS: u64 = 1;

/// A `sched_yield` that took at least this long ran another thread: the shard shares its
/// core (a yield that finds nobody to run returns in under a microsecond, about 0.65 µs on
/// the benchmark VM).
pub const YIELD_HANDED_OVER: Duration = Duration::from_micros(2);

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// The core each shard is pinned to: the process's core list is read **once**, before any
/// thread is pinned (pinning a thread changes what the process may see as available), and
/// shard `i` gets the `i`-th core, wrapping when there are more shards than cores. Empty
/// entries (no pinning) when `pin` is false or the list cannot be read.
pub fn pin_plan(shard_count: u32, pin: bool) -> Vec<Option<core_affinity::CoreId>> {
    let cores = if pin { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() };
    (0..shard_count as usize)
        .map(|shard| if cores.is_empty() { None } else { Some(cores[shard % cores.len()]) })
        .collect()
}

/// A running set of shards.
#[derive(Debug)]
pub struct Runtime {
    stop: Arc<AtomicBool>,
    doorbells: Vec<Arc<Doorbell>>,
    board: Arc<Board>,
    threads: Vec<JoinHandle<ShardCore>>,
}

impl Runtime {
    /// Starts `shard_count` shard threads and returns the runtime and its ports.
    pub fn start(config: RuntimeConfig) -> Result<(Runtime, Vec<Port>), crate::ConfigError> {
        let Mesh { shards, ports, doorbells, board } = Mesh::build(&config)?;
        let plan = pin_plan(config.shard_count, config.pin);
        let stop = Arc::new(AtomicBool::new(false));
        let idle_spin = Duration::from_micros(config.idle_spin_us);
        let mut threads = Vec::new();
        for (core, shard) in plan.into_iter().zip(shards) {
            let stop = Arc::clone(&stop);
            let handle = std::thread::Builder::new()
                .name(format!("rush-shard-{}", shard.shard()))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    let mut shard = shard;
                    run(&mut shard, &stop, idle_spin);
                    shard
                })
                .expect("spawning a shard thread");
            threads.push(handle);
        }
        Ok((Runtime { stop, doorbells, board, threads }, ports))
    }

    /// The levels every shard publishes (QUERY_SKU from any core reads them).
    pub fn board(&self) -> &Arc<Board> {
        &self.board
    }

    /// Stops every shard thread, then delivers in this thread whatever was still in the
    /// rings and backlogs, so the returned engines are quiescent: no message in flight. The
    /// ports' unread completions are dropped with the ports (the caller stopped using them).
    pub fn stop(self) -> Vec<Engine> {
        self.stop.store(true, Ordering::SeqCst);
        for doorbell in &self.doorbells {
            doorbell.wake();
        }
        let shards: Vec<ShardCore> =
            self.threads.into_iter().map(|handle| handle.join().expect("shard thread")).collect();
        quiesce(shards)
    }
}

/// Passes messages between the (stopped) shards in this thread until nothing moves, so the
/// engines are quiescent: no message in flight.
pub fn quiesce(mut shards: Vec<ShardCore>) -> Vec<Engine> {
    loop {
        let mut moved = 0;
        let now_ms = unix_ms();
        for shard in shards.iter_mut() {
            moved += shard.poll_peers(now_ms);
            moved += shard.finish_pass(now_ms);
            shard.drain_local().for_each(drop);
        }
        // Peer backlogs live in the sender, ring contents in the receiver: a pass of every
        // shard moves both.
        if moved == 0 && shards.iter().all(|shard| !shard.has_backlog() && !shard.has_peer_input())
        {
            break;
        }
    }
    shards.into_iter().map(ShardCore::into_engine).collect()
}

fn run(shard: &mut ShardCore, stop: &AtomicBool, idle_spin: Duration) {
    let doorbell = Arc::clone(shard.doorbell());
    // The idle phase busy-waits for `spin_first`, then yields the core until `idle_spin` is
    // up. `spin_first` adapts: it drops to zero as soon as a yield ran another thread (the
    // shard shares its core, for example with a client thread that needs the core to send
    // the next request, so spinning would only delay it), and grows back towards half the
    // budget while yields find nobody to run (the core is the shard's own, and a pure spin
    // answers fastest, with no system call).
    let spin_cap = idle_spin / 2;
    let mut spin_first = spin_cap;
    loop {
        let now_ms = unix_ms();
        let mut work = shard.poll_peers(now_ms);
        work += shard.poll_ports(now_ms);
        work += shard.finish_pass(now_ms);
        if work > 0 {
            continue;
        }
        if stop.load(Ordering::Acquire) {
            break;
        }
        if !idle_spin.is_zero() {
            let started = Instant::now();
            let mut handed_over = false;
            while !shard.has_input() {
                let idle = started.elapsed();
                if idle >= idle_spin {
                    break;
                }
                if idle < spin_first {
                    std::hint::spin_loop();
                } else {
                    let yielded = Instant::now();
                    std::thread::yield_now();
                    handed_over |= yielded.elapsed() >= YIELD_HANDED_OVER;
                }
            }
            spin_first = if handed_over {
                Duration::ZERO
            } else {
                (spin_first * 2 + Duration::from_micros(1)).min(spin_cap)
            };
            if shard.has_input() {
                continue;
            }
        }
        // Sleep until a producer rings, or IDLE_PARK_MS so that timers still fire on time.
        doorbell.sleep(Duration::from_millis(IDLE_PARK_MS), || shard.has_input());
    }
}
