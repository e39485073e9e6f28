//! tcpdump's two file formats, classic pcap and pcapng, read with `pcap-parser`
//! (rusticata's streaming parser, fuzzed upstream): it frames the file header, the records
//! and the blocks, checks their lengths (a pcapng block's two length fields must agree) and
//! gives each block's fields in the file's byte order.
//!
//! This module adds what the crate leaves to its callers:
//!
//! - telling the formats apart by their first bytes ([`detect`], which also knows the
//!   Rush capture's magic);
//! - the checks the crate does not make: pcap version 2.4, a timestamp fraction below one
//!   second, at most [`MAX_PACKET_BYTES`] captured per packet, pcapng version 1, packets
//!   naming an interface their section described, at most [`MAX_INTERFACES`] per section,
//!   pcapng blocks of at least 12 bytes (the crate's own check let shorter ones overflow);
//! - pcapng's per-interface link type and timestamps. `if_tsresol` and `if_tsoffset` are
//!   decoded here: the crate reads `if_tsoffset` as little-endian whatever the section's
//!   byte order, and its resolution helper refuses every binary (`2^-n`) resolution;
//! - the obsolete pcapng Packet Block (type 2), which the crate hands over as an unknown
//!   block: its 20-byte header is decoded here;
//! - errors that name the byte offset of the record or block, and a growing read buffer
//!   (64 KiB at first; up to [`MAX_BLOCK_BYTES`] for a block that needs it).
//!
//! The reader reads the file once, front to back, holding at most one record or block
//! (memory does not grow with the file). A file that ends inside a structure or carries an
//! impossible value is an error naming the byte offset of the structure, never a panic and
//! never a silently shortened result.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{self, Chain, Cursor, Read};
use std::rc::Rc;

use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{
    Block, LegacyPcapReader, OptionCode, PcapBlockOwned, PcapError as ParseError, PcapNGReader,
};

/// The largest packet (captured bytes) accepted: libpcap's `MAXIMUM_SNAPLEN`. A record
/// claiming more is taken for corruption rather than allocated.
pub const MAX_PACKET_BYTES: u32 = 262_144;
/// The largest pcapng block accepted (16 MiB; a packet block holds at most
/// [`MAX_PACKET_BYTES`] plus options).
pub const MAX_BLOCK_BYTES: u32 = 16 << 20;
/// Interfaces one pcapng section may describe (a guard against a corrupt file that is all
/// IDBs; real captures have a handful).
pub const MAX_INTERFACES: usize = 4096;
/// The read buffer's first size: most records and blocks are far smaller, and the corrupt
/// files of the tests are read tens of thousands of times.
const BUFFER_BYTES_INITIAL: usize = 64 << 10;

const PCAP_MICROS: u32 = 0xa1b2_c3d4;
const PCAP_NANOS: u32 = 0xa1b2_3c4d;
/// Alexey Kuznetzov's modified pcap (24-byte record headers), which the crate also reads.
const PCAP_MODIFIED: u32 = 0xa1b2_cd34;
const BLOCK_SHB: u32 = 0x0a0d_0d0a;
const BLOCK_IDB: u32 = 0x0000_0001;
const BLOCK_PACKET_OBSOLETE: u32 = 0x0000_0002;
const BLOCK_SPB: u32 = 0x0000_0003;
const BLOCK_EPB: u32 = 0x0000_0006;

/// What a file is, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A classic pcap file (either byte order, micro- or nanosecond timestamps).
    Pcap,
    /// A pcapng file.
    PcapNg,
    /// A Rush capture (`RUSHCAP1`, docs/CAPTURE.md).
    RushCapture,
    /// None of these.
    Unknown,
}

impl fmt::Display for Format {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Format::Pcap => "pcap",
            Format::PcapNg => "pcapng",
            Format::RushCapture => "Rush capture",
            Format::Unknown => "unknown format",
        })
    }
}

/// Tells the format from the first bytes of a file (8 are enough).
pub fn detect(prefix: &[u8]) -> Format {
    if prefix.starts_with(&rush_net::capture::MAGIC) {
        return Format::RushCapture;
    }
    let Some(first) = prefix.get(..4) else {
        return Format::Unknown;
    };
    let little = u32::from_le_bytes([first[0], first[1], first[2], first[3]]);
    let big = u32::from_be_bytes([first[0], first[1], first[2], first[3]]);
    let pcap = |magic: u32| [PCAP_MICROS, PCAP_NANOS, PCAP_MODIFIED].contains(&magic);
    if pcap(little) || pcap(big) {
        Format::Pcap
    } else if big == BLOCK_SHB {
        Format::PcapNg
    } else {
        Format::Unknown
    }
}

/// Why a pcap or pcapng file cannot be read. Offsets are byte offsets into the file.
#[derive(Debug)]
pub enum PcapError {
    /// Reading failed (not a format problem).
    Io { offset: u64, source: io::Error },
    /// The file starts with neither a pcap magic nor a pcapng Section Header Block.
    UnknownMagic { magic: [u8; 4] },
    /// The file ends inside the `what` that starts at `offset`, `available` bytes into it.
    Truncated { offset: u64, what: &'static str, available: u64 },
    /// A format version this reader does not know.
    Version { offset: u64, major: u16, minor: u16 },
    /// An impossible value.
    Corrupt { offset: u64, reason: String },
}

impl fmt::Display for PcapError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PcapError::Io { offset, source } => {
                write!(formatter, "read error at byte offset {offset}: {source}")
            }
            PcapError::UnknownMagic { magic } => write!(
                formatter,
                "not a pcap or pcapng file (it starts with {:02x} {:02x} {:02x} {:02x})",
                magic[0], magic[1], magic[2], magic[3]
            ),
            PcapError::Truncated { offset, what, available } => write!(
                formatter,
                "truncated file: the {what} at byte offset {offset} needs more than the \
                 {available} bytes that remain"
            ),
            PcapError::Version { offset, major, minor } => write!(
                formatter,
                "unsupported format version {major}.{minor} at byte offset {offset}"
            ),
            PcapError::Corrupt { offset, reason } => {
                write!(formatter, "corrupt file at byte offset {offset}: {reason}")
            }
        }
    }
}

impl std::error::Error for PcapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PcapError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn corrupt(offset: u64, reason: impl Into<String>) -> PcapError {
    PcapError::Corrupt { offset, reason: reason.into() }
}

/// One captured packet, borrowed from the reader until the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Byte offset of the packet's record (pcap) or block (pcapng) in the file.
    pub offset: u64,
    /// Capture time, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// The LINKTYPE_ value of the packet's interface (low 16 bits of the pcap field).
    pub link_type: u32,
    /// The captured bytes (possibly fewer than the packet had: see `original_length`).
    pub data: &'a [u8],
    /// The packet's length on the wire.
    pub original_length: u32,
}

/// Timestamp units of a pcapng interface: `10^-n` or `2^-n` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resolution {
    Decimal(u32),
    Binary(u32),
}

impl Resolution {
    /// Nanoseconds in `units`, or `None` past the year 2554 (u64 nanoseconds overflow).
    fn to_ns(self, units: u64) -> Option<u64> {
        // u128 holds u64 × 10^9 and every divisor below, so no step can overflow.
        let units = u128::from(units);
        let ns = match self {
            Resolution::Decimal(digits) if digits <= 9 => units * 10_u128.pow(9 - digits),
            Resolution::Decimal(digits) => units / 10_u128.pow(digits - 9),
            Resolution::Binary(bits) => (units * 1_000_000_000) >> bits,
        };
        u64::try_from(ns).ok()
    }
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    link_type: u32,
    snap_length: u32,
    resolution: Resolution,
    /// `if_tsoffset`: seconds added to every timestamp of the interface.
    offset_seconds: i64,
}

/// What the reader knows of the file beyond the current block.
#[derive(Debug)]
enum Layout {
    Pcap { big_endian: bool, nanos: bool, link_type: u32 },
    PcapNg { big_endian: bool, interfaces: Vec<Interface>, last_timestamp_ns: u64 },
}

/// The input as the crate reads it: every read filled as far as the input allows (the
/// crate parses a file header from its first read alone), the bytes counted and a read
/// error kept (the crate keeps only "read error").
#[derive(Debug)]
struct Source<R> {
    input: R,
    state: Rc<SourceState>,
}

#[derive(Debug, Default)]
struct SourceState {
    bytes_read: Cell<u64>,
    error: RefCell<Option<io::Error>>,
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buffer.len() {
            match self.input.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(count) => filled += count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    let kind = error.kind();
                    *self.state.error.borrow_mut() = Some(error);
                    return Err(kind.into());
                }
            }
        }
        self.state.bytes_read.set(self.state.bytes_read.get() + filled as u64);
        Ok(filled)
    }
}

/// The magic, read to tell the format, put back in front of the rest.
type Input<R> = Source<Chain<Cursor<[u8; 4]>, R>>;

enum Blocks<R: Read> {
    Pcap(LegacyPcapReader<Input<R>>),
    PcapNg(PcapNGReader<Input<R>>),
}

impl<R: Read> Blocks<R> {
    fn reader(&mut self) -> &mut dyn PcapReaderIterator {
        match self {
            Blocks::Pcap(reader) => reader,
            Blocks::PcapNg(reader) => reader,
        }
    }
}

impl<R: Read> fmt::Debug for Blocks<R> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Blocks::Pcap(_) => "Blocks::Pcap",
            Blocks::PcapNg(_) => "Blocks::PcapNg",
        })
    }
}

/// A packet found in a block: where its bytes are in the reader's buffer, and the rest.
struct Found {
    timestamp_ns: u64,
    link_type: u32,
    original_length: u32,
}

/// Reads packets from a pcap or pcapng stream, one at a time.
#[derive(Debug)]
pub struct PacketReader<R: Read> {
    blocks: Blocks<R>,
    layout: Layout,
    source: Rc<SourceState>,
    /// The current packet's bytes (copied out of the crate's buffer, which the next block
    /// reuses).
    packet: Vec<u8>,
}

impl<R: Read> PacketReader<R> {
    /// Reads the file header (pcap) or checks the first Section Header Block (pcapng).
    pub fn new(input: R) -> Result<PacketReader<R>, PcapError> {
        let state = Rc::new(SourceState::default());
        let mut input = input;
        let mut magic = [0_u8; 4];
        let got = read_full(&mut input, &mut magic)
            .map_err(|source| PcapError::Io { offset: 0, source })?;
        if got < magic.len() {
            return Err(PcapError::Truncated {
                offset: 0,
                what: "file header",
                available: got as u64,
            });
        }
        let format = detect(&magic);
        // The source counts every byte as the crate reads it, the magic's again included.
        let input = Source { input: Cursor::new(magic).chain(input), state: Rc::clone(&state) };
        let truncated =
            |what| PcapError::Truncated { offset: 0, what, available: state.bytes_read.get() };
        match format {
            Format::Pcap => {
                let mut reader = LegacyPcapReader::new(BUFFER_BYTES_INITIAL, input).map_err(
                    |error| match error {
                        ParseError::Incomplete(_) => truncated("pcap file header"),
                        ParseError::ReadError => io_error(&state, 0),
                        other => {
                            corrupt(0, format!("malformed pcap file header ({})", reason(&other)))
                        }
                    },
                )?;
                let (length, header) = match reader.next() {
                    Ok((length, PcapBlockOwned::LegacyHeader(header))) => (length, header),
                    _ => unreachable!("a legacy reader's first block is the header it parsed"),
                };
                if (header.version_major, header.version_minor) != (2, 4) {
                    // 2.4 is the only version ever written; 2.3 files differ only in a field
                    // order libpcap itself swaps back, and nothing writes them any more.
                    return Err(PcapError::Version {
                        offset: 4,
                        major: header.version_major,
                        minor: header.version_minor,
                    });
                }
                // Bits 0..16: the link type; bits 26..32 say whether frames end in an FCS,
                // which the IP length fields make irrelevant here.
                let link_type = (header.network.0 as u32) & 0xffff;
                let layout = Layout::Pcap {
                    big_endian: header.is_bigendian(),
                    nanos: header.is_nanosecond_precision(),
                    link_type,
                };
                reader.consume(length);
                Ok(PacketReader {
                    blocks: Blocks::Pcap(reader),
                    layout,
                    source: state,
                    packet: Vec::new(),
                })
            }
            Format::PcapNg => {
                let reader =
                    PcapNGReader::new(BUFFER_BYTES_INITIAL, input).map_err(
                        |error| match error {
                            ParseError::Incomplete(_) => truncated("section header block"),
                            ParseError::ReadError => io_error(&state, 0),
                            other => corrupt(
                                0,
                                format!("malformed section header block ({})", reason(&other)),
                            ),
                        },
                    )?;
                // The first block is read like any other: it sets the byte order.
                let layout = Layout::PcapNg {
                    big_endian: false,
                    interfaces: Vec::new(),
                    last_timestamp_ns: 0,
                };
                Ok(PacketReader {
                    blocks: Blocks::PcapNg(reader),
                    layout,
                    source: state,
                    packet: Vec::new(),
                })
            }
            Format::RushCapture | Format::Unknown => Err(PcapError::UnknownMagic { magic }),
        }
    }

    /// The file's format ([`Format::Pcap`] or [`Format::PcapNg`]).
    pub fn format(&self) -> Format {
        match self.blocks {
            Blocks::Pcap(_) => Format::Pcap,
            Blocks::PcapNg(_) => Format::PcapNg,
        }
    }

    /// The next packet, or `None` at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, PcapError> {
        loop {
            let offset = self.blocks.reader().consumed() as u64;
            self.check_block_length(offset)?;
            let reader = self.blocks.reader();
            match reader.next() {
                Ok((length, block)) => {
                    let found = take_packet(&mut self.layout, block, offset, &mut self.packet)?;
                    self.blocks.reader().consume(length);
                    if let Some(found) = found {
                        return Ok(Some(Packet {
                            offset,
                            timestamp_ns: found.timestamp_ns,
                            link_type: found.link_type,
                            data: &self.packet,
                            original_length: found.original_length,
                        }));
                    }
                }
                Err(ParseError::Eof) => return Ok(None),
                Err(ParseError::Incomplete(_)) => self.refill(offset)?,
                Err(ParseError::BufferTooSmall) => self.grow(offset)?,
                Err(ParseError::UnexpectedEof) => {
                    let available = self.source.bytes_read.get().saturating_sub(offset);
                    let what = self.structure_name();
                    return Err(PcapError::Truncated { offset, what, available });
                }
                Err(ParseError::ReadError) => return Err(io_error(&self.source, offset)),
                Err(error) => {
                    // Owned first: the error borrows the buffer the name is read from.
                    let why = reason(&error);
                    let what = self.structure_name();
                    return Err(corrupt(offset, format!("malformed {what} ({why})")));
                }
            }
        }
    }

    /// pcapng: refuses a block whose total length is below 12 bytes (its type, its length
    /// and its length again) before the crate parses it. pcap-parser 0.17 subtracts 12 from
    /// the length once it is at least the block type's minimum, which it takes to be 4 for a
    /// Process Information Block (type 0x80000001): lengths 4 to 11 overflowed (a panic
    /// with overflow checks, found by the fuzz target `pcap_import`; a wrapped length
    /// without). A Section Header Block is left to the crate, which requires 28 bytes of it
    /// and reads its length in the block's own byte order.
    fn check_block_length(&mut self, offset: u64) -> Result<(), PcapError> {
        let Layout::PcapNg { big_endian, .. } = self.layout else {
            return Ok(());
        };
        let data = self.blocks.reader().data();
        let (Some(block_type), Some(length)) =
            (u32_at(data, 0, big_endian), u32_at(data, 4, big_endian))
        else {
            return Ok(()); // The crate asks for the rest of the block header.
        };
        if block_type == BLOCK_SHB || length >= 12 {
            return Ok(());
        }
        let what = self.structure_name();
        Err(corrupt(
            offset,
            format!("{what} has total length {length} (at least 12: its type and lengths)"),
        ))
    }

    /// The crate needs more bytes for the structure at `offset`: reads them, unless the
    /// structure is all there already (then its fields are inconsistent) or the buffer is
    /// full (then it grows).
    fn refill(&mut self, offset: u64) -> Result<(), PcapError> {
        if let Layout::PcapNg { big_endian, .. } = self.layout {
            // The crate parses a pcapng block's fields within its total length, and asks
            // for more input when a field claims more than that: more input can never
            // help, and waiting for it would read the whole file.
            let data = self.blocks.reader().data();
            let length = u32_at(data, 4, big_endian).map(|length| length as usize);
            if let Some(length) = length.filter(|&length| length >= 12 && data.len() >= length) {
                let what = self.structure_name();
                return Err(corrupt(
                    offset,
                    format!("malformed {what} (its fields run past its total length {length})"),
                ));
            }
        }
        let before = self.source.bytes_read.get();
        let reader = self.blocks.reader();
        if reader.refill().is_err() {
            return Err(io_error(&self.source, offset));
        }
        if self.source.bytes_read.get() == before && !self.blocks.reader().reader_exhausted() {
            // No room left to read into: the structure is larger than the buffer.
            return self.grow(offset);
        }
        Ok(())
    }

    /// What starts at the reader's position: a pcap packet record, or a pcapng block by
    /// its type.
    fn structure_name(&mut self) -> &'static str {
        let big_endian = match &self.layout {
            Layout::Pcap { .. } => return "packet record",
            Layout::PcapNg { big_endian, .. } => *big_endian,
        };
        let Some(block_type) = u32_at(self.blocks.reader().data(), 0, big_endian) else {
            return "block header";
        };
        match block_type {
            BLOCK_SHB => "section header block",
            BLOCK_IDB => "interface description block",
            BLOCK_EPB => "enhanced packet block",
            BLOCK_SPB => "simple packet block",
            BLOCK_PACKET_OBSOLETE => "packet block",
            _ => "block",
        }
    }

    /// The record or block at `offset` does not fit in the read buffer: grows the buffer
    /// to hold it, or refuses a length no real capture has.
    fn grow(&mut self, offset: u64) -> Result<(), PcapError> {
        let (length, limit) = match self.layout {
            Layout::Pcap { big_endian, .. } => {
                let data = self.blocks.reader().data();
                let captured = u32_at(data, 8, big_endian).unwrap_or(u32::MAX);
                if captured > MAX_PACKET_BYTES {
                    return Err(corrupt(
                        offset,
                        format!(
                            "packet record claims {captured} captured bytes (at most \
                             {MAX_PACKET_BYTES})"
                        ),
                    ));
                }
                // The record header (24 bytes in the modified format) and the packet.
                (captured as usize + 24, MAX_PACKET_BYTES as usize + 24)
            }
            Layout::PcapNg { big_endian, .. } => {
                let data = self.blocks.reader().data();
                let length = u32_at(data, 4, big_endian).unwrap_or(u32::MAX);
                if length > MAX_BLOCK_BYTES {
                    let what = self.structure_name();
                    return Err(corrupt(
                        offset,
                        format!("{what} has total length {length} (at most {MAX_BLOCK_BYTES})"),
                    ));
                }
                (length as usize, MAX_BLOCK_BYTES as usize)
            }
        };
        // Twice the structure, so that the next ones of its size fit without a shift.
        let reader = self.blocks.reader();
        let size = (length.min(limit) * 2).max(BUFFER_BYTES_INITIAL);
        if !reader.grow(size) {
            // Already this large: the crate still wants more, which a valid length never does.
            return Err(corrupt(
                offset,
                format!("{} larger than its length", self.structure_name()),
            ));
        }
        if reader.refill().is_err() {
            return Err(io_error(&self.source, offset));
        }
        Ok(())
    }
}

/// Why the crate refused a structure, without the bytes its parse errors carry (they can
/// be a whole block).
fn reason<I>(error: &ParseError<I>) -> String {
    match error {
        ParseError::NomError(_, kind) | ParseError::OwnedNomError(_, kind) => {
            format!("{kind:?} failed")
        }
        ParseError::HeaderNotRecognized => "not recognized".to_string(),
        ParseError::Eof | ParseError::UnexpectedEof | ParseError::Incomplete(_) => {
            "cut short".to_string()
        }
        ParseError::BufferTooSmall => "too large".to_string(),
        ParseError::ReadError => "read error".to_string(),
    }
}

/// Reads until `buffer` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// The I/O error the source kept, at `offset`.
fn io_error(state: &SourceState, offset: u64) -> PcapError {
    let source =
        state.error.borrow_mut().take().unwrap_or_else(|| io::Error::other("the input failed"));
    PcapError::Io { offset, source }
}

/// Handles one block: a packet's bytes are copied into `packet` and described; a header or
/// description block updates `layout`; anything else is skipped.
fn take_packet(
    layout: &mut Layout,
    block: PcapBlockOwned<'_>,
    offset: u64,
    packet: &mut Vec<u8>,
) -> Result<Option<Found>, PcapError> {
    match (layout, block) {
        (Layout::Pcap { big_endian: _, nanos, link_type }, PcapBlockOwned::Legacy(record)) => {
            let (fraction_max, fraction_ns) =
                if *nanos { (1_000_000_000, 1) } else { (1_000_000, 1000) };
            let fraction = u64::from(record.ts_usec);
            if fraction >= fraction_max {
                let unit = if *nanos { "nanoseconds" } else { "microseconds" };
                return Err(corrupt(
                    offset,
                    format!(
                        "packet record timestamp has {fraction} {unit} (at most {})",
                        fraction_max - 1
                    ),
                ));
            }
            if record.caplen > MAX_PACKET_BYTES {
                return Err(corrupt(
                    offset,
                    format!(
                        "packet record claims {} captured bytes (at most {MAX_PACKET_BYTES})",
                        record.caplen
                    ),
                ));
            }
            packet.clear();
            packet.extend_from_slice(record.data);
            Ok(Some(Found {
                timestamp_ns: u64::from(record.ts_sec) * 1_000_000_000 + fraction * fraction_ns,
                link_type: *link_type,
                original_length: record.origlen,
            }))
        }
        (Layout::Pcap { .. }, _) => Ok(None),
        (layout @ Layout::PcapNg { .. }, PcapBlockOwned::NG(block)) => {
            pcapng_block(layout, block, offset, packet)
        }
        (Layout::PcapNg { .. }, _) => Ok(None),
    }
}

fn pcapng_block(
    layout: &mut Layout,
    block: Block<'_>,
    offset: u64,
    packet: &mut Vec<u8>,
) -> Result<Option<Found>, PcapError> {
    let Layout::PcapNg { big_endian, interfaces, last_timestamp_ns } = layout else {
        unreachable!("pcapng blocks come from a pcapng reader");
    };
    match block {
        Block::SectionHeader(section) => {
            if section.major_version != 1 {
                return Err(PcapError::Version {
                    offset,
                    major: section.major_version,
                    minor: section.minor_version,
                });
            }
            // A new section: its byte order, and no interfaces until its IDBs.
            *big_endian = section.big_endian();
            interfaces.clear();
            *last_timestamp_ns = 0;
            Ok(None)
        }
        Block::InterfaceDescription(description) => {
            if interfaces.len() >= MAX_INTERFACES {
                return Err(corrupt(
                    offset,
                    format!("more than {MAX_INTERFACES} interfaces in one section"),
                ));
            }
            // The crate stops at the first option that does not parse and drops the rest,
            // which could be this interface's if_tsresol: refuse the block instead. The
            // options fill the body after its 8 fixed bytes (20 with the block's own header
            // and trailer), unless an end-of-options option comes first.
            let area = (description.block_len1 as usize).saturating_sub(20);
            let parsed: usize = description.options.iter().map(|o| 4 + o.value.len()).sum();
            let ended = description.options.iter().any(|o| o.code == OptionCode::EndOfOpt);
            if parsed < area && !ended {
                return Err(corrupt(
                    offset,
                    "interface description block whose options do not parse (one claims more \
                     bytes than the block holds)",
                ));
            }
            let mut interface = Interface {
                link_type: (description.linktype.0 as u32) & 0xffff,
                snap_length: description.snaplen,
                resolution: Resolution::Decimal(6),
                offset_seconds: 0,
            };
            for option in &description.options {
                let value = option.as_bytes().map_err(|_| {
                    corrupt(offset, format!("option {} is longer than its value", option.code.0))
                })?;
                if option.code == OptionCode::IfTsresol {
                    interface.resolution = resolution(value, offset)?;
                } else if option.code == OptionCode::IfTsoffset {
                    let Ok(bytes) = <[u8; 8]>::try_from(value) else {
                        return Err(corrupt(
                            offset,
                            format!("if_tsoffset has {} bytes (8 expected)", value.len()),
                        ));
                    };
                    interface.offset_seconds = if *big_endian {
                        i64::from_be_bytes(bytes)
                    } else {
                        i64::from_le_bytes(bytes)
                    };
                }
            }
            interfaces.push(interface);
            Ok(None)
        }
        Block::EnhancedPacket(enhanced) => {
            let interface = interface(interfaces, enhanced.if_id, "enhanced packet block", offset)?;
            if enhanced.caplen > MAX_PACKET_BYTES {
                return Err(corrupt(
                    offset,
                    format!(
                        "enhanced packet block claims {} captured bytes (at most \
                         {MAX_PACKET_BYTES})",
                        enhanced.caplen
                    ),
                ));
            }
            let units = (u64::from(enhanced.ts_high) << 32) | u64::from(enhanced.ts_low);
            let timestamp_ns = timestamp_ns(&interface, units).ok_or_else(|| {
                corrupt(offset, format!("packet timestamp {units} is out of range"))
            })?;
            *last_timestamp_ns = timestamp_ns;
            packet.clear();
            // The crate framed `caplen` bytes plus padding: the packet is the first `caplen`.
            packet.extend_from_slice(&enhanced.data[..enhanced.caplen as usize]);
            Ok(Some(Found {
                timestamp_ns,
                link_type: interface.link_type,
                original_length: enhanced.origlen,
            }))
        }
        Block::SimplePacket(simple) => {
            let interface = interface(interfaces, 0, "simple packet block", offset)?;
            // An SPB has no timestamp (the format leaves it undefined): it gets the previous
            // packet's. Its captured length is implied: the original length, cut at the snap
            // length and at the block's end.
            let mut captured = (simple.origlen as usize).min(simple.data.len());
            if interface.snap_length != 0 {
                captured = captured.min(interface.snap_length as usize);
            }
            packet.clear();
            packet.extend_from_slice(&simple.data[..captured]);
            Ok(Some(Found {
                timestamp_ns: *last_timestamp_ns,
                link_type: interface.link_type,
                original_length: simple.origlen,
            }))
        }
        Block::Unknown(unknown)
            if unknown.block_type == BLOCK_PACKET_OBSOLETE
                || unknown.block_type == BLOCK_PACKET_OBSOLETE.swap_bytes() =>
        {
            obsolete_packet_block(
                unknown.data,
                *big_endian,
                interfaces,
                last_timestamp_ns,
                offset,
                packet,
            )
        }
        _ => Ok(None),
    }
}

/// The obsolete Packet Block (type 2), decoded here since the crate passes it on unparsed:
/// interface id (u16), drops (u16), timestamp (2 × u32), captured and original length
/// (u32 each), then the packet.
fn obsolete_packet_block(
    body: &[u8],
    big_endian: bool,
    interfaces: &[Interface],
    last_timestamp_ns: &mut u64,
    offset: u64,
    packet: &mut Vec<u8>,
) -> Result<Option<Found>, PcapError> {
    let field = |at: usize| u32_at(body, at, big_endian);
    let (Some(first), Some(high), Some(low), Some(captured), Some(original_length)) =
        (field(0), field(4), field(8), field(12), field(16))
    else {
        return Err(corrupt(
            offset,
            format!("packet block body of {} bytes (at least 20)", body.len()),
        ));
    };
    let interface_id = if big_endian { first >> 16 } else { first & 0xffff };
    let interface = interface(interfaces, interface_id, "packet block", offset)?;
    let data = body
        .get(20..)
        .and_then(|rest| rest.get(..captured as usize))
        .filter(|_| captured <= MAX_PACKET_BYTES)
        .ok_or_else(|| {
            corrupt(offset, format!("packet block claims {captured} captured bytes, past its end"))
        })?;
    let units = (u64::from(high) << 32) | u64::from(low);
    let timestamp_ns = timestamp_ns(&interface, units)
        .ok_or_else(|| corrupt(offset, format!("packet timestamp {units} is out of range")))?;
    *last_timestamp_ns = timestamp_ns;
    packet.clear();
    packet.extend_from_slice(data);
    Ok(Some(Found { timestamp_ns, link_type: interface.link_type, original_length }))
}

fn interface(
    interfaces: &[Interface],
    id: u32,
    what: &str,
    offset: u64,
) -> Result<Interface, PcapError> {
    interfaces.get(id as usize).copied().ok_or_else(|| {
        corrupt(
            offset,
            format!("{what} names interface {id}, but the section describes {}", interfaces.len()),
        )
    })
}

/// `if_tsresol`: one byte, `10^-n` s, or `2^-n` s with the top bit set.
fn resolution(value: &[u8], offset: u64) -> Result<Resolution, PcapError> {
    let [byte] = value else {
        return Err(corrupt(offset, format!("if_tsresol has {} bytes (1 expected)", value.len())));
    };
    let exponent = u32::from(byte & 0x7f);
    // 10^-30 s or 2^-64 s are already far below anything a clock measures; larger
    // exponents would overflow the conversion.
    if byte & 0x80 == 0 {
        if exponent > 30 {
            return Err(corrupt(offset, format!("if_tsresol 10^-{exponent} s")));
        }
        Ok(Resolution::Decimal(exponent))
    } else {
        if exponent > 64 {
            return Err(corrupt(offset, format!("if_tsresol 2^-{exponent} s")));
        }
        Ok(Resolution::Binary(exponent))
    }
}

/// A packet's time in ns since the Unix epoch, or `None` outside u64 nanoseconds.
fn timestamp_ns(interface: &Interface, units: u64) -> Option<u64> {
    let ns = interface.resolution.to_ns(units)?;
    let offset_ns = i128::from(interface.offset_seconds) * 1_000_000_000;
    u64::try_from(i128::from(ns) + offset_ns).ok()
}

/// The u32 at `at`, in the given byte order, if the bytes are there.
fn u32_at(bytes: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let quad: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(if big_endian { u32::from_be_bytes(quad) } else { u32::from_le_bytes(quad) })
}
