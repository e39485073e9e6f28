//! Regression tests for engine bugs found by the reference model (tests/engine_model.rs).
//! Each test names the rule of docs/SEMANTICS.md the engine broke.

use rush_engine::{Config, Engine, Reply, Request, Reserve, ResultCode, SkuSpec};

fn engine() -> Engine {
    Engine::new(Config::small()).expect("Config::small is valid")
}

fn put_sku(engine: &mut Engine, now: u64, sku: u64, stock_total: u64) {
    let spec = SkuSpec {
        sku,
        stock_total,
        price: 0,
        per_user_limit: 0,
        hold_ms: 0,
        start_ms: 0,
        end_ms: 0,
    };
    assert_eq!(engine.execute(now, &Request::PutSku(spec)).result, ResultCode::Ok);
}

fn reserve(
    engine: &mut Engine,
    now: u64,
    account: u64,
    sku: u64,
    quantity: u32,
    key: u64,
    wait_ms: u32,
) -> Reply {
    engine.execute(
        now,
        &Request::Reserve(Reserve { account, sku, quantity, key, flags: 0, hold_ms: 0, wait_ms }),
    )
}

/// BUG (found by the model; fixed in 3c1ae70, which also stated the rule in SEMANTICS.md
/// "Matching"): when the head of a waitlist timed out, the waiter behind it was not fed,
/// although it fit the available units. SEMANTICS.md "Timers": "all due waiters time out, and the
/// released units go to the remaining waiters first-come-first-served"; invariant 6: no SKU
/// has a waiter at the head of its line that would fit the available units.
#[test]
fn head_wait_timeout_feeds_the_next_waiter() {
    let mut engine = engine();
    let t = 10_000;
    put_sku(&mut engine, t, 4, 1);
    // A waits for 2 units (only 1 exists) for 1 ms; B waits for 1 unit behind A.
    assert_eq!(reserve(&mut engine, t, 1, 4, 2, 1001, 1).result, ResultCode::Waiting);
    assert_eq!(reserve(&mut engine, t, 1, 4, 1, 1002, 31).result, ResultCode::Waiting);
    engine.drain_events().for_each(drop);
    // At t + 1 A's wait ends: A times out and B, now at the head, gets the unit.
    engine.tick(t + 1);
    let events: Vec<_> = engine.drain_events().collect();
    let outcomes: Vec<_> = events.iter().map(|e| (e.key, e.reply.result)).collect();
    assert!(outcomes.contains(&(1001, ResultCode::WaitTimeout)), "{events:?}");
    assert!(outcomes.contains(&(1002, ResultCode::Ok)), "B is not matched: {events:?}");
    engine.check_invariants().unwrap();
}
