//! Device PTY terminals as a table: who owns each terminal, which devices
//! watch it, and its screen state ([`screen::Screen`]: the byte stream
//! parsed into a cell grid with bounded scrollback). Takes requests and PTY
//! events, returns [`TermAction`]s for the shell to perform; devices get a
//! snapshot of the screen when they attach or reconnect, then row diffs.
//! Performs no I/O and never reads the clock; the PTYs live in `crate::pty`.

pub mod screen;

use crate::core::ids::ClientId;
use crate::core::rpc::{RpcError, code, notification};
use bytes::Bytes;
use screen::Screen;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub use screen::{DEFAULT_SCROLLBACK_LINES, MAX_COLS, MAX_ROWS, MAX_SCROLLBACK_LINES};

/// Most terminals open at once, unless the relay is told otherwise.
pub const DEFAULT_MAX_TERMINALS: usize = 8;
/// Columns of a terminal opened without `cols`.
pub const DEFAULT_COLS: u16 = 80;
/// Rows of a terminal opened without `rows`.
pub const DEFAULT_ROWS: u16 = 24;
/// Longest `cwd` or `command` accepted in `_relay/terminal/open`.
pub const MAX_OPEN_STRING: usize = 64 * 1024;
/// Most devices attached to one terminal besides its owner; attaching one
/// more detaches the device that attached first.
pub const MAX_VIEWERS: usize = 16;

/// The notification carrying a terminal's screen (a snapshot or a diff).
pub const SCREEN_METHOD: &str = "_relay/terminal/screen";
/// The notification saying a terminal is gone.
pub const EXIT_METHOD: &str = "_relay/terminal/exit";

/// A terminal's id, minted by [`TerminalTable`] and never reused within one relay
/// process. Its wire form is `"t<n>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TerminalId(pub u64);

impl fmt::Display for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

impl FromStr for TerminalId {
    type Err = ();
    /// Parses the wire form `"t<n>"`.
    fn from_str(s: &str) -> Result<Self, ()> {
        let digits = s.strip_prefix('t').ok_or(())?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        digits.parse().map(TerminalId).map_err(|_| ())
    }
}

/// Bounds of the terminal table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermLimits {
    /// Terminals open at once; opening one more evicts the oldest.
    pub max_terminals: usize,
    /// Scrollback lines kept per terminal (at most [`MAX_SCROLLBACK_LINES`]).
    pub scrollback_lines: usize,
}

impl Default for TermLimits {
    fn default() -> Self {
        TermLimits {
            max_terminals: DEFAULT_MAX_TERMINALS,
            scrollback_lines: DEFAULT_SCROLLBACK_LINES,
        }
    }
}

/// What the shell must do for the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermAction {
    /// Start a PTY child for `id`; `cwd` is as the device sent it (the shell
    /// resolves it in the workspace jail), `command` runs through `sh -c`,
    /// else the user's shell.
    Spawn {
        id: TerminalId,
        cols: u16,
        rows: u16,
        cwd: Option<String>,
        command: Option<String>,
        /// The project whose jail `cwd` is resolved in (the router sets it:
        /// the project of the session the shell was opened from).
        project: crate::core::ids::ProjectId,
    },
    /// Queue `data` as input to `id`'s PTY.
    Write { id: TerminalId, data: Vec<u8> },
    /// Set `id`'s PTY size.
    Resize {
        id: TerminalId,
        cols: u16,
        rows: u16,
    },
    /// End `id`'s process (its exit is reported later, or never if the table
    /// has already forgotten it).
    Kill { id: TerminalId },
    /// Send this line to every socket of `client` (the owner or a device
    /// attached to the terminal).
    ToClient { client: ClientId, line: Bytes },
}

/// One open terminal.
#[derive(Debug)]
struct Terminal {
    owner: ClientId,
    /// Devices attached besides the owner, oldest first; never the owner,
    /// no duplicates, at most [`MAX_VIEWERS`].
    viewers: Vec<ClientId>,
    command: Option<String>,
    screen: Screen,
}

impl Terminal {
    /// The owner and the attached devices: who gets the screen.
    fn audience(&self) -> impl Iterator<Item = &ClientId> {
        std::iter::once(&self.owner).chain(&self.viewers)
    }

    fn may_use(&self, client: &ClientId) -> bool {
        &self.owner == client || self.viewers.contains(client)
    }
}

/// The open terminals, keyed by id. Ids increase, so the smallest id is the
/// oldest terminal. Invariants: at most `max_terminals` entries; each
/// screen keeps at most `scrollback_lines` lines of scrollback.
#[derive(Debug)]
pub struct TerminalTable {
    limits: TermLimits,
    next_id: u64,
    table: BTreeMap<TerminalId, Terminal>,
}

impl TerminalTable {
    pub fn new(limits: TermLimits) -> Self {
        TerminalTable {
            limits,
            next_id: 1,
            table: BTreeMap::new(),
        }
    }

    /// `_relay/terminal/open {cols?, rows?, cwd?, command?}` → the result
    /// `{terminalId, screen}` (a blank snapshot) and the actions: past the
    /// limit the oldest terminal is killed and forgotten (its devices get an
    /// exit frame with a `reason`), then the new one is spawned.
    pub fn open(
        &mut self,
        owner: &ClientId,
        params: &Value,
    ) -> Result<(Value, Vec<TermAction>), RpcError> {
        let p = object_or_empty(params)?;
        let cols = opt_dimension(p, "cols", MAX_COLS)?.unwrap_or(DEFAULT_COLS);
        let rows = opt_dimension(p, "rows", MAX_ROWS)?.unwrap_or(DEFAULT_ROWS);
        let cwd = opt_string(p, "cwd")?;
        let command = opt_string(p, "command")?;
        if command.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err(RpcError::invalid_params(
                "\"command\" is empty: leave it out to start a shell, or name a command",
            ));
        }
        if self.limits.max_terminals == 0 {
            return Err(RpcError::new(
                code::LIMIT,
                "terminals are limited to 0 on this relay; restart it with a higher terminal limit",
            ));
        }

        let mut actions = Vec::new();
        while self.table.len() >= self.limits.max_terminals {
            let Some((old, term)) = self.table.pop_first() else {
                break;
            };
            actions.push(TermAction::Kill { id: old });
            let line = exit_line(old, None, None, Some("evicted: too many terminals"));
            to_audience(&term, &line, &mut actions);
        }

        let id = TerminalId(self.next_id);
        self.next_id += 1;
        let mut screen = Screen::new(cols, rows, self.limits.scrollback_lines);
        let snapshot = with_id(id, screen.snapshot());
        self.table.insert(
            id,
            Terminal {
                owner: owner.clone(),
                viewers: Vec::new(),
                command: command.clone(),
                screen,
            },
        );
        actions.push(TermAction::Spawn {
            id,
            cols,
            rows,
            cwd,
            command,
            project: Default::default(),
        });
        Ok((
            json!({ "terminalId": id.to_string(), "screen": snapshot }),
            actions,
        ))
    }

    /// `_relay/terminal/list` → `{terminals: [{terminalId, mine, attached,
    /// cols, rows, title, command}]}`, oldest first: every open terminal
    /// (`mine`: `client` opened it; `attached`: it gets its screen).
    pub fn list(&self, client: &ClientId) -> Value {
        let terminals: Vec<Value> = self
            .table
            .iter()
            .map(|(id, t)| {
                let (cols, rows) = t.screen.size();
                json!({
                    "terminalId": id.to_string(),
                    "mine": &t.owner == client,
                    "attached": t.may_use(client),
                    "cols": cols,
                    "rows": rows,
                    "title": t.screen.title(),
                    "command": t.command,
                })
            })
            .collect();
        json!({ "terminals": terminals })
    }

    /// `_relay/terminal/attach {terminalId}`: `client` gets this terminal's
    /// screen from now on (on every socket, across reconnects) and may type
    /// into it; the result `{terminalId, screen}` is a snapshot the next
    /// diff applies to. Past [`MAX_VIEWERS`] the first attached device is
    /// detached.
    pub fn attach(&mut self, client: &ClientId, params: &Value) -> Result<Value, RpcError> {
        let id = self.resolve(object(params)?)?;
        let Some(term) = self.table.get_mut(&id) else {
            return Err(unknown_terminal(&id.to_string()));
        };
        if !term.may_use(client) {
            if term.viewers.len() >= MAX_VIEWERS {
                term.viewers.remove(0);
            }
            term.viewers.push(client.clone());
        }
        let snapshot = with_id(id, term.screen.snapshot());
        Ok(json!({ "terminalId": id.to_string(), "screen": snapshot }))
    }

    /// `_relay/terminal/detach {terminalId}`: `client` stops getting the
    /// screen. The owner cannot detach (it closes instead).
    pub fn detach(&mut self, client: &ClientId, params: &Value) -> Result<(), RpcError> {
        let id = self.resolve(object(params)?)?;
        if let Some(term) = self.table.get_mut(&id) {
            term.viewers.retain(|v| v != client);
        }
        Ok(())
    }

    /// `_relay/terminal/input {terminalId, data}`: the owner or an attached
    /// device may type.
    pub fn input(
        &mut self,
        client: &ClientId,
        params: &Value,
    ) -> Result<Vec<TermAction>, RpcError> {
        let p = object(params)?;
        let id = self.usable(client, p)?;
        let data = match p.get("data") {
            Some(Value::String(s)) => s.as_bytes().to_vec(),
            _ => {
                return Err(RpcError::invalid_params(
                    "\"data\" must be a string of input for the terminal",
                ));
            }
        };
        if data.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![TermAction::Write { id, data }])
    }

    /// `_relay/terminal/resize {terminalId, cols, rows}` (cols in
    /// `1..=MAX_COLS`, rows in `1..=MAX_ROWS`): the PTY and the screen take
    /// the size; every device gets a full frame.
    pub fn resize(
        &mut self,
        client: &ClientId,
        params: &Value,
    ) -> Result<Vec<TermAction>, RpcError> {
        let p = object(params)?;
        let id = self.usable(client, p)?;
        let cols = opt_dimension(p, "cols", MAX_COLS)?;
        let rows = opt_dimension(p, "rows", MAX_ROWS)?;
        let (Some(cols), Some(rows)) = (cols, rows) else {
            return Err(RpcError::invalid_params(
                "\"cols\" and \"rows\" are both required",
            ));
        };
        let mut actions = vec![TermAction::Resize { id, cols, rows }];
        if let Some(term) = self.table.get_mut(&id) {
            term.screen.resize(cols, rows);
            frame_to_audience(id, term, &mut actions);
        }
        Ok(actions)
    }

    /// `_relay/terminal/close {terminalId}`: kills the process; the exit
    /// frame follows when it is reaped ([`TerminalTable::exited`]).
    pub fn close(
        &mut self,
        client: &ClientId,
        params: &Value,
    ) -> Result<Vec<TermAction>, RpcError> {
        let p = object(params)?;
        let id = self.usable(client, p)?;
        Ok(vec![TermAction::Kill { id }])
    }

    /// PTY output (valid UTF-8) goes into the screen. With `flush` (the
    /// shell's frame pacing says a frame is due) the devices get an
    /// `_relay/terminal/screen` diff of what changed since the last frame.
    /// Output of a forgotten terminal is dropped.
    pub fn output(&mut self, id: TerminalId, data: &str, flush: bool) -> Vec<TermAction> {
        let Some(term) = self.table.get_mut(&id) else {
            return Vec::new();
        };
        term.screen.feed(data.as_bytes());
        let mut actions = Vec::new();
        if flush {
            frame_to_audience(id, term, &mut actions);
        }
        actions
    }

    /// The process ended (and was reaped) → the last frame, then
    /// `_relay/terminal/exit {terminalId, exitCode, signal}` to its devices;
    /// the terminal is forgotten. An already forgotten terminal yields
    /// nothing.
    pub fn exited(
        &mut self,
        id: TerminalId,
        exit_code: Option<i32>,
        signal: Option<String>,
    ) -> Vec<TermAction> {
        let Some(mut term) = self.table.remove(&id) else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        frame_to_audience(id, &mut term, &mut actions);
        let line = exit_line(id, exit_code, signal.as_deref(), None);
        to_audience(&term, &line, &mut actions);
        actions
    }

    /// The shell could not start `id`'s process → an exit frame with a
    /// `reason` to its devices; the terminal is forgotten.
    pub fn spawn_failed(&mut self, id: TerminalId, reason: &str) -> Vec<TermAction> {
        let Some(term) = self.table.remove(&id) else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        to_audience(
            &term,
            &exit_line(id, None, None, Some(reason)),
            &mut actions,
        );
        actions
    }

    /// A socket of `client` connected: a snapshot (`_relay/terminal/screen`
    /// with `full: true`) of each terminal it owns or is attached to, oldest
    /// first. Diffs follow through [`TerminalTable::output`].
    pub fn snapshots_for(&mut self, client: &ClientId) -> Vec<Bytes> {
        self.table
            .iter_mut()
            .filter(|(_, t)| t.may_use(client))
            .map(|(id, t)| {
                Bytes::from(notification(
                    SCREEN_METHOD,
                    with_id(*id, t.screen.snapshot()),
                ))
            })
            .collect()
    }

    /// Every open terminal, oldest first (for shutdown).
    pub fn all_ids(&self) -> Vec<TerminalId> {
        self.table.keys().copied().collect()
    }

    /// The owner of `id`, if it is open.
    pub fn owner(&self, id: TerminalId) -> Option<&ClientId> {
        self.table.get(&id).map(|t| &t.owner)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Resolves `terminalId` in `p` to an open terminal.
    fn resolve(&self, p: &Map<String, Value>) -> Result<TerminalId, RpcError> {
        let raw = match p.get("terminalId") {
            Some(Value::String(s)) => s.as_str(),
            _ => {
                return Err(RpcError::invalid_params(
                    "\"terminalId\" must be the string id that _relay/terminal/open returned",
                ));
            }
        };
        let id: TerminalId = raw.parse().map_err(|()| unknown_terminal(raw))?;
        if !self.table.contains_key(&id) {
            return Err(unknown_terminal(raw));
        }
        Ok(id)
    }

    /// Resolves `terminalId` in `p` to an open terminal that `client` owns
    /// or is attached to.
    fn usable(&self, client: &ClientId, p: &Map<String, Value>) -> Result<TerminalId, RpcError> {
        let id = self.resolve(p)?;
        match self.table.get(&id) {
            Some(t) if t.may_use(client) => Ok(id),
            _ => Err(RpcError::invalid_params(format!(
                "terminal {id} belongs to another device; attach to it with _relay/terminal/attach or open your own with _relay/terminal/open"
            ))),
        }
    }
}

fn unknown_terminal(raw: &str) -> RpcError {
    RpcError::invalid_params(format!(
        "unknown terminal {raw:?}: it has exited or was never opened; open one with _relay/terminal/open"
    ))
}

/// Frame params with the terminal's id in front.
fn with_id(id: TerminalId, frame: Value) -> Value {
    let mut m = Map::new();
    m.insert("terminalId".into(), Value::from(id.to_string()));
    if let Value::Object(rest) = frame {
        m.extend(rest);
    }
    Value::Object(m)
}

/// The next frame of `term`, if anything changed, to each of its devices.
fn frame_to_audience(id: TerminalId, term: &mut Terminal, actions: &mut Vec<TermAction>) {
    if let Some(frame) = term.screen.frame() {
        let line = Bytes::from(notification(SCREEN_METHOD, with_id(id, frame)));
        to_audience(term, &line, actions);
    }
}

fn to_audience(term: &Terminal, line: &Bytes, actions: &mut Vec<TermAction>) {
    for client in term.audience() {
        actions.push(TermAction::ToClient {
            client: client.clone(),
            line: line.clone(),
        });
    }
}

/// An `_relay/terminal/exit` line; `reason` is set when the relay ended the
/// terminal itself.
fn exit_line(
    id: TerminalId,
    exit_code: Option<i32>,
    signal: Option<&str>,
    reason: Option<&str>,
) -> Bytes {
    let mut params = json!({
        "terminalId": id.to_string(),
        "exitCode": exit_code,
        "signal": signal,
    });
    if let Some(reason) = reason {
        params["reason"] = Value::from(reason);
    }
    Bytes::from(notification(EXIT_METHOD, params))
}

fn object(params: &Value) -> Result<&Map<String, Value>, RpcError> {
    params
        .as_object()
        .ok_or_else(|| RpcError::invalid_params("params must be an object"))
}

/// Like [`object`], but absent (`null`) params mean `{}`.
fn object_or_empty(params: &Value) -> Result<&Map<String, Value>, RpcError> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    match params {
        Value::Null => Ok(EMPTY.get_or_init(Map::new)),
        other => object(other),
    }
}

fn opt_dimension(p: &Map<String, Value>, key: &str, max: u16) -> Result<Option<u16>, RpcError> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=u64::from(max)).contains(n))
            .and_then(|n| u16::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                RpcError::invalid_params(format!("\"{key}\" must be an integer from 1 to {max}"))
            }),
    }
}

fn opt_string(p: &Map<String, Value>, key: &str) -> Result<Option<String>, RpcError> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_OPEN_STRING => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(RpcError::invalid_params(format!(
            "\"{key}\" is longer than {MAX_OPEN_STRING} bytes"
        ))),
        Some(_) => Err(RpcError::invalid_params(format!(
            "\"{key}\" must be a string"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(name: &str) -> ClientId {
        ClientId(name.to_owned())
    }

    fn limits(max: usize) -> TermLimits {
        TermLimits {
            max_terminals: max,
            scrollback_lines: 100,
        }
    }

    fn parse(line: &Bytes) -> Value {
        serde_json::from_slice(line).unwrap()
    }

    /// The lines sent to `who`, parsed.
    fn sent_to(actions: &[TermAction], who: &str) -> Vec<Value> {
        actions
            .iter()
            .filter_map(|a| match a {
                TermAction::ToClient { client: c, line } if c.0 == who => Some(parse(line)),
                _ => None,
            })
            .collect()
    }

    /// Row `row`'s text in a screen frame's params (empty when not sent).
    fn row(params: &Value, row: u64) -> String {
        params["lines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l[0] == row)
            .map(|l| screen::row_text(&l[1]))
            .unwrap_or_default()
    }

    fn spawn(id: u64, cols: u16, rows: u16) -> TermAction {
        TermAction::Spawn {
            id: TerminalId(id),
            cols,
            rows,
            cwd: None,
            command: None,
            project: Default::default(),
        }
    }

    #[test]
    fn terminal_id_wire_form() {
        assert_eq!(TerminalId(3).to_string(), "t3");
        assert_eq!("t3".parse(), Ok(TerminalId(3)));
        for bad in [
            "3",
            "t",
            "t-1",
            "t+1",
            "x3",
            "t3 ",
            "t99999999999999999999999",
        ] {
            assert_eq!(bad.parse::<TerminalId>(), Err(()), "{bad}");
        }
    }

    #[test]
    fn open_spawns_with_defaults_and_given_fields_and_answers_a_blank_screen() {
        let mut t = TerminalTable::new(TermLimits::default());
        let (result, actions) = t.open(&client("a"), &Value::Null).unwrap();
        assert_eq!(result["terminalId"], "t1");
        assert_eq!(result["screen"]["terminalId"], "t1");
        assert_eq!(result["screen"]["seq"], 0);
        assert_eq!(result["screen"]["full"], true);
        assert_eq!(result["screen"]["cols"], DEFAULT_COLS);
        assert_eq!(result["screen"]["rows"], DEFAULT_ROWS);
        assert_eq!(actions, vec![spawn(1, DEFAULT_COLS, DEFAULT_ROWS)]);
        let (result, actions) = t
            .open(
                &client("a"),
                &json!({"cols": 100, "rows": 30, "cwd": "sub", "command": "top -b -n1"}),
            )
            .unwrap();
        assert_eq!(result["terminalId"], "t2");
        assert_eq!(
            actions,
            vec![TermAction::Spawn {
                id: TerminalId(2),
                cols: 100,
                rows: 30,
                cwd: Some("sub".into()),
                command: Some("top -b -n1".into()),
                project: Default::default(),
            }]
        );
        assert_eq!(t.all_ids(), vec![TerminalId(1), TerminalId(2)]);
    }

    #[test]
    fn open_rejects_bad_params() {
        let mut t = TerminalTable::new(TermLimits::default());
        for bad in [
            json!([]),
            json!({"cols": 0}),
            json!({"rows": MAX_ROWS + 1}),
            json!({"cols": MAX_COLS + 1}),
            json!({"cols": "80"}),
            json!({"cols": 1.5}),
            json!({"cwd": 3}),
            json!({"command": ""}),
            json!({"command": "  "}),
        ] {
            let err = t.open(&client("a"), &bad).unwrap_err();
            assert_eq!(err.code, code::INVALID_PARAMS, "{bad}");
        }
        assert!(t.is_empty());
        let mut none = TerminalTable::new(limits(0));
        assert_eq!(
            none.open(&client("a"), &json!({})).unwrap_err().code,
            code::LIMIT
        );
    }

    #[test]
    fn open_past_the_limit_evicts_the_oldest_and_tells_its_devices() {
        let mut t = TerminalTable::new(limits(2));
        t.open(&client("a"), &json!({})).unwrap();
        t.attach(&client("v"), &json!({"terminalId": "t1"}))
            .unwrap();
        t.open(&client("b"), &json!({})).unwrap();
        let (result, actions) = t.open(&client("c"), &json!({})).unwrap();
        assert_eq!(result["terminalId"], "t3");
        let evicted = Bytes::from(notification(
            EXIT_METHOD,
            json!({
                "terminalId": "t1",
                "exitCode": null,
                "signal": null,
                "reason": "evicted: too many terminals",
            }),
        ));
        assert_eq!(
            actions,
            vec![
                TermAction::Kill { id: TerminalId(1) },
                TermAction::ToClient {
                    client: client("a"),
                    line: evicted.clone()
                },
                TermAction::ToClient {
                    client: client("v"),
                    line: evicted
                },
                spawn(3, DEFAULT_COLS, DEFAULT_ROWS),
            ]
        );
        assert_eq!(t.all_ids(), vec![TerminalId(2), TerminalId(3)]);
        // The evicted terminal's late events are dropped.
        assert!(t.output(TerminalId(1), "late", true).is_empty());
        assert!(
            t.exited(TerminalId(1), None, Some("SIGHUP".into()))
                .is_empty()
        );
        let err = t
            .input(&client("a"), &json!({"terminalId": "t1", "data": "x"}))
            .unwrap_err();
        assert_eq!(err.code, code::INVALID_PARAMS);
    }

    #[test]
    fn output_becomes_screen_frames_only_when_flushed() {
        let mut t = TerminalTable::new(TermLimits::default());
        t.open(&client("a"), &json!({"cols": 20, "rows": 4}))
            .unwrap();
        t.open(&client("b"), &json!({})).unwrap();
        // Output without a flush makes no frame: a flood is one frame per pace.
        assert!(t.output(TerminalId(1), "hel", false).is_empty());
        let actions = t.output(TerminalId(1), "lo\r\n\x1b[31mred\x1b[0m", true);
        let frames = sent_to(&actions, "a");
        assert_eq!(frames.len(), 1);
        let f = &frames[0];
        assert_eq!(f["method"], SCREEN_METHOD);
        let p = &f["params"];
        assert_eq!(p["terminalId"], "t1");
        assert_eq!(p["seq"], 1);
        assert_eq!(p["full"], false);
        assert_eq!(row(p, 0), "hello");
        assert_eq!(
            p["lines"][1],
            json!([1, [{"col": 0, "text": "red", "fg": 1}]])
        );
        assert_eq!(p["cursor"], json!({"row": 1, "col": 3, "visible": true}));
        assert!(sent_to(&actions, "b").is_empty(), "t1 is a's alone");
        // A flush with nothing new makes no frame and uses no seq.
        assert!(t.output(TerminalId(1), "", true).is_empty());
        let actions = t.output(TerminalId(1), "!", true);
        assert_eq!(sent_to(&actions, "a")[0]["params"]["seq"], 2);
        assert_eq!(
            sent_to(&actions, "a")[0]["params"]["lines"],
            json!([[1, [{"col": 0, "text": "red", "fg": 1}, {"col": 3, "text": "!"}]]])
        );
    }

    #[test]
    fn reconnect_gets_a_snapshot_of_owned_and_attached_terminals() {
        let mut t = TerminalTable::new(TermLimits::default());
        t.open(&client("a"), &json!({"cols": 10, "rows": 2}))
            .unwrap();
        t.open(&client("b"), &json!({"cols": 10, "rows": 2}))
            .unwrap();
        t.open(&client("a"), &json!({"cols": 10, "rows": 2}))
            .unwrap();
        t.output(TerminalId(1), "one", true);
        t.output(TerminalId(2), "bee", true);
        t.output(TerminalId(3), "three", true);
        // Not yet flushed: comes in the next diff, not in the snapshot.
        t.output(TerminalId(3), "\r\nmore", false);
        let snaps: Vec<Value> = t.snapshots_for(&client("a")).iter().map(parse).collect();
        assert_eq!(snaps.len(), 2);
        assert_eq!(snaps[0]["method"], SCREEN_METHOD);
        assert_eq!(snaps[0]["params"]["terminalId"], "t1");
        assert_eq!(snaps[0]["params"]["full"], true);
        assert_eq!(row(&snaps[0]["params"], 0), "one");
        assert_eq!(snaps[1]["params"]["terminalId"], "t3");
        assert_eq!(snaps[1]["params"]["seq"], 1);
        assert_eq!(row(&snaps[1]["params"], 0), "three");
        assert_eq!(row(&snaps[1]["params"], 1), "");
        let next = t.output(TerminalId(3), "", true);
        let p = &sent_to(&next, "a")[0]["params"];
        assert_eq!(p["seq"], 2);
        assert_eq!(row(p, 1), "more");
        assert!(t.snapshots_for(&client("nobody")).is_empty());
    }

    #[test]
    fn another_device_attaches_sees_the_same_screen_and_may_type() {
        let mut t = TerminalTable::new(TermLimits::default());
        t.open(&client("a"), &json!({"cols": 10, "rows": 2}))
            .unwrap();
        t.output(TerminalId(1), "$ ls", true);
        let listed = t.list(&client("b"));
        assert_eq!(
            listed,
            json!({"terminals": [{
                "terminalId": "t1", "mine": false, "attached": false,
                "cols": 10, "rows": 2, "title": null, "command": null,
            }]})
        );
        // Not attached yet: may not type.
        let typed = json!({"terminalId": "t1", "data": "x"});
        assert!(t.input(&client("b"), &typed).is_err());
        let r = t
            .attach(&client("b"), &json!({"terminalId": "t1"}))
            .unwrap();
        assert_eq!(r["terminalId"], "t1");
        assert_eq!(r["screen"]["seq"], 1);
        assert_eq!(row(&r["screen"], 0), "$ ls");
        assert_eq!(t.list(&client("b"))["terminals"][0]["attached"], true);
        assert_eq!(t.input(&client("b"), &typed).unwrap().len(), 1);
        // Both get the next diff; attaching twice changes nothing.
        t.attach(&client("b"), &json!({"terminalId": "t1"}))
            .unwrap();
        let actions = t.output(TerminalId(1), "\r\nsrc", true);
        assert_eq!(sent_to(&actions, "a").len(), 1);
        assert_eq!(sent_to(&actions, "b"), sent_to(&actions, "a"));
        assert_eq!(t.snapshots_for(&client("b")).len(), 1);
        // Detached, it gets nothing and may not type.
        t.detach(&client("b"), &json!({"terminalId": "t1"}))
            .unwrap();
        let actions = t.output(TerminalId(1), "!", true);
        assert!(sent_to(&actions, "b").is_empty());
        assert!(t.input(&client("b"), &typed).is_err());
        // The owner stays.
        t.detach(&client("a"), &json!({"terminalId": "t1"}))
            .unwrap();
        assert!(t.input(&client("a"), &typed).is_ok());
        assert!(
            t.attach(&client("b"), &json!({"terminalId": "t9"}))
                .is_err()
        );
    }

    #[test]
    fn viewers_are_bounded() {
        let mut t = TerminalTable::new(TermLimits::default());
        t.open(&client("a"), &json!({})).unwrap();
        for i in 0..=MAX_VIEWERS {
            t.attach(&client(&format!("v{i}")), &json!({"terminalId": "t1"}))
                .unwrap();
        }
        let actions = t.output(TerminalId(1), "x", true);
        assert_eq!(actions.len(), 1 + MAX_VIEWERS);
        assert!(
            sent_to(&actions, "v0").is_empty(),
            "the first one was dropped"
        );
        assert_eq!(sent_to(&actions, &format!("v{MAX_VIEWERS}")).len(), 1);
    }

    #[test]
    fn resize_resizes_the_screen_and_sends_a_full_frame() {
        let mut t = TerminalTable::new(TermLimits::default());
        t.open(&client("a"), &json!({"cols": 10, "rows": 2}))
            .unwrap();
        t.output(TerminalId(1), "hi", true);
        let actions = t
            .resize(
                &client("a"),
                &json!({"terminalId": "t1", "cols": 101, "rows": 33}),
            )
            .unwrap();
        assert_eq!(
            actions[0],
            TermAction::Resize {
                id: TerminalId(1),
                cols: 101,
                rows: 33
            }
        );
        let p = &sent_to(&actions, "a")[0]["params"];
        assert_eq!(p["full"], true);
        assert_eq!(
            (p["cols"].as_u64(), p["rows"].as_u64()),
            (Some(101), Some(33))
        );
        assert_eq!(p["lines"].as_array().unwrap().len(), 33);
        assert_eq!(row(p, 0), "hi");
    }

    #[test]
    fn exit_sends_the_last_frame_then_the_exit_and_forgets() {
        let mut t = TerminalTable::new(TermLimits::default());
        t.open(&client("a"), &json!({})).unwrap();
        t.open(&client("a"), &json!({})).unwrap();
        t.output(TerminalId(1), "bye", false);
        let actions = t.exited(TerminalId(1), Some(3), None);
        let sent = sent_to(&actions, "a");
        assert_eq!(sent.len(), 2);
        assert_eq!(row(&sent[0]["params"], 0), "bye");
        assert_eq!(
            sent[1],
            json!({"jsonrpc": "2.0", "method": EXIT_METHOD,
                   "params": {"terminalId": "t1", "exitCode": 3, "signal": null}})
        );
        let sent = sent_to(&t.exited(TerminalId(2), None, Some("SIGKILL".into())), "a");
        assert_eq!(
            sent,
            vec![json!({"jsonrpc": "2.0", "method": EXIT_METHOD,
                        "params": {"terminalId": "t2", "exitCode": null, "signal": "SIGKILL"}})]
        );
        assert!(t.is_empty());
        assert!(t.snapshots_for(&client("a")).is_empty());
        assert!(t.exited(TerminalId(1), Some(0), None).is_empty());
        // Ids are never reused.
        assert_eq!(
            t.open(&client("a"), &json!({})).unwrap().0["terminalId"],
            "t3"
        );
    }

    #[test]
    fn spawn_failure_tells_the_owner() {
        let mut t = TerminalTable::new(TermLimits::default());
        t.open(&client("a"), &json!({})).unwrap();
        let actions = t.spawn_failed(TerminalId(1), "cannot start a shell: no such file");
        let sent = sent_to(&actions, "a");
        assert_eq!(sent.len(), 1, "{actions:?}");
        assert_eq!(
            sent[0]["params"]["reason"],
            "cannot start a shell: no such file"
        );
        assert_eq!(sent[0]["params"]["exitCode"], Value::Null);
        assert!(t.is_empty());
    }

    #[test]
    fn input_resize_close_for_the_owner() {
        let mut t = TerminalTable::new(TermLimits::default());
        t.open(&client("a"), &json!({})).unwrap();
        assert_eq!(
            t.input(&client("a"), &json!({"terminalId": "t1", "data": "ls\n"}))
                .unwrap(),
            vec![TermAction::Write {
                id: TerminalId(1),
                data: b"ls\n".to_vec()
            }]
        );
        assert_eq!(
            t.input(&client("a"), &json!({"terminalId": "t1", "data": ""}))
                .unwrap(),
            vec![]
        );
        assert_eq!(
            t.close(&client("a"), &json!({"terminalId": "t1"})).unwrap(),
            vec![TermAction::Kill { id: TerminalId(1) }]
        );
        // Closing does not forget: output still flows until the exit.
        assert_eq!(sent_to(&t.output(TerminalId(1), "x", true), "a").len(), 1);
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut t = TerminalTable::new(TermLimits::default());
        t.open(&client("a"), &json!({})).unwrap();
        let a = client("a");
        let cases: Vec<(&str, Value)> = vec![
            ("input", json!({"terminalId": "t9", "data": "x"})),
            ("input", json!({"terminalId": 1, "data": "x"})),
            ("input", json!({"terminalId": "1", "data": "x"})),
            ("input", json!({"terminalId": "t1"})),
            ("input", json!({"terminalId": "t1", "data": [1]})),
            ("input", json!(null)),
            ("resize", json!({"terminalId": "t1", "cols": 0, "rows": 10})),
            (
                "resize",
                json!({"terminalId": "t1", "cols": 10, "rows": MAX_ROWS + 1}),
            ),
            ("resize", json!({"terminalId": "t1", "cols": 10})),
            (
                "resize",
                json!({"terminalId": "t1", "cols": -1, "rows": 10}),
            ),
            ("close", json!({})),
            ("close", json!({"terminalId": "t2"})),
            ("attach", json!({"terminalId": "t2"})),
            ("attach", json!("t1")),
            ("detach", json!({})),
        ];
        for (method, params) in cases {
            let err = match method {
                "input" => t.input(&a, &params).map(drop),
                "resize" => t.resize(&a, &params).map(drop),
                "attach" => t.attach(&a, &params).map(drop),
                "detach" => t.detach(&a, &params),
                _ => t.close(&a, &params).map(drop),
            }
            .unwrap_err();
            assert_eq!(err.code, code::INVALID_PARAMS, "{method} {params}");
        }
        assert_eq!(t.all_ids(), vec![TerminalId(1)]);
    }

    #[test]
    fn only_the_owner_and_attached_devices_may_use_a_terminal() {
        let mut t = TerminalTable::new(TermLimits::default());
        t.open(&client("a"), &json!({})).unwrap();
        let b = client("b");
        let id = json!({"terminalId": "t1", "data": "rm -rf ~\n", "cols": 10, "rows": 10});
        for err in [
            t.input(&b, &id).unwrap_err(),
            t.resize(&b, &id).unwrap_err(),
            t.close(&b, &id).unwrap_err(),
        ] {
            assert_eq!(err.code, code::INVALID_PARAMS);
            assert!(err.message.contains("another device"), "{}", err.message);
        }
        assert_eq!(t.owner(TerminalId(1)), Some(&client("a")));
        assert!(t.snapshots_for(&b).is_empty());
    }
}
