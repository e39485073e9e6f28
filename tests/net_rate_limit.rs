//! The per-connection rate limit (`connection_rate_per_s`, `connection_burst`) over real
//! loopback sockets on both backends: a burst passes, what follows is answered RATE_LIMITED
//! at once with the time to retry and changes nothing, another connection is not affected,
//! PING and queries are never limited, the admin port is exempt, and a retry after the given
//! time is accepted.

use rush_engine::*;
use rush_net::client::{Client, Pipeline};
use rush_net::server::ConnLimits;
use rush_suite::server::{start, BACKENDS};

fn reserve(account: u64, key: u64) -> Request {
    Request::Reserve(Reserve {
        account,
        sku: 7,
        quantity: 1,
        key,
        flags: 0,
        hold_ms: 0,
        wait_ms: 0,
    })
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// A slow rate (one request every 10 s after the burst), so that no token comes back while
/// the test runs, however slow the machine: the outcome does not depend on timing.
const RATE_PER_S: u32 = 1;
const BURST: u32 = 5;

#[test]
fn a_connection_past_its_rate_is_answered_rate_limited_and_others_are_not() {
    for backend in BACKENDS {
        let limits = ConnLimits {
            connection_rate_per_s: RATE_PER_S,
            connection_burst: BURST,
            ..ConnLimits::default()
        };
        let server = start(backend, 2, limits);
        let mut admin = Client::connect(server.admin_addr().unwrap()).unwrap();
        let put = Request::PutSku(SkuSpec {
            sku: 7,
            stock_total: 1_000,
            price: 0,
            per_user_limit: 0,
            hold_ms: 0,
            start_ms: 0,
            end_ms: 0,
        });
        assert_eq!(admin.call(&put).unwrap().result, ResultCode::Ok);

        // 20 RESERVEs pipelined on one connection: the burst goes through, the rest is
        // answered RATE_LIMITED with a retry time in the future.
        let mut flood = Pipeline::connect(server.local_addr()).unwrap();
        let before_ms = unix_ms();
        for key in 1..=20 {
            flood.send(&reserve(1, key));
        }
        flood.flush().unwrap();
        let mut ok = 0;
        let mut limited = 0;
        for _ in 1..=20 {
            let response = flood.recv().unwrap();
            match response.reply.result {
                ResultCode::Ok => ok += 1,
                ResultCode::RateLimited => {
                    limited += 1;
                    let ReplyBody::Reservation(view) = response.reply.body else {
                        panic!("a retry time in the body: {response:?}")
                    };
                    assert_eq!(view.state, ReservationState::None);
                    assert_eq!((view.reservation, view.sku, view.quantity), (0, 0, 0));
                    // At least the rest of the interval away (the bucket is 5 deep, one
                    // token per second: the 6th request conforms about 1 s later).
                    assert!(view.deadline_ms >= before_ms + 500, "{view:?} {before_ms}");
                    assert!(view.deadline_ms <= unix_ms() + 20_000, "{view:?}");
                }
                other => panic!("{backend:?}: {other:?}"),
            }
        }
        assert_eq!((ok, limited), (BURST, 20 - BURST), "{backend:?}");
        // PING and queries are never limited.
        for _ in 0..10 {
            flood.ping().unwrap();
            let reply = flood.call(&Request::QuerySku { sku: 7 }).unwrap();
            assert_eq!(reply.result, ResultCode::Ok);
        }
        // A limited request changed nothing: its key was not used (a retry is evaluated
        // afresh: limited again while the bucket is empty, never DUPLICATE), and only the
        // burst holds units.
        let again = flood.call(&reserve(1, 20)).unwrap();
        let mut limited_later = 0;
        if unix_ms() < before_ms + 900 {
            // Still within the first second: no token came back yet.
            assert_eq!(again.result, ResultCode::RateLimited, "{backend:?}");
            limited_later += 1;
        } else {
            assert!(matches!(again.result, ResultCode::RateLimited | ResultCode::Ok));
            limited_later += u64::from(again.result == ResultCode::RateLimited);
        }
        let ReplyBody::Sku(sku) = admin.call(&Request::QuerySku { sku: 7 }).unwrap().body else {
            panic!("a SKU view")
        };
        let burst_held = u64::from(BURST) + u64::from(again.result == ResultCode::Ok);
        assert_eq!(sku.reserved, burst_held, "{backend:?}");

        // Another connection (same account even) has its own bucket: not starved. Sent in
        // one write, so the burst and the one past it arrive together.
        let mut other = Pipeline::connect(server.local_addr()).unwrap();
        for key in 100..=100 + u64::from(BURST) {
            other.send(&reserve(1, key));
        }
        other.flush().unwrap();
        let mut results = Vec::new();
        for _ in 0..=BURST {
            results.push(other.recv().unwrap().reply.result);
        }
        let ok = results.iter().filter(|result| **result == ResultCode::Ok).count();
        assert_eq!(ok, BURST as usize, "{backend:?}: {results:?}");
        assert!(results.contains(&ResultCode::RateLimited), "{backend:?}: {results:?}");

        // The admin port is exempt (its own operations, and RESERVEs sent there).
        for key in 300..320 {
            assert_eq!(admin.call(&reserve(3, key)).unwrap().result, ResultCode::Ok);
        }

        let report = server.shutdown().unwrap();
        for engine in &report.engines {
            engine.check_invariants().unwrap();
        }
        let limited_total: u64 =
            report.shards.iter().map(|shard| shard.counters.rate_limited).sum();
        assert_eq!(limited_total, u64::from(20 - BURST) + limited_later + 1, "{backend:?}");
    }
}

#[test]
fn a_limited_request_retried_after_its_time_is_accepted() {
    for backend in BACKENDS {
        // 20 per second, burst 1: the second request is limited for about 50 ms.
        let limits =
            ConnLimits { connection_rate_per_s: 20, connection_burst: 1, ..ConnLimits::default() };
        let server = start(backend, 1, limits);
        let mut admin = Client::connect(server.admin_addr().unwrap()).unwrap();
        let put = Request::PutSku(SkuSpec {
            sku: 7,
            stock_total: 10,
            price: 0,
            per_user_limit: 0,
            hold_ms: 0,
            start_ms: 0,
            end_ms: 0,
        });
        assert_eq!(admin.call(&put).unwrap().result, ResultCode::Ok);
        let mut client = Client::connect(server.local_addr()).unwrap();
        assert_eq!(client.call(&reserve(1, 1)).unwrap().result, ResultCode::Ok);
        let mut retry_at_ms = 0;
        let mut limited = 0;
        loop {
            let reply = client.call(&reserve(1, 2)).unwrap();
            match reply.result {
                ResultCode::RateLimited => {
                    let ReplyBody::Reservation(view) = reply.body else { panic!("{reply:?}") };
                    retry_at_ms = view.deadline_ms;
                    limited += 1;
                    // Wait as told (the hint is the protocol's own: this is what a client
                    // does), then retry with the same key.
                    let wait_ms = retry_at_ms.saturating_sub(unix_ms());
                    assert!(wait_ms <= 1_000, "a hint within the interval: {wait_ms} ms");
                    std::thread::sleep(std::time::Duration::from_millis(wait_ms));
                }
                ResultCode::Ok => break,
                other => panic!("{backend:?}: {other:?}"),
            }
            assert!(limited < 100, "{backend:?}: never accepted");
        }
        // Accepted at or after the time given (if it was limited at all: a slow machine
        // may take 50 ms between two calls).
        assert!(limited == 0 || unix_ms() >= retry_at_ms, "{backend:?}");
        server.shutdown().unwrap();
    }
}
