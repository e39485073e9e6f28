//! Bad input over real sockets, on both backends: each case gets the treatment documented
//! in docs/PROTOCOL.md §6, and a well-behaved connection opened before it keeps being served.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use rush_engine::*;
use rush_net::client::Client;
use rush_net::protocol::{decode_response, encode_request};
use rush_net::server::ConnLimits;
use rush_suite::server::{start, BACKENDS};

/// True when the server closed the connection (EOF or reset) within a few seconds, after
/// sending nothing but whole frames.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return received.len() % 64 == 0,
            Ok(count) => received.extend_from_slice(&buffer[..count]),
            Err(error) if error.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn healthy(client: &mut Client) {
    assert_eq!(client.ping().unwrap().shard_count, 2, "the other connection is still served");
}

fn ping_bytes(request_id: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_request(request_id, &Request::Ping, &mut bytes);
    bytes
}

fn check_fatal(address: SocketAddr, bytes: &[u8], client: &mut Client, what: &str) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(bytes).unwrap();
    assert!(closed_by_server(&mut stream), "{what}: the server closes the connection");
    healthy(client);
}

#[test]
fn framing_errors_close_only_the_offending_connection() {
    for backend in BACKENDS {
        let server = start(backend, 2, ConnLimits::default());
        let address = server.local_addr();
        let mut client = Client::connect(address).unwrap();
        healthy(&mut client);

        check_fatal(address, b"GET / HTTP/1.1\r\nHost: rush\r\n\r\n", &mut client, "garbage");
        let mut bad_magic = ping_bytes(1);
        bad_magic[0] = 0x00;
        check_fatal(address, &bad_magic, &mut client, "bad magic");
        let mut bad_version = ping_bytes(1);
        bad_version[2] = 9;
        check_fatal(address, &bad_version, &mut client, "bad version");
        let mut unknown_opcode = ping_bytes(1);
        unknown_opcode[3] = 0x7f;
        check_fatal(address, &unknown_opcode, &mut client, "unknown opcode");
        let mut wrong_length = ping_bytes(1);
        wrong_length[4] = 63;
        check_fatal(address, &wrong_length, &mut client, "wrong length");

        // Valid requests before the bad frame are still answered, then the close.
        let mut stream = TcpStream::connect(address).unwrap();
        let mut bytes = ping_bytes(5);
        bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        stream.write_all(&bytes).unwrap();
        let mut answer = [0_u8; 64];
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        stream.read_exact(&mut answer).unwrap();
        assert_eq!(decode_response(&answer).unwrap().0.request_id, 5, "{backend:?}");
        assert!(closed_by_server(&mut stream));
        healthy(&mut client);

        let report = server.shutdown().unwrap();
        let fatal: u64 = report.shards.iter().map(|shard| shard.counters.fatal_frames).sum();
        assert_eq!(fatal, 6, "{backend:?}");
    }
}

#[test]
fn a_frame_local_error_is_answered_bad_request_and_the_connection_goes_on() {
    for backend in BACKENDS {
        let server = start(backend, 2, ConnLimits::default());
        let mut stream = TcpStream::connect(server.local_addr()).unwrap();
        let mut bytes = Vec::new();
        let mut bad = Vec::new();
        encode_request(8, &Request::QuerySku { sku: 1 }, &mut bad);
        bad[40] = 1; // a reserved byte
        bytes.extend_from_slice(&bad);
        let mut flags = ping_bytes(9);
        flags[6] = 1; // header flags must be zero
        bytes.extend_from_slice(&flags);
        bytes.extend_from_slice(&ping_bytes(10));
        stream.write_all(&bytes).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answers = std::collections::BTreeMap::new();
        let mut buffer = vec![0_u8; 104 + 64 + 64];
        stream.read_exact(&mut buffer).unwrap();
        let mut offset = 0;
        while offset < buffer.len() {
            let (frame, length) = decode_response(&buffer[offset..]).unwrap();
            answers.insert(frame.request_id, frame.reply.result);
            offset += length;
        }
        assert_eq!(answers.get(&8), Some(&ResultCode::BadRequest), "{backend:?}");
        assert_eq!(answers.get(&9), Some(&ResultCode::BadRequest));
        assert_eq!(answers.get(&10), Some(&ResultCode::Ok));
        server.shutdown().unwrap();
    }
}

#[test]
fn a_frame_cut_off_by_a_close_is_dropped_quietly() {
    for backend in BACKENDS {
        let server = start(backend, 2, ConnLimits::default());
        let mut client = Client::connect(server.local_addr()).unwrap();
        let mut stream = TcpStream::connect(server.local_addr()).unwrap();
        let mut bytes = ping_bytes(1);
        bytes.extend_from_slice(&ping_bytes(2)[..30]);
        stream.write_all(&bytes).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut received = Vec::new();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        stream.read_to_end(&mut received).unwrap();
        assert_eq!(received.len(), 64, "{backend:?}: the whole frame is answered, the half is not");
        assert_eq!(decode_response(&received).unwrap().0.request_id, 1);
        healthy(&mut client);
        server.shutdown().unwrap();
    }
}

#[test]
fn a_client_that_never_reads_is_stopped_by_backpressure_and_others_are_served() {
    for backend in BACKENDS {
        let limits = ConnLimits {
            connection_max: 64,
            admin_connection_max: 16,
            pipeline_max: 1024,
            inbound_bytes_max: 64 * 1024,
            outbound_bytes_max: 64 * 1024,
            ..ConnLimits::default()
        };
        let server = start(backend, 2, limits);
        let mut client = Client::connect(server.local_addr()).unwrap();
        let mut flood = TcpStream::connect(server.local_addr()).unwrap();
        flood.set_nonblocking(true).unwrap();
        // PINGs are answered by the network layer itself, so only the outbound side can
        // push back: the server stops reading once the answers it cannot send pile up.
        let chunk: Vec<u8> = (0..1024).flat_map(ping_bytes).collect();
        let mut written: usize = 0;
        let mut stalls = 0;
        while stalls < 50 {
            // Whole frames only: a partial write continues where it stopped.
            let offset = written % chunk.len();
            match flood.write(&chunk[offset..]) {
                Ok(count) => {
                    written += count;
                    stalls = 0;
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    stalls += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(error) => panic!("{backend:?}: {error}"),
            }
            assert!(
                written < 32 << 20,
                "{backend:?}: the server kept reading a client that never reads"
            );
        }
        // What the server holds for it is bounded: kernel socket buffers (a few MiB on
        // loopback) plus the connection's inbound and outbound bounds.
        eprintln!("{backend:?}: the flood stopped after {written} bytes");
        // The flood is stuck; the other connection is not.
        for _ in 0..100 {
            healthy(&mut client);
        }
        drop(flood);
        server.shutdown().unwrap();
    }
}

/// Regression (issue 15, item 3): the admin listener shared the public connection slots, so a
/// flood of clients that filled them made an admin connection be accepted and closed with
/// nothing sent: the operator was locked out of PAUSE and restock. Admin connections now
/// have slots of their own.
#[test]
fn an_admin_connection_is_served_while_public_connections_fill_the_shard() {
    for backend in BACKENDS {
        let limits =
            ConnLimits { connection_max: 2, admin_connection_max: 1, ..ConnLimits::default() };
        let server = rush_suite::server::start(backend, 1, limits);
        let mut public: Vec<Client> =
            (0..2).map(|_| Client::connect(server.local_addr()).unwrap()).collect();
        for client in &mut public {
            assert_eq!(client.ping().unwrap().shard_count, 1);
        }
        let mut refused = TcpStream::connect(server.local_addr()).unwrap();
        let _ = refused.write_all(&ping_bytes(1));
        assert!(closed_by_server(&mut refused), "{backend:?}: the public slots are full");
        // The operator still gets in, and its admin operations work.
        let mut admin = Client::connect(server.admin_addr().unwrap()).unwrap();
        let spec = SkuSpec {
            sku: 77,
            stock_total: 5,
            price: 1,
            per_user_limit: 0,
            hold_ms: 0,
            start_ms: 0,
            end_ms: 0,
        };
        assert_eq!(admin.call(&Request::PutSku(spec)).unwrap().result, ResultCode::Ok);
        assert_eq!(admin.call(&Request::Pause { sku: 77 }).unwrap().result, ResultCode::Ok);
        // The admin slots have their own bound.
        let mut second_admin = TcpStream::connect(server.admin_addr().unwrap()).unwrap();
        let _ = second_admin.write_all(&ping_bytes(2));
        assert!(closed_by_server(&mut second_admin), "{backend:?}: one admin slot");
        drop(public);
        let report = server.shutdown().unwrap();
        assert_eq!(report.shards[0].counters.refused_full, 2, "{backend:?}");
    }
}

#[test]
fn connections_beyond_the_limit_are_closed_at_once() {
    for backend in BACKENDS {
        let limits = ConnLimits { connection_max: 2, ..ConnLimits::default() };
        let server = rush_suite::server::start(backend, 1, limits);
        let mut first = Client::connect(server.local_addr()).unwrap();
        let mut second = Client::connect(server.local_addr()).unwrap();
        assert_eq!(first.ping().unwrap().shard_count, 1);
        assert_eq!(second.ping().unwrap().shard_count, 1);
        let mut third = TcpStream::connect(server.local_addr()).unwrap();
        let _ = third.write_all(&ping_bytes(1));
        assert!(closed_by_server(&mut third), "{backend:?}: refused by closing");
        let mut received = [0_u8; 1];
        assert_eq!(third.read(&mut received).unwrap_or(0), 0, "and nothing was answered");
        drop(first);
        std::thread::sleep(Duration::from_millis(50));
        let mut fourth = Client::connect(server.local_addr()).unwrap();
        assert_eq!(fourth.ping().unwrap().shard_count, 1, "a freed slot is reused");
        let report = server.shutdown().unwrap();
        assert_eq!(report.shards[0].counters.refused_full, 1, "{backend:?}");
    }
}
