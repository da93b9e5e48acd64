//! Frames at the byte level, in three parts: `parse` (inbound lines: split,
//! bound, classify), `stamp` (the relay's `"rseq":N` as the first key, and
//! reading it back) and `scan` (the one-pass `session/update` probe and JSON
//! check of the per-frame path, with byte searches through `memchr`).
//! Performs no I/O.

mod parse;
mod scan;
mod stamp;

pub use parse::*;
pub use scan::*;
pub use stamp::*;

use scan::serde_probe_update;

/// Fuzz harness: parse, classify, stamp and read back arbitrary bytes. Never
/// panics; asserts the stamper's invariants.
pub fn fuzz_line(data: &[u8]) {
    let _ = parse_line(
        data,
        LineLimits {
            max_line_bytes: 1 << 16,
            max_depth: 32,
        },
    );
    for line in lines(data) {
        let _ = parse_line(line, LineLimits::default());
    }
    if let Some(sid) = scan_update(data) {
        assert_eq!(serde_probe_update(data).as_deref(), Some(sid));
    }
    if scan_json(data) {
        assert!(serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok());
    }
    let seq = data.len() as u64;
    if let Some(stamped) = stamp_rseq(data, seq) {
        assert_eq!(read_rseq(&stamped), Some(seq));
        // Stamping a valid object yields a valid object with rseq first.
        if let Ok(serde_json::Value::Object(orig)) =
            serde_json::from_slice::<serde_json::Value>(data)
            && !orig.contains_key("rseq")
        {
            let v: serde_json::Value =
                serde_json::from_slice(&stamped).expect("stamped object stays valid JSON");
            assert_eq!(v["rseq"], seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rpc::code;
    use serde_json::{Value, json};

    fn parse(s: &str) -> Result<Message, FrameError> {
        parse_line(s.as_bytes(), LineLimits::default())
    }

    #[test]
    fn classifies_requests_notifications_responses() {
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":"c:1","method":"x","params":{}}"#),
            Ok(Message::Request {
                id: json!("c:1"),
                method: "x".into(),
                params: json!({})
            })
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","method":"n"}"#),
            Ok(Message::Notification {
                method: "n".into(),
                params: Value::Null
            })
        );
        assert_eq!(
            parse(r#"{"id":3,"result":null}"#),
            Ok(Message::Response {
                id: json!(3),
                outcome: Ok(Value::Null)
            })
        );
        assert_eq!(
            parse(r#"{"id":3,"error":{"code":1}}"#),
            Ok(Message::Response {
                id: json!(3),
                outcome: Err(json!({"code":1}))
            })
        );
    }

    #[test]
    fn rejects_bad_messages_with_codes() {
        assert_eq!(
            parse("nope").unwrap_err().to_rpc().1.code,
            code::PARSE_ERROR
        );
        assert_eq!(parse("[1]").unwrap_err(), FrameError::NotObject);
        assert_eq!(parse(r#"{"id":1}"#).unwrap_err().to_rpc().0, json!(1));
        assert_eq!(
            parse(r#"{"id":{},"method":"x"}"#)
                .unwrap_err()
                .to_rpc()
                .1
                .code,
            code::INVALID_REQUEST
        );
        assert!(matches!(
            parse(r#"{"method":"x","params":3}"#),
            Err(FrameError::Invalid { .. })
        ));
    }

    #[test]
    fn bounds_length_and_depth() {
        let limits = LineLimits {
            max_line_bytes: 10,
            max_depth: 3,
        };
        assert_eq!(
            parse_line(b"{\"method\":\"xx\"}", limits),
            Err(FrameError::TooLong { size: 15, max: 10 })
        );
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(
            parse_line(deep.as_bytes(), LineLimits::default()),
            Err(FrameError::TooDeep {
                max: DEFAULT_MAX_DEPTH
            })
        );
        // brackets inside strings do not count
        assert!(check_depth(br#"{"a":"[[[[[[[[\"[[["}"#, 2).is_ok());
    }

    #[test]
    fn splits_lines() {
        let got: Vec<&[u8]> = lines(b"a\r\n\n  \nb\n").collect();
        assert_eq!(got, vec![&b"a"[..], &b"b"[..]]);
    }

    #[test]
    fn stamps_first_key() {
        assert_eq!(
            stamp_rseq(br#"{"jsonrpc":"2.0"}"#, 7).unwrap(),
            br#"{"rseq":7,"jsonrpc":"2.0"}"#
        );
        assert_eq!(
            stamp_rseq(b"  \n{ \"a\":1}\n", 1).unwrap(),
            br#"{"rseq":1, "a":1}"#
        );
        assert_eq!(stamp_rseq(b"{}", 2).unwrap(), br#"{"rseq":2}"#);
        assert_eq!(stamp_rseq(b"{ }", 2).unwrap(), br#"{"rseq":2 }"#);
        assert_eq!(stamp_rseq(b"[1]", 2), None);
        assert_eq!(stamp_rseq(b"", 2), None);
        let v: Value =
            serde_json::from_slice(&stamp_rseq(br#"{"x":[1,{"y":2}]}"#, 99).unwrap()).unwrap();
        assert_eq!(v, json!({"rseq":99,"x":[1,{"y":2}]}));
    }

    #[test]
    fn fuzz_harness_runs_the_committed_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/inbound_line");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            fuzz_line(&std::fs::read(e.path()).unwrap());
            n += 1;
        }
        assert!(n >= 3);
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small deterministic xorshift stands in for a fuzzer in the suite.
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        let alphabet = b"{}[]\":,\\ abc0123456789-.etrufnl\n\xff\xc3";
        for _ in 0..20_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let len = (s % 48) as usize;
            let mut buf = Vec::with_capacity(len);
            let mut t = s;
            for _ in 0..len {
                t = t
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                buf.push(alphabet[(t >> 33) as usize % alphabet.len()]);
            }
            let _ = parse_line(
                &buf,
                LineLimits {
                    max_line_bytes: 40,
                    max_depth: 4,
                },
            );
            if let Some(out) = stamp_rseq(&buf, s) {
                assert!(out.starts_with(b"{\"rseq\":"));
            }
        }
    }
}
