//! The `ClientAuthPolicy` custom resource, and the index the admission core
//! uses to bind Ingresses to policies.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::labels::Selector;

pub mod bundle;

/// Client-certificate policy for the Ingresses bound to it: which CAs to
/// trust, which CRLs to honour and which client identities to let through.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tlsward.io",
    version = "v1alpha1",
    kind = "ClientAuthPolicy",
    namespaced,
    shortname = "cap",
    status = "ClientAuthPolicyStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct ClientAuthPolicySpec {
    /// Require: a handshake without a valid client certificate is refused.
    /// Optional: a certificate is verified if the client sends one.
    #[serde(default)]
    pub mode: ClientAuthMode,
    /// CA certificates that client certificates must chain to.
    #[serde(default)]
    pub trust_anchors: Vec<PemSource>,
    /// Certificate revocation lists, each signed by one of the trust anchors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revocation: Vec<PemSource>,
    /// Identities let through; a client passes if it matches any entry. Empty
    /// means every client with a valid chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_clients: Option<AllowedClients>,
    /// The longest chain accepted, counting the client certificate and
    /// excluding the trust anchor (as ingress-nginx's auth-tls-verify-depth).
    #[serde(default = "default_verify_depth")]
    #[schemars(range(min = 1, max = 10))]
    pub verify_depth: u8,
    /// Selects Ingresses in the policy's namespace to bind without the
    /// `tlsward.io/client-auth-policy` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_selector: Option<LabelSelector>,
    /// The CA-bundle Secret the operator writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<BundleTarget>,
}

fn default_verify_depth() -> u8 {
    1
}

/// Whether a client certificate is required.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ClientAuthMode {
    /// Refuse clients that present no valid certificate.
    #[default]
    Require,
    /// Verify a certificate when one is presented; admit clients without one.
    Optional,
}

/// Where PEM material comes from: exactly one of the fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PemSource {
    /// A key of a Secret in the policy's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<KeyRef>,
    /// A key of a ConfigMap in the policy's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<KeyRef>,
    /// PEM text given in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
}

/// A key of a Secret or ConfigMap.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeyRef {
    /// The object's name.
    pub name: String,
    /// The data key; `ca.crt` for anchors and `ca.crl` for CRLs when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Client identities; entries may use `*` for one DNS label or URI segment.
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
    /// Hex SHA-256 digests of the client's SubjectPublicKeyInfo (key pinning).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spki_sha256: Vec<String>,
}

/// The operator's output Secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleTarget {
    /// The Secret's name; `<policy-name>-ca` when omitted.
    pub secret_name: String,
}

/// What the operator last did with the policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientAuthPolicyStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Names of the Ingresses bound to this policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bound_ingresses: Vec<String>,
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
    /// name; their selector is ignored (the operator reports it).
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
    pub fn selecting(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Vec<&str> {
        let Some(ns) = self.namespaces.get(namespace) else {
            return Vec::new();
        };
        let keyed = labels
            .iter()
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
