//! `Sale::parse` (tools/src/sale.rs), the sale file loader of `rush serve --sale`, on the
//! input as TOML and as JSON (what `Sale::load` does for a file named neither `.toml` nor
//! `.json`). Input that is not UTF-8 is not a sale file: `Sale::load` refuses it when it
//! reads the file, before parsing.
//!
//! Asserts: no panic; an error is an `Err` with a message; an accepted sale keeps the
//! promises of `Sale` (SKU ids non-zero and unique, a sale window that ends after it starts;
//! wallets ascending by account, each once, non-zero, at most `WALLET_COUNT_MAX`), its
//! requests are one PUT_SKU per SKU then one DEPOSIT per wallet, checking it against the
//! engine's bounds returns (never panics), and it round-trips: written back as JSON (and as
//! TOML when it came from TOML), it parses to the same sale.
#![no_main]

use std::fmt::Write;

use libfuzzer_sys::fuzz_target;
use rush_engine::Request;
use rush_tools::sale::{Format, Sale, PREWARM_DEPOSIT_KEY, WALLET_COUNT_MAX};
use rush_tools::settings::engine_default;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for format in [Format::Toml, Format::Json] {
        match Sale::parse(text, format) {
            Ok(sale) => check(&sale, format),
            Err(error) => assert!(!format!("{error:#}").is_empty()),
        }
    }
});

fn check(sale: &Sale, format: Format) {
    let mut ids = std::collections::HashSet::new();
    for spec in &sale.skus {
        assert!(spec.sku != 0 && ids.insert(spec.sku), "SKU id {} is zero or twice", spec.sku);
        assert!(spec.end_ms == 0 || spec.end_ms > spec.start_ms, "{spec:?}");
    }
    assert!(sale.wallets.len() as u64 <= WALLET_COUNT_MAX);
    assert!(sale.wallets.iter().all(|&(account, balance)| account != 0 && balance != 0));
    assert!(sale.wallets.windows(2).all(|pair| pair[0].0 < pair[1].0), "wallets ascending");
    let _ = sale.check(&engine_default());
    // The requests of a sale of a few million wallets take long to build and say nothing
    // more; their order and count are the same at any size.
    if sale.wallets.len() <= 10_000 {
        let requests = sale.requests();
        assert_eq!(requests.len(), sale.skus.len() + sale.wallets.len());
        let (skus, wallets) = requests.split_at(sale.skus.len());
        assert!(skus.iter().zip(&sale.skus).all(|(r, s)| *r == Request::PutSku(*s)));
        assert!(wallets.iter().zip(&sale.wallets).all(|(request, &(account, amount))| {
            *request == Request::Deposit { account, amount, key: PREWARM_DEPOSIT_KEY }
        }));
    }
    let json = to_json(sale);
    let again = Sale::parse(&json, Format::Json).unwrap_or_else(|e| panic!("{e:#}\n{json}"));
    assert_eq!(&again, sale, "{json}");
    if format == Format::Toml {
        let toml = to_toml(sale);
        let again = Sale::parse(&toml, Format::Toml).unwrap_or_else(|e| panic!("{e:#}\n{toml}"));
        assert_eq!(&again, sale, "{toml}");
    }
}

/// The wallets as runs of consecutive accounts with one balance: (first, last, balance).
fn runs(sale: &Sale) -> Vec<(u64, u64, u64)> {
    let mut runs: Vec<(u64, u64, u64)> = Vec::new();
    for &(account, balance) in &sale.wallets {
        match runs.last_mut() {
            Some(run) if run.1.checked_add(1) == Some(account) && run.2 == balance => {
                run.1 = account
            }
            _ => runs.push((account, account, balance)),
        }
    }
    runs
}

fn to_json(sale: &Sale) -> String {
    let skus: Vec<String> = sale
        .skus
        .iter()
        .map(|s| {
            format!(
                r#"{{"id":{},"stock":{},"price":{},"per_user_limit":{},"hold_ms":{},"start_ms":{},"end_ms":{}}}"#,
                s.sku, s.stock_total, s.price, s.per_user_limit, s.hold_ms, s.start_ms, s.end_ms
            )
        })
        .collect();
    let (mut wallets, mut ranges) = (Vec::new(), Vec::new());
    for (first, last, balance) in runs(sale) {
        if first == last {
            wallets.push(format!(r#"{{"account":{first},"balance":{balance}}}"#));
        } else {
            ranges.push(format!(r#"{{"first":{first},"last":{last},"balance":{balance}}}"#));
        }
    }
    format!(
        r#"{{"sku":[{}],"wallet":[{}],"wallet_range":[{}]}}"#,
        skus.join(","),
        wallets.join(","),
        ranges.join(",")
    )
}

/// TOML integers are i64: only for a sale read from TOML, whose numbers all fit.
fn to_toml(sale: &Sale) -> String {
    let mut text = String::new();
    for s in &sale.skus {
        let _ = writeln!(
            text,
            "[[sku]]\nid = {}\nstock = {}\nprice = {}\nper_user_limit = {}\nhold_ms = {}\n\
             start_ms = {}\nend_ms = {}",
            s.sku, s.stock_total, s.price, s.per_user_limit, s.hold_ms, s.start_ms, s.end_ms
        );
    }
    for (first, last, balance) in runs(sale) {
        let _ =
            writeln!(text, "[[wallet_range]]\nfirst = {first}\nlast = {last}\nbalance = {balance}");
    }
    text
}
