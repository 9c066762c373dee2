//! What the fuzz targets (`tests/fuzz`) and the property tests need of the
//! crate's internals, and no more: the webhook reader's oracle, which is
//! private where it lives, and the inputs it is run on. Hidden from
//! the documentation; not an API. docs/fuzzing.md says what each target
//! checks.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use k8s_openapi::api::core::v1::Namespace;

use crate::clientauth::ClientAuthPolicy;
use crate::policy::IngressTlsPolicy;
use crate::webhook::Snapshot;
use crate::webhook::review::{Hook, NamespaceLabels};

/// Decides `body` with the hand-written AdmissionReview reader and again
/// with serde alone, and says how the two differ: the reader must read
/// nothing serde refuses, and what it reads must decide the same (same
/// verdict, same response, same patch, same error). `Ok(true)`: the reader
/// read the body and agreed; `Ok(false)`: the reader gave up, so serde
/// decides, and there is nothing to compare.
pub fn review_reader_agrees_with_serde(
    hook: Hook,
    body: &[u8],
    snapshot: &Snapshot,
    namespaces: Option<NamespaceLabels>,
) -> Result<bool, String> {
    crate::webhook::review::reader_agrees_with_serde(hook, body, snapshot, namespaces)
}

/// The kubectl-made Ingresses of `policies/ingresses/` (each file says the
/// `kubectl create ingress ... --dry-run=client` command that made it), as
/// JSON: what the review fuzz target and property test start from.
pub fn sample_ingresses() -> Vec<serde_json::Value> {
    [
        include_str!("../policies/ingresses/allowed/client-auth-bound.yaml"),
        include_str!("../policies/ingresses/allowed/exact-host.yaml"),
        include_str!("../policies/ingresses/allowed/external-issuer.yaml"),
        include_str!("../policies/ingresses/allowed/several-hosts-one-entry.yaml"),
        include_str!("../policies/ingresses/allowed/user-cluster-issuer.yaml"),
        include_str!("../policies/ingresses/allowed/wildcard-one-label.yaml"),
        include_str!("../policies/ingresses/denied/catch-all-rule.yaml"),
        include_str!("../policies/ingresses/denied/cluster-issuer-with-issuer-kind.yaml"),
        include_str!("../policies/ingresses/denied/default-backend-only.yaml"),
        include_str!("../policies/ingresses/denied/duplicate-secret-name.yaml"),
        include_str!("../policies/ingresses/denied/empty-client-auth-annotation.yaml"),
        include_str!("../policies/ingresses/denied/empty-tls-entry.yaml"),
        include_str!("../policies/ingresses/denied/host-not-covered.yaml"),
        include_str!("../policies/ingresses/denied/invalid-secret-name.yaml"),
        include_str!("../policies/ingresses/denied/no-tls.yaml"),
        include_str!("../policies/ingresses/denied/non-ascii-host.yaml"),
        include_str!("../policies/ingresses/denied/tls-without-secret.yaml"),
        include_str!("../policies/ingresses/denied/wildcard-two-labels-deep.yaml"),
    ]
    .iter()
    .flat_map(|text| crate::manifests::parse_text("sample", text).unwrap_or_default())
    .map(|doc| doc.value)
    .collect()
}

/// Webhook snapshots to decide under: the default policy, the shipped
/// `policies/ingress-tls.yaml`, and policies that warn, dry-run, inject an
/// issuer, add TLS, allow catch-alls and exempt classes, namespaces and
/// annotations, each with the sample ClientAuthPolicies bound.
pub fn webhook_snapshots() -> &'static [Snapshot] {
    static SNAPSHOTS: OnceLock<Vec<Snapshot>> = OnceLock::new();
    SNAPSHOTS.get_or_init(|| {
        let known: Vec<ClientAuthPolicy> = [
            include_str!("../policies/clientauthpolicies/inventory-clients.yaml"),
            include_str!("../policies/clientauthpolicies/partner-clients.yaml"),
            include_str!("../policies/clientauthpolicies/optional-clients.yaml"),
        ]
        .iter()
        .flat_map(|text| crate::manifests::parse_text("sample", text).unwrap_or_default())
        .filter_map(|doc| serde_json::from_value(doc.value).ok())
        .collect();
        let policies = [
            include_str!("../policies/ingress-tls.yaml"),
            "apiVersion: tlsward.io/v1alpha1\nkind: IngressTLSPolicy\nenforcement: Warn\n\
             allowCatchAll: true\ncertManager: {issuer: {name: letsencrypt}}\n\
             autoTLS: {enabled: true}\n",
            "apiVersion: tlsward.io/v1alpha1\nkind: IngressTLSPolicy\nenforcement: DryRun\n\
             allowExistingViolations: true\n\
             certManager: {issuer: {name: vault, kind: VaultIssuer, group: example.com}}\n\
             exemptions: {namespaces: [kube-system], ingressClasses: [internal],\n  \
             allowExemptAnnotation: true,\n  \
             namespaceSelector: {matchLabels: {tlsward.io/exempt: \"true\"},\n    \
             matchExpressions: [{key: team, operator: In, values: [platform]}]}}\n\
             clientAuth: {nginxIngressClasses: [nginx, nginx-internal]}\n",
        ];
        let mut snapshots = vec![Snapshot::new(IngressTlsPolicy::default(), &[])];
        for text in policies {
            let policy = IngressTlsPolicy::from_yaml("fuzz-policy.yaml", text)
                .expect("the fuzzing policies are valid");
            snapshots.push(Snapshot::new(policy, &known));
        }
        snapshots
    })
}

/// Namespace lookups to decide with: none (no reflector), every namespace
/// unlabelled, or labelled as the exempting selector above asks.
pub fn namespace_lookups() -> [Option<NamespaceLabels<'static>>; 3] {
    fn labelled(_: &str) -> Option<Arc<Namespace>> {
        static NS: OnceLock<Arc<Namespace>> = OnceLock::new();
        Some(
            NS.get_or_init(|| {
                let mut ns = Namespace::default();
                ns.metadata.labels = Some(BTreeMap::from([
                    ("tlsward.io/exempt".to_string(), "true".to_string()),
                    ("team".to_string(), "platform".to_string()),
                ]));
                Arc::new(ns)
            })
            .clone(),
        )
    }
    fn unlabelled(_: &str) -> Option<Arc<Namespace>> {
        Some(Arc::new(Namespace::default()))
    }
    [None, Some(&unlabelled), Some(&labelled)]
}

/// Attribute types a made-up subject may hold, and how RFC 4514 writes
/// them: the usual ones, a second CN under its OID (one subject, two CNs),
/// and an OID without a short name.
fn subject_type(i: usize) -> (rcgen::DnType, &'static str) {
    use rcgen::DnType::{CommonName, CustomDnType, LocalityName, OrganizationName};
    match i % 6 {
        0 => (CommonName, "CN"),
        1 => (OrganizationName, "O"),
        2 => (rcgen::DnType::OrganizationalUnitName, "OU"),
        3 => (LocalityName, "L"),
        4 => (CustomDnType(vec![2, 5, 4, 3]), "CN"),
        _ => (
            CustomDnType(vec![1, 3, 6, 1, 4, 1, 55555, 1]),
            "1.3.6.1.4.1.55555.1",
        ),
    }
}

/// A client certificate made with these subject attributes (type index,
/// value; a type given twice keeps its first) and SANs, read by the proxy
/// (`ClientIdentity::from_der`) and written as `x-forwarded-client-cert`:
/// the header is a valid header value, and an upstream reading it
/// (`identity::read_back`) gets exactly the certificate's hash, subject
/// attributes, URIs and DNS names back, nothing added; or, when a SAN holds
/// what no valid URI or DNS name does, `xfcc()` refuses with that SAN's
/// field and index. SANs that are not ASCII (which rcgen cannot encode)
/// are left out.
pub fn xfcc_reads_back(
    subject: &[(usize, String)],
    uris: &[String],
    dns_names: &[String],
) -> Result<(), String> {
    use crate::proxy::identity::{ClientIdentity, read_back};
    use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};

    static KEY: OnceLock<KeyPair> = OnceLock::new();
    let key = KEY.get_or_init(|| KeyPair::generate().expect("a key"));
    let mut seen = [false; 6];
    let entries: Vec<(usize, &str)> = subject
        .iter()
        .map(|(t, v)| (t % 6, v.as_str()))
        .filter(|(t, _)| !std::mem::replace(&mut seen[*t], true))
        .collect();
    let mut dn = DistinguishedName::new();
    for (t, v) in &entries {
        dn.push(subject_type(*t).0, *v);
    }
    let uris: Vec<&String> = uris.iter().filter(|u| u.is_ascii()).collect();
    let dns_names: Vec<&String> = dns_names.iter().filter(|d| d.is_ascii()).collect();
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    for u in &uris {
        let u = u.as_str().try_into().map_err(|e| format!("{e}"))?;
        params.subject_alt_names.push(SanType::URI(u));
    }
    for d in &dns_names {
        let d = d.as_str().try_into().map_err(|e| format!("{e}"))?;
        params.subject_alt_names.push(SanType::DnsName(d));
    }
    let Ok(cert) = params.self_signed(key) else {
        // Nothing rcgen will sign, nothing to check.
        return Ok(());
    };
    let id = ClientIdentity::from_der(cert.der()).ok_or("the certificate does not parse")?;
    if id.uris.iter().ne(uris.iter().copied()) || id.dns_names.iter().ne(dns_names.iter().copied())
    {
        return Err(format!("SANs read as {:?} {:?}", id.uris, id.dns_names));
    }
    let carriable = |v: &&String| {
        v.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    };
    let refused = uris
        .iter()
        .position(|u| !carriable(u))
        .map(|i| ("URI", i))
        .or_else(|| {
            dns_names
                .iter()
                .position(|d| !carriable(d))
                .map(|i| ("DNS", i))
        });
    let header = match (id.xfcc(), refused) {
        (Ok(header), None) => header,
        (Err(e), Some((field, index))) if (e.field, e.index) == (field, index) => return Ok(()),
        (got, want) => {
            return Err(format!(
                "xfcc() gave {got:?}, expected a refusal of {want:?}"
            ));
        }
    };
    if hyper::header::HeaderValue::from_str(&header).is_err() {
        return Err(format!("{header:?} is not a header value"));
    }
    let pairs = read_back::xfcc_pairs(&header).ok_or(format!("{header:?} does not read back"))?;
    let mut want = vec![
        ("Hash", id.cert_sha256.as_str()),
        ("Subject", id.subject.as_str()),
    ];
    want.extend(uris.iter().map(|u| ("URI", u.as_str())));
    want.extend(dns_names.iter().map(|d| ("DNS", d.as_str())));
    if pairs != want {
        return Err(format!("{header:?} reads back as {pairs:?}"));
    }
    // The subject as the upstream reads it: the certificate's attributes,
    // last first, each value's bytes as they were.
    let rdns = read_back::rfc4514(&id.subject)
        .ok_or(format!("subject {:?} does not read back", id.subject))?;
    let expected: Vec<Vec<read_back::Attribute>> = entries
        .iter()
        .rev()
        .map(|(t, v)| vec![(subject_type(*t).1.to_string(), v.as_bytes().to_vec())])
        .collect();
    if rdns != expected {
        return Err(format!("subject {:?} reads back as {rdns:?}", id.subject));
    }
    Ok(())
}

/// The proxy's Host/`:authority` reader: the host a request is routed by,
/// in normal form, or why it has none.
pub fn request_host<B>(
    req: &hyper::Request<B>,
) -> Result<String, crate::proxy::authority::HostError> {
    crate::proxy::server::request_host(req)
}

/// What is asked of any host `request_host` returns: it is normal (lower
/// case, no trailing dot, normalising it again changes nothing), and it can
/// travel where the proxy puts it: a header value, the authority of a URL.
pub fn check_routed_host(host: &str) -> Result<(), String> {
    use crate::proxy::authority::normalize;
    if host.bytes().any(|b| b.is_ascii_uppercase()) || host.ends_with('.') {
        return Err(format!("{host:?} is not lower case without a trailing dot"));
    }
    if normalize(host).as_deref() != Ok(host) {
        return Err(format!("{host:?} normalises to {:?}", normalize(host)));
    }
    if hyper::header::HeaderValue::from_str(host).is_err() {
        return Err(format!("{host:?} is not a header value"));
    }
    match format!("https://{host}/").parse::<hyper::Uri>() {
        Ok(uri) if uri.host() == Some(host.trim_start_matches('[').trim_end_matches(']')) => {}
        Ok(uri) if uri.authority().map(|a| a.as_str()) == Some(host) => {}
        other => return Err(format!("{host:?} as a URL's authority: {other:?}")),
    }
    Ok(())
}
