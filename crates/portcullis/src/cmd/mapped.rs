//! A large regular file mapped read-only, for `check`'s streaming pass.
//!
//! Reading a kube-proxy-sized file (16 MB) costs a copy and a page fault per 4 KB page of
//! the buffer, about 6 ms before any work starts; mapping it with `MAP_POPULATE` costs
//! under 1 ms and the workers read the page cache directly.
//!
//! The one hazard of a mapping: a file truncated by another process while it is mapped
//! makes the next access past the new end fault with `SIGBUS` (so does an I/O error
//! reading a page in). While a mapping is alive a
//! handler turns that into a clear error and exit status 1 instead of a crash.
#![allow(unsafe_code, reason = "mmap and a SIGBUS handler; each block has a SAFETY comment")]

use std::ffi::c_void;
use std::fs::File;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::libc;
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// Files smaller than this are read, not mapped (a mapping costs more than a small copy).
pub(crate) const MIN_MAPPED: u64 = 1 << 20;

/// A read-only private mapping of a whole file.
#[derive(Debug)]
pub(crate) struct Mapped {
    ptr: NonNull<c_void>,
    len: usize,
    previous: SigAction,
}

extern "C" fn on_sigbus(_: libc::c_int) {
    const MSG: &[u8] =
        b"error: the input file could not be read while mapped (truncated meanwhile, or an I/O error); check it again\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe; MSG is a static buffer.
    unsafe {
        libc::write(2, MSG.as_ptr().cast(), MSG.len());
        libc::_exit(1);
    }
}

impl Mapped {
    /// Maps `file` when it is a regular file of at least [`MIN_MAPPED`] bytes; `None`
    /// otherwise or when the mapping fails (the caller then reads it).
    pub(crate) fn new(file: &File) -> Option<Self> {
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.len() < MIN_MAPPED {
            return None;
        }
        let len = NonZeroUsize::new(usize::try_from(meta.len()).ok()?)?;
        let action =
            SigAction::new(SigHandler::Handler(on_sigbus), SaFlags::empty(), SigSet::empty());
        // SAFETY: the handler only calls async-signal-safe functions.
        let previous = unsafe { sigaction(Signal::SIGBUS, &action) }.ok()?;
        // SAFETY: a fresh private read-only mapping of an open file; nothing else refers
        // to this address range. Its contents change only if the file is written
        // meanwhile, which `check` reads as any other text (a truncation is the SIGBUS
        // case handled above).
        let mapped = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_POPULATE,
                file,
                0,
            )
        };
        match mapped {
            Ok(ptr) => Some(Self { ptr, len: len.get(), previous }),
            Err(_) => {
                // SAFETY: puts back the handler that was in force before.
                let _ = unsafe { sigaction(Signal::SIGBUS, &previous) };
                None
            }
        }
    }

    /// The file's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range mapped in `new`, which no borrow outlives (the
        // slices from `bytes` borrow `self`); then the previous SIGBUS handler returns.
        unsafe {
            let _ = munmap(self.ptr, self.len);
            let _ = sigaction(Signal::SIGBUS, &self.previous);
        }
    }
}
