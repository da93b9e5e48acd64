//! The router: connection-level protocol state. It owns the sockets and the
//! client each belongs to, the live units (sessions) and which socket views
//! which, the agent connections and the ids in flight toward them, the lease,
//! and the jobs handed to the shell. Inputs enter through [`Router::handle`];
//! outputs leave through [`Router::poll_output`]. Time is passed in. Performs no
//! I/O and never reads the clock.

use crate::core::frame::{self, LineLimits, Message, encode};
use crate::core::ids::{AgentId, ClientId, JobId, SocketId, UnitId};
use crate::core::lease::{Grant, Lease};
use crate::core::ring::{Frame, ReplayRing};
use crate::core::rpc::{self, RpcError, code};
use crate::core::unit::{Ask, Phase, Turn, Unit, ask_session};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};

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

/// Bounds and switches the router needs; the shell builds it from flags.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub ring_frames: usize,
    pub ring_bytes: usize,
    pub auto_approve: bool,
    pub lease: bool,
    pub agent_per_session: bool,
    pub max_sessions: usize,
    pub max_asks: usize,
    pub device_limits: LineLimits,
    pub agent_limits: LineLimits,
    pub max_lines_per_message: usize,
    /// The workspace, sent to the agent as each session's `cwd`.
    pub cwd: String,
    /// Seed for per-unit epochs (a relay start nonce).
    pub epoch_seed: u64,
    /// Relay capabilities advertised under `_meta.relay` in `initialize`.
    pub relay_meta: Value,
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
            max_asks: 32,
            device_limits: LineLimits::default(),
            agent_limits: LineLimits {
                max_line_bytes: 32 << 20,
                max_depth: 128,
            },
            max_lines_per_message: 256,
            cwd: "/".into(),
            epoch_seed: 1,
            relay_meta: json!({}),
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
    /// An agent process ended (or failed to start).
    AgentExited {
        agent: AgentId,
        status: String,
    },
    /// A job the router handed out finished.
    JobDone {
        job: JobId,
        result: Result<Value, RpcError>,
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
    /// Start an agent process for this id.
    SpawnAgent { agent: AgentId },
    /// Write one line (no newline) to an agent's stdin.
    WriteAgent { agent: AgentId, line: Vec<u8> },
    /// End an agent process.
    KillAgent { agent: AgentId },
    /// Run a workspace method; report it back with [`Input::JobDone`].
    Job {
        job: JobId,
        method: String,
        params: Value,
        deadline: bool,
    },
}

#[derive(Debug)]
struct Sock {
    client: ClientId,
    unit: UnitId,
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
    /// A device request passed through; its answer goes back to that socket.
    Forward {
        socket: SocketId,
        device_id: Value,
        unit: Option<UnitId>,
    },
}

/// One agent process as the ACP client side sees it.
#[derive(Debug)]
struct Link {
    state: LinkState,
    init: Option<Value>,
    next_id: u64,
    pending: HashMap<u64, Pending>,
    /// Agent session id → unit.
    sessions: HashMap<String, UnitId>,
    early: VecDeque<(String, Vec<u8>)>,
}

#[derive(Debug)]
enum JobOwner {
    Agent {
        agent: AgentId,
        id: Value,
    },
    Device {
        socket: SocketId,
        id: Value,
    },
    /// `_relay/apply_edit`: on success every socket hears `_relay/workspace_changed`.
    Edit {
        socket: SocketId,
        id: Value,
    },
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
    shared_link: Option<AgentId>,
    default_unit: UnitId,
    deferred: VecDeque<(SocketId, Vec<u8>)>,
    /// `session/new` requests waiting for their unit's agent session.
    pending_new: VecDeque<(SocketId, Value, UnitId)>,
    jobs: HashMap<JobId, JobOwner>,
    next_unit: u64,
    next_agent: u64,
    next_job: u64,
    now_ms: u64,
    out: VecDeque<Output>,
}

impl Router {
    /// Builds the router with its default unit, whose agent starts at once.
    pub fn new(cfg: RouterConfig, now_ms: u64) -> Self {
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
            shared_link: None,
            default_unit: UnitId(0),
            deferred: VecDeque::new(),
            pending_new: VecDeque::new(),
            jobs: HashMap::new(),
            next_unit: 0,
            next_agent: 0,
            next_job: 0,
            now_ms,
            out: VecDeque::new(),
        };
        let unit = r.mint_unit();
        r.default_unit = unit;
        r.ensure_session(unit);
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
            } => self.socket_open(socket, client, session, last_seq),
            Input::SocketText { socket, text } => self.socket_text(socket, text),
            Input::SocketClosed { socket } => self.socket_closed(socket),
            Input::AgentLine { agent, line } => self.agent_line(agent, line),
            Input::AgentExited { agent, status } => self.agent_exited(agent, status),
            Input::JobDone { job, result } => self.job_done(job, result),
        }
    }

    /// Live session count (for `/metrics`).
    pub fn live_sessions(&self) -> usize {
        self.units.len()
    }

    pub fn socket_count(&self) -> usize {
        self.sockets.len()
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

    fn mint_unit(&mut self) -> UnitId {
        self.next_unit += 1;
        let id = UnitId(self.next_unit);
        let ring = ReplayRing::new(self.cfg.ring_frames, self.cfg.ring_bytes);
        let epoch = self.cfg.epoch_seed.wrapping_add(self.next_unit);
        self.units.insert(id, Unit::new(ring, epoch, self.now_ms));
        id
    }

    /// Makes sure the unit has (or is getting) an agent session.
    fn ensure_session(&mut self, unit: UnitId) {
        let Some(u) = self.units.get(&unit) else {
            return;
        };
        if u.phase != Phase::Idle {
            return;
        }
        let agent = match u.agent.filter(|a| {
            self.links
                .get(a)
                .is_some_and(|l| l.state != LinkState::Dead)
        }) {
            Some(a) => a,
            None => self.agent_for_new_unit(),
        };
        let ready = self
            .links
            .get(&agent)
            .is_some_and(|l| l.state == LinkState::Ready);
        if let Some(u) = self.units.get_mut(&unit) {
            u.agent = Some(agent);
            u.phase = Phase::Opening;
        }
        if ready {
            self.open_session(unit);
        }
    }

    fn agent_for_new_unit(&mut self) -> AgentId {
        if !self.cfg.agent_per_session {
            if let Some(a) = self.shared_link.filter(|a| {
                self.links
                    .get(a)
                    .is_some_and(|l| l.state != LinkState::Dead)
            }) {
                return a;
            }
        }
        let agent = self.spawn_agent();
        if !self.cfg.agent_per_session {
            self.shared_link = Some(agent);
        }
        agent
    }

    fn spawn_agent(&mut self) -> AgentId {
        self.next_agent += 1;
        let agent = AgentId(self.next_agent);
        self.links.insert(
            agent,
            Link {
                state: LinkState::Initializing,
                init: None,
                next_id: 0,
                pending: HashMap::new(),
                sessions: HashMap::new(),
                early: VecDeque::new(),
            },
        );
        self.out.push_back(Output::SpawnAgent { agent });
        let params = json!({
            "protocolVersion": 1,
            "clientCapabilities": { "fs": { "readTextFile": true, "writeTextFile": true }, "terminal": true },
            "clientInfo": { "name": "acp-relay", "version": env!("CARGO_PKG_VERSION") }
        });
        self.agent_request(agent, "initialize", params, Pending::Initialize);
        agent
    }

    /// Sends `session/new` or `session/load` for a unit whose agent is ready.
    fn open_session(&mut self, unit: UnitId) {
        let Some(u) = self.units.get(&unit) else {
            return;
        };
        let Some(agent) = u.agent else { return };
        let can_load = self
            .links
            .get(&agent)
            .and_then(|l| l.init.as_ref())
            .is_some_and(|i| i["agentCapabilities"]["loadSession"] == json!(true));
        let cwd = self.cfg.cwd.clone();
        match u.resume_from.clone() {
            Some(old) if can_load => {
                if let Some(u) = self.units.get_mut(&unit) {
                    u.loading = true;
                }
                if let Some(l) = self.links.get_mut(&agent) {
                    l.sessions.insert(old.clone(), unit);
                }
                self.agent_request(
                    agent,
                    "session/load",
                    json!({"sessionId": old, "cwd": cwd, "mcpServers": []}),
                    Pending::OpenSession { unit, load: true },
                );
            }
            _ => {
                self.agent_request(
                    agent,
                    "session/new",
                    json!({"cwd": cwd, "mcpServers": []}),
                    Pending::OpenSession { unit, load: false },
                );
            }
        }
    }

    fn agent_request(
        &mut self,
        agent: AgentId,
        method: &str,
        params: Value,
        pending: Pending,
    ) -> Option<u64> {
        let link = self.links.get_mut(&agent)?;
        if link.pending.len() >= MAX_AGENT_PENDING {
            log::warn!(
                "{agent}: {MAX_AGENT_PENDING} requests already in flight; dropping {method}"
            );
            return None;
        }
        link.next_id += 1;
        let id = link.next_id;
        link.pending.insert(id, pending);
        self.out.push_back(Output::WriteAgent {
            agent,
            line: rpc::request(&json!(id), method, params),
        });
        Some(id)
    }

    // ---- sockets ----

    fn socket_open(
        &mut self,
        socket: SocketId,
        client: ClientId,
        session: Option<String>,
        last_seq: Option<u64>,
    ) {
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
        if let Some(s) = &session {
            if !self.by_session.contains_key(s) {
                log::info!("{socket}: session {s} is not live; attaching to the default session");
            }
        }
        self.remember_client(&client, unit);
        self.sockets.insert(socket, Sock { client, unit });
        self.attach(socket, unit, last_seq);
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
        let Some(u) = self.units.get_mut(&unit) else {
            return;
        };
        let replay = u.ring.replay_since(last_seq);
        let welcome = json!({
            "type": "relay_welcome",
            "epoch": u.epoch,
            "sessionId": u.session_id,
            "headSeq": u.ring.head(),
            "reset": replay.reset,
            "busy": u.busy(),
            "pendingPermissionIds": u.asks.keys().collect::<Vec<_>>(),
            "lease": self.lease.enabled(),
            "holder": self.lease.holder().map(|c| c.0.clone()),
            "controlEpoch": self.lease.epoch(),
        });
        u.viewers.insert(socket);
        let asks: Vec<Frame> = u.asks.values().map(|a| a.frame.clone()).collect();
        self.send_value(socket, &welcome);
        for f in replay.frames.into_iter().chain(asks) {
            self.out.push_back(Output::Send { socket, bytes: f });
        }
    }

    fn detach(&mut self, socket: SocketId) {
        if let Some(s) = self.sockets.get(&socket) {
            if let Some(u) = self.units.get_mut(&s.unit) {
                u.viewers.remove(&socket);
            }
        }
    }

    /// Moves a socket's view to another unit and announces it with a fresh welcome.
    fn switch_view(&mut self, socket: SocketId, unit: UnitId, replay: bool) {
        self.detach(socket);
        let Some(s) = self.sockets.get_mut(&socket) else {
            return;
        };
        s.unit = unit;
        let client = s.client.clone();
        self.remember_client(&client, unit);
        self.clients.insert(client, unit);
        let head = self.units.get(&unit).map(|u| u.ring.head());
        self.attach(socket, unit, if replay { None } else { head });
    }

    fn socket_closed(&mut self, socket: SocketId) {
        self.detach(socket);
        self.sockets.remove(&socket);
        self.deferred.retain(|(s, _)| *s != socket);
        self.pending_new.retain(|(s, _, _)| *s != socket);
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
                    log::debug!("{socket}: notification {method} refused: {err}");
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
                    self.ensure_session(unit);
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
            "session/new" => self.session_new(socket, &reply_id),
            "session/load" | "session/resume" => {
                self.session_load(socket, &reply_id, &params, method == "session/load")
            }
            "session/list" => {
                let list = self.session_list();
                self.send_result(socket, &reply_id, json!({ "sessions": list }));
                Ok(())
            }
            "session/close" => self.session_close(socket, &reply_id, &params),
            "session/prompt" => self.session_prompt(socket, client, id, params, line),
            "session/cancel" => self.session_cancel(socket, client, &params),
            "_relay/fs/tree" | "_relay/fs/read" | "_relay/git/status" | "_relay/git/diff" => {
                let Some(id) = id else { return Ok(()) };
                self.device_job(
                    JobOwner::Device {
                        socket,
                        id: id.clone(),
                    },
                    method,
                    params,
                )
            }
            "_relay/apply_edit" => {
                let Some(id) = id else { return Ok(()) };
                self.device_job(
                    JobOwner::Edit {
                        socket,
                        id: id.clone(),
                    },
                    method,
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

    /// Hands a device's workspace method to the shell, off the ring, with a deadline.
    fn device_job(&mut self, owner: JobOwner, method: &str, params: Value) -> Result<(), RpcError> {
        if self.jobs.len() >= MAX_JOBS {
            return Err(RpcError::new(
                code::LIMIT,
                format!("{MAX_JOBS} requests are in flight; retry shortly"),
            ));
        }
        self.next_job += 1;
        let job = JobId(self.next_job);
        self.jobs.insert(job, owner);
        self.out.push_back(Output::Job {
            job,
            method: method.to_owned(),
            params,
            deadline: true,
        });
        Ok(())
    }

    /// Sends an unstamped connection-level frame to every socket.
    fn broadcast(&mut self, line: &[u8]) {
        let bytes = Frame::copy_from_slice(line);
        let sockets: Vec<SocketId> = self.sockets.keys().copied().collect();
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
        self.deferred.push_back((socket, line.to_vec()));
        Ok(())
    }

    /// Re-handles deferred lines after an agent or session became ready.
    fn run_deferred(&mut self) {
        let lines: Vec<(SocketId, Vec<u8>)> = self.deferred.drain(..).collect();
        for (socket, line) in lines {
            self.device_line(socket, &line);
        }
    }

    /// Fails deferred lines that wait on units of a dead agent.
    fn fail_deferred(&mut self, why: &str) {
        let lines: Vec<(SocketId, Vec<u8>)> = self.deferred.drain(..).collect();
        for (socket, line) in lines {
            if let Ok(Message::Request { id, .. }) =
                frame::parse_line(&line, self.cfg.device_limits)
            {
                self.send_error(socket, &id, &RpcError::other(why.to_string()));
            }
        }
    }

    fn ready_init(&self) -> Option<Value> {
        let default_agent = self.units.get(&self.default_unit).and_then(|u| u.agent);
        let preferred = self.shared_link.or(default_agent);
        preferred
            .and_then(|a| self.links.get(&a))
            .filter(|l| l.state == LinkState::Ready)
            .or_else(|| self.links.values().find(|l| l.state == LinkState::Ready))
            .and_then(|l| l.init.clone())
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
        if !init["_meta"].is_object() {
            init["_meta"] = json!({});
        }
        init["_meta"]["relay"] = relay;
        init
    }

    fn session_new(&mut self, socket: SocketId, reply_id: &Value) -> Result<(), RpcError> {
        let default = self.default_unit;
        let unit = match self.units.get(&default) {
            Some(u) if !u.claimed => default,
            _ => {
                if self.units.len() >= self.cfg.max_sessions {
                    return Err(RpcError::new(
                        code::LIMIT,
                        format!(
                            "{} sessions are live, the most allowed; close one with session/close first",
                            self.cfg.max_sessions
                        ),
                    ));
                }
                let unit = self.mint_unit();
                if let Some(u) = self.units.get_mut(&unit) {
                    u.claimed = true;
                }
                unit
            }
        };
        if let Some(u) = self.units.get_mut(&unit) {
            u.claimed = true;
        }
        self.ensure_session(unit);
        match self
            .units
            .get(&unit)
            .map(|u| (u.phase, u.session_id.clone()))
        {
            Some((Phase::Ready, Some(sid))) => {
                self.switch_view(socket, unit, true);
                self.send_result(socket, reply_id, json!({"sessionId": sid}));
                Ok(())
            }
            _ => {
                if self.pending_new.len() >= MAX_DEFERRED_LINES {
                    return Err(RpcError::new(
                        code::LIMIT,
                        "too many sessions are opening at once; retry in a moment",
                    ));
                }
                self.pending_new.push_back((socket, reply_id.clone(), unit));
                Ok(())
            }
        }
    }

    fn answer_pending_new(&mut self, unit: UnitId) {
        let (mine, rest): (Vec<_>, Vec<_>) =
            self.pending_new.drain(..).partition(|(_, _, u)| *u == unit);
        self.pending_new = rest.into();
        let sid = self.units.get(&unit).and_then(|u| u.session_id.clone());
        for (socket, id, _) in mine {
            if self.sockets.contains_key(&socket) {
                self.switch_view(socket, unit, true);
                self.send_result(socket, &id, json!({"sessionId": sid}));
            }
        }
    }

    fn fail_pending_new(&mut self, unit: UnitId, why: &str) {
        let (mine, rest): (Vec<_>, Vec<_>) =
            self.pending_new.drain(..).partition(|(_, _, u)| *u == unit);
        self.pending_new = rest.into();
        for (socket, id, _) in mine {
            self.send_error(socket, &id, &RpcError::other(why.to_string()));
        }
    }

    fn session_load(
        &mut self,
        socket: SocketId,
        reply_id: &Value,
        params: &Value,
        replay: bool,
    ) -> Result<(), RpcError> {
        let sid = params["sessionId"].as_str().ok_or_else(|| {
            RpcError::invalid_params("session/load needs params.sessionId (a string)")
        })?;
        let Some(unit) = self.by_session.get(sid).copied() else {
            return Err(RpcError::invalid_params(format!(
                "unknown session '{sid}'; call session/list for the sessions this relay knows"
            )));
        };
        self.switch_view(socket, unit, replay);
        self.send_result(socket, reply_id, json!({}));
        Ok(())
    }

    fn session_list(&self) -> Vec<Value> {
        self.units
            .values()
            .filter_map(|u| {
                let sid = u.session_id.as_ref()?;
                Some(json!({
                    "sessionId": sid,
                    "cwd": self.cfg.cwd,
                    "title": u.title,
                    "updatedAt": iso8601(u.updated_ms),
                    "_meta": {"relay": {"busy": u.busy(), "live": true}}
                }))
            })
            .collect()
    }

    fn session_close(
        &mut self,
        socket: SocketId,
        reply_id: &Value,
        params: &Value,
    ) -> Result<(), RpcError> {
        let unit = self.unit_for(socket, params)?;
        if unit == self.default_unit {
            return Err(RpcError::invalid_params(
                "the default session stays open; close another session",
            ));
        }
        self.end_unit(unit, "closed by a device");
        self.send_result(socket, reply_id, json!({}));
        Ok(())
    }

    /// Ends a live unit: viewers move to the default session, its agent session ends.
    fn end_unit(&mut self, unit: UnitId, why: &str) {
        let Some(u) = self.units.remove(&unit) else {
            return;
        };
        log::info!("{unit}: session {:?} ended ({why})", u.session_id);
        if let Some(sid) = &u.session_id {
            self.by_session.remove(sid);
        }
        if let (Some(agent), Some(asid)) = (u.agent, &u.agent_session) {
            if let Some(l) = self.links.get_mut(&agent) {
                l.sessions.remove(asid);
            }
            if self.cfg.agent_per_session {
                self.out.push_back(Output::KillAgent { agent });
            }
        }
        let default = self.default_unit;
        for socket in u.viewers {
            self.switch_view(socket, default, true);
        }
    }

    /// The unit a session method names (`params.sessionId`), else the socket's view.
    fn unit_for(&self, socket: SocketId, params: &Value) -> Result<UnitId, RpcError> {
        match params.get("sessionId") {
            Some(Value::String(sid)) => self.by_session.get(sid).copied().ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "unknown session '{sid}'; call session/list, then session/load it first"
                ))
            }),
            Some(Value::Null) | None => self
                .sockets
                .get(&socket)
                .map(|s| s.unit)
                .ok_or_else(|| RpcError::other("this socket is closing")),
            Some(_) => Err(RpcError::invalid_params(
                "params.sessionId must be a string",
            )),
        }
    }

    fn session_prompt(
        &mut self,
        socket: SocketId,
        client: &ClientId,
        id: Option<&Value>,
        mut params: Value,
        line: &[u8],
    ) -> Result<(), RpcError> {
        let Some(id) = id else { return Ok(()) };
        let unit = self.unit_for(socket, &params)?;
        if !params["prompt"].is_array() {
            return Err(RpcError::invalid_params(
                "session/prompt needs params.prompt, an array of content blocks",
            ));
        }
        let Some(u) = self.units.get(&unit) else {
            return Err(RpcError::other("the session ended"));
        };
        if let Some(t) = &u.turn {
            return Err(RpcError::new(
                code::BUSY,
                format!(
                    "session is busy with a turn from device '{}'; wait for it to end or send session/cancel",
                    t.client
                ),
            ));
        }
        if u.phase != Phase::Ready {
            self.ensure_session(unit);
            return self.defer(socket, line);
        }
        let (Some(agent), Some(asid), sid) =
            (u.agent, u.agent_session.clone(), u.session_id.clone())
        else {
            return Err(RpcError::other(
                "the session has no agent; retry the prompt",
            ));
        };
        params["sessionId"] = json!(asid);
        let blocks: Vec<Value> = params["prompt"].as_array().cloned().unwrap_or_default();
        let Some(req) =
            self.agent_request(agent, "session/prompt", params, Pending::Prompt { unit })
        else {
            return Err(RpcError::new(
                code::LIMIT,
                "the agent has too many requests in flight; retry shortly",
            ));
        };
        let title: String = blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join(" ");
        if let Some(u) = self.units.get_mut(&unit) {
            u.turn = Some(Turn {
                client: client.clone(),
                device_id: id.clone(),
                agent_req: req,
            });
            if u.title.is_none() && !title.trim().is_empty() {
                u.title = Some(title.trim().chars().take(80).collect());
            }
        }
        for block in blocks {
            let update = json!({
                "sessionId": sid,
                "update": {"sessionUpdate": "user_message_chunk", "content": block},
                "_meta": {"relay": {"from": client.0, "promptId": id}}
            });
            self.write_unit(unit, &rpc::notification("session/update", update));
        }
        Ok(())
    }

    fn session_cancel(
        &mut self,
        socket: SocketId,
        client: &ClientId,
        params: &Value,
    ) -> Result<(), RpcError> {
        let unit = self.unit_for(socket, params)?;
        let Some(u) = self.units.get(&unit) else {
            return Ok(());
        };
        if let (Some(agent), Some(asid), Phase::Ready) = (u.agent, u.agent_session.clone(), u.phase)
        {
            let mut p = params.clone();
            if !p.is_object() {
                p = json!({});
            }
            p["sessionId"] = json!(asid);
            self.out.push_back(Output::WriteAgent {
                agent,
                line: rpc::notification("session/cancel", p),
            });
        }
        self.settle_all(unit, json!({"outcome": "cancelled"}), &client.0, true);
        Ok(())
    }

    /// Passes a device request to the unit's agent and maps the id back.
    fn forward(
        &mut self,
        socket: SocketId,
        id: Option<&Value>,
        method: &str,
        mut params: Value,
        line: &[u8],
    ) -> Result<(), RpcError> {
        let unit = if method.starts_with("session/") {
            Some(self.unit_for(socket, &params)?)
        } else {
            None
        };
        let target = unit.or_else(|| self.sockets.get(&socket).map(|s| s.unit));
        let Some(target) = target else { return Ok(()) };
        let Some(u) = self.units.get(&target) else {
            return Err(RpcError::other("the session ended"));
        };
        if u.phase != Phase::Ready {
            self.ensure_session(target);
            return self.defer(socket, line);
        }
        let Some(agent) = u.agent else {
            return Err(RpcError::other("the session has no agent; retry"));
        };
        if unit.is_some() && params.get("sessionId").is_some() {
            params["sessionId"] = json!(u.agent_session);
        }
        match id {
            Some(id) => {
                let pending = Pending::Forward {
                    socket,
                    device_id: id.clone(),
                    unit,
                };
                if self.agent_request(agent, method, params, pending).is_none() {
                    return Err(RpcError::new(
                        code::LIMIT,
                        "the agent has too many requests in flight; retry shortly",
                    ));
                }
            }
            None => self.out.push_back(Output::WriteAgent {
                agent,
                line: rpc::notification(method, params),
            }),
        }
        Ok(())
    }

    /// A device's answer to an ask the relay fanned.
    fn device_answer(
        &mut self,
        socket: SocketId,
        client: &ClientId,
        id: Value,
        outcome: Result<Value, Value>,
    ) {
        let Some(ask_id) = id.as_str().map(str::to_owned) else {
            log::info!("{socket}: response to id {id} that the relay never issued; ignored");
            return;
        };
        let Some(unit) = ask_session(&ask_id).and_then(|s| self.by_session.get(s).copied()) else {
            log::info!("{socket}: response to unknown id {ask_id}; ignored");
            return;
        };
        if let Err(err) = self.check_lease(client, "session/request_permission") {
            self.send_error(socket, &id, &err);
            return;
        }
        let Some(u) = self.units.get_mut(&unit) else {
            return;
        };
        let Some(ask) = u.asks.remove(&ask_id) else {
            let by = u.settled_by(&ask_id).map(str::to_owned);
            match by {
                Some(by) => {
                    log::info!(
                        "{socket}: late answer to {ask_id}, already settled by {by}; ignored"
                    );
                    let err = RpcError::other(format!(
                        "this ask was already answered by '{by}'; your answer was not sent"
                    ));
                    self.send_error(socket, &id, &err);
                }
                None => log::info!("{socket}: answer to unknown ask {ask_id}; ignored"),
            }
            return;
        };
        let summary = match &outcome {
            Ok(r) => r.get("outcome").cloned().unwrap_or_else(|| r.clone()),
            Err(e) => json!({"outcome": "error", "error": e}),
        };
        let line = encode(&Message::Response {
            id: ask.agent_id.clone(),
            outcome,
        });
        self.out.push_back(Output::WriteAgent {
            agent: ask.agent,
            line,
        });
        self.resolved(unit, &ask_id, summary, &client.0);
    }

    /// Records and fans the settlement of an ask.
    fn resolved(&mut self, unit: UnitId, ask_id: &str, outcome: Value, by: &str) {
        if let Some(u) = self.units.get_mut(&unit) {
            u.remember_settled(ask_id.to_owned(), by.to_owned());
        }
        let note = rpc::notification(
            "_relay/ask_resolved",
            json!({"id": ask_id, "outcome": outcome, "by": by}),
        );
        self.write_unit(unit, &note);
    }

    /// Settles every open ask of a unit (cancel, turn end, agent exit).
    fn settle_all(&mut self, unit: UnitId, outcome: Value, by: &str, answer_agent: bool) {
        let Some(u) = self.units.get_mut(&unit) else {
            return;
        };
        let asks: Vec<(String, Ask)> = std::mem::take(&mut u.asks).into_iter().collect();
        for (ask_id, ask) in asks {
            if answer_agent {
                let line = rpc::response(&ask.agent_id, json!({"outcome": outcome}));
                self.out.push_back(Output::WriteAgent {
                    agent: ask.agent,
                    line,
                });
            }
            self.resolved(unit, &ask_id, outcome.clone(), by);
        }
    }

    // ---- fan-out ----

    /// Stamps a line into a unit's ring and fans it to every viewer.
    fn write_unit(&mut self, unit: UnitId, line: &[u8]) -> Option<Frame> {
        let u = self.units.get_mut(&unit)?;
        let frame = u.ring.push(line)?;
        u.updated_ms = self.now_ms;
        for &socket in &u.viewers {
            self.out.push_back(Output::Send {
                socket,
                bytes: frame.clone(),
            });
        }
        Some(frame)
    }

    fn send_value(&mut self, socket: SocketId, v: &Value) {
        let bytes = serde_json::to_vec(v).unwrap_or_default();
        self.out.push_back(Output::Send {
            socket,
            bytes: bytes.into(),
        });
    }

    fn send_result(&mut self, socket: SocketId, id: &Value, result: Value) {
        self.out.push_back(Output::Send {
            socket,
            bytes: rpc::response(id, result).into(),
        });
    }

    fn send_error(&mut self, socket: SocketId, id: &Value, err: &RpcError) {
        self.out.push_back(Output::Send {
            socket,
            bytes: rpc::error_response(id, err).into(),
        });
    }

    // ---- agent side ----

    fn agent_line(&mut self, agent: AgentId, line: &[u8]) {
        if !self.links.contains_key(&agent) {
            return;
        }
        let msg = match frame::parse_line(line, self.cfg.agent_limits) {
            Ok(m) => m,
            Err(e) => {
                log::info!("{agent}: skipped a stdout line that is not JSON-RPC ({e})");
                return;
            }
        };
        match msg {
            Message::Response { id, outcome } => self.agent_answer(agent, id, outcome),
            Message::Request { id, method, params } => {
                self.agent_request_in(agent, id, &method, params)
            }
            Message::Notification { method, params } => {
                if method == "session/update" {
                    self.agent_update(agent, &params, line);
                } else {
                    log::debug!("{agent}: notification {method} ignored");
                }
            }
        }
    }

    fn agent_update(&mut self, agent: AgentId, params: &Value, line: &[u8]) {
        let Some(asid) = params["sessionId"].as_str() else {
            log::info!("{agent}: session/update without sessionId; dropped");
            return;
        };
        let Some(link) = self.links.get_mut(&agent) else {
            return;
        };
        let Some(unit) = link.sessions.get(asid).copied() else {
            if link.early.len() >= MAX_EARLY_UPDATES {
                log::warn!(
                    "{agent}: {MAX_EARLY_UPDATES} updates for unknown sessions held; dropping one for {asid}"
                );
                link.early.pop_front();
            }
            link.early.push_back((asid.to_owned(), line.to_vec()));
            return;
        };
        self.unit_update(unit, asid, params, line);
    }

    fn unit_update(&mut self, unit: UnitId, asid: &str, params: &Value, line: &[u8]) {
        let Some(u) = self.units.get(&unit) else {
            return;
        };
        if u.loading {
            return; // history the agent replays for session/load: the ring already has it
        }
        match u.session_id.clone() {
            Some(sid) if sid == asid => {
                self.write_unit(unit, line);
            }
            Some(sid) => {
                let mut p = params.clone();
                p["sessionId"] = json!(sid);
                self.write_unit(unit, &rpc::notification("session/update", p));
            }
            None => {
                self.write_unit(unit, line);
            }
        }
    }

    fn agent_request_in(&mut self, agent: AgentId, id: Value, method: &str, params: Value) {
        match method {
            "session/request_permission" | "elicitation/create" => {
                self.agent_ask(agent, id, method, params)
            }
            m if m.starts_with("fs/") || m.starts_with("terminal/") => {
                if self.jobs.len() >= MAX_JOBS {
                    let err = RpcError::new(
                        code::LIMIT,
                        format!("the relay has {MAX_JOBS} requests in flight; retry"),
                    );
                    self.out.push_back(Output::WriteAgent {
                        agent,
                        line: rpc::error_response(&id, &err),
                    });
                    return;
                }
                self.next_job += 1;
                let job = JobId(self.next_job);
                self.jobs.insert(job, JobOwner::Agent { agent, id });
                self.out.push_back(Output::Job {
                    job,
                    method: method.to_owned(),
                    params,
                    deadline: false,
                });
            }
            m => {
                log::info!(
                    "{agent}: agent request {m} is not handled by the relay; answered -32601"
                );
                self.out.push_back(Output::WriteAgent {
                    agent,
                    line: rpc::error_response(&id, &RpcError::method_not_found(m)),
                });
            }
        }
    }

    fn agent_ask(&mut self, agent: AgentId, id: Value, method: &str, mut params: Value) {
        let unit = params["sessionId"]
            .as_str()
            .and_then(|s| self.links.get(&agent)?.sessions.get(s).copied());
        let Some(unit) = unit else {
            log::info!("{agent}: {method} for an unknown session; answered cancelled");
            self.out.push_back(Output::WriteAgent {
                agent,
                line: rpc::response(&id, json!({"outcome": {"outcome": "cancelled"}})),
            });
            return;
        };
        if self.cfg.auto_approve && method == "session/request_permission" {
            let options = params["options"].as_array().cloned().unwrap_or_default();
            let pick = options
                .iter()
                .find(|o| o["kind"] == "allow_once" || o["kind"] == "allow_always")
                .or(options.first())
                .and_then(|o| o["optionId"].as_str().map(str::to_owned));
            let outcome = match pick {
                Some(opt) => json!({"outcome": "selected", "optionId": opt}),
                None => json!({"outcome": "cancelled"}),
            };
            self.out.push_back(Output::WriteAgent {
                agent,
                line: rpc::response(&id, json!({"outcome": outcome})),
            });
            let Some(u) = self.units.get_mut(&unit) else {
                return;
            };
            let ask_id = u.mint_ask_id();
            self.resolved(unit, &ask_id, outcome, "auto-approve");
            return;
        }
        let Some(u) = self.units.get_mut(&unit) else {
            return;
        };
        if u.asks.len() >= self.cfg.max_asks {
            log::warn!(
                "{unit}: {} asks already open; answering a new one cancelled",
                self.cfg.max_asks
            );
            self.out.push_back(Output::WriteAgent {
                agent,
                line: rpc::response(&id, json!({"outcome": {"outcome": "cancelled"}})),
            });
            return;
        }
        let ask_id = u.mint_ask_id();
        if let Some(sid) = &u.session_id {
            params["sessionId"] = json!(sid);
        }
        let line = encode(&Message::Request {
            id: json!(ask_id),
            method: method.to_owned(),
            params,
        });
        if let Some(frame) = self.write_unit(unit, &line) {
            if let Some(u) = self.units.get_mut(&unit) {
                u.asks.insert(
                    ask_id,
                    Ask {
                        agent_id: id,
                        agent,
                        frame,
                    },
                );
            }
        }
    }

    fn agent_answer(&mut self, agent: AgentId, id: Value, outcome: Result<Value, Value>) {
        let Some(n) = id.as_u64() else {
            log::info!("{agent}: response to id {id} the relay never issued; ignored");
            return;
        };
        let Some(pending) = self
            .links
            .get_mut(&agent)
            .and_then(|l| l.pending.remove(&n))
        else {
            log::info!("{agent}: response to id {n} the relay never issued; ignored");
            return;
        };
        match pending {
            Pending::Initialize => match outcome {
                Ok(init) => {
                    if let Some(l) = self.links.get_mut(&agent) {
                        l.state = LinkState::Ready;
                        l.init = Some(init);
                    }
                    let waiting: Vec<UnitId> = self
                        .units
                        .iter()
                        .filter(|(_, u)| u.agent == Some(agent) && u.phase == Phase::Opening)
                        .map(|(id, _)| *id)
                        .collect();
                    for unit in waiting {
                        self.open_session(unit);
                    }
                    self.run_deferred();
                }
                Err(e) => {
                    log::error!("{agent}: initialize failed: {e}");
                    self.out.push_back(Output::KillAgent { agent });
                }
            },
            Pending::OpenSession { unit, load } => self.session_opened(agent, unit, load, outcome),
            Pending::Prompt { unit } => {
                let Some(u) = self.units.get_mut(&unit) else {
                    return;
                };
                let Some(turn) = u.turn.take() else { return };
                let line = encode(&Message::Response {
                    id: turn.device_id,
                    outcome,
                });
                self.write_unit(unit, &line);
                self.settle_all(unit, json!({"outcome": "cancelled"}), "turn-end", true);
            }
            Pending::Forward {
                socket,
                device_id,
                unit,
            } => {
                let outcome = match (outcome, unit) {
                    (Ok(mut r), Some(unit)) => {
                        let (sid, asid) = self
                            .units
                            .get(&unit)
                            .map(|u| (u.session_id.clone(), u.agent_session.clone()))
                            .unwrap_or_default();
                        if r.get("sessionId").is_some()
                            && r["sessionId"].as_str() == asid.as_deref()
                        {
                            r["sessionId"] = json!(sid);
                        }
                        Ok(r)
                    }
                    (o, _) => o,
                };
                let line = encode(&Message::Response {
                    id: device_id,
                    outcome,
                });
                self.out.push_back(Output::Send {
                    socket,
                    bytes: line.into(),
                });
            }
        }
    }

    fn session_opened(
        &mut self,
        agent: AgentId,
        unit: UnitId,
        load: bool,
        outcome: Result<Value, Value>,
    ) {
        let Some(u) = self.units.get_mut(&unit) else {
            return;
        };
        u.loading = false;
        let asid = match outcome {
            Ok(_) if load => u.resume_from.clone(),
            Ok(r) => r["sessionId"].as_str().map(str::to_owned),
            Err(e) => {
                if load {
                    log::info!(
                        "{unit}: agent refused session/load ({e}); starting a fresh agent session"
                    );
                    let old = u.resume_from.take();
                    if let (Some(old), Some(l)) = (old, self.links.get_mut(&agent)) {
                        l.sessions.remove(&old);
                    }
                    self.open_session(unit);
                    return;
                }
                log::error!("{unit}: agent refused session/new: {e}");
                None
            }
        };
        let Some(asid) = asid else {
            u.phase = Phase::Idle;
            self.fail_deferred(
                "the agent could not open a session; check the agent's log and retry",
            );
            return;
        };
        u.agent_session = Some(asid.clone());
        u.resume_from = None;
        u.phase = Phase::Ready;
        if u.session_id.is_none() {
            u.session_id = Some(asid.clone());
            self.by_session.insert(asid.clone(), unit);
        }
        let early: Vec<(String, Vec<u8>)> = match self.links.get_mut(&agent) {
            Some(l) => {
                l.sessions.insert(asid.clone(), unit);
                let (mine, rest): (Vec<_>, Vec<_>) =
                    l.early.drain(..).partition(|(s, _)| *s == asid);
                l.early = rest.into();
                mine
            }
            None => Vec::new(),
        };
        for (_, line) in early {
            if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                self.unit_update(unit, &asid, &v["params"], &line);
            }
        }
        self.answer_pending_new(unit);
        self.run_deferred();
    }

    fn agent_exited(&mut self, agent: AgentId, status: String) {
        let Some(link) = self.links.get_mut(&agent) else {
            return;
        };
        let was_ready = link.state == LinkState::Ready;
        link.state = LinkState::Dead;
        let pending: Vec<Pending> = link.pending.drain().map(|(_, p)| p).collect();
        log::warn!("{agent}: agent exited ({status})");
        let why =
            format!("the agent exited ({status}); send the prompt again to start a fresh agent");
        for p in pending {
            if let Pending::Forward {
                socket, device_id, ..
            } = p
            {
                self.send_error(socket, &device_id, &RpcError::other(why.clone()));
            }
        }
        let units: Vec<UnitId> = self
            .units
            .iter()
            .filter(|(_, u)| u.agent == Some(agent))
            .map(|(id, _)| *id)
            .collect();
        for unit in units {
            let Some(u) = self.units.get_mut(&unit) else {
                continue;
            };
            let turn = u.turn.take();
            u.resume_from = u.agent_session.take().or(u.resume_from.take());
            u.agent = None;
            u.phase = Phase::Idle;
            u.loading = false;
            let sid = u.session_id.clone();
            self.settle_all(unit, json!({"outcome": "cancelled"}), "agent-exit", false);
            self.write_unit(
                unit,
                &rpc::notification(
                    "_relay/agent_exited",
                    json!({"sessionId": sid, "status": status}),
                ),
            );
            if let Some(turn) = turn {
                let err = RpcError::other(why.clone());
                self.write_unit(unit, &rpc::error_response(&turn.device_id, &err));
            }
            self.fail_pending_new(unit, &why);
        }
        if self.shared_link == Some(agent) {
            self.shared_link = None;
        }
        self.links.remove(&agent);
        let jobs: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, o)| matches!(o, JobOwner::Agent { agent: a, .. } if *a == agent))
            .map(|(j, _)| *j)
            .collect();
        for j in jobs {
            self.jobs.remove(&j);
        }
        if !was_ready {
            self.fail_deferred(&format!(
                "the agent failed to start ({status}); check --agent and the log"
            ));
        }
    }

    fn job_done(&mut self, job: JobId, result: Result<Value, RpcError>) {
        let Some(owner) = self.jobs.remove(&job) else {
            return;
        };
        match owner {
            JobOwner::Agent { agent, id } => {
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
            JobOwner::Edit { socket, id } => match result {
                Ok(v) => {
                    let path = v.get("path").cloned().unwrap_or(Value::Null);
                    self.send_result(socket, &id, v);
                    self.broadcast(&rpc::notification(
                        "_relay/workspace_changed",
                        json!({ "path": path }),
                    ));
                }
                Err(e) => self.send_error(socket, &id, &e),
            },
        }
    }
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
