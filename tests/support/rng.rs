//! The one seeded generator of the tests and benchmarks: `rush_tools::measure::rng`, which
//! `rush bench` draws its requests with, re-exported so that a seed gives the same stream in
//! both.

pub use rush_tools::measure::rng::{splitmix64, Rng};
