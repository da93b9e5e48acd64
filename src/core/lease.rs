//! The controller lease: which client may drive, and which methods need it.
//! It is coordination among one person's devices, not authorization (the
//! token is the boundary). Performs no I/O.

use crate::core::ids::ClientId;
use crate::core::rpc::{RpcError, code};

/// Holder and epoch of the lease. With the lease off everyone may drive.
#[derive(Debug, Default)]
pub struct Lease {
    enabled: bool,
    holder: Option<ClientId>,
    epoch: u64,
}

/// What a privileged call did to the lease.
#[derive(Debug, PartialEq)]
pub enum Grant {
    /// The caller already held it, or the lease is off.
    Held,
    /// The lease was free and the caller now holds it: broadcast the change.
    Claimed,
}

impl Lease {
    pub fn new(enabled: bool) -> Self {
        Lease {
            enabled,
            holder: None,
            epoch: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn holder(&self) -> Option<&ClientId> {
        self.holder.as_ref()
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether `method` drives the agent or the box (and so needs the lease).
    pub fn privileged(method: &str) -> bool {
        match method {
            "initialize" | "session/list" | "_relay/take_control" => false,
            "_relay/terminal/list" | "_relay/terminal/attach" | "_relay/terminal/detach" => false,
            m if m.starts_with("_relay/fs/") || m.starts_with("_relay/git/") => false,
            m => {
                m.starts_with("session/")
                    || m == "authenticate"
                    || m == "_relay/apply_edit"
                    || m == "_relay/session/delete"
                    || m.starts_with("_relay/terminal/")
            }
        }
    }

    /// Checks that `client` may make a privileged call; claims a free lease.
    pub fn check(&mut self, client: &ClientId) -> Result<Grant, RpcError> {
        if !self.enabled {
            return Ok(Grant::Held);
        }
        match &self.holder {
            Some(h) if h == client => Ok(Grant::Held),
            Some(h) => Err(RpcError::new(
                code::NOT_CONTROLLER,
                format!(
                    "device '{h}' has control; send _relay/take_control first to drive from this device"
                ),
            )),
            None => {
                self.take(client);
                Ok(Grant::Claimed)
            }
        }
    }

    /// Hands control to `client` and bumps the epoch.
    pub fn take(&mut self, client: &ClientId) {
        self.holder = Some(client.clone());
        self.epoch += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> ClientId {
        ClientId(s.into())
    }

    #[test]
    fn off_lets_everyone_drive() {
        let mut l = Lease::new(false);
        assert_eq!(l.check(&c("a")), Ok(Grant::Held));
        assert_eq!(l.check(&c("b")), Ok(Grant::Held));
        assert_eq!(l.holder(), None);
    }

    #[test]
    fn first_driver_claims_then_take_control_moves_it() {
        let mut l = Lease::new(true);
        assert_eq!(l.check(&c("a")), Ok(Grant::Claimed));
        assert_eq!(l.epoch(), 1);
        assert_eq!(l.check(&c("a")), Ok(Grant::Held));
        assert_eq!(l.check(&c("b")).unwrap_err().code, code::NOT_CONTROLLER);
        l.take(&c("b"));
        assert_eq!(l.epoch(), 2);
        assert_eq!(l.check(&c("b")), Ok(Grant::Held));
        assert_eq!(l.check(&c("a")).unwrap_err().code, code::NOT_CONTROLLER);
    }

    #[test]
    fn privileged_methods() {
        for m in [
            "session/prompt",
            "session/cancel",
            "session/new",
            "session/load",
            "session/set_mode",
            "authenticate",
            "_relay/apply_edit",
            "_relay/terminal/open",
        ] {
            assert!(Lease::privileged(m), "{m}");
        }
        for m in [
            "initialize",
            "session/list",
            "_relay/fs/tree",
            "_relay/git/diff",
            "_relay/take_control",
            "_relay/terminal/attach",
        ] {
            assert!(!Lease::privileged(m), "{m}");
        }
    }
}
