//! Every long-running role's /metrics, scraped from a running process,
//! passes `promtool check metrics` (Prometheus' own linter). A scraper that
//! asks for OpenMetrics gets OpenMetrics.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(http_get(port, "/healthz"), Ok((200, _))) {
        assert!(
            Instant::now() < deadline,
            "admin port {port} never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn promtool_check(name: &str, scrape: &str) {
    use std::io::Write;
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!(
                "skipping: promtool not installed ({e}); scripts/install-test-tools.sh installs it"
            );
            return;
        }
        Err(e) => panic!("promtool is required under CI=true: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{name}: promtool check metrics failed:\n{text}\n--- scrape ---\n{scrape}"
    );
}

fn spawn(args: &[&str], env: &[(&str, &str)]) -> Killed {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tlsward"));
    cmd.args(["--log-level", "warn"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Killed(cmd.spawn().unwrap())
}

#[tokio::test]
async fn every_component_scrape_passes_promtool() {
    // Webhook, after a few reviews so every family has samples.
    let w = Webhook::start(None, &[]);
    let ingress = kubectl_json(&[
        "create",
        "ingress",
        "shop",
        "--rule=shop.example.com/*=web:80,tls=shop-tls",
    ]);
    w.review(
        "/validate",
        &admission_review("u1", "CREATE", "ns", &ingress),
    )
    .await;
    w.review("/mutate", &admission_review("u2", "CREATE", "ns", &ingress))
        .await;
    let (_, scrape) = http_get(w.admin_port, "/metrics").unwrap();
    assert!(
        scrape.contains("# TYPE tlsward_webhook_reviews_total counter"),
        "{scrape}"
    );
    promtool_check("webhook", &scrape);

    // Proxy, through the quickstart (mTLS requests, refusals, expiry gauges).
    let dir = tempfile::tempdir().unwrap();
    let (https, http, admin) = (free_port(), free_port(), free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_tlsward"))
        .args(["--log-level", "warn", "quickstart"])
        .arg(dir.path())
        .args([
            "--self-test",
            "--https-port",
            &https.to_string(),
            "--http-port",
            &http.to_string(),
        ])
        .args(["--admin-port", &admin.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let _proxy = spawn(
        &[
            "proxy",
            "--config-dir",
            dir.path().join("config").to_str().unwrap(),
            "--https-listen",
            &format!("127.0.0.1:{https}"),
            "--http-listen",
            &format!("127.0.0.1:{http}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ],
        &[],
    );
    wait_healthy(admin);
    let _ = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--cacert"])
        .arg(dir.path().join("ca.crt"))
        .arg("--cert")
        .arg(dir.path().join("client.crt"))
        .arg("--key")
        .arg(dir.path().join("client.key"))
        .arg(format!("https://localhost:{https}/"))
        .status();
    let (_, scrape) = http_get(admin, "/metrics").unwrap();
    assert!(
        scrape.contains("tlsward_certificate_expiry_timestamp_seconds{"),
        "{scrape}"
    );
    promtool_check("proxy", &scrape);

    // Operator, against an API server that is not there: it keeps serving.
    let kube = tempfile::tempdir().unwrap();
    let kubeconfig = kube.path().join("config");
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{}'}}}}]\nusers: [{{name: u, user: {{}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n", free_port()),
    )
    .unwrap();
    let op_admin = free_port();
    let _op = spawn(
        &[
            "operator",
            "--admin-listen",
            &format!("127.0.0.1:{op_admin}"),
            "--identity",
            "test-0",
            "--leader-election-namespace",
            "tlsward",
        ],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    wait_healthy(op_admin);
    let (_, scrape) = http_get(op_admin, "/metrics").unwrap();
    assert!(
        scrape.contains("# TYPE tlsward_operator_reconcile_duration_seconds histogram"),
        "{scrape}"
    );
    promtool_check("operator", &scrape);
}

#[test]
fn openmetrics_is_served_when_asked_for() {
    use std::io::{Read, Write};
    let w = Webhook::start(None, &[]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", w.admin_port)).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(
        out.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("# EOF"), "{out}");
}
