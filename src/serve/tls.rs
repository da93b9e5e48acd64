//! Built-in TLS (cargo feature `tls`): the certificate chain and key are
//! loaded once at startup; each accepted TCP stream then goes through a rustls
//! (ring) server handshake before its request head is read.

use crate::serve::http;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::rustls::crypto::ring;
use futures_rustls::rustls::pki_types::pem::{self, PemObject};
use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use futures_rustls::rustls::{self, ServerConfig};
use smol::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A server-side TLS stream over an accepted TCP connection.
pub type TlsStream = futures_rustls::server::TlsStream<TcpStream>;

/// The first byte of every TLS record that opens a handshake.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Wraps accepted connections in TLS with one certificate.
#[derive(Clone)]
pub struct Acceptor(futures_rustls::TlsAcceptor);

impl Acceptor {
    /// Loads a PEM certificate chain (leaf first, as in `fullchain.pem`) and
    /// its PEM private key (PKCS#8, PKCS#1 or SEC1). Errors name the file.
    pub fn load(cert: &Path, key: &Path) -> Result<Acceptor, String> {
        let certs = load_certs(cert)?;
        let private = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
            pem::Error::NoItemsFound => format!(
                "TLS key {}: no PEM private key in it (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
                key.display()
            ),
            e => format!("TLS key {}: {}", key.display(), pem_error(e)),
        })?;
        let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, private)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => format!(
                    "TLS key {} is not the key of certificate {}; pass the matching pair",
                    key.display(),
                    cert.display()
                ),
                e => format!("TLS key {}: cannot use it: {e}", key.display()),
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Acceptor(futures_rustls::TlsAcceptor::from(Arc::new(
            config,
        ))))
    }

    /// Runs the server handshake. A client that speaks plain HTTP to the TLS
    /// port gets a plain-text 400 saying to use https:// or wss:// (not a TLS
    /// alert it cannot read). The caller puts a deadline on this.
    pub async fn accept(&self, mut stream: TcpStream) -> Result<TlsStream, String> {
        let mut first = [0u8; 1];
        let n = stream.peek(&mut first).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the TLS handshake".into());
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            if first[0].is_ascii_uppercase() {
                let body = b"this relay speaks TLS: use https:// or wss://\n";
                let reply = http::response(400, "Bad Request", "text/plain", &[], body);
                let _ = stream.write_all(&reply).await;
                linger(stream).await;
            }
            return Err("not a TLS handshake (plain HTTP on the TLS port?)".into());
        }
        self.0
            .accept(stream)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))
    }
}

/// Half-closes after a plain reply and reads until the client closes (at most
/// 64 KiB, 2 s): closing with its request unread would reset the connection
/// and could destroy the reply before the client reads it.
async fn linger(mut stream: TcpStream) {
    if stream.shutdown(std::net::Shutdown::Write).is_err() {
        return;
    }
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut left = 64usize << 10;
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    futures_lite::future::or(drain, async {
        smol::Timer::after(Duration::from_secs(2)).await;
    })
    .await;
}

pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let named = |e: pem::Error| format!("TLS certificate {}: {}", path.display(), pem_error(e));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(named)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(named)?;
    if certs.is_empty() {
        return Err(format!(
            "TLS certificate {}: no PEM certificate in it (BEGIN CERTIFICATE); pass the full chain, e.g. fullchain.pem",
            path.display()
        ));
    }
    Ok(certs)
}

/// A PEM error without the crate's "I/O error:" prefix on file errors.
fn pem_error(e: pem::Error) -> String {
    match e {
        pem::Error::Io(e) => format!("cannot read it: {e}"),
        e => format!("not a valid PEM file: {e}"),
    }
}
