//! Starting a durable server: open and lock the data directory, recover every shard from
//! its journal, cut the files back to what recovery kept, install the journals in the shard
//! cores, queue the messages to redeliver, and journal the start itself (the generation
//! jump). Runs in the starting thread before any shard thread or listener exists.

use std::path::Path;
use std::time::{Duration, Instant};

use super::files::{DataDir, DataDirError, SegmentFiles};
use super::recovery::{recover, RecoveryError};
use super::scan::SegmentBytes;
use super::writer::{Durability, JournalWriter, SegmentPosition, SEGMENT_BYTES_MAX};
use super::GENERATION_JUMP;
use crate::shard::{JournalStart, ShardCore};

/// Why a durable start failed.
#[derive(Debug)]
pub enum StartError {
    DataDir(DataDirError),
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
    pub elapsed: Duration,
}

impl RecoveryReport {
    /// One log line per shard, for `rush serve`.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (shard, recovery) in self.shards.iter().enumerate() {
            let mut line = format!(
                "shard {shard}: {} entries ({} inputs) replayed up to entry {}, {} live reservations",
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
            "recovery took {:.3} s; {} messages to redeliver between shards",
            self.elapsed.as_secs_f64(),
            self.redeliveries
        ));
        lines
    }
}

/// Opens `path` for `shards` (fresh cores from `Mesh::build`), recovers them from their
/// journals, and installs their journals in `durability` mode. `now_ms`: the clock of the
/// start entry. The returned `DataDir` holds the lock: keep it as long as the server runs.
pub fn start_durable(
    shards: &mut [ShardCore],
    path: &Path,
    durability: Durability,
    now_ms: u64,
) -> Result<(DataDir, RecoveryReport), StartError> {
    start_durable_with(shards, path, durability, now_ms, SEGMENT_BYTES_MAX)
}

/// [`start_durable`] with segments of at most `segment_bytes_max` bytes.
pub fn start_durable_with(
    shards: &mut [ShardCore],
    path: &Path,
    durability: Durability,
    now_ms: u64,
    segment_bytes_max: u64,
) -> Result<(DataDir, RecoveryReport), StartError> {
    assert!(durability != Durability::None);
    let started = Instant::now();
    let shard_count = shards.len() as u32;
    let data_dir = DataDir::open(path, shard_count)?;
    let config = *shards[0].engine().config();
    let mut files = Vec::with_capacity(shards.len());
    for shard in 0..shard_count {
        files.push(data_dir.read_segments(shard)?);
    }
    let journals: Vec<Vec<SegmentBytes<'_>>> = files
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
    let recovered = recover(config, &journals).map_err(StartError::Recovery)?;
    let mut report = RecoveryReport { fresh: data_dir.is_fresh(), ..RecoveryReport::default() };
    let redeliveries = recovered.redeliveries;
    report.redeliveries = redeliveries.len();
    for (index, (core, shard)) in shards.iter_mut().zip(recovered.shards).enumerate() {
        let shard_index = index as u32;
        let bytes_removed = data_dir.truncate(shard_index, shard.end)?;
        let position = match shard.end {
            Some((segment, offset)) => {
                SegmentPosition { first_sequence: files[index][segment].0, offset }
            }
            None => SegmentPosition { first_sequence: shard.last_sequence + 1, offset: 0 },
        };
        report.shards.push(ShardRecovery {
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
        .with_segment_bytes_max(segment_bytes_max);
        let start = JournalStart {
            writer,
            files: SegmentFiles::new(data_dir.shard_path(shard_index)),
            stable: shard.last_sequence,
            sent: shard.sent,
            received: shard.received,
        };
        core.install_journal(shard.engine, start);
    }
    for redelivery in redeliveries {
        shards[redelivery.envelope.from as usize]
            .redeliver(redelivery.envelope, redelivery.cause_sequence);
    }
    for core in shards.iter_mut() {
        if !core.begin_run(now_ms, GENERATION_JUMP) {
            return Err(StartError::IdSpaceSpent { shard: core.shard() });
        }
    }
    report.elapsed = started.elapsed();
    Ok((data_dir, report))
}

/// Replays a data directory from scratch into engines, changing nothing on disk (no
/// truncation, no start journaled): what `rush journal verify` and the determinism checks
/// use. The directory must not be in use (its lock is taken for the duration).
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
    let mut files = Vec::with_capacity(shard_count as usize);
    for shard in 0..shard_count {
        files.push(data_dir.read_segments(shard)?);
    }
    let journals: Vec<Vec<SegmentBytes<'_>>> = files
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
    recover(config, &journals).map_err(StartError::Recovery)
}
