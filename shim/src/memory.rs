//! Keeping the shim's resident memory to its working set: there is one shim per container, so
//! its RSS is paid per container.
//!
//! Start-up (containerd's handshake, ttrpc and protobuf set-up, `husk create`/`start`) runs code
//! spread over most of the binary, and the kernel's fault-around maps 64 KiB of file around
//! every page fault, so after a container start nearly all of the 3 MB static binary is
//! mapped. A shim then idles for the container's lifetime and needs a few pages of that. Once
//! things are quiet, the shim unmaps its code and read-only data (the pages stay in the page
//! cache, shared with every other shim, and fault back in when used) and returns free heap to
//! the kernel. Measured with `scripts/bench-shim`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long after the last start the shim waits before trimming: requests of one container
/// start (create, start, the first state/wait calls) come within this.
const QUIET: Duration = Duration::from_secs(1);

static SCHEDULED: AtomicBool = AtomicBool::new(false);

/// Trim once things are quiet again (several calls in a row make one trim).
pub fn trim_soon() {
    if SCHEDULED.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async {
        tokio::time::sleep(QUIET).await;
        SCHEDULED.store(false, Ordering::Release);
        trim();
    });
}

fn trim() {
    extern "C" {
        // Linker-defined: the start of the image and the end of its code. Everything between
        // is the ELF headers, read-only data and code, which nothing writes: the build is a
        // static non-PIE binary (.cargo/config.toml) whose only relocations (IRELATIVE) go
        // to the GOT, after `etext`.
        static __executable_start: u8;
        static etext: u8;
    }
    let page = 4096usize;
    let start = std::ptr::addr_of!(__executable_start) as usize & !(page - 1);
    let end = (std::ptr::addr_of!(etext) as usize + page - 1) & !(page - 1);
    // SAFETY: [start, end) holds only private file mappings of the binary that were never
    // written (see above), so MADV_DONTNEED loses nothing: the next access reads the same
    // bytes from the file's page cache again. No other thread runs (current-thread runtime),
    // and code executing this call is faulted back in like any other page.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
    }
    // SAFETY: malloc_trim only returns free heap pages to the kernel. (musl's malloc, the
    // default build's, returns them itself and has no malloc_trim.)
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}
