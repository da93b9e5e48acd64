//! The ops command line over the real binary: `--version`, the config file
//! (sets flags, a flag overrides it, the default path, an unknown key names
//! its line), `install-service --print` (hardened unit checked by
//! `systemd-analyze verify`), `status` against a running relay, `pair`.
mod common;
use common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    let home = TempDir::new("home");
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME");
    output_of(cmd)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn version_is_printed() {
    for flag in ["--version", "-V"] {
        let out = run(&[flag]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            format!("acp-relay {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
    // The top-level help lists it; `serve --help` says https needs the tls build.
    let help = text(&run(&["--help"]).stdout);
    assert!(
        help.lines()
            .any(|l| l.trim_start().starts_with("-V, --version")),
        "{help}"
    );
    let help = text(&run(&["serve", "--help"]).stdout);
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(!help.contains("http only"), "{help}");
    assert!(
        help.contains("https:// in a relay built with the tls feature"),
        "{help}"
    );
}

fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn a_config_file_sets_flags_and_a_flag_overrides_it() {
    let dir = TempDir::new("config");
    let cfg = dir.path().join("relay.conf");
    // `log-format` comes from the file; its `log = error` is overridden by
    // the harness's `--log debug`, so info lines show.
    std::fs::write(
        &cfg,
        "# ops test\nlog-format = json\nlog = error\nmax-asks = 7\n",
    )
    .unwrap();
    let relay = Relay::start(&["--config", cfg.to_str().unwrap()]);
    relay.wait_log("notifications: 0 target(s)");
    let lines = json_lines(&relay.log());
    assert!(lines.iter().any(|v| v["level"] == "info"), "{lines:?}");
    drop(relay);
    let relay = Relay::start(&["--config", cfg.to_str().unwrap(), "--log-format", "text"]);
    relay.wait_log("notifications: 0 target(s)");
    assert!(relay.log().starts_with("INFO "), "{}", relay.log());
}

#[test]
fn the_default_config_path_is_read() {
    let home = TempDir::new("xdg");
    let dir = home.path().join("acp-relay");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config"), "log-format = json\n").unwrap();
    let relay = Relay::start_env(&[], &[("XDG_CONFIG_HOME", home.path().to_str().unwrap())]);
    relay.wait_log("\"level\":\"info\"");
    json_lines(&relay.log());
}

#[test]
fn an_unknown_key_fails_with_its_line_number() {
    let dir = TempDir::new("badconfig");
    let cfg = dir.path().join("config");
    std::fs::write(&cfg, "listen = 127.0.0.1:0\n\nbogus-key = 1\n").unwrap();
    let out = run(&[
        "serve",
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{}:3: unknown key 'bogus-key'", cfg.display())),
        "{err}"
    );
    // A value its flag refuses names its line too.
    std::fs::write(&cfg, "# x\nmax-asks = many\n").unwrap();
    let out = run(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{}:2: ", cfg.display())), "{err}");
    assert!(err.contains("max-asks"), "{err}");
    let out = run(&[
        "serve",
        "--config",
        dir.path().join("nope").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("does not exist"));
}

/// `systemd-analyze verify` on a unit file; skipped (or failed under CI) when missing.
fn verify_unit(path: &Path) {
    let have = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            !in_ci(),
            "systemd-analyze is missing: install Debian's `systemd` package (scripts/setup-ops.sh does)"
        );
        println!(
            "SKIPPED: systemd-analyze is missing (apt-get install systemd); unit not verified"
        );
        return;
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(path)
        .output()
        .unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    let err = text(&out.stderr);
    let ours: Vec<&str> = err.lines().filter(|l| l.contains(name)).collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify {}: {err}",
        path.display()
    );
}

#[test]
fn install_service_with_several_projects_lets_the_relay_write_each() {
    let out = run(&[
        "install-service",
        "--print",
        "--bin",
        bin(),
        "--",
        "--workspace",
        "api=/srv/code/api",
        "--workspace",
        "web=/srv/code/web",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let (unit, config) = printed
        .split_once("# /etc/acp-relay/config\n")
        .expect("unit then config");
    let rw = "ReadWritePaths=/var/lib/acp-relay /srv/code/api /srv/code/web";
    assert!(unit.lines().any(|l| l == rw), "{unit}");
    let ws: Vec<&str> = config
        .lines()
        .filter(|l| l.starts_with("workspace ="))
        .collect();
    assert_eq!(
        ws,
        [
            "workspace = api=/srv/code/api",
            "workspace = web=/srv/code/web"
        ]
    );
}

#[test]
fn install_service_prints_a_hardened_unit_that_verifies() {
    let out = run(&[
        "install-service",
        "--print",
        "--bin",
        bin(),
        "--memory-max",
        "128M",
        "--",
        "--listen",
        "0.0.0.0:7447",
        "--agent",
        "gemini --acp",
        "--notify",
        "http://127.0.0.1:8080/relay",
        "--lease",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let (unit, config) = printed
        .split_once("# /etc/acp-relay/config\n")
        .expect("unit then config");
    let exec: Vec<&str> = unit
        .lines()
        .filter(|l| l.starts_with("ExecStart="))
        .collect();
    assert_eq!(
        exec,
        [format!("ExecStart={} serve --config /etc/acp-relay/config", bin()).as_str()]
    );
    for want in [
        "User=acp-relay",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/acp-relay /srv/acp-relay",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "Restart=on-failure",
        "MemoryMax=128M",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|l| l == want), "{want} missing:\n{unit}");
    }
    for want in [
        "data-dir = /var/lib/acp-relay",
        "workspace = /srv/acp-relay",
        "listen = 0.0.0.0:7447",
        "agent = gemini --acp",
        "notify = http://127.0.0.1:8080/relay",
        "lease = true",
    ] {
        assert!(
            config.lines().any(|l| l == want),
            "{want} missing:\n{config}"
        );
    }
    let dir = TempDir::new("unit");
    let path = dir.path().join("acp-relay.service");
    let body: String = unit
        .lines()
        .filter(|l| !l.starts_with("# /etc/systemd"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, body).unwrap();
    verify_unit(&path);

    // The shipped unit too, with this binary in its ExecStart.
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/acp-relay.service"),
    )
    .unwrap()
    .replace("/usr/local/bin/acp-relay", bin());
    let path = dir.path().join("shipped").join("acp-relay.service");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, shipped).unwrap();
    verify_unit(&path);

    let out = run(&["install-service", "--print", "--", "--no-such-flag"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--no-such-flag is not a flag"));
}

#[test]
fn status_prints_the_live_figures_of_a_running_relay() {
    let relay = Relay::start(&[]);
    let mut a = relay.device("alice", "");
    let session = open_session(&mut a);
    a.request(
        "session/prompt",
        prompt_params(&session, "Status check\n/ask"),
    );
    a.recv_until("ask", |v| v["method"] == "session/request_permission");
    let url = format!("http://127.0.0.1:{}", relay.port);
    let dd = relay.data_dir.to_str().unwrap();
    let out = run(&["status", "--url", &url, "--data-dir", dd]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.starts_with(&format!("acp-relay {}  up ", env!("CARGO_PKG_VERSION"))),
        "{s}"
    );
    assert!(s.contains(" MiB ") && s.contains("devices 1"), "{s}");
    let line = s
        .lines()
        .find(|l| l.contains(&session))
        .unwrap_or_else(|| panic!("no line for {session}:\n{s}"));
    for want in ["busy", "asks 1", "devices 1", "Status check /ask"] {
        assert!(line.contains(want), "{want} missing: {line}");
    }
    // The agent column: the process serving it, then project/agent by name.
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols.get(1).copied(), Some("agent#1"), "{line}");
    assert!(
        cols.get(2).is_some_and(|c| c.ends_with("/demo")),
        "project/agent column: {line}"
    );

    let out = run(&["status", "--url", &url, "--data-dir", dd, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["rssBytes"].as_u64().is_some_and(|r| r > 0), "{v}");
    let s = v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sessionId"] == json!(session))
        .cloned()
        .unwrap();
    assert_eq!(
        (
            s["busy"].clone(),
            s["openAsks"].clone(),
            s["devices"].clone(),
            s["agent"].clone(),
            s["agentName"].clone(),
        ),
        (
            json!(true),
            json!(1),
            json!(1),
            json!("agent#1"),
            json!("demo")
        )
    );

    // Without the right token it is refused.
    let other = TempDir::new("other-token");
    run(&["token", "--data-dir", other.path().to_str().unwrap()]);
    let out = run(&[
        "status",
        "--url",
        &url,
        "--data-dir",
        other.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("refused the token"));
}

#[test]
fn pair_prints_the_link_and_a_qr_code() {
    let dir = TempDir::new("pair");
    let dd = dir.path().to_str().unwrap();
    let tok = text(&run(&["token", "--data-dir", dd]).stdout)
        .trim()
        .to_owned();
    let out = run(&[
        "pair",
        "--data-dir",
        dd,
        "--url",
        "http://192.168.1.5:7447/",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(
        lines.last().copied(),
        Some(format!("http://192.168.1.5:7447/#token={tok}").as_str())
    );
    let qr = &lines[..lines.len() - 1];
    assert_eq!(qr_modules(qr), expected_modules(lines[lines.len() - 1]));
}

/// The module matrix a half-block QR print shows (true: dark), two rows per
/// line; light modules print as the block's lit half.
fn qr_modules(lines: &[&str]) -> Vec<Vec<bool>> {
    let mut rows = Vec::new();
    for l in lines {
        let (top, bottom): (Vec<bool>, Vec<bool>) = l
            .chars()
            .map(|c| match c {
                '█' => (false, false),
                '▀' => (false, true),
                '▄' => (true, false),
                ' ' => (true, true),
                other => panic!("{other:?} in the QR code"),
            })
            .unzip();
        rows.push(top);
        rows.push(bottom);
    }
    rows
}

/// qrcodegen's encoding of `text` (low error correction, as `pair` prints it)
/// with a four-module quiet zone, padded to an even number of rows.
fn expected_modules(text: &str) -> Vec<Vec<bool>> {
    let qr = qrcodegen::QrCode::encode_text(text, qrcodegen::QrCodeEcc::Low).unwrap();
    let (size, quiet) = (qr.size(), 4);
    let mut rows: Vec<Vec<bool>> = (-quiet..size + quiet)
        .map(|y| {
            (-quiet..size + quiet)
                .map(|x| qr.get_module(x, y))
                .collect()
        })
        .collect();
    if rows.len() % 2 == 1 {
        rows.push(vec![false; rows[0].len()]);
    }
    rows
}
