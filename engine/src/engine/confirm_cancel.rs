//! CONFIRM and CANCEL (TCC), with the cancel-before-reserve tombstone.

use super::keys::{target_words, valid_target_request};
use super::*;

impl Engine {
    pub(super) fn confirm(&mut self, account: AccountId, target: Target, key: RequestKey) -> Reply {
        if !valid_target_request(account, target, key) {
            return Reply::code(ResultCode::BadRequest);
        }
        let fingerprint = fingerprint(KeyOp::Confirm, &target_words(target));
        if let Some(record) = self.keys.get(&(account, key)).copied() {
            return self.replay(account, &record, KeyOp::Confirm, fingerprint);
        }
        let index = match self.resolve(account, target) {
            Resolved::Slot(index) => index,
            Resolved::Tombstone => return Reply::code(ResultCode::AlreadyCancelled),
            Resolved::Unknown => return Reply::code(ResultCode::UnknownReservation),
        };
        let slot = self.slots[index as usize];
        match slot.state() {
            ReservationState::Held => {}
            state => return self.refusal_for(state, index),
        }
        if !self.key_room(1) {
            return Reply::code(ResultCode::Overloaded);
        }
        debug_assert!(slot.deadline_ms > self.now_ms, "overdue holds were expired");
        self.wheel.unlink(index);
        let quantity = u64::from(slot.quantity);
        self.sku_dirty.mark(slot.sku_index);
        let sku = &mut self.skus[slot.sku_index as usize];
        sku.reserved -= quantity;
        sku.sold += quantity;
        if slot.amount > 0 {
            let wallet = self.wallets.get_mut(&slot.account).expect("funds are held");
            wallet.held -= slot.amount;
            wallet.spent += slot.amount;
        }
        self.finish(index, ReservationState::Confirmed);
        let reservation = self.reservation_id(index);
        self.record_key(
            account,
            key,
            KeyRecord {
                fingerprint,
                reservation,
                op: KeyOp::Confirm,
                result: ResultCode::Ok as u16,
            },
        );
        Reply::with_body(ResultCode::Ok, ReplyBody::Reservation(self.view(index)))
    }

    pub(super) fn cancel(&mut self, account: AccountId, target: Target, key: RequestKey) -> Reply {
        if !valid_target_request(account, target, key) {
            return Reply::code(ResultCode::BadRequest);
        }
        let fingerprint = fingerprint(KeyOp::Cancel, &target_words(target));
        if let Some(record) = self.keys.get(&(account, key)).copied() {
            return self.replay(account, &record, KeyOp::Cancel, fingerprint);
        }
        let index = match self.resolve(account, target) {
            Resolved::Slot(index) => index,
            Resolved::Tombstone => {
                // Already rolled back (empty): a second empty rollback succeeds too.
                if !self.key_room(1) {
                    return Reply::code(ResultCode::Overloaded);
                }
                self.record_empty_cancel(account, key, fingerprint);
                return Reply::code(ResultCode::Ok);
            }
            Resolved::Unknown => {
                let Target::ReserveKey(reserve_key) = target else {
                    return Reply::code(ResultCode::UnknownReservation);
                };
                if self.keys.get(&(account, reserve_key)).is_some() {
                    // The reserve key is known but names no reservation any more (retired).
                    return Reply::code(ResultCode::UnknownReservation);
                }
                // Cancel before reserve: tombstone the reserve key so the late RESERVE is
                // refused, and succeed as an empty rollback.
                if !self.key_room(2) {
                    return Reply::code(ResultCode::Overloaded);
                }
                self.record_key(
                    account,
                    reserve_key,
                    KeyRecord {
                        fingerprint: 0,
                        reservation: 0,
                        op: KeyOp::Tombstone,
                        result: ResultCode::Ok as u16,
                    },
                );
                self.record_empty_cancel(account, key, fingerprint);
                return Reply::code(ResultCode::Ok);
            }
        };
        let slot = self.slots[index as usize];
        let was_waiting = match slot.state() {
            ReservationState::Held => false,
            ReservationState::Waiting => true,
            state => return self.refusal_for(state, index),
        };
        if !self.key_room(1) {
            return Reply::code(ResultCode::Overloaded);
        }
        if was_waiting && slot.is_remote() {
            self.return_funds_and_limit(index);
            self.finish(index, ReservationState::Cancelled);
            self.resolve_parked(index, ResultCode::AlreadyCancelled);
            let sku = self.skus[slot.sku_index as usize].id;
            let reservation = self.reservation_id(index);
            self.send(self.placement.coordinator_of(sku), Message::Withdraw { sku, reservation });
        } else if was_waiting {
            self.withdraw_waiter(index);
            self.finish(index, ReservationState::Cancelled);
            self.resolve_parked(index, ResultCode::AlreadyCancelled);
        } else {
            self.wheel.unlink(index);
            self.release_held(index);
            self.finish(index, ReservationState::Cancelled);
        }
        let reservation = self.reservation_id(index);
        self.record_key(
            account,
            key,
            KeyRecord {
                fingerprint,
                reservation,
                op: KeyOp::Cancel,
                result: ResultCode::Ok as u16,
            },
        );
        let reply = Reply::with_body(ResultCode::Ok, ReplyBody::Reservation(self.view(index)));
        // Released units (or a removed head of the line) may let waiters through.
        self.units_returned(slot.sku_index);
        reply
    }

    pub(super) fn record_empty_cancel(
        &mut self,
        account: AccountId,
        key: RequestKey,
        fingerprint: u64,
    ) {
        self.record_key(
            account,
            key,
            KeyRecord {
                fingerprint,
                reservation: 0,
                op: KeyOp::Cancel,
                result: ResultCode::Ok as u16,
            },
        );
    }

    /// The refusal for CONFIRM or CANCEL of a reservation that is not (only) held.
    pub(super) fn refusal_for(&self, state: ReservationState, index: u32) -> Reply {
        let result = match state {
            ReservationState::Waiting => ResultCode::Waiting,
            ReservationState::Confirmed => ResultCode::AlreadyConfirmed,
            ReservationState::Cancelled => ResultCode::AlreadyCancelled,
            ReservationState::Expired => ResultCode::Expired,
            ReservationState::WaitTimedOut => ResultCode::WaitTimeout,
            ReservationState::Held | ReservationState::None => {
                unreachable!("callers handle held; resolved slots are never free")
            }
        };
        Reply::with_body(result, ReplyBody::Reservation(self.view(index)))
    }

    /// Held units go back to the bucket, funds back to the wallet, the limit count down.
    pub(super) fn release_held(&mut self, index: u32) {
        let slot = self.slots[index as usize];
        let quantity = u64::from(slot.quantity);
        self.sku_dirty.mark(slot.sku_index);
        let sku = &mut self.skus[slot.sku_index as usize];
        sku.reserved -= quantity;
        sku.available += quantity;
        self.return_funds_and_limit(index);
    }

    pub(crate) fn return_funds_and_limit(&mut self, index: u32) {
        let slot = self.slots[index as usize];
        if slot.amount > 0 {
            let wallet = self.wallets.get_mut(&slot.account).expect("funds are held");
            wallet.held -= slot.amount;
            wallet.available += slot.amount;
        }
        let sku = self.skus[slot.sku_index as usize];
        if sku.per_user_limit != 0 {
            let limit_key = (slot.account, sku.id);
            let used = self.limits.get_mut(&limit_key).expect("live units are counted");
            *used -= u32::from(slot.quantity);
            if *used == 0 {
                self.limits.remove(&limit_key);
            }
        }
    }
}
