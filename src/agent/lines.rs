//! Bounded line reading over an async buffered reader: a line longer than the
//! bound is skipped (and reported), never buffered whole.

use crate::core::frame::find_byte;
use futures_lite::io::{AsyncBufRead, AsyncBufReadExt};
use std::io;

/// What one call to [`read_line`] found.
#[derive(Debug, PartialEq)]
pub enum LineRead {
    /// A complete line is in the buffer (without its `\n`).
    Line,
    /// A line longer than the bound was skipped; `size` bytes were dropped.
    TooLong {
        size: usize,
    },
    Eof,
}

/// One bounded line being gathered across buffer fills: the logic shared by
/// [`read_line`] and blocking readers (the `connect` bridge's stdin).
pub struct LineAcc<'a> {
    buf: &'a mut Vec<u8>,
    skipped: usize,
    max: usize,
}

impl<'a> LineAcc<'a> {
    /// Starts a line in `buf` (cleared), at most `max` bytes.
    pub fn new(buf: &'a mut Vec<u8>, max: usize) -> Self {
        buf.clear();
        LineAcc {
            buf,
            skipped: 0,
            max,
        }
    }

    /// Takes what it can from `chunk` (an empty chunk is end of file): the
    /// bytes to consume, and the outcome once the line is over.
    pub fn feed(&mut self, chunk: &[u8]) -> (usize, Option<LineRead>) {
        if chunk.is_empty() {
            let end = match (self.skipped, self.buf.is_empty()) {
                (0, true) => LineRead::Eof,
                (0, false) => LineRead::Line,
                (size, _) => LineRead::TooLong { size },
            };
            return (0, Some(end));
        }
        let (part, done) = match find_byte(b'\n', chunk) {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        if self.skipped > 0 || self.buf.len() + part.len() > self.max {
            self.skipped += self.buf.len() + part.len();
            self.buf.clear();
        } else {
            self.buf.extend_from_slice(part);
        }
        match done {
            Some(used) if self.skipped > 0 => {
                (used, Some(LineRead::TooLong { size: self.skipped }))
            }
            Some(used) => (used, Some(LineRead::Line)),
            None => (chunk.len(), None),
        }
    }
}

/// Reads one `\n`-terminated line into `buf` (cleared first), at most `max` bytes.
/// A last line without a newline at end of file is returned as a line.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    let mut acc = LineAcc::new(buf, max);
    loop {
        let (used, done) = acc.feed(reader.fill_buf().await?);
        reader.consume(used);
        if let Some(read) = done {
            return Ok(read);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::io::BufReader;

    #[test]
    fn reads_bounded_lines() {
        smol::block_on(async {
            let data: &[u8] = b"one\ntoo long line\nthree\nlast";
            let mut r = BufReader::with_capacity(4, data);
            let mut buf = Vec::new();
            assert_eq!(
                read_line(&mut r, &mut buf, 8).await.unwrap(),
                LineRead::Line
            );
            assert_eq!(buf, b"one");
            assert_eq!(
                read_line(&mut r, &mut buf, 8).await.unwrap(),
                LineRead::TooLong { size: 13 }
            );
            assert_eq!(
                read_line(&mut r, &mut buf, 8).await.unwrap(),
                LineRead::Line
            );
            assert_eq!(buf, b"three");
            assert_eq!(
                read_line(&mut r, &mut buf, 8).await.unwrap(),
                LineRead::Line
            );
            assert_eq!(buf, b"last");
            assert_eq!(read_line(&mut r, &mut buf, 8).await.unwrap(), LineRead::Eof);
        });
    }
}
