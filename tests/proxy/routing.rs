//! Which upstream a request reaches: SNI and Host must fall under the same
//! policy (421 otherwise, h2 connection coalescing included), an unknown
//! SNI is refused and a wildcard covers one label, Ingress paths match as
//! Prefix, Exact or ImplementationSpecific, a Service's endpoints take turns
//! and only ready EndpointSlice endpoints are used, request bodies reach the
//! upstream, and failures answer 404, 502, 503 or 504. Uses the real
//! `tlsward proxy` binary in directory mode, rcgen certificates, real echo
//! upstreams, curl and the rustls client.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

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
