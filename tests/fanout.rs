//! Two devices on one session see the same stamped stream.
mod common;
use common::*;

#[test]
fn prompt_streams_to_two_devices_with_identical_rseq() {
    let relay = Relay::start(&[]);
    let mut a = relay.device("phone", "");
    let mut b = relay.device("laptop", "");
    let session = open_session(&mut a);
    b.recv_until("welcome", |v| v["type"] == "relay_welcome");

    let id = a.request(
        "session/prompt",
        prompt_params(&session, "/chunks 4\nhello relay"),
    );
    let done_a = a.response(&id);
    assert_eq!(done_a["result"]["stopReason"], "end_turn", "{done_a}");
    let done_b = b.response(&id);
    assert_eq!(done_a, done_b);

    let fa = stamped_of(&a, &done_a);
    let fb = stamped_of(&b, &done_b);
    assert_eq!(fa, fb, "both devices see the same frames");
    let seqs: Vec<u64> = fa.iter().map(|v| v["rseq"].as_u64().unwrap()).collect();
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "rseq strictly +1: {seqs:?}");
    }
    // rseq is the first key, spliced in as bytes
    let raw_stamped: Vec<&String> = a.raw.iter().filter(|t| t.contains("\"rseq\":")).collect();
    assert_eq!(raw_stamped.len(), fa.len());
    assert!(
        raw_stamped.iter().all(|t| t.starts_with("{\"rseq\":")),
        "{raw_stamped:?}"
    );
    let chunks = fa
        .iter()
        .filter(|v| v["params"]["update"]["sessionUpdate"] == "agent_message_chunk")
        .count();
    assert_eq!(chunks, 4, "{fa:?}");
    assert!(agent_text(&fa).contains("hello relay"));
    // the user's prompt is in the stream too
    assert!(
        fa.iter()
            .any(|v| v["params"]["update"]["sessionUpdate"] == "user_message_chunk")
    );
}
