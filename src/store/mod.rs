//! Files in the data directory: the pairing token (mode 0600) and, in
//! [`transcript`]-style modules, session history. Runs before the executor
//! starts or through `smol::unblock`; never logs a token.

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
