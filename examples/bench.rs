//! Bench client for `scripts/bench.sh` and `scripts/pi-smoke.sh`: devices on
//! smol + async-tungstenite that drive a relay (or a plain WebSocket pipe)
//! and measure what arrives. Prints one JSON line per run on stdout.
//!
//! ```text
//! bench flood  --url ws://127.0.0.1:PORT --token T --devices K --sessions S --frames N
//!              [--sequential] [--hold SECS] [--timeout SECS] [--cwd DIR]
//! bench replay --url ws://127.0.0.1:PORT --token T --frames N [--repeat R]
//! bench plain  --url ws://127.0.0.1:PORT --frames N            (websocat baseline)
//! bench smoke  --url ws://127.0.0.1:PORT --token T              (reconnect check)
//!
//! `flood --stalled K` also attaches K devices to the first session that
//! read their welcome and then nothing (4 KiB receive buffers): the relay
//! must drop them; the result says how many it closed (`stalled_dropped`).
//!
//! `flood --pause SECS` prints a `{"mode":"connected"}` line once every device
//! is connected and waits before prompting; `--hold SECS` keeps every socket
//! open after the result line (both so a script can read the relay's RSS).
//! ```
//!
//! `--frames` is the relay's flood agent's `--flood N`: each prompt makes the
//! agent emit N `agent_message_chunk` updates carrying `_meta.emitNs` and
//! `_meta.n`. A device counts every `n` (zero loss = each of 0..N exactly
//! once, then the prompt's response), and takes emit → receive as the
//! one-way latency (same machine, same clock).
//!
//! Not a test: nothing here runs in CI.

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use futures_lite::StreamExt;
use serde_json::{Value, json};
use smol::LocalExecutor;
use smol::net::TcpStream;
use std::collections::HashMap;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Ws = WebSocketStream<TcpStream>;
type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(mode) = args.next() else {
        eprintln!("usage: bench flood|replay|plain|smoke --url ws://HOST:PORT [options]");
        return ExitCode::from(2);
    };
    let opts = match Opts::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    };
    let ex = Rc::new(LocalExecutor::new());
    let res = smol::block_on(ex.run(async {
        match mode.as_str() {
            "flood" => flood(&ex, &opts).await,
            "replay" => replay(&opts).await,
            "plain" => plain(&opts).await,
            "smoke" => smoke(&opts).await,
            m => Err(format!(
                "unknown mode '{m}'; use flood, replay, plain or smoke"
            )),
        }
    }));
    match res {
        Ok(v) => {
            let ok = v["ok"].as_bool().unwrap_or(true);
            println!("{v}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            println!("{}", json!({"mode": mode, "ok": false, "error": e}));
            eprintln!("bench {mode}: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---- options ----

struct Opts {
    url: String,
    token: Option<String>,
    devices: usize,
    sessions: usize,
    frames: u64,
    sequential: bool,
    hold: u64,
    timeout: Duration,
    repeat: usize,
    cwd: String,
    label: String,
    pause: u64,
    stalled: usize,
}

impl Opts {
    fn parse(mut args: impl Iterator<Item = String>) -> Res<Opts> {
        let mut o = Opts {
            url: "ws://127.0.0.1:7447".into(),
            token: None,
            devices: 1,
            sessions: 1,
            frames: 0,
            sequential: false,
            hold: 0,
            timeout: Duration::from_secs(300),
            repeat: 5,
            cwd: std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| "/".into()),
            label: String::new(),
            pause: 0,
            stalled: 0,
        };
        while let Some(a) = args.next() {
            let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
            let num = |s: String| {
                s.parse::<u64>()
                    .map_err(|_| format!("{a}: not a number: {s}"))
            };
            match a.as_str() {
                "--url" => o.url = val()?.trim_end_matches('/').to_string(),
                "--token" => o.token = Some(val()?),
                "--devices" => o.devices = num(val()?)?.max(1) as usize,
                "--sessions" => o.sessions = num(val()?)?.max(1) as usize,
                "--frames" => o.frames = num(val()?)?,
                "--sequential" => o.sequential = true,
                "--hold" => o.hold = num(val()?)?,
                "--timeout" => o.timeout = Duration::from_secs(num(val()?)?),
                "--repeat" => o.repeat = num(val()?)?.max(1) as usize,
                "--cwd" => o.cwd = val()?,
                "--label" => o.label = val()?,
                "--pause" => o.pause = num(val()?)?,
                "--stalled" => o.stalled = num(val()?)? as usize,
                _ => return Err(format!("unknown option {a}")),
            }
        }
        Ok(o)
    }
}

// ---- connection ----

async fn connect(url: &str, token: Option<&str>) -> Res<Ws> {
    let mut req = url
        .into_client_request()
        .map_err(|e| format!("bad url {url}: {e}"))?;
    if let Some(t) = token {
        let v = format!("Bearer {t}")
            .parse()
            .map_err(|e| format!("bad token: {e}"))?;
        req.headers_mut().insert("Authorization", v);
    }
    let host = req.uri().host().unwrap_or("127.0.0.1").to_string();
    let port = req.uri().port_u16().unwrap_or(80);
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let config = WebSocketConfig::default()
        .max_message_size(Some(256 << 20))
        .max_frame_size(Some(256 << 20));
    let (ws, _) = async_tungstenite::client_async_with_config(req, tcp, Some(config))
        .await
        .map_err(|e| format!("websocket handshake with {url}: {e}"))?;
    Ok(ws)
}

async fn send_line(ws: &mut Ws, v: &Value) -> Res<()> {
    ws.send(Message::text(v.to_string()))
        .await
        .map_err(|e| format!("send: {e}"))
}

/// Next text message, or an error on close / timeout.
async fn next_text(ws: &mut Ws, wait: Duration) -> Res<Vec<u8>> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = futures_lite::future::or(async { Ok(ws.next().await) }, async {
            smol::Timer::after(left).await;
            Err(())
        })
        .await;
        match next {
            Err(()) => return Err(format!("nothing received for {}s", wait.as_secs())),
            Ok(None) => return Err("connection closed".into()),
            Ok(Some(Err(e))) => return Err(format!("receive: {e}")),
            Ok(Some(Ok(Message::Text(t)))) => return Ok(t.as_bytes().to_vec()),
            Ok(Some(Ok(Message::Binary(b)))) => return Ok(b.to_vec()),
            Ok(Some(Ok(Message::Close(c)))) => return Err(format!("closed by peer: {c:?}")),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Reads until a JSON message satisfies `pred`; returns it (others are skipped).
async fn recv_until(ws: &mut Ws, what: &str, pred: impl Fn(&Value) -> bool) -> Res<Value> {
    loop {
        let t = next_text(ws, Duration::from_secs(30))
            .await
            .map_err(|e| format!("waiting for {what}: {e}"))?;
        if let Ok(v) = serde_json::from_slice::<Value>(trim(&t))
            && pred(&v)
        {
            return Ok(v);
        }
    }
}

async fn request(ws: &mut Ws, id: &str, method: &str, params: Value) -> Res<Value> {
    send_line(
        ws,
        &json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}),
    )
    .await?;
    let v = recv_until(ws, method, |v| v["id"] == id).await?;
    if let Some(e) = v.get("error") {
        return Err(format!("{method} failed: {e}"));
    }
    Ok(v["result"].clone())
}

fn trim(b: &[u8]) -> &[u8] {
    let mut b = b;
    while let [rest @ .., b'\n' | b'\r'] = b {
        b = rest;
    }
    b
}

fn ws_url(base: &str, query: &str) -> String {
    format!("{base}/ws?{query}")
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// This process's user+system CPU seconds (from /proc; 0 where there is none).
fn self_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // Linux's USER_HZ is 100 on every architecture that matters here.
    (ticks(11) + ticks(12)) / 100.0
}

fn prompt_params(sid: &str, text: &str) -> Value {
    json!({"sessionId": sid, "prompt": [{"type":"text","text": text}]})
}

// ---- fast frame scanning (no JSON parse on the hot path) ----

/// `(n, emitNs)` of a flood frame: the line ends `"_meta":{"emitNs":E,"n":N}}}}`.
fn flood_meta(text: &[u8]) -> Option<(u64, u64)> {
    const KEY: &[u8] = b"\"emitNs\":";
    let t = trim(text);
    let from = t.len().saturating_sub(96);
    let tail = &t[from..];
    let at = tail.windows(KEY.len()).rposition(|w| w == KEY)?;
    let rest = &tail[at + KEY.len()..];
    let (emit, rest) = digits(rest)?;
    let rest = rest.strip_prefix(b",\"n\":")?;
    let (n, _) = digits(rest)?;
    Some((n, emit))
}

/// The leading `"rseq":N` of a relay frame.
fn rseq(text: &[u8]) -> Option<u64> {
    digits(text.strip_prefix(b"{\"rseq\":")?).map(|(n, _)| n)
}

fn digits(b: &[u8]) -> Option<(u64, &[u8])> {
    let end = b
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(b.len());
    if end == 0 {
        return None;
    }
    let mut n = 0u64;
    for &c in &b[..end] {
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some((n, &b[end..]))
}

// ---- per-device accounting ----

#[derive(Default)]
struct Tally {
    frames: u64,
    bytes: u64,
    seen: Vec<u64>,
    dup: u64,
    out_of_range: u64,
    rseq_gaps: u64,
    last_rseq: Option<u64>,
    lat_ns: Vec<u64>,
    done: bool,
    error: Option<String>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Tally {
    fn new(frames: u64) -> Tally {
        Tally {
            seen: vec![0; frames.div_ceil(64) as usize],
            lat_ns: Vec::with_capacity(frames as usize),
            ..Tally::default()
        }
    }

    fn missing(&self, frames: u64) -> u64 {
        let got: u64 = self.seen.iter().map(|w| u64::from(w.count_ones())).sum();
        frames - got.min(frames)
    }
}

/// Reads one device's stream until the response to `prompt_id` arrives.
async fn read_device(mut ws: Ws, frames: u64, prompt_id: String, wait: Duration) -> (Ws, Tally) {
    let mut t = Tally::new(frames);
    // BENCH_DUMP=N prints the first N messages' sizes and ends (debugging a peer's framing).
    let mut dump: usize = std::env::var("BENCH_DUMP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = futures_lite::future::or(async { Ok(ws.next().await) }, async {
            smol::Timer::after(left).await;
            Err(())
        })
        .await;
        let text = match next {
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(Message::Close(c)))) => {
                t.error = Some(format!("closed by the relay: {c:?}"));
                break;
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => {
                t.error = Some(format!("receive: {e}"));
                break;
            }
            Ok(None) => {
                t.error = Some("connection closed".into());
                break;
            }
            Err(()) => {
                t.error = Some(format!("timed out after {}s", wait.as_secs()));
                break;
            }
        };
        let now = Instant::now();
        let recv_ns = unix_ns();
        let b = text.as_bytes();
        if dump > 0 {
            dump -= 1;
            eprintln!(
                "msg {} bytes: {}..{}",
                b.len(),
                String::from_utf8_lossy(&b[..b.len().min(40)]),
                String::from_utf8_lossy(&b[b.len().saturating_sub(40)..])
            );
        }
        t.frames += 1;
        t.bytes += b.len() as u64;
        t.first.get_or_insert(now);
        // The rate is the stream's: the turn's end (held until its frames are
        // fsync'd) is not a streamed frame.
        if memchr::memmem::find(b, b"\"session/update\"").is_some() {
            t.last = Some(now);
        }
        if let Some(r) = rseq(b) {
            if let Some(prev) = t.last_rseq
                && r != prev + 1
            {
                t.rseq_gaps += 1;
            }
            t.last_rseq = Some(r);
        }
        if let Some((n, emit)) = flood_meta(b) {
            if n < frames {
                let (w, bit) = ((n / 64) as usize, n % 64);
                if t.seen[w] & (1 << bit) != 0 {
                    t.dup += 1;
                } else {
                    t.seen[w] |= 1 << bit;
                }
            } else {
                t.out_of_range += 1;
            }
            t.lat_ns.push(recv_ns.saturating_sub(emit));
            continue;
        }
        if let Ok(v) = serde_json::from_slice::<Value>(trim(b))
            && v["id"] == prompt_id.as_str()
        {
            if v.get("error").is_some() {
                t.error = Some(format!("prompt failed: {}", v["error"]));
            }
            t.done = true;
            break;
        }
    }
    (ws, t)
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Sums tallies into the run's JSON figures.
fn summary(tallies: &[Tally], frames: u64, secs: f64) -> Value {
    let delivered: u64 = tallies.iter().map(|t| t.frames).sum();
    let bytes: u64 = tallies.iter().map(|t| t.bytes).sum();
    let flood_frames: u64 = tallies.iter().map(|t| t.lat_ns.len() as u64).sum();
    let lost: u64 = tallies.iter().map(|t| t.missing(frames)).sum();
    let dup: u64 = tallies.iter().map(|t| t.dup).sum();
    let oor: u64 = tallies.iter().map(|t| t.out_of_range).sum();
    let gaps: u64 = tallies.iter().map(|t| t.rseq_gaps).sum();
    let done = tallies.iter().filter(|t| t.done).count();
    let errors: Vec<&str> = tallies.iter().filter_map(|t| t.error.as_deref()).collect();
    let mut lat: Vec<u64> = tallies
        .iter()
        .flat_map(|t| t.lat_ns.iter().copied())
        .collect();
    lat.sort_unstable();
    let ok = lost == 0 && dup == 0 && oor == 0 && gaps == 0 && done == tallies.len();
    json!({
        "devices_total": tallies.len(),
        "frames_per_device": frames,
        "delivered": delivered,
        "flood_frames": flood_frames,
        "bytes": bytes,
        "secs": secs,
        "fps": flood_frames as f64 / secs,
        "mbps": bytes as f64 / secs / 1e6,
        "avg_frame_bytes": bytes.checked_div(delivered).unwrap_or(0),
        "lat_p50_us": pct(&lat, 0.50) as f64 / 1e3,
        "lat_p99_us": pct(&lat, 0.99) as f64 / 1e3,
        "lat_max_us": lat.last().copied().unwrap_or(0) as f64 / 1e3,
        "lost": lost,
        "dup": dup,
        "out_of_range": oor,
        "rseq_gaps": gaps,
        "responses": done,
        "errors": errors.iter().take(4).collect::<Vec<_>>(),
        "ok": ok,
    })
}

/// A device on `sid` with a 4 KiB receive buffer that reads its welcome and
/// then stops reading.
async fn stalled_device(o: &Opts, sid: &str, n: usize) -> Res<Ws> {
    use rustix::net::{AddressFamily, SocketType, ipproto, socket, sockopt};
    let url = ws_url(
        &o.url,
        &format!("client_id=bench-stalled{n}&session_id={sid}"),
    );
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad url {url}: {e}"))?;
    if let Some(t) = &o.token {
        let v = format!("Bearer {t}")
            .parse()
            .map_err(|e| format!("bad token: {e}"))?;
        req.headers_mut().insert("Authorization", v);
    }
    let port = req.uri().port_u16().unwrap_or(80);
    let fd = socket(AddressFamily::INET, SocketType::STREAM, Some(ipproto::TCP))
        .map_err(|e| format!("socket: {e}"))?;
    sockopt::set_socket_recv_buffer_size(&fd, 4096).map_err(|e| format!("SO_RCVBUF: {e}"))?;
    let addr = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port);
    rustix::net::connect(&fd, &addr).map_err(|e| format!("connect: {e}"))?;
    let std_stream = std::net::TcpStream::from(fd);
    let tcp = TcpStream::try_from(std_stream).map_err(|e| format!("async socket: {e}"))?;
    let (mut ws, _) = async_tungstenite::client_async(req, tcp)
        .await
        .map_err(|e| format!("websocket handshake with {url}: {e}"))?;
    recv_until(&mut ws, "relay_welcome", |v| v["type"] == "relay_welcome").await?;
    Ok(ws)
}

/// Whether the relay closed a stalled device: its stream ends (close frame,
/// reset or EOF) within `wait` once it reads again.
async fn was_dropped(mut ws: Ws, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = futures_lite::future::or(async { Some(ws.next().await) }, async {
            smol::Timer::after(left).await;
            None
        })
        .await;
        match next {
            None => return false,
            Some(None) | Some(Some(Err(_))) | Some(Some(Ok(Message::Close(_)))) => return true,
            Some(Some(Ok(_))) => {}
        }
    }
}

// ---- flood: K devices per session, S sessions ----

struct SessionDevs {
    sid: String,
    prompt_id: String,
    devs: Vec<Ws>,
}

async fn open_session(o: &Opts, s: usize) -> Res<SessionDevs> {
    let token = o.token.as_deref();
    let c0 = format!("bench-s{s}-d0");
    let mut d0 = connect(&ws_url(&o.url, &format!("client_id={c0}")), token).await?;
    recv_until(&mut d0, "relay_welcome", |v| v["type"] == "relay_welcome").await?;
    request(
        &mut d0,
        &format!("{c0}:1"),
        "initialize",
        json!({"protocolVersion":1,"clientCapabilities":{}}),
    )
    .await?;
    let r = request(
        &mut d0,
        &format!("{c0}:2"),
        "session/new",
        json!({"cwd": o.cwd, "mcpServers": []}),
    )
    .await?;
    let sid = r["sessionId"]
        .as_str()
        .ok_or("session/new gave no sessionId")?
        .to_string();
    let mut devs = vec![d0];
    for k in 1..o.devices {
        let q = format!("client_id=bench-s{s}-d{k}&session_id={sid}");
        let mut d = connect(&ws_url(&o.url, &q), token).await?;
        let w = recv_until(&mut d, "relay_welcome", |v| v["type"] == "relay_welcome").await?;
        if w["sessionId"] != sid.as_str() {
            return Err(format!(
                "device {k} attached to {} instead of {sid}",
                w["sessionId"]
            ));
        }
        devs.push(d);
    }
    Ok(SessionDevs {
        sid,
        prompt_id: format!("{c0}:3"),
        devs,
    })
}

/// Sends the session's prompt and reads all its devices to the response.
async fn run_session(
    ex: &Rc<LocalExecutor<'static>>,
    mut s: SessionDevs,
    frames: u64,
    wait: Duration,
) -> Res<(Vec<Ws>, Vec<Tally>)> {
    let prompt = json!({"jsonrpc":"2.0","id":s.prompt_id,"method":"session/prompt",
        "params": prompt_params(&s.sid, "flood")});
    send_line(&mut s.devs[0], &prompt).await?;
    let tasks: Vec<_> = s
        .devs
        .drain(..)
        .map(|ws| ex.spawn(read_device(ws, frames, s.prompt_id.clone(), wait)))
        .collect();
    let mut out = (Vec::new(), Vec::new());
    for t in tasks {
        let (ws, tally) = t.await;
        out.0.push(ws);
        out.1.push(tally);
    }
    Ok(out)
}

async fn flood(ex: &Rc<LocalExecutor<'static>>, o: &Opts) -> Res<Value> {
    if o.frames == 0 {
        return Err("--frames N (the agent's --flood N) is required".into());
    }
    let mut sessions = Vec::new();
    for s in 0..o.sessions {
        sessions.push(open_session(o, s).await?);
    }
    let mut stalled = Vec::new();
    for n in 0..o.stalled {
        stalled.push(stalled_device(o, &sessions[0].sid, n).await?);
    }
    if o.pause > 0 {
        // Everything is connected and nothing prompted: the script reads RSS now.
        let v = json!({"mode": "connected", "label": o.label, "devices": o.devices,
            "sessions": o.sessions, "ok": true});
        println!("{v}");
        smol::Timer::after(Duration::from_secs(o.pause)).await;
    }
    let cpu0 = self_cpu_s();
    let t0 = Instant::now();
    let mut all_ws = Vec::new();
    let mut tallies = Vec::new();
    if o.sequential {
        for s in sessions {
            let (ws, t) = run_session(ex, s, o.frames, o.timeout).await?;
            all_ws.extend(ws);
            tallies.extend(t);
        }
    } else {
        let (frames, timeout) = (o.frames, o.timeout);
        let tasks: Vec<_> = sessions
            .into_iter()
            .map(|s| {
                let ex2 = ex.clone();
                ex.spawn(async move { run_session(&ex2, s, frames, timeout).await })
            })
            .collect::<Vec<_>>();
        for t in tasks {
            let (ws, t) = t.await?;
            all_ws.extend(ws);
            tallies.extend(t);
        }
    }
    let end = tallies.iter().filter_map(|t| t.last).max().unwrap_or(t0);
    let secs = end.duration_since(t0).as_secs_f64().max(1e-9);
    let mut v = summary(&tallies, o.frames, secs);
    v["client_cpu_s"] = json!(self_cpu_s() - cpu0);
    v["mode"] = json!("flood");
    v["label"] = json!(o.label);
    v["devices"] = json!(o.devices);
    v["sessions"] = json!(o.sessions);
    if !stalled.is_empty() {
        let checks: Vec<_> = stalled
            .into_iter()
            .map(|ws| ex.spawn(was_dropped(ws, Duration::from_secs(10))))
            .collect();
        let mut dropped = 0;
        for c in checks {
            dropped += usize::from(c.await);
        }
        v["stalled"] = json!(o.stalled);
        v["stalled_dropped"] = json!(dropped);
    }
    if o.hold > 0 {
        // Keep every socket open (and answering pings) while the script reads RSS.
        println!("{v}");
        let drains: Vec<_> = all_ws
            .into_iter()
            .map(|mut ws| ex.spawn(async move { while let Some(Ok(_)) = ws.next().await {} }))
            .collect();
        smol::Timer::after(Duration::from_secs(o.hold)).await;
        drop(drains);
        v["held_secs"] = json!(o.hold);
    }
    Ok(v)
}

// ---- replay: time a last_seq=0 reconnect to receive the whole ring ----

async fn replay(o: &Opts) -> Res<Value> {
    let token = o.token.as_deref();
    let s = open_session(
        &Opts {
            devices: 1,
            ..clone_opts(o)
        },
        0,
    )
    .await?;
    let sid = s.sid.clone();
    let pid = s.prompt_id.clone();
    let mut ws = s.devs;
    let mut d0 = ws.pop().ok_or("no device")?;
    let prompt = json!({"jsonrpc":"2.0","id":pid,"method":"session/prompt",
        "params": prompt_params(&sid, "flood")});
    send_line(&mut d0, &prompt).await?;
    let (d0, fill) = read_device(d0, o.frames, pid, o.timeout).await;
    if !fill.done {
        return Err(format!("filling the ring failed: {:?}", fill.error));
    }
    drop(d0);
    let mut times = Vec::new();
    let (mut frames, mut bytes, mut head, mut reset) = (0u64, 0u64, 0u64, false);
    for i in 0..o.repeat {
        let q = format!("client_id=bench-replay{i}&session_id={sid}&last_seq=0");
        let t0 = Instant::now();
        let mut d = connect(&ws_url(&o.url, &q), token).await?;
        let w = recv_until(&mut d, "relay_welcome", |v| v["type"] == "relay_welcome").await?;
        head = w["headSeq"].as_u64().ok_or("welcome without headSeq")?;
        reset = w["reset"].as_bool().unwrap_or(false);
        frames = 0;
        bytes = 0;
        loop {
            let t = next_text(&mut d, Duration::from_secs(30)).await?;
            frames += 1;
            bytes += t.len() as u64;
            if rseq(&t).is_some_and(|r| r >= head) {
                break;
            }
        }
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        let _ = d.close(None).await;
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(json!({
        "mode": "replay",
        "label": o.label,
        "session": sid,
        "head_seq": head,
        "reset": reset,
        "frames": frames,
        "bytes": bytes,
        "ms_median": sorted[sorted.len() / 2],
        "ms_min": sorted[0],
        "ms_max": sorted[sorted.len() - 1],
        "runs_ms": times,
        "ok": frames > 0,
    }))
}

fn clone_opts(o: &Opts) -> Opts {
    Opts {
        url: o.url.clone(),
        token: o.token.clone(),
        devices: o.devices,
        sessions: o.sessions,
        frames: o.frames,
        sequential: o.sequential,
        hold: o.hold,
        timeout: o.timeout,
        repeat: o.repeat,
        cwd: o.cwd.clone(),
        label: o.label.clone(),
        pause: o.pause,
        stalled: o.stalled,
    }
}

// ---- plain: one device on a plain WebSocket pipe to the flood agent ----

async fn plain(o: &Opts) -> Res<Value> {
    if o.frames == 0 {
        return Err("--frames N (the agent's --flood N) is required".into());
    }
    // A stdio pipe: each agent stdout line is one message, no welcome, no rseq.
    let mut ws = connect(&o.url, None).await?;
    request(
        &mut ws,
        "p:1",
        "initialize",
        json!({"protocolVersion":1,"clientCapabilities":{}}),
    )
    .await?;
    let r = request(
        &mut ws,
        "p:2",
        "session/new",
        json!({"cwd": o.cwd, "mcpServers": []}),
    )
    .await?;
    let sid = r["sessionId"]
        .as_str()
        .ok_or("session/new gave no sessionId")?
        .to_string();
    let prompt = json!({"jsonrpc":"2.0","id":"p:3","method":"session/prompt",
        "params": prompt_params(&sid, "flood")});
    let cpu0 = self_cpu_s();
    let t0 = Instant::now();
    send_line(&mut ws, &prompt).await?;
    let (mut ws, t) = read_device(ws, o.frames, "p:3".into(), o.timeout).await;
    let end = t.last.unwrap_or(t0);
    let secs = end.duration_since(t0).as_secs_f64().max(1e-9);
    let mut v = summary(std::slice::from_ref(&t), o.frames, secs);
    v["client_cpu_s"] = json!(self_cpu_s() - cpu0);
    let _ = ws.close(None).await;
    v["mode"] = json!("plain");
    v["label"] = json!(o.label);
    v["devices"] = json!(1);
    v["sessions"] = json!(1);
    Ok(v)
}

// ---- smoke: prompt, drop after the first chunk, resume with last_seq ----

async fn smoke(o: &Opts) -> Res<Value> {
    let token = o.token.as_deref();
    let text = "/chunks 3\n/sleep 700\nhi";
    let s = open_session(
        &Opts {
            devices: 1,
            ..clone_opts(o)
        },
        0,
    )
    .await?;
    let sid = s.sid.clone();
    let mut d = s.devs.into_iter().next().ok_or("no device")?;
    let pid = "smoke:3";
    let prompt = json!({"jsonrpc":"2.0","id":pid,"method":"session/prompt",
        "params": prompt_params(&sid, text)});
    // The frames this device saw, by rseq.
    let mut got: HashMap<u64, Value> = HashMap::new();
    let mut min_seq = u64::MAX;
    send_line(&mut d, &prompt).await?;
    let first = loop {
        let t = next_text(&mut d, Duration::from_secs(60)).await?;
        let v: Value = serde_json::from_slice(&t).map_err(|e| format!("bad frame: {e}"))?;
        let Some(r) = v["rseq"].as_u64() else {
            continue;
        };
        min_seq = min_seq.min(r);
        let is_chunk = v["params"]["update"]["sessionUpdate"] == "agent_message_chunk";
        got.insert(r, v);
        if is_chunk {
            break r;
        }
    };
    let _ = d.close(None).await;
    drop(d);
    smol::Timer::after(Duration::from_millis(100)).await;
    let q = format!("client_id=smoke&session_id={sid}&last_seq={first}");
    let mut d = connect(&ws_url(&o.url, &q), token).await?;
    let w = recv_until(&mut d, "relay_welcome", |v| v["type"] == "relay_welcome").await?;
    if w["sessionId"] != sid.as_str() {
        return Err(format!("resumed into {} instead of {sid}", w["sessionId"]));
    }
    let mut expect = first + 1;
    let mut gap = None;
    loop {
        let t = next_text(&mut d, Duration::from_secs(60)).await?;
        let v: Value = serde_json::from_slice(&t).map_err(|e| format!("bad frame: {e}"))?;
        let Some(r) = v["rseq"].as_u64() else {
            continue;
        };
        if r != expect && gap.is_none() {
            gap = Some(format!("expected rseq {expect}, got {r}"));
        }
        expect = r + 1;
        let done = v["id"] == pid;
        got.insert(r, v);
        if done {
            break;
        }
    }
    let _ = d.close(None).await;
    let mut seqs: Vec<u64> = got.keys().copied().collect();
    seqs.sort_unstable();
    let chunks: Vec<String> = seqs
        .iter()
        .filter_map(|r| {
            let u = &got[r]["params"]["update"];
            (u["sessionUpdate"] == "agent_message_chunk")
                .then(|| u["content"]["text"].as_str().unwrap_or("").to_string())
        })
        .collect();
    let echoed = chunks.concat();
    let contiguous = seqs.windows(2).all(|w| w[1] == w[0] + 1);
    let stop = got
        .values()
        .find(|v| v["id"] == pid)
        .map(|v| v["result"]["stopReason"].clone())
        .unwrap_or(Value::Null);
    let ok = gap.is_none()
        && contiguous
        && chunks.len() >= 3
        && echoed.contains(text)
        && stop == "end_turn";
    Ok(json!({
        "mode": "smoke",
        "session": sid,
        "dropped_after_rseq": first,
        "frames": seqs.len(),
        "chunks": chunks.len(),
        "echo_ok": echoed.contains(text),
        "contiguous": contiguous && gap.is_none(),
        "gap": gap,
        "stopReason": stop,
        "ok": ok,
    }))
}
