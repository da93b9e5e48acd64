//! The jobs the core hands the shell ([`crate::core::router::Output::Job`]):
//! workspace work named by type, not by method string. Params go as the
//! requester sent them (the workspace checks them). Performs no I/O.

use serde_json::Value;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// `_relay/fs/tree`
    FsTree,
    /// `_relay/fs/read`
    FsRead,
    /// `_relay/git/status`
    GitStatus,
    /// `_relay/git/diff`
    GitDiff,
    /// `_relay/apply_edit`
    ApplyEdit,
    /// `_relay/projects`: every project with its git branch and state
    Projects,
    /// ACP `fs/read_text_file` (from an agent)
    ReadTextFile,
    /// ACP `fs/write_text_file`
    WriteTextFile,
    /// ACP `terminal/create`
    TerminalCreate,
    /// ACP `terminal/output`
    TerminalOutput,
    /// ACP `terminal/wait_for_exit`
    TerminalWaitForExit,
    /// ACP `terminal/kill`
    TerminalKill,
    /// ACP `terminal/release`
    TerminalRelease,
}

const METHODS: [(JobKind, &str); 13] = [
    (JobKind::FsTree, "_relay/fs/tree"),
    (JobKind::FsRead, "_relay/fs/read"),
    (JobKind::GitStatus, "_relay/git/status"),
    (JobKind::GitDiff, "_relay/git/diff"),
    (JobKind::ApplyEdit, "_relay/apply_edit"),
    (JobKind::Projects, "_relay/projects"),
    (JobKind::ReadTextFile, "fs/read_text_file"),
    (JobKind::WriteTextFile, "fs/write_text_file"),
    (JobKind::TerminalCreate, "terminal/create"),
    (JobKind::TerminalOutput, "terminal/output"),
    (JobKind::TerminalWaitForExit, "terminal/wait_for_exit"),
    (JobKind::TerminalKill, "terminal/kill"),
    (JobKind::TerminalRelease, "terminal/release"),
];

impl JobKind {
    /// The job a JSON-RPC method names, if it is one.
    pub fn from_method(method: &str) -> Option<JobKind> {
        METHODS.iter().find(|(_, m)| *m == method).map(|(k, _)| *k)
    }

    /// The method it answers (for logs and errors).
    pub fn method(self) -> &'static str {
        METHODS
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("?", |(_, m)| m)
    }

    /// A relay extension a device asks for (not an ACP client method an agent calls).
    pub fn for_device(self) -> bool {
        self.method().starts_with("_relay/")
    }
}

/// One job: what to do, with the requester's params, in which project (the
/// jail it runs in: the requesting session's or agent's own).
#[derive(Debug, Clone)]
pub struct Job {
    pub kind: JobKind,
    pub params: Value,
    pub project: crate::core::ids::ProjectId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_method() {
        for (k, m) in METHODS {
            assert_eq!(JobKind::from_method(m), Some(k));
            assert_eq!(k.method(), m);
        }
        assert_eq!(JobKind::from_method("fs/delete"), None);
        assert!(JobKind::FsTree.for_device() && !JobKind::TerminalKill.for_device());
    }
}
