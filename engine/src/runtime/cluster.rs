//! The threaded runtime: one pinned thread per shard, an N×N mesh of SPSC rings between
//! shards, and *ports* through which client threads (the network loops, benchmark drivers,
//! tests) submit requests and receive replies.
//!
//! Each shard thread owns one [`Engine`] and runs the loop:
//! 1. pop what peers sent (quota messages and forwarded requests) and apply it;
//! 2. unless it has output waiting for room, pop client submissions from every port, apply
//!    the ones it owns and forward the others to their home (or coordinator) shard;
//! 3. tick the clock, move the engine's messages onto the peer rings and its replies and
//!    events onto the port rings, waking a consumer only if it sleeps;
//! 4. sleep on its doorbell when a pass found nothing to do.
//!
//! **Architecture Invariant:** a shard thread is the only one that touches its `Engine`;
//! shards share nothing but rings and doorbells.
//!
//! **Architecture Invariant:** a full ring is backpressure, never a drop: output that does
//! not fit stays in the shard's backlog, and while any backlog is non-empty the shard stops
//! accepting client submissions (it keeps draining peers, so two shards full of each other's
//! messages both make progress). The backlog is therefore bounded by what one pass can emit.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::ring::{channel, Consumer, Producer};
use super::waker::Doorbell;
use crate::quota::{route, Envelope, Placement};
use crate::{Config, Engine, Reply, Request, ResultCode};

/// How many items one ring pop takes at most: a batch amortises the index publication and
/// lets the engine overlap the cache misses of a batch.
const BATCH_MAX: usize = 64;

/// What a client puts on a port: its own tag (echoed back) and the request.
#[derive(Clone, Copy, Debug)]
pub struct Submission {
    pub tag: u64,
    pub request: Request,
}

/// What comes back: the tag of the submission and its final reply. A RESERVE that waits
/// (in a line, or for its coordinator) completes once, with its final answer.
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    pub tag: u64,
    pub reply: Reply,
}

/// Shard-to-shard traffic.
#[derive(Clone, Copy, Debug)]
enum Mail {
    Quota(Envelope),
    /// A client request that arrived on a shard other than the one that owns it.
    Forward {
        port: u32,
        tag: u64,
        request: Request,
    },
}

#[derive(Clone, Copy, Debug)]
pub struct RuntimeConfig {
    pub shard_count: u32,
    pub engine: Config,
    /// Client ports (each one client thread's pair of rings per shard).
    pub port_count: u32,
    /// Capacity of every ring (rounded up to a power of two).
    pub ring_capacity: usize,
    /// Pin shard `i` to the `i`-th core of the list read at start.
    pub pin: bool,
}

/// One client thread's connection to every shard. Not shared: a port is single-producer
/// and single-consumer on both sides.
pub struct Port {
    pub id: u32,
    to_shards: Vec<Producer<Submission>>,
    from_shards: Vec<Consumer<Completion>>,
    doorbells: Vec<Arc<Doorbell>>,
    shard_count: u32,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Port").field("id", &self.id).finish()
    }
}

impl Port {
    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }

    /// The shard a shard-aware client sends `request` to (its home or coordinator), so the
    /// common path has no forwarding hop.
    pub fn shard_for(&self, request: &Request) -> u32 {
        route(request, self.shard_count).unwrap_or(0)
    }

    /// Queues a request on `shard`. `Err` gives it back when the ring is full
    /// (backpressure: poll completions and retry).
    pub fn submit(&mut self, shard: u32, submission: Submission) -> Result<(), Submission> {
        self.to_shards[shard as usize].push(submission)?;
        self.doorbells[shard as usize].wake();
        Ok(())
    }

    /// Moves every available completion into `out`; returns how many.
    pub fn poll(&mut self, out: &mut Vec<Completion>) -> usize {
        let mut count = 0;
        for consumer in &mut self.from_shards {
            count += consumer.pop_batch(out, usize::MAX);
        }
        count
    }
}

/// A running set of shards.
#[derive(Debug)]
pub struct Runtime {
    stop: Arc<AtomicBool>,
    doorbells: Vec<Arc<Doorbell>>,
    threads: Vec<JoinHandle<ShardThread>>,
}

impl Runtime {
    /// Starts `shard_count` shard threads and returns the runtime and its ports.
    pub fn start(config: RuntimeConfig) -> Result<(Runtime, Vec<Port>), crate::ConfigError> {
        let shard_count = config.shard_count;
        if shard_count == 0 || shard_count > Placement::SHARD_COUNT_MAX {
            return Err(crate::ConfigError { field: "shard_count", reason: "must be 1..=64" });
        }
        if config.port_count == 0 || config.port_count > 1024 {
            return Err(crate::ConfigError { field: "port_count", reason: "must be 1..=1024" });
        }
        config.engine.validate()?;
        // The core list is read once, before any thread is pinned (pinning changes what
        // the process may see as available).
        let cores =
            if config.pin { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() };
        let n = shard_count as usize;
        let ports_n = config.port_count as usize;
        let doorbells: Vec<Arc<Doorbell>> = (0..n).map(|_| Arc::new(Doorbell::new())).collect();

        // mesh[from][to]
        let mut mesh_producers: Vec<Vec<Option<Producer<Mail>>>> = Vec::new();
        let mut mesh_consumers: Vec<Vec<Option<Consumer<Mail>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        for from in 0..n {
            let mut row = Vec::new();
            for inbound in mesh_consumers.iter_mut() {
                let (producer, consumer) = channel(config.ring_capacity);
                row.push(Some(producer));
                inbound[from] = Some(consumer);
            }
            mesh_producers.push(row);
        }
        let mut ports = Vec::new();
        let mut submissions_in: Vec<Vec<Consumer<Submission>>> =
            (0..n).map(|_| Vec::new()).collect();
        let mut completions_out: Vec<Vec<Producer<Completion>>> =
            (0..n).map(|_| Vec::new()).collect();
        for port in 0..ports_n {
            let mut to_shards = Vec::new();
            let mut from_shards = Vec::new();
            for shard in 0..n {
                let (producer, consumer) = channel(config.ring_capacity);
                to_shards.push(producer);
                submissions_in[shard].push(consumer);
                let (producer, consumer) = channel(config.ring_capacity);
                completions_out[shard].push(producer);
                from_shards.push(consumer);
            }
            ports.push(Port {
                id: port as u32,
                to_shards,
                from_shards,
                doorbells: doorbells.clone(),
                shard_count,
            });
        }

        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for shard in (0..n).rev() {
            let engine =
                Engine::new_shard(config.engine, Placement { shard: shard as u32, shard_count })?;
            let thread = ShardThread {
                engine,
                shard: shard as u32,
                peers_out: mesh_producers[shard]
                    .iter_mut()
                    .map(|p| p.take().expect("once"))
                    .collect(),
                peers_in: mesh_consumers[shard]
                    .iter_mut()
                    .map(|c| c.take().expect("once"))
                    .collect(),
                ports_in: std::mem::take(&mut submissions_in[shard]),
                ports_out: std::mem::take(&mut completions_out[shard]),
                peer_backlog: (0..n).map(|_| VecDeque::new()).collect(),
                port_backlog: (0..ports_n).map(|_| VecDeque::new()).collect(),
                waiting: HashMap::with_capacity(config.engine.reservation_max as usize),
                doorbells: doorbells.clone(),
                woken_peers: vec![false; n],
            };
            let core = cores.get(shard % cores.len().max(1)).copied();
            let stop = Arc::clone(&stop);
            let handle = std::thread::Builder::new()
                .name(format!("rush-shard-{shard}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    let mut thread = thread;
                    thread.run(&stop);
                    thread
                })
                .expect("spawning a shard thread");
            threads.push(handle);
        }
        threads.reverse();
        Ok((Runtime { stop, doorbells, threads }, ports))
    }

    /// Stops every shard thread, then delivers in this thread whatever was still in the
    /// rings and backlogs, so the returned engines are quiescent: no message in flight. The
    /// ports' unread completions are dropped with the ports (the caller stopped using them).
    pub fn stop(self) -> Vec<Engine> {
        self.stop.store(true, Ordering::SeqCst);
        for doorbell in &self.doorbells {
            doorbell.wake();
        }
        let mut shards: Vec<ShardThread> =
            self.threads.into_iter().map(|handle| handle.join().expect("shard thread")).collect();
        // Quiesce: keep passing messages until no shard has anything left.
        loop {
            let mut moved = 0;
            for shard in shards.iter_mut() {
                moved += shard.pass(unix_ms(), false);
            }
            // Peer backlogs live in the sender; ring contents in the receiver: a pass of
            // every shard moves both.
            if moved == 0 {
                break;
            }
        }
        shards.into_iter().map(|shard| shard.engine).collect()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

struct ShardThread {
    engine: Engine,
    shard: u32,
    peers_out: Vec<Producer<Mail>>,
    peers_in: Vec<Consumer<Mail>>,
    ports_in: Vec<Consumer<Submission>>,
    ports_out: Vec<Producer<Completion>>,
    peer_backlog: Vec<VecDeque<Mail>>,
    port_backlog: Vec<VecDeque<Completion>>,
    /// Whom to answer when a waiting RESERVE completes: (account, key) → (port, tag).
    /// Bounded by the engine's live reservations.
    waiting: HashMap<(u64, u64), (u32, u64)>,
    doorbells: Vec<Arc<Doorbell>>,
    woken_peers: Vec<bool>,
}

impl std::fmt::Debug for ShardThread {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ShardThread").field("shard", &self.shard).finish()
    }
}

impl ShardThread {
    fn run(&mut self, stop: &AtomicBool) {
        let doorbell = Arc::clone(&self.doorbells[self.shard as usize]);
        loop {
            let now_ms = unix_ms();
            let work = self.pass(now_ms, true);
            if work > 0 {
                continue;
            }
            if stop.load(Ordering::Acquire) {
                break;
            }
            // Sleep until a producer rings, or 1 ms so that timers still fire on time.
            doorbell.sleep(Duration::from_millis(1), || self.has_input());
        }
    }

    fn has_input(&self) -> bool {
        self.peers_in.iter().any(|ring| !ring.is_empty())
            || self.ports_in.iter().any(|ring| !ring.is_empty())
    }

    /// One pass of the loop; returns how many items it moved.
    fn pass(&mut self, now_ms: u64, accept_clients: bool) -> usize {
        let mut work = 0;
        let mut mail = Vec::with_capacity(BATCH_MAX);
        for peer in 0..self.peers_in.len() {
            mail.clear();
            work += self.peers_in[peer].pop_batch(&mut mail, BATCH_MAX);
            for item in mail.drain(..) {
                match item {
                    Mail::Quota(envelope) => self.engine.handle(now_ms, &envelope),
                    Mail::Forward { port, tag, request } => self.apply(now_ms, port, tag, &request),
                }
                self.flush_engine();
            }
        }
        let backlog = self.peer_backlog.iter().any(|queue| !queue.is_empty())
            || self.port_backlog.iter().any(|queue| !queue.is_empty());
        if accept_clients && !backlog {
            let mut submissions = Vec::with_capacity(BATCH_MAX);
            for port in 0..self.ports_in.len() {
                submissions.clear();
                work += self.ports_in[port].pop_batch(&mut submissions, BATCH_MAX);
                for submission in submissions.drain(..) {
                    let owner = route(&submission.request, self.engine.placement().shard_count)
                        .unwrap_or(self.shard);
                    if owner == self.shard {
                        self.apply(now_ms, port as u32, submission.tag, &submission.request);
                    } else {
                        self.send_peer(
                            owner,
                            Mail::Forward {
                                port: port as u32,
                                tag: submission.tag,
                                request: submission.request,
                            },
                        );
                    }
                    self.flush_engine();
                }
            }
        }
        self.engine.tick(now_ms);
        self.flush_engine();
        work += self.retry_backlogs();
        for peer in 0..self.woken_peers.len() {
            if std::mem::take(&mut self.woken_peers[peer]) {
                self.doorbells[peer].wake();
            }
        }
        work
    }

    fn apply(&mut self, now_ms: u64, port: u32, tag: u64, request: &Request) {
        let reply = self.engine.execute(now_ms, request);
        if reply.result == ResultCode::Waiting {
            if let Request::Reserve(reserve) = request {
                self.waiting.insert((reserve.account, reserve.key), (port, tag));
                return;
            }
        }
        self.send_port(port, Completion { tag, reply });
    }

    /// Moves the engine's messages to the peers and its deferred answers to the ports.
    fn flush_engine(&mut self) {
        let envelopes: Vec<Envelope> = self.engine.drain_messages().collect();
        for envelope in envelopes {
            self.send_peer(envelope.to, Mail::Quota(envelope));
        }
        let events: Vec<crate::Event> = self.engine.drain_events().collect();
        for event in events {
            if let Some((port, tag)) = self.waiting.remove(&(event.account, event.key)) {
                self.send_port(port, Completion { tag, reply: event.reply });
            }
        }
    }

    fn send_peer(&mut self, to: u32, mail: Mail) {
        let queue = &mut self.peer_backlog[to as usize];
        if !queue.is_empty() {
            queue.push_back(mail); // keep per-link FIFO behind what waits already
            return;
        }
        if let Err(mail) = self.peers_out[to as usize].push(mail) {
            queue.push_back(mail);
        }
        self.woken_peers[to as usize] = true;
    }

    fn send_port(&mut self, port: u32, completion: Completion) {
        let queue = &mut self.port_backlog[port as usize];
        if !queue.is_empty() {
            queue.push_back(completion);
            return;
        }
        if let Err(completion) = self.ports_out[port as usize].push(completion) {
            queue.push_back(completion);
        }
    }

    fn retry_backlogs(&mut self) -> usize {
        let mut moved = 0;
        for peer in 0..self.peer_backlog.len() {
            while let Some(mail) = self.peer_backlog[peer].pop_front() {
                if let Err(mail) = self.peers_out[peer].push(mail) {
                    self.peer_backlog[peer].push_front(mail);
                    break;
                }
                moved += 1;
                self.woken_peers[peer] = true;
            }
        }
        for port in 0..self.port_backlog.len() {
            while let Some(completion) = self.port_backlog[port].pop_front() {
                if let Err(completion) = self.ports_out[port].push(completion) {
                    self.port_backlog[port].push_front(completion);
                    break;
                }
                moved += 1;
            }
        }
        moved
    }
}
