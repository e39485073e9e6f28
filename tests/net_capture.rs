//! `--capture`: a server records every frame it receives, per connection, in order, with
//! OPEN and CLOSE around them (both backends).

use rush_engine::*;
use rush_net::capture::{read_capture, KIND_CLOSE, KIND_FRAME, KIND_OPEN};
use rush_net::client::{Client, Pipeline};
use rush_net::protocol::decode_request;
use rush_net::server::{ConnLimits, Server, ServerConfig, ShardPorts};
use rush_suite::server::BACKENDS;

#[test]
fn a_capture_holds_every_frame_of_every_connection_in_order() {
    for backend in BACKENDS {
        let directory = std::env::temp_dir()
            .join(format!("rush-net-capture-{}-{backend:?}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("run.rushcap");
        let server = Server::start(ServerConfig {
            shard_ports: ShardPorts::Off,
            capture: Some(path.clone()),
            durability: rush_runtime::journal::Durability::None,
            data_dir: None,
            journal: rush_runtime::journal::JournalOptions::default(),
            ..rush_suite::server::config(backend, 2, ConnLimits::default())
        })
        .unwrap();
        let mut admin = Client::connect(server.admin_addr().unwrap()).unwrap();
        let put = Request::PutSku(SkuSpec {
            sku: 4,
            stock_total: 100,
            price: 0,
            per_user_limit: 0,
            hold_ms: 0,
            start_ms: 0,
            end_ms: 0,
        });
        assert_eq!(admin.call(&put).unwrap().result, ResultCode::Ok);
        drop(admin);
        let mut sent = Vec::new();
        let mut pipeline = Pipeline::connect(server.local_addr()).unwrap();
        for account in 1..=300_u64 {
            let request = Request::Reserve(Reserve {
                account,
                sku: 4,
                quantity: 1,
                key: 1,
                flags: 0,
                hold_ms: 0,
                wait_ms: 0,
            });
            pipeline.send(&request);
            sent.push(request);
        }
        for _ in 0..300 {
            pipeline.recv().unwrap();
        }
        drop(pipeline);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let report = server.shutdown().unwrap();
        let (written, dropped) = report.capture.unwrap();
        assert_eq!(dropped, 0);

        let capture = read_capture(&path).unwrap();
        assert_eq!(capture.records.len() as u64, written);
        let mut by_connection: std::collections::BTreeMap<u64, Vec<_>> = Default::default();
        for record in &capture.records {
            by_connection.entry(record.connection.get()).or_default().push(*record);
        }
        assert_eq!(by_connection.len(), 2, "{backend:?}: the admin and the client connection");
        let mut frames_seen = Vec::new();
        for records in by_connection.values() {
            assert_eq!(records.first().unwrap().kind, KIND_OPEN);
            assert_eq!(records.last().unwrap().kind, KIND_CLOSE);
            let times: Vec<u64> = records.iter().map(|record| record.recv_ns.get()).collect();
            assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "receive times are in order");
            for record in &records[1..records.len() - 1] {
                assert_eq!(record.kind, KIND_FRAME);
                frames_seen.push((record.admin, decode_request(record.bytes()).unwrap().0.request));
            }
        }
        assert_eq!(frames_seen[0], (1, put), "the admin connection's frame, marked admin");
        let client_frames: Vec<Request> =
            frames_seen[1..].iter().map(|(_, request)| *request).collect();
        assert_eq!(client_frames, sent, "{backend:?}: every frame, in the order sent");
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
