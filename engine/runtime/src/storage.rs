//! Durable writes as a kind of I/O submission: a write of a buffer at an offset of a file
//! followed by an `fdatasync`, submitted by a shard loop through its [`crate::Driver`] and
//! completed later, without the loop ever blocking on the disk.
//!
//! The io_uring driver issues them as two linked operations on its own ring (WRITE, then
//! FSYNC with DATASYNC, `IOSQE_IO_LINK`), completed in the same `io_uring_enter` as the
//! network. Drivers without asynchronous file I/O (the epoll fallback, the in-process port
//! runtime) hand them to a [`SyncWriter`]: one helper thread per shard that does
//! `pwrite` + `fdatasync` and rings the shard's doorbell when done. A helper thread rather
//! than a blocking write in the loop: an `fdatasync` takes from tens of microseconds to
//! milliseconds, and a shard blocked on it would stop reading and answering its sockets for
//! that long, where with the helper it keeps serving (and gathering the next group commit).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_queue::ArrayQueue;

use crate::waker::Doorbell;

/// Durable writes one shard may have in flight at once (the journal keeps one).
pub const SYNC_WRITES_IN_FLIGHT_MAX: usize = 4;

/// A write of `bytes` at `offset` of `file`, then an `fdatasync` of the file.
#[derive(Debug)]
pub struct SyncWrite {
    /// The file, kept open by this `Arc` until the write completed.
    pub file: Arc<File>,
    pub offset: u64,
    /// The bytes; they come back in [`Synced::bytes`] for reuse. Their heap memory does not
    /// move while the write is in flight (the kernel may be reading it).
    pub bytes: Vec<u8>,
    /// The submitter's name for this write, echoed in [`Synced::token`].
    pub token: u64,
}

/// A completed [`SyncWrite`]: `Ok` only when every byte was written and the data is on
/// stable storage.
#[derive(Debug)]
pub struct Synced {
    pub token: u64,
    pub bytes: Vec<u8>,
    pub result: Result<(), SyncFailure>,
}

/// Which step of a durable write failed. The difference matters: a failed write left the
/// data unwritten (retrying it is safe), a failed fdatasync may have dropped cached data that
/// a later fdatasync would not report.
#[derive(Debug)]
pub enum SyncFailure {
    Write(io::Error),
    Sync(io::Error),
}

impl SyncFailure {
    pub fn error(&self) -> &io::Error {
        match self {
            SyncFailure::Write(error) | SyncFailure::Sync(error) => error,
        }
    }
}

impl std::fmt::Display for SyncFailure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncFailure::Write(error) => write!(formatter, "write failed: {error}"),
            SyncFailure::Sync(error) => write!(formatter, "fdatasync failed: {error}"),
        }
    }
}

/// Whoever performs a shard's durable writes: every [`crate::Driver`], and the synchronous
/// [`InlineWrites`] used before the shard threads start.
pub trait DurableWrites {
    /// Queues a durable write; its completion comes back from `take_synced` later. At most
    /// [`SYNC_WRITES_IN_FLIGHT_MAX`] in flight; beyond it the write is given back.
    fn write_and_sync(&mut self, write: SyncWrite) -> Result<(), SyncWrite>;

    /// The next completed durable write, if any.
    fn take_synced(&mut self) -> Option<Synced>;
}

/// Durable writes done at once in the calling thread (pre-warm and recovery, before the
/// shards run; shutdown's last pass).
#[derive(Debug, Default)]
pub struct InlineWrites {
    done: std::collections::VecDeque<Synced>,
}

impl DurableWrites for InlineWrites {
    fn write_and_sync(&mut self, write: SyncWrite) -> Result<(), SyncWrite> {
        let result = write_and_sync(&write);
        self.done.push_back(Synced { token: write.token, bytes: write.bytes, result });
        Ok(())
    }

    fn take_synced(&mut self) -> Option<Synced> {
        self.done.pop_front()
    }
}

/// Performs one durable write synchronously: what [`SyncWriter`]'s thread does, and what a
/// test or a recovery tool may call directly.
pub fn write_and_sync(write: &SyncWrite) -> Result<(), SyncFailure> {
    write.file.write_all_at(&write.bytes, write.offset).map_err(SyncFailure::Write)?;
    write.file.sync_data().map_err(SyncFailure::Sync)
}

/// One helper thread that performs a shard's durable writes in submission order.
#[derive(Debug)]
pub struct SyncWriter {
    shared: Arc<WriterShared>,
    thread: Option<JoinHandle<()>>,
    /// Writes submitted whose completion was not taken yet: at most
    /// [`SYNC_WRITES_IN_FLIGHT_MAX`], which is also each queue's capacity, so the helper
    /// always has room for a completion.
    in_flight: usize,
}

#[derive(Debug)]
struct WriterShared {
    requests: ArrayQueue<SyncWrite>,
    completions: ArrayQueue<Synced>,
    stop: AtomicBool,
    /// Rung when a write completes, so a sleeping shard wakes for it.
    shard_doorbell: Arc<Doorbell>,
}

impl SyncWriter {
    /// Starts the helper thread of the shard whose doorbell is `shard_doorbell`.
    pub fn start(name: String, shard_doorbell: Arc<Doorbell>) -> io::Result<SyncWriter> {
        let shared = Arc::new(WriterShared {
            requests: ArrayQueue::new(SYNC_WRITES_IN_FLIGHT_MAX),
            completions: ArrayQueue::new(SYNC_WRITES_IN_FLIGHT_MAX),
            stop: AtomicBool::new(false),
            shard_doorbell,
        });
        let thread_shared = Arc::clone(&shared);
        let thread =
            std::thread::Builder::new().name(name).spawn(move || writer_loop(&thread_shared))?;
        Ok(SyncWriter { shared, thread: Some(thread), in_flight: 0 })
    }

    /// Queues a write. The caller keeps at most [`SYNC_WRITES_IN_FLIGHT_MAX`] in flight
    /// (writes submitted, completions not yet taken); beyond it the write is given back.
    pub fn submit(&mut self, write: SyncWrite) -> Result<(), SyncWrite> {
        if self.in_flight == SYNC_WRITES_IN_FLIGHT_MAX {
            return Err(write);
        }
        self.shared.requests.push(write)?;
        self.in_flight += 1;
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
        Ok(())
    }

    /// The next completed write, if any.
    pub fn take_synced(&mut self) -> Option<Synced> {
        let synced = self.shared.completions.pop()?;
        assert!(self.in_flight > 0);
        self.in_flight -= 1;
        Some(synced)
    }

    /// True when a completion waits (the shard's sleep handshake checks it).
    pub fn has_completion(&self) -> bool {
        !self.shared.completions.is_empty()
    }
}

/// A shard's [`SyncWriter`], started by its first durable write (a shard without a journal
/// never starts the thread): the durable writes of every driver that has no io_uring to
/// submit them to (the port runtime, the epoll backend).
#[derive(Debug)]
pub struct LazySyncWriter {
    shard: u32,
    shard_doorbell: Arc<Doorbell>,
    writer: Option<SyncWriter>,
}

impl LazySyncWriter {
    pub fn new(shard: u32, shard_doorbell: Arc<Doorbell>) -> LazySyncWriter {
        LazySyncWriter { shard, shard_doorbell, writer: None }
    }

    /// True when a completion waits (the shard's sleep handshake checks it).
    pub fn has_completion(&self) -> bool {
        self.writer.as_ref().is_some_and(SyncWriter::has_completion)
    }
}

impl DurableWrites for LazySyncWriter {
    fn write_and_sync(&mut self, write: SyncWrite) -> Result<(), SyncWrite> {
        if self.writer.is_none() {
            let name = format!("rush-sync-{}", self.shard);
            match SyncWriter::start(name, Arc::clone(&self.shard_doorbell)) {
                Ok(writer) => self.writer = Some(writer),
                // No thread, no write: the journal treats it as a failed write (retried).
                Err(_) => return Err(write),
            }
        }
        self.writer.as_mut().expect("started above").submit(write)
    }

    fn take_synced(&mut self) -> Option<Synced> {
        self.writer.as_mut()?.take_synced()
    }
}

impl Drop for SyncWriter {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

fn writer_loop(shared: &WriterShared) {
    loop {
        match shared.requests.pop() {
            Some(write) => {
                let result = write_and_sync(&write);
                let synced = Synced { token: write.token, bytes: write.bytes, result };
                // Room is guaranteed: completions + requests in flight stay within the bound
                // the submitter keeps, and both queues have that capacity.
                let pushed = shared.completions.push(synced);
                assert!(pushed.is_ok(), "more sync writes in flight than the bound");
                shared.shard_doorbell.wake();
            }
            None if shared.stop.load(Ordering::Acquire) => return,
            // `unpark` before `park` returns at once, so a write queued between the empty
            // pop and the park is not missed; the timeout is a second line of defence.
            None => std::thread::park_timeout(std::time::Duration::from_millis(100)),
        }
    }
}
