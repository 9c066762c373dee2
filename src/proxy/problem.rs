//! What the proxy could not serve as written, and why. A problem leaves its
//! object out (or keeps the host's last good configuration), is logged, and
//! counts in `tlsward_proxy_config_problems`; it never stops the proxy.

use std::sync::Arc;

use crate::admission::CLIENT_AUTH_ANNOTATION;
use crate::clientauth::SourceKind;
use crate::clientauth::bundle::BundleError;
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
    /// An annotation value the proxy cannot use; the Ingress is served
    /// without what it asks for.
    #[error("{0}; served without Strict-Transport-Security")]
    InvalidHsts(super::hsts::HstsError),
    /// The host's new TLS configuration is broken; the last good one is
    /// still served.
    #[error("{error}; keeping the last good configuration for {host}")]
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
}
