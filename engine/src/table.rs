//! `FixedMap`: an open-addressing hash table allocated once and never grown.
//!
//! Linear probing with backward-shift deletion (no tombstones), so a table that stays at or
//! below `len_max` entries never rehashes, never allocates, and probes stay short: the slot
//! count is the next power of two at or above `1.5 * len_max`, a load factor of at most 2/3.
//! A key and its value share an entry, so that a lookup in a table far larger than the
//! cache costs one miss, not two.
//!
//! The hash has no random seed: iteration order depends only on the sequence of inserts
//! and removes, which keeps the engine deterministic.
//!
//! Public so the runtime's own bounded tables (the parked RESERVEs a shard must answer) use
//! the same structure.

use crate::hash::mix64;
use crate::snapshot::{SnapshotError, SnapshotReader, SnapshotWriter};

/// A key of a [`FixedMap`]: `Copy`, with a reserved `EMPTY` value that marks free slots and
/// is never inserted.
pub trait TableKey: Copy + Eq + core::fmt::Debug {
    const EMPTY: Self;
    fn table_hash(&self) -> u64;
}

impl TableKey for u64 {
    const EMPTY: Self = 0;
    #[inline]
    fn table_hash(&self) -> u64 {
        mix64(*self)
    }
}

impl TableKey for (u64, u64) {
    const EMPTY: Self = (0, 0);
    #[inline]
    fn table_hash(&self) -> u64 {
        mix64(self.0 ^ mix64(self.1).rotate_left(17))
    }
}

/// The table already holds `len_max` entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

#[derive(Debug)]
pub struct FixedMap<K: TableKey, V: Copy> {
    entries: Box<[(K, V)]>,
    mask: usize,
    len: usize,
    len_max: usize,
}

impl<K: TableKey, V: Copy + Default> FixedMap<K, V> {
    pub fn with_len_max(len_max: usize) -> Self {
        assert!(len_max > 0);
        let slot_count = (len_max + len_max / 2).max(4).next_power_of_two();
        assert!(slot_count > len_max);
        let mut entries = vec![(K::EMPTY, V::default()); slot_count].into_boxed_slice();
        // Touch every page now (the allocator may hand out lazily zeroed memory), so that the
        // first requests of a sale do not pay page faults. `black_box` keeps the compiler
        // from proving the stores redundant.
        core::hint::black_box(&mut entries).fill((K::EMPTY, V::default()));
        FixedMap { entries, mask: slot_count - 1, len: 0, len_max }
    }

    /// Bytes allocated per entry of capacity (for the memory report).
    pub fn bytes_allocated(&self) -> usize {
        self.entries.len() * core::mem::size_of::<(K, V)>()
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == self.len_max
    }

    #[inline]
    fn home(&self, key: &K) -> usize {
        // Truncation is the point: the low bits pick the slot.
        (key.table_hash() as usize) & self.mask
    }

    /// The slot holding `key`, if present.
    #[inline]
    fn find(&self, key: &K) -> Option<usize> {
        if *key == K::EMPTY {
            return None;
        }
        let mut index = self.home(key);
        // Terminates: the table always has at least one empty slot (len <= len_max < slots).
        loop {
            let candidate = self.entries[index].0;
            if candidate == *key {
                return Some(index);
            }
            if candidate == K::EMPTY {
                return None;
            }
            index = (index + 1) & self.mask;
        }
    }

    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        self.find(key).map(|index| &self.entries[index].1)
    }

    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.find(key).map(|index| &mut self.entries[index].1)
    }

    /// Starts loading the cache line of `key`'s home slot, so that a lookup a little later
    /// does not wait for memory. A plain load whose value is discarded: it cannot fault and
    /// changes nothing, and the out-of-order core keeps going while it is in flight.
    #[inline]
    pub fn prefetch(&self, key: &K) {
        core::hint::black_box(self.entries[self.home(key)].0);
    }

    /// Inserts or replaces. Refuses a new key when `len_max` entries are present.
    pub fn insert(&mut self, key: K, value: V) -> Result<(), TableFull> {
        assert!(key != K::EMPTY, "the empty marker is never a key");
        let mut index = self.home(&key);
        loop {
            let candidate = self.entries[index].0;
            if candidate == key {
                self.entries[index].1 = value;
                return Ok(());
            }
            if candidate == K::EMPTY {
                if self.len == self.len_max {
                    return Err(TableFull);
                }
                self.entries[index] = (key, value);
                self.len += 1;
                return Ok(());
            }
            index = (index + 1) & self.mask;
        }
    }

    /// Removes `key`, shifting later entries of its probe run back so that no tombstone is
    /// left and every remaining key stays reachable from its home slot.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let mut hole = self.find(key)?;
        let removed = self.entries[hole].1;
        self.len -= 1;
        let mut index = hole;
        loop {
            index = (index + 1) & self.mask;
            let candidate = self.entries[index].0;
            if candidate == K::EMPTY {
                break;
            }
            let home = self.home(&candidate);
            // The candidate may move back into the hole only if its home is not in the
            // cyclic interval (hole, index]: otherwise moving it would put it before its home.
            let home_in_gap = if hole <= index {
                hole < home && home <= index
            } else {
                hole < home || home <= index
            };
            if !home_in_gap {
                self.entries[hole] = self.entries[index];
                hole = index;
            }
        }
        self.entries[hole] = (K::EMPTY, V::default());
        Some(removed)
    }

    /// Entries in slot order: deterministic for a given history, not sorted.
    pub fn iter(&self) -> impl Iterator<Item = (K, &V)> + '_ {
        self.entries.iter().filter(|(key, _)| *key != K::EMPTY).map(|(key, value)| (*key, value))
    }

    /// Writes the table exactly as laid out (each entry with its slot index), so that
    /// [`FixedMap::decode_into`] restores the same probe runs and the same iteration order.
    pub fn encode(
        &self,
        out: &mut SnapshotWriter,
        mut entry: impl FnMut(&mut SnapshotWriter, &K, &V),
    ) {
        out.count(self.entries.len());
        out.count(self.len);
        for (index, (key, value)) in self.entries.iter().enumerate() {
            if *key != K::EMPTY {
                out.u32(index as u32);
                entry(out, key, value);
            }
        }
    }

    /// Fills this empty table (of the same capacity) with what [`FixedMap::encode`] wrote,
    /// checking that the layout is one the table could have reached: slot indexes in
    /// range, increasing, no key twice, and every key found where it was placed (its probe
    /// run from its home slot unbroken).
    pub fn decode_into(
        &mut self,
        input: &mut SnapshotReader<'_>,
        mut entry: impl FnMut(&mut SnapshotReader<'_>) -> Result<(K, V), SnapshotError>,
    ) -> Result<(), SnapshotError> {
        assert!(self.is_empty(), "a snapshot is restored into an empty table");
        let slot_count = input.count(usize::MAX, "table slot count")?;
        if slot_count != self.entries.len() {
            return Err(input.invalid("table slot count differs from the configured capacity"));
        }
        let len = input.count(self.len_max, "table entry count above its capacity")?;
        let mut next_index = 0_usize;
        for _ in 0..len {
            let index = input.u32()? as usize;
            if index < next_index || index >= slot_count {
                return Err(input.invalid("table slot index out of order or range"));
            }
            let (key, value) = entry(input)?;
            if key == K::EMPTY {
                return Err(input.invalid("table key is the empty marker"));
            }
            self.entries[index] = (key, value);
            next_index = index + 1;
        }
        self.len = len;
        for index in 0..slot_count {
            let key = self.entries[index].0;
            if key != K::EMPTY && self.find(&key) != Some(index) {
                return Err(input.invalid("table key not reachable from its home slot"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_against_a_btreemap() {
        // A small deterministic pseudo-random walk with heavy collisions (tiny table).
        let mut table: FixedMap<u64, u64> = FixedMap::with_len_max(40);
        let mut model = std::collections::BTreeMap::new();
        let mut seed = 0x1234_5678_u64;
        for step in 0..200_000_u64 {
            seed = mix64(seed.wrapping_add(step));
            let key = 1 + seed % 60;
            if seed & (1 << 40) == 0 {
                let result = table.insert(key, step);
                if model.contains_key(&key) || model.len() < 40 {
                    assert_eq!(result, Ok(()));
                    model.insert(key, step);
                } else {
                    assert_eq!(result, Err(TableFull));
                }
            } else {
                assert_eq!(table.remove(&key), model.remove(&key));
            }
            assert_eq!(table.len(), model.len());
            for probe in 1..=60 {
                assert_eq!(table.get(&probe).copied(), model.get(&probe).copied());
            }
        }
    }

    #[test]
    fn full_table_refuses_new_keys_but_updates_existing() {
        let mut table: FixedMap<(u64, u64), u32> = FixedMap::with_len_max(3);
        for key in 1..=3 {
            table.insert((key, key), 1).unwrap();
        }
        assert!(table.is_full());
        assert_eq!(table.insert((4, 4), 1), Err(TableFull));
        assert_eq!(table.insert((2, 2), 7), Ok(()));
        assert_eq!(table.get(&(2, 2)), Some(&7));
    }
}
