//! Engine RESERVE: holds, BUY, PAY, per-user limits, the sale window, the hold-time default
//! chain, request-key replays and the order of the checks (docs/SEMANTICS.md, RESERVE).

use rush_engine::ReservationIdParts;
use rush_engine::{
    AccountView, Config, Engine, Reply, ReplyBody, Request, ReservationState, ReservationView,
    Reserve, ResultCode, SkuSpec, Target, RESERVE_FLAG_BUY, RESERVE_FLAG_PAY,
};
use rush_suite::engine::{
    account_view, adjust, bare, cancel, confirm, deposit, engine, fund, funds, put_sku, query,
    reservation, reserve, run, spec, stock, tick, withdraw,
};
// This file names the SKU of every RESERVE: `rsv(account, sku, quantity, key)`.
use rush_suite::engine::reserve_of as rsv;

const SKU: u64 = 7;
const OTHER_SKU: u64 = 8;
const ALICE: u64 = 11;
const BOB: u64 = 12;
const CAROL: u64 = 13;
/// The clock of most scenarios.
const T: u64 = 1_000_000;
/// `Config::small().hold_ms_default`.
const HOLD_DEFAULT: u64 = 60_000;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A SKU with 10 units at price 10.
fn engine_with_sku() -> Engine {
    let mut engine = engine();
    put_sku(&mut engine, T, spec(SKU, 10, 10));
    engine
}

// ---------------------------------------------------------------------------------------
// OK, SOLD_OUT, quantity bounds
// ---------------------------------------------------------------------------------------

#[test]
fn reserve_holds_units() {
    let mut engine = engine_with_sku();
    let reply = reserve(&mut engine, T, rsv(ALICE, SKU, 3, 1));
    assert_eq!(reply.result, ResultCode::Ok);
    assert_eq!(reply.original, ResultCode::Ok);
    let view = reservation(&reply);
    assert_ne!(view.reservation, 0);
    let parts = ReservationIdParts::parse(view.reservation);
    assert!(parts.generation >= 1, "generation {}", parts.generation);
    assert_eq!(parts.shard, 0, "one shard: shard 0");
    assert_eq!(
        view,
        ReservationView {
            reservation: view.reservation,
            account: ALICE,
            sku: SKU,
            quantity: 3,
            flags: 0,
            amount: 0,
            deadline_ms: T + HOLD_DEFAULT,
            state: ReservationState::Held,
        }
    );
    assert_eq!(stock(&mut engine, T, SKU), (10, 7, 3, 0));
    assert_eq!(engine.live_reservations(), 1);
    assert_eq!(engine.retained_keys(), 1);
    assert_eq!(engine.drain_events().count(), 0);
    let queried = query(&mut engine, T, ALICE, Target::Reservation(view.reservation));
    assert_eq!(queried, Reply::with_body(ResultCode::Ok, ReplyBody::Reservation(view)));
}

#[test]
fn reserving_the_last_unit_then_sold_out() {
    let mut engine = engine();
    put_sku(&mut engine, T, spec(SKU, 3, 10));
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 2, 1)).result, ResultCode::Ok);
    // More than is left.
    assert_eq!(reserve(&mut engine, T, rsv(BOB, SKU, 2, 1)), bare(ResultCode::SoldOut));
    // Exactly the last unit.
    let last = reserve(&mut engine, T, rsv(BOB, SKU, 1, 1));
    assert_eq!(last.result, ResultCode::Ok);
    assert_eq!(reservation(&last).quantity, 1);
    assert_eq!(stock(&mut engine, T, SKU), (3, 0, 3, 0));
    let keys = engine.retained_keys();
    let hash = engine.state_hash();
    assert_eq!(reserve(&mut engine, T, rsv(CAROL, SKU, 1, 1)), bare(ResultCode::SoldOut));
    assert_eq!(engine.state_hash(), hash, "SOLD_OUT changes nothing");
    assert_eq!(engine.retained_keys(), keys);
    assert_eq!(engine.live_reservations(), 2);
}

#[test]
fn quantity_zero_and_above_quantity_max_are_bad_requests() {
    let mut engine = engine();
    put_sku(&mut engine, T, spec(SKU, 5_000, 1));
    let quantity_max = Config::small().quantity_max;
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 0, 1)), bare(ResultCode::BadRequest));
    assert_eq!(
        reserve(&mut engine, T, rsv(ALICE, SKU, quantity_max + 1, 1)),
        bare(ResultCode::BadRequest)
    );
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, u32::MAX, 1)), bare(ResultCode::BadRequest));
    assert_eq!(engine.retained_keys(), 0);
    // quantity_max itself is allowed.
    let reply = reserve(&mut engine, T, rsv(ALICE, SKU, quantity_max, 1));
    assert_eq!(reply.result, ResultCode::Ok);
    assert_eq!(reservation(&reply).quantity, quantity_max);
    assert_eq!(stock(&mut engine, T, SKU), (5_000, 4_000, 1_000, 0));
}

#[test]
fn every_bad_request_field() {
    let mut engine = engine_with_sku();
    let config = Config::small();
    let good = rsv(ALICE, SKU, 1, 1);
    let cases = [
        ("account 0", Reserve { account: 0, ..good }),
        ("sku 0", Reserve { sku: 0, ..good }),
        ("key 0", Reserve { key: 0, ..good }),
        ("quantity 0", Reserve { quantity: 0, ..good }),
        ("quantity above max", Reserve { quantity: config.quantity_max + 1, ..good }),
        ("unknown flag bit 2", Reserve { flags: 1 << 2, ..good }),
        ("unknown flag bit 31", Reserve { flags: RESERVE_FLAG_PAY | 1 << 31, ..good }),
        ("hold above max", Reserve { hold_ms: config.hold_ms_max + 1, ..good }),
        ("wait above max", Reserve { wait_ms: config.wait_ms_max + 1, ..good }),
    ];
    let hash = engine.state_hash();
    for (name, request) in cases {
        assert_eq!(reserve(&mut engine, T, request), bare(ResultCode::BadRequest), "{name}");
    }
    assert_eq!(engine.state_hash(), hash, "BAD_REQUEST changes nothing");
    // The maxima themselves are allowed.
    let at_max = Reserve { hold_ms: config.hold_ms_max, wait_ms: config.wait_ms_max, ..good };
    let reply = reserve(&mut engine, T, at_max);
    assert_eq!(reply.result, ResultCode::Ok);
    assert_eq!(reservation(&reply).deadline_ms, T + u64::from(config.hold_ms_max));
}

#[test]
fn bad_request_comes_before_every_other_check() {
    let mut engine = engine_with_sku();
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 1, 1)).result, ResultCode::Ok);
    // A recorded key: a bad field still answers BAD_REQUEST, not DUPLICATE / KEY_REUSED.
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 0, 1)), bare(ResultCode::BadRequest));
    assert_eq!(
        reserve(&mut engine, T, Reserve { flags: 1 << 5, ..rsv(ALICE, SKU, 1, 1) }),
        bare(ResultCode::BadRequest)
    );
    // An unknown SKU with a bad field.
    assert_eq!(
        reserve(&mut engine, T, rsv(ALICE, 999, Config::small().quantity_max + 1, 2)),
        bare(ResultCode::BadRequest)
    );
}

// ---------------------------------------------------------------------------------------
// LIMIT_EXCEEDED
// ---------------------------------------------------------------------------------------

fn engine_with_limited_sku(limit: u32) -> Engine {
    let mut engine = engine();
    put_sku(&mut engine, T, SkuSpec { per_user_limit: limit, ..spec(SKU, 20, 10) });
    engine
}

#[test]
fn limit_exceeded_for_a_quantity_over_the_limit() {
    let mut engine = engine_with_limited_sku(3);
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 4, 1)), bare(ResultCode::LimitExceeded));
    assert_eq!(engine.retained_keys(), 0);
    let reply = reserve(&mut engine, T, rsv(ALICE, SKU, 3, 1));
    assert_eq!(reply.result, ResultCode::Ok, "exactly the limit is allowed");
    assert_eq!(stock(&mut engine, T, SKU), (20, 17, 3, 0));
}

#[test]
fn limit_reached_across_several_reserves() {
    let mut engine = engine_with_limited_sku(5);
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 2, 1)).result, ResultCode::Ok);
    // 2 held + 4 > 5.
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 4, 2)), bare(ResultCode::LimitExceeded));
    // A BUY counts as sold: 2 held + 1 sold.
    let buy = reserve(&mut engine, T, Reserve { flags: RESERVE_FLAG_BUY, ..rsv(ALICE, SKU, 1, 3) });
    assert_eq!(buy.result, ResultCode::Ok);
    assert_eq!(reservation(&buy).state, ReservationState::Confirmed);
    // A confirmed hold keeps counting.
    let held = reserve(&mut engine, T, rsv(ALICE, SKU, 1, 4));
    assert_eq!(held.result, ResultCode::Ok);
    let id = reservation(&held).reservation;
    assert_eq!(confirm(&mut engine, T, ALICE, Target::Reservation(id), 5).result, ResultCode::Ok);
    // 2 held + 1 bought + 1 confirmed = 4: one more fits, two do not.
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 2, 6)), bare(ResultCode::LimitExceeded));
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 1, 6)).result, ResultCode::Ok);
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 1, 7)), bare(ResultCode::LimitExceeded));
    // Other accounts have their own count.
    assert_eq!(reserve(&mut engine, T, rsv(BOB, SKU, 5, 1)).result, ResultCode::Ok);
    // Unlimited SKUs are not counted.
    put_sku(&mut engine, T, spec(OTHER_SKU, 20, 10));
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, OTHER_SKU, 20, 8)).result, ResultCode::Ok);
    assert_eq!(stock(&mut engine, T, SKU), (20, 10, 8, 2));
}

#[test]
fn limit_freed_by_cancel() {
    let mut engine = engine_with_limited_sku(3);
    let first = reserve(&mut engine, T, rsv(ALICE, SKU, 2, 1));
    assert_eq!(first.result, ResultCode::Ok);
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 1, 2)).result, ResultCode::Ok);
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 2, 3)), bare(ResultCode::LimitExceeded));
    let id = reservation(&first).reservation;
    assert_eq!(cancel(&mut engine, T, ALICE, Target::Reservation(id), 4).result, ResultCode::Ok);
    let again = reserve(&mut engine, T, rsv(ALICE, SKU, 2, 3));
    assert_eq!(again.result, ResultCode::Ok);
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 1, 5)), bare(ResultCode::LimitExceeded));
    assert_eq!(stock(&mut engine, T, SKU), (20, 17, 3, 0));
}

#[test]
fn limit_freed_by_expiry() {
    let mut engine = engine_with_limited_sku(2);
    let hold = reserve(&mut engine, T, Reserve { hold_ms: 1_000, ..rsv(ALICE, SKU, 2, 1) });
    assert_eq!(hold.result, ResultCode::Ok);
    assert_eq!(reservation(&hold).deadline_ms, T + 1_000);
    assert_eq!(
        reserve(&mut engine, T + 999, rsv(ALICE, SKU, 1, 2)),
        bare(ResultCode::LimitExceeded)
    );
    let again = reserve(&mut engine, T + 1_000, rsv(ALICE, SKU, 2, 2));
    assert_eq!(again.result, ResultCode::Ok);
    assert_eq!(stock(&mut engine, T + 1_000, SKU), (20, 18, 2, 0));
}

// ---------------------------------------------------------------------------------------
// PAY, BUY, INSUFFICIENT_FUNDS, OVERFLOW
// ---------------------------------------------------------------------------------------

#[test]
fn pay_without_a_wallet_is_insufficient_funds() {
    let mut engine = engine_with_sku();
    let request = Reserve { flags: RESERVE_FLAG_PAY, ..rsv(ALICE, SKU, 1, 1) };
    assert_eq!(reserve(&mut engine, T, request), bare(ResultCode::InsufficientFunds));
    assert_eq!(
        account_view(&mut engine, T, ALICE),
        AccountView { account: ALICE, ..Default::default() }
    );
    assert_eq!(stock(&mut engine, T, SKU), (10, 10, 0, 0));
    assert_eq!(engine.retained_keys(), 0);
}

#[test]
fn pay_with_too_little_is_insufficient_funds() {
    let mut engine = engine_with_sku();
    fund(&mut engine, T, ALICE, 29, 100);
    let pay = |quantity, key| Reserve { flags: RESERVE_FLAG_PAY, ..rsv(ALICE, SKU, quantity, key) };
    assert_eq!(reserve(&mut engine, T, pay(3, 1)), bare(ResultCode::InsufficientFunds));
    assert_eq!(funds(&mut engine, T, ALICE), (29, 0, 0));
    // Exactly the balance is enough.
    assert_eq!(reserve(&mut engine, T, pay(2, 1)).result, ResultCode::Ok);
    assert_eq!(funds(&mut engine, T, ALICE), (9, 20, 0));
    // Held funds are not available.
    assert_eq!(reserve(&mut engine, T, pay(1, 2)), bare(ResultCode::InsufficientFunds));
    // Without PAY no funds are needed.
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 1, 2)).result, ResultCode::Ok);
    assert_eq!(funds(&mut engine, T, ALICE), (9, 20, 0));
}

#[test]
fn pay_holds_funds() {
    let mut engine = engine_with_sku();
    fund(&mut engine, T, ALICE, 100, 100);
    let reply =
        reserve(&mut engine, T, Reserve { flags: RESERVE_FLAG_PAY, ..rsv(ALICE, SKU, 3, 1) });
    assert_eq!(reply.result, ResultCode::Ok);
    let view = reservation(&reply);
    assert_eq!(
        view,
        ReservationView {
            reservation: view.reservation,
            account: ALICE,
            sku: SKU,
            quantity: 3,
            flags: RESERVE_FLAG_PAY,
            amount: 30,
            deadline_ms: T + HOLD_DEFAULT,
            state: ReservationState::Held,
        }
    );
    assert_eq!(
        account_view(&mut engine, T, ALICE),
        AccountView {
            account: ALICE,
            available: 70,
            held: 30,
            spent: 0,
            deposited: 100,
            withdrawn: 0
        }
    );
    assert_eq!(stock(&mut engine, T, SKU), (10, 7, 3, 0));
}

#[test]
fn pay_at_price_zero_needs_no_wallet() {
    let mut engine = engine();
    put_sku(&mut engine, T, spec(SKU, 10, 0));
    let reply =
        reserve(&mut engine, T, Reserve { flags: RESERVE_FLAG_PAY, ..rsv(ALICE, SKU, 2, 1) });
    assert_eq!(reply.result, ResultCode::Ok);
    assert_eq!(reservation(&reply).amount, 0);
    assert_eq!(
        account_view(&mut engine, T, ALICE),
        AccountView { account: ALICE, ..Default::default() }
    );
}

#[test]
fn buy_is_confirmed_at_once_and_spends_the_funds() {
    let mut engine = engine_with_sku();
    fund(&mut engine, T, ALICE, 100, 100);
    let flags = RESERVE_FLAG_PAY | RESERVE_FLAG_BUY;
    let reply = reserve(&mut engine, T, Reserve { flags, ..rsv(ALICE, SKU, 2, 1) });
    assert_eq!(reply.result, ResultCode::Ok);
    let view = reservation(&reply);
    assert_eq!(
        view,
        ReservationView {
            reservation: view.reservation,
            account: ALICE,
            sku: SKU,
            quantity: 2,
            flags,
            amount: 20,
            deadline_ms: T,
            state: ReservationState::Confirmed,
        }
    );
    assert_eq!(stock(&mut engine, T, SKU), (10, 8, 0, 2));
    assert_eq!(
        account_view(&mut engine, T, ALICE),
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
    // Nothing expires later.
    tick(&mut engine, T + 10 * HOLD_DEFAULT);
    assert_eq!(stock(&mut engine, T + 10 * HOLD_DEFAULT, SKU), (10, 8, 0, 2));
    // A confirmed sale cannot be confirmed or cancelled again.
    let target = Target::Reservation(view.reservation);
    let later = T + 10 * HOLD_DEFAULT;
    let confirmed = view;
    assert_eq!(
        confirm(&mut engine, later, ALICE, target, 2),
        Reply::with_body(ResultCode::AlreadyConfirmed, ReplyBody::Reservation(confirmed))
    );
    assert_eq!(
        cancel(&mut engine, later, ALICE, target, 3),
        Reply::with_body(ResultCode::AlreadyConfirmed, ReplyBody::Reservation(confirmed))
    );
}

#[test]
fn buy_without_pay_sells_without_funds() {
    let mut engine = engine_with_sku();
    let reply =
        reserve(&mut engine, T, Reserve { flags: RESERVE_FLAG_BUY, ..rsv(ALICE, SKU, 4, 1) });
    assert_eq!(reply.result, ResultCode::Ok);
    let view = reservation(&reply);
    assert_eq!((view.state, view.amount, view.deadline_ms), (ReservationState::Confirmed, 0, T));
    assert_eq!(stock(&mut engine, T, SKU), (10, 6, 0, 4));
    assert_eq!(
        account_view(&mut engine, T, ALICE),
        AccountView { account: ALICE, ..Default::default() }
    );
}

#[test]
fn buy_pay_with_insufficient_funds() {
    let mut engine = engine_with_sku();
    fund(&mut engine, T, ALICE, 19, 100);
    let hash = engine.state_hash();
    let request = Reserve { flags: RESERVE_FLAG_PAY | RESERVE_FLAG_BUY, ..rsv(ALICE, SKU, 2, 1) };
    assert_eq!(reserve(&mut engine, T, request), bare(ResultCode::InsufficientFunds));
    assert_eq!(engine.state_hash(), hash);
    assert_eq!(funds(&mut engine, T, ALICE), (19, 0, 0));
    assert_eq!(stock(&mut engine, T, SKU), (10, 10, 0, 0));
}

#[test]
fn overflow_of_price_times_quantity() {
    let mut engine = engine();
    let price = u64::MAX / 2 + 1;
    put_sku(&mut engine, T, spec(SKU, 10, price));
    fund(&mut engine, T, ALICE, u64::MAX, 100);
    let pay = |quantity, key| Reserve { flags: RESERVE_FLAG_PAY, ..rsv(ALICE, SKU, quantity, key) };
    assert_eq!(reserve(&mut engine, T, pay(2, 1)), bare(ResultCode::Overflow));
    assert_eq!(
        reserve(
            &mut engine,
            T,
            Reserve { flags: RESERVE_FLAG_PAY | RESERVE_FLAG_BUY, ..pay(3, 1) }
        ),
        bare(ResultCode::Overflow)
    );
    // OVERFLOW comes before INSUFFICIENT_FUNDS (Bob has no wallet).
    assert_eq!(
        reserve(&mut engine, T, Reserve { account: BOB, ..pay(2, 1) }),
        bare(ResultCode::Overflow)
    );
    assert_eq!(engine.retained_keys(), 1, "only the deposit key");
    // One unit fits; without PAY the amount is 0 and there is nothing to overflow.
    let one = reserve(&mut engine, T, pay(1, 1));
    assert_eq!(one.result, ResultCode::Ok);
    assert_eq!(reservation(&one).amount, price);
    let unpaid = reserve(&mut engine, T, rsv(ALICE, SKU, 2, 2));
    assert_eq!(unpaid.result, ResultCode::Ok);
    assert_eq!(reservation(&unpaid).amount, 0);
    assert_eq!(funds(&mut engine, T, ALICE), (u64::MAX - price, price, 0));
}

// ---------------------------------------------------------------------------------------
// UNKNOWN_SKU, PAUSED, the sale window
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_sku() {
    let mut engine = engine_with_sku();
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, 999, 1, 1)), bare(ResultCode::UnknownSku));
    assert_eq!(engine.retained_keys(), 0);
    assert_eq!(engine.live_reservations(), 0);
}

#[test]
fn paused_sku_refuses_reserves_until_resumed() {
    let mut engine = engine_with_sku();
    assert_eq!(run(&mut engine, T, Request::Pause { sku: SKU }).result, ResultCode::Ok);
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 1, 1)), bare(ResultCode::Paused));
    assert_eq!(
        reserve(&mut engine, T, Reserve { flags: RESERVE_FLAG_BUY, ..rsv(ALICE, SKU, 1, 1) }),
        bare(ResultCode::Paused)
    );
    assert_eq!(engine.retained_keys(), 0);
    assert_eq!(run(&mut engine, T, Request::Resume { sku: SKU }).result, ResultCode::Ok);
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 1, 1)).result, ResultCode::Ok);
}

#[test]
fn paused_comes_before_the_window_and_the_window_before_the_limit() {
    let mut engine = engine();
    put_sku(
        &mut engine,
        T,
        SkuSpec { per_user_limit: 1, start_ms: T + 100, end_ms: T + 200, ..spec(SKU, 10, 10) },
    );
    run(&mut engine, T, Request::Pause { sku: SKU });
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 1, 1)), bare(ResultCode::Paused));
    run(&mut engine, T, Request::Resume { sku: SKU });
    // Over the limit, PAY without a wallet, but not started.
    let request = Reserve { flags: RESERVE_FLAG_PAY, ..rsv(ALICE, SKU, 5, 1) };
    assert_eq!(reserve(&mut engine, T, request), bare(ResultCode::NotStarted));
    assert_eq!(reserve(&mut engine, T + 200, request), bare(ResultCode::Ended));
}

#[test]
fn checks_in_order_limit_funds_stock() {
    let mut engine = engine();
    put_sku(&mut engine, T, SkuSpec { per_user_limit: 2, ..spec(SKU, 0, 10) });
    // Over the limit, no wallet, no stock: LIMIT_EXCEEDED.
    let request = Reserve { flags: RESERVE_FLAG_PAY, ..rsv(ALICE, SKU, 3, 1) };
    assert_eq!(reserve(&mut engine, T, request), bare(ResultCode::LimitExceeded));
    // Within the limit, no wallet, no stock: INSUFFICIENT_FUNDS.
    let request = Reserve { flags: RESERVE_FLAG_PAY, ..rsv(ALICE, SKU, 2, 1) };
    assert_eq!(reserve(&mut engine, T, request), bare(ResultCode::InsufficientFunds));
    // Funded, no stock: SOLD_OUT.
    fund(&mut engine, T, ALICE, 20, 100);
    assert_eq!(reserve(&mut engine, T, request), bare(ResultCode::SoldOut));
}

#[test]
fn window_boundaries() {
    let start = T + 1_000;
    let end = T + 5_000;
    let mut engine = engine();
    put_sku(&mut engine, T, SkuSpec { start_ms: start, end_ms: end, ..spec(SKU, 10, 10) });
    assert_eq!(
        reserve(&mut engine, start - 1, rsv(ALICE, SKU, 1, 1)),
        bare(ResultCode::NotStarted)
    );
    let first = reserve(&mut engine, start, rsv(ALICE, SKU, 1, 1));
    assert_eq!(first.result, ResultCode::Ok);
    assert_eq!(reservation(&first).deadline_ms, start + HOLD_DEFAULT);
    let last = reserve(&mut engine, end - 1, rsv(ALICE, SKU, 1, 2));
    assert_eq!(last.result, ResultCode::Ok);
    assert_eq!(reserve(&mut engine, end, rsv(ALICE, SKU, 1, 3)), bare(ResultCode::Ended));
    // Holds taken inside the window may still be confirmed after it closes.
    let id = reservation(&last).reservation;
    assert_eq!(
        confirm(&mut engine, end + 10, ALICE, Target::Reservation(id), 4).result,
        ResultCode::Ok
    );
    assert_eq!(reserve(&mut engine, end + 1_000_000, rsv(BOB, SKU, 1, 1)), bare(ResultCode::Ended));
    assert_eq!(stock(&mut engine, end + 1_000_000, SKU), (10, 9, 0, 1));
}

#[test]
fn end_ms_zero_never_ends() {
    let mut engine = engine();
    put_sku(&mut engine, T, SkuSpec { start_ms: T + 10, end_ms: 0, ..spec(SKU, 10, 10) });
    assert_eq!(reserve(&mut engine, T + 9, rsv(ALICE, SKU, 1, 1)), bare(ResultCode::NotStarted));
    assert_eq!(reserve(&mut engine, T + 10, rsv(ALICE, SKU, 1, 1)).result, ResultCode::Ok);
    let far = 1_u64 << 50;
    assert_eq!(reserve(&mut engine, far, rsv(ALICE, SKU, 1, 2)).result, ResultCode::Ok);
}

// ---------------------------------------------------------------------------------------
// Hold time
// ---------------------------------------------------------------------------------------

#[test]
fn hold_ms_default_chain() {
    let mut engine = engine();
    put_sku(&mut engine, T, spec(SKU, 10, 10)); // SKU hold 0: the config default
    put_sku(&mut engine, T, SkuSpec { hold_ms: 20_000, ..spec(OTHER_SKU, 10, 10) });
    let deadline = |reply: Reply| reservation(&reply).deadline_ms;
    // Request hold wins.
    let reply = reserve(&mut engine, T, Reserve { hold_ms: 5_000, ..rsv(ALICE, SKU, 1, 1) });
    assert_eq!(deadline(reply), T + 5_000);
    let reply = reserve(&mut engine, T, Reserve { hold_ms: 7_000, ..rsv(ALICE, OTHER_SKU, 1, 2) });
    assert_eq!(deadline(reply), T + 7_000);
    // Then the SKU's hold.
    let reply = reserve(&mut engine, T, rsv(ALICE, OTHER_SKU, 1, 3));
    assert_eq!(deadline(reply), T + 20_000);
    // Then the config default.
    let reply = reserve(&mut engine, T, rsv(ALICE, SKU, 1, 4));
    assert_eq!(deadline(reply), T + HOLD_DEFAULT);
    // A hold longer than the SKU's default is allowed (up to hold_ms_max).
    let reply = reserve(&mut engine, T, Reserve { hold_ms: 30_000, ..rsv(ALICE, OTHER_SKU, 1, 5) });
    assert_eq!(deadline(reply), T + 30_000);
    // The deadlines are the expiry times.
    tick(&mut engine, T + 19_999);
    assert_eq!(stock(&mut engine, T + 19_999, OTHER_SKU), (10, 8, 2, 0));
    tick(&mut engine, T + 20_000);
    assert_eq!(stock(&mut engine, T + 20_000, OTHER_SKU), (10, 9, 1, 0));
    assert_eq!(stock(&mut engine, T + 20_000, SKU), (10, 9, 1, 0));
}

// ---------------------------------------------------------------------------------------
// Request keys
// ---------------------------------------------------------------------------------------

#[test]
fn duplicate_replays_the_original_code_with_the_current_body() {
    let mut engine = engine_with_sku();
    fund(&mut engine, T, ALICE, 100, 100);
    let request = Reserve { flags: RESERVE_FLAG_PAY, ..rsv(ALICE, SKU, 2, 1) };
    let first = reserve(&mut engine, T, request);
    assert_eq!(first.result, ResultCode::Ok);
    let view = reservation(&first);
    let keys = engine.retained_keys();
    let hash = engine.state_hash();
    let replay = reserve(&mut engine, T, request);
    assert_eq!(
        replay,
        Reply {
            result: ResultCode::Duplicate,
            original: ResultCode::Ok,
            body: ReplyBody::Reservation(view),
        }
    );
    assert_eq!(engine.state_hash(), hash, "DUPLICATE changes nothing");
    assert_eq!(engine.retained_keys(), keys);
    assert_eq!(stock(&mut engine, T, SKU), (10, 8, 2, 0));
    assert_eq!(funds(&mut engine, T, ALICE), (80, 20, 0));
    // After the hold is confirmed, the replay shows it confirmed.
    let id = view.reservation;
    assert_eq!(
        confirm(&mut engine, T + 5, ALICE, Target::Reservation(id), 2).result,
        ResultCode::Ok
    );
    let confirmed = ReservationView { state: ReservationState::Confirmed, ..view };
    assert_eq!(
        reserve(&mut engine, T + 6, request),
        Reply {
            result: ResultCode::Duplicate,
            original: ResultCode::Ok,
            body: ReplyBody::Reservation(confirmed),
        }
    );
    // The key is checked before the SKU: a replay on a paused SKU is still a DUPLICATE.
    run(&mut engine, T + 7, Request::Pause { sku: SKU });
    assert_eq!(reserve(&mut engine, T + 7, request).result, ResultCode::Duplicate);
    assert_eq!(stock(&mut engine, T + 7, SKU), (10, 8, 0, 2));
    assert_eq!(funds(&mut engine, T + 7, ALICE), (80, 0, 20));
}

#[test]
fn duplicate_of_an_expired_hold_shows_it_expired() {
    let mut engine = engine_with_sku();
    let request = Reserve { hold_ms: 500, ..rsv(ALICE, SKU, 1, 1) };
    let view = reservation(&reserve(&mut engine, T, request));
    let replay = reserve(&mut engine, T + 500, request);
    assert_eq!(
        replay,
        Reply {
            result: ResultCode::Duplicate,
            original: ResultCode::Ok,
            body: ReplyBody::Reservation(ReservationView {
                state: ReservationState::Expired,
                ..view
            }),
        }
    );
    // The replay took nothing.
    assert_eq!(stock(&mut engine, T + 500, SKU), (10, 10, 0, 0));
}

#[test]
fn key_reused_for_different_parameters() {
    let mut engine = engine_with_sku();
    put_sku(&mut engine, T, spec(OTHER_SKU, 10, 10));
    fund(&mut engine, T, ALICE, 100, 100);
    let original = Reserve { hold_ms: 1_000, wait_ms: 2_000, ..rsv(ALICE, SKU, 2, 1) };
    assert_eq!(reserve(&mut engine, T, original).result, ResultCode::Ok);
    let hash = engine.state_hash();
    let cases = [
        ("quantity", Reserve { quantity: 3, ..original }),
        ("sku", Reserve { sku: OTHER_SKU, ..original }),
        ("flags", Reserve { flags: RESERVE_FLAG_PAY, ..original }),
        ("hold_ms", Reserve { hold_ms: 1_001, ..original }),
        ("wait_ms", Reserve { wait_ms: 0, ..original }),
    ];
    for (name, request) in cases {
        assert_eq!(reserve(&mut engine, T, request), bare(ResultCode::KeyReused), "{name}");
    }
    // KEY_REUSED wins over the business checks of the new parameters.
    assert_eq!(
        reserve(&mut engine, T, Reserve { sku: 999, ..original }),
        bare(ResultCode::KeyReused)
    );
    assert_eq!(engine.state_hash(), hash, "KEY_REUSED changes nothing");
    assert_eq!(stock(&mut engine, T, SKU), (10, 8, 2, 0));
    assert_eq!(stock(&mut engine, T, OTHER_SKU), (10, 10, 0, 0));
}

#[test]
fn key_reused_by_a_different_operation() {
    let mut engine = engine_with_sku();
    let hold = reserve(&mut engine, T, rsv(ALICE, SKU, 1, 1));
    let id = reservation(&hold).reservation;
    // The RESERVE's key used for other operations.
    let hash = engine.state_hash();
    assert_eq!(
        confirm(&mut engine, T, ALICE, Target::Reservation(id), 1),
        bare(ResultCode::KeyReused)
    );
    assert_eq!(
        cancel(&mut engine, T, ALICE, Target::Reservation(id), 1),
        bare(ResultCode::KeyReused)
    );
    assert_eq!(deposit(&mut engine, T, ALICE, 5, 1), bare(ResultCode::KeyReused));
    assert_eq!(withdraw(&mut engine, T, ALICE, 5, 1), bare(ResultCode::KeyReused));
    assert_eq!(engine.state_hash(), hash);
    // Another operation's key used for a RESERVE.
    fund(&mut engine, T, ALICE, 50, 2);
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 1, 2)), bare(ResultCode::KeyReused));
    assert_eq!(confirm(&mut engine, T, ALICE, Target::Reservation(id), 3).result, ResultCode::Ok);
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 1, 3)), bare(ResultCode::KeyReused));
    assert_eq!(stock(&mut engine, T, SKU), (10, 9, 0, 1));
    assert_eq!(funds(&mut engine, T, ALICE), (50, 0, 0));
}

#[test]
fn keys_are_per_account() {
    let mut engine = engine_with_sku();
    let alice = reserve(&mut engine, T, rsv(ALICE, SKU, 1, 1));
    let bob = reserve(&mut engine, T, rsv(BOB, SKU, 2, 1));
    assert_eq!(alice.result, ResultCode::Ok);
    assert_eq!(bob.result, ResultCode::Ok);
    assert_ne!(reservation(&alice).reservation, reservation(&bob).reservation);
    assert_eq!(engine.retained_keys(), 2);
    assert_eq!(stock(&mut engine, T, SKU), (10, 7, 3, 0));
}

#[test]
fn rejections_do_not_consume_the_key() {
    let mut engine = engine();
    put_sku(&mut engine, T, spec(SKU, 1, 10));
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, SKU, 1, 1)).result, ResultCode::Ok);
    // SOLD_OUT, then a restock, then the same key: evaluated afresh.
    let request = rsv(BOB, SKU, 1, 1);
    assert_eq!(reserve(&mut engine, T, request), bare(ResultCode::SoldOut));
    assert_eq!(engine.retained_keys(), 1);
    let restock = adjust(&mut engine, T, SKU, 1, 1);
    assert_eq!(restock.result, ResultCode::Ok);
    let retry = reserve(&mut engine, T, request);
    assert_eq!(retry.result, ResultCode::Ok);
    assert_eq!(retry.original, ResultCode::Ok);
    assert_eq!(reservation(&retry).account, BOB);
    assert_eq!(stock(&mut engine, T, SKU), (2, 0, 2, 0));

    // INSUFFICIENT_FUNDS, then a deposit, then the same key.
    put_sku(&mut engine, T, spec(OTHER_SKU, 5, 10));
    let pay = Reserve { flags: RESERVE_FLAG_PAY, ..rsv(CAROL, OTHER_SKU, 1, 7) };
    assert_eq!(reserve(&mut engine, T, pay), bare(ResultCode::InsufficientFunds));
    fund(&mut engine, T, CAROL, 10, 100);
    assert_eq!(reserve(&mut engine, T, pay).result, ResultCode::Ok);
    // PAUSED, then RESUME, then the same key.
    run(&mut engine, T, Request::Pause { sku: OTHER_SKU });
    let paused = rsv(CAROL, OTHER_SKU, 1, 8);
    assert_eq!(reserve(&mut engine, T, paused), bare(ResultCode::Paused));
    run(&mut engine, T, Request::Resume { sku: OTHER_SKU });
    assert_eq!(reserve(&mut engine, T, paused).result, ResultCode::Ok);
    // UNKNOWN_SKU, then the SKU is created, then the same key.
    let unknown = rsv(CAROL, 999, 1, 9);
    assert_eq!(reserve(&mut engine, T, unknown), bare(ResultCode::UnknownSku));
    put_sku(&mut engine, T, spec(999, 1, 0));
    assert_eq!(reserve(&mut engine, T, unknown).result, ResultCode::Ok);
    // A rejected key may be reused with different parameters.
    let sold_out = rsv(CAROL, 999, 1, 10);
    assert_eq!(reserve(&mut engine, T, sold_out), bare(ResultCode::SoldOut));
    assert_eq!(reserve(&mut engine, T, rsv(CAROL, OTHER_SKU, 3, 10)).result, ResultCode::Ok);
    assert_eq!(stock(&mut engine, T, OTHER_SKU), (5, 0, 5, 0));
}

#[test]
fn not_started_then_started_with_the_same_key() {
    let mut engine = engine();
    put_sku(&mut engine, T, SkuSpec { start_ms: T + 50, ..spec(SKU, 1, 10) });
    let request = rsv(ALICE, SKU, 1, 1);
    assert_eq!(reserve(&mut engine, T, request), bare(ResultCode::NotStarted));
    let reply = reserve(&mut engine, T + 50, request);
    assert_eq!(reply.result, ResultCode::Ok);
    assert_eq!(reply.original, ResultCode::Ok);
}
