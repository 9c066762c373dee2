//! Table tests of the admission core: every rule, both directions.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{Value, json};

use super::*;
use crate::clientauth::ClientAuthPolicy;
use crate::policy::{Enforcement, IngressTlsPolicy};

fn ing(v: Value) -> Ingress {
    serde_json::from_value(v).expect("test Ingress must decode")
}

/// An Ingress with the given rule hosts and TLS entries.
fn ingress(rule_hosts: &[&str], tls: Value) -> Ingress {
    let rules: Vec<Value> = rule_hosts
        .iter()
        .map(|h| json!({"host": h, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}))
        .collect();
    let mut v = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "namespace": "team-a"}, "spec": {"rules": rules}});
    if !tls.is_null() {
        v["spec"]["tls"] = tls;
    }
    ing(v)
}

struct World {
    policy: IngressTlsPolicy,
    known: PolicyIndex,
    ns_labels: Option<BTreeMap<String, String>>,
}

impl World {
    fn new(policy_yaml: &str) -> Self {
        Self {
            policy: IngressTlsPolicy::from_yaml("test", policy_yaml).expect("test policy"),
            known: PolicyIndex::default(),
            ns_labels: None,
        }
    }

    fn with_policies(mut self, policies: &[ClientAuthPolicy]) -> Self {
        self.known = PolicyIndex::new(policies);
        self
    }

    fn selector(&self) -> Option<Selector> {
        self.policy
            .exemptions
            .namespace_selector
            .as_ref()
            .map(|s| Selector::compile(s).expect("valid selector"))
    }

    fn validate(&self, i: &Ingress) -> Verdict {
        let sel = self.selector();
        let ctx = Context {
            policy: &self.policy,
            namespace_exemption: sel.as_ref(),
            known: &self.known,
            namespace_labels: self.ns_labels.as_ref(),
        };
        both_ways(i, |r| validate(r, &ctx))
    }

    fn mutate(&self, i: &Ingress) -> Mutation {
        let sel = self.selector();
        let ctx = Context {
            policy: &self.policy,
            namespace_exemption: sel.as_ref(),
            known: &self.known,
            namespace_labels: self.ns_labels.as_ref(),
        };
        both_ways(i, |r| mutate(r, &ctx))
    }

    /// Mutates, applies the patch, and checks that a second pass is empty
    /// (the API server may call a mutating webhook twice).
    fn mutate_applied(&self, i: &Ingress) -> (Ingress, Mutation) {
        let m = self.mutate(i);
        let mut doc = serde_json::to_value(i).unwrap();
        json_patch::patch(&mut doc, &m.patch).expect("patch must apply");
        let out = ing(doc);
        let again = self.mutate(&out);
        assert!(
            again.patch.0.is_empty(),
            "second pass must yield no patch, got {}",
            serde_json::to_string(&again.patch).unwrap()
        );
        (out, m)
    }
}

fn validate_update(w: &World, old: &Ingress, new: &Ingress) -> Verdict {
    let sel = w.selector();
    let ctx = Context {
        policy: &w.policy,
        namespace_exemption: sel.as_ref(),
        known: &w.known,
        namespace_labels: None,
    };
    let (old_json, new_json) = (json_of(old), json_of(new));
    let typed = validate(
        &Review {
            ingress: new.into(),
            old: Some(old.into()),
            namespace: "team-a",
        },
        &ctx,
    );
    let decoded = validate(
        &Review {
            ingress: serde_json::from_str(&new_json).unwrap(),
            old: Some(serde_json::from_str(&old_json).unwrap()),
            namespace: "team-a",
        },
        &ctx,
    );
    assert_eq!(typed, decoded, "typed and decoded views must agree");
    typed
}

fn json_of(i: &Ingress) -> String {
    serde_json::to_string(i).unwrap()
}

/// Runs `f` on the view of the typed Ingress (what `check` does) and on the
/// view decoded from its JSON (what the webhook does), and insists they
/// agree, so every table test covers both.
fn both_ways<T: PartialEq + std::fmt::Debug>(i: &Ingress, f: impl Fn(&Review) -> T) -> T {
    let namespace = i.metadata.namespace.as_deref().unwrap_or("team-a");
    let typed = f(&Review {
        ingress: i.into(),
        old: None,
        namespace,
    });
    let json = json_of(i);
    let decoded = f(&Review {
        ingress: serde_json::from_str(&json).expect("the JSON of an Ingress decodes"),
        old: None,
        namespace,
    });
    assert_eq!(typed, decoded, "typed and decoded views must agree");
    typed
}

fn fields(v: &Verdict) -> Vec<&str> {
    v.violations.iter().map(|x| x.field.as_str()).collect()
}

fn policy(name: &str, ns: &str, spec: Value) -> ClientAuthPolicy {
    serde_json::from_value(
        json!({"apiVersion": "tlsward.io/v1alpha1", "kind": "ClientAuthPolicy",
        "metadata": {"name": name, "namespace": ns}, "spec": spec}),
    )
    .expect("test policy must decode")
}

fn annotations_of(i: &Ingress) -> BTreeMap<String, String> {
    i.metadata.annotations.clone().unwrap_or_default()
}

#[test]
fn coverage_table() {
    let w = World::new("");
    // (rule hosts, tls hosts, allowed)
    let cases: &[(&[&str], &[&str], bool)] = &[
        (&["a.example.com"], &["a.example.com"], true),
        (&["a.example.com"], &["*.example.com"], true),
        (&["a.b.example.com"], &["*.example.com"], false),
        (&["example.com"], &["*.example.com"], false),
        (&["*.example.com"], &["*.example.com"], true),
        (&["*.example.com"], &["a.example.com"], false),
        (&["A.Example.COM"], &["a.example.com"], true),
        (&["a.example.com"], &["A.EXAMPLE.com"], true),
        (&["a.example.com."], &["a.example.com"], true),
        (&["xn--bcher-kva.example"], &["xn--bcher-kva.example"], true),
        (&["xn--bcher-kva.example"], &["*.example"], true),
        (
            &["a.example.com", "b.example.com"],
            &["a.example.com"],
            false,
        ),
        (
            &["a.example.com", "b.example.com"],
            &["a.example.com", "b.example.com"],
            true,
        ),
    ];
    for (rules, tls_hosts, allowed) in cases {
        let i = ingress(
            rules,
            json!([{"hosts": tls_hosts, "secretName": "shop-tls"}]),
        );
        let v = w.validate(&i);
        assert_eq!(
            v.allowed,
            *allowed,
            "rules {rules:?} tls {tls_hosts:?}: {}",
            v.message()
        );
    }
}

#[test]
fn uncovered_host_message_names_field_host_and_fix() {
    let w = World::new("");
    let i = ingress(
        &["shop.example.com", "inventory.foocorp.com"],
        json!([{"hosts": ["shop.example.com"], "secretName": "shop-tls"}]),
    );
    let v = w.validate(&i);
    assert!(!v.allowed);
    assert_eq!(
        v.message(),
        r#"spec.rules[1].host "inventory.foocorp.com" is not covered by any spec.tls[].hosts entry: add it to the hosts of a spec.tls entry that has a secretName"#
    );
}

#[test]
fn missing_tls_suggests_an_entry() {
    let v = World::new("").validate(&ingress(&["a.example.com"], Value::Null));
    assert!(!v.allowed);
    assert_eq!(fields(&v), ["spec.rules[0].host"]);
    assert!(
        v.message()
            .contains(r#"add spec.tls: [{hosts: ["a.example.com"], secretName: shop-tls}]"#),
        "{}",
        v.message()
    );
}

#[test]
fn empty_tls_entry_is_denied_on_both_fields() {
    let v = World::new("").validate(&ingress(&["a.example.com"], json!([{}])));
    assert!(!v.allowed);
    assert_eq!(
        fields(&v),
        [
            "spec.tls[0].secretName",
            "spec.tls[0].hosts",
            "spec.rules[0].host"
        ]
    );
}

#[test]
fn host_listed_in_entry_without_secret_explains_why() {
    let v = World::new("").validate(&ingress(
        &["a.example.com"],
        json!([{"hosts": ["a.example.com"]}]),
    ));
    assert!(!v.allowed);
    assert!(
        v.violations[1]
            .message
            .contains("spec.tls[0] has no secretName"),
        "{}",
        v.message()
    );
}

#[test]
fn secret_name_must_be_a_valid_secret_name() {
    for bad in ["Shop_TLS", "-shop", "shop-"] {
        let v = World::new("").validate(&ingress(
            &["a.example.com"],
            json!([{"hosts": ["a.example.com"], "secretName": bad}]),
        ));
        assert!(!v.allowed, "{bad}");
        assert_eq!(v.violations[0].field, "spec.tls[0].secretName", "{bad}");
        assert!(v.violations[0].message.contains("not a valid Secret name"));
    }
}

#[test]
fn duplicate_secret_name_is_denied() {
    let v = World::new("").validate(&ingress(
        &["a.example.com", "b.example.com"],
        json!([{"hosts": ["a.example.com"], "secretName": "shared"},
               {"hosts": ["b.example.com"], "secretName": "shared"}]),
    ));
    assert!(!v.allowed);
    assert_eq!(fields(&v), ["spec.tls[1].secretName"]);
    assert!(v.violations[0].message.contains("also used by spec.tls[0]"));
}

#[test]
fn many_tls_entries_are_checked_as_a_few_are() {
    // Past 16 names the index switches from a scan to a hash map.
    let hosts: Vec<String> = (0..40).map(|i| format!("h{i}.example.com")).collect();
    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let mut tls: Vec<Value> = (0..40)
        .map(|i| json!({"hosts": [format!("H{i}.example.com.")], "secretName": format!("s{i}")}))
        .collect();
    let w = World::new("");
    assert!(w.validate(&ingress(&names, json!(tls.clone()))).allowed);

    // A Secret reused after the switch, and a host covered by no entry.
    tls[35]["secretName"] = json!("s2");
    tls[39]["hosts"] = json!(["other.example.com"]);
    let v = w.validate(&ingress(&names, json!(tls)));
    assert_eq!(
        fields(&v),
        ["spec.tls[35].secretName", "spec.rules[39].host"]
    );
    assert!(v.violations[0].message.contains("also used by spec.tls[2]"));
}

#[test]
fn unicode_host_gets_its_punycode_form() {
    let v = World::new("").validate(&ingress(
        &["bücher.example"],
        json!([{"hosts": ["bücher.example"], "secretName": "b-tls"}]),
    ));
    assert!(!v.allowed);
    assert_eq!(fields(&v), ["spec.tls[0].hosts[0]", "spec.rules[0].host"]);
    assert!(
        v.message().contains(r#""xn--bcher-kva.example""#),
        "{}",
        v.message()
    );
}

#[test]
fn catch_all_rule_and_default_backend() {
    let catch_all_rule = ing(json!({"metadata": {"name": "c", "namespace": "team-a"},
        "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}));
    let empty_host = ingress(&[""], Value::Null);
    let backend_only = ing(json!({"metadata": {"name": "d", "namespace": "team-a"},
        "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}}));
    let deny = World::new("");
    let allow = World::new("allowCatchAll: true\n");
    for (i, field) in [
        (&catch_all_rule, "spec.rules[0].host"),
        (&empty_host, "spec.rules[0].host"),
        (&backend_only, "spec.defaultBackend"),
    ] {
        let v = deny.validate(i);
        assert!(!v.allowed);
        assert_eq!(fields(&v), [field]);
        assert!(allow.validate(i).allowed, "{}", allow.validate(i).message());
    }
}

#[test]
fn hostless_tls_entry_is_a_default_certificate_only_with_catch_all() {
    let i = ingress(&[""], json!([{"secretName": "default-tls"}]));
    assert!(!World::new("").validate(&i).allowed);
    assert!(World::new("allowCatchAll: true").validate(&i).allowed);
}

#[test]
fn empty_and_missing_fields_do_not_panic() {
    let w = World::new("");
    for v in [
        json!({}),
        json!({"metadata": {}}),
        json!({"metadata": {"name": "x"}, "spec": {}}),
        json!({"metadata": {"name": "x"}, "spec": {"rules": [], "tls": []}}),
        json!({"metadata": {"name": "x", "annotations": {}}, "spec": {"tls": [{"hosts": []}]}}),
    ] {
        let i = ing(v.clone());
        let _ = w.mutate_applied(&i);
        let verdict = w.validate(&i);
        // Nothing is served without rules or a default backend; only an
        // explicitly broken TLS entry is reported.
        let broken_tls = v["spec"]["tls"].as_array().is_some_and(|a| !a.is_empty());
        assert_eq!(verdict.allowed, !broken_tls, "{v}: {}", verdict.message());
    }
}

#[test]
fn exemptions() {
    let uncovered = ingress(&["a.example.com"], Value::Null);
    let by_name = World::new("exemptions: {namespaces: [team-a]}");
    assert!(by_name.validate(&uncovered).exempt.is_some());
    assert!(by_name.validate(&uncovered).allowed);
    assert!(by_name.mutate(&uncovered).patch.0.is_empty());

    let mut by_label =
        World::new("exemptions: {namespaceSelector: {matchLabels: {legacy: 'true'}}}");
    assert!(
        !by_label.validate(&uncovered).allowed,
        "labels unknown: not exempt"
    );
    by_label.ns_labels = Some(BTreeMap::from([("legacy".into(), "true".into())]));
    assert!(by_label.validate(&uncovered).allowed);
    by_label.ns_labels = Some(BTreeMap::from([("legacy".into(), "false".into())]));
    assert!(!by_label.validate(&uncovered).allowed);

    let by_class = World::new("exemptions: {ingressClasses: [internal]}");
    let mut classed = uncovered.clone();
    classed.spec.as_mut().unwrap().ingress_class_name = Some("internal".into());
    assert!(by_class.validate(&classed).allowed);
    let mut legacy = uncovered.clone();
    legacy.metadata.annotations = Some(BTreeMap::from([(
        "kubernetes.io/ingress.class".into(),
        "internal".into(),
    )]));
    assert!(by_class.validate(&legacy).allowed);
    assert!(!by_class.validate(&uncovered).allowed);

    let mut self_exempt = uncovered.clone();
    self_exempt.metadata.annotations =
        Some(BTreeMap::from([(EXEMPT_ANNOTATION.into(), "true".into())]));
    assert!(
        !World::new("").validate(&self_exempt).allowed,
        "a tenant's own annotation is ignored by default"
    );
    assert!(
        World::new("exemptions: {allowExemptAnnotation: true}")
            .validate(&self_exempt)
            .allowed
    );
}

#[test]
fn deleting_object_is_never_blocked() {
    let mut i = ingress(&["a.example.com"], Value::Null);
    i.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-01-01T00:00:00Z".parse().unwrap(),
    ));
    assert!(World::new("").validate(&i).allowed);
}

/// `check` prints the reason (`PASS ns/name (exempt: ...)`) and its JSON
/// report carries it as a string.
#[test]
fn exemption_reasons_name_what_exempts_the_ingress() {
    let uncovered = ingress(&["a.example.com"], Value::Null);
    let reason = |w: &World, i: &Ingress| {
        let v = w.validate(i);
        let json = serde_json::to_value(&v).unwrap()["exempt"].clone();
        let text = v.exempt.map(|e| e.to_string());
        assert_eq!(json.as_str(), text.as_deref(), "JSON and text agree");
        text.unwrap_or_default()
    };

    let mut deleted = uncovered.clone();
    deleted.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ));
    assert_eq!(
        reason(&World::new(""), &deleted),
        "the Ingress is being deleted"
    );
    assert_eq!(
        reason(
            &World::new("exemptions: {namespaces: [team-a]}"),
            &uncovered
        ),
        r#"namespace "team-a" is exempt"#
    );
    let mut by_label =
        World::new("exemptions: {namespaceSelector: {matchLabels: {legacy: 'true'}}}");
    by_label.ns_labels = Some(BTreeMap::from([("legacy".into(), "true".into())]));
    assert_eq!(
        reason(&by_label, &uncovered),
        r#"namespace "team-a" matches exemptions.namespaceSelector"#
    );
    let mut classed = uncovered.clone();
    classed.spec.as_mut().unwrap().ingress_class_name = Some("internal".into());
    assert_eq!(
        reason(
            &World::new("exemptions: {ingressClasses: [internal]}"),
            &classed
        ),
        r#"ingress class "internal" is exempt"#
    );
    let mut annotated = uncovered.clone();
    annotated.metadata.annotations =
        Some(BTreeMap::from([(EXEMPT_ANNOTATION.into(), "true".into())]));
    assert_eq!(
        reason(
            &World::new("exemptions: {allowExemptAnnotation: true}"),
            &annotated
        ),
        "annotated tlsward.io/exempt=true"
    );
    assert_eq!(reason(&World::new(""), &uncovered), "", "not exempt");
}

#[test]
fn enforcement_modes() {
    let i = ingress(&["a.example.com"], Value::Null);
    let deny = World::new("enforcement: Deny").validate(&i);
    assert!(!deny.allowed && deny.warnings.is_empty());

    let warn = World::new("enforcement: Warn").validate(&i);
    assert!(warn.allowed);
    assert_eq!(warn.warnings, vec![warn.violations[0].to_string()]);

    let dry = World::new("enforcement: DryRun").validate(&i);
    assert!(dry.allowed && dry.warnings.is_empty());
    assert_eq!(
        dry.violations.len(),
        1,
        "violations are kept for the audit log"
    );
    assert_eq!(World::new("").policy.enforcement, Enforcement::Deny);
}

#[test]
fn cert_manager_conflicts_are_denied() {
    let mut i = ingress(
        &["a.example.com"],
        json!([{"hosts": ["a.example.com"], "secretName": "a-tls"}]),
    );
    i.metadata.annotations = Some(BTreeMap::from([
        (CM_CLUSTER_ISSUER.into(), "le".into()),
        (CM_ISSUER_KIND.into(), "AWSPCAClusterIssuer".into()),
    ]));
    let v = World::new("").validate(&i);
    assert!(!v.allowed);
    assert!(
        v.message()
            .contains("cannot be combined with cert-manager.io/issuer-kind")
    );
}

const CLUSTER_ISSUER: &str = "certManager: {issuer: {name: letsencrypt-prod}}";

#[test]
fn injects_cluster_issuer_with_json_pointer_escaping() {
    let w = World::new(CLUSTER_ISSUER);
    let mut i = ingress(
        &["a.example.com"],
        json!([{"hosts": ["a.example.com"], "secretName": "a-tls"}]),
    );
    i.metadata.annotations = Some(BTreeMap::from([("team".into(), "a".into())]));
    let m = w.mutate(&i);
    assert_eq!(
        serde_json::to_value(&m.patch).unwrap(),
        json!([{"op": "add", "path": "/metadata/annotations/cert-manager.io~1cluster-issuer", "value": "letsencrypt-prod"}])
    );
    let (out, _) = w.mutate_applied(&i);
    assert_eq!(annotations_of(&out)[CM_CLUSTER_ISSUER], "letsencrypt-prod");
    assert_eq!(annotations_of(&out)["team"], "a");
}

#[test]
fn injects_whole_annotation_map_when_absent() {
    let w = World::new(CLUSTER_ISSUER);
    let i = ingress(
        &["a.example.com"],
        json!([{"hosts": ["a.example.com"], "secretName": "a-tls"}]),
    );
    assert_eq!(
        serde_json::to_value(&w.mutate(&i).patch).unwrap(),
        json!([{"op": "add", "path": "/metadata/annotations", "value": {CM_CLUSTER_ISSUER: "letsencrypt-prod"}}])
    );
}

#[test]
fn issuer_kinds_follow_cert_manager_rules() {
    let tls = json!([{"hosts": ["a.example.com"], "secretName": "a-tls"}]);
    let cases = [
        (
            "certManager: {issuer: {name: ca, kind: Issuer}}",
            vec![(CM_ISSUER, "ca")],
        ),
        (
            "certManager: {issuer: {name: pca, kind: AWSPCAClusterIssuer, group: awspca.cert-manager.io}}",
            vec![
                (CM_ISSUER, "pca"),
                (CM_ISSUER_GROUP, "awspca.cert-manager.io"),
                (CM_ISSUER_KIND, "AWSPCAClusterIssuer"),
            ],
        ),
    ];
    for (yaml, want) in cases {
        let w = World::new(yaml);
        let (out, _) = w.mutate_applied(&ingress(&["a.example.com"], tls.clone()));
        let got = annotations_of(&out);
        let want: BTreeMap<String, String> = want
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want, "{yaml}");
        assert!(
            !got.contains_key(CM_CLUSTER_ISSUER),
            "never cluster-issuer with issuer-kind"
        );
        assert!(w.validate(&out).allowed);
    }
}

#[test]
fn users_issuer_choice_is_never_overridden() {
    let w = World::new(CLUSTER_ISSUER);
    for (k, v) in [
        (CM_ISSUER, "mine"),
        (CM_CLUSTER_ISSUER, "mine"),
        (TLS_ACME, "true"),
        (TLS_ACME, "false"),
        (CM_ISSUER_KIND, "Issuer"),
    ] {
        let mut i = ingress(
            &["a.example.com"],
            json!([{"hosts": ["a.example.com"], "secretName": "a-tls"}]),
        );
        i.metadata.annotations = Some(BTreeMap::from([(k.to_string(), v.to_string())]));
        assert!(w.mutate(&i).patch.0.is_empty(), "{k}={v}");
    }
}

#[test]
fn no_issuer_without_tls() {
    let w = World::new(CLUSTER_ISSUER);
    assert!(
        w.mutate(&ingress(&["a.example.com"], Value::Null))
            .patch
            .0
            .is_empty()
    );
    assert!(
        w.mutate(&ingress(&["a.example.com"], json!([{}])))
            .patch
            .0
            .is_empty()
    );
}

#[test]
fn auto_tls_adds_entries_and_issuer() {
    let w = World::new(&format!("autoTLS: {{enabled: true}}\n{CLUSTER_ISSUER}"));
    let (out, m) = w.mutate_applied(&ingress(&["A.example.com", "b.example.com"], Value::Null));
    let tls = out.spec.as_ref().unwrap().tls.clone().unwrap();
    assert_eq!(tls.len(), 1);
    assert_eq!(tls[0].secret_name.as_deref(), Some("shop-tls"));
    assert_eq!(
        tls[0].hosts.clone().unwrap(),
        ["a.example.com", "b.example.com"]
    );
    assert_eq!(annotations_of(&out)[CM_CLUSTER_ISSUER], "letsencrypt-prod");
    assert!(m.warnings[0].starts_with("autoTLS: added"));
    assert!(w.validate(&out).allowed);

    // An existing entry with the same Secret is extended, others are kept.
    let (out, _) = w.mutate_applied(&ingress(
        &["a.example.com", "b.example.com", "c.example.com"],
        json!([{"hosts": ["a.example.com"], "secretName": "own"},
               {"hosts": ["b.example.com"], "secretName": "shop-tls"}]),
    ));
    let tls = out.spec.as_ref().unwrap().tls.clone().unwrap();
    assert_eq!(tls.len(), 2);
    assert_eq!(
        tls[1].hosts.clone().unwrap(),
        ["b.example.com", "c.example.com"]
    );
    assert!(w.validate(&out).allowed);

    // A separate entry is appended when none uses the generated name.
    let (out, _) = w.mutate_applied(&ingress(
        &["a.example.com", "b.example.com"],
        json!([{"hosts": ["a.example.com"], "secretName": "own"}]),
    ));
    assert_eq!(out.spec.as_ref().unwrap().tls.as_ref().unwrap().len(), 2);
    assert!(w.validate(&out).allowed);
}

#[test]
fn auto_tls_needs_a_name() {
    let w = World::new("autoTLS: {enabled: true}");
    let mut i = ingress(&["a.example.com"], Value::Null);
    i.metadata.name = None;
    i.metadata.generate_name = Some("shop-".into());
    let m = w.mutate(&i);
    assert!(m.patch.0.is_empty());
    assert!(m.warnings[0].contains("generateName"));
}

#[test]
fn auto_tls_secret_name_stays_valid() {
    assert_eq!(auto_tls_secret_name("shop"), "shop-tls");
    let long = format!("{}.{}", "a".repeat(200), "b".repeat(52));
    let name = auto_tls_secret_name(&long);
    assert!(name.len() <= 253);
    assert!(hosts::is_dns1123_subdomain(&name), "{name}");
    // Not yet validated by the API server: must not panic on UTF-8.
    let odd = "ü".repeat(200);
    assert!(auto_tls_secret_name(&odd).ends_with("-tls"));
    let w = World::new("autoTLS: {enabled: true}");
    let mut i = ingress(&["a.example.com"], Value::Null);
    i.metadata.name = Some(odd);
    let _ = w.mutate(&i);
    assert!(!w.validate(&i).allowed);
}

fn require_policy() -> ClientAuthPolicy {
    policy(
        "inventory-clients",
        "team-a",
        json!({"mode": "Require", "verifyDepth": 2, "trustAnchors": [{"inline": "x"}],
               "ingressSelector": {"matchLabels": {"app": "inventory"}}}),
    )
}

fn nginx_bound(extra: &[(&str, &str)]) -> Ingress {
    let mut i = ingress(
        &["a.example.com"],
        json!([{"hosts": ["a.example.com"], "secretName": "a-tls"}]),
    );
    i.spec.as_mut().unwrap().ingress_class_name = Some("nginx".into());
    let mut ann = BTreeMap::from([(
        CLIENT_AUTH_ANNOTATION.to_string(),
        "inventory-clients".to_string(),
    )]);
    for (k, v) in extra {
        ann.insert(k.to_string(), v.to_string());
    }
    i.metadata.annotations = Some(ann);
    i
}

#[test]
fn binding_writes_nginx_annotations() {
    let w = World::new("").with_policies(&[require_policy()]);
    let (out, m) = w.mutate_applied(&nginx_bound(&[]));
    let a = annotations_of(&out);
    assert_eq!(a[NGINX_AUTH_SECRET], "team-a/inventory-clients-ca");
    assert_eq!(a[NGINX_VERIFY_CLIENT], "on");
    assert_eq!(a[NGINX_VERIFY_DEPTH], "2");
    assert!(m.warnings.is_empty());
    assert!(w.validate(&out).allowed);
}

#[test]
fn tampered_nginx_annotation_is_restored_with_a_warning() {
    let w = World::new("").with_policies(&[require_policy()]);
    let (out, m) = w.mutate_applied(&nginx_bound(&[(NGINX_VERIFY_CLIENT, "off")]));
    assert_eq!(annotations_of(&out)[NGINX_VERIFY_CLIENT], "on");
    assert!(
        m.warnings[0].contains(r#"replaced "off" with "on""#),
        "{:?}",
        m.warnings
    );
}

#[test]
fn optional_mode_and_custom_target() {
    let p = policy(
        "opt",
        "team-a",
        json!({"mode": "Optional", "trustAnchors": [{"inline": "x"}], "target": {"secretName": "opt-bundle"}}),
    );
    let w = World::new("").with_policies(&[p]);
    let mut i = nginx_bound(&[]);
    i.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(CLIENT_AUTH_ANNOTATION.into(), "opt".into());
    let (out, _) = w.mutate_applied(&i);
    let a = annotations_of(&out);
    assert_eq!(a[NGINX_VERIFY_CLIENT], "optional");
    assert_eq!(a[NGINX_AUTH_SECRET], "team-a/opt-bundle");
    assert_eq!(a[NGINX_VERIFY_DEPTH], "1");
}

#[test]
fn a_tokens_only_policy_writes_no_client_certificate_annotations() {
    // No trust anchors means no bundle Secret: pointing ingress-nginx at one
    // would make it refuse every client.
    let p = policy(
        "inventory-clients",
        "team-a",
        json!({"tokens": {"issuers": [{"issuer": "https://idp.example.com", "audiences": ["api"]}]}}),
    );
    let w = World::new("").with_policies(&[p]);
    let (out, _) = w.mutate_applied(&nginx_bound(&[]));
    let a = annotations_of(&out);
    assert!(!a.contains_key(NGINX_AUTH_SECRET), "{a:?}");
    assert!(!a.contains_key(NGINX_VERIFY_CLIENT), "{a:?}");
}

#[test]
fn non_nginx_class_gets_no_nginx_annotations() {
    let w = World::new("").with_policies(&[require_policy()]);
    let mut i = nginx_bound(&[]);
    i.spec.as_mut().unwrap().ingress_class_name = Some("tlsward".into());
    assert!(w.mutate(&i).patch.0.is_empty());
}

#[test]
fn selector_binds_by_annotation() {
    let w = World::new("").with_policies(&[require_policy()]);
    let mut i = ingress(
        &["a.example.com"],
        json!([{"hosts": ["a.example.com"], "secretName": "a-tls"}]),
    );
    i.metadata.labels = Some(BTreeMap::from([("app".into(), "inventory".into())]));
    let (out, _) = w.mutate_applied(&i);
    assert_eq!(
        annotations_of(&out)[CLIENT_AUTH_ANNOTATION],
        "inventory-clients"
    );

    let mut other_ns = i.clone();
    other_ns.metadata.namespace = Some("team-b".into());
    assert!(
        w.mutate(&other_ns).patch.0.is_empty(),
        "selectors are namespaced"
    );
}

#[test]
fn two_selecting_policies_are_ambiguous() {
    let mut second = require_policy();
    second.metadata.name = Some("second".into());
    let w = World::new("").with_policies(&[require_policy(), second]);
    let mut i = ingress(
        &["a.example.com"],
        json!([{"hosts": ["a.example.com"], "secretName": "a-tls"}]),
    );
    i.metadata.labels = Some(BTreeMap::from([("app".into(), "inventory".into())]));
    assert!(w.mutate(&i).patch.0.is_empty());
    let v = w.validate(&i);
    assert!(!v.allowed);
    assert_eq!(fields(&v), ["metadata.labels"]);
    assert!(v.message().contains("inventory-clients, second"));
}

#[test]
fn unknown_or_empty_binding() {
    let w = World::new("");
    let unknown = nginx_bound(&[]);
    let v = w.validate(&unknown);
    assert!(v.allowed);
    assert!(v.warnings[0].contains("does not exist in namespace \"team-a\""));
    assert!(w.mutate(&unknown).patch.0.is_empty());

    let mut empty = nginx_bound(&[]);
    empty
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(CLIENT_AUTH_ANNOTATION.into(), " ".into());
    let v = w.validate(&empty);
    assert!(!v.allowed);
    assert!(v.violations[0].field.contains(CLIENT_AUTH_ANNOTATION));
}

#[test]
fn index_finds_the_one_policy_among_ten_thousand() {
    let mut policies: Vec<ClientAuthPolicy> = (0..10_000)
        .map(|n| {
            policy(
                &format!("p{n}"),
                "team-a",
                json!({"trustAnchors": [{"inline": "x"}], "ingressSelector": {"matchLabels": {"app": format!("app{n}")}}}),
            )
        })
        .collect();
    policies.push(policy(
        "by-expression",
        "team-a",
        json!({"trustAnchors": [{"inline": "x"}], "ingressSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}}),
    ));
    let idx = PolicyIndex::new(&policies);
    assert_eq!(idx.len(), 10_001);
    let labels = BTreeMap::from([("app".to_string(), "app7777".to_string())]);
    assert_eq!(idx.selecting("team-a", &labels), ["p7777"]);
    let labels = BTreeMap::from([
        ("app".to_string(), "app1".to_string()),
        ("tier".to_string(), "web".to_string()),
    ]);
    assert_eq!(idx.selecting("team-a", &labels), ["by-expression", "p1"]);
    assert!(idx.selecting("team-b", &labels).is_empty());
}

#[test]
fn existing_violations_on_update() {
    let legacy = ingress(&["a.example.com"], Value::Null);
    let mut relabelled = legacy.clone();
    relabelled.metadata.labels = Some(BTreeMap::from([("team".into(), "a".into())]));
    let mut worse = relabelled.clone();
    worse.spec.as_mut().unwrap().rules.as_mut().unwrap()[0].host = Some("b.example.com".into());

    let strict = World::new("");
    assert!(
        !validate_update(&strict, &legacy, &relabelled).allowed,
        "off by default"
    );

    let ratchet = World::new("allowExistingViolations: true");
    let v = validate_update(&ratchet, &legacy, &relabelled);
    assert!(v.allowed, "{}", v.message());
    assert!(
        v.warnings[0].contains("already present before this update"),
        "{:?}",
        v.warnings
    );

    let v = validate_update(&ratchet, &legacy, &worse);
    assert!(!v.allowed, "a new violation is still denied");
    assert!(v.message().contains("b.example.com"));
    assert!(
        !ratchet.validate(&legacy).allowed,
        "CREATE is never ratcheted"
    );
}

fn nginx_annotated(class: &str) -> Ingress {
    let mut v = serde_json::to_value(ingress(
        &["shop.example.com"],
        json!([{"hosts": ["shop.example.com"], "secretName": "shop-tls"}]),
    ))
    .expect("encode");
    v["spec"]["ingressClassName"] = json!(class);
    v["metadata"]["annotations"] = json!({
        "nginx.ingress.kubernetes.io/auth-tls-secret": "team-a/ca",
        "nginx.ingress.kubernetes.io/configuration-snippet": "more_set_headers x;",
        "nginx.ingress.kubernetes.io/auth-url": "https://auth.example.com/",
        "nginx.ingress.kubernetes.io/rewrite-targt": "/",
    });
    ing(v)
}

#[test]
fn served_class_gets_one_warning_per_annotation_that_does_not_carry_over() {
    let w = World::new("");
    let v = w.validate(&nginx_annotated("tlsward"));
    assert!(v.allowed, "{v:?}");
    let keys: Vec<&str> = v
        .warnings
        .iter()
        .map(|w| w.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(
        keys,
        [
            "nginx.ingress.kubernetes.io/auth-url",
            "nginx.ingress.kubernetes.io/configuration-snippet",
            "nginx.ingress.kubernetes.io/rewrite-targt",
        ],
        "{:#?}",
        v.warnings
    );
    assert!(
        v.warnings[0].contains("ClientAuthPolicy"),
        "{}",
        v.warnings[0]
    );
    assert!(v.warnings[1].contains("not supported"), "{}", v.warnings[1]);
    assert!(v.warnings[2].contains("unknown"), "{}", v.warnings[2]);
}

#[test]
fn other_classes_are_not_assessed_and_policy_names_the_served_ones() {
    assert!(
        World::new("")
            .validate(&nginx_annotated("nginx"))
            .warnings
            .is_empty()
    );
    let w = World::new("proxyIngressClasses: [edge]\n");
    assert!(w.validate(&nginx_annotated("tlsward")).warnings.is_empty());
    assert_eq!(w.validate(&nginx_annotated("edge")).warnings.len(), 3);
}

#[test]
fn served_ingress_without_annotations_is_assessed_as_carrying_everything_over() {
    let mut v = serde_json::to_value(nginx_annotated("tlsward")).expect("encode");
    v["metadata"]
        .as_object_mut()
        .map(|m| m.remove("annotations"));
    let plain = ing(v);
    let policy = IngressTlsPolicy::default();
    assert_eq!(
        migration_findings(&(&plain).into(), &policy),
        Some(Vec::new())
    );
    let other = nginx_annotated("nginx");
    assert_eq!(migration_findings(&(&other).into(), &policy), None);
}

#[test]
fn exempt_ingress_still_hears_its_annotations_are_ignored() {
    let w = World::new("exemptions: {namespaces: [team-a]}\n");
    let v = w.validate(&nginx_annotated("tlsward"));
    assert!(v.exempt.is_some());
    assert_eq!(v.warnings.len(), 3, "{:#?}", v.warnings);
}
