//! Who may open a socket: failed-authentication rate limiting per peer
//! address, caps on connections that have not authenticated yet and on
//! sockets (per peer and in total), refusal logging once per address per
//! interval, and the browser `Origin` check. Pure bookkeeping with time
//! passed in; performs no I/O.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed authentications allowed per peer address within [`FAIL_WINDOW`].
pub const MAX_AUTH_FAILURES: u32 = 10;
/// Window over which failures are counted; also the `Retry-After` horizon.
pub const FAIL_WINDOW: Duration = Duration::from_secs(60);
/// Peer addresses whose failures are remembered at once.
pub const MAX_TRACKED_PEERS: usize = 4096;

/// Connections not yet authenticated (TCP accepted, request head not yet
/// answered) allowed in total, whatever their address.
pub const MAX_PREAUTH: usize = 64;
/// Connections not yet authenticated allowed from one address: one address
/// holding idle connections never takes the slots of everyone else.
pub const MAX_PREAUTH_PER_PEER: usize = 16;
/// A refusal from one address is logged at most once per interval; the line
/// after it carries how many were refused meanwhile.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Connection caps, from flags.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    pub max_conns: usize,
    pub max_conns_per_peer: usize,
    /// Unauthenticated connections in total ([`MAX_PREAUTH`]).
    pub max_preauth: usize,
    /// Unauthenticated connections per address ([`MAX_PREAUTH_PER_PEER`]).
    pub max_preauth_per_peer: usize,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            max_conns: 256,
            max_conns_per_peer: 32,
            max_preauth: MAX_PREAUTH,
            max_preauth_per_peer: MAX_PREAUTH_PER_PEER,
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
    /// Too many connections that have not authenticated yet: closed at accept.
    Unauthenticated { per_peer: bool },
}

/// Refusals from one address since its last log line.
#[derive(Debug)]
struct Quiet {
    logged: Instant,
    suppressed: u64,
}

/// Failed authentications from one address in the window that began `since`.
#[derive(Debug)]
struct Failures {
    count: u32,
    since: Instant,
}

/// Admission bookkeeping for the listener.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    failures: HashMap<IpAddr, Failures>,
    conns: HashMap<IpAddr, usize>,
    total: usize,
    /// Unauthenticated connections per address (entries are never zero).
    preauth: HashMap<IpAddr, usize>,
    preauth_total: usize,
    /// When each address last had a refusal logged (bounded by [`MAX_TRACKED_PEERS`]).
    quiet: HashMap<IpAddr, Quiet>,
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Self {
        Admission {
            limits,
            failures: HashMap::new(),
            conns: HashMap::new(),
            total: 0,
            preauth: HashMap::new(),
            preauth_total: 0,
            quiet: HashMap::new(),
        }
    }

    /// The caps in force.
    pub fn limits(&self) -> &AdmissionLimits {
        &self.limits
    }

    /// Takes an unauthenticated slot for a connection just accepted. The
    /// per-address cap is checked first, so a flood from one address is
    /// refused before it fills the total.
    pub fn begin(&mut self, peer: IpAddr) -> Result<(), Refusal> {
        let n = self.preauth.get(&peer).copied().unwrap_or(0);
        if n >= self.limits.max_preauth_per_peer {
            return Err(Refusal::Unauthenticated { per_peer: true });
        }
        if self.preauth_total >= self.limits.max_preauth {
            return Err(Refusal::Unauthenticated { per_peer: false });
        }
        self.preauth.insert(peer, n + 1);
        self.preauth_total += 1;
        Ok(())
    }

    /// Gives an unauthenticated slot back: the connection authenticated
    /// (and holds a socket slot now), got its HTTP answer, or ended.
    pub fn end(&mut self, peer: IpAddr) {
        give_back(&mut self.preauth, &mut self.preauth_total, peer);
    }

    /// Whether a refusal from `peer` is logged now: `Some(n)` with the number
    /// of refusals not logged since its last line, `None` to stay quiet.
    pub fn log_refusal(&mut self, peer: IpAddr, now: Instant) -> Option<u64> {
        if let Some(q) = self.quiet.get_mut(&peer) {
            if now.saturating_duration_since(q.logged) < LOG_INTERVAL {
                q.suppressed += 1;
                return None;
            }
            let n = q.suppressed;
            *q = Quiet {
                logged: now,
                suppressed: 0,
            };
            return Some(n);
        }
        if self.quiet.len() >= MAX_TRACKED_PEERS {
            self.quiet
                .retain(|_, q| now.saturating_duration_since(q.logged) < LOG_INTERVAL);
            if self.quiet.len() >= MAX_TRACKED_PEERS {
                // Every address is within its interval: forget them all
                // rather than grow (at worst a few extra lines).
                self.quiet.clear();
            }
        }
        self.quiet.insert(
            peer,
            Quiet {
                logged: now,
                suppressed: 0,
            },
        );
        Some(0)
    }

    /// Checked before the token: a peer over its failure budget is refused.
    pub fn check_rate(&mut self, peer: IpAddr, now: Instant) -> Result<(), Refusal> {
        let Some(f) = self.failures.get_mut(&peer) else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(f.since);
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
            self.failures
                .retain(|_, f| now.saturating_duration_since(f.since) < FAIL_WINDOW);
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
        let f = self.failures.entry(peer).or_insert(Failures {
            count: 0,
            since: now,
        });
        if now.saturating_duration_since(f.since) >= FAIL_WINDOW {
            *f = Failures {
                count: 0,
                since: now,
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
        give_back(&mut self.conns, &mut self.total, peer);
    }
}

/// Returns one of `peer`'s slots to a per-address count and its total; an
/// address whose count reaches zero leaves the map (entries are never zero).
fn give_back(per_peer: &mut HashMap<IpAddr, usize>, total: &mut usize, peer: IpAddr) {
    if let Some(n) = per_peer.get_mut(&peer) {
        *n -= 1;
        if *n == 0 {
            per_peer.remove(&peer);
        }
        *total = total.saturating_sub(1);
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
            ..AdmissionLimits::default()
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
    fn caps_unauthenticated_connections_per_peer_before_the_total() {
        let mut a = Admission::new(AdmissionLimits {
            max_preauth: 5,
            max_preauth_per_peer: 3,
            ..AdmissionLimits::default()
        });
        for _ in 0..3 {
            assert_eq!(a.begin(ip("10.0.0.9")), Ok(()));
        }
        for _ in 0..100 {
            assert_eq!(
                a.begin(ip("10.0.0.9")),
                Err(Refusal::Unauthenticated { per_peer: true })
            );
        }
        assert_eq!(a.begin(ip("10.0.0.1")), Ok(()), "others still get in");
        assert_eq!(a.begin(ip("10.0.0.2")), Ok(()));
        assert_eq!(
            a.begin(ip("10.0.0.3")),
            Err(Refusal::Unauthenticated { per_peer: false })
        );
        a.end(ip("10.0.0.9"));
        assert_eq!(a.begin(ip("10.0.0.3")), Ok(()));
        a.end(ip("10.0.0.4"));
        assert_eq!(a.preauth_total, 5, "ending an unknown peer changes nothing");
    }

    #[test]
    fn refusals_are_logged_once_per_interval_with_a_count() {
        let mut a = Admission::new(AdmissionLimits::default());
        let t0 = Instant::now();
        assert_eq!(a.log_refusal(ip("10.0.0.9"), t0), Some(0));
        for i in 1..=500 {
            assert_eq!(
                a.log_refusal(ip("10.0.0.9"), t0 + Duration::from_millis(i)),
                None
            );
        }
        assert_eq!(a.log_refusal(ip("10.0.0.1"), t0), Some(0), "per address");
        assert_eq!(a.log_refusal(ip("10.0.0.9"), t0 + LOG_INTERVAL), Some(500));
        assert_eq!(
            a.log_refusal(ip("10.0.0.9"), t0 + LOG_INTERVAL * 3),
            Some(0)
        );
        for i in 0..(MAX_TRACKED_PEERS as u32 + 10) {
            a.log_refusal(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(a.quiet.len() <= MAX_TRACKED_PEERS);
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
