//! Sale files: the SKUs and wallets `rush serve` creates before it accepts a connection.
//!
//! A sale file is TOML or JSON (chosen by the extension `.toml` / `.json`; any other name is
//! tried as both, and both errors are reported when neither parses). Unknown keys are an
//! error. The shape, in TOML:
//!
//! ```toml
//! [[sku]]
//! id = 1              # required, non-zero, unique
//! stock = 1000        # required: units on sale
//! price = 4999        # required: minor currency units per unit (0 = free)
//! per_user_limit = 1  # optional, 0 (default) = no limit
//! hold_ms = 0         # optional, 0 (default) = the engine's hold_ms_default
//! start_ms = 0        # optional, sale window start (unix ms), 0 = open now
//! end_ms = 0          # optional, window end (exclusive), 0 = never; else > start_ms
//!
//! [[wallet]]
//! account = 7         # required, non-zero
//! balance = 100000    # required, non-zero
//!
//! [[wallet_range]]    # every account of first..=last gets the same balance
//! first = 1
//! last = 1000
//! balance = 100000
//! ```
//!
//! In JSON the same keys: `{"sku": [{"id": 1, ...}], "wallet": [...], "wallet_range": [...]}`.
//! An account may appear once over all `wallet` and `wallet_range` entries.
//!
//! [`Sale::requests`] turns a sale into the pre-warm requests of
//! `rush_net::server::ServerConfig::prewarm`: one PUT_SKU per SKU in file order, then one
//! DEPOSIT per wallet in ascending account order. Every pre-warm DEPOSIT uses the request key
//! [`PREWARM_DEPOSIT_KEY`] (`u64::MAX`) of its account: keys are per account and shared by
//! every operation, so key 1 would make a client's first RESERVE with key 1 answer
//! KEY_REUSED; clients are expected to count their keys up from 1, far from `u64::MAX`.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{bail, Context};
use rush_engine::{AccountId, Config, Request, SkuSpec};
use serde::Deserialize;

/// The request key of every pre-warm DEPOSIT (in each wallet's own key space).
pub const PREWARM_DEPOSIT_KEY: u64 = u64::MAX;

/// At most this many wallets in one sale file (ranges expanded): the pre-warm requests are
/// held in memory at once.
pub const WALLET_COUNT_MAX: u64 = 1 << 22;

/// The sale `rush serve` loads when no `--sale` file is given: two SKUs and 1,000 funded
/// accounts, enough to try every operation by hand.
pub const DEMO_SALE: &str = r#"# The demo sale of `rush serve` (used when no --sale file is given).

# A limited drop: 1,000 units, one per buyer.
[[sku]]
id = 1
stock = 1000
price = 4999
per_user_limit = 1

# A rarer item: 100 units, at most two per buyer.
[[sku]]
id = 2
stock = 100
price = 19999
per_user_limit = 2

# Accounts 1..=1000, each with 100,000 minor units to PAY with.
[[wallet_range]]
first = 1
last = 1000
balance = 100000
"#;

/// The format of a sale file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

/// A validated sale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sale {
    /// In file order.
    pub skus: Vec<SkuSpec>,
    /// `(account, balance)`, ascending by account, each account once.
    pub wallets: Vec<(AccountId, u64)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SaleDoc {
    #[serde(default)]
    sku: Vec<SkuEntry>,
    #[serde(default)]
    wallet: Vec<WalletEntry>,
    #[serde(default)]
    wallet_range: Vec<WalletRangeEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SkuEntry {
    id: u64,
    stock: u64,
    price: u64,
    #[serde(default)]
    per_user_limit: u32,
    #[serde(default)]
    hold_ms: u32,
    #[serde(default)]
    start_ms: u64,
    #[serde(default)]
    end_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WalletEntry {
    account: u64,
    balance: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WalletRangeEntry {
    first: u64,
    last: u64,
    balance: u64,
}

impl Sale {
    /// The demo sale ([`DEMO_SALE`]), parsed by the same code as a sale file.
    pub fn demo() -> anyhow::Result<Sale> {
        Sale::parse(DEMO_SALE, Format::Toml).context("the embedded demo sale")
    }

    /// Reads and validates a sale file; every error names the file.
    pub fn load(path: &Path) -> anyhow::Result<Sale> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read sale file {}", path.display()))?;
        let extension = path.extension().and_then(|extension| extension.to_str());
        let sale = match extension.map(str::to_ascii_lowercase).as_deref() {
            Some("toml") => Sale::parse(&text, Format::Toml),
            Some("json") => Sale::parse(&text, Format::Json),
            _ => match Sale::parse(&text, Format::Toml) {
                Ok(sale) => Ok(sale),
                Err(toml_error) => match Sale::parse(&text, Format::Json) {
                    Ok(sale) => Ok(sale),
                    Err(json_error) => Err(anyhow::anyhow!(
                        "neither TOML nor JSON (name it .toml or .json to pick one)\n\
                         as TOML: {toml_error:#}\nas JSON: {json_error:#}"
                    )),
                },
            },
        };
        sale.with_context(|| format!("invalid sale file {}", path.display()))
    }

    /// Parses and validates a sale given as text.
    pub fn parse(text: &str, format: Format) -> anyhow::Result<Sale> {
        let doc: SaleDoc = match format {
            Format::Toml => toml::from_str(text).map_err(|error| anyhow::anyhow!("{error}"))?,
            Format::Json => {
                serde_json::from_str(text).map_err(|error| anyhow::anyhow!("{error}"))?
            }
        };
        Sale::validate(doc)
    }

    fn validate(doc: SaleDoc) -> anyhow::Result<Sale> {
        let mut skus = Vec::with_capacity(doc.sku.len());
        let mut seen = HashSet::new();
        for (index, entry) in doc.sku.iter().enumerate() {
            let at = || format!("sku #{} (id {})", index + 1, entry.id);
            if entry.id == 0 {
                bail!("sku #{}: key `id` must be non-zero", index + 1);
            }
            if !seen.insert(entry.id) {
                bail!("{}: duplicate SKU id {}", at(), entry.id);
            }
            if entry.end_ms != 0 && entry.end_ms <= entry.start_ms {
                bail!(
                    "{}: key `end_ms` ({}) must be 0 (no end) or after `start_ms` ({})",
                    at(),
                    entry.end_ms,
                    entry.start_ms
                );
            }
            skus.push(SkuSpec {
                sku: entry.id,
                stock_total: entry.stock,
                price: entry.price,
                per_user_limit: entry.per_user_limit,
                hold_ms: entry.hold_ms,
                start_ms: entry.start_ms,
                end_ms: entry.end_ms,
            });
        }

        // Wallets as account intervals, to find overlaps without expanding the ranges.
        let mut intervals: Vec<(u64, u64, u64, String)> = Vec::new();
        for (index, entry) in doc.wallet.iter().enumerate() {
            let name = format!("wallet #{} (account {})", index + 1, entry.account);
            if entry.account == 0 {
                bail!("wallet #{}: key `account` must be non-zero", index + 1);
            }
            if entry.balance == 0 {
                bail!("{name}: key `balance` must be non-zero");
            }
            intervals.push((entry.account, entry.account, entry.balance, name));
        }
        for (index, entry) in doc.wallet_range.iter().enumerate() {
            let name = format!("wallet_range #{} ({}..={})", index + 1, entry.first, entry.last);
            if entry.first == 0 {
                bail!("{name}: key `first` must be non-zero");
            }
            if entry.last < entry.first {
                bail!("{name}: key `last` must be at least `first`");
            }
            if entry.balance == 0 {
                bail!("{name}: key `balance` must be non-zero");
            }
            intervals.push((entry.first, entry.last, entry.balance, name));
        }
        intervals.sort_by_key(|&(first, last, _, _)| (first, last));
        let mut count: u64 = 0;
        for (index, (first, last, _, name)) in intervals.iter().enumerate() {
            if let Some((_, previous_last, _, previous)) =
                index.checked_sub(1).map(|i| &intervals[i])
            {
                if first <= previous_last {
                    bail!("account {first} has two wallets: {previous} and {name}");
                }
            }
            count += last - first + 1;
            if count > WALLET_COUNT_MAX {
                bail!("more than {WALLET_COUNT_MAX} wallets");
            }
        }
        let mut wallets = Vec::with_capacity(count as usize);
        for (first, last, balance, _) in &intervals {
            wallets.extend((*first..=*last).map(|account| (account, *balance)));
        }
        Ok(Sale { skus, wallets })
    }

    /// Checks the sale against the engine's bounds (every shard knows every SKU).
    pub fn check(&self, engine: &Config) -> anyhow::Result<()> {
        if self.skus.len() as u64 > u64::from(engine.sku_max) {
            bail!(
                "{} SKUs, but the engine holds at most {} (sku_max)",
                self.skus.len(),
                engine.sku_max
            );
        }
        for (index, spec) in self.skus.iter().enumerate() {
            if spec.hold_ms > engine.hold_ms_max {
                bail!(
                    "sku #{} (id {}): hold_ms {} is above the engine's hold_ms_max {}",
                    index + 1,
                    spec.sku,
                    spec.hold_ms,
                    engine.hold_ms_max
                );
            }
        }
        Ok(())
    }

    /// PUT_SKU for every SKU (file order), then DEPOSIT for every wallet (ascending account),
    /// each DEPOSIT with key [`PREWARM_DEPOSIT_KEY`].
    pub fn requests(&self) -> Vec<Request> {
        let skus = self.skus.iter().map(|spec| Request::PutSku(*spec));
        let wallets = self.wallets.iter().map(|&(account, amount)| Request::Deposit {
            account,
            amount,
            key: PREWARM_DEPOSIT_KEY,
        });
        skus.chain(wallets).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str, format: Format) -> String {
        format!("{:#}", Sale::parse(text, format).unwrap_err())
    }

    #[test]
    fn the_demo_sale_parses() {
        let sale = Sale::demo().unwrap();
        assert_eq!(sale.skus.len(), 2);
        assert_eq!(sale.skus[0].sku, 1);
        assert_eq!(sale.skus[0].stock_total, 1000);
        assert_eq!(sale.skus[0].price, 4999);
        assert_eq!(sale.skus[0].per_user_limit, 1);
        assert_eq!(sale.skus[1].per_user_limit, 2);
        assert_eq!(sale.wallets.len(), 1000);
        assert_eq!(sale.wallets[0], (1, 100_000));
        assert_eq!(sale.wallets[999], (1000, 100_000));
        sale.check(&crate::settings::engine_default()).unwrap();
        let requests = sale.requests();
        assert_eq!(requests.len(), 1002);
        assert!(matches!(requests[0], Request::PutSku(SkuSpec { sku: 1, .. })));
        assert_eq!(
            requests[2],
            Request::Deposit { account: 1, amount: 100_000, key: PREWARM_DEPOSIT_KEY }
        );
    }

    #[test]
    fn parses_toml() {
        let sale = Sale::parse(
            r#"
            [[sku]]
            id = 7
            stock = 5
            price = 100
            hold_ms = 30000
            start_ms = 10
            end_ms = 20

            [[wallet]]
            account = 9
            balance = 50

            [[wallet]]
            account = 3
            balance = 40
            "#,
            Format::Toml,
        )
        .unwrap();
        assert_eq!(
            sale.skus,
            vec![SkuSpec {
                sku: 7,
                stock_total: 5,
                price: 100,
                per_user_limit: 0,
                hold_ms: 30_000,
                start_ms: 10,
                end_ms: 20,
            }]
        );
        assert_eq!(sale.wallets, vec![(3, 40), (9, 50)]);
    }

    #[test]
    fn parses_json() {
        let sale = Sale::parse(
            r#"{"sku": [{"id": 1, "stock": 10, "price": 0, "per_user_limit": 1}],
                "wallet": [{"account": 5, "balance": 7}],
                "wallet_range": [{"first": 10, "last": 12, "balance": 3}]}"#,
            Format::Json,
        )
        .unwrap();
        assert_eq!(sale.skus.len(), 1);
        assert_eq!(sale.skus[0].per_user_limit, 1);
        assert_eq!(sale.wallets, vec![(5, 7), (10, 3), (11, 3), (12, 3)]);
        // An empty sale is valid.
        assert_eq!(Sale::parse("{}", Format::Json).unwrap().requests(), Vec::new());
        assert_eq!(Sale::parse("", Format::Toml).unwrap().requests(), Vec::new());
    }

    #[test]
    fn rejects_unknown_keys() {
        let error = error_of("[[sku]]\nid = 1\nstock = 1\nprice = 1\nlimit = 2\n", Format::Toml);
        assert!(error.contains("unknown field `limit`"), "{error}");
        let error = error_of(r#"{"skus": []}"#, Format::Json);
        assert!(error.contains("unknown field `skus`"), "{error}");
    }

    #[test]
    fn rejects_duplicates_and_bad_values() {
        let two = "[[sku]]\nid = 4\nstock = 1\nprice = 1\n[[sku]]\nid = 4\nstock = 2\nprice = 1\n";
        let error = error_of(two, Format::Toml);
        assert!(error.contains("duplicate SKU id 4"), "{error}");

        let error = error_of("[[sku]]\nid = 0\nstock = 1\nprice = 1\n", Format::Toml);
        assert!(error.contains("`id` must be non-zero"), "{error}");

        let error = error_of("[[sku]]\nid = 1\nstock = 1\n", Format::Toml);
        assert!(error.contains("missing field `price`"), "{error}");

        let error = error_of(
            "[[sku]]\nid = 1\nstock = 1\nprice = 1\nstart_ms = 5\nend_ms = 5\n",
            Format::Toml,
        );
        assert!(error.contains("`end_ms`"), "{error}");

        let error = error_of("[[sku]]\nid = 1\nstock = -1\nprice = 1\n", Format::Toml);
        assert!(error.contains("stock"), "{error}");

        let overlap = "[[wallet]]\naccount = 50\nbalance = 1\n\
                       [[wallet_range]]\nfirst = 1\nlast = 100\nbalance = 1\n";
        let error = error_of(overlap, Format::Toml);
        assert!(error.contains("account 50 has two wallets"), "{error}");

        let twice = r#"{"wallet": [{"account": 2, "balance": 1}, {"account": 2, "balance": 1}]}"#;
        let error = error_of(twice, Format::Json);
        assert!(error.contains("account 2 has two wallets"), "{error}");

        let error = error_of("[[wallet]]\naccount = 0\nbalance = 1\n", Format::Toml);
        assert!(error.contains("`account` must be non-zero"), "{error}");
        let error = error_of("[[wallet]]\naccount = 1\nbalance = 0\n", Format::Toml);
        assert!(error.contains("`balance` must be non-zero"), "{error}");
        let error = error_of("[[wallet_range]]\nfirst = 5\nlast = 4\nbalance = 1\n", Format::Toml);
        assert!(error.contains("`last` must be at least `first`"), "{error}");
        let error =
            error_of("[[wallet_range]]\nfirst = 1\nlast = 100000000\nbalance = 1\n", Format::Toml);
        assert!(error.contains("wallets"), "{error}");
    }

    #[test]
    fn checks_against_the_engine() {
        let sale = Sale::parse(
            "[[sku]]\nid = 1\nstock = 1\nprice = 1\nhold_ms = 999999999\n",
            Format::Toml,
        )
        .unwrap();
        let error = format!("{:#}", sale.check(&Config::small()).unwrap_err());
        assert!(error.contains("hold_ms_max"), "{error}");
    }

    #[test]
    fn load_picks_the_format_and_names_the_file() {
        let dir = std::env::temp_dir().join(format!("rush-sale-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("sale.json");
        std::fs::write(&json, r#"{"sku": [{"id": 1, "stock": 1, "price": 1}]}"#).unwrap();
        assert_eq!(Sale::load(&json).unwrap().skus.len(), 1);
        let other = dir.join("sale.txt");
        std::fs::write(&other, "[[sku]]\nid = 1\nstock = 1\nprice = 1\n").unwrap();
        assert_eq!(Sale::load(&other).unwrap().skus.len(), 1);
        std::fs::write(&other, "not a sale").unwrap();
        let error = format!("{:#}", Sale::load(&other).unwrap_err());
        assert!(error.contains("sale.txt"), "{error}");
        assert!(error.contains("as TOML") && error.contains("as JSON"), "{error}");
        let missing = dir.join("missing.toml");
        let error = format!("{:#}", Sale::load(&missing).unwrap_err());
        assert!(error.contains("missing.toml"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
