//! Session lifecycle: minting, opening and ending units, `session/new`,
//! `session/load`, `session/list`, `session/close`. Performs no I/O.

use super::*;

impl Router {
    pub(super) fn mint_unit(&mut self) -> UnitId {
        self.next_unit += 1;
        let id = UnitId(self.next_unit);
        let ring = ReplayRing::new(self.cfg.ring_frames, self.cfg.ring_bytes);
        let epoch = self.cfg.epoch_seed.wrapping_add(self.next_unit);
        self.units.insert(id, Unit::new(ring, epoch, self.now_ms));
        id
    }

    /// Makes sure the unit has (or is getting) an agent session.
    pub(super) fn ensure_session(&mut self, unit: UnitId) {
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

    pub(super) fn session_new(
        &mut self,
        socket: SocketId,
        reply_id: &Value,
    ) -> Result<(), RpcError> {
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

    pub(super) fn answer_pending_new(&mut self, unit: UnitId) {
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

    pub(super) fn fail_pending_new(&mut self, unit: UnitId, why: &str) {
        let (mine, rest): (Vec<_>, Vec<_>) =
            self.pending_new.drain(..).partition(|(_, _, u)| *u == unit);
        self.pending_new = rest.into();
        for (socket, id, _) in mine {
            self.send_error(socket, &id, &RpcError::other(why.to_string()));
        }
    }

    pub(super) fn session_load(
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

    pub(super) fn session_list(&self) -> Vec<Value> {
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

    pub(super) fn session_close(
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
    pub(super) fn end_unit(&mut self, unit: UnitId, why: &str) {
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
    pub(super) fn unit_for(&self, socket: SocketId, params: &Value) -> Result<UnitId, RpcError> {
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
}
