//! The agent's `fs/read_text_file` and `fs/write_text_file`, answered inside
//! the jail. All file I/O runs on the `smol::unblock` pool, never on the
//! executor thread. Writes are atomic (temp file in the same directory, then
//! rename). Error messages name the path, never the file's contents.

use super::jail::{Jail, lower_io};
use super::{jail_error, object_params, opt_u64_param, str_param};
use crate::core::rpc::{RpcError, code};
use serde_json::{Value, json};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest file `fs/read_text_file` reads, in bytes (16 MiB), whatever its
/// `line`/`limit`: bigger files are refused, not streamed.
pub const MAX_READ_BYTES: u64 = 16 << 20;

/// How many temp names a write tries before giving up.
const TEMP_ATTEMPTS: u32 = 16;

/// `fs/read_text_file {sessionId, path, line?, limit?}` → `{content}`.
///
/// `line` is 1-based (0 is taken as 1); `limit` counts lines. Line endings are
/// kept, so whole-file reads return the file byte for byte.
pub(super) async fn read_text_file(jail: &Jail, params: &Value) -> Result<Value, RpcError> {
    object_params(params)?;
    let path = str_param(params, "path")?.to_owned();
    let line = opt_u64_param(params, "line")?;
    let limit = opt_u64_param(params, "limit")?;
    let jail = jail.clone();
    let content = smol::unblock(move || {
        let text = read_blocking(&jail, &path)?;
        Ok::<_, RpcError>(select_lines(text, line, limit))
    })
    .await?;
    Ok(json!({ "content": content }))
}

/// `fs/write_text_file {sessionId, path, content}` → `{}`.
///
/// Creates the file and its missing parent directories (inside the jail);
/// an existing file keeps its mode (and, where permitted, its owner).
pub(super) async fn write_text_file(jail: &Jail, params: &Value) -> Result<Value, RpcError> {
    object_params(params)?;
    let path = str_param(params, "path")?.to_owned();
    let content = str_param(params, "content")?.to_owned();
    let jail = jail.clone();
    smol::unblock(move || write_blocking(&jail, &path, content.as_bytes())).await?;
    // The schema's `WriteTextFileResponse` is an object; typed clients reject `null`.
    Ok(json!({}))
}

fn read_blocking(jail: &Jail, path: &str) -> Result<String, RpcError> {
    let resolved = jail.resolve(path).map_err(jail_error)?;
    // O_NONBLOCK: a fifo swapped in after the jail check must not hang a
    // pool thread; O_NOFOLLOW: nor may a symlink swapped in redirect us.
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(nonblock_nofollow())
        .open(&resolved)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => not_found(path),
            _ => io_error("read", path, &e),
        })?;
    let meta = file.metadata().map_err(|e| io_error("read", path, &e))?;
    if meta.is_dir() {
        return Err(RpcError::invalid_params(format!(
            "{path:?} is a directory: name a file to read"
        )));
    }
    if !meta.is_file() {
        return Err(RpcError::invalid_params(format!(
            "{path:?} is not a regular file: only regular files can be read"
        )));
    }
    if meta.len() > MAX_READ_BYTES {
        return Err(too_large(path, meta.len()));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    (&mut file)
        .take(MAX_READ_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_error("read", path, &e))?;
    if buf.len() as u64 > MAX_READ_BYTES {
        return Err(too_large(path, buf.len() as u64));
    }
    String::from_utf8(buf).map_err(|_| {
        RpcError::other(format!(
            "not a text file: {path:?} is not valid utf-8; only text files can be read"
        ))
    })
}

/// ACP's answer for a file that does not exist: -32002 "Resource not found",
/// the path in `data.uri` (as the ACP schema's `Error::resource_not_found`).
/// An agent that reads before it writes takes it as "create a new file".
fn not_found(path: &str) -> RpcError {
    RpcError::new(code::RESOURCE_NOT_FOUND, "Resource not found").with_data(json!({
        "uri": path,
        "hint": "no such file in the workspace; check the path (relative paths start at the workspace root)",
    }))
}

fn too_large(path: &str, len: u64) -> RpcError {
    RpcError::other(format!(
        "file too large to read: {path:?} has {len} bytes, the limit is {MAX_READ_BYTES} bytes; \
         read a smaller file or use a terminal command"
    ))
}

/// The lines `[line, line + limit)` of `text` (1-based), endings included.
fn select_lines(text: String, line: Option<u64>, limit: Option<u64>) -> String {
    if line.unwrap_or(1) <= 1 && limit.is_none() {
        return text;
    }
    let skip = usize::try_from(line.unwrap_or(1).saturating_sub(1)).unwrap_or(usize::MAX);
    let take = limit.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    text.split_inclusive('\n').skip(skip).take(take).collect()
}

fn write_blocking(jail: &Jail, path: &str, content: &[u8]) -> Result<(), RpcError> {
    let target = jail.resolve(path).map_err(jail_error)?;
    write_resolved(&target, path, content)
}

/// Atomically replaces (or creates) `target`, a path the jail resolved from
/// `path` (named in errors): missing parents are created, an existing file's
/// mode is kept. Blocking: call it inside `smol::unblock`.
pub(super) fn write_resolved(target: &Path, path: &str, content: &[u8]) -> Result<(), RpcError> {
    let existing = match fs::metadata(target) {
        Ok(meta) if meta.is_dir() => {
            return Err(RpcError::invalid_params(format!(
                "{path:?} is a directory: name a file to write"
            )));
        }
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error("write", path, &e)),
    };
    let dir = target.parent().ok_or_else(|| {
        RpcError::invalid_params(format!("{path:?} has no parent directory: name a file"))
    })?;
    // `dir` is the jail's canonical existing ancestor plus plain names, so
    // everything created here is inside the root.
    fs::create_dir_all(dir).map_err(|e| io_error("create the directory for", path, &e))?;

    let (tmp_path, mut tmp) =
        create_temp(dir, existing.is_some()).map_err(|e| io_error("write", path, &e))?;
    let result = (|| {
        if let Some(meta) = &existing {
            tmp.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            // Best effort: only root may give a file away.
            let _ = std::os::unix::fs::fchown(&tmp, Some(meta.uid()), Some(meta.gid()));
        }
        tmp.write_all(content)?;
        tmp.sync_all()?;
        fs::rename(&tmp_path, target)
    })();
    drop(tmp);
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp_path);
        return Err(io_error("write", path, &e));
    }
    // Make the rename itself durable; failure here loses nothing already visible.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A new, empty temp file in `dir`. New files get `0o666` less the umask;
/// files that replace one start private and get the old mode before rename.
fn create_temp(dir: &Path, replacing: bool) -> io::Result<(std::path::PathBuf, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mode = if replacing { 0o600 } else { 0o666 };
    let mut last = io::Error::new(io::ErrorKind::AlreadyExists, "no free temp name");
    for _ in 0..TEMP_ATTEMPTS {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".acp-relay-{}-{n}.tmp", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nonblock_nofollow())
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

pub(super) fn nonblock_nofollow() -> i32 {
    (rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW).bits() as i32
}

/// An I/O failure as a JSON-RPC error that names the path and what to do.
pub(super) fn io_error(action: &str, path: &str, e: &io::Error) -> RpcError {
    let hint = match e.kind() {
        io::ErrorKind::NotFound => "check the path (relative paths start at the workspace root)",
        io::ErrorKind::PermissionDenied => "check the file's permissions",
        io::ErrorKind::NotADirectory => "a parent in the path is a file, not a directory",
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => "free some disk space",
        io::ErrorKind::ReadOnlyFilesystem => "the filesystem is read-only",
        _ => "try again or check the path",
    };
    // ELOOP from O_NOFOLLOW: the file became a symlink after the jail check.
    if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        return RpcError::invalid_params(format!(
            "cannot {action} {path:?}: it changed into a symlink; try again"
        ));
    }
    RpcError::other(format!("cannot {action} {path:?}: {}; {hint}", lower_io(e)))
}

#[cfg(test)]
mod tests {
    use super::select_lines;

    #[test]
    fn line_and_limit_select_lines() {
        let text = "one\ntwo\nthree\nfour".to_owned();
        assert_eq!(select_lines(text.clone(), None, None), text);
        assert_eq!(
            select_lines(text.clone(), Some(2), None),
            "two\nthree\nfour"
        );
        assert_eq!(select_lines(text.clone(), Some(2), Some(2)), "two\nthree\n");
        assert_eq!(select_lines(text.clone(), None, Some(1)), "one\n");
        assert_eq!(select_lines(text.clone(), Some(0), Some(1)), "one\n");
        assert_eq!(select_lines(text.clone(), Some(9), None), "");
        assert_eq!(select_lines(text, Some(4), Some(5)), "four");
    }
}
