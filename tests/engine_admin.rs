//! Engine admin operations and queries: PUT_SKU, ADJUST_STOCK, PAUSE / RESUME, DEPOSIT /
//! WITHDRAW, QUERY_SKU / QUERY_ACCOUNT / QUERY_RESERVATION and PING (docs/SEMANTICS.md,
//! Admin and Queries).

use rush_engine::{
    AccountView, Config, Engine, Reply, ReplyBody, Request, ReservationState, Reserve, ResultCode,
    SkuSpec, SkuView, Target, RESERVE_FLAG_PAY,
};
use rush_suite::engine::{
    account_view, adjust, bare, deposit, engine, engine_with, hold, in_state, query, reserve,
    reserve_of, run, sku_view, spec, with, withdraw,
};

const SKU: u64 = 7;
const OTHER_SKU: u64 = 8;
const ALICE: u64 = 11;
const BOB: u64 = 12;
const CAROL: u64 = 13;
const T: u64 = 1_000_000;
/// `Config::small().hold_ms_default`.
const HOLD_DEFAULT: u64 = 60_000;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// PUT_SKU (the tests of this file look at its replies).
fn put(engine: &mut Engine, now: u64, spec: SkuSpec) -> Reply {
    run(engine, now, Request::PutSku(spec))
}

fn rsv(account: u64, quantity: u32, key: u64) -> Reserve {
    reserve_of(account, SKU, quantity, key)
}

fn query_sku(engine: &mut Engine, now: u64, sku: u64) -> Reply {
    run(engine, now, Request::QuerySku { sku })
}

fn sku_body(reply: &Reply) -> SkuView {
    match reply.body {
        ReplyBody::Sku(view) => view,
        other => panic!("expected a SKU body: {other:?} in {reply:?}"),
    }
}

fn sku_reply(code: ResultCode, view: SkuView) -> Reply {
    Reply::with_body(code, ReplyBody::Sku(view))
}

fn account_reply(code: ResultCode, view: AccountView) -> Reply {
    Reply::with_body(code, ReplyBody::Account(view))
}

fn wallet(
    account: u64,
    available: u64,
    held: u64,
    spent: u64,
    deposited: u64,
    withdrawn: u64,
) -> AccountView {
    AccountView { account, available, held, spent, deposited, withdrawn }
}

/// The view of a freshly created SKU.
fn created(spec: SkuSpec) -> SkuView {
    SkuView {
        sku: spec.sku,
        total: spec.stock_total,
        available: spec.stock_total,
        reserved: 0,
        sold: 0,
        price: spec.price,
        per_user_limit: spec.per_user_limit,
        hold_ms: spec.hold_ms,
        start_ms: spec.start_ms,
        end_ms: spec.end_ms,
        waiters: 0,
        paused: false,
    }
}

// ---------------------------------------------------------------------------------------
// PUT_SKU
// ---------------------------------------------------------------------------------------

#[test]
fn put_sku_creates_an_active_sku() {
    let mut engine = engine();
    let spec = SkuSpec {
        sku: SKU,
        stock_total: 25,
        price: 4_999,
        per_user_limit: 2,
        hold_ms: 30_000,
        start_ms: T,
        end_ms: T + 3_600_000,
    };
    let expected = created(spec);
    assert_eq!(put(&mut engine, T, spec), sku_reply(ResultCode::Ok, expected));
    assert_eq!(query_sku(&mut engine, T, SKU), sku_reply(ResultCode::Ok, expected));
    // A SKU created with no stock.
    let empty = SkuSpec { sku: OTHER_SKU, stock_total: 0, start_ms: 0, end_ms: 0, ..spec };
    assert_eq!(put(&mut engine, T, empty), sku_reply(ResultCode::Ok, created(empty)));
}

#[test]
fn put_sku_update_replaces_price_hold_and_window_but_not_stock() {
    let mut engine = engine();
    let original = SkuSpec { per_user_limit: 3, ..spec(SKU, 10, 10) };
    put(&mut engine, T, original);
    assert_eq!(deposit(&mut engine, T, ALICE, 1_000, 100).result, ResultCode::Ok);
    let first = hold(&mut engine, T, Reserve { flags: RESERVE_FLAG_PAY, ..rsv(ALICE, 2, 1) });
    assert_eq!(first.amount, 20);
    let update = SkuSpec {
        stock_total: 999,
        price: 25,
        hold_ms: 5_000,
        start_ms: 100,
        end_ms: T + 10_000,
        ..original
    };
    let expected = SkuView {
        total: 10,
        available: 8,
        reserved: 2,
        price: 25,
        hold_ms: 5_000,
        start_ms: 100,
        end_ms: T + 10_000,
        ..created(original)
    };
    assert_eq!(put(&mut engine, T, update), sku_reply(ResultCode::Ok, expected));
    assert_eq!(sku_view(&mut engine, T, SKU), expected);
    // The new price and hold apply to new reservations; the old one keeps its amount.
    let second = hold(&mut engine, T, Reserve { flags: RESERVE_FLAG_PAY, ..rsv(ALICE, 1, 2) });
    assert_eq!((second.amount, second.deadline_ms), (25, T + 5_000));
    let first_now = query(&mut engine, T, ALICE, Target::Reservation(first.reservation));
    assert_eq!(
        first_now.reservation().map(|view| (view.amount, view.deadline_ms)),
        Some((20, T + HOLD_DEFAULT))
    );
    assert_eq!(account_view(&mut engine, T, ALICE), wallet(ALICE, 955, 45, 0, 1_000, 0));
    // The new window applies: closed at its end.
    let ended = reserve(&mut engine, T + 10_000, rsv(BOB, 1, 1));
    assert_eq!(ended, bare(ResultCode::Ended));
    // The update is not keyed: repeating it is harmless.
    let now = T + 10_000;
    let after = sku_view(&mut engine, now, SKU);
    assert_eq!(put(&mut engine, now, update), sku_reply(ResultCode::Ok, after));
}

#[test]
fn put_sku_may_not_change_the_per_user_limit() {
    let mut engine = engine();
    let limited = SkuSpec { per_user_limit: 3, ..spec(SKU, 10, 10) };
    let unlimited = spec(OTHER_SKU, 10, 10);
    put(&mut engine, T, limited);
    put(&mut engine, T, unlimited);
    let hash = engine.state_hash();
    for (name, update) in [
        ("3 -> 4", SkuSpec { per_user_limit: 4, ..limited }),
        ("3 -> 0", SkuSpec { per_user_limit: 0, ..limited }),
        ("0 -> 1", SkuSpec { per_user_limit: 1, ..unlimited }),
        ("3 -> 4 with a new price", SkuSpec { per_user_limit: 4, price: 1, ..limited }),
    ] {
        assert_eq!(put(&mut engine, T, update), bare(ResultCode::BadRequest), "{name}");
    }
    assert_eq!(engine.state_hash(), hash, "a refused update changes nothing");
    assert_eq!(sku_view(&mut engine, T, SKU), created(limited));
}

#[test]
fn put_sku_bad_requests() {
    let mut engine = engine();
    let hold_ms_max = Config::small().hold_ms_max;
    let good = spec(SKU, 10, 10);
    let cases = [
        ("sku 0", SkuSpec { sku: 0, ..good }),
        ("hold above max", SkuSpec { hold_ms: hold_ms_max + 1, ..good }),
        ("end == start", SkuSpec { start_ms: T, end_ms: T, ..good }),
        ("end before start", SkuSpec { start_ms: T, end_ms: T - 1, ..good }),
        ("end before an open start", SkuSpec { start_ms: 5, end_ms: 1, ..good }),
    ];
    // On creation.
    for (name, bad) in cases {
        assert_eq!(put(&mut engine, T, bad), bare(ResultCode::BadRequest), "create: {name}");
    }
    assert_eq!(query_sku(&mut engine, T, SKU), bare(ResultCode::UnknownSku));
    // On update.
    put(&mut engine, T, good);
    let hash = engine.state_hash();
    for (name, bad) in cases {
        assert_eq!(put(&mut engine, T, bad), bare(ResultCode::BadRequest), "update: {name}");
    }
    assert_eq!(engine.state_hash(), hash);
    // The boundaries are allowed.
    let edge = SkuSpec { hold_ms: hold_ms_max, start_ms: T, end_ms: T + 1, ..good };
    assert_eq!(put(&mut engine, T, edge).result, ResultCode::Ok);
    let open_end = SkuSpec { start_ms: T + 50, end_ms: 0, ..good };
    assert_eq!(put(&mut engine, T, open_end).result, ResultCode::Ok);
}

#[test]
fn put_sku_beyond_sku_max_is_overloaded() {
    let mut engine = engine_with(Config { sku_max: 2, ..Config::small() });
    assert_eq!(put(&mut engine, T, spec(1, 1, 1)).result, ResultCode::Ok);
    assert_eq!(put(&mut engine, T, spec(2, 1, 1)).result, ResultCode::Ok);
    let hash = engine.state_hash();
    assert_eq!(put(&mut engine, T, spec(3, 1, 1)), bare(ResultCode::Overloaded));
    assert_eq!(engine.state_hash(), hash, "OVERLOADED changes nothing");
    assert_eq!(query_sku(&mut engine, T, 3), bare(ResultCode::UnknownSku));
    // A bad request is refused as such, not as OVERLOADED.
    assert_eq!(
        put(&mut engine, T, SkuSpec { end_ms: 1, start_ms: 1, ..spec(3, 1, 1) }),
        bare(ResultCode::BadRequest)
    );
    // Updates of existing SKUs need no room.
    let update = put(&mut engine, T, spec(2, 1, 99));
    assert_eq!(update.result, ResultCode::Ok);
    assert_eq!(sku_body(&update).price, 99);
}

// ---------------------------------------------------------------------------------------
// ADJUST_STOCK
// ---------------------------------------------------------------------------------------

#[test]
fn adjust_stock_adds_and_removes_available_units() {
    let mut engine = engine();
    put(&mut engine, T, spec(SKU, 10, 10));
    hold(&mut engine, T, rsv(ALICE, 4, 1));
    let base = created(spec(SKU, 10, 10));
    let reply = adjust(&mut engine, T, SKU, 5, 1);
    let restocked = SkuView { total: 15, available: 11, reserved: 4, ..base };
    assert_eq!(reply, sku_reply(ResultCode::Ok, restocked));
    // Removing exactly what is available.
    let reply = adjust(&mut engine, T, SKU, -11, 2);
    let emptied = SkuView { total: 4, available: 0, reserved: 4, ..base };
    assert_eq!(reply, sku_reply(ResultCode::Ok, emptied));
    // Held units cannot be removed.
    let hash = engine.state_hash();
    assert_eq!(adjust(&mut engine, T, SKU, -1, 3), bare(ResultCode::SoldOut));
    assert_eq!(adjust(&mut engine, T, SKU, i64::MIN, 3), bare(ResultCode::SoldOut));
    assert_eq!(engine.state_hash(), hash);
    assert_eq!(sku_view(&mut engine, T, SKU), emptied);
    // The SOLD_OUT did not consume key 3.
    assert_eq!(
        adjust(&mut engine, T, SKU, 2, 3),
        sku_reply(ResultCode::Ok, SkuView { total: 6, available: 2, ..emptied })
    );
}

#[test]
fn adjust_stock_overflow() {
    let mut engine = engine();
    put(&mut engine, T, spec(SKU, u64::MAX - 5, 1));
    let hash = engine.state_hash();
    assert_eq!(adjust(&mut engine, T, SKU, 6, 1), bare(ResultCode::Overflow));
    assert_eq!(adjust(&mut engine, T, SKU, i64::MAX, 1), bare(ResultCode::Overflow));
    assert_eq!(engine.state_hash(), hash);
    let reply = adjust(&mut engine, T, SKU, 5, 1);
    assert_eq!(reply.result, ResultCode::Ok);
    assert_eq!((sku_body(&reply).total, sku_body(&reply).available), (u64::MAX, u64::MAX));
    assert_eq!(adjust(&mut engine, T, SKU, 1, 2), bare(ResultCode::Overflow));
    // Held units count in the total: with one unit held, total is still MAX.
    hold(&mut engine, T, rsv(ALICE, 1, 1));
    assert_eq!(adjust(&mut engine, T, SKU, 1, 2), bare(ResultCode::Overflow));
}

#[test]
fn adjust_stock_keys() {
    let mut engine = engine();
    put(&mut engine, T, spec(SKU, 10, 10));
    put(&mut engine, T, spec(OTHER_SKU, 10, 10));
    assert_eq!(adjust(&mut engine, T, SKU, 5, 1).result, ResultCode::Ok);
    let keys = engine.retained_keys();
    // The same key and parameters: DUPLICATE with the SKU as it is now.
    hold(&mut engine, T, rsv(ALICE, 3, 1));
    let now = sku_view(&mut engine, T, SKU);
    assert_eq!((now.total, now.available, now.reserved), (15, 12, 3));
    let hash = engine.state_hash();
    assert_eq!(
        adjust(&mut engine, T, SKU, 5, 1),
        Reply {
            result: ResultCode::Duplicate,
            original: ResultCode::Ok,
            body: ReplyBody::Sku(now)
        }
    );
    // Different parameters.
    assert_eq!(adjust(&mut engine, T, SKU, 6, 1), bare(ResultCode::KeyReused));
    assert_eq!(adjust(&mut engine, T, SKU, -5, 1), bare(ResultCode::KeyReused));
    assert_eq!(adjust(&mut engine, T, OTHER_SKU, 5, 1), bare(ResultCode::KeyReused));
    assert_eq!(adjust(&mut engine, T, 999, 5, 1), bare(ResultCode::KeyReused));
    assert_eq!(engine.state_hash(), hash);
    assert_eq!(engine.retained_keys(), keys + 1, "only Alice's reserve was recorded since");
    // The admin namespace is account 0: Alice's key 1 is another key.
    assert_eq!(deposit(&mut engine, T, ALICE, 5, 2).result, ResultCode::Ok);
    assert_eq!(adjust(&mut engine, T, SKU, 1, 2).result, ResultCode::Ok);
    assert_eq!(sku_view(&mut engine, T, SKU).total, 16);
}

#[test]
fn adjust_stock_bad_requests_and_unknown_sku() {
    let mut engine = engine();
    put(&mut engine, T, spec(SKU, 10, 10));
    let hash = engine.state_hash();
    assert_eq!(adjust(&mut engine, T, 0, 1, 1), bare(ResultCode::BadRequest));
    assert_eq!(adjust(&mut engine, T, SKU, 1, 0), bare(ResultCode::BadRequest));
    assert_eq!(adjust(&mut engine, T, SKU, 0, 1), bare(ResultCode::BadRequest));
    assert_eq!(adjust(&mut engine, T, 999, 1, 1), bare(ResultCode::UnknownSku));
    assert_eq!(adjust(&mut engine, T, 999, -1, 1), bare(ResultCode::UnknownSku));
    assert_eq!(engine.state_hash(), hash);
    assert_eq!(engine.retained_keys(), 0);
}

// ---------------------------------------------------------------------------------------
// PAUSE / RESUME
// ---------------------------------------------------------------------------------------

#[test]
fn pause_and_resume() {
    let mut engine = engine();
    put(&mut engine, T, spec(SKU, 10, 10));
    let held = hold(&mut engine, T, rsv(ALICE, 2, 1));
    let running = sku_view(&mut engine, T, SKU);
    let paused = SkuView { paused: true, ..running };
    assert_eq!(run(&mut engine, T, Request::Pause { sku: SKU }), sku_reply(ResultCode::Ok, paused));
    assert_eq!(run(&mut engine, T, Request::Pause { sku: SKU }), sku_reply(ResultCode::Ok, paused));
    assert_eq!(sku_view(&mut engine, T, SKU), paused);
    assert_eq!(reserve(&mut engine, T, rsv(BOB, 1, 1)), bare(ResultCode::Paused));
    // Holds go on: confirm works while paused.
    let confirm =
        Request::Confirm { account: ALICE, target: Target::Reservation(held.reservation), key: 2 };
    assert_eq!(run(&mut engine, T, confirm).result, ResultCode::Ok);
    let sold = SkuView { available: 8, reserved: 0, sold: 2, ..paused };
    assert_eq!(sku_view(&mut engine, T, SKU), sold);
    let resumed = SkuView { paused: false, ..sold };
    assert_eq!(
        run(&mut engine, T, Request::Resume { sku: SKU }),
        sku_reply(ResultCode::Ok, resumed)
    );
    assert_eq!(
        run(&mut engine, T, Request::Resume { sku: SKU }),
        sku_reply(ResultCode::Ok, resumed)
    );
    assert_eq!(hold(&mut engine, T, rsv(BOB, 1, 1)).quantity, 1);
}

#[test]
fn pause_and_resume_bad_request_and_unknown_sku() {
    let mut engine = engine();
    put(&mut engine, T, spec(SKU, 10, 10));
    let hash = engine.state_hash();
    assert_eq!(run(&mut engine, T, Request::Pause { sku: 0 }), bare(ResultCode::BadRequest));
    assert_eq!(run(&mut engine, T, Request::Resume { sku: 0 }), bare(ResultCode::BadRequest));
    assert_eq!(run(&mut engine, T, Request::Pause { sku: 999 }), bare(ResultCode::UnknownSku));
    assert_eq!(run(&mut engine, T, Request::Resume { sku: 999 }), bare(ResultCode::UnknownSku));
    assert_eq!(engine.state_hash(), hash);
}

// ---------------------------------------------------------------------------------------
// DEPOSIT / WITHDRAW
// ---------------------------------------------------------------------------------------

#[test]
fn deposit_creates_and_grows_a_wallet() {
    let mut engine = engine();
    assert_eq!(
        deposit(&mut engine, T, ALICE, 100, 1),
        account_reply(ResultCode::Ok, wallet(ALICE, 100, 0, 0, 100, 0))
    );
    assert_eq!(
        deposit(&mut engine, T, ALICE, 50, 2),
        account_reply(ResultCode::Ok, wallet(ALICE, 150, 0, 0, 150, 0))
    );
    assert_eq!(account_view(&mut engine, T, ALICE), wallet(ALICE, 150, 0, 0, 150, 0));
    assert_eq!(engine.retained_keys(), 2);
}

#[test]
fn deposit_duplicate_and_key_reused() {
    let mut engine = engine();
    deposit(&mut engine, T, ALICE, 100, 1);
    withdraw(&mut engine, T, ALICE, 30, 2);
    let hash = engine.state_hash();
    // DUPLICATE shows the wallet as it is now.
    assert_eq!(
        deposit(&mut engine, T, ALICE, 100, 1),
        Reply {
            result: ResultCode::Duplicate,
            original: ResultCode::Ok,
            body: ReplyBody::Account(wallet(ALICE, 70, 0, 0, 100, 30)),
        }
    );
    assert_eq!(deposit(&mut engine, T, ALICE, 101, 1), bare(ResultCode::KeyReused));
    assert_eq!(withdraw(&mut engine, T, ALICE, 100, 1), bare(ResultCode::KeyReused));
    assert_eq!(deposit(&mut engine, T, ALICE, 30, 2), bare(ResultCode::KeyReused));
    assert_eq!(engine.state_hash(), hash);
    // Keys are per account.
    assert_eq!(deposit(&mut engine, T, BOB, 100, 1).result, ResultCode::Ok);
}

#[test]
fn deposit_overflow() {
    let mut engine = engine();
    deposit(&mut engine, T, ALICE, u64::MAX, 1);
    let hash = engine.state_hash();
    assert_eq!(deposit(&mut engine, T, ALICE, 1, 2), bare(ResultCode::Overflow));
    assert_eq!(engine.state_hash(), hash);
    // `deposited + amount` is what overflows, even after a withdrawal.
    withdraw(&mut engine, T, ALICE, 10, 3);
    assert_eq!(deposit(&mut engine, T, ALICE, 1, 2), bare(ResultCode::Overflow));
    assert_eq!(
        account_view(&mut engine, T, ALICE),
        wallet(ALICE, u64::MAX - 10, 0, 0, u64::MAX, 10)
    );
}

#[test]
fn deposit_and_withdraw_bad_requests() {
    let mut engine = engine();
    deposit(&mut engine, T, ALICE, 100, 1);
    let hash = engine.state_hash();
    assert_eq!(deposit(&mut engine, T, 0, 10, 5), bare(ResultCode::BadRequest));
    assert_eq!(deposit(&mut engine, T, ALICE, 10, 0), bare(ResultCode::BadRequest));
    assert_eq!(deposit(&mut engine, T, ALICE, 0, 5), bare(ResultCode::BadRequest));
    assert_eq!(withdraw(&mut engine, T, 0, 10, 5), bare(ResultCode::BadRequest));
    assert_eq!(withdraw(&mut engine, T, ALICE, 10, 0), bare(ResultCode::BadRequest));
    assert_eq!(withdraw(&mut engine, T, ALICE, 0, 5), bare(ResultCode::BadRequest));
    // BAD_REQUEST comes before the key check.
    assert_eq!(deposit(&mut engine, T, ALICE, 0, 1), bare(ResultCode::BadRequest));
    assert_eq!(engine.state_hash(), hash);
}

#[test]
fn deposit_beyond_account_max_is_overloaded() {
    let mut engine = engine_with(Config { account_max: 2, ..Config::small() });
    put(&mut engine, T, spec(SKU, 10, 10));
    deposit(&mut engine, T, ALICE, 100, 1);
    deposit(&mut engine, T, BOB, 100, 1);
    let hash = engine.state_hash();
    assert_eq!(deposit(&mut engine, T, CAROL, 100, 1), bare(ResultCode::Overloaded));
    assert_eq!(engine.state_hash(), hash, "OVERLOADED changes nothing");
    assert_eq!(account_view(&mut engine, T, CAROL), wallet(CAROL, 0, 0, 0, 0, 0));
    // Business rules first.
    assert_eq!(deposit(&mut engine, T, CAROL, 0, 1), bare(ResultCode::BadRequest));
    assert_eq!(withdraw(&mut engine, T, CAROL, 1, 1), bare(ResultCode::InsufficientFunds));
    // Existing wallets still take deposits; Carol may still reserve without PAY.
    assert_eq!(deposit(&mut engine, T, ALICE, 1, 2).result, ResultCode::Ok);
    assert_eq!(hold(&mut engine, T, rsv(CAROL, 1, 1)).amount, 0);
    // The key Carol's refused deposit used was not consumed.
    assert_eq!(deposit(&mut engine, T, CAROL, 100, 2), bare(ResultCode::Overloaded));
}

#[test]
fn withdraw_takes_only_available_funds() {
    let mut engine = engine();
    put(&mut engine, T, spec(SKU, 10, 10));
    assert_eq!(withdraw(&mut engine, T, ALICE, 1, 1), bare(ResultCode::InsufficientFunds));
    assert_eq!(account_view(&mut engine, T, ALICE), wallet(ALICE, 0, 0, 0, 0, 0));
    deposit(&mut engine, T, ALICE, 100, 1);
    hold(&mut engine, T, Reserve { flags: RESERVE_FLAG_PAY, ..rsv(ALICE, 3, 2) });
    assert_eq!(account_view(&mut engine, T, ALICE), wallet(ALICE, 70, 30, 0, 100, 0));
    let hash = engine.state_hash();
    assert_eq!(withdraw(&mut engine, T, ALICE, 71, 3), bare(ResultCode::InsufficientFunds));
    assert_eq!(engine.state_hash(), hash);
    assert_eq!(
        withdraw(&mut engine, T, ALICE, 70, 3),
        account_reply(ResultCode::Ok, wallet(ALICE, 0, 30, 0, 100, 70))
    );
    assert_eq!(
        withdraw(&mut engine, T, ALICE, 70, 3),
        Reply {
            result: ResultCode::Duplicate,
            original: ResultCode::Ok,
            body: ReplyBody::Account(wallet(ALICE, 0, 30, 0, 100, 70)),
        }
    );
    assert_eq!(withdraw(&mut engine, T, ALICE, 69, 3), bare(ResultCode::KeyReused));
    assert_eq!(deposit(&mut engine, T, ALICE, 70, 3), bare(ResultCode::KeyReused));
    assert_eq!(account_view(&mut engine, T, ALICE), wallet(ALICE, 0, 30, 0, 100, 70));
}

// ---------------------------------------------------------------------------------------
// Queries and PING
// ---------------------------------------------------------------------------------------

#[test]
fn query_sku_answers() {
    let mut engine = engine();
    let spec = spec(SKU, 10, 10);
    put(&mut engine, T, spec);
    assert_eq!(query_sku(&mut engine, T, 0), bare(ResultCode::BadRequest));
    assert_eq!(query_sku(&mut engine, T, 999), bare(ResultCode::UnknownSku));
    assert_eq!(query_sku(&mut engine, T, SKU), sku_reply(ResultCode::Ok, created(spec)));
}

#[test]
fn query_account_answers() {
    let mut engine = engine();
    assert_eq!(
        run(&mut engine, T, Request::QueryAccount { account: 0 }),
        bare(ResultCode::BadRequest)
    );
    // Zeros without a wallet.
    assert_eq!(
        run(&mut engine, T, Request::QueryAccount { account: ALICE }),
        account_reply(ResultCode::Ok, wallet(ALICE, 0, 0, 0, 0, 0))
    );
    assert_eq!(
        engine.state_hash(),
        Engine::new(Config::small())
            .map(|mut fresh| {
                fresh.tick(T);
                fresh.state_hash()
            })
            .unwrap(),
        "a query creates no wallet"
    );
    deposit(&mut engine, T, ALICE, 5, 1);
    assert_eq!(
        run(&mut engine, T, Request::QueryAccount { account: ALICE }),
        account_reply(ResultCode::Ok, wallet(ALICE, 5, 0, 0, 5, 0))
    );
}

#[test]
fn query_reservation_answers() {
    let mut engine = engine();
    put(&mut engine, T, spec(SKU, 10, 10));
    let view = hold(&mut engine, T, rsv(ALICE, 2, 1));
    let ok = with(ResultCode::Ok, view);
    assert_eq!(query(&mut engine, T, ALICE, Target::Reservation(view.reservation)), ok);
    assert_eq!(query(&mut engine, T, ALICE, Target::ReserveKey(1)), ok);
    assert_eq!(query(&mut engine, T, 0, Target::ReserveKey(1)), bare(ResultCode::BadRequest));
    assert_eq!(query(&mut engine, T, ALICE, Target::Reservation(0)), bare(ResultCode::BadRequest));
    assert_eq!(query(&mut engine, T, ALICE, Target::ReserveKey(0)), bare(ResultCode::BadRequest));
    assert_eq!(
        query(&mut engine, T, ALICE, Target::ReserveKey(2)),
        bare(ResultCode::UnknownReservation)
    );
    assert_eq!(
        query(&mut engine, T, BOB, Target::Reservation(view.reservation)),
        bare(ResultCode::UnknownReservation)
    );
    // A tombstoned key.
    let cancel = Request::Cancel { account: ALICE, target: Target::ReserveKey(5), key: 6 };
    assert_eq!(run(&mut engine, T, cancel), bare(ResultCode::Ok));
    assert_eq!(
        query(&mut engine, T, ALICE, Target::ReserveKey(5)),
        bare(ResultCode::AlreadyCancelled)
    );
    // A key of another operation names no reservation.
    assert_eq!(
        query(&mut engine, T, ALICE, Target::ReserveKey(6)),
        bare(ResultCode::UnknownReservation)
    );
    // Finished reservations stay queryable.
    let confirm = Request::Confirm { account: ALICE, target: Target::ReserveKey(1), key: 7 };
    assert_eq!(run(&mut engine, T, confirm).result, ResultCode::Ok);
    let confirmed = in_state(view, ReservationState::Confirmed);
    assert_eq!(
        query(&mut engine, T, ALICE, Target::ReserveKey(1)),
        with(ResultCode::Ok, confirmed)
    );
}

#[test]
fn queries_and_ping_change_nothing() {
    let mut engine = engine();
    put(&mut engine, T, spec(SKU, 10, 10));
    deposit(&mut engine, T, ALICE, 100, 1);
    let view = hold(&mut engine, T, rsv(ALICE, 2, 2));
    let hash = engine.state_hash();
    assert_eq!(run(&mut engine, T, Request::Ping), bare(ResultCode::Ok));
    query_sku(&mut engine, T, SKU);
    query_sku(&mut engine, T, 999);
    account_view(&mut engine, T, ALICE);
    account_view(&mut engine, T, BOB);
    query(&mut engine, T, ALICE, Target::Reservation(view.reservation));
    query(&mut engine, T, ALICE, Target::ReserveKey(77));
    assert_eq!(engine.state_hash(), hash);
    assert_eq!(engine.retained_keys(), 2);
}

#[test]
fn ping_advances_the_clock() {
    let mut engine = engine();
    put(&mut engine, T, spec(SKU, 10, 10));
    hold(&mut engine, T, Reserve { hold_ms: 100, ..rsv(ALICE, 2, 1) });
    assert_eq!(run(&mut engine, T + 100, Request::Ping), bare(ResultCode::Ok));
    assert_eq!(engine.now_ms(), T + 100);
    assert_eq!(engine.live_reservations(), 0);
    assert_eq!(engine.counters().holds_expired, 1);
}
