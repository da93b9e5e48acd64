//! The PTY engine against real PTYs and real processes: output, resize,
//! multibyte text, escape sequences, exit codes, kills and shutdown. Drives
//! `PtySet` directly on a `LocalExecutor`; every wait has a deadline. Shells
//! are `/bin/sh` with a test HOME and no rc file, whatever the user's shell;
//! a failing test leaves no process behind (the rig kills each terminal's
//! session on drop).

mod common;
use acp_relay::core::terminals::TerminalId;
use acp_relay::pty::{KILL_GRACE, PtyEvent, PtySet};
use common::TempDir;
use futures_lite::future;
use smol::channel::{Receiver, Sender};
use smol::{LocalExecutor, Timer};
use std::cell::RefCell;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::RwLock;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// Tests that spawn children hold this for reading; the shutdown test holds
/// it for writing, so no other test's children exist while it counts.
static CHILDREN: RwLock<()> = RwLock::new(());

/// A `PtySet` on its own executor, with every event it reports. On drop
/// every process of every terminal's session it started is killed.
struct Rig {
    ex: Rc<LocalExecutor<'static>>,
    set: Rc<PtySet>,
    events: Rc<RefCell<Vec<PtyEvent>>>,
    wake: Receiver<()>,
    /// Session ids (the leaders' pids) of the terminals started.
    sessions: RefCell<Vec<i32>>,
    _home: TempDir,
    _root: TempDir,
}

impl Drop for Rig {
    fn drop(&mut self) {
        for sid in self.sessions.borrow().iter() {
            for (pid, _, _, _) in processes()
                .into_iter()
                .filter(|p| session_of(p.0) == Some(*sid))
            {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
    }
}

/// The session id of `pid`, from `/proc/<pid>/stat`.
fn session_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // state ppid pgrp session
    rest.split_ascii_whitespace().nth(3)?.parse().ok()
}

impl Rig {
    fn new(tag: &str) -> Rig {
        let root = TempDir::new(tag);
        let ex = Rc::new(LocalExecutor::new());
        let events = Rc::new(RefCell::new(Vec::new()));
        let (tx, wake): (Sender<()>, Receiver<()>) = smol::channel::bounded(1);
        let sink = events.clone();
        let on_event: Rc<dyn Fn(PtyEvent)> = Rc::new(move |ev| {
            sink.borrow_mut().push(ev);
            let _ = tx.try_send(());
        });
        let set = PtySet::new(ex.clone(), root.path().to_path_buf(), on_event);
        let home = TempDir::new(&format!("{tag}-home"));
        set.set_child_env(vec![
            ("SHELL".into(), Some("/bin/sh".into())),
            ("HOME".into(), Some(home.path().display().to_string())),
            ("ENV".into(), None),
            ("BASH_ENV".into(), None),
        ]);
        Rig {
            ex,
            set,
            events,
            wake,
            sessions: RefCell::new(Vec::new()),
            _home: home,
            _root: root,
        }
    }

    /// Starts a terminal (see [`PtySet::spawn`]) and remembers its session.
    fn spawn(
        &self,
        id: TerminalId,
        cols: u16,
        rows: u16,
        cwd: Option<OwnedFd>,
        command: Option<String>,
    ) -> std::io::Result<()> {
        self.set.spawn(id, cols, rows, cwd, command)?;
        if let Some(pid) = self.set.pid(id) {
            self.sessions.borrow_mut().push(pid);
        }
        Ok(())
    }

    /// Opens terminal `id` through [`PtySet::open`] with `dir` run off the
    /// executor, remembering its session if it is still running (a start
    /// reports no event: its first output, exit or failure wakes the wait).
    async fn open(
        &self,
        id: TerminalId,
        dir: impl FnOnce() -> Result<OwnedFd, String> + Send + 'static,
        command: Option<String>,
    ) {
        self.set.open(id, 80, 24, dir, command);
        self.wait_until(&format!("{id} running or failed"), |r| {
            r.set.pid(id).is_some() || r.failure_of(id).is_some() || r.exit_of(id).is_some()
        })
        .await;
        if let Some(pid) = self.set.pid(id) {
            self.sessions.borrow_mut().push(pid);
        }
    }

    fn failure_of(&self, id: TerminalId) -> Option<String> {
        self.events.borrow().iter().find_map(|ev| match ev {
            PtyEvent::Failed { id: i, reason } if *i == id => Some(reason.clone()),
            _ => None,
        })
    }

    fn root(&self) -> &Path {
        self._root.path()
    }

    /// A new directory `name` under the root.
    fn subdir(&self, name: &str) -> PathBuf {
        let sub = self.root().join(name);
        std::fs::create_dir(&sub).unwrap();
        sub
    }

    /// Runs `fut` on the executor (with the PTY tasks) to completion.
    fn run<T>(&self, fut: impl Future<Output = T>) -> T {
        future::block_on(self.ex.run(fut))
    }

    /// Everything `id` has printed so far.
    fn output(&self, id: TerminalId) -> String {
        self.events
            .borrow()
            .iter()
            .filter_map(|ev| match ev {
                PtyEvent::Output { id: i, data, .. } if *i == id => Some(data.as_str()),
                _ => None,
            })
            .collect()
    }

    fn exit_of(&self, id: TerminalId) -> Option<(Option<i32>, Option<String>)> {
        self.events.borrow().iter().find_map(|ev| match ev {
            PtyEvent::Exited {
                id: i,
                exit_code,
                signal,
            } if *i == id => Some((*exit_code, signal.clone())),
            _ => None,
        })
    }

    /// Waits, at most [`WAIT`], until `done(self)` holds.
    async fn wait_until(&self, what: &str, done: impl Fn(&Rig) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            let woke = future::or(async { self.wake.recv().await.is_ok() }, async {
                Timer::after(left).await;
                false
            })
            .await;
            if !woke && !done(self) {
                panic!(
                    "timed out after {WAIT:?} waiting for {what}; events: {:?}",
                    self.events.borrow()
                );
            }
        }
    }

    async fn wait_output(&self, id: TerminalId, needle: &str) {
        self.wait_until(&format!("{needle:?} from {id}"), |r| {
            r.output(id).contains(needle)
        })
        .await;
    }

    async fn wait_exit(&self, id: TerminalId) -> (Option<i32>, Option<String>) {
        self.wait_until(&format!("the exit of {id}"), |r| r.exit_of(id).is_some())
            .await;
        self.exit_of(id).unwrap()
    }

    /// Ends every child, within the engine's own bound plus slack.
    async fn shutdown(&self) {
        self.set.shutdown().await;
        assert!(self.set.ids().is_empty(), "left: {:?}", self.set.ids());
    }
}

fn shared_lock() -> std::sync::RwLockReadGuard<'static, ()> {
    CHILDREN.read().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn shell_evaluates_input() {
    let _g = shared_lock();
    let rig = Rig::new("echo");
    let id = TerminalId(1);
    rig.spawn(id, 80, 24, None, None).unwrap();
    rig.run(async {
        rig.set.write(id, b"echo $((6*7))\n".to_vec());
        rig.wait_output(id, "42").await;
        rig.set.write(id, b"exit\n".to_vec());
        assert_eq!(rig.wait_exit(id).await, (Some(0), None));
        rig.shutdown().await;
    });
}

#[test]
fn cwd_and_term_are_set() {
    let _g = shared_lock();
    let rig = Rig::new("cwd");
    let sub = rig.subdir("sub dir");
    rig.spawn(
        TerminalId(1),
        80,
        24,
        None,
        Some("pwd; echo \"term=$TERM\"".into()),
    )
    .unwrap();
    rig.spawn(
        TerminalId(2),
        80,
        24,
        Some(dir_fd(&sub)),
        Some("pwd".into()),
    )
    .unwrap();
    rig.run(async {
        assert_eq!(rig.wait_exit(TerminalId(1)).await, (Some(0), None));
        assert_eq!(rig.wait_exit(TerminalId(2)).await, (Some(0), None));
        rig.shutdown().await;
    });
    let root = rig.root().display().to_string();
    assert_eq!(
        rig.output(TerminalId(1)),
        format!("{root}\r\nterm=xterm-256color\r\n")
    );
    assert_eq!(rig.output(TerminalId(2)), format!("{}\r\n", sub.display()));
}

#[test]
fn child_leads_a_session_with_the_pty_as_controlling_terminal() {
    let _g = shared_lock();
    let rig = Rig::new("session");
    let id = TerminalId(1);
    // /proc/<pid>/stat: pid comm state ppid pgrp session tty_nr ...
    let script = "read pid comm state ppid pgrp sid tty rest < /proc/$$/stat; \
                  echo \"pid=$pid pgrp=$pgrp sid=$sid tty=$tty\"; read line";
    rig.spawn(id, 80, 24, None, Some(script.into())).unwrap();
    let pid = rig.set.pid(id).unwrap();
    rig.run(async {
        rig.wait_output(id, " tty=").await;
        rig.set.write(id, b"\n".to_vec());
        assert_eq!(rig.wait_exit(id).await, (Some(0), None));
        rig.shutdown().await;
    });
    let out = rig.output(id);
    assert!(
        out.contains(&format!("pid={pid} pgrp={pid} sid={pid} tty=")),
        "{out:?}"
    );
    assert!(!out.contains("tty=0\r"), "no controlling terminal: {out:?}");
}

#[test]
fn resize_reaches_stty() {
    let _g = shared_lock();
    let rig = Rig::new("resize");
    let id = TerminalId(1);
    rig.spawn(id, 80, 24, None, None).unwrap();
    rig.set.resize(id, 101, 33);
    rig.run(async {
        rig.set.write(id, b"stty size\n".to_vec());
        rig.wait_output(id, "33 101").await;
        rig.set.resize(id, 40, 12);
        rig.set.write(id, b"stty size\n".to_vec());
        rig.wait_output(id, "12 40").await;
        rig.shutdown().await;
    });
}

#[test]
fn multibyte_text_split_across_writes_arrives_whole() {
    let _g = shared_lock();
    let rig = Rig::new("utf8");
    let id = TerminalId(1);
    rig.spawn(
        id,
        120,
        40,
        None,
        Some("stty -echo; echo READY; exec cat".into()),
    )
    .unwrap();
    // Enough lines that the output spans many reads and frames.
    let line = "héllo 😀 漢字テスト 🧑\u{200D}💻 done";
    let text: String = (0..400).map(|i| format!("{i:03} {line}\n")).collect();
    rig.run(async {
        rig.wait_output(id, "READY\r\n").await;
        // Writes that cut characters apart at every possible offset.
        let bytes = text.as_bytes();
        let mut at = 0;
        let mut step = 1;
        while at < bytes.len() {
            let end = (at + step).min(bytes.len());
            rig.set.write(id, bytes[at..end].to_vec());
            at = end;
            step = step % 7 + 1;
        }
        rig.wait_output(id, &format!("399 {line}\r\n")).await;
        rig.shutdown().await;
    });
    let out = rig.output(id);
    assert!(!out.contains('\u{FFFD}'), "mangled: {out:?}");
    let expected = format!("READY\n{text}").replace('\n', "\r\n");
    assert_eq!(out, expected);
    let frames = rig
        .events
        .borrow()
        .iter()
        .filter(|e| matches!(e, PtyEvent::Output { .. }))
        .count();
    assert!(frames > 1, "expected several frames, got {frames}");
}

#[test]
fn cursor_movement_streams_without_loss() {
    let _g = shared_lock();
    let rig = Rig::new("escapes");
    let id = TerminalId(1);
    // A full-screen style program: clear, then place lines with cursor
    // addressing and erase-line, colours and multibyte text, then exit.
    let script = r#"printf '\033[?1049h\033[2J\033[H'
i=1
while [ $i -le 600 ]; do
  printf '\033[%d;1H\033[K\033[1;3%dmrow %d 漢字 ✓\033[0m\n' $((i % 24 + 1)) $((i % 8)) $i
  i=$((i + 1))
done
printf '\033[?1049lEND\n'"#;
    rig.spawn(id, 80, 24, None, Some(script.into())).unwrap();
    let mut expected = String::from("\x1b[?1049h\x1b[2J\x1b[H");
    for i in 1..=600 {
        expected += &format!(
            "\x1b[{};1H\x1b[K\x1b[1;3{}mrow {} 漢字 ✓\x1b[0m\r\n",
            i % 24 + 1,
            i % 8,
            i
        );
    }
    expected += "\x1b[?1049lEND\r\n";
    rig.run(async {
        assert_eq!(rig.wait_exit(id).await, (Some(0), None));
        rig.shutdown().await;
    });
    let out = rig.output(id);
    assert_eq!(out.len(), expected.len());
    assert!(
        out == expected,
        "output differs from what the script printed"
    );
}

#[test]
fn exit_code_is_reported() {
    let _g = shared_lock();
    let rig = Rig::new("exit3");
    let shell = TerminalId(1);
    let command = TerminalId(2);
    rig.spawn(shell, 80, 24, None, None).unwrap();
    rig.spawn(command, 80, 24, None, Some("echo bye; exit 3".into()))
        .unwrap();
    rig.run(async {
        rig.set.write(shell, b"exit 3\n".to_vec());
        assert_eq!(rig.wait_exit(shell).await, (Some(3), None));
        assert_eq!(rig.wait_exit(command).await, (Some(3), None));
        rig.shutdown().await;
    });
    // Output before the exit is all delivered, before the exit event.
    assert_eq!(rig.output(command), "bye\r\n");
    let events = rig.events.borrow();
    let exit_at = events
        .iter()
        .position(|e| matches!(e, PtyEvent::Exited { id, .. } if *id == command))
        .unwrap();
    assert!(
        events[exit_at..]
            .iter()
            .all(|e| !matches!(e, PtyEvent::Output { id, .. } if *id == command))
    );
    // A gone terminal ignores everything.
    rig.set.write(shell, b"echo\n".to_vec());
    rig.set.resize(shell, 10, 10);
    rig.set.kill(shell);
}

#[test]
fn kill_hangs_up_then_escalates() {
    let _g = shared_lock();
    let rig = Rig::new("kill");
    let polite = TerminalId(1);
    let stubborn = TerminalId(2);
    rig.spawn(polite, 80, 24, None, Some("echo up; sleep 1000".into()))
        .unwrap();
    rig.spawn(
        stubborn,
        80,
        24,
        None,
        Some("trap '' HUP; echo up; sleep 1000".into()),
    )
    .unwrap();
    rig.run(async {
        rig.wait_output(polite, "up").await;
        rig.wait_output(stubborn, "up").await;
        let started = Instant::now();
        rig.set.kill(polite);
        rig.set.kill(stubborn);
        rig.set.kill(stubborn); // a second kill changes nothing
        let (code, signal) = rig.wait_exit(polite).await;
        assert_eq!(code, None);
        assert_eq!(signal.as_deref(), Some("SIGHUP"));
        let (code, signal) = rig.wait_exit(stubborn).await;
        assert_eq!(code, None);
        assert_eq!(signal.as_deref(), Some("SIGKILL"));
        assert!(started.elapsed() >= KILL_GRACE);
        rig.shutdown().await;
    });
}

#[test]
fn spawn_refuses_a_running_id_and_after_shutdown() {
    let _g = shared_lock();
    let rig = Rig::new("refuse");
    let id = TerminalId(7);
    rig.spawn(id, 80, 24, None, Some("sleep 1000".into()))
        .unwrap();
    let err = rig.spawn(id, 80, 24, None, None).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    rig.run(rig.shutdown());
    assert!(rig.spawn(TerminalId(9), 80, 24, None, None).is_err());
    assert!(matches!(
        rig.exit_of(id),
        Some((None, Some(ref s))) if s == "SIGHUP"
    ));
}

/// The core never reuses a terminal id: `open` with one that is still
/// opening is a bug, caught in debug builds (a `Failed` for it would read as
/// the failure of the terminal holding it).
#[test]
#[should_panic(expected = "reused while it is open")]
fn opening_an_id_that_is_opening_is_a_bug() {
    let rig = Rig::new("reuse");
    let root = rig.root().to_path_buf();
    let again = root.clone();
    rig.set
        .open(TerminalId(1), 80, 24, move || Ok(dir_fd(&root)), None);
    rig.set
        .open(TerminalId(1), 80, 24, move || Ok(dir_fd(&again)), None);
}

/// A child `fchdir`s to its directory's descriptor and closes it: a shell
/// holds no descriptor of it, even when the caller did not set
/// close-on-exec (`dir_fd` does not).
#[test]
fn a_child_holds_no_descriptor_of_its_directory() {
    let _g = shared_lock();
    let rig = Rig::new("dirfd");
    let sub = rig.subdir("held-dir");
    let list = "ls -l /proc/$$/fd/; pwd; echo listed";
    let (spawned, opened) = (TerminalId(1), TerminalId(2));
    rig.spawn(spawned, 80, 24, Some(dir_fd(&sub)), Some(list.into()))
        .unwrap();
    let dir = sub.clone();
    rig.run(async {
        rig.open(opened, move || Ok(dir_fd(&dir)), Some(list.into()))
            .await;
        for id in [spawned, opened] {
            assert_eq!(rig.wait_exit(id).await, (Some(0), None), "{id}");
        }
        rig.shutdown().await;
    });
    for id in [spawned, opened] {
        let out = rig.output(id);
        let (fds, cwd) = out.split_once("\r\n/").unwrap_or_else(|| panic!("{out:?}"));
        assert!(
            fds.contains("/dev/pts/") && out.contains("listed"),
            "{out:?}"
        );
        assert!(
            !fds.contains("held-dir"),
            "{id} holds its directory: {out:?}"
        );
        assert!(
            cwd.contains("held-dir"),
            "{id} is not in its directory: {out:?}"
        );
    }
}

/// The processes visible in `/proc`: (pid, ppid, state, comm).
fn processes() -> Vec<(i32, i32, char, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let mut rest = stat[close + 1..].split_ascii_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = rest.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        out.push((pid, ppid, state, comm));
    }
    out
}

#[test]
fn shutdown_leaves_no_children() {
    let _g = CHILDREN.write().unwrap_or_else(|e| e.into_inner());
    let rig = Rig::new("shutdown");
    // Marker programs: symlinks to sleep, so each process's name says which
    // terminal and which job it belongs to.
    let sleep = ["/usr/bin/sleep", "/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("no sleep binary");
    let marker = |name: &str| {
        let p = rig.root().join(name);
        std::os::unix::fs::symlink(sleep, &p).unwrap();
        p.display().to_string()
    };
    let (a, b, c, d) = (
        marker("ptyreap_a"),
        marker("ptyreap_b"),
        marker("ptyreap_c"),
        marker("ptyreap_d"),
    );
    // An interactive shell with a background job in its own process group.
    rig.spawn(TerminalId(1), 80, 24, None, None).unwrap();
    // A script ignoring SIGHUP, with a job in another process group.
    rig.spawn(
        TerminalId(2),
        80,
        24,
        None,
        Some(format!("set -m; trap '' HUP; {b} 1000 & {c} 1000")),
    )
    .unwrap();
    // A lone command.
    rig.spawn(TerminalId(3), 80, 24, None, Some(format!("{d} 1000")))
        .unwrap();
    let me = std::process::id() as i32;
    let markers = ["ptyreap_a", "ptyreap_b", "ptyreap_c", "ptyreap_d"];
    let live_markers = || {
        processes()
            .into_iter()
            .filter(|(_, _, state, comm)| *state != 'Z' && markers.contains(&comm.as_str()))
            .collect::<Vec<_>>()
    };
    rig.run(async {
        rig.set
            .write(TerminalId(1), format!("{a} 1000 &\n").into_bytes());
        let deadline = Instant::now() + WAIT;
        while live_markers().len() < markers.len() {
            assert!(
                Instant::now() < deadline,
                "marker processes did not start: {:?}",
                live_markers()
            );
            Timer::after(Duration::from_millis(20)).await;
        }
        rig.shutdown().await;
    });
    for id in [TerminalId(1), TerminalId(2), TerminalId(3)] {
        assert!(rig.exit_of(id).is_some(), "no exit reported for {id}");
    }
    // The kernel may take a moment to finish a SIGKILLed process.
    let deadline = Instant::now() + WAIT;
    loop {
        let children: Vec<_> = processes()
            .into_iter()
            .filter(|(_, ppid, _, _)| *ppid == me)
            .collect();
        let left = live_markers();
        if children.is_empty() && left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after shutdown: children {children:?}, live markers {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn shells_get_the_test_environment_not_the_users() {
    let _g = shared_lock();
    let rig = Rig::new("env");
    let id = TerminalId(1);
    rig.spawn(id, 80, 24, None, None).unwrap();
    let home = rig._home.path().display().to_string();
    rig.run(async {
        rig.set
            .write(id, b"echo \"shell=$SHELL home=$HOME\"; exit\n".to_vec());
        rig.wait_output(id, &format!("shell=/bin/sh home={home}"))
            .await;
        assert_eq!(rig.wait_exit(id).await, (Some(0), None));
        rig.shutdown().await;
    });
}

#[test]
fn output_is_flushed_before_the_exit_and_nothing_is_lost() {
    let _g = shared_lock();
    let rig = Rig::new("flush");
    let id = TerminalId(1);
    rig.spawn(
        id,
        80,
        24,
        None,
        Some("i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done".into()),
    )
    .unwrap();
    rig.run(async {
        assert_eq!(rig.wait_exit(id).await, (Some(0), None));
        rig.shutdown().await;
    });
    let events = rig.events.borrow();
    let last_output = events
        .iter()
        .rev()
        .find_map(|ev| match ev {
            PtyEvent::Output { id: i, flush, .. } if *i == id => Some(*flush),
            _ => None,
        })
        .expect("some output");
    assert!(last_output, "the last output event flushes the screen");
    let out = rig.output(id);
    for i in [0, 1, 1500, 2999] {
        assert!(out.contains(&format!("line-{i}\r\n")), "line-{i} missing");
    }
    assert_eq!(out.matches("\r\n").count(), 3000);
}

#[test]
fn a_dropped_rig_leaves_no_process_behind() {
    let _g = shared_lock();
    let marker = format!("ptyreap_drop_{}", std::process::id());
    let sleep = ["/usr/bin/sleep", "/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("no sleep binary");
    let dir = TempDir::new("dropmarker");
    let prog = dir.path().join(&marker);
    std::os::unix::fs::symlink(sleep, &prog).unwrap();
    let live = || {
        processes()
            .into_iter()
            .filter(|(_, _, state, comm)| *state != 'Z' && comm.starts_with("ptyreap_drop_"))
            .filter(|(pid, ..)| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim_end() == &marker[..marker.len().min(15)])
            })
            .count()
    };
    {
        // As a test that fails halfway would: a job in its own process
        // group, and no shutdown.
        let rig = Rig::new("drop");
        rig.spawn(
            TerminalId(1),
            80,
            24,
            None,
            Some(format!(
                "set -m; {} 1000 & echo started; wait",
                prog.display()
            )),
        )
        .unwrap();
        rig.run(rig.wait_output(TerminalId(1), "started"));
        let deadline = Instant::now() + WAIT;
        while live() == 0 {
            assert!(Instant::now() < deadline, "the marker did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let deadline = Instant::now() + WAIT;
    while live() > 0 {
        assert!(
            Instant::now() < deadline,
            "{marker} outlived the dropped rig"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A directory opened by path, as a child's working directory.
fn dir_fd(path: &Path) -> OwnedFd {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap()
}

/// The race a path-based `chdir` loses: the directory is resolved and
/// opened beneath the root, then swapped for a symlink to a directory
/// outside before the child starts. The child runs in the directory that
/// was opened, never where the symlink points.
#[test]
fn a_directory_swapped_for_a_symlink_after_opening_is_never_followed() {
    use acp_relay::workspace::jail::Jail;
    use rustix::fs::{Mode, OFlags};
    let _g = shared_lock();
    let rig = Rig::new("swap");
    let outside = TempDir::new("swap-outside");
    std::fs::write(outside.path().join("outside-marker"), "").unwrap();
    let root = rig.root().to_path_buf();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/inside-marker"), "").unwrap();
    let target = outside.path().to_path_buf();
    let id = TerminalId(1);
    let dir = move || {
        let jail = Jail::new(&root).map_err(|e| e.to_string())?;
        let resolved = jail.resolve("sub").map_err(|e| e.to_string())?;
        let fd = jail
            .open(
                &resolved,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW,
                Mode::empty(),
            )
            .map_err(|e| e.to_string())?;
        // The swap, after the check and before the child exists.
        std::fs::rename(root.join("sub"), root.join("sub-moved")).map_err(|e| e.to_string())?;
        std::os::unix::fs::symlink(&target, root.join("sub")).map_err(|e| e.to_string())?;
        Ok(fd)
    };
    rig.run(async {
        rig.open(id, dir, Some("ls; pwd".into())).await;
        assert_eq!(rig.failure_of(id), None);
        assert_eq!(rig.wait_exit(id).await, (Some(0), None));
        rig.shutdown().await;
    });
    let out = rig.output(id);
    assert!(out.contains("inside-marker"), "{out:?}");
    assert!(
        !out.contains("outside-marker"),
        "followed the symlink: {out:?}"
    );
    assert!(out.contains("sub-moved"), "{out:?}");
}

/// Input and a resize sent while the directory is still being opened are
/// applied once the child runs; a directory that cannot be opened, or a
/// kill before the start, is reported as a failure and starts nothing.
#[test]
fn what_is_asked_while_opening_is_kept_and_failures_are_reported() {
    let _g = shared_lock();
    let rig = Rig::new("opening");
    let root = rig.root().to_path_buf();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let slow = move || {
        // Held until the test has queued its input.
        let _ = wait.recv_timeout(WAIT);
        Ok(dir_fd(&root))
    };
    let (a, b, c) = (TerminalId(1), TerminalId(2), TerminalId(3));
    rig.set.open(
        a,
        80,
        24,
        slow,
        Some("stty size; read line; echo got=$line".into()),
    );
    rig.set.resize(a, 101, 33);
    rig.set.write(a, b"hello\n".to_vec());
    assert_eq!(rig.set.pid(a), None, "still opening");
    let err = rig.set.spawn(a, 80, 24, None, None).unwrap_err();
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::AlreadyExists,
        "spawned while opening"
    );
    go.send(()).unwrap();
    rig.set
        .open(b, 80, 24, || Err("cwd \"x\" does not exist".into()), None);
    let (go_c, wait_c) = std::sync::mpsc::channel::<()>();
    let root = rig.root().to_path_buf();
    rig.set.open(
        c,
        80,
        24,
        move || {
            let _ = wait_c.recv_timeout(WAIT);
            Ok(dir_fd(&root))
        },
        None,
    );
    rig.set.kill(c);
    go_c.send(()).unwrap();
    rig.run(async {
        rig.wait_until("a running", |r| {
            r.set.pid(a).is_some() || r.exit_of(a).is_some()
        })
        .await;
        if let Some(pid) = rig.set.pid(a) {
            rig.sessions.borrow_mut().push(pid);
        }
        assert_eq!(rig.wait_exit(a).await, (Some(0), None));
        rig.wait_until("b and c failed", |r| {
            r.failure_of(b).is_some() && r.failure_of(c).is_some()
        })
        .await;
        rig.shutdown().await;
    });
    let out = rig.output(a);
    assert!(
        out.contains("33 101") && out.contains("got=hello"),
        "{out:?}"
    );
    assert_eq!(
        rig.failure_of(b).as_deref(),
        Some("cwd \"x\" does not exist")
    );
    assert_eq!(
        rig.failure_of(c).as_deref(),
        Some("killed before it started")
    );
    assert_eq!(rig.exit_of(c), None);
}
