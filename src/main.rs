//! `toki-sync`: see `cli` for the commands and `lib.rs` for the server.

// This crate defines `memcpy` and `memmove` for the musl build (`memcpy.rs`): LLVM must not
// turn their loops into calls to themselves. The crate holds nothing else that copies memory.
#![no_builtins]

/// musl's `memcpy` and `memmove` are slow for the many small copies of the ingest path; the
/// static build uses these instead (see `memcpy.rs`). Tests run the routines on every x86_64.
#[cfg(all(target_arch = "x86_64", any(test, target_env = "musl")))]
mod memcpy;

/// One allocator for both builds (glibc and static musl); see `toki_sync::memory`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    toki_sync::cli::main()
}
