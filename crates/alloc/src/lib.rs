//! kiln's global allocator, mimalloc, and the one option kiln sets on it.
//!
//! kiln itself forbids `unsafe`; setting a mimalloc option is a call into C, so it lives
//! here, in one function. (Tested through kiln's unit tests: this crate is a dependency,
//! not a member.)

pub use mimalloc::MiMalloc;

use std::time::Duration;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (include/mimalloc.h; the Rust
/// declarations of libmimalloc-sys 0.1.49 predate it). Its default, 1000 ms, is the
/// only default of that value in the table: kiln's unit test checks it before setting.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The environment variable through which a user sets the purge delay (in ms) themselves.
pub const PURGE_DELAY_VAR: &str = "MIMALLOC_PURGE_DELAY";

/// Keeps memory kiln has freed mapped for `delay` before mimalloc returns it to the OS,
/// unless the user set `MIMALLOC_PURGE_DELAY` (which then wins).
///
/// mimalloc's default, 1 s, is made for servers whose load comes and goes. A kiln run
/// frees and allocates the same sizes (batches, pages, upload chunks) continuously, so
/// each purge only means faulting the pages in again, zeroed by the kernel, and a TLB
/// shootdown on every core for each `madvise`. Call before the process starts threads.
pub fn keep_freed_memory_for(delay: Duration) {
    if std::env::var_os(PURGE_DELAY_VAR).is_some() {
        return;
    }
    let ms = libc_long(delay.as_millis());
    // SAFETY: `mi_option_set` stores a value in mimalloc's static option table; any
    // option and value are valid (mimalloc reads the option where it purges).
    #[expect(unsafe_code, reason = "a call into mimalloc's C API to set an option")]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms)
    };
}

fn libc_long(ms: u128) -> std::ffi::c_long {
    std::ffi::c_long::try_from(ms).unwrap_or(std::ffi::c_long::MAX)
}

/// mimalloc's current purge delay in ms (-1: never purge).
pub fn purge_delay_ms() -> std::ffi::c_long {
    // SAFETY: reads mimalloc's static option table (initialising it from the
    // environment on first use), as mimalloc does itself on every purge.
    #[expect(unsafe_code, reason = "a call into mimalloc's C API to read an option")]
    unsafe {
        libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY)
    }
}
