//! `acp-relay serve`: binds the listener, builds the router and the shell
//! around it (the state every connection shares, [`Shared`]), accepts
//! connections, reloads on SIGHUP ([`ops_serve`]) and shuts down cleanly on
//! SIGTERM/SIGINT. No protocol logic here: frames reach the router through
//! [`relay::Relay`].

pub mod admission;
pub mod http;
pub mod ops_serve;
pub mod relay;
pub mod socket;
#[cfg(feature = "tls")]
pub mod tls;
pub mod web;

use crate::agent::AgentCommand;
use crate::core::router::{Router, RouterConfig};
use crate::serve::admission::{Admission, AdmissionLimits};
use crate::serve::relay::{Relay, now_ms};
use crate::store::token::{self, Token};
use crate::store::transcript::Store;
use crate::workspace::Workspace;
use futures_lite::StreamExt;
use smol::LocalExecutor;
use smol::net::TcpListener;
use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

/// Default bound on one inbound WebSocket message.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Default bound on one socket's outbound queue (messages).
pub const DEFAULT_SOCKET_QUEUE: usize = 8192;
/// Default bound on the frame bytes one socket's outbound queue holds. The
/// frames are in the session's ring anyway; the queue only covers a burst (and
/// a replay, so the bound is raised to fit one ring: see [`SocketLimits::effective`]).
pub const DEFAULT_SOCKET_BYTES: usize = 6 << 20;
/// Room above one full ring a socket queue keeps for live frames during a replay.
pub const REPLAY_HEADROOM_BYTES: usize = 1 << 20;

/// When startup pages are shed a second time (see [`crate::heap::shed_startup_pages`]).
pub const STARTUP_SETTLE: Duration = Duration::from_millis(500);

/// How long shutdown waits for agents to exit after SIGTERM before SIGKILL.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Everything `serve` needs, already validated by the CLI.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// Every agent by name, the default first (at least one).
    pub agents: Vec<(String, AgentCommand)>,
    /// Every project by name, the default first (at least one).
    pub projects: Vec<(String, PathBuf)>,
    pub data_dir: PathBuf,
    pub router: RouterConfig,
    pub limits: SocketLimits,
    pub admission: AdmissionLimits,
    pub allowed_origins: Vec<String>,
    /// Serve https:// and wss:// with this certificate (needs the `tls` feature).
    pub tls: Option<TlsFiles>,
    /// Notification targets and policy (`--notify*`).
    pub notify: crate::notify::deliver::NotifyConfig,
    /// Serve `/metrics` without the token on this (loopback) address too.
    pub metrics_listen: Option<SocketAddr>,
    /// The web client's address for links (`--public-url`).
    pub public_url: Option<String>,
    /// Re-reads the config on SIGHUP.
    pub reload: Option<crate::config::Reload>,
}

/// PEM files for built-in TLS (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, leaf first (e.g. `fullchain.pem`).
    pub cert: PathBuf,
    /// The certificate's private key.
    pub key: PathBuf,
}

/// The error for TLS options in a build without the `tls` feature.
pub const NO_TLS: &str = "--tls-cert/--tls-key need a relay built with TLS; rebuild with `cargo build --release --features tls`";

/// Socket-level bounds.
#[derive(Debug, Clone, Copy)]
pub struct SocketLimits {
    pub max_message_bytes: usize,
    pub socket_queue: usize,
    /// Frame bytes queued on one socket past which it is dropped (`--socket-bytes`).
    pub socket_bytes: usize,
}

impl Default for SocketLimits {
    fn default() -> Self {
        SocketLimits {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            socket_queue: DEFAULT_SOCKET_QUEUE,
            socket_bytes: DEFAULT_SOCKET_BYTES,
        }
    }
}

impl SocketLimits {
    /// These limits with the byte bound raised, if need be, to hold one full
    /// replay of a `ring_bytes` ring: a smaller bound would drop every device
    /// that reconnects to a full session before its replay is out.
    pub fn effective(self, ring_bytes: usize) -> SocketLimits {
        let floor = ring_bytes.saturating_add(REPLAY_HEADROOM_BYTES);
        if self.socket_bytes >= floor {
            return self;
        }
        log::warn!(
            "--socket-bytes {} is below one replay (--ring-bytes {ring_bytes} + {REPLAY_HEADROOM_BYTES}); using {floor}",
            self.socket_bytes
        );
        SocketLimits {
            socket_bytes: floor,
            ..self
        }
    }
}

/// Why `serve` could not start.
#[derive(Debug)]
pub enum ServeError {
    Workspace {
        path: PathBuf,
        reason: String,
    },
    Token(token::TokenError),
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    Signals(std::io::Error),
    Store(crate::store::transcript::StoreError),
    /// The certificate or key could not be loaded; the message names the file.
    Tls(String),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Workspace { path, reason } => write!(
                f,
                "workspace {}: {reason}; pass --workspace DIR with an existing directory",
                path.display()
            ),
            ServeError::Token(e) => {
                write!(f, "{e}; pass a --data-dir the relay can read and write")
            }
            ServeError::Bind { addr, source } => write!(
                f,
                "cannot listen on {addr}: {source}; pick another --listen address"
            ),
            ServeError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            ServeError::Store(e) => write!(f, "session store: {e}"),
            ServeError::Tls(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// State every connection task shares.
pub struct Shared {
    pub relay: Rc<Relay>,
    pub token: RefCell<Token>,
    pub limits: SocketLimits,
    pub data_dir: PathBuf,
    pub admission: RefCell<Admission>,
    /// Browser origins allowed besides the relay's own (`--allow-origin`).
    pub allowed_origins: Vec<String>,
    /// Ops counters, the notifier and the start time (`/status`, `/metrics`).
    pub ops: Rc<crate::status::Ops>,
}

impl Shared {
    /// Prometheus text exposition of the relay's counters.
    pub fn metrics_text(&self) -> String {
        let m = &self.relay.metrics;
        let (sessions, sockets) = self
            .relay
            .with_router(|r| (r.live_sessions(), r.socket_count()));
        let (memory, budget, rings) = self
            .relay
            .with_router(|r| (r.memory_bytes(), r.memory_budget(), r.ring_bytes()));
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, kind: &str, v: u64| {
            crate::status::metric(&mut out, name, help, kind, v)
        };
        gauge(
            "acp_relay_sessions_live",
            "Live sessions.",
            "gauge",
            sessions as u64,
        );
        gauge(
            "acp_relay_sockets",
            "Connected device sockets.",
            "gauge",
            sockets as u64,
        );
        gauge(
            "acp_relay_frames_sent_total",
            "Frames queued to device sockets.",
            "counter",
            m.frames_sent.get(),
        );
        gauge(
            "acp_relay_sockets_opened_total",
            "Device sockets opened.",
            "counter",
            m.sockets_opened.get(),
        );
        gauge(
            "acp_relay_sockets_dropped_slow_total",
            "Sockets closed because their outbound queue was full.",
            "counter",
            m.sockets_dropped_slow.get(),
        );
        gauge(
            "acp_relay_agents_spawned_total",
            "Agent processes started.",
            "counter",
            m.agents_spawned.get(),
        );
        gauge(
            "acp_relay_memory_bytes",
            "Bytes counted against --memory-budget: rings, socket queues, replays, store buffers.",
            "gauge",
            memory as u64,
        );
        gauge(
            "acp_relay_memory_budget_bytes",
            "The --memory-budget (0: none).",
            "gauge",
            budget as u64,
        );
        gauge(
            "acp_relay_ring_bytes",
            "Bytes held by every live session's replay ring.",
            "gauge",
            rings as u64,
        );
        gauge(
            "acp_relay_auth_failures_total",
            "Refused upgrades (bad or missing token).",
            "counter",
            m.auth_failures.get(),
        );
        out
    }
}

/// Runs the relay until SIGTERM/SIGINT. Prints the pairing URL to stdout.
pub fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    // Before any helper thread starts, so none gets an arena of its own.
    crate::heap::tune();
    let mut workspaces = Vec::with_capacity(opts.projects.len());
    for (name, dir) in &opts.projects {
        let ws = Workspace::new(dir).map_err(|e| ServeError::Workspace {
            path: dir.clone(),
            reason: e.to_string(),
        })?;
        workspaces.push((name.clone(), Rc::new(ws)));
    }
    let Some(ws) = workspaces.first().map(|(_, w)| w.clone()) else {
        return Err(ServeError::Workspace {
            path: PathBuf::new(),
            reason: "no project is configured".into(),
        });
    };
    // The names, in order, index projects and agents in the router.
    let agent_label = opts
        .agents
        .first()
        .map(|(_, c)| c.to_string())
        .unwrap_or_default();
    let token = token::load_or_create(&opts.data_dir).map_err(ServeError::Token)?;
    // End what a killed previous run left, and record this run's agents.
    crate::agent::groups::install(crate::agent::groups::Groups::open(
        &opts.data_dir,
        format!("{}-{}", now_ms(), std::process::id()),
    ));
    let tls: Option<socket::Acceptor> = match &opts.tls {
        None => None,
        #[cfg(feature = "tls")]
        Some(files) => Some(tls::Acceptor::load(&files.cert, &files.key).map_err(ServeError::Tls)?),
        #[cfg(not(feature = "tls"))]
        Some(_) => return Err(ServeError::Tls(NO_TLS.into())),
    };
    let (ws_scheme, http_scheme) = if tls.is_some() {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    let listener =
        smol::block_on(TcpListener::bind(opts.listen)).map_err(|source| ServeError::Bind {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: opts.listen,
        source,
    })?;
    let signals = async_signal::Signals::new([
        async_signal::Signal::Term,
        async_signal::Signal::Int,
        async_signal::Signal::Hup,
    ])
    .map_err(ServeError::Signals)?;
    let metrics_listener = match opts.metrics_listen {
        Some(a) => Some(
            smol::block_on(TcpListener::bind(a))
                .map_err(|source| ServeError::Bind { addr: a, source })?,
        ),
        None => None,
    };

    let mut router_cfg = opts.router.clone();
    router_cfg.cwd = ws.root().display().to_string();
    router_cfg.projects = workspaces
        .iter()
        .map(|(name, w)| crate::core::router::ProjectCfg {
            name: name.clone(),
            path: w.root().display().to_string(),
        })
        .collect();
    router_cfg.agents = opts.agents.iter().map(|(n, _)| n.clone()).collect();
    router_cfg.epoch_seed = now_ms();
    router_cfg.durable = true;
    let socket_limits = opts.limits.effective(router_cfg.ring_bytes);
    router_cfg.socket_bytes = socket_limits.socket_bytes;
    router_cfg.relay_meta = serde_json::json!({
        "workspace": ws.capabilities(),
        "terminal": router_cfg.terminals.is_some(),
        "lease": router_cfg.lease,
    });
    let ex: Rc<LocalExecutor<'static>> = Rc::new(LocalExecutor::new());
    let (store, stored) =
        Store::open(&opts.data_dir, router_cfg.keep_sessions).map_err(ServeError::Store)?;
    let mut router = Router::new(router_cfg.clone(), now_ms());
    router.add_stored(stored);
    let relay = Relay::new(
        ex.clone(),
        router,
        workspaces,
        opts.agents.clone(),
        router_cfg.agent_limits.max_line_bytes,
        Some(Rc::new(store)),
        (router_cfg.ring_frames, router_cfg.ring_bytes),
    );
    if router_cfg.terminals.is_some() {
        relay.enable_terminals();
    }
    let ops = Rc::new(crate::status::Ops::new(now_ms(), agent_label.clone()));
    let base_url = crate::pair::base_url(opts.public_url.as_deref(), addr, opts.tls.is_some());
    let dispatcher = crate::notify::deliver::Dispatcher::start(
        ex.clone(),
        opts.notify.clone(),
        agent_label.clone(),
        base_url.clone(),
    );
    *ops.notify.borrow_mut() = Some(dispatcher.clone());
    {
        let (ops, dispatcher) = (ops.clone(), dispatcher.clone());
        *relay.on_event.borrow_mut() = Some(Rc::new(move |ev| {
            ops.count(ev);
            dispatcher.event(ev);
        }));
    }
    let shared = Rc::new(Shared {
        relay: relay.clone(),
        token: RefCell::new(token),
        limits: socket_limits,
        data_dir: opts.data_dir.clone(),
        admission: RefCell::new(Admission::new(opts.admission)),
        allowed_origins: opts.allowed_origins.clone(),
        ops,
    });

    use std::io::Write as _;
    // The banner: a closed stdout (a pipe nobody reads) must not stop the relay.
    let mut out = std::io::stdout().lock();
    macro_rules! say {
        ($($arg:tt)*) => {{
            let _ = writeln!(out, $($arg)*);
        }};
    }
    say!(
        "acp-relay {} listening on {addr}",
        env!("CARGO_PKG_VERSION")
    );
    if relay.projects.len() == 1 {
        say!("  workspace: {}", relay.workspace.root().display());
    } else {
        for (name, w) in &relay.projects {
            say!("  project:   {name} = {}", w.root().display());
        }
    }
    if opts.agents.len() == 1 {
        say!("  agent:     {agent_label}");
    } else {
        for (name, cmd) in &opts.agents {
            say!("  agent:     {name} = {cmd}");
        }
    }
    say!(
        "  devices:   {ws_scheme}://{addr}/ws  (token: `acp-relay token --data-dir {}`)",
        opts.data_dir.display()
    );
    // The link holds the token: only a person at a terminal sees it, never a journal.
    use std::io::IsTerminal as _;
    if std::io::stdout().is_terminal() {
        say!(
            "  browser:   {}",
            crate::pair::link(&base_url, shared.token.borrow().as_str())
        );
    } else {
        say!(
            "  browser:   {http_scheme}://{addr}/  (pairing link and QR code: `acp-relay pair --data-dir {}`)",
            opts.data_dir.display()
        );
    }
    if let Some(l) = &metrics_listener
        && let Ok(a) = l.local_addr()
    {
        say!("  metrics:   http://{a}/metrics (no token)");
        log::info!("metrics without the token on {a}");
    }
    if let Some(files) = &opts.tls {
        say!(
            "  tls:       {} (connect by a name the certificate covers)",
            files.cert.display()
        );
    }
    let _ = out.flush();
    drop(out);

    smol::block_on(ex.run(async {
        // Starts the default session's agent.
        relay.pump();
        // Startup code (flags, store recovery, the agent's start) need not
        // stay mapped: shed its pages now and once more when the default
        // agent's first exchange is likely over.
        let shed = crate::heap::shed_startup_pages();
        log::debug!("unmapped {shed} KiB of clean startup pages");
        ex.spawn(async {
            smol::Timer::after(STARTUP_SETTLE).await;
            // Devices may be connected by now: read smaps off the executor.
            let shed = smol::unblock(crate::heap::shed_startup_pages).await;
            log::debug!("unmapped {shed} KiB of clean startup pages");
        })
        .detach();
        let accept = async {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        // Every TCP connection costs a task and a descriptor
                        // before it authenticates: bound them per address and
                        // in total (sockets past authentication have their own
                        // caps), so one address cannot lock everyone out.
                        let preauth = match socket::PreAuth::begin(&shared, peer.ip()) {
                            Ok(p) => p,
                            Err(why) => {
                                socket::refuse_at_accept(&shared, stream, peer, why);
                                continue;
                            }
                        };
                        let _ = stream.set_nodelay(true);
                        let conn =
                            socket::connection(shared.clone(), stream, peer, tls.clone(), preauth);
                        ex.spawn(conn).detach();
                    }
                    Err(e) => {
                        log::warn!("accept: {e}");
                        smol::Timer::after(Duration::from_millis(50)).await;
                    }
                }
            }
        };
        if let Some(l) = metrics_listener {
            ex.spawn(ops_serve::metrics_accept(shared.clone(), l))
                .detach();
        }
        ex.spawn(ops_serve::watch_token(shared.clone())).detach();
        let mut signals = signals;
        let stop = async {
            loop {
                let sig = signals.next().await;
                if let Some(Ok(async_signal::Signal::Hup)) = sig {
                    ops_serve::reload(&shared, &dispatcher, opts.reload.as_ref()).await;
                    continue;
                }
                match sig {
                    Some(Ok(s)) => log::info!(
                        "received SIG{}; shutting down",
                        format!("{s:?}").to_uppercase()
                    ),
                    Some(Err(e)) => log::warn!("reading signals failed ({e}); shutting down"),
                    None => log::warn!("the signal stream ended; shutting down"),
                }
                break;
            }
        };
        futures_lite::future::or(accept, stop).await;
        drop(listener);
        // The relay ends its agents now: that is no crash to notify.
        dispatcher.close();
        shutdown(&relay).await;
    }));
    Ok(())
}

async fn shutdown(relay: &Rc<Relay>) {
    relay.stop();
    relay.close_all_sockets();
    let pids = relay.agent_pids();
    relay.kill_all_agents();
    for (_, w) in &relay.projects {
        w.shutdown().await;
    }
    relay.shutdown_terminals().await;
    let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
    while pids.iter().any(|p| crate::proc::exists(*p)) && std::time::Instant::now() < deadline {
        smol::Timer::after(Duration::from_millis(20)).await;
    }
    for p in &pids {
        if crate::proc::exists(*p) {
            log::warn!("agent pid {p} ignored SIGTERM; killing its process group");
            crate::proc::kill_group(*p);
        }
    }
    // Let agent readers report the exits and socket writers send close frames.
    smol::Timer::after(Duration::from_millis(100)).await;
    if let Some(store) = &relay.store {
        store.close_async(SHUTDOWN_GRACE).await;
    }
    log::info!("stopped");
}
