//! Admin operations: PUT_SKU, ADJUST_STOCK, PAUSE/RESUME, DEPOSIT, WITHDRAW.

use super::*;

impl Engine {
    pub(super) fn put_sku(&mut self, spec: &SkuSpec) -> Reply {
        let valid = spec.sku != 0
            && spec.hold_ms <= self.config.hold_ms_max
            && (spec.end_ms == 0 || spec.end_ms > spec.start_ms);
        if !valid {
            return Reply::code(ResultCode::BadRequest);
        }
        if self.sharded() {
            assert_eq!(self.placement.coordinator_of(spec.sku), self.placement.shard);
        }
        if let Some(index) = self.sku_index.get(&spec.sku).copied() {
            if self.sharded() {
                let known = self.skus[index as usize];
                if known.per_user_limit == spec.per_user_limit {
                    self.broadcast(Message::Define { spec: *spec });
                }
            }
            self.sku_dirty.mark(index);
            let sku = &mut self.skus[index as usize];
            if sku.per_user_limit != spec.per_user_limit {
                // Counters exist only for limited SKUs; changing the limit mid-sale would
                // make old purchases invisible to it.
                return Reply::code(ResultCode::BadRequest);
            }
            sku.price = spec.price;
            sku.hold_ms = spec.hold_ms;
            sku.start_ms = spec.start_ms;
            sku.end_ms = spec.end_ms;
            return Reply::with_body(ResultCode::Ok, ReplyBody::Sku(self.sku_view(index)));
        }
        if self.sku_index.is_full() {
            return Reply::code(ResultCode::Overloaded);
        }
        // With shards, the stock starts in the coordinator's pool and every bucket is closed
        // until the coordinator opens it with a refill.
        let local_units = if self.sharded() { 0 } else { spec.stock_total };
        let index = self.define_sku(spec, local_units);
        if self.sharded() {
            self.sku_dirty.mark(index);
            let sku = &mut self.skus[index as usize];
            sku.pool = spec.stock_total;
            sku.global_total = spec.stock_total;
            self.broadcast(Message::Define { spec: *spec });
            // Announces a SKU created with no stock as dry.
            self.feed_line(index);
        }
        Reply::with_body(ResultCode::Ok, ReplyBody::Sku(self.sku_view(index)))
    }

    /// Creates a SKU entry holding `local_units` in this shard's bucket. The caller checked
    /// that the table has room.
    pub(crate) fn define_sku(&mut self, spec: &SkuSpec, local_units: u64) -> u32 {
        let index = self.skus.len() as u32;
        self.sku_dirty.mark(index);
        self.skus.push(Sku {
            id: spec.sku,
            price: spec.price,
            per_user_limit: spec.per_user_limit,
            hold_ms: spec.hold_ms,
            start_ms: spec.start_ms,
            end_ms: spec.end_ms,
            total: local_units,
            available: local_units,
            reserved: 0,
            sold: 0,
            waiters: 0,
            waitlist_head: NIL,
            waitlist_tail: NIL,
            paused: false,
            drained: self.sharded(),
            dry: false,
            pool: 0,
            global_total: 0,
            reclaim_pending: 0,
            buckets_may_hold: false,
            dry_announced: false,
            no_wait_waiters: 0,
            reduction_pending: 0,
            reduction_key: 0,
            reduction_from: 0,
        });
        self.sku_index.insert(spec.sku, index).expect("room was checked");
        index
    }

    pub(crate) fn adjust_stock(&mut self, sku: SkuId, delta: i64, key: RequestKey) -> Reply {
        if sku == 0 || key == 0 || delta == 0 {
            return Reply::code(ResultCode::BadRequest);
        }
        let fingerprint = fingerprint(KeyOp::AdjustStock, &[sku, delta as u64]);
        if let Some(record) = self.keys.get(&(ADMIN_ACCOUNT, key)).copied() {
            return self.replay(ADMIN_ACCOUNT, &record, KeyOp::AdjustStock, fingerprint);
        }
        if self.sharded() {
            // This shard is the admin namespace's home: it keeps the key, the SKU's
            // coordinator applies the adjustment (quota.rs).
            return self.adjust_remote(sku, delta, key, fingerprint);
        }
        let Some(index) = self.sku_index.get(&sku).copied() else {
            return Reply::code(ResultCode::UnknownSku);
        };
        let current = self.skus[index as usize];
        let magnitude = delta.unsigned_abs();
        let (total, available) = if delta > 0 {
            match (current.total.checked_add(magnitude), current.available.checked_add(magnitude)) {
                (Some(total), Some(available)) => (total, available),
                _ => return Reply::code(ResultCode::Overflow),
            }
        } else {
            if current.available < magnitude {
                return Reply::code(ResultCode::SoldOut);
            }
            (current.total - magnitude, current.available - magnitude)
        };
        if !self.key_room(1) {
            return Reply::code(ResultCode::Overloaded);
        }
        self.sku_dirty.mark(index);
        let entry = &mut self.skus[index as usize];
        entry.total = total;
        entry.available = available;
        // The SKU id rides in the record's reservation field, to replay the SKU view.
        self.record_key(
            ADMIN_ACCOUNT,
            key,
            KeyRecord {
                fingerprint,
                reservation: sku,
                op: KeyOp::AdjustStock,
                result: ResultCode::Ok as u16,
            },
        );
        // Restocked units go to the oldest waiters before any newcomer.
        self.feed_waiters(index);
        Reply::with_body(ResultCode::Ok, ReplyBody::Sku(self.sku_view(index)))
    }

    pub(super) fn set_paused(&mut self, sku: SkuId, paused: bool) -> Reply {
        if sku == 0 {
            return Reply::code(ResultCode::BadRequest);
        }
        let Some(index) = self.sku_index.get(&sku).copied() else {
            return Reply::code(ResultCode::UnknownSku);
        };
        self.sku_dirty.mark(index);
        self.skus[index as usize].paused = paused;
        if self.sharded() {
            assert_eq!(self.placement.coordinator_of(sku), self.placement.shard);
            self.broadcast(Message::SetPaused { sku, paused });
        }
        Reply::with_body(ResultCode::Ok, ReplyBody::Sku(self.sku_view(index)))
    }

    pub(super) fn deposit(&mut self, account: AccountId, amount: u64, key: RequestKey) -> Reply {
        if account == ADMIN_ACCOUNT || key == 0 || amount == 0 {
            return Reply::code(ResultCode::BadRequest);
        }
        let fingerprint = fingerprint(KeyOp::Deposit, &[amount]);
        if let Some(record) = self.keys.get(&(account, key)).copied() {
            return self.replay(account, &record, KeyOp::Deposit, fingerprint);
        }
        let wallet = self.wallets.get(&account).copied();
        if wallet.is_none() && self.wallets.is_full() {
            return Reply::code(ResultCode::Overloaded);
        }
        let mut wallet = wallet.unwrap_or_default();
        // `available <= deposited` always, so checking `deposited` covers both sums.
        match wallet.deposited.checked_add(amount) {
            Some(deposited) => {
                wallet.deposited = deposited;
                wallet.available += amount;
            }
            None => return Reply::code(ResultCode::Overflow),
        }
        if !self.key_room(1) {
            return Reply::code(ResultCode::Overloaded);
        }
        self.wallets.insert(account, wallet).expect("wallet room was checked");
        self.record_key(
            account,
            key,
            KeyRecord {
                fingerprint,
                reservation: 0,
                op: KeyOp::Deposit,
                result: ResultCode::Ok as u16,
            },
        );
        Reply::with_body(ResultCode::Ok, ReplyBody::Account(self.account_view(account)))
    }

    pub(super) fn withdraw(&mut self, account: AccountId, amount: u64, key: RequestKey) -> Reply {
        if account == ADMIN_ACCOUNT || key == 0 || amount == 0 {
            return Reply::code(ResultCode::BadRequest);
        }
        let fingerprint = fingerprint(KeyOp::Withdraw, &[amount]);
        if let Some(record) = self.keys.get(&(account, key)).copied() {
            return self.replay(account, &record, KeyOp::Withdraw, fingerprint);
        }
        let available = self.wallets.get(&account).map_or(0, |wallet| wallet.available);
        if available < amount {
            return Reply::code(ResultCode::InsufficientFunds);
        }
        if !self.key_room(1) {
            return Reply::code(ResultCode::Overloaded);
        }
        let wallet = self.wallets.get_mut(&account).expect("a wallet with funds exists");
        wallet.available -= amount;
        wallet.withdrawn += amount;
        self.record_key(
            account,
            key,
            KeyRecord {
                fingerprint,
                reservation: 0,
                op: KeyOp::Withdraw,
                result: ResultCode::Ok as u16,
            },
        );
        Reply::with_body(ResultCode::Ok, ReplyBody::Account(self.account_view(account)))
    }
}
