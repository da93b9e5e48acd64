//! The path jail: turns a path an agent or a device names into a canonical path
//! inside the workspace root, following symlinks, or refuses it.
//! It reads file metadata (so async callers run it inside `smol::unblock`) but
//! never opens, creates or changes a file.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};

/// Why a path was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum JailError {
    /// The path, once symlinks are followed, lies outside the workspace root.
    Outside { path: String },
    /// The path names a socket, fifo or device, which is never read or written.
    Special { path: String },
    /// The path is malformed (empty, NUL byte, `..` below a missing directory, ...).
    Invalid { path: String, reason: &'static str },
    /// The filesystem could not be asked about the path.
    Io { path: String, source: io::Error },
}

impl fmt::Display for JailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JailError::Outside { path } => write!(
                f,
                "path is outside the workspace: {path:?}; use a path inside the workspace root"
            ),
            JailError::Special { path } => write!(
                f,
                "path is a socket, fifo or device: {path:?}; only regular files and directories are allowed"
            ),
            JailError::Invalid { path, reason } => {
                write!(f, "invalid path {path:?}: {reason}")
            }
            JailError::Io { path, source } => {
                write!(f, "cannot resolve path {path:?}: {}", lower_io(source))
            }
        }
    }
}

impl std::error::Error for JailError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JailError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// An `io::Error` as a lowercase phrase without the `(os error N)` suffix.
pub(crate) fn lower_io(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => &s[..],
    };
    s.to_lowercase()
}

/// A workspace root. Invariant: `root` is absolute, canonical (no symlinks,
/// no `.` or `..`) and was a directory when the jail was made.
#[derive(Debug, Clone)]
pub struct Jail {
    root: PathBuf,
}

impl Jail {
    /// Canonicalizes `root`; fails if it is missing or not a directory.
    pub fn new(root: &Path) -> io::Result<Jail> {
        let root = fs::canonicalize(root)?;
        if !fs::metadata(&root)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "workspace root is not a directory",
            ));
        }
        Ok(Jail { root })
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves `path` (relative to the root, or absolute) to a canonical path
    /// inside the root.
    ///
    /// The deepest existing ancestor is canonicalized (symlinks followed) and
    /// the missing remainder appended; the remainder may not contain `..`.
    /// An existing target must be a regular file, a directory or a symlink to
    /// one of those. The result may not exist yet (a file about to be written).
    pub fn resolve(&self, path: &str) -> Result<PathBuf, JailError> {
        let invalid = |reason| JailError::Invalid {
            path: path.to_owned(),
            reason,
        };
        if path.is_empty() {
            return Err(invalid("the path is empty"));
        }
        if path.contains('\0') {
            return Err(invalid("the path contains a nul byte"));
        }
        let candidate = self.root.join(path);

        let mut existing = None;
        for ancestor in candidate.ancestors() {
            match fs::canonicalize(ancestor) {
                Ok(canonical) => {
                    existing = Some((ancestor, canonical));
                    break;
                }
                Err(e) if is_missing(&e) => {
                    // A dangling symlink (or a loop) would be followed by a
                    // later create or write: never append below one.
                    if fs::symlink_metadata(ancestor).is_ok_and(|m| m.file_type().is_symlink()) {
                        return Err(invalid(
                            "a symlink in the path points nowhere; remove it or use another path",
                        ));
                    }
                }
                Err(e) => {
                    return Err(JailError::Io {
                        path: path.to_owned(),
                        source: e,
                    });
                }
            }
        }
        // `candidate` is absolute, so its last ancestor is `/`, which exists.
        let Some((ancestor, mut resolved)) = existing else {
            return Err(invalid("no part of the path exists"));
        };

        let remainder = candidate.strip_prefix(ancestor).unwrap_or(Path::new(""));
        for component in remainder.components() {
            match component {
                Component::Normal(name) => resolved.push(name),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(invalid(
                        "'..' below a directory that does not exist; name the path without '..'",
                    ));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(invalid("the path is malformed"));
                }
            }
        }

        if !resolved.starts_with(&self.root) {
            return Err(JailError::Outside {
                path: path.to_owned(),
            });
        }

        match fs::metadata(&resolved) {
            Ok(meta) => {
                let kind = meta.file_type();
                if kind.is_fifo()
                    || kind.is_socket()
                    || kind.is_block_device()
                    || kind.is_char_device()
                {
                    return Err(JailError::Special {
                        path: path.to_owned(),
                    });
                }
            }
            Err(e) if is_missing(&e) => {}
            Err(e) => {
                return Err(JailError::Io {
                    path: path.to_owned(),
                    source: e,
                });
            }
        }
        Ok(resolved)
    }
}

/// Errors that mean "this path (or a parent) does not exist as named".
fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("acp-relay-jail-{tag}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn setup(tag: &str) -> (TempDir, Jail) {
        let tmp = TempDir::new(tag);
        let root = tmp.0.join("root");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("a.txt"), "a").unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        fs::write(root.join("sub/b.txt"), "b").unwrap();
        let jail = Jail::new(&root).unwrap();
        (tmp, jail)
    }

    #[test]
    fn relative_path_inside_resolves() {
        let (_tmp, jail) = setup("rel");
        assert_eq!(jail.resolve("a.txt").unwrap(), jail.root().join("a.txt"));
        assert_eq!(
            jail.resolve("./sub/b.txt").unwrap(),
            jail.root().join("sub/b.txt")
        );
        assert_eq!(jail.resolve(".").unwrap(), jail.root());
    }

    #[test]
    fn parent_escape_refused() {
        let (_tmp, jail) = setup("dotdot");
        assert!(matches!(
            jail.resolve("../x"),
            Err(JailError::Outside { .. })
        ));
        assert!(matches!(jail.resolve(".."), Err(JailError::Outside { .. })));
        assert!(matches!(
            jail.resolve("sub/../../x"),
            Err(JailError::Outside { .. })
        ));
    }

    #[test]
    fn dotdot_below_missing_dir_refused() {
        let (_tmp, jail) = setup("missing-dotdot");
        let err = jail.resolve("a/../../x").unwrap_err();
        assert!(matches!(err, JailError::Invalid { .. }), "{err}");
        assert!(jail.resolve("new/../x").is_err());
    }

    #[test]
    fn dotdot_that_stays_inside_is_fine() {
        let (_tmp, jail) = setup("inner-dotdot");
        assert_eq!(
            jail.resolve("sub/../a.txt").unwrap(),
            jail.root().join("a.txt")
        );
    }

    #[test]
    fn absolute_outside_refused() {
        let (_tmp, jail) = setup("etc");
        assert!(matches!(
            jail.resolve("/etc/passwd"),
            Err(JailError::Outside { .. })
        ));
        assert!(matches!(jail.resolve("/"), Err(JailError::Outside { .. })));
    }

    #[test]
    fn absolute_inside_resolves() {
        let (_tmp, jail) = setup("abs");
        let abs = jail.root().join("sub/b.txt");
        assert_eq!(jail.resolve(abs.to_str().unwrap()).unwrap(), abs);
        let new = jail.root().join("sub/new.txt");
        assert_eq!(jail.resolve(new.to_str().unwrap()).unwrap(), new);
    }

    #[test]
    fn absolute_through_a_symlinked_root_resolves() {
        let (tmp, jail) = setup("alias");
        let alias = tmp.0.join("alias");
        symlink(jail.root(), &alias).unwrap();
        let via = alias.join("a.txt");
        assert_eq!(
            jail.resolve(via.to_str().unwrap()).unwrap(),
            jail.root().join("a.txt")
        );
    }

    #[test]
    fn symlink_to_etc_refused() {
        let (_tmp, jail) = setup("symetc");
        symlink("/etc", jail.root().join("etc")).unwrap();
        assert!(matches!(
            jail.resolve("etc"),
            Err(JailError::Outside { .. })
        ));
        assert!(matches!(
            jail.resolve("etc/passwd"),
            Err(JailError::Outside { .. })
        ));
        assert!(matches!(
            jail.resolve("etc/not-there/x"),
            Err(JailError::Outside { .. })
        ));
    }

    #[test]
    fn symlink_inside_pointing_inside_resolves() {
        let (_tmp, jail) = setup("symin");
        symlink("sub", jail.root().join("link")).unwrap();
        symlink("sub/b.txt", jail.root().join("b-link")).unwrap();
        assert_eq!(
            jail.resolve("link/b.txt").unwrap(),
            jail.root().join("sub/b.txt")
        );
        assert_eq!(
            jail.resolve("b-link").unwrap(),
            jail.root().join("sub/b.txt")
        );
        assert_eq!(
            jail.resolve("link/new/c.txt").unwrap(),
            jail.root().join("sub/new/c.txt")
        );
    }

    #[test]
    fn dangling_symlink_refused() {
        let (tmp, jail) = setup("dangling");
        symlink(tmp.0.join("gone"), jail.root().join("dangling")).unwrap();
        assert!(matches!(
            jail.resolve("dangling"),
            Err(JailError::Invalid { .. })
        ));
        assert!(matches!(
            jail.resolve("dangling/x"),
            Err(JailError::Invalid { .. })
        ));
    }

    #[test]
    fn new_file_in_new_subdir_resolves() {
        let (_tmp, jail) = setup("new");
        assert_eq!(
            jail.resolve("newdir/deeper/file.rs").unwrap(),
            jail.root().join("newdir/deeper/file.rs")
        );
    }

    #[test]
    fn empty_and_nul_refused() {
        let (_tmp, jail) = setup("empty");
        assert!(matches!(jail.resolve(""), Err(JailError::Invalid { .. })));
        assert!(matches!(
            jail.resolve("a\0b"),
            Err(JailError::Invalid { .. })
        ));
    }

    #[test]
    fn special_files_refused() {
        let (_tmp, jail) = setup("special");
        assert!(matches!(
            jail.resolve("/dev/null"),
            Err(JailError::Outside { .. })
        ));
        symlink("/dev/null", jail.root().join("null")).unwrap();
        assert!(jail.resolve("null").is_err());
        let sock = jail.root().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert!(matches!(
            jail.resolve("sock"),
            Err(JailError::Special { .. })
        ));
    }

    #[test]
    fn root_must_be_a_directory() {
        let (_tmp, jail) = setup("rootfile");
        assert!(Jail::new(&jail.root().join("a.txt")).is_err());
        assert!(Jail::new(&jail.root().join("missing")).is_err());
    }

    #[test]
    fn messages_are_lowercase_and_name_the_path() {
        let (_tmp, jail) = setup("msg");
        let msg = jail.resolve("../x").unwrap_err().to_string();
        assert!(msg.contains("../x"), "{msg}");
        assert_eq!(msg, msg.to_lowercase());
    }
}
