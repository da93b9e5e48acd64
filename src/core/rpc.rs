//! JSON-RPC 2.0 vocabulary shared by every layer: error codes, the error type a
//! handler returns, and helpers that build response and notification lines.
//! Performs no I/O.

use serde_json::{Value, json};
use std::fmt;

/// Standard and relay-specific JSON-RPC error codes (DESIGN.md, Errors).
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL: i64 = -32603;
    pub const CANCELLED: i64 = -32800;
    pub const NOT_CONTROLLER: i64 = -32010;
    pub const BUSY: i64 = -32011;
    pub const LIMIT: i64 = -32012;
    /// The agent did not answer a forwarded request within `--agent-timeout`.
    pub const AGENT_TIMEOUT: i64 = -32013;
    pub const OTHER: i64 = -32000;
    /// ACP: a resource such as a file was not found (message "Resource not found").
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
}

/// An error answer: a code, a message that says what to do, optional data.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_PARAMS, message)
    }
    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            code::METHOD_NOT_FOUND,
            format!("method not found: {method}"),
        )
    }
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(code::OTHER, message)
    }
    /// The `error` member of a response.
    pub fn to_value(&self) -> Value {
        let mut v = json!({ "code": self.code, "message": self.message });
        if let Some(d) = &self.data {
            v["data"] = d.clone();
        }
        v
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for RpcError {}

/// A success response line (no trailing newline).
pub fn response(id: &Value, result: Value) -> Vec<u8> {
    let v = json!({ "jsonrpc": "2.0", "id": id, "result": result });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// An error response line; `id` is `null` when the request's id is unknown.
pub fn error_response(id: &Value, err: &RpcError) -> Vec<u8> {
    let v = json!({ "jsonrpc": "2.0", "id": id, "error": err.to_value() });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// A notification line.
pub fn notification(method: &str, params: Value) -> Vec<u8> {
    let v = json!({ "jsonrpc": "2.0", "method": method, "params": params });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// A request line.
pub fn request(id: &Value, method: &str, params: Value) -> Vec<u8> {
    let v = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
    serde_json::to_vec(&v).unwrap_or_default()
}
