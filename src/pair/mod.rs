//! `acp-relay pair`: the pairing link (the web client's address with the
//! token in its `#fragment`, which browsers never send to a server) and the
//! same link as a QR code drawn with Unicode half blocks, so a phone pairs by
//! pointing its camera at the terminal.

use qrcodegen::{QrCode, QrCodeEcc};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

/// Light modules around the code: the quiet zone ISO/IEC 18004 asks for.
pub const QUIET_MODULES: i32 = 4;

/// The address a phone on the LAN can reach: `listen` itself, or for an
/// unspecified address (0.0.0.0 / ::) this machine's outbound address.
pub fn reachable(listen: SocketAddr) -> SocketAddr {
    if !listen.ip().is_unspecified() {
        return listen;
    }
    // Connecting a UDP socket sends nothing; it only picks the route's source address.
    let ip = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            s.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    SocketAddr::new(ip, listen.port())
}

/// The web client's base URL: `--public-url` when given, else `http(s)://addr`.
pub fn base_url(public_url: Option<&str>, listen: SocketAddr, tls: bool) -> String {
    match public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => format!(
            "{}://{}",
            if tls { "https" } else { "http" },
            reachable(listen)
        ),
    }
}

/// The pairing link.
pub fn link(base: &str, token: &str) -> String {
    format!("{base}/#token={token}")
}

/// `text` as a QR code in half-block characters (two modules per character
/// cell), dark on light with a [`QUIET_MODULES`] quiet zone, for a terminal.
pub fn qr_text(text: &str) -> Option<String> {
    let qr = QrCode::encode_text(text, QrCodeEcc::Low).ok()?;
    let size = qr.size();
    let quiet = QUIET_MODULES;
    let dark = |x: i32, y: i32| qr.get_module(x, y);
    let mut out = String::new();
    let mut y = -quiet;
    while y < size + quiet {
        for x in -quiet..size + quiet {
            // Light modules print as full blocks so the code reads on dark terminals.
            let top = !dark(x, y);
            let bottom = !dark(x, y + 1);
            out.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
        y += 2;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_has_square_rows_and_a_link() {
        let l = link("http://192.168.1.2:7447", "abc");
        assert_eq!(l, "http://192.168.1.2:7447/#token=abc");
        let q = qr_text(&l).unwrap();
        let rows: Vec<&str> = q.lines().collect();
        let width = rows[0].chars().count();
        assert!(rows.iter().all(|r| r.chars().count() == width));
        // Two modules per row, a four-module quiet zone on each side.
        assert_eq!(rows.len(), width.div_ceil(2));
        let size = QrCode::encode_text(&l, QrCodeEcc::Low).unwrap().size() as usize;
        assert_eq!(width, size + 2 * QUIET_MODULES as usize);
        assert!(rows[..2].iter().all(|r| r.chars().all(|c| c == '█')));
        assert!(
            rows.iter()
                .all(|r| r.starts_with("████") && r.ends_with("████"))
        );
        let listen: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(base_url(None, listen, false), "http://127.0.0.1:9");
        assert_eq!(base_url(Some("https://x/"), listen, false), "https://x");
    }
}
