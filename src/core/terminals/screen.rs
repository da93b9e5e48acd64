//! One terminal's screen state: the PTY byte stream parsed (by `vt100`) into
//! a cell grid with bounded scrollback, and the frames that carry it to
//! devices — a full snapshot, then row diffs against what was last sent.
//! Pure: no I/O, no clock; the shell decides when a frame is due.

use serde_json::{Map, Value, json};
use std::num::NonZeroU16;

/// Most columns a terminal may have.
pub const MAX_COLS: u16 = 500;
/// Most rows a terminal may have.
pub const MAX_ROWS: u16 = 200;
/// Scrollback lines kept per terminal, unless the relay is told otherwise.
pub const DEFAULT_SCROLLBACK_LINES: usize = 1000;
/// Most scrollback lines a terminal may keep.
pub const MAX_SCROLLBACK_LINES: usize = 10_000;
/// Most lines that scrolled off the top sent in one diff frame; in a flood
/// the older ones are skipped (they stay in the relay's scrollback).
pub const MAX_HISTORY_PER_FRAME: usize = 1000;
/// Longest window title kept, in characters.
pub const MAX_TITLE_CHARS: usize = 256;

/// What the parser reports besides the grid: rows dropped off the top of
/// the main screen's scrollback (to count what scrolled) and the title.
#[derive(Debug, Default)]
struct Track {
    discarded: usize,
    title: Option<String>,
}

impl vt100::Callbacks for Track {
    fn set_window_title(&mut self, _: &mut vt100::Screen, title: &[u8]) {
        let title: String = String::from_utf8_lossy(title)
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_TITLE_CHARS)
            .collect();
        self.title = Some(title);
    }

    fn on_scroll(&mut self, _: vt100::capture::RowContents<'_>, alternate_screen: bool) {
        if !alternate_screen {
            self.discarded = self.discarded.saturating_add(1);
        }
    }
}

/// Everything of a frame except its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    cols: u16,
    rows: u16,
    cursor_row: u16,
    cursor_col: u16,
    cursor_visible: bool,
    alt_screen: bool,
    app_cursor: bool,
    bracketed_paste: bool,
    title: Option<String>,
}

/// A terminal's screen. Invariants: `sent_rows` has one entry per row of
/// `sent.rows`; `seq` is the seq of the last frame made (0: none yet), and
/// every frame's seq is one more than the previous one's.
pub struct Screen {
    parser: vt100::Parser<Track>,
    seq: u64,
    sent: Meta,
    /// Each row's spans as last sent.
    sent_rows: Vec<Value>,
    /// Scrollback length when the last frame was made.
    sent_history: usize,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screen")
            .field("seq", &self.seq)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

fn dim(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

impl Screen {
    /// A blank screen of `cols`×`rows` (clamped to the limits) keeping up to
    /// `scrollback` lines (clamped to [`MAX_SCROLLBACK_LINES`]).
    pub fn new(cols: u16, rows: u16, scrollback: usize) -> Screen {
        let cols = cols.clamp(1, MAX_COLS);
        let rows = rows.clamp(1, MAX_ROWS);
        let parser = vt100::Parser::new_with_callbacks(
            dim(rows),
            dim(cols),
            scrollback.min(MAX_SCROLLBACK_LINES),
            Track::default(),
        );
        let mut s = Screen {
            parser,
            seq: 0,
            sent: Meta {
                cols,
                rows,
                cursor_row: 0,
                cursor_col: 0,
                cursor_visible: true,
                alt_screen: false,
                app_cursor: false,
                bracketed_paste: false,
                title: None,
            },
            sent_rows: Vec::new(),
            sent_history: 0,
        };
        s.sent = s.meta();
        s.sent_rows = (0..rows).map(|r| s.row_spans(r)).collect();
        s
    }

    /// Feeds PTY output to the parser. No frame is made until [`Screen::frame`].
    pub fn feed(&mut self, data: &[u8]) {
        self.parser.process(data);
    }

    /// Resizes the grid (clamped to the limits); the next frame is full.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        let cols = cols.clamp(1, MAX_COLS);
        let rows = rows.clamp(1, MAX_ROWS);
        self.parser.set_size(dim(rows), dim(cols));
    }

    /// The size of the grid as it is now (cols, rows).
    pub fn size(&self) -> (u16, u16) {
        let (rows, cols) = self.parser.screen().size();
        (cols.get(), rows.get())
    }

    /// The window title last set by the program, if any.
    pub fn title(&self) -> Option<&str> {
        self.parser.callbacks().title.as_deref()
    }

    /// The seq of the last frame made.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The frame bringing a device that holds the last frame up to date:
    /// the rows that changed and the lines that scrolled off since. Full
    /// (every row) when the size changed or the scrollback was cleared.
    /// `None` when nothing changed.
    pub fn frame(&mut self) -> Option<Value> {
        let meta = self.meta();
        let history_now = self.parser.screen().scrollback_len();
        let discarded = std::mem::take(&mut self.parser.callbacks_mut().discarded);
        let cleared = history_now < self.sent_history && discarded == 0;
        let full = meta.cols != self.sent.cols || meta.rows != self.sent.rows || cleared;
        let pushed = if cleared {
            0
        } else {
            history_now.saturating_sub(self.sent_history) + discarded
        };
        let rows: Vec<Value> = (0..meta.rows).map(|r| self.row_spans(r)).collect();
        let lines: Vec<Value> = rows
            .iter()
            .enumerate()
            .filter(|(i, row)| full || self.sent_rows.get(*i) != Some(row))
            .map(|(i, row)| json!([i, row]))
            .collect();
        if !full && lines.is_empty() && pushed == 0 && meta == self.sent {
            return None;
        }
        let history = if full {
            self.history(history_now, 0)
        } else {
            self.history(pushed.min(MAX_HISTORY_PER_FRAME), 0)
        };
        self.seq += 1;
        self.sent = meta;
        self.sent_rows = rows;
        self.sent_history = history_now;
        Some(self.params(full, history, lines))
    }

    /// A full frame of the screen as last sent (with the seq of that frame
    /// and the scrollback as it was then), for a device attaching now: the
    /// next [`Screen::frame`] applies to it.
    pub fn snapshot(&mut self) -> Value {
        let history_now = self.parser.screen().scrollback_len();
        let discarded = self.parser.callbacks().discarded;
        // Lines pushed since the last frame come in the next one.
        let pending = history_now
            .saturating_sub(self.sent_history)
            .saturating_add(discarded);
        let history = self.history(history_now.saturating_sub(pending), pending);
        let lines: Vec<Value> = self
            .sent_rows
            .iter()
            .enumerate()
            .map(|(i, row)| json!([i, row]))
            .collect();
        self.params(true, history, lines)
    }

    fn params(&self, full: bool, history: Vec<Value>, lines: Vec<Value>) -> Value {
        let m = &self.sent;
        json!({
            "seq": self.seq,
            "full": full,
            "cols": m.cols,
            "rows": m.rows,
            "cursor": {"row": m.cursor_row, "col": m.cursor_col, "visible": m.cursor_visible},
            "altScreen": m.alt_screen,
            "appCursor": m.app_cursor,
            "bracketedPaste": m.bracketed_paste,
            "title": m.title,
            "history": history,
            "lines": lines,
        })
    }

    fn meta(&self) -> Meta {
        let s = self.parser.screen();
        let (cols, rows) = self.size();
        let (cursor_row, cursor_col) = s.cursor_position();
        Meta {
            cols,
            rows,
            cursor_row,
            cursor_col,
            cursor_visible: !s.hide_cursor(),
            alt_screen: s.alternate_screen(),
            app_cursor: s.application_cursor(),
            bracketed_paste: s.bracketed_paste(),
            title: self.title().map(str::to_owned),
        }
    }

    /// The `count` scrollback lines that end `skip_newest` lines before the
    /// newest one, oldest first, as spans.
    fn history(&mut self, count: usize, skip_newest: usize) -> Vec<Value> {
        let len = self.parser.screen().scrollback_len();
        let end = len.saturating_sub(skip_newest);
        let start = end.saturating_sub(count);
        let rows = usize::from(self.size().1);
        let mut out = Vec::with_capacity(end - start);
        let mut i = start;
        while i < end {
            // With the view scrolled back by `len - i` lines, row 0 shows
            // scrollback line `i` and the rows below it the lines after.
            self.parser.screen_mut().set_scrollback(len - i);
            let batch = (end - i).min(rows);
            for r in 0..batch {
                out.push(self.row_spans(r as u16));
            }
            i += batch;
        }
        self.parser.screen_mut().set_scrollback(0);
        out
    }

    /// Row `row` of the visible grid as spans: runs of cells with the same
    /// attributes, each `{col, text, fg?, bg?, bold?, dim?, italic?,
    /// underline?, inverse?, wide?}`. Blank cells whose look does not show
    /// (no background, underline or inverse) join the run around them as
    /// spaces, or are left out between runs and at the end (the next span's
    /// `col` says where it starts).
    fn row_spans(&self, row: u16) -> Value {
        let s = self.parser.screen();
        let (cols, _) = self.size();
        let mut spans: Vec<Value> = Vec::new();
        let mut run: Option<Run> = None;
        for col in 0..cols {
            let Some(cell) = s.cell(row, col) else {
                break;
            };
            if cell.is_wide_continuation() {
                continue;
            }
            let attrs = Attrs::of(cell);
            let text = cell.contents();
            let blank = text.is_empty() || text == " ";
            if blank && !attrs.shows_blank() {
                // A gap: kept inside a run of the same look if text follows.
                continue;
            }
            let text = if text.is_empty() { " " } else { text };
            let width = if attrs.wide { 2 } else { 1 };
            match &mut run {
                Some(r)
                    if r.attrs == attrs
                        && (r.end == col || !(r.attrs.shows_blank() || r.attrs.wide)) =>
                {
                    for _ in r.end..col {
                        r.text.push(' ');
                    }
                    r.text.push_str(text);
                    r.end = col + width;
                }
                _ => {
                    if let Some(r) = run.take() {
                        spans.push(r.into_value());
                    }
                    run = Some(Run {
                        col,
                        end: col + width,
                        text: text.to_owned(),
                        attrs,
                    });
                }
            }
        }
        if let Some(r) = run.take() {
            spans.push(r.into_value());
        }
        Value::Array(spans)
    }
}

/// A cell colour on the wire: absent for the default, a number for one of
/// the 256 indexed colours, `"#rrggbb"` for a true colour.
fn color(c: vt100::Color) -> Option<Value> {
    match c {
        vt100::Color::Default => None,
        vt100::Color::Idx(i) => Some(Value::from(i)),
        vt100::Color::Rgb(r, g, b) => Some(Value::from(format!("#{r:02x}{g:02x}{b:02x}"))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Attrs {
    fg: vt100::Color,
    bg: vt100::Color,
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
    inverse: bool,
    wide: bool,
}

impl Attrs {
    fn of(cell: &vt100::Cell) -> Attrs {
        Attrs {
            fg: cell.fgcolor(),
            bg: cell.bgcolor(),
            bold: cell.bold(),
            dim: cell.dim(),
            italic: cell.italic(),
            underline: cell.underline(),
            inverse: cell.inverse(),
            wide: cell.is_wide(),
        }
    }

    /// Whether a blank cell with these attributes looks different from an
    /// empty one.
    fn shows_blank(&self) -> bool {
        self.bg != vt100::Color::Default || self.inverse || self.underline
    }
}

struct Run {
    col: u16,
    end: u16,
    text: String,
    attrs: Attrs,
}

impl Run {
    fn into_value(self) -> Value {
        let mut m = Map::new();
        m.insert("col".into(), Value::from(self.col));
        m.insert("text".into(), Value::from(self.text));
        let a = self.attrs;
        if let Some(fg) = color(a.fg) {
            m.insert("fg".into(), fg);
        }
        if let Some(bg) = color(a.bg) {
            m.insert("bg".into(), bg);
        }
        for (key, on) in [
            ("bold", a.bold),
            ("dim", a.dim),
            ("italic", a.italic),
            ("underline", a.underline),
            ("inverse", a.inverse),
            ("wide", a.wide),
        ] {
            if on {
                m.insert(key.into(), Value::Bool(true));
            }
        }
        Value::Object(m)
    }
}

/// Test helpers shared by the table's tests: the text of a frame's rows.
#[cfg(test)]
pub(crate) fn row_text(spans: &Value) -> String {
    let mut out = String::new();
    let mut at = 0usize;
    for s in spans.as_array().into_iter().flatten() {
        let col = s["col"].as_u64().unwrap_or(0) as usize;
        while at < col {
            out.push(' ');
            at += 1;
        }
        let text = s["text"].as_str().unwrap_or("");
        let width = if s["wide"] == true { 2 } else { 1 };
        out.push_str(text);
        at += text.chars().count() * width;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The screen's rows as text, from a frame that carries every row.
    fn texts(frame: &Value) -> Vec<String> {
        let rows = frame["rows"].as_u64().unwrap() as usize;
        let mut out = vec![String::new(); rows];
        for l in frame["lines"].as_array().unwrap() {
            out[l[0].as_u64().unwrap() as usize] = row_text(&l[1]);
        }
        out
    }

    fn spans(frame: &Value, row: u64) -> Value {
        frame["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l[0] == row)
            .map(|l| l[1].clone())
            .unwrap_or_else(|| panic!("row {row} not in {frame}"))
    }

    #[test]
    fn a_blank_screen_snapshot() {
        let mut s = Screen::new(10, 3, 100);
        let snap = s.snapshot();
        assert_eq!(
            snap,
            json!({
                "seq": 0, "full": true, "cols": 10, "rows": 3,
                "cursor": {"row": 0, "col": 0, "visible": true},
                "altScreen": false, "appCursor": false, "bracketedPaste": false,
                "title": null, "history": [],
                "lines": [[0, []], [1, []], [2, []]],
            })
        );
        assert_eq!(s.frame(), None, "nothing changed");
    }

    #[test]
    fn coloured_output_as_exact_spans() {
        let mut s = Screen::new(40, 4, 100);
        s.feed(b"\x1b[01;34msrc\x1b[0m  \x1b[32mrun.sh\x1b[0m x\r\n");
        s.feed(b"\x1b[1;4;3;7mA\x1b[0m\x1b[38;5;208mB\x1b[48;2;1;2;255mC\x1b[0m\x1b[41m  \x1b[0m");
        let f = s.frame().unwrap();
        assert_eq!(f["seq"], 1);
        assert_eq!(f["full"], false);
        assert_eq!(
            spans(&f, 0),
            json!([
                {"col": 0, "text": "src", "fg": 4, "bold": true},
                {"col": 5, "text": "run.sh", "fg": 2},
                {"col": 12, "text": "x"},
            ])
        );
        assert_eq!(
            spans(&f, 1),
            json!([
                {"col": 0, "text": "A", "bold": true, "italic": true, "underline": true, "inverse": true},
                {"col": 1, "text": "B", "fg": 208},
                {"col": 2, "text": "C", "fg": 208, "bg": "#0102ff"},
                {"col": 3, "text": "  ", "bg": 1},
            ])
        );
        assert_eq!(f["cursor"], json!({"row": 1, "col": 5, "visible": true}));
        // Only the rows that changed come in a diff.
        assert_eq!(f["lines"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn diffs_carry_only_changed_rows_and_seq_counts_frames() {
        let mut s = Screen::new(20, 5, 100);
        s.feed(b"one\r\ntwo\r\nthree");
        let f1 = s.frame().unwrap();
        assert_eq!(f1["seq"], 1);
        s.feed(b"\x1b[2;1H\x1b[2KTWO");
        let f2 = s.frame().unwrap();
        assert_eq!(f2["seq"], 2);
        assert_eq!(f2["lines"], json!([[1, [{"col": 0, "text": "TWO"}]]]));
        assert_eq!(f2["cursor"], json!({"row": 1, "col": 3, "visible": true}));
        // Cursor only.
        s.feed(b"\x1b[?25l");
        let f3 = s.frame().unwrap();
        assert_eq!(f3["lines"], json!([]));
        assert_eq!(f3["cursor"]["visible"], false);
        assert_eq!(s.frame(), None);
        // A snapshot is the screen as last sent, with that frame's seq.
        let snap = s.snapshot();
        assert_eq!(snap["seq"], 3);
        assert_eq!(
            texts(&snap),
            vec!["one", "TWO", "three", "", ""]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn snapshot_leaves_out_what_the_next_frame_brings() {
        let mut s = Screen::new(10, 2, 100);
        s.feed(b"a\r\nb");
        s.frame().unwrap();
        s.feed(b"\r\nc\r\nd");
        let snap = s.snapshot();
        assert_eq!(texts(&snap), vec!["a", "b"]);
        assert_eq!(snap["history"], json!([]));
        let next = s.frame().unwrap();
        assert_eq!(next["seq"], 2);
        assert_eq!(
            next["history"],
            json!([[{"col": 0, "text": "a"}], [{"col": 0, "text": "b"}]])
        );
        assert_eq!(texts(&s.snapshot()), vec!["c", "d"]);
    }

    #[test]
    fn alternate_screen_and_cursor_addressing() {
        let mut s = Screen::new(30, 10, 100);
        s.feed(b"prompt$ ");
        s.frame().unwrap();
        s.feed(b"\x1b[?1049h\x1b[H\x1b[2J\x1b[5;7HMIDDLE\x1b[10;1H~ status\x1b[?1h");
        let f = s.frame().unwrap();
        assert_eq!(f["altScreen"], true);
        assert_eq!(f["appCursor"], true);
        assert_eq!(spans(&f, 4), json!([{"col": 6, "text": "MIDDLE"}]));
        assert_eq!(spans(&f, 9), json!([{"col": 0, "text": "~ status"}]));
        assert_eq!(spans(&f, 0), json!([]), "the prompt is off the alt screen");
        assert_eq!(f["cursor"], json!({"row": 9, "col": 8, "visible": true}));
        s.feed(b"\x1b[?1049l\x1b[?1l");
        let back = s.frame().unwrap();
        assert_eq!(back["altScreen"], false);
        assert_eq!(spans(&back, 0), json!([{"col": 0, "text": "prompt$"}]));
    }

    #[test]
    fn wide_characters_take_two_cells() {
        let mut s = Screen::new(20, 2, 10);
        s.feed("a漢字b 🦀!".as_bytes());
        let f = s.frame().unwrap();
        assert_eq!(
            spans(&f, 0),
            json!([
                {"col": 0, "text": "a"},
                {"col": 1, "text": "漢字", "wide": true},
                {"col": 5, "text": "b"},
                {"col": 7, "text": "🦀", "wide": true},
                {"col": 9, "text": "!"},
            ])
        );
        assert_eq!(f["cursor"]["col"], 10);
        assert_eq!(row_text(&spans(&f, 0)), "a漢字b 🦀!");
    }

    #[test]
    fn scrollback_is_bounded_and_scrolled_lines_come_as_history() {
        let mut s = Screen::new(10, 3, 5);
        for i in 0..4 {
            s.feed(format!("l{i}\r\n").as_bytes());
        }
        let f = s.frame().unwrap();
        // l0, l1 scrolled off (rows: l2, l3, empty).
        assert_eq!(
            f["history"],
            json!([[{"col": 0, "text": "l0"}], [{"col": 0, "text": "l1"}]])
        );
        for i in 4..40 {
            s.feed(format!("l{i}\r\n").as_bytes());
        }
        let f = s.frame().unwrap();
        // 36 more scrolled off; only the 5 the scrollback keeps can be sent.
        let h = f["history"].as_array().unwrap();
        assert_eq!(h.len(), 5);
        assert_eq!(row_text(&h[0]), "l33");
        assert_eq!(row_text(&h[4]), "l37");
        let snap = s.snapshot();
        let h = snap["history"].as_array().unwrap();
        assert_eq!(
            h.len(),
            5,
            "the snapshot's history is the bounded scrollback"
        );
        assert_eq!(row_text(&h[4]), "l37");
        assert_eq!(texts(&snap), vec!["l38", "l39", ""]);
    }

    #[test]
    fn resize_makes_a_full_frame_and_sizes_are_clamped() {
        let mut s = Screen::new(10, 3, 10);
        s.feed(b"hello");
        s.frame().unwrap();
        s.resize(20, 5);
        let f = s.frame().unwrap();
        assert_eq!(f["full"], true);
        assert_eq!(
            (f["cols"].clone(), f["rows"].clone()),
            (json!(20), json!(5))
        );
        assert_eq!(f["lines"].as_array().unwrap().len(), 5);
        assert_eq!(texts(&f)[0], "hello");
        s.resize(60_000, 0);
        assert_eq!(s.size(), (MAX_COLS, 1));
        let big = Screen::new(u16::MAX, u16::MAX, usize::MAX);
        assert_eq!(big.size(), (MAX_COLS, MAX_ROWS));
    }

    #[test]
    fn title_and_escapes_split_across_feeds() {
        let mut s = Screen::new(20, 2, 10);
        s.feed(b"\x1b]0;my\x07title\x1b]2;vi");
        s.feed(b" main.rs\x07\x1b[3");
        s.feed(b"1mred\x1b[0m");
        let f = s.frame().unwrap();
        assert_eq!(f["title"], "vi main.rs");
        assert_eq!(
            spans(&f, 0),
            json!([{"col": 0, "text": "title"}, {"col": 5, "text": "red", "fg": 1}])
        );
    }
}
