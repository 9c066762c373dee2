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
#[non_exhaustive]
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
    /// A PEM block of the certificate file is malformed.
    #[error("{path}: PEM block {block} is malformed: {why}")]
    BadPem {
        /// The file.
        path: String,
        /// Which block, from 1.
        block: usize,
        /// What the PEM reader said.
        why: rustls_pki_types::pem::Error,
    },
    /// The key file holds no usable private key.
    #[error("{path}: no usable PEM private key: {why}")]
    BadKey {
        /// The file.
        path: String,
        /// Why not.
        why: KeyProblem,
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

/// Why a private key is unusable, in the words of the library that said so.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyProblem {
    /// No readable PEM private-key block.
    #[error("{0}")]
    Pem(rustls_pki_types::pem::Error),
    /// rustls cannot sign with it.
    #[error("{0}")]
    Rustls(rustls::Error),
}

/// Why a client verifier could not be built from a policy's bundle.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifierError {
    /// rustls refused a trust anchor the bundle builder accepted.
    #[error("trust anchor refused by the TLS stack: {0}")]
    AnchorRefused(rustls::Error),
    /// A CRL the TLS stack cannot use; `crl` counts the CRLs from 1.
    #[error("CRL {crl} cannot be used: {refusal}")]
    Crl {
        /// Which CRL.
        crl: usize,
        /// Why not.
        refusal: CrlRefusal,
    },
    /// rustls could not build the verifier.
    #[error("{0}")]
    Build(rustls::server::VerifierBuilderError),
}

pub use crate::clientauth::bundle::{CrlRefusal, check_crl};

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
    let chain = pem_certificates(cert_pem).map_err(|(block, why)| CertError::BadPem {
        path: cert_label.to_string(),
        block,
        why,
    })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate(cert_label.to_string()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::BadKey {
        path: key_label.to_string(),
        why: KeyProblem::Pem(e),
    })?;
    let ck = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => CertError::KeyMismatch {
            cert: cert_label.to_string(),
            key: key_label.to_string(),
        },
        other => CertError::BadKey {
            path: key_label.to_string(),
            why: KeyProblem::Rustls(other),
        },
    })?;
    Ok(ck)
}

/// The certificates of a PEM text, in order. A malformed block is an error
/// (its number among the blocks, from 1), never skipped: a skipped
/// intermediate would serve a broken chain without a word. Blocks of other
/// kinds are passed over.
pub fn pem_certificates(
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, (usize, rustls_pki_types::pem::Error)> {
    use rustls_pki_types::pem::SectionKind;
    let mut certs = Vec::new();
    for (n, item) in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem).enumerate() {
        match item {
            Ok((SectionKind::Certificate, der)) => certs.push(CertificateDer::from(der)),
            Ok(_) => {}
            Err(why) => return Err((n + 1, why)),
        }
    }
    Ok(certs)
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

    /// The certificate served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
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
    cfg.ignore_client_order = true;
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

/// Serves one fixed certificate (a host's own `ServerConfig`).
#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Rejects chains longer than the policy's verifyDepth, then lets webpki do
/// the real verification. Depth counts the client certificate: 1 means the
/// anchor signs clients directly.
#[derive(Debug)]
struct DepthLimited {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    max_intermediates: usize,
    /// Clients may send the anchor itself along (curl does when the CA is
    /// in its bundle); a copy of an anchor is not a chain link.
    anchors: Vec<Vec<u8>>,
}

impl rustls::server::danger::ClientCertVerifier for DepthLimited {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let links = intermediates
            .iter()
            .filter(|c| !self.anchors.iter().any(|a| a.as_slice() == c.as_ref()))
            .count();
        if links > self.max_intermediates {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A client-certificate verifier over trust anchors and CRLs (both DER, as
/// the bundle builder returns them). Anchors without a CRL stay usable: a
/// policy lists CRLs only for the CAs that publish them.
pub fn client_verifier(
    anchors: &[Vec<u8>],
    crls: &[Vec<u8>],
    required: bool,
    verify_depth: u8,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, VerifierError> {
    use rustls_pki_types::CertificateRevocationListDer;
    let mut roots = rustls::RootCertStore::empty();
    for der in anchors {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(VerifierError::AnchorRefused)?;
    }
    let mut builder =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .with_crls(
                crls.iter()
                    .map(|c| CertificateRevocationListDer::from(c.clone())),
            )
            .allow_unknown_revocation_status();
    if !required {
        builder = builder.allow_unauthenticated();
    }
    let inner = builder.build().map_err(|e| match e {
        // Name the CRL and the fix, as the bundle builder would have.
        rustls::server::VerifierBuilderError::InvalidCrl(_) => crls
            .iter()
            .enumerate()
            .find_map(|(i, c)| {
                check_crl(c).err().map(|refusal| VerifierError::Crl {
                    crl: i + 1,
                    refusal,
                })
            })
            .unwrap_or(VerifierError::Build(e)),
        other => VerifierError::Build(other),
    })?;
    Ok(Arc::new(DepthLimited {
        inner,
        max_intermediates: usize::from(verify_depth.max(1)) - 1,
        anchors: anchors.to_vec(),
    }))
}

/// Offers client authentication and accepts any certificate whose
/// handshake signature verifies, so that its verdict against `strict` is
/// decided per request rather than by refusing the handshake
/// (ingress-nginx's `optional_no_ca`, and `auth-tls-error-page`).
#[derive(Debug)]
struct AnyCertificate {
    strict: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl rustls::server::danger::ClientCertVerifier for AnyCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.strict.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }
    // The client still proves it holds the certificate's key.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.strict.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.strict.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.strict.supported_verify_schemes()
    }
}

/// A handshake verifier that asks for a certificate and accepts any one
/// (its signature still checked); [`client_verdict`] with `strict` then
/// says whether it verified.
pub fn any_client_certificate(
    strict: Arc<dyn rustls::server::danger::ClientCertVerifier>,
) -> Arc<dyn rustls::server::danger::ClientCertVerifier> {
    Arc::new(AnyCertificate { strict })
}

/// What became of a connection's client certificate: nginx's
/// `$ssl_client_verify`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientVerdict {
    /// `NONE`: no certificate was sent.
    None,
    /// `SUCCESS`: it verified.
    Success,
    /// `FAILED:<reason>`: it did not.
    Failed(HandshakeFailure),
}

impl ClientVerdict {
    /// `None` without a certificate, else whether it verified.
    pub fn verified(self) -> Option<bool> {
        match self {
            ClientVerdict::None => None,
            ClientVerdict::Success => Some(true),
            ClientVerdict::Failed(_) => Some(false),
        }
    }

    /// The `ssl-client-verify` value, with OpenSSL's wording of the reason
    /// as nginx sends it.
    pub fn header_value(self) -> &'static str {
        match self {
            ClientVerdict::None => "NONE",
            ClientVerdict::Success => "SUCCESS",
            ClientVerdict::Failed(why) => match why {
                HandshakeFailure::UnknownCa => "FAILED:unable to get local issuer certificate",
                HandshakeFailure::Expired => "FAILED:certificate has expired",
                HandshakeFailure::NotYetValid => "FAILED:certificate is not yet valid",
                HandshakeFailure::Revoked => "FAILED:certificate revoked",
                HandshakeFailure::ChainTooLong => "FAILED:certificate chain too long",
                _ => "FAILED:certificate rejected",
            },
        }
    }
}

/// Verifies a connection's certificates (leaf first) with `strict`.
pub fn client_verdict(
    strict: &dyn rustls::server::danger::ClientCertVerifier,
    certs: &[CertificateDer<'_>],
    now: rustls_pki_types::UnixTime,
) -> ClientVerdict {
    match certs.split_first() {
        None => ClientVerdict::None,
        Some((leaf, chain)) => match strict.verify_client_cert(leaf, chain, now) {
            Ok(_) => ClientVerdict::Success,
            Err(e) => ClientVerdict::Failed(HandshakeFailure::of_tls(&e)),
        },
    }
}

/// One host's TLS configuration: its certificate and, when bound to a
/// policy, its client verifier. TLS 1.3 and 1.2, ALPN h2 and HTTP/1.1.
pub fn host_server_config(
    cert: Arc<CertifiedKey>,
    verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(FixedCert(cert)));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // The server's order (the provider's: AES-256-GCM, AES-128-GCM,
    // ChaCha20-Poly1305, all AEAD with forward secrecy) wins over the
    // client's, so a client cannot steer the choice; scanners flag it
    // otherwise (testssl's cipher_order).
    cfg.ignore_client_order = true;
    Ok(Arc::new(cfg))
}

/// Why a connection did not complete its handshake, or was refused right
/// after it. [`HandshakeFailure::as_str`] is the one place that names it:
/// the `reason` label of `tlsward_proxy_tls_handshakes` and the handshake
/// log line both use it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// `no_certificate`: the host requires a client certificate and none
    /// was sent.
    NoCertificate,
    /// `unknown_ca`: the client certificate does not chain to a trust
    /// anchor (or its signature or a critical extension is bad).
    UnknownCa,
    /// `expired`: a certificate in the chain is past its notAfter.
    Expired,
    /// `not_yet_valid`: a certificate in the chain is before its notBefore.
    NotYetValid,
    /// `revoked`: a CRL lists the client certificate.
    Revoked,
    /// `chain_too_long`: the chain is deeper than the policy's verifyDepth.
    ChainTooLong,
    /// `bad_certificate`: any other certificate the verifier refused.
    BadCertificate,
    /// `incompatible`: no common protocol version, cipher suite or ALPN.
    Incompatible,
    /// `protocol_error`: not TLS, or a TLS message out of place.
    ProtocolError,
    /// `io_error`: the connection failed under the handshake.
    IoError,
    /// `timeout`: the handshake did not finish within the timeout.
    Timeout,
    /// `unknown_sni`: no served host matches the SNI (or none was sent).
    UnknownSni,
    /// `not_allowed`: the certificate verified, but the policy's
    /// allow-list does not name it.
    NotAllowed,
}

impl HandshakeFailure {
    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::NoCertificate => "no_certificate",
            HandshakeFailure::UnknownCa => "unknown_ca",
            HandshakeFailure::Expired => "expired",
            HandshakeFailure::NotYetValid => "not_yet_valid",
            HandshakeFailure::Revoked => "revoked",
            HandshakeFailure::ChainTooLong => "chain_too_long",
            HandshakeFailure::BadCertificate => "bad_certificate",
            HandshakeFailure::Incompatible => "incompatible",
            HandshakeFailure::ProtocolError => "protocol_error",
            HandshakeFailure::IoError => "io_error",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::UnknownSni => "unknown_sni",
            HandshakeFailure::NotAllowed => "not_allowed",
        }
    }

    /// Why rustls (or the connection under it) ended a handshake.
    pub fn of(err: &std::io::Error) -> Self {
        match err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        {
            Some(e) => Self::of_tls(e),
            None => HandshakeFailure::IoError,
        }
    }

    /// Why rustls refused a handshake or a certificate.
    pub fn of_tls(err: &rustls::Error) -> Self {
        use rustls::CertificateError as C;
        match err {
            rustls::Error::NoCertificatesPresented => HandshakeFailure::NoCertificate,
            rustls::Error::InvalidCertificate(c) => match c {
                C::UnknownIssuer | C::BadSignature | C::UnhandledCriticalExtension => {
                    HandshakeFailure::UnknownCa
                }
                C::Expired | C::ExpiredContext { .. } => HandshakeFailure::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => HandshakeFailure::NotYetValid,
                C::Revoked => HandshakeFailure::Revoked,
                C::ApplicationVerificationFailure => HandshakeFailure::ChainTooLong,
                _ => HandshakeFailure::BadCertificate,
            },
            rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => {
                HandshakeFailure::Incompatible
            }
            _ => HandshakeFailure::ProtocolError,
        }
    }
}

impl std::fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whose certificates an upstream TLS client trusts.
pub enum UpstreamRoots {
    /// These trust anchors (a Secret's `ca.crt`).
    Anchors(Vec<CertificateDer<'static>>),
    /// The system's trust store.
    System,
    /// Nobody's: the backend's certificate is not checked
    /// (`proxy-ssl-verify: "off"`). Its handshake signatures still are.
    Unverified,
}

/// Why an upstream TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamTlsError {
    /// A trust anchor rustls refused.
    #[error("trust anchor refused by the TLS stack: {0}")]
    Anchor(rustls::Error),
    /// The crypto provider cannot do TLS 1.2 and 1.3 (a build problem).
    #[error("TLS 1.2/1.3 with the crypto provider: {0}")]
    Versions(rustls::Error),
    /// No trust anchor at all (an empty `ca.crt`, or no system roots).
    #[error("no trust anchor to verify the backend with")]
    NoAnchors,
    /// The client certificate and key rustls cannot use.
    #[error("client certificate for the backend: {0}")]
    ClientCert(rustls::Error),
}

/// The system's trust anchors, read once.
fn system_roots() -> &'static rustls::RootCertStore {
    static ROOTS: std::sync::OnceLock<rustls::RootCertStore> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "reading the system trust store");
        }
        let (_, _) = roots.add_parsable_certificates(found.certs);
        roots
    })
}

/// A TLS client configuration for connections to a backend: TLS 1.2+,
/// the process's single crypto provider, `alpn` offered, SNI sent only
/// when `sni`. Sessions resume within one configuration (rustls' default
/// cache), never across two.
pub fn upstream_client_config(
    roots: UpstreamRoots,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    sni: bool,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, UpstreamTlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(UpstreamTlsError::Versions)?;
    let builder = match roots {
        UpstreamRoots::Anchors(anchors) => {
            let mut store = rustls::RootCertStore::empty();
            for a in anchors {
                store.add(a).map_err(UpstreamTlsError::Anchor)?;
            }
            if store.is_empty() {
                return Err(UpstreamTlsError::NoAnchors);
            }
            builder.with_root_certificates(store)
        }
        UpstreamRoots::System => {
            let store = system_roots();
            if store.is_empty() {
                return Err(UpstreamTlsError::NoAnchors);
            }
            builder.with_root_certificates(store.clone())
        }
        UpstreamRoots::Unverified => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider))),
    };
    let mut cfg = match client {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(UpstreamTlsError::ClientCert)?,
        None => builder.with_no_client_auth(),
    };
    cfg.enable_sni = sni;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// Accepts any backend certificate, as `proxy-ssl-verify: "off"` asks,
/// while still checking that the backend holds the key it presented.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair, KeyUsagePurpose,
    };
    use rustls_pki_types::UnixTime;

    use super::*;

    fn ca(
        parent: Option<&CertifiedIssuer<'static, KeyPair>>,
        cn: &str,
    ) -> CertifiedIssuer<'static, KeyPair> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        match parent {
            None => CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
            Some(parent) => {
                CertifiedIssuer::signed_by(p, KeyPair::generate().unwrap(), parent).unwrap()
            }
        }
    }

    fn client(issuer: &CertifiedIssuer<'static, KeyPair>) -> CertificateDer<'static> {
        let mut p = CertificateParams::new(vec!["c.clients.local".to_string()]).unwrap();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.signed_by(&KeyPair::generate().unwrap(), issuer)
            .unwrap()
            .der()
            .clone()
    }

    #[test]
    fn depth_counts_chain_links_not_anchor_copies() {
        let root = ca(None, "root");
        let mid = ca(Some(&root), "intermediate");
        let anchors = vec![root.der().to_vec()];
        let direct = client(&root);
        let via_mid = client(&mid);
        let now = UnixTime::now();
        let depth1 = client_verifier(&anchors, &[], true, 1).unwrap();
        let depth2 = client_verifier(&anchors, &[], true, 2).unwrap();
        assert!(depth1.verify_client_cert(&direct, &[], now).is_ok());
        assert!(
            depth1
                .verify_client_cert(&direct, &[root.der().clone()], now)
                .is_ok(),
            "a client that sends its CA along is not one link deeper"
        );
        assert!(
            depth1
                .verify_client_cert(&via_mid, &[mid.der().clone()], now)
                .is_err()
        );
        assert!(
            depth2
                .verify_client_cert(&via_mid, &[mid.der().clone()], now)
                .is_ok()
        );
    }

    /// A CA made with an ECDSA P-256 key (what [`RawCrl`] signs with).
    fn ca_with_key(cn: &str) -> (CertifiedIssuer<'static, KeyPair>, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let copy = KeyPair::from_pem(&key.serialize_pem()).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        (CertifiedIssuer::self_signed(p, key).unwrap(), copy)
    }

    fn rustls_takes(anchor: &[u8], crl: &[u8]) -> bool {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(anchor.to_vec())).unwrap();
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .with_crls([rustls_pki_types::CertificateRevocationListDer::from(
                crl.to_vec(),
            )])
            .build()
            .is_ok()
    }

    /// `check_crl` says yes exactly when rustls builds a verifier with the
    /// CRL, and names what is missing when it does not.
    #[test]
    fn check_crl_is_the_rule_rustls_applies() {
        use crate::testing::RawCrl;
        let (ca, key) = ca_with_key("crl rule CA");
        let missing_both = CrlRefusal::MissingExtensions {
            crl_number: true,
            authority_key_id: true,
        };
        let cases = [
            (
                "openssl without crlnumber",
                RawCrl::extensionless(),
                Err(missing_both.clone()),
            ),
            (
                "version 2, no extensions",
                RawCrl {
                    v2: true,
                    ..RawCrl::extensionless()
                },
                Err(missing_both),
            ),
            (
                "openssl with crlnumber, no crl_extensions",
                RawCrl {
                    authority_key_id: false,
                    ..RawCrl::conforming()
                },
                Ok(()),
            ),
            (
                "authority key identifier only",
                RawCrl {
                    crl_number: false,
                    ..RawCrl::conforming()
                },
                Ok(()),
            ),
            ("conforming", RawCrl::conforming(), Ok(())),
            (
                "no nextUpdate",
                RawCrl {
                    next_update: false,
                    ..RawCrl::conforming()
                },
                Err(CrlRefusal::MissingNextUpdate),
            ),
        ];
        for (name, raw, want) in cases {
            let der = raw.der(ca.der(), &key);
            let got = check_crl(&der);
            assert_eq!(got, want, "{name}");
            assert_eq!(got.is_ok(), rustls_takes(ca.der(), &der), "{name}");
        }
        // rcgen's CRLs, as the other tests make them, pass too.
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2025, 1, 1),
            next_update: rcgen::date_time_ymd(2035, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let der = params.signed_by(&ca).unwrap().der().to_vec();
        assert_eq!(check_crl(&der), Ok(()));
        assert!(rustls_takes(ca.der(), &der));
    }

    #[test]
    fn a_refused_crl_says_what_is_missing_and_how_to_fix_it() {
        let text = CrlRefusal::MissingExtensions {
            crl_number: true,
            authority_key_id: true,
        }
        .to_string();
        for needle in [
            "CRL Number and Authority Key Identifier",
            "RFC 5280 section 5.2",
            "openssl ca -gencrl",
            "crlnumber",
            "authorityKeyIdentifier=keyid:always",
        ] {
            assert!(text.contains(needle), "{needle:?} in {text}");
        }
        let one = CrlRefusal::MissingExtensions {
            crl_number: false,
            authority_key_id: true,
        };
        assert!(
            one.to_string()
                .starts_with("it lacks the Authority Key Identifier extension,")
        );
    }

    #[test]
    fn the_verifier_names_a_crl_it_cannot_use() {
        use crate::testing::RawCrl;
        let (ca, key) = ca_with_key("verifier CA");
        let good = RawCrl::conforming().der(ca.der(), &key);
        let bad = RawCrl::extensionless().der(ca.der(), &key);
        let anchors = vec![ca.der().to_vec()];
        match client_verifier(&anchors, &[good.clone(), bad], true, 1) {
            Err(VerifierError::Crl { crl: 2, refusal }) => assert!(
                matches!(refusal, CrlRefusal::MissingExtensions { .. }),
                "{refusal}"
            ),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("an extension-less CRL was accepted"),
        }
        // And a conforming hand-made CRL really revokes.
        let leaf = client(&ca);
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
        let revoking = crate::testing::RawCrl::conforming()
            .revoking(parsed.raw_serial())
            .der(ca.der(), &key);
        let v = client_verifier(&anchors, &[revoking], true, 1).unwrap();
        assert!(matches!(
            v.verify_client_cert(&leaf, &[], UnixTime::now()),
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked
            ))
        ));
        assert!(client_verifier(&anchors, &[good], true, 1).is_ok());
    }

    #[test]
    fn a_malformed_pem_block_is_an_error_naming_its_number() {
        let root = ca(None, "pem root");
        let mid = ca(Some(&root), "pem intermediate");
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["pem.example.test".to_string()]).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "pem.example.test");
        let leaf = p.signed_by(&key, &mid).unwrap();
        let broken = "-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n";
        let chain = format!("{}{broken}", leaf.pem());
        match pem_certificates(chain.as_bytes()) {
            Err((2, _)) => {}
            other => panic!("{other:?}"),
        }
        let err = certified_key_from_pem(
            chain.as_bytes(),
            key.serialize_pem().as_bytes(),
            "Secret apps/web tls.crt",
            "Secret apps/web tls.key",
        )
        .unwrap_err();
        assert!(matches!(err, CertError::BadPem { block: 2, .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("Secret apps/web tls.crt: PEM block 2 is malformed"),
            "{err}"
        );
        // The good chain alone still loads.
        let good = format!("{}{}", leaf.pem(), mid.pem());
        assert_eq!(pem_certificates(good.as_bytes()).unwrap().len(), 2);
    }

    #[test]
    fn handshake_failures_carry_the_documented_reason_labels() {
        use rustls::CertificateError as C;
        let of = |e: rustls::Error| {
            HandshakeFailure::of(&std::io::Error::new(std::io::ErrorKind::InvalidData, e)).as_str()
        };
        let cert = |c: C| of(rustls::Error::InvalidCertificate(c));
        assert_eq!(of(rustls::Error::NoCertificatesPresented), "no_certificate");
        assert_eq!(cert(C::UnknownIssuer), "unknown_ca");
        assert_eq!(cert(C::BadSignature), "unknown_ca");
        assert_eq!(cert(C::UnhandledCriticalExtension), "unknown_ca");
        assert_eq!(cert(C::Expired), "expired");
        assert_eq!(cert(C::NotValidYet), "not_yet_valid");
        assert_eq!(cert(C::Revoked), "revoked");
        assert_eq!(cert(C::ApplicationVerificationFailure), "chain_too_long");
        assert_eq!(cert(C::BadEncoding), "bad_certificate");
        assert_eq!(of(rustls::Error::NoApplicationProtocol), "incompatible");
        assert_eq!(
            of(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::NoCipherSuitesInCommon
            )),
            "incompatible"
        );
        assert_eq!(
            of(rustls::Error::DecryptError),
            "protocol_error",
            "any other TLS error"
        );
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(HandshakeFailure::of(&reset).as_str(), "io_error");
        // Reasons the proxy decides itself, not rustls.
        assert_eq!(HandshakeFailure::Timeout.as_str(), "timeout");
        assert_eq!(HandshakeFailure::UnknownSni.as_str(), "unknown_sni");
        assert_eq!(HandshakeFailure::NotAllowed.as_str(), "not_allowed");
    }
}
