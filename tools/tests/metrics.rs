//! The Prometheus exporter of a real `rush serve` (2 shards, durable): traffic over the wire
//! protocol, then `/metrics` scraped with an HTTP client (ureq) and parsed with a Prometheus
//! text-format parser (prometheus-parse). The counters move by exactly the traffic sent,
//! each latency histogram agrees with its counts, and the stock gauges equal QUERY_SKU.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use prometheus_parse::{Sample, Scrape, Value};
use rush_engine::{ReplyBody, Request, Reserve, ResultCode, SkuView, RESERVE_FLAG_PAY};
use rush_net::client::Client;
use rush_net::protocol::{REQUEST_SIZE, RESPONSE_SIZE, SKU_RESPONSE_SIZE};

mod support;

use support::Served;

/// How long a scrape may take to show traffic already answered (shards publish at most a
/// millisecond after they count, and before they sleep).
const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);

const SKU: u64 = 41;
const STOCK: u64 = 25;

fn reserve(account: u64, key: u64) -> Request {
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

fn sale_file() -> std::path::PathBuf {
    let path = support::fresh_data_dir().with_extension("sale.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"sku": [{{"id": {SKU}, "stock": {STOCK}, "price": 10}}, {{"id": 42, "stock": 5, "price": 1}}],
                "wallet_range": [{{"first": 1, "last": 100, "balance": 1000}}]}}"#
        ),
    )
    .expect("write sale");
    path
}

/// The status and body of `METHOD http://address/path`.
fn http(method: &str, address: SocketAddr, path: &str) -> (u16, String) {
    let response = match ureq::request(method, &format!("http://{address}{path}")).call() {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("{method} {path}: {error}"),
    };
    let status = response.status();
    if status == 200 {
        let content_type = response.header("Content-Type").unwrap_or("").to_string();
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    }
    (status, response.into_string().expect("a UTF-8 body"))
}

fn scrape(address: SocketAddr) -> Scrape {
    let (status, text) = http("GET", address, "/metrics");
    assert_eq!(status, 200, "{text}");
    Scrape::parse(text.lines().map(|line| Ok(line.to_string()))).expect("valid exposition")
}

fn value(sample: &Sample) -> f64 {
    match sample.value {
        Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value) => value,
        _ => panic!("{} is not a number", sample.metric),
    }
}

/// The value of the one sample `metric` whose labels include `labels`.
fn one(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == metric)
        .filter(|sample| labels.iter().all(|(key, wanted)| sample.labels.get(key) == Some(*wanted)))
        .map(value)
        .collect();
    assert!(found.len() <= 1, "{metric} {labels:?}: {} samples", found.len());
    found.first().copied()
}

/// `rush_requests_total` by (op, result).
fn requests(scrape: &Scrape) -> HashMap<(String, String), u64> {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == "rush_requests_total")
        .map(|sample| {
            let op = sample.labels.get("op").expect("op label").to_string();
            let result = sample.labels.get("result").expect("result label").to_string();
            ((op, result), value(sample) as u64)
        })
        .collect()
}

#[test]
fn a_scrape_counts_exactly_the_traffic_sent_on_io_uring_or_its_fallback() {
    scrape_counts_exactly_the_traffic_sent("auto");
}

#[test]
fn a_scrape_counts_exactly_the_traffic_sent_on_epoll() {
    scrape_counts_exactly_the_traffic_sent("epoll");
}

fn scrape_counts_exactly_the_traffic_sent(backend: &str) {
    let sale = sale_file();
    let mut served = Served::start([
        "--io",
        backend,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--shard-ports",
        "off",
        "--shards",
        "2",
        "--no-pin",
        "--sale",
        sale.to_str().expect("utf-8 path"),
    ]);
    let (address, _) = served.listening();
    let metrics = served.metrics_addr().expect("a metrics line in the log");
    assert!(metrics.ip().is_loopback());

    let before = scrape(metrics);
    assert!(requests(&before).is_empty(), "no request answered yet: {:?}", requests(&before));
    assert_eq!(one(&before, "rush_connections_accepted_total", &[]), Some(0.0));
    let running = before
        .samples
        .iter()
        .find(|sample| sample.metric == "rush_info")
        .and_then(|sample| sample.labels.get("backend").map(str::to_string))
        .expect("rush_info with a backend label");
    match backend {
        "epoll" => assert_eq!(running, "epoll"),
        _ => assert!(running == "io_uring" || running == "epoll", "{running}"),
    }

    // The traffic, counted on the client side by what the server answered.
    let mut sent: HashMap<(String, String), u64> = HashMap::new();
    let mut count = |op: &str, result: ResultCode| {
        *sent.entry((op.to_string(), result.name().to_string())).or_default() += 1;
    };
    let (mut frames, mut response_bytes) = (0u64, 0u64);
    let connections = 3;
    let mut clients: Vec<Client> =
        (0..connections).map(|_| Client::connect(address).expect("connect")).collect();
    for round in 0..40u64 {
        let client = &mut clients[(round % connections as u64) as usize];
        client.ping().expect("ping");
        count("PING", ResultCode::Ok);
        let reply = client.call(&reserve(1 + round % 100, 1 + round)).expect("reserve");
        count("RESERVE", reply.result);
        frames += 2;
        response_bytes += 2 * RESPONSE_SIZE as u64;
    }
    // An admin operation on the public port, and a read.
    let reply = clients[0].call(&Request::Pause { sku: SKU }).expect("pause");
    assert_eq!(reply.result, ResultCode::Unauthorized);
    count("PAUSE", ResultCode::Unauthorized);
    let reply = clients[1].call(&Request::QuerySku { sku: SKU }).expect("query");
    count("QUERY_SKU", reply.result);
    let ReplyBody::Sku(view) = reply.body else { panic!("a SKU view: {reply:?}") };
    let SkuView { total, available, reserved, sold, .. } = view;
    frames += 2;
    response_bytes += (RESPONSE_SIZE + SKU_RESPONSE_SIZE) as u64;
    assert_eq!(sent[&("RESERVE".to_string(), "OK".to_string())], STOCK, "{sent:?}");
    assert_eq!(sent[&("RESERVE".to_string(), "SOLD_OUT".to_string())], 40 - STOCK, "{sent:?}");
    let answered: u64 = sent.values().sum();

    // Every answer is counted once the shards published it (polled, not slept on).
    let deadline = Instant::now() + PUBLISH_DEADLINE;
    let after = loop {
        let after = scrape(metrics);
        let counted: u64 = requests(&after).values().sum();
        if counted >= answered || Instant::now() > deadline {
            break after;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(requests(&after), sent, "rush_requests_total is exactly the traffic sent");
    assert_eq!(one(&after, "rush_rate_limited_total", &[]), Some(0.0));
    assert_eq!(one(&after, "rush_overloaded_total", &[]), Some(0.0));

    // Each histogram: cumulative buckets, +Inf bucket = _count = the operation's requests.
    for op in ["PING", "RESERVE", "PAUSE", "QUERY_SKU"] {
        let expected: u64 =
            sent.iter().filter(|((name, _), _)| name == op).map(|(_, count)| count).sum();
        let histogram = after
            .samples
            .iter()
            .find(|sample| {
                sample.metric == "rush_request_duration_seconds"
                    && sample.labels.get("op") == Some(op)
            })
            .unwrap_or_else(|| panic!("a latency histogram for {op}"));
        let Value::Histogram(buckets) = &histogram.value else { panic!("not a histogram") };
        assert_eq!(buckets.len(), 22, "{op}: 21 bounds and +Inf");
        assert!(buckets.windows(2).all(|pair| pair[0].less_than < pair[1].less_than));
        assert!(buckets.windows(2).all(|pair| pair[0].count <= pair[1].count), "{op}");
        let last = buckets.last().expect("buckets");
        assert!(last.less_than.is_infinite());
        assert_eq!(last.count as u64, expected, "{op}: +Inf bucket");
        let count_line = one(&after, "rush_request_duration_seconds_count", &[("op", op)]);
        assert_eq!(count_line, Some(expected as f64), "{op}: _count");
        let sum = one(&after, "rush_request_duration_seconds_sum", &[("op", op)]).expect("_sum");
        assert!(sum >= 0.0 && sum < 60.0 * expected as f64, "{op}: _sum {sum}");
    }

    // Connections and bytes, exactly.
    assert_eq!(one(&after, "rush_connections_accepted_total", &[]), Some(connections as f64));
    assert_eq!(one(&after, "rush_connections_open", &[]), Some(connections as f64));
    assert_eq!(one(&after, "rush_connections_refused_total", &[]), Some(0.0));
    let received = one(&after, "rush_network_received_bytes_total", &[]);
    assert_eq!(received, Some((frames * REQUEST_SIZE as u64) as f64));
    let sent_bytes = one(&after, "rush_network_sent_bytes_total", &[]);
    assert_eq!(sent_bytes, Some(response_bytes as f64));

    // Stock gauges equal QUERY_SKU (nothing moved since: no expiry within the default hold).
    let level = |name: &str| one(&after, "rush_sku_stock_units", &[("sku", "41"), ("level", name)]);
    assert_eq!(level("total"), Some(total as f64));
    assert_eq!(level("available"), Some(available as f64));
    assert_eq!(level("held"), Some(reserved as f64));
    assert_eq!(level("sold"), Some(sold as f64));
    assert_eq!((total, available, reserved, sold), (STOCK, 0, STOCK, 0));
    assert_eq!(
        one(&after, "rush_sku_stock_units", &[("sku", "42"), ("level", "total")]),
        Some(5.0)
    );
    assert_eq!(one(&after, "rush_reservations_live", &[]), Some(STOCK as f64));
    assert_eq!(one(&after, "rush_waiters", &[]), Some(0.0));

    // Per-shard gauges: one sample per shard.
    for shard in ["0", "1"] {
        assert!(one(&after, "rush_ring_messages", &[("shard", shard)]).is_some());
        assert!(one(&after, "rush_ring_capacity_messages", &[("shard", shard)]).unwrap() > 0.0);
        assert!(one(&after, "rush_backlog_messages", &[("shard", shard)]).is_some());
    }

    // The journal (durable by default): every successful RESERVE was journaled and synced.
    let fsyncs = one(&after, "rush_journal_fsyncs_total", &[]).expect("fsyncs");
    assert!(fsyncs >= 1.0, "{fsyncs}");
    let fsync_histogram = after
        .samples
        .iter()
        .find(|sample| sample.metric == "rush_journal_fsync_duration_seconds")
        .expect("an fsync histogram");
    let Value::Histogram(buckets) = &fsync_histogram.value else { panic!("not a histogram") };
    assert_eq!(buckets.last().map(|bucket| bucket.count), Some(fsyncs));
    assert!(one(&after, "rush_journal_records_total", &[]).unwrap() >= STOCK as f64);
    assert!(one(&after, "rush_journal_written_bytes_total", &[]).unwrap() > 0.0);

    // Other paths and methods.
    assert_eq!(http("GET", metrics, "/").0, 404);
    assert_eq!(http("GET", metrics, "/metrics/x").0, 404);
    assert_eq!(http("POST", metrics, "/metrics").0, 405);
    assert_eq!(http("GET", metrics, "/metrics?x=1").0, 200, "a query string is ignored");

    drop(clients);
    served.signal(nix::sys::signal::Signal::SIGTERM);
    let (status, log) = served.wait();
    assert!(status.success(), "{log:?}");
    let _ = std::fs::remove_file(&sale);
}

#[test]
fn an_oversized_or_malformed_request_is_refused_and_the_exporter_keeps_serving() {
    use std::io::{Read, Write};
    let mut served = Served::start([
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "none",
        "--shard-ports",
        "off",
        "--shards",
        "1",
        "--no-pin",
        "--durability",
        "none",
    ]);
    served.listening();
    let metrics = served.metrics_addr().expect("a metrics line");
    let exchange = |request: &[u8]| -> String {
        let mut stream = std::net::TcpStream::connect(metrics).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = stream.write_all(request);
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    assert!(exchange(huge.as_bytes()).starts_with("HTTP/1.1 431 "));
    assert!(exchange(b"HELLO\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert!(exchange(b"GET /metrics SPDY/3\r\n\r\n").starts_with("HTTP/1.1 400 "));
    // A client that sends nothing holds the exporter (one connection at a time) for at most
    // the request timeout: the next scrape is answered after it.
    let idle = std::net::TcpStream::connect(metrics).expect("connect");
    let head = exchange(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
    drop(idle);
    let scraped = scrape(metrics);
    assert!(one(&scraped, "rush_connections_open", &[]).is_some());
    served.signal(nix::sys::signal::Signal::SIGTERM);
    let (status, log) = served.wait();
    assert!(status.success(), "{log:?}");
}

#[test]
fn metrics_none_serves_no_exporter_and_a_taken_address_stops_the_start() {
    let mut served = Served::start([
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "none",
        "--metrics-listen",
        "none",
        "--shard-ports",
        "off",
        "--shards",
        "1",
        "--no-pin",
        "--durability",
        "none",
    ]);
    served.listening();
    assert_eq!(served.metrics_addr(), None);
    served.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(served.wait().0.success());

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let output = std::process::Command::new(support::RUSH)
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "none"])
        .args(["--shard-ports", "off", "--shards", "1", "--no-pin", "--durability", "none"])
        .args(["--metrics-listen", &address])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run rush serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("cannot serve metrics on"), "{stderr}");
}
