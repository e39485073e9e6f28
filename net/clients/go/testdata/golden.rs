//! The generator of the golden frames in codec_test.go: what the Rust implementation
//! (rush-net's encoders) writes for one request of every opcode and one response of every
//! body layout, with a distinct value in every field. Not part of any crate; to re-run it,
//! make it the `src/main.rs` of a scratch crate outside the workspace with
//! `rush-engine = { path = ".../engine" }` and `rush-net = { path = ".../net" }` as
//! dependencies, and `cargo run`: each line is `request|response NAME HEX`.

use rush_engine::*;
use rush_net::protocol::{encode_request, encode_response, encode_ping_response, Opcode, Topology};
fn hex(b: &[u8]) -> String { b.iter().map(|x| format!("{x:02x}")).collect() }
fn main() {
    let reqs: Vec<(&str, Request)> = vec![
        ("ping", Request::Ping),
        ("reserve", Request::Reserve(Reserve { account: 0x0102030405060708, sku: 0x1112131415161718, quantity: 0x21222324, key: 0x3132333435363738, flags: 3, hold_ms: 0x41424344, wait_ms: 0x51525354 })),
        ("confirm", Request::Confirm { account: 0x0102030405060708, target: Target::Reservation(0x1112131415161718), key: 0x3132333435363738 }),
        ("cancel", Request::Cancel { account: 0x0102030405060708, target: Target::ReserveKey(0x1112131415161718), key: 0x3132333435363738 }),
        ("query_sku", Request::QuerySku { sku: 0x1112131415161718 }),
        ("query_account", Request::QueryAccount { account: 0x0102030405060708 }),
        ("query_reservation", Request::QueryReservation { account: 0x0102030405060708, target: Target::ReserveKey(0x1112131415161718) }),
        ("put_sku", Request::PutSku(SkuSpec { sku: 0x1112131415161718, stock_total: 0x2122232425262728, price: 0x3132333435363738, per_user_limit: 0x41424344, hold_ms: 0x51525354, start_ms: 0x6162636465666768, end_ms: 0x7172737475767778 })),
        ("adjust_stock", Request::AdjustStock { sku: 0x1112131415161718, delta: -5, key: 0x3132333435363738 }),
        ("pause", Request::Pause { sku: 0x1112131415161718 }),
        ("resume", Request::Resume { sku: 0x1112131415161718 }),
        ("deposit", Request::Deposit { account: 0x0102030405060708, amount: 0x2122232425262728, key: 0x3132333435363738 }),
        ("withdraw", Request::Withdraw { account: 0x0102030405060708, amount: 0x2122232425262728, key: 0x3132333435363738 }),
    ];
    for (i, (name, r)) in reqs.iter().enumerate() {
        let mut out = Vec::new();
        encode_request(0xa0a1a2a3a4a5a6a7 + i as u64, r, &mut out);
        println!("request {name} {}", hex(&out));
    }
    let res = ReservationView { reservation: 0x0102030405060708, account: 0, sku: 0x1112131415161718, quantity: 0x21222324, flags: 3, amount: 0x3132333435363738, deadline_ms: 0x4142434445464748, state: ReservationState::WaitTimedOut };
    let acc = AccountView { account: 0, available: 0x0102030405060708, held: 0x1112131415161718, spent: 0x2122232425262728, deposited: 0x3132333435363738, withdrawn: 0x4142434445464748 };
    let sku = SkuView { sku: 0x0102030405060708, total: 0x1112131415161718, available: 0x2122232425262728, reserved: 0x3132333435363738, sold: 0x4142434445464748, price: 0x5152535455565758, per_user_limit: 0x61626364, hold_ms: 0x71727374, start_ms: 0x8182838485868788, end_ms: 0x9192939495969798, waiters: 0xa1a2a3a4, paused: true };
    let dup = |b| Reply { result: ResultCode::Duplicate, original: ResultCode::Overflow, body: b };
    let pairs: Vec<(&str, Opcode, Reply)> = vec![
        ("reserve", Opcode::Reserve, dup(ReplyBody::Reservation(res))),
        ("query_account", Opcode::QueryAccount, dup(ReplyBody::Account(acc))),
        ("query_sku", Opcode::QuerySku, dup(ReplyBody::Sku(sku))),
        ("put_sku", Opcode::PutSku, Reply { result: ResultCode::BadRequest, original: ResultCode::BadRequest, body: ReplyBody::None }),
    ];
    for (name, op, reply) in pairs {
        let mut out = Vec::new();
        encode_response(op, 0xb0b1b2b3b4b5b6b7, &reply, &mut out);
        println!("response {name} {}", hex(&out));
    }
    let mut out = Vec::new();
    encode_ping_response(0xc0c1c2c3c4c5c6c7, Topology { shard_count: 0x0102, shard: 0x0304, shard_port_base: 0x0506 }, &mut out);
    println!("response ping {}", hex(&out));
}
