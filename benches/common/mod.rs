//! Fixtures shared by the benchmarks: kubectl-like Ingresses, the
//! AdmissionReviews the API server wraps them in, and ClientAuthPolicies.
//!
//! Every object is built with `serde_json` the way it arrives on the wire, so
//! the benchmarks decode exactly what a real request carries.

// Each benchmark uses a different subset of the fixtures.
#![allow(dead_code)]

use serde_json::{Value, json};

/// Namespace of the Ingress and of every ClientAuthPolicy.
pub const NAMESPACE: &str = "shop";
/// The Ingress's name.
pub const INGRESS_NAME: &str = "storefront";
/// The ClientAuthPolicy the Ingress is bound to (by annotation or selector).
pub const BOUND_POLICY: &str = "storefront-clients";
/// Label key/value of the Ingress that [`BOUND_POLICY`]'s selector matches.
pub const BOUND_LABEL: (&str, &str) = ("app", "storefront");
/// The uid of every AdmissionReview request.
pub const REQUEST_UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";

/// How the Ingress names its ClientAuthPolicy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// `tlsward.io/client-auth-policy: storefront-clients` (plus labels).
    Annotation,
    /// Labels only: the policy's `ingressSelector` picks the Ingress up.
    Selector,
}

/// The host names of an Ingress with `n` hosts.
pub fn host_names(n: usize) -> Vec<String> {
    if n == 1 {
        return vec!["shop.example.com".into()];
    }
    (0..n).map(|i| format!("shop-{i:02}.example.com")).collect()
}

/// A networking.k8s.io/v1 Ingress as `kubectl create -f` sends it through
/// admission: server-filled metadata (uid, creationTimestamp, generation,
/// managedFields), labels, cert-manager and ingress-nginx annotations, and
/// every host covered by a `spec.tls` entry (at most 10 hosts per entry,
/// each entry with its own Secret).
pub fn ingress(hosts: usize, binding: Binding) -> Value {
    let names = host_names(hosts);
    let rules: Vec<Value> = names
        .iter()
        .map(|h| {
            json!({
                "host": h,
                "http": {"paths": [{
                    "path": "/",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": INGRESS_NAME, "port": {"number": 8080}}}
                }]}
            })
        })
        .collect();
    let tls: Vec<Value> = names
        .chunks(10)
        .enumerate()
        .map(|(i, chunk)| {
            let secret = if i == 0 {
                format!("{INGRESS_NAME}-tls")
            } else {
                format!("{INGRESS_NAME}-tls-{i}")
            };
            json!({"hosts": chunk, "secretName": secret})
        })
        .collect();
    let mut annotations = json!({
        "cert-manager.io/cluster-issuer": "letsencrypt-prod",
        "nginx.ingress.kubernetes.io/ssl-redirect": "true",
        "nginx.ingress.kubernetes.io/proxy-body-size": "8m"
    });
    if binding == Binding::Annotation {
        annotations["tlsward.io/client-auth-policy"] = json!(BOUND_POLICY);
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": INGRESS_NAME,
            "namespace": NAMESPACE,
            "uid": "3c0b4f8e-2a7d-4d5e-9b1a-6f2e8c9d0a11",
            "generation": 1,
            "creationTimestamp": "2025-06-02T09:14:07Z",
            "labels": {
                BOUND_LABEL.0: BOUND_LABEL.1,
                "app.kubernetes.io/part-of": "shop",
                "team": "payments"
            },
            "annotations": annotations,
            "managedFields": [{
                "manager": "kubectl-create",
                "operation": "Update",
                "apiVersion": "networking.k8s.io/v1",
                "time": "2025-06-02T09:14:07Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:annotations": {".": {}}, "f:labels": {".": {}}},
                    "f:spec": {"f:ingressClassName": {}, "f:rules": {}, "f:tls": {}}
                }
            }]
        },
        "spec": {
            "ingressClassName": "nginx",
            "tls": tls,
            "rules": rules
        },
        "status": {"loadBalancer": {}}
    })
}

/// The `admission.k8s.io/v1` AdmissionReview the API server POSTs for a
/// CREATE of `object` by `kubectl create`.
pub fn admission_review(object: &Value) -> Value {
    let gvk = json!({"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"});
    let gvr = json!({"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"});
    json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": REQUEST_UID,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": "CREATE",
            "userInfo": {
                "username": "alice@example.com",
                "groups": ["developers", "system:authenticated"]
            },
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {
                "kind": "CreateOptions",
                "apiVersion": "meta.k8s.io/v1",
                "fieldManager": "kubectl-create",
                "fieldValidation": "Strict"
            }
        }
    })
}

/// One ClientAuthPolicy in [`NAMESPACE`] whose `ingressSelector` matches
/// `app=<app>`.
pub fn client_auth_policy(name: &str, app: &str) -> Value {
    json!({
        "apiVersion": "tlsward.io/v1alpha1",
        "kind": "ClientAuthPolicy",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "mode": "Require",
            "trustAnchors": [{"secretRef": {"name": format!("{name}-anchors"), "key": "ca.crt"}}],
            "verifyDepth": 2,
            "ingressSelector": {"matchLabels": {"app": app}}
        }
    })
}

/// `count` ClientAuthPolicies in [`NAMESPACE`]: [`BOUND_POLICY`] (which
/// selects the fixture Ingress) and `count - 1` others, each selecting a
/// different `app` label, so exactly one selects the Ingress.
pub fn client_auth_policies(count: usize) -> Vec<Value> {
    assert!(count >= 1, "at least the bound policy is needed");
    let mut out = vec![client_auth_policy(BOUND_POLICY, BOUND_LABEL.1)];
    out.extend(
        (1..count).map(|i| client_auth_policy(&format!("cap-{i:05}"), &format!("svc-{i:05}"))),
    );
    out
}

/// [`client_auth_policies`] as one multi-document YAML file, the form
/// `tlsward webhook --client-auth-policies` reads.
pub fn client_auth_policies_yaml(count: usize) -> String {
    let mut out = String::new();
    for p in client_auth_policies(count) {
        let name = p["metadata"]["name"].as_str().unwrap_or_default();
        let app = p["spec"]["ingressSelector"]["matchLabels"]["app"]
            .as_str()
            .unwrap_or_default();
        out.push_str(&format!(
            "---\napiVersion: tlsward.io/v1alpha1\nkind: ClientAuthPolicy\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\nspec:\n  mode: Require\n  trustAnchors:\n  - secretRef:\n      name: {name}-anchors\n      key: ca.crt\n  verifyDepth: 2\n  ingressSelector:\n    matchLabels:\n      app: {app}\n"
        ));
    }
    out
}
