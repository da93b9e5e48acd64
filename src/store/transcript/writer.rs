//! The writer thread: owns the open transcript files (at most
//! [`MAX_OPEN_FILES`], least recently used closed first), buffers appends,
//! writes them out when the queue is idle and at least every
//! [`FLUSH_INTERVAL`], fsyncs on request, prunes old sessions and compacts
//! files past their bound. Logs I/O errors; never panics on them.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::format::{self, Bounds, Found, HeaderCheck, MetaRecord};
use super::{
    FLUSH_INTERVAL, MAX_OPEN_FILES, MAX_SESSION_ID_BYTES, META_REPEAT_BYTES, Op, StoreLimits,
    WriterQueue,
};
use crate::core::frame::find_byte;

/// Buffer per open file.
pub(super) const BUF_BYTES: usize = 64 << 10;
/// Least time between two logs of failures to create a transcript.
const QUIET_FOR: Duration = Duration::from_secs(10);

/// While operations keep coming, the writer naps this long when its queue is
/// empty instead of parking on it: the executor's sends then wake no thread
/// (a futex wake per frame otherwise, on the relay's one thread) and the
/// writer drains a batch and writes it with one `write(2)` (one per frame
/// otherwise). A turn end's fsync is asked at most this much later.
const BATCH_NAP: Duration = Duration::from_micros(500);
/// How long after its last operation the writer keeps napping before it
/// parks on the queue (an idle relay's writer sleeps until it is sent one).
const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// How soon a numbering reservation the disk refused is tried again.
pub(super) const RESERVE_RETRY: Duration = Duration::from_millis(500);

/// A run of failures of one kind of write: the first is logged, the rest
/// only counted, and the success that ends the run logs how many there were.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct Spell {
    failures: u64,
}

impl Spell {
    /// One more failure; `true` when it starts the spell (log it).
    pub(super) fn failed(&mut self) -> bool {
        self.failures += 1;
        self.failures == 1
    }

    /// A success; `Some(n)` when it ends a spell of `n` failures (log that).
    pub(super) fn succeeded(&mut self) -> Option<u64> {
        (self.failures > 0).then(|| std::mem::take(&mut self.failures))
    }

    pub(super) fn failing(&self) -> bool {
        self.failures > 0
    }
}

/// What the writer knows of one transcript on disk.
struct Entry {
    /// The last metadata written, if any.
    meta: Option<MetaRecord>,
    /// Pruning order: `updated_ms`, else when the file was first seen.
    rank: u64,
    /// Failed writes since bytes last reached the file: ended when a flush
    /// succeeds, not when bytes only reach the buffer.
    spell: Spell,
    /// The file is full and could not be compacted: frames are not stored.
    full: bool,
    /// Frame bytes written since the last metadata line.
    since_meta: u64,
}

struct OpenFile {
    session_id: String,
    w: BufWriter<File>,
    /// File length including buffered bytes.
    len: u64,
}

pub(super) struct Writer {
    dir: PathBuf,
    keep: usize,
    limits: StoreLimits,
    index: HashMap<String, Entry>,
    /// Least recently used first.
    open: VecDeque<OpenFile>,
    /// When the oldest unflushed write was buffered.
    dirty_since: Option<Instant>,
    rx: mpsc::Receiver<Op>,
    shared: Arc<WriterQueue>,
    /// When a failure to create a transcript was last logged.
    unlisted_warned: Option<Instant>,
    /// Failed fsyncs of the directory (which make new and removed names
    /// durable) since the last one that worked.
    dir_spell: Spell,
    /// Reservations the disk refused, per session (the largest asked): never
    /// acknowledged until written and fsync'd, tried again at `retry_at`.
    /// One entry per session, so bounded by the sessions the store keeps.
    retry: HashMap<String, u64>,
    retry_at: Option<Instant>,
    /// When the last operation arrived: within [`BATCH_WINDOW`] of it the
    /// writer naps rather than parks.
    last_op: Option<Instant>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Drops a writer without writing what it buffered.
fn discard(of: OpenFile) {
    let _ = of.w.into_parts();
}

impl Writer {
    pub(super) fn new(
        dir: PathBuf,
        keep: usize,
        limits: StoreLimits,
        found: Vec<Found>,
        rx: mpsc::Receiver<Op>,
        shared: Arc<WriterQueue>,
    ) -> Writer {
        let index = found
            .into_iter()
            .map(|f| {
                let entry = Entry {
                    meta: f.record,
                    rank: f.rank,
                    spell: Spell::default(),
                    full: false,
                    since_meta: 0,
                };
                (f.meta.session_id, entry)
            })
            .collect();
        Writer {
            dir,
            keep,
            limits,
            index,
            open: VecDeque::new(),
            dirty_since: None,
            rx,
            shared,
            unlisted_warned: None,
            dir_spell: Spell::default(),
            retry: HashMap::new(),
            retry_at: None,
            last_op: None,
        }
    }

    pub(super) fn run(mut self) {
        loop {
            // Wake for the next flush, or the next try of a refused reservation.
            let flush_in = self
                .dirty_since
                .map(|t| FLUSH_INTERVAL.saturating_sub(t.elapsed()));
            let retry_in = self
                .retry_at
                .map(|t| t.saturating_duration_since(Instant::now()));
            let wait = match (flush_in, retry_in) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let busy = self.last_op.is_some_and(|t| t.elapsed() < BATCH_WINDOW);
            let mut nap = false;
            let received = match wait {
                _ if busy => match self.rx.try_recv() {
                    Ok(op) => Some(op),
                    Err(mpsc::TryRecvError::Empty) => {
                        nap = true;
                        None
                    }
                    Err(mpsc::TryRecvError::Disconnected) => break,
                },
                Some(wait) => match self.rx.recv_timeout(wait) {
                    Ok(op) => Some(op),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match self.rx.recv() {
                    Ok(op) => Some(op),
                    Err(mpsc::RecvError) => break,
                },
            };
            if let Some(op) = received {
                self.last_op = Some(Instant::now());
                self.shared.received(&op);
                if let Op::Close(done) = op {
                    self.reserve_pending();
                    self.finish();
                    let _ = done.try_send(());
                    return;
                }
                self.handle(op);
                self.shared
                    .open_files
                    .store(self.open.len(), Ordering::Relaxed);
            }
            self.reserve_pending();
            let idle = self.shared.ops.load(Ordering::Relaxed) == 0;
            if idle
                || self
                    .dirty_since
                    .is_some_and(|t| t.elapsed() >= FLUSH_INTERVAL)
            {
                self.flush_all();
            }
            if nap {
                std::thread::sleep(BATCH_NAP);
            }
        }
        // Every handle is gone without a close: still leave the files whole.
        self.finish();
    }

    fn handle(&mut self, op: Op) {
        match op {
            Op::Meta(meta) => {
                if !valid_id(&meta.session_id) {
                    return;
                }
                let mut record = MetaRecord::from(&*meta);
                if !self.ensure_open(&meta.session_id) {
                    return;
                }
                if let Some(e) = self.index.get_mut(&meta.session_id) {
                    // A reservation only grows (but through `End`).
                    record.reserved = e.meta.as_ref().map_or(0, |m| m.reserved);
                    e.rank = meta.updated_ms;
                    e.meta = Some(record.clone());
                    e.since_meta = 0;
                }
                let line = format::meta_line(&record);
                if self.write(&meta.session_id, &[&line], false) {
                    self.wrote(&meta.session_id);
                }
            }
            Op::Frame { session_id, frame } => {
                if !valid_id(&session_id) {
                    return;
                }
                let max_frame = (self.limits.max_file_bytes / 4) as usize;
                if !frame.starts_with(format::FRAME_PREFIX) || find_byte(b'\n', &frame).is_some() {
                    log::warn!(
                        "session {session_id:?}: not storing a frame that is not one stamped JSON line"
                    );
                    return;
                }
                if frame.len() > max_frame {
                    log::warn!(
                        "session {session_id:?}: not storing a frame of {} bytes (at most {max_frame})",
                        frame.len()
                    );
                    return;
                }
                if self.index.get(&session_id).is_some_and(|e| e.full) {
                    return;
                }
                if !self.ensure_open(&session_id) {
                    return;
                }
                let e = if self.write(&session_id, &[&frame, b"\n"], true) {
                    self.wrote(&session_id)
                } else {
                    self.index.get_mut(&session_id)
                };
                let Some(e) = e else {
                    return;
                };
                e.since_meta += frame.len() as u64 + 1;
                if e.since_meta >= META_REPEAT_BYTES
                    && let Some(record) = &e.meta
                {
                    e.since_meta = 0;
                    let line = format::meta_line(record);
                    if self.write(&session_id, &[&line], false) {
                        self.wrote(&session_id);
                    }
                }
            }
            Op::Sync(session_id) => {
                self.sync_file(&session_id);
            }
            Op::SyncUpto { session_id, upto } => {
                self.sync_file(&session_id);
                // Acknowledged even when the disk failed (that is logged):
                // live service goes on rather than every device waiting.
                self.shared.ack(&session_id, 0, upto);
            }
            Op::Wake => {}
            Op::End { session_id, head } => {
                // Not fsync'd here: a lost end only costs devices a reset (the
                // reservation it lowers is durable). At a clean stop the
                // writer's close fsyncs every open file, these included.
                if valid_id(&session_id) {
                    self.record(&session_id, |m| m.end_at(head), false);
                }
            }
            Op::Delete(session_id) => self.delete(&session_id),
            Op::Flush { session_id, done } => {
                if let Some(pos) = self.position(&session_id) {
                    match self.open[pos].w.flush() {
                        Ok(()) => self.flushed(&session_id),
                        Err(e) => self.fail(&session_id, e),
                    }
                }
                let _ = done.try_send(());
            }
            Op::Close(_) => {}
        }
    }

    /// Writes out and fsyncs one session's open file.
    /// `true` when everything written to it is on disk.
    fn sync_file(&mut self, session_id: &str) -> bool {
        let Some(pos) = self.position(session_id) else {
            return false;
        };
        let of = &mut self.open[pos];
        match of.w.flush().and_then(|()| of.w.get_ref().sync_data()) {
            Ok(()) => {
                self.flushed(session_id);
                true
            }
            Err(e) => {
                self.fail(session_id, e);
                false
            }
        }
    }

    /// Changes a session's metadata record, writes it and (with `sync`)
    /// fsyncs the file. `true` when the record reached the file (and, with
    /// `sync`, the disk). The change is kept in memory either way, so later
    /// records carry it.
    fn record(
        &mut self,
        session_id: &str,
        change: impl FnOnce(&mut MetaRecord),
        sync: bool,
    ) -> bool {
        if !self.ensure_open(session_id) {
            return false;
        }
        let Some(e) = self.index.get_mut(session_id) else {
            return false;
        };
        let m = e.meta.get_or_insert_with(MetaRecord::default);
        change(m);
        e.since_meta = 0;
        let line = format::meta_line(m);
        let written = self.write(session_id, &[&line], false);
        if written {
            self.wrote(session_id);
        }
        written && (!sync || self.sync_file(session_id))
    }

    /// Removes a session's transcript and forgets it.
    fn delete(&mut self, session_id: &str) {
        self.index.remove(session_id);
        if let Some(pos) = self.position(session_id)
            && let Some(of) = self.open.remove(pos)
        {
            discard(of);
        }
        let path = self.dir.join(format::file_name(session_id));
        match fs::remove_file(&path) {
            Ok(()) => {
                log::info!("removed stored session {session_id:?} (deleted by a device)");
                self.sync_dir();
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("removing {}: {e}", path.display()),
        }
    }

    /// Fsyncs the directory, so names created or removed in it are durable.
    /// A failure is logged once per spell; the fsync that works again logs
    /// how many failed.
    fn sync_dir(&mut self) {
        match File::open(&self.dir).and_then(|d| d.sync_all()) {
            Ok(()) => {
                if let Some(n) = self.dir_spell.succeeded() {
                    log::info!(
                        "syncing {} works again after {n} failed fsync(s)",
                        self.dir.display()
                    );
                }
            }
            Err(e) => {
                if self.dir_spell.failed() {
                    log::warn!(
                        "syncing {}: {e}; new and removed transcripts may not survive a power cut until it works (logged once until then)",
                        self.dir.display()
                    );
                }
            }
        }
    }

    /// Bytes reached a session's file: ends its failing spell, if any, with
    /// one line that counts the failures.
    fn flushed(&mut self, session_id: &str) {
        if let Some(n) = self
            .index
            .get_mut(session_id)
            .and_then(|e| e.spell.succeeded())
        {
            log::info!(
                "session {session_id:?}: writing its transcript again after {n} failed write(s)"
            );
        }
    }

    fn position(&self, session_id: &str) -> Option<usize> {
        self.open.iter().position(|o| o.session_id == session_id)
    }

    /// Appends `parts` as one line to the session's open file, compacting the
    /// file first when the line would take it past its bound. `true` when
    /// written: the caller then reports it with [`Writer::wrote`].
    fn write(&mut self, session_id: &str, parts: &[&[u8]], is_frame: bool) -> bool {
        let n: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let max = self.limits.max_file_bytes;
        let over = |w: &Writer| w.open.back().is_none_or(|of| of.len + n > max);
        if over(self) {
            let compacted = self.compact(session_id);
            if !self.ensure_open(session_id) {
                return false;
            }
            if is_frame && (!compacted || over(self)) {
                if let Some(e) = self.index.get_mut(session_id) {
                    e.full = true;
                }
                log::warn!(
                    "session {session_id:?}: transcript is over {max} bytes and could not be \
                     compacted; new frames are not stored"
                );
                return false;
            }
        }
        let Some(of) = self.open.back_mut() else {
            return false;
        };
        match parts.iter().try_for_each(|p| of.w.write_all(p)) {
            Ok(()) => {
                of.len += n;
                self.dirty_since.get_or_insert_with(Instant::now);
                true
            }
            Err(e) => {
                self.fail(session_id, e);
                false
            }
        }
    }

    /// After a write into the buffer: gives the session's entry to the
    /// caller. (A failing spell ends only when bytes reach the file.)
    fn wrote(&mut self, session_id: &str) -> Option<&mut Entry> {
        self.index.get_mut(session_id)
    }

    /// Logs a write error once per failing spell (counting the rest) and drops
    /// the file's handle and buffer; the next write reopens it and ends any
    /// torn line first.
    fn fail(&mut self, session_id: &str, e: io::Error) {
        if let Some(pos) = self.position(session_id)
            && let Some(of) = self.open.remove(pos)
        {
            discard(of);
        }
        let quiet = match self.index.get_mut(session_id) {
            Some(entry) => !entry.spell.failed(),
            // A transcript that could not even be created: log at most every
            // QUIET_FOR.
            None => self
                .unlisted_warned
                .is_some_and(|t| t.elapsed() < QUIET_FOR),
        };
        if !quiet {
            if !self.index.contains_key(session_id) {
                self.unlisted_warned = Some(Instant::now());
            }
            self.shared.failing_spells.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "session {session_id:?}: writing its transcript failed: {e}; new lines are lost \
                 until writes succeed (check free space and permissions)"
            );
        }
    }

    /// Makes `session_id`'s file the most recently used open file, creating
    /// the transcript (and pruning old ones) when it is new.
    fn ensure_open(&mut self, session_id: &str) -> bool {
        if let Some(pos) = self.position(session_id) {
            if let Some(of) = self.open.remove(pos) {
                self.open.push_back(of);
            }
            return true;
        }
        let known = self.index.contains_key(session_id);
        let (w, len) = match self.open_file(session_id, known) {
            Ok(x) => x,
            Err(e) => {
                self.fail(session_id, e);
                return false;
            }
        };
        if !known {
            let entry = Entry {
                meta: None,
                rank: now_ms(),
                spell: Spell::default(),
                full: false,
                since_meta: 0,
            };
            self.index.insert(session_id.to_owned(), entry);
            self.prune(session_id);
        }
        while self.open.len() >= MAX_OPEN_FILES {
            self.close_oldest(false);
        }
        self.open.push_back(OpenFile {
            session_id: session_id.to_owned(),
            w,
            len,
        });
        self.dirty_since.get_or_insert_with(Instant::now);
        true
    }

    /// Opens a transcript for appending: writes the header of a new file, ends
    /// a torn last line of an old one, moves aside a foreign file in the way.
    fn open_file(&mut self, session_id: &str, known: bool) -> io::Result<(BufWriter<File>, u64)> {
        let path = self.dir.join(format::file_name(session_id));
        let open = || {
            OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&path)
        };
        let mut file = open()?;
        let mut len = file.metadata()?.len();
        if len > 0 && !known {
            let ours = matches!(
                format::read_header(&file)?,
                HeaderCheck::Ours { session_id: ref id, .. } if id == session_id
            );
            if !ours {
                drop(file);
                format::move_aside(&path);
                file = open()?;
                len = file.metadata()?.len();
            }
        }
        let mut w = BufWriter::with_capacity(BUF_BYTES, file);
        if len == 0 {
            // Make the new name itself durable; the contents follow on sync.
            self.sync_dir();
            let header = format::header_line(session_id);
            w.write_all(&header)?;
            len = header.len() as u64;
        } else {
            let mut last = [0u8];
            w.get_ref().read_exact_at(&mut last, len - 1)?;
            if last[0] != b'\n' {
                w.write_all(b"\n")?;
                len += 1;
            }
        }
        Ok((w, len))
    }

    /// Closes the least recently used file, writing it out, and with `sync`
    /// fsyncing it (at shutdown). Durability points in between (reservations,
    /// turn ends) fsync explicitly, so closing a file for room does not.
    fn close_oldest(&mut self, sync: bool) {
        let Some(mut of) = self.open.pop_front() else {
            return;
        };
        let done = of.w.flush().and_then(|()| {
            if sync {
                of.w.get_ref().sync_data()
            } else {
                Ok(())
            }
        });
        match done {
            Ok(()) => self.flushed(&of.session_id),
            Err(e) => {
                let id = of.session_id.clone();
                self.open.push_back(of);
                self.fail(&id, e);
            }
        }
    }

    /// Keeps the newest `keep` transcripts, never removing `new_id`'s.
    fn prune(&mut self, new_id: &str) {
        while self.index.len() > self.keep {
            let victim = self
                .index
                .iter()
                .filter(|(id, _)| id.as_str() != new_id)
                .min_by(|a, b| a.1.rank.cmp(&b.1.rank).then_with(|| a.0.cmp(b.0)))
                .map(|(id, _)| id.clone());
            let Some(victim) = victim else { return };
            self.index.remove(&victim);
            if let Some(pos) = self.position(&victim)
                && let Some(of) = self.open.remove(pos)
            {
                discard(of);
            }
            let path = self.dir.join(format::file_name(&victim));
            match fs::remove_file(&path) {
                Ok(()) => log::info!(
                    "removed stored session {victim:?} (keeping the newest {})",
                    self.keep
                ),
                Err(e) => log::warn!("removing {}: {e}", path.display()),
            }
        }
    }

    /// Rewrites a transcript as its header, its metadata and its newest frames
    /// (half the file bound), through a temporary file renamed into place.
    fn compact(&mut self, session_id: &str) -> bool {
        if let Some(pos) = self.position(session_id)
            && let Some(of) = self.open.remove(pos)
            && let Err(e) = of.w.into_inner()
        {
            let (e, w) = e.into_parts();
            let _ = w.into_parts();
            log::warn!("session {session_id:?}: writing before compaction failed: {e}");
            return false;
        }
        let path = self.dir.join(format::file_name(session_id));
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let meta = self.index.get(session_id).and_then(|e| e.meta.clone());
        let keep_bytes = (self.limits.max_file_bytes / 2) as usize;
        let result = (|| -> io::Result<(u64, u64)> {
            let mut src = File::open(&path)?;
            let len = src.metadata()?.len();
            let HeaderCheck::Ours { end, .. } = format::read_header(&src)? else {
                return Err(io::Error::other("its header is damaged"));
            };
            let bounds = Bounds {
                max_frames: usize::MAX,
                max_bytes: keep_bytes,
                collect: false,
                max_line: self.limits.max_file_bytes as usize,
            };
            let tail = format::read_tail(&src, end, len, bounds)?;
            let out = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            let mut w = BufWriter::with_capacity(BUF_BYTES, out);
            w.write_all(&format::header_line(session_id))?;
            if let Some(m) = meta.or(tail.meta) {
                w.write_all(&format::meta_line(&m))?;
            }
            if let Some(from) = tail.oldest_kept {
                src.seek(SeekFrom::Start(from))?;
                io::copy(&mut (&mut src).take(len - from), &mut w)?;
            }
            let out = w.into_inner().map_err(|e| e.into_error())?;
            out.sync_all()?;
            let new_len = out.metadata()?.len();
            fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()?;
            Ok((len, new_len))
        })();
        match result {
            Ok((old, new)) => {
                log::info!(
                    "session {session_id:?}: compacted its transcript from {old} to {new} bytes"
                );
                true
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                log::warn!("session {session_id:?}: compacting its transcript failed: {e}");
                false
            }
        }
    }

    fn flush_all(&mut self) {
        let mut failed = Vec::new();
        let mut recovered = Vec::new();
        for of in &mut self.open {
            match of.w.flush() {
                Err(e) => failed.push((of.session_id.clone(), e)),
                Ok(()) => {
                    if self
                        .index
                        .get(&of.session_id)
                        .is_some_and(|e| e.spell.failing())
                    {
                        recovered.push(of.session_id.clone());
                    }
                }
            }
        }
        for id in recovered {
            self.flushed(&id);
        }
        for (id, e) in failed {
            self.fail(&id, e);
        }
        self.dirty_since = None;
    }

    /// Records and fsyncs the numbering reservations waiting beside the
    /// queue, then acknowledges them (one atomic load when there are none).
    ///
    /// A reservation the disk refused (full, failing) is never acknowledged:
    /// the router sends no number above an acknowledged reservation, and one
    /// acknowledged without being on disk would let a relay restarted after a
    /// crash number from below it, so that a number a device already holds
    /// named other content. It is tried again every [`RESERVE_RETRY`]; until
    /// the disk takes it, the session's frames past its last reservation wait
    /// in the router (bounded; its viewers are reset when they are let out).
    fn reserve_pending(&mut self) {
        let due = self.retry_at.is_some_and(|t| Instant::now() >= t);
        // A load first: the common case (none waiting) costs no write.
        let flagged = self.shared.reserving.load(Ordering::Relaxed)
            && self.shared.reserving.swap(false, Ordering::Acquire);
        if !flagged && !due {
            return;
        }
        let mut pending: Vec<(String, u64)> = if flagged {
            match self.shared.reservations.lock() {
                Ok(mut r) => r.drain().collect(),
                Err(_) => Vec::new(),
            }
        } else {
            Vec::new()
        };
        if due {
            self.retry_at = None;
            pending.extend(self.retry.drain());
        }
        for (session_id, upto) in pending {
            // An id the store refuses is never stored: no number of it can
            // come back after a crash.
            let durable = !valid_id(&session_id)
                || self.record(&session_id, |m| m.reserved = m.reserved.max(upto), true);
            if durable {
                if self.retry.get(&session_id).is_some_and(|&r| r <= upto) {
                    self.retry.remove(&session_id);
                }
                self.shared.ack(&session_id, upto, 0);
            } else {
                let r = self.retry.entry(session_id).or_insert(0);
                *r = (*r).max(upto);
                self.retry_at
                    .get_or_insert_with(|| Instant::now() + RESERVE_RETRY);
            }
        }
    }

    /// Writes out and fsyncs every open file.
    fn finish(&mut self) {
        while !self.open.is_empty() {
            self.close_oldest(true);
        }
        self.dirty_since = None;
    }
}

fn valid_id(session_id: &str) -> bool {
    if session_id.len() > MAX_SESSION_ID_BYTES {
        log::warn!(
            "not storing session with an id of {} bytes (at most {MAX_SESSION_ID_BYTES})",
            session_id.len()
        );
        return false;
    }
    true
}
