//! Device PTY terminals as a table: who owns each terminal, its output `seq`
//! and its bounded scrollback. Takes requests and PTY events, returns
//! [`TermAction`]s for the shell to perform. Performs no I/O and never reads
//! the clock; the PTYs themselves live in `crate::pty`.

use crate::core::ids::ClientId;
use crate::core::rpc::{RpcError, code, notification};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::str::FromStr;

/// Most terminals open at once, unless the relay is told otherwise.
pub const DEFAULT_MAX_TERMINALS: usize = 8;
/// Output frames kept per terminal for replay on reconnect.
pub const DEFAULT_SCROLLBACK_FRAMES: usize = 1000;
/// Output bytes (whole frame lines) kept per terminal for replay.
pub const DEFAULT_SCROLLBACK_BYTES: usize = 1 << 20;
/// Columns of a terminal opened without `cols`.
pub const DEFAULT_COLS: u16 = 80;
/// Rows of a terminal opened without `rows`.
pub const DEFAULT_ROWS: u16 = 24;
/// Largest `cols` and `rows` accepted (the smallest is 1).
pub const MAX_DIMENSION: u16 = 1000;
/// Longest `cwd` or `command` accepted in `_relay/terminal/open`.
pub const MAX_OPEN_STRING: usize = 64 * 1024;

/// The notification carrying PTY output.
pub const OUTPUT_METHOD: &str = "_relay/terminal/output";
/// The notification saying a terminal is gone.
pub const EXIT_METHOD: &str = "_relay/terminal/exit";

/// A terminal's id, minted by [`Terminals`] and never reused within one relay
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
    /// Frames kept per terminal's scrollback.
    pub scrollback_frames: usize,
    /// Bytes (of frame lines) kept per terminal's scrollback.
    pub scrollback_bytes: usize,
}

impl Default for TermLimits {
    fn default() -> Self {
        TermLimits {
            max_terminals: DEFAULT_MAX_TERMINALS,
            scrollback_frames: DEFAULT_SCROLLBACK_FRAMES,
            scrollback_bytes: DEFAULT_SCROLLBACK_BYTES,
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
    /// Send this line to every socket of `client` (the owner).
    ToClient { client: ClientId, line: Bytes },
}

/// One open terminal.
#[derive(Debug)]
struct Terminal {
    owner: ClientId,
    /// The `seq` of the next output frame; frames start at 1.
    next_seq: u64,
    /// Output frame lines, oldest first, `seq` strictly increasing.
    scrollback: VecDeque<Bytes>,
    /// Sum of the lengths of `scrollback`'s lines.
    scrollback_bytes: usize,
}

/// The open terminals, keyed by id. Ids increase, so the smallest id is the
/// oldest terminal. Invariants: at most `max_terminals` entries; each
/// scrollback holds at most `scrollback_frames` frames and
/// `scrollback_bytes` bytes.
#[derive(Debug)]
pub struct Terminals {
    limits: TermLimits,
    next_id: u64,
    table: BTreeMap<TerminalId, Terminal>,
}

impl Terminals {
    pub fn new(limits: TermLimits) -> Self {
        Terminals {
            limits,
            next_id: 1,
            table: BTreeMap::new(),
        }
    }

    /// `_relay/terminal/open {cols?, rows?, cwd?, command?}` → the new
    /// terminal's wire id and the actions: past the limit the oldest terminal
    /// is killed and forgotten (its owner gets an exit frame with a
    /// `reason`), then the new one is spawned.
    pub fn open(
        &mut self,
        owner: &ClientId,
        params: &Value,
    ) -> Result<(String, Vec<TermAction>), RpcError> {
        let p = object_or_empty(params)?;
        let cols = opt_dimension(p, "cols")?.unwrap_or(DEFAULT_COLS);
        let rows = opt_dimension(p, "rows")?.unwrap_or(DEFAULT_ROWS);
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
            actions.push(TermAction::ToClient {
                client: term.owner,
                line: exit_line(old, None, None, Some("evicted: too many terminals")),
            });
        }

        let id = TerminalId(self.next_id);
        self.next_id += 1;
        self.table.insert(
            id,
            Terminal {
                owner: owner.clone(),
                next_seq: 1,
                scrollback: VecDeque::new(),
                scrollback_bytes: 0,
            },
        );
        actions.push(TermAction::Spawn {
            id,
            cols,
            rows,
            cwd,
            command,
        });
        Ok((id.to_string(), actions))
    }

    /// `_relay/terminal/input {terminalId, data}`: only the owner may type.
    pub fn input(
        &mut self,
        client: &ClientId,
        params: &Value,
    ) -> Result<Vec<TermAction>, RpcError> {
        let p = object(params)?;
        let id = self.owned(client, p)?;
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

    /// `_relay/terminal/resize {terminalId, cols, rows}`, each in
    /// `1..=MAX_DIMENSION`.
    pub fn resize(
        &mut self,
        client: &ClientId,
        params: &Value,
    ) -> Result<Vec<TermAction>, RpcError> {
        let p = object(params)?;
        let id = self.owned(client, p)?;
        let cols = opt_dimension(p, "cols")?;
        let rows = opt_dimension(p, "rows")?;
        let (Some(cols), Some(rows)) = (cols, rows) else {
            return Err(RpcError::invalid_params(
                "\"cols\" and \"rows\" are both required",
            ));
        };
        Ok(vec![TermAction::Resize { id, cols, rows }])
    }

    /// `_relay/terminal/close {terminalId}`: kills the process; the exit
    /// frame follows when it is reaped ([`Terminals::exited`]).
    pub fn close(
        &mut self,
        client: &ClientId,
        params: &Value,
    ) -> Result<Vec<TermAction>, RpcError> {
        let p = object(params)?;
        let id = self.owned(client, p)?;
        Ok(vec![TermAction::Kill { id }])
    }

    /// PTY output (already coalesced, valid UTF-8) → an
    /// `_relay/terminal/output {terminalId, data, seq}` frame for the owner,
    /// also kept in the scrollback. Output of a forgotten terminal is dropped.
    pub fn output(&mut self, id: TerminalId, data: &str) -> Vec<TermAction> {
        let limits = self.limits;
        let Some(term) = self.table.get_mut(&id) else {
            return Vec::new();
        };
        if data.is_empty() {
            return Vec::new();
        }
        let seq = term.next_seq;
        term.next_seq += 1;
        let line = Bytes::from(notification(
            OUTPUT_METHOD,
            json!({ "terminalId": id.to_string(), "data": data, "seq": seq }),
        ));
        term.scrollback_bytes += line.len();
        term.scrollback.push_back(line.clone());
        while term.scrollback.len() > limits.scrollback_frames
            || term.scrollback_bytes > limits.scrollback_bytes
        {
            let Some(old) = term.scrollback.pop_front() else {
                break;
            };
            term.scrollback_bytes -= old.len();
        }
        vec![TermAction::ToClient {
            client: term.owner.clone(),
            line,
        }]
    }

    /// The process ended (and was reaped) → `_relay/terminal/exit
    /// {terminalId, exitCode, signal}` to the owner; the terminal is
    /// forgotten. An already forgotten terminal yields nothing.
    pub fn exited(
        &mut self,
        id: TerminalId,
        exit_code: Option<i32>,
        signal: Option<String>,
    ) -> Vec<TermAction> {
        let Some(term) = self.table.remove(&id) else {
            return Vec::new();
        };
        vec![TermAction::ToClient {
            client: term.owner,
            line: exit_line(id, exit_code, signal.as_deref(), None),
        }]
    }

    /// The shell could not start `id`'s process → an exit frame with a
    /// `reason` to the owner; the terminal is forgotten.
    pub fn spawn_failed(&mut self, id: TerminalId, reason: &str) -> Vec<TermAction> {
        let Some(term) = self.table.remove(&id) else {
            return Vec::new();
        };
        vec![TermAction::ToClient {
            client: term.owner,
            line: exit_line(id, None, None, Some(reason)),
        }]
    }

    /// A socket of `client` connected: the scrollback of each of its
    /// terminals (oldest terminal first), each in `seq` order. Live output
    /// follows through [`Terminals::output`].
    pub fn replay_for(&self, client: &ClientId) -> Vec<Bytes> {
        self.table
            .values()
            .filter(|t| &t.owner == client)
            .flat_map(|t| t.scrollback.iter().cloned())
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

    /// Resolves `terminalId` in `p` to an open terminal owned by `client`.
    fn owned(&self, client: &ClientId, p: &Map<String, Value>) -> Result<TerminalId, RpcError> {
        let raw = match p.get("terminalId") {
            Some(Value::String(s)) => s.as_str(),
            _ => {
                return Err(RpcError::invalid_params(
                    "\"terminalId\" must be the string id that _relay/terminal/open returned",
                ));
            }
        };
        let unknown = || {
            RpcError::invalid_params(format!(
                "unknown terminal {raw:?}: it has exited or was never opened; open one with _relay/terminal/open"
            ))
        };
        let id: TerminalId = raw.parse().map_err(|()| unknown())?;
        let term = self.table.get(&id).ok_or_else(unknown)?;
        if &term.owner != client {
            return Err(RpcError::invalid_params(format!(
                "terminal {id} belongs to another device; open your own with _relay/terminal/open"
            )));
        }
        Ok(id)
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

fn opt_dimension(p: &Map<String, Value>, key: &str) -> Result<Option<u16>, RpcError> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=u64::from(MAX_DIMENSION)).contains(n))
            .and_then(|n| u16::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "\"{key}\" must be an integer from 1 to {MAX_DIMENSION}"
                ))
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

    fn limits(max: usize, frames: usize, bytes: usize) -> TermLimits {
        TermLimits {
            max_terminals: max,
            scrollback_frames: frames,
            scrollback_bytes: bytes,
        }
    }

    fn output_line(id: &str, data: &str, seq: u64) -> Bytes {
        Bytes::from(notification(
            OUTPUT_METHOD,
            json!({ "terminalId": id, "data": data, "seq": seq }),
        ))
    }

    fn to(client_name: &str, line: Bytes) -> TermAction {
        TermAction::ToClient {
            client: client(client_name),
            line,
        }
    }

    fn parse(line: &Bytes) -> Value {
        serde_json::from_slice(line).unwrap()
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
    fn open_spawns_with_defaults_and_given_fields() {
        let mut t = Terminals::new(TermLimits::default());
        let (id, actions) = t.open(&client("a"), &Value::Null).unwrap();
        assert_eq!(id, "t1");
        assert_eq!(
            actions,
            vec![TermAction::Spawn {
                id: TerminalId(1),
                cols: DEFAULT_COLS,
                rows: DEFAULT_ROWS,
                cwd: None,
                command: None,
            }]
        );
        let (id, actions) = t
            .open(
                &client("a"),
                &json!({"cols": 100, "rows": 30, "cwd": "sub", "command": "top -b -n1"}),
            )
            .unwrap();
        assert_eq!(id, "t2");
        assert_eq!(
            actions,
            vec![TermAction::Spawn {
                id: TerminalId(2),
                cols: 100,
                rows: 30,
                cwd: Some("sub".into()),
                command: Some("top -b -n1".into()),
            }]
        );
        assert_eq!(t.all_ids(), vec![TerminalId(1), TerminalId(2)]);
    }

    #[test]
    fn open_rejects_bad_params() {
        let mut t = Terminals::new(TermLimits::default());
        for bad in [
            json!([]),
            json!({"cols": 0}),
            json!({"rows": 1001}),
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
        let mut none = Terminals::new(limits(0, 10, 1000));
        assert_eq!(
            none.open(&client("a"), &json!({})).unwrap_err().code,
            code::LIMIT
        );
    }

    #[test]
    fn open_past_the_limit_evicts_the_oldest_and_tells_its_owner() {
        let mut t = Terminals::new(limits(2, 10, 1 << 20));
        t.open(&client("a"), &json!({})).unwrap();
        t.open(&client("b"), &json!({})).unwrap();
        let (id, actions) = t.open(&client("c"), &json!({})).unwrap();
        assert_eq!(id, "t3");
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
                to("a", evicted),
                TermAction::Spawn {
                    id: TerminalId(3),
                    cols: DEFAULT_COLS,
                    rows: DEFAULT_ROWS,
                    cwd: None,
                    command: None,
                },
            ]
        );
        assert_eq!(t.all_ids(), vec![TerminalId(2), TerminalId(3)]);
        // The evicted terminal's late events are dropped.
        assert!(t.output(TerminalId(1), "late").is_empty());
        assert!(
            t.exited(TerminalId(1), None, Some("SIGHUP".into()))
                .is_empty()
        );
        // Its owner cannot type into it any more.
        let err = t
            .input(&client("a"), &json!({"terminalId": "t1", "data": "x"}))
            .unwrap_err();
        assert_eq!(err.code, code::INVALID_PARAMS);
    }

    #[test]
    fn output_frames_carry_increasing_seq_per_terminal() {
        let mut t = Terminals::new(TermLimits::default());
        t.open(&client("a"), &json!({})).unwrap();
        t.open(&client("b"), &json!({})).unwrap();
        assert_eq!(
            t.output(TerminalId(1), "one"),
            vec![to("a", output_line("t1", "one", 1))]
        );
        assert_eq!(
            t.output(TerminalId(2), "uno"),
            vec![to("b", output_line("t2", "uno", 1))]
        );
        assert_eq!(
            t.output(TerminalId(1), "two 😀 漢字"),
            vec![to("a", output_line("t1", "two 😀 漢字", 2))]
        );
        // Empty output makes no frame and uses no seq.
        assert!(t.output(TerminalId(1), "").is_empty());
        assert_eq!(
            t.output(TerminalId(1), "three"),
            vec![to("a", output_line("t1", "three", 3))]
        );
        let [TermAction::ToClient { line, .. }] = &t.output(TerminalId(2), "dos")[..] else {
            panic!("one frame expected");
        };
        let v = parse(line);
        assert_eq!(v["method"], OUTPUT_METHOD);
        assert_eq!(v["params"]["seq"], 2);
        assert_eq!(v["params"]["terminalId"], "t2");
    }

    #[test]
    fn scrollback_is_bounded_by_frames() {
        let mut t = Terminals::new(limits(8, 3, 1 << 20));
        t.open(&client("a"), &json!({})).unwrap();
        for i in 1..=5 {
            t.output(TerminalId(1), &format!("f{i}"));
        }
        assert_eq!(
            t.replay_for(&client("a")),
            vec![
                output_line("t1", "f3", 3),
                output_line("t1", "f4", 4),
                output_line("t1", "f5", 5),
            ]
        );
    }

    #[test]
    fn scrollback_is_bounded_by_bytes() {
        let one = output_line("t1", "aaaa", 1).len();
        // Room for two frames of this size, not three.
        let mut t = Terminals::new(limits(8, 1000, 2 * one + one / 2));
        t.open(&client("a"), &json!({})).unwrap();
        for _ in 0..4 {
            t.output(TerminalId(1), "aaaa");
        }
        assert_eq!(
            t.replay_for(&client("a")),
            vec![output_line("t1", "aaaa", 3), output_line("t1", "aaaa", 4)]
        );
        // A frame larger than the whole cap is sent live but not kept.
        let big = "b".repeat(4 * one);
        assert_eq!(
            t.output(TerminalId(1), &big),
            vec![to("a", output_line("t1", &big, 5))]
        );
        assert!(t.replay_for(&client("a")).is_empty());
        t.output(TerminalId(1), "aaaa");
        assert_eq!(
            t.replay_for(&client("a")),
            vec![output_line("t1", "aaaa", 6)]
        );
    }

    #[test]
    fn replay_is_per_owner_oldest_terminal_first_in_seq_order() {
        let mut t = Terminals::new(TermLimits::default());
        t.open(&client("a"), &json!({})).unwrap();
        t.open(&client("b"), &json!({})).unwrap();
        t.open(&client("a"), &json!({})).unwrap();
        t.output(TerminalId(3), "x1");
        t.output(TerminalId(1), "y1");
        t.output(TerminalId(2), "b1");
        t.output(TerminalId(3), "x2");
        t.output(TerminalId(1), "y2");
        assert_eq!(
            t.replay_for(&client("a")),
            vec![
                output_line("t1", "y1", 1),
                output_line("t1", "y2", 2),
                output_line("t3", "x1", 1),
                output_line("t3", "x2", 2),
            ]
        );
        assert_eq!(t.replay_for(&client("b")), vec![output_line("t2", "b1", 1)]);
        assert!(t.replay_for(&client("nobody")).is_empty());
    }

    #[test]
    fn exit_tells_the_owner_and_forgets_the_terminal() {
        let mut t = Terminals::new(TermLimits::default());
        t.open(&client("a"), &json!({})).unwrap();
        t.open(&client("a"), &json!({})).unwrap();
        t.output(TerminalId(1), "bye");
        assert_eq!(
            t.exited(TerminalId(1), Some(3), None),
            vec![to(
                "a",
                Bytes::from(notification(
                    EXIT_METHOD,
                    json!({"terminalId": "t1", "exitCode": 3, "signal": null})
                ))
            )]
        );
        assert_eq!(
            t.exited(TerminalId(2), None, Some("SIGKILL".into())),
            vec![to(
                "a",
                Bytes::from(notification(
                    EXIT_METHOD,
                    json!({"terminalId": "t2", "exitCode": null, "signal": "SIGKILL"})
                ))
            )]
        );
        assert!(t.is_empty());
        assert!(t.replay_for(&client("a")).is_empty());
        assert!(t.exited(TerminalId(1), Some(0), None).is_empty());
        // Ids are never reused.
        assert_eq!(t.open(&client("a"), &json!({})).unwrap().0, "t3");
    }

    #[test]
    fn spawn_failure_tells_the_owner() {
        let mut t = Terminals::new(TermLimits::default());
        t.open(&client("a"), &json!({})).unwrap();
        let actions = t.spawn_failed(TerminalId(1), "cannot start a shell: no such file");
        let [TermAction::ToClient { client: c, line }] = &actions[..] else {
            panic!("one frame expected: {actions:?}");
        };
        assert_eq!(c, &client("a"));
        let v = parse(line);
        assert_eq!(v["params"]["reason"], "cannot start a shell: no such file");
        assert_eq!(v["params"]["exitCode"], Value::Null);
        assert!(t.is_empty());
    }

    #[test]
    fn input_resize_close_for_the_owner() {
        let mut t = Terminals::new(TermLimits::default());
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
            t.resize(
                &client("a"),
                &json!({"terminalId": "t1", "cols": 101, "rows": 33})
            )
            .unwrap(),
            vec![TermAction::Resize {
                id: TerminalId(1),
                cols: 101,
                rows: 33
            }]
        );
        assert_eq!(
            t.close(&client("a"), &json!({"terminalId": "t1"})).unwrap(),
            vec![TermAction::Kill { id: TerminalId(1) }]
        );
        // Closing does not forget: output still flows until the exit.
        assert_eq!(
            t.output(TerminalId(1), "x"),
            vec![to("a", output_line("t1", "x", 1))]
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut t = Terminals::new(TermLimits::default());
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
                json!({"terminalId": "t1", "cols": 10, "rows": 1001}),
            ),
            ("resize", json!({"terminalId": "t1", "cols": 10})),
            (
                "resize",
                json!({"terminalId": "t1", "cols": -1, "rows": 10}),
            ),
            ("close", json!({})),
            ("close", json!({"terminalId": "t2"})),
        ];
        for (method, params) in cases {
            let err = match method {
                "input" => t.input(&a, &params),
                "resize" => t.resize(&a, &params),
                _ => t.close(&a, &params),
            }
            .unwrap_err();
            assert_eq!(err.code, code::INVALID_PARAMS, "{method} {params}");
        }
        assert_eq!(t.all_ids(), vec![TerminalId(1)]);
    }

    #[test]
    fn only_the_owner_may_use_a_terminal() {
        let mut t = Terminals::new(TermLimits::default());
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
        assert!(t.replay_for(&b).is_empty());
    }
}
