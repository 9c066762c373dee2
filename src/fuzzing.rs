//! What the fuzz targets (`tests/fuzz`) and the property tests need of the
//! crate's internals, and no more: the webhook reader's oracle, which is
//! private where it lives, and the inputs it is run on. Hidden from
//! the documentation; not an API. docs/fuzzing.md says what each target
//! checks.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use k8s_openapi::api::core::v1::Namespace;

use crate::clientauth::ClientAuthPolicy;
use crate::policy::IngressTlsPolicy;
use crate::webhook::Snapshot;
use crate::webhook::review::{Hook, NamespaceLabels};

/// Decides `body` with the hand-written AdmissionReview reader and again
/// with serde alone, and says how the two differ: the reader must read
/// nothing serde refuses, and what it reads must decide the same (same
/// verdict, same response, same patch, same error). `Ok(true)`: the reader
/// read the body and agreed; `Ok(false)`: the reader gave up, so serde
/// decides, and there is nothing to compare.
pub fn review_reader_agrees_with_serde(
    hook: Hook,
    body: &[u8],
    snapshot: &Snapshot,
    namespaces: Option<NamespaceLabels>,
) -> Result<bool, String> {
    crate::webhook::review::reader_agrees_with_serde(hook, body, snapshot, namespaces)
}

/// The kubectl-made Ingresses of `policies/ingresses/` (each file says the
/// `kubectl create ingress ... --dry-run=client` command that made it), as
/// JSON: what the review fuzz target and property test start from.
pub fn sample_ingresses() -> Vec<serde_json::Value> {
    [
        include_str!("../policies/ingresses/allowed/client-auth-bound.yaml"),
        include_str!("../policies/ingresses/allowed/exact-host.yaml"),
        include_str!("../policies/ingresses/allowed/external-issuer.yaml"),
        include_str!("../policies/ingresses/allowed/several-hosts-one-entry.yaml"),
        include_str!("../policies/ingresses/allowed/user-cluster-issuer.yaml"),
        include_str!("../policies/ingresses/allowed/wildcard-one-label.yaml"),
        include_str!("../policies/ingresses/denied/catch-all-rule.yaml"),
        include_str!("../policies/ingresses/denied/cluster-issuer-with-issuer-kind.yaml"),
        include_str!("../policies/ingresses/denied/default-backend-only.yaml"),
        include_str!("../policies/ingresses/denied/duplicate-secret-name.yaml"),
        include_str!("../policies/ingresses/denied/empty-client-auth-annotation.yaml"),
        include_str!("../policies/ingresses/denied/empty-tls-entry.yaml"),
        include_str!("../policies/ingresses/denied/host-not-covered.yaml"),
        include_str!("../policies/ingresses/denied/invalid-secret-name.yaml"),
        include_str!("../policies/ingresses/denied/no-tls.yaml"),
        include_str!("../policies/ingresses/denied/non-ascii-host.yaml"),
        include_str!("../policies/ingresses/denied/tls-without-secret.yaml"),
        include_str!("../policies/ingresses/denied/wildcard-two-labels-deep.yaml"),
    ]
    .iter()
    .flat_map(|text| crate::manifests::parse_text("sample", text).unwrap_or_default())
    .map(|doc| doc.value)
    .collect()
}

/// Webhook snapshots to decide under: the default policy, the shipped
/// `policies/ingress-tls.yaml`, and policies that warn, dry-run, inject an
/// issuer, add TLS, allow catch-alls and exempt classes, namespaces and
/// annotations, each with the sample ClientAuthPolicies bound.
pub fn webhook_snapshots() -> &'static [Snapshot] {
    static SNAPSHOTS: OnceLock<Vec<Snapshot>> = OnceLock::new();
    SNAPSHOTS.get_or_init(|| {
        let known: Vec<ClientAuthPolicy> = [
            include_str!("../policies/clientauthpolicies/inventory-clients.yaml"),
            include_str!("../policies/clientauthpolicies/partner-clients.yaml"),
            include_str!("../policies/clientauthpolicies/optional-clients.yaml"),
        ]
        .iter()
        .flat_map(|text| crate::manifests::parse_text("sample", text).unwrap_or_default())
        .filter_map(|doc| serde_json::from_value(doc.value).ok())
        .collect();
        let policies = [
            include_str!("../policies/ingress-tls.yaml"),
            "apiVersion: tlsward.io/v1alpha1\nkind: IngressTLSPolicy\nenforcement: Warn\n\
             allowCatchAll: true\ncertManager: {issuer: {name: letsencrypt}}\n\
             autoTLS: {enabled: true}\n",
            "apiVersion: tlsward.io/v1alpha1\nkind: IngressTLSPolicy\nenforcement: DryRun\n\
             allowExistingViolations: true\n\
             certManager: {issuer: {name: vault, kind: VaultIssuer, group: example.com}}\n\
             exemptions: {namespaces: [kube-system], ingressClasses: [internal],\n  \
             allowExemptAnnotation: true,\n  \
             namespaceSelector: {matchLabels: {tlsward.io/exempt: \"true\"},\n    \
             matchExpressions: [{key: team, operator: In, values: [platform]}]}}\n\
             clientAuth: {nginxIngressClasses: [nginx, nginx-internal]}\n",
        ];
        let mut snapshots = vec![Snapshot::new(IngressTlsPolicy::default(), &[])];
        for text in policies {
            let policy = IngressTlsPolicy::from_yaml("fuzz-policy.yaml", text)
                .expect("the fuzzing policies are valid");
            snapshots.push(Snapshot::new(policy, &known));
        }
        snapshots
    })
}

/// Namespace lookups to decide with: none (no reflector), every namespace
/// unlabelled, or labelled as the exempting selector above asks.
pub fn namespace_lookups() -> [Option<NamespaceLabels<'static>>; 3] {
    fn labelled(_: &str) -> Option<Arc<Namespace>> {
        static NS: OnceLock<Arc<Namespace>> = OnceLock::new();
        Some(
            NS.get_or_init(|| {
                let mut ns = Namespace::default();
                ns.metadata.labels = Some(BTreeMap::from([
                    ("tlsward.io/exempt".to_string(), "true".to_string()),
                    ("team".to_string(), "platform".to_string()),
                ]));
                Arc::new(ns)
            })
            .clone(),
        )
    }
    fn unlabelled(_: &str) -> Option<Arc<Namespace>> {
        Some(Arc::new(Namespace::default()))
    }
    [None, Some(&unlabelled), Some(&labelled)]
}
