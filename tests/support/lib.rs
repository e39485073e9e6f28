//! Shared helpers for the cross-crate test suite in `tests/` and the benchmarks in `benches/`.
