//! The workspace: one directory jail shared by devices and agents, the agent's
//! `fs/*` and `terminal/*` client methods, and (later) device queries and edits.
//! Runs on the executor thread but never blocks it: file I/O goes through
//! `smol::unblock`, commands through `smol::process`.

use crate::core::rpc::RpcError;
use serde_json::Value;
use std::path::Path;

/// Entry point the shell calls for every workspace job.
pub struct Workspace {}

impl Workspace {
    pub fn new(_root: &Path) -> Result<Workspace, std::io::Error> {
        Ok(Workspace {})
    }

    /// Runs one method (`fs/read_text_file`, `terminal/create`, ...) and returns
    /// its JSON-RPC result or error.
    pub async fn call(&self, method: &str, _params: Value) -> Result<Value, RpcError> {
        Err(RpcError::method_not_found(method))
    }
}
