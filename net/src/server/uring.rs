//! The io_uring backend: one ring per shard, created on the shard's thread with
//! SINGLE_ISSUER | DEFER_TASKRUN.
//!
//! - multishot ACCEPT on each of the shard's listeners;
//! - multishot RECV into a registered buffer ring (provided buffers): each completion's bytes
//!   are copied into the connection's inbound buffer and the buffer goes back to the ring at
//!   once; a completion with ENOBUFS (the ring ran dry) is counted and the recv re-armed;
//! - one SEND in flight per connection: responses produced in a pass are coalesced into
//!   the connection's outbound buffer and sent with one SEND; a partial write re-sends the
//!   rest; the next SEND goes when the previous one completed;
//! - a READ on the shard's eventfd, re-armed after each completion: peers write it to wake a
//!   shard that sleeps in `io_uring_enter` (only when it sleeps: see `Doorbell`);
//! - durable writes (the journal's group commit) as a WRITE linked (`IO_LINK`) to an FSYNC
//!   with DATASYNC, on the same ring as the network, so a pass's sends, receives and its
//!   journal write go to the kernel in one `io_uring_enter`;
//! - one `io_uring_enter` per loop pass (none when there is nothing to submit), waiting only
//!   when the pass found nothing to do, with a timeout so timers fire on time.
//!
//! The loop itself (pass order, idle spin, doorbell handshake, stop protocol) is the one
//! shard loop of `rush_runtime::run_shard`; this file is its io_uring [`Driver`].
//!
//! A connection is closed (`close(2)`) only once no operation of it is in flight: its
//! multishot recv is cancelled first and its send, if any, completes, so no kernel
//! operation ever refers to a freed buffer or a reused descriptor.
#![allow(unsafe_code)] // io_uring submissions hand buffer addresses to the kernel.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use rush_runtime::storage::SYNC_WRITES_IN_FLIGHT_MAX;
use rush_runtime::{
    run_shard, Driver, DurableWrites, Notify, ShardCore, StopState, SyncFailure, SyncWrite, Synced,
};

use super::conn::{CloseReason, Connections};
use super::{Listener, Ready, ShardIo, ShardReport};

const RING_ENTRIES: u32 = 1024;
const COMPLETION_ENTRIES: u32 = 16 * 1024;
/// Provided buffers: count (a power of two, at most 32768) and size of each.
const BUFFER_COUNT: u16 = 512;
const BUFFER_SIZE: usize = 16 * 1024;
const BUFFER_GROUP: u16 = 0;

// user_data: kind in the top byte, then generation (24 bits) and slot (32 bits).
const KIND_ACCEPT: u64 = 1;
const KIND_RECV: u64 = 2;
const KIND_SEND: u64 = 3;
const KIND_WAKE: u64 = 4;
const KIND_CANCEL: u64 = 5;
/// The WRITE of a durable write (slot: its index in `Durable::in_flight`).
const KIND_WRITE: u64 = 6;
/// The FSYNC (DATASYNC) linked behind it.
const KIND_FSYNC: u64 = 7;

fn user_data(kind: u64, generation: u32, slot: u32) -> u64 {
    (kind << 56) | (u64::from(generation & 0xff_ffff) << 32) | u64::from(slot)
}

fn split_user_data(data: u64) -> (u64, u32, u32) {
    (data >> 56, ((data >> 32) & 0xff_ffff) as u32, data as u32)
}

/// The flags a ring is created with; the probe uses the same.
pub(crate) fn builder() -> io_uring::Builder {
    let mut builder = IoUring::builder();
    builder
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .setup_submit_all()
        .setup_cqsize(COMPLETION_ENTRIES);
    builder
}

/// An eventfd: written by peers to wake this shard.
#[derive(Debug)]
pub(crate) struct EventFd(RawFd);

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: plain syscall with constant flags; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EventFd(fd))
    }
}

impl Notify for EventFd {
    fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own; a failure (counter
        // saturated) still leaves the eventfd readable, which is all a wake-up needs.
        unsafe { libc::write(self.0, (&one as *const u64).cast(), 8) };
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: closes the descriptor this value owns, once.
        unsafe { libc::close(self.0) };
    }
}

/// The provided-buffer ring: `BUFFER_COUNT` entries shared with the kernel, and the buffers.
struct BufferRing {
    entries: *mut types::BufRingEntry,
    entries_layout: std::alloc::Layout,
    buffers: Box<[u8]>,
    tail: u16,
}

impl BufferRing {
    fn new(ring: &IoUring) -> io::Result<BufferRing> {
        let entries_layout = std::alloc::Layout::from_size_align(
            BUFFER_COUNT as usize * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .map_err(|_| io::Error::other("buffer ring layout"))?;
        // SAFETY: the layout has a non-zero size; the memory is zeroed (a valid ring header).
        let entries: *mut types::BufRingEntry =
            unsafe { std::alloc::alloc_zeroed(entries_layout) }.cast();
        if entries.is_null() {
            return Err(io::Error::other("buffer ring allocation failed"));
        }
        let mut buffers = BufferRing {
            entries,
            entries_layout,
            buffers: vec![0u8; BUFFER_COUNT as usize * BUFFER_SIZE].into_boxed_slice(),
            tail: 0,
        };
        // SAFETY: `entries` is page-aligned memory for BUFFER_COUNT entries that lives as long
        // as this value, which outlives the ring's use of it (`Shard` drops the ring first and
        // unregisters the group on drop).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                entries as u64,
                BUFFER_COUNT,
                BUFFER_GROUP,
                0,
            )?;
        }
        for id in 0..BUFFER_COUNT {
            buffers.push(id);
        }
        buffers.publish();
        Ok(buffers)
    }

    /// Puts buffer `id` back at the tail (published by [`BufferRing::publish`]).
    fn push(&mut self, id: u16) {
        debug_assert!(id < BUFFER_COUNT);
        let index = (self.tail & (BUFFER_COUNT - 1)) as usize;
        // SAFETY: `index < BUFFER_COUNT`; the kernel does not read entries past the published
        // tail, and this entry's previous buffer was consumed (its completion arrived).
        let entry = unsafe { &mut *self.entries.add(index) };
        entry.set_addr(self.buffers[id as usize * BUFFER_SIZE..].as_ptr() as u64);
        entry.set_len(BUFFER_SIZE as u32);
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the pushed entries visible to the kernel.
    fn publish(&mut self) {
        // SAFETY: the tail field lives in the first entry of the ring we allocated; the
        // kernel reads it with acquire semantics, so a release store orders the entries
        // written before it.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries).cast_mut();
            (*tail.cast::<std::sync::atomic::AtomicU16>()).store(self.tail, Ordering::Release);
        }
    }

    fn buffer(&self, id: u16, length: usize) -> &[u8] {
        let start = id as usize * BUFFER_SIZE;
        &self.buffers[start..start + length.min(BUFFER_SIZE)]
    }
}

impl Drop for BufferRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the ring that used it is gone.
        unsafe { std::alloc::dealloc(self.entries.cast(), self.entries_layout) };
    }
}

/// Per-connection io_uring state, beside the protocol state in `Conn`.
#[derive(Debug, Default)]
pub(crate) struct UringSocket {
    fd: RawFd,
    recv_armed: bool,
    /// Reading stopped for backpressure (inbound buffer full) or shutdown.
    recv_paused: bool,
    cancel_sent: bool,
    /// The bytes of the SEND in flight (stable while the kernel reads them) and how many of
    /// them were sent.
    sending: Vec<u8>,
    sent: usize,
    send_in_flight: bool,
}

/// A durable write in flight: its request, and the WRITE's result once it completed.
#[derive(Debug)]
struct DurableWrite {
    write: SyncWrite,
    write_result: Option<i32>,
}

/// The io_uring driver of one shard.
pub(crate) struct UringDriver {
    ring: IoUring,
    buffers: BufferRing,
    connections: Connections<UringSocket>,
    listeners: Vec<Listener>,
    accepting: bool,
    eventfd: Arc<EventFd>,
    wake_buffer: Box<u64>,
    wake_armed: bool,
    dirty: Vec<u32>,
    /// Durable writes in flight, by slot; their buffers stay here until both completions.
    durable: Vec<Option<DurableWrite>>,
    synced: std::collections::VecDeque<Synced>,
}

pub(crate) fn run(io: ShardIo<'_>, stop: &StopState, ready: &Ready) -> io::Result<ShardReport> {
    let ShardIo { core, listeners, limits, topology, capture, options, sources } = io;
    let shard_index = core.shard();
    let connections = Connections::new(limits, topology, capture).with_sources(sources);
    let mut driver = UringDriver::new(listeners, connections)?;
    let _ = ready.send((shard_index, Ok(())));
    let loop_counters = run_shard(core, &mut driver, stop, options)?;
    driver.close_all();
    let report = ShardReport::of(core, driver.connections.counters, loop_counters);
    drop(driver);
    Ok(report)
}

impl UringDriver {
    /// A ring (created on the calling thread: SINGLE_ISSUER) with its buffer ring, accepting
    /// on `listeners` and watching its eventfd.
    pub(crate) fn new(
        listeners: Vec<Listener>,
        connections: Connections<UringSocket>,
    ) -> io::Result<UringDriver> {
        let ring = builder().build(RING_ENTRIES)?;
        let buffers = BufferRing::new(&ring)?;
        let eventfd = Arc::new(EventFd::new()?);
        let mut driver = UringDriver {
            ring,
            buffers,
            connections,
            listeners,
            accepting: true,
            eventfd,
            wake_buffer: Box::new(0),
            wake_armed: false,
            dirty: Vec::new(),
            durable: (0..SYNC_WRITES_IN_FLIGHT_MAX).map(|_| None).collect(),
            synced: std::collections::VecDeque::with_capacity(SYNC_WRITES_IN_FLIGHT_MAX),
        };
        for index in 0..driver.listeners.len() {
            driver.arm_accept(index);
        }
        driver.arm_wake();
        Ok(driver)
    }
}

impl Driver for UringDriver {
    fn begin_stop(&mut self) {
        self.stop_accepting();
    }

    fn receive(&mut self, core: &mut ShardCore, now_ms: u64) -> io::Result<usize> {
        let work = self.reap();
        Ok(work + self.connections.process(core, now_ms))
    }

    fn send(&mut self, core: &mut ShardCore) -> io::Result<usize> {
        let work = self.connections.complete(core);
        self.flush();
        self.connections.publish_totals(core);
        Ok(work)
    }

    fn submit(&mut self) -> io::Result<()> {
        self.submit_pending()
    }

    /// The kernel's "completions are waiting" flags (a memory read): with DEFER_TASKRUN
    /// completions are posted only inside our own `io_uring_enter`, which the loop's
    /// `submit` after a successful spin performs.
    fn input_pending(&mut self) -> bool {
        let mut submission = self.ring.submission();
        submission.sync();
        submission.taskrun() || submission.cq_overflow()
    }

    fn has_mail(&self) -> bool {
        false // Everything arrives through the ring.
    }

    fn park(&mut self, timeout: Duration) -> io::Result<()> {
        let timeout = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&timeout);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    fn notifier(&self) -> io::Result<Box<dyn Notify>> {
        Ok(Box::new(NotifyEventFd(Arc::clone(&self.eventfd))))
    }

    fn clients_done(&self) -> bool {
        // A durable write's buffer must outlive its operation: the loop does not end while
        // one is in flight.
        self.connections.is_empty() && self.durable.iter().all(Option::is_none)
    }
}

impl DurableWrites for UringDriver {
    fn write_and_sync(&mut self, write: SyncWrite) -> Result<(), SyncWrite> {
        let Some(slot) = self.durable.iter().position(Option::is_none) else {
            return Err(write);
        };
        let Ok(length) = u32::try_from(write.bytes.len()) else {
            return Err(write);
        };
        let fd = types::Fd(write.file.as_raw_fd());
        let write_entry = opcode::Write::new(fd, write.bytes.as_ptr(), length)
            .offset(write.offset)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(user_data(KIND_WRITE, 0, slot as u32));
        let sync_entry = opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(user_data(KIND_FSYNC, 0, slot as u32));
        // The buffer's heap memory and the file stay alive in `durable` until the FSYNC
        // completes (the WRITE always completes first: the two are linked).
        self.durable[slot] = Some(DurableWrite { write, write_result: None });
        self.push_linked(&[write_entry, sync_entry]);
        Ok(())
    }

    fn take_synced(&mut self) -> Option<Synced> {
        self.synced.pop_front()
    }
}

struct NotifyEventFd(Arc<EventFd>);

impl Notify for NotifyEventFd {
    fn notify(&self) {
        self.0.notify();
    }
}

impl UringDriver {
    fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: every entry built here refers only to memory that outlives the operation:
        // connection send buffers are kept until the send completes, the wake buffer and
        // buffer ring live as long as the ring, and descriptors stay open until no
        // operation refers to them.
        while unsafe { self.ring.submission().push(&entry) }.is_err() {
            // Full submission queue: hand what is queued to the kernel and retry.
            if let Err(error) = self.ring.submit() {
                if error.raw_os_error() != Some(libc::EBUSY) {
                    break;
                }
            }
        }
    }

    fn arm_accept(&mut self, index: usize) {
        let fd = self.listeners[index].socket.as_raw_fd();
        let entry = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(KIND_ACCEPT, 0, index as u32));
        self.push(entry);
    }

    fn arm_wake(&mut self) {
        let entry = opcode::Read::new(
            types::Fd(self.eventfd.0),
            (&mut *self.wake_buffer as *mut u64).cast(),
            8,
        )
        .build()
        .user_data(user_data(KIND_WAKE, 0, 0));
        self.push(entry);
        self.wake_armed = true;
    }

    fn arm_recv(&mut self, slot: u32) {
        let Some(conn) = self.connections.get_slot(slot) else { return };
        if conn.handle.recv_armed || conn.closing.is_some() || conn.read_closed {
            return;
        }
        conn.handle.recv_armed = true;
        conn.handle.recv_paused = false;
        let entry = opcode::RecvMulti::new(types::Fd(conn.handle.fd), BUFFER_GROUP)
            .build()
            .user_data(user_data(KIND_RECV, conn.generation, slot));
        self.push(entry);
    }

    fn cancel_recv(&mut self, slot: u32) {
        let Some(conn) = self.connections.get_slot(slot) else { return };
        if !conn.handle.recv_armed || conn.handle.cancel_sent {
            return;
        }
        conn.handle.cancel_sent = true;
        let target = user_data(KIND_RECV, conn.generation, slot);
        let entry = opcode::AsyncCancel::new(target).build().user_data(user_data(
            KIND_CANCEL,
            conn.generation,
            slot,
        ));
        self.push(entry);
    }

    /// One `io_uring_enter` when there is something to submit or deferred completions to
    /// run; none otherwise.
    fn submit_pending(&mut self) -> io::Result<()> {
        let pending = {
            let mut submission = self.ring.submission();
            submission.sync();
            !submission.is_empty() || submission.taskrun() || submission.cq_overflow()
        };
        if pending {
            match self.ring.submit() {
                Ok(_) => {}
                Err(error) if matches!(error.raw_os_error(), Some(libc::EBUSY | libc::EINTR)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Stop accepting and reading; answer what is in flight.
    fn stop_accepting(&mut self) {
        self.accepting = false;
        for listener in &self.listeners {
            // SAFETY: shutting down a listening socket we own wakes and ends its accept.
            unsafe { libc::shutdown(listener.socket.as_raw_fd(), libc::SHUT_RDWR) };
        }
        for slot in self.connections.open_slots() {
            if let Some(conn) = self.connections.get_slot(slot) {
                conn.read_closed = true;
            }
            self.cancel_recv(slot);
            self.maybe_close(slot);
        }
    }

    /// Handles every completion queued; returns how many.
    fn reap(&mut self) -> usize {
        let mut count = 0;
        let mut recycled = false;
        loop {
            let Some(completion) = self.ring.completion().next() else { break };
            count += 1;
            let (kind, generation, slot) = split_user_data(completion.user_data());
            let result = completion.result();
            let flags = completion.flags();
            match kind {
                KIND_ACCEPT => self.on_accept(slot as usize, result, flags),
                KIND_RECV => recycled |= self.on_recv(slot, generation, result, flags),
                KIND_SEND => self.on_send(slot, generation, result),
                KIND_WAKE => {
                    self.wake_armed = false;
                    self.arm_wake();
                }
                KIND_CANCEL => {}
                KIND_WRITE => self.on_write(slot as usize, result),
                KIND_FSYNC => self.on_fsync(slot as usize, result),
                _ => debug_assert!(false, "unknown completion kind {kind}"),
            }
        }
        if recycled {
            self.buffers.publish();
        }
        count
    }

    fn on_write(&mut self, slot: usize, result: i32) {
        let durable = self.durable[slot].as_mut().expect("a WRITE completes for a write in flight");
        assert!(durable.write_result.is_none(), "one WRITE completion per durable write");
        durable.write_result = Some(result);
    }

    /// The linked FSYNC completed (or was cancelled because the WRITE failed or was short):
    /// the durable write is done, `Ok` only if every byte was written and synced.
    fn on_fsync(&mut self, slot: usize, result: i32) {
        let durable = self.durable[slot].take().expect("an FSYNC completes for a write in flight");
        let length = durable.write.bytes.len();
        let written = durable.write_result.expect("the linked WRITE completes first");
        let outcome = if written < 0 {
            Err(SyncFailure::Write(io::Error::from_raw_os_error(-written)))
        } else if written as usize != length {
            // A short write to a regular file means the device is full (no error code yet).
            Err(SyncFailure::Write(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("short write: {written} of {length} bytes"),
            )))
        } else if result < 0 {
            Err(SyncFailure::Sync(io::Error::from_raw_os_error(-result)))
        } else {
            Ok(())
        };
        let SyncWrite { token, bytes, .. } = durable.write;
        debug_assert!(self.synced.len() < SYNC_WRITES_IN_FLIGHT_MAX);
        self.synced.push_back(Synced { token, bytes, result: outcome });
    }

    /// Pushes entries that must reach the kernel in one submission (a linked chain would
    /// be cut at a submission boundary).
    fn push_linked(&mut self, entries: &[squeue::Entry]) {
        loop {
            let free = {
                let submission = self.ring.submission();
                submission.capacity() - submission.len()
            };
            if free >= entries.len() {
                break;
            }
            if let Err(error) = self.ring.submit() {
                if error.raw_os_error() != Some(libc::EBUSY) {
                    break;
                }
            }
        }
        // SAFETY: every entry refers to memory that outlives its operation (see `push`; a
        // durable write's buffer and file are held in `durable` until its FSYNC completes).
        let pushed = unsafe { self.ring.submission().push_multiple(entries) };
        assert!(pushed.is_ok(), "room for the linked entries was made above");
    }

    fn on_accept(&mut self, index: usize, result: i32, flags: u32) {
        if result >= 0 {
            let fd = result;
            if !self.accepting {
                // SAFETY: closes the descriptor the kernel just gave us.
                unsafe { libc::close(fd) };
            } else {
                set_nodelay(fd);
                let admin = self.listeners[index].admin;
                let source = peer_ip(fd);
                let socket = UringSocket { fd, ..UringSocket::default() };
                match self.connections.open_from(socket, admin, source) {
                    Ok((slot, _generation)) => self.arm_recv(slot),
                    // Refused: every slot is taken. The client sees the connection closed.
                    // SAFETY: closes the descriptor the kernel just gave us.
                    Err(socket) => unsafe {
                        libc::close(socket.fd);
                    },
                }
            }
        }
        if !cqueue::more(flags) && self.accepting {
            self.arm_accept(index);
        }
    }

    /// Returns true when a buffer went back to the ring.
    fn on_recv(&mut self, slot: u32, generation: u32, result: i32, flags: u32) -> bool {
        let mut recycled = false;
        let buffer = cqueue::buffer_select(flags);
        if let (Some(id), true) = (buffer, result > 0) {
            let length = result as usize;
            self.connections.counters.bytes_received += length as u64;
            let bytes = self.buffers.buffer(id, length);
            if let Some(conn) = self.connections.get(slot, generation) {
                if conn.closing.is_none() && !conn.read_closed {
                    conn.inbound.extend_from_slice(bytes);
                }
            }
            self.buffers.push(id);
            recycled = true;
        } else if let Some(id) = buffer {
            self.buffers.push(id);
            recycled = true;
        }
        let more = cqueue::more(flags);
        let inbound_full = self.connections.inbound_full(slot);
        let Some(conn) = self.connections.get(slot, generation) else {
            return recycled;
        };
        if !more {
            conn.handle.recv_armed = false;
            conn.handle.cancel_sent = false;
            if conn.handle.recv_paused {
                // The paused recv has ended (often with ECANCELED, after the input it had
                // filled was already taken): `flush` re-arms it if there is room now. Without
                // this, a connection whose cancel completes last would never read again.
                self.dirty.push(slot);
            }
        }
        match result {
            length if length > 0 => {
                self.connections.mark_ready(slot);
                if inbound_full {
                    // Backpressure: stop reading until the engine has taken the input.
                    if let Some(conn) = self.connections.get_slot(slot) {
                        conn.handle.recv_paused = true;
                    }
                    self.cancel_recv(slot);
                } else if !more {
                    self.arm_recv(slot);
                }
            }
            0 => {
                conn.read_closed = true;
                self.connections.mark_ready(slot);
            }
            error if error == -libc::ENOBUFS => {
                self.connections.counters.recv_no_buffers += 1;
                if !more {
                    self.arm_recv(slot);
                }
            }
            error if error == -libc::ECANCELED => {}
            error => {
                conn.closing = Some(CloseReason::Io(-error));
                conn.close_after_flush = false;
            }
        }
        self.maybe_close(slot);
        recycled
    }

    fn on_send(&mut self, slot: u32, generation: u32, result: i32) {
        if result > 0 {
            self.connections.counters.bytes_sent += result as u64;
        }
        let Some(conn) = self.connections.get(slot, generation) else { return };
        debug_assert!(conn.handle.send_in_flight);
        conn.handle.send_in_flight = false;
        if result < 0 {
            if result != -libc::EAGAIN && result != -libc::EINTR {
                conn.closing = Some(CloseReason::Io(-result));
                conn.close_after_flush = false;
                conn.handle.sending.clear();
            }
        } else {
            conn.handle.sent += result as usize;
            if conn.handle.sent >= conn.handle.sending.len() {
                conn.handle.sending.clear();
                conn.handle.sent = 0;
            }
        }
        self.dirty.push(slot);
        self.connections.resume(slot);
        self.maybe_close(slot);
    }

    /// Sends what each touched connection has to send (one SEND in flight per connection),
    /// re-arms paused reads whose input was taken, and closes finished connections.
    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        self.connections.take_dirty(&mut dirty);
        for slot in dirty.drain(..) {
            let inbound_full = self.connections.inbound_full(slot);
            let Some(conn) = self.connections.get_slot(slot) else { continue };
            if conn.handle.recv_paused && !inbound_full && !conn.handle.recv_armed {
                self.arm_recv(slot);
            }
            let Some(conn) = self.connections.get_slot(slot) else { continue };
            if !conn.handle.send_in_flight && conn.closing.is_none_or(|_| conn.close_after_flush) {
                if conn.handle.sending.is_empty() {
                    std::mem::swap(&mut conn.handle.sending, &mut conn.outbound);
                    conn.handle.sent = 0;
                }
                if conn.handle.sent < conn.handle.sending.len() {
                    let rest = &conn.handle.sending[conn.handle.sent..];
                    let entry = opcode::Send::new(
                        types::Fd(conn.handle.fd),
                        rest.as_ptr(),
                        rest.len() as u32,
                    )
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
                    .user_data(user_data(KIND_SEND, conn.generation, slot));
                    conn.handle.send_in_flight = true;
                    self.push(entry);
                }
            }
            self.maybe_close(slot);
        }
        self.dirty = dirty;
    }

    /// Closes the connection if it is done and no operation refers to it any more.
    fn maybe_close(&mut self, slot: u32) {
        let Some(conn) = self.connections.get_slot(slot) else { return };
        if !(conn.aborted() || (conn.finished() && conn.handle.sending.is_empty())) {
            return;
        }
        if conn.closing.is_none() {
            conn.closing = Some(CloseReason::PeerClosed);
        }
        if conn.handle.recv_armed {
            self.cancel_recv(slot);
            return;
        }
        if conn.handle.send_in_flight {
            return;
        }
        if let Some(conn) = self.connections.release(slot) {
            // SAFETY: no operation refers to the descriptor any more (recv ended, no send).
            unsafe { libc::close(conn.handle.fd) };
        }
    }

    /// Closes every descriptor at the end of the loop. The connections' buffers are freed
    /// only after the ring (dropped first, as the first field), so no operation still in
    /// flight can refer to freed memory.
    fn close_all(&mut self) {
        for slot in self.connections.open_slots() {
            if let Some(conn) = self.connections.get_slot(slot) {
                if conn.handle.fd >= 0 {
                    // SAFETY: closes a descriptor this connection owns, once (then -1).
                    unsafe { libc::close(conn.handle.fd) };
                    conn.handle.fd = -1;
                }
            }
        }
    }
}

impl Drop for UringDriver {
    fn drop(&mut self) {
        // The kernel may still read a durable write's buffer (the loop left early, say on an
        // error): wait for those completions before the buffers are freed.
        while self.durable.iter().any(Option::is_some) {
            if self.ring.submit_and_wait(1).is_err() {
                break;
            }
            self.reap();
        }
        let _ = self.ring.submitter().unregister_buf_ring(BUFFER_GROUP);
    }
}

/// The peer address of an accepted socket (for the per-source connection limit); `None` if
/// the kernel cannot say (the peer already reset it: the first read will tell).
fn peer_ip(fd: RawFd) -> Option<std::net::IpAddr> {
    // SAFETY: `fd` is the descriptor the kernel just gave this shard for an accepted
    // connection; it stays open for the whole borrow (nothing closes it before this returns).
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let address = socket2::SockRef::from(&borrowed).peer_addr().ok()?;
    address.as_socket().map(|address| address.ip())
}

pub(crate) fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a pointer to a live c_int of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}
