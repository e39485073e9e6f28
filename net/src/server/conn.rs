//! What both backends share about a connection: its buffers, its limits, and how its bytes
//! become requests to the shard and its replies become bytes.
//!
//! A backend (io_uring or epoll) only moves bytes: it appends what it received to
//! [`Conn::inbound`], calls [`Connections::process`], and sends [`Conn::outbound`]. Everything
//! about frames, admin rights, limits and routing is here, once.
//!
//! Limits per connection (documented in docs/PROTOCOL.md §1):
//! - at most `pipeline_max` requests in flight (decoded and not yet answered). Beyond that
//!   the connection's further frames wait in its inbound buffer, unread by the engine;
//! - the inbound buffer holds at most `inbound_bytes_max` unprocessed bytes: past it, the
//!   backend stops reading the socket (TCP flow control pushes back on the client);
//! - once `outbound_bytes_max` bytes of responses wait for the socket (a client that does not
//!   read), no more of its input is decoded; with the inbound bound, the server then stops
//!   reading it. Answers to requests already in flight still append (at most `pipeline_max`
//!   more responses).

use rush_engine::{Reply, ReplyBody, ReservationView, ResultCode};
use rush_runtime::ShardCore;

use crate::capture::{CaptureSink, Record, KIND_CLOSE, KIND_FRAME, KIND_OPEN};
use crate::protocol::{
    decode_request, encode_ping_response, encode_response, DecodeError, ErrorClass, Opcode,
    Topology, MAX_FRAME_SIZE, REQUEST_SIZE,
};

/// Fewer unread bytes than the smallest request frame cannot hold a request: a connection
/// with only such a remainder has nothing the engine could take.
const REQUEST_SIZE_MIN: usize = REQUEST_SIZE;

/// Consumed bytes at the front of an inbound buffer are dropped (the rest moved down) once
/// they reach this many: often enough to keep the buffer small, rarely enough that the
/// copy is amortized over many frames.
const INBOUND_COMPACT_BYTES: usize = 64 * 1024;

/// How much of the input a capture records for a frame that ends the connection (bad magic,
/// version, opcode or length): one request frame's worth, enough to see what was sent.
const CAPTURE_FATAL_BYTES_MAX: usize = REQUEST_SIZE;

/// Limits of one shard's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Open public connections one shard serves; a connection beyond it is closed at once.
    pub connection_max: u32,
    /// Open connections of the admin listener, on slots of their own: a flood of public
    /// connections cannot lock the operator out of PAUSE and restock. Beyond it an admin
    /// connection is closed at once.
    pub admin_connection_max: u32,
    /// Requests in flight per connection (parked RESERVEs included).
    pub pipeline_max: u32,
    /// Unprocessed inbound bytes per connection before the server stops reading it.
    pub inbound_bytes_max: usize,
    /// Unsent outbound bytes per connection before the server stops decoding its input.
    pub outbound_bytes_max: usize,
    /// State-changing requests (RESERVE, CONFIRM, CANCEL) one public connection may make per
    /// second, sustained; 0: no limit. Past it they are answered RATE_LIMITED at once, with
    /// the time to retry (PROTOCOL.md section 7). Admin connections, PING and queries are
    /// never limited.
    pub connection_rate_per_s: u32,
    /// How many of those requests a connection may make at once, above the sustained rate
    /// (the bucket's depth): 1..=[`CONNECTION_BURST_MAX`].
    pub connection_burst: u32,
    /// Public connections open at once from one source IP address, over every shard; 0: no
    /// limit. Past it a new connection is closed at accept, like one past `connection_max`,
    /// so a flood from one address cannot take the slots of others. The admin listener is
    /// exempt.
    pub source_connection_max: u32,
}

/// Public connections open per source address, shared by every shard's accept path (a
/// `DashMap`: sharded locks, touched only at accept and close, never per request). Its
/// entries are the addresses with a connection open, so it is bounded by the connections
/// the shards can hold (`connection_max` each).
#[derive(Debug, Default)]
pub struct SourceConnections {
    open: dashmap::DashMap<std::net::IpAddr, u32>,
}

impl SourceConnections {
    /// Counts a new connection from `source`; false (count unchanged) when `max` are open.
    fn admit(&self, source: std::net::IpAddr, max: u32) -> bool {
        let mut count = self.open.entry(source).or_insert(0);
        if *count >= max {
            return false;
        }
        *count += 1;
        true
    }

    fn release(&self, source: std::net::IpAddr) {
        if let dashmap::Entry::Occupied(mut entry) = self.open.entry(source) {
            assert!(*entry.get() > 0, "a source is counted once per open connection");
            *entry.get_mut() -= 1;
            if *entry.get() == 0 {
                entry.remove();
            }
        }
    }

    /// Connections open from `source` (for tests and diagnostics).
    pub fn open_from(&self, source: std::net::IpAddr) -> u32 {
        self.open.get(&source).map_or(0, |count| *count)
    }
}

/// Largest `connection_max` and `pipeline_max`.
pub const CONNECTION_LIMIT_MAX: u32 = 1 << 20;
/// Largest `inbound_bytes_max` and `outbound_bytes_max`.
pub const BUFFER_BYTES_MAX: usize = 1 << 30;
/// Default `admin_connection_max`: operators and their tools, not clients.
pub const ADMIN_CONNECTION_MAX_DEFAULT: u32 = 16;
/// Largest `admin_connection_max`.
pub const ADMIN_CONNECTION_LIMIT_MAX: u32 = 1024;
/// Largest `connection_rate_per_s`: one request a microsecond (the clock the limit reads).
pub const CONNECTION_RATE_MAX: u32 = 1_000_000;
/// Largest `connection_burst`.
pub const CONNECTION_BURST_MAX: u32 = 1 << 20;
/// Default `connection_burst`.
pub const CONNECTION_BURST_DEFAULT: u32 = 64;

impl ConnLimits {
    /// Checks every limit (the server refuses to start with an invalid one; the config
    /// loader reports the same error against its file). A buffer must hold a whole frame.
    pub fn validate(&self) -> Result<(), rush_engine::ConfigError> {
        if self.connection_rate_per_s > CONNECTION_RATE_MAX {
            let (value, max) = (self.connection_rate_per_s.into(), CONNECTION_RATE_MAX.into());
            return Err(rush_engine::ConfigError::between("connection_rate_per_s", value, 0, max));
        }
        if self.source_connection_max > CONNECTION_LIMIT_MAX {
            let value = self.source_connection_max.into();
            let max = CONNECTION_LIMIT_MAX.into();
            return Err(rush_engine::ConfigError::between("source_connection_max", value, 0, max));
        }
        let counts = [
            ("connection_burst", self.connection_burst, CONNECTION_BURST_MAX),
            ("connection_max", self.connection_max, CONNECTION_LIMIT_MAX),
            ("pipeline_max", self.pipeline_max, CONNECTION_LIMIT_MAX),
            ("admin_connection_max", self.admin_connection_max, ADMIN_CONNECTION_LIMIT_MAX),
        ];
        for (field, value, max) in counts {
            if !(1..=max).contains(&value) {
                let max = u64::from(max);
                return Err(rush_engine::ConfigError::between(field, value.into(), 1, max));
            }
        }
        let buffers = [
            ("inbound_bytes_max", self.inbound_bytes_max),
            ("outbound_bytes_max", self.outbound_bytes_max),
        ];
        for (field, value) in buffers {
            if !(MAX_FRAME_SIZE..=BUFFER_BYTES_MAX).contains(&value) {
                let (min, max) = (MAX_FRAME_SIZE as u64, BUFFER_BYTES_MAX as u64);
                return Err(rush_engine::ConfigError::between(field, value as u64, min, max));
            }
        }
        Ok(())
    }
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            connection_max: 4096,
            admin_connection_max: ADMIN_CONNECTION_MAX_DEFAULT,
            pipeline_max: 4096,
            inbound_bytes_max: 256 * 1024,
            outbound_bytes_max: 256 * 1024,
            connection_rate_per_s: 0,
            connection_burst: CONNECTION_BURST_DEFAULT,
            source_connection_max: 0,
        }
    }
}

/// Why a connection is being closed (for counters and logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side and everything it asked was answered.
    PeerClosed,
    /// A framing-fatal decode error (bad magic, version, opcode or length).
    Protocol(DecodeError),
    /// The socket failed (reset, broken pipe, ...).
    Io(i32),
}

/// One connection's protocol state. `H` is the backend's socket handle.
#[derive(Debug)]
pub struct Conn<H> {
    pub handle: H,
    pub generation: u32,
    /// Unique per server run (`shard << 48 | sequence`): names the connection in captures.
    pub id: u64,
    /// Admin operations allowed (accepted on the admin listener).
    pub admin: bool,
    /// Received bytes not yet decoded; `inbound_start` is the first unconsumed byte.
    pub inbound: Vec<u8>,
    inbound_start: usize,
    /// Encoded responses not yet handed to the socket.
    pub outbound: Vec<u8>,
    /// Requests decoded and not yet answered.
    pub in_flight: u32,
    /// The peer sent EOF: no more input will come.
    pub read_closed: bool,
    /// Set when the connection must close (see [`Conn::close_after_flush`]).
    pub closing: Option<CloseReason>,
    /// Close once the outbound buffer is flushed, not before (fatal errors, EOF).
    pub close_after_flush: bool,
    /// The rate limit's one timestamp (GCRA): the theoretical arrival time of the next
    /// state-changing request, in the shard's microseconds. A request arriving earlier than
    /// `rate_arrival_us - tolerance` is over the limit.
    rate_arrival_us: u64,
    /// The source address counted for this connection (public connections under a
    /// `source_connection_max`).
    source: Option<std::net::IpAddr>,
}

impl<H> Conn<H> {
    fn new(handle: H, generation: u32, id: u64, admin: bool) -> Conn<H> {
        Conn {
            handle,
            generation,
            id,
            admin,
            inbound: Vec::with_capacity(4096),
            inbound_start: 0,
            outbound: Vec::with_capacity(4096),
            in_flight: 0,
            read_closed: false,
            closing: None,
            close_after_flush: false,
            rate_arrival_us: 0,
            source: None,
        }
    }

    /// Bytes received and not yet decoded.
    pub fn pending_input(&self) -> usize {
        self.inbound.len() - self.inbound_start
    }

    /// True when the connection must close now, without flushing (a socket error).
    pub fn aborted(&self) -> bool {
        self.closing.is_some() && !self.close_after_flush
    }

    /// True once everything asked was answered and written out after EOF or a fatal error.
    pub fn finished(&self) -> bool {
        self.outbound.is_empty()
            && ((self.close_after_flush && self.closing.is_some())
                || (self.read_closed
                    && self.in_flight == 0
                    && self.pending_input() < REQUEST_SIZE_MIN))
    }

    fn consume(&mut self, count: usize) {
        self.inbound_start += count;
        debug_assert!(self.inbound_start <= self.inbound.len());
        if self.inbound_start == self.inbound.len() {
            self.inbound.clear();
            self.inbound_start = 0;
        } else if self.inbound_start >= INBOUND_COMPACT_BYTES {
            self.inbound.drain(..self.inbound_start);
            self.inbound_start = 0;
        }
    }
}

/// Counters of one shard's network loop.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetCounters {
    pub accepted: u64,
    pub refused_full: u64,
    pub closed: u64,
    pub frames: u64,
    pub bad_frames: u64,
    pub fatal_frames: u64,
    pub unauthorized: u64,
    /// io_uring: recv completions that found the buffer ring empty (re-armed at once).
    pub recv_no_buffers: u64,
    /// Requests answered RATE_LIMITED by the per-connection limit.
    pub rate_limited: u64,
    /// Connections refused at accept because their source address had
    /// `source_connection_max` open (also counted in `refused_full`).
    pub refused_source: u64,
    /// Bytes read from and written to client sockets.
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

/// The per-connection rate limit (GCRA, the token bucket as one timestamp): `Some(how long
/// until the request would conform, in µs)` when `opcode` is over the limit on `conn`, which
/// then stays unchanged; `None` when it may go (its arrival is recorded). Only RESERVE,
/// CONFIRM and CANCEL of public connections count.
fn rate_limited<H>(
    conn: &mut Conn<H>,
    limits: &ConnLimits,
    opcode: Opcode,
    arrival_us: u64,
) -> Option<u64> {
    let limited = matches!(opcode, Opcode::Reserve | Opcode::Confirm | Opcode::Cancel);
    if limits.connection_rate_per_s == 0 || conn.admin || !limited {
        return None;
    }
    debug_assert!(limits.connection_burst >= 1, "validated");
    // Both at least 1 µs and at most 2^20 s: no overflow below.
    let interval_us = 1_000_000 / u64::from(limits.connection_rate_per_s);
    let tolerance_us = interval_us * u64::from(limits.connection_burst - 1);
    let theoretical_us = conn.rate_arrival_us.max(arrival_us);
    if theoretical_us - arrival_us > tolerance_us {
        return Some(theoretical_us - tolerance_us - arrival_us);
    }
    conn.rate_arrival_us = theoretical_us + interval_us;
    None
}

/// A connection's token as the shard core carries it: slot, generation and the request's
/// opcode (needed to encode the reply), so a reply for a closed and reused slot is dropped.
#[inline]
pub fn token(slot: u32, generation: u32, opcode: Opcode) -> u64 {
    u64::from(slot) | (u64::from(generation & 0xff_ffff) << 32) | (u64::from(opcode.as_u8()) << 56)
}

#[inline]
fn untoken(token: u64) -> (u32, u32, Option<Opcode>) {
    (token as u32, ((token >> 32) & 0xff_ffff) as u32, Opcode::from_u8((token >> 56) as u8))
}

/// One shard's connections: a slab of slots with generations. Slots
/// `0..connection_max` serve public connections, the `admin_connection_max` after them the
/// admin listener's.
#[derive(Debug)]
pub struct Connections<H> {
    slots: Vec<Option<Conn<H>>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    admin_free: Vec<u32>,
    limits: ConnLimits,
    /// Slots that have input the engine has not taken yet (deduplicated by `queued`).
    ready: Vec<u32>,
    queued: Vec<bool>,
    /// Slots with output to send.
    dirty: Vec<u32>,
    dirty_flag: Vec<bool>,
    pub topology: Topology,
    pub counters: NetCounters,
    /// Where received frames are recorded (`rush serve --capture`).
    capture: Option<CaptureSink>,
    /// Connections per source address, across shards (`source_connection_max`).
    sources: Option<std::sync::Arc<SourceConnections>>,
}

impl<H> Connections<H> {
    pub fn new(
        limits: ConnLimits,
        topology: Topology,
        capture: Option<CaptureSink>,
    ) -> Connections<H> {
        let public = limits.connection_max;
        let max = (public + limits.admin_connection_max) as usize;
        Connections {
            slots: (0..max).map(|_| None).collect(),
            generations: vec![0; max],
            free: (0..public).rev().collect(),
            admin_free: (public..max as u32).rev().collect(),
            limits,
            ready: Vec::with_capacity(max),
            queued: vec![false; max],
            dirty: Vec::with_capacity(max),
            dirty_flag: vec![false; max],
            topology,
            counters: NetCounters::default(),
            capture,
            sources: None,
        }
    }

    /// Counts public connections per source address in `sources` (shared by every shard),
    /// enforcing `source_connection_max`.
    pub fn with_sources(mut self, sources: std::sync::Arc<SourceConnections>) -> Self {
        self.sources = Some(sources);
        self
    }

    fn record(&self, conn_id: u64, kind: u8, admin: bool, bytes: &[u8]) {
        if let Some(capture) = &self.capture {
            let record = Record::new(
                capture.now_ns(),
                conn_id,
                kind,
                admin,
                u32::from(self.topology.shard),
                bytes,
            );
            capture.push(record);
        }
    }

    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len() - self.admin_free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a slot for a new connection of unknown source; `None` (refuse it) when every
    /// slot is taken. (The backends always know the source: [`Connections::open_from`].)
    #[cfg(test)]
    pub fn open(&mut self, handle: H, admin: bool) -> Result<(u32, u32), H> {
        self.open_from(handle, admin, None)
    }

    /// [`Connections::open`] for a connection from `source`: also refused when that address
    /// has `source_connection_max` public connections open (on any shard).
    pub fn open_from(
        &mut self,
        handle: H,
        admin: bool,
        source: Option<std::net::IpAddr>,
    ) -> Result<(u32, u32), H> {
        let free = if admin { &mut self.admin_free } else { &mut self.free };
        if free.is_empty() {
            self.counters.refused_full += 1;
            return Err(handle);
        }
        let max = self.limits.source_connection_max;
        let counted = match (&self.sources, source) {
            (Some(sources), Some(source)) if max > 0 && !admin => {
                if !sources.admit(source, max) {
                    self.counters.refused_full += 1;
                    self.counters.refused_source += 1;
                    return Err(handle);
                }
                Some(source)
            }
            _ => None,
        };
        let free = if admin { &mut self.admin_free } else { &mut self.free };
        let slot = free.pop().expect("checked above");
        let generation = self.generations[slot as usize].wrapping_add(1) & 0xff_ffff;
        self.generations[slot as usize] = generation;
        debug_assert!(self.slots[slot as usize].is_none());
        let id = (u64::from(self.topology.shard) << 48) | self.counters.accepted;
        let mut conn = Conn::new(handle, generation, id, admin);
        conn.source = counted;
        self.slots[slot as usize] = Some(conn);
        self.counters.accepted += 1;
        self.record(id, KIND_OPEN, admin, &[]);
        Ok((slot, generation))
    }

    /// Frees a slot; returns its connection. Replies still in flight for it are dropped
    /// when they arrive (their generation no longer matches).
    pub fn release(&mut self, slot: u32) -> Option<Conn<H>> {
        let conn = self.slots.get_mut(slot as usize)?.take()?;
        if slot < self.limits.connection_max {
            self.free.push(slot);
        } else {
            self.admin_free.push(slot);
        }
        self.counters.closed += 1;
        if let (Some(sources), Some(source)) = (&self.sources, conn.source) {
            sources.release(source);
        }
        self.record(conn.id, KIND_CLOSE, conn.admin, &[]);
        Some(conn)
    }

    pub fn get(&mut self, slot: u32, generation: u32) -> Option<&mut Conn<H>> {
        match self.slots.get_mut(slot as usize) {
            Some(Some(conn)) if conn.generation == generation => Some(conn),
            _ => None,
        }
    }

    pub fn get_slot(&mut self, slot: u32) -> Option<&mut Conn<H>> {
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    /// Every open slot.
    pub fn open_slots(&self) -> Vec<u32> {
        (0..self.slots.len() as u32).filter(|slot| self.slots[*slot as usize].is_some()).collect()
    }

    /// Marks a slot as having input for the engine.
    pub fn mark_ready(&mut self, slot: u32) {
        if !std::mem::replace(&mut self.queued[slot as usize], true) {
            self.ready.push(slot);
        }
    }

    fn mark_dirty(&mut self, slot: u32) {
        if !std::mem::replace(&mut self.dirty_flag[slot as usize], true) {
            self.dirty.push(slot);
        }
    }

    /// Adds the slots with output to send since the last call to `out` (which may already
    /// hold slots the backend marked itself), and leaves `out` sorted with each slot once:
    /// a pass sends in slot order, at most once per connection.
    pub fn take_dirty(&mut self, out: &mut Vec<u32>) {
        for slot in self.dirty.drain(..) {
            self.dirty_flag[slot as usize] = false;
            out.push(slot);
        }
        out.sort_unstable();
        out.dedup();
    }

    /// After output was sent: input held back by the outbound bound is decoded again.
    pub fn resume(&mut self, slot: u32) {
        let Some(Some(conn)) = self.slots.get(slot as usize) else { return };
        if conn.pending_input() > 0 && conn.closing.is_none() {
            self.mark_ready(slot);
        }
    }

    /// True when the connection's inbound buffer is full: the backend stops reading it.
    pub fn inbound_full(&self, slot: u32) -> bool {
        match &self.slots[slot as usize] {
            Some(conn) => conn.pending_input() >= self.limits.inbound_bytes_max,
            None => false,
        }
    }

    /// Copies the connection totals into the shard's metrics (once a pass, by the driver,
    /// after its sends: a handful of words).
    pub fn publish_totals(&self, core: &mut ShardCore) {
        let metrics = core.metrics();
        let figures = &mut metrics.figures;
        let changed = figures.connections_accepted != self.counters.accepted
            || figures.connections_refused != self.counters.refused_full
            || figures.bytes_received != self.counters.bytes_received
            || figures.bytes_sent != self.counters.bytes_sent
            || figures.frames_fatal != self.counters.fatal_frames
            || figures.connections_open != self.len() as u64;
        if changed {
            figures.connections_open = self.len() as u64;
            figures.connections_accepted = self.counters.accepted;
            figures.connections_refused = self.counters.refused_full;
            figures.bytes_received = self.counters.bytes_received;
            figures.bytes_sent = self.counters.bytes_sent;
            figures.frames_fatal = self.counters.fatal_frames;
            metrics.touch();
        }
    }

    /// Decodes the input of every ready connection and hands the requests to `core`, as
    /// far as the limits allow (the rest stays ready for the next pass).
    pub fn process(&mut self, core: &mut ShardCore, now_ms: u64) -> usize {
        let mut work = 0;
        if self.ready.is_empty() {
            return 0;
        }
        // The receive time of every request submitted in this pass (one clock reading).
        core.stamp_receive();
        // The list is compacted in place (blocked slots stay, in order) and given back, so it
        // keeps its capacity: no allocation per pass. `process_one` never marks a slot ready.
        let mut ready = std::mem::take(&mut self.ready);
        let mut kept = 0;
        for index in 0..ready.len() {
            let slot = ready[index];
            let (progress, blocked) = self.process_one(core, now_ms, slot);
            work += progress;
            if blocked {
                ready[kept] = slot;
                kept += 1;
            } else {
                self.queued[slot as usize] = false;
            }
        }
        ready.truncate(kept);
        debug_assert!(self.ready.is_empty());
        self.ready = ready;
        work
    }

    /// Returns (frames handled, still has input it could not hand over).
    fn process_one(&mut self, core: &mut ShardCore, now_ms: u64, slot: u32) -> (usize, bool) {
        let limits = self.limits;
        let topology = self.topology;
        let capture = self.capture.as_ref();
        let Some(conn) = self.slots[slot as usize].as_mut() else {
            return (0, false);
        };
        if conn.closing.is_some() {
            return (0, false);
        }
        let mut handled = 0;
        let mut blocked = false;
        let mut wrote = false;
        // Answers given at once (PING, UNAUTHORIZED, BAD_REQUEST) are timed by one clock
        // reading per connection and pass, taken at the first of them.
        let received_us = core.receive_stamp_us();
        let arrival_us = core.receive_time_us();
        let mut answered_us: Option<u32> = None;
        loop {
            if conn.in_flight >= limits.pipeline_max
                || conn.outbound.len() >= limits.outbound_bytes_max
                || !core.accepts_clients()
            {
                blocked = conn.pending_input() >= REQUEST_SIZE_MIN;
                break;
            }
            let bytes = &conn.inbound[conn.inbound_start..];
            if bytes.is_empty() {
                break;
            }
            let decoded = decode_request(bytes);
            if let Some(capture) = &capture {
                let length = match &decoded {
                    Ok((_, consumed)) => Some(*consumed),
                    Err(error) => match error.class() {
                        ErrorClass::Incomplete => None,
                        ErrorClass::FrameLocal => error.frame().map(|frame| frame.length),
                        ErrorClass::Fatal => Some(bytes.len().min(CAPTURE_FATAL_BYTES_MAX)),
                    },
                };
                if let Some(length) = length {
                    let record = Record::new(
                        capture.now_ns(),
                        conn.id,
                        KIND_FRAME,
                        conn.admin,
                        u32::from(topology.shard),
                        &bytes[..length.min(bytes.len())],
                    );
                    capture.push(record);
                }
            }
            match decoded {
                Ok((frame, consumed)) => {
                    conn.consume(consumed);
                    handled += 1;
                    self.counters.frames += 1;
                    let opcode = frame.opcode();
                    if opcode == Opcode::Ping {
                        encode_ping_response(frame.request_id, topology, &mut conn.outbound);
                        wrote = true;
                        let metrics = core.metrics();
                        let now_us = *answered_us.get_or_insert_with(|| metrics.now_us());
                        metrics.record_request(opcode.index(), ResultCode::Ok, received_us, now_us);
                    } else if opcode.is_admin() && !conn.admin {
                        self.counters.unauthorized += 1;
                        let reply = Reply::code(ResultCode::Unauthorized);
                        encode_response(opcode, frame.request_id, &reply, &mut conn.outbound);
                        wrote = true;
                        let metrics = core.metrics();
                        let now_us = *answered_us.get_or_insert_with(|| metrics.now_us());
                        let result = ResultCode::Unauthorized;
                        metrics.record_request(opcode.index(), result, received_us, now_us);
                    } else if let Some(retry_after_us) =
                        rate_limited(conn, &limits, opcode, arrival_us)
                    {
                        self.counters.rate_limited += 1;
                        // The body says when to retry: `deadline_ms` (server clock, unix ms).
                        let retry_at_ms = now_ms + retry_after_us.div_ceil(1_000);
                        let view =
                            ReservationView { deadline_ms: retry_at_ms, ..Default::default() };
                        let reply =
                            Reply::with_body(ResultCode::RateLimited, ReplyBody::Reservation(view));
                        encode_response(opcode, frame.request_id, &reply, &mut conn.outbound);
                        wrote = true;
                        let metrics = core.metrics();
                        let now_us = *answered_us.get_or_insert_with(|| metrics.now_us());
                        let result = ResultCode::RateLimited;
                        metrics.record_request(opcode.index(), result, received_us, now_us);
                    } else {
                        conn.in_flight += 1;
                        let token = token(slot, conn.generation, opcode);
                        core.submit(now_ms, token, frame.request_id, &frame.request);
                    }
                }
                Err(error) => match error.class() {
                    ErrorClass::Incomplete => break,
                    ErrorClass::FrameLocal => {
                        let frame = error.frame().expect("a frame-local error names its frame");
                        conn.consume(frame.length.min(conn.pending_input()));
                        handled += 1;
                        self.counters.bad_frames += 1;
                        let reply = Reply::code(ResultCode::BadRequest);
                        encode_response(frame.opcode, frame.request_id, &reply, &mut conn.outbound);
                        wrote = true;
                        let metrics = core.metrics();
                        let now_us = *answered_us.get_or_insert_with(|| metrics.now_us());
                        let (operation, result) = (frame.opcode.index(), ResultCode::BadRequest);
                        metrics.record_request(operation, result, received_us, now_us);
                    }
                    ErrorClass::Fatal => {
                        self.counters.fatal_frames += 1;
                        conn.closing = Some(CloseReason::Protocol(error));
                        conn.close_after_flush = true;
                        conn.inbound.clear();
                        conn.inbound_start = 0;
                        wrote = true;
                        break;
                    }
                },
            }
        }
        debug_assert!(
            conn.pending_input() < MAX_FRAME_SIZE
                || blocked
                || conn.closing.is_some()
                || conn.inbound_start == 0
        );
        if wrote {
            self.mark_dirty(slot);
        }
        (handled, blocked)
    }

    /// Encodes the replies the shard produced for its connections.
    pub fn complete(&mut self, core: &mut ShardCore) -> usize {
        let mut count = 0;
        let mut touched = std::mem::take(&mut self.dirty);
        let (completions, metrics) = core.drain_local_and_metrics();
        // Every response of this pass is queued now: one clock reading, if any.
        let now_us = if completions.as_slice().is_empty() { 0 } else { metrics.now_us() };
        for completion in completions {
            count += 1;
            let (slot, generation, opcode) = untoken(completion.connection);
            let Some(opcode) = opcode else {
                debug_assert!(false, "a token always carries a valid opcode");
                continue;
            };
            let Some(conn) = self.get(slot, generation) else {
                continue; // the connection closed meanwhile: nobody to answer
            };
            debug_assert!(conn.in_flight > 0);
            conn.in_flight = conn.in_flight.saturating_sub(1);
            encode_response(opcode, completion.tag, &completion.reply, &mut conn.outbound);
            let (operation, result) = (opcode.index(), completion.reply.result);
            metrics.record_request(operation, result, completion.received_us, now_us);
            let was_blocked = conn.in_flight + 1 >= self.limits.pipeline_max;
            if !std::mem::replace(&mut self.dirty_flag[slot as usize], true) {
                touched.push(slot);
            }
            if was_blocked {
                self.mark_ready(slot);
            }
        }
        self.dirty = touched;
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_stale_generations() {
        let packed = token(7, 0x12_3456, Opcode::QuerySku);
        assert_eq!(untoken(packed), (7, 0x12_3456, Some(Opcode::QuerySku)));
        let mut connections: Connections<u32> = Connections::new(
            ConnLimits {
                connection_max: 2,
                admin_connection_max: 1,
                pipeline_max: 4,
                inbound_bytes_max: 1024,
                outbound_bytes_max: 1024,
                ..ConnLimits::default()
            },
            Topology::default(),
            None,
        );
        let (slot, generation) = connections.open(10, false).unwrap();
        let (_, _) = connections.open(11, false).unwrap();
        assert_eq!(connections.open(12, false), Err(12), "full: the handle is given back");
        assert_eq!(connections.counters.refused_full, 1);
        // The admin slot is reserved: public connections never take it, admin ones may.
        let (admin_slot, _) = connections.open(20, true).expect("the reserved admin slot");
        assert!(admin_slot >= 2);
        assert_eq!(connections.open(21, true), Err(21), "one admin slot");
        connections.release(admin_slot).unwrap();
        assert_eq!(connections.open(22, false), Err(22), "a freed admin slot stays admin");
        assert!(connections.open(23, true).is_ok());
        connections.release(slot).unwrap();
        let (again, generation_again) = connections.open(13, false).unwrap();
        assert_eq!(again, slot);
        assert_ne!(generation, generation_again);
        assert!(connections.get(slot, generation).is_none(), "a stale token finds nothing");
        assert!(connections.get(slot, generation_again).is_some());
    }

    #[test]
    fn sources_are_counted_across_shards_and_given_back_on_close() {
        let limits = ConnLimits { source_connection_max: 1, ..ConnLimits::default() };
        let sources = std::sync::Arc::new(SourceConnections::default());
        let mut shard_0: Connections<u32> =
            Connections::new(limits, Topology::default(), None).with_sources(sources.clone());
        let mut shard_1: Connections<u32> =
            Connections::new(limits, Topology::default(), None).with_sources(sources.clone());
        let a: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let b: std::net::IpAddr = "127.0.0.2".parse().unwrap();
        let (slot, _) = shard_0.open_from(1, false, Some(a)).unwrap();
        assert_eq!(shard_1.open_from(2, false, Some(a)), Err(2), "one per source, any shard");
        assert_eq!(shard_1.counters.refused_source, 1);
        assert!(shard_1.open_from(3, false, Some(b)).is_ok(), "another source");
        assert!(shard_1.open_from(4, true, Some(a)).is_ok(), "admin connections are exempt");
        assert_eq!(sources.open_from(a), 1);
        shard_0.release(slot).unwrap();
        assert_eq!(sources.open_from(a), 0);
        assert!(shard_1.open_from(5, false, Some(a)).is_ok(), "the place came back");
    }
}
