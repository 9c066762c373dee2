//! `tlsward proxy`: the rustls ingress data plane. Sources build a
//! [`world::World`]; [`snapshot::Snapshot::build`] turns it into serving
//! state; [`server`] serves it.

pub mod authenticate;
pub mod authority;
mod backend_via;
mod github;
pub mod host_auth;
pub mod hsts;
pub mod identity;
pub mod kube_source;
mod login_flow;
pub mod problem;
pub mod routes;
pub mod server;
pub mod snapshot;
pub mod status;
pub mod upgrades;
mod upstream;
pub mod world;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::conn::ConnLimits;
use crate::manifests::{self, Document, ManifestError};
use crate::telemetry::{
    self, ExpiryLabels, HostErrorLabels, IngressLabels, Outcome, ProxyMetrics, ReloadLabels,
};
use problem::{HostErrorKind, Issue, Problem};
use server::{Limits, Shared};
use snapshot::Snapshot;
use world::World;

/// How the proxy is started.
#[derive(Clone, Debug, clap::Args)]
pub struct ProxyArgs {
    /// Serve from a directory of manifests (Ingress, Secret, ClientAuthPolicy,
    /// Service, EndpointSlice), watched for changes. Without it, the proxy
    /// watches the cluster (in-cluster config or KUBECONFIG).
    #[arg(long)]
    pub config_dir: Option<PathBuf>,
    /// HTTPS address.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub https_listen: SocketAddr,
    /// Plain-HTTP address; every request is redirected to HTTPS.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub http_listen: SocketAddr,
    /// Port clients use for HTTPS, in redirects (443 behind a Service).
    #[arg(long, default_value_t = 443)]
    pub redirect_https_port: u16,
    /// Plain-HTTP address for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// In a cluster: the proxy's own Service (NAMESPACE/NAME), whose
    /// load-balancer address is written to the served Ingresses' status.
    #[arg(long, value_name = "NS/NAME", conflicts_with = "config_dir")]
    pub publish_service: Option<String>,
    /// The IngressClass name whose Ingresses are served (in a cluster, also
    /// every IngressClass whose controller is tlsward.io/proxy).
    #[arg(long, default_value = "tlsward")]
    pub ingress_class: String,
    /// How often the directory is checked for changes, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub reload_interval_ms: u64,
    /// TLS handshake timeout, in seconds.
    #[arg(long, default_value_t = 10)]
    pub handshake_timeout_seconds: u64,
    /// Let clients resume TLS sessions (TLS 1.3 tickets and TLS 1.2 session
    /// IDs, kept in memory per host), which saves a full handshake and the
    /// client-certificate check on reconnects. A resumed session keeps the
    /// identity verified when it was made; every configuration change
    /// (a new certificate, CA bundle or CRL) starts a fresh cache, so a
    /// client revoked since cannot resume past it. `false` makes every
    /// connection a full handshake.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub session_resumption: bool,
    /// Time allowed to send a request head, in seconds, counted from its
    /// first byte (slowloris guard); HTTP/1.1 and h2 (a header block, and
    /// the first request after the handshake).
    #[arg(long, default_value_t = 10)]
    pub header_read_timeout_seconds: u64,
    /// How long a connection with no request in flight is kept open waiting
    /// for its next request, in seconds (HTTP/1.1 keep-alive and h2). Idle
    /// HTTP/1.1 connections hold no HTTP buffers, only their TLS state.
    #[arg(long, default_value_t = 75)]
    pub idle_timeout_seconds: u64,
    /// Largest request head, in bytes: the whole HTTP/1.1 head (431 above
    /// it), the h2 header list size.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,
    /// Maximum age of an HTTPS connection, in seconds; 0 for none. An older
    /// connection is asked to close (h2 GOAWAY, HTTP/1.1 `Connection:
    /// close` after the current response), so clients reconnect and
    /// re-handshake against the current certificates, CAs and CRLs. Each
    /// connection's limit is up to 10% shorter, so that connections opened
    /// together do not reconnect together. WebSocket tunnels are exempt.
    #[arg(long, default_value_t = 3600)]
    pub max_connection_age_seconds: u64,
    /// How long a connection asked to close (maximum age, a timeout, or
    /// shutdown) may take to finish its in-flight requests, in seconds,
    /// before it is closed hard.
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
    /// Connections served at once.
    #[arg(long, default_value_t = 16384)]
    pub max_connections: usize,
    /// HTTPS worker threads; 0 means one per CPU. Each has its own listener
    /// on the HTTPS port (SO_REUSEPORT, so the kernel spreads connections),
    /// its own connections and its own upstream pool, like nginx's workers:
    /// a request never crosses threads.
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Upstream connect timeout, in seconds (502 after it).
    #[arg(long, default_value_t = 5)]
    pub upstream_connect_timeout_seconds: u64,
    /// Upstream response-head timeout, in seconds (504 after it).
    #[arg(long, default_value_t = 60)]
    pub upstream_response_timeout_seconds: u64,
    /// How long connections may drain on SIGTERM, in seconds.
    #[arg(long, default_value_t = 20)]
    pub shutdown_grace_seconds: u64,
}

impl ProxyArgs {
    /// The per-connection HTTP limits the flags set.
    fn conn_limits(&self) -> ConnLimits {
        ConnLimits::from_flags(
            self.header_read_timeout_seconds,
            self.idle_timeout_seconds,
            self.max_header_bytes,
            self.max_connection_age_seconds,
            self.max_connection_age_grace_seconds,
            self.h2_keepalive_interval_seconds,
            self.h2_keepalive_timeout_seconds,
        )
    }
}

/// Longest time between two snapshot builds: expiry is evaluated at build.
pub const REBUILD: Duration = Duration::from_secs(60);

fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

/// The labelled series the last [`publish`] set, so the next one can
/// remove those that no longer apply.
#[derive(Debug, Default)]
pub struct Exported {
    expiry: HashSet<ExpiryLabels>,
    host_errors: HashSet<HostErrorLabels>,
    /// Kept whole so that an unchanged list is not logged again.
    unsupported: BTreeMap<(String, String), Vec<String>>,
}

/// Swaps in a new snapshot and brings the metrics in line with it.
pub fn publish(shared: &Shared, next: Snapshot, exported: &mut Exported) {
    let next = if shared.limits.session_resumption {
        next
    } else {
        next.without_session_resumption()
    };
    let result = if next.problems.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    let mut host_errors = HashSet::new();
    for p in &next.problems {
        let refused = p.issue.refused_host();
        match refused {
            // A refused CRL leaves older revocations in force (or the host
            // unserved): never a quiet warning.
            Some((host, serving, e)) if e.kind() == HostErrorKind::InvalidCrl => error!(
                object = %p.object,
                host,
                serving = serving.as_str(),
                problem = %p.issue,
                "configuration problem"
            ),
            _ => warn!(object = %p.object, problem = %p.issue, "configuration problem"),
        }
        if let Some((host, serving, e)) = refused {
            host_errors.insert(HostErrorLabels {
                host: host.to_string(),
                reason: e.kind().as_str(),
                serving: serving.as_str(),
            });
        }
    }
    for labels in &host_errors {
        shared.metrics.host_errors.get_or_create(labels).set(1);
    }
    for gone in exported.host_errors.difference(&host_errors) {
        shared.metrics.host_errors.remove(gone);
    }
    exported.host_errors = host_errors;
    shared
        .metrics
        .reloads
        .get_or_create(&ReloadLabels { result })
        .inc();
    shared
        .metrics
        .config_problems
        .set(next.problems.len() as i64);
    let mut now_exported = HashSet::new();
    for h in next.hosts() {
        for e in &h.expiries {
            let labels = ExpiryLabels {
                host: h.host.clone(),
                secret: e.secret.clone(),
            };
            shared
                .metrics
                .certificate_expiry
                .get_or_create(&labels)
                .set(e.not_after);
            now_exported.insert(labels);
        }
    }
    for gone in exported.expiry.difference(&now_exported) {
        shared.metrics.certificate_expiry.remove(gone);
    }
    exported.expiry = now_exported;
    report_unsupported(shared, &next, exported);
    let sources: Vec<host_auth::KeySource> = next
        .hosts()
        .filter_map(|h| h.auth.as_deref())
        .flat_map(host_auth::HostAuth::key_sources)
        .cloned()
        .collect();
    shared.auth.track(&sources, &shared.metrics);
    info!(
        hosts = next.hosts().count(),
        problems = next.problems.len(),
        "configuration loaded"
    );
    shared.store(next);
}

/// Logs each served Ingress whose ingress-nginx annotations the proxy does
/// not implement, once per change of that list, and keeps the gauge in line.
fn report_unsupported(shared: &Shared, next: &Snapshot, exported: &mut Exported) {
    let gauge = &shared.metrics.unsupported_annotations;
    for ((namespace, ingress), keys) in &next.unsupported_annotations {
        let id = (namespace.clone(), ingress.clone());
        if exported.unsupported.get(&id) != Some(keys) {
            warn!(
                namespace = %namespace,
                ingress = %ingress,
                annotations = %keys.join(","),
                "ingress-nginx annotations not implemented: served without them (docs/migrate-from-ingress-nginx.md)"
            );
        }
        let labels = IngressLabels {
            namespace: namespace.clone(),
            ingress: ingress.clone(),
        };
        gauge.get_or_create(&labels).set(keys.len() as i64);
    }
    for (namespace, ingress) in exported.unsupported.keys() {
        if !next
            .unsupported_annotations
            .contains_key(&(namespace.clone(), ingress.clone()))
        {
            gauge.remove(&IngressLabels {
                namespace: namespace.clone(),
                ingress: ingress.clone(),
            });
        }
    }
    exported.unsupported = next.unsupported_annotations.clone();
}

/// The directory source: re-reads changed files, keeping the last good
/// objects of a file that stops parsing.
pub struct DirectorySource {
    dir: PathBuf,
    files: BTreeMap<PathBuf, ([u8; 32], Vec<Document>)>,
    /// Files whose current content does not parse, with why; reported on
    /// every rebuild until fixed, so a later unrelated reload does not hide them.
    broken: BTreeMap<PathBuf, Arc<ManifestError>>,
    /// Why the directory itself could not be listed, while it cannot.
    dir_error: Option<Issue>,
}

impl DirectorySource {
    /// A source over `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            files: BTreeMap::new(),
            broken: BTreeMap::new(),
            dir_error: None,
        }
    }

    /// Reads what changed; returns the world when anything did.
    pub fn poll(&mut self) -> Option<(World, Vec<Problem>)> {
        use sha2::{Digest, Sha256};
        // A directory that vanished or cannot be listed must not look like
        // an empty configuration: keep what was read, and say why.
        let listing = if self.dir.is_dir() {
            manifests::expand(std::slice::from_ref(&self.dir))
                .map_err(|e| Issue::DirectoryUnlisted(Arc::new(e)))
        } else {
            Err(Issue::NotADirectory {
                path: self.dir.display().to_string(),
            })
        };
        let paths = match listing {
            Ok(p) => p,
            Err(issue) => {
                // The same failure again is not news.
                let fresh =
                    self.dir_error.as_ref().map(ToString::to_string) != Some(issue.to_string());
                self.dir_error = Some(issue);
                return fresh.then(|| self.current());
            }
        };
        let mut changed = self.dir_error.take().is_some();
        let present: HashSet<&PathBuf> = paths.iter().collect();
        let before = self.files.len();
        self.files.retain(|p, _| present.contains(p));
        self.broken.retain(|p, _| present.contains(p));
        changed |= self.files.len() != before;
        for path in &paths {
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            let hash: [u8; 32] = Sha256::digest(&bytes).into();
            if self.files.get(path).is_some_and(|(h, _)| *h == hash) {
                continue;
            }
            let shown = path.display().to_string();
            match manifests::parse_text(&shown, &String::from_utf8_lossy(&bytes)) {
                Ok(docs) => {
                    self.files.insert(path.clone(), (hash, docs));
                    self.broken.remove(path);
                }
                Err(e) => {
                    // Keep the file's previous objects; remember the hash so
                    // the same broken content is not parsed again each poll.
                    let kept = self.files.remove(path).map(|(_, d)| d).unwrap_or_default();
                    self.files.insert(path.clone(), (hash, kept));
                    self.broken.insert(path.clone(), Arc::new(e));
                }
            }
            changed = true;
        }
        changed.then(|| self.current())
    }

    /// The world from what was last read, with every standing problem.
    pub fn current(&self) -> (World, Vec<Problem>) {
        let mut problems: Vec<Problem> = self
            .dir_error
            .iter()
            .map(|issue| Problem {
                object: self.dir.display().to_string(),
                issue: issue.clone(),
            })
            .chain(self.broken.iter().map(|(p, e)| Problem {
                object: p.display().to_string(),
                issue: Issue::FileUnparsable(e.clone()),
            }))
            .collect();
        let docs: Vec<Document> = self
            .files
            .values()
            .flat_map(|(_, d)| d.iter().cloned())
            .collect();
        let (world, mut decode_problems) = World::from_documents(&docs);
        problems.append(&mut decode_problems);
        (world, problems)
    }
}

/// Loads the directory once before serving (so /readyz means "serving"),
/// then polls it.
fn start_directory_source(
    dir: &Path,
    args: &ProxyArgs,
    shared: &Arc<Shared>,
    ready: &AtomicBool,
    stop_rx: &watch::Receiver<bool>,
) {
    let mut source = DirectorySource::new(dir);
    let mut exported = Exported::default();
    let (world, problems) = source.poll().unwrap_or_default();
    let classes = snapshot::Classes::named(&args.ingress_class);
    let mut first = Snapshot::build(&world, &classes, &Snapshot::default(), now());
    first.problems.splice(0..0, problems);
    publish(shared, first, &mut exported);
    ready.store(true, Ordering::Release);
    let shared = shared.clone();
    let interval = Duration::from_millis(args.reload_interval_ms.max(20));
    let mut stop = stop_rx.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        let mut built = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {},
                _ = stop.changed() => return,
            }
            // Rebuild at least every REBUILD even without changes, so an
            // anchor or certificate that expired drops out on time.
            let changed = source
                .poll()
                .or_else(|| (built.elapsed() >= REBUILD).then(|| source.current()));
            if let Some((world, problems)) = changed {
                built = tokio::time::Instant::now();
                let previous = shared.snapshot.load_full();
                let mut next = Snapshot::build(&world, &classes, &previous, now());
                next.problems.splice(0..0, problems);
                publish(&shared, next, &mut exported);
            }
        }
    });
}

/// Runs the proxy until SIGTERM, then drains connections.
pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let metrics = ProxyMetrics::register(&mut registry);
    let limits = Limits {
        handshake_timeout: Duration::from_secs(args.handshake_timeout_seconds),
        conn: args.conn_limits(),
        max_connections: args.max_connections,
        upstream_connect_timeout: Duration::from_secs(args.upstream_connect_timeout_seconds),
        upstream_response_timeout: Duration::from_secs(args.upstream_response_timeout_seconds),
        session_resumption: args.session_resumption,
    };
    let shared = Shared::new(metrics, limits);
    shared.auth.use_runtime(tokio::runtime::Handle::current());
    let ready = Arc::new(AtomicBool::new(false));
    let admin = Arc::new(telemetry::Admin {
        registry,
        ready: ready.clone(),
    });

    let workers = match args.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let https = https_sockets(args.https_listen, workers)
        .with_context(|| format!("binding --https-listen {}", args.https_listen))?;
    let http = tokio::net::TcpListener::bind(args.http_listen)
        .await
        .with_context(|| format!("binding --http-listen {}", args.http_listen))?;
    let admin_listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("binding --admin-listen {}", args.admin_listen))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    // HTTPS listens before a source can mark the proxy ready: /readyz must
    // not answer yes while connections to the HTTPS port are refused.
    spawn_https_workers(https, &shared, &stop_rx)?;
    {
        let router = telemetry::admin_router(admin.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _ = axum::serve(admin_listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await;
        });
    }

    match &args.config_dir {
        Some(dir) => start_directory_source(dir, &args, &shared, &ready, &stop_rx),
        None => {
            let client = kube::Client::try_default().await.context(
                "no --config-dir, and no Kubernetes API reachable (in-cluster or KUBECONFIG)",
            )?;
            let publish = match &args.publish_service {
                Some(s) => Some(
                    s.split_once('/')
                        .map(|(n, s)| (n.to_string(), s.to_string()))
                        .with_context(|| {
                            format!("--publish-service {s:?}: write it as NAMESPACE/NAME")
                        })?,
                ),
                None => None,
            };
            tokio::spawn(kube_source::run(
                client,
                kube_source::Options {
                    class: args.ingress_class.clone(),
                    publish_service: publish,
                },
                shared.clone(),
                ready.clone(),
                now,
            ));
        }
    }

    info!(https = %args.https_listen, http = %args.http_listen, source = %args.config_dir.as_ref().map_or("kubernetes".into(), |d| d.display().to_string()), "proxy serving");
    let http_task = tokio::spawn(server::serve_redirect(
        http,
        args.redirect_https_port,
        shared.clone(),
        stop_rx.clone(),
    ));
    crate::shutdown::signal().await;
    info!("shutting down: draining connections");
    let _ = stop_tx.send(true);
    let _ = http_task.await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.shutdown_grace_seconds);
    while shared.metrics.active_connections.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    info!("proxy stopped");
    Ok(())
}

/// One socket per worker on the same address: SO_REUSEPORT lets each
/// worker accept on its own, and the kernel spreads new connections.
fn https_sockets(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<tokio::net::TcpSocket>> {
    let mut addr = addr;
    let mut sockets = Vec::with_capacity(workers);
    for _ in 0..workers {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        // With port 0, the others join the port the first one got.
        addr = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Why the HTTPS workers could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// A worker's tokio runtime could not be built.
    #[error("starting an HTTPS worker runtime")]
    Runtime(#[source] std::io::Error),
    /// A worker's socket could not listen.
    #[error("listening on --https-listen")]
    Listen(#[source] std::io::Error),
    /// A worker's thread could not be spawned.
    #[error("starting an HTTPS worker thread")]
    Thread(#[source] std::io::Error),
}

/// Starts one thread per socket, each with a single-threaded runtime that
/// serves HTTPS. After `stop` a worker stops accepting; its runtime stays up
/// so its connections drain until the process exits.
fn spawn_https_workers(
    sockets: Vec<tokio::net::TcpSocket>,
    shared: &Arc<server::Shared>,
    stop: &watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    for (i, socket) in sockets.into_iter().enumerate() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(WorkerError::Runtime)?;
        // The listener registers with the runtime current when it is made.
        let listener = {
            let _in_worker = runtime.enter();
            socket.listen(1024).map_err(WorkerError::Listen)?
        };
        let (shared, stop) = (shared.clone(), stop.clone());
        std::thread::Builder::new()
            .name(format!("tlsward-https-{i}"))
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::spawn(timer_heartbeat());
                    server::serve_https(listener, shared, stop).await;
                    std::future::pending::<()>().await;
                });
            })
            .map_err(WorkerError::Thread)?;
    }
    Ok(())
}

/// Keeps a timer at most a second away on a worker's runtime. Tokio wakes
/// its driver through an eventfd write whenever a new timer is due sooner
/// than every timer it knows, even on the driver's own thread. Every h2
/// request arms a response timeout, so an idle timer wheel cost a system
/// call and an extra poll of the driver on a share of requests.
/// With this, a request's timer is never the soonest.
async fn timer_heartbeat() {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn workers_share_one_port_even_when_it_is_chosen_by_the_kernel() {
        let sockets = https_sockets("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        assert_ne!(ports[0], 0);
        assert!(ports.iter().all(|p| *p == ports[0]), "{ports:?}");
        let listeners: Vec<_> = sockets.into_iter().map(|s| s.listen(8).unwrap()).collect();
        // Every connection lands on one of the workers' listeners.
        let addr = listeners[0].local_addr().unwrap();
        for _ in 0..6 {
            tokio::net::TcpStream::connect(addr).await.unwrap();
        }
    }

    #[test]
    fn a_vanished_config_dir_keeps_its_objects_and_says_why() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("config");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            dir.join("svc.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n",
        )
        .unwrap();
        let mut source = DirectorySource::new(&dir);
        let (world, problems) = source.poll().expect("first read");
        assert_eq!((world.services.len(), problems.len()), (1, 0));
        assert!(source.poll().is_none(), "nothing changed");

        std::fs::rename(&dir, root.path().join("moved")).unwrap();
        let (world, problems) = source.poll().expect("the loss is a change");
        assert_eq!(world.services.len(), 1, "the objects read before are kept");
        assert!(
            matches!(problems[0].issue, Issue::NotADirectory { .. })
                && problems[0].to_string().contains("not a readable directory"),
            "{problems:?}"
        );
        assert!(source.poll().is_none(), "reported once per change");
        assert_eq!(
            source.current().1.len(),
            1,
            "and on every rebuild while it lasts"
        );

        std::fs::rename(root.path().join("moved"), &dir).unwrap();
        let (world, problems) = source.poll().expect("recovery is a change");
        assert_eq!((world.services.len(), problems.len()), (1, 0));
    }
}
