//! A device that stops reading during a flood is dropped as too slow: its
//! connection ends at once (not when the device leaves) and the frames queued
//! for it are freed, so the relay's memory comes back.
mod common;
use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Chunks the flood agent emits per prompt, and their size: 24 MB a turn.
const FLOOD_CHUNKS: u64 = 12_000;
const CHUNK_BYTES: usize = 2_000;
/// The per-socket bound under test (`--socket-bytes`).
const SOCKET_BYTES: usize = 8 << 20;
/// Devices that stop reading.
const STALLED: usize = 2;
/// How far the relay's RSS may stay above its level before the stall.
const RSS_SLACK_KB: u64 = 4 * 1024;

/// `VmRSS` of a process in KiB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// A device that upgrades, then never reads again. Its receive buffer is
/// small, so the relay's queue for it fills instead of the kernel's buffers.
fn stalled_device(relay: &Relay, client: &str) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType, connect, socket, sockopt};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    sockopt::set_socket_recv_buffer_size(&fd, 4096).unwrap();
    let dst: std::net::SocketAddr = format!("127.0.0.1:{}", relay.port).parse().unwrap();
    connect(&fd, &dst).unwrap();
    let mut s = TcpStream::from(fd);
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let req = format!(
        "GET /ws?client_id={client} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {}\r\n\r\n",
        relay.token
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(Instant::now() < deadline, "no 101 for {client}");
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => panic!("{client}: closed during the upgrade"),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{client}: {e}"),
        }
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// Whether the relay ended the connection by `deadline`: reads (and discards)
/// what the kernel still holds until end of file or a reset.
fn closed_by(s: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Runs one flood turn on a reading device in its own thread. The frames are
/// only scanned for the turn's answer, not parsed, so the device keeps up.
fn flood_turn(mut d: Device, session: String) -> std::thread::JoinHandle<Device> {
    std::thread::spawn(move || {
        let id = d.request("session/prompt", prompt_params(&session, "go"));
        let needle = format!("\"id\":{id}");
        let deadline = Instant::now() + WAIT * 3;
        loop {
            assert!(Instant::now() < deadline, "no answer to the flood turn");
            match d.ws.read() {
                Ok(tungstenite::Message::Text(t))
                    if t.contains(&needle) && t.contains("\"stopReason\"") =>
                {
                    assert!(t.contains("end_turn"), "{t}");
                    return d;
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("the reading device lost its socket: {e}"),
            }
        }
    })
}

#[test]
fn a_stalled_device_is_closed_at_once_and_its_queue_freed() {
    let agent = format!(
        "{} demo-agent --flood {FLOOD_CHUNKS} --frame-bytes {CHUNK_BYTES} --rate 5000",
        bin()
    );
    let relay = Relay::start(&[
        "--agent",
        &agent,
        "--ring-bytes",
        "1048576",
        "--socket-bytes",
        &SOCKET_BYTES.to_string(),
    ]);
    let mut driver = relay.device("driver", "");
    let session = open_session(&mut driver);

    // Warm up: one full turn fills the ring, so the baseline holds it.
    let driver = flood_turn(driver, session.clone())
        .join()
        .expect("warm-up turn");
    let before = rss_kb(relay.pid());

    let mut stalled: Vec<TcpStream> = (0..STALLED)
        .map(|i| stalled_device(&relay, &format!("stalled{i}")))
        .collect();
    let turn = flood_turn(driver, session);

    let deadline = Instant::now() + WAIT;
    while relay.log().matches("outbound queue full").count() < STALLED {
        assert!(
            Instant::now() < deadline,
            "the stalled devices were never dropped; log:\n{}",
            relay.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let closed_deadline = Instant::now() + Duration::from_secs(1);
    for (i, s) in stalled.iter_mut().enumerate() {
        assert!(
            closed_by(s, closed_deadline),
            "stalled{i}: the relay dropped it but kept the connection open"
        );
    }
    let _driver = turn.join().expect("flood turn");

    // The queues are freed: RSS comes back near where it was before the stall.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = rss_kb(relay.pid());
    while after > before + RSS_SLACK_KB && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        after = rss_kb(relay.pid());
    }
    eprintln!("relay RSS: {before} KiB before the stall, {after} KiB after the drop");
    assert!(
        after <= before + RSS_SLACK_KB,
        "RSS stayed at {after} KiB after the drop, {before} KiB before the stall"
    );
    assert!(
        relay.log().matches("outbound queue full").count() == STALLED,
        "only the stalled devices were dropped; log:\n{}",
        relay.log()
    );
}
