//! Inbound lines: splitting a device or agent message into JSON-RPC lines,
//! the size and nesting bounds checked before parsing, and classifying a
//! line as a request, a notification or a response. Performs no I/O.

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

/// serde_json refuses nesting deeper than this by itself.
const SERDE_RECURSION_LIMIT: usize = 128;
