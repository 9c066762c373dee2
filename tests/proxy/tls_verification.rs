//! Client certificate verification at the handshake: Require and Optional
//! modes, refusals counted by reason (unknown CA, expired, not yet valid,
//! revoked), the allow-list's 403, verifyDepth over intermediate CAs, chains
//! that carry their own trust anchor, and session resumption (on, off, and
//! never past a revocation). Uses the real `tlsward proxy` binary in
//! directory mode, an rcgen PKI with CRLs, the echo upstream, curl and the
//! rustls client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_certificate_under_require_is_refused() {
    let w = World::start(&[]);
    let r = w.curl(A, "/", None, &[]);
    assert_ne!(r.exit, 0, "{r:?}");
    assert_eq!(r.status, 0, "no HTTP response: {r:?}");
    assert!(
        w.get(A, "/", None).await.is_err(),
        "rustls client without a certificate"
    );
    assert_eq!(w.proxy.wait_handshake_failures("no_certificate", 2.0), 2.0);
    assert_eq!(w.upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_certificate_under_optional_gets_200_without_xfcc() {
    let w = World::start(&[]);
    let r = w.curl(
        B,
        "/",
        None,
        &["-H", "x-forwarded-client-cert: Hash=forged"],
    );
    assert_eq!((r.exit, r.status), (0, 200), "{r:?}");
    assert!(
        echoed(&r.json(), "x-forwarded-client-cert").is_empty(),
        "no certificate, no XFCC (and the client's copy is dropped): {}",
        r.body
    );
    let r = w.get(B, "/", None).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(echoed(&r.json(), "x-forwarded-client-cert").is_empty());

    // A certificate, when presented, is still verified and forwarded.
    let r = w.curl(B, "/", Some(&w.good_files), &[]);
    assert_eq!((r.exit, r.status), (0, 200), "{r:?}");
    let xfcc = echoed(&r.json(), "x-forwarded-client-cert");
    assert_eq!(
        xfcc_parts(&xfcc[0]),
        expected_xfcc(&w.good, "good-client", GOOD_URI, GOOD_DNS)
    );
    let r = w.curl(B, "/", Some(&w.rogue_files), &[]);
    assert_ne!(
        r.exit, 0,
        "a presented certificate from an unknown CA: {r:?}"
    );
    assert_eq!(w.proxy.wait_handshake_failures("unknown_ca", 1.0), 1.0);
    assert_eq!(w.proxy.handshake_failures("no_certificate"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_client_certificates_are_refused_and_counted_by_reason() {
    let w = World::start(&[]);
    let cases = [
        (&w.rogue, &w.rogue_files, "unknown_ca"),
        (&w.expired, &w.expired_files, "expired"),
        (&w.future, &w.future_files, "not_yet_valid"),
        (&w.revoked, &w.revoked_files, "revoked"),
    ];
    for (leaf, files, reason) in cases {
        // Under Require (CRL from a Secret) and Optional (inline CRL).
        for host in [A, B] {
            let r = w.curl(host, "/", Some(files), &[]);
            assert_ne!(r.exit, 0, "{reason} on {host}: {r:?}");
            assert_eq!(r.status, 0, "{reason} on {host}: {r:?}");
            let rr = w.get(host, "/", Some(leaf)).await;
            assert!(rr.is_err(), "{reason} on {host}: {rr:?}");
        }
        assert_eq!(
            w.proxy.wait_handshake_failures(reason, 4.0),
            4.0,
            "{reason}\n{}",
            w.proxy.metrics()
        );
    }
    // Each refusal is counted under its own reason only.
    for reason in ["no_certificate", "not_allowed", "unknown_sni"] {
        assert_eq!(w.proxy.handshake_failures(reason), 0.0, "{reason}");
    }
    assert_eq!(w.upstream.hits(), 0);
    // The good client still passes on both.
    for host in [A, B] {
        assert_eq!(w.get(host, "/", Some(&w.good)).await.unwrap().status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_not_on_the_allow_list_gets_403() {
    let w = World::start(&[]);
    let r = w.curl(ALLOW, "/", Some(&w.other_files), &[]);
    assert_eq!((r.exit, r.status), (0, 403), "{r:?}");
    assert!(
        r.body.contains("not allowed") && r.body.len() < 512,
        "a short reason: {:?}",
        r.body
    );
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let mut c = Conn::open(w.proxy.https, ALLOW, w.cfg(Some(&w.other), alpn))
            .await
            .unwrap();
        let r = c.get(ALLOW, "/", &[]).await.unwrap();
        assert_eq!(r.status, 403, "{}", r.body);
    }
    assert_eq!(
        w.upstream.hits(),
        0,
        "a refused client never reaches upstream"
    );
    assert_eq!(w.proxy.wait_handshake_failures("not_allowed", 3.0), 3.0);
    assert!(
        w.proxy.wait_metric(
            "tlsward_proxy_requests_total",
            &[("host", ALLOW), ("code", "403")],
            |v| v >= 3.0
        ) >= 3.0
    );

    let r = w.curl(ALLOW, "/", Some(&w.good_files), &[]);
    assert_eq!((r.exit, r.status), (0, 200), "{r:?}");
    // The same client is fine where no allow-list applies.
    let r = w.curl(A, "/", Some(&w.other_files), &[]);
    assert_eq!((r.exit, r.status), (0, 200), "{r:?}");
}

/// Root -> intermediate -> client, and clients signed by the root directly.
struct Chains {
    proxy: Proxy,
    _upstream: Upstream,
    server_ca: Ca,
    root: Ca,
    via_intermediate: Leaf,
    intermediate: Ca,
    direct: Leaf,
    _config: tempfile::TempDir,
}

const DEPTH1: &str = "depth1.example.test";
const DEPTH2: &str = "depth2.example.test";

impl Chains {
    fn start() -> Chains {
        let server_ca = Ca::new("chains server CA");
        let server = server_ca.server(&[DEPTH1, DEPTH2], "chains", 2030);
        let root = Ca::new("chains client root");
        let intermediate = root.intermediate("chains client intermediate");
        let via_intermediate = intermediate.client(ClientSpec::named("via-intermediate"));
        let direct = root.client(ClientSpec::named("direct"));
        let upstream = Upstream::start("echo");
        let config = tempfile::tempdir().unwrap();
        let root_paths: &[(&str, &str, &str)] = &[("Prefix", "/", "echo")];
        write_json(
            config.path(),
            "all.json",
            &[
                tls_secret("chains-tls", &server.cert_pem, &server.key_pem),
                config_map("chains-root", &[("ca.crt", &root.pem())]),
                service("echo", &[upstream.addr]),
                policy(
                    "depth1",
                    json!({"trustAnchors": inline(&[&root.pem()]), "verifyDepth": 1}),
                ),
                policy(
                    "depth2",
                    json!({
                        "trustAnchors": [{"configMapRef": {"name": "chains-root"}}],
                        "verifyDepth": 2,
                    }),
                ),
                ingress(
                    "depth1",
                    Some("depth1"),
                    "chains-tls",
                    &[Rule {
                        host: DEPTH1,
                        paths: root_paths,
                    }],
                ),
                ingress(
                    "depth2",
                    Some("depth2"),
                    "chains-tls",
                    &[Rule {
                        host: DEPTH2,
                        paths: root_paths,
                    }],
                ),
            ],
        );
        let proxy = Proxy::start(config.path(), &[]);
        Chains {
            proxy,
            _upstream: upstream,
            server_ca,
            root,
            via_intermediate,
            intermediate,
            direct,
            _config: config,
        }
    }

    async fn status(&self, host: &str, client: &Leaf) -> Option<u16> {
        let cfg = client_config(&self.server_ca, Some(client), &[b"http/1.1"]);
        get_once(self.proxy.https, host, cfg, "/")
            .await
            .ok()
            .map(|r| r.status)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_depth_counts_intermediate_cas() {
    let c = Chains::start();
    let chained = c.via_intermediate.with_chain(&[&c.intermediate]);
    assert_eq!(c.status(DEPTH1, &c.direct).await, Some(200));
    assert_eq!(c.status(DEPTH2, &c.direct).await, Some(200));
    assert_eq!(
        c.status(DEPTH2, &chained).await,
        Some(200),
        "one intermediate, depth 2"
    );
    assert_eq!(
        c.status(DEPTH1, &chained).await,
        None,
        "one intermediate, depth 1"
    );
    assert_eq!(c.proxy.wait_handshake_failures("chain_too_long", 1.0), 1.0);
    // Without its intermediate the chain cannot be built.
    assert_eq!(c.status(DEPTH2, &c.via_intermediate).await, None);
    assert_eq!(c.proxy.wait_handshake_failures("unknown_ca", 1.0), 1.0);
}

/// TLS lets a client send the trust anchor at the end of its chain (RFC
/// 8446 section 4.4.2; OpenSSL clients do when the certificate file holds
/// the whole bundle). The anchor is not an intermediate: the verified path
/// is as long as without it, so verifyDepth must not refuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_chain_that_includes_its_trust_anchor_is_accepted() {
    let c = Chains::start();
    let direct_and_root = c.direct.with_chain(&[&c.root]);
    assert_eq!(
        c.status(DEPTH1, &direct_and_root).await,
        Some(200),
        "leaf + root under verifyDepth 1; handshake failures:\n{}",
        c.proxy
            .metrics()
            .lines()
            .filter(|l| l.starts_with("tlsward_proxy_tls_handshakes_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let full = c.via_intermediate.with_chain(&[&c.intermediate, &c.root]);
    assert_eq!(
        c.status(DEPTH2, &full).await,
        Some(200),
        "leaf + intermediate + root under verifyDepth 2"
    );
    // curl with a certificate file that holds the bundle.
    let pki = tempfile::tempdir().unwrap();
    let ca_path = pki.path().join("ca.crt");
    std::fs::write(&ca_path, c.server_ca.pem()).unwrap();
    let files = direct_and_root.write(pki.path(), "bundle");
    let r = curl_https(c.proxy.https, &ca_path, DEPTH1, "/", Some(&files), &[]);
    assert_eq!((r.exit, r.status), (0, 200), "{r:?}");
}

/// A client configuration that keeps TLS sessions and offers to resume them.
fn resuming(cfg: Arc<rustls::ClientConfig>) -> Arc<rustls::ClientConfig> {
    let mut cfg = (*cfg).clone();
    cfg.resumption = rustls::client::Resumption::default();
    Arc::new(cfg)
}

/// How a fresh connection's handshake went, after one request on an earlier
/// connection gave the client a session to resume.
async fn second_handshake(w: &World, cfg: Arc<rustls::ClientConfig>) -> rustls::HandshakeKind {
    let first = get_once(w.proxy.https, A, cfg.clone(), "/").await.unwrap();
    assert_eq!(first.status, 200);
    let s = tls_stream(w.proxy.https, A, cfg).await.unwrap();
    s.get_ref().1.handshake_kind().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_but_not_past_a_revocation() {
    let w = World::start(&[]);
    let cfg = resuming(w.cfg(Some(&w.good), b"http/1.1"));
    assert_eq!(
        second_handshake(&w, cfg.clone()).await,
        rustls::HandshakeKind::Resumed
    );

    // Revoke the good client. Its session was verified before the CRL
    // listed it; resuming it must not get it in.
    let path = w.config.path().join("secrets.json");
    let mut list: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for item in list["items"].as_array_mut().unwrap() {
        if item["metadata"]["name"] == "client-ca" {
            item["stringData"]["ca.crl"] = json!(w.client_ca.crl(&[&w.revoked, &w.good], 2));
        }
    }
    common::write_atomic(&path, &list.to_string());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let refused = get_once(w.proxy.https, A, cfg.clone(), "/").await.is_err();
        if refused {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revoked client still gets in (by resuming its session?)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The proxy counts the failure after the client has seen the alert.
    let revoked = w.proxy.wait_handshake_failures("revoked", 1.0);
    assert!(
        revoked >= 1.0,
        "refused as revoked, not let in by resumption: {}",
        w.proxy.metrics()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_resumption_can_be_turned_off() {
    let w = World::start(&["--session-resumption", "false"]);
    let cfg = resuming(w.cfg(Some(&w.good), b"http/1.1"));
    assert_eq!(second_handshake(&w, cfg).await, rustls::HandshakeKind::Full);
}

/// Revocation reaches open connections. A client revoked while it holds an
/// HTTP/1.1 connection, an h2 connection and a WebSocket tunnel loses all
/// three within 1 s of the snapshot that revokes it (it once kept an
/// HTTP/1.1 connection for minutes). Another client's open connection on the
/// same host is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_closes_the_clients_open_connections_within_a_second() {
    let w = World::start(&[]);
    let victim = &w.other;
    let mut h1 = Conn::open(w.proxy.https, A, w.cfg(Some(victim), b"http/1.1"))
        .await
        .unwrap();
    let mut h2 = Conn::open(w.proxy.https, A, w.cfg(Some(victim), b"h2"))
        .await
        .unwrap();
    let mut bystander = Conn::open(w.proxy.https, A, w.cfg(Some(&w.good), b"h2"))
        .await
        .unwrap();
    for c in [&mut h1, &mut h2, &mut bystander] {
        assert_eq!(c.get(A, "/", &[]).await.unwrap().status, 200);
    }
    let (status, tunnel) = websocket(w.proxy.https, A, w.cfg(Some(victim), b"http/1.1"), "/ws")
        .await
        .unwrap();
    assert_eq!(status, 101);
    let mut tunnel = tunnel.unwrap();
    assert_eq!(
        tunnel_echo(&mut tunnel, b"before").await.unwrap(),
        b"before"
    );

    let reloads = w
        .proxy
        .metric("tlsward_proxy_reloads_total", &[("result", "success")]);
    let path = w.config.path().join("secrets.json");
    let mut list: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for item in list["items"].as_array_mut().unwrap() {
        if item["metadata"]["name"] == "client-ca" {
            item["stringData"]["ca.crl"] = json!(w.client_ca.crl(&[&w.revoked, victim], 2));
        }
    }
    common::write_atomic(&path, &list.to_string());
    // The snapshot is published when the reload is counted; the metric is
    // polled every 20 ms, so `published` is at most that late.
    w.proxy.wait_metric(
        "tlsward_proxy_reloads_total",
        &[("result", "success")],
        |v| v > reloads,
    );
    let published = Instant::now();
    let cut = |c: &Conn| c.is_closed();
    let h1_cut = time_until(published, Duration::from_secs(3), || async { cut(&h1) }).await;
    let h2_cut = time_until(published, Duration::from_secs(3), || async { cut(&h2) }).await;
    let tunnel_cut = tokio::time::timeout(Duration::from_secs(3), async {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 16];
        loop {
            match tunnel.read(&mut buf).await {
                Ok(0) | Err(_) => return published.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok();
    for (what, t) in [
        ("HTTP/1.1", h1_cut),
        ("h2", h2_cut),
        ("WebSocket", tunnel_cut),
    ] {
        let t = t.unwrap_or_else(|| {
            panic!(
                "{what} connection still open 3 s after the CRL:\n{}",
                w.proxy.log()
            )
        });
        assert!(t <= Duration::from_secs(1), "{what} cut after {t:?}");
    }
    assert_eq!(
        w.proxy.wait_metric(
            "tlsward_proxy_connections_closed_total",
            &[("reason", "client_revoked")],
            |v| v >= 3.0
        ),
        3.0,
        "{}",
        w.proxy.metrics()
    );
    assert!(
        w.proxy
            .wait_log(&["open connection closed", "client_revoked"])
    );
    // The other client's connection is untouched.
    assert!(!bystander.is_closed());
    assert_eq!(bystander.get(A, "/", &[]).await.unwrap().status, 200);
    // And the victim's new handshakes are refused.
    assert!(
        get_once(w.proxy.https, A, w.cfg(Some(victim), b"http/1.1"), "/")
            .await
            .is_err()
    );
}

/// An allow-list edit cuts the connections of a client it no longer names,
/// and only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_list_edit_closes_connections_it_no_longer_admits() {
    let w = World::start(&[]);
    let mut good = Conn::open(w.proxy.https, ALLOW, w.cfg(Some(&w.good), b"h2"))
        .await
        .unwrap();
    assert_eq!(good.get(ALLOW, "/", &[]).await.unwrap().status, 200);
    let path = w.config.path().join("policies.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("*.allowed.clients.test"), "{text}");
    common::write_atomic(
        &path,
        &text.replace("*.allowed.clients.test", "*.other.clients.test"),
    );
    let started = Instant::now();
    let cut = time_until(started, Duration::from_secs(5), || async {
        good.is_closed()
    })
    .await;
    assert!(cut.is_some(), "still open:\n{}", w.proxy.log());
    assert!(
        w.proxy.wait_metric(
            "tlsward_proxy_connections_closed_total",
            &[("reason", "client_not_allowed")],
            |v| v >= 1.0
        ) >= 1.0
    );
}
