//! Shutdown: SIGTERM closes the listener, drains the in-flight request and
//! exits 0 without waiting for idle keep-alive connections. Uses the real
//! `tlsward proxy` binary in directory mode, rcgen certificates, a slow
//! upstream and the rustls client.

use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    let server_ca = Ca::new("drain server CA");
    let server = server_ca.server(&[OPEN], "open", 2030);
    let upstream = Upstream::start_with_delay("slow", Duration::from_millis(1500));
    let config = tempfile::tempdir().unwrap();
    write_json(
        config.path(),
        "all.json",
        &[
            tls_secret("open-tls", &server.cert_pem, &server.key_pem),
            service("echo", &[upstream.addr]),
            ingress(
                "open",
                None,
                "open-tls",
                &[Rule {
                    host: OPEN,
                    paths: &[("Prefix", "/", "echo")],
                }],
            ),
        ],
    );
    let mut proxy = Proxy::start(config.path(), &[]);
    let port = proxy.https;
    // Idle keep-alive connections, HTTP/1.1 and h2, must not hold the exit.
    let mut idle = Vec::new();
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let mut c = Conn::open(port, OPEN, client_config(&server_ca, None, &[alpn]))
            .await
            .unwrap();
        assert_eq!(c.get(OPEN, "/", &[]).await.unwrap().status, 200);
        idle.push(c);
    }
    let cfg = client_config(&server_ca, None, &[b"http/1.1"]);
    let in_flight = tokio::spawn(get_once(port, OPEN, cfg.clone(), "/drain/slow"));
    let deadline = Instant::now() + Duration::from_secs(3);
    while upstream.hits() < 3 {
        assert!(Instant::now() < deadline, "the slow request never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.sigterm();
    let signalled = Instant::now();
    // New connections are refused once draining.
    let closed = time_until(signalled, Duration::from_secs(2), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    })
    .await;
    assert!(
        closed.is_some(),
        "the HTTPS listener stays open while draining"
    );
    let r = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is drained");
    assert_eq!(r.status, 200, "{}", r.body);
    let answered = signalled.elapsed();
    let status = proxy
        .wait_exit(Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no exit within 5 s of the last response:\n{}", proxy.log()));
    let exited = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{}", proxy.log());
    assert!(answered >= Duration::from_millis(1000), "{answered:?}");
    eprintln!("SIGTERM: in-flight request answered after {answered:?}, exit 0 after {exited:?}");
    drop(idle);
}
