//! Reading a shard's journal back: every entry validated (header and body checksums, the
//! hash chain, sequence numbers without gaps across segment files), a torn tail told apart
//! from corruption before it.
//!
//! A **torn tail** is what a crash during the last write leaves at the end of the last
//! segment: an entry that fails validation, with no valid entry anywhere after it. It holds
//! only unacknowledged work (an acknowledgement waits for the write's fdatasync), so it is
//! truncated, and the recovery log says how many bytes. Anything else that fails validation
//! (a bad checksum followed by valid entries, a broken chain, a gap, a segment that does not
//! start where the previous one ended) is **corruption**: recovery refuses to start and the
//! error names the file, the offset and what is wrong. Nothing is ever skipped silently.

use super::codec::{decode_input, CodecError, Input};
use super::format::{decode_entry, decode_header, EntryError, EntryHeader, ENTRY_ALIGNMENT};

/// One segment file's bytes, named by the sequence of its first entry.
#[derive(Debug)]
pub struct SegmentBytes<'a> {
    pub first_sequence: u64,
    /// For error messages (a file path, or a simulated name).
    pub name: String,
    pub bytes: &'a [u8],
}

/// What is wrong with a journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanError {
    /// An entry fails validation and valid entries follow it (or it is not in the last
    /// segment): corruption, not a torn write.
    Corrupt { file: String, offset: u64, error: EntryError },
    /// An entry's inputs do not decode (its checksums are valid: written by a broken build).
    BadInput { file: String, offset: u64, error: CodecError },
    /// An entry has the wrong sequence number (a gap, a repeat, a reordering).
    Sequence { file: String, offset: u64, expected: u64, found: u64 },
    /// An entry's `checksum_previous` is not the previous entry's checksum.
    Chain { file: String, offset: u64, sequence: u64 },
    /// An entry belongs to another shard.
    Shard { file: String, offset: u64, expected: u32, found: u32 },
    /// A segment's name does not match its first entry, or segments are missing.
    Segment { file: String, reason: String },
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanError::Corrupt { file, offset, error } => {
                write!(formatter, "{file}: offset {offset}: {error}, and valid entries follow (corruption, not a torn write)")
            }
            ScanError::BadInput { file, offset, error } => {
                write!(formatter, "{file}: offset {offset}: entry with an undecodable input: {error}")
            }
            ScanError::Sequence { file, offset, expected, found } => write!(
                formatter,
                "{file}: offset {offset}: sequence {found} where {expected} was expected (a gap or a reordering)"
            ),
            ScanError::Chain { file, offset, sequence } => write!(
                formatter,
                "{file}: offset {offset}: entry {sequence} does not chain to the previous entry"
            ),
            ScanError::Shard { file, offset, expected, found } => write!(
                formatter,
                "{file}: offset {offset}: entry of shard {found} in shard {expected}'s journal"
            ),
            ScanError::Segment { file, reason } => write!(formatter, "{file}: {reason}"),
        }
    }
}

impl std::error::Error for ScanError {}

/// Where an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryPlace {
    /// Index into the segments given to `scan`.
    pub segment: usize,
    pub offset: u64,
    pub size: u64,
}

/// A torn tail found (and to be truncated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub segment: usize,
    pub file: String,
    pub offset: u64,
    pub bytes: u64,
    pub error: EntryError,
}

/// A valid journal, as far as it goes.
#[derive(Debug, Default)]
pub struct Scanned {
    pub entries: Vec<(EntryHeader, EntryPlace)>,
    pub torn: Option<TornTail>,
}

/// Validates the segments of shard `shard` (sorted by first sequence). `first_sequence`:
/// the sequence the first entry must have (1, or the one after a snapshot's entry), and
/// `checksum_previous` what it must chain to (0 for sequence 1: checked only then).
pub fn scan(
    shard: u32,
    segments: &[SegmentBytes<'_>],
    first_sequence: u64,
    checksum_previous: Option<u64>,
) -> Result<Scanned, ScanError> {
    let mut scanned = Scanned::default();
    let mut expected = first_sequence;
    let mut previous_checksum = checksum_previous;
    for (index, segment) in segments.iter().enumerate() {
        let last_segment = index + 1 == segments.len();
        let file = &segment.name;
        if segment.bytes.is_empty() {
            if last_segment {
                break;
            }
            return Err(ScanError::Segment {
                file: file.clone(),
                reason: "empty segment before the last".into(),
            });
        }
        let mut offset = 0_usize;
        while offset < segment.bytes.len() {
            let place_offset = offset as u64;
            let (header, body, size) = match decode_entry(&segment.bytes[offset..]) {
                Ok(entry) => entry,
                Err(error) => {
                    let later = valid_header_after(&segment.bytes[offset..], expected);
                    if last_segment && !later {
                        scanned.torn = Some(TornTail {
                            segment: index,
                            file: file.clone(),
                            offset: place_offset,
                            bytes: (segment.bytes.len() - offset) as u64,
                            error,
                        });
                        return Ok(scanned);
                    }
                    return Err(ScanError::Corrupt {
                        file: file.clone(),
                        offset: place_offset,
                        error,
                    });
                }
            };
            if header.shard != shard {
                return Err(ScanError::Shard {
                    file: file.clone(),
                    offset: place_offset,
                    expected: shard,
                    found: header.shard,
                });
            }
            if offset == 0 && header.sequence != segment.first_sequence {
                return Err(ScanError::Segment {
                    file: file.clone(),
                    reason: format!(
                        "named for sequence {} but starts with {}",
                        segment.first_sequence, header.sequence
                    ),
                });
            }
            if header.sequence != expected {
                return Err(ScanError::Sequence {
                    file: file.clone(),
                    offset: place_offset,
                    expected,
                    found: header.sequence,
                });
            }
            if let Some(previous) = previous_checksum {
                if header.checksum_previous != previous {
                    return Err(ScanError::Chain {
                        file: file.clone(),
                        offset: place_offset,
                        sequence: header.sequence,
                    });
                }
            }
            check_inputs(shard, body).map_err(|error| ScanError::BadInput {
                file: file.clone(),
                offset: place_offset,
                error,
            })?;
            scanned.entries.push((
                header,
                EntryPlace { segment: index, offset: place_offset, size: size as u64 },
            ));
            previous_checksum = Some(header.checksum_header);
            expected += 1;
            offset += size;
        }
    }
    Ok(scanned)
}

/// True if a valid entry header with a sequence at or after `sequence` starts at some
/// aligned offset after the first one of `bytes`: then the failing entry is not a torn tail.
fn valid_header_after(bytes: &[u8], sequence: u64) -> bool {
    (ENTRY_ALIGNMENT..bytes.len()).step_by(ENTRY_ALIGNMENT).any(|offset| {
        decode_header(&bytes[offset..]).is_ok_and(|header| header.sequence >= sequence)
    })
}

fn check_inputs(shard: u32, mut body: &[u8]) -> Result<(), CodecError> {
    while !body.is_empty() {
        let (_, used) = decode_input(body, shard)?;
        body = &body[used..];
    }
    Ok(())
}

/// The inputs of an entry body (already validated by `scan`).
pub fn inputs(shard: u32, body: &[u8]) -> impl Iterator<Item = Input> + '_ {
    let mut rest = body;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (input, used) = decode_input(rest, shard).expect("inputs were validated by scan");
        rest = &rest[used..];
        Some(input)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::codec::encode_input;
    use crate::journal::format::encode_entry;

    /// Four entries of shard 2 in one segment.
    fn journal() -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut previous = 0;
        for sequence in 1..=4 {
            let mut body = Vec::new();
            encode_input(&Input::Tick, &mut body);
            previous = encode_entry(2, sequence, 100 + sequence, previous, &body, &mut bytes)
                .checksum_header;
        }
        bytes
    }

    fn segment(bytes: &[u8]) -> Vec<SegmentBytes<'_>> {
        vec![SegmentBytes { first_sequence: 1, name: "seg".into(), bytes }]
    }

    #[test]
    fn a_clean_journal_scans_whole() {
        let bytes = journal();
        let scanned = scan(2, &segment(&bytes), 1, Some(0)).unwrap();
        assert_eq!(scanned.entries.len(), 4);
        assert!(scanned.torn.is_none());
    }

    #[test]
    fn a_cut_tail_is_torn_and_a_flipped_middle_byte_is_corruption() {
        let bytes = journal();
        let entry = bytes.len() / 4;
        // Cut inside the last entry: torn, three entries kept.
        let scanned = scan(2, &segment(&bytes[..bytes.len() - 10]), 1, Some(0)).unwrap();
        assert_eq!(scanned.entries.len(), 3);
        assert_eq!(scanned.torn.as_ref().unwrap().offset, 3 * entry as u64);
        // A byte flipped in the second entry, valid entries after it: corruption.
        let mut damaged = bytes.clone();
        damaged[entry + 30] ^= 1;
        let error = scan(2, &segment(&damaged), 1, Some(0)).unwrap_err();
        assert!(
            matches!(error, ScanError::Corrupt { offset, .. } if offset == entry as u64),
            "{error}"
        );
        // The same flip in the last entry: nothing valid after it, so a torn tail.
        let mut damaged = bytes.clone();
        damaged[3 * entry + 30] ^= 1;
        assert_eq!(scan(2, &segment(&damaged), 1, Some(0)).unwrap().entries.len(), 3);
    }

    #[test]
    fn gaps_chains_and_wrong_shards_are_errors() {
        let bytes = journal();
        let entry = bytes.len() / 4;
        // Drop the second entry: a gap.
        let mut gap = bytes[..entry].to_vec();
        gap.extend_from_slice(&bytes[2 * entry..]);
        assert!(matches!(
            scan(2, &segment(&gap), 1, Some(0)),
            Err(ScanError::Sequence { expected: 2, found: 3, .. })
        ));
        assert!(matches!(scan(3, &segment(&bytes), 1, Some(0)), Err(ScanError::Shard { .. })));
        assert!(matches!(
            scan(2, &segment(&bytes), 1, Some(7)),
            Err(ScanError::Chain { sequence: 1, .. })
        ));
        // Split across two segments, the second misnamed.
        let segments = [
            SegmentBytes { first_sequence: 1, name: "a".into(), bytes: &bytes[..2 * entry] },
            SegmentBytes { first_sequence: 4, name: "b".into(), bytes: &bytes[2 * entry..] },
        ];
        assert!(matches!(scan(2, &segments, 1, Some(0)), Err(ScanError::Segment { .. })));
    }
}
