//! What each component is told: the admission policy ConfigMap rendered
//! from the values (and accepted by `tlsward check`), the operator's
//! leader-election flags, the proxy's IngressClass and public Service, and
//! that every flag the chart passes exists in the binary's `--help`. Uses
//! the real `helm template` and the `tlsward` binary built for the tests.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::json;

use crate::support::*;

#[test]
fn policy_config_map_renders_the_policy_values() {
    let Some(helm) = tool("helm") else { return };
    let docs = render(&helm, &DEFAULTS);
    assert_eq!(
        policy_of(&docs, &DEFAULTS),
        json!({
            "apiVersion": "tlsward.io/v1alpha1",
            "kind": "IngressTLSPolicy",
            "enforcement": "Deny",
            "allowCatchAll": false,
            "allowExistingViolations": false,
            "exemptions": {
                "namespaces": ["tlsward"],
                "ingressClasses": [],
                "allowExemptAnnotation": false,
            },
            "certManager": {},
            "autoTLS": {"enabled": false},
            "clientAuth": {"nginxIngressClasses": ["nginx"]},
            "proxyIngressClasses": ["tlsward"],
        })
    );
    let docs = render(&helm, &FLIPPED);
    assert_eq!(
        policy_of(&docs, &FLIPPED),
        json!({
            "apiVersion": "tlsward.io/v1alpha1",
            "kind": "IngressTLSPolicy",
            "enforcement": "Warn",
            "allowCatchAll": true,
            "allowExistingViolations": true,
            "exemptions": {
                "namespaces": ["legacy-apps", "tlsward"],
                "namespaceSelector": {
                    "matchLabels": {"tlsward.io/exempt": "true"},
                    "matchExpressions": [{"key": "team", "operator": "In", "values": ["platform"]}],
                },
                "ingressClasses": ["internal"],
                "allowExemptAnnotation": true,
            },
            "certManager": {"issuer": {
                "name": "letsencrypt-prod", "kind": "ClusterIssuer", "group": "cert-manager.io",
            }},
            "autoTLS": {"enabled": true},
            "clientAuth": {"nginxIngressClasses": ["nginx", "nginx-internal"]},
            "proxyIngressClasses": ["tlsward", "tlsward-edge"],
        })
    );
    let docs = render(&helm, &ALTERNATIVE);
    let p = policy_of(&docs, &ALTERNATIVE);
    assert_eq!(p["enforcement"], "DryRun");
    assert_eq!(
        p["certManager"]["issuer"],
        json!({"name": "corp-pca", "kind": "AWSPCAClusterIssuer", "group": "awspca.cert-manager.io"})
    );
    assert_eq!(p["exemptions"]["namespaces"], json!(["other-ns"]));
}

fn tlsward() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tlsward"));
    c.current_dir(root());
    c
}

#[test]
fn tlsward_accepts_the_rendered_policy() {
    let Some(helm) = tool("helm") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, s) in [&DEFAULTS, &FLIPPED, &ALTERNATIVE].into_iter().enumerate() {
        let docs = render(&helm, s);
        let file = write_temp(&dir, &format!("policy-{i}.yaml"), &policy_text(&docs, s));
        for (samples, deny_code) in [
            ("policies/ingresses/allowed", 0),
            ("policies/ingresses/denied", 1),
        ] {
            let out = tlsward()
                .arg("check")
                .arg("--policy")
                .arg(&file)
                .args(["-f", samples])
                .output()
                .expect("run tlsward check");
            let code = out.status.code();
            // 2 would mean the policy file was refused.
            if s.is(&DEFAULTS) {
                assert_eq!(
                    code,
                    Some(deny_code),
                    "{}: {samples}:\n{}",
                    s.name,
                    output_text(&out)
                );
            } else {
                assert!(
                    matches!(code, Some(0 | 1)),
                    "{}: tlsward refused the rendered policy:\n{}",
                    s.name,
                    output_text(&out)
                );
            }
        }
    }
}

#[test]
fn operator_is_leader_elected_with_its_pod_identity() {
    let Some(helm) = tool("helm") else { return };
    let docs = render(&helm, &DEFAULTS);
    let w = workload(&docs, "operator");
    let args = args_of(w);
    assert_eq!(
        args,
        [
            "operator",
            "--admin-listen",
            "0.0.0.0:9090",
            "--leader-election-namespace",
            "$(POD_NAMESPACE)",
            "--identity",
            "$(POD_NAME)",
            "--log-format",
            "json",
            "--log-level",
            "info",
        ]
    );
    assert_eq!(
        container(w)["env"],
        json!([
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ])
    );
}

#[test]
fn proxy_serves_its_ingress_class_behind_its_service() {
    let Some(helm) = tool("helm") else { return };
    for (s, class, service_type, default_class) in [
        (&DEFAULTS, "tlsward", "LoadBalancer", false),
        (&FLIPPED, "tlsward-edge", "NodePort", true),
        (&ALTERNATIVE, "tlsward", "LoadBalancer", false),
        (&CLUSTER_IP, "tlsward", "ClusterIP", false),
    ] {
        let what = s.name;
        let docs = render(&helm, s);
        let full = fullname(s);
        let w = workload(&docs, "proxy");
        let args = args_of(w);
        assert_eq!(
            flag(&args, "--https-listen"),
            Some("0.0.0.0:8443"),
            "{what}"
        );
        assert_eq!(flag(&args, "--http-listen"), Some("0.0.0.0:8080"), "{what}");
        assert_eq!(
            flag(&args, "--admin-listen"),
            Some("0.0.0.0:9090"),
            "{what}"
        );
        assert_eq!(flag(&args, "--ingress-class"), Some(class), "{what}");
        let published = format!("{}/{full}-proxy", s.namespace);
        assert_eq!(
            flag(&args, "--publish-service"),
            Some(published.as_str()),
            "{what}"
        );

        // The published Service is the proxy's, with 443 and 80.
        let svc = find(&docs, "Service", &format!("{full}-proxy"));
        assert!(selects(&svc["spec"]["selector"], pod_labels(w)), "{what}");
        assert_eq!(svc["spec"]["type"], service_type, "{what}");
        let ports: BTreeMap<i64, String> = svc["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| {
                (
                    p["port"].as_i64().expect("port"),
                    p["targetPort"]
                        .as_str()
                        .expect("named targetPort")
                        .to_string(),
                )
            })
            .collect();
        assert_eq!(
            ports,
            BTreeMap::from([(80, "http".to_string()), (443, "https".to_string())]),
            "{what}: only 443 and 80 on the public Service"
        );
        let named: BTreeMap<String, i64> = container(w)["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().expect("name").to_string(),
                    p["containerPort"].as_i64().expect("port"),
                )
            })
            .collect();
        assert_eq!(named["https"], 8443, "{what}");
        assert_eq!(named["http"], 8080, "{what}");
        match service_type {
            "ClusterIP" => assert!(svc["spec"].get("externalTrafficPolicy").is_none()),
            _ => assert!(svc["spec"]["externalTrafficPolicy"].is_string(), "{what}"),
        }
        if s.is(&ALTERNATIVE) {
            assert_eq!(svc["spec"]["loadBalancerClass"], "example.com/internal");
            assert_eq!(svc["spec"]["externalTrafficPolicy"], "Local");
        } else {
            assert!(svc["spec"].get("loadBalancerClass").is_none(), "{what}");
        }

        // The IngressClass it serves.
        let ic = find(&docs, "IngressClass", class);
        assert_eq!(
            ic["spec"],
            json!({"controller": "tlsward.io/proxy"}),
            "{what}"
        );
        let annotation =
            &ic["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"];
        if default_class {
            assert_eq!(annotation, "true", "{what}");
        } else {
            assert!(annotation.is_null(), "{what}");
        }
    }
}

/// Every `--flag` the chart passes exists on the binary's subcommand.
#[test]
fn every_flag_the_chart_passes_exists_in_the_binary() {
    let Some(helm) = tool("helm") else { return };
    for s in [&DEFAULTS, &FLIPPED] {
        let docs = render(&helm, s);
        for component in COMPONENTS {
            let args = args_of(workload(&docs, component));
            let out = tlsward()
                .args([component, "--help"])
                .output()
                .expect("run tlsward --help");
            assert!(out.status.success(), "{}", output_text(&out));
            let help = String::from_utf8_lossy(&out.stdout);
            for flag in args.iter().filter(|a| a.starts_with("--")) {
                let known = help
                    .split(|c: char| {
                        c.is_whitespace() || c == ',' || c == '=' || c == '[' || c == ']'
                    })
                    .any(|word| word == flag);
                assert!(
                    known,
                    "{}: the chart passes {flag} to `tlsward {component}`, which does not know it:\n{help}",
                    s.name
                );
            }
        }
    }
}
