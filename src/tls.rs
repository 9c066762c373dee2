//! rustls plumbing kept in one place (rustls 0.24 renames the resolver API):
//! PEM loading, a certificate resolver that can be swapped while serving,
//! and the server configuration every listener uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate/key pair was refused. The previous pair stays in use.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0}: no PEM CERTIFICATE block found")]
    NoCertificate(String),
    /// The key file holds no usable private key.
    #[error("{path}: no usable PEM private key: {reason}")]
    BadKey {
        /// The file.
        path: String,
        /// What rustls said.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error("{cert}: the private key in {key} does not match the certificate")]
    KeyMismatch {
        /// Certificate file.
        cert: String,
        /// Key file.
        key: String,
    },
}

/// The process-wide crypto provider: aws-lc-rs, so exactly one is compiled in.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Parses a PEM chain and key into a signing key rustls can serve, checking
/// that the key belongs to the leaf certificate.
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_label: &str,
    key_label: &str,
) -> Result<CertifiedKey, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(CertError::NoCertificate(cert_label.to_string()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::BadKey {
        path: key_label.to_string(),
        reason: e.to_string(),
    })?;
    let ck = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => CertError::KeyMismatch {
            cert: cert_label.to_string(),
            key: key_label.to_string(),
        },
        other => CertError::BadKey {
            path: key_label.to_string(),
            reason: other.to_string(),
        },
    })?;
    Ok(ck)
}

/// Reads a certificate/key file pair.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, CertError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| CertError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    certified_key_from_pem(
        &read(cert)?,
        &read(key)?,
        &cert.display().to_string(),
        &key.display().to_string(),
    )
}

/// Serves whatever certificate was stored last. Swapping is atomic: a
/// handshake sees the old or the new pair, never a mix, and established
/// connections are untouched.
#[derive(Debug)]
pub struct SwappableCert {
    current: ArcSwap<CertifiedKey>,
}

impl SwappableCert {
    /// Starts with `initial`.
    pub fn new(initial: CertifiedKey) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(initial),
        })
    }

    /// Replaces the served certificate for new handshakes.
    pub fn store(&self, next: CertifiedKey) {
        self.current.store(Arc::new(next));
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// TLS 1.3 and 1.2 only, with ALPN for h2 and HTTP/1.1.
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, rustls::Error> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A fingerprint of some files' contents, to notice changes without
/// filesystem events: Kubernetes updates Secret volumes by swapping a
/// symlink, which inotify watchers on the files themselves miss.
pub fn fingerprint(paths: &[PathBuf]) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in paths {
        let data = std::fs::read(p).ok()?;
        h.update((data.len() as u64).to_le_bytes());
        h.update(&data);
    }
    Some(h.finalize().into())
}
