//! Notifications through the real binary: an ask nobody answered (after the
//! delay, naming the session and tool titles), an unwatched turn end and an
//! agent crash reach a local HTTP server in ntfy's format and as JSON; a dead
//! target does not slow a turn; `--notify-cmd` gets the event in variables;
//! SIGHUP picks up a changed config and a rotated token; with the `tls`
//! feature an `https://` target gets its note, checked against the CAs in
//! `SSL_CERT_FILE`, and one whose certificate they do not vouch for gets none.
mod common;
use common::*;
#[path = "interop/bridge.rs"]
mod bridge;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// One request the sink received.
#[derive(Debug, Clone)]
struct Received {
    head: String,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// A local HTTP server that answers 200 and hands over what it got.
struct Sink {
    port: u16,
    rx: mpsc::Receiver<Received>,
    stop: Arc<AtomicBool>,
}

impl Sink {
    fn start() -> Sink {
        Sink::failing_first(0)
    }

    /// A sink that answers 500 to its first `n` requests.
    fn failing_first(n: usize) -> Sink {
        let mut seen = 0usize;
        Sink::serve(move |mut s| {
            let r = read_request(&mut s)?;
            if seen < n {
                seen += 1;
                let _ = s.write_all(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
                return None;
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            Some(r)
        })
    }

    /// A sink whose thread hands each accepted connection to `answer`, which
    /// returns the request to pass on (or None).
    fn serve(mut answer: impl FnMut(TcpStream) -> Option<Received> + Send + 'static) -> Sink {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(s) = s else { continue };
                let _ = s.set_read_timeout(Some(WAIT));
                if let Some(r) = answer(s) {
                    let _ = tx.send(r);
                }
            }
        });
        Sink { port, rx, stop }
    }

    /// The next request matching `pred` (others are skipped).
    fn recv(&self, what: &str, pred: impl Fn(&Received) -> bool) -> Received {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(r) if pred(&r) => return r,
                Ok(_) => continue,
                Err(_) => panic!("no notification: {what}"),
            }
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn read_request(s: &mut impl Read) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A port that accepts connections, reads what it is sent and never answers;
/// it counts the connections it accepted, the requests it read in full and
/// the connections the relay gave up on (closed).
struct DeadPort {
    port: u16,
    accepted: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl DeadPort {
    fn start() -> DeadPort {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, r, c, st) = (
            accepted.clone(),
            requests.clone(),
            closed.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            for s in l.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut s) = s else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                let (r, c) = (r.clone(), c.clone());
                // Each connection: read the request, then wait for the relay
                // to close its end (EOF or an error), never writing a byte.
                std::thread::spawn(move || {
                    if read_request(&mut s).is_some() {
                        r.fetch_add(1, Ordering::SeqCst);
                    }
                    let mut sink = [0u8; 512];
                    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        DeadPort {
            port,
            accepted,
            requests,
            closed,
            stop,
        }
    }
}

impl Drop for DeadPort {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn ask_frame(d: &mut Device) -> Value {
    d.recv_until("ask", |v| v["method"] == "session/request_permission")
}

fn allow(d: &mut Device, ask: &Value) {
    d.send(&json!({"jsonrpc":"2.0","id":ask["id"],"result":{"outcome":{"outcome":"selected","optionId":"allow"}}}));
}

const TOOL: &str = "Demo action that needs your permission";

/// An ntfy POST to `path` announcing the demo agent's ask.
fn assert_is_ntfy_ask(r: &Received, path: &str) {
    assert!(
        r.head.starts_with(&format!("POST {path} HTTP/1.1")),
        "{}",
        r.head
    );
    assert_eq!(
        r.header("Title").as_deref(),
        Some(format!("Permission needed: {TOOL}").as_str())
    );
}

#[test]
fn ntfy_gets_the_late_ask_the_unwatched_turn_end_and_the_crash() {
    let sink = Sink::start();
    let url = format!("ntfy+http://127.0.0.1:{}/relay-topic", sink.port);
    let relay = Relay::start(&["--notify", &url, "--notify-delay", "3"]);
    // An ask answered at once, inside the delay, is never notified: sent
    // without waiting, its note would reach the sink seconds before the
    // later, unanswered one's below.
    let mut a = relay.device("alice", "");
    let session = open_session(&mut a);
    let mut b = relay.device("bob", "");
    let quick = open_session(&mut b);
    let first = b.request(
        "session/prompt",
        prompt_params(&quick, "Quick question\n/ask"),
    );
    let ask = ask_frame(&mut b);
    allow(&mut b, &ask);
    assert_eq!(b.response(&first)["result"]["stopReason"], "end_turn");

    // An ask a watching device leaves unanswered: notified after the delay.
    let id = a.request(
        "session/prompt",
        prompt_params(&session, "Fix the build\n/ask"),
    );
    let ask = ask_frame(&mut a);
    let r = sink.recv("late ask", |r| r.body.contains("asks in"));
    assert!(
        !r.body.contains("Quick question"),
        "an ask answered inside the delay was notified: {}",
        r.body
    );
    assert_is_ntfy_ask(&r, "/relay-topic");
    assert!(r.body.contains("\"Fix the build /ask\""), "{}", r.body);
    assert!(
        r.body.starts_with("demo (agent#"),
        "agent named: {}",
        r.body
    );
    let click = r.header("Click").unwrap_or_default();
    assert!(
        click.ends_with(&format!("/#session={session}")),
        "link: {click}"
    );
    assert!(!click.contains(&relay.token) && !r.head.contains(&relay.token));
    allow(&mut a, &ask);
    assert_eq!(a.response(&id)["result"]["stopReason"], "end_turn");

    // A turn that ends with nobody watching.
    leave_during_a_turn(a, &session);
    let r = sink.recv("unwatched turn end", |r| {
        r.header("Tags").is_some_and(|t| t.contains("turn_ended"))
    });
    assert_eq!(r.header("Title").as_deref(), Some("Turn finished"));
    assert!(r.body.contains("end_turn"), "{}", r.body);

    // An agent crash.
    let _b = crash_the_agent(&relay, &session);
    let r = sink.recv("crash", |r| {
        r.header("Tags")
            .is_some_and(|t| t.contains("agent_crashed"))
    });
    assert!(r.body.contains("exit status: 3"), "{}", r.body);
    relay.wait_log("notify: agent_crashed");
}

#[test]
fn json_webhook_gets_an_ask_that_arrived_with_nobody_connected() {
    let sink = Sink::start();
    let url = format!("http://127.0.0.1:{}/hook", sink.port);
    let relay = Relay::start(&["--notify", &url, "--notify-format", "json"]);
    let mut a = relay.device("alice", "");
    let session = open_session(&mut a);
    a.request(
        "session/prompt",
        prompt_params(&session, "Deploy\n/sleep 800\n/ask"),
    );
    a.recv_until("echo", |v| {
        v["params"]["update"]["sessionUpdate"] == "agent_message_chunk"
    });
    a.close();
    // The default delay is 20 s: with nobody connected the ask goes out at once.
    let r = sink.recv("ask", |r| r.body.contains("\"event\":\"ask\""));
    assert_eq!(
        r.header("Content-Type").as_deref(),
        Some("application/json")
    );
    let v = r.json();
    assert_eq!(v["session"], session.as_str());
    assert_eq!(v["sessionTitle"], "Deploy /sleep 800 /ask");
    assert_eq!(v["tool"], TOOL);
    assert!(
        v["link"]
            .as_str()
            .is_some_and(|l| l.ends_with(&format!("#session={session}"))),
        "{v}"
    );
    assert_eq!(v["relay"], env!("CARGO_PKG_VERSION"));
}

/// Drives one session through an ask nobody answers in time, a turn that ends
/// with nobody watching and an agent crash; returns the session id.
fn ask_unwatched_turn_and_crash(relay: &Relay, title: &str) -> String {
    let mut a = relay.device("alice", "");
    let session = open_session(&mut a);
    let id = a.request(
        "session/prompt",
        prompt_params(&session, &format!("{title}\n/ask")),
    );
    let ask = ask_frame(&mut a);
    allow(&mut a, &ask);
    assert_eq!(a.response(&id)["result"]["stopReason"], "end_turn");
    leave_during_a_turn(a, &session);
    relay.wait_log("turn ended (\"end_turn\") on agent#1, 0 device(s) watching");
    let _b = crash_the_agent(relay, &session);
    relay.wait_log("agent exited (exit status: 3)");
    session
}

/// Starts a 1.5 s turn and leaves while it runs: it ends with nobody watching.
fn leave_during_a_turn(mut a: Device, session: &str) {
    a.request(
        "session/prompt",
        prompt_params(session, "Second\n/sleep 1500"),
    );
    a.recv_until("echo", |v| {
        v["params"]["update"]["sessionUpdate"] == "agent_message_chunk"
    });
    a.close();
}

/// A device attaches to `session` and makes its agent exit with status 3.
fn crash_the_agent(relay: &Relay, session: &str) -> Device {
    let mut b = relay.device("bob", &format!("session_id={session}"));
    b.recv_until("welcome", |v| v["type"] == "relay_welcome");
    b.request("session/prompt", prompt_params(session, "/exit"));
    b
}

#[test]
fn gotify_and_a_json_webhook_get_the_ask_the_unwatched_turn_end_and_the_crash() {
    let gotify = Sink::start();
    let hook = Sink::start();
    // Gotify's documented API: POST /message, the app token in `?token=`.
    let gotify_url = format!(
        "gotify+http://127.0.0.1:{}/message?token=AppTok3n",
        gotify.port
    );
    let hook_url = format!("json+http://127.0.0.1:{}/hook", hook.port);
    let relay = Relay::start(&[
        "--notify",
        &gotify_url,
        "--notify",
        &hook_url,
        "--notify-delay",
        "0",
    ]);
    let session = ask_unwatched_turn_and_crash(&relay, "Release notes");
    let link_ok = |l: &Value| {
        l.as_str()
            .is_some_and(|l| l.ends_with(&format!("/#session={session}")))
    };

    // Gotify: JSON {title, message, priority, extras.client::notification.click.url}.
    let got: Vec<Value> = (0..3)
        .map(|i| {
            let r = gotify.recv(&format!("gotify note {i}"), |_| true);
            assert!(
                r.head.starts_with("POST /message?token=AppTok3n HTTP/1.1"),
                "{}",
                r.head
            );
            assert_eq!(
                r.header("Content-Type").as_deref(),
                Some("application/json")
            );
            r.json()
        })
        .collect();
    let find = |title: &str| {
        got.iter()
            .find(|v| v["title"] == title)
            .cloned()
            .unwrap_or_else(|| panic!("no gotify note titled {title:?}: {got:?}"))
    };
    let ask = find(&format!("Permission needed: {TOOL}"));
    assert_eq!(ask["priority"], 8, "{ask}");
    let msg = ask["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("demo (agent#") && msg.contains("\"Release notes /ask\""),
        "{ask}"
    );
    assert!(
        link_ok(&ask["extras"]["client::notification"]["click"]["url"]),
        "{ask}"
    );
    let turn = find("Turn finished");
    assert_eq!(turn["priority"], 5, "{turn}");
    assert!(
        turn["message"]
            .as_str()
            .is_some_and(|m| m.contains("end_turn"))
    );
    let crash = find("Agent crashed");
    assert_eq!(crash["priority"], 8, "{crash}");
    assert!(
        crash["message"]
            .as_str()
            .is_some_and(|m| m.contains("exit status: 3")),
        "{crash}"
    );
    assert!(link_ok(
        &crash["extras"]["client::notification"]["click"]["url"]
    ));

    // The JSON webhook: the turn end and the crash as events.
    let turn = hook
        .recv("turn end", |r| r.body.contains("\"event\":\"turn_ended\""))
        .json();
    assert_eq!(turn["session"], session.as_str());
    assert_eq!(turn["detail"], "end_turn");
    assert_eq!(turn["title"], "Turn finished");
    assert!(link_ok(&turn["link"]), "{turn}");
    let crash = hook
        .recv("crash", |r| r.body.contains("\"event\":\"agent_crashed\""))
        .json();
    assert_eq!(crash["session"], session.as_str());
    assert_eq!(crash["sessionTitle"], "Release notes /ask");
    assert_eq!(crash["detail"], "exit status: 3");
    assert!(
        crash["agent"]
            .as_str()
            .is_some_and(|a| a.starts_with("demo (agent#")),
        "{crash}"
    );
    assert!(
        !relay.log().contains("AppTok3n"),
        "the Gotify token was logged"
    );
}

#[test]
fn a_dead_target_does_not_slow_a_turn() {
    let dead = DeadPort::start();
    let url = format!("http://127.0.0.1:{}/x", dead.port);
    let relay = Relay::start(&["--notify", &url, "--notify-delay", "0"]);
    let mut a = relay.device("alice", "");
    let session = open_session(&mut a);
    let id = a.request("session/prompt", prompt_params(&session, "/ask"));
    let ask = ask_frame(&mut a);
    // The notification reached a port that never answers...
    wait_until("the dead port to read the whole POST", WAIT, || {
        dead.requests.load(Ordering::SeqCst) >= 1
    });
    // ...and the turn goes on while that POST still waits for its answer:
    // the answer reaches the agent and the turn ends with the relay's
    // connection to the dead port still open (a relay that waited for the
    // POST would have given up on it after its 10 s timeout first).
    allow(&mut a, &ask);
    assert_eq!(a.response(&id)["result"]["stopReason"], "end_turn");
    let id = a.request(
        "session/prompt",
        prompt_params(&session, "/chunks 2\nhello"),
    );
    assert_eq!(a.response(&id)["result"]["stopReason"], "end_turn");
    assert_eq!(
        dead.closed.load(Ordering::SeqCst),
        0,
        "the POST was given up on before the turns ended"
    );
    assert_eq!(dead.accepted.load(Ordering::SeqCst), 1, "one POST, pending");
}

#[test]
fn notify_cmd_runs_with_the_event_in_variables() {
    let out = TempDir::new("notify-cmd");
    let file = out.path().join("event.txt");
    let cmd = format!(
        "env | grep '^ACP_RELAY_' | sort > '{0}.tmp' && mv '{0}.tmp' '{0}'",
        file.display()
    );
    let relay = Relay::start(&["--notify-cmd", &cmd, "--notify-delay", "0"]);
    let mut a = relay.device("alice", "");
    let session = open_session(&mut a);
    a.request("session/prompt", prompt_params(&session, "Tidy up\n/ask"));
    ask_frame(&mut a);
    let deadline = Instant::now() + WAIT;
    while !file.exists() {
        assert!(
            Instant::now() < deadline,
            "--notify-cmd never ran; log:\n{}",
            relay.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let env = std::fs::read_to_string(&file).unwrap();
    for want in [
        "ACP_RELAY_EVENT=ask".to_owned(),
        format!("ACP_RELAY_SESSION={session}"),
        "ACP_RELAY_SESSION_TITLE=Tidy up /ask".to_owned(),
        format!("ACP_RELAY_TOOL={TOOL}"),
        format!("ACP_RELAY_TITLE=Permission needed: {TOOL}"),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} missing in:\n{env}");
    }
    assert!(
        env.lines()
            .any(|l| l.starts_with("ACP_RELAY_LINK=http://127.0.0.1:")
                && l.ends_with(&format!("/#session={session}"))),
        "{env}"
    );
    // The configured agent's name (the built-in demo agent is `demo`).
    assert!(env.contains("ACP_RELAY_AGENT=demo (agent#"), "{env}");
}

/// Raw `GET path` with a Bearer token; the status line.
fn get_status_line(port: u16, path: &str, token: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().next().unwrap_or("").to_owned()
}

/// `token` with every hex digit moved one on: as long, and different everywhere.
fn other_token(token: &str) -> String {
    const HEX: &str = "0123456789abcdef";
    token
        .chars()
        .map(|c| match HEX.find(c) {
            Some(i) => HEX.as_bytes()[(i + 1) % 16] as char,
            None => 'a',
        })
        .collect()
}

/// Lines of the relay's log that end with `tail`.
fn lines_ending(relay: &Relay, tail: &str) -> usize {
    relay.log().lines().filter(|l| l.ends_with(tail)).count()
}

#[test]
fn sighup_picks_up_a_changed_config_and_a_rotated_token() {
    use std::os::unix::fs::MetadataExt;
    let first = Sink::start();
    let second = Sink::start();
    let cfg_dir = TempDir::new("sighup");
    let cfg = cfg_dir.path().join("config");
    let write_cfg = |port: u16, max_asks: u32| {
        std::fs::write(
            &cfg,
            format!(
                "# test\nnotify = http://127.0.0.1:{port}/hook\nnotify-delay = 0\nmax-asks = {max_asks}\n"
            ),
        )
        .unwrap();
    };
    write_cfg(first.port, 7);
    let relay = Relay::start(&["--config", cfg.to_str().unwrap()]);
    let mut a = relay.device("alice", "");
    let session = open_session(&mut a);
    let turn = |a: &mut Device| {
        let id = a.request("session/prompt", prompt_params(&session, "/ask"));
        let ask = ask_frame(a);
        (id, ask)
    };
    let (id, ask) = turn(&mut a);
    first.recv("ask before SIGHUP", |r| {
        r.body.contains("\"event\":\"ask\"")
    });
    allow(&mut a, &ask);
    a.response(&id);

    // Change the config (a notify target SIGHUP applies, a max-asks only a
    // restart does) and replace the token in its file in place, keeping the
    // file's inode, size and mtime: the token file watch cannot see that
    // change, so only SIGHUP's own read can make the new token work.
    write_cfg(second.port, 9);
    let tok_path = relay.data_dir.join("token");
    let before = std::fs::metadata(&tok_path).unwrap();
    let new_token = other_token(&relay.token);
    assert_eq!(new_token.len(), relay.token.len());
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&tok_path)
            .unwrap();
        f.write_all(format!("{new_token}\n").as_bytes()).unwrap();
        f.set_modified(before.modified().unwrap()).unwrap();
    }
    let after = std::fs::metadata(&tok_path).unwrap();
    assert_eq!(
        (after.ino(), after.size(), after.mtime(), after.mtime_nsec()),
        (
            before.ino(),
            before.size(),
            before.mtime(),
            before.mtime_nsec()
        ),
        "the token file's stamp changed; the file watch could read it"
    );
    unsafe_kill(relay.pid(), "HUP");
    relay.wait_log("received SIGHUP");
    relay.wait_log("token changed (read on SIGHUP)");
    relay.wait_log("reload: max-asks changed; restart the relay to apply it");
    wait_until("the first reload to finish", WAIT, || {
        lines_ending(&relay, ": reloaded") == 1
    });
    assert!(
        get_status_line(relay.port, "/status", &relay.token).contains("401"),
        "the old token still works"
    );
    assert!(get_status_line(relay.port, "/status", &new_token).contains("200"));

    let (id, ask) = turn(&mut a);
    let r = second.recv("ask after SIGHUP", |r| r.body.contains("\"event\":\"ask\""));
    let link = r.json()["link"].as_str().unwrap_or_default().to_owned();
    assert!(link.ends_with(&format!("/#session={session}")), "{link}");
    allow(&mut a, &ask);
    a.response(&id);

    // A config that no longer parses: the error, the running config kept,
    // and no "reloaded". A good config after it reloads again; the signals
    // are handled in order, so its "reloaded" comes after the failed one's end.
    std::fs::write(&cfg, "notify-delay = 0\nbogus-key = 1\n").unwrap();
    unsafe_kill(relay.pid(), "HUP");
    relay.wait_log("unknown key 'bogus-key'");
    relay.wait_log("keeping the running configuration");
    write_cfg(second.port, 7);
    unsafe_kill(relay.pid(), "HUP");
    wait_until("the third SIGHUP", WAIT, || {
        relay.log().matches("received SIGHUP").count() == 3
    });
    wait_until("the third reload to finish", WAIT, || {
        lines_ending(&relay, ": reloaded") == 2
    });
    assert_eq!(
        relay.log().matches("max-asks changed").count(),
        1,
        "max-asks is back to what the relay runs with:\n{}",
        relay.log()
    );
    assert!(get_status_line(relay.port, "/status", &new_token).contains("200"));
}

#[test]
fn a_failing_target_is_retried_and_logged_once_per_spell() {
    let sink = Sink::failing_first(2);
    let url = format!("http://127.0.0.1:{}/hook", sink.port);
    let relay = Relay::start(&["--notify", &url, "--notify-delay", "0"]);
    let mut a = relay.device("alice", "");
    let session = open_session(&mut a);
    let id = a.request("session/prompt", prompt_params(&session, "/ask"));
    let ask = ask_frame(&mut a);
    allow(&mut a, &ask);
    assert_eq!(a.response(&id)["result"]["stopReason"], "end_turn");
    // Two 500s, then the third attempt (after the backoff) gets through.
    sink.recv("the retried ask", |r| r.body.contains("\"event\":\"ask\""));
    relay.wait_log("works again after 2 failed attempt(s)");
    let log = relay.log();
    assert_eq!(
        log.matches("answered HTTP 500; retrying").count(),
        1,
        "one warning per spell:\n{log}"
    );
    assert!(!log.contains("/hook"), "the target's path is never logged");
}

#[test]
fn an_agent_waiting_for_login_is_notified() {
    let sink = Sink::start();
    let url = format!("http://127.0.0.1:{}/hook", sink.port);
    let Some(relay) = bridge::quirk_relay(
        "an_agent_waiting_for_login_is_notified",
        "auth",
        &["--notify", &url],
    ) else {
        return;
    };
    // A device asks for a session; the agent refuses it until someone logs in.
    let mut d = relay.device("phone", "");
    d.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let id = d.request(
        "initialize",
        json!({"protocolVersion":1,"clientCapabilities":{}}),
    );
    d.response(&id);
    let id = d.request("session/new", json!({"cwd":"/","mcpServers":[]}));
    assert_eq!(d.response(&id)["error"]["code"], -32000);
    let r = sink.recv("login wait", |r| {
        r.body.contains("\"event\":\"agent_needs_login\"")
    });
    let v = r.json();
    assert_eq!(v["title"], "Agent needs a login");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("Authentication required") && m.contains("python3")),
        "{v}"
    );
    assert!(
        !relay.log().contains("quirk_agent.py auth"),
        "agent arguments logged"
    );
}

/// An ACP agent that opens sessions but refuses every prompt with ACP's
/// `auth_required` error (-32000), as an agent whose login expired does.
const LOGIN_EXPIRED_AGENT: &str = r#"
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if "id" not in m or "method" not in m:
        continue
    rid, method = m["id"], m["method"]
    if method == "initialize":
        out = {"result": {"protocolVersion": 1, "agentCapabilities": {},
                          "authMethods": [{"id": "login", "name": "Log in"}]}}
    elif method == "session/new":
        out = {"result": {"sessionId": "expired-1"}}
    elif method == "session/prompt":
        out = {"error": {"code": -32000, "message": "Authentication required"}}
    else:
        out = {"error": {"code": -32601, "message": "method not found"}}
    out.update({"jsonrpc": "2.0", "id": rid})
    print(json.dumps(out), flush=True)
"#;

#[test]
fn a_prompt_refused_for_a_login_is_notified() {
    let Some(py) = bridge::python3() else {
        bridge::skip(
            "a_prompt_refused_for_a_login_is_notified",
            "python3 (3.8+) is not installed",
        );
        return;
    };
    let dir = TempDir::new("login-expired");
    let script = dir.path().join("login_expired_agent.py");
    std::fs::write(&script, LOGIN_EXPIRED_AGENT).unwrap();
    let sink = Sink::start();
    let url = format!("http://127.0.0.1:{}/hook", sink.port);
    let agent = format!("{py} {}", script.display());
    let relay = Relay::start(&["--agent", &agent, "--notify", &url]);
    let mut d = relay.device("phone", "");
    let session = open_session(&mut d);
    let id = d.request("session/prompt", prompt_params(&session, "Refactor"));
    let r = d.response(&id);
    assert_eq!(r["error"]["code"], -32000, "{r}");
    let note = sink.recv("login wait on a prompt", |r| {
        r.body.contains("\"event\":\"agent_needs_login\"")
    });
    let v = note.json();
    assert_eq!(v["session"], session.as_str(), "{v}");
    assert_eq!(v["title"], "Agent needs a login");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("Authentication required") && m.contains("Refactor")),
        "{v}"
    );
}

/// An https sink: answers 200 behind a rustls server with `cert`.
#[cfg(feature = "tls")]
fn tls_sink(cert: &std::path::Path, key: &std::path::Path) -> Sink {
    use futures_rustls::rustls::crypto::ring;
    use futures_rustls::rustls::pki_types::pem::PemObject;
    use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use futures_rustls::rustls::{ServerConfig, ServerConnection, StreamOwned};
    let certs = vec![CertificateDer::from_pem_file(cert).unwrap()];
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = Arc::new(
        ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    Sink::serve(move |s| {
        let conn = ServerConnection::new(config.clone()).ok()?;
        let mut tls = StreamOwned::new(conn, s);
        let r = read_request(&mut tls)?;
        let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let _ = tls.flush();
        Some(r)
    })
}

#[cfg(feature = "tls")]
#[test]
fn an_https_target_gets_its_note_and_an_unvouched_certificate_gets_none() {
    let dir = TempDir::new("notify-tls");
    let Some((cert, key)) = make_cert(dir.path()) else {
        return;
    };
    let sink = tls_sink(&cert, &key);
    // By name: the certificate covers `localhost`.
    let url = format!("ntfy+https://localhost:{}/relay-topic", sink.port);
    let ca = cert.to_str().unwrap();
    let relay = Relay::start_env(
        &["--notify", &url, "--notify-delay", "0"],
        &[("SSL_CERT_FILE", ca)],
    );
    let mut a = relay.device("alice", "");
    let session = open_session(&mut a);
    let id = a.request("session/prompt", prompt_params(&session, "Ship it\n/ask"));
    let ask = ask_frame(&mut a);
    let got = sink.rx.recv_timeout(WAIT).expect("no note over https");
    assert_is_ntfy_ask(&got, "/relay-topic");
    allow(&mut a, &ask);
    assert_eq!(a.response(&id)["result"]["stopReason"], "end_turn");
    drop(relay);

    // The same target, but the relay trusts another CA: the handshake fails,
    // nothing is sent, and the log says why once.
    let other = TempDir::new("notify-tls-other");
    let Some((other_ca, _)) = make_cert(other.path()) else {
        return;
    };
    let relay = Relay::start_env(
        &["--notify", &url, "--notify-delay", "0"],
        &[("SSL_CERT_FILE", other_ca.to_str().unwrap())],
    );
    let mut a = relay.device("alice", "");
    let session = open_session(&mut a);
    a.request("session/prompt", prompt_params(&session, "/ask"));
    ask_frame(&mut a);
    relay.wait_log("TLS: invalid peer certificate");
    assert!(
        sink.rx.try_recv().is_err(),
        "a note reached a server the CAs do not vouch for"
    );
}

#[cfg(feature = "tls")]
#[test]
fn an_https_target_without_a_ca_bundle_stops_the_relay_with_what_to_do() {
    let dir = TempDir::new("notify-tls-noca");
    let missing = dir.path().join("no-such-bundle.pem");
    let mut cmd = std::process::Command::new(bin());
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--notify",
        "https://ntfy.example/topic",
    ])
    .arg("--data-dir")
    .arg(dir.path().join("data"))
    .arg("--workspace")
    .arg(dir.path())
    .env("SSL_CERT_FILE", &missing)
    .env("HOME", dir.path());
    let out = output_of(cmd);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-bundle.pem") && err.contains("SSL_CERT_FILE"),
        "{err}"
    );
}

#[test]
fn a_note_names_the_agent_that_runs_its_session() {
    let sink = Sink::start();
    let url = format!("json+http://127.0.0.1:{}/hook", sink.port);
    let demo = format!("{} demo-agent", bin());
    let one = format!("one={demo}");
    let two = format!("two={demo}");
    let relay = Relay::start(&[
        "--agent",
        &one,
        "--agent",
        &two,
        "--notify",
        &url,
        "--notify-delay",
        "0",
    ]);
    let mut a = relay.device("alice", "");
    let id = a.request(
        "session/new",
        json!({"cwd": relay.workspace, "mcpServers": [], "_meta": {"relay": {"agent": "two"}}}),
    );
    let r = a.response(&id);
    let session = r["result"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    a.request("session/prompt", prompt_params(&session, "/ask"));
    ask_frame(&mut a);
    let note = sink.recv("ask", |r| r.body.contains("\"event\":\"ask\""));
    let agent = note.json()["agent"].as_str().unwrap_or_default().to_owned();
    assert!(agent.starts_with("two (agent#"), "{agent}");
}
