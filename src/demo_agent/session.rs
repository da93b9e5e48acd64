//! One demo session: its working directory, its history (mirrored to a file
//! when there is a state directory) and the handle of its in-flight turn.

use super::history::{self, Entry, HistoryFile};
use super::peer::TurnEvent;
use crate::core::rpc::RpcError;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// How the dispatch loop reaches a running turn.
#[derive(Debug, Clone)]
pub struct TurnHandle {
    pub wake: Sender<TurnEvent>,
    /// Set by `session/cancel`; checked by the turn at every step.
    pub cancel: Arc<AtomicBool>,
}

impl TurnHandle {
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        let _ = self.wake.send(TurnEvent::Cancel);
    }
}

/// A session. Invariant: at most one turn runs at a time (`turn` is `Some`
/// exactly while it runs).
#[derive(Debug)]
pub struct Session {
    pub cwd: PathBuf,
    pub entries: Vec<Entry>,
    pub file: Option<HistoryFile>,
    pub turn: Option<TurnHandle>,
}

impl Session {
    /// Appends to the history, and to its file when there is one; both are
    /// bounded ([`history::MAX_ENTRIES`], [`history::MAX_HISTORY_BYTES`],
    /// each text cut at [`history::MAX_ENTRY_BYTES`]): past a bound the
    /// oldest entries go and the file is rewritten. A failed write is
    /// logged: the session goes on in memory.
    pub fn record(&mut self, entry: Entry) {
        let entry = history::bounded(entry);
        let line_bytes = history::encode(&entry).len() as u64;
        self.entries.push(entry);
        let over_count = self.entries.len() > history::MAX_ENTRIES;
        let over_bytes = self.file.as_ref().is_some_and(|f| {
            f.over_bound() || f.file_bytes() + line_bytes > history::MAX_HISTORY_BYTES
        });
        if over_count || over_bytes {
            history::trim(&mut self.entries);
        }
        let Some(file) = &mut self.file else {
            return;
        };
        let written = match self.entries.last() {
            Some(last) if !(over_count || over_bytes) => file.append(last),
            _ => file.rewrite(&self.entries),
        };
        if let Err(e) = written {
            log::warn!("demo agent: cannot write {}: {e}", file.path().display());
        }
    }
}

/// ACP `session/close`: cancels the session's turn, if one runs, and forgets
/// the session (its history file stays, so `session/load` can bring it back).
/// Closing a session the agent does not hold is not an error: it is closed.
pub fn close(
    sessions: &mut HashMap<String, Arc<Mutex<Session>>>,
    params: &Value,
) -> Result<Value, RpcError> {
    let sid = params
        .get("sessionId")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("session/close needs `sessionId` (a string)"))?;
    match sessions.remove(sid) {
        Some(s) => {
            let s = s.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = &s.turn {
                t.cancel();
            }
            log::info!("demo agent: closed session {sid}");
        }
        None => log::debug!("demo agent: session/close for unknown session {sid}"),
    }
    Ok(json!({}))
}

/// A fresh session id: `demo-` and 16 hex digits mixed from the time, the
/// process id and a counter, so ids differ across processes and within one.
pub fn new_session_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed =
        nanos ^ (u64::from(std::process::id()) << 40) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("demo-{:016x}", mix(seed))
}

/// splitmix64's finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn session() -> Arc<Mutex<Session>> {
        Arc::new(Mutex::new(Session {
            cwd: PathBuf::from("/"),
            entries: Vec::new(),
            file: None,
            turn: None,
        }))
    }

    #[test]
    fn close_forgets_the_session() {
        let mut sessions = HashMap::new();
        sessions.insert("a".to_owned(), session());
        sessions.insert("b".to_owned(), session());
        assert_eq!(
            close(&mut sessions, &json!({"sessionId": "a"})),
            Ok(json!({}))
        );
        assert!(!sessions.contains_key("a") && sessions.contains_key("b"));
        assert_eq!(
            close(&mut sessions, &json!({"sessionId": "a"})),
            Ok(json!({}))
        );
        assert!(close(&mut sessions, &json!({})).is_err());
    }

    #[test]
    fn ids_are_unique_and_well_formed() {
        let ids: HashSet<String> = (0..1000).map(|_| new_session_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 5 + 16);
            assert!(id.starts_with("demo-"));
            assert!(super::super::history::is_safe_id(id));
        }
    }
}

#[cfg(test)]
mod bounds_tests {
    use super::*;
    use crate::testing::TempDir;

    fn session(dir: &TempDir, id: &str) -> Session {
        Session {
            cwd: PathBuf::from("/w"),
            entries: Vec::new(),
            file: HistoryFile::for_session(&dir.0, id),
            turn: None,
        }
    }

    #[test]
    fn a_history_keeps_its_newest_entries_within_its_bounds() {
        let tmp = TempDir::new("demo-history-bounds");
        let mut s = session(&tmp, "demo-bounds");
        s.record(Entry::Session { cwd: "/w".into() });
        for i in 0..(history::MAX_ENTRIES + 500) {
            s.record(Entry::User {
                text: format!("prompt {i}"),
            });
        }
        assert!(s.entries.len() <= history::MAX_ENTRIES);
        assert_eq!(s.entries[0], Entry::Session { cwd: "/w".into() });
        let newest = format!("prompt {}", history::MAX_ENTRIES + 499);
        assert_eq!(s.entries.last(), Some(&Entry::User { text: newest }));
        // the file holds what memory holds, and a later process reads it so
        let mut again = HistoryFile::for_session(&tmp.0, "demo-bounds").expect("id");
        assert_eq!(again.load().expect("load"), Some(s.entries.clone()));

        // one huge answer is cut; many large ones keep the file bounded
        let mut big = session(&tmp, "demo-big");
        big.record(Entry::Session { cwd: "/w".into() });
        for _ in 0..200 {
            big.record(Entry::Agent {
                text: "é".repeat(history::MAX_ENTRY_BYTES),
            });
        }
        let Some(Entry::Agent { text }) = big.entries.last() else {
            panic!("an answer last");
        };
        assert!(text.len() < history::MAX_ENTRY_BYTES + 64, "{}", text.len());
        assert!(text.ends_with("bytes, cut)"));
        let len = std::fs::metadata(tmp.0.join("demo-big.jsonl"))
            .expect("file")
            .len();
        assert!(len <= history::MAX_HISTORY_BYTES, "{len}");
        let mut again = HistoryFile::for_session(&tmp.0, "demo-big").expect("id");
        assert_eq!(again.load().expect("load"), Some(big.entries.clone()));
    }
}
