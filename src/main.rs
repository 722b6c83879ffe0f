//! `toki-sync`: see `cli` for the commands and `lib.rs` for the server.

fn main() -> std::process::ExitCode {
    toki_sync::cli::main()
}
