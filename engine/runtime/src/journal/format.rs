//! A journal entry on disk (docs/JOURNAL.md, "Entries"): an 80-byte header, the body (the
//! inputs of one group commit, see `codec.rs`), and zero padding to a multiple of 16 bytes.
//!
//! ```text
//! offset size field
//!      0    4 magic              "RJNL" (0x4c4e4a52)
//!      4    2 version            1
//!      6    2 kind               1: inputs
//!      8    4 shard
//!     12    4 body_length        bytes of inputs (padding not counted)
//!     16    8 sequence           1, 2, 3, ... per shard, no gaps
//!     24    8 now_ms             the clock every input of the entry was applied at
//!     32    8 term               replication (next stage): 0 until then
//!     40    8 index              replication log index: 0 until then
//!     48    8 checksum_previous  checksum_header of the previous entry (0 for sequence 1)
//!     56    8 checksum_body      xxh3-64 of the body
//!     64    8 reserved           0
//!     72    8 checksum_header    xxh3-64 of bytes 0..72
//! ```
//!
//! `checksum_header` covers `checksum_body` and `checksum_previous`, so the headers form a
//! hash chain over the whole journal: changing any byte of any entry breaks every link after
//! it, and a gap or a reordering is caught by the sequence numbers and the chain.

use xxhash_rust::xxh3::xxh3_64;

pub const ENTRY_MAGIC: u32 = 0x4c4e_4a52;
pub const ENTRY_VERSION: u16 = 1;
pub const ENTRY_KIND_INPUTS: u16 = 1;
pub const ENTRY_HEADER_SIZE: usize = 80;
/// Entries start at multiples of this (so a scan for a later valid header is cheap).
pub const ENTRY_ALIGNMENT: usize = 16;
/// The largest body one entry may have; a pass with more inputs writes several entries.
pub const ENTRY_BODY_MAX: usize = 1 << 20;

/// A decoded entry header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHeader {
    pub shard: u32,
    pub body_length: u32,
    pub sequence: u64,
    pub now_ms: u64,
    pub term: u64,
    pub index: u64,
    pub checksum_previous: u64,
    pub checksum_body: u64,
    pub checksum_header: u64,
}

/// Why bytes are not a valid entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryError {
    /// Fewer bytes than the header (or than header + body) announce.
    Truncated,
    Magic(u32),
    Version(u16),
    Kind(u16),
    /// `checksum_header` does not match the header's bytes.
    HeaderChecksum,
    /// `checksum_body` does not match the body.
    BodyChecksum,
    BodyLength(u32),
    /// A reserved byte or a padding byte is not zero.
    Reserved,
}

impl std::fmt::Display for EntryError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntryError::Truncated => write!(formatter, "truncated entry"),
            EntryError::Magic(magic) => write!(formatter, "bad magic {magic:#010x}"),
            EntryError::Version(version) => write!(formatter, "unknown version {version}"),
            EntryError::Kind(kind) => write!(formatter, "unknown entry kind {kind}"),
            EntryError::HeaderChecksum => write!(formatter, "header checksum mismatch"),
            EntryError::BodyChecksum => write!(formatter, "body checksum mismatch"),
            EntryError::BodyLength(length) => write!(formatter, "body length {length} too large"),
            EntryError::Reserved => write!(formatter, "non-zero reserved or padding bytes"),
        }
    }
}

impl std::error::Error for EntryError {}

/// The on-disk size of an entry with a body of `body_length` bytes.
pub fn entry_size(body_length: usize) -> usize {
    (ENTRY_HEADER_SIZE + body_length).next_multiple_of(ENTRY_ALIGNMENT)
}

/// Appends a complete entry (header, `body`, padding) to `out`; returns its header.
pub fn encode_entry(
    shard: u32,
    sequence: u64,
    now_ms: u64,
    checksum_previous: u64,
    body: &[u8],
    out: &mut Vec<u8>,
) -> EntryHeader {
    assert!(body.len() <= ENTRY_BODY_MAX, "an entry body is at most {ENTRY_BODY_MAX} bytes");
    assert!(sequence >= 1);
    let mut header = EntryHeader {
        shard,
        body_length: body.len() as u32,
        sequence,
        now_ms,
        term: 0,
        index: 0,
        checksum_previous,
        checksum_body: xxh3_64(body),
        checksum_header: 0,
    };
    let mut bytes = header_bytes(&header);
    header.checksum_header = xxh3_64(&bytes[..72]);
    bytes[72..80].copy_from_slice(&header.checksum_header.to_le_bytes());
    let start = out.len();
    out.extend_from_slice(&bytes);
    out.extend_from_slice(body);
    out.resize(start + entry_size(body.len()), 0);
    header
}

fn header_bytes(header: &EntryHeader) -> [u8; ENTRY_HEADER_SIZE] {
    let mut bytes = [0_u8; ENTRY_HEADER_SIZE];
    bytes[0..4].copy_from_slice(&ENTRY_MAGIC.to_le_bytes());
    bytes[4..6].copy_from_slice(&ENTRY_VERSION.to_le_bytes());
    bytes[6..8].copy_from_slice(&ENTRY_KIND_INPUTS.to_le_bytes());
    bytes[8..12].copy_from_slice(&header.shard.to_le_bytes());
    bytes[12..16].copy_from_slice(&header.body_length.to_le_bytes());
    bytes[16..24].copy_from_slice(&header.sequence.to_le_bytes());
    bytes[24..32].copy_from_slice(&header.now_ms.to_le_bytes());
    bytes[32..40].copy_from_slice(&header.term.to_le_bytes());
    bytes[40..48].copy_from_slice(&header.index.to_le_bytes());
    bytes[48..56].copy_from_slice(&header.checksum_previous.to_le_bytes());
    bytes[56..64].copy_from_slice(&header.checksum_body.to_le_bytes());
    // 64..72 reserved, 72..80 checksum_header (filled by the caller).
    bytes[72..80].copy_from_slice(&header.checksum_header.to_le_bytes());
    bytes
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

/// Validates the header at the start of `bytes` on its own (magic, version, kind, checksum,
/// reserved bytes, length bound): enough to recognise an entry boundary.
pub fn decode_header(bytes: &[u8]) -> Result<EntryHeader, EntryError> {
    if bytes.len() < ENTRY_HEADER_SIZE {
        return Err(EntryError::Truncated);
    }
    let magic = u32_at(bytes, 0);
    if magic != ENTRY_MAGIC {
        return Err(EntryError::Magic(magic));
    }
    let checksum_header = u64_at(bytes, 72);
    if xxh3_64(&bytes[..72]) != checksum_header {
        return Err(EntryError::HeaderChecksum);
    }
    let version = u16_at(bytes, 4);
    if version != ENTRY_VERSION {
        return Err(EntryError::Version(version));
    }
    let kind = u16_at(bytes, 6);
    if kind != ENTRY_KIND_INPUTS {
        return Err(EntryError::Kind(kind));
    }
    if u64_at(bytes, 64) != 0 {
        return Err(EntryError::Reserved);
    }
    let body_length = u32_at(bytes, 12);
    if body_length as usize > ENTRY_BODY_MAX {
        return Err(EntryError::BodyLength(body_length));
    }
    Ok(EntryHeader {
        shard: u32_at(bytes, 8),
        body_length,
        sequence: u64_at(bytes, 16),
        now_ms: u64_at(bytes, 24),
        term: u64_at(bytes, 32),
        index: u64_at(bytes, 40),
        checksum_previous: u64_at(bytes, 48),
        checksum_body: u64_at(bytes, 56),
        checksum_header,
    })
}

/// Validates the whole entry at the start of `bytes`; returns its header, its body and its
/// on-disk size.
pub fn decode_entry(bytes: &[u8]) -> Result<(EntryHeader, &[u8], usize), EntryError> {
    let header = decode_header(bytes)?;
    let body_length = header.body_length as usize;
    let size = entry_size(body_length);
    if bytes.len() < size {
        return Err(EntryError::Truncated);
    }
    let body = &bytes[ENTRY_HEADER_SIZE..ENTRY_HEADER_SIZE + body_length];
    if xxh3_64(body) != header.checksum_body {
        return Err(EntryError::BodyChecksum);
    }
    if bytes[ENTRY_HEADER_SIZE + body_length..size].iter().any(|byte| *byte != 0) {
        return Err(EntryError::Reserved);
    }
    Ok((header, body, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_chain() {
        let mut bytes = Vec::new();
        let first = encode_entry(3, 1, 1_000, 0, b"abc", &mut bytes);
        let second = encode_entry(3, 2, 1_001, first.checksum_header, &[], &mut bytes);
        assert_eq!(bytes.len(), entry_size(3) + entry_size(0));
        assert_eq!(entry_size(3) % ENTRY_ALIGNMENT, 0);
        let (header, body, size) = decode_entry(&bytes).unwrap();
        assert_eq!((header, body), (first, &b"abc"[..]));
        let (header, body, _) = decode_entry(&bytes[size..]).unwrap();
        assert_eq!((header, body.len()), (second, 0));
        assert_eq!(header.checksum_previous, first.checksum_header);
    }

    #[test]
    fn every_damaged_byte_is_detected() {
        let mut bytes = Vec::new();
        encode_entry(1, 7, 5, 99, b"some inputs", &mut bytes);
        for position in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x10;
            assert!(decode_entry(&damaged).is_err(), "byte {position} changed unnoticed");
        }
        for end in 0..bytes.len() {
            assert!(decode_entry(&bytes[..end]).is_err(), "cut at {end} unnoticed");
        }
    }
}
