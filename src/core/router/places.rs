//! Projects and agents: where a session runs. `session/new` picks a project
//! (its jail) from its `cwd` or `_meta.relay.project`, and an agent from
//! `_meta.relay.agent`; a stored session comes back to the same two. One
//! shared agent process serves each (agent, project); each agent's
//! `initialize` answer is cached from its first start; an agent with no busy
//! session is stopped after `--agent-idle`. Performs no I/O.

use super::*;
use crate::core::ids::AgentKind;

/// Most projects one relay serves (`--workspace NAME=DIR`).
pub const MAX_PROJECTS: usize = 64;
/// Most agents one relay is configured with (`--agent NAME=CMD`).
pub const MAX_AGENT_KINDS: usize = 16;
/// Default `--agent-idle`: ten minutes.
pub const DEFAULT_AGENT_IDLE_MS: u64 = 10 * 60 * 1000;

/// One configured project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectCfg {
    pub name: String,
    /// Its directory: absolute and canonical.
    pub path: String,
}

/// The config within [`MAX_PROJECTS`] and [`MAX_AGENT_KINDS`] (the CLI
/// refuses more; the rest are dropped here, so every map keyed by them is
/// bounded whoever builds the router).
pub(super) fn bounded(mut cfg: RouterConfig) -> RouterConfig {
    if cfg.projects.len() > MAX_PROJECTS || cfg.agents.len() > MAX_AGENT_KINDS {
        log::warn!(
            "{} projects and {} agents configured; using the first {MAX_PROJECTS} and {MAX_AGENT_KINDS}",
            cfg.projects.len(),
            cfg.agents.len()
        );
        cfg.projects.truncate(MAX_PROJECTS);
        cfg.agents.truncate(MAX_AGENT_KINDS);
    }
    cfg
}

/// Whether absolute `path` is `root` or lies beneath it, component-wise;
/// a path with a `..` component is never inside (no I/O resolves it).
fn within(path: &str, root: &str) -> bool {
    if !path.starts_with('/') {
        return false;
    }
    let parts = |p: &'_ str| -> Option<Vec<String>> {
        let mut v = Vec::new();
        for c in p.split('/') {
            match c {
                "" | "." => {}
                ".." => return None,
                c => v.push(c.to_owned()),
            }
        }
        Some(v)
    };
    match (parts(path), parts(root)) {
        (Some(p), Some(r)) => p.len() >= r.len() && p[..r.len()] == r[..],
        _ => false,
    }
}

impl Router {
    pub(super) fn project_cwd(&self, p: ProjectId) -> &str {
        self.cfg
            .projects
            .get(p.0 as usize)
            .map_or(self.cfg.cwd.as_str(), |p| p.path.as_str())
    }

    pub(super) fn project_name(&self, p: ProjectId) -> &str {
        self.cfg
            .projects
            .get(p.0 as usize)
            .map_or("workspace", |p| p.name.as_str())
    }

    pub(super) fn agent_name(&self, k: AgentKind) -> &str {
        self.cfg
            .agents
            .get(k.0 as usize)
            .map_or("agent", String::as_str)
    }

    /// "api (/home/me/api), web (/home/me/web)", for errors.
    fn project_choices(&self) -> String {
        let n = self.cfg.projects.len().max(1) as u64;
        (0..n)
            .map(|i| {
                let p = ProjectId(i);
                format!("{} ({})", self.project_name(p), self.project_cwd(p))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn project_named(&self, name: &str) -> Option<ProjectId> {
        let n = self.cfg.projects.len().max(1) as u64;
        (0..n)
            .map(ProjectId)
            .find(|p| self.project_name(*p) == name)
    }

    fn agent_named(&self, name: &str) -> Option<AgentKind> {
        let n = self.cfg.agents.len().max(1) as u64;
        (0..n).map(AgentKind).find(|k| self.agent_name(*k) == name)
    }

    fn agent_choices(&self) -> String {
        let n = self.cfg.agents.len().max(1) as u64;
        (0..n)
            .map(|k| self.agent_name(AgentKind(k)).to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The project whose directory holds `cwd` (the innermost, when projects
    /// nest). With one project any `cwd` means it: a stdio client bridged by
    /// `acp-relay connect` sends its own machine's directory.
    fn project_of_cwd(&self, cwd: &str) -> Option<ProjectId> {
        let best = self
            .cfg
            .projects
            .iter()
            .enumerate()
            .filter(|(_, p)| within(cwd, &p.path))
            .max_by_key(|(_, p)| p.path.len())
            .map(|(i, _)| ProjectId(i as u64));
        best.or_else(|| (self.cfg.projects.len() <= 1).then_some(ProjectId(0)))
    }

    /// The agent `params._meta.relay.agent` names, `None` when it names none.
    fn agent_in(&self, params: &Value) -> Result<Option<AgentKind>, RpcError> {
        match &params["_meta"]["relay"]["agent"] {
            Value::Null => Ok(None),
            Value::String(name) => self.agent_named(name).map(Some).ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "unknown agent '{name}' in _meta.relay.agent; this relay runs: {}",
                    self.agent_choices()
                ))
            }),
            _ => Err(RpcError::invalid_params(
                "_meta.relay.agent must be an agent's name (a string); initialize lists them under _meta.relay.agents",
            )),
        }
    }

    /// Where a `session/new` asks to run: `_meta.relay.project` by name,
    /// else the project holding its `cwd`; `_meta.relay.agent` by name, else
    /// the default agent.
    pub(super) fn place_for_new(&self, params: &Value) -> Result<Place, RpcError> {
        let meta = &params["_meta"]["relay"];
        let agent = self.agent_in(params)?.unwrap_or(AgentKind(0));
        let project = match (&meta["project"], &params["cwd"]) {
            (Value::String(name), _) => self.project_named(name).ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "unknown project '{name}' in _meta.relay.project; this relay serves: {}",
                    self.project_choices()
                ))
            })?,
            (Value::Null, Value::Null) => ProjectId(0),
            (Value::Null, Value::String(cwd)) => self.project_of_cwd(cwd).ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "cwd '{cwd}' is not inside a project this relay serves; use a directory in one of: {} (or name one in _meta.relay.project)",
                    self.project_choices()
                ))
            })?,
            (Value::Null, _) => {
                return Err(RpcError::invalid_params(
                    "cwd must be an absolute path (a string) inside one of the relay's projects",
                ));
            }
            _ => {
                return Err(RpcError::invalid_params(
                    "_meta.relay.project must be a project's name (a string); _relay/projects lists them",
                ));
            }
        };
        Ok(Place { agent, project })
    }

    /// Where a stored session ran. A record without names (older than
    /// projects) goes by its `cwd`, else to the defaults; a name this relay
    /// no longer has is refused (never another project's jail).
    pub(super) fn place_of_stored(&self, info: &StoredInfo) -> Result<Place, RpcError> {
        let sid = &info.session_id;
        let project = match &info.project {
            Some(name) => self.project_named(name).ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "session '{sid}' ran in project '{name}', which this relay does not serve; restart it with --workspace {name}=DIR to load it"
                ))
            })?,
            None => self.project_of_cwd(&info.cwd).unwrap_or(ProjectId(0)),
        };
        let agent = match &info.agent {
            Some(name) => self.agent_named(name).ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "session '{sid}' ran on agent '{name}', which this relay does not run; restart it with --agent {name}='CMD' to load it"
                ))
            })?,
            None => AgentKind(0),
        };
        Ok(Place { agent, project })
    }

    /// The project of the session a socket views.
    pub(super) fn socket_project(&self, socket: SocketId) -> ProjectId {
        self.sockets
            .get(&socket)
            .and_then(|s| self.units.get(&s.unit))
            .map_or(ProjectId(0), |u| u.place.project)
    }

    /// The live shared agent of a place.
    pub(super) fn shared_agent(&self, place: Place) -> Option<AgentId> {
        self.shared.get(&place).copied().filter(|a| {
            self.links
                .get(a)
                .is_some_and(|l| l.state != LinkState::Dead)
        })
    }

    /// The agent takes no new sessions of its place.
    pub(super) fn forget_shared(&mut self, agent: AgentId) {
        self.shared.retain(|_, a| *a != agent);
    }

    /// Keeps an agent's `initialize` answer for its kind.
    pub(super) fn cache_init(&mut self, agent: AgentId) {
        if let Some((kind, init)) = self
            .links
            .get(&agent)
            .and_then(|l| Some((l.place.agent, l.init.clone()?)))
        {
            self.inits.insert(kind, init);
        }
    }

    /// The default agent's `initialize` answer: a running one's, else the
    /// cached one (so a device's `initialize` never starts an agent that
    /// was stopped as idle).
    pub(super) fn ready_init(&self) -> Option<Value> {
        // The oldest running one, so the answer does not depend on map order.
        self.links
            .iter()
            .filter(|(_, l)| l.place.agent == AgentKind(0) && l.state == LinkState::Ready)
            .filter(|(_, l)| l.init.is_some())
            .min_by_key(|(a, _)| **a)
            .and_then(|(_, l)| l.init.clone())
            .or_else(|| self.inits.get(&AgentKind(0)).cloned())
    }

    /// `_meta.relay.agents` and `_meta.relay.projects` for `initialize`:
    /// each agent with its own capabilities once it has started (null
    /// before: an unused agent is never started to ask).
    pub(super) fn places_meta(&self) -> (Value, Value) {
        let kinds = self.cfg.agents.len().max(1) as u64;
        let agents: Vec<Value> = (0..kinds)
            .map(AgentKind)
            .map(|k| {
                let init = self.inits.get(&k);
                json!({
                    "name": self.agent_name(k),
                    "default": k.0 == 0,
                    "initialized": init.is_some(),
                    "agentCapabilities": init.map(|i| i["agentCapabilities"].clone()),
                    "agentInfo": init.map(|i| i["agentInfo"].clone()),
                    "authMethods": init.map(|i| i["authMethods"].clone()),
                })
            })
            .collect();
        let n = self.cfg.projects.len().max(1) as u64;
        let projects: Vec<Value> = (0..n)
            .map(ProjectId)
            .map(|p| json!({"name": self.project_name(p), "path": self.project_cwd(p), "default": p.0 == 0}))
            .collect();
        (json!(agents), json!(projects))
    }

    /// `_meta.relay.{project, agent}` of a session's `session/list` row.
    pub(super) fn place_names(&self, place: Place) -> (String, String) {
        (
            self.project_name(place.project).to_owned(),
            self.agent_name(place.agent).to_owned(),
        )
    }

    /// The agent an `authenticate` names in `_meta.relay.agent` (by name),
    /// working in `project`: a device logs an agent in before any session
    /// of it opens (an agent that wants a login refuses `session/new`).
    /// `None` when it names none.
    pub(super) fn auth_target(
        &mut self,
        params: &Value,
        project: ProjectId,
    ) -> Result<Option<AgentId>, RpcError> {
        let Some(agent) = self.agent_in(params)? else {
            return Ok(None);
        };
        let place = Place { agent, project };
        // Any live agent of that place will do (with --agent-per-session
        // there is no shared one); else one is started for it.
        let live = self.shared_agent(place).or_else(|| {
            self.links
                .iter()
                .filter(|(_, l)| l.place == place && l.state != LinkState::Dead && !l.retired)
                .map(|(a, _)| *a)
                .min()
        });
        Ok(Some(live.unwrap_or_else(|| {
            let a = self.spawn_agent(place);
            if !self.cfg.agent_per_session {
                self.shared.insert(place, a);
            }
            a
        })))
    }

    /// Records that an agent sent or was sent a line.
    pub(super) fn touch_agent(&mut self, agent: AgentId) {
        let now = self.now_ms;
        if let Some(l) = self.links.get_mut(&agent) {
            l.active_ms = now;
        }
    }

    /// When an agent may be stopped as idle; `None` while any of its
    /// sessions is busy (a turn, an ask, an open or a restore), a request
    /// or terminal of its is open, or a device line waits for it.
    fn idle_at(&self, agent: AgentId, l: &Link) -> Option<u64> {
        let idle = self.cfg.agent_idle_ms;
        if idle == 0 || l.state != LinkState::Ready || !l.pending.is_empty() {
            return None;
        }
        if !l.terminals.is_empty() || self.deferred.iter().any(|d| d.agent == Some(agent)) {
            return None;
        }
        let busy = self.units.iter().any(|(id, u)| {
            u.driver.agent == Some(agent)
                && (!u.driver.quiet()
                    || u.restoring
                    || self.pending_new.iter().any(|(_, _, p)| p == id))
        });
        (!busy).then(|| l.active_ms.saturating_add(idle))
    }

    /// The earliest time an agent becomes idle enough to stop.
    pub(super) fn idle_deadline(&self) -> Option<u64> {
        self.links
            .iter()
            .filter_map(|(a, l)| self.idle_at(*a, l))
            .min()
    }

    /// Stops every agent idle for `--agent-idle`: its sessions stay live
    /// and resume with `session/load` on a fresh agent at their next prompt.
    pub(super) fn stop_idle_agents(&mut self) {
        let now = self.now_ms;
        let mut idle: Vec<AgentId> = self
            .links
            .iter()
            .filter(|(a, l)| self.idle_at(**a, l).is_some_and(|t| t <= now))
            .map(|(a, _)| *a)
            .collect();
        idle.sort_unstable();
        for agent in idle {
            log::info!(
                "{agent}: no busy session for --agent-idle {}s; stopping it (its sessions resume on their next prompt)",
                self.cfg.agent_idle_ms / 1000
            );
            self.forget_shared(agent);
            self.park_and_end(agent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::within;

    #[test]
    fn within_is_component_wise() {
        assert!(within("/home/me/api", "/home/me/api"));
        assert!(within("/home/me/api/src/", "/home/me/api"));
        assert!(within("/home/me/api/./src", "/home/me/api/"));
        assert!(!within("/home/me/api2", "/home/me/api"));
        assert!(!within("/home/me/api/../web", "/home/me/api"));
        assert!(!within("home/me/api", "/home/me/api"));
        assert!(!within("/home/me", "/home/me/api"));
        assert!(within("/anything", "/"));
    }
}
