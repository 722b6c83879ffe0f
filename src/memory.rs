//! The allocator: mimalloc, in the glibc build and in the static musl build alike.
//!
//! musl's own malloc is slow for a multi-threaded server (one lock, no thread caches), and the
//! glibc tuning this file used to do (`mallopt`, `malloc_trim`) does not exist there. mimalloc is
//! small, builds from C with the same compiler (`musl-gcc` for the static build), keeps per-thread
//! heaps without glibc's arena growth, and hands freed memory back to the system on its own
//! after a short delay (purging), so no tuning is needed at start-up. The binary installs it in `main.rs`; the library only calls
//! into it here, which is harmless where it is not the global allocator (tests, fuzzing).

/// Gives free heap memory back to the system now, without waiting for the purge delay. For
/// after work that allocated and freed a lot at once (a raw-event scan).
pub fn release_free_memory() {
    // SAFETY: mi_collect only frees and purges unused memory of mimalloc's heaps; thread-safe.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}
