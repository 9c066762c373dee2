//! The RBAC the chart renders: each component's Role and ClusterRole grant
//! exactly what it needs (with the self-managed webhook certificate and in
//! cert-manager mode), bound to the component's own ServiceAccount only; no
//! rule holds a `*`, a non-resource URL or a verb that escalates or
//! deletes. Uses the real `helm template` over the scenarios in `support`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::*;

/// A rule as (apiGroups, resources, resourceNames, verbs).
type Rule<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [&'a str]);

/// Every (apiGroup, resource, resourceName or "", verb) a set of rules grants.
fn grants(rules: &Value) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules.as_array().expect("rules") {
        let names = strings(&rule["resourceNames"]);
        let names = if names.is_empty() {
            vec![String::new()]
        } else {
            names
        };
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for n in &names {
                    for v in strings(&rule["verbs"]) {
                        out.insert((g.clone(), r.clone(), n.clone(), v));
                    }
                }
            }
        }
    }
    out
}

fn expected_grants(rules: &[Rule]) -> BTreeSet<(String, String, String, String)> {
    let as_json: Vec<Value> = rules
        .iter()
        .map(|(g, r, n, v)| json!({"apiGroups": g, "resources": r, "resourceNames": n, "verbs": v}))
        .collect();
    grants(&Value::Array(as_json))
}

fn assert_role(docs: &[Value], s: &Scenario, kind: &str, component: &str, want: &[Rule]) {
    let name = format!("{}-{component}", fullname(s));
    let role = find(docs, kind, &name);
    let what = format!("{}: {kind} {name}", s.name);
    assert_eq!(grants(&role["rules"]), expected_grants(want), "{what}");
    if kind == "Role" {
        assert_eq!(role["metadata"]["namespace"], s.namespace, "{what}");
    }
    let binding_kind = format!("{kind}Binding");
    let binding = find(docs, &binding_kind, &name);
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}),
        "{what}"
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": name, "namespace": s.namespace}]),
        "{what}: bound to the component's own ServiceAccount only"
    );
}

const READ: &[&str] = &["get", "list", "watch"];

fn operator_rules() -> Vec<Rule<'static>> {
    vec![
        (&["tlsward.io"], &["clientauthpolicies"], &[], READ),
        (
            &["tlsward.io"],
            &["clientauthpolicies/status"],
            &[],
            &["get", "patch"],
        ),
        (
            &[""],
            &["secrets"],
            &[],
            &["get", "list", "watch", "create", "patch"],
        ),
        (&[""], &["configmaps"], &[], READ),
        (&["networking.k8s.io"], &["ingresses"], &[], READ),
        (&["events.k8s.io"], &["events"], &[], &["create", "patch"]),
    ]
}

fn proxy_rules() -> Vec<Rule<'static>> {
    vec![
        (&["networking.k8s.io"], &["ingresses"], &[], READ),
        (
            &["networking.k8s.io"],
            &["ingresses/status"],
            &[],
            &["get", "update", "patch"],
        ),
        (&["networking.k8s.io"], &["ingressclasses"], &[], READ),
        (&[""], &["secrets", "configmaps", "services"], &[], READ),
        (&["discovery.k8s.io"], &["endpointslices"], &[], READ),
        (&["tlsward.io"], &["clientauthpolicies"], &[], READ),
    ]
}

const LEASES: &[Rule<'static>] = &[(
    &["coordination.k8s.io"],
    &["leases"],
    &[],
    &["get", "create", "patch"],
)];

#[test]
fn rbac_grants_each_component_exactly_what_it_needs() {
    let Some(helm) = tool("helm") else { return };

    // Self-managed webhook certificate (the default), in two namespaces.
    for s in [&DEFAULTS, &CLUSTER_IP] {
        let docs = render(&helm, s);
        let full = fullname(s);
        let secret = format!("{full}-webhook-tls");
        assert_role(
            &docs,
            s,
            "ClusterRole",
            "webhook",
            &[
                (&["tlsward.io"], &["clientauthpolicies"], &[], READ),
                (&[""], &["namespaces"], &[], READ),
                (
                    &["admissionregistration.k8s.io"],
                    &[
                        "validatingwebhookconfigurations",
                        "mutatingwebhookconfigurations",
                    ],
                    &[full.as_str()],
                    &["get", "patch"],
                ),
            ],
        );
        assert_role(
            &docs,
            s,
            "Role",
            "webhook",
            &[
                (
                    &[""],
                    &["secrets"],
                    &[secret.as_str()],
                    &["get", "update", "patch"],
                ),
                (&[""], &["secrets"], &[], &["create"]),
            ],
        );
        assert_role(&docs, s, "ClusterRole", "operator", &operator_rules());
        assert_role(&docs, s, "Role", "operator", LEASES);
        assert_role(&docs, s, "ClusterRole", "proxy", &proxy_rules());
        assert_eq!(of_kind(&docs, "ClusterRole").len(), 3, "{}", s.name);
        assert_eq!(of_kind(&docs, "Role").len(), 2, "{}", s.name);

        // The names the webhook is allowed to write are the ones it is told to.
        let args = args_of(workload(&docs, "webhook"));
        assert_eq!(
            flag(&args, "--self-signed-secret"),
            Some(format!("{}/{secret}", s.namespace).as_str())
        );
        assert_eq!(flag(&args, "--webhook-config"), Some(full.as_str()));
    }

    // cert-manager mode: the webhook writes nothing at all.
    for s in [&FLIPPED, &ALTERNATIVE] {
        let docs = render(&helm, s);
        assert_role(
            &docs,
            s,
            "ClusterRole",
            "webhook",
            &[
                (&["tlsward.io"], &["clientauthpolicies"], &[], READ),
                (&[""], &["namespaces"], &[], READ),
            ],
        );
        let webhook_role = format!("{}-webhook", fullname(s));
        assert!(
            of_kind(&docs, "Role")
                .iter()
                .all(|r| name_of(r) != webhook_role),
            "{}: no webhook Role in cert-manager mode",
            s.name
        );
        assert_role(&docs, s, "ClusterRole", "operator", &operator_rules());
        assert_role(&docs, s, "Role", "operator", LEASES);
        assert_role(&docs, s, "ClusterRole", "proxy", &proxy_rules());
    }
}

#[test]
fn no_role_grants_a_wildcard() {
    let Some(helm) = tool("helm") else { return };
    for s in SCENARIOS {
        let docs = render(&helm, s);
        let roles: Vec<_> = docs
            .iter()
            .filter(|d| matches!(kind_of(d), "Role" | "ClusterRole"))
            .collect();
        assert!(!roles.is_empty(), "{}", s.name);
        for role in roles {
            assert!(
                role.get("aggregationRule").is_none(),
                "{}: {}",
                s.name,
                name_of(role)
            );
            for rule in role["rules"].as_array().expect("rules") {
                assert!(rule.get("nonResourceURLs").is_none(), "{rule}");
                for key in ["verbs", "resources", "apiGroups", "resourceNames"] {
                    for item in strings(&rule[key]) {
                        assert!(
                            !item.contains('*'),
                            "{}: {} {}: `*` in {key}: {rule}",
                            s.name,
                            kind_of(role),
                            name_of(role)
                        );
                    }
                }
                for verb in strings(&rule["verbs"]) {
                    assert!(
                        !matches!(
                            verb.as_str(),
                            "escalate" | "bind" | "impersonate" | "delete" | "deletecollection"
                        ),
                        "{}: {} grants {verb}",
                        s.name,
                        name_of(role)
                    );
                }
            }
        }
    }
}
