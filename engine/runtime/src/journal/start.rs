//! Starting a durable server: open and lock the data directory, recover every shard from
//! its journal, cut the files back to what recovery kept, install the journals in the shard
//! cores, queue the messages to redeliver, and journal the start itself (the generation
//! jump). Runs in the starting thread before any shard thread or listener exists.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::files::{sync_directory, DataDir, DataDirError, SegmentFiles};
use super::recovery::{recover, RecoveryError, SnapshotStart};
use super::scan::SegmentBytes;
use super::snapshot::{
    decode_snapshot_file, list_snapshots, SnapshotEvery, SnapshotFileError, SNAPSHOT_EVERY_DEFAULT,
};
use super::writer::{Durability, JournalWriter, SegmentPosition, SEGMENT_BYTES_MAX};
use super::GENERATION_JUMP;
use crate::shard::{JournalStart, ShardCore};

/// Why a durable start failed.
#[derive(Debug)]
pub enum StartError {
    DataDir(DataDirError),
    /// The latest snapshot of a shard does not verify.
    Snapshot(SnapshotFileError),
    Recovery(RecoveryError),
    /// A shard's reservation id space is spent (see `GENERATION_JUMP`).
    IdSpaceSpent {
        shard: u32,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::DataDir(error) => write!(formatter, "{error}"),
            StartError::Snapshot(error) => write!(formatter, "recovery failed: {error}"),
            StartError::Recovery(error) => write!(formatter, "recovery failed: {error}"),
            StartError::IdSpaceSpent { shard } => write!(
                formatter,
                "shard {shard}: the reservation id space of this data directory is spent"
            ),
        }
    }
}

impl std::error::Error for StartError {}

impl From<DataDirError> for StartError {
    fn from(error: DataDirError) -> StartError {
        StartError::DataDir(error)
    }
}

/// What one shard's recovery found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardRecovery {
    /// The entry of the snapshot recovery started from, if any.
    pub snapshot_sequence: Option<u64>,
    /// Entries replayed after it.
    pub entries_replayed: u64,
    pub inputs_replayed: u64,
    /// The last entry kept.
    pub last_sequence: u64,
    pub live_reservations: u32,
    /// A torn tail truncated: where and how many bytes.
    pub torn: Option<(String, u64, u64)>,
    /// Valid entries dropped because a message they received had its sending lost.
    pub entries_cut: u64,
    /// Bytes removed from the files (torn tail and cut entries).
    pub bytes_removed: u64,
}

/// What a durable start did.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// True when the data directory was new (or empty): nothing was recovered.
    pub fresh: bool,
    pub shards: Vec<ShardRecovery>,
    pub redeliveries: usize,
    /// Unfinished or superseded snapshots and covered segments a crash left behind.
    pub stale_files_removed: usize,
    pub elapsed: Duration,
}

impl RecoveryReport {
    /// One log line per shard, for `rush serve`.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (shard, recovery) in self.shards.iter().enumerate() {
            let from = match recovery.snapshot_sequence {
                Some(sequence) => format!("snapshot of entry {sequence} + "),
                None => String::new(),
            };
            let mut line = format!(
                "shard {shard}: {from}{} entries ({} inputs) replayed up to entry {}, {} live reservations",
                recovery.entries_replayed, recovery.inputs_replayed, recovery.last_sequence, recovery.live_reservations
            );
            if let Some((file, offset, bytes)) = &recovery.torn {
                line.push_str(&format!(
                    "; torn tail of {bytes} bytes truncated at {file}:{offset}"
                ));
            }
            if recovery.entries_cut > 0 {
                line.push_str(&format!(
                    "; {} entries dropped (they depended on messages whose sending was lost)",
                    recovery.entries_cut
                ));
            }
            lines.push(line);
        }
        lines.push(format!(
            "recovery took {:.3} s; {} messages to redeliver between shards; {} stale files removed",
            self.elapsed.as_secs_f64(),
            self.redeliveries,
            self.stale_files_removed
        ));
        lines
    }
}

/// How a durable server journals, besides its durability mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalOptions {
    /// A new segment starts before the current one would pass this (at least 1 KiB).
    pub segment_bytes_max: u64,
    pub snapshot_every: SnapshotEvery,
}

impl Default for JournalOptions {
    fn default() -> JournalOptions {
        JournalOptions {
            segment_bytes_max: SEGMENT_BYTES_MAX,
            snapshot_every: SNAPSHOT_EVERY_DEFAULT,
        }
    }
}

/// Opens `path` for `shards` (fresh cores from `Mesh::build`), recovers them from their
/// snapshots and journals, and installs their journals in `durability` mode. `now_ms`: the
/// clock of the start entry. The returned `DataDir` holds the lock: keep it as long as the
/// server runs.
pub fn start_durable(
    shards: &mut [ShardCore],
    path: &Path,
    durability: Durability,
    now_ms: u64,
) -> Result<(DataDir, RecoveryReport), StartError> {
    start_durable_with(shards, path, durability, now_ms, JournalOptions::default())
}

/// What a data directory holds, read into memory.
struct Loaded {
    /// Per shard: the segments recovery reads (sorted by first sequence).
    segments: Vec<Vec<(u64, PathBuf, Vec<u8>)>>,
    /// Per shard: the latest finished snapshot, if any.
    snapshots: Vec<Option<(PathBuf, Vec<u8>)>>,
    /// What a start removes: unfinished snapshots (a crash while one was written), older
    /// snapshots and segments that end before the latest snapshot (a crash before they were
    /// deleted).
    stale: Vec<Vec<PathBuf>>,
}

fn read_file(path: &Path) -> Result<Vec<u8>, StartError> {
    std::fs::read(path)
        .map_err(|error| StartError::DataDir(DataDirError::Io { path: path.to_path_buf(), error }))
}

fn load(data_dir: &DataDir) -> Result<Loaded, StartError> {
    let shard_count = data_dir.shard_count();
    let mut loaded = Loaded { segments: Vec::new(), snapshots: Vec::new(), stale: Vec::new() };
    for shard in 0..shard_count {
        let directory = data_dir.shard_path(shard);
        let listing = list_snapshots(&directory).map_err(|error| {
            StartError::DataDir(DataDirError::Io { path: directory.clone(), error })
        })?;
        let mut finished = listing.finished;
        let mut stale = listing.unfinished;
        let latest = finished.pop();
        stale.extend(finished.into_iter().map(|(_, path)| path));
        let base = latest.as_ref().map_or(0, |(sequence, _)| *sequence);
        let segments = data_dir.segments(shard)?;
        // Segment i holds only entries up to the snapshot's when the next one starts at or
        // before the entry after it.
        let covered = (0..segments.len())
            .take_while(|&index| {
                segments.get(index + 1).is_some_and(|(first, _)| *first <= base + 1)
            })
            .count();
        stale.extend(segments[..covered].iter().map(|(_, path)| path.clone()));
        let mut kept = Vec::with_capacity(segments.len() - covered);
        for (first_sequence, path) in &segments[covered..] {
            let bytes = read_file(path)?;
            kept.push((*first_sequence, path.clone(), bytes));
        }
        loaded.segments.push(kept);
        let snapshot = match latest {
            Some((_, path)) => {
                let bytes = read_file(&path)?;
                Some((path, bytes))
            }
            None => None,
        };
        loaded.snapshots.push(snapshot);
        loaded.stale.push(stale);
    }
    Ok(loaded)
}

/// Recovers what `loaded` holds.
fn recover_loaded(
    loaded: &Loaded,
    config: rush_engine::Config,
) -> Result<super::recovery::Recovered, StartError> {
    let shard_count = loaded.segments.len() as u32;
    let journals: Vec<Vec<SegmentBytes<'_>>> = loaded
        .segments
        .iter()
        .map(|segments| {
            segments
                .iter()
                .map(|(first_sequence, path, bytes)| SegmentBytes {
                    first_sequence: *first_sequence,
                    name: path.display().to_string(),
                    bytes,
                })
                .collect()
        })
        .collect();
    let mut snapshots = Vec::with_capacity(loaded.snapshots.len());
    for (shard, snapshot) in loaded.snapshots.iter().enumerate() {
        snapshots.push(match snapshot {
            Some((path, bytes)) => {
                let name = path.display().to_string();
                let file = decode_snapshot_file(&name, bytes, shard as u32, shard_count)
                    .map_err(StartError::Snapshot)?;
                Some(SnapshotStart { name, file })
            }
            None => None,
        });
    }
    recover(config, &journals, &snapshots).map_err(StartError::Recovery)
}

/// [`start_durable`] with explicit journal options.
pub fn start_durable_with(
    shards: &mut [ShardCore],
    path: &Path,
    durability: Durability,
    now_ms: u64,
    options: JournalOptions,
) -> Result<(DataDir, RecoveryReport), StartError> {
    assert!(durability != Durability::None);
    let started = Instant::now();
    let shard_count = shards.len() as u32;
    let data_dir = DataDir::open(path, shard_count)?;
    let config = *shards[0].engine().config();
    let loaded = load(&data_dir)?;
    let recovered = recover_loaded(&loaded, config)?;
    let mut report = RecoveryReport { fresh: data_dir.is_fresh(), ..RecoveryReport::default() };
    let redeliveries = recovered.redeliveries;
    report.redeliveries = redeliveries.len();
    for (index, (core, shard)) in shards.iter_mut().zip(recovered.shards).enumerate() {
        let shard_index = index as u32;
        // Stale files first: `truncate` counts segments by their index among those read.
        for stale in &loaded.stale[index] {
            std::fs::remove_file(stale).map_err(|error| {
                StartError::DataDir(DataDirError::Io { path: stale.clone(), error })
            })?;
            report.stale_files_removed += 1;
        }
        let bytes_removed = data_dir.truncate(shard_index, shard.end)?;
        let position = match shard.end {
            Some((segment, offset)) => {
                SegmentPosition { first_sequence: loaded.segments[index][segment].0, offset }
            }
            None => SegmentPosition { first_sequence: shard.last_sequence + 1, offset: 0 },
        };
        report.shards.push(ShardRecovery {
            snapshot_sequence: shard.snapshot_sequence,
            entries_replayed: shard.entries_replayed,
            inputs_replayed: shard.inputs_replayed,
            last_sequence: shard.last_sequence,
            live_reservations: shard.engine.live_reservations(),
            torn: shard.torn.as_ref().map(|torn| (torn.file.clone(), torn.offset, torn.bytes)),
            entries_cut: shard.entries_cut,
            bytes_removed,
        });
        let writer = JournalWriter::new(
            shard_index,
            durability,
            shard.last_sequence + 1,
            shard.checksum_previous,
            position,
        )
        .with_segment_bytes_max(options.segment_bytes_max);
        let start = JournalStart {
            writer,
            files: SegmentFiles::new(data_dir.shard_path(shard_index)),
            stable: shard.last_sequence,
            sent: shard.sent,
            received: shard.received,
            snapshot_every: options.snapshot_every,
        };
        core.install_journal(shard.engine, start);
    }
    for shard in 0..shard_count {
        sync_directory(&data_dir.shard_path(shard))?;
    }
    for redelivery in redeliveries {
        shards[redelivery.envelope.from as usize].redeliver(redelivery);
    }
    for core in shards.iter_mut() {
        if !core.begin_run(now_ms, GENERATION_JUMP) {
            return Err(StartError::IdSpaceSpent { shard: core.shard() });
        }
    }
    report.elapsed = started.elapsed();
    Ok((data_dir, report))
}

/// Replays a data directory from scratch into engines (from each shard's latest snapshot
/// and its journal), changing nothing on disk (no truncation, no start journaled): what
/// `rush journal verify` and the determinism checks use. The directory must not be in use
/// (its lock is taken for the duration).
pub fn replay_directory(
    path: &Path,
    config: rush_engine::Config,
    shard_count: u32,
) -> Result<super::recovery::Recovered, StartError> {
    if !path.join("META").exists() {
        return Err(StartError::DataDir(DataDirError::Meta {
            path: path.to_path_buf(),
            reason: "not a data directory (no META)".into(),
        }));
    }
    let data_dir = DataDir::open(path, shard_count)?;
    let loaded = load(&data_dir)?;
    recover_loaded(&loaded, config)
}
