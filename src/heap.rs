//! Memory the relay holds without using it: the C allocator's knobs where
//! the C library has them (glibc: one arena, giving freed pages back after
//! a burst is dropped; no-ops under musl, whose allocator already does both),
//! and the mapped-but-idle pages of startup code ([`shed_startup_pages`]).

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

/// Drops this process's mappings of clean, read-only file pages (the code
/// and constants of the relay and its shared libraries) and stops the kernel
/// from reading ahead on each fault (`MADV_RANDOM`): the pages stay in the
/// page cache, shared, and come back as code runs. Startup
/// code (flag parsing, the store's recovery) and whatever fault-around mapped
/// with it stop counting against the relay's RSS, which is what a small host
/// watches. Only mappings without a private (modified) page are touched, so
/// nothing but clean file pages is ever dropped. Blocking (reads
/// `/proc/self/smaps`): call it once, after startup. Returns the KiB unmapped.
#[cfg(target_os = "linux")]
pub fn shed_startup_pages() -> u64 {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut shed = 0;
    for vma in parse_smaps(&smaps) {
        if !vma.sheddable() {
            continue;
        }
        // SAFETY: the range is a whole mapping of this process, read-only,
        // file-backed and without private pages (checked just above from
        // smaps): MADV_DONTNEED only unmaps clean page-cache pages, which the
        // next access maps again with the same contents.
        unsafe {
            let addr = vma.start as *mut std::ffi::c_void;
            let len = vma.end - vma.start;
            if rustix::mm::madvise(addr, len, rustix::mm::Advice::Random).is_ok()
                && rustix::mm::madvise(addr, len, rustix::mm::Advice::LinuxDontNeed).is_ok()
            {
                log::trace!(
                    "unmapped {:x}-{:x} {} ({} KiB)",
                    vma.start,
                    vma.end,
                    vma.perms,
                    vma.rss_kib
                );
                shed += vma.rss_kib;
            }
        }
    }
    shed
}

#[cfg(not(target_os = "linux"))]
pub fn shed_startup_pages() -> u64 {
    0
}

/// One mapping in `/proc/self/smaps`, as far as [`shed_startup_pages`] cares.
#[derive(Debug, Default, PartialEq)]
struct Vma {
    start: usize,
    end: usize,
    /// `r-xp`, `r--p`, ...
    perms: String,
    /// A file path (not `[heap]`, `[stack]`, `[vdso]` or anonymous).
    file: bool,
    rss_kib: u64,
    /// Private dirty + anonymous KiB: pages that are not the file's.
    private_kib: u64,
}

impl Vma {
    fn sheddable(&self) -> bool {
        self.file
            && self.perms.starts_with('r')
            && self.perms.as_bytes().get(1) == Some(&b'-')
            && self.private_kib == 0
            && self.rss_kib > 0
    }
}

fn parse_smaps(text: &str) -> Vec<Vma> {
    let mut out: Vec<Vma> = Vec::new();
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let Some(first) = f.next() else { continue };
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            let perms = f.next().unwrap_or("").to_owned();
            let path = f.nth(3).unwrap_or("");
            out.push(Vma {
                start,
                end,
                perms,
                file: path.starts_with('/'),
                ..Vma::default()
            });
            continue;
        }
        let Some(vma) = out.last_mut() else { continue };
        let kib = || {
            f.clone()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match first {
            "Rss:" => vma.rss_kib = kib(),
            "Private_Dirty:" | "Anonymous:" => vma.private_kib += kib(),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c0100000 r-xp 00001000 08:01 1234 /usr/bin/acp-relay
Rss:                 800 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
55d0c0200000-55d0c0210000 r--p 00201000 08:01 1234 /usr/bin/acp-relay
Rss:                  64 kB
Private_Dirty:        64 kB
Anonymous:            64 kB
55d0c0300000-55d0c0310000 rw-p 00301000 08:01 1234 /usr/bin/acp-relay
Rss:                  64 kB
Private_Dirty:         8 kB
Anonymous:             8 kB
55d0c1000000-55d0c1100000 rw-p 00000000 00:00 0 [heap]
Rss:                 268 kB
Anonymous:           268 kB
7f0000000000-7f0000001000 r--p 00000000 00:00 0
Rss:                   4 kB
Anonymous:             0 kB
";

    #[test]
    fn only_clean_read_only_file_mappings_are_shed() {
        let vmas = parse_smaps(SMAPS);
        assert_eq!(vmas.len(), 5);
        let shed: Vec<bool> = vmas.iter().map(Vma::sheddable).collect();
        // Text yes; relocated read-only data (private pages), writable data,
        // the heap and anonymous mappings never.
        assert_eq!(shed, [true, false, false, false, false]);
        assert_eq!(vmas[0].rss_kib, 800);
        assert_eq!(vmas[0].end - vmas[0].start, 0x100000);
    }

    #[test]
    fn shedding_our_own_pages_keeps_us_running() {
        let _ = shed_startup_pages();
        // Code and constants come back on use.
        assert_eq!(format!("{}", 6 * 7), "42");
    }
}
