//! Engine bounds: the defined answer of every bounded table when it is full (reservation
//! slots, request keys, limit counters), retirement of finished reservations, key
//! retention, config validation and the monotonic clock (docs/SEMANTICS.md, Tables and
//! their bounds, Request keys, Clock).

use rush_engine::ReservationIdParts;
use rush_engine::{
    Config, Engine, Reply, ReplyBody, Request, ReservationState, ReservationView, Reserve,
    ResultCode, SkuSpec, Target, NOW_MS_LIMIT, RESERVE_FLAG_PAY,
};
use rush_suite::engine::{
    bare, deposit, engine_with, hold, put_sku, query, reserve, reserve_of, run, spec, tick,
};

const SKU: u64 = 7;
const EMPTY_SKU: u64 = 8;
const ALICE: u64 = 11;
const BOB: u64 = 12;
const CAROL: u64 = 13;
const T: u64 = 1_000_000;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn rsv(account: u64, quantity: u32, key: u64) -> Reserve {
    reserve_of(account, SKU, quantity, key)
}

fn slot_of(id: u64) -> u32 {
    ReservationIdParts::parse(id).slot
}

fn generation_of(id: u64) -> u32 {
    ReservationIdParts::parse(id).generation
}

/// The answer `Engine::new` gives a config: the failing field, or `None` when valid.
fn refused_field(config: Config) -> Option<&'static str> {
    match Engine::new(config) {
        Ok(_) => None,
        Err(error) => Some(error.field),
    }
}

// ---------------------------------------------------------------------------------------
// Reservation slots
// ---------------------------------------------------------------------------------------

#[test]
fn reservation_slots_all_live_is_overloaded_and_finished_ones_are_retired_oldest_first() {
    let config = Config { reservation_max: 4, waitlist_max: 4, ..Config::small() };
    let mut engine = engine_with(config);
    put_sku(&mut engine, T, spec(SKU, 100, 10));
    put_sku(&mut engine, T, spec(EMPTY_SKU, 0, 10));
    let views: Vec<ReservationView> =
        (1..=4).map(|key| hold(&mut engine, T, rsv(ALICE, 1, key))).collect();
    assert_eq!(engine.live_reservations(), 4);

    // Every slot is live.
    let hash = engine.state_hash();
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, 1, 5)), bare(ResultCode::Overloaded));
    let park = Reserve { sku: EMPTY_SKU, wait_ms: 1_000, ..rsv(BOB, 1, 1) };
    assert_eq!(reserve(&mut engine, T, park), bare(ResultCode::Overloaded));
    // Business rules first.
    assert_eq!(
        reserve(&mut engine, T, Reserve { sku: 999, ..rsv(ALICE, 1, 5) }),
        bare(ResultCode::UnknownSku)
    );
    assert_eq!(reserve(&mut engine, T, Reserve { wait_ms: 0, ..park }), bare(ResultCode::SoldOut));
    assert_eq!(engine.state_hash(), hash, "OVERLOADED changes nothing");

    // Finish the third, then the first: the third is the oldest finished.
    let confirm = Request::Confirm {
        account: ALICE,
        target: Target::Reservation(views[2].reservation),
        key: 13,
    };
    assert_eq!(run(&mut engine, T + 1, confirm).result, ResultCode::Ok);
    let cancel = Request::Cancel {
        account: ALICE,
        target: Target::Reservation(views[0].reservation),
        key: 11,
    };
    assert_eq!(run(&mut engine, T + 2, cancel).result, ResultCode::Ok);
    assert_eq!(engine.live_reservations(), 2);

    // A new reservation retires the third.
    let fifth = hold(&mut engine, T + 3, rsv(ALICE, 1, 5));
    assert_eq!(engine.counters().reservations_retired, 1);
    assert_eq!(slot_of(fifth.reservation), slot_of(views[2].reservation), "the only reusable slot");
    assert_ne!(generation_of(fifth.reservation), generation_of(views[2].reservation));
    let retired = Target::Reservation(views[2].reservation);
    assert_eq!(query(&mut engine, T + 3, ALICE, retired), bare(ResultCode::UnknownReservation));
    assert_eq!(
        query(&mut engine, T + 3, ALICE, Target::ReserveKey(3)),
        bare(ResultCode::UnknownReservation)
    );
    let confirm_again = Request::Confirm { account: ALICE, target: retired, key: 20 };
    assert_eq!(run(&mut engine, T + 3, confirm_again), bare(ResultCode::UnknownReservation));
    let confirm_by_key =
        Request::Confirm { account: ALICE, target: Target::ReserveKey(3), key: 20 };
    assert_eq!(run(&mut engine, T + 3, confirm_by_key), bare(ResultCode::UnknownReservation));
    // CANCEL by the retired reservation's (recorded) key is not a cancel-before-reserve.
    let cancel_by_key = Request::Cancel { account: ALICE, target: Target::ReserveKey(3), key: 21 };
    assert_eq!(run(&mut engine, T + 3, cancel_by_key), bare(ResultCode::UnknownReservation));
    // Replays of its keys: the original outcome, no body.
    let duplicate =
        Reply { result: ResultCode::Duplicate, original: ResultCode::Ok, body: ReplyBody::None };
    assert_eq!(reserve(&mut engine, T + 3, rsv(ALICE, 1, 3)), duplicate);
    assert_eq!(run(&mut engine, T + 3, confirm), duplicate);
    // The first (cancelled later) is still there.
    assert_eq!(
        query(&mut engine, T + 3, ALICE, Target::Reservation(views[0].reservation)),
        Reply::with_body(
            ResultCode::Ok,
            ReplyBody::Reservation(ReservationView {
                state: ReservationState::Cancelled,
                ..views[0]
            })
        )
    );

    // The next one retires the first.
    hold(&mut engine, T + 4, rsv(ALICE, 1, 6));
    assert_eq!(engine.counters().reservations_retired, 2);
    assert_eq!(
        query(&mut engine, T + 4, ALICE, Target::Reservation(views[0].reservation)),
        bare(ResultCode::UnknownReservation)
    );
    // All live again.
    assert_eq!(engine.live_reservations(), 4);
    assert_eq!(reserve(&mut engine, T + 4, rsv(ALICE, 1, 7)), bare(ResultCode::Overloaded));
    // An expiry finishes one: its slot can be reused.
    tick(&mut engine, T + 60_000);
    assert_eq!(engine.live_reservations(), 2, "the second and the fourth expired");
    hold(&mut engine, T + 60_000, rsv(ALICE, 1, 7));
}

// ---------------------------------------------------------------------------------------
// Request keys
// ---------------------------------------------------------------------------------------

#[test]
fn a_key_table_full_of_young_keys_is_overloaded_until_the_oldest_age_out() {
    let retention = 2_000;
    let config = Config {
        request_key_max: 4,
        hold_ms_max: 1_000,
        hold_ms_default: 1_000,
        wait_ms_max: 1_000,
        request_key_retention_ms: retention,
        ..Config::small()
    };
    let mut engine = engine_with(config);
    put_sku(&mut engine, T, spec(SKU, 10, 10));
    assert_eq!(deposit(&mut engine, T, ALICE, 100, 1).result, ResultCode::Ok);
    let paid = Reserve { flags: RESERVE_FLAG_PAY, ..rsv(ALICE, 1, 2) };
    hold(&mut engine, T + 100, paid);
    assert_eq!(deposit(&mut engine, T + 200, ALICE, 100, 3).result, ResultCode::Ok);
    assert_eq!(deposit(&mut engine, T + 300, ALICE, 100, 4).result, ResultCode::Ok);
    assert_eq!(engine.retained_keys(), 4);

    // Full of young keys: every recording request is OVERLOADED.
    let now = T + 300;
    let hash = engine.state_hash();
    let overloaded = [
        ("deposit", Request::Deposit { account: ALICE, amount: 1, key: 5 }),
        ("withdraw", Request::Withdraw { account: ALICE, amount: 1, key: 5 }),
        ("reserve", Request::Reserve(rsv(ALICE, 1, 5))),
        ("reserve of another account", Request::Reserve(rsv(BOB, 1, 5))),
        ("confirm", Request::Confirm { account: ALICE, target: Target::ReserveKey(2), key: 5 }),
        ("cancel", Request::Cancel { account: ALICE, target: Target::ReserveKey(2), key: 5 }),
        (
            "cancel before reserve",
            Request::Cancel { account: ALICE, target: Target::ReserveKey(50), key: 51 },
        ),
        ("adjust stock", Request::AdjustStock { sku: SKU, delta: 1, key: 1 }),
    ];
    for (name, request) in overloaded {
        assert_eq!(run(&mut engine, now, request), bare(ResultCode::Overloaded), "{name}");
    }
    // Business rules, replays, queries and unkeyed admin requests still answer.
    assert_eq!(
        run(&mut engine, now, Request::Withdraw { account: ALICE, amount: 1_000, key: 5 }),
        bare(ResultCode::InsufficientFunds)
    );
    assert_eq!(
        reserve(&mut engine, now, Reserve { sku: 999, ..rsv(ALICE, 1, 5) }),
        bare(ResultCode::UnknownSku)
    );
    assert_eq!(deposit(&mut engine, now, ALICE, 100, 1).result, ResultCode::Duplicate);
    assert_eq!(run(&mut engine, now, Request::Ping), bare(ResultCode::Ok));
    assert_eq!(engine.state_hash(), hash, "OVERLOADED changes nothing");
    assert_eq!(run(&mut engine, now, Request::Pause { sku: SKU }).result, ResultCode::Ok);
    assert_eq!(run(&mut engine, now, Request::Resume { sku: SKU }).result, ResultCode::Ok);

    // One millisecond before key 1 may be forgotten.
    assert_eq!(deposit(&mut engine, T + retention - 1, ALICE, 1, 5), bare(ResultCode::Overloaded));
    // At T + retention only key 1 is old enough: a cancel-before-reserve needs two.
    let now = T + retention;
    let cancel_before = Request::Cancel { account: ALICE, target: Target::ReserveKey(50), key: 51 };
    assert_eq!(run(&mut engine, now, cancel_before), bare(ResultCode::Overloaded));
    assert_eq!(deposit(&mut engine, now, ALICE, 1, 5).result, ResultCode::Ok);
    assert_eq!(engine.counters().keys_evicted, 1);
    assert_eq!(engine.retained_keys(), 4);
    // Key 2 (recorded at T + 100) is not old enough yet.
    assert_eq!(deposit(&mut engine, now, ALICE, 100, 1), bare(ResultCode::Overloaded));
    // Key 1 was forgotten: at T + 100 + retention its retry is a new deposit, not a DUPLICATE.
    let now = T + 100 + retention;
    let again = deposit(&mut engine, now, ALICE, 100, 1);
    assert_eq!(again.result, ResultCode::Ok);
    assert_eq!(engine.counters().keys_evicted, 2);
    match again.body {
        ReplyBody::Account(view) => assert_eq!((view.available, view.deposited), (401, 401)),
        other => panic!("DEPOSIT body {other:?}"),
    }
    // Keys 3 and 4 are still remembered.
    assert_eq!(deposit(&mut engine, now, ALICE, 100, 3).result, ResultCode::Duplicate);
    assert_eq!(deposit(&mut engine, now, ALICE, 100, 4).result, ResultCode::Duplicate);
    // Key 2 was forgotten too: the RESERVE is evaluated afresh (once key 3 ages out).
    assert_eq!(reserve(&mut engine, now, paid), bare(ResultCode::Overloaded));
    let fresh = hold(&mut engine, T + 200 + retention, paid);
    assert_eq!(fresh.deadline_ms, T + 200 + retention + 1_000);
    assert_eq!(engine.retained_keys(), 4);
    assert_eq!(engine.counters().keys_evicted, 3);
}

#[test]
fn tombstones_occupy_the_key_table() {
    let config = Config { request_key_max: 3, ..Config::small() };
    let mut engine = engine_with(config);
    put_sku(&mut engine, T, spec(SKU, 10, 10));
    let cancel_before = Request::Cancel { account: ALICE, target: Target::ReserveKey(50), key: 51 };
    assert_eq!(run(&mut engine, T, cancel_before), bare(ResultCode::Ok));
    assert_eq!(engine.retained_keys(), 2);
    // One key left: a second cancel-before-reserve needs two.
    let second = Request::Cancel { account: ALICE, target: Target::ReserveKey(60), key: 61 };
    assert_eq!(run(&mut engine, T, second), bare(ResultCode::Overloaded));
    // A second empty rollback of the existing tombstone needs one.
    let again = Request::Cancel { account: ALICE, target: Target::ReserveKey(50), key: 52 };
    assert_eq!(run(&mut engine, T, again), bare(ResultCode::Ok));
    assert_eq!(engine.retained_keys(), 3);
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, 1, 1)), bare(ResultCode::Overloaded));
    // The tombstone still refuses its late RESERVE: ALREADY_CANCELLED, not OVERLOADED.
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, 1, 50)), bare(ResultCode::AlreadyCancelled));
}

// ---------------------------------------------------------------------------------------
// Limit counters
// ---------------------------------------------------------------------------------------

#[test]
fn a_full_limit_counter_table_is_overloaded() {
    let config = Config { limit_entry_max: 2, ..Config::small() };
    let mut engine = engine_with(config);
    put_sku(&mut engine, T, SkuSpec { per_user_limit: 5, ..spec(SKU, 100, 10) });
    put_sku(&mut engine, T, spec(EMPTY_SKU, 100, 10)); // unlimited
    hold(&mut engine, T, rsv(ALICE, 1, 1));
    let bob = hold(&mut engine, T, rsv(BOB, 1, 1));
    let hash = engine.state_hash();
    assert_eq!(reserve(&mut engine, T, rsv(CAROL, 1, 1)), bare(ResultCode::Overloaded));
    assert_eq!(engine.state_hash(), hash, "OVERLOADED changes nothing");
    // Business rules first.
    assert_eq!(reserve(&mut engine, T, rsv(CAROL, 6, 1)), bare(ResultCode::LimitExceeded));
    let paid = Reserve { flags: RESERVE_FLAG_PAY, ..rsv(CAROL, 1, 1) };
    assert_eq!(reserve(&mut engine, T, paid), bare(ResultCode::InsufficientFunds));
    // An existing counter needs no room; an unlimited SKU needs no counter.
    hold(&mut engine, T, rsv(ALICE, 2, 2));
    hold(&mut engine, T, Reserve { sku: EMPTY_SKU, ..rsv(CAROL, 1, 1) });
    // A counter that drops to zero is removed: Bob's cancel makes room for Carol.
    let cancel =
        Request::Cancel { account: BOB, target: Target::Reservation(bob.reservation), key: 2 };
    assert_eq!(run(&mut engine, T, cancel).result, ResultCode::Ok);
    hold(&mut engine, T, rsv(CAROL, 1, 2));
    // Carol took the freed counter: now Bob finds no room.
    assert_eq!(reserve(&mut engine, T, rsv(BOB, 1, 3)), bare(ResultCode::Overloaded));
}

#[test]
fn an_expired_hold_frees_its_limit_counter() {
    let config = Config { limit_entry_max: 1, ..Config::small() };
    let mut engine = engine_with(config);
    put_sku(&mut engine, T, SkuSpec { per_user_limit: 5, ..spec(SKU, 100, 10) });
    hold(&mut engine, T, Reserve { hold_ms: 500, ..rsv(ALICE, 1, 1) });
    assert_eq!(reserve(&mut engine, T + 499, rsv(BOB, 1, 1)), bare(ResultCode::Overloaded));
    hold(&mut engine, T + 500, rsv(BOB, 1, 1));
}

// ---------------------------------------------------------------------------------------
// Config validation
// ---------------------------------------------------------------------------------------

#[test]
fn every_positive_field_must_be_nonzero() {
    let base = Config::small();
    let cases: [(&str, Config); 10] = [
        ("sku_max", Config { sku_max: 0, ..base }),
        ("account_max", Config { account_max: 0, ..base }),
        ("reservation_max", Config { reservation_max: 0, ..base }),
        ("waitlist_max", Config { waitlist_max: 0, ..base }),
        ("request_key_max", Config { request_key_max: 0, ..base }),
        ("limit_entry_max", Config { limit_entry_max: 0, ..base }),
        ("quantity_max", Config { quantity_max: 0, ..base }),
        ("hold_ms_default", Config { hold_ms_default: 0, ..base }),
        ("hold_ms_max", Config { hold_ms_max: 0, ..base }),
        ("wait_ms_max", Config { wait_ms_max: 0, ..base }),
    ];
    for (field, config) in cases {
        assert_eq!(refused_field(config), Some(field), "{field}");
        assert_eq!(config.validate().map_err(|error| error.field), Err(field));
    }
}

#[test]
fn table_sizes_are_at_most_2_pow_28() {
    let base = Config::small();
    let too_big = (1 << 28) + 1;
    let cases = [
        ("sku_max", Config { sku_max: too_big, ..base }),
        ("account_max", Config { account_max: too_big, ..base }),
        ("reservation_max", Config { reservation_max: too_big, ..base }),
        ("request_key_max", Config { request_key_max: too_big, ..base }),
        ("limit_entry_max", Config { limit_entry_max: too_big, ..base }),
    ];
    for (field, config) in cases {
        assert_eq!(refused_field(config), Some(field), "{field}");
        assert_eq!(config.validate().map_err(|error| error.field), Err(field));
    }
    // 2^28 itself is valid (checked without allocating), except for reservation slots,
    // whose index has 26 bits in a reservation id, and quantities, kept in 16 bits.
    let at_limit = Config {
        sku_max: 1 << 28,
        account_max: 1 << 28,
        reservation_max: 1 << 26,
        request_key_max: 1 << 28,
        limit_entry_max: 1 << 28,
        quantity_max: u32::from(u16::MAX),
        ..base
    };
    assert_eq!(at_limit.validate(), Ok(()));
    let narrow = [
        ("reservation_max", Config { reservation_max: (1 << 26) + 1, ..at_limit }),
        ("quantity_max", Config { quantity_max: u32::from(u16::MAX) + 1, ..at_limit }),
    ];
    for (field, config) in narrow {
        assert_eq!(config.validate().map_err(|error| error.field), Err(field));
    }
}

#[test]
fn cross_field_rules() {
    let base = Config::small();
    // A waiter occupies a reservation slot.
    let waitlist = Config { reservation_max: 16, waitlist_max: 17, ..base };
    assert_eq!(refused_field(waitlist), Some("waitlist_max"));
    assert_eq!(refused_field(Config { waitlist_max: 16, ..waitlist }), None);
    // The default hold is a hold.
    let hold = Config { hold_ms_default: 1_001, hold_ms_max: 1_000, ..base };
    assert_eq!(refused_field(hold), Some("hold_ms_default"));
    assert_eq!(refused_field(Config { hold_ms_default: 1_000, ..hold }), None);
    // Keys outlive every live reservation.
    let retention = Config {
        hold_ms_max: 1_000,
        hold_ms_default: 1_000,
        wait_ms_max: 500,
        request_key_retention_ms: 1_499,
        ..base
    };
    assert_eq!(refused_field(retention), Some("request_key_retention_ms"));
    assert_eq!(refused_field(Config { request_key_retention_ms: 1_500, ..retention }), None);
    // hold_ms_max + wait_ms_max must be below 2^36 ms: the largest u32 values still are.
    let longest = Config {
        hold_ms_max: u32::MAX,
        wait_ms_max: u32::MAX,
        request_key_retention_ms: 2 * u64::from(u32::MAX),
        ..base
    };
    assert_eq!(longest.validate(), Ok(()));
    assert_eq!(
        refused_field(Config { request_key_retention_ms: 2 * u64::from(u32::MAX) - 1, ..longest }),
        Some("request_key_retention_ms")
    );
    // The shipped configurations are valid.
    assert_eq!(Config::default().validate(), Ok(()));
    assert_eq!(refused_field(Config::small()), None);
}

// ---------------------------------------------------------------------------------------
// The clock
// ---------------------------------------------------------------------------------------

#[test]
fn the_clock_never_goes_back() {
    let mut engine = engine_with(Config::small());
    put_sku(&mut engine, T, SkuSpec { end_ms: T + 5_000, ..spec(SKU, 10, 10) });
    put_sku(&mut engine, T, spec(EMPTY_SKU, 1, 10));
    assert_eq!(reserve(&mut engine, T + 6_000, rsv(ALICE, 1, 1)), bare(ResultCode::Ended));
    assert_eq!(engine.now_ms(), T + 6_000);
    // An earlier now_ms acts as the current clock: still ENDED.
    assert_eq!(reserve(&mut engine, T, rsv(ALICE, 1, 1)), bare(ResultCode::Ended));
    assert_eq!(engine.now_ms(), T + 6_000);
    // Deadlines are computed from the current clock.
    let other = |key| Reserve { sku: EMPTY_SKU, hold_ms: 1_000, ..rsv(ALICE, 1, key) };
    let view = hold(&mut engine, T, other(2));
    assert_eq!(view.deadline_ms, T + 7_000);
    let wait = Reserve { wait_ms: 2_000, ..other(3) };
    let parked = reserve(&mut engine, 0, Reserve { account: BOB, ..wait });
    assert_eq!(parked.result, ResultCode::Waiting);
    assert_eq!(parked.reservation().map(|view| view.deadline_ms), Some(T + 8_000));
    // A tick backwards changes nothing.
    let hash = engine.state_hash();
    tick(&mut engine, T);
    tick(&mut engine, 0);
    assert_eq!(engine.state_hash(), hash);
    assert_eq!(engine.now_ms(), T + 6_000);
    // Expiry follows the real deadline.
    tick(&mut engine, T + 6_999);
    assert_eq!(engine.live_reservations(), 2);
    tick(&mut engine, T + 7_000);
    let matched: Vec<_> = engine.drain_events().collect();
    assert_eq!(matched.len(), 1);
    assert_eq!((matched[0].account, matched[0].reply.result), (BOB, ResultCode::Ok));
    assert_eq!(
        query(&mut engine, 5, ALICE, Target::Reservation(view.reservation)),
        Reply::with_body(
            ResultCode::Ok,
            ReplyBody::Reservation(ReservationView { state: ReservationState::Expired, ..view })
        )
    );
    assert_eq!(engine.now_ms(), T + 7_000);
}

#[test]
fn the_largest_clock_reading_below_the_limit_works() {
    assert_eq!(NOW_MS_LIMIT, 1 << 60);
    let mut engine = engine_with(Config::small());
    put_sku(&mut engine, T, spec(SKU, 10, 10));
    let now = NOW_MS_LIMIT - 1;
    let view = hold(&mut engine, now, rsv(ALICE, 1, 1));
    assert_eq!(view.deadline_ms, now + 60_000);
    assert_eq!(engine.now_ms(), now);
}

#[test]
#[should_panic(expected = "is not unix milliseconds")]
fn a_clock_reading_at_the_limit_stops_the_engine() {
    let mut engine = engine_with(Config::small());
    engine.execute(NOW_MS_LIMIT, &Request::Ping);
}

#[test]
#[should_panic(expected = "is not unix milliseconds")]
fn a_tick_at_the_limit_stops_the_engine() {
    let mut engine = engine_with(Config::small());
    engine.tick(u64::MAX);
}

// ---------------------------------------------------------------------------------------
// A server's capacities divided among its shards
// ---------------------------------------------------------------------------------------

#[test]
fn a_servers_capacities_are_shared_by_its_shards_as_the_accounts_are() {
    let server = Config {
        account_max: 100_000,
        reservation_max: 200_000,
        waitlist_max: 100_000,
        request_key_max: 300_000,
        limit_entry_max: 50_000,
        ..Config::default()
    };
    server.validate().unwrap();
    assert_eq!(server.per_shard(1), server, "one shard holds the whole server");
    for shard_count in [2, 3, 4, 8, 64] {
        let shard = server.per_shard(shard_count);
        shard.validate().unwrap();
        let even = server.account_max.div_ceil(shard_count);
        assert!(shard.account_max >= even, "{shard_count}: {shard:?}");
        assert!(shard.account_max <= even + 3 * even.isqrt() + 1, "{shard_count}: {shard:?}");
        assert!(shard.reservation_max < server.reservation_max);
        assert!(shard.waitlist_max <= shard.reservation_max);
        // Per SKU or per request: not divided.
        assert_eq!(shard.sku_max, server.sku_max);
        assert_eq!(shard.quantity_max, server.quantity_max);
        assert_eq!(shard.hold_ms_max, server.hold_ms_max);
        assert_eq!(shard.request_key_retention_ms, server.request_key_retention_ms);
    }
    // 64 shards of 200,000 slots: 3,125 each plus headroom, and the waitlist with them.
    assert!(server.per_shard(64).waitlist_max < 4_000);
    // A tiny server is never given more per shard than it has in all.
    let tiny = Config { account_max: 3, ..Config::small() };
    assert_eq!(tiny.per_shard(2).account_max, 3);
}

#[test]
fn accounts_1_to_n_fill_a_server_to_its_total_without_a_shard_running_out_first() {
    for shard_count in [2u32, 3, 4, 8] {
        let server = Config { account_max: 100_000, ..Config::default() };
        let shard = server.per_shard(shard_count);
        let mut per_shard = vec![0u32; shard_count as usize];
        for account in 1..=u64::from(server.account_max) {
            per_shard[rush_engine::quota::home_shard(account, shard_count) as usize] += 1;
        }
        let fullest = *per_shard.iter().max().unwrap();
        assert!(
            fullest <= shard.account_max,
            "{shard_count} shards: the fullest has {fullest} accounts, its share is {}",
            shard.account_max
        );
    }
}
