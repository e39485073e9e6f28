//! `rush_net::protocol::decode_request`, the server's view of a request, on a byte stream
//! read as a server reads it: frame after frame, a frame-local error skipped (its frame is
//! answered BAD_REQUEST), stopping at an incomplete frame or a fatal error.
//!
//! Asserts: no panic; a decoded frame took its length field's bytes (64) and
//! `encode_request` gives back exactly those bytes (every wire field is a field of
//! `Request`: nothing is normalised); every strict prefix of a frame is Incomplete; each
//! error is consistent with its class (`rush_fuzz::check_decode_error`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rush_fuzz::{check_decode_error, check_prefixes, Direction};
use rush_net::protocol::{decode_request, encode_request, REQUEST_SIZE};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut encoded = Vec::with_capacity(REQUEST_SIZE);
    loop {
        match decode_request(rest) {
            Ok((frame, consumed)) => {
                assert_eq!(consumed, REQUEST_SIZE);
                assert_eq!(consumed, frame.opcode().request_size());
                assert_eq!(rest[4..6], (REQUEST_SIZE as u16).to_le_bytes(), "the length field");
                encoded.clear();
                encode_request(frame.request_id, &frame.request, &mut encoded);
                assert_eq!(encoded, rest[..consumed], "{frame:?} re-encodes differently");
                check_prefixes(rest, consumed, decode_request);
                rest = &rest[consumed..];
            }
            Err(error) => {
                check_decode_error(rest, &error, Direction::Request, decode_request);
                match error.frame() {
                    Some(frame) => rest = &rest[frame.length..],
                    None => break,
                }
            }
        }
    }
});
