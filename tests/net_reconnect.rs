//! The client library's reconnect: when a connection breaks with requests in flight, the
//! `Pipeline` reconnects and re-sends them with the same keys, and the engine's request keys
//! make that exactly-once. A proxy between client and server drops the first connection
//! after the server has executed requests whose answers the client never got.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rush_engine::*;
use rush_net::client::{Client, ClientConfig, Pipeline};
use rush_net::server::ConnLimits;
use rush_suite::server::{start, BACKENDS};

/// Forwards client→server bytes; on the first connection, forwards `cut_after` bytes of
/// requests, swallows every answer, and then closes both sides. Later connections pass
/// everything both ways.
fn lossy_proxy(
    server: std::net::SocketAddr,
    cut_after: usize,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
            let mut upstream = TcpStream::connect(server).unwrap();
            if first {
                let mut forwarded = vec![0_u8; cut_after];
                client.read_exact(&mut forwarded).unwrap();
                upstream.write_all(&forwarded).unwrap();
                // Wait until the server has answered all of them (so they took effect),
                // then drop the answers and the connection.
                let mut answers = vec![0_u8; cut_after];
                upstream.read_exact(&mut answers).unwrap();
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
            let mut client_reader = client.try_clone().unwrap();
            let mut upstream_writer = upstream.try_clone().unwrap();
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut client_reader, &mut upstream_writer);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut upstream, &mut client);
            });
        }
    });
    (address, connections)
}

#[test]
fn a_broken_connection_is_reconnected_and_its_requests_take_effect_exactly_once() {
    for backend in BACKENDS {
        let server = start(backend, 2, ConnLimits::default());
        let mut admin = Client::connect(server.admin_addr().unwrap()).unwrap();
        let put = Request::PutSku(SkuSpec {
            sku: 8,
            stock_total: 1_000,
            price: 0,
            per_user_limit: 1,
            hold_ms: 0,
            start_ms: 0,
            end_ms: 0,
        });
        assert_eq!(admin.call(&put).unwrap().result, ResultCode::Ok);
        std::thread::sleep(std::time::Duration::from_millis(20));

        // 40 RESERVEs; the proxy lets the first 10 through and loses their answers.
        let (proxy, connections) = lossy_proxy(server.local_addr(), 10 * 64);
        let mut pipeline = Pipeline::with_config(proxy, ClientConfig::default()).unwrap();
        for account in 1..=40_u64 {
            pipeline.send(&Request::Reserve(Reserve {
                account,
                sku: 8,
                quantity: 1,
                key: 5,
                flags: 0,
                hold_ms: 0,
                wait_ms: 0,
            }));
        }
        let mut replies = std::collections::BTreeMap::new();
        for _ in 0..40 {
            let response = pipeline.recv().unwrap_or_else(|error| panic!("{backend:?}: {error}"));
            let Request::Reserve(reserve) = response.request else { unreachable!() };
            assert!(replies.insert(reserve.account, response.reply).is_none(), "one answer each");
        }
        assert!(pipeline.reconnects() >= 1, "{backend:?}: the pipeline reconnected");
        assert!(connections.load(Ordering::SeqCst) >= 2);
        // The 10 that took effect before the break answer DUPLICATE of OK; the rest OK.
        let duplicates = replies
            .values()
            .filter(|reply| {
                (reply.result, reply.original) == (ResultCode::Duplicate, ResultCode::Ok)
            })
            .count();
        let fresh = replies.values().filter(|reply| reply.result == ResultCode::Ok).count();
        assert_eq!((duplicates, fresh), (10, 30), "{backend:?}: {replies:?}");

        let report = server.shutdown().unwrap();
        let mut held = 0;
        for engine in &report.engines {
            engine.check_invariants().unwrap();
            held += engine.bucket_of(8).unwrap().1;
        }
        assert_eq!(held, 40, "{backend:?}: one unit per account, never two");
    }
}
