//! The webhook as the API server calls it: the real binary over HTTPS that
//! verifies the server, with AdmissionReviews around kubectl-made objects.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const ISSUER_POLICY: &str = "certManager:\n  issuer:\n    name: letsencrypt-prod\n";

fn shop_ingress() -> Value {
    kubectl_json(&[
        "create",
        "ingress",
        "shop",
        "--class=nginx",
        "--rule=shop.example.com/*=web:80,tls=shop-tls",
        "--rule=api.shop.example.com/v1*=api:8080,tls=shop-tls",
    ])
}

#[tokio::test]
async fn mutate_then_validate_round_trip_is_idempotent() {
    let w = Webhook::start(Some(ISSUER_POLICY), &[]);
    let ingress = shop_ingress();

    let r = w
        .review(
            "/mutate",
            &admission_review("uid-m1", "CREATE", "team-a", &ingress),
        )
        .await;
    assert_eq!(r["uid"], "uid-m1");
    assert_eq!(r["allowed"], true);
    let patched = apply_patch(&ingress, &r);
    assert_eq!(
        patched["metadata"]["annotations"]["cert-manager.io/cluster-issuer"],
        "letsencrypt-prod"
    );

    let again = w
        .review(
            "/mutate",
            &admission_review("uid-m2", "CREATE", "team-a", &patched),
        )
        .await;
    assert_eq!(again["uid"], "uid-m2");
    assert!(
        again.get("patch").is_none(),
        "second pass must not patch: {again}"
    );

    let v = w
        .review(
            "/validate",
            &admission_review("uid-v1", "CREATE", "team-a", &patched),
        )
        .await;
    assert_eq!(v["uid"], "uid-v1");
    assert_eq!(v["allowed"], true, "{v}");
    assert!(v.get("warnings").is_none());
}

#[tokio::test]
async fn uncovered_host_is_denied_with_the_field_and_the_fix() {
    let w = Webhook::start(None, &[]);
    let ingress = kubectl_json(&[
        "create",
        "ingress",
        "inventory",
        "--rule=shop.foocorp.com/*=web:80,tls=shop-tls",
        "--rule=inventory.foocorp.com/*=inventory:80",
    ]);
    let r = w
        .review(
            "/validate",
            &admission_review("uid-d1", "CREATE", "corp", &ingress),
        )
        .await;
    assert_eq!(r["uid"], "uid-d1");
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    assert_eq!(
        r["status"]["message"],
        "spec.rules[1].host \"inventory.foocorp.com\" is not covered by any spec.tls[].hosts entry: add it to the hosts of a spec.tls entry that has a secretName"
    );

    let no_tls = kubectl_json(&[
        "create",
        "ingress",
        "plain",
        "--rule=a.example.com/*=web:80",
    ]);
    let r = w
        .review(
            "/validate",
            &admission_review("uid-d2", "CREATE", "corp", &no_tls),
        )
        .await;
    assert_eq!(r["allowed"], false);
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("secretName: plain-tls"),
        "{r}"
    );
}

#[tokio::test]
async fn warn_mode_admits_with_warnings_and_dry_run_mode_audits() {
    let ingress = kubectl_json(&[
        "create",
        "ingress",
        "plain",
        "--rule=a.example.com/*=web:80",
    ]);

    let warn = Webhook::start(Some("enforcement: Warn\n"), &[]);
    let r = warn
        .review(
            "/validate",
            &admission_review("u1", "CREATE", "ns", &ingress),
        )
        .await;
    assert_eq!(r["allowed"], true);
    let warnings = r["warnings"].as_array().unwrap();
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .starts_with("spec.rules[0].host \"a.example.com\"")
    );

    let dry = Webhook::start(Some("enforcement: DryRun\n"), &[]);
    let r = dry
        .review(
            "/validate",
            &admission_review("u2", "CREATE", "ns", &ingress),
        )
        .await;
    assert_eq!(r["allowed"], true);
    assert!(r.get("warnings").is_none());
    assert!(
        r["auditAnnotations"]["violations"]
            .as_str()
            .unwrap()
            .contains("a.example.com")
    );
}

#[tokio::test]
async fn dry_run_requests_get_the_same_answer() {
    let w = Webhook::start(Some(ISSUER_POLICY), &[]);
    let ingress = shop_ingress();
    let mut review = admission_review("u-dry", "CREATE", "team-a", &ingress);
    let normal = w.review("/mutate", &review).await;
    review["request"]["dryRun"] = json!(true);
    let dry = w.review("/mutate", &review).await;
    assert_eq!(normal["patch"], dry["patch"]);
    assert!(w.wait_log("dry_run=true").contains("dry_run=true"));
}

#[tokio::test]
async fn delete_and_connect_are_allowed() {
    let w = Webhook::start(None, &[]);
    let ingress = kubectl_json(&[
        "create",
        "ingress",
        "plain",
        "--rule=a.example.com/*=web:80",
    ]);
    for op in ["DELETE", "CONNECT"] {
        let mut review = admission_review("u-del", op, "ns", &ingress);
        review["request"]["oldObject"] = review["request"]["object"].take();
        review["request"]["object"] = Value::Null;
        let r = w.review("/validate", &review).await;
        assert_eq!(r["allowed"], true, "{op}: {r}");
    }
}

#[tokio::test]
async fn malformed_input_gets_its_documented_answer_and_the_server_stays_up() {
    let w = Webhook::start(None, &[]);
    let good = admission_review("u-ok", "CREATE", "ns", &shop_ingress());
    let good_bytes = serde_json::to_vec(&good).unwrap();

    // Truncated JSON.
    let (status, body) = w
        .post("/validate", good_bytes[..good_bytes.len() / 2].to_vec())
        .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("not an admission.k8s.io/v1 AdmissionReview"));

    // Empty body.
    let (status, body) = w.post("/validate", Vec::new()).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("empty"));

    // Wrong apiVersion/kind of the review.
    let mut old = good.clone();
    old["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let (status, body) = w.post("/validate", serde_json::to_vec(&old).unwrap()).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("admissionReviewVersions: [v1]"));

    // An object of another kind: answered in-band, code 400.
    let deployment = kubectl_json(&["create", "deployment", "web", "--image=nginx"]);
    let r = w
        .review(
            "/validate",
            &admission_review("u-pod", "CREATE", "ns", &deployment),
        )
        .await;
    assert_eq!(r["uid"], "u-pod");
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 400);
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("not apps/v1 Deployment")
    );

    // An Ingress that does not decode.
    let mut broken = good.clone();
    broken["request"]["object"]["spec"]["rules"] = json!("not-a-list");
    let r = w.review("/validate", &broken).await;
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 400);
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("request.object is not a decodable networking.k8s.io/v1 Ingress")
    );

    // 4 MiB body. The server answers 413 once 3 MiB have arrived and
    // closes the connection; a client still writing the rest may see its
    // write fail before it reads the answer. That race is the client's, so
    // a few attempts may be needed to read the 413.
    let mut answered = None;
    for _ in 0..5 {
        let mut conn = HttpsConn::connect(w.port, w.ca.client_config())
            .await
            .unwrap();
        match conn.post("/validate", vec![b' '; 4 * 1024 * 1024]).await {
            Ok((status, _)) => {
                answered = Some(status);
                break;
            }
            Err(e) => eprintln!("oversized body: the connection closed first: {e}"),
        }
    }
    assert_eq!(answered, Some(413));

    // Still serving, and counting.
    let r = w.review("/validate", &good).await;
    assert_eq!(r["allowed"], true);
    assert_eq!(http_get(w.admin_port, "/healthz").unwrap().0, 200);
    let m = w.metrics();
    assert!(m.contains(r#"tlsward_webhook_reviews_total{webhook="validate",operation="unknown",verdict="bad_request"} 3"#), "{m}");
    assert!(m.contains(r#"verdict="invalid"} 2"#), "{m}");
}

#[tokio::test]
async fn certificate_rotation_drops_no_request_and_serves_the_new_cert_within_2s() {
    let w = Webhook::start(None, &[]);
    let review =
        serde_json::to_vec(&admission_review("u-rot", "CREATE", "ns", &shop_ingress())).unwrap();
    let (new_cert, new_key, new_der) = w.ca.server_cert("webhook-2");
    let cfg = w.ca.client_config();
    let port = w.port;

    // A keep-alive client and a fresh-connection client run throughout.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let keepalive = {
        let (stop, cfg, review) = (stop.clone(), cfg.clone(), review.clone());
        tokio::spawn(async move {
            let mut conn = HttpsConn::connect(port, cfg).await.unwrap();
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match conn.post("/validate", review.clone()).await {
                    Ok((200, _)) => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        })
    };

    let mut fresh_ok = 0u32;
    let mut fresh_failed = Vec::new();
    let mut rotated_at = None;
    let mut seen_new_after = None;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        if rotated_at.is_none() && started.elapsed() > Duration::from_millis(500) {
            write_atomic(&w.dir.path().join("tls.key"), &new_key);
            write_atomic(&w.dir.path().join("tls.crt"), &new_cert);
            rotated_at = Some(Instant::now());
        }
        match HttpsConn::connect(port, cfg.clone()).await {
            Ok(mut c) => {
                if let (Some(t), None) = (rotated_at, seen_new_after)
                    && c.server_cert == new_der
                {
                    seen_new_after = Some(t.elapsed());
                }
                match c.post("/validate", review.clone()).await {
                    Ok((200, _)) => fresh_ok += 1,
                    other => fresh_failed.push(format!("{other:?}")),
                }
            }
            Err(e) => fresh_failed.push(e.to_string()),
        }
        if seen_new_after.is_some() && started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ka_ok, ka_failed) = keepalive.await.unwrap();

    assert!(
        fresh_failed.is_empty(),
        "fresh-connection failures: {fresh_failed:?}"
    );
    assert!(ka_failed.is_empty(), "keep-alive failures: {ka_failed:?}");
    assert!(
        fresh_ok > 20 && ka_ok > 20,
        "too few requests: {fresh_ok} {ka_ok}"
    );
    let took = seen_new_after
        .unwrap_or_else(|| panic!("the new certificate was never served: {}", w.log()));
    assert!(
        took <= Duration::from_secs(2),
        "new certificate served after {took:?}"
    );
    eprintln!(
        "new certificate served {took:?} after rotation; {fresh_ok} fresh + {ka_ok} keep-alive requests, 0 failed"
    );
    assert!(
        w.metrics()
            .contains(r#"tlsward_certificate_reloads_total{result="success"}"#)
    );
}

#[tokio::test]
async fn broken_certificate_keeps_the_last_good_one() {
    let w = Webhook::start(None, &[]);
    let other = TestCa::new("other");
    let (_, mismatched_key, _) = other.server_cert("x");
    write_atomic(&w.dir.path().join("tls.key"), &mismatched_key);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !w
        .metrics()
        .contains(r#"tlsward_certificate_reloads_total{result="failure"}"#)
    {
        assert!(
            Instant::now() < deadline,
            "failure never counted: {}",
            w.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        w.wait_log("does not match the certificate")
            .contains("does not match the certificate"),
        "{}",
        w.log()
    );
    let conn = HttpsConn::connect(w.port, w.ca.client_config())
        .await
        .unwrap();
    assert_eq!(
        conn.server_cert, w.cert_der,
        "the previous certificate stays in use"
    );
}

#[tokio::test]
async fn policy_file_reloads_and_a_bad_one_keeps_the_previous() {
    let w = Webhook::start(Some("enforcement: Deny\n"), &[]);
    let ingress = kubectl_json(&[
        "create",
        "ingress",
        "plain",
        "--rule=a.example.com/*=web:80",
    ]);
    let review = admission_review("u-p", "CREATE", "ns", &ingress);
    assert_eq!(w.review("/validate", &review).await["allowed"], false);

    write_atomic(&w.policy_path(), "enforcement: Warn\n");
    let deadline = Instant::now() + Duration::from_secs(3);
    while w.review("/validate", &review).await["allowed"] != true {
        assert!(
            Instant::now() < deadline,
            "policy not reloaded: {}",
            w.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    write_atomic(&w.policy_path(), "enforcement: Maybe\n");
    let deadline = Instant::now() + Duration::from_secs(3);
    while !w
        .metrics()
        .contains(r#"tlsward_policy_reloads_total{result="failure"} 1"#)
    {
        assert!(
            Instant::now() < deadline,
            "failure never counted: {}",
            w.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = w.wait_log("keeping the previous one");
    assert!(log.contains("keeping the previous one"), "{log}");
    assert!(log.contains("Maybe"), "the log says why: {log}");
    assert_eq!(
        w.review("/validate", &review).await["allowed"],
        true,
        "still Warn"
    );
}

#[tokio::test]
async fn client_auth_binding_writes_nginx_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let caps = dir.path().join("caps.yaml");
    std::fs::write(
        &caps,
        "apiVersion: tlsward.io/v1alpha1\nkind: ClientAuthPolicy\nmetadata: {name: inventory-clients, namespace: corp}\nspec:\n  mode: Optional\n  verifyDepth: 2\n  trustAnchors: [{configMapRef: {name: corp-ca}}]\n",
    )
    .unwrap();
    let w = Webhook::start(None, &["--client-auth-policies", caps.to_str().unwrap()]);
    let mut ingress = shop_ingress();
    ingress["metadata"]["annotations"] =
        json!({"tlsward.io/client-auth-policy": "inventory-clients"});
    let r = w
        .review(
            "/mutate",
            &admission_review("u-b", "CREATE", "corp", &ingress),
        )
        .await;
    let out = apply_patch(&ingress, &r);
    let a = &out["metadata"]["annotations"];
    assert_eq!(
        a["nginx.ingress.kubernetes.io/auth-tls-secret"],
        "corp/inventory-clients-ca"
    );
    assert_eq!(
        a["nginx.ingress.kubernetes.io/auth-tls-verify-client"],
        "optional"
    );
    assert_eq!(a["nginx.ingress.kubernetes.io/auth-tls-verify-depth"], "2");
}

#[tokio::test]
async fn json_logs_have_one_line_per_review() {
    let w = Webhook::start(None, &["--log-format", "json"]);
    w.review(
        "/validate",
        &admission_review("uid-json", "CREATE", "team-a", &shop_ingress()),
    )
    .await;
    let log = w.wait_log("uid-json");
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["uid"] == "uid-json")
        .unwrap_or_else(|| panic!("no JSON review line: {log}"));
    assert_eq!(line["object"], "team-a/shop");
    assert_eq!(line["operation"], "CREATE");
    assert_eq!(line["verdict"], "allowed");
    assert_eq!(line["webhook"], "validate");
    assert!(line["duration_us"].is_u64());
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let mut w = Webhook::start(None, &[]);
    let pid = w.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = w.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(w.log().contains("webhook stopped"));
}

#[test]
fn tls_below_1_2_is_refused() {
    let w = Webhook::start(None, &[]);
    let ca = w.dir.path().join("ca.crt");
    std::fs::write(&ca, w.ca.pem()).unwrap();
    let connect = |flag: &str| {
        std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{}", w.port),
                flag,
            ])
            .args([
                "-cipher",
                "DEFAULT@SECLEVEL=0",
                "-CAfile",
                ca.to_str().unwrap(),
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl must be installed")
    };
    assert!(connect("-tls1_2").status.success(), "TLS 1.2 must work");
    assert!(connect("-tls1_3").status.success(), "TLS 1.3 must work");
    for old in ["-tls1", "-tls1_1"] {
        let out = connect(old);
        assert!(!out.status.success(), "{old} must be refused");
        // The refusal must be the server's alert, not the client declining
        // to offer the protocol at all.
        let err = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("alert"), "{old}: {err}");
    }
}

/// testssl.sh against the webhook's port: nothing rated MEDIUM or worse
/// that tlsward controls (the test certificate's content is not its).
#[test]
fn testssl_finds_nothing_medium_or_worse_on_the_webhook() {
    let w = Webhook::start(None, &[]);
    let findings = common::testssl("localhost", w.port);
    let serious = common::testssl_serious(&findings, common::TESTSSL_CERTIFICATE_CONTENT);
    assert!(serious.is_empty(), "{serious:#?}");
    let hsts = findings.iter().find(|f| f.id == "HSTS_time").unwrap();
    assert!(hsts.finding.starts_with("365 days"), "{hsts:?}");
    for id in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        let f = findings.iter().find(|f| f.id == id).unwrap();
        assert!(f.finding.starts_with("not offered"), "{f:?}");
    }
}

/// Waits (up to 5 s) until the webhook's scrape has `line`.
fn wait_metric_line(w: &Webhook, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = w.metrics();
        if m.contains(line) || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `chunks` to `s` one every 300 ms until the server closes the
/// connection; what was read, and how long the close took (`None` if the
/// connection outlived every chunk and 4 s more).
async fn trickle<S>(s: S, chunks: Vec<Vec<u8>>) -> Option<(String, Duration)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut r, mut wr) = tokio::io::split(s);
    let limit = Duration::from_millis(300) * chunks.len() as u32 + Duration::from_secs(4);
    let writer = tokio::spawn(async move {
        for c in chunks {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if wr.write_all(&c).await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
        // Keep the write side open: the server must close, not the client.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let started = Instant::now();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(limit, r.read_to_end(&mut buf)).await;
    writer.abort();
    closed.ok().map(|_| {
        (
            String::from_utf8_lossy(&buf).into_owned(),
            started.elapsed(),
        )
    })
}

/// Slow clients do not keep the webhook's connections: a head trickled
/// past the header-read timeout is cut off; a body trickled past the
/// body-read timeout gets 408 and the connection is closed, on HTTP/1.1
/// and h2; an h2 connection that only sends its preface is closed; an
/// idle HTTP/1.1 connection is closed at the idle timeout, which is its own
/// limit. Each is counted by reason. These connections stayed open for
/// minutes before.
#[tokio::test]
async fn slow_silent_and_idle_connections_are_closed_by_their_limits() {
    use common::h2raw::{self, H2Raw};
    let w = Webhook::start(
        None,
        &[
            "--header-read-timeout-seconds",
            "1",
            "--body-read-timeout-seconds",
            "1",
            "--idle-timeout-seconds",
            "2",
        ],
    );
    let cfg = w.ca.client_config();
    let post = "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n";

    // HTTP/1.1: a head sent one header line at a time, for 6 s.
    let s = tls_connect(w.port, &cfg, b"http/1.1").await.unwrap();
    let mut head = vec![post.as_bytes().to_vec()];
    head.extend((0..20).map(|i| format!("x-slow-{i}: 1\r\n").into_bytes()));
    let (_, took) = trickle(s, head).await.expect("a trickled head is cut off");
    assert!(took < Duration::from_secs(4), "{took:?}");
    let m = wait_metric_line(
        &w,
        r#"tlsward_webhook_connections_closed_total{reason="header_timeout"} 1"#,
    );
    assert!(m.contains(r#"{reason="header_timeout"} 1"#), "{m}");

    // HTTP/1.1: a whole head, then the body a byte at a time.
    let s = tls_connect(w.port, &cfg, b"http/1.1").await.unwrap();
    let mut slow_body = vec![format!("{post}Content-Length: 1000\r\n\r\n").into_bytes()];
    slow_body.extend((0..20).map(|_| b" ".to_vec()));
    let (text, took) = trickle(s, slow_body)
        .await
        .expect("a trickled body is cut off");
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(took < Duration::from_secs(4), "{took:?}");

    // h2: the preface and SETTINGS, then nothing.
    let mut silent = H2Raw::new(tls_connect(w.port, &cfg, b"h2").await.unwrap());
    silent.start().await.unwrap();
    let ended = silent
        .until_closed(Duration::from_secs(5), false)
        .await
        .expect("a silent h2 connection is closed");
    assert!(ended.goaway.is_some(), "{ended:?}");

    // h2: HEADERS, then DATA a byte at a time.
    let mut c = H2Raw::new(tls_connect(w.port, &cfg, b"h2").await.unwrap());
    c.start().await.unwrap();
    c.request(
        1,
        "POST",
        "localhost",
        "/validate",
        &[("content-type", "application/json")],
        true,
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut frames = Vec::new();
    while started.elapsed() < Duration::from_secs(8) {
        let _ = c.send(&h2raw::frame(h2raw::DATA, 0, 1, b" ")).await;
        match tokio::time::timeout(Duration::from_millis(300), c.read_frame()).await {
            Ok(Ok(Some(f))) => frames.push(f),
            Ok(Ok(None) | Err(_)) => break,
            Err(_) => {}
        }
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    assert!(
        frames.iter().any(|f| f.kind == h2raw::GOAWAY),
        "GOAWAY: {frames:?}"
    );
    let answer: String = frames
        .iter()
        .filter(|f| f.kind == h2raw::DATA && f.stream == 1)
        .map(|f| String::from_utf8_lossy(&f.payload).into_owned())
        .collect();
    assert!(answer.contains("request body not received"), "{answer:?}");

    // HTTP/1.1: a request answered (405: GET), then nothing. Closed after
    // the 2 s idle timeout, not the 1 s header-read timeout.
    let s = tls_connect(w.port, &cfg, b"http/1.1").await.unwrap();
    let get = b"GET /validate HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    let (text, took) = trickle(s, vec![get])
        .await
        .expect("an idle connection is closed");
    assert!(text.starts_with("HTTP/1.1 405"), "{text}");
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(5),
        "{took:?}"
    );

    for line in [
        r#"tlsward_webhook_connections_closed_total{reason="header_timeout"} 1"#,
        r#"tlsward_webhook_connections_closed_total{reason="body_timeout"} 2"#,
        r#"tlsward_webhook_connections_closed_total{reason="preface_timeout"} 1"#,
        r#"tlsward_webhook_connections_closed_total{reason="idle_timeout"} 1"#,
    ] {
        let m = wait_metric_line(&w, line);
        assert!(m.contains(line), "{line} missing from\n{m}");
    }
}
