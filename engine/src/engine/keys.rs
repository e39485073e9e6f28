//! Request keys: retention, replay of the original outcome, fingerprints.

use super::*;

impl Engine {
    /// Whether `count` new keys fit, counting keys old enough to be forgotten.
    pub(crate) fn key_room(&self, count: usize) -> bool {
        let free = self.config.request_key_max as usize - self.keys.len();
        if free >= count {
            return true;
        }
        let needed = count - free;
        self.key_fifo.len() >= needed
            && self.key_fifo[needed - 1].recorded_ms + self.config.request_key_retention_ms
                <= self.now_ms
    }

    /// Records a new key, forgetting the oldest keys past retention to make room. The
    /// caller checked `key_room`.
    pub(crate) fn record_key(&mut self, account: AccountId, key: RequestKey, record: KeyRecord) {
        debug_assert!(self.keys.get(&(account, key)).is_none());
        if self.keys.is_full() {
            let oldest = self.key_fifo.pop_front().expect("a full table has a FIFO entry");
            assert!(oldest.recorded_ms + self.config.request_key_retention_ms <= self.now_ms);
            self.keys.remove(&(oldest.account, oldest.key)).expect("FIFO mirrors the table");
            self.counters.keys_evicted += 1;
        }
        self.keys.insert((account, key), record).expect("key room was checked");
        self.key_fifo.push_back(KeyFifoEntry { account, key, recorded_ms: self.now_ms });
        debug_assert_eq!(self.keys.len(), self.key_fifo.len());
    }

    /// Forgets a key recorded for a request that turned out to be refused (multi-shard: the
    /// coordinator refused it after the home recorded the key), so that the key stays unused
    /// as one shard would leave it. The key was recorded moments ago: its FIFO entry is
    /// searched from the newest end.
    pub(crate) fn forget_key(&mut self, account: AccountId, key: RequestKey) {
        self.keys.remove(&(account, key)).expect("the key being forgotten is recorded");
        let position = self
            .key_fifo
            .iter()
            .rposition(|entry| entry.account == account && entry.key == key)
            .expect("the FIFO mirrors the table");
        self.key_fifo.remove(position);
        debug_assert_eq!(self.keys.len(), self.key_fifo.len());
    }

    /// The answer to a request whose key is already recorded: DUPLICATE with the original
    /// outcome when the parameters match, KEY_REUSED otherwise.
    pub(crate) fn replay(
        &self,
        account: AccountId,
        record: &KeyRecord,
        op: KeyOp,
        fingerprint: u64,
    ) -> Reply {
        if record.op != op || record.fingerprint != fingerprint {
            return Reply::code(ResultCode::KeyReused);
        }
        let original = ResultCode::from_u16(record.result).expect("recorded codes are valid");
        let body = match op {
            KeyOp::Reserve | KeyOp::Confirm | KeyOp::Cancel => self
                .slot_of(record.reservation)
                .map_or(ReplyBody::None, |index| ReplyBody::Reservation(self.view(index))),
            KeyOp::Deposit | KeyOp::Withdraw => ReplyBody::Account(self.account_view(account)),
            KeyOp::AdjustStock => self
                .sku_index
                .get(&record.reservation)
                .map_or(ReplyBody::None, |index| ReplyBody::Sku(self.sku_view(*index))),
            KeyOp::Tombstone => ReplyBody::None,
        };
        Reply { result: ResultCode::Duplicate, original, body }
    }
}

pub(crate) fn fingerprint(op: KeyOp, words: &[u64]) -> u64 {
    let mut hash = mix64(op as u64 + 1);
    for word in words {
        hash = mix64(hash ^ *word).wrapping_add(0x9e37_79b9_7f4a_7c15);
    }
    hash
}

pub(super) fn target_words(target: Target) -> [u64; 2] {
    match target {
        Target::Reservation(reservation) => [0, reservation],
        Target::ReserveKey(key) => [1, key],
    }
}

pub(super) fn valid_target_request(account: AccountId, target: Target, key: RequestKey) -> bool {
    let target_valid = match target {
        Target::Reservation(reservation) => reservation != 0,
        // A request may not name its own key as the reserve it acts on.
        Target::ReserveKey(reserve_key) => reserve_key != 0 && reserve_key != key,
    };
    account != ADMIN_ACCOUNT && key != 0 && target_valid
}
