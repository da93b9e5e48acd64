//! The memory budget across rings: idle rings shrink first and the total
//! stays within `--memory-budget`.

use super::*;
use serde_json::json;

#[test]
fn idle_rings_shrink_first_and_the_total_stays_within_the_budget() {
    let budget = 64 << 10;
    let mut sim = Sim::new(RouterConfig {
        memory_budget: budget,
        ..RouterConfig::default()
    });
    sim.answer(A1, "initialize", init_result(json!({})));
    let s = sim.open("c");
    sim.new_session(s, 1, A1, "idle");
    sim.new_session(s, 2, A1, "viewed");
    // The socket views "viewed"; "idle" has no viewer and no turn.
    let text = "x".repeat(1000);
    for _ in 0..40 {
        sim.update(A1, "idle", chunk(&text));
        sim.update(A1, "viewed", chunk(&text));
        let used = sim.r.memory_bytes();
        assert!(used <= budget, "{used} > {budget}");
    }
    let bytes = |sim: &Sim, s: &str| sim.r.units[&sim.unit_of(s)].hub.ring.bytes();
    let (idle, viewed) = (bytes(&sim, "idle"), bytes(&sim, "viewed"));
    assert!(idle < viewed, "idle {idle} viewed {viewed}");
    assert_eq!(sim.r.ring_bytes(), idle + viewed);
}
