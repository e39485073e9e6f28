//! Reserve one unit from a running `rush serve` (its embedded demo sale has SKU 1 and funded
//! accounts 1..=1000), confirm it, and read the SKU back.
//!
//! ```sh
//! cargo run --release --bin rush -- serve &
//! cargo run --release -p rush-net --example reserve -- 127.0.0.1:7070 42
//! ```

use rush_engine::{Request, Reserve, ResultCode, Target, RESERVE_FLAG_PAY};
use rush_net::client::Client;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut arguments = std::env::args().skip(1);
    let address = arguments.next().unwrap_or_else(|| "127.0.0.1:7070".to_string());
    let account: u64 = arguments.next().map_or(Ok(42), |text| text.parse())?;
    let mut client = Client::connect(address.as_str())?;

    // The request key makes the RESERVE exactly-once: sending it again answers DUPLICATE.
    let reply = client.call(&Request::Reserve(Reserve {
        account,
        sku: 1,
        quantity: 1,
        key: 1,
        flags: RESERVE_FLAG_PAY,
        hold_ms: 30_000,
        wait_ms: 0,
    }))?;
    println!("RESERVE: {} {:?}", reply.result.name(), reply.reservation());
    if reply.result != ResultCode::Ok {
        return Err(format!("the reservation was refused: {}", reply.result.name()).into());
    }
    let confirm = Request::Confirm { account, target: Target::ReserveKey(1), key: 2 };
    let reply = client.call(&confirm)?;
    println!("CONFIRM: {} {:?}", reply.result.name(), reply.reservation().map(|view| view.state));
    let reply = client.call(&Request::QuerySku { sku: 1 })?;
    println!("QUERY_SKU: {:?}", reply.body);
    Ok(())
}
