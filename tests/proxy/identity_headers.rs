//! Where the verified client identity goes: `x-forwarded-client-cert`
//! (replaced, never appended; values with separators quoted), RFC 9440
//! `Client-Cert`, or nothing, plus the `X-Forwarded-*` headers and the JSON
//! access log that names the client (the first test also checks the
//! metrics a served request leaves). Uses the real `tlsward proxy` binary
//! in directory mode, rcgen client certificates with DNS and URI SANs, the
//! echo upstream (which returns the headers it received), curl and the
//! rustls client.

use std::time::{Duration, Instant};

use base64::Engine;

use crate::support::*;

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
            "-H",
            "Forwarded: for=203.0.113.7;proto=https;host=admin.example.test",
            "-H",
            "X-Real-IP: 203.0.113.7",
            "-H",
            "X-Forwarded-Port: 443",
            "-H",
            "ssl-client-cert: forged",
            "-H",
            "ssl-client-verify: SUCCESS",
            "-H",
            "ssl-client-subject-dn: CN=admin",
            "-H",
            "X-SSL-Client-Verify: SUCCESS",
            "-H",
            "X-Forwarded-Tls-Client-Cert-Info: Subject=%22CN=admin%22",
        ],
    );
    assert_eq!((r.exit, r.status), (0, 200), "{r:?}");
    let body = r.json();
    for h in [
        "forwarded",
        "x-real-ip",
        "x-forwarded-port",
        "ssl-client-cert",
        "ssl-client-verify",
        "ssl-client-subject-dn",
        "x-ssl-client-verify",
        "x-forwarded-tls-client-cert-info",
    ] {
        assert!(
            echoed(&body, h).is_empty(),
            "client-sent {h} reached the upstream: {body}"
        );
    }
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

/// A host spelt with capitals or a trailing dot reaches the upstream in
/// the one form the proxy routes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_is_normalised_before_it_is_forwarded() {
    let w = World::start(&[]);
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let mut conn = Conn::open(w.proxy.https, A, w.cfg(Some(&w.good), alpn))
            .await
            .unwrap();
        let r = conn.get("A.Example.TEST.", "/", &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let body = r.json();
        assert_eq!(echoed(&body, "host"), [A], "{body}");
        assert_eq!(echoed(&body, "x-forwarded-host"), [A], "{body}");
        let r = conn.get("x@a.example.test", "/", &[]).await.unwrap();
        assert_eq!(r.status, 400, "{}", r.body);
    }
    assert_eq!(w.upstream.hits(), 2);
}

/// One CN `evil, CN=admin` and two CNs `evil` and `admin` once gave the
/// same `Subject="CN=evil, CN=admin"`: an upstream that matched on
/// `CN=admin` let either in. RFC 4514 escaping tells them apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_subjects_give_different_xfcc() {
    use tlsward::proxy::identity::read_back;
    let w = World::start(&[]);
    let one = w.client_ca.client(ClientSpec::named("evil, CN=admin"));
    let two = w
        .client_ca
        .client(ClientSpec::named("evil").another_cn("admin"));
    let mut subjects = Vec::new();
    for leaf in [&one, &two] {
        let r = w.get(A, "/", Some(leaf)).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let xfcc = echoed(&r.json(), "x-forwarded-client-cert");
        assert_eq!(xfcc.len(), 1, "{xfcc:?}");
        let pairs = read_back::xfcc_pairs(&xfcc[0]).unwrap();
        let subject = pairs.iter().find(|(k, _)| *k == "Subject").unwrap().1;
        subjects.push((subject.to_string(), read_back::rfc4514(subject).unwrap()));
    }
    let cn = |v: &str| ("CN".to_string(), v.as_bytes().to_vec());
    assert_eq!(subjects[0].0, r"CN=evil\, CN=admin");
    assert_eq!(subjects[0].1, vec![vec![cn("evil, CN=admin")]]);
    assert_eq!(subjects[1].0, "CN=admin,CN=evil");
    assert_eq!(subjects[1].1, vec![vec![cn("admin")], vec![cn("evil")]]);
}

/// A URI SAN with CR/LF cannot go into a header. The request once went on
/// with no XFCC at all, as if anonymous; now the client is refused, with
/// the reason logged and counted. RFC 9440's base64 carries it unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_cannot_be_carried_is_refused_not_stripped() {
    let w = World::start(&[]);
    let odd = w
        .client_ca
        .client(ClientSpec::named("odd").uri("spiffe://example.test/a\r\nX-Injected: 1"));
    let r = w.get(A, "/", Some(&odd)).await.unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("URI subjectAltName #0"), "{}", r.body);
    assert_eq!(w.upstream.hits(), 0);
    assert!(w.proxy.wait_handshake_failures("bad_certificate", 1.0) >= 1.0);
    assert!(
        w.proxy
            .wait_log(&["client refused", "URI subjectAltName #0"]),
        "{}",
        w.proxy.log()
    );

    let r = w.get(RFC, "/", Some(&odd)).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let want = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(&odd.der)
    );
    assert_eq!(echoed(&r.json(), "client-cert"), [want]);
}

/// A trusted certificate whose URI SAN holds a newline and a made-up log
/// line: in text and in JSON logs, every line the proxy writes is one of
/// its own, and the forged one is not among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_is_forged_by_a_certificate() {
    let forged = "2026-12-04T00:00:00.000000Z  INFO tlsward::access: request host=admin.example.test status=200";
    for format in ["text", "json"] {
        let w = World::start(&["--log-format", format]);
        let liar = w
            .client_ca
            .client(ClientSpec::named("liar").uri(&format!("spiffe://example.test/x\n{forged}")));
        let r = w.get(RFC, "/forge", Some(&liar)).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let r = w.get(A, "/forge", Some(&liar)).await.unwrap();
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(w.proxy.wait_log(&["/forge", "403"]), "{}", w.proxy.log());
        let log = w.proxy.log();
        let access: Vec<&str> = log.lines().filter(|l| l.contains("/forge")).collect();
        assert_eq!(access.len(), 2, "one line per request:\n{log}");
        for line in log.lines() {
            assert!(
                !line.starts_with("2026-12-04T00:00:00"),
                "forged line:\n{log}"
            );
            if format == "json" {
                assert!(
                    serde_json::from_str::<serde_json::Value>(line).is_ok(),
                    "{line}"
                );
            } else {
                assert!(
                    line.as_bytes().first().is_some_and(u8::is_ascii_digit),
                    "{line}"
                );
            }
        }
        assert!(
            access
                .iter()
                .all(|l| l.contains("spiffe://example.test/x\\n2026-12-04")),
            "{log}"
        );
    }
}
