//! The invariant checks after a run: the server's state read back against the bench's own
//! record of what took effect.
//!
//! What the bench knows exactly, per SKU: `taken` (distinct keys whose RESERVE took a unit:
//! a reply OK, or DUPLICATE whose original outcome is OK, counted once per key), `confirmed`
//! (CONFIRM answered OK) and `cancelled` (CANCEL answered OK with the reservation now
//! CANCELLED), plus how many of each were never answered (effect unknown). What it cannot
//! observe is a hold expiring; so the checks are exact where no hold can have expired (every
//! bench SKU holds for `LONG_HOLD_MS` unless the run lasted longer), and for hold-expire the
//! bench waits until every hold is past its deadline and expects nothing left held.

use rush_engine::{AccountView, SkuView};

use super::workload::{ExactlyOnce, Layout, SkuPlan, SkuTally, Workload, PRICE, WALLET_DEPOSIT};

/// One check's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub pass: bool,
    pub detail: String,
}

/// What the checks need besides the read-back.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub layout: &'a Layout,
    pub tallies: &'a [SkuTally],
    pub exactly_once: &'a ExactlyOnce,
    /// The run lasted long enough for a `LONG_HOLD_MS` hold to expire.
    pub long_holds_may_expire: bool,
    /// The bench waited for every hold-expire hold to pass its deadline.
    pub short_holds_expired: bool,
}

/// An inclusive range the server's figure must fall in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Expect {
    low: u64,
    high: u64,
}

impl Expect {
    fn holds(self, value: u64) -> bool {
        (self.low..=self.high).contains(&value)
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.low == self.high {
            write!(formatter, "{}", self.low)
        } else {
            write!(formatter, "{}..={}", self.low, self.high)
        }
    }
}

/// Per-SKU checks of a Rush server, one line per workload and kind (a workload with many
/// SKUs reports how many passed and the first failure).
pub fn rush(
    context: &Context,
    views: &[SkuView],
    settled: bool,
    wallets: &[AccountView],
) -> Vec<Check> {
    let mut checks = Vec::new();
    if !settled {
        checks.push(Check {
            name: "SKU levels settled".into(),
            pass: false,
            detail: "QUERY_SKU kept changing (or did not conserve stock) for 2 s after the run"
                .into(),
        });
    }
    for workload in Workload::ALL {
        let skus: Vec<usize> = (0..context.layout.skus.len())
            .filter(|&index| context.layout.skus[index].workload == workload)
            .collect();
        if skus.is_empty() {
            continue;
        }
        type SkuCheck = fn(&Context, &SkuPlan, &SkuTally, &SkuView) -> Option<(bool, String)>;
        let kinds: [(&str, SkuCheck); 5] = [
            ("stock conserved", conservation),
            ("held + sold match the bench's reserves", held_and_sold),
            ("no oversell", no_oversell),
            ("sold matches confirms", sold_matches_confirms),
            ("no waiter left", no_waiter_left),
        ];
        for (name, check) in kinds {
            let verdicts: Vec<(u64, bool, String)> = skus
                .iter()
                .filter_map(|&index| {
                    let plan = &context.layout.skus[index];
                    check(context, plan, &context.tallies[index], &views[index])
                        .map(|(pass, detail)| (plan.id, pass, detail))
                })
                .collect();
            if let Some(check) = summarize(workload, name, &verdicts) {
                checks.push(check);
            }
        }
    }
    if context.layout.wallets > 0 {
        checks.extend(wallet_checks(context, views, wallets));
    }
    checks.extend(exactly_once(context.exactly_once));
    checks
}

fn summarize(workload: Workload, name: &str, verdicts: &[(u64, bool, String)]) -> Option<Check> {
    let name = format!("{workload}: {name}");
    match verdicts {
        [] => None,
        [(id, pass, detail)] => {
            Some(Check { name, pass: *pass, detail: format!("SKU {id}: {detail}") })
        }
        many => {
            let failures = many.iter().filter(|(_, pass, _)| !pass).count();
            let (id, _, detail) = many.iter().find(|(_, pass, _)| !pass).unwrap_or(&many[0]);
            let lead = if failures == 0 {
                format!("all {} SKUs; e.g.", many.len())
            } else {
                format!("{failures} of {} SKUs fail; first", many.len())
            };
            Some(Check { name, pass: failures == 0, detail: format!("{lead} SKU {id}: {detail}") })
        }
    }
}

fn conservation(
    _: &Context,
    plan: &SkuPlan,
    _: &SkuTally,
    view: &SkuView,
) -> Option<(bool, String)> {
    let sum = view.available + view.reserved + view.sold;
    let pass = sum == view.total && view.total == plan.stock;
    Some((
        pass,
        format!(
            "available {} + reserved {} + sold {} = {sum}, total {} (set up with {})",
            view.available, view.reserved, view.sold, view.total, plan.stock
        ),
    ))
}

/// Whether holds of this SKU may have expired without the bench seeing it.
fn may_expire(context: &Context, plan: &SkuPlan) -> bool {
    plan.workload == Workload::HoldExpire || context.long_holds_may_expire
}

fn held_and_sold(
    context: &Context,
    plan: &SkuPlan,
    tally: &SkuTally,
    view: &SkuView,
) -> Option<(bool, String)> {
    if plan.workload == Workload::HoldExpire && context.short_holds_expired {
        let pass = view.reserved == 0 && view.sold == 0;
        return Some((
            pass,
            format!(
                "every hold past its deadline: reserved {} (expect 0), sold {} (expect 0); \
                 {} reserves took a unit",
                view.reserved, view.sold, tally.taken
            ),
        ));
    }
    // Units that must still be held or sold: taken minus released by the bench's cancels.
    let high = (tally.taken + tally.reserve_unknown).saturating_sub(tally.cancelled);
    let low = if may_expire(context, plan) {
        0
    } else {
        tally.taken.saturating_sub(tally.cancelled + tally.cancel_unknown)
    };
    let expect = Expect { low, high };
    let actual = view.reserved + view.sold;
    let mut detail = format!(
        "reserved {} + sold {} = {actual}, bench expects {expect} (reserves that took a unit {} \
         − cancels {}",
        view.reserved, view.sold, tally.taken, tally.cancelled
    );
    if tally.reserve_unknown + tally.cancel_unknown > 0 {
        detail += &format!(
            "; unanswered: {} reserves, {} cancels",
            tally.reserve_unknown, tally.cancel_unknown
        );
    }
    if may_expire(context, plan) {
        detail += "; holds may have expired, so only the upper bound holds";
    }
    detail += ")";
    Some((expect.holds(actual), detail))
}

fn no_oversell(
    context: &Context,
    plan: &SkuPlan,
    tally: &SkuTally,
    view: &SkuView,
) -> Option<(bool, String)> {
    if may_expire(context, plan) {
        return None; // Expired units are re-sold unseen: this count means nothing then.
    }
    let net = tally.taken.saturating_sub(tally.cancelled);
    Some((
        net <= view.total,
        format!(
            "reserves that took a unit {} − cancels {} = {net} <= total {}",
            tally.taken, tally.cancelled, view.total
        ),
    ))
}

fn sold_matches_confirms(
    _: &Context,
    _: &SkuPlan,
    tally: &SkuTally,
    view: &SkuView,
) -> Option<(bool, String)> {
    let expect = Expect { low: tally.confirmed, high: tally.confirmed + tally.confirm_unknown };
    Some((expect.holds(view.sold), format!("sold {}, CONFIRMs answered OK {expect}", view.sold)))
}

fn no_waiter_left(
    _: &Context,
    plan: &SkuPlan,
    tally: &SkuTally,
    view: &SkuView,
) -> Option<(bool, String)> {
    if plan.workload != Workload::Waitlist || tally.reserve_unknown > 0 {
        return None;
    }
    Some((view.waiters == 0, format!("{} waiters after every RESERVE was answered", view.waiters)))
}

fn wallet_checks(context: &Context, views: &[SkuView], wallets: &[AccountView]) -> Vec<Check> {
    let broken = wallets
        .iter()
        .find(|view| view.available + view.held + view.spent + view.withdrawn != view.deposited);
    let identity = Check {
        name: "wallets: available + held + spent == deposited − withdrawn".into(),
        pass: broken.is_none(),
        detail: match broken {
            None => format!("{} accounts", wallets.len()),
            Some(view) => format!("account {}: {view:?}", view.account),
        },
    };
    let foreign =
        wallets.iter().find(|view| view.deposited != WALLET_DEPOSIT || view.withdrawn != 0);
    let deposits = Check {
        name: "wallets: deposits as set up".into(),
        pass: foreign.is_none(),
        detail: match foreign {
            None => {
                format!("{} accounts deposited {WALLET_DEPOSIT}, none withdrawn", wallets.len())
            }
            Some(view) => format!(
                "account {} deposited {} withdrawn {}",
                view.account, view.deposited, view.withdrawn
            ),
        },
    };
    let paying = |index: &usize| context.layout.skus[*index].workload.pays();
    let pay_skus: Vec<usize> = (0..context.layout.skus.len()).filter(paying).collect();
    let spent: u64 = wallets.iter().map(|view| view.spent).sum();
    let held: u64 = wallets.iter().map(|view| view.held).sum();
    let confirmed: u64 = pay_skus.iter().map(|&index| context.tallies[index].confirmed).sum();
    let unknown: u64 = pay_skus.iter().map(|&index| context.tallies[index].confirm_unknown).sum();
    let expect_spent = Expect { low: confirmed * PRICE, high: (confirmed + unknown) * PRICE };
    let units_held: u64 = pay_skus.iter().map(|&index| views[index].reserved).sum();
    vec![
        identity,
        deposits,
        Check {
            name: "wallets: funds spent match confirms".into(),
            pass: expect_spent.holds(spent),
            detail: format!("spent {spent}, CONFIRMs answered OK × price {expect_spent}"),
        },
        Check {
            name: "wallets: funds held match units held".into(),
            pass: held == units_held * PRICE,
            detail: format!("held {held}, units held on PAY SKUs {units_held} × price {PRICE}"),
        },
    ]
}

fn exactly_once(summary: &ExactlyOnce) -> Vec<Check> {
    vec![
        Check {
            name: "exactly once: a retried key takes at most one unit".into(),
            pass: summary.double_ok == 0 && summary.dup_ok_without_ok == 0,
            detail: format!(
                "{} keys sent more than once, {} of them answered DUPLICATE; {} answered OK twice, \
                 {} DUPLICATE-of-OK without an OK",
                summary.retried_keys,
                summary.duplicates_seen,
                summary.double_ok,
                summary.dup_ok_without_ok
            ),
        },
        Check {
            name: "retries carry identical parameters (no KEY_REUSED)".into(),
            pass: summary.key_reused == 0,
            detail: format!("{} KEY_REUSED replies", summary.key_reused),
        },
    ]
}

/// Checks of a Redis run: `stock:<sku>` against the bench's count, and exactly-once.
pub fn resp(context: &Context, stock_now: &[Option<i64>]) -> Vec<Check> {
    let mut checks = Vec::new();
    for ((plan, tally), now) in context.layout.skus.iter().zip(context.tallies).zip(stock_now) {
        let Some(now) = *now else {
            checks.push(Check {
                name: format!("{}: stock conserved", plan.workload),
                pass: false,
                detail: format!("stock:{} is missing on the server", plan.id),
            });
            continue;
        };
        let taken_by_server = i128::from(plan.stock) - i128::from(now);
        let expect = Expect { low: tally.taken, high: tally.taken + tally.reserve_unknown };
        let pass =
            now >= 0 && u64::try_from(taken_by_server).is_ok_and(|taken| expect.holds(taken));
        checks.push(Check {
            name: format!("{}: stock conserved", plan.workload),
            pass,
            detail: format!(
                "SKU {}: set up with {}, {now} left: {taken_by_server} taken, bench expects \
                 {expect}",
                plan.id, plan.stock
            ),
        });
        checks.push(Check {
            name: format!("{}: no oversell", plan.workload),
            pass: tally.taken <= plan.stock,
            detail: format!("reserves that took a unit {} <= stock {}", tally.taken, plan.stock),
        });
    }
    checks.extend(exactly_once(context.exactly_once));
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::workload::{Mix, Params};

    fn layout(mix: &str) -> Layout {
        let params = Params {
            stock: 10,
            skus: 3,
            zipf_s: 1.0,
            buyers: 100,
            per_user_limit: 1,
            wallets: 2,
            retry_pct: 0.0,
            hold_ms: 50,
            wait_ms: 50,
            cancel_pct: 50.0,
        };
        Layout::new(1, &Mix::parse(mix).unwrap(), &params)
    }

    fn view(total: u64, available: u64, reserved: u64, sold: u64) -> SkuView {
        SkuView { total, available, reserved, sold, ..SkuView::default() }
    }

    #[test]
    fn exact_counts_pass_and_an_oversell_fails() {
        let layout = layout("seckill-hot=1");
        let once = ExactlyOnce::default();
        let tallies = [SkuTally { taken: 10, ..SkuTally::default() }];
        let context = Context {
            layout: &layout,
            tallies: &tallies,
            exactly_once: &once,
            long_holds_may_expire: false,
            short_holds_expired: false,
        };
        let checks = rush(&context, &[view(10, 0, 10, 0)], true, &[]);
        assert!(checks.iter().all(|check| check.pass), "{checks:#?}");
        let over = [SkuTally { taken: 11, ..SkuTally::default() }];
        let context = Context { tallies: &over, ..context };
        let checks = rush(&context, &[view(10, 0, 10, 0)], true, &[]);
        let failed: Vec<&str> =
            checks.iter().filter(|check| !check.pass).map(|check| check.name.as_str()).collect();
        assert_eq!(
            failed,
            ["seckill-hot: held + sold match the bench's reserves", "seckill-hot: no oversell"]
        );
    }

    #[test]
    fn wallets_and_confirms_are_cross_checked() {
        let layout = layout("reserve-confirm=1");
        let once = ExactlyOnce::default();
        let tallies = [SkuTally { taken: 5, confirmed: 4, ..SkuTally::default() }];
        let context = Context {
            layout: &layout,
            tallies: &tallies,
            exactly_once: &once,
            long_holds_may_expire: false,
            short_holds_expired: false,
        };
        let total = layout.skus[0].stock;
        let sku = view(total, total - 5, 1, 4);
        let wallet = |account, held, spent| AccountView {
            account,
            available: WALLET_DEPOSIT - held - spent,
            held,
            spent,
            deposited: WALLET_DEPOSIT,
            withdrawn: 0,
        };
        let wallets = [wallet(1, 100, 300), wallet(2, 0, 100)];
        let checks = rush(&context, &[sku], true, &wallets);
        assert!(checks.iter().all(|check| check.pass), "{checks:#?}");
        let wrong = [wallet(1, 100, 300), wallet(2, 0, 0)];
        let checks = rush(&context, &[sku], true, &wrong);
        assert!(checks.iter().any(|check| !check.pass && check.name.contains("spent")));
    }

    #[test]
    fn expiry_turns_equalities_into_bounds() {
        let layout = layout("hold-expire=1");
        let once = ExactlyOnce { double_ok: 1, ..ExactlyOnce::default() };
        let tallies = [SkuTally { taken: 30, ..SkuTally::default() }];
        let context = Context {
            layout: &layout,
            tallies: &tallies,
            exactly_once: &once,
            long_holds_may_expire: false,
            short_holds_expired: false,
        };
        // Before the wait: anything up to 30 units may still be held.
        let checks = rush(&context, &[view(10, 5, 5, 0)], true, &[]);
        let held = checks.iter().find(|check| check.name.contains("held + sold")).unwrap();
        assert!(held.pass, "{held:?}");
        assert!(!checks.iter().any(|check| check.name.contains("oversell")));
        // After it, nothing may be held.
        let context = Context { short_holds_expired: true, ..context };
        let checks = rush(&context, &[view(10, 5, 5, 0)], true, &[]);
        assert!(!checks.iter().find(|check| check.name.contains("held + sold")).unwrap().pass);
        assert!(!checks.iter().find(|check| check.name.contains("exactly once")).unwrap().pass);
    }
}
