//! Randomized sequences (quinn's `Vec<Op>` style): devices, agents and the
//! store act in a random order; invariants are checked after every step:
//! `rseq` +1 per session and per viewer, every ask settled exactly once and
//! the agent answered at most once, no output to a closed socket, at most
//! one answer per request, every bound held.

use super::*;
use serde_json::json;

/// xorshift64*: tiny, deterministic, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> Option<&'a T> {
        if xs.is_empty() {
            None
        } else {
            xs.get(self.below(xs.len()))
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Open {
        client: usize,
        plain: bool,
        session: Option<String>,
        last_seq: Option<u64>,
    },
    Close(SocketId),
    Prompt(SocketId, Option<String>),
    Cancel(SocketId, Option<String>, bool),
    NewSession(SocketId),
    Load(SocketId, String, bool),
    CloseSession(SocketId, String),
    SetMode(SocketId, Option<String>),
    AnswerAsk(SocketId, String, bool),
    Garbage(SocketId),
    AgentUpdate(AgentId, String),
    AgentAsk(AgentId, String),
    AgentAnswer(AgentId, usize, bool),
    AgentRequest(AgentId),
    AgentExit(AgentId),
    JobDone(bool),
    /// Let virtual time pass and tick.
    Wait(u64),
}

/// Per relay socket: where its numbering stands.
#[derive(Debug, Default, Clone)]
struct View {
    head: u64,
    last_replayed: Option<u64>,
    max_ask: u64,
    live_next: Option<u64>,
}

#[derive(Default)]
struct Checker {
    views: HashMap<SocketId, View>,
    /// Frames of each socket already checked.
    seen_frames: HashMap<SocketId, usize>,
    /// Unstamped answers each socket got to its own ids.
    answers: HashMap<(SocketId, String), usize>,
    /// Per unit: newest rseq checked.
    ring_seen: HashMap<UnitId, u64>,
    /// Asks by the unit whose ring opened them (ids are unique per unit).
    asks_opened: HashSet<(UnitId, String)>,
    asks_resolved: HashMap<(UnitId, String), usize>,
    /// Answers written to agents, per (agent, agent request id).
    agent_answers: HashMap<(AgentId, String), usize>,
    agent_lines_seen: HashMap<AgentId, usize>,
}

use std::collections::HashSet;

fn is_ask(v: &Value) -> bool {
    v["id"].as_str().is_some_and(|i| i.starts_with("perm:")) && v["method"].is_string()
}

impl Checker {
    fn check(&mut self, sim: &mut Sim, asked: &[(AgentId, u64)]) -> Result<(), String> {
        sim.check_bounds()?;
        if let Some(v) = sim.violations.first() {
            return Err(v.clone());
        }
        // Per socket numbering.
        for (id, s) in &sim.sockets {
            let from = self.seen_frames.get(id).copied().unwrap_or(0);
            for f in &s.all[from..] {
                let v = parse(f);
                if s.plain {
                    if f.starts_with(b"{\"rseq\"") {
                        return Err(format!("{id} (plain) got a stamped frame: {v}"));
                    }
                } else {
                    let view = self.views.entry(*id).or_default();
                    if v["type"] == "relay_welcome" {
                        *view = View {
                            head: v["headSeq"].as_u64().unwrap_or(0),
                            ..View::default()
                        };
                    } else if let Some(n) = v["rseq"].as_u64() {
                        match view.live_next {
                            None if n <= view.head => {
                                // Open asks are sent again after the gap:
                                // they are checked for order only as the
                                // replay's last frames.
                                if is_ask(&v) {
                                    view.max_ask = view.max_ask.max(n);
                                } else {
                                    if view.last_replayed.is_some_and(|l| n <= l) {
                                        return Err(format!(
                                            "{id}: replay not increasing at {n}: {v}"
                                        ));
                                    }
                                    view.last_replayed = Some(n);
                                }
                            }
                            None => {
                                if view
                                    .last_replayed
                                    .is_some_and(|l| l.max(view.max_ask) != view.head)
                                {
                                    return Err(format!(
                                        "{id}: replay ended before the head {}: {view:?}",
                                        view.head
                                    ));
                                }
                                if n != view.head + 1 {
                                    return Err(format!(
                                        "{id}: first live frame {n} after head {}",
                                        view.head
                                    ));
                                }
                                view.live_next = Some(n + 1);
                            }
                            Some(next) => {
                                if n != next {
                                    return Err(format!(
                                        "{id}: live frame {n}, expected {next}: {v}"
                                    ));
                                }
                                view.live_next = Some(n + 1);
                            }
                        }
                    }
                }
                let own = format!("{}-", id.0);
                if v.get("method").is_none()
                    && v.get("rseq").is_none()
                    && let Some(rid) = v["id"].as_str().filter(|r| r.starts_with(&own))
                {
                    let n = self.answers.entry((*id, rid.to_owned())).or_default();
                    *n += 1;
                    if *n > 1 {
                        return Err(format!("{id} answered twice for {rid}: {v}"));
                    }
                }
            }
            self.seen_frames.insert(*id, s.all.len());
        }
        // Per unit: rseq +1; asks opened once, settled at most once.
        for (unit, u) in &sim.r.units {
            let seen = self
                .ring_seen
                .get(unit)
                .copied()
                .unwrap_or(u.hub.ring.head().min(u.stored_head));
            let seen = if u.restoring { u.hub.ring.head() } else { seen };
            for (expect, f) in (seen + 1..).zip(u.hub.ring.replay_since(Some(seen)).frames) {
                let v = parse(&f);
                let n = v["rseq"].as_u64().unwrap_or(0);
                if n != expect {
                    return Err(format!("{unit}: rseq {n}, expected {expect}"));
                }
                if is_ask(&v) {
                    let ask = v["id"].as_str().unwrap_or_default().to_owned();
                    if !self.asks_opened.insert((*unit, ask.clone())) {
                        return Err(format!("{unit}: ask id {ask} reused"));
                    }
                }
                if v["method"] == "_relay/ask_resolved" {
                    let ask = v["params"]["id"].as_str().unwrap_or_default().to_owned();
                    let n = self.asks_resolved.entry((*unit, ask.clone())).or_default();
                    *n += 1;
                    if *n > 1 {
                        return Err(format!("{unit}: ask {ask} settled twice"));
                    }
                }
            }
            self.ring_seen.insert(*unit, u.hub.ring.head());
        }
        let open: HashSet<(UnitId, String)> = sim
            .r
            .units
            .iter()
            .flat_map(|(id, u)| u.driver.ask_ids().map(|k| (*id, k.clone())))
            .collect();
        for ask in &self.asks_opened {
            let settled = self.asks_resolved.get(ask).copied().unwrap_or(0);
            // A unit that ended settled its asks in the same step (its
            // ring is gone): the agent-side check below covers those.
            let live = sim.r.units.contains_key(&ask.0);
            match (open.contains(ask), settled) {
                (true, 0) | (false, 1) => {}
                (false, 0) if !live => {}
                (true, _) => return Err(format!("ask {ask:?} is open and settled")),
                (false, _) => return Err(format!("ask {ask:?} vanished without being settled")),
            }
        }
        // Agents hear at most one answer per request of theirs.
        for (agent, a) in &sim.agents {
            let from = self.agent_lines_seen.get(agent).copied().unwrap_or(0);
            for line in a.inbox.iter().skip(from) {
                if line.get("method").is_none() {
                    let key = (*agent, line["id"].to_string());
                    let n = self.agent_answers.entry(key).or_default();
                    *n += 1;
                    if *n > 1 {
                        return Err(format!("{agent} answered twice: {line}"));
                    }
                }
            }
            self.agent_lines_seen.insert(*agent, a.inbox.len());
        }
        // Every ask of a live agent is open in its unit or answered exactly once.
        for (agent, id) in asked {
            if !sim.agents.get(agent).is_some_and(|a| a.alive && !a.killed) {
                continue;
            }
            let answered = self
                .agent_answers
                .get(&(*agent, json!(id).to_string()))
                .copied()
                .unwrap_or(0);
            let open = sim.r.units.values().any(|u| {
                u.driver
                    .asks()
                    .values()
                    .any(|a| a.agent == *agent && a.agent_id == json!(id))
            });
            if !(open && answered == 0 || !open && answered == 1) {
                return Err(format!(
                    "{agent} ask {id}: open {open}, answered {answered} times"
                ));
            }
        }
        Ok(())
    }
}

struct World {
    sim: Sim,
    rng: Rng,
    n: u64,
    /// Agent request ids already used, per agent.
    agent_next: HashMap<AgentId, u64>,
    /// Every ask an agent sent.
    asked: Vec<(AgentId, u64)>,
}

impl World {
    fn sockets(&self) -> Vec<SocketId> {
        self.sim
            .sockets
            .iter()
            .filter(|(_, s)| s.open)
            .map(|(id, _)| *id)
            .collect()
    }

    fn sessions(&self) -> Vec<String> {
        let mut v: Vec<String> = self.sim.r.by_session.keys().cloned().collect();
        v.extend(self.sim.r.stored.keys().cloned());
        v.push("nope".into());
        v.sort();
        v
    }

    fn live_agents(&self) -> Vec<AgentId> {
        self.sim
            .agents
            .iter()
            .filter(|(_, a)| a.alive)
            .map(|(id, _)| *id)
            .collect()
    }

    fn next_op(&mut self) -> Option<Op> {
        let sockets = self.sockets();
        let sessions = self.sessions();
        let agents = self.live_agents();
        let rng = &mut self.rng;
        let socket = rng.pick(&sockets).copied();
        let session = rng.pick(&sessions).cloned();
        let opt_session = if rng.chance(30) {
            None
        } else {
            session.clone()
        };
        let agent = rng.pick(&agents).copied();
        Some(match rng.below(17) {
            0 | 1 if sockets.len() < 8 => Op::Open {
                client: rng.below(4),
                plain: rng.chance(25),
                session: if rng.chance(50) { session } else { None },
                last_seq: if rng.chance(50) {
                    Some(rng.below(12) as u64)
                } else {
                    None
                },
            },
            2 => Op::Close(socket?),
            3 | 4 => Op::Prompt(socket?, opt_session),
            5 => Op::Cancel(socket?, opt_session, rng.chance(30)),
            6 => Op::NewSession(socket?),
            7 => Op::Load(socket?, session?, rng.chance(70)),
            8 => Op::CloseSession(socket?, session?),
            9 => Op::SetMode(socket?, opt_session),
            10 => {
                let open: Vec<String> = self
                    .sim
                    .r
                    .units
                    .values()
                    .flat_map(|u| u.driver.ask_ids().cloned())
                    .collect();
                let settled: Vec<String> = self
                    .sim
                    .r
                    .units
                    .values()
                    .flat_map(|u| u.driver.settled_asks().map(|(k, _)| k.to_owned()))
                    .collect();
                let ask = if rng.chance(80) {
                    rng.pick(&open)
                } else {
                    rng.pick(&settled)
                };
                Op::AnswerAsk(socket?, ask?.clone(), rng.chance(85))
            }
            11 => Op::Garbage(socket?),
            12 | 13 => {
                let a = agent?;
                let mut asids: Vec<String> = self
                    .sim
                    .r
                    .links
                    .get(&a)
                    .map(|l| l.sessions.keys().cloned().collect())
                    .unwrap_or_default();
                asids.sort();
                asids.push("unknown".into());
                let asid = rng.pick(&asids)?.clone();
                if rng.chance(70) {
                    Op::AgentUpdate(a, asid)
                } else {
                    Op::AgentAsk(a, asid)
                }
            }
            14 => Op::AgentAnswer(agent?, rng.below(4), rng.chance(90)),
            15 => {
                if rng.chance(20) {
                    Op::AgentExit(agent?)
                } else if rng.chance(30) {
                    Op::AgentRequest(agent?)
                } else {
                    Op::JobDone(rng.chance(70))
                }
            }
            16 if rng.chance(30) => {
                let ms = [50, 400, 6_000, DEFAULT_AGENT_TIMEOUT_MS][rng.below(4)];
                Op::Wait(ms)
            }
            _ => Op::AgentAnswer(agent?, 0, true),
        })
    }

    fn id(&mut self, socket: SocketId) -> Value {
        self.n += 1;
        json!(format!("{}-{}", socket.0, self.n))
    }

    fn run(&mut self, op: Op) {
        let sim_now = self.sim.now;
        let _ = sim_now;
        match op {
            Op::Open {
                client,
                plain,
                session,
                last_seq,
            } => {
                let client = format!("c{client}");
                if plain {
                    self.sim.open_plain(&client);
                } else {
                    self.sim.open_at(&client, session.as_deref(), last_seq);
                }
            }
            Op::Close(s) => self.sim.close(s),
            Op::Prompt(s, sid) => {
                let id = self.id(s);
                let mut p = json!({"prompt": [{"type": "text", "text": "go"}]});
                if let Some(sid) = sid {
                    p["sessionId"] = json!(sid);
                }
                self.sim.send(s, req(id, "session/prompt", p));
            }
            Op::Cancel(s, sid, as_request) => {
                let p = sid.map_or(json!({}), |sid| json!({"sessionId": sid}));
                if as_request {
                    let id = self.id(s);
                    self.sim.send(s, req(id, "session/cancel", p));
                } else {
                    self.sim.send(s, note("session/cancel", p));
                }
            }
            Op::NewSession(s) => {
                let id = self.id(s);
                self.sim.send(s, req(id, "session/new", json!({})));
            }
            Op::Load(s, sid, replay) => {
                let id = self.id(s);
                let m = if replay {
                    "session/load"
                } else {
                    "session/resume"
                };
                self.sim.send(s, req(id, m, json!({"sessionId": sid})));
            }
            Op::CloseSession(s, sid) => {
                let id = self.id(s);
                self.sim
                    .send(s, req(id, "session/close", json!({"sessionId": sid})));
            }
            Op::SetMode(s, sid) => {
                let id = self.id(s);
                let mut p = json!({"modeId": "plan"});
                if let Some(sid) = sid {
                    p["sessionId"] = json!(sid);
                }
                self.sim.send(s, req(id, "session/set_mode", p));
            }
            Op::AnswerAsk(s, ask, good) => {
                let v = if good {
                    ok(
                        json!(ask),
                        json!({"outcome": {"outcome": "selected", "optionId": "allow"}}),
                    )
                } else {
                    err(json!(ask), -1, "no")
                };
                self.sim.send(s, v);
            }
            Op::Garbage(s) => {
                let junk: &[&[u8]] = &[
                    b"{",
                    b"[]",
                    b"{\"id\":1}",
                    b"\n\n",
                    b"{\"jsonrpc\":\"2.0\",\"id\":null,\"result\":1}",
                ];
                let j = junk[self.rng.below(junk.len())];
                self.sim.send_raw(s, j);
            }
            Op::AgentUpdate(a, asid) => {
                let kind = self.rng.below(4);
                let u = match kind {
                    0 => json!({"sessionUpdate": "current_mode_update", "currentModeId": "plan"}),
                    1 => {
                        json!({"sessionUpdate": "available_commands_update", "availableCommands": []})
                    }
                    _ => chunk("x"),
                };
                self.sim.update(a, &asid, u);
            }
            Op::AgentAsk(a, asid) => {
                let n = self.agent_next.entry(a).or_insert(1000);
                *n += 1;
                let id = *n;
                self.asked.push((a, id));
                self.sim.ask(a, id, &asid);
            }
            Op::AgentAnswer(a, k, good) => {
                let reqs: Vec<AgentReq> = self
                    .sim
                    .agents
                    .get(&a)
                    .map(|x| x.requests.iter().filter(|r| !r.answered).cloned().collect())
                    .unwrap_or_default();
                let Some(r) = reqs.get(k.min(reqs.len().saturating_sub(1))).cloned() else {
                    return;
                };
                if let Some(x) = self
                    .sim
                    .agents
                    .get_mut(&a)
                    .and_then(|x| x.requests.iter_mut().find(|q| q.id == r.id && !q.answered))
                {
                    x.answered = true;
                }
                let line = if good || r.method == "initialize" {
                    let result = match r.method.as_str() {
                        "initialize" => init_result(json!({"loadSession": self.rng.chance(70)})),
                        "session/new" => {
                            // Mostly fresh ids, sometimes one the agent used before.
                            self.n += 1;
                            let n = if self.rng.chance(15) {
                                self.n % 5
                            } else {
                                self.n
                            };
                            json!({"sessionId": format!("as{n}")})
                        }
                        "session/prompt" => json!({"stopReason": "end_turn"}),
                        _ => json!({}),
                    };
                    ok(r.id, result)
                } else {
                    err(r.id, -32000, "refused")
                };
                self.sim.agent_says(a, line);
            }
            Op::AgentRequest(a) => {
                let n = self.agent_next.entry(a).or_insert(1000);
                *n += 1;
                let id = *n;
                let m = ["fs/read_text_file", "terminal/create", "weird/x"][self.rng.below(3)];
                self.sim
                    .agent_says(a, req(json!(id), m, json!({"path": "/f"})));
            }
            Op::AgentExit(a) => self.sim.exit(a, "random"),
            Op::Wait(ms) => self.sim.wait(ms),
            Op::JobDone(good) => {
                let Some(j) = self.sim.jobs.pop_front() else {
                    return;
                };
                let result = if good {
                    Ok(json!({"terminalId": format!("t{}", j.job.0), "content": ""}))
                } else {
                    Err(RpcError::other("failed"))
                };
                self.sim.feed(Input::JobDone { job: j.job, result });
            }
        }
    }
}

fn run_seed(seed: u64, steps: usize) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let cfg = RouterConfig {
        lease: rng.chance(30),
        max_sessions: 2 + rng.below(4),
        max_asks: 1 + rng.below(4),
        ring_frames: 512,
        keep_sessions: 4,
        auto_approve: rng.chance(10),
        agent_per_session: rng.chance(20),
        ..RouterConfig::default()
    };
    let sim = Sim::new(cfg);
    let mut w = World {
        sim,
        rng,
        n: 0,
        agent_next: HashMap::new(),
        asked: Vec::new(),
    };
    let mut checker = Checker::default();
    let mut trail: VecDeque<Op> = VecDeque::new();
    for step in 0..steps {
        let Some(op) = w.next_op() else { continue };
        if trail.len() >= 24 {
            trail.pop_front();
        }
        trail.push_back(op.clone());
        w.run(op);
        if let Err(e) = checker.check(&mut w.sim, &w.asked) {
            w.sim.violations.clear();
            let ops: Vec<String> = trail.iter().map(|o| format!("{o:?}")).collect();
            panic!(
                "seed {seed}, step {step}: {e}\nlast ops:\n{}",
                ops.join("\n")
            );
        }
    }
    w.sim.violations.clear();
}

/// 24 seeds × 500 steps: 12,000 steps with invariants after each.
#[test]
fn random_sequences_hold_the_invariants() {
    for seed in 1..=24 {
        run_seed(seed, 500);
    }
}
