//! The admission policy file (`policies/ingress-tls.yaml`).
//!
//! Every field has a secure default, so an empty file (or no file at all)
//! means: deny Ingresses whose hosts are not covered by TLS, inject no issuer.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::{Deserialize, Serialize};

/// The `kind` a policy file must declare, so a stray manifest is never
/// mistaken for a policy.
pub const POLICY_KIND: &str = "IngressTLSPolicy";
/// The `apiVersion` a policy file must declare.
pub const POLICY_API_VERSION: &str = "tlsward.io/v1alpha1";

/// What happens to an Ingress that breaks the policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Enforcement {
    /// Refuse it; the API server shows the violations to the user.
    #[default]
    Deny,
    /// Admit it, and return the violations as warnings (`kubectl` prints them).
    Warn,
    /// Admit it silently; the violations go to the audit log only.
    DryRun,
}

/// The admission policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressTlsPolicy {
    /// Must be `tlsward.io/v1alpha1` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Must be `IngressTLSPolicy` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Deny (default), Warn or DryRun.
    #[serde(default)]
    pub enforcement: Enforcement,
    /// Admit rules without a host and defaultBackend-only Ingresses. They are
    /// served with the controller's default certificate, which rarely matches
    /// the name clients ask for, so the default is `false`.
    #[serde(default)]
    pub allow_catch_all: bool,
    /// On UPDATE, let violations that the stored object already had through
    /// as warnings, so legacy Ingresses can still be edited after the policy
    /// is rolled out; new violations are enforced as usual. Off by default.
    #[serde(default)]
    pub allow_existing_violations: bool,
    /// Ingresses the policy does not apply to.
    #[serde(default, deserialize_with = "null_as_default")]
    pub exemptions: Exemptions,
    /// cert-manager annotation injection.
    #[serde(default, deserialize_with = "null_as_default")]
    pub cert_manager: CertManager,
    /// Add missing `spec.tls` entries instead of only refusing.
    #[serde(default, rename = "autoTLS", deserialize_with = "null_as_default")]
    pub auto_tls: AutoTls,
    /// How `tlsward.io/client-auth-policy` bindings are written.
    #[serde(default, deserialize_with = "null_as_default")]
    pub client_auth: ClientAuthSettings,
    /// Ingress classes tlsward's proxy serves. Their Ingresses get a warning
    /// for each `nginx.ingress.kubernetes.io/*` annotation the proxy does not
    /// implement. Default: `[tlsward]`.
    #[serde(default = "IngressTlsPolicy::default_proxy_classes")]
    pub proxy_ingress_classes: BTreeSet<String>,
}

impl Default for IngressTlsPolicy {
    fn default() -> Self {
        Self {
            api_version: None,
            kind: None,
            enforcement: Enforcement::default(),
            allow_catch_all: false,
            allow_existing_violations: false,
            exemptions: Exemptions::default(),
            cert_manager: CertManager::default(),
            auto_tls: AutoTls::default(),
            client_auth: ClientAuthSettings::default(),
            proxy_ingress_classes: Self::default_proxy_classes(),
        }
    }
}

impl IngressTlsPolicy {
    fn default_proxy_classes() -> BTreeSet<String> {
        BTreeSet::from(["tlsward".to_string()])
    }
}

/// Exemptions are explicit here, never self-service, unless
/// `allowExemptAnnotation` is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Exemptions {
    /// Namespace names whose Ingresses are not checked.
    #[serde(default)]
    pub namespaces: BTreeSet<String>,
    /// Namespaces whose labels match this selector are not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Ingress classes (`spec.ingressClassName`, or the legacy
    /// `kubernetes.io/ingress.class` annotation) that are not checked.
    #[serde(default)]
    pub ingress_classes: BTreeSet<String>,
    /// Honour `tlsward.io/exempt: "true"` on the Ingress itself. Any tenant
    /// can set that annotation, so it is off by default.
    #[serde(default)]
    pub allow_exempt_annotation: bool,
}

/// Which issuer the mutating webhook writes onto Ingresses that have TLS but
/// name no issuer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertManager {
    /// The issuer to inject; none means no injection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<IssuerRef>,
}

/// A cert-manager issuer reference, as in a Certificate's `spec.issuerRef`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerRef {
    /// The issuer's name.
    pub name: String,
    /// `ClusterIssuer` (default) or `Issuer`, or an external issuer's kind.
    #[serde(default = "IssuerRef::default_kind")]
    pub kind: String,
    /// `cert-manager.io` (default) or an external issuer's API group.
    #[serde(default = "IssuerRef::default_group")]
    pub group: String,
}

impl IssuerRef {
    fn default_kind() -> String {
        "ClusterIssuer".into()
    }
    fn default_group() -> String {
        CERT_MANAGER_GROUP.into()
    }
}

/// cert-manager's own API group.
pub const CERT_MANAGER_GROUP: &str = "cert-manager.io";

/// Automatic `spec.tls` entries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoTls {
    /// Add uncovered hosts to a `spec.tls` entry with secretName
    /// `<ingress-name>-tls`. Off by default: silently changing a tenant's
    /// spec surprises people more than a clear refusal does.
    #[serde(default)]
    pub enabled: bool,
}

/// Client-certificate binding settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientAuthSettings {
    /// Ingress classes served by ingress-nginx; bound Ingresses of these
    /// classes get the `nginx.ingress.kubernetes.io/auth-tls-*` annotations.
    #[serde(default = "ClientAuthSettings::default_nginx_classes")]
    pub nginx_ingress_classes: BTreeSet<String>,
}

impl ClientAuthSettings {
    fn default_nginx_classes() -> BTreeSet<String> {
        BTreeSet::from(["nginx".to_string()])
    }
}

impl Default for ClientAuthSettings {
    fn default() -> Self {
        Self {
            nginx_ingress_classes: Self::default_nginx_classes(),
        }
    }
}

/// A section whose children are all commented out (`certManager:` and
/// nothing under it) is YAML null; treat it as the section's defaults.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Why a policy file was refused. Every message starts with the file and
/// names the field to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The YAML did not parse or named an unknown field.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's error, with line and column. Boxed: it is large,
        /// and every `Result` of this error would carry its size.
        source: Box<serde_saphyr::Error>,
    },
    /// `apiVersion` is set to something else.
    #[error("{path}: apiVersion: is {found:?}; set it to {POLICY_API_VERSION:?}")]
    ApiVersion {
        /// The file.
        path: String,
        /// What the file says.
        found: String,
    },
    /// `kind` is set to something else.
    #[error("{path}: kind: is {found:?}; set it to {POLICY_KIND:?}")]
    Kind {
        /// The file.
        path: String,
        /// What the file says.
        found: String,
    },
    /// `certManager.issuer.name` is empty.
    #[error(
        "{path}: certManager.issuer.name: is empty; name the (Cluster)Issuer certificates come from, or remove certManager.issuer to disable injection"
    )]
    EmptyIssuerName {
        /// The file.
        path: String,
    },
    /// `certManager.issuer.kind` is empty.
    #[error(
        "{path}: certManager.issuer.kind: is empty; use ClusterIssuer, Issuer or an external issuer's kind"
    )]
    EmptyIssuerKind {
        /// The file.
        path: String,
    },
    /// `certManager.issuer.group` is empty.
    #[error(
        "{path}: certManager.issuer.group: is empty; use {CERT_MANAGER_GROUP} or an external issuer's API group"
    )]
    EmptyIssuerGroup {
        /// The file.
        path: String,
    },
    /// `exemptions.namespaceSelector` selects nothing in particular, so it
    /// would exempt every namespace.
    #[error(
        "{path}: exemptions.namespaceSelector: is empty, which matches every namespace and would switch the policy off: add matchLabels or matchExpressions, or remove it"
    )]
    EmptyNamespaceSelector {
        /// The file.
        path: String,
    },
    /// `exemptions.namespaceSelector` is not a valid label selector.
    #[error("{path}: exemptions.namespaceSelector: {source}")]
    NamespaceSelector {
        /// The file.
        path: String,
        /// What is wrong with the selector.
        source: crate::labels::SelectorError,
    },
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl IngressTlsPolicy {
    /// Parses and checks a policy file's text. `path` only labels errors.
    pub fn from_yaml(path: &str, text: &str) -> Result<Self, PolicyError> {
        let policy: IngressTlsPolicy = if text.trim().is_empty() {
            IngressTlsPolicy::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| PolicyError::Parse {
                path: path.to_string(),
                source: Box::new(e),
            })?
        };
        policy.check(path)?;
        Ok(policy)
    }

    /// Reads and parses a policy file.
    pub fn load(path: &std::path::Path) -> Result<Self, PolicyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: shown.clone(),
            source,
        })?;
        Self::from_yaml(&shown, &text)
    }

    fn check(&self, path: &str) -> Result<(), PolicyError> {
        let path = || path.to_string();
        if let Some(v) = &self.api_version
            && v != POLICY_API_VERSION
        {
            return Err(PolicyError::ApiVersion {
                path: path(),
                found: v.clone(),
            });
        }
        if let Some(k) = &self.kind
            && k != POLICY_KIND
        {
            return Err(PolicyError::Kind {
                path: path(),
                found: k.clone(),
            });
        }
        if let Some(issuer) = &self.cert_manager.issuer {
            if issuer.name.trim().is_empty() {
                return Err(PolicyError::EmptyIssuerName { path: path() });
            }
            if issuer.kind.trim().is_empty() {
                return Err(PolicyError::EmptyIssuerKind { path: path() });
            }
            if issuer.group.trim().is_empty() {
                return Err(PolicyError::EmptyIssuerGroup { path: path() });
            }
        }
        if let Some(sel) = &self.exemptions.namespace_selector {
            if sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty())
            {
                return Err(PolicyError::EmptyNamespaceSelector { path: path() });
            }
            crate::labels::Selector::compile(sel).map_err(|source| {
                PolicyError::NamespaceSelector {
                    path: path(),
                    source,
                }
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_secure_default() {
        let p = IngressTlsPolicy::from_yaml("p.yaml", "").unwrap();
        assert_eq!(p.enforcement, Enforcement::Deny);
        assert!(!p.allow_catch_all);
        assert!(!p.auto_tls.enabled);
        assert!(!p.exemptions.allow_exempt_annotation);
        assert!(p.cert_manager.issuer.is_none());
        assert!(p.client_auth.nginx_ingress_classes.contains("nginx"));
        assert_eq!(
            p.proxy_ingress_classes,
            BTreeSet::from(["tlsward".to_string()])
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let err = IngressTlsPolicy::from_yaml("p.yaml", "enforcment: Warn\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("enforcment"), "{msg}");
        assert!(msg.starts_with("p.yaml"), "{msg}");
    }

    #[test]
    fn bad_enum_is_refused() {
        let err = IngressTlsPolicy::from_yaml("p.yaml", "enforcement: Maybe\n").unwrap_err();
        assert!(err.to_string().contains("Maybe"), "{err}");
    }

    #[test]
    fn issuer_defaults_to_cert_manager_cluster_issuer() {
        let p = IngressTlsPolicy::from_yaml(
            "p.yaml",
            "certManager:\n  issuer:\n    name: letsencrypt-prod\n",
        )
        .unwrap();
        let i = p.cert_manager.issuer.unwrap();
        assert_eq!(
            (i.kind.as_str(), i.group.as_str()),
            ("ClusterIssuer", "cert-manager.io")
        );
    }

    #[test]
    fn empty_issuer_name_names_the_field() {
        let err = IngressTlsPolicy::from_yaml("p.yaml", "certManager:\n  issuer:\n    name: ''\n")
            .unwrap_err();
        assert!(err.to_string().contains("certManager.issuer.name"), "{err}");
    }

    #[test]
    fn commented_out_section_means_defaults() {
        let p =
            IngressTlsPolicy::from_yaml("p.yaml", "certManager:\n#  issuer: {name: x}\nautoTLS:\n")
                .unwrap();
        assert!(p.cert_manager.issuer.is_none());
        assert!(!p.auto_tls.enabled);
    }

    #[test]
    fn empty_namespace_selector_is_refused() {
        let err = IngressTlsPolicy::from_yaml("p.yaml", "exemptions: {namespaceSelector: {}}\n")
            .unwrap_err();
        assert!(err.to_string().contains("matches every namespace"), "{err}");
    }

    #[test]
    fn wrong_kind_is_refused() {
        let err = IngressTlsPolicy::from_yaml("p.yaml", "kind: Ingress\n").unwrap_err();
        assert!(err.to_string().contains("IngressTLSPolicy"), "{err}");
    }

    #[test]
    fn bad_selector_operator_is_refused() {
        let y = "exemptions:\n  namespaceSelector:\n    matchExpressions:\n    - {key: a, operator: Maybe}\n";
        let err = IngressTlsPolicy::from_yaml("p.yaml", y).unwrap_err();
        assert!(
            err.to_string().contains("exemptions.namespaceSelector"),
            "{err}"
        );
    }
}
