//! `acp-relay install-service`: the systemd unit (hardened, one-line
//! `ExecStart` with `--config`) and the config file holding the flags the
//! person chose; printed with `--print`, else written and the user created.

use crate::config::FlagSpec;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the unit names.
#[derive(Debug, Clone)]
pub struct UnitOptions {
    pub bin: PathBuf,
    pub user: String,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    /// Every project directory the relay may write (`ReadWritePaths=`).
    pub workspaces: Vec<PathBuf>,
    pub memory_max: String,
}

/// The unit file. Mirrors `scripts/acp-relay.service` (its defaults).
pub fn unit_text(o: &UnitOptions) -> String {
    format!(
        "[Unit]
Description=acp-relay: drive ACP coding agents from a phone or a browser
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User={user}
Group={user}
Environment=HOME={data}
ExecStart={bin} serve --config {config}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2
TimeoutStopSec=10
# Logs: stderr lines with <N> priorities go to the journal with their level.
SyslogIdentifier=acp-relay
# Hardening: the whole file system read-only but the data dir and the workspaces.
ProtectSystem=strict
ReadWritePaths={data} {workspaces}
NoNewPrivileges=yes
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryMax={mem}

[Install]
WantedBy=multi-user.target
",
        user = o.user,
        data = o.data_dir.display(),
        workspaces = o
            .workspaces
            .iter()
            .map(|w| w.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        bin = o.bin.display(),
        config = o.config.display(),
        mem = o.memory_max,
    )
}

/// `serve` flags as config lines (`key = value`), checked against the flags `serve` has.
pub fn config_text(
    specs: &[FlagSpec],
    flags: &[String],
    refused: &[&str],
) -> Result<String, String> {
    let mut out = String::from(
        "# acp-relay config: one `key = value` per line; keys are the flags of\n# `acp-relay serve --help` without --. Reload with `systemctl reload acp-relay`.\n",
    );
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        let name = f
            .strip_prefix("--")
            .ok_or_else(|| format!("'{f}' is not a serve flag (they start with --)"))?;
        let spec = specs
            .iter()
            .find(|s| s.name == name && !refused.contains(&name))
            .ok_or_else(|| format!("--{name} is not a flag of `acp-relay serve`"))?;
        if spec.takes_value {
            let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            if v.contains('\n') {
                return Err(format!("--{name}: a value cannot hold a newline"));
            }
            let quoted = v.starts_with(['"', '\'']) || v.ends_with(['"', '\'']) || v.trim() != v;
            if quoted {
                out.push_str(&format!("{name} = \"{v}\"\n"));
            } else {
                out.push_str(&format!("{name} = {v}\n"));
            }
        } else {
            out.push_str(&format!("{name} = true\n"));
        }
    }
    Ok(out)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let what = format!("{cmd:?}");
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("{what} failed ({s})")),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes the unit and the config, creates the user and the writable dirs,
/// and reloads systemd. Needs root.
pub fn install(
    unit_path: &Path,
    unit: &str,
    config_path: &Path,
    config: &str,
    user: &str,
    data_dir: &Path,
    workspace: Option<&Path>,
) -> Result<(), String> {
    let exists = Command::new("id")
        .arg("-u")
        .arg(user)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        run(Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
                "--home-dir",
            ])
            .arg(data_dir)
            .arg(user))
        .map_err(|e| format!("{e}; run as root, or pass --print and install by hand"))?;
    }
    // Projects named in the serve flags are the person's own: never chowned.
    for d in std::iter::once(data_dir).chain(workspace) {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        run(Command::new("chown").arg(format!("{user}:{user}")).arg(d))?;
    }
    write(config_path, config, 0o640)?;
    run(Command::new("chown")
        .arg(format!("root:{user}"))
        .arg(config_path))?;
    write(unit_path, unit, 0o644)?;
    if let Err(e) = run(Command::new("systemctl").arg("daemon-reload")) {
        eprintln!("acp-relay: {e} (is systemd running?)");
    }
    println!(
        "wrote {} and {}\nstart it:  systemctl enable --now acp-relay\nlogs:      journalctl -u acp-relay -f\npair:      sudo -u {user} acp-relay pair --config {}",
        unit_path.display(),
        config_path.display(),
        config_path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lines_from_flags() {
        let specs = crate::config::flag_specs(
            "Usage: x [--listen <listen>] [--lease] [--notify <notify...>] [--config <config>]",
        );
        let flags: Vec<String> = [
            "--listen",
            "0.0.0.0:7447",
            "--lease",
            "--notify",
            " http://a ",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let text = config_text(&specs, &flags, &["config"]).unwrap();
        assert!(text.contains("\nlisten = 0.0.0.0:7447\nlease = true\nnotify = \" http://a \"\n"));
        let back = crate::config::parse(Path::new("c"), &text).unwrap();
        assert_eq!(back[2].value, " http://a ");
        assert!(config_text(&specs, &["--config".into(), "x".into()], &["config"]).is_err());
        assert!(config_text(&specs, &["--bogus".into()], &[]).is_err());
    }
}
