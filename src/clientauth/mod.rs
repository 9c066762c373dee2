//! The `ClientAuthPolicy` custom resource, and the index the admission core
//! uses to bind Ingresses to policies.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fast_hash::HashMap;
use crate::labels::{Labels, Selector};

pub mod bundle;
pub mod oidc;

pub use oidc::{
    BearerTokens, BrowserLogin, CertificateBinding, CertificateField, ClaimHeader, ClaimRule,
    GitHubLogin, IdentityHeaders, IdentityJoin, IssuerStatus, LoginProvider, PublicPath,
    SecretName, SignatureAlgorithm, TokenIssuer,
};

/// Client-certificate policy for the Ingresses bound to it: which CAs to
/// trust, which CRLs to honour and which client identities to let through.
/// The operator turns it into a CA-bundle Secret (`ca.crt`, `ca.crl`).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tlsward.io",
    version = "v1alpha1",
    kind = "ClientAuthPolicy",
    namespaced,
    shortname = "cap",
    status = "ClientAuthPolicyStatus",
    category = "tlsward",
    doc = "Client-certificate policy (trust anchors, CRLs, allowed identities) for the Ingresses bound to it; the operator writes it into a CA-bundle Secret.",
    validation = Rule::new("self.metadata.name.size() <= 63").message("metadata.name must be at most 63 characters: it becomes the tlsward.io/policy label value on the bundle Secret"),
    validation = Rule::new("has(self.spec.trustAnchors) || has(self.spec.tokens) || has(self.spec.login)").message("set at least one of spec.trustAnchors (client certificates), spec.tokens (bearer tokens) or spec.login (browser login)"),
    validation = Rule::new("has(self.spec.trustAnchors) || !(has(self.spec.revocation) || has(self.spec.allowedClients))").message("spec.revocation and spec.allowedClients check client certificates: they need spec.trustAnchors"),
    validation = Rule::new("has(self.spec.trustAnchors) || !has(self.spec.tokens) || (self.spec.tokens.certificateBinding != 'Required' && !has(self.spec.tokens.identityJoins))").message("spec.tokens.certificateBinding Required and spec.tokens.identityJoins compare the token with the client certificate: they need spec.trustAnchors"),
    validation = Rule::new("has(self.spec.tokens) || has(self.spec.login) || !has(self.spec.publicPaths)").message("spec.publicPaths exempt paths from tokens and login: set spec.tokens or spec.login, or remove spec.publicPaths"),
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Certificates","type":"integer","jsonPath":".status.bundle.certificates"}"#,
    printcolumn = r#"{"name":"NotAfter","type":"string","jsonPath":".status.bundle.notAfter"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClientAuthPolicySpec {
    /// Require (default): a handshake without a valid client certificate is
    /// refused. Optional: a certificate is verified when the client sends one,
    /// and clients without one are let through.
    #[serde(default)]
    pub mode: ClientAuthMode,
    /// CA certificates that client certificates must chain to. Only CA
    /// certificates (basicConstraints CA:TRUE) are kept; expired ones are
    /// dropped and reported in the Ready condition. Omitted: no client
    /// certificate is asked for, and tokens or login must be set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 64))]
    pub trust_anchors: Vec<PemSource>,
    /// Certificate revocation lists (PEM `X509 CRL`), each signed by one of the
    /// trust anchors. Written to the bundle Secret's `ca.crl`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub revocation: Vec<PemSource>,
    /// Client identities let through after the chain is verified; a client
    /// passes if it matches any entry. Omitted: every client with a valid chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_clients: Option<AllowedClients>,
    /// The longest chain accepted: the number of CA certificates allowed
    /// between the client certificate and the trust anchor, plus one (as
    /// ingress-nginx's auth-tls-verify-depth). 1 means the anchor signs clients directly.
    #[serde(default = "default_verify_depth")]
    #[schemars(range(min = 1, max = 10))]
    pub verify_depth: u8,
    /// How the verified client certificate is passed to the backend.
    #[serde(default)]
    pub forward_client_cert: ForwardClientCert,
    /// Binds Ingresses in the policy's namespace whose labels match, in
    /// addition to Ingresses that name the policy in the
    /// `tlsward.io/client-auth-policy` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_selector: Option<LabelSelector>,
    /// The CA-bundle Secret the operator writes. Omitted: `<policy-name>-ca`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<BundleTarget>,
    /// Bearer tokens (JWT access tokens) for API clients, checked after the
    /// client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<BearerTokens>,
    /// Browser login (OpenID Connect authorization code with PKCE) for
    /// people. With tokens also set, a request with `Authorization: Bearer`
    /// is checked as a token, and anything else needs a session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<BrowserLogin>,
    /// Paths that need no token and no login (health checks, public
    /// assets). The client-certificate check still applies: it happens
    /// before any path is known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub public_paths: Vec<PublicPath>,
}

impl ClientAuthPolicySpec {
    /// Whether the policy checks client certificates (it has trust anchors).
    pub fn checks_certificates(&self) -> bool {
        !self.trust_anchors.is_empty()
    }
}

fn default_verify_depth() -> u8 {
    1
}

/// Whether a client certificate is required.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ClientAuthMode {
    /// Refuse clients that present no valid certificate (Istio `MUTUAL`).
    #[default]
    Require,
    /// Verify a certificate when one is presented; admit clients without one
    /// (Istio `OPTIONAL_MUTUAL`).
    Optional,
}

/// How the client identity reaches the backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ForwardClientCert {
    /// `x-forwarded-client-cert` (Hash, Subject, URI, DNS), replacing any copy
    /// the client sent (Envoy's SANITIZE_SET).
    #[default]
    Sanitize,
    /// `Client-Cert` and `Client-Cert-Chain` headers as in RFC 9440.
    #[serde(rename = "RFC9440")]
    Rfc9440,
    /// Nothing is forwarded; client copies of the headers are still removed.
    None,
}

/// Where PEM material comes from. Set exactly one of secretRef,
/// configMapRef or inline.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.secretRef), has(self.configMapRef), has(self.inline)].filter(x, x).size() == 1").message("set exactly one of secretRef, configMapRef or inline"))]
pub struct PemSource {
    /// A key of a Secret in the policy's namespace. Watched: a change
    /// rebuilds the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<KeyRef>,
    /// A key of a ConfigMap in the policy's namespace. Watched: a change
    /// rebuilds the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<KeyRef>,
    /// PEM text given in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub inline: Option<String>,
}

/// Which kind of object a [`PemSource`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SourceKind {
    /// A Secret (`secretRef`).
    Secret,
    /// A ConfigMap (`configMapRef`).
    ConfigMap,
}

impl SourceKind {
    /// The kind's name, as messages print it.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Secret => "Secret",
            SourceKind::ConfigMap => "ConfigMap",
        }
    }

    /// The [`PemSource`] field that refers to this kind.
    pub fn ref_field(self) -> &'static str {
        match self {
            SourceKind::Secret => "secretRef",
            SourceKind::ConfigMap => "configMapRef",
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key of a Secret or ConfigMap in the policy's namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeyRef {
    /// The object's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The data key. Omitted: `ca.crt` for trust anchors, `ca.crl` for revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// Client identities. A `*` matches exactly one DNS label in dnsNames and
/// one path segment in uris.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedClients {
    /// DNS subjectAltNames, such as `*.clients.example.com`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    /// URI subjectAltNames, such as `spiffe://example.com/ns/*/sa/*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uris: Vec<String>,
    /// Subject common names, matched exactly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub common_names: Vec<String>,
    /// Lower-case hex SHA-256 digests of the client's SubjectPublicKeyInfo
    /// (key pinning), 64 characters each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spki_sha256: Vec<Sha256Hex>,
}

/// A lower-case hex SHA-256 digest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Sha256Hex(#[schemars(regex(pattern = r"^[0-9a-f]{64}$"))] pub String);

/// The operator's output Secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleTarget {
    /// The Secret's name, in the policy's namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub secret_name: String,
}

/// What the operator last did with the policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientAuthPolicyStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` is True when the bundle Secret holds this generation's
    /// anchors and every issuer's keys could be fetched; its reason says
    /// why not (SourceNotFound, InvalidCertificate, InvalidCRL,
    /// NoValidAnchors, TargetConflict, IssuerUnreachable, InvalidIssuer,
    /// SecretNotFound).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// What the bundle Secret holds now (the last good bundle, when Ready is False).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleStatus>,
    /// Names of the Ingresses in this namespace bound to the policy.
    /// Always written, so a merge patch can empty it.
    #[serde(default)]
    pub bound_ingresses: Vec<String>,
    /// The token and login issuers, their key counts and when their keys
    /// were last fetched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issuers: Vec<IssuerStatus>,
}

/// A summary of the written bundle.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleStatus {
    /// The Secret's name.
    pub secret_name: String,
    /// How many trust anchors it holds.
    pub certificates: u32,
    /// How many CRLs it holds.
    #[serde(default)]
    pub crls: u32,
    /// The earliest notAfter among the anchors (RFC 3339): when clients
    /// start failing unless the CA is rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// `sha256:<hex>` of each anchor, in bundle order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fingerprints: Vec<String>,
}

/// A status condition (the Kubernetes `metav1.Condition` shape).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type; tlsward sets `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// A CamelCase reason, such as Synced or SourceNotFound.
    pub reason: String,
    /// What happened, for humans: names the source and the fix.
    pub message: String,
    /// When status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The generation the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Why the CustomResourceDefinition could not be printed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrdError {
    /// The YAML serializer refused the generated definition.
    #[error("the ClientAuthPolicy CustomResourceDefinition does not serialize as YAML: {0}")]
    Yaml(#[source] serde_saphyr::SerializeError),
}

/// Why a policy is not Ready. [`FailureReason::as_str`] is the one place
/// that names it: the Ready condition's reason, the Warning Event's reason
/// and the `reason` label of `tlsward_operator_reconcile_failures` all come
/// from there, and alert rules match on them.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureReason {
    /// A referenced Secret or ConfigMap, or its key, does not exist.
    SourceNotFound,
    /// A trust-anchor source is not a set of CA certificates (or no source
    /// was set).
    InvalidCertificate,
    /// A revocation source is not a CRL signed by a trust anchor.
    InvalidCrl,
    /// Every certificate was dropped (leaf or expired), or none was given.
    NoValidAnchors,
    /// The bundle Secret's name is taken by a Secret the policy did not write.
    TargetConflict,
    /// An issuer's discovery document or key set could not be fetched.
    IssuerUnreachable,
    /// An issuer's discovery document names another issuer, or its key set
    /// holds no usable key.
    InvalidIssuer,
    /// The login's client secret or session-key Secret does not exist.
    SecretNotFound,
}

impl FailureReason {
    /// The CamelCase reason, as Kubernetes conditions and Events spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::SourceNotFound => "SourceNotFound",
            FailureReason::InvalidCertificate => "InvalidCertificate",
            FailureReason::InvalidCrl => "InvalidCRL",
            FailureReason::NoValidAnchors => "NoValidAnchors",
            FailureReason::TargetConflict => "TargetConflict",
            FailureReason::IssuerUnreachable => "IssuerUnreachable",
            FailureReason::InvalidIssuer => "InvalidIssuer",
            FailureReason::SecretNotFound => "SecretNotFound",
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The CustomResourceDefinition as YAML, as `tlsward crd` prints it and
/// `crds/` stores it.
pub fn crd_yaml() -> Result<String, CrdError> {
    use kube::CustomResourceExt;
    serde_saphyr::to_string(&ClientAuthPolicy::crd()).map_err(CrdError::Yaml)
}

impl ClientAuthPolicy {
    /// The name of the CA-bundle Secret the operator writes for this policy.
    pub fn bundle_secret_name(&self) -> String {
        match &self.spec.target {
            Some(t) if !t.secret_name.is_empty() => t.secret_name.clone(),
            _ => format!("{}-ca", self.metadata.name.as_deref().unwrap_or_default()),
        }
    }
}

/// What admission needs to know of a policy to bind an Ingress to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The policy's name.
    pub policy: String,
    /// Its mode.
    pub mode: ClientAuthMode,
    /// Its verify depth.
    pub verify_depth: u8,
    /// The CA-bundle Secret's name, in the policy's namespace.
    pub bundle_secret: String,
    /// Whether the policy checks client certificates at all (a tokens- or
    /// login-only policy has no bundle to point ingress-nginx at).
    pub checks_certificates: bool,
}

#[derive(Default)]
struct NamespacePolicies {
    by_name: HashMap<String, Binding>,
    /// Selector policies that require some `key=value`, under key then value.
    by_label: HashMap<String, HashMap<String, Vec<(Selector, String)>>>,
    /// Selector policies with no such pair; these are scanned.
    unkeyed: Vec<(Selector, String)>,
}

/// Known ClientAuthPolicies, indexed so that a lookup costs the same with
/// ten thousand policies as with one.
#[derive(Default)]
pub struct PolicyIndex {
    namespaces: HashMap<String, NamespacePolicies>,
    len: usize,
}

impl PolicyIndex {
    /// Builds the index. Policies with an invalid selector are still bound by
    /// name; their selector is ignored (the CRD schema cannot check operators).
    pub fn new<'a>(policies: impl IntoIterator<Item = &'a ClientAuthPolicy>) -> Self {
        let mut idx = PolicyIndex::default();
        for p in policies {
            let (Some(ns), Some(name)) = (p.metadata.namespace.clone(), p.metadata.name.clone())
            else {
                continue;
            };
            let entry = idx.namespaces.entry(ns).or_default();
            entry.by_name.insert(
                name.clone(),
                Binding {
                    policy: name.clone(),
                    mode: p.spec.mode,
                    verify_depth: p.spec.verify_depth,
                    bundle_secret: p.bundle_secret_name(),
                    checks_certificates: p.spec.checks_certificates(),
                },
            );
            idx.len += 1;
            let Some(sel) = p.spec.ingress_selector.as_ref() else {
                continue;
            };
            let Ok(compiled) = Selector::compile(sel) else {
                continue;
            };
            match compiled.index_key() {
                Some((k, v)) => {
                    let (k, v) = (k.to_string(), v.to_string());
                    entry
                        .by_label
                        .entry(k)
                        .or_default()
                        .entry(v)
                        .or_default()
                        .push((compiled, name));
                }
                None => entry.unkeyed.push((compiled, name)),
            }
        }
        idx
    }

    /// How many policies are indexed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no policy is indexed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The policy named `name` in `namespace`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&Binding> {
        self.namespaces.get(namespace)?.by_name.get(name)
    }

    /// Names of the policies in `namespace` whose ingressSelector matches
    /// `labels`, sorted.
    pub fn selecting(&self, namespace: &str, labels: &(impl Labels + ?Sized)) -> Vec<&str> {
        let Some(ns) = self.namespaces.get(namespace) else {
            return Vec::new();
        };
        let keyed = labels
            .each_label()
            .filter_map(|(k, v)| ns.by_label.get(k)?.get(v))
            .flatten();
        let mut names: Vec<&str> = keyed
            .chain(ns.unkeyed.iter())
            .filter(|(sel, _)| sel.matches(labels))
            .map(|(_, name)| name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::FailureReason;

    /// These are what `kubectl get`, `kubectl wait`, Events and alert rules
    /// show and match on (docs/clientauthpolicy.md lists them).
    #[test]
    fn failure_reasons_are_the_documented_condition_reasons() {
        let all = [
            (FailureReason::SourceNotFound, "SourceNotFound"),
            (FailureReason::InvalidCertificate, "InvalidCertificate"),
            (FailureReason::InvalidCrl, "InvalidCRL"),
            (FailureReason::NoValidAnchors, "NoValidAnchors"),
            (FailureReason::TargetConflict, "TargetConflict"),
            (FailureReason::IssuerUnreachable, "IssuerUnreachable"),
            (FailureReason::InvalidIssuer, "InvalidIssuer"),
            (FailureReason::SecretNotFound, "SecretNotFound"),
        ];
        for (reason, text) in all {
            assert_eq!(reason.as_str(), text);
            assert_eq!(reason.to_string(), text);
        }
    }
}
