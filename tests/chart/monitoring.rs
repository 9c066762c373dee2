//! Monitoring and alerts: the ServiceMonitor and PrometheusRule render only
//! when enabled and the monitoring.coreos.com/v1 API exists; the
//! ServiceMonitor scrapes exactly the three metrics Services; the alerting
//! rules pass `promtool check rules`, and `promtool test rules` over
//! synthetic series shows each alert firing when it should and staying
//! quiet otherwise. Uses the real helm and promtool.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::support::*;

#[test]
fn monitoring_objects_render_only_when_enabled_and_the_api_exists() {
    let Some(helm) = tool("helm") else { return };
    let kinds = ["ServiceMonitor", "PrometheusRule"];
    let count = |docs: &[Value]| {
        kinds
            .iter()
            .map(|k| of_kind(docs, k).len())
            .collect::<Vec<_>>()
    };
    assert_eq!(count(&render(&helm, &DEFAULTS)), [0, 0], "off by default");
    assert_eq!(
        count(&render_with(
            &helm,
            &DEFAULTS,
            &["--api-versions", MONITORING_API]
        )),
        [0, 0],
        "off by default, even with the API"
    );
    assert_eq!(
        count(&render(&helm, &CLUSTER_IP)),
        [0, 0],
        "enabled, but no API"
    );
    assert_eq!(count(&render(&helm, &MONITORED)), [1, 1]);
    assert_eq!(count(&render(&helm, &FLIPPED)), [1, 1]);

    // The ServiceMonitor scrapes exactly the three metrics Services.
    for s in [&MONITORED, &FLIPPED] {
        let docs = render(&helm, s);
        let sm = of_kind(&docs, "ServiceMonitor")[0];
        assert_eq!(sm["metadata"]["namespace"], s.namespace);
        assert_eq!(
            sm["spec"]["namespaceSelector"],
            json!({"matchNames": [s.namespace]})
        );
        let endpoints = sm["spec"]["endpoints"].as_array().expect("endpoints");
        assert_eq!(endpoints.len(), 1);
        assert_eq!(endpoints[0]["port"], "metrics");
        assert_eq!(endpoints[0]["path"], "/metrics");
        let scraped: Vec<_> = of_kind(&docs, "Service")
            .into_iter()
            .filter(|svc| {
                selects(
                    &sm["spec"]["selector"]["matchLabels"],
                    &svc["metadata"]["labels"],
                )
            })
            .collect();
        let mut components: Vec<&str> = scraped.iter().map(|svc| component_of(svc)).collect();
        components.sort();
        assert_eq!(components, ["operator", "proxy", "webhook"], "{}", s.name);
        for svc in scraped {
            let metrics = svc["spec"]["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .find(|p| p["name"] == "metrics")
                .cloned()
                .unwrap_or_else(|| panic!("{}: metrics port", name_of(svc)));
            assert_eq!(metrics["targetPort"], "admin");
            assert_eq!(
                svc["spec"]["type"], "ClusterIP",
                "metrics stay in the cluster"
            );
        }
        if s.is(&FLIPPED) {
            assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
            assert_eq!(endpoints[0]["interval"], "15s");
            let rule = of_kind(&docs, "PrometheusRule")[0];
            assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
        }
    }
}

/// The rendered PrometheusRule's groups, as a Prometheus rules file.
fn rules_of(helm: &Path) -> Value {
    let docs = render(helm, &MONITORED);
    let rule = of_kind(&docs, "PrometheusRule")[0].clone();
    assert_eq!(rule["apiVersion"], MONITORING_API);
    let spec = rule["spec"].clone();
    assert_eq!(
        spec.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["groups".to_string()])
    );
    spec
}

fn alerts(rules: &Value) -> BTreeMap<String, Value> {
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .map(|r| {
            (
                r["alert"]
                    .as_str()
                    .expect("alerting rules only")
                    .to_string(),
                r.clone(),
            )
        })
        .collect()
}

#[test]
fn prometheus_rules_pass_promtool_check() {
    let Some(helm) = tool("helm") else { return };
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let rules = rules_of(&helm);
    let found = alerts(&rules);
    let expected = [
        (
            "TlswardCertificateExpiresIn14Days",
            "tlsward_certificate_expiry_timestamp_seconds",
            "14 * 86400",
            "warning",
        ),
        (
            "TlswardCertificateExpiresIn3Days",
            "tlsward_certificate_expiry_timestamp_seconds",
            "3 * 86400",
            "critical",
        ),
        (
            "TlswardTrustAnchorExpiresIn14Days",
            "tlsward_trust_anchor_expiry_timestamp_seconds",
            "14 * 86400",
            "warning",
        ),
        (
            "TlswardTrustAnchorExpiresIn3Days",
            "tlsward_trust_anchor_expiry_timestamp_seconds",
            "3 * 86400",
            "critical",
        ),
        (
            "TlswardIssuerKeysStale",
            "tlsward_oidc_jwks_last_success_timestamp_seconds",
            "> 3600",
            "warning",
        ),
        (
            "TlswardIssuerHasNoKeys",
            "tlsward_oidc_keys",
            "== 0",
            "critical",
        ),
        (
            "TlswardProxyCrlRefused",
            "tlsward_proxy_host_config_errors{reason=\"invalid_crl\"}",
            "> 0",
            "critical",
        ),
        (
            "TlswardProxyHostConfigRefused",
            "tlsward_proxy_host_config_errors{reason!=\"invalid_crl\"}",
            "> 0",
            "warning",
        ),
        (
            "TlswardReconcileFailures",
            "increase(tlsward_operator_reconcile_failures_total[15m]) > 0",
            "",
            "warning",
        ),
        (
            "TlswardWebhookErrorRate",
            "tlsward_webhook_reviews_total{verdict=~\"invalid|bad_request\"}",
            "> 0.05",
            "warning",
        ),
    ];
    assert_eq!(found.len(), expected.len(), "{:?}", found.keys());
    for (name, metric, threshold, severity) in expected {
        let rule = &found[name];
        let expr = rule["expr"].as_str().expect("expr");
        assert!(
            expr.contains(metric) && expr.contains(threshold),
            "{name}: {expr}"
        );
        assert_eq!(rule["labels"]["severity"], severity, "{name}");
        assert!(rule["annotations"]["summary"].is_string(), "{name}");
        assert!(rule["annotations"]["description"].is_string(), "{name}");
    }
    assert_eq!(found["TlswardWebhookErrorRate"]["for"], "10m");

    let dir = tempfile::tempdir().expect("tempdir");
    // JSON is YAML; promtool reads it as a rules file.
    let file = write_temp(&dir, "tlsward-rules.yaml", &rules.to_string());
    let out = run(
        &promtool,
        &["check", "rules", file.to_str().expect("UTF-8")],
    );
    let text = output_text(&out);
    assert!(out.status.success(), "promtool check rules:\n{text}");
    assert!(text.contains("SUCCESS: 10 rules found"), "{text}");

    // promtool really checks: a broken expression fails.
    let mut broken = rules.clone();
    broken["groups"][0]["rules"][0]["expr"] =
        json!("(tlsward_certificate_expiry_timestamp_seconds - time() < ");
    let file = write_temp(&dir, "broken-rules.yaml", &broken.to_string());
    let out = run(
        &promtool,
        &["check", "rules", file.to_str().expect("UTF-8")],
    );
    assert!(!out.status.success(), "promtool accepted a broken rule");
}

/// The alerts fire on the series they are about, and stay quiet otherwise:
/// `promtool test rules` over synthetic series. (Annotations are templated
/// text; `promtool check rules` above validates their templates.)
#[test]
fn prometheus_alerts_fire_when_they_should() {
    let Some(helm) = tool("helm") else { return };
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let mut rules = rules_of(&helm);
    for group in rules["groups"].as_array_mut().expect("groups") {
        for rule in group["rules"].as_array_mut().expect("rules") {
            rule.as_object_mut().expect("rule").remove("annotations");
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    write_temp(&dir, "rules.yaml", &rules.to_string());
    const DAY: i64 = 86400;
    let cert = "tlsward_certificate_expiry_timestamp_seconds";
    let anchor = "tlsward_trust_anchor_expiry_timestamp_seconds";
    let reviews = "tlsward_webhook_reviews_total";
    let alert = |name: &str, labels: Value| json!({"exp_labels": merge(json!({"alertname": name}), labels)});
    let tests = json!({
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                // 10 days left: the 14-day warning, not the 3-day alert; 40 days: nothing.
                "interval": "1m",
                "input_series": [
                    {"series": format!("{cert}{{host=\"a.example.com\",secret=\"web/a-tls\"}}"), "values": format!("{}+0x60", 10 * DAY)},
                    {"series": format!("{cert}{{host=\"b.example.com\",secret=\"web/b-tls\"}}"), "values": format!("{}+0x60", 40 * DAY)},
                    {"series": format!("{anchor}{{namespace=\"corp\",policy=\"clients\",fingerprint=\"sha256:ab\"}}"), "values": format!("{}+0x60", 2 * DAY)},
                ],
                "alert_rule_test": [
                    {"eval_time": "20m", "alertname": "TlswardCertificateExpiresIn14Days",
                     "exp_alerts": [alert("TlswardCertificateExpiresIn14Days", json!({"severity": "warning", "host": "a.example.com", "secret": "web/a-tls"}))]},
                    {"eval_time": "20m", "alertname": "TlswardCertificateExpiresIn3Days", "exp_alerts": []},
                    {"eval_time": "20m", "alertname": "TlswardTrustAnchorExpiresIn14Days",
                     "exp_alerts": [alert("TlswardTrustAnchorExpiresIn14Days", json!({"severity": "warning", "namespace": "corp", "policy": "clients", "fingerprint": "sha256:ab"}))]},
                    {"eval_time": "20m", "alertname": "TlswardTrustAnchorExpiresIn3Days",
                     "exp_alerts": [alert("TlswardTrustAnchorExpiresIn3Days", json!({"severity": "critical", "namespace": "corp", "policy": "clients", "fingerprint": "sha256:ab"}))]},
                ],
            },
            {
                // One issuer's keys were last fetched at time 0 (the IdP has been
                // down since); the other's are fetched every minute.
                "interval": "1m",
                "input_series": [
                    {"series": "tlsward_oidc_jwks_last_success_timestamp_seconds{issuer=\"https://down.example\",pod=\"p1\"}", "values": "0+0x100"},
                    {"series": "tlsward_oidc_jwks_last_success_timestamp_seconds{issuer=\"https://up.example\",pod=\"p1\"}", "values": "0+60x100"},
                    {"series": "tlsward_oidc_keys{issuer=\"https://up.example\",pod=\"p1\"}", "values": "2+0x100"},
                    {"series": "tlsward_oidc_keys{issuer=\"https://never.example\",pod=\"p1\"}", "values": "0+0x100"},
                ],
                "alert_rule_test": [
                    {"eval_time": "50m", "alertname": "TlswardIssuerKeysStale", "exp_alerts": []},
                    {"eval_time": "20m", "alertname": "TlswardIssuerHasNoKeys",
                     "exp_alerts": [alert("TlswardIssuerHasNoKeys", json!({"severity": "critical", "issuer": "https://never.example"}))]},
                    {"eval_time": "70m", "alertname": "TlswardIssuerKeysStale",
                     "exp_alerts": [alert("TlswardIssuerKeysStale", json!({"severity": "warning", "issuer": "https://down.example"}))]},
                ],
            },
            {
                // Two proxy replicas refuse host a's CRL and keep its last good
                // configuration; host b's Secret is broken, a lesser alert;
                // host c was refused for a minute only: no alert.
                "interval": "1m",
                "input_series": [
                    {"series": "tlsward_proxy_host_config_errors{host=\"a.example.com\",reason=\"invalid_crl\",serving=\"last_good\",pod=\"p1\"}", "values": "1+0x40"},
                    {"series": "tlsward_proxy_host_config_errors{host=\"a.example.com\",reason=\"invalid_crl\",serving=\"last_good\",pod=\"p2\"}", "values": "1+0x40"},
                    {"series": "tlsward_proxy_host_config_errors{host=\"b.example.com\",reason=\"tls_secret\",serving=\"last_good\",pod=\"p1\"}", "values": "1+0x40"},
                    {"series": "tlsward_proxy_host_config_errors{host=\"c.example.com\",reason=\"invalid_crl\",serving=\"none\",pod=\"p1\"}", "values": "1 _x40"},
                ],
                "alert_rule_test": [
                    {"eval_time": "3m", "alertname": "TlswardProxyCrlRefused", "exp_alerts": []},
                    {"eval_time": "10m", "alertname": "TlswardProxyCrlRefused",
                     "exp_alerts": [alert("TlswardProxyCrlRefused", json!({"severity": "critical", "host": "a.example.com", "serving": "last_good"}))]},
                    {"eval_time": "10m", "alertname": "TlswardProxyHostConfigRefused", "exp_alerts": []},
                    {"eval_time": "20m", "alertname": "TlswardProxyHostConfigRefused",
                     "exp_alerts": [alert("TlswardProxyHostConfigRefused", json!({"severity": "warning", "host": "b.example.com", "reason": "tls_secret", "serving": "last_good"}))]},
                ],
            },
            {
                // Failures keep coming: alert. A flat counter: none.
                "interval": "1m",
                "input_series": [
                    {"series": "tlsward_operator_reconcile_failures_total{reason=\"SourceNotFound\"}", "values": "0+1x40"},
                    {"series": "tlsward_operator_reconcile_failures_total{reason=\"InvalidCertificate\"}", "values": "3+0x40"},
                ],
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": "TlswardReconcileFailures",
                     "exp_alerts": [alert("TlswardReconcileFailures", json!({"severity": "warning", "reason": "SourceNotFound"}))]},
                ],
            },
            {
                // 2 of 12 reviews per minute unreadable (17%): alert after 10 minutes.
                "interval": "1m",
                "input_series": [
                    {"series": format!("{reviews}{{webhook=\"validate\",operation=\"CREATE\",verdict=\"allowed\"}}"), "values": "0+10x40"},
                    {"series": format!("{reviews}{{webhook=\"validate\",operation=\"unknown\",verdict=\"bad_request\"}}"), "values": "0+2x40"},
                ],
                "alert_rule_test": [
                    {"eval_time": "8m", "alertname": "TlswardWebhookErrorRate", "exp_alerts": []},
                    {"eval_time": "30m", "alertname": "TlswardWebhookErrorRate",
                     "exp_alerts": [alert("TlswardWebhookErrorRate", json!({"severity": "warning"}))]},
                ],
            },
            {
                // 1 of 100 (1%), and many denials (a denial is not an error): no alert.
                "interval": "1m",
                "input_series": [
                    {"series": format!("{reviews}{{webhook=\"validate\",operation=\"CREATE\",verdict=\"denied\"}}"), "values": "0+60x40"},
                    {"series": format!("{reviews}{{webhook=\"validate\",operation=\"CREATE\",verdict=\"allowed\"}}"), "values": "0+39x40"},
                    {"series": format!("{reviews}{{webhook=\"mutate\",operation=\"CREATE\",verdict=\"invalid\"}}"), "values": "0+1x40"},
                ],
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": "TlswardWebhookErrorRate", "exp_alerts": []},
                ],
            },
        ],
    });
    let file = write_temp(&dir, "tests.yaml", &tests.to_string());
    let out = run(&promtool, &["test", "rules", file.to_str().expect("UTF-8")]);
    assert!(
        out.status.success(),
        "promtool test rules:\n{}",
        output_text(&out)
    );
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}
