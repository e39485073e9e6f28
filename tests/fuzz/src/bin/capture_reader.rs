//! `rush_net::capture::parse_capture`, the Rush capture reader (`rush replay FILE`), then
//! what `rush replay` does with what it accepts before sending anything: the dry run's
//! summary, the span check `capture::load` makes, and the replay's plan
//! (tools/src/capture/replay/plan.rs) at the original pace and at one more (every flag's
//! extremes, `rush_fuzz::PACES`, picked by the header's `started_unix_ns`), with the
//! schedule of many loops.
//!
//! Asserts: no panic; an error is a `CaptureError` with a message; an accepted capture is
//! what `capture::pcap::detect` calls a Rush capture, holds one record per 96 bytes after the
//! header and writes back to the same bytes; the summary counts what the records hold; the
//! plans keep the properties `rush_fuzz::check_plan` lists, and a schedule the replay
//! accepts has every time the driver computes within u64 and within the year a replay may
//! last (`rush_fuzz::check_schedule`). The span check only decides whether `load` refuses
//! the capture; the plan must be sound either way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rush_net::capture::{parse_capture, HEADER_SIZE, KIND_FRAME, RECORD_SIZE};
use rush_tools::capture::dry_run::Summary;
use rush_tools::capture::pcap::{detect, Format};
use rush_tools::capture::{check_span, CAPTURE_SPAN_NS_MAX};

fuzz_target!(|data: &[u8]| {
    let capture = match parse_capture(data) {
        Ok(capture) => capture,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    assert_eq!(detect(data), Format::RushCapture);
    assert_eq!(capture.records.len(), (data.len() - HEADER_SIZE) / RECORD_SIZE);
    assert_eq!(rush_fuzz::capture_bytes(&capture), data, "the capture writes back differently");

    let summary = Summary::of(&capture);
    assert_eq!(summary.records, capture.records.len() as u64);
    let frames = capture.records.iter().filter(|record| record.kind == KIND_FRAME).count();
    assert_eq!(summary.frames, frames as u64);
    assert!(summary.short_frames <= summary.frames);
    assert!(summary.admin_connections <= summary.connections);
    assert!(!summary.to_string().is_empty());

    match check_span(&capture) {
        Ok(()) => assert!(summary.duration_ns <= CAPTURE_SPAN_NS_MAX),
        Err(error) => {
            assert!(summary.duration_ns > CAPTURE_SPAN_NS_MAX);
            assert!(!error.to_string().is_empty());
        }
    }
    // The capture's start time, which nothing of the replay reads, picks the second pace.
    rush_fuzz::check_plans(&capture, capture.header.started_unix_ns.get());
});
