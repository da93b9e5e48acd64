//! A demo session's history: the prompts it was given and the text it answered,
//! kept in memory and, with a state directory, appended to
//! `<state_dir>/<sessionId>.jsonl` (one JSON object a line) so that
//! `session/load` in a later process restores it. A torn line is skipped.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Bytes of one recorded text at most (a flood turn's answer is cut).
pub const MAX_ENTRY_BYTES: usize = 64 << 10;
/// Entries a session keeps, in memory and in its file; the oldest go first.
pub const MAX_ENTRIES: usize = 1000;
/// Bytes a history file may grow to before it is rewritten with what the
/// session keeps (trimmed to half of this).
pub const MAX_HISTORY_BYTES: u64 = 4 << 20;

/// One line of history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// First line of every file: the session was created in `cwd`.
    Session { cwd: String },
    /// A prompt's text.
    User { text: String },
    /// Everything the agent streamed as message text during one turn.
    Agent { text: String },
}

/// What `/context` reports: earlier prompts and the most recent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub prompts: usize,
    pub last: Option<String>,
}

impl Context {
    pub fn of(entries: &[Entry]) -> Context {
        let mut prompts = 0;
        let mut last = None;
        for e in entries {
            if let Entry::User { text } = e {
                prompts += 1;
                last = Some(text.clone());
            }
        }
        Context { prompts, last }
    }
}

/// `entry` with its text cut to [`MAX_ENTRY_BYTES`] (on a character
/// boundary, the cut said at the end).
pub fn bounded(entry: Entry) -> Entry {
    let cut = |text: String| {
        if text.len() <= MAX_ENTRY_BYTES {
            return text;
        }
        let mut end = MAX_ENTRY_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes, cut)", &text[..end], text.len())
    };
    match entry {
        Entry::User { text } => Entry::User { text: cut(text) },
        Entry::Agent { text } => Entry::Agent { text: cut(text) },
        e @ Entry::Session { .. } => e,
    }
}

/// Drops the oldest entries (never the first `Session` line) until at most
/// [`MAX_ENTRIES`] remain and they encode to at most half of
/// [`MAX_HISTORY_BYTES`].
pub fn trim(entries: &mut Vec<Entry>) {
    let keep_first = usize::from(matches!(entries.first(), Some(Entry::Session { .. })));
    let mut bytes: u64 = entries.iter().map(|e| encode(e).len() as u64).sum();
    let mut drop = 0;
    while entries.len() - drop > MAX_ENTRIES.max(keep_first + 1)
        || (bytes > MAX_HISTORY_BYTES / 2 && entries.len() - drop > keep_first + 1)
    {
        bytes -= encode(&entries[keep_first + drop]).len() as u64;
        drop += 1;
    }
    entries.drain(keep_first..keep_first + drop);
}

/// True when `id` is usable as a file name: 1–128 ASCII letters, digits, `-`, `_`.
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One entry as a line, newline included.
pub fn encode(entry: &Entry) -> Vec<u8> {
    let mut line = serde_json::to_vec(entry).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Every well-formed line of a history file; blank, torn or foreign lines are
/// skipped (and logged), never fatal.
pub fn decode(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Entry>(line) {
            Ok(e) => entries.push(e),
            Err(e) => log::warn!("demo agent: skipping history line {}: {e}", n + 1),
        }
    }
    entries
}

/// An append-only history file.
#[derive(Debug)]
pub struct HistoryFile {
    path: PathBuf,
    /// The file does not end in a newline (a torn write): start the next
    /// append on a fresh line.
    torn: bool,
    /// Its length as last read or written.
    len: u64,
}

impl HistoryFile {
    /// The file for `id` under `dir`, or `None` when `id` is not a safe file name.
    pub fn for_session(dir: &Path, id: &str) -> Option<HistoryFile> {
        is_safe_id(id).then(|| HistoryFile {
            path: dir.join(format!("{id}.jsonl")),
            torn: false,
            len: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the entries; `Ok(None)` when the file does not exist.
    pub fn load(&mut self) -> io::Result<Option<Vec<Entry>>> {
        let mut bytes = Vec::new();
        match File::open(&self.path) {
            // Bounded whatever the file holds (it is rewritten past the bound).
            Ok(f) => f.take(2 * MAX_HISTORY_BYTES).read_to_end(&mut bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        self.torn = bytes.last().is_some_and(|&b| b != b'\n');
        self.len = bytes.len() as u64;
        let mut entries = decode(&String::from_utf8_lossy(&bytes));
        // A file written by an older agent may be past the bounds.
        if self.over_bound() || entries.len() > MAX_ENTRIES {
            trim(&mut entries);
        }
        Ok(Some(entries))
    }

    /// Appends one entry as one line and flushes it to the file.
    pub fn append(&mut self, entry: &Entry) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut line = Vec::new();
        if self.torn {
            line.push(b'\n');
        }
        line.extend_from_slice(&encode(entry));
        f.write_all(&line)?;
        f.flush()?;
        self.torn = false;
        self.len += line.len() as u64;
        Ok(())
    }

    /// Its length as last read or written.
    pub fn file_bytes(&self) -> u64 {
        self.len
    }

    /// Whether the file has grown past [`MAX_HISTORY_BYTES`].
    pub fn over_bound(&self) -> bool {
        self.len > MAX_HISTORY_BYTES
    }

    /// Replaces the file with `entries`, through a temporary file renamed
    /// into place (a crash leaves the old file or the new one).
    pub fn rewrite(&mut self, entries: &[Entry]) -> io::Result<()> {
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut bytes = Vec::new();
        for e in entries {
            bytes.extend_from_slice(&encode(e));
        }
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, &self.path)?;
        self.torn = false;
        self.len = bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn context_counts_prompts() {
        let entries = vec![
            Entry::Session { cwd: "/w".into() },
            Entry::User { text: "one".into() },
            Entry::Agent {
                text: "echo: one".into(),
            },
            Entry::User { text: "two".into() },
        ];
        assert_eq!(
            Context::of(&entries),
            Context {
                prompts: 2,
                last: Some("two".into())
            }
        );
        assert_eq!(
            Context::of(&entries[..1]),
            Context {
                prompts: 0,
                last: None
            }
        );
    }

    #[test]
    fn safe_ids() {
        assert!(is_safe_id("demo-0123456789abcdef"));
        assert!(!is_safe_id(""));
        assert!(!is_safe_id("../etc/passwd"));
        assert!(!is_safe_id("a/b"));
        assert!(!is_safe_id(&"a".repeat(129)));
        assert!(HistoryFile::for_session(Path::new("/tmp"), "x/../y").is_none());
    }

    #[test]
    fn file_round_trip() {
        let tmp = TempDir::new("demo-history-roundtrip");
        let dir = tmp.0.clone();
        let mut f = HistoryFile::for_session(&dir, "demo-1").expect("safe id");
        assert_eq!(f.load().expect("load"), None);
        let entries = vec![
            Entry::Session { cwd: "/w".into() },
            Entry::User {
                text: "line one\n\"quoted\" ✓".into(),
            },
            Entry::Agent {
                text: "echo: line one".into(),
            },
        ];
        for e in &entries {
            f.append(e).expect("append");
        }
        let mut again = HistoryFile::for_session(&dir, "demo-1").expect("safe id");
        assert_eq!(again.load().expect("load"), Some(entries));
    }

    #[test]
    fn torn_last_line_is_skipped_and_next_append_starts_fresh() {
        let tmp = TempDir::new("demo-history-torn");
        let dir = tmp.0.clone();
        let mut f = HistoryFile::for_session(&dir, "demo-2").expect("safe id");
        f.append(&Entry::Session { cwd: "/w".into() })
            .expect("append");
        f.append(&Entry::User {
            text: "kept".into(),
        })
        .expect("append");
        let mut torn = encode(&Entry::Agent {
            text: "lost".into(),
        });
        torn.truncate(torn.len() / 2);
        OpenOptions::new()
            .append(true)
            .open(f.path())
            .and_then(|mut h| h.write_all(&torn))
            .expect("tear");

        let mut again = HistoryFile::for_session(&dir, "demo-2").expect("safe id");
        let loaded = again.load().expect("load").expect("exists");
        assert_eq!(
            loaded,
            vec![
                Entry::Session { cwd: "/w".into() },
                Entry::User {
                    text: "kept".into()
                }
            ]
        );

        again
            .append(&Entry::User {
                text: "after".into(),
            })
            .expect("append");
        let mut third = HistoryFile::for_session(&dir, "demo-2").expect("safe id");
        let loaded = third.load().expect("load").expect("exists");
        assert_eq!(
            loaded.last(),
            Some(&Entry::User {
                text: "after".into()
            })
        );
        assert_eq!(loaded.len(), 3);
    }

    #[test]
    fn decode_skips_garbage() {
        let text = "{\"type\":\"user\",\"text\":\"a\"}\n\nnot json\n{\"type\":\"other\"}\n{\"type\":\"agent\",\"text\":\"b\"}\n";
        assert_eq!(
            decode(text),
            vec![
                Entry::User { text: "a".into() },
                Entry::Agent { text: "b".into() }
            ]
        );
    }
}
