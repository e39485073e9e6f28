//! The admin connection: creating the run's SKUs and wallets before the load, and reading
//! the server's state back after it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use rush_engine::{AccountView, Reply, ReplyBody, Request, ResultCode, SkuSpec, SkuView};
use rush_net::client::{ClientConfig, Pipeline};

use super::workload::{Layout, DEPOSIT_KEY, WALLET_DEPOSIT};

/// Requests written before reading their replies back.
const BATCH: usize = 512;

#[derive(Debug)]
pub struct Admin {
    pipeline: Pipeline,
}

impl Admin {
    pub fn connect(address: SocketAddr) -> anyhow::Result<Admin> {
        let config = ClientConfig { timeout: Duration::from_secs(10), ..ClientConfig::default() };
        let pipeline = Pipeline::with_config(address, config).with_context(|| {
            format!("cannot connect to the admin port {address} (set it with --admin)")
        })?;
        Ok(Admin { pipeline })
    }

    /// Sends `requests` pipelined and returns their replies in the same order.
    pub fn call_all(&mut self, requests: &[Request]) -> anyhow::Result<Vec<Reply>> {
        let mut replies = Vec::with_capacity(requests.len());
        for batch in requests.chunks(BATCH) {
            let mut order = HashMap::with_capacity(batch.len());
            for (index, request) in batch.iter().enumerate() {
                order.insert(self.pipeline.send(request), index);
            }
            let mut answers: Vec<Option<Reply>> = vec![None; batch.len()];
            for _ in 0..batch.len() {
                let response = self.pipeline.recv().context("admin connection")?;
                if let Some(&index) = order.get(&response.request_id) {
                    answers[index] = Some(response.reply);
                }
            }
            replies.extend(answers.into_iter().map(|reply| reply.expect("one reply each")));
        }
        Ok(replies)
    }

    /// Creates the run's SKUs and funds its wallets, after checking that none of them exists
    /// yet (a fresh range: the checks after the run assume the bench alone touched them).
    pub fn set_up(&mut self, layout: &Layout) -> anyhow::Result<()> {
        let queries: Vec<Request> =
            layout.skus.iter().map(|sku| Request::QuerySku { sku: sku.id }).collect();
        for (sku, reply) in layout.skus.iter().zip(self.call_all(&queries)?) {
            if reply.result != ResultCode::UnknownSku {
                bail!(
                    "SKU {} already exists on the server: seed {} was used by an earlier run \
                     against it; pass another --seed (or none, for a random one)",
                    sku.id,
                    layout.seed
                );
            }
        }
        let puts: Vec<Request> = layout
            .skus
            .iter()
            .map(|sku| {
                Request::PutSku(SkuSpec {
                    sku: sku.id,
                    stock_total: sku.stock,
                    price: sku.price,
                    per_user_limit: sku.per_user_limit,
                    hold_ms: sku.hold_ms,
                    start_ms: 0,
                    end_ms: 0,
                })
            })
            .collect();
        for (sku, reply) in layout.skus.iter().zip(self.call_all(&puts)?) {
            match reply.result {
                ResultCode::Ok => {}
                ResultCode::Unauthorized => {
                    bail!("PUT_SKU answered UNAUTHORIZED: --admin must name the admin port")
                }
                ResultCode::Overloaded => bail!(
                    "PUT_SKU of SKU {} answered OVERLOADED: the server's SKU table is full \
                     (fewer --skus, or a server with a larger sku_max)",
                    sku.id
                ),
                ResultCode::BadRequest => bail!(
                    "PUT_SKU of SKU {} answered BAD_REQUEST (does the server allow a hold of \
                     {} ms?)",
                    sku.id,
                    sku.hold_ms
                ),
                other => bail!("PUT_SKU of SKU {} answered {}", sku.id, other.name()),
            }
        }
        let accounts: Vec<u64> = layout.wallet_accounts().collect();
        let views = self.read_wallets(&accounts)?;
        if let Some(used) = views.iter().find(|view| view.deposited != 0) {
            bail!(
                "account {} already has a wallet: seed {} was used by an earlier run against \
                 this server; pass another --seed",
                used.account,
                layout.seed
            );
        }
        let deposits: Vec<Request> = accounts
            .iter()
            .map(|&account| Request::Deposit { account, amount: WALLET_DEPOSIT, key: DEPOSIT_KEY })
            .collect();
        for (account, reply) in accounts.iter().zip(self.call_all(&deposits)?) {
            if reply.result != ResultCode::Ok {
                bail!("DEPOSIT to account {account} answered {}", reply.result.name());
            }
        }
        Ok(())
    }

    /// The run's SKUs as QUERY_SKU shows them. With several shards the levels are published
    /// asynchronously (docs: QUERY_SKU sums per-shard levels that may lag by a loop pass), so
    /// this reads until two consecutive reads agree and each conserves stock, for at most
    /// ~2 s; the flag says whether it settled.
    pub fn read_skus(&mut self, layout: &Layout) -> anyhow::Result<(Vec<SkuView>, bool)> {
        let queries: Vec<Request> =
            layout.skus.iter().map(|sku| Request::QuerySku { sku: sku.id }).collect();
        let mut previous: Option<Vec<SkuView>> = None;
        for _ in 0..40 {
            let mut views = Vec::with_capacity(queries.len());
            for (sku, reply) in layout.skus.iter().zip(self.call_all(&queries)?) {
                match reply.body {
                    ReplyBody::Sku(view) if reply.result == ResultCode::Ok => views.push(view),
                    _ => bail!("QUERY_SKU of SKU {} answered {}", sku.id, reply.result.name()),
                }
            }
            let conserved =
                views.iter().all(|view| view.available + view.reserved + view.sold == view.total);
            if conserved && previous.as_ref() == Some(&views) {
                return Ok((views, true));
            }
            previous = Some(views);
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok((previous.unwrap_or_default(), false))
    }

    /// The wallets of `accounts` (all zero for an account without one).
    pub fn read_wallets(&mut self, accounts: &[u64]) -> anyhow::Result<Vec<AccountView>> {
        let queries: Vec<Request> =
            accounts.iter().map(|&account| Request::QueryAccount { account }).collect();
        let mut views = Vec::with_capacity(accounts.len());
        for (&account, reply) in accounts.iter().zip(self.call_all(&queries)?) {
            if reply.result != ResultCode::Ok {
                bail!("QUERY_ACCOUNT of account {account} answered {}", reply.result.name());
            }
            let view = match reply.body {
                ReplyBody::Account(view) => view,
                _ => AccountView::default(),
            };
            views.push(AccountView { account, ..view });
        }
        Ok(views)
    }
}
