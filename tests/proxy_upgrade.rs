//! Upgraded connections (websockets) pass through the proxy and survive a
//! configuration reload: nginx reloads drop them, tlsward's must not.

mod common;

use std::convert::Infallible;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream that answers `Upgrade: echo` with 101 and then echoes bytes.
async fn echo_upstream() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |mut req: Request<hyper::body::Incoming>| async move {
                        assert_eq!(
                            req.headers()["upgrade"],
                            "echo",
                            "the Upgrade header reaches the upstream"
                        );
                        let on = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            let mut io = TokioIo::new(on.await.unwrap());
                            let mut buf = [0u8; 1024];
                            loop {
                                let n = io.read(&mut buf).await.unwrap_or(0);
                                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        });
                        let r = Response::builder()
                            .status(StatusCode::SWITCHING_PROTOCOLS)
                            .header("connection", "upgrade")
                            .header("upgrade", "echo")
                            .body(Empty::<Bytes>::new())
                            .unwrap();
                        Ok::<_, Infallible>(r)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    port
}

async fn echo<S: AsyncReadExt + AsyncWriteExt + Unpin>(ws: &mut S, msg: &[u8]) {
    ws.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    ws.read_exact(&mut got).await.unwrap();
    assert_eq!(got, msg);
}

fn manifests(cert: &str, key: &str, upstream: u16) -> String {
    let docs = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": "ws-tls"},
         "stringData": {"tls.crt": cert, "tls.key": key}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ws",
         "annotations": {"tlsward.io/upstream": format!("127.0.0.1:{upstream}")}}, "spec": {"ports": [{"port": 80}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "ws"},
         "spec": {"ingressClassName": "tlsward", "tls": [{"hosts": ["localhost"], "secretName": "ws-tls"}],
                  "rules": [{"host": "localhost", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                      "backend": {"service": {"name": "ws", "port": {"number": 80}}}}]}}]}}
    ]});
    serde_json::to_string(&docs).unwrap()
}

#[tokio::test]
async fn upgraded_connection_survives_a_certificate_reload() {
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("ws CA");
    let (cert1, key1, der1) = ca.server_cert("ws-1");
    let (cert2, key2, der2) = ca.server_cert("ws-2");
    write_atomic(
        &dir.path().join("ws.json"),
        &manifests(&cert1, &key1, upstream),
    );
    let (https, http, admin) = (free_port(), free_port(), free_port());
    let mut proxy = Command::new(env!("CARGO_BIN_EXE_tlsward"))
        .args(["--log-level", "warn", "proxy", "--config-dir"])
        .arg(dir.path())
        .args(["--https-listen", &format!("127.0.0.1:{https}")])
        .args(["--http-listen", &format!("127.0.0.1:{http}")])
        .args([
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
            "--reload-interval-ms",
            "50",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(http_get(admin, "/readyz"), Ok((200, _))) {
        assert!(Instant::now() < deadline, "proxy never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", https))
            .await
            .unwrap();
        let mut cfg = (*ca.client_config()).clone();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    };
    let mut ws = connect().await;
    assert_eq!(
        ws.get_ref().1.peer_certificates().unwrap()[0].as_ref(),
        der1.as_slice()
    );
    ws.write_all(
        b"GET /chat HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        ws.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");

    echo(&mut ws, b"before the reload").await;

    // Rotate the certificate; wait until new handshakes see it.
    write_atomic(
        &dir.path().join("ws.json"),
        &manifests(&cert2, &key2, upstream),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let fresh = connect().await;
        if fresh.get_ref().1.peer_certificates().unwrap()[0].as_ref() == der2.as_slice() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    echo(&mut ws, b"after the reload, same connection").await;
    let _ = proxy.kill();
    let _ = proxy.wait();
}
