//! One live session ("unit"): its [`Hub`] (replay ring and viewing sockets),
//! its [`Driver`] (agent session, turn, asks) and the metadata the router
//! lists and stores (relay session id, title, times, persistence). Plain
//! data; the router drives it. Performs no I/O.

use crate::core::driver::Driver;
use crate::core::hub::Hub;
use crate::core::lease::Lease;
use crate::core::ring::ReplayRing;
use serde_json::{Value, json};

#[derive(Debug)]
pub struct Unit {
    /// The relay's session id: stable for the life of the session (None until
    /// the first `session/new` answer names it).
    pub session_id: Option<String>,
    /// Its agent kind and project (its jail); fixed for the session's life.
    pub place: crate::core::ids::Place,
    /// Claimed by a device's `session/new` (the eagerly opened default starts unclaimed).
    pub claimed: bool,
    /// The ring, the sockets viewing it, and what its frames wait on.
    pub hub: Hub,
    /// The session level: agent session, turn, asks.
    pub driver: Driver,
    pub epoch: u64,
    pub title: Option<String>,
    /// Unix milliseconds of the last frame.
    pub updated_ms: u64,
    /// Creation order, for eviction.
    pub opened_ms: u64,
    /// When the session was first created (kept across restarts).
    pub created_ms: u64,
    /// Its transcript is waiting to be read back from the store.
    pub restoring: bool,
    /// Its metadata has been written to the store.
    pub persisted: bool,
    /// The head recorded in the store when the session was resumed.
    pub stored_head: u64,
}

impl Unit {
    pub fn new(ring: ReplayRing, epoch: u64, now_ms: u64) -> Self {
        Unit {
            session_id: None,
            place: Default::default(),
            claimed: false,
            hub: Hub::new(ring),
            driver: Driver::new(),
            epoch,
            title: None,
            updated_ms: now_ms,
            opened_ms: now_ms,
            created_ms: now_ms,
            restoring: false,
            persisted: false,
            stored_head: 0,
        }
    }

    pub fn busy(&self) -> bool {
        self.driver.busy()
    }

    /// The relay id of the next ask: `perm:<session>:<n>`.
    pub fn mint_ask_id(&mut self) -> String {
        self.driver.mint_ask_id(self.session_id.as_deref())
    }

    /// The `relay_welcome` a `/ws` socket gets when it attaches: where the
    /// session's stream stands (`reset`: the socket's `last_seq` cannot be
    /// served, so what follows replaces what it has), its open asks and the
    /// lease.
    pub fn welcome(&self, reset: bool, lease: &Lease) -> Value {
        json!({
            "type": "relay_welcome",
            "epoch": self.epoch,
            "sessionId": self.session_id,
            "headSeq": self.hub.ring.head(),
            "reset": reset,
            "busy": self.busy(),
            "pendingPermissionIds": self.driver.ask_ids().collect::<Vec<_>>(),
            "lease": lease.enabled(),
            "holder": lease.holder().map(|c| c.0.clone()),
            "controlEpoch": lease.epoch(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::driver::{Ask, Turn};
    use crate::core::ids::{AgentId, ClientId, SocketId};

    #[test]
    fn ask_ids_carry_the_relay_session_id() {
        let mut u = Unit::new(ReplayRing::new(4, 1024), 1, 0);
        assert_eq!(u.mint_ask_id(), "perm:-:1");
        u.session_id = Some("s1".into());
        assert_eq!(u.mint_ask_id(), "perm:s1:2");
    }

    #[test]
    fn the_welcome_says_where_the_stream_stands() {
        let mut u = Unit::new(ReplayRing::new(4, 1024), 7, 0);
        u.session_id = Some("s1".into());
        u.hub.ring.push(b"{}");
        u.hub.ring.push(b"{}");
        let id = u.mint_ask_id();
        let frame = u.hub.ring.push(b"{}").expect("stamped");
        u.driver.add_ask(
            id,
            Ask {
                agent_id: json!(1),
                agent: AgentId(1),
                frame,
            },
        );
        u.driver.start_turn(Turn {
            client: ClientId("c".into()),
            socket: SocketId(1),
            device_id: json!(1),
            agent_req: 1,
        });
        let mut lease = Lease::new(true);
        lease.take(&ClientId("c".into()));
        assert_eq!(
            u.welcome(true, &lease),
            json!({
                "type": "relay_welcome",
                "epoch": 7,
                "sessionId": "s1",
                "headSeq": 3,
                "reset": true,
                "busy": true,
                "pendingPermissionIds": ["perm:s1:1"],
                "lease": true,
                "holder": "c",
                "controlEpoch": lease.epoch(),
            })
        );
        let off = Unit::new(ReplayRing::new(4, 1024), 2, 0).welcome(false, &Lease::new(false));
        assert_eq!(off["sessionId"], Value::Null);
        assert_eq!(
            (off["headSeq"].clone(), off["busy"].clone()),
            (json!(0), json!(false))
        );
        assert_eq!(off["lease"], false);
    }
}
