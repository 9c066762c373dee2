//! The Kubernetes source: reflectors over the kinds the proxy serves from.
//! Any watch event rebuilds the world from the stores and swaps in a new
//! snapshot, exactly as a directory change does.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::warn;

use super::server::Shared;
use super::snapshot::{Classes, Snapshot};
use super::world::World;
use crate::clientauth::ClientAuthPolicy;

/// Events closer together than this are folded into one rebuild.
const DEBOUNCE: Duration = Duration::from_millis(100);

fn reflect<K>(client: &Client) -> (Store<K>, impl Stream<Item = ()> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let api: Api<K> = Api::all(client.clone());
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .filter_map(|e| async move {
            if let Err(err) = &e {
                warn!(error = %err, kind = %K::kind(&()), "watch");
            }
            Some(())
        });
    (reader, stream)
}

struct Stores {
    classes: Store<IngressClass>,
    ingresses: Store<Ingress>,
    secrets: Store<Secret>,
    config_maps: Store<ConfigMap>,
    policies: Store<ClientAuthPolicy>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
}

fn cloned<K>(s: &Store<K>) -> Vec<K>
where
    K: kube::runtime::reflector::Lookup + Clone,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    s.state().iter().map(|o| o.as_ref().clone()).collect()
}

impl Stores {
    fn classes(&self, fallback: &str) -> Classes {
        Classes::from_ingress_classes(&cloned(&self.classes), fallback)
    }

    fn world(&self, classes: &Classes) -> World {
        World {
            // Only our classes matter; the rest never reaches the builder.
            ingresses: cloned(&self.ingresses)
                .into_iter()
                .filter(|i| classes.serves(i))
                .collect(),
            secrets: cloned(&self.secrets),
            config_maps: cloned(&self.config_maps),
            policies: cloned(&self.policies),
            services: cloned(&self.services),
            endpoint_slices: cloned(&self.slices),
            // A Service editor must not choose the proxy's destinations.
            upstream_annotation_trusted: false,
        }
    }

    async fn ready(&self) -> bool {
        self.classes.wait_until_ready().await.is_ok()
            && self.ingresses.wait_until_ready().await.is_ok()
            && self.secrets.wait_until_ready().await.is_ok()
            && self.config_maps.wait_until_ready().await.is_ok()
            && self.policies.wait_until_ready().await.is_ok()
            && self.services.wait_until_ready().await.is_ok()
            && self.slices.wait_until_ready().await.is_ok()
    }
}

/// What the Kubernetes source serves and publishes.
#[derive(Clone, Debug)]
pub struct Options {
    /// The --ingress-class name.
    pub class: String,
    /// The proxy's own Service (namespace, name), for Ingress status.
    pub publish_service: Option<(String, String)>,
}

/// Watches the cluster and keeps `shared`'s snapshot current. `ready` flips
/// once every store has listed and the first snapshot is in.
pub async fn run(
    client: Client,
    opts: Options,
    shared: Arc<Shared>,
    ready: Arc<AtomicBool>,
    now: fn() -> i64,
) {
    let (classes, s0) = reflect::<IngressClass>(&client);
    let (ingresses, s1) = reflect::<Ingress>(&client);
    let (secrets, s2) = reflect::<Secret>(&client);
    let (config_maps, s3) = reflect::<ConfigMap>(&client);
    let (policies, s4) = reflect::<ClientAuthPolicy>(&client);
    let (services, s5) = reflect::<Service>(&client);
    let (slices, s6) = reflect::<EndpointSlice>(&client);
    let stores = Stores {
        classes,
        ingresses,
        secrets,
        config_maps,
        policies,
        services,
        slices,
    };
    let mut events = futures::stream::select_all([
        s0.boxed(),
        s1.boxed(),
        s2.boxed(),
        s3.boxed(),
        s4.boxed(),
        s5.boxed(),
        s6.boxed(),
    ]);
    let mut exported = super::Exported::default();
    let mut is_ready = false;
    loop {
        // Drive the watches until the stores are complete, then on each event.
        if !is_ready {
            tokio::select! {
                r = stores.ready() => { if !r { return; } is_ready = true; }
                e = events.next() => { if e.is_none() { return; } continue; }
            }
        } else {
            // An event, or the periodic rebuild that retires expired material.
            tokio::select! {
                e = events.next() => if e.is_none() { return; },
                _ = tokio::time::sleep(super::REBUILD) => {},
            }
        }
        let deadline = tokio::time::sleep(DEBOUNCE);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                e = events.next() => if e.is_none() { return; },
            }
        }
        let previous = shared.snapshot.load_full();
        let classes = stores.classes(&opts.class);
        let world = stores.world(&classes);
        let next = Snapshot::build(&world, &classes, &previous, now());
        super::publish(&shared, next, &mut exported);
        ready.store(true, Ordering::Release);
        if let Some((ns, name)) = &opts.publish_service {
            let own = world
                .services
                .iter()
                .find(|s| s.namespace().as_deref() == Some(ns.as_str()) && s.name_any() == *name);
            if let Some(svc) = own {
                super::status::publish(&client, &world.ingresses, &super::status::addresses(svc))
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::http::{Request, Response};
    use kube::client::Body;
    use prometheus_client::registry::Registry;
    use serde_json::{Value, json};
    use sha2::{Digest, Sha256};
    use tokio::sync::mpsc;

    use super::*;
    use crate::proxy::server::Limits;
    use crate::telemetry::ProxyMetrics;

    use crate::testing::api_server;

    fn cert(cn: &str) -> (String, String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec![cn.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let sha: String = Sha256::digest(c.der())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        (c.pem(), key.serialize_pem(), sha)
    }

    fn tls_secret(crt: &str, key: &str) -> Value {
        use base64::Engine;
        let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
               "metadata": {"name": "a-tls", "namespace": "shop", "resourceVersion": "2"},
               "data": {"tls.crt": b(crt), "tls.key": b(key)}})
    }

    fn ingress(name: &str, host: &str, class: &str) -> Value {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": name, "namespace": "shop", "resourceVersion": "1"},
               "spec": {"ingressClassName": class, "tls": [{"hosts": [host], "secretName": "a-tls"}],
                        "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
    }

    async fn wait_for(shared: &Shared, what: &str, ok: impl Fn(&Snapshot) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !ok(&shared.snapshot.load()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn watch_events_rebuild_the_snapshot_and_broken_secrets_keep_the_last_good() {
        let (cert1, key1, sha1) = cert("a.example.com");
        let (cert2, key2, sha2) = cert("a.example.com");
        let lists = HashMap::from([
            (
                "/apis/networking.k8s.io/v1/ingresses",
                vec![
                    ingress("a", "a.example.com", "tlsward"),
                    ingress("b", "b.example.com", "nginx"),
                ],
            ),
            ("/api/v1/secrets", vec![tls_secret(&cert1, &key1)]),
            (
                "/api/v1/services",
                vec![json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "1"},
                "spec": {"ports": [{"name": "http", "port": 80}]}})],
            ),
            (
                "/apis/discovery.k8s.io/v1/endpointslices",
                vec![
                    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "web-1", "namespace": "shop", "resourceVersion": "1", "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}],
                "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": true}},
                              {"addresses": ["10.0.0.8"], "conditions": {"ready": false}}]}),
                ],
            ),
        ]);
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let (events, rx) = mpsc::channel(4);
        tokio::spawn(api_server(handle, lists, rx));
        let mut registry = Registry::default();
        let shared = Shared::new(
            ProxyMetrics::register(&mut registry),
            Limits {
                handshake_timeout: Duration::from_secs(1),
                conn: crate::conn::ConnLimits {
                    header_read_timeout: Duration::from_secs(1),
                    idle_timeout: Duration::from_secs(1),
                    max_header_bytes: 8192,
                    max_age: None,
                    drain_timeout: Duration::from_secs(1),
                    h2_keep_alive: None,
                },
                max_connections: 10,
                upstream_connect_timeout: Duration::from_secs(1),
                upstream_response_timeout: Duration::from_secs(1),
                session_resumption: true,
            },
        );
        let ready = Arc::new(AtomicBool::new(false));
        let opts = Options {
            class: "tlsward".into(),
            publish_service: None,
        };
        tokio::spawn(run(client, opts, shared.clone(), ready.clone(), || {
            1_795_392_000
        }));

        wait_for(&shared, "the first snapshot", |s| {
            s.lookup("a.example.com").is_some()
        })
        .await;
        assert!(ready.load(Ordering::Acquire));
        let snap = shared.snapshot.load();
        let host = snap.lookup("a.example.com").unwrap();
        assert_eq!(host.cert_sha256, sha1);
        assert_eq!(host.cert_secret, "shop/a-tls");
        let backend = host.routes.lookup("/x").unwrap();
        assert_eq!(
            backend.endpoints,
            vec!["10.0.0.7:8080".parse().unwrap()],
            "ready endpoints, target port by name"
        );
        assert!(
            snap.lookup("b.example.com").is_none(),
            "another class is not served"
        );

        // The Secret is renewed: the new certificate is served.
        events
            .send((
                "/api/v1/secrets",
                json!({"type": "MODIFIED", "object": tls_secret(&cert2, &key2)}),
            ))
            .await
            .unwrap();
        wait_for(&shared, "the renewed certificate", |s| {
            s.lookup("a.example.com")
                .is_some_and(|h| h.cert_sha256 == sha2)
        })
        .await;

        // A broken renewal keeps the last good certificate and is reported.
        let mut broken = tls_secret(&cert1, &key2);
        broken["metadata"]["resourceVersion"] = json!("3");
        events
            .send((
                "/api/v1/secrets",
                json!({"type": "MODIFIED", "object": broken}),
            ))
            .await
            .unwrap();
        wait_for(&shared, "the problem report", |s| !s.problems.is_empty()).await;
        let snap = shared.snapshot.load();
        assert_eq!(snap.lookup("a.example.com").unwrap().cert_sha256, sha2);
        let text = snap.problems[0].issue.to_string();
        assert!(text.contains("does not match"), "{:?}", snap.problems);
        assert!(
            text.contains("keeping the last good configuration"),
            "{text}"
        );
    }
}
