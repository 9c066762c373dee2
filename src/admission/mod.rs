//! The admission policy as pure functions: an Ingress and a policy in, a
//! verdict or a JSON patch out. The webhook, `tlsward check` and the
//! benchmarks all call these, so they cannot disagree.

pub mod hosts;
pub mod object;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::networking::v1::Ingress;
use serde::Serialize;
use serde_json::{Value, json};

use crate::clientauth::{Binding, ClientAuthMode, PolicyIndex};
use crate::ingress_nginx::catalogue::{self, Finding};
use crate::labels::{Labels, Selector};
use crate::policy::{CERT_MANAGER_GROUP, Enforcement, IngressTlsPolicy};
use hosts::NameProblem;
pub use object::IngressObject;
use object::{Pairs, Tls};

/// The namespace `kubectl apply` uses for objects that name none; the
/// webhook, `check` and the proxy's directory source agree on it.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Annotation that binds an Ingress to a ClientAuthPolicy in its namespace.
pub const CLIENT_AUTH_ANNOTATION: &str = "tlsward.io/client-auth-policy";
/// Self-service exemption, honoured only when the policy allows it.
pub const EXEMPT_ANNOTATION: &str = "tlsward.io/exempt";
/// Audit annotation carrying violations in `DryRun` mode.
pub const AUDIT_VIOLATIONS_KEY: &str = "violations";

const CM_ISSUER: &str = "cert-manager.io/issuer";
const CM_CLUSTER_ISSUER: &str = "cert-manager.io/cluster-issuer";
const CM_ISSUER_KIND: &str = "cert-manager.io/issuer-kind";
const CM_ISSUER_GROUP: &str = "cert-manager.io/issuer-group";
const TLS_ACME: &str = "kubernetes.io/tls-acme";
const LEGACY_CLASS: &str = "kubernetes.io/ingress.class";
const NGINX_AUTH_SECRET: &str = "nginx.ingress.kubernetes.io/auth-tls-secret";
const NGINX_VERIFY_CLIENT: &str = "nginx.ingress.kubernetes.io/auth-tls-verify-client";
const NGINX_VERIFY_DEPTH: &str = "nginx.ingress.kubernetes.io/auth-tls-verify-depth";

/// Everything admission knows besides the object itself.
pub struct Context<'a> {
    /// The policy file in force.
    pub policy: &'a IngressTlsPolicy,
    /// The compiled `exemptions.namespaceSelector`, if any.
    pub namespace_exemption: Option<&'a Selector>,
    /// ClientAuthPolicies known to the caller.
    pub known: &'a PolicyIndex,
    /// Labels of the Ingress's namespace, when the caller knows them.
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
}

/// The object under review.
pub struct Review<'a> {
    /// The Ingress as it would be stored.
    pub ingress: IngressObject<'a>,
    /// The stored Ingress, on UPDATE.
    pub old: Option<IngressObject<'a>>,
    /// The namespace: the request's, since a new object may not carry one.
    pub namespace: &'a str,
}

/// One broken rule, tied to the field to change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Field path, such as `spec.rules[1].host`.
    pub field: String,
    /// What is wrong and how to fix it; reads as a continuation of `field`.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.field, self.message)
    }
}

/// The outcome of validation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Whether the API server should store the object.
    pub allowed: bool,
    /// Every rule the object breaks, in field order.
    pub violations: Vec<Violation>,
    /// Messages for the user (`kubectl` prints them as `Warning:`).
    pub warnings: Vec<String>,
    /// Why the policy did not apply, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exempt: Option<Exemption>,
}

/// Why the policy does not apply to an Ingress. Shown to people (`check`'s
/// `PASS ns/name (exempt: ...)`, its JSON report) as the sentence
/// [`Display`](std::fmt::Display) writes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exemption {
    /// The Ingress is being deleted: removing a finalizer must never be blocked.
    BeingDeleted,
    /// Its namespace is listed in `exemptions.namespaces`.
    Namespace(String),
    /// Its namespace's labels match `exemptions.namespaceSelector`.
    NamespaceSelector(String),
    /// Its class is listed in `exemptions.ingressClasses`.
    IngressClass(String),
    /// It carries `tlsward.io/exempt: "true"` and the policy honours that.
    Annotation,
}

impl std::fmt::Display for Exemption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exemption::BeingDeleted => f.write_str("the Ingress is being deleted"),
            Exemption::Namespace(ns) => write!(f, "namespace {ns:?} is exempt"),
            Exemption::NamespaceSelector(ns) => {
                write!(f, "namespace {ns:?} matches exemptions.namespaceSelector")
            }
            Exemption::IngressClass(class) => write!(f, "ingress class {class:?} is exempt"),
            Exemption::Annotation => write!(f, "annotated {EXEMPT_ANNOTATION}=true"),
        }
    }
}

/// Reports carry the sentence, as they did when this was a string.
impl Serialize for Exemption {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Verdict {
    /// The denial message: every violation, in order.
    pub fn message(&self) -> String {
        let parts: Vec<String> = self.violations.iter().map(ToString::to_string).collect();
        parts.join("; ")
    }
}

/// The outcome of mutation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mutation {
    /// RFC 6902 operations against the object as received; empty when there
    /// is nothing to change.
    pub patch: Patch,
    /// What was changed or could not be, for the user.
    pub warnings: Vec<String>,
}

fn annotation<'a>(ing: &'a IngressObject, key: &str) -> Option<&'a str> {
    debug_assert!(
        object::is_read_annotation(key),
        "{key} must be in READ_ANNOTATIONS to be decoded"
    );
    ing.metadata.annotations.as_ref()?.get(key)
}

/// The class an Ingress asks for: `spec.ingressClassName`, else the legacy
/// annotation.
pub fn ingress_class(ing: &Ingress) -> Option<&str> {
    class_of(
        ing.spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref()),
        || {
            ing.metadata
                .annotations
                .as_ref()?
                .get(LEGACY_CLASS)
                .map(String::as_str)
        },
    )
}

fn class_of<'a>(
    spec: Option<&'a str>,
    legacy: impl FnOnce() -> Option<&'a str>,
) -> Option<&'a str> {
    spec.or_else(legacy)
}

fn class<'a>(ing: &'a IngressObject) -> Option<&'a str> {
    class_of(
        ing.spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref()),
        || annotation(ing, LEGACY_CLASS),
    )
}

fn tls_entries<'a, 'o>(ing: &'a IngressObject<'o>) -> &'a [Tls<'o>] {
    ing.spec
        .as_ref()
        .and_then(|s| s.tls.as_deref())
        .unwrap_or_default()
}

/// Why the policy does not apply to this object, if it does not.
fn exemption(review: &Review, ctx: &Context) -> Option<Exemption> {
    let ing = &review.ingress;
    if ing.metadata.deletion_timestamp {
        // Finalizer removal on a doomed object must never be blocked.
        return Some(Exemption::BeingDeleted);
    }
    let ex = &ctx.policy.exemptions;
    if ex.namespaces.contains(review.namespace) {
        return Some(Exemption::Namespace(review.namespace.to_string()));
    }
    if let (Some(sel), Some(labels)) = (ctx.namespace_exemption, ctx.namespace_labels)
        && sel.matches(labels)
    {
        return Some(Exemption::NamespaceSelector(review.namespace.to_string()));
    }
    if let Some(class) = class(ing)
        && ex.ingress_classes.contains(class)
    {
        return Some(Exemption::IngressClass(class.to_string()));
    }
    if ex.allow_exempt_annotation && annotation(ing, EXEMPT_ANNOTATION) == Some("true") {
        return Some(Exemption::Annotation);
    }
    None
}

/// Names and the index where each first appeared. An Ingress lists a few
/// names, and scanning a few beats hashing them; past [`Self::SCAN`] names
/// a hash map keeps a huge object linear.
enum FirstIndex<'a> {
    Few(Vec<(std::borrow::Cow<'a, str>, usize)>),
    Many(HashMap<std::borrow::Cow<'a, str>, usize>),
}

impl<'a> FirstIndex<'a> {
    const SCAN: usize = 16;

    fn new() -> Self {
        FirstIndex::Few(Vec::new())
    }

    /// Where `name` first appeared; records `i` if this is the first time.
    fn first(&mut self, name: std::borrow::Cow<'a, str>, i: usize) -> Option<usize> {
        match self {
            FirstIndex::Few(v) => {
                if let Some((_, first)) = v.iter().find(|(n, _)| *n == name) {
                    return Some(*first);
                }
                if v.len() < Self::SCAN {
                    v.push((name, i));
                } else {
                    let mut map: HashMap<_, _> = v.drain(..).collect();
                    map.insert(name, i);
                    *self = FirstIndex::Many(map);
                }
                None
            }
            FirstIndex::Many(map) => match map.entry(name) {
                std::collections::hash_map::Entry::Occupied(e) => Some(*e.get()),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(i);
                    None
                }
            },
        }
    }

    fn contains(&self, name: &str) -> bool {
        match self {
            FirstIndex::Few(v) => v.iter().any(|(n, _)| n == name),
            FirstIndex::Many(map) => map.contains_key(name),
        }
    }
}

/// Where each normalised TLS host is declared, counting only entries that
/// name a Secret: a host in an entry without one gets no certificate.
struct Coverage<'a> {
    hosts: FirstIndex<'a>,
    entries: &'a [Tls<'a>],
}

impl<'a> Coverage<'a> {
    fn of(entries: &'a [Tls<'a>]) -> Self {
        let mut hosts = FirstIndex::new();
        for (i, e) in entries.iter().enumerate() {
            if e.secret_name.as_deref().is_some_and(|s| !s.is_empty()) {
                for h in e.hosts.iter().flatten() {
                    hosts.first(hosts::normalize(h), i);
                }
            }
        }
        Self { hosts, entries }
    }

    fn covers(&self, host: &str) -> bool {
        let h = hosts::normalize(host);
        self.hosts.contains(h.as_ref())
            || hosts::covering_wildcard(&h).is_some_and(|w| self.hosts.contains(w.as_str()))
    }

    /// The first entry that lists `host` but has no Secret, to explain why
    /// it does not count.
    fn listed_without_secret(&self, host: &str) -> Option<usize> {
        let h = hosts::normalize(host);
        self.entries.iter().position(|e| {
            e.secret_name.as_deref().is_none_or(str::is_empty)
                && e.hosts.iter().flatten().any(|t| hosts::normalize(t) == h)
        })
    }
}

fn host_problem(field: String, host: &str, problem: NameProblem) -> Violation {
    let message = match problem {
        NameProblem::NotAscii(Some(ascii)) => {
            format!(
                "{host:?} is not ASCII: write it as {ascii:?} (the punycode form of the name as typed)"
            )
        }
        NameProblem::NotAscii(None) => {
            format!(
                "{host:?} is not ASCII, and its punycode form is not a valid DNS name either: use a valid DNS name"
            )
        }
        NameProblem::Syntax => format!(
            "{host:?} is not a valid DNS name: use lower-case labels of letters, digits and '-', optionally starting with '*.'"
        ),
    };
    Violation { field, message }
}

/// The `secretName` autoTLS would use: `<ingress-name>-tls`, shortened so
/// the result is still a valid Secret name.
pub fn auto_tls_secret_name(ingress_name: &str) -> String {
    // Cut on a character boundary: a mutating webhook sees names before the
    // API server has validated them, so they may hold any UTF-8.
    let mut end = ingress_name.len().min(249);
    while !ingress_name.is_char_boundary(end) {
        end -= 1;
    }
    let stem = ingress_name[..end].trim_end_matches(['-', '.']);
    format!("{stem}-tls")
}

/// All the rules of the policy, as violations. Exemptions are decided by the
/// caller.
fn violations(ing: &IngressObject, namespace: &str, ctx: &Context) -> Vec<Violation> {
    let mut out = Vec::new();
    let spec = ing.spec.as_ref();
    let tls = tls_entries(ing);
    let rules = spec.and_then(|s| s.rules.as_deref()).unwrap_or_default();
    let allow_catch_all = ctx.policy.allow_catch_all;

    let mut first_use = FirstIndex::new();
    for (i, entry) in tls.iter().enumerate() {
        match entry.secret_name.as_deref() {
            None | Some("") => out.push(Violation {
                field: format!("spec.tls[{i}].secretName"),
                message: "is missing: name the kubernetes.io/tls Secret that holds (or, with cert-manager, will hold) the certificate".into(),
            }),
            Some(name) if !hosts::is_dns1123_subdomain(name) => out.push(Violation {
                field: format!("spec.tls[{i}].secretName"),
                message: format!(
                    "{name:?} is not a valid Secret name: use at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
                ),
            }),
            Some(name) => {
                if let Some(first) = first_use.first(name.into(), i) {
                    out.push(Violation {
                        field: format!("spec.tls[{i}].secretName"),
                        message: format!(
                            "{name:?} is also used by spec.tls[{first}]: cert-manager would write two certificates into one Secret; merge the hosts into spec.tls[{first}] or use another secretName"
                        ),
                    });
                }
            }
        }
        let entry_hosts = entry.hosts.as_deref().unwrap_or_default();
        if entry_hosts.is_empty() && !allow_catch_all {
            out.push(Violation {
                field: format!("spec.tls[{i}].hosts"),
                message: "is empty: list the host names this certificate is for (cert-manager issues certificates only for listed hosts)".into(),
            });
        }
        for (j, h) in entry_hosts.iter().enumerate() {
            if let Err(p) = hosts::check_host(h) {
                out.push(host_problem(format!("spec.tls[{i}].hosts[{j}]"), h, p));
            }
        }
    }

    let coverage = Coverage::of(tls);
    for (i, rule) in rules.iter().enumerate() {
        let field = || format!("spec.rules[{i}].host");
        match rule.host.as_deref() {
            None | Some("") => {
                if !allow_catch_all {
                    out.push(Violation {
                        field: field(),
                        message: "is empty, which makes a catch-all rule served without a certificate for the name clients use: set host and list it in spec.tls[].hosts".into(),
                    });
                }
            }
            Some(h) => {
                if let Err(p) = hosts::check_host(h) {
                    out.push(host_problem(field(), h, p));
                } else if !coverage.covers(h) {
                    let message = if let Some(k) = coverage.listed_without_secret(h) {
                        format!(
                            "{h:?} is listed in spec.tls[{k}].hosts, but spec.tls[{k}] has no secretName: set spec.tls[{k}].secretName"
                        )
                    } else if tls.is_empty() {
                        let suggested = auto_tls_secret_name(
                            ing.metadata.name.as_deref().unwrap_or("my-ingress"),
                        );
                        format!(
                            "{h:?} is not covered by TLS (spec.tls is missing): add spec.tls: [{{hosts: [{h:?}], secretName: {suggested}}}]"
                        )
                    } else {
                        format!(
                            "{h:?} is not covered by any spec.tls[].hosts entry: add it to the hosts of a spec.tls entry that has a secretName"
                        )
                    };
                    out.push(Violation {
                        field: field(),
                        message,
                    });
                }
            }
        }
    }
    if rules.is_empty() && spec.is_some_and(|s| s.default_backend) && !allow_catch_all {
        out.push(Violation {
            field: "spec.defaultBackend".into(),
            message: "without rules makes a catch-all Ingress served without a certificate for the name clients use: add spec.rules with a host and cover it in spec.tls".into(),
        });
    }

    cert_manager_conflicts(ing, &mut out);
    client_auth_violations(ing, namespace, ctx, &mut out);
    out
}

/// Annotation combinations cert-manager itself refuses; caught here so the
/// user hears it at `kubectl apply`, not from a silent ingress-shim error.
fn cert_manager_conflicts(ing: &IngressObject, out: &mut Vec<Violation>) {
    let has = |k| annotation(ing, k).is_some();
    if has(CM_CLUSTER_ISSUER) && has(CM_ISSUER) {
        out.push(Violation {
            field: format!("metadata.annotations[{CM_CLUSTER_ISSUER:?}]"),
            message: format!(
                "cannot be combined with {CM_ISSUER}: cert-manager refuses both; keep one"
            ),
        });
    }
    if has(CM_CLUSTER_ISSUER) && (has(CM_ISSUER_KIND) || has(CM_ISSUER_GROUP)) {
        out.push(Violation {
            field: format!("metadata.annotations[{CM_CLUSTER_ISSUER:?}]"),
            message: format!(
                "cannot be combined with {CM_ISSUER_KIND} or {CM_ISSUER_GROUP}: cert-manager refuses it; for an external issuer use {CM_ISSUER} with {CM_ISSUER_KIND}/{CM_ISSUER_GROUP}"
            ),
        });
    }
}

fn client_auth_violations(
    ing: &IngressObject,
    namespace: &str,
    ctx: &Context,
    out: &mut Vec<Violation>,
) {
    match annotation(ing, CLIENT_AUTH_ANNOTATION) {
        Some(name) if name.trim().is_empty() => out.push(Violation {
            field: format!("metadata.annotations[{CLIENT_AUTH_ANNOTATION:?}]"),
            message: format!(
                "is empty: name a ClientAuthPolicy in namespace {namespace:?}, or remove the annotation"
            ),
        }),
        Some(_) => {}
        None => {
            let none = Pairs::default();
            let labels = ing.metadata.labels.as_ref().unwrap_or(&none);
            let selecting = ctx.known.selecting(namespace, labels);
            if selecting.len() > 1 {
                out.push(Violation {
                    field: "metadata.labels".into(),
                    message: format!(
                        "are selected by {} ClientAuthPolicies ({}): bind one explicitly with the {CLIENT_AUTH_ANNOTATION} annotation",
                        selecting.len(),
                        selecting.join(", ")
                    ),
                });
            }
        }
    }
}

/// The `nginx.ingress.kubernetes.io/*` annotations of an Ingress whose
/// class tlsward's proxy serves (`proxyIngressClasses`), assessed; `None`
/// for another class or none, whose annotations are someone else's.
pub fn migration_findings(ing: &IngressObject, policy: &IngressTlsPolicy) -> Option<Vec<Finding>> {
    let served = class(ing).is_some_and(|c| policy.proxy_ingress_classes.contains(c));
    if !served {
        return None;
    }
    let Some(annotations) = ing.metadata.annotations.as_ref() else {
        return Some(Vec::new());
    };
    Some(catalogue::assess(annotations.each_label()))
}

/// One warning per ingress-nginx annotation that does not carry over to
/// tlsward's proxy, naming what to do instead.
fn migration_warnings(ing: &IngressObject, policy: &IngressTlsPolicy) -> Vec<String> {
    migration_findings(ing, policy)
        .unwrap_or_default()
        .iter()
        .filter_map(Finding::warning)
        .collect()
}

/// Warnings that never block, whatever the enforcement.
fn advisories(review: &Review, ctx: &Context) -> Vec<String> {
    let mut out = migration_warnings(&review.ingress, ctx.policy);
    if let Some(name) = annotation(&review.ingress, CLIENT_AUTH_ANNOTATION)
        && !name.trim().is_empty()
        && ctx.known.get(review.namespace, name.trim()).is_none()
    {
        out.push(format!(
            "{CLIENT_AUTH_ANNOTATION} names ClientAuthPolicy {name:?}, which does not exist in namespace {:?} yet: clients are refused until it does",
            review.namespace
        ));
    }
    out
}

/// Decides whether the Ingress may be stored.
pub fn validate(review: &Review, ctx: &Context) -> Verdict {
    if let Some(reason) = exemption(review, ctx) {
        // An exemption is from the TLS rules; annotations that will be
        // ignored still are, so say so (unless the object is going away).
        let warnings = match reason {
            Exemption::BeingDeleted => Vec::new(),
            _ => migration_warnings(&review.ingress, ctx.policy),
        };
        return Verdict {
            allowed: true,
            violations: Vec::new(),
            warnings,
            exempt: Some(reason),
        };
    }
    let mut violations = violations(&review.ingress, review.namespace, ctx);
    let mut warnings = advisories(review, ctx);
    if ctx.policy.allow_existing_violations
        && let Some(old) = &review.old
    {
        let before = self::violations(old, review.namespace, ctx);
        let (existing, new): (Vec<_>, Vec<_>) =
            violations.into_iter().partition(|v| before.contains(v));
        warnings.extend(existing.iter().map(|v| {
            format!("{v} (already present before this update; allowed by allowExistingViolations)")
        }));
        violations = new;
    }
    let allowed = match ctx.policy.enforcement {
        Enforcement::Deny => violations.is_empty(),
        Enforcement::Warn => {
            warnings.extend(violations.iter().map(ToString::to_string));
            true
        }
        Enforcement::DryRun => true,
    };
    Verdict {
        allowed,
        violations,
        warnings,
        exempt: None,
    }
}

fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

/// Computes the changes the policy makes to an Ingress: missing TLS entries
/// (autoTLS), the cert-manager issuer, and client-auth annotations. Applying
/// the patch and mutating again yields an empty patch.
pub fn mutate(review: &Review, ctx: &Context) -> Mutation {
    let mut m = Mutation::default();
    if exemption(review, ctx).is_some() {
        return m;
    }
    let ing = &review.ingress;
    let added_tls = auto_tls(ing, ctx.policy, &mut m);
    let mut new_annotations: BTreeMap<&str, String> = BTreeMap::new();
    issuer_annotations(ing, ctx.policy, added_tls, &mut new_annotations);
    client_auth_annotations(review, ctx, &mut new_annotations, &mut m.warnings);
    if new_annotations.is_empty() {
        return m;
    }
    if ing.metadata.annotations.is_none() {
        m.patch.0.push(add(
            pointer(&["metadata", "annotations"]),
            json!(new_annotations),
        ));
    } else {
        for (k, v) in new_annotations {
            m.patch.0.push(add(
                pointer(&["metadata", "annotations", k]),
                Value::String(v),
            ));
        }
    }
    m
}

/// Adds uncovered rule hosts to the `<name>-tls` entry. Returns whether any
/// TLS entry was added, so issuer injection sees the result.
fn auto_tls(ing: &IngressObject, policy: &IngressTlsPolicy, m: &mut Mutation) -> bool {
    if !policy.auto_tls.enabled {
        return false;
    }
    let tls = tls_entries(ing);
    let coverage = Coverage::of(tls);
    let rules = ing
        .spec
        .as_ref()
        .and_then(|s| s.rules.as_deref())
        .unwrap_or_default();
    let mut missing: Vec<std::borrow::Cow<str>> = Vec::new();
    for h in rules.iter().filter_map(|r| r.host.as_deref()) {
        let n = hosts::normalize(h);
        if !h.is_empty()
            && hosts::check_host(h).is_ok()
            && !coverage.covers(h)
            && !missing.contains(&n)
        {
            missing.push(n);
        }
    }
    if missing.is_empty() {
        return false;
    }
    let Some(name) = ing.metadata.name.as_deref().filter(|n| !n.is_empty()) else {
        m.warnings.push(
            "autoTLS: the Ingress has no name yet (generateName), so no spec.tls entry was added: give it a name or add spec.tls yourself".into(),
        );
        return false;
    };
    let secret = auto_tls_secret_name(name);
    let existing = tls
        .iter()
        .position(|e| e.secret_name.as_deref() == Some(secret.as_str()));
    match (ing.spec.as_ref().and_then(|s| s.tls.as_ref()), existing) {
        (None, _) => m.patch.0.push(add(
            pointer(&["spec", "tls"]),
            json!([{"hosts": missing, "secretName": secret}]),
        )),
        (Some(_), Some(i)) if tls[i].hosts.is_none() => m.patch.0.push(add(
            pointer(&["spec", "tls", &i.to_string(), "hosts"]),
            json!(missing),
        )),
        (Some(_), Some(i)) => {
            for h in &missing {
                m.patch.0.push(add(
                    pointer(&["spec", "tls", &i.to_string(), "hosts", "-"]),
                    json!(h),
                ));
            }
        }
        (Some(_), None) => m.patch.0.push(add(
            pointer(&["spec", "tls", "-"]),
            json!({"hosts": missing, "secretName": secret}),
        )),
    }
    m.warnings.push(format!(
        "autoTLS: added {} to spec.tls with secretName {secret:?}",
        missing.join(", ")
    ));
    true
}

/// cert-manager's ingress-shim reads these annotations; a user's own choice
/// (any issuer annotation, or tls-acme) always wins.
fn issuer_annotations<'p>(
    ing: &IngressObject,
    policy: &'p IngressTlsPolicy,
    added_tls: bool,
    out: &mut BTreeMap<&'p str, String>,
) {
    let Some(issuer) = &policy.cert_manager.issuer else {
        return;
    };
    let has_secret_entry = tls_entries(ing)
        .iter()
        .any(|e| e.secret_name.as_deref().is_some_and(|s| !s.is_empty()));
    if !(has_secret_entry || added_tls) {
        return;
    }
    let user_chose = [
        CM_ISSUER,
        CM_CLUSTER_ISSUER,
        CM_ISSUER_KIND,
        CM_ISSUER_GROUP,
        TLS_ACME,
    ]
    .iter()
    .any(|k| annotation(ing, k).is_some());
    if user_chose {
        return;
    }
    let native = issuer.group == CERT_MANAGER_GROUP;
    match issuer.kind.as_str() {
        "ClusterIssuer" if native => {
            out.insert(CM_CLUSTER_ISSUER, issuer.name.clone());
        }
        "Issuer" if native => {
            out.insert(CM_ISSUER, issuer.name.clone());
        }
        _ => {
            out.insert(CM_ISSUER, issuer.name.clone());
            out.insert(CM_ISSUER_KIND, issuer.kind.clone());
            out.insert(CM_ISSUER_GROUP, issuer.group.clone());
        }
    }
}

/// Binds by selector when the Ingress names no policy, and keeps
/// ingress-nginx's `auth-tls-*` annotations equal to the bound policy, so a
/// tenant cannot weaken client verification by editing them.
fn client_auth_annotations(
    review: &Review,
    ctx: &Context,
    out: &mut BTreeMap<&str, String>,
    warnings: &mut Vec<String>,
) {
    let ing = &review.ingress;
    let binding: &Binding = match annotation(ing, CLIENT_AUTH_ANNOTATION) {
        Some(name) => match ctx.known.get(review.namespace, name.trim()) {
            Some(b) => b,
            None => return,
        },
        None => {
            let none = Pairs::default();
            let labels = ing.metadata.labels.as_ref().unwrap_or(&none);
            let selecting = ctx.known.selecting(review.namespace, labels);
            let [only] = selecting.as_slice() else {
                return;
            };
            out.insert(CLIENT_AUTH_ANNOTATION, only.to_string());
            match ctx.known.get(review.namespace, only) {
                Some(b) => b,
                None => return,
            }
        }
    };
    let is_nginx =
        class(ing).is_some_and(|c| ctx.policy.client_auth.nginx_ingress_classes.contains(c));
    if !is_nginx || !binding.checks_certificates {
        return;
    }
    let verify = match binding.mode {
        ClientAuthMode::Require => "on",
        ClientAuthMode::Optional => "optional",
    };
    let wanted = [
        (
            NGINX_AUTH_SECRET,
            format!("{}/{}", review.namespace, binding.bundle_secret),
        ),
        (NGINX_VERIFY_CLIENT, verify.to_string()),
        (NGINX_VERIFY_DEPTH, binding.verify_depth.to_string()),
    ];
    for (key, value) in wanted {
        match annotation(ing, key) {
            Some(v) if v == value => {}
            Some(v) => {
                warnings.push(format!(
                    "{key}: replaced {v:?} with {value:?} to match ClientAuthPolicy {:?}",
                    binding.policy
                ));
                out.insert(key, value);
            }
            None => {
                out.insert(key, value);
            }
        }
    }
}
