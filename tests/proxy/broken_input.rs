//! Broken input keeps the last good configuration: a Secret with bad PEM,
//! a key that does not match its certificate, a policy without valid trust
//! anchors, or a file that is not YAML leaves the affected host served as
//! before, is reported (log and `tlsward_proxy_config_problems`) until
//! fixed, and does not hold back changes to other hosts. Uses the real
//! `tlsward proxy` binary in directory mode, rcgen certificates, the echo
//! upstream and the rustls client.

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
