//! The `acp-relay` command line: `serve`, `token`, `demo-agent`.

use acp_relay::agent::AgentCommand;
use acp_relay::core::frame::LineLimits;
use acp_relay::core::router::RouterConfig;
use acp_relay::core::terminals::TermLimits;
use acp_relay::demo_agent::{self, DemoOptions};
use acp_relay::logger;
use acp_relay::serve::admission::AdmissionLimits;
use acp_relay::serve::{self, Limits, ServeOptions, TlsFiles};
use acp_relay::store::{self, token};
use argh::FromArgs;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(FromArgs)]
/// Drive Agent Client Protocol agents at home from a phone or a browser.
struct Cli {
    #[argh(subcommand)]
    cmd: Cmd,
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
    /// agent command line, e.g. 'gemini --acp' (default: the built-in demo agent)
    #[argh(option)]
    agent: Option<String>,
    /// directory the agent works in (default: the current directory)
    #[argh(option)]
    workspace: Option<PathBuf>,
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
    /// only the device holding the controller lease may drive
    #[argh(switch)]
    lease: bool,
    /// start one agent process per session instead of one shared process
    #[argh(switch)]
    agent_per_session: bool,
    /// most live sessions (default 16); past it the oldest idle unviewed one is evicted
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
    /// allow devices to open shells on this machine (`_relay/terminal/*`)
    #[argh(switch)]
    terminal: bool,
    /// most terminals open at once (default 8); opening another closes the oldest
    #[argh(option, default = "acp_relay::core::terminals::DEFAULT_MAX_TERMINALS")]
    max_terminals: usize,
    /// a browser origin allowed to open sockets besides the relay's own (repeatable)
    #[argh(option)]
    allow_origin: Vec<String>,
    /// most device sockets in total (default 256)
    #[argh(option, default = "256")]
    max_conns: usize,
    /// most device sockets per peer address (default 32)
    #[argh(option, default = "32")]
    max_conns_per_peer: usize,
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
    let cli: Cli = argh::from_env();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("acp-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Serve(s) => serve_cmd(s),
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
            acp_relay::connect::run(acp_relay::connect::ConnectOptions { url: c.url, token })
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
    }
}

fn serve_cmd(s: Serve) -> Result<(), String> {
    logger::init(level(s.log.as_deref(), log::LevelFilter::Info)?);
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
    let workspace = match s.workspace {
        Some(w) => w,
        None => std::env::current_dir()
            .map_err(|e| format!("cannot read the current directory: {e}"))?,
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
        ("--max-message-bytes", s.max_message_bytes),
        ("--max-depth", s.max_depth),
        ("--max-lines", s.max_lines),
        ("--socket-queue", s.socket_queue),
        ("--max-agent-line", s.max_agent_line),
    ] {
        if v == 0 {
            return Err(format!("{name} must be at least 1"));
        }
    }
    let agent = match s.agent {
        Some(cmd) if cmd.trim().is_empty() => {
            return Err("--agent is empty; give a command line such as 'gemini --acp'".into());
        }
        Some(cmd) => AgentCommand::Shell(cmd),
        None => {
            let exe = std::env::current_exe()
                .map_err(|e| format!("cannot find this program to start the demo agent: {e}"))?;
            let state = data_dir.join("demo-agent");
            AgentCommand::Program {
                program: exe,
                args: vec![
                    "demo-agent".into(),
                    "--state-dir".into(),
                    state.display().to_string(),
                ],
            }
        }
    };
    let router = RouterConfig {
        ring_frames: s.ring_frames,
        ring_bytes: s.ring_bytes,
        auto_approve: s.auto_approve,
        lease: s.lease,
        agent_per_session: s.agent_per_session,
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
        terminals: s.terminal.then(|| TermLimits {
            max_terminals: s.max_terminals,
            ..TermLimits::default()
        }),
        ..RouterConfig::default()
    };
    let limits = Limits {
        max_message_bytes: s.max_message_bytes,
        socket_queue: s.socket_queue,
    };
    let admission = AdmissionLimits {
        max_conns: s.max_conns,
        max_conns_per_peer: s.max_conns_per_peer,
    };
    serve::serve(ServeOptions {
        listen,
        agent,
        workspace,
        data_dir,
        router,
        limits,
        admission,
        allowed_origins: s.allow_origin,
        tls,
    })
    .map_err(|e| e.to_string())
}
