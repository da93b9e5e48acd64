//! The agent process groups of this relay, recorded in the data dir
//! (`agents.pids`) so that the next start can end what a killed relay left
//! behind. An agent itself dies with the relay (`PR_SET_PDEATHSIG`), but the
//! processes it started do not; they stay in its group, and carry the run's
//! marker in their environment ([`MARKER_VAR`]), which is how the sweep knows
//! a process is still ours and not a stranger that reused a pid.

use crate::proc;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The record's file name in the data dir.
pub const FILE: &str = "agents.pids";
/// The environment variable every agent gets: this run's id.
pub const MARKER_VAR: &str = "ACP_RELAY_RUN";
/// Records kept; past it the oldest are forgotten (the agents still die with
/// the relay; only a sweep of their children after a crash is lost).
pub const MAX_RECORDS: usize = 1024;

/// One agent process group: its leader's pid and start time, and the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub run: String,
    pub pgid: u32,
    pub start: u64,
}

impl Record {
    fn line(&self) -> String {
        format!("{} {} {}\n", self.run, self.pgid, self.start)
    }

    fn parse(line: &str) -> Option<Record> {
        let mut f = line.split_ascii_whitespace();
        let run = f.next()?.to_owned();
        let pgid = f.next()?.parse().ok()?;
        let start = f.next()?.parse().ok()?;
        Some(Record { run, pgid, start })
    }
}

/// Parses a record file; lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<Record> {
    text.lines().filter_map(Record::parse).collect()
}

/// The `relay PID START` line naming the run that wrote a record file.
fn writer_line() -> String {
    let me = std::process::id();
    let start = proc::stat(me).map_or(0, |s| s.start);
    format!("relay {me} {start}\n")
}

/// The relay that wrote `text`, if that process still runs (same pid, same
/// start time): its agents are alive and well, not left behind.
fn live_writer(text: &str) -> Option<u32> {
    let line = text.lines().find_map(|l| l.strip_prefix("relay "))?;
    let mut f = line.split_ascii_whitespace();
    let pid: u32 = f.next()?.parse().ok()?;
    let start: u64 = f.next()?.parse().ok()?;
    (pid != std::process::id()
        && proc::stat(pid).is_some_and(|s| s.start == start && s.state != 'Z'))
    .then_some(pid)
}

/// Whether the process `pid` (with stat `st`) belongs to an agent group of
/// `records`: it is in a recorded group, and is that group's leader with the
/// recorded start time, or carries the recorded run's marker.
fn ours(pid: u32, st: &proc::Stat, records: &[Record]) -> bool {
    records.iter().any(|r| {
        st.pgid == r.pgid
            && ((pid == r.pgid && st.start == r.start)
                || proc::environ_has(pid, &format!("{MARKER_VAR}={}", r.run)))
    })
}

/// Kills every process a previous run's record still names (SIGKILL: they
/// belong to a relay that is gone) and returns how many. Blocking (reads
/// /proc and the data dir): call it before the executor starts.
pub fn sweep(data_dir: &Path) -> usize {
    let path = data_dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(_) => return 0,
    };
    if let Some(pid) = live_writer(&text) {
        log::warn!(
            "another relay (pid {pid}) runs on this data dir ({}); its agents are left alone",
            data_dir.display()
        );
        return 0;
    }
    let records = parse(&text);
    let me = std::process::id();
    let mut killed = 0;
    if !records.is_empty() {
        for pid in proc::all_pids() {
            if pid == me {
                continue;
            }
            let Some(st) = proc::stat(pid) else { continue };
            if st.state != 'Z' && ours(pid, &st, &records) {
                if let Some(p) = proc::pid(pid) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                }
                killed += 1;
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    killed
}

/// This run's records, written to the data dir whenever they change (on the
/// blocking pool; a later snapshot is never overwritten by an earlier one).
pub struct Groups {
    path: PathBuf,
    run: String,
    live: RefCell<HashMap<u32, Record>>,
    seq: std::cell::Cell<u64>,
}

/// The newest snapshot written, across writes on the blocking pool.
static WRITTEN: Mutex<u64> = Mutex::new(0);

impl Groups {
    /// Sweeps what a previous run left, then starts this run's record.
    pub fn open(data_dir: &Path, run: String) -> Groups {
        let swept = sweep(data_dir);
        if swept > 0 {
            log::warn!(
                "ended {swept} agent process(es) a previous relay run left behind (recorded in {})",
                data_dir.join(FILE).display()
            );
        }
        Groups {
            path: data_dir.join(FILE),
            run,
            live: RefCell::new(HashMap::new()),
            seq: std::cell::Cell::new(0),
        }
    }

    /// The marker every agent of this run carries (`NAME`, `value`).
    pub fn marker(&self) -> (&'static str, &str) {
        (MARKER_VAR, &self.run)
    }

    /// Records a just started agent group.
    pub fn add(&self, pgid: u32) {
        let Some(st) = proc::stat(pgid) else { return };
        {
            let mut live = self.live.borrow_mut();
            if live.len() >= MAX_RECORDS
                && let Some(oldest) = live.values().min_by_key(|r| r.start).map(|r| r.pgid)
            {
                live.remove(&oldest);
            }
            live.insert(
                pgid,
                Record {
                    run: self.run.clone(),
                    pgid,
                    start: st.start,
                },
            );
        }
        self.write();
    }

    /// Forgets an agent group whose leader was reaped.
    pub fn remove(&self, pgid: u32) {
        let removed = self.live.borrow_mut().remove(&pgid).is_some();
        if removed {
            self.write();
        }
    }

    fn write(&self) {
        let mut text = writer_line();
        text.extend(self.live.borrow().values().map(Record::line));
        self.seq.set(self.seq.get() + 1);
        let seq = self.seq.get();
        let path = self.path.clone();
        smol::unblock(move || {
            let mut written = WRITTEN.lock().unwrap_or_else(|e| e.into_inner());
            if seq <= *written {
                return;
            }
            if let Err(e) = write_atomic(&path, text.as_bytes()) {
                log::warn!("cannot record agent processes in {}: {e}", path.display());
            }
            *written = seq;
        })
        .detach();
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("pids.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

thread_local! {
    /// The executor thread's record (set by `serve`; absent in unit tests).
    static GROUPS: RefCell<Option<std::rc::Rc<Groups>>> = const { RefCell::new(None) };
}

/// Installs this thread's record: agents spawned on it are recorded.
pub fn install(groups: Groups) {
    GROUPS.with(|g| *g.borrow_mut() = Some(std::rc::Rc::new(groups)));
}

/// This thread's record, if `serve` installed one.
pub fn current() -> Option<std::rc::Rc<Groups>> {
    GROUPS.with(|g| g.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_lines_are_skipped() {
        let r = Record {
            run: "123-45".into(),
            pgid: 77,
            start: 9000,
        };
        let text = format!("{}garbage\n1 2\n{}", r.line(), r.line());
        assert_eq!(parse(&text), vec![r.clone(), r]);
    }

    #[test]
    fn a_stranger_in_a_recorded_group_is_not_ours() {
        let records = vec![Record {
            run: "run-a".into(),
            pgid: 500,
            start: 10,
        }];
        let leader = proc::Stat {
            state: 'S',
            pgid: 500,
            start: 10,
        };
        assert!(ours(500, &leader, &records), "the leader, same start");
        let reused = proc::Stat {
            start: 11,
            ..leader
        };
        // pid 500 started later: a reused pid (its environ is not readable here).
        assert!(!ours(500, &reused, &records));
        let other_group = proc::Stat {
            pgid: 501,
            ..leader
        };
        assert!(!ours(500, &other_group, &records));
    }

    #[test]
    fn a_record_of_a_live_relay_is_not_swept() {
        let tmp = crate::testing::TempDir::new("groups-live");
        let dir = tmp.0.clone();
        // pid 1 runs; a record naming it with its real start time is "live".
        // (The recorded group names no process: nothing could be killed.)
        let init = proc::stat(1).expect("pid 1");
        let text = format!("relay 1 {}\nrun-x 999999999 1\n", init.start);
        assert_eq!(live_writer(&text), Some(1));
        std::fs::write(dir.join(FILE), &text).unwrap();
        assert_eq!(sweep(&dir), 0);
        assert!(dir.join(FILE).exists(), "a live relay's record is kept");
        assert_eq!(live_writer(&format!("relay 1 {}\n", init.start + 1)), None);
        assert!(writer_line().starts_with(&format!("relay {} ", std::process::id())));
    }

    #[test]
    fn sweep_without_a_record_does_nothing() {
        let tmp = crate::testing::TempDir::new("groups");
        let dir = tmp.0.clone();
        assert_eq!(sweep(&dir), 0);
        std::fs::write(dir.join(FILE), "nonsense\n").unwrap();
        assert_eq!(sweep(&dir), 0);
        assert!(!dir.join(FILE).exists(), "the old record is gone");
    }
}
