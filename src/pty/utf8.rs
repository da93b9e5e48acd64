//! Incremental UTF-8 decoding of PTY output: a character split across two
//! reads is carried over whole, bytes that can never be UTF-8 become U+FFFD.
//! Performs no I/O.

/// Longest incomplete sequence that can be carried (a 4-byte character
/// missing its last byte).
const MAX_CARRY: usize = 3;

/// Decoder state between reads: the bytes of at most one incomplete
/// character from the end of the previous read.
#[derive(Debug, Default)]
pub struct Utf8Carry {
    carry: [u8; MAX_CARRY],
    len: usize,
}

impl Utf8Carry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes the carried bytes followed by `bytes`. An incomplete sequence
    /// at the end is kept for the next call instead of being replaced.
    pub fn decode(&mut self, bytes: &[u8]) -> String {
        if self.len == 0 {
            return self.decode_joined(bytes);
        }
        let mut joined = Vec::with_capacity(self.len + bytes.len());
        joined.extend_from_slice(&self.carry[..self.len]);
        joined.extend_from_slice(bytes);
        self.len = 0;
        self.decode_joined(&joined)
    }

    /// End of output: whatever is still carried can never complete.
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.carry[..self.len]).into_owned();
        self.len = 0;
        rest
    }

    /// Bytes currently carried.
    pub fn pending(&self) -> usize {
        self.len
    }

    fn decode_joined(&mut self, mut rest: &[u8]) -> String {
        let mut out = String::with_capacity(rest.len());
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    return out;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // `valid` is valid UTF-8, so this borrows and never replaces.
                    out.push_str(&String::from_utf8_lossy(valid));
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        None => {
                            // Unexpected end: a prefix of one character,
                            // at most MAX_CARRY bytes.
                            let n = after.len().min(MAX_CARRY);
                            self.carry[..n].copy_from_slice(&after[..n]);
                            self.len = n;
                            return out;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_text_passes_through() {
        let mut d = Utf8Carry::new();
        assert_eq!(d.decode("héllo 😀 漢字".as_bytes()), "héllo 😀 漢字");
        assert_eq!(d.pending(), 0);
        assert_eq!(d.finish(), "");
    }

    #[test]
    fn split_characters_are_carried_at_every_boundary() {
        let text = "a😀b漢字c é\u{1F9D1}\u{200D}\u{1F4BB}";
        let bytes = text.as_bytes();
        for cut in 0..=bytes.len() {
            let mut d = Utf8Carry::new();
            let mut out = d.decode(&bytes[..cut]);
            out += &d.decode(&bytes[cut..]);
            out += &d.finish();
            assert_eq!(out, text, "cut at {cut}");
        }
        // One byte per read.
        let mut d = Utf8Carry::new();
        let mut out = String::new();
        for b in bytes {
            let part = d.decode(std::slice::from_ref(b));
            assert!(!part.contains(char::REPLACEMENT_CHARACTER));
            out += &part;
        }
        assert_eq!(out, text);
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut d = Utf8Carry::new();
        assert_eq!(d.decode(b"a\xffb\xc3(c"), "a\u{FFFD}b\u{FFFD}(c");
        // A carried prefix that the next read does not complete.
        assert_eq!(d.decode(b"x\xe6\xbc"), "x");
        assert_eq!(d.pending(), 2);
        assert_eq!(d.decode(b"y"), "\u{FFFD}y");
        // A prefix left at the end of output.
        assert_eq!(d.decode(b"z\xf0\x9f"), "z");
        assert_eq!(d.finish(), "\u{FFFD}");
        assert_eq!(d.pending(), 0);
    }
}
