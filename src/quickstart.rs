//! `tlsward quickstart`: a throwaway PKI and manifests in a directory, a
//! built-in upstream, and the proxy serving mutual TLS on localhost in
//! directory mode. Everything it writes is regenerated on each run.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::json;

/// How the quickstart is started.
#[derive(Clone, Debug, clap::Args)]
pub struct QuickstartArgs {
    /// Where the PKI and manifests are written (created if missing).
    #[arg(default_value = "tlsward-quickstart")]
    pub dir: PathBuf,
    /// HTTPS port on localhost.
    #[arg(long, default_value_t = 8443)]
    pub https_port: u16,
    /// Plain-HTTP (redirect) port on localhost.
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// Admin port (/metrics) on localhost.
    #[arg(long, default_value_t = 9090)]
    pub admin_port: u16,
    /// Run the printed checks against the live proxy, then exit (0 when
    /// every answer is the expected one).
    #[arg(long)]
    pub self_test: bool,
}

fn ca(cn: &str) -> anyhow::Result<CertifiedIssuer<'static, KeyPair>> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(CertifiedIssuer::self_signed(p, KeyPair::generate()?)?)
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    sans: Vec<SanType>,
    client: bool,
) -> anyhow::Result<(String, String)> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, cn);
    p.subject_alt_names = sans;
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write(dir: &Path, name: &str, content: &str) -> anyhow::Result<()> {
    std::fs::write(dir.join(name), content)
        .with_context(|| format!("writing {}", dir.join(name).display()))
}

/// Writes the PKI and the manifests; returns the upstream port placeholder's file.
fn prepare(dir: &Path, upstream: SocketAddr) -> anyhow::Result<()> {
    let config = dir.join("config");
    std::fs::create_dir_all(&config)?;
    let server_ca = ca("tlsward quickstart server CA")?;
    let client_ca = ca("tlsward quickstart client CA")?;
    let stranger_ca = ca("some other CA")?;
    let (srv_crt, srv_key) = leaf(
        &server_ca,
        "localhost",
        vec![SanType::DnsName("localhost".try_into()?)],
        false,
    )?;
    let (cl_crt, cl_key) = leaf(
        &client_ca,
        "scanner",
        vec![SanType::DnsName(
            "scanner.clients.quickstart.local".try_into()?,
        )],
        true,
    )?;
    let (in_crt, in_key) = leaf(
        &client_ca,
        "intruder",
        vec![SanType::DnsName("intruder.elsewhere.local".try_into()?)],
        true,
    )?;
    let (st_crt, st_key) = leaf(
        &stranger_ca,
        "stranger",
        vec![SanType::DnsName(
            "scanner.clients.quickstart.local".try_into()?,
        )],
        true,
    )?;
    write(dir, "ca.crt", &server_ca.pem())?;
    write(dir, "client.crt", &cl_crt)?;
    write(dir, "client.key", &cl_key)?;
    write(dir, "intruder.crt", &in_crt)?;
    write(dir, "intruder.key", &in_key)?;
    write(dir, "stranger.crt", &st_crt)?;
    write(dir, "stranger.key", &st_key)?;
    let manifests = [
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
               "metadata": {"name": "localhost-tls"},
               "stringData": {"tls.crt": srv_crt, "tls.key": srv_key}}),
        json!({"apiVersion": "tlsward.io/v1alpha1", "kind": "ClientAuthPolicy",
               "metadata": {"name": "quickstart-clients"},
               "spec": {"mode": "Require",
                        "trustAnchors": [{"inline": client_ca.pem()}],
                        "allowedClients": {"dnsNames": ["*.clients.quickstart.local"]}}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "hello", "annotations": {"tlsward.io/upstream": upstream.to_string()}},
               "spec": {"ports": [{"port": 80}]}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "hello", "annotations": {"tlsward.io/client-auth-policy": "quickstart-clients"}},
               "spec": {"ingressClassName": "tlsward",
                        "tls": [{"hosts": ["localhost"], "secretName": "localhost-tls"}],
                        "rules": [{"host": "localhost", "http": {"paths": [
                            {"path": "/", "pathType": "Prefix",
                             "backend": {"service": {"name": "hello", "port": {"number": 80}}}}]}}]}}),
    ];
    let mut yaml = String::from(
        "# Written by `tlsward quickstart`; edit it while the proxy runs and watch it reload.\n",
    );
    for m in &manifests {
        yaml.push_str("---\n");
        yaml.push_str(&serde_saphyr::to_string(m).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    write(&config, "quickstart.yaml", &yaml)?;
    Ok(())
}

/// The built-in upstream: says hello and shows what the proxy forwarded.
async fn upstream() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let who = req
                            .headers()
                            .get("x-forwarded-client-cert")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("(no client certificate)")
                            .to_string();
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                            "hello from the upstream\nx-forwarded-client-cert: {who}\n"
                        )))))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// The commands a person would run, with what each should show.
fn checks(dir: &str, a: &QuickstartArgs) -> Vec<(String, &'static str)> {
    let https = format!("https://localhost:{}/", a.https_port);
    vec![
        (
            format!(
                "curl --cacert {dir}/ca.crt --cert {dir}/client.crt --key {dir}/client.key {https}"
            ),
            "200, and the upstream shows your certificate in x-forwarded-client-cert",
        ),
        (
            format!("curl --cacert {dir}/ca.crt {https}"),
            "handshake refused: no client certificate",
        ),
        (
            format!(
                "curl --cacert {dir}/ca.crt --cert {dir}/stranger.crt --key {dir}/stranger.key {https}"
            ),
            "handshake refused: signed by an untrusted CA",
        ),
        (
            format!(
                "curl --cacert {dir}/ca.crt --cert {dir}/intruder.crt --key {dir}/intruder.key {https}"
            ),
            "403: a trusted certificate that is not on the allow-list",
        ),
        (
            format!("curl -i http://localhost:{}/hello", a.http_port),
            "308 to https",
        ),
        (
            format!("curl -s http://localhost:{}/metrics", a.admin_port),
            "Prometheus metrics",
        ),
    ]
}

/// Runs each printed curl command and checks its outcome.
fn self_test(dir: &str, a: &QuickstartArgs) -> anyhow::Result<()> {
    let run = |cmd: &str| -> anyhow::Result<(bool, String)> {
        let mut parts: Vec<&str> = cmd.split_whitespace().collect();
        parts.insert(1, "-sS");
        parts.insert(2, "-w");
        parts.insert(3, "\n%{http_code}");
        let out = std::process::Command::new(parts[0])
            .args(&parts[1..])
            .output()
            .context("running curl (install it with apt-get install curl)")?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        ))
    };
    let c = checks(dir, a);
    let expect =
        |i: usize, ok: bool, code: Option<&str>, body: Option<&str>| -> anyhow::Result<()> {
            let (success, out) = run(&c[i].0)?;
            let good = success == ok
                && code.is_none_or(|code| out.trim_end().ends_with(code))
                && body.is_none_or(|b| out.contains(b));
            println!("{} {}", if good { "ok  " } else { "FAIL" }, c[i].0);
            if good {
                Ok(())
            } else {
                anyhow::bail!("unexpected answer for `{}`: {out}", c[i].0)
            }
        };
    expect(0, true, Some("200"), Some("Hash="))?;
    expect(1, false, None, None)?;
    expect(2, false, None, None)?;
    expect(3, true, Some("403"), Some("not allowed"))?;
    expect(4, true, Some("308"), None)?;
    expect(
        5,
        true,
        Some("200"),
        Some("tlsward_proxy_tls_handshakes_total"),
    )?;
    Ok(())
}

/// Runs the quickstart until Ctrl-C (or through the self-test).
pub async fn run(a: QuickstartArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.dir)?;
    let up = upstream().await?;
    prepare(&a.dir, up)?;
    let args = crate::proxy::ProxyArgs {
        config_dir: Some(a.dir.join("config")),
        https_listen: SocketAddr::from(([127, 0, 0, 1], a.https_port)),
        http_listen: SocketAddr::from(([127, 0, 0, 1], a.http_port)),
        redirect_https_port: a.https_port,
        admin_listen: SocketAddr::from(([127, 0, 0, 1], a.admin_port)),
        ingress_class: "tlsward".into(),
        publish_service: None,
        reload_interval_ms: 200,
        handshake_timeout_seconds: 10,
        session_resumption: true,
        header_read_timeout_seconds: 10,
        idle_timeout_seconds: 75,
        max_header_bytes: 64 * 1024,
        max_connection_age_seconds: 3600,
        max_connection_age_grace_seconds: 30,
        h2_keepalive_interval_seconds: 0,
        h2_keepalive_timeout_seconds: 20,
        max_connections: 16384,
        workers: 0,
        upstream_connect_timeout_seconds: 5,
        upstream_response_timeout_seconds: 60,
        shutdown_grace_seconds: 5,
    };
    let proxy = tokio::spawn(crate::proxy::run(args));
    let dir = a.dir.display().to_string();
    let admin = format!("127.0.0.1:{}", a.admin_port);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&admin).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if proxy.is_finished() {
        return proxy.await?.context("the proxy did not start");
    }
    println!(
        "tlsward proxy: mutual TLS on https://localhost:{} (config in {dir}/config)\n",
        a.https_port
    );
    println!("Try:");
    for (cmd, what) in checks(&dir, &a) {
        println!("  {cmd}\n      # {what}");
    }
    println!("\nEdit {dir}/config/quickstart.yaml and the proxy reloads it. Ctrl-C stops.\n");
    if a.self_test {
        let r = tokio::task::spawn_blocking({
            let (dir, a) = (dir.clone(), a.clone());
            move || self_test(&dir, &a)
        })
        .await?;
        proxy.abort();
        return r;
    }
    proxy.await?
}
