//! Recovery: every shard's journal replayed through the same engine code, cut back to a
//! state that is consistent across shards, with the messages the cut left undelivered
//! found again (docs/ARCHITECTURE.md, "Durability across shards").
//!
//! Each shard journals the mesh messages it receives with the sequence number of the
//! sender's entry that produced them (the *cause*). After a crash a shard may have kept a
//! receipt whose cause the sender lost with its unsynced tail: keeping it would keep units
//! (or a decision) the sender no longer knows it gave away. So:
//!
//! 1. Every shard's journal is scanned (checksums, chain, sequence numbers; a torn tail is
//!    dropped) and its receipts collected.
//! 2. **Cut**: each shard keeps the entries up to its last valid one; while some shard keeps
//!    a receipt whose cause is past the sender's cut, its cut moves back before that
//!    receipt. This converges (cuts only move back) to the latest state where every kept
//!    receipt has its cause kept: a consistent cut. In sync mode nothing acknowledged is
//!    ever cut (an acknowledgement waits until its entry and all their causes are durable).
//! 3. **Replay** each shard to its cut. A sender's replay regenerates, deterministically, the
//!    messages it sent: each one the receiver kept must be identical to the receipt (checked:
//!    a difference is a determinism bug and stops the recovery), and each one the receiver
//!    did not keep is **redelivered** when the server starts.

use rush_engine::quota::{Envelope, Placement};
use rush_engine::{Config, ConfigError, Engine};
use xxhash_rust::xxh3::xxh3_64;

use super::codec::{encode_input, Input};
use super::format::EntryHeader;
use super::scan::{inputs, scan, EntryPlace, ScanError, Scanned, SegmentBytes, TornTail};
use super::snapshot::SnapshotFile;

/// Why a recovery could not produce a state.
#[derive(Debug)]
pub enum RecoveryError {
    Scan {
        shard: u32,
        error: ScanError,
    },
    Config(ConfigError),
    /// Receipts on a link are not numbered 1, 2, 3, ...
    Link {
        shard: u32,
        from: u32,
        sequence: u64,
        expected: u64,
    },
    /// A replayed sender produced a message different from what its receiver recorded.
    Divergence {
        from: u32,
        to: u32,
        link_sequence: u64,
    },
    /// A receipt names a shard that does not exist.
    Shard {
        shard: u32,
        from: u32,
    },
    /// Every slot's generation is spent: ids could repeat.
    IdSpaceSpent {
        shard: u32,
    },
    /// A shard kept more messages from `from` than `from`'s recovered state sent: a
    /// journal or snapshot lost what was synced (or was written by another program).
    Unsent {
        shard: u32,
        from: u32,
        kept: u64,
        sent: u64,
    },
    /// A snapshot that does not verify or does not fit the journal.
    Snapshot {
        shard: u32,
        file: String,
        reason: String,
    },
}

impl std::fmt::Display for RecoveryError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoveryError::Scan { shard, error } => write!(formatter, "shard {shard}: {error}"),
            RecoveryError::Config(error) => write!(formatter, "{error}"),
            RecoveryError::Link { shard, from, sequence, expected } => write!(
                formatter,
                "shard {shard}: receipt {sequence} from shard {from} where {expected} was expected"
            ),
            RecoveryError::Divergence { from, to, link_sequence } => write!(
                formatter,
                "replaying shard {from} produced message {link_sequence} to shard {to} different \
                 from what shard {to} recorded (a determinism bug)"
            ),
            RecoveryError::Shard { shard, from } => {
                write!(formatter, "shard {shard}: receipt from shard {from}, which does not exist")
            }
            RecoveryError::IdSpaceSpent { shard } => {
                write!(formatter, "shard {shard}: the reservation id space is spent")
            }
            RecoveryError::Unsent { shard, from, kept, sent } => write!(
                formatter,
                "shard {shard} recorded {kept} messages from shard {from}, whose recovered state \
                 sent only {sent} (synced data was lost, or a snapshot was installed too early)"
            ),
            RecoveryError::Snapshot { shard, file, reason } => {
                write!(formatter, "shard {shard}: {file}: snapshot {reason}")
            }
        }
    }
}

impl std::error::Error for RecoveryError {}

/// One shard's state after recovery.
#[derive(Debug)]
pub struct RecoveredShard {
    pub engine: Engine,
    /// The entry of the snapshot the shard started from, if any.
    pub snapshot_sequence: Option<u64>,
    /// The last entry kept (0: none); the journal continues after it.
    pub last_sequence: u64,
    /// Its `checksum_header` (what the next entry chains to; 0 when none).
    pub checksum_previous: u64,
    /// Where the kept journal ends: (segment index, offset). Bytes after it (a torn tail,
    /// entries cut for consistency) and later segments must be removed. `None`: no segment
    /// holds anything needed; they are all removed and the journal restarts after
    /// `last_sequence`.
    pub end: Option<(usize, u64)>,
    pub torn: Option<TornTail>,
    /// Valid entries dropped because they depended on a message whose sending was lost.
    pub entries_cut: u64,
    pub entries_replayed: u64,
    pub inputs_replayed: u64,
    /// Messages the kept entries sent to each shard, and received from each shard.
    pub sent: Vec<u64>,
    pub received: Vec<u64>,
}

/// A message to deliver again: sent by a kept entry (`cause_sequence`) or carried by the
/// sender's snapshot, not kept by its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redelivery {
    pub envelope: Envelope,
    /// Its number on its link (from 1): the receiver records it under this number.
    pub link_sequence: u64,
    pub cause_sequence: u64,
}

/// Every shard's recovered state, and the messages to redeliver (per link, in order).
#[derive(Debug)]
pub struct Recovered {
    pub shards: Vec<RecoveredShard>,
    pub redeliveries: Vec<Redelivery>,
}

/// A shard's latest snapshot, as recovery starts from it.
#[derive(Debug)]
pub struct SnapshotStart<'a> {
    /// The file's name, for errors.
    pub name: String,
    pub file: SnapshotFile<'a>,
}

/// A receipt as recovery needs it.
#[derive(Clone, Copy, Debug)]
struct Receipt {
    entry: u64,
    from: u32,
    link_sequence: u64,
    cause: u64,
    hash: u64,
}

fn envelope_hash(envelope: &Envelope) -> u64 {
    let mut bytes = Vec::with_capacity(96);
    encode_input(
        &Input::Message { envelope: *envelope, link_sequence: 0, cause_sequence: 0 },
        &mut bytes,
    );
    xxh3_64(&bytes)
}

/// Recovers `journals[shard]` (each shard's segment files, sorted) for an engine `config`,
/// each shard starting from its snapshot in `snapshots[shard]` when it has one (its
/// journal then continues after the snapshot's entry; segments that end before it may be
/// given or not).
pub fn recover(
    config: Config,
    journals: &[Vec<SegmentBytes<'_>>],
    snapshots: &[Option<SnapshotStart<'_>>],
) -> Result<Recovered, RecoveryError> {
    let shard_count = journals.len() as u32;
    let n = journals.len();
    assert_eq!(snapshots.len(), n);
    config.validate().map_err(RecoveryError::Config)?;
    // What each shard starts from: its snapshot, or nothing.
    let base: Vec<u64> =
        snapshots.iter().map(|start| start.as_ref().map_or(0, |s| s.file.sequence)).collect();
    let base_checksum: Vec<u64> = snapshots
        .iter()
        .map(|start| start.as_ref().map_or(0, |s| s.file.checksum_previous))
        .collect();
    let base_sent: Vec<Vec<u64>> = snapshots
        .iter()
        .map(|start| start.as_ref().map_or(vec![0; n], |s| s.file.sent.clone()))
        .collect();
    let base_received: Vec<Vec<u64>> = snapshots
        .iter()
        .map(|start| start.as_ref().map_or(vec![0; n], |s| s.file.received.clone()))
        .collect();
    for (shard, start) in snapshots.iter().enumerate() {
        if let Some(start) = start {
            if start.file.sent.len() != n || start.file.shard != shard as u32 {
                return Err(RecoveryError::Snapshot {
                    shard: shard as u32,
                    file: start.name.clone(),
                    reason: "taken with another shard count".into(),
                });
            }
        }
    }
    // 1. Scan, and collect each shard's receipts after its snapshot.
    let mut scans: Vec<Scanned> = Vec::with_capacity(n);
    let mut receipts: Vec<Vec<Receipt>> = Vec::with_capacity(n);
    for (index, segments) in journals.iter().enumerate() {
        let shard = index as u32;
        let after = base[index] + 1;
        // Scan from the first segment given when it starts at or before the entry after
        // the snapshot (the chain is checked from there); otherwise from that entry, so a
        // missing segment is a sequence error naming the file.
        let (first, chain) = match segments.first() {
            Some(segment) if segment.first_sequence <= after => {
                let first = segment.first_sequence;
                let chain = if first == 1 {
                    Some(0)
                } else if first == after {
                    Some(base_checksum[index])
                } else {
                    None
                };
                (first, chain)
            }
            _ => (after, Some(base_checksum[index])),
        };
        let scanned = scan(shard, segments, first, chain)
            .map_err(|error| RecoveryError::Scan { shard, error })?;
        if base[index] > 0 {
            let at_snapshot =
                scanned.entries.iter().find(|(header, _)| header.sequence == base[index]);
            if at_snapshot.is_some_and(|(header, _)| header.checksum_header != base_checksum[index])
            {
                return Err(RecoveryError::Snapshot {
                    shard,
                    file: snapshots[index].as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                    reason: format!(
                        "its entry {} is not the journal's entry {} (checksums differ)",
                        base[index], base[index]
                    ),
                });
            }
        }
        let mut shard_receipts = Vec::new();
        let mut next_link: Vec<u64> = base_received[index].iter().map(|count| count + 1).collect();
        for (header, place) in &scanned.entries {
            if header.sequence <= base[index] {
                continue;
            }
            for input in inputs(shard, entry_body(segments, header, place)) {
                if let Input::Message { envelope, link_sequence, cause_sequence } = input {
                    let from = envelope.from;
                    if from >= shard_count {
                        return Err(RecoveryError::Shard { shard, from });
                    }
                    let expected = next_link[from as usize];
                    if link_sequence != expected {
                        return Err(RecoveryError::Link {
                            shard,
                            from,
                            sequence: link_sequence,
                            expected,
                        });
                    }
                    next_link[from as usize] += 1;
                    shard_receipts.push(Receipt {
                        entry: header.sequence,
                        from,
                        link_sequence,
                        cause: cause_sequence,
                        hash: envelope_hash(&envelope),
                    });
                }
            }
        }
        scans.push(scanned);
        receipts.push(shard_receipts);
    }
    // 2. The consistent cut. Receipts exist only after a snapshot, so a cut never goes
    //    below one: a snapshot is of stable state.
    let mut cuts: Vec<u64> = scans
        .iter()
        .zip(&base)
        .map(|(scanned, &base)| {
            scanned.entries.last().map_or(0, |(header, _)| header.sequence).max(base)
        })
        .collect();
    loop {
        let mut moved = false;
        for shard in 0..n {
            let invalid = receipts[shard].iter().find(|receipt| {
                receipt.entry <= cuts[shard] && receipt.cause > cuts[receipt.from as usize]
            });
            if let Some(receipt) = invalid {
                cuts[shard] = receipt.entry - 1;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    for shard in 0..n {
        assert!(cuts[shard] >= base[shard], "a cut below a snapshot");
    }
    // Receipts kept per link after the receiver's snapshot: kept[to][from].
    let kept: Vec<Vec<Vec<Receipt>>> = (0..n)
        .map(|to| {
            (0..n)
                .map(|from| {
                    receipts[to]
                        .iter()
                        .filter(|receipt| {
                            receipt.from as usize == from && receipt.entry <= cuts[to]
                        })
                        .copied()
                        .collect()
                })
                .collect()
        })
        .collect();
    let kept_count = |to: usize, from: usize| base_received[to][from] + kept[to][from].len() as u64;
    // 3. Replay each shard from its snapshot to its cut.
    let mut shards = Vec::with_capacity(n);
    let mut redeliveries = Vec::new();
    for (index, segments) in journals.iter().enumerate() {
        let shard = index as u32;
        let placement = Placement { shard, shard_count };
        let mut engine =
            match &snapshots[index] {
                Some(start) => Engine::restore_snapshot(config, placement, start.file.engine)
                    .map_err(|error| RecoveryError::Snapshot {
                        shard,
                        file: start.name.clone(),
                        reason: format!(
                            "engine state at offset {}: {error}",
                            start.file.engine_offset
                        ),
                    })?,
                None => Engine::new_shard(config, placement).map_err(RecoveryError::Config)?,
            };
        // The messages the snapshot carries: each one its receiver did not keep is
        // redelivered, and every one the receiver may lack must be there.
        if let Some(start) = &snapshots[index] {
            for to in 0..n {
                let mut expected = kept_count(to, index) + 1;
                for message in start.file.outbox.iter().filter(|m| m.envelope.to as usize == to) {
                    let link_sequence = message.link_sequence;
                    if link_sequence > base_sent[index][to] {
                        return Err(RecoveryError::Snapshot {
                            shard,
                            file: start.name.clone(),
                            reason: format!(
                                "outbox message {link_sequence} to shard {to} was never sent"
                            ),
                        });
                    }
                    if link_sequence < expected {
                        // Kept by the receiver: the same message, or a determinism bug.
                        let receiver_base = base_received[to][index];
                        if link_sequence > receiver_base {
                            let receipt =
                                kept[to][index][(link_sequence - receiver_base - 1) as usize];
                            if receipt.hash != envelope_hash(&message.envelope) {
                                return Err(RecoveryError::Divergence {
                                    from: shard,
                                    to: to as u32,
                                    link_sequence,
                                });
                            }
                        }
                        continue;
                    }
                    if link_sequence != expected {
                        break;
                    }
                    redeliveries.push(Redelivery {
                        envelope: message.envelope,
                        link_sequence,
                        cause_sequence: message.cause_sequence,
                    });
                    expected += 1;
                }
                if expected <= base_sent[index][to] {
                    return Err(RecoveryError::Snapshot {
                        shard,
                        file: start.name.clone(),
                        reason: format!(
                            "message {expected} to shard {to} is neither kept by shard {to} nor in \
                             the snapshot's outbox"
                        ),
                    });
                }
            }
        }
        let mut sent = base_sent[index].clone();
        let mut received = base_received[index].clone();
        let (mut entries_replayed, mut inputs_replayed) = (0_u64, 0_u64);
        let mut last: Option<(u64, u64, (usize, u64))> = None;
        for (header, place) in scans[index].entries.iter() {
            if header.sequence > cuts[index] {
                break;
            }
            let end = (place.segment, place.offset + place.size);
            if header.sequence <= base[index] {
                // Before the snapshot (a segment not yet deleted): its place only.
                last = Some((header.sequence, header.checksum_header, end));
                continue;
            }
            entries_replayed += 1;
            for input in inputs(shard, entry_body(segments, header, place)) {
                inputs_replayed += 1;
                if !apply(&mut engine, header.now_ms, &input) {
                    return Err(RecoveryError::IdSpaceSpent { shard });
                }
                if let Input::Message { envelope, .. } = input {
                    received[envelope.from as usize] += 1;
                }
                engine.drain_events().for_each(drop);
                for envelope in engine.drain_messages() {
                    let to = envelope.to as usize;
                    sent[to] += 1;
                    let link_sequence = sent[to];
                    let receiver_base = base_received[to][index];
                    if link_sequence <= receiver_base {
                        continue; // in the receiver's snapshot
                    }
                    match kept[to][index].get((link_sequence - receiver_base - 1) as usize) {
                        Some(receipt) => {
                            debug_assert_eq!(receipt.link_sequence, link_sequence);
                            if receipt.hash != envelope_hash(&envelope) {
                                return Err(RecoveryError::Divergence {
                                    from: shard,
                                    to: to as u32,
                                    link_sequence,
                                });
                            }
                        }
                        None => redeliveries.push(Redelivery {
                            envelope,
                            link_sequence,
                            cause_sequence: header.sequence,
                        }),
                    }
                }
            }
            last = Some((header.sequence, header.checksum_header, end));
        }
        let entries_cut =
            scans[index].entries.iter().filter(|(header, _)| header.sequence > cuts[index]).count();
        // The files keep everything up to the cut when they reach it; otherwise (they end
        // before the snapshot, or start after it with nothing kept) they hold nothing
        // needed and the journal restarts in a new segment after the cut.
        let (checksum_previous, end) = match last {
            Some((sequence, checksum, end)) if sequence == cuts[index] => (checksum, Some(end)),
            _ => {
                assert_eq!(cuts[index], base[index], "entries up to the cut were replayed");
                (base_checksum[index], None)
            }
        };
        debug_assert_eq!(received, (0..n).map(|from| kept_count(index, from)).collect::<Vec<_>>());
        shards.push(RecoveredShard {
            engine,
            snapshot_sequence: snapshots[index].as_ref().map(|start| start.file.sequence),
            last_sequence: cuts[index],
            checksum_previous,
            end,
            torn: scans[index].torn.clone(),
            entries_cut: entries_cut as u64,
            entries_replayed,
            inputs_replayed,
            sent,
            received,
        });
    }
    // Every receiver's kept receipts must be covered by its sender's messages. The cut
    // guarantees it for journals this code wrote on a disk that keeps what it synced;
    // checked, since a violation would mean units counted twice.
    for to in 0..n {
        for (from, sender) in shards.iter().enumerate() {
            if kept_count(to, from) > sender.sent[to] {
                return Err(RecoveryError::Unsent {
                    shard: to as u32,
                    from: from as u32,
                    kept: kept_count(to, from),
                    sent: sender.sent[to],
                });
            }
        }
    }
    Ok(Recovered { shards, redeliveries })
}

fn entry_body<'a>(
    segments: &'a [SegmentBytes<'_>],
    header: &EntryHeader,
    place: &EntryPlace,
) -> &'a [u8] {
    let start = place.offset as usize + super::format::ENTRY_HEADER_SIZE;
    &segments[place.segment].bytes[start..start + header.body_length as usize]
}

/// Applies one journaled input to an engine at the entry's clock reading: what the live
/// shard did, and what replay does. False only when a start's generation jump no longer
/// fits (the id space is spent).
pub fn apply(engine: &mut Engine, now_ms: u64, input: &Input) -> bool {
    match *input {
        Input::Tick => engine.tick(now_ms),
        Input::Request(request) => {
            engine.execute(now_ms, &request);
        }
        Input::Message { envelope, .. } => engine.handle(now_ms, &envelope),
        Input::Start { jump } => return engine.jump_generations(jump),
    }
    true
}
