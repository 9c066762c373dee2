//! The admission webhook configurations the chart renders: identical to
//! `webhooks/*.yaml` for the default release; failurePolicy, timeout and
//! cert-manager CA injection from the values; a namespaceSelector that
//! exempts kube-system and the release namespace; and the webhook's serving
//! certificate, self-managed by default or from cert-manager on request.
//! Uses the real `helm template` and the files in `webhooks/`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::support::*;

fn webhook_config<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(docs, kind);
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn only_hook(config: &Value) -> &Value {
    let hooks = config["webhooks"].as_array().expect("webhooks");
    assert_eq!(hooks.len(), 1, "one webhook in {}", name_of(config));
    &hooks[0]
}

#[test]
fn webhook_configurations_match_the_files_in_webhooks() {
    let Some(helm) = tool("helm") else { return };
    // Release tlsward in namespace tlsward is what webhooks/*.yaml describe.
    let docs = render(&helm, &DEFAULTS);
    for (file, kind) in [
        (
            "webhooks/validating-webhook.yaml",
            "ValidatingWebhookConfiguration",
        ),
        (
            "webhooks/mutating-webhook.yaml",
            "MutatingWebhookConfiguration",
        ),
    ] {
        let repo: Value = serde_saphyr::from_str(&read(file)).expect("YAML");
        let rendered = webhook_config(&docs, kind);
        assert_eq!(rendered["apiVersion"], repo["apiVersion"], "{file}");
        assert_eq!(
            rendered["metadata"]["name"], repo["metadata"]["name"],
            "{file}"
        );
        assert_eq!(
            rendered["webhooks"], repo["webhooks"],
            "{file} and the chart's {kind} differ: keep them in sync"
        );
        assert!(
            rendered["metadata"].get("annotations").is_none(),
            "no cert-manager annotation in the self-managed mode"
        );
    }
}

#[test]
fn webhook_configurations_carry_the_settings_from_the_values() {
    let Some(helm) = tool("helm") else { return };
    for (s, failure_policy, timeout) in [
        (&DEFAULTS, "Fail", 5),
        (&CLUSTER_IP, "Fail", 5),
        (&FLIPPED, "Ignore", 10),
        (&ALTERNATIVE, "Fail", 5),
    ] {
        let docs = render(&helm, s);
        let full = fullname(s);
        let cert_manager = s.cert_manager;
        for (kind, hook_name, path) in [
            (
                "ValidatingWebhookConfiguration",
                "ingress-tls.tlsward.io",
                "/validate",
            ),
            (
                "MutatingWebhookConfiguration",
                "ingress-tls-mutate.tlsward.io",
                "/mutate",
            ),
        ] {
            let what = format!("{}: {kind}", s.name);
            let config = webhook_config(&docs, kind);
            // Both share the name the webhook is given with --webhook-config.
            assert_eq!(name_of(config), full, "{what}");
            let hook = only_hook(config);
            assert_eq!(hook["name"], hook_name, "{what}");
            assert_eq!(hook["failurePolicy"], failure_policy, "{what}");
            assert_eq!(hook["matchPolicy"], "Equivalent", "{what}");
            assert_eq!(hook["sideEffects"], "None", "{what}");
            assert_eq!(hook["timeoutSeconds"], timeout, "{what}");
            assert_eq!(hook["admissionReviewVersions"], json!(["v1"]), "{what}");
            assert_eq!(
                hook["rules"],
                json!([{
                    "apiGroups": ["networking.k8s.io"],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"],
                    "resources": ["ingresses"],
                    "scope": "Namespaced",
                }]),
                "{what}"
            );
            assert_eq!(
                hook["clientConfig"],
                json!({"service": {
                    "namespace": s.namespace,
                    "name": format!("{full}-webhook"),
                    "path": path,
                    "port": 443,
                }}),
                "{what}: the webhook Service, and no caBundle"
            );
            assert!(hook.get("objectSelector").is_none(), "{what}");
            if kind.starts_with("Mutating") {
                assert_eq!(hook["reinvocationPolicy"], "IfNeeded", "{what}");
            } else {
                assert!(hook.get("reinvocationPolicy").is_none(), "{what}");
            }
            let injection = &config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"];
            if cert_manager {
                assert_eq!(
                    injection,
                    &json!(format!("{}/{full}-webhook", s.namespace)),
                    "{what}"
                );
            } else {
                assert!(injection.is_null(), "{what}");
            }
        }

        // The Service the configurations call serves 443 from the webhook's 8443.
        let svc = find(&docs, "Service", &format!("{full}-webhook"));
        let https = svc["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["port"] == 443)
            .expect("port 443");
        assert_eq!(https["targetPort"], "https", "{}", s.name);
        let webhook = workload(&docs, "webhook");
        assert!(selects(&svc["spec"]["selector"], pod_labels(webhook)));
        let port = container(webhook)["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == "https")
            .cloned()
            .expect("https port");
        assert_eq!(port["containerPort"], 8443, "{}", s.name);
        assert_eq!(flag(&args_of(webhook), "--listen"), Some("0.0.0.0:8443"));
    }
}

fn namespace_selector(docs: &[Value], kind: &str) -> Value {
    only_hook(webhook_config(docs, kind))["namespaceSelector"].clone()
}

#[test]
fn webhook_namespace_selector_exempts_kube_system_and_the_release_namespace() {
    let Some(helm) = tool("helm") else { return };
    let cases: [(Scenario, &[&str]); 4] = [
        (DEFAULTS, &["kube-system", "tlsward"]),
        (
            Scenario {
                name: "namespace other-ns",
                namespace: "other-ns",
                ..DEFAULTS
            },
            &["kube-system", "other-ns"],
        ),
        (
            Scenario {
                name: "installed in kube-system",
                namespace: "kube-system",
                ..DEFAULTS
            },
            &["kube-system"],
        ),
        (
            FLIPPED,
            &["kube-system", "tlsward", "monitoring", "cert-manager"],
        ),
    ];
    for (s, excluded) in &cases {
        let docs = render(&helm, s);
        for kind in [
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
        ] {
            assert_eq!(
                namespace_selector(&docs, kind),
                json!({"matchExpressions": [{
                    "key": "kubernetes.io/metadata.name",
                    "operator": "NotIn",
                    "values": excluded,
                }]}),
                "{}: {kind}",
                s.name
            );
        }
        // The policy exempts the release namespace as well.
        let policy = policy_of(&docs, s);
        assert!(
            strings(&policy["exemptions"]["namespaces"]).contains(&s.namespace.to_string()),
            "{}: {policy}",
            s.name
        );
    }
}

#[test]
fn webhook_certificate_is_self_managed_by_default_and_from_cert_manager_on_request() {
    let Some(helm) = tool("helm") else { return };
    let common = |args: &[String], what: &str| {
        assert_eq!(flag(args, "--listen"), Some("0.0.0.0:8443"), "{what}");
        assert_eq!(
            flag(args, "--policy"),
            Some("/etc/tlsward/policy/ingress-tls.yaml"),
            "{what}"
        );
        assert!(args.iter().any(|a| a == "--kubernetes"), "{what}");
    };
    let mounts = |w: &Value| -> BTreeMap<String, String> {
        container(w)["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                assert_eq!(m["readOnly"], true, "{m}");
                (
                    m["mountPath"].as_str().expect("path").to_string(),
                    m["name"].as_str().expect("name").to_string(),
                )
            })
            .collect()
    };
    let volume = |w: &Value, name: &str| -> Value {
        w["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("volume {name}"))
    };

    // Self-managed: no TLS files, no cert-manager objects.
    let docs = render(&helm, &DEFAULTS);
    let w = workload(&docs, "webhook");
    let args = args_of(w);
    common(&args, "self-managed");
    assert_eq!(
        flag(&args, "--self-signed-secret"),
        Some("tlsward/tlsward-webhook-tls")
    );
    assert_eq!(flag(&args, "--webhook-config"), Some("tlsward"));
    assert!(flag(&args, "--tls-cert").is_none() && flag(&args, "--tls-key").is_none());
    let m = mounts(w);
    assert_eq!(m.len(), 1, "only the policy is mounted: {m:?}");
    assert_eq!(
        volume(w, &m["/etc/tlsward/policy"])["configMap"]["name"],
        "tlsward-policy"
    );
    for kind in ["Certificate", "Issuer"] {
        assert!(
            of_kind(&docs, kind).is_empty(),
            "{kind} without cert-manager"
        );
    }

    // cert-manager with the chart's self-signed Issuer, and with the user's own.
    for (s, issuer) in [
        (
            &FLIPPED,
            json!({"name": "edge-tls-webhook-selfsigned", "kind": "Issuer", "group": "cert-manager.io"}),
        ),
        (
            &ALTERNATIVE,
            json!({"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}),
        ),
    ] {
        let docs = render(&helm, s);
        let full = fullname(s);
        let ns = s.namespace;
        let what = s.name;
        let w = workload(&docs, "webhook");
        let args = args_of(w);
        common(&args, what);
        assert_eq!(
            flag(&args, "--tls-cert"),
            Some("/etc/tlsward/tls/tls.crt"),
            "{what}"
        );
        assert_eq!(
            flag(&args, "--tls-key"),
            Some("/etc/tlsward/tls/tls.key"),
            "{what}"
        );
        assert!(flag(&args, "--self-signed-secret").is_none(), "{what}");
        assert!(flag(&args, "--webhook-config").is_none(), "{what}");
        let cert = find(&docs, "Certificate", &format!("{full}-webhook"));
        assert_eq!(cert["metadata"]["namespace"], ns, "{what}");
        let svc = format!("{full}-webhook");
        assert_eq!(
            cert["spec"]["dnsNames"],
            json!([svc, format!("{svc}.{ns}"), format!("{svc}.{ns}.svc")]),
            "{what}"
        );
        assert_eq!(cert["spec"]["issuerRef"], issuer, "{what}");
        let m = mounts(w);
        let tls = volume(w, &m["/etc/tlsward/tls"]);
        assert_eq!(
            tls["secret"]["secretName"], cert["spec"]["secretName"],
            "{what}"
        );
        let issuers = of_kind(&docs, "Issuer");
        if issuer["kind"] == "Issuer" {
            assert_eq!(issuers.len(), 1, "{what}");
            assert_eq!(name_of(issuers[0]), issuer["name"], "{what}");
            assert_eq!(issuers[0]["spec"], json!({"selfSigned": {}}), "{what}");
        } else {
            assert!(issuers.is_empty(), "{what}: the user's issuer is used");
        }
    }
}
