//! A minimal `log` backend: one line per record on stderr, level from
//! `--log` or `RUST_LOG` (a bare level such as `info` or `debug`).
//!
//! Every message is escaped as a whole before it is written: control
//! characters (newline, NUL, escape, ...) become `\n`, `\0`, `\x1b` and a
//! backslash becomes `\\`, so a peer-supplied string can never forge a line
//! or put raw bytes in the log, and each line reads back as exactly one
//! message. Call sites bound peer strings with [`peer`]. A text line is
//! `LEVEL TIMESTAMP target: message` (RFC 3339 UTC, milliseconds); under
//! systemd (stderr is the stream `JOURNAL_STREAM` names) it carries a `<N>`
//! syslog priority prefix instead of the timestamp, which journald adds;
//! `--log-format json` writes one JSON object per line with a `ts` field.

use crate::core::router::iso8601;
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
    /// `LEVEL TIMESTAMP target: message` (no timestamp under journald).
    Text,
    /// `{"ts":"...","level":"info","target":"...","msg":"..."}`.
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
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let line = render(
            now_ms,
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

/// One finished log line (with its newline) for a record logged at `now_ms`
/// (unix milliseconds).
pub fn render(
    now_ms: u64,
    level: Level,
    target: &str,
    msg: &str,
    format: Format,
    journal: bool,
) -> String {
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
            if journal {
                let _ = write!(out, "{name} {}: ", escape(target));
            } else {
                let _ = write!(out, "{name} {} {}: ", iso8601(now_ms), escape(target));
            }
            escape_into(&mut out, &msg);
        }
        Format::Json => {
            let v = serde_json::json!({
                "ts": iso8601(now_ms),
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

/// `s` with control characters written as escapes (`\n`, `\0`, `\x1b`,
/// `\u{2028}`) and a backslash as `\\`: one-to-one, so an escaped string reads
/// back as exactly one original.
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
            '\\' => out.push_str("\\\\"),
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
/// characters, quoted, the rest counted. Inside the quotes only `"` and `\`
/// are escaped (`\"`, `\\`), so the value cannot pass for the end of its
/// quotes; control characters are left to the line's own escaping (one pass,
/// so a newline in a client id reads `\n`, not `\\n`).
pub fn peer(s: &str) -> PeerText<'_> {
    PeerText(s)
}

/// See [`peer`].
pub struct PeerText<'a>(&'a str);

impl fmt::Display for PeerText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        f.write_char('"')?;
        let mut total = 0;
        for c in self.0.chars() {
            total += 1;
            if total > MAX_PEER_CHARS {
                continue;
            }
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')?;
        if total > MAX_PEER_CHARS {
            write!(f, "... ({total} chars)")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PeerText<'_> {
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

    /// 2026-12-02T01:27:09.042Z in unix milliseconds.
    const T0: u64 = 1_796_174_829_042;

    #[test]
    fn text_lines_carry_a_timestamp_unless_journald_adds_one() {
        let line = render(T0, Level::Warn, "relay", "hi", Format::Text, false);
        assert_eq!(line, "WARN  2026-12-02T01:27:09.042Z relay: hi\n");
        let line = render(T0, Level::Warn, "relay", "hi", Format::Text, true);
        assert_eq!(line, "<4>WARN  relay: hi\n");
        let json = render(T0, Level::Info, "relay", "hi", Format::Json, false);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["ts"], "2026-12-02T01:27:09.042Z");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        // A leap day.
        assert_eq!(iso8601(951_782_400_999), "2000-02-29T00:00:00.999Z");
    }

    #[test]
    fn a_backslash_is_escaped_so_escaping_is_one_to_one() {
        // A literal backslash-n and a newline, in a peer string and bare.
        for (a, b) in [("a\\nb", "a\nb"), ("x\\0", "x\0"), ("\\\\", "\\")] {
            assert_ne!(escape(a), escape(b), "{a:?} and {b:?} read the same");
            let (pa, pb) = (peer(a).to_string(), peer(b).to_string());
            let la = render(
                T0,
                Level::Info,
                "t",
                &format!("id {pa}"),
                Format::Text,
                false,
            );
            let lb = render(
                T0,
                Level::Info,
                "t",
                &format!("id {pb}"),
                Format::Text,
                false,
            );
            assert_ne!(la, lb, "{a:?} and {b:?} log the same line");
        }
        assert_eq!(escape("C:\\dir"), "C:\\\\dir");
        assert_eq!(escape("a\nb"), "a\\nb");
        // The peer string's own backslash reaches the line escaped.
        let line = render(
            T0,
            Level::Info,
            "t",
            &peer("a\\b").to_string(),
            Format::Text,
            false,
        );
        assert!(line.ends_with(": \"a\\\\\\\\b\"\n"), "{line}");
    }

    #[test]
    fn control_characters_never_reach_the_line() {
        let line = render(
            T0,
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
        let json = render(T0, Level::Warn, "t", "a\nb\0", Format::Json, true);
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
                let line = render(T0, Level::Info, "t", &msg, format, false);
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
        let line = render(T0, Level::Info, "t", &long, Format::Text, false);
        assert!(line.len() < MAX_MESSAGE_BYTES + 100);
        assert!(line.contains("bytes, cut"));
        let p = peer(&"x".repeat(500)).to_string();
        assert!(p.len() < MAX_PEER_CHARS + 30, "{p}");
        assert!(p.ends_with("(500 chars)"));
        assert_eq!(peer("phone").to_string(), "\"phone\"");
    }
}
