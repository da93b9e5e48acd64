//! Child processes as the shell sees them: signalling a process group (the
//! one place agents, PTYs, agent terminals, git and shutdown do it) and
//! reading a process's group and start time from `/proc`. Knows nothing of
//! what the processes are.

use rustix::process::{Pid, Signal};

/// The pid `raw` as a rustix `Pid` (`None` for 0, negative or too large).
pub fn pid(raw: u32) -> Option<Pid> {
    i32::try_from(raw).ok().and_then(Pid::from_raw)
}

/// Sends `sig` to the process group led by `leader` (a child started with
/// `process_group(0)` or `setsid`). Call it only while the leader is not yet
/// reaped: until then its pid still names its group, never someone else's.
pub fn signal_group(leader: u32, sig: Signal) {
    if let Some(pgid) = pid(leader) {
        signal_pgid(pgid, sig);
    }
}

/// Sends `sig` to the process group `pgid` (see [`signal_group`]); a group
/// that is gone is not an error.
pub fn signal_pgid(pgid: Pid, sig: Signal) {
    let _ = rustix::process::kill_process_group(pgid, sig);
}

/// SIGKILL to the process group led by `leader` (see [`signal_group`]).
pub fn kill_group(leader: u32) {
    signal_group(leader, Signal::KILL);
}

/// SIGKILL to what is left of the group `pgid` after its leader was reaped
/// (background jobs the leader started). Blocking: it reads `/proc`. A group
/// found with a live member is still the one the leader made: while a
/// process is in group `pgid`, the kernel hands that number to no new
/// process.
pub fn kill_leftover_group(pgid: u32) {
    let has_members = all_pids()
        .into_iter()
        .any(|p| stat(p).is_some_and(|s| s.pgid == pgid && s.state != 'Z'));
    if has_members && let Some(g) = pid(pgid) {
        signal_pgid(g, Signal::KILL);
    }
}

/// Makes the child `cmd` starts die (SIGKILL) when the relay does:
/// `PR_SET_PDEATHSIG` in the forked child. The signal fires when the
/// *thread* that forked the child ends, so start such children from the
/// executor thread only (it lives as long as the relay), never from the
/// `unblock` pool or a helper thread.
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = rustix::process::getpid();
    // SAFETY: the hook runs in the forked child before exec and makes only
    // two async-signal-safe system calls (prctl, getppid); it allocates
    // nothing unless it fails, and then the child is discarded.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // The relay died between fork and prctl: nobody would signal us.
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::Error::other(
                    "the relay exited while starting the child",
                ));
            }
            Ok(())
        });
    }
}

/// Whether a process with this pid exists (a zombie counts as gone).
pub fn alive(raw: u32) -> bool {
    stat(raw).is_some_and(|s| s.state != 'Z')
}

/// Whether this pid can still be signalled (a zombie not yet reaped can be:
/// its pid still names its group).
pub fn exists(raw: u32) -> bool {
    pid(raw).is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

/// What `/proc/PID/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `Z`, ...
    pub state: char,
    /// Its process group.
    pub pgid: u32,
    /// When it started, in clock ticks since boot: with the pid, a name for
    /// one process that a reused pid cannot take.
    pub start: u64,
}

/// Reads `/proc/PID/stat` (blocking, but /proc reads never wait on a disk).
pub fn stat(raw: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{raw}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses a `/proc/PID/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // Field 3 is the state; 5 the process group; 22 the start time.
    let state = fields.next()?.chars().next()?;
    let pgid = fields.nth(1)?.parse().ok()?;
    let start = fields.nth(16)?.parse().ok()?;
    Some(Stat { state, pgid, start })
}

/// Every pid in `/proc` (blocking: a directory walk of /proc).
pub fn all_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Whether a process's environment holds `needle` (`NAME=value`) exactly.
/// Only the owner (or root) can read it, so a foreign process never matches.
pub fn environ_has(raw: u32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{raw}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (a (weird) name) S 1 4240 4240 0 -1 4194560 130 0 0 0 0 0 0 0 20 0 1 0 987654 1000 100 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                pgid: 4240,
                start: 987654
            })
        );
        assert_eq!(parse_stat("12 (x) S 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_has_a_start_time() {
        let me = std::process::id();
        assert!(alive(me));
        let s = stat(me).expect("own stat");
        assert!(s.start > 0);
        assert!(all_pids().contains(&me));
        assert!(!alive(u32::MAX));
        assert_eq!(pid(0), None);
    }
}
