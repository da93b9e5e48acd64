//! Outbound numbering: `"rseq":N` spliced in as a frame's first key without
//! re-serialising, and the one parser that reads it back. Performs no I/O.

fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// Appends `n` in decimal without an intermediate allocation.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Splices `"rseq":seq` in as the first key of a JSON object line.
///
/// Returns `None` when the line does not start (after whitespace) with `{`.
/// Leading whitespace is dropped; the rest of the bytes are kept as they are.
pub fn stamp_rseq(line: &[u8], seq: u64) -> Option<Vec<u8>> {
    let start = line.iter().position(|b| !b.is_ascii_whitespace())?;
    if line[start] != b'{' {
        return None;
    }
    let body = &line[start + 1..];
    let first = body.iter().position(|b| !b.is_ascii_whitespace());
    let empty = matches!(first, Some(i) if body[i] == b'}');
    let mut out = Vec::with_capacity(body.len() + 9 + decimal_len(seq));
    out.extend_from_slice(RSEQ_PREFIX);
    push_decimal(&mut out, seq);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(body);
    while out.last().is_some_and(|b| b.is_ascii_whitespace()) {
        out.pop();
    }
    Some(out)
}

/// How every stamped frame starts: the relay's `rseq` is its first key.
pub const RSEQ_PREFIX: &[u8] = b"{\"rseq\":";

/// The one rseq parser: a stamped frame's number and the bytes after it
/// (`,...}` or `}`); `None` when the frame is not stamped.
pub fn split_rseq(frame: &[u8]) -> Option<(u64, &[u8])> {
    let rest = frame.strip_prefix(RSEQ_PREFIX)?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    let n = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    Some((n, &rest[end..]))
}

/// The `rseq` of a stamped frame (`{"rseq":N,...`), read from its first bytes.
pub fn read_rseq(frame: &[u8]) -> Option<u64> {
    split_rseq(frame).map(|(n, _)| n)
}

#[cfg(test)]
mod rseq_tests {
    use super::*;

    #[test]
    fn reads_back_what_was_stamped() {
        for n in [0u64, 1, 42, u64::MAX] {
            assert_eq!(read_rseq(&stamp_rseq(b"{\"a\":1}", n).unwrap()), Some(n));
        }
        assert_eq!(read_rseq(b"{\"rseq\":}"), None);
        assert_eq!(read_rseq(b"{\"id\":1}"), None);
        assert_eq!(read_rseq(b"{\"rseq\":12"), None);
    }
}

#[cfg(test)]
mod split_tests {
    use super::*;

    #[test]
    fn splits_the_number_from_the_rest() {
        assert_eq!(
            split_rseq(b"{\"rseq\":12,\"a\":1}"),
            Some((12, &b",\"a\":1}"[..]))
        );
        assert_eq!(split_rseq(b"{\"rseq\":3}"), Some((3, &b"}"[..])));
        assert_eq!(split_rseq(b"{\"rseq\":99999999999999999999999}"), None);
        assert_eq!(split_rseq(b"{\"a\":1}"), None);
    }
}
