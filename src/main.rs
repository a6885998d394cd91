//! The `kiln` binary: everything lives in the library; see [`kiln::cli`].

/// mimalloc returns freed large buffers to the OS; glibc's allocator, with its
/// per-thread arenas and rising mmap threshold, kept nearly twice the memory mapped.
#[global_allocator]
static GLOBAL: kiln_alloc::MiMalloc = kiln_alloc::MiMalloc;

fn main() {
    kiln_alloc::keep_freed_memory_for(kiln::cli::ALLOCATOR_PURGE_DELAY);
    std::process::exit(kiln::cli::main());
}
