//! The data directory on disk (docs/JOURNAL.md, "Directory layout"):
//!
//! ```text
//! DIR/LOCK                                  held (flock) by the one server using DIR
//! DIR/META                                  "rush data directory\nformat 1\nshards N\n"
//! DIR/shard-000/journal-00000000000000000001.rjl   segments, named by their first entry
//! DIR/shard-000/journal-00000000000000123457.rjl
//! DIR/shard-001/...
//! ```
//!
//! A segment is created when the previous one passes `SEGMENT_BYTES_MAX`; creating one
//! fsyncs its directory, so the file itself survives a crash (its contents are made durable
//! by the writes' fdatasyncs). Everything here is plain blocking file I/O: it runs at start
//! (recovery) and on the rare segment switch, never per request.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::writer::SegmentPosition;

/// The format of a data directory this build reads and writes.
pub const DATA_FORMAT: u32 = 1;
const META: &str = "META";
const LOCK: &str = "LOCK";

/// Why a data directory cannot be used.
#[derive(Debug)]
pub enum DataDirError {
    Io {
        path: PathBuf,
        error: io::Error,
    },
    /// Another process holds the directory's lock.
    Locked {
        path: PathBuf,
    },
    /// META is not what this build writes.
    Meta {
        path: PathBuf,
        reason: String,
    },
    /// The directory was made for another number of shards (accounts and SKUs would land on
    /// other shards than the ones holding their state).
    ShardCount {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
}

impl std::fmt::Display for DataDirError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataDirError::Io { path, error } => write!(formatter, "{}: {error}", path.display()),
            DataDirError::Locked { path } => write!(
                formatter,
                "{}: the data directory is in use by another server (its LOCK is held)",
                path.display()
            ),
            DataDirError::Meta { path, reason } => {
                write!(formatter, "{}: {reason}", path.display())
            }
            DataDirError::ShardCount { path, found, expected } => write!(
                formatter,
                "{}: the data directory holds {found} shards; this server runs {expected} (run it \
                 with --shards {found}, or use another --data-dir)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for DataDirError {}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> DataDirError + '_ {
    move |error| DataDirError::Io { path: path.to_path_buf(), error }
}

/// An open, locked data directory.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    shard_count: u32,
    /// True when this open created it (or it held no journal): nothing to recover.
    fresh: bool,
    /// Kept open: the lock lives as long as the file descriptor.
    _lock: File,
}

impl DataDir {
    /// Opens (creating if missing) and locks `path` for a server of `shard_count` shards.
    pub fn open(path: &Path, shard_count: u32) -> Result<DataDir, DataDirError> {
        std::fs::create_dir_all(path).map_err(io_error(path))?;
        let lock_path = path.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DataDirError::Locked { path: path.to_path_buf() })
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(DataDirError::Io { path: lock_path, error })
            }
        }
        let meta_path = path.join(META);
        let fresh = match std::fs::read_to_string(&meta_path) {
            Ok(text) => {
                let found = parse_meta(&text)
                    .map_err(|reason| DataDirError::Meta { path: meta_path.clone(), reason })?;
                if found != shard_count {
                    return Err(DataDirError::ShardCount {
                        path: path.to_path_buf(),
                        found,
                        expected: shard_count,
                    });
                }
                false
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let text =
                    format!("rush data directory\nformat {DATA_FORMAT}\nshards {shard_count}\n");
                write_durably(&meta_path, text.as_bytes())?;
                true
            }
            Err(error) => return Err(DataDirError::Io { path: meta_path, error }),
        };
        for shard in 0..shard_count {
            let directory = path.join(shard_directory(shard));
            std::fs::create_dir_all(&directory).map_err(io_error(&directory))?;
        }
        sync_directory(path)?;
        let mut data_dir = DataDir { path: path.to_path_buf(), shard_count, fresh, _lock: lock };
        if !fresh {
            // A directory whose journals are all empty (a server that never took a request)
            // is as good as new.
            data_dir.fresh = (0..shard_count).all(|shard| {
                let no_snapshot = super::snapshot::list_snapshots(&data_dir.shard_path(shard))
                    .is_ok_and(|listing| listing.finished.is_empty());
                no_snapshot
                    && data_dir.segments(shard).is_ok_and(|segments| {
                        segments.iter().all(|(_, path)| {
                            std::fs::metadata(path).is_ok_and(|metadata| metadata.len() == 0)
                        })
                    })
            });
        }
        Ok(data_dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn shard_count(&self) -> u32 {
        self.shard_count
    }

    /// True when there was nothing to recover: the sale file pre-warms only such a one.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    pub fn shard_path(&self, shard: u32) -> PathBuf {
        self.path.join(shard_directory(shard))
    }

    /// The segment files of `shard`, sorted by first sequence.
    pub fn segments(&self, shard: u32) -> Result<Vec<(u64, PathBuf)>, DataDirError> {
        list_segments(&self.shard_path(shard))
    }

    /// Reads every segment of `shard` into memory.
    pub fn read_segments(&self, shard: u32) -> Result<Vec<(u64, PathBuf, Vec<u8>)>, DataDirError> {
        let mut read = Vec::new();
        for (first_sequence, path) in self.segments(shard)? {
            let mut bytes = Vec::new();
            File::open(&path)
                .and_then(|mut file| file.read_to_end(&mut bytes))
                .map_err(io_error(&path))?;
            read.push((first_sequence, path, bytes));
        }
        Ok(read)
    }

    /// Cuts `shard`'s journal after `end` = (segment index, offset) of its sorted segments,
    /// or removes everything when `end` is `None`; later segments are deleted. Durable
    /// (fsynced) before it returns. Returns the bytes removed.
    pub fn truncate(&self, shard: u32, end: Option<(usize, u64)>) -> Result<u64, DataDirError> {
        let segments = self.segments(shard)?;
        let mut removed = 0;
        for (index, (_, path)) in segments.iter().enumerate() {
            let length = std::fs::metadata(path).map_err(io_error(path))?.len();
            match end {
                Some((segment, offset)) if index == segment => {
                    if length > offset {
                        let file =
                            OpenOptions::new().write(true).open(path).map_err(io_error(path))?;
                        file.set_len(offset).map_err(io_error(path))?;
                        file.sync_all().map_err(io_error(path))?;
                        removed += length - offset;
                    }
                }
                Some((segment, _)) if index < segment => {}
                _ => {
                    std::fs::remove_file(path).map_err(io_error(path))?;
                    removed += length;
                }
            }
        }
        sync_directory(&self.shard_path(shard))?;
        Ok(removed)
    }
}

/// The directory of shard `shard` inside a data directory.
pub fn shard_directory(shard: u32) -> String {
    format!("shard-{shard:03}")
}

/// A segment's file name.
pub fn segment_name(first_sequence: u64) -> String {
    format!("journal-{first_sequence:020}.rjl")
}

/// The shard count `path`'s META records, read without taking the lock or changing anything
/// (for tools that inspect a data directory, possibly one a server is using).
pub fn read_meta(path: &Path) -> Result<u32, DataDirError> {
    let meta_path = path.join(META);
    match std::fs::read_to_string(&meta_path) {
        Ok(text) => {
            parse_meta(&text).map_err(|reason| DataDirError::Meta { path: meta_path, reason })
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Err(DataDirError::Meta {
            path: path.to_path_buf(),
            reason: "not a data directory (no META)".into(),
        }),
        Err(error) => Err(DataDirError::Io { path: meta_path, error }),
    }
}

fn parse_meta(text: &str) -> Result<u32, String> {
    let mut lines = text.lines();
    if lines.next() != Some("rush data directory") {
        return Err("not a rush data directory META file".into());
    }
    match lines.next().and_then(|line| line.strip_prefix("format ")).map(str::parse::<u32>) {
        Some(Ok(DATA_FORMAT)) => {}
        Some(Ok(format)) => {
            return Err(format!("data format {format}; this build reads format {DATA_FORMAT}"))
        }
        _ => return Err("no format line".into()),
    }
    match lines.next().and_then(|line| line.strip_prefix("shards ")).map(str::parse::<u32>) {
        Some(Ok(shards)) if (1..=64).contains(&shards) => Ok(shards),
        _ => Err("no valid shards line".into()),
    }
}

/// The segments in a shard directory, sorted by first sequence (other files are ignored).
pub fn list_segments(directory: &Path) -> Result<Vec<(u64, PathBuf)>, DataDirError> {
    let mut segments = BTreeMap::new();
    for entry in std::fs::read_dir(directory).map_err(io_error(directory))? {
        let entry = entry.map_err(io_error(directory))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(first) = name.strip_prefix("journal-").and_then(|rest| rest.strip_suffix(".rjl"))
        else {
            continue;
        };
        if let Ok(first_sequence) = first.parse::<u64>() {
            segments.insert(first_sequence, entry.path());
        }
    }
    Ok(segments.into_iter().collect())
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), DataDirError> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, bytes).map_err(io_error(&temporary))?;
    File::open(&temporary).and_then(|file| file.sync_all()).map_err(io_error(&temporary))?;
    std::fs::rename(&temporary, path).map_err(io_error(path))?;
    sync_directory(path.parent().unwrap_or(Path::new(".")))
}

/// Makes the directory's entries (created, renamed, removed files) durable.
pub fn sync_directory(path: &Path) -> Result<(), DataDirError> {
    File::open(path).and_then(|directory| directory.sync_all()).map_err(io_error(path))
}

/// The open segment files of one shard's journal writer.
#[derive(Debug)]
pub struct SegmentFiles {
    directory: PathBuf,
    /// The segment being written (first sequence, file).
    current: Option<(u64, Arc<File>)>,
}

impl SegmentFiles {
    pub fn new(directory: PathBuf) -> SegmentFiles {
        SegmentFiles { directory, current: None }
    }

    /// The shard directory the segments are in.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The file a write at `position` goes to: the current segment, or a new one (created,
    /// and its directory entry made durable, before the first write to it).
    pub fn file_for(&mut self, position: SegmentPosition) -> Result<Arc<File>, DataDirError> {
        if let Some((first, file)) = &self.current {
            if *first == position.first_sequence {
                return Ok(Arc::clone(file));
            }
        }
        let path = self.directory.join(segment_name(position.first_sequence));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        sync_directory(&self.directory)?;
        let file = Arc::new(file);
        self.current = Some((position.first_sequence, Arc::clone(&file)));
        Ok(file)
    }
}
