//! The replay's event loop: each thread drives its share of the replayed connections with
//! non-blocking sockets (`mio`), the bench's sub-millisecond timerfd for the schedule, and
//! its own histograms (merged after the run).
//!
//! A thread keeps its connections' next events (open, next frame, close) in one min-heap,
//! so a wake-up costs `O(log n)` whatever the number of connections; sending only appends
//! to the connection's buffer and writes what the kernel takes, so one slow connection
//! (full socket buffer, server not reading) never delays another one's frames: its bytes
//! wait in its buffer, and the wait is charged to its latencies.
//!
//! At top speed there is no schedule: each connection keeps up to `window` frames in
//! flight, and starts once the connections that closed before it opened in the capture
//! have finished (all answered) in the replay: a shared watermark over the capture's close
//! order, advanced by whichever thread finishes a connection.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use rush_net::protocol::{decode_response, Opcode};

use super::plan::{Connection, Expect, Frame, Pace, Plan};
use crate::measure::tally::{Counts, Measured, Tally};
use crate::measure::timer::{poll_events, Wakeup};
use crate::measure::workers::Reporter;

/// The longest a worker blocks in `poll`, so it notices the drain timeout on time.
const POLL_CAP: Duration = Duration::from_millis(50);
/// Top speed: how often a worker looks at the watermark while a connection of its waits
/// for connections of other threads.
const WATERMARK_POLL: Duration = Duration::from_millis(1);
const READ_CHUNK: usize = 64 * 1024;

/// Everything the workers share.
#[derive(Debug)]
pub struct Shared<'a> {
    pub plan: &'a Plan,
    pub pace: Pace,
    pub target: SocketAddr,
    /// Where admin connections go (the plan holds none when they are skipped).
    pub admin: Option<SocketAddr>,
    /// The schedule's time 0.
    pub start: Instant,
    pub drain_timeout: Duration,
    /// Top speed: finished replay connections, by position in the loops' close order
    /// (`loop × connections + close_rank`); empty otherwise.
    pub finished: Vec<AtomicBool>,
    /// Top speed: every position below it is finished.
    pub watermark: AtomicUsize,
}

impl Shared<'_> {
    fn top_speed(&self) -> Option<usize> {
        match self.pace {
            Pace::TopSpeed { window } => Some(window),
            _ => None,
        }
    }

    fn mark_finished(&self, position: usize) {
        let Some(flag) = self.finished.get(position) else { return };
        flag.store(true, Ordering::SeqCst);
        loop {
            let mark = self.watermark.load(Ordering::SeqCst);
            let done = self.finished.get(mark).is_some_and(|flag| flag.load(Ordering::SeqCst));
            if !done {
                break;
            }
            let _ =
                self.watermark.compare_exchange(mark, mark + 1, Ordering::SeqCst, Ordering::SeqCst);
        }
    }
}

/// What a replay worker counts besides the shared [`Tally`] (whose latencies run from each
/// frame's scheduled send time, or at top speed from when it was handed to its connection,
/// and whose operations are [`Opcode::ALL`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReplayCounts {
    /// Replay connections opened.
    pub connections: u64,
    /// Frames never sent because their connection had failed.
    pub unsent: u64,
    /// Frames the server cannot frame, sent as captured.
    pub framing_failures: u64,
    /// Connections the server closed after such a frame (expected, not an error)...
    pub closed_after_framing_failure: u64,
    /// ...and the frames of those connections left unanswered or unsent (not errors).
    pub lost_after_framing_failure: u64,
}

impl Counts for ReplayCounts {
    fn add(&mut self, part: &ReplayCounts) {
        self.connections += part.connections;
        self.unsent += part.unsent;
        self.framing_failures += part.framing_failures;
        self.closed_after_framing_failure += part.closed_after_framing_failure;
        self.lost_after_framing_failure += part.lost_after_framing_failure;
    }
}

/// What one worker measured.
pub type Outcome = Measured<ReplayCounts>;

fn new_outcome() -> Outcome {
    Measured { tally: Tally::new(Opcode::ALL.len()), counts: ReplayCounts::default() }
}

/// Counts the answer to a frame of `opcode` sent (or due) at `sent_at`.
fn record(
    outcome: &mut Outcome,
    start: Instant,
    sent_at: Instant,
    opcode: Opcode,
    reply: (u16, u16),
) {
    let operation = Opcode::ALL.iter().position(|&known| known == opcode);
    let (result, original) = reply;
    outcome.tally.record(start, sent_at, Instant::now(), operation, result, original);
}

/// When the frames still awaiting an answer on one connection were sent (or scheduled),
/// by request id: first in, first out per id (a capture may legally reuse an id while the
/// first request is in flight; the server answers each, and FIFO is the best guess).
#[derive(Debug, Default)]
struct Pending {
    by_id: HashMap<u64, Waiting>,
}

#[derive(Debug)]
enum Waiting {
    One(Instant),
    Many(VecDeque<Instant>),
}

impl Pending {
    fn push(&mut self, id: u64, at: Instant) {
        match self.by_id.entry(id) {
            Entry::Vacant(entry) => {
                entry.insert(Waiting::One(at));
            }
            Entry::Occupied(mut entry) => match entry.get_mut() {
                Waiting::One(first) => {
                    let first = *first;
                    entry.insert(Waiting::Many(VecDeque::from([first, at])));
                }
                Waiting::Many(queue) => queue.push_back(at),
            },
        }
    }

    fn pop(&mut self, id: u64) -> Option<Instant> {
        let Entry::Occupied(mut entry) = self.by_id.entry(id) else { return None };
        match entry.get_mut() {
            Waiting::One(at) => {
                let at = *at;
                entry.remove();
                Some(at)
            }
            Waiting::Many(queue) => {
                let at = queue.pop_front();
                if queue.is_empty() {
                    entry.remove();
                }
                at
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not opened yet.
    Waiting,
    Open,
    /// Everything sent and answered, no CLOSE in the capture: open until the end.
    Lingering,
    Closed,
}

#[derive(Debug)]
struct Socket {
    stream: mio::net::TcpStream,
    connected: bool,
    out: Vec<u8>,
    written: usize,
    inbound: Vec<u8>,
}

/// One replay connection: a captured connection in one loop.
#[derive(Debug)]
struct Live<'p> {
    plan: &'p Connection,
    loop_index: u32,
    /// The loop's offset in the schedule.
    offset_ns: u64,
    /// Top speed: its position in the loops' close order, and the watermark it waits for.
    position: usize,
    threshold: usize,
    state: State,
    socket: Option<Socket>,
    /// The next frame to send.
    next: usize,
    /// Frames handed to this connection so far.
    sent: usize,
    pending: Pending,
    /// Answers still expected.
    expected: usize,
    /// A frame the server cannot frame was sent...
    fatal_sent: bool,
    /// ...and it was invalid: the server will close the connection (awaited like an
    /// answer, so the drain timeout covers it).
    awaiting_close: bool,
    /// The close time has been reached (its heap event was handled).
    close_due: bool,
}

impl Live<'_> {
    fn name(&self) -> String {
        format!("connection {:#x} (loop {})", self.plan.captured, self.loop_index + 1)
    }

    fn frame_due(&self, frame: &Frame) -> u64 {
        self.offset_ns + frame.at_ns
    }

    /// When this connection next needs the worker's attention on the schedule.
    fn next_due(&self) -> Option<u64> {
        match self.state {
            State::Waiting => Some(self.offset_ns + self.plan.open_ns),
            State::Open if self.next < self.plan.frames.len() => {
                Some(self.frame_due(&self.plan.frames[self.next]))
            }
            State::Open if !self.close_due => {
                self.plan.close_ns.map(|close| self.offset_ns + close)
            }
            _ => None,
        }
    }

    fn flushed(&self) -> bool {
        self.socket.as_ref().is_none_or(|socket| socket.written == socket.out.len())
    }
}

/// How a connection ends.
enum End {
    /// As planned.
    Done,
    /// The server closed it (EOF or reset).
    ServerClosed,
    /// Any other failure, with what to report.
    Failed(String),
    /// Given up at the end of the run (reported once for all of them).
    Abandoned,
}

struct Worker<'s, 'p> {
    shared: &'s Shared<'p>,
    lives: Vec<Live<'p>>,
    out: Outcome,
    poll: Poll,
    /// Answers expected over all connections.
    in_flight: usize,
    /// Connections waiting or open (not lingering, not closed).
    unsettled: usize,
    scratch: Vec<u8>,
}

/// Runs one worker's connections (`(loop, index into the plan)`, in start order) to the end
/// (or until the run is abandoned because another worker failed).
pub fn run_worker(shared: &Shared, assigned: &[(u32, usize)], reporter: Reporter) -> Outcome {
    let connections = shared.plan.connections.len();
    let lives = assigned
        .iter()
        .map(|&(loop_index, index)| {
            let plan = &shared.plan.connections[index];
            let base = loop_index as usize * connections;
            Live {
                plan,
                loop_index,
                offset_ns: shared.plan.loop_offset_ns(loop_index),
                position: base + plan.close_rank,
                threshold: base + plan.after,
                state: State::Waiting,
                socket: None,
                next: 0,
                sent: 0,
                pending: Pending::default(),
                expected: 0,
                fatal_sent: false,
                awaiting_close: false,
                close_due: false,
            }
        })
        .collect::<Vec<_>>();
    let mut outcome;
    match Poll::new() {
        Ok(poll) => {
            let mut worker = Worker {
                shared,
                unsettled: lives.len(),
                lives,
                out: new_outcome(),
                poll,
                in_flight: 0,
                scratch: vec![0; READ_CHUNK],
            };
            if let Err(error) = worker.drive(reporter) {
                worker.out.tally.errors.push(format!("replay thread: {error}"));
            }
            worker.finish_all();
            outcome = worker.out;
        }
        Err(error) => {
            outcome = new_outcome();
            outcome.tally.errors.push(format!("replay thread: {error}"));
            for &(loop_index, index) in assigned {
                outcome.counts.unsent += shared.plan.connections[index].frames.len() as u64;
                let base = loop_index as usize * connections;
                shared.mark_finished(base + shared.plan.connections[index].close_rank);
            }
        }
    }
    reporter.update(outcome.tally.sent, outcome.tally.completed);
    outcome
}

impl<'p> Worker<'_, 'p> {
    fn drive(&mut self, reporter: Reporter) -> io::Result<()> {
        let mut wakeup = Wakeup::register(self.poll.registry())?;
        let start = self.shared.start;
        let mut heap: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
        let top_speed = self.shared.top_speed();
        if top_speed.is_none() {
            for (index, live) in self.lives.iter().enumerate() {
                if let Some(due) = live.next_due() {
                    heap.push(Reverse((due, index)));
                }
            }
        }
        let mut cursor = 0;
        let mut events = Events::with_capacity(1024);
        let mut last_progress = Instant::now();
        loop {
            if reporter.abandoned() {
                // Another worker failed, and with it the run. Stop here: a top-speed
                // connection may be waiting for connections of the failed worker, which
                // will never finish.
                self.out.tally.errors.push("stopped: another replay thread failed".into());
                return Ok(());
            }
            let now = Instant::now();
            let now_ns = now.saturating_duration_since(start).as_nanos() as u64;
            if let Some(window) = top_speed {
                // Start every connection whose predecessors in the capture are finished.
                while cursor < self.lives.len() && now >= start {
                    let mark = self.shared.watermark.load(Ordering::SeqCst);
                    if self.lives[cursor].threshold > mark {
                        break;
                    }
                    self.open(cursor);
                    self.fill_window(cursor, window);
                    self.maybe_close(cursor, now_ns);
                    cursor += 1;
                }
            } else {
                while let Some(&Reverse((due, index))) = heap.peek() {
                    if due > now_ns {
                        break;
                    }
                    heap.pop();
                    self.on_due(index, now_ns);
                    if let Some(next) = self.lives[index].next_due() {
                        heap.push(Reverse((next, index)));
                    }
                }
            }
            reporter.update(self.out.tally.sent, self.out.tally.completed);
            if self.unsettled == 0 {
                return Ok(());
            }
            if self.in_flight == 0 {
                last_progress = now;
            } else if now.duration_since(last_progress) > self.shared.drain_timeout {
                self.out.tally.errors.push(format!(
                    "no response for {:.1} s with {} requests in flight; giving up",
                    self.shared.drain_timeout.as_secs_f64(),
                    self.in_flight
                ));
                return Ok(());
            }
            let timeout = if top_speed.is_some() {
                if cursor < self.lives.len() {
                    if now < start {
                        (start - now).min(WATERMARK_POLL)
                    } else {
                        WATERMARK_POLL
                    }
                } else {
                    POLL_CAP
                }
            } else {
                match heap.peek() {
                    Some(&Reverse((due, _))) if due <= now_ns => Duration::ZERO,
                    Some(&Reverse((due, _))) => {
                        let at = start + Duration::from_nanos(due);
                        wakeup.arm(at, Duration::from_nanos(due - now_ns))?;
                        POLL_CAP
                    }
                    None => POLL_CAP,
                }
            };
            poll_events(&mut self.poll, &mut events, timeout)?;
            for event in events.iter() {
                if wakeup.fired(event) {
                    continue;
                }
                let index = event.token().0;
                let answered = self.out.tally.completed;
                self.on_ready(index);
                if self.out.tally.completed > answered {
                    last_progress = Instant::now();
                }
                if let Some(window) = top_speed {
                    self.fill_window(index, window);
                }
                let now_ns = start.elapsed().as_nanos() as u64;
                self.maybe_close(index, now_ns);
            }
        }
    }

    /// A scheduled event of connection `index` is due: open it, send what is due, close
    /// it if its time has come.
    fn on_due(&mut self, index: usize, now_ns: u64) {
        if self.lives[index].state == State::Waiting {
            self.open(index);
        }
        let start = self.shared.start;
        let live = &mut self.lives[index];
        if live.state != State::Open {
            return;
        }
        let mut sent_any = false;
        while let Some(frame) = live.plan.frames.get(live.next) {
            let due = live.frame_due(frame);
            if due > now_ns {
                break;
            }
            let at = start + Duration::from_nanos(due);
            send(live, frame, at, &mut self.out, &mut self.in_flight);
            sent_any = true;
        }
        if live.next == live.plan.frames.len()
            && live.plan.close_ns.is_some_and(|close| live.offset_ns + close <= now_ns)
        {
            live.close_due = true;
        }
        if sent_any {
            self.flush(index);
        }
        self.maybe_close(index, now_ns);
    }

    /// Top speed: sends frames while the window has room.
    fn fill_window(&mut self, index: usize, window: usize) {
        let live = &mut self.lives[index];
        if live.state != State::Open {
            return;
        }
        let mut sent_any = false;
        while live.expected < window {
            let Some(frame) = live.plan.frames.get(live.next) else { break };
            send(live, frame, Instant::now(), &mut self.out, &mut self.in_flight);
            sent_any = true;
        }
        if sent_any {
            self.flush(index);
        }
    }

    fn open(&mut self, index: usize) {
        let live = &mut self.lives[index];
        let address = if live.plan.admin {
            self.shared.admin.unwrap_or(self.shared.target)
        } else {
            self.shared.target
        };
        live.state = State::Open;
        self.out.counts.connections += 1;
        match mio::net::TcpStream::connect(address) {
            Ok(mut stream) => {
                let registered = self.poll.registry().register(
                    &mut stream,
                    Token(index),
                    Interest::READABLE | Interest::WRITABLE,
                );
                live.socket = Some(Socket {
                    stream,
                    connected: false,
                    out: Vec::new(),
                    written: 0,
                    inbound: Vec::new(),
                });
                if let Err(error) = registered {
                    self.end(index, End::Failed(format!("cannot register the socket: {error}")));
                }
            }
            Err(error) => {
                self.end(index, End::Failed(format!("cannot connect to {address}: {error}")))
            }
        }
    }

    /// A socket event: finish connecting, write what is buffered, read what arrived.
    fn on_ready(&mut self, index: usize) {
        let Some(live) = self.lives.get_mut(index) else { return };
        let Some(socket) = live.socket.as_mut() else { return };
        if !socket.connected {
            let address =
                if live.plan.admin { self.shared.admin } else { Some(self.shared.target) };
            let address = address.map_or_else(String::new, |address| address.to_string());
            match socket.stream.take_error() {
                Ok(Some(error)) | Err(error) => {
                    let reason = format!("cannot connect to {address}: {error}");
                    return self.end(index, End::Failed(reason));
                }
                Ok(None) => {}
            }
            match socket.stream.peer_addr() {
                Ok(_) => {
                    socket.connected = true;
                    let _ = socket.stream.set_nodelay(true);
                }
                Err(error) if error.kind() == io::ErrorKind::NotConnected => return,
                Err(error) => {
                    let reason = format!("cannot connect to {address}: {error}");
                    return self.end(index, End::Failed(reason));
                }
            }
        }
        self.flush(index);
        self.read(index);
    }

    /// Writes what the socket has buffered, as far as the kernel takes it.
    fn flush(&mut self, index: usize) {
        let Some(socket) = self.lives[index].socket.as_mut() else { return };
        if !socket.connected {
            return;
        }
        let mut failure = None;
        while socket.written < socket.out.len() {
            match socket.stream.write(&socket.out[socket.written..]) {
                Ok(0) => {
                    failure = Some(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(count) => socket.written += count,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        if socket.written == socket.out.len() {
            socket.out.clear();
            socket.written = 0;
        }
        if let Some(error) = failure {
            let end = if closed_by_peer(&error) {
                End::ServerClosed
            } else {
                End::Failed(format!("write failed: {error}"))
            };
            self.end(index, end);
        }
    }

    /// Reads the socket dry and completes every response it carried.
    fn read(&mut self, index: usize) {
        let start = self.shared.start;
        loop {
            let live = &mut self.lives[index];
            let Some(socket) = live.socket.as_mut() else { return };
            let count = match socket.stream.read(&mut self.scratch) {
                Ok(0) => return self.end(index, End::ServerClosed),
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) if closed_by_peer(&error) => return self.end(index, End::ServerClosed),
                Err(error) => return self.end(index, End::Failed(format!("read failed: {error}"))),
            };
            socket.inbound.extend_from_slice(&self.scratch[..count]);
            let mut used = 0;
            let mut failure = None;
            while used < socket.inbound.len() {
                match decode_response(&socket.inbound[used..]) {
                    Ok((frame, length)) => {
                        used += length;
                        let Some(sent_at) = live.pending.pop(frame.request_id) else {
                            failure = Some(format!(
                                "a response for request id {}, which is not in flight",
                                frame.request_id
                            ));
                            break;
                        };
                        live.expected -= 1;
                        self.in_flight -= 1;
                        let codes = (frame.result() as u16, frame.original() as u16);
                        record(&mut self.out, start, sent_at, frame.opcode, codes);
                    }
                    Err(error) if error.is_incomplete() => break,
                    Err(error) => {
                        failure = Some(format!("a bad response from the server: {error}"));
                        break;
                    }
                }
            }
            socket.inbound.drain(..used);
            if let Some(reason) = failure {
                return self.end(index, End::Failed(reason));
            }
        }
    }

    /// Closes the connection when it is done: everything sent and answered, and its CLOSE
    /// time reached (top speed: at once); without a CLOSE it lingers until the end.
    fn maybe_close(&mut self, index: usize, now_ns: u64) {
        let top_speed = self.shared.top_speed().is_some();
        let live = &mut self.lives[index];
        if live.state != State::Open
            || live.next < live.plan.frames.len()
            || live.expected > 0
            || live.awaiting_close
            || !live.flushed()
        {
            return;
        }
        let close_reached = live.close_due
            || live.plan.close_ns.is_some_and(|close| live.offset_ns + close <= now_ns);
        if top_speed || close_reached {
            self.end(index, End::Done);
        } else if live.plan.close_ns.is_none() {
            live.state = State::Lingering;
            self.unsettled -= 1;
        }
    }

    /// Ends connection `index`: counts what it leaves unanswered and unsent, closes the
    /// socket, and (top speed) lets the connections that wait for it start.
    fn end(&mut self, index: usize, how: End) {
        let live = &mut self.lives[index];
        if live.state == State::Closed {
            return;
        }
        if live.state != State::Lingering {
            self.unsettled -= 1;
        }
        let was_lingering = live.state == State::Lingering;
        live.state = State::Closed;
        let mut unanswered = live.expected as u64;
        let mut unsent = (live.plan.frames.len() - live.next) as u64;
        if live.socket.as_ref().is_some_and(|socket| !socket.connected) {
            // Never connected: what it was handed never left; it was not sent after all.
            self.out.tally.sent -= live.sent as u64;
            unsent += live.sent as u64;
            unanswered = 0;
        }
        self.in_flight -= live.expected + usize::from(live.awaiting_close);
        live.expected = 0;
        live.awaiting_close = false;
        live.next = live.plan.frames.len();
        if let Some(mut socket) = live.socket.take() {
            let _ = self.poll.registry().deregister(&mut socket.stream);
        }
        match how {
            End::Done => {}
            End::ServerClosed if live.fatal_sent => {
                self.out.counts.closed_after_framing_failure += 1;
                self.out.counts.lost_after_framing_failure += unanswered + unsent;
            }
            End::ServerClosed if unanswered == 0 && unsent == 0 => {}
            End::ServerClosed => {
                self.out.tally.unanswered += unanswered;
                self.out.counts.unsent += unsent;
                self.out.tally.errors.push(format!(
                    "{}: the server closed it with {unanswered} answers outstanding and \
                     {unsent} frames not sent yet",
                    live.name()
                ));
            }
            End::Failed(reason) => {
                self.out.tally.unanswered += unanswered;
                self.out.counts.unsent += unsent;
                self.out.tally.errors.push(format!("{}: {reason}", live.name()));
            }
            End::Abandoned => {
                self.out.tally.unanswered += unanswered;
                self.out.counts.unsent += unsent;
            }
        }
        if !was_lingering {
            self.shared.mark_finished(live.position);
        }
    }

    /// After the last event (or on giving up): whatever is still open or waiting ends here.
    fn finish_all(&mut self) {
        let mut abandoned = 0;
        for index in 0..self.lives.len() {
            match self.lives[index].state {
                State::Closed => {}
                State::Lingering => self.end(index, End::Done),
                State::Waiting | State::Open => {
                    abandoned += 1;
                    self.end(index, End::Abandoned);
                }
            }
        }
        if abandoned > 0 {
            self.out.tally.errors.push(format!(
                "{abandoned} connections were abandoned before they were done (their \
                 remaining frames are counted unsent, their requests in flight unanswered)"
            ));
        }
    }
}

/// Hands `frame` to the connection's buffer, remembering when it was (due to be) sent.
fn send(live: &mut Live, frame: &Frame, at: Instant, out: &mut Outcome, in_flight: &mut usize) {
    if let Some(socket) = live.socket.as_mut() {
        socket.out.extend_from_slice(frame.bytes());
    }
    live.next += 1;
    live.sent += 1;
    out.tally.sent += 1;
    match frame.expect {
        Expect::Reply { request_id } => {
            live.pending.push(request_id, at);
            live.expected += 1;
            *in_flight += 1;
        }
        Expect::FramingFailure { closes } => {
            live.fatal_sent = true;
            out.counts.framing_failures += 1;
            if closes && !live.awaiting_close {
                live.awaiting_close = true;
                *in_flight += 1;
            }
        }
    }
}

fn closed_by_peer(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_matches_a_reused_request_id_first_in_first_out() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut pending = Pending::default();
        pending.push(5, at(1));
        pending.push(6, at(2));
        pending.push(5, at(3));
        pending.push(5, at(4));
        assert_eq!(pending.pop(5), Some(at(1)));
        assert_eq!(pending.pop(6), Some(at(2)));
        assert_eq!(pending.pop(6), None);
        assert_eq!(pending.pop(5), Some(at(3)));
        pending.push(5, at(5));
        assert_eq!(pending.pop(5), Some(at(4)));
        assert_eq!(pending.pop(5), Some(at(5)));
        assert_eq!(pending.pop(5), None);
        assert!(pending.by_id.is_empty());
    }
}
