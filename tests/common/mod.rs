//! Test harness: starts the real `acp-relay` binary on an ephemeral loopback
//! port with its own temp dirs, and drives it with blocking WebSocket devices.
//! Every wait has a deadline and fails with a message.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, ErrorKind};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocket;
use tungstenite::{Message, http};

pub const WAIT: Duration = Duration::from_secs(20);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let p = std::env::temp_dir().join(format!(
            "acp-relay-test-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).unwrap();
        // Resolved, so paths a child reports (cwd, /proc) compare equal.
        TempDir(p.canonicalize().unwrap_or(p))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_acp-relay")
}

/// A running relay process.
pub struct Relay {
    pub child: Option<Child>,
    pub port: u16,
    pub token: String,
    pub dir: TempDir,
    pub workspace: PathBuf,
    pub data_dir: PathBuf,
    pub log: Arc<Mutex<String>>,
    pub args: Vec<String>,
    /// Extra environment for the relay process.
    pub env: Vec<(String, String)>,
    /// Every relay process this value started and every descendant seen,
    /// ended on drop (see [`Relay::sweep`]).
    spawned: Vec<Proc>,
}

impl Relay {
    /// Starts `acp-relay serve` with the demo agent and `extra` flags.
    pub fn start(extra: &[&str]) -> Relay {
        Relay::start_env(extra, &[])
    }

    /// Like [`Relay::start`] with extra environment variables.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Relay {
        let dir = TempDir::new("relay");
        let workspace = dir.path().join("ws");
        std::fs::create_dir_all(&workspace).unwrap();
        let data_dir = dir.path().join("data");
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut r = Relay {
            child: None,
            port: 0,
            token: String::new(),
            dir,
            workspace,
            data_dir,
            log: Arc::new(Mutex::new(String::new())),
            args,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            spawned: Vec::new(),
        };
        r.launch("127.0.0.1:0");
        r
    }

    /// (Re)starts the process with the same dirs and flags on `listen`.
    pub fn launch(&mut self, listen: &str) {
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg(listen)
            .arg("--workspace")
            .arg(&self.workspace)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--log")
            .arg("debug");
        cmd.args(&self.args);
        let home = self.dir.path().join("home");
        clean_env(&mut cmd, &home);
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        own_group(&mut cmd);
        let mut child = cmd.spawn().expect("spawn acp-relay");
        self.spawned.push(Proc::of(child.id()));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("RELAY_LOG").is_some() {
                    eprintln!("[relay] {line}");
                }
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + WAIT;
        let port = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        break rest
                            .rsplit(':')
                            .next()
                            .unwrap()
                            .trim()
                            .parse::<u16>()
                            .unwrap();
                    }
                }
                Err(_) => panic!(
                    "relay did not print its address; log:\n{}",
                    self.log.lock().unwrap()
                ),
            }
        };
        self.port = port;
        self.token = std::fs::read_to_string(self.data_dir.join("token"))
            .unwrap()
            .trim()
            .to_owned();
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "log never showed {needle:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A WebSocket upgrade request for `path` (with its query) on this
    /// relay, the token as Bearer.
    pub fn ws_request(&self, path: &str) -> http::Request<()> {
        let mut req = format!("ws://127.0.0.1:{}{path}", self.port)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "Authorization",
            format!("Bearer {}", self.token).parse().unwrap(),
        );
        req
    }

    /// A device with `client_id` and extra query (`"last_seq=3"`), token as Bearer.
    pub fn device(&self, client: &str, query: &str) -> Device {
        let q = if query.is_empty() {
            format!("client_id={client}")
        } else {
            format!("client_id={client}&{query}")
        };
        Device::connect(self.port, self.ws_request(&format!("/ws?{q}")), client)
            .unwrap_or_else(|e| panic!("device {client} could not connect: {e}"))
    }

    /// A `/ws` device whose socket has a 4 KiB receive buffer: once it stops
    /// reading, the relay's queue for it fills, not the kernel's buffers.
    pub fn small_buffer_device(&self, client: &str) -> Device {
        use rustix::net::{AddressFamily, SocketType, connect, socket, sockopt};
        let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
        sockopt::set_socket_recv_buffer_size(&fd, 4096).unwrap();
        let dst = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        connect(&fd, &dst).unwrap();
        let req = self.ws_request(&format!("/ws?client_id={client}"));
        Device::over(TcpStream::from(fd), req, client)
            .unwrap_or_else(|e| panic!("device {client} could not connect: {e}"))
    }

    /// A plain ACP connection (`/acp`) named `client`, token as Bearer.
    pub fn acp(&self, client: &str) -> Device {
        Device::connect(self.port, self.ws_request("/acp"), client)
            .unwrap_or_else(|e| panic!("acp client {client} could not connect: {e}"))
    }

    /// Sends SIGTERM and waits for exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.note_descendants();
        let mut child = self.child.take()?;
        unsafe_kill(child.id(), "TERM");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("relay did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9` the relay.
    pub fn kill9(&mut self) {
        self.note_descendants();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every live descendant of the running relay (agents, shells, commands).
    pub fn descendants(&self) -> Vec<u32> {
        self.child
            .as_ref()
            .map(|c| descendants(c.id()))
            .unwrap_or_default()
    }

    /// Remembers the running relay's descendants so that [`Relay::sweep`]
    /// (and drop) can end them even after they were re-parented.
    fn note_descendants(&mut self) {
        for pid in self.descendants() {
            if let Some(p) = Proc::of_live(pid)
                && !self.spawned.contains(&p)
            {
                self.spawned.push(p);
            }
        }
    }

    /// SIGKILLs every process group and process this relay value started or
    /// saw as a descendant that still runs (the relay itself included).
    pub fn sweep(&mut self) {
        self.note_descendants();
        for p in &self.spawned {
            p.kill_group_and_self();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Relay {
    /// SIGTERM first (a clean stop ends the agents), then whatever is left
    /// of every process group this relay value started is SIGKILLed, also
    /// when the test panicked.
    fn drop(&mut self) {
        self.note_descendants();
        if let Some(mut c) = self.child.take() {
            unsafe_kill(c.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.sweep();
    }
}

/// Sends a signal (by name: `"TERM"`, `"KILL"`, `"STOP"`, ...) to a process.
pub fn unsafe_kill(pid: u32, sig: &str) {
    match (signal(sig), rustix::process::Pid::from_raw(pid as i32)) {
        (Some(s), Some(p)) => {
            let _ = rustix::process::kill_process(p, s);
        }
        _ => {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(pid.to_string())
                .status();
        }
    }
}

/// Sends a signal to a whole process group.
pub fn kill_group(pgid: u32, sig: &str) {
    if let (Some(s), Some(p)) = (signal(sig), rustix::process::Pid::from_raw(pgid as i32)) {
        let _ = rustix::process::kill_process_group(p, s);
    }
}

fn signal(name: &str) -> Option<rustix::process::Signal> {
    use rustix::process::Signal;
    Some(match name.trim_start_matches("SIG") {
        "TERM" => Signal::TERM,
        "KILL" => Signal::KILL,
        "INT" => Signal::INT,
        "HUP" => Signal::HUP,
        "STOP" => Signal::STOP,
        "CONT" => Signal::CONT,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        _ => return None,
    })
}

/// The environment every process a test starts gets (the relay, and through
/// it agents, shells and terminals): `SHELL=/bin/sh`, `HOME` and the XDG
/// dirs inside `home` (created), no rc files (`BASH_ENV`, `ENV`, `ZDOTDIR`
/// unset). Tests about the user's own shell set theirs after this.
pub fn clean_env(cmd: &mut Command, home: &Path) {
    let _ = std::fs::create_dir_all(home);
    cmd.env("SHELL", "/bin/sh")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("TERM", "xterm-256color");
    for k in [
        "BASH_ENV",
        "ENV",
        "ZDOTDIR",
        "PROMPT_COMMAND",
        "PYTHONSTARTUP",
        "NODE_OPTIONS",
    ] {
        cmd.env_remove(k);
    }
}

/// Starts the command in a process group of its own, and SIGKILLs it when
/// the test process (the spawning thread) dies, so a test killed from
/// outside leaves nothing behind. End the group with [`kill_group`] or hold
/// the child in a [`GroupGuard`].
pub fn own_group(cmd: &mut Command) {
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
}

/// A child in its own process group (see [`own_group`]) whose whole group is
/// SIGKILLed on drop, whether the test passed or panicked.
pub struct GroupGuard(pub Child);

impl GroupGuard {
    /// Spawns `cmd` in a group of its own.
    pub fn spawn(mut cmd: Command) -> std::io::Result<GroupGuard> {
        own_group(&mut cmd);
        cmd.spawn().map(GroupGuard)
    }
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

/// Runs `cmd` to its exit, like `Command::output`, but in a process group
/// of its own that is killed if it does not exit within [`WAIT`] (or the test
/// panics): a program that should have stopped and serves instead never
/// outlives the test. Its output goes through files, so nothing blocks.
pub fn output_of(mut cmd: Command) -> std::process::Output {
    let dir = TempDir::new("output");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"));
    let mut g = GroupGuard::spawn(cmd).expect("spawn");
    let mut status = None;
    wait_until("the program to exit", WAIT, || {
        status = g.try_wait().expect("try_wait");
        status.is_some()
    });
    std::process::Output {
        status: status.expect("exited"),
        stdout: std::fs::read(&out).unwrap_or_default(),
        stderr: std::fs::read(&err).unwrap_or_default(),
    }
}

impl std::ops::Deref for GroupGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for GroupGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let pid = self.0.id();
        for d in descendants(pid) {
            if let Some(p) = Proc::of_live(d) {
                p.kill_group_and_self();
            }
        }
        kill_group(pid, "KILL");
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process named by pid and start time (so a reused pid is never killed).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Proc {
    pub pid: u32,
    pub pgid: u32,
    start: u64,
}

impl Proc {
    /// A process we just spawned in its own group.
    fn of(pid: u32) -> Proc {
        Proc::of_live(pid).unwrap_or(Proc {
            pid,
            pgid: pid,
            start: 0,
        })
    }

    /// The process `pid` if it runs (and is not a zombie).
    pub fn of_live(pid: u32) -> Option<Proc> {
        let st = ProcStat::read(pid)?;
        (st.state != 'Z').then_some(Proc {
            pid,
            pgid: st.pgid,
            start: st.start,
        })
    }

    /// Whether this very process still runs (same pid, same start time, not a zombie).
    pub fn alive(&self) -> bool {
        Proc::of_live(self.pid).is_some_and(|p| self.start == 0 || p.start == self.start)
    }

    fn kill_group_and_self(&self) {
        if !self.alive() {
            return;
        }
        // Only groups led by a process of ours: never the test runner's own group.
        if self.pgid == self.pid || self.pgid != own_pgid() {
            kill_group(self.pgid, "KILL");
        }
        unsafe_kill(self.pid, "KILL");
    }
}

fn own_pgid() -> u32 {
    ProcStat::read(std::process::id()).map_or(0, |s| s.pgid)
}

/// The fields of `/proc/<pid>/stat` the tests use.
pub struct ProcStat {
    pub state: char,
    pub ppid: u32,
    pub pgid: u32,
    pub start: u64,
}

impl ProcStat {
    pub fn read(pid: u32) -> Option<ProcStat> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses: split after the last ')'.
        let rest: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
        Some(ProcStat {
            state: rest.first()?.chars().next()?,
            ppid: rest.get(1)?.parse().ok()?,
            pgid: rest.get(2)?.parse().ok()?,
            start: rest.get(19)?.parse().ok()?,
        })
    }
}

/// Live processes whose command line (arguments joined by spaces) is `cmdline`.
pub fn running_with_cmdline(cmdline: &str) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim() == cmdline)
                && Proc::of_live(*pid).is_some()
        })
        .collect()
}

/// Every live descendant of `pid` (children, their children, ...).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for c in children(p) {
            if !out.contains(&c) && out.len() < 4096 {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out
}

/// Waits until `cond` holds, polling every 20 ms; panics with `what` at the
/// deadline. The one way tests wait for something that has no event.
pub fn wait_until(what: &str, wait: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + wait;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether this run is CI (`CI=true`): a missing peer fails the test there.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A test's peer (an npm/PyPI package, node, python, a browser) is missing.
/// Under `CI=true` the test fails with `why` (which says what to install);
/// elsewhere it prints `SKIPPED: <test>: <why>` loudly, records it in the
/// file named by `$ACP_RELAY_SKIP_LOG` (scripts/test.sh lists them at the
/// end) and the test returns.
pub fn peer_missing(test: &str, why: &str) {
    if in_ci() {
        panic!(
            "{test}: {why} (CI=true: a missing peer fails the run; scripts/setup-interop.sh installs the peers)"
        );
    }
    eprintln!("\n*** SKIPPED: {test}: {why} ***\n");
    if let Some(path) = std::env::var_os("ACP_RELAY_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{test}: {why}");
        }
    }
}

/// Waits until some transcript under the relay's data dir holds `needle`
/// (it reached the file: a `kill -9` from now on cannot lose it).
pub fn wait_transcript_has(relay: &Relay, needle: &str) {
    let dir = relay.data_dir.join("sessions");
    wait_until(&format!("a transcript holding {needle:?}"), WAIT, || {
        std::fs::read_dir(&dir).is_ok_and(|rd| {
            rd.flatten().any(|e| {
                std::fs::read(e.path()).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle))
            })
        })
    });
}

/// Direct children of a process running the demo agent.
pub fn agent_children(pid: u32) -> Vec<u32> {
    children(pid)
        .into_iter()
        .filter(|c| {
            std::fs::read(format!("/proc/{c}/cmdline"))
                .is_ok_and(|b| String::from_utf8_lossy(&b).contains("demo-agent"))
        })
        .collect()
}

/// Direct children of a process, from /proc.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

/// A blocking WebSocket device.
pub struct Device {
    pub ws: WebSocket<TcpStream>,
    pub client: String,
    next_id: u64,
    /// Messages received while waiting for something else.
    pub seen: Vec<Value>,
    /// Every text frame as received, in order.
    pub raw: Vec<String>,
}

impl Device {
    pub fn connect(
        port: u16,
        req: http::Request<()>,
        client: &str,
    ) -> Result<Device, tungstenite::Error> {
        Device::over(TcpStream::connect(("127.0.0.1", port))?, req, client)
    }

    /// A device over an already connected (not yet upgraded) stream.
    pub fn over(
        stream: TcpStream,
        req: http::Request<()>,
        client: &str,
    ) -> Result<Device, tungstenite::Error> {
        // The handshake waits as long as any other wait (a loaded machine may
        // take a while to answer); reads after it poll every 50 ms.
        stream.set_read_timeout(Some(WAIT))?;
        let (ws, _resp) = tungstenite::client::client(req, stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => {
                tungstenite::Error::Io(std::io::Error::other("handshake interrupted"))
            }
        })?;
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(50)))?;
        Ok(Device {
            ws,
            client: client.to_owned(),
            next_id: 0,
            seen: Vec::new(),
            raw: Vec::new(),
        })
    }

    /// Wraps an already connected WebSocket (e.g. to `/acp`).
    pub fn from_ws(ws: WebSocket<TcpStream>, client: &str) -> Device {
        Device {
            ws,
            client: client.to_owned(),
            next_id: 0,
            seen: Vec::new(),
            raw: Vec::new(),
        }
    }

    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).expect("send");
    }

    pub fn send(&mut self, v: &Value) {
        self.send_text(&v.to_string());
    }

    /// Sends a request with id `<client>:<n>` and returns the id.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = json!(format!("{}:{}", self.client, self.next_id));
        self.send(&json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}));
        id
    }

    /// The next message, or None at the deadline. Panics on a closed socket.
    pub fn try_recv(&mut self, wait: Duration) -> Option<Value> {
        let deadline = Instant::now() + wait;
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    self.raw.push(t.as_str().to_owned());
                    return Some(
                        serde_json::from_str(t.as_str())
                            .unwrap_or_else(|e| panic!("{}: non-JSON frame {t}: {e}", self.client)),
                    );
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut =>
                {
                    if Instant::now() >= deadline {
                        return None;
                    }
                }
                Err(e) => panic!("{}: socket error while waiting: {e}", self.client),
            }
        }
    }

    /// The next message within [`WAIT`].
    pub fn recv(&mut self) -> Value {
        self.try_recv(WAIT)
            .unwrap_or_else(|| panic!("{}: no message within {WAIT:?}", self.client))
    }

    /// Returns the first message that matches `pred`: one stashed in `seen`
    /// earlier (taken out of it), else the next one read. Others are kept in `seen`.
    pub fn recv_until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.seen.iter().position(&pred) {
            return self.seen.remove(i);
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_recv(left) {
                Some(v) if pred(&v) => return v,
                Some(v) => self.seen.push(v),
                None => panic!(
                    "{}: never received {what}; saw:\n{}",
                    self.client,
                    self.seen
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    }

    /// The response to `id`.
    pub fn response(&mut self, id: &Value) -> Value {
        let id = id.clone();
        self.recv_until(&format!("response to {id}"), move |v| {
            v["id"] == id && v.get("method").is_none()
        })
    }

    /// Reads everything for `quiet` and returns it.
    pub fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(v) = self.try_recv(quiet) {
            out.push(v);
        }
        out
    }

    /// Whether the relay closed the socket (reads until close or deadline).
    pub fn wait_closed(&mut self) -> Option<u16> {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.ws.read() {
                Ok(Message::Close(f)) => return Some(f.map(|f| u16::from(f.code)).unwrap_or(1005)),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut =>
                {
                    assert!(
                        Instant::now() < deadline,
                        "{}: socket not closed in time",
                        self.client
                    );
                }
                Err(_) => return None,
            }
        }
    }

    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}

/// `initialize`, then `session/new`; returns the session id.
pub fn open_session(d: &mut Device) -> String {
    let welcome = d.recv_until("relay_welcome", |v| v["type"] == "relay_welcome");
    assert!(welcome["headSeq"].is_u64(), "welcome: {welcome}");
    let id = d.request(
        "initialize",
        json!({"protocolVersion":1,"clientCapabilities":{}}),
    );
    let init = d.response(&id);
    assert!(
        init["result"]["agentCapabilities"].is_object(),
        "initialize: {init}"
    );
    new_session(d)
}

/// `session/new`; returns the new session's id.
pub fn new_session(d: &mut Device) -> String {
    let id = d.request("session/new", json!({"cwd":"/","mcpServers":[]}));
    let r = d.response(&id);
    r["result"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("session/new: {r}"))
        .to_owned()
}

/// The stamped frames a device has seen, then `last`.
pub fn stamped_of(d: &Device, last: &Value) -> Vec<Value> {
    d.seen
        .iter()
        .chain(std::iter::once(last))
        .filter(|v| v.get("rseq").is_some())
        .cloned()
        .collect()
}

/// Text of a prompt request's params.
pub fn prompt_params(session: &str, text: &str) -> Value {
    json!({"sessionId": session, "prompt": [{"type":"text","text": text}]})
}

/// Whether a frame is an agent_message_chunk whose text contains `needle`.
pub fn chunk_contains(v: &Value, needle: &str) -> bool {
    v["method"] == "session/update"
        && v["params"]["update"]["sessionUpdate"] == "agent_message_chunk"
        && v["params"]["update"]["content"]["text"]
            .as_str()
            .is_some_and(|t| t.contains(needle))
}

/// Concatenated agent text in frames.
pub fn agent_text(frames: &[Value]) -> String {
    frames
        .iter()
        .filter(|v| v["params"]["update"]["sessionUpdate"] == "agent_message_chunk")
        .filter_map(|v| v["params"]["update"]["content"]["text"].as_str())
        .collect()
}

/// A self-signed certificate for `localhost` and 127.0.0.1 in `dir`, or None
/// (after saying why) when `openssl` is not installed.
pub fn make_cert(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    // `CA:FALSE`: openssl's default self-signed certificate is a CA, and
    // webpki refuses a CA certificate as a server's own.
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-days",
            "1",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match out {
        Err(e) => {
            peer_missing(
                "tls",
                &format!("cannot run openssl to make a test certificate ({e}): install openssl"),
            );
            None
        }
        Ok(o) => {
            assert!(
                o.status.success(),
                "openssl req failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            Some((cert, key))
        }
    }
}

/// `session/list` on `d`: how many sessions are live, and the answer.
pub fn live_sessions(d: &mut Device) -> (usize, Value) {
    let id = d.request("session/list", json!({}));
    let r = d.response(&id);
    let live = r["result"]["sessions"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter(|s| s["_meta"]["relay"]["live"] == true)
                .count()
        })
        .unwrap_or(0);
    (live, r)
}
