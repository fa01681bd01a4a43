//! The C allocator's settings for a long-running bot on a small server.
//!
//! glibc's malloc gives each thread that meets contention its own arena (up
//! to 8 per core) and returns freed memory to the system only from the top
//! of each heap. A bot whose memory layer frees as much as it allocates
//! (retention prunes what intake wrote) then keeps a high-water mark of
//! fragmented arenas as RSS. Two arenas and a trim after each retention
//! round keep RSS near what is live (BENCHMARKS.md, memory (c)).
//! `MALLOC_ARENA_MAX` in the environment still wins, as glibc documents.

/// Arenas when `MALLOC_ARENA_MAX` is not set.
pub const ARENAS: i32 = 2;

/// Caps malloc's arenas; call first thing in `main`, before threads start.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a malloc parameter; it is called with a
        // valid parameter number and value and touches no Rust memory.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}

/// Hands freed memory back to the system (after retention freed a lot).
/// Blocking for a few milliseconds: call it on a blocking thread.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks malloc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
