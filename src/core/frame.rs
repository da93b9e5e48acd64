//! Inbound line parsing and outbound `rseq` stamping.
//!
//! Owns the byte-level rules: how a device or agent message is split into
//! JSON-RPC lines, the nesting and size bounds checked before parsing, how a
//! line is classified (request, notification, response), and how `"rseq":N` is
//! spliced in as the first key without re-serialising. Performs no I/O.

use crate::core::rpc::{RpcError, code};
use serde_json::{Map, Value};
use std::borrow::Cow;
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
    // JSON-RPC answers with the same id; a number that is not a 64-bit
    // integer (1e30, 2^100, 1.5) would come back rewritten, so it is refused.
    if id.as_ref().is_some_and(Value::is_f64) {
        return Err(FrameError::Invalid {
            reason: "id must be a string or an integer of at most 64 bits, so it can be echoed exactly",
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
    out.extend_from_slice(RSEQ_PREFIX);
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

/// How every stamped frame starts: the relay's `rseq` is its first key.
pub const RSEQ_PREFIX: &[u8] = b"{\"rseq\":";

/// The one rseq parser: a stamped frame's number and the bytes after it
/// (`,...}` or `}`); `None` when the frame is not stamped.
pub fn split_rseq(frame: &[u8]) -> Option<(u64, &[u8])> {
    let rest = frame.strip_prefix(RSEQ_PREFIX)?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    let n = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    Some((n, &rest[end..]))
}

/// The `rseq` of a stamped frame (`{"rseq":N,...`), read from its first bytes.
pub fn read_rseq(frame: &[u8]) -> Option<u64> {
    split_rseq(frame).map(|(n, _)| n)
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
    if let Some(sid) = scan_update(data) {
        assert_eq!(serde_probe_update(data).as_deref(), Some(sid));
    }
    if scan_json(data) {
        assert!(serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok());
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
///
/// The common shape (plain keys, no `id`, no escapes in the method or the
/// session id) is read by [`scan_update`], one vectorised pass that borrows
/// the id from the line; anything else goes through serde.
pub fn probe_update(line: &[u8]) -> Option<Cow<'_, str>> {
    match scan_update(line) {
        Some(sid) => Some(Cow::Borrowed(sid)),
        None => serde_probe_update(line),
    }
}

/// [`probe_update`] through serde: the reference the fast scanner answers for.
fn serde_probe_update(line: &[u8]) -> Option<Cow<'_, str>> {
    use serde::Deserialize;
    use serde::de::IgnoredAny;
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
    p.params?.session_id
}

/// The `params.sessionId` of a `session/update` notification in its common
/// shape, checking the whole line as `serde_json` would. `None` means "not
/// this shape", never "not JSON": the caller then asks serde.
///
/// It answers `Some` only where serde's probe answers the same: the line is
/// one JSON object with nothing after it (serde's grammar: no trailing
/// commas, no leading zeros, no control bytes in strings, valid escapes);
/// its keys at the top and in `params` are ASCII without escapes and `method`,
/// `params` and `sessionId` appear once; there is no `id`; `method` is
/// `"session/update"` and `sessionId` a string without escapes.
pub fn scan_update(line: &[u8]) -> Option<&str> {
    let mut p = Scanner { s: line, i: 0 };
    p.ws();
    p.eat(b'{')?;
    p.ws();
    let mut method = false;
    let mut sid = None;
    loop {
        let key = p.plain_key()?;
        match key {
            b"id" => return None,
            b"method" => {
                if method {
                    return None;
                }
                p.eat(b'"')?;
                let (m, escaped) = p.string()?;
                if escaped || m != b"session/update" {
                    return None;
                }
                method = true;
            }
            b"params" => {
                if sid.is_some() {
                    return None;
                }
                sid = Some(p.params()?);
            }
            _ => p.value()?,
        }
        if p.close(b'}')? {
            break;
        }
    }
    p.ws();
    if !method || p.i != line.len() {
        return None;
    }
    sid
}

/// Whether `line` is one JSON value with only whitespace around it, checked
/// as `serde_json` checks a value it ignores. `false` means "not shown valid":
/// nesting past [`SCAN_DEPTH`] is left to serde, so a caller that needs the
/// exact answer asks serde after a `false`.
pub fn scan_json(line: &[u8]) -> bool {
    let mut p = Scanner { s: line, i: 0 };
    p.ws();
    if p.value().is_none() {
        return false;
    }
    p.ws();
    p.i == line.len()
}

/// A cursor over one line for [`scan_update`] and [`scan_json`]; every method
/// returns `None` where the bytes are not what serde would accept (or not the
/// common shape).
struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// JSON whitespace, as serde_json skips it.
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.i += 1)
    }

    /// After a member of an object (or an element of an array) closed by
    /// `end`: `true` at the end, `false` after a comma.
    fn close(&mut self, end: u8) -> Option<bool> {
        self.ws();
        let b = self.peek()?;
        self.i += 1;
        if b == end {
            return Some(true);
        }
        (b == b',').then(|| self.ws())?;
        Some(false)
    }

    /// The body of a string whose opening quote is eaten: its raw bytes and
    /// whether it holds escapes (checked as serde checks them).
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        let start = self.i;
        let mut escaped = false;
        loop {
            self.i += plain_run(&self.s[self.i..]);
            match self.peek()? {
                b'"' => {
                    let raw = &self.s[start..self.i];
                    self.i += 1;
                    return Some((raw, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match *self.s.get(self.i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                        b'u' => {
                            let hex = self.s.get(self.i + 2..self.i + 6)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.i += 6;
                        }
                        _ => return None,
                    }
                }
                _ => return None, // a control character
            }
        }
    }

    /// A key and its colon (any string, as in an ignored object).
    fn key(&mut self) -> Option<(&'a [u8], bool)> {
        self.eat(b'"')?;
        let key = self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(key)
    }

    /// A key serde would read as a field name: ASCII, no escapes.
    fn plain_key(&mut self) -> Option<&'a [u8]> {
        match self.key()? {
            (k, false) if k.is_ascii() => Some(k),
            _ => None,
        }
    }

    /// The `params` object: its `sessionId`, the rest checked and skipped.
    fn params(&mut self) -> Option<&'a str> {
        self.eat(b'{')?;
        self.ws();
        let mut sid = None;
        loop {
            if self.plain_key()? == b"sessionId" {
                if sid.is_some() {
                    return None;
                }
                self.eat(b'"')?;
                let (v, escaped) = self.string()?;
                if escaped {
                    return None;
                }
                sid = Some(std::str::from_utf8(v).ok()?);
            } else {
                self.value()?;
            }
            if self.close(b'}')? {
                return sid;
            }
        }
    }

    fn digits(&mut self) -> usize {
        let n = self.s[self.i..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        self.i += n;
        n
    }

    /// A number in JSON's grammar (serde's: one leading zero at most).
    fn number(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.').is_some() && self.digits() == 0 {
            return None;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        (self.s.get(self.i..self.i + word.len())? == word).then(|| self.i += word.len())
    }

    /// Skips one value of any kind, checking it as serde's `IgnoredAny`
    /// does; nesting past [`SCAN_DEPTH`] gives up (serde decides).
    fn value(&mut self) -> Option<()> {
        let mut objects = 0u64; // one bit per open container: 1 for an object
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                open @ (b'{' | b'[') => {
                    let object = open == b'{';
                    self.i += 1;
                    self.ws();
                    if self.eat(if object { b'}' } else { b']' }).is_none() {
                        if depth == SCAN_DEPTH {
                            return None;
                        }
                        objects = objects << 1 | object as u64;
                        depth += 1;
                        if object {
                            self.key()?;
                        }
                        continue;
                    }
                }
                b'"' => {
                    self.i += 1;
                    self.string()?;
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => self.number()?,
            }
            // A value ended: close containers until a comma opens the next one.
            loop {
                if depth == 0 {
                    return Some(());
                }
                let object = objects & 1 == 1;
                if !self.close(if object { b'}' } else { b']' })? {
                    if object {
                        self.key()?;
                    }
                    break;
                }
                objects >>= 1;
                depth -= 1;
            }
        }
    }
}

/// Nesting [`scan_update`] follows inside a value before leaving the line to serde.
const SCAN_DEPTH: usize = 64;

/// Whether a string byte needs a closer look: a quote, a backslash or a
/// control character. (Written with saturating and `min` steps, which the
/// compiler turns into a few vector instructions per block.)
#[inline]
fn is_special(b: u8) -> bool {
    b.saturating_sub(0x1f).min(b ^ b'"').min(b ^ b'\\') == 0
}

/// Bytes checked per step by the scans below: a branch-free test over a
/// fixed block compiles to a few vector instructions per block; the block
/// that holds a hit is then searched a word at a time.
const BLOCK: usize = 32;

/// A block as an array, so the compiler sees its length.
#[inline]
fn as_block(b: &[u8]) -> &[u8; BLOCK] {
    b.try_into().expect("chunks of BLOCK bytes")
}

const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const ONES: u64 = 0x0101_0101_0101_0101;

/// The high bit of each byte of `x` that is zero, and no other bit.
#[inline]
fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// The high bit of each byte of `x` that [`is_special`].
#[inline]
fn special_bytes(x: u64) -> u64 {
    zero_bytes(x & (ONES * 0xe0))
        | zero_bytes(x ^ (ONES * b'"' as u64))
        | zero_bytes(x ^ (ONES * b'\\' as u64))
}

/// The `k`th little-endian word of a block.
#[inline]
fn word(block: &[u8; BLOCK], k: usize) -> u64 {
    u64::from_le_bytes(block[k * 8..k * 8 + 8].try_into().expect("8 bytes"))
}

/// Offset of the first byte `hits` marks in a block that holds one.
#[inline]
fn first_hit(block: &[u8; BLOCK], hits: impl Fn(u64) -> u64) -> usize {
    (0..BLOCK / 8)
        .find_map(|k| {
            let m = hits(word(block, k));
            (m != 0).then(|| k * 8 + m.trailing_zeros() as usize / 8)
        })
        .unwrap_or(BLOCK)
}

/// Length of the run of ordinary string bytes at the start of `s`.
fn plain_run(s: &[u8]) -> usize {
    // Most strings (keys, ids, short values) end within a few words.
    let mut i = 0;
    while i < BLOCK {
        let Some(w) = s.get(i..i + 8) else { break };
        let m = special_bytes(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        if m != 0 {
            return i + m.trailing_zeros() as usize / 8;
        }
        i += 8;
    }
    for block in s[i..].chunks_exact(BLOCK).map(as_block) {
        if block.iter().fold(false, |a, &b| a | is_special(b)) {
            return i + first_hit(block, special_bytes);
        }
        i += BLOCK;
    }
    i + s[i..]
        .iter()
        .position(|&b| is_special(b))
        .unwrap_or(s.len() - i)
}

/// The first `needle` in `hay` (`memchr`, vectorised).
#[inline]
pub fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(needle, hay)
}

/// The last `needle` in `hay` (`memrchr`, vectorised).
#[inline]
pub fn rfind_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    memchr::memrchr(needle, hay)
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

    /// Valid `session/update` lines in shapes the fast scanner takes.
    const UPDATES: &[&[u8]] = &[
        br#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s-1","update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"hi \"there\" \u00e9 \\ \/ \b\f\n\r\t caf\u00E9"},"_meta":{"n":[1,-2.5e3,0,0.5,1E+2,2e-1,true,false,null,{},[],[[]],{"a":{}}]}}}}"#,
        b" { \"params\" : { \"update\" : { } , \"sessionId\" : \"x\" } ,\t\"method\" : \"session/update\" , \"jsonrpc\" : \"2.0\" } \r\n",
        "{\"method\":\"session/update\",\"params\":{\"sessionId\":\"caf\u{e9}\",\"update\":{\"text\":\"\u{1f600} \x7f\"}},\"x\":[-0,1.25,\"\"]}".as_bytes(),
        br#"{"method":"session/update","params":{"sessionId":"a","sessionIdx":1},"sessionId":"b"}"#,
    ];

    #[test]
    fn scanner_takes_the_common_shapes() {
        for line in UPDATES {
            let fast = scan_update(line);
            assert!(fast.is_some(), "{}", String::from_utf8_lossy(line));
            assert_eq!(serde_probe_update(line).as_deref(), fast);
        }
        let long = format!(
            r#"{{"jsonrpc":"2.0","method":"session/update","params":{{"sessionId":"s","update":{{"content":{{"text":"{}"}}}}}}}}"#,
            "the quick brown fox ".repeat(200)
        );
        assert_eq!(scan_update(long.as_bytes()), Some("s"));
    }

    #[test]
    fn scanner_leaves_the_rest_to_serde() {
        let not_fast: &[&[u8]] = &[
            br#"{"id":1,"method":"session/update","params":{"sessionId":"s"}}"#,
            br#"{"id":null,"method":"session/update","params":{"sessionId":"s"}}"#,
            br#"{"method":"session/update","method":"session/update","params":{"sessionId":"s"}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s"},"params":{"sessionId":"s"}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s","sessionId":"t"}}"#,
            br#"{"m\u0065thod":"session/update","params":{"sessionId":"s"}}"#,
            br#"{"method":"session\/update","params":{"sessionId":"s"}}"#,
            br#"{"method":"session/update","params":{"session\u0049d":"s"}}"#,
            br#"{"method":"session/update","params":{"sessionId":"a\"b"}}"#,
            br#"{"method":"session/update","params":{"sessionId":null}}"#,
            br#"{"method":"session/update","params":["s"]}"#,
            br#"["session/update",null,{"sessionId":"s"}]"#,
            br#"{"method":"session/update"}"#,
            br#"{"method":"session/update","params":{}}"#,
            br#"{"method":"session/other","params":{"sessionId":"s"}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s"},}"#,
            br#"{"method":"session/update","params":{"sessionId":"s"}} x"#,
            br#"{"method":"session/update","params":{"sessionId":"s"}}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s","n":01}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s","n":1.}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s","n":-}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s","n":1e}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s","n":[1,]}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s","n":"\x"}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s","n":"\u12g4"}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s","n":tru}}"#,
            b"{\"method\":\"session/update\",\"params\":{\"sessionId\":\"s\",\"n\":\"\x01\"}}",
            b"{\"method\":\"session/update\",\"params\":{\"sessionId\":\"\xff\"}}",
            b"{\"method\":\"session/update\",\"params\":{\"sessionId\":\"s\",\"\xc3\xa9\":1}}",
            b"\xef\xbb\xbf{\"method\":\"session/update\",\"params\":{\"sessionId\":\"s\"}}",
            b"{\"method\":\"session/update\",\"params\":{\"sessionId\":\"s\"}}\x0b",
        ];
        for line in not_fast {
            assert_eq!(scan_update(line), None, "{}", String::from_utf8_lossy(line));
        }
        let deep = format!(
            r#"{{"method":"session/update","params":{{"sessionId":"s","u":{}1{}}}}}"#,
            "[".repeat(SCAN_DEPTH + 1),
            "]".repeat(SCAN_DEPTH + 1)
        );
        assert_eq!(scan_update(deep.as_bytes()), None);
        assert_eq!(probe_update(deep.as_bytes()).as_deref(), Some("s"));
        let ok = format!(
            r#"{{"method":"session/update","params":{{"sessionId":"s","u":{}1{}}}}}"#,
            "[".repeat(SCAN_DEPTH),
            "]".repeat(SCAN_DEPTH)
        );
        assert_eq!(scan_update(ok.as_bytes()), Some("s"));
    }

    /// Whatever the bytes, the scanner never answers where serde would not
    /// answer the same.
    #[test]
    fn scanner_agrees_with_serde_on_mutations() {
        let alphabet: &[u8] =
            b"{}[]\":,\\ /abdefilmnorstu0123456789-+.eEI\x00\x1f\x7f\xc3\xa9\xff\t\r\n";
        let mut s: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move |n: usize| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % n as u64) as usize
        };
        let mut fast = 0;
        for round in 0..40_000 {
            let mut line = UPDATES[round % UPDATES.len()].to_vec();
            for _ in 0..1 + next(3) {
                let at = next(line.len() + 1);
                match next(4) {
                    0 if at < line.len() => line[at] = alphabet[next(alphabet.len())],
                    1 if at < line.len() => {
                        line.remove(at);
                    }
                    2 => line.insert(at, alphabet[next(alphabet.len())]),
                    _ => {
                        let from = next(line.len());
                        let to = (from + next(12)).min(line.len());
                        let piece = line[from..to].to_vec();
                        line.splice(at..at, piece);
                    }
                }
            }
            if scan_json(&line) {
                assert!(
                    serde_json::from_slice::<serde::de::IgnoredAny>(&line).is_ok(),
                    "{}",
                    String::from_utf8_lossy(&line)
                );
            }
            if let Some(sid) = scan_update(&line) {
                fast += 1;
                assert_eq!(
                    serde_probe_update(&line).as_deref(),
                    Some(sid),
                    "{}",
                    String::from_utf8_lossy(&line)
                );
            }
        }
        assert!(fast > 1000, "only {fast} mutations took the fast path");
    }

    #[test]
    fn byte_search_matches_the_naive_one() {
        let bytes = b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\"\\\x00\x1f\x20\x7f\x80\xff\xe0\x01\x21\x23\x5b\x5d\x0a\x8a";
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..200 {
            for _ in 0..50 {
                let hay: Vec<u8> = (0..len)
                    .map(|_| {
                        s ^= s << 13;
                        s ^= s >> 7;
                        s ^= s << 17;
                        let r = (s >> 20) as usize;
                        if r.is_multiple_of(8) {
                            bytes[r / 8 % bytes.len()]
                        } else {
                            b'a'
                        }
                    })
                    .collect();
                for needle in [b'\n', b'"', 0x8a, 0] {
                    assert_eq!(
                        find_byte(needle, &hay),
                        hay.iter().position(|&b| b == needle)
                    );
                    assert_eq!(
                        rfind_byte(needle, &hay),
                        hay.iter().rposition(|&b| b == needle)
                    );
                }
                let plain = hay.iter().position(|&b| is_special(b)).unwrap_or(hay.len());
                assert_eq!(plain_run(&hay), plain, "{hay:?}");
            }
        }
    }
}

#[cfg(test)]
mod split_tests {
    use super::*;

    #[test]
    fn splits_the_number_from_the_rest() {
        assert_eq!(
            split_rseq(b"{\"rseq\":12,\"a\":1}"),
            Some((12, &b",\"a\":1}"[..]))
        );
        assert_eq!(split_rseq(b"{\"rseq\":3}"), Some((3, &b"}"[..])));
        assert_eq!(split_rseq(b"{\"rseq\":99999999999999999999999}"), None);
        assert_eq!(split_rseq(b"{\"a\":1}"), None);
    }
}
