//! QUERY_SKU, QUERY_ACCOUNT, QUERY_RESERVATION.

use super::*;

impl Engine {
    pub(super) fn query_sku(&self, sku: SkuId) -> Reply {
        if sku == 0 {
            return Reply::code(ResultCode::BadRequest);
        }
        match self.sku_index.get(&sku) {
            Some(index) => Reply::with_body(ResultCode::Ok, ReplyBody::Sku(self.sku_view(*index))),
            None => Reply::code(ResultCode::UnknownSku),
        }
    }

    pub(super) fn query_account(&self, account: AccountId) -> Reply {
        if account == ADMIN_ACCOUNT {
            return Reply::code(ResultCode::BadRequest);
        }
        Reply::with_body(ResultCode::Ok, ReplyBody::Account(self.account_view(account)))
    }

    pub(super) fn query_reservation(&self, account: AccountId, target: Target) -> Reply {
        let target_value = match target {
            Target::Reservation(value) | Target::ReserveKey(value) => value,
        };
        if account == ADMIN_ACCOUNT || target_value == 0 {
            return Reply::code(ResultCode::BadRequest);
        }
        match self.resolve(account, target) {
            Resolved::Slot(index) => {
                Reply::with_body(ResultCode::Ok, ReplyBody::Reservation(self.view(index)))
            }
            Resolved::Tombstone => Reply::code(ResultCode::AlreadyCancelled),
            Resolved::Unknown => Reply::code(ResultCode::UnknownReservation),
        }
    }

    pub(crate) fn sku_view(&self, index: u32) -> SkuView {
        let sku = &self.skus[index as usize];
        SkuView {
            sku: sku.id,
            total: sku.total,
            available: sku.available,
            reserved: sku.reserved,
            sold: sku.sold,
            price: sku.price,
            per_user_limit: sku.per_user_limit,
            hold_ms: sku.hold_ms,
            start_ms: sku.start_ms,
            end_ms: sku.end_ms,
            waiters: sku.waiters,
            paused: sku.paused,
        }
    }

    pub(crate) fn account_view(&self, account: AccountId) -> AccountView {
        let wallet = self.wallets.get(&account).copied().unwrap_or_default();
        AccountView {
            account,
            available: wallet.available,
            held: wallet.held,
            spent: wallet.spent,
            deposited: wallet.deposited,
            withdrawn: wallet.withdrawn,
        }
    }
}
