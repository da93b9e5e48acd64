//! The pairing token: 256 bits from the OS, hex encoded, stored at
//! `<data-dir>/token` with mode 0600. Compared in constant time.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Bytes of randomness in a token.
pub const TOKEN_BYTES: usize = 32;

#[derive(Debug)]
pub enum TokenError {
    Io { path: PathBuf, source: io::Error },
    Malformed { path: PathBuf },
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Io { path, source } => write!(f, "token file {}: {source}", path.display()),
            TokenError::Malformed { path } => write!(
                f,
                "token file {} is malformed; run `acp-relay token --rotate`",
                path.display()
            ),
        }
    }
}

impl std::error::Error for TokenError {}

/// The secret devices present. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a presented value.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
        for (i, x) in a.iter().enumerate() {
            diff |= x ^ b.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }
}

fn path(dir: &Path) -> PathBuf {
    dir.join("token")
}

/// Reads the token, creating the data dir and a fresh token when missing.
/// Only at start and in `acp-relay token`: a running relay re-reads with [`load`].
pub fn load_or_create(dir: &Path) -> Result<Token, TokenError> {
    match load(dir) {
        Err(TokenError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            rotate(dir)
        }
        other => other,
    }
}

/// Reads the token; never creates one.
pub fn load(dir: &Path) -> Result<Token, TokenError> {
    let p = path(dir);
    match fs::read_to_string(&p) {
        Ok(s) => {
            let t = s.trim();
            if t.len() < 32
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(TokenError::Malformed { path: p });
            }
            Ok(Token(t.to_owned()))
        }
        Err(source) => Err(TokenError::Io { path: p, source }),
    }
}

/// What identifies one version of the token file (inode, size, mtime), to
/// notice a rotation; `None` when it cannot be read.
pub fn stamp(dir: &Path) -> Option<(u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path(dir)).ok()?;
    Some((m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// Writes a fresh token (0600, atomically) and returns it.
pub fn rotate(dir: &Path) -> Result<Token, TokenError> {
    let p = path(dir);
    let io_err = |source| TokenError::Io {
        path: p.clone(),
        source,
    };
    fs::create_dir_all(dir).map_err(io_err)?;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let token = Token(random_hex(TOKEN_BYTES).map_err(io_err)?);
    let tmp = dir.join(".token.tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err)?;
    f.write_all(token.0.as_bytes())
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.sync_all())
        .map_err(io_err)?;
    fs::rename(&tmp, &p).map_err(io_err)?;
    Ok(token)
}

/// `n` random bytes from the OS, hex encoded.
pub fn random_hex(n: usize) -> io::Result<String> {
    let mut buf = vec![0u8; n];
    fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_match() {
        let t = Token("abcdef0123456789abcdef0123456789".into());
        assert!(t.matches("abcdef0123456789abcdef0123456789"));
        assert!(!t.matches("abcdef0123456789abcdef012345678"));
        assert!(!t.matches("abcdef0123456789abcdef01234567890"));
        assert!(!t.matches(""));
        assert!(!t.matches("Xbcdef0123456789abcdef0123456789"));
        assert_eq!(format!("{t:?}"), "Token(..)");
    }

    #[test]
    fn create_read_rotate() {
        let tmp = crate::testing::TempDir::new("token");
        let dir = tmp.0.clone();
        let a = load_or_create(&dir).unwrap();
        assert_eq!(a.as_str().len(), TOKEN_BYTES * 2);
        let mode = fs::metadata(dir.join("token"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create(&dir).unwrap(), a);
        let b = rotate(&dir).unwrap();
        assert_ne!(a, b);
        assert_eq!(load_or_create(&dir).unwrap(), b);
    }
}
