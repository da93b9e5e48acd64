use super::format::{self, MetaRecord};
use super::*;
use crate::testing::TempDir;
use std::fs;

/// The store's files in a test's directory.
impl TempDir {
    fn sessions(&self) -> PathBuf {
        self.0.join("sessions")
    }

    fn file(&self, session_id: &str) -> PathBuf {
        self.sessions().join(file_name(session_id))
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.sessions())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }
}

fn frame(seq: u64) -> Bytes {
    format!(r#"{{"rseq":{seq},"jsonrpc":"2.0","method":"session/update","params":{{"n":{seq}}}}}"#)
        .into()
}

fn meta(id: &str, updated_ms: u64) -> SessionMeta {
    SessionMeta {
        session_id: id.into(),
        title: Some(format!("title of {id}")),
        cwd: "/home/me/project".into(),
        created_ms: 1,
        updated_ms,
        agent_session: Some("agent-7".into()),
        project: None,
        agent: None,
        head_seq: 0,
    }
}

fn seqs(frames: &[Bytes]) -> Vec<u64> {
    frames
        .iter()
        .map(|f| {
            let v: serde_json::Value = serde_json::from_slice(f).unwrap();
            v["rseq"].as_u64().unwrap()
        })
        .collect()
}

fn load(
    store: &Store,
    id: &str,
    max_frames: usize,
    max_bytes: usize,
) -> Result<StoredSession, StoreError> {
    smol::block_on(store.load(id, max_frames, max_bytes))
}

fn open(dir: &TempDir, keep: usize) -> (Store, Vec<SessionMeta>) {
    Store::open(&dir.0, keep).unwrap()
}

/// Writes a transcript by hand: header, one metadata line, then `body`.
fn write_file(dir: &TempDir, id: &str, body: &[u8]) {
    fs::create_dir_all(dir.sessions()).unwrap();
    let mut bytes = format::header_line(id);
    bytes.extend(format::meta_line(&MetaRecord::from(&meta(id, 5))));
    bytes.extend_from_slice(body);
    fs::write(dir.file(id), bytes).unwrap();
}

fn lines(frames: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let mut out = Vec::new();
    for s in frames {
        out.extend_from_slice(&frame(s));
        out.push(b'\n');
    }
    out
}

const ALL: usize = usize::MAX;

#[test]
fn round_trip() {
    let dir = TempDir::new("round-trip");
    let (store, listed) = open(&dir, 10);
    assert!(listed.is_empty());
    store.put_meta(meta("s1", 10));
    for s in 1..=5 {
        store.append("s1", frame(s));
    }
    store.sync("s1");
    let got = load(&store, "s1", ALL, ALL).unwrap();
    assert_eq!(got.frames, (1..=5).map(frame).collect::<Vec<_>>());
    assert_eq!(
        got.meta,
        SessionMeta {
            head_seq: 5,
            ..meta("s1", 10)
        }
    );

    // The last metadata wins.
    let mut renamed = meta("s1", 20);
    renamed.title = Some("renamed".into());
    store.put_meta(renamed.clone());
    store.append("s1", frame(6));
    store.close(Duration::from_secs(5));
    store.append("s1", frame(7));
    assert_eq!(store.dropped(), 1, "a frame after close is dropped");

    let (store, listed) = open(&dir, 10);
    let want = SessionMeta {
        head_seq: 6,
        ..renamed
    };
    assert_eq!(listed, vec![want.clone()]);
    let got = load(&store, "s1", ALL, ALL).unwrap();
    assert_eq!(seqs(&got.frames), (1..=6).collect::<Vec<_>>());
    assert_eq!(got.meta, want);
    // A larger head from the relay (frames dropped under load) is kept.
    store.put_meta(SessionMeta {
        head_seq: 9,
        ..meta("s1", 30)
    });
    assert_eq!(load(&store, "s1", 0, 0).unwrap().meta.head_seq, 9);
    store.close(Duration::from_secs(5));
}

#[test]
fn torn_last_line_is_ignored_then_ended() {
    let dir = TempDir::new("torn");
    let mut body = lines(1..=3);
    body.extend_from_slice(br#"{"rseq":4,"jsonrpc":"2.0","meth"#);
    write_file(&dir, "s", &body);

    let (store, listed) = open(&dir, 10);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].head_seq, 3);
    let got = load(&store, "s", ALL, ALL).unwrap();
    assert_eq!(seqs(&got.frames), vec![1, 2, 3]);

    // Appending after a torn tail ends the torn line first: the new frame
    // stays whole.
    store.append("s", frame(4));
    store.append("s", frame(5));
    let got = load(&store, "s", ALL, ALL).unwrap();
    assert_eq!(seqs(&got.frames), vec![1, 2, 3, 4, 5]);
    assert_eq!(got.meta.head_seq, 5);
    store.close(Duration::from_secs(5));
}

#[test]
fn garbage_lines_are_skipped() {
    let dir = TempDir::new("garbage");
    let mut body = lines(1..=2);
    body.extend_from_slice(b"this is not json\n");
    body.extend_from_slice(b"{\"rseq\":3,\"cut\":\n"); // invalid JSON
    body.extend_from_slice(b"{\"rseq\":x}\n"); // no number
    body.extend_from_slice(b"{\"meta\":[]}\n"); // damaged metadata
    body.extend_from_slice(b"\n\n");
    body.extend(lines(4..=5));
    body.extend_from_slice(b"\xff\xfe\x00\n");
    write_file(&dir, "s", &body);

    let (store, listed) = open(&dir, 10);
    assert_eq!(
        listed,
        vec![SessionMeta {
            head_seq: 5,
            ..meta("s", 5)
        }]
    );
    let got = load(&store, "s", ALL, ALL).unwrap();
    // The damaged frame 3 is a hole: the history holds both sides of it (the
    // ring resets a device resuming from before it).
    assert_eq!(seqs(&got.frames), vec![1, 2, 4, 5]);
    assert_eq!(got.meta.title.as_deref(), Some("title of s"));
    store.close(Duration::from_secs(5));
}

#[test]
fn a_crash_jump_in_the_numbers_is_read_across() {
    let dir = TempDir::new("jump");
    // Run 1 ended at 5 (numbers up to 100 reserved), run 2 numbered on from 101.
    let mut body = lines(1..=5);
    body.extend(lines(101..=103));
    write_file(&dir, "s", &body);
    let (store, _) = open(&dir, 10);
    let got = load(&store, "s", ALL, ALL).unwrap();
    assert_eq!(seqs(&got.frames), vec![1, 2, 3, 4, 5, 101, 102, 103]);
    assert_eq!(got.meta.head_seq, 103);
    store.close(Duration::from_secs(5));
}

#[test]
fn older_run_with_lower_numbers_is_left_out() {
    let dir = TempDir::new("restart");
    let mut body = lines(1..=5);
    body.extend(lines(1..=3));
    write_file(&dir, "s", &body);
    let (store, _) = open(&dir, 10);
    let got = load(&store, "s", ALL, ALL).unwrap();
    assert_eq!(seqs(&got.frames), vec![1, 2, 3]);
    assert_eq!(got.meta.head_seq, 3);
    store.close(Duration::from_secs(5));
}

#[test]
fn load_keeps_the_newest_frames_within_bounds() {
    let dir = TempDir::new("bounds");
    let (store, _) = open(&dir, 10);
    for s in 1..=100 {
        store.append("s", frame(s));
    }
    let got = load(&store, "s", 10, ALL).unwrap();
    assert_eq!(seqs(&got.frames), (91..=100).collect::<Vec<_>>());
    assert_eq!(got.meta.head_seq, 100);

    let three: usize = (98..=100).map(|s| frame(s).len()).sum();
    let got = load(&store, "s", ALL, three).unwrap();
    assert_eq!(seqs(&got.frames), vec![98, 99, 100]);
    let got = load(&store, "s", ALL, three - 1).unwrap();
    assert_eq!(seqs(&got.frames), vec![99, 100]);

    let got = load(&store, "s", 0, ALL).unwrap();
    assert!(got.frames.is_empty());
    assert_eq!(got.meta.head_seq, 100);
    // No metadata was ever put: the listing still has the session.
    assert_eq!(got.meta.cwd, "");
    store.close(Duration::from_secs(5));
}

#[test]
fn lines_longer_than_a_read_chunk() {
    let dir = TempDir::new("long");
    let (store, _) = open(&dir, 10);
    let big = |s: u64| -> Bytes {
        let pad = "x".repeat(150_000 + s as usize);
        format!(r#"{{"rseq":{s},"pad":"{pad}"}}"#).into()
    };
    for s in 1..=8 {
        store.append("s", if s % 2 == 1 { big(s) } else { frame(s) });
    }
    store.append("s", frame(9));
    let got = load(&store, "s", ALL, ALL).unwrap();
    assert_eq!(seqs(&got.frames), (1..=9).collect::<Vec<_>>());
    assert_eq!(got.frames[0], big(1));
    assert_eq!(got.frames[6], big(7));
    store.close(Duration::from_secs(5));
}

#[test]
fn unknown_session_is_not_found() {
    let dir = TempDir::new("unknown");
    let (store, _) = open(&dir, 10);
    let e = load(&store, "nope", ALL, ALL).unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "no stored session \"nope\"; list sessions with session/list"
    );
    store.close(Duration::from_secs(5));
}

#[test]
fn prunes_to_keep_sessions_at_open() {
    let dir = TempDir::new("prune-open");
    for (id, updated) in [("a", 1), ("b", 4), ("c", 2), ("d", 3)] {
        let mut bytes = format::header_line(id);
        bytes.extend(format::meta_line(&MetaRecord::from(&meta(id, updated))));
        fs::create_dir_all(dir.sessions()).unwrap();
        fs::write(dir.file(id), bytes).unwrap();
    }
    let (store, listed) = open(&dir, 2);
    let ids: Vec<_> = listed.iter().map(|m| m.session_id.as_str()).collect();
    assert_eq!(ids, ["b", "d"]);
    let mut want = vec![file_name("b"), file_name("d")];
    want.sort();
    assert_eq!(dir.names(), want);
    store.close(Duration::from_secs(5));
}

#[test]
fn prunes_when_a_new_session_is_created() {
    let dir = TempDir::new("prune-new");
    let (store, _) = open(&dir, 2);
    store.put_meta(meta("old", 1));
    store.put_meta(meta("mid", 2));
    store.append("old", frame(1));
    store.put_meta(meta("new", 3));
    store.append("new", frame(1));
    store.close(Duration::from_secs(5));
    let mut want = vec![file_name("mid"), file_name("new")];
    want.sort();
    assert_eq!(dir.names(), want);
    let (store, listed) = open(&dir, 2);
    let ids: Vec<_> = listed.iter().map(|m| m.session_id.as_str()).collect();
    assert_eq!(ids, ["new", "mid"]);
    store.close(Duration::from_secs(5));
}

#[test]
fn unsafe_ids_stay_inside() {
    let dir = TempDir::new("unsafe");
    let ids = [
        "../../etc",
        "..",
        ".",
        "",
        "/etc/passwd",
        "a/b\\c",
        "nul\0byte",
        "ünïcødé ✓",
        ".hidden",
        &"z".repeat(1000),
    ];
    let (store, _) = open(&dir, 100);
    for (i, id) in ids.iter().enumerate() {
        store.put_meta(meta(id, i as u64));
        store.append(id, frame(1));
    }
    for id in ids {
        let got = load(&store, id, ALL, ALL).unwrap();
        assert_eq!(got.meta.session_id, id);
        assert_eq!(seqs(&got.frames), vec![1]);
        let name = file_name(id);
        assert!(!name.starts_with('.') && !name.contains('/') && !name.contains(".."));
        assert!(name.len() < 100, "{name}");
    }
    // Too long to store.
    let huge = "y".repeat(MAX_SESSION_ID_BYTES + 1);
    store.put_meta(meta(&huge, 1));
    store.close(Duration::from_secs(5));
    assert_eq!(dir.names().len(), ids.len());
    assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1, "only sessions/");
    let (store, listed) = open(&dir, 100);
    assert_eq!(listed.len(), ids.len());
    store.close(Duration::from_secs(5));
}

#[test]
fn files_that_are_not_transcripts() {
    let dir = TempDir::new("foreign");
    fs::create_dir_all(dir.sessions()).unwrap();
    fs::write(dir.sessions().join("junk.jsonl"), b"\x00\x01garbage\n{}\n").unwrap();
    fs::write(dir.sessions().join("noline.jsonl"), b"no newline at all").unwrap();
    fs::write(dir.sessions().join("empty.jsonl"), b"").unwrap();
    fs::write(
        dir.sessions().join("future.jsonl"),
        b"{\"acpRelayTranscript\":9,\"sessionId\":\"f\"}\n",
    )
    .unwrap();
    fs::write(dir.sessions().join("x.jsonl.tmp"), b"leftover").unwrap();
    fs::write(dir.sessions().join("notes.txt"), b"mine").unwrap();
    // A transcript under the wrong name.
    fs::write(
        dir.sessions().join("renamed.jsonl"),
        format::header_line("r"),
    )
    .unwrap();
    write_file(&dir, "good", &lines(1..=2));

    let (store, listed) = open(&dir, 10);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].session_id, "good");
    let mut want = vec![
        "future.jsonl".to_string(),
        "junk.jsonl.corrupt".into(),
        "noline.jsonl.corrupt".into(),
        "notes.txt".into(),
        "renamed.jsonl.corrupt".into(),
        file_name("good"),
    ];
    want.sort();
    assert_eq!(dir.names(), want);

    // A foreign file where a session's transcript belongs is moved aside too.
    fs::write(dir.file("late"), b"not mine\n").unwrap();
    store.append("late", frame(1));
    assert_eq!(
        seqs(&load(&store, "late", ALL, ALL).unwrap().frames),
        vec![1]
    );
    assert!(
        dir.sessions()
            .join(format!("{}.corrupt", file_name("late")))
            .exists()
    );
    store.close(Duration::from_secs(5));
}

#[test]
fn compacts_past_the_file_bound() {
    let dir = TempDir::new("compact");
    let limits = StoreLimits {
        max_file_bytes: 16 << 10,
        ..StoreLimits::DEFAULT
    };
    let (store, _) = Store::open_with(&dir.0, 10, limits).unwrap();
    store.put_meta(meta("s", 7));
    for s in 1..=1000 {
        store.append("s", frame(s));
    }
    let got = load(&store, "s", ALL, ALL).unwrap();
    let len = fs::metadata(dir.file("s")).unwrap().len();
    assert!(len <= limits.max_file_bytes, "{len}");
    let got_seqs = seqs(&got.frames);
    assert_eq!(*got_seqs.last().unwrap(), 1000);
    assert!(got_seqs.len() > 50, "{}", got_seqs.len());
    assert!(got_seqs.windows(2).all(|w| w[1] == w[0] + 1));
    assert_eq!(
        got.meta,
        SessionMeta {
            head_seq: 1000,
            ..meta("s", 7)
        }
    );
    // A frame larger than a quarter of the bound is not stored.
    store.append(
        "s",
        format!(r#"{{"rseq":1001,"p":"{}"}}"#, "x".repeat(5000)).into(),
    );
    store.append("s", frame(1002));
    let got = load(&store, "s", 1, ALL).unwrap();
    assert_eq!(seqs(&got.frames), vec![1002]);
    store.close(Duration::from_secs(5));
}

#[test]
fn a_full_queue_drops_frames_and_counts_them() {
    let dir = TempDir::new("full");
    let limits = StoreLimits {
        queue_bytes: 0,
        ..StoreLimits::DEFAULT
    };
    let (store, _) = Store::open_with(&dir.0, 10, limits).unwrap();
    store.put_meta(meta("s", 1));
    for s in 1..=3 {
        store.append("s", frame(s));
    }
    assert_eq!(store.dropped(), 3);
    let got = load(&store, "s", ALL, ALL).unwrap();
    assert!(got.frames.is_empty());
    assert_eq!(got.meta.title.as_deref(), Some("title of s"));
    store.close(Duration::from_secs(5));
}

#[test]
fn malformed_frames_are_not_stored() {
    let dir = TempDir::new("malformed");
    let (store, _) = open(&dir, 10);
    store.append("s", frame(1));
    store.append("s", Bytes::from_static(b"{\"jsonrpc\":\"2.0\"}"));
    store.append("s", Bytes::from_static(b"{\"rseq\":2,\n\"a\":1}"));
    store.append("s", frame(3));
    let got = load(&store, "s", ALL, ALL).unwrap();
    // Frame 2 was refused: its gap is the record of the hole.
    assert_eq!(seqs(&got.frames), vec![1, 3]);
    assert_eq!(
        smol::block_on(store.load_range("s", 0, 3, usize::MAX)).unwrap(),
        None,
        "a range replay never crosses a hole"
    );
    store.close(Duration::from_secs(5));
}

#[test]
fn many_sessions_past_the_open_file_bound() {
    let dir = TempDir::new("lru");
    let (store, _) = open(&dir, 1000);
    let n = MAX_OPEN_FILES as u64 * 2 + 3;
    for round in 1..=3 {
        for i in 0..n {
            store.append(&format!("s{i}"), frame(round));
        }
    }
    for i in 0..n {
        let got = load(&store, &format!("s{i}"), ALL, ALL).unwrap();
        assert_eq!(seqs(&got.frames), vec![1, 2, 3]);
    }
    store.close(Duration::from_secs(5));
}

#[test]
fn error_messages_say_what_to_do() {
    let e = StoreError::NotATranscript {
        path: "/d/sessions/x.jsonl".into(),
    };
    assert_eq!(
        e.to_string(),
        "/d/sessions/x.jsonl is not an acp-relay transcript; move it out of the sessions directory"
    );
}

#[test]
fn metadata_is_repeated_so_a_backward_read_finds_it_soon() {
    let dir = TempDir::new("meta-repeat");
    let (store, _) = open(&dir, 10);
    store.put_meta(meta("s", 3));
    let n = META_REPEAT_BYTES / frame(1).len() as u64 * 3;
    for s in 1..=n {
        store.append("s", frame(s));
    }
    store.close(Duration::from_secs(5));
    let text = fs::read(dir.file("s")).unwrap();
    let metas = text
        .split(|b| *b == b'\n')
        .filter(|l| l.starts_with(b"{\"meta\":"))
        .count();
    assert!((3..=4).contains(&metas), "{metas}");
    let (store, listed) = open(&dir, 10);
    assert_eq!(
        listed,
        vec![SessionMeta {
            head_seq: n,
            ..meta("s", 3)
        }]
    );
    store.close(Duration::from_secs(5));
}

#[test]
fn the_handle_can_move_to_another_thread() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Store>();
    send_sync::<StoreError>();
}

/// Waits until the store acknowledged `session` up to `reserved` / `synced`.
fn wait_ack(store: &Store, session: &str, reserved: u64, synced: u64) -> DurableAck {
    let mut got = DurableAck::default();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while got.reserved < reserved || got.synced < synced {
        assert!(
            std::time::Instant::now() < deadline,
            "no ack for {session} up to {reserved}/{synced}: {got:?}"
        );
        for (s, a) in poll_acks(store) {
            if s == session {
                got.reserved = got.reserved.max(a.reserved);
                got.synced = got.synced.max(a.synced);
            }
        }
    }
    got
}

/// The acknowledgements that arrive within 100 ms (none, often).
fn poll_acks(store: &Store) -> Vec<(String, DurableAck)> {
    smol::block_on(futures_lite::future::or(
        async {
            let _ = store.acks_ready().await;
        },
        async {
            smol::Timer::after(Duration::from_millis(100)).await;
        },
    ));
    store.take_acks()
}

/// Log lines of this test process (a logger installed once), to count them.
mod logs {
    use std::sync::{Mutex, Once};

    /// Lines kept at most: enough for any test here.
    const MAX_LINES: usize = 10_000;
    static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

    struct Capture;

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            if let Ok(mut lines) = LINES.lock()
                && lines.len() < MAX_LINES
            {
                lines.push(format!("{} {}", record.level(), record.args()));
            }
        }
        fn flush(&self) {}
    }

    /// Starts capturing (once per process).
    pub fn capture() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            log::set_logger(&Capture).expect("no other logger in unit tests");
            log::set_max_level(log::LevelFilter::Info);
        });
    }

    /// The captured lines that contain `needle`.
    pub fn with(needle: &str) -> Vec<String> {
        LINES
            .lock()
            .map(|l| l.iter().filter(|l| l.contains(needle)).cloned().collect())
            .unwrap_or_default()
    }
}

#[test]
fn a_spell_logs_its_first_failure_and_its_end_with_the_count() {
    let mut spell = writer::Spell::default();
    assert_eq!(spell.succeeded(), None, "no spell, nothing to end");
    assert!(spell.failed(), "the first failure is logged");
    for _ in 0..115 {
        assert!(!spell.failed(), "the rest are counted");
    }
    assert!(spell.failing());
    assert_eq!(spell.succeeded(), Some(116));
    assert_eq!(spell.succeeded(), None);
    assert!(spell.failed(), "a later spell is logged anew");
}

#[test]
fn a_full_disk_is_one_failing_spell_however_many_flushes() {
    logs::capture();
    let dir = TempDir::new("full-disk");
    let (store, _) = open(&dir, 10);
    // Every write to this transcript fails with ENOSPC, as on a full disk.
    std::os::unix::fs::symlink("/dev/full", dir.file("full-disk")).unwrap();
    let mut n = 0;
    for turn in 1..=7 {
        for _ in 0..20 {
            n += 1;
            store.append("full-disk", frame(n));
        }
        // Turn ends are still acknowledged: live service goes on.
        store.sync_upto("full-disk", n);
        wait_ack(&store, "full-disk", 0, n);
        assert_eq!(store.failing_spells(), 1, "turn {turn}");
    }
    // The disk has room again: the spell ends, and a later one is counted anew.
    fs::remove_file(dir.file("full-disk")).unwrap();
    n += 1;
    store.append("full-disk", frame(n));
    store.sync_upto("full-disk", n);
    wait_ack(&store, "full-disk", 0, n);
    let got = load(&store, "full-disk", ALL, ALL).unwrap();
    assert_eq!(seqs(&got.frames), vec![n]);
    assert_eq!(store.failing_spells(), 1);
    store.close(Duration::from_secs(5));
    // One warning, and one line that ends the spell with its count: every
    // turn's flush failed.
    let lines = logs::with("\"full-disk\"");
    let warned = lines
        .iter()
        .filter(|l| l.contains("writing its transcript failed"))
        .count();
    assert_eq!(warned, 1, "{lines:#?}");
    let ended: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.split("writing its transcript again after ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(ended.len(), 1, "{lines:#?}");
    assert!(
        ended[0] >= 7,
        "{} failed writes counted for 7 failing turns: {lines:#?}",
        ended[0]
    );
}

#[test]
fn reservations_are_durable_and_a_clean_end_is_exact() {
    let dir = TempDir::new("reserve");
    let (store, _) = open(&dir, 10);
    store.put_meta(meta("s", 1));
    for s in 1..=3 {
        store.append("s", frame(s));
    }
    store.reserve("s", 4096);
    assert_eq!(wait_ack(&store, "s", 4096, 0).reserved, 4096);
    // A later metadata line never lowers the reservation.
    store.put_meta(meta("s", 2));
    store.close(Duration::from_secs(5));
    let (store, listed) = open(&dir, 10);
    assert_eq!(
        listed[0].head_seq, 4096,
        "numbering resumes past the reservation"
    );
    let got = load(&store, "s", ALL, ALL).unwrap();
    assert_eq!(seqs(&got.frames), vec![1, 2, 3]);
    assert_eq!(got.meta.head_seq, 4096);
    store.end("s", 3);
    store.close(Duration::from_secs(5));
    let (store, listed) = open(&dir, 10);
    assert_eq!(listed[0].head_seq, 3, "a clean end is recorded exactly");
    store.delete("s");
    store.close(Duration::from_secs(5));
    let (_store, listed) = open(&dir, 10);
    assert!(listed.is_empty());
}

#[test]
fn a_reservation_is_taken_ahead_of_the_frames_queued() {
    let dir = TempDir::new("reserve-first");
    let (store, _) = open(&dir, 10);
    // ~25 MB of frames queued for one session, then its fsync barrier...
    let pad = "x".repeat(400);
    let n = 60_000u64;
    for seq in 1..=n {
        store.append("s", format!(r#"{{"rseq":{seq},"pad":"{pad}"}}"#).into());
    }
    store.sync_upto("s", n);
    // ...then another session's reservation: it names no frame, so it is
    // acknowledged before the barrier queued ahead of it.
    store.reserve("t", 4096);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut barrier_first = false;
    loop {
        assert!(std::time::Instant::now() < deadline, "no ack for t");
        let acks = poll_acks(&store);
        let reserved = acks.iter().any(|(s, a)| s == "t" && a.reserved >= 4096);
        let synced = acks.iter().any(|(s, a)| s == "s" && a.synced >= n);
        if reserved {
            break;
        }
        barrier_first |= synced;
    }
    assert!(
        !barrier_first,
        "the reservation waited behind the frames queued before it"
    );
    assert_eq!(wait_ack(&store, "s", 0, n).synced, n);
    assert_eq!(store.dropped(), 0);
    store.close(Duration::from_secs(10));
    let (_store, listed) = open(&dir, 10);
    let t = listed
        .iter()
        .find(|m| m.session_id == "t")
        .expect("t listed");
    assert_eq!(t.head_seq, 4096, "the reservation is on disk");
}

#[test]
fn a_reservation_the_disk_refuses_is_never_acknowledged_until_it_is_on_disk() {
    let dir = TempDir::new("reserve-full");
    let (store, _) = open(&dir, 10);
    std::os::unix::fs::symlink("/dev/full", dir.file("full-disk")).unwrap();
    store.reserve("full-disk", 65_536);
    // Two barriers through the queue: by the second one's ack the writer has
    // tried the reservation (it is taken after every operation).
    let mut reserved = 0;
    for barrier in 1..=2 {
        store.sync_upto("other", barrier);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut synced = 0;
        while synced < barrier {
            assert!(std::time::Instant::now() < deadline, "no barrier ack");
            for (s, a) in poll_acks(&store) {
                match s.as_str() {
                    "other" => synced = synced.max(a.synced),
                    "full-disk" => reserved = reserved.max(a.reserved),
                    _ => {}
                }
            }
        }
    }
    // Acknowledged, a number past it could be sent and, after a crash, named
    // again by a relay that read the older reservation.
    assert_eq!(
        reserved, 0,
        "a reservation the disk refused was acknowledged"
    );
    // The disk has room again: the writer's retry records it, then acks it.
    fs::remove_file(dir.file("full-disk")).unwrap();
    assert!(wait_ack(&store, "full-disk", 65_536, 0).reserved >= 65_536);
    store.close(Duration::from_secs(10));
    let (_store, listed) = open(&dir, 10);
    let m = listed
        .iter()
        .find(|m| m.session_id == "full-disk")
        .expect("listed");
    assert_eq!(m.head_seq, 65_536, "the reservation is on disk");
}
