//! Flood mode, a load generator for the relay: a turn that streams N
//! `agent_message_chunk` updates stamped with their emit time. Frames are
//! pre-rendered once and written in batches under one lock per batch.

use super::peer::Peer;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// With no rate limit, the longest a batch holds the output lock before it
/// flushes and lets other writers in.
const BATCH_TIME: Duration = Duration::from_millis(1);

/// What a flood turn sends.
#[derive(Debug, Clone, Copy)]
pub struct Flood {
    pub frames: u64,
    pub frame_bytes: usize,
    /// Frames per second; 0 = as fast as possible.
    pub rate: u64,
}

/// How a flood ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodEnd {
    Done,
    Cancelled { sent: u64 },
}

/// One frame's line, split around the two numbers that change per frame.
struct Template {
    /// `{"jsonrpc":…,"_meta":{"emitNs":`
    head: Vec<u8>,
}

impl Template {
    fn new(session_id: &str, frame_bytes: usize) -> Template {
        // Written by hand, not through `json!`, to keep `_meta` last; the two
        // strings go through serde_json so they are escaped.
        let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string());
        let head = format!(
            concat!(
                r#"{{"jsonrpc":"2.0","method":"session/update","params":{{"sessionId":{},"#,
                r#""update":{{"sessionUpdate":"agent_message_chunk","content":{{"type":"text","text":{}}},"#,
                r#""_meta":{{"emitNs":"#
            ),
            quote(session_id),
            quote(&filler(frame_bytes)),
        );
        Template {
            head: head.into_bytes(),
        }
    }

    fn write(&self, w: &mut dyn Write, n: u64) -> io::Result<()> {
        w.write_all(&self.head)?;
        write!(w, "{},\"n\":{n}", unix_nanos())?;
        w.write_all(b"}}}}\n")
    }
}

/// `len` bytes of readable ASCII text.
fn filler(len: usize) -> String {
    const WORDS: &[u8] = b"the quick brown fox jumps over the lazy dog ";
    WORDS
        .iter()
        .copied()
        .cycle()
        .take(len)
        .map(char::from)
        .collect()
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Streams the flood for `session_id` until done or `cancel` is set.
pub fn run(
    peer: &Peer,
    session_id: &str,
    flood: Flood,
    cancel: &AtomicBool,
) -> io::Result<FloodEnd> {
    let template = Template::new(session_id, flood.frame_bytes);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < flood.frames {
        if cancel.load(Ordering::Relaxed) {
            return Ok(FloodEnd::Cancelled { sent });
        }
        if flood.rate > 0 {
            // Sleep until the next frame is due, then send every frame due by
            // now: the schedule is fixed from `start`, so sleep overshoot
            // never accumulates.
            let due = start + due_offset(sent, flood.rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let now = Instant::now();
            peer.with_output(|w| -> io::Result<()> {
                loop {
                    template.write(w, sent)?;
                    sent += 1;
                    if sent == flood.frames || start + due_offset(sent, flood.rate) > now {
                        break;
                    }
                }
                w.flush()
            })?;
        } else {
            peer.with_output(|w| -> io::Result<()> {
                let batch_start = Instant::now();
                loop {
                    template.write(w, sent)?;
                    sent += 1;
                    if sent == flood.frames
                        || (sent.is_multiple_of(64) && batch_start.elapsed() >= BATCH_TIME)
                    {
                        break;
                    }
                }
                w.flush()
            })?;
        }
    }
    Ok(FloodEnd::Done)
}

/// When frame `n` is due, counted from the start, at `rate` frames a second.
fn due_offset(n: u64, rate: u64) -> Duration {
    let nanos = u128::from(n) * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::sync::{Arc, Mutex};

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn frames_are_valid_updates() {
        let buf = Shared::default();
        let peer = Peer::new(Box::new(buf.clone()));
        let cancel = AtomicBool::new(false);
        let flood = Flood {
            frames: 5,
            frame_bytes: 100,
            rate: 0,
        };
        assert_eq!(
            run(&peer, "demo-\"x", flood, &cancel).expect("flood"),
            FloodEnd::Done
        );
        let bytes = buf.0.lock().expect("lock").clone();
        let text = String::from_utf8(bytes).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        for (i, line) in lines.iter().enumerate() {
            let v: Value = serde_json::from_str(line).expect("valid json");
            assert_eq!(v["params"]["sessionId"], "demo-\"x");
            let update = &v["params"]["update"];
            assert_eq!(update["sessionUpdate"], "agent_message_chunk");
            assert_eq!(update["content"]["text"].as_str().map(str::len), Some(100));
            assert_eq!(update["_meta"]["n"], i as u64);
            assert!(
                update["_meta"]["emitNs"]
                    .as_u64()
                    .is_some_and(|ns| ns > 1_600_000_000_000_000_000)
            );
        }
    }

    #[test]
    fn rate_paces_on_a_fixed_schedule() {
        let peer = Peer::new(Box::new(io::sink()));
        let cancel = AtomicBool::new(false);
        let t0 = Instant::now();
        let flood = Flood {
            frames: 21,
            frame_bytes: 10,
            rate: 200,
        };
        run(&peer, "s", flood, &cancel).expect("flood");
        // Frame 20 is due at 100 ms.
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(100), "too fast: {took:?}");
        assert!(took < Duration::from_secs(2), "too slow: {took:?}");
    }

    #[test]
    fn cancel_stops_the_flood() {
        let peer = Peer::new(Box::new(io::sink()));
        let cancel = AtomicBool::new(true);
        let flood = Flood {
            frames: 1_000_000,
            frame_bytes: 10,
            rate: 0,
        };
        assert_eq!(
            run(&peer, "s", flood, &cancel).expect("flood"),
            FloodEnd::Cancelled { sent: 0 }
        );
    }

    #[test]
    fn due_offsets() {
        assert_eq!(due_offset(0, 1000), Duration::ZERO);
        assert_eq!(due_offset(1000, 1000), Duration::from_secs(1));
        assert_eq!(due_offset(3, 0), Duration::from_secs(3));
    }
}
