//! Taking a shard's snapshots while it runs, and the outbox a snapshot needs.
//!
//! A snapshot is **captured** at the end of a pass (the open entry sealed, the engine
//! serialized into memory: the only pause the shard sees), **written** through the shard's
//! driver like a journal write (write + fdatasync to `snapshot-<seq>.tmp`, never blocking
//! the loop), and **installed** once its entry is stable (renamed to `.rsn`; older
//! snapshots and the segments it covers deleted). Until installed it is never read, so a
//! crash at any step leaves the previous snapshot and the journal after it in charge.
//!
//! The **outbox** keeps, per link, the messages this shard sent that the receiver has not
//! yet recorded in a stable entry (receivers publish that count on the board). A snapshot
//! replaces the journal entries that sent them, so it carries them: recovery redelivers the
//! ones the receiver lost. The outbox is bounded per link; when a link's receiver lags so
//! far that it overflows, the oldest are dropped and no snapshot is taken until the
//! receiver's stable count passes what was dropped.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rush_engine::snapshot::SnapshotWriter;
use rush_engine::Engine;

use super::files::{list_segments, sync_directory};
use super::snapshot::{
    encode_snapshot_file, list_snapshots, snapshot_name, snapshot_temporary_name, OutboxMessage,
    SnapshotEvery, SnapshotParts,
};
use super::writer::JournalWriter;
use crate::storage::{SyncFailure, SyncWrite, Synced};

/// Messages kept per link for a snapshot (about 6 MiB of a lagging link's messages).
pub const OUTBOX_LINK_MAX: usize = 1 << 16;
/// Snapshot writes carry this bit in their token (journal writes carry a sequence, < 2^63).
pub const SNAPSHOT_TOKEN: u64 = 1 << 63;
/// A snapshot is written in pieces of at most this (a single io_uring write takes a u32
/// length).
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 30;

/// The sent messages a snapshot may need, per link.
#[derive(Debug)]
pub struct Outbox {
    links: Vec<VecDeque<OutboxMessage>>,
    /// Per link: the highest link sequence dropped for room (0: none).
    dropped: Vec<u64>,
}

impl Outbox {
    pub fn new(shard_count: u32) -> Outbox {
        Outbox {
            links: (0..shard_count).map(|_| VecDeque::new()).collect(),
            dropped: vec![0; shard_count as usize],
        }
    }

    /// Records a message as sent.
    pub fn push(&mut self, message: OutboxMessage) {
        let to = message.envelope.to as usize;
        let link = &mut self.links[to];
        debug_assert!(link
            .back()
            .is_none_or(|last| last.link_sequence + 1 == message.link_sequence));
        if link.len() == OUTBOX_LINK_MAX {
            let oldest = link.pop_front().expect("a full link is not empty");
            self.dropped[to] = oldest.link_sequence;
        }
        link.push_back(message);
    }

    /// Forgets what receiver `to` has in stable entries (`received_stable` messages).
    pub fn prune(&mut self, to: u32, received_stable: u64) {
        let link = &mut self.links[to as usize];
        while link.front().is_some_and(|message| message.link_sequence <= received_stable) {
            link.pop_front();
        }
    }

    /// True when every message a receiver may still lose is here.
    pub fn complete(&self, received_stable: impl Fn(u32) -> u64) -> bool {
        self.dropped.iter().enumerate().all(|(to, &dropped)| dropped <= received_stable(to as u32))
    }

    pub fn messages(&self) -> impl Iterator<Item = &OutboxMessage> {
        self.links.iter().flatten()
    }

    pub fn len(&self) -> usize {
        self.links.iter().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the snapshots of a shard did (metrics, benchmarks, tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotCounters {
    /// Captured (serialized and submitted).
    pub taken: u64,
    /// Installed (renamed into place; what it covers deleted).
    pub installed: u64,
    pub failures: u64,
    /// The entry of the last one installed.
    pub installed_sequence: u64,
    pub bytes_last: u64,
    /// The capture pause (seal + serialize), last and largest.
    pub pause_ns_last: u64,
    pub pause_ns_max: u64,
    /// The install step (rename, directory sync, deletions), largest.
    pub install_ns_max: u64,
    pub segments_deleted: u64,
}

#[derive(Debug)]
struct Writing {
    sequence: u64,
    path: PathBuf,
    file: Arc<File>,
    /// Pieces not yet submitted, the next one last.
    chunks: Vec<Vec<u8>>,
    offset: u64,
}

/// One shard's snapshot schedule and the snapshot in progress.
#[derive(Debug)]
pub struct Snapshotter {
    shard: u32,
    directory: PathBuf,
    every: SnapshotEvery,
    inputs_at_last: u64,
    bytes_at_last: u64,
    writing: Option<Writing>,
    /// Written and synced, waiting for its entry to be stable: (entry, temporary path).
    written: Option<(u64, PathBuf)>,
    counters: SnapshotCounters,
}

impl Snapshotter {
    pub fn new(shard: u32, directory: PathBuf, every: SnapshotEvery) -> Snapshotter {
        Snapshotter {
            shard,
            directory,
            every,
            inputs_at_last: 0,
            bytes_at_last: 0,
            writing: None,
            written: None,
            counters: SnapshotCounters::default(),
        }
    }

    pub fn counters(&self) -> SnapshotCounters {
        self.counters
    }

    /// True while a snapshot write is in flight in the driver.
    pub fn writing(&self) -> bool {
        self.writing.is_some()
    }

    /// True when a new snapshot is due and none is in progress.
    pub fn due(&self, writer: &JournalWriter) -> bool {
        let counters = writer.counters();
        self.writing.is_none()
            && self.written.is_none()
            && self.every.due(
                counters.inputs - self.inputs_at_last,
                counters.bytes_written - self.bytes_at_last,
            )
    }

    /// Captures the state now: seals the open entry, serializes the engine, and returns the
    /// first write of the file. The caller checked `due`, that the journal has no fault, and
    /// that the outbox is complete.
    pub fn capture(
        &mut self,
        writer: &mut JournalWriter,
        engine: &Engine,
        sent: &[u64],
        received: &[u64],
        outbox: &Outbox,
    ) -> Option<SyncWrite> {
        assert!(self.writing.is_none() && self.written.is_none());
        let started = Instant::now();
        let counters = writer.counters();
        self.inputs_at_last = counters.inputs;
        self.bytes_at_last = counters.bytes_written;
        writer.seal();
        let sequence = writer.open_sequence() - 1;
        let outbox: Vec<OutboxMessage> = outbox.messages().copied().collect();
        for message in &outbox {
            assert!(
                message.link_sequence <= sent[message.envelope.to as usize],
                "shard {}: outbox message {message:?} beyond sent {sent:?}",
                self.shard
            );
        }
        let parts = SnapshotParts {
            shard: self.shard,
            sequence,
            checksum_previous: writer.checksum_previous(),
            now_ms: engine.now_ms(),
            sent,
            received,
            outbox: &outbox,
        };
        let mut bytes = Vec::new();
        encode_snapshot_file(&parts, &mut bytes, |out| {
            let mut engine_writer = SnapshotWriter { bytes: std::mem::take(out) };
            engine.encode_snapshot(&mut engine_writer);
            *out = engine_writer.bytes;
        });
        let pause_ns = started.elapsed().as_nanos() as u64;
        self.counters.pause_ns_last = pause_ns;
        self.counters.pause_ns_max = self.counters.pause_ns_max.max(pause_ns);
        self.counters.bytes_last = bytes.len() as u64;
        let path = self.directory.join(snapshot_temporary_name(sequence));
        let file = match OpenOptions::new().create(true).truncate(true).write(true).open(&path) {
            Ok(file) => Arc::new(file),
            Err(error) => {
                eprintln!("rush: shard {}: cannot create {}: {error}", self.shard, path.display());
                self.counters.failures += 1;
                return None;
            }
        };
        // Pieces from the back, so each byte is copied at most once.
        let mut chunks = Vec::new();
        while bytes.len() > SNAPSHOT_CHUNK_BYTES {
            let at = (bytes.len() - 1) / SNAPSHOT_CHUNK_BYTES * SNAPSHOT_CHUNK_BYTES;
            chunks.push(bytes.split_off(at));
        }
        chunks.push(bytes);
        self.counters.taken += 1;
        self.writing = Some(Writing { sequence, path, file, chunks, offset: 0 });
        self.next_write()
    }

    fn next_write(&mut self) -> Option<SyncWrite> {
        let writing = self.writing.as_mut()?;
        let bytes = writing.chunks.pop()?;
        Some(SyncWrite {
            file: Arc::clone(&writing.file),
            offset: writing.offset,
            bytes,
            token: SNAPSHOT_TOKEN | writing.sequence,
        })
    }

    /// A snapshot write completed; returns the next piece to write, if any.
    pub fn on_synced(&mut self, synced: Synced) -> Option<SyncWrite> {
        let writing = self.writing.as_mut().expect("a snapshot write in flight");
        assert_eq!(synced.token, SNAPSHOT_TOKEN | writing.sequence);
        match synced.result {
            Ok(()) => {
                writing.offset += synced.bytes.len() as u64;
                if writing.chunks.is_empty() {
                    let writing = self.writing.take().expect("checked above");
                    self.written = Some((writing.sequence, writing.path));
                    None
                } else {
                    self.next_write()
                }
            }
            Err(failure) => {
                let writing = self.writing.take().expect("checked above");
                let step = match failure {
                    SyncFailure::Write(_) => "write",
                    SyncFailure::Sync(_) => "fdatasync",
                };
                eprintln!(
                    "rush: shard {}: snapshot of entry {} not written ({step}: {}); the \
                     journal keeps everything, the next snapshot is tried after another period",
                    self.shard,
                    writing.sequence,
                    failure.error()
                );
                let _ = std::fs::remove_file(&writing.path);
                self.counters.failures += 1;
                None
            }
        }
    }

    /// Installs the written snapshot once its entry is `stable`: renames it into place, then
    /// deletes older snapshots and the segments it covers. Blocking file operations, once
    /// per snapshot.
    pub fn install_if_stable(&mut self, stable: u64) {
        let Some((sequence, _)) = self.written else { return };
        if sequence > stable {
            return;
        }
        let (_, temporary) = self.written.take().expect("checked above");
        let started = Instant::now();
        let path = self.directory.join(snapshot_name(sequence));
        let installed = std::fs::rename(&temporary, &path)
            .map_err(|error| format!("{}: {error}", path.display()))
            .and_then(|()| sync_directory(&self.directory).map_err(|error| error.to_string()));
        if let Err(error) = installed {
            eprintln!(
                "rush: shard {}: snapshot of entry {sequence} not installed: {error}",
                self.shard
            );
            let _ = std::fs::remove_file(&temporary);
            self.counters.failures += 1;
            return;
        }
        self.counters.installed += 1;
        self.counters.installed_sequence = sequence;
        match remove_covered(&self.directory, sequence) {
            Ok(segments) => self.counters.segments_deleted += segments,
            // The snapshot is in place; what could not be deleted is deleted at next start.
            Err(error) => eprintln!(
                "rush: shard {}: after the snapshot of entry {sequence}: {error}",
                self.shard
            ),
        }
        let install_ns = started.elapsed().as_nanos() as u64;
        self.counters.install_ns_max = self.counters.install_ns_max.max(install_ns);
    }
}

/// Deletes the snapshots before `sequence` and the segments whose entries all precede
/// `sequence + 1`; returns the segments deleted.
fn remove_covered(directory: &Path, sequence: u64) -> Result<u64, String> {
    let listing =
        list_snapshots(directory).map_err(|error| format!("{}: {error}", directory.display()))?;
    for (older, path) in listing.finished {
        if older < sequence {
            std::fs::remove_file(&path).map_err(|error| format!("{}: {error}", path.display()))?;
        }
    }
    for path in listing.unfinished {
        std::fs::remove_file(&path).map_err(|error| format!("{}: {error}", path.display()))?;
    }
    let segments = list_segments(directory).map_err(|error| error.to_string())?;
    let mut deleted = 0;
    for pair in segments.windows(2) {
        let ((_, path), (next_first, _)) = (&pair[0], &pair[1]);
        if *next_first > sequence + 1 {
            break;
        }
        std::fs::remove_file(path).map_err(|error| format!("{}: {error}", path.display()))?;
        deleted += 1;
    }
    sync_directory(directory).map_err(|error| error.to_string())?;
    Ok(deleted)
}
