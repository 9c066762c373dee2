//! The migration report from ingress-nginx: the real `tlsward check` binary
//! over `examples/ingress-nginx/` gives each annotation its expected verdict,
//! the real webhook warns exactly as `check` does for the same Ingress, and
//! the table in `docs/migrate-from-ingress-nginx.md` is the catalogue's.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use common::*;
use serde_json::Value;
use tlsward::ingress_nginx::{PREFIX, catalogue};

const EXAMPLES: &str = "examples/ingress-nginx";
const GUIDE: &str = "docs/migrate-from-ingress-nginx.md";
const TABLE_BEGIN: &str = "<!-- annotation-table:begin (generated from src/ingress_nginx/catalogue.rs; TLSWARD_BLESS=1 cargo test --test migration rewrites it) -->\n";
const TABLE_END: &str = "<!-- annotation-table:end -->";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every Ingress of the examples served by tlsward, and the status of each
/// of its ingress-nginx annotations (key without the prefix).
const EXPECTED: &[(&str, &[(&str, &str)])] = &[
    (
        "payments/partner-api",
        &[
            ("auth-tls-error-page", "carries_over"),
            ("auth-tls-match-cn", "carries_over"),
            ("auth-tls-pass-certificate-to-upstream", "carries_over"),
            ("auth-tls-secret", "carries_over"),
            ("auth-tls-verify-client", "carries_over"),
            ("auth-tls-verify-depth", "carries_over"),
            ("force-ssl-redirect", "carries_over"),
            ("proxy-body-size", "carries_over"),
        ],
    ),
    (
        "inventory/inventory-grpc",
        &[
            ("auth-tls-secret", "carries_over"),
            ("auth-tls-verify-client", "carries_over"),
            ("backend-protocol", "carries_over"),
            ("proxy-read-timeout", "carries_over"),
            ("proxy-send-timeout", "carries_over"),
            ("proxy-ssl-name", "carries_over"),
            ("proxy-ssl-secret", "carries_over"),
            ("proxy-ssl-server-name", "carries_over"),
            ("proxy-ssl-verify", "carries_over"),
            ("proxy-ssl-verify-depth", "not_supported"),
        ],
    ),
    (
        "shop/storefront",
        &[
            ("proxy-connect-timeout", "carries_over"),
            ("rewrite-target", "not_supported"),
            ("ssl-redirect", "carries_over"),
            ("use-regex", "not_supported"),
        ],
    ),
    (
        "portal/legacy-portal",
        &[
            ("configuration-snippet", "not_supported"),
            ("cors-allow-origin", "not_supported"),
            ("enable-cors", "not_supported"),
            ("server-snippet", "not_supported"),
        ],
    ),
    (
        "ops/dashboard",
        &[
            ("auth-response-headers", "mapped"),
            ("auth-signin", "mapped"),
            ("auth-url", "mapped"),
            ("whitelist-source-range", "not_supported"),
        ],
    ),
    (
        "shop/checkout-canary",
        &[
            ("canary", "not_supported"),
            ("canary-weight", "not_supported"),
            ("limit-rps", "not_supported"),
            ("proxy-body-szie", "unknown"),
        ],
    ),
];

/// Runs `tlsward check` on the examples; (exit code, stdout).
fn check(extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tlsward"))
        .args(["check", "--ingress-class", "tlsward", "-f", EXAMPLES])
        .args(extra)
        .current_dir(root())
        .output()
        .expect("run tlsward check");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.stderr.is_empty(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), stdout)
}

fn json_report() -> Value {
    let (code, stdout) = check(&["-o", "json"]);
    // Annotations that do not carry over are warnings, not failures.
    assert_eq!(code, 0, "{stdout}");
    serde_json::from_str(&stdout).expect("check -o json prints JSON")
}

fn id(r: &Value) -> String {
    format!(
        "{}/{}",
        r["namespace"].as_str().unwrap_or_default(),
        r["name"].as_str().unwrap_or_default()
    )
}

#[test]
fn check_json_gives_each_example_annotation_its_expected_verdict() {
    let report = json_report();
    let results = report["results"].as_array().expect("results");
    let mut seen = BTreeMap::new();
    for r in results {
        let Some(m) = r.get("migration") else {
            assert_eq!(
                id(r),
                "shop/checkout",
                "only the nginx-class Ingress is left out"
            );
            continue;
        };
        let got: Vec<(String, String)> = m["annotations"]
            .as_array()
            .expect("annotations")
            .iter()
            .map(|f| {
                let key = f["annotation"].as_str().unwrap_or_default();
                let status = f["status"].as_str().unwrap_or_default();
                (
                    key.trim_start_matches(PREFIX).to_string(),
                    status.to_string(),
                )
            })
            .collect();
        let changes = m["changesBehaviour"].as_bool().expect("changesBehaviour");
        assert_eq!(
            changes,
            got.iter().any(|(_, s)| s != "carries_over"),
            "{}",
            id(r)
        );
        seen.insert(id(r), got);
    }
    let want: BTreeMap<String, Vec<(String, String)>> = EXPECTED
        .iter()
        .map(|(id, list)| {
            let list = list
                .iter()
                .map(|(k, s)| (k.to_string(), s.to_string()))
                .collect();
            (id.to_string(), list)
        })
        .collect();
    assert_eq!(seen, want);

    let changing: Vec<&str> = report["migration"]["changingBehaviour"]
        .as_array()
        .expect("changingBehaviour")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut changing = changing.clone();
    changing.sort_unstable();
    assert_eq!(
        changing,
        [
            "inventory/inventory-grpc",
            "ops/dashboard",
            "portal/legacy-portal",
            "shop/checkout-canary",
            "shop/storefront",
        ]
    );
    assert_eq!(report["migration"]["served"], 6);

    // Every finding that does not carry over says what to do instead (and,
    // unless mapped, why).
    for r in results {
        for f in r["migration"]["annotations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if f["status"] != "carries_over" {
                assert!(f["instead"].as_str().is_some_and(|a| a.len() > 20), "{f}");
                let mapped = f["status"] == "mapped";
                assert_eq!(f["reason"].is_string(), !mapped, "{f}");
            }
        }
    }
}

#[test]
fn check_text_prints_a_warning_per_annotation_that_does_not_carry_over() {
    let (code, stdout) = check(&[]);
    assert_eq!(code, 0, "{stdout}");
    for (ingress, list) in EXPECTED {
        for (key, status) in *list {
            let line = format!("  warning: {PREFIX}{key} is ");
            let printed = stdout.contains(&line);
            assert_eq!(
                printed,
                *status != "carries_over",
                "{ingress} {key}:\n{stdout}"
            );
        }
    }
    assert!(
        stdout.contains("migration: 5 of 6 Ingresses served by tlsward would change behaviour"),
        "{stdout}"
    );
    // Without --ingress-class nginx, the nginx-class Ingress is not assessed.
    assert!(!stdout.contains("ssl-passthrough"), "{stdout}");
}

#[tokio::test]
async fn webhook_warns_exactly_as_check_does() {
    let report = json_report();
    let docs = tlsward::manifests::read_paths(&[root().join(EXAMPLES)]).expect("examples read");
    let w = Webhook::start(None, &[]);
    let mut compared = 0;
    for (i, doc) in docs.iter().enumerate() {
        let object = &doc.value;
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let from_check = report["results"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["namespace"] == namespace && r["name"] == name)
            .map(|r| r["verdict"]["warnings"].clone())
            .expect("check reported the Ingress");
        let r = w
            .review(
                "/validate",
                &admission_review(&format!("m-{i}"), "CREATE", namespace, object),
            )
            .await;
        assert_eq!(r["allowed"], true, "{namespace}/{name}: {r}");
        let from_webhook = r.get("warnings").cloned().unwrap_or(Value::Array(vec![]));
        assert_eq!(from_webhook, from_check, "{namespace}/{name}");
        compared += from_webhook.as_array().map_or(0, Vec::len);
    }
    assert_eq!(compared, 15, "warnings compared across the examples");
}

#[test]
fn migration_guide_table_is_the_catalogue() {
    let path = root().join(GUIDE);
    let text = std::fs::read_to_string(&path).expect("read the migration guide");
    let (Some(begin), Some(end)) = (text.find(TABLE_BEGIN), text.find(TABLE_END)) else {
        panic!("{GUIDE} must hold the table between {TABLE_BEGIN:?} and {TABLE_END:?}");
    };
    let table = &text[begin + TABLE_BEGIN.len()..end];
    let want = catalogue::markdown_table();
    if table != want && std::env::var_os("TLSWARD_BLESS").is_some() {
        let new = format!("{}{TABLE_BEGIN}{want}{}", &text[..begin], &text[end..]);
        std::fs::write(&path, new).expect("rewrite the guide");
        return;
    }
    assert!(
        table == want,
        "{GUIDE}'s annotation table differs from the catalogue: run TLSWARD_BLESS=1 cargo test --test migration"
    );
    for e in catalogue::CATALOGUE {
        assert!(table.contains(&format!("| `{}` |", e.name)), "{}", e.name);
    }
}
