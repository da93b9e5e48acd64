//! The path jail: turns a path an agent or a device names into a canonical path
//! inside the workspace root, following symlinks, or refuses it; then opens
//! what it resolved *beneath the root* in one step, so a symlink swapped in
//! between the check and the open cannot lead outside: `openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` where the kernel has it (5.6+), else
//! a walk from the root's descriptor with `O_NOFOLLOW` at every component.
//! A resolved path holds no symlinks, so meeting one while opening means it
//! changed: refused with `ELOOP` (or `ENOTDIR`), never followed.
//! Every call blocks on the filesystem: async callers run it in `smol::unblock`.

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

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
/// no `.` or `..`) and was a directory when the jail was made; `dir` is a
/// descriptor of that directory, which every open starts from.
#[derive(Debug, Clone)]
pub struct Jail {
    root: PathBuf,
    dir: Arc<OwnedFd>,
}

/// Whether this kernel has `openat2` (0: not tried yet, 1: yes, 2: no).
static OPENAT2: AtomicU8 = AtomicU8::new(0);
/// Retries of an `openat2` that a concurrent rename made fail with `EAGAIN`.
const OPENAT2_RETRIES: usize = 8;

impl Jail {
    /// Canonicalizes `root`; fails if it is missing or not a directory.
    pub fn new(root: &Path) -> io::Result<Jail> {
        let root = fs::canonicalize(root)?;
        let dir = rustix::fs::open(
            &root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::NOTDIR => io::Error::new(
                io::ErrorKind::NotADirectory,
                "workspace root is not a directory",
            ),
            e => io::Error::from(e),
        })?;
        Ok(Jail {
            root,
            dir: Arc::new(dir),
        })
    }

    /// The components of `resolved` (a path [`Jail::resolve`] gave) below the
    /// root. A path outside the root, or with anything but plain names below
    /// it, is refused with `EXDEV`.
    fn below<'a>(&self, resolved: &'a Path) -> io::Result<Vec<&'a OsStr>> {
        let rel = resolved
            .strip_prefix(&self.root)
            .map_err(|_| io::Error::from(Errno::XDEV))?;
        rel.components()
            .filter(|c| !matches!(c, Component::CurDir))
            .map(|c| match c {
                Component::Normal(name) => Ok(name),
                _ => Err(io::Error::from(Errno::XDEV)),
            })
            .collect()
    }

    /// Opens `resolved` beneath the root with `flags` (and `mode` when
    /// creating). `O_CLOEXEC` is always added.
    pub fn open(&self, resolved: &Path, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        let names = self.below(resolved)?;
        let flags = flags | OFlags::CLOEXEC;
        if OPENAT2.load(Ordering::Relaxed) != 2 {
            let rel: PathBuf = if names.is_empty() {
                PathBuf::from(".")
            } else {
                names.iter().collect()
            };
            let how =
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            for _ in 0..OPENAT2_RETRIES {
                match rustix::fs::openat2(self.dir.as_fd(), &rel, flags, mode, how) {
                    Err(Errno::AGAIN) => continue,
                    // No openat2 (old kernel, or a seccomp filter): walk.
                    Err(Errno::NOSYS) | Err(Errno::PERM)
                        if OPENAT2.load(Ordering::Relaxed) == 0 =>
                    {
                        OPENAT2.store(2, Ordering::Relaxed);
                        break;
                    }
                    r => {
                        OPENAT2.store(1, Ordering::Relaxed);
                        return r.map_err(io::Error::from);
                    }
                }
            }
            if OPENAT2.load(Ordering::Relaxed) != 2 {
                return Err(io::Error::from(Errno::AGAIN));
            }
        }
        self.walk(&names, flags, mode)
    }

    /// The fallback of [`Jail::open`]: from the root's descriptor, one
    /// `openat` per component, none of which may be a symlink.
    fn walk(&self, names: &[&OsStr], flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        let Some((last, parents)) = names.split_last() else {
            return rustix::fs::openat(self.dir.as_fd(), ".", flags, mode).map_err(io::Error::from);
        };
        let parent = self.walk_dirs(parents, false)?;
        let at = parent.as_ref().map_or(self.dir.as_fd(), |d| d.as_fd());
        rustix::fs::openat(at, *last, flags | OFlags::NOFOLLOW, mode).map_err(io::Error::from)
    }

    /// Walks the directories `names` from the root without following a
    /// symlink, creating missing ones when `create`; `None` is the root.
    fn walk_dirs(&self, names: &[&OsStr], create: bool) -> io::Result<Option<OwnedFd>> {
        let step = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut cur: Option<OwnedFd> = None;
        for name in names {
            let at = cur.as_ref().map_or(self.dir.as_fd(), |d| d.as_fd());
            let next = match rustix::fs::openat(at, *name, step, Mode::empty()) {
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(at, *name, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    rustix::fs::openat(at, *name, step, Mode::empty())?
                }
                r => r?,
            };
            cur = Some(next);
        }
        Ok(cur)
    }

    /// The directory that holds `resolved`, opened beneath the root (for
    /// `*at` calls on the last component), its missing parents created when
    /// `create`. Returns the descriptor (`O_PATH`) and the last component.
    pub fn parent_dir<'a>(
        &self,
        resolved: &'a Path,
        create: bool,
    ) -> io::Result<(OwnedFd, &'a OsStr)> {
        let names = self.below(resolved)?;
        let Some((last, parents)) = names.split_last() else {
            return Err(io::Error::from(Errno::ISDIR));
        };
        let dir = match self.walk_dirs(parents, create)? {
            Some(d) => d,
            None => rustix::fs::openat(
                self.dir.as_fd(),
                ".",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?,
        };
        Ok((dir, last))
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
    use crate::testing::TempDir;
    use std::os::unix::fs::symlink;

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

    fn read_fd(fd: OwnedFd) -> String {
        use std::io::Read;
        let mut s = String::new();
        fs::File::from(fd).read_to_string(&mut s).unwrap();
        s
    }

    const READ: OFlags = OFlags::RDONLY.union(OFlags::NOFOLLOW);

    #[test]
    fn opens_what_it_resolved_beneath_the_root() {
        let (_tmp, jail) = setup("open");
        let a = jail.resolve("a.txt").unwrap();
        assert_eq!(read_fd(jail.open(&a, READ, Mode::empty()).unwrap()), "a");
        let b = jail.resolve("sub/b.txt").unwrap();
        assert_eq!(read_fd(jail.open(&b, READ, Mode::empty()).unwrap()), "b");
        let names = jail.below(&b).unwrap();
        assert_eq!(
            read_fd(jail.walk(&names, READ, Mode::empty()).unwrap()),
            "b"
        );
        let root = jail.resolve(".").unwrap();
        assert!(
            jail.open(&root, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
                .is_ok()
        );
        let outside = Path::new("/etc/passwd");
        assert_eq!(
            jail.open(outside, READ, Mode::empty())
                .unwrap_err()
                .raw_os_error(),
            Some(Errno::XDEV.raw_os_error())
        );
    }

    /// The race the one-step open closes: the path is resolved, then a
    /// directory in it is swapped for a symlink to the same names outside.
    #[test]
    fn a_symlink_swapped_in_after_resolving_is_never_followed() {
        let (tmp, jail) = setup("swap");
        let outside = tmp.0.join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("b.txt"), "secret").unwrap();
        let resolved = jail.resolve("sub/b.txt").unwrap();
        fs::rename(jail.root().join("sub"), tmp.0.join("sub-moved")).unwrap();
        symlink(&outside, jail.root().join("sub")).unwrap();

        assert!(
            jail.open(&resolved, READ, Mode::empty()).is_err(),
            "openat2 or walk"
        );
        let names = jail.below(&resolved).unwrap();
        assert!(
            jail.walk(&names, READ, Mode::empty()).is_err(),
            "the walk alone"
        );
        assert!(jail.parent_dir(&resolved, true).is_err(), "nor for a write");

        // The last component swapped for a symlink: refused too.
        let a = jail.resolve("a.txt").unwrap();
        fs::remove_file(jail.root().join("a.txt")).unwrap();
        symlink(outside.join("b.txt"), jail.root().join("a.txt")).unwrap();
        assert!(jail.open(&a, READ, Mode::empty()).is_err());
        let names = jail.below(&a).unwrap();
        assert!(jail.walk(&names, READ, Mode::empty()).is_err());
    }

    #[test]
    fn parent_dir_creates_missing_directories_beneath_the_root() {
        let (_tmp, jail) = setup("mkdir");
        let target = jail.resolve("new/deeper/file.txt").unwrap();
        let (dir, name) = jail.parent_dir(&target, true).unwrap();
        assert_eq!(name, "file.txt");
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        drop(fd);
        assert!(jail.root().join("new/deeper/file.txt").is_file());
        let missing = jail.resolve("gone/x.txt").unwrap();
        assert!(jail.parent_dir(&missing, false).is_err(), "no create");
        assert!(
            jail.parent_dir(jail.root(), false).is_err(),
            "the root has no parent here"
        );
    }

    #[test]
    fn messages_are_lowercase_and_name_the_path() {
        let (_tmp, jail) = setup("msg");
        let msg = jail.resolve("../x").unwrap_err().to_string();
        assert!(msg.contains("../x"), "{msg}");
        assert_eq!(msg, msg.to_lowercase());
    }
}
