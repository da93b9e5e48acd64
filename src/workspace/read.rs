//! `_relay/fs/read`: a bounded window of a workspace file for a device, with
//! the whole file's SHA-256 (what `_relay/apply_edit` compares against), or a
//! plain "binary file" answer. Reads run on the `smol::unblock` pool; the
//! content is never logged.

use super::agent_fs::{io_error, open_read};
use super::jail::Jail;
use super::sha256::Sha256;
use super::{jail_error, object_params, opt_u64_param, rel_path, str_param};
use crate::core::rpc::RpcError;
use serde_json::{Value, json};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// Bytes returned when the request names no `maxBytes` (1 MiB).
pub const DEFAULT_READ_BYTES: u64 = 1 << 20;

/// Most bytes one read returns (8 MiB), whatever `maxBytes` says.
pub const MAX_READ_BYTES: u64 = 8 << 20;

/// Largest file whose SHA-256 is computed (64 MiB); bigger files answer
/// `sha256: null`.
pub const MAX_HASH_BYTES: u64 = 64 << 20;

/// How much of the start of a file decides "binary" (8 KiB).
pub const SNIFF_BYTES: usize = 8 << 10;

const READ_CHUNK: usize = 64 << 10;

/// `_relay/fs/read {path, offset?, maxBytes?}` → `{path, content, size,
/// offset, truncated, sha256}`, or `{path, binary: true, size, sha256}`.
pub(super) async fn read(jail: &Jail, params: &Value) -> Result<Value, RpcError> {
    object_params(params)?;
    let path = str_param(params, "path")?.to_owned();
    let offset = opt_u64_param(params, "offset")?.unwrap_or(0);
    let max = opt_u64_param(params, "maxBytes")?
        .unwrap_or(DEFAULT_READ_BYTES)
        .min(MAX_READ_BYTES);
    let jail = jail.clone();
    smol::unblock(move || read_blocking(&jail, &path, offset, max)).await
}

fn read_blocking(jail: &Jail, path: &str, offset: u64, max: u64) -> Result<Value, RpcError> {
    let resolved = jail.resolve(path).map_err(jail_error)?;
    let rel = rel_path(jail.root(), &resolved);
    let mut file = open_regular(jail, &resolved, path).map_err(|e| match e {
        OpenError::Missing => io_error("read", path, &io::ErrorKind::NotFound.into()),
        OpenError::Refused(e) => e,
    })?;
    let size = file
        .metadata()
        .map_err(|e| io_error("read", path, &e))?
        .len();
    let snap = snapshot(&mut file, size, offset, max).map_err(|e| io_error("read", path, &e))?;
    Ok(answer(rel, snap, offset))
}

/// Why [`open_regular`] gave no file.
pub(super) enum OpenError {
    /// Nothing is there.
    Missing,
    /// Something is there that may not be read, or the open failed.
    Refused(RpcError),
}

/// Opens a regular file for reading beneath the jail's root, refusing
/// directories and anything that became a symlink or a special file after
/// the jail check.
pub(super) fn open_regular(
    jail: &Jail,
    resolved: &std::path::Path,
    path: &str,
) -> Result<File, OpenError> {
    let file = open_read(jail, resolved).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => OpenError::Missing,
        _ => OpenError::Refused(io_error("read", path, &e)),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| OpenError::Refused(io_error("read", path, &e)))?;
    if meta.is_dir() {
        return Err(OpenError::Refused(RpcError::invalid_params(format!(
            "{path:?} is a directory: list it with _relay/fs/tree"
        ))));
    }
    if !meta.is_file() {
        return Err(OpenError::Refused(RpcError::invalid_params(format!(
            "{path:?} is not a regular file: only regular files can be read"
        ))));
    }
    Ok(file)
}

/// What one pass over a file saw.
#[derive(Debug)]
struct Snapshot {
    /// Bytes actually in the file as read (may differ from the stat size if
    /// it changed under us).
    size: u64,
    /// The first [`SNIFF_BYTES`].
    head: Vec<u8>,
    /// Bytes `[offset, offset + max)`.
    window: Vec<u8>,
    /// `None` for files over [`MAX_HASH_BYTES`].
    sha256: Option<String>,
}

/// Reads the head, the window and (for files up to [`MAX_HASH_BYTES`]) the
/// hash of the whole file in one pass, so all three describe the same bytes.
fn snapshot(file: &mut File, size: u64, offset: u64, max: u64) -> io::Result<Snapshot> {
    let end = offset.saturating_add(max);
    let mut head = Vec::new();
    let mut window = Vec::new();
    if size > MAX_HASH_BYTES {
        file.take(SNIFF_BYTES as u64).read_to_end(&mut head)?;
        file.seek(SeekFrom::Start(offset))?;
        file.take(max).read_to_end(&mut window)?;
        return Ok(Snapshot {
            size,
            head,
            window,
            sha256: None,
        });
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut pos: u64 = 0;
    // Never read past the bound, even if the file grows while we read.
    let mut src = file.take(MAX_HASH_BYTES);
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        hasher.update(chunk);
        if head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - head.len()).min(n);
            head.extend_from_slice(&chunk[..take]);
        }
        let (lo, hi) = (pos, pos + n as u64);
        if hi > offset && lo < end {
            let from = (offset.max(lo) - lo) as usize;
            let to = (end.min(hi) - lo) as usize;
            window.extend_from_slice(&chunk[from..to]);
        }
        pos = hi;
    }
    Ok(Snapshot {
        size: pos,
        head,
        window,
        sha256: Some(hasher.finish_hex()),
    })
}

/// Whether a file whose first bytes are `head` (of `size` in all) is binary:
/// a NUL byte, or bytes that are not UTF-8 (a character cut by the end of
/// `head` does not count).
pub fn looks_binary(head: &[u8], size: u64) -> bool {
    if head.contains(&0) {
        return true;
    }
    match std::str::from_utf8(head) {
        Ok(_) => false,
        // Cut mid-character by the sniff bound, not by the end of the file.
        Err(e) => e.error_len().is_some() || head.len() as u64 >= size,
    }
}

fn answer(rel: String, snap: Snapshot, offset: u64) -> Value {
    let binary = json!({
        "path": rel,
        "binary": true,
        "size": snap.size,
        "sha256": snap.sha256,
    });
    if looks_binary(&snap.head, snap.size) {
        return binary;
    }
    let offset = offset.min(snap.size);
    let mut window = snap.window;
    // Start at a character boundary: skip continuation bytes.
    let skip = window
        .iter()
        .take(3)
        .take_while(|b| (**b & 0xC0) == 0x80)
        .count();
    window.drain(..skip);
    let start = offset + skip as u64;
    // End at a character boundary unless the window reaches the end of file.
    if start + (window.len() as u64) < snap.size {
        let keep = super::git::utf8_prefix_len(&window);
        window.truncate(keep);
    }
    let len = window.len() as u64;
    let Ok(content) = String::from_utf8(window) else {
        return binary;
    };
    json!({
        "path": rel,
        "content": content,
        "size": snap.size,
        "offset": start,
        "truncated": start + len < snap.size,
        "sha256": snap.sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::sha256::hex_digest;

    fn snap(data: &[u8], offset: u64, max: u64) -> Value {
        let size = data.len() as u64;
        let head = data[..data.len().min(SNIFF_BYTES)].to_vec();
        let from = (offset as usize).min(data.len());
        let to = (offset.saturating_add(max) as usize).min(data.len());
        let s = Snapshot {
            size,
            head,
            window: data[from..to].to_vec(),
            sha256: Some(hex_digest(data)),
        };
        answer("f".to_owned(), s, offset)
    }

    #[test]
    fn binary_detection() {
        assert!(!looks_binary(b"plain text\n", 11));
        assert!(!looks_binary("héllo".as_bytes(), 6));
        assert!(looks_binary(b"a\0b", 3));
        assert!(looks_binary(&[0xff, 0xfe, b'a'], 3));
        // A character cut by the sniff bound is fine; cut by the end of file is not.
        let cut = &"é".as_bytes()[..1];
        assert!(!looks_binary(cut, 100));
        assert!(looks_binary(cut, 1));
        assert!(!looks_binary(b"", 0));
    }

    #[test]
    fn whole_text_file() {
        let v = snap(b"one\ntwo\n", 0, 1 << 20);
        assert_eq!(v["content"], "one\ntwo\n");
        assert_eq!(v["size"], 8);
        assert_eq!(v["offset"], 0);
        assert_eq!(v["truncated"], false);
        assert_eq!(v["sha256"], hex_digest(b"one\ntwo\n"));
        assert!(v.get("binary").is_none());
    }

    #[test]
    fn window_is_cut_at_character_boundaries() {
        let text = "aé€b".as_bytes(); // a(1) é(2) €(3) b(1)
        // Offset inside 'é' moves forward to '€'.
        let v = snap(text, 2, 100);
        assert_eq!(v["content"], "€b");
        assert_eq!(v["offset"], 3);
        assert_eq!(v["truncated"], false);
        // A bound inside '€' stops before it.
        let v = snap(text, 0, 5);
        assert_eq!(v["content"], "aé");
        assert_eq!(v["truncated"], true);
        // Past the end: empty, not truncated.
        let v = snap(text, 99, 10);
        assert_eq!(v["content"], "");
        assert_eq!(v["offset"], 7);
        assert_eq!(v["truncated"], false);
    }

    #[test]
    fn binary_answer_has_no_content() {
        let data = [0x89, b'P', b'N', b'G', 0, 0, 1];
        let v = snap(&data, 0, 100);
        assert_eq!(v["binary"], true);
        assert_eq!(v["size"], 7);
        assert_eq!(v["sha256"], hex_digest(&data));
        assert!(v.get("content").is_none());
    }

    #[test]
    fn snapshot_hashes_everything_and_keeps_the_window() {
        let tmp = crate::testing::TempDir::new("read");
        let dir = tmp.0.clone();
        let p = dir.join("big.txt");
        let data: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let mut f = File::open(&p).unwrap();
        let s = snapshot(&mut f, data.len() as u64, 70_000, 100_000).unwrap();
        assert_eq!(s.size, 200_000);
        assert_eq!(s.head, data[..SNIFF_BYTES]);
        assert_eq!(s.window, data[70_000..170_000]);
        assert_eq!(s.sha256.unwrap(), hex_digest(&data));
    }
}
