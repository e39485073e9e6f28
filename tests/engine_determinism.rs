//! Determinism: the same requests at the same clock readings reach the same state.
//!
//! A seeded generator (`rush_suite::rng`, no proptest) produces long command sequences with the mix
//! of the model test (RESERVE with flags, holds and waits; retries with the same or other
//! parameters; CONFIRM / CANCEL by id or reserve key, including cancel-before-reserve;
//! queries; admin operations; clock steps, jumps, stale readings, bursts at one instant,
//! ticks), on a small configuration whose tables do fill up: OVERLOADED, retirement of
//! finished reservations and eviction of old request keys all happen. The sequence is a pure
//! function of the seed (reservations are named by reserve key or by guessed ids), so it can
//! be replayed with one command changed.
//!
//! For each seed: two fresh engines given the sequence answer identically (replies and
//! events, in order) and have equal `state_hash()` every few steps and at the end; a third
//! engine given the same requests through `execute_batch` (runs of requests at one clock
//! reading) answers identically too; and the same sequence with one command changed ends in
//! a different hash.

use rush_engine::{
    Config, Engine, Event, Reply, Request, Reserve, ResultCode, SkuSpec, Target, RESERVE_FLAG_BUY,
    RESERVE_FLAG_PAY,
};
use rush_suite::engine::{engine_with, is_keyed};
use rush_suite::rng::Rng;

const COMMANDS: usize = 50_000;
const SEEDS: [u64; 4] = [0x9E37_79B9_7F4A_7C15, 1, 0xDEAD_BEEF, 20_261_122];
/// `state_hash` comparison period.
const HASH_EVERY: usize = 100;
/// `check_invariants` period (it walks every table).
const CHECK_EVERY: usize = 1_000;
const T0: u64 = 1_767_225_600_000;

/// Tables small enough that a long run fills every one of them.
fn config() -> Config {
    Config {
        sku_max: 8,
        account_max: 16,
        reservation_max: 256,
        waitlist_max: 32,
        request_key_max: 512,
        request_key_retention_ms: 300,
        limit_entry_max: 64,
        quantity_max: 4,
        hold_ms_default: 50,
        hold_ms_max: 150,
        wait_ms_max: 150,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Tick,
    Execute(Request),
}

/// A command sequence: each op with the `now_ms` it is given.
fn generate(seed: u64, count: usize) -> Vec<(u64, Op)> {
    let mut rng = Rng::new(seed);
    let mut ops = Vec::with_capacity(count);
    let mut t = T0;
    let mut fresh_key = 1_000u64;
    // Remaining commands of a burst at one instant (fills the key table: OVERLOADED).
    let mut burst = 0u64;
    let mut keyed: Vec<Request> = Vec::new();
    let mut reserve_keys: Vec<(u64, u64)> = Vec::new();
    let mut fresh = |rng: &mut Rng| -> u64 {
        if rng.chance(85) {
            fresh_key += 1;
            fresh_key
        } else if rng.chance(90) {
            rng.range(1, 8)
        } else {
            0
        }
    };
    // Account 1 always has a wallet (the changed-command check deposits to it).
    ops.push((t, Op::Execute(Request::Deposit { account: 1, amount: 1_000, key: 1 })));
    while ops.len() < count {
        // The clock.
        let mut now = t;
        if burst > 0 {
            burst -= 1;
        } else {
            match rng.below(100) {
                0..=29 => {}
                30..=89 => t += rng.range(1, 10),
                90..=91 => t += rng.range(200, 1_000),
                92..=96 => now = t - rng.range(1, 100),
                _ => burst = rng.range(50, 600),
            }
        }
        let account = if rng.chance(2) { 0 } else { rng.range(1, 24) };
        let sku = if rng.chance(2) {
            0
        } else if rng.chance(50) {
            1
        } else {
            rng.range(2, 10)
        };
        let target = |rng: &mut Rng, reserve_keys: &[(u64, u64)], account: u64| -> (u64, Target) {
            match rng.below(10) {
                0..=5 if !reserve_keys.is_empty() => {
                    let back = rng.below(reserve_keys.len().min(32) as u64) as usize;
                    let (owner, key) = reserve_keys[reserve_keys.len() - 1 - back];
                    (if rng.chance(90) { owner } else { account }, Target::ReserveKey(key))
                }
                6 | 7 => {
                    // A guessed id: some generation of some slot.
                    let id = (rng.range(1, 4) << 32) | rng.below(260);
                    (account, Target::Reservation(id))
                }
                8 => (account, Target::ReserveKey(rng.range(1, 2_000_000))),
                _ => (account, Target::Reservation(rng.below(3))),
            }
        };
        let request = match rng.below(100) {
            0..=34 => {
                let key = fresh(&mut rng);
                let flags = rng.pick(&[
                    0,
                    0,
                    RESERVE_FLAG_PAY,
                    RESERVE_FLAG_BUY,
                    RESERVE_FLAG_PAY | RESERVE_FLAG_BUY,
                ]) | if rng.chance(1) { 1 << 5 } else { 0 };
                let reserve = Reserve {
                    account,
                    sku,
                    quantity: if rng.chance(3) {
                        rng.pick(&[0, 5])
                    } else {
                        rng.range(1, 3) as u32
                    },
                    key,
                    flags,
                    hold_ms: if rng.chance(40) { 0 } else { rng.range(1, 151) as u32 },
                    wait_ms: if rng.chance(40) { 0 } else { rng.range(1, 151) as u32 },
                };
                reserve_keys.push((account, key));
                Request::Reserve(reserve)
            }
            35..=42 if !keyed.is_empty() => {
                // A retry of a recent keyed request: same parameters, or one changed.
                let back = rng.below(keyed.len().min(64) as u64) as usize;
                let mut request = keyed[keyed.len() - 1 - back];
                if rng.chance(40) {
                    match &mut request {
                        Request::Reserve(r) => r.quantity = r.quantity % 3 + 1,
                        Request::Confirm { account, target, key } => {
                            request =
                                Request::Cancel { account: *account, target: *target, key: *key }
                        }
                        Request::Cancel { account, target, key } => {
                            request =
                                Request::Confirm { account: *account, target: *target, key: *key }
                        }
                        Request::Deposit { amount, .. } | Request::Withdraw { amount, .. } => {
                            *amount = amount.wrapping_add(1)
                        }
                        Request::AdjustStock { delta, .. } => *delta = delta.saturating_neg(),
                        _ => {}
                    }
                }
                request
            }
            43..=54 => {
                let (account, target) = target(&mut rng, &reserve_keys, account);
                Request::Confirm { account, target, key: fresh(&mut rng) }
            }
            55..=66 => {
                let (account, target) = target(&mut rng, &reserve_keys, account);
                Request::Cancel { account, target, key: fresh(&mut rng) }
            }
            67..=70 => {
                let (account, target) = target(&mut rng, &reserve_keys, account);
                Request::QueryReservation { account, target }
            }
            71..=72 => Request::QuerySku { sku },
            73..=74 => Request::QueryAccount { account },
            75..=78 => {
                let start_ms =
                    if rng.chance(70) { 0 } else { t.saturating_sub(200) + rng.below(400) };
                let end_ms = if rng.chance(70) { 0 } else { start_ms.max(t) + rng.range(0, 600) };
                Request::PutSku(SkuSpec {
                    sku,
                    stock_total: rng.below(20),
                    price: rng.pick(&[0, 1, 10, 99, u64::MAX / 3]),
                    per_user_limit: if sku % 3 == 0 { 2 } else { 0 },
                    hold_ms: rng.pick(&[0, 20, 80, 151]) as u32,
                    start_ms,
                    end_ms,
                })
            }
            79..=84 => {
                let delta = if rng.chance(2) {
                    rng.pick(&[0, i64::MAX, i64::MIN])
                } else if rng.chance(60) {
                    rng.range(1, 5) as i64
                } else {
                    -(rng.range(1, 5) as i64)
                };
                Request::AdjustStock { sku, delta, key: fresh(&mut rng) }
            }
            85 => Request::Pause { sku },
            86..=88 => Request::Resume { sku },
            89..=92 => {
                let amount =
                    if rng.chance(2) { rng.pick(&[0, u64::MAX]) } else { rng.range(1, 500) };
                Request::Deposit { account, amount, key: fresh(&mut rng) }
            }
            93..=95 => Request::Withdraw { account, amount: rng.below(300), key: fresh(&mut rng) },
            96 => Request::Ping,
            _ => {
                ops.push((now, Op::Tick));
                continue;
            }
        };
        if is_keyed(&request) {
            keyed.push(request);
        }
        ops.push((now, Op::Execute(request)));
    }
    ops
}

/// One engine's record of a run.
struct Run {
    engine: Engine,
    /// The reply of each op (`None` for ticks).
    replies: Vec<Option<Reply>>,
    /// Events drained after each op.
    events: Vec<Vec<Event>>,
    /// `state_hash` after every `HASH_EVERY` ops, and at the end.
    hashes: Vec<u64>,
}

fn run(ops: &[(u64, Op)]) -> Run {
    let mut engine = engine_with(config());
    let mut replies = Vec::with_capacity(ops.len());
    let mut events = Vec::with_capacity(ops.len());
    let mut hashes = Vec::new();
    for (index, &(now, op)) in ops.iter().enumerate() {
        replies.push(match op {
            Op::Tick => {
                engine.tick(now);
                None
            }
            Op::Execute(request) => Some(engine.execute(now, &request)),
        });
        events.push(engine.drain_events().collect());
        if (index + 1) % HASH_EVERY == 0 {
            hashes.push(engine.state_hash());
        }
        if (index + 1) % CHECK_EVERY == 0 {
            if let Err(violation) = engine.check_invariants() {
                panic!("after op #{index} {op:?} at {now}: {violation:?}");
            }
        }
    }
    hashes.push(engine.state_hash());
    engine.check_invariants().expect("invariants at the end");
    Run { engine, replies, events, hashes }
}

/// A run through `execute_batch`.
struct BatchedRun {
    engine: Engine,
    /// The reply of each op (`None` for ticks).
    replies: Vec<Option<Reply>>,
    /// Per batch (or tick): the index one past its last op, and the events drained after it.
    events: Vec<(usize, Vec<Event>)>,
}

/// The same ops through `execute_batch`: each run of requests with the same `now_ms` (up to
/// 16) is one batch.
fn run_batched(ops: &[(u64, Op)]) -> BatchedRun {
    let mut engine = engine_with(config());
    let mut replies = Vec::with_capacity(ops.len());
    let mut batch_events = Vec::new();
    let mut index = 0;
    let mut batch_replies = Vec::new();
    while index < ops.len() {
        let (now, op) = ops[index];
        let Op::Execute(_) = op else {
            engine.tick(now);
            replies.push(None);
            batch_events.push((index + 1, engine.drain_events().collect()));
            index += 1;
            continue;
        };
        let mut batch = Vec::new();
        while index < ops.len() && batch.len() < 16 {
            match ops[index] {
                (at, Op::Execute(request)) if at == now => batch.push(request),
                _ => break,
            }
            index += 1;
        }
        batch_replies.clear();
        engine.execute_batch(now, &batch, &mut batch_replies);
        assert_eq!(batch_replies.len(), batch.len(), "one reply per request of a batch");
        replies.extend(batch_replies.iter().copied().map(Some));
        batch_events.push((index, engine.drain_events().collect()));
    }
    BatchedRun { engine, replies, events: batch_events }
}

fn first_difference<T: PartialEq>(a: &[T], b: &[T]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y).or((a.len() != b.len()).then(|| a.len().min(b.len())))
}

fn check_seed(seed: u64) {
    let ops = generate(seed, COMMANDS);
    assert_eq!(ops.len(), COMMANDS);
    let a = run(&ops);
    let b = run(&ops);

    if let Some(i) = first_difference(&a.replies, &b.replies) {
        panic!(
            "seed {seed}: replies differ at op #{i} {:?}: {:?} vs {:?}",
            ops[i], a.replies[i], b.replies[i]
        );
    }
    if let Some(i) = first_difference(&a.events, &b.events) {
        panic!("seed {seed}: events differ after op #{i} {:?}", ops[i]);
    }
    if let Some(i) = first_difference(&a.hashes, &b.hashes) {
        panic!("seed {seed}: state hashes differ after op #{}", (i + 1) * HASH_EVERY - 1);
    }
    assert_eq!(a.engine.state_hash(), b.engine.state_hash());
    assert_eq!(a.engine.now_ms(), b.engine.now_ms());

    // The hash follows the state: it changes along the run.
    let mut distinct = a.hashes.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() > a.hashes.len() / 2, "seed {seed}: the state hash barely changes");

    // The run exercised the interesting paths, including the bounds.
    let count = |code: ResultCode| a.replies.iter().flatten().filter(|r| r.result == code).count();
    let events: usize = a.events.iter().map(Vec::len).sum();
    for code in [
        ResultCode::Ok,
        ResultCode::Duplicate,
        ResultCode::KeyReused,
        ResultCode::SoldOut,
        ResultCode::Waiting,
        ResultCode::Overloaded,
        ResultCode::AlreadyCancelled,
        ResultCode::Expired,
    ] {
        assert!(count(code) > 0, "seed {seed}: no {code:?} in {COMMANDS} commands");
    }
    assert!(events > 0, "seed {seed}: no events");
    let counters = a.engine.counters();
    assert!(counters.reservations_retired > 0, "seed {seed}: no reservation retired");
    assert!(counters.keys_evicted > 0, "seed {seed}: no request key evicted");
    assert!(counters.waiters_matched > 0, "seed {seed}: no waiter matched");

    // execute_batch is exactly equivalent to execute, request by request.
    let BatchedRun { engine: batched, replies: batched_replies, events: batch_events } =
        run_batched(&ops);
    if let Some(i) = first_difference(&a.replies, &batched_replies) {
        panic!(
            "seed {seed}: execute_batch reply differs at op #{i} {:?}: {:?} vs {:?}",
            ops[i], a.replies[i], batched_replies[i]
        );
    }
    let mut start = 0;
    for (end, events) in &batch_events {
        let expected: Vec<Event> = a.events[start..*end].concat();
        assert_eq!(&expected, events, "seed {seed}: execute_batch events of ops #{start}..#{end}");
        start = *end;
    }
    assert_eq!(batched.state_hash(), a.engine.state_hash(), "seed {seed}: execute_batch state");

    // One command changed: a keyed request that took effect (so the key table had room) in
    // the middle of the run becomes a deposit of 1 to account 1 (which has a wallet). The
    // final state, and so the hash, differs.
    let position = (COMMANDS / 2..COMMANDS)
        .find(|&i| match (ops[i].1, a.replies[i]) {
            (Op::Execute(request), Some(reply)) => {
                reply.result == ResultCode::Ok
                    && matches!(
                        request,
                        Request::Reserve(_) | Request::Confirm { .. } | Request::Withdraw { .. }
                    )
            }
            _ => false,
        })
        .expect("some RESERVE, CONFIRM or WITHDRAW succeeds in the second half");
    let mut changed = ops.clone();
    changed[position].1 = Op::Execute(Request::Deposit { account: 1, amount: 1, key: u64::MAX });
    let c = run(&changed);
    assert_eq!(
        c.replies[position].map(|r| r.result),
        Some(ResultCode::Ok),
        "seed {seed}: the changed command took effect"
    );
    assert_eq!(
        c.replies[..position],
        a.replies[..position],
        "seed {seed}: the runs agree before the change"
    );
    assert_ne!(
        c.engine.state_hash(),
        a.engine.state_hash(),
        "seed {seed}: a different sequence reached the same hash"
    );
}

#[test]
fn same_sequence_same_state() {
    for seed in SEEDS {
        check_seed(seed);
    }
}
