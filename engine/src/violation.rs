//! The error of a broken invariant, on its own so that what reports one (the invariant
//! check, the snapshot restore that runs it) does not import the engine to name it.

use core::fmt;

/// A broken invariant: which one (1–5 of docs/SEMANTICS.md, 0 for internal structure) and
/// what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: u8,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "invariant {} violated: {}", self.invariant, self.message)
    }
}

impl std::error::Error for Violation {}
