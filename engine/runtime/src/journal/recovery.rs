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
        }
    }
}

impl std::error::Error for RecoveryError {}

/// One shard's state after recovery.
#[derive(Debug)]
pub struct RecoveredShard {
    pub engine: Engine,
    /// The last entry kept (0: none); the journal continues after it.
    pub last_sequence: u64,
    /// Its `checksum_header` (what the next entry chains to; 0 when none).
    pub checksum_previous: u64,
    /// Where the kept journal ends: (segment index, offset). Bytes after it (a torn tail,
    /// entries cut for consistency) and later segments must be removed.
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

/// A message to deliver again: sent by a kept entry (`cause`), not kept by its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redelivery {
    pub envelope: Envelope,
    pub cause_sequence: u64,
}

/// Every shard's recovered state, and the messages to redeliver (per link, in order).
#[derive(Debug)]
pub struct Recovered {
    pub shards: Vec<RecoveredShard>,
    pub redeliveries: Vec<Redelivery>,
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

/// Recovers `journals[shard]` (each shard's segment files, sorted) for an engine `config`.
pub fn recover(
    config: Config,
    journals: &[Vec<SegmentBytes<'_>>],
) -> Result<Recovered, RecoveryError> {
    let shard_count = journals.len() as u32;
    config.validate().map_err(RecoveryError::Config)?;
    // 1. Scan, and collect each shard's receipts.
    let mut scans: Vec<Scanned> = Vec::with_capacity(journals.len());
    let mut receipts: Vec<Vec<Receipt>> = Vec::with_capacity(journals.len());
    for (shard, segments) in journals.iter().enumerate() {
        let shard = shard as u32;
        let scanned = scan(shard, segments, 1, Some(0))
            .map_err(|error| RecoveryError::Scan { shard, error })?;
        let mut shard_receipts = Vec::new();
        let mut next_link = vec![1_u64; journals.len()];
        for (header, place) in &scanned.entries {
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
    // 2. The consistent cut.
    let mut cuts: Vec<u64> = scans
        .iter()
        .map(|scanned| scanned.entries.last().map_or(0, |(header, _)| header.sequence))
        .collect();
    loop {
        let mut moved = false;
        for shard in 0..journals.len() {
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
    // Receipts kept per link: kept[to][from].
    let kept: Vec<Vec<Vec<Receipt>>> = (0..journals.len())
        .map(|to| {
            (0..journals.len())
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
    // 3. Replay each shard to its cut.
    let mut shards = Vec::with_capacity(journals.len());
    let mut redeliveries = Vec::new();
    for (index, segments) in journals.iter().enumerate() {
        let shard = index as u32;
        let placement = Placement { shard, shard_count };
        let mut engine = Engine::new_shard(config, placement).map_err(RecoveryError::Config)?;
        let mut sent = vec![0_u64; journals.len()];
        let mut received = vec![0_u64; journals.len()];
        let (mut entries_replayed, mut inputs_replayed) = (0_u64, 0_u64);
        let mut last = (0_u64, 0_u64, None);
        for (header, place) in
            scans[index].entries.iter().filter(|(header, _)| header.sequence <= cuts[index])
        {
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
                    match kept[to][index].get(link_sequence as usize - 1) {
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
                        None => redeliveries
                            .push(Redelivery { envelope, cause_sequence: header.sequence }),
                    }
                }
            }
            last = (
                header.sequence,
                header.checksum_header,
                Some((place.segment, place.offset + place.size)),
            );
        }
        let entries_cut =
            scans[index].entries.iter().filter(|(header, _)| header.sequence > cuts[index]).count();
        let end = match (last.2, scans[index].entries.first()) {
            (Some(end), _) => Some(end),
            // Nothing kept: the journal restarts from the beginning of the first segment.
            (None, Some(_)) | (None, None) => None,
        };
        shards.push(RecoveredShard {
            engine,
            last_sequence: last.0,
            checksum_previous: last.1,
            end,
            torn: scans[index].torn.clone(),
            entries_cut: entries_cut as u64,
            entries_replayed,
            inputs_replayed,
            sent,
            received,
        });
    }
    // Every receiver's kept receipts must be covered by its sender's regenerated messages
    // (the cut guarantees it; checked, since a violation would mean lost units).
    for (to, kept_from) in kept.iter().enumerate() {
        for (from, receipts) in kept_from.iter().enumerate() {
            assert!(
                receipts.len() as u64 <= shards[from].sent[to],
                "shard {to} kept receipts from shard {from} that its replay did not send"
            );
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
