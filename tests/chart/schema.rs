//! The chart and what it renders are valid: `helm lint --strict` with the
//! default, all-options and alternative values; every scenario's manifests
//! through `kubernetes-validate --strict` against the Kubernetes 1.33
//! schemas; and values.schema.json, which refuses wrong types and unknown
//! keys, types every value in values.yaml and closes every object. Uses the
//! real helm and kubernetes-validate, and the chart's own files.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::support::*;

#[test]
fn helm_lint_strict_passes_with_defaults_and_every_option_flipped() {
    let Some(helm) = tool("helm") else { return };
    for values in [None, Some(ALL_OPTIONS), Some(ALTERNATIVES)] {
        let mut args = vec!["lint", "--strict", CHART];
        if let Some(v) = values {
            args.extend(["-f", v]);
        }
        let out = run(&helm, &args);
        let text = output_text(&out);
        assert!(out.status.success(), "helm {args:?}:\n{text}");
        assert!(
            text.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{text}"
        );
    }
    // The lint really checks the values: a wrong type fails it.
    let out = run(
        &helm,
        &["lint", "--strict", CHART, "--set", "webhook.replicas=two"],
    );
    assert!(
        !out.status.success(),
        "helm lint accepted webhook.replicas=two:\n{}",
        output_text(&out)
    );
}

/// Kinds kubernetes-validate has no schema for (they come with cert-manager's
/// and prometheus-operator's CRDs); it warns about them and nothing else.
const CRD_KINDS: [(&str, &str); 4] = [
    ("Certificate", "cert-manager.io/v1"),
    ("Issuer", "cert-manager.io/v1"),
    ("ServiceMonitor", MONITORING_API),
    ("PrometheusRule", MONITORING_API),
];

#[test]
fn rendered_manifests_pass_strict_kubernetes_schema_validation() {
    let Some(helm) = tool("helm") else { return };
    let Some(validator) = tool("kubernetes-validate") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, s) in SCENARIOS.iter().enumerate() {
        let manifests = template(&helm, s, &["--include-crds"])
            .unwrap_or_else(|e| panic!("{}: helm template failed:\n{e}", s.name));
        let objects = parse(&manifests);
        assert!(
            objects
                .iter()
                .any(|o| kind_of(o) == "CustomResourceDefinition"),
            "{}: --include-crds renders the CRD",
            s.name
        );
        let file = write_temp(&dir, &format!("rendered-{i}.yaml"), &manifests);
        let file_arg = file.to_str().expect("UTF-8 path");
        let out = run(
            &validator,
            &["--strict", "-k", KUBERNETES_VERSION, file_arg],
        );
        let text = output_text(&out);
        assert!(
            out.status.success(),
            "{}: kubernetes-validate --strict -k {KUBERNETES_VERSION} failed:\n{text}",
            s.name
        );
        let passed = text.lines().filter(|l| l.contains(" passed ")).count();
        let schemaless = objects
            .iter()
            .filter(|o| {
                CRD_KINDS
                    .iter()
                    .any(|(k, v)| kind_of(o) == *k && o["apiVersion"] == *v)
            })
            .count();
        assert_eq!(
            passed + schemaless,
            objects.len(),
            "{}: every object is validated, except CRD kinds:\n{text}",
            s.name
        );
        for line in text.lines().filter(|l| !l.contains(" passed ")) {
            let expected = line.starts_with("WARN")
                && CRD_KINDS
                    .iter()
                    .any(|(k, v)| line.contains(&format!("kind {k} with api version {v}")));
            assert!(expected, "{}: unexpected validator output: {line}", s.name);
        }
    }
}

#[test]
fn values_schema_rejects_wrong_types_and_unknown_keys() {
    let Some(helm) = tool("helm") else { return };
    let refused = [
        ("--set", "webhook.replicas=two", "/webhook/replicas"),
        ("--set-string", "operator.replicas=2", "/operator/replicas"),
        ("--set", "webhook.nope=1", "'nope' not allowed"),
        ("--set", "nope=1", "'nope' not allowed"),
        ("--set", "policy.exemptions.nope=true", "'nope' not allowed"),
        ("--set", "policy.enforcement=Block", "/policy/enforcement"),
        (
            "--set",
            "webhook.failurePolicy=Open",
            "/webhook/failurePolicy",
        ),
        (
            "--set",
            "webhook.timeoutSeconds=31",
            "/webhook/timeoutSeconds",
        ),
        ("--set", "proxy.kind=StatefulSet", "/proxy/kind"),
        (
            "--set",
            "proxy.service.type=External",
            "/proxy/service/type",
        ),
        (
            "--set",
            "networkPolicy.enabled=yes",
            "/networkPolicy/enabled",
        ),
        ("--set", "webhook.replicas=0", "/webhook/replicas"),
        (
            "--set",
            "webhook.certManager.issuerRef.kind=ClusterIssuer",
            "/webhook/certManager/issuerRef",
        ),
        (
            "--set",
            "webhook.podLabels.team=1",
            "/webhook/podLabels/team",
        ),
        (
            "--set",
            "proxy.tolerations[0].effect=Sometimes",
            "/proxy/tolerations/0/effect",
        ),
    ];
    for (how, value, mention) in refused {
        let err = template(&helm, &DEFAULTS, &[how, value])
            .err()
            .unwrap_or_else(|| panic!("{how} {value} was accepted"));
        assert!(
            err.contains("values don't meet the specifications of the schema"),
            "{how} {value}: not a schema error:\n{err}"
        );
        assert!(
            err.contains(mention),
            "{how} {value}: {mention} not in:\n{err}"
        );
    }
    // The same keys with good values pass.
    for value in [
        "webhook.replicas=3",
        "policy.enforcement=DryRun",
        "webhook.failurePolicy=Ignore",
        "webhook.timeoutSeconds=30",
        "proxy.kind=DaemonSet",
        "proxy.service.type=ClusterIP",
        "networkPolicy.enabled=false",
        "webhook.certManager.issuerRef.name=corp-ca",
        "webhook.podLabels.team=platform",
        "proxy.tolerations[0].effect=NoExecute",
    ] {
        if let Err(e) = template(&helm, &DEFAULTS, &["--set", value]) {
            panic!("--set {value} was refused:\n{e}");
        }
    }
}

fn schema() -> Value {
    serde_json::from_str(&read("charts/tlsward/values.schema.json")).expect("schema JSON")
}

/// Follows `$ref` and single-`allOf` wrappers to the schema that applies.
fn resolve<'a>(schema: &'a Value, node: &'a Value) -> &'a Value {
    let reference = node["$ref"]
        .as_str()
        .or_else(|| node["allOf"][0]["$ref"].as_str());
    match reference {
        Some(r) => {
            let name = r.strip_prefix("#/definitions/").expect("local definition");
            resolve(schema, &schema["definitions"][name])
        }
        None => node,
    }
}

#[test]
fn values_schema_types_every_value_and_closes_every_object() {
    let schema = schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");

    // Every value in values.yaml has a property in the schema.
    let mut all = BTreeMap::new();
    leaves("", &values(), &mut all);
    for path in all.keys() {
        let mut node = &schema;
        for key in path.split('.') {
            node = resolve(&schema, node);
            node = node["properties"]
                .get(key)
                .unwrap_or_else(|| panic!("values.schema.json has no {path}"));
        }
        let node = resolve(&schema, node);
        assert!(
            node["type"].is_string() || node["type"].is_array(),
            "{path}: no type"
        );
    }

    // Every object either refuses unknown keys or types them (maps of
    // labels, annotations, resources). The affinity kinds are Kubernetes
    // objects the API server validates.
    fn walk(path: &str, node: &Value, out: &mut Vec<String>) {
        match node {
            Value::Object(m) => {
                if m.get("type") == Some(&json!("object"))
                    && !path.contains("/affinity/properties/")
                {
                    match m.get("additionalProperties") {
                        Some(Value::Bool(false)) | Some(Value::Object(_)) => {}
                        _ => out.push(path.to_string()),
                    }
                }
                for (k, v) in m {
                    walk(&format!("{path}/{k}"), v, out);
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(&format!("{path}/{i}"), v, out);
                }
            }
            _ => {}
        }
    }
    let mut open = Vec::new();
    walk("", &schema, &mut open);
    assert!(
        open.is_empty(),
        "objects that accept unknown keys: {open:?}"
    );
}
