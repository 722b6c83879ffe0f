//! Allocator settings for a long-running server with a small, steady footprint.
//!
//! With glibc's defaults, every thread that allocates gets its own arena, and after a large
//! block is freed the mmap threshold rises so the next ones come from the arena and stay
//! resident: each argon2 hash (19 MiB) left ~20 MiB behind per thread. Fixing the threshold and
//! capping the arenas returns such memory to the system.

/// Call once at start-up, before other threads exist.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc parameters; it is called before any other thread runs.
    unsafe {
        // Blocks of 4 MiB or more are mmapped and unmapped on free (this also stops the
        // threshold from adapting upwards).
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        // Give freed memory at the top of a heap back once 8 MiB has accumulated.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
        // Two arenas are plenty for a few busy threads and bound fragmentation.
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Gives free heap memory back to the system, including free pages in the middle of a heap that
/// the trim threshold never reaches. For after work that allocated and freed a lot at once (a
/// raw-event scan): without it, ~10 MiB stays resident after one.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
