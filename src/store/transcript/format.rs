//! The transcript file format: file names, the three kinds of line, and
//! reading a file backwards from its end. Blocking file I/O only; runs at
//! startup, on the writer thread or inside `smol::unblock`.

use std::fs::{self, File};
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{SessionMeta, StoreError, StoredSession};
use crate::core::frame::{read_rseq, rfind_byte, scan_json};

/// Format version written in each header.
pub(super) const VERSION: u32 = 1;
/// A frame line starts with this (its first key is `rseq`).
pub(super) const FRAME_PREFIX: &[u8] = b"{\"rseq\":";
/// A metadata line starts with this (serde would also take an array).
const META_PREFIX: &[u8] = b"{\"meta\":{";
/// Bound on the header line (an escaped id of up to `MAX_SESSION_ID_BYTES`).
const MAX_HEADER_BYTES: usize = 16 << 10;
/// Bytes read per step when reading backwards.
const CHUNK: usize = 64 << 10;
/// Characters of the id kept, sanitised, in a file name.
const NAME_CHARS: usize = 48;

/// The file name (no directory) of a session's transcript: a sanitised prefix
/// of the id for people, and a hash of the whole id for uniqueness. Holds only
/// `[A-Za-z0-9_.-]`, never starts with `.`, and never contains `..`.
///
/// ```
/// use acp_relay::store::transcript::file_name;
/// assert_eq!(file_name("../../etc"), "______etc.b2d9fe41e2c00c1f.jsonl");
/// ```
pub fn file_name(session_id: &str) -> String {
    let mut safe: String = session_id
        .chars()
        .take(NAME_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        safe.push('_');
    }
    format!("{safe}.{:016x}.jsonl", fnv1a64(session_id.as_bytes()))
}

/// 64-bit FNV-1a: stable across releases, unlike `std`'s hashers.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[derive(Serialize, Deserialize)]
struct Header {
    #[serde(rename = "acpRelayTranscript")]
    version: u32,
    #[serde(rename = "sessionId")]
    session_id: String,
}

/// The stored part of [`SessionMeta`] (the id lives in the header).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct MetaRecord {
    title: Option<String>,
    cwd: String,
    created_ms: u64,
    updated_ms: u64,
    agent_session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<String>,
    head_seq: u64,
    /// The durable numbering reservation (see the module's Durability).
    pub(super) reserved: u64,
}

impl From<&SessionMeta> for MetaRecord {
    fn from(m: &SessionMeta) -> Self {
        MetaRecord {
            title: m.title.clone(),
            cwd: m.cwd.clone(),
            created_ms: m.created_ms,
            updated_ms: m.updated_ms,
            agent_session: m.agent_session.clone(),
            project: m.project.clone(),
            agent: m.agent.clone(),
            head_seq: m.head_seq,
            reserved: 0,
        }
    }
}

impl MetaRecord {
    /// The newest `rseq` this record says may have been handed out.
    pub(super) fn top(&self) -> u64 {
        self.head_seq.max(self.reserved)
    }

    /// Records `head` as the exact end of the numbering.
    pub(super) fn end_at(&mut self, head: u64) {
        self.head_seq = head;
        self.reserved = head;
    }
}

#[derive(Serialize, Deserialize)]
struct MetaLine {
    meta: MetaRecord,
}

/// The header line, newline included.
pub(super) fn header_line(session_id: &str) -> Vec<u8> {
    let header = Header {
        version: VERSION,
        session_id: session_id.to_owned(),
    };
    let mut line = serde_json::to_vec(&header).unwrap_or_default();
    line.push(b'\n');
    line
}

/// A metadata line, newline included.
pub(super) fn meta_line(meta: &MetaRecord) -> Vec<u8> {
    let mut line = serde_json::to_vec(&MetaLine { meta: meta.clone() }).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Metadata as listed: the record when there is one, else what the file says.
pub(super) fn session_meta(
    session_id: &str,
    record: Option<&MetaRecord>,
    head_rseq: Option<u64>,
    mtime_ms: u64,
) -> SessionMeta {
    let head = head_rseq.unwrap_or(0);
    match record {
        Some(r) => SessionMeta {
            session_id: session_id.to_owned(),
            title: r.title.clone(),
            cwd: r.cwd.clone(),
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
            agent_session: r.agent_session.clone(),
            project: r.project.clone(),
            agent: r.agent.clone(),
            head_seq: r.top().max(head),
        },
        None => SessionMeta {
            session_id: session_id.to_owned(),
            title: None,
            cwd: String::new(),
            created_ms: mtime_ms,
            updated_ms: mtime_ms,
            agent_session: None,
            project: None,
            agent: None,
            head_seq: head,
        },
    }
}

/// What the first line of a file says.
#[derive(Debug, PartialEq)]
pub(super) enum HeaderCheck {
    /// A transcript of `session_id`; its other lines start at `end`.
    Ours { session_id: String, end: u64 },
    /// A zero-length file.
    Empty,
    /// A transcript in a format newer than [`VERSION`].
    Newer(u32),
    /// Not a transcript.
    Foreign,
}

pub(super) fn read_header(file: &File) -> io::Result<HeaderCheck> {
    let mut buf = vec![0u8; MAX_HEADER_BYTES];
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if n == 0 {
        return Ok(HeaderCheck::Empty);
    }
    let Some(nl) = buf[..n].iter().position(|&b| b == b'\n') else {
        return Ok(HeaderCheck::Foreign);
    };
    let line = &buf[..nl];
    if !line.starts_with(b"{\"acpRelayTranscript\":") {
        return Ok(HeaderCheck::Foreign);
    }
    Ok(match serde_json::from_slice::<Header>(line) {
        Ok(h) if h.version == VERSION => HeaderCheck::Ours {
            session_id: h.session_id,
            end: nl as u64 + 1,
        },
        Ok(h) if h.version > VERSION => HeaderCheck::Newer(h.version),
        _ => HeaderCheck::Foreign,
    })
}

/// Calls `f` with each line of `file[start..end]` from the last to the first,
/// with the line's offset and whether a newline ended it (only the last
/// segment can lack one; an empty last segment is passed too). A line longer
/// than `max_line` is passed as `None`. Stops when `f` breaks.
fn for_each_line_rev(
    file: &File,
    start: u64,
    end: u64,
    max_line: usize,
    mut f: impl FnMut(Option<&[u8]>, u64, bool) -> ControlFlow<()>,
) -> io::Result<()> {
    let mut chunk = vec![0u8; CHUNK];
    // Pieces of the line being assembled, the newest (rightmost) first.
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    let mut pieces_len = 0usize;
    let mut oversize = false;
    let mut complete = false;
    let mut pos = end;
    while pos > start {
        let n = CHUNK.min((pos - start) as usize);
        pos -= n as u64;
        file.read_exact_at(&mut chunk[..n], pos)?;
        let mut stop = n;
        while let Some(i) = rfind_byte(b'\n', &chunk[..stop]) {
            let at = pos + i as u64 + 1;
            let head = &chunk[i + 1..stop];
            let flow = if oversize || pieces_len + head.len() > max_line {
                f(None, at, complete)
            } else if pieces.is_empty() {
                f(Some(head), at, complete)
            } else {
                let mut line = Vec::with_capacity(pieces_len + head.len());
                line.extend_from_slice(head);
                pieces.iter().rev().for_each(|p| line.extend_from_slice(p));
                f(Some(&line), at, complete)
            };
            if flow.is_break() {
                return Ok(());
            }
            pieces.clear();
            pieces_len = 0;
            oversize = false;
            complete = true;
            stop = i;
        }
        if !oversize {
            pieces_len += stop;
            if pieces_len > max_line {
                oversize = true;
                pieces.clear();
            } else {
                pieces.push(chunk[..stop].to_vec());
            }
        }
    }
    if oversize {
        let _ = f(None, start, complete);
    } else {
        let mut line = Vec::with_capacity(pieces_len);
        pieces.iter().rev().for_each(|p| line.extend_from_slice(p));
        let _ = f(Some(&line), start, complete);
    }
    Ok(())
}

/// How much of a file's tail to gather.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    pub max_frames: usize,
    pub max_bytes: usize,
    /// Keep the frames' bytes (else only count them).
    pub collect: bool,
    /// Longer lines are damaged.
    pub max_line: usize,
}

/// The end of a transcript, read backwards.
#[derive(Debug, Default)]
pub(super) struct Tail {
    /// The newest frames within the bounds, oldest first.
    pub frames: Vec<Bytes>,
    /// Offset of the oldest frame within the bounds.
    pub oldest_kept: Option<u64>,
    /// `rseq` of the newest whole frame.
    pub head_rseq: Option<u64>,
    /// The last metadata line.
    pub meta: Option<MetaRecord>,
    /// Lines skipped as damaged (the torn last line not included).
    pub damaged: usize,
    /// The last line lacked its newline.
    pub torn: bool,
    /// An older run of frames numbered from a lower `rseq` was left out.
    pub restarted: bool,
    /// Holes in the numbers among the frames kept: a crash's jump past the
    /// numbers it had reserved, or frames the store lost.
    pub gaps: usize,
}

/// Whether a line is JSON: the vectorised scan answers for the lines it can
/// show valid (all of ours), serde for the rest.
fn is_json(line: &[u8]) -> bool {
    scan_json(line) || serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok()
}

/// Reads `file[start..end]` backwards: the newest frames within `bounds`, the
/// newest frame's `rseq` and the last metadata; stops as soon as it has them.
pub(super) fn read_tail(file: &File, start: u64, end: u64, bounds: Bounds) -> io::Result<Tail> {
    let mut tail = Tail::default();
    let mut bytes = 0usize;
    let mut kept = 0usize;
    let mut frames_done = bounds.max_frames == 0;
    let mut oldest_rseq: Option<u64> = None;
    for_each_line_rev(file, start, end, bounds.max_line, |line, at, complete| {
        let Some(line) = line else {
            tail.damaged += 1;
            return ControlFlow::Continue(());
        };
        if line.is_empty() {
            return ControlFlow::Continue(());
        }
        if !complete {
            tail.torn = true;
            return ControlFlow::Continue(());
        }
        if line.starts_with(FRAME_PREFIX) {
            if frames_done && tail.head_rseq.is_some() {
                return if tail.meta.is_some() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                };
            }
            let Some(rseq) = read_rseq(line).filter(|_| is_json(line)) else {
                tail.damaged += 1;
                return ControlFlow::Continue(());
            };
            tail.head_rseq.get_or_insert(rseq);
            if oldest_rseq.is_some_and(|o| rseq >= o) {
                tail.restarted = true;
                frames_done = true;
            } else if !frames_done && oldest_rseq.is_some_and(|o| rseq + 1 != o) {
                // A hole (a crash's jump past its reservation, or frames the
                // store lost): read on across it. The ring's restore sees the
                // jump and resets a device resuming from before it.
                tail.gaps += 1;
            }
            if !frames_done && bytes + line.len() <= bounds.max_bytes {
                bytes += line.len();
                kept += 1;
                oldest_rseq = Some(rseq);
                tail.oldest_kept = Some(at);
                if bounds.collect {
                    tail.frames.push(Bytes::copy_from_slice(line));
                }
                frames_done = kept >= bounds.max_frames;
            } else {
                frames_done = true;
            }
        } else if line.starts_with(META_PREFIX) {
            if tail.meta.is_none() {
                match serde_json::from_slice::<MetaLine>(line) {
                    Ok(m) => tail.meta = Some(m.meta),
                    Err(_) => tail.damaged += 1,
                }
            }
        } else {
            tail.damaged += 1;
        }
        if frames_done && tail.head_rseq.is_some() && tail.meta.is_some() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    tail.frames.reverse();
    Ok(tail)
}

/// Logs what reading a transcript skipped.
pub(super) fn report(path: &Path, tail: &Tail) {
    if tail.damaged > 0 {
        log::warn!(
            "{}: skipped {} damaged line(s)",
            path.display(),
            tail.damaged
        );
    }
    if tail.torn {
        log::info!("{}: ignored a torn last line", path.display());
    }
    if tail.gaps > 0 {
        log::info!(
            "{}: {} hole(s) in the numbers (a crash, or frames the store could not write); \
             devices resuming from before one are reset",
            path.display(),
            tail.gaps
        );
    }
    if tail.restarted {
        log::info!(
            "{}: left out older frames numbered from a lower rseq",
            path.display()
        );
    }
}

fn mtime_ms(file: &File) -> u64 {
    file.metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// A session's transcript opened for reading.
enum Opened {
    /// Its lines after the header are `start..len`.
    Ours { file: File, start: u64, len: u64 },
    /// No file, or an empty one.
    Missing,
    /// Another session's transcript, or not a transcript.
    Foreign,
}

/// Opens `path` and checks its header names `session_id`.
fn open_session(path: &Path, session_id: &str) -> Result<Opened, StoreError> {
    let io_err = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Opened::Missing),
        Err(e) => return Err(io_err(e)),
    };
    let len = file.metadata().map_err(io_err)?.len();
    Ok(match read_header(&file).map_err(io_err)? {
        HeaderCheck::Ours {
            session_id: id,
            end,
        } if id == session_id => Opened::Ours {
            file,
            start: end,
            len,
        },
        HeaderCheck::Empty => Opened::Missing,
        _ => Opened::Foreign,
    })
}

/// Reads a session back for [`super::Store::load`].
pub(super) fn read_session(
    path: &Path,
    session_id: &str,
    max_frames: usize,
    max_bytes: usize,
) -> Result<StoredSession, StoreError> {
    let io_err = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    let (file, start, len) = match open_session(path, session_id)? {
        Opened::Ours { file, start, len } => (file, start, len),
        Opened::Missing => {
            return Err(StoreError::NotFound {
                session_id: session_id.to_owned(),
            });
        }
        Opened::Foreign => {
            return Err(StoreError::NotATranscript {
                path: path.to_owned(),
            });
        }
    };
    let bounds = Bounds {
        max_frames,
        max_bytes,
        collect: true,
        max_line: super::MAX_TRANSCRIPT_BYTES as usize,
    };
    let tail = read_tail(&file, start, len, bounds).map_err(io_err)?;
    report(path, &tail);
    Ok(StoredSession {
        meta: session_meta(
            session_id,
            tail.meta.as_ref(),
            tail.head_rseq,
            mtime_ms(&file),
        ),
        frames: tail.frames,
    })
}

/// A transcript found by [`scan_dir`].
pub(super) struct Found {
    pub meta: SessionMeta,
    pub record: Option<MetaRecord>,
    pub path: PathBuf,
    /// Newest first by this: `updated_ms`, else the file's mtime.
    pub rank: u64,
}

/// Moves a file that is not a transcript out of the way.
pub(super) fn move_aside(path: &Path) {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".corrupt");
    match fs::rename(path, &aside) {
        Ok(()) => log::warn!(
            "{} is not an acp-relay transcript; moved it to {}",
            path.display(),
            Path::new(&aside).display()
        ),
        Err(e) => log::warn!(
            "{} is not an acp-relay transcript and could not be moved aside ({e}); ignoring it",
            path.display()
        ),
    }
}

/// Every readable transcript in `dir`. Removes empty files and leftovers of an
/// interrupted compaction, moves foreign files aside; fails only when the
/// directory itself cannot be listed.
pub(super) fn scan_dir(dir: &Path) -> io::Result<Vec<Found>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                log::warn!("listing {}: {e}", dir.display());
                continue;
            }
        };
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".jsonl.tmp") {
            let _ = fs::remove_file(&path);
            continue;
        }
        if !name.ends_with(".jsonl") || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        match scan_file(&path, name) {
            Ok(Some(f)) => found.push(f),
            Ok(None) => {}
            Err(e) => log::warn!("{}: {e}; skipping it", path.display()),
        }
    }
    Ok(found)
}

fn scan_file(path: &Path, name: &str) -> io::Result<Option<Found>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let (session_id, start) = match read_header(&file)? {
        HeaderCheck::Ours { session_id, end } if file_name(&session_id) == name => {
            (session_id, end)
        }
        HeaderCheck::Empty => {
            log::info!("{}: removing an empty transcript", path.display());
            let _ = fs::remove_file(path);
            return Ok(None);
        }
        HeaderCheck::Newer(v) => {
            log::warn!(
                "{}: written by a newer acp-relay (format {v}); leaving it alone",
                path.display()
            );
            return Ok(None);
        }
        HeaderCheck::Ours { .. } | HeaderCheck::Foreign => {
            move_aside(path);
            return Ok(None);
        }
    };
    let bounds = Bounds {
        max_frames: 0,
        max_bytes: 0,
        collect: false,
        max_line: super::MAX_TRANSCRIPT_BYTES as usize,
    };
    let tail = read_tail(&file, start, len, bounds)?;
    report(path, &tail);
    let mtime = mtime_ms(&file);
    let meta = session_meta(&session_id, tail.meta.as_ref(), tail.head_rseq, mtime);
    Ok(Some(Found {
        rank: meta.updated_ms,
        meta,
        record: tail.meta,
        path: path.to_owned(),
    }))
}

/// The frames numbered `(after, upto]` of a session's transcript, oldest
/// first, for a replay the ring no longer holds. `None` when they are not all
/// there, one after another, within `max_bytes`.
pub(super) fn read_range(
    path: &Path,
    session_id: &str,
    after: u64,
    upto: u64,
    max_bytes: usize,
) -> Result<Option<Vec<Bytes>>, StoreError> {
    let io_err = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    let Opened::Ours { file, start, len } = open_session(path, session_id)? else {
        return Ok(None);
    };
    let mut frames = Vec::new();
    let mut bytes = 0usize;
    let mut next = upto;
    let mut whole = true;
    for_each_line_rev(
        &file,
        start,
        len,
        super::MAX_TRANSCRIPT_BYTES as usize,
        |line, _, complete| {
            let Some(line) = line.filter(|l| complete && l.starts_with(FRAME_PREFIX)) else {
                return ControlFlow::Continue(());
            };
            let Some(rseq) = read_rseq(line) else {
                return ControlFlow::Continue(());
            };
            if rseq > upto {
                return ControlFlow::Continue(());
            }
            if rseq != next || bytes + line.len() > max_bytes || !is_json(line) {
                whole = false;
                return ControlFlow::Break(());
            }
            bytes += line.len();
            frames.push(Bytes::copy_from_slice(line));
            next -= 1;
            if next == after {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .map_err(io_err)?;
    if !whole || next != after {
        return Ok(None);
    }
    frames.reverse();
    Ok(Some(frames))
}
