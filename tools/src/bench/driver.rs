//! The load driver: one event loop per thread, each driving its share of the connections
//! with non-blocking sockets (`mio`), a sub-millisecond timer for the open-loop schedule,
//! and its own histograms (merged after the run: no lock and no shared write on the hot
//! path; the progress counters are single-writer relaxed atomics).
//!
//! **Open loop** (`--rate`): connection `i` of `c` sends its `k`-th request at the intended
//! time `t0 + (i + k·c) / rate`, whatever happened to earlier requests; latency runs from
//! that intended time, as wrk2 does, so a stall of the server (or of the client's pipeline
//! window: a request whose window is full waits, and its wait counts) shows up in the
//! percentiles instead of silently lowering the load (coordinated omission).
//!
//! **Closed loop** (`--closed`): every connection keeps its window full; a request's
//! latency runs from when it was handed to the socket, so it is *not* corrected for
//! coordinated omission (the summary says so).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use rush_engine::quota::route;
use rush_engine::{Reply, Request};
use rush_net::protocol::{decode_response, encode_request};

use super::resp;
use super::workload::{Book, ExactlyOnce, Generator, Layout, Mix, Op, Params, SkuTally};
use super::zipf::Zipf;
use crate::measure::tally::{Counts, Measured, Tally};
use crate::measure::timer::{poll_events, Wakeup};
use crate::measure::workers::Reporter;

/// Slot index bits of a request id (the rest counts requests): the window is at most
/// `MAX_PIPELINE` < 2^20.
const SLOT_BITS: u32 = 20;
pub const MAX_PIPELINE: usize = 65_536;
/// Most sockets one connection can have (one per shard; the engine allows 64 shards).
const SOCKETS_PER_CONNECTION: usize = 64;
/// The longest a worker blocks in `poll`, so it notices the end of the run on time.
const POLL_CAP: Duration = Duration::from_millis(50);
const READ_BUFFER: usize = 256 * 1024;
/// The operations reported separately, by `operation_index`.
pub const OPERATIONS: [&str; 4] = ["PING", "RESERVE", "CONFIRM", "CANCEL"];

fn operation_index(request: &Request) -> usize {
    match request {
        Request::Reserve(_) => 1,
        Request::Confirm { .. } => 2,
        Request::Cancel { .. } => 3,
        _ => 0,
    }
}

/// How load is applied.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Load {
    Open { rate: f64 },
    Closed,
}

/// When the measured phase ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    After(Duration),
    Requests(u64),
}

/// The protocol spoken on the load connections.
#[derive(Clone, Debug)]
pub enum Wire {
    Rush,
    Resp(resp::Script),
}

impl Wire {
    fn encode(&self, request_id: u64, request: &Request, out: &mut Vec<u8>) {
        match self {
            Wire::Rush => encode_request(request_id, request, out),
            Wire::Resp(script) => resp::encode_request(script, request, out),
        }
    }

    /// The response at the start of `bytes`: its request id (`None` for RESP, which answers
    /// in order), the reply, and the bytes used; `Ok(None)` while incomplete.
    fn decode(&self, bytes: &[u8]) -> Result<Option<(Option<u64>, Reply, usize)>, String> {
        match self {
            Wire::Rush => match decode_response(bytes) {
                Ok((frame, used)) => Ok(Some((Some(frame.request_id), frame.reply, used))),
                Err(error) if error.is_incomplete() => Ok(None),
                Err(error) => Err(format!("bad response from the server: {error}")),
            },
            Wire::Resp(_) => match resp::parse(bytes)? {
                Some((value, used)) => Ok(Some((None, resp::to_reply(&value)?, used))),
                None => Ok(None),
            },
        }
    }
}

/// Everything the workers share, read-only.
#[derive(Debug)]
pub struct Shared<'a> {
    pub layout: &'a Layout,
    pub mix: &'a Mix,
    pub params: &'a Params,
    pub zipf: Option<&'a Zipf>,
    pub wire: &'a Wire,
    pub seed: u64,
    pub load: Load,
    pub stop: Stop,
    pub pipeline: usize,
    /// Connections over all threads.
    pub connections: usize,
    /// Warm-up starts at `t0`; the measured phase at `main_start`.
    pub t0: Instant,
    pub main_start: Instant,
    pub drain_timeout: Duration,
}

impl Shared<'_> {
    fn end(&self) -> Option<Instant> {
        match self.stop {
            Stop::After(duration) => Some(self.main_start + duration),
            Stop::Requests(_) => None,
        }
    }

    /// Connection `index`'s share of `--requests`.
    fn budget(&self, index: usize) -> Option<u64> {
        match self.stop {
            Stop::Requests(total) => {
                let connections = self.connections as u64;
                Some(total / connections + u64::from((index as u64) < total % connections))
            }
            Stop::After(_) => None,
        }
    }
}

/// Opens `count` connections, each with one socket per address in `addresses` (one address,
/// or one per shard with `--shard-aware`).
pub fn connect_all(addresses: &[SocketAddr], count: usize) -> anyhow::Result<Vec<Vec<TcpStream>>> {
    use anyhow::Context;
    (0..count)
        .map(|_| {
            addresses
                .iter()
                .map(|&address| {
                    let stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
                        .with_context(|| format!("cannot connect to {address}"))?;
                    stream.set_nodelay(true)?;
                    stream.set_nonblocking(true)?;
                    Ok(stream)
                })
                .collect()
        })
        .collect()
}

/// What a bench worker counts besides the shared [`Tally`] (whose `sent` and `completed`
/// are the measured phase's; `unanswered` counts either phase).
#[derive(Debug, Default)]
pub struct BenchCounts {
    pub sent_warmup: u64,
    pub completed_warmup: u64,
    /// Summed over the worker's connections.
    pub skus: Vec<SkuTally>,
    pub exactly_once: ExactlyOnce,
    pub abandoned_follow_ups: u64,
}

impl Counts for BenchCounts {
    fn add(&mut self, part: &BenchCounts) {
        self.sent_warmup += part.sent_warmup;
        self.completed_warmup += part.completed_warmup;
        if self.skus.is_empty() {
            self.skus = part.skus.clone();
        } else {
            assert_eq!(self.skus.len(), part.skus.len(), "every worker tallies every SKU");
            for (total, tally) in self.skus.iter_mut().zip(&part.skus) {
                total.add(tally);
            }
        }
        self.exactly_once.add(&part.exactly_once);
        self.abandoned_follow_ups += part.abandoned_follow_ups;
    }
}

/// What one worker measured.
pub type WorkerResult = Measured<BenchCounts>;

fn new_result(sku_count: usize) -> WorkerResult {
    Measured {
        tally: Tally::new(OPERATIONS.len()),
        counts: BenchCounts {
            skus: vec![SkuTally::default(); sku_count],
            ..BenchCounts::default()
        },
    }
}

/// Counts the answer to `slot`: a warm-up answer only as a number (warm-up latencies are
/// discarded); a measured one in the tally.
fn record(result: &mut WorkerResult, shared: &Shared, slot: &Slot, reply: &Reply, now: Instant) {
    if slot.warm {
        result.counts.completed_warmup += 1;
        return;
    }
    result.tally.record(
        shared.main_start,
        slot.intended,
        now,
        Some(operation_index(&slot.op.request)),
        reply.result as u16,
        reply.original as u16,
    );
}

fn absorb_book(result: &mut WorkerResult, book: &Book) {
    for (total, tally) in result.counts.skus.iter_mut().zip(&book.skus) {
        total.add(tally);
    }
    result.counts.exactly_once.add(&book.exactly_once());
    result.counts.abandoned_follow_ups += book.abandoned_follow_ups;
}

/// A request in flight.
#[derive(Debug)]
struct Slot {
    id: u64,
    intended: Instant,
    op: Op,
    warm: bool,
}

#[derive(Debug)]
struct Socket {
    stream: mio::net::TcpStream,
    out: Vec<u8>,
    written: usize,
    inbound: Box<[u8]>,
    start: usize,
    end: usize,
    /// Slots in send order (RESP answers in order and carries no request id).
    fifo: std::collections::VecDeque<u32>,
}

/// One load connection: a socket, or one socket per shard (`--shard-aware`), sharing one
/// window of `pipeline` requests in flight and one schedule.
#[derive(Debug)]
struct Connection<'a> {
    index: usize,
    sockets: Vec<Socket>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    in_flight: usize,
    next_id: u64,
    /// Open loop: the intended time of request `k` is `first + k * interval_ns`.
    first: Instant,
    interval_ns: f64,
    issued: u64,
    measured_issued: u64,
    budget: Option<u64>,
    done: bool,
    dead: bool,
    round_robin: usize,
    generator: Generator<'a>,
}

impl<'a> Connection<'a> {
    fn new(shared: &Shared<'a>, index: usize, streams: Vec<TcpStream>) -> Connection<'a> {
        let sockets = streams
            .into_iter()
            .map(|stream| Socket {
                stream: mio::net::TcpStream::from_std(stream),
                out: Vec::with_capacity(64 * 1024),
                written: 0,
                inbound: vec![0; READ_BUFFER].into_boxed_slice(),
                start: 0,
                end: 0,
                fifo: std::collections::VecDeque::new(),
            })
            .collect();
        let (first, interval_ns) = match shared.load {
            // Stagger the connections across one period so that the total send rate is even.
            Load::Open { rate } => (
                shared.t0 + Duration::from_nanos((index as f64 * 1e9 / rate) as u64),
                shared.connections as f64 * 1e9 / rate,
            ),
            Load::Closed => (shared.t0, 0.0),
        };
        Connection {
            index,
            sockets,
            slots: (0..shared.pipeline).map(|_| None).collect(),
            free: (0..shared.pipeline as u32).rev().collect(),
            in_flight: 0,
            next_id: 1,
            first,
            interval_ns,
            issued: 0,
            measured_issued: 0,
            budget: shared.budget(index),
            done: false,
            dead: false,
            round_robin: 0,
            generator: Generator::new(
                index,
                shared.seed,
                shared.layout,
                shared.mix,
                shared.params,
                shared.zipf,
            ),
        }
    }

    fn active(&self) -> bool {
        !self.done && !self.dead
    }

    fn next_intended(&self) -> Instant {
        self.first + Duration::from_nanos((self.issued as f64 * self.interval_ns) as u64)
    }

    /// When this connection next wants to send, if it has room to (open loop only).
    fn wake_at(&self, shared: &Shared) -> Option<Instant> {
        let room = self.in_flight < shared.pipeline;
        (matches!(shared.load, Load::Open { .. }) && self.active() && room)
            .then(|| self.next_intended())
    }

    /// Sends every request that is due and fits in the window.
    fn issue(&mut self, now: Instant, shared: &Shared, result: &mut WorkerResult) {
        while self.active() && self.in_flight < shared.pipeline {
            let intended = match shared.load {
                Load::Open { .. } => {
                    let intended = self.next_intended();
                    if intended > now {
                        break;
                    }
                    intended
                }
                Load::Closed => now,
            };
            let warm = intended < shared.main_start;
            if !warm {
                let over_time = shared.end().is_some_and(|end| intended >= end);
                let over_count = self.budget.is_some_and(|budget| self.measured_issued >= budget);
                if over_time || over_count {
                    self.done = true;
                    break;
                }
            }
            // The window has room, so a slot is free.
            let Some(slot) = self.free.pop() else { break };
            let op = self.generator.next();
            let socket = self.socket_for(&op.request);
            let id = (self.next_id << SLOT_BITS) | u64::from(slot);
            self.next_id += 1;
            let target = &mut self.sockets[socket];
            shared.wire.encode(id, &op.request, &mut target.out);
            if matches!(shared.wire, Wire::Resp(_)) {
                target.fifo.push_back(slot);
            }
            self.slots[slot as usize] = Some(Slot { id, intended, op, warm });
            self.in_flight += 1;
            self.issued += 1;
            if warm {
                result.counts.sent_warmup += 1;
            } else {
                self.measured_issued += 1;
                result.tally.sent += 1;
            }
        }
    }

    fn socket_for(&mut self, request: &Request) -> usize {
        let count = self.sockets.len();
        if count == 1 {
            return 0;
        }
        match route(request, count as u32) {
            Some(shard) => shard as usize,
            None => {
                self.round_robin = (self.round_robin + 1) % count;
                self.round_robin
            }
        }
    }

    /// Writes what the sockets have buffered, as far as the kernel takes it.
    fn flush(&mut self) -> io::Result<()> {
        for socket in &mut self.sockets {
            while socket.written < socket.out.len() {
                match socket.stream.write(&socket.out[socket.written..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(count) => socket.written += count,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                }
            }
            if socket.written == socket.out.len() {
                socket.out.clear();
                socket.written = 0;
            }
        }
        Ok(())
    }

    /// Reads socket `index` dry and completes every response it carried.
    fn read(
        &mut self,
        index: usize,
        shared: &Shared,
        result: &mut WorkerResult,
        scratch: &mut Vec<(u32, Reply)>,
    ) -> Result<(), String> {
        loop {
            let socket = &mut self.sockets[index];
            if socket.start == socket.end {
                socket.start = 0;
                socket.end = 0;
            } else if socket.end == socket.inbound.len() {
                socket.inbound.copy_within(socket.start..socket.end, 0);
                socket.end -= socket.start;
                socket.start = 0;
            }
            let count = match socket.stream.read(&mut socket.inbound[socket.end..]) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(format!("read failed: {error}")),
            };
            let now = Instant::now();
            socket.end += count;
            while let Some((id, reply, used)) =
                shared.wire.decode(&socket.inbound[socket.start..socket.end])?
            {
                socket.start += used;
                let slot = match id {
                    Some(id) => {
                        let slot = (id & ((1 << SLOT_BITS) - 1)) as u32;
                        let matches = self
                            .slots
                            .get(slot as usize)
                            .and_then(Option::as_ref)
                            .is_some_and(|live| live.id == id);
                        if !matches {
                            return Err(format!("response for request id {id}, not in flight"));
                        }
                        slot
                    }
                    None => socket.fifo.pop_front().ok_or("a reply to no request")?,
                };
                scratch.push((slot, reply));
            }
            for (slot, reply) in scratch.drain(..) {
                self.complete(slot, &reply, now, shared, result);
            }
        }
    }

    fn complete(
        &mut self,
        index: u32,
        reply: &Reply,
        now: Instant,
        shared: &Shared,
        result: &mut WorkerResult,
    ) {
        let Some(slot) = self.slots[index as usize].take() else { return };
        self.free.push(index);
        self.in_flight -= 1;
        record(result, shared, &slot, reply, now);
        self.generator.on_reply(&slot.op, reply);
    }

    /// Ends the connection: what is still in flight is unanswered.
    fn finish(&mut self, result: &mut WorkerResult) {
        for slot in self.slots.iter_mut().filter_map(Option::take) {
            result.tally.unanswered += 1;
            self.generator.on_unanswered(&slot.op);
        }
        self.in_flight = 0;
        self.generator.finish();
        absorb_book(result, &self.generator.book);
    }
}

/// Runs one worker thread's connections to the end of the run (or until the run is
/// abandoned because another worker failed).
pub fn run_worker(
    shared: &Shared,
    connections: Vec<(usize, Vec<TcpStream>)>,
    reporter: Reporter,
) -> WorkerResult {
    let mut result = new_result(shared.layout.skus.len());
    let mut connections: Vec<Connection> = connections
        .into_iter()
        .map(|(index, streams)| Connection::new(shared, index, streams))
        .collect();
    if let Err(error) = drive(shared, &mut connections, &mut result, reporter) {
        result.tally.errors.push(error.to_string());
    }
    for connection in &mut connections {
        connection.finish(&mut result);
    }
    report(&result, reporter);
    result
}

/// Both phases' counts, for the progress line.
fn report(result: &WorkerResult, reporter: Reporter) {
    reporter.update(
        result.tally.sent + result.counts.sent_warmup,
        result.tally.completed + result.counts.completed_warmup,
    );
}

fn drive(
    shared: &Shared,
    connections: &mut [Connection],
    result: &mut WorkerResult,
    reporter: Reporter,
) -> io::Result<()> {
    let mut poll = Poll::new()?;
    for (local, connection) in connections.iter_mut().enumerate() {
        for (index, socket) in connection.sockets.iter_mut().enumerate() {
            let token = Token(local * SOCKETS_PER_CONNECTION + index);
            poll.registry().register(
                &mut socket.stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            )?;
        }
    }
    let mut wakeup = Wakeup::register(poll.registry())?;
    let mut events = Events::with_capacity(1024);
    let mut scratch = Vec::new();
    let mut drain_deadline: Option<Instant> = None;
    let mut last_progress = Instant::now();
    let end = shared.end();
    loop {
        if reporter.abandoned() {
            // Another worker failed, and with it the run: stop sending.
            return Ok(());
        }
        let now = Instant::now();
        if end.is_some_and(|end| now >= end) {
            // Stop issuing on time even when every window is full.
            connections.iter_mut().for_each(|connection| connection.done = true);
        }
        for connection in connections.iter_mut() {
            connection.issue(now, shared, result);
            if let Err(error) = connection.flush() {
                fail(connection, result, format!("write failed: {error}"));
            }
        }
        // A dead connection's requests will never be answered: do not wait for them.
        let in_flight: usize = connections
            .iter()
            .filter(|connection| !connection.dead)
            .map(|connection| connection.in_flight)
            .sum();
        let issuing = connections.iter().any(Connection::active);
        if in_flight == 0 {
            last_progress = now;
            if !issuing {
                return Ok(());
            }
        }
        if now.duration_since(last_progress) > shared.drain_timeout {
            result.tally.errors.push(format!(
                "no response for {:?} with {in_flight} requests in flight; giving up",
                shared.drain_timeout
            ));
            return Ok(());
        }
        let timeout = if issuing {
            let wake = connections.iter().filter_map(|c| c.wake_at(shared)).min();
            match wake {
                Some(wake) if wake <= now => Duration::ZERO,
                Some(wake) => {
                    wakeup.arm(wake, wake - now)?;
                    POLL_CAP
                }
                None => POLL_CAP,
            }
        } else {
            let deadline = *drain_deadline.get_or_insert(now + shared.drain_timeout);
            if now >= deadline {
                return Ok(());
            }
            (deadline - now).min(POLL_CAP)
        };
        poll_events(&mut poll, &mut events, timeout)?;
        for event in events.iter() {
            if wakeup.fired(event) {
                continue;
            }
            let local = event.token().0 / SOCKETS_PER_CONNECTION;
            let socket = event.token().0 % SOCKETS_PER_CONNECTION;
            let Some(connection) = connections.get_mut(local) else { continue };
            if connection.dead || !event.is_readable() {
                continue;
            }
            let before = result.tally.completed + result.counts.completed_warmup;
            if let Err(error) = connection.read(socket, shared, result, &mut scratch) {
                scratch.clear();
                fail(connection, result, error);
            }
            if result.tally.completed + result.counts.completed_warmup > before {
                last_progress = Instant::now();
            }
        }
        report(result, reporter);
    }
}

/// Takes a broken connection out of the run (its requests in flight stay unanswered).
fn fail(connection: &mut Connection, result: &mut WorkerResult, error: String) {
    if !connection.dead {
        connection.dead = true;
        result.tally.errors.push(format!("connection {}: {error}", connection.index));
    }
}
