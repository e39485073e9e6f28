//! Driving one engine directly (no runtime, no network) in the engine tests.
//!
//! Every request and every tick goes through [`run`] or [`tick`], which check all of the
//! engine's invariants afterwards, so a scenario test is also an invariant test at every step.
//! Helpers named after a request return its [`Reply`]; the few that must succeed for the test
//! to make sense ([`put_sku`], [`fund`], [`hold`]) assert `OK` themselves.
//!
//! A file's own conventions (its `SKU` constant, a fixed request key) stay in that file as
//! one-line wrappers around these.

use rush_engine::{
    AccountView, Config, Engine, Reply, ReplyBody, Request, ReservationState, ReservationView,
    Reserve, ResultCode, SkuSpec, SkuView, Target,
};

/// An engine with `Config::small()`.
pub fn engine() -> Engine {
    engine_with(Config::small())
}

/// An engine with `config`, which must be valid.
pub fn engine_with(config: Config) -> Engine {
    Engine::new(config).expect("valid config")
}

/// Executes one request at `now` and checks every invariant afterwards.
pub fn run(engine: &mut Engine, now: u64, request: Request) -> Reply {
    let reply = engine.execute(now, &request);
    engine.check_invariants().unwrap();
    reply
}

/// Advances the engine's clock to `now` (expiring holds, timing out waiters) and checks every
/// invariant afterwards.
pub fn tick(engine: &mut Engine, now: u64) {
    engine.tick(now);
    engine.check_invariants().unwrap();
}

/// True for the requests that carry a request key, that is the ones whose retry with the same
/// key is answered from the key table (PUT_SKU, PAUSE, RESUME and the queries carry none).
pub fn is_keyed(request: &Request) -> bool {
    matches!(
        request,
        Request::Reserve(_)
            | Request::Confirm { .. }
            | Request::Cancel { .. }
            | Request::AdjustStock { .. }
            | Request::Deposit { .. }
            | Request::Withdraw { .. }
    )
}

// ---------------------------------------------------------------------------------------
// Admin
// ---------------------------------------------------------------------------------------

/// A SKU of `stock_total` units at `price` with no per-user limit, the engine's default hold
/// time and an always-open sale window; tests change the other fields with `..spec(..)`.
pub fn spec(sku: u64, stock_total: u64, price: u64) -> SkuSpec {
    SkuSpec { sku, stock_total, price, per_user_limit: 0, hold_ms: 0, start_ms: 0, end_ms: 0 }
}

/// PUT_SKU, which must succeed.
pub fn put_sku(engine: &mut Engine, now: u64, spec: SkuSpec) {
    let reply = run(engine, now, Request::PutSku(spec));
    assert_eq!(reply.result, ResultCode::Ok, "PUT_SKU {spec:?}");
}

/// ADJUST_STOCK.
pub fn adjust(engine: &mut Engine, now: u64, sku: u64, delta: i64, key: u64) -> Reply {
    run(engine, now, Request::AdjustStock { sku, delta, key })
}

/// DEPOSIT.
pub fn deposit(engine: &mut Engine, now: u64, account: u64, amount: u64, key: u64) -> Reply {
    run(engine, now, Request::Deposit { account, amount, key })
}

/// DEPOSIT, which must succeed: puts `amount` into `account`'s wallet.
pub fn fund(engine: &mut Engine, now: u64, account: u64, amount: u64, key: u64) {
    let reply = deposit(engine, now, account, amount, key);
    assert_eq!(reply.result, ResultCode::Ok, "DEPOSIT {account} {amount} (key {key})");
}

/// WITHDRAW.
pub fn withdraw(engine: &mut Engine, now: u64, account: u64, amount: u64, key: u64) -> Reply {
    run(engine, now, Request::Withdraw { account, amount, key })
}

// ---------------------------------------------------------------------------------------
// RESERVE, CONFIRM, CANCEL
// ---------------------------------------------------------------------------------------

/// A plain RESERVE: no flags, the default hold time, no wait.
pub fn reserve_of(account: u64, sku: u64, quantity: u32, key: u64) -> Reserve {
    Reserve { account, sku, quantity, key, flags: 0, hold_ms: 0, wait_ms: 0 }
}

/// RESERVE.
pub fn reserve(engine: &mut Engine, now: u64, request: Reserve) -> Reply {
    run(engine, now, Request::Reserve(request))
}

/// A RESERVE that must be answered OK at once; returns its reservation.
pub fn hold(engine: &mut Engine, now: u64, request: Reserve) -> ReservationView {
    let reply = reserve(engine, now, request);
    assert_eq!(reply.result, ResultCode::Ok, "RESERVE {request:?}");
    reservation(&reply)
}

/// CONFIRM.
pub fn confirm(engine: &mut Engine, now: u64, account: u64, target: Target, key: u64) -> Reply {
    run(engine, now, Request::Confirm { account, target, key })
}

/// CANCEL.
pub fn cancel(engine: &mut Engine, now: u64, account: u64, target: Target, key: u64) -> Reply {
    run(engine, now, Request::Cancel { account, target, key })
}

// ---------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------

/// QUERY_RESERVATION.
pub fn query(engine: &mut Engine, now: u64, account: u64, target: Target) -> Reply {
    run(engine, now, Request::QueryReservation { account, target })
}

/// QUERY_SKU, which must answer with the SKU's view.
pub fn sku_view(engine: &mut Engine, now: u64, sku: u64) -> SkuView {
    match run(engine, now, Request::QuerySku { sku }).body {
        ReplyBody::Sku(view) => view,
        other => panic!("QUERY_SKU {sku}: {other:?}"),
    }
}

/// (total, available, reserved, sold) of a SKU.
pub fn stock(engine: &mut Engine, now: u64, sku: u64) -> (u64, u64, u64, u64) {
    let view = sku_view(engine, now, sku);
    (view.total, view.available, view.reserved, view.sold)
}

/// QUERY_ACCOUNT, which must answer with the wallet's view.
pub fn account_view(engine: &mut Engine, now: u64, account: u64) -> AccountView {
    match run(engine, now, Request::QueryAccount { account }).body {
        ReplyBody::Account(view) => view,
        other => panic!("QUERY_ACCOUNT {account}: {other:?}"),
    }
}

/// (available, held, spent) of a wallet.
pub fn funds(engine: &mut Engine, now: u64, account: u64) -> (u64, u64, u64) {
    let view = account_view(engine, now, account);
    (view.available, view.held, view.spent)
}

// ---------------------------------------------------------------------------------------
// Expected replies
// ---------------------------------------------------------------------------------------

/// The reservation in `reply`'s body, which must have one.
pub fn reservation(reply: &Reply) -> ReservationView {
    reply.reservation().unwrap_or_else(|| panic!("no reservation in {reply:?}"))
}

/// A reply with this code, `original` equal to it and no body.
pub fn bare(code: ResultCode) -> Reply {
    Reply::code(code)
}

/// A reply with this code, `original` equal to it and `view` as its body.
pub fn with(code: ResultCode, view: ReservationView) -> Reply {
    Reply::with_body(code, ReplyBody::Reservation(view))
}

/// `view` in another state.
pub fn in_state(view: ReservationView, state: ReservationState) -> ReservationView {
    ReservationView { state, ..view }
}
