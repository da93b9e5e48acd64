//! Notification targets and a small HTTP/1.1 client for them: a target URL
//! and its format (ntfy, Gotify, JSON webhook), the request each format
//! documents, and [`post`], one POST over a smol `TcpStream` with a deadline.
//! `https://` targets go through `crate::client_tls` in a relay built with the
//! `tls` feature; without it they are refused at startup with what to do.

use crate::notify::Note;
use std::fmt;
use std::time::Duration;

/// Longest response head read back (only its status line matters).
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024;

/// How a target wants its notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyFormat {
    /// ntfy: the message as the body, `Title`, `Priority`, `Tags`, `Click` headers.
    Ntfy,
    /// Gotify: `POST /message?token=T` with a JSON `{title, message, priority, extras}`.
    Gotify,
    /// Any webhook: the event as a JSON object.
    Json,
}

impl NotifyFormat {
    pub fn parse(s: &str) -> Option<NotifyFormat> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ntfy" => Some(NotifyFormat::Ntfy),
            "gotify" => Some(NotifyFormat::Gotify),
            "json" | "webhook" => Some(NotifyFormat::Json),
            _ => None,
        }
    }
}

/// Why a target URL was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum UrlError {
    /// `https://` in a relay built without the `tls` feature.
    Https(String),
    Malformed(String),
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Https(u) => write!(
                f,
                "--notify {}: https needs a relay built with TLS (cargo build --release --features tls); or give a local http:// URL",
                without_path(u)
            ),
            UrlError::Malformed(u) => write!(
                f,
                "--notify {}: not a URL like https://host/topic or http://host:port/topic (a format may prefix it: ntfy+https://, gotify+http://, json+http://)",
                without_path(u)
            ),
        }
    }
}

/// A target URL up to its path, for messages that reach the log: the path
/// and query may hold a topic or a token (see [`Target::label`]).
fn without_path(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    match url[start..].find(['/', '?']) {
        Some(i) => format!("{}/...", &url[..start + i]),
        None => url.to_owned(),
    }
}

impl std::error::Error for UrlError {}

/// One notification target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub format: NotifyFormat,
    pub host: String,
    pub port: u16,
    /// Path and query, e.g. `/relay` or `/message?token=T`.
    pub path: String,
    /// `https://`: TLS to the host, its certificate checked against the
    /// system's CAs (feature `tls`).
    pub tls: bool,
}

impl Target {
    /// Parses `[ntfy+|gotify+|json+]http[s]://host[:port][/path]`. Without a
    /// prefix the format is `default` when given, else guessed from the URL:
    /// a path ending in `/message` is Gotify, a host naming ntfy is ntfy,
    /// anything else a JSON webhook.
    pub fn parse(url: &str, default: Option<NotifyFormat>) -> Result<Target, UrlError> {
        let (prefix, rest) = match url.split_once('+') {
            Some((p, r)) if NotifyFormat::parse(p).is_some() && r.contains("://") => {
                (NotifyFormat::parse(p), r)
            }
            _ => (None, url),
        };
        let (tls, after) = if let Some(after) = rest.strip_prefix("https://") {
            if !cfg!(feature = "tls") {
                return Err(UrlError::Https(url.into()));
            }
            (true, after)
        } else if let Some(after) = rest.strip_prefix("http://") {
            (false, after)
        } else {
            return Err(UrlError::Malformed(url.into()));
        };
        let (authority, path) = match after.find(['/', '?']) {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        if authority.is_empty() || authority.contains('@') || path.contains(char::is_whitespace) {
            return Err(UrlError::Malformed(url.into()));
        }
        let (host, port) = match split_host_port(authority, if tls { 443 } else { 80 }) {
            Some(hp) => hp,
            None => return Err(UrlError::Malformed(url.into())),
        };
        if host.is_empty() {
            return Err(UrlError::Malformed(url.into()));
        }
        let format = prefix.or(default).unwrap_or_else(|| {
            let p = path.split('?').next().unwrap_or("");
            if p.trim_end_matches('/').ends_with("/message") {
                NotifyFormat::Gotify
            } else if host.contains("ntfy") {
                NotifyFormat::Ntfy
            } else {
                NotifyFormat::Json
            }
        });
        Ok(Target {
            format,
            host,
            port,
            path,
            tls,
        })
    }

    /// `host:port` for logs (never the path: it may hold a topic or a token).
    pub fn label(&self) -> String {
        let tls = if self.tls { ", https" } else { "" };
        format!("{}:{} ({:?}{tls})", self.host, self.port, self.format)
    }

    /// The full request for one note.
    pub fn request(&self, note: &Note, agent: &str, link: Option<&str>) -> Vec<u8> {
        let headline = note.headline();
        let body = note.body(agent);
        let mut headers: Vec<(&str, String)> = Vec::new();
        let payload: Vec<u8> = match self.format {
            NotifyFormat::Ntfy => {
                headers.push(("Content-Type", "text/plain; charset=utf-8".into()));
                headers.push(("Title", header_value(&headline)));
                headers.push((
                    "Priority",
                    match note.kind {
                        crate::notify::Kind::Ask | crate::notify::Kind::Login => "high",
                        crate::notify::Kind::Crash => "high",
                        crate::notify::Kind::TurnEnded => "default",
                    }
                    .into(),
                ));
                headers.push(("Tags", format!("robot,{}", note.kind.name())));
                if let Some(l) = link {
                    headers.push(("Click", header_value(l)));
                }
                body.into_bytes()
            }
            NotifyFormat::Gotify => {
                headers.push(("Content-Type", "application/json".into()));
                let mut v = serde_json::json!({
                    "title": headline,
                    "message": body,
                    "priority": if note.kind == crate::notify::Kind::TurnEnded { 5 } else { 8 },
                });
                if let Some(l) = link {
                    v["extras"] =
                        serde_json::json!({"client::notification": {"click": {"url": l}}});
                }
                v.to_string().into_bytes()
            }
            NotifyFormat::Json => {
                headers.push(("Content-Type", "application/json".into()));
                serde_json::json!({
                    "event": note.kind.name(),
                    "title": headline,
                    "message": body,
                    "session": note.session,
                    "sessionTitle": note.title,
                    "agent": agent,
                    "tool": note.tool_title,
                    "detail": note.detail,
                    "link": link,
                    "relay": env!("CARGO_PKG_VERSION"),
                })
                .to_string()
                .into_bytes()
            }
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let mut out = format!(
            "POST {} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: acp-relay/{}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.path,
            self.port,
            env!("CARGO_PKG_VERSION"),
            payload.len()
        );
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&payload);
        bytes
    }
}

/// `host[:port]` or `[v6][:port]`; `default` when the port is absent.
fn split_host_port(authority: &str, default: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok()?,
        None => default,
    };
    Some((host.to_owned(), port))
}

/// A header value: ASCII as it is (control characters dropped), anything
/// else as an RFC 2047 `=?UTF-8?B?...?=` word, which ntfy decodes.
fn header_value(s: &str) -> String {
    let clean: String = s.chars().filter(|c| !c.is_control()).collect();
    if clean.is_ascii() {
        return clean;
    }
    format!("=?UTF-8?B?{}?=", base64(clean.as_bytes()))
}

fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Why one POST failed.
#[derive(Debug)]
pub enum PostError {
    Connect(std::io::Error),
    Io(std::io::Error),
    Timeout(Duration),
    /// The TLS handshake failed (a certificate the CAs do not vouch for, or
    /// one for another name).
    Tls(String),
    /// The server answered, but not with 2xx.
    Status(u16),
    BadResponse,
}

impl fmt::Display for PostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PostError::Connect(e) => write!(f, "cannot connect: {e}"),
            PostError::Io(e) => write!(f, "{e}"),
            PostError::Timeout(d) => write!(f, "no answer within {}s", d.as_secs()),
            PostError::Tls(e) => write!(f, "TLS: {e}"),
            PostError::Status(s) => write!(f, "answered HTTP {s}"),
            PostError::BadResponse => write!(f, "answered something that is not HTTP"),
        }
    }
}

impl std::error::Error for PostError {}

/// Sends one request and reads the status line, all within `timeout`
/// (connect, TLS handshake, request and answer together).
pub async fn post(target: &Target, request: &[u8], timeout: Duration) -> Result<u16, PostError> {
    let work = async {
        // Name resolution runs on smol's blocking pool, never on the executor thread.
        let stream = smol::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(PostError::Connect)?;
        if target.tls {
            #[cfg(feature = "tls")]
            return post_tls(target, stream, request).await;
            // Never parsed without the feature (see `Target::parse`).
            #[cfg(not(feature = "tls"))]
            return Err(PostError::Tls("this relay is built without TLS".into()));
        }
        exchange(stream, request).await
    };
    futures_lite::future::or(work, async {
        smol::Timer::after(timeout).await;
        Err(PostError::Timeout(timeout))
    })
    .await
}

#[cfg(feature = "tls")]
async fn post_tls(
    target: &Target,
    stream: smol::net::TcpStream,
    request: &[u8],
) -> Result<u16, PostError> {
    let (Some(connector), Some(name)) = (
        crate::client_tls::connector(),
        crate::client_tls::server_name(&target.host),
    ) else {
        return Err(PostError::Tls(format!(
            "cannot check a certificate for host {:?}",
            target.host
        )));
    };
    let stream = connector
        .connect(name, stream)
        .await
        .map_err(|e| PostError::Tls(e.to_string()))?;
    exchange(stream, request).await
}

/// Writes the request and reads the answer's status line.
async fn exchange<S>(mut stream: S, request: &[u8]) -> Result<u16, PostError>
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request).await.map_err(PostError::Io)?;
    stream.flush().await.map_err(PostError::Io)?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream.read(&mut chunk).await.map_err(PostError::Io)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(2).any(|w| w == b"\r\n") || buf.len() >= MAX_RESPONSE_BYTES {
            break;
        }
    }
    let line = buf.split(|b| *b == b'\r').next().unwrap_or(&[]);
    let status = std::str::from_utf8(line)
        .ok()
        .filter(|l| l.starts_with("HTTP/1."))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(PostError::BadResponse)?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(PostError::Status(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Kind;

    fn note() -> Note {
        Note {
            kind: Kind::Ask,
            session: Some("s1".into()),
            title: Some("Fix the build".into()),
            agent: None,
            tool_title: Some("Edit main.rs".into()),
            detail: None,
        }
    }

    #[test]
    fn urls_and_guessed_formats() {
        let t = Target::parse("http://ntfy.local:8080/relay", None).unwrap();
        assert_eq!(
            (t.format, t.host.as_str(), t.port, t.path.as_str()),
            (NotifyFormat::Ntfy, "ntfy.local", 8080, "/relay")
        );
        let t = Target::parse("http://10.0.0.2/message?token=abc", None).unwrap();
        assert_eq!((t.format, t.port), (NotifyFormat::Gotify, 80));
        assert_eq!(t.path, "/message?token=abc");
        assert!(!t.label().contains("abc"));
        let t = Target::parse("http://127.0.0.1:9/hook", None).unwrap();
        assert_eq!(t.format, NotifyFormat::Json);
        let t = Target::parse("ntfy+http://127.0.0.1:9/topic", Some(NotifyFormat::Json)).unwrap();
        assert_eq!(t.format, NotifyFormat::Ntfy);
        let t = Target::parse("http://[::1]:9", Some(NotifyFormat::Gotify)).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.format),
            ("::1", 9, NotifyFormat::Gotify)
        );
        let https = Target::parse("https://ntfy.sh/x", None);
        if cfg!(feature = "tls") {
            let t = https.unwrap();
            assert_eq!(
                (t.tls, t.port, t.format, t.host.as_str()),
                (true, 443, NotifyFormat::Ntfy, "ntfy.sh")
            );
            assert!(t.label().contains("https"), "{}", t.label());
            let t =
                Target::parse("gotify+https://push.example:8443/message?token=x", None).unwrap();
            assert_eq!(
                (t.tls, t.port, t.format),
                (true, 8443, NotifyFormat::Gotify)
            );
        } else {
            assert!(matches!(https, Err(UrlError::Https(_))));
        }
        assert!(!Target::parse("http://ntfy.sh/x", None).unwrap().tls);
        for bad in ["ftp://x", "http://", "http://a:b/x", "http://u@h/x"] {
            assert!(Target::parse(bad, None).is_err(), "{bad}");
        }
        let e = Target::parse("ftp://gotify/message?token=s3cret", None).unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(e.to_string().contains("ftp://gotify/..."), "{e}");
    }

    #[test]
    fn requests_follow_each_format() {
        let n = note();
        let req = |f| {
            let t = Target {
                format: f,
                host: "h".into(),
                port: 1,
                path: "/t".into(),
                tls: false,
            };
            String::from_utf8(t.request(&n, "gemini", Some("http://relay/#session=s1"))).unwrap()
        };
        let ntfy = req(NotifyFormat::Ntfy);
        assert!(ntfy.starts_with("POST /t HTTP/1.1\r\n"));
        assert!(ntfy.contains("\r\nTitle: Permission needed: Edit main.rs\r\n"));
        assert!(ntfy.contains("\r\nClick: http://relay/#session=s1\r\n"));
        assert!(ntfy.ends_with("\r\n\r\ngemini asks in \"Fix the build\": Edit main.rs"));
        let gotify = req(NotifyFormat::Gotify);
        let body: serde_json::Value =
            serde_json::from_str(gotify.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["title"], "Permission needed: Edit main.rs");
        assert_eq!(
            body["extras"]["client::notification"]["click"]["url"],
            "http://relay/#session=s1"
        );
        let json = req(NotifyFormat::Json);
        let body: serde_json::Value =
            serde_json::from_str(json.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["event"], "ask");
        assert_eq!(body["tool"], "Edit main.rs");
        assert_eq!(header_value("Größe"), "=?UTF-8?B?R3LDtsOfZQ==?=");
        assert_eq!(base64(b"ab"), "YWI=");
    }
}
