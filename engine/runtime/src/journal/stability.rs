//! Which of a shard's entries are **stable**: durable on this shard, and every message they
//! received was sent by an entry that is stable on its sender. A stable entry survives any
//! crash: recovery's consistent cut never goes below it. In sync mode a reply leaves only
//! when the entry it depends on is stable; snapshots are taken only of stable state.
//!
//! Each shard publishes its own durable and stable sequence numbers on the board; this
//! tracker keeps, per peer, the receipts whose cause that peer has not yet made stable, in
//! order (both numbers grow along a link), so an update pops what the peers' progress
//! covers and stops at the first receipt still waiting. Messages a shard sends itself need
//! no tracking: their cause is an earlier entry of the same journal.

use std::collections::VecDeque;

/// One shard's stability tracker.
#[derive(Debug)]
pub struct Stability {
    shard: u32,
    /// Per peer: (this shard's entry, the peer's cause) of receipts not yet covered.
    waiting: Vec<VecDeque<(u64, u64)>>,
    /// Per sender (this shard included): (this shard's entry, link sequence) of receipts
    /// in entries not yet stable, and the link sequence received in stable entries.
    receipts: Vec<VecDeque<(u64, u64)>>,
    received_stable: Vec<u64>,
    stable: u64,
}

impl Stability {
    /// A tracker for `shard` of `shard_count`, every entry up to `stable` already stable,
    /// holding `received[from]` messages from each sender (all in stable entries).
    pub fn new(shard: u32, shard_count: u32, stable: u64, received: &[u64]) -> Stability {
        assert_eq!(received.len(), shard_count as usize);
        Stability {
            shard,
            waiting: (0..shard_count).map(|_| VecDeque::new()).collect(),
            receipts: (0..shard_count).map(|_| VecDeque::new()).collect(),
            received_stable: received.to_vec(),
            stable,
        }
    }

    /// How many of `from`'s messages this shard holds in stable entries.
    pub fn received_stable(&self, from: u32) -> u64 {
        self.received_stable[from as usize]
    }

    pub fn stable(&self) -> u64 {
        self.stable
    }

    /// This shard's entry `entry` holds the `link_sequence`-th message `from` sent, sent
    /// in its entry `cause`.
    pub fn note_receipt(&mut self, from: u32, entry: u64, cause: u64, link_sequence: u64) {
        let receipts = &mut self.receipts[from as usize];
        debug_assert!(receipts.back().is_none_or(|&(_, last)| last + 1 == link_sequence));
        receipts.push_back((entry, link_sequence));
        if from == self.shard {
            return;
        }
        let queue = &mut self.waiting[from as usize];
        debug_assert!(queue.back().is_none_or(|&(last_entry, last_cause)| {
            last_entry <= entry && last_cause <= cause
        }));
        assert!(entry > self.stable, "a new receipt is in an entry not yet durable");
        queue.push_back((entry, cause));
    }

    /// Recomputes the stable point from this shard's durable point and the peers' stable
    /// points; returns it (never less than before).
    pub fn update(&mut self, durable: u64, peer_stable: impl Fn(u32) -> u64) -> u64 {
        let mut bound = durable;
        for (peer, queue) in self.waiting.iter_mut().enumerate() {
            let covered = peer_stable(peer as u32);
            while let Some(&(entry, cause)) = queue.front() {
                if cause <= covered {
                    queue.pop_front();
                } else {
                    bound = bound.min(entry - 1);
                    break;
                }
            }
        }
        assert!(bound >= self.stable, "stability never goes back ({bound} < {})", self.stable);
        self.stable = bound;
        for (receipts, received_stable) in self.receipts.iter_mut().zip(&mut self.received_stable) {
            while let Some(&(entry, link_sequence)) = receipts.front() {
                if entry > bound {
                    break;
                }
                *received_stable = link_sequence;
                receipts.pop_front();
            }
        }
        bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_stable_once_durable_and_its_causes_are_stable() {
        let mut stability = Stability::new(0, 3, 0, &[0, 0, 0]);
        stability.note_receipt(1, 2, 10, 1); // entry 2 received shard 1's entry 10
        stability.note_receipt(2, 4, 7, 1); // entry 4 received shard 2's entry 7
        stability.note_receipt(0, 5, 3, 1); // its own message: no wait
        let peers = |one: u64, two: u64| move |peer: u32| if peer == 1 { one } else { two };
        assert_eq!(stability.update(5, peers(9, 6)), 1, "entry 2 waits for shard 1's entry 10");
        assert_eq!(stability.received_stable(1), 0, "shard 1's message is in entry 2");
        assert_eq!(stability.update(5, peers(10, 6)), 3, "entry 4 waits for shard 2's entry 7");
        assert_eq!(stability.update(5, peers(10, 7)), 5);
        assert_eq!(stability.update(6, peers(10, 7)), 6, "then durability alone");
        let received: Vec<u64> = (0..3).map(|from| stability.received_stable(from)).collect();
        assert_eq!(received, [1, 1, 1]);
    }
}
