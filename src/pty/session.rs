//! Process bookkeeping for PTY children: signal names for exit reports, and
//! the sweep that ends every process left in a terminal's session. The sweep
//! reads `/proc` (blocking); call it through `smol::unblock`.

use rustix::process::{Pid, Signal};
use std::fs;

/// Most `/proc` entries looked at in one sweep.
const MAX_PROC_ENTRIES: usize = 1 << 16;

/// Sends `sig` to every live process of session `sid` (other than this
/// process) and returns how many were signalled. A terminal's session id is
/// its leader's pid, which the kernel does not reuse while any member of the
/// session is alive.
pub fn signal_session(sid: Pid, sig: Signal) -> usize {
    let Ok(dir) = fs::read_dir("/proc") else {
        return 0;
    };
    let me = rustix::process::getpid();
    let mut signalled = 0;
    for entry in dir.take(MAX_PROC_ENTRIES).flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            .and_then(Pid::from_raw)
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((state, session)) = parse_stat(&stat)
            && session == sid.as_raw_nonzero().get()
            && state != 'Z'
            && rustix::process::kill_process(pid, sig).is_ok()
        {
            signalled += 1;
        }
    }
    signalled
}

/// The state and session id from a `/proc/<pid>/stat` line. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted from the
/// last `)`.
fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // ppid, pgrp, session
    let session = fields.nth(2)?.parse().ok()?;
    Some((state, session))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        assert_eq!(
            parse_stat("123 (sh) S 1 123 123 34816 123 4194560 0"),
            Some(('S', 123))
        );
        assert_eq!(parse_stat("77 (a) b (c)) Z 5 6 7 0"), Some(('Z', 7)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) R 2"), None);
    }
}
