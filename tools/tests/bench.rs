//! `rush bench` end to end: a real two-shard server in this process, the `rush` binary as a
//! subprocess, and its JSON, .hgrm, .hlog and plot outputs checked.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rush_engine::Config;
use rush_net::server::{BackendChoice, ConnLimits, Server, ServerConfig, ShardPorts};
use rush_runtime::RuntimeConfig;
use serde_json::Value;

/// A server on loopback like the suite's `server::start`: every port chosen free, per-shard
/// ports on, two unpinned shards, test-sized tables.
fn start_server() -> Server {
    Server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        shard_ports: ShardPorts::Auto,
        runtime: RuntimeConfig {
            shard_count: 2,
            engine: Config {
                sku_max: 256,
                account_max: 16_384,
                reservation_max: 32_768,
                waitlist_max: 4_096,
                request_key_max: 65_536,
                request_key_retention_ms: 3_600_000,
                limit_entry_max: 16_384,
                quantity_max: 100,
                hold_ms_default: 60_000,
                hold_ms_max: 600_000,
                wait_ms_max: 60_000,
            },
            port_count: 0,
            ring_capacity: 4096,
            pin: false,
            idle_spin_us: 0,
            idle_park_max_ms: rush_runtime::shard::IDLE_PARK_MAX_MS_DEFAULT,
            parked_max: rush_runtime::shard::PARKED_MAX_DEFAULT,
        },
        limits: ConnLimits::default(),
        backend: BackendChoice::Auto,
        prewarm: Vec::new(),
        capture: None,
        durability: rush_runtime::journal::Durability::None,
        data_dir: None,
        journal: rush_runtime::journal::JournalOptions::default(),
    })
    .expect("server starts")
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rush-bench-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn bench(server: &Server, args: &[&str]) -> Output {
    let target = server.local_addr().to_string();
    let admin = server.admin_addr().unwrap().to_string();
    Command::new(env!("CARGO_BIN_EXE_rush"))
        .args(["bench", &target, "--admin", &admin])
        .args(args)
        .output()
        .expect("rush runs")
}

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "rush bench failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!("--json - is not JSON ({error}):\n{}", String::from_utf8_lossy(&output.stdout))
    })
}

fn non_empty(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    assert!(!bytes.is_empty(), "{} is empty", path.display());
    bytes
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

#[test]
fn open_loop_seckill_hot_sells_exactly_the_stock_and_writes_every_report() {
    let server = start_server();
    let dir = scratch_dir("open");
    let (hgrm, hlog, png) = (path(&dir, "run.hgrm"), path(&dir, "run.hlog"), path(&dir, "run.png"));
    let args = [
        "-R",
        "1500",
        "-d",
        "1s",
        "-c",
        "2",
        "-P",
        "8",
        "-w",
        "seckill-hot",
        "--stock",
        "50",
        "--seed",
        "7",
        "--json",
        "-",
        "--hgrm",
        &hgrm,
        "--hlog",
        &hlog,
        "--plot",
        &png,
    ];
    let output = bench(&server, &args);
    let json = json_of(&output);
    // Demand (1500 buyers' requests) far exceeds supply (50): exactly the stock is sold.
    assert_eq!(json["results"]["OK"], 50, "{json:#}");
    assert_eq!(json["mode"], "open");
    assert_eq!(json["coordinated_omission_corrected"], true);
    let sent = json["sent"].as_u64().unwrap();
    assert!((1400..=1500).contains(&sent), "sent {sent}");
    assert_eq!(json["completed"], sent);
    assert_eq!(json["unanswered"], 0);
    let counted: u64 =
        json["results"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(counted, sent, "every reply is counted under its result code");
    assert!(json["results"]["SOLD_OUT"].as_u64().unwrap() > 1000);
    assert!(json["latency_us"]["p50"].as_f64().unwrap() > 0.0);
    assert!(
        json["latency_us"]["max"].as_f64().unwrap() >= json["latency_us"]["p99"].as_f64().unwrap()
    );
    assert_eq!(json["checks_passed"], true, "{:#}", json["checks"]);
    assert!(json["checks"].as_array().unwrap().len() >= 5);
    // The human summary went to stderr, leaving stdout to the JSON.
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(summary.contains("PASS") && summary.contains("p99.9"), "{summary}");

    let hgrm = String::from_utf8(non_empty(Path::new(&hgrm))).unwrap();
    assert!(hgrm.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
    assert!(hgrm.contains(&format!("Total count    = {sent:12}]")), "{hgrm}");
    assert!(hgrm.contains("#[Mean    ="));
    let hlog = String::from_utf8(non_empty(Path::new(&hlog))).unwrap();
    let intervals: Vec<&str> = hlog.lines().filter(|line| !line.starts_with(['#', '"'])).collect();
    assert!(!intervals.is_empty(), "{hlog}");
    for line in intervals {
        let max: f64 = line.split(',').nth(2).unwrap().parse().unwrap();
        assert!(max >= 1.0, "an interval's max latency is in µs: {line}");
    }
    assert_eq!(&non_empty(Path::new(&png))[..8], b"\x89PNG\r\n\x1a\n");

    // The same seed again: its SKU range is taken, so the bench refuses to start.
    let again = bench(&server, &args);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // `rush plot` puts two runs on one plot.
    let svg = path(&dir, "both.svg");
    let plot = Command::new(env!("CARGO_BIN_EXE_rush"))
        .args(["plot", &path(&dir, "run.hgrm"), &path(&dir, "run.hgrm"), "-o", &svg])
        .output()
        .unwrap();
    assert!(plot.status.success(), "{}", String::from_utf8_lossy(&plot.stderr));
    let svg = String::from_utf8(non_empty(Path::new(&svg))).unwrap();
    assert_eq!(svg.matches("<path ").count(), 2);
    assert!(svg.contains("run.hgrm"));

    server.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn closed_loop_shard_aware_mix_passes_the_checks() {
    let server = start_server();
    let dir = scratch_dir("closed");
    let svg = path(&dir, "closed.svg");
    let output = bench(
        &server,
        &[
            "--closed",
            "-n",
            "3000",
            "-c",
            "2",
            "-t",
            "2",
            "-P",
            "8",
            "--shard-aware",
            "--mix",
            "seckill-hot=50,reserve-confirm=25,reserve-cancel=15,ping=10",
            "--stock",
            "100",
            "--wallets",
            "50",
            "--json",
            "-",
            "--plot",
            &svg,
        ],
    );
    let json = json_of(&output);
    assert_eq!(json["mode"], "closed");
    assert_eq!(json["coordinated_omission_corrected"], false);
    assert_eq!(json["shard_aware"], true);
    assert_eq!(json["shards"], 2);
    assert_eq!(json["sent"], 3000);
    assert_eq!(json["completed"], 3000);
    assert_eq!(json["checks_passed"], true, "{:#}", json["checks"]);
    for op in ["PING", "RESERVE", "CONFIRM", "CANCEL"] {
        assert!(json["by_op"][op]["count"].as_u64().unwrap() > 0, "{op}: {:#}", json["by_op"]);
    }
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(summary.contains("NOT corrected for coordinated omission"), "{summary}");
    let svg = String::from_utf8(non_empty(Path::new(&svg))).unwrap();
    assert_eq!(svg.matches("<path ").count(), 1);
    server.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
