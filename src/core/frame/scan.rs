//! The hot path's scanner: a `session/update` probe and a JSON validity
//! check in one vectorised pass, with serde as the reference they answer
//! for (checked by differential tests). Performs no I/O.

use std::borrow::Cow;

/// Fast path for the hottest agent line: a `session/update` notification.
/// Returns its `params.sessionId` without building a JSON tree (the line is
/// still fully validated); `None` for anything else, which then takes
/// [`parse_line`].
///
/// The common shape (plain keys, no `id`, no escapes in the method or the
/// session id) is read by [`scan_update`], one vectorised pass that borrows
/// the id from the line; anything else goes through serde.
pub fn probe_update(line: &[u8]) -> Option<Cow<'_, str>> {
    match scan_update(line) {
        Some(sid) => Some(Cow::Borrowed(sid)),
        None => serde_probe_update(line),
    }
}

/// [`probe_update`] through serde: the reference the fast scanner answers for.
pub(super) fn serde_probe_update(line: &[u8]) -> Option<Cow<'_, str>> {
    use serde::Deserialize;
    use serde::de::IgnoredAny;
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow, rename = "sessionId")]
        session_id: Option<Cow<'a, str>>,
    }
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        method: Option<Cow<'a, str>>,
        id: Option<IgnoredAny>,
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    let p: Probe<'_> = serde_json::from_slice(line).ok()?;
    if p.id.is_some() || p.method.as_deref() != Some("session/update") {
        return None;
    }
    p.params?.session_id
}

/// The `params.sessionId` of a `session/update` notification in its common
/// shape, checking the whole line as `serde_json` would. `None` means "not
/// this shape", never "not JSON": the caller then asks serde.
///
/// It answers `Some` only where serde's probe answers the same: the line is
/// one JSON object with nothing after it (serde's grammar: no trailing
/// commas, no leading zeros, no control bytes in strings, valid escapes);
/// its keys at the top and in `params` are ASCII without escapes and `method`,
/// `params` and `sessionId` appear once; there is no `id`; `method` is
/// `"session/update"` and `sessionId` a string without escapes.
pub fn scan_update(line: &[u8]) -> Option<&str> {
    let mut p = Scanner { s: line, i: 0 };
    p.ws();
    p.eat(b'{')?;
    p.ws();
    let mut method = false;
    let mut sid = None;
    loop {
        let key = p.plain_key()?;
        match key {
            b"id" => return None,
            b"method" => {
                if method {
                    return None;
                }
                p.eat(b'"')?;
                let (m, escaped) = p.string()?;
                if escaped || m != b"session/update" {
                    return None;
                }
                method = true;
            }
            b"params" => {
                if sid.is_some() {
                    return None;
                }
                sid = Some(p.params()?);
            }
            _ => p.value()?,
        }
        if p.close(b'}')? {
            break;
        }
    }
    p.ws();
    if !method || p.i != line.len() {
        return None;
    }
    sid
}

/// Whether `line` is one JSON value with only whitespace around it, checked
/// as `serde_json` checks a value it ignores. `false` means "not shown valid":
/// nesting past [`SCAN_DEPTH`] is left to serde, so a caller that needs the
/// exact answer asks serde after a `false`.
pub fn scan_json(line: &[u8]) -> bool {
    let mut p = Scanner { s: line, i: 0 };
    p.ws();
    if p.value().is_none() {
        return false;
    }
    p.ws();
    p.i == line.len()
}

/// A cursor over one line for [`scan_update`] and [`scan_json`]; every method
/// returns `None` where the bytes are not what serde would accept (or not the
/// common shape).
struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// JSON whitespace, as serde_json skips it.
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.i += 1)
    }

    /// After a member of an object (or an element of an array) closed by
    /// `end`: `true` at the end, `false` after a comma.
    fn close(&mut self, end: u8) -> Option<bool> {
        self.ws();
        let b = self.peek()?;
        self.i += 1;
        if b == end {
            return Some(true);
        }
        (b == b',').then(|| self.ws())?;
        Some(false)
    }

    /// The body of a string whose opening quote is eaten: its raw bytes and
    /// whether it holds escapes (checked as serde checks them).
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        let start = self.i;
        let mut escaped = false;
        loop {
            self.i += plain_run(&self.s[self.i..]);
            match self.peek()? {
                b'"' => {
                    let raw = &self.s[start..self.i];
                    self.i += 1;
                    return Some((raw, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match *self.s.get(self.i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                        b'u' => {
                            let hex = self.s.get(self.i + 2..self.i + 6)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.i += 6;
                        }
                        _ => return None,
                    }
                }
                _ => return None, // a control character
            }
        }
    }

    /// A key and its colon (any string, as in an ignored object).
    fn key(&mut self) -> Option<(&'a [u8], bool)> {
        self.eat(b'"')?;
        let key = self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(key)
    }

    /// A key serde would read as a field name: ASCII, no escapes.
    fn plain_key(&mut self) -> Option<&'a [u8]> {
        match self.key()? {
            (k, false) if k.is_ascii() => Some(k),
            _ => None,
        }
    }

    /// The `params` object: its `sessionId`, the rest checked and skipped.
    fn params(&mut self) -> Option<&'a str> {
        self.eat(b'{')?;
        self.ws();
        let mut sid = None;
        loop {
            if self.plain_key()? == b"sessionId" {
                if sid.is_some() {
                    return None;
                }
                self.eat(b'"')?;
                let (v, escaped) = self.string()?;
                if escaped {
                    return None;
                }
                sid = Some(std::str::from_utf8(v).ok()?);
            } else {
                self.value()?;
            }
            if self.close(b'}')? {
                return sid;
            }
        }
    }

    fn digits(&mut self) -> usize {
        let n = self.s[self.i..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        self.i += n;
        n
    }

    /// A number in JSON's grammar (serde's: one leading zero at most).
    fn number(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.').is_some() && self.digits() == 0 {
            return None;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        (self.s.get(self.i..self.i + word.len())? == word).then(|| self.i += word.len())
    }

    /// Skips one value of any kind, checking it as serde's `IgnoredAny`
    /// does; nesting past [`SCAN_DEPTH`] gives up (serde decides).
    fn value(&mut self) -> Option<()> {
        let mut objects = 0u64; // one bit per open container: 1 for an object
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                open @ (b'{' | b'[') => {
                    let object = open == b'{';
                    self.i += 1;
                    self.ws();
                    if self.eat(if object { b'}' } else { b']' }).is_none() {
                        if depth == SCAN_DEPTH {
                            return None;
                        }
                        objects = objects << 1 | object as u64;
                        depth += 1;
                        if object {
                            self.key()?;
                        }
                        continue;
                    }
                }
                b'"' => {
                    self.i += 1;
                    self.string()?;
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => self.number()?,
            }
            // A value ended: close containers until a comma opens the next one.
            loop {
                if depth == 0 {
                    return Some(());
                }
                let object = objects & 1 == 1;
                if !self.close(if object { b'}' } else { b']' })? {
                    if object {
                        self.key()?;
                    }
                    break;
                }
                objects >>= 1;
                depth -= 1;
            }
        }
    }
}

/// Nesting [`scan_update`] follows inside a value before leaving the line to serde.
const SCAN_DEPTH: usize = 64;

/// Whether a string byte needs a closer look: a quote, a backslash or a
/// control character. (Written with saturating and `min` steps, which the
/// compiler turns into a few vector instructions per block.)
#[inline]
fn is_special(b: u8) -> bool {
    b.saturating_sub(0x1f).min(b ^ b'"').min(b ^ b'\\') == 0
}

/// Bytes checked per step by the scans below: a branch-free test over a
/// fixed block compiles to a few vector instructions per block; the block
/// that holds a hit is then searched a word at a time.
const BLOCK: usize = 32;

/// A block as an array, so the compiler sees its length.
#[inline]
fn as_block(b: &[u8]) -> &[u8; BLOCK] {
    b.try_into().expect("chunks of BLOCK bytes")
}

const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const ONES: u64 = 0x0101_0101_0101_0101;

/// The high bit of each byte of `x` that is zero, and no other bit.
#[inline]
fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// The high bit of each byte of `x` that [`is_special`].
#[inline]
fn special_bytes(x: u64) -> u64 {
    zero_bytes(x & (ONES * 0xe0))
        | zero_bytes(x ^ (ONES * b'"' as u64))
        | zero_bytes(x ^ (ONES * b'\\' as u64))
}

/// The `k`th little-endian word of a block.
#[inline]
fn word(block: &[u8; BLOCK], k: usize) -> u64 {
    u64::from_le_bytes(block[k * 8..k * 8 + 8].try_into().expect("8 bytes"))
}

/// Offset of the first byte `hits` marks in a block that holds one.
#[inline]
fn first_hit(block: &[u8; BLOCK], hits: impl Fn(u64) -> u64) -> usize {
    (0..BLOCK / 8)
        .find_map(|k| {
            let m = hits(word(block, k));
            (m != 0).then(|| k * 8 + m.trailing_zeros() as usize / 8)
        })
        .unwrap_or(BLOCK)
}

/// Length of the run of ordinary string bytes at the start of `s`.
fn plain_run(s: &[u8]) -> usize {
    // Most strings (keys, ids, short values) end within a few words.
    let mut i = 0;
    while i < BLOCK {
        let Some(w) = s.get(i..i + 8) else { break };
        let m = special_bytes(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        if m != 0 {
            return i + m.trailing_zeros() as usize / 8;
        }
        i += 8;
    }
    for block in s[i..].chunks_exact(BLOCK).map(as_block) {
        if block.iter().fold(false, |a, &b| a | is_special(b)) {
            return i + first_hit(block, special_bytes);
        }
        i += BLOCK;
    }
    i + s[i..]
        .iter()
        .position(|&b| is_special(b))
        .unwrap_or(s.len() - i)
}

/// The first `needle` in `hay` (`memchr`, vectorised).
#[inline]
pub fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(needle, hay)
}

/// The last `needle` in `hay` (`memrchr`, vectorised).
#[inline]
pub fn rfind_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    memchr::memrchr(needle, hay)
}

#[cfg(test)]
mod probe_tests {
    use super::*;

    #[test]
    fn probes_only_session_updates() {
        let l = br#"{"jsonrpc":"2.0","method":"session/update","params":{"update":{"x":[1,{"y":"z"}]},"sessionId":"s-1"}}"#;
        assert_eq!(probe_update(l).as_deref(), Some("s-1"));
        assert_eq!(
            probe_update(
                br#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"a\"b"}}"#
            )
            .as_deref(),
            Some("a\"b")
        );
        assert_eq!(
            probe_update(br#"{"id":1,"method":"session/update","params":{"sessionId":"s"}}"#),
            None
        );
        assert_eq!(
            probe_update(br#"{"method":"session/other","params":{"sessionId":"s"}}"#),
            None
        );
        assert_eq!(
            probe_update(br#"{"method":"session/update","params":{}}"#),
            None
        );
        assert_eq!(
            probe_update(br#"{"method":"session/update","params":{"sessionId":"s"}"#),
            None
        );
        assert_eq!(probe_update(b"not json"), None);
    }

    /// Valid `session/update` lines in shapes the fast scanner takes.
    const UPDATES: &[&[u8]] = &[
        br#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s-1","update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"hi \"there\" \u00e9 \\ \/ \b\f\n\r\t caf\u00E9"},"_meta":{"n":[1,-2.5e3,0,0.5,1E+2,2e-1,true,false,null,{},[],[[]],{"a":{}}]}}}}"#,
        b" { \"params\" : { \"update\" : { } , \"sessionId\" : \"x\" } ,\t\"method\" : \"session/update\" , \"jsonrpc\" : \"2.0\" } \r\n",
        "{\"method\":\"session/update\",\"params\":{\"sessionId\":\"caf\u{e9}\",\"update\":{\"text\":\"\u{1f600} \x7f\"}},\"x\":[-0,1.25,\"\"]}".as_bytes(),
        br#"{"method":"session/update","params":{"sessionId":"a","sessionIdx":1},"sessionId":"b"}"#,
    ];

    #[test]
    fn scanner_takes_the_common_shapes() {
        for line in UPDATES {
            let fast = scan_update(line);
            assert!(fast.is_some(), "{}", String::from_utf8_lossy(line));
            assert_eq!(serde_probe_update(line).as_deref(), fast);
        }
        let long = format!(
            r#"{{"jsonrpc":"2.0","method":"session/update","params":{{"sessionId":"s","update":{{"content":{{"text":"{}"}}}}}}}}"#,
            "the quick brown fox ".repeat(200)
        );
        assert_eq!(scan_update(long.as_bytes()), Some("s"));
    }

    #[test]
    fn scanner_leaves_the_rest_to_serde() {
        let not_fast: &[&[u8]] = &[
            br#"{"id":1,"method":"session/update","params":{"sessionId":"s"}}"#,
            br#"{"id":null,"method":"session/update","params":{"sessionId":"s"}}"#,
            br#"{"method":"session/update","method":"session/update","params":{"sessionId":"s"}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s"},"params":{"sessionId":"s"}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s","sessionId":"t"}}"#,
            br#"{"m\u0065thod":"session/update","params":{"sessionId":"s"}}"#,
            br#"{"method":"session\/update","params":{"sessionId":"s"}}"#,
            br#"{"method":"session/update","params":{"session\u0049d":"s"}}"#,
            br#"{"method":"session/update","params":{"sessionId":"a\"b"}}"#,
            br#"{"method":"session/update","params":{"sessionId":null}}"#,
            br#"{"method":"session/update","params":["s"]}"#,
            br#"["session/update",null,{"sessionId":"s"}]"#,
            br#"{"method":"session/update"}"#,
            br#"{"method":"session/update","params":{}}"#,
            br#"{"method":"session/other","params":{"sessionId":"s"}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s"},}"#,
            br#"{"method":"session/update","params":{"sessionId":"s"}} x"#,
            br#"{"method":"session/update","params":{"sessionId":"s"}}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s","n":01}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s","n":1.}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s","n":-}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s","n":1e}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s","n":[1,]}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s","n":"\x"}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s","n":"\u12g4"}}"#,
            br#"{"method":"session/update","params":{"sessionId":"s","n":tru}}"#,
            b"{\"method\":\"session/update\",\"params\":{\"sessionId\":\"s\",\"n\":\"\x01\"}}",
            b"{\"method\":\"session/update\",\"params\":{\"sessionId\":\"\xff\"}}",
            b"{\"method\":\"session/update\",\"params\":{\"sessionId\":\"s\",\"\xc3\xa9\":1}}",
            b"\xef\xbb\xbf{\"method\":\"session/update\",\"params\":{\"sessionId\":\"s\"}}",
            b"{\"method\":\"session/update\",\"params\":{\"sessionId\":\"s\"}}\x0b",
        ];
        for line in not_fast {
            assert_eq!(scan_update(line), None, "{}", String::from_utf8_lossy(line));
        }
        let deep = format!(
            r#"{{"method":"session/update","params":{{"sessionId":"s","u":{}1{}}}}}"#,
            "[".repeat(SCAN_DEPTH + 1),
            "]".repeat(SCAN_DEPTH + 1)
        );
        assert_eq!(scan_update(deep.as_bytes()), None);
        assert_eq!(probe_update(deep.as_bytes()).as_deref(), Some("s"));
        let ok = format!(
            r#"{{"method":"session/update","params":{{"sessionId":"s","u":{}1{}}}}}"#,
            "[".repeat(SCAN_DEPTH),
            "]".repeat(SCAN_DEPTH)
        );
        assert_eq!(scan_update(ok.as_bytes()), Some("s"));
    }

    /// Whatever the bytes, the scanner never answers where serde would not
    /// answer the same.
    #[test]
    fn scanner_agrees_with_serde_on_mutations() {
        let alphabet: &[u8] =
            b"{}[]\":,\\ /abdefilmnorstu0123456789-+.eEI\x00\x1f\x7f\xc3\xa9\xff\t\r\n";
        let mut s: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move |n: usize| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % n as u64) as usize
        };
        let mut fast = 0;
        for round in 0..40_000 {
            let mut line = UPDATES[round % UPDATES.len()].to_vec();
            for _ in 0..1 + next(3) {
                let at = next(line.len() + 1);
                match next(4) {
                    0 if at < line.len() => line[at] = alphabet[next(alphabet.len())],
                    1 if at < line.len() => {
                        line.remove(at);
                    }
                    2 => line.insert(at, alphabet[next(alphabet.len())]),
                    _ => {
                        let from = next(line.len());
                        let to = (from + next(12)).min(line.len());
                        let piece = line[from..to].to_vec();
                        line.splice(at..at, piece);
                    }
                }
            }
            if scan_json(&line) {
                assert!(
                    serde_json::from_slice::<serde::de::IgnoredAny>(&line).is_ok(),
                    "{}",
                    String::from_utf8_lossy(&line)
                );
            }
            if let Some(sid) = scan_update(&line) {
                fast += 1;
                assert_eq!(
                    serde_probe_update(&line).as_deref(),
                    Some(sid),
                    "{}",
                    String::from_utf8_lossy(&line)
                );
            }
        }
        assert!(fast > 1000, "only {fast} mutations took the fast path");
    }

    #[test]
    fn byte_search_matches_the_naive_one() {
        let bytes = b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\"\\\x00\x1f\x20\x7f\x80\xff\xe0\x01\x21\x23\x5b\x5d\x0a\x8a";
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..200 {
            for _ in 0..50 {
                let hay: Vec<u8> = (0..len)
                    .map(|_| {
                        s ^= s << 13;
                        s ^= s >> 7;
                        s ^= s << 17;
                        let r = (s >> 20) as usize;
                        if r.is_multiple_of(8) {
                            bytes[r / 8 % bytes.len()]
                        } else {
                            b'a'
                        }
                    })
                    .collect();
                for needle in [b'\n', b'"', 0x8a, 0] {
                    assert_eq!(
                        find_byte(needle, &hay),
                        hay.iter().position(|&b| b == needle)
                    );
                    assert_eq!(
                        rfind_byte(needle, &hay),
                        hay.iter().rposition(|&b| b == needle)
                    );
                }
                let plain = hay.iter().position(|&b| is_special(b)).unwrap_or(hay.len());
                assert_eq!(plain_run(&hay), plain, "{hay:?}");
            }
        }
    }
}
