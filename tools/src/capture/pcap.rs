//! Streaming readers for the two tcpdump file formats: classic pcap and pcapng.
//!
//! - **pcap**: a 24-byte file header (magic `a1b2c3d4` for microsecond or `a1b23c4d` for
//!   nanosecond timestamps, in the writer's byte order, which the magic reveals), then
//!   records of a 16-byte header (seconds, fraction, captured length, original length) and
//!   the captured bytes. One link type for the whole file.
//! - **pcapng**: blocks of `type, total length, body, total length`. A Section Header Block
//!   (SHB) sets the byte order of its section (the byte-order magic `1a2b3c4d` tells which)
//!   and forgets the interfaces of the section before; Interface Description Blocks (IDB)
//!   give each interface its link type, snap length and timestamp resolution
//!   (`if_tsresol`, default microseconds) and offset (`if_tsoffset`); packets come in
//!   Enhanced Packet Blocks (EPB, with an interface id and a 64-bit timestamp), Simple
//!   Packet Blocks (SPB: interface 0, no timestamp) or the obsolete Packet Block. Every
//!   other block type is skipped by its length.
//!
//! The reader reads the file once, front to back, holding one packet at a time (memory does
//! not grow with the file). Everything is validated: a file that ends inside a structure or
//! carries an impossible value is an error naming the byte offset of the structure, never a
//! panic and never a silently shortened result.

use std::fmt;
use std::io::{self, Read};

/// The largest packet (captured bytes) accepted: libpcap's `MAXIMUM_SNAPLEN`. A record
/// claiming more is taken for corruption rather than allocated.
pub const MAX_PACKET_BYTES: u32 = 262_144;
/// The largest pcapng block accepted (16 MiB; a packet block holds at most
/// [`MAX_PACKET_BYTES`] plus options). Larger blocks of a type this reader skips are not
/// held in memory and may be any size.
pub const MAX_BLOCK_BYTES: u32 = 16 << 20;
/// Interfaces one pcapng section may describe (a guard against a corrupt file that is all
/// IDBs; real captures have a handful).
pub const MAX_INTERFACES: usize = 4096;

const PCAP_MICROS: u32 = 0xa1b2_c3d4;
const PCAP_NANOS: u32 = 0xa1b2_3c4d;
const BLOCK_SHB: u32 = 0x0a0d_0d0a;
const BLOCK_IDB: u32 = 0x0000_0001;
const BLOCK_PACKET_OBSOLETE: u32 = 0x0000_0002;
const BLOCK_SPB: u32 = 0x0000_0003;
const BLOCK_EPB: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const OPTION_END: u16 = 0;
const OPTION_IF_TSRESOL: u16 = 9;
const OPTION_IF_TSOFFSET: u16 = 14;

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
    if [little, big].iter().any(|&magic| magic == PCAP_MICROS || magic == PCAP_NANOS) {
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
    /// The file ends inside a structure: `needed` bytes from `offset`, only `available`.
    Truncated { offset: u64, what: &'static str, needed: u64, available: u64 },
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
            PcapError::Truncated { offset, what, needed, available } => write!(
                formatter,
                "truncated file: the {what} at byte offset {offset} needs {needed} bytes, \
                 but only {available} remain"
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

#[derive(Debug)]
enum State {
    Pcap { big_endian: bool, nanos: bool, link_type: u32 },
    PcapNg { big_endian: bool, interfaces: Vec<Interface>, last_timestamp_ns: u64 },
}

/// Reads packets from a pcap or pcapng stream, one at a time.
#[derive(Debug)]
pub struct PacketReader<R> {
    input: R,
    /// Bytes consumed so far (the offset of the next unread byte).
    offset: u64,
    state: State,
    /// The current packet's bytes (pcap) or block body (pcapng), reused.
    buffer: Vec<u8>,
    format: Format,
}

impl<R: Read> PacketReader<R> {
    /// Reads the file header (pcap) or the first Section Header Block (pcapng).
    pub fn new(mut input: R) -> Result<PacketReader<R>, PcapError> {
        let mut magic = [0_u8; 4];
        let got = read_full(&mut input, &mut magic, 0)?;
        if got < magic.len() {
            return Err(PcapError::Truncated {
                offset: 0,
                what: "file header",
                needed: 4,
                available: got as u64,
            });
        }
        match detect(&magic) {
            Format::Pcap => PacketReader::pcap(input, magic),
            Format::PcapNg => {
                let mut reader = PacketReader {
                    input,
                    offset: 4,
                    state: State::PcapNg {
                        big_endian: false,
                        interfaces: Vec::new(),
                        last_timestamp_ns: 0,
                    },
                    buffer: Vec::new(),
                    format: Format::PcapNg,
                };
                reader.section_header(0)?;
                Ok(reader)
            }
            _ => Err(PcapError::UnknownMagic { magic }),
        }
    }

    /// The file's format ([`Format::Pcap`] or [`Format::PcapNg`]).
    pub fn format(&self) -> Format {
        self.format
    }

    fn pcap(mut input: R, magic: [u8; 4]) -> Result<PacketReader<R>, PcapError> {
        let mut rest = [0_u8; 20];
        let got = read_full(&mut input, &mut rest, 4)?;
        if got < rest.len() {
            return Err(PcapError::Truncated {
                offset: 0,
                what: "pcap file header",
                needed: 24,
                available: 4 + got as u64,
            });
        }
        let little = u32::from_le_bytes(magic);
        let big_endian = !(little == PCAP_MICROS || little == PCAP_NANOS);
        let nanos = if big_endian { u32::from_be_bytes(magic) } else { little } == PCAP_NANOS;
        let major = u16_at(&rest, 0, big_endian);
        let minor = u16_at(&rest, 2, big_endian);
        // 2.4 is the only version ever written; 2.3 files differ only in a field order
        // libpcap itself swaps back, and nothing writes them any more.
        if major != 2 || minor != 4 {
            return Err(PcapError::Version { offset: 4, major, minor });
        }
        // Bits 0..16: the link type; bits 26..32 say whether frames end in an FCS, which
        // the IP length fields make irrelevant here.
        let link_type = u32_at(&rest, 16, big_endian) & 0xffff;
        Ok(PacketReader {
            input,
            offset: 24,
            state: State::Pcap { big_endian, nanos, link_type },
            buffer: Vec::new(),
            format: Format::Pcap,
        })
    }

    /// The next packet, or `None` at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, PcapError> {
        match self.state {
            State::Pcap { big_endian, nanos, link_type } => {
                self.next_pcap(big_endian, nanos, link_type)
            }
            State::PcapNg { .. } => self.next_pcapng(),
        }
    }

    fn next_pcap(
        &mut self,
        big_endian: bool,
        nanos: bool,
        link_type: u32,
    ) -> Result<Option<Packet<'_>>, PcapError> {
        let start = self.offset;
        let mut header = [0_u8; 16];
        let got = read_full(&mut self.input, &mut header, start)?;
        if got == 0 {
            return Ok(None);
        }
        if got < header.len() {
            return Err(PcapError::Truncated {
                offset: start,
                what: "packet record header",
                needed: 16,
                available: got as u64,
            });
        }
        let seconds = u64::from(u32_at(&header, 0, big_endian));
        let fraction = u64::from(u32_at(&header, 4, big_endian));
        let captured = u32_at(&header, 8, big_endian);
        let original_length = u32_at(&header, 12, big_endian);
        let (fraction_max, fraction_ns) =
            if nanos { (1_000_000_000, 1) } else { (1_000_000, 1000) };
        if fraction >= fraction_max {
            let unit = if nanos { "nanoseconds" } else { "microseconds" };
            return Err(corrupt(
                start,
                format!(
                    "packet record timestamp has {fraction} {unit} (at most {})",
                    fraction_max - 1
                ),
            ));
        }
        if captured > MAX_PACKET_BYTES {
            return Err(corrupt(
                start,
                format!(
                    "packet record claims {captured} captured bytes (at most {MAX_PACKET_BYTES})"
                ),
            ));
        }
        self.offset += 16;
        self.read_body(captured as usize, start, "packet record")?;
        Ok(Some(Packet {
            offset: start,
            timestamp_ns: seconds * 1_000_000_000 + fraction * fraction_ns,
            link_type,
            data: &self.buffer,
            original_length,
        }))
    }

    /// Reads `length` bytes into the buffer; the structure they belong to starts at `start`.
    fn read_body(
        &mut self,
        length: usize,
        start: u64,
        what: &'static str,
    ) -> Result<(), PcapError> {
        self.buffer.clear();
        self.buffer.resize(length, 0);
        let got = read_full(&mut self.input, &mut self.buffer, self.offset)?;
        if got < length {
            return Err(PcapError::Truncated {
                offset: start,
                what,
                needed: self.offset - start + length as u64,
                available: self.offset - start + got as u64,
            });
        }
        self.offset += length as u64;
        Ok(())
    }

    fn next_pcapng(&mut self) -> Result<Option<Packet<'_>>, PcapError> {
        loop {
            let start = self.offset;
            let mut head = [0_u8; 4];
            let got = read_full(&mut self.input, &mut head, start)?;
            if got == 0 {
                return Ok(None);
            }
            if got < head.len() {
                return Err(PcapError::Truncated {
                    offset: start,
                    what: "block header",
                    needed: 8,
                    available: got as u64,
                });
            }
            self.offset += 4;
            let State::PcapNg { big_endian, .. } = self.state else {
                unreachable!("next_pcapng runs on pcapng files only");
            };
            let block_type =
                if big_endian { u32::from_be_bytes(head) } else { u32::from_le_bytes(head) };
            match block_type {
                BLOCK_SHB => self.section_header(start)?,
                BLOCK_IDB => {
                    self.block_body(start, big_endian, "interface description block")?;
                    self.interface_description(start, big_endian)?;
                }
                BLOCK_EPB | BLOCK_SPB | BLOCK_PACKET_OBSOLETE => {
                    self.block_body(start, big_endian, "packet block")?;
                    let (timestamp_ns, link_type, range, original_length) =
                        self.packet_block(start, block_type, big_endian)?;
                    return Ok(Some(Packet {
                        offset: start,
                        timestamp_ns,
                        link_type,
                        data: &self.buffer[range],
                        original_length,
                    }));
                }
                _ => self.skip_block(start, big_endian)?,
            }
        }
    }

    /// Reads a Section Header Block whose type field (4 bytes at `start`) was read.
    fn section_header(&mut self, start: u64) -> Result<(), PcapError> {
        let mut fixed = [0_u8; 8];
        let got = read_full(&mut self.input, &mut fixed, self.offset)?;
        if got < fixed.len() {
            return Err(PcapError::Truncated {
                offset: start,
                what: "section header block",
                needed: 12,
                available: 4 + got as u64,
            });
        }
        // The byte-order magic comes after the length, so it is read first.
        let order = [fixed[4], fixed[5], fixed[6], fixed[7]];
        let big_endian = if u32::from_le_bytes(order) == BYTE_ORDER_MAGIC {
            false
        } else if u32::from_be_bytes(order) == BYTE_ORDER_MAGIC {
            true
        } else {
            return Err(corrupt(
                start + 8,
                format!(
                    "section header block has byte-order magic {:02x} {:02x} {:02x} {:02x} \
                     (expected 1a2b3c4d in either byte order)",
                    order[0], order[1], order[2], order[3]
                ),
            ));
        };
        let length = u32_at(&fixed, 0, big_endian);
        self.check_block_length(start, length, 28, "section header block")?;
        self.offset += 8;
        // The body after the byte-order magic: version, section length, options.
        self.read_body(length as usize - 16, start, "section header block")?;
        let major = u16_at(&self.buffer, 0, big_endian);
        let minor = u16_at(&self.buffer, 2, big_endian);
        if major != 1 {
            return Err(PcapError::Version { offset: start, major, minor });
        }
        self.block_trailer(start, length, big_endian)?;
        // A new section: its byte order, and no interfaces until its IDBs.
        self.state = State::PcapNg { big_endian, interfaces: Vec::new(), last_timestamp_ns: 0 };
        Ok(())
    }

    /// Checks a block's total length: at least `minimum`, a multiple of 4, not huge.
    fn check_block_length(
        &self,
        start: u64,
        length: u32,
        minimum: u32,
        what: &str,
    ) -> Result<(), PcapError> {
        if length < minimum || !length.is_multiple_of(4) || length > MAX_BLOCK_BYTES {
            return Err(corrupt(
                start,
                format!(
                    "{what} has total length {length} (a multiple of 4, {minimum} to \
                     {MAX_BLOCK_BYTES} expected)"
                ),
            ));
        }
        Ok(())
    }

    /// Reads the length and body of a block whose type was read; leaves the body (without
    /// the trailing length, which is checked) in the buffer.
    fn block_body(
        &mut self,
        start: u64,
        big_endian: bool,
        what: &'static str,
    ) -> Result<(), PcapError> {
        let length = self.block_length(start, big_endian)?;
        self.check_block_length(start, length, 12, what)?;
        self.read_body(length as usize - 12, start, what)?;
        self.block_trailer(start, length, big_endian)
    }

    fn block_length(&mut self, start: u64, big_endian: bool) -> Result<u32, PcapError> {
        let mut length = [0_u8; 4];
        let got = read_full(&mut self.input, &mut length, self.offset)?;
        if got < length.len() {
            return Err(PcapError::Truncated {
                offset: start,
                what: "block header",
                needed: 8,
                available: 4 + got as u64,
            });
        }
        self.offset += 4;
        Ok(u32_at(&length, 0, big_endian))
    }

    /// Reads the trailing copy of the block length and checks it matches.
    fn block_trailer(
        &mut self,
        start: u64,
        length: u32,
        big_endian: bool,
    ) -> Result<(), PcapError> {
        let mut trailer = [0_u8; 4];
        let got = read_full(&mut self.input, &mut trailer, self.offset)?;
        if got < trailer.len() {
            return Err(PcapError::Truncated {
                offset: start,
                what: "block",
                needed: u64::from(length),
                available: self.offset - start + got as u64,
            });
        }
        let repeated = u32_at(&trailer, 0, big_endian);
        if repeated != length {
            return Err(corrupt(
                self.offset,
                format!(
                    "the block at byte offset {start} has total length {length} but its \
                     trailing copy says {repeated}"
                ),
            ));
        }
        self.offset += 4;
        Ok(())
    }

    /// Skips a block of a type this reader does not use, without holding it in memory.
    fn skip_block(&mut self, start: u64, big_endian: bool) -> Result<(), PcapError> {
        let length = self.block_length(start, big_endian)?;
        if length < 12 || !length.is_multiple_of(4) {
            return Err(corrupt(
                start,
                format!("block has total length {length} (a multiple of 4, at least 12 expected)"),
            ));
        }
        let body = u64::from(length) - 12;
        let skipped = io::copy(&mut (&mut self.input).take(body), &mut io::sink())
            .map_err(|source| PcapError::Io { offset: self.offset, source })?;
        if skipped < body {
            return Err(PcapError::Truncated {
                offset: start,
                what: "block",
                needed: u64::from(length),
                available: 8 + skipped,
            });
        }
        self.offset += body;
        self.block_trailer(start, length, big_endian)
    }

    /// Parses the Interface Description Block body in the buffer.
    fn interface_description(&mut self, start: u64, big_endian: bool) -> Result<(), PcapError> {
        let body = &self.buffer;
        if body.len() < 8 {
            return Err(corrupt(start, "interface description block shorter than 20 bytes"));
        }
        let mut interface = Interface {
            link_type: u32::from(u16_at(body, 0, big_endian)),
            snap_length: u32_at(body, 4, big_endian),
            resolution: Resolution::Decimal(6),
            offset_seconds: 0,
        };
        for BlockOption { code, value, offset: at } in options(body, 8, big_endian, start + 8)? {
            match code {
                OPTION_IF_TSRESOL => {
                    let [byte] = value else {
                        return Err(corrupt(
                            at,
                            format!("if_tsresol has {} bytes (1 expected)", value.len()),
                        ));
                    };
                    let exponent = u32::from(byte & 0x7f);
                    // 10^-30 s or 2^-64 s are already far below anything a clock measures;
                    // larger exponents would overflow the conversion.
                    interface.resolution = if byte & 0x80 == 0 {
                        if exponent > 30 {
                            return Err(corrupt(at, format!("if_tsresol 10^-{exponent} s")));
                        }
                        Resolution::Decimal(exponent)
                    } else {
                        if exponent > 64 {
                            return Err(corrupt(at, format!("if_tsresol 2^-{exponent} s")));
                        }
                        Resolution::Binary(exponent)
                    };
                }
                OPTION_IF_TSOFFSET => {
                    let Ok(bytes) = <[u8; 8]>::try_from(value) else {
                        return Err(corrupt(
                            at,
                            format!("if_tsoffset has {} bytes (8 expected)", value.len()),
                        ));
                    };
                    interface.offset_seconds = if big_endian {
                        i64::from_be_bytes(bytes)
                    } else {
                        i64::from_le_bytes(bytes)
                    };
                }
                _ => {}
            }
        }
        let State::PcapNg { interfaces, .. } = &mut self.state else {
            unreachable!("interface descriptions occur in pcapng files only");
        };
        if interfaces.len() >= MAX_INTERFACES {
            return Err(corrupt(
                start,
                format!("more than {MAX_INTERFACES} interfaces in one section"),
            ));
        }
        interfaces.push(interface);
        Ok(())
    }

    /// Parses the packet block body in the buffer: (timestamp, link type, the packet's byte
    /// range in the buffer, original length).
    fn packet_block(
        &mut self,
        start: u64,
        block_type: u32,
        big_endian: bool,
    ) -> Result<(u64, u32, std::ops::Range<usize>, u32), PcapError> {
        let State::PcapNg { interfaces, last_timestamp_ns, .. } = &mut self.state else {
            unreachable!("packet blocks occur in pcapng files only");
        };
        let body = &self.buffer;
        let (name, fixed) = match block_type {
            BLOCK_EPB => ("enhanced packet block", 20),
            BLOCK_SPB => ("simple packet block", 4),
            _ => ("packet block", 20),
        };
        if body.len() < fixed {
            return Err(corrupt(
                start,
                format!("{name} body of {} bytes (at least {fixed})", body.len()),
            ));
        }
        let interface_id = match block_type {
            BLOCK_EPB => u32_at(body, 0, big_endian),
            BLOCK_SPB => 0,
            _ => u32::from(u16_at(body, 0, big_endian)),
        };
        let Some(interface) = interfaces.get(interface_id as usize).copied() else {
            return Err(corrupt(
                start,
                format!(
                    "{name} names interface {interface_id}, but the section describes {}",
                    interfaces.len()
                ),
            ));
        };
        let (timestamp_ns, data_start, captured, original_length) = if block_type == BLOCK_SPB {
            // An SPB has no timestamp (the format leaves it undefined): it gets the previous
            // packet's. Its captured length is implied: the original length, cut at the snap
            // length and at the block's end.
            let original_length = u32_at(body, 0, big_endian);
            let mut captured = (original_length as usize).min(body.len() - 4);
            if interface.snap_length != 0 {
                captured = captured.min(interface.snap_length as usize);
            }
            (*last_timestamp_ns, 4, captured, original_length)
        } else {
            let units = (u64::from(u32_at(body, 4, big_endian)) << 32)
                | u64::from(u32_at(body, 8, big_endian));
            let captured = u32_at(body, 12, big_endian);
            let original_length = u32_at(body, 16, big_endian);
            if captured > MAX_PACKET_BYTES || captured as usize > body.len() - 20 {
                return Err(corrupt(
                    start,
                    format!(
                        "{name} claims {captured} captured bytes, but its body holds {}",
                        body.len() - 20
                    ),
                ));
            }
            let timestamp_ns = interface
                .resolution
                .to_ns(units)
                .and_then(|ns| {
                    let offset_ns = i128::from(interface.offset_seconds) * 1_000_000_000;
                    u64::try_from(i128::from(ns) + offset_ns).ok()
                })
                .ok_or_else(|| {
                    corrupt(start, format!("{name} timestamp {units} is out of range"))
                })?;
            (timestamp_ns, 20, captured as usize, original_length)
        };
        *last_timestamp_ns = timestamp_ns;
        Ok((timestamp_ns, interface.link_type, data_start..data_start + captured, original_length))
    }
}

/// One pcapng option.
#[derive(Debug)]
struct BlockOption<'a> {
    code: u16,
    value: &'a [u8],
    /// Byte offset of the option in the file.
    offset: u64,
}

/// The options of a pcapng block body from index `at` on, until `opt_endofopt` or the end
/// of the body. `body_offset` is the file offset of `body[0]`.
fn options(
    body: &[u8],
    mut at: usize,
    big_endian: bool,
    body_offset: u64,
) -> Result<Vec<BlockOption<'_>>, PcapError> {
    let mut found = Vec::new();
    while at + 4 <= body.len() {
        let code = u16_at(body, at, big_endian);
        let length = usize::from(u16_at(body, at + 2, big_endian));
        if code == OPTION_END {
            break;
        }
        let offset = body_offset + at as u64;
        let Some(value) = body.get(at + 4..at + 4 + length) else {
            return Err(corrupt(
                offset,
                format!("option {code} claims {length} bytes, past the end of its block"),
            ));
        };
        found.push(BlockOption { code, value, offset });
        // Values are padded to 4 bytes.
        at += 4 + length.div_ceil(4) * 4;
    }
    Ok(found)
}

/// Reads until `buffer` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buffer: &mut [u8], offset: u64) -> Result<usize, PcapError> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(PcapError::Io { offset: offset + filled as u64, source }),
        }
    }
    Ok(filled)
}

/// The u16 at `at` (callers check the length first).
fn u16_at(bytes: &[u8], at: usize, big_endian: bool) -> u16 {
    let pair = [bytes[at], bytes[at + 1]];
    if big_endian {
        u16::from_be_bytes(pair)
    } else {
        u16::from_le_bytes(pair)
    }
}

/// The u32 at `at` (callers check the length first).
fn u32_at(bytes: &[u8], at: usize, big_endian: bool) -> u32 {
    let quad = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
    if big_endian {
        u32::from_be_bytes(quad)
    } else {
        u32::from_le_bytes(quad)
    }
}
