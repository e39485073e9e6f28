//! `JournalWriter`: one shard's journal as a state machine, with no I/O of its own.
//!
//! The shard appends inputs to the open entry as it applies them; at the end of a pass the
//! entry is sealed (sequence number, chain, checksums) into the pending bytes; the writer
//! then hands out **one write at a time** (`take_write`), which the shard loop submits as a
//! durable write (pwrite + fdatasync) through its driver, and learns the outcome through
//! `on_written`. While a write is in flight, the following passes' entries accumulate, so
//! each write covers everything sealed since the previous one: group commit.
//!
//! Modes: `Sync` hands out a write as soon as there is something pending; `Interval(ms)`
//! waits until `ms` have passed since the last write started (or until `PENDING_FLUSH_BYTES`
//! accumulate), so at most the last `ms` of work is lost in a crash.

use std::io;

use super::codec::{encode_input, Input};
use super::format::{encode_entry, ENTRY_BODY_MAX};

/// How a server makes its work durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// No journal: everything is in memory only.
    None,
    /// A reply leaves only when every journal entry it depends on is on stable storage.
    Sync,
    /// Replies leave at once; the journal is written and synced every `ms` milliseconds.
    Interval { ms: u64 },
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(text: &str) -> Result<Durability, String> {
        match text {
            "none" => Ok(Durability::None),
            "sync" => Ok(Durability::Sync),
            _ => {
                let Some(ms) = text.strip_prefix("interval:") else {
                    return Err(format!(
                        "{text:?} is not a durability mode (sync, interval:MS or none)"
                    ));
                };
                match ms.parse::<u64>() {
                    Ok(ms) if (1..=INTERVAL_MS_MAX).contains(&ms) => {
                        Ok(Durability::Interval { ms })
                    }
                    _ => Err(format!("interval:{ms}: MS must be 1..={INTERVAL_MS_MAX}")),
                }
            }
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Durability::None => write!(formatter, "none"),
            Durability::Sync => write!(formatter, "sync"),
            Durability::Interval { ms } => write!(formatter, "interval:{ms}"),
        }
    }
}

/// The longest `interval:MS`.
pub const INTERVAL_MS_MAX: u64 = 60_000;
/// In interval mode, a write starts early once this many bytes are pending: bounds the
/// memory a shard holds for its journal, whatever the interval.
pub const PENDING_FLUSH_BYTES: usize = 4 << 20;
/// A segment file is closed and a new one started before it grows past this (a write never
/// spans two segments, so a segment may exceed it by one write).
pub const SEGMENT_BYTES_MAX: u64 = 64 << 20;
/// After a failed write (disk full: the data did not land), the same bytes are written again
/// this often.
pub const WRITE_RETRY_MS: u64 = 1_000;

/// Where a write goes: the segment (named by the sequence of its first entry) and the
/// offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentPosition {
    pub first_sequence: u64,
    pub offset: u64,
}

/// A write the writer wants done: `bytes` at `position`, then an fdatasync.
#[derive(Debug)]
pub struct JournalWrite {
    pub position: SegmentPosition,
    pub bytes: Vec<u8>,
    /// The last entry the write contains: durable once it completes.
    pub last_sequence: u64,
}

/// Why the journal stopped taking writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalFault {
    /// A write failed (disk full, I/O error): the data did not land; it is retried every
    /// `WRITE_RETRY_MS`, and the journal works again once a retry succeeds.
    Write(io::ErrorKind),
    /// An fdatasync failed: what the kernel had cached may be gone, and a later fdatasync
    /// could report success for data it dropped. The journal stays stopped until a restart
    /// recovers from what is on disk.
    Sync(io::ErrorKind),
}

/// Where one shard's journal stands.
#[derive(Debug)]
pub struct JournalWriter {
    shard: u32,
    durability: Durability,
    /// The sequence the open entry will get.
    open_sequence: u64,
    open_now_ms: u64,
    open_body: Vec<u8>,
    /// `checksum_header` of the last sealed entry (the next entry's `checksum_previous`).
    checksum_previous: u64,
    /// Sealed entries not handed to a write yet, and the sequence of the last one.
    pending: Vec<u8>,
    pending_first_sequence: u64,
    pending_last_sequence: u64,
    /// The write in flight: its last sequence, its position and size.
    in_flight: Option<(u64, SegmentPosition, usize)>,
    /// A write that failed and waits to be retried (its bytes come back from the driver).
    retry: Option<JournalWrite>,
    retry_at_ms: u64,
    /// Where the next write goes.
    next_position: SegmentPosition,
    /// A new segment starts before the current one would pass this.
    segment_bytes_max: u64,
    durable_sequence: u64,
    last_write_ms: u64,
    fault: Option<JournalFault>,
    /// Write what is pending now, without waiting for the interval (pre-warm, a stopping
    /// shard): cleared by the write it causes.
    flush_requested: bool,
    /// Buffers handed back by completed writes, reused for the next pending batch.
    spare: Vec<Vec<u8>>,
    counters: JournalCounters,
}

/// What a journal did (for metrics and the benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalCounters {
    pub entries: u64,
    pub inputs: u64,
    pub writes: u64,
    pub bytes_written: u64,
    pub write_failures: u64,
}

impl JournalWriter {
    /// A writer whose next entry is `next_sequence`, chained to `checksum_previous`, writing
    /// at `position`.
    pub fn new(
        shard: u32,
        durability: Durability,
        next_sequence: u64,
        checksum_previous: u64,
        position: SegmentPosition,
    ) -> JournalWriter {
        assert!(durability != Durability::None, "no journal, no writer");
        assert!(next_sequence >= 1);
        JournalWriter {
            shard,
            durability,
            open_sequence: next_sequence,
            open_now_ms: 0,
            open_body: Vec::with_capacity(64 * 1024),
            checksum_previous,
            pending: Vec::with_capacity(256 * 1024),
            pending_first_sequence: 0,
            pending_last_sequence: 0,
            in_flight: None,
            retry: None,
            retry_at_ms: 0,
            next_position: position,
            segment_bytes_max: SEGMENT_BYTES_MAX,
            durable_sequence: next_sequence - 1,
            last_write_ms: 0,
            fault: None,
            flush_requested: false,
            spare: Vec::new(),
            counters: JournalCounters::default(),
        }
    }

    /// Starts a new segment file before the current one passes `bytes` (tests use small
    /// segments; the default is `SEGMENT_BYTES_MAX`).
    pub fn with_segment_bytes_max(mut self, bytes: u64) -> JournalWriter {
        assert!(bytes >= 1024, "a segment holds at least 1 KiB");
        self.segment_bytes_max = bytes;
        self
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The sequence of the entry the next input goes into.
    pub fn open_sequence(&self) -> u64 {
        self.open_sequence
    }

    /// The last entry that holds an input applied so far: what a reply given now depends on.
    pub fn applied_sequence(&self) -> u64 {
        if self.open_body.is_empty() {
            self.open_sequence - 1
        } else {
            self.open_sequence
        }
    }

    /// `checksum_header` of the last sealed entry (what the next one chains to).
    pub fn checksum_previous(&self) -> u64 {
        self.checksum_previous
    }

    /// Every entry up to this one is on stable storage.
    pub fn durable_sequence(&self) -> u64 {
        self.durable_sequence
    }

    pub fn fault(&self) -> Option<JournalFault> {
        self.fault
    }

    pub fn counters(&self) -> JournalCounters {
        self.counters
    }

    /// Appends an input applied at `now_ms` to the open entry (sealing it first if it was
    /// opened at another clock reading or is full).
    pub fn append(&mut self, now_ms: u64, input: &Input) {
        let full = self.open_body.len() + 256 > ENTRY_BODY_MAX;
        if !self.open_body.is_empty() && (now_ms != self.open_now_ms || full) {
            self.seal();
        }
        if self.open_body.is_empty() {
            self.open_now_ms = now_ms;
        }
        encode_input(input, &mut self.open_body);
        self.counters.inputs += 1;
    }

    /// Closes the open entry, if it has inputs, into the pending bytes.
    pub fn seal(&mut self) {
        if self.open_body.is_empty() {
            return;
        }
        if self.pending.is_empty() {
            self.pending_first_sequence = self.open_sequence;
        }
        let header = encode_entry(
            self.shard,
            self.open_sequence,
            self.open_now_ms,
            self.checksum_previous,
            &self.open_body,
            &mut self.pending,
        );
        self.checksum_previous = header.checksum_header;
        self.pending_last_sequence = self.open_sequence;
        self.open_sequence += 1;
        self.open_body.clear();
        self.counters.entries += 1;
    }

    /// The next write to submit, if one is due at `now_ms` and none is in flight.
    pub fn take_write(&mut self, now_ms: u64) -> Option<JournalWrite> {
        if self.in_flight.is_some() || matches!(self.fault, Some(JournalFault::Sync(_))) {
            return None;
        }
        if let Some(retry) = self.retry.take() {
            if now_ms < self.retry_at_ms {
                self.retry = Some(retry);
                return None;
            }
            self.in_flight = Some((retry.last_sequence, retry.position, retry.bytes.len()));
            self.counters.writes += 1;
            return Some(retry);
        }
        if self.pending.is_empty() {
            return None;
        }
        if let Durability::Interval { ms } = self.durability {
            let due = now_ms >= self.last_write_ms + ms
                || self.pending.len() >= PENDING_FLUSH_BYTES
                || self.flush_requested;
            if !due {
                return None;
            }
        }
        if self.next_position.offset > 0
            && self.next_position.offset + self.pending.len() as u64 > self.segment_bytes_max
        {
            self.next_position =
                SegmentPosition { first_sequence: self.pending_first_sequence, offset: 0 };
        }
        let position = self.next_position;
        let replacement = self.spare.pop().unwrap_or_default();
        let bytes = std::mem::replace(&mut self.pending, replacement);
        self.next_position.offset += bytes.len() as u64;
        self.flush_requested = false;
        self.in_flight = Some((self.pending_last_sequence, position, bytes.len()));
        self.last_write_ms = now_ms;
        self.counters.writes += 1;
        Some(JournalWrite { position, bytes, last_sequence: self.pending_last_sequence })
    }

    /// The write in flight completed: `Ok` when its bytes are on stable storage. The bytes
    /// come back for reuse (or for the retry of a failed write).
    pub fn on_written(&mut self, write: JournalWrite, result: Result<(), JournalFault>) {
        let (last_sequence, position, length) =
            self.in_flight.take().expect("a completion for the write in flight");
        assert_eq!(
            (write.last_sequence, write.position, write.bytes.len()),
            (last_sequence, position, length)
        );
        match result {
            Ok(()) => {
                assert!(last_sequence > self.durable_sequence, "durability only moves forward");
                self.durable_sequence = last_sequence;
                self.counters.bytes_written += length as u64;
                if matches!(self.fault, Some(JournalFault::Write(_))) {
                    self.fault = None;
                }
                let mut bytes = write.bytes;
                bytes.clear();
                if self.spare.len() < 2 {
                    self.spare.push(bytes);
                }
            }
            Err(fault) => {
                self.counters.write_failures += 1;
                self.fault = Some(fault);
                if let JournalFault::Write(_) = fault {
                    // The same bytes at the same place: a positioned write is idempotent.
                    self.retry_at_ms = self.last_write_ms + WRITE_RETRY_MS;
                    self.retry = Some(write);
                }
            }
        }
    }

    /// The next write goes out as soon as something is pending, whatever the interval (a
    /// stopping shard, which asks again every pass; the pre-warm).
    pub fn request_flush(&mut self) {
        self.flush_requested = true;
    }

    /// True while a write is in flight (the shard must not stop before it completes).
    pub fn write_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// True when everything applied so far is durable.
    pub fn idle(&self) -> bool {
        self.open_body.is_empty()
            && self.pending.is_empty()
            && self.in_flight.is_none()
            && self.retry.is_none()
    }

    /// When the next interval write falls due (interval mode with pending bytes).
    pub fn next_write_ms(&self) -> Option<u64> {
        match self.durability {
            Durability::Interval { ms }
                if !self.pending.is_empty() || !self.open_body.is_empty() =>
            {
                Some(self.last_write_ms + ms)
            }
            _ if self.retry.is_some() => Some(self.retry_at_ms),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::format::decode_entry;

    fn writer(durability: Durability) -> JournalWriter {
        JournalWriter::new(0, durability, 1, 0, SegmentPosition { first_sequence: 1, offset: 0 })
    }

    #[test]
    fn sync_mode_groups_what_accumulates_while_a_write_is_in_flight() {
        let mut journal = writer(Durability::Sync);
        journal.append(10, &Input::Tick);
        journal.seal();
        let first = journal.take_write(10).expect("sync writes at once");
        assert_eq!(first.last_sequence, 1);
        assert!(journal.take_write(10).is_none(), "one write in flight");
        for now in [11, 12, 13] {
            journal.append(now, &Input::Tick);
            journal.seal();
        }
        assert_eq!(journal.applied_sequence(), 4);
        journal.on_written(first, Ok(()));
        assert_eq!(journal.durable_sequence(), 1);
        let second = journal.take_write(13).unwrap();
        assert_eq!((second.last_sequence, second.position.offset), (4, 96));
        let mut offset = 0;
        let mut sequences = Vec::new();
        while offset < second.bytes.len() {
            let (header, _, size) = decode_entry(&second.bytes[offset..]).unwrap();
            sequences.push(header.sequence);
            offset += size;
        }
        assert_eq!(sequences, vec![2, 3, 4], "three entries, one write");
        journal.on_written(second, Ok(()));
        assert_eq!(journal.durable_sequence(), 4);
        assert!(journal.idle());
    }

    #[test]
    fn interval_mode_waits_for_the_interval() {
        let mut journal = writer(Durability::Interval { ms: 100 });
        journal.append(0, &Input::Tick);
        journal.seal();
        let write = journal.take_write(100).expect("due at the first interval");
        journal.on_written(write, Ok(()));
        journal.append(150, &Input::Tick);
        journal.seal();
        assert!(journal.take_write(150).is_none(), "not yet");
        assert_eq!(journal.next_write_ms(), Some(200));
        assert!(journal.take_write(200).is_some());
    }

    #[test]
    fn a_failed_write_is_retried_and_a_failed_sync_stops_the_journal() {
        let mut journal = writer(Durability::Sync);
        journal.append(0, &Input::Tick);
        journal.seal();
        let write = journal.take_write(0).unwrap();
        journal.on_written(write, Err(JournalFault::Write(io::ErrorKind::StorageFull)));
        assert_eq!(journal.fault(), Some(JournalFault::Write(io::ErrorKind::StorageFull)));
        assert!(journal.take_write(500).is_none(), "retried after WRITE_RETRY_MS");
        let retry = journal.take_write(WRITE_RETRY_MS).expect("the same bytes again");
        assert_eq!(retry.position.offset, 0);
        journal.on_written(retry, Ok(()));
        assert_eq!((journal.fault(), journal.durable_sequence()), (None, 1));
        journal.append(1, &Input::Tick);
        journal.seal();
        let write = journal.take_write(1).unwrap();
        journal.on_written(write, Err(JournalFault::Sync(io::ErrorKind::Other)));
        journal.append(2, &Input::Tick);
        journal.seal();
        assert!(journal.take_write(10_000).is_none(), "stopped until a restart");
    }
}
