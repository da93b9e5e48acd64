//! Who may open a socket: failed-authentication rate limiting per peer
//! address, connection caps per peer and in total, and the browser `Origin`
//! check. Pure bookkeeping with time passed in; performs no I/O.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed authentications allowed per peer address within [`FAIL_WINDOW`].
pub const MAX_AUTH_FAILURES: u32 = 10;
/// Window over which failures are counted; also the `Retry-After` horizon.
pub const FAIL_WINDOW: Duration = Duration::from_secs(60);
/// Peer addresses whose failures are remembered at once.
pub const MAX_TRACKED_PEERS: usize = 4096;

/// Connection caps, from flags.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    pub max_conns: usize,
    pub max_conns_per_peer: usize,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            max_conns: 256,
            max_conns_per_peer: 32,
        }
    }
}

/// Why an upgrade is refused before it happens.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Too many failed authentications: 429 with `Retry-After` seconds.
    RateLimited { retry_after: u64 },
    /// Too many connections: 503.
    Full { per_peer: bool },
}

#[derive(Debug, Default)]
struct Failures {
    count: u32,
    since: Option<Instant>,
}

/// Admission bookkeeping for the listener.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    failures: HashMap<IpAddr, Failures>,
    conns: HashMap<IpAddr, usize>,
    total: usize,
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Self {
        Admission {
            limits,
            failures: HashMap::new(),
            conns: HashMap::new(),
            total: 0,
        }
    }

    /// Checked before the token: a peer over its failure budget is refused.
    pub fn check_rate(&mut self, peer: IpAddr, now: Instant) -> Result<(), Refusal> {
        let Some(f) = self.failures.get_mut(&peer) else {
            return Ok(());
        };
        let since = f.since.unwrap_or(now);
        let elapsed = now.saturating_duration_since(since);
        if elapsed >= FAIL_WINDOW {
            self.failures.remove(&peer);
            return Ok(());
        }
        if f.count >= MAX_AUTH_FAILURES {
            let left = FAIL_WINDOW - elapsed;
            return Err(Refusal::RateLimited {
                retry_after: left.as_secs().max(1),
            });
        }
        Ok(())
    }

    /// Records a failed authentication from `peer`.
    pub fn failed(&mut self, peer: IpAddr, now: Instant) {
        if !self.failures.contains_key(&peer) && self.failures.len() >= MAX_TRACKED_PEERS {
            // Forget the entries whose window is over; if none, the oldest.
            self.failures.retain(|_, f| {
                f.since
                    .is_some_and(|s| now.saturating_duration_since(s) < FAIL_WINDOW)
            });
            if self.failures.len() >= MAX_TRACKED_PEERS
                && let Some(oldest) = self
                    .failures
                    .iter()
                    .min_by_key(|(_, f)| f.since)
                    .map(|(ip, _)| *ip)
            {
                self.failures.remove(&oldest);
            }
        }
        let f = self.failures.entry(peer).or_default();
        if f.since
            .is_none_or(|s| now.saturating_duration_since(s) >= FAIL_WINDOW)
        {
            *f = Failures {
                count: 0,
                since: Some(now),
            };
        }
        f.count += 1;
    }

    /// Takes a connection slot for an authenticated upgrade.
    pub fn open(&mut self, peer: IpAddr) -> Result<(), Refusal> {
        if self.total >= self.limits.max_conns {
            return Err(Refusal::Full { per_peer: false });
        }
        let n = self.conns.entry(peer).or_insert(0);
        if *n >= self.limits.max_conns_per_peer {
            return Err(Refusal::Full { per_peer: true });
        }
        *n += 1;
        self.total += 1;
        Ok(())
    }

    /// Gives a slot back when a socket ends.
    pub fn close(&mut self, peer: IpAddr) {
        if let Some(n) = self.conns.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.conns.remove(&peer);
            }
            self.total = self.total.saturating_sub(1);
        }
    }
}

/// Whether a browser `Origin` may open a socket: none (not a browser), the
/// relay's own origin (same host as the `Host` header), or an allowed one.
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin.map(|o| o.trim_end_matches('/')) else {
        return true;
    };
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let Some(host) = host else { return false };
    let bare = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    bare.is_some_and(|b| b.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rate_limits_failures_per_peer_and_forgets_after_the_window() {
        let mut a = Admission::new(AdmissionLimits::default());
        let t0 = Instant::now();
        for _ in 0..MAX_AUTH_FAILURES {
            assert_eq!(a.check_rate(ip("10.0.0.1"), t0), Ok(()));
            a.failed(ip("10.0.0.1"), t0);
        }
        assert_eq!(
            a.check_rate(ip("10.0.0.1"), t0 + Duration::from_secs(5)),
            Err(Refusal::RateLimited { retry_after: 55 })
        );
        assert_eq!(
            a.check_rate(ip("10.0.0.2"), t0),
            Ok(()),
            "other peers unaffected"
        );
        assert_eq!(a.check_rate(ip("10.0.0.1"), t0 + FAIL_WINDOW), Ok(()));
    }

    #[test]
    fn caps_connections() {
        let mut a = Admission::new(AdmissionLimits {
            max_conns: 3,
            max_conns_per_peer: 2,
        });
        assert_eq!(a.open(ip("1.1.1.1")), Ok(()));
        assert_eq!(a.open(ip("1.1.1.1")), Ok(()));
        assert_eq!(a.open(ip("1.1.1.1")), Err(Refusal::Full { per_peer: true }));
        assert_eq!(a.open(ip("2.2.2.2")), Ok(()));
        assert_eq!(
            a.open(ip("3.3.3.3")),
            Err(Refusal::Full { per_peer: false })
        );
        a.close(ip("1.1.1.1"));
        assert_eq!(a.open(ip("3.3.3.3")), Ok(()));
    }

    #[test]
    fn tracked_peers_are_bounded() {
        let mut a = Admission::new(AdmissionLimits::default());
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED_PEERS as u32 + 10) {
            a.failed(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(a.failures.len() <= MAX_TRACKED_PEERS);
    }

    #[test]
    fn origins() {
        let allowed = vec!["https://app.example".to_string()];
        assert!(origin_allowed(None, Some("h:1"), &allowed));
        assert!(origin_allowed(
            Some("http://127.0.0.1:7447"),
            Some("127.0.0.1:7447"),
            &allowed
        ));
        assert!(origin_allowed(
            Some("https://app.example/"),
            Some("127.0.0.1:7447"),
            &allowed
        ));
        assert!(!origin_allowed(
            Some("https://evil.example"),
            Some("127.0.0.1:7447"),
            &allowed
        ));
        assert!(!origin_allowed(
            Some("null"),
            Some("127.0.0.1:7447"),
            &allowed
        ));
    }
}
