//! The TLS client side (cargo feature `tls`): rustls (ring) for `https://`
//! notification targets and for `acp-relay status` against a TLS relay.
//! Two ways to trust a server: the system's CA bundle, loaded once, when the
//! notify settings first name an https target (at startup, or the SIGHUP
//! reload that adds one), never on a delivery path; or exactly one
//! certificate, the relay's own `--tls-cert`, for `status` on the relay's
//! machine (where the address is loopback and not a name the certificate
//! covers). Opens no socket: the callers bring the stream.

use futures_rustls::TlsConnector;
use futures_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use futures_rustls::rustls::crypto::{self, CryptoProvider, ring};
use futures_rustls::rustls::pki_types::pem::PemObject;
use futures_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use futures_rustls::rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Where the CA bundle is looked for when `SSL_CERT_FILE` is not set:
/// Debian/Ubuntu/Alpine/Arch, Fedora/RHEL, openSUSE, and the BSD/macOS name.
pub const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Largest CA bundle read (Debian's is ~220 KiB).
pub const MAX_CA_BUNDLE_BYTES: u64 = 4 << 20;

static CA_CLIENT: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();

/// Loads the system's CA bundle (first call only) and says why it cannot,
/// naming the file and what to do. Later calls return the first call's
/// outcome: a changed bundle is read at the next start.
pub fn init() -> Result<Arc<ClientConfig>, String> {
    CA_CLIENT.get_or_init(load).clone()
}

/// The CA-checked connector, once [`init`] succeeded.
pub fn connector() -> Option<TlsConnector> {
    CA_CLIENT
        .get()
        .and_then(|c| c.as_ref().ok())
        .map(|c| TlsConnector::from(c.clone()))
}

/// `host` as the name the server's certificate must cover (a DNS name or an
/// IP address).
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(host.to_owned()).ok()
}

/// A client that trusts exactly the leaf certificate in the PEM file `cert`
/// (the relay's own `--tls-cert`), whatever name it is reached by; the
/// handshake's signatures are still checked against that certificate.
pub fn pinned(cert: &Path) -> Result<Arc<ClientConfig>, String> {
    // The same reading (and errors) as the relay's own `--tls-cert`; the
    // leaf is the first certificate (never empty).
    let leaf = crate::serve::tls::load_certs(cert)?.swap_remove(0);
    let provider = Arc::new(ring::default_provider());
    let verifier = Arc::new(Pinned {
        leaf,
        provider: provider.clone(),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts exactly one end-entity certificate.
#[derive(Debug)]
struct Pinned {
    leaf: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, futures_rustls::rustls::Error> {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(futures_rustls::rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, futures_rustls::rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, futures_rustls::rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn bundle_path() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("SSL_CERT_FILE").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    CA_BUNDLES
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            format!(
                "https notifications need CA certificates and none were found (looked in {}); \
                 install the ca-certificates package or set SSL_CERT_FILE to a PEM bundle",
                CA_BUNDLES.join(", ")
            )
        })
}

fn load() -> Result<Arc<ClientConfig>, String> {
    let path = bundle_path()?;
    let shown = path.display();
    let len = std::fs::metadata(&path)
        .map_err(|e| format!("CA bundle {shown}: {e}; set SSL_CERT_FILE to a readable PEM bundle"))?
        .len();
    if len > MAX_CA_BUNDLE_BYTES {
        return Err(format!(
            "CA bundle {shown} is {len} bytes (at most {MAX_CA_BUNDLE_BYTES}); set SSL_CERT_FILE to a smaller PEM bundle"
        ));
    }
    let mut roots = RootCertStore::empty();
    let mut bad = 0usize;
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| format!("CA bundle {shown}: {e}; set SSL_CERT_FILE to a PEM bundle"))?;
    for cert in certs {
        match cert {
            Ok(c) => {
                if roots.add(c).is_err() {
                    bad += 1;
                }
            }
            Err(_) => bad += 1,
        }
    }
    if roots.is_empty() {
        return Err(format!(
            "CA bundle {shown} holds no usable certificate; set SSL_CERT_FILE to a PEM bundle (BEGIN CERTIFICATE)"
        ));
    }
    if bad > 0 {
        log::info!("CA bundle {shown}: skipped {bad} certificate(s) rustls cannot use");
    }
    log::debug!(
        "https notifications trust {} CA(s) from {shown}",
        roots.len()
    );
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
