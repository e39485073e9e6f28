//! Engine CONFIRM and CANCEL: by id and by reserve key, the refusals for every state,
//! cancel-before-reserve tombstones, money and stock on both paths, and hold expiry exactly
//! at the deadline (docs/SEMANTICS.md, CONFIRM / CANCEL / Timers).

use rush_engine::ReservationIdParts;
use rush_engine::{
    AccountView, Engine, Reply, ReplyBody, ReservationState, Reserve, ResultCode, SkuSpec, Target,
    RESERVE_FLAG_PAY,
};
use rush_suite::engine::{
    account_view, bare, cancel, confirm, deposit, engine, fund, funds, hold, in_state, put_sku,
    query, reserve, reserve_of, spec, stock, tick, with,
};

const SKU: u64 = 7;
const ALICE: u64 = 11;
const BOB: u64 = 12;
const T: u64 = 1_000_000;
/// `Config::small().hold_ms_default`.
const HOLD_DEFAULT: u64 = 60_000;
const PRICE: u64 = 10;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn rsv(account: u64, quantity: u32, key: u64) -> Reserve {
    reserve_of(account, SKU, quantity, key)
}

/// SKU with 10 units at price 10 and a per-user limit of 5; Alice has 100 in her wallet.
fn setup() -> Engine {
    let mut engine = engine();
    put_sku(&mut engine, T, SkuSpec { per_user_limit: 5, ..spec(SKU, 10, PRICE) });
    fund(&mut engine, T, ALICE, 100, 1_000);
    engine
}

fn paid(quantity: u32, key: u64) -> Reserve {
    Reserve { flags: RESERVE_FLAG_PAY, ..rsv(ALICE, quantity, key) }
}

// ---------------------------------------------------------------------------------------
// CONFIRM
// ---------------------------------------------------------------------------------------

#[test]
fn confirm_by_id_sells_the_units_and_spends_the_funds() {
    let mut engine = setup();
    let view = hold(&mut engine, T, paid(2, 1));
    assert_eq!(funds(&mut engine, T, ALICE), (80, 20, 0));
    let reply = confirm(&mut engine, T + 10, ALICE, Target::Reservation(view.reservation), 2);
    // The deadline stays the hold's expiry.
    assert_eq!(reply, with(ResultCode::Ok, in_state(view, ReservationState::Confirmed)));
    assert_eq!(view.deadline_ms, T + HOLD_DEFAULT);
    assert_eq!(stock(&mut engine, T + 10, SKU), (10, 8, 0, 2));
    assert_eq!(
        account_view(&mut engine, T + 10, ALICE),
        AccountView {
            account: ALICE,
            available: 80,
            held: 0,
            spent: 20,
            deposited: 100,
            withdrawn: 0
        }
    );
    assert_eq!(engine.live_reservations(), 0);
    assert_eq!(engine.retained_keys(), 3);
    // Nothing comes back when the old deadline passes.
    tick(&mut engine, T + HOLD_DEFAULT + 1);
    assert_eq!(stock(&mut engine, T + HOLD_DEFAULT + 1, SKU), (10, 8, 0, 2));
    assert_eq!(funds(&mut engine, T + HOLD_DEFAULT + 1, ALICE), (80, 0, 20));
    // The sold units keep counting against the limit (5): 2 sold + 4 > 5.
    assert_eq!(
        reserve(&mut engine, T + HOLD_DEFAULT + 1, rsv(ALICE, 4, 3)),
        bare(ResultCode::LimitExceeded)
    );
}

#[test]
fn confirm_by_reserve_key() {
    let mut engine = setup();
    let view = hold(&mut engine, T, paid(3, 1));
    let reply = confirm(&mut engine, T, ALICE, Target::ReserveKey(1), 2);
    assert_eq!(reply, with(ResultCode::Ok, in_state(view, ReservationState::Confirmed)));
    assert_eq!(stock(&mut engine, T, SKU), (10, 7, 0, 3));
    assert_eq!(funds(&mut engine, T, ALICE), (70, 0, 30));
    let by_key = query(&mut engine, T, ALICE, Target::ReserveKey(1));
    assert_eq!(by_key, with(ResultCode::Ok, in_state(view, ReservationState::Confirmed)));
}

#[test]
fn confirm_twice_with_different_keys_is_already_confirmed() {
    let mut engine = setup();
    let view = hold(&mut engine, T, paid(1, 1));
    let target = Target::Reservation(view.reservation);
    assert_eq!(confirm(&mut engine, T, ALICE, target, 2).result, ResultCode::Ok);
    let confirmed = in_state(view, ReservationState::Confirmed);
    let keys = engine.retained_keys();
    assert_eq!(
        confirm(&mut engine, T, ALICE, target, 3),
        with(ResultCode::AlreadyConfirmed, confirmed)
    );
    assert_eq!(
        confirm(&mut engine, T, ALICE, Target::ReserveKey(1), 4),
        with(ResultCode::AlreadyConfirmed, confirmed)
    );
    assert_eq!(engine.retained_keys(), keys, "a refusal records no key");
    // The refused key is free: it can confirm something else.
    let other = hold(&mut engine, T, paid(1, 5));
    let reply = confirm(&mut engine, T, ALICE, Target::Reservation(other.reservation), 3);
    assert_eq!(reply.result, ResultCode::Ok);
    assert_eq!(stock(&mut engine, T, SKU), (10, 8, 0, 2));
    assert_eq!(funds(&mut engine, T, ALICE), (80, 0, 20));
}

#[test]
fn confirm_twice_with_the_same_key_is_duplicate() {
    let mut engine = setup();
    let view = hold(&mut engine, T, paid(1, 1));
    let target = Target::Reservation(view.reservation);
    assert_eq!(confirm(&mut engine, T, ALICE, target, 2).result, ResultCode::Ok);
    let hash = engine.state_hash();
    let replay = confirm(&mut engine, T, ALICE, target, 2);
    assert_eq!(
        replay,
        Reply {
            result: ResultCode::Duplicate,
            original: ResultCode::Ok,
            body: ReplyBody::Reservation(in_state(view, ReservationState::Confirmed)),
        }
    );
    assert_eq!(engine.state_hash(), hash);
    // The same key naming the reservation the other way is a different parameter.
    assert_eq!(
        confirm(&mut engine, T, ALICE, Target::ReserveKey(1), 2),
        bare(ResultCode::KeyReused)
    );
    // And as a CANCEL it is a different operation.
    assert_eq!(cancel(&mut engine, T, ALICE, target, 2), bare(ResultCode::KeyReused));
    assert_eq!(engine.state_hash(), hash);
}

#[test]
fn confirm_after_expiry_is_expired() {
    let mut engine = setup();
    let view = hold(&mut engine, T, Reserve { hold_ms: 1_000, ..paid(2, 1) });
    assert_eq!(view.deadline_ms, T + 1_000);
    let expired = in_state(view, ReservationState::Expired);
    let target = Target::Reservation(view.reservation);
    assert_eq!(
        confirm(&mut engine, T + 1_000, ALICE, target, 2),
        with(ResultCode::Expired, expired)
    );
    assert_eq!(
        confirm(&mut engine, T + 1_000, ALICE, Target::ReserveKey(1), 2),
        with(ResultCode::Expired, expired)
    );
    assert_eq!(
        cancel(&mut engine, T + 1_000, ALICE, target, 3),
        with(ResultCode::Expired, expired)
    );
    assert_eq!(stock(&mut engine, T + 1_000, SKU), (10, 10, 0, 0));
    assert_eq!(funds(&mut engine, T + 1_000, ALICE), (100, 0, 0));
    assert_eq!(engine.retained_keys(), 2, "the deposit and the reserve");
}

#[test]
fn confirm_of_a_cancelled_hold_is_already_cancelled() {
    let mut engine = setup();
    let view = hold(&mut engine, T, paid(1, 1));
    let target = Target::Reservation(view.reservation);
    assert_eq!(cancel(&mut engine, T, ALICE, target, 2).result, ResultCode::Ok);
    let cancelled = in_state(view, ReservationState::Cancelled);
    assert_eq!(
        confirm(&mut engine, T, ALICE, target, 3),
        with(ResultCode::AlreadyCancelled, cancelled)
    );
    assert_eq!(
        confirm(&mut engine, T, ALICE, Target::ReserveKey(1), 3),
        with(ResultCode::AlreadyCancelled, cancelled)
    );
    assert_eq!(stock(&mut engine, T, SKU), (10, 10, 0, 0));
    assert_eq!(funds(&mut engine, T, ALICE), (100, 0, 0));
}

// ---------------------------------------------------------------------------------------
// CANCEL
// ---------------------------------------------------------------------------------------

#[test]
fn cancel_by_id_returns_units_and_funds() {
    let mut engine = setup();
    let view = hold(&mut engine, T, paid(4, 1));
    assert_eq!(stock(&mut engine, T, SKU), (10, 6, 4, 0));
    assert_eq!(funds(&mut engine, T, ALICE), (60, 40, 0));
    let reply = cancel(&mut engine, T + 5, ALICE, Target::Reservation(view.reservation), 2);
    assert_eq!(reply, with(ResultCode::Ok, in_state(view, ReservationState::Cancelled)));
    assert_eq!(stock(&mut engine, T + 5, SKU), (10, 10, 0, 0));
    assert_eq!(
        account_view(&mut engine, T + 5, ALICE),
        AccountView {
            account: ALICE,
            available: 100,
            held: 0,
            spent: 0,
            deposited: 100,
            withdrawn: 0
        }
    );
    assert_eq!(engine.live_reservations(), 0);
    // The limit (5) is free again.
    assert_eq!(hold(&mut engine, T + 5, rsv(ALICE, 5, 3)).quantity, 5);
}

#[test]
fn cancel_by_reserve_key() {
    let mut engine = setup();
    let view = hold(&mut engine, T, paid(2, 1));
    let reply = cancel(&mut engine, T, ALICE, Target::ReserveKey(1), 2);
    assert_eq!(reply, with(ResultCode::Ok, in_state(view, ReservationState::Cancelled)));
    assert_eq!(stock(&mut engine, T, SKU), (10, 10, 0, 0));
    assert_eq!(funds(&mut engine, T, ALICE), (100, 0, 0));
    // The RESERVE's replay shows the reservation cancelled, original OK.
    assert_eq!(
        reserve(&mut engine, T, paid(2, 1)),
        Reply {
            result: ResultCode::Duplicate,
            original: ResultCode::Ok,
            body: ReplyBody::Reservation(in_state(view, ReservationState::Cancelled)),
        }
    );
}

#[test]
fn cancel_twice_is_already_cancelled_and_the_same_key_is_duplicate() {
    let mut engine = setup();
    let view = hold(&mut engine, T, paid(1, 1));
    let target = Target::Reservation(view.reservation);
    assert_eq!(cancel(&mut engine, T, ALICE, target, 2).result, ResultCode::Ok);
    let cancelled = in_state(view, ReservationState::Cancelled);
    let hash = engine.state_hash();
    assert_eq!(
        cancel(&mut engine, T, ALICE, target, 3),
        with(ResultCode::AlreadyCancelled, cancelled)
    );
    assert_eq!(
        cancel(&mut engine, T, ALICE, Target::ReserveKey(1), 3),
        with(ResultCode::AlreadyCancelled, cancelled)
    );
    assert_eq!(
        cancel(&mut engine, T, ALICE, target, 2),
        Reply {
            result: ResultCode::Duplicate,
            original: ResultCode::Ok,
            body: ReplyBody::Reservation(cancelled),
        }
    );
    assert_eq!(engine.state_hash(), hash);
    assert_eq!(stock(&mut engine, T, SKU), (10, 10, 0, 0));
    assert_eq!(funds(&mut engine, T, ALICE), (100, 0, 0));
}

#[test]
fn cancel_of_a_confirmed_hold_is_already_confirmed() {
    let mut engine = setup();
    let view = hold(&mut engine, T, paid(2, 1));
    let target = Target::Reservation(view.reservation);
    assert_eq!(confirm(&mut engine, T, ALICE, target, 2).result, ResultCode::Ok);
    let confirmed = in_state(view, ReservationState::Confirmed);
    assert_eq!(
        cancel(&mut engine, T, ALICE, target, 3),
        with(ResultCode::AlreadyConfirmed, confirmed)
    );
    assert_eq!(
        cancel(&mut engine, T, ALICE, Target::ReserveKey(1), 3),
        with(ResultCode::AlreadyConfirmed, confirmed)
    );
    assert_eq!(stock(&mut engine, T, SKU), (10, 8, 0, 2));
    assert_eq!(funds(&mut engine, T, ALICE), (80, 0, 20));
}

// ---------------------------------------------------------------------------------------
// UNKNOWN_RESERVATION and BAD_REQUEST
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_reservation_for_bogus_ids() {
    let mut engine = setup();
    let first = hold(&mut engine, T, rsv(ALICE, 1, 1)).reservation;
    let second = hold(&mut engine, T, rsv(ALICE, 1, 2)).reservation;
    // Only these two ids were ever issued: any other non-zero id names nothing.
    let parts = ReservationIdParts::parse(first);
    let id = |generation: u32, shard: u32, slot: u32| {
        ReservationIdParts { generation, shard, slot }.id()
    };
    let other_slot = parts.slot.max(ReservationIdParts::parse(second).slot) + 1;
    let bogus = [
        ("wrong generation", id(parts.generation + 1, parts.shard, parts.slot)),
        ("generation 0", id(0, parts.shard, parts.slot.max(1))),
        ("another shard", id(parts.generation, parts.shard + 1, parts.slot)),
        ("slot out of range", id(parts.generation, parts.shard, (1 << 26) - 2)),
        ("unused slot", id(1, parts.shard, other_slot)),
        ("all ones", u64::MAX),
    ];
    let hash = engine.state_hash();
    for (name, bogus_id) in bogus {
        assert!(bogus_id != 0 && bogus_id != first && bogus_id != second, "{name}");
        let target = Target::Reservation(bogus_id);
        assert_eq!(
            confirm(&mut engine, T, ALICE, target, 3),
            bare(ResultCode::UnknownReservation),
            "{name}"
        );
        assert_eq!(
            cancel(&mut engine, T, ALICE, target, 3),
            bare(ResultCode::UnknownReservation),
            "{name}"
        );
        assert_eq!(
            query(&mut engine, T, ALICE, target),
            bare(ResultCode::UnknownReservation),
            "{name}"
        );
    }
    assert_eq!(engine.state_hash(), hash, "UNKNOWN_RESERVATION changes nothing");
    assert_eq!(stock(&mut engine, T, SKU), (10, 8, 2, 0));
}

#[test]
fn another_accounts_reservation_is_unknown() {
    let mut engine = setup();
    let view = hold(&mut engine, T, rsv(ALICE, 1, 1));
    let target = Target::Reservation(view.reservation);
    let hash = engine.state_hash();
    assert_eq!(confirm(&mut engine, T, BOB, target, 2), bare(ResultCode::UnknownReservation));
    assert_eq!(cancel(&mut engine, T, BOB, target, 2), bare(ResultCode::UnknownReservation));
    assert_eq!(query(&mut engine, T, BOB, target), bare(ResultCode::UnknownReservation));
    // Alice's reserve key means nothing in Bob's namespace.
    assert_eq!(
        confirm(&mut engine, T, BOB, Target::ReserveKey(1), 2),
        bare(ResultCode::UnknownReservation)
    );
    assert_eq!(
        query(&mut engine, T, BOB, Target::ReserveKey(1)),
        bare(ResultCode::UnknownReservation)
    );
    assert_eq!(engine.state_hash(), hash);
    assert_eq!(query(&mut engine, T, ALICE, target), with(ResultCode::Ok, view));
}

#[test]
fn confirm_by_an_unknown_reserve_key_is_unknown_reservation() {
    let mut engine = setup();
    let hash = engine.state_hash();
    assert_eq!(
        confirm(&mut engine, T, ALICE, Target::ReserveKey(77), 2),
        bare(ResultCode::UnknownReservation)
    );
    // A key recorded by another operation (the deposit) names no reservation.
    assert_eq!(
        confirm(&mut engine, T, ALICE, Target::ReserveKey(1_000), 2),
        bare(ResultCode::UnknownReservation)
    );
    assert_eq!(
        query(&mut engine, T, ALICE, Target::ReserveKey(77)),
        bare(ResultCode::UnknownReservation)
    );
    assert_eq!(engine.state_hash(), hash, "CONFIRM does not tombstone");
    // The key was not tombstoned: a RESERVE with it works.
    assert_eq!(hold(&mut engine, T, rsv(ALICE, 1, 77)).quantity, 1);
}

#[test]
fn cancel_by_a_used_non_reserve_key_is_unknown_reservation() {
    let mut engine = setup();
    let hash = engine.state_hash();
    // The deposit's key is recorded: not a cancel-before-reserve.
    assert_eq!(
        cancel(&mut engine, T, ALICE, Target::ReserveKey(1_000), 2),
        bare(ResultCode::UnknownReservation)
    );
    assert_eq!(engine.state_hash(), hash);
}

#[test]
fn bad_requests() {
    let mut engine = setup();
    let view = hold(&mut engine, T, rsv(ALICE, 1, 1));
    let id = Target::Reservation(view.reservation);
    let cases = [
        ("account 0", 0, id, 2),
        ("key 0", ALICE, id, 0),
        ("reservation 0", ALICE, Target::Reservation(0), 2),
        ("reserve key 0", ALICE, Target::ReserveKey(0), 2),
        ("own key as target", ALICE, Target::ReserveKey(2), 2),
        ("own key as target (the reserve's)", ALICE, Target::ReserveKey(1), 1),
    ];
    let hash = engine.state_hash();
    for (name, account, target, key) in cases {
        assert_eq!(
            confirm(&mut engine, T, account, target, key),
            bare(ResultCode::BadRequest),
            "{name}"
        );
        assert_eq!(
            cancel(&mut engine, T, account, target, key),
            bare(ResultCode::BadRequest),
            "{name}"
        );
    }
    assert_eq!(query(&mut engine, T, 0, id), bare(ResultCode::BadRequest));
    assert_eq!(query(&mut engine, T, ALICE, Target::Reservation(0)), bare(ResultCode::BadRequest));
    assert_eq!(query(&mut engine, T, ALICE, Target::ReserveKey(0)), bare(ResultCode::BadRequest));
    assert_eq!(engine.state_hash(), hash, "BAD_REQUEST changes nothing");
    // The hold is untouched and the keys are free.
    assert_eq!(confirm(&mut engine, T, ALICE, id, 2).result, ResultCode::Ok);
}

// ---------------------------------------------------------------------------------------
// Cancel before reserve (tombstones)
// ---------------------------------------------------------------------------------------

#[test]
fn cancel_before_reserve_tombstones_the_reserve_key() {
    let mut engine = setup();
    let keys = engine.retained_keys();
    // The CANCEL arrives first: an empty rollback.
    assert_eq!(cancel(&mut engine, T, ALICE, Target::ReserveKey(50), 51), bare(ResultCode::Ok));
    assert_eq!(engine.retained_keys(), keys + 2, "the tombstone and the cancel's key");
    assert_eq!(stock(&mut engine, T, SKU), (10, 10, 0, 0));
    // The late RESERVE, and its retry, are refused.
    let late = paid(1, 50);
    assert_eq!(reserve(&mut engine, T + 1, late), bare(ResultCode::AlreadyCancelled));
    assert_eq!(reserve(&mut engine, T + 2, late), bare(ResultCode::AlreadyCancelled));
    // Whatever its parameters.
    assert_eq!(reserve(&mut engine, T + 2, rsv(ALICE, 3, 50)), bare(ResultCode::AlreadyCancelled));
    // CONFIRM and QUERY by that key.
    assert_eq!(
        confirm(&mut engine, T + 2, ALICE, Target::ReserveKey(50), 52),
        bare(ResultCode::AlreadyCancelled)
    );
    assert_eq!(
        query(&mut engine, T + 2, ALICE, Target::ReserveKey(50)),
        bare(ResultCode::AlreadyCancelled)
    );
    assert_eq!(engine.retained_keys(), keys + 2);
    assert_eq!(stock(&mut engine, T + 2, SKU), (10, 10, 0, 0));
    assert_eq!(funds(&mut engine, T + 2, ALICE), (100, 0, 0));
    assert_eq!(engine.live_reservations(), 0);
    // The cancel's retry is a DUPLICATE of the empty rollback (no body).
    assert_eq!(
        cancel(&mut engine, T + 2, ALICE, Target::ReserveKey(50), 51),
        Reply { result: ResultCode::Duplicate, original: ResultCode::Ok, body: ReplyBody::None }
    );
    // A second cancel with a new key is another empty rollback, recorded.
    assert_eq!(cancel(&mut engine, T + 2, ALICE, Target::ReserveKey(50), 53), bare(ResultCode::Ok));
    assert_eq!(engine.retained_keys(), keys + 3);
    // The tombstone is a recorded key: other operations with it are KEY_REUSED.
    assert_eq!(deposit(&mut engine, T + 2, ALICE, 1, 50), bare(ResultCode::KeyReused));
    // The cancel's key is not a reserve key.
    assert_eq!(reserve(&mut engine, T + 2, rsv(ALICE, 1, 51)), bare(ResultCode::KeyReused));
    // Other accounts are not affected by Alice's tombstone.
    assert_eq!(hold(&mut engine, T + 2, rsv(BOB, 1, 50)).account, BOB);
}

#[test]
fn cancel_after_a_rejected_reserve_tombstones_its_key() {
    let mut engine = setup();
    // Alice's RESERVE is refused (6 is over the limit of 5).
    assert_eq!(reserve(&mut engine, T, paid(6, 60)), bare(ResultCode::LimitExceeded));
    // Nothing was recorded, so a CANCEL by that key is a cancel-before-reserve.
    assert_eq!(cancel(&mut engine, T, ALICE, Target::ReserveKey(60), 61), bare(ResultCode::Ok));
    assert_eq!(reserve(&mut engine, T, paid(1, 60)), bare(ResultCode::AlreadyCancelled));
    assert_eq!(stock(&mut engine, T, SKU), (10, 10, 0, 0));
}

// ---------------------------------------------------------------------------------------
// Expiry
// ---------------------------------------------------------------------------------------

#[test]
fn expiry_exactly_at_the_deadline() {
    let mut engine = setup();
    let view = hold(&mut engine, T, Reserve { hold_ms: 5_000, ..paid(3, 1) });
    let deadline = T + 5_000;
    assert_eq!(view.deadline_ms, deadline);
    let target = Target::Reservation(view.reservation);
    // One millisecond before: still held.
    assert_eq!(query(&mut engine, deadline - 1, ALICE, target), with(ResultCode::Ok, view));
    assert_eq!(stock(&mut engine, deadline - 1, SKU), (10, 7, 3, 0));
    assert_eq!(funds(&mut engine, deadline - 1, ALICE), (70, 30, 0));
    assert_eq!(engine.live_reservations(), 1);
    // At the deadline: expired, units, funds and limit returned.
    let expired = in_state(view, ReservationState::Expired);
    assert_eq!(query(&mut engine, deadline, ALICE, target), with(ResultCode::Ok, expired));
    assert_eq!(stock(&mut engine, deadline, SKU), (10, 10, 0, 0));
    assert_eq!(funds(&mut engine, deadline, ALICE), (100, 0, 0));
    assert_eq!(engine.live_reservations(), 0);
    assert_eq!(
        confirm(&mut engine, deadline, ALICE, target, 2),
        with(ResultCode::Expired, expired)
    );
    assert_eq!(hold(&mut engine, deadline, rsv(ALICE, 5, 3)).quantity, 5);
    assert_eq!(engine.counters().holds_expired, 1);
}

#[test]
fn confirm_one_millisecond_before_the_deadline_succeeds() {
    let mut engine = setup();
    let view = hold(&mut engine, T, Reserve { hold_ms: 5_000, ..paid(1, 1) });
    let reply = confirm(&mut engine, T + 4_999, ALICE, Target::ReserveKey(1), 2);
    assert_eq!(reply, with(ResultCode::Ok, in_state(view, ReservationState::Confirmed)));
    tick(&mut engine, T + 5_000);
    assert_eq!(stock(&mut engine, T + 5_000, SKU), (10, 9, 0, 1));
    assert_eq!(funds(&mut engine, T + 5_000, ALICE), (90, 0, 10));
    assert_eq!(engine.counters().holds_expired, 0);
}

#[test]
fn expiry_via_tick_without_a_request() {
    let mut engine = setup();
    let first = hold(&mut engine, T, Reserve { hold_ms: 2_000, ..paid(2, 1) });
    let second = hold(&mut engine, T, Reserve { hold_ms: 3_000, ..paid(1, 2) });
    tick(&mut engine, T + 1_999);
    assert_eq!(engine.live_reservations(), 2);
    tick(&mut engine, T + 2_000);
    assert_eq!(engine.live_reservations(), 1);
    assert_eq!(engine.counters().holds_expired, 1);
    assert_eq!(engine.now_ms(), T + 2_000);
    // A hold expiry answers nobody: no event.
    assert_eq!(engine.drain_events().count(), 0);
    tick(&mut engine, T + 10_000);
    assert_eq!(engine.live_reservations(), 0);
    assert_eq!(engine.counters().holds_expired, 2);
    assert_eq!(engine.drain_events().count(), 0);
    let now = T + 10_000;
    assert_eq!(
        query(&mut engine, now, ALICE, Target::Reservation(first.reservation)),
        with(ResultCode::Ok, in_state(first, ReservationState::Expired))
    );
    assert_eq!(
        query(&mut engine, now, ALICE, Target::ReserveKey(2)),
        with(ResultCode::Ok, in_state(second, ReservationState::Expired))
    );
    assert_eq!(stock(&mut engine, now, SKU), (10, 10, 0, 0));
    assert_eq!(funds(&mut engine, now, ALICE), (100, 0, 0));
}
