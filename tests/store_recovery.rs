//! A transcript writer killed with SIGKILL loses at most its unflushed tail:
//! after a restart the store lists the session and loads every complete frame.

mod common;
use acp_relay::store::transcript::{SessionMeta, Store, file_name};
use bytes::Bytes;
use common::TempDir;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Set in the child: the data directory to write into.
const CHILD_ENV: &str = "ACP_RELAY_STORE_RECOVERY_CHILD";
const SESSION: &str = "sess/kill-9";
/// Frames the child must report on disk before it is killed.
const DURABLE_BEFORE_KILL: u64 = 3000;
const WAIT: Duration = Duration::from_secs(30);

/// Frame `seq`: a few hundred bytes, so buffer writes often end mid-line.
fn frame(seq: u64) -> Bytes {
    let pad = format!("{seq:x}").repeat(40);
    format!(
        r#"{{"rseq":{seq},"jsonrpc":"2.0","method":"session/update","params":{{"pad":"{pad}"}}}}"#
    )
    .into()
}

fn meta() -> SessionMeta {
    SessionMeta {
        session_id: SESSION.into(),
        title: Some("killed mid-turn".into()),
        cwd: "/work".into(),
        created_ms: 1,
        updated_ms: 2,
        agent_session: None,
        project: None,
        agent: None,
        head_seq: 0,
    }
}

fn rseq(frame: &Bytes) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(frame).expect("a stored frame is JSON");
    v["rseq"].as_u64().expect("a stored frame has rseq")
}

/// The child side of `killed_writer_loses_only_its_tail`: appends frames
/// until killed, printing how many are known to have reached the OS.
#[test]
#[ignore = "run as a child process by killed_writer_loses_only_its_tail"]
fn writer_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let (store, _) = Store::open(Path::new(&dir), 10).expect("open the store");
    store.put_meta(meta());
    let started = Instant::now();
    let mut seq = 0;
    // Until enough is on disk, wait for each batch; then stream without
    // waiting (paced so the queue never fills) until killed. Bounded, in case
    // the parent dies without killing us.
    while started.elapsed() < WAIT {
        for _ in 0..100 {
            seq += 1;
            store.append(SESSION, frame(seq));
        }
        if seq <= DURABLE_BEFORE_KILL {
            store.sync(SESSION);
            // A load first writes out everything queued before it.
            let stored = smol::block_on(store.load(SESSION, 0, 0)).expect("load");
            println!("durable {}", stored.meta.head_seq);
        } else {
            if store.dropped() > 0 {
                println!("dropped {}", store.dropped());
            }
            std::thread::sleep(Duration::from_micros(300));
        }
    }
}

#[test]
fn killed_writer_loses_only_its_tail() {
    let dir = TempDir::new("kill");
    let exe = std::env::current_exe().expect("current test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "writer_child", "--ignored", "--nocapture"])
        .env(CHILD_ENV, &dir.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the writer child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(n) = line
                .strip_prefix("durable ")
                .and_then(|n| n.parse::<u64>().ok())
            {
                let _ = tx.send(Ok(n));
            } else if line.starts_with("dropped ") {
                let _ = tx.send(Err(line));
            }
        }
    });
    let deadline = Instant::now() + WAIT;
    let mut durable = 0;
    while durable < DURABLE_BEFORE_KILL {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(n)) => durable = n,
            Ok(Err(line)) => panic!("the writer child {line} frames"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the writer child reported only {durable} durable frames within {WAIT:?}");
            }
        }
    }
    // Let the child stream for a varying few milliseconds, then SIGKILL it
    // while it is still appending.
    let jitter = Instant::now().elapsed().subsec_nanos() % 20 + std::process::id() % 10;
    std::thread::sleep(Duration::from_millis(u64::from(jitter)));
    child.kill().expect("kill the writer child");
    if let Ok(Err(line)) = rx.try_recv() {
        panic!("the writer child {line} frames");
    }
    child.wait().expect("reap the writer child");

    let (store, listed) = Store::open(&dir.0, 10).expect("reopen after kill -9");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let head = listed[0].head_seq;
    assert!(
        head >= durable,
        "head {head} is behind the {durable} frames known to be written"
    );
    assert_eq!(listed[0].title.as_deref(), Some("killed mid-turn"));

    let got = smol::block_on(store.load(SESSION, usize::MAX, usize::MAX)).expect("load");
    assert_eq!(got.meta.head_seq, head);
    assert_eq!(
        got.frames.len() as u64,
        head,
        "every complete frame, no gaps"
    );
    for (i, f) in got.frames.iter().enumerate() {
        assert_eq!(*f, frame(i as u64 + 1), "frame {} differs", i + 1);
    }

    // The restarted store appends after a possibly torn tail and keeps the
    // new frame whole.
    store.append(SESSION, frame(head + 1));
    let got = smol::block_on(store.load(SESSION, 2, usize::MAX)).expect("load again");
    assert_eq!(
        got.frames.iter().map(rseq).collect::<Vec<_>>(),
        [head, head + 1]
    );
    store.close(Duration::from_secs(5));
}

/// The same guarantee checked at every byte a crash could cut the last lines
/// at: the frames before the cut load, the cut one does not, nothing fails.
#[test]
fn a_cut_at_any_byte_loses_only_the_cut_line() {
    let source = TempDir::new("cut-source");
    let (store, _) = Store::open(&source.0, 10).expect("open");
    store.put_meta(meta());
    for seq in 1..=10 {
        store.append(SESSION, frame(seq));
    }
    store.close(Duration::from_secs(5));
    let name = file_name(SESSION);
    let whole = std::fs::read(source.0.join("sessions").join(&name)).expect("read transcript");
    let ends: Vec<usize> = whole
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    let from = ends[ends.len() - 4];

    let dir = TempDir::new("cut");
    let sessions = dir.0.join("sessions");
    for cut in from..=whole.len() {
        std::fs::create_dir_all(&sessions).expect("mkdir");
        std::fs::write(sessions.join(&name), &whole[..cut]).expect("write cut copy");
        let complete = 10 - ends.iter().filter(|e| **e > cut).count() as u64;
        let (store, listed) = Store::open(&dir.0, 10).expect("open cut copy");
        assert_eq!(listed.len(), 1, "cut at {cut}");
        assert_eq!(listed[0].head_seq, complete, "cut at {cut}");
        let got = smol::block_on(store.load(SESSION, usize::MAX, usize::MAX)).expect("load");
        assert_eq!(
            got.frames,
            (1..=complete).map(frame).collect::<Vec<_>>(),
            "cut at {cut}"
        );
        store.close(Duration::from_secs(5));
    }
}
