//! Files in the data directory: the pairing token (mode 0600, [`token`]) and
//! the session transcripts ([`transcript`]: written by the store's own writer
//! thread, read through `smol::unblock`). Never blocks the executor thread,
//! never logs a token.

pub mod token;
pub mod transcript;

use std::path::PathBuf;

/// `--data-dir`, else `$XDG_STATE_HOME/acp-relay`, else `~/.local/state/acp-relay`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("acp-relay");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/state/acp-relay")
}
