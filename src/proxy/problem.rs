//! What the proxy could not serve as written, and why. A problem leaves its
//! object out (or keeps the host's last good configuration), is logged, and
//! counts in `tlsward_proxy_config_problems`; it never stops the proxy.

use std::sync::Arc;

use crate::admission::CLIENT_AUTH_ANNOTATION;
use crate::clientauth::bundle::BundleError;
use crate::clientauth::{FailureReason, SourceKind};
use crate::ingress_nginx::client_auth::ClientAuthError;
use crate::manifests::ManifestError;
use crate::tls::{CertError, VerifierError};

/// An object that could not be served as written.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{object}: {issue}")]
pub struct Problem {
    /// `Kind namespace/name`, or the file and document.
    pub object: String,
    /// What is wrong, and what the proxy does about it.
    pub issue: Issue,
}

/// What is wrong with an object, and what the proxy does about it.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Issue {
    /// A document whose fields do not fit its kind; it is left out.
    #[error("not a valid {kind}: {why}")]
    Undecodable {
        /// The document's `kind`.
        kind: String,
        /// What the decoder said.
        why: Arc<serde_json::Error>,
    },
    /// The config directory cannot be listed; the objects read before stay.
    #[error("{0}; keeping the objects read before")]
    DirectoryUnlisted(Arc<ManifestError>),
    /// The config directory is gone or not a directory; the objects read
    /// before stay.
    #[error("{path}: not a readable directory; keeping the objects read before")]
    NotADirectory {
        /// The directory.
        path: String,
    },
    /// A manifest file that does not parse; its previous objects stay.
    #[error("{0}; keeping its previous objects")]
    FileUnparsable(Arc<ManifestError>),
    /// More than one ClientAuthPolicy selects the Ingress; its hosts are
    /// not served.
    #[error(
        "selected by {} ClientAuthPolicies ({}); bind one with the {CLIENT_AUTH_ANNOTATION} annotation; not served",
        policies.len(),
        policies.join(", ")
    )]
    AmbiguousPolicy {
        /// The selecting policies' names.
        policies: Vec<String>,
    },
    /// A rule without `host`: the proxy picks hosts by SNI.
    #[error("a rule without host is not served: the proxy serves HTTPS by SNI only")]
    RuleWithoutHost,
    /// A rule's host that no `spec.tls` entry covers.
    #[error("host {host:?} is not covered by spec.tls; not served (HTTPS only)")]
    HostWithoutTls {
        /// The host.
        host: String,
    },
    /// An older Ingress serves the host with another namespace, Secret or
    /// policy; this Ingress's rules for it are ignored.
    #[error(
        "host {host:?} is already served by Ingress {by} with a different namespace, Secret or ClientAuthPolicy; this Ingress's rules for it are ignored"
    )]
    HostTaken {
        /// The host.
        host: String,
        /// The Ingress (`ns/name`) that serves it.
        by: String,
    },
    /// An ingress-nginx backend annotation the proxy cannot use; that
    /// annotation is ignored, the others apply.
    #[error("{0}")]
    Backend(crate::ingress_nginx::backend::BackendError),
    /// The backend TLS settings cannot be built: requests to the
    /// Ingress's backends are answered 502 rather than sent unverified.
    #[error("{why}; requests to its backends are answered 502 until this is fixed")]
    BackendTls {
        /// What is wrong, naming the annotation and the Secret.
        why: String,
    },
    /// An annotation value the proxy cannot use; the Ingress is served
    /// without what it asks for.
    #[error("{0}; served without Strict-Transport-Security")]
    InvalidHsts(super::hsts::HstsError),
    /// A `tlsward.io/upgrades` value the proxy cannot use; the Ingress's
    /// hosts tunnel only WebSockets.
    #[error("{0}; only WebSocket upgrades are tunnelled")]
    InvalidUpgrades(super::upgrades::UpgradesError),
    /// An ingress-nginx annotation that does not carry over as written
    /// (`ssl-redirect`, `force-ssl-redirect`); the hosts are served
    /// without it.
    #[error("{0}")]
    IngressNginx(ClientAuthError),
    /// The Ingress has `auth-tls-*` annotations and a bound
    /// ClientAuthPolicy: the policy is what its hosts verify against.
    #[error(
        "its nginx.ingress.kubernetes.io/auth-tls-* annotations are ignored: ClientAuthPolicy {policy} is bound to it and takes precedence; remove the annotations or the binding"
    )]
    AuthTlsOverridden {
        /// The bound policy's name.
        policy: String,
    },
    /// The host's new TLS configuration is broken; the last good one is
    /// still served.
    #[error(
        "{error}; keeping the last good configuration for {host}{}",
        stale_revocations(error)
    )]
    KeptLastGood {
        /// The host.
        host: String,
        /// What is broken.
        error: Box<HostError>,
    },
    /// The host's TLS configuration is broken and there is no last good
    /// one: the host is not served.
    #[error("{error}; {host} is not served")]
    NotServed {
        /// The host.
        host: String,
        /// What is broken.
        error: Box<HostError>,
    },
}

/// Says what keeping the last good configuration means when the refused
/// part is a CRL: revocations published since are not enforced.
fn stale_revocations(error: &HostError) -> &'static str {
    if error.kind() == HostErrorKind::InvalidCrl {
        ", whose older CRLs stay in force: certificates revoked since are still accepted until the CRL is fixed"
    } else {
        ""
    }
}

/// What a host serves while its new configuration is refused: the
/// `serving` label of `tlsward_proxy_host_config_errors`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Serving {
    /// `last_good`: its previous configuration.
    LastGood,
    /// `none`: nothing; its handshakes are refused (fail closed).
    Nothing,
}

impl Serving {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Serving::LastGood => "last_good",
            Serving::Nothing => "none",
        }
    }
}

impl Issue {
    /// For a host whose new configuration was refused: the host, what it
    /// serves instead, and why.
    pub fn refused_host(&self) -> Option<(&str, Serving, &HostError)> {
        match self {
            Issue::KeptLastGood { host, error } => Some((host, Serving::LastGood, error)),
            Issue::NotServed { host, error } => Some((host, Serving::Nothing, error)),
            _ => None,
        }
    }
}

/// Why a host's configuration was refused, coarsely: the `reason` label of
/// `tlsward_proxy_host_config_errors`, which alerts match on.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostErrorKind {
    /// `tls_secret`: the TLS Secret is missing or unusable.
    TlsSecret,
    /// `policy_not_found`: the bound ClientAuthPolicy does not exist.
    PolicyNotFound,
    /// `source_not_found`: a policy source's Secret, ConfigMap or key is missing.
    SourceNotFound,
    /// `invalid_certificate`: a trust-anchor source is not a clean set of certificates.
    InvalidCertificate,
    /// `invalid_crl`: a revocation source is refused.
    InvalidCrl,
    /// `no_valid_anchors`: every anchor was dropped.
    NoValidAnchors,
    /// `tls_config`: rustls refused the host's configuration otherwise.
    TlsConfig,
    /// `auth_config`: the policy's token or login settings are unusable.
    AuthConfig,
    /// `annotation`: an ingress-nginx `auth-tls-*` annotation value is unusable.
    Annotation,
}

impl HostErrorKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HostErrorKind::TlsSecret => "tls_secret",
            HostErrorKind::PolicyNotFound => "policy_not_found",
            HostErrorKind::SourceNotFound => "source_not_found",
            HostErrorKind::InvalidCertificate => "invalid_certificate",
            HostErrorKind::InvalidCrl => "invalid_crl",
            HostErrorKind::NoValidAnchors => "no_valid_anchors",
            HostErrorKind::TlsConfig => "tls_config",
            HostErrorKind::AuthConfig => "auth_config",
            HostErrorKind::Annotation => "annotation",
        }
    }
}

impl HostError {
    /// Which kind of fault this is.
    pub fn kind(&self) -> HostErrorKind {
        match self {
            HostError::SecretNotFound { .. }
            | HostError::SecretKeyMissing { .. }
            | HostError::Certificate(_) => HostErrorKind::TlsSecret,
            HostError::PolicyNotFound { .. } => HostErrorKind::PolicyNotFound,
            HostError::SourceNotFound { .. }
            | HostError::SourceKeyMissing { .. }
            | HostError::NoSource { .. } => HostErrorKind::SourceNotFound,
            HostError::Bundle { error, .. } => match error.reason() {
                FailureReason::InvalidCrl => HostErrorKind::InvalidCrl,
                FailureReason::NoValidAnchors => HostErrorKind::NoValidAnchors,
                _ => HostErrorKind::InvalidCertificate,
            },
            HostError::Verifier {
                error: VerifierError::Crl { .. },
                ..
            } => HostErrorKind::InvalidCrl,
            HostError::Verifier { .. } | HostError::ServerConfig(_) => HostErrorKind::TlsConfig,
            HostError::Auth { .. } => HostErrorKind::AuthConfig,
            HostError::AuthTls { error, .. } => match error {
                AuthTlsError::Annotation(_) => HostErrorKind::Annotation,
                AuthTlsError::SecretNotFound { .. } | AuthTlsError::NoCaCrt { .. } => {
                    HostErrorKind::SourceNotFound
                }
                AuthTlsError::Bundle(b) => match b.reason() {
                    FailureReason::InvalidCrl => HostErrorKind::InvalidCrl,
                    FailureReason::NoValidAnchors => HostErrorKind::NoValidAnchors,
                    _ => HostErrorKind::InvalidCertificate,
                },
                AuthTlsError::Verifier(VerifierError::Crl { .. }) => HostErrorKind::InvalidCrl,
                AuthTlsError::Verifier(_) => HostErrorKind::TlsConfig,
            },
        }
    }
}

/// Why a host's TLS configuration cannot be built. Clone: one broken Secret
/// or policy is reported for every host that uses it.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The Ingress's TLS Secret does not exist.
    #[error("TLS Secret {secret} not found")]
    SecretNotFound {
        /// `ns/name`.
        secret: String,
    },
    /// The TLS Secret lacks `tls.crt` or `tls.key`.
    #[error("TLS Secret {secret} has no {key}")]
    SecretKeyMissing {
        /// `ns/name`.
        secret: String,
        /// The missing key.
        key: &'static str,
    },
    /// The certificate or key in the TLS Secret is unusable.
    #[error("{0}")]
    Certificate(Arc<CertError>),
    /// The bound ClientAuthPolicy does not exist.
    #[error("bound to ClientAuthPolicy {policy}, which does not exist")]
    PolicyNotFound {
        /// `ns/name`.
        policy: String,
    },
    /// A policy source names a Secret or ConfigMap that does not exist.
    #[error("{field}: {kind} {object} not found")]
    SourceNotFound {
        /// The policy field, e.g. `spec.trustAnchors[0]`.
        field: String,
        /// Secret or ConfigMap.
        kind: SourceKind,
        /// `ns/name`.
        object: String,
    },
    /// A policy source names a key its Secret or ConfigMap lacks.
    #[error("{field}: {kind} {object} has no key {key:?}")]
    SourceKeyMissing {
        /// The policy field.
        field: String,
        /// Secret or ConfigMap.
        kind: SourceKind,
        /// `ns/name`.
        object: String,
        /// The key.
        key: String,
    },
    /// A policy source sets none of secretRef, configMapRef and inline.
    #[error("{field}: set exactly one of secretRef, configMapRef or inline")]
    NoSource {
        /// The policy field.
        field: String,
    },
    /// The policy's sources do not make a valid bundle.
    #[error("ClientAuthPolicy {policy}: {error}")]
    Bundle {
        /// `ns/name`.
        policy: String,
        /// Why.
        error: Box<BundleError>,
    },
    /// rustls refused the policy's bundle.
    #[error("ClientAuthPolicy {policy}: {error}")]
    Verifier {
        /// `ns/name`.
        policy: String,
        /// Why.
        error: VerifierError,
    },
    /// rustls refused the host's server configuration.
    #[error("{0}")]
    ServerConfig(rustls::Error),
    /// The policy's token or login settings cannot be used.
    #[error("ClientAuthPolicy {policy}: {error}")]
    Auth {
        /// `ns/name`.
        policy: String,
        /// Why.
        error: Arc<super::host_auth::AuthConfigError>,
    },
    /// The Ingress's ingress-nginx `auth-tls-*` annotations cannot be used.
    #[error("{error}")]
    AuthTls {
        /// The Ingress (`ns/name`).
        ingress: String,
        /// Why.
        error: AuthTlsError,
    },
}

/// Why an Ingress's `auth-tls-*` annotations give no client verifier.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthTlsError {
    /// An annotation value is unusable.
    #[error("{0}")]
    Annotation(ClientAuthError),
    /// The `auth-tls-secret` Secret does not exist: create it.
    #[error("nginx.ingress.kubernetes.io/auth-tls-secret: Secret {secret} not found")]
    SecretNotFound {
        /// `ns/name`.
        secret: String,
    },
    /// The `auth-tls-secret` Secret has no `ca.crt`: add the CA there.
    #[error("nginx.ingress.kubernetes.io/auth-tls-secret: Secret {secret} has no ca.crt")]
    NoCaCrt {
        /// `ns/name`.
        secret: String,
    },
    /// `ca.crt` or `ca.crl` do not make a valid bundle.
    #[error("nginx.ingress.kubernetes.io/auth-tls-secret: {0}")]
    Bundle(Arc<BundleError>),
    /// rustls refused the bundle.
    #[error("nginx.ingress.kubernetes.io/auth-tls-secret: {0}")]
    Verifier(VerifierError),
}
