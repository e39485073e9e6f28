//! The journal's readers (`rush_runtime::journal`), what a start reads from disk: the input
//! codec (`decode_input`), the entry format (`decode_entry`) and the segment scan (`scan`:
//! checksums, the hash chain, sequence numbers, torn tail versus corruption).
//!
//! The first byte picks how the rest is read: even, as a segment file as it is (random
//! bytes almost never pass the checksums: this exercises the error paths and the torn-tail
//! decision); odd, as the body of one entry wrapped in a valid header, so the scan's input
//! decoding is reached. Either way the rest is also decoded as a run of inputs.
//!
//! Asserts: no panic; every input that decodes re-encodes to exactly its bytes (the
//! encoding is canonical); a scan that succeeds returns entries numbered 1, 2, 3... inside
//! the bytes, each of whose inputs decodes, and a torn tail only at the end of the bytes;
//! a scan error names the segment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rush_runtime::journal::codec::{decode_input, encode_input};
use rush_runtime::journal::format::encode_entry;
use rush_runtime::journal::scan::{inputs, scan, SegmentBytes};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    // Inputs: each one that decodes is its own canonical encoding.
    let mut bytes = rest;
    let mut encoded = Vec::new();
    while let Ok((input, used)) = decode_input(bytes, 3) {
        assert!(used > 0 && used <= bytes.len());
        encoded.clear();
        encode_input(&input, &mut encoded);
        assert_eq!(encoded, bytes[..used], "{input:?} re-encodes differently");
        bytes = &bytes[used..];
    }
    // A segment.
    let segment = if mode & 1 == 1 {
        let mut segment = Vec::new();
        let header = encode_entry(0, 1, 1_700_000_000_000, 0, rest, &mut segment);
        assert_eq!(header.sequence, 1);
        segment
    } else {
        rest.to_vec()
    };
    let segments = [SegmentBytes { first_sequence: 1, name: "fuzz.rjl".into(), bytes: &segment }];
    match scan(0, &segments, 1, Some(0)) {
        Ok(scanned) => {
            for (index, (header, place)) in scanned.entries.iter().enumerate() {
                assert_eq!(header.sequence, index as u64 + 1);
                assert!(place.offset + place.size <= segment.len() as u64);
                let start =
                    place.offset as usize + rush_runtime::journal::format::ENTRY_HEADER_SIZE;
                let body = &segment[start..start + header.body_length as usize];
                assert!(inputs(0, body).count() <= body.len());
            }
            if let Some(torn) = &scanned.torn {
                assert_eq!(
                    torn.offset + torn.bytes,
                    segment.len() as u64,
                    "a torn tail ends the file"
                );
            }
        }
        Err(error) => assert!(error.to_string().contains("fuzz.rjl"), "{error}"),
    }
});
