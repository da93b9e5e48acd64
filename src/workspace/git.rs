//! The `git` program, run for device queries: `_relay/git/status`,
//! `_relay/git/diff`, and the ignored-path list `_relay/fs/tree` filters by.
//! Each run is a child process in its own process group with the workspace
//! root as its cwd, stdin closed and a byte bound on its output; dropping the
//! future (the shell's deadline) kills the whole group. Never parses
//! `.gitignore` itself, never writes to the repository (`GIT_OPTIONAL_LOCKS=0`).

use super::jail::lower_io;
use crate::core::rpc::RpcError;
use futures_lite::{AsyncRead, AsyncReadExt, future};
use serde_json::{Value, json};
use std::cell::Cell;
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;

/// Most bytes of `git diff` a device gets (4 MiB); the rest is cut.
pub const MAX_DIFF_BYTES: usize = 4 << 20;

/// Most bytes of `git status` output parsed (4 MiB); later entries are cut.
pub const MAX_STATUS_BYTES: usize = 4 << 20;

/// Most bytes of the ignored-path list read for a tree (4 MiB).
pub const MAX_IGNORED_BYTES: usize = 4 << 20;

/// Most bytes of a child's stderr kept for an error message; the rest is drained.
const MAX_STDERR_BYTES: usize = 16 << 10;

const READ_CHUNK: usize = 64 << 10;

/// Why a `git` run gave no usable answer.
#[derive(Debug)]
#[non_exhaustive]
pub enum GitError {
    /// No `git` program on the relay's `PATH`.
    Missing,
    /// The workspace is not inside a git work tree.
    NotARepo,
    /// `git` could not be started or its pipes failed.
    Io(io::Error),
    /// `git` exited unsuccessfully; `stderr` is its first line of complaint.
    Failed { status: String, stderr: String },
}

impl fmt::Display for GitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitError::Missing => write!(
                f,
                "git is not installed or not on the relay's PATH; install git and restart the relay"
            ),
            GitError::NotARepo => write!(
                f,
                "the workspace is not a git repository; run `git init` in it or serve a repository"
            ),
            GitError::Io(e) => write!(f, "cannot run git: {}; check the git install", lower_io(e)),
            GitError::Failed { status, stderr } => {
                write!(
                    f,
                    "git failed ({status}): {stderr}; fix the repository and retry"
                )
            }
        }
    }
}

impl std::error::Error for GitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GitError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<GitError> for RpcError {
    fn from(e: GitError) -> RpcError {
        RpcError::other(e.to_string())
    }
}

/// What a finished (or cut) `git` run printed.
#[derive(Debug)]
pub struct GitOutput {
    pub stdout: Vec<u8>,
    /// True when stdout passed the bound: `stdout` holds the first `max`
    /// bytes and the child was killed.
    pub truncated: bool,
}

/// A `git` command for `root` with the flags every query uses; callers add
/// the subcommand and its arguments.
pub fn command(root: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new("git");
    cmd.current_dir(root)
        .process_group(0)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        // Pathspecs are jailed paths, never globs or magic.
        .env("GIT_LITERAL_PATHSPECS", "1")
        // Stable English messages (`not a git repository`).
        .env("LC_ALL", "C")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .args([
            "--no-pager",
            "-c",
            "core.quotepath=off",
            "-c",
            "color.ui=false",
            "-c",
            "core.fsmonitor=false",
        ]);
    cmd
}

/// Kills a child's process group when dropped, unless disarmed after the
/// child was reaped.
struct GroupKill {
    pid: u32,
    armed: Cell<bool>,
}

impl GroupKill {
    fn kill(&self) {
        if !self.armed.get() {
            return;
        }
        // The child is not reaped while armed, so its pid still names its group.
        crate::proc::kill_group(self.pid);
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `cmd`, keeping at most `max` bytes of stdout (past that the group is
/// killed and the output marked truncated). Safe to drop at any point: the
/// group is killed and the child reaped by smol.
pub async fn run(cmd: std::process::Command, max: usize) -> Result<GitOutput, GitError> {
    let mut cmd = smol::process::Command::from(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => GitError::Missing,
        _ => GitError::Io(e),
    })?;
    let guard = GroupKill {
        pid: child.id(),
        armed: Cell::new(true),
    };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(GitError::Io(io::Error::other("git's pipes are missing")));
    };
    let read_out = async {
        let r = read_bounded(stdout, max, false).await;
        if matches!(r, Ok((_, true))) {
            // Stop git now: nobody reads the rest.
            guard.kill();
        }
        r
    };
    let (out, err) = future::zip(read_out, read_bounded(stderr, MAX_STDERR_BYTES, true)).await;
    let status = child.status().await.map_err(GitError::Io);
    guard.armed.set(false);
    let (stdout, truncated) = out.map_err(GitError::Io)?;
    if truncated {
        return Ok(GitOutput { stdout, truncated });
    }
    let status = status?;
    if status.success() {
        return Ok(GitOutput { stdout, truncated });
    }
    let stderr = err.map(|(b, _)| b).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr);
    if stderr.to_ascii_lowercase().contains("not a git repository") {
        return Err(GitError::NotARepo);
    }
    let first = stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no message")
        .trim_start_matches("fatal: ")
        .trim_start_matches("error: ");
    Err(GitError::Failed {
        status: status.to_string(),
        stderr: first.chars().take(300).collect(),
    })
}

/// Reads `r` to its end, keeping at most `max` bytes. Returns the bytes and
/// whether more came; with `drain` it reads (and drops) the rest, otherwise
/// it stops at the first byte past `max`.
async fn read_bounded(
    mut r: impl AsyncRead + Unpin,
    max: usize,
    drain: bool,
) -> io::Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut over = false;
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => return Ok((out, over)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let room = max - out.len();
        out.extend_from_slice(&buf[..n.min(room)]);
        if n > room {
            over = true;
            if !drain {
                return Ok((out, true));
            }
        }
    }
}

/// Whether a `git` program answers `git --version`, waiting at most
/// `timeout`. Blocking: call it off the executor thread.
pub fn probe_blocking(timeout: std::time::Duration) -> bool {
    let mut cmd = std::process::Command::new("git");
    cmd.arg("--version")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let Ok(mut child) = cmd.spawn() else {
        return false;
    };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            _ => {
                crate::proc::kill_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Whether an executable named `git` is on `PATH` (no process started).
pub fn on_path() -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join("git"))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The workspace root's path below the repository's top level (`""` at the
/// top, `"sub/dir/"` below it).
async fn prefix(root: &Path) -> Result<String, GitError> {
    let mut cmd = command(root);
    cmd.args(["rev-parse", "--show-prefix"]);
    let out = run(cmd, 64 << 10).await?;
    let s = String::from_utf8_lossy(&out.stdout);
    Ok(s.trim_end_matches('\n').to_owned())
}

/// `_relay/git/status` → `{branch, upstream, ahead, behind, entries:[{path,
/// index, worktree, origPath?}], truncated}`; paths are workspace-relative.
pub async fn status(root: &Path) -> Result<Value, RpcError> {
    let prefix = prefix(root).await?;
    let mut cmd = command(root);
    cmd.args([
        "status",
        "--porcelain=v1",
        "-z",
        "--branch",
        "--untracked-files=normal",
        "--",
        ".",
    ]);
    let out = run(cmd, MAX_STATUS_BYTES).await?;
    let parsed = parse_status(&out.stdout);
    Ok(parsed.to_json(&prefix, out.truncated))
}

/// `_relay/git/diff {path?, staged?}` → `{diff, truncated}`. `rel` is a
/// jailed workspace-relative path (`None` for the whole workspace).
pub async fn diff(root: &Path, rel: Option<&OsStr>, staged: bool) -> Result<Value, RpcError> {
    // Outside a work tree `git diff` turns into `--no-index`: ask first.
    prefix(root).await?;
    let mut cmd = command(root);
    cmd.args([
        "diff",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--relative",
    ]);
    if staged {
        cmd.arg("--cached");
    }
    cmd.arg("--");
    match rel {
        Some(p) => cmd.arg(p),
        None => cmd.arg("."),
    };
    let out = run(cmd, MAX_DIFF_BYTES).await?;
    let mut bytes = out.stdout;
    if out.truncated {
        // Do not end inside a multi-byte character.
        let keep = utf8_prefix_len(&bytes);
        bytes.truncate(keep);
    }
    Ok(json!({
        "diff": String::from_utf8_lossy(&bytes),
        "truncated": out.truncated,
    }))
}

/// Untracked paths git ignores under `rel` (workspace-relative, `.` for the
/// root): files by name, wholly ignored directories with a trailing `/`.
/// Returns the list and whether it was cut.
pub async fn ignored(root: &Path, rel: &OsStr) -> Result<(Vec<String>, bool), GitError> {
    let mut cmd = command(root);
    cmd.args([
        "ls-files",
        "--others",
        "--ignored",
        "--exclude-standard",
        "--directory",
        "-z",
        "--",
    ])
    .arg(rel);
    let out = run(cmd, MAX_IGNORED_BYTES).await?;
    let mut list: Vec<String> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    if out.truncated {
        // The last name may be cut short.
        list.pop();
    }
    Ok((list, out.truncated))
}

/// The length of the longest prefix of `b` that does not end inside a UTF-8
/// sequence (invalid bytes elsewhere are left to a lossy decode).
pub fn utf8_prefix_len(b: &[u8]) -> usize {
    // A sequence is at most 4 bytes: look back at most 3 for its lead byte.
    for back in 1..=b.len().min(4) {
        let i = b.len() - back;
        let byte = b[i];
        if byte & 0xC0 == 0x80 {
            continue; // continuation byte
        }
        let need = match byte {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if back >= need { b.len() } else { i };
    }
    b.len()
}

/// `git status --porcelain=v1 -z --branch`, parsed. Paths are as git prints
/// them: relative to the repository's top level.
#[derive(Debug, Default, PartialEq)]
pub struct Status {
    /// `None` when `HEAD` is detached.
    pub branch: Option<String>,
    pub upstream: Option<String>,
    pub ahead: u64,
    pub behind: u64,
    pub entries: Vec<StatusEntry>,
}

#[derive(Debug, PartialEq)]
pub struct StatusEntry {
    /// The index (staged) status letter: `M`, `A`, `D`, `R`, `C`, `U`, `?`, `!` or space.
    pub index: char,
    /// The work tree status letter.
    pub worktree: char,
    pub path: String,
    /// The source of a rename or copy.
    pub orig_path: Option<String>,
}

impl Status {
    /// As the device sees it: paths made workspace-relative by removing
    /// `prefix` (the workspace's place in the repository).
    fn to_json(&self, prefix: &str, truncated: bool) -> Value {
        let strip = |p: &str| -> String {
            let rel = p.strip_prefix(prefix).unwrap_or(p);
            if rel.is_empty() {
                ".".to_owned()
            } else {
                rel.to_owned()
            }
        };
        let entries: Vec<Value> = self
            .entries
            .iter()
            .map(|e| {
                let mut v = json!({
                    "path": strip(&e.path),
                    "index": e.index.to_string(),
                    "worktree": e.worktree.to_string(),
                });
                if let Some(orig) = &e.orig_path {
                    v["origPath"] = json!(strip(orig));
                }
                v
            })
            .collect();
        json!({
            "branch": self.branch,
            "upstream": self.upstream,
            "ahead": self.ahead,
            "behind": self.behind,
            "entries": entries,
            "truncated": truncated,
        })
    }
}

/// Parses porcelain v1 `-z` output. Output cut short loses its incomplete
/// last record (a rename without its source included).
pub fn parse_status(out: &[u8]) -> Status {
    let mut status = Status::default();
    let mut fields: Vec<&[u8]> = out.split(|b| *b == 0).collect();
    // Every record ends with NUL, so the last field is empty, or, in output
    // cut short, an incomplete record: either way it goes.
    fields.pop();
    let mut it = fields.into_iter().peekable();
    let mut records = Vec::new();
    while let Some(field) = it.next() {
        let text = String::from_utf8_lossy(field).into_owned();
        if let Some(head) = text.strip_prefix("## ") {
            parse_branch(head, &mut status);
            continue;
        }
        let b = text.as_bytes();
        if b.len() < 4 || b[2] != b' ' {
            continue;
        }
        let index = char::from(b[0]);
        let worktree = char::from(b[1]);
        let path = text[3..].to_owned();
        let orig_path = if matches!(index, 'R' | 'C') || matches!(worktree, 'R' | 'C') {
            match it.next() {
                Some(orig) => Some(String::from_utf8_lossy(orig).into_owned()),
                // The source half was cut off: the record is incomplete.
                None => break,
            }
        } else {
            None
        };
        records.push(StatusEntry {
            index,
            worktree,
            path,
            orig_path,
        });
    }
    status.entries = records;
    status
}

/// The `## ...` header: `main...origin/main [ahead 1, behind 2]`,
/// `No commits yet on main`, `HEAD (no branch)`.
fn parse_branch(head: &str, status: &mut Status) {
    let (names, counts) = match head.find(" [") {
        Some(i) if head.ends_with(']') => (&head[..i], &head[i + 2..head.len() - 1]),
        _ => (head, ""),
    };
    for part in counts.split(", ") {
        if let Some(n) = part.strip_prefix("ahead ") {
            status.ahead = n.parse().unwrap_or(0);
        } else if let Some(n) = part.strip_prefix("behind ") {
            status.behind = n.parse().unwrap_or(0);
        }
    }
    let names = names
        .strip_prefix("No commits yet on ")
        .or_else(|| names.strip_prefix("Initial commit on "))
        .unwrap_or(names);
    if names.starts_with("HEAD (no branch)") {
        return;
    }
    match names.split_once("...") {
        Some((branch, upstream)) => {
            status.branch = Some(branch.to_owned());
            status.upstream = Some(upstream.to_owned());
        }
        None => status.branch = Some(names.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: char, worktree: char, path: &str) -> StatusEntry {
        StatusEntry {
            index,
            worktree,
            path: path.to_owned(),
            orig_path: None,
        }
    }

    #[test]
    fn status_with_every_kind_of_entry() {
        let out = b"## main...origin/main [ahead 2, behind 1]\0 M src/a.rs\0A  new file.txt\0R  renamed.rs\0old.rs\0?? untracked/\0UU conflict.rs\0";
        let s = parse_status(out);
        assert_eq!(s.branch.as_deref(), Some("main"));
        assert_eq!(s.upstream.as_deref(), Some("origin/main"));
        assert_eq!((s.ahead, s.behind), (2, 1));
        assert_eq!(
            s.entries,
            vec![
                entry(' ', 'M', "src/a.rs"),
                entry('A', ' ', "new file.txt"),
                StatusEntry {
                    orig_path: Some("old.rs".to_owned()),
                    ..entry('R', ' ', "renamed.rs")
                },
                entry('?', '?', "untracked/"),
                entry('U', 'U', "conflict.rs"),
            ]
        );
    }

    #[test]
    fn branch_headers() {
        let s = parse_status(b"## No commits yet on trunk\0?? a\0");
        assert_eq!(s.branch.as_deref(), Some("trunk"));
        assert_eq!(s.upstream, None);
        assert_eq!(s.entries, vec![entry('?', '?', "a")]);

        let s = parse_status(b"## HEAD (no branch)\0");
        assert_eq!(s.branch, None);
        assert!(s.entries.is_empty());

        let s = parse_status(b"## feature/x...up/feature/x [gone]\0");
        assert_eq!(s.branch.as_deref(), Some("feature/x"));
        assert_eq!(s.upstream.as_deref(), Some("up/feature/x"));
        assert_eq!((s.ahead, s.behind), (0, 0));
    }

    #[test]
    fn cut_output_drops_the_partial_record() {
        let s = parse_status(b"## main\0 M a.rs\0 M b.r");
        assert_eq!(s.entries, vec![entry(' ', 'M', "a.rs")]);
        // A rename whose source half was cut is dropped too.
        let s = parse_status(b"## main\0 M a.rs\0R  new.rs\0");
        assert_eq!(s.entries, vec![entry(' ', 'M', "a.rs")]);
    }

    #[test]
    fn paths_become_workspace_relative() {
        let s = parse_status(b"## main\0 M sub/a.rs\0?? sub/\0");
        let v = s.to_json("sub/", false);
        assert_eq!(v["entries"][0]["path"], "a.rs");
        assert_eq!(v["entries"][0]["index"], " ");
        assert_eq!(v["entries"][0]["worktree"], "M");
        assert_eq!(v["entries"][1]["path"], ".");
        assert_eq!(v["branch"], "main");
        assert_eq!(v["truncated"], false);
    }

    #[test]
    fn output_past_the_bound_is_cut_and_the_child_killed() {
        // `yes` never ends on its own: only the bound stops it.
        let mut cmd = std::process::Command::new("yes");
        cmd.process_group(0);
        let out = smol::block_on(run(cmd, 1000)).expect("run yes");
        assert!(out.truncated);
        assert_eq!(out.stdout.len(), 1000);
        assert!(out.stdout.starts_with(b"y\ny\n"));
    }

    #[test]
    fn dropping_a_run_kills_its_process_group() {
        let pidfile =
            std::env::temp_dir().join(format!("acp-relay-git-drop-{}", std::process::id()));
        let mut cmd = std::process::Command::new("sh");
        cmd.process_group(0)
            .arg("-c")
            .arg(format!("sleep 60 & echo $! > {}; wait", pidfile.display()));
        smol::block_on(async {
            let run = run(cmd, 1000);
            let stop = async {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while !std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n')) {
                    assert!(std::time::Instant::now() < deadline, "sh never started");
                    smol::Timer::after(std::time::Duration::from_millis(10)).await;
                }
                Err(GitError::NotARepo)
            };
            assert!(future::or(run, stop).await.is_err());
        });
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let _ = std::fs::remove_file(&pidfile);
        let proc_dir = format!("/proc/{}", pid.trim());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // Killed grandchildren linger as zombies until init reaps them.
        while std::fs::read_to_string(format!("{proc_dir}/stat")).is_ok_and(|s| !s.contains(") Z"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the grandchild sleep survived the drop"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn a_missing_program_is_named_as_such() {
        let cmd = std::process::Command::new("/nonexistent/acp-relay/git");
        let e = smol::block_on(run(cmd, 10)).unwrap_err();
        assert!(matches!(e, GitError::Missing), "{e:?}");
        assert!(e.to_string().contains("install git"));
    }

    #[test]
    fn utf8_prefix_stops_before_a_cut_character() {
        let s = "aé€😀".as_bytes();
        assert_eq!(utf8_prefix_len(s), s.len());
        for cut in 0..=s.len() {
            let keep = utf8_prefix_len(&s[..cut]);
            assert!(std::str::from_utf8(&s[..keep]).is_ok(), "cut {cut}");
            assert!(cut - keep < 4);
        }
        assert_eq!(utf8_prefix_len(&s[..2]), 1);
    }
}
