//! `toki-sync`: see `cli` for the commands and `lib.rs` for the server.

/// One allocator for both builds (glibc and static musl); see `toki_sync::memory`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    toki_sync::cli::main()
}
