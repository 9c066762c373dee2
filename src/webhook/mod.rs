//! `tlsward webhook`: the HTTPS admission server. Decisions come from
//! [`review::decide`]; this module only serves, reloads and reports.

pub mod metrics;
pub mod review;
pub mod selfsigned;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use tracing::{info, warn};

use crate::admission::Context;
use crate::clientauth::{ClientAuthPolicy, PolicyIndex};
use crate::conn::{CloseReason, ConnLimits};
use crate::labels::Selector;
use crate::manifests::{self, ManifestError};
use crate::policy::{IngressTlsPolicy, PolicyError};
use crate::telemetry::{self, Outcome, ReloadLabels};
use crate::tls::{self, SwappableCert};
use metrics::{ReviewLabels, WebhookMetrics};
use review::{Hook, Operation, ReviewVerdict};

/// The API server sends at most 3 MiB objects; anything larger is not a
/// review we should spend memory on.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How the webhook is started.
#[derive(Clone, Debug, clap::Args)]
pub struct WebhookArgs {
    /// PEM certificate chain served on the HTTPS port; reloaded on change.
    #[arg(
        long,
        required_unless_present = "self_signed_secret",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert; reloaded on change.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Manage the serving certificate without cert-manager: a CA and serving
    /// certificate kept in this Secret (NAMESPACE/NAME), created if missing,
    /// rotated before expiry, and its CA patched into --webhook-config.
    #[arg(
        long,
        value_name = "NS/NAME",
        conflicts_with = "tls_cert",
        requires = "webhook_config"
    )]
    pub self_signed_secret: Option<String>,
    /// Validating and Mutating webhook configurations (same name) whose
    /// caBundle the webhook keeps current; repeatable.
    #[arg(long = "webhook-config", value_name = "NAME")]
    pub webhook_config: Vec<String>,
    /// HTTPS address the API server calls.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Plain-HTTP address for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// Admission policy file; reloaded on change. Secure defaults without it.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Manifests (files or directories) of the ClientAuthPolicies to bind
    /// against, for running without a cluster; reloaded on change.
    #[arg(long = "client-auth-policies")]
    pub client_auth_policies: Vec<PathBuf>,
    /// Read ClientAuthPolicies and Namespace labels from the cluster
    /// (in-cluster config or KUBECONFIG), so bindings resolve and
    /// `exemptions.namespaceSelector` applies.
    #[arg(long, conflicts_with = "client_auth_policies")]
    pub kubernetes: bool,
    /// How often files are checked for changes, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub reload_interval_ms: u64,
    /// How long in-flight requests may take to finish on SIGTERM, in seconds.
    #[arg(long, default_value_t = 20)]
    pub shutdown_grace_seconds: u64,
    /// TLS handshake timeout, in seconds.
    #[arg(long, default_value_t = 10)]
    pub handshake_timeout_seconds: u64,
    /// Time allowed to send a request head, in seconds, counted from its
    /// first byte (HTTP/1.1 and h2); the first request must also be complete
    /// this long after the handshake.
    #[arg(long, default_value_t = 10)]
    pub header_read_timeout_seconds: u64,
    /// Time allowed to send a request body, in seconds, counted from the end
    /// of its head. A slower body gets 408 and its connection is closed.
    #[arg(long, default_value_t = 10)]
    pub body_read_timeout_seconds: u64,
    /// How long a connection with no request in flight is kept open, in
    /// seconds. Longer than the 90 s for which Go's HTTP client (the API
    /// server's) keeps an idle connection by default, so on HTTP/1.1 the
    /// client closes first and no review races the server's close.
    #[arg(long, default_value_t = 120)]
    pub idle_timeout_seconds: u64,
    /// Largest request head, in bytes: the whole HTTP/1.1 head (431 above
    /// it), the h2 header list size.
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Maximum age of a connection, in seconds; 0 for none. An older one is
    /// asked to close (h2 GOAWAY, HTTP/1.1 `Connection: close`), which
    /// spreads the API server's long-lived connections over the replicas
    /// again after a rollout. Each connection's limit is up to 10% shorter.
    #[arg(long, default_value_t = 600)]
    pub max_connection_age_seconds: u64,
    /// How long a connection asked to close (maximum age, a timeout) may
    /// take to finish its in-flight reviews, in seconds, before it is
    /// closed hard.
    #[arg(long, default_value_t = 30)]
    pub max_connection_age_grace_seconds: u64,
    /// h2 keep-alive: send a PING after this many seconds without frames
    /// from the client; 0 (the default) sends none.
    #[arg(long, default_value_t = 0)]
    pub h2_keepalive_interval_seconds: u64,
    /// h2 keep-alive: close the connection when a PING is not answered
    /// within this many seconds.
    #[arg(long, default_value_t = 20)]
    pub h2_keepalive_timeout_seconds: u64,
}

impl WebhookArgs {
    fn serve_settings(&self) -> serve::Settings {
        serve::Settings {
            handshake_timeout: Duration::from_secs(self.handshake_timeout_seconds),
            conn: ConnLimits::from_flags(
                self.header_read_timeout_seconds,
                self.idle_timeout_seconds,
                self.max_header_bytes,
                self.max_connection_age_seconds,
                self.max_connection_age_grace_seconds,
                self.h2_keepalive_interval_seconds,
                self.h2_keepalive_timeout_seconds,
            ),
        }
    }
}

/// What every review is decided against; replaced whole on reload.
pub struct Snapshot {
    policy: IngressTlsPolicy,
    namespace_exemption: Option<Selector>,
    known: PolicyIndex,
}

impl Snapshot {
    /// Compiles a policy and the known ClientAuthPolicies.
    pub fn new(policy: IngressTlsPolicy, known: &[ClientAuthPolicy]) -> Self {
        let namespace_exemption = policy
            .exemptions
            .namespace_selector
            .as_ref()
            .and_then(|s| Selector::compile(s).ok());
        Self {
            policy,
            namespace_exemption,
            known: PolicyIndex::new(known),
        }
    }

    /// The admission context, with the request namespace's labels when the
    /// webhook watches the cluster.
    pub fn context<'a>(
        &'a self,
        namespace_labels: Option<&'a std::collections::BTreeMap<String, String>>,
    ) -> Context<'a> {
        Context {
            policy: &self.policy,
            namespace_exemption: self.namespace_exemption.as_ref(),
            known: &self.known,
            namespace_labels,
        }
    }
}

struct App {
    snapshot: ArcSwap<Snapshot>,
    metrics: WebhookMetrics,
    /// `--body-read-timeout-seconds`.
    body_read_timeout: Duration,
    admin: Arc<telemetry::Admin>,
    cluster: Option<Cluster>,
}

/// The cluster's ClientAuthPolicies and Namespaces, kept by reflectors.
struct Cluster {
    policies: Store<ClientAuthPolicy>,
    namespaces: Store<Namespace>,
    /// Bumped on every policy event, so the reload loop rebuilds.
    version: Arc<AtomicU64>,
}

impl Cluster {
    /// Starts the reflectors; the returned future drives them.
    fn watch(client: Client) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, reflector, watcher};
        let (policies, pw) = reflector::store();
        let (namespaces, nw) = reflector::store();
        let version = Arc::new(AtomicU64::new(0));
        let bump = version.clone();
        let p = reflector::reflector(
            pw,
            watcher(
                Api::<ClientAuthPolicy>::all(client.clone()),
                watcher::Config::default(),
            ),
        )
        .default_backoff()
        .for_each(move |e| {
            if let Err(err) = e {
                warn!(error = %err, "watching ClientAuthPolicies");
            }
            bump.fetch_add(1, Ordering::AcqRel);
            async {}
        });
        let n = reflector::reflector(
            nw,
            watcher(Api::<Namespace>::all(client), watcher::Config::default()),
        )
        .default_backoff()
        .for_each(|e| {
            if let Err(err) = e {
                warn!(error = %err, "watching Namespaces");
            }
            async {}
        });
        let drive = async move {
            tokio::join!(p, n);
        };
        (
            Self {
                policies,
                namespaces,
                version,
            },
            drive,
        )
    }

    async fn ready(&self) -> bool {
        self.policies.wait_until_ready().await.is_ok()
            && self.namespaces.wait_until_ready().await.is_ok()
    }

    fn policies(&self) -> Vec<ClientAuthPolicy> {
        self.policies
            .state()
            .iter()
            .map(|p| p.as_ref().clone())
            .collect()
    }
}

/// Why the policy file or the ClientAuthPolicy manifests could not be
/// loaded. The previous ones stay in use.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    /// The policy file was refused.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A manifest could not be read or parsed.
    #[error(transparent)]
    Manifests(#[from] ManifestError),
    /// A ClientAuthPolicy document does not decode as one.
    #[error("{path}: document {index}: not a valid ClientAuthPolicy: {source}")]
    ClientAuthPolicy {
        /// The file.
        path: String,
        /// 1-based document number.
        index: usize,
        /// The decoder's error, naming the field.
        source: serde_json::Error,
    },
}

fn load_policy(path: Option<&PathBuf>) -> Result<IngressTlsPolicy, LoadError> {
    Ok(match path {
        Some(p) => IngressTlsPolicy::load(p)?,
        None => IngressTlsPolicy::default(),
    })
}

fn load_client_auth_policies(paths: &[PathBuf]) -> Result<Vec<ClientAuthPolicy>, LoadError> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for doc in manifests::read_paths(paths)? {
        if doc.type_meta().1 != "ClientAuthPolicy" {
            continue;
        }
        let mut p: ClientAuthPolicy =
            serde_json::from_value(doc.value.clone()).map_err(|source| {
                LoadError::ClientAuthPolicy {
                    path: doc.source.clone(),
                    index: doc.index,
                    source,
                }
            })?;
        p.metadata
            .namespace
            .get_or_insert_with(|| crate::admission::DEFAULT_NAMESPACE.into());
        out.push(p);
    }
    Ok(out)
}

fn reply(app: &App, hook: Hook, body: &[u8]) -> Response {
    let started = Instant::now();
    let snapshot = app.snapshot.load();
    let lookup = |ns: &str| {
        app.cluster
            .as_ref()
            .and_then(|c| c.namespaces.get(&ObjectRef::new(ns)))
    };
    let result = review::decide(hook, body, &snapshot, Some(&lookup));
    let elapsed = started.elapsed();
    app.metrics.observe_duration(hook, elapsed.as_secs_f64());
    match result {
        Ok(d) => {
            app.metrics.count_review(ReviewLabels {
                webhook: hook,
                operation: Operation::of(&d.operation),
                verdict: d.verdict,
            });
            info!(
                webhook = hook.label(),
                uid = %d.response.uid,
                object = %d.object,
                operation = %d.operation,
                verdict = d.verdict.label(),
                dry_run = d.dry_run,
                duration_us = elapsed.as_micros() as u64,
                "review"
            );
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                d.to_json(),
            )
                .into_response()
        }
        Err(reason) => {
            app.metrics.count_review(ReviewLabels {
                webhook: hook,
                operation: Operation::Unknown,
                verdict: ReviewVerdict::BadRequest,
            });
            warn!(webhook = hook.label(), %reason, "bad request");
            (StatusCode::BAD_REQUEST, format!("{reason}\n")).into_response()
        }
    }
}

/// The HTTPS routes, exposed for tests and benchmarks.
fn admission_router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/validate",
            post(|State(app): State<Arc<App>>, req: Request| answer(app, Hook::Validate, req)),
        )
        .route(
            "/mutate",
            post(|State(app): State<Arc<App>>, req: Request| answer(app, Hook::Mutate, req)),
        )
        // Explicit, so that the layer below covers unknown paths too.
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: use /validate or /mutate\n",
            )
        })
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app)
}

/// Added to every answer of the admission port. The API server ignores
/// them; a browser or scanner that reaches the port is told not to sniff,
/// frame or cache what may hold an object's content, and to stay on HTTPS.
async fn security_headers(mut resp: axum::response::Response) -> axum::response::Response {
    use axum::http::header::{self, HeaderValue};
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    resp
}

/// Reads a body of at most [`MAX_BODY_BYTES`], within the body-read
/// timeout, and answers it. The limits are applied here, not by router
/// layers: a layer allocates and clones boxed services on every review.
async fn answer(app: Arc<App>, hook: Hook, req: Request) -> Response {
    let conn = req.extensions().get::<serve::ConnHandle>().cloned();
    let read = tokio::time::timeout(
        app.body_read_timeout,
        axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES),
    )
    .await;
    let Ok(read) = read else {
        // A body trickled in holds its connection: close that too.
        if let Some(conn) = conn {
            conn.0.close(CloseReason::BodyTimeout);
        }
        warn!(webhook = hook.label(), "request body not received in time");
        return (
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not received within {} s\n",
                app.body_read_timeout.as_secs_f64()
            ),
        )
            .into_response();
    };
    match read {
        Ok(body) => reply(&app, hook, &body),
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body over {MAX_BODY_BYTES} bytes: not an AdmissionReview the API server sends\n"),
                )
                    .into_response()
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    format!("failed to read the request body: {e}\n"),
                )
                    .into_response()
            }
        }
    }
}

fn count(
    family: &prometheus_client::metrics::family::Family<
        ReloadLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    result: Outcome,
) {
    family.get_or_create(&ReloadLabels { result }).inc();
}

/// Polls the certificate, the policy file and the ClientAuthPolicy manifests.
/// A file that fails to load leaves the previous content in use.
async fn reload_loop(app: Arc<App>, args: WebhookArgs, cert: Arc<SwappableCert>) {
    let cert_files: Vec<PathBuf> = args
        .tls_cert
        .iter()
        .chain(args.tls_key.iter())
        .cloned()
        .collect();
    let policy_files: Vec<PathBuf> = args.policy.iter().cloned().collect();
    let known_files = manifest_files(&args.client_auth_policies);
    let mut cert_seen = tls::fingerprint(&cert_files);
    let cluster_version = || {
        app.cluster
            .as_ref()
            .map(|c| c.version.load(Ordering::Acquire))
    };
    let mut policy_seen = (
        tls::fingerprint(&policy_files),
        tls::fingerprint(&known_files),
        cluster_version(),
    );
    let mut tick = tokio::time::interval(Duration::from_millis(args.reload_interval_ms.max(50)));
    loop {
        tick.tick().await;
        let now = tls::fingerprint(&cert_files);
        if let (Some(crt), Some(key)) = (&args.tls_cert, &args.tls_key)
            && now.is_some()
            && now != cert_seen
        {
            cert_seen = now;
            match tls::load_pair(crt, key) {
                Ok(pair) => {
                    cert.store(pair);
                    count(&app.metrics.certificate_reloads, Outcome::Success);
                    info!(cert = %crt.display(), "serving certificate reloaded");
                }
                Err(e) => {
                    count(&app.metrics.certificate_reloads, Outcome::Failure);
                    warn!(error = %e, "serving certificate not reloaded; keeping the previous one");
                }
            }
        }
        let known_files = manifest_files(&args.client_auth_policies);
        let now = (
            tls::fingerprint(&policy_files),
            tls::fingerprint(&known_files),
            cluster_version(),
        );
        if now != policy_seen {
            policy_seen = now;
            let loaded = load_policy(args.policy.as_ref()).and_then(|p| {
                let known = match &app.cluster {
                    Some(c) => c.policies(),
                    None => load_client_auth_policies(&args.client_auth_policies)?,
                };
                Ok(Snapshot::new(p, &known))
            });
            match loaded {
                Ok(s) => {
                    info!(client_auth_policies = s.known.len(), enforcement = ?s.policy.enforcement, "policy reloaded");
                    app.snapshot.store(Arc::new(s));
                    count(&app.metrics.policy_reloads, Outcome::Success);
                }
                Err(e) => {
                    count(&app.metrics.policy_reloads, Outcome::Failure);
                    warn!(error = %e, "policy not reloaded; keeping the previous one");
                }
            }
        }
    }
}

fn manifest_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            if let Ok(rd) = std::fs::read_dir(p) {
                let mut files: Vec<PathBuf> = rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file())
                    .collect();
                files.sort();
                out.extend(files);
            }
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// Bootstraps the self-managed certificate (retrying until the API answers)
/// and keeps it current in the background.
async fn self_signed(secret: &str, configs: &[String]) -> anyhow::Result<Arc<SwappableCert>> {
    let Some((namespace, name)) = secret.split_once('/') else {
        anyhow::bail!("--self-signed-secret {secret:?}: write it as NAMESPACE/NAME");
    };
    let client = Client::try_default()
        .await
        .context("--self-signed-secret: no Kubernetes API reachable (in-cluster or KUBECONFIG)")?;
    let cfg = selfsigned::SelfSigned {
        namespace: namespace.into(),
        secret: name.into(),
        configs: configs.to_vec(),
    };
    // Something to hand rustls until the real certificate is in place.
    let placeholder = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let served = SwappableCert::new(tls::certified_key_from_pem(
        placeholder.cert.pem().as_bytes(),
        placeholder.signing_key.serialize_pem().as_bytes(),
        "placeholder",
        "placeholder",
    )?);
    let mut state = selfsigned::Rotation::default();
    let now = || k8s_openapi::jiff::Timestamp::now().as_second();
    loop {
        match selfsigned::sync(&client, &cfg, &served, &mut state, now()).await {
            Ok(_) => break,
            Err(e) => {
                warn!(error = %e, "webhook certificate bootstrap failed; retrying in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
    tokio::spawn(selfsigned::run(client, cfg, served.clone(), state, now));
    Ok(served)
}

/// Runs the webhook until SIGTERM or Ctrl-C, then drains in-flight requests.
pub async fn run(args: WebhookArgs) -> anyhow::Result<()> {
    let snapshot = Snapshot::new(
        load_policy(args.policy.as_ref()).context("loading --policy")?,
        &load_client_auth_policies(&args.client_auth_policies)
            .context("loading --client-auth-policies")?,
    );
    let mut registry = Registry::default();
    let metrics = WebhookMetrics::register(&mut registry);
    let cluster = if args.kubernetes {
        let client = Client::try_default()
            .await
            .context("--kubernetes: no Kubernetes API reachable (in-cluster or KUBECONFIG)")?;
        let (cluster, drive) = Cluster::watch(client);
        tokio::spawn(drive);
        Some(cluster)
    } else {
        None
    };
    let app = Arc::new(App {
        snapshot: ArcSwap::from_pointee(snapshot),
        metrics,
        body_read_timeout: Duration::from_secs(args.body_read_timeout_seconds),
        admin: Arc::new(telemetry::Admin {
            registry,
            ready: Arc::new(AtomicBool::new(false)),
        }),
        cluster,
    });

    let admin = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("binding --admin-listen {}", args.admin_listen))?;
    let admin_app = telemetry::admin_router(app.admin.clone());
    tokio::spawn(async move {
        let _ = axum::serve(admin, admin_app)
            .with_graceful_shutdown(crate::shutdown::signal())
            .await;
    });

    // The admin port is up before the certificate bootstrap, which may wait
    // for the API server: liveness must not restart a pod that is waiting.
    let cert = match (&args.tls_cert, &args.tls_key, &args.self_signed_secret) {
        (Some(crt), Some(key), _) => SwappableCert::new(tls::load_pair(crt, key)?),
        (_, _, Some(secret)) => self_signed(secret, &args.webhook_config).await?,
        _ => anyhow::bail!("give --tls-cert and --tls-key, or --self-signed-secret"),
    };
    let server_config = tls::server_config(cert.clone())?;

    tokio::spawn(reload_loop(app.clone(), args.clone(), cert));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding --listen {}", args.listen))?;
    let addr = listener.local_addr()?;
    {
        let app = app.clone();
        let policy_path = args.policy.clone();
        tokio::spawn(async move {
            // In a cluster, bindings and exemptions need the stores first.
            if let Some(c) = &app.cluster {
                if !c.ready().await {
                    return;
                }
                match load_policy(policy_path.as_ref()) {
                    Ok(p) => app
                        .snapshot
                        .store(Arc::new(Snapshot::new(p, &c.policies()))),
                    Err(e) => warn!(error = %e, "policy not loaded"),
                }
            }
            app.admin.ready.store(true, Ordering::Release);
            info!(%addr, "webhook listening");
        });
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let accepting = tokio::spawn(serve::serve(
        listener,
        Arc::new(server_config),
        app,
        Arc::new(args.serve_settings()),
        stop_rx,
        active.clone(),
    ));
    crate::shutdown::signal().await;
    info!("shutting down: draining in-flight reviews");
    let _ = stop_tx.send(true);
    let _ = accepting.await;
    // Connections finish their reviews (HTTP/1.1) or get GOAWAY (h2).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.shutdown_grace_seconds);
    while active.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    info!("webhook stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::http::{Request, Response};
    use http_body_util::BodyExt;
    use kube::client::Body;
    use serde_json::{Value, json};
    use tokio::sync::mpsc;

    use super::*;
    use crate::testing::api_server;

    fn review(namespace: &str, annotations: Value) -> Vec<u8> {
        let object = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "shop", "namespace": namespace, "annotations": annotations},
            "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.example.com"], "secretName": "a-tls"}],
                     "rules": [{"host": "a.example.com"}, {"host": "uncovered.example.com"}]}});
        serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"},
                        "operation": "CREATE", "namespace": namespace, "name": "shop", "object": object}}))
        .unwrap()
    }

    async fn answer(app: &App, hook: Hook, body: Vec<u8>) -> Value {
        let resp = reply(app, hook, &body);
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice::<Value>(&bytes).unwrap()["response"].clone()
    }

    #[tokio::test]
    async fn cluster_policies_and_namespace_labels_reach_admission() {
        let ns = |name: &str, labels: Value| {
            json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels, "resourceVersion": "1"}})
        };
        let lists = HashMap::from([
            (
                "/api/v1/namespaces",
                vec![
                    ns("legacy", json!({"tlsward.io/exempt": "true"})),
                    ns("shop", json!({})),
                ],
            ),
            (
                "/apis/tlsward.io/v1alpha1/clientauthpolicies",
                vec![json!({"apiVersion": "tlsward.io/v1alpha1",
                "kind": "ClientAuthPolicy", "metadata": {"name": "clients", "namespace": "shop", "resourceVersion": "1"},
                "spec": {"mode": "Require", "verifyDepth": 2, "trustAnchors": [{"secretRef": {"name": "ca"}}]}})],
            ),
        ]);
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let (events, rx) = mpsc::channel(4);
        tokio::spawn(api_server(handle, lists, rx));
        let (cluster, drive) = Cluster::watch(Client::new(service, "default"));
        tokio::spawn(drive);
        assert!(cluster.ready().await);
        let policy = IngressTlsPolicy::from_yaml(
            "p",
            "exemptions: {namespaceSelector: {matchLabels: {tlsward.io/exempt: 'true'}}}",
        )
        .unwrap();
        let mut registry = Registry::default();
        let app = App {
            snapshot: ArcSwap::from_pointee(Snapshot::new(policy.clone(), &cluster.policies())),
            metrics: WebhookMetrics::register(&mut registry),
            body_read_timeout: Duration::from_secs(10),
            admin: Arc::new(telemetry::Admin {
                registry,
                ready: Arc::new(AtomicBool::new(true)),
            }),
            cluster: Some(cluster),
        };

        // A namespace label exempts; its absence does not.
        let r = answer(&app, Hook::Validate, review("legacy", json!({}))).await;
        assert_eq!(r["allowed"], true, "{r}");
        let r = answer(&app, Hook::Validate, review("shop", json!({}))).await;
        assert_eq!(r["allowed"], false, "{r}");

        // A binding resolves against the cluster's policy.
        let r = answer(
            &app,
            Hook::Mutate,
            review("shop", json!({"tlsward.io/client-auth-policy": "clients"})),
        )
        .await;
        let patch = String::from_utf8(
            base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                r["patch"].as_str().unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        assert!(
            patch.contains("shop/clients-ca") && patch.contains("\"2\""),
            "{patch}"
        );

        // A label added later is seen without a restart.
        events
            .send(("/api/v1/namespaces", json!({"type": "MODIFIED", "object": ns("shop", json!({"tlsward.io/exempt": "true"}))})))
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while answer(&app, Hook::Validate, review("shop", json!({}))).await["allowed"] != true {
            assert!(
                tokio::time::Instant::now() < deadline,
                "label change not seen"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
