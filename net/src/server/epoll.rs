//! The epoll backend (mio), for machines where io_uring is unavailable: the same shards and
//! the same connection logic (`conn.rs`), with readiness instead of completions.
//!
//! The driver of the one shard loop (`rush_runtime::run_shard`) on epoll. Each pass polls
//! without blocking (unless the idle spin or the park already collected events), reads every
//! readable socket until it would block (or until the connection's inbound buffer is full:
//! backpressure), hands the frames to the shard, and writes each connection's coalesced
//! responses until the socket would block. An idle shard sleeps in `epoll_wait`, woken by a
//! peer through a `mio::Waker` (an eventfd) only when it sleeps. Durable writes go to a
//! helper thread ([`LazySyncWriter`]): epoll has no asynchronous file I/O, and a shard blocked in
//! `fdatasync` would stop serving its sockets meanwhile.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use rush_runtime::{
    run_shard, Driver, DurableWrites, LazySyncWriter, Notify, ShardCore, StopState, SyncWrite,
    Synced,
};

use super::conn::{CloseReason, Connections};
use super::{Ready, ShardIo, ShardReport};

const WAKE: Token = Token(usize::MAX);
const LISTENER_BASE: usize = 1 << 40;
const READ_CHUNK: usize = 64 * 1024;

struct MioNotify(Arc<Waker>);

impl Notify for MioNotify {
    fn notify(&self) {
        let _ = self.0.wake();
    }
}

/// Per-connection epoll state.
#[derive(Debug)]
pub(crate) struct EpollSocket {
    stream: TcpStream,
    /// Readiness seen and not yet read to exhaustion (edge-triggered: must be remembered).
    readable: bool,
}

/// The epoll driver of one shard.
pub(crate) struct EpollDriver {
    poll: Poll,
    events: Events,
    /// `events` holds readiness collected by the idle spin or the park, not yet handled.
    events_fresh: bool,
    waker: Arc<Waker>,
    connections: Connections<EpollSocket>,
    listeners: Vec<(TcpListener, bool)>,
    accepting: bool,
    /// Connections with readiness left over (backpressure) to read in a later pass.
    unread: Vec<u32>,
    dirty: Vec<u32>,
    scratch: Box<[u8]>,
    writes: LazySyncWriter,
}

pub(crate) fn run(io: ShardIo<'_>, stop: &StopState, ready: &Ready) -> io::Result<ShardReport> {
    let ShardIo { core, listeners, limits, topology, capture, options, sources } = io;
    let shard_index = core.shard();
    let connections = Connections::new(limits, topology, capture).with_sources(sources);
    let mut driver = EpollDriver::new(listeners, connections, core)?;
    let _ = ready.send((shard_index, Ok(())));
    let loop_counters = run_shard(core, &mut driver, stop, options)?;
    Ok(ShardReport::of(core, driver.connections.counters, loop_counters))
}

impl EpollDriver {
    /// An epoll instance watching `listeners` and a waker, for `core`'s thread.
    pub(crate) fn new(
        listeners: Vec<super::Listener>,
        connections: Connections<EpollSocket>,
        core: &ShardCore,
    ) -> io::Result<EpollDriver> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let mut registered = Vec::new();
        for (index, listener) in listeners.into_iter().enumerate() {
            listener.socket.set_nonblocking(true)?;
            let mut socket = TcpListener::from_std(listener.socket);
            let token = Token(LISTENER_BASE + index);
            poll.registry().register(&mut socket, token, Interest::READABLE)?;
            registered.push((socket, listener.admin));
        }
        Ok(EpollDriver {
            poll,
            events: Events::with_capacity(1024),
            events_fresh: false,
            waker,
            connections,
            listeners: registered,
            accepting: true,
            unread: Vec::new(),
            dirty: Vec::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            writes: LazySyncWriter::new(core.shard(), Arc::clone(core.doorbell())),
        })
    }
}

impl Driver for EpollDriver {
    fn begin_stop(&mut self) {
        self.stop_accepting();
    }

    fn receive(&mut self, core: &mut ShardCore, now_ms: u64) -> io::Result<usize> {
        if !std::mem::take(&mut self.events_fresh) {
            self.poll_now(Some(Duration::ZERO))?;
        }
        let mut work = self.handle_events();
        work += self.read_ready();
        work += self.connections.process(core, now_ms);
        // Readiness left over by backpressure is read in the next pass: not idle yet.
        Ok(work + usize::from(!self.unread.is_empty()))
    }

    fn send(&mut self, core: &mut ShardCore) -> io::Result<usize> {
        let work = self.connections.complete(core);
        self.flush();
        self.connections.publish_totals(core);
        Ok(work)
    }

    fn submit(&mut self) -> io::Result<()> {
        Ok(()) // Readiness-based: every read and write was done in the pass.
    }

    fn input_pending(&mut self) -> bool {
        if self.poll_now(Some(Duration::ZERO)).is_err() {
            return true; // let the next pass see the error
        }
        self.events_fresh = !self.events.is_empty();
        self.events_fresh
    }

    fn has_mail(&self) -> bool {
        self.writes.has_completion()
    }

    fn park(&mut self, timeout: Duration) -> io::Result<()> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {
                self.events_fresh = true;
                Ok(())
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(error) => Err(error),
        }
    }

    fn notifier(&self) -> io::Result<Box<dyn Notify>> {
        Ok(Box::new(MioNotify(Arc::clone(&self.waker))))
    }

    fn clients_done(&self) -> bool {
        self.connections.is_empty()
    }
}

impl DurableWrites for EpollDriver {
    fn write_and_sync(&mut self, write: SyncWrite) -> Result<(), SyncWrite> {
        self.writes.write_and_sync(write)
    }

    fn take_synced(&mut self) -> Option<Synced> {
        self.writes.take_synced()
    }
}

impl EpollDriver {
    fn poll_now(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(error) => Err(error),
        }
    }

    fn stop_accepting(&mut self) {
        self.accepting = false;
        for (listener, _) in &mut self.listeners {
            let _ = self.poll.registry().deregister(listener);
        }
        self.listeners.clear();
        for slot in self.connections.open_slots() {
            if let Some(conn) = self.connections.get_slot(slot) {
                conn.read_closed = true;
            }
            self.dirty.push(slot);
        }
    }

    fn handle_events(&mut self) -> usize {
        let mut count = 0;
        let mut accept_from = Vec::new();
        for event in self.events.iter() {
            count += 1;
            let token = event.token();
            if token == WAKE {
                continue;
            }
            if token.0 >= LISTENER_BASE {
                accept_from.push(token.0 - LISTENER_BASE);
                continue;
            }
            let slot = token.0 as u32;
            if let Some(conn) = self.connections.get_slot(slot) {
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    conn.handle.readable = true;
                    self.unread.push(slot);
                }
                if event.is_writable() {
                    self.dirty.push(slot);
                }
            }
        }
        self.events.clear();
        for index in accept_from {
            self.accept(index);
        }
        count
    }

    fn accept(&mut self, index: usize) {
        loop {
            if !self.accepting {
                return;
            }
            let Some((listener, admin)) = self.listeners.get(index) else { return };
            let admin = *admin;
            match listener.accept() {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let socket = EpollSocket { stream, readable: true };
                    match self.connections.open_from(socket, admin, Some(peer.ip())) {
                        Ok((slot, _)) => {
                            let registry = self.poll.registry();
                            let conn = self.connections.get_slot(slot).expect("just opened");
                            if registry
                                .register(
                                    &mut conn.handle.stream,
                                    Token(slot as usize),
                                    Interest::READABLE | Interest::WRITABLE,
                                )
                                .is_err()
                            {
                                self.connections.release(slot);
                                continue;
                            }
                            self.unread.push(slot);
                        }
                        // Refused: every slot is taken; dropping the stream closes it.
                        Err(socket) => drop(socket),
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                // ECONNABORTED, EMFILE, ...: skip this one, keep the listener.
                Err(_) => return,
            }
        }
    }

    /// Reads every connection with readiness left, until it would block or its inbound
    /// buffer is full (then it stays on the list: backpressure).
    fn read_ready(&mut self) -> usize {
        let mut work = 0;
        // Taken and given back (cleared) so the list keeps its capacity: nothing below adds to
        // `unread` (only `handle_events`, `accept` and `flush` do).
        let mut slots = std::mem::take(&mut self.unread);
        slots.sort_unstable();
        slots.dedup();
        let limit = self.connections.limits().inbound_bytes_max;
        for &slot in &slots {
            let Some(conn) = self.connections.get_slot(slot) else { continue };
            if !conn.handle.readable || conn.closing.is_some() || conn.read_closed {
                continue;
            }
            let mut received = false;
            let mut bytes_received = 0;
            loop {
                if conn.pending_input() >= limit {
                    // Backpressure: the socket keeps its readiness (`readable` stays true);
                    // `flush` puts the slot back on `unread` once the engine took the input
                    // (after the answers it was waiting for), so the loop never spins here.
                    break;
                }
                match conn.handle.stream.read(&mut self.scratch) {
                    Ok(0) => {
                        conn.read_closed = true;
                        conn.handle.readable = false;
                        received = true;
                        break;
                    }
                    Ok(length) => {
                        conn.inbound.extend_from_slice(&self.scratch[..length]);
                        received = true;
                        bytes_received += length as u64;
                        work += 1;
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        conn.handle.readable = false;
                        break;
                    }
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => {
                        conn.closing = Some(CloseReason::Io(error.raw_os_error().unwrap_or(0)));
                        conn.close_after_flush = false;
                        break;
                    }
                }
            }
            self.connections.counters.bytes_received += bytes_received;
            if received {
                self.connections.mark_ready(slot);
            }
            self.dirty.push(slot);
        }
        debug_assert!(self.unread.is_empty());
        slots.clear();
        self.unread = slots;
        work
    }

    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        self.connections.take_dirty(&mut dirty);
        for slot in dirty.drain(..) {
            let Some(conn) = self.connections.get_slot(slot) else { continue };
            let mut written = 0;
            while written < conn.outbound.len()
                && conn.closing.is_none_or(|_| conn.close_after_flush)
            {
                match conn.handle.stream.write(&conn.outbound[written..]) {
                    Ok(0) => break,
                    Ok(length) => written += length,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => {
                        conn.closing = Some(CloseReason::Io(error.raw_os_error().unwrap_or(0)));
                        conn.close_after_flush = false;
                        break;
                    }
                }
            }
            conn.outbound.drain(..written);
            self.connections.counters.bytes_sent += written as u64;
            if written > 0 {
                self.connections.resume(slot);
            }
            let Some(conn) = self.connections.get_slot(slot) else { continue };
            // Input left behind by backpressure is read once the engine took the rest.
            if conn.handle.readable && !self.connections.inbound_full(slot) {
                self.unread.push(slot);
            }
            self.maybe_close(slot);
        }
        self.dirty = dirty;
    }

    fn maybe_close(&mut self, slot: u32) {
        let Some(conn) = self.connections.get_slot(slot) else { return };
        if !(conn.aborted() || conn.finished()) {
            return;
        }
        if let Some(mut conn) = self.connections.release(slot) {
            let _ = self.poll.registry().deregister(&mut conn.handle.stream);
            // Dropping the stream closes the socket.
        }
    }
}
