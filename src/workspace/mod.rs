//! The workspace: one directory jail shared by devices and agents, and the
//! agent's `fs/*` and `terminal/*` client methods answered inside it.
//! Runs on the executor thread but never blocks it: file I/O goes through
//! `smol::unblock`, commands through `smol::process`. It never touches a path
//! the jail has not resolved, and never logs file contents.

pub mod agent_fs;
pub mod agent_terminal;
pub mod jail;

use crate::core::rpc::RpcError;
use agent_terminal::Terminals;
use jail::Jail;
use serde_json::Value;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a workspace could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum WorkspaceError {
    /// The root is missing, unreadable, or not a directory.
    Root { path: PathBuf, source: io::Error },
}

impl fmt::Display for WorkspaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkspaceError::Root { path, source } => write!(
                f,
                "cannot use {} as the workspace: {}; pass an existing directory",
                path.display(),
                jail::lower_io(source)
            ),
        }
    }
}

impl std::error::Error for WorkspaceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WorkspaceError::Root { source, .. } => Some(source),
        }
    }
}

/// Entry point the shell calls for every workspace job. Shared as
/// `Rc<Workspace>` by concurrent tasks on the one executor thread.
pub struct Workspace {
    jail: Jail,
    terminals: Terminals,
}

impl Workspace {
    /// Opens the workspace at `root` (canonicalized; must be a directory).
    pub fn new(root: &Path) -> Result<Workspace, WorkspaceError> {
        let jail = Jail::new(root).map_err(|source| WorkspaceError::Root {
            path: root.to_path_buf(),
            source,
        })?;
        Ok(Workspace {
            jail,
            terminals: Terminals::new(),
        })
    }

    /// The canonical workspace root.
    pub fn root(&self) -> &Path {
        self.jail.root()
    }

    /// The jail every path goes through.
    pub fn jail(&self) -> &Jail {
        &self.jail
    }

    /// Runs one agent client method (`fs/read_text_file`, `terminal/create`,
    /// ...) and returns its JSON-RPC result or error.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        match method {
            "fs/read_text_file" => agent_fs::read_text_file(&self.jail, &params).await,
            "fs/write_text_file" => agent_fs::write_text_file(&self.jail, &params).await,
            "terminal/create" => self.terminals.create(&self.jail, &params).await,
            "terminal/output" => self.terminals.output(&params),
            "terminal/wait_for_exit" => self.terminals.wait_for_exit(&params).await,
            "terminal/kill" => self.terminals.kill(&params).await,
            "terminal/release" => self.terminals.release(&params).await,
            _ => Err(RpcError::method_not_found(method)),
        }
    }

    /// Kills and reaps every command started through `terminal/create`.
    pub async fn shutdown(&self) {
        self.terminals.shutdown().await;
    }
}

/// The JSON-RPC error for a refused path: the caller's fault, except when the
/// filesystem itself failed.
fn jail_error(e: jail::JailError) -> RpcError {
    match e {
        jail::JailError::Io { .. } => RpcError::other(e.to_string()),
        _ => RpcError::invalid_params(e.to_string()),
    }
}

/// A required string member of `params`.
fn str_param<'a>(params: &'a Value, name: &str) -> Result<&'a str, RpcError> {
    match params.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(RpcError::invalid_params(format!(
            "\"{name}\" must be a string"
        ))),
        None => Err(RpcError::invalid_params(format!(
            "missing \"{name}\": add it to params"
        ))),
    }
}

/// An optional non-negative integer member of `params` (`null` means absent).
fn opt_u64_param(params: &Value, name: &str) -> Result<Option<u64>, RpcError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            RpcError::invalid_params(format!("\"{name}\" must be a non-negative integer"))
        }),
    }
}

/// Refuses params that are not an object.
fn object_params(params: &Value) -> Result<(), RpcError> {
    if params.is_object() {
        Ok(())
    } else {
        Err(RpcError::invalid_params("params must be an object"))
    }
}
