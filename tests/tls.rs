//! Built-in TLS (`--features tls`): a self-signed certificate made by
//! `openssl` at test time, the real relay started with `--tls-cert/--tls-key`,
//! and a rustls client that trusts only that certificate.
//!
//! Run: `cargo test --features tls --test tls`.
#![cfg(feature = "tls")]

mod common;

use common::{Relay, TempDir, make_cert};
use futures_rustls::rustls::crypto::ring;
use futures_rustls::rustls::pki_types::pem::PemObject;
use futures_rustls::rustls::pki_types::{CertificateDer, ServerName};
use futures_rustls::rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// The relay with TLS on, its certificate's dir (kept alive) and the cert path.
fn start() -> Option<(Relay, TempDir, PathBuf)> {
    let dir = TempDir::new("tls-cert");
    let (cert, key) = make_cert(dir.path())?;
    let relay = Relay::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    Some((relay, dir, cert))
}

/// A TLS connection to the relay that trusts only `cert`, as `name`.
fn connect(port: u16, cert: &Path, name: &str) -> Tls {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cert).expect("read the test certificate"))
        .expect("add the test certificate as a root");
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = ClientConnection::new(
        Arc::new(config),
        ServerName::try_from(name.to_owned()).unwrap(),
    )
    .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(common::WAIT)).unwrap();
    StreamOwned::new(conn, tcp)
}

/// One HTTP GET over TLS; the whole response (the relay closes after it,
/// with a TLS close_notify: a missing one fails `read_to_string`).
fn https_get(port: u16, cert: &Path, path: &str) -> String {
    let mut s = connect(port, cert, "localhost");
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out)
        .unwrap_or_else(|e| panic!("reading the https response to {path}: {e} (got {out:?})"));
    out
}

/// A WebSocket over TLS to `path` with the Bearer token.
fn wss(relay: &Relay, cert: &Path, path: &str) -> WebSocket<Tls> {
    let mut req = format!("wss://localhost:{}{path}", relay.port)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", relay.token).parse().unwrap(),
    );
    let stream = connect(relay.port, cert, "localhost");
    let (ws, resp) = tungstenite::client::client(req, stream)
        .unwrap_or_else(|e| panic!("wss upgrade to {path} failed: {e}"));
    assert_eq!(resp.status(), 101);
    ws
}

/// The next text frame as JSON.
fn next_json(ws: &mut WebSocket<Tls>) -> Value {
    loop {
        match ws.read().expect("read a frame over wss") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            _ => continue,
        }
    }
}

/// Frames until the response to `id`.
fn response(ws: &mut WebSocket<Tls>, id: &Value) -> Value {
    loop {
        let v = next_json(ws);
        if &v["id"] == id && v.get("method").is_none() {
            return v;
        }
    }
}

#[test]
fn https_healthz_and_pages_over_tls() {
    let Some((relay, _dir, cert)) = start() else {
        return;
    };
    let r = https_get(relay.port, &cert, "/healthz");
    assert!(r.starts_with("HTTP/1.1 200"), "healthz: {r}");
    assert!(
        r.ends_with(concat!("\r\n\r\nok ", env!("CARGO_PKG_VERSION"), "\n")),
        "healthz: {r}"
    );
    let r = https_get(relay.port, &cert, "/");
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("<html"),
        "index"
    );
    let r = https_get(relay.port, &cert, "/nope");
    assert!(r.starts_with("HTTP/1.1 404"), "404: {r}");
    // The certificate's IP address works as a name too.
    let mut s = connect(relay.port, &cert, "127.0.0.1");
    write!(s, "GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(
        out.ends_with(concat!("ok ", env!("CARGO_PKG_VERSION"), "\n")),
        "healthz by IP: {out}"
    );
}

#[test]
fn wss_upgrade_gets_welcome_and_drives_a_session() {
    let Some((relay, _dir, cert)) = start() else {
        return;
    };
    let mut ws = wss(&relay, &cert, "/ws?client_id=phone");
    let welcome = next_json(&mut ws);
    assert_eq!(welcome["type"], "relay_welcome", "{welcome}");
    let id = json!("phone:1");
    ws.send(Message::text(
        json!({"jsonrpc":"2.0","id":id,"method":"initialize","params":{"protocolVersion":1,"clientCapabilities":{}}})
            .to_string(),
    ))
    .unwrap();
    let init = response(&mut ws, &id);
    assert!(
        init["result"]["agentCapabilities"].is_object(),
        "initialize over wss: {init}"
    );
    let id = json!("phone:2");
    ws.send(Message::text(
        json!({"jsonrpc":"2.0","id":id,"method":"session/new","params":{"cwd":"/","mcpServers":[]}})
            .to_string(),
    ))
    .unwrap();
    let r = response(&mut ws, &id);
    assert!(r["result"]["sessionId"].is_string(), "session/new: {r}");
    let _ = ws.close(None);

    // A wrong token over TLS gets the plain 401, not a hang.
    let mut s = connect(relay.port, &cert, "localhost");
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer wrong\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 401"), "wrong token: {out}");
}

/// `/acp` sends nothing after its 101: the 101 must not sit in a TLS buffer.
#[test]
fn plain_acp_over_wss_answers() {
    let Some((relay, _dir, cert)) = start() else {
        return;
    };
    let mut ws = wss(&relay, &cert, "/acp");
    let id = json!(1);
    ws.send(Message::text(
        json!({"jsonrpc":"2.0","id":id,"method":"initialize","params":{"protocolVersion":1,"clientCapabilities":{}}})
            .to_string(),
    ))
    .unwrap();
    let init = response(&mut ws, &id);
    assert!(init["result"].is_object(), "initialize over /acp: {init}");
}

#[test]
fn plain_tcp_to_the_tls_port_fails_cleanly_and_the_relay_keeps_serving() {
    let Some((relay, _dir, cert)) = start() else {
        return;
    };
    // Plain HTTP: a readable plain-text 400 that says to use TLS, then close.
    let mut s = TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
    s.set_read_timeout(Some(common::WAIT)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(
        out.starts_with("HTTP/1.1 400") && out.contains("use https:// or wss://"),
        "plain HTTP on the TLS port: {out:?}"
    );
    // Not HTTP, not TLS: closed without a reply.
    let mut s = TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
    s.set_read_timeout(Some(common::WAIT)).unwrap();
    s.write_all(b"\x00\x01\x02garbage\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(buf.is_empty(), "garbage got a reply: {buf:?}");
    // A TLS record header followed by junk: the handshake fails, the socket closes.
    let mut s = TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
    s.set_read_timeout(Some(common::WAIT)).unwrap();
    s.write_all(b"\x16\x03\x01\x00\x05hello").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    // A client that does not trust the certificate fails its handshake.
    let mut roots = RootCertStore::empty();
    let other = TempDir::new("tls-other");
    if let Some((other_cert, _)) = make_cert(other.path()) {
        roots
            .add(CertificateDer::from_pem_file(&other_cert).unwrap())
            .unwrap();
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let conn =
            ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
                .unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
        tcp.set_read_timeout(Some(common::WAIT)).unwrap();
        let mut s = StreamOwned::new(conn, tcp);
        let r = s
            .write_all(b"GET /healthz HTTP/1.1\r\n\r\n")
            .and_then(|_| s.flush());
        let mut out = String::new();
        let r = r.and_then(|_| s.read_to_string(&mut out));
        assert!(r.is_err(), "an untrusted certificate was accepted: {out}");
    }
    // The relay still serves TLS clients (each read is bounded by WAIT).
    let r = https_get(relay.port, &cert, "/healthz");
    assert!(
        r.ends_with(concat!("ok ", env!("CARGO_PKG_VERSION"), "\n")),
        "healthz after bad clients: {r}"
    );
    let mut ws = wss(&relay, &cert, "/ws?client_id=after");
    assert_eq!(next_json(&mut ws)["type"], "relay_welcome");
    assert!(
        relay.log().contains("not a TLS handshake"),
        "log: {}",
        relay.log()
    );
}

/// `acp-relay status ARGS` with `env`, in a clean environment.
fn status(args: &[&str], env: &[(&str, &Path)]) -> (bool, String) {
    let home = TempDir::new("tls-status-home");
    let mut cmd = Command::new(common::bin());
    cmd.arg("status").args(args);
    common::clean_env(&mut cmd, home.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = common::output_of(cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn status_reaches_a_tls_relay_by_its_own_certificate_or_a_ca() {
    let Some((relay, dir, cert)) = start() else {
        return;
    };
    let dd = relay.data_dir.to_str().unwrap();
    // On the relay's machine: its config's tls-cert is trusted, whatever
    // address the relay is reached by.
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "listen = 127.0.0.1:{}\ndata-dir = {dd}\ntls-cert = {}\n",
            relay.port,
            cert.display()
        ),
    )
    .unwrap();
    let (ok, out) = status(&["--config", config.to_str().unwrap(), "--json"], &[]);
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");

    // By URL: the certificate is checked against the CAs in SSL_CERT_FILE and
    // the URL's host (the test certificate covers 127.0.0.1).
    let url = format!("https://127.0.0.1:{}", relay.port);
    let (ok, out) = status(
        &["--url", &url, "--data-dir", dd],
        &[("SSL_CERT_FILE", cert.as_path())],
    );
    assert!(ok && out.contains("sessions"), "{out}");

    // A CA that does not vouch for it: refused, saying what to do.
    let other = TempDir::new("tls-status-other");
    let Some((other_ca, _)) = make_cert(other.path()) else {
        return;
    };
    let (ok, out) = status(
        &["--url", &url, "--data-dir", dd],
        &[("SSL_CERT_FILE", other_ca.as_path())],
    );
    assert!(
        !ok && out.contains("TLS") && out.contains("--config"),
        "{out}"
    );

    // Plain http to the TLS port: told to use https.
    let plain = format!("http://127.0.0.1:{}", relay.port);
    let (ok, out) = status(&["--url", &plain, "--data-dir", dd], &[]);
    assert!(!ok && out.contains("https://"), "{out}");
}
