//! `tlsward proxy` end to end: the real binary in directory mode, an rcgen
//! PKI made at test time, a real upstream, and real clients (curl and a
//! rustls client in the test).

#[path = "../common/mod.rs"]
mod common;
mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use support::*;
use serde_json::json;

/// Bound to `strict` (Require, anchors and CRL from a Secret).
const A: &str = "a.example.test";
/// Bound to `optional` (Optional, inline anchors and CRL).
const B: &str = "b.example.test";
/// Also bound to `strict`.
const C: &str = "c.example.test";
/// Not bound to any policy.
const OPEN: &str = "open.example.test";
const OPEN2: &str = "open2.example.test";
/// `allowlist`: only `*.allowed.clients.test` DNS SANs.
const ALLOW: &str = "allow.example.test";
/// `rfc`: RFC 9440 `Client-Cert`.
const RFC: &str = "rfc.example.test";
/// `nofwd`: nothing forwarded.
const NONE: &str = "none.example.test";
/// A wildcard host, unbound.
const WILD: &str = "*.wild.example.test";

/// 2030-01-01T00:00:00Z.
const Y2030: f64 = 1_893_456_000.0;
/// 2031-01-01T00:00:00Z.
const Y2031: f64 = 1_924_992_000.0;

const GOOD_URI: &str = "spiffe://example.test/ns/default/sa/good";
const GOOD_DNS: &str = "good.allowed.clients.test";

/// The standard world: several hosts under different policies, one
/// upstream, and a set of good and bad client certificates.
struct World {
    proxy: Proxy,
    upstream: Upstream,
    server_ca: Ca,
    client_ca: Ca,
    server_ca_path: PathBuf,
    good: Leaf,
    other: Leaf,
    expired: Leaf,
    future: Leaf,
    revoked: Leaf,
    rogue: Leaf,
    good_files: ClientFiles,
    other_files: ClientFiles,
    expired_files: ClientFiles,
    future_files: ClientFiles,
    revoked_files: ClientFiles,
    rogue_files: ClientFiles,
    _pki: tempfile::TempDir,
    config: tempfile::TempDir,
}

impl World {
    fn start(extra: &[&str]) -> World {
        let server_ca = Ca::new("tlsward proxy test server CA");
        let client_ca = Ca::new("tlsward proxy test client CA");
        let rogue_ca = Ca::new("some other CA");
        let server = server_ca.server(&["*.example.test", WILD], "wildcard", 2030);
        let good = client_ca.client(ClientSpec::named("good-client").dns(GOOD_DNS).uri(GOOD_URI));
        let other = client_ca.client(
            ClientSpec::named("other-client")
                .dns("other.denied.clients.test")
                .uri("spiffe://example.test/ns/default/sa/other"),
        );
        let expired = client_ca.client(ClientSpec::named("expired-client").expired());
        let future = client_ca.client(ClientSpec::named("future-client").not_yet_valid());
        let revoked = client_ca.client(ClientSpec::named("revoked-client"));
        let rogue = rogue_ca.client(ClientSpec::named("good-client").dns(GOOD_DNS));
        let crl = client_ca.crl(&[&revoked], 1);

        let pki = tempfile::tempdir().unwrap();
        let server_ca_path = pki.path().join("server-ca.crt");
        std::fs::write(&server_ca_path, server_ca.pem()).unwrap();
        let good_files = good.write(pki.path(), "good");
        let other_files = other.write(pki.path(), "other");
        let expired_files = expired.write(pki.path(), "expired");
        let future_files = future.write(pki.path(), "future");
        let revoked_files = revoked.write(pki.path(), "revoked");
        let rogue_files = rogue.write(pki.path(), "rogue");

        let upstream = Upstream::start("echo");
        let config = tempfile::tempdir().unwrap();
        let dir = config.path();
        let ca_pem = client_ca.pem();
        write_json(
            dir,
            "secrets.json",
            &[
                tls_secret("wild-tls", &server.cert_pem, &server.key_pem),
                opaque_secret("client-ca", &[("ca.crt", &ca_pem), ("ca.crl", &crl)]),
            ],
        );
        let anchors = inline(&[&ca_pem]);
        let crls = inline(&[&crl]);
        write_yaml(
            dir,
            "policies.yaml",
            &[
                policy(
                    "strict",
                    json!({
                        "mode": "Require",
                        "trustAnchors": [{"secretRef": {"name": "client-ca"}}],
                        "revocation": [{"secretRef": {"name": "client-ca", "key": "ca.crl"}}],
                    }),
                ),
                policy(
                    "optional",
                    json!({"mode": "Optional", "trustAnchors": anchors, "revocation": crls}),
                ),
                policy(
                    "allowlist",
                    json!({
                        "trustAnchors": anchors,
                        "revocation": crls,
                        "allowedClients": {"dnsNames": ["*.allowed.clients.test"]},
                    }),
                ),
                policy(
                    "rfc",
                    json!({"trustAnchors": anchors, "forwardClientCert": "RFC9440"}),
                ),
                policy(
                    "nofwd",
                    json!({"trustAnchors": anchors, "forwardClientCert": "None"}),
                ),
            ],
        );
        let root: &[(&str, &str, &str)] = &[("Prefix", "/", "echo")];
        let rule = |host| Rule { host, paths: root };
        write_json(
            dir,
            "app.json",
            &[
                service("echo", &[upstream.addr]),
                ingress("strict", Some("strict"), "wild-tls", &[rule(A), rule(C)]),
                ingress("optional", Some("optional"), "wild-tls", &[rule(B)]),
                ingress(
                    "open",
                    None,
                    "wild-tls",
                    &[rule(OPEN), rule(OPEN2), rule(WILD)],
                ),
                ingress("allow", Some("allowlist"), "wild-tls", &[rule(ALLOW)]),
                ingress("rfc", Some("rfc"), "wild-tls", &[rule(RFC)]),
                ingress("none", Some("nofwd"), "wild-tls", &[rule(NONE)]),
            ],
        );
        let proxy = Proxy::start(dir, extra);
        assert_eq!(
            proxy.metric("tlsward_proxy_config_problems", &[]),
            0.0,
            "the standard world must load cleanly:\n{}",
            proxy.log()
        );
        World {
            proxy,
            upstream,
            server_ca,
            client_ca,
            server_ca_path,
            good,
            other,
            expired,
            future,
            revoked,
            rogue,
            good_files,
            other_files,
            expired_files,
            future_files,
            revoked_files,
            rogue_files,
            _pki: pki,
            config,
        }
    }

    fn curl(&self, host: &str, path: &str, client: Option<&ClientFiles>, extra: &[&str]) -> Curl {
        curl_https(
            self.proxy.https,
            &self.server_ca_path,
            host,
            path,
            client,
            extra,
        )
    }

    fn cfg(&self, client: Option<&Leaf>, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
        client_config(&self.server_ca, client, &[alpn])
    }

    /// One GET over HTTP/1.1 on a fresh rustls connection.
    async fn get(&self, host: &str, path: &str, client: Option<&Leaf>) -> Result<Resp, BoxError> {
        get_once(self.proxy.https, host, self.cfg(client, b"http/1.1"), path).await
    }
}

fn xfcc_parts(v: &str) -> BTreeSet<String> {
    v.split(';').map(str::to_string).collect()
}

fn expected_xfcc(leaf: &Leaf, cn: &str, uri: &str, dns: &str) -> BTreeSet<String> {
    [
        format!("Hash={}", leaf.sha256_hex()),
        format!("Subject=\"CN={cn}\""),
        format!("URI={uri}"),
        format!("DNS={dns}"),
    ]
    .into_iter()
    .collect()
}

// ---------------------------------------------------------------------------
// Handshake outcomes and forwarded headers
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_client_gets_200_and_upstream_sees_sanitized_xfcc() {
    let w = World::start(&[]);
    let want = expected_xfcc(&w.good, "good-client", GOOD_URI, GOOD_DNS);

    // curl, with a forged XFCC and an X-Forwarded-For of its own.
    let r = w.curl(
        A,
        "/hello/world?x=1&y=2",
        Some(&w.good_files),
        &[
            "-H",
            "x-forwarded-client-cert: Hash=forged;Subject=\"CN=admin\";URI=spiffe://evil",
            "-H",
            "X-Forwarded-For: 203.0.113.7",
        ],
    );
    assert_eq!((r.exit, r.status), (0, 200), "{r:?}");
    let body = r.json();
    assert_eq!(body["path"], "/hello/world");
    assert_eq!(body["query"], "x=1&y=2");
    let xfcc = echoed(&body, "x-forwarded-client-cert");
    assert_eq!(
        xfcc.len(),
        1,
        "XFCC must be replaced, not appended: {xfcc:?}"
    );
    assert_eq!(xfcc_parts(&xfcc[0]), want, "{}", xfcc[0]);
    assert!(!xfcc[0].contains("forged") && !xfcc[0].contains("evil"));
    assert_eq!(echoed(&body, "x-forwarded-proto"), ["https"]);
    let xfh = echoed(&body, "x-forwarded-host");
    let with_port = format!("{A}:{}", w.proxy.https);
    assert!(
        xfh == [A] || xfh == [with_port.as_str()],
        "x-forwarded-host: {xfh:?}"
    );
    assert_eq!(
        echoed(&body, "x-forwarded-for"),
        ["127.0.0.1"],
        "at the edge a client-sent X-Forwarded-For is replaced by its real address"
    );

    // The rustls client, HTTP/1.1 and h2.
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let mut conn = Conn::open(w.proxy.https, A, w.cfg(Some(&w.good), alpn))
            .await
            .unwrap();
        let r = conn.get(A, "/rustls", &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let body = r.json();
        let xfcc = echoed(&body, "x-forwarded-client-cert");
        assert_eq!(xfcc.len(), 1, "{xfcc:?}");
        assert_eq!(xfcc_parts(&xfcc[0]), want);
        assert_eq!(echoed(&body, "x-forwarded-for"), ["127.0.0.1"]);
        assert_eq!(echoed(&body, "x-forwarded-proto"), ["https"]);
        assert!(!echoed(&body, "x-forwarded-host").is_empty());
    }

    assert_eq!(w.upstream.hits(), 3);
    assert!(
        w.proxy.wait_metric(
            "tlsward_proxy_requests_total",
            &[("host", A), ("code", "200")],
            |v| v >= 3.0
        ) >= 3.0
    );
    assert!(
        w.proxy.metric(
            "tlsward_proxy_tls_handshakes_total",
            &[("result", "success")]
        ) >= 3.0
    );
    assert_eq!(
        w.proxy.metric(
            "tlsward_certificate_expiry_timestamp_seconds",
            &[("host", A), ("secret", "default/wild-tls")]
        ),
        Y2030
    );
    // Trust anchors are exported too (the client CA is valid until 2040).
    let metrics = w.proxy.metrics();
    let anchors: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("tlsward_certificate_expiry_timestamp_seconds{")
                && l.contains(&format!("host=\"{A}\""))
                && l.contains("secret=\"default/strict/anchor:")
        })
        .collect();
    assert_eq!(anchors.len(), 1, "{metrics}");
    assert!(anchors[0].ends_with(" 2208988800"), "{}", anchors[0]);
    assert!(
        metric_value(
            &metrics,
            "tlsward_proxy_request_duration_seconds_count",
            &[]
        ) >= 3.0,
        "latency histogram"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_and_http11_are_chosen_by_alpn() {
    let w = World::start(&[]);
    let h2 = w.curl(A, "/", Some(&w.good_files), &["--http2"]);
    assert_eq!((h2.exit, h2.status), (0, 200), "{h2:?}");
    assert_eq!(h2.version, "2", "{h2:?}");
    assert_eq!(echoed(&h2.json(), "x-forwarded-client-cert").len(), 1);
    let h1 = w.curl(A, "/", Some(&w.good_files), &["--http1.1"]);
    assert_eq!((h1.exit, h1.status), (0, 200), "{h1:?}");
    assert_eq!(h1.version, "1.1", "{h1:?}");

    let mut c2 = Conn::open(w.proxy.https, A, w.cfg(Some(&w.good), b"h2"))
        .await
        .unwrap();
    assert_eq!(c2.alpn.as_deref(), Some(&b"h2"[..]));
    for _ in 0..3 {
        let r = c2.get(A, "/", &[]).await.unwrap();
        assert_eq!((r.status, r.version), (200, hyper::Version::HTTP_2));
    }
    let mut c1 = Conn::open(w.proxy.https, A, w.cfg(Some(&w.good), b"http/1.1"))
        .await
        .unwrap();
    assert_eq!(c1.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let r = c1.get(A, "/", &[]).await.unwrap();
    assert_eq!((r.status, r.version), (200, hyper::Version::HTTP_11));
    assert_eq!(
        w.proxy
            .wait_metric("tlsward_proxy_active_connections", &[], |v| v == 2.0),
        2.0,
        "one h2 and one HTTP/1.1 connection are open"
    );
    drop((c1, c2));
    assert_eq!(
        w.proxy
            .wait_metric("tlsward_proxy_active_connections", &[], |v| v == 0.0),
        0.0,
        "closed connections are no longer counted"
    );
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_under_another_policy_than_the_sni_is_misdirected() {
    let w = World::start(&[]);
    let https = w.proxy.https;
    // curl: SNI a (strict), Host b (optional).
    let r = w.curl(A, "/", Some(&w.good_files), &["-H", &format!("Host: {B}")]);
    assert_eq!((r.exit, r.status), (0, 421), "{r:?}");
    // Same policy: allowed, and the upstream sees the Host's name.
    let r = w.curl(A, "/", Some(&w.good_files), &["-H", &format!("Host: {C}")]);
    assert_eq!((r.exit, r.status), (0, 200), "{r:?}");
    let xfh = echoed(&r.json(), "x-forwarded-host");
    assert!(xfh[0].starts_with(C), "{xfh:?}");
    // Both unbound: allowed.
    let r = w.curl(OPEN, "/", None, &["-H", &format!("Host: {OPEN2}")]);
    assert_eq!((r.exit, r.status), (0, 200), "{r:?}");
    // Unbound SNI, bound Host: the handshake never checked a certificate.
    let r = w.curl(OPEN, "/", None, &["-H", &format!("Host: {A}")]);
    assert_eq!((r.exit, r.status), (0, 421), "{r:?}");
    let r = w.curl(
        A,
        "/",
        Some(&w.good_files),
        &["-H", &format!("Host: {OPEN}")],
    );
    assert_eq!((r.exit, r.status), (0, 421), "{r:?}");
    let r = w.curl(
        A,
        "/",
        Some(&w.good_files),
        &["-H", "Host: unknown.example.test"],
    );
    assert_eq!((r.exit, r.status), (0, 421), "{r:?}");
    assert_eq!(w.upstream.hits(), 2);

    // h2 connection coalescing with the rustls client: one connection, SNI
    // a, requests for other authorities.
    let mut c = Conn::open(https, A, w.cfg(Some(&w.good), b"h2"))
        .await
        .unwrap();
    assert_eq!(c.get(B, "/", &[]).await.unwrap().status, 421);
    assert_eq!(c.get(ALLOW, "/", &[]).await.unwrap().status, 421);
    assert_eq!(c.get(OPEN, "/", &[]).await.unwrap().status, 421);
    assert_eq!(c.get(C, "/", &[]).await.unwrap().status, 200);
    assert_eq!(c.get(A, "/", &[]).await.unwrap().status, 200);
    let mut c = Conn::open(https, OPEN, w.cfg(None, b"h2")).await.unwrap();
    assert_eq!(c.get(OPEN2, "/", &[]).await.unwrap().status, 200);
    assert_eq!(
        c.get("x.wild.example.test", "/", &[]).await.unwrap().status,
        200
    );
    assert_eq!(c.get(B, "/", &[]).await.unwrap().status, 421);
    assert_eq!(w.upstream.hits(), 6);
    assert!(
        w.proxy
            .wait_metric("tlsward_proxy_requests_total", &[("code", "421")], |v| v
                >= 7.0)
            >= 7.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sni_is_refused_and_wildcards_are_served() {
    let w = World::start(&[]);
    let r = w.curl("nope.example.test", "/", Some(&w.good_files), &[]);
    assert_ne!(r.exit, 0, "{r:?}");
    assert_eq!(r.status, 0);
    // No SNI at all (curl sends none for an IP address).
    let r = curl(&["-k", &format!("https://127.0.0.1:{}/", w.proxy.https)]);
    assert_ne!(r.exit, 0, "{r:?}");
    // A name the wildcard does not cover (two labels deep).
    let deep = w.get("a.b.wild.example.test", "/", None).await;
    assert!(deep.is_err(), "{deep:?}");
    assert_eq!(w.proxy.wait_handshake_failures("unknown_sni", 3.0), 3.0);

    // The wildcard covers one label.
    let r = w.curl("x.wild.example.test", "/", None, &[]);
    assert_eq!((r.exit, r.status), (0, 200), "{r:?}");
    let r = w.get("y.wild.example.test", "/", None).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(w.upstream.hits(), 2);
}

#[test]
fn plain_http_is_redirected_with_308() {
    let w = World::start(&[]);
    let resolve = format!("{A}:{}:127.0.0.1", w.proxy.http);
    let r = curl(&[
        "--resolve",
        &resolve,
        &format!("http://{A}:{}/some/path?q=1&r=two", w.proxy.http),
    ]);
    assert_eq!((r.exit, r.status), (0, 308), "{r:?}");
    assert_eq!(
        r.header("location").as_deref(),
        Some(format!("https://{A}:{}/some/path?q=1&r=two", w.proxy.https).as_str()),
        "{r:?}"
    );
    // A POST is redirected the same way (308 keeps the method).
    let r = curl(&[
        "--resolve",
        &resolve,
        "-X",
        "POST",
        "-d",
        "x=1",
        &format!("http://{A}:{}/form", w.proxy.http),
    ]);
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(
        r.header("location").as_deref(),
        Some(format!("https://{A}:{}/form", w.proxy.https).as_str())
    );
    assert_eq!(w.upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9440_forwards_client_cert_and_none_forwards_nothing() {
    let w = World::start(&[]);
    let forged = [
        "-H",
        "client-cert: :Zm9yZ2Vk:",
        "-H",
        "client-cert-chain: :Zm9yZ2Vk:",
        "-H",
        "x-forwarded-client-cert: Hash=forged",
    ];
    let r = w.curl(RFC, "/", Some(&w.good_files), &forged);
    assert_eq!((r.exit, r.status), (0, 200), "{r:?}");
    let body = r.json();
    let want = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(&w.good.der)
    );
    assert_eq!(echoed(&body, "client-cert"), std::slice::from_ref(&want));
    assert!(
        echoed(&body, "x-forwarded-client-cert").is_empty(),
        "{body}"
    );
    assert!(
        !echoed(&body, "client-cert-chain").contains(&":Zm9yZ2Vk:".to_string()),
        "{body}"
    );
    let r = w.get(RFC, "/", Some(&w.good)).await.unwrap();
    assert_eq!(echoed(&r.json(), "client-cert"), [want]);

    let r = w.curl(NONE, "/", Some(&w.good_files), &forged);
    assert_eq!((r.exit, r.status), (0, 200), "{r:?}");
    let body = r.json();
    for h in [
        "client-cert",
        "client-cert-chain",
        "x-forwarded-client-cert",
    ] {
        assert!(echoed(&body, h).is_empty(), "{h} must be stripped: {body}");
    }
    // None still verifies: no certificate is refused.
    let r = w.curl(NONE, "/", None, &[]);
    assert_ne!(r.exit, 0, "{r:?}");
}

// ---------------------------------------------------------------------------
// Routing and upstream errors
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_by_path_and_upstream_errors() {
    const H: &str = "routes.example.test";
    let server_ca = Ca::new("routing server CA");
    let server = server_ca.server(&[H], "routes", 2030);
    let up_a = Upstream::start("svc-a");
    let up_b = Upstream::start("svc-b");
    let config = tempfile::tempdir().unwrap();
    let dir = config.path();
    write_json(
        dir,
        "all.json",
        &[
            tls_secret_b64("routes-tls", &server.cert_pem, &server.key_pem),
            service("svc-a", &[up_a.addr]),
            // Endpoints from EndpointSlices: a ready one (svc-b's port) and
            // a not-ready one that must never be picked.
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "svc-slice"},
                "spec": {"ports": [{"name": "http", "port": 80}]}
            }),
            endpoint_slice(
                "svc-slice-1",
                "svc-slice",
                "http",
                up_b.addr.port(),
                &["127.0.0.1"],
                true,
            ),
            endpoint_slice(
                "svc-slice-2",
                "svc-slice",
                "http",
                dead_addr().port(),
                &["127.0.0.1"],
                false,
            ),
            service("svc-b", &[up_b.addr]),
            service("svc-rr", &[up_a.addr, up_b.addr]),
            service("svc-empty", &[]),
            service("svc-dead", &[dead_addr()]),
            ingress(
                "routes",
                None,
                "routes-tls",
                &[Rule {
                    host: H,
                    paths: &[
                        ("Prefix", "/app", "svc-a"),
                        ("Prefix", "/app/admin", "svc-b"),
                        ("Exact", "/exact", "svc-b"),
                        ("ImplementationSpecific", "/impl", "svc-b"),
                        ("Prefix", "/rr", "svc-rr"),
                        ("Prefix", "/empty", "svc-empty"),
                        ("Prefix", "/missing", "svc-missing"),
                        ("Prefix", "/dead", "svc-dead"),
                        ("Prefix", "/slice", "svc-slice"),
                    ],
                }],
            ),
            // A second Ingress adds paths to the same host.
            ingress(
                "routes-more",
                None,
                "routes-tls",
                &[Rule {
                    host: H,
                    paths: &[("Prefix", "/two/", "svc-b")],
                }],
            ),
        ],
    );
    let proxy = Proxy::start(dir, &["--upstream-response-timeout-seconds", "1"]);
    let cfg = client_config(&server_ca, None, &[b"http/1.1"]);
    let mut conn = Conn::open(proxy.https, H, cfg.clone()).await.unwrap();

    let cases: &[(&str, u16, Option<&str>)] = &[
        ("/app", 200, Some("svc-a")),
        ("/app/", 200, Some("svc-a")),
        ("/app/x/y", 200, Some("svc-a")),
        ("/app/administrator", 200, Some("svc-a")),
        ("/app/admin", 200, Some("svc-b")),
        ("/app/admin/", 200, Some("svc-b")),
        ("/app/admin/users?id=7", 200, Some("svc-b")),
        ("/apple", 404, None),
        ("/exact", 200, Some("svc-b")),
        ("/exact/", 404, None),
        ("/exact/more", 404, None),
        ("/impl/x", 200, Some("svc-b")),
        ("/two", 200, Some("svc-b")),
        ("/two/x", 200, Some("svc-b")),
        ("/", 404, None),
        ("/nothing", 404, None),
        ("/empty/x", 503, None),
        ("/missing", 503, None),
        ("/dead", 502, None),
        ("/slice", 200, Some("svc-b")),
        ("/slice/1", 200, Some("svc-b")),
        ("/slice/2", 200, Some("svc-b")),
        ("/slice/3", 200, Some("svc-b")),
    ];
    for (path, status, upstream) in cases {
        let r = conn.get(H, path, &[]).await.unwrap();
        assert_eq!(r.status, *status, "{path}: {}", r.body);
        if let Some(name) = upstream {
            let body = r.json();
            assert_eq!(body["upstream"], *name, "{path}");
            assert_eq!(
                body["path"],
                path.split('?').next().unwrap(),
                "the path is forwarded as sent"
            );
        }
    }
    let r = conn.get(H, "/app/admin/users?id=7", &[]).await.unwrap();
    assert_eq!(r.json()["query"], "id=7");

    // Round-robin over a Service's endpoints.
    let mut seen = BTreeSet::new();
    for _ in 0..4 {
        let r = conn.get(H, "/rr", &[]).await.unwrap();
        assert_eq!(r.status, 200);
        seen.insert(r.json()["upstream"].as_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), 2, "both endpoints serve: {seen:?}");

    // An upstream slower than --upstream-response-timeout-seconds.
    let started = Instant::now();
    let r = conn.get(H, "/app/slow", &[]).await.unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "504 after the 1 s timeout, took {took:?}"
    );
    // The connection is still usable after errors.
    assert_eq!(conn.get(H, "/app", &[]).await.unwrap().status, 200);

    // curl sees the same answers.
    let pki = tempfile::tempdir().unwrap();
    let ca_path = pki.path().join("ca.crt");
    std::fs::write(&ca_path, server_ca.pem()).unwrap();
    for (path, status) in [("/app/admin/x", 200), ("/apple", 404), ("/dead", 502)] {
        let r = curl_https(proxy.https, &ca_path, H, path, None, &[]);
        assert_eq!((r.exit, r.status), (0, status), "{path}: {r:?}");
    }
    // Request bodies reach the upstream, over HTTP/1.1 and h2.
    let upload = pki.path().join("upload.bin");
    std::fs::write(&upload, vec![b'x'; 100_000]).unwrap();
    let data = format!("@{}", upload.display());
    for version in ["--http1.1", "--http2"] {
        let r = curl_https(
            proxy.https,
            &ca_path,
            H,
            "/app/upload",
            None,
            &[version, "-X", "POST", "--data-binary", &data],
        );
        assert_eq!((r.exit, r.status), (0, 200), "{version}: {r:?}");
        let body = r.json();
        assert_eq!(body["method"], "POST");
        assert_eq!(body["body_len"], 100_000, "{version}");
    }
    for code in ["404", "502", "503", "504"] {
        assert!(
            proxy.metric(
                "tlsward_proxy_requests_total",
                &[("host", H), ("code", code)]
            ) >= 1.0,
            "{code}\n{}",
            proxy.metrics()
        );
    }
}

// ---------------------------------------------------------------------------
// Hot reload under load
// ---------------------------------------------------------------------------

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

/// One h2 connection opened at the start with the first identity, kept
/// through every reload (established connections keep going).
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
                load.fail(format!("long-lived: {e}"));
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
    write_json(
        dir,
        "policy.json",
        &[live_policy(&[&ca2.pem()], &[&ca2.crl(&[], 1)])],
    );
    let written = Instant::now();
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
        long > long_before_ca_removal,
        "a connection established with the removed CA's client keeps going"
    );
    assert_eq!(
        stale, 0,
        "a handshake after the switch saw the old certificate"
    );
    for (what, d) in [
        ("server certificate", cert_delay),
        ("CA removal", ca_remove_delay),
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

// ---------------------------------------------------------------------------
// Broken input keeps the last good configuration
// ---------------------------------------------------------------------------

const ONE: &str = "one.example.test";
const TWO: &str = "two.example.test";

/// Two hosts, each with its own Secret and policy in its own YAML file.
struct TwoHosts {
    proxy: Proxy,
    _upstream: Upstream,
    server_ca: Ca,
    client_ca: Ca,
    good: Leaf,
    one_v1: Leaf,
    two_v1: Leaf,
    config: tempfile::TempDir,
}

fn require(name: &str, ca: &Ca) -> serde_json::Value {
    policy(
        name,
        json!({"mode": "Require", "trustAnchors": inline(&[&ca.pem()])}),
    )
}

impl TwoHosts {
    async fn start() -> TwoHosts {
        let server_ca = Ca::new("broken-input server CA");
        let client_ca = Ca::new("broken-input client CA");
        let one_v1 = server_ca.server(&[ONE], "one-v1", 2030);
        let two_v1 = server_ca.server(&[TWO], "two-v1", 2030);
        let good = client_ca.client(ClientSpec::named("good-client"));
        let upstream = Upstream::start("echo");
        let config = tempfile::tempdir().unwrap();
        let dir = config.path();
        let root: &[(&str, &str, &str)] = &[("Prefix", "/", "echo")];
        write_json(
            dir,
            "app.json",
            &[
                service("echo", &[upstream.addr]),
                ingress(
                    "one",
                    Some("p-one"),
                    "one-tls",
                    &[Rule {
                        host: ONE,
                        paths: root,
                    }],
                ),
                ingress(
                    "two",
                    Some("p-two"),
                    "two-tls",
                    &[Rule {
                        host: TWO,
                        paths: root,
                    }],
                ),
            ],
        );
        write_yaml(
            dir,
            "secret-one.yaml",
            &[tls_secret("one-tls", &one_v1.cert_pem, &one_v1.key_pem)],
        );
        write_yaml(
            dir,
            "secret-two.yaml",
            &[tls_secret("two-tls", &two_v1.cert_pem, &two_v1.key_pem)],
        );
        write_yaml(dir, "policy-one.yaml", &[require("p-one", &client_ca)]);
        write_yaml(dir, "policy-two.yaml", &[require("p-two", &client_ca)]);
        let proxy = Proxy::start(dir, &[]);
        let t = TwoHosts {
            proxy,
            _upstream: upstream,
            server_ca,
            client_ca,
            good,
            one_v1,
            two_v1,
            config,
        };
        assert_eq!(t.served_cert(ONE).await, t.one_v1.der);
        assert_eq!(t.served_cert(TWO).await, t.two_v1.der);
        assert_eq!(t.status(ONE, true).await, Some(200));
        assert_eq!(t.status(TWO, true).await, Some(200));
        assert_eq!(t.status(ONE, false).await, None);
        assert_eq!(t.problems(), 0.0, "{}", t.proxy.log());
        t
    }

    fn dir(&self) -> &std::path::Path {
        self.config.path()
    }

    fn problems(&self) -> f64 {
        self.proxy.metric("tlsward_proxy_config_problems", &[])
    }

    async fn served_cert(&self, host: &str) -> Vec<u8> {
        let cfg = client_config(&self.server_ca, Some(&self.good), &[b"http/1.1"]);
        Conn::open(self.proxy.https, host, cfg)
            .await
            .unwrap()
            .server_cert
    }

    /// The status of a GET on a fresh connection, with or without the good
    /// client certificate; `None` when the handshake is refused.
    async fn status(&self, host: &str, with_cert: bool) -> Option<u16> {
        let client = with_cert.then_some(&self.good);
        let cfg = client_config(&self.server_ca, client, &[b"http/1.1"]);
        get_once(self.proxy.https, host, cfg, "/")
            .await
            .ok()
            .map(|r| r.status)
    }

    /// Replaces host two's certificate and waits until it is served: proof
    /// that a reload happened and that two is not held back by one.
    async fn roll_two(&self, cn: &str) -> Leaf {
        let next = self.server_ca.server(&[TWO], cn, 2031);
        write_yaml(
            self.dir(),
            "secret-two.yaml",
            &[tls_secret("two-tls", &next.cert_pem, &next.key_pem)],
        );
        let want = next.der.clone();
        let took = time_until(Instant::now(), Duration::from_secs(3), || async {
            self.served_cert(TWO).await == want
        })
        .await;
        assert!(
            took.is_some(),
            "two never got its new certificate:\n{}",
            self.proxy.log()
        );
        next
    }

    /// Host one is served exactly as before.
    async fn one_unchanged(&self) {
        assert_eq!(
            self.served_cert(ONE).await,
            self.one_v1.der,
            "one's last good certificate"
        );
        assert_eq!(self.status(ONE, true).await, Some(200));
        assert_eq!(
            self.status(ONE, false).await,
            None,
            "one's last good policy"
        );
    }

    fn assert_reported(&self, needles: &[&str]) {
        assert!(
            self.proxy
                .wait_metric("tlsward_proxy_config_problems", &[], |v| v >= 1.0)
                >= 1.0,
            "tlsward_proxy_config_problems\n{}",
            self.proxy.metrics()
        );
        assert!(
            self.proxy
                .metric("tlsward_proxy_reloads_total", &[("result", "failure")])
                >= 1.0
        );
        assert!(
            self.proxy.wait_log(needles),
            "the log names {needles:?}:\n{}",
            self.proxy.log()
        );
    }

    /// Fixes host one's Secret and waits until it is served with no
    /// problem left.
    async fn repair_one(&self) {
        let fixed = self.server_ca.server(&[ONE], "one-v2", 2031);
        write_yaml(
            self.dir(),
            "secret-one.yaml",
            &[tls_secret("one-tls", &fixed.cert_pem, &fixed.key_pem)],
        );
        let want = fixed.der.clone();
        let took = time_until(Instant::now(), Duration::from_secs(3), || async {
            self.served_cert(ONE).await == want
        })
        .await;
        assert!(took.is_some(), "one never recovered:\n{}", self.proxy.log());
        assert_eq!(
            self.proxy
                .wait_metric("tlsward_proxy_config_problems", &[], |v| v == 0.0),
            0.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_with_bad_pem_keeps_the_last_good_certificate() {
    let t = TwoHosts::start().await;
    let bad =
        "-----BEGIN CERTIFICATE-----\nthis is not base64 at all!\n-----END CERTIFICATE-----\n";
    write_yaml(
        t.dir(),
        "secret-one.yaml",
        &[tls_secret("one-tls", bad, &t.one_v1.key_pem)],
    );
    t.roll_two("two-v2").await;
    t.one_unchanged().await;
    assert_eq!(t.status(TWO, true).await, Some(200));
    t.assert_reported(&["default/one-tls", "tls.crt", "one.example.test"]);
    t.repair_one().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_that_does_not_match_its_certificate_keeps_the_last_good_certificate() {
    let t = TwoHosts::start().await;
    let stranger = t.server_ca.server(&[ONE], "stranger", 2031);
    write_yaml(
        t.dir(),
        "secret-one.yaml",
        &[tls_secret("one-tls", &t.one_v1.cert_pem, &stranger.key_pem)],
    );
    t.roll_two("two-v2").await;
    t.one_unchanged().await;
    t.assert_reported(&["default/one-tls", "does not match"]);
    t.repair_one().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_without_valid_anchors_keeps_the_last_good_policy() {
    let t = TwoHosts::start().await;
    let leaf = Ca::self_signed_leaf("not-a-ca");
    write_yaml(
        t.dir(),
        "policy-one.yaml",
        &[policy(
            "p-one",
            json!({"mode": "Optional", "trustAnchors": inline(&[&leaf.cert_pem])}),
        )],
    );
    // Meanwhile two's policy changes for real: clients without a
    // certificate become welcome there.
    write_yaml(
        t.dir(),
        "policy-two.yaml",
        &[policy(
            "p-two",
            json!({"mode": "Optional", "trustAnchors": inline(&[&t.client_ca.pem()])}),
        )],
    );
    let took = time_until(Instant::now(), Duration::from_secs(3), || async {
        t.status(TWO, false).await == Some(200)
    })
    .await;
    assert!(
        took.is_some(),
        "two's new policy never applied:\n{}",
        t.proxy.log()
    );
    t.one_unchanged().await;
    t.assert_reported(&["p-one", "no valid trust anchors"]);
    // Fixed: one becomes Optional too.
    write_yaml(
        t.dir(),
        "policy-one.yaml",
        &[policy(
            "p-one",
            json!({"mode": "Optional", "trustAnchors": inline(&[&t.client_ca.pem()])}),
        )],
    );
    let took = time_until(Instant::now(), Duration::from_secs(3), || async {
        t.status(ONE, false).await == Some(200)
    })
    .await;
    assert!(
        took.is_some(),
        "one's fixed policy never applied:\n{}",
        t.proxy.log()
    );
    assert_eq!(
        t.proxy
            .wait_metric("tlsward_proxy_config_problems", &[], |v| v == 0.0),
        0.0
    );
}

const NOT_YAML: &str =
    "apiVersion: v1\nkind: Secret\nmetadata: {name: one-tls\nstringData: [\n  - :\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_that_is_not_yaml_keeps_its_previous_objects() {
    let t = TwoHosts::start().await;
    common::write_atomic(&t.dir().join("secret-one.yaml"), NOT_YAML);
    t.assert_reported(&["secret-one.yaml", "keeping its previous objects"]);
    t.one_unchanged().await;
    // Other files still load.
    t.roll_two("two-v2").await;
    t.one_unchanged().await;
    t.repair_one().await;
}

/// A broken file is still broken after a reload caused by another file:
/// the problem must stay counted until the file is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_file_stays_reported_after_an_unrelated_reload() {
    let t = TwoHosts::start().await;
    common::write_atomic(&t.dir().join("secret-one.yaml"), NOT_YAML);
    t.assert_reported(&["secret-one.yaml"]);
    t.roll_two("two-v2").await;
    t.one_unchanged().await;
    assert!(
        t.problems() >= 1.0,
        "secret-one.yaml is still not YAML, yet tlsward_proxy_config_problems is {}",
        t.problems()
    );
}

// ---------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    let server_ca = Ca::new("drain server CA");
    let server = server_ca.server(&[OPEN], "open", 2030);
    let upstream = Upstream::start_with_delay("slow", Duration::from_millis(1500));
    let config = tempfile::tempdir().unwrap();
    write_json(
        config.path(),
        "all.json",
        &[
            tls_secret("open-tls", &server.cert_pem, &server.key_pem),
            service("echo", &[upstream.addr]),
            ingress(
                "open",
                None,
                "open-tls",
                &[Rule {
                    host: OPEN,
                    paths: &[("Prefix", "/", "echo")],
                }],
            ),
        ],
    );
    let mut proxy = Proxy::start(config.path(), &[]);
    let port = proxy.https;
    // Idle keep-alive connections, HTTP/1.1 and h2, must not hold the exit.
    let mut idle = Vec::new();
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let mut c = Conn::open(port, OPEN, client_config(&server_ca, None, &[alpn]))
            .await
            .unwrap();
        assert_eq!(c.get(OPEN, "/", &[]).await.unwrap().status, 200);
        idle.push(c);
    }
    let cfg = client_config(&server_ca, None, &[b"http/1.1"]);
    let in_flight = tokio::spawn(get_once(port, OPEN, cfg.clone(), "/drain/slow"));
    let deadline = Instant::now() + Duration::from_secs(3);
    while upstream.hits() < 3 {
        assert!(Instant::now() < deadline, "the slow request never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.sigterm();
    let signalled = Instant::now();
    // New connections are refused once draining.
    let closed = time_until(signalled, Duration::from_secs(2), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    })
    .await;
    assert!(
        closed.is_some(),
        "the HTTPS listener stays open while draining"
    );
    let r = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is drained");
    assert_eq!(r.status, 200, "{}", r.body);
    let answered = signalled.elapsed();
    let status = proxy
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no exit within 5 s of the last response:\n{}", proxy.log()));
    let exited = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{}", proxy.log());
    assert!(answered >= Duration::from_millis(1000), "{answered:?}");
    eprintln!("SIGTERM: in-flight request answered after {answered:?}, exit 0 after {exited:?}");
    drop(idle);
}

// ---------------------------------------------------------------------------
// Identity forwarding details, chains, upgrades and limits
// ---------------------------------------------------------------------------

/// Parses `x-forwarded-client-cert` as Envoy defines it: elements separated
/// by `,`, key=value pairs by `;`, values optionally double-quoted with
/// backslash escapes.
fn parse_xfcc(v: &str) -> Vec<Vec<(String, String)>> {
    let mut elements = vec![Vec::new()];
    let (mut key, mut value) = (String::new(), String::new());
    let (mut in_value, mut quoted, mut escaped) = (false, false, false);
    fn finish(elements: &mut [Vec<(String, String)>], k: &mut String, v: &mut String) {
        if !k.is_empty() {
            elements
                .last_mut()
                .unwrap()
                .push((std::mem::take(k), std::mem::take(v)));
        }
    }
    for c in v.chars() {
        if escaped {
            value.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' if in_value => quoted = !quoted,
            '=' if !in_value => in_value = true,
            ';' | ',' if !quoted => {
                finish(&mut elements, &mut key, &mut value);
                in_value = false;
                if c == ',' {
                    elements.push(Vec::new());
                }
            }
            c if in_value => value.push(c),
            c => key.push(c),
        }
    }
    finish(&mut elements, &mut key, &mut value);
    elements
}

#[test]
fn the_test_xfcc_parser_follows_envoy() {
    let e = parse_xfcc(r#"Hash=ab;Subject="CN=a, O=b";URI=spiffe://x/y,By=z"#);
    assert_eq!(e.len(), 2);
    assert_eq!(e[0][1], ("Subject".into(), "CN=a, O=b".into()));
    assert_eq!(e[0][2], ("URI".into(), "spiffe://x/y".into()));
    assert_eq!(e[1][0], ("By".into(), "z".into()));
}

/// A SAN may hold `;`, `,` and `=`: the XFCC value must be quoted so that
/// a certificate cannot add fields (say a DNS name its CA never vouched
/// for) to what the upstream reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfcc_values_with_separators_are_quoted() {
    let w = World::start(&[]);
    let uri = "https://clients.example.test/a;DNS=admin.example.test,By=spiffe://forged";
    let tricky = w.client_ca.client(
        ClientSpec::named("tricky")
            .dns("real.clients.example.test")
            .uri(uri),
    );
    let r = w.get(A, "/", Some(&tricky)).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let xfcc = echoed(&r.json(), "x-forwarded-client-cert");
    assert_eq!(xfcc.len(), 1, "{xfcc:?}");
    let elements = parse_xfcc(&xfcc[0]);
    assert_eq!(elements.len(), 1, "one element for one client: {}", xfcc[0]);
    let values = |k: &str| -> Vec<&str> {
        elements[0]
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values("URI"), [uri], "{}", xfcc[0]);
    assert_eq!(values("DNS"), ["real.clients.example.test"], "{}", xfcc[0]);
    assert_eq!(values("Hash"), [tricky.sha256_hex().as_str()]);
    assert!(values("By").is_empty(), "{}", xfcc[0]);
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

/// Upgrades (WebSockets) are tunnelled to the upstream, and a reload does
/// not drop an established tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_tunnelled_and_survives_a_reload() {
    let w = World::start(&[]);
    let cfg = w.cfg(Some(&w.good), b"http/1.1");
    let (status, tunnel) = websocket(w.proxy.https, A, cfg, "/ws").await.unwrap();
    assert_eq!(status, 101, "the WebSocket handshake reaches the upstream");
    let mut tunnel = tunnel.unwrap();
    assert_eq!(
        tunnel_echo(&mut tunnel, b"ping-1").await.unwrap(),
        b"ping-1"
    );
    // Any change reloads: here a new Service.
    let reloads = w
        .proxy
        .metric("tlsward_proxy_reloads_total", &[("result", "success")]);
    write_json(w.config.path(), "extra.json", &[service("extra", &[])]);
    w.proxy.wait_metric(
        "tlsward_proxy_reloads_total",
        &[("result", "success")],
        |v| v > reloads,
    );
    assert_eq!(
        tunnel_echo(&mut tunnel, b"ping-2").await.unwrap(),
        b"ping-2"
    );
}

/// A keep-alive connection waits for its next request under its own idle
/// timeout, not the header-read timeout; it keeps serving after the proxy
/// has let go of its HTTP buffers, and a request head split across that
/// moment arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_have_their_own_timeout_and_keep_serving() {
    use tokio::io::AsyncWriteExt;
    let w = World::start(&[
        "--header-read-timeout-seconds",
        "1",
        "--idle-timeout-seconds",
        "3",
    ]);
    let port = w.proxy.https;
    let cfg = w.cfg(None, b"http/1.1");

    // Idle for twice the header-read timeout between two requests.
    let mut c = Conn::open(port, OPEN, cfg.clone()).await.unwrap();
    assert_eq!(c.get(OPEN, "/one", &[]).await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = c.get(OPEN, "/two", &[]).await.unwrap();
    assert_eq!(second.status, 200);
    assert_eq!(second.json()["path"], "/two");

    // An upgrade on a connection whose first session was released.
    let (status, tunnel) = websocket_after_idle(
        port,
        OPEN,
        cfg.clone(),
        "/ws",
        Some(Duration::from_millis(1200)),
    )
    .await
    .unwrap();
    assert_eq!(
        status, 101,
        "the upgrade reaches the upstream after a release"
    );
    let mut tunnel = tunnel.unwrap();
    assert_eq!(
        tunnel_echo(&mut tunnel, b"after-idle").await.unwrap(),
        b"after-idle"
    );

    // A request, a pause long enough for the release, then a head in two
    // parts around another pause: both answered on the one connection.
    let mut s = tls_stream(port, OPEN, cfg.clone()).await.unwrap();
    let head = format!("GET /a HTTP/1.1\r\nHost: {OPEN}\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.write_all(format!("GET /b HTTP/1.1\r\nHost: {OPEN}\r\n").as_bytes())
        .await
        .unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(b"x-late: yes\r\n\r\n").await.unwrap();
    s.flush().await.unwrap();

    // Then nothing: the connection is closed after the idle timeout.
    let (text, took) = read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .expect("an idle connection is closed in the end");
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert!(text.contains(r#""path":"/b""#), "{text}");
    assert!(
        text.contains("x-late"),
        "the late header reached the upstream: {text}"
    );
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(8),
        "closed by the 3 s idle timeout, not the 1 s header timeout: {took:?}"
    );

    // The first byte of a head after a release, the rest later than the
    // release period: answered, and the connection stays open for another.
    let mut s = tls_stream(port, OPEN, cfg.clone()).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.write_all(b"G").await.unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.write_all(format!("ET /c HTTP/1.1\r\nHost: {OPEN}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let last = format!("GET /d HTTP/1.1\r\nHost: {OPEN}\r\nConnection: close\r\n\r\n");
    s.write_all(last.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    let (text, _) = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("answered and closed as asked");
    assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");
    assert!(
        text.contains(r#""path":"/c""#) && text.contains(r#""path":"/d""#),
        "{text}"
    );
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_big_headers_and_too_many_connections_are_limited() {
    use tokio::io::AsyncWriteExt;
    // Three workers, three listeners: the connection limit is still one.
    let w = World::start(&[
        "--header-read-timeout-seconds",
        "1",
        "--max-header-bytes",
        "16384",
        "--max-connections",
        "2",
        "--workers",
        "3",
    ]);
    let port = w.proxy.https;
    let cfg = w.cfg(None, b"http/1.1");

    // Slowloris: half a request head, then nothing.
    let mut s = tls_stream(port, OPEN, cfg.clone()).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {OPEN}\r\n").as_bytes())
        .await
        .unwrap();
    s.flush().await.unwrap();
    let (_, took) = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("a slow request head is cut off");
    assert!(
        took < Duration::from_secs(3),
        "after about 1 s, took {took:?}"
    );
    drop(s);

    // A request head above --max-header-bytes.
    let big = format!("x-big: {}", "a".repeat(32 * 1024));
    let r = w.curl(OPEN, "/", None, &["-H", &big]);
    assert_eq!(r.status, 431, "{:?}", (r.exit, &r.stderr));
    assert_eq!(w.upstream.hits(), 0);

    // --max-connections 2: a third connection waits for a free slot.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c1 = Conn::open(port, OPEN, cfg.clone()).await.unwrap();
    let mut c2 = Conn::open(port, OPEN, cfg.clone()).await.unwrap();
    assert_eq!(c1.get(OPEN, "/", &[]).await.unwrap().status, 200);
    assert_eq!(c2.get(OPEN, "/", &[]).await.unwrap().status, 200);
    let third = tokio::spawn(get_once(port, OPEN, cfg.clone(), "/third"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!third.is_finished(), "a third connection is not served yet");
    drop(c1);
    let r = tokio::time::timeout(Duration::from_secs(3), third)
        .await
        .expect("served once a slot is free")
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(c2.get(OPEN, "/", &[]).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_names_the_client_in_json() {
    let w = World::start(&["--log-format", "json"]);
    let r = w.curl(A, "/logged?x=1", Some(&w.good_files), &[]);
    assert_eq!((r.exit, r.status), (0, 200), "{r:?}");
    let deadline = Instant::now() + Duration::from_secs(3);
    let line = loop {
        let found = w.proxy.log().lines().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let text = v.to_string();
            (text.contains("/logged") && text.contains(GOOD_URI)).then_some(v)
        });
        if let Some(v) = found {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "no JSON access-log line with the path and the client:\n{}",
            w.proxy.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = line.to_string();
    assert!(text.contains(A) && text.contains("200"), "{text}");
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
    let after = w.proxy.metrics();
    assert!(
        after.contains(r#"reason="revoked""#),
        "refused as revoked, not let in by resumption: {after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_resumption_can_be_turned_off() {
    let w = World::start(&["--session-resumption", "false"]);
    let cfg = resuming(w.cfg(Some(&w.good), b"http/1.1"));
    assert_eq!(second_handshake(&w, cfg).await, rustls::HandshakeKind::Full);
}
