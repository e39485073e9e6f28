//! `rush serve`: runs the server until SIGINT or SIGTERM.
//!
//! 1. Settings: defaults, then the `--config` file, then the flags (see `settings.rs`).
//! 2. The sale: the `--sale` file (or the config file's `sale`), else the embedded demo sale
//!    (`sale.rs`), checked against the engine's bounds. Both files are read and checked
//!    before any memory is allocated or any port bound, so a bad file fails fast, naming
//!    the file.
//! 3. SIGINT and SIGTERM are blocked (see `signals.rs`), the server starts with the sale as
//!    its pre-warm requests (PUT_SKU per SKU, then DEPOSIT per wallet, applied before the
//!    first connection is accepted), and start-up is logged on stderr:
//!
//!    ```text
//!    rush: backend io_uring (probe passed)
//!    rush: 2 shards; shard 0 on core 0, shard 1 on core 1
//!    rush: pre-warmed 2 SKUs, 1000 wallets (embedded demo sale)
//!    rush: metrics on http://127.0.0.1:7072/metrics
//!    rush: listening on 0.0.0.0:7070 (public), 127.0.0.1:7071 (admin), shards on 7170..=7171
//!    ```
//!
//!    The `listening on` line comes last: when it is printed, the server accepts
//!    connections (scripts and tests wait for it; with `--listen 127.0.0.1:0` it shows the
//!    port the system chose).
//! 4. On SIGINT or SIGTERM: `rush: stopping (SIGTERM)`; the server stops accepting,
//!    answers what is in flight (for at most `rush_net::server::SHUTDOWN_GRACE`), and a
//!    one-line summary is printed (`rush: stopped; connections accepted: 3, frames: 120
//!    (bad: 0, unauthorized: 0)`); the exit status is 0. Signals that arrive while it stops
//!    are ignored. If a shard failed, the error is printed and the exit status is 1.
//!
//! A shard that fails while serving is reported only at shutdown (the main thread waits in
//! `sigwait` and the server has no failure notification).

use anyhow::Context;
use rush_net::metrics::MetricsExporter;
use rush_net::server::{Server, ServerConfig, ShardPorts};

use crate::sale::Sale;
use crate::settings::{backend_from_env, core_count, ConfigFile, SaleSource, ServeArgs, Settings};
use crate::signals::run_until_stop_signal;

pub fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let file = args.config.as_deref().map(ConfigFile::load).transpose()?;
    let settings = Settings::resolve(args, file.as_ref(), backend_from_env()?, core_count())?;
    let (sale, sale_name) = match &settings.sale {
        SaleSource::Demo => (Sale::demo()?, "embedded demo sale".to_string()),
        SaleSource::File(path) => (Sale::load(path)?, format!("from {}", path.display())),
    };
    sale.check(&settings.runtime.engine).with_context(|| format!("sale ({sale_name})"))?;
    if let Some(file) = &file {
        log(&format!("settings from {}", file.path.display()));
    }

    let config = ServerConfig {
        listen: settings.listen,
        admin_listen: settings.admin_listen,
        shard_ports: settings.shard_ports,
        runtime: settings.runtime,
        limits: settings.limits,
        backend: settings.backend,
        prewarm: sale.requests(),
        capture: args.capture.clone(),
        durability: settings.durability,
        data_dir: Some(settings.data_dir.clone()),
        journal: rush_runtime::journal::JournalOptions {
            segment_bytes_max: settings.journal_segment_bytes,
            snapshot_every: settings.snapshot_every,
        },
    };
    let ((server, exporter), signal) = run_until_stop_signal(|| {
        let server = Server::start(config).context("cannot start the server")?;
        log(&backend_line(&server, &settings));
        log(&shards_line(&server));
        log(&tables_line(&server, &settings));
        log(&durability_line(&server, &settings));
        if server.prewarmed() {
            log(&format!(
                "pre-warmed {}, {} ({sale_name})",
                plural(sale.skus.len(), "SKU"),
                plural(sale.wallets.len(), "wallet")
            ));
        } else {
            log(&format!(
                "recovered data directory: the sale ({sale_name}) was not applied again (it \
                 pre-warms a new data directory only)"
            ));
        }
        // Started before the `listening on` line, so that once a script sees that line
        // the metrics answer too. A failure to bind stops the server: an operator who
        // asked for metrics (or runs with the default) must not be left blind silently.
        let exporter = match settings.metrics_listen {
            Some(address) => {
                let exporter = MetricsExporter::start(address, server.metrics_source())
                    .with_context(|| {
                        format!(
                            "cannot serve metrics on {address} (--metrics-listen ADDR, or none)"
                        )
                    });
                let exporter = match exporter {
                    Ok(exporter) => exporter,
                    Err(error) => {
                        let _ = server.shutdown();
                        return Err(error);
                    }
                };
                log(&format!("metrics on http://{}/metrics", exporter.local_addr()));
                Some(exporter)
            }
            None => None,
        };
        log(&listeners_line(&server, settings.shard_ports));
        if let Some(path) = &args.capture {
            log(&format!("capturing every frame received to {}", path.display()));
        }
        Ok((server, exporter))
    })?;

    log(&format!("stopping ({})", signal.name()));
    if let Some(exporter) = exporter {
        exporter.stop();
    }
    let board = std::sync::Arc::clone(server.board());
    let report = server.shutdown().context("the server stopped with an error")?;
    let counters = board.counters();
    let answered: Vec<String> = rush_engine::ResultCode::ALL
        .iter()
        .filter(|code| counters.results[**code as usize] > 0)
        .map(|code| format!("{} {}", code.name(), counters.results[*code as usize]))
        .collect();
    if !answered.is_empty() {
        log(&format!(
            "engine answers: {}; holds expired: {}",
            answered.join(", "),
            counters.holds_expired
        ));
    }
    let mut expiry_delay = rush_engine::ExpiryDelay::default();
    for engine in &report.engines {
        expiry_delay.merge(engine.expiry_delay());
    }
    if let Some(line) = expiry_delay_line(&expiry_delay) {
        log(&line);
    }
    let mut accepted = 0;
    let mut frames = 0;
    let mut bad_frames = 0;
    let mut unauthorized = 0;
    for shard in &report.shards {
        accepted += shard.counters.accepted;
        frames += shard.counters.frames;
        bad_frames += shard.counters.bad_frames + shard.counters.fatal_frames;
        unauthorized += shard.counters.unauthorized;
    }
    log(&format!(
        "stopped; connections accepted: {accepted}, frames: {frames} (bad: {bad_frames}, \
         unauthorized: {unauthorized})"
    ));
    let journals: Vec<_> = report.shards.iter().filter_map(|shard| shard.journal).collect();
    if !journals.is_empty() {
        let (mut inputs, mut writes, mut bytes) = (0, 0, 0);
        let (mut taken, mut installed, mut pause_ns_max) = (0, 0, 0);
        for (journal, snapshots) in &journals {
            inputs += journal.inputs;
            writes += journal.writes;
            bytes += journal.bytes_written;
            taken += snapshots.taken;
            installed += snapshots.installed;
            pause_ns_max = pause_ns_max.max(snapshots.pause_ns_max);
        }
        log(&format!(
            "journal: {inputs} records, {writes} writes + fdatasyncs ({:.1} records each), \
             {bytes} bytes; snapshots: {taken} taken, {installed} installed, longest capture \
             pause {:.3} ms",
            inputs as f64 / writes.max(1) as f64,
            pause_ns_max as f64 / 1e6
        ));
    }
    if let Some((written, dropped)) = report.capture {
        log(&format!("capture: {written} records written, {dropped} dropped"));
    }
    Ok(())
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// `hold expiry delay (engine clock at release - deadline, ms): p50 0, p99 1, p99.9 1, max 2
/// over 1200 expiries`, or nothing when no hold expired.
fn expiry_delay_line(delay: &rush_engine::ExpiryDelay) -> Option<String> {
    let quantile = |q: f64| delay.quantile_ms(q).map_or_else(String::new, |ms| ms.to_string());
    (delay.count() > 0).then(|| {
        format!(
            "hold expiry delay (engine clock at release - deadline, ms): p50 {}, p99 {}, \
             p99.9 {}, max {} over {} expiries",
            quantile(0.5),
            quantile(0.99),
            quantile(0.999),
            delay.delay_ms_max,
            delay.count()
        )
    })
}

fn log(line: &str) {
    eprintln!("rush: {line}");
}

/// `engine tables: 540 MiB for 2,000,000 reservations, ...: 2 shards × 270 MiB
/// (reservation 150, request_key 72, ...)`: what the capacities cost, allocated at start.
fn tables_line(server: &Server, settings: &Settings) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let shards = server.table_bytes();
    let mut by_table: Vec<(&'static str, usize)> = Vec::new();
    for shard in shards {
        for &(name, bytes) in shard {
            match by_table.iter_mut().find(|(seen, _)| *seen == name) {
                Some((_, total)) => *total += bytes,
                None => by_table.push((name, bytes)),
            }
        }
    }
    let total: usize = by_table.iter().map(|(_, bytes)| bytes).sum();
    let engine = settings.engine_server;
    let tables: Vec<String> =
        by_table.iter().map(|(name, bytes)| format!("{name} {:.0}", *bytes as f64 / MIB)).collect();
    format!(
        "engine tables: {:.0} MiB for {} reservations, {} request keys, {} wallets, {} limit \
         counters, {} SKUs; {} × {:.0} MiB (MiB by table: {})",
        total as f64 / MIB,
        engine.reservation_max,
        engine.request_key_max,
        engine.account_max,
        engine.limit_entry_max,
        engine.sku_max,
        plural(shards.len(), "shard"),
        total as f64 / MIB / shards.len().max(1) as f64,
        tables.join(", ")
    )
}

/// `backend io_uring (probe passed)`; who asked, when it was not the default.
fn durability_line(server: &Server, settings: &Settings) -> String {
    match server.data_dir() {
        None => "durability none: in memory only (a restart forgets everything)".to_string(),
        Some(path) => format!(
            "durability {}, data directory {}{}, a snapshot every {}",
            settings.durability,
            path.display(),
            if server.prewarmed() { " (new)" } else { " (recovered)" },
            settings.snapshot_every
        ),
    }
}

fn backend_line(server: &Server, settings: &Settings) -> String {
    let mut line = format!("backend {} ({}", server.backend(), server.backend_reason());
    if settings.backend_source != "default" {
        line.push_str(&format!("; set by {}", settings.backend_source));
    }
    line.push(')');
    line
}

/// `2 shards; shard 0 on core 0, shard 1 on core 1` (or `not pinned`).
fn shards_line(server: &Server) -> String {
    let placements: Vec<String> = server
        .cores()
        .iter()
        .enumerate()
        .map(|(shard, core)| match core {
            Some(core) => format!("shard {shard} on core {core}"),
            None => format!("shard {shard} not pinned"),
        })
        .collect();
    format!("{}; {}", plural(server.cores().len(), "shard"), placements.join(", "))
}

/// `listening on ADDR (public), ADDR (admin), shards on FIRST..=LAST`.
fn listeners_line(server: &Server, shard_ports: ShardPorts) -> String {
    let admin = match server.admin_addr() {
        Some(address) => format!("{address} (admin)"),
        None => "no admin listener".to_string(),
    };
    let shards = match (server.shard_addr(0), server.shard_addr(server.shard_count() - 1)) {
        (Some(first), Some(last)) => {
            let how = if shard_ports == ShardPorts::Auto { " (auto)" } else { "" };
            format!("shards on {}..={}{how}", first.port(), last.port())
        }
        _ => "no per-shard ports".to_string(),
    };
    format!("listening on {} (public), {admin}, {shards}", server.local_addr())
}
