//! `tlsward operator`: turns ClientAuthPolicies into CA-bundle Secrets.
//! [`controller`] holds the reconcile; this module wires watches, leader
//! election and the admin port.

pub mod controller;
#[cfg(test)]
mod fixtures;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::networking::v1::Ingress;
use kube::runtime::controller::Controller;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use prometheus_client::registry::Registry;
use tracing::{info, warn};

use crate::admission::CLIENT_AUTH_ANNOTATION;
pub use crate::clientauth::SourceKind;
use crate::clientauth::{ClientAuthPolicy, ClientAuthPolicySpec, PemSource};
use crate::labels::Selector;
use crate::telemetry::{self, OperatorMetrics};
use controller::{Context, POLICY_LABEL};

/// How the operator is started.
#[derive(Clone, Debug, clap::Args)]
pub struct OperatorArgs {
    /// Plain-HTTP address for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// Namespace of the leader-election Lease (the pod's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "tlsward")]
    pub leader_election_namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

fn refers_to(src: &PemSource, kind: SourceKind, name: &str) -> bool {
    let r = match kind {
        SourceKind::Secret => src.secret_ref.as_ref(),
        SourceKind::ConfigMap => src.config_map_ref.as_ref(),
    };
    r.is_some_and(|r| r.name == name)
}

/// Whether the policy reads the object: a trust-anchor, revocation or
/// issuer `ca` source, or (a Secret) the login's client secret or session
/// keys.
fn reads(spec: &ClientAuthPolicySpec, kind: SourceKind, name: &str) -> bool {
    let tokens_ca = spec
        .tokens
        .iter()
        .flat_map(|t| t.issuers.iter().filter_map(|i| i.ca.as_ref()));
    let login_ca = spec.login.iter().filter_map(|l| l.ca.as_ref());
    let login_secret = kind == SourceKind::Secret
        && spec
            .login
            .as_ref()
            .is_some_and(|l| l.client_secret_ref.name == name || l.session_secret_ref.name == name);
    login_secret
        || spec
            .trust_anchors
            .iter()
            .chain(spec.revocation.iter())
            .chain(tokens_ca)
            .chain(login_ca)
            .any(|s| refers_to(s, kind, name))
}

/// The policies to reconcile when a Secret or ConfigMap changes: those that
/// read it as a source, and (for a Secret) the one that owns it as its bundle.
pub fn policies_for_source(
    policies: &[Arc<ClientAuthPolicy>],
    kind: SourceKind,
    namespace: &str,
    name: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Vec<ObjectRef<ClientAuthPolicy>> {
    let mut out: Vec<ObjectRef<ClientAuthPolicy>> = policies
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace))
        .filter(|p| reads(&p.spec, kind, name))
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect();
    if kind == SourceKind::Secret
        && let Some(owner) = labels.get(POLICY_LABEL)
    {
        out.push(ObjectRef::new(owner).within(namespace));
    }
    out
}

/// The policies whose boundIngresses an Ingress change may alter.
pub fn policies_for_ingress(
    policies: &[Arc<ClientAuthPolicy>],
    ingress: &Ingress,
) -> Vec<ObjectRef<ClientAuthPolicy>> {
    let Some(ns) = ingress.namespace() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(name) = ingress.annotations().get(CLIENT_AUTH_ANNOTATION) {
        out.push(ObjectRef::new(name.trim()).within(&ns));
    }
    for p in policies
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(&ns))
    {
        let selects = p
            .spec
            .ingress_selector
            .as_ref()
            .and_then(|s| Selector::compile(s).ok())
            .is_some_and(|s| s.matches(ingress.labels()));
        if selects {
            out.push(ObjectRef::from_obj(p.as_ref()));
        }
    }
    out
}

/// Runs the controller over every namespace until `stop` resolves.
async fn run_controller(
    client: Client,
    ctx: Arc<Context>,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let policies: Api<ClientAuthPolicy> = Api::all(client.clone());
    let controller = Controller::new(policies, watcher::Config::default().any_semantic());
    let store: Store<ClientAuthPolicy> = controller.store();
    let (s1, s2, s3) = (store.clone(), store.clone(), store.clone());
    // Deleted policies have no reconcile (no finalizer); retire their expiry
    // series from the store's view instead.
    let pruner = {
        let (store, ctx) = (store.clone(), ctx.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                let live: std::collections::HashSet<(String, String)> = store
                    .state()
                    .iter()
                    .map(|p| (p.namespace().unwrap_or_default(), p.name_any()))
                    .collect();
                controller::prune(&ctx, &live);
            }
        })
    };
    controller
        .watches(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default(),
            move |s: Secret| {
                let ns = s.namespace().unwrap_or_default();
                policies_for_source(
                    &s1.state(),
                    SourceKind::Secret,
                    &ns,
                    &s.name_any(),
                    s.labels(),
                )
            },
        )
        .watches(
            Api::<ConfigMap>::all(client.clone()),
            watcher::Config::default(),
            move |c: ConfigMap| {
                let ns = c.namespace().unwrap_or_default();
                policies_for_source(
                    &s2.state(),
                    SourceKind::ConfigMap,
                    &ns,
                    &c.name_any(),
                    c.labels(),
                )
            },
        )
        .watches(
            Api::<Ingress>::all(client.clone()),
            watcher::Config::default(),
            move |i: Ingress| policies_for_ingress(&s3.state(), &i),
        )
        .graceful_shutdown_on(stop)
        .run(controller::reconcile, controller::error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                warn!(error = %e, "controller");
            }
        })
        .await;
    pruner.abort();
}

/// Runs the operator: serves the admin port on every replica, reconciles only
/// while holding the Lease, and exits when leadership is lost so a restart
/// starts clean.
pub async fn run(args: OperatorArgs) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster or KUBECONFIG)")?;
    let mut registry = Registry::default();
    let metrics = Arc::new(OperatorMetrics::register(&mut registry));
    let admin = Arc::new(telemetry::Admin {
        registry,
        ready: Arc::new(AtomicBool::new(false)),
    });
    let listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("binding --admin-listen {}", args.admin_listen))?;
    let router = telemetry::admin_router(admin.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(crate::shutdown::signal())
            .await;
    });
    // Standby replicas are ready: they serve metrics and wait for the Lease.
    admin.ready.store(true, Ordering::Release);

    // Every replica needs its own identity: the pod name (POD_NAME, or the
    // HOSTNAME Kubernetes sets), never the pid, which is 1 in each container.
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .context("no identity for the Lease: pass --identity or set POD_NAME")?;
    // An unreachable API server is waited out, not fatal: the replica keeps
    // serving /healthz and /metrics meanwhile.
    let lease = loop {
        let built =
            kube_lease_manager::LeaseManagerBuilder::new(client.clone(), "tlsward-operator")
                .with_namespace(&args.leader_election_namespace)
                .with_identity(&identity)
                .with_duration(15)
                .with_grace(5)
                .build();
        tokio::select! {
            r = built => match r {
                Ok(l) => break l,
                Err(e) => warn!(error = %e, "setting up the leader-election Lease; retrying in 5 s"),
            },
            _ = crate::shutdown::signal() => return Ok(()),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {},
            _ = crate::shutdown::signal() => return Ok(()),
        }
    };
    let (leader, lease_task) = lease.watch().await;
    info!(%identity, namespace = %args.leader_election_namespace, "waiting for leadership");
    let recorder = Recorder::new(client.clone(), "tlsward-operator".into());
    let ctx = Arc::new(Context::new(client.clone(), recorder, metrics));
    let led = lead(leader.clone(), crate::shutdown::signal(), move |stop| {
        info!("leading: reconciling ClientAuthPolicies");
        run_controller(client, ctx, stop)
    })
    .await;
    drop(leader);
    let _ = lease_task.await;
    info!("operator stopped");
    Ok(led?)
}

/// Why [`lead`] stopped waiting for leadership.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeadError {
    /// The leader-election task ended, so whether this replica leads can no
    /// longer be known.
    #[error("the leader-election task stopped")]
    ElectionStopped,
}

/// Runs `work` only while `leader` says this replica holds the Lease: it
/// starts once leadership is won and is told to stop (through the future it
/// is given) when leadership is lost or `shutdown` fires. Returns without
/// running `work` if shutdown comes first.
pub async fn lead<W, F>(
    mut leader: tokio::sync::watch::Receiver<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    work: W,
) -> Result<(), LeadError>
where
    W: FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>>) -> F,
    F: std::future::Future<Output = ()>,
{
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    tokio::select! {
        _ = shutdown.clone() => return Ok(()),
        r = async {
            while !*leader.borrow_and_update() {
                leader.changed().await.map_err(|_| LeadError::ElectionStopped)?;
            }
            Ok::<(), LeadError>(())
        } => r?,
    }
    let mut lost = leader;
    let stop = async move {
        tokio::select! {
            _ = shutdown => {},
            _ = async { while *lost.borrow_and_update() { if lost.changed().await.is_err() { break; } } } => {
                warn!("leadership lost: stopping");
            },
        }
    };
    work(Box::pin(stop)).await;
    Ok(())
}

#[cfg(test)]
mod leadership_tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    fn flag() -> Arc<AtomicBool> {
        Arc::new(AtomicBool::new(false))
    }

    #[tokio::test]
    async fn reconciles_only_while_holding_the_lease() {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (started, stopped) = (flag(), flag());
        let (s, t) = (started.clone(), stopped.clone());
        let task = tokio::spawn(lead(rx, std::future::pending(), move |stop| async move {
            s.store(true, Ordering::SeqCst);
            stop.await;
            t.store(true, Ordering::SeqCst);
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !started.load(Ordering::SeqCst),
            "a standby replica does not reconcile"
        );
        tx.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(started.load(Ordering::SeqCst) && !stopped.load(Ordering::SeqCst));
        tx.send(false).unwrap();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(
            stopped.load(Ordering::SeqCst),
            "losing the Lease stops the controller"
        );
    }

    #[tokio::test]
    async fn shutdown_while_waiting_never_reconciles() {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let started = flag();
        let s = started.clone();
        lead(rx, async {}, move |_stop| async move {
            s.store(true, Ordering::SeqCst)
        })
        .await
        .unwrap();
        assert!(!started.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_dead_election_task_is_an_error_not_leadership() {
        let (tx, rx) = tokio::sync::watch::channel(false);
        drop(tx);
        let started = flag();
        let s = started.clone();
        let r = lead(rx, std::future::pending(), move |_stop| async move {
            s.store(true, Ordering::SeqCst)
        })
        .await;
        assert!(matches!(r, Err(LeadError::ElectionStopped)), "{r:?}");
        assert!(!started.load(Ordering::SeqCst));
    }
}
