//! Every operation end to end over real loopback sockets, through the client library, on
//! both backends: admin separation, routing across shards, shard-aware routing.

use rush_engine::*;
use rush_net::client::{Client, ClientConfig, Pipeline, ShardAwareClient};
use rush_net::server::{
    Backend, BackendChoice, ConnLimits, Server, ServerConfig, ShardPorts, BACKEND_ENV,
};
use rush_suite::server::{start, BACKENDS};

const NOW_MS: u64 = 0;

fn sku(id: u64, stock_total: u64, price: u64, per_user_limit: u32) -> Request {
    Request::PutSku(SkuSpec {
        sku: id,
        stock_total,
        price,
        per_user_limit,
        hold_ms: 0,
        start_ms: NOW_MS,
        end_ms: 0,
    })
}

fn reserve(account: u64, sku: u64, key: u64, flags: u32) -> Request {
    Request::Reserve(Reserve { account, sku, quantity: 1, key, flags, hold_ms: 0, wait_ms: 0 })
}

#[test]
fn every_operation_end_to_end_on_both_backends() {
    for backend in BACKENDS {
        let server = start(backend, 2, ConnLimits::default());
        assert_eq!(
            server.backend(),
            if backend == BackendChoice::Epoll { Backend::Epoll } else { Backend::IoUring }
        );
        let mut admin = Client::connect(server.admin_addr().unwrap()).unwrap();
        let mut client = Client::connect(server.local_addr()).unwrap();

        // PING answers with the topology.
        let topology = client.ping().unwrap();
        assert_eq!(topology.shard_count, 2);
        assert!(topology.shard < 2);
        assert_ne!(topology.shard_port_base, 0);

        // Admin operations: refused on the public port, accepted on the admin port.
        let put = sku(1001, 10, 500, 2);
        let refused = client.call(&put).unwrap();
        assert_eq!(refused.result, ResultCode::Unauthorized, "{backend:?}");
        assert_eq!(
            client.call(&Request::QuerySku { sku: 1001 }).unwrap().result,
            ResultCode::UnknownSku
        );
        assert_eq!(admin.call(&put).unwrap().result, ResultCode::Ok);
        assert_eq!(admin.call(&sku(1002, 5, 0, 0)).unwrap().result, ResultCode::Ok);
        let deposit = Request::Deposit { account: 42, amount: 10_000, key: 1 };
        assert_eq!(client.call(&deposit).unwrap().result, ResultCode::Unauthorized);
        let funded = admin.call(&deposit).unwrap();
        assert_eq!(funded.result, ResultCode::Ok);
        let ReplyBody::Account(wallet) = funded.body else { panic!("{funded:?}") };
        assert_eq!((wallet.account, wallet.available), (42, 10_000));
        // Let the definitions reach every shard.
        std::thread::sleep(std::time::Duration::from_millis(20));

        // RESERVE with PAY, then CONFIRM by id.
        let held = client.call(&reserve(42, 1001, 10, RESERVE_FLAG_PAY)).unwrap();
        assert_eq!(held.result, ResultCode::Ok, "{held:?}");
        let view = held.reservation().unwrap();
        assert_eq!(
            (view.account, view.sku, view.amount, view.state),
            (42, 1001, 500, ReservationState::Held)
        );
        let retry = client.call(&reserve(42, 1001, 10, RESERVE_FLAG_PAY)).unwrap();
        assert_eq!((retry.result, retry.original), (ResultCode::Duplicate, ResultCode::Ok));
        let confirm = Request::Confirm {
            account: 42,
            target: Target::Reservation(view.reservation),
            key: 11,
        };
        let confirmed = client.call(&confirm).unwrap();
        assert_eq!(confirmed.result, ResultCode::Ok);
        assert_eq!(confirmed.reservation().unwrap().state, ReservationState::Confirmed);

        // RESERVE, then CANCEL by the reserve key; the per-user limit (2) counts the sold unit.
        assert_eq!(
            client.call(&reserve(42, 1001, 20, RESERVE_FLAG_PAY)).unwrap().result,
            ResultCode::Ok
        );
        let over = client.call(&reserve(42, 1001, 21, 0)).unwrap();
        assert_eq!(over.result, ResultCode::LimitExceeded);
        let cancel = Request::Cancel { account: 42, target: Target::ReserveKey(20), key: 22 };
        let cancelled = client.call(&cancel).unwrap();
        assert_eq!(cancelled.result, ResultCode::Ok);
        assert_eq!(cancelled.reservation().unwrap().state, ReservationState::Cancelled);

        // Queries.
        let query = Request::QueryReservation { account: 42, target: Target::ReserveKey(10) };
        let queried = client.call(&query).unwrap();
        assert_eq!(queried.reservation().unwrap().state, ReservationState::Confirmed);
        let account = client.call(&Request::QueryAccount { account: 42 }).unwrap();
        let ReplyBody::Account(wallet) = account.body else { panic!("{account:?}") };
        assert_eq!((wallet.available, wallet.held, wallet.spent), (9_500, 0, 500));
        // QUERY_SKU on every shard's port reads the same global levels.
        std::thread::sleep(std::time::Duration::from_millis(20));
        for shard in 0..2 {
            let mut on_shard = Client::connect(server.shard_addr(shard).unwrap()).unwrap();
            let answer = on_shard.call(&Request::QuerySku { sku: 1001 }).unwrap();
            let ReplyBody::Sku(view) = answer.body else { panic!("{answer:?}") };
            assert_eq!(
                (view.total, view.sold, view.reserved, view.available),
                (10, 1, 0, 9),
                "shard {shard}"
            );
            assert_eq!((view.price, view.per_user_limit), (500, 2));
        }

        // PAUSE / RESUME / ADJUST_STOCK / WITHDRAW.
        assert_eq!(admin.call(&Request::Pause { sku: 1002 }).unwrap().result, ResultCode::Ok);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(client.call(&reserve(7, 1002, 1, 0)).unwrap().result, ResultCode::Paused);
        assert_eq!(admin.call(&Request::Resume { sku: 1002 }).unwrap().result, ResultCode::Ok);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(client.call(&reserve(7, 1002, 2, 0)).unwrap().result, ResultCode::Ok);
        let restock = Request::AdjustStock { sku: 1002, delta: 3, key: 5 };
        assert_eq!(admin.call(&restock).unwrap().result, ResultCode::Ok);
        let withdraw = Request::Withdraw { account: 42, amount: 100, key: 2 };
        let withdrawn = admin.call(&withdraw).unwrap();
        assert_eq!(withdrawn.result, ResultCode::Ok);
        let ReplyBody::Account(wallet) = withdrawn.body else { panic!("{withdrawn:?}") };
        assert_eq!(wallet.available, 9_400);

        // Zero ids are the engine's BAD_REQUEST, over the wire too.
        assert_eq!(client.call(&reserve(0, 1002, 3, 0)).unwrap().result, ResultCode::BadRequest);

        let report = server.shutdown().unwrap();
        for engine in &report.engines {
            engine.check_invariants().unwrap();
        }
        let unauthorized: u64 = report.shards.iter().map(|shard| shard.counters.unauthorized).sum();
        assert_eq!(unauthorized, 2);
    }
}

#[test]
fn a_shard_aware_client_sends_every_request_to_its_home_shard() {
    for backend in BACKENDS {
        let server = start(backend, 2, ConnLimits::default());
        let mut admin = Client::connect(server.admin_addr().unwrap()).unwrap();
        assert_eq!(admin.call(&sku(7, 1_000, 0, 0)).unwrap().result, ResultCode::Ok);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut client =
            ShardAwareClient::connect(server.local_addr(), ClientConfig::default()).unwrap();
        assert_eq!(client.topology().shard_count, 2);
        let mut sent = 0;
        for account in 1..=400_u64 {
            client.send(&reserve(account, 7, 1, 0));
            sent += 1;
        }
        let mut ok = 0;
        for _ in 0..sent {
            let response = client.recv().unwrap();
            assert_eq!(response.reply.result, ResultCode::Ok, "{response:?}");
            ok += 1;
        }
        assert_eq!(ok, 400);
        let report = server.shutdown().unwrap();
        // Each shard served exactly the accounts homed on it, and no request was forwarded:
        // the reservations of shard s all belong to accounts whose home is s.
        let mut held = 0;
        for engine in &report.engines {
            engine.check_invariants().unwrap();
            let (_, reserved, _, _) = engine.bucket_of(7).unwrap();
            let homed = (1..=400_u64)
                .filter(|account| quota::home_shard(*account, 2) == engine.placement().shard)
                .count() as u64;
            assert_eq!(reserved, homed, "{backend:?} shard {}", engine.placement().shard);
            held += reserved;
        }
        assert_eq!(held, 400);
    }
}

#[test]
fn rush_io_environment_variable_forces_the_epoll_backend() {
    // `BackendChoice::from_env` (what `rush serve` uses) reads RUSH_IO; no other test in
    // this process reads it.
    std::env::set_var(BACKEND_ENV, "kqueue");
    assert!(BackendChoice::from_env().is_err(), "an unknown backend is an error");
    std::env::set_var(BACKEND_ENV, "epoll");
    let chosen = BackendChoice::from_env().unwrap();
    std::env::remove_var(BACKEND_ENV);
    assert_eq!(chosen, BackendChoice::Epoll);
    assert_eq!(BackendChoice::from_env().unwrap(), BackendChoice::Auto);
    let server = start(chosen, 1, ConnLimits::default());
    assert_eq!(server.backend(), Backend::Epoll);
    let mut pipeline = Pipeline::connect(server.local_addr()).unwrap();
    assert_eq!(pipeline.ping().unwrap().shard_count, 1);
    server.shutdown().unwrap();
}

#[test]
fn a_sale_is_prewarmed_before_the_first_connection_and_a_bad_one_stops_the_start() {
    let config = |prewarm: Vec<Request>| ServerConfig {
        admin_listen: None,
        shard_ports: ShardPorts::Off,
        prewarm,
        ..rush_suite::server::config(BackendChoice::Auto, 2, ConnLimits::default())
    };
    let server = Server::start(config(vec![
        sku(1, 3, 100, 1),
        Request::Deposit { account: 5, amount: 1_000, key: u64::MAX },
    ]))
    .unwrap();
    let mut client = Client::connect(server.local_addr()).unwrap();
    // No sleep: the SKU was defined on every shard before the listeners opened.
    assert_eq!(client.call(&reserve(5, 1, 1, RESERVE_FLAG_PAY)).unwrap().result, ResultCode::Ok);
    let wallet = client.call(&Request::QueryAccount { account: 5 }).unwrap();
    let ReplyBody::Account(wallet) = wallet.body else { panic!("{wallet:?}") };
    assert_eq!((wallet.available, wallet.held), (900, 100));
    server.shutdown().unwrap();

    let refused = Server::start(config(vec![sku(0, 3, 100, 1)]));
    let error = refused.expect_err("a SKU id of 0 is refused").to_string();
    assert!(error.contains("BAD_REQUEST"), "{error}");
}

#[test]
fn a_second_server_on_a_taken_port_fails_instead_of_sharing_it() {
    let first = start(BackendChoice::Epoll, 2, ConnLimits::default());
    let taken = first.local_addr();
    let second = Server::start(ServerConfig {
        listen: taken,
        admin_listen: None,
        shard_ports: ShardPorts::Off,
        ..rush_suite::server::config(BackendChoice::Epoll, 2, ConnLimits::default())
    });
    let error = second.expect_err("the port is taken").to_string();
    assert!(error.contains(&taken.to_string()), "{error}");
    first.shutdown().unwrap();
}

#[test]
fn a_server_that_spins_before_sleeping_serves_the_same() {
    for backend in BACKENDS {
        let server = Server::start({
            let mut config = rush_suite::server::config(backend, 2, ConnLimits::default());
            config.shard_ports = ShardPorts::Off;
            config.prewarm = vec![sku(3, 10, 0, 0)];
            config.runtime.idle_spin_us = 200;
            config
        })
        .unwrap();
        let mut client = Client::connect(server.local_addr()).unwrap();
        for account in 1..=20 {
            let reply = client.call(&reserve(account, 3, 1, 0)).unwrap();
            let expected = if account <= 10 { ResultCode::Ok } else { ResultCode::SoldOut };
            assert_eq!(reply.result, expected, "{backend:?} account {account}");
            // Idle gaps longer than the spin: the shards go to sleep and must wake up.
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
        server.shutdown().unwrap();
    }
}
