//! The token stays secret: not on stdout when stdout is not a terminal (a
//! journal keeps it), not in the 101 response, and a deleted token file is
//! never re-created by an upgrade attempt.
mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// Kills the child on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn no_token_on_stdout_when_it_is_not_a_terminal() {
    let dir = TempDir::new("stdout");
    let data = dir.path().join("data");
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let mut g = Guard(
        Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .arg("--workspace")
            .arg(&ws)
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = g.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + WAIT;
    while !lines.iter().any(|l: &String| l.contains("browser:")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => panic!("no browser line on stdout: {lines:?}"),
        }
    }
    let token = std::fs::read_to_string(data.join("token")).unwrap();
    let token = token.trim();
    let out = lines.join("\n");
    assert!(!out.contains(token), "token on stdout:\n{out}");
    assert!(out.contains("acp-relay pair --data-dir"), "{out}");
}

fn raw_upgrade(port: u16, extra: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    write!(
        s,
        "GET /ws?client_id=raw HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn the_101_never_carries_the_token_and_a_deleted_token_stays_deleted() {
    let relay = Relay::start(&[]);
    let r = raw_upgrade(
        relay.port,
        &format!(
            "Sec-WebSocket-Protocol: acp-relay.v1, acp-relay.token.{}\r\n",
            relay.token
        ),
    );
    assert!(r.starts_with("HTTP/1.1 101"), "{r}");
    assert!(
        r.contains("Sec-WebSocket-Protocol: acp-relay.v1\r\n"),
        "{r}"
    );
    assert!(!r.contains(&relay.token), "token in the 101:\n{r}");

    std::fs::remove_file(relay.data_dir.join("token")).unwrap();
    let r = raw_upgrade(relay.port, "Authorization: Bearer not-the-token\r\n");
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert!(
        !relay.data_dir.join("token").exists(),
        "an unauthenticated attempt re-created the token file"
    );
    // The token read at start still admits its holders.
    let r = raw_upgrade(
        relay.port,
        &format!("Authorization: Bearer {}\r\n", relay.token),
    );
    assert!(r.starts_with("HTTP/1.1 101"), "{r}");
    assert!(!relay.data_dir.join("token").exists());
}

/// Collects a pipe's lines into a shared string.
fn collect(pipe: impl Read + Send + 'static) -> std::sync::Arc<std::sync::Mutex<String>> {
    let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let o = out.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut o = o.lock().unwrap();
            o.push_str(&l);
            o.push('\n');
        }
    });
    out
}

/// Inline keys in `--agent` (an environment assignment before the program,
/// named or not, a lowercase `http_proxy` among them) reach the agent's
/// environment, and never the relay's stdout, log, status or the devices:
/// only program names are shown. The assignments are expanded as at a
/// prompt: `PATH=~/bin:$PATH` finds a program in `$HOME/bin`, `K=~/k` is
/// given `$HOME/k`.
#[test]
fn inline_agent_keys_reach_the_agent_and_nothing_else() {
    let dir = TempDir::new("agent-keys");
    let data = dir.path().join("data");
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    // Each agent writes the key it was given, then becomes the demo agent.
    let agent = |var: &str, seen: &str| {
        format!(
            "sh -c 'printf %s \"${var}\" > {}; exec {} demo-agent --state-dir {}'",
            dir.path().join(seen).display(),
            bin(),
            dir.path().join(format!("{seen}-state")).display()
        )
    };
    let named = format!(
        "claude=ANTHROPIC_API_KEY=sk-SECRET123 {}",
        agent("ANTHROPIC_API_KEY", "seen-claude")
    );
    let bare = format!("DEMO_KEY=sk-SECRET456 {}", agent("DEMO_KEY", "seen-bare"));
    // A program found only through the PATH its assignments set.
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("bin")).unwrap();
    let script = home.join("bin/home-agent");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s|%s' \"$HOME_KEY\" \"$http_proxy\" > {}\nexec {} demo-agent --state-dir {}\n",
            dir.path().join("seen-home").display(),
            bin(),
            dir.path().join("seen-home-state").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let proxy = "http://u:SECRET789pass@proxy.example:3128";
    let from_home = format!("http_proxy={proxy} HOME_KEY=~/k PATH=~/bin:$PATH home-agent --x");
    let mut cmd = Command::new(bin());
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--log",
        "debug",
        "--data-dir",
    ])
    .arg(&data)
    .arg("--workspace")
    .arg(&ws)
    .args(["--agent", &named, "--agent", &bare, "--agent", &from_home]);
    clean_env(&mut cmd, &home);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut g = GroupGuard::spawn(cmd).unwrap();
    let stdout = collect(g.stdout.take().unwrap());
    let stderr = collect(g.stderr.take().unwrap());
    let mut port = None;
    wait_until("the relay's address on stdout", WAIT, || {
        let out = stdout.lock().unwrap();
        port = out
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.lines().next())
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.trim().parse::<u16>().ok());
        port.is_some() && out.contains("devices:")
    });
    let port = port.unwrap();
    let token = std::fs::read_to_string(data.join("token")).unwrap();
    let token = token.trim();
    use tungstenite::client::IntoClientRequest;
    let req = format!("ws://127.0.0.1:{port}/ws?client_id=k&token={token}")
        .into_client_request()
        .unwrap();
    let mut d = Device::connect(port, req, "k").unwrap();
    let sid = open_session(&mut d);
    let id = d.request("session/prompt", prompt_params(&sid, "/chunks 1\nhi"));
    assert_eq!(d.response(&id)["result"]["stopReason"], "end_turn");
    for agent in ["sh", "home-agent"] {
        let id = d.request(
            "session/new",
            serde_json::json!({"cwd": "/", "mcpServers": [], "_meta": {"relay": {"agent": agent}}}),
        );
        let r = d.response(&id);
        let sid = r["result"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"))
            .to_owned();
        let id = d.request("session/prompt", prompt_params(&sid, "/chunks 1\nhi"));
        assert_eq!(
            d.response(&id)["result"]["stopReason"],
            "end_turn",
            "{agent}"
        );
    }
    // The keys reached the agents.
    let seen = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
    assert_eq!(seen("seen-claude"), "sk-SECRET123");
    assert_eq!(seen("seen-bare"), "sk-SECRET456");
    assert_eq!(seen("seen-home"), format!("{}/k|{proxy}", home.display()));

    let id = d.request("session/list", serde_json::json!({}));
    d.response(&id);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut status = String::new();
    let _ = s.read_to_string(&mut status);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let out = stdout.lock().unwrap().clone();
    let err = stderr.lock().unwrap().clone();
    let devices = d.raw.join("\n");
    for (what, text) in [
        ("stdout", &out),
        ("log", &err),
        ("/status", &status),
        ("device frames", &devices),
    ] {
        assert!(!text.contains("SECRET"), "a key in the {what}:\n{text}");
        assert!(
            !text.contains("pass@") && !text.contains("proxy.example"),
            "the proxy's password in the {what}:\n{text}"
        );
        assert!(
            !text.contains("ANTHROPIC_API_KEY")
                && !text.contains("DEMO_KEY=")
                && !text.contains("http_proxy="),
            "an assignment in the {what}:\n{text}"
        );
    }
    assert!(out.contains("agent:     claude = sh"), "{out}");
    assert!(out.contains("agent:     sh = sh"), "{out}");
    assert!(out.contains("agent:     home-agent = home-agent"), "{out}");
    assert!(err.contains("started `sh`"), "{err}");
    assert!(err.contains("started `home-agent`"), "{err}");
}

/// A named `--agent` whose "program" looks like a value (`proxy=http://u:p@h
/// cmd`: a lowercase variable read as a name) is refused at startup, and the
/// refusal never quotes it.
#[test]
fn an_agent_name_that_may_be_a_variable_is_refused_without_its_value() {
    let dir = TempDir::new("agent-ambiguous");
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--workspace")
        .arg(&ws)
        .args([
            "--agent",
            "proxy=http://u:SECRETpass@proxy.example:3128 claude-code-acp",
        ]);
    clean_env(&mut cmd, &dir.path().join("home"));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut g = GroupGuard::spawn(cmd).unwrap();
    let stdout = collect(g.stdout.take().unwrap());
    let stderr = collect(g.stderr.take().unwrap());
    let mut status = None;
    wait_until("the relay to refuse its --agent", WAIT, || {
        status = g.try_wait().unwrap();
        status.is_some()
    });
    assert!(!status.unwrap().success());
    wait_until("the refusal on stderr", WAIT, || {
        stderr.lock().unwrap().contains("name the agent first")
    });
    let out = format!("{}{}", stdout.lock().unwrap(), stderr.lock().unwrap());
    assert!(out.contains("'proxy'"), "{out}");
    assert!(
        !out.contains("SECRET") && !out.contains("proxy.example") && !out.contains("http:"),
        "the value in the refusal:\n{out}"
    );
}
