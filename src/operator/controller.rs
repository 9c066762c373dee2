//! The ClientAuthPolicy reconciler: sources -> bundle builder -> bundle
//! Secret and status. Writes happen only when content changes; a broken
//! source never touches the last good Secret.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::{Instrument, info, info_span, warn};

use crate::admission::CLIENT_AUTH_ANNOTATION;
use crate::clientauth::bundle::{self, Bundle, BundleError, PemInput};
use crate::clientauth::{
    BundleStatus, ClientAuthPolicy, ClientAuthPolicySpec, ClientAuthPolicyStatus, Condition,
    FailureReason, IssuerStatus, KeyRef, PemSource, SourceKind,
};
use crate::labels::Selector;
use crate::oidc::client::{
    ClientSetupError, DiscoveryError, FetchError, HttpClient, RootsError, discovery_url,
    fetch_discovery, for_provider,
};
use crate::oidc::jwt::Jwks;
use crate::telemetry::{
    AnchorLabels, OperatorMetrics, Outcome, ReasonLabels, ReconcileFailure, ResultLabels,
};

/// Label the operator puts on every bundle Secret; also what it watches.
pub const POLICY_LABEL: &str = "tlsward.io/policy";
/// Annotation holding the bundle's content hash, to skip unchanged writes.
pub const CONTENT_HASH_ANNOTATION: &str = "tlsward.io/content-hash";
/// Server-side apply field manager.
pub const FIELD_MANAGER: &str = "tlsward-operator";

/// Longest wait between reconciles of a healthy policy.
const RESYNC: Duration = Duration::from_secs(3600);
/// How often a healthy policy's issuers are fetched again.
pub const ISSUER_REFRESH: Duration = Duration::from_secs(300);
/// How soon a failing issuer is tried again: often enough to notice it is
/// back, seldom enough not to add to an IdP's trouble.
pub const ISSUER_RETRY: Duration = Duration::from_secs(60);
/// The default key of `spec.login.clientSecretRef`.
const CLIENT_SECRET_KEY: &str = "client-secret";

/// Everything a reconcile needs besides the policy.
pub struct Context {
    /// The API client (a `tower_test` mock in tests).
    pub client: Client,
    /// Posts Events on the policy.
    pub recorder: Recorder,
    /// The operator's metrics.
    pub metrics: Arc<OperatorMetrics>,
    /// The current Unix time; injected so tests are deterministic.
    pub now: fn() -> i64,
    /// Fingerprints exported per policy, to retire stale expiry series.
    exported: Mutex<BTreeMap<(String, String), HashSet<String>>>,
    /// The last check of each issuer configuration, shared by policies, so
    /// the reconcile our own status write triggers does not fetch again.
    issuer_checks: Mutex<HashMap<IssuerKey, IssuerCheck>>,
}

impl Context {
    /// A context on the real clock.
    pub fn new(client: Client, recorder: Recorder, metrics: Arc<OperatorMetrics>) -> Self {
        Self::with_clock(client, recorder, metrics, || Timestamp::now().as_second())
    }

    /// A context with a given clock.
    pub fn with_clock(
        client: Client,
        recorder: Recorder,
        metrics: Arc<OperatorMetrics>,
        now: fn() -> i64,
    ) -> Self {
        Self {
            client,
            recorder,
            metrics,
            now,
            exported: Mutex::new(BTreeMap::new()),
            issuer_checks: Mutex::new(HashMap::new()),
        }
    }
}

/// Errors that make the controller retry with backoff. Problems with the
/// policy's own content are not errors: they end in the Ready condition.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The policy has no namespace (cannot happen for a namespaced kind).
    #[error("ClientAuthPolicy has no namespace")]
    NoNamespace,
}

/// Why the bundle could not be (re)written. The message is the Ready
/// condition's and the Warning Event's; each names the source and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// A referenced Secret or ConfigMap does not exist.
    #[error(
        "{field}: {kind} {name:?} not found in the policy's namespace: create it or fix {field}.{}.name",
        kind.ref_field()
    )]
    SourceNotFound {
        /// The policy field, e.g. `spec.trustAnchors[0]`.
        field: String,
        /// Secret or ConfigMap.
        kind: SourceKind,
        /// The object's name.
        name: String,
    },
    /// The Secret or ConfigMap exists but lacks the key.
    #[error(
        "{field}: {kind} {name:?} has no key {key:?} (it has: {}): set {field}.{}.key",
        if keys.is_empty() { "none".to_string() } else { keys.join(", ") },
        kind.ref_field()
    )]
    KeyNotFound {
        /// The policy field.
        field: String,
        /// Secret or ConfigMap.
        kind: SourceKind,
        /// The object's name.
        name: String,
        /// The key looked for.
        key: String,
        /// The keys it has.
        keys: Vec<String>,
    },
    /// A source sets none of secretRef, configMapRef and inline (the CRD's
    /// CEL rule refuses this in a real cluster).
    #[error("{field}: set exactly one of secretRef, configMapRef or inline")]
    NoSource {
        /// The policy field.
        field: String,
    },
    /// The sources do not make a valid bundle.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// A Secret the login needs does not exist.
    #[error(
        "{field}: Secret {name:?} not found in the policy's namespace: create it or fix {field}.name"
    )]
    SecretNotFound {
        /// The policy field, e.g. `spec.login.sessionSecretRef`.
        field: String,
        /// The Secret's name.
        name: String,
    },
    /// The login's client-secret Secret exists but lacks the key.
    #[error(
        "{field}: Secret {name:?} has no key {key:?} (it has: {}): add it or set {field}.key",
        if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
    )]
    SecretKeyNotFound {
        /// The policy field.
        field: String,
        /// The Secret's name.
        name: String,
        /// The key looked for.
        key: String,
        /// The keys it has.
        keys: Vec<String>,
    },
    /// The session-key Secret exists but holds no key.
    #[error(
        "{field}: Secret {name:?} holds no session key: add one (any key name, 32 random bytes or their base64)"
    )]
    NoSessionKey {
        /// The policy field.
        field: String,
        /// The Secret's name.
        name: String,
    },
    /// An issuer's discovery document or key set could not be fetched.
    #[error("{field}: cannot fetch the keys of issuer {issuer}: {error}")]
    IssuerUnreachable {
        /// The policy field, e.g. `spec.tokens.issuers[0]`.
        field: String,
        /// The issuer, credentials in the URL masked.
        issuer: String,
        /// What failed (names URLs and statuses, never a body).
        error: String,
    },
    /// An issuer answered, but not with a usable discovery document or key
    /// set.
    #[error("{field}: issuer {issuer} is not usable: {error}")]
    InvalidIssuer {
        /// The policy field.
        field: String,
        /// The issuer, credentials in the URL masked.
        issuer: String,
        /// What is wrong.
        error: String,
    },
    /// An issuer's `ca` holds no usable certificate.
    #[error("{field}: {error}")]
    IssuerCa {
        /// The policy field, e.g. `spec.login.ca`.
        field: String,
        /// What the root store said.
        error: String,
    },
    /// The bundle Secret's name is taken by a Secret this policy did not
    /// write.
    #[error(
        "Secret {target} already exists and was not written by this policy (no {POLICY_LABEL}={policy} label): delete it, or set spec.target.secretName to another name"
    )]
    TargetConflict {
        /// The Secret's name.
        target: String,
        /// The policy's name.
        policy: String,
    },
}

impl Failure {
    /// The Ready condition's reason.
    pub fn reason(&self) -> FailureReason {
        match self {
            Failure::SourceNotFound { .. } | Failure::KeyNotFound { .. } => {
                FailureReason::SourceNotFound
            }
            Failure::NoSource { .. } | Failure::IssuerCa { .. } => {
                FailureReason::InvalidCertificate
            }
            Failure::SecretNotFound { .. }
            | Failure::SecretKeyNotFound { .. }
            | Failure::NoSessionKey { .. } => FailureReason::SecretNotFound,
            Failure::IssuerUnreachable { .. } => FailureReason::IssuerUnreachable,
            Failure::InvalidIssuer { .. } => FailureReason::InvalidIssuer,
            Failure::Bundle(e) => e.reason(),
            Failure::TargetConflict { .. } => FailureReason::TargetConflict,
        }
    }
}

/// The Ready condition's reason when the bundle is written and current.
const SYNCED: &str = "Synced";
/// The Normal Event's reason when a new bundle was written.
const BUNDLE_UPDATED: &str = "BundleUpdated";

fn rfc3339(unix: i64) -> String {
    Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Reads one PEM source: the key of a Secret or ConfigMap, or inline text.
async fn read_source(
    secrets: &Api<Secret>,
    config_maps: &Api<ConfigMap>,
    field: &str,
    src: &PemSource,
    default_key: &str,
) -> Result<Result<PemInput, Failure>, Error> {
    let not_found = |kind, r: &KeyRef| Failure::SourceNotFound {
        field: field.to_string(),
        kind,
        name: r.name.clone(),
    };
    let missing_key = |kind, r: &KeyRef, key: &str, keys: Vec<String>| Failure::KeyNotFound {
        field: field.to_string(),
        kind,
        name: r.name.clone(),
        key: key.to_string(),
        keys,
    };
    if let Some(r) = &src.secret_ref {
        let key = r.key.as_deref().unwrap_or(default_key);
        let Some(secret) = secrets.get_opt(&r.name).await? else {
            return Ok(Err(not_found(SourceKind::Secret, r)));
        };
        let data = secret.data.unwrap_or_default();
        return Ok(match data.get(key) {
            Some(bytes) => Ok(PemInput::new(
                format!("{field} (Secret {}, key {key})", r.name),
                String::from_utf8_lossy(&bytes.0).into_owned(),
            )),
            None => Err(missing_key(
                SourceKind::Secret,
                r,
                key,
                data.into_keys().collect(),
            )),
        });
    }
    if let Some(r) = &src.config_map_ref {
        let key = r.key.as_deref().unwrap_or(default_key);
        let Some(cm) = config_maps.get_opt(&r.name).await? else {
            return Ok(Err(not_found(SourceKind::ConfigMap, r)));
        };
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .cloned()
            .or_else(|| {
                cm.binary_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            });
        return Ok(match text {
            Some(t) => Ok(PemInput::new(
                format!("{field} (ConfigMap {}, key {key})", r.name),
                t,
            )),
            None => {
                let mut keys: Vec<String> = cm.data.unwrap_or_default().into_keys().collect();
                keys.extend(cm.binary_data.unwrap_or_default().into_keys());
                Err(missing_key(SourceKind::ConfigMap, r, key, keys))
            }
        });
    }
    Ok(match &src.inline {
        Some(pem) => Ok(PemInput::new(format!("{field} (inline)"), pem.clone())),
        // The CRD's CEL rule makes this unreachable in a real cluster.
        None => Err(Failure::NoSource {
            field: field.to_string(),
        }),
    })
}

/// Gathers every source and builds the bundle.
async fn gather(
    policy: &ClientAuthPolicy,
    ctx: &Context,
    ns: &str,
) -> Result<Result<Bundle, Failure>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let mut anchors = Vec::new();
    for (i, src) in policy.spec.trust_anchors.iter().enumerate() {
        match read_source(
            &secrets,
            &config_maps,
            &format!("spec.trustAnchors[{i}]"),
            src,
            "ca.crt",
        )
        .await?
        {
            Ok(input) => anchors.push(input),
            Err(f) => return Ok(Err(f)),
        }
    }
    let mut crls = Vec::new();
    for (i, src) in policy.spec.revocation.iter().enumerate() {
        match read_source(
            &secrets,
            &config_maps,
            &format!("spec.revocation[{i}]"),
            src,
            "ca.crl",
        )
        .await?
        {
            Ok(input) => crls.push(input),
            Err(f) => return Ok(Err(f)),
        }
    }
    Ok(bundle::build(&anchors, &crls, (ctx.now)()).map_err(Failure::from))
}

/// The login's Secrets: the client secret (with its key) and the session
/// keys must exist. Both are read, so the API calls do not depend on which
/// is missing; the first problem is returned.
async fn check_login_secrets(
    spec: &ClientAuthPolicySpec,
    secrets: &Api<Secret>,
) -> Result<Option<Failure>, Error> {
    let Some(login) = &spec.login else {
        return Ok(None);
    };
    let mut problems = Vec::new();
    let field = "spec.login.clientSecretRef";
    let r = &login.client_secret_ref;
    let key = r.key.as_deref().unwrap_or(CLIENT_SECRET_KEY);
    match secrets.get_opt(&r.name).await? {
        None => problems.push(Failure::SecretNotFound {
            field: field.into(),
            name: r.name.clone(),
        }),
        Some(secret) => {
            let data = secret.data.unwrap_or_default();
            if !data.contains_key(key) {
                problems.push(Failure::SecretKeyNotFound {
                    field: field.into(),
                    name: r.name.clone(),
                    key: key.into(),
                    keys: data.into_keys().collect(),
                });
            }
        }
    }
    let field = "spec.login.sessionSecretRef";
    let name = &login.session_secret_ref.name;
    match secrets.get_opt(name).await? {
        None => problems.push(Failure::SecretNotFound {
            field: field.into(),
            name: name.clone(),
        }),
        Some(secret) if secret.data.as_ref().is_none_or(|d| d.is_empty()) => {
            problems.push(Failure::NoSessionKey {
                field: field.into(),
                name: name.clone(),
            })
        }
        Some(_) => {}
    }
    Ok(problems.into_iter().next())
}

/// One issuer as the policy names it. An issuer named twice (tokens and
/// login) is checked once, with its first settings; discovery is fetched
/// if any mention needs it.
#[derive(Clone, Debug)]
struct IssuerSpec {
    field: String,
    ca_field: String,
    issuer: String,
    jwks_uri: Option<String>,
    discover: bool,
    ca: Option<PemSource>,
}

/// The distinct issuers of `spec`: `tokens.issuers` then `login.issuer`
/// (GitHub login has none).
fn issuers_of(spec: &ClientAuthPolicySpec) -> Vec<IssuerSpec> {
    let mut out: Vec<IssuerSpec> = Vec::new();
    let mut add = |next: IssuerSpec| match out.iter_mut().find(|i| i.issuer == next.issuer) {
        Some(known) => known.discover |= next.discover,
        None => out.push(next),
    };
    if let Some(tokens) = &spec.tokens {
        for (i, t) in tokens.issuers.iter().enumerate() {
            let field = format!("spec.tokens.issuers[{i}]");
            add(IssuerSpec {
                ca_field: format!("{field}.ca"),
                field,
                issuer: t.issuer.clone(),
                jwks_uri: t.jwks_uri.clone(),
                discover: t.jwks_uri.is_none(),
                ca: t.ca.clone(),
            });
        }
    }
    if let Some(login) = &spec.login
        && let Some(issuer) = &login.issuer
    {
        // Login needs the discovery document's endpoints.
        add(IssuerSpec {
            field: "spec.login.issuer".into(),
            ca_field: "spec.login.ca".into(),
            issuer: issuer.clone(),
            jwks_uri: None,
            discover: true,
            ca: login.ca.clone(),
        });
    }
    out
}

/// Whether the policy names any issuer (its status needs refreshing).
pub fn has_issuers(spec: &ClientAuthPolicySpec) -> bool {
    !issuers_of(spec).is_empty()
}

/// What one issuer check is keyed by: everything that changes its answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct IssuerKey {
    issuer: String,
    jwks_uri: Option<String>,
    discover: bool,
    ca_pem: Option<String>,
}

/// The outcome of one issuer check, and when it ran.
#[derive(Clone, Debug)]
struct IssuerCheck {
    at: i64,
    result: Result<u32, IssuerProblem>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProblemKind {
    Unreachable,
    Invalid,
    BadCa,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct IssuerProblem {
    kind: ProblemKind,
    error: String,
}

impl IssuerProblem {
    fn into_failure(self, spec: &IssuerSpec) -> Failure {
        let (field, issuer) = (spec.field.clone(), masked(&spec.issuer));
        match self.kind {
            ProblemKind::Unreachable => Failure::IssuerUnreachable {
                field,
                issuer,
                error: self.error,
            },
            ProblemKind::Invalid => Failure::InvalidIssuer {
                field,
                issuer,
                error: self.error,
            },
            ProblemKind::BadCa => Failure::IssuerCa {
                field: spec.ca_field.clone(),
                error: self.error,
            },
        }
    }
}

/// `url` with any `user:password@` replaced, for messages.
fn masked(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://…@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

fn fetch_problem(url: &str, e: FetchError) -> IssuerProblem {
    let kind = match &e {
        // The configuration or the answer is wrong, not the network.
        FetchError::BadUrl(_) | FetchError::PlainHttp | FetchError::TooLarge { .. } => {
            ProblemKind::Invalid
        }
        FetchError::Connect { .. }
        | FetchError::Tls { .. }
        | FetchError::Timeout(_)
        | FetchError::Redirected { .. }
        | FetchError::Status { .. }
        | FetchError::Http(_) => ProblemKind::Unreachable,
    };
    IssuerProblem {
        kind,
        error: format!("GET {}: {e}", masked(url)),
    }
}

fn invalid(error: String) -> IssuerProblem {
    IssuerProblem {
        kind: ProblemKind::Invalid,
        error,
    }
}

/// Fetches the discovery document (when needed) and the key set; the
/// number of usable keys.
async fn fetch_issuer(key: &IssuerKey) -> Result<u32, IssuerProblem> {
    let client: HttpClient = for_provider(key.ca_pem.as_deref()).map_err(|e| {
        let kind = match &e {
            ClientSetupError::Roots(
                RootsError::NoCertificate
                | RootsError::BadPem { .. }
                | RootsError::BadCertificate { .. },
            ) => ProblemKind::BadCa,
            _ => ProblemKind::Unreachable,
        };
        IssuerProblem {
            kind,
            error: e.to_string(),
        }
    })?;
    let discovered = if key.discover {
        let url = discovery_url(&key.issuer);
        match fetch_discovery(&client, &key.issuer).await {
            Ok(d) => Some(d),
            Err(DiscoveryError::Fetch(e)) => return Err(fetch_problem(&url, e)),
            Err(
                e @ (DiscoveryError::Invalid(_)
                | DiscoveryError::IssuerMismatch { .. }
                | DiscoveryError::BadEndpoint { .. }),
            ) => return Err(invalid(format!("{}: {e}", masked(&url)))),
        }
    } else {
        None
    };
    let Some(jwks_uri) = key
        .jwks_uri
        .clone()
        .or_else(|| discovered.map(|d| d.jwks_uri))
    else {
        // issuers_of sets discover whenever jwksUri is absent.
        return Err(invalid("no jwksUri and no discovery document".into()));
    };
    let response = client
        .get(&jwks_uri)
        .await
        .and_then(|r| r.success())
        .map_err(|e| fetch_problem(&jwks_uri, e))?;
    let set = Jwks::from_json(&response.body)
        .map_err(|e| invalid(format!("{}: {e}", masked(&jwks_uri))))?;
    if set.is_empty() {
        return Err(invalid(format!(
            "{}: the key set holds no usable signing key",
            masked(&jwks_uri)
        )));
    }
    Ok(u32::try_from(set.len()).unwrap_or(u32::MAX))
}

/// Checks every issuer of the policy: `status.issuers` (a failing issuer
/// keeps its last good entry) and the problems, in spec order.
async fn check_issuers(
    spec: &ClientAuthPolicySpec,
    previous: &[IssuerStatus],
    ctx: &Context,
    ns: &str,
) -> Result<(Vec<IssuerStatus>, Vec<Failure>), Error> {
    let issuers = issuers_of(spec);
    if issuers.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let now = (ctx.now)();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    // The CAs first, in order: these are API calls.
    let mut keys: Vec<Result<IssuerKey, Failure>> = Vec::with_capacity(issuers.len());
    for i in &issuers {
        let ca_pem = match &i.ca {
            None => None,
            Some(src) => {
                match read_source(&secrets, &config_maps, &i.ca_field, src, "ca.crt").await? {
                    Ok(input) => Some(input.pem),
                    Err(f) => {
                        keys.push(Err(f));
                        continue;
                    }
                }
            }
        };
        keys.push(Ok(IssuerKey {
            issuer: i.issuer.clone(),
            jwks_uri: i.jwks_uri.clone(),
            discover: i.discover,
            ca_pem,
        }));
    }
    // Then the IdPs, concurrently; a recent answer is reused.
    let checks = futures::future::join_all(keys.iter().map(|k| async move {
        let k = k.as_ref().ok()?;
        if let Some(recent) = recent_check(ctx, k, now) {
            return Some(recent);
        }
        let result = fetch_issuer(k).await;
        let check = IssuerCheck { at: now, result };
        remember_check(ctx, k, &check, now);
        Some(check)
    }))
    .await;

    let mut statuses = Vec::with_capacity(issuers.len());
    let mut failures = Vec::new();
    for ((spec, key), check) in issuers.iter().zip(keys).zip(checks) {
        let last_good = || {
            previous
                .iter()
                .find(|p| p.issuer == spec.issuer)
                .cloned()
                .unwrap_or_else(|| IssuerStatus {
                    issuer: spec.issuer.clone(),
                    keys: 0,
                    last_fetched: None,
                })
        };
        match (key, check) {
            (Err(f), _) => {
                statuses.push(last_good());
                failures.push(f);
            }
            (Ok(_), Some(IssuerCheck { at, result: Ok(n) })) => statuses.push(IssuerStatus {
                issuer: spec.issuer.clone(),
                keys: n,
                last_fetched: Some(rfc3339(at)),
            }),
            (Ok(_), Some(IssuerCheck { result: Err(p), .. })) => {
                statuses.push(last_good());
                failures.push(p.into_failure(spec));
            }
            // A key always gets a check.
            (Ok(_), None) => statuses.push(last_good()),
        }
    }
    Ok((statuses, failures))
}

/// The last check of `key`, if recent enough to stand: a success for
/// [`ISSUER_REFRESH`], a failure for [`ISSUER_RETRY`] (minus a little, so
/// the requeue at that interval fetches again).
fn recent_check(ctx: &Context, key: &IssuerKey, now: i64) -> Option<IssuerCheck> {
    let checks = ctx.issuer_checks.lock().ok()?;
    let check = checks.get(key)?;
    let window = match check.result {
        Ok(_) => ISSUER_REFRESH,
        Err(_) => ISSUER_RETRY,
    };
    let age = now - check.at;
    (age >= 0 && age + 10 < window.as_secs() as i64).then(|| check.clone())
}

fn remember_check(ctx: &Context, key: &IssuerKey, check: &IssuerCheck, now: i64) {
    if let Ok(mut checks) = ctx.issuer_checks.lock() {
        // Forget configurations no reconcile has asked about for a while.
        let keep = 2 * ISSUER_REFRESH.as_secs() as i64;
        checks.retain(|_, c| now - c.at < keep);
        checks.insert(key.clone(), check.clone());
    }
}

/// The bundle Secret as the operator wants it, for server-side apply.
pub fn desired_secret(policy: &ClientAuthPolicy, name: &str, ns: &str, bundle: &Bundle) -> Value {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let mut data = serde_json::Map::new();
    data.insert("ca.crt".into(), json!(b64(&bundle.ca_pem)));
    if let Some(crl) = &bundle.crl_pem {
        data.insert("ca.crl".into(), json!(b64(crl)));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {POLICY_LABEL: policy.name_any(), "app.kubernetes.io/managed-by": "tlsward"},
            "annotations": {CONTENT_HASH_ANNOTATION: bundle.content_hash()},
            "ownerReferences": [{
                "apiVersion": "tlsward.io/v1alpha1",
                "kind": "ClientAuthPolicy",
                "name": policy.name_any(),
                "uid": policy.uid().unwrap_or_default(),
                "controller": true
            }]
        },
        "type": "Opaque",
        "data": data
    })
}

/// Whether `secret` was written for `policy` (a Secret we did not write is
/// never overwritten).
fn is_ours(secret: &Secret, policy: &ClientAuthPolicy) -> bool {
    secret.labels().get(POLICY_LABEL) == Some(&policy.name_any())
}

/// Whether the Secret already holds exactly this bundle: the hash skips the
/// comparison's cost in the common case, the data check repairs hand edits.
fn is_current(secret: &Secret, bundle: &Bundle) -> bool {
    let data = secret.data.clone().unwrap_or_default();
    let matches = |key: &str, want: Option<&str>| match (data.get(key), want) {
        (Some(have), Some(want)) => have.0 == want.as_bytes(),
        (None, None) => true,
        _ => false,
    };
    secret.annotations().get(CONTENT_HASH_ANNOTATION) == Some(&bundle.content_hash())
        && matches("ca.crt", Some(&bundle.ca_pem))
        && matches("ca.crl", bundle.crl_pem.as_deref())
}

/// Names of the Ingresses bound to the policy, sorted.
async fn bound_ingresses(
    policy: &ClientAuthPolicy,
    ctx: &Context,
    ns: &str,
) -> Result<Vec<String>, Error> {
    let ingresses: Api<Ingress> = Api::namespaced(ctx.client.clone(), ns);
    let list = ingresses.list(&ListParams::default()).await?;
    let selector = policy
        .spec
        .ingress_selector
        .as_ref()
        .and_then(|s| Selector::compile(s).ok());
    let name = policy.name_any();
    let mut out: Vec<String> = list
        .items
        .iter()
        .filter(|i| match i.annotations().get(CLIENT_AUTH_ANNOTATION) {
            Some(bound) => bound.trim() == name,
            None => selector.as_ref().is_some_and(|s| s.matches(i.labels())),
        })
        .map(|i| i.name_any())
        .collect();
    out.sort();
    Ok(out)
}

fn ready_condition(
    previous: Option<&Condition>,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: i64,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    // lastTransitionTime moves only when status flips, as Kubernetes expects.
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => rfc3339(now),
    };
    Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time,
        observed_generation: generation,
    }
}

fn summary(secret_name: &str, bundle: &Bundle) -> BundleStatus {
    let crls = bundle
        .crl_pem
        .as_deref()
        .map_or(0, |p| p.matches("-----BEGIN X509 CRL-----").count());
    BundleStatus {
        secret_name: secret_name.to_string(),
        certificates: bundle.anchors.len() as u32,
        crls: crls as u32,
        not_after: bundle.not_after.map(rfc3339),
        fingerprints: bundle.fingerprints.clone(),
    }
}

/// The Ready message: the bundle's summary and notes, then each issuer's
/// key count.
fn ready_message(secret_name: &str, bundle: Option<&Bundle>, issuers: &[IssuerStatus]) -> String {
    let mut parts: Vec<String> = bundle
        .map(|b| synced_message(secret_name, b))
        .into_iter()
        .collect();
    parts.extend(
        issuers
            .iter()
            .map(|i| format!("issuer {} serves {} key(s)", masked(&i.issuer), i.keys)),
    );
    if parts.is_empty() {
        parts.push("the login's Secrets are in place".into());
    }
    parts.join("; ")
}

fn synced_message(secret_name: &str, bundle: &Bundle) -> String {
    let mut msg = format!(
        "Secret {secret_name} holds {} trust anchor(s){}",
        bundle.anchors.len(),
        bundle
            .not_after
            .map(|t| format!("; the first expires at {}", rfc3339(t)))
            .unwrap_or_default()
    );
    for note in &bundle.notes {
        msg.push_str(&format!("; {}: {}", note.source, note.message));
    }
    msg
}

async fn publish(
    ctx: &Context,
    policy: &ClientAuthPolicy,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    // An Event that cannot be posted must not fail the reconcile.
    if let Err(e) = ctx.recorder.publish(&event, &policy.object_ref(&())).await {
        warn!(error = %e, "could not post event");
    }
}

fn export_expiry(ctx: &Context, ns: &str, name: &str, bundle: Option<&Bundle>) {
    let key = (ns.to_string(), name.to_string());
    let labels = |fp: &str| AnchorLabels {
        namespace: ns.to_string(),
        policy: name.to_string(),
        fingerprint: fp.to_string(),
    };
    let Ok(mut exported) = ctx.exported.lock() else {
        return;
    };
    let now: HashSet<String> = bundle
        .map(|b| b.anchors.iter().map(|a| a.fingerprint.clone()).collect())
        .unwrap_or_default();
    if let Some(before) = exported.get(&key) {
        for gone in before.difference(&now) {
            ctx.metrics.anchor_expiry.remove(&labels(gone));
        }
    }
    if let Some(b) = bundle {
        for a in &b.anchors {
            ctx.metrics
                .anchor_expiry
                .get_or_create(&labels(&a.fingerprint))
                .set(a.not_after);
        }
    }
    exported.insert(key, now);
}

/// Forgets the expiry series of policies that no longer exist.
pub fn prune(ctx: &Context, live: &std::collections::HashSet<(String, String)>) {
    let gone: Vec<(String, String)> = match ctx.exported.lock() {
        Ok(exported) => exported
            .keys()
            .filter(|k| !live.contains(*k))
            .cloned()
            .collect(),
        Err(_) => return,
    };
    for (ns, name) in gone {
        export_expiry(ctx, &ns, &name, None);
        if let Ok(mut exported) = ctx.exported.lock() {
            exported.remove(&(ns, name));
        }
    }
}

/// Reconciles one policy. See the module docs for the rules.
pub async fn reconcile(policy: Arc<ClientAuthPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = policy.namespace().ok_or(Error::NoNamespace)?;
    let name = policy.name_any();
    let span = info_span!("reconcile", namespace = %ns, policy = %name);
    let started = Instant::now();
    let result = reconcile_inner(&policy, &ctx, &ns, &name)
        .instrument(span)
        .await;
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    let (outcome, failure) = match &result {
        Ok(None) => (Outcome::Success, None),
        Ok(Some(reason)) => (Outcome::Failure, Some(ReconcileFailure::NotReady(*reason))),
        Err(_) => (Outcome::Failure, Some(ReconcileFailure::ApiError)),
    };
    ctx.metrics
        .reconciles
        .get_or_create(&ResultLabels { result: outcome })
        .inc();
    if let Some(reason) = failure {
        ctx.metrics
            .failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
    match result {
        Ok(None) => Ok(requeue_for(&policy, (ctx.now)())),
        // An IdP comes back by itself: look again soon, but not in a loop.
        Ok(Some(FailureReason::IssuerUnreachable)) => Ok(Action::requeue(ISSUER_RETRY)),
        // A fix arrives as a watch event on the source; poll slowly too.
        Ok(Some(_)) => Ok(Action::requeue(Duration::from_secs(300))),
        Err(e) => Err(e),
    }
}

/// Requeue just after the earliest anchor expires, so it is dropped on time.
fn requeue_for(policy: &ClientAuthPolicy, now: i64) -> Action {
    let next = policy
        .status
        .as_ref()
        .and_then(|s| s.bundle.as_ref())
        .and_then(|b| b.not_after.as_deref())
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|t| Duration::from_secs((t.as_second() - now).max(0) as u64 + 1));
    // Issuer keys rotate: their status is refreshed every few minutes.
    let longest = if has_issuers(&policy.spec) {
        ISSUER_REFRESH
    } else {
        RESYNC
    };
    Action::requeue(next.map_or(longest, |d| d.min(longest)))
}

/// Returns the failure reason, if the policy could not be made Ready.
async fn reconcile_inner(
    policy: &ClientAuthPolicy,
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<Option<FailureReason>, Error> {
    let now = (ctx.now)();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let target = policy.bundle_secret_name();
    let current = policy.status.clone().unwrap_or_default();
    let previous_ready = current.conditions.iter().find(|c| c.type_ == "Ready");

    // The bundle, only for a policy that checks client certificates; it is
    // written whatever the issuers say, since the proxy needs it either way.
    let mut bundle_outcome = None;
    let mut written = None;
    if policy.spec.checks_certificates() {
        let mut outcome = gather(policy, ctx, ns).await?;
        if let Ok(bundle) = &outcome {
            let existing = secrets.get_opt(&target).await?;
            match existing {
                Some(s) if !is_ours(&s, policy) => {
                    outcome = Err(Failure::TargetConflict {
                        target: target.clone(),
                        policy: name.to_string(),
                    });
                }
                Some(s) if is_current(&s, bundle) => {}
                _ => {
                    let desired = desired_secret(policy, &target, ns, bundle);
                    secrets
                        .patch(
                            &target,
                            &PatchParams::apply(FIELD_MANAGER).force(),
                            &Patch::Apply(&desired),
                        )
                        .await?;
                    info!(secret = %target, anchors = bundle.anchors.len(), "bundle written");
                    written = Some(bundle.anchors.len());
                }
            }
        }
        bundle_outcome = Some(outcome);
    }
    let login_failure = check_login_secrets(&policy.spec, &secrets).await?;
    let (issuers, issuer_failures) = check_issuers(&policy.spec, &current.issuers, ctx, ns).await?;

    // The condition names the first problem: the bundle's, then the
    // login's Secrets, then the issuers in spec order.
    let bundle_failure = match &bundle_outcome {
        Some(Err(f)) => Some(f.clone()),
        _ => None,
    };
    let failure = bundle_failure
        .clone()
        .or(login_failure)
        .or(issuer_failures.into_iter().next());
    let bundle = match &bundle_outcome {
        Some(Ok(b)) => Some(b),
        _ => None,
    };

    let bound = bound_ingresses(policy, ctx, ns).await?;
    let generation = policy.metadata.generation;
    let condition = match &failure {
        None => ready_condition(
            previous_ready,
            true,
            SYNCED,
            ready_message(&target, bundle, &issuers),
            generation,
            now,
        ),
        Some(f) => ready_condition(
            previous_ready,
            false,
            f.reason().as_str(),
            f.to_string(),
            generation,
            now,
        ),
    };
    let bundle_status = match &bundle_outcome {
        Some(Ok(b)) => Some(summary(&target, b)),
        // The last good bundle is still what clients are checked against.
        Some(Err(_)) => current.bundle.clone(),
        None => None,
    };
    let condition_changed = previous_ready.is_none_or(|p| {
        (p.status.as_str(), p.reason.as_str(), p.message.as_str())
            != (
                condition.status.as_str(),
                condition.reason.as_str(),
                condition.message.as_str(),
            )
    });
    let desired = ClientAuthPolicyStatus {
        observed_generation: generation,
        conditions: vec![condition],
        bundle: bundle_status,
        bound_ingresses: bound,
        issuers,
    };
    if desired != current {
        let api: Api<ClientAuthPolicy> = Api::namespaced(ctx.client.clone(), ns);
        // A merge patch drops a field only when it is sent as null (a
        // policy that stopped checking certificates, or naming issuers).
        let mut status = json!(desired);
        if desired.bundle.is_none() && current.bundle.is_some() {
            status["bundle"] = Value::Null;
        }
        if desired.issuers.is_empty() && !current.issuers.is_empty() {
            status["issuers"] = Value::Null;
        }
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
    }

    match (bundle, written) {
        (Some(bundle), Some(n)) => {
            export_expiry(ctx, ns, name, Some(bundle));
            publish(
                ctx,
                policy,
                EventType::Normal,
                BUNDLE_UPDATED,
                format!("wrote {n} trust anchor(s) to Secret {target}"),
            )
            .await;
        }
        (Some(bundle), None) => export_expiry(ctx, ns, name, Some(bundle)),
        // No anchors any more: retire their expiry series.
        (None, _) if bundle_outcome.is_none() => export_expiry(ctx, ns, name, None),
        (None, _) => {}
    }
    if let Some(f) = &failure {
        let reason = f.reason().as_str();
        if bundle_failure.is_some() {
            warn!(reason, message = %f, "policy not ready; the last good bundle stays in place");
        } else {
            warn!(reason, message = %f, "policy not ready");
        }
        if condition_changed {
            publish(ctx, policy, EventType::Warning, reason, f.to_string()).await;
        }
    }
    Ok(failure.map(|f| f.reason()))
}

/// Retry API errors with a short fixed backoff.
pub fn error_policy(_policy: Arc<ClientAuthPolicy>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(%error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(15))
}
