//! Deterministic hashing: the table hash (fast, fixed, no random seed, so iteration order
//! depends only on the input history) and the state hash used by determinism checks.

/// The 64-bit finalizer of MurmurHash3: a full avalanche in two multiplications.
#[inline]
pub(crate) fn mix64(mut value: u64) -> u64 {
    value ^= value >> 33;
    value = value.wrapping_mul(0xff51_afd7_ed55_8ccd);
    value ^= value >> 33;
    value = value.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    value ^= value >> 33;
    value
}

/// FNV-1a over the little-endian bytes of every value written: slow but simple and stable
/// across platforms and Rust versions, which is what a state fingerprint needs.
#[derive(Clone, Debug)]
pub struct StateHasher {
    state: u64,
}

impl Default for StateHasher {
    fn default() -> Self {
        StateHasher { state: 0xcbf2_9ce4_8422_2325 }
    }
}

impl StateHasher {
    pub fn write_u64(&mut self, value: u64) {
        for byte in value.to_le_bytes() {
            self.state ^= u64::from(byte);
            self.state = self.state.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn finish(&self) -> u64 {
        self.state
    }
}
