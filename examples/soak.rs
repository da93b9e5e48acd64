//! Soak driver for `scripts/soak.sh`: runs the real relay with the demo agent
//! on loopback for a while and injects faults, checking every numbered frame
//! every device receives against one ledger. Prints a table; exits 1 when a
//! frame was lost, duplicated or a number reused.
//!
//! ```text
//! soak --bin target/debug/acp-relay --minutes 10 [--seed N] [--sessions 3]
//!      [--watchers 3] [--work DIR] [--tmpfs]
//! ```
//!
//! Devices (one thread each, blocking tungstenite): per session one
//! controller that prompts the demo agent (chunks, asks it answers, sleeps)
//! and watchers that disconnect at random points (clean close, abrupt drop,
//! half a frame written, on an ask, in the middle of a full replay) and
//! resume with their `last_seq`. A fault thread, from the seed: reconnect
//! storms of 50 devices, a device that stops reading during a flood (the
//! relay must drop it), the agent SIGKILLed mid-turn, the relay SIGKILLed
//! and restarted on the same data dir and port, a full disk (`--tmpfs`: the
//! data dir is a small tmpfs the soak fills; needs root).
//!
//! The invariant checked: a number, once sent, never names other content
//! (ledger of (session, rseq) -> content hash); a device that resumes gets
//! exactly its gap (`last_seq`+1, +2, ...) or `reset:true`; never a silent
//! skip, never a frame twice. Every loop is bounded by the run's deadline.

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocket;

/// Most (session, rseq) entries the ledger keeps; past it new numbers are
/// counted as unchecked instead of growing memory.
const LEDGER_MAX: usize = 4_000_000;
/// Devices in one reconnect storm.
const STORM: usize = 50;
/// How long a prompt may take before the controller gives up on it.
const TURN_DEADLINE: Duration = Duration::from_secs(30);
/// How long the stalled device stops reading.
const STALL: Duration = Duration::from_secs(10);
/// Read timeout of every device socket (the granularity of its loop).
const TICK: Duration = Duration::from_millis(50);
/// How long the relay may take to print its address.
const START_DEADLINE: Duration = Duration::from_secs(20);

fn main() -> ExitCode {
    let opts = match Opts::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    match run(opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::from(2)
        }
    }
}

// ---- options ----

struct Opts {
    bin: PathBuf,
    minutes: f64,
    seed: u64,
    sessions: usize,
    watchers: usize,
    work: Option<PathBuf>,
    tmpfs: bool,
}

impl Opts {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Opts, String> {
        let mut o = Opts {
            bin: PathBuf::from("target/debug/acp-relay"),
            minutes: 10.0,
            seed: 1,
            sessions: 3,
            watchers: 3,
            work: None,
            tmpfs: false,
        };
        while let Some(a) = args.next() {
            let mut val = || args.next().ok_or(format!("{a} needs a value"));
            match a.as_str() {
                "--bin" => o.bin = PathBuf::from(val()?),
                "--minutes" => o.minutes = val()?.parse().map_err(|e| format!("--minutes: {e}"))?,
                "--seed" => o.seed = val()?.parse().map_err(|e| format!("--seed: {e}"))?,
                "--sessions" => {
                    o.sessions = val()?.parse().map_err(|e| format!("--sessions: {e}"))?
                }
                "--watchers" => {
                    o.watchers = val()?.parse().map_err(|e| format!("--watchers: {e}"))?
                }
                "--work" => o.work = Some(PathBuf::from(val()?)),
                "--tmpfs" => o.tmpfs = true,
                _ => return Err(format!("unknown argument {a}")),
            }
        }
        if !(o.minutes > 0.0 && o.minutes <= 24.0 * 60.0) {
            return Err("--minutes must be in (0, 1440]".into());
        }
        o.sessions = o.sessions.clamp(1, 12);
        o.watchers = o.watchers.min(8);
        Ok(o)
    }
}

// ---- a small seeded generator (splitmix64) ----

#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// In `lo..hi` (`lo` when empty).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next() % (hi - lo)
        }
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }
    fn fork(&mut self, salt: u64) -> Rng {
        Rng(self.next() ^ salt.wrapping_mul(0xA24B_AED4_963E_E407))
    }
}

// ---- shared state and counters ----

#[derive(Default)]
struct Counters {
    turns_ok: AtomicU64,
    turns_failed: AtomicU64,
    turns_interrupted: AtomicU64,
    connects: AtomicU64,
    reconnects: AtomicU64,
    resets: AtomicU64,
    slow_drops: AtomicU64,
    stalls: AtomicU64,
    storms: AtomicU64,
    storm_devices_ok: AtomicU64,
    agent_kills: AtomicU64,
    agent_recovered: AtomicU64,
    relay_kills: AtomicU64,
    relay_recovered: AtomicU64,
    disk_full: AtomicU64,
    disk_recovered: AtomicU64,
    asks_answered: AtomicU64,
    lost: AtomicU64,
    /// Largest run of already-sent numbers a reset view went without.
    reset_holes: AtomicU64,
    duplicates: AtomicU64,
    reused: AtomicU64,
    bad_resumes: AtomicU64,
    unchecked: AtomicU64,
    drop_closes: AtomicU64,
    drop_abrupt: AtomicU64,
    drop_half_frame: AtomicU64,
    drop_on_ask: AtomicU64,
    drop_mid_replay: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, SeqCst);
}

struct Shared {
    stop: AtomicBool,
    port: AtomicU64,
    token: Mutex<String>,
    /// Bumped on every relay start: a turn in flight across a restart is gone.
    relay_gen: AtomicU64,
    /// (session, rseq) -> hash of the frame without its rseq.
    ledger: Mutex<HashMap<(usize, u64), (u64, f32)>>,
    /// Highest number seen per session (for storms and stalls).
    heads: Mutex<Vec<u64>>,
    sessions: Vec<String>,
    /// Frames each device received, by name (reported at the end).
    per_device: Mutex<Vec<(String, u64)>>,
    /// Until when the flood controller floods.
    flood_until: Mutex<Option<Instant>>,
    /// Turns completed, for "recovered" after a fault.
    turns_total: AtomicU64,
    c: Counters,
    log: Mutex<std::fs::File>,
    t0: Instant,
}

impl Shared {
    fn say(&self, what: &str) {
        if let Ok(mut f) = self.log.lock() {
            let t = self.t0.elapsed().as_secs_f64();
            let _ = writeln!(f, "{t:8.3} {what}");
        }
    }
    fn stopped(&self) -> bool {
        self.stop.load(SeqCst)
    }
    fn url(&self, query: &str) -> String {
        format!("ws://127.0.0.1:{}/ws?{query}", self.port.load(SeqCst))
    }
}

// ---- the relay process ----

struct RelayProc {
    child: Child,
    pid: u32,
}

fn start_relay(
    bin: &Path,
    work: &Path,
    data: &Path,
    listen: &str,
    generation: u64,
) -> Result<(RelayProc, u16), String> {
    let log = std::fs::File::create(work.join(format!("relay-{generation}.log")))
        .map_err(|e| format!("relay log: {e}"))?;
    let home = work.join("home");
    let _ = std::fs::create_dir_all(&home);
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .args(["--listen", listen])
        .arg("--workspace")
        .arg(work.join("ws"))
        .arg("--data-dir")
        .arg(data)
        .args([
            "--log",
            "info",
            "--max-conns-per-peer",
            "200",
            "--max-conns",
            "400",
        ])
        .env("HOME", &home)
        .env("SHELL", "/bin/sh")
        .env_remove("BASH_ENV")
        .env_remove("ENV")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    cmd.process_group(0);
    // SAFETY: prctl only, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    let pid = child.id();
    let stdout = child.stdout.take().ok_or("relay stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Keep reading to the end: a closed pipe would fail the relay's prints.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(port) = line
                    .split("listening on ")
                    .nth(1)
                    .and_then(|r| r.rsplit(':').next())
                    .and_then(|p| p.trim().parse::<u16>().ok())
                {
                    return Ok((RelayProc { child, pid }, port));
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the relay did not print its address (see {})",
                    work.join(format!("relay-{generation}.log")).display()
                ));
            }
        }
    }
}

fn kill(pid: u32, sig: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

fn kill_group(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
    }
}

/// Children of `pid` (all threads), from /proc.
fn children(pid: u32) -> Vec<u32> {
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

fn descendants(pid: u32) -> Vec<u32> {
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

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// Ends the relay and everything it started.
fn end_relay(r: &mut RelayProc, sig: rustix::process::Signal) {
    let desc = descendants(r.pid);
    kill(r.pid, sig);
    if sig != rustix::process::Signal::KILL {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = r.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = r.child.kill();
    let _ = r.child.wait();
    kill_group(r.pid);
    for d in desc {
        kill_group(d);
        kill(d, rustix::process::Signal::KILL);
    }
}

// ---- devices ----

type Ws = WebSocket<TcpStream>;

fn connect(shared: &Shared, query: &str, rcvbuf: Option<usize>) -> Result<Ws, String> {
    connect_from(shared, query, rcvbuf, None)
}

/// [`connect`] from the loopback address `src` (devices behind different
/// addresses: the relay caps pre-authentication connections per address).
fn connect_from(
    shared: &Shared,
    query: &str,
    rcvbuf: Option<usize>,
    src: Option<std::net::Ipv4Addr>,
) -> Result<Ws, String> {
    let url = shared.url(query);
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("{e}"))?;
    let token = shared.token.lock().map(|t| t.clone()).unwrap_or_default();
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {token}")
            .parse()
            .map_err(|_| "token header")?,
    );
    let port = shared.port.load(SeqCst) as u16;
    let stream = match (rcvbuf, src) {
        (None, None) => {
            TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?
        }
        _ => raw_stream(port, rcvbuf, src)?,
    };
    stream
        .set_read_timeout(Some(TICK))
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    // The handshake itself must not hit the read timeout.
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let (ws, _) =
        tungstenite::client::client(req, stream).map_err(|e| format!("handshake: {e}"))?;
    ws.get_ref()
        .set_read_timeout(Some(TICK))
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// A TCP connection from `src` (any port) whose receive buffer is `rcvbuf`
/// (set before connecting, so the window stays small: a reader that stops
/// fills the relay's queue).
fn raw_stream(
    port: u16,
    rcvbuf: Option<usize>,
    src: Option<std::net::Ipv4Addr>,
) -> Result<TcpStream, String> {
    use rustix::net::{AddressFamily, SocketType, ipproto, socket, sockopt};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, Some(ipproto::TCP))
        .map_err(|e| e.to_string())?;
    if let Some(bytes) = rcvbuf {
        sockopt::set_socket_recv_buffer_size(&fd, bytes).map_err(|e| e.to_string())?;
    }
    if let Some(ip) = src {
        rustix::net::bind(&fd, &std::net::SocketAddrV4::new(ip, 0))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    let addr = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port);
    rustix::net::connect(&fd, &addr).map_err(|e| format!("connect: {e}"))?;
    Ok(TcpStream::from(fd))
}

fn hash_frame(v: &Value) -> u64 {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("rseq");
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    h.finish()
}

fn is_ask(v: &Value) -> bool {
    matches!(
        v["method"].as_str(),
        Some("session/request_permission" | "elicitation/create" | "session/elicitation")
    )
}

/// One device's view of one session's numbered stream.
struct Follow {
    session: usize,
    /// Highest number this view holds (0: none).
    last: u64,
    /// After a welcome with reset:true the next number starts a new view.
    rebase: bool,
    /// This attach began with reset:true: the relay said the view restarts,
    /// so numbers missing in it are holes in the history, not silent skips.
    reset_view: bool,
    frames: u64,
    /// The last welcome: (last_seq asked for, headSeq, reset), and the
    /// frames since it.
    attach: (u64, u64, bool, u64),
}

impl Follow {
    fn new(session: usize) -> Follow {
        Follow {
            session,
            last: 0,
            rebase: false,
            reset_view: false,
            frames: 0,
            attach: (0, 0, false, 0),
        }
    }

    fn welcome(&mut self, w: &Value, shared: &Shared) {
        let reset = w["reset"].as_bool().unwrap_or(false);
        let head = w["headSeq"].as_u64().unwrap_or(0);
        self.attach = (self.last, head, reset, 0);
        self.reset_view = reset;
        if reset {
            bump(&shared.c.resets);
            self.rebase = true;
        } else if head < self.last {
            // The relay says "no reset" but its head is behind what this
            // device holds: the numbers in between would be reused silently.
            bump(&shared.c.bad_resumes);
            shared.say(&format!(
                "bad resume: session {} last_seq {} head {head} reset false",
                self.session, self.last
            ));
            self.rebase = true;
        }
    }

    fn frame(&mut self, n: u64, v: &Value, shared: &Shared, who: &str) {
        self.frames += 1;
        self.attach.3 += 1;
        let h = hash_frame(v);
        {
            let mut ledger = shared.ledger.lock().unwrap_or_else(|e| e.into_inner());
            match ledger.get(&(self.session, n)) {
                Some(&(old, _)) if old != h => {
                    bump(&shared.c.reused);
                    shared.say(&format!(
                        "REUSED: session {} rseq {n} names other content ({who}): {}",
                        self.session,
                        trunc(&v.to_string())
                    ));
                }
                Some(_) => {}
                None if ledger.len() < LEDGER_MAX => {
                    ledger.insert((self.session, n), (h, shared.t0.elapsed().as_secs_f32()));
                }
                None => bump(&shared.c.unchecked),
            }
        }
        if let Ok(mut heads) = shared.heads.lock()
            && heads[self.session] < n
        {
            heads[self.session] = n;
        }
        if is_ask(v) && n <= self.last {
            // An open ask is sent again on attach; devices de-duplicate by id.
            return;
        }
        if self.rebase {
            self.rebase = false;
            self.last = n;
        } else if n == self.last + 1 {
            self.last = n;
        } else if n <= self.last {
            bump(&shared.c.duplicates);
            shared.say(&format!(
                "DUPLICATE: session {} rseq {n} after {} ({who})",
                self.session, self.last
            ));
        } else if self.reset_view {
            // Numbers the relay skipped in a view it announced as reset: the
            // ones some device had seen are history the relay no longer
            // holds (allowed after reset:true; counted, not failed).
            let seen = shared
                .ledger
                .lock()
                .map(|l| {
                    (self.last + 1..n)
                        .take(100_000)
                        .filter(|k| l.contains_key(&(self.session, *k)))
                        .count() as u64
                })
                .unwrap_or(0);
            shared.c.reset_holes.fetch_max(seen, SeqCst);
            self.last = n;
        } else {
            shared.c.lost.fetch_add(n - self.last - 1, SeqCst);
            let (asked, head, reset, since) = self.attach;
            let first_seen = shared
                .ledger
                .lock()
                .ok()
                .and_then(|l| l.get(&(self.session, self.last + 1)).map(|e| e.1));
            shared.say(&format!(
                "LOST: session {} rseq {} ..{} skipped ({who}; attached with last_seq {asked}, welcome headSeq {head} reset {reset}, frame {since} since; rseq {} first seen at {first_seen:?} s): {}",
                self.session,
                self.last + 1,
                n - 1,
                self.last + 1,
                trunc(&v.to_string())
            ));
            self.last = n;
        }
    }
}

fn trunc(s: &str) -> String {
    s.chars().take(300).collect()
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Role {
    Controller { flood: bool },
    Watcher,
}

/// How a watcher leaves its socket this time.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Leave {
    Close,
    Abrupt,
    HalfFrame,
    OnAsk,
    MidReplay,
}

struct Turn {
    id: String,
    generation: u64,
    started: Instant,
}

/// A device thread: connects, follows its session, (controller) prompts and
/// answers asks, (watcher) leaves at random points; until the run stops.
fn device(shared: Arc<Shared>, role: Role, name: String, session: usize, mut rng: Rng) {
    let mut follow = Follow::new(session);
    let mut first = true;
    let mut turn: Option<Turn> = None;
    let mut next_prompt = Instant::now();
    let mut n_prompt = 0u64;
    let mut answered: HashSet<String> = HashSet::new();
    let sid = shared.sessions[session].clone();
    while !shared.stopped() {
        // A watcher sometimes drops its view and asks for the whole ring
        // (and may leave in the middle of that replay).
        let mut leave = Leave::Close;
        let mut life = Duration::from_millis(rng.range(300, 4000));
        if role == Role::Watcher {
            leave = match rng.range(0, 5) {
                0 => Leave::Close,
                1 => Leave::Abrupt,
                2 => Leave::HalfFrame,
                3 => Leave::OnAsk,
                _ => Leave::MidReplay,
            };
            if leave == Leave::MidReplay {
                follow = Follow {
                    frames: follow.frames,
                    ..Follow::new(session)
                };
                life = Duration::from_millis(rng.range(1, 40));
            }
        } else {
            life = Duration::from_secs(3600);
        }
        let query = format!("client_id={name}&session_id={sid}&last_seq={}", follow.last);
        let mut ws = match connect(&shared, &query, None) {
            Ok(ws) => ws,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(rng.range(50, 200)));
                continue;
            }
        };
        bump(&shared.c.connects);
        if !first {
            bump(&shared.c.reconnects);
        }
        first = false;
        if let Some(t) = &turn
            && t.generation != shared.relay_gen.load(SeqCst)
        {
            // The relay restarted under this turn: it will never end.
            bump(&shared.c.turns_interrupted);
            turn = None;
        }
        let connected = Instant::now();
        let mut welcomed = false;
        'conn: loop {
            if shared.stopped() {
                let _ = ws.close(None);
                let _ = ws.flush();
                break;
            }
            if role == Role::Watcher && connected.elapsed() >= life && welcomed {
                match leave {
                    Leave::Close | Leave::OnAsk | Leave::MidReplay => {
                        bump(if leave == Leave::MidReplay {
                            &shared.c.drop_mid_replay
                        } else {
                            &shared.c.drop_closes
                        });
                        let _ = ws.close(None);
                        let _ = ws.flush();
                    }
                    Leave::Abrupt => {
                        bump(&shared.c.drop_abrupt);
                        let _ = ws.get_ref().shutdown(std::net::Shutdown::Both);
                    }
                    Leave::HalfFrame => {
                        bump(&shared.c.drop_half_frame);
                        // A masked text frame header announcing 100 bytes, then 10.
                        let mut raw = vec![0x81u8, 0x80 | 100, 1, 2, 3, 4];
                        raw.extend_from_slice(b"{\"jsonrpc\"");
                        let _ = ws.get_mut().write_all(&raw);
                        let _ = ws.get_ref().shutdown(std::net::Shutdown::Both);
                    }
                }
                break;
            }
            // Controller: the next prompt.
            if let Role::Controller { flood } = role
                && welcomed
                && turn.is_none()
                && Instant::now() >= next_prompt
            {
                n_prompt += 1;
                let id = format!("{name}:{n_prompt}");
                let flooding = flood
                    && shared
                        .flood_until
                        .lock()
                        .ok()
                        .and_then(|u| *u)
                        .is_some_and(|u| Instant::now() < u);
                let text = if flooding {
                    // 2000 frames of ~1.6 KB (3.2 MB, under the 4 MiB message bound).
                    format!("/chunks 2000\n{}", "flood text ".repeat(290_000))
                } else {
                    let mut t = format!("/chunks {}\nturn {n_prompt} of {name}", rng.range(1, 40));
                    if rng.chance(0.3) {
                        t.push_str("\n/ask");
                    }
                    if rng.chance(0.4) {
                        t.push_str(&format!("\n/sleep {}", rng.range(50, 1500)));
                        t.push_str(&format!("\n/chunks {}\nafter the sleep", rng.range(1, 10)));
                    }
                    t
                };
                let msg = json!({"jsonrpc":"2.0","id":id,"method":"session/prompt",
                    "params":{"sessionId":sid,"prompt":[{"type":"text","text":text}]}});
                if ws.send(Message::text(msg.to_string())).is_err() {
                    break;
                }
                turn = Some(Turn {
                    id,
                    generation: shared.relay_gen.load(SeqCst),
                    started: Instant::now(),
                });
            }
            if let Some(t) = &turn
                && t.started.elapsed() > TURN_DEADLINE
            {
                bump(&shared.c.turns_interrupted);
                shared.say(&format!("turn {} of {name} never ended", t.id));
                turn = None;
            }
            let msg = match ws.read() {
                Ok(Message::Text(t)) => t,
                Ok(Message::Close(_)) => break,
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut =>
                {
                    continue;
                }
                Err(_) => break,
            };
            for line in msg.as_str().split('\n').filter(|l| !l.trim().is_empty()) {
                let Ok(v) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                if v["type"] == "relay_welcome" {
                    welcomed = true;
                    follow.welcome(&v, &shared);
                    continue;
                }
                if let Some(n) = v.get("rseq").and_then(Value::as_u64) {
                    follow.frame(n, &v, &shared, &name);
                }
                if is_ask(&v) {
                    if role == Role::Watcher && leave == Leave::OnAsk {
                        bump(&shared.c.drop_on_ask);
                        let _ = ws.get_ref().shutdown(std::net::Shutdown::Both);
                        break 'conn;
                    }
                    if let (Role::Controller { .. }, Some(id)) = (role, v.get("id")) {
                        let key = id.to_string();
                        if answered.len() > 10_000 {
                            answered.clear();
                        }
                        if answered.insert(key) {
                            let a = json!({"jsonrpc":"2.0","id":id,"result":{"outcome":{"outcome":"selected","optionId":"allow"}}});
                            if ws.send(Message::text(a.to_string())).is_err() {
                                break 'conn;
                            }
                            bump(&shared.c.asks_answered);
                        }
                    }
                }
                if let Some(t) = &turn
                    && v.get("method").is_none()
                    && v["id"].as_str() == Some(t.id.as_str())
                {
                    if v["result"]["stopReason"].is_string() {
                        bump(&shared.c.turns_ok);
                        bump(&shared.turns_total);
                    } else {
                        bump(&shared.c.turns_failed);
                    }
                    turn = None;
                    next_prompt = Instant::now() + Duration::from_millis(rng.range(20, 300));
                }
            }
        }
        if role == Role::Watcher {
            std::thread::sleep(Duration::from_millis(rng.range(10, 300)));
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if let Ok(mut p) = shared.per_device.lock() {
        p.push((name, follow.frames));
    }
}

/// 50 devices connect at once to random sessions (half resuming near the
/// head, half from zero), each reads until it caught up and checks its view.
fn storm(shared: &Arc<Shared>, rng: &mut Rng) {
    bump(&shared.c.storms);
    let mut threads = Vec::new();
    for i in 0..STORM {
        let shared = shared.clone();
        let session = rng.range(0, shared.sessions.len() as u64) as usize;
        let from_zero = rng.chance(0.5);
        let back = rng.range(0, 200);
        threads.push(std::thread::spawn(move || {
            let head = shared.heads.lock().map(|h| h[session]).unwrap_or(0);
            let last = if from_zero {
                0
            } else {
                head.saturating_sub(back)
            };
            let name = format!("storm{i}");
            let sid = shared.sessions[session].clone();
            let query = format!("client_id={name}&session_id={sid}&last_seq={last}");
            // Eight loopback addresses, and retries on a refusal (503 past
            // the relay's per-address pre-authentication cap), as phones
            // reconnecting after an outage would.
            let src = std::net::Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8);
            let until = Instant::now() + Duration::from_secs(10);
            let mut ws = loop {
                match connect_from(&shared, &query, None, Some(src)) {
                    Ok(ws) => break ws,
                    Err(_) if Instant::now() < until && !shared.stopped() => {
                        std::thread::sleep(Duration::from_millis(100 + (i as u64 * 37) % 200));
                    }
                    Err(e) => {
                        shared.say(&format!("{name}: could not connect: {e}"));
                        return;
                    }
                }
            };
            bump(&shared.c.connects);
            let mut follow = Follow::new(session);
            follow.last = last;
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut target = None;
            while Instant::now() < deadline && !shared.stopped() {
                match ws.read() {
                    Ok(Message::Text(t)) => {
                        let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                            continue;
                        };
                        if v["type"] == "relay_welcome" {
                            target = v["headSeq"].as_u64();
                            follow.welcome(&v, &shared);
                        } else if let Some(n) = v["rseq"].as_u64() {
                            follow.frame(n, &v, &shared, &name);
                        }
                        if target.is_some_and(|t| follow.last >= t) {
                            bump(&shared.c.storm_devices_ok);
                            break;
                        }
                    }
                    Ok(Message::Close(_)) => break,
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e))
                        if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut =>
                    {
                        if target.is_some_and(|t| follow.last >= t) {
                            bump(&shared.c.storm_devices_ok);
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = ws.close(None);
            let _ = ws.flush();
        }));
    }
    for t in threads {
        let _ = t.join();
    }
}

/// A device on the flood session stops reading (a small receive buffer)
/// while the flood runs; the relay must drop it. Then it reads what is
/// left and checks it is a contiguous prefix.
fn stall(shared: &Arc<Shared>) {
    bump(&shared.c.stalls);
    if let Ok(mut u) = shared.flood_until.lock() {
        *u = Some(Instant::now() + STALL);
    }
    let head = shared.heads.lock().map(|h| h[0]).unwrap_or(0);
    let sid = shared.sessions[0].clone();
    let query = format!("client_id=stalled&session_id={sid}&last_seq={head}");
    let Ok(mut ws) = connect(shared, &query, Some(4096)) else {
        return;
    };
    bump(&shared.c.connects);
    let mut follow = Follow::new(0);
    follow.last = head;
    let until = Instant::now() + STALL;
    while Instant::now() < until && !shared.stopped() {
        std::thread::sleep(TICK);
    }
    // Read again: a dropped socket ends (close frame or reset) quickly.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut dropped = false;
    while Instant::now() < deadline && !shared.stopped() {
        match ws.read() {
            Ok(Message::Text(t)) => {
                if let Ok(v) = serde_json::from_str::<Value>(t.as_str()) {
                    if v["type"] == "relay_welcome" {
                        follow.welcome(&v, shared);
                    } else if let Some(n) = v["rseq"].as_u64() {
                        follow.frame(n, &v, shared, "stalled");
                    }
                }
            }
            Ok(Message::Close(_)) => {
                dropped = true;
                break;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut =>
            {
                // Caught up and still connected: it was not dropped.
                break;
            }
            Err(_) => {
                dropped = true;
                break;
            }
        }
    }
    if dropped {
        bump(&shared.c.slow_drops);
    }
    if let Ok(mut p) = shared.per_device.lock() {
        p.push(("stalled".into(), follow.frames));
    }
}

// ---- the run ----

struct Sample {
    t: f64,
    rss: u64,
    fds: u64,
}

fn run(o: Opts) -> Result<bool, String> {
    let work = match &o.work {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("acp-soak-{}", std::process::id())),
    };
    std::fs::create_dir_all(work.join("ws")).map_err(|e| format!("{}: {e}", work.display()))?;
    let data = work.join("data");
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    let disk_full_ok = o.tmpfs;
    let log = std::fs::File::create(work.join("soak.log")).map_err(|e| e.to_string())?;
    let mut rng = Rng(o.seed);
    let (mut relay, port) = start_relay(&o.bin, &work, &data, "127.0.0.1:0", 0)?;
    let token = std::fs::read_to_string(data.join("token"))
        .map_err(|e| format!("token: {e}"))?
        .trim()
        .to_owned();
    let cwd = work.join("ws").to_string_lossy().into_owned();

    // The sessions, opened by one setup device.
    let mut sessions = Vec::new();
    {
        let tmp = Shared {
            stop: AtomicBool::new(false),
            port: AtomicU64::new(port as u64),
            token: Mutex::new(token.clone()),
            relay_gen: AtomicU64::new(0),
            ledger: Mutex::new(HashMap::new()),
            heads: Mutex::new(Vec::new()),
            sessions: Vec::new(),
            per_device: Mutex::new(Vec::new()),
            flood_until: Mutex::new(None),
            turns_total: AtomicU64::new(0),
            c: Counters::default(),
            log: Mutex::new(log.try_clone().map_err(|e| e.to_string())?),
            t0: Instant::now(),
        };
        let mut ws = connect(&tmp, "client_id=setup&last_seq=0", None)?;
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let call = |ws: &mut Ws, id: &str, method: &str, params: Value| -> Result<Value, String> {
            ws.send(Message::text(
                json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string(),
            ))
            .map_err(|e| e.to_string())?;
            loop {
                match ws.read().map_err(|e| format!("setup: {e}"))? {
                    Message::Text(t) => {
                        let v: Value =
                            serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?;
                        if v["id"] == id && v.get("method").is_none() {
                            return Ok(v);
                        }
                    }
                    _ => continue,
                }
            }
        };
        call(
            &mut ws,
            "setup:0",
            "initialize",
            json!({"protocolVersion":1,"clientCapabilities":{}}),
        )?;
        for i in 0..o.sessions {
            let r = call(
                &mut ws,
                &format!("setup:{}", i + 1),
                "session/new",
                json!({"cwd":cwd,"mcpServers":[]}),
            )?;
            let sid = r["result"]["sessionId"]
                .as_str()
                .ok_or(format!("session/new: {r}"))?
                .to_owned();
            sessions.push(sid);
        }
        let _ = ws.close(None);
        let _ = ws.flush();
    }

    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        port: AtomicU64::new(port as u64),
        token: Mutex::new(token),
        relay_gen: AtomicU64::new(0),
        ledger: Mutex::new(HashMap::new()),
        heads: Mutex::new(vec![0; sessions.len()]),
        sessions,
        per_device: Mutex::new(Vec::new()),
        flood_until: Mutex::new(None),
        turns_total: AtomicU64::new(0),
        c: Counters::default(),
        log: Mutex::new(log),
        t0: Instant::now(),
    });
    let total = Duration::from_secs_f64(o.minutes * 60.0);
    let t0 = Instant::now();
    let deadline = t0 + total;
    eprintln!(
        "soak: relay pid {} on port {port}, {} sessions, {} watchers each, {:.1} min, seed {}; log in {}",
        relay.pid,
        shared.sessions.len(),
        o.watchers,
        o.minutes,
        o.seed,
        work.join("soak.log").display()
    );

    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    for s in 0..shared.sessions.len() {
        let role = Role::Controller { flood: s == 0 };
        let (sh, r) = (shared.clone(), rng.fork(s as u64));
        threads.push(std::thread::spawn(move || {
            device(sh, role, format!("ctl{s}"), s, r)
        }));
        for w in 0..o.watchers {
            let (sh, r) = (shared.clone(), rng.fork(100 + (s * 10 + w) as u64));
            threads.push(std::thread::spawn(move || {
                device(sh, Role::Watcher, format!("w{s}x{w}"), s, r)
            }));
        }
    }

    // Warm-up, then faults at random intervals; RSS and fds sampled.
    let mut samples: Vec<Sample> = Vec::new();
    let start_rss = rss_kib(relay.pid).unwrap_or(0);
    let start_fds = fds(relay.pid).unwrap_or(0);
    let mut generation = 0u64;
    let mut next_fault = t0 + Duration::from_secs(3);
    let mut next_sample = t0;
    let mut pending: Vec<(&'static str, u64)> = Vec::new(); // (fault, turns_total when injected)
    let mut side: Option<JoinHandle<()>> = None;
    let mut fault_no = 0u64;
    while Instant::now() < deadline {
        let now = Instant::now();
        if now >= next_sample {
            if let (Some(r), Some(f)) = (rss_kib(relay.pid), fds(relay.pid)) {
                samples.push(Sample {
                    t: (now - t0).as_secs_f64(),
                    rss: r,
                    fds: f,
                });
            }
            next_sample = now + Duration::from_secs(2);
        }
        // Recovery: a fault counts as recovered once a turn completed after it.
        let done = shared.turns_total.load(SeqCst);
        pending.retain(|(what, at)| {
            if done > *at {
                bump(match *what {
                    "agent" => &shared.c.agent_recovered,
                    "relay" => &shared.c.relay_recovered,
                    _ => &shared.c.disk_recovered,
                });
                false
            } else {
                true
            }
        });
        if side.as_ref().is_some_and(|h| h.is_finished()) {
            let _ = side.take().map(|h| h.join());
        }
        if now >= next_fault && deadline.saturating_duration_since(now) > Duration::from_secs(8) {
            fault_no += 1;
            // The first five faults are one of each kind (a full disk before a
            // relay restart, so a short run checks what the restart makes of
            // frames the disk refused); then at random.
            const FIRST: [u64; 5] = [0, 1, 3, 4, 2];
            let kind = match FIRST.get(fault_no as usize - 1) {
                Some(k) => *k,
                None => rng.range(0, 6),
            };
            match kind {
                0 if side.is_none() => {
                    let sh = shared.clone();
                    let mut r = rng.fork(fault_no);
                    shared.say("fault: reconnect storm");
                    side = Some(std::thread::spawn(move || storm(&sh, &mut r)));
                }
                1 => {
                    // The agent, mid-turn when one runs.
                    let agents: Vec<u32> = children(relay.pid)
                        .into_iter()
                        .filter(|p| cmdline(*p).contains("demo-agent"))
                        .collect();
                    if let Some(a) = agents.first() {
                        shared.say(&format!("fault: SIGKILL agent {a}"));
                        kill(*a, rustix::process::Signal::KILL);
                        bump(&shared.c.agent_kills);
                        pending.push(("agent", shared.turns_total.load(SeqCst)));
                    }
                }
                2 => {
                    shared.say("fault: SIGKILL relay, restart on the same data dir");
                    end_relay(&mut relay, rustix::process::Signal::KILL);
                    bump(&shared.c.relay_kills);
                    generation += 1;
                    shared.relay_gen.store(generation, SeqCst);
                    let listen = format!("127.0.0.1:{port}");
                    // The port may linger for a moment; bounded retries.
                    let mut tries = 0;
                    relay = loop {
                        match start_relay(&o.bin, &work, &data, &listen, generation) {
                            Ok((r, _)) => break r,
                            Err(e) if tries < 20 => {
                                tries += 1;
                                shared.say(&format!("restart failed ({e}); again"));
                                std::thread::sleep(Duration::from_millis(250));
                            }
                            Err(e) => {
                                shared.stop.store(true, SeqCst);
                                for t in threads {
                                    let _ = t.join();
                                }
                                return Err(format!("the relay did not come back: {e}"));
                            }
                        }
                    };
                    pending.push(("relay", shared.turns_total.load(SeqCst)));
                }
                3 if side.is_none() => {
                    shared.say("fault: a device stops reading during a flood");
                    let sh = shared.clone();
                    side = Some(std::thread::spawn(move || stall(&sh)));
                }
                4 if disk_full_ok => {
                    shared.say("fault: disk full for 3 s");
                    bump(&shared.c.disk_full);
                    fill_disk(&data, Duration::from_secs(3), &shared);
                    pending.push(("disk", shared.turns_total.load(SeqCst)));
                }
                _ => {}
            }
            next_fault = Instant::now() + Duration::from_millis(rng.range(1500, 5000));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    shared.stop.store(true, SeqCst);
    if let Some(h) = side.take() {
        let _ = h.join();
    }
    for t in threads {
        let _ = t.join();
    }
    let end_rss = rss_kib(relay.pid).unwrap_or(0);
    let end_fds = fds(relay.pid).unwrap_or(0);
    let relay_log_warns = std::fs::read_to_string(work.join(format!("relay-{generation}.log")))
        .map(|s| {
            s.lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .count()
        })
        .unwrap_or(0);
    end_relay(&mut relay, rustix::process::Signal::TERM);
    let ok = report(
        &o,
        &shared,
        &samples,
        (start_rss, end_rss),
        (start_fds, end_fds),
        total,
        relay_log_warns,
        disk_full_ok,
    );
    if o.work.is_none() {
        if ok {
            let _ = std::fs::remove_dir_all(&work);
        } else {
            eprintln!("soak: files kept in {}", work.display());
        }
    }
    Ok(ok)
}

/// Fills the data dir's file system, holds it full for `hold`, frees it.
fn fill_disk(data: &Path, hold: Duration, shared: &Shared) {
    let path = data.join("soak-filler");
    if let Ok(mut f) = std::fs::File::create(&path) {
        let block = vec![0u8; 1 << 20];
        // Bounded: at most 4 GiB, then give up on filling.
        for _ in 0..4096 {
            if f.write_all(&block).is_err() {
                break;
            }
        }
        let _ = f.flush();
    }
    let until = Instant::now() + hold;
    while Instant::now() < until && !shared.stopped() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(&path);
}

/// Least-squares slope of `ys` over `xs`, per minute.
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    if xs.len() < 3 {
        return 0.0;
    }
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let num: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if den == 0.0 { 0.0 } else { num / den * 60.0 }
}

#[allow(clippy::too_many_arguments)]
fn report(
    o: &Opts,
    s: &Shared,
    samples: &[Sample],
    rss: (u64, u64),
    fd: (u64, u64),
    total: Duration,
    warns: usize,
    disk: bool,
) -> bool {
    let c = &s.c;
    let g = |a: &AtomicU64| a.load(SeqCst);
    // Slope after warm-up (the first fifth), within the last relay process
    // (a restart resets RSS; its samples after the last restart).
    let warm = total.as_secs_f64() / 5.0;
    let tail: Vec<&Sample> = samples.iter().filter(|x| x.t >= warm).collect();
    let mut seg: Vec<&Sample> = Vec::new();
    for (i, x) in tail.iter().enumerate() {
        if i > 0 && x.rss + 512 < tail[i - 1].rss / 2 {
            seg.clear();
        }
        seg.push(x);
    }
    let xs: Vec<f64> = seg.iter().map(|x| x.t).collect();
    let rss_slope = slope(&xs, &seg.iter().map(|x| x.rss as f64).collect::<Vec<_>>());
    let fd_slope = slope(&xs, &seg.iter().map(|x| x.fds as f64).collect::<Vec<_>>());
    let per = s.per_device.lock().map(|p| p.clone()).unwrap_or_default();
    let ctl: Vec<u64> = per
        .iter()
        .filter(|(n, _)| n.starts_with("ctl"))
        .map(|(_, f)| *f)
        .collect();
    let wat: Vec<u64> = per
        .iter()
        .filter(|(n, _)| n.starts_with('w'))
        .map(|(_, f)| *f)
        .collect();
    let mm = |v: &[u64]| -> String {
        if v.is_empty() {
            "-".into()
        } else {
            format!(
                "{} .. {}",
                v.iter().min().unwrap_or(&0),
                v.iter().max().unwrap_or(&0)
            )
        }
    };
    let lost = g(&c.lost);
    let dup = g(&c.duplicates);
    let reused = g(&c.reused);
    let bad = g(&c.bad_resumes);
    let rows: Vec<(String, String)> = vec![
        (
            "minutes / seed".into(),
            format!("{:.1} / {}", o.minutes, o.seed),
        ),
        (
            "turns ok / failed / interrupted".into(),
            format!(
                "{} / {} / {}",
                g(&c.turns_ok),
                g(&c.turns_failed),
                g(&c.turns_interrupted)
            ),
        ),
        ("asks answered".into(), g(&c.asks_answered).to_string()),
        ("frames per controller (min .. max)".into(), mm(&ctl)),
        ("frames per watcher (min .. max)".into(), mm(&wat)),
        (
            "connects / reconnects".into(),
            format!("{} / {}", g(&c.connects), g(&c.reconnects)),
        ),
        (
            "watcher leaves: close / abrupt / half frame / on ask / mid replay".into(),
            format!(
                "{} / {} / {} / {} / {}",
                g(&c.drop_closes),
                g(&c.drop_abrupt),
                g(&c.drop_half_frame),
                g(&c.drop_on_ask),
                g(&c.drop_mid_replay)
            ),
        ),
        (
            "reconnect storms (devices caught up)".into(),
            format!(
                "{} ({} of {})",
                g(&c.storms),
                g(&c.storm_devices_ok),
                g(&c.storms) * STORM as u64
            ),
        ),
        (
            "resets (welcome reset:true)".into(),
            g(&c.resets).to_string(),
        ),
        (
            "stalled devices / slow drops".into(),
            format!("{} / {}", g(&c.stalls), g(&c.slow_drops)),
        ),
        (
            "agent SIGKILLs injected / recovered".into(),
            format!("{} / {}", g(&c.agent_kills), g(&c.agent_recovered)),
        ),
        (
            "relay SIGKILLs injected / recovered".into(),
            format!("{} / {}", g(&c.relay_kills), g(&c.relay_recovered)),
        ),
        (
            "disk full spells / recovered".into(),
            if disk {
                format!("{} / {}", g(&c.disk_full), g(&c.disk_recovered))
            } else {
                "skipped (needs root and a tmpfs: --tmpfs)".into()
            },
        ),
        ("FRAMES LOST".into(), lost.to_string()),
        (
            "sent frames missing after a reset (largest run; allowed)".into(),
            g(&c.reset_holes).to_string(),
        ),
        ("DUPLICATES".into(), dup.to_string()),
        ("NUMBERS REUSED".into(), reused.to_string()),
        (
            "resumes past the head without reset".into(),
            bad.to_string(),
        ),
        (
            "numbers not checked (ledger full)".into(),
            g(&c.unchecked).to_string(),
        ),
        (
            "relay RSS start / end (KiB)".into(),
            format!("{} / {}", rss.0, rss.1),
        ),
        (
            "relay RSS slope after warm-up (KiB/min)".into(),
            format!("{rss_slope:+.1}"),
        ),
        (
            "relay fds start / end".into(),
            format!("{} / {}", fd.0, fd.1),
        ),
        (
            "relay fds slope after warm-up (/min)".into(),
            format!("{fd_slope:+.2}"),
        ),
        (
            "WARN/ERROR lines in the last relay log".into(),
            warns.to_string(),
        ),
    ];
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(10);
    println!();
    println!("| {:w$} | value |", "soak");
    println!("|{}|{}|", "-".repeat(w + 2), "-".repeat(30));
    for (k, v) in &rows {
        println!("| {k:w$} | {v} |");
    }
    let ok = lost == 0 && dup == 0 && reused == 0 && bad == 0;
    println!();
    if ok {
        println!("soak: PASS (no frame lost, duplicated or renumbered)");
    } else {
        println!(
            "soak: FAIL (lost {lost}, duplicates {dup}, reused {reused}, bad resumes {bad}); see soak.log"
        );
    }
    ok
}
