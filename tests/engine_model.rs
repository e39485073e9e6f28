//! The engine against an independent reference model of docs/SEMANTICS.md.
//!
//! [`Model`] is a second implementation of the engine's semantics, written from
//! docs/SEMANTICS.md alone: plain `BTreeMap`s and `Vec`s, no capacity bounds, no timer wheel,
//! no free lists. It is small enough to be checked by reading it next to the spec.
//!
//! The property tests generate command sequences (a few SKUs, one of them hot with a handful
//! of units; a few accounts with deposits; RESERVEs with random flags, holds and waits;
//! retries with the same or different parameters; CONFIRM / CANCEL by id or by reserve key,
//! including cancel-before-reserve and the late RESERVE after it; queries; admin operations;
//! clock steps, jumps, stale clocks and ticks), apply every command to both, and require
//! after every call: identical replies (result, original result and body, reservation ids
//! translated through a bijection established when a reservation is created), identical
//! events (as multisets), equal clocks, `Engine::check_invariants` Ok, and the model's own
//! invariants. 10,000 sequences of a broad mix, then 3,000 with flash-sale contention.
//!
//! On a disagreement the test fails with the concrete calls of the (shrunk) sequence, the
//! model's replies and events, and the id map. Before changing the model, re-read
//! SEMANTICS.md: the model follows the text, not the engine.
//!
//! The engine is configured so that no table fills up in a sequence (no OVERLOADED, no
//! reservation retirement, no key eviction): those bounds are the subject of the determinism
//! test and the scenario tests, not of this one.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use proptest::prelude::*;
use rush_engine::ReservationIdParts;
use rush_engine::{
    AccountView, Config, Engine, Event, Reply, ReplyBody, Request, ReservationState,
    ReservationView, Reserve, ResultCode, SkuSpec, SkuView, Target, RESERVE_FLAGS_KNOWN,
    RESERVE_FLAG_BUY, RESERVE_FLAG_PAY,
};
use rush_suite::engine::{bare, engine_with, is_keyed};

// =========================================================================================
// Configuration
// =========================================================================================

/// Bounds far above what one sequence can use (at most ~100 requests, each creating at most
/// one reservation and recording at most two keys), with short times so that holds and
/// waits end within a sequence.
fn config() -> Config {
    Config {
        sku_max: 16,
        account_max: 16,
        reservation_max: 512,
        waitlist_max: 512,
        request_key_max: 1024,
        request_key_retention_ms: 24 * 3600 * 1000,
        limit_entry_max: 512,
        quantity_max: QUANTITY_MAX,
        hold_ms_default: 40,
        hold_ms_max: HOLD_MS_MAX,
        wait_ms_max: WAIT_MS_MAX,
    }
}

const QUANTITY_MAX: u32 = 3;
const HOLD_MS_MAX: u32 = 100;
const WAIT_MS_MAX: u32 = 100;
/// The clock of the first request.
const T0: u64 = 10_000;
/// Buyer accounts are 1..=ACCOUNTS (0 is invalid).
const ACCOUNTS: u64 = 6;
/// SKUs are 1..=SKU_IDS (the ones not set up are unknown until a PUT_SKU creates them).
const SKU_IDS: u64 = 5;
/// Fresh request keys are drawn from here up; "small" keys 1..=4 collide on purpose.
const FRESH_KEY_BASE: u64 = 1_000;

/// A parked RESERVE with `hold_ms == 0` on a SKU whose `hold_ms` is changed by PUT_SKU while
/// it waits: SEMANTICS.md settles that the hold is resolved when the RESERVE is applied (at
/// park time), so this is `false`. The model keeps the other reading behind this switch
/// because the property test found the question; flipping it must make the test fail.
const SKU_HOLD_RESOLVED_AT_MATCH: bool = false;

// =========================================================================================
// The reference model
// =========================================================================================

/// What a recorded request key remembers: the operation and its parameters (account and key
/// are the map key), the outcome to replay, and the reservation it created or acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyParams {
    Reserve {
        sku: u64,
        quantity: u32,
        flags: u32,
        hold_ms: u32,
        wait_ms: u32,
    },
    Confirm(Target),
    Cancel(Target),
    Deposit(u64),
    Withdraw(u64),
    AdjustStock {
        sku: u64,
        delta: i64,
    },
    /// A reserve key named by a CANCEL before any RESERVE used it.
    Tombstone,
}

#[derive(Clone, Copy, Debug)]
struct KeyRecord {
    params: KeyParams,
    outcome: ResultCode,
    reservation: Option<u64>,
}

#[derive(Clone, Debug)]
struct MSku {
    price: u64,
    per_user_limit: u32,
    hold_ms: u32,
    start_ms: u64,
    end_ms: u64,
    total: u64,
    available: u64,
    reserved: u64,
    sold: u64,
    paused: bool,
    /// The waitlist, oldest first (model reservation ids).
    line: VecDeque<u64>,
}

#[derive(Clone, Copy, Debug, Default)]
struct MWallet {
    available: u64,
    held: u64,
    spent: u64,
    deposited: u64,
    withdrawn: u64,
}

#[derive(Clone, Copy, Debug)]
struct MRes {
    account: u64,
    sku: u64,
    quantity: u32,
    flags: u32,
    amount: u64,
    deadline_ms: u64,
    state: ReservationState,
    /// The key of the RESERVE that created it.
    key: u64,
    /// The RESERVE's own `hold_ms` (0 = the SKU's, else the engine's default).
    hold_ms: u32,
    /// The SKU's `hold_ms` when the RESERVE was made (see [`SKU_HOLD_RESOLVED_AT_MATCH`]).
    sku_hold_ms_at_reserve: u32,
}

impl MRes {
    fn is_live(&self) -> bool {
        matches!(self.state, ReservationState::Waiting | ReservationState::Held)
    }
}

/// What a reservation target names, for an account.
enum Resolved {
    Found(u64),
    Tombstone,
    /// An id that names nothing of this account, or a reserve key recorded by something
    /// other than a RESERVE.
    Unknown,
    /// A reserve key nobody has used.
    UnusedKey,
}

#[derive(Debug)]
struct Model {
    cfg: Config,
    now: u64,
    skus: BTreeMap<u64, MSku>,
    wallets: BTreeMap<u64, MWallet>,
    /// Every reservation ever created; the model's id of `res[i]` is `i + 1`.
    res: Vec<MRes>,
    keys: BTreeMap<(u64, u64), KeyRecord>,
    events: Vec<Event>,
}

impl Model {
    fn new(cfg: Config) -> Model {
        Model {
            cfg,
            now: 0,
            skus: BTreeMap::new(),
            wallets: BTreeMap::new(),
            res: Vec::new(),
            keys: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    // ---- views --------------------------------------------------------------------------

    fn get_res(&self, id: u64) -> Option<&MRes> {
        let index = usize::try_from(id.checked_sub(1)?).ok()?;
        self.res.get(index)
    }

    fn r(&self, id: u64) -> MRes {
        self.res[(id - 1) as usize]
    }

    fn r_mut(&mut self, id: u64) -> &mut MRes {
        &mut self.res[(id - 1) as usize]
    }

    fn res_view(&self, id: u64) -> ReservationView {
        let r = self.r(id);
        ReservationView {
            reservation: id,
            account: r.account,
            sku: r.sku,
            quantity: r.quantity,
            flags: r.flags,
            amount: r.amount,
            deadline_ms: r.deadline_ms,
            state: r.state,
        }
    }

    fn sku_view(&self, sku: u64) -> SkuView {
        let s = &self.skus[&sku];
        SkuView {
            sku,
            total: s.total,
            available: s.available,
            reserved: s.reserved,
            sold: s.sold,
            price: s.price,
            per_user_limit: s.per_user_limit,
            hold_ms: s.hold_ms,
            start_ms: s.start_ms,
            end_ms: s.end_ms,
            waiters: s.line.len() as u32,
            paused: s.paused,
        }
    }

    fn account_view(&self, account: u64) -> AccountView {
        let w = self.wallets.get(&account).copied().unwrap_or_default();
        AccountView {
            account,
            available: w.available,
            held: w.held,
            spent: w.spent,
            deposited: w.deposited,
            withdrawn: w.withdrawn,
        }
    }

    fn with_res(&self, code: ResultCode, id: u64) -> Reply {
        Reply::with_body(code, ReplyBody::Reservation(self.res_view(id)))
    }

    fn with_sku(&self, code: ResultCode, sku: u64) -> Reply {
        Reply::with_body(code, ReplyBody::Sku(self.sku_view(sku)))
    }

    fn with_account(&self, code: ResultCode, account: u64) -> Reply {
        Reply::with_body(code, ReplyBody::Account(self.account_view(account)))
    }

    /// DUPLICATE: the recorded outcome, and the object as it is now.
    fn duplicate(&self, account: u64, record: &KeyRecord) -> Reply {
        let body = match record.params {
            KeyParams::Reserve { .. } | KeyParams::Confirm(_) | KeyParams::Cancel(_) => {
                match record.reservation {
                    Some(id) => ReplyBody::Reservation(self.res_view(id)),
                    None => ReplyBody::None,
                }
            }
            KeyParams::Deposit(_) | KeyParams::Withdraw(_) => {
                ReplyBody::Account(self.account_view(account))
            }
            KeyParams::AdjustStock { sku, .. } => ReplyBody::Sku(self.sku_view(sku)),
            KeyParams::Tombstone => unreachable!("a tombstone is never replayed"),
        };
        Reply { result: ResultCode::Duplicate, original: record.outcome, body }
    }

    /// The key check shared by every keyed operation: `Some(reply)` if the key is recorded.
    fn check_key(&self, account: u64, key: u64, params: KeyParams) -> Option<Reply> {
        let record = self.keys.get(&(account, key))?;
        if record.params == params {
            Some(self.duplicate(account, record))
        } else {
            Some(bare(ResultCode::KeyReused))
        }
    }

    fn record(
        &mut self,
        account: u64,
        key: u64,
        params: KeyParams,
        outcome: ResultCode,
        id: Option<u64>,
    ) {
        let previous =
            self.keys.insert((account, key), KeyRecord { params, outcome, reservation: id });
        assert!(previous.is_none(), "model: key ({account}, {key}) recorded twice");
    }

    fn set_outcome(&mut self, account: u64, key: u64, outcome: ResultCode) {
        self.keys.get_mut(&(account, key)).expect("a live reservation's key is recorded").outcome =
            outcome;
    }

    fn resolve(&self, account: u64, target: Target) -> Resolved {
        let id = match target {
            Target::Reservation(id) => id,
            Target::ReserveKey(key) => match self.keys.get(&(account, key)) {
                None => return Resolved::UnusedKey,
                Some(KeyRecord { params: KeyParams::Tombstone, .. }) => return Resolved::Tombstone,
                Some(KeyRecord { params: KeyParams::Reserve { .. }, reservation, .. }) => {
                    reservation.expect("a RESERVE record names its reservation")
                }
                Some(_) => return Resolved::Unknown,
            },
        };
        match self.get_res(id) {
            Some(r) if r.account == account => Resolved::Found(id),
            _ => Resolved::Unknown,
        }
    }

    fn emit(&mut self, id: u64, code: ResultCode) {
        let r = self.r(id);
        let reply = self.with_res(code, id);
        self.events.push(Event { account: r.account, key: r.key, reply });
    }

    // ---- money and counters -------------------------------------------------------------

    fn wallet_available(&self, account: u64) -> u64 {
        self.wallets.get(&account).map_or(0, |w| w.available)
    }

    /// Units of `sku` the account holds, bought or waits for (what the limit counter counts).
    fn counted(&self, account: u64, sku: u64) -> u64 {
        self.res
            .iter()
            .filter(|r| r.account == account && r.sku == sku)
            .filter(|r| {
                matches!(
                    r.state,
                    ReservationState::Waiting
                        | ReservationState::Held
                        | ReservationState::Confirmed
                )
            })
            .map(|r| u64::from(r.quantity))
            .sum()
    }

    fn funds_hold(&mut self, account: u64, amount: u64) {
        if amount > 0 {
            let w = self.wallets.get_mut(&account).expect("funds are held from a wallet");
            w.available -= amount;
            w.held += amount;
        }
    }

    fn funds_release(&mut self, account: u64, amount: u64) {
        if amount > 0 {
            let w = self.wallets.get_mut(&account).expect("held funds have a wallet");
            w.held -= amount;
            w.available += amount;
        }
    }

    fn funds_spend(&mut self, account: u64, amount: u64) {
        if amount > 0 {
            let w = self.wallets.get_mut(&account).expect("held funds have a wallet");
            w.held -= amount;
            w.spent += amount;
        }
    }

    // ---- clock, timers, matching --------------------------------------------------------

    fn tick(&mut self, now_ms: u64) {
        self.advance(now_ms);
    }

    /// SEMANTICS "Clock" and "Timers": every due hold expires, every due waiter times out,
    /// then the released units go to the remaining waiters (all at `now`).
    fn advance(&mut self, now_ms: u64) {
        self.now = self.now.max(now_ms);
        let now = self.now;
        let due: Vec<u64> = (1..=self.res.len() as u64)
            .filter(|&id| {
                let r = self.r(id);
                r.is_live() && r.deadline_ms <= now
            })
            .collect();
        let mut touched = BTreeSet::new();
        for id in due {
            let r = self.r(id);
            touched.insert(r.sku);
            match r.state {
                ReservationState::Held => self.expire(id),
                ReservationState::Waiting => self.time_out(id),
                state => unreachable!("{state:?} is not live"),
            }
        }
        for sku in touched {
            self.feed(sku);
        }
    }

    fn expire(&mut self, id: u64) {
        let r = self.r(id);
        let s = self.skus.get_mut(&r.sku).unwrap();
        s.reserved -= u64::from(r.quantity);
        s.available += u64::from(r.quantity);
        self.funds_release(r.account, r.amount);
        self.r_mut(id).state = ReservationState::Expired;
    }

    fn remove_from_line(&mut self, id: u64) {
        let sku = self.r(id).sku;
        let line = &mut self.skus.get_mut(&sku).unwrap().line;
        let position = line.iter().position(|&waiter| waiter == id).expect("a waiter is in line");
        line.remove(position);
    }

    fn time_out(&mut self, id: u64) {
        let r = self.r(id);
        self.remove_from_line(id);
        self.funds_release(r.account, r.amount);
        self.r_mut(id).state = ReservationState::WaitTimedOut;
        self.set_outcome(r.account, r.key, ResultCode::WaitTimeout);
        self.emit(id, ResultCode::WaitTimeout);
    }

    /// The hold time of a reservation taken now: the RESERVE's, else the SKU's, else the
    /// engine's default.
    fn hold_ms(&self, r: &MRes) -> u64 {
        let sku_hold = if SKU_HOLD_RESOLVED_AT_MATCH {
            self.skus[&r.sku].hold_ms
        } else {
            r.sku_hold_ms_at_reserve
        };
        u64::from(if r.hold_ms > 0 {
            r.hold_ms
        } else if sku_hold > 0 {
            sku_hold
        } else {
            self.cfg.hold_ms_default
        })
    }

    /// "Taken now", after the units left `available`: HELD, or CONFIRMED with BUY.
    fn take(&mut self, id: u64) {
        let r = self.r(id);
        let now = self.now;
        let q = u64::from(r.quantity);
        if r.flags & RESERVE_FLAG_BUY != 0 {
            self.skus.get_mut(&r.sku).unwrap().sold += q;
            self.funds_spend(r.account, r.amount);
            let m = self.r_mut(id);
            m.state = ReservationState::Confirmed;
            m.deadline_ms = now;
        } else {
            let hold = self.hold_ms(&r);
            self.skus.get_mut(&r.sku).unwrap().reserved += q;
            let m = self.r_mut(id);
            m.state = ReservationState::Held;
            m.deadline_ms = now + hold;
        }
    }

    /// SEMANTICS "Matching": serve the waitlist head first, strictly FIFO.
    fn feed(&mut self, sku: u64) {
        while let Some(&head) = self.skus[&sku].line.front() {
            let r = self.r(head);
            if r.deadline_ms <= self.now {
                self.time_out(head);
                continue;
            }
            let s = self.skus.get_mut(&sku).unwrap();
            if s.available < u64::from(r.quantity) {
                break;
            }
            s.line.pop_front();
            s.available -= u64::from(r.quantity);
            self.take(head);
            self.set_outcome(r.account, r.key, ResultCode::Ok);
            self.emit(head, ResultCode::Ok);
        }
    }

    // ---- requests -----------------------------------------------------------------------

    fn execute(&mut self, now_ms: u64, request: &Request) -> Reply {
        self.advance(now_ms);
        match *request {
            Request::Ping => bare(ResultCode::Ok),
            Request::Reserve(reserve) => self.reserve(&reserve),
            Request::Confirm { account, target, key } => self.confirm(account, target, key),
            Request::Cancel { account, target, key } => self.cancel(account, target, key),
            Request::QuerySku { sku } => {
                if sku == 0 {
                    bare(ResultCode::BadRequest)
                } else if !self.skus.contains_key(&sku) {
                    bare(ResultCode::UnknownSku)
                } else {
                    self.with_sku(ResultCode::Ok, sku)
                }
            }
            Request::QueryAccount { account } => {
                if account == 0 {
                    bare(ResultCode::BadRequest)
                } else {
                    self.with_account(ResultCode::Ok, account)
                }
            }
            Request::QueryReservation { account, target } => {
                if account == 0 || target_value(target) == 0 {
                    return bare(ResultCode::BadRequest);
                }
                match self.resolve(account, target) {
                    Resolved::Found(id) => self.with_res(ResultCode::Ok, id),
                    Resolved::Tombstone => bare(ResultCode::AlreadyCancelled),
                    Resolved::Unknown | Resolved::UnusedKey => bare(ResultCode::UnknownReservation),
                }
            }
            Request::PutSku(spec) => self.put_sku(&spec),
            Request::AdjustStock { sku, delta, key } => self.adjust_stock(sku, delta, key),
            Request::Pause { sku } => self.set_paused(sku, true),
            Request::Resume { sku } => self.set_paused(sku, false),
            Request::Deposit { account, amount, key } => self.deposit(account, amount, key),
            Request::Withdraw { account, amount, key } => self.withdraw(account, amount, key),
        }
    }

    fn reserve(&mut self, q: &Reserve) -> Reply {
        // 1. BAD_REQUEST
        if q.account == 0
            || q.sku == 0
            || q.key == 0
            || q.quantity == 0
            || q.quantity > self.cfg.quantity_max
            || q.flags & !RESERVE_FLAGS_KNOWN != 0
            || q.hold_ms > self.cfg.hold_ms_max
            || q.wait_ms > self.cfg.wait_ms_max
        {
            return bare(ResultCode::BadRequest);
        }
        // 2. The key.
        let params = KeyParams::Reserve {
            sku: q.sku,
            quantity: q.quantity,
            flags: q.flags,
            hold_ms: q.hold_ms,
            wait_ms: q.wait_ms,
        };
        if let Some(record) = self.keys.get(&(q.account, q.key)) {
            if record.params == KeyParams::Tombstone {
                return bare(ResultCode::AlreadyCancelled);
            }
        }
        if let Some(reply) = self.check_key(q.account, q.key, params) {
            return reply;
        }
        // 3. The SKU and its window.
        let now = self.now;
        let Some(s) = self.skus.get(&q.sku) else { return bare(ResultCode::UnknownSku) };
        if s.paused {
            return bare(ResultCode::Paused);
        }
        if now < s.start_ms {
            return bare(ResultCode::NotStarted);
        }
        if s.end_ms != 0 && now >= s.end_ms {
            return bare(ResultCode::Ended);
        }
        // 4. The per-user limit.
        let quantity = u64::from(q.quantity);
        if s.per_user_limit > 0
            && self.counted(q.account, q.sku) + quantity > u64::from(s.per_user_limit)
        {
            return bare(ResultCode::LimitExceeded);
        }
        // 5. Funds.
        let amount = if q.flags & RESERVE_FLAG_PAY != 0 {
            match s.price.checked_mul(quantity) {
                Some(amount) => amount,
                None => return bare(ResultCode::Overflow),
            }
        } else {
            0
        };
        if amount > 0 && self.wallet_available(q.account) < amount {
            return bare(ResultCode::InsufficientFunds);
        }
        // 6. Stock.
        let take_now = s.line.is_empty() && s.available >= quantity;
        if !take_now && q.wait_ms == 0 {
            return bare(ResultCode::SoldOut);
        }
        let sku_hold_ms_at_reserve = s.hold_ms;
        // 7. Capacity: this configuration never runs out.
        // Effects.
        self.funds_hold(q.account, amount);
        self.res.push(MRes {
            account: q.account,
            sku: q.sku,
            quantity: q.quantity,
            flags: q.flags,
            amount,
            deadline_ms: 0,
            state: ReservationState::None,
            key: q.key,
            hold_ms: q.hold_ms,
            sku_hold_ms_at_reserve,
        });
        let id = self.res.len() as u64;
        let code = if take_now {
            self.skus.get_mut(&q.sku).unwrap().available -= quantity;
            self.take(id);
            ResultCode::Ok
        } else {
            self.skus.get_mut(&q.sku).unwrap().line.push_back(id);
            let r = self.r_mut(id);
            r.state = ReservationState::Waiting;
            r.deadline_ms = now + u64::from(q.wait_ms);
            ResultCode::Waiting
        };
        self.record(q.account, q.key, params, code, Some(id));
        self.with_res(code, id)
    }

    /// Steps 1–2 of CONFIRM and CANCEL.
    fn confirm_cancel_prelude(
        &self,
        account: u64,
        target: Target,
        key: u64,
        params: KeyParams,
    ) -> Option<Reply> {
        if account == 0
            || key == 0
            || target_value(target) == 0
            || target == Target::ReserveKey(key)
        {
            return Some(bare(ResultCode::BadRequest));
        }
        self.check_key(account, key, params)
    }

    fn finished_state_code(state: ReservationState) -> Option<ResultCode> {
        match state {
            ReservationState::Confirmed => Some(ResultCode::AlreadyConfirmed),
            ReservationState::Cancelled => Some(ResultCode::AlreadyCancelled),
            ReservationState::Expired => Some(ResultCode::Expired),
            ReservationState::WaitTimedOut => Some(ResultCode::WaitTimeout),
            _ => None,
        }
    }

    fn confirm(&mut self, account: u64, target: Target, key: u64) -> Reply {
        let params = KeyParams::Confirm(target);
        if let Some(reply) = self.confirm_cancel_prelude(account, target, key, params) {
            return reply;
        }
        let id = match self.resolve(account, target) {
            Resolved::Found(id) => id,
            Resolved::Tombstone => return bare(ResultCode::AlreadyCancelled),
            Resolved::Unknown | Resolved::UnusedKey => return bare(ResultCode::UnknownReservation),
        };
        let r = self.r(id);
        if r.state == ReservationState::Waiting {
            return self.with_res(ResultCode::Waiting, id);
        }
        if let Some(code) = Self::finished_state_code(r.state) {
            return self.with_res(code, id);
        }
        assert_eq!(r.state, ReservationState::Held);
        let s = self.skus.get_mut(&r.sku).unwrap();
        s.reserved -= u64::from(r.quantity);
        s.sold += u64::from(r.quantity);
        self.funds_spend(account, r.amount);
        self.r_mut(id).state = ReservationState::Confirmed;
        self.record(account, key, params, ResultCode::Ok, Some(id));
        self.with_res(ResultCode::Ok, id)
    }

    fn cancel(&mut self, account: u64, target: Target, key: u64) -> Reply {
        let params = KeyParams::Cancel(target);
        if let Some(reply) = self.confirm_cancel_prelude(account, target, key, params) {
            return reply;
        }
        let id = match self.resolve(account, target) {
            Resolved::Found(id) => id,
            Resolved::Tombstone => {
                self.record(account, key, params, ResultCode::Ok, None);
                return bare(ResultCode::Ok);
            }
            Resolved::Unknown => return bare(ResultCode::UnknownReservation),
            Resolved::UnusedKey => {
                let Target::ReserveKey(reserve_key) = target else {
                    unreachable!("only a reserve key can be unused")
                };
                self.record(account, reserve_key, KeyParams::Tombstone, ResultCode::Ok, None);
                self.record(account, key, params, ResultCode::Ok, None);
                return bare(ResultCode::Ok);
            }
        };
        let r = self.r(id);
        if let Some(code) = Self::finished_state_code(r.state) {
            return self.with_res(code, id);
        }
        match r.state {
            ReservationState::Held => {
                let s = self.skus.get_mut(&r.sku).unwrap();
                s.reserved -= u64::from(r.quantity);
                s.available += u64::from(r.quantity);
                self.funds_release(account, r.amount);
                self.r_mut(id).state = ReservationState::Cancelled;
            }
            ReservationState::Waiting => {
                self.remove_from_line(id);
                self.funds_release(account, r.amount);
                self.r_mut(id).state = ReservationState::Cancelled;
                self.set_outcome(account, r.key, ResultCode::AlreadyCancelled);
                self.emit(id, ResultCode::AlreadyCancelled);
            }
            state => unreachable!("{state:?}"),
        }
        self.feed(r.sku);
        self.record(account, key, params, ResultCode::Ok, Some(id));
        self.with_res(ResultCode::Ok, id)
    }

    fn put_sku(&mut self, spec: &SkuSpec) -> Reply {
        if spec.sku == 0
            || spec.hold_ms > self.cfg.hold_ms_max
            || (spec.end_ms != 0 && spec.end_ms <= spec.start_ms)
        {
            return bare(ResultCode::BadRequest);
        }
        match self.skus.get_mut(&spec.sku) {
            Some(s) => {
                if s.per_user_limit != spec.per_user_limit {
                    return bare(ResultCode::BadRequest);
                }
                s.price = spec.price;
                s.hold_ms = spec.hold_ms;
                s.start_ms = spec.start_ms;
                s.end_ms = spec.end_ms;
            }
            None => {
                self.skus.insert(
                    spec.sku,
                    MSku {
                        price: spec.price,
                        per_user_limit: spec.per_user_limit,
                        hold_ms: spec.hold_ms,
                        start_ms: spec.start_ms,
                        end_ms: spec.end_ms,
                        total: spec.stock_total,
                        available: spec.stock_total,
                        reserved: 0,
                        sold: 0,
                        paused: false,
                        line: VecDeque::new(),
                    },
                );
            }
        }
        self.with_sku(ResultCode::Ok, spec.sku)
    }

    fn adjust_stock(&mut self, sku: u64, delta: i64, key: u64) -> Reply {
        if sku == 0 || key == 0 || delta == 0 {
            return bare(ResultCode::BadRequest);
        }
        let params = KeyParams::AdjustStock { sku, delta };
        if let Some(reply) = self.check_key(0, key, params) {
            return reply;
        }
        let Some(s) = self.skus.get_mut(&sku) else { return bare(ResultCode::UnknownSku) };
        let units = delta.unsigned_abs();
        if delta > 0 {
            let (Some(total), Some(available)) =
                (s.total.checked_add(units), s.available.checked_add(units))
            else {
                return bare(ResultCode::Overflow);
            };
            s.total = total;
            s.available = available;
            self.feed(sku);
        } else {
            if s.available < units {
                return bare(ResultCode::SoldOut);
            }
            s.total -= units;
            s.available -= units;
        }
        self.record(0, key, params, ResultCode::Ok, None);
        self.with_sku(ResultCode::Ok, sku)
    }

    fn set_paused(&mut self, sku: u64, paused: bool) -> Reply {
        if sku == 0 {
            return bare(ResultCode::BadRequest);
        }
        let Some(s) = self.skus.get_mut(&sku) else { return bare(ResultCode::UnknownSku) };
        s.paused = paused;
        self.with_sku(ResultCode::Ok, sku)
    }

    fn deposit(&mut self, account: u64, amount: u64, key: u64) -> Reply {
        if account == 0 || key == 0 || amount == 0 {
            return bare(ResultCode::BadRequest);
        }
        let params = KeyParams::Deposit(amount);
        if let Some(reply) = self.check_key(account, key, params) {
            return reply;
        }
        let w = self.wallets.get(&account).copied().unwrap_or_default();
        if w.deposited.checked_add(amount).is_none() {
            return bare(ResultCode::Overflow);
        }
        let w = self.wallets.entry(account).or_default();
        w.available += amount;
        w.deposited += amount;
        self.record(account, key, params, ResultCode::Ok, None);
        self.with_account(ResultCode::Ok, account)
    }

    fn withdraw(&mut self, account: u64, amount: u64, key: u64) -> Reply {
        if account == 0 || key == 0 || amount == 0 {
            return bare(ResultCode::BadRequest);
        }
        let params = KeyParams::Withdraw(amount);
        if let Some(reply) = self.check_key(account, key, params) {
            return reply;
        }
        if self.wallet_available(account) < amount {
            return bare(ResultCode::InsufficientFunds);
        }
        let w = self.wallets.get_mut(&account).expect("a positive balance has a wallet");
        w.available -= amount;
        w.withdrawn += amount;
        self.record(account, key, params, ResultCode::Ok, None);
        self.with_account(ResultCode::Ok, account)
    }

    // ---- the model's own invariants -----------------------------------------------------

    fn check(&self) -> Result<(), String> {
        for (&id, s) in &self.skus {
            let of_sku = || self.res.iter().filter(move |r| r.sku == id);
            let units_in = |state| -> u64 {
                of_sku().filter(|r| r.state == state).map(|r| u64::from(r.quantity)).sum()
            };
            if s.available + s.reserved + s.sold != s.total {
                return Err(format!("sku {id}: stock not conserved: {s:?}"));
            }
            if s.reserved != units_in(ReservationState::Held) {
                return Err(format!("sku {id}: reserved != held units"));
            }
            if s.sold != units_in(ReservationState::Confirmed) {
                return Err(format!("sku {id}: sold != confirmed units"));
            }
            let waiting: Vec<u64> = (1..=self.res.len() as u64)
                .filter(|&r| {
                    let r = self.r(r);
                    r.sku == id && r.state == ReservationState::Waiting
                })
                .collect();
            if s.line.iter().copied().collect::<Vec<_>>() != waiting {
                return Err(format!("sku {id}: line {:?} != waiters by age {waiting:?}", s.line));
            }
            if let Some(&head) = s.line.front() {
                if u64::from(self.r(head).quantity) <= s.available {
                    return Err(format!("sku {id}: head waiter {head} fits the available units"));
                }
            }
            if s.per_user_limit > 0 {
                for account in 1..=ACCOUNTS {
                    if self.counted(account, id) > u64::from(s.per_user_limit) {
                        return Err(format!("sku {id}: account {account} above the limit"));
                    }
                }
            }
        }
        for (&account, w) in &self.wallets {
            let of_account = || self.res.iter().filter(move |r| r.account == account);
            let held: u64 = of_account().filter(|r| r.is_live()).map(|r| r.amount).sum();
            let spent: u64 = of_account()
                .filter(|r| r.state == ReservationState::Confirmed)
                .map(|r| r.amount)
                .sum();
            if w.available + w.held + w.spent != w.deposited - w.withdrawn {
                return Err(format!("account {account}: money not conserved: {w:?}"));
            }
            if w.held != held || w.spent != spent {
                return Err(format!("account {account}: held/spent != reservations: {w:?}"));
            }
        }
        for (index, r) in self.res.iter().enumerate() {
            let id = index as u64 + 1;
            if r.is_live() && r.deadline_ms <= self.now {
                return Err(format!("reservation {id} live past its deadline"));
            }
            let record = self.keys.get(&(r.account, r.key)).ok_or("reserve key forgotten")?;
            let outcome_ok = match r.state {
                ReservationState::Waiting => record.outcome == ResultCode::Waiting,
                ReservationState::Held
                | ReservationState::Confirmed
                | ReservationState::Expired => record.outcome == ResultCode::Ok,
                ReservationState::Cancelled => {
                    matches!(record.outcome, ResultCode::Ok | ResultCode::AlreadyCancelled)
                }
                ReservationState::WaitTimedOut => record.outcome == ResultCode::WaitTimeout,
                ReservationState::None => false,
            };
            if record.reservation != Some(id) || !outcome_ok {
                return Err(format!("reservation {id} {r:?}: key record {record:?}"));
            }
        }
        Ok(())
    }
}

fn target_value(target: Target) -> u64 {
    match target {
        Target::Reservation(id) => id,
        Target::ReserveKey(key) => key,
    }
}

// =========================================================================================
// Generated commands
// =========================================================================================

/// How the clock moves before a command.
#[derive(Clone, Copy, Debug)]
enum Clock {
    Same,
    Forward(u64),
    /// A big jump: every hold and wait ends.
    Jump,
    /// A `now_ms` below the clock (the engine keeps its clock).
    Stale(u64),
}

#[derive(Clone, Copy, Debug)]
enum KeySel {
    Zero,
    /// A key no request has used yet.
    Fresh,
    /// One of a few keys every account reuses: collisions across operations.
    Small(u64),
}

#[derive(Clone, Copy, Debug)]
enum ReserveKeySel {
    Plain(KeySel),
    /// An (account, key) an earlier CONFIRM / CANCEL / QUERY named as a reserve key: the late
    /// RESERVE of a cancel-before-reserve.
    Targeted(usize),
}

#[derive(Clone, Copy, Debug)]
enum TargetSel {
    /// Target 0 (by id if true, by reserve key otherwise).
    Zero(bool),
    /// A reservation created earlier, by id; `own`: with the account that made it.
    Known {
        index: usize,
        own: bool,
    },
    /// An id that names no reservation.
    Bogus(u8),
    /// The key of an earlier RESERVE (whatever its outcome).
    ReserveKey {
        index: usize,
        own: bool,
    },
    /// A reserve key nobody used.
    FreshKey,
    SmallKey(u64),
}

#[derive(Clone, Copy, Debug)]
struct Window {
    /// Offset of `start_ms` from the clock minus 100 (so < 100: already open).
    start: Option<u64>,
    /// Length of the window after `max(start_ms, clock - 100)`.
    length: Option<u64>,
    /// `end_ms == start_ms`: BAD_REQUEST.
    invalid: bool,
}

#[derive(Clone, Copy, Debug)]
struct SkuSetup {
    stock: u64,
    price: u64,
    per_user_limit: u32,
    hold_ms: u32,
    window: Window,
}

#[derive(Clone, Copy, Debug)]
enum Cmd {
    Tick,
    Ping,
    Reserve {
        account: u64,
        sku: u64,
        quantity: u32,
        key: ReserveKeySel,
        flags: u32,
        hold_ms: u32,
        wait_ms: u32,
    },
    /// Replays an earlier keyed request (the `index`-th most recent, modulo), unchanged or
    /// with one parameter (or the operation) changed.
    Retry {
        index: usize,
        mutate: Option<u8>,
    },
    Confirm {
        account: u64,
        target: TargetSel,
        key: KeySel,
    },
    Cancel {
        account: u64,
        target: TargetSel,
        key: KeySel,
    },
    QueryReservation {
        account: u64,
        target: TargetSel,
    },
    QuerySku {
        sku: u64,
    },
    QueryAccount {
        account: u64,
    },
    PutSku {
        sku: u64,
        setup: SkuSetup,
        change_limit: bool,
    },
    AdjustStock {
        sku: u64,
        delta: i64,
        key: KeySel,
    },
    Pause {
        sku: u64,
    },
    Resume {
        sku: u64,
    },
    Deposit {
        account: u64,
        amount: u64,
        key: KeySel,
    },
    Withdraw {
        account: u64,
        amount: u64,
        key: KeySel,
    },
}

#[derive(Clone, Debug)]
struct Scenario {
    skus: Vec<SkuSetup>,
    deposits: Vec<u64>,
    steps: Vec<(Clock, Cmd)>,
}

fn account_sel() -> impl Strategy<Value = u64> {
    prop_oneof![1 => Just(0u64), 60 => 1..=ACCOUNTS]
}

/// The shape of a sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Profile {
    /// Every operation, several SKUs, time moving at a few ms per command.
    Mixed,
    /// A flash sale: most RESERVEs go to the hot SKU and wait, time crawls, so waitlists
    /// form and released units are matched.
    Hot,
}

/// A SKU for a command: mostly the hot one (1), sometimes 0 or one never set up.
fn sku_sel(profile: Profile) -> impl Strategy<Value = u64> {
    let hot = if profile == Profile::Hot { 200 } else { 40 };
    prop_oneof![1 => Just(0u64), hot => Just(1u64), 20 => 2..=SKU_IDS - 1, 2 => Just(SKU_IDS)]
}

fn key_sel() -> impl Strategy<Value = KeySel> {
    prop_oneof![
        1 => Just(KeySel::Zero),
        30 => Just(KeySel::Fresh),
        5 => (1..=4u64).prop_map(KeySel::Small),
    ]
}

/// An index counted from the most recent entry of a list: mostly one of the last few.
fn recent() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 0..4usize, 1 => 0..64usize]
}

fn target_sel() -> impl Strategy<Value = TargetSel> {
    let own = prop::bool::weighted(0.85);
    prop_oneof![
        1 => any::<bool>().prop_map(TargetSel::Zero),
        14 => (recent(), own).prop_map(|(index, own)| TargetSel::Known { index, own }),
        2 => (0..4u8).prop_map(TargetSel::Bogus),
        6 => (recent(), own).prop_map(|(index, own)| TargetSel::ReserveKey { index, own }),
        3 => Just(TargetSel::FreshKey),
        2 => (1..=4u64).prop_map(TargetSel::SmallKey),
    ]
}

fn price_sel() -> impl Strategy<Value = u64> {
    prop_oneof![3 => Just(0u64), 10 => 1..=100u64, 1 => Just(u64::MAX / 2)]
}

fn window_sel() -> impl Strategy<Value = Window> {
    (
        prop_oneof![3 => Just(None), 1 => (0..300u64).prop_map(Some)],
        prop_oneof![3 => Just(None), 1 => (1..500u64).prop_map(Some)],
        prop::bool::weighted(0.05),
    )
        .prop_map(|(start, length, invalid)| Window { start, length, invalid })
}

fn hold_sel() -> impl Strategy<Value = u32> {
    prop_oneof![4 => Just(0u32), 3 => Just(10u32), 2 => Just(30u32), 1 => Just(HOLD_MS_MAX)]
}

fn sku_setup(stock: impl Strategy<Value = u64>) -> impl Strategy<Value = SkuSetup> {
    (stock, price_sel(), prop_oneof![2 => Just(0u32), 1 => 1..=3u32], hold_sel(), window_sel())
        .prop_map(|(stock, price, per_user_limit, hold_ms, window)| SkuSetup {
            stock,
            price,
            per_user_limit,
            hold_ms,
            window,
        })
}

fn reserve_cmd(profile: Profile) -> impl Strategy<Value = Cmd> {
    let no_wait = if profile == Profile::Hot { 2 } else { 20 };
    (
        account_sel(),
        sku_sel(profile),
        prop_oneof![1 => Just(0u32), 60 => 1..=QUANTITY_MAX, 1 => Just(QUANTITY_MAX + 1)],
        prop_oneof![
            20 => key_sel().prop_map(ReserveKeySel::Plain),
            1 => recent().prop_map(ReserveKeySel::Targeted),
        ],
        prop_oneof![
            24 => Just(0u32),
            12 => Just(RESERVE_FLAG_PAY),
            8 => Just(RESERVE_FLAG_BUY),
            8 => Just(RESERVE_FLAG_PAY | RESERVE_FLAG_BUY),
            1 => Just(1u32 << 2),
        ],
        prop_oneof![
            24 => Just(0u32),
            32 => 1..=50u32,
            4 => Just(HOLD_MS_MAX),
            1 => Just(HOLD_MS_MAX + 1),
        ],
        prop_oneof![
            no_wait => Just(0u32),
            32 => 1..=80u32,
            4 => Just(WAIT_MS_MAX),
            1 => Just(WAIT_MS_MAX + 1),
        ],
    )
        .prop_map(|(account, sku, quantity, key, flags, hold_ms, wait_ms)| Cmd::Reserve {
            account,
            sku,
            quantity,
            key,
            flags,
            hold_ms,
            wait_ms,
        })
}

fn cmd(profile: Profile) -> impl Strategy<Value = Cmd> {
    prop_oneof![
        30 => reserve_cmd(profile),
        8 => (recent(), prop_oneof![1 => Just(None), 1 => any::<u8>().prop_map(Some)])
            .prop_map(|(index, mutate)| Cmd::Retry { index, mutate }),
        10 => (account_sel(), target_sel(), key_sel())
            .prop_map(|(account, target, key)| Cmd::Confirm { account, target, key }),
        10 => (account_sel(), target_sel(), key_sel())
            .prop_map(|(account, target, key)| Cmd::Cancel { account, target, key }),
        4 => (account_sel(), target_sel())
            .prop_map(|(account, target)| Cmd::QueryReservation { account, target }),
        3 => sku_sel(profile).prop_map(|sku| Cmd::QuerySku { sku }),
        3 => account_sel().prop_map(|account| Cmd::QueryAccount { account }),
        3 => (sku_sel(profile), sku_setup(0..=10u64), prop::bool::weighted(0.1))
            .prop_map(|(sku, setup, change_limit)| Cmd::PutSku { sku, setup, change_limit }),
        6 => (
            sku_sel(profile),
            prop_oneof![
                10 => 1..=4i64,
                8 => -4..=-1i64,
                1 => Just(0i64),
                1 => Just(i64::MAX),
                1 => Just(i64::MIN),
            ],
            key_sel(),
        )
            .prop_map(|(sku, delta, key)| Cmd::AdjustStock { sku, delta, key }),
        1 => sku_sel(profile).prop_map(|sku| Cmd::Pause { sku }),
        2 => sku_sel(profile).prop_map(|sku| Cmd::Resume { sku }),
        4 => (
            account_sel(),
            prop_oneof![1 => Just(0u64), 10 => 1..=500u64, 1 => Just(u64::MAX)],
            key_sel(),
        )
            .prop_map(|(account, amount, key)| Cmd::Deposit { account, amount, key }),
        3 => (account_sel(), prop_oneof![1 => Just(0u64), 10 => 1..=500u64], key_sel())
            .prop_map(|(account, amount, key)| Cmd::Withdraw { account, amount, key }),
        5 => Just(Cmd::Tick),
        1 => Just(Cmd::Ping),
    ]
}

fn clock(profile: Profile) -> impl Strategy<Value = Clock> {
    let (same, forward_max) = if profile == Profile::Hot { (60, 5u64) } else { (30, 12u64) };
    prop_oneof![
        same => Just(Clock::Same),
        60 => (1..=forward_max).prop_map(Clock::Forward),
        1 => Just(Clock::Jump),
        5 => (1..=50u64).prop_map(Clock::Stale),
    ]
}

fn scenario(profile: Profile) -> impl Strategy<Value = Scenario> {
    (
        sku_setup(1..=5u64),
        prop::collection::vec(sku_setup(0..=12u64), 1..=3),
        prop::collection::vec(
            prop_oneof![1 => Just(0u64), 4 => 1..=1000u64],
            1..=ACCOUNTS as usize,
        ),
        prop::collection::vec((clock(profile), cmd(profile)), 1..=80),
    )
        .prop_map(|(hot, others, deposits, steps)| {
            let mut skus = vec![hot];
            skus.extend(others);
            Scenario { skus, deposits, steps }
        })
}

// =========================================================================================
// The harness: one command to both, translate, compare
// =========================================================================================

/// One concrete call, in model ids and in engine ids.
#[derive(Clone, Copy, Debug)]
enum Call {
    Tick,
    Execute { model: Request, engine: Request },
}

struct Harness {
    model: Model,
    engine: Engine,
    /// Engine reservation id -> model id, and back.
    e2m: BTreeMap<u64, u64>,
    m2e: BTreeMap<u64, u64>,
    /// The driver's time (the clock, unless a stale `now_ms` was passed).
    t: u64,
    fresh_key: u64,
    /// Keyed requests issued so far (for retries).
    keyed: Vec<(Request, Request)>,
    /// (account, key) of every RESERVE issued.
    reserve_keys: Vec<(u64, u64)>,
    /// (account, key) of every reserve-key target named.
    targeted_keys: Vec<(u64, u64)>,
    /// For the failure report: every call and the model's reply.
    trace: Vec<(u64, Call, Option<Reply>, Vec<Event>)>,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            model: Model::new(config()),
            engine: engine_with(config()),
            e2m: BTreeMap::new(),
            m2e: BTreeMap::new(),
            t: T0,
            fresh_key: FRESH_KEY_BASE,
            keyed: Vec::new(),
            reserve_keys: Vec::new(),
            targeted_keys: Vec::new(),
            trace: Vec::new(),
        }
    }

    fn key(&mut self, sel: KeySel) -> u64 {
        match sel {
            KeySel::Zero => 0,
            KeySel::Fresh => {
                self.fresh_key += 1;
                self.fresh_key
            }
            KeySel::Small(key) => key,
        }
    }

    /// An engine id that names no reservation, and the model id standing for it.
    fn bogus(&self, kind: u8) -> (u64, u64) {
        let engine_id = match kind % 4 {
            // A live slot's id with another generation.
            0 => self.e2m.keys().next().map_or((5 << 32) | 3, |&id| id ^ (1 << 33)),
            1 => u64::MAX,
            // Generation 0 is never used.
            2 => 7,
            // A slot beyond the table.
            _ => (1 << 32) | 0xFFFF_FFF0,
        };
        let engine_id = if self.e2m.contains_key(&engine_id) { u64::MAX } else { engine_id };
        (u64::MAX - 1 - u64::from(kind % 4), engine_id)
    }

    /// Resolves a target choice: (the account to use, model target, engine target).
    fn target(&mut self, sel: TargetSel, account: u64) -> (u64, Target, Target) {
        match sel {
            TargetSel::Zero(true) => (account, Target::Reservation(0), Target::Reservation(0)),
            TargetSel::Zero(false) => (account, Target::ReserveKey(0), Target::ReserveKey(0)),
            TargetSel::Known { index, own } => {
                let created = self.model.res.len();
                if created == 0 {
                    return self.target(TargetSel::Bogus(1), account);
                }
                let model_id = (created - index % created) as u64;
                let engine_id = *self
                    .m2e
                    .get(&model_id)
                    .expect("every created reservation was mapped when it was created");
                let account = if own { self.model.r(model_id).account } else { account };
                (account, Target::Reservation(model_id), Target::Reservation(engine_id))
            }
            TargetSel::Bogus(kind) => {
                let (model_id, engine_id) = self.bogus(kind);
                (account, Target::Reservation(model_id), Target::Reservation(engine_id))
            }
            TargetSel::ReserveKey { index, own } => {
                if self.reserve_keys.is_empty() {
                    return self.target(TargetSel::FreshKey, account);
                }
                let (owner, key) = *nth_recent(&self.reserve_keys, index);
                let account = if own { owner } else { account };
                self.targeted_keys.push((account, key));
                (account, Target::ReserveKey(key), Target::ReserveKey(key))
            }
            TargetSel::FreshKey => {
                let key = self.key(KeySel::Fresh);
                self.targeted_keys.push((account, key));
                (account, Target::ReserveKey(key), Target::ReserveKey(key))
            }
            TargetSel::SmallKey(key) => {
                self.targeted_keys.push((account, key));
                (account, Target::ReserveKey(key), Target::ReserveKey(key))
            }
        }
    }

    fn sku_spec(&self, sku: u64, setup: &SkuSetup) -> SkuSpec {
        let base = self.t.saturating_sub(100);
        let start_ms = setup.window.start.map_or(0, |offset| base + offset);
        let end_ms = if setup.window.invalid {
            start_ms
        } else {
            setup.window.length.map_or(0, |length| start_ms.max(base) + length)
        };
        SkuSpec {
            sku,
            stock_total: setup.stock,
            price: setup.price,
            per_user_limit: setup.per_user_limit,
            hold_ms: setup.hold_ms,
            start_ms,
            end_ms,
        }
    }

    /// Turns a generated command into a concrete call.
    fn concretize(&mut self, cmd: Cmd) -> Call {
        let same = |request: Request| Call::Execute { model: request, engine: request };
        let call = match cmd {
            Cmd::Tick => Call::Tick,
            Cmd::Ping => same(Request::Ping),
            Cmd::Reserve { account, sku, quantity, key, flags, hold_ms, wait_ms } => {
                let (account, key) = match key {
                    ReserveKeySel::Plain(sel) => (account, self.key(sel)),
                    ReserveKeySel::Targeted(index) if !self.targeted_keys.is_empty() => {
                        *nth_recent(&self.targeted_keys, index)
                    }
                    ReserveKeySel::Targeted(_) => (account, self.key(KeySel::Fresh)),
                };
                same(Request::Reserve(Reserve {
                    account,
                    sku,
                    quantity,
                    key,
                    flags,
                    hold_ms,
                    wait_ms,
                }))
            }
            Cmd::Retry { index, mutate } => {
                if self.keyed.is_empty() {
                    return same(Request::Ping);
                }
                let (model, engine) = *nth_recent(&self.keyed, index);
                match mutate {
                    None => Call::Execute { model, engine },
                    Some(which) => {
                        let (model, engine) = self.mutate(model, engine, which);
                        Call::Execute { model, engine }
                    }
                }
            }
            Cmd::Confirm { account, target, key } | Cmd::Cancel { account, target, key } => {
                let (account, model_target, engine_target) = self.target(target, account);
                let key = self.key(key);
                if matches!(cmd, Cmd::Confirm { .. }) {
                    Call::Execute {
                        model: Request::Confirm { account, target: model_target, key },
                        engine: Request::Confirm { account, target: engine_target, key },
                    }
                } else {
                    Call::Execute {
                        model: Request::Cancel { account, target: model_target, key },
                        engine: Request::Cancel { account, target: engine_target, key },
                    }
                }
            }
            Cmd::QueryReservation { account, target } => {
                let (account, model_target, engine_target) = self.target(target, account);
                Call::Execute {
                    model: Request::QueryReservation { account, target: model_target },
                    engine: Request::QueryReservation { account, target: engine_target },
                }
            }
            Cmd::QuerySku { sku } => same(Request::QuerySku { sku }),
            Cmd::QueryAccount { account } => same(Request::QueryAccount { account }),
            Cmd::PutSku { sku, setup, change_limit } => {
                let mut spec = self.sku_spec(sku, &setup);
                if let Some(existing) = self.model.skus.get(&sku) {
                    if !change_limit {
                        spec.per_user_limit = existing.per_user_limit;
                    }
                }
                same(Request::PutSku(spec))
            }
            Cmd::AdjustStock { sku, delta, key } => {
                let key = self.key(key);
                same(Request::AdjustStock { sku, delta, key })
            }
            Cmd::Pause { sku } => same(Request::Pause { sku }),
            Cmd::Resume { sku } => same(Request::Resume { sku }),
            Cmd::Deposit { account, amount, key } => {
                let key = self.key(key);
                same(Request::Deposit { account, amount, key })
            }
            Cmd::Withdraw { account, amount, key } => {
                let key = self.key(key);
                same(Request::Withdraw { account, amount, key })
            }
        };
        if let Call::Execute { model, engine } = call {
            if let Request::Reserve(r) = model {
                self.reserve_keys.push((r.account, r.key));
            }
            if is_keyed(&model) {
                self.keyed.push((model, engine));
            }
        }
        call
    }

    /// The same key with one parameter (or the operation) changed.
    fn mutate(&self, model: Request, engine: Request, which: u8) -> (Request, Request) {
        let same = |request: Request| (request, request);
        match (model, engine) {
            (Request::Reserve(mut r), _) => {
                match which % 5 {
                    0 => r.quantity = if r.quantity == 1 { 2 } else { 1 },
                    1 => r.flags ^= RESERVE_FLAG_PAY,
                    2 => r.wait_ms = if r.wait_ms == 0 { 10 } else { 0 },
                    3 => r.hold_ms = if r.hold_ms == 0 { 5 } else { 0 },
                    _ => r.sku = r.sku % SKU_IDS + 1,
                }
                same(Request::Reserve(r))
            }
            (
                Request::Confirm { account, target: mt, key }
                | Request::Cancel { account, target: mt, key },
                Request::Confirm { target: et, .. } | Request::Cancel { target: et, .. },
            ) => {
                let is_confirm = matches!(model, Request::Confirm { .. });
                let (mt, et) = if which.is_multiple_of(2) {
                    (mt, et)
                } else {
                    let (model_id, engine_id) = self.bogus(which / 2);
                    (Target::Reservation(model_id), Target::Reservation(engine_id))
                };
                // Even: the other operation, same target; odd: same operation, another target.
                if is_confirm == (which.is_multiple_of(2)) {
                    (
                        Request::Cancel { account, target: mt, key },
                        Request::Cancel { account, target: et, key },
                    )
                } else {
                    (
                        Request::Confirm { account, target: mt, key },
                        Request::Confirm { account, target: et, key },
                    )
                }
            }
            (Request::AdjustStock { sku, delta, key }, _) => {
                let delta = if which.is_multiple_of(2) {
                    if delta == -1 {
                        -2
                    } else {
                        delta.saturating_add(1)
                    }
                } else {
                    delta.saturating_neg()
                };
                same(Request::AdjustStock { sku, delta, key })
            }
            (Request::Deposit { account, amount, key }, _) => same(if which.is_multiple_of(2) {
                Request::Withdraw { account, amount, key }
            } else {
                Request::Deposit { account, amount: amount.wrapping_add(1), key }
            }),
            (Request::Withdraw { account, amount, key }, _) => same(if which.is_multiple_of(2) {
                Request::Deposit { account, amount, key }
            } else {
                Request::Withdraw { account, amount: amount.wrapping_add(1), key }
            }),
            _ => (model, engine),
        }
    }

    /// The engine's id in model terms; a new engine id is paired with the model's new id
    /// (`hint`) if neither is paired yet.
    fn model_id_of(&mut self, engine_id: u64, hint: Option<u64>) -> Result<u64, String> {
        if let Some(&model_id) = self.e2m.get(&engine_id) {
            return Ok(model_id);
        }
        let Some(model_id) = hint else {
            return Err(format!("engine reservation id {engine_id:#x} appears from nowhere"));
        };
        if self.m2e.contains_key(&model_id) || self.model.get_res(model_id).is_none() {
            return Err(format!(
                "engine reservation id {engine_id:#x} is new, but the model's {model_id} is not"
            ));
        }
        let parts = ReservationIdParts::parse(engine_id);
        if parts.generation == 0 || parts.shard != 0 {
            return Err(format!("engine reservation id {engine_id:#x}: bad generation"));
        }
        self.e2m.insert(engine_id, model_id);
        self.m2e.insert(model_id, engine_id);
        Ok(model_id)
    }

    fn translate(&mut self, reply: Reply, hint: &Reply) -> Result<Reply, String> {
        let mut reply = reply;
        if let ReplyBody::Reservation(view) = &mut reply.body {
            let hint = hint.reservation().map(|v| v.reservation);
            view.reservation = self.model_id_of(view.reservation, hint)?;
        }
        Ok(reply)
    }

    fn apply(&mut self, now: u64, call: Call) -> Result<(), String> {
        let (model_reply, engine_reply) = match call {
            Call::Tick => {
                self.model.tick(now);
                self.engine.tick(now);
                (None, None)
            }
            Call::Execute { model, engine } => {
                (Some(self.model.execute(now, &model)), Some(self.engine.execute(now, &engine)))
            }
        };
        let model_events = self.model.take_events();
        let engine_events: Vec<Event> = self.engine.drain_events().collect();
        self.trace.push((now, call, model_reply, model_events.clone()));

        if let (Some(model_reply), Some(engine_reply)) = (model_reply, engine_reply) {
            let engine_reply = self.translate(engine_reply, &model_reply)?;
            if engine_reply != model_reply {
                return Err(format!(
                    "replies differ\n  model:  {model_reply:?}\n  engine: {engine_reply:?}"
                ));
            }
        }
        let mut translated = Vec::with_capacity(engine_events.len());
        for event in engine_events {
            let hint = model_events
                .iter()
                .find(|m| m.account == event.account && m.key == event.key)
                .map_or(bare(ResultCode::Ok), |m| m.reply);
            let reply = self.translate(event.reply, &hint)?;
            translated.push(Event { reply, ..event });
        }
        let sorted = |mut events: Vec<Event>| {
            events.sort_by_key(|e| (e.account, e.key, format!("{:?}", e.reply)));
            events
        };
        let (model_events, engine_events) = (sorted(model_events), sorted(translated));
        if model_events != engine_events {
            return Err(format!(
                "events differ\n  model:  {model_events:?}\n  engine: {engine_events:?}"
            ));
        }
        if self.engine.now_ms() != self.model.now {
            return Err(format!("clocks differ: engine {}", self.engine.now_ms()));
        }
        self.engine.check_invariants().map_err(|v| format!("engine invariant: {v:?}"))?;
        self.model.check().map_err(|e| format!("model invariant: {e}"))
    }

    fn report(&self, error: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{error}\nconcrete calls (model ids; model replies):");
        for (index, (now, call, reply, events)) in self.trace.iter().enumerate() {
            match call {
                Call::Tick => {
                    let _ = writeln!(out, "  #{index} t={now} tick");
                }
                Call::Execute { model, engine } => {
                    let _ = writeln!(out, "  #{index} t={now} {model:?}");
                    if model != engine {
                        let _ = writeln!(out, "       engine request: {engine:?}");
                    }
                    let _ = writeln!(out, "       -> {:?}", reply.expect("executed"));
                }
            }
            for event in events {
                let _ = writeln!(out, "       event {event:?}");
            }
        }
        let _ = writeln!(out, "id map (engine -> model): {:?}", self.e2m);
        out
    }
}

/// The `index`-th most recent entry (modulo the length) of a non-empty list.
fn nth_recent<T>(list: &[T], index: usize) -> &T {
    &list[list.len() - 1 - index % list.len()]
}

fn run_scenario(scenario: &Scenario) -> Result<(), String> {
    fn run(h: &mut Harness, now: u64, call: Call) -> Result<(), String> {
        h.apply(now, call).map_err(|e| h.report(&e))
    }
    let mut h = Harness::new();
    for (index, setup) in scenario.skus.iter().enumerate() {
        let spec = h.sku_spec(index as u64 + 1, setup);
        run(
            &mut h,
            T0,
            Call::Execute { model: Request::PutSku(spec), engine: Request::PutSku(spec) },
        )?;
    }
    for (index, &amount) in scenario.deposits.iter().enumerate() {
        if amount > 0 {
            let request = Request::Deposit { account: index as u64 + 1, amount, key: 999 };
            run(&mut h, T0, Call::Execute { model: request, engine: request })?;
        }
    }
    for &(clock, cmd) in &scenario.steps {
        let now = match clock {
            Clock::Same => h.t,
            Clock::Forward(ms) => {
                h.t += ms;
                h.t
            }
            Clock::Jump => {
                h.t += 1_000;
                h.t
            }
            Clock::Stale(ms) => h.t - ms,
        };
        let call = h.concretize(cmd);
        run(&mut h, now, call)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The engine and the model give identical answers to every command of 10,000 random
    /// sequences, and both keep their invariants after every step.
    #[test]
    fn engine_matches_the_reference_model(scenario in scenario(Profile::Mixed)) {
        if let Err(report) = run_scenario(&scenario) {
            return Err(TestCaseError::fail(report));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The same, with flash-sale contention on one SKU: long waitlists, matching, FIFO.
    #[test]
    fn engine_matches_the_reference_model_under_contention(scenario in scenario(Profile::Hot)) {
        if let Err(report) = run_scenario(&scenario) {
            return Err(TestCaseError::fail(report));
        }
    }
}
