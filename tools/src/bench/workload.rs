//! What the bench sends: the workloads, the `--mix` parser, the run's id layout (SKUs and
//! accounts derived from `--seed`), the per-connection request generator, and the book each
//! connection keeps of what took effect (for the invariant checks after the run).
//!
//! **Ids.** A run owns 2^20 consecutive SKU ids starting at `sku_base` and 2^22 consecutive
//! accounts starting at `account_base`, both picked by hashing the seed, so runs with different
//! seeds against one server do not collide (two random seeds share a range with probability
//! about 2^-40). Buyers of the seckill workloads are the first `--buyers` accounts of the
//! range; funded accounts (`--wallets`, used by the PAY workloads) start at offset 2^21.
//!
//! **Keys.** Every request key is `(connection + 1) << 40 | sequence`, the sequence counting
//! up from 1 on each connection: keys are unique in the run, so certainly unique per account,
//! and a response's key leads straight back to the connection's book entry. Retries re-send
//! an earlier request unchanged (same account, key and parameters).

use std::collections::VecDeque;
use std::fmt;

use anyhow::{bail, Context};
use rush_engine::{
    Reply, Request, ReservationState, Reserve, ResultCode, Target, RESERVE_FLAG_PAY,
};

use super::zipf::Zipf;
use crate::measure::rng::{splitmix64, Rng};

/// The workloads `-w` and `--mix` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// One SKU, limited stock, per-user limit 1 (`--per-user-limit`), many buyers, some retries with the same key.
    SeckillHot,
    /// Many limited SKUs, popularity Zipf-distributed, per-user limit 1 (`--per-user-limit`),
    /// retries.
    SeckillMany,
    /// RESERVE (PAY) then CONFIRM of every reservation that succeeded.
    ReserveConfirm,
    /// RESERVE (PAY) then CANCEL of every reservation that succeeded.
    ReserveCancel,
    /// RESERVE (PAY) with a short hold, never confirmed: the engine expires every hold.
    HoldExpire,
    /// RESERVE with a wait on a SKU that sells out; some reservations are cancelled, and the
    /// released units go to the waiters.
    Waitlist,
    /// PING: the round trip without engine work.
    Ping,
}

impl Workload {
    pub const ALL: [Workload; 7] = [
        Workload::SeckillHot,
        Workload::SeckillMany,
        Workload::ReserveConfirm,
        Workload::ReserveCancel,
        Workload::HoldExpire,
        Workload::Waitlist,
        Workload::Ping,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::SeckillHot => "seckill-hot",
            Workload::SeckillMany => "seckill-many",
            Workload::ReserveConfirm => "reserve-confirm",
            Workload::ReserveCancel => "reserve-cancel",
            Workload::HoldExpire => "hold-expire",
            Workload::Waitlist => "waitlist",
            Workload::Ping => "ping",
        }
    }

    pub fn from_name(name: &str) -> anyhow::Result<Workload> {
        Workload::ALL.into_iter().find(|workload| workload.name() == name).with_context(|| {
            let names: Vec<&str> = Workload::ALL.iter().map(|workload| workload.name()).collect();
            format!("unknown workload {name:?} (expected one of: {})", names.join(", "))
        })
    }

    /// The RESERVEs of this workload hold funds (PAY) from the funded accounts.
    pub fn pays(self) -> bool {
        matches!(self, Workload::ReserveConfirm | Workload::ReserveCancel | Workload::HoldExpire)
    }

    /// This workload re-sends some earlier requests unchanged (`--retry-pct`).
    pub fn retries(self) -> bool {
        matches!(self, Workload::SeckillHot | Workload::SeckillMany)
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// Workloads with relative weights: each new request picks one in proportion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    entries: Vec<(Workload, u32)>,
    total: u64,
}

impl Mix {
    pub fn single(workload: Workload) -> Mix {
        Mix { entries: vec![(workload, 1)], total: 1 }
    }

    /// Parses `name=weight,name=weight,...`: known names, each at most once, integer weights
    /// of at least 1 (relative: they need not add up to 100).
    pub fn parse(text: &str) -> anyhow::Result<Mix> {
        let mut entries: Vec<(Workload, u32)> = Vec::new();
        for part in text.split(',').map(str::trim) {
            if part.is_empty() {
                bail!("--mix {text:?}: empty entry (expected name=weight,name=weight,...)");
            }
            let (name, weight) = part.split_once('=').with_context(|| {
                format!("--mix entry {part:?}: expected name=weight, e.g. seckill-hot=70")
            })?;
            let workload = Workload::from_name(name.trim())?;
            let weight: u32 = weight.trim().parse().with_context(|| {
                format!("--mix entry {part:?}: the weight must be a whole number")
            })?;
            if weight == 0 {
                bail!("--mix entry {part:?}: the weight must be at least 1 (leave it out instead)");
            }
            if entries.iter().any(|&(seen, _)| seen == workload) {
                bail!("--mix names {workload} twice");
            }
            entries.push((workload, weight));
        }
        let total = entries.iter().map(|&(_, weight)| u64::from(weight)).sum();
        Ok(Mix { entries, total })
    }

    pub fn workloads(&self) -> impl Iterator<Item = Workload> + '_ {
        self.entries.iter().map(|&(workload, _)| workload)
    }

    pub fn entries(&self) -> &[(Workload, u32)] {
        &self.entries
    }

    pub fn contains(&self, workload: Workload) -> bool {
        self.workloads().any(|seen| seen == workload)
    }

    /// The workload of the next new request.
    pub fn pick(&self, rng: &mut Rng) -> Workload {
        if self.entries.len() == 1 {
            return self.entries[0].0;
        }
        let mut ticket = rng.below(self.total);
        for &(workload, weight) in &self.entries {
            if ticket < u64::from(weight) {
                return workload;
            }
            ticket -= u64::from(weight);
        }
        self.entries[self.entries.len() - 1].0
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [(workload, _)] = self.entries.as_slice() {
            return write!(formatter, "{workload}");
        }
        let parts: Vec<String> =
            self.entries.iter().map(|(workload, weight)| format!("{workload}={weight}")).collect();
        formatter.write_str(&parts.join(","))
    }
}

/// The workload knobs (validated by the caller).
#[derive(Clone, Debug)]
pub struct Params {
    /// Units of each limited SKU (seckill-hot, seckill-many, hold-expire, waitlist).
    pub stock: u64,
    /// SKUs of seckill-many.
    pub skus: u32,
    /// Zipf exponent of seckill-many.
    pub zipf_s: f64,
    /// Buyer accounts of the seckill workloads.
    pub buyers: u64,
    /// Per-user limit of the seckill SKUs (0: none).
    pub per_user_limit: u32,
    /// Funded accounts of the PAY workloads.
    pub wallets: u64,
    /// Percentage of seckill requests that re-send an earlier request.
    pub retry_pct: f64,
    /// `hold_ms` of hold-expire's RESERVEs.
    pub hold_ms: u32,
    /// `wait_ms` of waitlist's RESERVEs.
    pub wait_ms: u32,
    /// Percentage of waitlist's successful reservations that are cancelled.
    pub cancel_pct: f64,
}

/// The largest `--per-user-limit`: a RESERVE's quantity limit (PROTOCOL.md section 11,
/// `quantity_max` at most 65,535).
pub const PER_USER_LIMIT_MAX: u32 = 65_535;
/// Price of one unit of every bench SKU (minor currency units).
pub const PRICE: u64 = 100;
/// Deposited into every funded account: enough for 10^10 reservations.
pub const WALLET_DEPOSIT: u64 = 1_000_000_000_000;
/// Stock of the SKUs of reserve-confirm and reserve-cancel: never the bottleneck.
pub const PLENTIFUL_STOCK: u64 = 1_000_000_000_000;
/// The hold of every bench SKU except hold-expire's RESERVEs (which ask for `--hold-ms`):
/// 5 minutes, so that in a shorter run no hold expires and the stock checks are exact
/// (a longer run makes them bounds; the check output says so).
pub const LONG_HOLD_MS: u32 = 300_000;
/// The request key of the set-up DEPOSITs (each account's own key space; far above every
/// generated key, which stays below 2^54).
pub const DEPOSIT_KEY: u64 = 1 << 62;
/// Generated keys carry the connection in the bits above this.
const KEY_SEQUENCE_BITS: u32 = 40;
/// Offset of the funded accounts in the run's account range.
const WALLET_OFFSET: u64 = 1 << 21;
/// SKU ids per run.
pub const SKU_RANGE: u64 = 1 << 20;
/// Accounts per run.
pub const ACCOUNT_RANGE: u64 = 1 << 22;
/// Earlier requests a connection remembers as retry candidates.
const RETRY_MEMORY: usize = 4096;

/// One SKU the bench creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkuPlan {
    pub id: u64,
    pub workload: Workload,
    pub stock: u64,
    pub price: u64,
    pub per_user_limit: u32,
    /// The SKU's default hold (PUT_SKU `hold_ms`).
    pub hold_ms: u32,
}

/// The run's SKUs and accounts.
#[derive(Clone, Debug)]
pub struct Layout {
    pub seed: u64,
    pub sku_base: u64,
    pub account_base: u64,
    pub skus: Vec<SkuPlan>,
    /// `(first index, count)` into `skus` of each workload's SKUs, by `Workload::ALL` order.
    ranges: [(u32, u32); 7],
    pub buyers: u64,
    /// Funded accounts (0 when no workload pays).
    pub wallets: u64,
}

impl Layout {
    pub fn new(seed: u64, mix: &Mix, params: &Params) -> Layout {
        // The constant keeps bench ranges apart from other users of the same seed value.
        let mut mixer = seed ^ 0x5255_5348_4245_4E43;
        let sku_base = 1 + (splitmix64(&mut mixer) % (1 << 40)) * SKU_RANGE;
        let account_base = 1 + (splitmix64(&mut mixer) % (1 << 40)) * ACCOUNT_RANGE;
        let mut skus = Vec::new();
        let mut ranges = [(0u32, 0u32); 7];
        for (slot, workload) in Workload::ALL.into_iter().enumerate() {
            if !mix.contains(workload) {
                continue;
            }
            let first = skus.len() as u32;
            let (count, stock, per_user_limit) = match workload {
                Workload::SeckillHot => (1, params.stock, params.per_user_limit),
                Workload::SeckillMany => (params.skus, params.stock, params.per_user_limit),
                Workload::ReserveConfirm | Workload::ReserveCancel => (1, PLENTIFUL_STOCK, 0),
                Workload::HoldExpire | Workload::Waitlist => (1, params.stock, 0),
                Workload::Ping => (0, 0, 0),
            };
            for _ in 0..count {
                let id = sku_base + skus.len() as u64;
                skus.push(SkuPlan {
                    id,
                    workload,
                    stock,
                    price: PRICE,
                    per_user_limit,
                    hold_ms: LONG_HOLD_MS,
                });
            }
            ranges[slot] = (first, count);
        }
        let wallets = if mix.workloads().any(Workload::pays) { params.wallets } else { 0 };
        Layout { seed, sku_base, account_base, skus, ranges, buyers: params.buyers, wallets }
    }

    fn range(&self, workload: Workload) -> (u32, u32) {
        let slot = Workload::ALL.iter().position(|&seen| seen == workload).unwrap_or(0);
        self.ranges[slot]
    }

    pub fn buyer(&self, index: u64) -> u64 {
        self.account_base + index
    }

    pub fn wallet(&self, index: u64) -> u64 {
        self.account_base + WALLET_OFFSET + index
    }

    pub fn wallet_accounts(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.wallets).map(|index| self.wallet(index))
    }
}

/// A request with what the bench needs to account for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    pub request: Request,
    /// Index into `Layout::skus`, or `NO_SKU` (PING).
    pub sku: u32,
    /// A re-send of an earlier request.
    pub retry: bool,
}

pub const NO_SKU: u32 = u32::MAX;

/// What one key saw (saturating counters: a key is sent at most a handful of times).
#[derive(Clone, Copy, Debug, Default)]
struct KeyState {
    sent: u8,
    answered: u8,
    /// Replies OK (the request itself took effect).
    fresh_ok: u8,
    /// Replies DUPLICATE whose original outcome is OK.
    dup_ok: u8,
}

/// Per-SKU effects the bench observed (summed over connections at the end).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkuTally {
    /// Keys whose RESERVE took units: a reply OK or DUPLICATE-of-OK, counted once per key.
    pub taken: u64,
    /// CONFIRMs answered OK.
    pub confirmed: u64,
    /// CANCELs answered OK that released a held reservation.
    pub cancelled: u64,
    /// RESERVEs, CONFIRMs and CANCELs never answered (their effect is unknown).
    pub reserve_unknown: u64,
    pub confirm_unknown: u64,
    pub cancel_unknown: u64,
}

impl SkuTally {
    pub fn add(&mut self, other: &SkuTally) {
        self.taken += other.taken;
        self.confirmed += other.confirmed;
        self.cancelled += other.cancelled;
        self.reserve_unknown += other.reserve_unknown;
        self.confirm_unknown += other.confirm_unknown;
        self.cancel_unknown += other.cancel_unknown;
    }
}

/// Exactly-once evidence over the keys the bench sent more than once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExactlyOnce {
    /// Keys sent two or more times.
    pub retried_keys: u64,
    /// Retried keys answered DUPLICATE at least once.
    pub duplicates_seen: u64,
    /// Keys answered OK more than once (a unit taken twice): must be 0.
    pub double_ok: u64,
    /// Keys answered DUPLICATE-of-OK although every attempt was answered and none was OK:
    /// must be 0.
    pub dup_ok_without_ok: u64,
    /// KEY_REUSED replies (retries carry identical parameters): must be 0.
    pub key_reused: u64,
}

impl ExactlyOnce {
    pub fn add(&mut self, other: &ExactlyOnce) {
        self.retried_keys += other.retried_keys;
        self.duplicates_seen += other.duplicates_seen;
        self.double_ok += other.double_ok;
        self.dup_ok_without_ok += other.dup_ok_without_ok;
        self.key_reused += other.key_reused;
    }
}

/// One connection's record of what it sent and what took effect.
#[derive(Clone, Debug)]
pub struct Book {
    /// By key sequence (index 0 unused).
    keys: Vec<KeyState>,
    duplicates: Vec<bool>,
    pub skus: Vec<SkuTally>,
    key_reused: u64,
    /// Follow-ups (CONFIRM, CANCEL) still queued when the run ended.
    pub abandoned_follow_ups: u64,
}

impl Book {
    fn new(sku_count: usize) -> Book {
        Book {
            keys: vec![KeyState::default()],
            duplicates: vec![false],
            skus: vec![SkuTally::default(); sku_count],
            key_reused: 0,
            abandoned_follow_ups: 0,
        }
    }

    pub fn exactly_once(&self) -> ExactlyOnce {
        let mut summary = ExactlyOnce { key_reused: self.key_reused, ..ExactlyOnce::default() };
        for (state, &duplicate) in self.keys.iter().zip(&self.duplicates) {
            if state.sent >= 2 {
                summary.retried_keys += 1;
                summary.duplicates_seen += u64::from(duplicate);
            }
            if state.fresh_ok > 1 {
                summary.double_ok += 1;
            }
            if state.dup_ok > 0 && state.fresh_ok == 0 && state.answered == state.sent {
                summary.dup_ok_without_ok += 1;
            }
        }
        summary
    }
}

/// Generates one connection's requests and keeps its book.
#[derive(Debug)]
pub struct Generator<'a> {
    layout: &'a Layout,
    mix: &'a Mix,
    params: &'a Params,
    zipf: Option<&'a Zipf>,
    key_prefix: u64,
    rng: Rng,
    /// Follow-ups (CONFIRM / CANCEL) waiting for the connection's next send slot.
    pending: VecDeque<Op>,
    /// Recent retry candidates (a ring).
    recent: Vec<Op>,
    recent_next: usize,
    pub book: Book,
}

impl<'a> Generator<'a> {
    pub fn new(
        connection: usize,
        seed: u64,
        layout: &'a Layout,
        mix: &'a Mix,
        params: &'a Params,
        zipf: Option<&'a Zipf>,
    ) -> Generator<'a> {
        let mut mixer = seed ^ (connection as u64).wrapping_mul(0xA076_1D64_78BD_642F);
        Generator {
            layout,
            mix,
            params,
            zipf,
            key_prefix: (connection as u64 + 1) << KEY_SEQUENCE_BITS,
            rng: Rng::new(splitmix64(&mut mixer)),
            pending: VecDeque::new(),
            recent: Vec::new(),
            recent_next: 0,
            book: Book::new(layout.skus.len()),
        }
    }

    /// A fresh key (and its book entry).
    fn new_key(&mut self) -> u64 {
        let sequence = self.book.keys.len() as u64;
        self.book.keys.push(KeyState::default());
        self.book.duplicates.push(false);
        self.key_prefix | sequence
    }

    fn key_state(&mut self, key: u64) -> Option<&mut KeyState> {
        if key & !((1 << KEY_SEQUENCE_BITS) - 1) != self.key_prefix {
            return None;
        }
        self.book.keys.get_mut((key & ((1 << KEY_SEQUENCE_BITS) - 1)) as usize)
    }

    /// The next request to send: a queued follow-up first, else a new request of a workload
    /// picked from the mix (or, for the seckill workloads, sometimes a retry).
    pub fn next(&mut self) -> Op {
        let op = match self.pending.pop_front() {
            Some(op) => op,
            None => {
                let workload = self.mix.pick(&mut self.rng);
                self.new_op(workload)
            }
        };
        if let Some(key) = op_key(&op.request) {
            if let Some(state) = self.key_state(key) {
                state.sent = state.sent.saturating_add(1);
            }
        }
        op
    }

    fn new_op(&mut self, workload: Workload) -> Op {
        if workload.retries()
            && !self.recent.is_empty()
            && self.rng.chance_of(self.params.retry_pct)
        {
            let pick = self.rng.below(self.recent.len() as u64) as usize;
            return Op { retry: true, ..self.recent[pick] };
        }
        let (first, count) = self.layout.range(workload);
        let sku_index = match workload {
            Workload::Ping => return Op { request: Request::Ping, sku: NO_SKU, retry: false },
            Workload::SeckillMany => {
                first + self.zipf.map_or(0, |zipf| zipf.sample(&mut self.rng) as u32).min(count - 1)
            }
            _ => first,
        };
        let account = if workload.pays() {
            self.layout.wallet(self.rng.below(self.layout.wallets.max(1)))
        } else {
            self.layout.buyer(self.rng.below(self.layout.buyers))
        };
        let (hold_ms, wait_ms) = match workload {
            Workload::HoldExpire => (self.params.hold_ms, 0),
            Workload::Waitlist => (0, self.params.wait_ms),
            _ => (0, 0),
        };
        let key = self.new_key();
        let op = Op {
            request: Request::Reserve(Reserve {
                account,
                sku: self.layout.skus[sku_index as usize].id,
                quantity: 1,
                key,
                flags: if workload.pays() { RESERVE_FLAG_PAY } else { 0 },
                hold_ms,
                wait_ms,
            }),
            sku: sku_index,
            retry: false,
        };
        if workload.retries() {
            if self.recent.len() < RETRY_MEMORY {
                self.recent.push(op);
            } else {
                self.recent[self.recent_next] = op;
                self.recent_next = (self.recent_next + 1) % RETRY_MEMORY;
            }
        }
        op
    }

    /// Accounts for `reply` to `op` and queues the follow-up its workload calls for.
    pub fn on_reply(&mut self, op: &Op, reply: &Reply) {
        if reply.result == ResultCode::KeyReused {
            self.book.key_reused += 1;
        }
        match op.request {
            Request::Reserve(reserve) => self.on_reserve_reply(op, &reserve, reply),
            Request::Confirm { .. } if reply.result == ResultCode::Ok => {
                self.book.skus[op.sku as usize].confirmed += 1;
            }
            Request::Cancel { .. } if reply.result == ResultCode::Ok => {
                // OK with no body is the cancel-before-reserve rollback, which releases
                // nothing; the bench only cancels reservations it holds, so expect a body.
                let released = reply
                    .reservation()
                    .is_some_and(|view| view.state == ReservationState::Cancelled);
                if released {
                    self.book.skus[op.sku as usize].cancelled += 1;
                }
            }
            _ => {}
        }
    }

    fn on_reserve_reply(&mut self, op: &Op, reserve: &Reserve, reply: &Reply) {
        let fresh_ok = reply.result == ResultCode::Ok;
        let duplicate = reply.result == ResultCode::Duplicate;
        let dup_ok = duplicate && reply.original == ResultCode::Ok;
        let sequence = (reserve.key & ((1 << KEY_SEQUENCE_BITS) - 1)) as usize;
        let Some(state) = self.key_state(reserve.key) else { return };
        state.answered = state.answered.saturating_add(1);
        let first_evidence = state.fresh_ok == 0 && state.dup_ok == 0;
        if fresh_ok {
            state.fresh_ok = state.fresh_ok.saturating_add(1);
        }
        if dup_ok {
            state.dup_ok = state.dup_ok.saturating_add(1);
        }
        if duplicate {
            self.book.duplicates[sequence] = true;
        }
        if (fresh_ok || dup_ok) && first_evidence {
            self.book.skus[op.sku as usize].taken += u64::from(reserve.quantity);
        }
        if fresh_ok && !op.retry {
            self.follow_up(op, reserve, reply);
        }
    }

    fn follow_up(&mut self, op: &Op, reserve: &Reserve, reply: &Reply) {
        let workload = self.layout.skus[op.sku as usize].workload;
        let cancel = match workload {
            Workload::ReserveConfirm => false,
            Workload::ReserveCancel => true,
            Workload::Waitlist if self.rng.chance_of(self.params.cancel_pct) => true,
            _ => return,
        };
        // By reservation id when the reply carries it; by the RESERVE's key otherwise.
        let target = match reply.reservation() {
            Some(view) if view.reservation != 0 => Target::Reservation(view.reservation),
            _ => Target::ReserveKey(reserve.key),
        };
        let key = self.new_key();
        let account = reserve.account;
        let request = if cancel {
            Request::Cancel { account, target, key }
        } else {
            Request::Confirm { account, target, key }
        };
        self.pending.push_back(Op { request, sku: op.sku, retry: false });
    }

    /// Accounts for a request that never got a reply.
    pub fn on_unanswered(&mut self, op: &Op) {
        if op.sku == NO_SKU {
            return;
        }
        let tally = &mut self.book.skus[op.sku as usize];
        match op.request {
            Request::Reserve(_) => tally.reserve_unknown += 1,
            Request::Confirm { .. } => tally.confirm_unknown += 1,
            Request::Cancel { .. } => tally.cancel_unknown += 1,
            _ => {}
        }
    }

    /// Ends the run: queued follow-ups are never sent.
    pub fn finish(&mut self) {
        self.book.abandoned_follow_ups += self.pending.len() as u64;
        self.pending.clear();
    }
}

fn op_key(request: &Request) -> Option<u64> {
    match *request {
        Request::Reserve(Reserve { key, .. })
        | Request::Confirm { key, .. }
        | Request::Cancel { key, .. } => Some(key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rush_engine::{ReplyBody, ReservationView};

    fn params() -> Params {
        Params {
            stock: 10,
            skus: 8,
            zipf_s: 1.0,
            buyers: 1000,
            per_user_limit: 1,
            wallets: 50,
            retry_pct: 5.0,
            hold_ms: 100,
            wait_ms: 100,
            cancel_pct: 50.0,
        }
    }

    #[test]
    fn mix_parser_accepts_weights_and_rejects_mistakes() {
        let mix = Mix::parse("seckill-hot=70, reserve-confirm=20,ping=10").unwrap();
        assert_eq!(
            mix.entries(),
            &[(Workload::SeckillHot, 70), (Workload::ReserveConfirm, 20), (Workload::Ping, 10)]
        );
        assert_eq!(mix.to_string(), "seckill-hot=70,reserve-confirm=20,ping=10");
        for bad in [
            "",
            "seckill-hot",
            "seckill-hot=",
            "seckill-hot=x",
            "seckill-hot=0",
            "seckill-hot=-1",
            "nope=10",
            "ping=1,ping=2",
            "ping=1,",
        ] {
            assert!(Mix::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let error = Mix::parse("nope=1").unwrap_err().to_string();
        assert!(error.contains("seckill-hot") && error.contains("waitlist"), "{error}");
    }

    #[test]
    fn mix_picks_in_proportion() {
        let mix = Mix::parse("ping=3,seckill-hot=1").unwrap();
        let mut rng = Rng::new(9);
        let pings = (0..40_000).filter(|_| mix.pick(&mut rng) == Workload::Ping).count();
        assert!((29_000..31_000).contains(&pings), "{pings}");
    }

    #[test]
    fn layouts_of_different_seeds_do_not_overlap() {
        let mix = Mix::parse("seckill-many=1,reserve-cancel=1").unwrap();
        let a = Layout::new(1, &mix, &params());
        let b = Layout::new(2, &mix, &params());
        assert_eq!(a.skus.len(), 9);
        assert!(a.sku_base.abs_diff(b.sku_base) >= SKU_RANGE);
        assert!(a.account_base.abs_diff(b.account_base) >= ACCOUNT_RANGE);
        assert_eq!(a.skus[3].id, a.sku_base + 3);
        assert_eq!(a.wallets, 50);
        assert_eq!(Layout::new(1, &Mix::single(Workload::Ping), &params()).wallets, 0);
    }

    #[test]
    fn the_seckill_skus_take_the_per_user_limit_and_only_they() {
        let mix = Mix::parse("seckill-hot=1,seckill-many=1,reserve-confirm=1").unwrap();
        for limit in [0, 1, 3] {
            let layout = Layout::new(1, &mix, &Params { per_user_limit: limit, ..params() });
            for sku in &layout.skus {
                let expected = match sku.workload {
                    Workload::SeckillHot | Workload::SeckillMany => limit,
                    _ => 0,
                };
                assert_eq!(sku.per_user_limit, expected, "{sku:?}");
            }
        }
    }

    #[test]
    fn keys_are_unique_and_retries_resend_the_same_request() {
        let mix = Mix::single(Workload::SeckillHot);
        let params = Params { retry_pct: 30.0, ..params() };
        let layout = Layout::new(5, &mix, &params);
        let mut generator = Generator::new(3, 5, &layout, &mix, &params, None);
        let mut seen = std::collections::HashMap::new();
        let mut retries = 0;
        for _ in 0..2000 {
            let op = generator.next();
            let Request::Reserve(reserve) = op.request else { panic!("seckill sends RESERVE") };
            assert_eq!(reserve.key >> KEY_SEQUENCE_BITS, 4);
            if op.retry {
                retries += 1;
                assert_eq!(seen.get(&reserve.key), Some(&reserve), "a retry is identical");
            } else {
                assert!(seen.insert(reserve.key, reserve).is_none(), "fresh keys are new");
            }
        }
        assert!((450..750).contains(&retries), "{retries}");
    }

    #[test]
    fn the_book_counts_a_key_once_and_flags_double_success() {
        let mix = Mix::single(Workload::ReserveConfirm);
        let params = params();
        let layout = Layout::new(5, &mix, &params);
        let mut generator = Generator::new(0, 5, &layout, &mix, &params, None);
        let op = generator.next();
        let Request::Reserve(reserve) = op.request else { panic!() };
        let held = ReservationView {
            reservation: 77,
            account: reserve.account,
            sku: reserve.sku,
            quantity: 1,
            state: ReservationState::Held,
            ..ReservationView::default()
        };
        let ok = Reply::with_body(ResultCode::Ok, ReplyBody::Reservation(held));
        generator.on_reply(&op, &ok);
        // The follow-up is a CONFIRM of reservation 77 with a new key.
        let confirm = generator.next();
        match confirm.request {
            Request::Confirm { account, target, key } => {
                assert_eq!(account, reserve.account);
                assert_eq!(target, Target::Reservation(77));
                assert_ne!(key, reserve.key);
            }
            other => panic!("expected CONFIRM, got {other:?}"),
        }
        generator.on_reply(&confirm, &Reply::code(ResultCode::Ok));
        // A retry answered DUPLICATE-of-OK is not a second unit.
        let retry = Op { retry: true, ..op };
        let duplicate = Reply {
            result: ResultCode::Duplicate,
            original: ResultCode::Ok,
            body: ReplyBody::None,
        };
        generator.next_retry_for_test(&retry);
        generator.on_reply(&retry, &duplicate);
        assert_eq!(generator.book.skus[0].taken, 1);
        assert_eq!(generator.book.skus[0].confirmed, 1);
        let summary = generator.book.exactly_once();
        assert_eq!((summary.retried_keys, summary.duplicates_seen, summary.double_ok), (1, 1, 0));
        // A second OK for the same key is a violation.
        generator.next_retry_for_test(&retry);
        generator.on_reply(&retry, &ok);
        assert_eq!(generator.book.exactly_once().double_ok, 1);
        assert_eq!(generator.book.skus[0].taken, 1);
    }

    impl Generator<'_> {
        /// Books a re-send of `op` as `next` would.
        fn next_retry_for_test(&mut self, op: &Op) {
            if let Some(key) = op_key(&op.request) {
                if let Some(state) = self.key_state(key) {
                    state.sent = state.sent.saturating_add(1);
                }
            }
        }
    }
}
