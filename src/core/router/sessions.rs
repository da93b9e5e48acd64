//! Session lifecycle: minting, opening and ending units, `session/new`,
//! `session/load`, `session/list`, `session/close`. Performs no I/O.

use super::*;

/// Metadata of one session, as the router keeps it and the store records it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionMeta {
    pub session_id: String,
    pub title: Option<String>,
    pub cwd: String,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Milliseconds since the Unix epoch, of the last frame; the store keeps
    /// the sessions with the newest `updated_ms`.
    pub updated_ms: u64,
    /// The agent's id for the session, to resume it with ACP `session/load`.
    pub agent_session: Option<String>,
    /// The project it runs in, by name (`None`: recorded before projects
    /// had names; the default project).
    pub project: Option<String>,
    /// The agent it runs on, by name (`None`: the default agent).
    pub agent: Option<String>,
    /// The newest `rseq` that may have been handed out: numbering resumes
    /// after it. Read back from the store it is the largest of the last
    /// frame, the last `head_seq` recorded and the durable reservation.
    pub head_seq: u64,
}

/// The router's name for [`SessionMeta`] of a session in the store.
pub type StoredInfo = SessionMeta;

/// A write to the session store.
#[derive(Debug)]
pub enum Persist {
    /// Append a stamped frame to the session's transcript.
    Frame { session: String, frame: Frame },
    /// Record the session's metadata (last one wins).
    Meta(SessionMeta),
    /// Flush and fsync the session's transcript.
    Sync { session: String },
    /// Durably reserve numbers up to `upto` (written and fsync'd), then
    /// acknowledge with [`Input::Durable`].
    Reserve { session: String, upto: u64 },
    /// Write out and fsync every frame up to `upto`, then acknowledge with
    /// [`Input::Durable`].
    Durable { session: String, upto: u64 },
    /// Numbering of the session ends exactly at `head` (a clean stop, or the
    /// session ended): recorded and fsync'd, so devices resume without reset.
    End { session: String, head: u64 },
    /// Remove the session's transcript.
    Delete { session: String },
}

/// A socket waiting for a stored session to be restored.
#[derive(Debug)]
pub(super) enum Waiter {
    /// Connected with `?session_id=`: attach with its `last_seq`.
    Attach {
        socket: SocketId,
        last_seq: Option<u64>,
    },
    /// Sent `session/load` (`replay`) or `session/resume`: switch and answer.
    Load {
        socket: SocketId,
        id: Value,
        replay: bool,
    },
}

impl Router {
    /// The agent's answer to opening the session (modes, models, config
    /// options, its own fields), under the relay's session id.
    pub(super) fn open_result(&self, unit: UnitId, sid: &str) -> Value {
        let mut r = self
            .units
            .get(&unit)
            .map(|u| u.driver.opened.clone())
            .unwrap_or(Value::Null);
        if !r.is_object() {
            r = json!({});
        }
        r["sessionId"] = json!(sid);
        r
    }

    /// Adds sessions found in the store (at startup).
    pub fn add_stored(&mut self, infos: impl IntoIterator<Item = StoredInfo>) {
        for info in infos {
            self.remember_stored(info);
        }
    }

    fn remember_stored(&mut self, info: StoredInfo) {
        self.stored.insert(info.session_id.clone(), info);
        while self.stored.len() > self.cfg.keep_sessions.max(1) {
            let Some(oldest) = self
                .stored
                .values()
                .min_by_key(|i| i.updated_ms)
                .map(|i| i.session_id.clone())
            else {
                break;
            };
            log::info!(
                "forgetting stored session {}: more than --keep-sessions {}",
                crate::logger::peer(&oldest),
                self.cfg.keep_sessions
            );
            self.stored.remove(&oldest);
        }
    }

    fn info_of(&self, unit: UnitId) -> Option<StoredInfo> {
        let u = self.units.get(&unit)?;
        let (project, agent) = self.place_names(u.place);
        Some(StoredInfo {
            session_id: u.session_id.clone()?,
            title: u.title.clone(),
            cwd: self.project_cwd(u.place.project).to_owned(),
            created_ms: u.created_ms,
            updated_ms: u.updated_ms,
            agent_session: u.driver.resumable(),
            project: Some(project),
            agent: Some(agent),
            head_seq: u.hub.ring.stamped(),
        })
    }

    /// Records a claimed unit's metadata. The first time, its transcript
    /// starts with every frame its ring holds (those stamped before it was
    /// claimed too), so everything its stream held is on disk. An unclaimed
    /// unit is never stored.
    pub(super) fn persist_meta(&mut self, unit: UnitId) {
        let Some(u) = self.units.get_mut(&unit) else {
            return;
        };
        if !u.claimed || u.session_id.is_none() || self.stopping {
            return;
        }
        let first = !std::mem::replace(&mut u.persisted, true);
        let Some(info) = self.info_of(unit) else {
            return;
        };
        let session = info.session_id.clone();
        self.out.push_back(Output::Persist(Persist::Meta(info)));
        if first && let Some(u) = self.units.get(&unit) {
            for frame in u.hub.ring.range(0, u.hub.ring.stamped()) {
                self.out.push_back(Output::Persist(Persist::Frame {
                    session: session.clone(),
                    frame: frame.clone(),
                }));
            }
        }
    }

    /// Whether `unit` is the placeholder: the default before any device
    /// opened it (unclaimed, no session, no agent session opening). It
    /// holds no session, so it does not count toward `--max-sessions` or
    /// `/metrics`' live sessions; it may hold an idle agent process, which
    /// [`Router::fit_placeholder`] keeps within the cap.
    pub(super) fn is_placeholder(&self, unit: UnitId) -> bool {
        unit == self.default_unit
            && self.units.get(&unit).is_some_and(|u| {
                !u.claimed && u.session_id.is_none() && u.driver.phase == Phase::Idle
            })
    }

    /// The live sessions `--max-sessions` bounds: every unit but the
    /// placeholder (sessions still opening or being restored count).
    pub(super) fn live_count(&self) -> usize {
        // Only the default can be the placeholder.
        self.units.len() - usize::from(self.is_placeholder(self.default_unit))
    }

    /// Mints a unit for `requester`, first evicting one when
    /// `--max-sessions` are live. When every live session is busy, viewed
    /// by another device, opening, restoring or the default, the open is
    /// refused: the cap holds for every kind of socket.
    pub(super) fn mint_unit_capped(&mut self, requester: SocketId) -> Result<UnitId, RpcError> {
        self.make_room(requester)?;
        Ok(self.mint_unit())
    }

    /// Lets `unit` become a live session for `requester`: the placeholder
    /// needs a slot under `--max-sessions` before a device claims it or
    /// opens its agent session; any other unit is live already.
    pub(super) fn admit(&mut self, unit: UnitId, requester: SocketId) -> Result<(), RpcError> {
        if self.is_placeholder(unit) {
            self.make_room(requester)?;
        }
        Ok(())
    }

    /// Frees a slot under `--max-sessions` for one more live session, by
    /// eviction if it must; refuses when no session may be ended.
    fn make_room(&mut self, requester: SocketId) -> Result<(), RpcError> {
        let max = self.cfg.max_sessions.max(1);
        if self.live_count() >= max && !self.evict_one(requester) {
            self.cap_refused += 1;
            if self.cap_refused == 1 {
                log::warn!(
                    "{} sessions live, every one busy, viewed by another device or the default: refusing new ones (--max-sessions {max}) until a session is closed or left",
                    self.live_count(),
                );
            }
            return Err(RpcError::new(
                code::LIMIT,
                format!(
                    "this relay runs its most sessions (--max-sessions {max}) and every one is in use; close a session (session/close) or leave one idle, or restart the relay with a larger --max-sessions"
                ),
            ));
        }
        if self.cap_refused > 0 {
            log::info!(
                "a session slot is free again; {} session opens were refused at --max-sessions {max}",
                std::mem::take(&mut self.cap_refused),
            );
        }
        Ok(())
    }

    /// Ends the oldest live unit that is not the default, not busy, not
    /// restoring, not opening and viewed by no `/ws` socket but
    /// `requester`; `false` when every unit is protected. The requester's
    /// own view does not protect: a `/ws` socket leaves it when its open
    /// succeeds. A plain `/acp` socket keeps every session it opened in
    /// view, so those count toward `--max-sessions` and may be evicted (it
    /// hears "unknown session" and may `session/load` it again).
    fn evict_one(&mut self, requester: SocketId) -> bool {
        let opening: Vec<UnitId> = self.pending_new.iter().map(|(_, _, u)| *u).collect();
        let victim = self
            .units
            .iter()
            .filter(|(id, u)| {
                **id != self.default_unit
                    && !u.busy()
                    && !u.driver.has_asks()
                    && u.hub.relay_viewers().all(|s| s == requester)
                    && !u.restoring
                    && !opening.contains(id)
            })
            // Unviewed sessions first, then those only the requester or
            // /acp sockets view.
            .min_by_key(|(_, u)| (u.hub.is_viewed(), u.updated_ms))
            .map(|(id, _)| *id);
        let Some(unit) = victim else {
            return false;
        };
        let sid = self
            .units
            .get(&unit)
            .and_then(|u| u.session_id.clone())
            .unwrap_or_default();
        log::info!(
            "evicting session {} ({unit}): {} sessions live, the --max-sessions cap; it stays in the store",
            crate::logger::peer(&sid),
            self.live_count()
        );
        self.end_unit(unit, "evicted");
        true
    }

    /// With an agent per session, the placeholder's idle agent is a process
    /// beyond the live sessions: once they fill `--max-sessions` it is
    /// stopped, so there are never more agent processes than the cap (the
    /// default starts another when a device claims it). An agent still
    /// initializing or answering a request is left to finish; this runs
    /// again when its `initialize` is answered.
    pub(super) fn fit_placeholder(&mut self) {
        let default = self.default_unit;
        if !self.cfg.agent_per_session
            || !self.is_placeholder(default)
            || self.live_count() < self.cfg.max_sessions.max(1)
        {
            return;
        }
        let Some(agent) = self.units.get(&default).and_then(|u| u.driver.agent) else {
            return;
        };
        let idle = self
            .links
            .get(&agent)
            .is_some_and(|l| l.state == LinkState::Ready && l.pending.is_empty());
        let waited_on = self.deferred.iter().any(|d| d.agent == Some(agent));
        if !idle || waited_on {
            return;
        }
        log::info!(
            "{agent}: the idle agent of the unopened default session; stopping it, {} sessions fill --max-sessions {}",
            self.live_count(),
            self.cfg.max_sessions
        );
        self.park_and_end(agent);
    }

    /// Brings a stored session back as a live unit: its transcript is read by
    /// the shell, its agent session resumes on the next prompt.
    pub(super) fn resume_stored(&mut self, sid: &str, waiter: Waiter) -> Result<(), RpcError> {
        let Some(info) = self.stored.get(sid) else {
            return Err(RpcError::invalid_params(format!(
                "unknown session '{sid}'; call session/list for the sessions this relay knows"
            )));
        };
        let place = self.place_of_stored(info)?;
        let requester = match &waiter {
            Waiter::Attach { socket, .. } | Waiter::Load { socket, .. } => *socket,
        };
        self.make_room(requester)?;
        // Eviction may have pruned the store.
        let info = self.stored.remove(sid).ok_or_else(|| {
            RpcError::other(format!(
                "session '{sid}' left the store (--keep-sessions) while making room; call session/list"
            ))
        })?;
        let unit = self.mint_unit();
        // With an agent per session, an unclaimed default hands its idle agent
        // to the session loaded instead of costing a process of its own.
        let default = self.default_unit;
        let idle_agent = match self.units.get_mut(&default) {
            Some(d)
                if self.cfg.agent_per_session
                    && !d.claimed
                    && d.driver.phase == Phase::Idle
                    && d.place == place =>
            {
                d.driver.agent.take()
            }
            _ => None,
        };
        if let Some(u) = self.units.get_mut(&unit) {
            u.place = place;
            if idle_agent.is_some() {
                u.driver.agent = idle_agent;
            }
            u.session_id = Some(info.session_id.clone());
            u.claimed = true;
            u.title = info.title.clone();
            u.created_ms = info.created_ms;
            u.updated_ms = info.updated_ms;
            u.driver.resume_from = info.agent_session.clone();
            u.restoring = true;
            u.persisted = true;
            u.stored_head = info.head_seq;
        }
        self.by_session.insert(info.session_id.clone(), unit);
        self.fit_placeholder();
        self.restoring.entry(unit).or_default().push(waiter);
        log::info!(
            "resuming stored session {} into {unit}",
            crate::logger::peer(sid)
        );
        self.out.push_back(Output::Restore {
            unit,
            session: info.session_id,
        });
        Ok(())
    }

    /// The shell read a unit's transcript: fill its ring, let the waiters in.
    pub(super) fn restored(
        &mut self,
        unit: UnitId,
        frames: Vec<Frame>,
        head: u64,
        error: Option<String>,
    ) {
        let waiters = self.restoring.remove(&unit).unwrap_or_default();
        let Some(u) = self.units.get_mut(&unit) else {
            return;
        };
        u.restoring = false;
        if let Some(e) = error {
            log::warn!(
                "{unit}: transcript of {} could not be read ({e}); continuing with an empty history",
                crate::logger::peer(u.session_id.as_deref().unwrap_or_default())
            );
        }
        // Numbering resumes after everything ever stamped, even when the
        // transcript could not be read: an rseq is never handed out twice.
        let head = head.max(u.stored_head);
        u.hub.restore(frames, head);
        self.recount_rings();
        self.enforce_budget(Some(unit), 0);
        let Some(u) = self.units.get_mut(&unit) else {
            return;
        };
        // Ask ids must not repeat ones in the history either.
        let head = u.hub.ring.head();
        u.driver.number_asks_after(head);
        for w in waiters {
            match w {
                Waiter::Attach { socket, last_seq } => {
                    let Some(s) = self.sockets.get_mut(&socket) else {
                        continue;
                    };
                    s.unit = unit;
                    let client = s.client.clone();
                    self.remember_client(&client, unit);
                    self.clients.insert(client, unit);
                    self.attach(socket, unit, last_seq);
                }
                Waiter::Load { socket, id, replay } => self.answer_load(socket, id, unit, replay),
            }
        }
        self.run_deferred();
    }

    pub(super) fn mint_unit(&mut self) -> UnitId {
        self.next_unit += 1;
        let id = UnitId(self.next_unit);
        let ring = ReplayRing::new(self.cfg.ring_frames, self.cfg.ring_bytes);
        let epoch = self.cfg.epoch_seed.wrapping_add(self.next_unit);
        self.units.insert(id, Unit::new(ring, epoch, self.now_ms));
        id
    }

    /// Makes sure the unit has (or is getting) an agent process, without
    /// opening an agent session.
    pub(super) fn ensure_agent(&mut self, unit: UnitId) {
        let Some(u) = self.units.get(&unit) else {
            return;
        };
        if u.driver.agent.is_some_and(|a| {
            self.links
                .get(&a)
                .is_some_and(|l| l.state != LinkState::Dead)
        }) {
            return;
        }
        let agent = self.agent_for_new_unit(unit);
        if let Some(u) = self.units.get_mut(&unit) {
            u.driver.agent = Some(agent);
        }
    }

    /// Opens the default session's agent session before any device claims
    /// it, as the relay did eagerly before it opened it lazily (router tests
    /// start from there).
    #[cfg(test)]
    pub(crate) fn open_default(&mut self) {
        let unit = self.default_unit;
        self.ensure_session(unit);
    }

    /// Makes sure the unit has (or is getting) an agent session.
    pub(super) fn ensure_session(&mut self, unit: UnitId) {
        let Some(u) = self.units.get(&unit) else {
            return;
        };
        if u.driver.phase != Phase::Idle {
            return;
        }
        let agent = match u.driver.agent.filter(|a| {
            self.links
                .get(a)
                .is_some_and(|l| l.state != LinkState::Dead)
        }) {
            Some(a) => a,
            None => self.agent_for_new_unit(unit),
        };
        let ready = self
            .links
            .get(&agent)
            .is_some_and(|l| l.state == LinkState::Ready);
        if let Some(u) = self.units.get_mut(&unit) {
            u.driver.agent = Some(agent);
            u.driver.phase = Phase::Opening;
        }
        if ready {
            self.open_session(unit);
        }
    }

    pub(super) fn session_new(
        &mut self,
        socket: SocketId,
        reply_id: &Value,
        params: &Value,
    ) -> Result<(), RpcError> {
        let place = self.place_for_new(params)?;
        let default = self.default_unit;
        let unit = match self.units.get(&default) {
            Some(u) if !u.claimed && u.place == place => {
                self.admit(default, socket)?;
                default
            }
            _ => {
                let unit = self.mint_unit_capped(socket)?;
                if let Some(u) = self.units.get_mut(&unit) {
                    u.claimed = true;
                    u.place = place;
                }
                // The placeholder stays for another place: its idle agent
                // must not make one process more than the cap.
                self.fit_placeholder();
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
            .map(|u| (u.driver.phase, u.session_id.clone()))
        {
            Some((Phase::Ready, Some(sid))) => {
                let replay = !self.views(socket, unit);
                self.switch_view(socket, unit, replay);
                let result = self.open_result(unit, &sid);
                self.send_result(socket, reply_id, result);
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

    /// Whether a socket views a unit now.
    fn views(&self, socket: SocketId, unit: UnitId) -> bool {
        self.units.get(&unit).is_some_and(|u| u.hub.views(socket))
    }

    pub(super) fn answer_pending_new(&mut self, unit: UnitId) {
        let (mine, rest): (Vec<_>, Vec<_>) =
            self.pending_new.drain(..).partition(|(_, _, u)| *u == unit);
        self.pending_new = rest.into();
        let sid = self.units.get(&unit).and_then(|u| u.session_id.clone());
        for (socket, id, _) in mine {
            if self.sockets.contains_key(&socket) {
                // A socket viewing the unit already (the default it claimed)
                // has every frame: a welcome without a replay.
                let replay = !self.views(socket, unit);
                self.switch_view(socket, unit, replay);
                let result = self.open_result(unit, sid.as_deref().unwrap_or_default());
                self.send_result(socket, &id, result);
            }
        }
    }

    pub(super) fn fail_pending_new(&mut self, unit: UnitId, why: &str) {
        self.fail_pending_new_with(unit, &RpcError::other(why.to_string()));
    }

    /// Answers every `session/new` waiting for `unit` with `err`.
    pub(super) fn fail_pending_new_with(&mut self, unit: UnitId, err: &RpcError) {
        let (mine, rest): (Vec<_>, Vec<_>) =
            self.pending_new.drain(..).partition(|(_, _, u)| *u == unit);
        self.pending_new = rest.into();
        for (socket, id, _) in mine {
            self.send_error(socket, &id, err);
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
            let waiter = Waiter::Load {
                socket,
                id: reply_id.clone(),
                replay,
            };
            return self.resume_stored(sid, waiter);
        };
        if self.units.get(&unit).is_some_and(|u| u.restoring) {
            let waiters = self.restoring.entry(unit).or_default();
            if waiters.len() >= MAX_DEFERRED_LINES {
                return Err(RpcError::new(
                    code::LIMIT,
                    "too many devices wait for this session to load; retry in a moment",
                ));
            }
            waiters.push(Waiter::Load {
                socket,
                id: reply_id.clone(),
                replay,
            });
            return Ok(());
        }
        self.answer_load(socket, reply_id.clone(), unit, replay);
        Ok(())
    }

    /// Live sessions and stored ones, most recently updated first.
    pub(super) fn session_list(&self) -> Vec<Value> {
        let mut rows: Vec<(u64, Value)> = self
            .units
            .values()
            // An unclaimed session (the default nobody asked for) is not listed.
            .filter(|u| u.claimed)
            .filter_map(|u| {
                let sid = u.session_id.as_ref()?;
                let (project, agent) = self.place_names(u.place);
                Some((
                    u.updated_ms,
                    json!({
                        "sessionId": sid,
                        "cwd": self.project_cwd(u.place.project),
                        "title": u.title,
                        "updatedAt": iso8601(u.updated_ms),
                        "_meta": {"relay": {"busy": u.busy(), "live": true, "pendingAsks": u.driver.open_asks(), "project": project, "agent": agent}}
                    }),
                ))
            })
            .collect();
        rows.extend(
            self.stored
                .values()
                .filter(|i| !self.by_session.contains_key(&i.session_id))
                .map(|i| {
                    let (project, agent) = match self.place_of_stored(i) {
                        Ok(place) => self.place_names(place),
                        // Recorded under names this relay no longer has.
                        Err(_) => (
                            i.project.clone().unwrap_or_default(),
                            i.agent.clone().unwrap_or_default(),
                        ),
                    };
                    (
                        i.updated_ms,
                        json!({
                            "sessionId": i.session_id,
                            "cwd": i.cwd,
                            "title": i.title,
                            "updatedAt": iso8601(i.updated_ms),
                            "_meta": {"relay": {"busy": false, "live": false, "project": project, "agent": agent}}
                        }),
                    )
                }),
        );
        rows.sort_by_key(|r| std::cmp::Reverse(r.0));
        rows.into_iter().map(|(_, v)| v).collect()
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

    /// `_relay/session/delete {sessionId}`: removes a stored session (its
    /// transcript and its listing). A live session is ended first, unless a
    /// turn is running (refused: cancel it or wait). Deleting the default
    /// session gives the relay a fresh, unclaimed default.
    pub(super) fn session_delete(
        &mut self,
        socket: SocketId,
        reply_id: &Value,
        params: &Value,
    ) -> Result<(), RpcError> {
        let sid = params["sessionId"].as_str().ok_or_else(|| {
            RpcError::invalid_params("_relay/session/delete needs params.sessionId (a string)")
        })?;
        let live = self.by_session.get(sid).copied();
        if live.is_none() && !self.stored.contains_key(sid) {
            return Err(RpcError::invalid_params(format!(
                "unknown session '{sid}'; call session/list for the sessions this relay knows"
            )));
        }
        if let Some(unit) = live {
            let Some(u) = self.units.get(&unit) else {
                return Err(RpcError::other("the session ended; retry"));
            };
            if u.busy() {
                return Err(RpcError::new(
                    code::BUSY,
                    "the session is running a turn; send session/cancel or wait for it to end, then delete it",
                ));
            }
            if u.restoring {
                return Err(RpcError::new(
                    code::BUSY,
                    "the session is being loaded; retry in a moment",
                ));
            }
            if unit == self.default_unit {
                let fresh = self.mint_unit();
                self.default_unit = fresh;
                self.ensure_agent(fresh);
            }
            self.end_unit(unit, "deleted by a device");
        }
        self.stored.remove(sid);
        self.out.push_back(Output::Persist(Persist::Delete {
            session: sid.to_owned(),
        }));
        log::info!("{socket}: deleted session {}", crate::logger::peer(sid));
        self.send_result(socket, reply_id, json!({}));
        Ok(())
    }

    /// Ends a live unit: viewers move to the default session, its agent session ends.
    pub(super) fn end_unit(&mut self, unit: UnitId, why: &str) {
        self.unit_ending(unit);
        if let Some(info) = self
            .info_of(unit)
            .filter(|_| self.units.get(&unit).is_some_and(|u| u.persisted))
        {
            self.persist_end(unit);
            self.remember_stored(info);
        }
        let Some(u) = self.units.remove(&unit) else {
            return;
        };
        self.recount_rings();
        log::info!(
            "{unit}: session {} ended ({why})",
            crate::logger::peer(u.session_id.as_deref().unwrap_or_default())
        );
        if let Some(sid) = &u.session_id {
            self.by_session.remove(sid);
        }
        if let Some(agent) = u.driver.agent {
            if let (Some(asid), Some(l)) = (&u.driver.agent_session, self.links.get_mut(&agent)) {
                l.sessions.remove(asid);
            }
            if self.cfg.agent_per_session {
                self.out.push_back(Output::KillAgent { agent });
            }
        }
        let default = self.default_unit;
        // A plain socket keeps its other sessions; a relay socket moves to the default.
        for socket in u.hub.relay_viewers() {
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
