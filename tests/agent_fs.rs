//! The agent's fs and terminal requests are answered inside the workspace jail.
mod common;
use common::*;

#[test]
fn agent_fs_requests_stay_in_the_workspace() {
    let relay = Relay::start(&[]);
    std::fs::write(relay.workspace.join("notes.txt"), "inside line\nsecond\n").unwrap();
    std::fs::write(relay.dir.path().join("outside.txt"), "secret\n").unwrap();
    std::os::unix::fs::symlink("/etc", relay.workspace.join("etc-link")).unwrap();
    let mut d = relay.device("d", "");
    let session = open_session(&mut d);
    let script = "/chunks 1\n/read notes.txt\n/read ../outside.txt\n/read /etc/passwd\n/read etc-link/passwd\n/write sub/new.txt hello\n/run cat sub/new.txt";
    let id = d.request("session/prompt", prompt_params(&session, script));
    assert_eq!(d.response(&id)["result"]["stopReason"], "end_turn");
    let text = agent_text(&d.seen);
    assert!(text.contains("read ok: 19 bytes: inside line"), "{text}");
    assert_eq!(
        text.matches("read error").count(),
        3,
        "three escapes refused: {text}"
    );
    assert!(
        !text.contains("secret") && !text.contains("root:"),
        "{text}"
    );
    assert!(text.contains("write ok"), "{text}");
    assert!(text.contains("run exit 0: hello"), "{text}");
    assert_eq!(
        std::fs::read_to_string(relay.workspace.join("sub/new.txt")).unwrap(),
        "hello"
    );
}
