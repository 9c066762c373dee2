//! Harness for the proxy end-to-end tests: an rcgen PKI made at test time
//! (CAs, server and client certificates, CRLs), manifests for directory
//! mode, a real upstream HTTP/1.1 server that echoes what it received, the
//! `tlsward proxy` binary as a child process, a rustls client (HTTP/1.1 and
//! h2 by ALPN) and curl; and the standard world most feature modules start
//! (several hosts under different policies, one upstream, good and bad
//! client certificates).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType, SerialNumber, date_time_ymd,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{free_port, http_get, write_atomic};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------------
// PKI
// ---------------------------------------------------------------------------

static SERIAL: AtomicU64 = AtomicU64::new(1);

/// A fresh positive serial number, unique in this test process.
fn next_serial() -> SerialNumber {
    let n = SERIAL.fetch_add(1, Ordering::Relaxed);
    let mut bytes = vec![0x1d];
    bytes.extend_from_slice(&n.to_be_bytes());
    SerialNumber::from_slice(&bytes)
}

/// A certificate authority made at test time.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub name: String,
}

/// A leaf certificate with its key.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    pub serial: SerialNumber,
    /// Certificates sent after the leaf (DER), in order.
    pub chain: Vec<Vec<u8>>,
}

/// What goes into a client certificate.
#[derive(Clone, Default)]
pub struct ClientSpec {
    pub cn: String,
    /// Further CNs, each in an RDN of its own after the first.
    pub more_cns: Vec<String>,
    pub dns: Vec<String>,
    pub uris: Vec<String>,
    /// Valid 2020-01-01 .. 2021-01-01 only.
    pub expired: bool,
    /// Valid from 2090 only.
    pub not_yet_valid: bool,
}

impl ClientSpec {
    pub fn named(cn: &str) -> Self {
        Self {
            cn: cn.to_string(),
            ..Default::default()
        }
    }
    pub fn another_cn(mut self, cn: &str) -> Self {
        self.more_cns.push(cn.to_string());
        self
    }
    pub fn dns(mut self, d: &str) -> Self {
        self.dns.push(d.to_string());
        self
    }
    pub fn uri(mut self, u: &str) -> Self {
        self.uris.push(u.to_string());
        self
    }
    pub fn expired(mut self) -> Self {
        self.expired = true;
        self
    }
    pub fn not_yet_valid(mut self) -> Self {
        self.not_yet_valid = true;
        self
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d
}

impl Ca {
    pub fn new(cn: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(next_serial());
        params.not_before = date_time_ymd(2024, 1, 1);
        params.not_after = date_time_ymd(2040, 1, 1);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self {
            issuer,
            name: cn.to_string(),
        }
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, cn: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(next_serial());
        params.not_before = date_time_ymd(2024, 1, 1);
        params.not_after = date_time_ymd(2039, 1, 1);
        params.use_authority_key_identifier_extension = true;
        let issuer =
            CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), &self.issuer).unwrap();
        Ca {
            issuer,
            name: cn.to_string(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    /// A serving certificate for `hosts`, valid until 1 January `until_year`.
    pub fn server(&self, hosts: &[&str], cn: &str, until_year: i32) -> Leaf {
        let sans: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = dn(cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = date_time_ymd(2024, 1, 1);
        params.not_after = date_time_ymd(until_year, 1, 1);
        self.sign(params)
    }

    /// A client certificate.
    pub fn client(&self, spec: ClientSpec) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(&spec.cn);
        // rcgen keeps one value per attribute type; the CN's OID spelt as a
        // custom type is a second CN attribute.
        for cn in &spec.more_cns {
            params
                .distinguished_name
                .push(DnType::CustomDnType(vec![2, 5, 4, 3]), cn.as_str());
        }
        for d in &spec.dns {
            params
                .subject_alt_names
                .push(SanType::DnsName(d.as_str().try_into().unwrap()));
        }
        for u in &spec.uris {
            params
                .subject_alt_names
                .push(SanType::URI(u.as_str().try_into().unwrap()));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if spec.expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        } else if spec.not_yet_valid {
            params.not_before = date_time_ymd(2090, 1, 1);
            params.not_after = date_time_ymd(2095, 1, 1);
        } else {
            params.not_before = date_time_ymd(2024, 1, 1);
            params.not_after = date_time_ymd(2035, 1, 1);
        }
        self.sign(params)
    }

    /// A self-signed leaf (not a CA): useless as a trust anchor.
    pub fn self_signed_leaf(cn: &str) -> Leaf {
        let mut params = CertificateParams::new(vec![format!("{cn}.example.test")]).unwrap();
        params.distinguished_name = dn(cn);
        params.serial_number = Some(next_serial());
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            serial: params.serial_number.clone().unwrap(),
            chain: Vec::new(),
        }
    }

    fn sign(&self, mut params: CertificateParams) -> Leaf {
        let serial = next_serial();
        params.serial_number = Some(serial.clone());
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            serial,
            chain: Vec::new(),
        }
    }

    /// A CRL (PEM `X509 CRL`) signed by this CA, revoking `revoked`.
    pub fn crl(&self, revoked: &[&Leaf], number: u64) -> String {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 6, 1),
            next_update: date_time_ymd(2039, 1, 1),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|l| RevokedCertParams {
                    serial_number: l.serial.clone(),
                    revocation_time: date_time_ymd(2024, 6, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }
}

/// What `openssl ca -gencrl` is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpensslCrl {
    /// No `crlnumber` and no `crl_extensions`: OpenSSL then writes a
    /// version 1 CRL without extensions, which OpenSSL itself accepts and
    /// rustls refuses.
    Default,
    /// `crlnumber` and `authorityKeyIdentifier=keyid:always` in
    /// `crl_extensions`: the RFC 5280 CRL the docs tell users to make.
    Conforming,
}

impl Ca {
    /// A CRL made by the real `openssl ca -gencrl` from this CA, revoking
    /// `revoked`, in a throwaway CA directory.
    pub fn openssl_crl(&self, revoked: &[&Leaf], kind: OpensslCrl) -> String {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("ca.crt"), self.pem()).unwrap();
        std::fs::write(d.join("ca.key"), self.issuer.key().serialize_pem()).unwrap();
        std::fs::write(d.join("index.txt"), "").unwrap();
        let mut cnf = format!(
            "[ca]\ndefault_ca = crl_ca\n[crl_ca]\ndatabase = {0}/index.txt\n\
             default_md = sha256\ndefault_crl_days = 30\ncertificate = {0}/ca.crt\n\
             private_key = {0}/ca.key\n",
            d.display()
        );
        if kind == OpensslCrl::Conforming {
            std::fs::write(d.join("crlnumber"), "01\n").unwrap();
            cnf.push_str(&format!(
                "crlnumber = {}/crlnumber\ncrl_extensions = crl_ext\n\
                 [crl_ext]\nauthorityKeyIdentifier = keyid:always\n",
                d.display()
            ));
        }
        std::fs::write(d.join("ca.cnf"), cnf).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl must be installed");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        for (i, leaf) in revoked.iter().enumerate() {
            let file = format!("revoked-{i}.crt");
            std::fs::write(d.join(&file), &leaf.cert_pem).unwrap();
            openssl(&["ca", "-config", "ca.cnf", "-revoke", &file]);
        }
        openssl(&["ca", "-config", "ca.cnf", "-gencrl", "-out", "ca.crl"]);
        std::fs::read_to_string(d.join("ca.crl")).unwrap()
    }
}

impl Leaf {
    /// The same certificate, sent followed by `cas` (as a client that
    /// presents its chain, or its whole bundle including the root, does).
    pub fn with_chain(&self, cas: &[&Ca]) -> Leaf {
        let mut l = self.clone();
        for ca in cas {
            l.cert_pem.push_str(&ca.pem());
            l.chain.push(ca.der());
        }
        l
    }

    /// Lower-case hex SHA-256 of the DER (XFCC `Hash`).
    pub fn sha256_hex(&self) -> String {
        Sha256::digest(&self.der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Writes `NAME.crt` and `NAME.key` into `dir` (for curl).
    pub fn write(&self, dir: &Path, name: &str) -> ClientFiles {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        ClientFiles { cert, key }
    }
}

/// A client certificate and key on disk.
#[derive(Clone, Debug)]
pub struct ClientFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

// ---------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------

/// A `kubernetes.io/tls` Secret with `stringData`.
pub fn tls_secret(name: &str, crt: &str, key: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": crt, "tls.key": key}
    })
}

/// A `kubernetes.io/tls` Secret with base64 `data`, as the API server
/// returns it.
pub fn tls_secret_b64(name: &str, crt: &str, key: &str) -> Value {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": b64(crt), "tls.key": b64(key)}
    })
}

/// A ConfigMap with string data.
pub fn config_map(name: &str, data: &[(&str, &str)]) -> Value {
    let data: BTreeMap<&str, &str> = data.iter().copied().collect();
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": data
    })
}

/// An EndpointSlice of Service `service` with one named port.
pub fn endpoint_slice(
    name: &str,
    service: &str,
    port_name: &str,
    port: u16,
    addresses: &[&str],
    ready: bool,
) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": addresses, "conditions": {"ready": ready}}]
    })
}

/// An Opaque Secret with string keys.
pub fn opaque_secret(name: &str, data: &[(&str, &str)]) -> Value {
    let data: BTreeMap<&str, &str> = data.iter().copied().collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "stringData": data
    })
}

/// A ClientAuthPolicy with the given spec.
pub fn policy(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "tlsward.io/v1alpha1",
        "kind": "ClientAuthPolicy",
        "metadata": {"name": name},
        "spec": spec
    })
}

/// Inline PEM sources.
pub fn inline(pems: &[&str]) -> Value {
    Value::Array(pems.iter().map(|p| json!({"inline": p})).collect())
}

/// A Service on port 80 whose endpoints are `upstreams` (the
/// `tlsward.io/upstream` annotation); none: a Service without endpoints.
pub fn service(name: &str, upstreams: &[SocketAddr]) -> Value {
    let mut svc = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": [{"port": 80}]}
    });
    if !upstreams.is_empty() {
        let list: Vec<String> = upstreams.iter().map(SocketAddr::to_string).collect();
        svc["metadata"]["annotations"] = json!({"tlsward.io/upstream": list.join(",")});
    }
    svc
}

/// One Ingress rule: a host and its paths (`(pathType, path, service)`).
pub struct Rule<'a> {
    pub host: &'a str,
    pub paths: &'a [(&'a str, &'a str, &'a str)],
}

/// An Ingress of class tlsward whose hosts all use `secret`, bound to
/// `policy` when given.
pub fn ingress(name: &str, policy: Option<&str>, secret: &str, rules: &[Rule]) -> Value {
    let hosts: Vec<&str> = rules.iter().map(|r| r.host).collect();
    let rules: Vec<Value> = rules
        .iter()
        .map(|r| {
            let paths: Vec<Value> = r
                .paths
                .iter()
                .map(|(kind, path, svc)| {
                    json!({
                        "path": path,
                        "pathType": kind,
                        "backend": {"service": {"name": svc, "port": {"number": 80}}}
                    })
                })
                .collect();
            json!({"host": r.host, "http": {"paths": paths}})
        })
        .collect();
    let mut ing = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name},
        "spec": {
            "ingressClassName": "tlsward",
            "tls": [{"hosts": hosts, "secretName": secret}],
            "rules": rules
        }
    });
    if let Some(p) = policy {
        ing["metadata"]["annotations"] = json!({"tlsward.io/client-auth-policy": p});
    }
    ing
}

/// Writes `docs` as one JSON `List` file, atomically.
pub fn write_json(dir: &Path, file: &str, docs: &[Value]) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
    write_atomic(&dir.join(file), &serde_json::to_string(&list).unwrap());
}

/// Writes `docs` as a multi-document YAML file, atomically.
pub fn write_yaml(dir: &Path, file: &str, docs: &[Value]) {
    let text: Vec<String> = docs
        .iter()
        .map(|d| serde_saphyr::to_string(d).unwrap())
        .collect();
    write_atomic(&dir.join(file), &text.join("---\n"));
}

// ---------------------------------------------------------------------------
// Upstream
// ---------------------------------------------------------------------------

/// A real HTTP/1.1 upstream on 127.0.0.1:0. Every request gets 200 and a
/// JSON body echoing what arrived (`upstream`, `method`, `path`, `query`,
/// `headers` as name -> list of values); a path ending in `/slow` first
/// sleeps for the configured delay. Runs on its own thread and runtime, so
/// tests may block (curl) without stalling it.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    hits: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Answers an HTTP/1.1 Upgrade (such as a WebSocket handshake) with 101,
/// then echoes every byte on the upgraded connection.
fn upgrade_echo(req: &mut Request<Incoming>) -> Response<Full<Bytes>> {
    let protocol = req.headers()[hyper::header::UPGRADE].clone();
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("upgrade"),
    );
    resp.headers_mut().insert(hyper::header::UPGRADE, protocol);
    resp
}

async fn echo(
    mut req: Request<Incoming>,
    name: Arc<str>,
    slow: Duration,
    hits: Arc<AtomicU64>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    if req.headers().contains_key(hyper::header::UPGRADE) {
        return Ok(upgrade_echo(&mut req));
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(k.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let method = req.method().to_string();
    let version = format!("{:?}", req.version());
    let body_len = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    if path.ends_with("/slow") {
        tokio::time::sleep(slow).await;
    }
    let body = json!({
        "upstream": &*name,
        "method": method,
        "path": path,
        "query": query,
        "version": version,
        "body_len": body_len,
        "headers": headers,
    });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

impl Upstream {
    pub fn start(name: &str) -> Self {
        Self::start_with_delay(name, Duration::from_secs(3))
    }

    pub fn start_with_delay(name: &str, slow: Duration) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let name_arc: Arc<str> = Arc::from(name);
        let thread_hits = hits.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (tcp, _) = tokio::select! {
                        a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                        _ = &mut stop_rx => return,
                    };
                    let _ = tcp.set_nodelay(true);
                    let (name, hits) = (name_arc.clone(), thread_hits.clone());
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            echo(req, name.clone(), slow, hits.clone())
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), svc)
                            .with_upgrades()
                            .await;
                    });
                }
            });
            rt.shutdown_timeout(Duration::from_millis(100));
        });
        Self {
            addr,
            name: name.to_string(),
            hits,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Requests received so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An address nothing listens on (connections are refused).
pub fn dead_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

// ---------------------------------------------------------------------------
// The proxy process
// ---------------------------------------------------------------------------

/// A running `tlsward proxy --config-dir`, killed on drop.
pub struct Proxy {
    child: Option<Child>,
    pub https: u16,
    pub http: u16,
    pub admin: u16,
    pub dir: PathBuf,
    log_path: PathBuf,
    _logs: tempfile::TempDir,
}

impl Proxy {
    /// Starts the proxy on free ports and waits for /readyz.
    pub fn start(dir: &Path, extra: &[&str]) -> Self {
        let logs = tempfile::tempdir().unwrap();
        let mut last_log = String::new();
        for attempt in 0..3 {
            let (https, http, admin) = (free_port(), free_port(), free_port());
            let log_path = logs.path().join(format!("proxy-{attempt}.log"));
            let mut child = Command::new(env!("CARGO_BIN_EXE_tlsward"))
                .arg("proxy")
                .arg("--config-dir")
                .arg(dir)
                .args(["--https-listen", &format!("127.0.0.1:{https}")])
                .args(["--http-listen", &format!("127.0.0.1:{http}")])
                .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
                .args(["--redirect-https-port", &https.to_string()])
                .args(["--reload-interval-ms", "100"])
                .args(extra)
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log_path).unwrap())
                .spawn()
                .expect("start tlsward proxy");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok((200, _)) = http_get(admin, "/readyz") {
                    return Proxy {
                        child: Some(child),
                        https,
                        http,
                        admin,
                        dir: dir.to_path_buf(),
                        log_path,
                        _logs: logs,
                    };
                }
                if let Some(status) = child.try_wait().unwrap() {
                    last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    // A port taken between free_port() and bind: try again.
                    assert!(
                        last_log.contains("binding"),
                        "proxy exited with {status}:\n{last_log}"
                    );
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "proxy never became ready; log:\n{}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("proxy could not bind its ports:\n{last_log}");
    }

    /// Everything the proxy wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn metrics(&self) -> String {
        http_get(self.admin, "/metrics").unwrap().1
    }

    /// The sum of the samples of `name` whose labels include `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics(), name, labels)
    }

    /// Waits (up to 3 s) until `ok(metric)` holds; returns the last value.
    pub fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        ok: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let v = self.metric(name, labels);
            if ok(v) || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A handshake-failure count by reason.
    pub fn handshake_failures(&self, reason: &str) -> f64 {
        self.metric(
            "tlsward_proxy_tls_handshakes_total",
            &[("result", "failure"), ("reason", reason)],
        )
    }

    /// Waits until at least `n` handshake failures with `reason` are counted.
    pub fn wait_handshake_failures(&self, reason: &str, n: f64) -> f64 {
        self.wait_metric(
            "tlsward_proxy_tls_handshakes_total",
            &[("result", "failure"), ("reason", reason)],
            |v| v >= n,
        )
    }

    /// Waits (up to 3 s) until the log contains every needle.
    pub fn wait_log(&self, needles: &[&str]) -> bool {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let log = self.log();
            if needles.iter().all(|n| log.contains(n)) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Parses Prometheus text: the sum of the samples of `name` whose labels
/// include every `(key, value)` of `labels`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = if let Some(r) = rest.strip_prefix('{') {
            let Some((l, v)) = r.rsplit_once('}') else {
                continue;
            };
            (l, v)
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue;
        };
        let have = parse_labels(label_text);
        if labels
            .iter()
            .all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v))
        {
            sum += value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    sum
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some((k, r)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = r.char_indices();
        let mut end = r.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(k.trim_start_matches(',').trim().to_string(), value);
        rest = &r[end..];
    }
    out
}

// ---------------------------------------------------------------------------
// rustls client
// ---------------------------------------------------------------------------

/// A client config trusting `server_ca`, presenting `client` when given,
/// offering `alpn`, with resumption disabled (every connection does a full
/// handshake and so sees the certificate and policy served now).
pub fn client_config(
    server_ca: &Ca,
    client: Option<&Leaf>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(server_ca.der())).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut cfg = match client {
        Some(leaf) => builder
            .with_client_auth_cert(
                std::iter::once(&leaf.der)
                    .chain(&leaf.chain)
                    .map(|d| CertificateDer::from(d.clone()))
                    .collect(),
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

/// One TLS connection to the proxy, HTTP/1.1 or h2 as ALPN chose.
pub struct Conn {
    sender: Sender,
    /// The certificate the server presented in this handshake.
    pub server_cert: Vec<u8>,
    /// The negotiated protocol.
    pub alpn: Option<Vec<u8>>,
    port: u16,
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: String,
    pub headers: hyper::HeaderMap,
    pub version: hyper::Version,
}

impl Resp {
    /// The body as JSON (the upstream's echo).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// The values of header `name` the upstream received, from its echo.
pub fn echoed(body: &Value, name: &str) -> Vec<String> {
    body["headers"][name]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Conn {
    /// Connects to the proxy's HTTPS port with `sni`. With TLS 1.3 a refused
    /// client certificate shows on the first request, not here.
    pub async fn open(
        port: u16,
        sni: &str,
        cfg: Arc<rustls::ClientConfig>,
    ) -> Result<Self, BoxError> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(ServerName::try_from(sni.to_string())?, tcp)
            .await?;
        let (_, session) = tls.get_ref();
        let server_cert = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(tls);
        let sender = if alpn.as_deref() == Some(b"h2") {
            let (s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Sender::H2(s)
        } else {
            let (s, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Sender::H1(s)
        };
        Ok(Self {
            sender,
            server_cert,
            alpn,
            port,
        })
    }

    /// GET `path` for `host` (sent as Host, or as :authority over h2, with
    /// the proxy's port), with extra headers.
    /// Whether the server has closed the connection (or it failed).
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    pub async fn get(
        &mut self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Resp, BoxError> {
        let authority = format!("{host}:{}", self.port);
        let resp = match &mut self.sender {
            Sender::H1(s) => {
                let mut b = Request::get(path).header(hyper::header::HOST, &authority);
                for (k, v) in headers {
                    b = b.header(*k, *v);
                }
                s.ready().await?;
                s.send_request(b.body(Empty::new())?).await?
            }
            Sender::H2(s) => {
                let mut b = Request::get(format!("https://{authority}{path}"))
                    .version(hyper::Version::HTTP_2);
                for (k, v) in headers {
                    b = b.header(*k, *v);
                }
                s.ready().await?;
                s.send_request(b.body(Empty::new())?).await?
            }
        };
        let status = resp.status().as_u16();
        let version = resp.version();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Resp {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            headers,
            version,
        })
    }
}

/// One GET on a fresh connection whose SNI and Host are both `host`.
pub async fn get_once(
    port: u16,
    host: &str,
    cfg: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<Resp, BoxError> {
    // Bounded, so a connection the proxy leaves hanging fails the test
    // with an error instead of stalling the whole suite.
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut c = Conn::open(port, host, cfg).await?;
        c.get(host, path, &[]).await
    })
    .await
    .map_err(|_| format!("no answer from 127.0.0.1:{port} for {host}{path} within 10 s"))?
}

/// A bare TLS stream to the proxy (for slow or hand-written requests).
pub async fn tls_stream(
    port: u16,
    sni: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, BoxError> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    Ok(tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from(sni.to_string())?, tcp)
        .await?)
}

/// Reads until the proxy closes `s`, for at most `limit`: what was read and
/// how long the close took, or `None` if it was still open at `limit`.
pub async fn read_until_closed<S>(s: &mut S, limit: Duration) -> Option<(String, Duration)>
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    // A close without TLS close_notify reads as an error: still a close.
    let _closed = tokio::time::timeout(limit, s.read_to_end(&mut buf))
        .await
        .ok()?;
    Some((
        String::from_utf8_lossy(&buf).into_owned(),
        started.elapsed(),
    ))
}

/// The upgraded byte stream of a successful HTTP/1.1 Upgrade.
pub type Tunnel = TokioIo<hyper::upgrade::Upgraded>;

/// Sends a WebSocket opening handshake for `path` over HTTP/1.1; the
/// status, and the tunnel when the answer was 101.
pub async fn websocket(
    port: u16,
    host: &str,
    cfg: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<(u16, Option<Tunnel>), BoxError> {
    websocket_after_idle(port, host, cfg, path, None).await
}

/// Like [`websocket`], but first sends a plain GET on the same connection
/// and leaves it idle for `idle`, when given.
pub async fn websocket_after_idle(
    port: u16,
    host: &str,
    cfg: Arc<rustls::ClientConfig>,
    path: &str,
    idle: Option<Duration>,
) -> Result<(u16, Option<Tunnel>), BoxError> {
    upgrade(port, host, cfg, path, idle, &[("upgrade", "websocket")])
        .await
        .map(|(status, tunnel, _)| (status, tunnel))
}

/// Asks for an HTTP/1.1 upgrade with the `Upgrade` header (and any other
/// headers) in `headers`: the status, the tunnel when the answer was 101,
/// else the body.
pub async fn upgrade(
    port: u16,
    host: &str,
    cfg: Arc<rustls::ClientConfig>,
    path: &str,
    idle: Option<Duration>,
    headers: &[(&str, &str)],
) -> Result<(u16, Option<Tunnel>, String), BoxError> {
    let tls = tls_stream(port, host, cfg).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    if let Some(idle) = idle {
        let get = Request::get("/before-upgrade")
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .body(Empty::<Bytes>::new())?;
        let resp = sender.send_request(get).await?;
        if resp.status() != 200 {
            return Ok((resp.status().as_u16(), None, String::new()));
        }
        resp.into_body().collect().await?;
        tokio::time::sleep(idle).await;
        sender.ready().await?;
    }
    let mut req = Request::get(path)
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .header(hyper::header::CONNECTION, "Upgrade")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new())?)
        .await?;
    let status = resp.status().as_u16();
    if status != 101 {
        let body = resp.into_body().collect().await?.to_bytes();
        return Ok((status, None, String::from_utf8_lossy(&body).into_owned()));
    }
    let upgraded = hyper::upgrade::on(resp).await?;
    Ok((status, Some(TokioIo::new(upgraded)), String::new()))
}

/// Writes `msg` into the tunnel and reads the echo back (2 s at most).
pub async fn tunnel_echo(t: &mut Tunnel, msg: &[u8]) -> Result<Vec<u8>, BoxError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    t.write_all(msg).await?;
    t.flush().await?;
    let mut buf = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(2), t.read_exact(&mut buf)).await??;
    Ok(buf)
}

// ---------------------------------------------------------------------------
// curl
// ---------------------------------------------------------------------------

/// What curl did.
#[derive(Debug)]
pub struct Curl {
    /// curl's exit code (0: an HTTP response was received).
    pub exit: i32,
    /// The HTTP status (0 without a response).
    pub status: u16,
    /// `%{http_version}`: 1.1, 2, ...
    pub version: String,
    pub body: String,
    /// Response headers, as received.
    pub headers: String,
    pub stderr: String,
}

impl Curl {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// The first value of response header `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Runs curl (a real client) with `args` and the URL last.
pub fn curl(args: &[&str]) -> Curl {
    let out_dir = tempfile::tempdir().unwrap();
    let body_path = out_dir.path().join("body");
    let headers_path = out_dir.path().join("headers");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg("-o")
        .arg(&body_path)
        .arg("-D")
        .arg(&headers_path)
        .args(["-w", "%{http_code} %{http_version}"])
        .args(args)
        .output()
        .expect("curl must be installed");
    let w = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = w.split_whitespace();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let version = parts.next().unwrap_or_default().to_string();
    Curl {
        exit: out.status.code().unwrap_or(-1),
        status,
        version,
        body: std::fs::read_to_string(&body_path).unwrap_or_default(),
        headers: std::fs::read_to_string(&headers_path).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// curl arguments for `https://HOST:PORT/PATH` resolved to 127.0.0.1,
/// trusting `ca`, with a client certificate when given.
pub fn curl_https(
    port: u16,
    ca: &Path,
    host: &str,
    path: &str,
    client: Option<&ClientFiles>,
    extra: &[&str],
) -> Curl {
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}{path}");
    let ca = ca.display().to_string();
    let mut args: Vec<String> = vec!["--resolve".into(), resolve, "--cacert".into(), ca];
    if let Some(c) = client {
        args.push("--cert".into());
        args.push(c.cert.display().to_string());
        args.push("--key".into());
        args.push(c.key.display().to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(url);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(&refs)
}

/// Polls `probe` every 10 ms until it returns true; the time since
/// `since` when it did, or `None` after `timeout`.
pub async fn time_until<F, Fut>(since: Instant, timeout: Duration, mut probe: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    while since.elapsed() < timeout {
        if probe().await {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

// ---------------------------------------------------------------------------
// The standard world, shared by most feature modules
// ---------------------------------------------------------------------------

/// Bound to `strict` (Require, anchors and CRL from a Secret).
pub const A: &str = "a.example.test";
/// Bound to `optional` (Optional, inline anchors and CRL).
pub const B: &str = "b.example.test";
/// Also bound to `strict`.
pub const C: &str = "c.example.test";
/// Not bound to any policy.
pub const OPEN: &str = "open.example.test";
pub const OPEN2: &str = "open2.example.test";
/// `allowlist`: only `*.allowed.clients.test` DNS SANs.
pub const ALLOW: &str = "allow.example.test";
/// `rfc`: RFC 9440 `Client-Cert`.
pub const RFC: &str = "rfc.example.test";
/// `nofwd`: nothing forwarded.
pub const NONE: &str = "none.example.test";
/// A wildcard host, unbound.
pub const WILD: &str = "*.wild.example.test";

/// 2030-01-01T00:00:00Z.
pub const Y2030: f64 = 1_893_456_000.0;
/// 2031-01-01T00:00:00Z.
pub const Y2031: f64 = 1_924_992_000.0;

pub const GOOD_URI: &str = "spiffe://example.test/ns/default/sa/good";
pub const GOOD_DNS: &str = "good.allowed.clients.test";

/// The standard world: several hosts under different policies, one
/// upstream, and a set of good and bad client certificates.
pub struct World {
    pub proxy: Proxy,
    pub upstream: Upstream,
    pub server_ca: Ca,
    pub client_ca: Ca,
    pub server_ca_path: PathBuf,
    pub good: Leaf,
    pub other: Leaf,
    pub expired: Leaf,
    pub future: Leaf,
    pub revoked: Leaf,
    pub rogue: Leaf,
    pub good_files: ClientFiles,
    pub other_files: ClientFiles,
    pub expired_files: ClientFiles,
    pub future_files: ClientFiles,
    pub revoked_files: ClientFiles,
    pub rogue_files: ClientFiles,
    _pki: tempfile::TempDir,
    pub config: tempfile::TempDir,
}

impl World {
    pub fn start(extra: &[&str]) -> World {
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

    pub fn curl(
        &self,
        host: &str,
        path: &str,
        client: Option<&ClientFiles>,
        extra: &[&str],
    ) -> Curl {
        curl_https(
            self.proxy.https,
            &self.server_ca_path,
            host,
            path,
            client,
            extra,
        )
    }

    pub fn cfg(&self, client: Option<&Leaf>, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
        client_config(&self.server_ca, client, &[alpn])
    }

    /// One GET over HTTP/1.1 on a fresh rustls connection.
    pub async fn get(
        &self,
        host: &str,
        path: &str,
        client: Option<&Leaf>,
    ) -> Result<Resp, BoxError> {
        get_once(self.proxy.https, host, self.cfg(client, b"http/1.1"), path).await
    }
}

pub fn xfcc_parts(v: &str) -> BTreeSet<String> {
    v.split(';').map(str::to_string).collect()
}

pub fn expected_xfcc(leaf: &Leaf, cn: &str, uri: &str, dns: &str) -> BTreeSet<String> {
    [
        format!("Hash={}", leaf.sha256_hex()),
        format!("Subject=\"CN={cn}\""),
        format!("URI={uri}"),
        format!("DNS={dns}"),
    ]
    .into_iter()
    .collect()
}
