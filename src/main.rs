//! `toki-sync`: see `cli` for the commands and `lib.rs` for the server.

// The musl build defines `memcpy` and `memmove` here (`memcpy.rs`): LLVM must not turn their
// loops into calls to themselves. Only there: the glibc build's code generation stays as it was.
#![cfg_attr(target_env = "musl", no_builtins)]

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
