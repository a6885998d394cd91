//! The `kiln` binary: everything lives in the library; see [`kiln::cli`].

/// mimalloc returns freed large buffers to the OS; glibc's allocator, with its
/// per-thread arenas and rising mmap threshold, kept nearly twice the memory mapped.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(kiln::cli::main());
}
