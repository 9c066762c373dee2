//! The chart's own files and names: Chart.yaml's metadata and kubeVersion
//! floor (an older cluster is refused), resource names from the release
//! name (overridable, always valid DNS names), a README row with the right
//! default for every value, and a CRD identical to the repository's. Uses
//! the real `helm template` and the files in `charts/tlsward`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::*;

#[test]
fn chart_readme_documents_every_value_with_its_default() {
    let readme = read("charts/tlsward/README.md");
    assert!(readme.contains("helm install tlsward charts/tlsward -n tlsward --create-namespace"));
    let mut all = BTreeMap::new();
    leaves("", &values(), &mut all);
    let mut rows = BTreeMap::new();
    for line in readme.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 4, "name, type, default, description: {line}");
        let name = cells[0].trim_matches('`').to_string();
        assert!(!cells[1].is_empty() && !cells[3].is_empty(), "{line}");
        let default: Value = serde_json::from_str(cells[2].trim_matches('`'))
            .unwrap_or_else(|e| panic!("{name}: default is not JSON: {e}"));
        rows.insert(name, default);
    }
    for (path, value) in &all {
        let documented = rows
            .get(path)
            .unwrap_or_else(|| panic!("charts/tlsward/README.md has no row for `{path}`"));
        assert_eq!(documented, value, "README default of {path}");
    }
    let stale: Vec<_> = rows.keys().filter(|k| !all.contains_key(*k)).collect();
    assert!(
        stale.is_empty(),
        "README rows for values that do not exist: {stale:?}"
    );
}

#[test]
fn chart_crd_is_the_repository_crd() {
    let chart =
        std::fs::read(root().join("charts/tlsward/crds/clientauthpolicies.tlsward.io.yaml"))
            .expect("chart CRD");
    let repo = std::fs::read(root().join("crds/clientauthpolicies.tlsward.io.yaml")).expect("CRD");
    assert!(
        chart == repo,
        "charts/tlsward/crds/ differs from crds/: cp crds/clientauthpolicies.tlsward.io.yaml charts/tlsward/crds/"
    );
    let crds: Vec<_> = std::fs::read_dir(root().join("charts/tlsward/crds"))
        .expect("crds dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(crds.len(), 1, "{crds:?}");
}

#[test]
fn chart_metadata_and_names() {
    let chart: Value =
        serde_saphyr::from_str(&read("charts/tlsward/Chart.yaml")).expect("Chart.yaml");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "tlsward");
    assert_eq!(chart["version"], "0.1.0");
    assert_eq!(chart["appVersion"], "0.1.0");
    assert_eq!(chart["kubeVersion"], ">=1.29.0-0");

    let Some(helm) = tool("helm") else { return };
    // Too old a cluster is refused.
    let err = template(&helm, &DEFAULTS, &["--kube-version", "1.28.0"]).expect_err("1.28 refused");
    assert!(err.contains("kubeVersion"), "{err}");

    // Names: the release name when it contains the chart name, else
    // <release>-tlsward; overridable; always valid DNS labels.
    for (release, extra, full) in [
        ("tlsward", vec![], "tlsward"),
        ("tlsward-prod", vec![], "tlsward-prod"),
        ("edge", vec![], "edge-tlsward"),
        ("edge", vec!["--set", "fullnameOverride=tls"], "tls"),
        (
            "a-very-long-release-name-for-testing-limits",
            vec![],
            "a-very-long-release-name-for-testing-lim",
        ),
    ] {
        let s = Scenario {
            name: "names",
            release,
            ..DEFAULTS
        };
        let docs = render_with(&helm, &s, &extra);
        find(&docs, "Service", &format!("{full}-webhook"));
        find(&docs, "ValidatingWebhookConfiguration", full);
        find(&docs, "MutatingWebhookConfiguration", full);
        for o in &docs {
            let name = name_of(o);
            assert!(
                name.len() <= 63
                    && !name.starts_with('-')
                    && !name.ends_with('-')
                    && name.chars().all(|c| c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || c == '-'
                        || c == '.'),
                "{release}: {} {name:?} is not a valid name",
                kind_of(o)
            );
        }
    }
}
