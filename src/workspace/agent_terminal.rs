//! The agent's `terminal/*` methods: commands run directly (no shell, no PTY)
//! with a jailed working directory, their stdout and stderr captured into one
//! bounded buffer. Owns every command it starts and kills and reaps each one
//! on release or shutdown. It never reads stdin from the agent and never logs
//! a command's arguments or output.

use super::jail::{Jail, lower_io};
use super::{jail_error, object_params, opt_u64_param, str_param};
use crate::agent::signal_name;
use crate::core::rpc::{RpcError, code};
use futures_lite::future;
use futures_lite::io::AsyncReadExt;
use rustix::fs::{Mode, OFlags};
use serde_json::{Value, json};
use smol::channel::{Receiver, Sender};
use smol::lock::OnceCell;
use smol::process::{Child, Stdio};
use smol::{Async, Timer};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::pin::pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most terminals alive at once (created and not yet released), per relay.
pub const MAX_AGENT_TERMINALS: usize = 16;
/// Output kept per terminal when `terminal/create` names no `outputByteLimit`.
pub const DEFAULT_OUTPUT_LIMIT: usize = 1 << 20;
/// Largest `outputByteLimit` honoured; larger requests are clamped to it.
pub const MAX_OUTPUT_LIMIT: usize = 16 << 20;
/// Released commands' process groups remembered for the sweep at shutdown
/// (their background jobs); the oldest are forgotten past it.
pub const MAX_RELEASED_GROUPS: usize = MAX_AGENT_TERMINALS * 4;
/// Output chunks queued toward the relay's live view of agent terminals;
/// past it chunks are dropped from the live view (never from the buffer).
pub const MAX_TAP_CHUNKS: usize = 256;

/// A chunk of a command's output (whole UTF-8 characters, escapes intact)
/// for the devices viewing the session that created the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalChunk {
    pub terminal_id: String,
    /// The agent's session id from `terminal/create`.
    pub session_id: String,
    pub data: String,
    /// Bytes the command had printed once this chunk was kept: a reader of
    /// [`AgentTerminals`]' backlog that got an `end` at or past it already
    /// holds this chunk (see `output`).
    pub end: u64,
}

/// Where live output goes (see [`MAX_TAP_CHUNKS`]).
pub type TerminalTap = smol::channel::Sender<TerminalChunk>;

/// Bytes read from the output pipe at a time.
const READ_CHUNK: usize = 16 * 1024;
/// After the command exits, how long output still buffered in the pipe (or
/// written by a background child holding it open) is collected before the
/// exit is reported.
const DRAIN_GRACE: Duration = Duration::from_millis(250);
/// How long `terminal/kill`, `terminal/release` and shutdown wait for a
/// killed command to be reaped before answering anyway.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// The live terminals of one relay. Shared by concurrent `call`s on the
/// executor thread; no borrow of `table` is held across an `.await`.
pub(super) struct AgentTerminals {
    table: RefCell<HashMap<String, Rc<Terminal>>>,
    next_id: Cell<u64>,
    tap: RefCell<Option<TerminalTap>>,
    /// Groups of released commands, whose background jobs (a dev server
    /// started with `&`) keep running for the agent until the relay stops;
    /// the oldest are forgotten past [`MAX_RELEASED_GROUPS`].
    released: RefCell<std::collections::VecDeque<u32>>,
}

/// One started command. The supervisor task owns the child process; this
/// handle only talks to it. Dropping the handle (or sending on `kill`) makes
/// the supervisor kill the command.
struct Terminal {
    shared: Arc<RunState>,
    kill: Sender<()>,
    /// The command's process group (its leader's pid).
    pgid: u32,
}

/// What the supervisor task and the handle share. `exit` is set once, after
/// the child has been reaped and its output drained.
struct RunState {
    output: Mutex<OutputTail>,
    exit: OnceCell<ExitInfo>,
}

#[derive(Debug, Clone, Copy)]
struct ExitInfo {
    code: Option<i32>,
    signal: Option<i32>,
}

impl ExitInfo {
    fn to_json(self) -> Value {
        json!({ "exitCode": self.code, "signal": self.signal.map(signal_name) })
    }
}

impl AgentTerminals {
    pub(super) fn new() -> AgentTerminals {
        AgentTerminals {
            table: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
            tap: RefCell::new(None),
            released: RefCell::new(std::collections::VecDeque::new()),
        }
    }

    /// Output of terminals created from now on is also sent to `tap`.
    pub(super) fn set_tap(&self, tap: TerminalTap) {
        *self.tap.borrow_mut() = Some(tap);
    }

    /// `terminal/create {sessionId, command, args?, env?, cwd?, outputByteLimit?}`
    /// → `{terminalId}`.
    pub(super) async fn create(&self, jail: &Jail, params: &Value) -> Result<Value, RpcError> {
        object_params(params)?;
        let command = str_param(params, "command")?.to_owned();
        if command.is_empty() {
            return Err(RpcError::invalid_params(
                "\"command\" is empty: name a program to run",
            ));
        }
        let args = string_array(params, "args")?;
        let env = env_param(params)?;
        let limit = opt_u64_param(params, "outputByteLimit")?
            .map_or(DEFAULT_OUTPUT_LIMIT, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            })
            .min(MAX_OUTPUT_LIMIT);
        let cwd = match params.get("cwd") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(RpcError::invalid_params("\"cwd\" must be a string")),
        };

        self.check_room()?;
        let cwd = cwd.unwrap_or_else(|| ".".to_owned());
        let (cwd, cwd_fd) = {
            let jail = jail.clone();
            smol::unblock(move || resolve_dir(&jail, &cwd)).await?
        };
        // Other creates may have run while the cwd was resolved.
        self.check_room()?;

        let (reader, writer) = io::pipe().map_err(|e| {
            RpcError::other(format!(
                "cannot create an output pipe: {}; try again",
                lower_io(&e)
            ))
        })?;
        let spawned = {
            let mut std_cmd = std::process::Command::new(&command);
            std_cmd.args(&args).envs(env);
            // Into the directory opened beneath the root, not by path: a
            // symlink swapped in since it was resolved cannot move it out.
            let dir_fd = cwd_fd.as_raw_fd();
            // SAFETY: runs in the forked child before exec; fchdir is
            // async-signal-safe, and `cwd_fd` stays open until spawn returns.
            unsafe {
                std_cmd.pre_exec(move || {
                    rustix::process::fchdir(BorrowedFd::borrow_raw(dir_fd))?;
                    Ok(())
                });
            }
            // Its own process group, so a kill reaches its children too and
            // the relay's terminal signals do not reach it.
            std_cmd.process_group(0);
            // It dies with the relay (this runs on the executor thread).
            crate::proc::die_with_parent(&mut std_cmd);
            let mut cmd = smol::process::Command::from(std_cmd);
            // Stdio after the conversion, or the child inherits the relay's.
            let stdout = writer.try_clone().map_err(|e| {
                RpcError::other(format!(
                    "cannot create an output pipe: {}; try again",
                    lower_io(&e)
                ))
            })?;
            cmd.stdin(Stdio::null())
                .stdout(Stdio::from(stdout))
                .stderr(Stdio::from(writer))
                .kill_on_drop(true);
            cmd.spawn()
            // `cmd` drops here, closing the relay's copies of the write end,
            // so the reader sees end of file once the command's side closes.
        };
        let child = spawned.map_err(|e| spawn_error(&command, &e))?;
        // On failure `child` drops: kill_on_drop kills it, async-process reaps it.
        let reader = Async::new(reader).map_err(|e| {
            RpcError::other(format!(
                "cannot watch the output pipe: {}; try again",
                lower_io(&e)
            ))
        })?;

        let n = self.next_id.get();
        self.next_id.set(n + 1);
        let id = format!("term-{n}");
        let shared = Arc::new(RunState {
            output: Mutex::new(OutputTail::new(limit)),
            exit: OnceCell::new(),
        });
        let pgid = child.id();
        let (kill_tx, kill_rx) = smol::channel::bounded(1);
        // The supervisor needs no executor handle: it runs on smol's global
        // executor and always ends once the child is reaped.
        let tap = self.tap.borrow().clone().map(|tx| {
            let session_id = params["sessionId"].as_str().unwrap_or_default().to_owned();
            (tx, id.clone(), session_id)
        });
        smol::spawn(supervise(child, reader, shared.clone(), kill_rx, tap)).detach();
        log::debug!("terminal {id} started ({command:?} in {})", cwd.display());
        self.table.borrow_mut().insert(
            id.clone(),
            Rc::new(Terminal {
                shared,
                kill: kill_tx,
                pgid,
            }),
        );
        Ok(json!({ "terminalId": id }))
    }

    /// `terminal/output {sessionId, terminalId}` → `{output, truncated, exitStatus?}`.
    pub(super) fn output(&self, params: &Value) -> Result<Value, RpcError> {
        let term = self.get(params)?;
        let exit = term.shared.exit.get().copied();
        let (output, truncated, end) = {
            let out = lock(&term.shared.output);
            let (output, truncated) = out.snapshot(exit.is_some());
            (output, truncated, out.total)
        };
        // `_meta.relay.end`: the stream offset this backlog reaches, so a
        // viewer drops the live chunks it already holds (their `end` <= it).
        let mut result = json!({
            "output": output,
            "truncated": truncated,
            "_meta": { "relay": { "end": end } },
        });
        if let Some(exit) = exit {
            result["exitStatus"] = exit.to_json();
        }
        Ok(result)
    }

    /// `terminal/wait_for_exit {sessionId, terminalId}` → `{exitCode, signal}`.
    /// Waits as long as the command runs.
    pub(super) async fn wait_for_exit(&self, params: &Value) -> Result<Value, RpcError> {
        let term = self.get(params)?;
        let exit = *term.shared.exit.wait().await;
        Ok(exit.to_json())
    }

    /// `terminal/kill {sessionId, terminalId}` → `{}`. Kills the command (and
    /// its process group) but keeps the terminal for `terminal/output`.
    pub(super) async fn kill(&self, params: &Value) -> Result<Value, RpcError> {
        let term = self.get(params)?;
        kill_and_wait(&[term]).await;
        Ok(json!({}))
    }

    /// `terminal/release {sessionId, terminalId}` → `{}`. Kills the command if
    /// it still runs, reaps it, and forgets the terminal.
    pub(super) async fn release(&self, params: &Value) -> Result<Value, RpcError> {
        let id = terminal_id(params)?;
        let term = self
            .table
            .borrow_mut()
            .remove(id)
            .ok_or_else(|| unknown_terminal(id))?;
        kill_and_wait(std::slice::from_ref(&term)).await;
        let mut released = self.released.borrow_mut();
        if released.len() >= MAX_RELEASED_GROUPS {
            released.pop_front();
        }
        released.push_back(term.pgid);
        drop(released);
        log::debug!("terminal {id} released");
        Ok(json!({}))
    }

    /// Kills and reaps every terminal's command and forgets them all.
    pub(super) async fn shutdown(&self) {
        let all: Vec<Rc<Terminal>> = self.table.borrow_mut().drain().map(|(_, t)| t).collect();
        kill_and_wait(&all).await;
        // What exited commands left behind ends with the relay. Reading /proc blocks.
        let mut groups: Vec<u32> = self.released.borrow_mut().drain(..).collect();
        groups.extend(all.iter().map(|t| t.pgid));
        smol::unblock(move || {
            groups
                .into_iter()
                .for_each(crate::proc::kill_leftover_group)
        })
        .await;
    }

    fn check_room(&self) -> Result<(), RpcError> {
        let open = self.table.borrow().len();
        if open >= MAX_AGENT_TERMINALS {
            return Err(RpcError::new(
                code::LIMIT,
                format!(
                    "too many terminals ({open} open, limit {MAX_AGENT_TERMINALS}): \
                     release finished ones with terminal/release"
                ),
            ));
        }
        Ok(())
    }

    fn get(&self, params: &Value) -> Result<Rc<Terminal>, RpcError> {
        let id = terminal_id(params)?;
        self.table
            .borrow()
            .get(id)
            .cloned()
            .ok_or_else(|| unknown_terminal(id))
    }
}

fn terminal_id(params: &Value) -> Result<&str, RpcError> {
    object_params(params)?;
    str_param(params, "terminalId")
}

fn unknown_terminal(id: &str) -> RpcError {
    RpcError::invalid_params(format!(
        "unknown terminal {id:?}: it was never created or was already released"
    ))
}

/// Asks each terminal's supervisor to kill its command, then waits (at most
/// `KILL_WAIT` in all) until every one has been reaped.
async fn kill_and_wait(terms: &[Rc<Terminal>]) {
    for term in terms {
        if term.shared.exit.get().is_none() {
            // Full means a kill is already on its way; closed means it exited.
            let _ = term.kill.try_send(());
        }
    }
    let all_exited = async {
        for term in terms {
            term.shared.exit.wait().await;
        }
        true
    };
    let deadline = async {
        Timer::after(KILL_WAIT).await;
        false
    };
    if !future::or(all_exited, deadline).await {
        log::warn!(
            "a killed terminal command did not exit within {KILL_WAIT:?}; it is reaped when it does"
        );
    }
}

/// The working directory for a command: jailed, and a directory.
/// The directory `cwd` names, resolved and opened beneath the root.
pub(crate) fn resolve_dir(jail: &Jail, cwd: &str) -> Result<(PathBuf, OwnedFd), RpcError> {
    let dir = jail.resolve(cwd).map_err(jail_error)?;
    let opened = jail.open(
        &dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW,
        Mode::empty(),
    );
    match opened {
        Ok(fd) => Ok((dir, fd)),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Err(RpcError::invalid_params(
            format!("cwd {cwd:?} is not a directory: name a directory in the workspace"),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(RpcError::invalid_params(format!(
            "cwd {cwd:?} does not exist: name an existing directory in the workspace"
        ))),
        Err(e) => Err(RpcError::other(format!(
            "cannot use cwd {cwd:?}: {}",
            lower_io(&e)
        ))),
    }
}

fn spawn_error(command: &str, e: &io::Error) -> RpcError {
    match e.kind() {
        io::ErrorKind::NotFound => RpcError::other(format!(
            "command not found: {command:?}; check that it is installed and on PATH, or give its full path"
        )),
        io::ErrorKind::PermissionDenied => RpcError::other(format!(
            "cannot run {command:?}: permission denied; check that it is executable"
        )),
        io::ErrorKind::InvalidInput => RpcError::invalid_params(format!(
            "cannot run {command:?}: {}; remove nul bytes from the command, args and env",
            lower_io(e)
        )),
        _ => RpcError::other(format!("cannot run {command:?}: {}", lower_io(e))),
    }
}

/// An optional array of strings (`null` means absent).
fn string_array(params: &Value, name: &str) -> Result<Vec<String>, RpcError> {
    let bad = || RpcError::invalid_params(format!("\"{name}\" must be an array of strings"));
    match params.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// `env: [{name, value}]`, added to the relay's own environment.
fn env_param(params: &Value) -> Result<Vec<(String, String)>, RpcError> {
    let bad = || {
        RpcError::invalid_params(
            "\"env\" must be an array of {\"name\": string, \"value\": string} objects",
        )
    };
    let items = match params.get("env") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(bad()),
    };
    items
        .iter()
        .map(|item| {
            let name = item.get("name").and_then(Value::as_str).ok_or_else(bad)?;
            let value = item.get("value").and_then(Value::as_str).ok_or_else(bad)?;
            if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
                return Err(RpcError::invalid_params(format!(
                    "bad env variable {name:?}: names must be non-empty without '=' or nul, values without nul"
                )));
            }
            Ok((name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Owns the child: drains its output, waits for it (or kills it when asked,
/// or when the handle is dropped), reaps it, then publishes the exit.
async fn supervise(
    mut child: Child,
    reader: Async<io::PipeReader>,
    shared: Arc<RunState>,
    kill: Receiver<()>,
    tap: Option<(TerminalTap, String, String)>,
) {
    let pid = child.id();
    let mut pump = pin!(pump(reader, &shared, tap));
    let mut drained = false;
    let exit = {
        let mut exit = pin!(wait_or_kill(&mut child, pid, &kill));
        future::poll_fn(|cx| {
            if !drained && pump.as_mut().poll(cx).is_ready() {
                drained = true;
            }
            exit.as_mut().poll(cx)
        })
        .await
    };
    if !drained {
        future::or(pump, async {
            Timer::after(DRAIN_GRACE).await;
        })
        .await;
    }
    drop(child);
    let _ = shared.exit.set(exit).await;
}

/// Copies the output pipe into the shared buffer until end of file, and to
/// the tap (whole characters; a full tap drops the chunk).
async fn pump(
    mut reader: Async<io::PipeReader>,
    shared: &RunState,
    tap: Option<(TerminalTap, String, String)>,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut utf8 = crate::pty::Utf8Carry::new();
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                let end = {
                    let mut out = lock(&shared.output);
                    out.push(&buf[..n]);
                    out.total
                };
                if let Some((tx, terminal_id, session_id)) = &tap {
                    let data = utf8.decode(&buf[..n]);
                    if !data.is_empty() {
                        let _ = tx.try_send(TerminalChunk {
                            terminal_id: terminal_id.clone(),
                            session_id: session_id.clone(),
                            data,
                            end,
                        });
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("terminal output stopped: {}", lower_io(&e));
                return;
            }
        }
    }
}

/// Waits for the child to exit; a message on (or the closing of) `kill`
/// kills its process group first.
async fn wait_or_kill(child: &mut Child, pid: u32, kill: &Receiver<()>) -> ExitInfo {
    let exited = future::or(async { Some(child.status().await) }, async {
        let _ = kill.recv().await;
        None
    })
    .await;
    let status = match exited {
        Some(status) => status,
        None => {
            // The child is not reaped yet, so its pid still names its group.
            crate::proc::kill_group(pid);
            let _ = child.kill();
            child.status().await
        }
    };
    match status {
        Ok(status) => ExitInfo {
            code: status.code(),
            signal: status.signal(),
        },
        Err(e) => {
            log::warn!("cannot wait for a terminal command: {}", lower_io(&e));
            ExitInfo {
                code: None,
                signal: None,
            }
        }
    }
}

fn lock(output: &Mutex<OutputTail>) -> std::sync::MutexGuard<'_, OutputTail> {
    output
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The newest `limit` bytes of a command's output. Invariant: `bytes.len()
/// <= limit`; once anything was dropped, `truncated` is set and `bytes`
/// starts at a UTF-8 character boundary (for UTF-8 output).
struct OutputTail {
    bytes: VecDeque<u8>,
    limit: usize,
    truncated: bool,
    /// Bytes ever pushed (kept or not): the stream offset of the end.
    total: u64,
}

impl OutputTail {
    fn new(limit: usize) -> OutputTail {
        OutputTail {
            bytes: VecDeque::new(),
            limit,
            truncated: false,
            total: 0,
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let mut data = data;
        if data.len() >= self.limit {
            self.truncated |= data.len() > self.limit || !self.bytes.is_empty();
            self.bytes.clear();
            data = &data[data.len() - self.limit..];
            self.bytes.extend(data);
        } else {
            let overflow = (self.bytes.len() + data.len()).saturating_sub(self.limit);
            if overflow == 0 {
                self.bytes.extend(data);
                return;
            }
            self.truncated = true;
            self.bytes.drain(..overflow);
            self.bytes.extend(data);
        }
        if self.truncated {
            // A UTF-8 character is at most 4 bytes: drop at most 3 orphaned
            // continuation bytes left by the cut.
            for _ in 0..3 {
                match self.bytes.front() {
                    Some(b) if b & 0xC0 == 0x80 => {
                        self.bytes.pop_front();
                    }
                    _ => break,
                }
            }
        }
    }

    /// The kept output as text and whether any was dropped. While the command
    /// runs, a character still being written at the end is left out; any
    /// other invalid UTF-8 becomes U+FFFD.
    fn snapshot(&self, exited: bool) -> (String, bool) {
        let (a, b) = self.bytes.as_slices();
        let mut bytes = Vec::with_capacity(a.len() + b.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let err = e.utf8_error();
                let mut bytes = e.into_bytes();
                if !exited && err.error_len().is_none() {
                    bytes.truncate(err.valid_up_to());
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
        };
        (text, self.truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_keeps_everything_under_the_limit() {
        let mut out = OutputTail::new(8);
        out.push(b"abc");
        out.push(b"def");
        assert_eq!(out.snapshot(false), ("abcdef".to_owned(), false));
    }

    #[test]
    fn output_keeps_the_newest_bytes_at_a_char_boundary() {
        let mut out = OutputTail::new(8);
        out.push("x€€€".as_bytes()); // 10 bytes: the cut lands inside a '€'
        assert_eq!(out.snapshot(true), ("€€".to_owned(), true));
        out.push(b"ab");
        assert_eq!(out.snapshot(true), ("€€ab".to_owned(), true));
        out.push(b"cdefgh");
        assert_eq!(out.snapshot(true), ("abcdefgh".to_owned(), true));
    }

    #[test]
    fn output_exactly_at_the_limit_is_not_truncated() {
        let mut out = OutputTail::new(4);
        out.push(b"abcd");
        assert_eq!(out.snapshot(true), ("abcd".to_owned(), false));
        out.push(b"e");
        assert_eq!(out.snapshot(true), ("bcde".to_owned(), true));
    }

    #[test]
    fn output_limit_zero_keeps_nothing() {
        let mut out = OutputTail::new(0);
        out.push(b"abc");
        assert_eq!(out.snapshot(true), (String::new(), true));
    }

    #[test]
    fn partial_char_at_the_end_waits_while_running() {
        let mut out = OutputTail::new(16);
        let euro = "€".as_bytes();
        out.push(&[b'a', euro[0], euro[1]]);
        assert_eq!(out.snapshot(false).0, "a");
        out.push(&euro[2..]);
        assert_eq!(out.snapshot(false).0, "a€");
    }

    #[test]
    fn signal_names() {
        assert_eq!(
            signal_name(rustix::process::Signal::KILL.as_raw()),
            "SIGKILL"
        );
        assert_eq!(
            signal_name(rustix::process::Signal::TERM.as_raw()),
            "SIGTERM"
        );
    }
}
