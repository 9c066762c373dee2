//! Shared test harness: a throwaway PKI made with rcgen, the real `tlsward`
//! binary as a child process, an HTTPS client that verifies the server, and
//! kubectl-made objects.
#![allow(dead_code)]

pub mod h2raw;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// A CA that signs server certificates for localhost.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A serving certificate for localhost/127.0.0.1: (cert PEM, key PEM, DER).
    pub fn server_cert(&self, cn: &str) -> (String, String, Vec<u8>) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// A rustls client config trusting only this CA.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        // Every connection does a full handshake, so it sees the certificate
        // served now, not the one of a resumed session.
        let mut cfg = cfg;
        cfg.resumption = rustls::client::Resumption::disabled();
        Arc::new(cfg)
    }
}

/// Writes files atomically (temp file + rename), as a Secret volume update
/// swaps content: a reader sees the old or the new file, never half of one.
pub fn write_atomic(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `tlsward webhook`, killed on drop.
pub struct Webhook {
    pub child: Child,
    pub port: u16,
    pub admin_port: u16,
    pub dir: tempfile::TempDir,
    pub ca: TestCa,
    pub cert_der: Vec<u8>,
    pub stderr_path: PathBuf,
}

impl Webhook {
    /// Starts the webhook with an optional policy file content and extra args.
    pub fn start(policy: Option<&str>, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("tlsward test CA");
        let (cert, key, cert_der) = ca.server_cert("webhook-1");
        write_atomic(&dir.path().join("tls.crt"), &cert);
        write_atomic(&dir.path().join("tls.key"), &key);
        let port = free_port();
        let admin_port = free_port();
        let stderr_path = dir.path().join("stderr.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tlsward"));
        cmd.arg("webhook")
            .arg("--tls-cert")
            .arg(dir.path().join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.path().join("tls.key"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin_port}"))
            .arg("--reload-interval-ms")
            .arg("100");
        if let Some(p) = policy {
            let path = dir.path().join("policy.yaml");
            write_atomic(&path, p);
            cmd.arg("--policy").arg(path);
        }
        cmd.args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap());
        let child = cmd.spawn().expect("start tlsward webhook");
        let w = Webhook {
            child,
            port,
            admin_port,
            dir,
            ca,
            cert_der,
            stderr_path,
        };
        w.wait_ready();
        w
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((200, _)) = http_get(self.admin_port, "/readyz") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("webhook never became ready; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The log once it contains `needle`, or after 5 s: log lines are
    /// written in batches, up to 50 ms after they are logged.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let log = self.log();
            if log.contains(needle) || std::time::Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    pub fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policy.yaml")
    }

    pub fn metrics(&self) -> String {
        http_get(self.admin_port, "/metrics").unwrap().1
    }

    /// One request on a fresh TLS connection: (status, body, server cert DER).
    pub async fn post(&self, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let mut conn = HttpsConn::connect(self.port, self.ca.client_config())
            .await
            .unwrap();
        conn.post(path, body).await.unwrap()
    }

    /// POSTs a review and returns the parsed response object.
    pub async fn review(&self, path: &str, review: &Value) -> Value {
        let (status, body) = self.post(path, serde_json::to_vec(review).unwrap()).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(v["kind"], "AdmissionReview");
        v["response"].clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Plain HTTP GET on the admin port, blocking: (status, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    Ok((status, body))
}

/// A bare TLS stream to 127.0.0.1:`port` for `localhost`, offering `alpn`
/// (for hand-written requests).
pub async fn tls_connect(
    port: u16,
    cfg: &rustls::ClientConfig,
    alpn: &[u8],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Box<dyn std::error::Error + Send + Sync>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut cfg = cfg.clone();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?)
}

/// A keep-alive HTTPS/1.1 connection that verifies the server.
pub struct HttpsConn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// The certificate the server presented in this handshake.
    pub server_cert: Vec<u8>,
}

impl HttpsConn {
    pub async fn connect(
        port: u16,
        cfg: Arc<rustls::ClientConfig>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut cfg = (*cfg).clone();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let server_cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c: &CertificateDer| c.to_vec())
            .unwrap_or_default();
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            server_cert,
        })
    }

    pub async fn post(
        &mut self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), Box<dyn std::error::Error + Send + Sync>> {
        let req = hyper::Request::post(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes().to_vec();
        Ok((status, body))
    }
}

/// Runs kubectl (preinstalled on these machines; a missing kubectl fails the
/// test rather than skipping it) and parses its JSON output.
pub fn kubectl_json(args: &[&str]) -> Value {
    let out = Command::new("kubectl")
        .args(args)
        .args(["--dry-run=client", "-o", "json"])
        .output()
        .expect("kubectl must be installed (it is preinstalled at /usr/bin/kubectl)");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A real `admission.k8s.io/v1` AdmissionReview around `object`, as the API
/// server sends it.
pub fn admission_review(uid: &str, operation: &str, namespace: &str, object: &Value) -> Value {
    let (group, version) = match object["apiVersion"]
        .as_str()
        .unwrap_or("v1")
        .split_once('/')
    {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (
            String::new(),
            object["apiVersion"].as_str().unwrap_or("v1").to_string(),
        ),
    };
    let kind = object["kind"].as_str().unwrap_or_default();
    let mut object = object.clone();
    object["metadata"]["namespace"] = json!(namespace);
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "name": object["metadata"]["name"],
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

/// Decodes and applies a response's base64 JSON patch to `object`.
pub fn apply_patch(object: &Value, response: &Value) -> Value {
    use base64::Engine;
    let mut out = object.clone();
    if let Some(p) = response["patch"].as_str() {
        assert_eq!(response["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut out, &patch).unwrap();
    }
    out
}

/// A testssl.sh finding.
#[derive(Debug)]
pub struct TestsslFinding {
    pub id: String,
    pub severity: String,
    pub finding: String,
}

/// Findings about the certificate's own content, which the certificate's
/// issuer (cert-manager, a CA) decides, not tlsward: the test PKI is not
/// publicly trusted, is valid for years and names no CRL or OCSP URL, and
/// no CAA record exists for a test name.
pub const TESTSSL_CERTIFICATE_CONTENT: &[&str] = &[
    "cert_chain_of_trust",
    "cert_validityPeriod",
    "cert_revocation",
    "cert_ocspURL",
    "cert_crlDistributionPoints",
    "DNS_CAArecord",
];

/// Runs testssl.sh (all default checks) against `host` on 127.0.0.1:`port`
/// and returns its findings. Panics when testssl is missing or its scan
/// fails, so a scanner that did not run never passes.
pub fn testssl(host: &str, port: u16) -> Vec<TestsslFinding> {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("findings.json");
    let bin = ["testssl", "testssl.sh"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect("testssl.sh must be installed (scripts/install-test-tools.sh)");
    let out = Command::new(bin)
        .args([
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            "--ip",
            "127.0.0.1",
        ])
        .arg("--jsonfile")
        .arg(&json)
        .arg(format!("{host}:{port}"))
        .output()
        .expect("run testssl");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "testssl wrote no findings ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let found: Vec<Value> = serde_json::from_str(&text).unwrap();
    let findings: Vec<TestsslFinding> = found
        .iter()
        .map(|f| TestsslFinding {
            id: f["id"].as_str().unwrap_or_default().to_string(),
            severity: f["severity"].as_str().unwrap_or_default().to_string(),
            finding: f["finding"].as_str().unwrap_or_default().to_string(),
        })
        .collect();
    assert!(
        !findings.iter().any(|f| f.severity == "FATAL"),
        "the scan failed: {findings:#?}"
    );
    assert!(
        findings
            .iter()
            .any(|f| f.id == "TLS1_3" && f.finding.starts_with("offered")),
        "the scan did not reach the server: {findings:#?}"
    );
    findings
}

/// The findings rated MEDIUM or worse, but for `allowed` ids.
pub fn testssl_serious<'f>(
    findings: &'f [TestsslFinding],
    allowed: &[&str],
) -> Vec<&'f TestsslFinding> {
    findings
        .iter()
        .filter(|f| matches!(f.severity.as_str(), "MEDIUM" | "HIGH" | "CRITICAL"))
        .filter(|f| !allowed.contains(&f.id.as_str()))
        .collect()
}
