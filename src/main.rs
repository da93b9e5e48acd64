//! The `acp-relay` command line: `serve`, `token`, `status`, `pair`,
//! `install-service`, `connect`, `demo-agent`, and `--version`. `serve` reads
//! its config file first (see [`acp_relay::config`]): flags override it.

use acp_relay::agent::AgentCommand;
use acp_relay::config;
use acp_relay::core::frame::LineLimits;
use acp_relay::core::router::RouterConfig;
use acp_relay::core::terminals::TermLimits;
use acp_relay::demo_agent::{self, DemoOptions};
use acp_relay::logger;
use acp_relay::notify::Policy as NotifyPolicy;
use acp_relay::notify::deliver::NotifyConfig;
use acp_relay::notify::http::{NotifyFormat, Target};
use acp_relay::serve::admission::AdmissionLimits;
use acp_relay::serve::{self, ServeOptions, SocketLimits, TlsFiles};
use acp_relay::store::{self, token};
use argh::FromArgs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(FromArgs)]
/// Drive Agent Client Protocol agents at home from a phone or a browser.
struct Cli {
    /// print the version and exit
    #[argh(switch, short = 'V')]
    version: bool,
    #[argh(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
// Parsed once at startup; argh cannot box a subcommand, so `Serve`'s size is moot.
#[allow(clippy::large_enum_variant)]
enum Cmd {
    Serve(Serve),
    Token(TokenCmd),
    DemoAgent(DemoAgent),
    Connect(Connect),
    Status(StatusCmd),
    Pair(PairCmd),
    InstallService(InstallService),
}

#[derive(FromArgs)]
/// Bridge stdin/stdout to a relay's /acp endpoint, so any stdio ACP client can use it as its agent.
#[argh(subcommand, name = "connect")]
struct Connect {
    /// the relay's plain ACP endpoint, e.g. ws://pi.local:7447/acp
    #[argh(positional)]
    url: String,
    /// the pairing token (default: $ACP_RELAY_TOKEN)
    #[argh(option)]
    token: Option<String>,
    /// the relay's project for new sessions, by name (default: the one holding the client's cwd, else the relay's default)
    #[argh(option)]
    project: Option<String>,
    /// the relay's agent for new sessions, by name (default: the relay's default agent)
    #[argh(option)]
    agent: Option<String>,
    /// log level (default warn)
    #[argh(option)]
    log: Option<String>,
}

#[derive(FromArgs)]
/// Run the relay.
#[argh(subcommand, name = "serve")]
struct Serve {
    /// address to listen on (default 127.0.0.1:7447; port 0 picks a free one)
    #[argh(option, default = "String::from(\"127.0.0.1:7447\")")]
    listen: String,
    /// agent command line, e.g. 'gemini --acp', or NAME='CMD ARGS'; leading VAR=value words set its environment, and only the program's name is shown (repeatable, the first is the default; default: the built-in demo agent)
    #[argh(option)]
    agent: Vec<String>,
    /// directory the agents work in, or NAME=DIR (repeatable: one project each, the first is the default; default: the current directory)
    #[argh(option)]
    workspace: Vec<String>,
    /// where the token and sessions live (default $XDG_STATE_HOME/acp-relay)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// answer every permission ask with its first allow option
    #[argh(switch)]
    auto_approve: bool,
    /// frames kept per session for replay (default 4096)
    #[argh(option, default = "acp_relay::core::ring::DEFAULT_RING_FRAMES")]
    ring_frames: usize,
    /// bytes kept per session for replay (default 4 MiB)
    #[argh(option, default = "acp_relay::core::ring::DEFAULT_RING_BYTES")]
    ring_bytes: usize,
    /// bytes all rings, socket queues, replays and store buffers share (default 48 MiB)
    #[argh(option, default = "acp_relay::core::budget::DEFAULT_MEMORY_BUDGET")]
    memory_budget: usize,
    /// only the device holding the controller lease may drive
    #[argh(switch)]
    lease: bool,
    /// start one agent process per session instead of one shared process per agent and project
    #[argh(switch)]
    agent_per_session: bool,
    /// seconds an agent with no busy session runs before it is stopped (default 600; its sessions resume on their next prompt; 0: never)
    #[argh(option, default = "600")]
    agent_idle: u64,
    /// most live sessions (default 16): those devices opened or loaded, the default one once opened; past it the oldest idle one no other device views is evicted, and when none may be, new opens are refused
    #[argh(option, default = "16")]
    max_sessions: usize,
    /// seconds an agent may take to answer a request the relay forwards before the device gets an error (default 300, fits an interactive login; 0: no deadline)
    #[argh(option, default = "300")]
    agent_timeout: u64,
    /// most stored sessions kept on disk (default 200); the oldest are pruned
    #[argh(option, default = "200")]
    keep_sessions: usize,
    /// largest inbound WebSocket message in bytes (default 4 MiB)
    #[argh(option, default = "serve::DEFAULT_MAX_MESSAGE_BYTES")]
    max_message_bytes: usize,
    /// largest agent stdout line in bytes (default 32 MiB)
    #[argh(option, default = "32 << 20")]
    max_agent_line: usize,
    /// deepest JSON nesting accepted from a device (default 64)
    #[argh(option, default = "acp_relay::core::frame::DEFAULT_MAX_DEPTH")]
    max_depth: usize,
    /// most JSON-RPC lines in one device message (default 256)
    #[argh(option, default = "256")]
    max_lines: usize,
    /// frames queued per socket before a slow socket is dropped (default 8192)
    #[argh(option, default = "serve::DEFAULT_SOCKET_QUEUE")]
    socket_queue: usize,
    /// frame bytes queued per socket before a slow socket is dropped (default 6 MiB; at least --ring-bytes + 1 MiB)
    #[argh(option, default = "serve::DEFAULT_SOCKET_BYTES")]
    socket_bytes: usize,
    /// allow devices to open shells on this machine (`_relay/terminal/*`)
    #[argh(switch)]
    terminal: bool,
    /// most terminals open at once (default 8); opening another closes the oldest
    #[argh(option, default = "acp_relay::core::terminals::DEFAULT_MAX_TERMINALS")]
    max_terminals: usize,
    /// scrollback lines kept per terminal (default 1000, at most 10000)
    #[argh(
        option,
        default = "acp_relay::core::terminals::DEFAULT_SCROLLBACK_LINES"
    )]
    terminal_scrollback: usize,
    /// a browser origin allowed to open sockets besides the relay's own (repeatable)
    #[argh(option)]
    allow_origin: Vec<String>,
    /// most device sockets in total (default 256)
    #[argh(option, default = "256")]
    max_conns: usize,
    /// most device sockets per peer address (default 32)
    #[argh(option, default = "32")]
    max_conns_per_peer: usize,
    /// most connections waiting to authenticate, in total (default 64)
    #[argh(option, default = "acp_relay::serve::admission::MAX_PREAUTH")]
    max_preauth: usize,
    /// most connections waiting to authenticate per peer address (default 16; raise it behind a reverse proxy)
    #[argh(option, default = "acp_relay::serve::admission::MAX_PREAUTH_PER_PEER")]
    max_preauth_per_peer: usize,
    /// most open permission asks per session (default 32)
    #[argh(option, default = "32")]
    max_asks: usize,
    /// serve https:// and wss:// with this PEM certificate chain (needs a build with `--features tls`)
    #[argh(option)]
    tls_cert: Option<PathBuf>,
    /// the PEM private key for --tls-cert
    #[argh(option)]
    tls_key: Option<PathBuf>,
    /// log level: error, warn, info, debug, trace (default info, or RUST_LOG)
    #[argh(option)]
    log: Option<String>,
    /// log lines as text (default) or json
    #[argh(option, default = "String::from(\"text\")")]
    log_format: String,
    /// config file of `key = value` lines, keys are these flags without -- (default $XDG_CONFIG_HOME/acp-relay/config)
    #[argh(option)]
    config: Option<PathBuf>,
    /// notify this URL (ntfy topic, Gotify /message?token=, or a JSON webhook; http://, or https:// in a relay built with the tls feature; repeatable)
    #[argh(option)]
    notify: Vec<String>,
    /// format for --notify URLs: ntfy, gotify or json (default: guessed from each URL)
    #[argh(option)]
    notify_format: Option<String>,
    /// run this shell command for each notification, the event in ACP_RELAY_* variables
    #[argh(option)]
    notify_cmd: Option<String>,
    /// seconds an ask may go unanswered before it is notified (default 20)
    #[argh(option, default = "20")]
    notify_delay: u64,
    /// the web client's address for links in notifications and `pair` (default http://LISTEN)
    #[argh(option)]
    public_url: Option<String>,
    /// also serve /metrics without the token on this address (keep it on loopback)
    #[argh(option)]
    metrics_listen: Option<String>,
}

#[derive(FromArgs)]
/// Print the sessions, uptime, memory and version of a running relay.
#[argh(subcommand, name = "status")]
struct StatusCmd {
    /// the relay's address (default: `listen` from the config, else http://127.0.0.1:7447)
    #[argh(option)]
    url: Option<String>,
    /// where the token lives (default: `data-dir` from the config, else $XDG_STATE_HOME/acp-relay)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// the config file to read `listen` and `data-dir` from
    #[argh(option)]
    config: Option<PathBuf>,
    /// print the status document as JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs)]
/// Print the pairing link and a QR code a phone's camera can open.
#[argh(subcommand, name = "pair")]
struct PairCmd {
    /// the web client's address (default: `public-url` or `listen` from the config)
    #[argh(option)]
    url: Option<String>,
    /// where the token lives (default: `data-dir` from the config, else $XDG_STATE_HOME/acp-relay)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// the config file to read `public-url`, `listen` and `data-dir` from
    #[argh(option)]
    config: Option<PathBuf>,
    /// print the link only, no QR code
    #[argh(switch)]
    no_qr: bool,
}

#[derive(FromArgs)]
/// Install a systemd unit and a config file; serve flags go after `--`.
#[argh(subcommand, name = "install-service")]
struct InstallService {
    /// print the unit and the config instead of writing them
    #[argh(switch)]
    print: bool,
    /// the user the relay runs as (default acp-relay; created when missing)
    #[argh(option, default = "String::from(\"acp-relay\")")]
    user: String,
    /// the relay binary (default: this program)
    #[argh(option)]
    bin: Option<PathBuf>,
    /// where the config file goes (default /etc/acp-relay/config)
    #[argh(option, default = "PathBuf::from(\"/etc/acp-relay/config\")")]
    config: PathBuf,
    /// where the unit goes (default /etc/systemd/system/acp-relay.service)
    #[argh(
        option,
        default = "PathBuf::from(\"/etc/systemd/system/acp-relay.service\")"
    )]
    unit: PathBuf,
    /// the data dir (default /var/lib/acp-relay)
    #[argh(option, default = "PathBuf::from(\"/var/lib/acp-relay\")")]
    data_dir: PathBuf,
    /// the workspace the agent works in when the serve flags after -- name none (default /srv/acp-relay)
    #[argh(option, default = "PathBuf::from(\"/srv/acp-relay\")")]
    workspace: PathBuf,
    /// the unit's MemoryMax (default 256M)
    #[argh(option, default = "String::from(\"256M\")")]
    memory_max: String,
    /// serve flags for the config file, e.g. -- --listen 0.0.0.0:7447 --agent 'gemini --acp'
    #[argh(positional, greedy)]
    serve_flags: Vec<String>,
}

#[derive(FromArgs)]
/// Print (or replace) the pairing token.
#[argh(subcommand, name = "token")]
struct TokenCmd {
    /// where the token lives (default $XDG_STATE_HOME/acp-relay)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// replace the token; devices paired with the old one must pair again
    #[argh(switch)]
    rotate: bool,
}

#[derive(FromArgs)]
/// Run the built-in demo ACP agent on stdin/stdout.
#[argh(subcommand, name = "demo-agent")]
struct DemoAgent {
    /// keep session history here so session/load restores it
    #[argh(option)]
    state_dir: Option<PathBuf>,
    /// flood mode: emit this many chunks per prompt
    #[argh(option, default = "0")]
    flood: u64,
    /// flood mode: bytes per chunk (default 200)
    #[argh(option, default = "200")]
    frame_bytes: usize,
    /// flood mode: chunks per second, 0 = as fast as possible
    #[argh(option, default = "0")]
    rate: u64,
    /// log level (default warn)
    #[argh(option)]
    log: Option<String>,
}

fn level(flag: Option<&str>, default: log::LevelFilter) -> Result<log::LevelFilter, String> {
    match flag
        .map(str::to_owned)
        .or_else(|| std::env::var("RUST_LOG").ok())
    {
        None => Ok(default),
        Some(s) => logger::parse_level(&s).ok_or_else(|| {
            format!("unknown log level '{s}'; use error, warn, info, debug or trace")
        }),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("acp-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses like `argh::from_env`, printing help or errors the same way.
fn parse<T: FromArgs>(cmd: &[&str], args: &[&str]) -> Result<T, ExitCode> {
    T::from_args(cmd, args).map_err(|e| {
        if e.status.is_ok() {
            println!("{}", e.output);
            ExitCode::SUCCESS
        } else {
            eprintln!(
                "{}\nRun {} --help for more information.",
                e.output,
                cmd.join(" ")
            );
            ExitCode::FAILURE
        }
    })
}

fn run(args: Vec<String>) -> Result<(), String> {
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    if rest.as_slice() == ["version"] {
        println!("acp-relay {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let rest: Vec<String> = match rest.first() {
        Some(&"serve") => {
            let cli: Vec<String> = rest[1..].iter().map(|s| s.to_string()).collect();
            let mut v = vec!["serve".to_owned()];
            v.extend(serve_args(&cli)?);
            v
        }
        _ => rest.iter().map(|s| s.to_string()).collect(),
    };
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let cli: Cli = match parse(&["acp-relay"], &rest) {
        Ok(c) => c,
        Err(code) => std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 }),
    };
    if cli.version {
        println!("acp-relay {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let Some(cmd) = cli.cmd else {
        return Err(
            "name a command (serve, status, pair, ...); acp-relay --help lists them".into(),
        );
    };
    match cmd {
        Cmd::Serve(s) => {
            let reload = reloader(&args[2..], &rest[1..]);
            serve_cmd(s, Some(reload))
        }
        Cmd::Token(t) => {
            let dir = t.data_dir.unwrap_or_else(store::default_data_dir);
            let tok = if t.rotate {
                token::rotate(&dir)
            } else {
                token::load_or_create(&dir)
            }
            .map_err(|e| e.to_string())?;
            println!("{}", tok.as_str());
            Ok(())
        }
        Cmd::Connect(c) => {
            logger::init(level(c.log.as_deref(), log::LevelFilter::Warn)?);
            let token = c.token.or_else(|| std::env::var("ACP_RELAY_TOKEN").ok());
            acp_relay::connect::run(acp_relay::connect::ConnectOptions {
                url: c.url,
                token,
                project: c.project,
                agent: c.agent,
            })
        }
        Cmd::DemoAgent(d) => {
            logger::init(level(d.log.as_deref(), log::LevelFilter::Warn)?);
            let opts = DemoOptions {
                state_dir: d.state_dir,
                flood: d.flood,
                frame_bytes: d.frame_bytes,
                rate: d.rate,
            };
            demo_agent::run(opts).map_err(|e| format!("demo agent: {e}"))
        }
        Cmd::Status(s) => status_cmd(s),
        Cmd::Pair(p) => pair_cmd(p),
        Cmd::InstallService(i) => install_service(i),
    }
}

/// Keys `serve`'s config may not hold.
const NOT_IN_CONFIG: &[&str] = &["config"];

/// The usage line of `serve`, which names every flag (see [`config::flag_specs`]).
fn serve_usage() -> String {
    match Serve::from_args(&["acp-relay serve"], &["--help"]) {
        Err(e) => e.output,
        Ok(_) => String::new(),
    }
}

/// The config file `serve` reads: `--config PATH` (must exist) or the default (may be absent).
fn config_path(cli: &[String]) -> (PathBuf, bool) {
    match cli.iter().position(|a| a == "--config") {
        Some(i) => (cli.get(i + 1).map(PathBuf::from).unwrap_or_default(), true),
        None => (config::default_path(), false),
    }
}

/// `serve`'s arguments: the config file's as flags, then the command line's.
fn serve_args(cli: &[String]) -> Result<Vec<String>, String> {
    if cli.iter().any(|a| a == "--help") {
        return Ok(cli.to_vec());
    }
    let (path, explicit) = config_path(cli);
    let entries = match config::read(&path).map_err(|e| e.to_string())? {
        Some(e) => e,
        None if explicit => {
            return Err(format!(
                "config file {} does not exist; create it or drop --config",
                path.display()
            ));
        }
        None => Vec::new(),
    };
    let specs = config::flag_specs(&serve_usage());
    let merged =
        config::merge(&path, &entries, &specs, cli, NOT_IN_CONFIG).map_err(|e| e.to_string())?;
    // A value the flag refuses: name the config line it came from.
    let parses = |args: &[String]| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        Serve::from_args(&["acp-relay serve"], &a).map_err(|e| e.output)
    };
    if parses(&merged).is_err() && parses(cli).is_ok() {
        for k in 0..entries.len() {
            let some = config::merge(&path, &entries[..=k], &specs, cli, NOT_IN_CONFIG)
                .map_err(|e| e.to_string())?;
            if let Err(e) = parses(&some) {
                let line = entries[k].line;
                return Err(format!("{}:{line}: {}", path.display(), e.trim()));
            }
        }
    }
    Ok(merged)
}

/// SIGHUP: the config file and the command line again, as `serve` read them;
/// `started` is what the running relay was started with (merged arguments).
fn reloader(cli: &[String], started: &[&str]) -> config::Reload {
    let cli = cli.to_vec();
    let started: Vec<String> = started.iter().map(|s| s.to_string()).collect();
    config::Reload(std::sync::Arc::new(move || {
        let merged = serve_args(&cli)?;
        let specs = config::flag_specs(&serve_usage());
        let restart = config::changed_keys(&specs, &started, &merged, config::RELOADABLE);
        let merged: Vec<&str> = merged.iter().map(String::as_str).collect();
        let s = Serve::from_args(&["acp-relay serve"], &merged).map_err(|e| e.output)?;
        Ok(config::Reloaded {
            notify: notify_config(&s)?,
            log: level(s.log.as_deref(), log::LevelFilter::Info)?,
            restart,
        })
    }))
}

fn notify_config(s: &Serve) -> Result<NotifyConfig, String> {
    let format = match &s.notify_format {
        None => None,
        Some(f) => Some(
            NotifyFormat::parse(f)
                .ok_or_else(|| format!("--notify-format '{f}': use ntfy, gotify or json"))?,
        ),
    };
    let targets = s
        .notify
        .iter()
        .map(|u| Target::parse(u, format).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    // The CA bundle is read here (startup, or the reload that adds the first
    // https target), never on the delivery path.
    #[cfg(feature = "tls")]
    if targets.iter().any(|t| t.tls) {
        acp_relay::client_tls::init().map_err(|e| format!("--notify: {e}"))?;
    }
    Ok(NotifyConfig {
        targets,
        cmd: s.notify_cmd.clone().filter(|c| !c.trim().is_empty()),
        policy: NotifyPolicy {
            delay_ms: s.notify_delay.saturating_mul(1000),
            ..NotifyPolicy::default()
        },
        public_url: s
            .public_url
            .clone()
            .map(|u| u.trim_end_matches('/').to_owned()),
    })
}

/// `listen` and `data-dir` for `status` and `pair`: flag, else config, else default.
fn relay_location(
    config_flag: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> Result<(Vec<config::Setting>, PathBuf, String), String> {
    let explicit = config_flag.is_some();
    let path = config_flag.unwrap_or_else(config::default_path);
    let entries = match config::read(&path).map_err(|e| e.to_string())? {
        Some(e) => e,
        None if explicit => {
            return Err(format!(
                "config file {} does not exist; pass the relay's --config or drop it",
                path.display()
            ));
        }
        None => Vec::new(),
    };
    let dir = data_dir
        .or_else(|| config::value(&entries, "data-dir").map(PathBuf::from))
        .unwrap_or_else(store::default_data_dir);
    let listen = config::value(&entries, "listen")
        .unwrap_or("127.0.0.1:7447")
        .to_owned();
    Ok((entries, dir, listen))
}

fn read_token(dir: &std::path::Path) -> Result<token::Token, String> {
    token::load(dir).map_err(|e| {
        format!("{e}; is --data-dir the relay's? (`acp-relay token --data-dir DIR` creates one)")
    })
}

fn status_cmd(s: StatusCmd) -> Result<(), String> {
    let (entries, dir, listen) = relay_location(s.config, s.data_dir)?;
    let own_cert = config::value(&entries, "tls-cert").map(PathBuf::from);
    let url = s.url.unwrap_or(listen);
    // TLS when the URL says https, or when it names no scheme and the
    // config serves TLS.
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        (own_cert.is_some(), url.as_str())
    };
    let hostport = rest.trim_end_matches('/').to_owned();
    let addr: SocketAddr = match hostport.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => SocketAddr::new([127, 0, 0, 1].into(), a.port()),
        Ok(a) => a,
        Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&hostport)
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("--url '{url}' is not an address like http://127.0.0.1:7447"))?,
    };
    let how = status_transport(tls, &hostport, own_cert.as_deref())?;
    let tok = read_token(&dir)?;
    let v =
        acp_relay::status::fetch(addr, "/status", tok.as_str(), &how).map_err(|e| e.to_string())?;
    if s.json {
        println!("{v}");
    } else {
        print!("{}", acp_relay::status::render(&v));
    }
    Ok(())
}

/// How `status` reaches a relay: plain, or TLS trusting the relay's own
/// certificate (`tls-cert` in its config: the status of this machine's relay,
/// reached by any address) or else the system's CAs and the URL's host name.
fn status_transport(
    tls: bool,
    hostport: &str,
    own_cert: Option<&std::path::Path>,
) -> Result<acp_relay::status::Transport, String> {
    use acp_relay::status::Transport;
    if !tls {
        return Ok(Transport::Plain);
    }
    #[cfg(feature = "tls")]
    {
        let host = match hostport.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => hostport.rsplit_once(':').map_or(hostport, |(h, _)| h),
        };
        let config = match own_cert {
            Some(cert) => acp_relay::client_tls::pinned(cert)?,
            None => acp_relay::client_tls::init()?,
        };
        let name = acp_relay::client_tls::server_name(host)
            .ok_or_else(|| format!("--url: '{host}' is not a host name or an IP address"))?;
        Ok(Transport::Tls { config, name })
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = (hostport, own_cert);
        Err(
            "the relay serves TLS, and this acp-relay is built without it; rebuild with \
             `cargo build --release --features tls`"
                .into(),
        )
    }
}

fn pair_cmd(p: PairCmd) -> Result<(), String> {
    let (entries, dir, listen) = relay_location(p.config, p.data_dir)?;
    let base = match p
        .url
        .or_else(|| config::value(&entries, "public-url").map(str::to_owned))
    {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let addr: SocketAddr = listen
                .parse()
                .map_err(|_| format!("listen '{listen}' is not an address; pass --url"))?;
            let tls = config::value(&entries, "tls-cert").is_some();
            acp_relay::pair::base_url(None, addr, tls)
        }
    };
    let tok = read_token(&dir)?;
    let link = acp_relay::pair::link(&base, tok.as_str());
    if !p.no_qr
        && let Some(q) = acp_relay::pair::qr_text(&link)
    {
        print!("{q}");
    }
    println!("{link}");
    Ok(())
}

fn install_service(i: InstallService) -> Result<(), String> {
    let bin = match i.bin {
        Some(b) => b,
        None => std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?,
    };
    let specs = config::flag_specs(&serve_usage());
    // `-- --workspace api=DIR ...` names the projects; else install's own
    // --workspace is the one project (created and owned by the service user).
    let named = workspace_flags(&i.serve_flags);
    let projects =
        acp_relay::places::parse_workspaces(&named, acp_relay::core::router::MAX_PROJECTS)?;
    let mut flags = vec!["--data-dir".to_owned(), i.data_dir.display().to_string()];
    if projects.is_empty() {
        flags.push("--workspace".to_owned());
        flags.push(i.workspace.display().to_string());
    }
    flags.extend(i.serve_flags.iter().cloned());
    let own_workspace = projects.is_empty().then_some(i.workspace.as_path());
    let workspaces = if projects.is_empty() {
        vec![i.workspace.clone()]
    } else {
        projects.into_iter().map(|(_, dir)| dir).collect()
    };
    let cfg = acp_relay::cli::config_text(&specs, &flags, NOT_IN_CONFIG)?;
    let unit = acp_relay::cli::unit_text(&acp_relay::cli::UnitOptions {
        bin: bin.clone(),
        user: i.user.clone(),
        config: i.config.clone(),
        data_dir: i.data_dir.clone(),
        workspaces,
        memory_max: i.memory_max.clone(),
    });
    if i.print {
        println!("# {}\n{unit}", i.unit.display());
        println!("# {}\n{cfg}", i.config.display());
        return Ok(());
    }
    acp_relay::cli::install(
        &i.unit,
        &unit,
        &i.config,
        &cfg,
        &i.user,
        &i.data_dir,
        own_workspace,
    )
}

/// The values of `--workspace X` in serve flags.
fn workspace_flags(flags: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        if f == "--workspace" {
            out.extend(it.next().cloned());
        }
    }
    out
}

fn serve_cmd(s: Serve, reload: Option<config::Reload>) -> Result<(), String> {
    let format = logger::Format::parse(&s.log_format)
        .ok_or_else(|| format!("--log-format '{}': use text or json", s.log_format))?;
    logger::init_with(level(s.log.as_deref(), log::LevelFilter::Info)?, format);
    if let Some(c) = &s.config {
        log::info!("config file {}", c.display());
    }
    let notify = notify_config(&s)?;
    let metrics_listen = match &s.metrics_listen {
        None => None,
        Some(a) => Some(a.parse::<SocketAddr>().map_err(|_| {
            format!("--metrics-listen '{a}' is not an address like 127.0.0.1:9447")
        })?),
    };
    if let Some(a) = metrics_listen.filter(|a| !a.ip().is_loopback()) {
        log::warn!(
            "--metrics-listen {a} is not loopback: anyone who reaches it reads /metrics without the token"
        );
    }
    let tls = match (s.tls_cert, s.tls_key) {
        (None, None) => None,
        _ if !cfg!(feature = "tls") => return Err(serve::NO_TLS.into()),
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => return Err("--tls-cert and --tls-key go together; pass both".into()),
    };
    let listen = s.listen.parse().map_err(|_| {
        format!(
            "--listen '{}' is not an address like 127.0.0.1:7447",
            s.listen
        )
    })?;
    let projects = if s.workspace.is_empty() {
        let here = std::env::current_dir()
            .map_err(|e| format!("cannot read the current directory: {e}"))?;
        let name = here
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| acp_relay::places::valid_name(n))
            .unwrap_or("workspace")
            .to_owned();
        vec![(name, here)]
    } else {
        acp_relay::places::parse_workspaces(&s.workspace, acp_relay::core::router::MAX_PROJECTS)?
    };
    let data_dir = s.data_dir.unwrap_or_else(store::default_data_dir);
    for (name, v) in [
        ("--ring-frames", s.ring_frames),
        ("--ring-bytes", s.ring_bytes),
        ("--max-sessions", s.max_sessions),
        ("--keep-sessions", s.keep_sessions),
        ("--max-conns", s.max_conns),
        ("--max-terminals", s.max_terminals),
        ("--max-conns-per-peer", s.max_conns_per_peer),
        ("--max-preauth", s.max_preauth),
        ("--max-preauth-per-peer", s.max_preauth_per_peer),
        ("--max-message-bytes", s.max_message_bytes),
        ("--max-depth", s.max_depth),
        ("--max-lines", s.max_lines),
        ("--socket-queue", s.socket_queue),
        ("--socket-bytes", s.socket_bytes),
        ("--max-agent-line", s.max_agent_line),
    ] {
        if v == 0 {
            return Err(format!("{name} must be at least 1"));
        }
    }
    let agents = if s.agent.is_empty() {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find this program to start the demo agent: {e}"))?;
        let state = data_dir.join("demo-agent");
        vec![(
            "demo".to_owned(),
            AgentCommand::Program {
                program: exe,
                args: vec![
                    "demo-agent".into(),
                    "--state-dir".into(),
                    state.display().to_string(),
                ],
            },
        )]
    } else {
        acp_relay::places::parse_agents(&s.agent, acp_relay::core::router::MAX_AGENT_KINDS)?
            .into_iter()
            .map(|(name, cmd)| (name, AgentCommand::Shell(cmd)))
            .collect()
    };
    let router = RouterConfig {
        ring_frames: s.ring_frames,
        ring_bytes: s.ring_bytes,
        memory_budget: s.memory_budget,
        auto_approve: s.auto_approve,
        lease: s.lease,
        agent_per_session: s.agent_per_session,
        agent_idle_ms: s.agent_idle.saturating_mul(1000),
        max_sessions: s.max_sessions,
        agent_timeout_ms: s.agent_timeout.saturating_mul(1000),
        keep_sessions: s.keep_sessions,
        max_asks: s.max_asks,
        device_limits: LineLimits {
            max_line_bytes: s.max_message_bytes,
            max_depth: s.max_depth,
        },
        agent_limits: LineLimits {
            max_line_bytes: s.max_agent_line,
            max_depth: 256,
        },
        max_lines_per_message: s.max_lines,
        terminals: s.terminal.then_some(TermLimits {
            max_terminals: s.max_terminals,
            scrollback_lines: s.terminal_scrollback,
        }),
        ..RouterConfig::default()
    };
    let limits = SocketLimits {
        max_message_bytes: s.max_message_bytes,
        socket_queue: s.socket_queue,
        socket_bytes: s.socket_bytes,
    };
    let admission = AdmissionLimits {
        max_conns: s.max_conns,
        max_conns_per_peer: s.max_conns_per_peer,
        max_preauth: s.max_preauth,
        max_preauth_per_peer: s.max_preauth_per_peer,
    };
    serve::serve(ServeOptions {
        listen,
        agents,
        projects,
        data_dir,
        router,
        limits,
        admission,
        allowed_origins: s.allow_origin,
        tls,
        notify,
        metrics_listen,
        public_url: s.public_url,
        reload,
    })
    .map_err(|e| e.to_string())
}
