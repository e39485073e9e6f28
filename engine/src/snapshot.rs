//! The bytes of an engine snapshot: a little-endian writer and a bounds-checked reader, and
//! the error a snapshot that does not decode gives (docs/JOURNAL.md, "Snapshots").
//!
//! A snapshot is the engine's *exact* state, table layout included: a FixedMap entry goes
//! back to the slot it was in, the free list and the timer lists keep their order. Replay
//! of the journal after a snapshot must hand out the same reservation ids and fire the same
//! timers in the same order as the live engine did, so "equivalent" state is not enough.
//!
//! The reader never panics on any input: every read is bounds-checked, every count is
//! checked against the capacity it fills before anything is allocated, and the restored
//! engine is checked against invariants 1–5 before it is handed out.

use core::fmt;

use crate::violation::Violation;

/// Why snapshot bytes could not be turned back into an engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// The bytes end before `offset + wanted`.
    Truncated { offset: usize, wanted: usize },
    /// The bytes do not start with the engine snapshot magic.
    Magic,
    /// A format version this build does not read.
    Version(u32),
    /// The snapshot was taken with a different engine configuration (the tables' layout
    /// depends on their capacities).
    Config { field: &'static str, snapshot: u64, expected: u64 },
    /// The snapshot belongs to another shard or shard count.
    Placement { snapshot: (u32, u32), expected: (u32, u32) },
    /// A value out of its range, or structure that does not hold (`what`), at `offset`.
    Invalid { what: &'static str, offset: usize },
    /// Bytes left after the last section.
    Trailing { bytes: usize },
    /// The restored state breaks an invariant.
    Invariant(Violation),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Truncated { offset, wanted } => {
                write!(
                    formatter,
                    "engine state ends at byte {offset} where {wanted} more were expected"
                )
            }
            SnapshotError::Magic => write!(formatter, "not an engine snapshot (bad magic)"),
            SnapshotError::Version(version) => {
                write!(formatter, "engine snapshot version {version} is not readable by this build")
            }
            SnapshotError::Config { field, snapshot, expected } => write!(
                formatter,
                "taken with {field} = {snapshot}, but the server is configured with {expected} \
                 (capacities must not change across a restart)"
            ),
            SnapshotError::Placement { snapshot, expected } => write!(
                formatter,
                "state of shard {} of {}, expected shard {} of {}",
                snapshot.0, snapshot.1, expected.0, expected.1
            ),
            SnapshotError::Invalid { what, offset } => {
                write!(formatter, "invalid engine state at byte {offset}: {what}")
            }
            SnapshotError::Trailing { bytes } => {
                write!(formatter, "{bytes} bytes after the end of the engine state")
            }
            SnapshotError::Invariant(violation) => write!(formatter, "restored state: {violation}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// Appends little-endian values to a byte vector.
#[derive(Debug, Default)]
pub struct SnapshotWriter {
    pub bytes: Vec<u8>,
}

impl SnapshotWriter {
    pub fn with_capacity(bytes: usize) -> SnapshotWriter {
        SnapshotWriter { bytes: Vec::with_capacity(bytes) }
    }

    #[inline]
    pub fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    #[inline]
    pub fn bool(&mut self, value: bool) {
        self.bytes.push(u8::from(value));
    }

    #[inline]
    pub fn u16(&mut self, value: u16) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    #[inline]
    pub fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    #[inline]
    pub fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// A length or count, written as u64 (`usize` is not a portable width).
    pub fn count(&mut self, value: usize) {
        self.u64(value as u64);
    }
}

/// Reads what [`SnapshotWriter`] wrote, refusing to read past the end.
#[derive(Debug)]
pub struct SnapshotReader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> SnapshotReader<'a> {
    pub fn new(bytes: &'a [u8]) -> SnapshotReader<'a> {
        SnapshotReader { bytes, offset: 0 }
    }

    /// Where the next read starts (for error messages).
    pub fn offset(&self) -> usize {
        self.offset
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    /// An `Invalid` error at the current offset.
    pub fn invalid(&self, what: &'static str) -> SnapshotError {
        SnapshotError::Invalid { what, offset: self.offset }
    }

    pub fn take(&mut self, wanted: usize) -> Result<&'a [u8], SnapshotError> {
        if self.remaining() < wanted {
            return Err(SnapshotError::Truncated { offset: self.offset, wanted });
        }
        let taken = &self.bytes[self.offset..self.offset + wanted];
        self.offset += wanted;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut array = [0_u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    pub fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn bool(&mut self) -> Result<bool, SnapshotError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(SnapshotError::Invalid {
                what: "a bool that is neither 0 nor 1",
                offset: self.offset - 1,
            }),
        }
    }

    pub fn u16(&mut self) -> Result<u16, SnapshotError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A count, refused above `max` (checked before anything is sized by it).
    pub fn count(&mut self, max: usize, what: &'static str) -> Result<usize, SnapshotError> {
        let offset = self.offset;
        let value = self.u64()?;
        if value > max as u64 {
            return Err(SnapshotError::Invalid { what, offset });
        }
        Ok(value as usize)
    }

    /// Every byte must have been read.
    pub fn finish(self) -> Result<(), SnapshotError> {
        match self.remaining() {
            0 => Ok(()),
            bytes => Err(SnapshotError::Trailing { bytes }),
        }
    }
}
