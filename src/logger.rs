//! A minimal `log` backend: one line per record on stderr, level from
//! `--log` or `RUST_LOG` (a bare level such as `info` or `debug`).
//!
//! Every message is escaped as a whole before it is written: control
//! characters (newline, NUL, escape, ...) become `\n`, `\0`, `\x1b`, so a
//! peer-supplied string can never forge a line or put raw bytes in the log.
//! Call sites bound peer strings with [`peer`]. Under systemd (stderr is the
//! stream `JOURNAL_STREAM` names) each line carries a `<N>` syslog priority prefix so journald keeps the
//! level; `--log-format json` writes one JSON object per line instead.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fmt::{self, Write as _};
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

/// Longest message written; the rest is cut with a note of its length.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Longest peer-supplied string [`peer`] lets through.
pub const MAX_PEER_CHARS: usize = 96;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `LEVEL target: message`.
    Text,
    /// `{"level":"info","target":"...","msg":"..."}`.
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

static FORMAT: AtomicU8 = AtomicU8::new(0);
static JOURNAL: AtomicU8 = AtomicU8::new(0);

struct StderrLog;

impl Log for StderrLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = render(
            record.level(),
            record.target(),
            &record.args().to_string(),
            if FORMAT.load(Ordering::Relaxed) == 1 {
                Format::Json
            } else {
                Format::Text
            },
            JOURNAL.load(Ordering::Relaxed) == 1,
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// One finished log line (with its newline).
pub fn render(level: Level, target: &str, msg: &str, format: Format, journal: bool) -> String {
    let mut out = String::with_capacity(msg.len().min(MAX_MESSAGE_BYTES) + 48);
    if journal {
        // sd-daemon(3) priorities: err 3, warning 4, info 6, debug 7.
        let prio = match level {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug | Level::Trace => 7,
        };
        let _ = write!(out, "<{prio}>");
    }
    let msg = bounded(msg);
    match format {
        Format::Text => {
            let name = match level {
                Level::Error => "ERROR",
                Level::Warn => "WARN ",
                Level::Info => "INFO ",
                Level::Debug => "DEBUG",
                Level::Trace => "TRACE",
            };
            let _ = write!(out, "{name} {}: ", escape(target));
            escape_into(&mut out, &msg);
        }
        Format::Json => {
            let v = serde_json::json!({
                "level": level.as_str().to_ascii_lowercase(),
                "target": target,
                "msg": msg,
            });
            // serde_json escapes C0 controls; DEL, C1 controls and the line
            // separators (legal raw in JSON strings) get \u escapes here.
            for c in v.to_string().chars() {
                if c == '\x7f'
                    || ('\u{80}'..='\u{9f}').contains(&c)
                    || c == '\u{2028}'
                    || c == '\u{2029}'
                {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    out.push(c);
                }
            }
        }
    }
    out.push('\n');
    out
}

fn bounded(msg: &str) -> std::borrow::Cow<'_, str> {
    if msg.len() <= MAX_MESSAGE_BYTES {
        return msg.into();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes, cut)", &msg[..end], msg.len()).into()
}

/// `s` with control characters written as escapes (`\n`, `\0`, `\x1b`, `\u{2028}`).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            '\\' => out.push('\\'),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            // C1 controls and the Unicode line/paragraph separators also break lines.
            c if ('\u{80}'..='\u{9f}').contains(&c) || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// A peer-supplied string, bounded for a log line: at most [`MAX_PEER_CHARS`]
/// characters, quoted, the rest counted. Escaping happens for the whole line.
pub fn peer(s: &str) -> Peer<'_> {
    Peer(s)
}

/// See [`peer`].
pub struct Peer<'a>(&'a str);

impl fmt::Display for Peer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.0.chars().count();
        if total <= MAX_PEER_CHARS {
            return write!(f, "{:?}", self.0);
        }
        let head: String = self.0.chars().take(MAX_PEER_CHARS).collect();
        write!(f, "{head:?}... ({total} chars)")
    }
}

impl fmt::Debug for Peer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

static LOGGER: StderrLog = StderrLog;

/// Parses a level name; `None` for anything else.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    match s.trim().to_ascii_lowercase().as_str() {
        "off" => Some(LevelFilter::Off),
        "error" => Some(LevelFilter::Error),
        "warn" | "warning" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        _ => None,
    }
}

/// Installs the logger once (text format); later calls only change the level.
pub fn init(level: LevelFilter) {
    init_with(level, Format::Text);
}

/// Installs the logger once with a format; later calls change the level and format.
pub fn init_with(level: LevelFilter, format: Format) {
    FORMAT.store(u8::from(format == Format::Json), Ordering::Relaxed);
    JOURNAL.store(u8::from(stderr_is_journal()), Ordering::Relaxed);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Whether stderr is the journal stream systemd named in `JOURNAL_STREAM`
/// (`device:inode`): a redirected stderr inherits the variable but not the stream.
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var("JOURNAL_STREAM").ok() else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // st_dev / st_ino are not u64 on every target.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::fstat(std::io::stderr())
        .is_ok_and(|st| st.st_dev as u64 == dev && st.st_ino as u64 == ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_line() {
        let line = render(
            Level::Info,
            "t",
            "client \"a\nINFO forged\0\x1b[31m\u{2028}\"",
            Format::Text,
            false,
        );
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.ends_with('\n'));
        assert!(!line.contains('\0') && !line.contains('\x1b') && !line.contains('\u{2028}'));
        assert!(
            line.contains("a\\nINFO forged\\0\\x1b[31m\\u{2028}"),
            "{line}"
        );
        let json = render(Level::Warn, "t", "a\nb\0", Format::Json, true);
        assert!(json.starts_with("<4>{"), "{json}");
        assert_eq!(json.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(&json[3..]).unwrap();
        assert_eq!(v["msg"], "a\nb\0");
        assert_eq!(v["level"], "warn");
    }

    #[test]
    fn random_messages_make_exactly_one_clean_line() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2_000 {
            let bytes: Vec<u8> = (0..(x % 200) as usize)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> (i % 8)) as u8
                })
                .collect();
            let msg = String::from_utf8_lossy(&bytes);
            for format in [Format::Text, Format::Json] {
                let line = render(Level::Info, "t", &msg, format, false);
                let body = line.strip_suffix('\n').unwrap();
                assert!(
                    !body
                        .chars()
                        .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}'),
                    "{line:?}"
                );
            }
        }
    }

    #[test]
    fn long_messages_and_peer_strings_are_bounded() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let line = render(Level::Info, "t", &long, Format::Text, false);
        assert!(line.len() < MAX_MESSAGE_BYTES + 100);
        assert!(line.contains("bytes, cut"));
        let p = peer(&"x".repeat(500)).to_string();
        assert!(p.len() < MAX_PEER_CHARS + 30, "{p}");
        assert!(p.ends_with("(500 chars)"));
        assert_eq!(peer("phone").to_string(), "\"phone\"");
    }
}
