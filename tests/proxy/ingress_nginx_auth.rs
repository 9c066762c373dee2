//! ingress-nginx's `auth-tls-*`, `ssl-redirect` and `force-ssl-redirect`
//! annotations on Ingresses the proxy serves: each `auth-tls-verify-client`
//! value against no certificate, a good one and a stranger's; the verify
//! depth at its boundary; `match-cn`; the CRL in `auth-tls-secret`; the
//! `ssl-client-*` headers at the upstream; the error page; the redirects;
//! a ClientAuthPolicy taking precedence; a bad value keeping the last good
//! configuration. The real binary in directory mode, an rcgen PKI, the echo
//! upstream and a rustls client.

use std::io::{Read, Write};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::support::*;

const NS: &str = "default";
const ON: &str = "on.nginx.test";
const OFF: &str = "off.nginx.test";
const OPTIONAL: &str = "optional.nginx.test";
const NO_CA: &str = "noca.nginx.test";
const DEPTH2: &str = "depth2.nginx.test";
const MATCH_CN: &str = "cn.nginx.test";
const ERROR_PAGE: &str = "errors.nginx.test";
const ERROR_URL: &str = "https://help.example.test/client-certificates";
const ERROR_PATH: &str = "errpath.nginx.test";
const CONFLICT: &str = "conflict.nginx.test";
const SELECTED: &str = "selected.nginx.test";
const NO_REDIRECT: &str = "plain.nginx.test";

/// One proxy serving a host per annotation set, and the clients to try.
struct Nginx {
    proxy: Proxy,
    upstream: Upstream,
    server_ca: Ca,
    client_ca: Ca,
    /// Signed by the `auth-tls-secret` CA.
    good: Leaf,
    /// A client of another CA, with the same subject as `good`.
    stranger: Leaf,
    /// Listed in the `ca.crl` of the `auth-tls-secret`.
    revoked: Leaf,
    /// Issued by one intermediate under the CA, chain sent.
    via_one: Leaf,
    /// Issued by two intermediates under the CA, chain sent.
    via_two: Leaf,
    /// Signed by the CA, but its CN does not match `auth-tls-match-cn`.
    intruder: Leaf,
    config: tempfile::TempDir,
}

fn annotate(mut ing: Value, pairs: &[(&str, &str)]) -> Value {
    let ann = ing["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut ann = Value::Object(ann);
    for (k, v) in pairs {
        ann[format!("nginx.ingress.kubernetes.io/{k}")] = json!(v);
    }
    ing["metadata"]["annotations"] = ann;
    ing
}

fn secret_ref() -> String {
    format!("{NS}/client-ca")
}

/// The Ingresses of the world, the `on` host with `auth-tls-verify-depth: depth_on`.
fn ingresses(depth_on: &str) -> Vec<Value> {
    let root: &[(&str, &str, &str)] = &[("Prefix", "/", "echo")];
    let ing = |name: &str, host: &str, policy: Option<&str>, pairs: &[(&str, &str)]| {
        annotate(
            ingress(name, policy, "nginx-tls", &[Rule { host, paths: root }]),
            pairs,
        )
    };
    let secret = secret_ref();
    let s = secret.as_str();
    vec![
        service("echo", &[]),
        ing(
            "on",
            ON,
            None,
            &[
                ("auth-tls-secret", s),
                ("auth-tls-verify-depth", depth_on),
                ("auth-tls-pass-certificate-to-upstream", "true"),
                ("force-ssl-redirect", "true"),
            ],
        ),
        ing(
            "off",
            OFF,
            None,
            &[("auth-tls-secret", s), ("auth-tls-verify-client", "off")],
        ),
        ing(
            "optional",
            OPTIONAL,
            None,
            &[
                ("auth-tls-secret", s),
                ("auth-tls-verify-client", "optional"),
            ],
        ),
        ing(
            "noca",
            NO_CA,
            None,
            &[
                ("auth-tls-secret", s),
                ("auth-tls-verify-client", "optional_no_ca"),
                ("auth-tls-pass-certificate-to-upstream", "true"),
            ],
        ),
        ing(
            "depth2",
            DEPTH2,
            None,
            &[("auth-tls-secret", s), ("auth-tls-verify-depth", "2")],
        ),
        ing(
            "cn",
            MATCH_CN,
            None,
            &[
                ("auth-tls-secret", s),
                ("auth-tls-match-cn", "CN=client-[0-9]+$"),
            ],
        ),
        ing(
            "errors",
            ERROR_PAGE,
            None,
            &[("auth-tls-secret", s), ("auth-tls-error-page", ERROR_URL)],
        ),
        ing(
            "errpath",
            ERROR_PATH,
            None,
            &[
                ("auth-tls-secret", s),
                ("auth-tls-verify-client", "optional"),
                ("auth-tls-error-page", "/cert-help"),
            ],
        ),
        ing(
            "conflict",
            CONFLICT,
            Some("strangers"),
            &[("auth-tls-secret", s), ("auth-tls-verify-client", "on")],
        ),
        {
            let mut i = ing(
                "selected",
                SELECTED,
                None,
                &[("auth-tls-secret", s), ("auth-tls-verify-client", "on")],
            );
            i["metadata"]["labels"] = json!({"clients": "strangers"});
            i
        },
        ing("plain", NO_REDIRECT, None, &[("ssl-redirect", "false")]),
    ]
}

impl Nginx {
    fn start() -> Nginx {
        let server_ca = Ca::new("nginx annotations server CA");
        let client_ca = Ca::new("nginx annotations client CA");
        let stranger_ca = Ca::new("a stranger's CA");
        let server = server_ca.server(&["*.nginx.test"], "nginx", 2030);
        let good = client_ca.client(ClientSpec::named("client-1"));
        let stranger = stranger_ca.client(ClientSpec::named("client-1"));
        let revoked = client_ca.client(ClientSpec::named("client-2"));
        let intruder = client_ca.client(ClientSpec::named("intruder-3"));
        let mid1 = client_ca.intermediate("intermediate one");
        let via_one = mid1
            .client(ClientSpec::named("client-4"))
            .with_chain(&[&mid1]);
        let mid2 = mid1.intermediate("intermediate two");
        let via_two = mid2
            .client(ClientSpec::named("client-5"))
            .with_chain(&[&mid2, &mid1]);
        let crl = client_ca.crl(&[&revoked], 1);

        let upstream = Upstream::start("echo");
        let config = tempfile::tempdir().unwrap();
        let dir = config.path();
        write_json(
            dir,
            "secrets.json",
            &[
                tls_secret("nginx-tls", &server.cert_pem, &server.key_pem),
                opaque_secret(
                    "client-ca",
                    &[("ca.crt", &client_ca.pem()), ("ca.crl", &crl)],
                ),
            ],
        );
        write_yaml(
            dir,
            "policies.yaml",
            &[
                policy(
                    "strangers",
                    json!({"mode": "Require", "trustAnchors": inline(&[&stranger_ca.pem()])}),
                ),
                policy(
                    "selecting",
                    json!({
                        "mode": "Require",
                        "trustAnchors": inline(&[&stranger_ca.pem()]),
                        "ingressSelector": {"matchLabels": {"clients": "strangers"}},
                    }),
                ),
            ],
        );
        let mut docs = ingresses("1");
        docs[0] = service("echo", &[upstream.addr]);
        write_json(dir, "app.json", &docs);
        let proxy = Proxy::start(dir, &[]);
        Nginx {
            proxy,
            upstream,
            server_ca,
            client_ca,
            good,
            stranger,
            revoked,
            via_one,
            via_two,
            intruder,
            config,
        }
    }

    fn cfg(&self, client: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
        client_config(&self.server_ca, client, &[b"http/1.1"])
    }

    async fn get(&self, host: &str, client: Option<&Leaf>) -> Result<Resp, BoxError> {
        get_once(self.proxy.https, host, self.cfg(client), "/").await
    }

    /// One GET with extra request headers.
    async fn get_with(&self, host: &str, client: Option<&Leaf>, headers: &[(&str, &str)]) -> Resp {
        let mut c = Conn::open(self.proxy.https, host, self.cfg(client))
            .await
            .unwrap();
        c.get(host, "/", headers).await.unwrap()
    }
}

fn one(body: &Value, name: &str) -> Option<String> {
    let v = echoed(body, name);
    assert!(v.len() <= 1, "{name} sent more than once: {v:?}");
    v.into_iter().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_client_on_requires_a_certificate_of_the_secrets_ca() {
    let w = Nginx::start();
    assert!(w.get(ON, None).await.is_err(), "no certificate");
    assert!(w.get(ON, Some(&w.stranger)).await.is_err(), "a stranger");
    assert_eq!(w.proxy.wait_handshake_failures("no_certificate", 1.0), 1.0);
    assert_eq!(w.proxy.wait_handshake_failures("unknown_ca", 1.0), 1.0);
    assert_eq!(w.upstream.hits(), 0);
    let r = w.get(ON, Some(&w.good)).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        one(&r.json(), "ssl-client-verify").as_deref(),
        Some("SUCCESS")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_client_off_asks_for_no_certificate() {
    let w = Nginx::start();
    for client in [None, Some(&w.good), Some(&w.stranger)] {
        let r = w.get(OFF, client).await.unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        let body = r.json();
        assert_eq!(one(&body, "ssl-client-verify").as_deref(), Some("NONE"));
        assert_eq!(one(&body, "ssl-client-subject-dn"), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_client_optional_lets_no_certificate_through_but_not_a_strangers() {
    let w = Nginx::start();
    let r = w.get(OPTIONAL, None).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(one(&r.json(), "ssl-client-verify").as_deref(), Some("NONE"));
    let r = w.get(OPTIONAL, Some(&w.good)).await.unwrap();
    assert_eq!(
        one(&r.json(), "ssl-client-verify").as_deref(),
        Some("SUCCESS")
    );
    assert!(w.get(OPTIONAL, Some(&w.stranger)).await.is_err());
    assert_eq!(w.proxy.wait_handshake_failures("unknown_ca", 1.0), 1.0);
    assert_eq!(w.upstream.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_client_optional_no_ca_passes_any_certificate_on_with_its_verdict() {
    let w = Nginx::start();
    let r = w.get(NO_CA, None).await.unwrap();
    assert_eq!(one(&r.json(), "ssl-client-verify").as_deref(), Some("NONE"));
    let r = w.get(NO_CA, Some(&w.good)).await.unwrap();
    assert_eq!(
        one(&r.json(), "ssl-client-verify").as_deref(),
        Some("SUCCESS")
    );
    let r = w.get(NO_CA, Some(&w.stranger)).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let body = r.json();
    assert_eq!(
        one(&body, "ssl-client-verify").as_deref(),
        Some("FAILED:unable to get local issuer certificate")
    );
    assert_eq!(
        one(&body, "ssl-client-issuer-dn").as_deref(),
        Some("CN=a stranger's CA")
    );
    let pem = one(&body, "ssl-client-cert").unwrap();
    assert!(pem.starts_with("-----BEGIN%20CERTIFICATE-----%0A"), "{pem}");
    assert_eq!(w.proxy.wait_handshake_failures("unknown_ca", 1.0), 1.0);
}

/// Without a valid signature from the certificate's key, `optional_no_ca`
/// still refuses: a client cannot present someone else's certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_no_ca_still_checks_the_handshake_signature() {
    let w = Nginx::start();
    let r = get_once(w.proxy.https, NO_CA, thief(&w, &w.good, &w.stranger), "/").await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(w.upstream.hits(), 0);
    // The same client with the matching key gets through.
    let r = get_once(w.proxy.https, NO_CA, thief(&w, &w.good, &w.good), "/").await;
    assert_eq!(r.unwrap().status, 200);
}

/// Presents `cert` but signs the handshake with `key`'s key: what someone
/// holding a copy of a certificate but not its key would do.
#[derive(Debug)]
struct Thief(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Thief {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

fn thief(w: &Nginx, cert: &Leaf, key: &Leaf) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let signer = provider
        .key_provider
        .load_private_key(
            rustls::pki_types::PrivateKeyDer::from_pem_slice(key.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    // `new`, not `from_der`: no check that the key is the certificate's.
    let ck = rustls::sign::CertifiedKey::new(
        vec![rustls::pki_types::CertificateDer::from(cert.der.clone())],
        signer,
    );
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(w.server_ca.der()))
        .unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(Thief(Arc::new(ck))));
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_depth_counts_intermediates_as_openssl_does() {
    let w = Nginx::start();
    // Depth 1 (the default): one intermediate, not two.
    let r = w.get(ON, Some(&w.via_one)).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(w.get(ON, Some(&w.via_two)).await.is_err());
    assert_eq!(w.proxy.wait_handshake_failures("chain_too_long", 1.0), 1.0);
    // Depth 2: two.
    let r = w.get(DEPTH2, Some(&w.via_two)).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_cn_accepts_a_matching_subject_and_refuses_others() {
    let w = Nginx::start();
    let r = w.get(MATCH_CN, Some(&w.good)).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let r = w.get(MATCH_CN, Some(&w.intruder)).await.unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("client certificate unauthorized"), "{r:?}");
    assert_eq!(w.upstream.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crl_in_the_auth_tls_secret_revokes_a_client() {
    let w = Nginx::start();
    assert!(w.get(ON, Some(&w.revoked)).await.is_err());
    assert_eq!(w.proxy.wait_handshake_failures("revoked", 1.0), 1.0);
    // Same CA, not revoked.
    assert_eq!(w.get(ON, Some(&w.good)).await.unwrap().status, 200);
    // optional_no_ca passes it on, saying why it failed.
    let r = w.get(NO_CA, Some(&w.revoked)).await.unwrap();
    assert_eq!(
        one(&r.json(), "ssl-client-verify").as_deref(),
        Some("FAILED:certificate revoked")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_certificate_headers_reach_the_upstream_and_spoofed_copies_do_not() {
    let w = Nginx::start();
    let forged = [
        ("ssl-client-verify", "SUCCESS"),
        ("ssl-client-subject-dn", "CN=admin"),
        ("ssl-client-issuer-dn", "CN=forged"),
        ("ssl-client-cert", "forged"),
    ];
    let r = w.get_with(ON, Some(&w.good), &forged).await;
    assert_eq!(r.status, 200, "{r:?}");
    let body = r.json();
    assert_eq!(one(&body, "ssl-client-verify").as_deref(), Some("SUCCESS"));
    assert_eq!(
        one(&body, "ssl-client-subject-dn").as_deref(),
        Some("CN=client-1")
    );
    assert_eq!(
        one(&body, "ssl-client-issuer-dn").as_deref(),
        Some("CN=nginx annotations client CA")
    );
    // nginx's $ssl_client_escaped_cert: the PEM, URL-escaped.
    let expected: String = w
        .good
        .cert_pem
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    assert_eq!(one(&body, "ssl-client-cert"), Some(expected));
    // No XFCC: the annotations choose nginx's headers.
    assert!(echoed(&body, "x-forwarded-client-cert").is_empty());

    // Without a certificate: NONE, and none of the forged values.
    let r = w.get_with(OPTIONAL, None, &forged).await;
    let body = r.json();
    assert_eq!(one(&body, "ssl-client-verify").as_deref(), Some("NONE"));
    for (name, _) in &forged[1..] {
        assert!(echoed(&body, name).is_empty(), "{name}: {body}");
    }
    // Without pass-certificate, no ssl-client-cert.
    let r = w.get_with(OPTIONAL, Some(&w.good), &forged).await;
    assert!(echoed(&r.json(), "ssl-client-cert").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_page_redirects_a_missing_or_failed_certificate() {
    let w = Nginx::start();
    for client in [None, Some(&w.stranger), Some(&w.revoked)] {
        let r = w.get(ERROR_PAGE, client).await.unwrap();
        assert_eq!(r.status, 302, "{r:?}");
        assert_eq!(
            r.headers.get("location").and_then(|v| v.to_str().ok()),
            Some(ERROR_URL)
        );
    }
    assert_eq!(w.upstream.hits(), 0);
    let r = w.get(ERROR_PAGE, Some(&w.good)).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(w.proxy.wait_handshake_failures("unknown_ca", 1.0), 1.0);
    assert_eq!(w.proxy.wait_handshake_failures("revoked", 1.0), 1.0);
}

/// A plain-HTTP request to the proxy's HTTP port: status and Location.
fn plain_get(port: u16, host: &str, path: &str) -> (u16, Option<String>) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let location = text
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .map(str::to_string);
    (status, location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_redirects_are_308s_to_https_and_ssl_redirect_false_is_reported() {
    let w = Nginx::start();
    let https = w.proxy.https;
    for host in [ON, OPTIONAL, NO_REDIRECT] {
        let (status, location) = plain_get(w.proxy.http, host, "/a?b=c");
        assert_eq!(status, 308, "{host}");
        assert_eq!(
            location,
            Some(format!("https://{host}:{https}/a?b=c")),
            "{host}"
        );
    }
    assert!(
        w.proxy.wait_log(&[
            "Ingress default/plain",
            "nginx.ingress.kubernetes.io/ssl-redirect: ",
            "asks for the host to be served over plain HTTP too",
        ]),
        "{}",
        w.proxy.log()
    );
    // Still served over HTTPS.
    assert_eq!(w.get(NO_REDIRECT, None).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_auth_policy_takes_precedence_and_the_conflict_is_reported() {
    let w = Nginx::start();
    // The policy trusts the stranger's CA, the annotations the client CA.
    let r = w.get(CONFLICT, Some(&w.stranger)).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(w.get(CONFLICT, Some(&w.good)).await.is_err());
    // The policy's forwarding, not nginx's headers.
    assert!(echoed(&r.json(), "ssl-client-verify").is_empty());
    assert_eq!(echoed(&r.json(), "x-forwarded-client-cert").len(), 1);
    assert!(
        w.proxy.wait_log(&[
            "Ingress default/conflict",
            "auth-tls-* annotations are ignored: ClientAuthPolicy strangers is bound to it and takes precedence",
        ]),
        "{}",
        w.proxy.log()
    );
    // Bound by its selector: the same.
    let r = w.get(SELECTED, Some(&w.stranger)).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(w.get(SELECTED, Some(&w.good)).await.is_err());
    assert!(
        w.proxy.wait_log(&[
            "Ingress default/selected",
            "ClientAuthPolicy selecting is bound to it and takes precedence",
        ]),
        "{}",
        w.proxy.log()
    );
    // The two conflicts and ssl-redirect: "false" are the world's problems.
    assert_eq!(w.proxy.metric("tlsward_proxy_config_problems", &[]), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_annotation_value_keeps_the_hosts_last_good_configuration() {
    let w = Nginx::start();
    assert_eq!(w.get(ON, Some(&w.good)).await.unwrap().status, 200);
    let mut docs = ingresses("deep");
    docs[0] = service("echo", &[w.upstream.addr]);
    write_json(w.config.path(), "app.json", &docs);
    let labels = [
        ("host", ON),
        ("reason", "annotation"),
        ("serving", "last_good"),
    ];
    assert_eq!(
        w.proxy
            .wait_metric("tlsward_proxy_host_config_errors", &labels, |v| v == 1.0),
        1.0,
        "{}",
        w.proxy.log()
    );
    assert!(
        w.proxy.wait_log(&[
            "nginx.ingress.kubernetes.io/auth-tls-verify-depth: ",
            "is not a whole number from 0 to 254",
            "keeping the last good configuration for on.nginx.test",
        ]),
        "{}",
        w.proxy.log()
    );
    // Still served, and still verifying: the last good config, not none.
    assert_eq!(w.get(ON, Some(&w.good)).await.unwrap().status, 200);
    assert!(w.get(ON, None).await.is_err());
    assert!(w.get(ON, Some(&w.stranger)).await.is_err());
    // Fixed: the error series goes.
    let mut docs = ingresses("1");
    docs[0] = service("echo", &[w.upstream.addr]);
    write_json(w.config.path(), "app.json", &docs);
    assert_eq!(
        w.proxy
            .wait_metric("tlsward_proxy_host_config_errors", &labels, |v| v == 0.0),
        0.0
    );
}

/// A CRL added to the `auth-tls-secret` closes the open connections of the
/// client it revokes (under a strict handshake and under an error page),
/// as it does for a ClientAuthPolicy, and leaves the others alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_crl_in_the_auth_tls_secret_closes_the_revoked_clients_connections() {
    let w = Nginx::start();
    let mut strict = Conn::open(w.proxy.https, ON, w.cfg(Some(&w.good)))
        .await
        .unwrap();
    let mut lenient = Conn::open(w.proxy.https, ERROR_PAGE, w.cfg(Some(&w.good)))
        .await
        .unwrap();
    let mut bystander = Conn::open(w.proxy.https, OPTIONAL, w.cfg(None))
        .await
        .unwrap();
    assert_eq!(strict.get(ON, "/", &[]).await.unwrap().status, 200);
    assert_eq!(lenient.get(ERROR_PAGE, "/", &[]).await.unwrap().status, 200);
    assert_eq!(bystander.get(OPTIONAL, "/", &[]).await.unwrap().status, 200);

    let path = w.config.path().join("secrets.json");
    let mut list: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for item in list["items"].as_array_mut().unwrap() {
        if item["metadata"]["name"] == "client-ca" {
            item["stringData"]["ca.crl"] = json!(w.client_ca.crl(&[&w.revoked, &w.good], 2));
        }
    }
    crate::common::write_atomic(&path, &list.to_string());
    assert_eq!(
        w.proxy.wait_metric(
            "tlsward_proxy_connections_closed_total",
            &[("reason", "client_revoked")],
            |v| v >= 2.0
        ),
        2.0,
        "{}",
        w.proxy.log()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while !(strict.is_closed() && lenient.is_closed()) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(strict.is_closed() && lenient.is_closed());
    assert_eq!(bystander.get(OPTIONAL, "/", &[]).await.unwrap().status, 200);
    // New connections: refused, or sent to the error page.
    assert!(w.get(ON, Some(&w.good)).await.is_err());
    assert_eq!(w.get(ERROR_PAGE, Some(&w.good)).await.unwrap().status, 302);
}

/// An error page on the same host is redirected to, and served (with the
/// verdict) to the clients sent there, as nginx's internal redirect does;
/// under `optional`, no certificate is no failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_page_path_on_the_host_is_served_to_the_clients_sent_there() {
    let w = Nginx::start();
    let r = w.get(ERROR_PATH, Some(&w.stranger)).await.unwrap();
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(
        r.headers.get("location").and_then(|v| v.to_str().ok()),
        Some("/cert-help")
    );
    assert_eq!(w.upstream.hits(), 0);
    let r = get_once(
        w.proxy.https,
        ERROR_PATH,
        w.cfg(Some(&w.stranger)),
        "/cert-help",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        one(&r.json(), "ssl-client-verify").as_deref(),
        Some("FAILED:unable to get local issuer certificate")
    );
    let r = w.get(ERROR_PATH, None).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(one(&r.json(), "ssl-client-verify").as_deref(), Some("NONE"));
}
