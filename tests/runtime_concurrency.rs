//! The threaded runtime under real concurrency: pinned shard threads, the SPSC ring mesh,
//! and several driver threads hammering one hot SKU and many cold ones, some requests sent to
//! the wrong shard on purpose (forwarded over the ring). Afterwards every shard's invariants
//! hold, stock is conserved across shards, and the hot SKU, with demand far above supply,
//! ended with exactly its total units reserved or sold, wherever they sat.
//! CI also runs this file in release mode.

use rush_engine::quota::{coordinator_shard, Placement};
use rush_engine::*;
use rush_runtime::{Completion, Runtime, RuntimeConfig, Submission};
use rush_suite::rng::Rng;

const HOT_SKU: SkuId = 1;
const HOT_UNITS: u64 = 1_000;
const COLD_SKUS: u64 = 200;
const DRIVERS: u32 = 3;
const RESERVES_PER_DRIVER: u64 = 20_000;

fn engine_config() -> Config {
    Config {
        sku_max: 256,
        account_max: 100_000,
        reservation_max: 70_000,
        waitlist_max: 4_096,
        request_key_max: 140_000,
        request_key_retention_ms: 3_600_000,
        limit_entry_max: 100_000,
        quantity_max: 8,
        hold_ms_default: 600_000,
        hold_ms_max: 1_800_000,
        wait_ms_max: 60_000,
    }
}

/// Sends everything, keeping at most `window` requests in flight, and collects every
/// completion (a full ring is retried after polling: backpressure).
fn run_all(
    port: &mut rush_runtime::Port,
    requests: &[Request],
    misroute_every: usize,
) -> Vec<Reply> {
    let shard_count = port.shard_count();
    let mut replies = vec![None; requests.len()];
    let mut completions: Vec<Completion> = Vec::new();
    let mut next = 0;
    let mut done = 0;
    let window = 256;
    while done < requests.len() {
        while next < requests.len() && next - done < window {
            let request = requests[next];
            let mut shard = port.shard_for(&request);
            if misroute_every != 0 && next % misroute_every == 0 {
                shard = (shard + 1) % shard_count; // arrives on a foreign core: forwarded
            }
            match port.submit(shard, Submission { tag: next as u64, request }) {
                Ok(()) => next += 1,
                Err(_) => break,
            }
        }
        completions.clear();
        port.poll(&mut completions);
        for completion in &completions {
            let slot = &mut replies[completion.tag as usize];
            assert!(slot.is_none(), "tag {} completed twice", completion.tag);
            *slot = Some(completion.reply);
            done += 1;
        }
        if completions.is_empty() {
            std::thread::yield_now();
        }
    }
    replies.into_iter().map(|reply| reply.expect("every request completes")).collect()
}

#[test]
fn drivers_hammering_a_hot_sku_never_oversell_and_strand_nothing() {
    let shard_count = 2;
    let (runtime, mut ports) = Runtime::start(RuntimeConfig {
        shard_count,
        engine: engine_config(),
        port_count: DRIVERS + 1,
        ring_capacity: 1024,
        pin: true,
        idle_spin_us: 0,
        idle_park_max_ms: rush_runtime::shard::IDLE_PARK_MAX_MS_DEFAULT,
        parked_max: rush_runtime::shard::PARKED_MAX_DEFAULT,
    })
    .expect("valid runtime configuration");

    // Admin through the last port: the hot SKU and the cold ones.
    let mut admin = ports.pop().expect("an admin port");
    let mut setup = vec![Request::PutSku(SkuSpec {
        sku: HOT_SKU,
        stock_total: HOT_UNITS,
        price: 0,
        per_user_limit: 0,
        hold_ms: 0,
        start_ms: 0,
        end_ms: 0,
    })];
    for sku in 2..2 + COLD_SKUS {
        setup.push(Request::PutSku(SkuSpec {
            sku,
            stock_total: 50,
            price: 0,
            per_user_limit: 2,
            hold_ms: 0,
            start_ms: 0,
            end_ms: 0,
        }));
    }
    for reply in run_all(&mut admin, &setup, 0) {
        assert_eq!(reply.result, ResultCode::Ok, "{reply:?}");
    }
    // Let the definitions reach every shard before the sale opens.
    std::thread::sleep(std::time::Duration::from_millis(50));

    // Every driver's cancels land before any late buyer asks, so the late demand sees
    // every released unit.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(DRIVERS as usize));
    let drivers: Vec<_> = ports
        .into_iter()
        .enumerate()
        .map(|(driver, mut port)| {
            let barrier = std::sync::Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut rng = Rng::new(driver as u64);
                let requests: Vec<Request> = (0..RESERVES_PER_DRIVER)
                    .map(|index| {
                        let account = 1 + driver as u64 * RESERVES_PER_DRIVER + index;
                        let sku = if rng.chance(50) { HOT_SKU } else { 2 + rng.below(COLD_SKUS) };
                        Request::Reserve(Reserve {
                            account,
                            sku,
                            quantity: 1,
                            key: 1,
                            flags: if rng.chance(25) { RESERVE_FLAG_BUY } else { 0 },
                            hold_ms: 0,
                            wait_ms: if rng.chance(20) { 20 } else { 0 },
                        })
                    })
                    .collect();
                let replies = run_all(&mut port, &requests, 7);
                // Cancel a tenth of the successful holds, releasing units to others.
                let cancels: Vec<Request> = requests
                    .iter()
                    .zip(&replies)
                    .filter(|(_, reply)| reply.result == ResultCode::Ok)
                    .filter_map(|(request, reply)| match (request, reply.body) {
                        (Request::Reserve(reserve), ReplyBody::Reservation(view))
                            if view.state == ReservationState::Held
                                && reserve.account % 10 == 0 =>
                        {
                            Some(Request::Cancel {
                                account: reserve.account,
                                target: Target::ReserveKey(reserve.key),
                                key: 2,
                            })
                        }
                        _ => None,
                    })
                    .collect();
                let cancel_replies = run_all(&mut port, &cancels, 5);
                for reply in &cancel_replies {
                    assert_eq!(reply.result, ResultCode::Ok, "{reply:?}");
                }
                barrier.wait();
                // Buyers after the cancels: demand still exceeds supply.
                let late: Vec<Request> = (0..2_000)
                    .map(|index| {
                        Request::Reserve(Reserve {
                            account: 1_000_000 + driver as u64 * 10_000 + index,
                            sku: HOT_SKU,
                            quantity: 1,
                            key: 1,
                            flags: 0,
                            hold_ms: 0,
                            wait_ms: 0,
                        })
                    })
                    .collect();
                let late_replies = run_all(&mut port, &late, 3);
                let mut codes = std::collections::BTreeMap::new();
                for reply in replies.iter().chain(&late_replies) {
                    *codes.entry(reply.result).or_insert(0_u64) += 1;
                }
                codes
            })
        })
        .collect();
    let mut codes = std::collections::BTreeMap::new();
    for driver in drivers {
        for (code, count) in driver.join().expect("driver thread") {
            *codes.entry(code).or_insert(0_u64) += count;
        }
    }
    let allowed = [ResultCode::Ok, ResultCode::SoldOut, ResultCode::WaitTimeout];
    for code in codes.keys() {
        assert!(allowed.contains(code), "unexpected result {code:?}: {codes:?}");
    }

    // QUERY_SKU from each shard (not only the coordinator) reads the published levels: the
    // hot SKU's terms and its global total, whichever core answers.
    let queries: Vec<Request> = vec![Request::QuerySku { sku: HOT_SKU }; 2];
    for (shard, query) in queries.iter().enumerate() {
        admin.submit(shard as u32, Submission { tag: shard as u64, request: *query }).unwrap();
    }
    let mut answered = Vec::new();
    while answered.len() < 2 {
        admin.poll(&mut answered);
        std::thread::yield_now();
    }
    for completion in &answered {
        let ReplyBody::Sku(view) = completion.reply.body else {
            panic!("QUERY_SKU answers with a SKU body: {completion:?}");
        };
        assert_eq!(view.sku, HOT_SKU);
        assert_eq!(view.total, HOT_UNITS, "shard {}: the global total", completion.tag);
    }

    let board = std::sync::Arc::clone(runtime.board());
    let engines = runtime.stop();
    // After `stop` the board is exact: every shard published its last pass.
    let levels = board.levels(HOT_SKU).expect("the hot SKU is published");
    assert_eq!(levels.global_total, HOT_UNITS);
    assert_eq!(
        levels.pool + levels.bucket + levels.reserved + levels.sold,
        HOT_UNITS,
        "{levels:?}"
    );
    assert_eq!(levels.reserved + levels.sold, HOT_UNITS, "sold out everywhere: {levels:?}");
    for (shard, engine) in engines.iter().enumerate() {
        engine.check_invariants().unwrap_or_else(|violation| panic!("shard {shard}: {violation}"));
    }
    // The published counters are the engines' own, summed.
    let published = board.counters();
    for code in ResultCode::ALL {
        let summed: u64 =
            engines.iter().map(|engine| engine.counters().results[code as usize]).sum();
        assert_eq!(published.results[code as usize], summed, "{code:?}");
    }
    assert!(published.results[ResultCode::Ok as usize] > 0);
    // Stock conservation across shards (nothing is in flight after `stop`), and for the hot
    // SKU: every unit reserved or sold, none left in a pool or a bucket.
    for sku in std::iter::once(HOT_SKU).chain(2..2 + COLD_SKUS) {
        let coordinator = coordinator_shard(sku, shard_count) as usize;
        let (pool, total) = engines[coordinator].pool_of(sku).expect("coordinated here");
        let mut books = 0;
        let mut taken = 0;
        let mut buckets = 0;
        for engine in &engines {
            let (bucket, held, sold, local_total) = engine.bucket_of(sku).expect("defined");
            books += local_total;
            taken += held + sold;
            buckets += bucket;
        }
        assert_eq!(pool + books, total, "sku {sku}: stock is conserved");
        if sku == HOT_SKU {
            assert_eq!(total, HOT_UNITS);
            assert_eq!(taken, HOT_UNITS, "hot sku: pool {pool}, buckets {buckets}, {codes:?}");
        }
    }
    assert!(Placement::SHARD_COUNT_MAX >= shard_count);
}
