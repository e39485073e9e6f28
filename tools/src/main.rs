//! `rush`: the command-line tool.
//!
//! Today it has `rush decode`, which explains frames byte by byte for people writing a
//! client from docs/PROTOCOL.md. `serve`, `bench`, `demo`, `capture` and `replay` come with
//! the network layer.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use rush_net::protocol::{decode_request, decode_response};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "rush", version, about = "Rush: a flash-sale reservation engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Decode protocol frames given as hex (spaces and newlines allowed) and print them.
    Decode {
        /// The bytes, in hex. Several frames may follow each other.
        hex: Vec<String>,
        /// Decode response frames (default: request frames).
        #[arg(long)]
        response: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Decode { hex, response } => decode(&hex.join(" "), response),
    }
}

fn decode(hex: &str, response: bool) -> anyhow::Result<()> {
    let bytes = parse_hex(hex)?;
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let consumed = if response {
            let (frame, consumed) =
                decode_response(rest).with_context(|| format!("frame at byte {offset}"))?;
            println!("{frame:#?}");
            consumed
        } else {
            let (frame, consumed) =
                decode_request(rest).with_context(|| format!("frame at byte {offset}"))?;
            println!("{frame:#?}");
            consumed
        };
        offset += consumed;
    }
    Ok(())
}

/// Hex digits, ignoring ASCII white space; an odd count or a non-hex character is an error.
fn parse_hex(text: &str) -> anyhow::Result<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|byte| !byte.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        bail!("odd number of hex digits ({})", digits.len());
    }
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).context("hex must be ASCII")?;
            u8::from_str_radix(text, 16).with_context(|| format!("not a hex byte: {text:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_hex;

    #[test]
    fn parses_spaced_hex_and_rejects_bad_input() {
        assert_eq!(parse_hex("52 53\n01").unwrap(), vec![0x52, 0x53, 0x01]);
        assert!(parse_hex("525").is_err());
        assert!(parse_hex("5g").is_err());
        assert!(parse_hex("é1").is_err());
    }
}
