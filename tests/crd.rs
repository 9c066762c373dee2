//! The ClientAuthPolicy CRD: generated YAML in crds/ matches the Rust types,
//! passes kubernetes-validate, documents every field, and its schema (with
//! its CEL rules, evaluated by kube-rs's kube-cel) accepts the samples and
//! refuses what the API server would refuse.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

const CRD_FILE: &str = "crds/clientauthpolicies.tlsward.io.yaml";

fn crd() -> Value {
    let text = std::fs::read_to_string(CRD_FILE).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn schema() -> Value {
    crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Every error the API server's schema and CEL validation would report.
fn problems(object: &Value) -> Vec<String> {
    let schema = schema();
    let mut out: Vec<String> = jsonschema::validator_for(&schema)
        .expect("the CRD schema compiles as JSON Schema")
        .iter_errors(object)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if let Err(errs) = kube_cel::Validator::new().validate(&schema, object, None) {
        out.extend(errs.iter().map(|e| e.to_string()));
    }
    out
}

fn policy(spec: Value) -> Value {
    json!({"apiVersion": "tlsward.io/v1alpha1", "kind": "ClientAuthPolicy",
           "metadata": {"name": "p", "namespace": "ns"}, "spec": spec})
}

#[test]
fn crds_dir_matches_the_rust_types() {
    let out = Command::new(env!("CARGO_BIN_EXE_tlsward"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let stored = std::fs::read_to_string(CRD_FILE).unwrap();
    assert!(
        generated == stored,
        "{CRD_FILE} has drifted from the Rust types: run `cargo run -- crd > {CRD_FILE}`"
    );
}

#[test]
fn crd_passes_kubernetes_validate() {
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "-k", "1.33.0", CRD_FILE])
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!(
                "skipping: kubernetes-validate not installed ({e}); scripts/install-test-tools.sh installs it"
            );
            return;
        }
        Err(e) => panic!("kubernetes-validate is required under CI=true: {e}"),
    };
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("passed"), "{text}");
}

#[test]
fn crd_shape() {
    let crd = crd();
    assert_eq!(crd["metadata"]["name"], "clientauthpolicies.tlsward.io");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["cap"]));
    let v = &crd["spec"]["versions"][0];
    assert_eq!(v["name"], "v1alpha1");
    assert_eq!(v["subresources"]["status"], json!({}));
    let columns: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        ["Ready", "Reason", "Certificates", "NotAfter", "Age"]
    );
}

/// `kubectl explain` shows descriptions; a field without one is a hole.
#[test]
fn every_field_is_documented() {
    fn walk(path: &str, node: &Value, missing: &mut Vec<String>) {
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, sub) in props {
                let p = format!("{path}.{name}");
                let documented = sub
                    .get("description")
                    .and_then(Value::as_str)
                    .is_some_and(|d| !d.trim().is_empty());
                if !documented {
                    missing.push(p.clone());
                }
                walk(&p, sub, missing);
            }
        }
        if let Some(items) = node.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    let root = schema();
    for top in ["spec", "status"] {
        walk(top, &root["properties"][top], &mut missing);
    }
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
}

#[test]
fn schema_accepts_the_samples() {
    let dir = Path::new("policies/clientauthpolicies");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let obj: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(obj["kind"], "ClientAuthPolicy", "{}", path.display());
        let p = problems(&obj);
        assert!(p.is_empty(), "{}: {p:?}", path.display());
        n += 1;
    }
    assert!(
        n >= 3,
        "samples: Require with CRL and allow-list, Optional, ConfigMap source"
    );
}

#[test]
fn schema_refuses_two_source_kinds_and_no_source() {
    let two = policy(json!({"trustAnchors": [
        {"secretRef": {"name": "ca"}, "inline": "-----BEGIN CERTIFICATE-----"}]}));
    let p = problems(&two);
    assert!(
        p.iter()
            .any(|e| e.contains("set exactly one of secretRef, configMapRef or inline")),
        "{p:?}"
    );
    let none = policy(json!({"trustAnchors": [{}]}));
    assert!(!problems(&none).is_empty());
    let two_in_revocation = policy(json!({"trustAnchors": [{"secretRef": {"name": "ca"}}],
        "revocation": [{"secretRef": {"name": "crl"}, "configMapRef": {"name": "crl"}}]}));
    assert!(!problems(&two_in_revocation).is_empty());
    let one = policy(json!({"trustAnchors": [{"configMapRef": {"name": "ca"}}]}));
    assert!(problems(&one).is_empty(), "{:?}", problems(&one));
}

#[test]
fn schema_refuses_bad_enums_and_bounds() {
    let anchors = json!([{"secretRef": {"name": "ca"}}]);
    for (what, spec) in [
        (
            "mode",
            json!({"mode": "Sometimes", "trustAnchors": anchors}),
        ),
        (
            "verifyDepth 0",
            json!({"verifyDepth": 0, "trustAnchors": anchors}),
        ),
        (
            "verifyDepth 11",
            json!({"verifyDepth": 11, "trustAnchors": anchors}),
        ),
        ("no anchors", json!({"trustAnchors": []})),
        ("missing anchors", json!({"mode": "Require"})),
        (
            "forwardClientCert",
            json!({"forwardClientCert": "Always", "trustAnchors": anchors}),
        ),
        (
            "spki pin",
            json!({"trustAnchors": anchors, "allowedClients": {"spkiSha256": ["XYZ"]}}),
        ),
        (
            "target name",
            json!({"trustAnchors": anchors, "target": {"secretName": "Bad_Name"}}),
        ),
    ] {
        assert!(
            !problems(&policy(spec)).is_empty(),
            "{what} must be refused"
        );
    }
}
