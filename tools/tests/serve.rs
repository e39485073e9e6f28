//! `rush serve` as a process: start-up log, a reservation against the demo sale, and a clean
//! exit on SIGTERM / SIGINT; a bad sale file fails fast and names the file; a journal segment
//! size out of range is refused (flag and config key).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;
use rush_engine::{
    ReplyBody, Request, ReservationState, Reserve, ResultCode, SkuView, Target, RESERVE_FLAG_PAY,
};
use rush_net::client::Client;

mod support;

use support::{Served, RUSH};

fn reserve(account: u64, sku: u64, quantity: u32, key: u64) -> Request {
    Request::Reserve(reserve_fields(account, sku, quantity, key))
}

fn reserve_fields(account: u64, sku: u64, quantity: u32, key: u64) -> Reserve {
    Reserve { account, sku, quantity, key, flags: RESERVE_FLAG_PAY, hold_ms: 0, wait_ms: 0 }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rush-serve-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn serves_the_demo_sale_and_exits_0_on_sigterm() {
    let mut served = Served::start([
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "2",
        "--no-pin",
        "--shard-ports",
        "auto",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let address = served.listening().0;
    let log = served.log.join("\n");
    assert!(log.contains("rush: backend "), "{log}");
    assert!(log.contains("rush: 2 shards; shard 0 not pinned, shard 1 not pinned"), "{log}");
    // The default capacities are the server's, shared by its two shards.
    assert!(log.contains("rush: engine tables: "), "{log}");
    assert!(
        log.contains(
            " MiB for 2000000 reservations, 2000000 request keys, 1000000 wallets, 1000000 \
             limit counters, 10000 SKUs; 2 shards × "
        ),
        "{log}"
    );
    assert!(log.contains("rush: pre-warmed 2 SKUs, 1000 wallets (embedded demo sale)"), "{log}");
    assert!(log.contains("(admin), shards on "), "{log}");

    let mut client = Client::connect(address).expect("connect");
    let reply = client.call(&reserve(1, 1, 1, 1)).expect("reserve");
    assert_eq!(reply.result, ResultCode::Ok, "{reply:?}");
    let view = reply.reservation().expect("reservation");
    assert_eq!((view.account, view.sku, view.quantity, view.amount), (1, 1, 1, 4999));
    // SKU 1 allows one unit per buyer.
    let reply = client.call(&reserve(1, 1, 1, 2)).expect("reserve again");
    assert_eq!(reply.result, ResultCode::LimitExceeded, "{reply:?}");
    // SKU 2 allows two per buyer (a new key: an account's keys span every operation).
    let reply = client.call(&reserve(1, 2, 2, 3)).expect("reserve sku 2");
    assert_eq!(reply.result, ResultCode::Ok, "{reply:?}");
    let reply = client.call(&Request::QueryAccount { account: 1 }).expect("query account");
    match reply.body {
        ReplyBody::Account(wallet) => {
            assert_eq!((wallet.deposited, wallet.held), (100_000, 4999 + 2 * 19_999));
        }
        other => panic!("{other:?}"),
    }
    let reply = client.call(&Request::QuerySku { sku: 2 }).expect("query sku");
    assert!(
        matches!(reply.body, ReplyBody::Sku(SkuView { price: 19_999, per_user_limit: 2, .. })),
        "{reply:?}"
    );
    // Admin operations are refused on the public port.
    let reply = client.call(&Request::Deposit { account: 1, amount: 1, key: 9 }).expect("deposit");
    assert_eq!(reply.result, ResultCode::Unauthorized, "{reply:?}");
    // A 20 ms hold, left to expire: the stop log says how late holds expired.
    let short = Request::Reserve(Reserve { hold_ms: 20, ..reserve_fields(2, 1, 1, 1) });
    let reply = client.call(&short).expect("short hold");
    assert_eq!(reply.result, ResultCode::Ok, "{reply:?}");
    let mut queries = 0;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(10));
        queries += 1;
        let query = Request::QueryReservation { account: 2, target: Target::ReserveKey(1) };
        let reply = client.call(&query).expect("query reservation");
        let state = reply.reservation().expect("a reservation").state;
        if state == ReservationState::Expired {
            break;
        }
        assert_eq!(state, ReservationState::Held, "{reply:?}");
        assert!(queries < 1000, "the 20 ms hold did not expire in 10 s");
    }
    drop(client);

    served.signal(Signal::SIGTERM);
    let (status, log) = served.wait();
    let log = log.join("\n");
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert!(log.contains("rush: stopping (SIGTERM)"), "{log}");
    let frames = 7 + queries;
    assert!(
        log.contains(&format!("rush: stopped; connections accepted: 1, frames: {frames}")),
        "{log}"
    );
    assert!(log.contains("holds expired: 1\n"), "{log}");
    assert!(
        log.contains("rush: hold expiry delay (engine clock at release - deadline, ms): p50 "),
        "{log}"
    );
    assert!(log.contains(" over 1 expiries"), "{log}");
}

#[test]
fn a_json_sale_and_a_config_file_on_epoll_exit_0_on_sigint() {
    let dir = temp_dir("json");
    let sale = dir.join("sale.json");
    std::fs::write(
        &sale,
        r#"{"sku": [{"id": 77, "stock": 1, "price": 10}],
            "wallet": [{"account": 5, "balance": 10}, {"account": 6, "balance": 10}]}"#,
    )
    .expect("write sale");
    let config = dir.join("serve.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"none\"\nshard_ports = \"off\"\n\
         shards = 1\npin = false\nio = \"epoll\"\nsale = \"sale.json\"\n\
         sku_max = 16\naccount_max = 64\nreservation_max = 256\nwaitlist_max = 16\n\
         request_key_max = 512\nlimit_entry_max = 64\n",
    )
    .expect("write config");
    let mut served = Served::start(["--config", config.to_str().expect("utf-8 path")]);
    let address = served.listening().0;
    let log = served.log.join("\n");
    assert!(log.contains("rush: backend epoll ("), "{log}");
    assert!(log.contains("rush: 1 shard; shard 0 not pinned"), "{log}");
    assert!(log.contains("rush: pre-warmed 1 SKU, 2 wallets (from "), "{log}");
    assert!(log.contains("(public), no admin listener, no per-shard ports"), "{log}");

    let mut client = Client::connect(address).expect("connect");
    assert_eq!(client.call(&reserve(5, 77, 1, 1)).expect("reserve").result, ResultCode::Ok);
    assert_eq!(client.call(&reserve(6, 77, 1, 1)).expect("reserve").result, ResultCode::SoldOut);
    drop(client);

    served.signal(Signal::SIGINT);
    let (status, log) = served.wait();
    let log = log.join("\n");
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert!(log.contains("rush: stopping (SIGINT)"), "{log}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn a_bad_sale_file_fails_and_names_the_file() {
    let dir = temp_dir("bad");
    let sale = dir.join("bad.toml");
    std::fs::write(
        &sale,
        "[[sku]]\nid = 1\nstock = 10\nprice = 5\n[[sku]]\nid = 1\nstock = 1\nprice = 1\n",
    )
    .expect("write sale");
    let output = Command::new(RUSH)
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "none", "--sale"])
        .arg(&sale)
        .stdin(Stdio::null())
        .output()
        .expect("run rush serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(sale.to_str().expect("utf-8 path")), "{stderr}");
    assert!(stderr.contains("duplicate SKU id 1"), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn a_journal_segment_size_out_of_range_is_refused() {
    for (args, words) in [
        (vec!["--journal-segment-bytes", "1023"], "1024"),
        (vec!["--journal-segment-bytes", "1073741825"], "1073741824"),
    ] {
        let output = Command::new(RUSH)
            .arg("serve")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run rush serve");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--journal-segment-bytes") && stderr.contains(words), "{stderr}");
    }
    let dir = temp_dir("segment-bytes");
    let config = dir.join("serve.toml");
    std::fs::write(&config, "journal_segment_bytes = 512\n").expect("write config");
    let output = Command::new(RUSH)
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .expect("run rush serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("`journal_segment_bytes`") && stderr.contains("512"), "{stderr}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}
