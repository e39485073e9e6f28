//! Every result code the engine can give is reachable: one scripted scenario per code of
//! `ResultCode::ALL`, except RATE_LIMITED and UNAUTHORIZED, which only the network layer
//! produces.

use std::collections::BTreeSet;

use rush_engine::{
    Config, Engine, Reply, Request, Reserve, ResultCode, SkuSpec, Target, RESERVE_FLAG_PAY,
};
use rush_suite::engine::{engine_with, reserve_of, run, spec, tick};

const SKU: u64 = 7;
const ALICE: u64 = 11;
const BOB: u64 = 12;
const T: u64 = 1_000_000;

/// An engine that remembers every code it answered, in replies and in events.
struct Recorder {
    engine: Engine,
    seen: BTreeSet<ResultCode>,
}

impl Recorder {
    fn new(config: Config) -> Recorder {
        Recorder { engine: engine_with(config), seen: BTreeSet::new() }
    }

    /// A SKU of `stock` units at price 10 with `per_user_limit` and window `start..end`.
    fn with_sku(stock: u64, per_user_limit: u32, start_ms: u64, end_ms: u64) -> Recorder {
        let mut recorder = Recorder::new(Config::small());
        let spec = SkuSpec { per_user_limit, start_ms, end_ms, ..spec(SKU, stock, 10) };
        assert_eq!(recorder.run(T, Request::PutSku(spec)).result, ResultCode::Ok);
        recorder
    }

    fn run(&mut self, now: u64, request: Request) -> Reply {
        let reply = run(&mut self.engine, now, request);
        self.seen.insert(reply.result);
        self.drain();
        reply
    }

    fn tick(&mut self, now: u64) {
        tick(&mut self.engine, now);
        self.drain();
    }

    fn drain(&mut self) {
        let codes: Vec<ResultCode> =
            self.engine.drain_events().map(|event| event.reply.result).collect();
        self.seen.extend(codes);
    }

    fn reserve(&mut self, now: u64, reserve: Reserve) -> Reply {
        self.run(now, Request::Reserve(reserve))
    }
}

fn rsv(account: u64, quantity: u32, key: u64) -> Reserve {
    reserve_of(account, SKU, quantity, key)
}

/// Runs the scenario for `code`; its last reply must carry `code`. Returns every code seen.
fn scenario(code: ResultCode) -> BTreeSet<ResultCode> {
    let (last, recorder) = match code {
        ResultCode::Ok => {
            let mut r = Recorder::new(Config::small());
            (r.run(T, Request::Ping), r)
        }
        ResultCode::Duplicate => {
            let mut r = Recorder::new(Config::small());
            r.run(T, Request::Deposit { account: ALICE, amount: 5, key: 1 });
            (r.run(T, Request::Deposit { account: ALICE, amount: 5, key: 1 }), r)
        }
        ResultCode::KeyReused => {
            let mut r = Recorder::new(Config::small());
            r.run(T, Request::Deposit { account: ALICE, amount: 5, key: 1 });
            (r.run(T, Request::Deposit { account: ALICE, amount: 6, key: 1 }), r)
        }
        ResultCode::SoldOut => {
            let mut r = Recorder::with_sku(0, 0, 0, 0);
            (r.reserve(T, rsv(ALICE, 1, 1)), r)
        }
        ResultCode::LimitExceeded => {
            let mut r = Recorder::with_sku(10, 1, 0, 0);
            (r.reserve(T, rsv(ALICE, 2, 1)), r)
        }
        ResultCode::InsufficientFunds => {
            let mut r = Recorder::with_sku(10, 0, 0, 0);
            (r.reserve(T, Reserve { flags: RESERVE_FLAG_PAY, ..rsv(ALICE, 1, 1) }), r)
        }
        ResultCode::NotStarted => {
            let mut r = Recorder::with_sku(10, 0, T + 1, 0);
            (r.reserve(T, rsv(ALICE, 1, 1)), r)
        }
        ResultCode::Ended => {
            let mut r = Recorder::with_sku(10, 0, 0, T + 1);
            (r.reserve(T + 1, rsv(ALICE, 1, 1)), r)
        }
        ResultCode::Paused => {
            let mut r = Recorder::with_sku(10, 0, 0, 0);
            r.run(T, Request::Pause { sku: SKU });
            (r.reserve(T, rsv(ALICE, 1, 1)), r)
        }
        ResultCode::UnknownSku => {
            let mut r = Recorder::new(Config::small());
            (r.run(T, Request::QuerySku { sku: SKU }), r)
        }
        ResultCode::UnknownReservation => {
            let mut r = Recorder::new(Config::small());
            let target = Target::Reservation(1 << 32);
            (r.run(T, Request::QueryReservation { account: ALICE, target }), r)
        }
        ResultCode::AlreadyConfirmed => {
            let mut r = Recorder::with_sku(10, 0, 0, 0);
            r.reserve(T, rsv(ALICE, 1, 1));
            r.run(T, Request::Confirm { account: ALICE, target: Target::ReserveKey(1), key: 2 });
            (r.run(T, Request::Cancel { account: ALICE, target: Target::ReserveKey(1), key: 3 }), r)
        }
        ResultCode::AlreadyCancelled => {
            let mut r = Recorder::with_sku(10, 0, 0, 0);
            r.run(T, Request::Cancel { account: ALICE, target: Target::ReserveKey(1), key: 2 });
            (r.reserve(T, rsv(ALICE, 1, 1)), r)
        }
        ResultCode::Expired => {
            let mut r = Recorder::with_sku(10, 0, 0, 0);
            r.reserve(T, Reserve { hold_ms: 10, ..rsv(ALICE, 1, 1) });
            (
                r.run(
                    T + 10,
                    Request::Confirm { account: ALICE, target: Target::ReserveKey(1), key: 2 },
                ),
                r,
            )
        }
        ResultCode::WaitTimeout => {
            let mut r = Recorder::with_sku(0, 0, 0, 0);
            r.reserve(T, Reserve { wait_ms: 10, ..rsv(ALICE, 1, 1) });
            r.tick(T + 10);
            (
                r.run(
                    T + 10,
                    Request::Confirm { account: ALICE, target: Target::ReserveKey(1), key: 2 },
                ),
                r,
            )
        }
        ResultCode::Overloaded => {
            let mut r = Recorder::new(Config { account_max: 1, ..Config::small() });
            r.run(T, Request::Deposit { account: ALICE, amount: 5, key: 1 });
            (r.run(T, Request::Deposit { account: BOB, amount: 5, key: 1 }), r)
        }
        ResultCode::BadRequest => {
            let mut r = Recorder::with_sku(10, 0, 0, 0);
            (r.reserve(T, rsv(ALICE, 0, 1)), r)
        }
        ResultCode::Waiting => {
            let mut r = Recorder::with_sku(0, 0, 0, 0);
            (r.reserve(T, Reserve { wait_ms: 10, ..rsv(ALICE, 1, 1) }), r)
        }
        ResultCode::Overflow => {
            let mut r = Recorder::new(Config::small());
            r.run(T, Request::Deposit { account: ALICE, amount: u64::MAX, key: 1 });
            (r.run(T, Request::Deposit { account: ALICE, amount: 1, key: 2 }), r)
        }
        ResultCode::RateLimited | ResultCode::Unauthorized | ResultCode::Unavailable => {
            unreachable!("network-layer and runtime codes have no engine scenario")
        }
    };
    assert_eq!(last.result, code, "scenario for {}", code.name());
    recorder.seen
}

#[test]
fn every_engine_result_code_is_produced() {
    let network_only = [ResultCode::RateLimited, ResultCode::Unauthorized, ResultCode::Unavailable];
    let expected: BTreeSet<ResultCode> =
        ResultCode::ALL.iter().copied().filter(|code| !network_only.contains(code)).collect();
    assert_eq!(expected.len(), ResultCode::ALL.len() - 3);
    let mut produced = BTreeSet::new();
    for code in &expected {
        let seen = scenario(*code);
        assert!(seen.contains(code), "{} not seen", code.name());
        for network in network_only {
            assert!(!seen.contains(&network), "the engine answered {}", network.name());
        }
        produced.extend(seen);
    }
    let names =
        |codes: &BTreeSet<ResultCode>| codes.iter().map(|code| code.name()).collect::<Vec<_>>();
    assert_eq!(names(&produced), names(&expected));
}

#[test]
fn wait_timeout_and_already_cancelled_also_arrive_as_events() {
    let mut timed_out = Recorder::with_sku(0, 0, 0, 0);
    timed_out.reserve(T, Reserve { wait_ms: 10, ..rsv(ALICE, 1, 1) });
    timed_out.seen.clear();
    timed_out.tick(T + 10);
    assert_eq!(timed_out.seen, BTreeSet::from([ResultCode::WaitTimeout]));

    let mut cancelled = Recorder::with_sku(0, 0, 0, 0);
    cancelled.reserve(T, Reserve { wait_ms: 10, ..rsv(ALICE, 1, 1) });
    cancelled.seen.clear();
    let reply =
        cancelled.run(T, Request::Cancel { account: ALICE, target: Target::ReserveKey(1), key: 2 });
    assert_eq!(reply.result, ResultCode::Ok);
    // The CANCEL's own answer, and the event that answers the parked RESERVE.
    assert_eq!(cancelled.seen, BTreeSet::from([ResultCode::Ok, ResultCode::AlreadyCancelled]));
}
