//! Does io_uring work here, with everything the server needs? Checked once at start:
//! the ring with SINGLE_ISSUER | DEFER_TASKRUN, the opcodes, a provided-buffer ring, and a
//! multishot recv on a socketpair that must deliver bytes and stay armed. Seccomp profiles
//! (EPERM), `kernel.io_uring_disabled` (EPERM), gVisor and old kernels (ENOSYS, EINVAL)
//! fail one of these steps, and the error names which.
#![allow(unsafe_code)] // The self-test hands a buffer ring to the kernel.

use std::fmt;
use std::io;
use std::time::Duration;

use io_uring::{cqueue, opcode, types, Probe};

/// Which probe step failed, and how.
#[derive(Debug)]
pub enum ProbeError {
    /// Creating the ring failed (EPERM: seccomp or `kernel.io_uring_disabled`; ENOSYS: no
    /// io_uring; EINVAL: a setup flag this kernel does not know, i.e. older than 6.1).
    Setup(io::Error),
    /// The kernel lacks an opcode the server uses.
    Opcode(&'static str),
    /// Registering the provided-buffer ring failed (kernel older than 5.19).
    BufferRing(io::Error),
    /// The multishot recv self-test failed.
    SelfTest(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Setup(error) => {
                let hint = match error.raw_os_error() {
                    Some(libc::EPERM) => " (EPERM: blocked by seccomp or kernel.io_uring_disabled)",
                    Some(libc::ENOSYS) => " (ENOSYS: this kernel has no io_uring)",
                    Some(libc::EINVAL) => " (EINVAL: SINGLE_ISSUER|DEFER_TASKRUN need Linux 6.1)",
                    _ => "",
                };
                write!(formatter, "io_uring_setup failed: {error}{hint}")
            }
            ProbeError::Opcode(name) => {
                write!(formatter, "the kernel lacks io_uring opcode {name}")
            }
            ProbeError::BufferRing(error) => {
                write!(formatter, "provided-buffer ring registration failed: {error}")
            }
            ProbeError::SelfTest(reason) => {
                write!(formatter, "multishot recv self-test failed: {reason}")
            }
        }
    }
}

impl std::error::Error for ProbeError {}

/// Runs every check; `Ok` means the io_uring backend can serve.
pub fn probe_io_uring() -> Result<(), ProbeError> {
    let ring = super::uring::builder().build(8).map_err(ProbeError::Setup)?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(ProbeError::Setup)?;
    let needed = [
        (opcode::AcceptMulti::CODE, "ACCEPT"),
        (opcode::RecvMulti::CODE, "RECV"),
        (opcode::Send::CODE, "SEND"),
        (opcode::Read::CODE, "READ"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    ];
    for (code, name) in needed {
        if !probe.is_supported(code) {
            return Err(ProbeError::Opcode(name));
        }
    }
    self_test(ring)
}

fn self_test(ring_owned: io_uring::IoUring) -> Result<(), ProbeError> {
    const GROUP: u16 = 7;
    const ENTRIES: u16 = 2;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: socketpair writes two descriptors into the array we pass.
    if unsafe {
        libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr())
    } != 0
    {
        return Err(ProbeError::SelfTest(format!("socketpair: {}", io::Error::last_os_error())));
    }
    let pair = Pair(fds);
    let layout = std::alloc::Layout::from_size_align(4096, 4096).expect("valid layout");
    // SAFETY: non-zero size; zeroed memory is a valid, empty buffer ring.
    let entries = unsafe { std::alloc::alloc_zeroed(layout) };
    if entries.is_null() {
        return Err(ProbeError::SelfTest("allocation failed".into()));
    }
    let memory = Allocation(entries, layout);
    let mut buffers = vec![0u8; 2 * 64];
    // Declared after the memory it uses, so it is dropped (and its operations end) first.
    let mut ring = ring_owned;
    // SAFETY: `memory` is page-aligned, holds ENTRIES entries, and outlives the ring (it is
    // dropped after `ring`, which is unregistered first).
    unsafe { ring.submitter().register_buf_ring_with_flags(memory.0 as u64, ENTRIES, GROUP, 0) }
        .map_err(ProbeError::BufferRing)?;
    let ring_entries = memory.0.cast::<types::BufRingEntry>();
    for id in 0..ENTRIES {
        // SAFETY: `id < ENTRIES`, inside the allocation.
        let entry = unsafe { &mut *ring_entries.add(id as usize) };
        entry.set_addr(buffers[id as usize * 64..].as_mut_ptr() as u64);
        entry.set_len(64);
        entry.set_bid(id);
    }
    // SAFETY: the tail lives in the first entry; a release store publishes the entries.
    unsafe {
        let tail = types::BufRingEntry::tail(ring_entries).cast_mut();
        (*tail.cast::<std::sync::atomic::AtomicU16>())
            .store(ENTRIES, std::sync::atomic::Ordering::Release);
    }
    let recv = opcode::RecvMulti::new(types::Fd(pair.0[0]), GROUP).build().user_data(1);
    // SAFETY: the entry refers to the descriptor and buffer group above, alive until the end.
    unsafe { ring.submission().push(&recv) }
        .map_err(|_| ProbeError::SelfTest("submission queue full".into()))?;
    let message = b"rush-probe";
    // SAFETY: writes from a live byte string to our socket.
    let written = unsafe { libc::write(pair.0[1], message.as_ptr().cast(), message.len()) };
    if written != message.len() as isize {
        return Err(ProbeError::SelfTest("write to the socketpair failed".into()));
    }
    let timeout = types::Timespec::from(Duration::from_secs(1));
    let args = types::SubmitArgs::new().timespec(&timeout);
    match ring.submitter().submit_with_args(1, &args) {
        Ok(_) => {}
        Err(error) if error.raw_os_error() == Some(libc::ETIME) => {
            return Err(ProbeError::SelfTest("no completion within 1 s".into()))
        }
        Err(error) => return Err(ProbeError::SelfTest(format!("io_uring_enter: {error}"))),
    }
    let completion =
        ring.completion().next().ok_or_else(|| ProbeError::SelfTest("no completion".into()))?;
    let result = completion.result();
    if result != message.len() as i32 {
        return Err(ProbeError::SelfTest(format!("recv returned {result}")));
    }
    if cqueue::buffer_select(completion.flags()).is_none() || !cqueue::more(completion.flags()) {
        return Err(ProbeError::SelfTest(
            "recv did not use a provided buffer or did not stay armed".into(),
        ));
    }
    let _ = ring.submitter().unregister_buf_ring(GROUP);
    drop(ring);
    drop(buffers);
    drop(memory);
    Ok(())
}

struct Pair([libc::c_int; 2]);

impl Drop for Pair {
    fn drop(&mut self) {
        for fd in self.0 {
            // SAFETY: closes descriptors this value owns, once.
            unsafe { libc::close(fd) };
        }
    }
}

struct Allocation(*mut u8, std::alloc::Layout);

impl Drop for Allocation {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `self_test`.
        unsafe { std::alloc::dealloc(self.0, self.1) };
    }
}
