//! The C allocator's knobs, where the C library has them (glibc): fewer
//! arenas at start, and giving freed pages back after a burst is dropped.
//! Elsewhere (musl's static builds) both are no-ops: its allocator already
//! returns freed memory and keeps no per-thread arenas.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    use std::ffi::c_int;

    /// `M_ARENA_MAX` from glibc's `<malloc.h>`.
    pub const M_ARENA_MAX: c_int = -8;

    unsafe extern "C" {
        pub fn mallopt(param: c_int, value: c_int) -> c_int;
        pub fn malloc_trim(pad: usize) -> c_int;
    }
}

/// Arenas glibc may create for the helper threads (reactor, reaper, the
/// `unblock` pool) besides the main one; each costs RSS, and none of them
/// allocates much.
pub const ARENAS: i32 = 1;

/// Sets the allocator up for a small, long-lived process. Call once, early.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; any value is valid.
    unsafe {
        glibc::mallopt(glibc::M_ARENA_MAX, ARENAS);
    }
}

/// Gives free heap pages back to the system (after a dropped socket's queue
/// is freed, say). Costs a walk of the heap: call it after rare events only.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and is safe to call at any time.
    unsafe {
        glibc::malloc_trim(0);
    }
}
