//! The relay's projects and agents as the command line names them:
//! `--workspace NAME=DIR` (or a bare `DIR`, named after its last component)
//! and `--agent NAME='CMD ARGS'` (or a bare command line, named after its
//! program). A command line may start with environment assignments
//! (`KEY=value cmd`); a capitalised `VAR=` (or a lowercase proxy variable's,
//! `http_proxy=`) is such an assignment, never an agent's name. Pure parsing
//! and checks, with the shell-word reading they need; the directories are
//! opened by `serve`.

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

/// Variables conventionally named in lowercase: `http_proxy=… cmd` sets
/// one, it does not name an agent `http_proxy`.
const LOWERCASE_ENV: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "no_proxy",
    "all_proxy",
];

/// Whether `s` reads as an environment variable's name: `[A-Z_][A-Z0-9_]*`,
/// or one of [`LOWERCASE_ENV`] in any case. `ANTHROPIC_API_KEY=x cmd` is an
/// assignment before a command, not an agent named `ANTHROPIC_API_KEY`.
fn env_name(s: &str) -> bool {
    let upper = s.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    upper || LOWERCASE_ENV.iter().any(|v| v.eq_ignore_ascii_case(s))
}

/// Whether `s` can name an agent: a [`valid_name`] that is not an
/// environment variable's ([`env_name`]).
fn agent_name(s: &str) -> bool {
    valid_name(s) && !env_name(s)
}

/// One word of a shell command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// As `sh` reads it: quotes (`'…'`, `"…"`) and backslashes taken off;
    /// expansions (`$x`, `${…}`, `$(…)`, `` `…` ``, `~`) left as written.
    pub text: String,
    /// Where it lies in the line, as written.
    pub span: std::ops::Range<usize>,
}

/// The words of a shell command line ([`Word`]). A `$(…)`, `${…}` or
/// `` `…` `` is part of the word it is in, spaces and all. Operators
/// (`;`, `|`, `>` …) are not told apart from other characters.
pub fn shell_word_spans(line: &str) -> Vec<Word> {
    let bytes = line.as_bytes();
    let mut words = Vec::new();
    let mut word: Option<(String, usize)> = None;
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while let Some(c) = line[i..].chars().next() {
        let next = i + c.len_utf8();
        match (quote, c) {
            (Some(q), c) if c as u32 == u32::from(q) => quote = None,
            (Some(b'"') | None, '$') if matches!(bytes.get(next), Some(b'(' | b'{')) => {
                let end = expansion_end(line, next);
                word_at(&mut word, i).push_str(&line[i..end]);
                i = end;
                continue;
            }
            (Some(b'"') | None, '`') => {
                let end = backquote_end(line, next);
                word_at(&mut word, i).push_str(&line[i..end]);
                i = end;
                continue;
            }
            (Some(b'"'), '\\') => {
                let w = word_at(&mut word, i);
                match line[next..].chars().next() {
                    Some(n @ ('"' | '\\' | '$' | '`')) => {
                        w.push(n);
                        i = next + 1;
                        continue;
                    }
                    _ => w.push('\\'),
                }
            }
            (Some(_), c) => word_at(&mut word, i).push(c),
            (None, '\'' | '"') => {
                quote = Some(c as u8);
                word_at(&mut word, i);
            }
            (None, '\\') => {
                let w = word_at(&mut word, i);
                if let Some(n) = line[next..].chars().next() {
                    w.push(n);
                    i = next + n.len_utf8();
                    continue;
                }
            }
            (None, c) if c.is_whitespace() => {
                if let Some((text, start)) = word.take() {
                    words.push(Word {
                        text,
                        span: start..i,
                    });
                }
            }
            (None, c) => word_at(&mut word, i).push(c),
        }
        i = next;
    }
    if let Some((text, start)) = word {
        words.push(Word {
            text,
            span: start..line.len(),
        });
    }
    words
}

/// The word being read, started at `at` if none is.
fn word_at(word: &mut Option<(String, usize)>, at: usize) -> &mut String {
    &mut word.get_or_insert_with(|| (String::new(), at)).0
}

/// Where the `$(…)` or `${…}` whose bracket is at `open` ends (past its
/// closing bracket, or the line's end): brackets nest, and quotes and
/// backslashes inside are skipped over.
fn expansion_end(line: &str, open: usize) -> usize {
    let bytes = line.as_bytes();
    let (up, down) = if bytes[open] == b'(' {
        (b'(', b')')
    } else {
        (b'{', b'}')
    };
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut i = open;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(b'"') if b == b'\\' => i += 1,
            Some(_) => {}
            None if b == b'\\' => i += 1,
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if b == up => depth += 1,
            None if b == down => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            None => {}
        }
        i += 1;
    }
    line.len()
}

/// Where the `` `…` `` whose first character is at `from` ends (past its
/// closing backquote, or the line's end).
fn backquote_end(line: &str, from: usize) -> usize {
    let bytes = line.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'`' => return i + 1,
            _ => {}
        }
        i += 1;
    }
    line.len()
}

/// The words of a shell command line as `sh` reads them ([`shell_word_spans`]).
pub fn shell_words(line: &str) -> Vec<String> {
    shell_word_spans(line).into_iter().map(|w| w.text).collect()
}

/// Whether a word (as a program sees it) is an environment assignment
/// (`NAME=value`, any identifier: that is how `env` reads it).
fn assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(n, _)| {
        n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// The line's leading environment assignments, then its other words. An
/// assignment is judged as written, as `sh` does: `'K=v' cmd` runs `K=v`.
fn split_assignments(line: &str) -> (Vec<Word>, Vec<Word>) {
    let mut words = shell_word_spans(line);
    let n = words
        .iter()
        .take_while(|w| assignment(&line[w.span.clone()]))
        .count();
    let rest = words.split_off(n);
    (words, rest)
}

/// Where the program word of a command line starts: its first word that is
/// not an environment assignment. `None` when there is none.
pub fn program_start(line: &str) -> Option<usize> {
    split_assignments(line).1.first().map(|w| w.span.start)
}

/// Whether a command line starts with an environment assignment.
pub fn starts_with_assignment(line: &str) -> bool {
    !split_assignments(line).0.is_empty()
}

/// The program a command line runs: the first word after its environment
/// assignments, and after `env` with its options and assignments (the
/// first word of `env -S`'s string). `None` when there is none.
pub fn program_word(line: &str) -> Option<String> {
    let mut words: std::collections::VecDeque<String> = split_assignments(line)
        .1
        .into_iter()
        .map(|w| w.text)
        .collect();
    let word = words.pop_front()?;
    if word == "env" || word.ends_with("/env") {
        after_env(words)
    } else {
        Some(word)
    }
}

/// The program `env` runs given these arguments: past its options (those
/// that take a value: `-u`/`--unset`, `-C`/`--chdir`, `-S`/`--split-string`,
/// whose string is read as more arguments) and its assignments.
fn after_env(mut words: std::collections::VecDeque<String>) -> Option<String> {
    // Long options may be abbreviated, as getopt allows.
    let long = |opt: &str, name: &str| !opt.is_empty() && name.starts_with(opt);
    // Each -S replaces one word by shorter ones, so this ends.
    loop {
        let word = words.pop_front()?;
        let split = if word == "--" {
            return words.into_iter().find(|w| !assignment(w));
        } else if let Some(opt) = word.strip_prefix("--") {
            let (opt, value) = match opt.split_once('=') {
                Some((o, v)) => (o, Some(v.to_owned())),
                None => (opt, None),
            };
            if long(opt, "split-string") {
                Some(value.or_else(|| words.pop_front())?)
            } else {
                if (long(opt, "unset") || long(opt, "chdir")) && value.is_none() {
                    words.pop_front()?;
                }
                None
            }
        } else if let Some(cluster) = word.strip_prefix('-') {
            let mut split = None;
            for (i, c) in cluster.char_indices() {
                if matches!(c, 'u' | 'C' | 'S') {
                    let rest = &cluster[i + 1..];
                    let value = if rest.is_empty() {
                        words.pop_front()?
                    } else {
                        rest.to_owned()
                    };
                    split = (c == 'S').then_some(value);
                    break;
                }
            }
            split
        } else if assignment(&word) {
            None
        } else {
            return Some(word);
        };
        if let Some(s) = split {
            for w in shell_words(&s).into_iter().rev() {
                words.push_front(w);
            }
        }
    }
}

/// The name of program `word` as it may be shown: its last component, when
/// every character of it is in `[A-Za-z0-9._+/-]`; else `None` (a word such
/// as `http://user:pass@host` may hold a key).
pub fn shown_program(word: &str) -> Option<&str> {
    let plain = word
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b'+'));
    let base = word.rsplit('/').next().unwrap_or(word);
    (plain && !base.is_empty()).then_some(base)
}

/// Characters whose presence in the program word of a named `--agent`
/// suggests the "name" was a variable and the "program" its value.
const NOT_IN_PROGRAM: &[char] = &[':', '@', '='];

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
/// `VAR=value` words are its environment. A named value whose program word
/// holds `:`, `@` or `=` is refused: its "name" is more likely a variable
/// (`proxy=http://u:p@h cmd`). Messages never quote a value: it may hold a
/// key.
pub fn parse_agents(specs: &[String], max: usize) -> Result<Vec<(String, String)>, String> {
    let what = Named {
        flag: "--agent",
        noun: "agent",
        fallback: "agent",
        example: "gemini='gemini --acp'",
        is_name: agent_name,
        quote: false,
    };
    let named = parse_named(specs, max, &what, |s| {
        program_word(s)
            .as_deref()
            .and_then(shown_program)
            .unwrap_or_default()
            .to_owned()
    })?;
    named
        .into_iter()
        .zip(specs)
        .enumerate()
        .map(|(i, ((name, cmd), spec))| {
            let Some(program) = program_word(cmd) else {
                return Err(format!(
                    "--agent {name} names no program after its environment assignments; give one such as ANTHROPIC_API_KEY=... claude-code-acp"
                ));
            };
            if split_named(spec, agent_name).is_some() && program.contains(NOT_IN_PROGRAM) {
                return Err(format!(
                    "--agent value {n} reads as an agent named '{name}' whose program holds ':', '@' or '=' (not shown: it may hold a key). If '{name}' is a variable for the agent, name the agent first, in lowercase, such as --agent 'myagent={name}=VALUE cmd'; if it names the agent, start what follows with the program (quote a path that holds such characters differently, or put the program on PATH)",
                    n = i + 1
                ));
            }
            Ok((name, cmd.to_owned()))
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
    fn lowercase_proxy_variables_are_assignments() {
        for var in [
            "http_proxy",
            "https_proxy",
            "ftp_proxy",
            "no_proxy",
            "all_proxy",
            "HTTPS_PROXY",
        ] {
            let spec = format!("{var}=http://u:pass@h:3128 claude-code-acp --x");
            let got = parse_agents(&v(&[&spec]), 8).unwrap();
            assert_eq!(got[0], ("claude-code-acp".into(), spec.clone()), "{var}");
        }
        // Named, with a proxy in its environment.
        let got = parse_agents(
            &v(&["claude=http_proxy=http://u:pass@h claude-code-acp"]),
            8,
        )
        .unwrap();
        assert_eq!(got[0].0, "claude");
        assert_eq!(program_word(&got[0].1).as_deref(), Some("claude-code-acp"));
    }

    #[test]
    fn a_name_whose_program_looks_like_a_value_is_refused_without_the_value() {
        for spec in [
            "proxy=http://u:pass@h:3128 claude-code-acp",
            "token=me@pass claude-code-acp",
            "key=a-b=pass cmd",
            "claude=/opt/node@20/bin/node pass.js",
        ] {
            let e = parse_agents(&v(&["gemini --acp", spec]), 8).unwrap_err();
            assert!(!e.contains("pass") && !e.contains("http"), "{e}");
            assert!(
                e.contains("value 2") && e.contains("name the agent first"),
                "{e}"
            );
        }
        // The advice works: the name first, then the variable.
        let got = parse_agents(
            &v(&["myagent=proxy=http://u:pass@h:3128 claude-code-acp"]),
            8,
        )
        .unwrap();
        assert_eq!(got[0].0, "myagent");
        assert_eq!(program_word(&got[0].1).as_deref(), Some("claude-code-acp"));
        // Unnamed, such a program is named "agent", never a filtered value.
        let got = parse_agents(&v(&["u:pass@h cmd"]), 8).unwrap();
        assert_eq!(got[0].0, "agent");
        assert_eq!(
            parse_agents(&v(&["/opt/node@20/bin/node x.js"]), 8).unwrap()[0].0,
            "agent"
        );
    }

    #[test]
    fn env_options_that_take_a_value_and_split_strings() {
        for (line, want) in [
            ("env -S 'goose acp --key sk-X'", Some("goose")),
            ("env -S'goose acp'", Some("goose")),
            ("env --split-string='K=v goose acp'", Some("goose")),
            ("env --split-string 'goose acp'", Some("goose")),
            ("env -iS 'goose acp'", Some("goose")),
            ("/usr/bin/env -S '-u HOME goose'", Some("goose")),
            (
                "env -u HOME -uPATH --unset=X --unset Y goose",
                Some("goose"),
            ),
            (
                "env -C /tmp -C/x --chdir=/y --chdir /z --ch /w goose",
                Some("goose"),
            ),
            ("env -i - K=v goose", Some("goose")),
            ("env -S", None),
            ("env -S 'K=v'", None),
        ] {
            assert_eq!(program_word(line).as_deref(), want, "{line}");
        }
        // A named agent running env -S: the name is kept, the key not shown.
        let got = parse_agents(&v(&["g=env -S 'goose --key sk-X'"]), 8).unwrap();
        assert_eq!(got[0].0, "g");
        let got = parse_agents(&v(&["env -S 'goose --key sk-X'"]), 8).unwrap();
        assert_eq!(got[0].0, "goose");
    }

    #[test]
    fn word_spans_and_expansions() {
        let line = r#"PATH=~/b:$PATH L=$(echo "a  b" $(x y)) M=${X:-a b} N=`a b` cmd 'x y'"#;
        let words = shell_word_spans(line);
        let raw: Vec<&str> = words.iter().map(|w| &line[w.span.clone()]).collect();
        assert_eq!(
            raw,
            [
                "PATH=~/b:$PATH",
                r#"L=$(echo "a  b" $(x y))"#,
                "M=${X:-a b}",
                "N=`a b`",
                "cmd",
                "'x y'"
            ]
        );
        assert_eq!(words[5].text, "x y");
        assert_eq!(program_start(line), line.find("cmd"));
        assert_eq!(program_word(line).as_deref(), Some("cmd"));
        // A quoted assignment is a command to sh, as written.
        assert_eq!(program_start("'K=v' cmd"), Some(0));
        assert!(!starts_with_assignment("\"K=v\" cmd"));
        assert_eq!(program_start("K=v"), None);
        // Unclosed: up to the end, never past it.
        assert_eq!(shell_words("K=$(a b"), ["K=$(a b"]);
        assert_eq!(shell_words("K=`a b"), ["K=`a b"]);
        assert_eq!(shell_words("'é b"), ["é b"]);
        assert_eq!(shell_words(r#""a\"b" c\ d"#), ["a\"b", "c d"]);
    }

    /// Any line, however it is quoted or cut: no panic, and the spans lie
    /// in order within the line, on character boundaries.
    #[test]
    fn any_line_reads_without_panicking() {
        const PIECES: &[&str] = &[
            " ", "a", "K=", "=", "'", "\"", "\\", "$", "(", ")", "{", "}", "`", "é", "–", "\n",
            "env", "-S", "--", "-u",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..5000 {
            let mut line = String::new();
            for _ in 0..(seed % 12) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                line.push_str(PIECES[(seed % PIECES.len() as u64) as usize]);
                line.push_str(if seed & 64 == 0 { "" } else { " " });
            }
            let mut end = 0;
            for w in shell_word_spans(&line) {
                assert!(w.span.start >= end && w.span.end <= line.len(), "{line:?}");
                assert!(line.is_char_boundary(w.span.start) && line.is_char_boundary(w.span.end));
                end = w.span.end;
            }
            let _ = program_word(&line);
            if let Some(at) = program_start(&line) {
                assert!(line.is_char_boundary(at), "{line:?}");
            }
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("api") && valid_name("my-app_2.0"));
        assert!(!valid_name("") && !valid_name("-x") && !valid_name("a b") && !valid_name("a/b"));
        assert_eq!(name_from("/", "workspace"), "workspace");
        assert_eq!(name_from("/home/me/.dots", "w"), "dots");
    }
}
