//! The synchronisation primitives of the lock-free parts of the runtime (the ring, the
//! doorbell's handshake, the board's catalog): std's normally, loom's under `cfg(loom)`, so
//! the same code is model-checked (`RUSTFLAGS="--cfg loom"`, see .ci/run). The slot cell
//! has loom's closure API (`with` / `with_mut`) in both cases.
//!
//! Loom does not model `SeqCst` on loads and stores (it treats them as acquire/release), so
//! nothing in this crate relies on them: the ring uses acquire/release pairs, the doorbell
//! read-modify-writes on a single word, the catalog a CAS and acquire/release.

#[cfg(not(loom))]
mod imp {
    pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64};
    pub(crate) use std::sync::Arc;
    pub(crate) use std::thread::yield_now;

    /// `std::cell::UnsafeCell` with loom's access API; compiles to a plain pointer access.
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        /// Runs `access` with a shared pointer to the contents.
        #[inline(always)]
        pub(crate) fn with<R>(&self, access: impl FnOnce(*const T) -> R) -> R {
            access(self.0.get())
        }

        /// Runs `access` with a mutable pointer to the contents.
        #[inline(always)]
        pub(crate) fn with_mut<R>(&self, access: impl FnOnce(*mut T) -> R) -> R {
            access(self.0.get())
        }
    }
}

#[cfg(loom)]
mod imp {
    pub(crate) use loom::cell::UnsafeCell;
    pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64};
    pub(crate) use loom::sync::Arc;
    pub(crate) use loom::thread::yield_now;
}

pub(crate) use imp::*;
