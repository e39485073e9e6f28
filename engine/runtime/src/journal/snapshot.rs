//! A shard's snapshot file (docs/JOURNAL.md, "Snapshots"): the engine state after one
//! journal entry, what the shard's links had sent and received by then, and the messages it
//! had sent that their receivers had not yet made stable, so that a recovery starting from
//! the snapshot can still deliver them.
//!
//! ```text
//! offset size field
//!      0    8 magic              "RUSHSNAP"
//!      8    4 version            1
//!     12    4 shard
//!     16    4 shard_count
//!     20    4 reserved           0
//!     24    8 sequence           the last journal entry the state includes
//!     32    8 checksum_previous  checksum_header of that entry (0 when sequence is 0):
//!                                what the next entry chains to
//!     40    8 now_ms             the engine's clock
//!     48    8 term               replication (next stage): 0 until then
//!     56    8 index              replication log index: 0 until then
//!     64    8 body_length
//!     72    8 checksum_body      xxh3-64 of the body
//!     80    8 reserved           0
//!     88    8 checksum_header    xxh3-64 of bytes 0..88
//!     96      body:
//!               shard_count × (sent: u64, received: u64)     messages per link so far
//!               outbox_count: u64, then outbox_count × (to: u32, a MESSAGE input of
//!                 codec.rs): the messages sent and not yet stable at their receivers,
//!                 per link in link order
//!               the engine state (rush_engine::snapshot, to the end of the body)
//! ```
//!
//! A snapshot is written as `snapshot-<sequence>.tmp` (write + fdatasync) and renamed to
//! `snapshot-<sequence>.rsn` only once its entry is **stable**, so a `.rsn` file is never
//! above a consistent cut: recovery starts from it without ever needing what it replaced.

use std::path::{Path, PathBuf};

use rush_engine::quota::Envelope;
use xxhash_rust::xxh3::xxh3_64;

use super::codec::{decode_input, encode_input, Input};

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"RUSHSNAP";
pub const SNAPSHOT_VERSION: u32 = 1;
pub const SNAPSHOT_HEADER_SIZE: usize = 96;
/// The largest snapshot file this build writes or reads (the engine's tables at their
/// largest configuration fit well below it).
pub const SNAPSHOT_BYTES_MAX: u64 = 64 << 30;

/// When a shard takes a snapshot: after this much journal since the last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotEvery {
    /// After this many journal records (inputs: requests, messages, ticks).
    Inputs(u64),
    /// After this many bytes of journal written.
    Bytes(u64),
    /// Never: the journal grows until the operator compacts it (tests, benchmarks).
    Never,
}

/// A snapshot per 256 MiB of journal: at a million requests a second (about 50 MB/s of
/// journal) one every five seconds, so a restart replays at most a few seconds of work,
/// and the pause of taking one (docs/BENCHMARKS.md) is paid rarely.
pub const SNAPSHOT_EVERY_DEFAULT: SnapshotEvery = SnapshotEvery::Bytes(256 << 20);
/// The smallest period accepted (smaller would snapshot nearly every pass).
pub const SNAPSHOT_EVERY_INPUTS_MIN: u64 = 100;
pub const SNAPSHOT_EVERY_BYTES_MIN: u64 = 64 << 10;

impl SnapshotEvery {
    /// Parses `N` (records), `NKB`, `NMB`, `NGB` (binary units: KiB, MiB, GiB), or `never`.
    pub fn parse(text: &str) -> Result<SnapshotEvery, String> {
        let text = text.trim();
        if text == "never" {
            return Ok(SnapshotEvery::Never);
        }
        let upper = text.to_ascii_uppercase();
        let (digits, scale) = [("KB", 1_u64 << 10), ("MB", 1 << 20), ("GB", 1 << 30)]
            .iter()
            .find_map(|(suffix, scale)| upper.strip_suffix(suffix).map(|digits| (digits, *scale)))
            .map_or((upper.as_str(), None), |(digits, scale)| (digits, Some(scale)));
        let number: u64 = digits.trim().parse().map_err(|_| {
            format!("`{text}`: expected a number of records, a size such as 256MB, or never")
        })?;
        match scale {
            None if number >= SNAPSHOT_EVERY_INPUTS_MIN => Ok(SnapshotEvery::Inputs(number)),
            None => Err(format!("`{text}`: at least {SNAPSHOT_EVERY_INPUTS_MIN} records")),
            Some(scale) => match number.checked_mul(scale) {
                Some(bytes) if bytes >= SNAPSHOT_EVERY_BYTES_MIN => Ok(SnapshotEvery::Bytes(bytes)),
                Some(_) => Err(format!("`{text}`: at least 64KB")),
                None => Err(format!("`{text}`: too large")),
            },
        }
    }

    /// True when a snapshot is due after `inputs` records and `bytes` of journal since
    /// the last one.
    pub fn due(self, inputs: u64, bytes: u64) -> bool {
        match self {
            SnapshotEvery::Inputs(every) => inputs >= every,
            SnapshotEvery::Bytes(every) => bytes >= every,
            SnapshotEvery::Never => false,
        }
    }
}

impl std::fmt::Display for SnapshotEvery {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotEvery::Inputs(records) => write!(formatter, "{records} records"),
            SnapshotEvery::Bytes(bytes) if bytes % (1 << 20) == 0 => {
                write!(formatter, "{}MB", bytes >> 20)
            }
            SnapshotEvery::Bytes(bytes) => write!(formatter, "{}KB", bytes >> 10),
            SnapshotEvery::Never => write!(formatter, "never"),
        }
    }
}

/// A message a snapshot carries for redelivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboxMessage {
    pub envelope: Envelope,
    pub link_sequence: u64,
    pub cause_sequence: u64,
}

/// A decoded snapshot file (the engine state still as bytes: decoding it needs the
/// configuration, see `Engine::restore_snapshot`).
#[derive(Debug)]
pub struct SnapshotFile<'a> {
    pub shard: u32,
    pub sequence: u64,
    pub checksum_previous: u64,
    pub now_ms: u64,
    pub sent: Vec<u64>,
    pub received: Vec<u64>,
    pub outbox: Vec<OutboxMessage>,
    pub engine: &'a [u8],
    /// Where the engine state starts in the file (for error messages).
    pub engine_offset: usize,
}

/// What is wrong with a snapshot file: its name, the byte offset and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFileError {
    pub file: String,
    pub offset: u64,
    pub reason: String,
}

impl std::fmt::Display for SnapshotFileError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: offset {}: snapshot {}", self.file, self.offset, self.reason)
    }
}

impl std::error::Error for SnapshotFileError {}

/// The file name of a finished snapshot of entry `sequence`.
pub fn snapshot_name(sequence: u64) -> String {
    format!("snapshot-{sequence:020}.rsn")
}

/// The file name while it is being written.
pub fn snapshot_temporary_name(sequence: u64) -> String {
    format!("snapshot-{sequence:020}.tmp")
}

/// The snapshot files of a shard directory.
#[derive(Debug, Default)]
pub struct SnapshotListing {
    /// Finished (`.rsn`), sorted by sequence.
    pub finished: Vec<(u64, PathBuf)>,
    /// Unfinished (`.tmp`: a crash during a snapshot; never read, removed at start).
    pub unfinished: Vec<PathBuf>,
}

/// The snapshot files in a shard directory.
pub fn list_snapshots(directory: &Path) -> std::io::Result<SnapshotListing> {
    let mut finished = Vec::new();
    let mut unfinished = Vec::new();
    for entry in std::fs::read_dir(directory)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix("snapshot-") else { continue };
        if let Some(sequence) = rest.strip_suffix(".rsn").and_then(|s| s.parse::<u64>().ok()) {
            finished.push((sequence, entry.path()));
        } else if rest.ends_with(".tmp") {
            unfinished.push(entry.path());
        }
    }
    finished.sort();
    Ok(SnapshotListing { finished, unfinished })
}

/// What goes into a snapshot file besides the engine.
#[derive(Debug)]
pub struct SnapshotParts<'a> {
    pub shard: u32,
    pub sequence: u64,
    pub checksum_previous: u64,
    pub now_ms: u64,
    pub sent: &'a [u64],
    pub received: &'a [u64],
    pub outbox: &'a [OutboxMessage],
}

/// Writes header and links into `out` (which must be empty), then calls `engine` to append
/// the engine state, then fills in the lengths and checksums.
pub fn encode_snapshot_file(
    parts: &SnapshotParts<'_>,
    out: &mut Vec<u8>,
    engine: impl FnOnce(&mut Vec<u8>),
) {
    assert!(out.is_empty());
    assert_eq!(parts.sent.len(), parts.received.len());
    let shard_count = parts.sent.len() as u32;
    assert!(parts.shard < shard_count);
    out.resize(SNAPSHOT_HEADER_SIZE, 0);
    for (sent, received) in parts.sent.iter().zip(parts.received) {
        out.extend_from_slice(&sent.to_le_bytes());
        out.extend_from_slice(&received.to_le_bytes());
    }
    out.extend_from_slice(&(parts.outbox.len() as u64).to_le_bytes());
    for message in parts.outbox {
        assert_eq!(message.envelope.from, parts.shard);
        // The input encoding leaves out the receiver (a journal holds its own receipts).
        out.extend_from_slice(&message.envelope.to.to_le_bytes());
        let input = Input::Message {
            envelope: message.envelope,
            link_sequence: message.link_sequence,
            cause_sequence: message.cause_sequence,
        };
        encode_input(&input, out);
    }
    engine(out);
    let body_length = (out.len() - SNAPSHOT_HEADER_SIZE) as u64;
    let checksum_body = xxh3_64(&out[SNAPSHOT_HEADER_SIZE..]);
    let header = &mut out[..SNAPSHOT_HEADER_SIZE];
    header[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    header[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&parts.shard.to_le_bytes());
    header[16..20].copy_from_slice(&shard_count.to_le_bytes());
    header[24..32].copy_from_slice(&parts.sequence.to_le_bytes());
    header[32..40].copy_from_slice(&parts.checksum_previous.to_le_bytes());
    header[40..48].copy_from_slice(&parts.now_ms.to_le_bytes());
    header[64..72].copy_from_slice(&body_length.to_le_bytes());
    header[72..80].copy_from_slice(&checksum_body.to_le_bytes());
    let checksum_header = xxh3_64(&header[..88]);
    header[88..96].copy_from_slice(&checksum_header.to_le_bytes());
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0_u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0_u8; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

/// Validates and decodes a snapshot file of shard `shard` of `shard_count` (`file` names it
/// in errors). Never panics.
pub fn decode_snapshot_file<'a>(
    file: &str,
    bytes: &'a [u8],
    shard: u32,
    shard_count: u32,
) -> Result<SnapshotFile<'a>, SnapshotFileError> {
    let error = |offset: usize, reason: String| SnapshotFileError {
        file: file.to_string(),
        offset: offset as u64,
        reason,
    };
    if bytes.len() < SNAPSHOT_HEADER_SIZE {
        return Err(error(0, format!("truncated: {} bytes, shorter than its header", bytes.len())));
    }
    if bytes[0..8] != SNAPSHOT_MAGIC {
        return Err(error(0, "bad magic (not a snapshot file)".into()));
    }
    if xxh3_64(&bytes[..88]) != u64_at(bytes, 88) {
        return Err(error(88, "header checksum mismatch".into()));
    }
    let version = u32_at(bytes, 8);
    if version != SNAPSHOT_VERSION {
        return Err(error(8, format!("version {version} is not readable by this build")));
    }
    if u32_at(bytes, 20) != 0 || u64_at(bytes, 80) != 0 {
        return Err(error(20, "non-zero reserved bytes".into()));
    }
    let (file_shard, file_shard_count) = (u32_at(bytes, 12), u32_at(bytes, 16));
    if (file_shard, file_shard_count) != (shard, shard_count) {
        return Err(error(
            12,
            format!(
                "of shard {file_shard} of {file_shard_count}, expected shard {shard} of {shard_count}"
            ),
        ));
    }
    let body_length = u64_at(bytes, 64);
    if body_length != (bytes.len() - SNAPSHOT_HEADER_SIZE) as u64 {
        return Err(error(
            64,
            format!(
                "body length {body_length} but {} bytes follow the header (truncated or extended)",
                bytes.len() - SNAPSHOT_HEADER_SIZE
            ),
        ));
    }
    let body = &bytes[SNAPSHOT_HEADER_SIZE..];
    if xxh3_64(body) != u64_at(bytes, 72) {
        return Err(error(SNAPSHOT_HEADER_SIZE, "body checksum mismatch".into()));
    }
    // Below, the checksums hold: a failure is a file written by a broken build.
    let links_length = shard_count as usize * 16;
    if body.len() < links_length + 8 {
        return Err(error(SNAPSHOT_HEADER_SIZE, "body too short for its links".into()));
    }
    let mut sent = Vec::with_capacity(shard_count as usize);
    let mut received = Vec::with_capacity(shard_count as usize);
    for link in 0..shard_count as usize {
        sent.push(u64_at(body, link * 16));
        received.push(u64_at(body, link * 16 + 8));
    }
    let outbox_count = u64_at(body, links_length);
    let mut offset = links_length + 8;
    // Each message takes at least a receiver and an input header: a count beyond that is
    // refused before anything is allocated by it.
    if outbox_count > (body.len() - offset) as u64 / 7 {
        return Err(error(SNAPSHOT_HEADER_SIZE + links_length, "outbox count too large".into()));
    }
    let mut outbox = Vec::with_capacity(outbox_count as usize);
    for _ in 0..outbox_count {
        if body.len() - offset < 4 {
            return Err(error(SNAPSHOT_HEADER_SIZE + offset, "outbox truncated".into()));
        }
        let to = u32_at(body, offset);
        if to >= shard_count {
            return Err(error(
                SNAPSHOT_HEADER_SIZE + offset,
                format!("outbox message to shard {to}"),
            ));
        }
        offset += 4;
        match decode_input(&body[offset..], to) {
            Ok((Input::Message { envelope, link_sequence, cause_sequence }, used))
                if envelope.from == shard =>
            {
                outbox.push(OutboxMessage { envelope, link_sequence, cause_sequence });
                offset += used;
            }
            Ok(_) => {
                return Err(error(
                    SNAPSHOT_HEADER_SIZE + offset,
                    "outbox holds something other than a message of this shard".into(),
                ))
            }
            Err(codec) => {
                return Err(error(SNAPSHOT_HEADER_SIZE + offset, format!("outbox: {codec}")))
            }
        }
    }
    Ok(SnapshotFile {
        shard,
        sequence: u64_at(bytes, 24),
        checksum_previous: u64_at(bytes, 32),
        now_ms: u64_at(bytes, 40),
        sent,
        received,
        outbox,
        engine: &body[offset..],
        engine_offset: SNAPSHOT_HEADER_SIZE + offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rush_engine::quota::Message;

    fn sample() -> Vec<u8> {
        let outbox = [OutboxMessage {
            envelope: Envelope {
                from: 1,
                to: 0, // another shard's: the receiver must survive the round trip
                message: Message::Release { sku: 9, quantity: 3 },
            },
            link_sequence: 4,
            cause_sequence: 17,
        }];
        let parts = SnapshotParts {
            shard: 1,
            sequence: 42,
            checksum_previous: 0xabc,
            now_ms: 1_700_000_000_000,
            sent: &[4, 0],
            received: &[2, 7],
            outbox: &outbox,
        };
        let mut bytes = Vec::new();
        encode_snapshot_file(&parts, &mut bytes, |out| out.extend_from_slice(b"engine state"));
        bytes
    }

    #[test]
    fn snapshot_periods_parse_and_bad_ones_are_refused() {
        assert_eq!(SnapshotEvery::parse("100000"), Ok(SnapshotEvery::Inputs(100_000)));
        assert_eq!(SnapshotEvery::parse("256MB"), Ok(SnapshotEvery::Bytes(256 << 20)));
        assert_eq!(SnapshotEvery::parse("1gb"), Ok(SnapshotEvery::Bytes(1 << 30)));
        assert_eq!(SnapshotEvery::parse("never"), Ok(SnapshotEvery::Never));
        for bad in ["", "MB", "-5", "12XB", "5", "1KB", "99999999999999GB"] {
            assert!(SnapshotEvery::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            SnapshotEvery::parse(&SNAPSHOT_EVERY_DEFAULT.to_string()),
            Ok(SNAPSHOT_EVERY_DEFAULT)
        );
    }

    #[test]
    fn a_snapshot_file_round_trips() {
        let bytes = sample();
        let file = decode_snapshot_file("s", &bytes, 1, 2).unwrap();
        assert_eq!((file.sequence, file.checksum_previous), (42, 0xabc));
        assert_eq!((file.sent, file.received), (vec![4, 0], vec![2, 7]));
        assert_eq!(file.outbox.len(), 1);
        assert_eq!(file.outbox[0].link_sequence, 4);
        assert_eq!((file.outbox[0].envelope.from, file.outbox[0].envelope.to), (1, 0));
        assert_eq!(file.engine, b"engine state");
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_refused() {
        let bytes = sample();
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut corrupt = bytes.clone();
                corrupt[at] ^= 1 << bit;
                assert!(decode_snapshot_file("s", &corrupt, 1, 2).is_err(), "byte {at} bit {bit}");
            }
        }
        for length in 0..bytes.len() {
            assert!(decode_snapshot_file("s", &bytes[..length], 1, 2).is_err());
        }
        assert!(decode_snapshot_file("s", &bytes, 0, 2).is_err(), "another shard's");
    }
}
