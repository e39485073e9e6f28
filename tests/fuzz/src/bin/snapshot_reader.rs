//! The snapshot readers: `decode_snapshot_file` (header, checksums, links, the outbox) and
//! `Engine::restore_snapshot` (the engine's exact state, every index and count checked
//! against the configuration, then invariants 1–5).
//!
//! The first byte picks the shard count (bit 1: 1 or 2) and whether the header's length
//! and checksums are made right first (bit 0), so that the fuzzer reaches the body's
//! decoders; the rest is the file.
//!
//! Asserts: no panic; an outbox holds only messages from this shard to existing shards; a
//! restored engine passes its invariants, encodes to bytes that restore to the same state,
//! and that encoding is canonical (encoding the second engine gives the same bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rush_engine::quota::Placement;
use rush_engine::snapshot::SnapshotWriter;
use rush_engine::Engine;
use rush_fuzz::{journal_engine_config, with_snapshot_checksums};
use rush_runtime::journal::snapshot::decode_snapshot_file;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let shard_count = if mode & 2 == 0 { 1 } else { 2 };
    let bytes = if mode & 1 == 1 { with_snapshot_checksums(rest) } else { rest.to_vec() };
    let file = match decode_snapshot_file("fuzz.rsn", &bytes, 0, shard_count) {
        Ok(file) => file,
        Err(error) => {
            assert!(error.to_string().starts_with("fuzz.rsn: offset "), "{error}");
            return;
        }
    };
    assert_eq!(file.sent.len(), shard_count as usize);
    for message in &file.outbox {
        assert_eq!(message.envelope.from, 0);
        assert!(message.envelope.to < shard_count);
    }
    let config = journal_engine_config();
    let placement = Placement { shard: 0, shard_count };
    let Ok(engine) = Engine::restore_snapshot(config, placement, file.engine) else { return };
    engine.check_invariants().expect("a restored engine passes its invariants");
    let mut once = SnapshotWriter::default();
    engine.encode_snapshot(&mut once);
    let again = Engine::restore_snapshot(config, placement, &once.bytes)
        .expect("what the engine wrote restores");
    assert_eq!(again.state_hash(), engine.state_hash(), "the same state");
    let mut twice = SnapshotWriter::default();
    again.encode_snapshot(&mut twice);
    assert_eq!(once.bytes, twice.bytes, "the encoding is canonical");
});
