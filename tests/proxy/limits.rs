//! Connection and request limits: the header-read timeout (slowloris),
//! `--max-header-bytes` (431), `--max-connections` across several workers,
//! and the idle timeout of keep-alive connections, which is separate from
//! the header-read timeout and survives the release of HTTP buffers. Uses
//! the real `tlsward proxy` binary in directory mode, rcgen certificates,
//! the echo upstream, curl, and raw TLS streams from the rustls client.

use std::time::Duration;

use crate::support::*;

/// A keep-alive connection waits for its next request under its own idle
/// timeout, not the header-read timeout; it keeps serving after the proxy
/// has let go of its HTTP buffers, and a request head split across that
/// moment arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_have_their_own_timeout_and_keep_serving() {
    use tokio::io::AsyncWriteExt;
    let w = World::start(&[
        "--header-read-timeout-seconds",
        "1",
        "--idle-timeout-seconds",
        "3",
    ]);
    let port = w.proxy.https;
    let cfg = w.cfg(None, b"http/1.1");

    // Idle for twice the header-read timeout between two requests.
    let mut c = Conn::open(port, OPEN, cfg.clone()).await.unwrap();
    assert_eq!(c.get(OPEN, "/one", &[]).await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = c.get(OPEN, "/two", &[]).await.unwrap();
    assert_eq!(second.status, 200);
    assert_eq!(second.json()["path"], "/two");

    // An upgrade on a connection whose first session was released.
    let (status, tunnel) = websocket_after_idle(
        port,
        OPEN,
        cfg.clone(),
        "/ws",
        Some(Duration::from_millis(1200)),
    )
    .await
    .unwrap();
    assert_eq!(
        status, 101,
        "the upgrade reaches the upstream after a release"
    );
    let mut tunnel = tunnel.unwrap();
    assert_eq!(
        tunnel_echo(&mut tunnel, b"after-idle").await.unwrap(),
        b"after-idle"
    );

    // A request, a pause long enough for the release, then a head in two
    // parts around another pause: both answered on the one connection.
    let mut s = tls_stream(port, OPEN, cfg.clone()).await.unwrap();
    let head = format!("GET /a HTTP/1.1\r\nHost: {OPEN}\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.write_all(format!("GET /b HTTP/1.1\r\nHost: {OPEN}\r\n").as_bytes())
        .await
        .unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(b"x-late: yes\r\n\r\n").await.unwrap();
    s.flush().await.unwrap();

    // Then nothing: the connection is closed after the idle timeout.
    let (text, took) = read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .expect("an idle connection is closed in the end");
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert!(text.contains(r#""path":"/b""#), "{text}");
    assert!(
        text.contains("x-late"),
        "the late header reached the upstream: {text}"
    );
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(8),
        "closed by the 3 s idle timeout, not the 1 s header timeout: {took:?}"
    );

    // The first byte of a head after a release, the rest later than the
    // release period: answered, and the connection stays open for another.
    let mut s = tls_stream(port, OPEN, cfg.clone()).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.write_all(b"G").await.unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.write_all(format!("ET /c HTTP/1.1\r\nHost: {OPEN}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let last = format!("GET /d HTTP/1.1\r\nHost: {OPEN}\r\nConnection: close\r\n\r\n");
    s.write_all(last.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    let (text, _) = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("answered and closed as asked");
    assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");
    assert!(
        text.contains(r#""path":"/c""#) && text.contains(r#""path":"/d""#),
        "{text}"
    );
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_big_headers_and_too_many_connections_are_limited() {
    use tokio::io::AsyncWriteExt;
    // Three workers, three listeners: the connection limit is still one.
    let w = World::start(&[
        "--header-read-timeout-seconds",
        "1",
        "--max-header-bytes",
        "16384",
        "--max-connections",
        "2",
        "--workers",
        "3",
    ]);
    let port = w.proxy.https;
    let cfg = w.cfg(None, b"http/1.1");

    // Slowloris: half a request head, then nothing.
    let mut s = tls_stream(port, OPEN, cfg.clone()).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {OPEN}\r\n").as_bytes())
        .await
        .unwrap();
    s.flush().await.unwrap();
    let (_, took) = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("a slow request head is cut off");
    assert!(
        took < Duration::from_secs(3),
        "after about 1 s, took {took:?}"
    );
    drop(s);

    // A request head above --max-header-bytes.
    let big = format!("x-big: {}", "a".repeat(32 * 1024));
    let r = w.curl(OPEN, "/", None, &["-H", &big]);
    assert_eq!(r.status, 431, "{:?}", (r.exit, &r.stderr));
    assert_eq!(w.upstream.hits(), 0);

    // --max-connections 2: a third connection waits for a free slot.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c1 = Conn::open(port, OPEN, cfg.clone()).await.unwrap();
    let mut c2 = Conn::open(port, OPEN, cfg.clone()).await.unwrap();
    assert_eq!(c1.get(OPEN, "/", &[]).await.unwrap().status, 200);
    assert_eq!(c2.get(OPEN, "/", &[]).await.unwrap().status, 200);
    let third = tokio::spawn(get_once(port, OPEN, cfg.clone(), "/third"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!third.is_finished(), "a third connection is not served yet");
    drop(c1);
    let r = tokio::time::timeout(Duration::from_secs(3), third)
        .await
        .expect("served once a slot is free")
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(c2.get(OPEN, "/", &[]).await.unwrap().status, 200);
}
