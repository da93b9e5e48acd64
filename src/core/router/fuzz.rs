//! Fuzz harness for the router: arbitrary device and agent lines against a
//! router whose agent is initialized and whose session is open. Whatever the
//! bytes, the router must not panic. Performs no I/O.

use super::*;

/// A router with one initialized agent, an open default session and two
/// sockets attached (one relay, one plain).
fn primed() -> Router {
    let cfg = RouterConfig {
        terminals: Some(TermLimits::default()),
        lease: true,
        ..RouterConfig::default()
    };
    let mut r = Router::new(cfg, 1);
    // The default agent starts when first needed.
    let unit = r.default_unit;
    r.ensure_agent(unit);
    let agent = AgentId(1);
    r.handle(2, Input::AgentLine { agent, line: br#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":1,"agentCapabilities":{"loadSession":true}}}"# });
    let open = |socket, plain| Input::SocketOpen {
        socket: SocketId(socket),
        client: ClientId(format!("c{socket}")),
        session: None,
        last_seq: None,
        plain,
    };
    r.handle(3, open(1, false));
    r.handle(3, open(2, true));
    // The default session opens when a device claims it.
    r.handle(
        3,
        Input::SocketText {
            socket: SocketId(1),
            text: br#"{"jsonrpc":"2.0","id":"c1:0","method":"session/new","params":{"cwd":"/","mcpServers":[]}}"#,
        },
    );
    r.handle(
        4,
        Input::AgentLine {
            agent,
            line: br#"{"jsonrpc":"2.0","id":2,"result":{"sessionId":"s1"}}"#,
        },
    );
    while r.poll_output().is_some() {}
    r
}

/// Feeds `data`, line by line, to the router: a line's first byte picks who
/// sends it (device socket 1, plain socket 2, or the agent), the rest is the line.
pub fn fuzz_router(data: &[u8]) {
    let mut r = primed();
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        let Some((&who, rest)) = line.split_first() else {
            continue;
        };
        let now = 10 + i as u64;
        match who % 4 {
            0 => r.handle(
                now,
                Input::SocketText {
                    socket: SocketId(1),
                    text: rest,
                },
            ),
            1 => r.handle(
                now,
                Input::SocketText {
                    socket: SocketId(2),
                    text: rest,
                },
            ),
            2 => r.handle(
                now,
                Input::AgentLine {
                    agent: AgentId(1),
                    line: rest,
                },
            ),
            _ => r.handle(
                now,
                Input::JobDone {
                    job: JobId(u64::from(who)),
                    result: serde_json::from_slice(rest)
                        .map_err(|e| RpcError::other(e.to_string())),
                },
            ),
        }
        while r.poll_output().is_some() {}
    }
    r.handle(
        1_000_000,
        Input::AgentExited {
            agent: AgentId(1),
            status: "fuzz".into(),
        },
    );
    r.handle(
        1_000_001,
        Input::SocketClosed {
            socket: SocketId(1),
        },
    );
    while r.poll_output().is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primed_router_has_an_open_session() {
        let r = primed();
        assert!(r.by_session.contains_key("s1"));
        assert_eq!(r.socket_count(), 2);
    }

    /// Lines that once crashed the router, and the shapes around them.
    #[test]
    fn hostile_lines_never_panic() {
        let cases: &[&[u8]] = &[
            b"\x02{\"jsonrpc\":\"2.0\",\"method\":\"session/update\",\"params\":[\"s1\"]}",
            b"\x02{\"jsonrpc\":\"2.0\",\"method\":\"session/update\",\"params\":{\"sessionId\":\"s1\",\"update\":null}}",
            b"\x02{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"session/request_permission\",\"params\":[1,2]}",
            b"\x02{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"session/request_permission\",\"params\":{\"sessionId\":\"s1\",\"options\":7}}",
            b"\x02{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"fs/read_text_file\",\"params\":\"x\"}",
            b"\x00{\"jsonrpc\":\"2.0\",\"id\":\"c1:1\",\"method\":\"session/prompt\",\"params\":[]}",
            b"\x00{\"jsonrpc\":\"2.0\",\"id\":\"c1:2\",\"method\":\"session/prompt\",\"params\":{\"sessionId\":\"s1\",\"prompt\":[1,null,{\"text\":5}]}}",
            b"\x00{\"jsonrpc\":\"2.0\",\"id\":\"perm:s1:1\",\"result\":[]}",
            b"\x00{\"jsonrpc\":\"2.0\",\"id\":\"perm:s1:99999999999999999999\",\"result\":{}}",
            b"\x00{\"jsonrpc\":\"2.0\",\"method\":\"session/cancel\",\"params\":[]}",
            b"\x00{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"session/load\",\"params\":{\"sessionId\":7}}",
            b"\x00{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"_relay/terminal/open\",\"params\":{\"cols\":-1,\"rows\":1e99}}",
            b"\x01{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"session/new\",\"params\":null}",
            b"\x01{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"session/set_mode\",\"params\":{\"sessionId\":[]}}",
            b"\x02{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":[]}",
            b"\x02{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":\"nope\"}",
            b"\x03{\"a\":1}",
        ];
        for c in cases {
            fuzz_router(c);
        }
        fuzz_router(&cases.join(&b'\n'));
    }

    #[test]
    fn random_lines_never_panic() {
        let pieces: &[&[u8]] = &[
            b"{\"jsonrpc\":\"2.0\",",
            b"\"id\":",
            b"\"c1:1\"",
            b"1",
            b"\"perm:s1:1\"",
            b"\"method\":",
            b"\"session/prompt\"",
            b"\"session/update\"",
            b"\"session/request_permission\"",
            b"\"session/load\"",
            b"\"_relay/take_control\"",
            b"\"params\":",
            b"{\"sessionId\":\"s1\"",
            b",\"prompt\":[{\"type\":\"text\",\"text\":\"hi\"}]",
            b"}",
            b"[",
            b"]",
            b",",
            b"\"result\":",
            b"{\"outcome\":{\"outcome\":\"selected\",\"optionId\":\"a\"}}",
            b"null",
            b"\"error\":{\"code\":1}",
        ];
        let mut s: u64 = 0x243F_6A88_85A3_08D3;
        for _ in 0..2000 {
            let mut data = Vec::new();
            for _ in 0..12 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                data.push((s % 4) as u8);
                for k in 0..(s >> 8) % 9 {
                    data.extend_from_slice(pieces[((s >> (k * 5)) as usize) % pieces.len()]);
                }
                data.push(b'\n');
            }
            fuzz_router(&data);
        }
    }
}
