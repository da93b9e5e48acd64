//! The [`Sim`]: a router with every output collected where a test can read
//! it. Sockets and agents keep what was sent to them until a test takes it;
//! the fake store answers `Restore` from what was persisted (all store
//! handling is in [`Sim::store_output`], so store acks can be fed back from
//! one place); a `Send` to a socket that is not open is recorded as a
//! violation and fails the test when the `Sim` is dropped.

use super::super::timers;
use super::super::*;
use crate::core::driver::SETTLED_MEMORY;

/// What the fake store holds.
#[derive(Debug, Default)]
pub struct FakeStore {
    pub transcripts: HashMap<String, Vec<Frame>>,
    pub meta: HashMap<String, StoredInfo>,
    pub syncs: Vec<String>,
    /// Durability acks not yet fed back (session, reserved, synced).
    pub acks: VecDeque<(String, u64, u64)>,
    /// Numbering ends recorded by the router (session -> head).
    pub ends: HashMap<String, u64>,
    /// Hold acks instead of feeding them back at once (a slow disk).
    pub hold_acks: bool,
}

/// One socket as the device sees it.
#[derive(Debug, Default)]
pub struct FakeSocket {
    pub open: bool,
    pub plain: bool,
    /// Frames received and not yet taken.
    pub inbox: VecDeque<Frame>,
    /// Every frame ever received (for invariants).
    pub all: Vec<Frame>,
    pub closed_with: Option<(u16, String)>,
}

/// A request the router wrote to an agent.
#[derive(Debug, Clone)]
pub struct AgentReq {
    pub id: Value,
    pub method: String,
    pub params: Value,
    pub answered: bool,
}

/// One agent process as the router drives it.
#[derive(Debug, Default)]
pub struct FakeAgent {
    /// The agent and project the router spawned it for.
    pub place: crate::core::ids::Place,
    pub alive: bool,
    pub killed: bool,
    /// Lines written and not yet taken (parsed).
    pub inbox: VecDeque<Value>,
    pub requests: Vec<AgentReq>,
}

/// A job the router handed out and nobody has finished.
#[derive(Debug, Clone)]
pub struct FakeJob {
    pub job: JobId,
    pub method: String,
    pub params: Value,
    pub deadline: bool,
    /// The project (jail) it runs in.
    pub project: crate::core::ids::ProjectId,
}

pub struct Sim {
    pub r: Router,
    pub now: u64,
    pub sockets: BTreeMap<SocketId, FakeSocket>,
    pub agents: BTreeMap<AgentId, FakeAgent>,
    pub store: FakeStore,
    pub jobs: VecDeque<FakeJob>,
    pub terminal: Vec<TermAction>,
    /// Events for notifications and metrics.
    pub events: Vec<crate::core::events::RelayEvent>,
    /// `Restore`s not answered yet (when `auto_restore` is off).
    pub restores: VecDeque<(UnitId, String)>,
    pub auto_restore: bool,
    pub violations: Vec<String>,
    next_socket: u64,
}

impl Drop for Sim {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert!(
                self.violations.is_empty(),
                "router violations: {:#?}",
                self.violations
            );
        }
    }
}

/// A parsed frame as a device reads it.
pub fn parse(f: &[u8]) -> Value {
    serde_json::from_slice(f)
        .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {}", String::from_utf8_lossy(f)))
}

pub fn c(s: &str) -> ClientId {
    ClientId(s.into())
}

/// An `initialize` answer advertising `caps`.
pub fn init_result(caps: Value) -> Value {
    json!({"protocolVersion": 1, "agentCapabilities": caps})
}

/// The welcome a relay socket gets.
#[allow(clippy::too_many_arguments)]
pub fn welcome(
    epoch: u64,
    sid: Option<&str>,
    head: u64,
    reset: bool,
    busy: bool,
    asks: &[&str],
) -> Value {
    json!({
        "type": "relay_welcome",
        "epoch": epoch,
        "sessionId": sid,
        "headSeq": head,
        "reset": reset,
        "busy": busy,
        "pendingPermissionIds": asks,
        "lease": false,
        "holder": null,
        "controlEpoch": 0,
    })
}

/// A value with `"rseq": n` added (how a stamped frame parses).
pub fn stamped(n: u64, mut v: Value) -> Value {
    v["rseq"] = json!(n);
    v
}

/// A frame as the ring stamps it (`"rseq"` first), for a fake transcript.
pub fn frame_of(n: u64, v: &Value) -> Frame {
    let line = serde_json::to_vec(v).unwrap_or_default();
    frame::stamp_rseq(&line, n).unwrap_or_default().into()
}

pub fn update_line(asid: &str, update: Value) -> Value {
    json!({"jsonrpc":"2.0","method":"session/update","params":{"sessionId": asid, "update": update}})
}

pub fn chunk(text: &str) -> Value {
    json!({"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":text}})
}

pub fn ok(id: Value, result: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"result":result})
}

pub fn err(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"error":{"code":code,"message":message}})
}

pub fn req(id: Value, method: &str, params: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":method,"params":params})
}

pub fn note(method: &str, params: Value) -> Value {
    json!({"jsonrpc":"2.0","method":method,"params":params})
}

pub fn permission_params(asid: &str) -> Value {
    json!({
        "sessionId": asid,
        "toolCall": {"toolCallId": "t1", "title": "write file"},
        "options": [
            {"optionId": "allow", "name": "Allow", "kind": "allow_once"},
            {"optionId": "deny", "name": "Deny", "kind": "reject_once"}
        ]
    })
}

pub fn prompt_params(sid: &str, text: &str) -> Value {
    json!({"sessionId": sid, "prompt": [{"type":"text","text":text}]})
}

/// The echo of a prompt's text block as viewers see it.
pub fn echo(sid: &str, client: &str, prompt_id: Value, text: &str) -> Value {
    note(
        "session/update",
        json!({
            "sessionId": sid,
            "update": {"sessionUpdate":"user_message_chunk","content":{"type":"text","text":text}},
            "_meta": {"relay": {"from": client, "promptId": prompt_id}}
        }),
    )
}

pub fn resolved(id: &str, outcome: Value, by: &str) -> Value {
    note(
        "_relay/ask_resolved",
        json!({"id": id, "outcome": outcome, "by": by}),
    )
}

pub const A1: AgentId = AgentId(1);
pub const A2: AgentId = AgentId(2);

impl Sim {
    /// A router with `cfg`; its first agent is spawned and asked to initialize.
    pub fn new(cfg: RouterConfig) -> Sim {
        let mut sim = Sim::lazy(cfg);
        // The relay opens its default session lazily (when a device claims
        // it); these tests start from a default already opening.
        sim.r.open_default();
        sim.drain();
        sim
    }

    /// A router with `cfg` as the relay starts it: the default is an
    /// unopened placeholder and no agent runs yet.
    pub fn lazy(cfg: RouterConfig) -> Sim {
        Sim {
            r: Router::new(cfg, 1000),
            now: 1000,
            sockets: BTreeMap::new(),
            agents: BTreeMap::new(),
            store: FakeStore::default(),
            jobs: VecDeque::new(),
            terminal: Vec::new(),
            events: Vec::new(),
            restores: VecDeque::new(),
            auto_restore: true,
            violations: Vec::new(),
            next_socket: 0,
        }
    }

    /// Agent processes spawned and neither exited nor told to stop.
    pub fn running_agents(&self) -> usize {
        self.agents
            .values()
            .filter(|a| a.alive && !a.killed)
            .count()
    }

    /// Default config, agent 1 initialized (`loadSession`), default session `s1` open.
    pub fn boot() -> Sim {
        Sim::boot_with(RouterConfig::default())
    }

    pub fn boot_with(cfg: RouterConfig) -> Sim {
        let mut sim = Sim::new(cfg);
        sim.answer(A1, "initialize", init_result(json!({"loadSession": true})));
        sim.answer(A1, "session/new", json!({"sessionId": "s1"}));
        sim.take_agent(A1);
        sim
    }

    /// Moves the virtual clock.
    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
    }

    /// Moves the virtual clock by `ms` and ticks, as the shell's timer does.
    pub fn wait(&mut self, ms: u64) {
        self.now += ms;
        self.feed(Input::Tick);
    }

    /// Lets an agent's history replay go quiet (prompts held after a load run).
    pub fn quiet(&mut self) {
        self.wait(timers::REPLAY_QUIET_MS);
    }

    /// Feeds one input and collects everything the router asks for.
    pub fn feed(&mut self, input: Input<'_>) {
        self.now += 1;
        self.r.handle(self.now, input);
        self.drain();
    }

    fn drain(&mut self) {
        loop {
            while let Some(o) = self.r.poll_output() {
                self.output(o);
            }
            if !self.store.hold_acks
                && let Some((session, reserved, synced)) = self.store.acks.pop_front()
            {
                self.now += 1;
                self.r.handle(
                    self.now,
                    Input::Durable {
                        session,
                        reserved,
                        synced,
                    },
                );
                continue;
            }
            if !self.auto_restore {
                return;
            }
            let Some((unit, session)) = self.restores.pop_front() else {
                return;
            };
            self.finish_restore(unit, &session, None);
        }
    }

    /// A clean stop ([`Router::stop`]), its outputs collected.
    pub fn stop(&mut self) {
        self.r.stop();
        self.drain();
    }

    /// Answers a `Restore` from the fake store.
    pub fn finish_restore(&mut self, unit: UnitId, session: &str, error: Option<String>) {
        let frames = self
            .store
            .transcripts
            .get(session)
            .cloned()
            .unwrap_or_default();
        let head = self.store.meta.get(session).map_or(0, |m| m.head_seq);
        self.now += 1;
        self.r.handle(
            self.now,
            Input::Restored {
                unit,
                frames,
                head,
                error,
            },
        );
        while let Some(o) = self.r.poll_output() {
            self.output(o);
        }
    }

    fn output(&mut self, o: Output) {
        match o {
            Output::Send { socket, bytes } => match self.sockets.get_mut(&socket) {
                Some(s) if s.open => {
                    s.all.push(bytes.clone());
                    s.inbox.push_back(bytes);
                }
                _ => self.violations.push(format!(
                    "Send to {socket}, which is not open: {}",
                    String::from_utf8_lossy(&bytes)
                )),
            },
            Output::Close {
                socket,
                code,
                reason,
            } => {
                if let Some(s) = self.sockets.get_mut(&socket) {
                    s.closed_with = Some((code, reason));
                }
            }
            Output::SpawnAgent { agent, place } => {
                let a = self.agents.entry(agent).or_default();
                a.place = place;
                if a.alive || a.killed {
                    self.violations.push(format!("{agent} spawned twice"));
                }
                a.alive = true;
            }
            Output::WriteAgent { agent, line } => {
                let v: Value = match serde_json::from_slice(&line) {
                    Ok(v) => v,
                    Err(e) => {
                        self.violations
                            .push(format!("{agent}: line is not JSON ({e})"));
                        return;
                    }
                };
                let Some(a) = self.agents.get_mut(&agent) else {
                    self.violations
                        .push(format!("write to {agent}, never spawned"));
                    return;
                };
                if let (Some(method), Some(id)) = (v["method"].as_str(), v.get("id")) {
                    a.requests.push(AgentReq {
                        id: id.clone(),
                        method: method.to_owned(),
                        params: v["params"].clone(),
                        answered: false,
                    });
                }
                a.inbox.push_back(v);
            }
            Output::KillAgent { agent } => {
                if let Some(a) = self.agents.get_mut(&agent) {
                    a.killed = true;
                }
            }
            Output::Persist(p) => self.store_output(p),
            Output::Event(e) => self.events.push(e),
            Output::Terminal(t) => self.terminal.push(t),
            Output::Restore { unit, session } => self.restores.push_back((unit, session)),
            Output::StoreReplay {
                socket,
                unit,
                session,
                after,
                upto,
                ..
            } => {
                // The fake store serves the range from what was persisted.
                let frames: Vec<Frame> = self
                    .store
                    .transcripts
                    .get(&session)
                    .map(|t| {
                        t.iter()
                            .filter(|f| frame::read_rseq(f).is_some_and(|s| s > after && s <= upto))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                self.r.handle(
                    self.now,
                    Input::StoreReplayed {
                        socket,
                        unit,
                        frames: Some(frames),
                    },
                );
            }
            Output::Job {
                job,
                work,
                deadline,
            } => self.jobs.push_back(FakeJob {
                job,
                method: work.kind.method().to_owned(),
                params: work.params,
                project: work.project,
                deadline,
            }),
        }
    }

    /// The fake store: the one place that sees `Persist` (and would feed acks back).
    fn store_output(&mut self, p: Persist) {
        match p {
            Persist::Frame { session, frame } => self
                .store
                .transcripts
                .entry(session)
                .or_default()
                .push(frame),
            Persist::Meta(info) => {
                self.store.meta.insert(info.session_id.clone(), info);
            }
            Persist::Sync { session } => self.store.syncs.push(session),
            Persist::Reserve { session, upto } => self.store.acks.push_back((session, upto, 0)),
            Persist::Durable { session, upto } => self.store.acks.push_back((session, 0, upto)),
            Persist::End { session, head } => {
                self.store.ends.insert(session, head);
            }
            Persist::Delete { session } => {
                self.store.transcripts.remove(&session);
                self.store.meta.remove(&session);
            }
        }
    }

    // ---- sockets ----

    fn mint_socket(&mut self, plain: bool) -> SocketId {
        self.next_socket += 1;
        let id = SocketId(self.next_socket);
        self.sockets.insert(
            id,
            FakeSocket {
                open: true,
                plain,
                ..FakeSocket::default()
            },
        );
        id
    }

    /// A relay (`/ws`) socket of `client` with no session asked for.
    pub fn open(&mut self, client: &str) -> SocketId {
        self.open_at(client, None, None)
    }

    pub fn open_at(
        &mut self,
        client: &str,
        session: Option<&str>,
        last_seq: Option<u64>,
    ) -> SocketId {
        let socket = self.mint_socket(false);
        self.feed(Input::SocketOpen {
            socket,
            client: c(client),
            session: session.map(str::to_owned),
            last_seq,
            plain: false,
        });
        socket
    }

    /// A plain ACP (`/acp`) socket.
    pub fn open_plain(&mut self, client: &str) -> SocketId {
        let socket = self.mint_socket(true);
        self.feed(Input::SocketOpen {
            socket,
            client: c(client),
            session: None,
            last_seq: None,
            plain: true,
        });
        socket
    }

    pub fn close(&mut self, socket: SocketId) {
        if let Some(s) = self.sockets.get_mut(&socket) {
            s.open = false;
        }
        self.feed(Input::SocketClosed { socket });
    }

    pub fn send(&mut self, socket: SocketId, v: Value) {
        let bytes = serde_json::to_vec(&v).unwrap_or_default();
        self.send_raw(socket, &bytes);
    }

    pub fn send_raw(&mut self, socket: SocketId, text: &[u8]) {
        self.feed(Input::SocketText { socket, text });
    }

    /// Frames a socket received since the last take, parsed.
    pub fn take(&mut self, socket: SocketId) -> Vec<Value> {
        self.take_raw(socket).iter().map(|f| parse(f)).collect()
    }

    pub fn take_raw(&mut self, socket: SocketId) -> Vec<Frame> {
        self.sockets
            .get_mut(&socket)
            .map(|s| s.inbox.drain(..).collect())
            .unwrap_or_default()
    }

    /// Drops what every socket received so far.
    pub fn clear(&mut self) {
        for s in self.sockets.values_mut() {
            s.inbox.clear();
        }
        for a in self.agents.values_mut() {
            a.inbox.clear();
        }
    }

    // ---- agents ----

    /// Lines written to an agent since the last take.
    pub fn take_agent(&mut self, agent: AgentId) -> Vec<Value> {
        self.agents
            .get_mut(&agent)
            .map(|a| a.inbox.drain(..).collect())
            .unwrap_or_default()
    }

    pub fn agent_says(&mut self, agent: AgentId, v: Value) {
        let line = serde_json::to_vec(&v).unwrap_or_default();
        self.agent_raw(agent, &line);
    }

    pub fn agent_raw(&mut self, agent: AgentId, line: &[u8]) {
        self.feed(Input::AgentLine { agent, line });
    }

    /// The oldest unanswered request of `method` written to `agent`; marks it answered.
    pub fn pending(&mut self, agent: AgentId, method: &str) -> AgentReq {
        let a = self
            .agents
            .get_mut(&agent)
            .unwrap_or_else(|| panic!("{agent} was never spawned"));
        let r = a
            .requests
            .iter_mut()
            .find(|r| !r.answered && r.method == method)
            .unwrap_or_else(|| panic!("{agent} has no unanswered {method}"));
        r.answered = true;
        r.clone()
    }

    /// Whether `agent` has an unanswered request of `method`.
    pub fn has_pending(&self, agent: AgentId, method: &str) -> bool {
        self.agents
            .get(&agent)
            .is_some_and(|a| a.requests.iter().any(|r| !r.answered && r.method == method))
    }

    /// Answers the oldest unanswered `method` request with `result`; returns the id used.
    pub fn answer(&mut self, agent: AgentId, method: &str, result: Value) -> Value {
        let r = self.pending(agent, method);
        self.agent_says(agent, ok(r.id.clone(), result));
        r.id
    }

    pub fn answer_err(&mut self, agent: AgentId, method: &str, error: Value) -> Value {
        let r = self.pending(agent, method);
        self.agent_says(agent, json!({"jsonrpc":"2.0","id":r.id,"error":error}));
        r.id
    }

    pub fn update(&mut self, agent: AgentId, asid: &str, update: Value) {
        self.agent_says(agent, update_line(asid, update));
    }

    /// The agent asks permission under its own request id `id`.
    pub fn ask(&mut self, agent: AgentId, id: u64, asid: &str) {
        self.agent_says(
            agent,
            req(
                json!(id),
                "session/request_permission",
                permission_params(asid),
            ),
        );
    }

    pub fn exit(&mut self, agent: AgentId, status: &str) {
        if let Some(a) = self.agents.get_mut(&agent) {
            a.alive = false;
        }
        self.feed(Input::AgentExited {
            agent,
            status: status.into(),
        });
    }

    /// `session/new` from `socket`, answered by `agent` with `asid`; returns the relay id.
    pub fn new_session(&mut self, socket: SocketId, id: u64, agent: AgentId, asid: &str) -> String {
        self.send(
            socket,
            req(
                json!(id),
                "session/new",
                json!({"cwd": "/", "mcpServers": []}),
            ),
        );
        if self.has_pending(agent, "session/new") {
            self.answer(agent, "session/new", json!({"sessionId": asid}));
        }
        let frames = self.take(socket);
        let answer = frames
            .iter()
            .find(|f| f["id"] == json!(id))
            .unwrap_or_else(|| panic!("no session/new answer in {frames:?}"));
        answer["result"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("session/new failed: {answer}"))
            .to_owned()
    }

    /// A socket of client `a` that claimed the default `s1` (request 1) and
    /// opened `s2` (request 2) on agent 1; it views `s2`.
    pub fn two_sessions(&mut self) -> SocketId {
        let a = self.open("a");
        self.new_session(a, 1, A1, "unused");
        self.new_session(a, 2, A1, "s2");
        a
    }

    /// The epoch of the `n`th unit minted (the default is 1).
    pub fn epoch(&self, n: u64) -> u64 {
        self.r.cfg.epoch_seed.wrapping_add(n)
    }

    pub fn unit_of(&self, sid: &str) -> UnitId {
        self.r.by_session[sid]
    }

    // ---- invariants ----

    /// Bounds every queue and map of the router must hold.
    pub fn check_bounds(&self) -> Result<(), String> {
        let r = &self.r;
        let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_owned()) };
        check(
            r.deferred.len() <= MAX_DEFERRED_LINES,
            "deferred over MAX_DEFERRED_LINES",
        )?;
        check(
            r.pending_new.len() <= MAX_DEFERRED_LINES,
            "pending_new over bound",
        )?;
        check(r.jobs.len() <= MAX_JOBS, "jobs over MAX_JOBS")?;
        check(
            r.live_count() <= r.cfg.max_sessions.max(1),
            "live sessions over --max-sessions",
        )?;
        check(
            r.units.len() <= r.cfg.max_sessions.max(1) + 1,
            "units over --max-sessions and the placeholder",
        )?;
        check(
            !r.cfg.agent_per_session || self.running_agents() <= r.cfg.max_sessions.max(1),
            "agent processes over --max-sessions (--agent-per-session)",
        )?;
        check(
            r.shared.len() <= MAX_AGENT_KINDS * MAX_PROJECTS,
            "shared agents over MAX_AGENT_KINDS x MAX_PROJECTS",
        )?;
        check(
            r.inits.len() <= MAX_AGENT_KINDS,
            "cached inits over MAX_AGENT_KINDS",
        )?;
        check(
            r.stored.len() <= r.cfg.keep_sessions.max(1),
            "stored over keep_sessions",
        )?;
        check(
            r.clients.len() <= MAX_CLIENTS + r.sockets.len(),
            "clients over MAX_CLIENTS",
        )?;
        for w in r.restoring.values() {
            check(
                w.len() <= MAX_DEFERRED_LINES + 1,
                "restore waiters over bound",
            )?;
        }
        for l in r.links.values() {
            check(
                l.pending.len() <= MAX_AGENT_PENDING,
                "agent pending over bound",
            )?;
            check(
                l.early.len() <= MAX_EARLY_UPDATES,
                "early updates over bound",
            )?;
        }
        for u in r.units.values() {
            check(
                u.hub.ring.len() <= r.cfg.ring_frames.max(1),
                "ring over ring_frames",
            )?;
            check(u.driver.open_asks() <= r.cfg.max_asks, "asks over max_asks")?;
            check(
                u.driver.settled_asks().count() <= SETTLED_MEMORY,
                "settled over SETTLED_MEMORY",
            )?;
            for (v, _) in u.hub.viewers() {
                check(
                    r.sockets.contains_key(&v),
                    "a closed socket still views a unit",
                )?;
            }
        }
        Ok(())
    }
}
