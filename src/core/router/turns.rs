//! Turns and asks: `session/prompt`, `session/cancel`, requests forwarded
//! to the agent, and the settlement of permission asks. Performs no I/O.

use super::*;

impl Router {
    pub(super) fn session_prompt(
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
        u.driver.check_idle()?;
        if u.restoring {
            return self.defer(socket, line);
        }
        if u.driver.phase != Phase::Ready {
            self.admit(unit, socket)?;
            self.ensure_session(unit);
            return self.defer(socket, line);
        }
        if self.replay_hold.contains_key(&unit) {
            return self.defer(socket, line);
        }
        let Some((agent, asid)) = u.driver.live().map(|(a, s)| (a, s.to_owned())) else {
            return Err(RpcError::other(
                "the session has no agent; retry the prompt",
            ));
        };
        let sid = u.session_id.clone();
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
        if let Some(u) = self.units.get_mut(&unit) {
            u.driver.start_turn(Turn {
                client: client.clone(),
                socket,
                device_id: id.clone(),
                agent_req: req,
            });
            // A session someone prompted is nobody's fresh default any more.
            u.claimed = true;
            if u.title.is_none()
                && let Some(title) = crate::core::driver::prompt_title(&blocks)
            {
                u.title = Some(title);
                self.persist_meta(unit);
            }
        }
        for block in blocks {
            let update = json!({
                "sessionId": sid,
                "update": {"sessionUpdate": "user_message_chunk", "content": block},
                "_meta": {"relay": {"from": client.0, "promptId": id}}
            });
            let line = rpc::notification("session/update", update);
            self.write_unit_for(unit, &line, Plain::AllBut(socket));
        }
        Ok(())
    }

    pub(super) fn session_cancel(
        &mut self,
        socket: SocketId,
        client: &ClientId,
        params: &Value,
    ) -> Result<(), RpcError> {
        let unit = self.unit_for(socket, params)?;
        let Some(u) = self.units.get(&unit) else {
            return Ok(());
        };
        if let Some((agent, asid)) = u.driver.live() {
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
        self.cancel_deferred_prompts(unit);
        Ok(())
    }

    /// A prompt still waiting for its session to open is answered `cancelled`
    /// rather than run after the user pressed stop.
    fn cancel_deferred_prompts(&mut self, unit: UnitId) {
        let lines: Vec<Deferred> = self.deferred.drain(..).collect();
        for d in lines {
            if let Ok(Message::Request { id, method, params }) =
                frame::parse_line(&d.line, self.cfg.device_limits)
                && method == "session/prompt"
                && self.unit_for(d.socket, &params).ok() == Some(unit)
            {
                self.send_result(d.socket, &id, json!({ "stopReason": "cancelled" }));
                continue;
            }
            self.deferred.push_back(d);
        }
    }

    /// Passes a device request to the unit's agent and maps the id back.
    pub(super) fn forward(
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
        if unit.is_none() {
            // `authenticate` needs an initialized agent, not an open session:
            // an agent that wants a login refuses session/new until then.
            let project = u.place.project;
            if let Some(agent) = self.auth_target(&params, project)? {
                if !self
                    .links
                    .get(&agent)
                    .is_some_and(|l| l.state == LinkState::Ready)
                {
                    return self.defer(socket, line);
                }
                // The relay's own part of `_meta` is not the agent's.
                if let Some(m) = params.get_mut("_meta").and_then(Value::as_object_mut) {
                    m.remove("relay");
                }
                return self.send_to_agent(agent, socket, id, method, params, None);
            }
            let Some(u) = self.units.get(&target) else {
                return Err(RpcError::other("the session ended"));
            };
            let alive = u.driver.agent.filter(|a| {
                self.links
                    .get(a)
                    .is_some_and(|l| l.state != LinkState::Dead)
            });
            let agent = match alive {
                Some(a) => a,
                None => {
                    let a = self.agent_for_new_unit(target);
                    if let Some(u) = self.units.get_mut(&target) {
                        u.driver.agent = Some(a);
                    }
                    a
                }
            };
            if !self
                .links
                .get(&agent)
                .is_some_and(|l| l.state == LinkState::Ready)
            {
                return self.defer(socket, line);
            }
            return self.send_to_agent(agent, socket, id, method, params, None);
        }
        if u.restoring {
            return self.defer(socket, line);
        }
        if u.driver.phase != Phase::Ready {
            self.admit(target, socket)?;
            self.ensure_session(target);
            return self.defer(socket, line);
        }
        let Some(agent) = u.driver.agent else {
            return Err(RpcError::other("the session has no agent; retry"));
        };
        if unit.is_some() && params.get("sessionId").is_some() {
            params["sessionId"] = json!(u.driver.agent_session);
        }
        self.send_to_agent(agent, socket, id, method, params, unit)
    }

    /// Sends a device's request (answer mapped back to `socket`) or notification to an agent.
    fn send_to_agent(
        &mut self,
        agent: AgentId,
        socket: SocketId,
        id: Option<&Value>,
        method: &str,
        params: Value,
        unit: Option<UnitId>,
    ) -> Result<(), RpcError> {
        match id {
            Some(id) => {
                let track = match unit {
                    Some(_) => Track::of(method, &params),
                    None => Track::None,
                };
                let pending = Pending::Forward {
                    socket,
                    device_id: id.clone(),
                    unit,
                    track,
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
    pub(super) fn device_answer(
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
        let ask = match u.driver.take_ask(&ask_id) {
            Ok(ask) => ask,
            Err(gone) => {
                match &gone {
                    AskGone::Settled { by } => log::info!(
                        "{socket}: late answer to {ask_id}, already settled by {by}; ignored"
                    ),
                    AskGone::Unknown => {
                        log::info!("{socket}: answer to unknown ask {ask_id}; ignored")
                    }
                }
                if let Some(err) = gone.error() {
                    self.send_error(socket, &id, &err);
                }
                return;
            }
        };
        let summary = crate::core::driver::answer_summary(&outcome);
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
    pub(super) fn resolved(&mut self, unit: UnitId, ask_id: &str, outcome: Value, by: &str) {
        if let Some(u) = self.units.get_mut(&unit) {
            u.driver.settled(ask_id.to_owned(), by.to_owned());
            let session = u.session_id.clone();
            let ask_id = ask_id.to_owned();
            self.out
                .push_back(Output::Event(crate::core::events::RelayEvent::AskSettled {
                    session,
                    ask_id,
                }));
        }
        let note = rpc::notification(
            "_relay/ask_resolved",
            json!({"id": ask_id, "outcome": outcome, "by": by}),
        );
        self.write_unit_for(unit, &note, Plain::None);
    }

    /// Settles every open ask of a unit (cancel, turn end, agent exit).
    pub(super) fn settle_all(
        &mut self,
        unit: UnitId,
        outcome: Value,
        by: &str,
        answer_agent: bool,
    ) {
        let Some(u) = self.units.get_mut(&unit) else {
            return;
        };
        let asks: Vec<(String, Ask)> = u.driver.take_asks();
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
}
