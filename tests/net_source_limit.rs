//! The per-source connection limit (`source_connection_max`) over real loopback sockets on
//! both backends: a flood of connections from 127.0.0.1 is refused past the limit, while a
//! client on 127.0.0.2 still connects and is served; a closed connection gives its place back.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rush_engine::{Request, ResultCode};
use rush_net::protocol::{decode_response, encode_request, RESPONSE_SIZE};
use rush_net::server::ConnLimits;
use rush_suite::server::{start, BACKENDS};

/// A TCP connection to `server` from the local address `source`.
fn connect_from(source: &str, server: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&server.into()).unwrap();
    socket.into()
}

/// True when the server closes `stream` (EOF or reset) within 10 s without answering.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => {
            !matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        }
    }
}

/// A PING over `stream`, as raw frames: true when it is answered OK.
fn ping(stream: &mut TcpStream) -> bool {
    let mut frame = Vec::new();
    encode_request(1, &Request::Ping, &mut frame);
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if stream.write_all(&frame).is_err() {
        return false;
    }
    let mut response = [0u8; RESPONSE_SIZE];
    if stream.read_exact(&mut response).is_err() {
        return false;
    }
    matches!(decode_response(&response), Ok((frame, _)) if frame.reply.result == ResultCode::Ok)
}

fn ping_from(source: &str, server: SocketAddr) -> bool {
    ping(&mut connect_from(source, server))
}

#[test]
fn a_flood_from_one_address_cannot_take_the_connections_of_another() {
    for backend in BACKENDS {
        let limits = ConnLimits { source_connection_max: 3, ..ConnLimits::default() };
        let server = start(backend, 2, limits);
        let address = server.local_addr();
        // The flood: 3 connections from 127.0.0.1 are served, the next ones are closed.
        let mut kept: Vec<TcpStream> = (0..3)
            .map(|_| {
                let mut stream = connect_from("127.0.0.1", address);
                assert!(ping(&mut stream), "{backend:?}: within the limit");
                stream
            })
            .collect();
        for _ in 0..5 {
            let mut refused = connect_from("127.0.0.1", address);
            assert!(closed_by_server(&mut refused), "{backend:?}: past the limit");
        }
        // Another address is served meanwhile.
        for _ in 0..3 {
            assert!(ping_from("127.0.0.2", address), "{backend:?}: 127.0.0.2 starved");
        }
        // A connection closed gives its place back (once the server has seen the close).
        drop(kept.pop());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ping_from("127.0.0.1", address) {
            assert!(Instant::now() < deadline, "{backend:?}: the place never came back");
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(kept);
        let report = server.shutdown().unwrap();
        let refused: u64 = report.shards.iter().map(|shard| shard.counters.refused_source).sum();
        assert!(refused >= 5, "{backend:?}: {refused}");
    }
}
