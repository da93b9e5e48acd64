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

/// Each `--workspace` value as (name, directory), in order. Names are unique.
pub fn parse_workspaces(specs: &[String], max: usize) -> Result<Vec<(String, PathBuf)>, String> {
    if specs.len() > max {
        return Err(format!(
            "{} --workspace flags; a relay serves at most {max} projects",
            specs.len()
        ));
    }
    let mut out: Vec<(String, PathBuf)> = Vec::with_capacity(specs.len());
    for spec in specs {
        let (name, dir) = match split_named(spec) {
            Some((name, dir)) => (name.to_owned(), dir),
            None => (name_from(spec, "workspace"), spec.as_str()),
        };
        if dir.trim().is_empty() {
            return Err(format!(
                "--workspace '{spec}' names no directory; use NAME=DIR, e.g. api=~/code/api"
            ));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!(
                "two projects are named '{name}'; name each one with --workspace NAME=DIR"
            ));
        }
        out.push((name, expand_home(dir)));
    }
    Ok(out)
}

/// Each `--agent` value as (name, command line), in order. Names are unique.
pub fn parse_agents(specs: &[String], max: usize) -> Result<Vec<(String, String)>, String> {
    if specs.len() > max {
        return Err(format!(
            "{} --agent flags; a relay runs at most {max} agents",
            specs.len()
        ));
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(specs.len());
    for spec in specs {
        let (name, cmd) = match split_named(spec) {
            Some((name, cmd)) => (name.to_owned(), cmd.trim()),
            None => {
                let program = spec.split_whitespace().next().unwrap_or("");
                (name_from(program, "agent"), spec.trim())
            }
        };
        if cmd.is_empty() {
            return Err(format!(
                "--agent '{spec}' has no command; give one such as gemini='gemini --acp'"
            ));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!(
                "two agents are named '{name}'; name each one with --agent NAME='CMD ARGS'"
            ));
        }
        out.push((name, cmd.to_owned()));
    }
    Ok(out)
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
