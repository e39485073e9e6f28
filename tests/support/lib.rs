//! Shared support for the cross-crate test suite in `tests/` and the benchmarks in `benches/`.
//!
//! The README is included as this crate's documentation so that its Rust example is compiled
//! and run as a doctest: the README cannot drift from the API.
#![doc = include_str!("../../README.md")]
