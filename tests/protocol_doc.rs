//! docs/PROTOCOL.md: the worked examples are exactly what the implementation produces, and
//! the number tables (opcodes, result codes, states, layouts, shard formulas, the defaults of
//! section 11, the reservation id layout of section 12) are the code's.
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

/// The rows of the table of section `heading` (the first table after that heading line), as
/// trimmed cells without the outer empty ones.
fn section_table(heading: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(PROTOCOL_MD).expect("docs/PROTOCOL.md is readable");
    let start = text
        .lines()
        .position(|line| line.starts_with(heading))
        .unwrap_or_else(|| panic!("docs/PROTOCOL.md has a heading {heading:?}"));
    text.lines()
        .skip(start + 1)
        .take_while(|line| !line.starts_with("## "))
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<String> = line.split('|').map(|cell| cell.trim().to_string()).collect();
            cells[1..cells.len() - 1].to_vec()
        })
        .filter(|cells| !cells[0].starts_with("---"))
        .collect()
}

/// The number a default cell starts with (`1,000,000`, `900,000 ms (15 min)`).
fn leading_number(cell: &str) -> Option<u64> {
    let digits: String = cell
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(|c| *c != ',')
        .collect();
    digits.parse().ok()
}

/// Section 11 gives the defaults of `rush serve`; those that come from the library crates
/// must be the code's (the five `rush serve` sets itself, `sku_max`, `account_max`,
/// `reservation_max`, `request_key_max` and `limit_entry_max`, are checked by the unit tests
/// of `tools/src/settings.rs`), and every
/// engine and connection limit must have a row.
#[test]
fn the_documented_limits_and_defaults_are_the_codes() {
    use rush_net::server::{ConnLimits, SHUTDOWN_GRACE};
    use rush_runtime::shard::PARKED_MAX_DEFAULT;
    let engine = rush_engine::Config::default();
    let limits = ConnLimits::default();
    let expected: [(&str, Option<u64>); 19] = [
        ("sku_max", None),
        ("account_max", None),
        ("reservation_max", None),
        ("waitlist_max", Some(engine.waitlist_max.into())),
        ("request_key_max", None),
        ("request_key_retention_ms", Some(engine.request_key_retention_ms)),
        ("limit_entry_max", None),
        ("quantity_max", Some(engine.quantity_max.into())),
        ("hold_ms_default", Some(engine.hold_ms_default.into())),
        ("hold_ms_max", Some(engine.hold_ms_max.into())),
        ("wait_ms_max", Some(engine.wait_ms_max.into())),
        ("connection_max", Some(limits.connection_max.into())),
        ("admin_connection_max", Some(limits.admin_connection_max.into())),
        ("pipeline_max", Some(limits.pipeline_max.into())),
        ("inbound_bytes_max", Some(limits.inbound_bytes_max as u64)),
        ("outbound_bytes_max", Some(limits.outbound_bytes_max as u64)),
        ("parked_max", Some(PARKED_MAX_DEFAULT.into())),
        ("OUTBOX_LINK_MAX", Some(rush_runtime::journal::snapshotter::OUTBOX_LINK_MAX as u64)),
        ("—", Some(SHUTDOWN_GRACE.as_millis() as u64)),
    ];
    let rows = section_table("## 11. Server limits and defaults");
    assert_eq!(rows[0], ["setting", "key", "default", "notes"], "the table's header");
    for (key, value) in expected {
        let cell = if key == "—" { key.to_string() } else { format!("`{key}`") };
        let row = rows
            .iter()
            .find(|cells| cells[1] == cell)
            .unwrap_or_else(|| panic!("section 11 has a row for {key}"));
        let documented = leading_number(&row[2])
            .unwrap_or_else(|| panic!("the default of {key} is a number: {:?}", row[2]));
        if let Some(value) = value {
            assert_eq!(documented, value, "the documented default of {key}");
        }
    }
    // Bounds the notes give.
    let notes = |key: &str| {
        rows.iter().find(|cells| cells[1] == format!("`{key}`")).map(|cells| cells[3].clone())
    };
    let valid = |config: rush_engine::Config| config.validate().is_ok();
    assert!(notes("reservation_max").unwrap().contains("at most 2^26"));
    assert!(valid(rush_engine::Config { reservation_max: 1 << 26, ..engine }));
    assert!(!valid(rush_engine::Config { reservation_max: (1 << 26) + 1, ..engine }));
    assert!(notes("quantity_max").unwrap().contains("at most 65,535"));
    assert!(valid(rush_engine::Config { quantity_max: 65_535, ..engine }));
    assert!(!valid(rush_engine::Config { quantity_max: 65_536, ..engine }));
}

/// Section 12 gives the reservation id layout, and the worked example's id is the first id of
/// shard 0.
#[test]
fn the_documented_reservation_id_layout_is_the_codes() {
    use rush_engine::ReservationIdParts;
    assert_eq!(ReservationIdParts::SLOT_BITS, 26);
    assert_eq!(ReservationIdParts::SHARD_BITS, 6);
    let rows = section_table("## 12. Reservation ids");
    let bits: Vec<(&str, &str)> =
        rows.iter().skip(1).map(|cells| (cells[0].as_str(), cells[1].as_str())).collect();
    assert_eq!(bits, [("63..32", "generation"), ("31..26", "shard"), ("25..0", "slot")]);
    assert_eq!(
        ReservationIdParts::parse(0x0000_0001_0000_0000),
        ReservationIdParts { generation: 1, shard: 0, slot: 0 }
    );
    let id = ReservationIdParts { generation: 0xdead_beef, shard: 63, slot: (1 << 26) - 1 }.id();
    assert_eq!(id, 0xdead_beef_ffff_ffff);
    assert_eq!(
        ReservationIdParts::parse(0x0000_0002_0400_0005),
        ReservationIdParts { generation: 2, shard: 1, slot: 5 }
    );
}
