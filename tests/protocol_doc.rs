//! docs/PROTOCOL.md: the worked examples are exactly what the implementation produces.
//!
//! An example is an HTML comment `<!-- example:NAME -->` followed by a ```text block of hex
//! bytes, 16 per line, each line optionally starting with an offset column `0010:`.

use rush_engine::{
    Reply, ReplyBody, Request, ReservationState, ReservationView, Reserve, ResultCode,
    RESERVE_FLAG_PAY,
};
use rush_net::protocol::{
    decode_request, decode_response, encode_request, encode_response, Opcode, RESPONSE_SIZE,
};
use rush_suite::rng::Rng;

const PROTOCOL_MD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md");

/// Every example of the document, by name.
fn examples() -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(PROTOCOL_MD).expect("docs/PROTOCOL.md is readable");
    let mut examples = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(name) =
            line.trim().strip_prefix("<!-- example:").and_then(|rest| rest.strip_suffix("-->"))
        else {
            continue;
        };
        let name = name.trim().to_string();
        let fence = lines.next().map(str::trim);
        assert_eq!(fence, Some("```text"), "example {name}: a ```text block follows the marker");
        let mut bytes = Vec::new();
        let mut closed = false;
        for (row, line) in lines.by_ref().enumerate() {
            let line = line.trim();
            if line == "```" {
                closed = true;
                break;
            }
            let mut tokens = line.split_whitespace().peekable();
            if let Some(offset) = tokens.peek().and_then(|token| token.strip_suffix(':')) {
                let offset = usize::from_str_radix(offset, 16).expect("hex offset column");
                assert_eq!(offset, bytes.len(), "example {name}: offset column of line {row}");
                tokens.next();
            }
            let before = bytes.len();
            for token in tokens {
                assert_eq!(token.len(), 2, "example {name}: `{token}` is not one hex byte");
                bytes.push(u8::from_str_radix(token, 16).expect("hex byte"));
            }
            assert!(bytes.len() - before <= 16, "example {name}: at most 16 bytes a line");
        }
        assert!(closed, "example {name}: unterminated block");
        examples.push((name, bytes));
    }
    examples
}

fn example(name: &str) -> Vec<u8> {
    let mut found = examples().into_iter().filter(|(each, _)| each == name);
    let (_, bytes) =
        found.next().unwrap_or_else(|| panic!("docs/PROTOCOL.md has no example {name}"));
    assert!(found.next().is_none(), "example {name} appears twice");
    bytes
}

fn documented_request() -> Request {
    Request::Reserve(Reserve {
        account: 42,
        sku: 1001,
        quantity: 1,
        key: 9001,
        flags: RESERVE_FLAG_PAY,
        hold_ms: 0,
        wait_ms: 0,
    })
}

fn documented_reply() -> Reply {
    Reply::with_body(
        ResultCode::Ok,
        ReplyBody::Reservation(ReservationView {
            reservation: 0x0000_0001_0000_0000,
            account: 42,
            sku: 1001,
            quantity: 1,
            flags: RESERVE_FLAG_PAY,
            amount: 4999,
            deadline_ms: 1_767_225_630_000,
            state: ReservationState::Held,
        }),
    )
}

#[test]
fn every_example_is_checked() {
    let mut names: Vec<String> = examples().into_iter().map(|(name, _)| name).collect();
    names.sort();
    assert_eq!(names, ["reserve-request", "reserve-response"]);
}

#[test]
fn reserve_request_example_is_what_we_encode() {
    let documented = example("reserve-request");
    let mut encoded = Vec::new();
    encode_request(7, &documented_request(), &mut encoded);
    assert_eq!(encoded, documented);
}

#[test]
fn reserve_request_example_decodes_to_the_documented_fields() {
    let documented = example("reserve-request");
    let (frame, consumed) = decode_request(&documented).expect("the example is valid");
    assert_eq!(consumed, 64);
    assert_eq!(frame.request_id, 7);
    assert_eq!(frame.opcode(), Opcode::Reserve);
    assert_eq!(frame.request, documented_request());
}

#[test]
fn reserve_response_example_is_what_we_encode() {
    let documented = example("reserve-response");
    let mut encoded = Vec::new();
    encode_response(Opcode::Reserve, 7, &documented_reply(), &mut encoded);
    assert_eq!(encoded, documented);
}

#[test]
fn reserve_response_example_decodes_to_the_documented_fields() {
    let documented = example("reserve-response");
    let (frame, consumed) = decode_response(&documented).expect("the example is valid");
    assert_eq!(consumed, RESPONSE_SIZE);
    assert_eq!(frame.opcode, Opcode::Reserve);
    assert_eq!(frame.request_id, 7);
    assert_eq!(frame.result(), ResultCode::Ok);
    assert_eq!(frame.original(), ResultCode::Ok);
    // The account is not on the wire: the client knows it (it asked for account 42).
    assert_eq!(frame.with_account(42).reply, documented_reply());
    let view = frame.reply.reservation().expect("a reservation body");
    assert_eq!(view.reservation, 0x0000_0001_0000_0000);
    assert_eq!(view.sku, 1001);
    assert_eq!(view.amount, 4999);
    assert_eq!(view.deadline_ms, 1_767_225_630_000);
    assert_eq!(view.quantity, 1);
    assert_eq!(view.flags, RESERVE_FLAG_PAY);
    assert_eq!(view.state, ReservationState::Held);
}

/// The numeric tables of the document agree with the code: every opcode, result code and
/// reservation state appears in its table row with its number and name.
#[test]
fn tables_match_the_code() {
    let text = std::fs::read_to_string(PROTOCOL_MD).expect("docs/PROTOCOL.md is readable");
    let rows: Vec<Vec<String>> = text
        .lines()
        .filter(|line| line.starts_with('|'))
        .map(|line| line.split('|').map(|cell| cell.trim().to_string()).collect())
        .collect();
    let has_row = |number: &str, name: &str| {
        rows.iter().any(|cells| {
            cells.get(1).map(String::as_str) == Some(number)
                && cells.get(2).map(String::as_str) == Some(name)
        })
    };
    for opcode in Opcode::ALL {
        let number = format!("`{:#04x}`", opcode.as_u8());
        let name = format!("`{}`", opcode.name());
        assert!(has_row(&number, &name), "opcode row {number} {name}");
    }
    for code in ResultCode::ALL {
        let name = format!("`{}`", code.name());
        assert!(has_row(&(code as u16).to_string(), &name), "result code row {name}");
    }
    for value in 0..=6u8 {
        let state = ReservationState::from_u8(value).expect("a state");
        let name = match state {
            ReservationState::None => "NONE",
            ReservationState::Waiting => "WAITING",
            ReservationState::Held => "HELD",
            ReservationState::Confirmed => "CONFIRMED",
            ReservationState::Cancelled => "CANCELLED",
            ReservationState::Expired => "EXPIRED",
            ReservationState::WaitTimedOut => "WAIT_TIMED_OUT",
        };
        assert!(has_row(&value.to_string(), &format!("`{name}`")), "state row {name}");
    }
    assert!(ReservationState::from_u8(7).is_none(), "the state table lists every state");
}

/// Every layout table (`| offset | size | type | field | meaning |`) covers its bytes without
/// gap or overlap and ends where a header (16), the common response prefix (20), a 64-byte
/// frame or the 104-byte QUERY_SKU response ends.
#[test]
fn layout_tables_are_contiguous() {
    let text = std::fs::read_to_string(PROTOCOL_MD).expect("docs/PROTOCOL.md is readable");
    let mut tables = Vec::new();
    let mut current: Option<Vec<(usize, usize)>> = None;
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.get(1..4) == Some(&["offset", "size", "type"][..]) {
            current = Some(Vec::new());
            continue;
        }
        match (&mut current, line.starts_with('|')) {
            (Some(rows), true) => {
                if cells.get(1).is_some_and(|cell| cell.starts_with("---")) {
                    continue;
                }
                let offset = cells[1].parse::<usize>().expect("offset column is a number");
                let size = cells[2].parse::<usize>().expect("size column is a number");
                rows.push((offset, size));
            }
            (Some(_), false) => tables.extend(current.take()),
            (None, _) => {}
        }
    }
    tables.extend(current);
    assert!(tables.len() >= 15, "found {} layout tables", tables.len());
    for rows in tables {
        let start = rows[0].0;
        assert!(start == 0 || start == 16, "a table starts at 0 or 16: {rows:?}");
        let mut next = start;
        for &(offset, size) in &rows {
            assert_eq!(offset, next, "gap or overlap in {rows:?}");
            next = offset + size;
        }
        assert!([16, 20, 64, 104].contains(&next), "a table ends at {next}: {rows:?}");
    }
}

/// PROTOCOL.md §1.2 gives the home/coordinator formulas so clients in other languages can be
/// shard-aware; they must be the ones the server uses.
#[test]
fn the_documented_shard_formulas_are_the_servers() {
    fn mix64(mut x: u64) -> u64 {
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51afd7ed558ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ceb9fe1a85ec53);
        x ^= x >> 33;
        x
    }
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md")).unwrap();
    assert!(text.contains("home(account)    = mix64(account ^ 0x6163636f756e7400) % n"));
    assert!(text.contains("coordinator(sku) = mix64(sku     ^ 0x00000000736b7500) % n"));
    let mut rng = Rng::new(0x1234_5678_9abc_def0);
    for _ in 0..10_000 {
        let x = rng.next_u64();
        for n in [1_u64, 2, 3, 7, 64] {
            assert_eq!(
                u64::from(rush_engine::quota::home_shard(x, n as u32)),
                mix64(x ^ 0x6163636f756e7400) % n
            );
            assert_eq!(
                u64::from(rush_engine::quota::coordinator_shard(x, n as u32)),
                mix64(x ^ 0x00000000736b7500) % n
            );
        }
    }
}
