//! `rush serve` killed with SIGKILL under load, restarted on the same data directory, many
//! times, on both backends (a real process, real sockets, real files, real fsyncs).
//!
//! Sync mode: every operation a client was answered before a kill is still there after the
//! restart — retried with the same key it answers DUPLICATE with the same outcome and the
//! same reservation — and the invariants hold: per SKU `available + reserved + sold ==
//! total` with the total the sale set (no unit created or lost), per account `available +
//! held + spent == deposited - withdrawn` with nothing negative.
//!
//! Interval mode: the same invariants (consistency), not completeness: up to the interval's
//! worth of acknowledged work may be gone.
//!
//! The server snapshots every 200 records, so kills also land around snapshots (written,
//! installed, segments deleted) and restarts start from them.
//!
//! `RUSH_KILL_CYCLES=<n>` runs longer campaigns (default 20 kills per backend and mode).

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use rush_engine::{Reply, ReplyBody, Request, Reserve, ResultCode, Target, RESERVE_FLAG_PAY};
use rush_net::client::Client;
use support::{fresh_data_dir, Served};

const CYCLES_DEFAULT: u32 = 20;
const SKU: u64 = 1;
const STOCK: u64 = 400;
const ACCOUNTS: u64 = 60;
const BALANCE: u64 = 100_000;
const PRICE: u64 = 7;

fn cycles() -> u32 {
    std::env::var("RUSH_KILL_CYCLES")
        .map(|cycles| cycles.parse().expect("RUSH_KILL_CYCLES is a number"))
        .unwrap_or(CYCLES_DEFAULT)
}

/// A small sale and small tables (a debug build starts fast).
fn write_files(directory: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(directory).expect("scratch directory");
    let sale = directory.join("sale.toml");
    std::fs::write(
        &sale,
        format!(
            "[[sku]]\nid = {SKU}\nstock = {STOCK}\nprice = {PRICE}\nhold_ms = 600000\n\n\
             [[wallet_range]]\nfirst = 1\nlast = {ACCOUNTS}\nbalance = {BALANCE}\n"
        ),
    )
    .expect("sale file");
    let config = directory.join("serve.toml");
    std::fs::write(
        &config,
        "sku_max = 64\naccount_max = 4096\nreservation_max = 16384\nwaitlist_max = 1024\n\
         request_key_max = 65536\nlimit_entry_max = 4096\n",
    )
    .expect("config file");
    (sale, config)
}

/// An operation answered before a kill.
#[derive(Clone, Copy, Debug)]
struct Answered {
    request: Request,
    reply: Reply,
}

fn effectful(reply: &Reply) -> bool {
    reply.result == ResultCode::Ok
}

/// Clients hammering the server until it dies; returns what was answered.
fn load(
    public: SocketAddr,
    stop: Arc<AtomicBool>,
    keys: Arc<AtomicU64>,
    answers: Arc<AtomicU64>,
) -> Vec<Answered> {
    let answered = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let (stop, keys, answered, answers) =
                (Arc::clone(&stop), Arc::clone(&keys), Arc::clone(&answered), Arc::clone(&answers));
            std::thread::spawn(move || {
                let Ok(mut client) = Client::connect(public) else { return };
                let mut held: Vec<(u64, u64)> = Vec::new();
                let mut round = thread;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    let account = 1 + (round * 7 + thread * 13) % ACCOUNTS;
                    let key = keys.fetch_add(1, Ordering::Relaxed);
                    let request = match (round % 5, held.pop()) {
                        (0, Some((owner, id))) => Request::Confirm {
                            account: owner,
                            target: Target::Reservation(id),
                            key,
                        },
                        (1, Some((owner, id))) => {
                            Request::Cancel { account: owner, target: Target::Reservation(id), key }
                        }
                        (_, taken) => {
                            held.extend(taken);
                            Request::Reserve(Reserve {
                                account,
                                sku: SKU,
                                quantity: 1,
                                key,
                                flags: RESERVE_FLAG_PAY,
                                hold_ms: 0,
                                wait_ms: 0,
                            })
                        }
                    };
                    let Ok(reply) = client.call(&request) else { return };
                    if let (Request::Reserve(reserve), Some(view)) = (request, reply.reservation())
                    {
                        if reply.result == ResultCode::Ok {
                            held.push((reserve.account, view.reservation));
                        }
                    }
                    answered.lock().expect("lock").push(Answered { request, reply });
                    answers.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("load thread");
    }
    Arc::try_unwrap(answered).expect("threads joined").into_inner().expect("lock")
}

fn key_of(request: &Request) -> (u64, u64) {
    match *request {
        Request::Reserve(Reserve { account, key, .. })
        | Request::Confirm { account, key, .. }
        | Request::Cancel { account, key, .. } => (account, key),
        _ => unreachable!("only keyed requests are recorded"),
    }
}

/// The invariants, read over the wire. QUERY_SKU with shards sums what each shard last
/// published, which settles a moment after a start (redelivered messages, first passes):
/// read until it is consistent, for at most a few seconds.
fn check_invariants(public: SocketAddr, admin: SocketAddr, label: &str) {
    let mut client = Client::connect(public).expect("connect");
    let mut admin = Client::connect(admin).expect("admin");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let reply = client.call(&Request::QuerySku { sku: SKU }).expect("QUERY_SKU");
        let ReplyBody::Sku(view) = reply.body else {
            panic!("{label}: QUERY_SKU answered {reply:?}")
        };
        let mut spent = 0;
        for account in 1..=ACCOUNTS {
            let reply = admin.call(&Request::QueryAccount { account }).expect("QUERY_ACCOUNT");
            let ReplyBody::Account(wallet) = reply.body else { panic!("{label}: {reply:?}") };
            assert_eq!(wallet.deposited, BALANCE, "{label}: account {account}: {wallet:?}");
            assert_eq!(
                wallet.available + wallet.held + wallet.spent,
                wallet.deposited - wallet.withdrawn,
                "{label}: account {account}: {wallet:?}"
            );
            spent += wallet.spent;
        }
        let consistent = view.total == STOCK
            && view.available + view.reserved + view.sold == view.total
            && spent == view.sold * PRICE;
        if consistent {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{label}: {view:?} (total {STOCK} expected), money spent {spent} for {} units sold",
            view.sold
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn campaign(backend: &str, durability: &str) {
    let directory = fresh_data_dir();
    let data_dir = directory.join("data");
    let (sale, config) = write_files(&directory);
    let keys = Arc::new(AtomicU64::new(1));
    let mut answered: Vec<Answered> = Vec::new();
    let start = || {
        let mut served = Served::start([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--shard-ports",
            "off",
            "--shards",
            "2",
            "--no-pin",
            "--io",
            backend,
            "--durability",
            durability,
            "--data-dir",
            data_dir.to_str().expect("utf-8"),
            // Frequent snapshots and small segments: kills land before, during and after
            // snapshots and the deletions that follow them.
            "--snapshot-every",
            "200",
            "--journal-segment-bytes",
            "16384",
            "--sale",
            sale.to_str().expect("utf-8"),
            "--config",
            config.to_str().expect("utf-8"),
        ]);
        let (public, admin) = served.listening();
        (served, public, admin.expect("admin listener"))
    };
    for cycle in 0..cycles() {
        let label = format!("{backend} {durability}, kill {cycle}");
        let (mut served, public, admin) = start();
        // What was answered before the previous kills is still there (sync mode).
        if durability == "sync" {
            let mut client = Client::connect(public).expect("connect");
            for old in answered.iter().filter(|old| effectful(&old.reply)) {
                let retry = client.call(&old.request).expect("retry");
                assert_eq!(
                    (retry.result, retry.original),
                    (ResultCode::Duplicate, old.reply.result),
                    "{label}: {:?} was answered {:?} before a kill; its retry answers {retry:?} \
                     (server log {:?})",
                    old.request,
                    old.reply,
                    served.log
                );
                if let (Some(before), Some(now)) = (old.reply.reservation(), retry.reservation()) {
                    assert_eq!(before.reservation, now.reservation, "{label}: same reservation");
                }
            }
        }
        check_invariants(public, admin, &label);
        // Load, and a kill at a moment that varies from cycle to cycle.
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(AtomicU64::new(0));
        let load_thread = {
            let (stop, keys, answers) =
                (Arc::clone(&stop), Arc::clone(&keys), Arc::clone(&answers));
            std::thread::spawn(move || load(public, stop, keys, answers))
        };
        // The kill lands once the load is going (a busy machine may take a while to answer
        // the first requests), at a moment that varies from cycle to cycle.
        let waited = std::time::Instant::now();
        while answers.load(Ordering::Relaxed) == 0 {
            assert!(waited.elapsed() < Duration::from_secs(30), "{label}: no answer in 30 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20 + u64::from(cycle * 37 % 200)));
        served.signal(Signal::SIGKILL);
        let _ = served.wait();
        stop.store(true, Ordering::Relaxed);
        let new = load_thread.join().expect("load");
        assert!(!new.is_empty(), "{label}: the load got no answer before the kill");
        answered.extend(new);
        // Keys are unique per account: a retry must not collide with a new request.
        let mut seen = std::collections::BTreeSet::new();
        for item in &answered {
            assert!(seen.insert(key_of(&item.request)) || !effectful(&item.reply));
        }
    }
    // A last start: everything answered (sync) is there, and a clean stop works.
    let (mut served, public, admin) = start();
    check_invariants(public, admin, &format!("{backend} {durability}, final"));
    let recovered = served.log.iter().any(|line| line.contains("recovered shard"));
    assert!(recovered, "the restart logs what it recovered: {:?}", served.log);
    let from_snapshot = served.log.iter().any(|line| line.contains("snapshot of entry"));
    assert!(from_snapshot, "the campaign recovered from a snapshot: {:?}", served.log);
    served.signal(Signal::SIGTERM);
    let (status, _) = served.wait();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn sync_mode_keeps_every_acknowledged_operation_across_kill_9() {
    for backend in ["io_uring", "epoll"] {
        campaign(backend, "sync");
    }
}

#[test]
fn interval_mode_recovers_a_consistent_state_after_kill_9() {
    for backend in ["io_uring", "epoll"] {
        campaign(backend, "interval:50");
    }
}
