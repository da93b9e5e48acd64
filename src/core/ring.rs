//! The replay ring: stamps each frame with the next `rseq` and keeps the newest
//! frames within a frame-count bound and a byte bound, so a reconnecting device
//! can be sent exactly the frames it missed. Performs no I/O.

use crate::core::frame::stamp_rseq;
use std::collections::VecDeque;

/// Default bound on frames kept per session.
pub const DEFAULT_RING_FRAMES: usize = 4096;
/// Bytes a frame costs beyond its length: its allocation's header and
/// rounding, its shared-buffer header and its slot in the ring. Counted so the
/// byte bound is a bound on memory, not only on payload.
pub const FRAME_OVERHEAD: usize = 64;

fn cost(frame: &Frame) -> usize {
    frame.len() + FRAME_OVERHEAD
}

/// Default bound on bytes kept per session.
pub const DEFAULT_RING_BYTES: usize = 4 << 20;

/// A stamped frame, shared by every socket it is fanned to.
pub type Frame = bytes::Bytes;

/// Newest frames of one session.
///
/// Invariants: `rseq` strictly increases by one per pushed frame; the ring
/// holds at most `max_frames` frames and at most `max_bytes` bytes, except that
/// the newest frame is always kept even when it alone is larger. Frames are
/// stamped ([`ReplayRing::stamped`]) before they are released to devices
/// ([`ReplayRing::head`]); a replay never holds a frame past the release
/// point, so a number no device has seen can still be given up safely.
#[derive(Debug)]
pub struct ReplayRing {
    frames: VecDeque<(u64, Frame)>,
    bytes: usize,
    /// The newest `rseq` stamped.
    stamped: u64,
    /// The newest `rseq` devices may have been sent.
    released: u64,
    /// A `last_seq` below this is answered with `reset`: frames up to it may
    /// be missing in a way the ring's order does not show (numbers reserved
    /// by a run that crashed, or frames the store lost).
    lost_upto: u64,
    max_frames: usize,
    max_bytes: usize,
}

/// What a reconnecting device is sent.
#[derive(Debug, Default)]
pub struct Replay {
    pub frames: Vec<Frame>,
    /// The gap was (partly) evicted, or `last_seq` is from elsewhere: the device
    /// must drop its view and rebuild it from `frames`.
    pub reset: bool,
}

impl ReplayRing {
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
        ReplayRing {
            frames: VecDeque::new(),
            bytes: 0,
            stamped: 0,
            released: 0,
            lost_upto: 0,
            max_frames: max_frames.max(1),
            max_bytes,
        }
    }

    /// Starts numbering after `head` (a ring restored from a transcript).
    pub fn with_head(mut self, head: u64) -> Self {
        self.stamped = head;
        self.released = head;
        self
    }

    /// Refills an empty ring with frames already stamped (from a transcript),
    /// oldest first. A jump in the numbers is a hole (a crash's reserved
    /// numbers, or frames the store lost): the frames on both sides are kept
    /// (a new device sees the whole history), and a device resuming from
    /// below the hole's end is reset. The head becomes the larger of `head`
    /// and the last frame's `rseq`; when `head` is past the last frame, the
    /// numbers between may have been sent and lost, and a device resuming
    /// below `head` is reset.
    pub fn restore(&mut self, frames: impl IntoIterator<Item = Frame>, head: u64) {
        for f in frames {
            let Some(seq) = crate::core::frame::read_rseq(&f) else {
                continue;
            };
            if seq <= self.stamped {
                continue;
            }
            if self.stamped > 0 && seq != self.stamped.saturating_add(1) {
                self.lost_upto = self.lost_upto.max(seq - 1);
            }
            self.stamped = seq;
            self.bytes += cost(&f);
            self.frames.push_back((seq, f));
            self.evict();
        }
        if head > self.stamped {
            self.lost_upto = head;
            self.stamped = head;
        }
        self.released = self.stamped;
    }

    fn evict(&mut self) {
        while self.frames.len() > 1
            && (self.frames.len() > self.max_frames || self.bytes > self.max_bytes)
        {
            if let Some((_, old)) = self.frames.pop_front() {
                self.bytes -= cost(&old);
            }
        }
    }

    /// The newest `rseq` released to devices (0 before the first frame): what
    /// a welcome announces as `headSeq`.
    pub fn head(&self) -> u64 {
        self.released
    }

    /// The newest `rseq` stamped (at or past [`ReplayRing::head`]): numbering
    /// continues after it.
    pub fn stamped(&self) -> u64 {
        self.stamped
    }

    /// Lets devices be sent frames up to `rseq` (at most the stamped head).
    pub fn release(&mut self, rseq: u64) {
        self.released = self.released.max(rseq.min(self.stamped));
    }

    /// The oldest `rseq` held (`None` when empty).
    pub fn oldest(&self) -> Option<u64> {
        self.frames.front().map(|(s, _)| *s)
    }

    /// A `last_seq` below this is a reset (see [`ReplayRing::restore`]).
    pub fn lost_upto(&self) -> u64 {
        self.lost_upto
    }

    /// Whether a frame of this rseq is still held (evicted frames are not).
    pub fn holds(&self, rseq: u64) -> bool {
        self.frames.front().is_some_and(|(s, _)| *s <= rseq) && rseq <= self.stamped
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Memory held: frame bytes plus [`FRAME_OVERHEAD`] per frame.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Stamps `line` with the next `rseq`, keeps it, evicts the oldest frames
    /// past the bounds and returns the stamped frame. `None` when the line is
    /// not a JSON object (nothing is kept and no `rseq` is used).
    /// Released at once: see [`ReplayRing::push_held`].
    pub fn push(&mut self, line: &[u8]) -> Option<Frame> {
        let f = self.push_held(line)?;
        self.released = self.stamped;
        Some(f)
    }

    /// [`ReplayRing::push`] without releasing the frame: it is not replayed
    /// until [`ReplayRing::release`] covers it.
    pub fn push_held(&mut self, line: &[u8]) -> Option<Frame> {
        // `None` too once the numbering is exhausted (a crafted head of `u64::MAX`).
        let next = self.stamped.checked_add(1)?;
        let stamped: Frame = stamp_rseq(line, next)?.into();
        self.stamped = next;
        self.bytes += cost(&stamped);
        self.frames.push_back((self.stamped, stamped.clone()));
        self.evict();
        Some(stamped)
    }

    /// Frames with `rseq` in `(after, upto]` still held, oldest first.
    pub fn range(&self, after: u64, upto: u64) -> impl Iterator<Item = &Frame> {
        self.frames
            .iter()
            .skip_while(move |(s, _)| *s <= after)
            .take_while(move |(s, _)| *s <= upto)
            .map(|(_, f)| f)
    }

    /// Drops the oldest frames until at most `max_bytes` are held (the newest
    /// frame stays); returns the bytes freed. Their frames stay on disk.
    pub fn shrink_to(&mut self, max_bytes: usize) -> usize {
        let before = self.bytes;
        while self.frames.len() > 1 && self.bytes > max_bytes {
            if let Some((_, old)) = self.frames.pop_front() {
                self.bytes -= cost(&old);
            }
        }
        before - self.bytes
    }

    /// Frames with `rseq > last_seq`; `None` means the device has no view yet
    /// (everything held is sent, without reset).
    /// Only released frames are replayed; a `last_seq` past the release point
    /// or below [`ReplayRing::restore`]'s possibly-lost range is a reset.
    pub fn replay_since(&self, last_seq: Option<u64>) -> Replay {
        let head = self.released;
        let oldest = self
            .frames
            .front()
            .map(|(s, _)| *s)
            .unwrap_or(self.stamped.saturating_add(1))
            .min(head.saturating_add(1));
        let all = || self.range(0, head).cloned().collect();
        match last_seq {
            None => Replay {
                frames: all(),
                reset: false,
            },
            Some(n) if n > head || n < self.lost_upto || n.saturating_add(1) < oldest => Replay {
                frames: all(),
                reset: true,
            },
            Some(n) => Replay {
                frames: self.range(n, head).cloned().collect(),
                reset: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: u32) -> Vec<u8> {
        format!("{{\"n\":{i}}}").into_bytes()
    }

    fn seqs(r: &Replay) -> Vec<u64> {
        r.frames
            .iter()
            .map(|f| {
                let v: serde_json::Value = serde_json::from_slice(f).unwrap();
                v["rseq"].as_u64().unwrap()
            })
            .collect()
    }

    #[test]
    fn stamps_strictly_increasing() {
        let mut r = ReplayRing::new(10, 1 << 20);
        assert_eq!(&*r.push(b"{\"a\":1}").unwrap(), b"{\"rseq\":1,\"a\":1}");
        assert_eq!(&*r.push(b"  {\"a\":2}").unwrap(), b"{\"rseq\":2,\"a\":2}");
        assert_eq!(r.push(b"not an object"), None);
        assert_eq!(&*r.push(b"{}").unwrap(), b"{\"rseq\":3}");
        assert_eq!(r.head(), 3);
    }

    #[test]
    fn bounded_by_frames() {
        let mut r = ReplayRing::new(3, 1 << 20);
        for i in 0..10 {
            r.push(&line(i));
        }
        assert_eq!(r.len(), 3);
        assert_eq!(seqs(&r.replay_since(Some(7))), vec![8, 9, 10]);
        assert!(!r.replay_since(Some(7)).reset);
        let gap = r.replay_since(Some(5));
        assert!(gap.reset);
        assert_eq!(seqs(&gap), vec![8, 9, 10]);
    }

    #[test]
    fn bounded_by_bytes() {
        let bound = 2 * (18 + FRAME_OVERHEAD);
        let mut r = ReplayRing::new(1000, bound);
        for i in 0..10 {
            r.push(&line(i)); // each stamped frame is 17-18 bytes plus the overhead
        }
        assert!(r.bytes() <= bound, "bytes {}", r.bytes());
        assert_eq!(r.len(), 2);
        assert_eq!(seqs(&r.replay_since(Some(8))), vec![9, 10]);
        assert!(r.replay_since(Some(3)).reset);
    }

    #[test]
    fn keeps_newest_frame_even_when_larger_than_bound() {
        let mut r = ReplayRing::new(10, 8 + FRAME_OVERHEAD);
        r.push(&line(1));
        r.push(&line(2));
        assert_eq!(r.len(), 1);
        assert_eq!(seqs(&r.replay_since(None)), vec![2]);
    }

    #[test]
    fn replay_edges() {
        let mut r = ReplayRing::new(10, 1 << 20);
        assert!(r.replay_since(Some(0)).frames.is_empty());
        assert!(!r.replay_since(Some(0)).reset);
        for i in 0..4 {
            r.push(&line(i));
        }
        assert!(r.replay_since(Some(4)).frames.is_empty());
        assert_eq!(seqs(&r.replay_since(Some(0))), vec![1, 2, 3, 4]);
        assert!(!r.replay_since(Some(0)).reset);
        // a last_seq from a previous life of the ring
        let future = r.replay_since(Some(99));
        assert!(future.reset);
        assert_eq!(future.frames.len(), 4);
        assert_eq!(seqs(&r.replay_since(None)), vec![1, 2, 3, 4]);
    }

    #[test]
    fn restore_from_stamped_frames() {
        let mut src = ReplayRing::new(100, 1 << 20);
        let frames: Vec<Frame> = (0..10).map(|i| src.push(&line(i)).unwrap()).collect();
        let mut r = ReplayRing::new(4, 1 << 20);
        r.restore(frames, 10);
        assert_eq!(r.head(), 10);
        assert_eq!(seqs(&r.replay_since(Some(6))), vec![7, 8, 9, 10]);
        assert_eq!(&*r.push(b"{}").unwrap(), b"{\"rseq\":11}");
    }

    #[test]
    fn restored_head_continues_numbering() {
        let mut r = ReplayRing::new(10, 1 << 20).with_head(41);
        assert_eq!(&*r.push(b"{}").unwrap(), b"{\"rseq\":42}");
        assert!(r.replay_since(Some(10)).reset);
    }

    #[test]
    fn held_frames_are_not_replayed_until_released() {
        let mut r = ReplayRing::new(10, 1 << 20);
        r.push(&line(1));
        r.push_held(&line(2));
        r.push_held(&line(3));
        assert_eq!(r.head(), 1);
        assert_eq!(r.stamped(), 3);
        assert_eq!(seqs(&r.replay_since(None)), vec![1]);
        // A device cannot have seen an unreleased number.
        assert!(r.replay_since(Some(2)).reset);
        r.release(2);
        assert_eq!(seqs(&r.replay_since(Some(0))), vec![1, 2]);
        r.release(99);
        assert_eq!(r.head(), 3);
    }

    #[test]
    fn restore_keeps_both_sides_of_a_hole_and_resets_across_it() {
        let mut src = ReplayRing::new(100, 1 << 20);
        let frames: Vec<Frame> = (0..10).map(|i| src.push(&line(i)).unwrap()).collect();
        // Frame 5 was lost by the store: a new device gets the whole history,
        // a device resuming from before the hole is reset.
        let stored: Vec<Frame> = frames
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 4)
            .map(|(_, f)| f.clone())
            .collect();
        let mut r = ReplayRing::new(100, 1 << 20);
        r.restore(stored.clone(), 10);
        assert_eq!(
            seqs(&r.replay_since(None)),
            vec![1, 2, 3, 4, 6, 7, 8, 9, 10]
        );
        let across = r.replay_since(Some(3));
        assert!(across.reset);
        assert_eq!(seqs(&across).len(), 9, "a reset gets the whole history");
        assert!(r.replay_since(Some(4)).reset);
        let after = r.replay_since(Some(5));
        assert!(!after.reset);
        assert_eq!(seqs(&after), vec![6, 7, 8, 9, 10]);
        // A crash's jump (numbers 4..=99 reserved, then a new run from 100):
        // both runs are kept, a device below 99 is reset.
        let mut r = ReplayRing::new(100, 1 << 20);
        let mut jumped: Vec<Frame> = frames[..3].to_vec();
        jumped.push(stamp_rseq(b"{}", 100).unwrap().into());
        r.restore(jumped, 100);
        assert_eq!(seqs(&r.replay_since(None)), vec![1, 2, 3, 100]);
        assert!(r.replay_since(Some(3)).reset);
        assert!(r.replay_since(Some(50)).reset);
        assert!(!r.replay_since(Some(99)).reset);
        // Numbers 11..=20 were reserved by a run that crashed: any device
        // below 20 may have seen some of them, so it is reset.
        let mut r = ReplayRing::new(100, 1 << 20);
        r.restore(stored, 20);
        assert_eq!(r.head(), 20);
        assert!(r.replay_since(Some(10)).reset);
        assert!(r.replay_since(Some(15)).reset);
        let exact = r.replay_since(Some(20));
        assert!(!exact.reset && exact.frames.is_empty());
        assert_eq!(&*r.push(b"{}").unwrap(), b"{\"rseq\":21}");
    }
}
