//! Session transcripts on disk: one append-only file per session holding its
//! metadata and its stamped frames, so a relay killed with `kill -9` lists the
//! same sessions and shows the same transcripts when it starts again. Every
//! write happens on one background writer thread; the executor thread only
//! queues work and never blocks on a file (reads run in `smol::unblock`).
//!
//! # Format
//!
//! `<data-dir>/sessions/<name>.jsonl`, where `<name>` is the session id with
//! every byte outside `[A-Za-z0-9_-]` replaced by `_`, cut to 48 characters,
//! then `.` and the 64-bit FNV-1a hash of the id in hex. The name never holds a
//! `/` or a `.` from the id, so no id can reach outside the directory. Lines:
//!
//! - line 1, the header: `{"acpRelayTranscript":1,"sessionId":"<id>"}`;
//! - metadata: `{"meta":{"title":..,"cwd":..,"createdMs":..,"updatedMs":..,
//!   "agentSession":..,"headSeq":..,"reserved":..}}`; the last one wins, and
//!   it is written again after every [`META_REPEAT_BYTES`] of frames;
//! - frames, stored as they were sent: `{"rseq":N,...}`, `N` increasing by
//!   one. A frame the store had to drop (its queue full, the disk full)
//!   leaves a gap in the numbers, and so does a crash (the next run numbers
//!   on past the reservation): the gap is the record of the hole. A restored
//!   history holds the frames on both sides (a device resuming from before
//!   the hole is reset); a range replay ([`Store::load_range`]) never
//!   crosses one.
//!
//! # Durability
//!
//! `reserved` is the numbering reservation: the router sends a device no
//! `rseq` above the reservation the store has acknowledged as fsync'd
//! ([`Store::reserve`]), and a restored session numbers on after the largest
//! of its last frame, `headSeq` and `reserved`. So a number once sent never
//! names other content after a crash. Reservations wait beside the queue,
//! not in it: the writer takes them between any two operations, so a flood
//! of frames queued ahead never holds back the numbers its next frames need. [`Store::end`] records the exact end of
//! a session (a clean stop), so its devices resume without a reset.
//!
//! A line is told apart by its first key. Reading goes backwards from the end,
//! so loading the newest frames costs what it returns, not the file's size. A
//! last line without its newline (a write cut by a crash) is ignored; damaged
//! lines anywhere are skipped and counted in a log line. When the writer opens
//! a file whose last line is torn it ends that line first, so new lines stay
//! whole. A file over [`MAX_TRANSCRIPT_BYTES`] is rewritten with its header,
//! its metadata and its newest frames (half the bound), then renamed into place.

mod format;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use bytes::Bytes;

pub use format::file_name;

/// Bound on the operations waiting for the writer thread; frames past it are
/// dropped (and counted) rather than blocking the executor.
pub const MAX_QUEUED_OPS: usize = 65536;
/// Bound on the frame bytes waiting for the writer thread.
pub const MAX_QUEUED_BYTES: usize = 32 << 20;
/// Extra room in the queue for metadata, sync and flush requests, so a flood of
/// frames cannot crowd out a session's title or its turn-end fsync.
pub const CONTROL_HEADROOM_OPS: usize = 1024;
/// Sessions with a numbering reservation waiting for the writer; past it a
/// reservation is acknowledged undurable (and logged) rather than queued.
pub const MAX_PENDING_RESERVATIONS: usize = 1024;
/// Bound on one transcript file. Past it the file is compacted to its newest
/// frames (half the bound); a frame larger than a quarter of it is not stored.
pub const MAX_TRANSCRIPT_BYTES: u64 = 64 << 20;
/// Bound on a session id's length; longer ids are not stored.
pub const MAX_SESSION_ID_BYTES: usize = 1024;
/// Bound on open transcript files held by the writer (least recently used go).
pub const MAX_OPEN_FILES: usize = 32;
/// Buffered bytes reach the OS at least this often, so `kill -9` loses at most
/// about this much of the newest frames.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Metadata is written again after this many bytes of frames, so reading
/// backwards from the end finds it soon.
pub const META_REPEAT_BYTES: u64 = 1 << 20;
/// Deadline on [`Store::load`].
pub const LOAD_DEADLINE: Duration = Duration::from_secs(10);

pub use crate::core::router::SessionMeta;

/// A session read back from disk.
#[derive(Debug)]
pub struct StoredSession {
    pub meta: SessionMeta,
    /// The newest frames, oldest first, within the bounds given to
    /// [`Store::load`]; `rseq` strictly increases along them.
    pub frames: Vec<Bytes>,
}

/// Why the store could not do what was asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// A file or directory could not be read or written.
    Io { path: PathBuf, source: io::Error },
    /// No transcript is stored for this session.
    NotFound { session_id: String },
    /// The file where this session belongs is not one of our transcripts.
    NotATranscript { path: PathBuf },
    /// Reading took longer than [`LOAD_DEADLINE`].
    Timeout { session_id: String, after: Duration },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { path, source } => write!(
                f,
                "session store {}: {source}; check the data directory's permissions and free space",
                path.display()
            ),
            StoreError::NotFound { session_id } => write!(
                f,
                "no stored session {session_id:?}; list sessions with session/list"
            ),
            StoreError::NotATranscript { path } => write!(
                f,
                "{} is not an acp-relay transcript; move it out of the sessions directory",
                path.display()
            ),
            StoreError::Timeout { session_id, after } => write!(
                f,
                "reading session {session_id:?} took more than {}s; try again",
                after.as_secs()
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Bounds the store enforces; tests shrink them.
#[derive(Debug, Clone, Copy)]
struct StoreLimits {
    max_file_bytes: u64,
    queue_ops: usize,
    queue_bytes: usize,
}

impl StoreLimits {
    const DEFAULT: StoreLimits = StoreLimits {
        max_file_bytes: MAX_TRANSCRIPT_BYTES,
        queue_ops: MAX_QUEUED_OPS,
        queue_bytes: MAX_QUEUED_BYTES,
    };
}

/// Work for the writer thread.
enum Op {
    Meta(Box<SessionMeta>),
    Frame {
        session_id: String,
        frame: Bytes,
    },
    Sync(String),
    /// Fsync, then acknowledge `synced = upto`.
    SyncUpto {
        session_id: String,
        upto: u64,
    },
    /// Wakes an idle writer for the reservations waiting beside the queue
    /// ([`WriterQueue::reservations`]); does nothing itself.
    Wake,
    /// Record and fsync the exact end of a session's numbering.
    End {
        session_id: String,
        head: u64,
    },
    Delete(String),
    Flush {
        session_id: String,
        done: smol::channel::Sender<()>,
    },
    Close(smol::channel::Sender<()>),
}

impl Op {
    /// Bytes this op holds in the queue, as counted against `queue_bytes`.
    fn cost(&self) -> usize {
        match self {
            Op::Frame { session_id, frame } => session_id.len() + frame.len(),
            _ => 0,
        }
    }
}

/// What the store acknowledges for one session: everything up to these
/// numbers is on disk and fsync'd.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurableAck {
    /// The durable numbering reservation.
    pub reserved: u64,
    /// Frames up to this `rseq` are fsync'd.
    pub synced: u64,
}

/// Queue accounting and acknowledgements shared by the handle and the writer
/// thread.
struct WriterQueue {
    ops: AtomicUsize,
    bytes: AtomicUsize,
    dropped: AtomicU64,
    dropping: AtomicBool,
    /// Failing spells logged (one warning each).
    failing_spells: AtomicU64,
    /// Files the writer holds open (each with a buffer of its own).
    open_files: AtomicUsize,
    /// Acknowledgements not yet taken, coalesced per session: at most one
    /// entry per session with a request in flight, so bounded by the live
    /// sessions.
    acks: Mutex<HashMap<String, DurableAck>>,
    /// Wakes the executor task that takes the acks (capacity 1: a pending
    /// wake-up covers every ack queued after it).
    wake: smol::channel::Sender<()>,
    /// Numbering reservations to record and fsync, coalesced per session
    /// (at most [`MAX_PENDING_RESERVATIONS`]). They wait beside the queue,
    /// not in it: a reservation names no frame, so the writer takes them
    /// between any two operations and a flood's frames queued ahead never
    /// delay the acknowledgement its next frames wait for.
    reservations: Mutex<HashMap<String, u64>>,
    /// Set when `reservations` holds any (read by the writer after each op).
    reserving: AtomicBool,
}

impl WriterQueue {
    fn received(&self, op: &Op) {
        self.ops.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(op.cost(), Ordering::Relaxed);
    }

    fn ack(&self, session_id: &str, reserved: u64, synced: u64) {
        if let Ok(mut acks) = self.acks.lock() {
            let a = acks.entry(session_id.to_owned()).or_default();
            a.reserved = a.reserved.max(reserved);
            a.synced = a.synced.max(synced);
        }
        let _ = self.wake.try_send(());
    }
}

/// Handle used on the executor thread; every write goes to a background writer
/// thread through a bounded queue, so no method blocks (except
/// [`Store::close`], up to its deadline).
pub struct Store {
    sessions_dir: PathBuf,
    tx: mpsc::Sender<Op>,
    shared: Arc<WriterQueue>,
    acks_rx: smol::channel::Receiver<()>,
    limits: StoreLimits,
    closed: AtomicBool,
}

impl Store {
    /// Opens (creates) `dir/sessions/`, scans it and starts the writer thread.
    /// Returns the handle and every readable session's metadata, newest first,
    /// after keeping only the newest `keep_sessions` (at least one) files.
    ///
    /// Blocking: call it once at startup, before the executor runs. A damaged
    /// file never fails it: torn or garbage lines are skipped, an empty file is
    /// removed, a file that is not a transcript is renamed to `*.corrupt`.
    ///
    /// ```no_run
    /// let (store, sessions) = acp_relay::store::transcript::Store::open(
    ///     std::path::Path::new("/tmp/acp-relay"),
    ///     200,
    /// )?;
    /// println!("{} stored sessions", sessions.len());
    /// store.close(std::time::Duration::from_secs(2));
    /// # Ok::<(), acp_relay::store::transcript::StoreError>(())
    /// ```
    pub fn open(dir: &Path, keep_sessions: usize) -> Result<(Store, Vec<SessionMeta>), StoreError> {
        Store::open_with(dir, keep_sessions, StoreLimits::DEFAULT)
    }

    fn open_with(
        dir: &Path,
        keep_sessions: usize,
        limits: StoreLimits,
    ) -> Result<(Store, Vec<SessionMeta>), StoreError> {
        let sessions_dir = dir.join("sessions");
        let io_err = |source| StoreError::Io {
            path: sessions_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&sessions_dir).map_err(io_err)?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&sessions_dir, std::fs::Permissions::from_mode(0o700));
        }
        let mut found = format::scan_dir(&sessions_dir).map_err(io_err)?;
        found.sort_by(|a, b| {
            b.rank
                .cmp(&a.rank)
                .then_with(|| a.meta.session_id.cmp(&b.meta.session_id))
        });
        let keep = keep_sessions.max(1);
        for old in found.drain(keep.min(found.len())..) {
            match std::fs::remove_file(&old.path) {
                Ok(()) => log::info!(
                    "removed stored session {:?} (keeping the newest {keep})",
                    old.meta.session_id
                ),
                Err(e) => log::warn!("removing {}: {e}", old.path.display()),
            }
        }
        let metas = found.iter().map(|f| f.meta.clone()).collect();
        let (tx, rx) = mpsc::channel();
        let (wake, acks_rx) = smol::channel::bounded(1);
        let shared = Arc::new(WriterQueue {
            ops: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            dropping: AtomicBool::new(false),
            failing_spells: AtomicU64::new(0),
            open_files: AtomicUsize::new(0),
            acks: Mutex::new(HashMap::new()),
            wake,
            reservations: Mutex::new(HashMap::new()),
            reserving: AtomicBool::new(false),
        });
        let w = writer::Writer::new(
            sessions_dir.clone(),
            keep,
            limits,
            found,
            rx,
            shared.clone(),
        );
        // Detached: `close` waits for its answer, not for the thread.
        std::thread::Builder::new()
            .name("acp-relay-store".into())
            .spawn(move || w.run())
            .map_err(io_err)?;
        let store = Store {
            sessions_dir,
            tx,
            shared,
            acks_rx,
            limits,
            closed: AtomicBool::new(false),
        };
        Ok((store, metas))
    }

    /// Queues: record (replace) a session's metadata, creating its transcript
    /// when it has none. Never blocks.
    pub fn put_meta(&self, meta: SessionMeta) {
        if !self.send_control(Op::Meta(Box::new(meta))) {
            log::warn!("writer queue is full or closed; a metadata update is lost");
        }
    }

    /// Queues: append one stamped frame (`{"rseq":N,...}`, no newline) to a
    /// session's transcript. Never blocks: when the queue is full the frame is
    /// dropped, counted in [`Store::dropped`] and logged once per episode.
    pub fn append(&self, session_id: &str, frame: Bytes) {
        self.append_owned(session_id.to_owned(), frame);
    }

    /// [`Store::append`] taking the session id by value (no copy per frame).
    pub fn append_owned(&self, session_id: String, frame: Bytes) {
        let cost = session_id.len() + frame.len();
        let s = &self.shared;
        let full = s.ops.load(Ordering::Relaxed) >= self.limits.queue_ops
            || s.bytes.load(Ordering::Relaxed) + cost > self.limits.queue_bytes;
        let op = Op::Frame { session_id, frame };
        let refused = if full { Some(op) } else { self.send(op).err() };
        if let Some(Op::Frame { session_id, .. }) = refused {
            s.dropped.fetch_add(1, Ordering::Relaxed);
            if !s.dropping.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "writer queue is full or closed; dropping frames of session {session_id:?} \
                     until it drains (they will be missing after a restart)"
                );
            }
        } else if s.dropping.swap(false, Ordering::Relaxed) {
            log::info!(
                "writer queue drained; storing frames again ({} dropped so far)",
                s.dropped.load(Ordering::Relaxed)
            );
        }
    }

    /// Frames dropped because the writer's queue was full (or closed).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Queues: write out and fsync this session's transcript (at turn ends).
    pub fn sync(&self, session_id: &str) {
        if !self.send_control(Op::Sync(session_id.to_owned())) {
            log::warn!("writer queue is full or closed; session {session_id:?} was not synced");
        }
    }

    /// Queues: write out and fsync this session's frames, then acknowledge
    /// `synced = upto` (see [`Store::take_acks`]). When the request cannot be
    /// queued it is acknowledged at once, so a session never waits forever.
    pub fn sync_upto(&self, session_id: &str, upto: u64) {
        let op = Op::SyncUpto {
            session_id: session_id.to_owned(),
            upto,
        };
        if !self.send_control(op) {
            log::warn!("writer queue is full or closed; session {session_id:?} was not synced");
            self.shared.ack(session_id, 0, upto);
        }
    }

    /// Asks the writer to record and fsync the numbering reservation `upto`,
    /// then acknowledge it; taken ahead of the frames queued (see
    /// [`WriterQueue::reservations`]). When it cannot be taken it is
    /// acknowledged at once (live service goes on; the log says the
    /// reservation is not durable).
    pub fn reserve(&self, session_id: &str, upto: u64) {
        let taken = !self.closed.load(Ordering::Relaxed)
            && self.shared.reservations.lock().is_ok_and(|mut r| {
                if let Some(u) = r.get_mut(session_id) {
                    *u = (*u).max(upto);
                    true
                } else if r.len() < MAX_PENDING_RESERVATIONS {
                    r.insert(session_id.to_owned(), upto);
                    true
                } else {
                    false
                }
            });
        if taken {
            self.shared.reserving.store(true, Ordering::Release);
            // A busy writer takes it after its current op; an idle one needs this.
            let _ = self.enqueue(Op::Wake);
        } else {
            log::warn!(
                "store closed or {MAX_PENDING_RESERVATIONS} reservations waiting; session \
                 {session_id:?}: numbering reservation {upto} is not durable"
            );
            self.shared.ack(session_id, upto, 0);
        }
    }

    /// Queues: record that the session's numbering ends exactly at `head`
    /// (clean stop or session ended), fsync'd.
    pub fn end(&self, session_id: &str, head: u64) {
        let op = Op::End {
            session_id: session_id.to_owned(),
            head,
        };
        if !self.send_control(op) {
            log::warn!("writer queue is full or closed; session {session_id:?}: end not recorded");
        }
    }

    /// Queues: remove the session's transcript.
    pub fn delete(&self, session_id: &str) {
        if !self.send_control(Op::Delete(session_id.to_owned())) {
            log::warn!("writer queue is full or closed; session {session_id:?} was not removed");
        }
    }

    /// Resolves when acknowledgements may be waiting in [`Store::take_acks`];
    /// `Err` once the writer is gone.
    pub async fn acks_ready(&self) -> Result<(), smol::channel::RecvError> {
        self.acks_rx.recv().await
    }

    /// Takes the acknowledgements gathered since the last call.
    pub fn take_acks(&self) -> Vec<(String, DurableAck)> {
        match self.shared.acks.lock() {
            Ok(mut acks) => acks.drain().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Frame bytes waiting for the writer thread (they count against the
    /// relay's memory budget).
    pub fn queued_bytes(&self) -> usize {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    /// Bytes the store holds in memory: its queue and the open files'
    /// write buffers (they count against the relay's memory budget).
    pub fn buffered_bytes(&self) -> usize {
        self.queued_bytes() + self.shared.open_files.load(Ordering::Relaxed) * writer::BUF_BYTES
    }

    /// Failing spells logged since the store opened (one warning each).
    pub fn failing_spells(&self) -> u64 {
        self.shared.failing_spells.load(Ordering::Relaxed)
    }

    /// Reads one session back: its metadata and its newest frames, at most
    /// `max_frames` of them and at most `max_bytes` in all. Everything queued
    /// before the call is written out first. Runs on a blocking thread, within
    /// [`LOAD_DEADLINE`].
    pub async fn load(
        &self,
        session_id: &str,
        max_frames: usize,
        max_bytes: usize,
    ) -> Result<StoredSession, StoreError> {
        self.read_flushed(session_id, move |path, id| {
            format::read_session(path, id, max_frames, max_bytes)
        })
        .await
    }

    /// Reads the frames numbered `(after, upto]` of a session, oldest first,
    /// at most `max_bytes` of them: a replay the ring no longer holds. `None`
    /// when they are not all on disk within the bound. Everything queued
    /// before the call is written out first; runs on a blocking thread within
    /// [`LOAD_DEADLINE`].
    pub async fn load_range(
        &self,
        session_id: &str,
        after: u64,
        upto: u64,
        max_bytes: usize,
    ) -> Result<Option<Vec<Bytes>>, StoreError> {
        if upto <= after {
            return Ok(Some(Vec::new()));
        }
        self.read_flushed(session_id, move |path, id| {
            format::read_range(path, id, after, upto, max_bytes)
        })
        .await
    }

    /// Runs `read` on a blocking thread over the session's file once
    /// everything queued before the call is written out, within
    /// [`LOAD_DEADLINE`].
    async fn read_flushed<T: Send + 'static>(
        &self,
        session_id: &str,
        read: impl FnOnce(&Path, &str) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (done_tx, done_rx) = smol::channel::bounded(1);
        let queued = self.send_control(Op::Flush {
            session_id: session_id.to_owned(),
            done: done_tx,
        });
        let path = self.sessions_dir.join(file_name(session_id));
        let id = session_id.to_owned();
        let work = async move {
            if queued {
                // An error means the writer is gone; what it wrote is on disk.
                let _ = done_rx.recv().await;
            }
            smol::unblock(move || read(&path, &id)).await
        };
        let deadline = async {
            smol::Timer::after(LOAD_DEADLINE).await;
            Err(StoreError::Timeout {
                session_id: session_id.to_owned(),
                after: LOAD_DEADLINE,
            })
        };
        futures_lite::future::or(work, deadline).await
    }

    /// Writes out and fsyncs everything queued, then stops the writer thread.
    /// Blocks for at most `deadline`: call it at shutdown, or use
    /// [`Store::close_async`] on the executor. Later writes are dropped.
    pub fn close(&self, deadline: Duration) {
        smol::block_on(self.close_async(deadline));
    }

    /// [`Store::close`] without blocking the calling thread: resolves when
    /// everything is on disk, or after `deadline`.
    pub async fn close_async(&self, deadline: Duration) {
        if self.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        let (done_tx, done_rx) = smol::channel::bounded(1);
        if self.enqueue(Op::Close(done_tx)).is_err() {
            return;
        }
        let done = async { done_rx.recv().await.is_ok() };
        let late = async {
            smol::Timer::after(deadline).await;
            false
        };
        if !futures_lite::future::or(done, late).await {
            log::warn!(
                "writer did not finish within {}ms; the newest frames may be lost",
                deadline.as_millis()
            );
        }
    }

    /// Queues a metadata, sync or flush request, which may use the headroom
    /// above the frame bound.
    fn send_control(&self, op: Op) -> bool {
        let bound = self.limits.queue_ops + CONTROL_HEADROOM_OPS;
        self.shared.ops.load(Ordering::Relaxed) < bound && self.send(op).is_ok()
    }

    /// Queues `op` unless the store is closed; gives it back when refused.
    fn send(&self, op: Op) -> Result<(), Op> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(op);
        }
        self.enqueue(op)
    }

    fn enqueue(&self, op: Op) -> Result<(), Op> {
        let cost = op.cost();
        self.shared.ops.fetch_add(1, Ordering::Relaxed);
        self.shared.bytes.fetch_add(cost, Ordering::Relaxed);
        self.tx.send(op).map_err(|mpsc::SendError(op)| {
            self.shared.ops.fetch_sub(1, Ordering::Relaxed);
            self.shared.bytes.fetch_sub(cost, Ordering::Relaxed);
            op
        })
    }
}
