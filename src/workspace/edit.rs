//! `_relay/apply_edit`: a device replaces a workspace file's content,
//! atomically (temp file + rename, mode kept), optionally only if the file
//! still has the SHA-256 the device last read. The check and the write run
//! together under one lock on the `smol::unblock` pool, so two devices' edits
//! cannot both pass the same check. The content is never logged.

use super::agent_fs::{io_error, write_resolved};
use super::jail::Jail;
use super::read::{MAX_HASH_BYTES, OpenError, open_regular};
use super::sha256::{Sha256, hex_digest, is_hex_digest};
use super::{jail_error, object_params, rel_path, str_param};
use crate::core::rpc::RpcError;
use serde_json::{Value, json};
use std::io::{self, Read};
use std::path::Path;
use std::sync::Mutex;

/// Largest content one edit may write (8 MiB).
pub const MAX_EDIT_BYTES: usize = 8 << 20;

/// Serializes check-and-write across the blocking pool's threads.
static EDIT_LOCK: Mutex<()> = Mutex::new(());

/// `_relay/apply_edit {path, content, expectedSha256?}` → `{path, sha256}`
/// where `path` is workspace-relative and `sha256` names the new content.
pub(super) async fn apply_edit(jail: &Jail, params: &Value) -> Result<Value, RpcError> {
    object_params(params)?;
    let path = str_param(params, "path")?.to_owned();
    let content = str_param(params, "content")?.to_owned();
    if content.len() > MAX_EDIT_BYTES {
        return Err(RpcError::invalid_params(format!(
            "content is {} bytes, the limit is {MAX_EDIT_BYTES} bytes; edit a smaller file",
            content.len()
        )));
    }
    let expected = match params.get("expectedSha256") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if is_hex_digest(s) => Some(s.to_ascii_lowercase()),
        Some(_) => {
            return Err(RpcError::invalid_params(
                "\"expectedSha256\" must be 64 hex digits: the sha256 from _relay/fs/read",
            ));
        }
    };
    let jail = jail.clone();
    smol::unblock(move || {
        let _guard = EDIT_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let target = jail.resolve(&path).map_err(jail_error)?;
        let rel = rel_path(jail.root(), &target);
        if let Some(expected) = expected {
            let current = current_sha256(&jail, &target, &path)?;
            if current.as_deref() != Some(expected.as_str()) {
                return Err(conflict(&rel, current));
            }
        }
        write_resolved(&jail, &target, &path, content.as_bytes())?;
        log::info!("apply_edit: wrote {rel:?} ({} bytes)", content.len());
        Ok(json!({ "path": rel, "sha256": hex_digest(content.as_bytes()) }))
    })
    .await
}

/// The refusal of a stale edit: carries the file's current hash (`null` when
/// the file is gone).
pub fn conflict(rel: &str, current: Option<String>) -> RpcError {
    let what = if current.is_some() {
        "changed since you read it"
    } else {
        "does not exist any more"
    };
    RpcError::other(format!(
        "edit refused: {rel:?} {what}; re-read it with _relay/fs/read and apply your edit again"
    ))
    .with_data(json!({ "conflict": true, "currentSha256": current }))
}

/// The SHA-256 of the file at `target` now, or `None` when it does not exist.
fn current_sha256(jail: &Jail, target: &Path, path: &str) -> Result<Option<String>, RpcError> {
    let file = match open_regular(jail, target, path) {
        Err(OpenError::Missing) => return Ok(None),
        Err(OpenError::Refused(e)) => return Err(e),
        Ok(file) => file,
    };
    let mut hasher = Sha256::new();
    let mut src = file.take(MAX_HASH_BYTES + 1);
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error("read", path, &e)),
        };
        total += n as u64;
        if total > MAX_HASH_BYTES {
            return Err(RpcError::other(format!(
                "{path:?} is over {MAX_HASH_BYTES} bytes, too large to compare with expectedSha256; \
                 edit it without expectedSha256 or in a terminal"
            )));
        }
        hasher.update(&buf[..n]);
    }
    Ok(Some(hasher.finish_hex()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_carries_the_current_hash() {
        let e = conflict("a.txt", Some("ab".repeat(32)));
        assert_eq!(e.code, crate::core::rpc::code::OTHER);
        assert_eq!(e.data.as_ref().unwrap()["conflict"], true);
        assert_eq!(e.data.as_ref().unwrap()["currentSha256"], "ab".repeat(32));
        assert!(e.message.contains("re-read"), "{}", e.message);
        let gone = conflict("a.txt", None);
        assert!(gone.data.unwrap()["currentSha256"].is_null());
    }
}
