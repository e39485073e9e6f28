//! [`Runtime`]: shards on pinned threads, fed by in-process client threads through
//! [`Port`]s (benchmark drivers, tests). Each shard runs the one shard loop
//! ([`crate::run_shard`]) over a [`PortDriver`]: its client input is the port rings, and it
//! sleeps by parking its thread (a futex), woken by an unpark from whoever rings its doorbell.
//! The network server runs the same [`ShardCore`]s over its io_uring or epoll drivers.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::published::Board;
use crate::shard::{Mesh, Port, RuntimeConfig, ShardCore};
use crate::shard_loop::{run_shard, Driver, LoopCounters};
use crate::stop::StopState;
use crate::storage::{DurableWrites, InlineWrites, LazySyncWriter, SyncWrite, Synced};
use crate::waker::{Doorbell, Notify, ThreadNotify};
use rush_engine::Engine;

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

/// The driver of a shard fed by in-process ports: receives from the port rings (inside the
/// core), replies straight onto them, parks its thread when idle, and writes durably through
/// a helper thread ([`LazySyncWriter`], started on first use).
#[derive(Debug)]
pub struct PortDriver {
    writes: LazySyncWriter,
    stopping: bool,
}

impl PortDriver {
    /// The driver of `core`'s thread.
    pub fn new(core: &ShardCore) -> PortDriver {
        PortDriver {
            writes: LazySyncWriter::new(core.shard(), Arc::clone(core.doorbell())),
            stopping: false,
        }
    }
}

impl Driver for PortDriver {
    fn receive(&mut self, core: &mut ShardCore, now_ms: u64) -> io::Result<usize> {
        if self.stopping {
            return Ok(0);
        }
        Ok(core.poll_ports(now_ms))
    }

    fn send(&mut self, _core: &mut ShardCore) -> io::Result<usize> {
        // Replies to ports went onto their rings when they were produced.
        Ok(0)
    }

    fn submit(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn input_pending(&mut self) -> bool {
        false // Port input is mail: `has_mail` covers it.
    }

    fn has_mail(&self) -> bool {
        self.writes.has_completion()
    }

    fn park(&mut self, timeout: Duration) -> io::Result<()> {
        std::thread::park_timeout(timeout);
        Ok(())
    }

    fn notifier(&self) -> io::Result<Box<dyn Notify>> {
        Ok(Box::new(ThreadNotify(std::thread::current())))
    }

    fn begin_stop(&mut self) {
        self.stopping = true;
    }

    fn clients_done(&self) -> bool {
        // Port clients stopped submitting before the runtime was stopped; what is still in
        // the rings is delivered by `quiesce`.
        true
    }
}

impl DurableWrites for PortDriver {
    fn write_and_sync(&mut self, write: SyncWrite) -> Result<(), SyncWrite> {
        self.writes.write_and_sync(write)
    }

    fn take_synced(&mut self) -> Option<Synced> {
        self.writes.take_synced()
    }
}

/// How long a stopping runtime's shards keep serving their rings for each other.
pub const RUNTIME_STOP_GRACE: Duration = Duration::from_secs(2);

/// A running set of shards.
#[derive(Debug)]
pub struct Runtime {
    stop: Arc<StopState>,
    doorbells: Vec<Arc<Doorbell>>,
    board: Arc<Board>,
    threads: Vec<JoinHandle<(ShardCore, io::Result<LoopCounters>)>>,
}

impl Runtime {
    /// Starts `shard_count` shard threads and returns the runtime and its ports.
    pub fn start(config: RuntimeConfig) -> Result<(Runtime, Vec<Port>), rush_engine::ConfigError> {
        let Mesh { shards, ports, doorbells, board } = Mesh::build(&config)?;
        let plan = pin_plan(config.shard_count, config.pin);
        let stop = Arc::new(StopState::new(config.shard_count, RUNTIME_STOP_GRACE));
        let options = config.loop_options();
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
                    let mut driver = PortDriver::new(&shard);
                    let result = run_shard(&mut shard, &mut driver, &stop, options);
                    (shard, result)
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
        self.stop_counted().0
    }

    /// [`Runtime::stop`], also returning each shard loop's idling counters (for the
    /// benchmarks: a park that ran to its timeout with input waiting is a suspected lost
    /// wake-up).
    pub fn stop_counted(self) -> (Vec<Engine>, Vec<LoopCounters>) {
        self.stop.request();
        for doorbell in &self.doorbells {
            doorbell.wake();
        }
        let mut counters = Vec::with_capacity(self.threads.len());
        let shards: Vec<ShardCore> = self
            .threads
            .into_iter()
            .map(|handle| {
                let (shard, result) = handle.join().expect("shard thread");
                counters.push(result.expect("a port shard's loop does no fallible I/O"));
                shard
            })
            .collect();
        (quiesce(shards), counters)
    }
}

/// Passes messages between the (stopped) shards in this thread until nothing moves, so the
/// engines are quiescent: no message in flight.
pub fn quiesce(mut shards: Vec<ShardCore>) -> Vec<Engine> {
    let mut clock = crate::clock::ShardClock::starting_at(
        shards.iter().map(|shard| shard.engine().now_ms()).max().unwrap_or(0),
    );
    // What these last passes apply is journaled like any other input, written inline.
    let mut storage: Vec<InlineWrites> = shards.iter().map(|_| InlineWrites::default()).collect();
    loop {
        let mut moved = 0;
        let now_ms = clock.now_ms();
        for (shard, storage) in shards.iter_mut().zip(storage.iter_mut()) {
            shard.request_journal_flush();
            moved += shard.poll_peers(now_ms);
            moved += shard.finish_pass(now_ms);
            moved += shard.journal_pass(storage, now_ms);
            shard.drain_local().for_each(drop);
        }
        // Peer backlogs live in the sender, ring contents in the receiver: a pass of every
        // shard moves both.
        let idle = shards.iter().all(|shard| {
            !shard.has_backlog() && !shard.has_peer_input() && shard.journal_settled()
        });
        if moved == 0 && idle {
            break;
        }
    }
    shards.into_iter().map(ShardCore::into_engine).collect()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Instant;

    /// The port driver's durable writes go through its helper thread and come back in a
    /// later pass: the bytes on disk, the buffer returned, errors reported as errors.
    #[test]
    fn port_driver_writes_durably() {
        let config = RuntimeConfig {
            shard_count: 1,
            engine: rush_engine::Config::small(),
            port_count: 0,
            ring_capacity: 64,
            pin: false,
            idle_spin_us: 0,
            idle_park_max_ms: 1,
            parked_max: crate::shard::PARKED_MAX_DEFAULT,
        };
        let mut core = Mesh::build(&config).unwrap().shards.pop().unwrap();
        let mut driver = PortDriver::new(&core);
        assert!(core.doorbell().set_notifier(driver.notifier().unwrap()));
        let path = std::env::temp_dir().join(format!("rush-port-driver-{}", std::process::id()));
        let file = Arc::new(
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(&path)
                .unwrap(),
        );
        let read_only = Arc::new(std::fs::File::open(&path).unwrap());
        let writes = [
            SyncWrite { file: Arc::clone(&file), offset: 0, bytes: b"journal".to_vec(), token: 1 },
            SyncWrite { file: read_only, offset: 0, bytes: b"refused".to_vec(), token: 2 },
        ];
        for write in writes {
            driver.write_and_sync(write).unwrap();
        }
        let started = Instant::now();
        let mut done = Vec::new();
        while done.len() < 2 {
            assert!(started.elapsed() < Duration::from_secs(10), "writes never completed");
            driver.receive(&mut core, 0).unwrap();
            while let Some(synced) = driver.take_synced() {
                done.push(synced);
            }
            // The helper rings the shard's doorbell: the sleep handshake must see it.
            if done.len() == 2 {
                break;
            }
            let doorbell = Arc::clone(core.doorbell());
            let sleeping = doorbell.announce_sleep();
            if sleeping.is_some() && !driver.has_mail() {
                driver.park(Duration::from_secs(5)).unwrap();
            }
            drop(sleeping);
        }
        done.sort_by_key(|synced| synced.token);
        assert!(done[0].result.is_ok());
        assert_eq!(done[0].bytes, b"journal");
        assert!(done[1].result.is_err(), "a refused write is reported as an error");
        assert_eq!(std::fs::read(&path).unwrap(), b"journal");
        std::fs::remove_file(&path).unwrap();
    }
}
