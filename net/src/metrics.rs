//! The metrics exporter: Prometheus text exposition format (version 0.0.4) at `/metrics`
//! over HTTP/1.1, served by a thread of its own (`rush serve --metrics-listen`). Every
//! metric is documented in docs/OPERATIONS.md.
//!
//! It only reads what the shards publish on the board (`rush_runtime::Board`: engine
//! counters, SKU levels, each shard's metrics row); no shard ever waits for it, and a scrape
//! costs the shards nothing but the cache misses of the rows it reads.
//!
//! The HTTP side is a small hand-written responder on `std::net` (no dependency): one
//! connection at a time, one request per connection (`Connection: close`), a request head
//! of at most [`REQUEST_BYTES_MAX`] bytes read within [`REQUEST_TIMEOUT`] (431 past the size,
//! the connection dropped past the time), `GET` or `HEAD` of `/metrics` (a query string is
//! ignored), 405 for another method there, 404 for any other path, 400 for a request line
//! that is not HTTP/1.x. A slow scraper therefore delays the next scrape by at most
//! [`REQUEST_TIMEOUT`] plus the write timeout, never a shard.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rush_engine::{ResultCode, SkuId};
use rush_runtime::metrics::{Histogram, MetricsSnapshot, LATENCY_BUCKET_BOUNDS_NS};
use rush_runtime::Board;

use crate::protocol::Opcode;
use crate::server::Backend;

/// The largest request head (request line and headers) the exporter reads.
pub const REQUEST_BYTES_MAX: usize = 8 * 1024;
/// How long a scraper has to send its request head, and the exporter to write an answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Per-SKU gauges are exported for at most this many SKUs: the hottest (most units held
/// plus sold) of those with stock, so that a catalog of 100,000 SKUs does not become
/// 500,000 series. Ties go to the lower SKU id.
pub const SKU_SERIES_MAX: usize = 64;
/// After an error answer, how long and how much of the client's further input is drained
/// before the close (see `respond`).
const LINGER_TIMEOUT: Duration = Duration::from_millis(200);
const LINGER_BYTES_MAX: usize = 64 * 1024;
/// The content type of the text format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the exporter reads: the server's board and what it runs on.
#[derive(Clone, Debug)]
pub struct MetricsSource {
    pub board: Arc<Board>,
    pub backend: Backend,
}

/// The exporter's thread; stopped (and joined) by [`MetricsExporter::stop`] or on drop.
#[derive(Debug)]
pub struct MetricsExporter {
    address: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsExporter {
    /// Binds `address` and starts serving scrapes of `source`.
    pub fn start(address: SocketAddr, source: MetricsSource) -> io::Result<MetricsExporter> {
        let listener = TcpListener::bind(address)?;
        let address = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let stopping = Arc::clone(&stopping);
            std::thread::Builder::new()
                .name("rush-metrics".into())
                .spawn(move || serve(listener, &source, &stopping))?
        };
        Ok(MetricsExporter { address, stopping, thread: Some(thread) })
    }

    /// The address it listens on (with the port the system chose, if it was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Stops accepting scrapes and joins the thread.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        self.stopping.store(true, Ordering::Release);
        // The thread blocks in accept: a connection of our own wakes it to see the flag.
        let _ = TcpStream::connect_timeout(&self.address, REQUEST_TIMEOUT);
        let _ = thread.join();
    }
}

impl Drop for MetricsExporter {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn serve(listener: TcpListener, source: &MetricsSource, stopping: &AtomicBool) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::Acquire) {
            return;
        }
        match stream {
            // A scraper's failure (reset, timeout) concerns that scrape only.
            Ok(stream) => {
                let _ = answer(stream, source);
            }
            // Out of file descriptors, for example: wait a moment rather than spin.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Reads one request head and writes one response.
fn answer(mut stream: TcpStream, source: &MetricsSource) -> io::Result<()> {
    let started = Instant::now();
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut head = [0u8; REQUEST_BYTES_MAX];
    let mut length = 0;
    loop {
        if head[..length].windows(4).any(|window| window == b"\r\n\r\n") {
            break;
        }
        if length == head.len() {
            return respond(&mut stream, 431, "Request Header Fields Too Large", "", b"", true);
        }
        let left = REQUEST_TIMEOUT.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Ok(()); // too slow: dropped
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut head[length..]) {
            Ok(0) => return Ok(()),
            Ok(count) => length += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    let line_end = head[..length].windows(2).position(|window| window == b"\r\n").unwrap_or(0);
    let line = std::str::from_utf8(&head[..line_end]).unwrap_or("");
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version), None) = (method, target, version, parts.next())
    else {
        return respond(&mut stream, 400, "Bad Request", "", b"", true);
    };
    if !version.starts_with("HTTP/1.") {
        return respond(&mut stream, 400, "Bad Request", "", b"", true);
    }
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let body = render(source);
            respond(&mut stream, 200, "OK", CONTENT_TYPE, body.as_bytes(), method == "GET")
        }
        (_, "/metrics") => respond(&mut stream, 405, "Method Not Allowed", "", b"", true),
        _ => respond(&mut stream, 404, "Not Found", "", b"", true),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    with_body: bool,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
    if !content_type.is_empty() {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    if status == 405 {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes())?;
    if with_body {
        stream.write_all(body)?;
    }
    stream.flush()?;
    if status != 200 {
        // The client may still be sending (a request past the size bound): closing with
        // unread input would reset the connection and could destroy the answer before the
        // client reads it. Half-close, then drain a bounded amount briefly.
        stream.shutdown(std::net::Shutdown::Write)?;
        stream.set_read_timeout(Some(LINGER_TIMEOUT))?;
        let mut drained = 0;
        let mut scratch = [0u8; 4096];
        let lingering = Instant::now();
        while drained < LINGER_BYTES_MAX && lingering.elapsed() < LINGER_TIMEOUT {
            match stream.read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(count) => drained += count,
            }
        }
    }
    Ok(())
}

/// The whole exposition, as of the shards' last publications.
pub fn render(source: &MetricsSource) -> String {
    let board = &source.board;
    let shard_count = board.shard_count();
    let shards: Vec<MetricsSnapshot> =
        (0..shard_count).map(|shard| board.metrics_of(shard)).collect();
    let mut total = MetricsSnapshot::default();
    for figures in &shards {
        total.add(figures);
    }
    let counters = board.counters();
    let mut out = String::with_capacity(16 * 1024);

    header(
        &mut out,
        "rush_info",
        "gauge",
        "What this server runs on: its I/O backend, its shard count, its version (always 1).",
    );
    let _ = writeln!(
        out,
        "rush_info{{backend=\"{}\",shards=\"{shard_count}\",version=\"{}\"}} 1",
        source.backend,
        env!("CARGO_PKG_VERSION")
    );

    header(
        &mut out,
        "rush_requests_total",
        "counter",
        "Requests answered, by operation and result code (a response queued to send).",
    );
    for operation in Opcode::ALL {
        for code in ResultCode::ALL {
            let count = total.requests[operation.index()][code as usize];
            if count > 0 {
                let _ = writeln!(
                    out,
                    "rush_requests_total{{op=\"{}\",result=\"{}\"}} {count}",
                    operation.name(),
                    code.name()
                );
            }
        }
    }
    let answered = |code: ResultCode| -> u64 {
        Opcode::ALL.iter().map(|operation| total.requests[operation.index()][code as usize]).sum()
    };
    header(
        &mut out,
        "rush_rate_limited_total",
        "counter",
        "Requests answered RATE_LIMITED (every operation).",
    );
    let _ = writeln!(out, "rush_rate_limited_total {}", answered(ResultCode::RateLimited));
    header(
        &mut out,
        "rush_overloaded_total",
        "counter",
        "Requests answered OVERLOADED (every operation).",
    );
    let _ = writeln!(out, "rush_overloaded_total {}", answered(ResultCode::Overloaded));

    header(&mut out, "rush_request_duration_seconds", "histogram", "Server-side latency per operation: frame taken in by the shard to response queued to send.");
    for operation in Opcode::ALL {
        let histogram = &total.latency[operation.index()];
        if histogram.count() > 0 {
            let labels = format!("op=\"{}\"", operation.name());
            histogram_lines(&mut out, "rush_request_duration_seconds", &labels, histogram);
        }
    }

    header(
        &mut out,
        "rush_connections_open",
        "gauge",
        "Client connections open (public, per-shard and admin ports).",
    );
    let _ = writeln!(out, "rush_connections_open {}", total.connections_open);
    header(&mut out, "rush_connections_accepted_total", "counter", "Client connections accepted.");
    let _ = writeln!(out, "rush_connections_accepted_total {}", total.connections_accepted);
    header(
        &mut out,
        "rush_connections_refused_total",
        "counter",
        "Connections closed at accept: every connection slot of the shard was taken, or the source address had source_connection_max open.",
    );
    let _ = writeln!(out, "rush_connections_refused_total {}", total.connections_refused);
    header(
        &mut out,
        "rush_network_received_bytes_total",
        "counter",
        "Bytes read from client sockets.",
    );
    let _ = writeln!(out, "rush_network_received_bytes_total {}", total.bytes_received);
    header(
        &mut out,
        "rush_network_sent_bytes_total",
        "counter",
        "Bytes written to client sockets.",
    );
    let _ = writeln!(out, "rush_network_sent_bytes_total {}", total.bytes_sent);
    header(
        &mut out,
        "rush_frames_fatal_total",
        "counter",
        "Frames that closed their connection (bad magic, version, opcode or length).",
    );
    let _ = writeln!(out, "rush_frames_fatal_total {}", total.frames_fatal);

    // Engine counters and levels.
    header(
        &mut out,
        "rush_reservations_live",
        "gauge",
        "Reservations held or waiting, over every shard.",
    );
    let _ = writeln!(out, "rush_reservations_live {}", total.reservations_live);
    let engine_counters: [(&str, &str, u64); 6] = [
        ("rush_holds_expired_total", "Holds the engine expired (not confirmed in time).", counters.holds_expired),
        ("rush_waiters_matched_total", "Waiting RESERVEs matched with units freed later.", counters.waiters_matched),
        ("rush_waiters_timed_out_total", "Waiting RESERVEs answered WAIT_TIMEOUT.", counters.waiters_timed_out),
        ("rush_acquires_total", "RESERVEs a shard sent to the SKU's coordinator (its bucket could not serve them).", counters.acquires_sent),
        ("rush_reclaim_rounds_total", "Reclaim rounds coordinators started (the pool was short; buckets were asked to surrender).", counters.reclaim_rounds),
        ("rush_request_keys_evicted_total", "Request keys forgotten after their retention (oldest first).", counters.keys_evicted),
    ];
    for (name, help, value) in engine_counters {
        header(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    // SKU levels, summed over the shards' rows as QUERY_SKU sums them.
    let skus = board.published_skus(usize::MAX);
    let mut levels: Vec<_> = skus.iter().filter_map(|sku| board.levels(*sku)).collect();
    let waiters: u64 = levels.iter().map(|level| u64::from(level.waiters)).sum();
    header(
        &mut out,
        "rush_waiters",
        "gauge",
        "RESERVEs waiting in SKU lines for units, over every SKU.",
    );
    let _ = writeln!(out, "rush_waiters {waiters}");
    levels.retain(|level| level.global_total > 0);
    levels.sort_by_key(|level| (std::cmp::Reverse(level.reserved + level.sold), level.sku));
    levels.truncate(SKU_SERIES_MAX);
    levels.sort_by_key(|level| level.sku);
    header(&mut out, "rush_sku_stock_units", "gauge", "Units of a SKU by level (total = available + held + sold), as QUERY_SKU reports them; the hottest SKUs with stock only (see docs/OPERATIONS.md).");
    for level in &levels {
        let sku: SkuId = level.sku;
        for (name, value) in [
            ("total", level.global_total),
            ("available", level.pool + level.bucket),
            ("held", level.reserved),
            ("sold", level.sold),
        ] {
            let _ = writeln!(out, "rush_sku_stock_units{{sku=\"{sku}\",level=\"{name}\"}} {value}");
        }
    }
    header(
        &mut out,
        "rush_sku_waiters",
        "gauge",
        "RESERVEs waiting in a SKU's line (the same SKUs as rush_sku_stock_units).",
    );
    for level in &levels {
        let _ = writeln!(out, "rush_sku_waiters{{sku=\"{}\"}} {}", level.sku, level.waiters);
    }

    // Each shard's rings and queues.
    let gauges: [ShardGauge; 4] = [
        ("rush_ring_messages", "Mesh messages waiting in the shard's inbound rings.", |figures| figures.ring_occupancy),
        ("rush_ring_capacity_messages", "Slots of the shard's inbound rings.", |figures| figures.ring_capacity),
        ("rush_backlog_messages", "Messages waiting in the shard's backlogs for room in a ring (while any wait, the shard takes no new client input).", |figures| figures.backlog),
        ("rush_parked_requests", "RESERVEs parked on the shard, to be answered later (bounded by parked_max).", |figures| figures.parked),
    ];
    for (name, help, read) in gauges {
        header(&mut out, name, "gauge", help);
        for (shard, figures) in shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", read(figures));
        }
    }

    // The journal.
    header(
        &mut out,
        "rush_journal_fsync_duration_seconds",
        "histogram",
        "Journal group commits: write + fdatasync submitted to completion seen by the shard.",
    );
    histogram_lines(
        &mut out,
        "rush_journal_fsync_duration_seconds",
        "",
        &total.journal_fsync_latency,
    );
    header(
        &mut out,
        "rush_journal_fsyncs_total",
        "counter",
        "Journal writes, each followed by an fdatasync.",
    );
    let _ = writeln!(out, "rush_journal_fsyncs_total {}", total.journal_fsyncs);
    header(
        &mut out,
        "rush_journal_records_total",
        "counter",
        "Inputs journaled (requests, mesh messages, clock ticks).",
    );
    let _ = writeln!(out, "rush_journal_records_total {}", total.journal_records);
    header(
        &mut out,
        "rush_journal_records_per_fsync",
        "gauge",
        "Records per fsync since the start (records / fsyncs; 0 before the first).",
    );
    let per_fsync = if total.journal_fsyncs == 0 {
        0.0
    } else {
        total.journal_records as f64 / total.journal_fsyncs as f64
    };
    let _ = writeln!(out, "rush_journal_records_per_fsync {per_fsync}");
    header(
        &mut out,
        "rush_journal_written_bytes_total",
        "counter",
        "Bytes written to the journal.",
    );
    let _ = writeln!(out, "rush_journal_written_bytes_total {}", total.journal_bytes);
    out
}

/// A per-shard gauge: its name, its help, and how to read it from a shard's figures.
type ShardGauge = (&'static str, &'static str, fn(&MetricsSnapshot) -> u64);

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `_bucket` lines (cumulative, `le` in seconds), `_sum` (seconds) and `_count` (the sum of
/// the buckets, so that count and buckets always agree).
fn histogram_lines(out: &mut String, name: &str, labels: &str, histogram: &Histogram) {
    let separator = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (index, count) in histogram.counts.iter().enumerate() {
        cumulative += count;
        let bound = match LATENCY_BUCKET_BOUNDS_NS.get(index) {
            Some(bound_ns) => seconds(*bound_ns),
            None => "+Inf".to_string(),
        };
        let _ = writeln!(out, "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {cumulative}");
    }
    let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
    let _ = writeln!(out, "{name}_sum{braces} {}", seconds(histogram.sum_ns));
    let _ = writeln!(out, "{name}_count{braces} {cumulative}");
}

/// Nanoseconds as seconds, exactly (no float rounding: `0.000001`, `2.5`).
fn seconds(ns: u64) -> String {
    let whole = ns / 1_000_000_000;
    let fraction = ns % 1_000_000_000;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:09}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(1_000), "0.000001");
        assert_eq!(seconds(2_500_000_000), "2.5");
        assert_eq!(seconds(5_000_000_000), "5");
        assert_eq!(seconds(0), "0");
    }

    #[test]
    fn histogram_lines_are_cumulative_and_count_is_the_last_bucket() {
        let mut histogram = Histogram::default();
        histogram.record(1_500);
        histogram.record(7_000_000_000);
        let mut out = String::new();
        histogram_lines(&mut out, "x", "op=\"PING\"", &histogram);
        assert!(out.contains("x_bucket{op=\"PING\",le=\"0.000001\"} 0\n"), "{out}");
        assert!(out.contains("x_bucket{op=\"PING\",le=\"0.000002\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{op=\"PING\",le=\"5\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{op=\"PING\",le=\"+Inf\"} 2\n"), "{out}");
        assert!(out.contains("x_count{op=\"PING\"} 2\n"), "{out}");
        assert!(out.contains("x_sum{op=\"PING\"} 7.0000015\n"), "{out}");
    }
}
