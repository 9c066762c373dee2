//! Scripted API-server scenarios for the reconciler (the kube-rs
//! `ApiServerVerifier` pattern): every request the reconciler sends is
//! checked for method, path, query and body, and answered realistically.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use base64::Engine;
use kube::runtime::events::Recorder;
use prometheus_client::registry::Registry;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};

use super::controller::{self, CONTENT_HASH_ANNOTATION, Context, FIELD_MANAGER, POLICY_LABEL};
use crate::clientauth::ClientAuthPolicy;
use crate::telemetry::{self, OperatorMetrics};

/// The fixed "now" of every scenario: 2026-11-23T00:00:00Z.
const NOW: i64 = 1_795_392_000;
const NS: &str = "corp";
const POLICY: &str = "inventory-clients";
const TARGET: &str = "inventory-clients-ca";
const UID: &str = "5b1c2a8e-0000-4000-8000-000000000001";

use crate::testing::{Captured, Scripted as Verifier};

fn ca_pem(cn: &str) -> String {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2026, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    params
        .self_signed(&KeyPair::generate().unwrap())
        .unwrap()
        .pem()
}

fn context() -> (Arc<Context>, Verifier, Arc<Registry>) {
    let (client, api) = Verifier::new();
    let recorder = Recorder::new(client.clone(), "tlsward-operator".into());
    let mut registry = Registry::default();
    let metrics = Arc::new(OperatorMetrics::register(&mut registry));
    let ctx = Context::with_clock(client, recorder, metrics, || NOW);
    (Arc::new(ctx), api, Arc::new(registry))
}

fn policy(status: Option<Value>) -> ClientAuthPolicy {
    let mut v = json!({
        "apiVersion": "tlsward.io/v1alpha1", "kind": "ClientAuthPolicy",
        "metadata": {"name": POLICY, "namespace": NS, "uid": UID, "generation": 3},
        "spec": {"mode": "Require", "trustAnchors": [{"secretRef": {"name": "corp-ca"}}],
                 "ingressSelector": {"matchLabels": {"app": "inventory"}}}
    });
    if let Some(s) = status {
        v["status"] = s;
    }
    serde_json::from_value(v).unwrap()
}

fn secret(name: &str, labels: Value, annotations: Value, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": name, "namespace": NS, "labels": labels, "annotations": annotations, "resourceVersion": "7"},
           "type": "Opaque", "data": data})
}

fn source_secret(pem: &str) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
    secret("corp-ca", json!({}), json!({}), json!({"ca.crt": b64}))
}

fn not_found(kind: &str, name: &str) -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": format!("{kind} \"{name}\" not found"), "reason": "NotFound",
               "details": {"name": name, "kind": kind}, "code": 404}),
    )
}

fn ingress_list() -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressList", "metadata": {"resourceVersion": "9"},
    "items": [
        {"metadata": {"name": "by-annotation", "namespace": NS, "annotations": {"tlsward.io/client-auth-policy": POLICY}}},
        {"metadata": {"name": "by-label", "namespace": NS, "labels": {"app": "inventory"}}},
        {"metadata": {"name": "other-policy", "namespace": NS, "labels": {"app": "inventory"},
                      "annotations": {"tlsward.io/client-auth-policy": "another"}}},
        {"metadata": {"name": "unrelated", "namespace": NS, "labels": {"app": "web"}}}
    ]})
}

impl Verifier {
    /// `expect` with the fixtures' (status, body) answers.
    async fn answer(
        &mut self,
        method: Method,
        path_and_query: &str,
        answer: (StatusCode, Value),
    ) -> Value {
        self.expect(method.as_str(), path_and_query, answer.0.as_u16(), answer.1)
            .await
    }

    async fn get_source(&mut self, answer: (StatusCode, Value)) {
        self.answer(
            Method::GET,
            &format!("/api/v1/namespaces/{NS}/secrets/corp-ca"),
            answer,
        )
        .await;
    }

    async fn get_target(&mut self, answer: (StatusCode, Value)) {
        self.answer(
            Method::GET,
            &format!("/api/v1/namespaces/{NS}/secrets/{TARGET}"),
            answer,
        )
        .await;
    }

    async fn apply_target(&mut self) -> Value {
        let body = self
            .answer(
                Method::PATCH,
                &format!("/api/v1/namespaces/{NS}/secrets/{TARGET}?&force=true&fieldManager={FIELD_MANAGER}"),
                (StatusCode::OK, json!({})),
            )
            .await;
        // Echo back what was applied, as the API server would.
        body
    }

    async fn list_ingresses(&mut self) {
        self.answer(
            Method::GET,
            &format!("/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses?"),
            (StatusCode::OK, ingress_list()),
        )
        .await;
    }

    async fn patch_status(&mut self) -> Value {
        let body = self
            .answer(
                Method::PATCH,
                &format!(
                    "/apis/tlsward.io/v1alpha1/namespaces/{NS}/clientauthpolicies/{POLICY}/status?"
                ),
                (StatusCode::OK, serde_json::to_value(policy(None)).unwrap()),
            )
            .await;
        body["status"].clone()
    }

    /// An Event on the policy: created, or patched when kube's recorder
    /// folds a repeat into an event series. The event is echoed back.
    async fn event(&mut self) -> Value {
        let prefix = format!("/apis/events.k8s.io/v1/namespaces/{NS}/events");
        let series = format!("PATCH {prefix}/{POLICY}.");
        let create = format!("POST {prefix}?");
        self.expect_matching(
            "an event create or series patch",
            |got| got == create || got.starts_with(&series),
            200,
            None,
        )
        .await
    }
}

async fn reconcile(
    p: ClientAuthPolicy,
    ctx: &Arc<Context>,
) -> tokio::task::JoinHandle<Result<kube::runtime::controller::Action, controller::Error>> {
    tokio::spawn(controller::reconcile(Arc::new(p), ctx.clone()))
}

fn decode(data: &Value, key: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD
        .decode(data[key].as_str().unwrap())
        .unwrap();
    String::from_utf8(b).unwrap()
}

/// The first reconcile of a healthy policy; returns (applied Secret, status).
async fn first_reconcile(ctx: &Arc<Context>, api: &mut Verifier, ca: &str) -> (Value, Value) {
    let task = reconcile(policy(None), ctx).await;
    api.get_source((StatusCode::OK, source_secret(ca))).await;
    api.get_target(not_found("secrets", TARGET)).await;
    let applied = api.apply_target().await;
    api.list_ingresses().await;
    let status = api.patch_status().await;
    let event = api.event().await;
    assert_eq!(event["reason"], "BundleUpdated");
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["regarding"]["name"], POLICY);
    task.await.unwrap().unwrap();
    (applied, status)
}

#[tokio::test]
async fn first_reconcile_creates_the_secret_and_patches_status() {
    let (ctx, mut api, registry) = context();
    let ca = ca_pem("Corp Clients CA");
    let (applied, status) = first_reconcile(&ctx, &mut api, &ca).await;

    assert_eq!(applied["apiVersion"], "v1");
    assert_eq!(applied["kind"], "Secret");
    assert_eq!(applied["type"], "Opaque");
    assert_eq!(applied["metadata"]["name"], TARGET);
    assert_eq!(applied["metadata"]["namespace"], NS);
    assert_eq!(applied["metadata"]["labels"][POLICY_LABEL], POLICY);
    let owner = &applied["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "ClientAuthPolicy");
    assert_eq!(owner["apiVersion"], "tlsward.io/v1alpha1");
    assert_eq!(owner["name"], POLICY);
    assert_eq!(owner["uid"], UID);
    assert_eq!(owner["controller"], true);
    assert_eq!(decode(&applied["data"], "ca.crt").trim(), ca.trim());
    assert!(
        applied["data"].get("ca.crl").is_none(),
        "no revocation given"
    );
    let hash = applied["metadata"]["annotations"][CONTENT_HASH_ANNOTATION]
        .as_str()
        .unwrap();
    assert!(!hash.is_empty());

    assert_eq!(status["observedGeneration"], 3);
    let ready = &status["conditions"][0];
    assert_eq!(ready["type"], "Ready");
    assert_eq!(ready["status"], "True");
    assert_eq!(ready["reason"], "Synced");
    assert_eq!(ready["lastTransitionTime"], "2026-11-23T00:00:00Z");
    assert_eq!(status["bundle"]["secretName"], TARGET);
    assert_eq!(status["bundle"]["certificates"], 1);
    assert_eq!(status["bundle"]["notAfter"], "2036-01-01T00:00:00Z");
    assert!(
        status["bundle"]["fingerprints"][0]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(
        status["boundIngresses"],
        json!(["by-annotation", "by-label"])
    );
    api.expect_no_more().await;

    let metrics = telemetry::render(&registry);
    assert!(metrics.contains("tlsward_trust_anchor_expiry_timestamp_seconds{namespace=\"corp\",policy=\"inventory-clients\",fingerprint=\"sha256:"), "{metrics}");
    assert!(
        metrics.contains("} 2082758400"),
        "notAfter 2036-01-01 as Unix time: {metrics}"
    );
    assert!(metrics.contains("tlsward_operator_reconciles_total{result=\"success\"} 1"));
}

#[tokio::test]
async fn unchanged_policy_issues_no_write() {
    let (ctx, mut api, _) = context();
    let ca = ca_pem("Corp Clients CA");
    let (applied, status) = first_reconcile(&ctx, &mut api, &ca).await;

    // Second reconcile against the state the first one left behind.
    let task = reconcile(policy(Some(status)), &ctx).await;
    api.get_source((StatusCode::OK, source_secret(&ca))).await;
    api.get_target((StatusCode::OK, applied)).await;
    api.list_ingresses().await;
    api.expect_no_more().await;
    task.await.unwrap().unwrap();
    let second: Vec<&String> = api.seen.iter().skip(6).collect();
    assert_eq!(second.len(), 3, "three reads and nothing else: {second:?}");
    assert!(second.iter().all(|r| r.starts_with("GET ")), "{second:?}");
}

#[tokio::test]
async fn missing_source_is_not_ready_and_writes_no_secret() {
    let (ctx, mut api, registry) = context();
    let task = reconcile(policy(None), &ctx).await;
    api.get_source(not_found("secrets", "corp-ca")).await;
    api.list_ingresses().await;
    let status = api.patch_status().await;
    let event = api.event().await;
    task.await.unwrap().unwrap();
    api.expect_no_more().await;

    let ready = &status["conditions"][0];
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "SourceNotFound");
    let msg = ready["message"].as_str().unwrap();
    assert!(
        msg.contains("spec.trustAnchors[0]") && msg.contains("\"corp-ca\""),
        "{msg}"
    );
    assert!(status.get("bundle").is_none(), "no bundle was ever written");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "SourceNotFound");
    assert!(
        !api.seen.iter().any(|r| r.starts_with("PATCH /api/v1")),
        "{:?}",
        api.seen
    );
    assert!(
        telemetry::render(&registry)
            .contains("tlsward_operator_reconcile_failures_total{reason=\"SourceNotFound\"} 1")
    );
}

#[tokio::test]
async fn fixing_the_source_updates_the_bundle_and_a_break_keeps_it() {
    let (ctx, mut api, _) = context();
    let old_ca = ca_pem("Corp Clients CA 2025");
    let (applied, good_status) = first_reconcile(&ctx, &mut api, &old_ca).await;

    // The source Secret now holds garbage: not ready, Secret untouched.
    let task = reconcile(policy(Some(good_status.clone())), &ctx).await;
    api.get_source((StatusCode::OK, source_secret("not a certificate")))
        .await;
    api.list_ingresses().await;
    let broken = api.patch_status().await;
    api.event().await;
    task.await.unwrap().unwrap();
    assert_eq!(broken["conditions"][0]["status"], "False");
    assert_eq!(broken["conditions"][0]["reason"], "InvalidCertificate");
    assert_eq!(
        broken["bundle"], good_status["bundle"],
        "the last good bundle stays reported"
    );
    assert!(
        !api.seen
            .iter()
            .skip(6)
            .any(|r| r.starts_with("PATCH /api/v1")),
        "{:?}",
        api.seen
    );

    // Rotated to a new CA: the Secret and status follow.
    let new_ca = ca_pem("Corp Clients CA 2026");
    let task = reconcile(policy(Some(broken)), &ctx).await;
    api.get_source((StatusCode::OK, source_secret(&new_ca)))
        .await;
    api.get_target((StatusCode::OK, applied.clone())).await;
    let reapplied = api.apply_target().await;
    api.list_ingresses().await;
    let fixed = api.patch_status().await;
    let event = api.event().await;
    task.await.unwrap().unwrap();
    assert_eq!(decode(&reapplied["data"], "ca.crt").trim(), new_ca.trim());
    assert_ne!(
        reapplied["metadata"]["annotations"][CONTENT_HASH_ANNOTATION],
        applied["metadata"]["annotations"][CONTENT_HASH_ANNOTATION]
    );
    assert_eq!(fixed["conditions"][0]["status"], "True");
    assert_eq!(
        fixed["conditions"][0]["lastTransitionTime"],
        "2026-11-23T00:00:00Z"
    );
    assert_ne!(
        fixed["bundle"]["fingerprints"],
        good_status["bundle"]["fingerprints"]
    );
    assert_eq!(event["reason"], "BundleUpdated");
}

#[tokio::test]
async fn foreign_target_secret_is_a_conflict_and_not_overwritten() {
    let (ctx, mut api, _) = context();
    let ca = ca_pem("Corp Clients CA");
    let task = reconcile(policy(None), &ctx).await;
    api.get_source((StatusCode::OK, source_secret(&ca))).await;
    api.get_target((
        StatusCode::OK,
        secret(
            TARGET,
            json!({"team": "payments"}),
            json!({}),
            json!({"ca.crt": "eA=="}),
        ),
    ))
    .await;
    api.list_ingresses().await;
    let status = api.patch_status().await;
    let event = api.event().await;
    task.await.unwrap().unwrap();
    api.expect_no_more().await;
    assert_eq!(status["conditions"][0]["reason"], "TargetConflict");
    assert!(
        status["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("spec.target.secretName")
    );
    assert_eq!(event["reason"], "TargetConflict");
    assert!(
        !api.seen.iter().any(|r| r.starts_with("PATCH /api/v1")),
        "{:?}",
        api.seen
    );
}

#[tokio::test]
async fn api_errors_are_retried() {
    let (ctx, mut api, registry) = context();
    let task = reconcile(policy(None), &ctx).await;
    api.get_source((
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd timeout", "reason": "InternalError", "code": 500}),
    ))
    .await;
    let err = task.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("etcd timeout"), "{err}");
    assert!(telemetry::render(&registry).contains("reason=\"ApiError\"} 1"));
    let p = Arc::new(policy(None));
    assert_eq!(
        controller::error_policy(p.clone(), &err, ctx.clone()),
        kube::runtime::controller::Action::requeue(Duration::from_secs(15))
    );
}

/// A CA's PEM, DER and key, for CRLs signed by hand.
fn ca_with_key(cn: &str) -> (String, Vec<u8>, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2026, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), cert.der().to_vec(), key)
}

/// The standard policy, with a CRL from the same Secret (key ca.crl).
fn crl_policy(status: Option<Value>) -> ClientAuthPolicy {
    let mut p = serde_json::to_value(policy(status)).unwrap();
    p["spec"]["revocation"] = json!([{"secretRef": {"name": "corp-ca", "key": "ca.crl"}}]);
    serde_json::from_value(p).unwrap()
}

fn source_secret_with_crl(ca: &str, crl: &str) -> Value {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    secret(
        "corp-ca",
        json!({}),
        json!({}),
        json!({"ca.crt": b64(ca), "ca.crl": b64(crl)}),
    )
}

/// A policy whose CRL the bundle builder refuses: not Ready, a Warning
/// event, the failure counted, and no Secret written. Returns the status.
async fn refused_crl(
    ctx: &Arc<Context>,
    api: &mut Verifier,
    ca: &str,
    crl: &str,
) -> (Value, Value) {
    let task = reconcile(crl_policy(None), ctx).await;
    let source = source_secret_with_crl(ca, crl);
    // trustAnchors[0], then revocation[0]: the same Secret, read per source.
    api.get_source((StatusCode::OK, source.clone())).await;
    api.get_source((StatusCode::OK, source)).await;
    api.list_ingresses().await;
    let status = api.patch_status().await;
    let event = api.event().await;
    task.await.unwrap().unwrap();
    api.expect_no_more().await;
    assert!(
        !api.seen
            .iter()
            .any(|r| r.contains("/secrets/") && r.starts_with("PATCH")),
        "no bundle Secret is written: {:?}",
        api.seen
    );
    (status, event)
}

/// OpenSSL's default CRL (version 1, no extensions) is what rustls
/// refuses: the operator must say so instead of reporting Synced.
#[tokio::test]
async fn a_crl_without_extensions_is_invalid_crl_with_the_fix() {
    use crate::testing::RawCrl;
    let (ctx, mut api, registry) = context();
    let (ca, ca_der, key) = ca_with_key("Corp Clients CA");
    let crl = RawCrl::extensionless().pem(&ca_der, &key);
    let (status, event) = refused_crl(&ctx, &mut api, &ca, &crl).await;

    let ready = &status["conditions"][0];
    assert_eq!(ready["type"], "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "InvalidCRL");
    let msg = ready["message"].as_str().unwrap();
    for needle in [
        "spec.revocation[0] (Secret corp-ca, key ca.crl): CRL 1 cannot be used",
        "lacks the CRL Number and Authority Key Identifier extensions",
        "RFC 5280 section 5.2",
        "openssl ca -gencrl",
        "crlnumber",
        "authorityKeyIdentifier=keyid:always",
    ] {
        assert!(msg.contains(needle), "{needle:?} in {msg}");
    }
    assert!(status.get("bundle").is_none(), "no bundle was ever written");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "InvalidCRL");
    assert_eq!(event["note"], msg, "the event says what the condition says");
    assert!(
        telemetry::render(&registry)
            .contains("tlsward_operator_reconcile_failures_total{reason=\"InvalidCRL\"} 1")
    );

    // A conforming CRL from the same CA fixes it: Synced, ca.crl written.
    let good = RawCrl::conforming().pem(&ca_der, &key);
    let task = reconcile(crl_policy(Some(status)), &ctx).await;
    let source = source_secret_with_crl(&ca, &good);
    api.get_source((StatusCode::OK, source.clone())).await;
    api.get_source((StatusCode::OK, source)).await;
    api.get_target(not_found("secrets", TARGET)).await;
    let applied = api.apply_target().await;
    api.list_ingresses().await;
    let fixed = api.patch_status().await;
    let written = api.event().await;
    task.await.unwrap().unwrap();
    assert_eq!(decode(&applied["data"], "ca.crl"), good);
    assert_eq!(fixed["conditions"][0]["status"], "True", "{fixed}");
    assert_eq!(fixed["bundle"]["crls"], 1);
    assert_eq!(written["reason"], "BundleUpdated");
}

#[tokio::test]
async fn a_malformed_crl_block_is_invalid_crl_naming_the_block() {
    use crate::testing::RawCrl;
    let (ctx, mut api, _) = context();
    let (ca, ca_der, key) = ca_with_key("Corp Clients CA");
    let crl = format!(
        "{}-----BEGIN X509 CRL-----\n!!not base64!!\n-----END X509 CRL-----\n",
        RawCrl::conforming().pem(&ca_der, &key)
    );
    let (status, event) = refused_crl(&ctx, &mut api, &ca, &crl).await;
    let ready = &status["conditions"][0];
    assert_eq!(ready["reason"], "InvalidCRL");
    let msg = ready["message"].as_str().unwrap();
    assert!(
        msg.starts_with("spec.revocation[0] (Secret corp-ca, key ca.crl): malformed PEM: block 2"),
        "{msg}"
    );
    assert_eq!(event["reason"], "InvalidCRL");
}

#[test]
fn source_changes_map_to_the_policies_that_read_them() {
    use super::{SourceKind, policies_for_source};
    let p = Arc::new(policy(None));
    let policies = vec![p.clone()];
    let none = std::collections::BTreeMap::new();
    let hits = policies_for_source(&policies, SourceKind::Secret, NS, "corp-ca", &none);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].name, POLICY);
    assert!(policies_for_source(&policies, SourceKind::ConfigMap, NS, "corp-ca", &none).is_empty());
    assert!(
        policies_for_source(&policies, SourceKind::Secret, "other", "corp-ca", &none).is_empty()
    );
    let owned = std::collections::BTreeMap::from([(POLICY_LABEL.to_string(), POLICY.to_string())]);
    let hits = policies_for_source(&policies, SourceKind::Secret, NS, TARGET, &owned);
    assert_eq!(
        hits[0].name, POLICY,
        "the bundle Secret maps back to its policy"
    );
}

#[tokio::test]
async fn hand_edited_bundle_is_repaired() {
    let (ctx, mut api, _) = context();
    let ca = ca_pem("Corp Clients CA");
    let (mut applied, status) = first_reconcile(&ctx, &mut api, &ca).await;
    // Someone edits the data but leaves the hash annotation alone.
    applied["data"]["ca.crt"] = json!(base64::engine::general_purpose::STANDARD.encode("tampered"));
    let task = reconcile(policy(Some(status)), &ctx).await;
    api.get_source((StatusCode::OK, source_secret(&ca))).await;
    api.get_target((StatusCode::OK, applied)).await;
    let repaired = api.apply_target().await;
    api.list_ingresses().await;
    api.event().await;
    task.await.unwrap().unwrap();
    assert_eq!(decode(&repaired["data"], "ca.crt").trim(), ca.trim());
}

#[tokio::test]
async fn last_bound_ingress_leaving_empties_the_list() {
    let (ctx, mut api, _) = context();
    let ca = ca_pem("Corp Clients CA");
    let (applied, status) = first_reconcile(&ctx, &mut api, &ca).await;
    let task = reconcile(policy(Some(status)), &ctx).await;
    api.get_source((StatusCode::OK, source_secret(&ca))).await;
    api.get_target((StatusCode::OK, applied)).await;
    api.answer(
        Method::GET,
        &format!("/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses?"),
        (StatusCode::OK, json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressList", "metadata": {}, "items": []})),
    )
    .await;
    let patched = api.patch_status().await;
    task.await.unwrap().unwrap();
    assert_eq!(
        patched["boundIngresses"],
        json!([]),
        "an explicit empty list, so the merge patch clears it"
    );
}

#[tokio::test]
async fn every_reconcile_log_line_names_the_policy() {
    let out = Captured::default();
    let writer = out.clone();
    // Production's subscriber and JSON lines, at the default level.
    let subscriber = telemetry::subscriber(
        telemetry::LogFormat::Json,
        tracing_subscriber::EnvFilter::new("info"),
        false,
        move || writer.clone(),
    );
    crate::testing::capture_logs_reliably();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (ctx, mut api, _) = context();
    // A failing reconcile logs a warning; a successful one logs the write.
    let task = reconcile(policy(None), &ctx).await;
    api.get_source(not_found("secrets", "corp-ca")).await;
    api.list_ingresses().await;
    api.patch_status().await;
    api.event().await;
    task.await.unwrap().unwrap();
    let ca = ca_pem("Corp Clients CA");
    first_reconcile(&ctx, &mut api, &ca).await;

    let text = out.text();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 2, "{text}");
    for l in &lines {
        assert_eq!(l["span"]["namespace"], NS, "{l}");
        assert_eq!(l["span"]["policy"], POLICY, "{l}");
    }
    assert!(
        lines.iter().any(|l| l["message"] == "bundle written"),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l["reason"] == "SourceNotFound"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// Issuers and login (spec.tokens, spec.login): a real HTTPS test IdP.

mod oidc {
    use super::*;
    use crate::oidc::fixtures::{Idp, Mode};
    use crate::oidc::jwt::Algorithm;
    use crate::oidc::jwt::test_signing::TestKey;

    const LOGIN_SECRET: &str = "inventory-login";
    const SESSION_SECRET: &str = "inventory-sessions";

    /// An IdP serving two real public keys.
    async fn idp() -> Idp {
        let idp = Idp::start().await;
        let es = TestKey::generate(Algorithm::ES256, Some("es")).unwrap();
        let ed = TestKey::generate(Algorithm::EdDSA, Some("ed")).unwrap();
        idp.set_keys(vec![es.jwk(), ed.jwk()]);
        idp
    }

    fn token_issuer(issuer: &str, ca_pem: &str) -> Value {
        json!({"issuer": issuer, "audiences": ["inventory"], "ca": {"inline": ca_pem}})
    }

    /// A policy with `extra` merged into its spec; without trustAnchors
    /// unless `extra` sets them.
    fn oidc_policy(extra: Value, status: Option<Value>) -> ClientAuthPolicy {
        let mut p = serde_json::to_value(policy(status)).unwrap();
        p["spec"].as_object_mut().unwrap().remove("trustAnchors");
        for (k, v) in extra.as_object().unwrap() {
            p["spec"][k] = v.clone();
        }
        serde_json::from_value(p).unwrap()
    }

    fn tokens(issuers: Vec<Value>) -> Value {
        json!({"tokens": {"issuers": issuers}})
    }

    /// A port nothing listens on.
    async fn dead_issuer() -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        format!("https://127.0.0.1:{port}")
    }

    fn assert_no_secret_calls(api: &Verifier) {
        assert!(
            !api.seen.iter().any(|r| r.contains("/secrets")),
            "a tokens-only policy has no bundle: {:?}",
            api.seen
        );
    }

    #[tokio::test]
    async fn tokens_only_policy_is_ready_with_its_issuer_keys_and_no_bundle() {
        let (ctx, mut api, registry) = context();
        let idp = idp().await;
        let p = oidc_policy(tokens(vec![token_issuer(&idp.issuer, &idp.ca_pem)]), None);
        let task = reconcile(p, &ctx).await;
        api.list_ingresses().await;
        let status = api.patch_status().await;
        let action = task.await.unwrap().unwrap();
        api.expect_no_more().await;
        assert_no_secret_calls(&api);

        let ready = &status["conditions"][0];
        assert_eq!(ready["status"], "True", "{status}");
        assert_eq!(ready["reason"], "Synced");
        let msg = ready["message"].as_str().unwrap();
        assert!(
            msg.contains(&idp.issuer) && msg.contains("2 key(s)"),
            "{msg}"
        );
        assert_eq!(
            status["issuers"],
            json!([{"issuer": idp.issuer, "keys": 2, "lastFetched": "2026-11-23T00:00:00Z"}])
        );
        assert!(status.get("bundle").is_none(), "{status}");
        assert_eq!((idp.discovery_requests(), idp.jwks_requests()), (1, 1));
        assert_eq!(
            action,
            kube::runtime::controller::Action::requeue(controller::ISSUER_REFRESH),
            "issuer status is refreshed every few minutes"
        );
        assert!(
            telemetry::render(&registry)
                .contains("tlsward_operator_reconciles_total{result=\"success\"} 1")
        );

        // The reconcile our own status write triggers: no refetch, no write.
        let again = oidc_policy(
            tokens(vec![token_issuer(&idp.issuer, &idp.ca_pem)]),
            Some(status),
        );
        let task = reconcile(again, &ctx).await;
        api.list_ingresses().await;
        api.expect_no_more().await;
        task.await.unwrap().unwrap();
        assert_eq!(idp.requests(), 2, "a fresh check is reused");
    }

    #[tokio::test]
    async fn unreachable_issuer_is_not_ready_and_keeps_its_last_keys() {
        let (ctx, mut api, registry) = context();
        let issuer = dead_issuer().await;
        let before = json!({
            "boundIngresses": [],
            "issuers": [{"issuer": issuer, "keys": 3, "lastFetched": "2026-11-22T23:55:00Z"}]
        });
        let p = oidc_policy(
            tokens(vec![json!({"issuer": issuer, "audiences": ["inventory"]})]),
            Some(before),
        );
        let task = reconcile(p, &ctx).await;
        api.list_ingresses().await;
        let status = api.patch_status().await;
        let event = api.event().await;
        let action = task.await.unwrap().unwrap();
        api.expect_no_more().await;

        let ready = &status["conditions"][0];
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "IssuerUnreachable");
        let msg = ready["message"].as_str().unwrap();
        assert!(
            msg.contains("spec.tokens.issuers[0]")
                && msg.contains(&issuer)
                && msg.contains("cannot connect"),
            "{msg}"
        );
        assert_eq!(
            status["issuers"],
            json!([{"issuer": issuer, "keys": 3, "lastFetched": "2026-11-22T23:55:00Z"}]),
            "the last good keys stay reported"
        );
        assert_eq!(event["type"], "Warning");
        assert_eq!(event["reason"], "IssuerUnreachable");
        assert_eq!(
            action,
            kube::runtime::controller::Action::requeue(controller::ISSUER_RETRY)
        );
        assert!(
            telemetry::render(&registry).contains(
                "tlsward_operator_reconcile_failures_total{reason=\"IssuerUnreachable\"} 1"
            )
        );
    }

    #[tokio::test]
    async fn discovery_naming_another_issuer_is_invalid() {
        let (ctx, mut api, _) = context();
        let idp = idp().await;
        idp.set_issuer_in_doc("https://impostor.example");
        let p = oidc_policy(tokens(vec![token_issuer(&idp.issuer, &idp.ca_pem)]), None);
        let task = reconcile(p, &ctx).await;
        api.list_ingresses().await;
        let status = api.patch_status().await;
        let event = api.event().await;
        task.await.unwrap().unwrap();
        api.expect_no_more().await;

        let ready = &status["conditions"][0];
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "InvalidIssuer");
        let msg = ready["message"].as_str().unwrap();
        assert!(msg.contains("https://impostor.example"), "{msg}");
        assert_eq!(event["reason"], "InvalidIssuer");
        assert_eq!(
            status["issuers"],
            json!([{"issuer": idp.issuer, "keys": 0}]),
            "never fetched: no keys, no lastFetched"
        );
        assert_eq!(
            idp.jwks_requests(),
            0,
            "keys of a mismatched issuer are not read"
        );
    }

    #[tokio::test]
    async fn a_key_set_without_usable_keys_is_invalid() {
        let (ctx, mut api, _) = context();
        let idp = idp().await;
        idp.set_mode(Mode::EmptySet);
        let mut issuer = token_issuer(&idp.issuer, &idp.ca_pem);
        issuer["jwksUri"] = json!(idp.jwks_uri());
        let task = reconcile(oidc_policy(tokens(vec![issuer]), None), &ctx).await;
        api.list_ingresses().await;
        let status = api.patch_status().await;
        api.event().await;
        task.await.unwrap().unwrap();
        assert_eq!(status["conditions"][0]["reason"], "InvalidIssuer");
        assert!(
            status["conditions"][0]["message"]
                .as_str()
                .unwrap()
                .contains("no usable signing key")
        );
        assert_eq!(idp.discovery_requests(), 0, "jwksUri skips discovery");
    }

    fn login(idp: &Idp) -> Value {
        json!({"login": {
            "issuer": idp.issuer, "clientId": "inventory",
            "clientSecretRef": {"name": LOGIN_SECRET},
            "sessionSecretRef": {"name": SESSION_SECRET},
            "ca": {"inline": idp.ca_pem}
        }})
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    impl Verifier {
        async fn get_secret(&mut self, name: &str, answer: (StatusCode, Value)) {
            self.answer(
                Method::GET,
                &format!("/api/v1/namespaces/{NS}/secrets/{name}"),
                answer,
            )
            .await;
        }
    }

    #[tokio::test]
    async fn login_without_its_session_secret_is_not_ready_until_it_exists() {
        let (ctx, mut api, _) = context();
        let idp = idp().await;
        let client_secret = secret(
            LOGIN_SECRET,
            json!({}),
            json!({}),
            json!({"client-secret": b64("s3cr3t-value")}),
        );
        let task = reconcile(oidc_policy(login(&idp), None), &ctx).await;
        api.get_secret(LOGIN_SECRET, (StatusCode::OK, client_secret.clone()))
            .await;
        api.get_secret(SESSION_SECRET, not_found("secrets", SESSION_SECRET))
            .await;
        api.list_ingresses().await;
        let status = api.patch_status().await;
        let event = api.event().await;
        task.await.unwrap().unwrap();
        api.expect_no_more().await;

        let ready = &status["conditions"][0];
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "SecretNotFound");
        let msg = ready["message"].as_str().unwrap();
        assert!(
            msg.contains("spec.login.sessionSecretRef") && msg.contains(SESSION_SECRET),
            "{msg}"
        );
        assert_eq!(event["reason"], "SecretNotFound");
        assert_eq!(
            status["issuers"][0]["keys"], 2,
            "the issuer is still checked"
        );

        // Creating the Secret reaches the policy through the watch...
        let p = Arc::new(oidc_policy(login(&idp), Some(status.clone())));
        let none = std::collections::BTreeMap::new();
        let hits = super::super::policies_for_source(
            std::slice::from_ref(&p),
            super::super::SourceKind::Secret,
            NS,
            SESSION_SECRET,
            &none,
        );
        assert_eq!(hits.len(), 1, "the session Secret is watched");
        // ...and makes it Ready.
        let task = reconcile(oidc_policy(login(&idp), Some(status)), &ctx).await;
        api.get_secret(LOGIN_SECRET, (StatusCode::OK, client_secret))
            .await;
        api.get_secret(
            SESSION_SECRET,
            (
                StatusCode::OK,
                secret(
                    SESSION_SECRET,
                    json!({}),
                    json!({}),
                    json!({"k1": b64(&"x".repeat(32))}),
                ),
            ),
        )
        .await;
        api.list_ingresses().await;
        let fixed = api.patch_status().await;
        task.await.unwrap().unwrap();
        api.expect_no_more().await;
        assert_eq!(fixed["conditions"][0]["status"], "True", "{fixed}");
        assert_no_bundle_write(&api);
    }

    fn assert_no_bundle_write(api: &Verifier) {
        assert!(
            !api.seen.iter().any(|r| r.starts_with("PATCH /api/v1")),
            "{:?}",
            api.seen
        );
    }

    #[tokio::test]
    async fn a_client_secret_without_its_key_names_the_key_not_the_value() {
        let (ctx, mut api, _) = context();
        let idp = idp().await;
        let task = reconcile(oidc_policy(login(&idp), None), &ctx).await;
        api.get_secret(
            LOGIN_SECRET,
            (
                StatusCode::OK,
                secret(
                    LOGIN_SECRET,
                    json!({}),
                    json!({}),
                    json!({"secret": b64("s3cr3t-value")}),
                ),
            ),
        )
        .await;
        api.get_secret(
            SESSION_SECRET,
            (
                StatusCode::OK,
                secret(
                    SESSION_SECRET,
                    json!({}),
                    json!({}),
                    json!({"k1": b64(&"x".repeat(32))}),
                ),
            ),
        )
        .await;
        api.list_ingresses().await;
        let status = api.patch_status().await;
        api.event().await;
        task.await.unwrap().unwrap();
        let msg = status["conditions"][0]["message"].as_str().unwrap();
        assert_eq!(status["conditions"][0]["reason"], "SecretNotFound");
        assert!(
            msg.contains("\"client-secret\"") && msg.contains(LOGIN_SECRET),
            "{msg}"
        );
        assert!(!msg.contains("s3cr3t"), "{msg}");
    }

    #[tokio::test]
    async fn anchors_with_an_unreachable_issuer_still_write_the_bundle() {
        let (ctx, mut api, _) = context();
        let ca = ca_pem("Corp Clients CA");
        let issuer = dead_issuer().await;
        let p = oidc_policy(
            json!({
                "trustAnchors": [{"secretRef": {"name": "corp-ca"}}],
                "tokens": {"issuers": [{"issuer": issuer, "audiences": ["inventory"]}]}
            }),
            None,
        );
        let task = reconcile(p, &ctx).await;
        api.get_source((StatusCode::OK, source_secret(&ca))).await;
        api.get_target(not_found("secrets", TARGET)).await;
        let applied = api.apply_target().await;
        api.list_ingresses().await;
        let status = api.patch_status().await;
        let written = api.event().await;
        let warning = api.event().await;
        task.await.unwrap().unwrap();
        api.expect_no_more().await;

        assert_eq!(decode(&applied["data"], "ca.crt").trim(), ca.trim());
        assert_eq!(written["reason"], "BundleUpdated");
        assert_eq!(status["bundle"]["certificates"], 1, "{status}");
        assert_eq!(status["conditions"][0]["status"], "False");
        assert_eq!(status["conditions"][0]["reason"], "IssuerUnreachable");
        assert_eq!(warning["reason"], "IssuerUnreachable");
        assert_eq!(warning["type"], "Warning");
    }

    #[tokio::test]
    async fn dropping_the_anchors_clears_status_bundle() {
        let (ctx, mut api, _) = context();
        let idp = idp().await;
        let before = json!({
            "boundIngresses": [],
            "bundle": {"secretName": TARGET, "certificates": 1, "crls": 0}
        });
        let p = oidc_policy(
            tokens(vec![token_issuer(&idp.issuer, &idp.ca_pem)]),
            Some(before),
        );
        let task = reconcile(p, &ctx).await;
        api.list_ingresses().await;
        let status = api.patch_status().await;
        task.await.unwrap().unwrap();
        assert!(
            status.get("bundle").is_some_and(Value::is_null),
            "a merge patch needs null to remove the field: {status}"
        );
    }
}
