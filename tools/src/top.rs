//! `rush top ADDR`: a live view of a running server, like `redis-cli --stat`, read from its
//! metrics endpoint (`rush serve --metrics-listen`, docs/OPERATIONS.md).
//!
//! Every interval it scrapes `http://ADDR/metrics` and prints, from the differences with
//! the previous scrape: requests per second in total and by result code, the p50 and p99 of
//! the server-side latency (every operation together, estimated from the histogram's bucket
//! differences as Prometheus's `histogram_quantile` does: linear within a bucket), the
//! connections open and accepted per second, and the stock left on the hottest SKUs.
//!
//! On a terminal the view refreshes in place (ANSI: cursor home, clear); when standard
//! output is not a terminal (a pipe, a file) it prints one line per interval, of
//! `key=value` fields separated by spaces, for scripts:
//!
//! ```text
//! elapsed_s=1.000 requests=2400 requests_per_s=2400.0 OK_per_s=2000.0 SOLD_OUT_per_s=400.0 p50_us=38 p99_us=410 connections=12 accepted_per_s=0.0 stock=41:0/25,42:5/5
//! ```
//!
//! The scrape is a plain HTTP/1.1 GET on `std::net` (one connection per scrape, a response
//! of at most [`RESPONSE_BYTES_MAX`], [`SCRAPE_TIMEOUT`] for the whole exchange), and the
//! text format is parsed by the small reader below: it reads what the exporter writes
//! (samples with quoted labels; comments skipped) and rejects what it cannot read.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::measure::flags::parse_duration;

/// The largest scrape `rush top` reads (the exporter's output is a few tens of KiB).
pub const RESPONSE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The longest a scrape may take, connection to last byte.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// SKUs shown, hottest first (most units held plus sold).
pub const SKUS_SHOWN_MAX: usize = 5;
/// The bounds of `--interval`.
const INTERVAL_MIN: Duration = Duration::from_millis(100);
const INTERVAL_MAX: Duration = Duration::from_secs(3600);

/// The `rush top` flags.
#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// The metrics address of a server (`rush serve --metrics-listen`): HOST:PORT, or
    /// http://HOST:PORT[/PATH] (the path defaults to /metrics)
    #[arg(value_name = "ADDR")]
    pub address: String,
    /// Time between two views, 100ms to 1h
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Stop after this many views [default: until interrupted]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = parse_duration(text)?;
    if !(INTERVAL_MIN..=INTERVAL_MAX).contains(&interval) {
        return Err(format!("{text} is outside 100ms..=1h"));
    }
    Ok(interval)
}

/// Where to scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    host: String,
    address: SocketAddr,
    path: String,
}

fn parse_target(text: &str) -> anyhow::Result<Target> {
    let rest = text.strip_prefix("http://").unwrap_or(text);
    if rest.contains("://") {
        bail!("{text:?}: only http:// is served by the exporter");
    }
    let (authority, path) = match rest.find('/') {
        Some(index) => (&rest[..index], rest[index..].to_string()),
        None => (rest, "/metrics".to_string()),
    };
    let address = authority
        .to_socket_addrs()
        .with_context(|| format!("{authority:?} is not HOST:PORT"))?
        .next()
        .ok_or_else(|| anyhow!("{authority:?} resolves to no address"))?;
    Ok(Target { host: authority.to_string(), address, path })
}

/// One scrape, reduced to what the view shows.
#[derive(Clone, Debug, Default, PartialEq)]
struct View {
    /// `rush_requests_total` summed over operations, by result.
    results: BTreeMap<String, f64>,
    /// `rush_request_duration_seconds` buckets summed over operations: (le, cumulative).
    latency: Vec<(f64, f64)>,
    connections_open: f64,
    connections_accepted: f64,
    /// SKU → (total, available, held, sold).
    stock: BTreeMap<String, [f64; 4]>,
}

pub fn run(args: &TopArgs) -> anyhow::Result<()> {
    let target = parse_target(&args.address)?;
    let terminal = std::io::stdout().is_terminal();
    let mut out = std::io::stdout().lock();
    let mut previous = scrape(&target)?;
    let mut previous_at = Instant::now();
    let started = previous_at;
    let mut next = previous_at + args.interval;
    let mut shown = 0;
    while args.count.is_none_or(|count| shown < count) {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += args.interval;
        let view = scrape(&target)?;
        let now = Instant::now();
        let seconds = now.duration_since(previous_at).as_secs_f64();
        let rates = Rates::between(&previous, &view, seconds);
        let text = if terminal {
            rates.screen(&target, args.interval, &view)
        } else {
            format!("{}\n", rates.line(now.duration_since(started).as_secs_f64(), &view))
        };
        out.write_all(text.as_bytes()).context("writing the view")?;
        out.flush().context("writing the view")?;
        previous = view;
        previous_at = now;
        shown += 1;
    }
    Ok(())
}

/// What changed between two scrapes, per second.
#[derive(Debug, PartialEq)]
struct Rates {
    seconds: f64,
    requests: f64,
    by_result: BTreeMap<String, f64>,
    p50_s: Option<f64>,
    p99_s: Option<f64>,
    accepted_per_s: f64,
}

impl Rates {
    fn between(before: &View, after: &View, seconds: f64) -> Rates {
        let seconds = seconds.max(f64::MIN_POSITIVE);
        let mut by_result = BTreeMap::new();
        let mut requests = 0.0;
        for (result, count) in &after.results {
            // A counter that went down means the server restarted: count from zero.
            let delta = match before.results.get(result) {
                Some(previous) if previous <= count => count - previous,
                _ => *count,
            };
            requests += delta;
            if delta > 0.0 {
                by_result.insert(result.clone(), delta / seconds);
            }
        }
        let buckets: Vec<(f64, f64)> = after
            .latency
            .iter()
            .map(|&(bound, count)| {
                let previous = before
                    .latency
                    .iter()
                    .find(|(other, _)| *other == bound)
                    .map_or(0.0, |(_, count)| *count);
                (bound, if previous <= count { count - previous } else { count })
            })
            .collect();
        Rates {
            seconds,
            requests,
            by_result,
            p50_s: quantile(&buckets, 0.50),
            p99_s: quantile(&buckets, 0.99),
            accepted_per_s: (after.connections_accepted - before.connections_accepted).max(0.0)
                / seconds,
        }
    }

    fn line(&self, elapsed_s: f64, view: &View) -> String {
        let mut line = format!(
            "elapsed_s={elapsed_s:.3} requests={} requests_per_s={:.1}",
            self.requests as u64,
            self.requests / self.seconds
        );
        for (result, rate) in &self.by_result {
            line.push_str(&format!(" {result}_per_s={rate:.1}"));
        }
        let micros = |value: Option<f64>| match value {
            Some(seconds) if seconds.is_finite() => format!("{:.0}", seconds * 1e6),
            Some(_) => "inf".to_string(),
            None => "none".to_string(),
        };
        line.push_str(&format!(" p50_us={} p99_us={}", micros(self.p50_s), micros(self.p99_s)));
        line.push_str(&format!(
            " connections={} accepted_per_s={:.1}",
            view.connections_open as u64, self.accepted_per_s
        ));
        let stock: Vec<String> = hottest(view)
            .iter()
            .map(|(sku, [total, available, _, _])| {
                format!("{sku}:{}/{}", *available as u64, *total as u64)
            })
            .collect();
        line.push_str(&format!(
            " stock={}",
            if stock.is_empty() { "-".into() } else { stock.join(",") }
        ));
        line
    }

    fn screen(&self, target: &Target, interval: Duration, view: &View) -> String {
        // Cursor home, clear to the end of the screen: the view is redrawn in place.
        let mut screen = String::from("\x1b[H\x1b[2J");
        screen.push_str(&format!(
            "rush top  http://{}{}  every {:.1} s  (Ctrl-C to quit)\n\n",
            target.host,
            target.path,
            interval.as_secs_f64()
        ));
        screen.push_str(&format!("requests/s      {:>12.1}\n", self.requests / self.seconds));
        for (result, rate) in &self.by_result {
            screen.push_str(&format!("  {result:<14}{rate:>12.1}\n"));
        }
        let latency = |value: Option<f64>| match value {
            Some(seconds) if seconds.is_finite() => human_seconds(seconds),
            Some(_) => "> 5 s".to_string(),
            None => "-".to_string(),
        };
        screen.push_str(&format!(
            "\nlatency         p50 {}   p99 {}\n",
            latency(self.p50_s),
            latency(self.p99_s)
        ));
        screen.push_str(&format!(
            "connections     {} open, {:.1} accepted/s\n\nstock left (hottest SKUs)\n",
            view.connections_open as u64, self.accepted_per_s
        ));
        for (sku, [total, available, held, sold]) in hottest(view) {
            screen.push_str(&format!(
                "  sku {sku:<10} {:>10} of {:<10} held {:<10} sold {}\n",
                available as u64, total as u64, held as u64, sold as u64
            ));
        }
        screen
    }
}

fn human_seconds(seconds: f64) -> String {
    if seconds < 1e-3 {
        format!("{:.0} µs", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.2} ms", seconds * 1e3)
    } else {
        format!("{seconds:.2} s")
    }
}

/// The hottest SKUs of a view (most units held plus sold; ties by SKU id).
fn hottest(view: &View) -> Vec<(String, [f64; 4])> {
    let mut skus: Vec<(String, [f64; 4])> =
        view.stock.iter().map(|(sku, levels)| (sku.clone(), *levels)).collect();
    skus.sort_by(|(a_sku, a), (b_sku, b)| {
        (b[2] + b[3]).total_cmp(&(a[2] + a[3])).then_with(|| a_sku.cmp(b_sku))
    });
    skus.truncate(SKUS_SHOWN_MAX);
    skus
}

/// The value below which `q` of the observations lie, from cumulative buckets `(le,
/// count)` sorted by bound: linear inside the bucket that holds the rank (from the previous
/// bound, or 0), the last finite bound if the rank is in the `+Inf` bucket (then the answer
/// is infinite: past the histogram). `None` without observations.
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower_bound = 0.0;
    let mut lower_count = 0.0;
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(f64::INFINITY);
            }
            let inside = count - lower_count;
            let fraction = if inside > 0.0 { (rank - lower_count) / inside } else { 1.0 };
            return Some(lower_bound + (bound - lower_bound) * fraction);
        }
        lower_bound = bound;
        lower_count = count;
    }
    Some(f64::INFINITY)
}

fn scrape(target: &Target) -> anyhow::Result<View> {
    let text = http_get(target).with_context(|| {
        format!("cannot scrape http://{}{} (rush serve --metrics-listen)", target.host, target.path)
    })?;
    parse_view(&text).context("the metrics endpoint answered something unreadable")
}

/// A GET over one connection (`Connection: close`), the body of a 200 answer.
fn http_get(target: &Target) -> anyhow::Result<String> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&target.address, SCRAPE_TIMEOUT)?;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rush-top\r\nAccept: text/plain\r\n\
         Connection: close\r\n\r\n",
        target.path, target.host
    );
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = SCRAPE_TIMEOUT.saturating_sub(started.elapsed());
        if left.is_zero() {
            bail!("no complete answer within {SCRAPE_TIMEOUT:?}");
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(count) => response.extend_from_slice(&chunk[..count]),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error.into()),
        }
        if response.len() > RESPONSE_BYTES_MAX {
            bail!("an answer larger than {RESPONSE_BYTES_MAX} bytes");
        }
    }
    let text = String::from_utf8(response).context("the answer is not UTF-8")?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| anyhow!("no HTTP header end"))?;
    let status_line = head.lines().next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let (version, status) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1.x answer: {status_line:?}");
    }
    if status != "200" {
        bail!("answered {status_line:?}");
    }
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>())
    });
    match length {
        Some(Ok(length)) if length != body.len() => {
            bail!("a body of {} bytes, {length} announced", body.len())
        }
        Some(Err(_)) => bail!("a bad Content-Length"),
        _ => Ok(body.to_string()),
    }
}

/// One sample line: `name{label="value",...} number`.
#[derive(Debug, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(name, _)| name == key).map(|(_, value)| value.as_str())
    }
}

fn parse_sample(line: &str) -> anyhow::Result<Sample> {
    let name_end = line.find(['{', ' ']).ok_or_else(|| anyhow!("no value: {line:?}"))?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let Some((index, c)) = chars.next() else { bail!("unclosed labels: {line:?}") };
            match c {
                '}' => {
                    rest = &inner[index + 1..];
                    break;
                }
                ',' if key.is_empty() => {}
                '=' => {
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        bail!("an unquoted label value: {line:?}");
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '"')) => break,
                            Some((_, '\\')) => match chars.next() {
                                Some((_, 'n')) => value.push('\n'),
                                Some((_, other)) => value.push(other),
                                None => bail!("a bad escape: {line:?}"),
                            },
                            Some((_, other)) => value.push(other),
                            None => bail!("an unclosed label value: {line:?}"),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                c => key.push(c),
            }
        }
    }
    let value_text = rest.split_whitespace().next().ok_or_else(|| anyhow!("no value: {line:?}"))?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        text => text.parse().with_context(|| format!("not a number in {line:?}"))?,
    };
    Ok(Sample { name, labels, value })
}

fn parse_view(text: &str) -> anyhow::Result<View> {
    let mut view = View::default();
    let mut latency: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sample = parse_sample(line)?;
        match sample.name.as_str() {
            "rush_requests_total" => {
                let result = sample.label("result").unwrap_or("?").to_string();
                *view.results.entry(result).or_default() += sample.value;
            }
            "rush_request_duration_seconds_bucket" => {
                let bound = match sample.label("le") {
                    Some("+Inf") => f64::INFINITY,
                    Some(text) => text.parse().with_context(|| format!("le in {line:?}"))?,
                    None => bail!("a bucket without le: {line:?}"),
                };
                // Keyed by the bound's bits: buckets of every operation share the bounds.
                let entry = latency.entry(bound.to_bits()).or_insert((bound, 0.0));
                entry.1 += sample.value;
            }
            "rush_connections_open" => view.connections_open = sample.value,
            "rush_connections_accepted_total" => view.connections_accepted = sample.value,
            "rush_sku_stock_units" => {
                let sku = sample.label("sku").unwrap_or("?").to_string();
                let index = match sample.label("level") {
                    Some("total") => 0,
                    Some("available") => 1,
                    Some("held") => 2,
                    Some("sold") => 3,
                    _ => continue,
                };
                view.stock.entry(sku).or_default()[index] = sample.value;
            }
            _ => {}
        }
    }
    let mut buckets: Vec<(f64, f64)> = latency.into_values().collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    view.latency = buckets;
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse_with_escapes_and_infinities() {
        let sample = parse_sample(r#"x_bucket{op="A,B",le="+Inf",q="a\"b\\c"} 12"#).unwrap();
        assert_eq!(sample.name, "x_bucket");
        assert_eq!(sample.label("op"), Some("A,B"));
        assert_eq!(sample.label("le"), Some("+Inf"));
        assert_eq!(sample.label("q"), Some("a\"b\\c"));
        assert_eq!(sample.value, 12.0);
        assert_eq!(parse_sample("up 1").unwrap().value, 1.0);
        assert!(parse_sample("up").is_err());
        assert!(parse_sample("up{a=\"b\" 1").is_err());
        assert!(parse_sample("up{a=b} 1").is_err());
        assert!(parse_sample("up one").is_err());
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        // 10 values ≤ 1, 10 more in (1, 2], nothing past.
        let buckets = [(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 20.0)];
        assert_eq!(quantile(&buckets, 0.5), Some(1.0));
        assert_eq!(quantile(&buckets, 0.75), Some(1.5));
        assert_eq!(quantile(&buckets, 0.25), Some(0.5));
        assert_eq!(quantile(&[(1.0, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
        assert_eq!(quantile(&[(1.0, 0.0), (f64::INFINITY, 3.0)], 0.5), Some(f64::INFINITY));
    }

    #[test]
    fn rates_are_differences_per_second() {
        let text_before = "rush_requests_total{op=\"RESERVE\",result=\"OK\"} 10\n\
            rush_request_duration_seconds_bucket{op=\"RESERVE\",le=\"0.001\"} 10\n\
            rush_request_duration_seconds_bucket{op=\"RESERVE\",le=\"+Inf\"} 10\n\
            rush_connections_accepted_total 1\nrush_connections_open 1\n";
        let text_after = "# HELP x y\nrush_requests_total{op=\"RESERVE\",result=\"OK\"} 30\n\
            rush_requests_total{op=\"PING\",result=\"OK\"} 10\n\
            rush_requests_total{op=\"RESERVE\",result=\"SOLD_OUT\"} 20\n\
            rush_request_duration_seconds_bucket{op=\"RESERVE\",le=\"0.001\"} 50\n\
            rush_request_duration_seconds_bucket{op=\"RESERVE\",le=\"+Inf\"} 50\n\
            rush_request_duration_seconds_bucket{op=\"PING\",le=\"0.001\"} 10\n\
            rush_request_duration_seconds_bucket{op=\"PING\",le=\"+Inf\"} 10\n\
            rush_connections_accepted_total 3\nrush_connections_open 2\n\
            rush_sku_stock_units{sku=\"41\",level=\"total\"} 25\n\
            rush_sku_stock_units{sku=\"41\",level=\"available\"} 5\n";
        let before = parse_view(text_before).unwrap();
        let after = parse_view(text_after).unwrap();
        let rates = Rates::between(&before, &after, 2.0);
        assert_eq!(rates.requests, 50.0);
        assert_eq!(rates.by_result["OK"], 15.0);
        assert_eq!(rates.by_result["SOLD_OUT"], 10.0);
        assert_eq!(rates.accepted_per_s, 1.0);
        // 50 new values, all ≤ 1 ms: the median interpolates to half the first bucket.
        assert_eq!(rates.p50_s, Some(0.0005));
        let line = rates.line(2.0, &after);
        assert_eq!(
            line,
            "elapsed_s=2.000 requests=50 requests_per_s=25.0 OK_per_s=15.0 SOLD_OUT_per_s=10.0 \
             p50_us=500 p99_us=990 connections=2 accepted_per_s=1.0 stock=41:5/25"
        );
    }

    #[test]
    fn targets_parse() {
        let target = parse_target("127.0.0.1:7072").unwrap();
        assert_eq!(target.path, "/metrics");
        let target = parse_target("http://127.0.0.1:9/x").unwrap();
        assert_eq!((target.host.as_str(), target.path.as_str()), ("127.0.0.1:9", "/x"));
        assert!(parse_target("https://127.0.0.1:9/").is_err());
        assert!(parse_target("nowhere").is_err());
        assert!(parse_interval("10ms").is_err());
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
    }
}
