//! Decoding errors and their classification.

use core::fmt;

use super::Opcode;

/// The header of a well-framed frame whose contents are invalid: what a server needs to
/// answer BAD_REQUEST and to skip the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameInfo {
    /// The frame's opcode.
    pub opcode: Opcode,
    /// The frame's request id (to echo in the BAD_REQUEST response).
    pub request_id: u64,
    /// The frame's length: the number of bytes to consume to skip it.
    pub length: usize,
}

/// How the reader of a byte stream must react to a [`DecodeError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Not an error: the buffer holds the start of a frame; read more bytes and retry.
    Incomplete,
    /// A well-framed frame with invalid contents. Skip its [`FrameInfo::length`] bytes; a
    /// server answers it with BAD_REQUEST (same opcode and request id) and keeps the
    /// connection.
    FrameLocal,
    /// The stream cannot be resynchronised (the frame boundaries are unknown): close the
    /// connection.
    Fatal,
}

/// Why a byte buffer does not start with a valid frame.
///
/// [`DecodeError::class`] says how to react. Fatal errors are reported as soon as the bytes
/// that show them have arrived, even before the whole frame has; frame-local errors only once
/// the whole frame is in the buffer (so it can be skipped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// The buffer holds a valid prefix of a frame but not all of it: at least `needed` bytes
    /// (in total, from the start of the frame) are required to make progress. Not an error
    /// of the stream.
    Incomplete {
        /// Total number of bytes the buffer must hold before decoding can make progress:
        /// the frame length once the opcode is known, else the header size.
        needed: usize,
    },
    /// The first two bytes are not `52 53`. Fatal.
    BadMagic,
    /// The version byte is not [`VERSION`](super::VERSION). Fatal.
    BadVersion(u8),
    /// The opcode byte names no operation. Fatal.
    UnknownOpcode(u8),
    /// The length field is not the size of this opcode's frame in this direction. Fatal.
    BadLength {
        /// The frame's opcode.
        opcode: Opcode,
        /// The length field.
        length: u16,
        /// The size of this opcode's frame in this direction.
        expected: u16,
    },
    /// The header's flags field is not zero. Frame-local.
    HeaderFlagsNotZero {
        /// The frame.
        frame: FrameInfo,
        /// The flags field.
        flags: u16,
    },
    /// A reserved byte is not zero. Frame-local.
    ReservedNotZero {
        /// The frame.
        frame: FrameInfo,
        /// Offset of the first non-zero reserved byte from the start of the frame.
        offset: usize,
    },
    /// An enumerated field holds a value this version does not define (RESERVE flag bits,
    /// `target_kind`, and in responses the result codes, reservation state and paused
    /// flag). Frame-local.
    InvalidField {
        /// The frame.
        frame: FrameInfo,
        /// The field's name, as in docs/PROTOCOL.md.
        field: &'static str,
    },
}

impl DecodeError {
    /// How the reader must react: wait, skip the frame, or close the connection.
    pub fn class(&self) -> ErrorClass {
        match self {
            DecodeError::Incomplete { .. } => ErrorClass::Incomplete,
            DecodeError::BadMagic
            | DecodeError::BadVersion(_)
            | DecodeError::UnknownOpcode(_)
            | DecodeError::BadLength { .. } => ErrorClass::Fatal,
            DecodeError::HeaderFlagsNotZero { .. }
            | DecodeError::ReservedNotZero { .. }
            | DecodeError::InvalidField { .. } => ErrorClass::FrameLocal,
        }
    }

    /// True if the connection must be closed: the frame boundaries are lost.
    pub fn is_fatal(&self) -> bool {
        self.class() == ErrorClass::Fatal
    }

    /// True for a well-framed frame with invalid contents (answer BAD_REQUEST, keep going).
    pub fn is_frame_local(&self) -> bool {
        self.class() == ErrorClass::FrameLocal
    }

    /// True if the buffer merely needs more bytes.
    pub fn is_incomplete(&self) -> bool {
        self.class() == ErrorClass::Incomplete
    }

    /// The offending frame's header, for frame-local errors.
    pub fn frame(&self) -> Option<FrameInfo> {
        match *self {
            DecodeError::HeaderFlagsNotZero { frame, .. }
            | DecodeError::ReservedNotZero { frame, .. }
            | DecodeError::InvalidField { frame, .. } => Some(frame),
            _ => None,
        }
    }

    /// The offending frame's request id, for frame-local errors.
    pub fn request_id(&self) -> Option<u64> {
        self.frame().map(|frame| frame.request_id)
    }

    /// The offending frame's opcode, when the error is past the opcode byte.
    pub fn opcode(&self) -> Option<Opcode> {
        match *self {
            DecodeError::BadLength { opcode, .. } => Some(opcode),
            _ => self.frame().map(|frame| frame.opcode),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeError::Incomplete { needed } => {
                write!(f, "incomplete frame: {needed} bytes needed")
            }
            DecodeError::BadMagic => f.write_str("bad magic: a frame starts with bytes 52 53"),
            DecodeError::BadVersion(version) => {
                write!(f, "unsupported protocol version {version}")
            }
            DecodeError::UnknownOpcode(opcode) => write!(f, "unknown opcode {opcode:#04x}"),
            DecodeError::BadLength { opcode, length, expected } => {
                write!(f, "bad length {length} for {} (expected {expected})", opcode.name())
            }
            DecodeError::HeaderFlagsNotZero { frame, flags } => write!(
                f,
                "{} request {}: header flags {flags:#06x} are not zero",
                frame.opcode.name(),
                frame.request_id
            ),
            DecodeError::ReservedNotZero { frame, offset } => write!(
                f,
                "{} request {}: reserved byte at offset {offset} is not zero",
                frame.opcode.name(),
                frame.request_id
            ),
            DecodeError::InvalidField { frame, field } => write!(
                f,
                "{} request {}: invalid value in field `{field}`",
                frame.opcode.name(),
                frame.request_id
            ),
        }
    }
}

impl std::error::Error for DecodeError {}
