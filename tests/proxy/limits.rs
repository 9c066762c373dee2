//! Connection and request limits: the header-read timeout (slowloris),
//! `--max-header-bytes` (431), `--max-connections` across several workers,
//! and the idle timeout of keep-alive connections, which is separate from
//! the header-read timeout and survives the release of HTTP buffers; on h2
//! the same limits (preface, header block, idle) and, for both protocols,
//! the maximum connection age. Uses the real `tlsward proxy` binary in
//! directory mode, rcgen certificates, the echo upstream, curl, raw TLS
//! streams from the rustls client and a frame-by-frame h2 client.

use std::time::{Duration, Instant};

use crate::common::h2raw::{self, H2Raw};
use crate::support::*;

/// `tlsward_proxy_connections_closed_total` for `reason`, once it reaches
/// `n` (or after 3 s).
fn closed_by(w: &World, reason: &str, n: f64) -> f64 {
    w.proxy.wait_metric(
        "tlsward_proxy_connections_closed_total",
        &[("reason", reason)],
        |v| v >= n,
    )
}

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

/// h2 connections that never finish a request: no preface, a preface
/// alone, and a HEADERS frame without END_HEADERS. With `--max-connections
/// 3` they hold every slot; the header-read timeout frees them, and an
/// mTLS client waiting in the backlog is served. Without the limits this
/// client waited for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_h2_connections_are_freed_and_an_mtls_client_gets_in() {
    let w = World::start(&[
        "--header-read-timeout-seconds",
        "1",
        "--max-connections",
        "3",
        "--workers",
        "1",
    ]);
    let port = w.proxy.https;
    let h2 = w.cfg(None, b"h2");

    let mut no_preface = tls_stream(port, OPEN, h2.clone()).await.unwrap();
    let mut preface_only = H2Raw::new(tls_stream(port, OPEN, h2.clone()).await.unwrap());
    preface_only.start().await.unwrap();
    let mut open_block = H2Raw::new(tls_stream(port, OPEN, h2.clone()).await.unwrap());
    open_block.start().await.unwrap();
    let block = h2raw::request_block("GET", OPEN, "/never", &[]);
    // END_STREAM but no END_HEADERS: h2 now waits for a CONTINUATION.
    open_block
        .send(&h2raw::frame(h2raw::HEADERS, h2raw::END_STREAM, 1, &block))
        .await
        .unwrap();
    let opened = Instant::now();

    // Every slot is taken: this client waits in the backlog until the
    // silent ones are closed.
    let r = get_once(port, A, w.cfg(Some(&w.good), b"h2"), "/mtls")
        .await
        .expect("an mTLS client is served once the silent connections are closed");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        opened.elapsed() >= Duration::from_millis(900),
        "it waited for the header-read timeout: {:?}",
        opened.elapsed()
    );

    for (what, closed) in [
        (
            "no preface",
            read_until_closed(&mut no_preface, Duration::from_secs(5)).await,
        ),
        (
            "preface only",
            read_until_closed(&mut preface_only.io, Duration::from_secs(5)).await,
        ),
        (
            "HEADERS without END_HEADERS",
            read_until_closed(&mut open_block.io, Duration::from_secs(5)).await,
        ),
    ] {
        assert!(closed.is_some(), "{what}: still open");
    }
    assert_eq!(closed_by(&w, "preface_timeout", 3.0), 3.0);
    assert_eq!(w.upstream.hits(), 1, "only the mTLS request was forwarded");
}

/// An h2 connection with nothing in flight is closed at the idle timeout,
/// counted from its last response; a pause longer than the header-read
/// timeout between two requests is not a limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_h2_connections_are_closed_at_the_idle_timeout() {
    let w = World::start(&[
        "--header-read-timeout-seconds",
        "1",
        "--idle-timeout-seconds",
        "2",
    ]);
    let tls = tls_stream(w.proxy.https, OPEN, w.cfg(None, b"h2"))
        .await
        .unwrap();
    let mut c = H2Raw::new(tls);
    c.start().await.unwrap();
    let one = c.get(1, OPEN, "/one").await.unwrap();
    assert!(one.body.contains(r#""path":"/one""#), "{one:?}");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let two = c.get(3, OPEN, "/two").await.unwrap();
    assert!(two.body.contains(r#""path":"/two""#), "{two:?}");
    assert!(two.goaways.is_empty(), "{two:?}");

    let ended = c
        .until_closed(Duration::from_secs(10), true)
        .await
        .expect("an idle h2 connection is closed in the end");
    let (goaway_after, last) = ended.goaway.expect("a GOAWAY before the close");
    assert!(last >= 3, "GOAWAY covers the streams served: {last}");
    assert!(
        goaway_after >= Duration::from_millis(1500) && goaway_after < Duration::from_secs(6),
        "about 2 s after the second response: {goaway_after:?}"
    );
    assert_eq!(closed_by(&w, "idle_timeout", 1.0), 1.0);
}

/// At the maximum connection age an h2 connection gets GOAWAY while a
/// request is in flight; that request still completes, then the connection
/// closes. An HTTP/1.1 connection finishes its response with `Connection:
/// close`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connection_age_sends_goaway_and_lets_in_flight_requests_finish() {
    use tokio::io::AsyncWriteExt;
    let w = World::start(&[
        "--max-connection-age-seconds",
        "2",
        "--max-connection-age-grace-seconds",
        "10",
    ]);
    let port = w.proxy.https;

    let mut c = H2Raw::new(tls_stream(port, OPEN, w.cfg(None, b"h2")).await.unwrap());
    c.start().await.unwrap();
    let first = c.get(1, OPEN, "/first").await.unwrap();
    assert!(first.goaways.is_empty(), "{first:?}");
    let mut h1 = tls_stream(port, OPEN, w.cfg(None, b"http/1.1"))
        .await
        .unwrap();
    // The echo upstream answers `/slow` after 3 s: past the 2 s age.
    c.request(3, "GET", OPEN, "/during/slow", &[], false)
        .await
        .unwrap();
    h1.write_all(format!("GET /h1/slow HTTP/1.1\r\nHost: {OPEN}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    h1.flush().await.unwrap();

    let slow = c.response(3, Duration::from_secs(10)).await.unwrap();
    assert!(!slow.reset, "{slow:?}");
    assert!(
        slow.body.contains(r#""path":"/during/slow""#),
        "the in-flight request completed: {slow:?}"
    );
    assert!(
        !slow.goaways.is_empty() && slow.goaways.iter().all(|last| *last >= 3),
        "GOAWAY came before the response ended and spares its stream: {slow:?}"
    );
    assert!(
        c.until_closed(Duration::from_secs(5), true).await.is_some(),
        "the connection closes once its request is done"
    );

    let (text, _) = read_until_closed(&mut h1, Duration::from_secs(10))
        .await
        .expect("the HTTP/1.1 connection closes after its response");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(text.contains(r#""path":"/h1/slow""#), "{text}");
    assert_eq!(closed_by(&w, "max_age", 2.0), 2.0);
}

/// `--max-header-bytes` as documented, at its default (65,536): an
/// HTTP/1.1 head over it gets 431 and is not forwarded, whatever size the
/// read buffer grew to (an 80,000-byte head used to get through), one
/// under it is forwarded; more than 100 header fields get 431 too. On h2 a
/// header list over it gets 431 and the connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_over_the_documented_limits_get_431() {
    use tokio::io::AsyncWriteExt;
    let w = World::start(&[]);
    let port = w.proxy.https;
    let h1 = w.cfg(None, b"http/1.1");
    let send = |head: String| {
        let h1 = h1.clone();
        async move {
            let mut s = tls_stream(port, OPEN, h1).await.unwrap();
            s.write_all(head.as_bytes()).await.unwrap();
            s.flush().await.unwrap();
            read_until_closed(&mut s, Duration::from_secs(10))
                .await
                .expect("answered and closed")
                .0
        }
    };
    let head = |path: &str, fields: &[String]| {
        let mut h = format!("GET {path} HTTP/1.1\r\nHost: {OPEN}\r\nConnection: close\r\n");
        for f in fields {
            h.push_str(f);
            h.push_str("\r\n");
        }
        h + "\r\n"
    };

    let big = head("/big", &[format!("x-big: {}", "a".repeat(80_000))]);
    let text = send(big).await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    let fits = head("/fits", &[format!("x-big: {}", "a".repeat(60_000))]);
    let text = send(fits).await;
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(200)]
    );
    assert_eq!(w.upstream.hits(), 1, "only the head under the limit");

    // Host and Connection make two: 98 more are 100, the most hyper
    // takes. The proxy forwards that request (the upstream, with the same
    // limit and three X-Forwarded headers more, refuses it: a 431 that
    // passed through the proxy is counted); one field more is refused by
    // the proxy itself, before it counts anything.
    let fields = |n: usize| (0..n).map(|i| format!("x-f{i}: {i}")).collect::<Vec<_>>();
    let relayed_431 = || {
        w.proxy.metric(
            "tlsward_proxy_requests_total",
            &[("host", OPEN), ("code", "431")],
        )
    };
    let text = send(head("/hundred", &fields(98))).await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert_eq!(relayed_431(), 1.0, "100 fields pass the proxy");
    let text = send(head("/hundred-and-one", &fields(99))).await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert_eq!(relayed_431(), 1.0, "101 fields do not");
    assert_eq!(w.upstream.hits(), 1);

    // h2: 20 headers of 4,000 bytes, 80,000 bytes in all.
    let mut c = Conn::open(port, OPEN, w.cfg(None, b"h2")).await.unwrap();
    let value = "b".repeat(4000);
    let names: Vec<String> = (0..20).map(|i| format!("x-big-{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), value.as_str())).collect();
    assert_eq!(c.get(OPEN, "/h2-big", &many).await.unwrap().status, 431);
    assert_eq!(c.get(OPEN, "/h2-after", &[]).await.unwrap().status, 200);
    assert_eq!(w.upstream.hits(), 2);
}
