//! PTY terminals over the socket: real shells whose screens reach devices as
//! a snapshot then row diffs (`_relay/terminal/screen`) — text, colours as
//! spans, a full-screen program, resize, wide text, a second device
//! attaching, the owner reconnecting, the cap, exit frames, no orphans.
//! Shells are `/bin/sh` with a test HOME and no rc file.
mod common;
use common::*;
use serde_json::{Value, json};

/// A relay with terminals on, its shells isolated from the user's: `/bin/sh`,
/// a HOME of its own (removed after the relay), no rc file.
struct TermRelay {
    relay: Relay,
    _home: TempDir,
}

impl std::ops::Deref for TermRelay {
    type Target = Relay;
    fn deref(&self) -> &Relay {
        &self.relay
    }
}

impl std::ops::DerefMut for TermRelay {
    fn deref_mut(&mut self) -> &mut Relay {
        &mut self.relay
    }
}

fn start(extra: &[&str]) -> TermRelay {
    let home = TempDir::new("term-home");
    let home_str = home.path().display().to_string();
    let mut args = vec!["--terminal"];
    args.extend_from_slice(extra);
    let relay = Relay::start_env(
        &args,
        &[
            ("SHELL", "/bin/sh"),
            ("HOME", &home_str),
            ("ENV", ""),
            ("BASH_ENV", ""),
        ],
    );
    TermRelay { relay, _home: home }
}

/// Clears the screen and homes the cursor (no `clear`, which needs terminfo).
const CLEAR: &str = "printf '\\033[H\\033[2J'";

/// A device's copy of one terminal's screen, kept from its frames the way
/// a page keeps it.
#[derive(Debug, Default, Clone, PartialEq)]
struct Grid {
    seq: u64,
    cols: u64,
    rows: Vec<Value>,
    history: Vec<Value>,
    cursor: Value,
    alt: bool,
}

impl Grid {
    fn from_snapshot(p: &Value) -> Grid {
        assert_eq!(p["full"], true, "a snapshot is full: {p}");
        let mut g = Grid::default();
        g.apply(p);
        g
    }

    /// Applies a frame; a diff must follow the frame held.
    fn apply(&mut self, p: &Value) {
        let seq = p["seq"].as_u64().expect("seq");
        let rows = p["rows"].as_u64().expect("rows") as usize;
        if p["full"] == true {
            self.rows = vec![json!([]); rows];
            self.history.clear();
        } else {
            assert_eq!(seq, self.seq + 1, "diffs come in seq order: {p}");
        }
        self.seq = seq;
        self.cols = p["cols"].as_u64().unwrap();
        self.rows.resize(rows, json!([]));
        for h in p["history"].as_array().unwrap() {
            self.history.push(h.clone());
        }
        for l in p["lines"].as_array().unwrap() {
            self.rows[l[0].as_u64().unwrap() as usize] = l[1].clone();
        }
        self.cursor = p["cursor"].clone();
        self.alt = p["altScreen"] == true;
    }

    /// The text of row `r`, columns counted as cells (wide chars take two).
    fn text(&self, r: usize) -> String {
        row_text(&self.rows[r])
    }

    fn texts(&self) -> Vec<String> {
        (0..self.rows.len()).map(|r| self.text(r)).collect()
    }

    /// History and screen, one line each, oldest first.
    fn all_text(&self) -> String {
        let mut out: Vec<String> = self.history.iter().map(row_text).collect();
        out.extend(self.texts());
        out.join("\n")
    }

    /// The text from column `col` of row `r`, `len` cells long.
    fn at(&self, r: usize, col: usize, len: usize) -> String {
        let cells = cells(&self.rows[r]);
        (col..col + len)
            .map(|c| cells.get(c).cloned().unwrap_or(' '))
            .collect()
    }

    /// The span covering column `col` of row `r`.
    fn span_at(&self, r: usize, col: u64) -> Value {
        for s in self.rows[r].as_array().unwrap() {
            let start = s["col"].as_u64().unwrap();
            let width = if s["wide"] == true { 2 } else { 1 };
            let len = s["text"].as_str().unwrap().chars().count() as u64 * width;
            if (start..start + len).contains(&col) {
                return s.clone();
            }
        }
        Value::Null
    }
}

/// One char per cell (a wide char, then `\0` for its second cell).
fn cells(spans: &Value) -> Vec<char> {
    let mut out = Vec::new();
    for s in spans.as_array().into_iter().flatten() {
        let col = s["col"].as_u64().unwrap() as usize;
        while out.len() < col {
            out.push(' ');
        }
        for ch in s["text"].as_str().unwrap().chars() {
            out.push(ch);
            if s["wide"] == true {
                out.push('\0');
            }
        }
    }
    out
}

fn row_text(spans: &Value) -> String {
    cells(spans)
        .into_iter()
        .filter(|c| *c != '\0')
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// Opens a terminal; returns its id and the blank screen from the answer.
fn open(d: &mut Device, params: Value) -> (String, Grid) {
    let id = d.request("_relay/terminal/open", params);
    let r = d.response(&id);
    let tid = r["result"]["terminalId"]
        .as_str()
        .unwrap_or_else(|| panic!("open: {r}"))
        .to_owned();
    let grid = Grid::from_snapshot(&r["result"]["screen"]);
    (tid, grid)
}

fn input(d: &mut Device, tid: &str, data: &str) {
    let id = d.request(
        "_relay/terminal/input",
        json!({"terminalId": tid, "data": data}),
    );
    let r = d.response(&id);
    assert!(r.get("result").is_some(), "input: {r}");
}

fn is_screen(v: &Value, tid: &str) -> bool {
    v["method"] == "_relay/terminal/screen" && v["params"]["terminalId"] == tid
}

/// Applies `tid`'s frames to `g` until `done(g)` holds.
fn screen_until(d: &mut Device, tid: &str, g: &mut Grid, what: &str, done: impl Fn(&Grid) -> bool) {
    while !done(g) {
        let f = d.recv_until(
            &format!(
                "a screen of {tid} where {what}; screen now:\n{}",
                g.all_text()
            ),
            |v| is_screen(v, tid),
        );
        g.apply(&f["params"]);
    }
}

fn until_text(d: &mut Device, tid: &str, g: &mut Grid, needle: &str) {
    screen_until(d, tid, g, &format!("{needle:?} shows"), |g| {
        g.all_text().contains(needle)
    });
}

/// Waits for the shell's prompt, so what is typed next is not echoed by the
/// terminal before the shell has printed it.
fn until_prompt(d: &mut Device, tid: &str, g: &mut Grid) {
    screen_until(d, tid, g, "the shell's prompt shows", |g| {
        g.texts()
            .iter()
            .any(|l| l.ends_with('#') || l.ends_with('$'))
    });
}

fn welcome(d: &mut Device) {
    d.recv_until("welcome", |v| v["type"] == "relay_welcome");
}

#[test]
fn shell_echo_resize_and_multibyte() {
    let relay = start(&[]);
    let mut d = relay.device("owner", "");
    welcome(&mut d);
    let init = d.request("initialize", json!({"protocolVersion":1}));
    assert_eq!(
        d.response(&init)["result"]["_meta"]["relay"]["terminal"],
        true
    );

    let (t, mut g) = open(&mut d, json!({"cols": 80, "rows": 24}));
    assert_eq!((g.cols, g.rows.len(), g.seq), (80, 24, 0));
    until_prompt(&mut d, &t, &mut g);
    input(&mut d, &t, "echo hi; echo $((6*7))\n");
    screen_until(&mut d, &t, &mut g, "hi and 42 show", |g| {
        let texts = g.texts();
        texts.iter().any(|l| l == "hi") && texts.iter().any(|l| l == "42")
    });

    let id = d.request(
        "_relay/terminal/resize",
        json!({"terminalId": t, "cols": 101, "rows": 33}),
    );
    d.response(&id);
    screen_until(&mut d, &t, &mut g, "the size is 101x33", |g| {
        g.cols == 101 && g.rows.len() == 33
    });
    input(&mut d, &t, "stty size\n");
    until_text(&mut d, &t, &mut g, "33 101");

    let text = "héllo 🦀 世界 ✓ ünïcödé 🚀🚀🚀 漢字かな";
    input(&mut d, &t, &format!("{CLEAR}; echo '{text}'\n"));
    screen_until(&mut d, &t, &mut g, "the text is on row 0", |g| {
        g.text(0) == text
    });
    assert!(!g.all_text().contains('\u{fffd}'), "no mangled characters");
    // Wide characters take two cells: 🦀 is at column 6, 世 at 9.
    assert_eq!(g.at(0, 6, 1), "🦀");
    assert_eq!(g.span_at(0, 9)["wide"], true);
    assert_eq!(g.at(0, 9, 1), "世");

    // A burst of cursor-addressed writes ends as one coherent screen.
    input(
        &mut d,
        &t,
        &format!(
            "{CLEAR}; i=0; while [ $i -lt 200 ]; do printf '\\033[%d;1H\\033[2Kline %d' $((i%20+1)) $i; i=$((i+1)); done; printf '\\033[22;1H'; echo burst-$((1+1))-done\n"
        ),
    );
    until_text(&mut d, &t, &mut g, "burst-2-done");
    assert_eq!(g.text(19), "line 199");
    assert_eq!(g.text(0), "line 180");

    input(&mut d, &t, "exit 3\n");
    let exit = d.recv_until("exit frame", |v| {
        v["method"] == "_relay/terminal/exit" && v["params"]["terminalId"] == t.as_str()
    });
    assert_eq!(exit["params"]["exitCode"], 3, "{exit}");
}

#[test]
fn coloured_output_comes_as_spans() {
    let relay = start(&[]);
    std::fs::create_dir(relay.workspace.join("src")).unwrap();
    std::fs::write(relay.workspace.join("run.sh"), "").unwrap();
    let mut d = relay.device("owner", "");
    welcome(&mut d);
    let (t, mut g) = open(&mut d, json!({"cols": 60, "rows": 10}));
    until_prompt(&mut d, &t, &mut g);
    // What `ls --color` prints for a directory and a file, then 256 and
    // true colours, bold/underline/inverse.
    input(
        &mut d,
        &t,
        &format!(
            "{CLEAR}; printf '\\033[0m\\033[01;34msrc\\033[0m  \\033[32mrun.sh\\033[0m\\n\\033[38;5;208morange\\033[0m \\033[48;2;10;20;30mdeep\\033[0m \\033[1;4;7mloud\\033[0m\\n'\n"
        ),
    );
    screen_until(&mut d, &t, &mut g, "the colours show", |g| {
        g.text(1).starts_with("orange")
    });
    assert_eq!(
        g.span_at(0, 0),
        json!({"col": 0, "text": "src", "fg": 4, "bold": true})
    );
    assert_eq!(
        g.span_at(0, 5),
        json!({"col": 5, "text": "run.sh", "fg": 2})
    );
    assert_eq!(
        g.span_at(1, 0),
        json!({"col": 0, "text": "orange", "fg": 208})
    );
    assert_eq!(
        g.span_at(1, 7),
        json!({"col": 7, "text": "deep", "bg": "#0a141e"})
    );
    assert_eq!(
        g.span_at(1, 12),
        json!({"col": 12, "text": "loud", "bold": true, "underline": true, "inverse": true})
    );
    // The real `ls`, where it colours: a directory is bold blue.
    input(&mut d, &t, &format!("{CLEAR}; ls --color=always -d src\n"));
    screen_until(&mut d, &t, &mut g, "ls printed src", |g| g.text(0) == "src");
    let src = g.span_at(0, 0);
    if src.get("fg").is_some() {
        assert_eq!(src["fg"], 4, "{src}");
        assert_eq!(src["bold"], true, "{src}");
    }
}

#[test]
fn a_full_screen_program_is_drawn_at_its_cells() {
    let relay = start(&[]);
    std::fs::write(
        relay.workspace.join("notes.txt"),
        (1..=100)
            .map(|i| format!("note line {i}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let mut d = relay.device("owner", "");
    welcome(&mut d);
    let (t, mut g) = open(&mut d, json!({"cols": 80, "rows": 24}));
    until_prompt(&mut d, &t, &mut g);
    input(&mut d, &t, "echo before-the-program\n");
    until_text(&mut d, &t, &mut g, "before-the-program");

    // Alternate screen and cursor addressing, as a full-screen program draws.
    input(
        &mut d,
        &t,
        "printf '\\033[?1049h\\033[2J\\033[5;10HMIDDLE\\033[24;1H-- status --\\033[1;1H'; read x; printf '\\033[?1049l'\n",
    );
    screen_until(&mut d, &t, &mut g, "the program's screen shows", |g| {
        g.alt && g.text(23) == "-- status --"
    });
    assert_eq!(g.at(4, 9, 6), "MIDDLE");
    assert!(!g.texts().iter().any(|l| l.contains("before-the-program")));
    assert_eq!(g.cursor, json!({"row": 0, "col": 0, "visible": true}));
    input(&mut d, &t, "\n");
    screen_until(&mut d, &t, &mut g, "the shell's screen is back", |g| {
        !g.alt && g.all_text().contains("before-the-program")
    });

    // vi (or less) where the machine has one: the file at its rows.
    let viewer = ["/usr/bin/vi", "/usr/bin/less"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(viewer) = viewer else {
        println!("SKIPPED: the vi/less part (neither is installed)");
        return;
    };
    if viewer.ends_with("vi") {
        input(&mut d, &t, "vi -u NONE -N notes.txt\n");
    } else {
        input(&mut d, &t, "less notes.txt\n");
    }
    screen_until(&mut d, &t, &mut g, "the file fills the screen", |g| {
        g.alt && g.text(0) == "note line 1" && g.text(22) == "note line 23"
    });
    assert_eq!(g.at(9, 5, 6), "line 1");
    assert_eq!(g.at(9, 0, 12), "note line 10");
    if viewer.ends_with("vi") {
        input(&mut d, &t, "G");
        screen_until(&mut d, &t, &mut g, "vi went to the end", |g| {
            g.texts().iter().any(|l| l == "note line 100")
        });
        input(&mut d, &t, "\x1b:q!\r");
    } else {
        input(&mut d, &t, "q");
    }
    screen_until(&mut d, &t, &mut g, "the program quit", |g| !g.alt);
}

#[test]
fn a_second_device_attaches_to_the_same_screen() {
    let relay = start(&[]);
    let mut a = relay.device("phone", "");
    welcome(&mut a);
    let (t, mut ga) = open(&mut a, json!({"cols": 40, "rows": 8}));
    until_prompt(&mut a, &t, &mut ga);
    input(&mut a, &t, "printf '\\033[31mred\\033[0m line\\n'\n");
    until_text(&mut a, &t, &mut ga, "red line");

    let mut b = relay.device("laptop", "");
    welcome(&mut b);
    let id = b.request("_relay/terminal/list", json!({}));
    let list = b.response(&id);
    assert_eq!(list["result"]["terminals"][0]["terminalId"], t.as_str());
    assert_eq!(list["result"]["terminals"][0]["mine"], false);
    assert_eq!(list["result"]["terminals"][0]["attached"], false);
    // Before attaching, it may not type.
    let id = b.request(
        "_relay/terminal/input",
        json!({"terminalId": t, "data": "x"}),
    );
    assert_eq!(b.response(&id)["error"]["code"], -32602);

    let id = b.request("_relay/terminal/attach", json!({"terminalId": t}));
    let r = b.response(&id);
    let mut gb = Grid::from_snapshot(&r["result"]["screen"]);
    // The phone may have frames the snapshot already holds; bring it level.
    while ga.seq < gb.seq {
        let f = a.recv_until("the phone's next frame", |v| is_screen(v, &t));
        ga.apply(&f["params"]);
    }
    assert_eq!(gb.texts(), ga.texts(), "the same screen");
    assert_eq!(gb.cursor, ga.cursor);
    let red = gb
        .texts()
        .iter()
        .position(|l| l == "red line")
        .expect("red line");
    assert_eq!(gb.span_at(red, 0)["fg"], 1);

    // The laptop types; both see it.
    input(&mut b, &t, "echo from-$((1+1))-laptop\n");
    until_text(&mut b, &t, &mut gb, "from-2-laptop");
    until_text(&mut a, &t, &mut ga, "from-2-laptop");
    // The laptop reconnects: its attachment holds, it gets a snapshot.
    b.close();
    input(&mut a, &t, "echo while-$((1+1))-away\n");
    until_text(&mut a, &t, &mut ga, "while-2-away");
    let mut b = relay.device("laptop", "");
    let snap = b.recv_until("the laptop's snapshot", |v| is_screen(v, &t));
    let mut gb = Grid::from_snapshot(&snap["params"]);
    screen_until(&mut b, &t, &mut gb, "the laptop is level", |g| {
        g.seq >= ga.seq
    });
    while ga.seq < gb.seq {
        let f = a.recv_until("the phone's next frame", |v| is_screen(v, &t));
        ga.apply(&f["params"]);
    }
    assert_eq!(gb.texts(), ga.texts());
}

#[test]
fn owner_reconnects_to_a_snapshot_then_diffs() {
    let relay = start(&[]);
    let go = relay.workspace.join("go");
    let ticked = relay.workspace.join("ticked");
    let mut d = relay.device("owner", "");
    welcome(&mut d);
    let (t, mut g) = open(
        &mut d,
        json!({"cols": 40, "rows": 10, "command": "i=0; while [ $i -lt 30 ]; do echo tick-$i; i=$((i+1)); sleep 0.02; done; : > ticked; while [ ! -e go ]; do sleep 0.05; done; echo live-after; sleep 1000"}),
    );
    until_text(&mut d, &t, &mut g, "tick-2\n");
    d.close();
    // The loop runs on while the owner is away.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ticked.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the loop did not finish"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let mut d = relay.device("owner", "");
    let snap = d.recv_until("snapshot", |v| is_screen(v, &t));
    let mut g = Grid::from_snapshot(&snap["params"]);
    // Whatever the last frame before the snapshot missed comes next.
    std::fs::write(&go, "").unwrap();
    until_text(&mut d, &t, &mut g, "live-after");
    let all = g.all_text();
    for i in 0..30 {
        assert!(
            all.contains(&format!("tick-{i}\n")),
            "tick-{i} missing from {all}"
        );
    }
    assert!(
        !d.seen
            .iter()
            .any(|v| v["method"] == "_relay/terminal/output"),
        "no raw byte replay"
    );
}

#[test]
fn ninth_terminal_closes_the_first_and_sigterm_leaves_no_child() {
    let mut relay = start(&[]);
    let mut d = relay.device("owner", "");
    welcome(&mut d);
    // A duration no other test uses, so the process table check is ours alone.
    let secs = format!("60.{}", std::process::id());
    let ids: Vec<String> = (0..9)
        .map(|_| open(&mut d, json!({"command": format!("sleep {secs}")})).0)
        .collect();
    let evicted = d.recv_until("exit of the first", |v| {
        v["method"] == "_relay/terminal/exit" && v["params"]["terminalId"] == ids[0].as_str()
    });
    assert!(
        evicted["params"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("evicted"),
        "{evicted}"
    );
    let input_first = d.request(
        "_relay/terminal/input",
        json!({"terminalId": ids[0], "data": "x"}),
    );
    assert_eq!(d.response(&input_first)["error"]["code"], -32602);

    let pid = relay.pid();
    // Each starts once its directory is open, off the relay's thread.
    wait_until("8 shells", WAIT, || children(pid).len() >= 8);
    assert_eq!(relay.terminate(), Some(0));
    let orphans: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).ok())
        .filter(|c| *c == format!("sleep\u{0}{secs}\u{0}"))
        .collect();
    assert!(
        orphans.is_empty(),
        "sleep {secs} shells outlived the relay: {orphans:?}"
    );
}

#[test]
fn terminals_need_the_flag_and_the_lease() {
    let off = Relay::start(&[]);
    let mut d = off.device("d", "");
    welcome(&mut d);
    let id = d.request("_relay/terminal/open", json!({}));
    let r = d.response(&id);
    assert_eq!(r["error"]["code"], -32601);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--terminal")
    );

    let relay = start(&["--lease"]);
    let mut holder = relay.device("holder", "");
    welcome(&mut holder);
    let (t, mut g) = open(&mut holder, json!({"command": "cat"}));
    let mut viewer = relay.device("viewer", "");
    welcome(&mut viewer);
    let id = viewer.request("_relay/terminal/open", json!({}));
    assert_eq!(viewer.response(&id)["error"]["code"], -32010);
    // A viewer may watch, not type.
    let id = viewer.request("_relay/terminal/attach", json!({"terminalId": t}));
    let r = viewer.response(&id);
    let mut gv = Grid::from_snapshot(&r["result"]["screen"]);
    let id = viewer.request(
        "_relay/terminal/input",
        json!({"terminalId": t, "data": "typed by viewer\n"}),
    );
    assert_eq!(viewer.response(&id)["error"]["code"], -32010);
    input(&mut holder, &t, "typed by holder\n");
    until_text(&mut holder, &t, &mut g, "typed by holder");
    until_text(&mut viewer, &t, &mut gv, "typed by holder");
    assert!(!g.all_text().contains("viewer"));
}

#[test]
fn scrollback_is_bounded_by_the_flag() {
    let relay = start(&["--terminal-scrollback", "5"]);
    let mut d = relay.device("owner", "");
    welcome(&mut d);
    let (t, mut g) = open(
        &mut d,
        json!({"cols": 20, "rows": 4, "command": "i=0; while [ $i -lt 40 ]; do echo n-$i; i=$((i+1)); done; echo end; sleep 1000"}),
    );
    until_text(&mut d, &t, &mut g, "end");
    d.close();
    let mut d = relay.device("owner", "");
    let snap = d.recv_until("snapshot", |v| is_screen(v, &t));
    let history = snap["params"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 5, "{snap}");
    assert_eq!(row_text(&history[4]), "n-37");
}

/// A terminal's `cwd` stays in the workspace: a symlink in it that points
/// outside is refused (an exit frame with the reason, no process), a real
/// directory in it is where the command runs, and input typed right after
/// the open (while the directory is still being opened) reaches it.
#[test]
fn a_cwd_symlinked_out_of_the_workspace_is_refused() {
    let relay = start(&[]);
    let outside = TempDir::new("term-outside");
    std::fs::write(outside.path().join("outside-marker"), "").unwrap();
    std::os::unix::fs::symlink(outside.path(), relay.workspace.join("link")).unwrap();
    std::fs::create_dir(relay.workspace.join("sub")).unwrap();
    std::fs::write(relay.workspace.join("sub/inside-marker"), "").unwrap();
    let mut d = relay.device("owner", "");
    welcome(&mut d);

    let (t, _) = open(&mut d, json!({"cwd": "link", "command": "ls"}));
    let exit = d.recv_until("the refused terminal's exit", |v| {
        v["method"] == "_relay/terminal/exit" && v["params"]["terminalId"] == t.as_str()
    });
    let reason = exit["params"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("outside the workspace"), "{exit}");
    assert_eq!(exit["params"]["exitCode"], Value::Null);
    assert!(
        !d.seen
            .iter()
            .any(|v| is_screen(v, &t) && v.to_string().contains("outside-marker")),
        "ran outside: {:?}",
        d.seen
    );
    relay.wait_log("could not start");

    let (t, mut g) = open(
        &mut d,
        json!({"cwd": "sub", "command": "read x; ls; echo got=$x"}),
    );
    input(&mut d, &t, "typed\n");
    until_text(&mut d, &t, &mut g, "got=typed");
    assert!(g.all_text().contains("inside-marker"), "{}", g.all_text());
}
