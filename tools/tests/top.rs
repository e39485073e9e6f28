//! `rush top` through a pipe against a real `rush serve` under traffic: one line per
//! interval, every line parses, the rates add up and reflect the traffic sent.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use rush_engine::{Request, Reserve, ResultCode, RESERVE_FLAG_PAY};
use rush_net::client::Client;

mod support;

use support::{Served, RUSH};

/// One line of `rush top`'s pipe output as key → value.
fn fields(line: &str) -> HashMap<String, String> {
    line.split(' ')
        .map(|field| {
            let (key, value) = field.split_once('=').unwrap_or_else(|| panic!("{field:?}"));
            (key.to_string(), value.to_string())
        })
        .collect()
}

fn number(fields: &HashMap<String, String>, key: &str) -> f64 {
    fields[key].parse().unwrap_or_else(|_| panic!("{key}={}", fields[key]))
}

#[test]
fn top_through_a_pipe_prints_one_parsable_line_per_interval_with_the_traffic_rate() {
    let mut served = Served::start([
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "none",
        "--shard-ports",
        "off",
        "--shards",
        "2",
        "--no-pin",
        "--durability",
        "none",
    ]);
    let (address, _) = served.listening();
    let metrics = served.metrics_addr().expect("a metrics line");

    // Traffic until top is done: RESERVEs of the demo sale (SKU 1) and PINGs.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
        std::thread::spawn(move || {
            let mut client = Client::connect(address).expect("connect");
            let mut key = 0;
            while !stop.load(Ordering::Relaxed) {
                key += 1;
                let request = Request::Reserve(Reserve {
                    account: 1 + key % 1000,
                    sku: 1,
                    quantity: 1,
                    key,
                    flags: RESERVE_FLAG_PAY,
                    hold_ms: 0,
                    wait_ms: 0,
                });
                let reply = client.call(&request).expect("reserve");
                assert_ne!(reply.result, ResultCode::BadRequest);
                client.ping().expect("ping");
                answered.fetch_add(2, Ordering::Relaxed);
            }
        })
    };
    // Wait for the first answers so that every interval has traffic.
    while answered.load(Ordering::Relaxed) < 10 {
        std::thread::yield_now();
    }

    let output = Command::new(RUSH)
        .args(["top", &metrics.to_string(), "--interval", "300ms", "--count", "4"])
        .stdin(Stdio::null())
        .output()
        .expect("run rush top");
    stop.store(true, Ordering::Relaxed);
    traffic.join().expect("traffic");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stdout.contains('\x1b'), "no ANSI codes through a pipe: {stdout:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "--count 4: {stdout}");
    let mut counted = 0.0;
    let mut previous_elapsed = 0.0;
    for line in &lines {
        let fields = fields(line);
        let elapsed = number(&fields, "elapsed_s");
        assert!(elapsed > previous_elapsed, "{line}");
        previous_elapsed = elapsed;
        let requests = number(&fields, "requests");
        let rate = number(&fields, "requests_per_s");
        assert!(requests > 0.0 && rate > 0.0, "traffic ran through every interval: {line}");
        // The rates by result add up to the total rate (each printed to 0.1).
        let by_result: f64 = fields
            .iter()
            .filter(|(key, _)| key.ends_with("_per_s") && *key != "requests_per_s")
            .filter(|(key, _)| *key != "accepted_per_s")
            .map(|(_, value)| value.parse::<f64>().expect("a rate"))
            .sum();
        assert!((by_result - rate).abs() < 0.1 * fields.len() as f64, "{line}");
        // PING answers OK; every RESERVE of the demo sale is OK or SOLD_OUT or LIMIT.
        assert!(number(&fields, "OK_per_s") > 0.0, "{line}");
        // Latency quantiles are numbers, p50 ≤ p99.
        let (p50, p99) = (number(&fields, "p50_us"), number(&fields, "p99_us"));
        assert!(p50 <= p99, "{line}");
        assert_eq!(number(&fields, "connections"), 1.0, "{line}");
        assert!(fields["stock"].contains("1:"), "the demo SKU 1 is shown: {line}");
        counted += requests;
    }
    // What top counted happened between its first and last scrape: no more than was sent.
    let sent = answered.load(Ordering::Relaxed) as f64;
    assert!(counted <= sent + 2.0, "top counted {counted}, the client had {sent} answered");

    // An unreachable address is an error naming it.
    let unreachable = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = unreachable.local_addr().expect("address");
    drop(unreachable);
    let output = Command::new(RUSH)
        .args(["top", &address.to_string(), "--count", "1"])
        .output()
        .expect("run rush top");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot scrape"), "{stderr}");

    served.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(served.wait().0.success());
}
