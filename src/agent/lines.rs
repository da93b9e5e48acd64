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

/// Reads one `\n`-terminated line into `buf` (cleared first), at most `max` bytes.
/// A last line without a newline at end of file is returned as a line.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    buf.clear();
    let mut skipped = 0usize;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if skipped > 0 {
                LineRead::TooLong { size: skipped }
            } else if buf.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Line
            });
        }
        let (part, done) = match find_byte(b'\n', chunk) {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        if skipped > 0 || buf.len() + part.len() > max {
            skipped += buf.len() + part.len();
            buf.clear();
        } else {
            buf.extend_from_slice(part);
        }
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(if skipped > 0 {
                LineRead::TooLong { size: skipped }
            } else {
                LineRead::Line
            });
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
