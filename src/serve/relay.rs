//! The I/O shell around the router: turns socket, agent and job events into
//! router inputs, and router outputs into socket sends, agent processes and
//! workspace jobs. Every router call goes through [`Relay::feed`], which holds
//! the `RefCell` borrow only while the router runs synchronously.

use crate::agent::lines::{LineRead, read_line};
use crate::agent::{self, AgentCommand};
use crate::core::budget::MemoryMeter;
use crate::core::frame::find_byte;
use crate::core::ids::{AgentId, AgentKind, JobId, Place, ProjectId, SocketId, UnitId};
use crate::core::ring::Frame;
use crate::core::router::{Input, Output, Persist, Router};
use crate::core::rpc::RpcError;
use crate::core::terminals::TermAction;
use crate::pty::{PtyEvent, PtySet};
use crate::store::transcript::Store;
use crate::workspace::Workspace;
use async_tungstenite::tungstenite::Utf8Bytes;
use futures_lite::io::{AsyncBufReadExt, AsyncWriteExt};
use smol::LocalExecutor;
use smol::channel::{Receiver, Sender, TrySendError};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Lines queued toward one agent's stdin before the agent counts as hung.
pub const AGENT_QUEUE: usize = 4096;
/// Agent lines handled before the reader yields to other tasks.
pub const AGENT_LINES_PER_YIELD: usize = 32;
/// Deadline of a device query job (`_relay/fs/*`, `_relay/git/*`).
pub const QUERY_DEADLINE: Duration = Duration::from_secs(10);

/// What a socket's writer task is told.
#[derive(Debug)]
pub enum SocketMsg {
    /// A frame, checked as UTF-8 once however many sockets it goes to.
    Text(Utf8Bytes),
    /// A frame that is not UTF-8, of this many bytes: queued and counted like
    /// any other, never sent (a WebSocket text message must be UTF-8).
    NotUtf8(usize),
    Close {
        code: u16,
        reason: String,
    },
}

impl SocketMsg {
    /// Frame bytes this message holds in a socket's queue (`None`: not a frame).
    fn frame_len(&self) -> Option<usize> {
        match self {
            SocketMsg::Text(t) => Some(t.len()),
            SocketMsg::NotUtf8(len) => Some(*len),
            SocketMsg::Close { .. } => None,
        }
    }
}

/// A frame as a socket takes it, checked as UTF-8.
enum Checked {
    Text(Utf8Bytes),
    NotUtf8(Frame),
}

impl Checked {
    fn bytes(&self) -> &[u8] {
        match self {
            Checked::Text(t) => t.as_bytes(),
            Checked::NotUtf8(f) => f,
        }
    }

    fn msg(&self) -> SocketMsg {
        match self {
            Checked::Text(t) => SocketMsg::Text(t.clone()),
            Checked::NotUtf8(f) => SocketMsg::NotUtf8(f.len()),
        }
    }
}

/// The socket message for `bytes`. A frame fanned to several sockets comes
/// as consecutive sends of one shared buffer: `last` keeps the previous check,
/// reused while the same buffer comes again (it holds that buffer, so an equal
/// pointer and length are the same bytes).
fn socket_msg(last: &mut Option<Checked>, bytes: Frame) -> SocketMsg {
    if let Some(prev) = last
        && prev.bytes().as_ptr() == bytes.as_ptr()
        && prev.bytes().len() == bytes.len()
    {
        return prev.msg();
    }
    let checked = match Utf8Bytes::try_from(bytes.clone()) {
        Ok(text) => Checked::Text(text),
        Err(_) => Checked::NotUtf8(bytes),
    };
    last.insert(checked).msg()
}

/// The relay side of one device socket: its bounded outbound queue.
pub struct SocketHandle {
    pub tx: Sender<SocketMsg>,
    /// Frames queued and not yet taken by the writer.
    pub depth: Rc<QueueDepth>,
    /// `--socket-queue`: past it the socket is dropped.
    pub cap: usize,
    /// `--socket-bytes`: frame bytes queued past which the socket is dropped.
    pub cap_bytes: usize,
    /// Ends the connection at once when the socket is dropped as too slow.
    pub abort: Box<dyn Fn()>,
}

/// What a socket's outbound queue holds; the writer takes from it.
#[derive(Default)]
pub struct QueueDepth {
    pub frames: Cell<usize>,
    pub bytes: Cell<usize>,
}

impl QueueDepth {
    pub fn taken(&self, len: usize) {
        self.frames.set(self.frames.get().saturating_sub(1));
        self.bytes.set(self.bytes.get().saturating_sub(len));
        METER.with(|m| m.dequeued(len));
    }
}

impl Drop for QueueDepth {
    /// A closed socket's queue is freed with it: it no longer counts.
    fn drop(&mut self) {
        let left = self.bytes.get();
        METER.with(|m| m.dequeued(left));
    }
}

thread_local! {
    /// The memory meter of the relay on this (the executor) thread: socket
    /// queues count into it from wherever they are filled and drained.
    static METER: Rc<MemoryMeter> = Rc::new(MemoryMeter::default());
}

struct AgentHandle {
    tx: Sender<Vec<u8>>,
    pid: u32,
    /// Bytes queued toward its stdin.
    queued: Rc<Cell<usize>>,
    /// Set once its process is reaped (its pid may then name another).
    reaped: Rc<Cell<bool>>,
}

/// How long an agent the relay ends (idle, retired, its session closed) has
/// after SIGTERM before its process group gets SIGKILL.
pub const AGENT_STOP_GRACE: Duration = Duration::from_secs(5);

/// Bytes queued toward one agent's stdin before the agent counts as hung.
pub const AGENT_QUEUE_BYTES: usize = 64 << 20;

/// Counters served on `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub frames_sent: Cell<u64>,
    pub bytes_sent: Cell<u64>,
    pub sockets_dropped_slow: Cell<u64>,
    pub sockets_opened: Cell<u64>,
    pub agents_spawned: Cell<u64>,
    pub auth_failures: Cell<u64>,
}

/// Shared state of the running relay (one per process, on the executor thread).
pub struct Relay {
    pub ex: Rc<LocalExecutor<'static>>,
    router: RefCell<Router>,
    sockets: RefCell<HashMap<SocketId, SocketHandle>>,
    agents: RefCell<HashMap<AgentId, AgentHandle>>,
    /// The default project's workspace (the first of `projects`).
    pub workspace: Rc<Workspace>,
    /// Every project by name, in the router's order ([`ProjectId`] indexes it).
    pub projects: Vec<(String, Rc<Workspace>)>,
    /// Every agent by name, in the router's order ([`AgentKind`] indexes it).
    agent_cmds: Vec<(String, AgentCommand)>,
    cwd: PathBuf,
    max_agent_line: usize,
    next_socket: Cell<u64>,
    pub metrics: Metrics,
    /// The session store (None only in tests of the shell without a data dir).
    pub store: Option<Rc<Store>>,
    /// Ring bounds (frames, bytes) for restoring transcripts.
    ring_bounds: (usize, usize),
    /// PTY terminals, when `--terminal` is on.
    pty: RefCell<Option<Rc<PtySet>>>,
    started_ms: u64,
    /// Socket queues and store buffers, shared with the router's budget.
    meter: Rc<MemoryMeter>,
    /// Wakes the timer task when the router's next deadline moved earlier.
    timer_wake: Sender<()>,
    /// The deadline the timer task sleeps toward.
    timer_armed: Cell<Option<u64>>,
    /// Receives router events (notifications, counters); set by `serve`.
    pub on_event: RefCell<Option<crate::core::events::EventSink>>,
}

/// Wall-clock milliseconds: the one place the shell reads the clock for the core.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Relay {
    /// `projects` and `agent_cmds` are never empty: the first of each is the default.
    pub fn new(
        ex: Rc<LocalExecutor<'static>>,
        router: Router,
        projects: Vec<(String, Rc<Workspace>)>,
        agent_cmds: Vec<(String, AgentCommand)>,
        max_agent_line: usize,
        store: Option<Rc<Store>>,
        ring_bounds: (usize, usize),
    ) -> Rc<Relay> {
        let workspace = projects
            .first()
            .map(|(_, w)| w.clone())
            .expect("serve configures at least one project");
        let cwd = workspace.root().to_path_buf();
        let meter = METER.with(Rc::clone);
        let mut router = router;
        router.set_meter(meter.clone());
        let (timer_wake, timer_rx) = smol::channel::bounded(1);
        let relay = Rc::new(Relay {
            ex,
            router: RefCell::new(router),
            sockets: RefCell::new(HashMap::new()),
            agents: RefCell::new(HashMap::new()),
            workspace,
            projects,
            agent_cmds,
            cwd,
            max_agent_line,
            next_socket: Cell::new(0),
            metrics: Metrics::default(),
            store,
            ring_bounds,
            pty: RefCell::new(None),
            started_ms: now_ms(),
            meter,
            timer_wake,
            timer_armed: Cell::new(None),
            on_event: RefCell::new(None),
        });
        relay.watch_durable();
        relay.tap_agent_terminals();
        relay.start_timer(timer_rx);
        relay
    }

    /// Feeds [`Input::Tick`] when the router's [`Router::poll_timeout`] comes;
    /// woken early when a feed moved that time earlier.
    fn start_timer(self: &Rc<Self>, wake: Receiver<()>) {
        let relay = self.clone();
        self.ex
            .spawn(async move {
                loop {
                    let next = relay.router.borrow().poll_timeout();
                    relay.timer_armed.set(next);
                    let sleep = async {
                        match next {
                            Some(at) => {
                                let ms = at.saturating_sub(now_ms());
                                smol::Timer::after(Duration::from_millis(ms)).await;
                                true
                            }
                            None => std::future::pending().await,
                        }
                    };
                    let woken = async {
                        match wake.recv().await {
                            Ok(()) => false,
                            Err(_) => std::future::pending().await,
                        }
                    };
                    if futures_lite::future::or(sleep, woken).await {
                        relay.feed(Input::Tick);
                    }
                }
            })
            .detach();
    }

    /// Reads router state without letting the borrow escape.
    pub fn with_router<T>(&self, f: impl FnOnce(&Router) -> T) -> T {
        f(&self.router.borrow())
    }

    /// A nonce of this relay process (its start time in ms).
    pub fn epoch(&self) -> u64 {
        self.started_ms
    }

    pub fn mint_socket(&self) -> SocketId {
        self.next_socket.set(self.next_socket.get() + 1);
        SocketId(self.next_socket.get())
    }

    pub fn register_socket(&self, id: SocketId, handle: SocketHandle) {
        self.metrics
            .sockets_opened
            .set(self.metrics.sockets_opened.get() + 1);
        self.sockets.borrow_mut().insert(id, handle);
    }

    /// Runs the router on one input and performs what it asks for.
    pub fn feed(self: &Rc<Self>, input: Input<'_>) {
        if let Input::SocketClosed { socket } = &input {
            self.sockets.borrow_mut().remove(socket);
        }
        self.router.borrow_mut().handle(now_ms(), input);
        self.pump();
        let next = self.router.borrow().poll_timeout();
        if let Some(n) = next
            && self.timer_armed.get().is_none_or(|armed| n < armed)
        {
            let _ = self.timer_wake.try_send(());
        }
    }

    /// Performs every output the router has queued.
    pub fn pump(self: &Rc<Self>) {
        let outputs: Vec<Output> = {
            let mut r = self.router.borrow_mut();
            std::iter::from_fn(|| r.poll_output()).collect()
        };
        let mut last = None;
        for o in outputs {
            match o {
                Output::Send { socket, bytes } => {
                    let msg = socket_msg(&mut last, bytes);
                    self.send(socket, msg)
                }
                o => self.perform(o),
            }
        }
    }

    fn perform(self: &Rc<Self>, out: Output) {
        match out {
            Output::Send { socket, bytes } => self.send(socket, socket_msg(&mut None, bytes)),
            Output::Close {
                socket,
                code,
                reason,
            } => self.send(socket, SocketMsg::Close { code, reason }),
            Output::SpawnAgent { agent, place } => self.spawn_agent(agent, place),
            Output::WriteAgent { agent, line } => {
                let handle = self
                    .agents
                    .borrow()
                    .get(&agent)
                    .map(|a| (a.tx.clone(), a.queued.clone()));
                let len = line.len();
                let sent = handle.map(|(tx, queued)| {
                    if queued.get() + len > AGENT_QUEUE_BYTES {
                        return Err(TrySendError::Full(line));
                    }
                    tx.try_send(line).map(|()| queued.set(queued.get() + len))
                });
                match sent {
                    Some(Ok(())) => {}
                    Some(Err(TrySendError::Full(_))) => {
                        log::error!(
                            "{agent}: stdin queue full ({AGENT_QUEUE} lines or {AGENT_QUEUE_BYTES} bytes); the agent is not reading, ending it"
                        );
                        self.kill_agent(agent);
                    }
                    Some(Err(TrySendError::Closed(_))) | None => {
                        log::debug!("{agent}: line for an agent that is gone; dropped")
                    }
                }
            }
            Output::KillAgent { agent } => self.kill_agent(agent),
            Output::Persist(op) => self.persist(op),
            Output::Terminal(action) => self.terminal(action),
            Output::Restore { unit, session } => self.restore(unit, session),
            Output::StoreReplay {
                socket,
                unit,
                session,
                after,
                upto,
                max_bytes,
            } => self.store_replay(socket, unit, session, (after, upto), max_bytes),
            Output::Job {
                job,
                work,
                deadline,
            } => self.run_job(job, work, deadline),
            Output::Event(ev) => self.emit(&ev),
        }
    }

    fn send(self: &Rc<Self>, socket: SocketId, msg: SocketMsg) {
        let handle = self
            .sockets
            .borrow()
            .get(&socket)
            .map(|s| (s.tx.clone(), s.depth.clone(), s.cap, s.cap_bytes));
        let Some((tx, depth, cap, cap_bytes)) = handle else {
            return;
        };
        let len = msg.frame_len();
        let is_frame = len.is_some();
        let full = depth.frames.get() >= cap || depth.bytes.get() + len.unwrap_or(0) > cap_bytes;
        let sent = if is_frame && full {
            Err(TrySendError::Full(msg))
        } else {
            tx.try_send(msg)
        };
        match sent {
            Ok(()) => {
                if let Some(len) = len {
                    depth.frames.set(depth.frames.get() + 1);
                    depth.bytes.set(depth.bytes.get() + len);
                    self.meter.queued(len);
                    self.metrics
                        .frames_sent
                        .set(self.metrics.frames_sent.get() + 1);
                    let b = &self.metrics.bytes_sent;
                    b.set(b.get() + len as u64);
                }
            }
            Err(TrySendError::Full(_)) => {
                // A slow socket never grows memory: drop it; it reconnects with last_seq.
                log::warn!(
                    "{socket}: outbound queue full; closing it (the device resumes with last_seq)"
                );
                self.metrics
                    .sockets_dropped_slow
                    .set(self.metrics.sockets_dropped_slow.get() + 1);
                tx.close();
                let removed = self.sockets.borrow_mut().remove(&socket);
                if let Some(handle) = removed {
                    (handle.abort)();
                }
                self.feed(Input::SocketClosed { socket });
            }
            Err(TrySendError::Closed(_)) => {}
        }
    }

    fn kill_agent(&self, agent: AgentId) {
        let Some(a) = self.agents.borrow_mut().remove(&agent) else {
            return;
        };
        crate::proc::signal_group(a.pid, rustix::process::Signal::TERM);
        a.tx.close();
        // An agent that ignores SIGTERM must not keep its memory.
        let (pid, reaped) = (a.pid, a.reaped);
        self.ex
            .spawn(async move {
                smol::Timer::after(AGENT_STOP_GRACE).await;
                if !reaped.get() {
                    log::warn!(
                        "{agent}: still running {}s after SIGTERM; killing its process group",
                        AGENT_STOP_GRACE.as_secs()
                    );
                    crate::proc::signal_group(pid, rustix::process::Signal::KILL);
                }
            })
            .detach();
    }

    /// Ends every agent (TERM to its process group); their tasks reap them.
    pub fn kill_all_agents(&self) {
        let ids: Vec<AgentId> = self.agents.borrow().keys().copied().collect();
        for a in ids {
            self.kill_agent(a);
        }
    }

    pub fn agent_pids(&self) -> Vec<u32> {
        self.agents.borrow().values().map(|a| a.pid).collect()
    }

    /// Closes every socket with "going away".
    pub fn close_all_sockets(&self) {
        let all: Vec<Sender<SocketMsg>> = self
            .sockets
            .borrow()
            .values()
            .map(|s| s.tx.clone())
            .collect();
        for tx in all {
            let _ = tx.try_send(SocketMsg::Close {
                code: 1001,
                reason: "relay shutting down".into(),
            });
        }
    }

    /// The workspace of a project (the default one for an id out of range).
    fn project(&self, p: ProjectId) -> Rc<Workspace> {
        self.projects
            .get(p.0 as usize)
            .map_or_else(|| self.workspace.clone(), |(_, w)| w.clone())
    }

    fn agent_cmd(&self, k: AgentKind) -> Option<&(String, AgentCommand)> {
        self.agent_cmds.get(k.0 as usize)
    }

    /// Hands an event to the ops counters and the notifier.
    fn emit(&self, ev: &crate::core::events::RelayEvent) {
        let sink = self.on_event.borrow().clone();
        if let Some(sink) = sink {
            sink(ev);
        }
    }

    fn spawn_agent(self: &Rc<Self>, agent: AgentId, place: Place) {
        let Some((name, cmd)) = self.agent_cmd(place.agent).cloned() else {
            log::error!("{agent}: no agent is configured for {place}");
            return;
        };
        let cwd = self.project(place.project).root().to_path_buf();
        let proc = match agent::spawn(&cmd, &cwd) {
            Ok(p) => p,
            Err(e) => {
                log::error!("{agent}: could not start `{cmd}` (agent {name}): {e}");
                let relay = self.clone();
                let status = format!("could not start: {e}");
                // Reported from a task so the router sees it after its current step.
                self.ex
                    .spawn(async move { relay.feed(Input::AgentExited { agent, status }) })
                    .detach();
                return;
            }
        };
        self.metrics
            .agents_spawned
            .set(self.metrics.agents_spawned.get() + 1);
        let pid = proc.child.id();
        log::info!(
            "{agent}: started `{cmd}` (pid {pid}): agent {name} in {}",
            cwd.display()
        );
        self.emit(&crate::core::events::RelayEvent::AgentStarted {
            agent,
            name: name.clone(),
        });
        let (tx, rx) = smol::channel::bounded::<Vec<u8>>(AGENT_QUEUE);
        let queued = Rc::new(Cell::new(0usize));
        let reaped = Rc::new(Cell::new(false));
        self.agents.borrow_mut().insert(
            agent,
            AgentHandle {
                tx,
                pid,
                queued: queued.clone(),
                reaped: reaped.clone(),
            },
        );
        let agent::AgentProcess {
            mut child,
            stdin,
            mut stdout,
            stderr,
            group,
        } = proc;
        self.ex
            .spawn(read_stderr(self.clone(), agent, stderr))
            .detach();
        self.ex
            .spawn(write_agent(agent, stdin, rx, queued))
            .detach();
        let relay = self.clone();
        let max = self.max_agent_line;
        self.ex
            .spawn(async move {
                let mut buf = Vec::with_capacity(4096);
                let mut since_yield = 0usize;
                loop {
                    // A fast agent keeps its pipe full, so reads never wait:
                    // yield now and then so the socket writers get to run.
                    since_yield += 1;
                    if since_yield >= AGENT_LINES_PER_YIELD {
                        since_yield = 0;
                        futures_lite::future::yield_now().await;
                    }
                    // A line already whole in the reader's buffer is fed from
                    // there; one split across reads is gathered into `buf`.
                    let chunk = match stdout.fill_buf().await {
                        Ok(chunk) => chunk,
                        Err(e) => {
                            log::warn!("{agent}: reading stdout: {e}");
                            break;
                        }
                    };
                    if let Some(n) = find_byte(b'\n', chunk) {
                        if n <= max {
                            relay.feed(Input::AgentLine {
                                agent,
                                line: &chunk[..n],
                            });
                        } else {
                            too_long(agent, n, max);
                        }
                        stdout.consume(n + 1);
                        continue;
                    }
                    match read_line(&mut stdout, &mut buf, max).await {
                        Ok(LineRead::Line) => relay.feed(Input::AgentLine { agent, line: &buf }),
                        Ok(LineRead::TooLong { size }) => too_long(agent, size, max),
                        Ok(LineRead::Eof) => break,
                        Err(e) => {
                            log::warn!("{agent}: reading stdout: {e}");
                            break;
                        }
                    }
                }
                let mut status = match child.status().await {
                    Ok(s) => s.to_string(),
                    Err(e) => format!("unknown status: {e}"),
                };
                reaped.set(true);
                drop(group);
                let ended_by_relay = relay.agents.borrow_mut().remove(&agent).is_none();
                if ended_by_relay {
                    // kill_agent took it out first: the relay ended it, not a crash.
                    status = format!("{status}, {}", crate::core::events::STOPPED_BY_RELAY);
                }
                // Fed during a clean stop too: the router releases the agent's
                // terminals, and records nothing in any history.
                relay.feed(Input::AgentExited { agent, status });
            })
            .detach();
    }

    /// Live output of agent terminals (`terminal/create`) feeds the router,
    /// which sends it to the viewers of the terminal's session.
    pub fn tap_agent_terminals(self: &Rc<Self>) {
        let (tx, rx) = smol::channel::bounded(crate::workspace::agent_terminal::MAX_TAP_CHUNKS);
        for (_, ws) in &self.projects {
            ws.tap_agent_terminals(tx.clone());
        }
        drop(tx);
        let weak = Rc::downgrade(self);
        self.ex
            .spawn(async move {
                while let Ok(chunk) = rx.recv().await {
                    let Some(relay) = weak.upgrade() else { return };
                    relay.feed(Input::AgentTerminalOutput {
                        terminal: &chunk.terminal_id,
                        session: &chunk.session_id,
                        data: &chunk.data,
                        end: chunk.end,
                    });
                }
            })
            .detach();
    }

    /// Gives the relay its PTY set (`--terminal`); PTY events feed the router.
    pub fn enable_terminals(self: &Rc<Self>) {
        let weak = Rc::downgrade(self);
        let on_event: Rc<dyn Fn(PtyEvent)> = Rc::new(move |ev| {
            let Some(relay) = weak.upgrade() else { return };
            match ev {
                PtyEvent::Output { id, data, flush } => relay.feed(Input::TerminalOutput {
                    id,
                    data: &data,
                    flush,
                }),
                PtyEvent::Exited {
                    id,
                    exit_code,
                    signal,
                } => relay.feed(Input::TerminalExited {
                    id,
                    exit_code,
                    signal,
                }),
                PtyEvent::Failed { id, reason } => {
                    log::warn!(
                        "terminal {id}: could not start: {}",
                        crate::logger::peer(&reason)
                    );
                    relay.feed(Input::TerminalFailed { id, reason });
                }
            }
        });
        let set = PtySet::new(self.ex.clone(), self.cwd.clone(), on_event);
        *self.pty.borrow_mut() = Some(set);
    }

    /// Ends every terminal and reaps its processes.
    pub async fn shutdown_terminals(&self) {
        let set = self.pty.borrow_mut().take();
        if let Some(set) = set {
            set.shutdown().await;
        }
    }

    fn terminal(self: &Rc<Self>, action: TermAction) {
        let Some(set) = self.pty.borrow().clone() else {
            return;
        };
        match action {
            TermAction::Spawn {
                id,
                cols,
                rows,
                cwd,
                command,
                project,
            } => {
                // Always inside the session's project (its root when no cwd
                // is named), resolved and opened beneath it off this thread;
                // the child changes into the opened directory, not the path.
                let jail = self.project(project).jail().clone();
                let cwd = cwd.unwrap_or_else(|| ".".to_owned());
                let dir = move || {
                    crate::workspace::agent_terminal::resolve_dir(&jail, &cwd)
                        .map(|(_, fd)| fd)
                        .map_err(|e| e.message)
                };
                set.open(id, cols, rows, dir, command);
            }
            TermAction::Write { id, data } => set.write(id, data),
            TermAction::Resize { id, cols, rows } => set.resize(id, cols, rows),
            TermAction::Kill { id } => set.kill(id),
            TermAction::ToClient { .. } => {}
        }
    }

    fn persist(&self, op: Persist) {
        let Some(store) = &self.store else { return };
        match op {
            Persist::Frame { session, frame } => {
                store.append_owned(session, frame);
                self.meter.set_store_bytes(store.buffered_bytes());
            }
            Persist::Meta(info) => store.put_meta(info),
            Persist::Sync { session } => store.sync(&session),
            Persist::Reserve { session, upto } => store.reserve(&session, upto),
            Persist::Durable { session, upto } => store.sync_upto(&session, upto),
            Persist::End { session, head } => store.end(&session, head),
            Persist::Delete { session } => store.delete(&session),
        }
    }

    /// Feeds the store's acknowledgements (reservations and fsyncs made
    /// durable, from the writer thread) to the router, until the store closes.
    fn watch_durable(self: &Rc<Self>) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let weak = Rc::downgrade(self);
        self.ex
            .spawn(async move {
                while store.acks_ready().await.is_ok() {
                    let Some(relay) = weak.upgrade() else { return };
                    for (session, ack) in store.take_acks() {
                        relay.feed(Input::Durable {
                            session,
                            reserved: ack.reserved,
                            synced: ack.synced,
                        });
                    }
                }
            })
            .detach();
    }

    /// A clean stop: the router sends nothing more, records every session's
    /// exact end, and agents exiting from here on are not crashes.
    pub fn stop(self: &Rc<Self>) {
        self.router.borrow_mut().stop();
        self.pump();
    }

    /// Reads a replay the ring no longer holds from the transcript, off the
    /// executor thread, and reports it back.
    fn store_replay(
        self: &Rc<Self>,
        socket: SocketId,
        unit: UnitId,
        session: String,
        (after, upto): (u64, u64),
        max_bytes: usize,
    ) {
        let relay = self.clone();
        self.ex
            .spawn(async move {
                let frames = match &relay.store {
                    Some(store) => match store.load_range(&session, after, upto, max_bytes).await {
                        Ok(f) => f,
                        Err(e) => {
                            log::info!("{socket}: replay from the transcript of {session:?}: {e}");
                            None
                        }
                    },
                    None => None,
                };
                relay.feed(Input::StoreReplayed {
                    socket,
                    unit,
                    frames,
                });
            })
            .detach();
    }

    /// Reads a stored transcript off the executor thread and reports it back.
    fn restore(self: &Rc<Self>, unit: UnitId, session: String) {
        let relay = self.clone();
        self.ex
            .spawn(async move {
                let (frames, head, error) = match &relay.store {
                    Some(store) => match store
                        .load(&session, relay.ring_bounds.0, relay.ring_bounds.1)
                        .await
                    {
                        Ok(s) => (s.frames, s.meta.head_seq, None),
                        Err(e) => (Vec::new(), 0, Some(e.to_string())),
                    },
                    None => (Vec::new(), 0, Some("no session store".into())),
                };
                relay.feed(Input::Restored {
                    unit,
                    frames,
                    head,
                    error,
                });
            })
            .detach();
    }

    fn run_job(self: &Rc<Self>, job: JobId, work: crate::core::job::Job, deadline: bool) {
        let relay = self.clone();
        let ws = self.project(work.project);
        let method = work.kind.method();
        let projects =
            (work.kind == crate::core::job::JobKind::Projects).then(|| self.projects.clone());
        self.ex
            .spawn(async move {
                let work = async {
                    match projects {
                        Some(all) => Ok(crate::workspace::projects(&all).await),
                        None => ws.run(work).await,
                    }
                };
                let result = if deadline {
                    futures_lite::future::or(work, async {
                        smol::Timer::after(QUERY_DEADLINE).await;
                        Err(RpcError::other(format!("{method} took longer than {}s and was abandoned; retry or narrow the request", QUERY_DEADLINE.as_secs())))
                    })
                    .await
                } else {
                    work.await
                };
                relay.feed(Input::JobDone { job, result });
            })
            .detach();
    }
}

/// Feeds an agent's stderr, line by line, to the router's agent log.
async fn read_stderr(
    relay: Rc<Relay>,
    agent: AgentId,
    mut stderr: futures_lite::io::BufReader<smol::process::ChildStderr>,
) {
    let mut buf = Vec::with_capacity(256);
    loop {
        match read_line(&mut stderr, &mut buf, STDERR_LINE_BYTES).await {
            Ok(LineRead::Line) => relay.feed(Input::AgentStderr { agent, line: &buf }),
            Ok(LineRead::TooLong { size }) => {
                let line = format!("(a stderr line of {size} bytes was skipped)");
                relay.feed(Input::AgentStderr {
                    agent,
                    line: line.as_bytes(),
                });
            }
            Ok(LineRead::Eof) | Err(_) => break,
        }
    }
}

/// Longest agent stderr line read whole (the agent log keeps less of it).
const STDERR_LINE_BYTES: usize = 64 << 10;

fn too_long(agent: AgentId, size: usize, max: usize) {
    log::warn!("{agent}: skipped a {size}-byte stdout line over the {max}-byte limit");
}

async fn write_agent(
    agent: AgentId,
    mut stdin: smol::process::ChildStdin,
    rx: Receiver<Vec<u8>>,
    queued: Rc<Cell<usize>>,
) {
    while let Ok(line) = rx.recv().await {
        queued.set(queued.get().saturating_sub(line.len()));
        let mut res = stdin.write_all(&line).await;
        if res.is_ok() {
            res = stdin.write_all(b"\n").await;
        }
        if res.is_ok() && rx.is_empty() {
            res = stdin.flush().await;
        }
        if let Err(e) = res {
            log::warn!("{agent}: writing stdin: {e}");
            break;
        }
    }
    let _ = stdin.close().await;
}
