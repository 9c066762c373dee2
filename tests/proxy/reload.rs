//! Hot reload under load: while fresh, reused and long-lived h2 connections
//! keep requesting, the server certificate is replaced, a client CA is
//! added and another removed, and a client is revoked; each change applies
//! to new handshakes within a second and no request that should succeed
//! fails. The long-lived connection keeps going until the removal of its
//! client's CA, which closes it. Uses the real `tlsward proxy` binary in directory mode, rcgen
//! CAs and CRLs, the echo upstream and many rustls clients at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

const LIVE: &str = "live.example.test";

/// The client identity the load uses, by generation.
struct Identity {
    generation: u64,
    h1: Arc<rustls::ClientConfig>,
    h2: Arc<rustls::ClientConfig>,
}

struct Load {
    port: u16,
    identity: RwLock<Arc<Identity>>,
    stop: AtomicBool,
    fresh_ok: AtomicU64,
    reused_ok: AtomicU64,
    long_ok: AtomicU64,
    /// When the client CA of the long-lived connection was removed, and
    /// when that connection then ended.
    long_ca_removed: Mutex<Option<Instant>>,
    long_cut: Mutex<Option<Instant>>,
    failures: Mutex<Vec<String>>,
    /// Per task: the identity generation it last started with.
    acked: Vec<AtomicU64>,
    /// Fresh handshakes: when started, and whether the new server
    /// certificate was presented.
    fresh_certs: Mutex<Vec<(Instant, bool)>>,
    new_server_cert: Vec<u8>,
}

impl Load {
    fn current(&self) -> Arc<Identity> {
        self.identity.read().unwrap().clone()
    }
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
    fn total(&self) -> u64 {
        self.fresh_ok.load(Ordering::Relaxed)
            + self.reused_ok.load(Ordering::Relaxed)
            + self.long_ok.load(Ordering::Relaxed)
    }
}

/// One request per connection, over HTTP/1.1.
async fn fresh_loop(load: Arc<Load>, task: usize) {
    while !load.stop.load(Ordering::Relaxed) {
        let id = load.current();
        load.acked[task].store(id.generation, Ordering::SeqCst);
        let started = Instant::now();
        let mut c = match Conn::open(load.port, LIVE, id.h1.clone()).await {
            Ok(c) => c,
            Err(e) => {
                load.fail(format!("fresh connect (gen {}): {e}", id.generation));
                continue;
            }
        };
        let new = c.server_cert == load.new_server_cert;
        load.fresh_certs.lock().unwrap().push((started, new));
        match c.get(LIVE, "/fresh", &[]).await {
            Ok(r) if r.status == 200 => {
                load.fresh_ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => load.fail(format!(
                "fresh (gen {}): {} {}",
                id.generation, r.status, r.body
            )),
            Err(e) => load.fail(format!("fresh (gen {}): {e}", id.generation)),
        }
    }
}

/// Up to 50 requests per connection; a new identity means a new connection.
async fn reused_loop(load: Arc<Load>, task: usize, h2: bool) {
    while !load.stop.load(Ordering::Relaxed) {
        let id = load.current();
        load.acked[task].store(id.generation, Ordering::SeqCst);
        let cfg = if h2 { id.h2.clone() } else { id.h1.clone() };
        let mut c = match Conn::open(load.port, LIVE, cfg).await {
            Ok(c) => c,
            Err(e) => {
                load.fail(format!("reused connect (gen {}): {e}", id.generation));
                continue;
            }
        };
        for _ in 0..50 {
            if load.stop.load(Ordering::Relaxed) || load.current().generation != id.generation {
                break;
            }
            match c.get(LIVE, "/reused", &[]).await {
                Ok(r) if r.status == 200 => {
                    load.reused_ok.fetch_add(1, Ordering::Relaxed);
                }
                Ok(r) => {
                    load.fail(format!(
                        "reused (gen {}): {} {}",
                        id.generation, r.status, r.body
                    ));
                    break;
                }
                Err(e) => {
                    load.fail(format!("reused (gen {}, h2 {h2}): {e}", id.generation));
                    break;
                }
            }
        }
    }
}

/// One h2 connection opened at the start with the first identity: kept
/// through reloads that still accept its client, closed by the one that
/// removes its CA.
async fn long_loop(load: Arc<Load>, mut conn: Conn) {
    while !load.stop.load(Ordering::Relaxed) {
        match conn.get(LIVE, "/long", &[]).await {
            Ok(r) if r.status == 200 => {
                load.long_ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => {
                load.fail(format!("long-lived: {} {}", r.status, r.body));
                return;
            }
            Err(e) => {
                if load.long_ca_removed.lock().unwrap().is_some() {
                    *load.long_cut.lock().unwrap() = Some(Instant::now());
                } else {
                    load.fail(format!("long-lived: {e}"));
                }
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn live_policy(anchors: &[&str], crls: &[&str]) -> serde_json::Value {
    policy(
        "live",
        json!({"mode": "Require", "trustAnchors": inline(anchors), "revocation": inline(crls)}),
    )
}

/// Whether a fresh connection with `cfg` gets a 200.
async fn succeeds(port: u16, cfg: Arc<rustls::ClientConfig>) -> bool {
    matches!(get_once(port, LIVE, cfg, "/probe").await, Ok(r) if r.status == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn hot_reload_under_load() {
    let server_ca = Ca::new("reload server CA");
    let ca1 = Ca::new("reload client CA 1");
    let ca2 = Ca::new("reload client CA 2");
    let s1 = server_ca.server(&[LIVE], "live-1", 2030);
    let s2 = server_ca.server(&[LIVE], "live-2", 2031);
    let c1 = ca1.client(ClientSpec::named("load-ca1"));
    let c2 = ca2.client(ClientSpec::named("load-ca2"));
    let victim = ca2.client(ClientSpec::named("victim"));
    let upstream = Upstream::start("live");
    let config = tempfile::tempdir().unwrap();
    let dir = config.path();
    write_json(
        dir,
        "app.json",
        &[
            service("live", &[upstream.addr]),
            ingress(
                "live",
                Some("live"),
                "live-tls",
                &[Rule {
                    host: LIVE,
                    paths: &[("Prefix", "/", "live")],
                }],
            ),
        ],
    );
    write_json(
        dir,
        "secret.json",
        &[tls_secret("live-tls", &s1.cert_pem, &s1.key_pem)],
    );
    write_json(
        dir,
        "policy.json",
        &[live_policy(&[&ca1.pem()], &[&ca1.crl(&[], 1)])],
    );
    let proxy = Proxy::start(dir, &[]);
    let port = proxy.https;

    let identity = |generation, leaf: &Leaf| {
        Arc::new(Identity {
            generation,
            h1: client_config(&server_ca, Some(leaf), &[b"http/1.1"]),
            h2: client_config(&server_ca, Some(leaf), &[b"h2"]),
        })
    };
    let id1 = identity(1, &c1);
    let id2 = identity(2, &c2);
    const FRESH: usize = 4;
    const REUSED: usize = 4;
    let load = Arc::new(Load {
        port,
        identity: RwLock::new(id1.clone()),
        stop: AtomicBool::new(false),
        fresh_ok: AtomicU64::new(0),
        reused_ok: AtomicU64::new(0),
        long_ok: AtomicU64::new(0),
        long_ca_removed: Mutex::new(None),
        long_cut: Mutex::new(None),
        failures: Mutex::new(Vec::new()),
        acked: (0..FRESH + REUSED).map(|_| AtomicU64::new(0)).collect(),
        fresh_certs: Mutex::new(Vec::new()),
        new_server_cert: s2.der.clone(),
    });
    let long_conn = Conn::open(port, LIVE, id1.h2.clone()).await.unwrap();
    assert_eq!(long_conn.server_cert, s1.der);
    let mut tasks = Vec::new();
    for t in 0..FRESH {
        tasks.push(tokio::spawn(fresh_loop(load.clone(), t)));
    }
    for t in 0..REUSED {
        tasks.push(tokio::spawn(reused_loop(
            load.clone(),
            FRESH + t,
            t % 2 == 1,
        )));
    }
    tasks.push(tokio::spawn(long_loop(load.clone(), long_conn)));
    let settle = || tokio::time::sleep(Duration::from_millis(300));
    let started = Instant::now();
    settle().await;
    assert!(load.total() > 0, "the load runs");

    // 1. The server certificate: new handshakes see the new one.
    write_json(
        dir,
        "secret.json",
        &[tls_secret("live-tls", &s2.cert_pem, &s2.key_pem)],
    );
    let written = Instant::now();
    let cert_delay = time_until(written, Duration::from_secs(3), || {
        let (cfg, want) = (id1.h1.clone(), s2.der.clone());
        async move { matches!(Conn::open(port, LIVE, cfg).await, Ok(c) if c.server_cert == want) }
    })
    .await
    .expect("the new server certificate is never served");
    let seen_new = Instant::now();
    assert!(
        proxy.wait_metric(
            "tlsward_certificate_expiry_timestamp_seconds",
            &[("host", LIVE), ("secret", "default/live-tls")],
            |v| v == Y2031
        ) == Y2031
    );
    settle().await;

    // 2. The client CA: add CA 2 next to CA 1, move the clients, drop CA 1.
    write_json(
        dir,
        "policy.json",
        &[live_policy(&[&ca1.pem(), &ca2.pem()], &[&ca1.crl(&[], 1)])],
    );
    let written = Instant::now();
    let ca_add_delay = time_until(written, Duration::from_secs(3), || {
        succeeds(port, id2.h1.clone())
    })
    .await
    .expect("a client of the added CA is never accepted");
    *load.identity.write().unwrap() = id2.clone();
    let moved = Instant::now();
    while load.acked.iter().any(|a| a.load(Ordering::SeqCst) < 2) {
        assert!(
            moved.elapsed() < Duration::from_secs(5),
            "clients never moved"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    settle().await;
    let long_before_ca_removal = load.long_ok.load(Ordering::Relaxed);
    *load.long_ca_removed.lock().unwrap() = Some(Instant::now());
    write_json(
        dir,
        "policy.json",
        &[live_policy(&[&ca2.pem()], &[&ca2.crl(&[], 1)])],
    );
    let written = Instant::now();
    let ca_removed_written = written;
    let ca_remove_delay = time_until(written, Duration::from_secs(3), || {
        let cfg = id1.h1.clone();
        async move { !succeeds(port, cfg).await }
    })
    .await
    .expect("a client of the removed CA is still accepted");
    settle().await;

    // 3. The CRL: revoke the victim.
    assert!(
        succeeds(
            port,
            client_config(&server_ca, Some(&victim), &[b"http/1.1"])
        )
        .await,
        "the victim is accepted before its revocation"
    );
    write_json(
        dir,
        "policy.json",
        &[live_policy(&[&ca2.pem()], &[&ca2.crl(&[&victim], 2)])],
    );
    let written = Instant::now();
    let victim_cfg = client_config(&server_ca, Some(&victim), &[b"http/1.1"]);
    let crl_delay = time_until(written, Duration::from_secs(3), || {
        let cfg = victim_cfg.clone();
        async move { !succeeds(port, cfg).await }
    })
    .await
    .expect("the revoked client is never refused");
    for _ in 0..3 {
        assert!(
            !succeeds(port, victim_cfg.clone()).await,
            "revoked stays refused"
        );
    }

    // Keep the load going until at least 1,000 requests were made.
    settle().await;
    while load.total() < 1000 {
        assert!(started.elapsed() < Duration::from_secs(30), "load too slow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    load.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("load task stuck")
            .unwrap();
    }

    let (fresh, reused, long) = (
        load.fresh_ok.load(Ordering::Relaxed),
        load.reused_ok.load(Ordering::Relaxed),
        load.long_ok.load(Ordering::Relaxed),
    );
    let failures = load.failures.lock().unwrap().clone();
    let stale = load
        .fresh_certs
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, new)| *at > seen_new && !new)
        .count();
    eprintln!(
        "hot reload under load: {} requests succeeded ({fresh} on fresh connections, {reused} on reused, {long} on one long-lived h2 connection), {} failed; \
         new server certificate served after {cert_delay:?}; added CA accepted after {ca_add_delay:?}; \
         removed CA refused after {ca_remove_delay:?}; revoked client refused after {crl_delay:?}; \
         fresh handshakes after the switch that saw the old certificate: {stale}; total time {:?}",
        fresh + reused + long,
        failures.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} requests that should have succeeded failed, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(fresh + reused + long >= 1000);
    assert!(
        fresh >= 100 && reused >= 100,
        "fresh {fresh}, reused {reused}"
    );
    assert!(
        long_before_ca_removal > 0,
        "the long-lived connection kept going through the certificate renewal and the CA addition"
    );
    let long_cut = load
        .long_cut
        .lock()
        .unwrap()
        .map(|at| at.saturating_duration_since(ca_removed_written))
        .expect("the connection of the removed CA's client is still open");
    assert!(
        proxy.metric(
            "tlsward_proxy_connections_closed_total",
            &[("reason", "client_untrusted")]
        ) >= 1.0
    );
    assert_eq!(
        stale, 0,
        "a handshake after the switch saw the old certificate"
    );
    for (what, d) in [
        ("server certificate", cert_delay),
        ("CA removal", ca_remove_delay),
        ("CA removal, open connection", long_cut),
        ("CRL", crl_delay),
        ("CA addition", ca_add_delay),
    ] {
        assert!(d < Duration::from_secs(1), "{what} took {d:?}");
    }
    assert!(proxy.handshake_failures("revoked") >= 1.0);
    assert!(proxy.handshake_failures("unknown_ca") >= 1.0);
    assert!(proxy.metric("tlsward_proxy_reloads_total", &[("result", "success")]) >= 5.0);
    assert_eq!(
        proxy.metric("tlsward_proxy_reloads_total", &[("result", "failure")]),
        0.0
    );
}
