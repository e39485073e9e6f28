//! Engine waitlist: parking, strict FIFO matching of released units, wait timeouts, cancels of
//! waiters and the deferred events that answer parked RESERVEs (docs/SEMANTICS.md, Matching
//! and Timers).

use rush_engine::{
    Config, Engine, Event, Reply, ReplyBody, Request, ReservationState, ReservationView, Reserve,
    ResultCode, SkuSpec, Target, RESERVE_FLAG_BUY, RESERVE_FLAG_PAY,
};
use rush_suite::engine::{
    adjust, bare, cancel, confirm, engine_with, fund, funds, hold, in_state, put_sku, query,
    reservation, reserve, reserve_of, run, sku_view, spec, tick, with,
};

const SKU: u64 = 7;
const OTHER_SKU: u64 = 8;
const ALICE: u64 = 11;
const BOB: u64 = 12;
const CAROL: u64 = 13;
const DAVE: u64 = 14;
const ERIN: u64 = 15;
const T: u64 = 1_000_000;
/// `Config::small().hold_ms_default`.
const HOLD_DEFAULT: u64 = 60_000;
const WAIT: u32 = 100_000;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn events(engine: &mut Engine) -> Vec<Event> {
    engine.drain_events().collect()
}

/// An engine with one SKU of `stock` units at price 10.
fn setup(stock: u64) -> Engine {
    setup_spec(Config::small(), spec(SKU, stock, 10))
}

fn setup_spec(config: Config, spec: SkuSpec) -> Engine {
    let mut engine = engine_with(config);
    put_sku(&mut engine, T, spec);
    engine
}

fn rsv(account: u64, quantity: u32, key: u64) -> Reserve {
    reserve_of(account, SKU, quantity, key)
}

fn waiting(account: u64, quantity: u32, key: u64, wait_ms: u32) -> Reserve {
    Reserve { wait_ms, ..rsv(account, quantity, key) }
}

/// A RESERVE that must park (WAITING, no event yet).
fn park(engine: &mut Engine, now: u64, request: Reserve) -> ReservationView {
    let reply = reserve(engine, now, request);
    assert_eq!(reply.result, ResultCode::Waiting, "RESERVE {request:?}");
    assert_eq!(reply.original, ResultCode::Waiting);
    let view = reservation(&reply);
    assert_eq!(view.state, ReservationState::Waiting);
    assert_eq!(view.deadline_ms, now + u64::from(request.wait_ms));
    assert!(engine.drain_events().next().is_none(), "parking answers nothing yet");
    view
}

/// (total, available, reserved, sold, waiters) of the SKU.
fn stock(engine: &mut Engine, now: u64) -> (u64, u64, u64, u64, u32) {
    let view = sku_view(engine, now, SKU);
    (view.total, view.available, view.reserved, view.sold, view.waiters)
}

/// The event that answers the parked RESERVE of `view` (routed by account and key).
fn event(code: ResultCode, view: ReservationView) -> Event {
    Event { account: view.account, key: key_of(view), reply: with(code, view) }
}

/// The request key `view`'s account parked with: see `KEYS`.
fn key_of(view: ReservationView) -> u64 {
    KEYS.iter().find(|(account, _)| *account == view.account).map(|(_, key)| *key).unwrap()
}

/// In these tests an account whose deferred answer is checked parks with this key.
const KEYS: [(u64, u64); 5] = [(ALICE, 1), (BOB, 21), (CAROL, 31), (DAVE, 41), (ERIN, 51)];

/// A waiter matched at `now` into a hold of `hold_ms`.
fn matched(view: ReservationView, now: u64, hold_ms: u64) -> ReservationView {
    ReservationView { state: ReservationState::Held, deadline_ms: now + hold_ms, ..view }
}

// ---------------------------------------------------------------------------------------
// Parking and FIFO matching
// ---------------------------------------------------------------------------------------

#[test]
fn parking_answers_waiting_and_takes_no_units() {
    let mut engine = setup(1);
    hold(&mut engine, T, rsv(ALICE, 1, 1));
    let view = park(&mut engine, T, waiting(BOB, 1, 21, 10_000));
    assert_eq!(
        view,
        ReservationView {
            reservation: view.reservation,
            account: BOB,
            sku: SKU,
            quantity: 1,
            flags: 0,
            amount: 0,
            deadline_ms: T + 10_000,
            state: ReservationState::Waiting,
        }
    );
    assert_eq!(stock(&mut engine, T), (1, 0, 1, 0, 1));
    assert_eq!(engine.live_reservations(), 2);
    assert_eq!(engine.retained_keys(), 2);
    let queried = query(&mut engine, T, BOB, Target::ReserveKey(21));
    assert_eq!(queried, with(ResultCode::Ok, view));
}

#[test]
fn fifo_order_when_units_are_released_one_at_a_time() {
    let mut engine = setup(3);
    let holds: Vec<ReservationView> =
        (1..=3).map(|key| hold(&mut engine, T, rsv(ALICE, 1, key))).collect();
    let bob = park(&mut engine, T + 1, waiting(BOB, 1, 21, WAIT));
    let carol = park(&mut engine, T + 2, waiting(CAROL, 1, 31, WAIT));
    let dave = park(&mut engine, T + 3, waiting(DAVE, 1, 41, WAIT));
    assert_eq!(stock(&mut engine, T + 3), (3, 0, 3, 0, 3));
    for (step, (released, waiter)) in holds.iter().zip([bob, carol, dave]).enumerate() {
        let now = T + 10 * (step as u64 + 1);
        let target = Target::Reservation(released.reservation);
        assert_eq!(
            cancel(&mut engine, now, ALICE, target, 100 + step as u64).result,
            ResultCode::Ok
        );
        assert_eq!(
            events(&mut engine),
            vec![event(ResultCode::Ok, matched(waiter, now, HOLD_DEFAULT))],
            "release {step}"
        );
        assert_eq!(stock(&mut engine, now), (3, 0, 3, 0, 2 - step as u32));
    }
    assert_eq!(engine.counters().waiters_matched, 3);
    // The parked key's replay now shows the hold, original OK.
    assert_eq!(
        reserve(&mut engine, T + 40, waiting(BOB, 1, 21, WAIT)),
        Reply {
            result: ResultCode::Duplicate,
            original: ResultCode::Ok,
            body: ReplyBody::Reservation(matched(bob, T + 10, HOLD_DEFAULT)),
        }
    );
}

#[test]
fn strict_fifo_head_blocks_the_line_and_newcomers() {
    let mut engine = setup(2);
    let first = hold(&mut engine, T, rsv(ALICE, 1, 1));
    let second = hold(&mut engine, T, rsv(ALICE, 1, 2));
    let bob = park(&mut engine, T, waiting(BOB, 2, 21, WAIT));
    let carol = park(&mut engine, T, waiting(CAROL, 1, 31, WAIT));
    // One unit back: the head needs two, nobody behind it is served.
    let now = T + 10;
    assert_eq!(
        cancel(&mut engine, now, ALICE, Target::Reservation(first.reservation), 3).result,
        ResultCode::Ok
    );
    assert_eq!(events(&mut engine), vec![]);
    assert_eq!(stock(&mut engine, now), (2, 1, 1, 0, 2));
    // A newcomer that will not wait is SOLD_OUT although a unit is available.
    let hash = engine.state_hash();
    assert_eq!(reserve(&mut engine, now, rsv(DAVE, 1, 41)), bare(ResultCode::SoldOut));
    assert_eq!(engine.state_hash(), hash);
    // A newcomer that waits joins the tail.
    let erin = park(&mut engine, now, waiting(ERIN, 1, 51, WAIT));
    assert_eq!(stock(&mut engine, now), (2, 1, 1, 0, 3));
    // The second unit: the head gets both, Carol (needs 1) finds none left.
    let now = T + 20;
    assert_eq!(
        cancel(&mut engine, now, ALICE, Target::Reservation(second.reservation), 4).result,
        ResultCode::Ok
    );
    assert_eq!(events(&mut engine), vec![event(ResultCode::Ok, matched(bob, now, HOLD_DEFAULT))]);
    assert_eq!(stock(&mut engine, now), (2, 0, 2, 0, 2));
    // A restock of one serves Carol, then Erin waits for the next.
    let now = T + 30;
    let restock = adjust(&mut engine, now, SKU, 1, 1);
    assert_eq!(restock.result, ResultCode::Ok);
    assert_eq!(events(&mut engine), vec![event(ResultCode::Ok, matched(carol, now, HOLD_DEFAULT))]);
    assert_eq!(stock(&mut engine, now), (3, 0, 3, 0, 1));
    let now = T + 40;
    assert_eq!(adjust(&mut engine, now, SKU, 1, 2).result, ResultCode::Ok);
    assert_eq!(events(&mut engine), vec![event(ResultCode::Ok, matched(erin, now, HOLD_DEFAULT))]);
    assert_eq!(stock(&mut engine, now), (4, 0, 4, 0, 0));
}

#[test]
fn a_waiter_is_matched_with_its_own_hold_time() {
    let mut engine = setup(1);
    let alice = hold(&mut engine, T, Reserve { hold_ms: 2_000, ..rsv(ALICE, 1, 1) });
    let bob = park(&mut engine, T + 1, Reserve { hold_ms: 3_000, ..waiting(BOB, 1, 21, WAIT) });
    let now = T + 5;
    assert_eq!(
        cancel(&mut engine, now, ALICE, Target::Reservation(alice.reservation), 2).result,
        ResultCode::Ok
    );
    assert_eq!(events(&mut engine), vec![event(ResultCode::Ok, matched(bob, now, 3_000))]);
}

// ---------------------------------------------------------------------------------------
// Wait timeout
// ---------------------------------------------------------------------------------------

#[test]
fn wait_timeout_at_exactly_the_deadline_returns_funds_and_limit() {
    let mut engine = setup_spec(Config::small(), SkuSpec { per_user_limit: 3, ..spec(SKU, 1, 10) });
    hold(&mut engine, T, rsv(ALICE, 1, 1));
    fund(&mut engine, T, BOB, 100, 9_999);
    let request = Reserve { flags: RESERVE_FLAG_PAY, ..waiting(BOB, 2, 21, 5_000) };
    let bob = park(&mut engine, T, request);
    assert_eq!(bob.amount, 20);
    assert_eq!(funds(&mut engine, T, BOB), (80, 20, 0));
    // Waiting units count against the limit (2 + 2 > 3).
    assert_eq!(
        reserve(&mut engine, T, waiting(BOB, 2, 22, 5_000)),
        bare(ResultCode::LimitExceeded)
    );
    // A CONFIRM of a waiter answers WAITING and records nothing.
    let keys = engine.retained_keys();
    assert_eq!(
        confirm(&mut engine, T, BOB, Target::ReserveKey(21), 23),
        with(ResultCode::Waiting, bob)
    );
    assert_eq!(engine.retained_keys(), keys);

    tick(&mut engine, T + 4_999);
    assert_eq!(events(&mut engine), vec![]);
    assert_eq!(stock(&mut engine, T + 4_999), (1, 0, 1, 0, 1));
    tick(&mut engine, T + 5_000);
    let timed_out = in_state(bob, ReservationState::WaitTimedOut);
    assert_eq!(events(&mut engine), vec![event(ResultCode::WaitTimeout, timed_out)]);
    assert_eq!(engine.counters().waiters_timed_out, 1);
    let now = T + 5_000;
    assert_eq!(stock(&mut engine, now), (1, 0, 1, 0, 0));
    assert_eq!(funds(&mut engine, now, BOB), (100, 0, 0));
    assert_eq!(engine.live_reservations(), 1);
    // The parked key now replays WAIT_TIMEOUT.
    assert_eq!(
        reserve(&mut engine, now, request),
        Reply {
            result: ResultCode::Duplicate,
            original: ResultCode::WaitTimeout,
            body: ReplyBody::Reservation(timed_out),
        }
    );
    // CONFIRM and CANCEL of a timed-out waiter.
    assert_eq!(
        confirm(&mut engine, now, BOB, Target::ReserveKey(21), 23),
        with(ResultCode::WaitTimeout, timed_out)
    );
    assert_eq!(
        cancel(&mut engine, now, BOB, Target::Reservation(bob.reservation), 24),
        with(ResultCode::WaitTimeout, timed_out)
    );
    // The limit is free again: 3 units may wait.
    let again = park(&mut engine, now, waiting(BOB, 3, 25, 1_000));
    assert_eq!(again.quantity, 3);
}

// Regression: the engine did not feed the line when its head left by its own wait timeout
// (a timer, no unit returned), so Carol, then at the head, kept waiting beside an available
// unit she fit (invariant 6). Fixed by feeding the waitlist after every wait timeout.
#[test]
fn the_head_timing_out_lets_the_next_waiter_through() {
    let mut engine = setup(2);
    hold(&mut engine, T, rsv(ALICE, 1, 1));
    // One unit available; Bob (head) needs two, Carol (behind him) needs one.
    let bob = park(&mut engine, T, waiting(BOB, 2, 21, 1_000));
    let carol = park(&mut engine, T, waiting(CAROL, 1, 31, 10_000));
    assert_eq!(stock(&mut engine, T), (2, 1, 1, 0, 2));
    let now = T + 1_000;
    engine.tick(now);
    assert_eq!(
        events(&mut engine),
        vec![
            event(ResultCode::WaitTimeout, in_state(bob, ReservationState::WaitTimedOut)),
            event(ResultCode::Ok, matched(carol, now, HOLD_DEFAULT)),
        ]
    );
    engine.check_invariants().unwrap();
    assert_eq!(stock(&mut engine, now), (2, 0, 2, 0, 0));
}

#[test]
fn a_waiter_due_when_units_return_at_the_same_time_is_not_matched() {
    let mut engine = setup(1);
    hold(&mut engine, T, Reserve { hold_ms: 4_000, ..rsv(ALICE, 1, 1) });
    let bob = park(&mut engine, T, waiting(BOB, 1, 21, 4_000));
    let carol = park(&mut engine, T + 1_000, waiting(CAROL, 1, 31, 10_000));
    // The hold expires and Bob's wait ends at the same millisecond: Bob times out, Carol
    // gets the unit.
    let now = T + 4_000;
    tick(&mut engine, now);
    assert_eq!(
        events(&mut engine),
        vec![
            event(ResultCode::WaitTimeout, in_state(bob, ReservationState::WaitTimedOut)),
            event(ResultCode::Ok, matched(carol, now, HOLD_DEFAULT)),
        ]
    );
    assert_eq!(stock(&mut engine, now), (1, 0, 1, 0, 0));
}

#[test]
fn matching_happens_at_the_new_clock_after_a_jump() {
    let mut engine = setup(1);
    hold(&mut engine, T, Reserve { hold_ms: 3_000, ..rsv(ALICE, 1, 1) });
    let bob = park(&mut engine, T, waiting(BOB, 1, 21, 4_000));
    let carol = park(&mut engine, T, waiting(CAROL, 1, 31, 10_000));
    // One advance over both the expiry (T+3000) and Bob's deadline (T+4000): at T+5000
    // Bob is due, so he is not matched; Carol is, with her hold starting now.
    let now = T + 5_000;
    tick(&mut engine, now);
    assert_eq!(
        events(&mut engine),
        vec![
            event(ResultCode::WaitTimeout, in_state(bob, ReservationState::WaitTimedOut)),
            event(ResultCode::Ok, matched(carol, now, HOLD_DEFAULT)),
        ]
    );
}

#[test]
fn a_cancel_at_a_waiters_deadline_does_not_match_it() {
    let mut engine = setup(1);
    let alice = hold(&mut engine, T, rsv(ALICE, 1, 1));
    let bob = park(&mut engine, T, waiting(BOB, 1, 21, 4_000));
    let now = T + 4_000;
    let reply = cancel(&mut engine, now, ALICE, Target::Reservation(alice.reservation), 2);
    assert_eq!(reply.result, ResultCode::Ok);
    assert_eq!(
        events(&mut engine),
        vec![event(ResultCode::WaitTimeout, in_state(bob, ReservationState::WaitTimedOut))]
    );
    assert_eq!(stock(&mut engine, now), (1, 1, 0, 0, 0));
    // The unit goes to the next newcomer.
    hold(&mut engine, now, rsv(DAVE, 1, 41));
}

// ---------------------------------------------------------------------------------------
// Sources of units: restock, expiry
// ---------------------------------------------------------------------------------------

#[test]
fn restock_feeds_waiters_before_newcomers() {
    let mut engine = setup(0);
    let bob = park(&mut engine, T, waiting(BOB, 2, 21, WAIT));
    let carol = park(&mut engine, T, waiting(CAROL, 1, 31, WAIT));
    // One unit: the head needs two; the unit stays for the line, not for Dave.
    let now = T + 10;
    let reply = adjust(&mut engine, now, SKU, 1, 1);
    assert_eq!(reply.result, ResultCode::Ok);
    assert_eq!(events(&mut engine), vec![]);
    assert_eq!(stock(&mut engine, now), (1, 1, 0, 0, 2));
    assert_eq!(reserve(&mut engine, now, rsv(DAVE, 1, 41)), bare(ResultCode::SoldOut));
    // Two more: both waiters are served, in order, before the reply.
    let now = T + 20;
    let reply = adjust(&mut engine, now, SKU, 2, 2);
    assert_eq!(reply.result, ResultCode::Ok);
    match reply.body {
        ReplyBody::Sku(view) => {
            assert_eq!(
                (view.total, view.available, view.reserved, view.sold, view.waiters),
                (3, 0, 3, 0, 0)
            )
        }
        other => panic!("ADJUST_STOCK body {other:?}"),
    }
    assert_eq!(
        events(&mut engine),
        vec![
            event(ResultCode::Ok, matched(bob, now, HOLD_DEFAULT)),
            event(ResultCode::Ok, matched(carol, now, HOLD_DEFAULT)),
        ]
    );
    assert_eq!(reserve(&mut engine, now, rsv(DAVE, 1, 41)), bare(ResultCode::SoldOut));
    assert_eq!(adjust(&mut engine, now, SKU, 1, 3).result, ResultCode::Ok);
    hold(&mut engine, now, rsv(DAVE, 1, 41));
    assert_eq!(stock(&mut engine, now), (4, 0, 4, 0, 0));
}

#[test]
fn expiry_feeds_waiters() {
    let mut engine = setup(1);
    let alice = hold(&mut engine, T, Reserve { hold_ms: 2_000, ..rsv(ALICE, 1, 1) });
    let bob = park(&mut engine, T + 1, waiting(BOB, 1, 21, 10_000));
    tick(&mut engine, T + 1_999);
    assert_eq!(events(&mut engine), vec![]);
    let now = T + 2_000;
    tick(&mut engine, now);
    assert_eq!(events(&mut engine), vec![event(ResultCode::Ok, matched(bob, now, HOLD_DEFAULT))]);
    assert_eq!(engine.counters().holds_expired, 1);
    assert_eq!(engine.counters().waiters_matched, 1);
    assert_eq!(stock(&mut engine, now), (1, 0, 1, 0, 0));
    let queried = query(&mut engine, now, ALICE, Target::Reservation(alice.reservation));
    assert_eq!(queried, with(ResultCode::Ok, in_state(alice, ReservationState::Expired)));
}

// ---------------------------------------------------------------------------------------
// Cancel and confirm of waiters
// ---------------------------------------------------------------------------------------

#[test]
fn cancel_of_the_head_waiter_lets_the_next_one_through() {
    let mut engine = setup(2);
    hold(&mut engine, T, rsv(ALICE, 1, 1));
    fund(&mut engine, T, BOB, 100, 9_999);
    let bob =
        park(&mut engine, T, Reserve { flags: RESERVE_FLAG_PAY, ..waiting(BOB, 2, 21, WAIT) });
    let carol = park(&mut engine, T, waiting(CAROL, 1, 31, WAIT));
    assert_eq!(stock(&mut engine, T), (2, 1, 1, 0, 2));
    assert_eq!(funds(&mut engine, T, BOB), (80, 20, 0));
    let now = T + 10;
    let cancelled = in_state(bob, ReservationState::Cancelled);
    assert_eq!(
        cancel(&mut engine, now, BOB, Target::ReserveKey(21), 22),
        with(ResultCode::Ok, cancelled)
    );
    assert_eq!(
        events(&mut engine),
        vec![
            event(ResultCode::AlreadyCancelled, cancelled),
            event(ResultCode::Ok, matched(carol, now, HOLD_DEFAULT)),
        ]
    );
    assert_eq!(stock(&mut engine, now), (2, 0, 2, 0, 0));
    assert_eq!(funds(&mut engine, now, BOB), (100, 0, 0));
    // The parked RESERVE's key now replays ALREADY_CANCELLED.
    assert_eq!(
        reserve(&mut engine, now, Reserve { flags: RESERVE_FLAG_PAY, ..waiting(BOB, 2, 21, WAIT) }),
        Reply {
            result: ResultCode::Duplicate,
            original: ResultCode::AlreadyCancelled,
            body: ReplyBody::Reservation(cancelled),
        }
    );
    assert_eq!(
        cancel(&mut engine, now, BOB, Target::ReserveKey(21), 23),
        with(ResultCode::AlreadyCancelled, cancelled)
    );
    assert_eq!(
        confirm(&mut engine, now, BOB, Target::ReserveKey(21), 23),
        with(ResultCode::AlreadyCancelled, cancelled)
    );
}

#[test]
fn cancel_of_a_waiter_behind_the_head_by_id() {
    let mut engine = setup(1);
    hold(&mut engine, T, rsv(ALICE, 1, 1));
    let bob = park(&mut engine, T, waiting(BOB, 1, 21, WAIT));
    let carol = park(&mut engine, T, waiting(CAROL, 1, 31, WAIT));
    let cancelled = in_state(carol, ReservationState::Cancelled);
    assert_eq!(
        cancel(&mut engine, T + 1, CAROL, Target::Reservation(carol.reservation), 32),
        with(ResultCode::Ok, cancelled)
    );
    assert_eq!(events(&mut engine), vec![event(ResultCode::AlreadyCancelled, cancelled)]);
    assert_eq!(stock(&mut engine, T + 1), (1, 0, 1, 0, 1));
    assert_eq!(query(&mut engine, T + 1, BOB, Target::ReserveKey(21)), with(ResultCode::Ok, bob));
}

#[test]
fn confirm_of_a_waiter_is_waiting_then_ok_after_the_match() {
    let mut engine = setup(1);
    let alice = hold(&mut engine, T, rsv(ALICE, 1, 1));
    let bob = park(&mut engine, T, waiting(BOB, 1, 21, WAIT));
    let keys = engine.retained_keys();
    assert_eq!(
        confirm(&mut engine, T, BOB, Target::Reservation(bob.reservation), 22),
        with(ResultCode::Waiting, bob)
    );
    assert_eq!(engine.retained_keys(), keys, "WAITING for CONFIRM does not consume the key");
    let now = T + 10;
    cancel(&mut engine, now, ALICE, Target::Reservation(alice.reservation), 2);
    let held = matched(bob, now, HOLD_DEFAULT);
    assert_eq!(events(&mut engine), vec![event(ResultCode::Ok, held)]);
    assert_eq!(
        confirm(&mut engine, now, BOB, Target::Reservation(bob.reservation), 22),
        with(ResultCode::Ok, in_state(held, ReservationState::Confirmed))
    );
    assert_eq!(stock(&mut engine, now), (1, 0, 0, 1, 0));
}

#[test]
fn duplicate_of_a_parked_key_replays_waiting_then_ok() {
    let mut engine = setup(1);
    let alice = hold(&mut engine, T, rsv(ALICE, 1, 1));
    let request = waiting(BOB, 1, 21, WAIT);
    let bob = park(&mut engine, T, request);
    let hash = engine.state_hash();
    assert_eq!(
        reserve(&mut engine, T, request),
        Reply {
            result: ResultCode::Duplicate,
            original: ResultCode::Waiting,
            body: ReplyBody::Reservation(bob),
        }
    );
    assert_eq!(engine.state_hash(), hash);
    assert_eq!(reserve(&mut engine, T, waiting(BOB, 1, 21, WAIT - 1)), bare(ResultCode::KeyReused));
    let now = T + 10;
    cancel(&mut engine, now, ALICE, Target::Reservation(alice.reservation), 2);
    let held = matched(bob, now, HOLD_DEFAULT);
    assert_eq!(events(&mut engine), vec![event(ResultCode::Ok, held)]);
    assert_eq!(
        reserve(&mut engine, now, request),
        Reply {
            result: ResultCode::Duplicate,
            original: ResultCode::Ok,
            body: ReplyBody::Reservation(held),
        }
    );
    assert_eq!(events(&mut engine), vec![]);
}

#[test]
fn a_buy_waiter_matched_is_confirmed() {
    let mut engine = setup(1);
    let alice = hold(&mut engine, T, rsv(ALICE, 1, 1));
    fund(&mut engine, T, BOB, 100, 9_999);
    let flags = RESERVE_FLAG_PAY | RESERVE_FLAG_BUY;
    let bob = park(&mut engine, T, Reserve { flags, ..waiting(BOB, 1, 21, WAIT) });
    assert_eq!((bob.flags, bob.amount), (flags, 10));
    assert_eq!(funds(&mut engine, T, BOB), (90, 10, 0));
    let now = T + 50;
    cancel(&mut engine, now, ALICE, Target::Reservation(alice.reservation), 2);
    let confirmed = ReservationView { state: ReservationState::Confirmed, deadline_ms: now, ..bob };
    assert_eq!(events(&mut engine), vec![event(ResultCode::Ok, confirmed)]);
    assert_eq!(stock(&mut engine, now), (1, 0, 0, 1, 0));
    assert_eq!(funds(&mut engine, now, BOB), (90, 0, 10));
    assert_eq!(engine.live_reservations(), 0);
}

#[test]
fn waiters_keep_their_place_when_paused_or_after_the_window() {
    let end = T + 5_000;
    let mut engine = setup_spec(Config::small(), SkuSpec { end_ms: end, ..spec(SKU, 2, 10) });
    let first = hold(&mut engine, T, rsv(ALICE, 1, 1));
    hold(&mut engine, T, Reserve { hold_ms: 6_000, ..rsv(ALICE, 1, 2) });
    let bob = park(&mut engine, T, waiting(BOB, 1, 21, WAIT));
    let carol = park(&mut engine, T, waiting(CAROL, 1, 31, WAIT));
    assert_eq!(run(&mut engine, T, Request::Pause { sku: SKU }).result, ResultCode::Ok);
    let now = T + 100;
    cancel(&mut engine, now, ALICE, Target::Reservation(first.reservation), 3);
    assert_eq!(events(&mut engine), vec![event(ResultCode::Ok, matched(bob, now, HOLD_DEFAULT))]);
    // After the window closed the second hold expires; Carol still gets it.
    let now = T + 6_000;
    assert!(now >= end);
    tick(&mut engine, now);
    assert_eq!(events(&mut engine), vec![event(ResultCode::Ok, matched(carol, now, HOLD_DEFAULT))]);
    assert_eq!(stock(&mut engine, now), (2, 0, 2, 0, 0));
}

// ---------------------------------------------------------------------------------------
// waitlist_max
// ---------------------------------------------------------------------------------------

#[test]
fn a_full_waitlist_is_overloaded() {
    let config = Config { waitlist_max: 2, ..Config::small() };
    let mut engine = setup_spec(config, spec(SKU, 0, 10));
    put_sku(&mut engine, T, spec(OTHER_SKU, 0, 10));
    let bob = park(&mut engine, T, waiting(BOB, 1, 21, WAIT));
    park(&mut engine, T, waiting(CAROL, 1, 31, WAIT));
    let keys = engine.retained_keys();
    let hash = engine.state_hash();
    assert_eq!(reserve(&mut engine, T, waiting(DAVE, 1, 41, WAIT)), bare(ResultCode::Overloaded));
    assert_eq!(engine.state_hash(), hash, "OVERLOADED changes nothing");
    assert_eq!(engine.retained_keys(), keys);
    // Business rules come first.
    assert_eq!(reserve(&mut engine, T, rsv(DAVE, 1, 41)), bare(ResultCode::SoldOut));
    assert_eq!(
        reserve(&mut engine, T, Reserve { flags: RESERVE_FLAG_PAY, ..waiting(DAVE, 1, 41, WAIT) }),
        bare(ResultCode::InsufficientFunds)
    );
    // Each SKU has its own line.
    park(&mut engine, T, Reserve { sku: OTHER_SKU, ..waiting(DAVE, 1, 42, WAIT) });
    // A place frees up: the same key parks.
    cancel(&mut engine, T, BOB, Target::Reservation(bob.reservation), 22);
    assert_eq!(events(&mut engine).len(), 1);
    park(&mut engine, T, waiting(DAVE, 1, 41, WAIT));
    assert_eq!(stock(&mut engine, T), (0, 0, 0, 0, 2));
}
