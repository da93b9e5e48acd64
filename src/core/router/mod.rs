//! The router: connection-level protocol state. It owns the sockets and the
//! client each belongs to, the lease, the live units (each a
//! [`crate::core::hub::Hub`]: ring, viewers, gate; and a
//! [`crate::core::driver::Driver`]: agent session, turn, asks), the agent
//! connections and the ids in flight toward them, and the jobs handed to the
//! shell. It routes every inbound line to the unit or agent it is for and
//! performs what the session level decides. Inputs enter through
//! [`Router::handle`]; outputs leave through [`Router::poll_output`]. Time
//! is passed in. Performs no I/O and never reads the clock.

use crate::core::driver::{Ask, AskGone, Phase, Track, Turn, ask_session};
use crate::core::frame::{self, LineLimits, Message, encode};
use crate::core::hub::{Plain, unstamp};
use crate::core::ids::{AgentId, ClientId, JobId, Place, ProjectId, SocketId, UnitId};
use crate::core::job::{Job, JobKind};
use crate::core::lease::{Grant, Lease};
use crate::core::ring::{Frame, ReplayRing};
use crate::core::rpc::{self, RpcError, code};
use crate::core::terminals::{TermAction, TermLimits, TerminalId, TerminalTable};
use crate::core::unit::Unit;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

mod agent_log;
mod agent_side;
mod budget;
mod durable;
pub mod fuzz;
mod places;
mod replay;
mod sessions;
#[cfg(test)]
mod tests;
mod timers;
mod turns;

pub use crate::core::hub::{Gate, MAX_HELD_BYTES, MAX_HELD_FRAMES};
pub use durable::RESERVE_BLOCK;
pub use places::{DEFAULT_AGENT_IDLE_MS, MAX_AGENT_KINDS, MAX_PROJECTS, ProjectCfg};
pub use replay::MAX_STORE_REPLAYS;
pub use sessions::{Persist, SessionMeta, StoredInfo};

/// Device lines waiting for an agent to become ready, across all sockets.
pub const MAX_DEFERRED_LINES: usize = 64;
/// Agent `session/update`s held while their session id is not yet known.
pub const MAX_EARLY_UPDATES: usize = 256;
/// Remembered clients (their last active session).
pub const MAX_CLIENTS: usize = 256;
/// Requests in flight toward one agent.
pub const MAX_AGENT_PENDING: usize = 1024;
/// Jobs (fs, terminal, queries) in flight.
pub const MAX_JOBS: usize = 256;
/// Sessions opened on one shared agent that cannot be told a session ended
/// (no `sessionCapabilities.close`) before it is retired: new sessions go to a
/// fresh agent, and the old one ends once none of its sessions is busy.
pub const MAX_SESSIONS_PER_AGENT: u64 = 512;

/// Default deadline for an agent's answer: long enough for an interactive
/// login (`authenticate` opening a browser).
pub const DEFAULT_AGENT_TIMEOUT_MS: u64 = 300_000;

/// Bounds and switches the router needs; the shell builds it from flags.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub ring_frames: usize,
    pub ring_bytes: usize,
    pub auto_approve: bool,
    pub lease: bool,
    pub agent_per_session: bool,
    pub max_sessions: usize,
    /// Stored sessions remembered for `session/list` and `session/load`.
    pub keep_sessions: usize,
    pub max_asks: usize,
    pub device_limits: LineLimits,
    pub agent_limits: LineLimits,
    pub max_lines_per_message: usize,
    /// The workspace, sent to the agent as each session's `cwd`, when
    /// `projects` is empty.
    pub cwd: String,
    /// The projects (`--workspace NAME=DIR`, the first the default), at most
    /// [`MAX_PROJECTS`]; empty: one project at `cwd`.
    pub projects: Vec<ProjectCfg>,
    /// The agents' names (`--agent NAME=CMD`, the first the default), at
    /// most [`MAX_AGENT_KINDS`]; empty: one agent named `agent`.
    pub agents: Vec<String>,
    /// An agent with no busy session for this long is stopped
    /// (`--agent-idle`); its sessions resume with `session/load` on a fresh
    /// one. 0: never.
    pub agent_idle_ms: u64,
    /// Seed for per-unit epochs (a relay start nonce).
    pub epoch_seed: u64,
    /// Relay capabilities advertised under `_meta.relay` in `initialize`.
    pub relay_meta: Value,
    /// Interactive terminals (`--terminal`); `None` when they are off.
    pub terminals: Option<TermLimits>,
    /// How long a request forwarded to an agent may go unanswered
    /// (`--agent-timeout`); a prompt counts from the session's last frame. 0: no deadline.
    pub agent_timeout_ms: u64,
    /// A store acknowledges reservations and fsyncs ([`Input::Durable`]):
    /// frames of persisted sessions wait for them (see `durable.rs`).
    pub durable: bool,
    /// `--memory-budget` in bytes, shared by every ring (0: none).
    pub memory_budget: usize,
    /// Bytes one socket may have queued before it is dropped as slow
    /// (`--socket-bytes`): a replay is never larger, or it would drop the
    /// device it is for.
    pub socket_bytes: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            ring_frames: crate::core::ring::DEFAULT_RING_FRAMES,
            ring_bytes: crate::core::ring::DEFAULT_RING_BYTES,
            auto_approve: false,
            lease: false,
            agent_per_session: false,
            max_sessions: 16,
            keep_sessions: 200,
            max_asks: 32,
            device_limits: LineLimits::default(),
            agent_limits: LineLimits {
                max_line_bytes: 32 << 20,
                max_depth: 128,
            },
            max_lines_per_message: 256,
            cwd: "/".into(),
            projects: Vec::new(),
            agents: Vec::new(),
            agent_idle_ms: 0,
            epoch_seed: 1,
            relay_meta: json!({}),
            terminals: None,
            agent_timeout_ms: DEFAULT_AGENT_TIMEOUT_MS,
            durable: false,
            memory_budget: crate::core::budget::DEFAULT_MEMORY_BUDGET,
            socket_bytes: usize::MAX,
        }
    }
}

/// Events the shell feeds in.
#[derive(Debug)]
pub enum Input<'a> {
    /// A device socket completed its upgrade.
    SocketOpen {
        socket: SocketId,
        client: ClientId,
        session: Option<String>,
        last_seq: Option<u64>,
        /// `/acp`: plain ACP, no welcome, no `rseq`, no relay extensions.
        plain: bool,
    },
    /// One text message from a device (one or more LF-separated lines).
    SocketText {
        socket: SocketId,
        text: &'a [u8],
    },
    SocketClosed {
        socket: SocketId,
    },
    /// One line from an agent's stdout.
    AgentLine {
        agent: AgentId,
        line: &'a [u8],
    },
    /// One line an agent wrote on stderr (without its newline).
    AgentStderr {
        agent: AgentId,
        line: &'a [u8],
    },
    /// An agent process ended (or failed to start).
    AgentExited {
        agent: AgentId,
        status: String,
    },
    /// A stored transcript asked for with [`Output::Restore`] was read (or not).
    Restored {
        unit: UnitId,
        frames: Vec<Frame>,
        /// The newest `rseq` the store knows of (0 when unknown).
        head: u64,
        error: Option<String>,
    },
    /// A terminal's PTY produced output (valid UTF-8); `flush`: the shell's
    /// frame pacing says the devices get a screen frame now.
    TerminalOutput {
        id: TerminalId,
        data: &'a str,
        flush: bool,
    },
    /// Output of an agent's `terminal/create` command (whole characters),
    /// for the viewers of the session named by the agent's `sessionId`.
    AgentTerminalOutput {
        terminal: &'a str,
        session: &'a str,
        data: &'a str,
        /// The stream offset after `data` (see `_relay/agent_terminal/read`).
        end: u64,
    },
    /// A terminal's process was reaped.
    TerminalExited {
        id: TerminalId,
        exit_code: Option<i32>,
        signal: Option<String>,
    },
    /// A terminal's process could not be started.
    TerminalFailed {
        id: TerminalId,
        reason: String,
    },
    /// A job the router handed out finished.
    JobDone {
        job: JobId,
        result: Result<Value, RpcError>,
    },
    /// The time [`Router::poll_timeout`] named has come (early ticks are harmless).
    Tick,
    /// The store made a session's numbering reservation (up to `reserved`)
    /// and/or its frames (up to `synced`) durable; 0 when not this kind.
    Durable {
        session: String,
        reserved: u64,
        synced: u64,
    },
    /// A transcript replay asked for with [`Output::StoreReplay`] was read:
    /// the frames in its range, oldest first (`None`: not within its bounds).
    StoreReplayed {
        socket: SocketId,
        unit: UnitId,
        frames: Option<Vec<Frame>>,
    },
}

/// Actions for the shell.
#[derive(Debug)]
pub enum Output {
    /// Queue bytes on one socket (one WebSocket text message).
    Send { socket: SocketId, bytes: Frame },
    /// Close a socket with a WebSocket close code and reason.
    Close {
        socket: SocketId,
        code: u16,
        reason: String,
    },
    /// Start an agent process for this id: the configured agent `place.agent`
    /// working in project `place.project`.
    SpawnAgent { agent: AgentId, place: Place },
    /// Write one line (no newline) to an agent's stdin.
    WriteAgent { agent: AgentId, line: Vec<u8> },
    /// End an agent process.
    KillAgent { agent: AgentId },
    /// Write to the session store.
    Persist(Persist),
    /// Start, feed, resize or end a PTY (never `ToClient`: the router sends those).
    Terminal(TermAction),
    /// Read a stored transcript into `unit`; report it back with [`Input::Restored`].
    Restore { unit: UnitId, session: String },
    /// Run a workspace method; report it back with [`Input::JobDone`].
    Job {
        job: JobId,
        work: Job,
        deadline: bool,
    },
    /// Something a notifier or the metrics may want (see [`crate::core::events`]).
    Event(crate::core::events::RelayEvent),
    /// Read the frames numbered `(after, upto]` of a stored session, at most
    /// `max_bytes` of them; report them with [`Input::StoreReplayed`].
    StoreReplay {
        socket: SocketId,
        unit: UnitId,
        session: String,
        after: u64,
        upto: u64,
        max_bytes: usize,
    },
}

#[derive(Debug)]
struct Sock {
    client: ClientId,
    unit: UnitId,
    /// A plain ACP socket (`/acp`).
    plain: bool,
}

#[derive(Debug, PartialEq)]
enum LinkState {
    Initializing,
    Ready,
    Dead,
}

/// What a request the relay sent to an agent was for.
#[derive(Debug)]
enum Pending {
    Initialize,
    OpenSession {
        unit: UnitId,
        load: bool,
    },
    Prompt {
        unit: UnitId,
    },
    /// `session/close` for an agent session the relay ended; the answer is only logged.
    Release,
    /// A device request passed through; its answer goes back to that socket.
    Forward {
        socket: SocketId,
        device_id: Value,
        unit: Option<UnitId>,
        /// What its success changes in the session's cached open answer.
        track: Track,
    },
}

/// A request the relay sent to an agent and is waiting on.
#[derive(Debug)]
struct InFlight {
    what: Pending,
    method: String,
    sent_ms: u64,
}

/// One agent process as the ACP client side sees it.
#[derive(Debug)]
struct Link {
    state: LinkState,
    init: Option<Value>,
    next_id: u64,
    pending: HashMap<u64, InFlight>,
    /// Agent session id → unit.
    sessions: HashMap<String, UnitId>,
    early: VecDeque<(String, Vec<u8>)>,
    /// Terminals the agent created and has not released (released for it when it dies).
    terminals: BTreeSet<String>,
    /// Agent sessions opened on it (`session/new` and `session/load` answers).
    opened: u64,
    /// Takes no new sessions; ended once none of its sessions is busy.
    retired: bool,
    /// Which agent, in which project: its jail and its sessions'.
    place: Place,
    /// When it last sent or was sent a line (for `--agent-idle`).
    active_ms: u64,
}

/// What an agent's workspace job does to the agent's terminal bookkeeping.
#[derive(Debug)]
enum TermJob {
    None,
    Create,
    Release(String),
}

#[derive(Debug)]
enum JobOwner {
    Agent {
        agent: AgentId,
        /// The agent's project: its job ran there (the agent may be gone when it lands).
        project: ProjectId,
        id: Value,
        /// `fs/write_text_file`: the path written, announced on success.
        wrote: Option<String>,
        term: TermJob,
    },
    /// Clean-up the relay does for a dead agent; the result is only logged.
    Cleanup,
    Device {
        socket: SocketId,
        id: Value,
    },
    /// `_relay/apply_edit`: on success every socket hears `_relay/workspace_changed`.
    Edit {
        socket: SocketId,
        id: Value,
        project: ProjectId,
    },
}

/// A device line waiting for an agent (or a restore) before it can run.
#[derive(Debug)]
struct Deferred {
    socket: SocketId,
    line: Vec<u8>,
    /// The agent it waits for, `None` when it waits for a restore; only
    /// that agent's death fails it.
    agent: Option<AgentId>,
}

/// Connection-level state machine of the relay.
pub struct Router {
    cfg: RouterConfig,
    lease: Lease,
    sockets: HashMap<SocketId, Sock>,
    clients: HashMap<ClientId, UnitId>,
    client_order: VecDeque<ClientId>,
    units: BTreeMap<UnitId, Unit>,
    /// Relay session id → unit.
    by_session: HashMap<String, UnitId>,
    links: HashMap<AgentId, Link>,
    /// The shared agent of each (agent, project), at most
    /// [`MAX_AGENT_KINDS`] × [`MAX_PROJECTS`].
    shared: BTreeMap<Place, AgentId>,
    /// Each agent kind's `initialize` answer, cached from its first start
    /// (at most [`MAX_AGENT_KINDS`]).
    inits: BTreeMap<crate::core::ids::AgentKind, Value>,
    default_unit: UnitId,
    deferred: VecDeque<Deferred>,
    /// `session/new` requests waiting for their unit's agent session.
    pending_new: VecDeque<(SocketId, Value, UnitId)>,
    /// `session/load` / `session/resume` answers waiting for the agent's own
    /// load answer (the unit's agent session was not open), within
    /// [`MAX_DEFERRED_LINES`].
    pending_load: VecDeque<(SocketId, Value, UnitId)>,
    jobs: HashMap<JobId, JobOwner>,
    /// Sessions in the store that are not (or no longer) live, by relay session id.
    stored: HashMap<String, StoredInfo>,
    /// What agents said off the protocol (stderr, non-JSON stdout), newest
    /// [`agent_log::MAX_AGENT_LOGS`] agents.
    agent_logs: BTreeMap<AgentId, agent_log::AgentLog>,
    /// Units whose agent just answered `session/load`: their prompts wait
    /// until the agent's history replay has gone quiet (see `timers`).
    replay_hold: HashMap<UnitId, timers::Hold>,
    /// Who waits for a unit's transcript to be restored.
    restoring: HashMap<UnitId, Vec<sessions::Waiter>>,
    terminals: TerminalTable,
    next_unit: u64,
    next_agent: u64,
    next_job: u64,
    now_ms: u64,
    out: VecDeque<Output>,
    /// [`Router::stop`] was called: a clean shutdown is under way.
    stopping: bool,
    /// Socket queues and store buffers, counted by the shell.
    meter: std::rc::Rc<crate::core::budget::MemoryMeter>,
    /// Bytes all rings hold.
    ring_bytes: usize,
    /// Rings at or below this do not re-run the budget (see `budget.rs`).
    budget_floor: usize,
    /// Sockets waiting for a transcript replay: the unit and their `last_seq`
    /// (at most [`MAX_STORE_REPLAYS`]).
    disk_replays: HashMap<SocketId, (UnitId, u64)>,
    /// Session opens refused at `--max-sessions` since the cap last had
    /// room: the first is logged, the count when room returns.
    cap_refused: u64,
}

impl Router {
    /// Builds the router with its default unit; no agent starts until one is needed.
    pub fn new(cfg: RouterConfig, now_ms: u64) -> Self {
        let cfg = places::bounded(cfg);
        let terminals = TerminalTable::new(cfg.terminals.unwrap_or_default());
        let lease = Lease::new(cfg.lease);
        let mut r = Router {
            cfg,
            lease,
            sockets: HashMap::new(),
            clients: HashMap::new(),
            client_order: VecDeque::new(),
            units: BTreeMap::new(),
            by_session: HashMap::new(),
            links: HashMap::new(),
            shared: BTreeMap::new(),
            inits: BTreeMap::new(),
            default_unit: UnitId(0),
            deferred: VecDeque::new(),
            pending_new: VecDeque::new(),
            pending_load: VecDeque::new(),
            jobs: HashMap::new(),
            stored: HashMap::new(),
            restoring: HashMap::new(),
            replay_hold: HashMap::new(),
            agent_logs: BTreeMap::new(),
            terminals,
            next_unit: 0,
            next_agent: 0,
            next_job: 0,
            now_ms,
            out: VecDeque::new(),
            stopping: false,
            meter: Default::default(),
            ring_bytes: 0,
            budget_floor: 0,
            disk_replays: HashMap::new(),
            cap_refused: 0,
        };
        let unit = r.mint_unit();
        r.default_unit = unit;
        // Its agent starts when first needed (an initialize, a claim);
        // its agent session only when a device claims it (an unclaimed
        // session is never opened, stored or listed).
        r
    }

    /// The next action for the shell, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Feeds one event in; drain [`Router::poll_output`] afterwards.
    pub fn handle(&mut self, now_ms: u64, input: Input<'_>) {
        self.now_ms = now_ms;
        match input {
            Input::SocketOpen {
                socket,
                client,
                session,
                last_seq,
                plain,
            } => {
                if plain {
                    self.plain_open(socket, client)
                } else {
                    self.socket_open(socket, client, session, last_seq)
                }
            }
            Input::SocketText { socket, text } => self.socket_text(socket, text),
            Input::SocketClosed { socket } => self.socket_closed(socket),
            Input::AgentLine { agent, line } => self.agent_line(agent, line),
            Input::AgentStderr { agent, line } => {
                self.agent_said(agent, agent_log::Stream::Stderr, line)
            }
            Input::AgentExited { agent, status } => self.agent_exited(agent, status),
            Input::JobDone { job, result } => self.job_done(job, result),
            Input::TerminalOutput { id, data, flush } => {
                let actions = self.terminals.output(id, data, flush);
                self.terminal_actions(actions);
            }
            Input::AgentTerminalOutput {
                terminal,
                session,
                data,
                end,
            } => self.agent_terminal_output(terminal, session, data, end),
            Input::TerminalExited {
                id,
                exit_code,
                signal,
            } => {
                let actions = self.terminals.exited(id, exit_code, signal);
                self.terminal_actions(actions);
            }
            Input::TerminalFailed { id, reason } => {
                let actions = self.terminals.spawn_failed(id, &reason);
                self.terminal_actions(actions);
            }
            Input::Restored {
                unit,
                frames,
                head,
                error,
            } => self.restored(unit, frames, head, error),
            Input::Tick => self.tick(),
            Input::Durable {
                session,
                reserved,
                synced,
            } => self.durable(&session, reserved, synced),
            Input::StoreReplayed {
                socket,
                unit,
                frames,
            } => self.store_replayed(socket, unit, frames),
        }
    }

    /// Live sessions (for `/metrics`), counted as `--max-sessions` counts
    /// them: those a device opened (or is opening) or the store resumed;
    /// the default that no device has opened yet is not counted.
    pub fn live_sessions(&self) -> usize {
        self.live_count()
    }

    pub fn socket_count(&self) -> usize {
        self.sockets.len()
    }

    /// Live sessions for `acp-relay status`.
    pub fn session_summaries(&self) -> Vec<crate::core::events::SessionSummary> {
        let summary = |u: &Unit| crate::core::events::SessionSummary {
            session: u.session_id.clone(),
            title: u.title.clone(),
            agent: u.driver.agent,
            project: self.project_name(u.place.project).to_owned(),
            agent_name: self.agent_name(u.place.agent).to_owned(),
            busy: u.busy(),
            open_asks: u.driver.open_asks(),
            devices: u.hub.viewer_count(),
        };
        self.units.values().map(summary).collect()
    }

    /// Open interactive terminals (for `/metrics`).
    pub fn terminal_count(&self) -> usize {
        self.terminals.len()
    }

    /// Agents the router still considers running.
    pub fn live_agents(&self) -> Vec<AgentId> {
        self.links
            .iter()
            .filter(|(_, l)| l.state != LinkState::Dead)
            .map(|(a, _)| *a)
            .collect()
    }

    // ---- units ----

    // ---- sockets ----

    fn socket_open(
        &mut self,
        socket: SocketId,
        client: ClientId,
        session: Option<String>,
        last_seq: Option<u64>,
    ) {
        let restoring = session
            .as_deref()
            .and_then(|s| self.by_session.get(s))
            .copied()
            .filter(|u| self.units.get(u).is_some_and(|u| u.restoring));
        if let Some(unit) = restoring {
            // Its transcript is still being read: attach once it is.
            self.park(socket, client);
            let waiters = self.restoring.entry(unit).or_default();
            if waiters.len() < MAX_DEFERRED_LINES {
                waiters.push(sessions::Waiter::Attach { socket, last_seq });
            } else {
                log::warn!(
                    "{socket}: too many sockets wait for {unit} to be restored; attaching to the default session"
                );
                self.attach(socket, self.default_unit, None);
            }
            return;
        }
        if let Some(s) = session
            .as_deref()
            .filter(|s| !self.by_session.contains_key(*s) && self.stored.contains_key(*s))
        {
            // A stored session: restore it first, then attach.
            let s = s.to_owned();
            self.park(socket, client);
            let waiter = sessions::Waiter::Attach { socket, last_seq };
            if let Err(e) = self.resume_stored(&s, waiter) {
                // The session cap logs its refusals itself, once a spell.
                if e.code != code::LIMIT {
                    log::warn!(
                        "{socket}: cannot resume session {}: {e}",
                        crate::logger::peer(&s)
                    );
                }
                self.attach(socket, self.default_unit, None);
            }
            return;
        }
        let unit = session
            .as_deref()
            .and_then(|s| self.by_session.get(s).copied())
            .or_else(|| {
                self.clients
                    .get(&client)
                    .copied()
                    .filter(|u| self.units.contains_key(u))
            })
            .unwrap_or(self.default_unit);
        // A last_seq names a position in the session the device asked for;
        // attached elsewhere, it means nothing: send everything, as a reset.
        let mut last_seq = last_seq;
        let mut reset = false;
        if let Some(s) = &session
            && !self.by_session.contains_key(s)
        {
            log::info!(
                "{socket}: session {} is not live or stored; attaching to the default session",
                crate::logger::peer(s)
            );
            reset = last_seq.is_some();
            last_seq = None;
        }
        self.remember_client(&client, unit);
        let scrollback = self.terminals.snapshots_for(&client);
        self.add_socket(socket, client, unit, false);
        self.attach_with(socket, unit, last_seq, reset);
        for bytes in scrollback {
            self.out.push_back(Output::Send { socket, bytes });
        }
    }

    /// Registers a socket of `client`; `unit` is where a relay socket's
    /// session methods go (it views nothing until it is attached).
    fn add_socket(&mut self, socket: SocketId, client: ClientId, unit: UnitId, plain: bool) {
        self.sockets.insert(
            socket,
            Sock {
                client,
                unit,
                plain,
            },
        );
    }

    /// Registers a relay socket that waits for a stored session to be read
    /// before it attaches.
    fn park(&mut self, socket: SocketId, client: ClientId) {
        self.add_socket(socket, client, self.default_unit, false);
    }

    /// A plain ACP socket views nothing until `session/new` or `session/load`.
    fn plain_open(&mut self, socket: SocketId, client: ClientId) {
        let scrollback = self.terminals.snapshots_for(&client);
        self.add_socket(socket, client, self.default_unit, true);
        for bytes in scrollback {
            self.out.push_back(Output::Send { socket, bytes });
        }
    }

    fn remember_client(&mut self, client: &ClientId, unit: UnitId) {
        if self.clients.insert(client.clone(), unit).is_none() {
            self.client_order.push_back(client.clone());
            while self.client_order.len() > MAX_CLIENTS {
                if let Some(old) = self.client_order.pop_front() {
                    if !self.sockets.values().any(|s| s.client == old) {
                        self.clients.remove(&old);
                    } else {
                        self.client_order.push_back(old);
                        break;
                    }
                }
            }
        }
    }

    /// Welcome, replayed gap, open asks; then the socket views the unit live.
    fn attach(&mut self, socket: SocketId, unit: UnitId, last_seq: Option<u64>) {
        self.attach_with(socket, unit, last_seq, false);
    }

    fn attach_with(
        &mut self,
        socket: SocketId,
        unit: UnitId,
        last_seq: Option<u64>,
        force_reset: bool,
    ) {
        if let (false, Some(n)) = (force_reset, last_seq)
            && self.replay_from_store(socket, unit, n)
        {
            return; // attached when the transcript has been read
        }
        self.attach_frames(socket, unit, last_seq, force_reset, Vec::new());
    }

    /// [`Router::attach_with`] after `disk`, the start of the gap read from
    /// the transcript (oldest first, contiguous after `last_seq`).
    fn attach_frames(
        &mut self,
        socket: SocketId,
        unit: UnitId,
        last_seq: Option<u64>,
        force_reset: bool,
        disk: Vec<Frame>,
    ) {
        let plain = self.sockets.get(&socket).is_some_and(|s| s.plain);
        if !self.units.contains_key(&unit) {
            return;
        }
        let from = disk.last().and_then(|f| frame::read_rseq(f)).or(last_seq);
        let mut replay = self.replay_within_budget(unit, from);
        if !disk.is_empty() {
            replay.frames.splice(0..0, disk);
        }
        let Some(u) = self.units.get_mut(&unit) else {
            return;
        };
        if plain {
            // History as ACP `session/update`s only, then the open asks.
            u.hub.add(socket, true);
            let frames: Vec<Frame> = replay
                .frames
                .iter()
                .filter(|f| is_session_update(f))
                .chain(u.driver.ask_frames())
                .map(unstamp)
                .collect();
            for bytes in frames {
                self.out.push_back(Output::Send { socket, bytes });
            }
            return;
        }
        let welcome = u.welcome(replay.reset || force_reset, &self.lease);
        u.hub.add(socket, false);
        let asks: Vec<Frame> = u.driver.ask_frames().cloned().collect();
        let (replayed, reset) = (replay.frames.len(), replay.reset || force_reset);
        self.out
            .push_back(Output::Event(crate::core::events::RelayEvent::Attached {
                replayed,
                reset,
            }));
        self.send_value(socket, &welcome);
        for f in replay.frames.into_iter().chain(asks) {
            self.out.push_back(Output::Send { socket, bytes: f });
        }
    }

    fn detach(&mut self, socket: SocketId) {
        if let Some(s) = self.sockets.get(&socket)
            && let Some(u) = self.units.get_mut(&s.unit)
        {
            u.hub.remove(socket);
        }
    }

    /// Moves a socket's view to another unit and announces it with a fresh welcome.
    fn switch_view(&mut self, socket: SocketId, unit: UnitId, replay: bool) {
        // A plain ACP connection may drive several sessions at once (ACP
        // multiplexes them): it keeps viewing the ones it opened before.
        let plain = self.sockets.get(&socket).is_some_and(|s| s.plain);
        if !plain {
            self.detach(socket);
        }
        let Some(s) = self.sockets.get_mut(&socket) else {
            return;
        };
        s.unit = unit;
        let client = s.client.clone();
        self.remember_client(&client, unit);
        self.clients.insert(client, unit);
        let head = self.units.get(&unit).map(|u| u.hub.ring.head());
        self.attach(socket, unit, if replay { None } else { head });
    }

    fn socket_closed(&mut self, socket: SocketId) {
        if self.sockets.get(&socket).is_some_and(|s| s.plain) {
            for u in self.units.values_mut() {
                u.hub.remove(socket);
            }
        }
        self.detach(socket);
        self.sockets.remove(&socket);
        self.deferred.retain(|d| d.socket != socket);
        self.pending_new.retain(|(s, _, _)| *s != socket);
        self.pending_load.retain(|(s, _, _)| *s != socket);
    }

    fn socket_text(&mut self, socket: SocketId, text: &[u8]) {
        if !self.sockets.contains_key(&socket) {
            return;
        }
        let max = self.cfg.max_lines_per_message;
        for (i, line) in frame::lines(text).enumerate() {
            if i >= max {
                let err = RpcError::new(
                    code::INVALID_REQUEST,
                    format!(
                        "more than {max} lines in one message; the rest were dropped, send them in separate messages"
                    ),
                );
                self.send_error(socket, &Value::Null, &err);
                log::warn!("{socket}: message with more than {max} lines; rest dropped");
                break;
            }
            self.device_line(socket, line);
        }
    }

    // ---- device lines ----

    fn device_line(&mut self, socket: SocketId, line: &[u8]) {
        let msg = match frame::parse_line(line, self.cfg.device_limits) {
            Ok(m) => m,
            Err(e) => {
                let (id, err) = e.to_rpc();
                log::debug!("{socket}: bad line: {e}");
                self.send_error(socket, &id, &err);
                return;
            }
        };
        let Some(client) = self.sockets.get(&socket).map(|s| s.client.clone()) else {
            return;
        };
        match msg {
            Message::Response { id, outcome } => self.device_answer(socket, &client, id, outcome),
            Message::Request { id, method, params } => {
                if let Err(err) =
                    self.device_request(socket, &client, Some(&id), &method, params, line)
                {
                    self.send_error(socket, &id, &err);
                }
            }
            Message::Notification { method, params } => {
                if let Err(err) = self.device_request(socket, &client, None, &method, params, line)
                {
                    let m = crate::logger::peer(&method);
                    log::debug!("{socket}: notification {m} refused: {err}");
                }
            }
        }
    }

    fn check_lease(&mut self, client: &ClientId, method: &str) -> Result<(), RpcError> {
        if !Lease::privileged(method) {
            return Ok(());
        }
        if self.lease.check(client)? == Grant::Claimed {
            self.broadcast_control();
        }
        Ok(())
    }

    fn broadcast_control(&mut self) {
        let note = rpc::notification(
            "_relay/control",
            json!({"lease": self.lease.enabled(), "holder": self.lease.holder().map(|c| c.0.clone()), "controlEpoch": self.lease.epoch()}),
        );
        self.broadcast(&note);
    }

    /// Handles a request (`id` set) or notification. Errors are answered by the caller.
    fn device_request(
        &mut self,
        socket: SocketId,
        client: &ClientId,
        id: Option<&Value>,
        method: &str,
        params: Value,
        line: &[u8],
    ) -> Result<(), RpcError> {
        self.check_lease(client, method)?;
        let reply_id = id.cloned().unwrap_or(Value::Null);
        match method {
            "initialize" => {
                let Some(init) = self.ready_init() else {
                    let unit = self.default_unit;
                    self.ensure_agent(unit);
                    return self.defer(socket, line);
                };
                let result = self.initialize_result(init, socket);
                self.send_result(socket, &reply_id, result);
                Ok(())
            }
            "_relay/take_control" => {
                self.lease.take(client);
                self.broadcast_control();
                let result = json!({"lease": self.lease.enabled(), "holder": client.0, "controlEpoch": self.lease.epoch()});
                self.send_result(socket, &reply_id, result);
                Ok(())
            }
            "session/new" => self.session_new(socket, &reply_id, &params),
            "session/load" | "session/resume" => {
                self.session_load(socket, &reply_id, &params, method == "session/load")
            }
            "session/list" => {
                let list = self.session_list();
                self.send_result(socket, &reply_id, json!({ "sessions": list }));
                Ok(())
            }
            "session/close" => self.session_close(socket, &reply_id, &params),
            "_relay/session/delete" => self.session_delete(socket, &reply_id, &params),
            "session/prompt" => self.session_prompt(socket, client, id, params, line),
            "session/cancel" => {
                self.session_cancel(socket, client, &params)?;
                // A notification in ACP; sent as a request it still gets an answer.
                if id.is_some() {
                    self.send_result(socket, &reply_id, json!({}));
                }
                Ok(())
            }
            "_relay/agent_terminal/read" => {
                // What an agent terminal has printed so far (the live rest
                // comes as _relay/agent_terminal/output).
                let Some(id) = id else { return Ok(()) };
                let tid = params.get("terminalId").cloned().unwrap_or(Value::Null);
                self.device_job(
                    JobOwner::Device {
                        socket,
                        id: id.clone(),
                    },
                    JobKind::TerminalOutput,
                    json!({ "terminalId": tid }),
                )
            }
            "_relay/fs/tree" | "_relay/fs/read" | "_relay/git/status" | "_relay/git/diff"
            | "_relay/projects" => {
                let (Some(id), Some(kind)) = (id, JobKind::from_method(method)) else {
                    return Ok(());
                };
                self.device_job(
                    JobOwner::Device {
                        socket,
                        id: id.clone(),
                    },
                    kind,
                    params,
                )
            }
            "_relay/terminal/open"
            | "_relay/terminal/list"
            | "_relay/terminal/attach"
            | "_relay/terminal/detach"
            | "_relay/terminal/input"
            | "_relay/terminal/resize"
            | "_relay/terminal/close" => self.terminal_request(socket, client, id, method, &params),
            "_relay/agent/log" => {
                let result = self.agent_log_result(socket, &params)?;
                self.send_result(socket, &reply_id, result);
                Ok(())
            }
            "_relay/apply_edit" => {
                let Some(id) = id else { return Ok(()) };
                self.device_job(
                    JobOwner::Edit {
                        socket,
                        id: id.clone(),
                        project: self.socket_project(socket),
                    },
                    JobKind::ApplyEdit,
                    params,
                )
            }
            m if m.starts_with("session/") || m == "authenticate" => {
                self.forward(socket, id, method, params, line)
            }
            _ if id.is_none() => Ok(()),
            m => Err(RpcError::method_not_found(m)),
        }
    }

    fn terminal_request(
        &mut self,
        socket: SocketId,
        client: &ClientId,
        id: Option<&Value>,
        method: &str,
        params: &Value,
    ) -> Result<(), RpcError> {
        if self.cfg.terminals.is_none() {
            return Err(RpcError::new(
                code::METHOD_NOT_FOUND,
                "terminals are off on this relay; start it with --terminal to allow shells",
            ));
        }
        let (result, actions) = match method {
            "_relay/terminal/open" => {
                let (result, mut actions) = self.terminals.open(client, params)?;
                // A shell opens in the project of the session it is opened from.
                let project = self.socket_project(socket);
                for a in &mut actions {
                    if let TermAction::Spawn { project: p, .. } = a {
                        *p = project;
                    }
                }
                (result, actions)
            }
            "_relay/terminal/list" => (self.terminals.list(client), Vec::new()),
            "_relay/terminal/attach" => (self.terminals.attach(client, params)?, Vec::new()),
            "_relay/terminal/detach" => {
                self.terminals.detach(client, params)?;
                (json!({}), Vec::new())
            }
            "_relay/terminal/input" => (json!({}), self.terminals.input(client, params)?),
            "_relay/terminal/resize" => (json!({}), self.terminals.resize(client, params)?),
            _ => (json!({}), self.terminals.close(client, params)?),
        };
        if let Some(id) = id {
            self.send_result(socket, id, result);
        }
        self.terminal_actions(actions);
        Ok(())
    }

    /// `_relay/agent_terminal/output {sessionId, terminalId, data, end}` (live,
    /// not kept in the ring) to the viewers of the session whose agent created
    /// the terminal. `end` orders it against `_relay/agent_terminal/read`'s
    /// backlog, which reaches the device by another path.
    fn agent_terminal_output(&mut self, terminal: &str, session: &str, data: &str, end: u64) {
        let unit = self
            .links
            .values()
            .find(|l| l.terminals.contains(terminal) && l.sessions.contains_key(session))
            .or_else(|| {
                self.links
                    .values()
                    .find(|l| l.sessions.contains_key(session))
            })
            .and_then(|l| l.sessions.get(session).copied());
        let Some(unit) = unit.and_then(|u| self.units.get(&u)) else {
            return;
        };
        let Some(sid) = unit.session_id.as_deref() else {
            return;
        };
        let bytes = Frame::from(rpc::notification(
            "_relay/agent_terminal/output",
            json!({ "sessionId": sid, "terminalId": terminal, "data": data, "end": end }),
        ));
        let out = &mut self.out;
        unit.hub.to_relay_viewers(&bytes, |socket, bytes| {
            out.push_back(Output::Send { socket, bytes })
        });
    }

    /// Performs a terminal table's actions: frames to owners, PTY work to the shell.
    fn terminal_actions(&mut self, actions: Vec<TermAction>) {
        for a in actions {
            match a {
                TermAction::ToClient { client, line } => {
                    let sockets: Vec<SocketId> = self
                        .sockets
                        .iter()
                        .filter(|(_, s)| s.client == client)
                        .map(|(id, _)| *id)
                        .collect();
                    for socket in sockets {
                        self.out.push_back(Output::Send {
                            socket,
                            bytes: line.clone(),
                        });
                    }
                }
                other => self.out.push_back(Output::Terminal(other)),
            }
        }
    }

    /// Hands a device's workspace method to the shell, off the ring, with a deadline.
    fn device_job(
        &mut self,
        owner: JobOwner,
        kind: JobKind,
        params: Value,
    ) -> Result<(), RpcError> {
        if self.jobs.len() >= MAX_JOBS {
            return Err(RpcError::new(
                code::LIMIT,
                format!("{MAX_JOBS} requests are in flight; retry shortly"),
            ));
        }
        self.next_job += 1;
        let job = JobId(self.next_job);
        let project = match &owner {
            JobOwner::Device { socket, .. } => self.socket_project(*socket),
            JobOwner::Edit { project, .. } | JobOwner::Agent { project, .. } => *project,
            JobOwner::Cleanup => ProjectId(0),
        };
        self.jobs.insert(job, owner);
        self.out.push_back(Output::Job {
            job,
            work: Job {
                kind,
                params,
                project,
            },
            deadline: true,
        });
        Ok(())
    }

    /// Runs a workspace method for the relay itself (no one waits for it).
    fn cleanup_job(&mut self, kind: JobKind, params: Value, project: ProjectId) {
        if self.jobs.len() >= MAX_JOBS {
            log::warn!(
                "{MAX_JOBS} jobs in flight; skipping clean-up {}",
                kind.method()
            );
            return;
        }
        self.next_job += 1;
        let job = JobId(self.next_job);
        self.jobs.insert(job, JobOwner::Cleanup);
        self.out.push_back(Output::Job {
            job,
            work: Job {
                kind,
                params,
                project,
            },
            deadline: false,
        });
    }

    /// Sends an unstamped connection-level frame to every socket.
    fn broadcast(&mut self, line: &[u8]) {
        let bytes = Frame::copy_from_slice(line);
        let sockets: Vec<SocketId> = self
            .sockets
            .iter()
            .filter(|(_, s)| !s.plain)
            .map(|(id, _)| *id)
            .collect();
        for socket in sockets {
            self.out.push_back(Output::Send {
                socket,
                bytes: bytes.clone(),
            });
        }
    }

    fn defer(&mut self, socket: SocketId, line: &[u8]) -> Result<(), RpcError> {
        if self.deferred.len() >= MAX_DEFERRED_LINES {
            log::warn!(
                "{socket}: {MAX_DEFERRED_LINES} lines already wait for the agent; refusing another"
            );
            return Err(RpcError::new(
                code::LIMIT,
                "too many requests are waiting for the agent to start; retry in a moment",
            ));
        }
        let agent = self.waits_on(socket, line);
        self.deferred.push_back(Deferred {
            socket,
            line: line.to_vec(),
            agent,
        });
        Ok(())
    }

    /// The agent a deferred line waits for: its session's agent.
    fn waits_on(&self, socket: SocketId, line: &[u8]) -> Option<AgentId> {
        let msg = frame::parse_line(line, self.cfg.device_limits).ok()?;
        let (method, params) = match &msg {
            Message::Request { method, params, .. } | Message::Notification { method, params } => {
                (method.as_str(), params)
            }
            Message::Response { .. } => return None,
        };
        let unit = match method {
            m if m.starts_with("session/") => self.unit_for(socket, params).ok()?,
            "initialize" => self.default_unit,
            _ => self.sockets.get(&socket)?.unit,
        };
        let u = self.units.get(&unit)?;
        if u.restoring { None } else { u.driver.agent }
    }

    /// Re-handles deferred lines after an agent or session became ready.
    fn run_deferred(&mut self) {
        let lines: Vec<Deferred> = self.deferred.drain(..).collect();
        for d in lines {
            self.device_line(d.socket, &d.line);
        }
    }

    /// Fails the deferred lines that wait for `agent` (it died, or refused
    /// to open their session); lines waiting for other agents stay.
    fn fail_deferred(&mut self, agent: AgentId, why: &str) {
        let lines: Vec<Deferred> = self.deferred.drain(..).collect();
        for d in lines {
            if d.agent != Some(agent) {
                self.deferred.push_back(d);
                continue;
            }
            if let Ok(Message::Request { id, .. }) =
                frame::parse_line(&d.line, self.cfg.device_limits)
            {
                self.send_error(d.socket, &id, &RpcError::other(why.to_string()));
            }
        }
    }

    fn initialize_result(&self, mut init: Value, socket: SocketId) -> Value {
        if !init.is_object() {
            init = json!({});
        }
        if !init["agentCapabilities"].is_object() {
            init["agentCapabilities"] = json!({});
        }
        init["agentCapabilities"]["loadSession"] = json!(true);
        if !init["agentCapabilities"]["sessionCapabilities"].is_object() {
            init["agentCapabilities"]["sessionCapabilities"] = json!({});
        }
        init["agentCapabilities"]["sessionCapabilities"]["list"] = json!({});
        init["agentCapabilities"]["sessionCapabilities"]["resume"] = json!({});
        init["agentCapabilities"]["sessionCapabilities"]["close"] = json!({});
        let session = self
            .sockets
            .get(&socket)
            .and_then(|s| self.units.get(&s.unit))
            .and_then(|u| u.session_id.clone());
        let mut relay = self.cfg.relay_meta.clone();
        if !relay.is_object() {
            relay = json!({});
        }
        relay["version"] = json!(env!("CARGO_PKG_VERSION"));
        relay["sessionId"] = json!(session);
        relay["lease"] = json!(self.lease.enabled());
        let (agents, projects) = self.places_meta();
        relay["agents"] = agents;
        relay["projects"] = projects;
        if !init["_meta"].is_object() {
            init["_meta"] = json!({});
        }
        init["_meta"]["relay"] = relay;
        init
    }

    // ---- fan-out ----

    /// Stamps a line into a unit's ring and fans it to every viewer.
    fn write_unit(&mut self, unit: UnitId, line: &[u8]) -> Option<Frame> {
        self.write_unit_for(unit, line, Plain::All)
    }

    fn send_value(&mut self, socket: SocketId, v: &Value) {
        let bytes = serde_json::to_vec(v).unwrap_or_default();
        self.send_bytes(socket, bytes);
    }

    fn send_result(&mut self, socket: SocketId, id: &Value, result: Value) {
        self.send_bytes(socket, rpc::response(id, result));
    }

    fn send_error(&mut self, socket: SocketId, id: &Value, err: &RpcError) {
        self.send_bytes(socket, rpc::error_response(id, err));
    }

    /// Queues a connection-level frame for one socket, unless it has closed
    /// meanwhile (an answer can outlive its requester).
    fn send_bytes(&mut self, socket: SocketId, bytes: Vec<u8>) {
        if self.sockets.contains_key(&socket) {
            self.out.push_back(Output::Send {
                socket,
                bytes: bytes.into(),
            });
        }
    }

    // ---- agent side ----

    fn job_done(&mut self, job: JobId, result: Result<Value, RpcError>) {
        let Some(owner) = self.jobs.remove(&job) else {
            return;
        };
        match owner {
            JobOwner::Cleanup => {
                if let Err(e) = result {
                    log::debug!("{job}: clean-up failed: {e}");
                }
            }
            JobOwner::Agent {
                agent,
                project,
                id,
                wrote,
                term,
            } => {
                let alive = self
                    .links
                    .get(&agent)
                    .is_some_and(|l| l.state != LinkState::Dead);
                match (&term, &result) {
                    (TermJob::Create, Ok(v)) => {
                        if let Some(tid) = v["terminalId"].as_str() {
                            match self.links.get_mut(&agent).filter(|_| alive) {
                                Some(l) => {
                                    l.terminals.insert(tid.to_owned());
                                }
                                // Created for an agent that died meanwhile: release it.
                                None => self.cleanup_job(
                                    JobKind::TerminalRelease,
                                    json!({ "terminalId": tid }),
                                    project,
                                ),
                            }
                        }
                    }
                    (TermJob::Release(tid), _) => {
                        if let Some(l) = self.links.get_mut(&agent) {
                            l.terminals.remove(tid);
                        }
                    }
                    _ => {}
                }
                if let (Some(path), true) = (wrote, result.is_ok()) {
                    let rel = path
                        .strip_prefix(self.project_cwd(project))
                        .map(|p| p.trim_start_matches('/'))
                        .unwrap_or(&path)
                        .to_owned();
                    let name = self.project_name(project).to_owned();
                    self.broadcast(&rpc::notification(
                        "_relay/workspace_changed",
                        json!({ "path": rel, "by": "agent", "project": name }),
                    ));
                }
                if self
                    .links
                    .get(&agent)
                    .is_some_and(|l| l.state != LinkState::Dead)
                {
                    let line = match result {
                        Ok(v) => rpc::response(&id, v),
                        Err(e) => rpc::error_response(&id, &e),
                    };
                    self.out.push_back(Output::WriteAgent { agent, line });
                }
            }
            JobOwner::Device { socket, id } => match result {
                Ok(v) => self.send_result(socket, &id, v),
                Err(e) => self.send_error(socket, &id, &e),
            },
            JobOwner::Edit {
                socket,
                id,
                project,
            } => match result {
                Ok(v) => {
                    let path = v.get("path").cloned().unwrap_or(Value::Null);
                    self.send_result(socket, &id, v);
                    let name = self.project_name(project).to_owned();
                    self.broadcast(&rpc::notification(
                        "_relay/workspace_changed",
                        json!({ "path": path, "project": name }),
                    ));
                }
                Err(e) => self.send_error(socket, &id, &e),
            },
        }
    }
}

/// Whether a stamped frame is an ACP `session/update` notification (the
/// one probe, [`frame::probe_update`]).
fn is_session_update(frame: &Frame) -> bool {
    frame::probe_update(frame).is_some()
}

/// Formats unix milliseconds as an RFC 3339 UTC timestamp.
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for all u64 day counts we meet.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}
