//! WebSockets over h2 (RFC 8441): the proxy offers
//! SETTINGS_ENABLE_CONNECT_PROTOCOL, and an extended CONNECT with
//! `:protocol websocket` reaches a real HTTP/1.1 WebSocket server
//! (tungstenite, which checks the handshake) as an `Upgrade: websocket`
//! request. Clients are hyper's h2 client over rustls with a client
//! certificate; the proxy is the real binary in directory mode.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http2::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{
    Request as WsRequest, Response as WsResponse,
};
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::common;
use crate::support::*;

/// The host routed to the WebSocket upstream, under the `strict` policy.
const WS: &str = "ws.example.test";

/// The handshakes the upstream accepted: each one's request headers.
type Seen = Arc<Mutex<Vec<hyper::HeaderMap>>>;

/// A real HTTP/1.1 WebSocket server on its own thread and runtime: it
/// greets each client, then echoes every text and binary message, and
/// picks `chat` when the client offers it as a subprotocol.
struct WsUpstream {
    addr: SocketAddr,
    seen: Seen,
    /// TCP connections accepted, handshakes or not.
    connections: Arc<Mutex<usize>>,
}

impl WsUpstream {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Seen::default();
        let connections = Arc::new(Mutex::new(0));
        let (seen2, connections2) = (seen.clone(), connections.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                while let Ok((tcp, _)) = listener.accept().await {
                    *connections2.lock().unwrap() += 1;
                    let seen = seen2.clone();
                    tokio::spawn(async move {
                        // tungstenite's callback type returns its whole error response.
                        #[allow(clippy::result_large_err)]
                        let record = |req: &WsRequest, mut resp: WsResponse| {
                            seen.lock().unwrap().push(req.headers().clone());
                            let offered = req
                                .headers()
                                .get("sec-websocket-protocol")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default();
                            if offered.split(',').any(|p| p.trim() == "chat") {
                                resp.headers_mut()
                                    .insert("sec-websocket-protocol", "chat".parse().unwrap());
                            }
                            Ok(resp)
                        };
                        let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, record).await
                        else {
                            return;
                        };
                        if ws.send(Message::text("hello from upstream")).await.is_err() {
                            return;
                        }
                        while let Some(Ok(msg)) = ws.next().await {
                            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            });
        });
        Self {
            addr,
            seen,
            connections,
        }
    }

    fn handshakes(&self) -> Vec<hyper::HeaderMap> {
        self.seen.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

/// The standard world, plus [`WS`]: `/` on the WebSocket upstream and
/// `/down` on an address nothing listens on.
async fn world(extra: &[&str]) -> (World, WsUpstream) {
    let w = World::start(extra);
    let upstream = WsUpstream::start();
    let paths: &[(&str, &str, &str)] = &[("Prefix", "/", "ws"), ("Prefix", "/down", "down")];
    write_json(
        w.config.path(),
        "ws.json",
        &[
            service("ws", &[upstream.addr]),
            service("down", &[dead_addr()]),
            ingress(
                "ws",
                Some("strict"),
                "wild-tls",
                &[Rule { host: WS, paths }],
            ),
        ],
    );
    let cfg = w.cfg(Some(&w.good), b"h2");
    let ready = time_until(Instant::now(), Duration::from_secs(5), || {
        let cfg = cfg.clone();
        let port = w.proxy.https;
        async move { matches!(get_once(port, WS, cfg, "/down").await, Ok(r) if r.status == 502) }
    })
    .await;
    assert!(ready.is_some(), "{WS} was never served:\n{}", w.proxy.log());
    (w, upstream)
}

/// An h2 connection to the proxy, once the server's SETTINGS have arrived.
async fn h2(w: &World, host: &str, client: &Leaf) -> SendRequest<Empty<Bytes>> {
    let tls = tls_stream(w.proxy.https, host, w.cfg(Some(client), b"h2"))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    // The client learns of extended CONNECT from the server's SETTINGS,
    // which its connection task reads after the handshake returns; nothing
    // wakes this one then, so it looks every 10 ms.
    let (offered_tx, mut offered) = tokio::sync::watch::channel(false);
    let mut conn = conn;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut conn => return,
                () = tokio::time::sleep(Duration::from_millis(10)), if !*offered_tx.borrow() => {
                    offered_tx.send_replace(conn.is_extended_connect_protocol_enabled());
                }
            }
        }
    });
    let enabled = tokio::time::timeout(Duration::from_secs(3), offered.wait_for(|on| *on)).await;
    assert!(
        matches!(enabled, Ok(Ok(_))),
        "the proxy did not enable extended CONNECT"
    );
    sender
}

/// Sends an extended CONNECT for `host` and `path` with `:protocol`
/// `protocol`.
async fn connect(
    sender: &mut SendRequest<Empty<Bytes>>,
    host: &str,
    protocol: &'static str,
    path: &str,
    headers: &[(&str, &str)],
) -> hyper::Response<hyper::body::Incoming> {
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("https://{host}{path}"))
        .header("sec-websocket-version", "13");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let mut req = req.body(Empty::new()).unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static(protocol));
    sender.ready().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .expect("no answer to the extended CONNECT within 5 s")
        .unwrap()
}

type ClientWs = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// A WebSocket over an accepted extended CONNECT (no HTTP/1.1 handshake:
/// RFC 8441 replaces it).
async fn open_ws(
    sender: &mut SendRequest<Empty<Bytes>>,
    headers: &[(&str, &str)],
) -> (ClientWs, hyper::HeaderMap) {
    let resp = connect(sender, WS, "websocket", "/chat", headers).await;
    assert_eq!(resp.status(), 200, "the extended CONNECT was not accepted");
    let head = resp.headers().clone();
    let upgraded = hyper::upgrade::on(resp).await.unwrap();
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
    (ws, head)
}

/// The next message within 3 s.
async fn next(ws: &mut ClientWs) -> Message {
    tokio::time::timeout(Duration::from_secs(3), ws.next())
        .await
        .expect("no message within 3 s")
        .expect("the WebSocket ended")
        .expect("the WebSocket failed")
}

async fn echo(ws: &mut ClientWs, msg: Message) {
    ws.send(msg.clone()).await.unwrap();
    assert_eq!(next(ws).await, msg);
}

/// SETTINGS_ENABLE_CONNECT_PROTOCOL (0x8) = 1 is in the proxy's first
/// SETTINGS frame, read off the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_offers_extended_connect_in_its_h2_settings() {
    let w = World::start(&[]);
    let mut tls = tls_stream(w.proxy.https, A, w.cfg(Some(&w.good), b"h2"))
        .await
        .unwrap();
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(3), tls.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head[3], 0x4, "the server's first frame is SETTINGS");
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    tls.read_exact(&mut payload).await.unwrap();
    let settings: Vec<(u16, u32)> = payload
        .chunks_exact(6)
        .map(|s| {
            (
                u16::from_be_bytes([s[0], s[1]]),
                u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
            )
        })
        .collect();
    assert!(settings.contains(&(0x8, 1)), "SETTINGS were {settings:?}");
}

/// A browser-style WebSocket over h2 reaches the HTTP/1.1 upstream as a
/// valid RFC 6455 handshake carrying the proxy's headers (the client's
/// identity, not its forged copy), gets the upstream's subprotocol, and
/// carries messages both ways; two WebSockets share one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_over_h2_is_tunnelled_to_an_http11_websocket_upstream() {
    let (w, upstream) = world(&[]).await;
    let mut sender = h2(&w, WS, &w.good).await;
    let (mut ws, head) = open_ws(
        &mut sender,
        &[
            ("sec-websocket-protocol", "superchat, chat"),
            ("sec-websocket-extensions", "x-bench-ext"),
            ("ssl-client-verify", "FORGED"),
        ],
    )
    .await;
    assert_eq!(head["sec-websocket-protocol"], "chat", "{head:?}");
    assert!(!head.contains_key("sec-websocket-accept"), "{head:?}");
    assert!(!head.contains_key("upgrade"), "{head:?}");
    assert_eq!(next(&mut ws).await, Message::text("hello from upstream"));
    echo(&mut ws, Message::text("ping over h2")).await;
    echo(&mut ws, Message::binary(vec![0u8, 1, 2, 255])).await;

    let (mut second, _) = open_ws(&mut sender, &[]).await;
    assert_eq!(
        next(&mut second).await,
        Message::text("hello from upstream")
    );
    echo(&mut second, Message::text("second")).await;
    echo(&mut ws, Message::text("first still open")).await;

    let seen = upstream.handshakes();
    assert_eq!(seen.len(), 2);
    let h = &seen[0];
    assert_eq!(h["sec-websocket-version"], "13");
    assert_eq!(h["sec-websocket-protocol"], "superchat, chat");
    assert_eq!(h["sec-websocket-extensions"], "x-bench-ext");
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["host"], WS);
    assert!(h.contains_key("x-forwarded-client-cert"), "{h:?}");
    assert!(
        !h.contains_key("ssl-client-verify"),
        "a forged copy went through: {h:?}"
    );
    assert_ne!(
        seen[0]["sec-websocket-key"], seen[1]["sec-websocket-key"],
        "a fresh key per handshake"
    );

    ws.send(Message::Close(None)).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the close handshake did not come back");
    echo(&mut second, Message::text("unaffected")).await;
    assert_eq!(
        w.proxy.metric(
            "tlsward_proxy_requests_total",
            &[("host", WS), ("code", "200")]
        ),
        2.0
    );
}

/// Another `:protocol` (and a plain CONNECT: the proxy is no forward
/// proxy) gets 501 without reaching the upstream, and the connection goes
/// on: a WebSocket opens on it afterwards. An upstream that is down gives
/// 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_extended_connects_are_refused_and_a_down_upstream_is_502() {
    let (w, upstream) = world(&[]).await;
    let mut sender = h2(&w, WS, &w.good).await;
    let before = upstream.connections();
    let resp = connect(&mut sender, WS, "connect-udp", "/chat", &[]).await;
    assert_eq!(resp.status(), 501);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("only websocket"),
        "{body:?}"
    );
    assert_eq!(upstream.connections(), before, "the upstream was reached");

    let resp = connect(&mut sender, WS, "websocket", "/down/chat", &[]).await;
    assert_eq!(resp.status(), 502);

    let (mut ws, _) = open_ws(&mut sender, &[]).await;
    assert_eq!(next(&mut ws).await, Message::text("hello from upstream"));
    echo(&mut ws, Message::text("after the refusals")).await;
}

/// An upstream that answers 101 without having read the WebSocket
/// handshake (no matching `Sec-WebSocket-Accept`: the standard world's
/// echo server switches to anything) is not trusted with the tunnel: 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_101_without_the_websocket_accept_value_is_a_502() {
    let w = World::start(&[]);
    let mut sender = h2(&w, A, &w.good).await;
    let resp = connect(&mut sender, A, "websocket", "/ws", &[]).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(w.upstream.hits(), 1, "the upstream did get the handshake");
    assert!(
        w.proxy
            .wait_log(&["without the WebSocket's Sec-WebSocket-Accept"])
    );
}

/// A tunnel is a request in flight: it outlives the idle timeout. And it
/// is cut, like the HTTP/1.1 tunnel, when the client is revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_tunnel_outlives_the_idle_timeout_and_ends_when_its_client_is_revoked() {
    let (w, _upstream) = world(&["--idle-timeout-seconds", "1"]).await;
    let mut sender = h2(&w, WS, &w.other).await;
    let (mut ws, _) = open_ws(&mut sender, &[]).await;
    assert_eq!(next(&mut ws).await, Message::text("hello from upstream"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    echo(&mut ws, Message::text("still here after 2.5 s idle")).await;

    let reloads = w
        .proxy
        .metric("tlsward_proxy_reloads_total", &[("result", "success")]);
    let path = w.config.path().join("secrets.json");
    let mut list: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for item in list["items"].as_array_mut().unwrap() {
        if item["metadata"]["name"] == "client-ca" {
            item["stringData"]["ca.crl"] = json!(w.client_ca.crl(&[&w.revoked, &w.other], 2));
        }
    }
    common::write_atomic(&path, &list.to_string());
    w.proxy.wait_metric(
        "tlsward_proxy_reloads_total",
        &[("result", "success")],
        |v| v > reloads,
    );
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the tunnel was still open 3 s after the CRL:\n{}",
        w.proxy.log()
    );
    assert_eq!(
        w.proxy.wait_metric(
            "tlsward_proxy_connections_closed_total",
            &[("reason", "client_revoked")],
            |v| v >= 1.0
        ),
        1.0
    );
}
