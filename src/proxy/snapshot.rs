//! World -> Snapshot: every served host with its TLS configuration (server
//! certificate + client verifier) and its routes. Pure apart from parsing
//! certificates; built on every change and swapped in whole. A host whose
//! new configuration is broken keeps its previous one.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use http::HeaderValue;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressServiceBackend};
use kube::ResourceExt;
use prometheus_client::metrics::counter::Counter;
use rustls::ServerConfig;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::backend_via::IngressUpstream;
use super::host_auth::{self, HostAuth};
use super::problem::{AuthTlsError, HostError, Issue, Problem};
use super::routes::{Backend, PathKind, RouteTable};
use super::world::World;
use crate::admission::{CLIENT_AUTH_ANNOTATION, hosts, ingress_class};
use crate::clientauth::bundle::{self, PemInput};
use crate::clientauth::{
    AllowedClients, ClientAuthMode, ClientAuthPolicy, ForwardClientCert, PemSource, PolicyIndex,
    SourceKind,
};
use crate::fast_hash::{HashMap as FastHashMap, HashSet as FastHashSet};
use crate::ingress_nginx::catalogue;
use crate::ingress_nginx::client_auth::{self, ClientAuth, ClientAuthError};
use crate::tls;

/// Annotation on a Service naming its endpoints directly (`host:port`,
/// comma-separated), for directory mode without EndpointSlices.
pub const UPSTREAM_ANNOTATION: &str = "tlsward.io/upstream";

/// The controller name in IngressClasses the proxy serves.
pub const CONTROLLER: &str = "tlsward.io/proxy";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Which Ingresses are the proxy's: those naming one of its classes, and
/// those naming none when one of its classes is the cluster default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Classes {
    names: std::collections::BTreeSet<String>,
    default: bool,
}

impl Classes {
    /// Just the class called `name` (directory mode).
    pub fn named(name: &str) -> Self {
        Self {
            names: [name.to_string()].into(),
            default: false,
        }
    }

    /// The IngressClasses whose controller is tlsward's. `fallback` (the
    /// --ingress-class name) counts too unless a class of that name belongs
    /// to another controller.
    pub fn from_ingress_classes(
        classes: &[k8s_openapi::api::networking::v1::IngressClass],
        fallback: &str,
    ) -> Self {
        let ours = |c: &&k8s_openapi::api::networking::v1::IngressClass| {
            c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER)
        };
        let mut names: std::collections::BTreeSet<String> =
            classes.iter().filter(ours).map(|c| c.name_any()).collect();
        if !classes.iter().any(|c| c.name_any() == fallback) {
            names.insert(fallback.to_string());
        }
        let default = classes.iter().filter(ours).any(|c| {
            c.annotations()
                .get(DEFAULT_CLASS_ANNOTATION)
                .map(String::as_str)
                == Some("true")
        });
        Self { names, default }
    }

    /// Whether the proxy serves this Ingress.
    pub fn serves(&self, ing: &Ingress) -> bool {
        match ingress_class(ing) {
            Some(c) => self.names.contains(c),
            None => self.default,
        }
    }
}

/// When a served certificate or trust anchor expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// The Secret (`ns/name`), or `ns/policy/anchor:<fingerprint>` for anchors.
    pub secret: String,
    /// notAfter, Unix seconds.
    pub not_after: i64,
}

/// Everything needed to serve one host.
#[derive(Clone, Debug)]
pub struct HostEntry {
    /// The host name (possibly `*.` wildcard), lower-case.
    pub host: String,
    /// `ns/name` of the Ingress that defined the host first.
    pub ingress: String,
    /// `ns/name` of the TLS Secret.
    pub cert_secret: String,
    /// Hex SHA-256 of the served leaf certificate, to tell rotations apart.
    pub cert_sha256: String,
    /// `ns/name` of the bound ClientAuthPolicy.
    pub policy: Option<String>,
    /// The policy's allow-list, checked after the handshake.
    pub allowed: Option<AllowedClients>,
    /// How the client identity is passed upstream.
    pub forward: ForwardClientCert,
    /// Certificate and client verifier for handshakes on this host.
    pub tls: Arc<ServerConfig>,
    /// The client verifier inside `tls`, kept to check an open
    /// connection's client again when a new snapshot changes the trust.
    pub verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    /// Path routes.
    pub routes: RouteTable,
    /// `Strict-Transport-Security` for the host's responses, when its
    /// Ingress asks for it (`tlsward.io/hsts`).
    pub hsts: Option<HeaderValue>,
    /// HTTP/1.1 upgrade protocols tunnelled besides `websocket`
    /// (`tlsward.io/upgrades`).
    pub upgrades: Arc<[String]>,
    /// Token and login checks of the bound policy, if it sets any.
    pub auth: Option<Arc<HostAuth>>,
    /// The implicit client-auth policy of the Ingress's ingress-nginx
    /// `auth-tls-*` annotations; `verifier` is then its strict verifier.
    pub nginx: Option<Arc<ClientAuth>>,
    /// Served certificate and trust anchors, for expiry metrics.
    pub expiries: Vec<Expiry>,
    /// This host's `code="200"` series of the request counter, once a
    /// request has found it: most requests then count without hashing the
    /// labels or taking the family's lock.
    pub ok_requests: OnceLock<Counter>,
    /// This host's bearer and session `result="ok"` series of the
    /// authentication counter, found once.
    pub auth_ok: [OnceLock<Counter>; 2],
}

/// The proxy's whole serving state at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    exact: FastHashMap<String, Arc<HostEntry>>,
    wildcard: FastHashMap<String, Arc<HostEntry>>,
    /// Hosts an Ingress names but that are not served (fail closed): a
    /// covering wildcard must not answer for them under its own policy.
    blocked: FastHashSet<String>,
    /// What could not be served as written (and whether a last good config
    /// was kept for it).
    pub problems: Vec<Problem>,
    /// Served Ingresses (namespace, name) with `nginx.ingress.kubernetes.io/*`
    /// annotations the proxy does not implement, and those keys, sorted.
    /// Reported, never a problem: the Ingress is served without them.
    pub unsupported_annotations: BTreeMap<(String, String), Vec<String>>,
}

impl Snapshot {
    /// The host serving `name` (SNI or Host header): exact, then wildcard.
    pub fn lookup(&self, name: &str) -> Option<&Arc<HostEntry>> {
        let n = hosts::normalize(name);
        if let Some(e) = self.exact.get(n.as_ref()) {
            return Some(e);
        }
        if self.blocked.contains(n.as_ref()) {
            return None;
        }
        hosts::covering_wildcard(&n).and_then(|w| self.wildcard.get(&w))
    }

    /// The same snapshot with TLS session resumption off on every host: no
    /// session cache and no tickets, so every connection is a full
    /// handshake. Idempotent, since last good hosts are carried over.
    pub fn without_session_resumption(mut self) -> Self {
        for entry in self.exact.values_mut().chain(self.wildcard.values_mut()) {
            if entry.tls.send_tls13_tickets == 0 && !entry.tls.session_storage.can_cache() {
                continue;
            }
            let mut tls = (*entry.tls).clone();
            tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            tls.send_tls13_tickets = 0;
            *entry = Arc::new(HostEntry {
                tls: Arc::new(tls),
                ..(**entry).clone()
            });
        }
        self
    }

    /// Every served host.
    pub fn hosts(&self) -> impl Iterator<Item = &Arc<HostEntry>> {
        self.exact.values().chain(self.wildcard.values())
    }

    fn insert(&mut self, entry: Arc<HostEntry>) {
        if entry.host.starts_with("*.") {
            self.wildcard.insert(entry.host.clone(), entry);
        } else {
            self.exact.insert(entry.host.clone(), entry);
        }
    }

    fn exact_or_wildcard(&self, host: &str) -> Option<&Arc<HostEntry>> {
        self.exact.get(host).or_else(|| self.wildcard.get(host))
    }

    /// Builds the next snapshot. `previous` supplies last good host configs
    /// when a host's new one is broken; `now` is Unix seconds.
    pub fn build(world: &World, classes: &Classes, previous: &Snapshot, now: i64) -> Snapshot {
        let idx = Index::new(world);
        let mut next = Snapshot::default();
        let mut drafts: BTreeMap<String, Draft> = BTreeMap::new();
        let mut ingresses: Vec<&Ingress> = world
            .ingresses
            .iter()
            .filter(|i| classes.serves(i))
            .collect();
        // Oldest first, as other controllers break ties.
        ingresses.sort_by_key(|i| {
            (
                i.metadata.creation_timestamp.as_ref().map(|t| t.0),
                i.namespace(),
                i.name_any(),
            )
        });
        let policy_index = PolicyIndex::new(&world.policies);
        for ing in ingresses {
            let findings = catalogue::assess(
                ing.annotations()
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
            let keys = catalogue::not_carried_over(&findings);
            if !keys.is_empty() {
                next.unsupported_annotations.insert(
                    (ing.namespace().unwrap_or_default(), ing.name_any()),
                    keys.into_iter().map(str::to_string).collect(),
                );
            }
            add_ingress(ing, &idx, &policy_index, &mut drafts, &mut next);
        }
        let mut certs: HashMap<String, Result<ServerCert, HostError>> = HashMap::new();
        let mut verifiers: HashMap<String, Result<PolicyTls, HostError>> = HashMap::new();
        // Verified tokens stay cached across rebuilds while a policy's
        // token rules are unchanged.
        let previous_auth: HashMap<&str, &HostAuth> = previous
            .hosts()
            .filter_map(|h| Some((h.policy.as_deref()?, h.auth.as_deref()?)))
            .collect();
        for (host, d) in drafts {
            let object = format!("Ingress {}", d.ingress);
            let built = build_host(
                &host,
                d,
                &idx,
                now,
                &mut certs,
                &mut verifiers,
                &previous_auth,
            );
            match built {
                Ok(entry) => next.insert(Arc::new(entry)),
                Err(error) => match previous.exact_or_wildcard(&host) {
                    Some(last_good) => {
                        next.insert(last_good.clone());
                        next.problems.push(Problem {
                            object,
                            issue: Issue::KeptLastGood {
                                host,
                                error: Box::new(error),
                            },
                        });
                    }
                    None => {
                        next.blocked.insert(host.clone());
                        next.problems.push(Problem {
                            object,
                            issue: Issue::NotServed {
                                host,
                                error: Box::new(error),
                            },
                        });
                    }
                },
            }
        }
        next
    }
}

/// Objects by namespace and name.
struct Index<'a> {
    secrets: HashMap<(&'a str, &'a str), &'a Secret>,
    config_maps: HashMap<(&'a str, &'a str), &'a ConfigMap>,
    services: HashMap<(&'a str, &'a str), &'a Service>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    policies: HashMap<(&'a str, &'a str), &'a ClientAuthPolicy>,
    /// See [`World::upstream_annotation_trusted`].
    upstream_annotation_trusted: bool,
}

fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (&str, &str) {
    (
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

impl<'a> Index<'a> {
    fn new(w: &'a World) -> Self {
        let mut slices: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for s in &w.endpoint_slices {
            if let Some(svc) = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
            {
                slices
                    .entry((
                        s.metadata.namespace.as_deref().unwrap_or_default(),
                        svc.as_str(),
                    ))
                    .or_default()
                    .push(s);
            }
        }
        Self {
            secrets: w.secrets.iter().map(|s| (key(&s.metadata), s)).collect(),
            config_maps: w
                .config_maps
                .iter()
                .map(|c| (key(&c.metadata), c))
                .collect(),
            services: w.services.iter().map(|s| (key(&s.metadata), s)).collect(),
            slices,
            policies: w.policies.iter().map(|p| (key(&p.metadata), p)).collect(),
            upstream_annotation_trusted: w.upstream_annotation_trusted,
        }
    }
}

struct Draft {
    /// `Strict-Transport-Security` from the first Ingress's annotation.
    hsts: Option<HeaderValue>,
    /// Upgrade protocols beyond WebSocket, from the first Ingress's
    /// annotation.
    upgrades: Arc<[String]>,
    ingress: String,
    namespace: String,
    secret: String,
    policy: Option<String>,
    /// The `auth-tls-*` annotations, read (when no policy is bound).
    nginx: Option<Result<ClientAuth, ClientAuthError>>,
    /// The `auth-tls-*` annotations as written, to tell Ingresses apart.
    nginx_key: Vec<(String, String)>,
    routes: RouteTable,
}

fn add_ingress(
    ing: &Ingress,
    idx: &Index,
    policies: &PolicyIndex,
    drafts: &mut BTreeMap<String, Draft>,
    next: &mut Snapshot,
) {
    let problems = &mut next.problems;
    let blocked = &mut next.blocked;
    let rule_hosts = || {
        ing.spec
            .iter()
            .flat_map(|s| s.rules.iter().flatten())
            .filter_map(|r| r.host.as_deref())
            .filter(|h| !h.is_empty())
            .map(|h| hosts::normalize(h).into_owned())
    };
    let ns = ing.namespace().unwrap_or_default();
    let id = format!("{ns}/{}", ing.name_any());
    let object = format!("Ingress {id}");
    let Some(spec) = ing.spec.as_ref() else {
        return;
    };
    let policy = match ing.annotations().get(CLIENT_AUTH_ANNOTATION) {
        Some(p) => Some(p.trim().to_string()),
        None => {
            let selecting = policies.selecting(&ns, ing.labels());
            match selecting.as_slice() {
                [] => None,
                [one] => Some(one.to_string()),
                many => {
                    problems.push(Problem {
                        object,
                        issue: Issue::AmbiguousPolicy {
                            policies: many.iter().map(|p| p.to_string()).collect(),
                        },
                    });
                    blocked.extend(rule_hosts());
                    return;
                }
            }
        }
    };
    let hsts = match ing.annotations().get(super::hsts::HSTS_ANNOTATION) {
        None => None,
        Some(v) => super::hsts::parse(v).unwrap_or_else(|e| {
            problems.push(Problem {
                object: object.clone(),
                issue: Issue::InvalidHsts(e),
            });
            None
        }),
    };
    let upgrades: Arc<[String]> = match ing.annotations().get(super::upgrades::UPGRADES_ANNOTATION)
    {
        None => Arc::from([]),
        Some(v) => super::upgrades::parse(v)
            .map(Arc::from)
            .unwrap_or_else(|e| {
                problems.push(Problem {
                    object: object.clone(),
                    issue: Issue::InvalidUpgrades(e),
                });
                Arc::from([])
            }),
    };
    let (nginx, nginx_key) = nginx_annotations(ing, &ns, policy.as_deref(), &object, problems);
    let (upstream, issues) = IngressUpstream::new(ing.annotations(), &ns, &id, |name| {
        idx.secrets.get(&(ns.as_str(), name))?.data.as_ref()
    });
    problems.extend(issues.into_iter().map(|issue| Problem {
        object: object.clone(),
        issue,
    }));
    let tls = spec.tls.as_deref().unwrap_or_default();
    let default_backend = spec
        .default_backend
        .as_ref()
        .and_then(|b| b.service.as_ref())
        .map(|svc| backend(idx, &ns, svc, &upstream));
    for rule in spec.rules.iter().flatten() {
        let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) else {
            problems.push(Problem {
                object: object.clone(),
                issue: Issue::RuleWithoutHost,
            });
            continue;
        };
        let host = hosts::normalize(host).into_owned();
        let secret = tls.iter().find_map(|t| {
            let name = t.secret_name.as_deref().filter(|s| !s.is_empty())?;
            t.hosts
                .iter()
                .flatten()
                .any(|h| {
                    let h = hosts::normalize(h);
                    h == host || hosts::covering_wildcard(&host).as_deref() == Some(h.as_ref())
                })
                .then(|| name.to_string())
        });
        let Some(secret) = secret else {
            blocked.insert(host.clone());
            problems.push(Problem {
                object: object.clone(),
                issue: Issue::HostWithoutTls { host },
            });
            continue;
        };
        let draft = drafts.entry(host.clone()).or_insert_with(|| Draft {
            hsts: hsts.clone(),
            upgrades: upgrades.clone(),
            ingress: id.clone(),
            namespace: ns.clone(),
            secret: secret.clone(),
            policy: policy.clone(),
            nginx: nginx.clone(),
            nginx_key: nginx_key.clone(),
            routes: RouteTable::default(),
        });
        if draft.namespace != ns
            || draft.secret != secret
            || draft.policy != policy
            || draft.nginx_key != nginx_key
        {
            problems.push(Problem {
                object: object.clone(),
                issue: Issue::HostTaken {
                    host,
                    by: draft.ingress.clone(),
                },
            });
            continue;
        }
        for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
            let Some(svc) = p.backend.service.as_ref() else {
                continue;
            };
            let kind = if p.path_type == "Exact" {
                PathKind::Exact
            } else {
                PathKind::Prefix
            };
            draft.routes.add(
                kind,
                p.path.as_deref().unwrap_or("/"),
                backend(idx, &ns, svc, &upstream),
            );
        }
        if let Some(b) = &default_backend {
            draft.routes.set_default(b.clone());
        }
    }
}

/// The Ingress's `auth-tls-*` annotations (unless a ClientAuthPolicy is
/// bound, which wins: the conflict is reported), and what of its
/// `ssl-redirect` annotations does not carry over.
type NginxAuth = (
    Option<Result<ClientAuth, ClientAuthError>>,
    Vec<(String, String)>,
);

fn nginx_annotations(
    ing: &Ingress,
    ns: &str,
    policy: Option<&str>,
    object: &str,
    problems: &mut Vec<Problem>,
) -> NginxAuth {
    let annotations = ing.annotations();
    for e in client_auth::parse_redirects(annotations).1 {
        problems.push(Problem {
            object: object.to_string(),
            issue: Issue::IngressNginx(e),
        });
    }
    let parsed = client_auth::parse(ns, annotations).transpose();
    if parsed.is_none() {
        return (None, Vec::new());
    }
    if let Some(policy) = policy {
        problems.push(Problem {
            object: object.to_string(),
            issue: Issue::AuthTlsOverridden {
                policy: policy.to_string(),
            },
        });
        return (None, Vec::new());
    }
    let key = annotations
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix(crate::ingress_nginx::PREFIX)
                .is_some_and(|k| k.starts_with("auth-tls-"))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (parsed, key)
}

/// What the `auth-tls-*` annotations verify with.
struct NginxTls {
    /// The verifier that decides `ssl-client-verify`; `None` for `off`.
    strict: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    /// The verifier handshakes use: `strict`, or one that accepts any
    /// certificate when the verdict is decided per request.
    handshake: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    anchors: Vec<Expiry>,
}

/// Builds the verifiers of `auth-tls-secret` (`ca.crt`, and `ca.crl` when
/// present) with the bundle builder and verifier a ClientAuthPolicy uses.
fn nginx_tls(idx: &Index, ca: &ClientAuth, now: i64) -> Result<NginxTls, AuthTlsError> {
    use client_auth::VerifyClient;
    if ca.verify == VerifyClient::Off {
        return Ok(NginxTls {
            strict: None,
            handshake: None,
            anchors: Vec::new(),
        });
    }
    let (ns, name) = (ca.namespace.as_str(), ca.secret.as_str());
    let secret = || format!("{ns}/{name}");
    let s = idx
        .secrets
        .get(&(ns, name))
        .ok_or_else(|| AuthTlsError::SecretNotFound { secret: secret() })?;
    let data = |key: &str| s.data.as_ref().and_then(|d| d.get(key)).map(|b| &b.0);
    let crt = data("ca.crt").ok_or_else(|| AuthTlsError::NoCaCrt { secret: secret() })?;
    let anchors = [PemInput::new(
        format!("Secret {} ca.crt", secret()),
        String::from_utf8_lossy(crt),
    )];
    let crls: Vec<PemInput> = data("ca.crl")
        .map(|c| {
            PemInput::new(
                format!("Secret {} ca.crl", secret()),
                String::from_utf8_lossy(c),
            )
        })
        .into_iter()
        .collect();
    let b = bundle::build(&anchors, &crls, now).map_err(|e| AuthTlsError::Bundle(Arc::new(e)))?;
    let ders: Vec<Vec<u8>> = b.anchors.iter().map(|a| a.der.clone()).collect();
    let strict = tls::client_verifier(
        &ders,
        &b.crls,
        ca.verify == VerifyClient::On,
        ca.verify_depth(),
    )
    .map_err(AuthTlsError::Verifier)?;
    let handshake = if ca.lenient_handshake() {
        tls::any_client_certificate(strict.clone())
    } else {
        strict.clone()
    };
    Ok(NginxTls {
        strict: Some(strict),
        handshake: Some(handshake),
        anchors: b
            .anchors
            .iter()
            .map(|a| Expiry {
                secret: format!(
                    "{}/anchor:{}",
                    secret(),
                    a.fingerprint
                        .trim_start_matches("sha256:")
                        .get(..16)
                        .unwrap_or_default()
                ),
                not_after: a.not_after,
            })
            .collect(),
    })
}

/// Resolves a Service port to endpoints: the `tlsward.io/upstream`
/// annotation, or the Service's EndpointSlices (ready endpoints only).
fn backend(
    idx: &Index,
    ns: &str,
    svc: &IngressServiceBackend,
    upstream: &IngressUpstream,
) -> Arc<Backend> {
    let via = upstream.via(ns, &svc.name);
    let port = svc.port.as_ref();
    let port_label = port
        .and_then(|p| p.number.map(|n| n.to_string()).or(p.name.clone()))
        .unwrap_or_default();
    let name = format!("{ns}/{}:{port_label}", svc.name);
    let Some(service) = idx.services.get(&(ns, svc.name.as_str())) else {
        return Backend::with_via(name, Vec::new(), via);
    };
    if let Some(list) = service
        .annotations()
        .get(UPSTREAM_ANNOTATION)
        .filter(|_| idx.upstream_annotation_trusted)
    {
        let eps = list
            .split(',')
            .filter_map(|a| a.trim().parse::<SocketAddr>().ok())
            .collect();
        return Backend::with_via(name, eps, via);
    }
    let service_port = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|ports| {
            ports.iter().find(|sp| match port {
                Some(p) if p.number.is_some() => p.number == Some(sp.port),
                Some(p) => p.name.is_some() && p.name == sp.name,
                None => true,
            })
        });
    let port_name = service_port.and_then(|p| p.name.clone());
    let mut eps = Vec::new();
    for slice in idx
        .slices
        .get(&(ns, svc.name.as_str()))
        .into_iter()
        .flatten()
    {
        let Some(number) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name == port_name)
            .and_then(|p| p.port)
        else {
            continue;
        };
        for ep in &slice.endpoints {
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for a in &ep.addresses {
                if let Ok(ip) = a.parse::<std::net::IpAddr>() {
                    eps.push(SocketAddr::new(ip, number as u16));
                }
            }
        }
    }
    eps.sort();
    Backend::with_via(name, eps, via)
}

#[derive(Clone)]
struct PolicyTls {
    /// Token and login checks.
    auth: Option<Arc<HostAuth>>,
    /// `None` for a policy without trust anchors (tokens or login only).
    verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    allowed: Option<AllowedClients>,
    forward: ForwardClientCert,
    anchors: Vec<Expiry>,
}

fn read_source(
    idx: &Index,
    ns: &str,
    field: String,
    src: &PemSource,
    default_key: &str,
) -> Result<PemInput, HostError> {
    if let Some(r) = &src.secret_ref {
        let key = r.key.as_deref().unwrap_or(default_key);
        let kind = SourceKind::Secret;
        let Some(s) = idx.secrets.get(&(ns, r.name.as_str())) else {
            let object = format!("{ns}/{}", r.name);
            return Err(HostError::SourceNotFound {
                field,
                kind,
                object,
            });
        };
        let Some(data) = s.data.as_ref().and_then(|d| d.get(key)) else {
            return Err(HostError::SourceKeyMissing {
                field,
                kind,
                object: format!("{ns}/{}", r.name),
                key: key.to_string(),
            });
        };
        return Ok(PemInput::new(
            format!("{field} (Secret {}, key {key})", r.name),
            String::from_utf8_lossy(&data.0),
        ));
    }
    if let Some(r) = &src.config_map_ref {
        let key = r.key.as_deref().unwrap_or(default_key);
        let kind = SourceKind::ConfigMap;
        let Some(c) = idx.config_maps.get(&(ns, r.name.as_str())) else {
            let object = format!("{ns}/{}", r.name);
            return Err(HostError::SourceNotFound {
                field,
                kind,
                object,
            });
        };
        let data = c
            .data
            .as_ref()
            .and_then(|d| d.get(key).cloned())
            .or_else(|| {
                c.binary_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            });
        let Some(data) = data else {
            return Err(HostError::SourceKeyMissing {
                field,
                kind,
                object: format!("{ns}/{}", r.name),
                key: key.to_string(),
            });
        };
        return Ok(PemInput::new(
            format!("{field} (ConfigMap {}, key {key})", r.name),
            data,
        ));
    }
    match &src.inline {
        Some(pem) => Ok(PemInput::new(format!("{field} (inline)"), pem.clone())),
        None => Err(HostError::NoSource { field }),
    }
}

fn policy_tls(
    idx: &Index,
    ns: &str,
    name: &str,
    now: i64,
    previous: Option<&HostAuth>,
) -> Result<PolicyTls, HostError> {
    let policy = || format!("{ns}/{name}");
    let p = idx
        .policies
        .get(&(ns, name))
        .ok_or_else(|| HostError::PolicyNotFound { policy: policy() })?;
    let auth = host_auth::build(p, &policy(), ns, &AuthLookup { idx, ns }, previous)?.map(Arc::new);
    if !p.spec.checks_certificates() {
        return Ok(PolicyTls {
            auth,
            verifier: None,
            allowed: None,
            forward: p.spec.forward_client_cert,
            anchors: Vec::new(),
        });
    }
    let anchors = p
        .spec
        .trust_anchors
        .iter()
        .enumerate()
        .map(|(i, s)| read_source(idx, ns, format!("spec.trustAnchors[{i}]"), s, "ca.crt"))
        .collect::<Result<Vec<_>, _>>()?;
    let crls = p
        .spec
        .revocation
        .iter()
        .enumerate()
        .map(|(i, s)| read_source(idx, ns, format!("spec.revocation[{i}]"), s, "ca.crl"))
        .collect::<Result<Vec<_>, _>>()?;
    let b = bundle::build(&anchors, &crls, now).map_err(|error| HostError::Bundle {
        policy: policy(),
        error: Box::new(error),
    })?;
    let ders: Vec<Vec<u8>> = b.anchors.iter().map(|a| a.der.clone()).collect();
    let verifier = tls::client_verifier(
        &ders,
        &b.crls,
        p.spec.mode == ClientAuthMode::Require,
        p.spec.verify_depth,
    )
    .map_err(|error| HostError::Verifier {
        policy: policy(),
        error,
    })?;
    Ok(PolicyTls {
        auth,
        verifier: Some(verifier),
        allowed: p.spec.allowed_clients.clone(),
        forward: p.spec.forward_client_cert,
        anchors: b
            .anchors
            .iter()
            .map(|a| Expiry {
                secret: format!(
                    "{ns}/{name}/anchor:{}",
                    a.fingerprint
                        .trim_start_matches("sha256:")
                        .get(..16)
                        .unwrap_or_default()
                ),
                not_after: a.not_after,
            })
            .collect(),
    })
}

/// What `host_auth::build` reads: the policy namespace's Secrets and PEM
/// sources.
struct AuthLookup<'i, 'a> {
    idx: &'i Index<'a>,
    ns: &'i str,
}

impl host_auth::Lookup for AuthLookup<'_, '_> {
    fn secret_data(&self, name: &str) -> Option<Vec<(&str, &[u8])>> {
        let s = self.idx.secrets.get(&(self.ns, name))?;
        Some(
            s.data
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.0.as_slice()))
                .collect(),
        )
    }

    fn pem(&self, field: String, src: &PemSource) -> Result<String, HostError> {
        Ok(read_source(self.idx, self.ns, field, src, "ca.crt")?.pem)
    }
}

/// A host's served certificate and its notAfter (Unix seconds).
type ServerCert = (Arc<rustls::sign::CertifiedKey>, i64);

fn server_cert(idx: &Index, ns: &str, name: &str) -> Result<ServerCert, HostError> {
    let secret = || format!("{ns}/{name}");
    let s = idx
        .secrets
        .get(&(ns, name))
        .ok_or_else(|| HostError::SecretNotFound { secret: secret() })?;
    let get = |key: &'static str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.as_slice())
            .ok_or_else(|| HostError::SecretKeyMissing {
                secret: secret(),
                key,
            })
    };
    let (crt, key) = (get("tls.crt")?, get("tls.key")?);
    let label = format!("Secret {ns}/{name}");
    let ck = tls::certified_key_from_pem(
        crt,
        key,
        &format!("{label} tls.crt"),
        &format!("{label} tls.key"),
    )
    .map_err(|e| HostError::Certificate(Arc::new(e)))?;
    let not_after = ck
        .cert
        .first()
        .and_then(|c| X509Certificate::from_der(c.as_ref()).ok())
        .map(|(_, c)| c.validity().not_after.timestamp())
        .unwrap_or_default();
    Ok((Arc::new(ck), not_after))
}

fn build_host(
    host: &str,
    d: Draft,
    idx: &Index,
    now: i64,
    certs: &mut HashMap<String, Result<ServerCert, HostError>>,
    verifiers: &mut HashMap<String, Result<PolicyTls, HostError>>,
    previous_auth: &HashMap<&str, &HostAuth>,
) -> Result<HostEntry, HostError> {
    let ns = d.namespace.as_str();
    let secret_id = format!("{ns}/{}", d.secret);
    let (cert, cert_not_after) = certs
        .entry(secret_id.clone())
        .or_insert_with(|| server_cert(idx, ns, &d.secret))
        .clone()?;
    let policy = match &d.policy {
        Some(name) => {
            let id = format!("{ns}/{name}");
            let previous = previous_auth.get(id.as_str()).copied();
            Some(
                verifiers
                    .entry(id)
                    .or_insert_with(|| policy_tls(idx, ns, name, now, previous))
                    .clone()?,
            )
        }
        None => None,
    };
    let cert_sha256 = cert
        .cert
        .first()
        .map(|c| {
            use sha2::{Digest, Sha256};
            Sha256::digest(c.as_ref())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .unwrap_or_default();
    let nginx = match d.nginx {
        None => None,
        Some(Err(e)) => {
            return Err(HostError::AuthTls {
                ingress: d.ingress,
                error: AuthTlsError::Annotation(e),
            });
        }
        Some(Ok(ca)) => match nginx_tls(idx, &ca, now) {
            Ok(t) => Some((Arc::new(ca), t)),
            Err(error) => {
                return Err(HostError::AuthTls {
                    ingress: d.ingress,
                    error,
                });
            }
        },
    };
    let (verifier, handshake_verifier) = match &nginx {
        Some((_, t)) => (t.strict.clone(), t.handshake.clone()),
        None => {
            let v = policy.as_ref().and_then(|p| p.verifier.clone());
            (v.clone(), v)
        }
    };
    let config =
        tls::host_server_config(cert, handshake_verifier).map_err(HostError::ServerConfig)?;
    let mut expiries = vec![Expiry {
        secret: secret_id.clone(),
        not_after: cert_not_after,
    }];
    expiries.extend(policy.iter().flat_map(|p| p.anchors.iter().cloned()));
    expiries.extend(nginx.iter().flat_map(|(_, t)| t.anchors.iter().cloned()));
    // Hosts reached over one connection must share its client check: an
    // implicit policy is the Ingress's own.
    let policy_name = match &nginx {
        Some(_) => Some(format!(
            "{} (nginx.ingress.kubernetes.io/auth-tls-* annotations)",
            d.ingress
        )),
        None => d.policy.as_ref().map(|p| format!("{ns}/{p}")),
    };
    let forward = match (&policy, &nginx) {
        (Some(p), _) => p.forward,
        // ingress-nginx's own headers instead (server.rs).
        (None, Some(_)) => ForwardClientCert::None,
        (None, None) => ForwardClientCert::Sanitize,
    };
    Ok(HostEntry {
        host: host.to_string(),
        ingress: d.ingress,
        cert_secret: secret_id,
        cert_sha256,
        policy: policy_name,
        allowed: policy.as_ref().and_then(|p| p.allowed.clone()),
        forward,
        tls: config,
        verifier,
        hsts: d.hsts,
        upgrades: d.upgrades,
        routes: d.routes,
        auth: policy.as_ref().and_then(|p| p.auth.clone()),
        nginx: nginx.map(|(ca, _)| ca),
        expiries,
        ok_requests: OnceLock::new(),
        auth_ok: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::networking::v1::IngressClass;
    use serde_json::json;

    use super::*;

    fn class(name: &str, controller: &str, default: bool) -> IngressClass {
        let ann = if default {
            json!({DEFAULT_CLASS_ANNOTATION: "true"})
        } else {
            json!({})
        };
        serde_json::from_value(json!({"metadata": {"name": name, "annotations": ann}, "spec": {"controller": controller}})).unwrap()
    }

    fn ing(class: Option<&str>) -> Ingress {
        serde_json::from_value(
            json!({"metadata": {"name": "i"}, "spec": {"ingressClassName": class}}),
        )
        .unwrap()
    }

    fn tls_secret(name: &str, host: &str) -> serde_json::Value {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![host.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": name, "namespace": "apps"},
               "stringData": {"tls.crt": cert.pem(), "tls.key": key.serialize_pem()}})
    }

    fn ingress(name: &str, host: &str, secret: &str, policy: Option<&str>) -> serde_json::Value {
        let ann = policy.map_or(json!({}), |p| json!({"tlsward.io/client-auth-policy": p}));
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": name, "namespace": "apps", "annotations": ann},
               "spec": {"ingressClassName": "tlsward", "tls": [{"hosts": [host], "secretName": secret}],
                        "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
    }

    /// Manifests as the directory source numbers them.
    fn documents<const N: usize>(
        values: [serde_json::Value; N],
    ) -> Vec<crate::manifests::Document> {
        values
            .into_iter()
            .enumerate()
            .map(|(i, value)| crate::manifests::Document {
                source: "t".into(),
                index: i + 1,
                value,
            })
            .collect()
    }

    #[test]
    fn a_host_that_is_not_served_is_not_answered_by_a_wildcard() {
        let docs = documents([
            tls_secret("wild-tls", "*.apps.example.com"),
            tls_secret("ghost-tls", "ghost.apps.example.com"),
            ingress("wild", "*.apps.example.com", "wild-tls", None),
            // Bound to a policy that does not exist: fail closed.
            ingress(
                "ghost",
                "ghost.apps.example.com",
                "ghost-tls",
                Some("missing"),
            ),
            // No TLS for this one: not served over HTTPS under another host's config either.
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "plain", "namespace": "apps"},
                   "spec": {"ingressClassName": "tlsward", "rules": [{"host": "plain.apps.example.com"}]}}),
        ]);
        let (world, problems) = World::from_documents(&docs);
        assert!(problems.is_empty(), "{problems:?}");
        let snap = Snapshot::build(
            &world,
            &Classes::named("tlsward"),
            &Snapshot::default(),
            1_795_392_000,
        );
        assert!(
            snap.lookup("other.apps.example.com").is_some(),
            "the wildcard serves its own hosts"
        );
        assert!(
            snap.lookup("ghost.apps.example.com").is_none(),
            "{:?}",
            snap.problems
        );
        assert!(snap.lookup("plain.apps.example.com").is_none());
        assert!(snap.problems.iter().any(|p| {
            let text = p.issue.to_string();
            text.contains("missing") && text.contains("is not served")
        }));
    }

    /// `tlsward.io/upstream` names endpoints in directory mode only: from
    /// Kubernetes a Service editor could aim the proxy anywhere.
    #[test]
    fn the_upstream_annotation_is_trusted_in_directory_mode_only() {
        let docs = documents([
            tls_secret("web-tls", "web.apps.example.com"),
            ingress("web", "web.apps.example.com", "web-tls", None),
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "web", "namespace": "apps",
                                "annotations": {UPSTREAM_ANNOTATION: "169.254.169.254:80"}},
                   "spec": {"ports": [{"port": 80}]}}),
        ]);
        let (mut world, problems) = World::from_documents(&docs);
        assert!(problems.is_empty(), "{problems:?}");
        let endpoints = |world: &World| {
            let snap = Snapshot::build(
                world,
                &Classes::named("tlsward"),
                &Snapshot::default(),
                1_795_392_000,
            );
            let host = snap.lookup("web.apps.example.com").cloned().unwrap();
            host.routes.lookup("/").unwrap().endpoints.clone()
        };
        assert_eq!(endpoints(&world), ["169.254.169.254:80".parse().unwrap()]);
        world.upstream_annotation_trusted = false;
        assert!(endpoints(&world).is_empty());
    }

    /// The documented decision for a CRL rustls cannot use: keep the last
    /// good host (its older CRL included) and report it; fail closed
    /// without one.
    #[test]
    fn a_refused_crl_keeps_the_last_good_host_or_is_not_served() {
        use super::super::problem::{HostErrorKind, Serving};
        use crate::testing::RawCrl;
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "snapshot client CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        let world = |crl: &RawCrl| {
            let docs = documents([
                tls_secret("crl-tls", "crl.apps.example.com"),
                ingress("crl", "crl.apps.example.com", "crl-tls", Some("crl")),
                json!({"apiVersion": "tlsward.io/v1alpha1", "kind": "ClientAuthPolicy",
                       "metadata": {"name": "crl", "namespace": "apps"},
                       "spec": {"trustAnchors": [{"inline": ca.pem()}],
                                "revocation": [{"inline": crl.pem(ca.der(), &key)}]}}),
            ]);
            World::from_documents(&docs).0
        };
        let classes = Classes::named("tlsward");
        let now = 1_795_392_000;
        let good = Snapshot::build(
            &world(&RawCrl::conforming()),
            &classes,
            &Snapshot::default(),
            now,
        );
        assert!(good.problems.is_empty(), "{:?}", good.problems);
        let served = good.lookup("crl.apps.example.com").unwrap().clone();

        let bad = world(&RawCrl::extensionless());
        let kept = Snapshot::build(&bad, &classes, &good, now);
        assert!(Arc::ptr_eq(
            kept.lookup("crl.apps.example.com").unwrap(),
            &served
        ));
        let [problem] = kept.problems.as_slice() else {
            panic!("{:?}", kept.problems)
        };
        let (host, serving, error) = problem.issue.refused_host().unwrap();
        assert_eq!(
            (host, serving, error.kind()),
            (
                "crl.apps.example.com",
                Serving::LastGood,
                HostErrorKind::InvalidCrl
            )
        );
        let text = problem.to_string();
        assert!(
            text.contains(
                "spec.revocation[0] (inline): CRL 1 cannot be used: it lacks the CRL Number"
            ) && text.contains("whose older CRLs stay in force"),
            "{text}"
        );

        let fresh = Snapshot::build(&bad, &classes, &Snapshot::default(), now);
        assert!(
            fresh.lookup("crl.apps.example.com").is_none(),
            "fail closed"
        );
        let (_, serving, error) = fresh.problems[0].issue.refused_host().unwrap();
        assert_eq!(
            (serving, error.kind()),
            (Serving::Nothing, HostErrorKind::InvalidCrl)
        );
    }

    #[test]
    fn classes_follow_the_controller_and_the_default() {
        let c = Classes::from_ingress_classes(
            &[
                class("edge", CONTROLLER, true),
                class("nginx", "k8s.io/ingress-nginx", false),
            ],
            "tlsward",
        );
        assert!(
            c.serves(&ing(Some("edge"))),
            "a class whose controller is ours"
        );
        assert!(
            c.serves(&ing(Some("tlsward"))),
            "the --ingress-class name, not taken by another controller"
        );
        assert!(!c.serves(&ing(Some("nginx"))));
        assert!(c.serves(&ing(None)), "our class is the cluster default");

        let taken = Classes::from_ingress_classes(
            &[class("tlsward", "example.com/other", false)],
            "tlsward",
        );
        assert!(
            !taken.serves(&ing(Some("tlsward"))),
            "a class of that name belongs to another controller"
        );
        assert!(!taken.serves(&ing(None)));
        assert!(Classes::named("tlsward").serves(&ing(Some("tlsward"))));
    }
}
