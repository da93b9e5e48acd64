//! The demo agent's prompt script: which steps a prompt's text asks for.
//! Pure parsing, no I/O: `parse` turns the text into a [`Script`] that the turn
//! runner plays in order.

/// Echo chunks when the prompt does not say `/chunks N`.
pub const DEFAULT_CHUNKS: usize = 3;

/// Upper bound on `/chunks N`, so a typo cannot flood the client.
pub const MAX_CHUNKS: usize = 10_000;

/// Upper bound on `/sleep MS` (one hour).
pub const MAX_SLEEP_MS: u64 = 3_600_000;

/// The command words; a line starting with any other word is plain text.
const COMMANDS: [&str; 10] = [
    "/chunks",
    "/sleep",
    "/ask",
    "/read",
    "/write",
    "/run",
    "/context",
    "/settings",
    "/fail",
    "/exit",
];

/// Each command's description and input hint, for `available_commands_update`.
const HELP: [(&str, &str, Option<&str>); 10] = [
    ("chunks", "split the echo into N chunks", Some("N")),
    ("sleep", "pause for MS milliseconds", Some("MS")),
    ("ask", "ask for permission", None),
    (
        "read",
        "read a file through the client",
        Some("path[:line]"),
    ),
    (
        "write",
        "write a file through the client",
        Some("path text"),
    ),
    ("run", "run a command in a client terminal", Some("command")),
    ("context", "say what the session remembers", None),
    ("settings", "say the session's mode and model", None),
    ("fail", "answer the prompt with an error", None),
    ("exit", "end the agent process", None),
];

/// The commands as ACP `availableCommands`.
pub fn command_list() -> serde_json::Value {
    let list: Vec<serde_json::Value> = HELP
        .iter()
        .map(|(name, description, hint)| match hint {
            Some(h) => serde_json::json!({ "name": name, "description": description, "input": { "hint": h } }),
            None => serde_json::json!({ "name": name, "description": description }),
        })
        .collect();
    serde_json::Value::Array(list)
}

/// One step of a turn, in prompt order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `/sleep MS`: pause, cancellable.
    Sleep { ms: u64 },
    /// `/ask`: a tool call that needs permission.
    Ask,
    /// `/read PATH[:LINE]`: `fs/read_text_file`; the tool call's location
    /// names LINE (else line 1).
    Read { path: String, line: Option<u64> },
    /// `/write PATH TEXT`: `fs/write_text_file`.
    Write { path: String, text: String },
    /// `/run CMD`: `terminal/create` running `sh -c CMD`.
    Run { command: String },
    /// `/context`: report what the session remembers.
    Context,
    /// `/settings`: report the session's mode and config option.
    Settings,
    /// `/fail`: answer the prompt with a JSON-RPC error.
    Fail,
    /// `/exit`: end the process with status 3.
    Exit,
    /// A command line whose argument is unusable; reported in a chunk.
    Invalid { line: String, why: &'static str },
}

/// What a prompt asks for. The echo of the whole text always comes first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// How many chunks the echo is split into (at least 1).
    pub chunks: usize,
    /// The steps after the echo, in prompt order.
    pub steps: Vec<Step>,
    /// True when the text held no command at all: play the demo tour.
    pub tour: bool,
}

/// Parses a prompt's text. Lines whose first word is a known command are
/// steps; every other line is plain text and only echoed.
pub fn parse(text: &str) -> Script {
    let mut chunks = DEFAULT_CHUNKS;
    let mut steps = Vec::new();
    let mut commands = 0usize;
    for raw in text.lines() {
        let line = raw.trim();
        let (word, rest) = match line.split_once(char::is_whitespace) {
            Some((w, r)) => (w, r.trim()),
            None => (line, ""),
        };
        if !COMMANDS.contains(&word) {
            continue;
        }
        commands += 1;
        let invalid = |why| Step::Invalid {
            line: line.to_string(),
            why,
        };
        let step = match word {
            "/chunks" => match rest.parse::<usize>() {
                Ok(n) if n >= 1 => {
                    chunks = n.min(MAX_CHUNKS);
                    continue;
                }
                _ => invalid("/chunks needs a whole number of at least 1"),
            },
            "/sleep" => match rest.parse::<u64>() {
                Ok(ms) => Step::Sleep {
                    ms: ms.min(MAX_SLEEP_MS),
                },
                Err(_) => invalid("/sleep needs a number of milliseconds"),
            },
            "/ask" => Step::Ask,
            "/read" if rest.is_empty() => invalid("/read needs a path"),
            "/read" => {
                let (path, line) = match rest.rsplit_once(':') {
                    Some((p, n)) if !p.is_empty() => match n.parse::<u64>() {
                        Ok(n) if n >= 1 => (p, Some(n)),
                        _ => (rest, None),
                    },
                    _ => (rest, None),
                };
                Step::Read {
                    path: path.to_string(),
                    line,
                }
            }
            "/write" => match rest.split_once(char::is_whitespace) {
                Some((path, text)) => Step::Write {
                    path: path.to_string(),
                    text: text.trim_start().to_string(),
                },
                None if !rest.is_empty() => Step::Write {
                    path: rest.to_string(),
                    text: String::new(),
                },
                None => invalid("/write needs a path and then the text"),
            },
            "/run" if rest.is_empty() => invalid("/run needs a command"),
            "/run" => Step::Run {
                command: rest.to_string(),
            },
            "/context" => Step::Context,
            "/settings" => Step::Settings,
            "/fail" => Step::Fail,
            _ => Step::Exit,
        };
        steps.push(step);
    }
    Script {
        chunks,
        steps,
        tour: commands == 0,
    }
}

/// Splits `text` into exactly `n` pieces (some may be empty) on character
/// boundaries, as evenly as the characters allow.
pub fn split_chunks(text: &str, n: usize) -> Vec<&str> {
    let n = n.max(1);
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let chars = bounds.len() - 1;
    (0..n)
        .map(|i| {
            let start = bounds[i * chars / n];
            let end = bounds[(i + 1) * chars / n];
            &text[start..end]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_the_tour() {
        let s = parse("hello there\nhow are you");
        assert_eq!(
            s,
            Script {
                chunks: DEFAULT_CHUNKS,
                steps: vec![],
                tour: true
            }
        );
    }

    #[test]
    fn chunks_is_a_setting_not_a_step() {
        let s = parse("/chunks 2\nhi");
        assert_eq!(
            s,
            Script {
                chunks: 2,
                steps: vec![],
                tour: false
            }
        );
    }

    #[test]
    fn steps_keep_prompt_order() {
        let s = parse(
            "intro\n/sleep 50\n/ask\n/read ../x y.txt\n/read src/a.rs:12\n/read odd:name\n/write out.txt hello  world\n/run echo hi | wc -c\n/context\n/fail\n/exit",
        );
        assert_eq!(
            s.steps,
            vec![
                Step::Sleep { ms: 50 },
                Step::Ask,
                Step::Read {
                    path: "../x y.txt".into(),
                    line: None
                },
                Step::Read {
                    path: "src/a.rs".into(),
                    line: Some(12)
                },
                Step::Read {
                    path: "odd:name".into(),
                    line: None
                },
                Step::Write {
                    path: "out.txt".into(),
                    text: "hello  world".into()
                },
                Step::Run {
                    command: "echo hi | wc -c".into()
                },
                Step::Context,
                Step::Fail,
                Step::Exit,
            ]
        );
        assert!(!s.tour);
        assert_eq!(s.chunks, DEFAULT_CHUNKS);
    }

    #[test]
    fn unknown_commands_are_text() {
        let s = parse("/unknown 3\n  /askme");
        assert!(s.tour);
        assert!(s.steps.is_empty());
    }

    #[test]
    fn bad_arguments_become_invalid_steps() {
        let s = parse("/sleep soon\n/chunks 0\n/read\n/run   ");
        assert!(!s.tour);
        assert_eq!(s.chunks, DEFAULT_CHUNKS);
        assert_eq!(s.steps.len(), 4);
        assert!(s.steps.iter().all(|st| matches!(st, Step::Invalid { .. })));
    }

    #[test]
    fn limits_are_clamped() {
        let s = parse("/chunks 99999999\n/sleep 99999999999");
        assert_eq!(s.chunks, MAX_CHUNKS);
        assert_eq!(s.steps, vec![Step::Sleep { ms: MAX_SLEEP_MS }]);
    }

    #[test]
    fn write_without_text_writes_empty() {
        assert_eq!(
            parse("/write a.txt").steps,
            vec![Step::Write {
                path: "a.txt".into(),
                text: String::new()
            }]
        );
    }

    #[test]
    fn split_is_exact_and_lossless() {
        for n in 1..12 {
            for text in ["", "a", "echo: hi", "héllo wörld ✓✓✓"] {
                let parts = split_chunks(text, n);
                assert_eq!(parts.len(), n);
                assert_eq!(parts.concat(), text);
            }
        }
        assert_eq!(split_chunks("abcd", 2), vec!["ab", "cd"]);
        assert_eq!(split_chunks("abc", 0), vec!["abc"]);
    }
}
