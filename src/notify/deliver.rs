//! The shell side of notifications: feeds router events to the [`Notifier`],
//! wakes it when an ask's delay passes, and hands each note to one worker
//! task per target (HTTP POST with a deadline, retried with backoff) and to
//! `--notify-cmd` (a child process with a deadline). Every queue is bounded
//! and full means dropped: a notification never holds up a turn.

use crate::core::events::RelayEvent;
use crate::core::ids::AgentId;
use crate::notify::http::{self, Target};
use crate::notify::{Note, Notifier, Policy};
use crate::serve::relay::now_ms;
use smol::LocalExecutor;
use smol::channel::{Receiver, Sender};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// Notes queued per target (and for the command) before new ones are dropped.
pub const TARGET_QUEUE: usize = 32;
/// Live agent processes whose names are remembered (each is forgotten when
/// it exits; past the bound the oldest goes first).
pub const MAX_NAMED_AGENTS: usize = 256;
/// One POST (connect, send, status line) must finish within this.
pub const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// `--notify-cmd` is killed when it runs longer than this.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(10);
/// Waits before the second and third attempt of a POST.
pub const BACKOFF: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(8)];

/// Where and when to notify; rebuilt from flags on SIGHUP.
#[derive(Debug, Clone, Default)]
pub struct NotifyConfig {
    pub targets: Vec<Target>,
    /// `--notify-cmd`, run with `sh -c`.
    pub cmd: Option<String>,
    pub policy: Policy,
    /// The web client's address for links (`--public-url`), without a trailing `/`.
    pub public_url: Option<String>,
}

impl NotifyConfig {
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty() && self.cmd.is_none()
    }
}

/// Notifications sent and failed (for `/metrics`).
#[derive(Default)]
pub struct NotifyCounters {
    pub sent: Cell<u64>,
    pub failed: Cell<u64>,
    pub dropped: Cell<u64>,
}

/// A note with everything a worker needs, made once for all targets.
#[derive(Debug, Clone)]
struct Job {
    note: Note,
    agent: String,
    link: Option<String>,
}

/// The running notification shell. One per relay, on the executor thread.
pub struct Dispatcher {
    ex: Rc<LocalExecutor<'static>>,
    notifier: RefCell<Notifier>,
    cfg: RefCell<NotifyConfig>,
    workers: RefCell<Vec<Sender<Job>>>,
    /// Wakes the timer task when a new deadline may be earlier.
    wake: Sender<()>,
    /// The default agent's name, for messages about an agent not named yet.
    agent_name: String,
    /// The configured name of each live agent process (at most
    /// [`MAX_NAMED_AGENTS`]), so a note names the agent that runs its session.
    agent_names: RefCell<BTreeMap<AgentId, String>>,
    /// The link base when the config names none (`http://LISTEN`).
    default_base: String,
    pub counters: Rc<NotifyCounters>,
    closed: Cell<bool>,
}

impl Dispatcher {
    /// Starts the timer task and one worker per target.
    pub fn start(
        ex: Rc<LocalExecutor<'static>>,
        cfg: NotifyConfig,
        agent_name: String,
        default_base: String,
    ) -> Rc<Dispatcher> {
        let (wake, woken) = smol::channel::bounded(1);
        let d = Rc::new(Dispatcher {
            ex: ex.clone(),
            notifier: RefCell::new(Notifier::new(cfg.policy)),
            cfg: RefCell::new(NotifyConfig::default()),
            workers: RefCell::new(Vec::new()),
            wake,
            agent_name,
            agent_names: RefCell::new(BTreeMap::new()),
            default_base,
            counters: Rc::new(NotifyCounters::default()),
            closed: Cell::new(false),
        });
        d.reconfigure(cfg);
        let weak = Rc::downgrade(&d);
        ex.spawn(async move {
            loop {
                let next = match weak.upgrade() {
                    Some(d) => d.notifier.borrow().poll_timeout(),
                    None => return,
                };
                let wait = next.map(|t| Duration::from_millis(t.saturating_sub(now_ms())));
                let woke = async { woken.recv().await.is_ok() };
                let timer = async {
                    match wait {
                        Some(w) => {
                            smol::Timer::after(w).await;
                            true
                        }
                        None => std::future::pending().await,
                    }
                };
                if !futures_lite::future::or(woke, timer).await {
                    return;
                }
                let Some(d) = weak.upgrade() else { return };
                d.notifier.borrow_mut().handle_timeout(now_ms());
                d.drain();
            }
        })
        .detach();
        d
    }

    /// Applies a new configuration (SIGHUP): new targets get new workers;
    /// the old workers finish what they hold and end.
    pub fn reconfigure(&self, cfg: NotifyConfig) {
        self.notifier.borrow_mut().set_policy(cfg.policy);
        let mut workers = Vec::new();
        for t in &cfg.targets {
            let (tx, rx) = smol::channel::bounded(TARGET_QUEUE);
            self.ex
                .spawn(post_worker(t.clone(), rx, self.counters.clone()))
                .detach();
            workers.push(tx);
        }
        if let Some(cmd) = &cfg.cmd {
            let (tx, rx) = smol::channel::bounded(TARGET_QUEUE);
            self.ex
                .spawn(cmd_worker(cmd.clone(), rx, self.counters.clone()))
                .detach();
            workers.push(tx);
        }
        for old in self.workers.replace(workers) {
            old.close();
        }
        log::info!(
            "notifications: {} target(s){}, asks after {}s",
            cfg.targets.len(),
            if cfg.cmd.is_some() {
                " and a command"
            } else {
                ""
            },
            cfg.policy.delay_ms / 1000
        );
        *self.cfg.borrow_mut() = cfg;
    }

    /// Stops notifying (shutdown: the relay ends its own agents).
    pub fn close(&self) {
        self.closed.set(true);
        for w in self.workers.take() {
            w.close();
        }
    }

    /// Feeds one router event in.
    pub fn event(&self, ev: &RelayEvent) {
        if self.closed.get() {
            return;
        }
        if let RelayEvent::AgentStarted { agent, name } = ev {
            let mut names = self.agent_names.borrow_mut();
            if names.len() >= MAX_NAMED_AGENTS {
                names.pop_first();
            }
            names.insert(*agent, name.clone());
            return;
        }
        self.notifier.borrow_mut().event(now_ms(), ev);
        self.drain();
        if let RelayEvent::AgentExited { agent, .. } = ev {
            // Its crash note (if any) is built: forget the name.
            self.agent_names.borrow_mut().remove(agent);
        }
        // A new ask may be due before the timer's current deadline.
        let _ = self.wake.try_send(());
    }

    fn drain(&self) {
        let notes: Vec<Note> = {
            let mut n = self.notifier.borrow_mut();
            let notes = std::iter::from_fn(|| n.poll_note()).collect();
            let dropped = n.take_suppressed();
            if dropped > 0 {
                log::info!(
                    "notifications: {dropped} not sent (rate limit of a session or a full queue)"
                );
                self.counters
                    .dropped
                    .set(self.counters.dropped.get() + dropped);
            }
            notes
        };
        for note in notes {
            let job = self.job(note);
            log::info!(
                "notify: {} for session {} ({})",
                job.note.kind.name(),
                crate::logger::peer(job.note.session.as_deref().unwrap_or("-")),
                crate::logger::peer(&job.note.headline())
            );
            let workers = self.workers.borrow().clone();
            for w in workers {
                if w.try_send(job.clone()).is_err() {
                    self.counters.dropped.set(self.counters.dropped.get() + 1);
                    log::debug!("notify: a target's queue is full; note dropped");
                }
            }
        }
    }

    fn job(&self, note: Note) -> Job {
        let b = self
            .cfg
            .borrow()
            .public_url
            .clone()
            .unwrap_or_else(|| self.default_base.clone());
        let link = Some(match &note.session {
            Some(s) => format!("{b}/#session={}", url_component(s)),
            None => format!("{b}/"),
        });
        let agent = match note.agent {
            Some(a) => {
                let names = self.agent_names.borrow();
                let name = names.get(&a).unwrap_or(&self.agent_name);
                format!("{name} ({a})")
            }
            None => self.agent_name.clone(),
        };
        Job { note, agent, link }
    }
}

/// Percent-encodes everything but unreserved characters.
fn url_component(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Logs a failing target once per spell, and once more when it works again.
struct Spell {
    what: String,
    failures: u64,
}

impl Spell {
    fn failed(&mut self, err: &dyn std::fmt::Display) {
        if self.failures == 0 {
            log::warn!(
                "notify {}: {err}; retrying, and not logging its failures again until it works",
                self.what
            );
        }
        self.failures += 1;
    }

    fn worked(&mut self) {
        if self.failures > 0 {
            log::info!(
                "notify {}: works again after {} failed attempt(s)",
                self.what,
                self.failures
            );
        }
        self.failures = 0;
    }
}

async fn post_worker(target: Target, rx: Receiver<Job>, counters: Rc<NotifyCounters>) {
    let mut spell = Spell {
        what: target.label(),
        failures: 0,
    };
    while let Ok(job) = rx.recv().await {
        let req = target.request(&job.note, &job.agent, job.link.as_deref());
        let mut ok = false;
        for attempt in 0..=BACKOFF.len() {
            if attempt > 0 {
                smol::Timer::after(BACKOFF[attempt - 1]).await;
            }
            match http::post(&target, &req, POST_TIMEOUT).await {
                Ok(_) => {
                    spell.worked();
                    ok = true;
                    break;
                }
                Err(e) => spell.failed(&e),
            }
        }
        if ok {
            counters.sent.set(counters.sent.get() + 1);
            log::debug!("notify {}: sent {}", target.label(), job.note.kind.name());
        } else {
            counters.failed.set(counters.failed.get() + 1);
        }
    }
}

async fn cmd_worker(cmd: String, rx: Receiver<Job>, counters: Rc<NotifyCounters>) {
    let mut spell = Spell {
        what: "command".into(),
        failures: 0,
    };
    while let Ok(job) = rx.recv().await {
        match run_cmd(&cmd, &job).await {
            Ok(()) => {
                spell.worked();
                counters.sent.set(counters.sent.get() + 1);
            }
            Err(e) => {
                spell.failed(&e);
                counters.failed.set(counters.failed.get() + 1);
            }
        }
    }
}

async fn run_cmd(cmd: &str, job: &Job) -> Result<(), String> {
    let n = &job.note;
    // Its own process group, so a timeout ends what the shell started too.
    let mut std_cmd = std::process::Command::new("/bin/sh");
    std::os::unix::process::CommandExt::process_group(&mut std_cmd, 0);
    crate::proc::die_with_parent(&mut std_cmd);
    let mut c = smol::process::Command::from(std_cmd);
    c.arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .env("ACP_RELAY_EVENT", n.kind.name())
        .env("ACP_RELAY_TITLE", n.headline())
        .env("ACP_RELAY_MESSAGE", n.body(&job.agent))
        .env("ACP_RELAY_SESSION", n.session.as_deref().unwrap_or(""))
        .env("ACP_RELAY_SESSION_TITLE", n.title.as_deref().unwrap_or(""))
        .env("ACP_RELAY_AGENT", &job.agent)
        .env("ACP_RELAY_TOOL", n.tool_title.as_deref().unwrap_or(""))
        .env("ACP_RELAY_DETAIL", n.detail.as_deref().unwrap_or(""))
        .env("ACP_RELAY_LINK", job.link.as_deref().unwrap_or(""))
        .kill_on_drop(true);
    let mut child = c.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let status = futures_lite::future::or(async { child.status().await.map(Some) }, async {
        smol::Timer::after(CMD_TIMEOUT).await;
        Ok(None)
    })
    .await
    .map_err(|e| e.to_string())?;
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(format!("exited with {s}")),
        None => {
            crate::proc::kill_group(child.id());
            let _ = child.kill();
            let _ = child.status().await;
            Err(format!(
                "ran longer than {}s; killed",
                CMD_TIMEOUT.as_secs()
            ))
        }
    }
}
