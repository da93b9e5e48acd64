//! The relay's projects and agents as the command line names them:
//! `--workspace NAME=DIR` (or a bare `DIR`, named after its last component)
//! and `--agent NAME='CMD ARGS'` (or a bare command line, named after its
//! program). A command line may start with environment assignments
//! (`KEY=value cmd`); a capitalised `VAR=` is such an assignment, never an
//! agent's name. Pure parsing and checks; the directories are opened by `serve`.

use std::path::PathBuf;

/// Whether `s` can name a project or an agent: 1–32 of `[A-Za-z0-9._-]`,
/// not starting with `.` or `-`.
pub fn valid_name(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && !s.starts_with(['.', '-'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `NAME=REST` when what comes before the first `=` is a name `is_name` accepts.
fn split_named(spec: &str, is_name: fn(&str) -> bool) -> Option<(&str, &str)> {
    let (name, rest) = spec.split_once('=')?;
    is_name(name).then_some((name, rest))
}

/// Whether `s` reads as an environment variable's name: `[A-Z_][A-Z0-9_]*`.
/// `ANTHROPIC_API_KEY=x cmd` is an assignment before a command, not an
/// agent named `ANTHROPIC_API_KEY`.
pub fn env_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `s` can name an agent: a [`valid_name`] that is not an
/// environment variable's ([`env_name`]).
fn agent_name(s: &str) -> bool {
    valid_name(s) && !env_name(s)
}

/// The words of a shell command line, quotes (`'…'`, `"…"`) and backslashes
/// taken off as `sh` would. Expansions are left as written.
pub fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                let w = word.get_or_insert_with(String::new);
                match chars.next() {
                    Some(n @ ('"' | '\\' | '$' | '`')) => w.push(n),
                    Some(n) => {
                        w.push('\\');
                        w.push(n);
                    }
                    None => w.push('\\'),
                }
            }
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, '\\') => {
                let w = word.get_or_insert_with(String::new);
                if let Some(n) = chars.next() {
                    w.push(n);
                }
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// Whether a shell word is an environment assignment (`NAME=value`, any
/// identifier: that is how `sh` reads it).
fn assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(n, _)| {
        n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// Whether a command line starts with an environment assignment.
pub fn starts_with_assignment(line: &str) -> bool {
    shell_words(line).first().is_some_and(|w| assignment(w))
}

/// The program a command line runs: the first word after its environment
/// assignments, and after `env` with its options and assignments. `None`
/// when there is none.
pub fn program_word(line: &str) -> Option<String> {
    let mut words = shell_words(line).into_iter().skip_while(|w| assignment(w));
    let mut word = words.next()?;
    if word == "env" || word.ends_with("/env") {
        loop {
            word = words.next()?;
            match word.as_str() {
                // Options of env(1) that take the next word.
                "-u" | "--unset" | "-C" | "--chdir" => {
                    words.next()?;
                }
                "--" => {
                    word = words.find(|w| !assignment(w))?;
                    break;
                }
                w if w.starts_with('-') || assignment(w) => {}
                _ => break,
            }
        }
    }
    Some(word)
}

/// `~/x` → `$HOME/x` (a config file line is not expanded by a shell).
fn expand_home(dir: &str) -> PathBuf {
    match (dir.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ if dir == "~" => std::env::var_os("HOME").map_or_else(|| dir.into(), PathBuf::from),
        _ => PathBuf::from(dir),
    }
}

/// A name made from a directory or program: its last component, cut down
/// to the characters a name may hold.
fn name_from(s: &str, fallback: &str) -> String {
    let last = s.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let mut n: String = last
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(32)
        .collect();
    while n.starts_with(['.', '-']) {
        n.remove(0);
    }
    if n.is_empty() { fallback.to_owned() } else { n }
}

/// What one repeatable flag names: `flag` for messages, `noun` its things.
struct Named {
    flag: &'static str,
    noun: &'static str,
    fallback: &'static str,
    example: &'static str,
    /// Which text before a `=` names a thing.
    is_name: fn(&str) -> bool,
    /// Whether messages may quote the value (an agent's may hold a key).
    quote: bool,
}

/// Splits each value into (name, rest): `NAME=REST`, else a name made from
/// the part `base` picks. At most `max` values, names unique, rest not empty.
fn parse_named<'a>(
    specs: &'a [String],
    max: usize,
    what: &Named,
    base: impl Fn(&str) -> String,
) -> Result<Vec<(String, &'a str)>, String> {
    let Named {
        flag,
        noun,
        fallback,
        example,
        is_name,
        quote,
    } = what;
    if specs.len() > max {
        return Err(format!(
            "{} {flag} flags; a relay has at most {max} {noun}s",
            specs.len()
        ));
    }
    let mut out: Vec<(String, &str)> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let (name, rest) = match split_named(spec, *is_name) {
            Some((name, rest)) => (name.to_owned(), rest.trim()),
            None => (name_from(&base(spec), fallback), spec.trim()),
        };
        if rest.is_empty() {
            let which = if *quote {
                format!("'{spec}'")
            } else {
                format!("value {} ({name})", i + 1)
            };
            return Err(format!(
                "{flag} {which} names no {noun}; give one such as {example}"
            ));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!(
                "two {noun}s are named '{name}'; name each one, such as {flag} {example}"
            ));
        }
        out.push((name, rest));
    }
    Ok(out)
}

/// Each `--workspace` value as (name, directory), in order. Names are unique.
pub fn parse_workspaces(specs: &[String], max: usize) -> Result<Vec<(String, PathBuf)>, String> {
    let what = Named {
        flag: "--workspace",
        noun: "project",
        fallback: "workspace",
        example: "api=~/code/api",
        is_name: valid_name,
        quote: true,
    };
    let named = parse_named(specs, max, &what, str::to_owned)?;
    Ok(named
        .into_iter()
        .map(|(name, dir)| (name, expand_home(dir)))
        .collect())
}

/// Each `--agent` value as (name, command line), in order. Names are
/// unique. `NAME=CMD` names the agent when `NAME` is a plain name that is
/// not an environment variable's ([`env_name`]); else the whole value is the
/// command line, named after its program ([`program_word`]): leading
/// `VAR=value` words are its environment. Messages never quote a value: it
/// may hold a key.
pub fn parse_agents(specs: &[String], max: usize) -> Result<Vec<(String, String)>, String> {
    let what = Named {
        flag: "--agent",
        noun: "agent",
        fallback: "agent",
        example: "gemini='gemini --acp'",
        is_name: agent_name,
        quote: false,
    };
    let named = parse_named(specs, max, &what, |s| program_word(s).unwrap_or_default())?;
    named
        .into_iter()
        .map(|(name, cmd)| match program_word(cmd) {
            Some(_) => Ok((name, cmd.to_owned())),
            None => Err(format!(
                "--agent {name} names no program after its environment assignments; give one such as ANTHROPIC_API_KEY=... claude-code-acp"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn workspaces_named_and_bare() {
        let got = parse_workspaces(&v(&["api=/code/api", "/code/web/"]), 8).unwrap();
        assert_eq!(
            got,
            [
                ("api".to_owned(), PathBuf::from("/code/api")),
                ("web".to_owned(), PathBuf::from("/code/web/"))
            ]
        );
        // A directory whose name holds '=' after a slash is a bare directory.
        let got = parse_workspaces(&v(&["/x/a=b"]), 8).unwrap();
        assert_eq!(got[0].1, PathBuf::from("/x/a=b"));
        assert!(parse_workspaces(&v(&["a=/x", "a=/y"]), 8).is_err());
        assert!(parse_workspaces(&v(&["/x/a", "/y/a"]), 8).is_err());
        assert!(parse_workspaces(&v(&["a="]), 8).is_err());
        assert!(parse_workspaces(&v(&["/a", "/b"]), 1).is_err());
    }

    #[test]
    fn agents_named_and_bare() {
        let got = parse_agents(
            &v(&[
                "claude=npx -y @agentclientprotocol/claude-agent-acp",
                "gemini --acp --model=x",
            ]),
            8,
        )
        .unwrap();
        assert_eq!(got[0].0, "claude");
        assert_eq!(got[0].1, "npx -y @agentclientprotocol/claude-agent-acp");
        assert_eq!(got[1], ("gemini".into(), "gemini --acp --model=x".into()));
        assert!(parse_agents(&v(&["a=", "b=x"]), 8).is_err());
        assert!(parse_agents(&v(&["gemini", "gemini --acp"]), 8).is_err());
        assert_eq!(
            parse_agents(&v(&["/usr/bin/goose acp"]), 8).unwrap()[0].0,
            "goose"
        );
    }

    #[test]
    fn environment_assignments_are_not_names() {
        // An unnamed agent with its environment: named after its program.
        let got = parse_agents(&v(&["ANTHROPIC_API_KEY=sk-SECRET123 claude-code-acp"]), 8).unwrap();
        assert_eq!(
            got[0],
            (
                "claude-code-acp".into(),
                "ANTHROPIC_API_KEY=sk-SECRET123 claude-code-acp".into()
            )
        );
        // A named agent whose command sets its environment.
        let got = parse_agents(&v(&["claude=ANTHROPIC_API_KEY=sk-X env -u HOME FOO='a b' /opt/bin/claude-acp --key sk-Y"]), 8).unwrap();
        assert_eq!(got[0].0, "claude");
        assert_eq!(
            program_word(&got[0].1).as_deref(),
            Some("/opt/bin/claude-acp")
        );
        // No program: refused, and the message does not quote the value.
        let e = parse_agents(&v(&["KEY=sk-SECRET123"]), 8).unwrap_err();
        assert!(!e.contains("SECRET"), "{e}");
        let e = parse_agents(&v(&["claude=KEY=sk-SECRET123"]), 8).unwrap_err();
        assert!(e.contains("claude") && !e.contains("SECRET"), "{e}");
        let e = parse_agents(&v(&["x="]), 8).unwrap_err();
        assert!(e.contains("value 1"), "{e}");
        assert!(
            env_name("OPENAI_API_KEY")
                && env_name("_X1")
                && !env_name("claude")
                && !env_name("Gpt")
        );
    }

    #[test]
    fn shell_words_and_programs() {
        assert_eq!(
            shell_words(r#"A="x y" B='p q' c\ d "e\"f" 'g\h'"#),
            ["A=x y", "B=p q", "c d", "e\"f", "g\\h"]
        );
        assert_eq!(shell_words(" a  '' b "), ["a", "", "b"]);
        assert_eq!(
            program_word("FOO=1 BAR='2 3' npx -y x").as_deref(),
            Some("npx")
        );
        assert_eq!(
            program_word("env -i K=v -- L=w goose acp").as_deref(),
            Some("goose")
        );
        assert_eq!(
            program_word("/usr/bin/env K=v goose").as_deref(),
            Some("goose")
        );
        assert_eq!(program_word("K=v"), None);
        assert_eq!(program_word("env K=v"), None);
        assert!(starts_with_assignment("K=v cmd") && !starts_with_assignment("cmd K=v"));
    }

    #[test]
    fn names() {
        assert!(valid_name("api") && valid_name("my-app_2.0"));
        assert!(!valid_name("") && !valid_name("-x") && !valid_name("a b") && !valid_name("a/b"));
        assert_eq!(name_from("/", "workspace"), "workspace");
        assert_eq!(name_from("/home/me/.dots", "w"), "dots");
    }
}
