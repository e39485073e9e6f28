//! A hierarchical timer wheel over intrusive doubly linked lists, for hold expiries and
//! waitlist deadlines: O(1) schedule and cancel, amortized O(levels) per timer fired.
//!
//! Nodes are reservation slot indices `0..node_count`. Each of the `LEVELS * SLOTS` wheel
//! slots is a circular list with a sentinel node at index `node_count + level * SLOTS + slot`,
//! so unlinking a node needs only its own links (no slot bookkeeping per node). Two more
//! sentinels thread the *due* list (fired but not yet handed out) and the *finished* list,
//! the FIFO of terminal reservations that may be retired when a slot is needed: a node is
//! never in the wheel and finished at once, so sharing the links keeps a reservation at 64
//! bytes.
//!
//! Level `L` slots are `64^L` ms wide; a timer sits at the level of the highest 6-bit digit
//! in which its deadline differs from the wheel's current time (the scheme of tokio's and
//! Linux's wheels). When the wheel reaches a slot, its timers either fire or cascade to a
//! lower level. Occupancy bitmaps make a jump of the clock over empty time O(levels); bits
//! are cleared lazily when a slot turns out to be empty.

use crate::config::DEADLINE_AHEAD_MS_MAX;
use crate::snapshot::{SnapshotError, SnapshotReader, SnapshotWriter};

pub(crate) const NIL: u32 = u32::MAX;
const LEVEL_BITS: u32 = 6;
const SLOTS: usize = 1 << LEVEL_BITS;
const LEVELS: usize = 6;
const SENTINEL_COUNT: usize = LEVELS * SLOTS + 2;
// The top level must reach every allowed deadline, or a timer could wrap onto a slot that
// is processed before its time and cascade into itself.
const _: () = assert!(1_u64 << (LEVEL_BITS as usize * LEVELS) >= DEADLINE_AHEAD_MS_MAX);

#[derive(Clone, Copy, Debug)]
struct Link {
    prev: u32,
    next: u32,
}

const UNLINKED: Link = Link { prev: NIL, next: NIL };

#[derive(Debug)]
pub(crate) struct TimerWheel {
    links: Box<[Link]>,
    occupied: [u64; LEVELS],
    elapsed_ms: u64,
    node_count: u32,
}

impl TimerWheel {
    pub(crate) fn new(node_count: u32) -> TimerWheel {
        let total = node_count as usize + SENTINEL_COUNT;
        assert!(total < NIL as usize);
        let mut links = vec![UNLINKED; total].into_boxed_slice();
        for sentinel in node_count as usize..total {
            let index = sentinel as u32;
            links[sentinel] = Link { prev: index, next: index };
        }
        TimerWheel { links, occupied: [0; LEVELS], elapsed_ms: 0, node_count }
    }

    pub(crate) fn bytes_allocated(&self) -> usize {
        self.links.len() * core::mem::size_of::<Link>()
    }

    #[inline]
    fn slot_sentinel(&self, level: usize, slot: usize) -> u32 {
        self.node_count + (level * SLOTS + slot) as u32
    }

    #[inline]
    fn due_sentinel(&self) -> u32 {
        self.node_count + (LEVELS * SLOTS) as u32
    }

    #[inline]
    fn finished_sentinel(&self) -> u32 {
        self.node_count + (LEVELS * SLOTS) as u32 + 1
    }

    #[inline]
    pub(crate) fn is_linked(&self, node: u32) -> bool {
        debug_assert!(node < self.node_count);
        self.links[node as usize].next != NIL
    }

    fn link_back(&mut self, sentinel: u32, node: u32) {
        assert!(node < self.node_count);
        assert!(!self.is_linked(node), "a node is in at most one list");
        let tail = self.links[sentinel as usize].prev;
        self.links[node as usize] = Link { prev: tail, next: sentinel };
        self.links[tail as usize].next = node;
        self.links[sentinel as usize].prev = node;
    }

    /// Takes `node` out of whatever list holds it (a wheel slot, the due list or the
    /// finished list). No-op when it is in none.
    pub(crate) fn unlink(&mut self, node: u32) {
        let link = self.links[node as usize];
        if link.next == NIL {
            return;
        }
        self.links[link.prev as usize].next = link.next;
        self.links[link.next as usize].prev = link.prev;
        self.links[node as usize] = UNLINKED;
    }

    #[inline]
    fn first(&self, sentinel: u32) -> Option<u32> {
        let next = self.links[sentinel as usize].next;
        (next != sentinel).then_some(next)
    }

    fn level_for(elapsed_ms: u64, deadline_ms: u64) -> usize {
        let masked = (elapsed_ms ^ deadline_ms) | (SLOTS as u64 - 1);
        let significant = 63 - masked.leading_zeros();
        ((significant / LEVEL_BITS) as usize).min(LEVELS - 1)
    }

    #[inline]
    fn slot_for(deadline_ms: u64, level: usize) -> usize {
        ((deadline_ms >> (level as u32 * LEVEL_BITS)) as usize) & (SLOTS - 1)
    }

    /// Arms the timer of `node` for `deadline_ms`, which must be in the future of the wheel
    /// and within `DEADLINE_AHEAD_MS_MAX` of it (the config's hold and wait bounds ensure it).
    pub(crate) fn schedule(&mut self, node: u32, deadline_ms: u64) {
        assert!(deadline_ms > self.elapsed_ms, "a timer is scheduled in the future");
        assert!(deadline_ms - self.elapsed_ms < DEADLINE_AHEAD_MS_MAX);
        let level = Self::level_for(self.elapsed_ms, deadline_ms);
        let slot = Self::slot_for(deadline_ms, level);
        let sentinel = self.slot_sentinel(level, slot);
        self.link_back(sentinel, node);
        self.occupied[level] |= 1 << slot;
    }

    /// The earliest non-empty slot: (level, slot, the slot's start time). Lower levels always
    /// come first: a timer at level L+1 lies beyond the current level-L rotation.
    fn next_expiration(&mut self) -> Option<(usize, usize, u64)> {
        for level in 0..LEVELS {
            while self.occupied[level] != 0 {
                let now_slot = Self::slot_for(self.elapsed_ms, level);
                let rotated = self.occupied[level].rotate_right(now_slot as u32);
                let slot = (rotated.trailing_zeros() as usize + now_slot) % SLOTS;
                if self.first(self.slot_sentinel(level, slot)).is_none() {
                    // Emptied by cancels since it was set: clear lazily and look again.
                    self.occupied[level] &= !(1 << slot);
                    continue;
                }
                let slot_range = 1_u64 << (level as u32 * LEVEL_BITS);
                let level_range = slot_range << LEVEL_BITS;
                let level_start = self.elapsed_ms & !(level_range - 1);
                let mut deadline = level_start + slot as u64 * slot_range;
                if deadline < self.elapsed_ms {
                    // Only the top level wraps: a slot "behind" is one rotation ahead.
                    deadline += level_range;
                }
                return Some((level, slot, deadline));
            }
        }
        None
    }

    /// A lower bound on the earliest deadline in the wheel, without changing it: the start of
    /// the earliest slot whose occupancy bit is set (`elapsed_ms` when fired timers wait in
    /// the due list). A bit left set by cancels makes the bound earlier than needed, which
    /// only wakes an idle shard early; the next `pop_due` clears it.
    pub(crate) fn next_deadline_lower_bound(&self) -> Option<u64> {
        if self.first(self.due_sentinel()).is_some() {
            return Some(self.elapsed_ms);
        }
        for level in 0..LEVELS {
            if self.occupied[level] == 0 {
                continue;
            }
            let now_slot = Self::slot_for(self.elapsed_ms, level);
            let rotated = self.occupied[level].rotate_right(now_slot as u32);
            let slot = (rotated.trailing_zeros() as usize + now_slot) % SLOTS;
            let slot_range = 1_u64 << (level as u32 * LEVEL_BITS);
            let level_range = slot_range << LEVEL_BITS;
            let level_start = self.elapsed_ms & !(level_range - 1);
            let mut deadline = level_start + slot as u64 * slot_range;
            if deadline < self.elapsed_ms {
                deadline += level_range;
            }
            // Lower levels hold the nearer timers (see `next_expiration`).
            return Some(deadline.max(self.elapsed_ms));
        }
        None
    }

    /// The next node whose deadline is `<= now_ms`, in deadline order (1 ms resolution;
    /// FIFO within a millisecond slot), or `None` once every due timer has been handed out;
    /// then the wheel's time is `now_ms`. A node handed out is unlinked.
    pub(crate) fn pop_due(&mut self, now_ms: u64, deadline_of: impl Fn(u32) -> u64) -> Option<u32> {
        loop {
            if let Some(node) = self.first(self.due_sentinel()) {
                self.unlink(node);
                return Some(node);
            }
            let Some((level, slot, deadline_ms)) = self.next_expiration() else {
                self.elapsed_ms = self.elapsed_ms.max(now_ms);
                return None;
            };
            if deadline_ms > now_ms {
                self.elapsed_ms = self.elapsed_ms.max(now_ms);
                return None;
            }
            debug_assert!(deadline_ms >= self.elapsed_ms);
            self.elapsed_ms = deadline_ms;
            self.occupied[level] &= !(1 << slot);
            let sentinel = self.slot_sentinel(level, slot);
            while let Some(node) = self.first(sentinel) {
                self.unlink(node);
                let node_deadline_ms = deadline_of(node);
                if node_deadline_ms <= self.elapsed_ms {
                    let due = self.due_sentinel();
                    self.link_back(due, node);
                } else {
                    // Cascades to a strictly lower level, never back into this slot.
                    self.schedule(node, node_deadline_ms);
                }
            }
        }
    }

    /// Appends a terminal reservation to the finished FIFO.
    pub(crate) fn push_finished(&mut self, node: u32) {
        let sentinel = self.finished_sentinel();
        self.link_back(sentinel, node);
    }

    /// The oldest finished reservation, if any (still linked).
    pub(crate) fn oldest_finished(&self) -> Option<u32> {
        self.first(self.finished_sentinel())
    }

    /// Finished reservations, oldest first.
    pub(crate) fn finished(&self) -> impl Iterator<Item = u32> + '_ {
        let sentinel = self.finished_sentinel();
        let mut cursor = self.links[sentinel as usize].next;
        core::iter::from_fn(move || {
            if cursor == sentinel {
                return None;
            }
            let node = cursor;
            cursor = self.links[node as usize].next;
            Some(node)
        })
    }

    pub(crate) fn elapsed_ms(&self) -> u64 {
        self.elapsed_ms
    }

    /// Writes the wheel exactly: clock, occupancy bitmaps and every link (runs of unlinked
    /// nodes as a count), so the lists keep their order.
    pub(crate) fn encode(&self, out: &mut SnapshotWriter) {
        let TimerWheel { links, occupied, elapsed_ms, node_count } = self;
        out.u64(*elapsed_ms);
        for word in occupied {
            out.u64(*word);
        }
        out.u32(*node_count);
        let mut index = 0;
        while index < links.len() {
            let run = links[index..].iter().take_while(|link| link.next == NIL).count();
            if run > 0 {
                out.u8(0);
                out.count(run);
                index += run;
            } else {
                out.u8(1);
                out.u32(links[index].prev);
                out.u32(links[index].next);
                index += 1;
            }
        }
    }

    /// Restores into this fresh wheel of the same node count, checking every link stays in
    /// range and the lists are doubly linked consistently.
    pub(crate) fn decode_into(
        &mut self,
        input: &mut SnapshotReader<'_>,
    ) -> Result<(), SnapshotError> {
        self.elapsed_ms = input.u64()?;
        for word in &mut self.occupied {
            *word = input.u64()?;
        }
        if input.u32()? != self.node_count {
            return Err(input.invalid("timer wheel node count differs from the configuration"));
        }
        let total = self.links.len();
        let mut index = 0;
        while index < total {
            match input.u8()? {
                0 => {
                    let run = input.count(total - index, "timer wheel run past the end")?;
                    if run == 0 {
                        return Err(input.invalid("empty run of unlinked timer nodes"));
                    }
                    self.links[index..index + run].fill(UNLINKED);
                    index += run;
                }
                1 => {
                    let link = Link { prev: input.u32()?, next: input.u32()? };
                    if link.prev as usize >= total || link.next as usize >= total {
                        return Err(input.invalid("timer link out of range"));
                    }
                    self.links[index] = link;
                    index += 1;
                }
                _ => return Err(input.invalid("unknown timer wheel record")),
            }
        }
        for (index, link) in self.links.iter().enumerate() {
            let linked = link.next != NIL;
            let consistent = if linked {
                self.links[link.next as usize].prev == index as u32
                    && self.links[link.prev as usize].next == index as u32
            } else {
                link.prev == NIL
            };
            if !consistent {
                return Err(input.invalid("timer lists are not consistently linked"));
            }
        }
        for sentinel in self.node_count as usize..total {
            if self.links[sentinel].next == NIL {
                return Err(input.invalid("a timer list sentinel is unlinked"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::mix64;

    /// Random schedules, cancels and clock jumps against a sorted-list model: every timer
    /// fires exactly once, at the first `pop_due(now)` with `now >= deadline`, in deadline
    /// order.
    #[test]
    fn fires_each_timer_once_in_deadline_order() {
        const NODES: u32 = 300;
        let mut wheel = TimerWheel::new(NODES);
        let mut deadlines = vec![0_u64; NODES as usize];
        let mut armed = vec![false; NODES as usize];
        let mut now = 0_u64;
        let mut seed = 7_u64;
        for step in 0..20_000_u64 {
            seed = mix64(seed ^ step);
            let node = (seed % u64::from(NODES)) as u32;
            match (seed >> 20) % 8 {
                0..=3 if !armed[node as usize] => {
                    let ahead = match (seed >> 30) % 4 {
                        0 => 1 + (seed >> 40) % 64,
                        1 => 1 + (seed >> 40) % 5_000,
                        2 => 1 + (seed >> 40) % 400_000,
                        _ => 1 + (seed >> 40) % 40_000_000_000,
                    };
                    deadlines[node as usize] = now + ahead;
                    armed[node as usize] = true;
                    wheel.schedule(node, now + ahead);
                }
                4 if armed[node as usize] => {
                    wheel.unlink(node);
                    armed[node as usize] = false;
                }
                _ => {
                    now += match (seed >> 50) % 3 {
                        0 => (seed >> 30) % 100,
                        1 => (seed >> 30) % 100_000,
                        _ => (seed >> 30) % 50_000_000_000,
                    };
                    let mut previous = 0;
                    while let Some(fired) = wheel.pop_due(now, |n| deadlines[n as usize]) {
                        assert!(armed[fired as usize], "fired a timer that was not armed");
                        assert!(deadlines[fired as usize] <= now);
                        assert!(deadlines[fired as usize] >= previous, "deadline order");
                        previous = deadlines[fired as usize];
                        armed[fired as usize] = false;
                    }
                    for (index, is_armed) in armed.iter().enumerate() {
                        assert!(!is_armed || deadlines[index] > now, "a due timer was missed");
                    }
                    assert_eq!(wheel.elapsed_ms(), now);
                    let earliest =
                        (0..NODES as usize).filter(|n| armed[*n]).map(|n| deadlines[n]).min();
                    match (wheel.next_deadline_lower_bound(), earliest) {
                        (Some(bound), Some(earliest)) => assert!(bound <= earliest),
                        (None, Some(earliest)) => panic!("timer at {earliest} not reported"),
                        _ => {}
                    }
                }
            }
        }
    }

    #[test]
    fn finished_list_is_fifo() {
        let mut wheel = TimerWheel::new(8);
        for node in [3, 1, 6] {
            wheel.push_finished(node);
        }
        assert_eq!(wheel.finished().collect::<Vec<_>>(), vec![3, 1, 6]);
        wheel.unlink(1);
        assert_eq!(wheel.oldest_finished(), Some(3));
        assert_eq!(wheel.finished().collect::<Vec<_>>(), vec![3, 6]);
    }
}
