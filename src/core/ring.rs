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
/// the newest frame is always kept even when it alone is larger.
#[derive(Debug)]
pub struct ReplayRing {
    frames: VecDeque<(u64, Frame)>,
    bytes: usize,
    head: u64,
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
            head: 0,
            max_frames: max_frames.max(1),
            max_bytes,
        }
    }

    /// Starts numbering after `head` (a ring restored from a transcript).
    pub fn with_head(mut self, head: u64) -> Self {
        self.head = head;
        self
    }

    /// Refills an empty ring with frames already stamped (from a transcript),
    /// oldest first; frames whose `rseq` does not increase are skipped. The
    /// head becomes the larger of `head` and the last frame's `rseq`.
    pub fn restore(&mut self, frames: impl IntoIterator<Item = Frame>, head: u64) {
        for f in frames {
            let Some(seq) = crate::core::frame::read_rseq(&f) else {
                continue;
            };
            if seq <= self.head {
                continue;
            }
            self.head = seq;
            self.bytes += cost(&f);
            self.frames.push_back((seq, f));
            self.evict();
        }
        self.head = self.head.max(head);
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

    /// The newest `rseq` handed out (0 before the first frame).
    pub fn head(&self) -> u64 {
        self.head
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
    /// Also `None` once the numbering is exhausted (a crafted head of `u64::MAX`).
    pub fn push(&mut self, line: &[u8]) -> Option<Frame> {
        let next = self.head.checked_add(1)?;
        let stamped: Frame = stamp_rseq(line, next)?.into();
        self.head = next;
        self.bytes += cost(&stamped);
        self.frames.push_back((self.head, stamped.clone()));
        self.evict();
        Some(stamped)
    }

    /// Frames with `rseq > last_seq`; `None` means the device has no view yet
    /// (everything held is sent, without reset).
    pub fn replay_since(&self, last_seq: Option<u64>) -> Replay {
        let oldest = self
            .frames
            .front()
            .map(|(s, _)| *s)
            .unwrap_or(self.head.saturating_add(1));
        let all = || self.frames.iter().map(|(_, f)| f.clone()).collect();
        match last_seq {
            None => Replay {
                frames: all(),
                reset: false,
            },
            Some(n) if n > self.head => Replay {
                frames: all(),
                reset: true,
            },
            Some(n) if n.saturating_add(1) < oldest => Replay {
                frames: all(),
                reset: true,
            },
            Some(n) => Replay {
                frames: self
                    .frames
                    .iter()
                    .skip_while(|(s, _)| *s <= n)
                    .map(|(_, f)| f.clone())
                    .collect(),
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
}
