//! # rush-net
//!
//! The wire protocol of Rush (docs/PROTOCOL.md).
#![deny(unsafe_code)]

pub mod protocol;
