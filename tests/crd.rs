//! The ClientAuthPolicy CRD: generated YAML in crds/ matches the Rust types,
//! passes kubernetes-validate, documents every field, and its schema (with
//! its CEL rules, evaluated by kube-rs's kube-cel) accepts the samples and
//! refuses what the API server would refuse.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use kube::CustomResourceExt;
use serde_json::{Value, json};
use tlsward::clientauth::ClientAuthPolicy;

const CRD_FILE: &str = "crds/clientauthpolicies.tlsward.io.yaml";
const CHART_CRD_FILE: &str = "charts/tlsward/crds/clientauthpolicies.tlsward.io.yaml";

fn crd() -> Value {
    let text = std::fs::read_to_string(CRD_FILE).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn schema_of(crd: &Value) -> Value {
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The schema the Rust types generate now; `crds_dir_matches_the_rust_types`
/// holds crds/ to it, so a change to the types shows here at once.
fn schema() -> Value {
    schema_of(&serde_json::to_value(ClientAuthPolicy::crd()).unwrap())
}

/// One refusal, as the API server would report it: the field (a path such
/// as `spec.trustAnchors[0].secretRef.name`) and what it breaks (the JSON
/// Schema keyword, such as `enum` or `maximum`, or the CEL rule's message).
#[derive(Debug, PartialEq)]
struct Problem {
    field: String,
    breaks: String,
}

fn problem(field: &str, breaks: &str) -> Problem {
    Problem {
        field: field.into(),
        breaks: breaks.into(),
    }
}

/// `/spec/trustAnchors/0/secretRef` as `spec.trustAnchors[0].secretRef`.
fn field_path(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').skip(1) {
        if part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// Every error the API server's schema and CEL validation would report.
fn problems(object: &Value) -> Vec<Problem> {
    let schema = schema();
    let validator =
        jsonschema::validator_for(&schema).expect("the CRD schema compiles as JSON Schema");
    let mut out: Vec<Problem> = validator
        .iter_errors(object)
        .map(|e| {
            let field = field_path(e.instance_path().as_str());
            match e.kind() {
                // Reported on the parent object: name the missing field.
                jsonschema::error::ValidationErrorKind::Required { property } => {
                    let name = property.as_str().unwrap_or_default();
                    let field = if field.is_empty() {
                        name.to_string()
                    } else {
                        format!("{field}.{name}")
                    };
                    Problem {
                        field,
                        breaks: "required".into(),
                    }
                }
                kind => Problem {
                    field,
                    breaks: kind.keyword().into(),
                },
            }
        })
        .collect();
    if let Err(errs) = kube_cel::Validator::new().validate(&schema, object, None) {
        out.extend(errs.as_slice().iter().map(|e| Problem {
            field: e.field_path.clone(),
            breaks: e.message.clone(),
        }));
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

/// Every field (property) under `node`, by path, and whether it has a
/// description. Looks everywhere a property can sit: under properties, items
/// (one schema or a list), additionalProperties, anyOf, oneOf, allOf and not.
/// A field under a junctor (anyOf ...) counts as documented if it is
/// documented anywhere: structural schemas forbid descriptions there.
fn fields(path: &str, node: &Value, out: &mut BTreeMap<String, bool>) {
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            let p = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            let documented = sub
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.trim().is_empty());
            *out.entry(p.clone()).or_default() |= documented;
            fields(&p, sub, out);
        }
    }
    match node.get("items") {
        Some(Value::Array(tuple)) => tuple
            .iter()
            .for_each(|s| fields(&format!("{path}[]"), s, out)),
        Some(items) => fields(&format!("{path}[]"), items, out),
        None => {}
    }
    if let Some(values) = node.get("additionalProperties") {
        fields(&format!("{path}.*"), values, out);
    }
    for junctor in ["anyOf", "oneOf", "allOf"] {
        for sub in node
            .get(junctor)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            fields(path, sub, out);
        }
    }
    if let Some(not) = node.get("not") {
        fields(path, not, out);
    }
}

fn undocumented(fields: &BTreeMap<String, bool>) -> Vec<&str> {
    fields
        .iter()
        .filter(|(_, documented)| !**documented)
        .map(|(path, _)| path.as_str())
        .collect()
}

#[test]
fn field_walk_reaches_every_kind_of_subschema() {
    // The generated CRD has none of these today; the walk must still look.
    let schema = json!({"properties": {"spec": {"description": "d", "properties": {
        "list": {"description": "d", "items": {"properties": {"inItems": {}}}},
        "tuple": {"description": "d", "items": [{"properties": {"inTuple": {}}}]},
        "map": {"description": "d", "additionalProperties": {"properties": {"inMap": {}}}},
        "any": {"description": "d", "anyOf": [{"properties": {"inAnyOf": {}}}]},
        "one": {"description": "d", "oneOf": [{"properties": {"inOneOf": {}}}]},
        "all": {"description": "d", "allOf": [{"properties": {"inAllOf": {}}}]},
        "not": {"description": "d", "not": {"properties": {"inNot": {}}}},
        "restated": {"description": "d", "properties": {"x": {"description": "d"}},
                     "anyOf": [{"properties": {"x": {}}}]}
    }}}});
    let mut found = BTreeMap::new();
    fields("", &schema, &mut found);
    assert_eq!(
        undocumented(&found),
        [
            "spec.all.inAllOf",
            "spec.any.inAnyOf",
            "spec.list[].inItems",
            "spec.map.*.inMap",
            "spec.not.inNot",
            "spec.one.inOneOf",
            "spec.tuple[].inTuple",
        ]
    );
    assert!(found["spec.restated.x"], "documented outside the anyOf");
}

/// `kubectl explain` shows descriptions; a field without one is a hole.
#[test]
fn every_field_is_documented() {
    let stored = |path: &str| -> Value {
        serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    for (what, schema) in [
        ("the Rust types", schema()),
        (CRD_FILE, schema_of(&stored(CRD_FILE))),
        (CHART_CRD_FILE, schema_of(&stored(CHART_CRD_FILE))),
    ] {
        let mut found = BTreeMap::new();
        fields("", &schema, &mut found);
        // The walk reached the deepest fields, through lists and optional
        // structs, in both spec and status.
        for deep in [
            "spec.trustAnchors[].secretRef.name",
            "spec.revocation[].configMapRef.key",
            "spec.ingressSelector.matchExpressions[].operator",
            "spec.allowedClients.spkiSha256",
            "status.conditions[].lastTransitionTime",
            "status.bundle.notAfter",
        ] {
            assert!(
                found.contains_key(deep),
                "{what}: {deep} not reached: {found:?}"
            );
        }
        assert!(
            found.len() >= 49,
            "{what}: only {} fields reached: {found:?}",
            found.len()
        );
        let missing = undocumented(&found);
        assert!(
            missing.is_empty(),
            "{what}: fields without a description: {missing:?}"
        );
    }
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
    let rule = "set exactly one of secretRef, configMapRef or inline";
    let two = policy(json!({"trustAnchors": [
        {"secretRef": {"name": "ca"}, "inline": "-----BEGIN CERTIFICATE-----"}]}));
    assert_eq!(problems(&two), [problem("spec.trustAnchors[0]", rule)]);
    let none = policy(json!({"trustAnchors": [{}]}));
    assert_eq!(problems(&none), [problem("spec.trustAnchors[0]", rule)]);
    let two_in_revocation = policy(json!({"trustAnchors": [{"secretRef": {"name": "ca"}}],
        "revocation": [{"secretRef": {"name": "crl"}, "configMapRef": {"name": "crl"}}]}));
    assert_eq!(
        problems(&two_in_revocation),
        [problem("spec.revocation[0]", rule)]
    );
    let one = policy(json!({"trustAnchors": [{"configMapRef": {"name": "ca"}}]}));
    assert_eq!(problems(&one), []);
}

#[test]
fn schema_refuses_bad_enums_and_bounds() {
    let anchors = json!([{"secretRef": {"name": "ca"}}]);
    let many = |n| json!(vec![json!({"secretRef": {"name": "ca"}}); n]);
    // The same policy without the bad value is accepted, so each case is
    // refused for its own field alone.
    assert_eq!(problems(&policy(json!({"trustAnchors": anchors}))), []);
    assert_eq!(
        problems(&policy(
            json!({"trustAnchors": many(64), "revocation": many(64)})
        )),
        []
    );
    for (what, object, expected) in [
        (
            "mode",
            policy(json!({"mode": "Sometimes", "trustAnchors": anchors})),
            problem("spec.mode", "enum"),
        ),
        (
            "verifyDepth 0",
            policy(json!({"verifyDepth": 0, "trustAnchors": anchors})),
            problem("spec.verifyDepth", "minimum"),
        ),
        (
            "verifyDepth 11",
            policy(json!({"verifyDepth": 11, "trustAnchors": anchors})),
            problem("spec.verifyDepth", "maximum"),
        ),
        (
            "no anchors",
            policy(json!({"trustAnchors": []})),
            problem("spec.trustAnchors", "minItems"),
        ),
        (
            "65 anchors",
            policy(json!({"trustAnchors": many(65)})),
            problem("spec.trustAnchors", "maxItems"),
        ),
        (
            "65 CRLs",
            policy(json!({"trustAnchors": anchors, "revocation": many(65)})),
            problem("spec.revocation", "maxItems"),
        ),
        (
            "no anchors, no tokens, no login",
            policy(json!({"mode": "Require"})),
            problem(
                "",
                "set at least one of spec.trustAnchors (client certificates), spec.tokens (bearer tokens) or spec.login (browser login)",
            ),
        ),
        (
            "empty Secret name",
            policy(json!({"trustAnchors": [{"secretRef": {"name": ""}}]})),
            problem("spec.trustAnchors[0].secretRef.name", "minLength"),
        ),
        (
            "empty inline PEM",
            policy(json!({"trustAnchors": [{"inline": ""}]})),
            problem("spec.trustAnchors[0].inline", "minLength"),
        ),
        (
            "forwardClientCert",
            policy(json!({"forwardClientCert": "Always", "trustAnchors": anchors})),
            problem("spec.forwardClientCert", "enum"),
        ),
        (
            "spki pin",
            policy(json!({"trustAnchors": anchors, "allowedClients": {"spkiSha256": ["XYZ"]}})),
            problem("spec.allowedClients.spkiSha256[0]", "pattern"),
        ),
        (
            "target name",
            policy(json!({"trustAnchors": anchors, "target": {"secretName": "Bad_Name"}})),
            problem("spec.target.secretName", "pattern"),
        ),
        (
            "policy name of 64 characters",
            {
                let mut p = policy(json!({"trustAnchors": anchors}));
                p["metadata"]["name"] = json!("p".repeat(64));
                p
            },
            problem(
                "",
                "metadata.name must be at most 63 characters: it becomes the tlsward.io/policy label value on the bundle Secret",
            ),
        ),
    ] {
        assert_eq!(problems(&object), [expected], "{what}");
    }
}

#[test]
fn schema_holds_tokens_and_login_to_combinations_that_make_sense() {
    let anchors = json!([{"secretRef": {"name": "ca"}}]);
    let tokens = json!({"issuers": [{"issuer": "https://idp.example.com", "audiences": ["api"]}]});
    let login = json!({"issuer": "https://idp.example.com", "clientId": "web",
        "clientSecretRef": {"name": "oidc"}, "sessionSecretRef": {"name": "cookie-keys"}});
    // Tokens alone, login alone, and both with certificates are fine.
    assert_eq!(problems(&policy(json!({"tokens": tokens}))), []);
    assert_eq!(problems(&policy(json!({"login": login}))), []);
    let mut bound = tokens.clone();
    bound["certificateBinding"] = json!("Required");
    bound["identityJoins"] = json!([{"certificate": "SANEmail", "claim": "email"}]);
    assert_eq!(
        problems(&policy(
            json!({"trustAnchors": anchors, "tokens": bound, "login": login,
                   "publicPaths": [{"prefix": "/public"}, {"exact": "/healthz"}]})
        )),
        []
    );
    let needs_anchors = "spec.tokens.certificateBinding Required and spec.tokens.identityJoins compare the token with the client certificate: they need spec.trustAnchors";
    for (what, spec, expected) in [
        (
            "binding Required without anchors",
            json!({"tokens": {"issuers": tokens["issuers"], "certificateBinding": "Required"}}),
            problem("", needs_anchors),
        ),
        (
            "identity joins without anchors",
            json!({"tokens": {"issuers": tokens["issuers"],
                   "identityJoins": [{"certificate": "CommonName", "claim": "sub"}]}}),
            problem("", needs_anchors),
        ),
        (
            "allow-list without anchors",
            json!({"tokens": tokens, "allowedClients": {"commonNames": ["a"]}}),
            problem(
                "",
                "spec.revocation and spec.allowedClients check client certificates: they need spec.trustAnchors",
            ),
        ),
        (
            "public paths with nothing to skip",
            json!({"trustAnchors": anchors, "publicPaths": [{"exact": "/healthz"}]}),
            problem(
                "",
                "spec.publicPaths exempt paths from tokens and login: set spec.tokens or spec.login, or remove spec.publicPaths",
            ),
        ),
        (
            "public path with both forms",
            json!({"tokens": tokens, "publicPaths": [{"exact": "/a", "prefix": "/b"}]}),
            problem("spec.publicPaths[0]", "set exactly one of exact or prefix"),
        ),
        (
            "claim rule with two tests",
            json!({"tokens": {"issuers": tokens["issuers"],
                   "claims": [{"claim": "groups", "contains": "a", "equals": "b"}]}}),
            problem(
                "spec.tokens.claims[0]",
                "set exactly one of equals, contains or anyOf",
            ),
        ),
        (
            "no issuer",
            json!({"tokens": {"issuers": []}}),
            problem("spec.tokens.issuers", "minItems"),
        ),
        (
            "an issuer that is no URL",
            json!({"tokens": {"issuers": [{"issuer": "idp.example.com", "audiences": ["a"]}]}}),
            problem("spec.tokens.issuers[0].issuer", "pattern"),
        ),
        (
            "alg none",
            json!({"tokens": {"issuers": [{"issuer": "https://i", "audiences": ["a"],
                   "algorithms": ["none"]}]}}),
            problem("spec.tokens.issuers[0].algorithms[0]", "enum"),
        ),
        (
            "HS256",
            json!({"tokens": {"issuers": [{"issuer": "https://i", "audiences": ["a"],
                   "algorithms": ["HS256"]}]}}),
            problem("spec.tokens.issuers[0].algorithms[0]", "enum"),
        ),
        (
            "GitHub login with an issuer",
            json!({"login": {"provider": "GitHub", "issuer": "https://i", "clientId": "c",
                   "clientSecretRef": {"name": "s"}, "sessionSecretRef": {"name": "k"}}}),
            problem(
                "spec.login",
                "an OIDC provider needs issuer (and no github); a GitHub provider needs github (and no issuer)",
            ),
        ),
        (
            "OIDC login without an issuer",
            json!({"login": {"clientId": "c", "clientSecretRef": {"name": "s"},
                   "sessionSecretRef": {"name": "k"}}}),
            problem(
                "spec.login",
                "an OIDC provider needs issuer (and no github); a GitHub provider needs github (and no issuer)",
            ),
        ),
    ] {
        assert_eq!(problems(&policy(spec)), [expected], "{what}");
    }
}
