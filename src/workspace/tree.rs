//! `_relay/fs/tree`: a bounded, breadth-first listing of a workspace
//! directory for devices. Skips `.git`, and in a git work tree drops what git
//! ignores (git is asked; `.gitignore` is never parsed here). The walk runs on
//! the `smol::unblock` pool; it never follows a symlink out of the listing.

use super::git;
use super::jail::{Jail, lower_io};
use super::{jail_error, opt_u64_param, rel_os, rel_path};
use crate::core::rpc::RpcError;
use futures_lite::future;
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use serde_json::{Value, json};
use std::collections::{HashSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Most entries one tree answer holds; past it the answer says `truncated`.
pub const MAX_TREE_ENTRIES: usize = 5000;

/// Levels listed when the request names no `depth`.
pub const DEFAULT_TREE_DEPTH: u64 = 1;

/// Deepest listing a request may ask for.
pub const MAX_TREE_DEPTH: u64 = 8;

/// How long the tree waits for git's ignored list before answering without it.
const IGNORED_DEADLINE: Duration = Duration::from_secs(4);

/// `_relay/fs/tree {path?, depth?}` → `{path, entries, truncated,
/// ignoresApplied}`; each entry is `{name, path, kind, size, mtimeMs,
/// children?}` where `children` is present on the directories that were
/// listed.
pub(super) async fn tree(jail: &Jail, params: &Value) -> Result<Value, RpcError> {
    if !(params.is_object() || params.is_null()) {
        return Err(RpcError::invalid_params("params must be an object"));
    }
    let path = match params.get("path") {
        None | Some(Value::Null) => ".".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(RpcError::invalid_params("\"path\" must be a string")),
    };
    let depth = opt_u64_param(params, "depth")?
        .unwrap_or(DEFAULT_TREE_DEPTH)
        .clamp(1, MAX_TREE_DEPTH) as usize;

    let j = jail.clone();
    let (dir, rel) = smol::unblock(move || {
        let dir = j.resolve(&path).map_err(jail_error)?;
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(RpcError::invalid_params(format!(
                    "{path:?} is not a directory: read it with _relay/fs/read"
                )));
            }
            Err(e) => {
                return Err(RpcError::other(format!(
                    "cannot list {path:?}: {}; check the path",
                    lower_io(&e)
                )));
            }
        }
        let rel = rel_path(j.root(), &dir);
        Ok::<_, RpcError>((dir, rel))
    })
    .await?;

    let root = jail.root().to_path_buf();
    let ignored = future::or(
        async {
            match git::ignored(&root, &rel_os(&root, &dir)).await {
                Ok(found) => Some(found),
                Err(git::GitError::NotARepo) => None,
                Err(e) => {
                    log::debug!("tree: no ignore list from git: {e}");
                    None
                }
            }
        },
        async {
            smol::Timer::after(IGNORED_DEADLINE).await;
            log::warn!(
                "tree: git gave no ignore list within {}s; listing without it",
                IGNORED_DEADLINE.as_secs()
            );
            None
        },
    )
    .await;
    let applied = matches!(ignored, Some((_, false)));
    let ignored = Ignored(
        ignored
            .map(|(l, _)| l)
            .unwrap_or_default()
            .into_iter()
            .collect(),
    );

    let rel2 = rel.clone();
    let j2 = jail.clone();
    let (entries, truncated) =
        smol::unblock(move || walk(&j2, &dir, &rel2, depth, MAX_TREE_ENTRIES, &ignored)).await;
    Ok(json!({
        "path": rel,
        "entries": entries,
        "truncated": truncated,
        "ignoresApplied": applied,
    }))
}

/// Workspace-relative paths git ignores: files by name, directories with a
/// trailing `/`.
pub(super) struct Ignored(HashSet<String>);

impl Ignored {
    fn contains(&self, path: &str) -> bool {
        !self.0.is_empty() && (self.0.contains(path) || self.0.contains(&format!("{path}/")))
    }
}

#[derive(Debug)]
struct Node {
    name: String,
    path: String,
    kind: &'static str,
    size: u64,
    mtime_ms: Option<u64>,
    /// Indices of the listed children; `None` when this node was not listed.
    children: Option<Vec<usize>>,
}

/// Lists `dir` (workspace-relative `rel`) breadth first, `depth` levels deep,
/// at most `max` entries. Returns the JSON entries and whether it stopped at
/// `max`. Every directory is opened beneath the jail's root, so one swapped
/// for a symlink while the walk runs is skipped, never listed. Blocking.
fn walk(
    jail: &Jail,
    dir: &Path,
    rel: &str,
    depth: usize,
    max: usize,
    ignored: &Ignored,
) -> (Vec<Value>, bool) {
    let mut nodes: Vec<Node> = Vec::new();
    let mut top: Vec<usize> = Vec::new();
    let mut queue: VecDeque<(PathBuf, String, usize, Option<usize>)> = VecDeque::new();
    queue.push_back((dir.to_path_buf(), rel.to_owned(), 1, None));
    let mut truncated = false;

    while let Some((abs, rel, level, parent)) = queue.pop_front() {
        let room = max - nodes.len();
        let (mut listed, cut) = match list(jail, &abs, &rel, room, ignored) {
            Ok(l) => l,
            Err(e) => {
                log::debug!("tree: cannot list {rel:?}: {}", lower_io(&e));
                continue;
            }
        };
        listed.sort_by(|a, b| (a.kind != "dir", &a.name).cmp(&(b.kind != "dir", &b.name)));
        let first = nodes.len();
        for node in listed {
            if node.kind == "dir" && level < depth {
                queue.push_back((
                    abs.join(&node.name),
                    node.path.clone(),
                    level + 1,
                    Some(nodes.len()),
                ));
            }
            nodes.push(node);
        }
        let ids: Vec<usize> = (first..nodes.len()).collect();
        match parent {
            Some(p) => nodes[p].children = Some(ids),
            None => top = ids,
        }
        if cut {
            truncated = true;
            break;
        }
    }
    let entries = top.iter().map(|&i| to_json(&nodes, i)).collect();
    (entries, truncated)
}

/// One directory's entries (at most `room`; the flag says more were left),
/// without `.git` and ignored paths. The directory is opened beneath the
/// root and each entry is looked at relative to it, without following links.
fn list(
    jail: &Jail,
    abs: &Path,
    rel: &str,
    room: usize,
    ignored: &Ignored,
) -> std::io::Result<(Vec<Node>, bool)> {
    let fd = jail.open(
        abs,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    for entry in Dir::read_from(&fd)? {
        let Ok(entry) = entry else { continue };
        let raw = entry.file_name();
        let bytes = raw.to_bytes();
        if bytes == b"." || bytes == b".." || bytes == b".git" {
            continue;
        }
        let name = String::from_utf8_lossy(bytes).into_owned();
        let path = if rel == "." {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if ignored.contains(&path) {
            continue;
        }
        if out.len() == room {
            return Ok((out, true));
        }
        let (kind, size, mtime_ms) = match rustix::fs::statat(&fd, raw, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let kind = match FileType::from_raw_mode(st.st_mode) {
                    FileType::RegularFile => "file",
                    FileType::Directory => "dir",
                    FileType::Symlink => "symlink",
                    _ => "other",
                };
                let secs = i128::from(st.st_mtime);
                let ms = secs * 1000 + i128::from(st.st_mtime_nsec) / 1_000_000;
                let mtime = u64::try_from(ms).ok();
                let size = if kind == "file" {
                    u64::try_from(st.st_size).unwrap_or(0)
                } else {
                    0
                };
                (kind, size, mtime)
            }
            Err(_) => ("other", 0, None),
        };
        out.push(Node {
            name,
            path,
            kind,
            size,
            mtime_ms,
            children: None,
        });
    }
    Ok((out, false))
}

fn to_json(nodes: &[Node], i: usize) -> Value {
    let n = &nodes[i];
    let mut v = json!({
        "name": n.name,
        "path": n.path,
        "kind": n.kind,
        "size": n.size,
        "mtimeMs": n.mtime_ms,
    });
    if let Some(children) = &n.children {
        v["children"] = Value::Array(children.iter().map(|&c| to_json(nodes, c)).collect());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    fn jail(root: &Path) -> Jail {
        Jail::new(root).unwrap()
    }

    fn canon(root: &Path) -> PathBuf {
        fs::canonicalize(root).unwrap()
    }

    fn none() -> Ignored {
        Ignored(HashSet::new())
    }

    fn names(entries: &[Value]) -> Vec<&str> {
        entries
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn lists_dirs_first_skips_git_and_stops_at_depth() {
        let t = TempDir::new("depth");
        fs::create_dir_all(t.0.join(".git/objects")).unwrap();
        fs::create_dir_all(t.0.join("b/c/d")).unwrap();
        fs::write(t.0.join("a.txt"), "hello").unwrap();
        fs::write(t.0.join("b/c/d/deep.txt"), "x").unwrap();
        std::os::unix::fs::symlink("a.txt", t.0.join("link")).unwrap();

        let (entries, truncated) = walk(&jail(&t.0), &canon(&t.0), ".", 1, 100, &none());
        assert!(!truncated);
        assert_eq!(names(&entries), ["b", "a.txt", "link"]);
        assert_eq!(entries[0]["kind"], "dir");
        assert!(entries[0].get("children").is_none(), "{}", entries[0]);
        assert_eq!(entries[1]["kind"], "file");
        assert_eq!(entries[1]["size"], 5);
        assert!(entries[1]["mtimeMs"].as_u64().unwrap() > 0);
        assert_eq!(entries[2]["kind"], "symlink");

        let (entries, _) = walk(&jail(&t.0), &canon(&t.0), ".", 3, 100, &none());
        let c = &entries[0]["children"][0];
        assert_eq!(c["path"], "b/c");
        assert_eq!(c["children"][0]["path"], "b/c/d");
        assert!(c["children"][0].get("children").is_none());
    }

    #[test]
    fn bound_cuts_breadth_first_and_says_truncated() {
        let t = TempDir::new("bound");
        for d in ["d1", "d2"] {
            fs::create_dir(t.0.join(d)).unwrap();
            for i in 0..10 {
                fs::write(t.0.join(d).join(format!("f{i}")), "").unwrap();
            }
        }
        fs::write(t.0.join("top"), "").unwrap();
        let (entries, truncated) = walk(&jail(&t.0), &canon(&t.0), ".", 2, 15, &none());
        assert!(truncated);
        // The whole top level comes first, then the first directory.
        assert_eq!(names(&entries), ["d1", "d2", "top"]);
        assert_eq!(entries[0]["children"].as_array().unwrap().len(), 10);
        let d2 = entries[1]["children"].as_array().map_or(0, Vec::len);
        assert_eq!(3 + 10 + d2, 15);

        let (_, truncated) = walk(&jail(&t.0), &canon(&t.0), ".", 2, 23, &none());
        assert!(!truncated);
    }

    #[test]
    fn ignored_paths_are_dropped() {
        let t = TempDir::new("ignored");
        fs::create_dir_all(t.0.join("sub/build")).unwrap();
        fs::write(t.0.join("sub/keep.rs"), "").unwrap();
        fs::write(t.0.join("sub/x.log"), "").unwrap();
        fs::write(t.0.join("sub/build/out"), "").unwrap();
        let ignored = Ignored(["sub/x.log", "sub/build/"].map(String::from).into());
        let (entries, _) = walk(
            &jail(&t.0),
            &canon(&t.0).join("sub"),
            "sub",
            2,
            100,
            &ignored,
        );
        assert_eq!(names(&entries), ["keep.rs"]);
        assert_eq!(entries[0]["path"], "sub/keep.rs");
    }
}
