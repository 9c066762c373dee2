//! `webhooks/validating-webhook.yaml` and `webhooks/mutating-webhook.yaml`:
//! every setting the design asks for, checked field by field, and the files
//! validated against the Kubernetes 1.33 schema with `kubernetes-validate`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

const VALIDATING: &str = "webhooks/validating-webhook.yaml";
const MUTATING: &str = "webhooks/mutating-webhook.yaml";
const VALIDATOR: &str = "kubernetes-validate";
const KUBERNETES_VERSION: &str = "1.33.0";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The configuration's only webhook, after checking the object around it.
fn only_webhook(path: &str, kind: &str) -> Value {
    let doc = load(path);
    assert_eq!(
        doc["apiVersion"], "admissionregistration.k8s.io/v1",
        "{path}"
    );
    assert_eq!(doc["kind"], kind, "{path}");
    assert_eq!(doc["metadata"]["name"], "tlsward", "{path}");
    let hooks = doc["webhooks"].as_array().expect("webhooks is a list");
    assert_eq!(hooks.len(), 1, "{path}: exactly one webhook");
    hooks[0].clone()
}

/// The settings both webhooks share.
fn assert_common(path: &str, hook: &Value, endpoint: &str) {
    let client = &hook["clientConfig"];
    assert_eq!(
        client["service"],
        json!({
            "namespace": "tlsward",
            "name": "tlsward-webhook",
            "path": endpoint,
            "port": 443,
        }),
        "{path}: clientConfig.service"
    );
    assert_eq!(
        client.get("caBundle"),
        None,
        "{path}: caBundle is filled in at install time"
    );
    assert_eq!(client.get("url"), None, "{path}: service, not url");

    let rules = hook["rules"].as_array().expect("rules is a list");
    assert_eq!(rules.len(), 1, "{path}: one rule");
    let rule = &rules[0];
    assert_eq!(rule["apiGroups"], json!(["networking.k8s.io"]), "{path}");
    assert_eq!(rule["apiVersions"], json!(["v1"]), "{path}");
    assert_eq!(rule["operations"], json!(["CREATE", "UPDATE"]), "{path}");
    assert_eq!(rule["resources"], json!(["ingresses"]), "{path}");
    assert_eq!(rule["scope"], "Namespaced", "{path}");
    assert_eq!(rule.as_object().map(|o| o.len()), Some(5), "{path}: {rule}");

    assert_eq!(hook["failurePolicy"], "Fail", "{path}");
    assert_eq!(hook["matchPolicy"], "Equivalent", "{path}");
    assert_eq!(hook["sideEffects"], "None", "{path}");
    assert_eq!(hook["timeoutSeconds"], 5, "{path}");
    assert_eq!(hook["admissionReviewVersions"], json!(["v1"]), "{path}");

    // kube-system and tlsward's own namespace are never reviewed, and
    // nothing else is excluded.
    assert_eq!(
        hook["namespaceSelector"],
        json!({
            "matchExpressions": [{
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["kube-system", "tlsward"],
            }],
        }),
        "{path}: namespaceSelector"
    );
    // No objectSelector: a tenant cannot opt an Ingress out with a label.
    assert_eq!(hook.get("objectSelector"), None, "{path}");
    assert_eq!(hook.get("matchConditions"), None, "{path}");
}

#[test]
fn validating_webhook_configuration() {
    let hook = only_webhook(VALIDATING, "ValidatingWebhookConfiguration");
    assert_eq!(hook["name"], "ingress-tls.tlsward.io");
    assert_common(VALIDATING, &hook, "/validate");
    assert_eq!(
        hook.get("reinvocationPolicy"),
        None,
        "reinvocationPolicy exists only on mutating webhooks"
    );
}

#[test]
fn mutating_webhook_configuration() {
    let hook = only_webhook(MUTATING, "MutatingWebhookConfiguration");
    assert_eq!(hook["name"], "ingress-tls-mutate.tlsward.io");
    assert_common(MUTATING, &hook, "/mutate");
    assert_eq!(hook["reinvocationPolicy"], "IfNeeded");
}

/// Where `kubernetes-validate` is, if it is on PATH. Fails when it is missing
/// in CI (CI=true); elsewhere returns None after saying so.
fn validator() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(VALIDATOR))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "{VALIDATOR} is not on PATH, and CI=true: install it with `pip install kubernetes-validate`"
        );
        eprintln!(
            "NOTICE: skipping schema validation: {VALIDATOR} is not on PATH (pip install kubernetes-validate)"
        );
    }
    found
}

fn validate(tool: &Path, file: &Path) -> std::process::Output {
    Command::new(tool)
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .arg(file)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", tool.display()))
}

#[test]
fn configurations_pass_strict_schema_validation() {
    let Some(tool) = validator() else {
        return;
    };
    for file in [VALIDATING, MUTATING] {
        let out = validate(&tool, Path::new(file));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{VALIDATOR} --strict -k {KUBERNETES_VERSION} {file}: {}\n{stdout}{stderr}",
            out.status
        );
        assert!(stdout.contains("passed"), "{file}: {stdout}{stderr}");
    }

    // The tool really checks: a misspelt field fails strict validation.
    let text = std::fs::read_to_string(root().join(VALIDATING)).expect("read");
    assert!(text.contains("  timeoutSeconds: 5\n"));
    let broken = text.replace("  timeoutSeconds: 5\n", "  timeoutSecond: 5\n");
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("broken.yaml");
    std::fs::write(&path, broken).expect("write");
    let out = validate(&tool, &path);
    assert!(
        !out.status.success(),
        "a misspelt field passed {VALIDATOR}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
