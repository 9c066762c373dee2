//! The protocols around a request: HTTP/1.1 or h2 chosen by ALPN, plain
//! HTTP redirected to HTTPS with 308, and WebSocket upgrades tunnelled to
//! the upstream (through a reload). Uses the real `tlsward proxy` binary in
//! directory mode, rcgen certificates, the echo upstream, curl and the
//! rustls client.

use serde_json::json;

use crate::support::*;

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

/// Only WebSocket upgrades are tunnelled. After a 101 for `h2c` (or any
/// protocol), the client's bytes would reach the upstream raw, with a Host,
/// XFCC and X-Forwarded-For of its choosing. So other upgrades go on as
/// ordinary requests, without the `Upgrade` header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_and_unknown_upgrades_are_not_tunnelled() {
    let w = World::start(&[]);
    let cfg = w.cfg(Some(&w.good), b"http/1.1");
    for headers in [
        &[
            ("upgrade", "h2c"),
            ("connection", "HTTP2-Settings"),
            ("http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
        ][..],
        &[("upgrade", "foo")][..],
        &[("upgrade", "h2c, websocket-not")][..],
    ] {
        let (status, tunnel, body) = upgrade(w.proxy.https, A, cfg.clone(), "/up", None, headers)
            .await
            .unwrap();
        assert_eq!(status, 200, "{headers:?} must not switch protocols: {body}");
        assert!(tunnel.is_none());
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        for h in ["upgrade", "http2-settings"] {
            assert!(
                echoed(&body, h).is_empty(),
                "{h} reached the upstream: {body}"
            );
        }
        assert_eq!(echoed(&body, "x-forwarded-client-cert").len(), 1, "{body}");
    }
    // WebSocket still works, whatever the case of its token.
    let (status, tunnel, _) = upgrade(
        w.proxy.https,
        A,
        cfg,
        "/ws",
        None,
        &[("upgrade", "WebSocket")],
    )
    .await
    .unwrap();
    assert_eq!(status, 101);
    assert_eq!(
        tunnel_echo(&mut tunnel.unwrap(), b"hi").await.unwrap(),
        b"hi"
    );
}

/// `tlsward.io/upgrades` opts an Ingress into tunnelling more protocols than
/// WebSocket; other hosts still refuse them, and `h2c` can never be opted
/// into (a problem, and the host tunnels only WebSockets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_opts_into_more_upgrade_protocols() {
    let w = World::start(&[]);
    let root: &[(&str, &str, &str)] = &[("Prefix", "/", "echo")];
    let with_upgrades = |name: &str, host: &'static str, value: &str| {
        let mut ing = ingress(name, None, "wild-tls", &[Rule { host, paths: root }]);
        ing["metadata"]["annotations"] = json!({"tlsward.io/upgrades": value});
        ing
    };
    write_json(
        w.config.path(),
        "upgrades.json",
        &[
            with_upgrades("tunnel", "tunnel.wild.example.test", "Foo, bar/2"),
            with_upgrades("smuggle", "smuggle.wild.example.test", "h2c, foo"),
        ],
    );
    w.proxy
        .wait_metric("tlsward_proxy_config_problems", &[], |v| v == 1.0);
    assert!(
        w.proxy.wait_log(&[
            "Ingress default/smuggle",
            "h2c is never tunnelled",
            "only WebSocket upgrades are tunnelled"
        ]),
        "{}",
        w.proxy.log()
    );
    let cfg = w.cfg(None, b"http/1.1");
    let ask = |host: &'static str, protocol: &'static str| {
        let cfg = cfg.clone();
        let port = w.proxy.https;
        async move {
            upgrade(port, host, cfg, "/up", None, &[("upgrade", protocol)])
                .await
                .unwrap()
        }
    };
    // Opted in: tunnelled, whatever the case, and the upstream is asked for
    // the protocol the client named.
    for protocol in ["foo", "BAR/2"] {
        let (status, tunnel, body) = ask("tunnel.wild.example.test", protocol).await;
        assert_eq!(status, 101, "{protocol}: {body}");
        assert_eq!(
            tunnel_echo(&mut tunnel.unwrap(), b"raw").await.unwrap(),
            b"raw"
        );
    }
    // Not opted into: an ordinary request, without its Upgrade header.
    for (host, protocol) in [
        ("tunnel.wild.example.test", "baz"),
        ("tunnel.wild.example.test", "h2c"),
        ("smuggle.wild.example.test", "foo"),
        ("smuggle.wild.example.test", "h2c"),
        (OPEN, "foo"),
    ] {
        let (status, tunnel, body) = ask(host, protocol).await;
        assert_eq!(status, 200, "{host} {protocol}: {body}");
        assert!(tunnel.is_none());
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(echoed(&body, "upgrade").is_empty(), "{host}: {body}");
    }
}

/// The plain-HTTP port redirects only hosts the proxy serves, and builds
/// `Location` only from a valid host: no `https://x@evil.net/`, no
/// `https:///p`.
#[test]
fn the_redirect_port_answers_only_valid_served_hosts() {
    let w = World::start(&[]);
    let port = w.proxy.http;
    let url = format!("http://127.0.0.1:{port}/p");
    // `Host;` is curl's way to send the header with an empty value.
    let ask = |host: &str| {
        let h = if host.is_empty() {
            "Host;".to_string()
        } else {
            format!("Host: {host}")
        };
        curl(&["-H", &h, &url])
    };
    // A served host, spelt with capitals and a trailing dot.
    let r = ask("A.Example.Test.");
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(
        r.header("location").as_deref(),
        Some(format!("https://{A}:{}/p", w.proxy.https).as_str())
    );
    for (host, status) in [
        ("x@evil.net", 400),
        ("a.example.test@evil.net", 400),
        ("evil.net/x?", 400),
        ("", 400),
        ("unserved.example.net", 404),
    ] {
        let r = ask(host);
        assert_eq!(r.status, status, "Host {host:?}: {r:?}");
        assert_eq!(r.header("location"), None, "Host {host:?}: {r:?}");
    }
}

/// `tlsward.io/hsts` adds Strict-Transport-Security to a host's responses;
/// hosts without it get none; a value that is not one is a problem named
/// in the log, and its host is still served, without the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_is_an_option_per_ingress() {
    let w = World::start(&[]);
    let root: &[(&str, &str, &str)] = &[("Prefix", "/", "echo")];
    let with_hsts = |name: &str, host: &'static str, value: &str| {
        let mut ing = ingress(name, None, "wild-tls", &[Rule { host, paths: root }]);
        ing["metadata"]["annotations"] = json!({"tlsward.io/hsts": value});
        ing
    };
    write_json(
        w.config.path(),
        "hsts.json",
        &[
            with_hsts(
                "sts",
                "sts.wild.example.test",
                "max-age=63072000; includeSubDomains",
            ),
            with_hsts("badsts", "badsts.wild.example.test", "max-age=forever"),
        ],
    );
    w.proxy
        .wait_metric("tlsward_proxy_config_problems", &[], |v| v == 1.0);
    assert!(
        w.proxy.wait_log(&[
            "Ingress default/badsts",
            "max-age=forever",
            "served without Strict-Transport-Security"
        ]),
        "{}",
        w.proxy.log()
    );
    let sts = |host: &str| {
        let r = w.curl(host, "/", None, &[]);
        assert_eq!((r.exit, r.status), (0, 200), "{host}: {r:?}");
        r.header("strict-transport-security")
    };
    assert_eq!(
        sts("sts.wild.example.test").as_deref(),
        Some("max-age=63072000; includeSubDomains")
    );
    assert_eq!(sts("badsts.wild.example.test"), None);
    assert_eq!(sts(OPEN), None);
}
