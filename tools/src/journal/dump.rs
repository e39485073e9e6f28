//! `rush journal dump DIR [--shard N] [--from SEQ] [--limit N]`: one line per input, each
//! prefixed by its entry's shard, sequence and clock:
//!
//! ```text
//! shard 0 seq 12 now_ms 1767225600123 REQUEST Reserve{account 7 sku 1 quantity 1 key 3 flags PAY hold_ms 0 wait_ms 0}
//! shard 0 seq 12 now_ms 1767225600123 MESSAGE from 1 link 4 cause 9 Grant{sku 1 reservation 77 quantity 1 refill 24}
//! shard 0 seq 13 now_ms 1767225600140 TICK
//! shard 0 seq 14 now_ms 1767225600200 START jump 65536
//! ```
//!
//! An entry is one group commit and holds any number of inputs, all applied at its `now_ms`;
//! a line per input keeps every line one thing that happened, and the prefix groups them
//! back (an entry without inputs, which the writer does not produce, gets one line ending in
//! `EMPTY`). Shards are dumped one after the other; `--from` and `--limit` count entries of
//! each shard. A damaged entry stops the dump: what precedes it is printed, then the error a
//! server start would give, and the exit status is 1 (unless `--limit` stopped the dump
//! before it). A torn tail is noted on stderr; it is not an error.

use std::fmt::Write as _;
use std::path::PathBuf;

use rush_engine::quota::Message;
use rush_engine::{Request, Target, RESERVE_FLAG_BUY, RESERVE_FLAG_PAY};
use rush_runtime::journal::codec::Input;

use super::read::{print, torn_text, Directory};

#[derive(clap::Args, Debug)]
pub struct DumpArgs {
    /// The data directory (`rush serve --data-dir`)
    pub dir: PathBuf,
    /// Only this shard [default: every shard, one after the other]
    #[arg(long, value_name = "N")]
    pub shard: Option<u32>,
    /// Start at this entry sequence (of each shard)
    #[arg(long, value_name = "SEQ", value_parser = clap::value_parser!(u64).range(1..))]
    pub from: Option<u64>,
    /// At most this many entries (of each shard), all their inputs
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

/// Lines are written in batches of about this many bytes.
const BATCH_BYTES: usize = 1 << 16;

pub fn dump(args: &DumpArgs) -> anyhow::Result<u8> {
    let directory = Directory::open(&args.dir)?;
    let shards = directory.shards(args.shard)?;
    let from = args.from.unwrap_or(1);
    for shard in shards {
        let files = directory.read_shard(shard)?;
        let walk = files.walk();
        let mut out = String::new();
        let limit =
            args.limit.map_or(usize::MAX, |limit| usize::try_from(limit).unwrap_or(usize::MAX));
        let from_index = walk.entries.partition_point(|(header, _)| header.sequence < from);
        let chosen = &walk.entries[from_index..];
        // A limit that stops before the end of the valid entries does not reach the damage
        // (or the torn tail) after them: the dump asked for succeeded.
        let reaches_end = chosen.len() <= limit;
        for (header, place) in chosen.iter().take(limit) {
            let inputs = files.inputs(header, place).map_err(|error| {
                anyhow::anyhow!(
                    "shard {shard}: {}: offset {}: entry with an undecodable input: {error}",
                    files.segments[place.segment].name,
                    place.offset
                )
            })?;
            let prefix = format!("shard {shard} seq {} now_ms {}", header.sequence, header.now_ms);
            if inputs.is_empty() {
                let _ = writeln!(out, "{prefix} EMPTY");
            }
            for input in &inputs {
                let _ = writeln!(out, "{prefix} {}", input_text(input));
            }
            if out.len() >= BATCH_BYTES {
                if !print(&out)? {
                    return Ok(0);
                }
                out.clear();
            }
        }
        if !print(&out)? {
            return Ok(0);
        }
        if !reaches_end {
            continue;
        }
        if let Some(error) = walk.error {
            eprintln!("rush: {error}");
            return Ok(1);
        }
        if let Some(torn) = &walk.torn {
            eprintln!(
                "rush: shard {shard}: torn tail of {}: a server start truncates it",
                torn_text(torn)
            );
        }
    }
    Ok(0)
}

/// One input, as a dump line shows it after the entry's prefix.
pub fn input_text(input: &Input) -> String {
    match input {
        Input::Tick => "TICK".to_string(),
        Input::Request(request) => format!("REQUEST {}", request_text(request)),
        Input::Message { envelope, link_sequence, cause_sequence } => format!(
            "MESSAGE from {} link {link_sequence} cause {cause_sequence} {}",
            envelope.from,
            message_text(&envelope.message)
        ),
        Input::Start { jump } => format!("START jump {jump}"),
    }
}

/// The name of a request's operation, as the dump and the stats show it.
pub fn request_name(request: &Request) -> &'static str {
    match request {
        Request::Ping => "Ping",
        Request::Reserve(_) => "Reserve",
        Request::Confirm { .. } => "Confirm",
        Request::Cancel { .. } => "Cancel",
        Request::QuerySku { .. } => "QuerySku",
        Request::QueryAccount { .. } => "QueryAccount",
        Request::QueryReservation { .. } => "QueryReservation",
        Request::PutSku(_) => "PutSku",
        Request::AdjustStock { .. } => "AdjustStock",
        Request::Pause { .. } => "Pause",
        Request::Resume { .. } => "Resume",
        Request::Deposit { .. } => "Deposit",
        Request::Withdraw { .. } => "Withdraw",
    }
}

/// The operations a journal records, in the order the stats list them.
pub const JOURNALED_REQUESTS: [&str; 9] = [
    "Reserve",
    "Confirm",
    "Cancel",
    "PutSku",
    "AdjustStock",
    "Pause",
    "Resume",
    "Deposit",
    "Withdraw",
];

/// The name of a mesh message, as the dump and the stats show it.
pub fn message_name(message: &Message) -> &'static str {
    match message {
        Message::Acquire { .. } => "Acquire",
        Message::Withdraw { .. } => "Withdraw",
        Message::Release { .. } => "Release",
        Message::Surrender { .. } => "Surrender",
        Message::Grant { .. } => "Grant",
        Message::Deny { .. } => "Deny",
        Message::Reclaim { .. } => "Reclaim",
        Message::Define { .. } => "Define",
        Message::SetPaused { .. } => "SetPaused",
        Message::Dry { .. } => "Dry",
        Message::Adjust { .. } => "Adjust",
        Message::Adjusted { .. } => "Adjusted",
    }
}

/// The mesh messages, in the order the stats list them.
pub const MESSAGES: [&str; 12] = [
    "Acquire",
    "Withdraw",
    "Release",
    "Surrender",
    "Grant",
    "Deny",
    "Reclaim",
    "Define",
    "SetPaused",
    "Dry",
    "Adjust",
    "Adjusted",
];

fn target_text(target: &Target) -> String {
    match target {
        Target::Reservation(id) => format!("reservation {id}"),
        Target::ReserveKey(key) => format!("reserve_key {key}"),
    }
}

/// `PAY|BUY`, `0` for none; unknown bits in hex (a journal holds only validated requests,
/// but the dump shows whatever is there).
fn flags_text(flags: u32) -> String {
    let mut names = Vec::new();
    if flags & RESERVE_FLAG_PAY != 0 {
        names.push("PAY".to_string());
    }
    if flags & RESERVE_FLAG_BUY != 0 {
        names.push("BUY".to_string());
    }
    let unknown = flags & !(RESERVE_FLAG_PAY | RESERVE_FLAG_BUY);
    if unknown != 0 {
        names.push(format!("{unknown:#x}"));
    }
    if names.is_empty() {
        "0".to_string()
    } else {
        names.join("|")
    }
}

fn request_text(request: &Request) -> String {
    let name = request_name(request);
    let fields = match request {
        Request::Reserve(reserve) => format!(
            "account {} sku {} quantity {} key {} flags {} hold_ms {} wait_ms {}",
            reserve.account,
            reserve.sku,
            reserve.quantity,
            reserve.key,
            flags_text(reserve.flags),
            reserve.hold_ms,
            reserve.wait_ms
        ),
        Request::Confirm { account, target, key } | Request::Cancel { account, target, key } => {
            format!("account {account} {} key {key}", target_text(target))
        }
        Request::QueryReservation { account, target } => {
            format!("account {account} {}", target_text(target))
        }
        Request::PutSku(spec) => format!(
            "sku {} stock_total {} price {} per_user_limit {} hold_ms {} start_ms {} end_ms {}",
            spec.sku,
            spec.stock_total,
            spec.price,
            spec.per_user_limit,
            spec.hold_ms,
            spec.start_ms,
            spec.end_ms
        ),
        Request::AdjustStock { sku, delta, key } => format!("sku {sku} delta {delta} key {key}"),
        Request::Pause { sku } | Request::Resume { sku } | Request::QuerySku { sku } => {
            format!("sku {sku}")
        }
        Request::Deposit { account, amount, key } | Request::Withdraw { account, amount, key } => {
            format!("account {account} amount {amount} key {key}")
        }
        Request::QueryAccount { account } => format!("account {account}"),
        Request::Ping => String::new(),
    };
    format!("{name}{{{fields}}}")
}

fn message_text(message: &Message) -> String {
    let name = message_name(message);
    let fields = match message {
        Message::Acquire { sku, reservation, quantity, deadline_ms, wait } => format!(
            "sku {sku} reservation {reservation} quantity {quantity} deadline_ms {deadline_ms} \
             wait {wait}"
        ),
        Message::Withdraw { sku, reservation } => format!("sku {sku} reservation {reservation}"),
        Message::Release { sku, quantity } | Message::Surrender { sku, quantity } => {
            format!("sku {sku} quantity {quantity}")
        }
        Message::Grant { sku, reservation, quantity, refill } => {
            format!("sku {sku} reservation {reservation} quantity {quantity} refill {refill}")
        }
        Message::Deny { sku, reservation, result } => {
            format!("sku {sku} reservation {reservation} result {}", result.name())
        }
        Message::Reclaim { sku } => format!("sku {sku}"),
        Message::Define { spec } => format!(
            "sku {} stock_total {} price {} per_user_limit {} hold_ms {} start_ms {} end_ms {}",
            spec.sku,
            spec.stock_total,
            spec.price,
            spec.per_user_limit,
            spec.hold_ms,
            spec.start_ms,
            spec.end_ms
        ),
        Message::SetPaused { sku, paused } => format!("sku {sku} paused {paused}"),
        Message::Dry { sku, dry } => format!("sku {sku} dry {dry}"),
        Message::Adjust { sku, delta, key } => format!("sku {sku} delta {delta} key {key}"),
        Message::Adjusted { sku, key, result } => {
            format!("sku {sku} key {key} result {}", result.name())
        }
    };
    format!("{name}{{{fields}}}")
}

#[cfg(test)]
mod tests {
    use rush_engine::quota::Envelope;
    use rush_engine::{Reserve, ResultCode};

    use super::*;

    #[test]
    fn inputs_read_as_documented() {
        let reserve = Request::Reserve(Reserve {
            account: 7,
            sku: 1,
            quantity: 1,
            key: 3,
            flags: RESERVE_FLAG_PAY,
            hold_ms: 0,
            wait_ms: 0,
        });
        assert_eq!(
            input_text(&Input::Request(reserve)),
            "REQUEST Reserve{account 7 sku 1 quantity 1 key 3 flags PAY hold_ms 0 wait_ms 0}"
        );
        let grant = Message::Grant { sku: 1, reservation: 77, quantity: 1, refill: 24 };
        let message = Input::Message {
            envelope: Envelope { from: 1, to: 0, message: grant },
            link_sequence: 4,
            cause_sequence: 9,
        };
        assert_eq!(
            input_text(&message),
            "MESSAGE from 1 link 4 cause 9 Grant{sku 1 reservation 77 quantity 1 refill 24}"
        );
        assert_eq!(input_text(&Input::Tick), "TICK");
        assert_eq!(input_text(&Input::Start { jump: 65536 }), "START jump 65536");
        let cancel = Request::Cancel { account: 2, target: Target::ReserveKey(5), key: 6 };
        assert_eq!(
            input_text(&Input::Request(cancel)),
            "REQUEST Cancel{account 2 reserve_key 5 key 6}"
        );
        let deny = Message::Deny { sku: 1, reservation: 9, result: ResultCode::SoldOut };
        assert_eq!(message_text(&deny), "Deny{sku 1 reservation 9 result SOLD_OUT}");
        assert_eq!(flags_text(0), "0");
        assert_eq!(flags_text(RESERVE_FLAG_PAY | RESERVE_FLAG_BUY | 8), "PAY|BUY|0x8");
    }
}
