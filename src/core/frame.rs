//! Inbound line parsing and outbound `rseq` stamping.
//!
//! Owns the byte-level rules: how a device or agent message is split into
//! JSON-RPC lines, the nesting and size bounds checked before parsing, how a
//! line is classified (request, notification, response), and how `"rseq":N` is
//! spliced in as the first key without re-serialising. Performs no I/O.

use crate::core::rpc::{RpcError, code};
use serde_json::{Map, Value};
use std::fmt;

/// Bounds checked on every inbound line before it is parsed.
#[derive(Debug, Clone, Copy)]
pub struct LineLimits {
    /// Longest accepted line, in bytes.
    pub max_line_bytes: usize,
    /// Deepest accepted nesting of arrays and objects.
    pub max_depth: usize,
}

impl Default for LineLimits {
    fn default() -> Self {
        LineLimits {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Default bound on one JSON-RPC line from a device.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;
/// Default bound on JSON nesting depth.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Why a line was not accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameError {
    TooLong {
        size: usize,
        max: usize,
    },
    TooDeep {
        max: usize,
    },
    NotJson {
        reason: String,
    },
    NotObject,
    /// An object that is neither a request, a notification nor a response.
    Invalid {
        reason: &'static str,
        id: Value,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLong { size, max } => write!(
                f,
                "line of {size} bytes exceeds the limit of {max} bytes; split the content or raise the limit"
            ),
            FrameError::TooDeep { max } => write!(
                f,
                "JSON nested deeper than {max} levels; flatten the message"
            ),
            FrameError::NotJson { reason } => write!(
                f,
                "not valid JSON ({reason}); send one JSON-RPC object per line"
            ),
            FrameError::NotObject => write!(f, "a JSON-RPC message must be a JSON object"),
            FrameError::Invalid { reason, .. } => write!(f, "invalid JSON-RPC message: {reason}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl FrameError {
    /// The JSON-RPC error a device sees, and the id to answer (null when unknown).
    pub fn to_rpc(&self) -> (Value, RpcError) {
        let c = match self {
            FrameError::NotJson { .. } => code::PARSE_ERROR,
            _ => code::INVALID_REQUEST,
        };
        let id = match self {
            FrameError::Invalid { id, .. } => id.clone(),
            _ => Value::Null,
        };
        (id, RpcError::new(c, self.to_string()))
    }
}

/// One classified JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    Notification {
        method: String,
        params: Value,
    },
    Response {
        id: Value,
        outcome: Result<Value, Value>,
    },
}

impl Message {
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            Message::Response { .. } => None,
        }
    }
}

/// Splits a text message into its non-blank lines (LF separated, CR trimmed).
pub fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| l.iter().any(|b| !b.is_ascii_whitespace()))
}

/// Checks nesting depth without parsing: counts `[`/`{` outside strings.
pub fn check_depth(line: &[u8], max: usize) -> Result<(), FrameError> {
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    for &b in line {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(FrameError::TooDeep { max });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses and classifies one line. Never panics, whatever the bytes.
pub fn parse_line(line: &[u8], limits: LineLimits) -> Result<Message, FrameError> {
    if line.len() > limits.max_line_bytes {
        return Err(FrameError::TooLong {
            size: line.len(),
            max: limits.max_line_bytes,
        });
    }
    if limits.max_depth < SERDE_RECURSION_LIMIT {
        check_depth(line, limits.max_depth)?;
    }
    let value: Value = serde_json::from_slice(line).map_err(|e| FrameError::NotJson {
        reason: e.to_string(),
    })?;
    classify(value)
}

/// Classifies a parsed value as a JSON-RPC message.
pub fn classify(value: Value) -> Result<Message, FrameError> {
    let Value::Object(mut obj) = value else {
        return Err(FrameError::NotObject);
    };
    let id = obj.remove("id");
    if let Some(id) = &id
        && !(id.is_string() || id.is_number() || id.is_null())
    {
        return Err(FrameError::Invalid {
            reason: "id must be a string or a number",
            id: Value::Null,
        });
    }
    match obj.remove("method") {
        Some(Value::String(method)) => {
            let params = obj.remove("params").unwrap_or(Value::Null);
            if !(params.is_object() || params.is_array() || params.is_null()) {
                return Err(FrameError::Invalid {
                    reason: "params must be an object or an array",
                    id: id.unwrap_or(Value::Null),
                });
            }
            Ok(match id {
                Some(id) => Message::Request { id, method, params },
                None => Message::Notification { method, params },
            })
        }
        Some(_) => Err(FrameError::Invalid {
            reason: "method must be a string",
            id: id.unwrap_or(Value::Null),
        }),
        None => {
            let Some(id) = id else {
                return Err(FrameError::Invalid {
                    reason: "a message needs a method (request) or an id with result or error (response)",
                    id: Value::Null,
                });
            };
            if let Some(err) = obj.remove("error") {
                Ok(Message::Response {
                    id,
                    outcome: Err(err),
                })
            } else if let Some(result) = obj.remove("result") {
                Ok(Message::Response {
                    id,
                    outcome: Ok(result),
                })
            } else {
                Err(FrameError::Invalid {
                    reason: "a message needs a method (request) or result/error (response)",
                    id,
                })
            }
        }
    }
}

/// Builds a message line from its parts (used when a message must be rewritten).
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut obj = Map::new();
    obj.insert("jsonrpc".into(), Value::from("2.0"));
    match msg {
        Message::Request { id, method, params } => {
            obj.insert("id".into(), id.clone());
            obj.insert("method".into(), Value::from(method.as_str()));
            if !params.is_null() {
                obj.insert("params".into(), params.clone());
            }
        }
        Message::Notification { method, params } => {
            obj.insert("method".into(), Value::from(method.as_str()));
            if !params.is_null() {
                obj.insert("params".into(), params.clone());
            }
        }
        Message::Response { id, outcome } => {
            obj.insert("id".into(), id.clone());
            match outcome {
                Ok(r) => obj.insert("result".into(), r.clone()),
                Err(e) => obj.insert("error".into(), e.clone()),
            };
        }
    }
    serde_json::to_vec(&Value::Object(obj)).unwrap_or_default()
}

fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// Appends `n` in decimal without an intermediate allocation.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// serde_json refuses nesting deeper than this by itself.
const SERDE_RECURSION_LIMIT: usize = 128;

/// Splices `"rseq":seq` in as the first key of a JSON object line.
///
/// Returns `None` when the line does not start (after whitespace) with `{`.
/// Leading whitespace is dropped; the rest of the bytes are kept as they are.
pub fn stamp_rseq(line: &[u8], seq: u64) -> Option<Vec<u8>> {
    let start = line.iter().position(|b| !b.is_ascii_whitespace())?;
    if line[start] != b'{' {
        return None;
    }
    let body = &line[start + 1..];
    let first = body.iter().position(|b| !b.is_ascii_whitespace());
    let empty = matches!(first, Some(i) if body[i] == b'}');
    let mut out = Vec::with_capacity(body.len() + 9 + decimal_len(seq));
    out.extend_from_slice(b"{\"rseq\":");
    push_decimal(&mut out, seq);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(body);
    while out.last().is_some_and(|b| b.is_ascii_whitespace()) {
        out.pop();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> Result<Message, FrameError> {
        parse_line(s.as_bytes(), LineLimits::default())
    }

    #[test]
    fn classifies_requests_notifications_responses() {
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":"c:1","method":"x","params":{}}"#),
            Ok(Message::Request {
                id: json!("c:1"),
                method: "x".into(),
                params: json!({})
            })
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","method":"n"}"#),
            Ok(Message::Notification {
                method: "n".into(),
                params: Value::Null
            })
        );
        assert_eq!(
            parse(r#"{"id":3,"result":null}"#),
            Ok(Message::Response {
                id: json!(3),
                outcome: Ok(Value::Null)
            })
        );
        assert_eq!(
            parse(r#"{"id":3,"error":{"code":1}}"#),
            Ok(Message::Response {
                id: json!(3),
                outcome: Err(json!({"code":1}))
            })
        );
    }

    #[test]
    fn rejects_bad_messages_with_codes() {
        assert_eq!(
            parse("nope").unwrap_err().to_rpc().1.code,
            code::PARSE_ERROR
        );
        assert_eq!(parse("[1]").unwrap_err(), FrameError::NotObject);
        assert_eq!(parse(r#"{"id":1}"#).unwrap_err().to_rpc().0, json!(1));
        assert_eq!(
            parse(r#"{"id":{},"method":"x"}"#)
                .unwrap_err()
                .to_rpc()
                .1
                .code,
            code::INVALID_REQUEST
        );
        assert!(matches!(
            parse(r#"{"method":"x","params":3}"#),
            Err(FrameError::Invalid { .. })
        ));
    }

    #[test]
    fn bounds_length_and_depth() {
        let limits = LineLimits {
            max_line_bytes: 10,
            max_depth: 3,
        };
        assert_eq!(
            parse_line(b"{\"method\":\"xx\"}", limits),
            Err(FrameError::TooLong { size: 15, max: 10 })
        );
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(
            parse_line(deep.as_bytes(), LineLimits::default()),
            Err(FrameError::TooDeep {
                max: DEFAULT_MAX_DEPTH
            })
        );
        // brackets inside strings do not count
        assert!(check_depth(br#"{"a":"[[[[[[[[\"[[["}"#, 2).is_ok());
    }

    #[test]
    fn splits_lines() {
        let got: Vec<&[u8]> = lines(b"a\r\n\n  \nb\n").collect();
        assert_eq!(got, vec![&b"a"[..], &b"b"[..]]);
    }

    #[test]
    fn stamps_first_key() {
        assert_eq!(
            stamp_rseq(br#"{"jsonrpc":"2.0"}"#, 7).unwrap(),
            br#"{"rseq":7,"jsonrpc":"2.0"}"#
        );
        assert_eq!(
            stamp_rseq(b"  \n{ \"a\":1}\n", 1).unwrap(),
            br#"{"rseq":1, "a":1}"#
        );
        assert_eq!(stamp_rseq(b"{}", 2).unwrap(), br#"{"rseq":2}"#);
        assert_eq!(stamp_rseq(b"{ }", 2).unwrap(), br#"{"rseq":2 }"#);
        assert_eq!(stamp_rseq(b"[1]", 2), None);
        assert_eq!(stamp_rseq(b"", 2), None);
        let v: Value =
            serde_json::from_slice(&stamp_rseq(br#"{"x":[1,{"y":2}]}"#, 99).unwrap()).unwrap();
        assert_eq!(v, json!({"rseq":99,"x":[1,{"y":2}]}));
    }

    #[test]
    fn fuzz_harness_runs_the_committed_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/inbound_line");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            fuzz_line(&std::fs::read(e.path()).unwrap());
            n += 1;
        }
        assert!(n >= 3);
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small deterministic xorshift stands in for a fuzzer in the suite.
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        let alphabet = b"{}[]\":,\\ abc0123456789-.etrufnl\n\xff\xc3";
        for _ in 0..20_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let len = (s % 48) as usize;
            let mut buf = Vec::with_capacity(len);
            let mut t = s;
            for _ in 0..len {
                t = t
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                buf.push(alphabet[(t >> 33) as usize % alphabet.len()]);
            }
            let _ = parse_line(
                &buf,
                LineLimits {
                    max_line_bytes: 40,
                    max_depth: 4,
                },
            );
            if let Some(out) = stamp_rseq(&buf, s) {
                assert!(out.starts_with(b"{\"rseq\":"));
            }
        }
    }
}

/// The `rseq` of a stamped frame (`{"rseq":N,...`), read from its first bytes.
pub fn read_rseq(frame: &[u8]) -> Option<u64> {
    let rest = frame.strip_prefix(b"{\"rseq\":")?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod rseq_tests {
    use super::*;

    #[test]
    fn reads_back_what_was_stamped() {
        for n in [0u64, 1, 42, u64::MAX] {
            assert_eq!(read_rseq(&stamp_rseq(b"{\"a\":1}", n).unwrap()), Some(n));
        }
        assert_eq!(read_rseq(b"{\"rseq\":}"), None);
        assert_eq!(read_rseq(b"{\"id\":1}"), None);
        assert_eq!(read_rseq(b"{\"rseq\":12"), None);
    }
}

/// Fuzz harness: parse, classify, stamp and read back arbitrary bytes. Never
/// panics; asserts the stamper's invariants.
pub fn fuzz_line(data: &[u8]) {
    let _ = parse_line(
        data,
        LineLimits {
            max_line_bytes: 1 << 16,
            max_depth: 32,
        },
    );
    for line in lines(data) {
        let _ = parse_line(line, LineLimits::default());
    }
    let seq = data.len() as u64;
    if let Some(stamped) = stamp_rseq(data, seq) {
        assert_eq!(read_rseq(&stamped), Some(seq));
        // Stamping a valid object yields a valid object with rseq first.
        if let Ok(serde_json::Value::Object(orig)) =
            serde_json::from_slice::<serde_json::Value>(data)
            && !orig.contains_key("rseq")
        {
            let v: serde_json::Value =
                serde_json::from_slice(&stamped).expect("stamped object stays valid JSON");
            assert_eq!(v["rseq"], seq);
        }
    }
}

/// Fast path for the hottest agent line: a `session/update` notification.
/// Returns its `params.sessionId` without building a JSON tree (the line is
/// still fully validated); `None` for anything else, which then takes
/// [`parse_line`].
pub fn probe_update(line: &[u8]) -> Option<String> {
    use serde::Deserialize;
    use serde::de::IgnoredAny;
    use std::borrow::Cow;
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow, rename = "sessionId")]
        session_id: Option<Cow<'a, str>>,
    }
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        method: Option<Cow<'a, str>>,
        id: Option<IgnoredAny>,
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    let p: Probe<'_> = serde_json::from_slice(line).ok()?;
    if p.id.is_some() || p.method.as_deref() != Some("session/update") {
        return None;
    }
    p.params?.session_id.map(Cow::into_owned)
}

#[cfg(test)]
mod probe_tests {
    use super::*;

    #[test]
    fn probes_only_session_updates() {
        let l = br#"{"jsonrpc":"2.0","method":"session/update","params":{"update":{"x":[1,{"y":"z"}]},"sessionId":"s-1"}}"#;
        assert_eq!(probe_update(l).as_deref(), Some("s-1"));
        assert_eq!(
            probe_update(
                br#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"a\"b"}}"#
            )
            .as_deref(),
            Some("a\"b")
        );
        assert_eq!(
            probe_update(br#"{"id":1,"method":"session/update","params":{"sessionId":"s"}}"#),
            None
        );
        assert_eq!(
            probe_update(br#"{"method":"session/other","params":{"sessionId":"s"}}"#),
            None
        );
        assert_eq!(
            probe_update(br#"{"method":"session/update","params":{}}"#),
            None
        );
        assert_eq!(
            probe_update(br#"{"method":"session/update","params":{"sessionId":"s"}"#),
            None
        );
        assert_eq!(probe_update(b"not json"), None);
    }
}
