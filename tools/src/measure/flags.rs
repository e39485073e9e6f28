//! The command-line values bench and replay read alike: durations, percentile lists and
//! addresses.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::Context as _;

/// A validated `--percentiles` list.
#[derive(Clone, Debug, PartialEq)]
pub struct Percentiles(pub Vec<f64>);

pub fn parse_percentiles(text: &str) -> Result<Percentiles, String> {
    let mut values = Vec::new();
    for part in text.split(',').map(str::trim) {
        let value: f64 =
            part.parse().map_err(|_| format!("{part:?} is not a number (e.g. 50,99,99.9)"))?;
        if !(value > 0.0 && value <= 100.0) {
            return Err(format!("percentile {part} is outside (0, 100]"));
        }
        values.push(value);
    }
    Ok(Percentiles(values))
}

/// `250us`, `500ms`, `10s`, `1.5s`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 =
        number.parse().map_err(|_| format!("{text:?} is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {text:?} (us, ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is out of range"))
}

/// The first address `address` (host:port) resolves to.
pub fn resolve(address: &str) -> anyhow::Result<SocketAddr> {
    address
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {address:?}"))?
        .next()
        .with_context(|| format!("{address:?} resolves to nothing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_percentiles_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5parsecs").is_err());
        assert_eq!(parse_percentiles("50, 99.9").unwrap().0, vec![50.0, 99.9]);
        assert!(parse_percentiles("0").is_err());
        assert!(parse_percentiles("101").is_err());
        assert!(parse_percentiles("50,x").is_err());
    }
}
