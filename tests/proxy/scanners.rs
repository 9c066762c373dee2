//! testssl.sh against the proxy: a host under an Optional policy (so the
//! scanner, which has no client certificate, can finish every check) with
//! HSTS on. No finding rated MEDIUM or worse may remain that tlsward
//! controls; the certificate's own content is the issuer's (see
//! `TESTSSL_CERTIFICATE_CONTENT`).

use serde_json::json;

use crate::common::{TESTSSL_CERTIFICATE_CONTENT, testssl, testssl_serious};
use crate::support::*;

#[test]
fn testssl_finds_nothing_medium_or_worse_on_the_proxy() {
    let w = World::start(&[]);
    let host = "scan.wild.example.test";
    let root: &[(&str, &str, &str)] = &[("Prefix", "/", "echo")];
    let mut ing = ingress(
        "scan",
        Some("optional"),
        "wild-tls",
        &[Rule { host, paths: root }],
    );
    ing["metadata"]["annotations"]["tlsward.io/hsts"] = json!("max-age=31536000");
    write_json(w.config.path(), "scan.json", &[ing]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while w.curl(host, "/", None, &[]).status != 200 {
        assert!(std::time::Instant::now() < deadline, "{}", w.proxy.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    let findings = testssl(host, w.proxy.https);
    // X-Frame-Options, CSP and the like are the application's response
    // headers, passed through as the app sends them (the echo upstream
    // sends none); a proxy that forced them would break apps.
    let not_ours = [TESTSSL_CERTIFICATE_CONTENT, &["security_headers"]].concat();
    let serious = testssl_serious(&findings, &not_ours);
    assert!(serious.is_empty(), "{serious:#?}");
    let get = |id: &str| findings.iter().find(|f| f.id == id);
    for (id, want) in [
        ("SSLv2", "not offered"),
        ("SSLv3", "not offered"),
        ("TLS1", "not offered"),
        ("TLS1_1", "not offered"),
        ("TLS1_2", "offered"),
        ("HSTS_time", "365 days"),
    ] {
        let f = get(id).unwrap_or_else(|| panic!("no {id} finding: {findings:#?}"));
        assert!(f.finding.starts_with(want), "{id}: {f:?}");
    }
}
