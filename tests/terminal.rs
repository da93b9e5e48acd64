//! PTY terminals over the socket: real shells, resize, unmangled multibyte
//! output, scrollback on reconnect, the cap, exit frames, no orphans.
mod common;
use common::*;
use serde_json::{Value, json};

fn open(d: &mut Device, params: Value) -> String {
    let id = d.request("_relay/terminal/open", params);
    let r = d.response(&id);
    r["result"]["terminalId"]
        .as_str()
        .unwrap_or_else(|| panic!("open: {r}"))
        .to_owned()
}

fn input(d: &mut Device, tid: &str, data: &str) {
    let id = d.request(
        "_relay/terminal/input",
        json!({"terminalId": tid, "data": data}),
    );
    assert!(d.response(&id).get("result").is_some());
}

/// Collects a terminal's output until it contains `needle`; returns all of it.
fn output_until(d: &mut Device, tid: &str, needle: &str) -> String {
    let mut text = String::new();
    let tid = tid.to_owned();
    while !text.contains(needle) {
        let f = d.recv_until(
            &format!("terminal output containing {needle:?} (so far {text:?})"),
            |v| {
                v["method"] == "_relay/terminal/output" && v["params"]["terminalId"] == tid.as_str()
            },
        );
        text.push_str(f["params"]["data"].as_str().unwrap());
    }
    text
}

#[test]
fn shell_echo_resize_and_multibyte() {
    let relay = Relay::start(&["--terminal"]);
    let mut d = relay.device("owner", "");
    let w = d.recv_until("welcome", |v| v["type"] == "relay_welcome");
    assert!(w.is_object());
    let init = d.request("initialize", json!({"protocolVersion":1}));
    assert_eq!(
        d.response(&init)["result"]["_meta"]["relay"]["terminal"],
        true
    );

    let t = open(&mut d, json!({"cols": 80, "rows": 24, "command": "sh"}));
    input(&mut d, &t, "echo $((6*7))\n");
    assert!(output_until(&mut d, &t, "42").contains("42"));

    let id = d.request(
        "_relay/terminal/resize",
        json!({"terminalId": t, "cols": 101, "rows": 33}),
    );
    d.response(&id);
    input(&mut d, &t, "stty size\n");
    output_until(&mut d, &t, "33 101");

    let text = "héllo 🦀 世界 ✓ ünïcödé 🚀🚀🚀 漢字かな";
    input(&mut d, &t, &format!("cat <<'EOF'\n{text}\n{text}\nEOF\n"));
    let out = output_until(&mut d, &t, &format!("{text}\r\n{text}"));
    assert!(!out.contains('\u{fffd}'), "no mangled characters: {out:?}");

    // A full-screen style burst of cursor movement escapes arrives complete.
    input(
        &mut d,
        &t,
        "i=0; while [ $i -lt 200 ]; do printf '\\033[%d;1H\\033[2Kline %d' $((i%24+1)) $i; i=$((i+1)); done; echo; echo burst-$((1+1))-done\n",
    );
    let burst = output_until(&mut d, &t, "burst-2-done\r\n");
    assert!(burst.contains("line 199"), "burst complete");

    // seq strictly increases per terminal.
    let seqs: Vec<u64> = d
        .seen
        .iter()
        .chain(std::iter::empty())
        .filter(|v| v["params"]["terminalId"] == t.as_str())
        .filter_map(|v| v["params"]["seq"].as_u64())
        .collect();
    for w in seqs.windows(2) {
        assert!(w[1] > w[0]);
    }

    input(&mut d, &t, "exit 3\n");
    let exit = d.recv_until("exit frame", |v| {
        v["method"] == "_relay/terminal/exit" && v["params"]["terminalId"] == t.as_str()
    });
    assert_eq!(exit["params"]["exitCode"], 3, "{exit}");
}

#[test]
fn owner_reconnects_to_scrollback_then_live() {
    let relay = Relay::start(&["--terminal"]);
    let mut d = relay.device("owner", "");
    d.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let t = open(
        &mut d,
        json!({"command": "i=0; while [ $i -lt 30 ]; do echo tick-$i; i=$((i+1)); sleep 0.05; done; sleep 2; echo live-after"}),
    );
    output_until(&mut d, &t, "tick-2\r\n");
    d.close();
    std::thread::sleep(std::time::Duration::from_millis(1700)); // the loop runs on while the owner is away

    let mut d = relay.device("owner", "");
    let mut text = String::new();
    let mut seqs = Vec::new();
    while !text.contains("live-after") {
        let f = d.recv_until("terminal output", |v| {
            v["method"] == "_relay/terminal/output"
        });
        seqs.push(f["params"]["seq"].as_u64().unwrap());
        text.push_str(f["params"]["data"].as_str().unwrap());
    }
    assert_eq!(
        seqs[0], 1,
        "the scrollback starts at the ring's oldest frame"
    );
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "no gap inside the ring: {seqs:?}");
    }
    for i in 0..30 {
        assert!(
            text.contains(&format!("tick-{i}\r\n")),
            "tick-{i} missing from {text:?}"
        );
    }
}

#[test]
fn ninth_terminal_closes_the_first_and_sigterm_leaves_no_child() {
    let mut relay = Relay::start(&["--terminal"]);
    let mut d = relay.device("owner", "");
    d.recv_until("welcome", |v| v["type"] == "relay_welcome");
    // A duration no other test uses, so the process table check is ours alone.
    let secs = format!("60.{}", std::process::id());
    let ids: Vec<String> = (0..9)
        .map(|_| open(&mut d, json!({"command": format!("sleep {secs}")})))
        .collect();
    let evicted = d.recv_until("exit of the first", |v| {
        v["method"] == "_relay/terminal/exit" && v["params"]["terminalId"] == ids[0].as_str()
    });
    assert!(
        evicted["params"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("evicted"),
        "{evicted}"
    );
    let input_first = d.request(
        "_relay/terminal/input",
        json!({"terminalId": ids[0], "data": "x"}),
    );
    assert_eq!(d.response(&input_first)["error"]["code"], -32602);

    let pid = relay.pid();
    assert!(children(pid).len() >= 9, "agent + 8 shells");
    assert_eq!(relay.terminate(), Some(0));
    let orphans: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).ok())
        .filter(|c| *c == format!("sleep\u{0}{secs}\u{0}"))
        .collect();
    assert!(
        orphans.is_empty(),
        "sleep {secs} shells outlived the relay: {orphans:?}"
    );
}

#[test]
fn terminals_need_the_flag_and_the_lease() {
    let off = Relay::start(&[]);
    let mut d = off.device("d", "");
    d.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let id = d.request("_relay/terminal/open", json!({}));
    let r = d.response(&id);
    assert_eq!(r["error"]["code"], -32601);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--terminal")
    );

    let relay = Relay::start(&["--terminal", "--lease"]);
    let mut holder = relay.device("holder", "");
    holder.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let t = open(&mut holder, json!({"command": "cat"}));
    let mut viewer = relay.device("viewer", "");
    viewer.recv_until("welcome", |v| v["type"] == "relay_welcome");
    let id = viewer.request("_relay/terminal/open", json!({}));
    assert_eq!(viewer.response(&id)["error"]["code"], -32010);
    let id = viewer.request(
        "_relay/terminal/input",
        json!({"terminalId": t, "data": "typed by viewer\n"}),
    );
    assert_eq!(viewer.response(&id)["error"]["code"], -32010);
    input(&mut holder, &t, "typed by holder\n");
    let out = output_until(&mut holder, &t, "typed by holder");
    assert!(!out.contains("viewer"));
}
