//! Regression tests for engine bugs found by the reference model (tests/engine_model.rs).
//! Each test names the rule of docs/SEMANTICS.md the engine broke.

use rush_engine::{Reserve, ResultCode};
use rush_suite::engine::{engine, put_sku, reserve, reserve_of, spec};

/// BUG (found by the model; fixed in 3c1ae70, which also stated the rule in SEMANTICS.md
/// "Matching"): when the head of a waitlist timed out, the waiter behind it was not fed,
/// although it fit the available units. SEMANTICS.md "Timers": "all due waiters time out, and the
/// released units go to the remaining waiters first-come-first-served"; invariant 6: no SKU
/// has a waiter at the head of its line that would fit the available units.
#[test]
fn head_wait_timeout_feeds_the_next_waiter() {
    let mut engine = engine();
    let t = 10_000;
    put_sku(&mut engine, t, spec(4, 1, 0));
    // A waits for 2 units (only 1 exists) for 1 ms; B waits for 1 unit behind A.
    let a = Reserve { wait_ms: 1, ..reserve_of(1, 4, 2, 1001) };
    let b = Reserve { wait_ms: 31, ..reserve_of(1, 4, 1, 1002) };
    assert_eq!(reserve(&mut engine, t, a).result, ResultCode::Waiting);
    assert_eq!(reserve(&mut engine, t, b).result, ResultCode::Waiting);
    engine.drain_events().for_each(drop);
    // At t + 1 A's wait ends: A times out and B, now at the head, gets the unit. (The engine's
    // own tick: the events are checked before the invariants, so a regression names B.)
    engine.tick(t + 1);
    let events: Vec<_> = engine.drain_events().collect();
    let outcomes: Vec<_> = events.iter().map(|e| (e.key, e.reply.result)).collect();
    assert!(outcomes.contains(&(1001, ResultCode::WaitTimeout)), "{events:?}");
    assert!(outcomes.contains(&(1002, ResultCode::Ok)), "B is not matched: {events:?}");
    engine.check_invariants().unwrap();
}
