//! The config file: `key = value` lines, one flag each, read before the
//! command line so that flags override it.
//!
//! Why not TOML: every key is a flag of `acp-relay serve` and every value is a
//! flag's text, so a TOML parser (and its dependencies) would buy nothing but
//! weight on a Pi. Keys map to flags generically: `key` is the flag's name
//! without `--`, a repeatable flag repeats its key, a switch takes
//! `true`/`false`. The flags are read from the command's own usage line, so a
//! flag someone adds is a key with no code here. Unknown keys are an error
//! naming the line.

use std::fmt;
use std::path::{Path, PathBuf};

/// Largest config file read.
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub line: usize,
    pub key: String,
    pub value: String,
}

/// A flag as its usage line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagSpec {
    /// Without `--`.
    pub name: String,
    pub takes_value: bool,
    pub repeatable: bool,
}

#[derive(Debug)]
pub enum ConfigError {
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    TooLarge {
        path: PathBuf,
    },
    /// A line that is not `key = value`, a comment or blank.
    Syntax {
        path: PathBuf,
        line: usize,
    },
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
    },
    /// A switch whose value is not true/false.
    NotBool {
        path: PathBuf,
        line: usize,
        key: String,
    },
    /// A flag that takes one value set twice.
    Twice {
        path: PathBuf,
        line: usize,
        key: String,
        first: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Io { path, source } => {
                write!(f, "config file {}: {source}", path.display())
            }
            ConfigError::TooLarge { path } => write!(
                f,
                "config file {} is larger than {MAX_CONFIG_BYTES} bytes; is --config the right file?",
                path.display()
            ),
            ConfigError::Syntax { path, line } => write!(
                f,
                "{}:{line}: not a `key = value` line (comments start with #)",
                path.display()
            ),
            ConfigError::UnknownKey { path, line, key } => write!(
                f,
                "{}:{line}: unknown key '{key}'; keys are the flags of `acp-relay serve --help` without --",
                path.display()
            ),
            ConfigError::NotBool { path, line, key } => write!(
                f,
                "{}:{line}: '{key}' is a switch; give it true or false",
                path.display()
            ),
            ConfigError::Twice {
                path,
                line,
                key,
                first,
            } => write!(
                f,
                "{}:{line}: '{key}' is already set on line {first} and takes one value; keep one of the two",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// `$XDG_CONFIG_HOME/acp-relay/config`, else `~/.config/acp-relay/config`.
pub fn default_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("/etc"));
    base.join("acp-relay").join("config")
}

/// Parses the text of a config file.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Setting>, ConfigError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            return Err(ConfigError::Syntax {
                path: path.into(),
                line,
            });
        };
        let key = k.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ConfigError::Syntax {
                path: path.into(),
                line,
            });
        }
        let v = v.trim();
        let value = match (v.chars().next(), v.chars().last()) {
            (Some(a @ ('"' | '\'')), Some(b)) if a == b && v.len() >= 2 => &v[1..v.len() - 1],
            _ => v,
        };
        out.push(Setting {
            line,
            key: key.trim_start_matches("--").to_owned(),
            value: value.to_owned(),
        });
    }
    Ok(out)
}

/// Reads and parses a file; `Ok(None)` when it does not exist.
pub fn read(path: &Path) -> Result<Option<Vec<Setting>>, ConfigError> {
    use std::io::Read as _;
    let io = |source| ConfigError::Io {
        path: path.into(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io(source)),
    };
    // Bounded whatever the file is (a growing file, a pipe, a device).
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge { path: path.into() });
    }
    parse(path, &text).map(Some)
}

/// The flags in an argh usage line: `[--name]` is a switch, `[--name <x>]`
/// takes a value, `<x...>` repeats.
pub fn flag_specs(usage: &str) -> Vec<FlagSpec> {
    let line = usage.lines().next().unwrap_or("");
    let toks: Vec<&str> = line.split_whitespace().collect();
    let mut out: Vec<FlagSpec> = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        let t = t.trim_start_matches('[');
        let Some(name) = t.strip_prefix("--") else {
            continue;
        };
        let bare = name.trim_end_matches(']');
        let next = toks.get(i + 1).copied().unwrap_or("");
        let takes_value = !name.ends_with(']') && next.starts_with('<');
        let repeatable = takes_value && next.trim_end_matches(']').ends_with("...>");
        if bare == "help" || out.iter().any(|f| f.name == bare) {
            continue;
        }
        out.push(FlagSpec {
            name: bare.to_owned(),
            takes_value,
            repeatable,
        });
    }
    out
}

/// The flags a command line sets (`--name`, by name without `--`).
pub fn flags_in(args: &[String]) -> Vec<String> {
    args.iter()
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_owned())
        .collect()
}

/// The config's entries as flags, then `cli`: a flag given on the command
/// line replaces the config's value(s) for it. Keys in `refused` (such as
/// `config` itself) are unknown.
pub fn merge(
    path: &Path,
    entries: &[Setting],
    specs: &[FlagSpec],
    cli: &[String],
    refused: &[&str],
) -> Result<Vec<String>, ConfigError> {
    let on_cli = flags_in(cli);
    let mut out = Vec::new();
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for e in entries {
        let spec = specs
            .iter()
            .find(|s| s.name == e.key)
            .filter(|_| !refused.contains(&e.key.as_str()))
            .ok_or_else(|| ConfigError::UnknownKey {
                path: path.into(),
                line: e.line,
                key: e.key.clone(),
            })?;
        if !spec.repeatable
            && let Some((_, first)) = seen.iter().find(|(k, _)| *k == e.key)
        {
            return Err(ConfigError::Twice {
                path: path.into(),
                line: e.line,
                key: e.key.clone(),
                first: *first,
            });
        }
        seen.push((&e.key, e.line));
        if on_cli.contains(&e.key) {
            continue;
        }
        if spec.takes_value {
            out.push(format!("--{}", e.key));
            out.push(e.value.clone());
        } else {
            match e.value.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" | "" => out.push(format!("--{}", e.key)),
                "false" | "no" | "off" | "0" => {}
                _ => {
                    return Err(ConfigError::NotBool {
                        path: path.into(),
                        line: e.line,
                        key: e.key.clone(),
                    });
                }
            }
        }
    }
    out.extend(cli.iter().cloned());
    Ok(out)
}

/// The value a config gives `key` (last one wins), for commands such as
/// `status` that only need a few of `serve`'s keys.
pub fn value<'a>(entries: &'a [Setting], key: &str) -> Option<&'a str> {
    entries
        .iter()
        .rev()
        .find(|e| e.key == key)
        .map(|e| e.value.as_str())
}

/// The `serve` keys SIGHUP re-applies; a change to any other key (listen,
/// data-dir, agent, ...) waits for a restart.
pub const RELOADABLE: &[&str] = &[
    "notify",
    "notify-format",
    "notify-cmd",
    "notify-delay",
    "public-url",
    "log",
    "config",
];

/// What SIGHUP re-applies to a running relay.
#[derive(Debug, Clone)]
pub struct Reloaded {
    pub notify: crate::notify::deliver::NotifyConfig,
    pub log: log::LevelFilter,
    /// Keys whose value changed but that only a restart applies.
    pub restart: Vec<String>,
}

/// The keys (flag names without `--`) whose values differ between two
/// merged `serve` command lines, `ignored` aside, sorted. `specs` says which
/// flags take a value.
pub fn changed_keys(
    specs: &[FlagSpec],
    before: &[String],
    after: &[String],
    ignored: &[&str],
) -> Vec<String> {
    use std::collections::BTreeMap;
    let group = |args: &[String]| {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(flag) = a.strip_prefix("--") else {
                continue;
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (flag, None),
            };
            let takes_value = specs.iter().any(|s| s.name == name && s.takes_value);
            let value = match inline {
                Some(v) => v,
                None if takes_value => it.next().cloned().unwrap_or_default(),
                None => String::new(),
            };
            m.entry(name.to_owned()).or_default().push(value);
        }
        m
    };
    let (b, a) = (group(before), group(after));
    let mut keys: Vec<String> = b
        .keys()
        .chain(a.keys())
        .filter(|k| !ignored.contains(&k.as_str()) && b.get(*k) != a.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Re-reads the config file and re-applies the command line over it; runs
/// off the executor thread (it reads a file).
#[derive(Clone)]
pub struct Reload(pub std::sync::Arc<dyn Fn() -> Result<Reloaded, String> + Send + Sync>);

impl fmt::Debug for Reload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reload(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USAGE: &str = "Usage: acp-relay serve [--listen <listen>] [--auto-approve] [--allow-origin <allow-origin...>] [--log <log>] [--config <config>]\n\nRun it.";

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn changed_keys_name_what_a_reload_cannot_apply() {
        let specs = flag_specs(USAGE);
        let before = args(&[
            "--listen",
            "127.0.0.1:1",
            "--log",
            "info",
            "--allow-origin",
            "a",
        ]);
        let same = args(&[
            "--allow-origin",
            "a",
            "--listen=127.0.0.1:1",
            "--log",
            "debug",
        ]);
        assert!(changed_keys(&specs, &before, &same, RELOADABLE).is_empty());
        let after = args(&[
            "--listen",
            "127.0.0.1:2",
            "--auto-approve",
            "--allow-origin",
            "a",
            "--allow-origin",
            "b",
        ]);
        assert_eq!(
            changed_keys(&specs, &before, &after, RELOADABLE),
            ["allow-origin", "auto-approve", "listen"]
        );
    }

    #[test]
    fn specs_come_from_the_usage_line() {
        let s = flag_specs(USAGE);
        let names: Vec<_> = s
            .iter()
            .map(|f| (f.name.as_str(), f.takes_value, f.repeatable))
            .collect();
        assert_eq!(
            names,
            [
                ("listen", true, false),
                ("auto-approve", false, false),
                ("allow-origin", true, true),
                ("log", true, false),
                ("config", true, false),
            ]
        );
    }

    #[test]
    fn merge_maps_keys_and_flags_win() {
        let p = Path::new("c");
        let text = "# relay\nlisten = 0.0.0.0:7447\n\nauto-approve = true\nallow-origin = https://a\nallow-origin = \"https://b\"\nlog = debug\n";
        let e = parse(p, text).unwrap();
        assert_eq!(e[0].line, 2);
        let specs = flag_specs(USAGE);
        let out = merge(p, &e, &specs, &args(&["--log", "warn"]), &["config"]).unwrap();
        assert_eq!(
            out,
            args(&[
                "--listen",
                "0.0.0.0:7447",
                "--auto-approve",
                "--allow-origin",
                "https://a",
                "--allow-origin",
                "https://b",
                "--log",
                "warn"
            ])
        );
    }

    #[test]
    fn random_text_never_panics() {
        let specs = flag_specs(USAGE);
        let alphabet = b"= #\"'\n-abz09\t\xc3\xa9";
        let mut x: u64 = 7;
        for _ in 0..5_000 {
            let text: Vec<u8> = (0..(x % 64) as usize)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    alphabet[(x >> 33) as usize % alphabet.len()]
                })
                .collect();
            let text = String::from_utf8_lossy(&text);
            if let Ok(e) = parse(Path::new("c"), &text) {
                let _ = merge(Path::new("c"), &e, &specs, &[], &["config"]);
            }
        }
    }

    #[test]
    fn errors_name_the_line() {
        let p = Path::new("/etc/acp-relay/config");
        let specs = flag_specs(USAGE);
        let e = parse(p, "listen = x\n\nbogus = 1\n").unwrap();
        let err = merge(p, &e, &specs, &[], &["config"]).unwrap_err();
        assert_eq!(
            err.to_string().split(':').take(2).collect::<Vec<_>>(),
            ["/etc/acp-relay/config", "3"]
        );
        assert!(err.to_string().contains("'bogus'"));
        let e = parse(p, "config = /x\n").unwrap();
        assert!(matches!(
            merge(p, &e, &specs, &[], &["config"]),
            Err(ConfigError::UnknownKey { line: 1, .. })
        ));
        let e = parse(p, "auto-approve = maybe\n").unwrap();
        assert!(matches!(
            merge(p, &e, &specs, &[], &[]),
            Err(ConfigError::NotBool { line: 1, .. })
        ));
        let e = parse(p, "log = a\nlog = b\n").unwrap();
        assert!(matches!(
            merge(p, &e, &specs, &[], &[]),
            Err(ConfigError::Twice {
                line: 2,
                first: 1,
                ..
            })
        ));
        assert!(matches!(
            parse(p, "ok = 1\njust words\n"),
            Err(ConfigError::Syntax { line: 2, .. })
        ));
    }
}
