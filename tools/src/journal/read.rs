//! What the journal commands share: the data directory checked and its META read (no lock
//! taken), and for `dump` and `stats` the segments read without the lock and without
//! changing anything (they work on a directory a server is using), every shard validated by
//! the same `scan` a server start runs, with what precedes a damaged entry kept so it can be
//! shown.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rush_runtime::journal::codec::{decode_input, CodecError, Input};
use rush_runtime::journal::files::shard_directory;
use rush_runtime::journal::format::{EntryHeader, ENTRY_HEADER_SIZE};
use rush_runtime::journal::scan::{scan, EntryPlace, ScanError, SegmentBytes, TornTail};
use rush_runtime::journal::{list_segments, read_meta, RecoveryError};

/// A data directory: its path and the shard count its META records.
#[derive(Debug)]
pub struct Directory {
    pub path: PathBuf,
    pub shard_count: u32,
}

impl Directory {
    /// Checks that `path` is a data directory (a directory with a valid META) and reads its
    /// shard count. Takes no lock.
    pub fn open(path: &Path) -> anyhow::Result<Directory> {
        match std::fs::metadata(path) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => bail!("{}: not a directory", path.display()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                bail!("{}: no such directory", path.display())
            }
            Err(error) => bail!("{}: {error}", path.display()),
        }
        let shard_count = read_meta(path).map_err(|error| anyhow::anyhow!("{error}"))?;
        Ok(Directory { path: path.to_path_buf(), shard_count })
    }

    /// The shards a command covers: `only`, checked against the shard count, or all.
    pub fn shards(&self, only: Option<u32>) -> anyhow::Result<std::ops::Range<u32>> {
        match only {
            None => Ok(0..self.shard_count),
            Some(shard) if shard < self.shard_count => Ok(shard..shard + 1),
            Some(shard) => bail!(
                "--shard {shard}: {} holds {} (0 to {})",
                self.path.display(),
                plural(u64::from(self.shard_count), "shard"),
                self.shard_count - 1
            ),
        }
    }

    pub fn shard_path(&self, shard: u32) -> PathBuf {
        self.path.join(shard_directory(shard))
    }

    /// Reads shard `shard`'s segment files (and the names and sizes of its snapshot files).
    pub fn read_shard(&self, shard: u32) -> anyhow::Result<ShardFiles> {
        let directory = self.shard_path(shard);
        if !directory.is_dir() {
            // A server start creates it empty; nothing to read.
            return Ok(ShardFiles {
                shard,
                segments: Vec::new(),
                snapshots: Vec::new(),
                missing: true,
            });
        }
        let mut segments = Vec::new();
        for (first_sequence, path) in
            list_segments(&directory).map_err(|error| anyhow::anyhow!("{error}"))?
        {
            let mut bytes = Vec::new();
            std::fs::File::open(&path)
                .and_then(|mut file| file.read_to_end(&mut bytes))
                .with_context(|| format!("cannot read {}", path.display()))?;
            let name = path.display().to_string();
            segments.push(Segment { first_sequence, name, bytes });
        }
        let mut snapshots = Vec::new();
        let listing = std::fs::read_dir(&directory)
            .with_context(|| format!("cannot list {}", directory.display()))?;
        for entry in listing {
            let entry = entry.with_context(|| format!("cannot list {}", directory.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("snapshot-") {
                let bytes =
                    entry.metadata().with_context(|| format!("{}", entry.path().display()))?.len();
                snapshots.push((name, bytes));
            }
        }
        snapshots.sort();
        Ok(ShardFiles { shard, segments, snapshots, missing: false })
    }
}

/// One segment file, read whole.
#[derive(Debug)]
pub struct Segment {
    pub first_sequence: u64,
    /// Its path as a server start names it in errors.
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The files of one shard.
#[derive(Debug)]
pub struct ShardFiles {
    pub shard: u32,
    /// Sorted by first sequence.
    pub segments: Vec<Segment>,
    /// Snapshot files (name, bytes), listed only.
    pub snapshots: Vec<(String, u64)>,
    /// The shard's directory does not exist.
    pub missing: bool,
}

/// A shard's journal as far as it is valid.
#[derive(Debug)]
pub struct Walk {
    /// The valid entries, in order.
    pub entries: Vec<(EntryHeader, EntryPlace)>,
    pub torn: Option<TornTail>,
    /// What stops the journal (a server start refuses it), after `entries`.
    pub error: Option<RecoveryError>,
    /// The sequence the oldest segment starts at (1 unless older segments are gone, as
    /// after a snapshot).
    pub first_sequence: u64,
}

impl ShardFiles {
    pub fn bytes_total(&self) -> u64 {
        self.segments.iter().map(|segment| segment.bytes.len() as u64).sum()
    }

    fn segment_bytes(&self) -> Vec<SegmentBytes<'_>> {
        self.segments
            .iter()
            .map(|segment| SegmentBytes {
                first_sequence: segment.first_sequence,
                name: segment.name.clone(),
                bytes: &segment.bytes,
            })
            .collect()
    }

    /// Validates the journal with the scan a server start runs (checksums, chain, sequence
    /// numbers, torn tail). The scan starts where the oldest segment starts: from sequence 1
    /// chained to 0, as a start checks it; from a later sequence (older segments gone) the
    /// first entry's link is not checked, since what it links to is not here.
    pub fn walk(&self) -> Walk {
        let first_sequence = self.segments.first().map_or(1, |segment| segment.first_sequence);
        let chain = (first_sequence == 1).then_some(0);
        let segments = self.segment_bytes();
        let error = match scan(self.shard, &segments, first_sequence, chain) {
            Ok(scanned) => {
                return Walk {
                    entries: scanned.entries,
                    torn: scanned.torn,
                    error: None,
                    first_sequence,
                }
            }
            Err(error) => error,
        };
        // Everything before the failing place passed the scan: scanning only those bytes
        // gives the entries that precede it.
        let (file, offset) = match &error {
            ScanError::Corrupt { file, offset, .. }
            | ScanError::BadInput { file, offset, .. }
            | ScanError::Sequence { file, offset, .. }
            | ScanError::Chain { file, offset, .. }
            | ScanError::Shard { file, offset, .. } => (file.as_str(), *offset),
            ScanError::Segment { file, .. } => (file.as_str(), 0),
        };
        let entries = match segments.iter().position(|segment| segment.name == file) {
            Some(index) => {
                let mut prefix: Vec<SegmentBytes<'_>> = segments[..index]
                    .iter()
                    .map(|segment| SegmentBytes {
                        first_sequence: segment.first_sequence,
                        name: segment.name.clone(),
                        bytes: segment.bytes,
                    })
                    .collect();
                let cut =
                    usize::try_from(offset).unwrap_or(usize::MAX).min(segments[index].bytes.len());
                prefix.push(SegmentBytes {
                    first_sequence: segments[index].first_sequence,
                    name: segments[index].name.clone(),
                    bytes: &segments[index].bytes[..cut],
                });
                scan(self.shard, &prefix, first_sequence, chain)
                    .map(|scanned| scanned.entries)
                    .unwrap_or_default()
            }
            None => Vec::new(),
        };
        Walk {
            entries,
            torn: None,
            error: Some(RecoveryError::Scan { shard: self.shard, error }),
            first_sequence,
        }
    }

    /// The inputs of a valid entry (one `walk` returned).
    pub fn inputs(
        &self,
        header: &EntryHeader,
        place: &EntryPlace,
    ) -> Result<Vec<Input>, CodecError> {
        let bytes = &self.segments[place.segment].bytes;
        let start = place.offset as usize + ENTRY_HEADER_SIZE;
        let Some(mut body) = bytes.get(start..start + header.body_length as usize) else {
            return Err(CodecError::Truncated);
        };
        let mut inputs = Vec::new();
        while !body.is_empty() {
            let (input, used) = decode_input(body, self.shard)?;
            inputs.push(input);
            body = &body[used..];
        }
        Ok(inputs)
    }
}

/// The torn tail as a server start logs it (`N bytes at FILE:OFFSET`), and why it is one.
pub fn torn_text(torn: &TornTail) -> String {
    format!("{} bytes at {}:{} ({})", torn.bytes, torn.file, torn.offset, torn.error)
}

pub fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// Writes `text` to stdout. A closed pipe (`rush journal dump | head`) is not an error: false
/// says the reader is gone.
pub fn print(text: &str) -> anyhow::Result<bool> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(error) => Err(error).context("cannot write to stdout"),
    }
}
