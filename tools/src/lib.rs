//! The library half of the `rush` tool: the modules that read outside input, so that the
//! fuzz targets (tests/fuzz, docs/TESTING.md "Fuzzing") can call them, and what they need.
//!
//! - [`sale`]: sale files (TOML or JSON);
//! - [`settings`]: the `rush serve` settings and its `--config` file;
//! - [`capture`]: Rush captures, the pcap/pcapng import and the replay's plan;
//! - [`measure`]: what bench, replay and demo share to measure and report a run (the replay
//!   needs it).
//!
//! The binary (src/main.rs) holds the commands' other modules and uses these.
#![forbid(unsafe_code)]

pub mod capture;
pub mod measure;
pub mod sale;
pub mod settings;
