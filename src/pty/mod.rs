//! PTY children for device terminals: spawns each in its own session with the
//! PTY as controlling terminal, pumps its output (coalesced into bounded
//! frames of whole UTF-8 characters) and queued input without blocking on the
//! one executor thread, reaps it, and reports through a callback. A child
//! [`PtySet::open`] starts runs in a directory opened beforehand (off the
//! executor thread), by descriptor, never by path; one [`PtySet::spawn`]
//! starts without a descriptor runs in the workspace root, by path. The
//! child holds no descriptor of its directory. Owns every child it starts;
//! [`PtySet::shutdown`] ends and reaps them all. It never logs a terminal's
//! input or output.

mod session;
mod utf8;

pub use crate::agent::signal_name;
pub use utf8::Utf8Carry;

use crate::core::terminals::TerminalId;
use futures_lite::future;
use futures_lite::io::AsyncWriteExt;
use pty_process::blocking::Pty;
use rustix::process::{Pid, Signal};
use smol::channel::{Receiver, Sender};
use smol::process::{Child, Stdio};
use smol::{Async, LocalExecutor, Timer};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::pin::pin;
use std::process::ExitStatus;
use std::rc::{Rc, Weak};
use std::time::Duration;

/// Most output bytes read into one [`PtyEvent::Output`] frame.
pub const MAX_OUTPUT_FRAME: usize = 16 * 1024;
/// Most input bytes queued (not yet written to the PTY) per terminal; input
/// past it is dropped with a log line.
pub const MAX_PENDING_INPUT: usize = 1 << 20;
/// Least time between two screen frames of one terminal: output arriving
/// sooner is parsed as it comes and shown in the next frame.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(30);
/// Between SIGHUP and SIGKILL when a terminal is killed.
pub const KILL_GRACE: Duration = Duration::from_secs(1);
/// After the child exits, how long output still buffered in the PTY (or
/// written by a leftover process holding it open) is read before the exit is
/// reported.
pub const DRAIN_GRACE: Duration = Duration::from_millis(250);
/// Longest wait for the `/proc` sweep of a killed terminal's session.
pub const SWEEP_WAIT: Duration = Duration::from_secs(2);
/// Longest wait in [`PtySet::shutdown`] for every child to be reaped.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(6);
/// Terminals whose directory is still being opened ([`PtySet::open`]) at
/// once; past it an open fails at once.
pub const MAX_OPENING: usize = 64;
/// `TERM` in every terminal's environment.
pub const TERM: &str = "xterm-256color";
/// Interactive shell when `$SHELL` is unset or not an absolute path; also
/// the shell that runs a `command`.
pub const FALLBACK_SHELL: &str = "/bin/sh";

/// What a terminal reports, through the `on_event` callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtyEvent {
    /// Output, at most [`MAX_OUTPUT_FRAME`] bytes read from the PTY, never a
    /// split character; `flush`: a screen frame is due now (paced to at
    /// most one per [`FRAME_INTERVAL`]). Empty only with `flush`.
    Output {
        id: TerminalId,
        data: String,
        flush: bool,
    },
    /// The child was reaped; its output is over and the terminal is gone.
    Exited {
        id: TerminalId,
        exit_code: Option<i32>,
        signal: Option<String>,
    },
    /// A terminal [`PtySet::open`] asked for never started: its directory
    /// could not be opened, or the child could not be spawned.
    Failed { id: TerminalId, reason: String },
}

/// The running PTY children, by terminal id. Used on one `LocalExecutor`;
/// no `RefCell` borrow is held across an `.await` or a callback.
pub struct PtySet {
    ex: Rc<LocalExecutor<'static>>,
    workspace_root: PathBuf,
    on_event: Rc<dyn Fn(PtyEvent)>,
    terms: RefCell<HashMap<TerminalId, Rc<Term>>>,
    /// Terminals whose directory is being opened, with what was asked of
    /// them meanwhile (at most [`MAX_OPENING`]).
    opening: RefCell<HashMap<TerminalId, Opening>>,
    /// Set by shutdown: no more spawns.
    closed: Cell<bool>,
    /// Environment changes for every child (`None`: remove the variable).
    child_env: RefCell<Vec<(String, Option<String>)>>,
}

/// What a terminal that is still opening was asked to do, applied once it
/// runs: input (at most [`MAX_PENDING_INPUT`] bytes), the last size, a kill.
#[derive(Default)]
struct Opening {
    input: Vec<Vec<u8>>,
    input_bytes: usize,
    size: Option<(u16, u16)>,
    killed: bool,
}

/// One running terminal, shared by the table and its supervisor task.
struct Term {
    pty: Async<Pty>,
    /// The child's pid, which is also its session and process group id.
    pid: Pid,
    /// Input waiting to be written, oldest first; `input_bytes` is its total.
    input: RefCell<VecDeque<Vec<u8>>>,
    input_bytes: Cell<usize>,
    /// Wakes the input pump (capacity one: a pending wake is enough).
    input_ready: Sender<()>,
    /// A kill was asked for: escalate, and sweep the session after the reap.
    killing: Cell<bool>,
    /// The child has been reaped: its pid may be reused, never signal it.
    reaped: Cell<bool>,
    /// Closes when the supervisor task ends.
    done: Receiver<()>,
}

impl Term {
    /// Signals the child's process group and the terminal's foreground
    /// process group (a job the shell started), unless already reaped.
    fn signal(&self, sig: Signal) {
        if self.reaped.get() {
            return;
        }
        crate::proc::signal_pgid(self.pid, sig);
        if let Ok(fg) = rustix::termios::tcgetpgrp(self.pty.get_ref())
            && fg != self.pid
        {
            crate::proc::signal_pgid(fg, sig);
        }
    }
}

impl PtySet {
    /// A set whose children start in `workspace_root` unless told otherwise;
    /// `on_event` is called from the executor, with no borrow held.
    pub fn new(
        ex: Rc<LocalExecutor<'static>>,
        workspace_root: PathBuf,
        on_event: Rc<dyn Fn(PtyEvent)>,
    ) -> Rc<PtySet> {
        Rc::new(PtySet {
            ex,
            workspace_root,
            on_event,
            terms: RefCell::new(HashMap::new()),
            opening: RefCell::new(HashMap::new()),
            closed: Cell::new(false),
            child_env: RefCell::new(Vec::new()),
        })
    }

    /// Sets (`Some`) or removes (`None`) environment variables in every child
    /// started from now on, after `TERM`; a `SHELL` set here is also the
    /// shell started when no command is given.
    pub fn set_child_env(&self, vars: Vec<(String, Option<String>)>) {
        *self.child_env.borrow_mut() = vars;
    }

    /// Starts terminal `id` as [`PtySet::spawn`] does, in the directory
    /// `dir` opens: it runs off the executor thread (it may block on the
    /// filesystem) and hands back a descriptor the child `fchdir`s to, so a
    /// path swapped for a symlink after `dir` checked it cannot move the
    /// child. Input, resizes and a kill for `id` meanwhile are kept and
    /// applied once it runs. A failure is reported as [`PtyEvent::Failed`],
    /// never from inside this call.
    ///
    /// `id` must be new: the caller never reuses one (the core numbers
    /// terminals from a counter). A reused id panics in a debug build; in a
    /// release build the call is dropped with a log line and no report, since
    /// a `Failed` for it would read as the failure of the terminal that holds
    /// it.
    pub fn open(
        self: &Rc<Self>,
        id: TerminalId,
        cols: u16,
        rows: u16,
        dir: impl FnOnce() -> Result<OwnedFd, String> + Send + 'static,
        command: Option<String>,
    ) {
        let reused =
            self.terms.borrow().contains_key(&id) || self.opening.borrow().contains_key(&id);
        debug_assert!(!reused, "terminal id {id} reused while it is open");
        if reused {
            log::error!("terminal {id}: opened again while it is open; ignored");
            return;
        }
        let refused = if self.closed.get() {
            Some("the relay is shutting down".to_owned())
        } else if self.opening.borrow().len() >= MAX_OPENING {
            Some(format!(
                "{MAX_OPENING} terminals are starting already; retry in a moment"
            ))
        } else {
            None
        };
        if refused.is_none() {
            self.opening.borrow_mut().insert(id, Opening::default());
        }
        let set = Rc::downgrade(self);
        let on_event = self.on_event.clone();
        self.ex
            .spawn(async move {
                let started = match refused {
                    Some(reason) => Err(reason),
                    None => {
                        let dir = smol::unblock(dir).await;
                        match set.upgrade() {
                            Some(set) => set.opened(id, cols, rows, dir, command),
                            None => Err("the relay is shutting down".to_owned()),
                        }
                    }
                };
                if let Err(reason) = started {
                    on_event(PtyEvent::Failed { id, reason });
                }
            })
            .detach();
    }

    /// The directory of an [`PtySet::open`] is open (or could not be):
    /// starts the child there and applies what was asked meanwhile.
    fn opened(
        self: &Rc<Self>,
        id: TerminalId,
        cols: u16,
        rows: u16,
        dir: Result<OwnedFd, String>,
        command: Option<String>,
    ) -> Result<(), String> {
        let asked = self.opening.borrow_mut().remove(&id).unwrap_or_default();
        let dir = dir?;
        if asked.killed {
            return Err("killed before it started".to_owned());
        }
        let (cols, rows) = asked.size.unwrap_or((cols, rows));
        self.spawn(id, cols, rows, Some(dir), command)
            .map_err(|e| e.to_string())?;
        for data in asked.input {
            self.write(id, data);
        }
        Ok(())
    }

    /// Starts `command` (through `sh -c`) or the user's `$SHELL` in a new
    /// PTY of `cols`×`rows` with `TERM=xterm-256color`, in the directory
    /// `cwd` is open on (the child `fchdir`s to it, then closes it, whether
    /// or not it is close-on-exec) or, without one, the workspace root by
    /// path. Refuses an `id` that is running or opening. Output and the exit
    /// are reported through the callback, never from inside this call.
    pub fn spawn(
        self: &Rc<Self>,
        id: TerminalId,
        cols: u16,
        rows: u16,
        cwd: Option<OwnedFd>,
        command: Option<String>,
    ) -> io::Result<()> {
        if self.closed.get() {
            return Err(io::Error::other("the relay is shutting down"));
        }
        if self.terms.borrow().contains_key(&id) || self.opening.borrow().contains_key(&id) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("terminal {id} is already running"),
            ));
        }
        let (pty, pts) = pty_process::blocking::open().map_err(pty_error)?;
        pty.resize(pty_process::Size::new(rows.max(1), cols.max(1)))
            .map_err(pty_error)?;

        let mut std_cmd = match command {
            Some(command) => {
                let mut c = std::process::Command::new(FALLBACK_SHELL);
                c.arg("-c").arg(command);
                c
            }
            None => std::process::Command::new(self.shell()),
        };
        if cwd.is_none() {
            std_cmd.current_dir(&self.workspace_root);
        }
        std_cmd
            .env("TERM", TERM)
            .env_remove("COLUMNS")
            .env_remove("LINES");
        for (key, value) in self.child_env.borrow().iter() {
            match value {
                Some(v) => std_cmd.env(key, v),
                None => std_cmd.env_remove(key),
            };
        }
        // The child's stdio is set up before `pre_exec` runs: a directory
        // descriptor numbered 0–2 would be replaced by the PTY by then.
        let cwd = match cwd {
            Some(fd) if fd.as_raw_fd() <= 2 => Some(rustix::io::fcntl_dupfd_cloexec(&fd, 3)?),
            other => other,
        };
        let pts_fd = pts.as_raw_fd();
        let dir_fd = cwd.as_ref().map(|d| d.as_raw_fd());
        // SAFETY: the closure runs in the forked child before exec and only
        // makes four syscalls (setsid, ioctl, fchdir, close), all
        // async-signal-safe; it allocates nothing and takes no lock. `pts_fd`
        // and `dir_fd` are open in the child, because `pts` and `cwd` are
        // alive until `spawn` returns; the child's copy of `dir_fd` is its
        // own to close, and nothing in the child uses it after.
        unsafe {
            std_cmd.pre_exec(move || {
                rustix::process::setsid()?;
                rustix::process::ioctl_tiocsctty(BorrowedFd::borrow_raw(pts_fd))?;
                if let Some(dir) = dir_fd {
                    rustix::process::fchdir(BorrowedFd::borrow_raw(dir))?;
                    // Not left to close-on-exec: the caller may not have set it.
                    rustix::io::close(dir);
                }
                Ok(())
            });
        }
        crate::proc::die_with_parent(&mut std_cmd);
        let mut cmd = smol::process::Command::from(std_cmd);
        // Stdio after the conversion, or the child inherits the relay's.
        cmd.stdin(Stdio::from(pts.as_fd().try_clone_to_owned()?))
            .stdout(Stdio::from(pts.as_fd().try_clone_to_owned()?))
            .stderr(Stdio::from(pts.as_fd().try_clone_to_owned()?));
        let child = cmd.spawn()?;
        // The relay keeps no handle on the PTY's child side, or a read of
        // the master would never fail with EIO after the child is gone.
        drop(cmd);
        drop(pts);
        drop(cwd);
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0))
            .ok_or_else(|| io::Error::other("spawned child has no pid"))?;
        // On failure from here `child` drops and async-process reaps it;
        // dropping the master hangs up its terminal.
        let pty = Async::new(pty)?;

        let (input_ready, input_rx) = smol::channel::bounded(1);
        let (done_tx, done) = smol::channel::bounded(1);
        let term = Rc::new(Term {
            pty,
            pid,
            input: RefCell::new(VecDeque::new()),
            input_bytes: Cell::new(0),
            input_ready,
            killing: Cell::new(false),
            reaped: Cell::new(false),
            done,
        });
        self.terms.borrow_mut().insert(id, term.clone());
        log::info!("terminal {id}: started (pid {})", pid.as_raw_nonzero());
        self.ex
            .spawn(supervise(
                Rc::downgrade(self),
                self.on_event.clone(),
                id,
                term,
                child,
                input_rx,
                done_tx,
            ))
            .detach();
        Ok(())
    }

    /// Queues `data` to be written to `id`'s PTY. Past [`MAX_PENDING_INPUT`]
    /// queued bytes the data is dropped (and logged, without its content).
    pub fn write(&self, id: TerminalId, data: Vec<u8>) {
        if let Some(o) = self.opening.borrow_mut().get_mut(&id) {
            if o.input_bytes.saturating_add(data.len()) > MAX_PENDING_INPUT {
                log::warn!(
                    "terminal {id}: input queue full while it starts ({} bytes pending, limit {MAX_PENDING_INPUT}); dropped {} bytes",
                    o.input_bytes,
                    data.len()
                );
            } else {
                o.input_bytes += data.len();
                o.input.push(data);
            }
            return;
        }
        let Some(term) = self.get(id) else {
            log::debug!("terminal {id}: input for a terminal that is gone");
            return;
        };
        if data.is_empty() {
            return;
        }
        let pending = term.input_bytes.get();
        if pending.saturating_add(data.len()) > MAX_PENDING_INPUT {
            log::warn!(
                "terminal {id}: input queue full ({pending} bytes pending, limit {MAX_PENDING_INPUT}); dropped {} bytes",
                data.len()
            );
            return;
        }
        term.input_bytes.set(pending + data.len());
        term.input.borrow_mut().push_back(data);
        // Full means a wake is already pending.
        let _ = term.input_ready.try_send(());
    }

    /// Sets `id`'s PTY size; the kernel tells its foreground job (SIGWINCH).
    pub fn resize(&self, id: TerminalId, cols: u16, rows: u16) {
        if let Some(o) = self.opening.borrow_mut().get_mut(&id) {
            o.size = Some((cols, rows));
            return;
        }
        let Some(term) = self.get(id) else {
            return;
        };
        let size = pty_process::Size::new(rows.max(1), cols.max(1));
        if let Err(e) = term.pty.get_ref().resize(size) {
            log::warn!("terminal {id}: resize to {cols}x{rows} failed: {e}");
        }
    }

    /// Ends `id`: SIGHUP (and SIGCONT) to its process group and foreground
    /// job now, SIGKILL after [`KILL_GRACE`] if it is still running, and
    /// SIGKILL to anything left in its session once it is reaped. The exit
    /// is reported as usual.
    pub fn kill(&self, id: TerminalId) {
        if let Some(o) = self.opening.borrow_mut().get_mut(&id) {
            o.killed = true;
            return;
        }
        let Some(term) = self.get(id) else {
            return;
        };
        if term.killing.replace(true) {
            return;
        }
        log::info!("terminal {id}: killing");
        term.signal(Signal::HUP);
        term.signal(Signal::CONT);
        // Weak: a reaped terminal's PTY closes now, not after the grace.
        let term = Rc::downgrade(&term);
        self.ex
            .spawn(async move {
                Timer::after(KILL_GRACE).await;
                if let Some(term) = term.upgrade()
                    && !term.reaped.get()
                {
                    log::info!("terminal {id}: still running after {KILL_GRACE:?}; SIGKILL");
                    term.signal(Signal::KILL);
                }
            })
            .detach();
    }

    /// Kills every terminal and waits, at most [`SHUTDOWN_WAIT`], until each
    /// is reaped and its session swept. Spawns are refused from now on.
    pub async fn shutdown(&self) {
        self.closed.set(true);
        let terms: Vec<(TerminalId, Rc<Term>)> = self
            .terms
            .borrow()
            .iter()
            .map(|(id, t)| (*id, t.clone()))
            .collect();
        for (id, _) in &terms {
            self.kill(*id);
        }
        let all_done = async {
            for (_, term) in &terms {
                // Err: the supervisor ended and dropped its sender.
                let _ = term.done.recv().await;
            }
            true
        };
        let deadline = async {
            Timer::after(SHUTDOWN_WAIT).await;
            false
        };
        if !future::or(all_done, deadline).await {
            log::warn!(
                "terminals still running {SHUTDOWN_WAIT:?} after shutdown began; giving up on them"
            );
        }
    }

    /// Ids of the running terminals.
    pub fn ids(&self) -> Vec<TerminalId> {
        let mut ids: Vec<_> = self.terms.borrow().keys().copied().collect();
        ids.sort();
        ids
    }

    /// The pid of `id`'s child (its session leader), while it runs.
    pub fn pid(&self, id: TerminalId) -> Option<i32> {
        self.get(id).map(|t| t.pid.as_raw_nonzero().get())
    }

    /// The interactive shell: `SHELL` from [`PtySet::set_child_env`] or the
    /// relay's own, when it is an absolute path, else [`FALLBACK_SHELL`].
    fn shell(&self) -> PathBuf {
        let set = self
            .child_env
            .borrow()
            .iter()
            .rev()
            .find(|(k, _)| k == "SHELL")
            .map(|(_, v)| v.clone().map(std::ffi::OsString::from));
        set.unwrap_or_else(|| std::env::var_os("SHELL"))
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| PathBuf::from(FALLBACK_SHELL))
    }

    fn get(&self, id: TerminalId) -> Option<Rc<Term>> {
        self.terms.borrow().get(&id).cloned()
    }
}

/// Owns one child: pumps output and input until the output ends and the
/// child is reaped (or it is reaped and [`DRAIN_GRACE`] has passed), sweeps
/// its session when it was killed, forgets it, and reports the exit.
async fn supervise(
    set: Weak<PtySet>,
    on_event: Rc<dyn Fn(PtyEvent)>,
    id: TerminalId,
    term: Rc<Term>,
    mut child: Child,
    input_rx: Receiver<()>,
    _done: Sender<()>,
) {
    let status = {
        let mut io = pin!(future::or(
            pump_output(&term, id, &*on_event),
            pump_input(&term, id, input_rx),
        ));
        let mut wait = pin!(child.status());
        enum First {
            OutputOver,
            Reaped(io::Result<ExitStatus>),
        }
        let first = future::or(
            async {
                io.as_mut().await;
                First::OutputOver
            },
            async { First::Reaped(wait.as_mut().await) },
        )
        .await;
        match first {
            First::OutputOver => {
                let status = wait.as_mut().await;
                term.reaped.set(true);
                status
            }
            First::Reaped(status) => {
                term.reaped.set(true);
                let grace = async {
                    Timer::after(DRAIN_GRACE).await;
                };
                future::or(io.as_mut(), grace).await;
                status
            }
        }
    };

    if term.killing.get() {
        let sid = term.pid;
        let sweep = async {
            let n = smol::unblock(move || session::signal_session(sid, Signal::KILL)).await;
            if n > 0 {
                log::info!("terminal {id}: killed {n} leftover processes of its session");
            }
        };
        let deadline = async {
            Timer::after(SWEEP_WAIT).await;
            log::warn!("terminal {id}: session sweep did not finish within {SWEEP_WAIT:?}");
        };
        future::or(sweep, deadline).await;
    }

    let (exit_code, signal) = match status {
        Ok(st) => (st.code(), st.signal().map(signal_name)),
        Err(e) => {
            log::warn!("terminal {id}: waiting for the child failed: {e}");
            (None, None)
        }
    };
    log::info!("terminal {id}: exited (code {exit_code:?}, signal {signal:?})");
    if let Some(set) = set.upgrade() {
        let removed = set.terms.borrow_mut().remove(&id);
        drop(removed);
    }
    on_event(PtyEvent::Exited {
        id,
        exit_code,
        signal,
    });
}

/// Reads output until end of file (EIO once every holder of the PTY's child
/// side is gone), paced: the first output after a quiet spell is flushed at
/// once; output that follows within [`FRAME_INTERVAL`] is still reported as
/// it is read but flushed only when the interval ends, so a flood makes one
/// screen frame per interval, not one per read.
async fn pump_output(term: &Term, id: TerminalId, on_event: &dyn Fn(PtyEvent)) {
    let mut buf = vec![0u8; MAX_OUTPUT_FRAME];
    let mut utf8 = Utf8Carry::new();
    let emit = |data: String, flush: bool| {
        if flush || !data.is_empty() {
            on_event(PtyEvent::Output { id, data, flush });
        }
    };
    // Runs from the last flush; while it runs, output waits for it.
    let mut pace: Option<Timer> = None;
    loop {
        let (data, eof) = read_burst(term, id, &mut buf, &mut utf8).await;
        if eof {
            emit(data, true);
            return;
        }
        let mut timer = match pace.take() {
            None => None,
            Some(mut t) => future::poll_once(&mut t).await.is_none().then_some(t),
        };
        match &mut timer {
            None => emit(data, true),
            Some(timer) => {
                emit(data, false);
                loop {
                    let read = async { Some(read_burst(term, id, &mut buf, &mut utf8).await) };
                    let due = async {
                        (&mut *timer).await;
                        None
                    };
                    match future::or(read, due).await {
                        Some((data, true)) => {
                            emit(data, true);
                            return;
                        }
                        Some((data, false)) => {
                            emit(data, false);
                            future::yield_now().await;
                        }
                        None => {
                            emit(String::new(), true);
                            break;
                        }
                    }
                }
            }
        }
        pace = Some(Timer::after(FRAME_INTERVAL));
        // A flooding child must not starve the other tasks on the thread.
        future::yield_now().await;
    }
}

/// One readiness wait, then whatever else is already buffered, up to
/// [`MAX_OUTPUT_FRAME`] bytes, as whole characters; `true` at end of file.
/// Cancel-safe: bytes are only taken by a read that completes.
async fn read_burst(
    term: &Term,
    id: TerminalId,
    buf: &mut [u8],
    utf8: &mut Utf8Carry,
) -> (String, bool) {
    let mut filled = 0;
    let mut eof = false;
    match term.pty.read_with(|pty| read_pty(pty, buf)).await {
        Ok(0) => eof = true,
        Ok(n) => filled = n,
        Err(e) => {
            eof = true;
            log_read_end(id, &e);
        }
    }
    // Coalesce what is already there, without waiting for more.
    while !eof && filled < buf.len() {
        match read_pty(term.pty.get_ref(), &mut buf[filled..]) {
            Ok(0) => eof = true,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                eof = true;
                log_read_end(id, &e);
            }
        }
    }
    let mut data = utf8.decode(&buf[..filled]);
    if eof {
        data.push_str(&utf8.finish());
    }
    (data, eof)
}

fn read_pty(mut pty: &Pty, buf: &mut [u8]) -> io::Result<usize> {
    pty.read(buf)
}

fn log_read_end(id: TerminalId, e: &io::Error) {
    // EIO is how a PTY master reports that the child side is closed.
    if e.raw_os_error() != Some(rustix::io::Errno::IO.raw_os_error()) {
        log::warn!("terminal {id}: reading output failed: {e}");
    }
}

/// Writes queued input in order, forever (the caller stops polling it). A
/// write error (the child is gone) drops what is queued.
async fn pump_input(term: &Term, id: TerminalId, ready: Receiver<()>) {
    loop {
        if ready.recv().await.is_err() {
            return future::pending().await;
        }
        loop {
            let chunk = term.input.borrow_mut().pop_front();
            let Some(chunk) = chunk else {
                break;
            };
            let mut w = &term.pty;
            let res = w.write_all(&chunk).await;
            term.input_bytes
                .set(term.input_bytes.get().saturating_sub(chunk.len()));
            if let Err(e) = res {
                log::debug!("terminal {id}: writing input failed: {e}; dropping queued input");
                term.input.borrow_mut().clear();
                term.input_bytes.set(0);
            }
        }
    }
}

fn pty_error(e: pty_process::Error) -> io::Error {
    match e {
        pty_process::Error::Io(e) => e,
        pty_process::Error::Rustix(errno) => errno.into(),
    }
}
