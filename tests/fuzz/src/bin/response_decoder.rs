//! `rush_net::protocol::decode_response`, the client's view of a response, on a byte stream
//! read frame after frame as the client (`Pipeline`) reads it, stopping at the first error
//! (a client drops the connection on any but Incomplete).
//!
//! Asserts: no panic; a decoded frame took its length field's bytes (64, or 104 for
//! QUERY_SKU); `encode_response` of the decoded reply gives back exactly those bytes, except
//! for PING, whose topology (bytes 20..26) is not part of `Reply`: `ping_topology` reads it,
//! and `encode_ping_response` writes it back; the decoded body is one the opcode carries
//! (`Opcode::carried_body` leaves it as it is), and `with_account` changes nothing on the
//! wire; every strict prefix of a frame is Incomplete; each error is consistent with its
//! class (`rush_fuzz::check_decode_error`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rush_fuzz::{check_decode_error, check_prefixes, Direction};
use rush_net::protocol::{
    decode_response, encode_ping_response, encode_response, ping_topology, Opcode, MAX_FRAME_SIZE,
};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut encoded = Vec::with_capacity(MAX_FRAME_SIZE);
    loop {
        match decode_response(rest) {
            Ok((frame, consumed)) => {
                assert_eq!(consumed, frame.opcode.response_size());
                assert_eq!(rest[4..6], (consumed as u16).to_le_bytes(), "the length field");
                let body = frame.body();
                assert_eq!(frame.opcode.carried_body(&body), body, "{frame:?}");
                let topology = ping_topology(rest);
                assert_eq!(topology.is_some(), frame.opcode == Opcode::Ping);
                encoded.clear();
                encode_response(frame.opcode, frame.request_id, &frame.reply, &mut encoded);
                if let Some(topology) = topology {
                    let mut ping = Vec::new();
                    encode_ping_response(frame.request_id, topology, &mut ping);
                    encoded[20..26].copy_from_slice(&ping[20..26]);
                }
                assert_eq!(encoded, rest[..consumed], "{frame:?} re-encodes differently");
                let other = frame.with_account(42);
                let mut again = Vec::new();
                encode_response(other.opcode, other.request_id, &other.reply, &mut again);
                assert_eq!(again[..20], encoded[..20]);
                assert_eq!(again[26..], encoded[26..], "the account is not on the wire");
                check_prefixes(rest, consumed, decode_response);
                rest = &rest[consumed..];
            }
            Err(error) => {
                check_decode_error(rest, &error, Direction::Response, decode_response);
                break;
            }
        }
    }
});
