//! The relay's projects and agents as the command line names them:
//! `--workspace NAME=DIR` (or a bare `DIR`, named after its last component)
//! and `--agent NAME='CMD ARGS'` (or a bare command line, named after its
//! program). Pure parsing and checks; the directories are opened by `serve`.

use std::path::PathBuf;

/// Whether `s` can name a project or an agent: 1–32 of `[A-Za-z0-9._-]`,
/// not starting with `.` or `-`.
pub fn valid_name(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && !s.starts_with(['.', '-'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `NAME=REST` when what comes before the first `=` is a valid name.
fn split_named(spec: &str) -> Option<(&str, &str)> {
    let (name, rest) = spec.split_once('=')?;
    valid_name(name).then_some((name, rest))
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
}

/// Splits each value into (name, rest): `NAME=REST`, else a name made from
/// the part `base` picks. At most `max` values, names unique, rest not empty.
fn parse_named<'a>(
    specs: &'a [String],
    max: usize,
    what: &Named,
    base: impl Fn(&str) -> &str,
) -> Result<Vec<(String, &'a str)>, String> {
    let Named {
        flag,
        noun,
        fallback,
        example,
    } = what;
    if specs.len() > max {
        return Err(format!(
            "{} {flag} flags; a relay has at most {max} {noun}s",
            specs.len()
        ));
    }
    let mut out: Vec<(String, &str)> = Vec::with_capacity(specs.len());
    for spec in specs {
        let (name, rest) = match split_named(spec) {
            Some((name, rest)) => (name.to_owned(), rest.trim()),
            None => (name_from(base(spec), fallback), spec.trim()),
        };
        if rest.is_empty() {
            return Err(format!(
                "{flag} '{spec}' names no {noun}; give one such as {example}"
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
    };
    let named = parse_named(specs, max, &what, |s| s)?;
    Ok(named
        .into_iter()
        .map(|(name, dir)| (name, expand_home(dir)))
        .collect())
}

/// Each `--agent` value as (name, command line), in order. Names are unique.
pub fn parse_agents(specs: &[String], max: usize) -> Result<Vec<(String, String)>, String> {
    let what = Named {
        flag: "--agent",
        noun: "agent",
        fallback: "agent",
        example: "gemini='gemini --acp'",
    };
    let named = parse_named(specs, max, &what, |s| {
        s.split_whitespace().next().unwrap_or("")
    })?;
    Ok(named
        .into_iter()
        .map(|(name, cmd)| (name, cmd.to_owned()))
        .collect())
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
    fn names() {
        assert!(valid_name("api") && valid_name("my-app_2.0"));
        assert!(!valid_name("") && !valid_name("-x") && !valid_name("a b") && !valid_name("a/b"));
        assert_eq!(name_from("/", "workspace"), "workspace");
        assert_eq!(name_from("/home/me/.dots", "w"), "dots");
    }
}
