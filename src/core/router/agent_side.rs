//! The ACP client side toward agent connections: spawning and
//! initializing them, opening agent sessions, and every line an agent sends.
//! Performs no I/O.

use super::*;

impl Router {
    pub(super) fn agent_for_new_unit(&mut self, unit: UnitId) -> AgentId {
        let place = self.units.get(&unit).map(|u| u.place).unwrap_or_default();
        if !self.cfg.agent_per_session
            && let Some(a) = self.shared_agent(place)
        {
            return a;
        }
        let agent = self.spawn_agent(place);
        if !self.cfg.agent_per_session {
            self.shared.insert(place, agent);
        }
        agent
    }

    pub(super) fn spawn_agent(&mut self, place: Place) -> AgentId {
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
                terminals: BTreeSet::new(),
                opened: 0,
                retired: false,
                place,
                active_ms: self.now_ms,
            },
        );
        self.out.push_back(Output::SpawnAgent { agent, place });
        let params = json!({
            "protocolVersion": 1,
            "clientCapabilities": { "fs": { "readTextFile": true, "writeTextFile": true }, "terminal": true },
            "clientInfo": { "name": "acp-relay", "version": env!("CARGO_PKG_VERSION") }
        });
        self.agent_request(agent, "initialize", params, Pending::Initialize);
        agent
    }

    /// Sends `session/new` or `session/load` for a unit whose agent is ready.
    pub(super) fn open_session(&mut self, unit: UnitId) {
        let Some(u) = self.units.get(&unit) else {
            return;
        };
        let Some(agent) = u.driver.agent else { return };
        let can_load = self
            .links
            .get(&agent)
            .and_then(|l| l.init.as_ref())
            .is_some_and(|i| i["agentCapabilities"]["loadSession"] == json!(true));
        let cwd = self.project_cwd(u.place.project).to_owned();
        match u.driver.resume_from.clone() {
            Some(old) if can_load => {
                if let Some(u) = self.units.get_mut(&unit) {
                    u.driver.loading = true;
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

    pub(super) fn agent_request(
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
        link.active_ms = self.now_ms;
        let id = link.next_id;
        link.pending.insert(
            id,
            InFlight {
                what: pending,
                method: method.to_owned(),
                sent_ms: self.now_ms,
            },
        );
        self.out.push_back(Output::WriteAgent {
            agent,
            line: rpc::request(&json!(id), method, params),
        });
        Some(id)
    }

    pub(super) fn agent_line(&mut self, agent: AgentId, line: &[u8]) {
        if !self.links.contains_key(&agent) {
            return;
        }
        self.touch_agent(agent);
        if let Some(asid) = frame::probe_update(line) {
            self.agent_update(agent, &asid, line);
            return;
        }
        let msg = match frame::parse_line(line, self.cfg.agent_limits) {
            Ok(m) => m,
            Err(e) => {
                log::debug!("{agent}: a stdout line that is not JSON-RPC ({e}) goes to its log");
                self.agent_said(agent, agent_log::Stream::Stdout, line);
                return;
            }
        };
        match msg {
            Message::Response { id, outcome } => self.agent_answer(agent, id, outcome),
            Message::Request { id, method, params } => {
                self.agent_request_in(agent, id, &method, params)
            }
            Message::Notification { method, .. } => {
                if method == "session/update" {
                    log::info!("{agent}: session/update without a string sessionId; dropped");
                } else {
                    self.agent_notification(agent, line);
                }
            }
        }
    }

    pub(super) fn agent_update(&mut self, agent: AgentId, asid: &str, line: &[u8]) {
        if std::str::from_utf8(line).is_err() {
            // Refused before it is numbered: a frame no device could be sent
            // would be a silent rseq gap on every device.
            let asid = crate::logger::peer(asid);
            log::warn!("{agent}: session/update for {asid} is not valid UTF-8; dropped");
            let note = format!("(a session/update for {asid} was not valid UTF-8 and was dropped)");
            self.agent_said(agent, agent_log::Stream::Stdout, note.as_bytes());
            return;
        }
        let Some(link) = self.links.get_mut(&agent) else {
            return;
        };
        let Some(unit) = link.sessions.get(asid).copied() else {
            if link.early.len() >= MAX_EARLY_UPDATES {
                log::warn!(
                    "{agent}: {MAX_EARLY_UPDATES} updates for unknown sessions held; dropping one for {}",
                    crate::logger::peer(asid)
                );
                link.early.pop_front();
            }
            link.early.push_back((asid.to_owned(), line.to_vec()));
            return;
        };
        self.unit_update(unit, asid, line);
    }

    /// Fans an agent's `session/update` for `asid` into the unit; the bytes go
    /// as they are unless the relay's session id differs from the agent's.
    pub(super) fn unit_update(&mut self, unit: UnitId, asid: &str, line: &[u8]) {
        let Some(u) = self.units.get_mut(&unit) else {
            return;
        };
        u.driver.track_update(line);
        if u.driver.loading && !timers::passes_replay(line) {
            // History the agent replays for session/load: the ring has it already.
            self.replay_heard(unit);
            return;
        }
        match u.session_id.as_deref() {
            Some(sid) if sid != asid => {
                let sid = sid.to_owned();
                let Ok(mut v) = serde_json::from_slice::<Value>(line) else {
                    return;
                };
                let Some(params) = v.get_mut("params").and_then(Value::as_object_mut) else {
                    log::info!("{unit}: session/update whose params are not an object; dropped");
                    return;
                };
                params.insert("sessionId".into(), json!(sid));
                let params = v["params"].take();
                self.write_unit(unit, &rpc::notification("session/update", params));
            }
            _ => match strip_rseq(line) {
                Some(clean) => {
                    self.write_unit(unit, &clean);
                }
                None => {
                    self.write_unit(unit, line);
                }
            },
        }
    }

    pub(super) fn agent_request_in(
        &mut self,
        agent: AgentId,
        id: Value,
        method: &str,
        params: Value,
    ) {
        match method {
            "session/request_permission" | "elicitation/create" => {
                self.agent_ask(agent, id, method, params)
            }
            m if JobKind::from_method(m).is_some_and(|k| !k.for_device()) => {
                let Some(kind) = JobKind::from_method(m) else {
                    return;
                };
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
                let project = self
                    .links
                    .get(&agent)
                    .map_or(ProjectId(0), |l| l.place.project);
                let wrote = (kind == JobKind::WriteTextFile)
                    .then(|| params["path"].as_str().map(str::to_owned))
                    .flatten();
                let term = match kind {
                    JobKind::TerminalCreate => TermJob::Create,
                    JobKind::TerminalRelease => params["terminalId"]
                        .as_str()
                        .map_or(TermJob::None, |t| TermJob::Release(t.to_owned())),
                    _ => TermJob::None,
                };
                self.jobs.insert(
                    job,
                    JobOwner::Agent {
                        agent,
                        project,
                        id,
                        wrote,
                        term,
                    },
                );
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
            m => {
                log::info!(
                    "{agent}: agent request {} is not handled by the relay; answered -32601",
                    crate::logger::peer(m)
                );
                self.out.push_back(Output::WriteAgent {
                    agent,
                    line: rpc::error_response(&id, &RpcError::method_not_found(m)),
                });
            }
        }
    }

    pub(super) fn agent_ask(&mut self, agent: AgentId, id: Value, method: &str, mut params: Value) {
        let unit = params["sessionId"]
            .as_str()
            .and_then(|s| self.links.get(&agent)?.sessions.get(s).copied())
            .filter(|u| self.units.contains_key(u));
        let Some(unit) = unit else {
            log::info!("{agent}: {method} for an unknown session; answered cancelled");
            self.out.push_back(Output::WriteAgent {
                agent,
                line: rpc::response(&id, json!({"outcome": {"outcome": "cancelled"}})),
            });
            return;
        };
        if self.cfg.auto_approve && method == "session/request_permission" {
            let outcome = crate::core::driver::auto_outcome(&params);
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
        if u.driver.open_asks() >= self.cfg.max_asks {
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
        let event = crate::core::events::RelayEvent::AskOpened {
            session: u.session_id.clone(),
            ask_id: ask_id.clone(),
            title: u.title.clone(),
            tool_title: params["toolCall"]["title"].as_str().map(str::to_owned),
            watchers: u.hub.viewer_count(),
            agent: Some(agent),
        };
        let line = encode(&Message::Request {
            id: json!(ask_id),
            method: method.to_owned(),
            params,
        });
        match self.write_unit(unit, &line) {
            Some(frame) => {
                if let Some(u) = self.units.get_mut(&unit) {
                    u.driver.add_ask(
                        ask_id,
                        Ask {
                            agent_id: id,
                            agent,
                            frame,
                        },
                    );
                    self.out.push_back(Output::Event(event));
                }
            }
            // Nowhere to show it (the session's numbering is exhausted).
            None => self.out.push_back(Output::WriteAgent {
                agent,
                line: rpc::response(&id, json!({"outcome": {"outcome": "cancelled"}})),
            }),
        }
    }

    pub(super) fn agent_answer(
        &mut self,
        agent: AgentId,
        id: Value,
        outcome: Result<Value, Value>,
    ) {
        let Some(n) = id.as_u64() else {
            let shown = id.as_str().map_or_else(|| id.to_string(), str::to_owned);
            log::info!(
                "{agent}: response to id {} the relay never issued; ignored",
                crate::logger::peer(&shown)
            );
            return;
        };
        let Some(pending) = self
            .links
            .get_mut(&agent)
            .and_then(|l| l.pending.remove(&n))
            .map(|f| f.what)
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
                    self.cache_init(agent);
                    let waiting: Vec<UnitId> = self
                        .units
                        .iter()
                        .filter(|(_, u)| {
                            u.driver.agent == Some(agent) && u.driver.phase == Phase::Opening
                        })
                        .map(|(id, _)| *id)
                        .collect();
                    for unit in waiting {
                        self.open_session(unit);
                    }
                    self.run_deferred();
                    // Started for the placeholder while the cap is full
                    // (a device's `initialize`): its answer is cached now.
                    self.fit_placeholder();
                }
                Err(e) => {
                    log::error!(
                        "{agent}: initialize failed: {}",
                        crate::logger::peer(&e.to_string())
                    );
                    self.out.push_back(Output::KillAgent { agent });
                }
            },
            Pending::OpenSession { unit, load } => self.session_opened(agent, unit, load, outcome),
            Pending::Release => {
                if let Err(e) = outcome {
                    log::info!(
                        "{agent}: session/close refused ({}); the session is ended anyway",
                        crate::logger::peer(&e.to_string())
                    );
                }
            }
            Pending::Prompt { unit } => {
                let Some(u) = self.units.get_mut(&unit) else {
                    return;
                };
                let Some(turn) = u.driver.turn.take() else {
                    return;
                };
                let event = crate::core::events::RelayEvent::TurnEnded {
                    session: u.session_id.clone(),
                    title: u.title.clone(),
                    stop_reason: outcome
                        .as_ref()
                        .ok()
                        .and_then(|r| r["stopReason"].as_str().map(str::to_owned)),
                    watchers: u.hub.viewer_count(),
                    agent: Some(agent),
                };
                self.out.push_back(Output::Event(event));
                // A prompt the agent refused until someone logs in.
                if let Err(e) = &outcome
                    && auth_required(e)
                {
                    self.out.push_back(Output::Event(
                        crate::core::events::RelayEvent::AgentNeedsLogin {
                            agent,
                            session: u.session_id.clone(),
                            title: u.title.clone(),
                            message: e["message"].as_str().unwrap_or("").to_owned(),
                        },
                    ));
                }
                let line = encode(&Message::Response {
                    id: turn.device_id.clone(),
                    outcome,
                });
                self.hold_for_sync(unit);
                self.answer_turn(unit, &turn, &line);
                self.settle_all(unit, json!({"outcome": "cancelled"}), "turn-end", true);
                self.persist_sync(unit);
                self.end_retired_if_quiet(agent);
            }
            Pending::Forward {
                socket,
                device_id,
                unit,
                track,
            } => {
                if let (Ok(r), Some(u)) = (&outcome, unit.and_then(|u| self.units.get_mut(&u))) {
                    u.driver.track_answer(&track, r);
                }
                let outcome = match (outcome, unit) {
                    (Ok(mut r), Some(unit)) => {
                        let (sid, asid) = self
                            .units
                            .get(&unit)
                            .map(|u| (u.session_id.clone(), u.driver.agent_session.clone()))
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
                self.send_bytes(socket, line);
            }
        }
    }

    pub(super) fn session_opened(
        &mut self,
        agent: AgentId,
        unit: UnitId,
        load: bool,
        outcome: Result<Value, Value>,
    ) {
        let Some(u) = self.units.get_mut(&unit) else {
            return;
        };
        // After a load the replay window stays open until the next prompt.
        u.driver.loading = load && outcome.is_ok();
        if u.driver.loading {
            self.hold_for_replay(unit);
        }
        let Some(u) = self.units.get_mut(&unit) else {
            return;
        };
        let asid = match outcome {
            Ok(r) if load => {
                u.driver.opened = r;
                u.driver.resume_from.clone()
            }
            Ok(r) => {
                let asid = r["sessionId"].as_str().map(str::to_owned);
                u.driver.opened = r;
                asid
            }
            Err(e) => {
                if load {
                    log::info!(
                        "{unit}: agent refused session/load ({}); starting a fresh agent session",
                        crate::logger::peer(&e.to_string())
                    );
                    let old = u.driver.resume_from.take();
                    if let (Some(old), Some(l)) = (old, self.links.get_mut(&agent)) {
                        l.sessions.remove(&old);
                    }
                    self.open_session(unit);
                    return;
                }
                log::error!(
                    "{unit}: agent refused session/new: {}",
                    crate::logger::peer(&e.to_string())
                );
                u.driver.phase = Phase::Idle;
                if auth_required(&e) {
                    let (session, title) = (u.session_id.clone(), u.title.clone());
                    let message = e["message"].as_str().unwrap_or("").to_owned();
                    self.out.push_back(Output::Event(
                        crate::core::events::RelayEvent::AgentNeedsLogin {
                            agent,
                            session,
                            title,
                            message,
                        },
                    ));
                }
                // The agent's own error (e.g. auth_required with its data) reaches the device.
                let err = RpcError {
                    code: e["code"].as_i64().unwrap_or(code::OTHER),
                    message: format!(
                        "the agent could not open a session: {}; authenticate if it asks, then retry",
                        e["message"].as_str().unwrap_or("no reason given")
                    ),
                    data: e.get("data").cloned(),
                };
                self.fail_pending_new_with(unit, &err);
                self.answer_pending_load(unit, Some(&err));
                self.fail_deferred(agent, &err.message);
                return;
            }
        };
        let Some(asid) = asid else {
            u.driver.phase = Phase::Idle;
            let why = "the agent answered session/new without a sessionId; check the agent's log and retry";
            self.fail_pending_new(unit, why);
            self.answer_pending_load(unit, Some(&RpcError::other(why)));
            self.fail_deferred(agent, why);
            return;
        };
        u.driver.opened_as(asid.clone());
        if let Some(l) = self.links.get_mut(&agent) {
            l.opened += 1;
        }
        if u.session_id.is_none() {
            // The agent's id names the session unless another session (live
            // or stored) has it already: agents may number sessions per process.
            let mut sid = asid.clone();
            let mut n = 1u64;
            while self.by_session.contains_key(&sid) || self.stored.contains_key(&sid) {
                n += 1;
                sid = format!("{asid}~{n}");
            }
            u.session_id = Some(sid.clone());
            self.by_session.insert(sid, unit);
        }
        self.persist_meta(unit);
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
            self.unit_update(unit, &asid, &line);
        }
        self.answer_pending_new(unit);
        self.answer_pending_load(unit, None);
        self.run_deferred();
    }

    pub(super) fn agent_exited(&mut self, agent: AgentId, status: String) {
        let Some(link) = self.links.get_mut(&agent) else {
            return;
        };
        let was_ready = link.state == LinkState::Ready;
        let opening = self
            .units
            .values()
            .any(|u| u.driver.agent == Some(agent) && u.driver.phase == Phase::Opening);
        link.state = LinkState::Dead;
        let pending: Vec<Pending> = link.pending.drain().map(|(_, f)| f.what).collect();
        if self.stopping() {
            log::info!("{agent}: agent stopped ({status}) by the relay's shutdown");
        } else {
            log::warn!("{agent}: agent exited ({status})");
        }
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
            .filter(|(_, u)| u.driver.agent == Some(agent))
            .map(|(id, _)| *id)
            .collect();
        let sessions = units
            .iter()
            .filter_map(|id| self.units.get(id))
            .map(|u| (u.session_id.clone(), u.title.clone()))
            .collect();
        let crashed = crate::core::events::RelayEvent::crashed(&status);
        self.out.push_back(Output::Event(
            crate::core::events::RelayEvent::AgentExited {
                agent,
                status: status.clone(),
                crashed,
                sessions,
            },
        ));
        for unit in units {
            let Some(u) = self.units.get_mut(&unit) else {
                continue;
            };
            let turn = u.driver.agent_exited();
            let sid = u.session_id.clone();
            self.settle_all(unit, json!({"outcome": "cancelled"}), "agent-exit", false);
            let note = rpc::notification(
                "_relay/agent_exited",
                json!({"sessionId": sid, "status": status}),
            );
            self.write_unit_for(unit, &note, Plain::None);
            if let Some(turn) = turn {
                let err = RpcError::other(why.clone());
                let line = rpc::error_response(&turn.device_id, &err);
                self.hold_for_sync(unit);
                self.answer_turn(unit, &turn, &line);
            }
            self.fail_pending_new(unit, &why);
            self.answer_pending_load(unit, Some(&RpcError::other(why.clone())));
            self.persist_sync(unit);
        }
        self.forget_shared(agent);
        // Its terminals die with it; its jobs in flight finish unanswered
        // (a terminal one creates meanwhile is released when it lands).
        let (terminals, project) = self
            .links
            .remove(&agent)
            .map(|l| (l.terminals, l.place.project))
            .unwrap_or_default();
        for tid in terminals {
            self.cleanup_job(
                JobKind::TerminalRelease,
                json!({ "terminalId": tid }),
                project,
            );
        }
        if !was_ready || opening {
            self.fail_deferred(agent, &format!(
                "the agent exited ({status}) before the session was open; check --agent and the log, then retry"
            ));
        }
    }
}

/// How a unit ends on its agent's side.
impl Router {
    /// Writes a turn's answer into its session and makes sure the socket
    /// that prompted gets it even when it views another session (then
    /// without `rseq`: the number belongs to a stream it is not following).
    pub(super) fn answer_turn(&mut self, unit: UnitId, turn: &Turn, line: &[u8]) {
        let frame = self.write_unit_for(unit, line, Plain::Only(turn.socket));
        let viewing = self
            .units
            .get(&unit)
            .is_some_and(|u| u.hub.views(turn.socket));
        if !viewing {
            let bytes = frame.map_or_else(|| line.to_vec(), |f| unstamp(&f).to_vec());
            self.send_bytes(turn.socket, bytes);
        }
    }

    /// Settles what a unit owes before it ends (closed or evicted): its open
    /// asks are answered `cancelled` to the agent and announced; a turn in
    /// flight is cancelled at the agent and answered `cancelled` to its
    /// prompter; and the shared agent is told the session ended.
    ///
    /// Telling the agent: when it advertises `sessionCapabilities.close` it
    /// gets ACP `session/close`. Otherwise it cannot forget the session, so
    /// once [`MAX_SESSIONS_PER_AGENT`] sessions were opened on it, it is
    /// retired: new sessions go to a fresh agent, and the old one is ended as
    /// soon as none of its sessions is busy (a turn, an ask or an open in
    /// flight); its remaining sessions resume on the fresh agent with
    /// `session/load` at their next prompt. A per-session agent simply ends
    /// with its session.
    pub(super) fn unit_ending(&mut self, unit: UnitId) {
        self.settle_all(unit, json!({"outcome": "cancelled"}), "session-ended", true);
        let ended = RpcError::other("the session was closed while it was loading; load it again");
        self.answer_pending_load(unit, Some(&ended));
        // Sockets waiting for its transcript go to the default session instead.
        for w in self.restoring.remove(&unit).unwrap_or_default() {
            match w {
                sessions::Waiter::Attach { socket, .. } => {
                    if self.sockets.contains_key(&socket) {
                        let default = self.default_unit;
                        self.attach_with(socket, default, None, true);
                    }
                }
                sessions::Waiter::Load { socket, id, .. } => self.send_error(socket, &id, &ended),
            }
        }
        let Some(u) = self.units.get_mut(&unit) else {
            return;
        };
        let turn = u.driver.end_turn();
        let live = u.driver.live().map(|(a, s)| (a, s.to_owned()));
        let (agent, asid) = (u.driver.agent, u.driver.agent_session.clone());
        let ready = u.driver.phase == Phase::Ready;
        if let Some(turn) = turn {
            self.send_result(
                turn.socket,
                &turn.device_id,
                json!({ "stopReason": "cancelled" }),
            );
            if let Some((agent, asid)) = live {
                self.out.push_back(Output::WriteAgent {
                    agent,
                    line: rpc::notification("session/cancel", json!({ "sessionId": asid })),
                });
            }
        }
        let Some(agent) = agent else { return };
        if self.cfg.agent_per_session {
            return;
        }
        let Some(link) = self.links.get_mut(&agent) else {
            return;
        };
        if link.state != LinkState::Ready {
            return;
        }
        let loading = self.units.get(&unit).and_then(|u| u.driver.loading_from());
        if let Some(old) = loading {
            link.sessions.remove(old);
        }
        if let Some(asid) = asid.filter(|_| ready) {
            link.sessions.remove(&asid);
            if agent_closes_sessions(link.init.as_ref()) {
                self.agent_request(
                    agent,
                    "session/close",
                    json!({ "sessionId": asid }),
                    Pending::Release,
                );
                return;
            }
        }
        if link.opened >= MAX_SESSIONS_PER_AGENT && !link.retired {
            log::info!(
                "{agent}: {} sessions opened and it cannot close them; new sessions go to a fresh agent",
                link.opened
            );
            link.retired = true;
            self.forget_shared(agent);
        }
        self.end_retired_if_quiet_except(agent, Some(unit));
    }

    /// Ends a retired agent once none of its sessions is busy.
    pub(super) fn end_retired_if_quiet(&mut self, agent: AgentId) {
        self.end_retired_if_quiet_except(agent, None);
    }

    fn end_retired_if_quiet_except(&mut self, agent: AgentId, ending: Option<UnitId>) {
        if !self.links.get(&agent).is_some_and(|l| l.retired) {
            return;
        }
        let opening: Vec<UnitId> = self.pending_new.iter().map(|(_, _, u)| *u).collect();
        let mine: Vec<UnitId> = self
            .units
            .iter()
            .filter(|(id, u)| u.driver.agent == Some(agent) && Some(**id) != ending)
            .map(|(id, _)| *id)
            .collect();
        let busy = mine.iter().any(|id| {
            self.units
                .get(id)
                .is_some_and(|u| !u.driver.quiet() || u.restoring)
                || opening.contains(id)
        });
        if busy {
            return;
        }
        log::info!("{agent}: retired and quiet; ending it");
        self.park_and_end(agent);
    }

    /// Ends an agent whose sessions are all quiet: they stay live, without
    /// an agent, and resume with `session/load` at their next prompt.
    pub(super) fn park_and_end(&mut self, agent: AgentId) {
        for u in self
            .units
            .values_mut()
            .filter(|u| u.driver.agent == Some(agent))
        {
            u.driver.release_agent();
        }
        if let Some(l) = self.links.get_mut(&agent) {
            l.sessions.clear();
            l.state = LinkState::Dead;
        }
        self.out.push_back(Output::KillAgent { agent });
    }
}

/// An agent line without its own top-level `"rseq"` key (the relay's goes
/// first and a duplicate key would make the frame ambiguous); `None` when it
/// has none, which is nearly always.
fn strip_rseq(line: &[u8]) -> Option<Vec<u8>> {
    memchr::memmem::find(line, b"\"rseq\"")?;
    let mut v: Value = serde_json::from_slice(line).ok()?;
    v.as_object_mut()?.remove("rseq")?;
    log::debug!("an agent line carried its own \"rseq\"; removed");
    serde_json::to_vec(&v).ok()
}

/// ACP's `auth_required` error code. It is JSON-RPC's generic server error
/// too, so the code alone does not say an agent wants a login.
const AUTH_REQUIRED: i64 = -32000;

/// Whether an agent's error object is ACP's `auth_required` ("log in
/// first"): code -32000 with a message or data that speaks of auth (the ACP
/// SDKs send "Authentication required"), case-insensitively. One predicate
/// for a refused `session/new` and a refused prompt.
pub(super) fn auth_required(e: &Value) -> bool {
    let says_auth = |v: &Value| match v {
        Value::Null => false,
        Value::String(s) => s.to_ascii_lowercase().contains("auth"),
        v => v.to_string().to_ascii_lowercase().contains("auth"),
    };
    e["code"].as_i64() == Some(AUTH_REQUIRED) && (says_auth(&e["message"]) || says_auth(&e["data"]))
}

/// Whether an agent's `initialize` answer advertises ACP `session/close`
/// (`agentCapabilities.sessionCapabilities.close`, an object).
fn agent_closes_sessions(init: Option<&Value>) -> bool {
    init.is_some_and(|i| i["agentCapabilities"]["sessionCapabilities"]["close"].is_object())
}

/// `session/load` and `session/resume` answers that carry the agent's current state.
impl Router {
    /// Switches `socket` to `unit` and answers its load: at once with the
    /// cached open answer (kept current by [`Driver::track_update`]
    /// and [`Driver::track_answer`]) when the unit's agent session is open; otherwise the
    /// agent session is opened now (`session/load` after a restart or an
    /// agent exit) and the agent's own answer is forwarded when it comes.
    pub(super) fn answer_load(&mut self, socket: SocketId, id: Value, unit: UnitId, replay: bool) {
        if !self.sockets.contains_key(&socket) {
            return;
        }
        self.switch_view(socket, unit, replay);
        let ready = self
            .units
            .get(&unit)
            .is_some_and(|u| u.driver.phase == Phase::Ready);
        if ready || self.pending_load.len() >= MAX_DEFERRED_LINES {
            let sid = self
                .units
                .get(&unit)
                .and_then(|u| u.session_id.clone())
                .unwrap_or_default();
            let result = self.open_result(unit, &sid);
            self.send_result(socket, &id, result);
            return;
        }
        self.pending_load.push_back((socket, id, unit));
        self.ensure_session(unit);
    }

    /// Answers the loads waiting for `unit`'s agent session: its open answer,
    /// or `err` when it could not be opened.
    pub(super) fn answer_pending_load(&mut self, unit: UnitId, err: Option<&RpcError>) {
        let (mine, rest): (Vec<_>, Vec<_>) = self
            .pending_load
            .drain(..)
            .partition(|(_, _, u)| *u == unit);
        self.pending_load = rest.into();
        let sid = self
            .units
            .get(&unit)
            .and_then(|u| u.session_id.clone())
            .unwrap_or_default();
        for (socket, id, _) in mine {
            match err {
                Some(e) => self.send_error(socket, &id, e),
                None => {
                    let result = self.open_result(unit, &sid);
                    self.send_result(socket, &id, result);
                }
            }
        }
    }
}
