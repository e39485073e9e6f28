//! The body of one shard's loop, without the loop: the engine, its ends of the ring mesh,
//! its client ports, and the routing of requests and replies.
//!
//! Two loops drive a [`ShardCore`]: [`super::Runtime`] (client threads submit through
//! [`Port`]s; the shard parks on a futex when idle) and the network server in `rush-net`
//! (the shard's own io_uring or epoll instance feeds it requests from connections; it sleeps
//! in the kernel). Both call, per pass: [`ShardCore::poll_peers`], then their client
//! input ([`ShardCore::poll_ports`] or [`ShardCore::submit`] per decoded frame) while
//! [`ShardCore::accepts_clients`], then [`ShardCore::finish_pass`].
//!
//! **Architecture Invariant:** a request runs on the shard that owns it ([`route`]): its
//! account's home, or its SKU's coordinator for admin operations. A request that arrives
//! elsewhere is forwarded over the mesh, and its reply comes back the same way to the shard
//! of the connection that sent it.
//!
//! **Architecture Invariant:** a full ring is backpressure, never a drop: output that does
//! not fit waits in this shard's backlog, and while any backlog is non-empty the shard takes
//! no new client input (it keeps draining peers, so two shards full of each other's messages
//! both make progress). A backlog is therefore bounded by what one pass can emit.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::journal::codec::{changes_state, Input};
use crate::journal::snapshotter::SNAPSHOT_TOKEN;
use crate::journal::{
    JournalFault, JournalWrite, JournalWriter, Outbox, OutboxMessage, Redelivery, SegmentFiles,
    SegmentPosition, SnapshotCounters, SnapshotEvery, Snapshotter, Stability,
};
use crate::metrics::ShardMetrics;
use crate::published::Board;
use crate::ring::{channel, Consumer, Producer};
use crate::storage::{DurableWrites, SyncFailure, SyncWrite};
use crate::waker::Doorbell;
use rush_engine::quota::{route, Envelope, Placement, ADMIN_ACCOUNT};
use rush_engine::table::FixedMap;
use rush_engine::{Config, ConfigError, Engine, Event, Reply, Request, ResultCode};

/// How many items one ring pop takes at most: a batch amortises the index publication and
/// lets the engine overlap the cache misses of a batch.
pub const BATCH_MAX: usize = 64;

/// Largest number of client ports of a runtime.
pub const PORT_COUNT_MAX: u32 = 1024;

/// What a client thread puts on a port: its own tag (echoed back) and the request.
#[derive(Clone, Copy, Debug)]
pub struct Submission {
    pub tag: u64,
    pub request: Request,
}

/// What comes back on a port: the tag of the submission and its final reply. A RESERVE that
/// waits (in a line, or for its coordinator) completes once, with its final answer.
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    pub tag: u64,
    pub reply: Reply,
}

/// A reply for a connection served by this shard's network loop.
#[derive(Clone, Copy, Debug)]
pub struct LocalCompletion {
    /// The connection token the network loop passed to [`ShardCore::submit`].
    pub connection: u64,
    pub tag: u64,
    pub reply: Reply,
    /// The shard's [`ShardMetrics::now_us`] reading when the request was taken in (its
    /// server-side latency is measured from it).
    pub received_us: u32,
}

/// Where a reply goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    /// A client thread's port (replies go straight onto its ring from the executing shard).
    Port(u32),
    /// A connection of `shard`'s network loop (replies travel back over the mesh), with
    /// that shard's clock reading when the request was taken in.
    Connection { shard: u32, connection: u64, received_us: u32 },
}

impl Default for Client {
    fn default() -> Client {
        Client::Port(0)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ReplyTo {
    client: Client,
    tag: u64,
}

/// Shard-to-shard traffic.
#[derive(Clone, Copy, Debug)]
enum Mail {
    /// A quota message, with the sequence of the sender's journal entry whose application
    /// produced it (0 without a journal): the receiver journals it, and recovery keeps the
    /// receipt only if the sender kept that entry.
    Quota { envelope: Envelope, cause: u64 },
    /// A client request that arrived on a shard other than the one that owns it.
    Forward { reply_to: ReplyTo, request: Request },
    /// The reply to a forwarded request, back to the shard of its connection.
    Reply { connection: u64, tag: u64, reply: Reply, received_us: u32 },
}

// Everything that travels through a ring is copied by value: keep each a bounded, known
// size (a Submission is one cache line; a Completion and a Mail carry a whole Reply, whose
// largest body is a SKU view).
const _: () = assert!(std::mem::size_of::<Submission>() <= 64);
const _: () = assert!(std::mem::size_of::<Completion>() <= 128);
const _: () = assert!(std::mem::size_of::<Mail>() <= 128);

/// The shape of a runtime: shards, ports and rings.
#[derive(Clone, Copy, Debug)]
pub struct RuntimeConfig {
    /// Shards, one thread each: 1..=[`Placement::SHARD_COUNT_MAX`].
    pub shard_count: u32,
    pub engine: Config,
    /// Client ports (each one client thread's pair of rings per shard): 0..=[`PORT_COUNT_MAX`].
    pub port_count: u32,
    /// Capacity of every ring (rounded up to a power of two).
    pub ring_capacity: usize,
    /// Pin shard `i` to the `i`-th core of the list read at start.
    pub pin: bool,
    /// RESERVEs one shard may have parked (waiting in a line, or for their coordinator) and
    /// must answer later. While full, the shard answers new RESERVEs OVERLOADED without
    /// applying them (it could not route their deferred answer). 1..=2^24.
    pub parked_max: u32,
    /// How long an idle shard of [`super::Runtime`] spins re-checking its rings before it
    /// parks (0 = park at once). Spinning trades a core's idle time for wake-up latency.
    pub idle_spin_us: u64,
    /// The longest sleep of an idle shard, in ms (1..=1000). An idle shard wakes for its next
    /// timer, a doorbell or the kernel anyway; this bound only caps the damage of a lost
    /// wake-up (and of a timer the engine could not see).
    pub idle_park_max_ms: u64,
}

/// Default of [`RuntimeConfig::parked_max`].
pub const PARKED_MAX_DEFAULT: u32 = 1 << 18;
/// Largest [`RuntimeConfig::parked_max`].
pub const PARKED_MAX_LIMIT: u32 = 1 << 24;

/// Default of [`RuntimeConfig::idle_park_max_ms`].
pub const IDLE_PARK_MAX_MS_DEFAULT: u64 = 100;
/// Largest [`RuntimeConfig::idle_park_max_ms`].
pub const IDLE_PARK_MAX_MS_LIMIT: u64 = 1000;

impl RuntimeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let checks: [(&'static str, u64, u64, u64); 5] = [
            ("shard_count", self.shard_count.into(), 1, Placement::SHARD_COUNT_MAX.into()),
            ("port_count", self.port_count.into(), 0, PORT_COUNT_MAX.into()),
            ("parked_max", self.parked_max.into(), 1, PARKED_MAX_LIMIT.into()),
            ("idle_park_max_ms", self.idle_park_max_ms, 1, IDLE_PARK_MAX_MS_LIMIT),
            ("ring_capacity", self.ring_capacity as u64, 2, crate::ring::RING_CAPACITY_MAX as u64),
        ];
        for (field, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::between(field, value, min, max));
            }
        }
        self.engine.validate()
    }

    /// How the shard loops of this configuration idle.
    pub fn loop_options(&self) -> crate::LoopOptions {
        crate::LoopOptions {
            idle_spin: std::time::Duration::from_micros(self.idle_spin_us),
            idle_park_max: std::time::Duration::from_millis(self.idle_park_max_ms),
        }
    }
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

    /// Queues as many of `submissions` on `shard` as fit, with one index publication and at
    /// most one wake-up; returns how many.
    pub fn submit_batch(&mut self, shard: u32, submissions: &[Submission]) -> usize {
        let count = self.to_shards[shard as usize].push_batch(submissions);
        if count > 0 {
            self.doorbells[shard as usize].wake();
        }
        count
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

/// Everything one shard owns. Moved into its thread at start; only that thread touches it.
pub struct ShardCore {
    engine: Engine,
    shard: u32,
    peers_out: Vec<Producer<Mail>>,
    peers_in: Vec<Consumer<Mail>>,
    ports_in: Vec<Consumer<Submission>>,
    ports_out: Vec<Producer<Completion>>,
    peer_backlog: Vec<VecDeque<Mail>>,
    port_backlog: Vec<VecDeque<Completion>>,
    /// Replies for this shard's own connections, drained by the network loop each pass.
    local: Vec<LocalCompletion>,
    /// Whom to answer when a parked RESERVE completes: (account, key) → reply address.
    /// Allocated once with `parked_max` entries; full, new RESERVEs are answered OVERLOADED.
    parked: FixedMap<(u64, u64), ReplyTo>,
    doorbells: Vec<Arc<Doorbell>>,
    woken_peers: Vec<bool>,
    board: Arc<Board>,
    /// Quota messages sent to and received from each shard (link sequence numbers).
    sent: Vec<u64>,
    received: Vec<u64>,
    /// The journal, when the server is durable.
    journal: Option<ShardJournal>,
    /// Operational figures counted by this thread, published on the board.
    metrics: ShardMetrics,
    /// Microseconds since the metrics' epoch when the network loop last took input in
    /// ([`ShardCore::stamp_receive`]): the receive time of the requests it submits.
    receive_stamp_us: u64,
    // Scratch buffers reused every pass, so the loop never allocates once warm.
    mail_scratch: Vec<Mail>,
    submission_scratch: Vec<Submission>,
    envelope_scratch: Vec<Envelope>,
    event_scratch: Vec<Event>,
}

/// A shard's journal while it runs.
#[derive(Debug)]
struct ShardJournal {
    writer: JournalWriter,
    files: SegmentFiles,
    stability: Stability,
    /// Sync mode: a reply leaves only when the entry it depends on is stable.
    gating: bool,
    /// Replies waiting for their entry to be stable: (entry, address, reply, whether the
    /// request changed state), in entry order.
    held: VecDeque<(u64, ReplyTo, Reply, bool)>,
    /// The write in flight: its last entry, its position (its bytes are in the driver) and
    /// when it was submitted (for the fsync latency metric).
    in_flight: Option<(u64, SegmentPosition, std::time::Instant)>,
    /// The last fault reported in the log (each new fault is reported once).
    fault_reported: Option<JournalFault>,
    /// The entry that last sent a quota message (0: none). A receipt never joins an entry
    /// that already sent something: it starts a new one. So within an entry every receipt
    /// comes before every send, which keeps the dependencies between entries of different
    /// shards acyclic (a receipt always depends on sends that happened earlier in time), and
    /// stability always makes progress (see `journal::stability`).
    sent_in: u64,
    /// Messages sent that their receivers have not made stable (for snapshots).
    outbox: Outbox,
    snapshotter: Snapshotter,
}

/// What a recovered shard starts from (see `journal::recovery`).
#[derive(Debug)]
pub struct JournalStart {
    pub writer: JournalWriter,
    pub files: SegmentFiles,
    /// Entries up to this one are on disk (and stable: recovery kept only a consistent cut).
    pub stable: u64,
    /// Quota messages the recovered state sent to, and received from, each shard.
    pub sent: Vec<u64>,
    pub received: Vec<u64>,
    pub snapshot_every: SnapshotEvery,
}

impl std::fmt::Debug for ShardCore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ShardCore").field("shard", &self.shard).finish()
    }
}

/// The shards of a runtime before they get threads, and the client ports.
#[derive(Debug)]
pub struct Mesh {
    pub shards: Vec<ShardCore>,
    pub ports: Vec<Port>,
    pub doorbells: Vec<Arc<Doorbell>>,
    pub board: Arc<Board>,
}

impl Mesh {
    /// Allocates every engine, ring and port: nothing is allocated per request later.
    pub fn build(config: &RuntimeConfig) -> Result<Mesh, ConfigError> {
        config.validate()?;
        let shard_count = config.shard_count;
        let n = shard_count as usize;
        let ports_n = config.port_count as usize;
        let doorbells: Vec<Arc<Doorbell>> = (0..n).map(|_| Arc::new(Doorbell::new())).collect();
        let board = Arc::new(Board::new(shard_count, config.engine.sku_max));

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

        let mut shards = Vec::with_capacity(n);
        for shard in 0..n {
            let engine =
                Engine::new_shard(config.engine, Placement { shard: shard as u32, shard_count })?;
            shards.push(ShardCore {
                engine,
                shard: shard as u32,
                peers_out: mesh_producers[shard]
                    .iter_mut()
                    .map(|producer| producer.take().expect("each producer is taken once"))
                    .collect(),
                peers_in: mesh_consumers[shard]
                    .iter_mut()
                    .map(|consumer| consumer.take().expect("each consumer is taken once"))
                    .collect(),
                ports_in: std::mem::take(&mut submissions_in[shard]),
                ports_out: std::mem::take(&mut completions_out[shard]),
                peer_backlog: (0..n).map(|_| VecDeque::new()).collect(),
                port_backlog: (0..ports_n).map(|_| VecDeque::new()).collect(),
                local: Vec::with_capacity(BATCH_MAX * (n + 1)),
                parked: FixedMap::with_len_max(config.parked_max as usize),
                doorbells: doorbells.clone(),
                woken_peers: vec![false; n],
                board: Arc::clone(&board),
                sent: vec![0; n],
                received: vec![0; n],
                journal: None,
                metrics: ShardMetrics::default(),
                receive_stamp_us: 0,
                mail_scratch: Vec::with_capacity(BATCH_MAX),
                submission_scratch: Vec::with_capacity(BATCH_MAX),
                envelope_scratch: Vec::with_capacity(BATCH_MAX),
                event_scratch: Vec::with_capacity(BATCH_MAX),
            });
        }
        Ok(Mesh { shards, ports, doorbells, board })
    }
}

impl ShardCore {
    pub fn shard(&self) -> u32 {
        self.shard
    }

    pub fn shard_count(&self) -> u32 {
        self.engine.placement().shard_count
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Starts journaling (durable server): `start` comes from recovery, and `engine` is the
    /// recovered engine (before any input of this run). Called before the shard runs.
    pub fn install_journal(&mut self, engine: Engine, start: JournalStart) {
        assert!(self.journal.is_none(), "one journal per shard");
        assert_eq!(engine.placement(), self.engine.placement());
        assert_eq!(start.sent.len(), self.sent.len());
        self.engine = engine;
        self.sent = start.sent;
        self.received = start.received;
        let gating = start.writer.durability() == crate::journal::Durability::Sync;
        let shard_count = self.shard_count();
        self.board.publish_journal(self.shard, start.stable, start.stable);
        // Everything recovered is stable, its receipts included.
        for (from, &count) in self.received.iter().enumerate() {
            self.board.publish_received_stable(self.shard, from as u32, count);
        }
        let snapshotter = Snapshotter::new(
            self.shard,
            start.files.directory().to_path_buf(),
            start.snapshot_every,
        );
        self.journal = Some(ShardJournal {
            writer: start.writer,
            files: start.files,
            stability: Stability::new(self.shard, shard_count, start.stable, &self.received),
            gating,
            held: VecDeque::new(),
            in_flight: None,
            fault_reported: None,
            sent_in: 0,
            outbox: Outbox::new(shard_count),
            snapshotter,
        });
    }

    /// Journals and applies a server start: every slot's generation jumps (so no id a lost
    /// journal tail handed out is handed out again). Returns false when the id space is
    /// spent.
    pub fn begin_run(&mut self, now_ms: u64, jump: u32) -> bool {
        self.ensure_clock(now_ms);
        if let Some(journal) = self.journal.as_mut() {
            journal.writer.append(now_ms, &Input::Start { jump });
        }
        self.engine.jump_generations(jump)
    }

    /// Queues a message recovery found sent but not received (already counted in the
    /// recovered `sent`), as if just sent.
    pub fn redeliver(&mut self, redelivery: Redelivery) {
        let Redelivery { envelope, link_sequence, cause_sequence } = redelivery;
        assert_eq!(envelope.from, self.shard);
        assert!(link_sequence <= self.sent[envelope.to as usize], "counted by recovery");
        if let Some(journal) = self.journal.as_mut() {
            journal.outbox.push(OutboxMessage { envelope, link_sequence, cause_sequence });
        }
        self.send_peer(envelope.to, Mail::Quota { envelope, cause: cause_sequence });
    }

    /// What this shard's snapshots did, if the server is durable.
    pub fn snapshot_counters(&self) -> Option<SnapshotCounters> {
        self.journal.as_ref().map(|journal| journal.snapshotter.counters())
    }

    /// The journal's counters, fault and durable point, if the server is durable.
    pub fn journal_status(
        &self,
    ) -> Option<(crate::journal::JournalCounters, Option<JournalFault>, u64)> {
        self.journal.as_ref().map(|journal| {
            let writer = &journal.writer;
            (writer.counters(), writer.fault(), writer.durable_sequence())
        })
    }

    pub fn into_engine(self) -> Engine {
        self.engine
    }

    pub fn doorbell(&self) -> &Arc<Doorbell> {
        &self.doorbells[self.shard as usize]
    }

    /// The board of published levels this shard writes its own row of.
    pub fn board(&self) -> &Arc<Board> {
        &self.board
    }

    /// True when some peer or port ring holds input (a snapshot, for the sleep handshake).
    pub fn has_input(&self) -> bool {
        self.has_peer_input() || self.ports_in.iter().any(|ring| !ring.is_empty())
    }

    /// True when some peer ring holds mail.
    pub fn has_peer_input(&self) -> bool {
        self.peers_in.iter().any(|ring| !ring.is_empty())
    }

    /// False while output waits for room in a ring: the loop must not take new client input
    /// until the backlog drains (backpressure).
    pub fn accepts_clients(&self) -> bool {
        self.peer_backlog.iter().all(VecDeque::is_empty)
            && self.port_backlog.iter().all(VecDeque::is_empty)
    }

    /// Applies what the peers sent; returns how many items.
    pub fn poll_peers(&mut self, now_ms: u64) -> usize {
        let mut work = 0;
        let mut mail = std::mem::take(&mut self.mail_scratch);
        for peer in 0..self.peers_in.len() {
            mail.clear();
            work += self.peers_in[peer].pop_batch(&mut mail, BATCH_MAX);
            for item in mail.drain(..) {
                match item {
                    Mail::Quota { envelope, cause } => self.receive_quota(now_ms, envelope, cause),
                    Mail::Forward { reply_to, request } => self.apply(now_ms, reply_to, &request),
                    Mail::Reply { connection, tag, reply, received_us } => {
                        debug_assert_ne!(
                            peer as u32, self.shard,
                            "a shard never forwards to itself"
                        );
                        self.local.push(LocalCompletion { connection, tag, reply, received_us });
                    }
                }
                self.flush_engine();
            }
        }
        self.mail_scratch = mail;
        work
    }

    /// Takes client submissions from every port (a batch each), unless output is backlogged;
    /// returns how many.
    pub fn poll_ports(&mut self, now_ms: u64) -> usize {
        if !self.accepts_clients() {
            return 0;
        }
        let mut work = 0;
        let mut submissions = std::mem::take(&mut self.submission_scratch);
        for port in 0..self.ports_in.len() {
            submissions.clear();
            work += self.ports_in[port].pop_batch(&mut submissions, BATCH_MAX);
            // Start every owned request's memory loads first: the batch then pays about one
            // cache-miss latency instead of one per request (`Engine::execute_batch`'s trick).
            let shard_count = self.shard_count();
            for submission in &submissions {
                if route(&submission.request, shard_count).unwrap_or(self.shard) == self.shard {
                    self.engine.prefetch(&submission.request);
                }
            }
            for submission in submissions.drain(..) {
                let reply_to = ReplyTo { client: Client::Port(port as u32), tag: submission.tag };
                self.dispatch(now_ms, reply_to, &submission.request);
            }
        }
        self.submission_scratch = submissions;
        work
    }

    /// A request from one of this shard's own connections. The reply arrives later in
    /// [`ShardCore::drain_local`] with the same `connection` and `tag` (after a hop to the
    /// owning shard and back, or at once).
    pub fn submit(&mut self, now_ms: u64, connection: u64, tag: u64, request: &Request) {
        let received_us = self.receive_stamp_us as u32;
        let client = Client::Connection { shard: self.shard, connection, received_us };
        self.dispatch(now_ms, ReplyTo { client, tag }, request);
    }

    /// Replies for this shard's connections gathered so far.
    pub fn drain_local(&mut self) -> std::vec::Drain<'_, LocalCompletion> {
        self.local.drain(..)
    }

    /// [`ShardCore::drain_local`], with this shard's metrics to count the replies in.
    pub fn drain_local_and_metrics(
        &mut self,
    ) -> (std::vec::Drain<'_, LocalCompletion>, &mut ShardMetrics) {
        (self.local.drain(..), &mut self.metrics)
    }

    /// This shard's operational figures (counted by its own thread only).
    pub fn metrics(&mut self) -> &mut ShardMetrics {
        &mut self.metrics
    }

    /// The network loop is taking input in: the requests it submits until the next stamp
    /// were received now (one clock reading per pass, not per request).
    pub fn stamp_receive(&mut self) {
        self.receive_stamp_us = self.metrics.now_us64();
    }

    /// The receive time of the requests being submitted (see [`ShardCore::stamp_receive`]),
    /// as [`ShardMetrics::now_us`] reads it.
    pub fn receive_stamp_us(&self) -> u32 {
        self.receive_stamp_us as u32
    }

    /// The same receive time, not wrapping (for the rate limits).
    pub fn receive_time_us(&self) -> u64 {
        self.receive_stamp_us
    }

    /// Publishes this shard's figures on the board when due: at most once a millisecond
    /// while it works, and (`force`) before it sleeps, so an idle shard's row is current.
    /// The gauges (rings, backlogs, parked, journal totals) are read here, not counted.
    pub fn publish_metrics(&mut self, now_ms: u64, force: bool) {
        if !self.metrics.due(now_ms, force) {
            return;
        }
        let figures = &mut self.metrics.figures;
        figures.ring_occupancy = self.peers_in.iter().map(|ring| ring.len() as u64).sum();
        figures.ring_capacity = self.peers_in.iter().map(|ring| ring.capacity() as u64).sum();
        figures.backlog = self.peer_backlog.iter().map(|queue| queue.len() as u64).sum::<u64>()
            + self.port_backlog.iter().map(|queue| queue.len() as u64).sum::<u64>();
        figures.parked = self.parked.len() as u64;
        figures.reservations_live = u64::from(self.engine.live_reservations());
        if let Some(journal) = &self.journal {
            let counters = journal.writer.counters();
            figures.journal_records = counters.inputs;
            figures.journal_bytes = counters.bytes_written;
        }
        self.board.publish_metrics(self.shard, figures);
        self.metrics.published(now_ms);
    }

    /// End of a pass: timers, the engine's output onto the rings, backlogs retried, and
    /// sleeping peers woken (once each). Returns how many backlogged items moved.
    pub fn finish_pass(&mut self, now_ms: u64) -> usize {
        match &self.journal {
            // With a journal the clock moves only by journaled ticks, so only when a timer
            // is due (an idle shard journals nothing).
            Some(_) => {
                if self.engine.next_timer_ms().is_some_and(|next_ms| next_ms <= now_ms) {
                    self.ensure_clock(now_ms);
                }
            }
            None => self.engine.tick(now_ms),
        }
        self.flush_engine();
        if let Some(journal) = self.journal.as_mut() {
            journal.writer.seal();
        }
        let moved = self.retry_backlogs();
        for peer in 0..self.woken_peers.len() {
            if std::mem::take(&mut self.woken_peers[peer]) {
                self.doorbells[peer].wake();
            }
        }
        self.board.publish(self.shard, &mut self.engine);
        moved
    }

    fn dispatch(&mut self, now_ms: u64, reply_to: ReplyTo, request: &Request) {
        let owner = route(request, self.shard_count()).unwrap_or(self.shard);
        if owner == self.shard {
            self.apply(now_ms, reply_to, request);
        } else {
            self.send_peer(owner, Mail::Forward { reply_to, request: *request });
        }
        self.flush_engine();
    }

    fn apply(&mut self, now_ms: u64, reply_to: ReplyTo, request: &Request) {
        let writes = changes_state(request);
        let reply = match request {
            Request::QuerySku { sku } if self.shard_count() > 1 => {
                self.board.query_sku(&self.engine, *sku)
            }
            // A RESERVE (or, with shards, an ADJUST_STOCK) may park, and a parked request
            // needs a place in `parked`.
            Request::Reserve(_) | Request::AdjustStock { .. } if self.parked.is_full() => {
                Reply::code(ResultCode::Overloaded)
            }
            // The journal cannot take it: refused before it changes anything.
            _ if writes && self.journal_faulted() => Reply::code(ResultCode::Unavailable),
            _ => {
                self.ensure_clock(now_ms);
                if writes {
                    if let Some(journal) = self.journal.as_mut() {
                        journal.writer.append(now_ms, &Input::Request(*request));
                    }
                }
                self.engine.execute(now_ms, request)
            }
        };
        if reply.result == ResultCode::Waiting {
            let key = match *request {
                Request::Reserve(reserve) => Some((reserve.account, reserve.key)),
                Request::AdjustStock { key, .. } => Some((ADMIN_ACCOUNT, key)),
                _ => None,
            };
            if let Some(key) = key {
                debug_assert!(self.parked.get(&key).is_none(), "one WAITING per (account, key)");
                let inserted = self.parked.insert(key, reply_to);
                assert!(inserted.is_ok(), "room was checked before the request ran");
                return;
            }
        }
        self.deliver(reply_to, reply, writes);
    }

    /// The engine's clock moves to `now_ms` (timers due by then fire), journaled as a tick,
    /// before any input applied at `now_ms`: replay then reaches the same clock readings,
    /// and the engine never advances its clock on an input the journal does not hold.
    fn ensure_clock(&mut self, now_ms: u64) {
        if now_ms <= self.engine.now_ms() {
            return;
        }
        if let Some(journal) = self.journal.as_mut() {
            journal.writer.append(now_ms, &Input::Tick);
        }
        self.engine.tick(now_ms);
    }

    fn receive_quota(&mut self, now_ms: u64, envelope: Envelope, cause: u64) {
        let from = envelope.from;
        self.received[from as usize] += 1;
        self.ensure_clock(now_ms);
        if let Some(journal) = self.journal.as_mut() {
            if journal.sent_in == journal.writer.open_sequence() {
                journal.writer.seal();
            }
            let link_sequence = self.received[from as usize];
            let input = Input::Message { envelope, link_sequence, cause_sequence: cause };
            journal.writer.append(now_ms, &input);
            let entry = journal.writer.applied_sequence();
            journal.stability.note_receipt(from, entry, cause, link_sequence);
        }
        self.engine.handle(now_ms, &envelope);
    }

    fn journal_faulted(&self) -> bool {
        self.journal.as_ref().is_some_and(|journal| journal.writer.fault().is_some())
    }

    /// A reply for `reply_to`; in sync mode held until the entry it depends on (the last
    /// one applied) is stable. `writes`: the request changed state (during a journal fault
    /// its outcome is unknown; a read is answered at once).
    fn deliver(&mut self, reply_to: ReplyTo, reply: Reply, writes: bool) {
        if let Some(journal) = self.journal.as_mut() {
            if journal.gating {
                let entry = journal.writer.applied_sequence();
                if journal.writer.fault().is_some() {
                    let reply = if writes { Reply::code(ResultCode::Unavailable) } else { reply };
                    self.send_reply(reply_to, reply);
                } else if entry > journal.stability.stable() || !journal.held.is_empty() {
                    journal.held.push_back((entry, reply_to, reply, writes));
                } else {
                    self.send_reply(reply_to, reply);
                }
                return;
            }
        }
        self.send_reply(reply_to, reply);
    }

    fn send_reply(&mut self, reply_to: ReplyTo, reply: Reply) {
        match reply_to.client {
            Client::Port(port) => self.send_port(port, Completion { tag: reply_to.tag, reply }),
            Client::Connection { shard, connection, received_us } if shard == self.shard => {
                let tag = reply_to.tag;
                self.local.push(LocalCompletion { connection, tag, reply, received_us });
            }
            Client::Connection { shard, connection, received_us } => {
                let tag = reply_to.tag;
                self.send_peer(shard, Mail::Reply { connection, tag, reply, received_us });
            }
        }
    }

    /// Moves the engine's messages to the peers and its deferred answers to their clients.
    fn flush_engine(&mut self) {
        let mut envelopes = std::mem::take(&mut self.envelope_scratch);
        envelopes.extend(self.engine.drain_messages());
        let cause = self.journal.as_ref().map_or(0, |journal| journal.writer.applied_sequence());
        if let Some(journal) = self.journal.as_mut() {
            if !envelopes.is_empty() {
                journal.sent_in = cause;
            }
        }
        for envelope in envelopes.drain(..) {
            self.sent[envelope.to as usize] += 1;
            if let Some(journal) = self.journal.as_mut() {
                let link_sequence = self.sent[envelope.to as usize];
                let message = OutboxMessage { envelope, link_sequence, cause_sequence: cause };
                journal.outbox.push(message);
            }
            self.send_peer(envelope.to, Mail::Quota { envelope, cause });
        }
        self.envelope_scratch = envelopes;
        let mut events = std::mem::take(&mut self.event_scratch);
        events.extend(self.engine.drain_events());
        for event in events.drain(..) {
            if let Some(reply_to) = self.parked.remove(&(event.account, event.key)) {
                self.deliver(reply_to, event.reply, true);
            }
        }
        self.event_scratch = events;
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

    /// The journal's part of a pass: completed writes make entries durable, stability is
    /// recomputed and published, replies whose entry is now stable leave, and the next
    /// write (everything sealed since the last one: group commit) is submitted through
    /// `storage`. Returns the work done. Nothing without a journal.
    pub fn journal_pass(&mut self, storage: &mut dyn DurableWrites, now_ms: u64) -> usize {
        let Some(mut journal) = self.journal.take() else { return 0 };
        let mut work = 0;
        while let Some(synced) = storage.take_synced() {
            if synced.token & SNAPSHOT_TOKEN != 0 {
                if let Some(next) = journal.snapshotter.on_synced(synced) {
                    let submitted = storage.write_and_sync(next);
                    assert!(submitted.is_ok(), "a driver refused the one snapshot write");
                }
                work += 1;
                continue;
            }
            let (last_sequence, position, submitted) =
                journal.in_flight.take().expect("a write in flight");
            self.metrics.record_fsync(submitted.elapsed().as_nanos() as u64);
            assert_eq!(synced.token, last_sequence, "the completion of the write in flight");
            let write = JournalWrite { position, bytes: synced.bytes, last_sequence };
            let result = synced.result.map_err(|failure| match failure {
                SyncFailure::Write(error) => JournalFault::Write(error.kind()),
                SyncFailure::Sync(error) => JournalFault::Sync(error.kind()),
            });
            journal.writer.on_written(write, result);
            work += 1;
        }
        let fault = journal.writer.fault();
        if fault.is_some() && fault != journal.fault_reported {
            eprintln!(
                "rush: shard {}: journal {fault:?} at entry {}: state-changing requests are \
                 answered UNAVAILABLE until it recovers (a failed write is retried every \
                 second; a failed fdatasync needs a restart)",
                self.shard,
                journal.writer.durable_sequence() + 1,
            );
        }
        if fault.is_none() && journal.fault_reported.is_some() {
            eprintln!("rush: shard {}: journal writes succeed again", self.shard);
        }
        journal.fault_reported = fault;
        // Stability, published for the peers, which may hold replies waiting on it.
        let before = journal.stability.stable();
        let durable = journal.writer.durable_sequence();
        let board = Arc::clone(&self.board);
        let stable = journal.stability.update(durable, |peer| board.stable_of(peer));
        board.publish_journal(self.shard, durable, stable);
        if stable > before {
            for from in 0..self.doorbells.len() as u32 {
                let count = journal.stability.received_stable(from);
                board.publish_received_stable(self.shard, from, count);
            }
            for peer in 0..self.doorbells.len() as u32 {
                if peer != self.shard {
                    self.doorbells[peer as usize].wake();
                }
            }
        }
        // Snapshots: forget what receivers made stable; install the one written once its
        // entry is stable; capture a new one when due (its write goes out below, with the
        // entry it sealed).
        for to in 0..self.doorbells.len() as u32 {
            journal.outbox.prune(to, board.received_stable_of(to, self.shard));
        }
        journal.snapshotter.install_if_stable(stable);
        if fault.is_none()
            && journal.snapshotter.due(&journal.writer)
            && journal.outbox.complete(|to| board.received_stable_of(to, self.shard))
        {
            let write = journal.snapshotter.capture(
                &mut journal.writer,
                &self.engine,
                &self.sent,
                &self.received,
                &journal.outbox,
            );
            if let Some(write) = write {
                let submitted = storage.write_and_sync(write);
                assert!(submitted.is_ok(), "a driver refused the one snapshot write");
            }
            work += 1;
        }
        // Replies whose entry is stable leave; during a fault, every held one leaves (a
        // state change with its outcome unknown: UNAVAILABLE).
        let mut released = Vec::new();
        while let Some(&(entry, reply_to, reply, writes)) = journal.held.front() {
            if entry <= stable {
                released.push((reply_to, reply));
            } else if fault.is_some() {
                let reply = if writes { Reply::code(ResultCode::Unavailable) } else { reply };
                released.push((reply_to, reply));
            } else {
                break;
            }
            journal.held.pop_front();
        }
        // The next write.
        if journal.in_flight.is_none() {
            if let Some(write) = journal.writer.take_write(now_ms) {
                let (last_sequence, position) = (write.last_sequence, write.position);
                match journal.files.file_for(position) {
                    Ok(file) => {
                        let sync_write = SyncWrite {
                            file,
                            offset: position.offset,
                            bytes: write.bytes,
                            token: last_sequence,
                        };
                        // One journal write is in flight at a time, within every driver's
                        // bound of SYNC_WRITES_IN_FLIGHT_MAX.
                        let submitted = storage.write_and_sync(sync_write);
                        assert!(submitted.is_ok(), "a driver refused the one journal write");
                        let submitted = std::time::Instant::now();
                        journal.in_flight = Some((last_sequence, position, submitted));
                    }
                    Err(error) => {
                        // Could not create the next segment (disk full, permissions): a
                        // failed write, retried like one.
                        eprintln!(
                            "rush: shard {}: cannot open a journal segment: {error}",
                            self.shard
                        );
                        let kind = match &error {
                            crate::journal::DataDirError::Io { error, .. } => error.kind(),
                            _ => std::io::ErrorKind::Other,
                        };
                        journal.writer.on_written(write, Err(JournalFault::Write(kind)));
                    }
                }
                work += 1;
            }
        }
        self.journal = Some(journal);
        for (reply_to, reply) in released {
            self.send_reply(reply_to, reply);
            work += 1;
        }
        work
    }

    /// Makes the journal write what is pending at once from now on (a stopping shard).
    pub fn request_journal_flush(&mut self) {
        if let Some(journal) = self.journal.as_mut() {
            journal.writer.request_flush();
        }
    }

    /// True when the journal has nothing left to do: everything applied is durable and
    /// every held reply left (a stopping shard waits for it). Always true without one.
    pub fn journal_settled(&self) -> bool {
        self.journal.as_ref().is_none_or(|journal| {
            journal.writer.idle()
                && journal.held.is_empty()
                && journal.in_flight.is_none()
                && !journal.snapshotter.writing()
        })
    }

    /// When this shard must run next even if nothing arrives: its next engine timer, or its
    /// journal's next interval write or retry.
    pub fn next_wake_ms(&self) -> Option<u64> {
        let timer = self.engine.next_timer_ms();
        let journal = self.journal.as_ref().and_then(|journal| journal.writer.next_write_ms());
        match (timer, journal) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether anything is still queued for a peer (rings are drained by the receivers).
    pub fn has_backlog(&self) -> bool {
        !self.accepts_clients()
    }
}
