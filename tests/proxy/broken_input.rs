//! Broken input keeps the last good configuration: a Secret with bad PEM
//! (a malformed block anywhere in the chain), a key that does not match its
//! certificate, a policy without valid trust anchors, a CRL rustls cannot
//! use (OpenSSL's default, without extensions), or a file that is not YAML
//! leaves the affected host served as before, is reported (log,
//! `tlsward_proxy_config_problems`, `tlsward_proxy_host_config_errors`)
//! until fixed, and does not hold back changes to other hosts. With no last
//! good configuration (a fresh start), such a host is not served. Uses the
//! real `tlsward proxy` binary in directory mode, rcgen certificates, CRLs
//! from the real `openssl ca`, the echo upstream and the rustls client.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common;
use crate::support::*;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_block_in_a_certificate_chain_keeps_the_last_good_certificate() {
    let t = TwoHosts::start().await;
    // A new leaf whose intermediate block is damaged: once, this block was
    // skipped and the leaf served alone, without a word.
    let next = t.server_ca.server(&[ONE], "one-v2", 2031);
    let chain = format!(
        "{}-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n",
        next.cert_pem
    );
    write_yaml(
        t.dir(),
        "secret-one.yaml",
        &[tls_secret("one-tls", &chain, &next.key_pem)],
    );
    t.roll_two("two-v2").await;
    t.one_unchanged().await;
    t.assert_reported(&[
        "Secret default/one-tls tls.crt: PEM block 2 is malformed",
        "keeping the last good configuration for one.example.test",
    ]);
    assert_eq!(
        t.proxy.metric(
            "tlsward_proxy_host_config_errors",
            &[
                ("host", ONE),
                ("reason", "tls_secret"),
                ("serving", "last_good")
            ]
        ),
        1.0,
        "{}",
        t.proxy.metrics()
    );
    t.repair_one().await;
    assert_eq!(
        t.proxy.metric("tlsward_proxy_host_config_errors", &[]),
        0.0,
        "the series goes once the Secret is fixed"
    );
}

/// What the proxy says about a CRL without extensions, wherever it is.
const NO_EXTENSIONS: &[&str] = &[
    "CRL 1 cannot be used: it lacks the CRL Number and Authority Key Identifier extensions, which RFC 5280 section 5.2 requires",
    "openssl ca -gencrl",
    "crlnumber",
    "authorityKeyIdentifier=keyid:always",
];

/// The log line reporting `needle`, which must be an ERROR.
fn error_line(proxy: &Proxy, needle: &str) -> String {
    let log = proxy.log();
    let line = log
        .lines()
        .find(|l| l.contains("configuration problem") && l.contains(needle))
        .unwrap_or_else(|| panic!("no problem line with {needle:?}:\n{log}"))
        .to_string();
    assert!(line.contains(" ERROR "), "not an ERROR line: {line}");
    line
}

fn set_client_ca_crl(w: &World, crl: &str) {
    let path = w.config.path().join("secrets.json");
    let mut list: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for item in list["items"].as_array_mut().unwrap() {
        if item["metadata"]["name"] == "client-ca" {
            item["stringData"]["ca.crl"] = json!(crl);
        }
    }
    common::write_atomic(&path, &list.to_string());
}

/// The documented decision for a refused CRL on a running proxy: the host
/// keeps its last good configuration, older revocations included, and the
/// refusal is an ERROR line and a metric an alert fires on; never silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_without_extensions_keeps_the_last_good_crl_and_says_so() {
    let w = World::start(&[]);
    assert_eq!(w.get(A, "/", Some(&w.good)).await.unwrap().status, 200);
    // The CA revokes the good client too, publishing with OpenSSL's
    // defaults: a version 1 CRL that OpenSSL accepts and rustls does not.
    let crl = w
        .client_ca
        .openssl_crl(&[&w.revoked, &w.good], OpensslCrl::Default);
    set_client_ca_crl(&w, &crl);
    let refused = [
        ("host", A),
        ("reason", "invalid_crl"),
        ("serving", "last_good"),
    ];
    assert_eq!(
        w.proxy
            .wait_metric("tlsward_proxy_host_config_errors", &refused, |v| v == 1.0),
        1.0,
        "{}\n{}",
        w.proxy.metrics(),
        w.proxy.log()
    );
    let mut needles = NO_EXTENSIONS.to_vec();
    needles.extend([
        "spec.revocation[0] (Secret client-ca, key ca.crl)",
        "keeping the last good configuration for a.example.test, whose older CRLs stay in force",
    ]);
    assert!(w.proxy.wait_log(&needles), "{}", w.proxy.log());
    error_line(
        &w.proxy,
        "keeping the last good configuration for a.example.test",
    );

    // Served as before: the older CRL, which does not list the good client,
    // and still lists the revoked one.
    assert_eq!(w.get(A, "/", Some(&w.good)).await.unwrap().status, 200);
    assert!(w.get(A, "/", Some(&w.revoked)).await.is_err());
    assert_eq!(w.proxy.wait_handshake_failures("revoked", 1.0), 1.0);
    // Hosts of other policies are not affected.
    assert_eq!(
        w.proxy
            .metric("tlsward_proxy_host_config_errors", &[("host", B)]),
        0.0
    );
    assert_eq!(w.get(B, "/", Some(&w.good)).await.unwrap().status, 200);

    // The CRL made as the message says is applied: the good client is
    // refused from now on, and the metric clears.
    let fixed = w
        .client_ca
        .openssl_crl(&[&w.revoked, &w.good], OpensslCrl::Conforming);
    set_client_ca_crl(&w, &fixed);
    let took = time_until(Instant::now(), Duration::from_secs(5), || async {
        w.get(A, "/", Some(&w.good)).await.is_err()
    })
    .await;
    assert!(
        took.is_some(),
        "the conforming CRL never applied:\n{}",
        w.proxy.log()
    );
    assert!(w.proxy.wait_handshake_failures("revoked", 2.0) >= 2.0);
    assert_eq!(
        w.proxy
            .wait_metric("tlsward_proxy_host_config_errors", &[], |v| v == 0.0),
        0.0
    );
}

/// With no last good configuration, a host whose CRL is refused is not
/// served at all (fail closed), with the same message; so is one whose CRL
/// source holds a malformed block. Other hosts are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_crl_on_a_fresh_start_is_not_served() {
    const THREE: &str = "three.example.test";
    let server_ca = Ca::new("fresh-crl server CA");
    let client_ca = Ca::new("fresh-crl client CA");
    let server = server_ca.server(&[ONE, TWO, THREE], "fresh-crl", 2030);
    let good = client_ca.client(ClientSpec::named("good-client"));
    let revoked = client_ca.client(ClientSpec::named("revoked-client"));
    let default_crl = client_ca.openssl_crl(&[&revoked], OpensslCrl::Default);
    let conforming = client_ca.openssl_crl(&[&revoked], OpensslCrl::Conforming);
    let damaged =
        format!("{conforming}-----BEGIN X509 CRL-----\n!!not base64!!\n-----END X509 CRL-----\n");
    let upstream = Upstream::start("echo");
    let config = tempfile::tempdir().unwrap();
    let anchors = inline(&[&client_ca.pem()]);
    let root: &[(&str, &str, &str)] = &[("Prefix", "/", "echo")];
    let host = |name: &str, bound: &str, h: &str| {
        ingress(
            name,
            Some(bound),
            "fresh-tls",
            &[Rule {
                host: h,
                paths: root,
            }],
        )
    };
    write_json(
        config.path(),
        "all.json",
        &[
            tls_secret("fresh-tls", &server.cert_pem, &server.key_pem),
            service("echo", &[upstream.addr]),
            policy(
                "p-one",
                json!({"trustAnchors": anchors, "revocation": inline(&[&default_crl])}),
            ),
            policy(
                "p-two",
                json!({"trustAnchors": anchors, "revocation": inline(&[&conforming])}),
            ),
            policy(
                "p-three",
                json!({"trustAnchors": anchors, "revocation": inline(&[&damaged])}),
            ),
            host("one", "p-one", ONE),
            host("two", "p-two", TWO),
            host("three", "p-three", THREE),
        ],
    );
    let proxy = Proxy::start(config.path(), &[]);
    let cfg = |leaf| client_config(&server_ca, Some(leaf), &[b"http/1.1"]);

    for h in [ONE, THREE] {
        assert!(
            get_once(proxy.https, h, cfg(&good), "/").await.is_err(),
            "{h} must not be served"
        );
        assert_eq!(
            proxy.metric(
                "tlsward_proxy_host_config_errors",
                &[("host", h), ("reason", "invalid_crl"), ("serving", "none")]
            ),
            1.0,
            "{}",
            proxy.metrics()
        );
    }
    assert!(proxy.wait_handshake_failures("unknown_sni", 2.0) >= 2.0);
    let mut needles = NO_EXTENSIONS.to_vec();
    needles.extend([
        "ClientAuthPolicy default/p-one: spec.revocation[0] (inline)",
        "one.example.test is not served",
        "ClientAuthPolicy default/p-three: spec.revocation[0] (inline): malformed PEM: block 2 is not valid base64",
    ]);
    assert!(proxy.wait_log(&needles), "{}", proxy.log());
    error_line(&proxy, "one.example.test is not served");

    // The conforming CRL is enforced on its host.
    let two = get_once(proxy.https, TWO, cfg(&good), "/").await.unwrap();
    assert_eq!(two.status, 200);
    assert!(
        get_once(proxy.https, TWO, cfg(&revoked), "/")
            .await
            .is_err()
    );
    assert_eq!(proxy.wait_handshake_failures("revoked", 1.0), 1.0);
}
