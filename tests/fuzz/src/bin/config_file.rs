//! `ConfigFile::parse` (tools/src/settings.rs), the `rush serve --config` loader, then
//! `Settings::resolve` of the file under no flags and under flags that override it, as
//! `rush serve` does before it starts anything. Input that is not UTF-8 is not a config
//! file: `ConfigFile::load` refuses it when it reads the file, before parsing.
//!
//! Asserts: no panic; an error is an `Err` with a message; settings that resolve are ones
//! the server accepts (the runtime's, the engine's and the connection limits' own checks
//! pass; 1..=64 shards; per-shard ports that fit below 65536), and a relative `sale` is taken
//! from the config file's directory.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rush_net::server::ShardPorts;
use rush_tools::settings::{AdminListen, ConfigFile, SaleSource, ServeArgs, Settings};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = match ConfigFile::parse(text, Path::new("/etc/rush/serve.toml")) {
        Ok(file) => file,
        Err(error) => {
            assert!(!format!("{error:#}").is_empty());
            return;
        }
    };
    let flags = ServeArgs {
        listen: Some("127.0.0.1:65500".parse().unwrap()),
        admin_listen: Some(AdminListen::Off),
        shards: Some(64),
        no_pin: true,
        ..ServeArgs::default()
    };
    for (args, cores) in [(&ServeArgs::default(), 2), (&ServeArgs::default(), 64), (&flags, 1)] {
        match Settings::resolve(args, Some(&file), None, cores) {
            Ok(settings) => check(&settings),
            Err(error) => assert!(!format!("{error:#}").is_empty()),
        }
    }
});

fn check(settings: &Settings) {
    let runtime = &settings.runtime;
    runtime.validate().unwrap_or_else(|error| panic!("{error}"));
    runtime.engine.validate().unwrap_or_else(|error| panic!("{error}"));
    settings.limits.validate().unwrap_or_else(|error| panic!("{error}"));
    assert!((1..=64).contains(&runtime.shard_count));
    if let ShardPorts::Base(base) = settings.shard_ports {
        assert!(base > 0 && u32::from(base) + runtime.shard_count - 1 <= 65_535, "{base}");
    }
    if let SaleSource::File(path) = &settings.sale {
        assert!(path.is_absolute(), "{}", path.display());
    }
}
