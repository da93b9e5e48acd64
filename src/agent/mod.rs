//! Agent processes: spawning an ACP agent in its own process group with the
//! workspace as its working directory and stdin, stdout and stderr piped,
//! the data dir's record of those groups ([`groups`]) and bounded line
//! reading ([`lines`]). Knows nothing of ACP; the router gives meaning to the
//! lines.

pub mod groups;
pub mod lines;

use futures_lite::io::BufReader;
use smol::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::fmt;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;

/// How to start an agent: a shell command line, run as `sh -c 'exec CMD'`;
/// leading environment assignments stay before the `exec`
/// (`KEY=~/v exec cmd`), where `sh` expands them as it would at a prompt and
/// exports them to `cmd`.
#[derive(Clone)]
pub enum AgentCommand {
    /// `--agent 'CMD ARGS'`.
    Shell(String),
    /// The built-in demo agent: this binary with these arguments.
    Program {
        program: std::path::PathBuf,
        args: Vec<String>,
    },
}

/// Longest program name shown.
const MAX_SHOWN_NAME: usize = 64;

/// The program's name only: its environment and arguments may hold a key,
/// so nothing shows them (the banner, logs, status).
impl fmt::Display for AgentCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (program, first) = match self {
            AgentCommand::Shell(s) => (crate::places::program_word(s).unwrap_or_default(), None),
            // This binary: only its file name is judged, not its directory.
            AgentCommand::Program { program, args } => (
                program
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("agent")
                    .to_owned(),
                args.first().filter(|a| !a.starts_with('-')),
            ),
        };
        // A word with other characters (`http://u:pass@h`) is not shown at
        // all: a filtered one could still spell the key.
        let name = match crate::places::shown_program(&program) {
            Some(base) if base.len() <= MAX_SHOWN_NAME => base,
            _ => "agent",
        };
        match first {
            // `acp-relay demo-agent`: a subcommand name, not a secret.
            Some(sub) if name == "acp-relay" => write!(f, "{name} {sub}"),
            _ => f.write_str(name),
        }
    }
}

/// As [`Display`](fmt::Display): never the command line.
impl fmt::Debug for AgentCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgentCommand({self})")
    }
}

/// A started agent: its child, stdin and line readers over stdout and stderr.
pub struct AgentProcess {
    pub child: Child,
    pub stdin: ChildStdin,
    pub stdout: BufReader<ChildStdout>,
    /// Read into the agent's log (a login URL printed there reaches the phone).
    pub stderr: BufReader<ChildStderr>,
    /// Its entry in the data dir's record of agent groups: drop it once the
    /// child is reaped.
    pub group: GroupEntry,
}

/// An agent group in this run's record ([`groups`]); dropping it forgets it.
pub struct GroupEntry {
    pgid: u32,
    groups: Option<std::rc::Rc<groups::Groups>>,
}

impl Drop for GroupEntry {
    fn drop(&mut self) {
        if let Some(g) = &self.groups {
            g.remove(self.pgid);
        }
    }
}

/// Starts the agent in its own process group (so the relay can end the agent
/// and everything it started), stderr piped to the agent's log.
///
/// The agent dies with the relay: `PR_SET_PDEATHSIG` sends it SIGKILL when
/// the thread that forked it ends, so call this from the executor thread only
/// (the one thread that lives as long as the relay). What the agent starts
/// is not covered; it carries this run's marker in its environment and the
/// group is recorded, so the next start sweeps it ([`groups::sweep`]).
pub fn spawn(cmd: &AgentCommand, cwd: &Path) -> io::Result<AgentProcess> {
    let mut std_cmd = match cmd {
        AgentCommand::Shell(line) => {
            let mut c = std::process::Command::new("sh");
            c.arg("-c").arg(shell_line(line)?);
            c
        }
        AgentCommand::Program { program, args } => {
            let mut c = std::process::Command::new(program);
            c.args(args);
            c
        }
    };
    std_cmd.current_dir(cwd).process_group(0);
    let groups = groups::current();
    if let Some(g) = &groups {
        let (name, value) = g.marker();
        std_cmd.env(name, value);
    }
    crate::proc::die_with_parent(&mut std_cmd);
    let mut child = Command::from(std_cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("agent stdin was not piped"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("agent stdout was not piped"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| io::Error::other("agent stderr was not piped"))?;
    let pgid = child.id();
    if let Some(g) = &groups {
        g.add(pgid);
    }
    Ok(AgentProcess {
        child,
        stdin,
        stdout: BufReader::with_capacity(64 * 1024, stdout),
        stderr: BufReader::with_capacity(4 * 1024, stderr),
        group: GroupEntry { pgid, groups },
    })
}

/// What `sh -c` runs for `--agent` line `line`: `exec` before its program
/// word, after its leading environment assignments, the rest as written
/// (`exec KEY=v cmd` would look for a program named `KEY=v`).
fn shell_line(line: &str) -> io::Result<String> {
    let at = crate::places::program_start(line)
        .ok_or_else(|| io::Error::other("the agent's command line names no program"))?;
    let (assignments, program) = line.split_at(at);
    Ok(format!("{assignments}exec {program}"))
}

/// The conventional name of signal number `raw` (`"SIGKILL"`), or `"SIG<n>"`.
pub fn signal_name(raw: i32) -> String {
    use rustix::process::Signal;
    const NAMES: &[(Signal, &str)] = &[
        (Signal::HUP, "SIGHUP"),
        (Signal::INT, "SIGINT"),
        (Signal::QUIT, "SIGQUIT"),
        (Signal::ILL, "SIGILL"),
        (Signal::TRAP, "SIGTRAP"),
        (Signal::ABORT, "SIGABRT"),
        (Signal::BUS, "SIGBUS"),
        (Signal::FPE, "SIGFPE"),
        (Signal::KILL, "SIGKILL"),
        (Signal::USR1, "SIGUSR1"),
        (Signal::SEGV, "SIGSEGV"),
        (Signal::USR2, "SIGUSR2"),
        (Signal::PIPE, "SIGPIPE"),
        (Signal::ALARM, "SIGALRM"),
        (Signal::TERM, "SIGTERM"),
        (Signal::XCPU, "SIGXCPU"),
        (Signal::XFSZ, "SIGXFSZ"),
        (Signal::SYS, "SIGSYS"),
    ];
    NAMES
        .iter()
        .find(|(sig, _)| sig.as_raw() == raw)
        .map_or_else(|| format!("SIG{raw}"), |(_, name)| (*name).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::process::Signal;

    #[test]
    fn shown_as_the_program_name_only() {
        let shown = |line: &str| AgentCommand::Shell(line.into()).to_string();
        assert_eq!(
            shown("ANTHROPIC_API_KEY=sk-SECRET claude-code-acp --x"),
            "claude-code-acp"
        );
        assert_eq!(
            shown("env -u HOME K=sk-SECRET /opt/goose acp --key sk-S"),
            "goose"
        );
        assert_eq!(shown("K=sk-SECRET"), "agent");
        // Any character outside [A-Za-z0-9._+/-]: not shown, not filtered.
        assert_eq!(shown("'/my dir/a$b' --key sk-S"), "agent");
        assert_eq!(shown("http://u:pass@h:3128 cmd"), "agent");
        assert_eq!(shown("/opt/node@20/bin/node x.js"), "agent");
        assert_eq!(shown("/usr/bin/g++-acp"), "g++-acp");
        assert_eq!(shown(&format!("{} acp", "a".repeat(65))), "agent");
        // Proxy variables are assignments; env -S's string holds the program.
        assert_eq!(
            shown("http_proxy=http://u:pass@h:3128 claude-code-acp"),
            "claude-code-acp"
        );
        assert_eq!(shown("env -S 'goose --key sk-X'"), "goose");
        assert_eq!(shown("env --split-string='sk-X --key sk-Y'"), "sk-X");
        let demo = AgentCommand::Program {
            program: "/home/me/my dir@x/acp-relay".into(),
            args: vec!["demo-agent".into(), "--state-dir".into()],
        };
        assert_eq!(demo.to_string(), "acp-relay demo-agent");
        let debug = format!("{:?}", AgentCommand::Shell("K=sk-SECRET npx".into()));
        assert!(!debug.contains("SECRET"), "{debug}");
    }

    #[test]
    fn exec_goes_after_the_assignments_and_the_line_stays_as_written() {
        assert_eq!(
            shell_line("PATH=~/.local/bin:$PATH K=\"a b\" L=$(echo a b) claude-code-acp --x")
                .unwrap(),
            "PATH=~/.local/bin:$PATH K=\"a b\" L=$(echo a b) exec claude-code-acp --x"
        );
        assert_eq!(shell_line("  gemini --acp").unwrap(), "  exec gemini --acp");
        assert_eq!(shell_line("'K=v' cmd").unwrap(), "exec 'K=v' cmd");
        assert!(shell_line("K=sk-SECRET").is_err());
    }

    /// `sh` (dash here, and bash) expands the assignments before `exec` as
    /// at a prompt, exports them, and looks the program up in the new PATH.
    #[test]
    fn assignments_before_exec_are_expanded_and_exported() {
        let tmp = crate::testing::TempDir::new("shell-line");
        let home = tmp.0.clone();
        let bin = home.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let prog = bin.join("show-k");
        std::fs::write(&prog, "#!/bin/sh\nprintf '%s|%s' \"$K\" \"$L\"\n").unwrap();
        std::fs::set_permissions(&prog, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let line = shell_line("PATH=~/bin:$PATH K=~/k L=$(echo a  b) show-k").unwrap();
        for shell in ["sh", "dash", "bash"] {
            let Ok(out) = std::process::Command::new(shell)
                .arg("-c")
                .arg(&line)
                .env("HOME", &home)
                .output()
            else {
                assert_ne!(shell, "sh", "no sh");
                eprintln!("{shell} is not installed; not checked");
                continue;
            };
            let want = format!("{}/k|a b", home.display());
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                want,
                "{shell}: {out:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&home);
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(Signal::KILL.as_raw()), "SIGKILL");
        assert_eq!(signal_name(Signal::HUP.as_raw()), "SIGHUP");
        assert_eq!(signal_name(99), "SIG99");
    }
}
