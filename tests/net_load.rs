//! The server under load over real loopback sockets, on both backends: a long pipeline on
//! one connection, 200 connections racing for a hot SKU, and clients that vanish with
//! requests in flight.

use std::io::{Read, Write};
use std::net::TcpStream;

use rush_engine::*;
use rush_net::client::{Client, Pipeline};
use rush_net::protocol::{decode_response, encode_request};
use rush_net::server::ConnLimits;
use rush_suite::server::{start, BACKENDS};

fn put_sku(id: u64, stock_total: u64, per_user_limit: u32) -> Request {
    Request::PutSku(SkuSpec {
        sku: id,
        stock_total,
        price: 0,
        per_user_limit,
        hold_ms: 0,
        start_ms: 0,
        end_ms: 0,
    })
}

fn reserve(account: u64, sku: u64, key: u64) -> Request {
    Request::Reserve(Reserve { account, sku, quantity: 1, key, flags: 0, hold_ms: 0, wait_ms: 0 })
}

#[test]
fn ten_thousand_pipelined_requests_on_one_connection() {
    for backend in BACKENDS {
        let server = start(backend, 2, ConnLimits::default());
        let mut admin = Client::connect(server.admin_addr().unwrap()).unwrap();
        assert_eq!(admin.call(&put_sku(5, 1_000_000, 0)).unwrap().result, ResultCode::Ok);
        std::thread::sleep(std::time::Duration::from_millis(20));

        let mut pipeline = Pipeline::connect(server.local_addr()).unwrap();
        let mut expected = std::collections::HashMap::new();
        for index in 0..10_000_u64 {
            // Accounts spread over both shards: half the requests are forwarded.
            let request = match index % 4 {
                0 => Request::Ping,
                1 | 2 => reserve(1 + index % 5_000, 5, 1 + index / 5_000),
                _ => Request::QueryAccount { account: 1 + index % 5_000 },
            };
            let id = pipeline.send(&request);
            expected.insert(id, request);
        }
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..10_000 {
            let response = pipeline.recv().unwrap();
            let request = expected.remove(&response.request_id).expect("one answer per request");
            assert_eq!(request, response.request);
            *counts.entry(response.reply.result).or_insert(0) += 1;
        }
        assert!(expected.is_empty());
        assert_eq!(counts.get(&ResultCode::Ok), Some(&10_000), "{backend:?}: {counts:?}");
        let report = server.shutdown().unwrap();
        let mut reserved = 0;
        for engine in &report.engines {
            engine.check_invariants().unwrap();
            reserved += engine.bucket_of(5).unwrap().1;
        }
        assert_eq!(reserved, 5_000);
    }
}

#[test]
fn two_hundred_connections_race_for_a_hot_sku_and_exactly_total_win() {
    const TOTAL: u64 = 500;
    const CONNECTIONS: u64 = 200;
    const BUYERS_PER_CONNECTION: u64 = 10;
    for backend in BACKENDS {
        let server = start(backend, 2, ConnLimits::default());
        let mut admin = Client::connect(server.admin_addr().unwrap()).unwrap();
        assert_eq!(admin.call(&put_sku(9, TOTAL, 1)).unwrap().result, ResultCode::Ok);
        std::thread::sleep(std::time::Duration::from_millis(20));

        let address = server.local_addr();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(CONNECTIONS as usize));
        let threads: Vec<_> = (0..CONNECTIONS)
            .map(|connection| {
                let barrier = std::sync::Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let mut pipeline = Pipeline::connect(address).unwrap();
                    barrier.wait();
                    for buyer in 0..BUYERS_PER_CONNECTION {
                        let account = 1 + connection * BUYERS_PER_CONNECTION + buyer;
                        pipeline.send(&reserve(account, 9, 1));
                        // A retry of the same key: exactly once.
                        pipeline.send(&reserve(account, 9, 1));
                    }
                    let mut codes = Vec::new();
                    for _ in 0..2 * BUYERS_PER_CONNECTION {
                        codes.push(pipeline.recv().unwrap().reply);
                    }
                    codes
                })
            })
            .collect();
        let mut ok = 0;
        let mut duplicate_of_ok = 0;
        for thread in threads {
            for reply in thread.join().unwrap() {
                match (reply.result, reply.original) {
                    (ResultCode::Ok, _) => ok += 1,
                    (ResultCode::Duplicate, ResultCode::Ok) => duplicate_of_ok += 1,
                    (ResultCode::SoldOut, _) | (ResultCode::Duplicate, ResultCode::SoldOut) => {}
                    // The retry overtook the original while it was still at the SKU's
                    // coordinator (SEMANTICS.md: a RESERVE that needs the coordinator is
                    // WAITING until it answers).
                    (ResultCode::Duplicate, ResultCode::Waiting) => {}
                    other => panic!("{backend:?}: unexpected {other:?}"),
                }
            }
        }
        // Each winner is counted once as OK; its retry, if it came after, is a DUPLICATE.
        assert_eq!(ok, TOTAL, "{backend:?}: exactly the stock is sold");
        assert!(duplicate_of_ok <= TOTAL);

        // Read the state back through an admin query before stopping.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let answer = admin.call(&Request::QuerySku { sku: 9 }).unwrap();
        let ReplyBody::Sku(view) = answer.body else { panic!("{answer:?}") };
        assert_eq!((view.total, view.reserved + view.sold, view.available), (TOTAL, TOTAL, 0));

        let report = server.shutdown().unwrap();
        let mut taken = 0;
        for engine in &report.engines {
            engine.check_invariants().unwrap();
            let (_, held, sold, _) = engine.bucket_of(9).unwrap();
            taken += held + sold;
        }
        assert_eq!(taken, TOTAL, "{backend:?}: no oversell, nothing stranded");
    }
}

#[test]
fn a_client_that_disconnects_mid_pipeline_loses_nothing_acknowledged() {
    for backend in BACKENDS {
        let server = start(backend, 2, ConnLimits::default());
        let mut admin = Client::connect(server.admin_addr().unwrap()).unwrap();
        assert_eq!(admin.call(&put_sku(3, 10_000, 0)).unwrap().result, ResultCode::Ok);
        std::thread::sleep(std::time::Duration::from_millis(20));

        // Send 2,000 RESERVEs, read only some of the answers, then vanish.
        let mut stream = TcpStream::connect(server.local_addr()).unwrap();
        let mut bytes = Vec::new();
        for account in 1..=2_000_u64 {
            encode_request(account, &reserve(account, 3, 77), &mut bytes);
        }
        stream.write_all(&bytes).unwrap();
        let mut acknowledged = Vec::new();
        let mut buffer = vec![0_u8; 64 * 300];
        stream.read_exact(&mut buffer).unwrap();
        for frame in buffer.chunks(64) {
            let (response, _) = decode_response(frame).unwrap();
            assert_eq!(response.reply.result, ResultCode::Ok);
            acknowledged.push((response.request_id, response.reply.reservation().unwrap()));
        }
        drop(stream);

        // Every acknowledged reservation exists, held, as acknowledged; a retry of any
        // request (acknowledged or not) is exactly-once: OK or DUPLICATE, never a second unit.
        let mut client = Client::connect(server.local_addr()).unwrap();
        for (account, view) in &acknowledged {
            let query =
                Request::QueryReservation { account: *account, target: Target::ReserveKey(77) };
            let answer = client.call(&query).unwrap();
            assert_eq!(answer.reservation().unwrap().reservation, view.reservation, "{backend:?}");
            assert_eq!(answer.reservation().unwrap().state, ReservationState::Held);
        }
        let mut pipeline = Pipeline::connect(server.local_addr()).unwrap();
        for account in 1..=2_000_u64 {
            pipeline.send(&reserve(account, 3, 77));
        }
        for _ in 0..2_000 {
            let reply = pipeline.recv().unwrap().reply;
            assert!(
                reply.result == ResultCode::Ok
                    || (reply.result == ResultCode::Duplicate && reply.original == ResultCode::Ok),
                "{reply:?}"
            );
        }
        let report = server.shutdown().unwrap();
        let mut held = 0;
        for engine in &report.engines {
            engine.check_invariants().unwrap();
            held += engine.bucket_of(3).unwrap().1;
        }
        assert_eq!(held, 2_000, "{backend:?}: one unit per account, never two");
    }
}

/// Regression: a connection whose reading was paused (inbound buffer full) must resume once
/// the engine has taken its input, however the pause and the answers interleave. Tiny limits
/// make every pipelined burst pause and resume the connection many times.
#[test]
fn tiny_limits_pause_and_resume_reading_without_losing_or_stalling_a_request() {
    for backend in BACKENDS {
        let limits = ConnLimits {
            connection_max: 16,
            admin_connection_max: 16,
            pipeline_max: 4,
            inbound_bytes_max: 1024,
            outbound_bytes_max: 512,
            ..ConnLimits::default()
        };
        let server = start(backend, 2, limits);
        let mut admin = Client::connect(server.admin_addr().unwrap()).unwrap();
        assert_eq!(admin.call(&put_sku(6, 1_000_000, 0)).unwrap().result, ResultCode::Ok);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut pipeline = Pipeline::connect(server.local_addr()).unwrap();
        for account in 1..=5_000_u64 {
            pipeline.send(&reserve(account, 6, 1));
            pipeline.send(&Request::Ping);
        }
        let mut ok = 0;
        for _ in 0..10_000 {
            let reply =
                pipeline.recv().unwrap_or_else(|error| panic!("{backend:?}: {error}")).reply;
            assert_eq!(reply.result, ResultCode::Ok);
            ok += 1;
        }
        assert_eq!(ok, 10_000);
        server.shutdown().unwrap();
    }
}
