//! The one shard loop, over a small [`Driver`] trait (the way monoio's `Driver` has io_uring
//! and legacy backends). Every shard thread runs [`run_shard`]: the in-process port runtime
//! ([`crate::Runtime`]), the io_uring server and the epoll server only supply the driver.
//!
//! One pass:
//! 1. read the clock once ([`ShardClock`]: unix ms, never going back);
//! 2. apply what the peers sent over the mesh ([`ShardCore::poll_peers`]);
//! 3. take in what the driver has (client input, while the core accepts it:
//!    [`Driver::receive`]);
//! 4. tick the engine's timers, move its output onto the rings, publish the board, seal the
//!    pass's journal entry ([`ShardCore::finish_pass`]);
//! 5. the journal: completed writes, replies whose entry is now stable, the next group
//!    commit submitted through the driver ([`ShardCore::journal_pass`]);
//! 6. hand the replies to the driver ([`Driver::send`]), and publish the shard's metrics
//!    when due (at most once a millisecond; always before it sleeps:
//!    [`ShardCore::publish_metrics`]);
//! 7. on a stop request: stop taking new clients ([`Driver::begin_stop`]) and leave once every
//!    shard's clients are done ([`StopState`]);
//! 8. if the pass did anything, submit what it queued ([`Driver::submit`]) and go again;
//!    otherwise spin for `idle_spin` watching for input, then sleep on the doorbell in the
//!    driver's [`Driver::park`] until a peer rings, the kernel has something, or the next
//!    engine timer is due (at most `idle_park_max`).
//!
//! **Architecture Invariant:** the pass order, the idle protocol (spin, then the doorbell
//! handshake) and the stop protocol exist only here; a driver only moves bytes between the
//! kernel and the core.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::ShardClock;
use crate::shard::ShardCore;
use crate::stop::StopState;
use crate::storage::DurableWrites;
use crate::waker::Notify;

/// A sleeping shard with output waiting for room in a peer's ring wakes this often to retry
/// (the consumer of a ring does not ring the producer's doorbell when it makes room).
pub const BACKLOG_RETRY: Duration = Duration::from_micros(100);

/// A `sched_yield` that took at least this long ran another thread: the shard shares its
/// core (a yield that finds nobody to run returns in under a microsecond, about 0.65 µs on
/// the benchmark VM).
pub const YIELD_HANDED_OVER: Duration = Duration::from_micros(2);

/// What the shard loop needs from an I/O layer. Implemented by the io_uring and epoll
/// network backends (`rush-net`) and by the port driver of the in-process runtime.
pub trait Driver: DurableWrites {
    /// Takes in, without blocking, what arrived since the last call: client input is handed
    /// to `core` (only while [`ShardCore::accepts_clients`]), completions are recorded.
    /// Returns the work done (0 when nothing arrived).
    fn receive(&mut self, core: &mut ShardCore, now_ms: u64) -> io::Result<usize>;

    /// Hands the replies `core` produced for this driver's clients to the I/O layer (encoded
    /// into send buffers, sends queued). Returns the work done.
    fn send(&mut self, core: &mut ShardCore) -> io::Result<usize>;

    /// Submits what this pass queued to the kernel, without waiting (one `io_uring_enter`
    /// for every send, receive and write of the pass; nothing for readiness-based I/O).
    fn submit(&mut self) -> io::Result<()>;

    /// A cheap check for the idle spin: has input arrived that [`Driver::receive`] would
    /// take? (A memory read on io_uring, a non-blocking poll on epoll.)
    fn input_pending(&mut self) -> bool;

    /// Input of the driver's own that arrives by a ring and a doorbell rather than through
    /// the kernel (completions of a helper thread): checked in the sleep handshake, after the
    /// shard announced its sleep, so a push followed by a ring is never missed. (The core's
    /// own rings, peers and ports, are checked by [`ShardCore::has_input`].)
    fn has_mail(&self) -> bool;

    /// Blocks until the kernel has something, the notifier fires, or `timeout` passes;
    /// submits what is queued on the way.
    fn park(&mut self, timeout: Duration) -> io::Result<()>;

    /// What wakes [`Driver::park`] from another thread; installed on the shard's doorbell
    /// once, before the loop starts.
    fn notifier(&self) -> io::Result<Box<dyn Notify>>;

    /// A stop was requested: stop accepting clients and reading new input; answer what is
    /// in flight.
    fn begin_stop(&mut self);

    /// After [`Driver::begin_stop`]: true once every client is done (answered and closed).
    fn clients_done(&self) -> bool;
}

/// How a shard loop idles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopOptions {
    /// How long an idle shard spins watching for input before it sleeps (0 = sleep at once).
    pub idle_spin: Duration,
    /// The longest sleep of an idle shard. It wakes earlier for its next engine timer, a
    /// doorbell or the kernel; this bound only matters if a wake-up were lost.
    pub idle_park_max: Duration,
}

impl Default for LoopOptions {
    fn default() -> Self {
        LoopOptions { idle_spin: Duration::ZERO, idle_park_max: Duration::from_millis(100) }
    }
}

/// What a shard loop counted about its own idling (for the benchmarks and `rush serve`'s
/// summary).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopCounters {
    pub passes: u64,
    /// Sleeps in [`Driver::park`].
    pub parks: u64,
    /// Parks that lasted their whole timeout (a timer fell due, or nothing came).
    pub parks_timed_out: u64,
    /// Parks that lasted their whole timeout and found ring input or mail waiting when they
    /// ended: a lost wake-up, or input that arrived just as the timeout fell. With long
    /// timeouts under steady load the second is rare, so a count here is worth a look.
    pub parks_timed_out_with_input: u64,
}

/// Runs `core` over `driver` until the stop protocol lets it leave.
pub fn run_shard<D: Driver>(
    core: &mut ShardCore,
    driver: &mut D,
    stop: &StopState,
    options: LoopOptions,
) -> io::Result<LoopCounters> {
    let doorbell = Arc::clone(core.doorbell());
    if !doorbell.set_notifier(driver.notifier()?) {
        return Err(io::Error::other("the shard's doorbell already has a notifier"));
    }
    let mut clock = ShardClock::starting_at(core.engine().now_ms());
    let mut spin = Spin::new(options.idle_spin);
    let mut stopping_since: Option<Instant> = None;
    let mut counted_out = false;
    let mut counters = LoopCounters::default();
    loop {
        counters.passes += 1;
        let now_ms = clock.now_ms();
        let mut work = core.poll_peers(now_ms);
        work += driver.receive(core, now_ms)?;
        work += core.finish_pass(now_ms);
        work += core.journal_pass(driver, now_ms);
        work += driver.send(core)?;
        core.publish_metrics(now_ms, false);
        if stop.requested() {
            let since = *stopping_since.get_or_insert_with(|| {
                driver.begin_stop();
                Instant::now()
            });
            // Everything applied becomes durable before the shard leaves, whatever the
            // interval.
            core.request_journal_flush();
            // Leave only with every connection done and the journal settled: no write in
            // flight (its buffer), nothing applied that is not durable, no reply held.
            let done = driver.clients_done() && core.journal_settled();
            if stop.may_leave(done, &mut counted_out, since) {
                driver.submit()?;
                break;
            }
        }
        if work > 0 {
            driver.submit()?;
            continue;
        }
        if spin.spin(|| core.has_input() || driver.has_mail() || driver.input_pending()) {
            driver.submit()?;
            continue;
        }
        // About to sleep: the metrics row shows everything counted so far.
        core.publish_metrics(now_ms, true);
        let timeout = park_timeout(core, now_ms, options.idle_park_max);
        let started = Instant::now();
        // The doorbell handshake: a peer that pushed since our last look makes the announce
        // fail; the ring re-check only saves a sleep when input is already visible.
        let parked = match doorbell.announce_sleep() {
            Some(_sleeping) if !(core.has_input() || driver.has_mail()) => {
                Some(driver.park(timeout))
            }
            _ => None,
        };
        match parked {
            // Work arrived during the handshake: no sleep, but queued operations still go.
            None => driver.submit()?,
            Some(result) => {
                result?;
                counters.parks += 1;
                if started.elapsed() >= timeout {
                    counters.parks_timed_out += 1;
                    if core.has_input() || driver.has_mail() {
                        counters.parks_timed_out_with_input += 1;
                    }
                }
            }
        }
    }
    Ok(counters)
}

/// How long an idle shard may sleep: until its next engine timer, at most `max`; briefly
/// when output waits for room in a peer's ring.
fn park_timeout(core: &ShardCore, now_ms: u64, max: Duration) -> Duration {
    if core.has_backlog() {
        return BACKLOG_RETRY.min(max);
    }
    match core.next_wake_ms() {
        // The timer's millisecond starts at `next_ms`: wake at its start (plus the part of
        // the current millisecond that has passed, which we cannot see: at most 1 ms late).
        Some(next_ms) => Duration::from_millis(next_ms.saturating_sub(now_ms).max(1)).min(max),
        None => max,
    }
}

/// The idle spin: busy-waits for `spin_first`, then yields the core until the budget is up.
/// `spin_first` adapts: it drops to zero as soon as a yield ran another thread (the shard
/// shares its core, for example with a client thread that needs the core to send the next
/// request, so spinning would only delay it), and grows back towards half the budget while
/// yields find nobody to run (the core is the shard's own, and a pure spin answers fastest,
/// with no system call).
#[derive(Debug)]
struct Spin {
    budget: Duration,
    spin_first: Duration,
}

impl Spin {
    fn new(budget: Duration) -> Spin {
        Spin { budget, spin_first: budget / 2 }
    }

    /// Spins up to the budget; true as soon as `has_input` says so.
    fn spin(&mut self, mut has_input: impl FnMut() -> bool) -> bool {
        if self.budget.is_zero() {
            return false;
        }
        let started = Instant::now();
        let mut handed_over = false;
        let mut found = false;
        loop {
            if has_input() {
                found = true;
                break;
            }
            let idle = started.elapsed();
            if idle >= self.budget {
                break;
            }
            if idle < self.spin_first {
                std::hint::spin_loop();
            } else {
                let yielded = Instant::now();
                std::thread::yield_now();
                handed_over |= yielded.elapsed() >= YIELD_HANDED_OVER;
            }
        }
        self.spin_first = if handed_over {
            Duration::ZERO
        } else {
            (self.spin_first * 2 + Duration::from_micros(1)).min(self.budget / 2)
        };
        found
    }
}
