//! Traffic capture: every frame a server receives, with its connection and receive time, in
//! a file that `rush replay` plays back (docs/CAPTURE.md describes the format byte by byte).
//!
//! File layout (little-endian):
//! - a 64-byte [`FileHeader`]: magic `RUSHCAP1`, version 1, record size 96, the capture's
//!   start (unix ns), and how many records were dropped (written when the capture closes);
//! - 96-byte [`Record`]s in the order the writer received them: connection OPEN, FRAME
//!   (the frame's bytes, up to 64), CLOSE. Records of one connection are in receive order;
//!   records of different shards interleave by the time each reached the writer, so a
//!   reader sorts by `recv_ns` when it needs one timeline.
//!
//! Hot-path cost: a shard fills a 96-byte record and pushes it onto a bounded lock-free
//! queue (crossbeam `ArrayQueue`, the MPMC hand-off every shard shares); a writer thread
//! drains it to a buffered file. When the queue is full the record is dropped and counted —
//! capture never slows the engine or blocks a shard — and the count is in the header.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytemuck::{Pod, Zeroable};
use crossbeam_queue::ArrayQueue;

use crate::protocol::wire::{U16Le, U32Le, U64Le};

pub const MAGIC: [u8; 8] = *b"RUSHCAP1";
pub const VERSION: u32 = 1;
pub const HEADER_SIZE: usize = 64;
pub const RECORD_SIZE: usize = 96;
/// Records the queue between the shards and the writer holds.
pub const QUEUE_RECORDS_MAX: usize = 1 << 16;

/// The record kinds.
pub const KIND_OPEN: u8 = 1;
pub const KIND_FRAME: u8 = 2;
pub const KIND_CLOSE: u8 = 3;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct FileHeader {
    /// @0: `RUSHCAP1`.
    pub magic: [u8; 8],
    /// @8: 1.
    pub version: U32Le,
    /// @12: 96.
    pub record_size: U32Le,
    /// @16: when the capture started, unix ns (records carry ns since then).
    pub started_unix_ns: U64Le,
    /// @24: records dropped because the writer fell behind (0 in a complete capture).
    pub dropped: U64Le,
    /// @32..64: reserved, zero.
    pub reserved: [u8; 32],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Record {
    /// @0: receive time, ns since the capture started.
    pub recv_ns: U64Le,
    /// @8: the connection: unique within the capture (`shard << 48 | sequence`).
    pub connection: U64Le,
    /// @16: [`KIND_OPEN`], [`KIND_FRAME`] or [`KIND_CLOSE`].
    pub kind: u8,
    /// @17: 1 when the connection came in on the admin listener.
    pub admin: u8,
    /// @18: the shard that served the connection.
    pub shard: U16Le,
    /// @20: bytes of `frame` in use (64 for a whole request frame; fewer for the bytes that
    /// made a connection fail framing).
    pub length: U16Le,
    /// @22..32: reserved, zero.
    pub reserved: [u8; 10],
    /// @32..96: the frame.
    pub frame: [u8; 64],
}

const _: () = assert!(std::mem::size_of::<FileHeader>() == HEADER_SIZE);

impl FileHeader {
    /// The header of a capture that started at `started_unix_ns`, nothing dropped (yet).
    pub fn new(started_unix_ns: u64) -> FileHeader {
        FileHeader {
            magic: MAGIC,
            version: U32Le::new(VERSION),
            record_size: U32Le::new(RECORD_SIZE as u32),
            started_unix_ns: U64Le::new(started_unix_ns),
            dropped: U64Le::new(0),
            reserved: [0; 32],
        }
    }
}
const _: () = assert!(std::mem::size_of::<Record>() == RECORD_SIZE);

impl Record {
    pub fn new(
        recv_ns: u64,
        connection: u64,
        kind: u8,
        admin: bool,
        shard: u32,
        bytes: &[u8],
    ) -> Record {
        let length = bytes.len().min(64);
        let mut frame = [0_u8; 64];
        frame[..length].copy_from_slice(&bytes[..length]);
        Record {
            recv_ns: U64Le::new(recv_ns),
            connection: U64Le::new(connection),
            kind,
            admin: u8::from(admin),
            shard: U16Le::new(shard as u16),
            length: U16Le::new(length as u16),
            reserved: [0; 10],
            frame,
        }
    }

    /// The frame bytes in use.
    pub fn bytes(&self) -> &[u8] {
        &self.frame[..usize::from(self.length.get()).min(64)]
    }
}

/// What shards push records into. Cheap to clone (an `Arc`).
#[derive(Debug, Clone)]
pub struct CaptureSink {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queue: ArrayQueue<Record>,
    started: Instant,
    dropped: AtomicU64,
    stop: AtomicBool,
}

impl CaptureSink {
    /// Nanoseconds since the capture started.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.shared.started.elapsed().as_nanos() as u64
    }

    /// Hands a record to the writer; never blocks (a full queue drops and counts it).
    #[inline]
    pub fn push(&self, record: Record) {
        if self.shared.queue.push(record).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The capture file being written: the sink for the shards and the writer thread.
#[derive(Debug)]
pub struct CaptureWriter {
    sink: CaptureSink,
    thread: Option<JoinHandle<io::Result<u64>>>,
}

impl CaptureWriter {
    /// Creates `path` (truncating it) and starts the writer thread.
    pub fn create(path: &Path) -> io::Result<CaptureWriter> {
        let mut file = File::create(path)?;
        let started_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        let header = FileHeader::new(started_unix_ns);
        file.write_all(bytemuck::bytes_of(&header))?;
        let shared = Arc::new(Shared {
            queue: ArrayQueue::new(QUEUE_RECORDS_MAX),
            started: Instant::now(),
            dropped: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let sink = CaptureSink { shared: Arc::clone(&shared) };
        let thread = std::thread::Builder::new()
            .name("rush-capture".into())
            .spawn(move || write_loop(file, header, &shared))?;
        Ok(CaptureWriter { sink, thread: Some(thread) })
    }

    pub fn sink(&self) -> CaptureSink {
        self.sink.clone()
    }

    /// Drains the queue, writes the dropped count into the header, and closes the file.
    /// Returns the number of records written.
    pub fn finish(mut self) -> io::Result<u64> {
        self.sink.shared.stop.store(true, Ordering::Release);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the capture writer panicked")),
            None => Ok(0),
        }
    }

    /// Records dropped so far.
    pub fn dropped(&self) -> u64 {
        self.sink.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for CaptureWriter {
    fn drop(&mut self) {
        self.sink.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_loop(file: File, mut header: FileHeader, shared: &Shared) -> io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut written = 0_u64;
    loop {
        let mut moved = 0;
        while let Some(record) = shared.queue.pop() {
            out.write_all(bytemuck::bytes_of(&record))?;
            moved += 1;
        }
        written += moved;
        if moved == 0 {
            if shared.stop.load(Ordering::Acquire) && shared.queue.is_empty() {
                break;
            }
            out.flush()?;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mut file = out.into_inner().map_err(|error| error.into_error())?;
    header.dropped = U64Le::new(shared.dropped.load(Ordering::Relaxed));
    file.seek(SeekFrom::Start(0))?;
    file.write_all(bytemuck::bytes_of(&header))?;
    file.sync_all()?;
    Ok(written)
}

/// Why a capture file cannot be read.
#[derive(Debug)]
pub enum CaptureError {
    Io(io::Error),
    NotACapture,
    Version(u32),
    RecordSize(u32),
    /// The file ends inside a record (a capture cut short): `records` whole ones came first.
    Truncated {
        records: u64,
    },
    /// A record with an unknown kind or non-zero reserved bytes, at this index.
    BadRecord {
        index: u64,
    },
}

impl std::fmt::Display for CaptureError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaptureError::Io(error) => write!(formatter, "{error}"),
            CaptureError::NotACapture => {
                formatter.write_str("not a Rush capture (magic is not RUSHCAP1)")
            }
            CaptureError::Version(version) => {
                write!(formatter, "capture version {version} is not supported (1 is)")
            }
            CaptureError::RecordSize(size) => write!(formatter, "record size {size} (expected 96)"),
            CaptureError::Truncated { records } => {
                write!(
                    formatter,
                    "the file ends inside record {records} (the capture was cut short)"
                )
            }
            CaptureError::BadRecord { index } => write!(formatter, "record {index} is malformed"),
        }
    }
}

impl std::error::Error for CaptureError {}

/// A whole capture in memory.
#[derive(Debug, Clone)]
pub struct Capture {
    pub header: FileHeader,
    pub records: Vec<Record>,
}

/// Reads and validates a capture file.
pub fn read_capture(path: &Path) -> Result<Capture, CaptureError> {
    let mut bytes = Vec::new();
    File::open(path).and_then(|mut file| file.read_to_end(&mut bytes)).map_err(CaptureError::Io)?;
    parse_capture(&bytes)
}

/// Validates and parses capture bytes.
pub fn parse_capture(bytes: &[u8]) -> Result<Capture, CaptureError> {
    let header: FileHeader = bytes
        .get(..HEADER_SIZE)
        .map(bytemuck::pod_read_unaligned)
        .ok_or(CaptureError::NotACapture)?;
    if header.magic != MAGIC {
        return Err(CaptureError::NotACapture);
    }
    if header.version.get() != VERSION {
        return Err(CaptureError::Version(header.version.get()));
    }
    if header.record_size.get() != RECORD_SIZE as u32 {
        return Err(CaptureError::RecordSize(header.record_size.get()));
    }
    let body = &bytes[HEADER_SIZE..];
    if !body.len().is_multiple_of(RECORD_SIZE) {
        return Err(CaptureError::Truncated { records: (body.len() / RECORD_SIZE) as u64 });
    }
    let mut records = Vec::with_capacity(body.len() / RECORD_SIZE);
    for (index, chunk) in body.chunks_exact(RECORD_SIZE).enumerate() {
        let record: Record = bytemuck::pod_read_unaligned(chunk);
        let valid_kind = matches!(record.kind, KIND_OPEN | KIND_FRAME | KIND_CLOSE);
        if !valid_kind || record.reserved != [0; 10] || record.length.get() > 64 || record.admin > 1
        {
            return Err(CaptureError::BadRecord { index: index as u64 });
        }
        records.push(record);
    }
    Ok(Capture { header, records })
}

/// Writes a complete capture (for converters: pcap → capture).
pub fn write_capture(path: &Path, started_unix_ns: u64, records: &[Record]) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    let header = FileHeader::new(started_unix_ns);
    out.write_all(bytemuck::bytes_of(&header))?;
    for record in records {
        out.write_all(bytemuck::bytes_of(record))?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_round_trips_and_bad_files_are_refused() {
        let directory = std::env::temp_dir().join(format!("rush-capture-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("a.rushcap");
        let writer = CaptureWriter::create(&path).unwrap();
        let sink = writer.sink();
        sink.push(Record::new(1, 7, KIND_OPEN, true, 1, &[]));
        sink.push(Record::new(2, 7, KIND_FRAME, true, 1, &[0x52; 64]));
        sink.push(Record::new(3, 7, KIND_CLOSE, true, 1, &[]));
        assert_eq!(writer.finish().unwrap(), 3);
        let capture = read_capture(&path).unwrap();
        assert_eq!(capture.records.len(), 3);
        assert_eq!(capture.records[1].bytes(), &[0x52; 64]);
        assert_eq!(capture.header.dropped.get(), 0);

        let bytes = std::fs::read(&path).unwrap();
        assert!(matches!(
            parse_capture(&bytes[..HEADER_SIZE + 50]),
            Err(CaptureError::Truncated { records: 0 })
        ));
        let mut wrong = bytes.clone();
        wrong[0] = b'X';
        assert!(matches!(parse_capture(&wrong), Err(CaptureError::NotACapture)));
        let mut bad_kind = bytes.clone();
        bad_kind[HEADER_SIZE + 16] = 9;
        assert!(matches!(parse_capture(&bad_kind), Err(CaptureError::BadRecord { index: 0 })));
        assert!(matches!(parse_capture(&bytes[..10]), Err(CaptureError::NotACapture)));
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
