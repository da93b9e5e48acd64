//! The agent's `fs/read_text_file` and `fs/write_text_file`, answered inside
//! the jail. All file I/O runs on the `smol::unblock` pool, never on the
//! executor thread. Writes are atomic (temp file in the same directory, then
//! rename). Error messages name the path, never the file's contents.

use super::jail::{Jail, lower_io};
use super::{jail_error, object_params, opt_u64_param, str_param};
use crate::core::rpc::{RpcError, code};
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde_json::{Value, json};
use std::fs::File;
use std::io::{self, Read, Write};
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
    // Opened beneath the root (a symlink swapped in since the check is
    // refused); O_NONBLOCK: nor may a fifo swapped in hang a pool thread.
    let mut file = open_read(jail, &resolved).map_err(|e| match e.kind() {
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

/// Opens a resolved path for reading, beneath the jail's root, without
/// following a symlink and without blocking on a fifo.
pub(super) fn open_read(jail: &Jail, resolved: &Path) -> io::Result<File> {
    let fd = jail.open(
        resolved,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

/// ACP's answer for a file that does not exist: -32002 (the ACP schema's
/// `RESOURCE_NOT_FOUND`, "Resource not found"), the path in `data.uri`. An
/// agent that reads before it writes takes it as "create a new file".
fn not_found(path: &str) -> RpcError {
    RpcError::new(
        code::RESOURCE_NOT_FOUND,
        format!(
            "resource not found: {path:?}; check the path (relative paths start at the workspace root)"
        ),
    )
    .with_data(json!({ "uri": path }))
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
    write_resolved(jail, &target, path, content)
}

/// Atomically replaces (or creates) `target`, a path the jail resolved from
/// `path` (named in errors): missing parents are created, an existing file's
/// mode is kept. Every step is relative to the parent directory opened
/// beneath the root, so nothing a concurrent swap does leads outside it.
/// Blocking: call it inside `smol::unblock`.
pub(super) fn write_resolved(
    jail: &Jail,
    target: &Path,
    path: &str,
    content: &[u8],
) -> Result<(), RpcError> {
    let (dir, name) = match jail.parent_dir(target, true) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(Errno::ISDIR.raw_os_error()) => {
            return Err(RpcError::invalid_params(format!(
                "{path:?} is a directory: name a file to write"
            )));
        }
        Err(e) => return Err(io_error("create the directory for", path, &e)),
    };
    let existing = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => {
            let kind = FileType::from_raw_mode(st.st_mode);
            if kind == FileType::Directory {
                return Err(RpcError::invalid_params(format!(
                    "{path:?} is a directory: name a file to write"
                )));
            }
            if kind == FileType::Symlink {
                return Err(io_error("write", path, &io::Error::from(Errno::LOOP)));
            }
            Some(st)
        }
        Err(Errno::NOENT) => None,
        Err(e) => return Err(io_error("write", path, &e.into())),
    };

    let (tmp_name, mut tmp) =
        create_temp(&dir, existing.is_some()).map_err(|e| io_error("write", path, &e))?;
    let result = (|| {
        if let Some(st) = &existing {
            rustix::fs::fchmod(&tmp, Mode::from_raw_mode(st.st_mode & 0o7777))?;
            // Best effort: only root may give a file away.
            let _ = rustix::fs::fchown(
                &tmp,
                Some(rustix::fs::Uid::from_raw(st.st_uid)),
                Some(rustix::fs::Gid::from_raw(st.st_gid)),
            );
        }
        tmp.write_all(content)?;
        tmp.sync_all()?;
        rustix::fs::renameat(&dir, &tmp_name, &dir, name)?;
        Ok::<(), io::Error>(())
    })();
    drop(tmp);
    if let Err(e) = result {
        let _ = rustix::fs::unlinkat(&dir, &tmp_name, AtFlags::empty());
        return Err(io_error("write", path, &e));
    }
    // Make the rename itself durable; failure here loses nothing already visible.
    if let Ok(d) = rustix::fs::openat(
        &dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        let _ = rustix::fs::fsync(&d);
    }
    Ok(())
}

/// A new, empty temp file in `dir`. New files get `0o666` less the umask;
/// files that replace one start private and get the old mode before rename.
fn create_temp(dir: &OwnedFd, replacing: bool) -> io::Result<(String, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mode = Mode::from_raw_mode(if replacing { 0o600 } else { 0o666 });
    let mut last = io::Error::new(io::ErrorKind::AlreadyExists, "no free temp name");
    for _ in 0..TEMP_ATTEMPTS {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = format!(".acp-relay-{}-{n}.tmp", std::process::id());
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::CLOEXEC;
        match rustix::fs::openat(dir, tmp.as_str(), flags, mode) {
            Ok(fd) => return Ok((tmp, File::from(fd))),
            Err(Errno::EXIST) => last = Errno::EXIST.into(),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last)
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
