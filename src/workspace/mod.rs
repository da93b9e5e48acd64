//! The workspace: one directory jail shared by devices and agents, the
//! agent's `fs/*` and `terminal/*` client methods answered inside it, and the
//! devices' `_relay/fs/*`, `_relay/git/*` queries and `_relay/apply_edit`.
//! Runs on the executor thread but never blocks it: file I/O goes through
//! `smol::unblock`, commands through `smol::process`. It never touches a path
//! the jail has not resolved, and never logs file contents.

pub mod agent_fs;
pub mod agent_terminal;
pub mod edit;
pub mod git;
pub mod jail;
pub mod read;
pub mod sha256;
pub mod tree;

use crate::core::job::{Job, JobKind};
use crate::core::rpc::RpcError;
use agent_terminal::AgentTerminals;
use jail::Jail;
use serde_json::{Value, json};
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// How long the startup probe waits for `git --version`.
const GIT_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

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
    terminals: AgentTerminals,
    git: GitProbe,
}

/// Whether `git` works, as far as is known: an executable on `PATH` at
/// startup, then whether it answered `git --version` (probed on its own
/// thread, so a hung `git` never delays startup).
struct GitProbe {
    on_path: bool,
    /// 0 while the probe runs, 1 when git answered, 2 when it did not.
    answered: Arc<AtomicU8>,
}

impl GitProbe {
    fn start() -> GitProbe {
        let on_path = git::on_path();
        let answered = Arc::new(AtomicU8::new(if on_path { 0 } else { 2 }));
        if on_path {
            let slot = answered.clone();
            let spawned = std::thread::Builder::new()
                .name("git-probe".to_owned())
                .spawn(move || {
                    let ok = git::probe_blocking(GIT_PROBE_TIMEOUT);
                    slot.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
                    if !ok {
                        log::warn!(
                            "git did not answer `git --version` within {}s; git queries may fail",
                            GIT_PROBE_TIMEOUT.as_secs()
                        );
                    }
                });
            if spawned.is_err() {
                answered.store(2, Ordering::Relaxed);
            }
        }
        GitProbe { on_path, answered }
    }

    fn works(&self) -> bool {
        match self.answered.load(Ordering::Relaxed) {
            0 => self.on_path,
            n => n == 1,
        }
    }
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
            terminals: AgentTerminals::new(),
            git: GitProbe::start(),
        })
    }

    /// What the workspace offers devices, for `_meta.relay.workspace` in
    /// `initialize`: `{fs: {tree, read}, git, applyEdit}`.
    pub fn capabilities(&self) -> Value {
        json!({
            "fs": { "tree": true, "read": true },
            "git": self.git.works(),
            "applyEdit": true,
        })
    }

    /// The canonical workspace root.
    pub fn root(&self) -> &Path {
        self.jail.root()
    }

    /// The jail every path goes through.
    /// Live output of agent terminals goes to `tap` from now on.
    pub fn tap_agent_terminals(&self, tap: agent_terminal::TerminalTap) {
        self.terminals.set_tap(tap);
    }

    pub fn jail(&self) -> &Jail {
        &self.jail
    }

    /// Runs one workspace method — an agent's client method
    /// (`fs/read_text_file`, `terminal/create`, ...) or a device's
    /// (`_relay/fs/tree`, `_relay/git/status`, `_relay/apply_edit`, ...) — and
    /// returns its JSON-RPC result or error. Safe to drop at any point: a
    /// dropped git query kills its `git`.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        match JobKind::from_method(method) {
            Some(kind) => {
                let project = Default::default();
                self.run(Job {
                    kind,
                    params,
                    project,
                })
                .await
            }
            None => Err(RpcError::method_not_found(method)),
        }
    }

    /// Runs one job the router handed out.
    pub async fn run(&self, job: Job) -> Result<Value, RpcError> {
        let params = job.params;
        match job.kind {
            JobKind::FsTree => tree::tree(&self.jail, &params).await,
            JobKind::FsRead => read::read(&self.jail, &params).await,
            JobKind::GitStatus => git::status(self.jail.root()).await,
            JobKind::GitDiff => self.git_diff(&params).await,
            JobKind::ApplyEdit => edit::apply_edit(&self.jail, &params).await,
            JobKind::ReadTextFile => agent_fs::read_text_file(&self.jail, &params).await,
            JobKind::WriteTextFile => agent_fs::write_text_file(&self.jail, &params).await,
            JobKind::TerminalCreate => self.terminals.create(&self.jail, &params).await,
            JobKind::TerminalOutput => self.terminals.output(&params),
            JobKind::TerminalWaitForExit => self.terminals.wait_for_exit(&params).await,
            JobKind::TerminalKill => self.terminals.kill(&params).await,
            JobKind::TerminalRelease => self.terminals.release(&params).await,
            JobKind::Projects => Err(RpcError::other(
                "_relay/projects spans every project; the relay answers it, not one workspace",
            )),
        }
    }

    /// One row of `_relay/projects`: `{name, path, branch, dirty}`; `branch`
    /// and `dirty` are null when the project is not a git checkout (or git
    /// does not answer).
    pub async fn project_row(&self, name: &str) -> Value {
        let (branch, dirty) = match git::status(self.root()).await {
            Ok(v) => (
                v["branch"].clone(),
                json!(v["entries"].as_array().is_some_and(|e| !e.is_empty())),
            ),
            Err(_) => (Value::Null, Value::Null),
        };
        json!({
            "name": name,
            "path": self.root().display().to_string(),
            "branch": branch,
            "dirty": dirty,
        })
    }

    /// `_relay/git/diff {path?, staged?}` → `{diff, truncated}`.
    async fn git_diff(&self, params: &Value) -> Result<Value, RpcError> {
        if !(params.is_object() || params.is_null()) {
            return Err(RpcError::invalid_params("params must be an object"));
        }
        let staged = match params.get("staged") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(RpcError::invalid_params("\"staged\" must be true or false")),
        };
        let rel = match params.get("path") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) => {
                let (jail, p) = (self.jail.clone(), p.clone());
                let resolved = smol::unblock(move || jail.resolve(&p)).await;
                Some(rel_os(self.root(), &resolved.map_err(jail_error)?))
            }
            Some(_) => return Err(RpcError::invalid_params("\"path\" must be a string")),
        };
        git::diff(self.root(), rel.as_deref(), staged).await
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

/// `resolved` (inside the root) as a workspace-relative path with `/`
/// separators; the root itself is `"."`.
fn rel_path(root: &Path, resolved: &Path) -> String {
    match resolved.strip_prefix(root) {
        Ok(p) if !p.as_os_str().is_empty() => p.to_string_lossy().into_owned(),
        _ => ".".to_owned(),
    }
}

/// Like [`rel_path`] but keeps non-UTF-8 names intact (for `git` pathspecs).
fn rel_os(root: &Path, resolved: &Path) -> OsString {
    match resolved.strip_prefix(root) {
        Ok(p) if !p.as_os_str().is_empty() => p.as_os_str().to_owned(),
        _ => OsString::from("."),
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

/// `_relay/projects` → `{projects: [{name, path, branch, dirty}]}`, the
/// default project first.
pub async fn projects(all: &[(String, std::rc::Rc<Workspace>)]) -> Value {
    let mut rows = Vec::with_capacity(all.len());
    for (name, ws) in all {
        rows.push(ws.project_row(name).await);
    }
    json!({ "projects": rows })
}
