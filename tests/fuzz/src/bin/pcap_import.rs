//! `rush_tools::capture::convert`, what `rush capture --pcap FILE --port N` (and `rush
//! replay FILE.pcap --port N`) runs on the file's bytes: the pcap/pcapng reader
//! (tools/src/capture/pcap.rs), the link layer and TCP parsing (link.rs) and the stream
//! reassembly (reassembly.rs). The port is 7390, the server's in the committed captures
//! (tools/tests/data) the seeds come from.
//!
//! Asserts: no panic; an error is a `PcapError` with a message; a conversion's records are a
//! valid Rush capture (written out, `parse_capture` reads them back the same), each
//! connection is OPEN, then its FRAMEs, then one CLOSE, every FRAME is 64 bytes with the
//! magic and length 64 of a request frame, the stats count what the records hold, at most
//! `WARNINGS_MAX` warning lines are kept; and the replay's plan of the converted capture
//! keeps the properties `rush_fuzz::check_plan` lists.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use rush_net::capture::{parse_capture, KIND_CLOSE, KIND_FRAME, KIND_OPEN};
use rush_net::protocol::MAGIC;
use rush_tools::capture::reassembly::WARNINGS_MAX;
use rush_tools::capture::replay::plan::{self, Pace};
use rush_tools::capture::{check_span, convert};

const PORT: u16 = 7390;

fuzz_target!(|data: &[u8]| {
    let conversion = match convert(data, PORT) {
        Ok(conversion) => conversion,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    let (capture, report) = (&conversion.capture, &conversion.report);
    let bytes = rush_fuzz::capture_bytes(capture);
    let read = parse_capture(&bytes).unwrap_or_else(|error| panic!("not a valid capture: {error}"));
    assert_eq!(read.records, capture.records);

    // Per connection: 0 before its OPEN, 1 while open, 2 once closed.
    let mut state: HashMap<u64, u8> = HashMap::new();
    let mut frames = 0;
    for record in &capture.records {
        let connection = state.entry(record.connection.get()).or_insert(0);
        assert_eq!((record.admin, record.shard.get()), (0, 0));
        match record.kind {
            KIND_OPEN => {
                assert_eq!(*connection, 0, "a second OPEN");
                *connection = 1;
            }
            KIND_FRAME => {
                assert_eq!(*connection, 1, "a FRAME outside OPEN..CLOSE");
                let bytes = record.bytes();
                assert_eq!(bytes.len(), 64);
                assert_eq!(bytes[..2], MAGIC.to_le_bytes());
                assert_eq!(bytes[4..6], 64_u16.to_le_bytes());
                frames += 1;
            }
            KIND_CLOSE => {
                assert_eq!(*connection, 1, "a CLOSE without OPEN, or twice");
                *connection = 2;
            }
            kind => panic!("record kind {kind}"),
        }
    }
    assert!(state.values().all(|&connection| connection == 2), "a connection never closed");
    let stats = &report.stats;
    assert_eq!(stats.frames, frames);
    assert_eq!(stats.connections, state.len() as u64);
    assert!(stats.without_syn <= stats.connections && stats.open_at_end <= stats.connections);
    let segments = stats.to_server_segments + stats.from_server_segments + stats.other_segments;
    let skipped: u64 = report.skipped.values().sum();
    assert_eq!(segments + skipped, report.packets, "every packet is a segment or skipped");
    assert!(report.warnings.lines.len() <= WARNINGS_MAX);
    assert!(!report.to_string().is_empty());

    // What `rush replay FILE.pcap` does next (`rush capture` writes the file instead).
    if check_span(capture).is_ok() {
        let pace = Pace::Original { speed: 1.0 };
        let plan = plan::build(capture, pace, false);
        rush_fuzz::check_plan(capture, &plan, pace, false);
        rush_fuzz::check_schedule(&plan);
    }
});
